"""Principals, policies and the decision whether a call is allowed."""

"""Hatchway: a self-hosted, wire-compatible Session Manager."""

__version__ = "0.1.0"

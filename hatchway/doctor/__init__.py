"""Diagnostics: why a connection to a Hatchway (or AWS) endpoint fails, layer by layer, in
a stable vocabulary of causes. Imports only hatchway.protocol and hatchway.aws of ours."""

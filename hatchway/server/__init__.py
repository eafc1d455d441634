"""The Hatchway control plane: the SSM API, session documents and the session registry."""

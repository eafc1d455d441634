"""The AmazonSSM service: operations register themselves on ``ssm`` by name."""

from ...aws.json11 import Service
from ..state import Call

ssm: Service[Call] = Service("AmazonSSM", "ssm")

# Importing the modules registers their operations.
from . import diagnose, document_ops, nodes, sessions  # noqa: E402

__all__ = ["diagnose", "document_ops", "nodes", "sessions", "ssm"]

"""The Session Manager client: ``start-session``, the ``session-manager-plugin`` drop-in
for the AWS CLI, and ``install-plugin``.

This is the I/O layer over ``hatchway.protocol.client_session``: botocore for the
control-plane calls (StartSession, ResumeSession, TerminateSession, KMS), aiohttp for the
data-channel WebSocket, and the local terminal. It depends on hatchway.protocol and
hatchway.aws only, never on the server or the agent.
"""

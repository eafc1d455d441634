"""Session encryption after a KMS handshake (data-channel.md §4.4-4.5).

The 64-byte data key is split in two: bytes 0-31 encrypt what the agent sends, bytes
32-63 encrypt what the client sends. Each sealed payload is ``nonce(12) || ciphertext ||
tag(16)`` under AES-256-GCM with no associated data.
"""

from __future__ import annotations

import enum
import hmac
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ProtocolError
from .message import PayloadType

DATA_KEY_BYTES = 64
NONCE_BYTES = 12
TAG_BYTES = 16
SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES  # what sealing adds to each payload
CHALLENGE_BYTES = 64

# What each side encrypts (§4.4 step 6). Size, Flag and the handshake stay in clear.
ENCRYPTED_FROM_CLIENT = frozenset({PayloadType.OUTPUT})
ENCRYPTED_FROM_AGENT = frozenset({PayloadType.OUTPUT, PayloadType.STDERR, PayloadType.EXIT_CODE})


class Role(enum.Enum):
    """Which end of the session this is."""

    CLIENT = "client"
    AGENT = "agent"

    @property
    def peer(self) -> Role:
        return Role.AGENT if self is Role.CLIENT else Role.CLIENT


def _encrypted_types(sender: Role) -> frozenset[PayloadType]:
    return ENCRYPTED_FROM_CLIENT if sender is Role.CLIENT else ENCRYPTED_FROM_AGENT


class SessionCipher:
    """Seals what this side sends and opens what the peer sends.

    ``nonce_source`` exists so tests can be deterministic; it defaults to os.urandom.
    """

    def __init__(
        self,
        data_key: bytes,
        role: Role,
        nonce_source: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(data_key) != DATA_KEY_BYTES:
            raise ProtocolError(f"data key is {len(data_key)} bytes, not {DATA_KEY_BYTES}")
        agent_key, client_key = data_key[:32], data_key[32:]
        self.role = role
        self._seal = AESGCM(agent_key if role is Role.AGENT else client_key)
        self._open = AESGCM(client_key if role is Role.AGENT else agent_key)
        self._nonce_source = nonce_source

    def encrypts_outgoing(self, payload_type: int) -> bool:
        return payload_type in _encrypted_types(self.role)

    def decrypts_incoming(self, payload_type: int) -> bool:
        return payload_type in _encrypted_types(self.role.peer)

    def encrypt(self, plaintext: bytes) -> bytes:
        nonce = self._nonce_source(NONCE_BYTES)
        if len(nonce) != NONCE_BYTES:
            raise ProtocolError(f"nonce source gave {len(nonce)} bytes, not {NONCE_BYTES}")
        return nonce + self._seal.encrypt(nonce, plaintext, None)

    def decrypt(self, sealed: bytes) -> bytes:
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise ProtocolError(f"encrypted payload is only {len(sealed)} bytes")
        try:
            return self._open.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], None)
        except InvalidTag:
            raise ProtocolError("encrypted payload failed authentication") from None

    def answer_challenge(self, sealed_challenge: bytes) -> bytes:
        """Client side of §4.5: open with the agent's key, seal again with our own."""
        return self.encrypt(self.decrypt(sealed_challenge))

    def check_challenge(self, plaintext: bytes, answer: bytes) -> bool:
        """Agent side of §4.5: does the client's answer open to what we sent?"""
        try:
            returned = self.decrypt(answer)
        except ProtocolError:
            return False
        return hmac.compare_digest(returned, plaintext)

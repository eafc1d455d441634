import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hatchway.protocol import PayloadType, ProtocolError, Role, SessionCipher

KEY = bytes(range(64))


def test_key_split_and_wire_layout():
    nonce = b"N" * 12
    client = SessionCipher(KEY, Role.CLIENT, nonce_source=lambda n: nonce)
    sealed = client.encrypt(b"ls")
    # nonce || ciphertext || tag, sealed with key[32:64] and no associated data
    assert sealed[:12] == nonce and len(sealed) == 12 + 2 + 16
    assert AESGCM(KEY[32:]).decrypt(nonce, sealed[12:], None) == b"ls"
    agent = SessionCipher(KEY, Role.AGENT, nonce_source=lambda n: nonce)
    assert AESGCM(KEY[:32]).decrypt(nonce, agent.encrypt(b"out")[12:], None) == b"out"
    assert agent.decrypt(sealed) == b"ls"
    assert client.decrypt(agent.encrypt(b"out")) == b"out"


def test_which_payload_types_are_encrypted():
    client, agent = SessionCipher(KEY, Role.CLIENT), SessionCipher(KEY, Role.AGENT)
    assert [t for t in PayloadType if client.encrypts_outgoing(t)] == [PayloadType.OUTPUT]
    assert [t for t in PayloadType if agent.encrypts_outgoing(t)] == [
        PayloadType.OUTPUT,
        PayloadType.STDERR,
        PayloadType.EXIT_CODE,
    ]
    assert agent.decrypts_incoming(PayloadType.OUTPUT)
    assert not agent.decrypts_incoming(PayloadType.SIZE)
    assert client.decrypts_incoming(PayloadType.EXIT_CODE)


def test_challenge_round_trip():
    client, agent = SessionCipher(KEY, Role.CLIENT), SessionCipher(KEY, Role.AGENT)
    secret = bytes(range(64))
    answer = client.answer_challenge(agent.encrypt(secret))
    assert agent.check_challenge(secret, answer)
    assert not agent.check_challenge(b"x" * 64, answer)
    assert not agent.check_challenge(secret, b"short")


@pytest.mark.parametrize("bad", [b"", b"x" * 27, b"x" * 60])
def test_bad_ciphertext_is_a_protocol_error(bad):
    with pytest.raises(ProtocolError):
        SessionCipher(KEY, Role.CLIENT).decrypt(bad)


def test_key_must_be_64_bytes():
    with pytest.raises(ProtocolError):
        SessionCipher(b"short", Role.CLIENT)

"""The built-in KMS with boto3's kms client as the oracle."""

import base64
import json

import pytest


@pytest.fixture
def kms(server):
    return server.client("kms")


def error_of(raised):
    error = raised.value.response["Error"]
    return error["Code"], error["Message"]


def test_keys_aliases_and_listing(kms):
    made = [kms.create_key(Description=f"k{n}")["KeyMetadata"] for n in range(3)]
    meta = made[0]
    assert meta["KeyState"] == "Enabled" and meta["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert meta["Arn"].endswith(f":key/{meta['KeyId']}")
    kms.create_alias(AliasName="alias/sessions", TargetKeyId=meta["KeyId"])
    with pytest.raises(kms.exceptions.AlreadyExistsException):
        kms.create_alias(AliasName="alias/sessions", TargetKeyId=made[1]["KeyId"])
    for name in ("alias/sessions", meta["Arn"], meta["KeyId"]):
        assert kms.describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == meta["KeyId"]
    first = kms.list_keys(Limit=2)
    assert first["Truncated"] and len(first["Keys"]) == 2
    rest = kms.list_keys(Limit=2, Marker=first["NextMarker"])
    ids = {k["KeyId"] for k in first["Keys"] + rest["Keys"]}
    assert ids == {m["KeyId"] for m in made}
    (alias,) = kms.list_aliases(KeyId=meta["KeyId"])["Aliases"]
    assert alias["AliasName"] == "alias/sessions"


def test_encryption_is_bound_to_the_context(kms):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    context = {"aws:ssm:SessionId": "admin-0123", "aws:ssm:TargetId": "mi-0123456789abcdef0"}
    sealed = kms.encrypt(KeyId=key_id, Plaintext=b"secret", EncryptionContext=context)
    opened = kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"], EncryptionContext=context)
    assert opened["Plaintext"] == b"secret" and opened["KeyId"].endswith(key_id)
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"], EncryptionContext={})
    tampered = bytearray(sealed["CiphertextBlob"])
    tampered[-1] ^= 1
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=bytes(tampered), EncryptionContext=context)
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(kms.exceptions.IncorrectKeyException):
        kms.decrypt(CiphertextBlob=sealed["CiphertextBlob"], EncryptionContext=context, KeyId=other)


def test_session_data_keys(kms):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    context = {"aws:ssm:SessionId": "admin-0123", "aws:ssm:TargetId": "mi-0123456789abcdef0"}
    data_key = kms.generate_data_key(KeyId=key_id, NumberOfBytes=64, EncryptionContext=context)
    assert len(data_key["Plaintext"]) == 64
    opened = kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext=context)
    assert opened["Plaintext"] == data_key["Plaintext"]
    assert len(kms.generate_data_key(KeyId=key_id, KeySpec="AES_128")["Plaintext"]) == 16


def test_key_states(kms):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key_id)
    with pytest.raises(kms.exceptions.DisabledException) as raised:
        kms.generate_data_key(KeyId=key_id, NumberOfBytes=64)
    assert error_of(raised)[1].endswith(f":key/{key_id} is disabled.")
    kms.enable_key(KeyId=key_id)
    kms.encrypt(KeyId=key_id, Plaintext=b"x")
    scheduled = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert scheduled["KeyState"] == "PendingDeletion"
    with pytest.raises(kms.exceptions.KMSInvalidStateException):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    with pytest.raises(kms.exceptions.NotFoundException) as raised:
        kms.describe_key(KeyId="alias/no-such-key")
    assert error_of(raised) == ("NotFoundException", "Invalid keyId alias/no-such-key")


def test_iam_and_key_policies(server, kms):
    iam = server.client("iam")
    iam.create_user(UserName="grace")
    key = iam.create_access_key(UserName="grace")["AccessKey"]
    grace = server.client("kms", keys=(key["AccessKeyId"], key["SecretAccessKey"]))
    open_key = kms.create_key()["KeyMetadata"]  # the default policy: IAM decides
    with pytest.raises(grace.exceptions.ClientError) as raised:
        grace.encrypt(KeyId=open_key["KeyId"], Plaintext=b"x")
    code, message = error_of(raised)
    assert code == "AccessDeniedException"
    assert f"kms:Encrypt on resource: {open_key['Arn']}" in message
    iam.put_user_policy(
        UserName="grace",
        PolicyName="kms",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}],
            }
        ),
    )
    grace.encrypt(KeyId=open_key["KeyId"], Plaintext=b"x")
    # A key whose policy names only grace: the admin's IAM allow-all is not enough.
    account = server.app_state().account
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:user/grace"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
    private = grace.create_key(Policy=json.dumps(policy))["KeyMetadata"]
    grace.encrypt(KeyId=private["KeyId"], Plaintext=b"x")
    with pytest.raises(kms.exceptions.ClientError) as raised:
        kms.encrypt(KeyId=private["KeyId"], Plaintext=b"x")
    assert "because no resource-based policy allows the kms:Encrypt action" in error_of(raised)[1]


def test_key_material_is_sealed_at_rest(server, kms):
    from hatchway.server.storage.models import KmsKey

    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    state = server.app_state()

    async def row():
        async with state.db() as db:
            return await db.get(KmsKey, key_id)

    stored = server.loop_call(row())
    material = state.keystore.open(stored.material_sealed, f"kms-key:{key_id}")
    assert len(material) == 32
    database = (server.home / "hatchway.db").read_bytes()
    assert material not in database
    assert base64.b64encode(material) not in database

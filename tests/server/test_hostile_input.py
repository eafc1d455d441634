"""Input that once crashed a handler (a 500 and a traceback) gets a 400 in the AWS shape."""

import json
import urllib.error
import urllib.request

import pytest

from hatchway.agent.identity import Identity
from hatchway.agent.signing import signed_headers

LONE_SURROGATE = '"\\ud800"'  # JSON's escape for a UTF-16 half with no other half
HUGE_INTEGER = "9" * 5000
# (target, body with the field under test set to {value}); the other fields are valid.
STRING_FIELDS = [
    ("AmazonSSM.StartSession", '{"Target": %s}'),
    ("AmazonSSM.StartSession", '{"Target": "mi-00000000000000001", "Reason": %s}'),
    ("AmazonSSM.GetConnectionStatus", '{"Target": %s}'),
    ("AmazonSSM.TerminateSession", '{"SessionId": %s}'),
    ("AmazonSSM.ResumeSession", '{"SessionId": %s}'),
    ("AmazonSSM.CreateActivation", '{"IamRole": %s}'),
    ("AmazonSSM.DeleteActivation", '{"ActivationId": %s}'),
    ("AmazonSSM.RegisterManagedInstance", '{"ActivationId": %s, "ActivationCode": "x"}'),
    ("AmazonSSM.DescribeSessions", '{"State": "Active", "NextToken": %s}'),
    ("AmazonSSM.GetDocument", '{"Name": %s}'),
    ("AmazonSSM.AddTagsToResource", '{"ResourceType": "Document", "ResourceId": %s, "Tags": []}'),
    ("TrentService.DescribeKey", '{"KeyId": %s}'),
    ("TrentService.Encrypt", '{"KeyId": %s, "Plaintext": "AA=="}'),
    ("TrentService.Decrypt", '{"KeyId": %s, "CiphertextBlob": "AA=="}'),
    ("TrentService.GenerateDataKey", '{"KeyId": %s, "KeySpec": "AES_256"}'),
    ("TrentService.EnableKey", '{"KeyId": %s}'),
    ("TrentService.DisableKey", '{"KeyId": %s}'),
    ("TrentService.ScheduleKeyDeletion", '{"KeyId": %s}'),
    ("TrentService.CreateAlias", '{"AliasName": "alias/a", "TargetKeyId": %s}'),
    ("TrentService.CreateKey", '{"Description": %s}'),
    ("AmazonSSM.StartSession", '{%s: "x"}'),  # a key, not a value
]


def post(server, target: str, body: bytes, *, sign: bool = True) -> tuple[int, dict]:
    service = "kms" if target.startswith("TrentService.") else "ssm"
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
    if sign:
        key_id, secret = server.admin_keys()
        ident = Identity("admin", server.url, server.region, key_id, secret)
        headers = signed_headers(ident, "POST", server.url + "/", service, body, headers)
    request = urllib.request.Request(server.url + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def refused_as_unparsable(answer: tuple[int, dict], words: str) -> None:
    status, body = answer
    assert (status, body["__type"]) == (400, "SerializationException"), body
    assert words in body["message"]


def no_faults_logged(server) -> None:
    errors = server.home / "logs" / "errors.log"
    assert not errors.exists() or "Traceback" not in errors.read_text()


@pytest.mark.parametrize(("target", "template"), STRING_FIELDS)
def test_a_lone_surrogate_in_a_string_field(server, target, template):
    body = (template % LONE_SURROGATE).encode()
    refused_as_unparsable(post(server, target, body), "not valid Unicode")
    no_faults_logged(server)


def test_a_lone_surrogate_without_signing(server):
    body = (STRING_FIELDS[7][1] % LONE_SURROGATE).encode()
    answer = post(server, "AmazonSSM.RegisterManagedInstance", body, sign=False)
    refused_as_unparsable(answer, "not valid Unicode")


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("AmazonSSM.DescribeSessions", '{"State": "Active", "MaxResults": %s}'),
        ("AmazonSSM.CreateActivation", '{"IamRole": "r", "RegistrationLimit": %s}'),
        ("AmazonSSM.DescribeSessions", '{"State": "Active", "MaxResults": -%s}'),
    ],
)
def test_a_five_thousand_digit_integer(server, target, body):
    answer = post(server, target, (body % HUGE_INTEGER).encode())
    refused_as_unparsable(answer, "integer out of range")
    no_faults_logged(server)


def test_an_integer_wider_than_64_bits(server):
    body = b'{"IamRole": "r", "RegistrationLimit": 9223372036854775808}'
    refused_as_unparsable(post(server, "AmazonSSM.CreateActivation", body), "out of range")


@pytest.mark.parametrize("number", ["1e400", "NaN", "-Infinity"])
def test_numbers_that_are_not_finite(server, number):
    body = f'{{"IamRole": "r", "ExpirationDate": {number}}}'.encode()
    status, answer = post(server, "AmazonSSM.CreateActivation", body)
    assert (status, answer["__type"]) == (400, "SerializationException")


@pytest.mark.parametrize("when", ["1e20", "-1e20", "253402300800"])
def test_an_expiration_date_past_the_calendar(server, when):
    body = f'{{"IamRole": "r", "ExpirationDate": {when}}}'.encode()
    status, answer = post(server, "AmazonSSM.CreateActivation", body)
    assert (status, answer["__type"]) == (400, "ValidationException")
    assert "at 'expirationDate' failed to satisfy constraint" in answer["message"]
    no_faults_logged(server)


@pytest.mark.parametrize(
    "body",
    [
        '{"userName": 1' + "0" * 4999 + ', "password": "x"}',
        '{"userName": "admin", "password": ' + LONE_SURROGATE + "}",
        '{"accessKeyId": ' + LONE_SURROGATE + ', "secretAccessKey": "x"}',
    ],
)
def test_console_sign_in_with_hostile_json(server, body):
    request = urllib.request.Request(
        server.url + "/console/api/sign-in",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 400
    assert json.loads(caught.value.read())["__type"] == "SerializationException"
    no_faults_logged(server)

"""Every operation, fed input generated from its own model, answers 200 or a 4xx in the
AWS error shape: never a 500.

The strategies come from botocore's service models (the shapes real clients send), with
hostile values mixed in at every level: lone surrogates, integers past 64 bits, infinities,
wrong types. Operations that botocore does not model (the agent's and Hatchway's own)
get a small model written here in botocore's format.

``make test`` runs the ``ci`` profile; ``HATCHWAY_FUZZ=nightly`` runs many more examples.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import Shape, ShapeResolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hatchway.server.ec2messages import ec2messages
from hatchway.server.kms import kms
from hatchway.server.ssm import ssm
from tests.helpers import ConnectedNode, LoopThread, running_server

settings.register_profile(
    "fuzz-ci",
    max_examples=50,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
settings.register_profile(
    "fuzz-nightly",
    max_examples=2000,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
PROFILE = settings.get_profile("fuzz-" + os.environ.get("HATCHWAY_FUZZ", "ci"))

# Models, in botocore's format, for the operations botocore does not know.
UNMODELLED: dict[str, dict[str, Any]] = {
    "AmazonSSM.RegisterManagedInstance": {
        "type": "structure",
        "members": {
            name: {"shape": "String"}
            for name in ("ActivationId", "ActivationCode", "PublicKey", "PublicKeyType")
        },
    },
    "AmazonSSM.UpdateInstanceInformation": {
        "type": "structure",
        "members": {
            name: {"shape": "String"}
            for name in (
                "InstanceId",
                "AgentName",
                "AgentVersion",
                "ComputerName",
                "IPAddress",
                "PlatformType",
                "PlatformName",
                "PlatformVersion",
            )
        },
    },
    "AmazonSSM.ListInstanceAssociations": {
        "type": "structure",
        "members": {
            "InstanceId": {"shape": "String"},
            "MaxResults": {"shape": "Integer"},
            "NextToken": {"shape": "String"},
        },
    },
    "AmazonSSM.HatchwayDiagnoseInstance": {
        "type": "structure",
        "members": {
            "Target": {"shape": "String"},
            "DocumentName": {"shape": "String"},
            "Parameters": {"shape": "Parameters"},
        },
    },
    **{
        f"EC2WindowsMessageDeliveryService.{name}": {
            "type": "structure",
            "members": {
                "MessageId": {"shape": "String"},
                "Payload": {"shape": "String"},
                "Error": {"shape": "String"},
            },
        }
        for name in ("AcknowledgeMessage", "SendReply", "FailMessage", "DeleteMessage")
    },
}
_COMMON_SHAPES = {
    "String": {"type": "string"},
    "Integer": {"type": "integer"},
    "Parameters": {"type": "map", "key": {"shape": "String"}, "value": {"shape": "Strings"}},
    "Strings": {"type": "list", "member": {"shape": "String"}},
}
# GetMessages long-polls for ten seconds on every call that passes validation.
SKIPPED = {"EC2WindowsMessageDeliveryService.GetMessages"}


def input_shapes() -> dict[str, Shape | None]:
    session = botocore.session.get_session()
    shapes: dict[str, Shape | None] = {}
    for service, model_name in ((ssm, "ssm"), (kms, "kms"), (ec2messages, None)):
        model = session.get_service_model(model_name) if model_name else None
        for operation in service.operations:
            target = f"{service.target_prefix}.{operation}"
            if target in SKIPPED:
                continue
            if model is not None and operation in model.operation_names:
                shapes[target] = model.operation_model(operation).input_shape
            else:
                resolver = ShapeResolver({**_COMMON_SHAPES, target: UNMODELLED[target]})
                shapes[target] = resolver.get_shape_by_name(target)
    return shapes


SHAPES = input_shapes()

# Values that exist on the fuzzed server, so that some examples get past validation to the
# code behind it. Filled in by the fixture.
KNOWN: dict[str, list[str]] = {}

_surrogates = st.sampled_from(["\ud800", "\udfff", "\udc80"])
hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(alphabet=st.characters() | _surrogates, max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
)


def text_for(name: str, shape: Shape) -> st.SearchStrategy[Any]:
    enum = shape.enum
    if enum:
        return st.sampled_from(enum)
    longest = shape.metadata.get("max", 64)
    random_text = st.text(
        alphabet=st.characters() | _surrogates,
        min_size=0,
        max_size=min(longest + 2, 80),
    )
    return st.one_of(random_text, st.sampled_from(KNOWN.get(name) or ["x"]))


def for_shape(name: str, shape: Shape, depth: int = 0) -> st.SearchStrategy[Any]:
    kind = shape.type_name
    if kind == "structure":
        members = dict(shape.members) if depth < 4 else {}
        required = set(shape.required_members)
        value: st.SearchStrategy[Any] = st.fixed_dictionaries(
            {
                key: for_shape(key, member, depth + 1)
                for key, member in members.items()
                if key in required
            },
            optional={
                key: for_shape(key, member, depth + 1)
                for key, member in members.items()
                if key not in required
            },
        )
    elif kind == "list":
        value = st.lists(for_shape(name, shape.member, depth + 1), max_size=3)
    elif kind == "map":
        # JSON object keys are strings whatever the model says.
        keys = text_for(name, shape.key) if shape.key.type_name == "string" else st.text()
        value = st.dictionaries(keys, for_shape(name, shape.value, depth + 1), max_size=3)
    elif kind == "string":
        value = text_for(name, shape)
    elif kind in ("integer", "long"):
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        value = st.integers(min_value=low, max_value=high) if low is not None else st.integers()
    elif kind == "boolean":
        value = st.booleans()
    elif kind in ("double", "float", "timestamp"):
        value = st.floats(allow_nan=False) | st.integers(min_value=-(2**40), max_value=2**40)
    elif kind == "blob":
        value = st.binary(max_size=64).map(lambda data: base64.b64encode(data).decode())
    else:
        value = hostile
    # Mostly well-formed, sometimes anything at all.
    return st.one_of(value, value, value, hostile) if depth else value


class Endpoint:
    """One kept-alive connection to the server, signing each call as the admin."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.credentials = Credentials(*server.admin_keys())
        parts = urlsplit(server.url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def call(self, target: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        service = {"TrentService": "kms", "EC2WindowsMessageDeliveryService": "ec2messages"}
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
        request = AWSRequest("POST", self.server.url + "/", data=body, headers=headers)
        signing_name = service.get(target.partition(".")[0], "ssm")
        SigV4Auth(self.credentials, signing_name, self.server.region).add_auth(request)
        self.connection.request("POST", "/", body, dict(request.headers.items()))
        response = self.connection.getresponse()
        return response.status, dict(response.headers), response.read()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    loop = LoopThread()
    with running_server(tmp_path_factory.mktemp("fuzz") / "server") as server:
        node = ConnectedNode(server, loop)
        key = server.client("kms").create_key(Description="fuzz")["KeyMetadata"]
        server.client("kms").create_alias(AliasName="alias/fuzz", TargetKeyId=key["KeyId"])
        activation = server.client().create_activation(IamRole="node-role")
        KNOWN.update(
            {
                name: [node.instance_id, "mi-00000000000000001"]
                for name in ("Target", "InstanceId", "ResourceId", "Destination")
            }
        )
        for name in ("KeyId", "TargetKeyId"):
            KNOWN[name] = [key["KeyId"], key["Arn"], "alias/fuzz"]
        for name in ("DocumentName", "Name"):
            KNOWN[name] = ["SSM-SessionManagerRunShell", "AWS-StartPortForwardingSession"]
        KNOWN["ActivationId"] = [activation["ActivationId"]]
        KNOWN["ActivationCode"] = [activation["ActivationCode"]]
        KNOWN["IamRole"] = ["node-role"]
        KNOWN["AliasName"] = ["alias/fuzz", "alias/other"]
        endpoint = Endpoint(server)
        try:
            yield endpoint
        finally:
            endpoint.connection.close()
            node.close()
            KNOWN.clear()
            errors = server.home / "logs" / "errors.log"
            faults = errors.read_text() if errors.exists() else ""
    loop.stop()
    assert "Traceback" not in faults, faults


@pytest.mark.parametrize("target", sorted(SHAPES))
def test_no_input_gives_a_server_fault(fuzzed, target):
    shape = SHAPES[target]

    @settings(PROFILE)
    @given(params=st.deferred(lambda: for_shape(target, shape) if shape else st.just({})))
    def one_call(params: dict[str, Any]) -> None:
        body = json.dumps(params).encode()
        status, headers, answer = fuzzed.call(target, body)
        assert status < 500, (target, params, answer)
        assert headers["x-amzn-RequestId"]
        if status != 200:
            assert json.loads(answer)["__type"], answer

    one_call()

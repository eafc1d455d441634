"""Activations, registration, health pings, DescribeInstanceInformation and tags."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from hatchway.agent.api import ServiceError
from hatchway.agent.register import register
from tests.helpers import REGION


def do_register(server, loop_thread, activation_id, code):
    return loop_thread.run(register(server.url, activation_id, code, REGION))


def test_activation_lifecycle(ssm):
    created = ssm.create_activation(
        IamRole="edge-nodes",
        Description="lab",
        DefaultInstanceName="lab-box",
        RegistrationLimit=3,
        Tags=[{"Key": "team", "Value": "infra"}],
    )
    assert len(created["ActivationCode"]) == 20
    (listed,) = ssm.describe_activations()["ActivationList"]
    assert listed["ActivationId"] == created["ActivationId"]
    assert listed["RegistrationLimit"] == 3 and listed["RegistrationsCount"] == 0
    assert listed["Expired"] is False
    assert listed["Tags"] == [{"Key": "team", "Value": "infra"}]
    assert listed["ExpirationDate"] - listed["CreatedDate"] == timedelta(hours=24)
    filtered = ssm.describe_activations(
        Filters=[{"FilterKey": "IamRole", "FilterValues": ["other"]}]
    )
    assert filtered["ActivationList"] == []
    ssm.delete_activation(ActivationId=created["ActivationId"])
    assert ssm.describe_activations()["ActivationList"] == []
    with pytest.raises(ssm.exceptions.InvalidActivationId):
        ssm.delete_activation(ActivationId=created["ActivationId"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"IamRole": ""},
        {"IamRole": "r", "RegistrationLimit": 0},
        {"IamRole": "r", "RegistrationLimit": 1001},
        {"IamRole": "r", "ExpirationDate": datetime.now(UTC) + timedelta(days=31)},
        {"IamRole": "r", "ExpirationDate": datetime.now(UTC) - timedelta(minutes=1)},
    ],
)
def test_create_activation_validation(ssm, kwargs):
    with pytest.raises(ssm.exceptions.ClientError) as info:
        ssm.create_activation(**kwargs)
    assert info.value.response["Error"]["Code"] == "ValidationException"


def test_registration_limit_wrong_code_and_expiry(server, ssm, loop_thread):
    created = ssm.create_activation(IamRole="r", RegistrationLimit=1)
    with pytest.raises(ServiceError) as info:
        do_register(server, loop_thread, created["ActivationId"], "wrong-code-wrong-code")
    assert info.value.code == "InvalidActivation"
    identity = do_register(server, loop_thread, created["ActivationId"], created["ActivationCode"])
    assert identity.instance_id.startswith("mi-") and len(identity.instance_id) == 20
    with pytest.raises(ServiceError) as info:
        do_register(server, loop_thread, created["ActivationId"], created["ActivationCode"])
    assert info.value.code == "InvalidActivation" and "limit" in info.value.message
    with pytest.raises(ServiceError) as info:
        do_register(server, loop_thread, "00000000-0000-0000-0000-000000000000", "x")
    assert info.value.code == "InvalidActivationId"
    (listed,) = ssm.describe_activations()["ActivationList"]
    assert listed["RegistrationsCount"] == 1


def test_concurrent_registrations_respect_the_limit(server, ssm, loop_thread):
    created = ssm.create_activation(IamRole="r", RegistrationLimit=3)

    async def many():
        return await asyncio.gather(
            *(
                register(server.url, created["ActivationId"], created["ActivationCode"], REGION)
                for _ in range(8)
            ),
            return_exceptions=True,
        )

    results = loop_thread.run(many())
    assert sum(not isinstance(r, Exception) for r in results) == 3
    assert all(isinstance(r, ServiceError) for r in results if isinstance(r, Exception))


def test_health_ping_and_describe_instance_information(ssm, node):
    node.call(
        "UpdateInstanceInformation",
        {
            "AgentName": "hatchway",
            "AgentStatus": "Active",
            "AgentVersion": "3.3.987.0",
            "ComputerName": "box.example",
            "IPAddress": "192.0.2.10",
            "InstanceId": node.instance_id,
            "PlatformName": "Debian GNU/Linux",
            "PlatformType": "Linux",
            "PlatformVersion": "12",
        },
    )
    (info,) = ssm.describe_instance_information()["InstanceInformationList"]
    assert info["InstanceId"] == node.instance_id
    assert info["PingStatus"] == "Online"
    assert info["PlatformName"] == "Debian GNU/Linux" and info["PlatformVersion"] == "12"
    assert info["ComputerName"] == "box.example" and info["IPAddress"] == "192.0.2.10"
    assert info["ResourceType"] == "ManagedInstance" and info["IamRole"] == "node-role"
    assert isinstance(info["LastPingDateTime"], datetime)
    online = ssm.describe_instance_information(
        Filters=[{"Key": "PingStatus", "Values": ["Online"]}]
    )["InstanceInformationList"]
    assert len(online) == 1
    lost = ssm.describe_instance_information(
        InstanceInformationFilterList=[{"key": "PingStatus", "valueSet": ["ConnectionLost"]}]
    )["InstanceInformationList"]
    assert lost == []


def test_a_node_may_only_report_itself(node, ssm):
    with pytest.raises(ServiceError) as info:
        node.call("UpdateInstanceInformation", {"InstanceId": "mi-00000000000000000"})
    assert info.value.code == "InvalidInstanceId"
    # A node's credential cannot drive the admin API.
    with pytest.raises(ServiceError) as info:
        node.call("CreateActivation", {"IamRole": "x"})
    assert info.value.code == "AccessDeniedException"
    assert "is not authorized to perform: ssm:CreateActivation" in info.value.message


def test_describe_instance_information_filters(ssm, node):
    with pytest.raises(ssm.exceptions.ClientError) as info:
        ssm.describe_instance_information(
            Filters=[{"Key": "PingStatus", "Values": ["Online"]}],
            InstanceInformationFilterList=[{"key": "PingStatus", "valueSet": ["Online"]}],
        )
    assert info.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ssm.exceptions.InvalidFilterKey):
        ssm.describe_instance_information(Filters=[{"Key": "Colour", "Values": ["red"]}])
    with pytest.raises(ssm.exceptions.InvalidInstanceInformationFilterValue):
        ssm.describe_instance_information(Filters=[{"Key": "PingStatus", "Values": ["Asleep"]}])
    ssm.add_tags_to_resource(
        ResourceType="ManagedInstance",
        ResourceId=node.instance_id,
        Tags=[{"Key": "env", "Value": "prod"}],
    )
    by_tag = ssm.describe_instance_information(Filters=[{"Key": "tag:env", "Values": ["prod"]}])
    assert [i["InstanceId"] for i in by_tag["InstanceInformationList"]] == [node.instance_id]
    by_key = ssm.describe_instance_information(Filters=[{"Key": "tag-key", "Values": ["nope"]}])
    assert by_key["InstanceInformationList"] == []


def test_pagination_over_more_nodes_than_a_page(server, ssm, loop_thread):
    created = ssm.create_activation(IamRole="r", RegistrationLimit=12)
    ids = {
        do_register(
            server, loop_thread, created["ActivationId"], created["ActivationCode"]
        ).instance_id
        for _ in range(12)
    }
    paginator = ssm.get_paginator("describe_instance_information")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 5}))
    assert [len(p["InstanceInformationList"]) for p in pages] == [5, 5, 2]
    seen = {i["InstanceId"] for p in pages for i in p["InstanceInformationList"]}
    assert seen == ids
    assert all(
        i["PingStatus"] == "ConnectionLost" for p in pages for i in p["InstanceInformationList"]
    )


def test_tags_and_deregistration(ssm, node):
    args = {"ResourceType": "ManagedInstance", "ResourceId": node.instance_id}
    ssm.add_tags_to_resource(**args, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    assert ssm.list_tags_for_resource(**args)["TagList"] == [
        {"Key": "a", "Value": "1"},
        {"Key": "b", "Value": "2"},
    ]
    ssm.remove_tags_from_resource(**args, TagKeys=["a"])
    assert ssm.list_tags_for_resource(**args)["TagList"] == [{"Key": "b", "Value": "2"}]
    with pytest.raises(ssm.exceptions.TooManyTagsError):
        ssm.add_tags_to_resource(**args, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    with pytest.raises(ssm.exceptions.InvalidResourceType):
        ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="x")
    with pytest.raises(ssm.exceptions.InvalidResourceId):
        ssm.list_tags_for_resource(
            ResourceType="ManagedInstance", ResourceId="mi-00000000000000000"
        )
    ssm.deregister_managed_instance(InstanceId=node.instance_id)
    with pytest.raises(ssm.exceptions.InvalidInstanceId):
        ssm.deregister_managed_instance(InstanceId=node.instance_id)
    assert ssm.describe_instance_information()["InstanceInformationList"] == []
    inactive = ssm.describe_instance_information(
        Filters=[{"Key": "PingStatus", "Values": ["Inactive"]}]
    )["InstanceInformationList"]
    assert [i["InstanceId"] for i in inactive] == [node.instance_id]
    # Its credential no longer works.
    with pytest.raises(ServiceError) as info:
        node.call("UpdateInstanceInformation", {"InstanceId": node.instance_id})
    assert info.value.code == "UnrecognizedClientException"

"""No input crashes the server: every operation, fed arbitrary JSON, answers 200 or 4xx."""

import json
import subprocess
import sys
import time
import urllib.request

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hatchway.server.ssm import ssm as ssm_service
from tests.helpers import RunningServer
from tests.server.test_api_basics import raw_post

OPERATIONS = sorted(ssm_service.operations)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = [
    "Target",
    "DocumentName",
    "Parameters",
    "Reason",
    "SessionId",
    "State",
    "Filters",
    "MaxResults",
    "NextToken",
    "InstanceId",
    "IamRole",
    "RegistrationLimit",
    "ExpirationDate",
    "Tags",
    "ResourceType",
    "ResourceId",
    "TagKeys",
    "Name",
    "Content",
    "DocumentType",
    "DocumentVersion",
    "DocumentFormat",
    "ActivationId",
    "ActivationCode",
    "InstanceInformationFilterList",
    "VersionName",
]


@settings(max_examples=150, suppress_health_check=list(HealthCheck))
@given(
    operation=st.sampled_from(OPERATIONS),
    params=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5),
)
def test_random_parameters_never_cause_a_server_fault(server, operation, params):
    status, headers, body = raw_post(server, json.dumps(params).encode(), f"AmazonSSM.{operation}")
    assert status == 200 or 400 <= status < 500, (operation, params, body)
    assert headers["x-amzn-RequestId"]
    if status != 200:
        assert json.loads(body)["__type"]


def test_hatchway_server_command(tmp_path):
    home = tmp_path / "home"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hatchway",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--home",
            str(home),
            "--log-json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("Hatchway server listening on http://127.0.0.1:")
        url = first.split()[4]
        assert "credentials" in process.stdout.readline()
        with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
            assert response.status == 200
        assert raw_post(RunningServer(url=url, home=home), b'{"State":"Active"}')[0] == 200
        deadline = time.monotonic() + 30
        while True:
            lines = (home / "logs" / "server.log").read_text().splitlines()
            if any("DescribeSessions" in line for line in lines):
                break
            assert time.monotonic() < deadline, "the call never reached the server's log"
            time.sleep(0.05)
        events = [json.loads(line) for line in lines]
        call = next(e for e in events if e["message"] == "AmazonSSM.DescribeSessions")
        assert call["request_id"] and call["outcome"] == "ok"
        secret = RunningServer(url=url, home=home).admin_keys()[1]
        assert all(secret not in line for line in lines)
    finally:
        process.terminate()
        assert process.wait(20) == 0


def test_data_survives_a_restart(tmp_path):
    from hatchway.server.storage.db import alembic_config
    from tests.helpers import running_server

    home = tmp_path / "home"
    with running_server(home) as first:
        activation = first.client().create_activation(IamRole="keeps")["ActivationId"]
        keys = first.admin_keys()
    with running_server(home) as second:
        assert second.admin_keys() == keys  # no second bootstrap
        listed = second.client().describe_activations()["ActivationList"]
        assert [a["ActivationId"] for a in listed] == [activation]
    import sqlite3

    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with sqlite3.connect(home / "hatchway.db") as db:
        assert db.execute("select version_num from alembic_version").fetchone()[0] == head

"""The server's parts find each other by type, through ``ServerState.services``."""

import pytest

from hatchway.server.mgs import MessageGateway
from hatchway.server.relay import Relay
from hatchway.server.session_runtime import SessionRuntime
from hatchway.server.state import Services


class Clock:
    pass


def test_a_service_is_found_by_its_type():
    services = Services()
    clock = Clock()
    services.add(clock)
    assert services.get(Clock) is clock
    with pytest.raises(LookupError, match="no Relay"):
        services.get(Relay)
    with pytest.raises(ValueError, match="already has a Clock"):
        services.add(Clock())


def test_a_running_server_has_one_of_each_part(server):
    state = server.app_state()
    assert not hasattr(state, "extensions")
    runtime = state.services.get(SessionRuntime)
    assert runtime.gateway is state.services.get(MessageGateway)
    assert runtime.relay is state.services.get(Relay)
    assert state.created_credentials == str(server.home / "credentials")

"""How the package is put together: names that mean one thing."""

from __future__ import annotations

import importlib.util


def test_control_means_the_agents_control_channel_only():
    """hatchway/agent/control.py is the agent's control channel; the client's control-plane
    API calls live in hatchway/client/controlplane.py, not in a second control.py."""
    assert importlib.util.find_spec("hatchway.agent.control") is not None
    assert importlib.util.find_spec("hatchway.client.control") is None
    assert importlib.util.find_spec("hatchway.client.controlplane") is not None

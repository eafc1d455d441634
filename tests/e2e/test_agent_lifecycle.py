"""The agent's presence as the control plane sees it."""

import time


def ping_status(server, instance_id):
    (info,) = server.client().describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
    )["InstanceInformationList"]
    return info


def wait_for_status(server, instance_id, wanted, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = ping_status(server, instance_id)
        if info["PingStatus"] == wanted:
            return info
        time.sleep(0.05)
    raise AssertionError(f"{instance_id} never became {wanted}: {info}")


def test_agent_reports_itself_and_a_restart_shows_connection_lost_then_online(stack):
    server, agent = stack
    info = wait_for_status(server, agent.instance_id, "Online")
    # The first health ping fills in the platform.
    deadline = time.monotonic() + 10
    while not info.get("PlatformName") and time.monotonic() < deadline:
        time.sleep(0.05)
        info = ping_status(server, agent.instance_id)
    assert info["PlatformType"] == "Linux"
    assert info["AgentVersion"] and info["ComputerName"] and info["IPAddress"]
    agent.stop()
    wait_for_status(server, agent.instance_id, "ConnectionLost")
    assert (
        server.client().get_connection_status(Target=agent.instance_id)["Status"] == "notconnected"
    )
    agent.start()
    wait_for_status(server, agent.instance_id, "Online")


def test_the_control_channel_comes_back_after_the_server_drops_it(stack):
    server, agent = stack
    gateway_closed = agent.loop.run(_drop_control(agent))
    assert gateway_closed
    wait_for_status(server, agent.instance_id, "Online", timeout=30)


async def _drop_control(agent):
    # Close the agent's socket from its side, as a network failure would.
    ws = agent.agent.control._ws
    if ws is None:
        return False
    await ws.close()
    return True

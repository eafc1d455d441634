"""Sessions the agent cannot carry on: the client is told why, and says so."""

from hatchway.agent.session import SessionWorker
from hatchway.protocol.payloads import ERROR_BANNER
from tests.e2e.shells import run_shell


def test_a_session_task_that_fails_ends_the_session_and_the_client_prints_why(
    stack, client_env, monkeypatch
):
    """The agent runs in this process: make the pump of the shell's output fail. The
    session must end at once with the reason, not hang with a live shell."""
    _, agent = stack

    async def broken_pump(self):
        raise RuntimeError("the output pump broke")

    monkeypatch.setattr(SessionWorker, "pump_process", broken_pump)
    result = run_shell(client_env, agent.instance_id, None, "sleep 600\n")
    reason = "Internal agent error in the shell's output: RuntimeError('the output pump broke')"
    assert ERROR_BANNER + reason in result.stdout + result.stderr, result
    assert result.returncode == 255

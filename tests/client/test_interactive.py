"""An interactive session on a real pty: raw mode, Ctrl-C as input, SIGWINCH resizes,
and the terminal restored afterwards."""

import re
import shlex

import pexpect

from .fakes import START, TARGET, Scenario, client_command, client_env, fake_service

TIMEOUT = 30


def test_raw_mode_keys_and_resize_reach_the_peer():
    with fake_service(Scenario(echo_mode=True)) as service:
        command = shlex.join(client_command(START, "--target", TARGET))
        # `stty -a` after the client shows the mode it left the terminal in.
        child = pexpect.spawn(
            "/bin/sh",
            ["-c", f"{command}; echo STATUS=$?; stty -a"],
            env=client_env(service),
            dimensions=(24, 80),
            timeout=TIMEOUT,
        )
        try:
            child.expect_exact("Starting session with SessionId: sess-1")
            # The size goes right after the handshake, from the real window.
            child.expect_exact("SIZE 80x24")

            child.send("\x03")  # Ctrl-C is input in raw mode, not a local signal
            child.expect_exact("<03>")
            child.send("a")
            child.expect_exact("<61>")  # one keystroke, sent at once, not a line

            child.setwinsize(30, 100)  # SIGWINCH
            child.expect_exact("SIZE 100x30")

            child.send("q")
            child.expect_exact("Exiting session with sessionId: sess-1.")
            child.expect(r"STATUS=(\d+)")
            status = int(child.match.group(1))
            child.expect(pexpect.EOF)
            modes = child.before.decode()
        finally:
            child.close(force=True)
        session = service.only_session()
    assert status == 7  # the remote exit code
    assert re.search(r"(?<![-\w])icanon\b", modes), modes
    assert re.search(r"(?<![-\w])echo\b", modes), modes
    assert session.sizes[-1] == (100, 30)
    assert b"\x03" in bytes(session.inputs)

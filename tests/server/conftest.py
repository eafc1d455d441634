import pytest

from tests.helpers import running_server


@pytest.fixture
def server(tmp_path):
    with running_server(tmp_path / "server") as running:
        yield running


@pytest.fixture
def ssm(server):
    return server.client("ssm")


@pytest.fixture
def loop_thread():
    from tests.helpers import LoopThread

    loop = LoopThread()
    yield loop
    loop.stop()


@pytest.fixture
def node(server, loop_thread):
    from tests.helpers import ConnectedNode

    connected = ConnectedNode(server, loop_thread)
    yield connected
    connected.close()

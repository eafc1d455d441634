"""Shared test configuration."""

import os
import pathlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.sshd import SshServer, running_sshd

ROOT = pathlib.Path(__file__).resolve().parent.parent

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def pyssm_python() -> pathlib.Path:
    """The interpreter of the virtualenv where pyssm-client is installed (make test builds it)."""
    path = pathlib.Path(
        os.environ.get("HATCHWAY_PYSSM_PYTHON", ROOT / ".venv-pyssm" / "bin" / "python")
    )
    if not path.exists():
        pytest.fail(f"pyssm-client's virtualenv is missing ({path}); run the tests with make test")
    return path


@pytest.fixture
def sshd(tmp_path: pathlib.Path) -> Iterator[SshServer]:
    """A real OpenSSH server on loopback that accepts ``sshd.client_key``. Without
    /usr/sbin/sshd the test errors (it does not skip): make test installs it."""
    with running_sshd(tmp_path / "sshd") as server:
        yield server

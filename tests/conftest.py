"""Shared test configuration."""

import os
import pathlib

import pytest
from hypothesis import HealthCheck, settings

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

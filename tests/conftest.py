"""Shared pytest fixtures.

* ``shared_data`` — the folder ``../shared/data`` beside the checkout (real CC0 sample files); tests that use it
  are skipped with a reason where it is absent (set ``MATSEG_SHARED_DATA`` to point elsewhere).
* Progress bars are disabled and the Hugging Face caches point into a temporary folder, so tests never touch
  the user's cache and never reach the network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from hub_fixtures import local_hub  # noqa: E402,F401  (a real local Hub-compatible server, see hubserver.py)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("MATSEG_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


# Set before any test module imports huggingface_hub/datasets (they read these at import time).
_HF_HOME = Path(tempfile.mkdtemp(prefix="matseg-tests-hf-"))
os.environ["HF_HOME"] = str(_HF_HOME)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["MATSEG_DISABLE_PROGRESS"] = "1"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HF_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = _shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real sample data not found at {path} (set MATSEG_SHARED_DATA to the shared/data folder)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT

"""pytest fixtures for tests that talk to a real Hub-compatible server (see ``hubserver.py``).

``local_hub`` (session scope): one olah server for the whole session, started on first use and stopped at
the end. It is skipped, with the reason, only when olah's virtual environment cannot be created (no PyPI);
a server that does not start is an error. Mark such tests ``@pytest.mark.hub``.
"""

from __future__ import annotations

import pytest

from hubserver import LocalHub, OlahUnavailable, ensure_olah_venv

# One server per process even when this module's fixtures are registered from several places
# (conftest.py and a test module): the first user starts it, the last one to finish stops it.
_shared = {"hub": None, "users": 0}


@pytest.fixture(scope="session")
def local_hub(tmp_path_factory):
    """A started :class:`hubserver.LocalHub` (``endpoint``, ``publish``, ``env``) shared by the session."""
    if _shared["hub"] is None:
        try:
            python = ensure_olah_venv()
        except OlahUnavailable as exc:
            pytest.skip(f"local Hub server unavailable: olah's virtual environment could not be created: {exc}")
        _shared["hub"] = LocalHub(tmp_path_factory.mktemp("localhub"), python=python).start()
    _shared["users"] += 1
    try:
        yield _shared["hub"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            hub, _shared["hub"] = _shared["hub"], None
            hub.stop()

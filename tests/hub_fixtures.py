"""pytest fixtures for tests that talk to a real Hub-compatible server (see ``hubserver.py``).

``local_hub`` (session scope): one olah server for the whole session, started on first use and stopped at
the end. Tests never install olah (``python tests/hubserver.py`` does, in the README's test command and
``.ci/run``): without its virtual environment the tests are skipped with the reason, or fail under CI
(``CI`` set to true, as CI services and ``.ci/run`` do), where a skip would hide them. A server that does not
start is an error. Mark such tests ``@pytest.mark.hub``.
"""

from __future__ import annotations

import os

import pytest

from hubserver import LocalHub, OlahUnavailable, ensure_olah_venv

# One server per process even when this module's fixtures are registered from several places
# (conftest.py and a test module): the first user starts it, the last one to finish stops it.
_shared = {"hub": None, "users": 0}


def under_ci() -> bool:
    """True when the ``CI`` environment variable says so (GitHub Actions, GitLab CI, ... and ``.ci/run``)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def local_hub(tmp_path_factory):
    """A started :class:`hubserver.LocalHub` (``endpoint``, ``publish``, ``env``) shared by the session."""
    if _shared["hub"] is None:
        try:
            python = ensure_olah_venv(install=False)
        except OlahUnavailable as exc:
            if under_ci():
                pytest.fail(f"local Hub server unavailable under CI: {exc}")
            pytest.skip(f"local Hub server unavailable: {exc}")
        _shared["hub"] = LocalHub(tmp_path_factory.mktemp("localhub"), python=python).start()
    _shared["users"] += 1
    try:
        yield _shared["hub"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            hub, _shared["hub"] = _shared["hub"], None
            hub.stop()

"""A real, local Hub-compatible server for tests: olah serving git repositories, on 127.0.0.1 only.

    with LocalHub(root) as hub:
        hub.publish("path/to/folder", "testns/tiny", repo_type="dataset")
        result = run_client("import datasets; print(datasets.load_dataset('testns/tiny')['train'][0])", hub)

* The server is `olah <https://github.com/vtuber-plan/olah>`_ (a self-hosted Hugging Face mirror), pinned to
  :data:`OLAH_VERSION`, in offline mode, serving the git repositories under ``<root>/mirrors/{models,datasets,
  spaces}/<ns>/<name>``. Its pins clash with the project's, so it runs from its own virtual environment,
  ``<checkout>/.cache/olah-venv`` (git-ignored; ``MATSEG_OLAH_VENV`` names another folder), made by
  ``python tests/hubserver.py`` (``python -m venv`` + ``pip install olah==OLAH_VERSION``) in the README's test
  command and ``.ci/run``, like Blender's venv. Tests never install it: without it the hub tests skip, and
  fail under CI (``CI=true``).
  ``tests/olah_launcher.py`` starts it with three fixes to its local-mirror code (HTTP ranges and
  ``Content-Length``/``ETag``/``X-Repo-Commit`` on ``resolve``, Hub status codes for a missing revision or
  file, repository info without a revision); its docstring says why each is needed.
* :meth:`LocalHub.publish` goes through the project's own publish path,
  ``matseg_hub.hub.publish.publish_folder(..., git_remote=<bare repository the server serves>)``.
* Clients run in a subprocess (:func:`run_client`) with :meth:`LocalHub.env`: ``tests/conftest.py`` sets
  ``HF_HUB_OFFLINE=1`` before the Hugging Face libraries are imported, which freezes them offline inside the
  pytest process; a fresh process that sees ``HF_ENDPOINT`` is also exactly what a user runs.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Optional, Union

OLAH_VERSION = "0.5.4"
REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = Path(__file__).resolve().with_name("olah_launcher.py")
_READY_MARK = ".matseg-olah-ready"
_DROPPED_CLIENT_VARIABLES = (
    "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_DATASETS_CACHE", "HF_EVALUATE_CACHE", "HF_MODULES_CACHE",
    "HF_XET_CACHE", "HF_ASSETS_CACHE", "TRANSFORMERS_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT",
)


class OlahUnavailable(RuntimeError):
    """olah's virtual environment could not be created (no Python venv support, or PyPI unreachable)."""


def default_venv_dir() -> Path:
    return Path(os.environ.get("MATSEG_OLAH_VENV") or REPO_ROOT / ".cache" / "olah-venv")


def ensure_olah_venv(venv: Optional[Path] = None, timeout: float = 600, install: bool = True) -> Path:
    """Return the Python of a virtual environment holding olah==OLAH_VERSION, creating it when missing.

    Safe against concurrent processes (a lock file). Nothing is ever deleted: an environment without the
    ready mark (half built, or an older pin) gets ``pip install olah==OLAH_VERSION`` again, which also repairs it.
    With ``install=False`` (the tests) a missing or unfinished environment is an error: nothing is downloaded.

    Raises:
        OlahUnavailable: the environment is not ready and ``install`` is False, or ``venv``/``pip install``
            failed (the message holds the command's last output lines).
    """
    venv = Path(venv or default_venv_dir())
    python = venv / "bin" / "python"
    mark = venv / _READY_MARK

    def ready() -> bool:
        return python.exists() and mark.is_file() and mark.read_text().strip() == OLAH_VERSION

    if ready():
        return python
    if not install:
        raise OlahUnavailable(f"no olah=={OLAH_VERSION} environment at {venv}: create it with "
                              f"`python tests/hubserver.py` (the README's test command and .ci/run do)")
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if ready():
            return python
        steps = [] if python.exists() else [[sys.executable, "-m", "venv", str(venv)]]
        steps.append([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--retries", "2",
                      f"olah=={OLAH_VERSION}"])
        for step in steps:
            command = " ".join(step[:3] + step[-1:])
            try:
                result = subprocess.run(step, capture_output=True, text=True, timeout=timeout)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise OlahUnavailable(f"`{command}` failed: {exc}") from exc
            if result.returncode != 0:
                tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
                raise OlahUnavailable(f"`{command}` failed (is PyPI reachable?):\n{tail}")
        mark.write_text(OLAH_VERSION)
    return python


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http_get(url: str, timeout: float = 2.0) -> int:
    """Status of a GET on the loopback server, bypassing any HTTP proxy set in the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


class LocalHub:
    """olah on ``127.0.0.1:<free port>`` serving the git repositories under ``<root>/mirrors``.

    Args:
        root: working folder (mirrors, olah's cache and logs, clients' HF_HOME folders); a temporary folder,
            removed by :meth:`stop`, when None.
        python: the Python of olah's environment; :func:`ensure_olah_venv` when None.
        start_timeout: seconds to wait for the server to answer.
    """

    def __init__(
        self, root: Optional[Union[str, os.PathLike]] = None, python: Optional[Path] = None, start_timeout: float = 60
    ):
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="matseg-localhub-") if root is None else root)
        self.python = python
        self.start_timeout = start_timeout
        self.port: Optional[int] = None
        self.process: Optional[subprocess.Popen] = None
        self.startup_seconds: Optional[float] = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise RuntimeError("LocalHub is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def mirrors(self) -> Path:
        return self.root / "mirrors"

    @property
    def log_file(self) -> Path:
        return self.root / "olah.log"

    def start(self) -> "LocalHub":
        if self.process is not None:
            return self
        started = time.monotonic()
        python = self.python or ensure_olah_venv()
        for kind in ("models", "datasets", "spaces"):
            (self.mirrors / kind).mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        config = self.root / "olah.toml"
        config.write_text(
            "[basic]\n"
            'host = "127.0.0.1"\n'
            f"port = {self.port}\n"
            f'repos-path = "{self.root / "cache"}"\n'
            f'mirrors-path = ["{self.mirrors}"]\n'
            f'mirror-netloc = "127.0.0.1:{self.port}"\n'
            f'mirror-lfs-netloc = "127.0.0.1:{self.port}"\n'
            # Upstream = a closed loopback port: nothing ever leaves the machine, even olah's whoami proxy.
            'hf-scheme = "http"\nhf-netloc = "127.0.0.1:9"\nhf-lfs-netloc = "127.0.0.1:9"\n'
            "[accessibility]\noffline = true\n"
        )
        log = open(self.log_file, "ab")
        try:
            self.process = subprocess.Popen(
                [str(python), str(LAUNCHER), "--config", str(config), "--log-path", str(self.root / "logs")],
                cwd=self.root, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() ends it and anything it started
            )
        finally:
            log.close()
        atexit.register(self.stop)  # no orphan server even if the caller never reaches stop()
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"olah exited with code {code} while starting:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if _http_get(self.endpoint + "/api/models/matseg-localhub/ready") in (200, 401, 404):
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"olah did not answer on {self.endpoint} within {self.start_timeout} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        atexit.unregister(self.stop)
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # -- repositories ----------------------------------------------------------------------------------------
    def repo_path(self, repo_id: str, repo_type: str = "dataset") -> Path:
        """The bare git repository that the server serves as ``repo_id``."""
        namespace, name = repo_id.split("/")
        return self.mirrors / f"{repo_type}s" / namespace / name

    def publish(
        self, folder: Union[str, os.PathLike], repo_id: str, repo_type: str = "dataset", message: Optional[str] = None
    ) -> str:
        """Publish ``folder`` as ``repo_id`` via ``publish_folder(git_remote=...)``; returns the commit id."""
        from matseg_hub.hub.publish import publish_folder

        remote = self.repo_path(repo_id, repo_type)
        return publish_folder(folder, repo_id, repo_type, commit_message=message, git_remote=remote)

    # -- clients ---------------------------------------------------------------------------------------------
    def env(self, hf_home: Optional[Union[str, os.PathLike]] = None) -> Dict[str, str]:
        """Environment of a client process: this endpoint, online, no token, a fresh ``HF_HOME``."""
        env = {key: value for key, value in os.environ.items() if key not in _DROPPED_CLIENT_VARIABLES}
        if hf_home is None:
            (self.root / "clients").mkdir(exist_ok=True)
            hf_home = tempfile.mkdtemp(prefix="hf-home-", dir=self.root / "clients")
        no_proxy = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1", "localhost"]))
        env.update({
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
        })
        return env


def run_client(
    code: str, hub: LocalHub, timeout: float = 120, check: bool = True, cwd: Optional[Union[str, os.PathLike]] = None
) -> subprocess.CompletedProcess:
    """Run ``python -c code`` with ``hub.env()`` (text output captured) in an empty folder unless ``cwd`` is given.

    With ``check`` a non-zero exit raises AssertionError holding the client's output and the server log's tail.
    """
    if cwd is None:
        (hub.root / "clients").mkdir(exist_ok=True)
        cwd = tempfile.mkdtemp(prefix="cwd-", dir=hub.root / "clients")
    result = subprocess.run(
        [sys.executable, "-c", code], env=hub.env(), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"client exited with {result.returncode}\n--- stdout\n{result.stdout[-3000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}"
            f"\n--- server log\n{hub.log_tail()}"
        )
    return result


if __name__ == "__main__":  # `python tests/hubserver.py`: make olah's environment (the README's test command, .ci/run)
    try:
        print(ensure_olah_venv())
    except OlahUnavailable as exc:
        sys.exit(f"tests/hubserver.py: error: {exc}")

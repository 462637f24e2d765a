"""Publishing to the Hugging Face Hub (or any Hub-compatible server): the project's single upload path.

Every builder and model publishes a finished folder with :func:`publish_folder`; the repository then holds
exactly the folder's files (files that are no longer in the folder are deleted in the same commit, so a rebuild
with fewer shards never leaves stale shards behind).

Two transports:

* HTTP (default): ``HfApi.create_repo(exist_ok=True)`` + ``HfApi.upload_folder``. ``upload_folder`` is the right
  call for every folder this project writes, from a 6-file model to 300k textures in size-bounded Parquet
  shards: it makes one commit with the given message for ordinary folders, and with ``hf_xet`` (installed with
  ``huggingface_hub``) it streams large folders in several batched commits and resumes an interrupted upload when
  called again. (``upload_large_folder`` gave the same resumability with many unnamed commits; huggingface_hub
  2.x folded it into ``upload_folder``.) The endpoint is ``HF_ENDPOINT`` (see :func:`hub_endpoint`).
* git (``git_remote=``): commit the folder on top of the remote branch and push it. The remote is a path to a
  local bare repository (created when missing) or any git URL, e.g. ``https://huggingface.co/datasets/ns/name``
  (git authenticates through its credential helper; on huggingface.co binary files must go through git-lfs or
  Xet, so prefer the HTTP transport there). Tests use it to publish into the repositories that a local
  Hub-compatible server serves; it also suits self-hosted Hubs that accept git pushes but not the upload API.

Users then load what was published with the ordinary clients, pointed at the same endpoint::

    HF_ENDPOINT=https://hub.example.org python -c "import datasets; datasets.load_dataset('ns/name')"
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Union

from ..errors import MatSegError, MatSegInputError
from ..utils.logging import get_logger

logger = get_logger(__name__)

REPO_TYPES = ("dataset", "model", "space")
# Never published: git metadata and huggingface_hub's own upload bookkeeping inside the folder.
_IGNORED = (".git", ".cache/huggingface")


class HubPublishError(MatSegError):
    """Publishing a folder to a Hub repository failed; the message names the repository and what to do.

    Attributes:
        repo_id: ``namespace/name`` of the target repository.
        repo_type: ``"dataset"``, ``"model"`` or ``"space"``.
    """

    def __init__(self, message: str, repo_id: str, repo_type: str):
        super().__init__(f"{repo_type} repository '{repo_id}': {message}")
        self.repo_id = repo_id
        self.repo_type = repo_type


def hub_endpoint() -> str:
    """The Hub URL that ``huggingface_hub`` talks to: ``HF_ENDPOINT`` when set, else ``https://huggingface.co``."""
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def publish_folder(
    folder: Union[str, os.PathLike],
    repo_id: str,
    repo_type: str = "dataset",
    *,
    token: Optional[Union[str, bool]] = None,
    private: bool = False,
    commit_message: Optional[str] = None,
    revision: Optional[str] = None,
    git_remote: Optional[Union[str, os.PathLike]] = None,
) -> str:
    """Make the repository ``repo_id`` hold exactly the files of ``folder`` in one new commit.

    Args:
        folder: the finished folder (dataset card ``README.md`` + ``data/*.parquet``, a ``save_pretrained``
            folder, a metric Space, ...). ``.git/`` and ``.cache/huggingface/`` inside it are never published.
        repo_id: ``namespace/name``.
        repo_type: ``"dataset"``, ``"model"`` or ``"space"``.
        token: Hub token for the HTTP transport; ``None`` uses the saved login (``hf auth login``) or ``HF_TOKEN``.
        private: create the repository as private when it does not exist yet (HTTP transport).
        commit_message: summary of the commit; defaults to ``"Publish <repo_id>"``.
        revision: branch to commit to (default ``main``; created from the default branch when missing).
        git_remote: publish by ``git push`` to this remote instead of the HTTP API (see the module docstring);
            a local path that does not exist yet becomes a new bare repository.

    Returns:
        The full id (40 hex digits) of the commit that the branch points to afterwards; when the folder
        already matches the branch, nothing is committed and the current commit is returned (git transport).

    Raises:
        MatSegInputError: ``folder`` is not a folder, or ``repo_type``/``repo_id`` are malformed.
        HubPublishError: the upload or the push failed (not logged in, no write access, server unreachable,
            push rejected); the message says which and what to do.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MatSegInputError(f"publish_folder: {folder} is not a folder")
    if repo_type not in REPO_TYPES:
        raise MatSegInputError(f"publish_folder: repo_type must be one of {REPO_TYPES}, got {repo_type!r}")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise MatSegInputError(f"publish_folder: repo_id must look like 'namespace/name', got {repo_id!r}")
    message = commit_message or f"Publish {repo_id}"
    if git_remote is not None:
        return _publish_with_git(folder, repo_id, repo_type, os.fspath(git_remote), message, revision or "main")
    return _publish_with_http(folder, repo_id, repo_type, token, private, message, revision)


def _publish_with_http(
    folder: Path, repo_id: str, repo_type: str, token, private: bool, message: str, revision: Optional[str]
) -> str:
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf_errors

    # The HTTP library's base error (requests, httpx or httpx2 depending on the huggingface_hub version).
    transport_error = getattr(hf_errors, "HTTPError", OSError)
    api = HfApi(token=token)
    endpoint = api.endpoint

    def fail(hint: str) -> HubPublishError:
        return HubPublishError(hint, repo_id, repo_type)

    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type=repo_type,
            folder_path=folder,
            commit_message=message,
            revision=revision,
            ignore_patterns=[f"{name}/**" for name in _IGNORED],
            delete_patterns="*",  # the repository mirrors the folder (.gitattributes is always kept)
        )
    except hf_errors.LocalTokenNotFoundError as exc:
        raise fail(
            f"not logged in to {endpoint}: run `hf auth login` (or set HF_TOKEN, or pass token=) with a write token"
        ) from exc
    except hf_errors.OfflineModeIsEnabled as exc:
        raise fail("HF_HUB_OFFLINE is set: unset it to publish") from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise fail(
            f"not found or not writable with this token on {endpoint}: check the namespace and that the token "
            "has write access to it (`hf auth whoami`)"
        ) from exc
    except hf_errors.HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if status in (401, 403):
            hint = "the token is missing, invalid or read-only: log in with a write token (`hf auth login`)"
        elif status in (404, 405):
            hint = (f"{endpoint} does not accept uploads through the Hub API ({first_line}); if it is a read-only "
                    "mirror, publish with git_remote= to the git repository it serves")
        else:
            hint = f"{endpoint} refused the upload: {first_line}"
        raise fail(hint) from exc
    except (transport_error, OSError) as exc:  # connection refused, DNS, TLS, timeouts
        reason = f"{type(exc).__name__}: {exc}"
        raise fail(f"could not reach {endpoint} ({reason}); check HF_ENDPOINT and the network") from exc
    logger.info("published %s to %s %s at %s", folder, repo_type, repo_id, info.oid)
    return info.oid


def _git(args, cwd: Path, repo_id: str, repo_type: str, env=None) -> str:
    if shutil.which("git") is None:
        raise HubPublishError("publishing with git_remote= needs the `git` command, which is not installed",
                              repo_id, repo_type)
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-2000:]
        raise HubPublishError(f"`git {' '.join(args[:2])}` failed: {detail}", repo_id, repo_type)
    return result.stdout.strip()


def _publish_with_git(folder: Path, repo_id: str, repo_type: str, remote: str, message: str, branch: str) -> str:
    if "://" not in remote and ":" not in remote.split("/")[0]:  # a local path, not a URL or user@host:path
        remote = os.path.abspath(remote)
        if not os.path.exists(remote):  # start a bare repository there, as create_repo(exist_ok=True) does
            Path(remote).parent.mkdir(parents=True, exist_ok=True)
            _git(["init", "--quiet", "--bare", f"--initial-branch={branch}", remote], Path.cwd(), repo_id, repo_type)
    with tempfile.TemporaryDirectory(prefix="matseg-publish-") as tmp:
        work = Path(tmp)
        # A separate git dir whose work tree is the folder itself: nothing is copied, and `add --all` stages
        # additions, changes and deletions relative to the remote branch.
        # Files are published byte for byte, whatever the user's core.autocrlf says.
        env = {**os.environ, "GIT_DIR": str(work / "git"), "GIT_WORK_TREE": str(folder.resolve()),
               "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.autocrlf", "GIT_CONFIG_VALUE_0": "false"}
        run = lambda *args: _git(list(args), work, repo_id, repo_type, env=env)  # noqa: E731
        run("init", "--quiet")
        run("remote", "add", "origin", remote)
        # Start from the branch, or from the default branch when the branch is new, or from nothing.
        base = None
        if run("ls-remote", "--heads", "origin", branch):
            base = branch
        elif run("ls-remote", "origin", "HEAD"):
            base = "HEAD"
        if base is not None:
            run("fetch", "--quiet", "--depth=1", "origin", base)
            run("reset", "--quiet", "--mixed", "FETCH_HEAD")  # HEAD and index = the remote branch
        run("add", "--all", "--force", "--", ".", *[f":(exclude){name}" for name in _IGNORED])
        if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=work, env=env).returncode == 0 and _has_head(run):
            sha = run("rev-parse", "HEAD")
            logger.info("%s %s already matches %s at %s: nothing to publish", repo_type, repo_id, folder, sha)
            return sha
        if not _git_config(run, "user.email"):  # no git identity configured (CI): commit as the tool
            for role in ("AUTHOR", "COMMITTER"):
                env.setdefault(f"GIT_{role}_NAME", "matseg-hub")
                env.setdefault(f"GIT_{role}_EMAIL", "matseg-hub@localhost")
        run("commit", "--quiet", "--no-verify", "--no-gpg-sign", "--allow-empty", "-m", message)
        run("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
        sha = run("rev-parse", "HEAD")
    logger.info("published %s to %s %s at %s (git push to %s)", folder, repo_type, repo_id, sha, remote)
    return sha


def _has_head(run) -> bool:
    try:
        run("rev-parse", "--verify", "--quiet", "HEAD")
        return True
    except HubPublishError:
        return False


def _git_config(run, key: str) -> str:
    try:
        return run("config", "--get", key)
    except HubPublishError:
        return ""

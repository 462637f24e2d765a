"""Start olah (a self-hosted Hugging Face mirror) so that it serves local git repositories like the Hub does.

Runs inside olah's own virtual environment (``tests/hubserver.py`` builds it and starts this file with that
environment's Python); it imports only olah and what olah depends on, never ``matseg_hub`` or pytest.

olah 0.5.4 serves git repositories placed under ``mirrors-path`` (``<mirrors>/{models,datasets,spaces}/<ns>/<name>``,
see its README) for the ``/api/...`` routes (``revision``, ``tree``, ``paths-info``, ``refs``, ``commits``) and for
``resolve``. Three gaps in its local-mirror code break the Hugging Face clients; each is fixed here by replacing
one function of olah's (nothing else changes, and every request that does not concern a local mirror still goes
to olah's own code):

1. ``GET /{type}s/{id}/resolve/{rev}/{path}`` ignores ``Range`` and sends no ``Content-Length``/``ETag``/
   ``X-Repo-Commit`` (``LocalMirrorRepo.get_file`` returns the whole blob and olah wraps it in a bare 200
   ``StreamingResponse``). ``datasets`` streaming (``HfFileSystem``, pyarrow reading a Parquet footer with a
   range request) then gets the whole file where it asked for its last bytes: "Parquet magic bytes not found in
   footer". Fixed by :func:`resolve_local_file`: 200/206/416 with ``Content-Range``, ``Accept-Ranges``,
   ``Content-Length``, ``ETag`` (git blob id, or the sha256 of an LFS object), ``X-Repo-Commit``.
2. An unknown revision or a missing file answers ``401 RepoNotFound`` where the Hub answers
   ``404 RevisionNotFound`` / ``404 EntryNotFound`` (olah falls through to its offline cache, finds nothing and
   reports the repository as missing). ``evaluate.load`` first asks for the revision ``v<evaluate version>``
   and falls back to ``main`` only on a 404, so every metric Space failed to load. Fixed by
   :func:`resolve_local_file` and :func:`resolve_requested_commit`.
3. ``GET /api/{type}s/{id}`` (repository info without a revision: ``HfApi.dataset_info``, ``repo_exists``,
   transformers' model-info probe) asks upstream or olah's metadata cache for the newest commit and never looks
   at the local mirror, so it answers 401. Fixed by :func:`get_latest_commit` (the mirror's ``HEAD``).

Usage (olah's own command-line options): ``<olah-venv>/bin/python olah_launcher.py -c olah.toml --log-path DIR``.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Optional, Tuple

import git
import gitdb
from fastapi.responses import JSONResponse, Response

import olah.server as olah_server
import olah.server_api_routes as olah_api_routes
import olah.server_file_routes as olah_file_routes

_LFS_POINTER = re.compile(
    rb"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize ([0-9]+)\n?"
)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def _hub_error(status: int, code: str, message: str) -> Response:
    """An error the way the Hub sends it: huggingface_hub maps ``X-Error-Code`` to its exception classes."""
    headers = {"X-Error-Code": code, "X-Error-Message": message}
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _open_local_mirror(app, repo_type: str, org: Optional[str], repo: str) -> Optional[git.Repo]:
    """The git repository of ``repo_type/org/repo`` under one of olah's ``mirrors-path`` folders, or None."""
    for root in app.state.app_settings.config.mirrors_path:
        path = os.path.join(root, repo_type, org or "", repo)
        if os.path.isdir(path):
            try:
                return git.Repo(path)
            except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError):
                continue
    return None


def _commit(local: git.Repo, revision: str):
    try:
        return local.commit(revision)
    except (gitdb.exc.BadName, gitdb.exc.BadObject, ValueError):
        return None


def _byte_range(header: Optional[str], size: int) -> Optional[Tuple[int, int]]:
    """``(start, end)`` (inclusive) of a single ``bytes=`` range; None: send everything; ValueError: unsatisfiable."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None  # several ranges or another unit: RFC 9110 allows answering with the whole file
    if match.group(1) == "":
        start, end = max(size - int(match.group(2)), 0), size - 1
    else:
        start = int(match.group(1))
        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
    if start > end or start >= size:
        raise ValueError(header)
    return start, end


async def resolve_local_file(
    app, repo_type: str, org: Optional[str], repo: str, revision: str, file_path: str, request, method: str
) -> Optional[Response]:
    """Answer ``HEAD``/``GET .../resolve/{revision}/{file_path}`` from a local mirror; None when there is none."""
    local = _open_local_mirror(app, repo_type, org, repo)
    if local is None:
        return None
    with local:
        commit = _commit(local, revision)
        if commit is None:
            return _hub_error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        try:
            entry = commit.tree / file_path.strip("/")
        except KeyError:
            entry = None
        if entry is None or entry.type != "blob":
            return _hub_error(404, "EntryNotFound", f"{file_path} does not exist on {revision}")
        data = entry.data_stream.read()
        headers = {"X-Repo-Commit": commit.hexsha, "ETag": f'"{entry.hexsha}"', "Accept-Ranges": "bytes"}
        pointer = _LFS_POINTER.fullmatch(data) if len(data) < 1024 else None
        if pointer is not None:  # an LFS pointer: serve the object (git-lfs keeps it under <git dir>/lfs/objects)
            oid = pointer.group(1).decode()
            object_path = os.path.join(local.git_dir, "lfs", "objects", oid[:2], oid[2:4], oid)
            if not os.path.isfile(object_path):
                return _hub_error(404, "EntryNotFound", f"LFS object {oid} of {file_path} is missing")
            with open(object_path, "rb") as handle:
                data = handle.read()
            headers.update({"ETag": f'"{oid}"', "X-Linked-Etag": f'"{oid}"', "X-Linked-Size": str(len(data))})
    size = len(data)
    try:
        byte_range = _byte_range(request.headers.get("range") if method == "GET" else None, size)
    except ValueError:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}", **headers})
    status = 200
    if byte_range is not None:
        start, end = byte_range
        data = data[start : end + 1]
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(len(data))
    body = b"" if method == "HEAD" else data
    return Response(content=body, status_code=status, headers=headers, media_type="application/octet-stream")


def _patch_file_route(name: str, method: str) -> None:
    original = getattr(olah_file_routes, name)

    async def patched(app, repo_type, org, repo, commit, file_path, request):
        repo_ref = olah_file_routes.build_repo_ref(repo_type, org, repo)
        access_error = await olah_file_routes.ensure_repo_access(app, repo_ref)
        if access_error is not None:  # olah's [accessibility] rules still apply
            return access_error
        response = await resolve_local_file(app, repo_type, org, repo, commit, file_path, request, method)
        if response is None:
            return await original(app, repo_type, org, repo, commit, file_path, request)
        return response

    patched.__name__ = name
    setattr(olah_file_routes, name, patched)  # the route handlers look the name up in the module at call time


def apply_patches() -> None:
    """Install the three fixes described in the module docstring into the imported olah modules."""
    _patch_file_route("file_get_common", "GET")
    _patch_file_route("file_head_common", "HEAD")

    original_latest = olah_api_routes.get_latest_commit
    original_resolve = olah_api_routes.resolve_requested_commit

    async def get_latest_commit(app, repo_ref, authorization):
        local = _open_local_mirror(app, repo_ref.repo_type, repo_ref.org, repo_ref.repo)
        if local is None:
            return await original_latest(app, repo_ref, authorization)
        with local:
            try:
                return local.head.commit.hexsha
            except ValueError:  # a repository without commits
                return None

    async def resolve_requested_commit(app, repo_ref, requested_commit, authorization, **kwargs):
        local = _open_local_mirror(app, repo_ref.repo_type, repo_ref.org, repo_ref.repo)
        if local is not None:
            with local:
                if _commit(local, requested_commit) is None:
                    return None, _hub_error(404, "RevisionNotFound", f"Invalid rev id: {requested_commit}")
        return await original_resolve(app, repo_ref, requested_commit, authorization, **kwargs)

    olah_api_routes.get_latest_commit = get_latest_commit
    olah_api_routes.resolve_requested_commit = resolve_requested_commit


def main(argv=None) -> None:
    apply_patches()
    sys.argv = ["olah-cli", *(sys.argv[1:] if argv is None else argv)]
    olah_server.cli()


if __name__ == "__main__":
    main()

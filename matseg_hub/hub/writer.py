"""Writing Hub dataset repositories: size-bounded Parquet shards + a dataset card, streamed, resumable.

Every builder (benchmark, synthetic scenes, textures, PBR) goes through :class:`DatasetRepoWriter`:

* rows are encoded with the builder's :class:`datasets.Features` (declared once, reused for reading) and
  appended to a Parquet file in bounded row groups, so memory stays flat in the number of rows;
* a shard is closed when it reaches ``max_shard_size`` bytes and appears atomically (temp name + rename);
* the folder is built in ``<output>.partial`` and moved to ``<output>`` only by :meth:`finalize`, so an
  interrupted run never leaves a half-written output folder; rerunning resumes from the closed shards whose
  inputs are unchanged (each job's progress manifest fingerprints the inputs every shard consumed), and a resumed
  build ends with the bytes of an uninterrupted one;
* the writer owns only what it wrote: an existing ``<output>`` must be empty or this command's earlier output
  (its ``.matseg_output.json`` lists the files written; ``overwrite`` replaces only those), an output that
  overlaps a source is refused, and a lock file per job stops a second process writing the same job;
* work can be split with ``shard_index``/``num_shards`` (a job array, a worker pool): each job writes its own
  shard files and progress manifest; the job that finishes last writes the card and moves the folder in place.

The resulting folder is a Hub dataset repository: ``load_dataset(folder)`` and ``load_dataset(folder,
streaming=True)`` read it, and :func:`matseg_hub.hub.publish.publish_folder` uploads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from ..errors import MatSegFormatError, MatSegInputError, MatSegOutputError
from ..utils.files import (OUTPUT_MANIFEST, RUN_PARAMS_FILE, atomic_write_bytes, atomic_write_text, cannot_write,
                           check_output_folder, check_run_fingerprint, check_sources_apart, holds_lock, lock_holder,
                           read_output_manifest, release_lock, remove_own_files, take_lock, write_output_manifest)
from ..utils.launchers import launched_shard
from ..utils.logging import get_logger

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]
_PROGRESS_DIR = ".matseg_build"
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_size(size: Union[int, str]) -> int:
    """``"500MB"`` -> 500_000_000; ``"64MiB"`` -> 67_108_864; an int is returned as is (bytes)."""
    if isinstance(size, int):
        if size <= 0:
            raise MatSegInputError(f"a size must be positive, got {size}")
        return size
    match = _SIZE_RE.match(str(size))
    if not match or (match.group(2) or "").upper() not in _UNITS:
        raise MatSegInputError(f"cannot read the size {size!r}: use a number of bytes or e.g. '500MB', '2GB', '64MiB'")
    value = int(float(match.group(1)) * _UNITS[(match.group(2) or "").upper()])
    if value <= 0:
        raise MatSegInputError(f"a size must be positive, got {size!r}")
    return value


_MANIFEST_VERSION = 2


@dataclass
class _Manifest:
    """What one job has finished: the inputs it consumed and the closed shards holding their rows (for resuming).

    ``inputs`` lists ``[key, fingerprint]`` of every item consumed (written or skipped), in order; a shard's
    ``end`` is how many inputs had been consumed when it closed (``full``: closed for reaching the size bound);
    a skipped item's ``at`` is its position in ``inputs``.
    """

    shard_index: int
    num_shards: int
    # {"file", "num_rows", "num_bytes", "keys", "end", "full"}
    shards: List[Dict[str, Any]] = field(default_factory=list)
    skipped: List[Dict[str, Any]] = field(default_factory=list)  # {"key", "reason", "at"}
    inputs: List[List[str]] = field(default_factory=list)
    complete: bool = False
    version: int = _MANIFEST_VERSION

    @property
    def committed(self) -> int:
        """How many inputs are safely done: all of them when complete, else up to the last closed shard."""
        if self.complete:
            return len(self.inputs)
        return self.shards[-1]["end"] if self.shards else 0

    @property
    def done_keys(self) -> Set[str]:
        return {key for key, _ in self.inputs[: self.committed]}


class DatasetRepoWriter:
    """Stream rows into size-bounded Parquet shards of one split of a Hub dataset folder.

    Args:
        output_dir: final folder (a Hub dataset repo). The work happens in ``<output_dir>.partial``.
        features: the rows' :class:`datasets.Features`.
        split: split name; shards are ``data/<split>-<job>-<k>.parquet``.
        max_shard_size: bytes or a string such as ``"500MB"``; a shard is closed once it reaches it.
        row_group_size: rows buffered before they are written (bounds memory; images are the big part).
        shard_index, num_shards: this job's part of a job array (see the module docstring).
        resume: reuse the closed shards of an earlier interrupted run of the same job (default). With
            ``resume=False`` an existing ``.partial`` folder of this job is discarded.
        kind: the command writing the folder (``"build benchmark"``), recorded in its output manifest
            (:mod:`matseg_hub.utils.files`); an existing ``output_dir`` must be empty or that command's output.
        sources: local source folders; an output equal to, inside or holding one is refused.
        overwrite: rebuild over a finished output of the same ``kind`` (only the files it lists are replaced or
            deleted; other files are kept). Without it such an output is refused.
        inputs: this job's items in order, as ``(key, fingerprint)`` (e.g. :func:`~matseg_hub.utils.files.
            files_fingerprint` of the files a row is made from). On resume, closed shards are kept only while the
            inputs they consumed are unchanged: from the first changed, added or vanished input on, shards are
            redone, so a resumed build equals an uninterrupted build of the current inputs. ``None``: keys only.
        settings: the run's settings (JSON); a resumed run with other settings raises
            :class:`~matseg_hub.errors.MatSegInputError`, or, with ``resume=False``, discards every job's work.

    Use ``with DatasetRepoWriter(...) as writer:`` then ``writer.done_keys`` (rows already written by an earlier
    run), ``writer.write(row, key=...)``, ``writer.skip(key, reason)``; then :meth:`finalize` with the card.
    While a writer is open its job holds a lock file: a second process building the same job of the same output
    gets :class:`~matseg_hub.errors.MatSegOutputError`.

    Raises:
        MatSegOutputError: the output folder is not this command's (or overlaps a source), another process is
            writing this job, or the disk refuses the write.
    """

    def __init__(self, output_dir: PathLike, features, split: str = "train", max_shard_size: Union[int, str] = "500MB",
                 row_group_size: int = 64, shard_index: int = 0, num_shards: int = 1, resume: bool = True, *,
                 kind: str = "build", sources: Iterable[Optional[PathLike]] = (), overwrite: bool = False,
                 inputs: Optional[Sequence[Tuple[str, str]]] = None, settings: Optional[Mapping[str, Any]] = None):
        check_job(shard_index, num_shards)
        self.output_dir = Path(output_dir)
        self.work_dir = self.output_dir.with_name(self.output_dir.name + ".partial")
        self.kind = kind
        self.features = features
        self.split = split
        self.max_shard_size = parse_size(max_shard_size)
        self.row_group_size = max(1, int(row_group_size))
        self.shard_index = shard_index
        self.num_shards = num_shards
        self._inputs = None if inputs is None else [[str(k), str(f)] for k, f in inputs]
        self._fingerprints = {k: f for k, f in (self._inputs or [])}
        progress_dir = self.work_dir / _PROGRESS_DIR
        self._check_folders(list(sources), overwrite)
        self._manifest_path = progress_dir / f"{split}-{shard_index:05d}-of-{num_shards:05d}.json"
        self._lock_path = self._manifest_path.with_suffix(".lock")
        try:
            progress_dir.mkdir(parents=True, exist_ok=True)  # first: a work folder with it is this tool's
            (self.work_dir / "data").mkdir(exist_ok=True)
        except OSError as exc:
            raise cannot_write(self.work_dir, exc) from exc
        self._acquire()
        try:
            if settings is not None:
                self._check_settings(dict(settings), resume)
            self._manifest = self._load_manifest() if resume else None
            if self._manifest is None:
                self._discard_own_shards()
                self._manifest = _Manifest(shard_index, num_shards)
                self._save_manifest()
            self._remove_unfinished_files()
        except OSError as exc:
            self.release()
            raise cannot_write(self.work_dir, exc) from exc
        except BaseException:
            self.release()
            raise
        self._buffer: List[Dict[str, Any]] = []
        self._buffer_keys: List[str] = []
        self._writer = None
        self._open_path: Optional[Path] = None
        self._open_keys: List[str] = []
        self._open_rows = 0
        self._schema = features.arrow_schema

    # -- ownership and locking ------------------------------------------------------------------------------
    def _check_folders(self, sources: List[Optional[PathLike]], overwrite: bool) -> None:
        own = check_output_folder(self.output_dir, self.kind, sources=sources)
        check_sources_apart(self.work_dir, sources, option="the work folder")
        work = self.work_dir
        if work.exists():
            ours = work.is_dir() and ((work / _PROGRESS_DIR).is_dir() or not any(work.iterdir())
                                      or (read_output_manifest(work) or {}).get("kind") == self.kind)
            if not ours:
                raise MatSegOutputError(f"{work} (the work folder of --output {self.output_dir}) exists and was not "
                                        "made by this tool; nothing in it was changed. Move it away or choose "
                                        "another --output", path=work)
        if own is not None and not (work / _PROGRESS_DIR).is_dir() and not overwrite:
            array = (f"; a job of a {self.num_shards}-job array cannot add to it: run every job of the array again "
                     "with --overwrite") if self.num_shards > 1 else ""
            raise MatSegOutputError(
                f"{self.output_dir} is already a finished dataset (`matseg {self.kind}`){array}. Pass --overwrite "
                "(overwrite=True) to rebuild it (only the files this tool wrote there are replaced), or choose "
                "another --output", path=self.output_dir)

    def _acquire(self) -> None:
        if not take_lock(self._lock_path, other_hosts_stale=launched_shard()):
            raise MatSegOutputError(
                f"{self.output_dir} is being built right now by another process ({lock_holder(self._lock_path) or '?'}"
                f", job {self.shard_index} of {self.num_shards}); wait for it to finish or choose another --output. "
                f"If no such process runs any more, delete {self._lock_path}", path=self.output_dir)

    def release(self) -> None:
        """Release this job's lock (done by ``with`` and :meth:`finalize`; call it for a writer used otherwise)."""
        release_lock(self._lock_path)

    def _check_settings(self, settings: Dict[str, Any], resume: bool) -> None:
        progress_dir = self.work_dir / _PROGRESS_DIR
        run_file = progress_dir / RUN_PARAMS_FILE
        earlier = [p for p in progress_dir.glob("*.json") if p.name != RUN_PARAMS_FILE]
        if not run_file.is_file() and earlier:  # an interrupted run from before settings were recorded
            if resume:
                raise MatSegInputError(f"{self.work_dir} holds an interrupted run whose settings were not recorded; "
                                       "pass --no-resume (resume=False) to discard it, or use a new --output folder")
            discard = True
            check_run_fingerprint(run_file, settings, output=self.output_dir)
        else:
            discard = check_run_fingerprint(run_file, settings, output=self.output_dir, discard=not resume)
        if discard:  # every job's work was made with other settings
            for path in (self.work_dir / "data").glob("*"):
                path.unlink()
            for path in earlier:
                path.unlink()

    # -- resume bookkeeping -------------------------------------------------------------------------------
    def _load_manifest(self) -> Optional[_Manifest]:
        if not self._manifest_path.exists():
            return None
        data = json.loads(self._manifest_path.read_text())
        if data.get("version") != _MANIFEST_VERSION:
            logger.warning("%s was left by an older version that recorded no input fingerprints: redoing job %d",
                           self.work_dir, self.shard_index)
            return None
        manifest = _Manifest(**data)
        current = manifest.inputs if self._inputs is None else self._inputs
        old = manifest.inputs[: manifest.committed]
        same = 0
        while same < min(len(old), len(current)) and list(old[same]) == list(current[same]):
            same += 1
        on_disk = all((self.work_dir / "data" / s["file"]).exists() for s in manifest.shards)
        if not (manifest.complete and same == len(old) == len(current) and on_disk):
            kept = []
            for shard in manifest.shards:
                if not (shard["full"] and shard["end"] <= same and (self.work_dir / "data" / shard["file"]).exists()):
                    break
                kept.append(shard)
            if same < len(old):
                logger.warning("%s: input %r changed or disappeared since the interrupted run; redoing its shard "
                               "and the later ones", self.output_dir, old[same][0])
            for shard in manifest.shards[len(kept):]:
                with contextlib.suppress(FileNotFoundError):
                    (self.work_dir / "data" / shard["file"]).unlink()
            end = kept[-1]["end"] if kept else 0
            manifest.shards, manifest.inputs, manifest.complete = kept, manifest.inputs[:end], False
            manifest.skipped = [s for s in manifest.skipped if s["at"] < end]
            self._manifest = manifest
            self._save_manifest()
        if manifest.complete:
            logger.info("job %d/%d of %s had already finished", self.shard_index, self.num_shards, self.output_dir)
        elif manifest.shards:
            logger.info("resuming %s: %d rows already in %d closed shards", self.work_dir,
                        sum(s["num_rows"] for s in manifest.shards), len(manifest.shards))
        return manifest

    def _save_manifest(self) -> None:
        atomic_write_text(self._manifest_path, json.dumps(self._manifest.__dict__, indent=1))

    def _own_prefix(self) -> str:
        return f"{self.split}-{self.shard_index:05d}-"

    def _discard_own_shards(self) -> None:
        for path in (self.work_dir / "data").glob(self._own_prefix() + "*"):
            path.unlink()

    def _remove_unfinished_files(self) -> None:
        kept = {s["file"] for s in self._manifest.shards}
        for path in (self.work_dir / "data").glob(self._own_prefix() + "*"):
            if path.name not in kept:
                path.unlink()

    @property
    def done_keys(self) -> Set[str]:
        """Keys of rows that an earlier run of this job already wrote (or skipped): don't redo them."""
        return self._manifest.done_keys

    @property
    def num_rows(self) -> int:
        return sum(s["num_rows"] for s in self._manifest.shards) + self._open_rows + len(self._buffer)

    @property
    def skipped(self) -> List[Dict[str, str]]:
        return [{"key": s["key"], "reason": s["reason"]} for s in self._manifest.skipped]

    def _consume(self, key: str) -> None:
        self._manifest.inputs.append([key, self._fingerprints.get(key, "")])

    # -- writing --------------------------------------------------------------------------------------------
    def write(self, row: Mapping[str, Any], key: str) -> None:
        """Append one row (a plain dict matching ``features``). ``key`` identifies it for resuming."""
        self._buffer.append(self.features.encode_example(dict(row)))
        self._buffer_keys.append(key)
        self._consume(key)
        if len(self._buffer) >= self.row_group_size:
            self._flush()

    def skip(self, key: str, reason: str) -> None:
        """Record an item that was reported and left out (``--skip-bad``); it is listed in the card."""
        self._manifest.skipped.append({"key": key, "reason": reason, "at": len(self._manifest.inputs)})
        self._consume(key)
        self._save_manifest()

    def write_from(self, key: str, make_row: Callable[[], Mapping[str, Any]], skip_bad: bool,
                   reason: Callable[[str], str] = str) -> Optional[Mapping[str, Any]]:
        """Write ``make_row()`` under ``key`` and return it; when it raises :class:`MatSegFormatError` and
        ``skip_bad``, log and record the item as skipped (``reason(message)`` goes into the card) and return
        ``None``; without ``skip_bad`` the error propagates (the output folder is left as it was)."""
        try:
            row = make_row()
        except MatSegFormatError as exc:
            if not skip_bad:
                raise
            logger.warning("skipping %s: %s", key, exc)
            self.skip(key, reason(str(exc)))
            return None
        self.write(row, key=key)
        return row

    def write_all(self, items: Iterable[Any], key: Callable[[Any], str], make_row: Callable[[Any], Mapping[str, Any]],
                  skip_bad: bool, *, desc: str, unit: str) -> None:
        """:meth:`write_from` for every item whose ``key(item)`` is not done yet, with a progress bar."""
        from ..utils.logging import progress

        todo = [item for item in items if key(item) not in self.done_keys]
        for item in progress(todo, total=len(todo), desc=desc, unit=unit):
            self.write_from(key(item), lambda: make_row(item), skip_bad)

    def close_nonempty(self, nothing: str, source: PathLike) -> Dict[str, int]:
        """:meth:`close`, then :meth:`split_info`; a single job that wrote no row raises
        ``MatSegFormatError(nothing, path=source)`` (nothing to build: the output folder is left as it was)."""
        self.close()
        info = self.split_info()
        if info["num_examples"] == 0 and self.num_shards == 1:
            raise MatSegFormatError(nothing, path=source)
        return info

    def _flush(self) -> None:
        if not self._buffer:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self._buffer, schema=self._schema)
        if self._writer is None:
            k = len(self._manifest.shards)
            final = self.work_dir / "data" / f"{self._own_prefix()}{k:05d}.parquet"
            self._open_path = final.with_name(final.name + ".incomplete")
            self._writer = pq.ParquetWriter(self._open_path, self._schema, compression="zstd" if _has_zstd() else "snappy")
        self._writer.write_table(table, row_group_size=len(self._buffer))
        self._open_rows += len(self._buffer)
        self._open_keys.extend(self._buffer_keys)
        self._buffer.clear()
        self._buffer_keys.clear()
        if self._open_path.stat().st_size >= self.max_shard_size:
            self._close_shard(full=True)

    def _close_shard(self, full: bool = False) -> None:
        if self._writer is None:
            return
        self._writer.close()
        final = self._open_path.with_name(self._open_path.name[: -len(".incomplete")])
        os.replace(self._open_path, final)
        self._manifest.shards.append({"file": final.name, "num_rows": self._open_rows,
                                      "num_bytes": final.stat().st_size, "keys": self._open_keys,
                                      "end": len(self._manifest.inputs), "full": full})
        self._save_manifest()
        self._writer, self._open_path, self._open_keys, self._open_rows = None, None, [], 0

    def close(self) -> None:
        """Write buffered rows and close the open shard (the job's rows are then safe on disk)."""
        try:
            self._flush()
            self._close_shard()
        except OSError as exc:
            raise cannot_write(self.work_dir, exc) from exc

    def __enter__(self) -> "DatasetRepoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.close()
            else:  # keep what was closed; the open shard is dropped and its rows redone on resume
                if self._writer is not None:
                    with contextlib.suppress(Exception):
                        self._writer.close()
                    with contextlib.suppress(FileNotFoundError):
                        self._open_path.unlink()
                self._writer = None
        finally:
            self.release()

    # -- finishing ------------------------------------------------------------------------------------------
    def finalize(self, card: Union[str, Callable[[Dict[str, int], List[Dict[str, str]]], str]],
                 extra_files: Union[None, Mapping[str, bytes], Callable[[], Mapping[str, bytes]]] = None
                 ) -> Optional[Path]:
        """Mark this job complete; when every job of the array is complete, write the card and move in place.

        The files go into ``output_dir`` with its output manifest (``.matseg_output.json``: the kind and every
        file written). A new folder is moved in place whole; into an existing one (empty, or this command's
        earlier output rebuilt with ``overwrite``) the files are moved one by one: the earlier output's own files
        are replaced or deleted, every other file is kept, and a file this tool did not write that has the name of
        one it writes stops the move (:class:`~matseg_hub.errors.MatSegOutputError`, the finished work kept).

        Args:
            card: the dataset card (``README.md``) with its YAML header (see :func:`dataset_card_yaml`), or a
                function ``(split_info, skipped) -> card text`` called once every job has finished, so that the
                card's counts cover the whole array (preferred with job arrays). A finished text card whose
                ``num_examples``/``num_bytes`` no longer match the shards is corrected.
            extra_files: more files for the repository (e.g. a preview picture), relative path -> bytes, or a
                function returning them, called only by the job that finalizes (previews made from the inputs).

        Returns:
            the final folder, or ``None`` when other jobs of the array still run (the last one finalizes).
        """
        if not holds_lock(self._lock_path):
            self._acquire()
        try:
            self.close()
            self._manifest.complete = True
            self._save_manifest()
            progress_dir = self.work_dir / _PROGRESS_DIR
            try:
                manifests = [json.loads(p.read_text()) for p in progress_dir.glob(f"{self.split}-*.json")]
            except FileNotFoundError:  # published by another job that finished at the same moment
                return None
            if sum(1 for m in manifests if m["complete"] and m["num_shards"] == self.num_shards) < self.num_shards:
                logger.info("job %d/%d done; the last job of the array finalizes %s", self.shard_index,
                            self.num_shards, self.output_dir)
                return None
            finalize_lock = progress_dir / "finalize.lock"
            try:
                if not take_lock(finalize_lock, other_hosts_stale=launched_shard()):
                    return None
            except FileNotFoundError:  # another job of the array finished at the same moment and published it
                return None
            try:
                info, skipped = self.split_info(), self.all_skipped()
                card_text = card(info, skipped) if callable(card) else _refresh_split_numbers(card, self.split, info)
                atomic_write_text(self.work_dir / "README.md", card_text)
                extra = extra_files() if callable(extra_files) else extra_files
                for rel, data in (extra or {}).items():
                    atomic_write_bytes(self.work_dir / rel, data)
                self._publish()
            finally:
                release_lock(finalize_lock)
        except OSError as exc:
            raise cannot_write(self.output_dir if self.output_dir.exists() else self.work_dir, exc) from exc
        finally:
            self.release()
        logger.info("wrote %s", self.output_dir)
        return self.output_dir

    def _publish(self) -> None:
        """Move the finished work folder's files into ``output_dir`` (see :meth:`finalize`)."""
        progress_dir = self.work_dir / _PROGRESS_DIR
        files = sorted(p.relative_to(self.work_dir).as_posix() for p in self.work_dir.rglob("*")
                       if p.is_file() and progress_dir not in p.parents and p.name != OUTPUT_MANIFEST)
        if not self.output_dir.exists():
            write_output_manifest(self.work_dir, self.kind, files)
            shutil.rmtree(progress_dir)
            os.replace(self.work_dir, self.output_dir)
            return
        own = check_output_folder(self.output_dir, self.kind)
        old = set((own or {}).get("files") or [])
        foreign = [f for f in files if (self.output_dir / f).exists() and f not in old]
        if foreign:
            raise MatSegOutputError(
                f"{self.output_dir / foreign[0]} was not written by this tool and would be replaced; nothing in "
                f"{self.output_dir} was changed. Move that file away and rerun to finish (the finished build waits "
                f"in {self.work_dir})", path=self.output_dir / foreign[0])
        write_output_manifest(self.output_dir, self.kind, old | set(files))  # a crash below leaves all marked own
        for rel in files:
            target = self.output_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.work_dir / rel, target)
        remove_own_files(self.output_dir, old - set(files))
        write_output_manifest(self.output_dir, self.kind, files)
        shutil.rmtree(progress_dir)
        for folder in sorted((p for p in self.work_dir.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                folder.rmdir()
        with contextlib.suppress(OSError):
            self.work_dir.rmdir()
        if self.work_dir.exists():
            logger.warning("%s holds files this tool did not write; left in place", self.work_dir)

    def split_info(self) -> Dict[str, int]:
        """``{"num_examples", "num_bytes"}`` over every job's closed shards (for the card's ``dataset_info``)."""
        rows = nbytes = 0
        for path in (self.work_dir / _PROGRESS_DIR).glob(f"{self.split}-*.json"):
            for shard in json.loads(path.read_text())["shards"]:
                rows += shard["num_rows"]
                nbytes += shard["num_bytes"]
        return {"num_examples": rows, "num_bytes": nbytes}

    def all_skipped(self) -> List[Dict[str, str]]:
        """Skipped items over every job of the array."""
        out: List[Dict[str, str]] = []
        for path in sorted((self.work_dir / _PROGRESS_DIR).glob(f"{self.split}-*.json")):
            out.extend({"key": s["key"], "reason": s["reason"]} for s in json.loads(path.read_text())["skipped"])
        return out


def _refresh_split_numbers(card_text: str, split: str, info: Mapping[str, int]) -> str:
    """Set ``num_examples``/``num_bytes`` of ``split`` in a card's YAML ``dataset_info`` to the final shard totals."""
    import yaml

    if not card_text.startswith("---\n"):
        return card_text
    end = card_text.index("\n---", 4)
    meta = yaml.safe_load(card_text[4:end])
    for entry in ((meta or {}).get("dataset_info") or {}).get("splits") or []:
        if entry.get("name") == split and (entry.get("num_examples"), entry.get("num_bytes")) != \
                (info["num_examples"], info["num_bytes"]):
            entry["num_examples"], entry["num_bytes"] = int(info["num_examples"]), int(info["num_bytes"])
            return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + card_text[end + 1:]
    return card_text


def _has_zstd() -> bool:
    import pyarrow as pa

    return pa.Codec.is_available("zstd")


def dataset_card_yaml(features, splits: Mapping[str, Mapping[str, int]], *, license: str, pretty_name: str,
                      task_categories: Sequence[str] = (), tags: Sequence[str] = (), size_category: Optional[str] = None,
                      extra: Optional[Mapping[str, Any]] = None) -> str:
    """The YAML header of a dataset card: ``configs`` (Parquet data files per split) and ``dataset_info``.

    Args:
        features: the rows' :class:`datasets.Features`.
        splits: split name -> ``{"num_examples": int, "num_bytes": int}``.
    """
    import yaml

    meta: Dict[str, Any] = {"license": license, "pretty_name": pretty_name}
    if task_categories:
        meta["task_categories"] = list(task_categories)
    if tags:
        meta["tags"] = list(tags)
    if size_category:
        meta["size_categories"] = [size_category]
    meta["configs"] = [{"config_name": "default",
                        "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in splits]}]
    meta["dataset_info"] = {
        "features": features._to_yaml_list(),
        "splits": [{"name": s, "num_bytes": int(v["num_bytes"]), "num_examples": int(v["num_examples"])}
                   for s, v in splits.items()],
    }
    meta.update(extra or {})
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` tag for ``n`` rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def looks_like_repo_id(text: str) -> bool:
    """``"namespace/name"`` (what the Hub calls a repo id), as opposed to a local path."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~"))


def is_built_dataset_folder(path: PathLike) -> bool:
    """A folder written by a builder / cloned from the Hub: Parquet files under ``data/`` (and a card)."""
    path = Path(path)
    return (path / "data").is_dir() and any((path / "data").glob("*.parquet"))


def load_dataset_source(source: PathLike, required_columns: Iterable[str], *, split: str, streaming: bool,
                        what: str = "dataset"):
    """``datasets.load_dataset`` on a built folder or Hub id, with typed errors and image columns left encoded.

    Returns:
        the split as a ``Dataset`` / ``IterableDataset`` whose ``Image`` columns are cast to ``decode=False``
        (``{"bytes", "path"}`` dicts: decode them with :mod:`matseg_hub.utils.images`).

    Raises:
        MatSegInputError: a missing local path, or a dataset ``datasets`` cannot load.
        MatSegFormatError: required columns are missing.
    """
    from datasets import Image, load_dataset

    from ..errors import MatSegError

    if not Path(source).exists() and not looks_like_repo_id(str(source)):
        raise MatSegInputError(f"{source} does not exist: give a folder, a built dataset folder or a Hub dataset id "
                               f"such as 'namespace/name'")
    try:
        ds = load_dataset(str(source), split=split, streaming=streaming)
    except MatSegError:
        raise
    except Exception as exc:  # datasets raises many kinds (FileNotFoundError, DatasetNotFoundError, ValueError, ...)
        raise MatSegInputError(f"cannot load the {what} {str(source)!r} (split {split!r}): {exc}") from exc
    missing = set(required_columns) - set(ds.features or {})
    if missing:
        raise MatSegFormatError(f"not a {what}: missing columns {sorted(missing)}", path=str(source))
    for column, feature in (ds.features or {}).items():
        if isinstance(feature, Image):
            ds = ds.cast_column(column, Image(decode=False))
    return ds


def check_job(shard_index: int, num_shards: int) -> None:
    """Validate a job-array position (``--shard i --num-shards n``): ``n >= 1`` and ``0 <= i < n``."""
    if not isinstance(num_shards, int) or num_shards < 1:
        raise MatSegInputError(f"--num-shards must be a whole number >= 1, got {num_shards!r}")
    if not isinstance(shard_index, int) or not 0 <= shard_index < num_shards:
        raise MatSegInputError(f"--shard must be in [0, {num_shards}) (job indices start at 0), got {shard_index!r}")


def iter_job_items(items: Iterable[Any], shard_index: int, num_shards: int) -> Iterable[Any]:
    """The items of job ``shard_index`` out of ``num_shards``: every ``num_shards``-th, starting at ``shard_index``.

    Raises:
        MatSegInputError: at the call (not on first iteration) for an invalid job position.
    """
    check_job(shard_index, num_shards)
    return (item for i, item in enumerate(items) if i % num_shards == shard_index)

"""Writing Hub dataset repositories: size-bounded Parquet shards + a dataset card, streamed, resumable.

Every builder (benchmark, synthetic scenes, textures, PBR) goes through :class:`DatasetRepoWriter`:

* rows are encoded with the builder's :class:`datasets.Features` (declared once, reused for reading) and
  appended to a Parquet file in bounded row groups, so memory stays flat in the number of rows;
* a shard is closed when it reaches ``max_shard_size`` bytes and appears atomically (temp name + rename);
* the folder is built in ``<output>.partial`` and moved to ``<output>`` only by :meth:`finalize`, so an
  interrupted run never leaves a half-written output folder; rerunning resumes from the closed shards;
* work can be split with ``shard_index``/``num_shards`` (a job array, a worker pool): each job writes its own
  shard files and progress manifest; the job that finishes last writes the card and moves the folder in place.

The resulting folder is a Hub dataset repository: ``load_dataset(folder)`` and ``load_dataset(folder,
streaming=True)`` read it, and :func:`matseg_hub.hub.publish_folder` uploads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Union

from .errors import MatSegFormatError, MatSegInputError
from .utils.files import atomic_write_text
from .utils.logging import get_logger

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


@dataclass
class _Manifest:
    """What one job has finished: closed shards and the keys of the rows they hold (for resuming)."""

    shard_index: int
    num_shards: int
    shards: List[Dict[str, Any]] = field(default_factory=list)  # {"file", "num_rows", "num_bytes", "keys"}
    skipped: List[Dict[str, str]] = field(default_factory=list)  # {"key", "reason"}
    complete: bool = False

    @property
    def done_keys(self) -> Set[str]:
        return {k for s in self.shards for k in s["keys"]} | {s["key"] for s in self.skipped}


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

    Use ``with DatasetRepoWriter(...) as writer:`` then ``writer.done_keys`` (rows already written by an earlier
    run), ``writer.write(row, key=...)``, ``writer.skip(key, reason)``; then :meth:`finalize` with the card.
    """

    def __init__(self, output_dir: PathLike, features, split: str = "train", max_shard_size: Union[int, str] = "500MB",
                 row_group_size: int = 64, shard_index: int = 0, num_shards: int = 1, resume: bool = True):
        check_job(shard_index, num_shards)
        self.output_dir = Path(output_dir)
        self.work_dir = self.output_dir.with_name(self.output_dir.name + ".partial")
        if num_shards > 1 and not self.work_dir.exists() and (self.output_dir / "README.md").is_file():
            raise MatSegInputError(
                f"{self.output_dir} is already a finished dataset; a job of a {num_shards}-job array cannot add to it. "
                f"Rebuild into a new --output (or delete it first) and run every job of the array again")
        self.features = features
        self.split = split
        self.max_shard_size = parse_size(max_shard_size)
        self.row_group_size = max(1, int(row_group_size))
        self.shard_index = shard_index
        self.num_shards = num_shards
        self._manifest_path = self.work_dir / _PROGRESS_DIR / f"{split}-{shard_index:05d}-of-{num_shards:05d}.json"
        (self.work_dir / "data").mkdir(parents=True, exist_ok=True)
        self._manifest_path.parent.mkdir(parents=True, exist_ok=True)
        self._manifest = self._load_manifest() if resume else None
        if self._manifest is None:
            self._discard_own_shards()
            self._manifest = _Manifest(shard_index, num_shards)
            self._save_manifest()
        self._remove_unfinished_files()
        self._buffer: List[Dict[str, Any]] = []
        self._buffer_keys: List[str] = []
        self._writer = None
        self._open_path: Optional[Path] = None
        self._open_keys: List[str] = []
        self._open_rows = 0
        self._schema = features.arrow_schema

    # -- resume bookkeeping -------------------------------------------------------------------------------
    def _load_manifest(self) -> Optional[_Manifest]:
        if not self._manifest_path.exists():
            return None
        data = json.loads(self._manifest_path.read_text())
        manifest = _Manifest(**data)
        manifest.shards = [s for s in manifest.shards if (self.work_dir / "data" / s["file"]).exists()]
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
        return list(self._manifest.skipped)

    # -- writing --------------------------------------------------------------------------------------------
    def write(self, row: Mapping[str, Any], key: str) -> None:
        """Append one row (a plain dict matching ``features``). ``key`` identifies it for resuming."""
        self._buffer.append(self.features.encode_example(dict(row)))
        self._buffer_keys.append(key)
        if len(self._buffer) >= self.row_group_size:
            self._flush()

    def skip(self, key: str, reason: str) -> None:
        """Record an item that was reported and left out (``--skip-bad``); it is listed in the card."""
        self._manifest.skipped.append({"key": key, "reason": reason})
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
            self._close_shard()

    def _close_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        final = self._open_path.with_name(self._open_path.name[: -len(".incomplete")])
        os.replace(self._open_path, final)
        self._manifest.shards.append({"file": final.name, "num_rows": self._open_rows,
                                      "num_bytes": final.stat().st_size, "keys": self._open_keys})
        self._save_manifest()
        self._writer, self._open_path, self._open_keys, self._open_rows = None, None, [], 0

    def close(self) -> None:
        """Write buffered rows and close the open shard (the job's rows are then safe on disk)."""
        self._flush()
        self._close_shard()

    def __enter__(self) -> "DatasetRepoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # keep what was closed; the open shard is dropped and its rows redone on resume
            if self._writer is not None:
                with contextlib.suppress(Exception):
                    self._writer.close()
                with contextlib.suppress(FileNotFoundError):
                    self._open_path.unlink()
            self._writer = None

    # -- finishing ------------------------------------------------------------------------------------------
    def finalize(self, card: Union[str, Callable[[Dict[str, int], List[Dict[str, str]]], str]],
                 extra_files: Optional[Mapping[str, bytes]] = None) -> Optional[Path]:
        """Mark this job complete; when every job of the array is complete, write the card and move in place.

        Args:
            card: the dataset card (``README.md``) with its YAML header (see :func:`dataset_card_yaml`), or a
                function ``(split_info, skipped) -> card text`` called once every job has finished, so that the
                card's counts cover the whole array (preferred with job arrays). A finished text card whose
                ``num_examples``/``num_bytes`` no longer match the shards is corrected.
            extra_files: more files for the repository (e.g. a preview picture), relative path -> bytes.

        Returns:
            the final folder, or ``None`` when other jobs of the array still run (the last one finalizes).
        """
        self.close()
        self._manifest.complete = True
        self._save_manifest()
        progress_dir = self.work_dir / _PROGRESS_DIR
        manifests = [json.loads(p.read_text()) for p in progress_dir.glob(f"{self.split}-*.json")]
        if sum(1 for m in manifests if m["complete"] and m["num_shards"] == self.num_shards) < self.num_shards:
            logger.info("job %d/%d done; the last job of the array finalizes %s", self.shard_index, self.num_shards,
                        self.output_dir)
            return None
        if not _take_lock(progress_dir / "finalize.lock"):
            return None
        info, skipped = self.split_info(), self.all_skipped()
        card_text = card(info, skipped) if callable(card) else _refresh_split_numbers(card, self.split, info)
        atomic_write_text(self.work_dir / "README.md", card_text)
        for rel, data in (extra_files or {}).items():
            target = self.work_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        shutil.rmtree(progress_dir)
        if self.output_dir.exists():
            old = self.output_dir.with_name(self.output_dir.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.output_dir, old)
            os.replace(self.work_dir, self.output_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.work_dir, self.output_dir)
        logger.info("wrote %s", self.output_dir)
        return self.output_dir

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
            out.extend(json.loads(path.read_text())["skipped"])
        return out


def _take_lock(path: Path) -> bool:
    """Create ``path`` exclusively (holding host and PID). A lock left by a dead process on this host is taken over."""
    import socket

    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                host, pid = path.read_text().split()
            except (OSError, ValueError):
                host, pid = "", "0"
            if host == socket.gethostname() and not _pid_alive(int(pid)):
                logger.warning("taking over the finalize lock of dead process %s", pid)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        return True
    return False


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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

    from .errors import MatSegError

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

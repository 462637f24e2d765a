"""Generating synthetic scene sets to disk: official-layout folders or a Hub dataset (Parquet shards + card).

Both writers are resumable and split into jobs (``shard_index`` of ``num_shards``: scene ``i`` belongs to job
``i % num_shards``), and both can use a pool of worker processes. Scene ``i`` is always
``generate_scene(seed, i, sources, config)``, so any split of the work gives the same scenes.

* :func:`generate_folders` — one folder per scene (``<output>/<index>/``); finished scenes are skipped on a rerun,
  unfinished ones are redone.
* :func:`generate_parquet` — rows of :func:`~matseg_hub.synthetic.rows.scene_features` in size-bounded shards through
  :class:`~matseg_hub.hub.writer.DatasetRepoWriter`, with a dataset card.
* :func:`folders_to_parquet` — package existing scene folders (e.g. 3D renders, the authors' data) as a Hub dataset.

Resuming checks the settings. The first run records a fingerprint (seed, :class:`~matseg_hub.synthetic.scenes2d.SceneConfig`,
generator version, source names and counts, format; for Parquet also ``num`` and the job count) in
``<output>/.matseg_run.json`` (folders) or in the Parquet writer's work folder (``<output>.partial``); a later run
with other settings over the same output raises :class:`~matseg_hub.errors.MatSegInputError` saying what differs,
instead of mixing two kinds of scenes under one card. Use a new output folder, or ``resume=False``
(``--no-resume``) to discard the earlier run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..errors import MatSegInputError
from .layout import (METADATA_FILE, encode_scene, is_complete_scene, iter_scene_folders, preview_grid,
                     remove_scene_files, remove_stale_partials, write_scene)
from .rows import NO_ASSET_LICENSE, scene_features, scene_license, scene_row, scene_row_from_folder
from ..utils.files import (RUN_PARAMS_FILE, check_run_fingerprint, claim_output_folder, files_fingerprint,
                           settings_differences)
from ..utils.images import swap_rb
from ..utils.launchers import fault_point
from ..utils.licenses import UNKNOWN_LICENSE
from ..utils.logging import get_logger, progress
from ..utils.memory import keep_freed_memory
from ..utils.workers import worker_pool

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]

# state of a worker process (set by _init_worker)
_WORKER: Dict[str, Any] = {}


def _init_worker(seed: int, sources, config, output: Optional[str], source_license: Optional[str],
                 one_thread: bool) -> None:
    _WORKER.update(seed=seed, sources=sources, config=config, output=output, source_license=source_license)
    keep_freed_memory()  # a generator process: reuse freed scene arrays instead of faulting pages in (10 %)
    if one_thread:
        import cv2

        cv2.setNumThreads(1)


def _make_folder(index: int) -> int:
    from .scenes2d import generate_scene

    scene = generate_scene(_WORKER["seed"], index, _WORKER["sources"], _WORKER["config"])
    write_scene(Path(_WORKER["output"]) / str(index), scene)
    return index


def _make_row(index: int) -> Tuple[int, Dict[str, Any]]:
    from .scenes2d import GENERATOR_NAME, generate_scene

    scene = generate_scene(_WORKER["seed"], index, _WORKER["sources"], _WORKER["config"])
    return index, scene_row(encode_scene(scene), source=GENERATOR_NAME, metadata=scene.metadata,
                            license=scene_license(scene.metadata, _WORKER.get("source_license")))


def job_indices(num: int, shard_index: int = 0, num_shards: int = 1) -> List[int]:
    """Scene indices of job ``shard_index`` of ``num_shards``: ``i`` in ``range(num)`` with ``i % num_shards ==
    shard_index``."""
    if num < 0:
        raise MatSegInputError(f"num must be >= 0, got {num}")
    if not 0 <= shard_index < num_shards:
        raise MatSegInputError(f"shard index must be in [0, {num_shards}), got {shard_index}")
    return list(range(shard_index, num, num_shards))


def _run(func: Callable, indices: Sequence[int], workers: int, initargs: tuple, desc: str) -> Iterator[Any]:
    """``func(i)`` for every index, in order, in this process or in a pool of ``workers`` processes."""
    if workers <= 1 or len(indices) <= 1:
        saved = dict(_WORKER)
        _init_worker(*initargs[:-1], one_thread=False)
        try:
            for i in progress(indices, total=len(indices), desc=desc, unit="scene"):
                yield func(i)
        finally:
            _WORKER.clear()
            _WORKER.update(saved)
        return
    # The sources are pickled once per worker (decoded arrays: no image is decoded again).
    chunk = max(1, min(8, len(indices) // (4 * workers)))
    with worker_pool(workers, _init_worker, initargs) as pool:
        for out in progress(pool.imap(func, indices, chunksize=chunk), total=len(indices), desc=desc, unit="scene"):
            yield out


RUN_FILE = RUN_PARAMS_FILE
_SCENE_DIR_RE = re.compile(r"^\d+$")


def run_fingerprint(*, seed: int, config, sources, fmt: str, **extra: Any) -> Dict[str, Any]:
    """What makes the scenes of a run what they are: a resumed run must have the same (JSON dict).

    ``seed``, ``config`` (:class:`~matseg_hub.synthetic.scenes2d.SceneConfig`), the generator and its version, the source
    pools (count, first names and a digest of every name, in order) and the output format; ``extra`` adds more
    (``num``, ``num_shards`` for Parquet).
    """
    from .scenes2d import GENERATOR_NAME, GENERATOR_VERSION

    def pool(p) -> Dict[str, Any]:
        if p is None:
            return {"count": 0}
        names = list(p.names)
        digest = hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()[:16]
        return {"count": len(names), "first": names[:3], "names_sha256": digest, "max_side": p.max_side}

    return {"generator": GENERATOR_NAME, "generator_version": GENERATOR_VERSION, "format": fmt, "seed": int(seed),
            "config": config.to_dict(), "sources": {"natural": pool(sources.natural), "textures": pool(sources.textures)},
            **extra}


def _legacy_scene_check(output: Path, fingerprint: Dict[str, Any], discard: bool) -> bool:
    """An output written before fingerprints existed: compare one finished scene's recorded seed and config."""
    for entry in sorted(output.iterdir(), key=lambda p: p.name):
        if _SCENE_DIR_RE.match(entry.name) and is_complete_scene(entry) and (entry / METADATA_FILE).is_file():
            try:
                meta = json.loads((entry / METADATA_FILE).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                return False
            old = {"seed": meta.get("seed"), "config": meta.get("config")}
            diffs = settings_differences(old, {"seed": fingerprint["seed"], "config": fingerprint["config"]})
            if diffs and not discard:
                raise MatSegInputError(
                    f"{output} holds scenes of an earlier run with other settings (scene {entry.name}):\n  "
                    + "\n  ".join(diffs) + "\nUse a new --output folder or pass --no-resume to discard them.")
            return bool(diffs)
    return False


def _discard_scene_folders(output: Path) -> int:
    """Delete the scenes (``<output>/<index>/``: the files the scene writer writes, and the folder when that
    leaves it empty) and temporary folders an earlier run wrote; other files in them are kept."""
    removed = 0
    for entry in output.iterdir():
        if entry.is_dir() and _SCENE_DIR_RE.match(entry.name):
            remove_scene_files(entry)
            with contextlib.suppress(OSError):
                entry.rmdir()
            removed += 1
    removed += remove_stale_partials(output)
    return removed


def generate_folders(output: PathLike, num: int, *, seed: int = 0, sources=None, config=None, workers: int = 1,
                     shard_index: int = 0, num_shards: int = 1, resume: bool = True,
                     source_folders: Sequence[Optional[PathLike]] = ()) -> Dict[str, int]:
    """Write scenes ``0 .. num-1`` of this job as ``<output>/<index>/`` in the official layout (resumable).

    The run's settings are recorded in ``<output>/.matseg_run.json``; a rerun with other settings raises
    :class:`~matseg_hub.errors.MatSegInputError` (see the module docstring). ``resume=False`` regenerates this job's
    scenes, and first deletes every scene folder of an earlier run with other settings. An existing ``output``
    must be empty or an earlier output of this generator (its ``.matseg_output.json`` says so), and outside the
    ``source_folders`` (the local folders the sources were read from); otherwise
    :class:`~matseg_hub.errors.MatSegOutputError` and nothing is written.

    Returns ``{"written": n, "skipped": n_already_finished}``.
    """
    from .scenes2d import SceneConfig
    from .sources import as_scene_sources

    sources = as_scene_sources(sources)
    config = config or SceneConfig()
    output = claim_output_folder(output, "generate 2d --format folders", sources=source_folders)
    fingerprint = run_fingerprint(seed=seed, config=config, sources=sources, fmt="folders")
    run_file = output / RUN_FILE
    changed = (_legacy_scene_check(output, fingerprint, discard=not resume) if not run_file.is_file() else False)
    changed = check_run_fingerprint(run_file, fingerprint, output=output, discard=not resume) or changed
    if changed:
        logger.warning("removed %d scene folders of the earlier run in %s", _discard_scene_folders(output), output)
    mine = job_indices(num, shard_index, num_shards)
    stale = remove_stale_partials(output, (str(i) for i in mine))
    if stale:
        logger.info("removed %d temporary folders left by an interrupted run", stale)
    todo, done = [], 0
    for i in mine:
        if resume and is_complete_scene(output / str(i)):
            done += 1
        else:
            todo.append(i)
    if done:
        logger.info("%d scenes already finished in %s; generating the other %d", done, output, len(todo))
    written = 0
    for _ in _run(_make_folder, todo, workers, (seed, sources, config, str(output), None, True), "scenes"):
        written += 1
        fault_point()  # test-only fault injection (matseg_hub.utils.launchers); a no-op otherwise
    return {"written": written, "skipped": done}


def _row_licenses(work_dir: Path, split: str = "train") -> Counter:
    """How many rows carry each ``license`` value in the Parquet shards of ``work_dir``."""
    import pyarrow.parquet as pq

    counts: Counter = Counter()
    for path in sorted((work_dir / "data").glob(f"{split}-*.parquet")):
        counts.update(pq.read_table(path, columns=["license"]).column("license").to_pylist())
    return counts


def _card_license(licenses: Counter) -> str:
    """The card's YAML ``license``: ``cc0-1.0`` only when every row is CC0, else ``other`` (see the per-row column)."""
    return "cc0-1.0" if licenses and set(licenses) == {NO_ASSET_LICENSE} else "other"


def dataset_card(features, split_info: Dict[str, int], *, seed: Optional[int], config=None, sources=None,
                 num_shards: int = 1, skipped: Sequence[Dict[str, str]] = (),
                 from_folders: Optional[str] = None, licenses: Optional[Counter] = None,
                 source_license: Optional[str] = None) -> str:
    """The dataset card (YAML header + text) of a synthetic scene set.

    Two kinds: generated 2D scenes (``from_folders=None``: reproducible from ``seed``, ``index``, the sources and
    the config) and packaged scene folders (``from_folders``: 3D renders, the authors' data; reproducible only as
    far as each row's metadata records). ``licenses`` counts the rows' ``license`` values.
    """
    from ..hub.writer import dataset_card_yaml, size_category

    licenses = licenses or Counter()
    generated = from_folders is None
    header = dataset_card_yaml(features, {"train": split_info}, license=_card_license(licenses),
                               pretty_name="MatSeg synthetic 2D scenes" if generated else "MatSeg synthetic scenes",
                               task_categories=["image-segmentation"],
                               tags=["materials", "material-states", "synthetic", "matseg"],
                               size_category=size_category(split_info["num_examples"]))
    lines = [header, "# MatSeg synthetic scenes\n",
             "Synthetic training scenes for zero-shot material-state segmentation, made by implanting natural-image "
             "patterns (MatSeg, NeurIPS 2024 Datasets & Benchmarks; https://arxiv.org/abs/2403.03309).\n",
             "## Columns\n",
             "- `image`: the scene (JPEG).",
             "- `masks`: one soft mask per material (PNG, 0-255 = weight 0-1, 16-bit PNGs 0-65535; masks may overlap).",
             "- `annotated`: the annotated region (PNG); outside it is unannotated background."]
    if generated:
        lines += ["- `num_materials`, `seed`, `index`: scene `index` of the stream `seed` "
                  "(`matseg_hub.synthetic.scenes2d.generate_scene(seed, index, sources, config)` reproduces it with the "
                  "sources and config below).",
                  "- `source`, `metadata`: generator name and every parameter drawn (JSON)."]
    else:
        lines += ["- `num_materials`; `seed`, `index`: as the scene folder's `scene_metadata.json` records them "
                  "(-1 when it does not, e.g. the authors' published data).",
                  "- `source`: the generator that made the scene (e.g. `matseg_hub.render3d`), or the folder.",
                  "- `metadata`: the folder's `scene_metadata.json` and `CameraParameters.json`, its marker files and "
                  "its path relative to the packaged root. What reproduces a row depends on its generator: 3D "
                  "renders record their scene description (`scene3d.json` in the original folder, not packaged) "
                  "and their seed; folders from other tools may record nothing."]
    lines += ["- `license`: the licences this row is subject to (see *Licence* below).\n"]
    if generated:
        lines += ["## Generation\n", f"- seed: {seed}",
                  f"- config: `{json.dumps(config.to_dict() if config is not None else {}, sort_keys=True)}`"]
        if sources is not None:
            lines += [f"- natural images: {len(sources.natural)} "
                      f"({', '.join(sources.natural.names[:5])}{', ...' if len(sources.natural) > 5 else ''})",
                      f"- textures: {len(sources.textures) if sources.textures is not None else 0}"]
        lines += [f"- jobs: {num_shards}", ""]
    else:
        lines += ["## Source\n", f"Packaged from scene folders in the official layout under `{from_folders}` "
                  "(sub-scenes included; each folder checked: image and masks readable, masks of the image's size).\n"]
    lines += ["## Licence\n",
              "What this package adds (the composition, the masks) is released under CC0 1.0, but each scene is made "
              "from third-party images or assets that keep their own licences. The `license` column gives them per "
              "row, `; `-separated:",
              f"- `{NO_ASSET_LICENSE}`: the scene uses no third-party asset;",
              f"- `{UNKNOWN_LICENSE}`: the licence of (some of) its sources was not recorded — check them before "
              "redistributing the row;",
              "- any other value: the licence of a source image, texture, model or environment map the scene uses."]
    if generated:
        lines += ["", "Generated scenes take the licences of the source images they use: scikit-image's bundled "
                  "photos (the built-in sources) as stated by scikit-image, other sources "
                  + (f"`{source_license}` (as declared with `--source-license`)." if source_license else
                     "`unknown` (none was declared with `--source-license`).")]
    else:
        lines += ["", "Packaged folders take the licences recorded in their `scene_metadata.json` (`license`, or the "
                  "per-asset `licences` of 3D renders), else `unknown`."]
    if licenses:
        lines += ["", "Rows per licence:", ""] + [f"- `{lic}`: {n}" for lic, n in sorted(licenses.items())]
    lines += [""]
    if skipped:
        lines += ["## Skipped items\n"] + [f"- `{s['key']}`: {s['reason']}" for s in skipped] + [""]
    return "\n".join(lines)


def generate_parquet(output: PathLike, num: int, *, seed: int = 0, sources=None, config=None, workers: int = 1,
                     shard_index: int = 0, num_shards: int = 1, max_shard_size: Union[int, str] = "500MB",
                     preview: Optional[bytes] = None, preview_count: int = 8, resume: bool = True,
                     overwrite: bool = False, source_license: Optional[str] = None,
                     source_folders: Sequence[Optional[PathLike]] = ()) -> Optional[Path]:
    """Write scenes ``0 .. num-1`` of this job as a Hub dataset folder (Parquet shards + card), resumable.

    Args:
        preview: PNG bytes stored as the dataset's ``preview.png``; when ``None``, the job that finalizes the
            dataset renders the first ``preview_count`` scenes (0: no preview). Other jobs of an array render nothing.
        resume: ``False`` discards this job's earlier shards, and every job's when the earlier run had other
            settings (see the module docstring; otherwise that raises :class:`~matseg_hub.errors.MatSegInputError`).
        overwrite: regenerate over a finished output of this generator (replacing only the files it wrote);
            without it such an output is refused (:class:`~matseg_hub.errors.MatSegOutputError`).
        source_license: the licence of the non-built-in sources, recorded per row (default ``"unknown"``).
        source_folders: the local folders the sources were read from (an output overlapping one is refused).

    Returns the final folder, or ``None`` while other jobs of the array are still running.
    """
    from ..hub.writer import DatasetRepoWriter
    from .scenes2d import SceneConfig, generate_scene
    from .sources import as_scene_sources

    sources = as_scene_sources(sources)
    config = config or SceneConfig()
    features = scene_features()
    mine = job_indices(num, shard_index, num_shards)  # argument checks before anything is written
    fingerprint = run_fingerprint(seed=seed, config=config, sources=sources, fmt="parquet", num=int(num),
                                  num_shards=int(num_shards), source_license=source_license or UNKNOWN_LICENSE)
    with DatasetRepoWriter(output, features, split="train", max_shard_size=max_shard_size, row_group_size=32,
                           shard_index=shard_index, num_shards=num_shards, resume=resume,
                           kind="generate 2d --format parquet", sources=source_folders, overwrite=overwrite,
                           inputs=[(str(i), "") for i in mine], settings=fingerprint) as writer:
        done = writer.done_keys
        todo = [i for i in mine if str(i) not in done]
        if done:
            logger.info("resuming: %d scenes already written; generating the other %d", len(done), len(todo))
        for index, row in _run(_make_row, todo, workers, (seed, sources, config, None, source_license, True),
                               "scenes"):
            writer.write(row, key=str(index))
            fault_point()  # test-only fault injection (matseg_hub.utils.launchers); a no-op otherwise
        writer.close()
        card = dataset_card(features, writer.split_info(), seed=seed, config=config, sources=sources,
                            num_shards=num_shards, skipped=writer.all_skipped(),
                            licenses=_row_licenses(writer.work_dir), source_license=source_license)
        first = list(range(min(int(num), int(preview_count)))) if preview is None else []

        def extra_files() -> Dict[str, bytes]:  # rendered by the job that finalizes only
            if preview is not None:
                return {"preview.png": preview}
            return {"preview.png": preview_png([generate_scene(seed, i, sources, config) for i in first])} \
                if first else {}

        return writer.finalize(card, extra_files)


def folders_to_parquet(root: PathLike, output: PathLike, *, max_shard_size: Union[int, str] = "500MB",
                       shard_index: int = 0, num_shards: int = 1, skip_bad: bool = False,
                       overwrite: bool = False) -> Optional[Path]:
    """Package the complete scene folders under ``root`` (sub-scenes included) as a Hub dataset folder.

    Every folder is read in full (:func:`~matseg_hub.synthetic.rows.scene_row_from_folder` with ``decode=True``: image
    and masks decodable, masks of the image's size) before it becomes a row; with ``skip_bad`` a bad folder is left
    out and listed in the card, otherwise its :class:`~matseg_hub.errors.MatSegFormatError` (naming the file) stops
    the build. ``metadata["folder"]`` is the path relative to ``root``. A rerun resumes an interrupted build (folders
    changed since are redone); ``overwrite`` rebuilds a finished output of this builder.
    """
    from ..hub.writer import DatasetRepoWriter, iter_job_items

    features = scene_features()
    folders = list(iter_scene_folders(root))
    if not folders:
        raise MatSegInputError(f"no complete scene folder (with Finished.txt) under {root}")
    mine = list(iter_job_items(folders, shard_index, num_shards))
    inputs = [(Path(f).relative_to(root).as_posix(), files_fingerprint(p for p in Path(f).iterdir() if p.is_file()))
              for f in mine]
    with DatasetRepoWriter(output, features, split="train", max_shard_size=max_shard_size, row_group_size=16,
                           shard_index=shard_index, num_shards=num_shards, kind="build synthetic", sources=[root],
                           overwrite=overwrite, inputs=inputs) as writer:
        done = writer.done_keys
        for folder in progress(mine, total=len(mine), desc="scenes", unit="scene"):
            key = Path(folder).relative_to(root).as_posix()
            if key in done:
                continue
            writer.write_from(key, lambda: scene_row_from_folder(folder, root=root, decode=True), skip_bad,
                              reason=lambda message: _relative_message(message, root))
        writer.close()
        card = dataset_card(features, writer.split_info(), seed=None, num_shards=num_shards,
                            skipped=writer.all_skipped(), from_folders=Path(root).name or str(root),
                            licenses=_row_licenses(writer.work_dir))
        return writer.finalize(card)


def _relative_message(message: str, root: PathLike) -> str:
    """``message`` with the local ``root`` prefix removed from the paths it names (for the public card)."""
    for prefix in sorted({str(Path(root).resolve()), str(Path(root)), os.path.abspath(root)}, key=len, reverse=True):
        message = message.replace(prefix.rstrip(os.sep) + os.sep, "")
    return message


def preview_png(scenes: Sequence[Any], tile: int = 256, columns: int = 2) -> bytes:
    """PNG bytes of :func:`~matseg_hub.synthetic.layout.preview_grid` (image | coloured masks | annotated region)."""
    import cv2

    grid = preview_grid(list(scenes), tile=tile, columns=columns)
    ok, buf = cv2.imencode(".png", swap_rb(grid))
    return buf.tobytes()

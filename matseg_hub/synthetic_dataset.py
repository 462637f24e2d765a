"""Generating synthetic scene sets to disk: official-layout folders or a Hub dataset (Parquet shards + card).

Both writers are resumable and split into jobs (``shard_index`` of ``num_shards``: scene ``i`` belongs to job
``i % num_shards``), and both can use a pool of worker processes. Scene ``i`` is always
``generate_scene(seed, i, sources, config)``, so any split of the work gives the same scenes.

* :func:`generate_folders` — one folder per scene (``<output>/<index>/``); finished scenes are skipped on a rerun,
  unfinished ones are redone.
* :func:`generate_parquet` — rows of :func:`~matseg_hub.synthetic.scene_features` in size-bounded shards through
  :class:`~matseg_hub.hub_dataset.DatasetRepoWriter`, with a dataset card.
* :func:`folders_to_parquet` — package existing scene folders (e.g. 3D renders, the authors' data) as a Hub dataset.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from .errors import MatSegInputError
from .synthetic import (encode_scene, is_complete_scene, iter_scene_folders, preview_grid, remove_stale_partials,
                        scene_features, scene_row, scene_row_from_folder, write_scene)
from .utils.files import atomic_write_bytes
from .utils.logging import get_logger, progress

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]

# state of a worker process (set by _init_worker)
_WORKER: Dict[str, Any] = {}


def _init_worker(seed: int, sources, config, output: Optional[str], one_thread: bool) -> None:
    _WORKER.update(seed=seed, sources=sources, config=config, output=output)
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
    return index, scene_row(encode_scene(scene), source=GENERATOR_NAME, metadata=scene.metadata)


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
    # not "fork": a child forked from a process whose OpenCV/Arrow thread pools are running can deadlock.
    # The sources are pickled once per worker (decoded arrays: no image is decoded again).
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    chunk = max(1, min(8, len(indices) // (4 * workers)))
    with ctx.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
        for out in progress(pool.imap(func, indices, chunksize=chunk), total=len(indices), desc=desc, unit="scene"):
            yield out


def generate_folders(output: PathLike, num: int, *, seed: int = 0, sources=None, config=None, workers: int = 1,
                     shard_index: int = 0, num_shards: int = 1) -> Dict[str, int]:
    """Write scenes ``0 .. num-1`` of this job as ``<output>/<index>/`` in the official layout (resumable).

    Returns ``{"written": n, "skipped": n_already_finished}``.
    """
    from .scenes2d import SceneConfig, _as_sources

    sources = _as_sources(sources)
    config = config or SceneConfig()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    mine = job_indices(num, shard_index, num_shards)
    stale = remove_stale_partials(output, (str(i) for i in mine))
    if stale:
        logger.info("removed %d temporary folders left by an interrupted run", stale)
    todo, done = [], 0
    for i in mine:
        if is_complete_scene(output / str(i)):
            done += 1
        else:
            todo.append(i)
    if done:
        logger.info("%d scenes already finished in %s; generating the other %d", done, output, len(todo))
    written = 0
    for _ in _run(_make_folder, todo, workers, (seed, sources, config, str(output), True), "scenes"):
        written += 1
    return {"written": written, "skipped": done}


def dataset_card(features, split_info: Dict[str, int], *, seed: Optional[int], config=None, sources=None,
                 num_shards: int = 1, skipped: Sequence[Dict[str, str]] = (),
                 from_folders: Optional[str] = None) -> str:
    """The dataset card (YAML header + text) of a synthetic scene set."""
    from .hub_dataset import dataset_card_yaml, size_category

    header = dataset_card_yaml(features, {"train": split_info}, license="cc0-1.0",
                               pretty_name="MatSeg synthetic 2D scenes" if from_folders is None else
                               "MatSeg synthetic scenes",
                               task_categories=["image-segmentation"],
                               tags=["materials", "material-states", "synthetic", "matseg"],
                               size_category=size_category(split_info["num_examples"]))
    lines = [header, "# MatSeg synthetic scenes\n",
             "Synthetic training scenes for zero-shot material-state segmentation, made by implanting natural-image "
             "patterns (MatSeg, NeurIPS 2024 Datasets & Benchmarks; https://arxiv.org/abs/2403.03309).\n",
             "## Columns\n",
             "- `image`: the scene (JPEG).",
             "- `masks`: one soft mask per material (8-bit PNG, 0-255 = weight 0-1; masks may overlap).",
             "- `annotated`: the annotated region (8-bit PNG); outside it is unannotated background.",
             "- `num_materials`, `seed`, `index`: scene `index` of the stream `seed` "
             "(`matseg_hub.scenes2d.generate_scene(seed, index, sources, config)` reproduces it).",
             "- `source`, `metadata`: generator name and every parameter drawn (JSON).\n"]
    if from_folders is None:
        lines += ["## Generation\n", f"- seed: {seed}",
                  f"- config: `{json.dumps(config.to_dict() if config is not None else {}, sort_keys=True)}`"]
        if sources is not None:
            lines += [f"- natural images: {len(sources.natural)} "
                      f"({', '.join(sources.natural.names[:5])}{', ...' if len(sources.natural) > 5 else ''})",
                      f"- textures: {len(sources.textures) if sources.textures is not None else 0}"]
        lines += [f"- jobs: {num_shards}", ""]
    else:
        lines += ["## Source\n", f"Packaged from scene folders in the official layout under `{from_folders}`.\n"]
    lines += ["## Licence\n", "The scenes are released under CC0 1.0. Source images keep their own licences; "
              "the built-in sources are scikit-image's bundled sample images.\n"]
    if skipped:
        lines += ["## Skipped items\n"] + [f"- `{s['key']}`: {s['reason']}" for s in skipped] + [""]
    return "\n".join(lines)


def generate_parquet(output: PathLike, num: int, *, seed: int = 0, sources=None, config=None, workers: int = 1,
                     shard_index: int = 0, num_shards: int = 1, max_shard_size: Union[int, str] = "500MB",
                     preview: Optional[bytes] = None) -> Optional[Path]:
    """Write scenes ``0 .. num-1`` of this job as a Hub dataset folder (Parquet shards + card), resumable.

    Returns the final folder, or ``None`` while other jobs of the array are still running.
    """
    from .hub_dataset import DatasetRepoWriter
    from .scenes2d import SceneConfig, _as_sources

    sources = _as_sources(sources)
    config = config or SceneConfig()
    features = scene_features()
    with DatasetRepoWriter(output, features, split="train", max_shard_size=max_shard_size, row_group_size=32,
                           shard_index=shard_index, num_shards=num_shards) as writer:
        done = writer.done_keys
        todo = [i for i in job_indices(num, shard_index, num_shards) if str(i) not in done]
        if done:
            logger.info("resuming: %d scenes already written; generating the other %d", len(done), len(todo))
        for index, row in _run(_make_row, todo, workers, (seed, sources, config, None, True), "scenes"):
            writer.write(row, key=str(index))
    writer.close()
    card = dataset_card(features, writer.split_info(), seed=seed, config=config, sources=sources,
                        num_shards=num_shards, skipped=writer.all_skipped())
    extra = {"preview.png": preview} if preview else None
    return writer.finalize(card, extra)


def folders_to_parquet(root: PathLike, output: PathLike, *, max_shard_size: Union[int, str] = "500MB",
                       shard_index: int = 0, num_shards: int = 1, skip_bad: bool = False) -> Optional[Path]:
    """Package the complete scene folders under ``root`` (sub-scenes included) as a Hub dataset folder."""
    from .errors import MatSegFormatError
    from .hub_dataset import DatasetRepoWriter, iter_job_items

    features = scene_features()
    folders = list(iter_scene_folders(root))
    if not folders:
        raise MatSegInputError(f"no complete scene folder (with Finished.txt) under {root}")
    with DatasetRepoWriter(output, features, split="train", max_shard_size=max_shard_size, row_group_size=16,
                           shard_index=shard_index, num_shards=num_shards) as writer:
        done = writer.done_keys
        mine = [f for f in iter_job_items(folders, shard_index, num_shards)]
        for folder in progress(mine, total=len(mine), desc="scenes", unit="scene"):
            key = str(Path(folder).relative_to(root))
            if key in done:
                continue
            try:
                row = scene_row_from_folder(folder)
            except MatSegFormatError as exc:
                if not skip_bad:
                    raise
                writer.skip(key, str(exc))
                continue
            writer.write(row, key=key)
    writer.close()
    card = dataset_card(features, writer.split_info(), seed=None, num_shards=num_shards,
                        skipped=writer.all_skipped(), from_folders=str(root))
    return writer.finalize(card)


def preview_png(scenes: Sequence[Any], tile: int = 256, columns: int = 2) -> bytes:
    """PNG bytes of :func:`~matseg_hub.synthetic.preview_grid` (image | coloured masks | annotated region)."""
    import cv2

    grid = preview_grid(list(scenes), tile=tile, columns=columns)
    ok, buf = cv2.imencode(".png", grid[:, :, ::-1])
    return buf.tobytes()


def write_preview(path: PathLike, scenes: Sequence[Any], tile: int = 256, columns: int = 2) -> Path:
    """Write the preview grid of ``scenes`` to ``path`` (PNG, atomically)."""
    return atomic_write_bytes(path, preview_png(scenes, tile=tile, columns=columns))

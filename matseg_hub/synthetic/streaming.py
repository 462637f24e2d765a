"""Synthetic scenes as a :class:`datasets.IterableDataset` (generated on the fly, or read from scene folders).

Built with public ``datasets`` API only (``IterableDataset.from_generator`` with sharded ``gen_kwargs``, then
``IterableDataset.map``), so sharding, ``split_dataset_by_node`` and ``state_dict()`` / ``load_state_dict()`` are
datasets' own.

Determinism and sharding. Scene ``i`` of a stream is ``generate_scene(seed, i, ...)``: nothing depends on the
process that makes it. The stream has ``L`` shards: ``L = min(num, num_shards)`` for ``num`` scenes,
``num_shards`` (default 5,040, divisible by every worker/node count up to 10 and by 12, 14, 15, 16, 18, 20, ...)
for an infinite stream; shard ``v`` holds the scenes ``v, v + L, v + 2L, ...``. datasets gives a process (a
``DataLoader`` worker ``w`` of ``W``: shards ``w, w + W, ...``; a node of ``split_dataset_by_node``: whole shards)
its shards and iterates them one after the other, so

* with ``num <= num_shards`` every shard is one scene: one process yields ``0, 1, 2, ...`` and
  ``DataLoader(num_workers=W)``, which collects its workers round-robin, yields the same scenes in the same order
  for any ``W``;
* with more scenes, the scenes are the same for any ``W`` but their order depends on ``W``;
* ``split_dataset_by_node`` hands each node whole shards: nodes never repeat a scene and together make exactly the
  scenes of one process;
* an infinite stream (``num=None``) has endless shards: a process yields the scenes of its first shard, ``v, v + L,
  v + 2L, ...`` (one process: ``0, L, 2L, ...``); processes never repeat a scene, and a process's scenes depend
  on the number of processes;
* ``ds.state_dict()`` / ``ds.load_state_dict()`` resume at the next scene; the scenes skipped on resume are never
  generated (the shards yield scene indices, :meth:`datasets.IterableDataset.map` makes the scenes).

Example::

    from matseg_hub.synthetic.scenes2d import SceneConfig
    from matseg_hub.synthetic.sources import SceneSources
    from matseg_hub.synthetic.streaming import scene_stream, scene_tensors

    sources = SceneSources.from_folders("photos/", "textures/")          # or SceneSources.builtin()
    ds = scene_stream(seed=0, sources=sources, config=SceneConfig(size=(512, 512)), num=10_000)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, collate_fn=scene_tensors)

``scene_stream(..., encoded=False)`` skips the JPEG/PNG round trip (rows of numpy arrays) for training.
"""

from __future__ import annotations

import sys
from itertools import count
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from ..errors import MatSegFormatError, MatSegInputError
from .layout import FINISHED_FILE, iter_scene_folders
from .rows import scene_features, scene_license, scene_row, scene_row_from_folder
from ..utils.logging import get_logger
from ..utils.memory import keep_freed_memory

logger = get_logger(__name__)

DEFAULT_NUM_SHARDS = 5_040  # 2^4 * 3^2 * 5 * 7


def stream_indices(shard_ids: Sequence[int], num_shards: int, num: Optional[int]) -> Iterator[int]:
    """Scene indices of the given shards, one shard after the other (as datasets iterates a process's shards):
    shard ``v`` holds ``v, v + num_shards, v + 2 num_shards, ...`` below ``num`` (endless when ``num`` is None)."""
    for v in shard_ids:
        if num is None:
            yield from count(int(v), num_shards)  # endless: the shards after the first are never reached
        yield from range(int(v), num, num_shards)


def _index_rows(shard_ids: List[int], num_shards: int, num: Optional[int]) -> Iterator[Dict[str, int]]:
    """The generator of ``from_generator``: ``{"index": i}`` per scene of the given shards (cheap, so resuming
    from a state dict skips indices, not scenes)."""
    for i in stream_indices(shard_ids, num_shards, num):
        yield {"index": i}


def _in_dataloader_worker() -> bool:
    torch = sys.modules.get("torch")  # never imports torch
    return torch is not None and torch.utils.data.get_worker_info() is not None


def _generated_row(example: Dict[str, int], seed: int, sources, config, arrays: bool = False) -> Dict[str, Any]:
    """The ``map`` function: scene ``example["index"]`` of the stream as a Hub row (or a row of arrays)."""
    from .scenes2d import GENERATOR_NAME, generate_scene

    if _in_dataloader_worker():
        keep_freed_memory()  # a generator process: reuse freed scene arrays instead of faulting pages in (10 %)
    scene = generate_scene(seed, int(example["index"]), sources, config)
    return _array_row(scene, GENERATOR_NAME) if arrays else scene_row(scene, source=GENERATOR_NAME)


def _array_row(scene, source: str):
    """A row of numpy arrays, quantised like the encoded rows (8-bit masks), with no image encoding."""
    import json

    import cv2

    meta = scene.metadata
    return {
        "image": scene.rgb,
        "masks": np.stack([cv2.convertScaleAbs(m, alpha=255.0) for m in scene.masks]),
        "annotated": cv2.convertScaleAbs(scene.annotated, alpha=255.0),
        "num_materials": scene.num_materials,
        "seed": int(meta.get("seed", -1)),
        "index": int(meta.get("index", -1)),
        "source": source,
        "license": scene_license(meta),
        "metadata": json.dumps(meta, sort_keys=True),
    }


def scene_stream(seed: int = 0, sources=None, config=None, num: Optional[int] = None,
                 num_shards: int = DEFAULT_NUM_SHARDS, encoded: bool = True):
    """Generated 2D scenes as a :class:`datasets.IterableDataset` with :func:`~matseg_hub.synthetic.rows.scene_features`.

    Args:
        seed: the stream's seed; scene ``i`` is ``generate_scene(seed, i, sources, config)``.
        sources: :class:`~matseg_hub.synthetic.sources.SceneSources` / ``SourcePool``; default the built-in photos.
            Decoded once in this process and shared with DataLoader workers (fork).
        config: :class:`~matseg_hub.synthetic.scenes2d.SceneConfig`.
        num: number of scenes, or ``None`` for an infinite stream.
        num_shards: the most shards (see the module docstring): a finite stream of at most ``num_shards`` scenes
            keeps its order for any number of workers; an infinite one serves at most ``num_shards`` processes.
        encoded: ``True`` (default): Hub rows (JPEG/PNG, the same bytes as the folder and Parquet writers), so the
            stream can be mixed with :func:`folder_scene_stream`, saved or pushed. ``False``: rows of numpy arrays
            (``image`` uint8 [H, W, 3], ``masks`` uint8 [K, H, W] and ``annotated`` uint8 [H, W], 0-255) with no
            features declared: no encoding or decoding, the fastest way to feed a training loop.

    Rows: ``image`` (PIL, JPEG-encoded), ``masks`` (list of PIL "L" images, one per material), ``annotated``
    (PIL "L"), ``num_materials``, ``seed``, ``index``, ``source``, ``metadata`` (JSON text with every parameter).
    :func:`scene_tensors` turns either kind of row into torch tensors.
    """
    from datasets import IterableDataset

    from .scenes2d import SceneConfig
    from .sources import as_scene_sources

    if int(seed) < 0:
        raise MatSegInputError(f"seed must be >= 0, got {seed}")
    if num is not None and int(num) < 0:
        raise MatSegInputError(f"num must be >= 0 or None, got {num}")
    if int(num_shards) < 1:
        raise MatSegInputError(f"num_shards must be >= 1, got {num_shards}")
    sources = as_scene_sources(sources)
    config = config or SceneConfig()
    num = None if num is None else int(num)
    shards = int(num_shards) if num is None else max(1, min(num, int(num_shards)))
    indices = IterableDataset.from_generator(
        _index_rows, gen_kwargs={"shard_ids": list(range(shards)), "num_shards": shards, "num": num})
    rows = indices.map(_generated_row, remove_columns=["index"],
                       fn_kwargs={"seed": int(seed), "sources": sources, "config": config, "arrays": not encoded})
    # cast, not map(features=): the features then encode and decode the rows (PIL images), as for folder streams
    return rows.cast(scene_features()) if encoded else rows


def folder_scene_stream(root, nested: bool = True, on_error: str = "warn"):
    """Scenes of an official-layout folder tree (complete scenes only, sub-scenes included) as an
    :class:`datasets.IterableDataset` with the same features as :func:`scene_stream` (so the two can be mixed
    with :func:`mix_scene_streams` / ``datasets.interleave_datasets``). One shard per scene folder.

    The files are passed through as they are (no re-encoding); ``metadata`` holds ``scene_metadata.json`` and
    ``CameraParameters.json`` when present and ``folder`` relative to ``root``. Pickles are never read.

    Every folder is checked as it is read (:func:`~matseg_hub.synthetic.layout.check_scene_folder`: image and mask headers
    readable, masks of the image's size). A bad folder is, with ``on_error="warn"`` (default), left out of the
    stream with a warning that names it and says what is wrong — one broken render does not stop a training run;
    with ``on_error="raise"`` it raises :class:`~matseg_hub.errors.MatSegFormatError` naming the file.
    """
    from datasets import IterableDataset

    if on_error not in ("warn", "raise"):
        raise MatSegInputError(f"on_error must be 'warn' or 'raise', got {on_error!r}")
    folders = [str(p) for p in iter_scene_folders(root, nested=nested)]
    if not folders:
        raise MatSegInputError(f"no complete scene (a folder with {FINISHED_FILE}) under {root}")
    kwargs = {"folders": folders, "root": str(root), "on_error": on_error}
    return IterableDataset.from_generator(_folder_rows, features=scene_features(), gen_kwargs=kwargs)


def _folder_rows(folders: List[str], root: str, on_error: str = "warn"):
    for folder in folders:
        try:
            row = scene_row_from_folder(folder, root=root)
        except MatSegFormatError as exc:
            if on_error == "raise":
                raise
            logger.warning("skipping the scene folder %s: %s", folder, exc)
            continue
        yield row


def mix_scene_streams(streams: Sequence[Any], probabilities: Optional[Sequence[float]] = None, seed: int = 0,
                      stopping_strategy: str = "first_exhausted"):
    """Mix scene streams (generated 2D, folders of 3D renders, ...) with the given probabilities
    (``datasets.interleave_datasets``; the mixing is seeded, so it is reproducible)."""
    from datasets import interleave_datasets

    if not streams:
        raise MatSegInputError("mix_scene_streams needs at least one stream")
    return interleave_datasets(list(streams), probabilities=probabilities, seed=seed,
                               stopping_strategy=stopping_strategy)


def scene_tensors(row) -> dict:
    """A scene row (as the stream yields it: PIL images) -> torch tensors, without copies where possible.

    Returns ``{"image": uint8 [3, H, W], "masks": float32 [K, H, W] in [0, 1], "annotated": float32 [H, W],
    "num_materials", "seed", "index": int, "source", "license", "metadata": str}``. Masks follow the package's one
    grayscale rule (:func:`~matseg_hub.utils.images.decode_gray`: 8-bit / 255, 16-bit / 65535), as
    :func:`~matseg_hub.synthetic.layout.read_scene` does. Use it as a DataLoader's ``collate_fn`` with ``batch_size=None``,
    or inside your own collate (scenes differ in size and material count).
    """
    import torch

    from .rows import row_gray, row_image

    if isinstance(row["masks"], np.ndarray):  # a row of scene_stream(encoded=False): uint8 0-255
        rgb = row["image"]
        masks = torch.from_numpy(row["masks"]).float().div_(255.0)
        ann = torch.from_numpy(np.array(row["annotated"], dtype=np.float32)).div_(255.0)
    else:  # encoded or decoded images: the one grayscale rule (8-bit / 255, 16-bit / 65535)
        rgb = row_image(row["image"])
        masks = torch.from_numpy(np.stack([row_gray(m, f"masks[{k}]") for k, m in enumerate(row["masks"])]))
        ann = torch.from_numpy(row_gray(row["annotated"], "annotated"))
    return {
        "image": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))),
        "masks": masks,
        "annotated": ann,
        "num_materials": int(row["num_materials"]),
        "seed": int(row["seed"]),
        "index": int(row["index"]),
        "source": row["source"],
        "license": row.get("license", "unknown"),
        "metadata": row["metadata"],
    }

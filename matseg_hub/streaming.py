"""Synthetic scenes as a :class:`datasets.IterableDataset` (generated on the fly, or read from scene folders).

Determinism and sharding. Scene ``i`` of a stream is ``generate_scene(seed, i, ...)``: nothing depends on the
process that makes it. The stream is split into ``num_shards`` *virtual* shards (default 80,640, divisible by
every worker/node count up to 10 and by 12, 14, 15, 16, ...); shard ``v`` holds the scenes ``v, v + S, v + 2S,
...``. A process iterates the shards it was given round-robin, so

* with one process the order is ``0, 1, 2, ...``;
* ``DataLoader(num_workers=W)`` gives worker ``w`` the shards ``w, w + W, ...`` (datasets' own assignment) and
  collects the workers round-robin: the batches hold the same scenes, in the same order, for any ``W`` that
  divides ``num_shards``;
* ``datasets.distributed.split_dataset_by_node`` hands each node whole shards: nodes never repeat a scene and
  together make exactly the scenes of one process;
* infinite streams (``num=None``) keep every property: shards are interleaved, not consumed one after the other.

Example::

    from matseg_hub.scenes2d import SceneConfig, SceneSources
    from matseg_hub.streaming import scene_stream, scene_tensors

    sources = SceneSources.from_folders("photos/", "textures/")          # or SceneSources.builtin()
    ds = scene_stream(seed=0, sources=sources, config=SceneConfig(size=(512, 512)), num=10_000)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, collate_fn=scene_tensors)

``scene_stream(..., encoded=False)`` skips the JPEG/PNG round trip (rows of numpy arrays) for training.
"""

from __future__ import annotations

import sys
from itertools import count, islice
from typing import Any, Iterator, List, Optional, Sequence

import numpy as np
from datasets.iterable_dataset import ExamplesIterable

from .errors import MatSegFormatError, MatSegInputError
from .synthetic import (FINISHED_FILE, iter_scene_folders, scene_features, scene_license, scene_row,
                        scene_row_from_folder)
from .utils.logging import get_logger
from .utils.memory import keep_freed_memory

logger = get_logger(__name__)

DEFAULT_NUM_SHARDS = 80_640  # 2^8 * 3^2 * 5 * 7


class _InterleavedExamplesIterable(ExamplesIterable):
    """An ``ExamplesIterable`` whose generator receives all its shard ids at once (so it can interleave them)
    instead of being run once per shard, one shard after the other."""

    def __iter__(self):
        start = self._state_dict["shard_example_idx"] if self._state_dict else 0
        for key_example in self.generate_examples_fn(skip=start, **self.kwargs):
            if self._state_dict:
                self._state_dict["shard_example_idx"] += 1
            yield key_example

    def shuffle_data_sources(self, generator) -> "_InterleavedExamplesIterable":
        shuffled = super().shuffle_data_sources(generator)
        return _InterleavedExamplesIterable(shuffled.generate_examples_fn, shuffled.kwargs)

    def shard_data_sources(self, num_shards: int, index: int, contiguous=True) -> "_InterleavedExamplesIterable":
        # the only list in the kwargs is `shard_ids`: select from it directly (datasets' generic split builds one
        # dict per shard, slow with tens of thousands of virtual shards)
        ids = self.kwargs["shard_ids"]
        keep = self.split_shard_indices_by_worker(num_shards, index, contiguous=contiguous)
        kwargs = {**self.kwargs, "shard_ids": [ids[i] for i in keep]}
        return _InterleavedExamplesIterable(self.generate_examples_fn, kwargs)

    def reshard_data_sources(self) -> "_InterleavedExamplesIterable":
        return self


def stream_indices(shard_ids: Sequence[int], num_shards: int, num: Optional[int]) -> Iterator[int]:
    """Scene indices of the given virtual shards, round-robin: ``r * num_shards + v`` for ``r = 0, 1, ...``."""
    ids = [int(v) for v in shard_ids if num is None or int(v) < num]
    if not ids:
        return
    for r in count():
        base = r * num_shards
        if num is not None and base >= num:
            return
        for v in ids:
            i = base + v
            if num is not None and i >= num:
                continue
            yield i


def _in_dataloader_worker() -> bool:
    torch = sys.modules.get("torch")  # never imports torch
    return torch is not None and torch.utils.data.get_worker_info() is not None


def _generated_rows(shard_ids, num_shards: int, num: Optional[int], seed: int, sources, config, skip: int = 0,
                    arrays: bool = False):
    from .scenes2d import GENERATOR_NAME, generate_scene

    if _in_dataloader_worker():
        keep_freed_memory()  # a generator process: reuse freed scene arrays instead of faulting pages in (10 %)
    for index in islice(stream_indices(shard_ids, num_shards, num), skip, None):
        scene = generate_scene(seed, index, sources, config)
        if arrays:
            yield str(index), _array_row(scene, GENERATOR_NAME)
        else:
            yield str(index), scene_row(scene, source=GENERATOR_NAME)


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


def _features_info():
    from datasets import DatasetInfo

    return DatasetInfo(features=scene_features(), description="MatSeg synthetic scenes (matseg_hub)")


def scene_stream(seed: int = 0, sources=None, config=None, num: Optional[int] = None,
                 num_shards: int = DEFAULT_NUM_SHARDS, encoded: bool = True):
    """Generated 2D scenes as a :class:`datasets.IterableDataset` with :func:`~matseg_hub.synthetic.scene_features`.

    Args:
        seed: the stream's seed; scene ``i`` is ``generate_scene(seed, i, sources, config)``.
        sources: :class:`~matseg_hub.scenes2d.SceneSources` / ``SourcePool``; default the built-in photos.
            Decoded once in this process and shared with DataLoader workers (fork).
        config: :class:`~matseg_hub.scenes2d.SceneConfig`.
        num: number of scenes, or ``None`` for an infinite stream.
        num_shards: number of virtual shards (see the module docstring); a DataLoader worker count or a world size
            that divides it keeps the exact order.

        encoded: ``True`` (default): Hub rows (JPEG/PNG, the same bytes as the folder and Parquet writers), so the
            stream can be mixed with :func:`folder_scene_stream`, saved or pushed. ``False``: rows of numpy arrays
            (``image`` uint8 [H, W, 3], ``masks`` uint8 [K, H, W] and ``annotated`` uint8 [H, W], 0-255) with no
            features declared: no encoding or decoding, the fastest way to feed a training loop.

    Rows: ``image`` (PIL, JPEG-encoded), ``masks`` (list of PIL "L" images, one per material), ``annotated``
    (PIL "L"), ``num_materials``, ``seed``, ``index``, ``source``, ``metadata`` (JSON text with every parameter).
    :func:`scene_tensors` turns either kind of row into torch tensors.
    """
    from datasets import IterableDataset

    from .scenes2d import SceneConfig, _as_sources

    if int(seed) < 0:
        raise MatSegInputError(f"seed must be >= 0, got {seed}")
    if num is not None and int(num) < 0:
        raise MatSegInputError(f"num must be >= 0 or None, got {num}")
    if int(num_shards) < 1:
        raise MatSegInputError(f"num_shards must be >= 1, got {num_shards}")
    sources = _as_sources(sources)
    config = config or SceneConfig()
    num_shards = int(num_shards)
    kwargs = dict(shard_ids=list(range(num_shards)), num_shards=num_shards, num=None if num is None else int(num),
                  seed=int(seed), sources=sources, config=config, arrays=not encoded)
    info = _features_info() if encoded else None
    return IterableDataset(_InterleavedExamplesIterable(_generated_rows, kwargs), info=info)


def folder_scene_stream(root, nested: bool = True, on_error: str = "warn"):
    """Scenes of an official-layout folder tree (complete scenes only, sub-scenes included) as an
    :class:`datasets.IterableDataset` with the same features as :func:`scene_stream` (so the two can be mixed
    with :func:`mix_scene_streams` / ``datasets.interleave_datasets``). One shard per scene folder.

    The files are passed through as they are (no re-encoding); ``metadata`` holds ``scene_metadata.json`` and
    ``CameraParameters.json`` when present and ``folder`` relative to ``root``. Pickles are never read.

    Every folder is checked as it is read (:func:`~matseg_hub.synthetic.check_scene_folder`: image and mask headers
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
    return IterableDataset(ExamplesIterable(_folder_rows_per_shard, kwargs), info=_features_info())


def _folder_rows_per_shard(folders: List[str], root: str, on_error: str = "warn"):
    for folder in folders:
        try:
            row = scene_row_from_folder(folder, root=root)
        except MatSegFormatError as exc:
            if on_error == "raise":
                raise
            logger.warning("skipping the scene folder %s: %s", folder, exc)
            continue
        yield folder, row


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
    :func:`~matseg_hub.synthetic.read_scene` does. Use it as a DataLoader's ``collate_fn`` with ``batch_size=None``,
    or inside your own collate (scenes differ in size and material count).
    """
    import torch

    from .synthetic import row_gray, row_image

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

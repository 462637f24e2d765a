"""Training data: a weighted mixture of scene streams cut into pixel-capped, augmented batches, with exact resume.

Sources (``TrainConfig.data_sources``, each a mapping with ``type`` and ``weight``):

* ``scenes2d`` — the 2D generator on the fly (:func:`matseg_hub.synthetic.streaming.scene_stream` with ``encoded=False``:
  the scene's arrays, never encoded to JPEG/PNG and decoded again); keys ``seed``
  (default: the run's seed), ``natural`` / ``textures`` (folder, ``hub:<repo>`` or ``builtin``), ``max_side``,
  and any :class:`~matseg_hub.synthetic.scenes2d.SceneConfig` field (``size``, ``min_size``, ``max_size``, ...);
* ``folder`` — scene folders in the official layout (``path``), e.g. the authors' published synthetic set
  (:func:`matseg_hub.synthetic.streaming.folder_scene_stream`);
* ``hub`` — a Hub dataset with the scene features (``path``, ``name``, ``split``, a Parquet dataset folder or a
  Hub id), streamed: its encoded rows are decoded here.

Every source is a :class:`datasets.IterableDataset`, split between processes with
``datasets.distributed.split_dataset_by_node`` and between DataLoader workers by ``datasets`` itself. A worker
builds its ``b``-th batch from ``stream_rng("training.batch", seed, rank, worker, b)``
(:mod:`matseg_hub.utils.seeds`): the batch shape (:func:`~matseg_hub.training.batching.sample_batch_shape`), which
source fills each slot (by weight), the crops; the augmentations use a ``torch.Generator`` seeded the same way.
Finite sources restart with the next epoch.

Exact resume. Each batch carries its worker's state (batch counter + each source's ``state_dict()``).
:class:`ResumableLoader` keeps, for every worker, the state at the start of the current round of the DataLoader's
round-robin, and its :meth:`~ResumableLoader.state_dict` says how many batches of that round were consumed;
after :meth:`~ResumableLoader.load_state_dict` the workers restart from those states and the already consumed
batches of the round are regenerated and dropped. The next batch is therefore bit-identical, as long as the
world size, the number of workers and the sources are the same.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from ..errors import MatSegInputError
from ..utils.logging import get_logger
from ..utils.seeds import stream_rng
from .augment import AugmentConfig, augment_batch
from .batching import collate_scenes, fit_scene, sample_batch_shape

logger = get_logger(__name__)

SOURCE_TYPES = ("scenes2d", "folder", "hub")


@dataclass
class BatchSettings:
    """Shape of the batches (see :func:`~matseg_hub.training.batching.sample_batch_shape`)."""

    min_size: int = 250
    max_size: int = 900
    multiple: int = 32
    max_pixels: int = 700 * 700 * 2
    max_batch_size: int = 7
    min_batch_size: int = 1
    max_materials: int = 10
    augment: Optional[AugmentConfig] = field(default_factory=AugmentConfig)


def build_source(spec: Dict[str, Any], seed: int = 0):
    """One ``data_sources`` entry -> ``datasets.IterableDataset`` of scene rows
    (:func:`~matseg_hub.synthetic.rows.scene_features`)."""
    from dataclasses import fields

    kind = spec.get("type")
    if kind == "scenes2d":
        from ..synthetic.scenes2d import SceneConfig
        from ..synthetic.sources import SceneSources
        from ..synthetic.streaming import scene_stream

        known = {f.name for f in fields(SceneConfig)}
        extra = set(spec) - known - {"type", "weight", "seed", "natural", "textures", "max_side", "name"}
        if extra:
            raise MatSegInputError(f"unknown key(s) {sorted(extra)} in a scenes2d source; "
                                   f"SceneConfig fields: {sorted(known)}")
        config = SceneConfig.from_dict({k: v for k, v in spec.items() if k in known})
        natural, textures = spec.get("natural"), spec.get("textures")
        max_side = int(spec.get("max_side", 1024))
        if natural is None and textures is None:
            sources = SceneSources.builtin(max_side=max_side)
        else:
            sources = SceneSources.from_spec(natural, textures, max_side=max_side)
        return scene_stream(seed=int(spec.get("seed", seed)), sources=sources, config=config, encoded=False)
    if kind == "folder":
        from ..synthetic.streaming import folder_scene_stream

        if "path" not in spec:
            raise MatSegInputError(f"a folder source needs a 'path': {spec}")
        return folder_scene_stream(spec["path"])
    if kind == "hub":
        from datasets import load_dataset

        if "path" not in spec:
            raise MatSegInputError(f"a hub source needs a 'path' (dataset id or folder): {spec}")
        ds = load_dataset(spec["path"], spec.get("name"), split=spec.get("split", "train"), streaming=True)
        missing = {"image", "masks", "annotated"} - set(ds.features or {})
        if missing:
            raise MatSegInputError(f"hub source {spec['path']} lacks the scene columns {sorted(missing)}")
        return ds
    raise MatSegInputError(f"unknown data source type {kind!r}; use one of {SOURCE_TYPES}")


def _row_arrays(row: Dict[str, Any]):
    """A scene row (decoded or bytes) -> (rgb uint8 [H, W, 3], masks float32 [K, H, W], annotated float32 [H, W])."""
    from ..synthetic.rows import row_to_scene

    scene = row_to_scene(row)
    return scene.rgb, scene.masks, scene.annotated


class SceneBatchStream(torch.utils.data.IterableDataset):
    """Endless stream of training batches for one process (see the module docstring).

    Yields dicts: ``images`` float32 [B, 3, H, W] (RGB 0-255, augmented), ``masks`` float32 [B, K, H, W],
    ``annotated`` float32 [B, H, W], ``num_materials`` int64 [B], ``worker`` / ``batch_index`` (ints),
    ``state`` (the worker's state after this batch), ``sources`` (source index of each image).
    """

    def __init__(self, sources: Sequence[Any], weights: Sequence[float], settings: BatchSettings, *, seed: int = 0,
                 rank: int = 0, world_size: int = 1, names: Optional[Sequence[str]] = None):
        super().__init__()
        if len(sources) != len(weights) or not sources:
            raise MatSegInputError("need one weight per source and at least one source")
        w = np.asarray(weights, dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise MatSegInputError(f"source weights must be >= 0 with a positive sum, got {list(weights)}")
        from datasets.distributed import split_dataset_by_node

        self.sources = [split_dataset_by_node(s, rank=rank, world_size=world_size) if world_size > 1 else s
                        for s in sources]
        self.probabilities = w / w.sum()
        self.names = list(names) if names else [f"source{i}" for i in range(len(sources))]
        self.settings = settings
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.start_states: Optional[List[Optional[Dict[str, Any]]]] = None  # per worker

    def _worker(self):
        info = torch.utils.data.get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        worker, _ = self._worker()
        start = self.start_states[worker] if self.start_states and worker < len(self.start_states) else None
        sources = [copy.copy(s) for s in self.sources]
        batch_index = 0
        epochs = [0] * len(sources)
        if start:
            batch_index = int(start["batch"])
            epochs = list(start["epochs"])
            for s, e, st in zip(sources, epochs, start["sources"]):
                s.set_epoch(e)
                if st is not None:
                    s.load_state_dict(st)
        iters: List[Optional[Iterator]] = [None] * len(sources)
        started = [start is not None and start["sources"][i] is not None for i in range(len(sources))]

        def next_row(i: int):
            for _ in range(3):
                if iters[i] is None:
                    iters[i] = iter(sources[i])
                    started[i] = True
                try:
                    return next(iters[i])
                except StopIteration:
                    epochs[i] += 1
                    sources[i].set_epoch(epochs[i])
                    iters[i] = None
            raise MatSegInputError(f"data source {self.names[i]!r} yields no scene for process {self.rank}, "
                                   f"worker {worker} (fewer shards than processes x workers?)")

        st = self.settings
        while True:
            rng = stream_rng("training.batch", self.seed, self.rank, worker, batch_index)
            shape = sample_batch_shape(rng, min_size=st.min_size, max_size=st.max_size, max_pixels=st.max_pixels,
                                       max_batch_size=st.max_batch_size, multiple=st.multiple,
                                       min_batch_size=st.min_batch_size)
            fitted, picked = [], []
            while len(fitted) < shape.batch_size:
                i = int(rng.choice(len(sources), p=self.probabilities))
                rgb, masks, ann = _row_arrays(next_row(i))
                out = fit_scene(rgb, masks, ann, shape.height, shape.width, rng)
                if len(out[1]) == 0:
                    continue
                fitted.append(out)
                picked.append(i)
            batch = collate_scenes(fitted, max_materials=st.max_materials)
            if st.augment is not None:
                gen = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 63 - 1)))
                images, masks, ann = augment_batch(batch["images"], batch["masks"], batch["annotated"],
                                                   generator=gen, config=st.augment)
                batch.update(images=images, masks=masks, annotated=ann)
            else:
                batch["images"] = batch["images"].float()
            batch_index += 1
            state = {"batch": batch_index, "epochs": list(epochs),
                     "sources": [s.state_dict() if started[i] else None for i, s in enumerate(sources)]}
            batch.update(worker=worker, batch_index=batch_index - 1, state=state,
                         sources=torch.tensor(picked, dtype=torch.int64))
            yield batch


def _identity(x):
    return x


class ResumableLoader:
    """A ``DataLoader`` over a :class:`SceneBatchStream` that can save and restore its exact position.

    Iterate it for batches; :meth:`state_dict` / :meth:`load_state_dict` (JSON-serialisable) before iterating again.
    """

    def __init__(self, stream: SceneBatchStream, num_workers: int = 0, prefetch_factor: int = 2,
                 pin_memory: bool = False):
        self.stream = stream
        self.num_workers = int(num_workers)
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.consumed = 0
        self._round_start: List[Optional[Dict[str, Any]]] = [None] * max(1, self.num_workers)
        self._last: List[Optional[Dict[str, Any]]] = [None] * max(1, self.num_workers)
        self._drop = 0

    @property
    def _w(self) -> int:
        return max(1, self.num_workers)

    def _loader(self):
        kwargs: Dict[str, Any] = dict(batch_size=None, num_workers=self.num_workers, collate_fn=_identity,
                                      pin_memory=self.pin_memory)
        if self.num_workers > 0:
            kwargs.update(prefetch_factor=self.prefetch_factor, persistent_workers=False)
        return torch.utils.data.DataLoader(self.stream, **kwargs)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        self.stream.start_states = list(self._round_start)
        self._last = list(self._round_start)
        drop = self._drop
        for batch in self._loader():
            w = int(batch["worker"])
            if drop:  # regenerated batches of the current round that were consumed before the checkpoint
                drop -= 1
                self._last[w] = batch.pop("state")
                continue
            if self.consumed % self._w == 0:
                self._round_start = list(self._last)
            self._last[w] = batch.pop("state")
            self.consumed += 1
            self._drop = 0
            yield batch

    def state_dict(self) -> Dict[str, Any]:
        j = self.consumed % self._w
        return {"consumed": self.consumed, "num_workers": self.num_workers, "rank": self.stream.rank,
                "world_size": self.stream.world_size, "round_start": copy.deepcopy(self._round_start
                                                                                   if j else self._last),
                "drop": j}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if int(state["num_workers"]) != self.num_workers or int(state["world_size"]) != self.stream.world_size:
            raise MatSegInputError(
                f"the checkpoint's data position was saved with {state['num_workers']} workers x "
                f"{state['world_size']} processes; resume with the same (now {self.num_workers} x "
                f"{self.stream.world_size}) for an exact continuation")
        self.consumed = int(state["consumed"])
        self._round_start = list(state["round_start"])
        self._last = list(state["round_start"])
        self._drop = int(state["drop"])


def build_loader(config, rank: int = 0, world_size: int = 1, pin_memory: bool = False) -> ResumableLoader:
    """The training loader of a :class:`~matseg_hub.training.config.TrainConfig` for process ``rank``;
    ``pin_memory``: page-locked batches for fast, asynchronous copies to a GPU (give ``True`` when training on
    CUDA: ``train.py`` passes ``accelerator.device.type == "cuda"``)."""
    specs = config.data_sources
    sources = [build_source(s, seed=config.seed) for s in specs]
    weights = [float(s.get("weight", 1.0)) for s in specs]
    names = [str(s.get("name") or f"{s['type']}{i}") for i, s in enumerate(specs)]
    settings = BatchSettings(min_size=config.min_size, max_size=config.max_size, multiple=config.size_multiple,
                             max_pixels=config.max_pixels, max_batch_size=config.max_batch_size,
                             min_batch_size=config.min_batch_size, max_materials=config.max_materials,
                             augment=AugmentConfig() if config.augment else None)
    stream = SceneBatchStream(sources, weights, settings, seed=config.seed, rank=rank, world_size=world_size,
                              names=names)
    return ResumableLoader(stream, num_workers=config.num_workers, prefetch_factor=config.prefetch_factor,
                           pin_memory=pin_memory)


__all__ = ["BatchSettings", "ResumableLoader", "SceneBatchStream", "SOURCE_TYPES", "build_loader", "build_source"]

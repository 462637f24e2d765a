"""The resumable, parallel PBR generation run (``matseg generate pbr``): materials made from a pool of textures.

Material ``item`` of a run is :func:`material_for_item` ``(pool, seed, item)``: one or two textures drawn from the
pool with the item's own random stream, turned into PBR materials by :func:`~matseg_hub.materials.pbr.texture_to_pbr`
and, with probability ``mix_ratio``, mixed by :func:`~matseg_hub.materials.pbr.mix_materials`. The pool is a
folder of textures or a textures Hub dataset (:class:`~matseg_hub.materials.datasets.TexturePool`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from ..errors import MatSegFormatError, MatSegInputError
from ..utils.logging import get_logger
from .pbr import (FINISHED, PBRMaterial, material_preview, mix_materials, read_pbr_folder, texture_to_pbr,
                  write_pbr_folder)

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]

_POOL = None


def _init_worker(source: str) -> None:
    global _POOL
    from .datasets import TexturePool

    _POOL = TexturePool(source)


def _short(name: str, n: int = 48) -> str:
    stem = Path(name).stem
    stem = stem[: -len("_Texture")] if stem.endswith("_Texture") else stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:n]


def _load_texture(pool, index: int):
    """``pool[index]``, or ``None`` when unreadable (pools with ``load``, e.g. TexturePool, log and remember it)."""
    load = getattr(pool, "load", None)
    if load is not None:
        return load(index)
    try:
        return pool[index]
    except MatSegFormatError as exc:
        logger.warning("skipping an unreadable texture: %s", exc)
        return None


def _draw_textures(pool, rng: np.random.Generator, k: int) -> list:
    """``k`` distinct readable textures: ``k`` distinct random indices; an unreadable one is replaced by the next
    readable index not taken (in pool order, wrapping), so the choice depends only on the rng and the pool.

    Returns fewer than ``k`` textures when fewer are readable; raises :class:`MatSegInputError` when none is.
    """
    n = len(pool)
    picks = [int(rng.integers(0, n))] if k == 1 else [int(i) for i in rng.choice(n, k, replace=False)]
    taken: set = set(picks)
    out = []
    for idx in picks:
        tex = _load_texture(pool, idx)
        step = 1
        while tex is None and step < n:
            cand = (idx + step) % n
            step += 1
            if cand in taken:
                continue
            taken.add(cand)
            tex = _load_texture(pool, cand)
        if tex is not None:
            out.append(tex)
    if not out:
        raise MatSegInputError(f"no texture of {getattr(pool, 'source', 'the texture source')} can be read")
    return out


def material_for_item(pool, seed: int, item: int, mix_ratio: float = 0.3) -> PBRMaterial:
    """Material number ``item`` of a run with ``seed``: depends only on ``(seed, item)`` and the texture pool.

    With probability ``mix_ratio`` it is a mix of two materials made from two different random textures
    (a pool of one texture gives no mixes), otherwise a material made from one random texture. Unreadable
    textures are skipped (see :func:`_draw_textures`). ``metadata`` records ``seed``, ``item``, sources and licence.
    """
    if len(pool) == 0:
        raise MatSegInputError("the texture source is empty")
    from ..utils.seeds import stream_rng

    rng = stream_rng("pbr.material", int(seed), int(item))
    mix = rng.random() < mix_ratio and len(pool) >= 2
    texs = _draw_textures(pool, rng, 2 if mix else 1)
    if len(texs) >= 2:
        mats = [texture_to_pbr(tex.image, rng=rng, source=tex.name, license=tex.license) for tex in texs]
        mat = mix_materials(mats, rng=rng)
        mat.metadata["name"] = "Merge_" + "_".join(_short(m.metadata["source"], 40) for m in mats)
    else:
        tex = texs[0]
        mat = texture_to_pbr(tex.image, rng=rng, source=tex.name, license=tex.license)
        mat.metadata["name"] = _short(tex.name)
    mat.metadata.update(seed=int(seed), item=int(item))
    return mat


def _generate_one(task) -> tuple:
    """Worker: one material folder; returns (folder name, {unreadable texture: error} known to this process)."""
    out_dir, seed, item, mix_ratio = task
    mat = material_for_item(_POOL, seed, item, mix_ratio)
    folder = Path(out_dir) / f"{item:07d}_{mat.metadata['name']}"
    write_pbr_folder(mat, folder)
    return folder.name, dict(getattr(_POOL, "bad", {}))


@dataclass
class PBRRunReport:
    """Summary of :func:`generate_pbr_folder`."""

    num_items: int = 0
    num_written: int = 0
    num_resumed: int = 0
    bad_textures: Dict[str, str] = field(default_factory=dict)  # unreadable texture -> error (skipped)
    preview: Optional[Path] = None


def generate_pbr_folder(textures: PathLike, output_dir: PathLike, num: int, *, seed: int = 0,
                        mix_ratio: float = 0.3, workers: int = 1, preview: Optional[PathLike] = None,
                        shard_index: int = 0, num_shards: int = 1, show_progress: Optional[bool] = None
                        ) -> PBRRunReport:
    """Write ``num`` materials into ``output_dir/<item:07d>_<name>/`` (authors' layout); resumable and parallel.

    Material ``i`` depends only on ``(seed, i)`` and the textures (:func:`material_for_item`), so results are the
    same for any ``workers`` and any split into ``shard_index``/``num_shards`` jobs. Each folder is written
    atomically with ``Finished.txt`` last; a rerun skips the items whose folder is finished. ``seed``,
    ``mix_ratio`` and the texture source are recorded in ``output_dir/.matseg_run.json``
    (:func:`~matseg_hub.utils.files.check_run_params`); a rerun or job with other values is refused. Unreadable
    textures are skipped and listed in :attr:`PBRRunReport.bad_textures`.

    Args:
        textures: texture folder, built textures dataset folder or Hub dataset id.
        preview: write a picture (albedo | normal | roughness | metallic | height of up to 8 materials) there.

    Raises:
        MatSegInputError: before any work, for bad arguments or shard positions, an output folder started with
            other parameters, or a texture source with no readable texture.
    """
    from ..hub.writer import check_job, iter_job_items
    from ..utils.images import encode_image
    from ..utils.files import check_run_params
    from ..utils.files import atomic_write_bytes
    from ..utils.logging import progress

    if num < 0:
        raise MatSegInputError(f"--num must be >= 0, got {num}")
    if not 0.0 <= mix_ratio <= 1.0:
        raise MatSegInputError(f"--mix-ratio must be in [0, 1], got {mix_ratio}")
    if workers < 1:
        raise MatSegInputError(f"--workers must be >= 1, got {workers}")
    check_job(shard_index, num_shards)
    source = Path(textures)
    run_params = {"seed": int(seed), "mix_ratio": float(mix_ratio),
                  "textures": str(source.resolve()) if source.is_dir() else str(textures)}
    check_run_params(output_dir, "pbr", run_params, record=False)  # recorded once the texture source is known good
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    done = set()
    for p in output_dir.iterdir():
        head = p.name.split("_", 1)[0]
        if p.is_dir() and head.isdigit() and (p / FINISHED).is_file():
            done.add(int(head))
    items = list(iter_job_items(range(num), shard_index, num_shards))
    todo = [i for i in items if i not in done]
    report = PBRRunReport(num_items=len(items), num_resumed=len(items) - len(todo))
    if report.num_resumed:
        logger.info("resuming: %d of %d materials already written", report.num_resumed, len(items))
    tasks = [(str(output_dir), int(seed), i, float(mix_ratio)) for i in todo]
    bar = dict(total=len(tasks), desc="making PBR materials", unit="mat",
               disable=None if show_progress is None else not show_progress)
    if tasks:
        from .datasets import TexturePool

        # fail early here, with a clear message, when no texture is readable (and prepare a dataset cache once)
        TexturePool(textures).first_usable()
    check_run_params(output_dir, "pbr", run_params)
    if tasks:
        if workers > 1 and len(tasks) > 1:
            from ..utils.workers import worker_pool

            with worker_pool(min(workers, len(tasks)), _init_worker, (str(textures),), start_method="spawn") as pool:
                for _, bad in progress(pool.imap_unordered(_generate_one, tasks), **bar):
                    report.num_written += 1
                    report.bad_textures.update(bad)
        else:
            _init_worker(str(textures))
            for task in progress(tasks, **bar):
                _, bad = _generate_one(task)
                report.num_written += 1
                report.bad_textures.update(bad)
        report.bad_textures = dict(sorted(report.bad_textures.items()))
    if preview is not None:
        rows = []
        for p in sorted(output_dir.iterdir()):
            if len(rows) >= 8:
                break
            if p.is_dir() and (p / FINISHED).is_file():
                rows.append(material_preview(read_pbr_folder(p)))
        picture = np.concatenate(rows, axis=0) if rows else np.full((64, 64, 3), 255, np.uint8)
        ext = ".jpg" if Path(preview).suffix.lower() in (".jpg", ".jpeg") else ".png"
        atomic_write_bytes(preview, encode_image(picture, ext))
        report.preview = Path(preview)
    return report

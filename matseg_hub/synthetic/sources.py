"""Source images of the 2D generator, decoded and downscaled once per process (SPEC §4).

* :class:`SourcePool` — images (uint8 RGB, longer side at most ``max_side``) with their names and half-resolution
  copies (:meth:`SourcePool.half_resolution`), from a folder (:meth:`SourcePool.from_folder`), a Hub dataset with an
  image column (:meth:`SourcePool.from_hub_dataset`) or scikit-image's bundled photos (:meth:`SourcePool.builtin`).
* :class:`SceneSources` — the natural photos (patterns, backgrounds, shading) and the textures of a run.
* :func:`as_scene_sources` — what every generator entry point accepts as ``sources``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..errors import MatSegFormatError, MatSegInputError
from ..hub.writer import is_built_dataset_folder
from ..utils.builtin_photos import BUILTIN_NATURAL, BUILTIN_TEXTURES, SKIMAGE_PREFIX, skimage_data_dir
from ..utils.images import IMAGE_EXTENSIONS, is_image_file
from ..utils.logging import get_logger
from .patterns import half_resolution

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]
_MIN_SOURCE_SIDE = 8


class SourcePool:
    """Decoded, downscaled source images held in memory (decoded once per process, shared by every scene).

    Args:
        images: uint8 [H, W, 3] RGB arrays.
        names: one name per image (recorded in each scene's metadata).
        max_side: images whose longer side exceeds it are downscaled (``cv2.INTER_AREA``) when added.

    Memory is about ``3 * max_side**2`` bytes per image, and a quarter more once :meth:`half` copies are made (the
    natural images of :class:`SceneSources` keep them); build a pool from a subset (``limit``) for huge sources.
    """

    def __init__(self, images: Sequence[np.ndarray], names: Optional[Sequence[str]] = None, max_side: int = 1024):
        if max_side < _MIN_SOURCE_SIDE:
            raise MatSegInputError(f"max_side must be >= {_MIN_SOURCE_SIDE}, got {max_side}")
        self.max_side = int(max_side)
        names = list(names) if names is not None else [f"image{i}" for i in range(len(images))]
        if len(names) != len(images):
            raise MatSegInputError(f"{len(images)} images but {len(names)} names")
        self.images: List[np.ndarray] = []
        self.names: List[str] = []
        self.is_gray: List[bool] = []
        self._halves: Dict[int, np.ndarray] = {}
        for image, name in zip(images, names):
            self.add(image, name)

    def add(self, image: np.ndarray, name: str) -> None:
        """Add one RGB uint8 image (gray [H, W] and RGBA are converted; tiny images are refused)."""
        import cv2

        image = np.asarray(image)
        if image.dtype == np.bool_:
            image = image.astype(np.uint8) * 255
        if image.dtype != np.uint8:
            raise MatSegInputError(f"source {name!r} must be uint8, got {image.dtype}")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        elif image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        elif image.ndim == 3 and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise MatSegInputError(f"source {name!r} must be [H, W, 3], got {image.shape}")
        if min(image.shape[:2]) < _MIN_SOURCE_SIDE:
            raise MatSegInputError(f"source {name!r} is {image.shape[1]}x{image.shape[0]} pixels; at least "
                                   f"{_MIN_SOURCE_SIDE}x{_MIN_SOURCE_SIDE} are needed")
        h, w = image.shape[:2]
        if max(h, w) > self.max_side:
            r = self.max_side / max(h, w)
            image = cv2.resize(image, (max(1, round(w * r)), max(1, round(h * r))), interpolation=cv2.INTER_AREA)
        image = np.ascontiguousarray(image)
        small = image[::8, ::8].astype(np.int16)
        gray = bool(np.abs(small[:, :, 0] - small[:, :, 1]).max() <= 2
                    and np.abs(small[:, :, 1] - small[:, :, 2]).max() <= 2)
        self.images.append(image)
        self.names.append(str(name))
        self.is_gray.append(gray)

    def half_resolution(self, i: int) -> np.ndarray:
        """Image ``i`` at half resolution (:func:`~matseg_hub.synthetic.patterns.half_resolution`), made once and kept:
        crops that shrink a source 2x or more are read from it."""
        half = self._halves.get(i)
        if half is None:
            half = self._halves[i] = half_resolution(self.images[i])
        return half

    def keep_halves(self) -> "SourcePool":
        """Make every :meth:`half` copy now, once: forked workers (a ``DataLoader``'s) share them, spawned ones
        receive them with the pickled pool instead of each making its own."""
        for i in range(len(self.images)):
            self.half_resolution(i)
        return self

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"SourcePool({len(self)} images, max_side={self.max_side})"

    @classmethod
    def from_folder(cls, folder: PathLike, *, max_side: int = 1024, recursive: bool = True,
                    limit: Optional[int] = None, on_error: str = "warn") -> "SourcePool":
        """Every image file under ``folder`` (sorted by path, so the pool, and so the scenes, are reproducible).

        Args:
            on_error: ``"warn"`` (log the unreadable file and skip it) or ``"raise"``.

        Raises:
            MatSegInputError: the folder is missing or holds no readable image.
            MatSegFormatError: an unreadable image with ``on_error="raise"`` (names the file).
        """
        from ..utils.images import read_image

        if on_error not in ("warn", "raise"):
            raise MatSegInputError(f"on_error must be 'warn' or 'raise', got {on_error!r}")
        folder = Path(folder)
        if not folder.is_dir():
            raise MatSegInputError(f"source folder {folder} does not exist or is not a folder")
        if is_built_dataset_folder(folder):  # Parquet shards + card (e.g. `matseg build textures`): read its rows
            return cls.from_hub_dataset(str(folder), column=_image_column(folder), limit=limit, max_side=max_side,
                                        on_error=on_error)
        pattern = "**/*" if recursive else "*"
        files = sorted(p for p in folder.glob(pattern) if p.is_file() and is_image_file(p)
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        if limit is not None:
            files = files[: int(limit)]
        pool = cls([], max_side=max_side)
        for path in files:
            try:
                pool.add(read_image(path), str(path.relative_to(folder)))
            except (MatSegFormatError, MatSegInputError) as exc:
                if on_error == "raise":
                    raise MatSegFormatError(str(exc), path=path) from None
                logger.warning("skipping source image %s: %s", path, exc)
        if not len(pool):
            raise MatSegInputError(f"no readable image ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
        logger.info("loaded %d source images from %s", len(pool), folder)
        return pool

    @classmethod
    def from_hub_dataset(cls, path: str, *, name: Optional[str] = None, split: str = "train", column: str = "image",
                         streaming: bool = True, limit: Optional[int] = 1000, max_side: int = 1024,
                         on_error: str = "warn", **load_kwargs) -> "SourcePool":
        """The first ``limit`` images of a Hub dataset (``datasets.load_dataset``, streamed by default).

        ``path`` is a Hub repo id or a local dataset folder; ``column`` holds the images (an ``Image`` feature,
        e.g. the texture datasets' ``image``).
        """
        from datasets import Image, load_dataset

        from ..utils.images import decode_image

        ds = load_dataset(path, name, split=split, streaming=streaming, **load_kwargs)
        features = getattr(ds, "features", None)
        if features is not None and column not in features:
            raise MatSegInputError(f"dataset {path} has no column {column!r}; columns: {list(features)}")
        ds = ds.cast_column(column, Image(decode=False))
        pool = cls([], max_side=max_side)
        for i, row in enumerate(ds):
            if limit is not None and i >= limit:
                break
            value = row[column]
            label = f"{path}:{split}:{i}"
            try:
                data = value.get("bytes") if isinstance(value, dict) else None
                if data is None and isinstance(value, dict) and value.get("path"):
                    data = Path(value["path"]).read_bytes()
                if data is None:
                    raise MatSegFormatError("row has no image", field=column)
                pool.add(decode_image(data, label), label)
            except (MatSegFormatError, MatSegInputError, OSError) as exc:
                if on_error == "raise":
                    raise
                logger.warning("skipping %s: %s", label, exc)
        if not len(pool):
            raise MatSegInputError(f"no readable image in column {column!r} of {path} ({split})")
        return pool

    @classmethod
    def builtin(cls, kind: str = "natural", *, max_side: int = 1024) -> "SourcePool":
        """Photos shipped inside scikit-image (no download, any fresh machine).

        ``kind="natural"``: photographs used for patterns and backgrounds; ``kind="textures"``: scikit-image's
        brick/grass/gravel/moon textures and photos with fine texture (stars, stained tissue, retina, coffee).
        """
        if kind not in ("natural", "textures"):
            raise MatSegInputError(f"kind must be 'natural' or 'textures', got {kind!r}")
        from ..utils.images import read_image

        folder = skimage_data_dir()
        names = BUILTIN_NATURAL if kind == "natural" else BUILTIN_TEXTURES
        pool = cls([], max_side=max_side)
        for n in names:
            if (folder / n).is_file():
                pool.add(read_image(folder / n), SKIMAGE_PREFIX + n)
        if not len(pool):  # pragma: no cover - depends on the scikit-image build
            raise MatSegInputError(f"scikit-image's bundled images were not found in {folder}")
        return pool


@dataclass
class SceneSources:
    """Where scenes take their pictures from: natural images (patterns, shading, background) and textures."""

    natural: SourcePool
    textures: Optional[SourcePool] = None

    def __post_init__(self):
        if isinstance(self.natural, SourcePool):
            self.natural.keep_halves()

    @classmethod
    def builtin(cls, max_side: int = 1024) -> "SceneSources":
        return cls(SourcePool.builtin("natural", max_side=max_side), SourcePool.builtin("textures", max_side=max_side))

    @classmethod
    def from_folders(cls, natural_images: PathLike, textures: Optional[PathLike] = None, *, max_side: int = 1024,
                     on_error: str = "warn") -> "SceneSources":
        nat = SourcePool.from_folder(natural_images, max_side=max_side, on_error=on_error)
        tex = SourcePool.from_folder(textures, max_side=max_side, on_error=on_error) if textures else None
        return cls(nat, tex)

    @classmethod
    def from_spec(cls, natural: Optional[str] = None, textures: Optional[str] = None, *, max_side: int = 1024,
                  limit: Optional[int] = 1000, on_error: str = "warn") -> "SceneSources":
        """From command-line style specs: a folder path, ``hub:<repo id>[:split[:column]]`` or ``builtin``."""
        nat = _pool_from_spec(natural or "builtin", "natural", max_side, limit, on_error)
        tex = _pool_from_spec(textures or "builtin", "textures", max_side, limit, on_error)
        return cls(nat, tex)


def _image_column(dataset_folder: Path) -> str:
    """The image column of a built dataset folder: ``image`` (textures, scenes) or ``albedo`` (PBR materials)."""
    import pyarrow.parquet as pq

    shard = sorted((dataset_folder / "data").glob("*.parquet"))[0]
    names = pq.read_schema(shard).names
    for column in ("image", "albedo"):
        if column in names:
            return column
    raise MatSegFormatError(f"a dataset folder without an image column (columns: {names}); give a folder of images, "
                            "a textures or PBR dataset, or hub:<id>:<split>:<column>", path=shard)


def _pool_from_spec(spec: str, kind: str, max_side: int, limit: Optional[int], on_error: str) -> SourcePool:
    if spec == "builtin":
        return SourcePool.builtin(kind, max_side=max_side)
    if spec.startswith("hub:"):
        parts = spec[4:].split(":")
        repo = parts[0]
        split = parts[1] if len(parts) > 1 and parts[1] else "train"
        column = parts[2] if len(parts) > 2 and parts[2] else "image"
        return SourcePool.from_hub_dataset(repo, split=split, column=column, limit=limit, max_side=max_side,
                                           on_error=on_error)
    return SourcePool.from_folder(spec, max_side=max_side, limit=limit, on_error=on_error)


def as_scene_sources(sources) -> SceneSources:
    """``sources`` as :class:`SceneSources`: ``None`` -> the built-in photos (decoded once per process), a
    :class:`SourcePool` -> that pool for patterns and textures alike."""
    if sources is None:
        return _builtin_cached()
    if isinstance(sources, SceneSources):
        return sources
    if isinstance(sources, SourcePool):
        return SceneSources(sources, sources)
    raise MatSegInputError(f"sources must be SceneSources or SourcePool, got {type(sources).__name__}")


_BUILTIN: Optional[SceneSources] = None


def _builtin_cached() -> SceneSources:
    global _BUILTIN
    if _BUILTIN is None:
        _BUILTIN = SceneSources.builtin()
    return _BUILTIN

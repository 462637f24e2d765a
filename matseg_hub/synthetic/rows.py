"""Scenes as Hub rows (streams and Parquet): the row schema, declared once and used for writing and reading.

:func:`scene_features` is the ``datasets.Features`` of a scene row; :func:`scene_row` makes one from a scene,
:func:`scene_row_from_folder` from a scene folder in the official layout (files passed through unchanged),
:func:`row_to_scene` turns one back into a :class:`~matseg_hub.synthetic.layout.SyntheticScene`; every row carries
its licence (:func:`scene_license`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import numpy as np

from ..utils.images import encode_mask_png
from ..utils.licenses import UNKNOWN_LICENSE
from .layout import (EncodedScene, SyntheticScene, _folder_metadata, _json_default, _unit_to_uint8, check_scene_folder,
                     encode_scene, read_scene)

PathLike = Union[str, os.PathLike]


def scene_features():
    """The :class:`datasets.Features` of a scene row.

    ``image`` (JPEG), ``masks`` (list of PNG, one per material), ``annotated`` (PNG), ``num_materials``, ``seed``,
    ``index`` (-1 when unknown), ``source`` (generator name or folder), ``license`` (:func:`scene_license`) and
    ``metadata`` (JSON text).
    """
    from datasets import Features, Image, List, Value

    return Features({
        "image": Image(),
        "masks": List(Image()),
        "annotated": Image(),
        "num_materials": Value("int32"),
        "seed": Value("int64"),
        "index": Value("int64"),
        "source": Value("string"),
        "license": Value("string"),
        "metadata": Value("string"),
    })


#: licence of a scene that uses no third-party asset (the generated content itself is released under CC0)
NO_ASSET_LICENSE = "cc0-1.0"


def _source_names(value, out: List[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "source" and isinstance(item, str):
                out.append(item)
            else:
                _source_names(item, out)
    elif isinstance(value, list):
        for item in value:
            _source_names(item, out)


def _join_licenses(licenses: Iterable[str]) -> str:
    found = sorted({(lic or "").strip() or UNKNOWN_LICENSE for lic in licenses})
    return "; ".join(found) if found else NO_ASSET_LICENSE


def scene_license(metadata: Dict[str, Any], source_license: Optional[str] = None) -> str:
    """The ``license`` column of a scene row: the licences the scene is subject to, ``"; "``-joined.

    * ``metadata["license"]`` (a string) when recorded;
    * 3D renders (``metadata["licences"]``, asset -> licence, written by :mod:`matseg_hub.scenes3d.render`): every
      asset's licence (``"unknown"`` for an asset without one); ``"cc0-1.0"`` when the scene uses no asset;
    * generated 2D scenes (a ``source`` recorded per pattern, texture and background): the licence of each source
      image used: scikit-image's bundled photos from :data:`matseg_hub.utils.builtin_photos.SKIMAGE_LICENSES`, other sources
      ``source_license`` (what the user declared for ``--natural-images``/``--textures``) or ``"unknown"``;
    * otherwise (folders from other tools, the authors' data) ``"unknown"``.

    ``"unknown"`` means the licence was not recorded: check the sources before redistributing such rows.
    """
    lic = metadata.get("license")
    if isinstance(lic, str) and lic.strip():
        return lic.strip()
    assets = metadata.get("licences", metadata.get("licenses"))
    if isinstance(assets, dict):
        return _join_licenses(str(v) for v in assets.values())
    names: List[str] = []
    _source_names({k: v for k, v in metadata.items() if k in ("background", "materials")}, names)
    if not names:
        return UNKNOWN_LICENSE
    from ..utils.builtin_photos import SKIMAGE_LICENSES, SKIMAGE_PREFIX

    licenses = []
    for name in names:
        if name.startswith(SKIMAGE_PREFIX):
            stem = name[len(SKIMAGE_PREFIX):].rsplit(".", 1)[0]
            licenses.append("scikit-image sample data: " + SKIMAGE_LICENSES[stem] if stem in SKIMAGE_LICENSES
                            else UNKNOWN_LICENSE)
        else:
            licenses.append(source_license or UNKNOWN_LICENSE)
    return _join_licenses(licenses)


def scene_row(scene: Union[SyntheticScene, EncodedScene], *, source: str = "", seed: Optional[int] = None,
              index: Optional[int] = None, metadata: Optional[Dict[str, Any]] = None,
              license: Optional[str] = None) -> Dict[str, Any]:
    """A row of :func:`scene_features` (images as encoded bytes, so no re-encoding happens downstream).

    ``license`` defaults to :func:`scene_license` of the scene's metadata.
    """
    if isinstance(scene, SyntheticScene):
        meta = scene.metadata
        encoded = encode_scene(scene)
    else:
        encoded = scene
        meta = metadata if metadata is not None else json.loads(scene.metadata_json)
    seed = meta.get("seed", -1) if seed is None else seed
    index = meta.get("index", -1) if index is None else index
    return {
        "image": {"bytes": encoded.rgb_jpeg, "path": None},
        "masks": [{"bytes": b, "path": None} for b in encoded.masks_png],
        "annotated": {"bytes": encoded.annotated_png, "path": None},
        "num_materials": len(encoded.masks_png),
        "seed": int(seed if seed is not None else -1),
        "index": int(index if index is not None else -1),
        "source": source or str(meta.get("generator", "")),
        "license": license or scene_license(meta),
        "metadata": encoded.metadata_json,
    }


def _row_bytes(value) -> Optional[bytes]:
    if isinstance(value, dict):
        data = value.get("bytes")
        if data is None and value.get("path"):
            data = Path(value["path"]).read_bytes()
        return data
    return None


_PIL_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "RGB", "RGBA")


def row_image(value, what: str = "image") -> np.ndarray:
    """A row's image value (dict with bytes, PIL image or array) -> uint8 [H, W, 3] RGB."""
    from ..utils.images import decode_image

    if isinstance(value, dict):
        return decode_image(_row_bytes(value) or b"", what)
    if hasattr(value, "convert"):
        return np.asarray(value.convert("RGB"))
    return np.asarray(value)


def row_gray(value, what: str = "mask") -> np.ndarray:
    """A row's mask value (dict with bytes, PIL image or array) -> float32 [H, W] in [0, 1], by the package's one
    grayscale rule (:func:`~matseg_hub.utils.images.decode_gray`: 8-bit / 255, 16-bit / 65535, colour ->
    luminance), so a 16-bit mask means the same on every path."""
    from ..utils.images import decode_gray, gray_to_unit

    if isinstance(value, dict):
        return decode_gray(_row_bytes(value) or b"", what)
    if hasattr(value, "convert"):  # a PIL image (a decoded datasets Image)
        if value.mode not in _PIL_GRAY_MODES:
            value = value.convert("RGBA" if "A" in value.mode or value.mode == "P" else "RGB")
        arr = np.asarray(value)
    else:
        arr = np.asarray(value)
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return gray_to_unit(arr, what)


def row_to_scene(row: Dict[str, Any]) -> SyntheticScene:
    """Back from a row (decoded or not) to a :class:`SyntheticScene`."""
    rgb = row_image(row["image"])
    masks = np.stack([row_gray(m, f"masks[{k}]") for k, m in enumerate(row["masks"])])
    ann = row_gray(row["annotated"], "annotated")
    meta = json.loads(row["metadata"]) if row.get("metadata") else {}
    return SyntheticScene(rgb=rgb, masks=masks, annotated=ann, metadata=meta)


def scene_row_from_folder(folder: PathLike, *, root: Optional[PathLike] = None, decode: bool = False,
                          license: Optional[str] = None) -> Dict[str, Any]:
    """A row of :func:`scene_features` from a complete scene folder, passing its files through unchanged.

    The folder is checked first (:func:`check_scene_folder`: files present, headers readable, mask sizes equal to
    the image's); with ``decode=True`` every image is also decoded in full (:func:`read_scene`), which catches
    truncated files too — what packaging uses. ``metadata["folder"]`` is relative to ``root`` (no local absolute
    path leaks into a dataset); without ``root`` it is the folder's name.

    Raises:
        MatSegFormatError: incomplete folder, missing, corrupt or mis-sized image or masks (names the file).
    """
    folder = Path(folder)
    files = check_scene_folder(folder)
    scene = read_scene(folder) if decode or files.annotated is None else None
    metadata = _folder_metadata(files, root=root if root is not None else folder.parent)
    if files.annotated is not None:
        ann_bytes = files.annotated.read_bytes()
    else:  # the union of the masks, as read_scene does
        ann_bytes = encode_mask_png(_unit_to_uint8(scene.annotated))
    return {
        "image": {"bytes": files.rgb.read_bytes(), "path": None},
        "masks": [{"bytes": p.read_bytes(), "path": None} for p in files.masks],
        "annotated": {"bytes": ann_bytes, "path": None},
        "num_materials": len(files.masks),
        "seed": int(metadata.get("seed", -1)),
        "index": int(metadata.get("index", -1)),
        "source": str(metadata.get("generator", metadata["folder"])),
        "license": license or scene_license(metadata),
        "metadata": json.dumps(metadata, sort_keys=True, default=_json_default),
    }

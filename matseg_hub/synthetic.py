"""Synthetic scenes in memory and in the official MatSeg on-disk layout (SPEC §4).

One scene folder holds::

    RGB__RGB.jpg            the image
    mask001.png ...         one soft mask per material (uint8 0-255; masks may overlap)
    ObjectMaskOcluded.png   the annotated region (uint8 0-255; outside it is unannotated background)
    Finished.txt            written last: only folders holding it are complete scenes
    CameraParameters.json   (3D scenes) camera of the renderer
    scene_data.pkl          (3D reference renderer) never unpickled unless ``allow_pickle=True``
    scene_metadata.json     (this package) the scene's metadata, seed included

Scenes may nest sub-scenes in subfolders (the authors' 3D data renders a scene and variants of it below it).

* :class:`SyntheticScene` — the plain data model shared by the 2D generator and the 3D renderer.
* :func:`encode_scene` — deterministic JPEG/PNG bytes of a scene (the same bytes for folders and Parquet rows).
* :func:`write_scene` — writes a folder so that a killed or failing run never leaves a half scene marked
  finished (new folders are built in a temporary sibling and renamed; ``Finished.txt`` is always written last).
* :func:`read_scene`, :func:`iter_scene_folders` — read the layout back, the authors' published data included.
* :data:`SCENE_FEATURES`, :func:`scene_row`, :func:`row_to_scene` — the Hub row schema (streams and Parquet).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np

from .errors import MatSegError, MatSegFormatError, MatSegInputError
from .utils.files import atomic_directory, atomic_write_bytes
from .utils.logging import get_logger

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]

RGB_FILE = "RGB__RGB.jpg"
ANNOTATED_FILE = "ObjectMaskOcluded.png"
FINISHED_FILE = "Finished.txt"
CAMERA_FILE = "CameraParameters.json"
METADATA_FILE = "scene_metadata.json"
MASK_RE = re.compile(r"^mask(\d+)\.png$", re.IGNORECASE)
JPEG_QUALITY = 95
PNG_COMPRESSION = 1  # fast; PNG is lossless whatever the level


@dataclass
class SyntheticScene:
    """One synthetic scene.

    Attributes:
        rgb: uint8 [H, W, 3], RGB.
        masks: float32 [K, H, W] in [0, 1], one soft mask per material (they may overlap).
        annotated: float32 [H, W] in [0, 1], the annotated region (1 - background weight for 2D scenes).
        metadata: JSON-serialisable dict; generated scenes hold ``seed``, ``index`` and every parameter drawn.
    """

    rgb: np.ndarray
    masks: np.ndarray
    annotated: np.ndarray
    metadata: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        rgb, masks, ann = self.rgb, self.masks, self.annotated
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
            raise MatSegInputError(f"scene rgb must be uint8 [H, W, 3], got {getattr(rgb, 'dtype', None)} "
                                   f"{getattr(rgb, 'shape', None)}")
        h, w = rgb.shape[:2]
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[1:] != (h, w):
            raise MatSegInputError(f"scene masks must be [K, {h}, {w}], got {masks.shape}")
        ann = np.asarray(ann)
        if ann.shape != (h, w):
            raise MatSegInputError(f"scene annotated mask must be [{h}, {w}], got {ann.shape}")
        self.masks = masks.astype(np.float32, copy=False)
        self.annotated = ann.astype(np.float32, copy=False)

    @property
    def num_materials(self) -> int:
        return int(self.masks.shape[0])

    @property
    def size(self):
        """``(height, width)``."""
        return tuple(self.rgb.shape[:2])


@dataclass
class EncodedScene:
    """A scene's files as bytes: what :func:`write_scene` writes and what a Hub row holds."""

    rgb_jpeg: bytes
    masks_png: List[bytes]
    annotated_png: bytes
    metadata_json: str


def _unit_to_uint8(x: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.convertScaleAbs(np.ascontiguousarray(x, dtype=np.float32), alpha=255.0)  # rounds and saturates


def _png(gray_u8: np.ndarray) -> bytes:
    import cv2

    params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # run-length deflate, no filter: 1.5x faster than the default on masks
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE, cv2.IMWRITE_PNG_FILTER,
                   cv2.IMWRITE_PNG_FILTER_NONE]
    ok, buf = cv2.imencode(".png", gray_u8, params)
    if not ok:  # pragma: no cover
        raise MatSegError("PNG encoding failed")
    return buf.tobytes()


def encode_scene(scene: SyntheticScene, jpeg_quality: int = JPEG_QUALITY) -> EncodedScene:
    """Deterministic bytes of a scene: JPEG (baseline, 4:2:0, ``jpeg_quality``) and 8-bit grayscale PNGs.

    Masks and the annotated region are stored as ``round(255 * value)``.
    """
    import cv2

    ok, jpg = cv2.imencode(".jpg", np.ascontiguousarray(scene.rgb[:, :, ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality), cv2.IMWRITE_JPEG_OPTIMIZE, 0])
    if not ok:  # pragma: no cover
        raise MatSegError("JPEG encoding failed")
    return EncodedScene(rgb_jpeg=jpg.tobytes(), masks_png=[_png(_unit_to_uint8(m)) for m in scene.masks],
                        annotated_png=_png(_unit_to_uint8(scene.annotated)),
                        metadata_json=json.dumps(scene.metadata, sort_keys=True, default=_json_default))


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------
def mask_file_name(k: int) -> str:
    """File name of material ``k`` (0-based): ``mask001.png`` for ``k = 0``."""
    return f"mask{k + 1:03d}.png"


def is_complete_scene(folder: PathLike) -> bool:
    """True when ``folder`` holds ``Finished.txt`` (the mark of a complete scene)."""
    return (Path(folder) / FINISHED_FILE).is_file()


def _scene_files(encoded: EncodedScene, extra_files: Optional[Dict[str, bytes]]) -> Dict[str, bytes]:
    files = {RGB_FILE: encoded.rgb_jpeg, ANNOTATED_FILE: encoded.annotated_png,
             METADATA_FILE: encoded.metadata_json.encode("utf-8")}
    for k, data in enumerate(encoded.masks_png):
        files[mask_file_name(k)] = data
    for name, data in (extra_files or {}).items():
        if name == FINISHED_FILE or "/" in name or "\\" in name or name.startswith("."):
            raise MatSegInputError(f"extra file name {name!r} is not allowed in a scene folder")
        files[name] = data
    return files


def write_scene(folder: PathLike, scene: Union[SyntheticScene, EncodedScene], *,
                extra_files: Optional[Dict[str, bytes]] = None, overwrite: bool = True,
                jpeg_quality: int = JPEG_QUALITY) -> Path:
    """Write one scene in the official layout; ``Finished.txt`` is written last.

    A new folder is built in a temporary sibling and renamed into place, so a killed run leaves no partial
    folder under the final name. An existing folder (an unfinished scene, or one holding sub-scenes) is updated in
    place: its ``Finished.txt`` is removed first, stale scene files are deleted, every file is written atomically,
    subfolders are kept, and ``Finished.txt`` comes last.

    Args:
        folder: the scene folder.
        scene: a :class:`SyntheticScene` (encoded with :func:`encode_scene`) or an :class:`EncodedScene`.
        extra_files: more files for the folder (e.g. ``{"CameraParameters.json": b"..."}``).
        overwrite: replace a finished scene (otherwise raise ``FileExistsError``).

    Raises:
        MatSegError: when the disk refuses the write (full, read-only, ...); nothing is marked finished.
    """
    folder = Path(folder)
    encoded = scene if isinstance(scene, EncodedScene) else encode_scene(scene, jpeg_quality)
    files = _scene_files(encoded, extra_files)
    if is_complete_scene(folder) and not overwrite:
        raise FileExistsError(f"{folder} is already a finished scene")
    try:
        if not folder.exists():
            with atomic_directory(folder, overwrite=False) as tmp:
                for name, data in files.items():
                    (tmp / name).write_bytes(data)
                (tmp / FINISHED_FILE).write_bytes(b"")
        else:
            with contextlib.suppress(FileNotFoundError):
                (folder / FINISHED_FILE).unlink()
            for path in folder.iterdir():
                if path.is_file() and (MASK_RE.match(path.name) or path.name in (RGB_FILE, ANNOTATED_FILE,
                                                                                   METADATA_FILE)):
                    path.unlink()
            for name, data in files.items():
                atomic_write_bytes(folder / name, data)
            atomic_write_bytes(folder / FINISHED_FILE, b"")
    except OSError as exc:
        raise MatSegError(f"cannot write the scene folder {folder}: {exc.strerror or exc}; "
                          "the scene is not marked finished and will be redone on the next run") from exc
    return folder


def remove_stale_partials(root: PathLike, names: Optional[Iterable[str]] = None) -> int:
    """Delete the temporary folders (``.<name>.*.partial``) that runs killed inside :func:`write_scene` left in
    ``root``; only those of ``names`` when given (a job of an array cleans its own scenes only). Returns the count.

    They are never taken for scenes (hidden, no ``Finished.txt`` under the final name); this only frees the space.
    """
    root = Path(root)
    if not root.is_dir():
        return 0
    wanted = None if names is None else {str(n) for n in names}
    removed = 0
    for entry in root.iterdir():
        name = entry.name
        if not (name.startswith(".") and name.endswith(".partial") and entry.is_dir()):
            continue
        scene_name = name[1:].rsplit(".", 2)[0]
        if wanted is None or scene_name in wanted:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------
def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def iter_scene_folders(root: PathLike, nested: bool = True) -> Iterator[Path]:
    """Complete scene folders under ``root`` (``root`` itself included), in natural order, sub-scenes after
    their parent. Folders without ``Finished.txt`` and hidden/temporary folders are skipped.

    Raises:
        MatSegInputError: when ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise MatSegInputError(f"scene root {root} is not a folder")

    def walk(folder: Path, depth: int) -> Iterator[Path]:
        if is_complete_scene(folder):
            yield folder
            if not nested and depth > 0:
                return
        try:
            children = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                              key=_natural_key)
        except PermissionError:  # pragma: no cover
            logger.warning("cannot list %s; skipped", folder)
            return
        for child in children:
            yield from walk(child, depth + 1)

    yield from walk(root, 0)


def _read_gray(path: Path) -> np.ndarray:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise MatSegFormatError("cannot decode the mask (corrupt or not a PNG)", path=path)
    if img.ndim == 3:
        img = img[:, :, 0] if img.shape[2] in (1, 2) else cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2GRAY)
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(65535.0)
    if img.dtype == np.bool_:
        return img.astype(np.float32)
    return img.astype(np.float32) * np.float32(1.0 / 255.0)


def mask_files(folder: PathLike) -> List[Path]:
    """The scene's mask files ordered by their number (``mask001.png``; the 2D reference's ``mask0.png`` too)."""
    found = []
    for path in Path(folder).iterdir():
        m = MASK_RE.match(path.name)
        if m and path.is_file():
            found.append((int(m.group(1)), path))
    return [p for _, p in sorted(found)]


def read_scene(folder: PathLike, *, allow_pickle: bool = False, require_finished: bool = True) -> SyntheticScene:
    """Read one scene folder of the official layout.

    Returns a :class:`SyntheticScene` whose metadata holds ``folder``, ``mask_files``, the content of
    ``scene_metadata.json`` (scenes written by this package: seed, index, parameters), ``camera`` (from
    ``CameraParameters.json``), ``flags`` (names of other empty ``*.txt`` markers such as ``NoGroundPlane``) and
    ``pickles`` (names of ``*.pkl`` files; their content under ``pickle_data`` only with ``allow_pickle=True`` —
    unpickling third-party data can run arbitrary code).

    Raises:
        MatSegFormatError: missing ``Finished.txt`` (with ``require_finished``), image, masks, or sizes that
            disagree, naming the file.
    """
    from .utils.images import read_image

    folder = Path(folder)
    if not folder.is_dir():
        raise MatSegFormatError("scene folder not found", path=folder)
    if require_finished and not is_complete_scene(folder):
        raise MatSegFormatError(f"no {FINISHED_FILE}: the scene is incomplete (an interrupted run?)", path=folder)
    rgb_path = folder / RGB_FILE
    if not rgb_path.is_file():
        raise MatSegFormatError(f"missing {RGB_FILE}", path=folder)
    rgb = read_image(rgb_path)
    h, w = rgb.shape[:2]
    files = mask_files(folder)
    if not files:
        raise MatSegFormatError("no maskNNN.png in the scene folder", path=folder)
    masks = np.zeros((len(files), h, w), dtype=np.float32)
    for k, path in enumerate(files):
        m = _read_gray(path)
        if m.shape != (h, w):
            raise MatSegFormatError(f"mask is {m.shape[1]}x{m.shape[0]} but the image is {w}x{h}", path=path)
        masks[k] = m
    ann_path = folder / ANNOTATED_FILE
    if ann_path.is_file():
        annotated = _read_gray(ann_path)
        if annotated.shape != (h, w):
            raise MatSegFormatError(f"annotated mask is {annotated.shape[1]}x{annotated.shape[0]} but the image is "
                                    f"{w}x{h}", path=ann_path)
    else:
        logger.warning("%s has no %s; using the union of its masks as the annotated region", folder, ANNOTATED_FILE)
        annotated = np.clip(masks.sum(0), 0.0, 1.0)

    metadata: Dict[str, Any] = {}
    meta_path = folder / METADATA_FILE
    if meta_path.is_file():
        metadata.update(_read_json(meta_path))
    cam = folder / CAMERA_FILE
    if cam.is_file():
        metadata["camera"] = _read_json(cam)
    flags = sorted(p.stem for p in folder.glob("*.txt") if p.name != FINISHED_FILE)
    if flags:
        metadata["flags"] = flags
    pickles = sorted(p.name for p in folder.glob("*.pkl"))
    if pickles:
        metadata["pickles"] = pickles
        if allow_pickle:
            import pickle

            metadata["pickle_data"] = {}
            for name in pickles:
                with open(folder / name, "rb") as fh:
                    metadata["pickle_data"][name] = pickle.load(fh)  # noqa: S301 - explicit opt-in
    metadata["folder"] = str(folder)
    metadata["mask_files"] = [p.name for p in files]
    return SyntheticScene(rgb=rgb, masks=masks, annotated=annotated, metadata=metadata)


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MatSegFormatError(f"invalid JSON ({exc})", path=path) from None


# ---------------------------------------------------------------------------------------------------------------
# Hub rows (streams and Parquet): features declared once
# ---------------------------------------------------------------------------------------------------------------
def scene_features():
    """The :class:`datasets.Features` of a scene row.

    ``image`` (JPEG), ``masks`` (list of 8-bit PNG, one per material), ``annotated`` (8-bit PNG),
    ``num_materials``, ``seed``, ``index`` (-1 when unknown), ``source`` (generator name or folder) and
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
        "metadata": Value("string"),
    })


def scene_row(scene: Union[SyntheticScene, EncodedScene], *, source: str = "", seed: Optional[int] = None,
              index: Optional[int] = None, metadata: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A row of :func:`scene_features` (images as encoded bytes, so no re-encoding happens downstream)."""
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
        "metadata": encoded.metadata_json,
    }


def _as_array(value, gray: bool) -> np.ndarray:
    """A decoded row value (PIL image, dict with bytes, array) -> uint8 array."""
    from .utils.images import decode_image

    if isinstance(value, dict):
        data = value.get("bytes")
        if data is None and value.get("path"):
            data = Path(value["path"]).read_bytes()
        if gray:
            import cv2

            out = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
            if out is None:
                raise MatSegFormatError("cannot decode a mask in the row")
            return out
        return decode_image(data)
    arr = np.asarray(value.convert("L" if gray else "RGB")) if hasattr(value, "convert") else np.asarray(value)
    return arr


def row_to_scene(row: Dict[str, Any]) -> SyntheticScene:
    """Back from a row (decoded or not) to a :class:`SyntheticScene`."""
    rgb = _as_array(row["image"], gray=False)
    masks = np.stack([_as_array(m, gray=True) for m in row["masks"]]).astype(np.float32) / np.float32(255.0)
    ann = _as_array(row["annotated"], gray=True).astype(np.float32) / np.float32(255.0)
    meta = json.loads(row["metadata"]) if row.get("metadata") else {}
    return SyntheticScene(rgb=rgb, masks=masks, annotated=ann, metadata=meta)


# ---------------------------------------------------------------------------------------------------------------
# Preview
# ---------------------------------------------------------------------------------------------------------------
_PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                     (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
                     (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195)], dtype=np.float32)


def colorize_masks(masks: np.ndarray) -> np.ndarray:
    """Soft masks float32 [K, H, W] -> uint8 [H, W, 3]: each material's colour weighted by its mask (black = none)."""
    k = masks.shape[0]
    colours = _PALETTE[np.arange(k) % len(_PALETTE)]
    out = np.tensordot(np.moveaxis(masks.astype(np.float32), 0, -1), colours, axes=([2], [0]))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def preview_grid(scenes: Sequence[SyntheticScene], tile: int = 256, columns: int = 2) -> np.ndarray:
    """A picture for a person: per scene the image, its coloured masks and its annotated region, side by side.

    Returns uint8 [rows * tile, columns * 3 * tile, 3] RGB (scenes are fitted into ``tile`` x ``tile`` cells).
    """
    import cv2

    if not scenes:
        raise MatSegInputError("preview_grid needs at least one scene")
    rows = int(np.ceil(len(scenes) / columns))
    grid = np.full((rows * tile, columns * 3 * tile, 3), 32, dtype=np.uint8)

    def fit(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        r = tile / max(h, w)
        return cv2.resize(img, (max(1, int(w * r)), max(1, int(h * r))), interpolation=cv2.INTER_AREA)

    for i, scene in enumerate(scenes):
        r, c = divmod(i, columns)
        ann = _unit_to_uint8(scene.annotated)
        cells = [scene.rgb, colorize_masks(scene.masks), np.repeat(ann[:, :, None], 3, axis=2)]
        for j, cell in enumerate(cells):
            small = fit(cell)
            y0, x0 = r * tile, (c * 3 + j) * tile
            grid[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    return grid


def scene_row_from_folder(folder: PathLike) -> Dict[str, Any]:
    """A row of :func:`scene_features` from a complete scene folder, passing its files through unchanged.

    Raises:
        MatSegFormatError: incomplete folder, missing image or masks (names the folder).
    """
    folder = Path(folder)
    if not is_complete_scene(folder):
        raise MatSegFormatError(f"no {FINISHED_FILE}: the scene is incomplete", path=folder)
    rgb_path = folder / RGB_FILE
    if not rgb_path.is_file():
        raise MatSegFormatError(f"missing {RGB_FILE}", path=folder)
    files = mask_files(folder)
    if not files:
        raise MatSegFormatError("no maskNNN.png in the scene folder", path=folder)
    metadata: Dict[str, Any] = {}
    if (folder / METADATA_FILE).is_file():
        metadata.update(_read_json(folder / METADATA_FILE))
    if (folder / CAMERA_FILE).is_file():
        metadata["camera"] = _read_json(folder / CAMERA_FILE)
    flags = sorted(p.stem for p in folder.glob("*.txt") if p.name != FINISHED_FILE)
    if flags:
        metadata["flags"] = flags
    metadata["folder"] = str(folder)
    ann_path = folder / ANNOTATED_FILE
    if ann_path.is_file():
        ann_bytes = ann_path.read_bytes()
    else:  # the union of the masks, as read_scene does
        ann_bytes = _png(_unit_to_uint8(read_scene(folder).annotated))
    return {
        "image": {"bytes": rgb_path.read_bytes(), "path": None},
        "masks": [{"bytes": p.read_bytes(), "path": None} for p in files],
        "annotated": {"bytes": ann_bytes, "path": None},
        "num_materials": len(files),
        "seed": int(metadata.get("seed", -1)),
        "index": int(metadata.get("index", -1)),
        "source": str(metadata.get("generator", folder)),
        "metadata": json.dumps(metadata, sort_keys=True, default=_json_default),
    }

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
* :func:`check_scene_folder` — the one check of a folder (files present, headers readable, mask sizes equal to the
  image's) that :func:`read_scene`, :func:`~matseg_hub.synthetic.rows.scene_row_from_folder`, folder streams and
  packaging all use.
* :func:`read_scene`, :func:`iter_scene_folders` — read the layout back, the authors' published data included.
  Masks are decoded by :func:`matseg_hub.utils.images.decode_gray` (8-bit / 255, 16-bit / 65535) on every path.
* :func:`preview_grid` — a look at some scenes (image, coloured masks, annotated region).

Scenes as Hub rows (the row schema of streams and Parquet) live in :mod:`matseg_hub.synthetic.rows`; the mask PNG
encoder in :func:`matseg_hub.utils.images.encode_mask_png`.
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

from ..errors import MatSegError, MatSegFormatError, MatSegInputError
from ..utils.files import atomic_directory, atomic_write_bytes
from ..utils.images import encode_mask_png, image_grid, swap_rb
from ..utils.logging import get_logger

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]

RGB_FILE = "RGB__RGB.jpg"
ANNOTATED_FILE = "ObjectMaskOcluded.png"
FINISHED_FILE = "Finished.txt"
CAMERA_FILE = "CameraParameters.json"
METADATA_FILE = "scene_metadata.json"
MASK_RE = re.compile(r"^mask(\d+)\.png$", re.IGNORECASE)
JPEG_QUALITY = 95


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


def encode_scene(scene: SyntheticScene, jpeg_quality: int = JPEG_QUALITY) -> EncodedScene:
    """Deterministic bytes of a scene: JPEG (baseline, 4:2:0, ``jpeg_quality``) and 8-bit grayscale PNGs.

    Masks and the annotated region are stored as ``round(255 * value)``.
    """
    import cv2

    ok, jpg = cv2.imencode(".jpg", swap_rb(scene.rgb),
                           [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality), cv2.IMWRITE_JPEG_OPTIMIZE, 0])
    if not ok:  # pragma: no cover
        raise MatSegError("JPEG encoding failed")
    return EncodedScene(rgb_jpeg=jpg.tobytes(), masks_png=[encode_mask_png(_unit_to_uint8(m)) for m in scene.masks],
                        annotated_png=encode_mask_png(_unit_to_uint8(scene.annotated)),
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
            remove_scene_files(folder)
            for name, data in files.items():
                atomic_write_bytes(folder / name, data)
            atomic_write_bytes(folder / FINISHED_FILE, b"")
    except OSError as exc:
        raise MatSegError(f"cannot write the scene folder {folder}: {exc.strerror or exc}; "
                          "the scene is not marked finished and will be redone on the next run") from exc
    return folder


def remove_scene_files(folder: PathLike) -> None:
    """Delete the files a scene writer writes into ``folder`` (``Finished.txt`` first, then the image, masks,
    annotated region and metadata); every other file and subfolder is kept, and so is the folder."""
    folder = Path(folder)
    with contextlib.suppress(FileNotFoundError):
        (folder / FINISHED_FILE).unlink()
    for path in folder.iterdir():
        if path.is_file() and (MASK_RE.match(path.name) or path.name in (RGB_FILE, ANNOTATED_FILE, METADATA_FILE)):
            path.unlink()


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
    """A mask file -> float32 [H, W] in [0, 1] (:func:`~matseg_hub.utils.images.decode_gray`'s rule)."""
    from ..utils.images import decode_gray

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MatSegFormatError(f"cannot read the mask ({exc.strerror or exc})", path=path) from None
    return decode_gray(data, str(path))


def mask_files(folder: PathLike) -> List[Path]:
    """The scene's mask files ordered by their number (``mask001.png``; the 2D reference's ``mask0.png`` too)."""
    found = []
    for path in Path(folder).iterdir():
        m = MASK_RE.match(path.name)
        if m and path.is_file():
            found.append((int(m.group(1)), path))
    return [p for _, p in sorted(found)]


@dataclass
class SceneFolderFiles:
    """The checked files of one scene folder (:func:`check_scene_folder`).

    Attributes:
        folder: the scene folder.
        rgb: its ``RGB__RGB.jpg``.
        masks: its mask files in material order.
        annotated: its ``ObjectMaskOcluded.png``, or ``None`` (then the union of the masks is the annotated region).
        height, width: the image size (as displayed); every mask has it.
    """

    folder: Path
    rgb: Path
    masks: List[Path]
    annotated: Optional[Path]
    height: int
    width: int


def _header_size(path: Path, displayed: bool):
    """``(width, height)`` from the file's header (no pixel decoding)."""
    from PIL import Image, UnidentifiedImageError

    from ..utils.images import displayed_size

    try:
        if displayed:
            return displayed_size(path.read_bytes(), str(path))
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise MatSegFormatError(f"cannot read the image header ({exc}); the file is corrupt or not an image",
                                path=path) from None


def check_scene_folder(folder: PathLike, *, require_finished: bool = True) -> SceneFolderFiles:
    """Check one scene folder without decoding its pixels: the files exist, every image header decodes, and every
    mask (and the annotated mask) has the image's size. The check every reader and packager shares.

    Raises:
        MatSegFormatError: naming the folder or the file: no ``Finished.txt`` (with ``require_finished``), no
            image, no masks, an unreadable image header, or a size that differs from the image's.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MatSegFormatError("scene folder not found", path=folder)
    if require_finished and not is_complete_scene(folder):
        raise MatSegFormatError(f"no {FINISHED_FILE}: the scene is incomplete (an interrupted run?)", path=folder)
    rgb_path = folder / RGB_FILE
    if not rgb_path.is_file():
        raise MatSegFormatError(f"missing {RGB_FILE}", path=folder)
    w, h = _header_size(rgb_path, displayed=True)
    files = mask_files(folder)
    if not files:
        raise MatSegFormatError("no maskNNN.png in the scene folder", path=folder)
    ann_path = folder / ANNOTATED_FILE
    ann = ann_path if ann_path.is_file() else None
    for path in files + ([ann] if ann is not None else []):
        mw, mh = _header_size(path, displayed=False)
        if (mw, mh) != (w, h):
            what = "annotated mask" if path == ann else "mask"
            raise MatSegFormatError(f"{what} is {mw}x{mh} but the image is {w}x{h}", path=path)
    return SceneFolderFiles(folder=folder, rgb=rgb_path, masks=files, annotated=ann, height=h, width=w)


def _folder_label(folder: Path, root: Optional[PathLike]) -> str:
    """The folder as recorded in metadata: relative to ``root`` (POSIX) when given, else as passed."""
    if root is None:
        return str(folder)
    try:
        return Path(folder).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(folder).name


def _folder_metadata(files: SceneFolderFiles, *, root: Optional[PathLike] = None,
                     allow_pickle: bool = False) -> Dict[str, Any]:
    """The metadata of a scene folder (see :func:`read_scene`)."""
    folder = files.folder
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
    metadata["folder"] = _folder_label(folder, root)
    metadata["mask_files"] = [p.name for p in files.masks]
    return metadata


def read_scene(folder: PathLike, *, allow_pickle: bool = False, require_finished: bool = True,
               root: Optional[PathLike] = None) -> SyntheticScene:
    """Read one scene folder of the official layout (checked by :func:`check_scene_folder`, then decoded).

    Returns a :class:`SyntheticScene` whose metadata holds ``folder`` (relative to ``root`` when given, else as
    passed), ``mask_files``, the content of ``scene_metadata.json`` (scenes written by this package: seed, index,
    parameters, licences), ``camera`` (from ``CameraParameters.json``), ``flags`` (names of other empty ``*.txt``
    markers such as ``NoGroundPlane``) and ``pickles`` (names of ``*.pkl`` files; their content under
    ``pickle_data`` only with ``allow_pickle=True`` — unpickling third-party data can run arbitrary code).

    Masks are decoded with :func:`~matseg_hub.utils.images.decode_gray` (8-bit / 255, 16-bit / 65535).

    Raises:
        MatSegFormatError: missing ``Finished.txt`` (with ``require_finished``), image, masks, corrupt files, or
            sizes that disagree, naming the file.
    """
    from ..utils.images import read_image

    files = check_scene_folder(folder, require_finished=require_finished)
    rgb = read_image(files.rgb)
    h, w = rgb.shape[:2]
    masks = np.zeros((len(files.masks), h, w), dtype=np.float32)
    for k, path in enumerate(files.masks):
        m = _read_gray(path)
        if m.shape != (h, w):
            raise MatSegFormatError(f"mask is {m.shape[1]}x{m.shape[0]} but the image is {w}x{h}", path=path)
        masks[k] = m
    if files.annotated is not None:
        annotated = _read_gray(files.annotated)
        if annotated.shape != (h, w):
            raise MatSegFormatError(f"annotated mask is {annotated.shape[1]}x{annotated.shape[0]} but the image is "
                                    f"{w}x{h}", path=files.annotated)
    else:
        logger.warning("%s has no %s; using the union of its masks as the annotated region", files.folder,
                       ANNOTATED_FILE)
        annotated = np.clip(masks.sum(0), 0.0, 1.0)
    metadata = _folder_metadata(files, root=root, allow_pickle=allow_pickle)
    return SyntheticScene(rgb=rgb, masks=masks, annotated=annotated, metadata=metadata)


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MatSegFormatError(f"invalid JSON ({exc})", path=path) from None


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
    if not scenes:
        raise MatSegInputError("preview_grid needs at least one scene")
    cells = []
    for scene in scenes:
        ann = _unit_to_uint8(scene.annotated)
        cells += [scene.rgb, colorize_masks(scene.masks), ann]
    return image_grid(cells, tile, 3 * columns, pad=0, background=32, keep_aspect=True)

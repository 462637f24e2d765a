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
  image's) that :func:`read_scene`, :func:`scene_row_from_folder`, folder streams and packaging all use.
* :func:`read_scene`, :func:`iter_scene_folders` — read the layout back, the authors' published data included.
  Masks are decoded by :func:`matseg_hub.utils.images.decode_gray` (8-bit / 255, 16-bit / 65535) on every path.
* :func:`scene_features`, :func:`scene_row`, :func:`scene_row_from_folder`, :func:`row_to_scene` — the Hub row schema
  (streams and Parquet), with a per-row ``license`` (:func:`scene_license`).
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
from ..utils.images import image_grid, swap_rb
from ..utils.licenses import UNKNOWN_LICENSE
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


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def _deflate_rle(data) -> bytes:
    """zlib stream of ``data`` with run-length deflate (``Z_RLE``, level 1, memLevel 9).

    ``Z_RLE`` only looks back one byte, so the stream depends on the data alone: zlib-ng (the ``zlib-ng``
    dependency, about 2x faster) and the standard library's zlib give the same bytes on every machine. (ISA-L is
    faster still but was measured to give different bytes for the same input from run to run.)
    """
    try:
        from zlib_ng import zlib_ng as zlib
    except ImportError:  # pragma: no cover - zlib-ng is a dependency; the same bytes, slower
        import zlib
    compressor = zlib.compressobj(PNG_COMPRESSION, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    return compressor.compress(data) + compressor.flush()


def _png(gray_u8: np.ndarray) -> bytes:
    """8-bit grayscale PNG bytes of a mask: rows unfiltered, run-length deflate (lossless, deterministic).

    The fastest lossless settings on MatSeg masks (long runs of 0 and 255 with soft edges): 2x faster than
    OpenCV's encoder with the same settings, 2.7x faster than its default ones, files within 1 %.
    """
    import struct

    gray_u8 = np.ascontiguousarray(gray_u8, dtype=np.uint8)
    if gray_u8.ndim != 2:
        raise MatSegInputError(f"a mask must be [H, W], got {gray_u8.shape}")
    h, w = gray_u8.shape
    raw = np.empty((h, w + 1), dtype=np.uint8)  # each row: filter type 0 (none), then the pixels
    raw[:, 0] = 0
    raw[:, 1:] = gray_u8
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit grayscale, deflate, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", _deflate_rle(memoryview(raw)))
            + _png_chunk(b"IEND", b""))


def encode_scene(scene: SyntheticScene, jpeg_quality: int = JPEG_QUALITY) -> EncodedScene:
    """Deterministic bytes of a scene: JPEG (baseline, 4:2:0, ``jpeg_quality``) and 8-bit grayscale PNGs.

    Masks and the annotated region are stored as ``round(255 * value)``.
    """
    import cv2

    ok, jpg = cv2.imencode(".jpg", swap_rb(scene.rgb),
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
# Hub rows (streams and Parquet): features declared once
# ---------------------------------------------------------------------------------------------------------------
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
        ann_bytes = _png(_unit_to_uint8(scene.annotated))
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

"""Readers of segmentation-set layouts: each yields :class:`~matseg_hub.segmentation.item.SegmentationItem`.

Four raw layouts (``format=``), each read one image at a time in a sorted, deterministic order:

``masks``
    ``images/<stem>.<ext>`` and, per image, either ``masks/<stem>/<region>.png`` (one binary PNG per region:
    nonzero = inside) or ``masks/<stem>.png`` (one label PNG: every nonzero value is a region, 0 = background).
    There is no "ignore" value: 255 is a region like any other value (so a 0/255 mask is one region). Label PNGs
    must be 8-bit (or palette) images; a 16-bit label PNG is refused, because 16-bit gray is as often a rescaled
    mask as a label map: write it as 8-bit labels or as one binary PNG per region. Licences come from an optional
    ``licenses.json`` / ``metadata.csv`` in the root or in ``images/`` (:mod:`matseg_hub.utils.licenses`), else
    ``"unknown"``.
``scenes``
    the official synthetic-scene layout written by ``matseg generate 2d`` / ``generate 3d`` and read by
    :func:`matseg_hub.synthetic.layout.read_scene`: every complete scene folder (``Finished.txt``) is an image, each
    ``maskNNN.png`` a region (``mask >= 0.5``: the pixels where that material has at least half the weight;
    materials below that everywhere are left out). Generated scenes are thus a test set with known truth. The
    licence is the scene's (:func:`matseg_hub.synthetic.rows.scene_license`).
``labpics``
    LabPics 2 (Chemistry / Medical, Eppel et al.): one folder per image holding ``Image.jpg`` and ``Data.json``,
    whose ``MaterialsAndParts`` entries give each material instance's ``MaskFilePath`` (a PNG under
    ``Instance/``, relative to the folder) and ``MaterialType_ClassNames``. The folder layout (``Image.jpg``,
    ``SemanticMaps/FullImage/*.png``, ``Ignore.png``) is the one the authors' reader ``LabPics2Reader.py`` of
    github.com/sagieppel/Segment_Anything2_Trained_for_Semantic_Seg_Vessell_Fill_level reads; the MatSeg
    evaluation (``DisplaySegmentationResults.py`` of sagieppel/Zero-Shot-Material-State-Segmentation-Net) calls a
    ``READER_LABPICS`` that is not published, so the instance masks are read as the public LabPics 2 instance
    readers read ``Data.json``: mask = last channel of the PNG ``> 0``; entries with ``IsPart`` (vessel parts such
    as corks and labels) are not materials and are left out. Regions = the material instances (name: their
    class names, ``", "``-joined). An instance whose mask is empty is left out with a warning (the dataset has a
    few); an image without any material instance is bad input.
``materialistic``
    the real test set of Materialistic (Sharma et al., SIGGRAPH 2023) as ``RealImageDataset`` of
    ``src/data/real_dataset.py`` in github.com/prafull7/materialistic reads it: ``images/<name>.png`` and
    ``masks/<name>.exr``, a float material-label map (read with ``cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH``,
    channels flipped to RGB, channel 0 = red used); each distinct nonzero value is one material (their test picks a
    clicked pixel and takes ``label == label[click]``). ``masks/<name>.tif``/``.tiff``/``.png`` label maps (the
    same values, e.g. converted from the EXR) are read the same way. Reading ``.exr`` needs the ``OpenEXR`` package
    or an OpenCV built with OpenEXR.

Bad input (a mask of another size than its image, an empty mask, a 16-bit label PNG, an image without any mask or
a mask without image, a corrupt file) raises :class:`~matseg_hub.errors.MatSegFormatError` naming the file;
with ``skip_bad`` the image is left out and reported to ``on_skip(image_id, reason)``.

Masks are in the frame of the image as displayed (EXIF orientation applied to the image, never to masks).
"""

from __future__ import annotations

import functools
import glob
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import MatSegFormatError, MatSegInputError, MissingDependencyError, skip_or_raise
from ..utils.images import IMAGE_EXTENSIONS, is_image_file, list_images, read_image
from ..utils.licenses import UNKNOWN_LICENSE, license_for, load_license_map
from ..utils.logging import get_logger
from .item import SegmentationItem

logger = get_logger(__name__)

PathLike = Union[str, os.PathLike]
FORMATS = ("masks", "scenes", "labpics", "materialistic")

LABPICS_DATA = "Data.json"
LABPICS_IMAGES = ("Image.jpg", "Image.png")
_LABEL_SUFFIXES = (".exr", ".tif", ".tiff", ".png")


# ----------------------------------------------------------------------------------------------------------------
# mask files
# ----------------------------------------------------------------------------------------------------------------
def _open_mask(path: Path):
    """Pillow image of a mask file, fully loaded; typed error for a corrupt one."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
            im.load()
        return im
    except FileNotFoundError:
        raise MatSegFormatError("mask file not found", path=path) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise MatSegFormatError(f"corrupt or unreadable mask ({exc}); replace the file or rebuild with --skip-bad",
                                path=path) from None


def read_binary_mask(path: PathLike, channel: Optional[int] = None) -> np.ndarray:
    """A binary mask file -> bool [H, W]: a pixel is inside when it is nonzero (any colour channel, alpha ignored;
    ``channel``: only that channel, e.g. ``-1`` for LabPics' instance PNGs). Any bit depth."""
    path = Path(path)
    im = _open_mask(path)
    arr = np.asarray(im)
    if arr.ndim == 3:
        if channel is not None:
            arr = arr[:, :, channel]
        else:
            colour = arr[:, :, :3] if arr.shape[2] >= 3 else arr[:, :, :1]
            return np.any(colour != 0, axis=2)
    return arr != 0


def read_label_png(path: PathLike) -> np.ndarray:
    """A label PNG -> uint8 [H, W] labels (0 = background). Gray, palette (the indices) or RGB with equal channels.

    Raises:
        MatSegFormatError: 16-bit (or 32-bit) values, or colours that are not gray (naming the file).
    """
    path = Path(path)
    im = _open_mask(path)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise MatSegFormatError(
            f"16-bit label PNG (mode {im.mode}): label maps must be 8-bit, because 16-bit gray is often a rescaled "
            f"mask rather than labels. Convert it to 8-bit labels (e.g. PIL: Image.fromarray(labels.astype('uint8'))) "
            f"or write one binary PNG per region as masks/<stem>/<region>.png; or rebuild with --skip-bad", path=path)
    if im.mode == "P":
        return np.asarray(im, dtype=np.uint8)
    arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "1", "LA", "RGB", "RGBA") else im)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if arr.ndim == 3:
        colour = arr[:, :, :3] if arr.shape[2] >= 3 else arr[:, :, :1]
        if colour.shape[2] == 3 and not (np.array_equal(colour[:, :, 0], colour[:, :, 1])
                                         and np.array_equal(colour[:, :, 0], colour[:, :, 2])):
            raise MatSegFormatError("colour label PNG: a label map must hold one gray value (or palette index) per "
                                    "region; convert it, or write one binary PNG per region as "
                                    "masks/<stem>/<region>.png", path=path)
        arr = colour[:, :, 0]
    return np.ascontiguousarray(arr, dtype=np.uint8)


def label_regions(labels: np.ndarray) -> Tuple[np.ndarray, List]:
    """Label map [H, W] -> (bool [R, H, W], the R nonzero values in increasing order)."""
    values = [v for v in np.unique(labels) if v != 0]
    if not values:
        return np.zeros((0,) + labels.shape, dtype=bool), []
    return np.stack([labels == v for v in values]), values


def _value_name(v) -> str:
    v = v.item() if isinstance(v, np.generic) else v
    return f"{v:g}" if isinstance(v, float) else str(v)


def _check_mask(mask: np.ndarray, path: Path, shape: Tuple[int, int]) -> None:
    if mask.shape != shape:
        raise MatSegFormatError(f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {shape[1]}x{shape[0]}; "
                                "masks must have the image's size (as displayed)", path=path)


def _image_and_shape(path: Path) -> Tuple[np.ndarray, Tuple[int, int]]:
    image = read_image(path)  # typed error naming the file for a missing / corrupt image
    return image, image.shape[:2]


# ----------------------------------------------------------------------------------------------------------------
# masks layout
# ----------------------------------------------------------------------------------------------------------------
def _listing_key(folder: Path) -> Tuple[str, int]:
    try:
        return str(folder.resolve()), folder.stat().st_mtime_ns
    except OSError:
        return str(folder), -1


def _image_files(folder: Path) -> Dict[str, Path]:
    """stem -> image file of ``folder`` (one listing per folder state: reading N images lists it once)."""
    return _image_files_cached(*_listing_key(folder))


def _mask_entries(masks: Path) -> Dict[str, Path]:
    """stem -> ``masks/<stem>/`` folder or ``masks/<stem>.png`` label file."""
    return _mask_entries_cached(*_listing_key(masks))


@functools.lru_cache(maxsize=8)
def _image_files_cached(folder_name: str, _mtime: int) -> Dict[str, Path]:
    folder = Path(folder_name)
    out: Dict[str, Path] = {}
    if not folder.is_dir():
        return out
    for path in list_images(folder):
        if path.stem in out:
            raise MatSegFormatError(f"two images with the stem {path.stem!r} ({out[path.stem].name} and "
                                    f"{path.name}); keep one", path=path)
        out[path.stem] = path
    return out


@functools.lru_cache(maxsize=8)
def _mask_entries_cached(masks_name: str, _mtime: int) -> Dict[str, Path]:
    masks = Path(masks_name)
    out: Dict[str, Path] = {}
    if not masks.is_dir():
        return out
    for path in sorted(masks.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            out[path.name] = path
        elif path.is_file() and is_image_file(path):
            if path.stem in out:
                raise MatSegFormatError(f"both masks/{path.stem}/ and {path.name} exist: give one kind of mask per "
                                        "image", path=path)
            out[path.stem] = path
    return out


def _list_masks(root: Path) -> List[str]:
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise MatSegFormatError("not a 'masks' segmentation folder: expected images/<stem>.<ext> and "
                                "masks/<stem>/<region>.png or masks/<stem>.png", path=root)
    return sorted(set(_image_files(root / "images")) | set(_mask_entries(root / "masks")))


def _files_masks(root: Path, image_id: str) -> List[Path]:
    image = _image_files(root / "images").get(image_id)
    return [p for p in (image, root / "masks" / image_id, *((root / "masks").glob(f"{glob.escape(image_id)}.*")))
            if p is not None]


def _read_masks(root: Path, image_id: str, licenses: Dict[str, str]) -> SegmentationItem:
    image_path = _image_files(root / "images").get(image_id)
    entry = _mask_entries(root / "masks").get(image_id)
    if image_path is None:
        raise MatSegFormatError(f"mask without image: expected images/{image_id}.png (or .jpg); add the image or "
                                f"remove the mask", path=entry)
    if entry is None:
        raise MatSegFormatError(f"image without any mask: expected masks/{image_id}/<region>.png or "
                                f"masks/{image_id}.png; add its masks or remove the image", path=image_path)
    image, shape = _image_and_shape(image_path)
    if entry.is_dir():
        files = list_images(entry)
        if not files:
            raise MatSegFormatError(f"image without any mask: masks/{image_id}/ holds no mask PNG", path=entry)
        masks, names = [], []
        for path in files:
            m = read_binary_mask(path)
            _check_mask(m, path, shape)
            if not m.any():
                raise MatSegFormatError("empty mask (no nonzero pixel); remove it or rebuild with --skip-bad",
                                        path=path)
            masks.append(m)
            names.append(path.stem)
        stack = np.stack(masks)
    else:
        labels = read_label_png(entry)
        _check_mask(labels, entry, shape)
        stack, values = label_regions(labels)
        if not values:
            raise MatSegFormatError("empty label map (every pixel is 0 = background); remove it or rebuild with "
                                    "--skip-bad", path=entry)
        names = [_value_name(v) for v in values]
    lic = license_for(image_path.name, licenses, image_id)
    return SegmentationItem(image_id=image_id, image=image, masks=stack, region_names=names, license=lic,
                            source=str(image_path))


# ----------------------------------------------------------------------------------------------------------------
# scenes layout
# ----------------------------------------------------------------------------------------------------------------
def _scene_key(root: Path, folder: Path) -> str:
    rel = folder.relative_to(root).as_posix()
    return rel if rel != "." else (root.resolve().name or "scene")


def _scene_folders(root: Path) -> Dict[str, Path]:
    from ..synthetic.layout import iter_scene_folders

    return {_scene_key(root, f): f for f in iter_scene_folders(root)}


def _list_scenes(root: Path) -> List[str]:
    keys = list(_scene_folders(root))  # natural order (scene 2 before scene 10), sub-scenes after their parent
    if not keys:
        raise MatSegFormatError("no complete scene folder (RGB__RGB.jpg + maskNNN.png + Finished.txt) under the "
                                "folder: not a 'scenes' set", path=root)
    return keys


def _scene_folder(root: Path, image_id: str) -> Path:
    folder = root if image_id == _scene_key(root, root) and not (root / image_id).is_dir() else root / image_id
    return folder


def _files_scenes(root: Path, image_id: str) -> List[Path]:
    folder = _scene_folder(root, image_id)
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else [folder]


def _read_scenes(root: Path, image_id: str, licenses: Dict[str, str]) -> SegmentationItem:
    from ..synthetic.layout import read_scene
    from ..synthetic.rows import scene_license

    folder = _scene_folder(root, image_id)
    scene = read_scene(folder, root=root)
    keep = [k for k in range(scene.num_materials) if (scene.masks[k] >= 0.5).any()]
    if not keep:
        raise MatSegFormatError("no material has weight >= 0.5 anywhere: the scene has no region", path=folder)
    names = [Path(scene.metadata["mask_files"][k]).stem for k in keep]
    return SegmentationItem(image_id=image_id, image=scene.rgb, masks=scene.masks[keep] >= 0.5, region_names=names,
                            license=scene_license(scene.metadata), source=str(folder / "RGB__RGB.jpg"))


# ----------------------------------------------------------------------------------------------------------------
# labpics layout
# ----------------------------------------------------------------------------------------------------------------
def _list_labpics(root: Path) -> List[str]:
    ids = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                 and (p / LABPICS_DATA).is_file())
    if not ids:
        raise MatSegFormatError(f"not a LabPics folder: expected one folder per image holding Image.jpg and "
                                f"{LABPICS_DATA} (e.g. LabPics Chemistry/Test)", path=root)
    return ids


def _files_labpics(root: Path, image_id: str) -> List[Path]:
    folder = root / image_id
    return [folder / LABPICS_DATA, *(folder / n for n in LABPICS_IMAGES), folder / "Instance"]


def _read_labpics(root: Path, image_id: str, licenses: Dict[str, str]) -> SegmentationItem:
    folder = root / image_id
    data_path = folder / LABPICS_DATA
    try:
        data = json.loads(data_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MatSegFormatError(f"cannot read the annotation ({exc})", path=data_path) from None
    image_path = next((folder / n for n in LABPICS_IMAGES if (folder / n).is_file()), folder / LABPICS_IMAGES[0])
    image, shape = _image_and_shape(image_path)
    entries = data.get("MaterialsAndParts") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise MatSegFormatError("expected an object 'MaterialsAndParts' {instance: {MaskFilePath, ...}}",
                                path=data_path, field="MaterialsAndParts")
    masks, names = [], []
    for key in sorted(entries, key=lambda k: (0, int(k)) if str(k).isdigit() else (1, str(k))):
        entry = entries[key]
        where = f"MaterialsAndParts.{key}"
        if not isinstance(entry, dict) or not isinstance(entry.get("MaskFilePath"), str):
            raise MatSegFormatError("expected an object with a 'MaskFilePath' string", path=data_path, field=where)
        if entry.get("IsPart"):
            continue
        mask_path = folder / entry["MaskFilePath"].replace("\\", "/").lstrip("/")
        m = read_binary_mask(mask_path, channel=-1)
        _check_mask(m, mask_path, shape)
        if not m.any():
            logger.warning("%s: instance %s has an empty mask (%s); left out", folder, key, mask_path.name)
            continue
        classes = entry.get("MaterialType_ClassNames") or []
        masks.append(m)
        names.append(", ".join(str(c) for c in classes) if isinstance(classes, list) else str(classes))
    if not masks:
        raise MatSegFormatError("image without any mask: no material instance (MaterialsAndParts without IsPart, "
                                "non-empty mask)", path=data_path)
    lic = license_for(image_id, licenses)
    return SegmentationItem(image_id=image_id, image=image, masks=np.stack(masks), region_names=names, license=lic,
                            source=str(image_path))


# ----------------------------------------------------------------------------------------------------------------
# materialistic layout
# ----------------------------------------------------------------------------------------------------------------
def _label_file(masks: Path, stem: str) -> Optional[Path]:
    for suffix in _LABEL_SUFFIXES:
        for candidate in (masks / f"{stem}{suffix}", masks / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _list_materialistic(root: Path) -> List[str]:
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise MatSegFormatError("not a Materialistic test folder: expected images/<name>.png and "
                                "masks/<name>.exr", path=root)
    images = {p.stem for p in (root / "images").iterdir() if p.is_file() and p.suffix.lower() == ".png"}
    masks = {p.stem for p in (root / "masks").iterdir() if p.is_file() and p.suffix.lower() in _LABEL_SUFFIXES}
    return sorted(images | masks)


def _files_materialistic(root: Path, image_id: str) -> List[Path]:
    return [root / "images" / f"{image_id}.png", *(root / "masks").glob(f"{glob.escape(image_id)}.*")]


def read_exr(path: PathLike) -> np.ndarray:
    """An OpenEXR file -> float32 [H, W, C] in RGB(A) channel order (OpenEXR package, else OpenCV with EXR).

    Raises:
        MissingDependencyError: neither can read EXR here.
        MatSegFormatError: an unreadable file (naming it).
    """
    path = Path(path)
    try:
        import OpenEXR  # noqa: F401
    except ImportError:
        OpenEXR = None
    if OpenEXR is not None and hasattr(OpenEXR, "File"):
        try:
            with OpenEXR.File(str(path)) as f:
                channels = f.channels()
                if "RGB" in channels:
                    return np.asarray(channels["RGB"].pixels, dtype=np.float32)
                if "RGBA" in channels:
                    return np.asarray(channels["RGBA"].pixels, dtype=np.float32)[:, :, :3]
                order = [c for c in ("R", "G", "B") if c in channels] or sorted(channels)
                return np.stack([np.asarray(channels[c].pixels, dtype=np.float32) for c in order], axis=-1)
        except Exception as exc:  # OpenEXR raises plain exceptions for bad files
            raise MatSegFormatError(f"cannot read the EXR mask ({exc})", path=path) from None
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import re

    import cv2

    if re.search(r"OpenEXR:\s+NO", cv2.getBuildInformation()):
        raise MissingDependencyError("OpenEXR", f"reading the EXR mask {path}")
    image = cv2.imread(str(path), cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise MatSegFormatError("cannot read the EXR mask (corrupt or not an EXR file)", path=path)
    if image.ndim == 3:
        image = np.flip(image[:, :, :3], -1)  # BGR -> RGB, as Materialistic's exr_to_tensor
    return np.ascontiguousarray(image, dtype=np.float32)


def read_material_labels(path: PathLike) -> np.ndarray:
    """A Materialistic label map -> [H, W] labels (its channel 0 = red; float for EXR/float TIFF). 0 = unlabelled.

    ``.exr`` (:func:`read_exr`), ``.tif``/``.tiff`` (any depth, via OpenCV) or ``.png`` (8-bit, :func:`read_label_png`).
    """
    import cv2

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".exr":
        image = read_exr(path)
    elif suffix == ".png":
        return read_label_png(path)
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MatSegFormatError(f"cannot read the mask ({exc.strerror or exc})", path=path) from None
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
        if image is None:
            raise MatSegFormatError("corrupt or unreadable label map; replace it or rebuild with --skip-bad",
                                    path=path)
        if image.ndim == 3:
            image = np.flip(image[:, :, :3], -1)
    return image[:, :, 0] if image.ndim == 3 else image


def _read_materialistic(root: Path, image_id: str, licenses: Dict[str, str]) -> SegmentationItem:
    image_path = root / "images" / f"{image_id}.png"
    mask_path = _label_file(root / "masks", image_id)
    if not image_path.is_file():
        raise MatSegFormatError(f"mask without image: expected images/{image_id}.png", path=mask_path)
    if mask_path is None:
        raise MatSegFormatError(f"image without any mask: expected masks/{image_id}.exr", path=image_path)
    image, shape = _image_and_shape(image_path)
    labels = read_material_labels(mask_path)
    _check_mask(labels, mask_path, shape)
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise MatSegFormatError("label map holds NaN or infinite values", path=mask_path)
    stack, values = label_regions(labels)
    if not values:
        raise MatSegFormatError("empty label map (every pixel is 0 = unlabelled); remove it or rebuild with "
                                "--skip-bad", path=mask_path)
    return SegmentationItem(image_id=image_id, image=image, masks=stack, region_names=[_value_name(v) for v in values],
                            license=license_for(image_path.name, licenses, image_id), source=str(image_path))


# ----------------------------------------------------------------------------------------------------------------
# one interface over the layouts
# ----------------------------------------------------------------------------------------------------------------
_READERS = {
    "masks": (_list_masks, _files_masks, _read_masks),
    "scenes": (_list_scenes, _files_scenes, _read_scenes),
    "labpics": (_list_labpics, _files_labpics, _read_labpics),
    "materialistic": (_list_materialistic, _files_materialistic, _read_materialistic),
}


def _check_format(format: str) -> str:
    if format not in _READERS:
        raise MatSegInputError(f"unknown segmentation format {format!r}: use one of {', '.join(FORMATS)}")
    return format


def _root(root: PathLike) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise MatSegInputError(f"{root} is not a folder: give the segmentation set's folder")
    return root


def detect_format(root: PathLike) -> str:
    """The layout of a raw folder when exactly one fits (see the module docstring).

    ``images/`` + ``masks/`` is ``materialistic`` when ``masks/`` holds ``.exr`` (or ``.tif``) label maps, else
    ``masks``; folders
    holding ``Data.json`` make ``labpics``; complete scene folders ``scenes``.

    Raises:
        MatSegFormatError: no layout or several fit (then pass ``format``).
    """
    root = _root(root)
    found = []
    if (root / "images").is_dir() and (root / "masks").is_dir():
        float_maps = any(p.suffix.lower() in (".exr", ".tif", ".tiff") for p in (root / "masks").iterdir())
        found.append("materialistic" if float_maps else "masks")
    if any((p / LABPICS_DATA).is_file() for p in root.iterdir() if p.is_dir()):
        found.append("labpics")
    from ..synthetic.layout import iter_scene_folders

    if next(iter_scene_folders(root), None) is not None:
        found.append("scenes")
    if len(found) == 1:
        return found[0]
    if not found and (root / "data").is_dir() and any((root / "data").glob("*.parquet")):
        raise MatSegFormatError("this is a built dataset folder (data/*.parquet), not a raw segmentation set: read it "
                                "with load_segmentation(folder) or datasets.load_dataset(folder)", path=root)
    if not found:
        raise MatSegFormatError("not a segmentation set: expected images/ + masks/ (format masks or "
                                "materialistic), LabPics folders with Data.json, or scene folders with Finished.txt",
                                path=root)
    raise MatSegFormatError(f"the folder fits several layouts ({', '.join(found)}); pass --format (format=)",
                            path=root)


def _licenses(root: Path) -> Dict[str, str]:
    licenses = load_license_map(root / "images") if (root / "images").is_dir() else {}
    licenses.update({k: v for k, v in load_license_map(root).items() if k not in licenses})
    return licenses


def list_segmentation_items(root: PathLike, format: str) -> List[str]:
    """The image ids of a raw folder in ``format``, in the order every reader and builder uses (sorted; scenes in
    natural order)."""
    return _READERS[_check_format(format)][0](_root(root))


def segmentation_item_files(root: PathLike, image_id: str, format: str) -> List[Path]:
    """The files an item is read from (for resume fingerprints; missing ones count as missing)."""
    return _READERS[_check_format(format)][1](Path(root), image_id)


def read_segmentation_item(root: PathLike, image_id: str, format: str,
                           licenses: Optional[Dict[str, str]] = None) -> SegmentationItem:
    """Read one image of a raw folder: :class:`SegmentationItem` (``masks`` bool [R, H, W], R >= 1, none empty).

    Raises:
        MatSegFormatError: bad input, naming the file (see the module docstring).
    """
    root = _root(root)
    return _READERS[_check_format(format)][2](root, image_id, _licenses(root) if licenses is None else licenses)


def iter_segmentation_items(root: PathLike, format: Optional[str] = None, image_ids: Optional[Sequence[str]] = None,
                            *, skip_bad: bool = False,
                            on_skip: Optional[Callable[[str, str], None]] = None) -> Iterator[SegmentationItem]:
    """Read the images of a raw folder one at a time (memory stays flat), in :func:`list_segmentation_items` order.

    Args:
        format: one of :data:`FORMATS`; ``None``: :func:`detect_format`.
        image_ids: which images, in this order (default: all).
        skip_bad: leave out images that fail validation instead of raising; each is logged and reported to
            ``on_skip(image_id, reason)``.
    """
    root = _root(root)
    format = detect_format(root) if format is None else _check_format(format)
    licenses = _licenses(root)
    for image_id in list_segmentation_items(root, format) if image_ids is None else image_ids:
        try:
            item = read_segmentation_item(root, image_id, format, licenses)
        except MatSegFormatError as exc:
            skip_or_raise(exc, image_id, skip_bad=skip_bad, on_skip=on_skip, logger=logger)
            continue
        yield item


def image_file_bytes(item: SegmentationItem) -> Tuple[bytes, str]:
    """``(encoded bytes, extension)`` to store for an item's image: the source file's own bytes when it is a JPEG or
    PNG without an EXIF rotation (what was read, unchanged), else a lossless PNG of ``item.image``."""
    from ..utils.images import encode_image, read_image_header

    if item.source:
        path = Path(item.source)
        if path.is_file() and path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            data = path.read_bytes()
            try:
                width, height, orientation = read_image_header(data, str(path))
            except MatSegFormatError:
                orientation, width, height = None, 0, 0
            if orientation == 1 and (height, width) == tuple(item.image.shape[:2]):
                return data, path.suffix.lower()
    return encode_image(item.image, ".png"), ".png"


__all__ = ["FORMATS", "detect_format", "list_segmentation_items", "read_segmentation_item", "iter_segmentation_items",
           "segmentation_item_files", "read_binary_mask", "read_label_png", "label_regions", "read_exr",
           "read_material_labels", "image_file_bytes", "UNKNOWN_LICENSE", "IMAGE_EXTENSIONS"]

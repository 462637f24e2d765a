"""Image decoding shared by every reader: RGB uint8, EXIF orientation applied, typed errors."""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

from ..errors import MatSegFormatError, MatSegInputError

PathLike = Union[str, os.PathLike]

ImageSource = Union[str, os.PathLike, bytes]

#: The most pixels (width x height) an image may have before it is decoded: 150 million, above every phone and
#: DSLR photo of the benchmark's kind (108 MP sensors, 12,240 x 12,240) and below Pillow's own decompression-bomb
#: stop (about 179 MP), so that a hostile or broken file (a 400-MP JPEG of a few kilobytes decodes to 1.2 GB) is
#: refused with a typed error before any pixel is decoded. Raise it here to read larger photos.
MAX_IMAGE_PIXELS = 150_000_000

#: The EXIF orientation tag (0x0112) and its valid values (1 = as stored; 2-8 = mirrored and/or rotated).
EXIF_ORIENTATION_TAG = 0x0112
#: the image files every folder reader takes (suffix compared in lower case): :func:`is_image_file`
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
EXIF_ORIENTATIONS = range(1, 9)

_HEADER_ERRORS = (OSError, SyntaxError, ValueError, TypeError, struct.error)


def read_image_header(data: bytes, source: str = "<bytes>") -> Tuple[int, int, int]:
    """``(width, height, orientation)`` of an encoded image, validated, without decoding its pixels.

    ``width`` and ``height`` are those of the image *as displayed* (EXIF orientation applied: swapped for
    orientations 5-8); ``orientation`` is the EXIF tag (1 when absent).

    Raises:
        MatSegFormatError: the header is unreadable, the image has more than :data:`MAX_IMAGE_PIXELS` pixels, or
            its EXIF orientation is not one of 1-8 (the error names ``source`` and the value).
    """
    header = _pil_header(data, source)
    if isinstance(header, Exception):
        raise MatSegFormatError(f"corrupt or unreadable image (cannot read the image header: {header}); replace or "
                                f"remove it", path=source)
    return _displayed_header(*header, source)


def _pil_header(data: bytes, source: str) -> Union[Tuple[int, int, object], Exception]:
    """Pillow's (stored width, stored height, raw EXIF orientation value or 1), the pixel limit checked before
    anything is decoded; or the exception of a header Pillow cannot read (not an image, a format it does not
    know, broken EXIF)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_IMAGE_PIXELS decides
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise _too_many_pixels(f"{width}x{height} = {width * height:,} pixels", source)
                if im.format == "PNG" and "exif" not in im.info:
                    return width, height, 1  # no eXIf chunk before the pixels (Pillow would decode all to look)
                return width, height, im.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except MatSegFormatError:
        raise
    except Image.DecompressionBombError as exc:  # over Pillow's own stop (about 179 MP)
        raise _too_many_pixels(str(exc), source) from None
    except (UnidentifiedImageError, *_HEADER_ERRORS) as exc:
        return exc


def _displayed_header(width: int, height: int, orientation: object, source: str) -> Tuple[int, int, int]:
    if isinstance(orientation, bool) or not isinstance(orientation, int) or orientation not in EXIF_ORIENTATIONS:
        raise MatSegFormatError(f"EXIF orientation {str(orientation)[:40]!r} is not one of 1-8, so the displayed frame "
                                f"of the photo (and of its annotation) is unknown; re-save the photo with a valid "
                                f"orientation tag (1-8) or without one", path=source, field="EXIF Orientation")
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return width, height, orientation


def _too_many_pixels(size: str, source: str) -> MatSegFormatError:
    return MatSegFormatError(f"image too large ({size}): the limit is {MAX_IMAGE_PIXELS:,} pixels "
                             f"(matseg_hub.utils.images.MAX_IMAGE_PIXELS), which protects against decompression "
                             f"bombs; downscale the photo or raise the limit", path=source)


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to ``uint8 [H, W, 3]`` RGB, as displayed (EXIF orientation applied).

    Grayscale is repeated to 3 channels, alpha is dropped, 16-bit images are scaled to 8 bits.
    Decoding uses OpenCV (like the reference code), so pixels equal ``cv2.imread``'s after BGR->RGB. The header is
    checked first where Pillow reads it (the pixel limit and the EXIF orientation of :func:`read_image_header`).

    Raises:
        MatSegFormatError: when the bytes are not a readable image, the image has more than
            :data:`MAX_IMAGE_PIXELS` pixels, or its EXIF orientation is not 1-8 (names ``source``).
    """
    import cv2

    header = _pil_header(data, source)
    if not isinstance(header, Exception):  # else a format Pillow does not read (e.g. OpenEXR): OpenCV decides
        _displayed_header(*header, source)
    buf = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if image is None:
        raise MatSegFormatError("cannot decode the image (corrupt or not an image file); replace or remove it",
                                path=source)
    return swap_rb(image)


def swap_rb(image: np.ndarray) -> np.ndarray:
    """RGB <-> BGR of an ``[H, W, 3]`` array, as a new contiguous array.

    ``cv2.cvtColor`` for uint8/uint16/float32 (about 40x faster than numpy's copy of ``image[:, :, ::-1]``, which
    walks the 3-element channel axis backwards), numpy otherwise.
    """
    import cv2

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise MatSegInputError(f"expected an [H, W, 3] image, got shape {image.shape}")
    if image.dtype in (np.uint8, np.uint16, np.float32) and image.size:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(image[:, :, ::-1])


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: Tuple[int, int],
                border: Optional[int] = None) -> np.ndarray:
    """``cv2.warpAffine(image, matrix, size, flags=INTER_LINEAR | WARP_INVERSE_MAP, borderMode=border)`` (mirrored
    borders by default): the same pixels, about 2x faster for uint8 RGB.

    OpenCV's vectorised bilinear warp serves 1- and 4-channel images and is about 2x slower on 3 channels, so an
    ``[H, W, 3]`` uint8 image is converted to RGBA (a fast copy), warped, and its alpha channel dropped. This pays
    when the output is not tiny next to the source (at most 16x fewer pixels); smaller outputs use the plain warp.
    """
    import cv2

    if border is None:
        border = cv2.BORDER_REFLECT_101
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    w, h = int(size[0]), int(size[1])
    if (image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            and image.shape[0] * image.shape[1] <= 16 * w * h):
        rgba = cv2.cvtColor(image, cv2.COLOR_RGB2RGBA)
        return cv2.cvtColor(cv2.warpAffine(rgba, matrix, (w, h), flags=flags, borderMode=border), cv2.COLOR_RGBA2RGB)
    return cv2.warpAffine(image, matrix, (w, h), flags=flags, borderMode=border)


def read_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """Read an image file to ``uint8 [H, W, 3]`` RGB with its EXIF orientation applied."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MatSegFormatError("image file not found", path=path) from None
    except IsADirectoryError:
        raise MatSegFormatError("expected an image file, found a folder", path=path) from None
    return decode_image(data, str(path))


def displayed_size(data: bytes, source: str = "<bytes>") -> Tuple[int, int]:
    """``(width, height)`` of an encoded image after its EXIF orientation, without decoding pixels
    (validated like :func:`read_image_header`)."""
    width, height, _ = read_image_header(data, source)
    return width, height


def gray_to_unit(image: np.ndarray, source: str = "<array>") -> np.ndarray:
    """A decoded grayscale-ish image -> ``float32 [H, W]`` in ``[0, 1]``: the one rule for masks and scalar maps.

    * 8-bit (``uint8``) values are divided by 255, 16-bit (``uint16``) by 65535; 32-bit integers (Pillow's mode
      ``"I"``, which older Pillow gives for 16-bit PNGs) are taken as 16-bit; ``bool`` is 0/1; floats are kept.
    * Colour (``[H, W, 3]`` or ``[H, W, 4]``, channels in the order given): the luminance of the first three
      channels with ITU-R BT.601 weights (``0.299 R + 0.587 G + 0.114 B`` for RGB; pass BGR arrays reversed, or
      use :func:`decode_gray`), alpha ignored. A gray image saved as RGB (equal channels) keeps its values.
    * ``[H, W, 1]`` and gray + alpha (``[H, W, 2]``): the first channel.

    The result is clipped to ``[0, 1]`` (only floats can leave it).

    Raises:
        MatSegFormatError: an unsupported shape or dtype (names ``source``).
    """
    img = np.asarray(image)
    if img.ndim == 3:
        if img.shape[2] in (1, 2):
            img = img[:, :, 0]
        elif img.shape[2] in (3, 4):
            rgb = img[:, :, :3].astype(np.float32)
            lum = rgb[:, :, 0] * np.float32(0.299) + rgb[:, :, 1] * np.float32(0.587) + rgb[:, :, 2] * np.float32(0.114)
            return np.clip(lum / np.float32(_full_scale(img.dtype, source)), 0.0, 1.0).astype(np.float32)
    if img.ndim != 2:
        raise MatSegFormatError(f"expected a grayscale image, got an array of shape {img.shape}", path=source)
    if img.dtype == np.bool_:
        return img.astype(np.float32)
    out = img.astype(np.float32) / np.float32(_full_scale(img.dtype, source))
    if img.dtype.kind in "fi":  # only floats and signed integers can leave [0, 1]
        out = np.clip(out, 0.0, 1.0)
    return out


def _full_scale(dtype: np.dtype, source: str) -> float:
    if dtype == np.uint8:
        return 255.0
    if dtype == np.bool_:
        return 1.0
    if dtype in (np.uint16, np.int32, np.uint32, np.int64):
        return 65535.0
    if dtype.kind == "f":
        return 1.0
    raise MatSegFormatError(f"unsupported pixel type {dtype} for a grayscale image", path=source)


def decode_gray(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode a mask or a scalar map (PNG, JPEG, TIFF, EXR, ...) to ``float32 [H, W]`` in ``[0, 1]``.

    The pixels are decoded as stored (OpenCV ``IMREAD_UNCHANGED``: bit depth kept, no EXIF rotation) and mapped by
    :func:`gray_to_unit`: 8-bit / 255, 16-bit / 65535, colour -> BT.601 luminance, gray + alpha -> gray.

    Raises:
        MatSegFormatError: when the bytes are not a readable image (names ``source``).
    """
    import cv2

    buf = np.frombuffer(data if data is not None else b"", dtype=np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if image is None:
        raise MatSegFormatError("cannot decode the mask/map (corrupt or not an image file); replace or remove it",
                                path=source)
    if image.ndim == 3 and image.shape[2] in (3, 4):  # OpenCV gives BGR(A)
        image = image[:, :, 2::-1]
    return gray_to_unit(image, source)


def resize_image(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Resize ``image`` to ``size = (width, height)`` with area averaging when shrinking, fast.

    OpenCV's ``INTER_AREA`` is exact but slow for non-integer ratios (about 2 ms for a 700 -> 512 px colour image
    on one core); here the image is first halved with exact 2x2 averages (OpenCV's fast integer path) while it is
    at least twice the target, then bilinearly resized by the remaining ratio (< 2, so every source pixel still
    contributes). An odd last row or column is dropped before a halving (at most ``2**k - 1`` source pixels at the
    far edges after ``k`` halvings). Enlarging is bilinear. About 7x faster than ``INTER_AREA`` at scene sizes.
    """
    import cv2

    w, h = int(size[0]), int(size[1])
    src = image
    while src.shape[1] >= 2 * w and src.shape[0] >= 2 * h:
        hh, hw = src.shape[0] // 2, src.shape[1] // 2
        src = cv2.resize(src[: 2 * hh, : 2 * hw], (hw, hh), interpolation=cv2.INTER_AREA)
    if src.shape[0] == h and src.shape[1] == w:
        return src if src is not image else src.copy()
    return cv2.resize(src, (w, h), interpolation=cv2.INTER_LINEAR)


def image_grid(images, tile: int = 128, columns=None, labels=None, *, pad: int = 4, background: int = 255,
               keep_aspect: bool = False) -> np.ndarray:
    """A picture for a person: images in a grid of ``tile`` x ``tile`` cells, uint8 [H, W, 3] RGB.

    Args:
        images: uint8 [H, W, 3] or [H, W] arrays (gray is shown as gray).
        columns: cells per row (default: a square-ish grid).
        labels: optional text drawn at the bottom left of each cell.
        pad: pixels between and around cells; background: their gray level.
        keep_aspect: fit each image inside its cell (top-left, aspect kept) instead of stretching it to the cell.
    """
    import cv2

    n = max(1, len(images))
    columns = int(columns or int(np.ceil(np.sqrt(n))))
    rows = int(np.ceil(n / columns))
    step = tile + pad
    canvas = np.full((rows * step + pad, columns * step + pad, 3), background, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        im = np.asarray(im)
        if im.ndim == 2:
            im = np.repeat(im[:, :, None], 3, axis=2)
        h, w = im.shape[:2]
        size = (tile, tile)
        if keep_aspect:
            ratio = tile / max(h, w)
            size = (max(1, int(w * ratio)), max(1, int(h * ratio)))
        small = resize_image(im, size)
        y0, x0 = pad + r * step, pad + c * step
        canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        if labels is not None and k < len(labels) and labels[k]:
            cv2.putText(canvas, str(labels[k])[:20], (x0 + 3, y0 + tile - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                        (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def is_image_file(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` names an image file by its suffix (:data:`IMAGE_EXTENSIONS`, any case)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def encode_image(image: np.ndarray, ext: str = ".jpg", quality: int = 95) -> bytes:
    """Encode an RGB (or single-channel) uint8 image to bytes (``.jpg`` / ``.png``)."""
    import cv2

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = swap_rb(arr)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr), params)
    if not ok:
        raise MatSegInputError(f"cannot encode an image of shape {arr.shape} as {ext}")
    return buf.tobytes()


def list_images(folder: PathLike) -> List[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MatSegInputError(f"{folder} is not a folder of images")
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p)
                  and not p.name.startswith("."))


# mask PNGs: deterministic and fast (the scene writers' encoder)
def _png_chunk(tag: bytes, data: bytes) -> bytes:
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
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)  # level 1: fast; PNG is lossless anyway
    return compressor.compress(data) + compressor.flush()


def encode_mask_png(gray_u8: np.ndarray) -> bytes:
    """8-bit grayscale PNG bytes of a mask: rows unfiltered, run-length deflate (lossless, deterministic).

    The fastest lossless settings on MatSeg masks (long runs of 0 and 255 with soft edges): 2x faster than
    OpenCV's encoder with the same settings, 2.7x faster than its default ones, files within 1 %.
    """
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

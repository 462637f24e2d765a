"""Image decoding shared by every reader: RGB uint8, EXIF orientation applied, typed errors."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Tuple, Union

import numpy as np

from ..errors import MatSegFormatError

ImageSource = Union[str, os.PathLike, bytes]


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to ``uint8 [H, W, 3]`` RGB, as displayed (EXIF orientation applied).

    Grayscale is repeated to 3 channels, alpha is dropped, 16-bit images are scaled to 8 bits.
    Decoding uses OpenCV (like the reference code), so pixels equal ``cv2.imread``'s after BGR->RGB.

    Raises:
        MatSegFormatError: when the bytes are not a readable image (names ``source``).
    """
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if image is None:
        raise MatSegFormatError("cannot decode the image (corrupt or not an image file); replace or remove it",
                                path=source)
    return np.ascontiguousarray(image[:, :, ::-1])


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
    """``(width, height)`` of an encoded image after its EXIF orientation, without decoding pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise MatSegFormatError(f"cannot read the image header ({exc}); replace or remove it", path=source) from None
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return width, height

"""matseg_hub.utils.images: the one grayscale decoder (masks and scalar maps) and its users."""

from __future__ import annotations

import numpy as np
import pytest

from matseg_hub.errors import MatSegFormatError
from matseg_hub.utils.images import decode_gray, gray_to_unit


def _png(array) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


def test_decode_gray_bit_depths_colour_and_alpha():
    out = decode_gray(_png(np.full((4, 5), 32767, np.uint16)))
    assert out.dtype == np.float32 and out.shape == (4, 5)
    assert np.allclose(out, 32767 / 65535)  # 0.49999, not 1.0
    assert np.allclose(decode_gray(_png(np.full((3, 3), 128, np.uint8))), 128 / 255)
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    assert np.allclose(decode_gray(_png(bgr)), 0.299, atol=1e-6)  # BT.601 luminance of red
    gray_rgb = np.full((2, 2, 3), 200, np.uint8)
    assert np.allclose(decode_gray(_png(gray_rgb)), 200 / 255, atol=1e-6)  # a gray map saved as RGB keeps its value
    gray_alpha = np.dstack([np.full((2, 2), 51, np.uint8), np.zeros((2, 2), np.uint8)])
    assert np.allclose(gray_to_unit(gray_alpha), 0.2)
    assert np.allclose(gray_to_unit(np.array([[-0.5, 2.0]], np.float32)), [[0.0, 1.0]])


def test_decode_gray_corrupt_bytes_raise_a_typed_error_naming_the_source():
    with pytest.raises(MatSegFormatError, match="bad.png"):
        decode_gray(b"not a png", "bad.png")
    with pytest.raises(MatSegFormatError):
        decode_gray(b"", "empty.png")


def test_pbr_scalar_maps_use_the_same_rule():
    from matseg_hub.materials.pbr import material_from_map_bytes

    albedo = _png(np.full((6, 6, 3), 90, np.uint8))
    m = material_from_map_bytes({"OriginColor": albedo, "Roughness": _png(np.full((6, 6), 32767, np.uint16))})
    assert np.allclose(m.roughness, 32767 / 65535)
    with pytest.raises(MatSegFormatError, match="Roughness"):
        material_from_map_bytes({"OriginColor": albedo, "Roughness": b"garbage"}, origin="mat")


def test_resize_image_averages_when_shrinking_and_keeps_flat_colours():
    import cv2
    import skimage.data

    from matseg_hub.utils.images import resize_image

    photo = cv2.resize(skimage.data.coffee(), (1024, 768), interpolation=cv2.INTER_LINEAR)
    # power-of-two ratios are exact 2x2 averages: OpenCV's area average up to the rounding of each halving
    exact = cv2.resize(photo, (128, 96), interpolation=cv2.INTER_AREA)
    assert np.abs(resize_image(photo, (128, 96)).astype(int) - exact).max() <= 1
    for size in [(700, 500), (512, 384), (1300, 900)]:  # ratios below 2: bilinear, like OpenCV's resize
        out = resize_image(photo, size)
        assert out.shape == (size[1], size[0], 3) and out.dtype == np.uint8
        assert np.abs(out.astype(int) - cv2.resize(photo, size, interpolation=cv2.INTER_LINEAR)).max() == 0
    flat = np.full((641, 479, 3), (10, 200, 77), dtype=np.uint8)
    assert (resize_image(flat, (37, 101)) == (10, 200, 77)).all()
    # 1-px stripes average to mid-gray when shrunk 8x, instead of aliasing to black or white
    stripes = np.zeros((256, 256, 3), dtype=np.uint8)
    stripes[:, ::2] = 255
    assert np.abs(resize_image(stripes, (32, 32)).astype(int) - 127.5).max() <= 1
    same = resize_image(photo, (1024, 768))
    assert same is not photo and np.array_equal(same, photo)  # a copy, never the caller's array


def test_swap_rb_reverses_channels_for_every_dtype():
    from matseg_hub.utils.images import swap_rb

    rng = np.random.default_rng(1)
    for dtype in (np.uint8, np.uint16, np.float32, np.float64, np.int32):
        image = (rng.random((5, 7, 3)) * 200).astype(dtype)
        out = swap_rb(image)
        assert out.dtype == dtype and out.flags.c_contiguous and np.array_equal(out, image[:, :, ::-1])
    view = np.zeros((4, 6, 3), np.uint8)[:, ::2]  # non-contiguous input
    view[..., 0] = 9
    assert (swap_rb(view)[..., 2] == 9).all()
    with pytest.raises(ValueError):
        swap_rb(np.zeros((4, 4, 4), np.uint8))


def test_warp_affine_gives_opencvs_three_channel_warp_exactly():
    import math

    import cv2

    from matseg_hub.utils.images import warp_affine

    rng = np.random.default_rng(11)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for _ in range(60):
        sh, sw = (int(v) for v in rng.integers(2, 300, size=2))
        image = rng.integers(0, 256, (sh, sw, 3), dtype=np.uint8)
        h, w = (int(v) for v in rng.integers(1, 200, size=2))
        angle, scale = math.radians(float(rng.uniform(-180, 180))), float(rng.uniform(0.2, 3.0))
        c, s = math.cos(angle) * scale, math.sin(angle) * scale
        # centres inside and outside the source: mirrored borders on any side
        cx, cy = float(rng.uniform(-0.3, 1.3)) * sw, float(rng.uniform(-0.3, 1.3)) * sh
        m = np.array([[c, -s, cx - c * (w - 1) / 2 + s * (h - 1) / 2], [s, c, cy - s * (w - 1) / 2 - c * (h - 1) / 2]])
        for border in (cv2.BORDER_REFLECT_101, cv2.BORDER_CONSTANT):
            expected = cv2.warpAffine(image, m, (w, h), flags=flags, borderMode=border)
            out = warp_affine(image, m, (w, h), border)
            assert out.shape == (h, w, 3) and np.array_equal(out, expected)
    gray = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    m = np.array([[0.9, 0.1, 3.0], [-0.1, 0.9, 2.0]])
    assert np.array_equal(warp_affine(gray, m, (30, 20)), cv2.warpAffine(gray, m, (30, 20), flags=flags,
                                                                          borderMode=cv2.BORDER_REFLECT_101))

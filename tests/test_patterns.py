"""Pattern maps: shape, range, fuzzy threshold, occupancy, reproducibility from the recorded parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matseg_hub.errors import MatSegInputError
from matseg_hub.synthetic.patterns import (PROPERTIES, PatternParams, fuzzy_threshold, half_resolution, pattern_map,
                                           property_plane, render_pattern, warp_source)


def _natural(h=120, w=160, seed=0):
    """A smooth, colourful test image: uint8 [h, w, 3]."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("prop", PROPERTIES)
def test_every_property_gives_a_map_in_range_reproducible_from_params(prop):
    image = _natural()
    out, params = pattern_map(image, np.random.default_rng(1), (50, 70), properties=[prop], return_params=True)
    assert out.dtype == np.float32 and out.shape == (50, 70)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert params.property == prop
    again = render_pattern(image, PatternParams.from_dict(json.loads(json.dumps(params.to_dict()))))
    assert np.array_equal(again, out)


def test_same_rng_state_same_map_and_different_seed_differs():
    image = _natural()
    a = pattern_map(image, np.random.default_rng(5), 64)
    b = pattern_map(image, np.random.default_rng(5), 64)
    c = pattern_map(image, np.random.default_rng(6), 64)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fuzzy_threshold_is_zero_below_one_above_linear_between():
    plane = np.linspace(0, 1, 11, dtype=np.float32)
    out = fuzzy_threshold(plane, 0.2, 0.6)
    assert np.all(out[plane <= 0.2] == 0) and np.all(out[plane >= 0.6] == 1)
    mid = (plane > 0.2) & (plane < 0.6)
    np.testing.assert_allclose(out[mid], (plane[mid] - 0.2) / 0.4, atol=1e-6)
    hard = fuzzy_threshold(plane, 0.5, 0.5)
    assert set(np.unique(hard)) == {0.0, 1.0}
    with pytest.raises(MatSegInputError):
        fuzzy_threshold(plane, 0.7, 0.2)


@pytest.mark.parametrize("occupancy", [0.1, 0.4, 0.8])
def test_occupancy_is_the_fraction_above_one_half(occupancy):
    image = _natural(200, 200, seed=3)
    out = pattern_map(image, np.random.default_rng(2), (100, 100), occupancy=occupancy, properties=["mix"])
    assert abs(float((out > 0.5).mean()) - occupancy) < 0.05


def test_hard_map_is_binary_and_region_restricts_the_quantile():
    image = _natural()
    region = np.zeros((60, 60), np.float32)
    region[:, :30] = 1
    out = pattern_map(image, np.random.default_rng(0), (60, 60), occupancy=0.5, hard=True, region=region,
                      properties=["R"])
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert abs(float(out[:, :30].mean()) - 0.5) < 0.1


def test_work_scale_keeps_size_and_reproduces():
    image = _natural(300, 400)
    out, params = pattern_map(image, np.random.default_rng(3), (81, 97), work_scale=0.5, return_params=True)
    assert out.shape == (81, 97) and params.work_scale == 0.5
    assert np.array_equal(render_pattern(image, params), out)


def test_working_resolution_params_cover_the_same_source_region_with_fewer_pixels():
    params = PatternParams(height=100, width=60, source_height=200, source_width=300, center_x=50.0,
                           center_y=40.0, scale=1.5, angle=10.0, flip=False, property="V", blur_sigma=4.0,
                           work_scale=0.25)
    work = params.at_working_resolution()
    assert (work.height, work.width, work.work_scale) == (25, 15, 1.0)
    assert work.scale == 1.5 * 60 / 15 and work.blur_sigma == 4.0 * 15 / 60
    assert (work.center_x, work.center_y, work.angle, work.property) == (50.0, 40.0, 10.0, "V")
    full = PatternParams(**{**params.__dict__, "work_scale": 1.0})
    assert full.at_working_resolution() is full
    tiny = PatternParams(**{**params.__dict__, "height": 3, "width": 3, "work_scale": 0.1})
    assert (tiny.at_working_resolution().height, tiny.at_working_resolution().width) == (2, 2)


def test_flat_image_does_not_crash_and_gray_image_avoids_flat_properties():
    flat = np.full((40, 40, 3), 128, np.uint8)
    out = pattern_map(flat, np.random.default_rng(0), 32)
    assert out.shape == (32, 32) and np.isfinite(out).all()
    gray = np.repeat(_natural()[:, :, :1], 3, axis=2)
    _, params = pattern_map(gray, np.random.default_rng(0), 32, properties=["H", "S", "V"], return_params=True)
    assert params.property == "V"  # H and S are flat on a gray image


def test_geometry_rotation_and_crop_are_recorded():
    image = _natural()
    _, params = pattern_map(image, np.random.default_rng(9), 40, rotate_prob=1.0, zoom_range=(0.5, 0.5),
                            return_params=True)
    assert params.angle != 0.0
    assert params.scale == pytest.approx(0.5 * min(120 / 40, 160 / 40))
    assert params.affine_matrix().shape == (2, 3)
    plane = property_plane(image, params)
    assert plane.shape == (40, 40) and plane.dtype == np.float32


@pytest.mark.parametrize("angle", [0.0, 30.0])
def test_crops_that_shrink_the_source_2x_are_read_from_its_half_resolution_copy(angle):
    # one-pixel stripes: sampling every 2.5th pixel aliases them into strong false stripes; averaging first does not
    stripes = np.zeros((400, 400, 3), np.uint8)
    stripes[:, ::2] = 255
    params = PatternParams(height=60, width=60, source_height=400, source_width=400, center_x=200.0, center_y=200.0,
                           scale=2.5, angle=angle, flip=False, property="R")
    crop = warp_source(stripes, params)
    assert crop.shape == (60, 60, 3)
    assert np.abs(crop.astype(np.float64) - 127.5).max() <= 2.0  # mid gray: the half copy averages each pair
    half = half_resolution(stripes)
    assert half.shape == (200, 200, 3)
    assert np.array_equal(warp_source(stripes, params, half=half), crop)  # a kept copy gives the same crop
    image = _natural(400, 480)
    out, pat = pattern_map(image, np.random.default_rng(4), (70, 90), zoom_range=(0.9, 1.0), return_params=True)
    assert pat.scale >= 2.0
    assert np.array_equal(pattern_map(image, np.random.default_rng(4), (70, 90), zoom_range=(0.9, 1.0),
                                      half=half_resolution(image)), out)
    assert np.array_equal(render_pattern(image, pat), out)


def test_bad_inputs_are_typed_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(MatSegInputError):
        pattern_map(np.zeros((10, 10), np.uint8), rng, 8)
    with pytest.raises(MatSegInputError):
        pattern_map(np.zeros((10, 10, 3), np.float32), rng, 8)
    with pytest.raises(MatSegInputError):
        pattern_map(_natural(), rng, 8, occupancy=1.5)
    with pytest.raises(MatSegInputError):
        pattern_map(_natural(), rng, 8, properties=["X"])
    _, params = pattern_map(_natural(), rng, 8, return_params=True)
    with pytest.raises(MatSegInputError):
        render_pattern(_natural(50, 50), params)


# --- the authors' maps (UV_Map_Extractore.get_uv_binary_map) ---------------------------------------------------------
def test_authors_map_respects_the_occupancy_cap_and_reproduces_from_params():
    from matseg_hub.synthetic.patterns import authors_pattern_map

    image = _natural(160, 200)
    rng = np.random.default_rng(3)
    seen_soft = seen_sharp = False
    for _ in range(40):
        drawn = authors_pattern_map(image, rng, (96, 112), max_occupancy=0.2, hard=False)
        if drawn is None:
            continue
        out, params = drawn
        assert out.dtype == np.float32 and out.shape == (96, 112) and 0.0 <= out.min() <= out.max() <= 1.0
        # at most max_occupancy above the high threshold, at least 1 % (counted on every 4th row/column)
        above = float((out[::4, ::4] >= 1.0).mean())
        assert 0.01 < above <= 0.2 + 1e-9, above
        assert params.angle == 0.0 and not params.flip and params.property in "BGRHSV"
        assert np.array_equal(render_pattern(image, PatternParams.from_dict(json.loads(json.dumps(params.to_dict())))),
                              out)
        seen_soft |= params.t_lo < params.t_hi
        seen_sharp |= params.t_lo == params.t_hi
    assert seen_soft and seen_sharp  # half of a soft scene's maps have a linear zone


def test_authors_map_hard_scenes_have_one_threshold_and_a_flat_image_gives_none():
    from matseg_hub.synthetic.patterns import authors_pattern_map

    rng = np.random.default_rng(0)
    for _ in range(10):
        drawn = authors_pattern_map(_natural(), rng, (64, 64), max_occupancy=0.5, hard=True)
        if drawn is not None:
            assert drawn[1].t_lo == drawn[1].t_hi and set(np.unique(drawn[0])) <= {0.0, 1.0}
    black = np.zeros((80, 80, 3), dtype=np.uint8)
    assert all(authors_pattern_map(black, rng, (64, 64), max_occupancy=0.5, hard=False) is None for _ in range(5))


def test_authors_geometry_covers_the_output_and_keeps_the_source_resolution():
    from matseg_hub.synthetic.patterns import authors_geometry

    rng = np.random.default_rng(0)
    g = authors_geometry((300, 400), (100, 120), rng, rescale_prob=0.0)
    assert g["scale"] == 1.0 and g["angle"] == 0.0 and not g["flip"]  # cut at the source's resolution
    assert 60 <= g["center_x"] <= 340 and 50 <= g["center_y"] <= 250
    small = authors_geometry((50, 60), (100, 120), rng, rescale_prob=0.0)
    assert small["scale"] == pytest.approx(0.5)  # a smaller source is scaled up to cover the output
    fit = authors_geometry((300, 400), (100, 120), rng, rescale_prob=0.0, fit=True)
    assert fit["scale"] == pytest.approx(3.0)  # the background: fitted (the shorter-fitting side spans the source)

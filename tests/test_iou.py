"""matseg_hub.metrics.iou: the histogram sweep equals the brute-force sweep (``mask = sim > t``), exactly."""

from __future__ import annotations

import numpy as np
import pytest

from matseg_hub.errors import MatSegInputError
from matseg_hub.metrics import iou
from matseg_hub.metrics.iou import DEFAULT_THRESHOLDS, best_iou, iou_sweep, iou_sweep_plain


def brute_force(sim, region, thresholds):
    """The definition, written out: IoU of ``sim > t`` (exact comparison, in float64) with the region."""
    sim = np.asarray(sim, dtype=np.float64)
    region = np.asarray(region, bool)
    out = []
    for t in thresholds:
        mask = sim > t
        inter, union = (mask & region).sum(), (mask | region).sum()
        out.append(inter / union if union else 1.0)
    return np.array(out)


def near_thresholds(thresholds, dtype):
    """Every threshold as ``dtype`` and its two neighbouring values of ``dtype``: where rounding would misplace."""
    t = np.asarray(thresholds, dtype=dtype)
    return np.concatenate([t, np.nextafter(t, dtype(-np.inf)), np.nextafter(t, dtype(np.inf))])


SWEEPS = [DEFAULT_THRESHOLDS, np.linspace(0.0, 1.0, 1001), np.linspace(0.2, 0.8, 61), np.linspace(-1, 1, 201)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sweep", range(len(SWEEPS)))
def test_histogram_sweep_equals_brute_force_on_random_maps(dtype, sweep):
    thresholds = SWEEPS[sweep]
    rng = np.random.default_rng([sweep, np.dtype(dtype).itemsize])
    for trial in range(4):
        h, w = rng.integers(1, 50, 2)
        if trial == 0:  # continuous values, some outside the sweep
            sim = rng.uniform(-1.5, 1.5, (h, w))
        elif trial == 1:  # values exactly on the thresholds and one value of the float type either side
            sim = rng.choice(near_thresholds(thresholds, dtype), size=(h, w))
        elif trial == 2:  # few levels (hard answers), infinities
            sim = rng.choice(np.array([0.0, 1.0, -1.0, 0.5, np.inf, -np.inf]), size=(h, w))
        else:  # float32 renderings of multiples of 0.01 (not the float64 thresholds)
            sim = rng.choice(np.float32(np.arange(-120, 121) / 100), size=(h, w))
        sim = sim.astype(dtype)
        region = rng.random((h, w)) < rng.random()
        expected = brute_force(sim, region, thresholds)
        assert np.array_equal(iou_sweep(sim, region, thresholds), expected), trial
        assert np.array_equal(iou_sweep_plain(sim, region, thresholds), expected), trial


def test_the_arithmetic_path_is_taken_for_float32_sweeps():
    # the buckets of an even float32 sweep come from arithmetic (plus the exact fix at integers), not a search
    for thresholds in SWEEPS:
        assert iou._plan(np.asarray(thresholds, np.float64).tobytes(), "<f4")[1][2] is True
        # float64 maps: the arithmetic bucket, then a comparison with both neighbouring thresholds
        assert iou._plan(np.asarray(thresholds, np.float64).tobytes(), "<f8")[1][2] is False
    # thresholds closer than float32 can tell apart, or uneven ones: the search, still exact
    close = 0.5 + np.arange(5) * 1e-9
    assert iou._plan(close.tobytes(), "<f4")[1] is None
    sim = np.array([[0.5, np.nextafter(np.float32(0.5), np.float32(1))]], np.float32)
    region = np.array([[False, True]])
    assert np.array_equal(iou_sweep(sim, region, close), brute_force(sim, region, close))


def test_maps_larger_than_one_block_and_integer_maps():
    rng = np.random.default_rng(11)
    values = near_thresholds(DEFAULT_THRESHOLDS, np.float32)
    sim = rng.choice(np.concatenate([values, rng.random(50).astype(np.float32)]), size=(300, 301))  # > 65,536 px
    region = rng.random((300, 301)) < 0.4
    assert np.array_equal(iou_sweep(sim, region), brute_force(sim, region, DEFAULT_THRESHOLDS))
    labels = rng.integers(-2, 4, (30, 40))
    assert np.array_equal(iou_sweep(labels, region[:30, :40], [-1, 0, 1, 2.5]),
                          brute_force(labels, region[:30, :40], [-1, 0, 1, 2.5]))
    assert np.array_equal(iou_sweep(region[:30, :40], region[:30, :40], [0.0, 0.5, 1.0]), [1.0, 1.0, 0.0])


def test_evenly_spaced_thresholds_off_the_grid():
    # t0 / step is not an integer (the arithmetic bucket is up to one off), for float32 and float64 maps
    thresholds = 0.005 + np.arange(100) * 0.01
    rng = np.random.default_rng(8)
    for dtype in (np.float32, np.float64):
        sim = rng.choice(np.concatenate([near_thresholds(thresholds, dtype), rng.random(30)]), size=(30, 40))
        sim = sim.astype(dtype)
        region = rng.random((30, 40)) < 0.5
        assert np.array_equal(iou_sweep(sim, region, thresholds), brute_force(sim, region, thresholds))


def test_uneven_thresholds():
    rng = np.random.default_rng(7)
    sim = rng.random((40, 30)).astype(np.float32)
    region = rng.random((40, 30)) < 0.3
    thresholds = [0.0, 0.05, 0.1, 0.5, 0.55, 0.9, 0.999]
    assert np.array_equal(iou_sweep(sim, region, thresholds), brute_force(sim, region, thresholds))


def test_all_inside_and_empty_regions():
    rng = np.random.default_rng(3)
    sim = rng.random((20, 20)).astype(np.float32)
    full = np.ones((20, 20), bool)
    ious = iou_sweep(sim, full)
    np.testing.assert_array_equal(ious, brute_force(sim, full, DEFAULT_THRESHOLDS))
    assert ious[0] == (sim > 0).mean() and ious[-1] == 0.0
    empty = np.zeros((20, 20), bool)
    ious = iou_sweep(sim, empty)
    assert (ious[:-1] == 0).all() and ious[-1] == 1.0  # nothing above 1 and no region: both empty
    assert iou_sweep(np.zeros((0, 5), np.float32), np.zeros((0, 5), bool), [0.5]).tolist() == [1.0]


def test_values_by_hand():
    sim = np.array([[0.9, 0.8, 0.2], [0.1, 0.6, 0.0]])
    region = np.array([[1, 1, 0], [0, 0, 0]], bool)
    ious = iou_sweep(sim, region, [0.0, 0.5, 0.7, 0.85, 0.95])
    # > 0: 5 pixels, 2 of them in the region -> 2/5; > 0.5: 3 -> 2/3; > 0.7: 2 -> 1; > 0.85: 1 -> 1/2; > 0.95: 0
    np.testing.assert_array_equal(ious, [2 / 5, 2 / 3, 1.0, 0.5, 0.0])
    assert best_iou(sim, region, [0.0, 0.5, 0.7, 0.85, 0.95]) == (1.0, 0.7)
    # strictly above: a value equal to the threshold is not in the mask
    assert iou_sweep(np.float32([[0.5, 0.5]]), np.array([[True, False]]), [0.49, 0.5]).tolist() == [0.5, 0.0]


def test_a_perfect_map_scores_one():
    region = np.zeros((20, 20), bool)
    region[5:12, 3:9] = True
    assert best_iou(region.astype(np.float32), region)[0] == 1.0


def test_bad_input_is_typed():
    with pytest.raises(MatSegInputError, match="one shape"):
        iou_sweep(np.zeros((3, 3)), np.zeros((3, 4), bool))
    with pytest.raises(MatSegInputError, match="increasing"):
        iou_sweep(np.zeros((3, 3)), np.zeros((3, 3), bool), [0.5, 0.5])
    with pytest.raises(MatSegInputError, match="finite"):
        iou_sweep(np.zeros((3, 3)), np.zeros((3, 3), bool), [])
    sim = np.zeros((3, 3), np.float32)
    sim[1, 2] = np.nan
    for sweep in (iou_sweep, iou_sweep_plain):
        with pytest.raises(MatSegInputError, match="NaN"):
            sweep(sim, np.zeros((3, 3), bool))
    with pytest.raises(MatSegInputError, match="real-valued"):
        iou_sweep(np.zeros((3, 3), complex), np.zeros((3, 3), bool))


@pytest.mark.parametrize("counter", ["torch", "numpy"])
def test_both_bincounts_give_the_brute_force_counts(monkeypatch, counter):
    """torch's bincount (uint8 / int32 codes) where torch is installed, numpy's (intp codes) where it is not."""
    monkeypatch.setattr(iou, "_counter", (lambda: iou._torch_bincount) if counter == "torch" else (lambda: np.bincount))
    rng = np.random.default_rng(11)
    for thresholds in (DEFAULT_THRESHOLDS, np.linspace(0.0, 1.0, 1001)):  # 202 codes fit uint8, 2002 do not
        sim = rng.uniform(-1.2, 1.2, (300, 400)).astype(np.float32)  # more than one block
        region = rng.random((300, 400)) < 0.4
        assert np.array_equal(iou_sweep(sim, region, thresholds), brute_force(sim, region, thresholds))

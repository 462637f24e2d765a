"""matseg_hub.metrics.iou: the one-pass threshold sweep equals the plain one, exactly."""

from __future__ import annotations

import numpy as np
import pytest

from matseg_hub.errors import MatSegInputError
from matseg_hub.metrics.iou import DEFAULT_THRESHOLDS, best_iou, iou_sweep, iou_sweep_plain


@pytest.mark.parametrize("seed", range(6))
def test_sweep_equals_the_plain_sweep_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 60, 2)
    sim = rng.random((h, w))
    if seed % 2:  # values exactly on the thresholds, and outside [0, 1]
        sim = rng.choice(np.concatenate([DEFAULT_THRESHOLDS, [-0.5, 1.5]]), size=(h, w))
    region = rng.random((h, w)) < rng.random()
    assert np.array_equal(iou_sweep(sim, region), iou_sweep_plain(sim, region))


def test_maps_larger_than_one_block():
    rng = np.random.default_rng(11)
    sim = rng.choice(np.concatenate([DEFAULT_THRESHOLDS, rng.random(50)]), size=(300, 301))  # 90,300 px > 65,536
    region = rng.random((300, 301)) < 0.4
    assert np.array_equal(iou_sweep(sim, region), iou_sweep_plain(sim, region))


def test_uneven_thresholds_nan_and_float32_maps():
    rng = np.random.default_rng(7)
    sim = rng.random((40, 30)).astype(np.float32)
    sim[::7, ::5] = np.nan
    region = rng.random((40, 30)) < 0.3
    thresholds = [0.0, 0.05, 0.1, 0.5, 0.55, 0.9, 0.999]
    assert np.array_equal(iou_sweep(sim, region, thresholds), iou_sweep_plain(sim, region, thresholds))
    grid = np.float32(np.linspace(0, 1, 11))  # float32 values equal to the float64 thresholds
    sim = rng.choice(grid, size=(40, 30))
    assert np.array_equal(iou_sweep(sim, region, np.linspace(0, 1, 11)),
                          iou_sweep_plain(sim, region, np.linspace(0, 1, 11)))


def test_values_by_hand():
    sim = np.array([[0.9, 0.8, 0.2], [0.1, 0.6, 0.0]])
    region = np.array([[1, 1, 0], [0, 0, 0]], bool)
    ious = iou_sweep(sim, region, [0.0, 0.5, 0.7, 0.85, 0.95])
    # > 0: 5 pixels, 2 of them in the region -> 2/5; > 0.5: 3 -> 2/3; > 0.7: 2 -> 1; > 0.85: 1 -> 1/2; > 0.95: 0
    np.testing.assert_array_equal(ious, [2 / 5, 2 / 3, 1.0, 0.5, 0.0])
    assert best_iou(sim, region, [0.0, 0.5, 0.7, 0.85, 0.95]) == (1.0, 0.7)


def test_a_perfect_map_scores_one_and_empty_is_one():
    region = np.zeros((20, 20), bool)
    region[5:12, 3:9] = True
    assert best_iou(region.astype(float), region)[0] == 1.0
    assert iou_sweep(np.zeros((3, 3)), np.zeros((3, 3), bool), [0.5]).tolist() == [1.0]


def test_bad_input_is_typed():
    with pytest.raises(MatSegInputError, match="one shape"):
        iou_sweep(np.zeros((3, 3)), np.zeros((3, 4), bool))
    with pytest.raises(MatSegInputError, match="increasing"):
        iou_sweep(np.zeros((3, 3)), np.zeros((3, 3), bool), [0.5, 0.5])
    with pytest.raises(MatSegInputError, match="finite"):
        iou_sweep(np.zeros((3, 3)), np.zeros((3, 3), bool), [])

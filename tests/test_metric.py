"""Tests of matseg_hub.metrics.triplet against the plain float64 loop reference (bench/_reference_metric.py), hand-computed
cases, the real benchmark sample (rgb / hsv baselines) and every bad input."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from matseg_hub.metrics import triplet as metric
from matseg_hub.errors import MatSegInputError
from matseg_hub.metrics.triplet import (METRIC_KEYS, MODES, aggregate, label_map_descriptors, point_descriptors,
                                        triplet_accuracy)

_REF_PATH = Path(__file__).resolve().parents[1] / "bench" / "_reference_metric.py"
_spec = importlib.util.spec_from_file_location("_reference_metric", _REF_PATH)
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

TOL = 1e-12


def assert_same(fast: dict, slow: dict, context=""):
    assert fast["num_anchors"] == slow["num_anchors"], context
    assert fast["scored"] == (slow["num_anchors"] > 0), context
    for key in METRIC_KEYS:
        if slow[key] is None:
            assert fast[key] is None, (context, key)
        else:
            assert fast[key] is not None, (context, key)
            assert abs(fast[key] - slow[key]) <= TOL, (context, key, fast[key], slow[key])


def unit_rows(x):
    x = np.asarray(x, dtype=np.float64)
    n = np.sqrt((x * x).sum(1, keepdims=True))
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def random_relations(rng, groups, kind):
    """A random similarity in one of the accepted forms, and the group_ids argument it needs."""
    gs = list(dict.fromkeys(groups))
    mat = np.eye(len(gs))
    for i in range(len(gs)):
        for j in range(i + 1, len(gs)):
            mat[i, j] = mat[j, i] = rng.choice([0.0, 0.0, 0.3, 0.6])
    if kind == "none":
        return None, None
    if kind == "dict":
        return {gs[i]: {gs[j]: mat[i, j] for j in range(len(gs)) if j > i and mat[i, j]} for i in range(len(gs))}, None
    perm = rng.permutation(len(gs))
    ids = [gs[i] for i in perm]
    dense = mat[np.ix_(perm, perm)]
    if kind == "dense":
        return dense, ids
    return {"group_ids": ids, "matrix": dense.tolist()}, None


def random_case(rng, case):
    n = int(rng.integers(1, 50))
    n_groups = int(rng.integers(1, 6))
    groups = rng.integers(0, n_groups, n)
    if case % 3 == 0:
        groups = [str(g) for g in groups]  # string ids like the benchmark's
    else:
        groups = groups.tolist()
    depth = int(rng.integers(1, 7))
    style = case % 4
    if style == 0:  # continuous
        desc = rng.normal(size=(n, depth))
    elif style == 1:  # quantised: many exact ties
        desc = rng.integers(-1, 2, size=(n, depth)).astype(np.float64)
    elif style == 2:  # duplicated rows
        base = rng.normal(size=(max(1, n // 3), depth))
        desc = base[rng.integers(0, base.shape[0], n)]
    else:  # duplicated quantised rows and zero rows
        desc = rng.integers(0, 2, size=(n, depth)).astype(np.float64)
    desc[rng.random(n) < 0.05] = 0
    desc = unit_rows(desc)
    if case % 5 == 4:
        desc = desc.astype(np.float32)
    return desc, groups


# ----------------------------------------------------------------------------------------------------------------
# equality with the loop reference
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["none", "dict", "dense", "row"])
def test_triplet_accuracy_equals_loop_reference(kind):
    rng = np.random.default_rng({"none": 1, "dict": 2, "dense": 3, "row": 4}[kind])
    for case in range(120):
        desc, groups = random_case(rng, case)
        sim, ids = random_relations(rng, groups, kind)
        for mode in MODES:
            fast = triplet_accuracy(desc, groups, sim, group_ids=ids, mode=mode)
            slow = ref.reference_triplet_accuracy(desc, groups, sim, group_ids=ids, mode=mode)
            assert_same(fast, slow, (kind, case, mode))


def test_dense_matrix_indexed_by_point_groups():
    rng = np.random.default_rng(5)
    for case in range(40):
        desc, groups = random_case(rng, 1 + 3 * case)  # integer ids
        g = int(max(groups)) + 1
        groups = list(range(g)) + groups  # every matrix row has a point
        desc = np.vstack([unit_rows(rng.normal(size=(g, desc.shape[1]))).astype(desc.dtype), desc])
        mat = np.eye(g)
        iu = np.triu_indices(g, 1)
        mat[iu] = rng.choice([0.0, 0.3, 0.6], size=iu[0].size)
        mat = np.maximum(mat, mat.T)
        for mode in MODES:
            assert_same(triplet_accuracy(desc, np.array(groups), mat, mode=mode),
                        ref.reference_triplet_accuracy(desc, groups, mat, mode=mode), (case, mode))


def test_soft_equals_hard_without_relations():
    # SPEC §3.6; it holds when each anchor is its own first match (no exact ties with the anchor)
    rng = np.random.default_rng(6)
    for case in range(60):
        n = int(rng.integers(2, 50))
        desc = unit_rows(rng.normal(size=(n, int(rng.integers(2, 6)))))
        groups = rng.integers(0, int(rng.integers(1, 5)), n).tolist()
        soft = triplet_accuracy(desc, groups, mode="soft")
        hard = triplet_accuracy(desc, groups, mode="hard")
        assert soft["num_anchors"] == hard["num_anchors"]
        for key in METRIC_KEYS:
            if soft[key] is None or hard[key] is None:
                assert soft[key] is None and hard[key] is None
            else:
                assert abs(soft[key] - hard[key]) <= 1e-12


def test_blocks_give_the_same_numbers(monkeypatch):
    rng = np.random.default_rng(7)
    cases = [random_case(rng, c) for c in range(30)]
    full = [[triplet_accuracy(d, g, mode=m) for m in MODES] for d, g in cases]
    monkeypatch.setattr(metric, "_RANK_BLOCK_CELLS", 37)
    monkeypatch.setattr(metric, "_SIM_BLOCK_ELEMENTS", 50)
    for (d, g), before in zip(cases, full):
        assert [triplet_accuracy(d, g, mode=m) for m in MODES] == before


def test_duplicated_points_break_ties_like_numpy_argsort():
    # four identical descriptors in two groups: the order is numpy's argsort reversed, so the anchor itself
    # is not at position 0; the numbers must still be the reference's
    desc = unit_rows(np.ones((4, 3)))
    groups = ["a", "a", "b", "b"]
    for mode in MODES:
        assert_same(triplet_accuracy(desc, groups, mode=mode),
                    ref.reference_triplet_accuracy(desc, groups, mode=mode), mode)


# ----------------------------------------------------------------------------------------------------------------
# point descriptors
# ----------------------------------------------------------------------------------------------------------------
def random_points(rng, n, height, width, max_radius):
    return np.stack([rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, max_radius + 1, n)], 1)


def test_disc_equals_full_size_cv2_circle():
    """Also for centres on, past and far past the border: the crop equals cv2.circle's clipped full-size disc."""
    rng = np.random.default_rng(8)
    for case in range(1500):
        height, width = (int(v) for v in rng.integers(1, 70, 2))
        r = int(rng.integers(0, 60))
        lo, hi = (0, 0) if case < 500 else (-r - 3, r + 3)
        x, y = int(rng.integers(lo, width + hi)), int(rng.integers(lo, height + hi))
        full = np.zeros((height, width), np.uint8)
        cv2.circle(full, (x, y), r, 1, thickness=-1)
        y0, y1, x0, x1, mask = metric._disc(np.array([x, y, r]), height, width)
        assert full.sum() == mask.sum(), (x, y, r, height, width)
        assert (full[y0:y1, x0:x1] == mask).all()
        assert (metric.discs_outside_map([[x, y, r]], height, width).size == 1) == (full.sum() == 0)


def test_discs_on_and_past_the_border_are_clipped_like_cv2_circle():
    """A point rounded onto x = W (a photo's last column at evaluation size) keeps the pixels of its disc that lie
    inside, exactly as the reference's full-size cv2.circle mask; only a disc with no pixel inside is refused."""
    rng = np.random.default_rng(12)
    height, width = 30, 40
    fmap = rng.normal(size=(height, width, 4))
    pts = np.array([[width, 10, 3], [0, height, 2], [width, height, 5], [-1, 0, 1], [width - 1, height - 1, 0],
                    [width + 2, 5, 4], [20, -3, 9]])
    fast = point_descriptors(fmap, pts)
    slow = ref.reference_point_descriptors(fmap, pts)
    assert np.abs(fast - slow).max() <= TOL
    assert np.isfinite(fast).all() and (np.abs(np.linalg.norm(fast, axis=1) - 1) < 1e-12).all()
    labels = (np.arange(width)[None, :] // 10 + np.zeros((height, 1), int))
    one_hot = (labels[:, :, None] == np.arange(4)).astype(np.float64)
    assert np.abs(label_map_descriptors(labels, pts) - ref.reference_point_descriptors(one_hot, pts)).max() <= TOL
    for outside in ([width + 3, 5, 3], [width + 2, height + 2, 2], [-1, 5, 0], [5, height, 0]):
        with pytest.raises(MatSegInputError, match=r"points\[1\] = \[.*no pixel inside the 40x30"):
            point_descriptors(fmap, [[1, 1, 1], outside])
        assert metric.discs_outside_map([[1, 1, 1], outside], height, width).tolist() == [1]


def test_huge_point_values_are_refused_before_drawing():
    """A radius of 1e12 made cv2.circle raise cv2.error; values beyond MAX_POINT_VALUE are a typed error."""
    for pts in ([[1, 1, 1e12]], [[1e12, 1, 2]], [[1, 1, 10 ** 15]]):
        with pytest.raises(MatSegInputError, match=r"points\[0\].*beyond \+-1048576"):
            point_descriptors(FMAP, pts)
    big = metric.MAX_POINT_VALUE
    desc = point_descriptors(FMAP, [[1, 1, big], [-big + 30, 5, big]])  # drawable: covers the map / its left part
    assert np.isfinite(desc).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.uint8])
def test_point_descriptors_equal_loop_reference(dtype):
    rng = np.random.default_rng(9)
    for case in range(8):
        height, width, depth = int(rng.integers(5, 60)), int(rng.integers(5, 60)), int(rng.integers(1, 9))
        fmap = rng.normal(size=(height, width, depth)) * 10
        if dtype == np.uint8:
            fmap = rng.integers(0, 256, size=(height, width, depth))
        fmap = fmap.astype(dtype)
        fmap[: height // 3, : width // 3] = 0  # all-zero pixels stay zero
        pts = random_points(rng, 30, height, width, 20)
        pts[0] = [1, 1, 0]  # a point inside the zero region: zero descriptor
        pts[1] = pts[2]  # duplicated point: identical descriptors
        fast = point_descriptors(fmap, pts)
        slow = ref.reference_point_descriptors(fmap, pts)
        assert fast.dtype == np.float64 and fast.shape == (30, depth)
        assert np.abs(fast - slow).max() <= TOL
        assert (fast[0] == 0).all() and (fast[1] == fast[2]).all()
        assert not np.isnan(fast).any()


def test_end_to_end_from_feature_maps_equals_reference():
    rng = np.random.default_rng(10)
    for case in range(40):
        height, width, depth = int(rng.integers(8, 40)), int(rng.integers(8, 40)), int(rng.integers(1, 5))
        fmap = rng.integers(0, 3, size=(height, width, depth)).astype(np.float32)  # coarse: ties
        pts = random_points(rng, int(rng.integers(1, 30)), height, width, 6)
        groups = [str(g) for g in rng.integers(0, 4, len(pts))]
        sim, ids = random_relations(rng, groups, "dict")
        fast_d = point_descriptors(fmap, pts)
        slow_d = ref.reference_point_descriptors(fmap, pts)
        for mode in MODES:
            assert_same(triplet_accuracy(fast_d, groups, sim, mode=mode),
                        ref.reference_triplet_accuracy(slow_d, groups, sim, mode=mode), (case, mode))


def test_label_map_descriptors_equal_one_hot_reference():
    rng = np.random.default_rng(11)
    for case in range(10):
        height, width = int(rng.integers(5, 50)), int(rng.integers(5, 50))
        lab = rng.integers(-1, 4, size=(height, width)) * 7
        pts = random_points(rng, 25, height, width, 12)
        fast = label_map_descriptors(lab, pts)
        slow = ref.reference_point_descriptors(lab, pts)
        assert np.abs(fast - slow).max() <= TOL
        assert np.array_equal(point_descriptors(lab, pts), fast)  # a 2-D int map is a label map
        groups = rng.integers(0, 3, 25).tolist()
        for mode in MODES:
            assert_same(triplet_accuracy(fast, groups, mode=mode),
                        ref.reference_triplet_accuracy(slow, groups, mode=mode))


def test_label_map_with_explicit_labels_and_perfect_segmentation():
    lab = np.zeros((20, 30), np.int64)
    lab[:, 15:] = 5
    pts = np.array([[3, 3, 2], [10, 15, 3], [20, 4, 2], [27, 17, 1]])
    desc = label_map_descriptors(lab, pts, labels=[5, 0, 9])
    assert np.array_equal(desc, [[0, 1, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]])
    result = triplet_accuracy(desc, ["wood", "wood", "rust", "rust"])
    assert all(result[k] == 1.0 for k in METRIC_KEYS)
    with pytest.raises(MatSegInputError, match="not in labels"):
        label_map_descriptors(lab, pts, labels=[0])


def test_float_points_are_rounded_half_to_even_and_torch_is_accepted():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    fmap = rng.normal(size=(30, 30, 4)).astype(np.float32)
    pts = np.array([[2.5, 3.5, 1.5], [10.2, 11.7, 2.49]])
    expected = point_descriptors(fmap, np.array([[2, 4, 2], [10, 12, 2]]))
    assert np.array_equal(point_descriptors(fmap, pts), expected)
    assert np.array_equal(point_descriptors(torch.from_numpy(fmap), torch.from_numpy(pts)), expected)


def test_low_precision_inputs():
    torch = pytest.importorskip("torch")
    fmap = torch.randn(20, 24, 64, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    pts = np.array([[3, 4, 2], [20, 10, 5], [12, 18, 3], [5, 15, 4]])
    desc = point_descriptors(fmap, pts)
    assert np.array_equal(desc, point_descriptors(fmap.float().numpy(), pts))
    half = triplet_accuracy(desc.astype(np.float16), [0, 1, 0, 1])  # float16 rows are unit only to ~1e-3
    assert half["scored"] and half["num_anchors"] == 4


def test_zero_descriptor_is_reported(caplog):
    fmap = np.ones((10, 10, 2))
    fmap[:4, :4] = 0
    with caplog.at_level(logging.WARNING, logger="matseg_hub"):
        desc = point_descriptors(fmap, [[1, 1, 1], [7, 7, 1], [8, 8, 1]])
    assert "sum to zero" in caplog.text
    assert (desc[0] == 0).all()
    result = triplet_accuracy(desc, [1, 2, 2])
    assert result["num_zero_descriptors"] == 1
    assert all(result[k] is not None and np.isfinite(result[k]) for k in METRIC_KEYS)


# ----------------------------------------------------------------------------------------------------------------
# hand-computed cases
# ----------------------------------------------------------------------------------------------------------------
def angles(*degrees):
    rad = np.deg2rad(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], 1)


def test_perfect_descriptors_score_one():
    desc = np.repeat(np.eye(3), [3, 1, 4], axis=0)
    groups = [0, 0, 0, 1, 2, 2, 2, 2]
    for mode in ("soft", "hard"):
        result = triplet_accuracy(desc, groups, mode=mode)
        assert all(result[k] == 1.0 for k in METRIC_KEYS)
    for mode in MODES[:2]:  # the 1-point group's anchor has nothing to rank in either mode
        assert triplet_accuracy(desc, groups, mode=mode)["num_anchors"] == 7


def test_hand_computed_hard_mode():
    # A: 0deg, 90deg; B: 30deg, 120deg. Orders: p0 -> A B A B (0.5), p1 -> A B B A (0), p2 -> B A A B (0),
    # p3 -> B A B A (0.5); no first match is of the same group.
    result = triplet_accuracy(angles(0, 90, 30, 120), ["A", "A", "B", "B"], mode="hard")
    assert result["point_triplet"] == pytest.approx(0.25, abs=1e-15)
    assert result["material_triplet"] == pytest.approx(0.25, abs=1e-15)
    assert result["point_top1"] == 0.0 and result["material_top1"] == 0.0
    assert result["num_anchors"] == 4


def test_hand_computed_soft_modes():
    # p0 A 0deg, p1 A 60deg, p2 B 20deg, p3 C 150deg; A-B similarity 0.6, the rest 0.
    # soft: p0 and p1 rank (A, B, A, C) -> weights (1, .6, 1, 0) -> (1/2 + 1/2 + 1)/3 = 2/3, top-1 no;
    # p2 ranks (B, A, A, C) -> (1, .6, .6, 0) -> 1, top-1 yes; p3 has nothing to compare (all 0) -> skipped.
    desc, groups = angles(0, 60, 20, 150), ["A", "A", "B", "C"]
    sim = {"A": {"B": 0.6}}
    soft = triplet_accuracy(desc, groups, sim, mode="soft")
    assert soft["num_anchors"] == 3
    assert soft["point_triplet"] == pytest.approx(7 / 9, abs=1e-15)
    assert soft["material_triplet"] == pytest.approx(5 / 6, abs=1e-15)
    assert soft["point_top1"] == pytest.approx(1 / 3, abs=1e-15)
    assert soft["material_top1"] == pytest.approx(1 / 2, abs=1e-15)
    # hard: p0, p1 -> same flags (1, 0, 1, 0) -> 1/2 each; B and C have one point -> skipped
    hard = triplet_accuracy(desc, groups, sim, mode="hard")
    assert (hard["num_anchors"], hard["point_triplet"], hard["material_triplet"]) == (2, 0.5, 0.5)
    assert hard["point_top1"] == 0.0
    # soft only: only positions of weight 0.6 count: p0, p1 -> 1/2, p2 -> 1
    only = triplet_accuracy(desc, groups, sim, mode="soft_only")
    assert only["point_triplet"] == pytest.approx(2 / 3, abs=1e-15)
    assert only["material_triplet"] == pytest.approx(3 / 4, abs=1e-15)
    # the same relation as a dense matrix in another order, and as a stored row
    mat = np.array([[1, 0, 0], [0, 1, 0.6], [0, 0.6, 1]])
    assert triplet_accuracy(desc, groups, mat, group_ids=["C", "A", "B"]) == soft
    assert triplet_accuracy(desc, groups, {"group_ids": ["C", "A", "B"], "matrix": mat.tolist()}) == soft


def test_image_without_scorable_anchor_is_skipped_and_aggregate_counts_it():
    one_group = triplet_accuracy(angles(0, 10, 20), ["x", "x", "x"], mode="soft")
    assert one_group["scored"] is False and one_group["num_anchors"] == 0
    assert all(one_group[k] is None for k in METRIC_KEYS)
    assert triplet_accuracy(angles(0, 10, 20), ["x", "x", "x"], mode="hard")["scored"] is False
    assert triplet_accuracy(angles(0), ["x"])["scored"] is False
    a = triplet_accuracy(angles(0, 60, 20, 150), ["A", "A", "B", "C"], {"A": {"B": 0.6}})
    b = triplet_accuracy(angles(0, 90, 30, 120), ["A", "A", "B", "B"])
    total = aggregate([a, one_group, b])
    assert total["num_images"] == 3 and total["num_scored_images"] == 2 and total["num_skipped_images"] == 1
    assert total["point_triplet"] == pytest.approx((7 / 9 + 0.25) / 2, abs=1e-15)
    assert total["material_top1"] == pytest.approx((0.5 + 0.0) / 2, abs=1e-15)
    assert total["num_anchors"] == 7 and total["mode"] == "soft"
    empty = aggregate([one_group])
    assert empty["num_scored_images"] == 0 and all(empty[k] is None for k in METRIC_KEYS)


def test_aggregate_rejects_bad_input():
    with pytest.raises(MatSegInputError, match="at least one"):
        aggregate([])
    soft = triplet_accuracy(angles(0, 90), ["a", "b"], mode="soft")
    hard = triplet_accuracy(angles(0, 90), ["a", "b"], mode="hard")
    with pytest.raises(MatSegInputError, match="different modes"):
        aggregate([soft, hard])
    with pytest.raises(MatSegInputError, match="not a triplet_accuracy result"):
        aggregate([{"mode": "soft"}])


# ----------------------------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------------------------
FMAP = np.ones((10, 12, 3), np.float32)
GOOD_PTS = [[1, 1, 1], [5, 5, 2]]


@pytest.mark.parametrize("fmap, pts, match", [
    (np.ones((10, 12)), GOOD_PTS, "single-channel"),
    (np.ones(10), GOOD_PTS, r"\[H, W, D\]"),
    (np.ones((1, 10, 12, 3)), GOOD_PTS, r"\[H, W, D\]"),
    (np.ones((0, 12, 3)), GOOD_PTS, "empty"),
    (np.full((10, 12, 3), np.nan), GOOD_PTS, "NaN/inf"),
    (np.where(np.arange(3) == 1, np.inf, 1.0) * np.ones((10, 12, 3)), GOOD_PTS, r"NaN/inf.*index \(0, 0, 1\)"),
    (np.array([["a"]]), GOOD_PTS, "real numbers"),
    (FMAP, [[1, 1, 1], [14, 5, 2]], r"points\[1\] = \[14, 5, 2\].*no pixel inside the 12x10"),
    (FMAP, [[1, -2, 1]], r"points\[0\].*no pixel inside"),
    (FMAP, np.zeros((0, 3)), "points is empty"),
    (FMAP, [[1, 1]], r"shape \[N, 3\]"),
    (FMAP, [[1, 1, -2]], "negative radius"),
    (FMAP, [[1, np.nan, 2]], "not finite"),
    (FMAP, [[1, 1, 1], [2, 2]], "inhomogeneous"),
])
def test_point_descriptors_bad_input(fmap, pts, match):
    with pytest.raises(MatSegInputError, match=match):
        point_descriptors(fmap, pts)


def test_label_map_bad_input():
    with pytest.raises(MatSegInputError, match="integer segment ids"):
        label_map_descriptors(np.ones((4, 4)), [[1, 1, 1]])
    with pytest.raises(MatSegInputError, match=r"\[H, W\]"):
        label_map_descriptors(np.ones((4, 4, 1), int), [[1, 1, 1]])
    with pytest.raises(MatSegInputError, match="no pixel inside"):
        label_map_descriptors(np.ones((4, 4), int), [[5, 1, 1]])


DESC = angles(0, 60, 20, 150)
GROUPS = ["A", "A", "B", "C"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(descriptors=DESC[:, 0]), r"\[N, D\]"),
    (dict(descriptors=np.zeros((0, 2))), "empty"),
    (dict(descriptors=np.where(np.eye(4, 2) > 0, np.nan, DESC)), "NaN/inf"),
    (dict(descriptors=DESC * 2), r"descriptors\[0\] has L2 norm 2.*normalize=True"),
    (dict(point_groups=GROUPS[:3]), "3 entries but descriptors has 4 rows"),
    (dict(point_groups=5), "sequence of group ids"),
    (dict(point_groups=[["A"], ["A"], ["B"], ["C"]]), "not a valid group id"),
    (dict(mode="fuzzy"), "mode must be one of"),
    (dict(group_similarity={"A": {"D": 0.3}}), "group 'D', which has no point"),
    (dict(group_similarity={"Z": {"A": 0.3}}), "group 'Z', which has no point"),
    (dict(group_similarity={"A": {1: 0.3}}), "'1' vs 1"),
    (dict(group_similarity={"A": {"B": 1.3}}), r"must be in \[0, 1\]"),
    (dict(group_similarity={"A": {"B": "x"}}), "not a number"),
    (dict(group_similarity={"A": {"A": 0.5}}), "itself is 1"),
    (dict(group_similarity={"A": {"B": 0.3}, "B": {"A": 0.6}}), "symmetric"),
    (dict(group_similarity={"A": 0.3}), "must be a dict"),
    (dict(group_similarity=np.eye(3)), "not a row index"),
    (dict(group_similarity=np.eye(3), group_ids=["A", "B"]), "2 entries but group_similarity is 3x3"),
    (dict(group_similarity=np.eye(3), group_ids=["A", "B", "B"]), "repeated"),
    (dict(group_similarity=np.eye(3), group_ids=["A", "B", "D"]), "point group 'C' is not in group_ids"),
    (dict(group_similarity=np.eye(4), group_ids=["A", "B", "C", "D"]), "group 'D', which has no point"),
    (dict(group_similarity=np.ones((3, 2)), group_ids=["A", "B", "C"]), "square"),
    (dict(group_similarity=np.eye(3) * 0.5, group_ids=["A", "B", "C"]), "diagonal"),
    (dict(group_similarity=np.triu(np.ones((3, 3))) * 0.5 + np.eye(3) * 0.5, group_ids=["A", "B", "C"]),
     "symmetric"),
    (dict(group_similarity=np.eye(3), group_ids=["A", "B", "C"], mode="hard", point_groups=["A", "A", "B", "D"]),
     "point group 'D' is not in group_ids"),
    (dict(group_similarity={"A": {"B": 0.3}}, group_ids=["A", "B"]), "only used with a dense"),
])
def test_triplet_accuracy_bad_input(kwargs, match):
    args = dict(descriptors=DESC, point_groups=GROUPS)
    args.update(kwargs)
    with pytest.raises(MatSegInputError, match=match):
        triplet_accuracy(**args)


def test_normalize_option():
    raw = DESC * np.array([[2.0], [0.5], [3.0], [1.0]])
    assert triplet_accuracy(raw, GROUPS, normalize=True) == triplet_accuracy(DESC, GROUPS)


# ----------------------------------------------------------------------------------------------------------------
# real data: the reference's rgb / hsv baselines on the benchmark sample
# ----------------------------------------------------------------------------------------------------------------
def _load_sample(root: Path, stem: str):
    """The reference reader's few steps: cv2.imread (EXIF applied, BGR), bilinear resize to a longer side of 700,
    points divided by the ratio and rounded half to even."""
    image = cv2.imread(str(root / "images" / f"{stem}.jpg"))
    data = json.loads((root / "data" / stem / "data.json").read_text())
    height, width = image.shape[:2]
    rat = max(height, width) / 700
    if rat > 1:
        image = cv2.resize(image, (int(width / rat), int(height / rat)))
    points, groups = [], []
    for group, value in data.items():
        for p in value["pt_im"]:
            points.append(np.round(np.asarray(p) / max(rat, 1)))
            groups.append(group)
    return image, np.array(points).astype(np.int64), groups


@pytest.mark.parametrize("baseline, expected", [
    ("rgb", (0.94677, 0.95170, 1.0, 1.0)),
    ("hsv", (0.63159, 0.63593, 0.91892, 0.92121)),
])
def test_benchmark_sample_baselines(shared_data, baseline, expected):
    root = shared_data / "matseg_benchmark_sample"
    if not (root / "images" / "20230913_185027.jpg").is_file():
        pytest.skip(f"benchmark sample not found under {root}")
    image, points, groups = _load_sample(root, "20230913_185027")
    assert image.shape == (700, 525, 3)
    fmap = image if baseline == "rgb" else cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.float64)
    desc = point_descriptors(fmap, points)
    for mode in ("soft", "hard"):  # no relations: both modes are the published (soft) numbers
        result = triplet_accuracy(desc, groups, mode=mode)
        got = tuple(result[k] for k in METRIC_KEYS)
        assert got == pytest.approx(expected, abs=5e-6), (mode, got)
    assert_same(triplet_accuracy(desc, groups),
                ref.reference_triplet_accuracy(ref.reference_point_descriptors(fmap, points), groups))


@pytest.mark.parametrize("baseline, expected", [
    ("rgb", (0.94677, 0.95170, 1.0, 1.0)),
    ("hsv", (0.63159, 0.63593, 0.91892, 0.92121)),
])
def test_benchmark_sample_baselines_through_the_benchmark_reader(shared_data, baseline, expected):
    benchmark = pytest.importorskip("matseg_hub.benchmark.format")
    root = shared_data / "matseg_benchmark_sample"
    if not (root / "images" / "20230913_185027.jpg").is_file():
        pytest.skip(f"benchmark sample not found under {root}")
    item = benchmark.read_benchmark_item(root, "20230913_185027").for_evaluation()
    bgr = np.ascontiguousarray(item.image[..., ::-1])  # the reference reads BGR (cv2.imread)
    fmap = bgr if baseline == "rgb" else cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV).astype(np.float64)
    result = triplet_accuracy(point_descriptors(fmap, item.points), item.point_groups, item.group_similarity)
    assert tuple(result[k] for k in METRIC_KEYS) == pytest.approx(expected, abs=5e-6)

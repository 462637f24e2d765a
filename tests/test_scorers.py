"""The one model interface (matseg_hub.models.scorers) and the triplet paths it feeds: per-anchor similarity rows
of promptable models, points left out of an anchor's ranking, and the two rules for tied similarities."""

from __future__ import annotations

import numpy as np
import pytest

from matseg_hub.benchmark.evaluation import evaluate_benchmark
from matseg_hub.errors import MatSegInputError
from matseg_hub.metrics.triplet import score_images, triplet_accuracy
from matseg_hub.models.scorers import (DescriptorScorer, Prompt, PromptableScorer, SCORER_LOADERS, anchor_prompts,
                                       disc_means, point_similarities, register_scorer, resolve_scorer)

KEYS = ("point_triplet", "material_triplet", "point_top1", "material_top1")


def _random_image(n=12, d=6, groups=3, seed=0):
    rng = np.random.default_rng(seed)
    desc = rng.normal(size=(n, d))
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    point_groups = rng.integers(0, groups, size=n)
    point_groups[:groups] = np.arange(groups)
    sim = np.eye(groups)
    sim[0, 1] = sim[1, 0] = 0.3
    sim[1, 2] = sim[2, 1] = 0.6
    return desc, point_groups, sim


@pytest.mark.parametrize("mode", ["soft", "hard", "soft_only"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_ties_equal_the_reference_order_without_ties(mode, seed):
    desc, groups, sim = _random_image(seed=seed)
    first = triplet_accuracy(desc, groups, sim, mode=mode)
    average = triplet_accuracy(desc, groups, sim, mode=mode, ties="average")
    for key in KEYS:
        assert average[key] == pytest.approx(first[key], abs=1e-12), key


@pytest.mark.parametrize("mode", ["soft", "hard", "soft_only"])
@pytest.mark.parametrize("ties", ["first", "average"])
def test_similarity_rows_equal_the_descriptor_path(mode, ties):
    desc, groups, sim = _random_image(n=15, seed=3)
    rows = desc @ desc.T
    from_desc = triplet_accuracy(desc, groups, sim, mode=mode, ties=ties)
    from_rows = triplet_accuracy(None, groups, sim, mode=mode, ties=ties, similarities=rows)
    for key in KEYS:
        assert from_rows[key] == pytest.approx(from_desc[key], abs=1e-12), key
    assert from_rows["num_anchors"] == from_desc["num_anchors"]


def _rows_with_one_wrong_anchor():
    """Points a1, a2 (group a), b1, b2 (group b); every anchor ranks perfectly except a1, which puts b1 first."""
    groups = ["a", "a", "b", "b"]
    rows = np.array([[0.0, 0.1, 0.9, 0.05],
                     [0.9, 0.0, 0.1, 0.1],
                     [0.1, 0.1, 0.0, 0.9],
                     [0.1, 0.1, 0.9, 0.0]])
    return groups, rows


def test_excluded_points_leave_the_anchors_ranking():
    groups, rows = _rows_with_one_wrong_anchor()
    # a1's ranking: b1, a2, b2 -> a2 has one of two other-group points before it: 1 - 1/2
    plain = triplet_accuracy(None, groups, mode="hard", similarities=rows)
    assert plain["point_triplet"] == pytest.approx((0.5 + 3) / 4)
    exclude = np.zeros((4, 4), dtype=bool)
    exclude[0, 2] = True
    left_out = triplet_accuracy(None, groups, mode="hard", similarities=rows, exclude=exclude)
    assert left_out["point_triplet"] == 1.0
    with_nan = rows.copy()
    with_nan[0, 2] = np.nan
    assert triplet_accuracy(None, groups, mode="hard", similarities=with_nan)["point_triplet"] == 1.0


def test_the_anchor_is_ranked_first_whatever_its_own_similarity():
    groups, rows = _rows_with_one_wrong_anchor()
    low_diagonal = rows.copy()
    np.fill_diagonal(low_diagonal, -5.0)  # a promptable model need not give the anchor the top value
    assert triplet_accuracy(None, groups, mode="hard", similarities=low_diagonal) == \
        triplet_accuracy(None, groups, mode="hard", similarities=rows)


def test_average_ties_count_a_tie_as_half():
    groups = ["a", "a", "b"]
    rows = np.array([[0.0, 0.5, 0.5],
                     [0.5, 0.0, 0.5],
                     [0.2, 0.2, 0.0]])
    out = triplet_accuracy(None, groups, mode="hard", ties="average", similarities=rows)
    # a1 and a2: the other a-point ties with b1 -> 1 - 0.5/1; top-1: one of the two tied best is right -> 0.5.
    # b1 has no other b-point: not scored.
    assert out["num_anchors"] == 2
    assert out["point_triplet"] == pytest.approx(0.5)
    assert out["point_top1"] == pytest.approx(0.5)


def test_a_constant_label_map_scores_exactly_half_with_average_ties():
    """A hard segmentation that puts everything in one segment knows nothing: 0.5 under ties="average"."""

    def one_segment(image):
        return np.zeros(image.shape[:2], dtype=np.int64)

    out = evaluate_benchmark(None, one_segment, mode="hard", max_size=256, ties="average", show_progress=False)
    assert out["mean"]["point_triplet"] == pytest.approx(0.5)
    assert out["ties"] == "average" and out["task"] == "triplet" and out["scorer"]["kind"] == "descriptor"


def test_unknown_ties_rule_is_a_typed_error():
    desc, groups, sim = _random_image()
    with pytest.raises(MatSegInputError, match="ties"):
        triplet_accuracy(desc, groups, sim, ties="random")
    with pytest.raises(MatSegInputError, match="ties"):
        evaluate_benchmark(None, "rgb", ties="random")


def test_similarity_rows_bad_input():
    with pytest.raises(MatSegInputError, match="square"):
        triplet_accuracy(None, ["a", "b"], similarities=np.zeros((2, 3)))
    with pytest.raises(MatSegInputError, match="not both"):
        triplet_accuracy(np.eye(2), ["a", "b"], similarities=np.zeros((2, 2)))
    with pytest.raises(MatSegInputError, match="inf"):
        triplet_accuracy(None, ["a", "b"], similarities=np.array([[0, np.inf], [0, 0]]))
    with pytest.raises(MatSegInputError, match="shape"):
        triplet_accuracy(None, ["a", "b"], similarities=np.zeros((2, 2)), exclude=np.zeros((3, 3), bool))


def test_score_images_takes_similarity_rows():
    groups, rows = _rows_with_one_wrong_anchor()
    score, _ = score_images([rows, rows], [groups, groups], mode="hard", similarities=True)
    assert score["point_triplet"] == pytest.approx((0.5 + 3) / 4) and score["num_images"] == 2


# ---------------------------------------------------------------------------------------------------- prompts
def test_anchor_prompts_draw_extra_points_of_the_anchors_group():
    points = np.array([[i * 5, i * 3, 2] for i in range(9)])
    groups = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    prompts, exclude = anchor_prompts(points, groups, prompt_points=3, negative_points=2,
                                      rng=np.random.default_rng(7))
    for a, prompt in enumerate(prompts):
        assert prompt.positive[0].tolist() == points[a].tolist()
        members = {tuple(p) for p in points[groups == groups[a]].tolist()}
        extra = [tuple(p) for p in prompt.positive[1:].tolist()]
        assert len(extra) == min(2, (groups == groups[a]).sum() - 1) and len(set(extra)) == len(extra)
        assert set(extra) <= members - {tuple(points[a])}
        assert all(groups[j] != groups[a] for j in np.flatnonzero(exclude[a])
                   if tuple(points[j]) in {tuple(p) for p in prompt.negative.tolist()})
        assert len(prompt.negative) == 2
        assert exclude[a].sum() == len(extra) + len(prompt.negative) and not exclude[a, a]
    again, _ = anchor_prompts(points, groups, prompt_points=3, negative_points=2, rng=np.random.default_rng(7))
    assert all((p.positive == q.positive).all() for p, q in zip(prompts, again))


def test_one_point_prompts_need_no_rng_and_leave_nothing_out():
    points = np.array([[1, 1, 1], [5, 5, 1]])
    prompts, exclude = anchor_prompts(points, np.array([0, 1]))
    assert not exclude.any() and [p.positive.tolist() for p in prompts] == [[[1, 1, 1]], [[5, 5, 1]]]
    with pytest.raises(MatSegInputError, match="rng"):
        anchor_prompts(points, np.array([0, 0]), prompt_points=2)


def test_disc_means_average_each_disc():
    maps = np.zeros((2, 20, 20), dtype=np.float32)
    maps[0, :, 10:] = 1
    maps[1] = 0.25
    out = disc_means(maps, np.array([[15, 5, 2], [4, 4, 1], [10, 10, 0]]))
    np.testing.assert_allclose(out, [[1, 0, 1], [0.25, 0.25, 0.25]])
    with pytest.raises(MatSegInputError, match="no pixel"):
        disc_means(maps, np.array([[-50, 5, 2]]))


def test_descriptor_scorer_similarity_is_the_cosine_to_the_prompted_material():
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    image[:, :5] = (200, 0, 0)
    image[:, 5:] = (0, 0, 200)
    scorer = resolve_scorer("rgb")
    scorer.set_image(image)
    maps = scorer.similarity_maps([Prompt.of([[1, 1, 1]]), Prompt.of([[8, 8, 1], [7, 2, 1]])])
    assert maps.shape == (2, 10, 10) and maps.dtype == np.float32
    np.testing.assert_allclose(maps[0, :, :5], 1, atol=1e-6)
    np.testing.assert_allclose(maps[0, :, 5:], 0, atol=1e-6)
    np.testing.assert_allclose(maps[1, :, 5:], 1, atol=1e-6)


class _PromptDiscs(PromptableScorer):
    """Answers 1 on the prompt's own discs and 0 elsewhere: knows nothing but the prompt."""

    def set_image(self, image):
        self.shape = image.shape[:2]

    def similarity_maps(self, prompts):
        import cv2

        out = np.zeros((len(prompts),) + self.shape, dtype=np.float32)
        for i, prompt in enumerate(prompts):
            for x, y, r in prompt.positive:
                cv2.circle(out[i], (int(x), int(y)), int(r), 1.0, thickness=-1)
        return out


def test_a_promptable_model_gets_no_free_answers_from_its_prompt_points():
    """With the anchor's other prompt points left out, a model that only echoes the prompt scores exactly 0.5
    (all remaining points tie). Counting them would score it above 0.5."""
    for k in (1, 2, 4):
        out = evaluate_benchmark(None, _PromptDiscs("echo", prompt_points=k), mode="hard", max_size=256,
                                 ties="average", show_progress=False)
        assert out["mean"]["point_triplet"] == pytest.approx(0.5), k
        assert out["scorer"] == {"name": "echo", "kind": "promptable", "prompt_points": k, "negative_points": 0}


def test_point_similarities_match_a_per_anchor_loop():
    from matseg_hub.benchmark.format import builtin_benchmark_dir, read_benchmark_item

    item = read_benchmark_item(builtin_benchmark_dir(), "20230913_185027").for_evaluation(max_size=200)
    scorer = _PromptDiscs("echo", prompt_points=2)
    scorer.set_image(item.image)
    rows, exclude = point_similarities(scorer, item.points, item.point_groups, rng=np.random.default_rng(3), batch=5)
    prompts, exclude2 = anchor_prompts(item.points, item.point_groups, prompt_points=2, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(exclude, exclude2)
    for a, prompt in enumerate(prompts):
        np.testing.assert_allclose(rows[a], disc_means(scorer.similarity_maps([prompt]), item.points)[0])


def test_prompt_seed_changes_which_points_are_drawn():
    class Recorder(_PromptDiscs):
        def similarity_maps(self, prompts):
            self.seen = getattr(self, "seen", []) + [p.positive.tolist() for p in prompts]
            return super().similarity_maps(prompts)

    seen = []
    for seed in (0, 0, 1):
        scorer = Recorder("rec", prompt_points=3)
        evaluate_benchmark(None, scorer, max_size=256, seed=seed, show_progress=False)
        seen.append(scorer.seen)
    assert seen[0] == seen[1] and seen[0] != seen[2]


# ---------------------------------------------------------------------------------------------------- specs
def test_register_scorer_adds_a_model_kind(monkeypatch):
    monkeypatch.setitem(SCORER_LOADERS, "blue:", SCORER_LOADERS.get("blue:"))
    register_scorer("blue:", lambda target, device=None, **_: DescriptorScorer(
        lambda im: im[..., 2:].astype(np.float32) + float(target), f"blue:{target}"))
    scorer = resolve_scorer("blue:1")
    assert scorer.name == "blue:1" and scorer.kind == "descriptor"
    out = evaluate_benchmark(None, "blue:1", max_size=128, show_progress=False)
    assert out["model"] == "blue:1" and 0 <= out["mean"]["point_triplet"] <= 1
    with pytest.raises(MatSegInputError, match="prefix"):
        register_scorer("blue", lambda *a, **k: None)


@pytest.mark.parametrize("spec, message", [("nonsense", "unknown model"), ("sam:", "names no model"),
                                           ("features:", "names no model")])
def test_bad_specs_are_typed_errors(spec, message):
    with pytest.raises(MatSegInputError, match=message):
        resolve_scorer(spec)


def test_a_descriptor_map_of_the_wrong_size_is_a_typed_error():
    scorer = DescriptorScorer(lambda im: np.zeros((3, 3, 2), np.float32), "tiny")
    scorer.set_image(np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(MatSegInputError, match="shape"):
        scorer.descriptor_map()


def test_several_modes_come_from_one_model_pass_per_image():
    calls = []

    def counted_hsv(image):
        calls.append(image.shape)
        return resolve_scorer("hsv").fn(image)

    runs = evaluate_benchmark(None, counted_hsv, mode=["soft", "hard", "soft_only"], max_size=256,
                              show_progress=False)
    assert len(calls) == 1 and [r["mode"] for r in runs] == ["soft", "hard", "soft_only"]
    for run in runs:
        alone = evaluate_benchmark(None, "hsv", mode=run["mode"], max_size=256, show_progress=False)
        assert run["mean"] == alone["mean"] and run["images"] == alone["images"]
    with pytest.raises(MatSegInputError, match="mode"):
        evaluate_benchmark(None, "hsv", mode=["soft", "soft"])


@pytest.mark.parametrize("image", [np.zeros((0, 5, 3), np.uint8), np.zeros((4, 0, 3), np.uint8),
                                   np.zeros((4, 5, 3), np.float32), [[[1, 2, 3]]]])
def test_an_empty_or_wrong_type_image_is_a_typed_error(image):
    with pytest.raises(MatSegInputError, match="RGB uint8"):
        resolve_scorer("rgb").set_image(image)


def test_a_label_map_is_one_hot_encoded_once_per_image_and_reset_by_set_image():
    """A hard segmentation's one-hot map is built once per image (not once per similarity_maps /
    material_descriptors call) and rebuilt for the next image."""
    calls = []

    def halves(image):
        calls.append(image.shape)
        labels = np.zeros(image.shape[:2], dtype=np.int64)
        labels[:, image.shape[1] // 2:] = 1 + int(image[0, 0, 0])
        return labels

    scorer = DescriptorScorer(halves, "halves")
    scorer.set_image(np.zeros((8, 10, 3), np.uint8))
    dense = scorer._as_dense()
    maps = scorer.similarity_maps([Prompt.of([[1, 1, 1]]), Prompt.of([[8, 4, 1]])])
    assert scorer._as_dense() is dense and len(calls) == 1
    assert maps.shape == (2, 8, 10)
    np.testing.assert_allclose(maps[0, :, :5], 1)
    np.testing.assert_allclose(maps[0, :, 5:], 0)
    np.testing.assert_allclose(maps[1, :, 5:], 1)
    scorer.set_image(np.full((6, 4, 3), 3, np.uint8))
    assert scorer._as_dense().shape == (6, 4, 2) and len(calls) == 2
    np.testing.assert_allclose(scorer.similarity_maps([Prompt.of([[3, 2, 0]])])[0, :, 2:], 1)


def test_torch_device_is_checked_with_a_typed_error():
    import torch

    from matseg_hub.models.scorers import torch_device

    assert torch_device("cpu") == torch.device("cpu")
    assert torch_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(MatSegInputError, match="unknown torch device 'gpu'"):
        torch_device("gpu")
    with pytest.raises(MatSegInputError, match="not available"):
        torch_device(f"cuda:{torch.cuda.device_count()}")


def test_a_matseg_net_on_an_unusable_device_is_a_typed_error(tmp_path):
    import torch

    from matseg_hub.models.matseg import MatSegConfig, MatSegModel

    MatSegModel(MatSegConfig.from_convnext_size(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32],
                                                descriptor_dim=8)).save_pretrained(tmp_path / "net")
    assert resolve_scorer(str(tmp_path / "net"), device="cpu").kind == "descriptor"
    with pytest.raises(MatSegInputError, match="unknown torch device 'gpu'"):
        resolve_scorer(str(tmp_path / "net"), device="gpu")
    with pytest.raises(MatSegInputError, match="not available"):
        resolve_scorer(str(tmp_path / "net"), device=f"cuda:{torch.cuda.device_count()}")

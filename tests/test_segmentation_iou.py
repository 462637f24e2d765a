"""matseg_hub.segmentation.evaluation: point-prompted IoU (SPEC §10) with the authors' protocol: erosion, the 400 px
rule, seeded query discs, oracle and fixed thresholds; by hand on constructed images and end to end on 2D scenes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from matseg_hub.errors import MatSegFormatError, MatSegInputError
from matseg_hub.models.scorers import DescriptorScorer, Scorer
from matseg_hub.segmentation.evaluation import (MIN_AREA, draw_queries, eroded_region, evaluate_segmentation,
                                                format_iou_table, query_rng)
from matseg_hub.segmentation.item import SegmentationItem

RED, ORANGE, BLUE = (255, 0, 0), (255, 120, 0), (0, 0, 255)


def three_colours():
    """60x120: red columns 0-59, orange 60-69 (cosine 255/sqrt(255^2+120^2) = 0.905 to red), blue 70-119.
    Region "red" = columns 0-58 plus a 10x10 blue patch (rows 25-34, columns 100-109) that erosion removes;
    region "blue" = columns 80-119 without the patch. Every query disc of a region is of one colour."""
    image = np.zeros((60, 120, 3), np.uint8)
    image[:, :60] = RED
    image[:, 60:70] = ORANGE
    image[:, 70:] = BLUE
    red = np.zeros((60, 120), bool)
    red[:, :59] = True
    red[25:35, 100:110] = True
    blue = np.zeros((60, 120), bool)
    blue[:, 80:] = True
    blue[25:35, 100:110] = False
    return SegmentationItem("colours", image, np.stack([red, blue]), ["red", "blue"])


def test_rgb_on_three_colours_by_hand():
    result = evaluate_segmentation([three_colours()], "rgb", threshold=0.5, show_progress=False)
    red, blue = result["images"]["colours"]["regions"]
    # red query: map 1 on red, 0.905 on orange, 0 on blue. t < 0.905: red + orange (70 columns) predicted,
    # intersection 59 x 60, union 70 x 60 + the 100 px patch; 0.91 <= t < 1: red only (60 columns)
    assert red["fixed"] == pytest.approx(59 * 60 / (70 * 60 + 100))
    assert red["oracle"] == pytest.approx(59 * 60 / (60 * 60 + 100))
    assert red["best_thresholds"] == [0.91] * 10  # the lowest threshold of the best
    # blue query: blue (50 columns) predicted for every t < 1; the region is 40 columns less the patch
    assert blue["fixed"] == blue["oracle"] == pytest.approx((40 * 60 - 100) / (50 * 60))
    assert red["area"] == 59 * 60 + 100 and blue["area"] == 40 * 60 - 100
    mean = result["mean"]
    assert mean["fixed_region"] == pytest.approx((red["fixed"] + blue["fixed"]) / 2)
    assert mean["oracle_region"] == mean["oracle_image"] == pytest.approx((red["oracle"] + blue["oracle"]) / 2)
    assert mean["num_images"] == 1 and mean["num_regions"] == 2 and mean["num_small_regions"] == 0
    # one threshold for both regions of the image: 0.91 is best for red and as good as any for blue
    image = result["images"]["colours"]
    assert image["best_threshold"] == 0.91 and image["oracle_shared"] == pytest.approx(mean["oracle_image"])
    # the fixed threshold is one value for the set: above the orange cosine it separates red from orange
    high = evaluate_segmentation([three_colours()], "rgb", threshold=0.95, show_progress=False)
    assert high["mean"]["fixed_region"] == pytest.approx(mean["oracle_region"])
    # one prompt of all ten discs ("joint"): here every disc has the same colour, so the same numbers
    joint = evaluate_segmentation([three_colours()], "rgb", queries="joint", show_progress=False)
    assert joint["mean"]["oracle_region"] == pytest.approx(mean["oracle_region"])
    assert len(joint["images"]["colours"]["regions"][0]["best_thresholds"]) == 1
    table = format_iou_table([result, high])
    assert "oracle/region" in table and "fixed/image" in table and "0.95" in table and "rgb" in table


def test_a_perfect_scorer_gets_one():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    labels = np.zeros((96, 128), np.int64)
    labels[:, :50] = 1
    labels[10:90, 60:] = 2
    labels[:45, 70:120] = 3
    item = SegmentationItem("perfect", image, np.stack([labels == k for k in (1, 2, 3)]), ["a", "b", "c"])
    scorer = DescriptorScorer(lambda _image: labels, "truth")  # one-hot of the ground truth
    result = evaluate_segmentation([item], scorer, threshold=0.5, show_progress=False)
    assert result["mean"]["num_regions"] == 3
    for key in ("oracle_region", "oracle_image", "fixed_region", "fixed_image"):
        assert result["mean"][key] == 1.0
    # and a scorer that answers the wrong region scores 0
    wrong = DescriptorScorer(lambda _image: np.roll(labels, 64, axis=1), "shifted")
    assert evaluate_segmentation([item], wrong, show_progress=False)["mean"]["oracle_region"] < 0.5


def test_regions_too_small_after_erosion_are_skipped_and_counted():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:] = (30, 200, 90)
    masks = np.zeros((3, 100, 100), bool)
    masks[0, 10:49, 10:49] = True  # 39 x 39: the 20 px kernel leaves 20 x 20 = 400 px, enough
    masks[1, 55:93, 55:93] = True  # 38 x 38: 19 x 19 = 361 px, too small
    masks[2, 60:62, 5:40] = True  # a thin line: nothing left
    assert eroded_region(masks[0]).sum() == MIN_AREA and eroded_region(masks[1]).sum() == 361
    item = SegmentationItem("sizes", image, masks, ["big", "small", "line"])
    result = evaluate_segmentation([item], "rgb", show_progress=False)
    assert [r["name"] for r in result["images"]["sizes"]["regions"]] == ["big"]
    assert result["small_regions"] == [{"image_id": "sizes", "region": "small", "area": 361},
                                       {"image_id": "sizes", "region": "line", "area": 0}]
    assert result["mean"]["num_small_regions"] == 2 and result["mean"]["num_regions"] == 1
    # a lower bar scores the 38 px square too; an image with no region large enough is listed as skipped
    assert evaluate_segmentation([item], "rgb", min_area=300, show_progress=False)["mean"]["num_regions"] == 2
    tiny = SegmentationItem("tiny", image, masks[1:], ["small", "line"])
    both = evaluate_segmentation([tiny, item], "rgb", show_progress=False)
    assert both["skipped"] == ["tiny"] and list(both["images"]) == ["sizes"]
    with pytest.raises(MatSegInputError, match="no region to score.*fewer than 400 px"):
        evaluate_segmentation([tiny], "rgb", show_progress=False)


def test_queries_are_seeded_and_inside_the_eroded_region():
    item = three_colours()
    first = evaluate_segmentation([item], "rgb", seed=3, show_progress=False)
    again = evaluate_segmentation([item], "rgb", seed=3, show_progress=False)
    other = evaluate_segmentation([item], "rgb", seed=4, show_progress=False)
    queries = [r["queries"] for r in first["images"]["colours"]["regions"]]
    assert queries == [r["queries"] for r in again["images"]["colours"]["regions"]]
    assert queries != [r["queries"] for r in other["images"]["colours"]["regions"]]
    for r, points in enumerate(queries):
        eroded = eroded_region(item.masks[r])
        assert len(points) == 10 and all(p[2] == 10 for p in points)
        assert all(eroded[y, x] for x, y, _ in points)
        assert len({(x, y) for x, y, _ in points}) > 1
    # keyed by image id and region, not by order: the same queries when another image comes first
    other_image = SegmentationItem("another", item.image, item.masks[::-1].copy(), ["blue", "red"])
    later = evaluate_segmentation([other_image, item], "rgb", seed=3, show_progress=False)
    assert [r["queries"] for r in later["images"]["colours"]["regions"]] == queries
    # the draw itself: uniform over the eroded pixels, from the region's own generator
    eroded = eroded_region(item.masks[0])
    points = draw_queries(eroded, 2000, 10, query_rng(0, "x", 0))
    xs = points[:, 0]
    assert xs.min() >= 0 and xs.max() <= 49 and abs(xs.mean() - 24.5) < 1.5
    assert not np.array_equal(draw_queries(eroded, 10, 10, query_rng(0, "x", 1)),
                              draw_queries(eroded, 10, 10, query_rng(0, "x", 0)))


def test_images_are_resized_to_the_evaluation_size_with_their_masks():
    item = three_colours()
    big = SegmentationItem("big", np.repeat(np.repeat(item.image, 4, 0), 4, 1),
                           np.repeat(np.repeat(item.masks, 4, 1), 4, 2), ["red", "blue"])  # 240 x 480
    result = evaluate_segmentation([big], "rgb", max_size=120, show_progress=False)
    regions = result["images"]["big"]["regions"]
    assert [r["area"] for r in regions] == [59 * 60 + 100, 40 * 60 - 100]  # nearest: the masks come back exactly
    assert regions[0]["oracle"] == pytest.approx(59 * 60 / (60 * 60 + 100))
    full = evaluate_segmentation([big], "rgb", max_size=None, show_progress=False)
    assert full["images"]["big"]["regions"][0]["area"] == 16 * (59 * 60 + 100)


def test_bad_input_errors_name_the_image_or_are_skipped():
    good = three_colours()
    wrong_size = SegmentationItem("wrong-size", good.image, good.masks[:, :50, :], ["a", "b"])
    empty = SegmentationItem("empty-mask", good.image, np.stack([good.masks[0], np.zeros_like(good.masks[0])]),
                             ["a", "nothing"])
    none = SegmentationItem("no-masks", good.image, np.zeros((0, 60, 120), bool), [])
    for item, pattern in ((wrong_size, "'wrong-size'.*masks of size 120x50 for an image of size 120x60"),
                          (empty, "'empty-mask'.*empty mask.*nothing"), (none, "'no-masks' has no region mask")):
        with pytest.raises(MatSegFormatError, match=pattern):
            evaluate_segmentation([good, item], "rgb", show_progress=False)
    result = evaluate_segmentation([wrong_size, good, empty, none], "rgb", skip_bad=True, show_progress=False)
    assert [b["image_id"] for b in result["bad"]] == ["wrong-size", "empty-mask", "no-masks"]
    assert list(result["images"]) == ["colours"] and result["mean"]["num_bad_images"] == 3
    with pytest.raises(MatSegInputError, match="iterable of SegmentationItem"):
        evaluate_segmentation([{"image": good.image}], "rgb", show_progress=False)
    with pytest.raises(MatSegInputError, match="unknown option"):
        evaluate_segmentation([good], "rgb", prompt_point=2, show_progress=False)
    with pytest.raises(MatSegInputError, match="queries"):
        evaluate_segmentation([good], "rgb", queries="all", show_progress=False)
    with pytest.raises(MatSegInputError, match="threshold"):
        evaluate_segmentation([good], "rgb", threshold=float("nan"), show_progress=False)
    with pytest.raises(MatSegInputError, match="no image to score"):
        evaluate_segmentation([], "rgb", show_progress=False)
    nan_scorer = DescriptorScorer(lambda image: np.full(image.shape, np.nan, np.float32), "nan")
    with pytest.raises(MatSegInputError, match="'nan' on image 'colours'.*NaN"):
        evaluate_segmentation([good], nan_scorer, show_progress=False)


def test_generated_2d_scenes_end_to_end(tmp_path):
    """A scene folder from ``matseg generate 2d`` read by load_segmentation (layout detected) and scored."""
    from matseg_hub.segmentation.dataset import load_segmentation

    env = dict(os.environ, MATSEG_DISABLE_PROGRESS="1")
    # the "dense" preset: large regions at 128 px (the paper distribution's regions are too small to erode there)
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "generate", "2d", "--num", "2", "--size", "128",
                           "--preset", "dense", "--seed", "7", "--output", str(tmp_path / "scenes"), "--no-progress"],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    items = list(load_segmentation(tmp_path / "scenes"))
    total = sum(item.masks.shape[0] for item in items)
    result = evaluate_segmentation(tmp_path / "scenes", "rgb", show_progress=False)
    mean = result["mean"]
    assert result["data"] == str(tmp_path / "scenes") and result["task"] == "iou"
    assert mean["num_regions"] + mean["num_small_regions"] == total and mean["num_regions"] >= 1
    assert 0 <= mean["fixed_region"] <= mean["oracle_region"] <= 1
    for image_id, entry in result["images"].items():
        item = next(i for i in items if i.image_id == image_id)
        for region in entry["regions"]:
            r = item.region_names.index(region["name"])
            assert region["area"] == int(item.masks[r].sum())
            assert all(eroded_region(item.masks[r])[y, x] for x, y, _ in region["queries"])
        assert entry["oracle_shared"] <= entry["oracle"] + 1e-12
    # the same set, the same seed: the same numbers
    assert evaluate_segmentation(tmp_path / "scenes", "rgb", show_progress=False)["mean"] == mean


class _FixedMap(Scorer):
    """A scorer whose every similarity map is one given float32 map (values exactly on thresholds)."""

    kind = "descriptor"

    def __init__(self, sim):
        super().__init__("fixed-map")
        self.sim = sim

    def set_image(self, image):
        pass

    def similarity_maps(self, prompts):
        return np.repeat(self.sim[None], len(prompts), axis=0)


@pytest.mark.parametrize("threshold, iou", [(0.5, 0.0), (0.3, 50 / 90), (1 / 3, 50 / 60), (0.2, 50 / 90)])
def test_fixed_threshold_is_strict_like_the_sweep(threshold, iou):
    # region: the left 50 columns; the map is 0.5 on columns 0-29, 1/3 (float32) on 30-59, 0.3 on 60-89, 0 beyond
    region = np.zeros((64, 120), bool)
    region[:, :50] = True
    sim = np.zeros((64, 120), np.float32)
    sim[:, :30], sim[:, 30:60], sim[:, 60:90] = 0.5, np.float32(1 / 3), 0.3
    item = SegmentationItem("strict", np.zeros((64, 120, 3), np.uint8), region[None], ["left"])
    result = evaluate_segmentation([item], _FixedMap(sim), threshold=threshold, show_progress=False)
    pred = sim.astype(np.float64) > threshold  # strict: a pixel exactly on the threshold is outside
    expected = (pred & region).sum() / (pred | region).sum()
    (entry,) = result["images"]["strict"]["regions"]
    assert entry["fixed"] == pytest.approx(expected, abs=0)
    assert expected == pytest.approx(iou)  # float32(0.3) and float32(1/3) lie above 0.3, 1/3
    assert entry["oracle"] == pytest.approx(50 / 60)  # t in [1/3, 0.5): columns 0-59


def test_no_region_to_score_counts_the_readable_images(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    labels = np.zeros((40, 40), np.uint8)
    labels[5:35, 5:35] = 1  # 10 x 10 px left after erosion: too small
    Image.fromarray(labels).save(tmp_path / "masks" / "a.png")
    (tmp_path / "images" / "b.png").write_bytes(b"not a png")  # left out by the reader
    Image.fromarray(np.ones((40, 40), np.uint8)).save(tmp_path / "masks" / "b.png")
    with pytest.raises(MatSegInputError, match="all 1 regions of the 1 readable images.*1 images were bad"):
        evaluate_segmentation(tmp_path, "rgb", skip_bad=True, show_progress=False)
    (tmp_path / "images" / "a.png").write_bytes(b"not a png either")
    with pytest.raises(MatSegInputError, match="no image to score.*all 2 images were bad"):
        evaluate_segmentation(tmp_path, "rgb", skip_bad=True, show_progress=False)


def test_a_repeated_image_id_is_bad_input_not_a_silent_replacement():
    item = three_colours()
    twin = SegmentationItem(item.image_id, item.image, item.masks[:1].copy(), ["red"])
    with pytest.raises(MatSegFormatError, match="'colours' appears twice"):
        evaluate_segmentation([item, twin], "rgb", show_progress=False)
    result = evaluate_segmentation([item, twin], "rgb", skip_bad=True, show_progress=False)
    assert result["mean"]["num_regions"] == 2 and result["mean"]["num_images"] == 1  # the regions of one image
    assert result["mean"]["oracle_region"] == result["mean"]["oracle_image"]
    assert [b["image_id"] for b in result["bad"]] == ["colours"]

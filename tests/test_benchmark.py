"""The raw benchmark reader: EXIF frame, relations, evaluation resize, disc masks, and every bad input."""

from __future__ import annotations

import json
import pickle
import shutil

import cv2
import numpy as np
import pytest

from matseg_hub.benchmark.format import (builtin_benchmark_dir, list_benchmark_items, parse_group_relations,
                                         point_disc_masks, read_benchmark, read_benchmark_item, resize_for_evaluation)
from matseg_hub.errors import MatSegFormatError, MatSegInputError
from matseg_hub.testing import make_benchmark_folder


# ---------------------------------------------------------------------------------------------------------------
# relations
# ---------------------------------------------------------------------------------------------------------------
def test_relations_three_plus_groups():
    sim = parse_group_relations("(1,3)\n\n[2,3,4]\n", ["1", "2", "3", "4"])
    expected = np.array([[1, 0, .3, 0], [0, 1, .6, .6], [.3, .6, 1, .6], [0, .6, .6, 1]])
    np.testing.assert_array_equal(sim, expected)
    assert sim.dtype == np.float64


def test_relations_follow_group_order_and_spaces():
    sim = parse_group_relations(" ( 10 , 2 ) \n", ["2", "10", "7"])
    assert sim[0, 1] == sim[1, 0] == 0.3 and sim[0, 2] == 0 and np.all(np.diag(sim) == 1)


def test_no_relations_is_identity():
    np.testing.assert_array_equal(parse_group_relations("", ["1", "2"]), np.eye(2))


@pytest.mark.parametrize("text, message, line", [
    ("(1,2]\n", "both bracket kinds", "line 1"),
    ("[1,2\n", "not a relation", "line 1"),
    ("(1,2)\n[1,3]\n(2,3)[1,2]\n", "both bracket kinds", "line 3"),
    ("\n1,2\n", "neither", "line 2"),
    ("(1,9)\n", "unknown group id '9'", "line 1"),
    ("(1,2)\n[2,1]\n", "already given on line 1", "line 2"),
    ("(1,1)\n", "twice", "line 1"),
    ("(1)\n", "fewer than two", "line 1"),
])
def test_bad_relations_name_file_and_line(tmp_path, text, message, line):
    path = tmp_path / "group_relations.txt"
    with pytest.raises(MatSegFormatError) as info:
        parse_group_relations(text, ["1", "2", "3"], path=path)
    assert message in str(info.value) and line in str(info.value) and str(path) in str(info.value)
    assert info.value.field == line


# ---------------------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", [1, 6, 8, 3])
def test_exif_orientation_points_match_displayed_pixels(tmp_path, orientation):
    root = make_benchmark_folder(tmp_path / "raw", num_images=1, size=(120, 200), num_groups=[3],
                                 orientation=orientation, seed=orientation)
    item = read_benchmark_item(root, "img_000")
    assert (item.width, item.height, item.orientation) == (200, 120, orientation)
    image = item.image()
    assert image.shape == (120, 200, 3)
    # each group is a colour band: pixels under its points share one colour, other groups' differ
    means = {g: np.mean([image[int(y), int(x)].astype(float) for x, y, _ in pts], axis=0) for g, pts in item.groups.items()}
    for g, pts in item.groups.items():
        for x, y, _ in pts:
            assert np.abs(image[int(y), int(x)] - means[g]).max() < 25
    assert np.abs(means["1"] - means["2"]).max() > 30


def test_shared_sample_exif_frame(shared_data):
    root = shared_data / "matseg_benchmark_sample"
    item = read_benchmark_item(root, "20230913_185027")
    assert item.orientation == 6 and (item.width, item.height) == (3000, 4000)
    assert item.image().shape == (4000, 3000, 3)
    assert list(item.groups) == ["1", "2"] and len(item.groups["1"]) == 15 and len(item.groups["2"]) == 22
    np.testing.assert_array_equal(item.groups["1"][0], [668, 2000, 76])
    ev = item.for_evaluation()
    assert ev.image.shape == (700, 525, 3) and ev.scale == pytest.approx(4000 / 700)
    np.testing.assert_array_equal(ev.points[0], np.round(np.array([668, 2000, 76]) / (4000 / 700)))


def test_builtin_sample_matches_shared_sample_at_evaluation_size(shared_data):
    full = read_benchmark_item(shared_data / "matseg_benchmark_sample", "20230913_185027").for_evaluation()
    small = next(read_benchmark(builtin_benchmark_dir())).for_evaluation()
    np.testing.assert_array_equal(small.points, full.points)
    np.testing.assert_array_equal(small.point_groups, full.point_groups)
    assert small.image.shape == full.image.shape and small.scale == 1.0
    # JPEG re-encoding only: pixels stay close to the reference's resized image
    assert np.abs(small.image.astype(int) - full.image.astype(int)).mean() < 2.5


def test_builtin_sample_ships_with_licence():
    root = builtin_benchmark_dir()
    assert "CC0" in (root / "LICENSE.md").read_text()
    assert (root / "images").stat().st_size and sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) < 500_000


def test_resize_rounding_is_half_to_even():
    image = np.zeros((1400, 700, 3), np.uint8)
    pts = np.array([[5, 7, 3], [1, 3, 9]])  # /2 -> 2.5, 3.5, 1.5 ; 0.5, 1.5, 4.5
    resized, out, rat = resize_for_evaluation(image, pts, 700)
    assert resized.shape == (700, 350, 3) and rat == 2.0
    np.testing.assert_array_equal(out, [[2, 4, 2], [0, 2, 4]])


def test_resize_uses_int_truncation_of_size():
    image = np.zeros((1001, 333, 3), np.uint8)
    resized, _, rat = resize_for_evaluation(image, np.zeros((0, 3)), 700)
    assert resized.shape == (int(1001 / rat), int(333 / rat), 3) == (700, 232, 3)


def test_small_images_are_not_resized():
    image = np.arange(600 * 500 * 3, dtype=np.uint32).astype(np.uint8).reshape(600, 500, 3)
    resized, pts, rat = resize_for_evaluation(image, np.array([[1.5, 2.5, 3.0]]), 700)
    assert resized is image and rat == 1.0
    np.testing.assert_array_equal(pts, [[2, 2, 3]])


def test_point_disc_masks_equal_cv2_circle():
    pts = np.array([[10, 12, 5], [0, 0, 3], [30, 5, 1]])
    masks = point_disc_masks(pts, (20, 32))
    for mask, (x, y, r) in zip(masks, pts):
        ref = np.zeros((20, 32), np.uint8)
        cv2.circle(ref, (int(x), int(y)), int(r), 1, thickness=-1)
        np.testing.assert_array_equal(mask, ref.astype(bool))
    assert masks[0].sum() > masks[2].sum() > 0


def test_point_disc_masks_at_and_over_the_borders_equal_cv2_circle():
    """Centres on the last row/column, one pixel past it (a point at x = W - 1 rounded onto x = W at evaluation size)
    and far past it: exactly the pixels cv2.circle keeps on the full-size mask (none for a disc entirely outside)."""
    height, width = 20, 32
    pts = [[width, 7, 3], [width - 1, height - 1, 4], [0, height, 2], [width, height, 6], [-1, 0, 1], [-4, -4, 4],
           [width + 3, 5, 3], [width + 2, 5, 3], [16, 10, 100], [5, height, 0], [width - 1, 3, 0]]
    masks = point_disc_masks(np.array(pts), (height, width))
    assert masks.shape == (len(pts), height, width) and masks.dtype == bool
    for mask, (x, y, r) in zip(masks, pts):
        ref = np.zeros((height, width), np.uint8)
        cv2.circle(ref, (x, y), r, 1, thickness=-1)
        np.testing.assert_array_equal(mask, ref.astype(bool), err_msg=str((x, y, r)))
    assert masks[0].any() and masks[3].any() and not masks[6].any() and masks[8].all() and not masks[9].any()
    with pytest.raises(MatSegInputError, match="beyond"):
        point_disc_masks(np.array([[1, 1, 1e12]]), (height, width))  # was cv2.error


def test_edge_points_round_onto_the_map_border_and_keep_their_pixels(tmp_path):
    """A 1400 x 600 photo at 700 px: x = 1399 -> 700 and y = 599 -> 300, one past the last column/row; the discs
    are clipped, not refused, and every point keeps pixels inside the evaluation image."""
    from matseg_hub.benchmark.format import write_benchmark_item

    ok, buf = cv2.imencode(".png", np.zeros((600, 1400, 3), np.uint8))
    write_benchmark_item(tmp_path, "wide", buf.tobytes(), {"1": [[1399, 599, 4], [0, 0, 4]], "2": [[1399, 0, 3]]},
                         image_ext=".png")
    ev = read_benchmark_item(tmp_path, "wide").for_evaluation(max_size=700)
    assert ev.image.shape[:2] == (300, 700)
    assert ev.points.tolist() == [[700, 300, 2], [0, 0, 2], [700, 0, 2]]
    assert point_disc_masks(ev.points, ev.image.shape[:2]).any(axis=(1, 2)).all()


def test_group_ids_with_non_ascii_digits_are_names(raw):
    """'²'.isdigit() is True but int('²') fails: such ids sort as names instead of crashing the reader."""
    _edit_json(raw, lambda d: d.__setitem__("²", {"pt_im": [[3, 3, 2], [4, 4, 2]]}))
    assert read_benchmark_item(raw, "img_000").group_ids == ["1", "2", "²"]


def test_folder_iteration_and_points(tmp_path):
    root = make_benchmark_folder(tmp_path, num_images=3, num_groups=[2, 3], relations={1: "(1,2)\n[2,3]\n"})
    items = list(read_benchmark(root))
    assert [i.image_id for i in items] == ["img_000", "img_001", "img_002"]
    assert [len(i.groups) for i in items] == [2, 3, 2]
    pts, groups = items[1].points()
    assert pts.shape == (12, 3) and list(np.bincount(groups)) == [4, 4, 4]
    np.testing.assert_allclose(items[1].group_similarity, [[1, .3, 0], [.3, 1, .6], [0, .6, 1]])
    assert items[1].relations == "(1,2)\n[2,3]\n"


def test_pickle_only_with_opt_in(tmp_path):
    root = make_benchmark_folder(tmp_path, num_images=1)
    folder = root / "data" / "img_000"
    content = json.loads((folder / "data.json").read_text())
    (folder / "data.json").unlink()
    (folder / "data.pkl").write_bytes(pickle.dumps(content))
    with pytest.raises(MatSegFormatError, match="allow_pickle=True"):
        read_benchmark_item(root, "img_000")
    item = read_benchmark_item(root, "img_000", allow_pickle=True)
    assert item.groups["1"].tolist() == content["1"]["pt_im"]


def test_json_preferred_over_pickle(tmp_path):
    root = make_benchmark_folder(tmp_path, num_images=1)
    (root / "data" / "img_000" / "data.pkl").write_bytes(b"not a pickle at all")
    assert read_benchmark_item(root, "img_000").groups  # the pickle is never opened


# ---------------------------------------------------------------------------------------------------------------
# bad input: each names the file and field
# ---------------------------------------------------------------------------------------------------------------
def _edit_json(root, fn):
    path = root / "data" / "img_000" / "data.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def raw(tmp_path):
    return make_benchmark_folder(tmp_path / "raw", num_images=1, size=(100, 160), num_groups=[2])


def test_missing_image(raw):
    (raw / "images" / "img_000.jpg").unlink()
    with pytest.raises(MatSegFormatError, match=r"images/img_000\.jpg.*no image for annotation"):
        read_benchmark_item(raw, "img_000")


def test_missing_json(raw):
    (raw / "data" / "img_000" / "data.json").unlink()
    with pytest.raises(MatSegFormatError, match=r"data\.json: annotation missing"):
        read_benchmark_item(raw, "img_000")


def test_malformed_json(raw):
    (raw / "data" / "img_000" / "data.json").write_text('{"1": {"pt_im": [[1, 2, 3]')
    with pytest.raises(MatSegFormatError, match=r"data\.json: malformed JSON .*line 1"):
        read_benchmark_item(raw, "img_000")


def test_point_outside_image(raw):
    path = _edit_json(raw, lambda d: d["2"]["pt_im"].append([160, 50, 3]))
    with pytest.raises(MatSegFormatError) as info:
        read_benchmark_item(raw, "img_000")
    assert str(path) in str(info.value) and info.value.field == "2.pt_im[4]" and "outside the image" in str(info.value)


def test_radius_not_positive(raw):
    _edit_json(raw, lambda d: d["1"]["pt_im"].__setitem__(1, [10, 10, 0]))
    with pytest.raises(MatSegFormatError, match=r"\[1\.pt_im\[1\]\].*radius 0 <= 0"):
        read_benchmark_item(raw, "img_000")


def test_group_without_points(raw):
    _edit_json(raw, lambda d: d.__setitem__("3", {"pt_im": [], "pt_pg": []}))
    with pytest.raises(MatSegFormatError, match=r"\[3\.pt_im\]: group has no points"):
        read_benchmark_item(raw, "img_000")


def test_wrong_point_shape(raw):
    _edit_json(raw, lambda d: d["1"].__setitem__("pt_im", [[1, 2]]))
    with pytest.raises(MatSegFormatError, match=r"\[1\.pt_im\].*\[x, y, radius\]"):
        read_benchmark_item(raw, "img_000")


def test_unknown_group_in_relations(raw):
    (raw / "data" / "img_000" / "group_relations.txt").write_text("(1,2)\n[1,5]\n")
    with pytest.raises(MatSegFormatError, match=r"group_relations\.txt \[line 2\]: unknown group id '5'"):
        read_benchmark_item(raw, "img_000")


def test_corrupt_jpeg(raw):
    path = raw / "images" / "img_000.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(MatSegFormatError, match=r"img_000\.jpg: corrupt or unreadable image"):
        read_benchmark_item(raw, "img_000")


def test_not_a_benchmark_folder(tmp_path):
    with pytest.raises(MatSegFormatError, match="not a MatSeg benchmark folder"):
        list_benchmark_items(tmp_path)


def test_orphan_images_are_ignored_with_warning(raw, caplog):
    shutil.copy(raw / "images" / "img_000.jpg", raw / "images" / "extra.jpg")
    with caplog.at_level("WARNING", logger="matseg_hub"):
        assert list_benchmark_items(raw) == ["img_000"]
    assert "no annotation" in caplog.text


def test_byte_order_mark_is_accepted(raw):
    folder = raw / "data" / "img_000"
    (folder / "group_relations.txt").write_bytes("\ufeff(1,2)\n".encode("utf-8"))
    (folder / "data.json").write_bytes(b"\xef\xbb\xbf" + (folder / "data.json").read_bytes())
    item = read_benchmark_item(raw, "img_000")
    assert item.group_similarity[0, 1] == 0.3


def test_relations_not_utf8(raw):
    (raw / "data" / "img_000" / "group_relations.txt").write_bytes(b"(1,2)\n\xff\xfe[1,2]\n")
    with pytest.raises(MatSegFormatError, match=r"group_relations\.txt: not UTF-8 text"):
        read_benchmark_item(raw, "img_000")


def test_max_size_must_be_positive():
    with pytest.raises(MatSegInputError, match="max_size must be a positive"):
        resize_for_evaluation(np.zeros((10, 10, 3), np.uint8), np.zeros((0, 3)), 0)


@pytest.mark.parametrize("points, match", [([[1, np.nan, 2]], "not finite"), ([[1, 2, 1e300]], "beyond"),
                                           ([[1, 2, -3]], "negative radius")])
def test_resize_for_evaluation_refuses_points_it_cannot_round(points, match):
    """NaN or 1e300 used to become garbage int64 values (numpy's cast of NaN/overflow)."""
    with pytest.raises(MatSegInputError, match=match):
        resize_for_evaluation(np.zeros((1400, 700, 3), np.uint8), np.array(points, dtype=np.float64))

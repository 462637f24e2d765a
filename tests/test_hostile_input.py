"""Valid input that used to crash and hostile input that used to pass validation (issue #12, items 4 and 5).

Every case ends in a typed :class:`MatSegFormatError` naming the file and the field, is left out and listed
under ``skip_bad`` / ``--skip-bad`` (never kept in a built dataset), or is scored correctly: points on a photo's
last row/column (12-MP photos, EXIF orientations 1/3/6/8) are scored with every point.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matseg_hub.benchmark.format import iter_benchmark_items, read_benchmark_item, write_benchmark_item
from matseg_hub.benchmark.dataset import load_benchmark
from matseg_hub.errors import MatSegFormatError
from matseg_hub.benchmark.evaluation import evaluate_benchmark
from matseg_hub.testing import make_benchmark_folder
from matseg_hub.utils.images import MAX_IMAGE_PIXELS, decode_image, displayed_size, read_image_header

ENV = dict(os.environ, MATSEG_DISABLE_PROGRESS="1")


def matseg(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "matseg_hub", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose header declares ``width x height`` pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg(displayed: np.ndarray, orientation=None, quality: int = 90) -> bytes:
    """Encode a displayed RGB photo, stored so that EXIF ``orientation`` (tag 0x0112) displays it as given."""
    stored = Image.fromarray(displayed)
    transpose = {None: None, 1: None, 3: "ROTATE_180", 6: "ROTATE_90", 8: "ROTATE_270"}.get(orientation)
    if transpose is not None:
        stored = stored.transpose(getattr(Image.Transpose, transpose))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=quality, exif=exif)
    return buf.getvalue()


@pytest.fixture
def raw(tmp_path):
    """Two good photos (100 x 160 displayed, two groups); the tests spoil img_000."""
    return make_benchmark_folder(tmp_path / "raw", num_images=2, size=(100, 160), num_groups=[2])


def _json_path(root: Path, image_id: str = "img_000") -> Path:
    return root / "data" / image_id / "data.json"


def _set_point(root: Path, value_text: str, image_id: str = "img_000", index: int = 0, group: str = "1") -> Path:
    """Replace ``pt_im[index][0..2]`` of ``group`` by ``value_text`` (raw JSON text, e.g. ``"[true, 5, 3]"``)."""
    path = _json_path(root, image_id)
    data = json.loads(path.read_text())
    data[group]["pt_im"][index] = "@@"
    path.write_text(json.dumps(data).replace('"@@"', value_text))
    return path


# ----------------------------------------------------------------------------------------------------------------
# item 5: each bad value is a typed error naming the file and the field
# ----------------------------------------------------------------------------------------------------------------
def _radius_1e12(root):
    return _set_point(root, "[10, 10, 1e12]"), "1.pt_im[0]", "more than the diagonal of the 160x100 photo"


def _integer_of_400_digits(root):
    return _set_point(root, f"[{'1' * 400}, 10, 3]"), "1.pt_im[0]", "integer of about 400 digits"


def _integer_of_5000_digits(root):  # beyond Python's int-from-text limit: json itself raises ValueError
    return _set_point(root, f"[{'1' * 5000}, 10, 3]"), None, "unreadable JSON"


def _deeply_nested(root):
    path = _json_path(root)
    path.write_text('{"1": {"pt_im": ' + "[" * 100_000 + "]" * 100_000 + "}}")
    return path, None, "nested too deeply"


def _boolean_coordinate(root):
    return _set_point(root, "[true, 5, 3]"), "1.pt_im[0]", "x is a boolean, not a number"


def _boolean_radius(root):
    return _set_point(root, "[10, 5, false]", index=2, group="2"), "2.pt_im[2]", "radius is a boolean"


def _string_coordinate(root):
    return _set_point(root, '[10, "5", 3]'), "1.pt_im[0]", "y is str '5', not a number"


def _nan_coordinate(root):
    return _set_point(root, "[NaN, 5, 3]"), "1.pt_im[0]", "x is nan, not a finite number"


def _infinite_radius(root):
    return _set_point(root, "[10, 5, Infinity]"), "1.pt_im[0]", "radius is inf, not a finite number"


def _duplicate_group(root):
    path = _json_path(root)
    text = path.read_text()
    path.write_text(text[:-1] + ', "1": {"pt_im": [[3, 3, 2], [4, 4, 2]]}}')
    return path, "1", "the key '1' is given twice"


def _duplicate_field_in_group(root):
    path = _json_path(root)
    data = json.loads(path.read_text())
    text = json.dumps(data)
    path.write_text(text.replace('"pt_im":', '"pt_im": [[1, 1, 1]], "pt_im":', 1))
    return path, "pt_im", "the key 'pt_im' is given twice"


def _group_01_and_1(root):
    path = _json_path(root)
    data = json.loads(path.read_text())
    data["01"] = {"pt_im": [[3, 3, 2], [4, 4, 2]]}
    path.write_text(json.dumps(data))
    return path, "01", "groups '1' and '01' are the same group id"


def _orientation(value):
    def spoil(root):
        path = root / "images" / "img_000.jpg"
        path.write_bytes(jpeg(np.full((100, 160, 3), 128, np.uint8), orientation=value))
        return path, "EXIF Orientation", f"EXIF orientation '{value}' is not one of 1-8"
    spoil.__name__ = f"_orientation_{value}"
    return spoil


def _bomb(width, height, shown):
    def spoil(root):
        path = root / "images" / "img_000.jpg"  # the content decides the format, not the name
        path.write_bytes(png_claiming(width, height))
        return path, None, shown
    spoil.__name__ = f"_image_of_{width * height // 10 ** 6}_mp"
    return spoil


CASES = [_radius_1e12, _integer_of_400_digits, _integer_of_5000_digits, _deeply_nested, _boolean_coordinate,
         _boolean_radius, _string_coordinate, _nan_coordinate, _infinite_radius, _duplicate_group,
         _duplicate_field_in_group, _group_01_and_1, _orientation(9), _orientation(0), _orientation(65535),
         _bomb(20_000, 20_000, "image too large"),  # 400 MP: Pillow's own bomb stop, turned into a typed error
         _bomb(16_000, 10_000, "16000x10000 = 160,000,000 pixels")]  # over MAX_IMAGE_PIXELS, under Pillow's stop


@pytest.mark.parametrize("spoil", CASES, ids=lambda f: f.__name__.strip("_"))
def test_bad_value_is_a_typed_error_naming_file_and_field(raw, spoil):
    path, field, message = spoil(raw)
    with pytest.raises(MatSegFormatError) as info:
        read_benchmark_item(raw, "img_000")
    assert info.value.path == str(path) and info.value.field == field, str(info.value)
    assert message in str(info.value)
    assert len(str(info.value).splitlines()) == 1 and len(str(info.value)) < 600
    skipped = []
    kept = [item.image_id for item in iter_benchmark_items(raw, skip_bad=True, on_skip=lambda i, r: skipped.append(i))]
    assert kept == ["img_001"] and skipped == ["img_000"]


def test_limits_are_documented_values():
    assert MAX_IMAGE_PIXELS == 150_000_000 < 2 * Image.MAX_IMAGE_PIXELS  # typed error before Pillow's own stop
    assert 4000 * 3000 <= MAX_IMAGE_PIXELS


def test_radius_up_to_the_diagonal_is_valid(raw):
    _set_point(raw, "[10, 10, 188.6]")  # hypot(160, 100) = 188.68
    item = read_benchmark_item(raw, "img_000")
    assert item.groups["1"][0].tolist() == [10, 10, 188.6]
    assert item.for_evaluation().points[0].tolist() == [10, 10, 189]


@pytest.mark.parametrize("data, message", [
    (png_claiming(20_000, 20_000), "image too large"),
    (png_claiming(16_000, 10_000), "160,000,000 pixels"),
    (jpeg(np.zeros((8, 12, 3), np.uint8), orientation=9), "EXIF orientation '9' is not one of 1-8"),
], ids=["400_mp", "160_mp", "orientation_9"])
def test_image_header_checks_guard_every_decoder(data, message):
    """read_image_header, displayed_size and decode_image (the one decoder of every reader) refuse the same files."""
    for fn in (read_image_header, displayed_size, decode_image):
        with pytest.raises(MatSegFormatError, match=message) as info:
            fn(data, "photos/x.jpg")
        assert info.value.path == "photos/x.jpg"


@pytest.mark.parametrize("orientation, shape", [(None, (8, 12)), (1, (8, 12)), (3, (8, 12)), (6, (8, 12)),
                                                (8, (8, 12))])
def test_valid_orientations_still_decode_in_the_displayed_frame(orientation, shape):
    image = np.zeros(shape + (3,), np.uint8)
    image[:, : shape[1] // 2] = 200  # left half bright, as displayed
    data = jpeg(image, orientation=orientation)
    assert read_image_header(data) == (shape[1], shape[0], orientation or 1)
    decoded = decode_image(data)
    assert decoded.shape == shape + (3,)
    assert decoded[:, :3].mean() > 150 and decoded[:, -3:].mean() < 50


def test_builder_and_evaluate_leave_out_and_list_bad_items(tmp_path):
    """Through the CLIs: ``--skip-bad`` leaves each bad photo out of the built dataset and lists it; without it, one
    line names the file and field, and no traceback."""
    raw = make_benchmark_folder(tmp_path / "raw", num_images=6, size=(100, 160), num_groups=[2])
    spoils = {"img_000": _radius_1e12, "img_001": _boolean_coordinate, "img_002": _duplicate_group,
              "img_004": _orientation(9), "img_005": _bomb(20_000, 20_000, "")}
    for image_id, spoil in spoils.items():
        single = make_benchmark_folder(tmp_path / image_id, num_images=1, size=(100, 160), num_groups=[2])
        spoil(single)
        for sub in ("images/img_000.jpg", "data/img_000/data.json"):
            (raw / sub.replace("img_000", image_id)).write_bytes((single / sub).read_bytes())

    proc = matseg("build", "benchmark", "--source", str(raw), "--output", str(tmp_path / "strict"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("matseg: error: ")
    assert "img_000" in proc.stderr and "[1.pt_im[0]]" in proc.stderr and "diagonal" in proc.stderr

    out = tmp_path / "built"
    proc = matseg("build", "benchmark", "--source", str(raw), "--output", str(out), "--skip-bad")
    assert proc.returncode == 0, proc.stderr
    assert [item.image_id for item in load_benchmark(out)] == ["img_003"]
    card = (out / "README.md").read_text()
    for image_id in spoils:
        assert image_id in card and image_id in proc.stderr

    proc = matseg("evaluate", "--data", str(raw), "--model", "rgb", "--skip-bad", "--output", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert list(result["images"]) == ["img_003"]
    assert [b["image_id"] for b in result["bad"]] == sorted(spoils)
    for image_id in spoils:
        assert f"left out {image_id}: " in proc.stdout


# ----------------------------------------------------------------------------------------------------------------
# item 4: points on the last row / column are scored; a disc with no pixel inside names the image and the point
# ----------------------------------------------------------------------------------------------------------------
def test_point_on_last_column_is_scored_and_a_disc_with_no_pixel_left_is_named(tmp_path):
    root = tmp_path / "raw"
    image = np.zeros((600, 1400, 3), np.uint8)
    image[:, :700] = (200, 40, 40)
    image[:, 700:] = (40, 40, 200)
    groups = {"1": [[0, 0, 6], [0, 599, 6], [10, 300, 6]], "2": [[1399, 0, 6], [1399, 599, 6], [1399, 300, 3]]}
    write_benchmark_item(root, "edge", jpeg(image), groups)
    # at 700 px (rat = 2) x = 1399 rounds to 700 on a 700-px-wide map: the discs are clipped there, not refused
    item = read_benchmark_item(root, "edge")
    ev = item.for_evaluation(max_size=700)
    assert ev.image.shape == (300, 700, 3) and ev.points[3:, 0].tolist() == [700, 700, 700]
    result = evaluate_benchmark(root, "rgb")
    assert result["mean"]["num_anchors"] == 6 and result["mean"]["point_triplet"] == 1.0 and result["bad"] == []

    # radius 0.8 rounds to 0 at 700 px: a one-pixel disc at x = 700, with no pixel inside the 700-px map
    groups["2"][2] = [1399, 300, 0.8]
    write_benchmark_item(root, "edge", jpeg(image), groups)
    write_benchmark_item(root, "good", jpeg(image), {"1": [[5, 5, 4], [20, 20, 4]], "2": [[900, 5, 4], [950, 9, 4]]})
    with pytest.raises(MatSegFormatError) as info:
        evaluate_benchmark(root, "rgb")
    assert info.value.path == "edge.jpg" and info.value.field == "2.pt_im[2]"
    assert "'edge'" in str(info.value) and "no pixel inside" in str(info.value)
    result = evaluate_benchmark(root, "rgb", skip_bad=True)
    assert list(result["images"]) == ["good"] and [b["image_id"] for b in result["bad"]] == ["edge"]
    assert "2.pt_im[2]" in result["bad"][0]["reason"]
    proc = matseg("evaluate", "--data", str(root), "--model", "rgb")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "edge.jpg [2.pt_im[2]]" in proc.stderr
    proc = matseg("evaluate", "--data", str(root), "--model", "rgb", "--skip-bad")
    assert proc.returncode == 0 and "left out edge: " in proc.stdout
    # at full resolution the same point is inside: nothing is left out
    assert evaluate_benchmark(root, "rgb", max_size=None)["bad"] == []


def _edge_photo(orientation: int) -> tuple:
    """A 12-MP photo stored 4000 x 3000 with EXIF ``orientation``, and points on its displayed edges and corners.

    Displayed: left half red, right half blue above the middle row and green below, a yellow square in the centre.
    Each group is one colour: the rgb baseline scores 1 only when every point lands on its colour, i.e. when the
    orientation is applied and every disc at the border is drawn.
    """
    height, width = (3000, 4000) if orientation in (1, 3) else (4000, 3000)
    image = np.empty((height, width, 3), np.uint8)
    image[:, : width // 2] = (200, 30, 30)
    image[: height // 2, width // 2:] = (30, 30, 200)
    image[height // 2:, width // 2:] = (30, 200, 30)
    image[height // 2 - 200: height // 2 + 200, width // 2 - 200: width // 2 + 200] = (220, 220, 30)
    w, h = width - 1, height - 1
    groups = {
        "1": [[0, 0, 40], [0, h, 40], [0, height // 2, 40]],                             # red: left edge
        "2": [[w, 0, 40], [w, height // 4, 40], [width * 3 // 4, 0, 40]],                 # blue: top right
        "3": [[w, h, 40], [width * 3 // 4, h, 40], [w, height * 3 // 4, 40], [w, h - 300, 6]],  # green
        "4": [[width // 2, height // 2, 40]],                                               # alone: no anchor
    }
    return jpeg(image, orientation=orientation), groups


def test_12_mp_photos_with_every_orientation_and_edge_points_build_and_score_every_point(tmp_path):
    """Issue #12 "done when": 12-MP JPEGs (stored 4000 x 3000, EXIF orientations 1/3/6/8) with points exactly on
    the displayed edges and corners (x = 0, x = W - 1, y = H - 1) build through ``matseg build benchmark`` and score
    through ``matseg evaluate`` with every point: num anchors = points whose group has another point."""
    raw = tmp_path / "raw"
    expected_anchors = 0
    for orientation in (1, 3, 6, 8):
        data, groups = _edge_photo(orientation)  # one 12-MP photo in memory at a time
        write_benchmark_item(raw, f"photo_o{orientation}", data, groups)
        expected_anchors += sum(len(p) for p in groups.values() if len(p) > 1)
        with Image.open(raw / "images" / f"photo_o{orientation}.jpg") as stored:
            assert stored.size == (4000, 3000) and stored.getexif()[0x0112] == orientation
    assert expected_anchors == 40

    out = tmp_path / "built"
    proc = matseg("build", "benchmark", "--source", str(raw), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    items = {item.image_id: item for item in load_benchmark(out)}
    assert {i: (it.width, it.height, it.orientation) for i, it in items.items()} == {
        "photo_o1": (4000, 3000, 1), "photo_o3": (4000, 3000, 3), "photo_o6": (3000, 4000, 6),
        "photo_o8": (3000, 4000, 8)}
    del items

    for max_size in ("700", "0"):  # evaluation size (edge points round onto x = W) and full resolution
        result_path = tmp_path / f"scores_{max_size}.json"
        proc = matseg("evaluate", "--data", str(out), "--model", "rgb", "--max-size", max_size,
                      "--output", str(result_path))
        assert proc.returncode == 0, proc.stderr
        result = json.loads(result_path.read_text())
        assert result["bad"] == [] and result["skipped"] == []
        assert result["mean"]["num_scored_images"] == 4
        assert result["mean"]["num_anchors"] == expected_anchors
        for image_id, scores in result["images"].items():
            assert scores == {"point_triplet": 1.0, "material_triplet": 1.0, "point_top1": 1.0,
                              "material_top1": 1.0}, (max_size, image_id)


def test_items_of_a_built_dataset_are_checked_before_scoring(raw):
    """Rows of a Hub dataset were not read by this package's reader: a radius of 1e12 there is a typed error naming
    the image and the point (evaluate's --skip-bad then leaves the image out), never a cv2.error."""
    from matseg_hub.benchmark.format import BenchmarkItem

    row = read_benchmark_item(raw, "img_000").to_row()
    row["groups"][1]["points"][2]["radius"] = 1e12
    with pytest.raises(MatSegFormatError) as info:
        BenchmarkItem.from_row(row).for_evaluation()
    assert info.value.path == "img_000.jpg" and info.value.field == "2.pt_im[2]" and "diagonal" in str(info.value)


def test_predictor_points_use_the_metric_disc_and_refuse_huge_values():
    """The predictor's clicked points are drawn by the metric's clipped disc (no (2r+1)^2 canvas: a radius of 1e12
    allocated terabytes) and values beyond MAX_POINT_VALUE are a typed error."""
    import cv2

    from matseg_hub.errors import MatSegInputError
    from matseg_hub.models.inference import _disc_pixels, _parse_points

    for x, y, r in [(0, 0, 5), (59, 39, 7), (30, 39, 100), (59, 0, 0), (10, 20, 3)]:
        full = np.zeros((40, 60), np.uint8)
        cv2.circle(full, (x, y), r, 1, thickness=-1)
        rows, cols = _disc_pixels(x, y, r, 40, 60)
        drawn = np.zeros_like(full)
        drawn[rows, cols] = 1
        assert (drawn == full).all() and len(rows) == full.sum()
    with pytest.raises(MatSegInputError, match="beyond"):
        _parse_points([[5, 5, 1e12]], None, 40, 60)

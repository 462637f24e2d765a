"""Texture extraction: exact histograms/JS, known uniform regions, bad inputs, folder runs, the authors' output."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from matseg_hub.materials.texture_extraction import extract_textures_folder
from matseg_hub.materials.textures import (CellStatistics, extract_textures, find_uniform_squares, is_textureless,
                                           parse_texture_file_name, texture_file_name)
from matseg_hub.utils.licenses import load_license_map
from matseg_hub.utils.images import read_image

CELL = 40


def make_photo(rows: int = 12, cols: int = 16, region=(3, 2, 8), seed: int = 0, flat: bool = False) -> np.ndarray:
    """A photo of ``rows x cols`` 40-px cells, each a different flat colour, with one uniform noise texture on the
    square of cells ``region = (x, y, side)`` (flat colour instead when ``flat``). uint8 [H, W, 3] RGB."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (rows, cols, 3))
    img = np.repeat(np.repeat(colours, CELL, 0), CELL, 1).astype(np.float64)
    img += rng.normal(0, 2, img.shape)
    x, y, s = region
    patch = (rng.normal(120, 35, (s * CELL, s * CELL, 3)) if not flat else
             np.full((s * CELL, s * CELL, 3), 128.0) + rng.normal(0, 1, (s * CELL, s * CELL, 3)))
    img[y * CELL:(y + s) * CELL, x * CELL:(x + s) * CELL] = patch
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _reference_maps(image: np.ndarray) -> np.ndarray:
    """The authors' 13 property maps (BGR, mean, Sobel dx, dy, magnitude), float64 [H, W, 13]."""
    bgr = image[:, :, ::-1]
    gx = cv2.Sobel(bgr, cv2.CV_64F, 1, 0)
    gy = cv2.Sobel(bgr, cv2.CV_64F, 0, 1)
    return np.concatenate([bgr.astype(np.float64), bgr.mean(2, keepdims=True), gx, gy, np.sqrt(gx ** 2 + gy ** 2)], 2)


def _reference_pair_similarity(maps: np.ndarray, cell: int, i: int, j: int, cols: int) -> float:
    """What the authors compute for two cells, written with numpy + scipy (slow, for checking)."""
    from scipy.spatial.distance import jensenshannon

    (y1, x1), (y2, x2) = divmod(i, cols), divmod(j, cols)
    out = []
    for k in range(maps.shape[2]):
        a = maps[y1 * cell:(y1 + 1) * cell, x1 * cell:(x1 + 1) * cell, k].ravel()
        b = maps[y2 * cell:(y2 + 1) * cell, x2 * cell:(x2 + 1) * cell, k].ravel()
        rng = (min(a.min(), b.min()), max(a.max(), b.max()))
        h1, _ = np.histogram(a, bins=10, range=rng, density=True)
        h2, _ = np.histogram(b, bins=10, range=rng, density=True)
        out.append(1 - jensenshannon(h1, h2))
    return min(out)


def test_pair_similarity_equals_numpy_histograms_and_scipy_js():
    rng = np.random.default_rng(1)
    img = make_photo(5, 6, region=(1, 1, 3), seed=3)
    img[:12, :12] = 77  # a constant cell (lo == hi for colour channels)
    img[12:24, 12:24] = np.linspace(0, 255, 12 * 12 * 3).reshape(12, 12, 3).astype(np.uint8)  # ramps
    cell = 12
    stats = CellStatistics(img, cell)
    i = rng.integers(0, stats.num_cells, 60)
    j = rng.integers(0, stats.num_cells, 60)
    i[:3], j[:3] = 0, [0, 1, 2 * stats.cols + 1]
    ours = stats.pair_similarity(i, j)
    maps = _reference_maps(img)
    ref = np.array([_reference_pair_similarity(maps, cell, a, b, stats.cols) for a, b in zip(i, j)])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    # early rejection keeps every decision
    fast = stats.pair_similarity(i, j, threshold=0.5)
    assert np.array_equal(fast >= 0.5, ours >= 0.5)
    # more cells than one block of the chunked tables and grouped keys (1023/1024 cells)
    big = make_photo(8, 10, region=(1, 1, 5), seed=4)[:, :, ::-1].copy()
    stats = CellStatistics(big, 6)
    assert stats.num_cells > 2048
    i = rng.integers(0, stats.num_cells, 40)
    j = np.clip(i + rng.integers(-70, 70, 40), 0, stats.num_cells - 1)
    maps = _reference_maps(big)
    ref = np.array([_reference_pair_similarity(maps, 6, a, b, stats.cols) for a, b in zip(i, j)])
    np.testing.assert_allclose(stats.pair_similarity(i, j), ref, rtol=0, atol=1e-12)


def test_finds_known_uniform_region_with_correct_bounds():
    img = make_photo(12, 16, region=(3, 2, 8))
    res = extract_textures(img, "synthetic", cell_size=CELL, min_cells=7)
    assert res.reason is None and len(res.textures) == 1
    tex = res.textures[0]
    assert tex.box == (3 * CELL, 2 * CELL, 8 * CELL)
    assert tex.image.shape == (320, 320, 3) and np.array_equal(tex.image, img[80:400, 120:440])
    assert 0.5 <= tex.score <= 1 and tex.cell_size == CELL and tex.source_id == "synthetic"
    assert tex.file_name.startswith("synthetic_0_Score_") and tex.file_name.endswith("_TileSize40_Texture.jpg")
    side, score = find_uniform_squares(CellStatistics(img, CELL))
    assert side[2, 3] == 8 and side.max() == 8 and np.isfinite(score[2, 3])
    # every non-contained square of the region without grouping: all inside the region
    raw = extract_textures(img, "synthetic", one_per_region=False)
    assert all(120 <= t.box[0] and 80 <= t.box[1] and t.box[0] + t.box[2] <= 440 and t.box[1] + t.box[2] <= 400
               for t in raw.textures)


def test_region_smaller_than_minimum_is_not_reported():
    res = extract_textures(make_photo(10, 10, region=(1, 1, 6)), "x", min_cells=7)
    assert res.textures == [] and "no uniform region" in res.reason


def test_textureless_region_rejected_and_reported():
    res = extract_textures(make_photo(12, 16, region=(3, 2, 8), flat=True), "flat")
    assert res.textures == [] and res.num_textureless >= 1 and "textureless" in res.reason
    kept = extract_textures(make_photo(12, 16, region=(3, 2, 8), flat=True), "flat", reject_textureless=False)
    assert len(kept.textures) == 1
    assert is_textureless(np.full((80, 80, 3), 250, np.uint8))


def test_image_smaller_than_the_grid_is_reported_not_an_error():
    res = extract_textures(np.zeros((100, 90, 3), np.uint8), "tiny")
    assert res.textures == [] and "too small" in res.reason and res.grid == (2, 2)


def test_large_images_are_analysed_shrunk_and_cropped_at_full_resolution():
    img = make_photo(12, 16, region=(3, 2, 8))
    big = cv2.resize(img, (img.shape[1] * 2, img.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
    res = extract_textures(big, "big", max_image_size=img.shape[0])
    assert len(res.textures) == 1 and res.textures[0].box == (240, 160, 640)
    assert res.textures[0].image.shape == (640, 640, 3)


def test_bad_arguments_raise_typed_errors():
    from matseg_hub.errors import MatSegInputError

    with pytest.raises(MatSegInputError):
        extract_textures(np.zeros((100, 100), np.uint8))
    with pytest.raises(MatSegInputError):
        extract_textures(np.zeros((100, 100, 3), np.uint8), cell_size=1)


@pytest.mark.parametrize("bad", [dict(cell_size=0), dict(cell_size=1), dict(min_cells=0), dict(sim_threshold=-0.1),
                                 dict(max_textures=0), dict(max_image_size=10), dict(workers=0),
                                 dict(num_shards=0), dict(shard_index=2, num_shards=2)])
def test_folder_run_checks_its_parameters_before_any_work(tmp_path, bad):
    from matseg_hub.errors import MatSegInputError

    src = tmp_path / "photos"
    src.mkdir()
    cv2.imwrite(str(src / "p.jpg"), make_photo(12, 16, region=(3, 2, 8))[:, :, ::-1])
    with pytest.raises(MatSegInputError):
        extract_textures_folder(src, tmp_path / "out", show_progress=False, **bad)
    assert not (tmp_path / "out").exists()  # nothing written, so a corrected run starts clean


def test_grayscale_alpha_16bit_and_corrupt_files(tmp_path):
    img = make_photo(12, 16, region=(3, 2, 8))
    src = tmp_path / "photos"
    src.mkdir()
    bgr = img[:, :, ::-1]
    cv2.imwrite(str(src / "gray.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(src / "alpha.png"), np.dstack([bgr, np.full(img.shape[:2], 200, np.uint8)]))
    cv2.imwrite(str(src / "deep.png"), bgr.astype(np.uint16) * 257)
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (src / "licenses.json").write_text(json.dumps({"alpha.png": "CC BY 2.0", "deep": "CC0"}))
    report = extract_textures_folder(src, tmp_path / "out", show_progress=False)
    assert report.num_images == 4 and [f for f, _ in report.failed] == ["broken.jpg"]
    names = sorted(p.name for p in (tmp_path / "out").glob("*.jpg"))
    assert names and {n.split("_")[0] for n in names} == {"alpha", "deep", "gray"}
    lic = load_license_map(tmp_path / "out")
    assert lic[[n for n in names if n.startswith("alpha")][0]] == "CC BY 2.0"
    assert lic[[n for n in names if n.startswith("deep")][0]] == "CC0"
    assert lic[[n for n in names if n.startswith("gray")][0]] == "unknown"
    # alpha and 16-bit photos give exactly the RGB photo's texture box
    for stem in ("alpha", "deep"):
        done = json.loads((tmp_path / "out" / ".done" / f"{stem}.png.json").read_text())
        assert [(t["x"], t["y"], t["size"]) for t in done["textures"]] == [(120, 80, 320)]


def test_file_names_round_trip():
    name = texture_file_name("0a5d2c29a13d083e", 14, 0.59427, 40)
    assert name == "0a5d2c29a13d083e_14_Score_5942_TileSize40_Texture.jpg"
    assert parse_texture_file_name(name) == {"source_id": "0a5d2c29a13d083e", "index": 14, "score": 0.5942,
                                             "cell_size": 40}
    odd = parse_texture_file_name("0a08b4d895083a499_Score_6286_TileSize40_Texture.jpg")
    assert odd["source_id"] == "0a08b4d895083a499" and odd["index"] == -1 and odd["cell_size"] == 40
    assert parse_texture_file_name("brick.png")["source_id"] == "brick"


# ---------------------------------------------------------------------------------------------------------
# real photos (../shared/data)
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stem", ["0a4c64de2e2a98fc", "0a3c831ea7781a6d"])
def test_reproduces_the_authors_published_textures(shared_data, stem):
    """The authors' textures of these photos (``textures/``, made with 6-cell squares) come out identical."""
    published = sorted((shared_data / "textures").glob(f"{stem}_*"))
    assert published
    img = read_image(shared_data / "natural_images" / f"{stem}.jpg")
    res = extract_textures(img, stem, min_cells=6, one_per_region=False, reject_textureless=False,
                           reference_geometry=True)
    ours = {t.file_name: t for t in res.textures}
    for path in published:
        assert path.name in ours, (path.name, sorted(ours))
        theirs = read_image(path).astype(np.int16)
        mine = ours[path.name].image.astype(np.int16)
        assert mine.shape == theirs.shape and np.abs(mine - theirs).mean() < 3  # JPEG re-encoding only


def test_natural_photos_default_mode(shared_data):
    stem = "0a64f17d28d83bfe"
    img = read_image(shared_data / "natural_images" / f"{stem}.jpg")
    res = extract_textures(img, stem)
    assert res.textures, res.reason
    h, w = img.shape[:2]
    for t in res.textures:
        x, y, s = t.box
        assert s >= 7 * 40 and s % 40 == 0 and x + s <= w and y + s <= h and 0.5 <= t.score <= 1
        assert not is_textureless(t.image)
    boxes = [t.box for t in res.textures]  # one per overlapping group: no two overlap
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            (xa, ya, sa), (xb, yb, sb) = boxes[a], boxes[b]
            assert not (xa < xb + sb and xb < xa + sa and ya < yb + sb and yb < ya + sa)

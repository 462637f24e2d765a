"""Segmentation sets: the four raw layouts -> Hub dataset -> load_dataset / load_segmentation, bit-exact masks,
licences, job arrays, resume, bad input through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from datasets import load_dataset
from PIL import Image

from matseg_hub.errors import MatSegFormatError, MatSegInputError, MatSegOutputError, MissingDependencyError
from matseg_hub.segmentation.dataset import build_segmentation_dataset, load_segmentation
from matseg_hub.segmentation.formats import detect_format, iter_segmentation_items

ENV = dict(os.environ, MATSEG_DISABLE_PROGRESS="1")
SIZE = (48, 64)  # H, W


def _blobs(rng, n, shape=SIZE):
    """n disjoint, non-empty binary regions (vertical bands with random rectangles inside): bool [n, H, W]."""
    h, w = shape
    out = np.zeros((n, h, w), bool)
    edges = np.linspace(0, w, n + 1).astype(int)
    for k in range(n):
        x0, x1 = edges[k], edges[k + 1]
        y0 = int(rng.integers(0, h // 2))
        y1 = int(rng.integers(y0 + 2, h + 1))
        out[k, y0:y1, x0 + 1:x1 - 1] = True
    return out


def _photo(rng, shape=SIZE):
    return rng.integers(0, 256, size=shape + (3,), dtype=np.uint8)


def _write_png(path: Path, array: np.ndarray, mode=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)


def make_masks_folder(root: Path, layout: str, num=4, seed=0):
    """images/<stem>.png + masks/<stem>/<region>.png (``per_region``) or masks/<stem>.png (``labels``).

    Returns {stem: (masks bool [R, H, W], region names)}."""
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(num):
        stem = f"im{i:02d}"
        _write_png(root / "images" / f"{stem}.png", _photo(rng))
        masks = _blobs(rng, 2 + i % 3)
        if layout == "per_region":
            names = [f"region_{chr(97 + k)}" for k in range(len(masks))]
            for m, name in zip(masks, names):
                _write_png(root / "masks" / stem / f"{name}.png", m.astype(np.uint8) * 255)
        else:
            values = [1, 7, 40, 255][-len(masks):]  # 255 is a region like any other value
            labels = np.zeros(SIZE, np.uint8)
            for m, v in zip(masks, values):
                labels[m] = v
            _write_png(root / "masks" / f"{stem}.png", labels)
            names = [str(v) for v in values]
        truth[stem] = (masks, names)
    (root / "licenses.json").write_text(json.dumps({"im01.png": "CC-BY-4.0", "im02": "CC0-1.0"}))
    return truth


def make_labpics_folder(root: Path, num=3, seed=1):
    """LabPics 2 layout: <name>/Image.jpg, Data.json (MaterialsAndParts -> MaskFilePath), Instance/*.png (RGB PNGs,
    the instance in the last channel, as the LabPics 2 readers take it). Each image also has an IsPart entry (a
    vessel part), which is not a material. Returns {name: (masks, names)}."""
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(num):
        name = f"Koen{i}"
        folder = root / name
        (folder / "Instance").mkdir(parents=True)
        cv2.imwrite(str(folder / "Image.jpg"), _photo(rng))
        masks = _blobs(rng, 2 + i % 2)
        entries = {}
        for k, m in enumerate(masks):
            png = np.zeros(SIZE + (3,), np.uint8)
            png[m, 2] = 255  # last channel: the instance
            png[:, :, 0] = 200  # other channels carry nothing (e.g. an overlay colour)
            Image.fromarray(png).save(folder / "Instance" / f"{k + 1}.png")
            entries[str(k + 1)] = {"MaskFilePath": f"/Instance/{k + 1}.png",
                                   "MaterialType_ClassNames": ["Liquid GENERAL", "Foam"] if k == 0 else ["Solid"],
                                   "IsPart": False, "IsOnSurface": False, "IsScattered": False}
        part = np.zeros(SIZE + (3,), np.uint8)
        part[:5, :5, 2] = 255
        Image.fromarray(part).save(folder / "Instance" / "99.png")
        entries["99"] = {"MaskFilePath": "/Instance/99.png", "MaterialType_ClassNames": ["V Cork"], "IsPart": True}
        (folder / "Data.json").write_text(json.dumps({"MaterialsAndParts": entries, "Vessels": {}}))
        truth[name] = (masks, ["Liquid GENERAL, Foam"] + ["Solid"] * (len(masks) - 1))
    return truth


def make_materialistic_folder(root: Path, num=3, seed=2):
    """Materialistic real test layout: images/<name>.png + masks/<name>.tif, a float32 3-channel label map (the
    values of their .exr; the red channel holds the labels). Returns {name: (masks, names)}."""
    rng = np.random.default_rng(seed)
    (root / "masks").mkdir(parents=True)
    truth = {}
    for i in range(num):
        name = f"t{i}"
        _write_png(root / "images" / f"{name}.png", _photo(rng))
        masks = _blobs(rng, 3)
        values = [0.25, 0.5, 1.0]
        labels = np.zeros(SIZE + (3,), np.float32)
        for m, v in zip(masks, values):
            labels[m, 2] = v  # cv2 writes BGR: channel 2 is red
            labels[m, 0] = 1.0 - v
        assert cv2.imwrite(str(root / "masks" / f"{name}.tif"), labels)
        truth[name] = (masks, ["0.25", "0.5", "1"])
    return truth


def _decode_mask(value) -> np.ndarray:
    arr = np.asarray(value)
    assert set(np.unique(arr)) <= {0, 255}
    return arr == 255


def _check_built(out: Path, truth, licenses=None):
    """The built folder, read by datasets.load_dataset AND by load_segmentation, holds exactly ``truth``."""
    ds = load_dataset(str(out), split="test")
    assert ds["image_id"] == sorted(truth) or sorted(ds["image_id"]) == sorted(truth)
    for row in ds:
        masks, names = truth[row["image_id"]]
        got = np.stack([_decode_mask(m) for m in row["masks"]])
        np.testing.assert_array_equal(got, masks)
        assert row["region_names"] == names
        assert (row["height"], row["width"]) == SIZE
        if licenses is not None:
            assert row["license"] == licenses.get(row["image_id"], "unknown")
    items = list(load_segmentation(out))
    assert sorted(i.image_id for i in items) == sorted(truth)
    for item in items:
        masks, names = truth[item.image_id]
        assert item.masks.dtype == bool and item.image.dtype == np.uint8 and item.image.shape == SIZE + (3,)
        np.testing.assert_array_equal(item.masks, masks)
        assert item.region_names == names
    return ds


# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["per_region", "labels"])
def test_masks_layouts_build_and_load(tmp_path, layout):
    truth = make_masks_folder(tmp_path / "raw", layout)
    out = build_segmentation_dataset(tmp_path / "raw", tmp_path / "out", format="masks")
    assert out == tmp_path / "out"
    _check_built(out, truth, licenses={"im01": "CC-BY-4.0", "im02": "CC0-1.0"})
    # the raw folder reads the same through load_segmentation (format detected), images bit-exact (PNG stored as is)
    raw_items = list(load_segmentation(tmp_path / "raw"))
    built_items = list(load_segmentation(out))
    assert [i.image_id for i in raw_items] == [i.image_id for i in built_items] == sorted(truth)
    for a, b in zip(raw_items, built_items):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.masks, b.masks)
        assert a.license == b.license
    assert [i.image_id for i in load_segmentation(out, limit=2)] == ["im00", "im01"]
    card = (out / "README.md").read_text()
    assert "configs:" in card and "data/test-*.parquet" in card and "`CC-BY-4.0`: 1" in card and "`unknown`: 2" in card


def test_scenes_from_generate_2d_are_a_test_set_with_known_truth(tmp_path):
    from matseg_hub.synthetic.layout import read_scene
    from matseg_hub.synthetic.rows import scene_license

    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "generate", "2d", "--num", "3", "--size", "64",
                           "--seed", "4", "--output", str(tmp_path / "scenes"), "--no-progress"],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr
    out = build_segmentation_dataset(tmp_path / "scenes", tmp_path / "out")  # format detected: scenes
    ds = load_dataset(str(out), split="test")
    assert ds["image_id"] == ["0", "1", "2"]
    for row, item in zip(ds, load_segmentation(out)):
        scene = read_scene(tmp_path / "scenes" / row["image_id"])
        keep = [k for k in range(scene.num_materials) if (scene.masks[k] >= 0.5).any()]
        expected = scene.masks[keep] >= 0.5
        np.testing.assert_array_equal(np.stack([_decode_mask(m) for m in row["masks"]]), expected)
        np.testing.assert_array_equal(item.masks, expected)
        assert len(row["masks"]) == len(keep) >= 1
        assert row["region_names"] == [f"mask{k + 1:03d}" for k in keep]
        assert row["license"] == item.license == scene_license(scene.metadata)
        # the JPEG is stored as generated: decoding it gives the scene's pixels
        np.testing.assert_array_equal(item.image, scene.rgb)


def test_labpics_layout(tmp_path):
    truth = make_labpics_folder(tmp_path / "LabPics" / "Test")
    assert detect_format(tmp_path / "LabPics" / "Test") == "labpics"
    out = build_segmentation_dataset(tmp_path / "LabPics" / "Test", tmp_path / "out", format="labpics")
    ds = _check_built(out, truth)
    assert all("V Cork" not in names for names in ds["region_names"])  # IsPart entries are not materials


def test_materialistic_layout(tmp_path):
    truth = make_materialistic_folder(tmp_path / "real")
    assert detect_format(tmp_path / "real") == "materialistic"
    out = build_segmentation_dataset(tmp_path / "real", tmp_path / "out", format="materialistic")
    _check_built(out, truth)


def test_materialistic_exr_without_a_reader_is_a_typed_error(tmp_path):
    root = tmp_path / "real"
    _write_png(root / "images" / "a.png", np.zeros(SIZE + (3,), np.uint8))
    (root / "masks").mkdir()
    (root / "masks" / "a.exr").write_bytes(b"v/1\x01not really an exr")
    assert detect_format(root) == "materialistic"
    try:
        import OpenEXR  # noqa: F401
        expected = MatSegFormatError
    except ImportError:
        expected = (MissingDependencyError, MatSegFormatError)
    with pytest.raises(expected) as info:
        list(load_segmentation(root))
    assert "exr" in str(info.value).lower() or "OpenEXR" in str(info.value)


def test_hub_rows_with_a_label_mask_column(tmp_path):
    """A dataset whose rows hold ``image`` + ``mask`` (one label map) loads directly: every nonzero value a region."""
    import datasets

    rng = np.random.default_rng(5)
    masks = _blobs(rng, 3)
    labels = np.zeros(SIZE, np.uint8)
    for m, v in zip(masks, (3, 9, 12)):
        labels[m] = v
    image = _photo(rng)
    ds = datasets.Dataset.from_dict({"image": [Image.fromarray(image)], "mask": [Image.fromarray(labels)]},
                                    features=datasets.Features({"image": datasets.Image(), "mask": datasets.Image()}))
    (tmp_path / "hub" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet"))
    items = list(load_segmentation(tmp_path / "hub"))
    assert len(items) == 1 and items[0].image_id == "0" and items[0].license == "unknown"
    np.testing.assert_array_equal(items[0].masks, masks)
    np.testing.assert_array_equal(items[0].image, image)
    assert items[0].region_names == ["3", "9", "12"]


def test_job_array_is_disjoint_and_complete(tmp_path):
    truth = make_masks_folder(tmp_path / "raw", "per_region", num=5)
    out = tmp_path / "out"
    assert build_segmentation_dataset(tmp_path / "raw", out, shard=1, num_shards=2) is None
    assert not out.exists()
    assert build_segmentation_dataset(tmp_path / "raw", out, shard=0, num_shards=2) == out
    files = sorted(p.name for p in (out / "data").glob("*.parquet"))
    assert files == ["test-00000-00000.parquet", "test-00001-00000.parquet"]
    import pyarrow.parquet as pq

    per_job = [pq.read_table(out / "data" / f, columns=["image_id"]).column("image_id").to_pylist() for f in files]
    assert per_job == [["im00", "im02", "im04"], ["im01", "im03"]]
    _check_built(out, truth)


def test_interrupted_build_resumes_to_identical_bytes(tmp_path):
    make_masks_folder(tmp_path / "raw", "labels", num=6)

    def interrupt(done, total):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_segmentation_dataset(tmp_path / "raw", tmp_path / "a", max_shard_size=1, row_group_size=1,
                                   on_progress=interrupt)
    assert not (tmp_path / "a").exists()
    assert len(list((tmp_path / "a.partial" / "data").glob("*.parquet"))) == 4  # closed shards are kept
    seen = []
    build_segmentation_dataset(tmp_path / "raw", tmp_path / "a", max_shard_size=1, row_group_size=1,
                               on_progress=lambda d, t: seen.append(t))
    assert seen[-1] == 2  # only the images not yet on disk were redone
    build_segmentation_dataset(tmp_path / "raw", tmp_path / "b", max_shard_size=1, row_group_size=1)
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert a == b and len([p for p in a if p.suffix == ".parquet"]) == 6
    for rel in a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    with pytest.raises(MatSegOutputError, match="--overwrite"):
        build_segmentation_dataset(tmp_path / "raw", tmp_path / "b")
    assert build_segmentation_dataset(tmp_path / "raw", tmp_path / "b", overwrite=True) == tmp_path / "b"


def _bad_folder(root: Path, case: str) -> str:
    """A good masks folder plus one bad item; returns the name of the file the error must name."""
    make_masks_folder(root, "per_region", num=2)
    rng = np.random.default_rng(9)
    if case == "size":
        _write_png(root / "images" / "bad.png", _photo(rng))
        _write_png(root / "masks" / "bad" / "r.png", np.full((10, 10), 255, np.uint8))
        return "r.png"
    if case == "empty":
        _write_png(root / "images" / "bad.png", _photo(rng))
        _write_png(root / "masks" / "bad" / "r.png", np.zeros(SIZE, np.uint8))
        return "r.png"
    if case == "label16":
        _write_png(root / "images" / "bad.png", _photo(rng))
        labels = np.zeros(SIZE, np.uint16)
        labels[:10, :10] = 300
        Image.fromarray(labels).save(root / "masks" / "bad.png")
        return "bad.png"
    if case == "no_mask":
        _write_png(root / "images" / "bad.png", _photo(rng))
        return "bad.png"
    if case == "corrupt":
        (root / "images" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
        _write_png(root / "masks" / "bad" / "r.png", np.full(SIZE, 255, np.uint8))
        return "bad.jpg"
    raise AssertionError(case)


BAD_CASES = {"size": "10x10 but its image is 64x48", "empty": "empty mask", "label16": "16-bit label PNG",
             "no_mask": "image without any mask", "corrupt": "cannot decode the image"}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_line_naming_the_file_via_the_cli(tmp_path, case):
    name = _bad_folder(tmp_path / "raw", case)
    with pytest.raises(MatSegFormatError) as info:
        list(iter_segmentation_items(tmp_path / "raw", "masks"))
    assert info.value.path is not None and Path(info.value.path).name == name
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "build", "segmentation", "--source",
                           str(tmp_path / "raw"), "--format", "masks", "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("matseg: error: "), proc.stderr
    assert name in lines[0] and BAD_CASES[case] in lines[0]
    assert not (tmp_path / "out").exists()


def test_skip_bad_skips_lists_and_counts(tmp_path):
    root = tmp_path / "raw"
    for case in sorted(BAD_CASES):
        sub = tmp_path / case
        _bad_folder(sub, case)
        for path in sorted(sub.rglob("*")):
            rel = path.relative_to(sub)
            if path.is_file() and ("bad" in rel.as_posix()):
                target = root / rel.as_posix().replace("bad", f"bad_{case}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
    make_masks_folder(root, "per_region", num=2)
    proc = subprocess.run([sys.executable, "-m", "matseg_hub", "build", "segmentation", "--source", str(root),
                           "--format", "masks", "--output", str(tmp_path / "out"), "--skip-bad"],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "skipped 5 bad image(s)" in proc.stderr
    ds = load_dataset(str(tmp_path / "out"), split="test")
    assert ds["image_id"] == ["im00", "im01"]
    card = (tmp_path / "out" / "README.md").read_text()
    for case in BAD_CASES:
        assert f"`bad_{case}`" in card
    assert str(root) not in card  # local paths are not published


def test_wrong_source_and_format(tmp_path):
    from matseg_hub.cli.build_segmentation import FORMATS as CLI_FORMATS
    from matseg_hub.segmentation.formats import FORMATS

    assert CLI_FORMATS == FORMATS  # the command's --format choices are the readers'
    with pytest.raises(MatSegInputError, match="does not exist"):
        list(load_segmentation(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MatSegFormatError, match="not a segmentation set"):
        list(load_segmentation(tmp_path / "empty"))
    make_masks_folder(tmp_path / "raw", "labels", num=1)
    with pytest.raises(MatSegInputError, match="unknown segmentation format"):
        list(load_segmentation(tmp_path / "raw", format="coco"))
    with pytest.raises(MatSegFormatError, match="not a LabPics folder"):
        list(load_segmentation(tmp_path / "raw", format="labpics"))


HUB_CLIENT = """
import json
import numpy as np
from matseg_hub.segmentation.dataset import load_segmentation
out = [{"id": i.image_id, "masks": np.packbits(i.masks).tolist(), "shape": list(i.masks.shape),
         "names": i.region_names, "license": i.license, "pixel": i.image[5, 7].tolist()}
       for i in load_segmentation("testns/segmentation")]
print(json.dumps(out))
"""


@pytest.mark.hub
def test_load_segmentation_by_hub_id(local_hub, tmp_path):
    from hubserver import run_client

    truth = make_masks_folder(tmp_path / "raw", "per_region", num=3)
    built = build_segmentation_dataset(tmp_path / "raw", tmp_path / "segmentation", max_shard_size="20KB")
    local_hub.publish(built, "testns/segmentation", repo_type="dataset")
    rows = json.loads(run_client(HUB_CLIENT, local_hub, timeout=300).stdout.strip().splitlines()[-1])
    local = list(load_segmentation(tmp_path / "raw"))
    assert [r["id"] for r in rows] == [i.image_id for i in local] == sorted(truth)
    for row, item in zip(rows, local):
        assert row["shape"] == list(item.masks.shape)
        assert row["masks"] == np.packbits(item.masks).tolist()
        assert row["names"] == item.region_names and row["license"] == item.license
        assert row["pixel"] == item.image[5, 7].tolist()


def test_a_built_folder_is_not_a_raw_source(tmp_path):
    make_masks_folder(tmp_path / "raw", "labels", num=1)
    built = build_segmentation_dataset(tmp_path / "raw", tmp_path / "built")
    with pytest.raises(MatSegFormatError, match="built dataset folder"):
        build_segmentation_dataset(built, tmp_path / "again")
    assert [i.image_id for i in load_segmentation(built)] == ["im00"]


def test_resume_redoes_rows_whose_licence_map_changed(tmp_path):
    """A licences.json added while a build was interrupted reaches the rows of the shards closed before it."""
    import pyarrow.parquet as pq

    make_masks_folder(tmp_path / "raw", "labels", num=4)

    def interrupt(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_segmentation_dataset(tmp_path / "raw", tmp_path / "a", max_shard_size=1, row_group_size=1,
                                   on_progress=interrupt)
    ids = sorted(p.stem for p in (tmp_path / "raw" / "images").iterdir())
    (tmp_path / "raw" / "licenses.json").write_text(json.dumps({i: "cc-by-4.0" for i in ids}))
    out = build_segmentation_dataset(tmp_path / "raw", tmp_path / "a", max_shard_size=1, row_group_size=1)
    licences = [lic for f in sorted((out / "data").glob("*.parquet"))
                for lic in pq.read_table(f, columns=["license"]).column("license").to_pylist()]
    assert licences == ["cc-by-4.0"] * 4


@pytest.mark.parametrize("fmt", ["masks", "materialistic"])
def test_resume_fingerprint_names_the_mask_of_a_stem_with_glob_characters(tmp_path, fmt):
    from matseg_hub.segmentation.formats import segmentation_item_files

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    _write_png(tmp_path / "images" / "a[1].png", _photo(np.random.default_rng(0)))
    _write_png(tmp_path / "masks" / "a[1].png", np.ones(SIZE, np.uint8))
    _write_png(tmp_path / "masks" / "a1.png", np.ones(SIZE, np.uint8))  # what the unescaped pattern a[1].* matched
    names = [p.name for p in segmentation_item_files(tmp_path, "a[1]", fmt) if p.is_file()]
    assert "a[1].png" in names[1:] and "a1.png" not in names

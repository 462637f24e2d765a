"""The benchmark's Hub dataset: builder -> Parquet -> load_dataset (also streaming), card, resume, job arrays, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import load_dataset

from matseg_hub.benchmark.format import read_benchmark, read_benchmark_item
from matseg_hub.benchmark.dataset import build_benchmark_dataset, load_benchmark
from matseg_hub.errors import MatSegFormatError, MatSegInputError
from matseg_hub.testing import make_benchmark_folder


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    return make_benchmark_folder(root, num_images=5, size=(90, 140), num_groups=[2, 3, 4], orientation=6,
                                 relations={1: "(1,3)\n[2,3]\n", 2: "[1,2,4]\n"}, seed=3)


@pytest.fixture(scope="module")
def built(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "matseg"
    assert build_benchmark_dataset(raw, out) == out
    return out


def _rows_equal_items(rows, items):
    assert [r["image_id"] for r in rows] == [i.image_id for i in items]
    for row, item in zip(rows, items):
        assert row["group_ids"] == item.group_ids
        np.testing.assert_array_equal(np.array(row["group_similarity"]), item.group_similarity)
        assert row["relations"] == item.relations
        for g in row["groups"]:
            pts = np.array([[p["x"], p["y"], p["radius"]] for p in g["points"]])
            np.testing.assert_array_equal(pts, item.groups[g["group_id"]])
        # datasets applies the EXIF orientation on decode: the decoded image is in the points' frame
        assert row["image"].size == (item.width, item.height) == (140, 90)
        np.testing.assert_allclose(np.asarray(row["image"].convert("RGB"), dtype=float),
                                   item.image().astype(float), atol=3)


def test_layout_card_and_preview(built):
    assert sorted(p.name for p in built.iterdir()) == [".matseg_output.json", "README.md", "data", "preview.jpg"]
    shards = sorted((built / "data").glob("*.parquet"))
    assert shards and all(p.name.startswith("test-") for p in shards)
    manifest = json.loads((built / ".matseg_output.json").read_text())  # what this tool wrote, and nothing else
    assert manifest == {"tool": "matseg-hub", "kind": "build benchmark",
                        "files": sorted(["README.md", "preview.jpg"] + [f"data/{p.name}" for p in shards])}
    card = (built / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "cc0-1.0"
    assert meta["configs"][0]["data_files"][0] == {"split": "test", "path": "data/test-*.parquet"}
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 5
    assert [f["name"] for f in meta["dataset_info"]["features"]][:3] == ["image", "image_id", "width"]
    assert "@inproceedings{eppel2024matseg" in card and "`group_similarity`" in card and "preview.jpg" in card
    assert (built / "preview.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert not list(built.parent.glob("*.partial"))


def test_parquet_holds_original_jpeg_bytes(raw, built):
    table = pq.read_table(sorted((built / "data").glob("*.parquet"))[0])
    first = table.column("image")[0].as_py()
    assert first["bytes"] == (raw / "images" / "img_000.jpg").read_bytes()


def test_load_dataset_round_trip(raw, built):
    ds = load_dataset(str(built), split="test")
    _rows_equal_items(list(ds), list(read_benchmark(raw)))


def test_load_dataset_streaming(raw, built):
    ds = load_dataset(str(built), split="test", streaming=True)
    _rows_equal_items(list(ds), list(read_benchmark(raw)))


def test_load_dataset_by_folder_name_from_parent(built):
    code = "from datasets import load_dataset; ds = load_dataset('matseg', split='test'); print(len(ds), ds[1]['image_id'])"
    out = subprocess.run([sys.executable, "-c", code], cwd=built.parent, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5", "img_001"]


def test_load_benchmark_from_every_source(raw, built):
    expected = [(i.image_id, i.group_ids, i.group_similarity.tolist()) for i in read_benchmark(raw)]
    for source in (raw, built):
        got = [(i.image_id, i.group_ids, i.group_similarity.tolist()) for i in load_benchmark(source)]
        assert got == expected
    from_built = next(load_benchmark(built))
    assert from_built.image_bytes == (raw / "images" / "img_000.jpg").read_bytes()
    np.testing.assert_array_equal(from_built.image(), read_benchmark_item(raw, "img_000").image())


def test_load_benchmark_default_is_builtin_sample():
    items = list(load_benchmark())
    assert [i.image_id for i in items] == ["20230913_185027"]


def test_load_benchmark_bad_source(tmp_path):
    with pytest.raises(MatSegInputError, match="does not exist"):
        list(load_benchmark(tmp_path / "nope" / "deeper"))


def test_small_shards(raw, tmp_path):
    out = build_benchmark_dataset(raw, tmp_path / "m", max_shard_size=1)
    shards = sorted((out / "data").glob("*.parquet"))
    assert len(shards) == 1  # one row group of 16 rows max: 5 rows fit in one flush
    out = tmp_path / "m2"
    big = make_benchmark_folder(tmp_path / "raw40", num_images=40, size=(40, 60), seed=1)
    build_benchmark_dataset(big, out, max_shard_size="1KB")
    shards = sorted((out / "data").glob("*.parquet"))
    assert len(shards) == 3  # flushed every 16 rows, each flush closes a shard over 1 KB
    assert len(load_dataset(str(out), split="test")) == 40


def test_bad_item_stops_without_touching_output(raw, tmp_path):
    bad = make_benchmark_folder(tmp_path / "bad", num_images=3, size=(60, 80), seed=2)
    (bad / "data" / "img_001" / "data.json").write_text("{not json")
    out = build_benchmark_dataset(raw, tmp_path / "out")  # a previous build, rebuilt from a broken source
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(MatSegFormatError, match=r"img_001/data\.json: malformed JSON"):
        build_benchmark_dataset(bad, out, overwrite=True)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_skip_bad_reports_in_card(tmp_path):
    bad = make_benchmark_folder(tmp_path / "bad", num_images=4, size=(60, 80), seed=2)
    (bad / "data" / "img_001" / "group_relations.txt").write_text("(1,7)\n")
    jpg = bad / "images" / "img_002.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])
    out = build_benchmark_dataset(bad, tmp_path / "out", skip_bad=True)
    ds = load_dataset(str(out), split="test")
    assert ds["image_id"] == ["img_000", "img_003"]
    card = (out / "README.md").read_text()
    assert "`img_001`" in card and "unknown group id '7'" in card and "`img_002`" in card and "corrupt" in card


def test_interrupted_build_resumes(tmp_path):
    raw = make_benchmark_folder(tmp_path / "raw", num_images=20, size=(40, 60), seed=5)
    out = tmp_path / "out"

    def interrupt(done, total):
        if done == 18:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_benchmark_dataset(raw, out, max_shard_size=1, on_progress=interrupt)
    assert not out.exists()
    partial = tmp_path / "out.partial"
    assert len(list((partial / "data").glob("*.parquet"))) == 1  # the first 16 rows are safe on disk
    seen = []
    build_benchmark_dataset(raw, out, max_shard_size=1, on_progress=lambda d, t: seen.append(t))
    assert seen[-1] == 4  # only the 4 rows that were not on disk are redone
    ds = load_dataset(str(out), split="test")
    assert ds["image_id"] == [f"img_{i:03d}" for i in range(20)]
    assert not partial.exists()


def test_job_array_two_shards(tmp_path):
    raw = make_benchmark_folder(tmp_path / "raw", num_images=7, size=(40, 60), seed=6)
    out = tmp_path / "out"
    assert build_benchmark_dataset(raw, out, shard_index=1, num_shards=2) is None  # not the last job yet
    assert not out.exists()
    assert build_benchmark_dataset(raw, out, shard_index=0, num_shards=2) == out
    ids = sorted(load_dataset(str(out), split="test")["image_id"])
    assert ids == [f"img_{i:03d}" for i in range(7)]
    meta = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 7


def test_cli_subprocess(raw, tmp_path):
    out = tmp_path / "cli" / "matseg"
    env = dict(os.environ, MATSEG_DISABLE_PROGRESS="1")
    proc = subprocess.run([sys.executable, "builders/matseg.py", "--source", str(raw), "--output", str(out),
                           "--max-shard-size", "10MB"], capture_output=True, text=True, timeout=120, env=env,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    assert len(load_dataset(str(out), split="test")) == 5
    bad = subprocess.run([sys.executable, "-m", "matseg_hub", "build", "benchmark", "--source", str(tmp_path / "x"),
                          "--output", str(tmp_path / "y")], capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 1 and "not a MatSeg benchmark folder" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("which", ["parent", "images", "no_images"])
def test_wrong_folder_says_what_was_expected(raw, tmp_path, which):
    if which == "parent":
        folder = raw.parent
        expected = f"did you mean {raw}"
    elif which == "images":
        folder, expected = raw / "images", f"did you mean {raw}"
    else:
        folder = tmp_path / "noimg"
        (folder / "data" / "img_000").mkdir(parents=True)
        (folder / "data" / "img_000" / "data.json").write_text("{}")
        expected = "not a MatSeg benchmark"
    with pytest.raises(MatSegFormatError, match=expected):
        list(load_benchmark(folder))


def test_job_arguments_are_validated(raw, tmp_path):
    from matseg_hub.hub.writer import iter_job_items

    with pytest.raises(MatSegInputError, match="--num-shards must be"):
        iter_job_items(range(3), 0, 0)
    with pytest.raises(MatSegInputError, match=r"--shard must be in \[0, 2\)"):
        iter_job_items(range(3), 2, 2)
    with pytest.raises(MatSegInputError, match="--shard"):
        build_benchmark_dataset(raw, tmp_path / "x", shard_index=5, num_shards=2)


def test_rerunning_one_job_over_a_finished_array_is_refused(tmp_path):
    raw = make_benchmark_folder(tmp_path / "raw", num_images=3, size=(40, 60), seed=6)
    out = tmp_path / "out"
    build_benchmark_dataset(raw, out, shard_index=0, num_shards=2)
    build_benchmark_dataset(raw, out, shard_index=1, num_shards=2)
    with pytest.raises(MatSegInputError, match="already a finished dataset"):
        build_benchmark_dataset(raw, out, shard_index=0, num_shards=2)
    assert not (tmp_path / "out.partial").exists()


def test_finalize_takes_over_a_dead_jobs_lock_and_fixes_stale_counts(tmp_path):
    from datasets import Features, Value

    from matseg_hub.hub.writer import DatasetRepoWriter, dataset_card_yaml

    features = Features({"k": Value("string")})
    writer = DatasetRepoWriter(tmp_path / "ds", features, split="test")
    with writer:
        for i in range(5):
            writer.write({"k": str(i)}, key=str(i))
    stale = dataset_card_yaml(features, {"test": {"num_examples": 2, "num_bytes": 1}}, license="cc0-1.0",
                              pretty_name="t") + "\n# t\n"
    lock = writer.work_dir / ".matseg_build" / "finalize.lock"
    import socket

    lock.write_text(f"{socket.gethostname()} 999999999")  # a process that does not exist
    out = writer.finalize(stale)
    assert out == tmp_path / "ds"
    meta = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 5
    assert (out / "README.md").read_text().endswith("# t\n")
    assert len(load_dataset(str(out), split="test")) == 5

"""Every command that writes a folder writes only what it owns (issue #12, items 1-3 and concurrent builds).

* an existing folder that is not the command's own output (no ``.matseg_output.json``) is refused, its files
  untouched; an output equal to, inside or holding a source is refused, the source untouched;
* ``--overwrite`` replaces only the files the command wrote (its manifest lists them), never a foreign one;
* an interrupted build resumes to the bytes of an uninterrupted one (preview included), redoing the shards
  whose inputs changed (a photo deleted, an annotation fixed);
* a second build into an output that is being built ends with a one-line typed error.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from datasets import load_dataset

from matseg_hub.benchmark.dataset import build_benchmark_dataset
from matseg_hub.errors import MatSegOutputError
from matseg_hub.hub.writer import DatasetRepoWriter
from matseg_hub.testing import make_benchmark_folder
from test_textures import make_photo

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "matseg_hub" / "resources" / "benchmark_sample"
ENV = dict(os.environ, MATSEG_DISABLE_PROGRESS="1")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A source folder for every writing command: raw benchmark, photos, textures, PBR materials, scene folders."""
    from matseg_hub.materials.pbr_generation import generate_pbr_folder
    from matseg_hub.synthetic.scenes2d import SceneConfig
    from matseg_hub.synthetic.sources import SceneSources
    from matseg_hub.synthetic.dataset import generate_folders
    from matseg_hub.materials.texture_extraction import extract_textures_folder

    root = tmp_path_factory.mktemp("inputs")
    raw = root / "raw"
    shutil.copytree(SAMPLE, raw)
    photos = root / "photos"
    photos.mkdir()
    for k in range(2):
        cv2.imwrite(str(photos / f"p{k}.jpg"), make_photo(12, 16, region=(1 + k, 2, 8), seed=k)[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 98])
    tex = root / "tex"
    assert extract_textures_folder(photos, tex, show_progress=False).num_textures > 0
    pbr = root / "pbr"
    generate_pbr_folder(tex, pbr, 2, seed=0, show_progress=False)
    scenes = root / "scenes"
    generate_folders(scenes, 2, seed=0, sources=SceneSources.from_spec(str(photos), str(tex), max_side=128),
                     config=SceneConfig(size=(48, 64)))
    return {"raw": raw, "photos": photos, "tex": tex, "pbr": pbr, "scenes": scenes}


def _commands(inputs):
    """command name -> (argv without --output, its source folder)."""
    gen2d = ["generate", "2d", "--num", "2", "--size", "48x64", "--natural-images", str(inputs["photos"]),
             "--textures", str(inputs["tex"]), "--no-progress"]
    return {
        "build benchmark": (["build", "benchmark", "--source", str(inputs["raw"])], inputs["raw"]),
        "build textures": (["build", "textures", "--input", str(inputs["tex"])], inputs["tex"]),
        "build pbr": (["build", "pbr", "--input", str(inputs["pbr"])], inputs["pbr"]),
        "build synthetic": (["build", "synthetic", "--from-folders", str(inputs["scenes"])], inputs["scenes"]),
        "generate 2d folders": (gen2d + ["--format", "folders"], inputs["photos"]),
        "generate 2d parquet": (gen2d + ["--format", "parquet"], inputs["photos"]),
        "generate textures": (["generate", "textures", "--input", str(inputs["photos"])], inputs["photos"]),
        "generate pbr": (["generate", "pbr", "--textures", str(inputs["tex"]), "--num", "2"], inputs["tex"]),
    }


COMMANDS = ["build benchmark", "build textures", "build pbr", "build synthetic", "generate 2d folders",
            "generate 2d parquet", "generate textures", "generate pbr"]
DATASET_COMMANDS = ["build benchmark", "build textures", "build pbr", "build synthetic", "generate 2d parquet"]


def _matseg(argv, cwd=None):
    return subprocess.run([sys.executable, "-m", "matseg_hub", *map(str, argv)], capture_output=True, text=True,
                          timeout=300, env=ENV, cwd=cwd)


def _tree(folder: Path):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(proc, *needles):
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and lines and lines[-1].startswith("matseg: error:"), proc.stderr
    for needle in needles:
        assert str(needle) in lines[-1], proc.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_a_folder_with_a_foreign_file_is_refused_and_kept(inputs, tmp_path, command):
    argv, _ = _commands(inputs)[command]
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_bytes(b"two years of work")
    proc = _matseg(argv + ["--output", out])
    _one_line_error(proc, out, ".matseg_output.json")
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    assert (out / "thesis.tex").read_bytes() == b"two years of work"
    assert not (tmp_path / "out.partial").exists()
    _one_line_error(_matseg(argv + ["--output", out, "--overwrite"]), out)  # --overwrite never takes a foreign folder
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("where", ["equal", "inside"])
def test_an_output_in_a_source_is_refused_and_the_source_kept(inputs, tmp_path, command, where):
    argv, source = _commands(inputs)[command]
    before = _tree(source)
    out = source if where == "equal" else source / "built"
    _one_line_error(_matseg(argv + ["--output", out, "--overwrite"]), source)
    assert _tree(source) == before and not (source.parent / (source.name + ".partial")).exists()


def test_a_source_inside_the_output_is_refused(tmp_path):
    raw = make_benchmark_folder(tmp_path / "work" / "raw", num_images=2, size=(40, 60), seed=1)
    before = _tree(raw)
    _one_line_error(_matseg(["build", "benchmark", "--source", raw, "--output", tmp_path / "work"]), raw)
    assert _tree(raw) == before


@pytest.mark.parametrize("command", DATASET_COMMANDS)
def test_overwrite_replaces_only_the_tools_own_files(inputs, tmp_path, command):
    argv, _ = _commands(inputs)[command]
    out = tmp_path / "out"
    first = _matseg(argv + ["--output", out])
    assert first.returncode == 0, first.stderr
    built = _tree(out)
    (out / "notes.md").write_text("mine")
    (out / "data" / "extra.csv").write_text("also mine")
    again = _matseg(argv + ["--output", out])  # a finished dataset is not rebuilt silently
    _one_line_error(again, out, "--overwrite")
    proc = _matseg(argv + ["--output", out, "--overwrite"])
    assert proc.returncode == 0, proc.stderr
    assert (out / "notes.md").read_text() == "mine" and (out / "data" / "extra.csv").read_text() == "also mine"
    after = _tree(out)
    del after["notes.md"], after["data/extra.csv"]
    assert after == built  # the same build again, byte for byte
    assert len(load_dataset(str(out), split="test" if command == "build benchmark" else "train")) > 0


def test_overwrite_stops_at_a_foreign_file_with_a_name_it_writes(tmp_path):
    raw = make_benchmark_folder(tmp_path / "raw", num_images=2, size=(40, 60), seed=1)
    out = build_benchmark_dataset(raw, tmp_path / "out")
    (out / "preview.jpg").unlink()
    (out / "preview.jpg").write_bytes(b"my own picture")  # now a foreign file: the manifest lists the old one
    import json
    manifest = json.loads((out / ".matseg_output.json").read_text())
    manifest["files"].remove("preview.jpg")
    (out / ".matseg_output.json").write_text(json.dumps(manifest))
    with pytest.raises(MatSegOutputError, match="preview.jpg was not written by this tool"):
        build_benchmark_dataset(raw, out, overwrite=True)
    assert (out / "preview.jpg").read_bytes() == b"my own picture"


def _interrupt_after(rows):
    def on_progress(done, total):
        if done == rows:
            raise KeyboardInterrupt
    return on_progress


def test_a_killed_build_resumes_to_identical_bytes_preview_included(tmp_path):
    raw = make_benchmark_folder(tmp_path / "raw", num_images=20, size=(40, 60), seed=5)
    reference = build_benchmark_dataset(raw, tmp_path / "reference", max_shard_size=1)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):  # after the first closed shard (16 rows)
        build_benchmark_dataset(raw, out, max_shard_size=1, on_progress=_interrupt_after(18))
    assert len(list((tmp_path / "out.partial" / "data").glob("*.parquet"))) == 1
    seen = []
    build_benchmark_dataset(raw, out, max_shard_size=1, on_progress=lambda d, t: seen.append(t))
    assert seen[-1] == 4  # only the rows that were not in a closed shard were redone
    assert _tree(out) == _tree(reference)
    assert "preview.jpg" in _tree(out)


def test_a_photo_deleted_after_an_interruption_does_not_stay(tmp_path):
    raw = make_benchmark_folder(tmp_path / "raw", num_images=20, size=(40, 60), seed=5)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        build_benchmark_dataset(raw, out, max_shard_size=1, on_progress=_interrupt_after(18))
    shutil.rmtree(raw / "data" / "img_003")  # in the closed shard
    (raw / "images" / "img_003.jpg").unlink()
    build_benchmark_dataset(raw, out, max_shard_size=1)
    ids = load_dataset(str(out), split="test")["image_id"]
    assert "img_003" not in ids and len(ids) == 19
    assert _tree(out) == _tree(build_benchmark_dataset(raw, tmp_path / "reference", max_shard_size=1))


def test_an_annotation_fixed_after_an_interruption_is_read_again(tmp_path):
    raw = make_benchmark_folder(tmp_path / "raw", num_images=20, size=(40, 60), seed=5)
    relations = raw / "data" / "img_002" / "group_relations.txt"
    good = relations.read_text() if relations.exists() else ""
    relations.write_text("(1,7)\n")  # unknown group: skipped with --skip-bad
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        build_benchmark_dataset(raw, out, max_shard_size=1, skip_bad=True, on_progress=_interrupt_after(17))
    relations.write_text(good)
    build_benchmark_dataset(raw, out, max_shard_size=1, skip_bad=True)
    assert "img_002" in load_dataset(str(out), split="test")["image_id"]
    assert "Items left out" not in (out / "README.md").read_text()


def test_a_second_build_into_the_same_output_gets_a_typed_error(tmp_path):
    from matseg_hub.benchmark.dataset import benchmark_features

    raw = make_benchmark_folder(tmp_path / "raw", num_images=2, size=(40, 60), seed=1)
    out = tmp_path / "out"
    with DatasetRepoWriter(out, benchmark_features(), split="test", kind="build benchmark", sources=[raw]):
        with pytest.raises(MatSegOutputError, match="being built right now by another process"):
            DatasetRepoWriter(out, benchmark_features(), split="test", kind="build benchmark")
        proc = _matseg(["build", "benchmark", "--source", raw, "--output", out])
        _one_line_error(proc, out, "being built right now")
    assert build_benchmark_dataset(raw, out) == out  # the lock went with the writer


def test_a_lock_of_a_dead_process_is_taken_over(tmp_path):
    import socket

    raw = make_benchmark_folder(tmp_path / "raw", num_images=2, size=(40, 60), seed=1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / "out.partial" / ".matseg_build" / "test-00000-of-00001.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{socket.gethostname()} {int(dead.stdout)}")
    proc = _matseg(["build", "benchmark", "--source", raw, "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    assert len(load_dataset(str(tmp_path / "out"), split="test")) == 2


def test_generate_3d_refuses_a_foreign_folder_and_a_source_folder(inputs, tmp_path):
    """``generate 3d`` writes scene folders and ``preview.jpg`` into ``--output``: only into its own output."""
    from matseg_hub.scenes3d import find_blender_python

    if find_blender_python(None) is None:
        pytest.skip("no Python with bpy (matseg generate 3d --install-blender)")
    argv = ["generate", "3d", "--num", "1", "--resolution", "32", "--samples", "1", "--no-preview"]
    out = tmp_path / "out"
    (out / "000000").mkdir(parents=True)
    (out / "000000" / "mask001.png").write_bytes(b"someone else's mask")
    (out / "preview.jpg").write_bytes(b"someone else's preview")
    before = _tree(out)
    _one_line_error(_matseg(argv + ["--output", out]), out, ".matseg_output.json")
    assert _tree(out) == before
    photos_before = _tree(inputs["photos"])
    _one_line_error(_matseg(argv + ["--natural-images", inputs["photos"], "--output", inputs["photos"] / "renders"]),
                    inputs["photos"])
    assert _tree(inputs["photos"]) == photos_before

"""The 2D generation command, run as users run it: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MATSEG = [sys.executable, "-c", "import sys; from matseg_hub.cli import main; sys.exit(main())"]
SCRIPT = [sys.executable, str(REPO / "generation" / "generate_2d.py")]


def _run(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def source_dirs(tmp_path_factory):
    import cv2

    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    for sub, n, size in (("natural", 3, (90, 120)), ("textures", 2, (24, 24))):
        (root / sub).mkdir()
        for i in range(n):
            small = rng.integers(0, 256, size=(size[0] // 6, size[1] // 6, 3), dtype=np.uint8)
            cv2.imwrite(str(root / sub / f"{i}.png"), cv2.resize(small, size[::-1], interpolation=cv2.INTER_CUBIC))
    return root / "natural", root / "textures"


def _files(folder: Path):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_folders_are_identical_across_worker_counts_and_resume(tmp_path, source_dirs):
    natural, textures = source_dirs
    common = ["--num", "5", "--seed", "2", "--size", "48x64", "--natural-images", str(natural), "--textures",
              str(textures), "--no-progress"]
    one = _run(SCRIPT + common + ["--output", "one", "--preview", "grid.png"], tmp_path)
    assert one.returncode == 0, one.stderr
    two = _run(SCRIPT + common + ["--output", "two", "--workers", "2"], tmp_path)
    assert two.returncode == 0, two.stderr
    files = _files(tmp_path / "one")
    assert files == _files(tmp_path / "two")
    # the run fingerprint (.matseg_run.json) and the output manifest sit beside the scene folders
    assert sorted({k.split("/")[0] for k in files if k not in (".matseg_run.json", ".matseg_output.json")}) == \
        ["0", "1", "2", "3", "4"]
    assert json.loads(files[".matseg_output.json"]) == {"tool": "matseg-hub", "kind": "generate 2d --format folders"}
    assert ".matseg_run.json" in files
    assert all(f"{i}/Finished.txt" in files for i in range(5))
    import cv2

    grid = cv2.imread(str(tmp_path / "grid.png"))
    assert grid is not None and grid.shape == (3 * 256, 2 * 3 * 256, 3)
    # an interrupted run: scene 1 unfinished, scene 3 missing -> only those two are redone, same bytes
    (tmp_path / "one" / "1" / "Finished.txt").unlink()
    (tmp_path / "one" / "1" / "mask001.png").write_bytes(b"half")
    import shutil

    shutil.rmtree(tmp_path / "one" / "3")
    again = _run(SCRIPT + common + ["--output", "one"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "2 scenes written, 3 already finished" in again.stderr
    assert _files(tmp_path / "one") == files


def test_parquet_format_and_folder_builder_load_with_datasets(tmp_path, source_dirs):
    natural, textures = source_dirs
    out = _run(MATSEG + ["generate", "2d", "--num", "4", "--seed", "2", "--size", "48x64", "--format", "parquet",
                         "--output", "pq", "--natural-images", str(natural), "--textures", str(textures),
                         "--workers", "2", "--no-progress"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "pq" / "README.md").is_file() and (tmp_path / "pq" / "preview.png").is_file()
    from datasets import Image, load_dataset

    ds = load_dataset(str(tmp_path / "pq"), split="train").cast_column("image", Image(decode=False))
    assert sorted(ds["index"]) == [0, 1, 2, 3] and set(ds["seed"]) == {2}
    # the Parquet rows hold the very bytes the folder writer writes
    folders = _run(SCRIPT + ["--num", "4", "--seed", "2", "--size", "48x64", "--output", "f", "--natural-images",
                             str(natural), "--textures", str(textures), "--no-progress"], tmp_path)
    assert folders.returncode == 0, folders.stderr
    for row in ds:
        assert row["image"]["bytes"] == (tmp_path / "f" / str(row["index"]) / "RGB__RGB.jpg").read_bytes()
    built = _run([sys.executable, str(REPO / "builders" / "matseg_synthetic.py"), "--from-folders", "f", "--output",
                  "fpq"], tmp_path)
    assert built.returncode == 0, built.stderr
    again = load_dataset(str(tmp_path / "fpq"), split="train")
    assert len(again) == 4 and sorted(again["index"]) == [0, 1, 2, 3]


def test_bad_sources_fail_with_a_clear_message(tmp_path):
    (tmp_path / "empty").mkdir()
    out = _run(SCRIPT + ["--num", "2", "--output", "o", "--natural-images", "empty", "--no-progress"], tmp_path)
    assert out.returncode == 1
    assert "no readable image" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "o").exists()


def test_help_lists_the_command():
    out = subprocess.run(MATSEG + ["generate", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "2d" in out.stdout
    out = subprocess.run(MATSEG + ["generate", "2d", "--help"], capture_output=True, text=True, timeout=120)
    assert "--natural-images" in out.stdout and "--workers" in out.stdout and "--preview" in out.stdout


def test_killed_run_resumes_to_the_same_bytes(tmp_path, source_dirs):
    import signal
    import time

    from matseg_hub.synthetic.layout import iter_scene_folders, read_scene

    natural, textures = source_dirs
    common = ["--num", "60", "--seed", "4", "--size", "96", "--natural-images", str(natural), "--textures",
              str(textures), "--no-progress"]
    proc = subprocess.Popen(SCRIPT + common + ["--output", "killed"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not (tmp_path / "killed" / "3" / "Finished.txt").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished = list(iter_scene_folders(tmp_path / "killed"))
    assert finished  # some scenes were done before the kill ...
    for folder in finished:  # ... and every folder marked finished is a whole scene
        read_scene(folder)
    again = _run(SCRIPT + common + ["--output", "killed"], tmp_path)
    assert again.returncode == 0, again.stderr
    whole = _run(SCRIPT + common + ["--output", "whole"], tmp_path)
    assert whole.returncode == 0, whole.stderr
    assert _files(tmp_path / "killed") == _files(tmp_path / "whole")


def test_resume_with_other_settings_is_refused(tmp_path, source_dirs):
    natural, textures = source_dirs
    common = ["--num", "2", "--size", "48x64", "--natural-images", str(natural), "--textures", str(textures),
              "--no-progress", "--output", "scenes"]
    first = _run(SCRIPT + common + ["--seed", "0"], tmp_path)
    assert first.returncode == 0, first.stderr
    other = _run(SCRIPT + common + ["--seed", "1"], tmp_path)
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert "seed: 0 (earlier run) vs 1 (this run)" in other.stderr and "--no-resume" in other.stderr
    fresh = _run(SCRIPT + common + ["--seed", "1", "--no-resume"], tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert "2 scenes written, 0 already finished" in fresh.stderr
    import json

    assert json.loads((tmp_path / "scenes" / "0" / "scene_metadata.json").read_text())["seed"] == 1

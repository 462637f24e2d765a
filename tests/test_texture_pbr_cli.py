"""``matseg generate textures`` / ``matseg generate pbr``, their scripts and the two builders."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys

import cv2
import numpy as np
import pytest

from matseg_hub.cli import main
from matseg_hub.pbr import list_pbr_folders, read_pbr_folder
from test_textures import make_photo


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for k in range(3):
        cv2.imwrite(str(src / f"p{k}.jpg"), make_photo(12, 16, region=(1 + k, 2, 8), seed=k)[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 98])
    cv2.imwrite(str(src / "tiny.png"), np.zeros((50, 50, 3), np.uint8))
    (src / "corrupt.jpg").write_bytes(b"\x00\x01")
    (src / "metadata.csv").write_text("image_id,license\np0,CC BY 2.0\np1,CC0\n")
    return src


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".done" not in p.parts}


def test_generate_textures_resumable_parallel_with_preview(photos, tmp_path, capsys):
    out1, out2 = tmp_path / "t1", tmp_path / "t2"
    assert main(["generate", "textures", "--input", str(photos), "--output", str(out1),
                 "--preview", str(tmp_path / "grid.png")]) == 0
    text = capsys.readouterr().out
    assert "3 textures from 5 photos" in text and "1 unreadable" in text and "corrupt.jpg" in text
    grid = cv2.imread(str(tmp_path / "grid.png"))
    assert grid is not None and grid.shape[0] > 100
    rows = (out1 / "metadata.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("file,source_id")
    lic = {r.split(",")[1]: r.split(",")[-1] for r in rows[1:]}
    assert lic == {"p0": "CC BY 2.0", "p1": "CC0", "p2": "unknown"}
    assert "too small" in json.loads((out1 / ".done" / "tiny.png.json").read_text())["reason"]
    # rerun: everything is skipped
    assert main(["generate", "textures", "--input", str(photos), "--output", str(out1)]) == 0
    assert "0 processed now, 5 already done" in capsys.readouterr().out
    # an interrupted run (a photo's done record missing) redoes only that photo
    (out1 / ".done" / "p1.jpg.json").unlink()
    assert main(["generate", "textures", "--input", str(photos), "--output", str(out1)]) == 0
    assert "1 processed now, 4 already done" in capsys.readouterr().out
    # two workers: same files, same bytes
    assert main(["generate", "textures", "--input", str(photos), "--output", str(out2), "--workers", "2"]) == 0
    assert _tree(out1) == _tree(out2)


def test_generate_pbr_seeded_resumable_parallel(photos, tmp_path, capsys):
    tex = tmp_path / "tex"
    assert main(["generate", "textures", "--input", str(photos), "--output", str(tex)]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["generate", "pbr", "--textures", str(tex), "--num", "6", "--seed", "7", "--mix-ratio", "0.5"]
    assert main(args + ["--output", str(a), "--preview", str(tmp_path / "pbr.jpg")]) == 0
    assert cv2.imread(str(tmp_path / "pbr.jpg")) is not None
    assert main(args + ["--output", str(b), "--workers", "2"]) == 0
    assert _tree(a) == _tree(b) and len(list_pbr_folders(a, require_finished=True)) == 6
    capsys.readouterr()
    assert main(args + ["--output", str(a)]) == 0
    assert "0 written now, 6 already done" in capsys.readouterr().out
    mats = [read_pbr_folder(f) for f in list_pbr_folders(a)]
    assert [m.metadata["item"] for m in mats] == list(range(6))
    assert all(m.metadata["seed"] == 7 for m in mats)
    by_source = {"p0": "CC BY 2.0", "p1": "CC0", "p2": "unknown"}
    for m in mats:
        sources = m.metadata["source"] if isinstance(m.metadata["source"], list) else [m.metadata["source"]]
        lics = sorted({by_source[s.split("_")[0]] for s in sources})
        assert m.metadata["license"] == " AND ".join(lics)
    # all mixes
    c = tmp_path / "c"
    assert main(["generate", "pbr", "--textures", str(tex), "--num", "2", "--seed", "1", "--mix-ratio", "1",
                 "--output", str(c)]) == 0
    assert all(f.name.split("_", 1)[1].startswith("Merge_") for f in list_pbr_folders(c))


def test_scripts_and_builders(photos, tmp_path, repo_root):
    tex, pbr = tmp_path / "tex", tmp_path / "pbr"
    res = subprocess.run([sys.executable, str(repo_root / "generation" / "extract_textures.py"), "--input",
                          str(photos), "--output", str(tex)], capture_output=True, text=True,
                         env={"MATSEG_DISABLE_PROGRESS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    assert "3 textures" in res.stdout
    res = subprocess.run([sys.executable, str(repo_root / "generation" / "make_pbr.py"), "--textures", str(tex),
                          "--num", "2", "--seed", "0", "--output", str(pbr)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for script, src, name in (("matseg_textures.py", tex, "ds_tex"), ("matseg_pbr.py", pbr, "ds_pbr")):
        argv = sys.argv
        sys.argv = [script, "--input", str(src), "--output", str(tmp_path / name)]
        try:
            with pytest.raises(SystemExit) as exit_info:
                runpy.run_path(str(repo_root / "builders" / script), run_name="__main__")
        finally:
            sys.argv = argv
        assert exit_info.value.code == 0
        assert (tmp_path / name / "README.md").is_file()
    from datasets import load_dataset

    assert len(load_dataset(str(tmp_path / "ds_tex"), split="train")) == 3
    assert len(load_dataset(str(tmp_path / "ds_pbr"), split="train")) == 2


def test_job_arrays_give_the_single_run_output(photos, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["generate", "textures", "--input", str(photos), "--output", str(whole)]) == 0
    for k in range(2):
        assert main(["generate", "textures", "--input", str(photos), "--output", str(split), "--shard", str(k),
                     "--num-shards", "2"]) == 0
    assert _tree(whole) == _tree(split)
    a, b = tmp_path / "pa", tmp_path / "pb"
    assert main(["generate", "pbr", "--textures", str(whole), "--num", "4", "--seed", "2", "--output", str(a)]) == 0
    for k in range(2):
        assert main(["generate", "pbr", "--textures", str(whole), "--num", "4", "--seed", "2", "--output", str(b),
                     "--shard", str(k), "--num-shards", "2"]) == 0
    assert _tree(a) == _tree(b)

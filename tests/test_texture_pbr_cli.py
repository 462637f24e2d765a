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
from matseg_hub.materials.pbr import list_pbr_folders, read_pbr_folder
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
    assert not (out1 / ".done" / "corrupt.jpg.json").exists()  # a failure is not recorded as done
    # rerun: every finished photo is skipped; the unreadable one is retried (and fails again)
    assert main(["generate", "textures", "--input", str(photos), "--output", str(out1)]) == 0
    text = capsys.readouterr().out
    assert "1 processed now, 4 already done" in text and "1 unreadable" in text
    # an interrupted run (a photo's done record missing) redoes only that photo (and the unreadable one)
    (out1 / ".done" / "p1.jpg.json").unlink()
    assert main(["generate", "textures", "--input", str(photos), "--output", str(out1)]) == 0
    assert "2 processed now, 3 already done" in capsys.readouterr().out
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


def test_failed_photo_is_retried_once_fixed(photos, tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["generate", "textures", "--input", str(photos), "--output", str(out)]) == 0
    assert not (out / ".done" / "corrupt.jpg.json").exists()
    # the file is replaced by a readable photo: the rerun extracts it (before the fix it was skipped forever)
    cv2.imwrite(str(photos / "corrupt.jpg"), make_photo(12, 16, region=(2, 2, 8), seed=5)[:, :, ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, 98])
    capsys.readouterr()
    assert main(["generate", "textures", "--input", str(photos), "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 textures from 5 photos" in text and "1 processed now, 4 already done" in text and "0 unreadable" in text
    assert json.loads((out / ".done" / "corrupt.jpg.json").read_text())["textures"]
    assert any(r.startswith("corrupt_") for r in (out / "metadata.csv").read_text().splitlines())
    # "no uniform region" / "too small" is a result: done, not retried
    assert main(["generate", "textures", "--input", str(photos), "--output", str(out)]) == 0
    assert "0 processed now, 5 already done" in capsys.readouterr().out


def test_bad_parameters_fail_before_any_work_and_do_not_poison_the_folder(photos, tmp_path, capsys):
    out = tmp_path / "t"
    for bad in (["--cell-size", "0"], ["--min-cells", "0"], ["--threshold", "1.5"], ["--max-textures", "0"],
                ["--max-image-size", "1"], ["--workers", "0"]):
        assert main(["generate", "textures", "--input", str(photos), "--output", str(out)] + bad) == 1
        err = capsys.readouterr().err
        assert "matseg: error:" in err and bad[0].lstrip("-").split("-")[0] in err.replace("_", "-"), (bad, err)
        assert "unreadable" not in err and not out.exists()
    # the corrected run does the work
    assert main(["generate", "textures", "--input", str(photos), "--output", str(out)]) == 0
    assert "3 textures from 5 photos" in capsys.readouterr().out


def test_rerun_with_other_parameters_is_refused(photos, tmp_path, capsys):
    from matseg_hub.errors import MatSegInputError
    from matseg_hub.materials.texture_extraction import extract_textures_folder

    out = tmp_path / "t"
    assert main(["generate", "textures", "--input", str(photos), "--output", str(out)]) == 0
    before = _tree(out)
    assert main(["generate", "textures", "--input", str(photos), "--output", str(out), "--cell-size", "50"]) == 1
    err = capsys.readouterr().err
    assert "cell_size: recorded 40, this run 50" in err and "new output folder" in err
    with pytest.raises(MatSegInputError, match="one_per_region"):
        extract_textures_folder(photos, out, one_per_region=False, show_progress=False)
    assert _tree(out) == before
    # the same parameters (and other workers / shards) resume
    assert main(["generate", "textures", "--input", str(photos), "--output", str(out), "--workers", "2"]) == 0


def test_every_photo_failing_exits_non_zero(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("a.jpg", "b.png"):
        (src / name).write_bytes(b"broken")
    assert main(["generate", "textures", "--input", str(src), "--output", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err
    assert "a.jpg" in err and "b.png" in err and "every photo" in err


@pytest.mark.parametrize("command", ["textures", "pbr"])
@pytest.mark.parametrize("shard", [["--num-shards", "0"], ["--shard", "5", "--num-shards", "2"],
                                   ["--shard", "-1", "--num-shards", "2"]])
def test_bad_shard_arguments_are_refused_before_any_work(photos, tmp_path, capsys, command, shard):
    out = tmp_path / "out"
    if command == "textures":
        args = ["generate", "textures", "--input", str(photos), "--output", str(out)]
    else:
        args = ["generate", "pbr", "--textures", str(photos), "--num", "2", "--output", str(out)]
    assert main(args + shard) == 1
    err = capsys.readouterr().err
    assert "matseg: error:" in err and "shard" in err
    assert not out.exists()


def test_pbr_skips_unreadable_textures_and_mixes_two_different_ones(photos, tmp_path, capsys):
    tex = tmp_path / "tex"
    assert main(["generate", "textures", "--input", str(photos), "--output", str(tex)]) == 0
    (tex / "zz_broken_Texture.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "pbr"
    capsys.readouterr()
    assert main(["generate", "pbr", "--textures", str(tex), "--num", "12", "--seed", "3", "--mix-ratio", "1",
                 "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert "12 written now" in captured.out and "1 unreadable textures skipped" in captured.out
    assert "zz_broken_Texture.jpg" in captured.err
    folders = list_pbr_folders(out, require_finished=True)
    assert len(folders) == 12
    for f in folders:
        sources = read_pbr_folder(f).metadata["source"]
        assert isinstance(sources, list) and len(sources) == 2 and sources[0] != sources[1], f.name
        assert "zz_broken" not in f.name


def test_pbr_with_no_readable_texture_says_so(tmp_path, capsys):
    tex = tmp_path / "tex"
    tex.mkdir()
    for k in range(2):
        (tex / f"t{k}_0_Score_0.9_TileSize40_Texture.jpg").write_bytes(b"broken")
    out = tmp_path / "pbr"
    assert main(["generate", "pbr", "--textures", str(tex), "--num", "2", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no texture of" in err and "can be read" in err and "t0_0_Score" in err
    assert not out.exists()  # refused before any work: no folder, no recorded parameters, no manifest


def test_pbr_resume_with_other_parameters_is_refused(photos, tmp_path, capsys):
    tex = tmp_path / "tex"
    assert main(["generate", "textures", "--input", str(photos), "--output", str(tex)]) == 0
    out = tmp_path / "pbr"
    args = ["generate", "pbr", "--textures", str(tex), "--num", "2", "--output", str(out)]
    assert main(args + ["--seed", "1"]) == 0
    capsys.readouterr()
    assert main(args[:-4] + ["--num", "4"] + args[-2:] + ["--seed", "2"]) == 1
    err = capsys.readouterr().err
    assert "seed: recorded 1, this run 2" in err
    assert len(list_pbr_folders(out)) == 2
    assert main(args[:-4] + ["--num", "4"] + args[-2:] + ["--seed", "1"]) == 0  # same parameters: extended
    assert len(list_pbr_folders(out, require_finished=True)) == 4

"""``matseg generate 2d --preset NAME``: the scenes start from ``SceneConfig.from_preset(NAME)``; the size and
material-count options given on top override it."""

from __future__ import annotations

import json

from matseg_hub.cli import main
from matseg_hub.synthetic.scenes2d import SCENE_PRESETS, SceneConfig

BASE = ["generate", "2d", "--num", "2", "--size", "64", "--source-limit", "4", "--max-source-side", "128",
        "--no-progress"]


def _config(folder):
    return json.loads((folder / "0" / "scene_metadata.json").read_text())["config"]


def test_preset_and_overrides_reach_the_scenes(tmp_path):
    assert main([*BASE, "--preset", "dense", "--max-materials", "3", "--output", str(tmp_path / "d")]) == 0
    dense = _config(tmp_path / "d")
    expected = SceneConfig.from_preset("dense", size=(64, 64), max_materials=3).to_dict()
    assert dense == json.loads(json.dumps(expected))
    assert dense["layout"] == SCENE_PRESETS["dense"]["layout"] == "shares" and dense["max_materials"] == 3
    assert main([*BASE, "--output", str(tmp_path / "p")]) == 0  # default: the paper preset, untouched but --size
    paper = _config(tmp_path / "p")
    assert paper == json.loads(json.dumps(SceneConfig.from_preset("paper", size=(64, 64)).to_dict()))
    assert paper["layout"] != dense["layout"]


def test_an_unknown_preset_is_a_one_line_error(tmp_path, capsys):
    assert main([*BASE, "--preset", "nope", "--output", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown scene preset 'nope'" in err and "dense, paper" in err
    assert not (tmp_path / "x").exists()

"""The `evaluate` module metrics/triplet_accuracy: same numbers as matseg_hub.metrics.triplet, streaming, clear errors,
self-contained (its `triplet_core.py` is a verbatim copy of the library's computation; it loads where matseg-hub
is not installed), and loading by bare name from a (local) Hub Space."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import matseg_hub.metrics.triplet as library
from hub_fixtures import local_hub  # noqa: F401  (a real local Hub server; one per session)
from hubserver import run_client
from matseg_hub.citation import CITATION
from matseg_hub.errors import MatSegInputError
from matseg_hub.metrics.triplet import METRIC_KEYS, aggregate, point_descriptors, score_images, triplet_accuracy

evaluate = pytest.importorskip("evaluate")

#: what a client runs first to be a fresh environment without matseg-hub (``import matseg_hub`` fails)
WITHOUT_MATSEG_HUB = "import sys; sys.modules['matseg_hub'] = None\n"


@pytest.fixture(scope="module")
def module_dir(repo_root):
    return repo_root / "metrics" / "triplet_accuracy"


@pytest.fixture(scope="module")
def core(module_dir):
    """The module's ``triplet_core.py``, imported on its own (it needs only numpy)."""
    spec = importlib.util.spec_from_file_location("triplet_core_under_test", module_dir / "triplet_core.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def metric(module_dir):
    return evaluate.load(str(module_dir))


def random_images(seed, n_images=4):
    """Per image: point descriptors from a random descriptor map, string group ids, a relation in a stored form."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n_images):
        height, width = int(rng.integers(30, 80)), int(rng.integers(30, 80))
        fmap = rng.integers(0, 4, size=(height, width, 5)).astype(np.float32)  # coarse values: ties
        n = int(rng.integers(2, 40))
        points = np.stack([rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, 6, n)], 1)
        groups = [str(g) for g in rng.integers(1, 5, n)]
        ids = sorted(set(groups))
        mat = np.eye(len(ids))
        if len(ids) > 2:
            mat[0, 1] = mat[1, 0] = 0.3
            mat[1, 2] = mat[2, 1] = 0.6
        relation = {"group_ids": ids, "matrix": mat.tolist()} if i % 2 else None
        images.append((point_descriptors(fmap, points), groups, relation))
    return images


@pytest.mark.parametrize("mode", ["soft", "hard", "soft_only"])
def test_module_gives_the_library_numbers(metric, mode):
    images = random_images(1)
    preds = [d for d, _, _ in images]
    refs = [g for _, g, _ in images]
    sims = [s for _, _, s in images]
    got = metric.compute(predictions=preds, references=refs, group_similarity=sims, mode=mode, return_per_image=True)
    expected = aggregate([triplet_accuracy(d, g, s, mode=mode) for d, g, s in images])
    for key in METRIC_KEYS:
        assert got[key] == expected[key], key  # identical, not just close
    for key in ("num_images", "num_scored_images", "num_skipped_images", "num_anchors", "mode"):
        assert got[key] == expected[key]
    assert len(got["per_image"]) == len(images)


def test_streaming_add_and_add_batch(metric, module_dir):
    images = random_images(2, n_images=5)
    sims = [s for _, _, s in images]
    once = metric.compute(predictions=[d for d, _, _ in images], references=[g for _, g, _ in images],
                          group_similarity=sims)
    streamed = evaluate.load(str(module_dir))
    streamed.add_batch(predictions=[images[0][0], images[1][0]], references=[images[0][1], images[1][1]])
    for d, g, _ in images[2:]:
        streamed.add(predictions=d, references=g)
    assert streamed.compute(group_similarity=sims) == once
    assert once == score_images([d for d, _, _ in images], [g for _, g, _ in images], sims)[0]


def test_integer_group_ids_and_dense_matrices(metric):
    rng = np.random.default_rng(3)
    desc = rng.normal(size=(12, 4))
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    groups = [0, 0, 1, 1, 1, 2, 2, 0, 1, 2, 2, 0]
    mat = np.array([[1, 0.3, 0], [0.3, 1, 0.6], [0, 0.6, 1]])
    got = metric.compute(predictions=[desc], references=[groups], group_similarity=[mat])
    assert {k: got[k] for k in METRIC_KEYS} == {k: triplet_accuracy(desc, groups, mat)[k] for k in METRIC_KEYS}
    named = metric.compute(predictions=[desc], references=[[str(g) for g in groups]], group_similarity=[mat],
                           group_ids=[["0", "1", "2"]])
    assert {k: named[k] for k in METRIC_KEYS} == {k: got[k] for k in METRIC_KEYS}


def test_float32_and_list_predictions(metric):
    rng = np.random.default_rng(5)
    desc = rng.normal(size=(9, 3))
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    groups = ["a", "b", "c"] * 3
    expected = triplet_accuracy(desc.astype(np.float32).astype(np.float64), groups)
    for preds in ([desc.astype(np.float32)], [desc.astype(np.float32).tolist()]):
        got = metric.compute(predictions=preds, references=[groups])
        assert {k: got[k] for k in METRIC_KEYS} == {k: expected[k] for k in METRIC_KEYS}


def test_skipped_images_are_counted_not_nan(metric):
    one_group = np.eye(3, 2)[[0, 0, 0]]
    two = np.array([[1.0, 0.0], [0.96, 0.28], [0.0, 1.0], [0.28, 0.96]])
    got = metric.compute(predictions=[one_group, two], references=[["a"] * 3, ["a", "a", "b", "b"]])
    assert got["num_images"] == 2 and got["num_skipped_images"] == 1
    assert all(got[k] == 1.0 for k in METRIC_KEYS)
    nothing = metric.compute(predictions=[one_group], references=[["a"] * 3])
    assert all(nothing[k] is None for k in METRIC_KEYS)


def test_bad_inputs_say_which_image_and_what_to_do(metric):
    good = np.array([[1.0, 0.0], [0.0, 1.0]])
    # the module's own MatSegInputError (a ValueError): the module does not import matseg_hub
    with pytest.raises(ValueError, match=r"image 1: descriptors\[0\] has L2 norm 2.*normalize=True") as info:
        metric.compute(predictions=[good, good * 2], references=[["a", "b"], ["a", "b"]])
    assert info.type.__name__ == "MatSegInputError" and info.type.__module__.endswith(".triplet_core")
    with pytest.raises(ValueError, match="image 0: point_groups has 3 entries but descriptors has 2 rows"):
        metric.compute(predictions=[good], references=[["a", "b", "c"]])
    with pytest.raises(ValueError, match="group_similarity must be a list with one entry per image"):
        metric.compute(predictions=[good], references=[["a", "b"]], group_similarity={"a": {"b": 0.3}})
    with pytest.raises(ValueError, match="image 0: group_similarity names group 'c'"):
        metric.compute(predictions=[good], references=[["a", "b"]], group_similarity=[{"a": {"c": 0.3}}])
    with pytest.raises(ValueError, match="mode must be one of"):
        metric.compute(predictions=[good], references=[["a", "b"]], mode="average")
    with pytest.raises(ValueError, match="inhomogeneous|regular shape"):
        metric.compute(predictions=[[[1.0, 0.0], [1.0]]], references=[["a", "b"]])
    with pytest.raises(ValueError):  # evaluate's own check: as many predictions as references
        metric.compute(predictions=[good, good], references=[["a", "b"]])


@pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning", "ignore:The inplace keyword")
def test_gradio_widget_inputs(metric):
    # what app.py's launch_gradio_widget does with a table row per image (JSON cells); gradio itself is not needed
    pd = pytest.importorskip("pandas")
    from evaluate.utils.gradio import infer_gradio_input_types, parse_gradio_data

    desc = np.array([[1.0, 0.0], [0.96, 0.28], [0.0, 1.0], [0.28, 0.96]])
    types = infer_gradio_input_types(metric.features[0].values())
    assert types == ["json", "json"]
    table = pd.DataFrame({"predictions": [json.dumps(desc.tolist())],
                          "references": ['["wood", "wood", "rust", "rust"]']})
    got = metric.compute(**parse_gradio_data(table, types))
    assert got["point_triplet"] == 1.0 and got["num_images"] == 1


def test_module_is_self_contained(module_dir):
    """It installs from what registries serve: its files import only numpy, datasets, evaluate and each other."""
    requirements = (module_dir / "requirements.txt").read_text().split()
    assert sorted(r.split(">")[0].split("=")[0] for r in requirements) == ["datasets", "evaluate", "numpy"]
    for path in sorted(module_dir.glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.level == 0}
        assert imported - set(sys.stdlib_module_names) <= {"numpy", "datasets", "evaluate"}, (path.name, imported)
    # evaluate.load copies the files a script imports relatively (one level, `from .name import ...`)
    assert "\nfrom .triplet_core import score_images\n" in (module_dir / "triplet_accuracy.py").read_text()
    card = (module_dir / "README.md").read_text()
    assert card.startswith("---\n") and "sdk: gradio" in card and "app_file: app.py" in card
    assert "launch_gradio_widget" in (module_dir / "app.py").read_text()


def test_module_citation_is_the_projects(metric):
    assert metric.citation.strip() == CITATION.strip()


def test_core_is_a_verbatim_copy_of_the_library(core):
    """Every function and constant of triplet_core.py has the source of the one of the same name in
    matseg_hub/metrics/triplet.py (edit the library, then copy the changed functions)."""
    names = [name for name, value in vars(core).items()
             if getattr(value, "__module__", None) == core.__name__ and inspect.isfunction(value)]
    assert {"triplet_accuracy", "aggregate", "score_images", "_score_block_soft", "_similarity_matrix"} <= set(names)
    for name in names:
        assert inspect.getsource(getattr(core, name)) == inspect.getsource(getattr(library, name)), (
            f"triplet_core.{name} differs from matseg_hub.metrics.triplet.{name}: copy it from matseg_hub/metrics/triplet.py")
    for name in ("MODES", "METRIC_KEYS", "_SIM_BLOCK_ELEMENTS", "_RANK_BLOCK_CELLS"):
        assert getattr(core, name) == getattr(library, name), name
    assert issubclass(core.MatSegInputError, ValueError) and issubclass(MatSegInputError, ValueError)


@pytest.mark.parametrize("mode", ["soft", "hard", "soft_only"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_core_gives_the_library_results_ties_included(core, mode, seed):
    """Same results, to the bit, on images with exact ties (coarse descriptors), relations and skipped anchors."""
    images = random_images(10 + seed, n_images=6)
    rng = np.random.default_rng(seed)
    one_hot = np.eye(3)[rng.integers(0, 3, 25)]  # a label map's descriptors: many exact ties
    images.append((one_hot, [str(g) for g in rng.integers(0, 4, 25)], None))
    images.append((one_hot[:3], ["a", "a", "a"], None))  # nothing to rank against: skipped
    args = ([d for d, _, _ in images], [g for _, g, _ in images], [s for _, _, s in images])
    assert core.score_images(*args, mode=mode) == library.score_images(*args, mode=mode)
    for desc, groups, sims in images:
        assert core.triplet_accuracy(desc, groups, sims, mode=mode) == library.triplet_accuracy(desc, groups, sims,
                                                                                                mode=mode)
    with pytest.raises(MatSegInputError) as original:
        library.score_images([one_hot * 2], [["a"] * 25], mode=mode)
    with pytest.raises(core.MatSegInputError) as copied:
        core.score_images([one_hot * 2], [["a"] * 25], mode=mode)
    assert str(copied.value) == str(original.value)


def test_loads_and_scores_where_matseg_hub_is_not_installed(module_dir, tmp_path):
    """``evaluate.load(<folder>)`` in a process where ``import matseg_hub`` fails: the module's own files suffice."""
    images = random_images(6, n_images=3)
    payload = {"predictions": [d.tolist() for d, _, _ in images], "references": [g for _, g, _ in images],
               "group_similarity": [s for _, _, s in images]}
    code = WITHOUT_MATSEG_HUB + (
        f"import json, evaluate\nargs = json.loads({json.dumps(json.dumps(payload))})\n"
        f"print(json.dumps(evaluate.load({str(module_dir)!r}).compute(**args)))\n")
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got == score_images(*([d for d, _, _ in images], [g for _, g, _ in images],
                                 [s for _, _, s in images]))[0]


@pytest.mark.hub
def test_load_by_bare_name_from_the_space(local_hub, module_dir):  # noqa: F811
    local_hub.publish(module_dir, "evaluate-metric/triplet_accuracy", "space")
    images = random_images(4, n_images=3)
    payload = {"predictions": [d.tolist() for d, _, _ in images], "references": [g for _, g, _ in images],
               "group_similarity": [s for _, _, s in images]}
    result = run_client(
        WITHOUT_MATSEG_HUB + f"""
import json, evaluate
args = json.loads({json.dumps(json.dumps(payload))})
metric = evaluate.load("triplet_accuracy")  # bare name: the Space evaluate-metric/triplet_accuracy
print(json.dumps(metric.compute(**args)))
""",
        local_hub,
    )
    got = json.loads(result.stdout.strip().splitlines()[-1])
    expected = score_images([d for d, _, _ in images], [g for _, g, _ in images], [s for _, _, s in images])[0]
    assert got == expected


def test_module_scores_promptable_similarity_rows_and_average_ties(metric):
    """A promptable model's per-anchor rows (NaN = left out) and ties="average" give the library's numbers."""
    rng = np.random.default_rng(5)
    rows = [np.round(rng.random((6, 6)), 1) for _ in range(2)]  # rounded: exact ties on purpose
    rows[0][0, 3] = np.nan
    groups = [["a", "a", "b", "b", "c", "c"], ["x", "y", "x", "y", "x", "y"]]
    for ties in ("first", "average"):
        got = metric.compute(predictions=rows, references=groups, similarities=True, ties=ties, mode="hard")
        want, _ = score_images(rows, groups, mode="hard", similarities=True, ties=ties)
        for key in METRIC_KEYS:
            assert got[key] == pytest.approx(want[key], abs=1e-12), (ties, key)
    first = metric.compute(predictions=rows, references=groups, similarities=True, mode="hard")
    average = metric.compute(predictions=rows, references=groups, similarities=True, mode="hard", ties="average")
    assert first["point_triplet"] != average["point_triplet"]  # the ties are real and the rule reaches the metric

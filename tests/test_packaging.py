"""Packaging: ranges, not pins, in the core dependencies; the ``[train]`` extra covers what training imports;
the exact torch of CI lives in ``constraints/ci.txt``, which the commands of the README and docs/ and ``.ci/run`` pass.

Installing the package must never replace a user's own (e.g. CUDA) torch, and a user who installs ``[train]``
must be able to run the training command of docs/training.md (its imports are read here with ``ast``, mapped to the
distributions that provide them).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = "constraints/ci.txt"
TRAINING_SOURCES = [REPO / "train" / "train.py", *sorted((REPO / "matseg_hub" / "training").glob("*.py"))]


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _names(requirements):
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in requirements}


def _extra(project, name):
    """The requirements of an extra, with the project's own extras (``matseg-hub[train]``) expanded."""
    out = {}
    for text in project["optional-dependencies"][name]:
        req = Requirement(text)
        if canonicalize_name(req.name) == canonicalize_name(project["name"]):
            for extra in req.extras:
                out.update(_extra(project, extra))
        else:
            out[canonicalize_name(req.name)] = req
    return out


def test_core_dependencies_are_ranges(project):
    core = _names(project["dependencies"])
    for name, req in core.items():
        assert all(spec.operator not in ("==", "===", "~=") for spec in req.specifier), f"{req} is a pin"
    # any recent torch, CPU or CUDA build, satisfies the package: installing it never replaces the user's torch
    for version in ("2.1.0", "2.4.1+cu121", "2.13.0", "2.13.0+cpu", "3.0.0"):
        assert core["torch"].specifier.contains(Version(version), prereleases=True), version
    # training-only packages are not core
    assert {"accelerate", "tensorboard", "matplotlib"}.isdisjoint(core)


def _imported_modules(path: Path):
    """Top-level names of every absolute import in a file (module level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _train_modules():
    """``TRAIN_MODULES`` of train/train.py (what it checks at start), read without importing the script."""
    tree = ast.parse((REPO / "train" / "train.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "TRAIN_MODULES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("train/train.py defines no TRAIN_MODULES")


def test_train_extra_covers_what_training_imports(project):
    core = _names(project["dependencies"])
    train = _extra(project, "train")
    providers = importlib.metadata.packages_distributions()
    checked = _train_modules()
    third_party = set()
    for path in TRAINING_SOURCES:
        third_party |= _imported_modules(path) - set(sys.stdlib_module_names) - {"matseg_hub", "__future__"}
    assert {"torch", "accelerate", "matplotlib"} <= third_party  # the parse found the imports
    for module in sorted(third_party | set(checked)):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists, f"no installed distribution provides {module!r}"
        assert dists & (set(core) | set(train)), f"{module!r} ({sorted(dists)}) is neither core nor in [train]"
        if not dists & set(core):
            # not core: train.py checks it before any work (MissingDependencyError, not a late ImportError)
            assert module in checked, f"{module!r} comes from [train] but train.py's TRAIN_MODULES lacks it"
    # the default tracker (report_to: tensorboard) is imported by accelerate, not by our code
    assert "tensorboard" in checked and "tensorboard" in train
    assert set(_extra(project, "train")) <= set(_extra(project, "test"))


def test_train_script_checks_the_extra_first():
    """The statement right after the settings are parsed is ``require_extra("train", ..., TRAIN_MODULES)``."""
    tree = ast.parse((REPO / "train" / "train.py").read_text())
    entry = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name != "parse_args"
                 and "parse_args(" in ast.unparse(n.body[0]))
    calls = [n for n in ast.walk(entry.body[1]) if isinstance(n, ast.Call)]
    assert [getattr(c.func, "id", None) for c in calls] == ["require_extra"], ast.unparse(entry.body[1])
    assert ast.literal_eval(calls[0].args[0]) == "train" and ast.unparse(calls[0].args[2]) == "TRAIN_MODULES"


def test_the_exact_torch_pin_lives_in_the_constraints_file_only(project):
    pins = {canonicalize_name(Requirement(line).name): Requirement(line)
            for line in (REPO / CONSTRAINTS).read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert str(pins["torch"].specifier) == "==2.13.0"
    assert "torch==" not in (REPO / "pyproject.toml").read_text()


def _pip_installs(text):
    return [line for line in text.splitlines() if re.search(r"\bpip install -e\b", line)]


def test_readme_and_ci_install_with_the_constraints_file():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    first, second = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).strip().splitlines()[:2]
    assert first == f"pip install -e . -c {CONSTRAINTS} && matseg evaluate"
    assert second.startswith(f'pip install -e ".[test]" -c {CONSTRAINTS} && ')
    assert "python tests/hubserver.py" in second  # olah's environment, made before the tests (not by them)
    assert ci.strip().splitlines()[-1] == second  # CI runs the README's test command
    docs = [page.read_text() for page in sorted((REPO / "docs").glob("*.md"))]
    for line in _pip_installs(readme) + _pip_installs(ci) + [line for page in docs for line in _pip_installs(page)]:
        assert f"-c {CONSTRAINTS}" in line, line
    training = (REPO / "docs" / "training.md").read_text()
    assert f'pip install -e ".[train]" -c {CONSTRAINTS}' in training.split("python train/train.py")[0]


def test_train_script_without_the_extra_stops_at_once(tmp_path):
    """No tensorboard/matplotlib: the install hint before any work (not a ModuleNotFoundError after a run)."""
    import subprocess

    out = tmp_path / "run"
    code = ("import runpy, sys\n"
            "sys.modules['tensorboard'] = sys.modules['matplotlib'] = None  # as if not installed\n"
            f"sys.argv = ['train.py', '--config', {str(REPO / 'train/configs/tiny-cpu.yaml')!r}, "
            f"'--output_dir', {str(out)!r}]\n"
            f"runpy.run_path({str(REPO / 'train/train.py')!r}, run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert ("train/train.py needs the optional package 'tensorboard, matplotlib', which is not installed. "
            'Install it with: pip install "matseg-hub[train]"') in result.stderr
    assert not out.exists()  # nothing was started

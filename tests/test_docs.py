"""Every fenced block marked ``runnable`` in README.md and docs/*.md runs, as written (CONTRIBUTING.md, "Runnable
blocks in the docs").

A block is marked by the word ``runnable`` after the language in its info string (```` ```bash runnable ````,
```` ```python runnable ````). The blocks of one page run in order, in one temporary working directory that looks
like the repository root to them (``builders/``, ``generation/``, ``train/``, ``metrics/`` and ``bench/`` are
linked in), so a later block may use what an earlier one wrote. bash blocks run with ``bash -euo pipefail``,
python blocks with ``python -c`` in a subprocess; ``python`` and ``matseg`` are this interpreter. The only
placeholders are those in ``PLACEHOLDERS``; ``photo.jpg`` is a real photo in the working directory. Nothing
downloads: the Hub libraries run offline with their caches inside the working directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
MARK = "runnable"
LANGUAGES = {"bash", "python"}
LINKED = ["builders", "generation", "train", "metrics", "bench"]
# placeholder in a runnable block -> what it stands for in the test's working directory
PLACEHOLDERS = {"PHOTOS": "photos"}
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def marked_blocks(text):
    """``[(language, code, line)]`` of the fenced blocks whose info string holds the word ``runnable``."""
    blocks = []
    for match in FENCE.finditer(text):
        words = match.group(1).split()
        if MARK in words[1:]:
            blocks.append((words[0], match.group(2), text.count("\n", 0, match.start()) + 1))
    return blocks


def _substitute(code):
    for name, value in PLACEHOLDERS.items():
        code = re.sub(rf"\b{name}\b", value, code)
    return code


def _workdir(root):
    """A working directory with the entry-point folders, a few of scikit-image's bundled photos and a shim
    ``bin/`` whose ``python``/``matseg`` are this interpreter."""
    work = root / "work"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(REPO / name, target_is_directory=True)
    import skimage.data

    (work / "photos").mkdir()
    for name in ["brick", "grass", "gravel", "coffee"]:
        Image.fromarray(np.asarray(getattr(skimage.data, name)())).save(work / "photos" / f"{name}.png")
    Image.fromarray(skimage.data.grass()).convert("RGB").save(work / "photo.jpg", quality=95)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "matseg").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m matseg_hub "$@"\n')
    (bin_dir / "matseg").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", MATSEG_DISABLE_PROGRESS="1",
               HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_EVALUATE_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    return work, env


def test_readme_and_docs_have_runnable_blocks():
    assert marked_blocks((REPO / "README.md").read_text()), "README.md has no block marked runnable"
    assert sum(len(marked_blocks(page.read_text())) for page in PAGES[1:]) >= 10, "docs/ has almost no runnable block"
    for page in PAGES:
        for language, _, line in marked_blocks(page.read_text()):
            assert language in LANGUAGES, f"{page.name}:{line}: a runnable block must be one of {sorted(LANGUAGES)}"


def test_marker_finds_blocks_and_leaves_others():
    text = "a\n```bash runnable\necho hi\n```\n```bash\npip install x\n```\n```python runnable\nprint(1)\n```\n"
    assert marked_blocks(text) == [("bash", "echo hi\n", 2), ("python", "print(1)\n", 8)]


@pytest.mark.parametrize("page", [p for p in PAGES if marked_blocks(p.read_text())], ids=lambda p: p.name)
def test_runnable_blocks_run(page, tmp_path):
    work, env = _workdir(tmp_path)
    for language, code, line in marked_blocks(page.read_text()):
        code = _substitute(code)
        cmd = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (f"{page.relative_to(REPO)}:{line}: the {language} block failed "
                                      f"(exit {proc.returncode})\n{code}\n--- stdout\n{proc.stdout[-3000:]}"
                                      f"\n--- stderr\n{proc.stderr[-3000:]}")

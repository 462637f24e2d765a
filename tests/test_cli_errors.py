"""The ``matseg`` command's errors from the environment: one line and a non-zero exit, never a traceback.

Real subprocesses of the installed command, on real folders: a read-only output folder (a read-only bind mount
in a private mount namespace when running as root, where permission bits do not stop writes; ``chmod 0o555``
otherwise), a file in the way of the output path, and Ctrl-C (SIGINT) during a run.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from matseg_hub.benchmark.format import builtin_benchmark_dir
from matseg_hub.cli import BUG, INTERRUPTED
from matseg_hub.errors import describe_os_error

MATSEG = [sys.executable, "-c", "import sys; from matseg_hub.cli import main; sys.exit(main())"]
ENV = dict(os.environ, MATSEG_DISABLE_PROGRESS="1")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A photo folder (for textures) and a texture folder (for pbr): small random images."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    (root / "photos").mkdir()
    (root / "textures").mkdir()
    cv2.imwrite(str(root / "photos" / "p.jpg"), rng.integers(0, 255, (200, 240, 3), dtype=np.uint8))
    for k in range(2):
        cv2.imwrite(str(root / "textures" / f"t{k}.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    return root


def writing_commands(inputs: Path, out: Path, writable: Path):
    """Every kind of file a command writes, each to ``out`` (a path under the unwritable folder)."""
    return {
        "evaluate --output": ["evaluate", "--output", str(out / "results.json")],
        "build benchmark": ["build", "benchmark", "--source", str(builtin_benchmark_dir()), "--output", str(out)],
        "generate textures": ["generate", "textures", "--input", str(inputs / "photos"), "--output", str(out)],
        "generate pbr": ["generate", "pbr", "--textures", str(inputs / "textures"), "--num", "1", "--output", str(out)],
        "generate 2d --preview": ["generate", "2d", "--num", "1", "--size", "64", "--output", str(writable / "scenes"),
                                  "--preview", str(out / "preview.png"), "--no-progress"],
        "generate pbr --preview": ["generate", "pbr", "--textures", str(inputs / "textures"), "--num", "1",
                                   "--output", str(writable / "pbr"), "--preview", str(out / "preview.png")],
    }


def _read_only_prefix(folder: Path):
    """The command prefix that runs a command with ``folder`` read-only, or None where that is impossible."""
    if os.geteuid() != 0:
        return []  # permission bits apply (the caller chmods the folder)
    if shutil.which("unshare") is None:
        return None
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(folder)]
    probe = subprocess.run(prefix + ["sh", "-c", f'! touch "{folder}/probe"'], capture_output=True)
    return prefix if probe.returncode == 0 and not (folder / "probe").exists() else None


@pytest.fixture()
def read_only(tmp_path):
    """``(folder, prefix)``: a folder the commands run with ``prefix`` cannot write to."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    prefix = _read_only_prefix(folder)
    if prefix is None:
        pytest.skip("running as root without a private mount namespace (unshare + mount): no way to make a "
                    "folder read-only for the command")
    if os.geteuid() != 0:
        folder.chmod(0o555)
    yield folder, prefix
    folder.chmod(0o755)


def assert_one_line_error(result: subprocess.CompletedProcess, path: Path, reason: str):
    assert result.returncode == 1, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("matseg:")]
    assert lines == [result.stderr.strip().splitlines()[-1]], result.stderr[-3000:]
    assert lines[0].startswith(f"matseg: error: {path}") and reason in lines[0], lines[0]


@pytest.mark.parametrize("command", ["evaluate --output", "build benchmark", "generate textures", "generate pbr",
                                     "generate 2d --preview", "generate pbr --preview"])
def test_read_only_output_folder_is_one_line(command, read_only, inputs, tmp_path):
    folder, prefix = read_only
    argv = writing_commands(inputs, folder / "out", tmp_path)[command]
    result = subprocess.run(prefix + MATSEG + argv, capture_output=True, text=True, env=ENV, timeout=300)
    reason = "Read-only file system" if prefix else "Permission denied"
    assert_one_line_error(result, folder, reason)
    assert sorted(os.listdir(folder)) == []


@pytest.mark.parametrize("command", ["evaluate --output", "build benchmark", "generate textures", "generate pbr",
                                     "generate 2d --preview", "generate pbr --preview"])
def test_file_in_the_way_of_the_output_is_one_line(command, inputs, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me\n")
    argv = writing_commands(inputs, blocker / "out", tmp_path)[command]
    result = subprocess.run(MATSEG + argv, capture_output=True, text=True, env=ENV, timeout=300)
    assert_one_line_error(result, blocker, "")
    assert "Not a directory" in result.stderr or "File exists" in result.stderr
    assert blocker.read_text() == "keep me\n"


def _finished_scene(out) -> bool:
    """A scene folder with a PNG in it exists (a scene's temporary folder may be renamed while it is listed)."""
    try:
        return any(out.glob("*/*.png"))
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_is_one_line_and_exit_130(workers, tmp_path):
    """Ctrl-C in a terminal sends SIGINT to the whole process group: the pool workers get it too and stay quiet."""
    out = tmp_path / "scenes"
    process = subprocess.Popen(MATSEG + ["generate", "2d", "--num", "100000", "--size", "64", "--output", str(out),
                                         "--no-progress", "--workers", str(workers)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                               start_new_session=True)
    try:
        # interrupt once the run is under way: its first scene is finished
        while not _finished_scene(out) and process.poll() is None:
            try:
                process.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
        assert process.poll() is None, process.communicate()
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert "PoolWorker" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == INTERRUPTED
    assert any(out.glob("*/*.png"))  # the finished scenes are kept


@pytest.mark.parametrize("code, hint", [
    (errno.ENOSPC, "free some space"), (errno.EROFS, "read-only"), (errno.EACCES, "permissions"),
    (errno.EEXIST, "in the way"), (errno.ENOTDIR, "is a file"), (errno.ENOENT, "check the path"),
])
def test_describe_os_error_names_the_path_and_what_to_do(code, hint):
    line = describe_os_error(OSError(code, os.strerror(code), "/data/out/x.png"))
    assert line.startswith(f"/data/out/x.png: {os.strerror(code)} (") and hint in line
    assert describe_os_error(OSError(code, os.strerror(code))) == f"{os.strerror(code)} (" + line.split(" (", 1)[1]


def test_a_bug_keeps_its_traceback(tmp_path):
    """An exception the package did not mean to raise is a bug: the traceback is shown, with a hint line."""
    code = ("import sys\nfrom matseg_hub.cli import main\nimport matseg_hub.cli.evaluate as ev\n"
            "def broken(args):\n    raise OSError(errno.ECONNRESET, 'Connection reset by peer')\n"
            "import errno\nev.run = broken\nsys.exit(main(['evaluate']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 1
    assert BUG in result.stderr and "Traceback" in result.stderr and "ConnectionResetError" in result.stderr

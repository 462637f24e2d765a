"""keep_freed_memory: generator processes stop faulting freed scene arrays back in."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt tuning applies to glibc only")

_SNIPPET = r"""
import resource, sys
import numpy as np
from matseg_hub.utils.memory import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):  # warm up the allocator the way a scene loop does
    a = np.ones((700, 800, 3), np.float32); b = a * 2; del a, b
before = faults()
for _ in range(20):  # a scene-sized float image and a product, freed at the end of each "scene"
    a = np.ones((700, 800, 3), np.float32); b = a * 2; del a, b
print(applied, faults() - before)
"""


def _faults(mode, **env):
    out = subprocess.run([sys.executable, "-c", _SNIPPET, mode], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


def test_freed_scene_arrays_are_reused_instead_of_faulted_in():
    applied, tuned = _faults("tuned")
    _, default = _faults("default")
    assert applied
    # 20 rounds of two 6.7 MB arrays: 14,000-24,000 page faults by default (measured), none once tuned
    assert default > 5000 and tuned < 500, (default, tuned)


def test_env_var_turns_it_off():
    applied, faults = _faults("tuned", MATSEG_MALLOC_TUNING="0")
    assert not applied and faults > 5000

"""Time matseg_hub.metrics.triplet against the plain loop reference (bench/_reference_metric.py) on the same inputs.

A random float32 700x700x128 descriptor map (the reference's evaluation size and descriptor depth), points of
radius 5-15 px in 6 groups with 0.3/0.6 relations, soft mode, end to end (point descriptors + triplet accuracy).
Prints the seconds of each, their ratio and the largest absolute difference of the four per-image numbers and of
the descriptors.

    python bench/bench_metric.py                 # 800 and 200 points (the 800-point loop takes 2-3 minutes)
    python bench/bench_metric.py --points 200 --seed 1

Measured 2026-11-25 on the 2-core development machine (shared, busy; numpy 2.4.6, opencv 5.0.0), --repeats 5:

    800 points: fast 0.184 s, loop reference 153.9 s, 836x, max |difference| 0 (metric values and descriptors)
    200 points: fast 0.069 s, loop reference  37.0 s, 536x, max |difference| 0
    (an earlier run under heavier load: 800 points 0.378 s vs 118.5 s, 313x, difference 0)
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

from matseg_hub.metrics.triplet import METRIC_KEYS, point_descriptors, triplet_accuracy

_spec = importlib.util.spec_from_file_location("_reference_metric", Path(__file__).with_name("_reference_metric.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

RELATIONS = {"0": {"1": 0.3, "2": 0.6}, "3": {"4": 0.3}}


def make_inputs(n_points: int, size: int, depth: int, seed: int):
    rng = np.random.default_rng(seed)
    fmap = rng.standard_normal((size, size, depth), dtype=np.float32)
    points = np.stack([rng.integers(0, size, n_points), rng.integers(0, size, n_points),
                       rng.integers(5, 16, n_points)], 1)
    groups = [str(g) for g in rng.integers(0, 6, n_points)]
    return fmap, points, groups


def run(n_points: int, size: int, depth: int, seed: int, mode: str, repeats: int) -> None:
    fmap, points, groups = make_inputs(n_points, size, depth, seed)
    fast_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fast_desc = point_descriptors(fmap, points)
        fast = triplet_accuracy(fast_desc, groups, RELATIONS, mode=mode)
        fast_times.append(time.perf_counter() - start)
    fast_s = min(fast_times)
    start = time.perf_counter()
    slow_desc = ref.reference_point_descriptors(fmap, points)
    slow = ref.reference_triplet_accuracy(slow_desc, groups, RELATIONS, mode=mode)
    slow_s = time.perf_counter() - start
    diff = max(abs(fast[k] - slow[k]) for k in METRIC_KEYS)
    desc_diff = float(np.abs(fast_desc - slow_desc).max())
    print(f"{n_points} points, {size}x{size}x{depth} float32 map, {mode} mode")
    print(f"  fast (matseg_hub.metrics.triplet): {fast_s:.3f} s (best of {repeats})")
    print(f"  loop reference          : {slow_s:.1f} s")
    print(f"  ratio                   : {slow_s / fast_s:.0f}x")
    print(f"  max |difference|        : {diff:.3g} (metric values), {desc_diff:.3g} (descriptors)")
    print("  values                  : " + ", ".join(f"{k}={fast[k]:.6f}" for k in METRIC_KEYS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, nargs="+", default=[800, 200])
    parser.add_argument("--size", type=int, default=700)
    parser.add_argument("--depth", type=int, default=128)
    parser.add_argument("--mode", default="soft", choices=["soft", "hard", "soft_only"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for n in args.points:
        run(n, args.size, args.depth, args.seed, args.mode, args.repeats)


if __name__ == "__main__":
    main()

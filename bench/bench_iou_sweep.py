"""Time the one-pass IoU threshold sweep (matseg_hub.metrics.iou.iou_sweep) against the plain sweep (one mask per
threshold) on the same maps, and check that they agree exactly.

A 700x700 similarity map (the evaluation size), a region covering about a third of it, thresholds 0 to 1 by 0.01
(the paper's oracle sweep, 101 thresholds) and, with --steps, other sweep sizes.

    python bench/bench_iou_sweep.py
    python bench/bench_iou_sweep.py --size 1000 --repeats 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from matseg_hub.metrics.iou import iou_sweep, iou_sweep_plain


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=700)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--steps", type=int, nargs="+", default=[101, 1001])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    yy, xx = np.mgrid[: args.size, : args.size]
    region = (yy - args.size / 2) ** 2 + (xx - args.size / 2) ** 2 < (0.33 * args.size) ** 2
    sim = np.clip(0.35 * region + 0.65 * rng.random((args.size, args.size)), 0, 1).astype(np.float32)
    print(f"{args.size}x{args.size} map, region {region.mean():.0%} of the pixels, best of {args.repeats} runs")
    for steps in args.steps:
        thresholds = np.linspace(0.0, 1.0, steps)
        fast = iou_sweep(sim, region, thresholds)
        plain = iou_sweep_plain(sim, region, thresholds)
        t_fast = best_of(lambda: iou_sweep(sim, region, thresholds), args.repeats)
        t_plain = best_of(lambda: iou_sweep_plain(sim, region, thresholds), max(1, args.repeats // 5))
        print(f"{steps:5d} thresholds: one pass {t_fast * 1e3:7.2f} ms, plain {t_plain * 1e3:8.1f} ms, "
              f"{t_plain / t_fast:6.1f}x, identical: {bool(np.array_equal(fast, plain))}, "
              f"best IoU {fast.max():.4f} at t = {thresholds[int(np.argmax(fast))]:.3f}")


if __name__ == "__main__":
    main()

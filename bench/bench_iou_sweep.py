"""Time the one-pass IoU threshold sweep (matseg_hub.metrics.iou.iou_sweep: one histogram pass, arithmetic buckets)
against the brute-force sweep (iou_sweep_plain: ``mask = sim > t``, intersection / union, per threshold) on the same
maps, and check that they agree exactly.

Maps of the evaluation size (700x700, float32 like every scorer's output unless said), a region covering about a third of it:
``[0, 1]`` (a promptable model's probabilities), ``[-1, 1]`` (a descriptor model's cosine), and a two-level 0/1 map
(a hard answer: every pixel on a threshold, the slow path of the histogram), and the [0, 1] map in float64 (buckets
checked against both neighbouring thresholds). Thresholds 0 to 1 by 0.01 (the paper's
oracle sweep, 101 thresholds) and by 0.001 (1001).

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
    parser.add_argument("--repeats", type=int, default=20, help="runs of the histogram sweep (best of)")
    parser.add_argument("--steps", type=int, nargs="+", default=[101, 1001])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    yy, xx = np.mgrid[: args.size, : args.size]
    region = (yy - args.size / 2) ** 2 + (xx - args.size / 2) ** 2 < (0.33 * args.size) ** 2
    noise = rng.random((args.size, args.size))
    maps = {
        "[0, 1]": np.clip(0.35 * region + 0.65 * noise, 0, 1).astype(np.float32),
        "cosine [-1, 1]": (0.7 * region + 1.3 * noise - 1).astype(np.float32),
        "two levels 0/1": (noise < 0.5 + 0.4 * region).astype(np.float32),
        "float64 [0, 1]": np.clip(0.35 * region + 0.65 * noise, 0, 1),
    }
    print(f"{args.size}x{args.size} float32 maps, region {region.mean():.0%} of the pixels; histogram sweep best of "
          f"{args.repeats} runs, brute-force best of {max(1, args.repeats // 4)}")
    print(f"{'map':<16} {'thresholds':>10} {'histogram ms':>13} {'brute-force ms':>15} {'ratio':>8} {'identical':>9}")
    for name, sim in maps.items():
        for steps in args.steps:
            thresholds = np.round(np.linspace(0.0, 1.0, steps), 6)
            fast = iou_sweep(sim, region, thresholds)
            plain = iou_sweep_plain(sim, region, thresholds)
            t_fast = best_of(lambda: iou_sweep(sim, region, thresholds), args.repeats)
            t_plain = best_of(lambda: iou_sweep_plain(sim, region, thresholds), max(1, args.repeats // 4))
            print(f"{name:<16} {steps:>10d} {t_fast * 1e3:>13.2f} {t_plain * 1e3:>15.1f} {t_plain / t_fast:>7.1f}x "
                  f"{str(bool(np.array_equal(fast, plain))):>9}")


if __name__ == "__main__":
    main()

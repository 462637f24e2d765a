#!/usr/bin/env python
"""Benchmark builder throughput and peak memory at two dataset sizes (memory must stay flat in the image count).

    python bench/bench_benchmark_builder.py [--sizes 100 400] [--height 1500 --width 2000] [--work bench/_work]

Generates phone-sized photos (EXIF orientation 6, like the real benchmark) in the raw layout, then builds each
dataset in a fresh subprocess and prints images/s, MB/s and the subprocess' peak RSS.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from matseg_hub.benchmark.dataset import build_benchmark_dataset
t = time.perf_counter()
build_benchmark_dataset(sys.argv[1], sys.argv[2], max_shard_size=sys.argv[3])
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--width", type=int, default=2000)
    parser.add_argument("--max-shard-size", default="200MB")
    parser.add_argument("--work", default=str(Path(__file__).parent / "_work" / "builder"))
    args = parser.parse_args()

    from matseg_hub.testing import make_benchmark_folder
    from matseg_hub.utils.logging import disable_progress_bars

    disable_progress_bars()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    raw = work / "raw"
    t = time.perf_counter()
    make_benchmark_folder(raw, num_images=max(args.sizes), size=(args.height, args.width), orientation=6, seed=0)
    print(f"generated {max(args.sizes)} photos {args.width}x{args.height} in {time.perf_counter() - t:.1f} s")
    images = sorted((raw / "images").iterdir())
    rows = []
    for n in args.sizes:
        sub = work / f"raw{n}"
        (sub / "images").mkdir(parents=True)
        (sub / "data").mkdir()
        for img in images[:n]:
            (sub / "images" / img.name).symlink_to(img.resolve())
            (sub / "data" / img.stem).symlink_to((raw / "data" / img.stem).resolve())
        nbytes = sum(img.stat().st_size for img in images[:n])
        out = subprocess.run([sys.executable, "-c", CHILD, str(sub), str(work / f"out{n}"), args.max_shard_size],
                             capture_output=True, text=True, check=True, env={"MATSEG_DISABLE_PROGRESS": "1",
                                                                               **__import__("os").environ})
        result = json.loads(out.stdout.strip().splitlines()[-1])
        shards = len(list((work / f"out{n}" / "data").glob("*.parquet")))
        rows.append((n, result["seconds"], n / result["seconds"], nbytes / 1e6 / result["seconds"],
                     result["peak_rss_mb"], shards))
    print(f"{'images':>7} {'seconds':>8} {'images/s':>9} {'MB/s':>7} {'peak RSS MB':>12} {'shards':>7}")
    for n, s, ips, mbs, rss, shards in rows:
        print(f"{n:>7} {s:>8.2f} {ips:>9.1f} {mbs:>7.1f} {rss:>12.0f} {shards:>7}")
    print(f"peak memory ratio {rows[-1][0]}/{rows[0][0]} images: {rows[-1][4] / rows[0][4]:.2f}x "
          f"(flat = 1.0; image count ratio {rows[-1][0] / rows[0][0]:.0f}x)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

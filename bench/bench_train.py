#!/usr/bin/env python
"""Training throughput: the data pipeline alone, the optimisation step alone, and both together.

    python bench/bench_train.py [--config train/configs/tiny-cpu.yaml] [--steps 30] [--workers 0 1 2] [key=value ...]

Prints, for the configuration's batches (random sizes, pixel cap, augmentations):

* data: batches/s, scenes/s and megapixels/s of the loader (2D scenes generated on the fly, JPEG/PNG round trip,
  crop/resize, augmentation) for each DataLoader worker count;
* step: optimisation steps/s on a fixed batch (forward + loss + backward + AdamW), i.e. with free data;
* train: steps/s with the real loader, and the share of the time spent waiting for data. The data pipeline is not
  the bottleneck when ``data scenes/s`` exceeds ``step images/s`` and the wait share is small.

Extra ``--key value`` pairs override the config (e.g. ``--max_pixels 131072``). Threads: torch uses all cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "train/configs/tiny-cpu.yaml"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args, rest = parser.parse_known_args()

    from matseg_hub.training.config import load_config
    from matseg_hub.training.data import build_loader
    from matseg_hub.training.loss import material_loss
    from matseg_hub.training.model import build_model, normalize_images

    cfg = load_config(args.config, rest)
    print(f"config {args.config}: sizes {cfg.min_size}-{cfg.max_size}, max_pixels {cfg.max_pixels}, "
          f"sources {[s['type'] for s in cfg.data_sources]}, torch threads {torch.get_num_threads()}")

    def run_loader(workers: int, n: int):
        cfg.num_workers = workers
        it = iter(build_loader(cfg))
        next(it)  # start-up (worker fork, sources) not counted
        t = time.perf_counter()
        scenes = pixels = 0
        for _ in range(n):
            b = next(it)
            scenes += b["images"].shape[0]
            pixels += b["images"].shape[0] * b["images"].shape[2] * b["images"].shape[3]
        dt = time.perf_counter() - t
        del it
        return n / dt, scenes / dt, pixels / dt / 1e6

    for w in args.workers:
        bps, sps, mps = run_loader(w, args.steps)
        print(f"data   workers={w}: {bps:6.2f} batches/s  {sps:7.1f} scenes/s  {mps:6.2f} Mpx/s")

    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    cfg.num_workers = 0
    batches = [b for _, b in zip(range(8), build_loader(cfg))]

    def step(batch):
        out = model(normalize_images(batch["images"])).descriptor_map
        loss = material_loss(out, batch["masks"], batch["annotated"], num_materials=batch["num_materials"],
                             temperature=cfg.temperature).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    step(batches[0])
    t = time.perf_counter()
    images = 0
    for i in range(args.steps):
        b = batches[i % len(batches)]
        step(b)
        images += b["images"].shape[0]
    dt = time.perf_counter() - t
    print(f"step   fixed batches: {args.steps / dt:6.2f} steps/s  {images / dt:7.1f} images/s")

    cfg.num_workers = max(args.workers)
    it = iter(build_loader(cfg))
    step(next(it))
    t = time.perf_counter()
    wait = 0.0
    images = 0
    for _ in range(args.steps):
        t0 = time.perf_counter()
        b = next(it)
        wait += time.perf_counter() - t0
        step(b)
        images += b["images"].shape[0]
    dt = time.perf_counter() - t
    del it
    print(f"train  workers={cfg.num_workers}: {args.steps / dt:6.2f} steps/s  {images / dt:7.1f} images/s  "
          f"data wait {100 * wait / dt:4.1f}% of the time")


if __name__ == "__main__":
    main()

"""``matseg build benchmark``: raw benchmark folder -> Hub dataset folder (Parquet shards + card) [-> Hub]."""

from __future__ import annotations

import argparse

from ._build_common import add_build_arguments, finish_build, launch_build

GROUP = "build"
NAME = "benchmark"
HELP = "build the MatSeg benchmark Hub dataset (Parquet shards + dataset card) from the authors' raw folder"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="raw benchmark folder holding images/ and data/")
    add_build_arguments(parser)
    parser.add_argument("--allow-pickle", action="store_true",
                        help="read data.pkl where data.json is absent (pickles can run code: trusted data only)")


def run(args: argparse.Namespace) -> int:
    launched = launch_build(args, __name__, "the MatSeg benchmark")
    if launched is not None:
        return launched
    from ..benchmark.dataset import build_benchmark_dataset

    out = build_benchmark_dataset(args.source, args.output, max_shard_size=args.max_shard_size,
                                  skip_bad=args.skip_bad, allow_pickle=args.allow_pickle, shard_index=args.shard,
                                  num_shards=args.num_shards, overwrite=args.overwrite, resume=not args.no_resume)
    return finish_build(out, args, "the MatSeg benchmark")

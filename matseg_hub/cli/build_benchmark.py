"""``matseg build benchmark``: raw benchmark folder -> Hub dataset folder (Parquet shards + card) [-> Hub]."""

from __future__ import annotations

import argparse

GROUP = "build"
NAME = "benchmark"
HELP = "build the MatSeg benchmark Hub dataset (Parquet shards + dataset card) from the authors' raw folder"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="raw benchmark folder holding images/ and data/")
    parser.add_argument("--output", required=True, help="dataset folder to write (a Hub dataset repository)")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the finished folder to this dataset repo")
    parser.add_argument("--max-shard-size", default="500MB", help="Parquet shard size bound (default: 500MB)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="report and leave out bad items (listed in the card) instead of stopping")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="read data.pkl where data.json is absent (pickles can run code: trusted data only)")
    parser.add_argument("--shard", type=int, default=0, help="this job's index in a job array (default 0)")
    parser.add_argument("--num-shards", type=int, default=1, help="number of jobs in the array (default 1)")
    parser.add_argument("--no-resume", action="store_true", help="discard an interrupted build instead of resuming")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")


def run(args: argparse.Namespace) -> int:
    from ..benchmark_dataset import build_benchmark_dataset
    from ..utils.logging import get_logger

    logger = get_logger(__name__)
    out = build_benchmark_dataset(args.source, args.output, max_shard_size=args.max_shard_size,
                                  skip_bad=args.skip_bad, allow_pickle=args.allow_pickle, shard_index=args.shard,
                                  num_shards=args.num_shards, resume=not args.no_resume)
    if out is None:
        logger.info("job %d of %d finished; the last job writes the card", args.shard, args.num_shards)
        return 0
    print(f"wrote {out}")
    if args.push_to_hub:
        from ..hub import publish_folder

        url = publish_folder(out, args.push_to_hub, repo_type="dataset", private=args.private,
                             commit_message="Upload MatSeg benchmark (matseg build benchmark)")
        print(f"pushed to {url}")
    return 0

"""``matseg build pbr``: a folder of PBR material folders -> the PBR Hub dataset (licence per row) [-> Hub]."""

from __future__ import annotations

import argparse

from ._build_common import add_build_arguments, finish_build, launch_build

GROUP = "build"
NAME = "pbr"
HELP = "build the PBR materials Hub dataset from material folders in the authors' layout"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="folder of material folders (authors' layout)")
    parser.add_argument("--require-finished", action="store_true", help="only folders holding Finished.txt")
    add_build_arguments(parser)


def run(args: argparse.Namespace) -> int:
    launched = launch_build(args, __name__, "MatSeg PBR materials")
    if launched is not None:
        return launched
    from ..materials.datasets import build_pbr_dataset

    out = build_pbr_dataset(args.input, args.output, max_shard_size=args.max_shard_size, skip_bad=args.skip_bad,
                            require_finished=args.require_finished, shard_index=args.shard,
                            num_shards=args.num_shards, overwrite=args.overwrite, resume=not args.no_resume)
    return finish_build(out, args, "MatSeg PBR materials")

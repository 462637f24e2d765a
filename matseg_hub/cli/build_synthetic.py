"""``matseg build synthetic``: scene folders in the official layout -> a synthetic-scenes Hub dataset [-> Hub].

(Generated 2D scenes go straight to Parquet with ``matseg generate 2d --format parquet``.)
"""

from __future__ import annotations

import argparse

from ._build_common import add_build_arguments, finish_build, launch_build

GROUP = "build"
NAME = "synthetic"
HELP = ("package scene folders in the official layout (3D renders, the authors' published data, nested "
        "sub-scenes) as a Hub dataset")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-folders", required=True, help="root of the scene folders (nested sub-scenes too)")
    add_build_arguments(parser, resume=False)


def run(args: argparse.Namespace) -> int:
    launched = launch_build(args, __name__, "MatSeg synthetic scenes")
    if launched is not None:
        return launched
    from ..synthetic.dataset import folders_to_parquet

    out = folders_to_parquet(args.from_folders, args.output, max_shard_size=args.max_shard_size,
                             shard_index=args.shard, num_shards=args.num_shards, overwrite=args.overwrite,
                             skip_bad=args.skip_bad)
    return finish_build(out, args, "MatSeg synthetic scenes")

"""``matseg build textures``: a texture folder -> the textures Hub dataset (licence per row) [-> Hub]."""

from __future__ import annotations

import argparse

from ._build_common import add_build_arguments, finish_build, launch_build

GROUP = "build"
NAME = "textures"
HELP = ("build the textures Hub dataset from a texture folder (what `matseg generate textures` writes, or the "
        "authors' textures); licences from its metadata.csv / licenses.json")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="texture folder")
    add_build_arguments(parser)


def run(args: argparse.Namespace) -> int:
    launched = launch_build(args, __name__, "MatSeg textures")
    if launched is not None:
        return launched
    from ..materials.datasets import build_textures_dataset

    out = build_textures_dataset(args.input, args.output, max_shard_size=args.max_shard_size, skip_bad=args.skip_bad,
                                 shard_index=args.shard, num_shards=args.num_shards, overwrite=args.overwrite,
                                 resume=not args.no_resume)
    return finish_build(out, args, "MatSeg textures")

"""``matseg build segmentation``: a raw segmentation set -> Hub dataset folder (Parquet shards + card) [-> Hub]."""

from __future__ import annotations

import argparse
import sys

from ._build_common import add_build_arguments, finish_build, launch_build

GROUP = "build"
NAME = "segmentation"
HELP = ("build a segmentation-set Hub dataset (images + one binary mask per region) from a masks/, scenes, LabPics or "
        "Materialistic folder")
FORMATS = ("masks", "scenes", "labpics", "materialistic")  # matseg_hub.segmentation.formats.FORMATS (kept light here)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="the raw folder (see --format)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="masks: images/ + masks/<stem>/<region>.png or masks/<stem>.png label maps; scenes: "
                             "`matseg generate 2d/3d` scene folders; labpics: LabPics 2 folders (Image.jpg + "
                             "Data.json); materialistic: images/*.png + masks/*.exr (default: detected when "
                             "unambiguous)")
    add_build_arguments(parser)
    parser.add_argument("--name", help="the dataset's pretty name in its card (default: the source folder's name)")


def run(args: argparse.Namespace) -> int:
    launched = launch_build(args, __name__, "a segmentation set")
    if launched is not None:
        return launched
    from ..segmentation.dataset import build_segmentation_dataset

    skipped = []
    out = build_segmentation_dataset(args.source, args.output, format=args.format, shard=args.shard,
                                     num_shards=args.num_shards, skip_bad=args.skip_bad, overwrite=args.overwrite,
                                     resume=not args.no_resume, max_shard_size=args.max_shard_size,
                                     pretty_name=args.name, on_skip=lambda key, reason: skipped.append((key, reason)))
    if skipped:
        print(f"skipped {len(skipped)} bad image(s) (listed in the dataset card):", file=sys.stderr)
        for key, reason in skipped:
            print(f"  {key}: {reason}", file=sys.stderr)
    return finish_build(out, args, "a segmentation set")

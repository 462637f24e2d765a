"""Build the MatSeg synthetic-scenes Hub dataset (Parquet shards + dataset card).

Two sources:

* generated 2D scenes (the default): ``python builders/matseg_synthetic.py --output matseg-2d --num 100000
  --size 512 [--workers 8] [--shard i --num-shards n] [--natural-images DIR --textures DIR]``;
* existing scene folders in the official layout (3D renders, the authors' published data):
  ``python builders/matseg_synthetic.py --from-folders DIR --output matseg-3d``.

Resumable: rerun the same command after an interruption. The library parts live in
:mod:`matseg_hub.synthetic_dataset`.
"""

import argparse
import logging
import sys

from matseg_hub.cli.generate_2d import main as generate_main
from matseg_hub.errors import MatSegError
from matseg_hub.utils.logging import set_verbosity


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--from-folders" not in argv:
        return generate_main(["--format", "parquet", *argv])
    parser = argparse.ArgumentParser(description="package official-layout scene folders as a Hub dataset")
    parser.add_argument("--from-folders", required=True, help="root of the scene folders (nested sub-scenes too)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--max-shard-size", default="500MB")
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--num-shards", type=int, default=1)
    parser.add_argument("--skip-bad", action="store_true",
                        help="list unreadable scenes in the card instead of stopping")
    args = parser.parse_args(argv)
    set_verbosity(logging.INFO)
    from matseg_hub.synthetic_dataset import folders_to_parquet

    try:
        folders_to_parquet(args.from_folders, args.output, max_shard_size=args.max_shard_size,
                           shard_index=args.shard, num_shards=args.num_shards, skip_bad=args.skip_bad)
    except MatSegError as exc:
        print(f"matseg_synthetic: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

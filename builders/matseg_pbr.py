#!/usr/bin/env python
"""Build the MatSeg PBR Hub dataset (Parquet shards + dataset card) from a folder of material folders.

    python builders/matseg_pbr.py --input PBR_DIR --output DIR [--max-shard-size 500MB] [--skip-bad]
                                       [--shard i --num-shards n] [--push-to-hub REPO_ID]

Material folders as ``matseg generate pbr`` writes them (``OriginColor.jpg``, ``Roughness.jpg``, ...); each
material's licence comes from its ``material.json``, else ``licenses.json`` at the root keyed by folder name,
else "unknown". ``--require-finished`` keeps only folders holding ``Finished.txt``.
"""

import argparse
import sys

from matseg_hub.asset_datasets import build_pbr_dataset


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True, help="folder of material folders (authors' layout)")
    ap.add_argument("--output", required=True, help="dataset folder to write (a Hub dataset repository)")
    ap.add_argument("--max-shard-size", default="500MB")
    ap.add_argument("--require-finished", action="store_true", help="only folders holding Finished.txt")
    ap.add_argument("--skip-bad", action="store_true", help="leave out unreadable files (listed in the card)")
    ap.add_argument("--shard", type=int, default=0)
    ap.add_argument("--num-shards", type=int, default=1)
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--push-to-hub", metavar="REPO_ID")
    args = ap.parse_args(argv)
    out = build_pbr_dataset(args.input, args.output, max_shard_size=args.max_shard_size, skip_bad=args.skip_bad,
                            require_finished=args.require_finished, shard_index=args.shard,
                            num_shards=args.num_shards, resume=not args.no_resume)
    if out is None:
        print(f"job {args.shard} of {args.num_shards} finished; the last job writes the card")
        return 0
    print(f"wrote {out}")
    if args.push_to_hub:
        from matseg_hub.hub import publish_folder

        print(f"pushed to {publish_folder(out, args.push_to_hub, repo_type='dataset')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

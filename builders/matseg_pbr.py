#!/usr/bin/env python
"""Build the MatSeg PBR Hub dataset (Parquet shards + dataset card) from a folder of material folders.

    python builders/matseg_pbr.py --input PBR_DIR --output DIR [--max-shard-size 500MB] [--skip-bad]
                                       [--shard i --num-shards n] [--push-to-hub REPO_ID]

Material folders as ``matseg generate pbr`` writes them (``OriginColor.jpg``, ``Roughness.jpg``, ...); each
material's licence comes from its ``material.json``, else ``licenses.json`` at the root keyed by folder name,
else "unknown". ``--require-finished`` keeps only folders holding ``Finished.txt``.

Same as ``matseg build pbr``; see ``--help``.
"""

import sys

from matseg_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", "pbr", *sys.argv[1:]]))

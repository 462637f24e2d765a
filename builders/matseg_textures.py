#!/usr/bin/env python
"""Build the MatSeg textures Hub dataset (Parquet shards + dataset card) from a texture folder.

    python builders/matseg_textures.py --input TEXTURES_DIR --output DIR [--max-shard-size 500MB] [--skip-bad]
                                       [--shard i --num-shards n] [--push-to-hub REPO_ID]

The texture folder is what ``matseg generate textures`` writes (or the authors' textures); licences come from
its ``metadata.csv`` / ``licenses.json`` (per texture or per source photo id; default "unknown").

Same as ``matseg build textures``; see ``--help``.
"""

import sys

from matseg_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", "textures", *sys.argv[1:]]))

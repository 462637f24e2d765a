#!/usr/bin/env python
"""Build the MatSeg benchmark Hub dataset from the authors' raw folder.

    python builders/matseg.py --source RAW --output DIR [--push-to-hub REPO_ID] [--max-shard-size 500MB]
                              [--skip-bad] [--shard i --num-shards n]

Same as ``matseg build benchmark``; see ``--help``.
"""

import sys

from matseg_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", "benchmark", *sys.argv[1:]]))

"""Build the MatSeg synthetic-scenes Hub dataset (Parquet shards + dataset card).

Two sources:

* generated 2D scenes (the default): ``python builders/matseg_synthetic.py --output matseg-2d --num 100000
  --size 512 [--workers 8] [--shard i --num-shards n] [--natural-images DIR --textures DIR]``;
* existing scene folders in the official layout (3D renders, the authors' published data):
  ``python builders/matseg_synthetic.py --from-folders DIR --output matseg-3d``.

Resumable: rerun the same command after an interruption. Same as ``matseg build synthetic --from-folders ...``
and ``matseg generate 2d --format parquet ...``; the library parts live in :mod:`matseg_hub.synthetic.dataset`.
"""

import sys

from matseg_hub.cli import main


def run(argv) -> int:
    if any(a == "--from-folders" or a.startswith("--from-folders=") for a in argv):
        return main(["build", "synthetic", *argv])
    return main(["generate", "2d", "--format", "parquet", *argv])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

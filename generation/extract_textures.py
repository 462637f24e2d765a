#!/usr/bin/env python
"""Extract uniform textures from a folder of natural photos.

    python generation/extract_textures.py --input PHOTOS_DIR --output DIR [--cell-size 40] [--workers K]
                                          [--preview grid.png]

Same as ``matseg generate textures``; see ``--help``.
"""

import sys

from matseg_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", "textures", *sys.argv[1:]]))

#!/usr/bin/env python
"""Make PBR materials (some mixed) from a texture folder or dataset.

    python generation/make_pbr.py --textures DIR --num N --seed S --output DIR [--mix-ratio 0.3] [--workers K]

Same as ``matseg generate pbr``; see ``--help``.
"""

import sys

from matseg_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", "pbr", *sys.argv[1:]]))

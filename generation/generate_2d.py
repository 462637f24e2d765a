#!/usr/bin/env python3
"""Generate 2D MatSeg scenes: ``python generation/generate_2d.py --num 100 --size 512 --output scenes/``.

Same options as ``matseg generate 2d`` (``--help``); the work is done by :mod:`matseg_hub.synthetic.scenes2d` and
:mod:`matseg_hub.synthetic.dataset`.
"""

import sys

from matseg_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", "2d", *sys.argv[1:]]))

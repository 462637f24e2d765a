"""Named random streams: every generator of the package draws from ``SeedSequence([stream_id, *words])``.

``numpy.random.SeedSequence`` pads its entropy with zeros, so ``SeedSequence([seed, index])`` equals
``SeedSequence([seed, index, 0])``: two generators that both seeded from their own ``(seed, index, ...)`` words would
draw the same numbers. Each stream therefore starts its entropy with its own non-zero 32-bit id (the CRC-32 of its
name, listed in :data:`STREAMS`), so streams never collide whatever the seeds, indices and lengths.

Example::

    rng = stream_rng("scenes2d", seed, index)   # the generator of 2D scene ``index`` of the stream ``seed``
"""

from __future__ import annotations

import zlib
from typing import Dict

import numpy as np

from ..errors import MatSegInputError

#: every random stream of the package (a new stream gets a new name here: its id is the CRC-32 of the name)
STREAM_NAMES = (
    "scenes2d",            # 2D scene (seed, index)
    "scenes2d.redraw",     # 2D scene (seed, index) redrawn: attempt >= 1
    "scene3d",             # 3D scene (seed, index, attempt)
    "pbr.material",        # PBR material (seed, item) of a PBR build
    "training.batch",      # training batch (seed, rank, worker, batch)
    "scoring.points",      # points on held-out scene (seed, index)
    "segmentation.iou.queries",  # IoU query discs of a region (seed, crc32(image id), region)
)
STREAMS: Dict[str, int] = {name: zlib.crc32(name.encode("ascii")) for name in STREAM_NAMES}
assert len(set(STREAMS.values())) == len(STREAMS) and all(STREAMS.values())  # distinct, non-zero


def stream_seed(stream: str, *words: int) -> np.random.SeedSequence:
    """``SeedSequence([STREAMS[stream], *words])``; ``words`` are non-negative ints (seed, index, ...)."""
    if stream not in STREAMS:
        raise MatSegInputError(f"unknown random stream {stream!r}; known: {sorted(STREAMS)}")
    values = [int(w) for w in words]
    if any(v < 0 for v in values):
        raise MatSegInputError(f"the words of random stream {stream!r} must be >= 0, got {values}")
    return np.random.SeedSequence([STREAMS[stream], *values])


def stream_rng(stream: str, *words: int) -> np.random.Generator:
    """``numpy.random.default_rng(stream_seed(stream, *words))``."""
    return np.random.default_rng(stream_seed(stream, *words))


__all__ = ["STREAMS", "STREAM_NAMES", "stream_rng", "stream_seed"]

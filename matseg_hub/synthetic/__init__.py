"""Synthetic 2D data made by implanting natural-image patterns (paper §3.1, SPEC §4).

* :mod:`.patterns` — pattern maps: a property of a natural image under a fuzzy threshold.
* :mod:`.sources` — the source images of the 2D generator (folders, Hub datasets, built-in photos).
* :mod:`.scenes2d` — scene settings and the 2D scene generator.
* :mod:`.layout` — the official scene-folder layout (``RGB__RGB.jpg``, ``maskNNN.png``, ...): writer and reader,
  shared with the 3D renderer.
* :mod:`.rows` — scenes as Hub rows: the row schema (declared once), per-row licences.
* :mod:`.streaming` — scenes as ``datasets.IterableDataset`` streams (generated, folders, mixtures).
* :mod:`.dataset` — resumable folder and Parquet writers of generated scenes, and the synthetic Hub dataset.
"""

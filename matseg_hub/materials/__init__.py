"""Textures and PBR materials extracted from natural images (paper §3.2, SPEC §4).

* :mod:`.textures` — unsupervised texture extraction (cell statistics, region growing) and its resumable folder run.
* :mod:`.pbr` — PBR/SVBRDF materials from textures, mixing, the authors' material-folder layout, and the resumable
  generation run.
* :mod:`.datasets` — the textures and PBR Hub datasets (build, load, stream).
"""

"""Textures and PBR materials extracted from natural images (paper §3.2, SPEC §4).

* :mod:`.textures` — unsupervised texture extraction (cell statistics, region growing).
* :mod:`.texture_extraction` — its resumable, parallel run over a folder of photos.
* :mod:`.pbr` — PBR/SVBRDF materials from textures, mixing, the authors' material-folder layout.
* :mod:`.pbr_generation` — the resumable, parallel PBR generation run.
* :mod:`.datasets` — the textures and PBR Hub datasets (build, load, stream).
"""

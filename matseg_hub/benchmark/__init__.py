"""The MatSeg benchmark (paper §4, SPEC §2): the authors' raw folder format, its Hub dataset, and the evaluation loop.

* :mod:`.format` — the raw format: reader (EXIF orientation, points, group relations), validation with typed
  errors, evaluation resolution and point discs, the built-in sample.
* :mod:`.dataset` — the Hub dataset: build Parquet shards + card from a raw folder, load a raw folder, a built folder
  or a Hub id.
* :mod:`.evaluation` — score a model on the benchmark with :mod:`matseg_hub.metrics` (``matseg evaluate``).
"""

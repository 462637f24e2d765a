"""Models that score the benchmark.

* :mod:`.matseg` — the MatSeg ConvNeXt U-Net in the ``transformers`` layout (configuration, modeling, image
  processing, model card, conversion of the authors' checkpoints).
* :mod:`.inference` — descriptor maps, similarity to clicked points, masks; the model specs (``rgb``, ``hsv``, a
  folder or Hub id) that :func:`~matseg_hub.models.inference.load_descriptor_fn` resolves for the evaluation.
"""

"""Metrics (SPEC §3, §10): :mod:`.triplet` (triplet accuracy, vectorised, equal to the reference) and :mod:`.iou`
(IoU of a thresholded similarity map, every threshold of a sweep in one pass).

The ``evaluate`` module in the repository's ``metrics/triplet_accuracy/`` is a thin wrapper over a verbatim copy of
:mod:`.triplet`'s computation (kept identical by a test).
"""

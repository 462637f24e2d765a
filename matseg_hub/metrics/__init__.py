"""Metrics of the benchmark (SPEC §3): :mod:`.triplet` (triplet accuracy, vectorised, equal to the reference).

The ``evaluate`` module in the repository's ``metrics/triplet_accuracy/`` is a thin wrapper over a verbatim copy of
:mod:`.triplet`'s computation (kept identical by a test).
"""

"""The vectorised evaluator's building blocks (see :mod:`monitoring.engine.evaluator`).

Every value is computed for all evaluation steps of a query at once: instant
vectors are dense ``[series × steps]`` matrices with a separate presence mask,
range-window functions work on all windows of all series with NumPy, and only
per-series (never per-sample or per-step) work runs in Python loops.
"""

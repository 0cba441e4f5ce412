"""The Numenta Anomaly Benchmark (NAB): corpus loader, scorer and the ``bench/nab/run`` harness.

The benchmark's files are read in place from ``../shared/peer/nab`` (next to the
checkout); nothing of NAB is copied into the project. See docs/nab.md.
"""

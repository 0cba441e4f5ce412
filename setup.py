"""The optional compiled module; everything else about the package is in pyproject.toml.

``monitoring/engine/fast/_native.c`` holds forward walks over sorted sample
times for evaluations over many steps (see monitoring/engine/fast/native.py).
Without a C compiler the build goes on without it and the NumPy twins of its
functions are used. ``-ffp-contract=off``: no fused multiply-add, so the
arithmetic rounds as Prometheus's (and NumPy's) does, operation by operation.
"""

from __future__ import annotations

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "monitoring.engine.fast._native", ["monitoring/engine/fast/_native.c"],
    extra_compile_args=["-O2", "-ffp-contract=off"], optional=True)])

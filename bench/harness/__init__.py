"""The shared parts of the benchmark scripts in bench/: timing, validation against the NumPy
reference, machine facts, thread control, the worker-process protocol, the JSON and markdown
writers, and one module per implementation under ``impls/``.

The scripts run as ``python bench/SCRIPT.py``, which puts bench/ first on ``sys.path``, so
they import this package as ``harness``. Nothing here imports NumPy or lenet_fast at package
import, so a script can cap the BLAS threads (:mod:`harness.threads`) before NumPy loads.
"""

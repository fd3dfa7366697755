"""Thread control of the libraries beside lenet_fast: NumPy's BLAS (at start-up through the
environment, at run time through threadpoolctl or OpenBLAS's own setter) and the variables
that decide the OpenMP pools. Imports neither NumPy nor lenet_fast."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Callable

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

#: The environment variables that decide the thread pools; each worker records what it saw.
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "GOMP_SPINCOUNT",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "LENET_FAST_ISA",
)


def thread_env() -> dict[str, str | None]:
    """The thread-pool variables of this process's environment (None: not set)."""
    return {v: os.environ.get(v) for v in THREAD_ENV}


def cap_blas_env(n: int) -> None:
    """Cap NumPy's BLAS pool at ``n`` threads, unless the user chose a value: effective only
    before NumPy is imported."""
    for var in BLAS_ENV:
        os.environ.setdefault(var, str(n))


class BlasThreads:
    """Sets the thread count of NumPy's BLAS at run time (threadpoolctl if present, else
    OpenBLAS's own ``*_set_num_threads`` found among the loaded libraries)."""

    def __init__(self) -> None:
        self.how = "not controlled (library default)"
        self._set: Callable[[int], None] | None = None
        try:
            from threadpoolctl import threadpool_limits

            self._set = lambda n: threadpool_limits(n, user_api="blas")
            self.how = "threadpoolctl"
            return
        except ImportError:
            pass
        try:
            with open("/proc/self/maps", encoding="utf-8") as f:
                libs = sorted(
                    {
                        line.split()[-1]
                        for line in f
                        if "openblas" in line.lower() and line.split()[-1].startswith("/")
                    }
                )
        except OSError:
            libs = []
        for path in libs:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for sym in (
                "scipy_openblas_set_num_threads64_",
                "scipy_openblas_set_num_threads",
                "openblas_set_num_threads64_",
                "openblas_set_num_threads",
            ):
                if hasattr(lib, sym):
                    fn = getattr(lib, sym)
                    fn.argtypes = [ctypes.c_int]
                    self._set = lambda n, fn=fn: fn(n)
                    self.how = f"{sym} ({Path(path).name})"
                    return

    def set(self, n: int) -> None:
        if self._set is not None:
            self._set(n)


def os_threads() -> int | None:
    """How many OS threads this process has now (Linux), else None."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None

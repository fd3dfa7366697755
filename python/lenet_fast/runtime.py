"""The instruction set and the thread count the compiled kernels use, and what this build
runs on.

The instruction set is chosen from the CPU when the package is imported;
``LENET_FAST_ISA=scalar|avx2|auto`` in the environment overrides that choice (an unknown or
unavailable value makes ``import lenet_fast`` raise ImportError), and :func:`set_isa`
changes it at run time.

The thread count is :func:`set_num_threads`'s; where threadpoolctl (>= 3.4) is installed,
``threadpoolctl.threadpool_limits(n)`` limits it too, inside the block, and
``threadpoolctl.threadpool_info()`` lists it (``internal_api`` "lenet_fast", ``user_api``
"openmp", since the kernels' threads are an OpenMP team: ``user_api="openmp"`` limits them,
``user_api="blas"`` does not). The limit is process-wide, not per thread.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import Any

from . import _core

__all__ = [
    "__version__",
    "available_isas",
    "get_isa",
    "get_num_threads",
    "info",
    "set_isa",
    "set_num_threads",
]

try:
    __version__ = _version("lenet_fast")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0+unknown"


def set_isa(name: str) -> None:
    """Use the kernels of instruction set ``name``: 'scalar', 'avx2' or 'auto'.

    'auto' picks the best one this CPU runs. Raises ValueError for an unknown name or one
    this CPU (or this build) cannot run. Safe while other threads run kernels: a running
    call finishes on the ISA it started with.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"name: expected a str ('scalar', 'avx2' or 'auto'), got {type(name).__name__}"
        )
    _core.set_isa(name)


def get_isa() -> str:
    """The instruction set the kernels use now: 'scalar' or 'avx2'."""
    return _core.get_isa()


def available_isas() -> list[str]:
    """The instruction sets this build can run on this CPU, e.g. ['scalar', 'avx2']."""
    return list(_core.available_isas())


def set_num_threads(n: int) -> None:
    """Let one kernel call use up to ``n`` threads (n >= 1).

    The default is OpenMP's (``OMP_NUM_THREADS``, else the number of cores). Results do
    not depend on the thread count.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int >= 1, got {type(n).__name__}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads one kernel call may use."""
    return _core.get_num_threads()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def info() -> dict[str, Any]:
    """What this build runs on: version, ISA in use and available, compiler, threads, CPU."""
    return {
        "version": __version__,
        "isa": get_isa(),
        "available_isas": available_isas(),
        "compiled_isas": list(_core.compiled_isas()),
        "compiler": _core.compiler(),
        "openmp": _core.have_openmp(),
        "num_threads": get_num_threads(),
        "cpu": _cpu_model(),
        "machine": platform.machine(),
    }


def _isa_from_env() -> None:
    """Apply ``LENET_FAST_ISA`` if it is set and not empty; a bad value is an ImportError."""
    value = os.environ.get("LENET_FAST_ISA", "").strip()
    if not value:
        return
    try:
        _core.set_isa(value)
    except ValueError as e:
        raise ImportError(f"LENET_FAST_ISA={value!r}: {e}") from None


_isa_from_env()


def _register_threadpoolctl() -> None:
    """Teach threadpoolctl, if it is installed and new enough, to find and limit _core.

    threadpoolctl looks through the loaded shared libraries for file names starting with a
    controller's ``filename_prefixes`` and keeps a match only if it exports one of its
    ``check_symbols``: "_core" alone would match any package's _core extension, the
    exported ``lenet_fast_get_num_threads`` only ours. It then calls the library's C
    functions through ctypes (csrc/dispatch.h), so it limits the very library it found.
    """
    try:
        import threadpoolctl
    except ImportError:  # an optional dependency
        return
    base = getattr(threadpoolctl, "LibController", None)
    register = getattr(threadpoolctl, "register", None)
    if base is None or register is None:  # threadpoolctl < 3.4: no third-party controllers
        return

    class LenetFastController(base):  # type: ignore[misc, valid-type]
        """lenet_fast's kernel thread count, for threadpoolctl."""

        user_api = "openmp"
        internal_api = "lenet_fast"
        filename_prefixes = ("_core",)
        check_symbols = ("lenet_fast_get_num_threads", "lenet_fast_set_num_threads")

        def get_num_threads(self) -> int:
            return int(self.dynlib.lenet_fast_get_num_threads())

        def set_num_threads(self, num_threads: int) -> None:
            # threadpoolctl passes a count >= 1; the C function ignores anything below
            self.dynlib.lenet_fast_set_num_threads(int(num_threads))

        def get_version(self) -> str:
            return __version__

    register(LenetFastController)


_register_threadpoolctl()

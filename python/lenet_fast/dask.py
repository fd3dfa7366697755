"""LeNet-5 on Dask arrays, on one machine or a ``distributed`` cluster (the ``dask`` extra).

    import dask.array as da
    from distributed import Client
    import lenet_fast.dask

    client = Client("tcp://scheduler:8786")
    x = da.from_array(digits, chunks=(5000, 28, 28))        # uint8 (n,28,28) or (n,784)
    labels = lenet_fast.dask.predict(model, x).compute()    # (n,) int64

The model is one key of the graph (a ``dask.delayed`` of it), which every chunk's task
depends on: it is pickled into the graph once, whatever the number of chunks, and reaches
each worker once (the scheduler runs it on one worker, the others fetch its result from
there), not once per chunk. A worker lost in the middle of a job is no special case: its
tasks, the model's included, are run again elsewhere.

Threads: a ``distributed`` worker runs ``nthreads`` tasks at once, one per core Dask gives
it, so each task's kernels run on one thread (``lenet_fast.set_num_threads(1)`` in the
worker process): the worker then uses exactly its ``nthreads`` cores, never
``nthreads`` x OpenMP's. Outside a worker (Dask's local schedulers) the process's own
setting is left as it is.

This module sits above model.py, beside cli.py; nothing in the package imports it.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np

from .model import LeNet5
from .runtime import set_num_threads

__all__ = ["predict"]

#: Times a shipped model was unpickled in this process (a worker: once per model it
#: received); read by the tests to check the model is not sent once per chunk.
unpickled = 0


class _Shipped:
    """The model as the graph carries it: a LeNet5 whose unpickling is counted."""

    def __init__(self, model: LeNet5) -> None:
        self.model = model

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self.model}

    def __setstate__(self, state: dict[str, Any]) -> None:
        global unpickled
        unpickled += 1
        self.model = state["model"]


def _worker_threads() -> None:
    """In a distributed worker, one kernel thread per task (see the module's docstring)."""
    try:
        from distributed import get_worker
    except ImportError:  # pragma: no cover - dask without distributed
        return
    try:
        get_worker()
    except ValueError:  # not in a worker: a local scheduler, leave the process's setting
        return
    set_num_threads(1)


def _block(x: np.ndarray, shipped: _Shipped, proba: bool, reject: Any, flat: bool) -> np.ndarray:
    _worker_threads()
    m = shipped.model
    digits = x.reshape(-1, 28, 28) if flat else x
    if proba:
        return m.predict_proba(digits)
    return m.predict(digits, reject=reject)


def predict(model: LeNet5, x: Any, *, proba: bool = False, reject: Any = None) -> da.Array:
    """Predicted digits of the dask array ``x``, as a dask array (nothing is computed).

    ``x``: uint8 digits (n,28,28) or (n,784), chunked along the first axis only (the other
    axes whole; rechunk first otherwise). Returns (n,) int64 labels, -1 where ``reject``
    ("auto" or a margin threshold T, as :meth:`LeNet5.predict`) rejects the digit; with
    ``proba=True`` Eq. 9's posterior (n,10) float64 instead (``reject`` must then be None).
    Each chunk gives the same result as ``model.predict`` (``predict_proba``) on it.
    """
    if not isinstance(model, LeNet5):
        raise TypeError(f"model: expected a lenet_fast.LeNet5, got {type(model).__name__}")
    if not isinstance(x, da.Array):
        raise TypeError(
            f"x: expected a dask array (dask.array.from_array(digits, chunks=...)), got "
            f"{type(x).__name__}"
        )
    if not isinstance(proba, bool):
        raise TypeError(f"proba: expected True or False, got {type(proba).__name__}")
    if x.dtype != np.uint8:
        raise TypeError(f"x: expected uint8 digits, got dtype {x.dtype}")
    if x.ndim == 3 and x.shape[1:] == (28, 28):
        flat = False
    elif x.ndim == 2 and x.shape[1] == 784:
        flat = True
    else:
        raise ValueError(f"x: expected digits shaped (n,28,28) or (n,784), got shape {x.shape}")
    if any(len(c) != 1 for c in x.chunks[1:]):
        raise ValueError(
            f"x: chunk along the first axis only, got chunks {x.chunks}; "
            f"x.rechunk({{{', '.join(f'{i}: -1' for i in range(1, x.ndim))}}}) does it"
        )
    if proba and reject is not None:
        raise ValueError("reject: applies to labels only; with proba=True leave it None")
    model.reject_rule(reject)  # a bad reject fails here, not later on a worker
    shipped = dask.delayed(_Shipped(model), pure=True, traverse=False)
    axes = tuple(range(1, x.ndim))
    cols, dtype = ((10,), np.float64) if proba else ((), np.int64)
    return da.map_blocks(
        _block,
        x,
        shipped,
        proba,
        reject,
        flat,
        chunks=(x.chunks[0], *((c,) for c in cols)),
        drop_axis=axes[1:] if proba else axes,
        dtype=dtype,
        meta=np.empty((0, *cols), dtype),
    )

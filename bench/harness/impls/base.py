"""The interface every implementation of the suite has."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from lenet_fast import LeNet5

Arrays = dict[str, npt.NDArray[Any]]


@dataclass
class Setup:
    """What an implementation is built from: the model (its parameters and options), the
    SDLM step sizes of the per-pattern step, the rate of the batch SGD step, and options
    of particular implementations."""

    model: LeNet5
    steps: Arrays
    sgd_lr: float
    options: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """One implementation's training step at one batch size.

    ``load(params)`` sets the parameters (float32, lenet_fast names); ``bind(x, labels)``
    fixes the data of the timed call and returns its image count; ``run()`` is the timed
    call (one step at batch b > 1; one per-pattern SDLM step for each pattern at batch 1);
    ``params()`` reads the parameters back; ``gradients(x, labels)`` are those of the
    batch-mean loss, computed by the code ``run`` uses."""

    run: Callable[[], Any]

    def load(self, params: Arrays) -> None:
        raise NotImplementedError

    def bind(self, x: npt.NDArray[np.float32], labels: npt.NDArray[Any]) -> int:
        raise NotImplementedError

    def params(self) -> Arrays:
        raise NotImplementedError

    def gradients(self, x: npt.NDArray[np.float32], labels: npt.NDArray[Any]) -> Arrays:
        raise NotImplementedError


class Impl:
    """One implementation of LeNet-5.

    ``available()`` says why it cannot run here (None: it can); ``prepare(setup)`` builds
    the network (an exception: "failed to set up"); ``set_threads(n)`` sets its thread
    count; ``infer(x)`` gives the timed inference call, returning the (N,10) penalties;
    ``trainer(batch)`` its training step (:class:`Trainer`); ``supports(task)`` None if
    the task runs, else why not."""

    key = "?"
    #: the packages it needs (for ``available``)
    requires: tuple[str, ...] = ()
    version = ""
    note = ""

    @classmethod
    def available(cls) -> str | None:
        missing = [p for p in cls.requires if importlib.util.find_spec(p) is None]
        return f"not installed ({', '.join(missing)})" if missing else None

    def prepare(self, setup: Setup) -> None:
        raise NotImplementedError

    def supports(self, task: str) -> str | None:
        return None

    def set_threads(self, n: int) -> None:
        pass

    def infer(self, x: npt.NDArray[np.float32]) -> Callable[[], Any]:
        raise NotImplementedError

    def trainer(self, batch: int) -> Trainer:
        raise NotImplementedError

    def close(self) -> None:
        pass

"""The trained models shipped in the package (``lenet_fast/models/*.npz``).

Each is made by ``python tools/make_pretrained.py`` (the paper's recipe with a seed fixed
in advance) and recorded here with its sha256, which is checked every time the file is
opened. :meth:`lenet_fast.LeNet5.pretrained` is the way to load one.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

__all__ = ["PRETRAINED", "pretrained_file"]

#: name -> (file in lenet_fast/models, its sha256)
PRETRAINED: dict[str, tuple[str, str]] = {
    "mnist": (
        "mnist.npz",
        "d313e98b19aef4543d96ca3329b303a1e1057c2db50a366e7183bf9c2f9e5b9e",
    ),
    "mnist-distorted": (
        "mnist-distorted.npz",
        "ccd9f1ce3ac9b436c87f58d3fd6066696e667b38c5bdfb0a2a2214eaa515ca79",
    ),
}


@contextlib.contextmanager
def pretrained_file(name: str) -> Iterator[Path]:
    """A path to the shipped model ``name``, valid inside the ``with`` block, after its
    sha256 is checked (ValueError for an unknown name or a damaged file)."""
    if not isinstance(name, str):
        raise TypeError(
            f"name: expected a str, one of {sorted(PRETRAINED)}, got {type(name).__name__}"
        )
    if name not in PRETRAINED:
        raise ValueError(
            f"name: no shipped model {name!r}; the shipped models are {sorted(PRETRAINED)}"
        )
    filename, sha = PRETRAINED[name]
    resource = resources.files(__package__).joinpath(f"models/{filename}")
    with resources.as_file(resource) as path:
        if not path.is_file():
            raise ValueError(
                f"name: the shipped model {name!r} ({filename}) is missing from this "
                f"installation of lenet_fast; reinstall it"
            )
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != sha:
            raise ValueError(
                f"{path}: the shipped model {name!r} does not match its sha256 (expected "
                f"{sha}, got {actual}); the installation is damaged: reinstall lenet_fast"
            )
        yield path

"""The model file: a portable ``.npz`` (no pickle), versioned, written atomically.

A file holds ``param/<name>`` for every trainable array (float32, the names and shapes of
:mod:`lenet_fast.layout`, ``param/rbf.c`` too when the centres train), ``codes`` (the
(10,84) RBF codes the model was built with) and ``meta``, a JSON string:

* ``format`` (:data:`FORMAT`) and ``format_version`` (:data:`FORMAT_VERSION`);
* ``options``: the model's options, the loss scale among them;
* ``param_names`` (in order) and ``param_sha256``, a digest of the names and bytes;
* ``history``: one record per training pass; an SDLM pass records its ``eta`` and ``mu``;
* ``train_state``: ``pass`` (passes done) and ``config``, the settings a resumed run must
  share: ``optimizer``, ``distort``, ``seed``, ``order``, ``n_train``, and
  ``hessian_samples`` (SDLM) or ``lr`` and ``batch_size`` (SGD);
* ``model_meta``: the model's ``meta`` dict (what made it: for the shipped models the
  name, training options, seed, versions, data checksums, errors and the rejection
  threshold); ``{}`` when none was recorded, and in files written before it existed.

Version 1 files, written before mu became a per-pass schedule, keep one ``mu`` in the
config (none in the pass records) and the settings of both optimizers; reading one
migrates it: the config's ``mu`` goes into each SDLM pass record that lacks one, and the
config keeps only its optimizer's settings. A version 1 file's loss scale (0.05 or 1/30
in files of that time) is in its options and applies as written.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._files import atomic_write
from .layout import PARAM_SHAPES, RBF_PARAM, RBF_SHAPE

__all__ = ["FORMAT", "FORMAT_VERSION", "read_checkpoint", "save_checkpoint"]

FORMAT = "lenet_fast.LeNet5"
FORMAT_VERSION = 2

Array = npt.NDArray[Any]

# the settings each optimizer's config keeps (besides the shared ones)
_OWN_SETTINGS = {"sdlm": ("hessian_samples",), "sgd": ("lr", "batch_size")}
_SHARED_SETTINGS = ("optimizer", "distort", "seed", "order", "n_train")


def digest(params: Mapping[str, Array]) -> str:
    """sha256 over the parameters' names and float32 bytes, in order."""
    h = hashlib.sha256()
    for name, a in params.items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()


def save_checkpoint(
    path: str | os.PathLike[str],
    options: Mapping[str, Any],
    params: Mapping[str, Array],
    codes: Array,
    *,
    history: list[dict[str, Any]] | None = None,
    train_state: dict[str, Any] | None = None,
    model_meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model file atomically: a temporary file in the same folder, flushed to disk,
    then renamed over ``path``; a failure leaves any previous file at ``path`` as it was.
    ``history``, ``train_state`` and ``model_meta`` must be JSON-able (a TypeError says
    which is not, before anything is written)."""
    path = Path(path)
    arrays32 = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in params.items()}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "options": dict(options),
        "param_names": list(arrays32),
        "param_sha256": digest(arrays32),
        "history": history or [],
        "train_state": train_state or {},
        "model_meta": dict(model_meta or {}),
    }
    try:
        text = json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"meta: the history, train state and model meta must be JSON-able ({e})"
        ) from None
    arrays: dict[str, Any] = {f"param/{k}": v for k, v in arrays32.items()}
    arrays["codes"] = codes
    arrays["meta"] = np.array(text)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Array]]:
    """The metadata (migrated to the current version) and the arrays (``param/<name>`` and
    ``codes``) of a model file.

    Raises FileNotFoundError for a missing file and ValueError, saying why, for a file of
    an unknown format version or a damaged, truncated or foreign one (parameters missing,
    of another dtype or shape, or not matching their digest); nothing is unpickled."""
    path = Path(path)
    meta, arrays = _read_npz(path)
    version = meta.get("format_version")
    if version == 1:
        meta = migrate_v1(meta)
    elif version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: model file format version {version!r}; this lenet_fast reads "
            f"versions 1 to {FORMAT_VERSION} (upgrade lenet_fast or re-save the "
            "model)"
        )
    opts = meta.get("options")
    if not isinstance(opts, dict):
        raise ValueError(f"{path}: damaged model file: no options")
    names = list(PARAM_SHAPES) + ([RBF_PARAM] if opts.get("rbf") == "trainable" else [])
    if meta.get("param_names") != names:
        raise ValueError(
            f"{path}: damaged model file: parameters {meta.get('param_names')}, expected {names}"
        )
    params: dict[str, Array] = {}
    for name in names:
        a = arrays.get(f"param/{name}")
        want = RBF_SHAPE if name == RBF_PARAM else PARAM_SHAPES[name]
        if a is None or a.dtype != np.float32 or a.shape != want:
            raise ValueError(
                f"{path}: damaged model file: parameter {name} is "
                f"{None if a is None else (a.dtype, a.shape)}, expected float32 "
                f"{want}"
            )
        params[name] = a
    if digest(params) != meta.get("param_sha256"):
        raise ValueError(
            f"{path}: damaged model file: the parameters do not match their "
            "recorded sha256 (the file was altered or corrupted)"
        )
    if "codes" not in arrays:
        raise ValueError(f"{path}: damaged model file: no RBF codes")
    return meta, arrays


def migrate_v1(meta: dict[str, Any]) -> dict[str, Any]:
    """Version 1 metadata as version 2 says it (see the module's docstring); a new dict."""
    meta = dict(meta)
    state = dict(meta.get("train_state") or {})
    config = dict(state.get("config") or {})
    mu = config.pop("mu", None)
    history = []
    for record in meta.get("history") or []:
        record = dict(record)
        if "eta" in record and "mu" not in record and isinstance(mu, (int, float)):
            record["mu"] = float(mu)
        history.append(record)
    optimizer = config.get("optimizer")
    if optimizer in _OWN_SETTINGS:
        keep = _SHARED_SETTINGS + _OWN_SETTINGS[optimizer]
        config = {k: v for k, v in config.items() if k in keep}
    if config:
        state["config"] = config
    meta.update(format_version=FORMAT_VERSION, history=history, train_state=state)
    return meta


def _read_npz(path: Path) -> tuple[dict[str, Any], dict[str, Array]]:
    """The metadata and arrays of a lenet_fast ``.npz``, or a ValueError that says why not."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    with open(path, "rb") as f:  # an unreadable path raises its own OSError here
        try:
            if f.read(4) != b"PK\x03\x04":
                raise ValueError("no zip signature: not an .npz file")
            f.seek(0)
            with np.load(f, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
        except MemoryError:
            raise
        except Exception as e:
            raise ValueError(
                f"{path}: not a readable lenet_fast model file "
                f"({type(e).__name__}: {e}); it may be truncated or corrupted"
            ) from None
    if "meta" not in arrays:
        raise ValueError(f"{path}: not a lenet_fast model file (no metadata)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: damaged model file: unreadable metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        what = meta.get("format") if isinstance(meta, dict) else meta
        raise ValueError(f"{path}: not a lenet_fast model file (format {what!r})")
    return meta, arrays

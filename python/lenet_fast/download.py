"""Fetching MNIST: the mirrors, the files' sizes and checksums, atomic downloads, and the
folder the data lives in.

* :func:`download_mnist` fetches the four ``.gz`` files from a list of mirrors, verifies
  their sha256 and writes each one atomically (never a half file under the final name).
* :func:`resolve_root` says where the data lives: the ``root`` argument, else the
  ``LENET_FAST_DATA`` environment variable, else a per-user cache folder.

Only the standard library is used.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from http.client import HTTPException
from pathlib import Path
from typing import IO, Union

from ._files import atomic_write

__all__ = ["DEFAULT_MIRRORS", "MNIST_FILES", "download_mnist", "resolve_root"]

PathLike = Union[str, "os.PathLike[str]"]

#: Base URLs tried in order by :func:`download_mnist` (``LENET_FAST_MNIST_MIRROR`` replaces
#: them with one base URL). Each must serve the four ``.gz`` files under their standard names.
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: The four MNIST files: stem -> (kind, count, gz bytes, gz sha256, raw bytes, raw sha256).
#: ``kind`` is "images" or "labels". Sizes and checksums are those of the original
#: distribution (see the project's ``data/mnist/SOURCE.md``).
MNIST_FILES = {
    "train-images-idx3-ubyte": (
        "images",
        60000,
        9912422,
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        47040016,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train-labels-idx1-ubyte": (
        "labels",
        60000,
        28881,
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        60008,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "t10k-images-idx3-ubyte": (
        "images",
        10000,
        1648877,
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        7840016,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "t10k-labels-idx1-ubyte": (
        "labels",
        10000,
        4542,
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        10008,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}

TIMEOUT = 60.0  # seconds, for each blocking network operation
_CHUNK = 1 << 16


def resolve_root(root: PathLike | None = None) -> Path:
    """The folder :func:`load_mnist` and :func:`download_mnist` use.

    In order: ``root`` if given; else ``$LENET_FAST_DATA`` if set and non-empty; else a
    per-user cache folder: ``%LOCALAPPDATA%\\lenet_fast\\mnist`` on Windows,
    ``$XDG_CACHE_HOME/lenet_fast/mnist`` (if that variable holds an absolute path) or
    ``~/.cache/lenet_fast/mnist`` elsewhere. ``~`` is expanded; a relative path is taken
    relative to the current directory. The folder need not exist.
    """
    if root is not None:
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(
                f"root: expected a path (str or os.PathLike), got {type(root).__name__}"
            )
        return Path(root).expanduser()
    env = os.environ.get("LENET_FAST_DATA", "")
    if env.strip():
        return Path(env).expanduser()
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        base = os.environ.get("LOCALAPPDATA", "")
        cache = Path(base) if base else Path.home() / "AppData" / "Local"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        cache = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return cache / "lenet_fast" / "mnist"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _mirror_list(mirrors: str | Iterable[str] | None) -> tuple[str, ...]:
    if mirrors is None:
        env = os.environ.get("LENET_FAST_MNIST_MIRROR", "").strip()
        mirrors = (env,) if env else DEFAULT_MIRRORS
    elif isinstance(mirrors, str):
        mirrors = (mirrors,)
    out = []
    for m in mirrors:
        if not isinstance(m, str) or not m.strip():
            raise TypeError(f"mirrors: expected base URLs (non-empty str), got {m!r}")
        m = m.strip()
        out.append(m if m.endswith("/") else m + "/")
    if not out:
        raise ValueError("mirrors: expected at least one base URL, got none")
    return tuple(out)


class _BadData(Exception):
    """A mirror answered, but with bytes that are not the expected file."""


def _fetch(url: str, dest_dir: Path, name: str, size: int, sha: str, timeout: float) -> None:
    """Download url to dest_dir/name atomically; raise _BadData or OSError-like errors."""

    def stream(f: IO[bytes]) -> None:
        h = hashlib.sha256()
        got = 0
        req = urllib.request.Request(url, headers={"User-Agent": "lenet_fast (urllib)"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) != size:
                raise _BadData(f"Content-Length {length}, expected {size} bytes")
            while True:
                block = resp.read(_CHUNK)
                if not block:
                    break
                got += len(block)
                if got > size:
                    raise _BadData(f"more than the expected {size} bytes")
                h.update(block)
                f.write(block)
        if got < size:
            # http.client ends a short body silently; treat it as a transfer failure.
            raise ConnectionError(f"transfer ended after {got} of {size} bytes")
        actual = h.hexdigest()
        if actual != sha:
            raise _BadData(f"sha256 mismatch: expected {sha}, got {actual}")

    atomic_write(dest_dir / name, stream)


def download_files(
    folder: Path, names: Sequence[str], mirrors: str | Iterable[str] | None, timeout: float
) -> None:
    """Fetch each of ``names`` (``.gz`` files of :data:`MNIST_FILES`) into ``folder`` that is
    not there with the right sha256 already, trying the mirrors in order."""
    urls = _mirror_list(mirrors)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        stem = name[: -len(".gz")]
        size, sha = MNIST_FILES[stem][2:4]
        final = folder / name
        if final.is_file() and final.stat().st_size == size and _sha256_file(final) == sha:
            continue
        failures = []
        bad_data = False
        for base in urls:
            url = base + name
            try:
                _fetch(url, folder, name, size, sha, timeout)
            except _BadData as e:
                bad_data = True
                failures.append(f"{url}: {e}")
            except urllib.error.HTTPError as e:
                e.close()
                failures.append(f"{url}: HTTP {e.code} {e.reason}")
            except (OSError, HTTPException, ValueError) as e:
                # URLError, timeouts, refused/reset connections, short bodies, bad URLs
                failures.append(f"{url}: {type(e).__name__}: {e}")
            else:
                break
        else:
            tried = "\n  ".join(failures)
            if bad_data:
                raise ValueError(
                    f"could not download {name} into {folder}: no mirror served the original "
                    f"file (expected {size} bytes, sha256 {sha}). Mirrors tried:\n  {tried}\n"
                    f"Try another mirror (mirrors=[...] or LENET_FAST_MNIST_MIRROR=<base URL>), "
                    f"or copy the original file there by hand."
                )
            raise OSError(
                f"could not download {name} into {folder}: every mirror failed. Mirrors "
                f"tried:\n  {tried}\nCheck the network, try another mirror (mirrors=[...] or "
                f"LENET_FAST_MNIST_MIRROR=<base URL>), or copy the file there by hand and "
                f"pass root= / set LENET_FAST_DATA."
            )


def download_mnist(
    root: PathLike | None = None,
    mirrors: str | Iterable[str] | None = None,
    *,
    timeout: float = TIMEOUT,
) -> Path:
    """Download the four MNIST ``.gz`` files into ``root`` and return the folder.

    ``root`` is resolved as in :func:`resolve_root` and created if needed. ``mirrors`` is
    a sequence of base URLs (or one URL), each serving the four files under their
    standard names; ``None`` means ``$LENET_FAST_MNIST_MIRROR`` if set, else
    :data:`DEFAULT_MIRRORS`. For each file the mirrors are tried in order until one
    serves bytes with the expected size and sha256. A file already present with the
    right sha256 is not downloaded again; one with a wrong sha256 is replaced.

    Each file is written atomically: streamed to a temporary ``.<name>.*.part`` file in
    the same folder, verified, fsynced, then renamed over the final name with
    ``os.replace``. On any failure the temporary file is removed, so a file under its
    final name is always complete and verified. ``timeout`` (seconds) bounds each
    blocking network operation.

    Raises
    ------
    ValueError
        No mirror served the original file and at least one served wrong bytes
        (checksum or size mismatch); the message names the file and every mirror tried.
    OSError
        Every mirror failed at the network level (unreachable, HTTP error, timeout,
        connection closed mid-transfer).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
    folder = resolve_root(root)
    download_files(folder, [stem + ".gz" for stem in MNIST_FILES], mirrors, float(timeout))
    return folder

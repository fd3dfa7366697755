"""``lenet-fast predict``: digit images from files to one result per file, streamed.

Files are read, decoded and normalised by a pool of threads (Pillow's decoders and
:func:`lenet_fast.image.normalize_digit` release the GIL), ``chunk`` files at a time, and
each chunk is classified in one batch while the next one is being read; at most two
chunks are in memory, so a folder of a million files takes no more memory than one of a
thousand.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, TextIO

import numpy as np

from .image import ImageError, NoInkError, iter_image_files, load_image, normalize_digit

if TYPE_CHECKING:  # the model is passed in: cli.py is what builds it
    from .model import LeNet5

COLUMNS = ("file", "digit", "probability", "margin", "rejected", "error")


def _read_one(path: Path, invert: bool | str) -> tuple[np.ndarray | None, str | None]:
    """The normalised digit of one file, or None and why not (no ink is not an error)."""
    try:
        return normalize_digit(load_image(path), invert=invert), None
    except NoInkError:
        return None, None
    except (ImageError, OSError, ValueError) as e:
        return None, str(e)


def _chunks(items: Iterable[Path], size: int) -> Iterator[list[Path]]:
    chunk: list[Path] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def classify_files(
    model: LeNet5,
    paths: Iterable[Path],
    *,
    invert: bool | str = "auto",
    reject: Any = "auto",
    chunk: int = 1024,
    workers: int | None = None,
) -> Iterator[dict[str, Any]]:
    """One result dict per file, in order, with the keys of :data:`COLUMNS`: ``digit`` is
    None when the file was rejected, blank (no ink; ``rejected`` True) or unreadable
    (``error`` says why)."""
    model.reject_rule(reject)  # a bad reject fails before any file is read
    workers = workers or min(8, os.cpu_count() or 1)
    Read = tuple[Optional[np.ndarray], Optional[str]]
    with ThreadPoolExecutor(workers) as pool:
        # the next chunk is submitted file by file (no task waits on another: no deadlock)
        # before the previous one is classified and written
        pending: list[Future[Read]] = []
        pending_paths: list[Path] = []
        for c in _chunks(paths, chunk):
            nxt = [pool.submit(_read_one, p, invert) for p in c]
            if pending:
                yield from _results(model, pending_paths, [f.result() for f in pending], reject)
            pending, pending_paths = nxt, c
        if pending:
            yield from _results(model, pending_paths, [f.result() for f in pending], reject)


def _results(
    model: LeNet5,
    paths: list[Path],
    read: list[tuple[np.ndarray | None, str | None]],
    reject: Any,
) -> Iterator[dict[str, Any]]:
    ok = [i for i, (d, _) in enumerate(read) if d is not None]
    got: dict[str, np.ndarray] = {}
    if ok:
        got = model.classify(np.stack([read[i][0] for i in ok]), reject=reject)  # type: ignore[misc]
    where = {i: k for k, i in enumerate(ok)}
    for i, (path, (_, error)) in enumerate(zip(paths, read)):
        if i in where:
            k = where[i]
            rejected = bool(got["rejected"][k])
            yield {
                "file": str(path),
                "digit": None if rejected else int(got["digit"][k]),
                "probability": float(got["probability"][k]),
                "margin": float(got["margin"][k]),
                "rejected": rejected,
                "error": None,
            }
        else:  # blank (no ink: rejected) or unreadable
            yield {
                "file": str(path),
                "digit": None,
                "probability": None if error else 0.0,
                "margin": None if error else 0.0,
                "rejected": error is None,
                "error": error,
            }


class Writer:
    """Streams results as a JSON array, CSV or a readable table."""

    def __init__(self, fmt: str, out: TextIO) -> None:
        self.fmt, self.out, self.n = fmt, out, 0
        self._csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None

    def start(self) -> None:
        if self._csv is not None:
            self._csv.writerow(COLUMNS)
        elif self.fmt == "json":
            self.out.write("[")
        else:
            self.out.write(f"{'digit':>5}  {'prob':>6}  {'margin':>8}  file\n")

    def row(self, r: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow(
                [
                    "" if r[k] is None else str(r[k]).lower() if isinstance(r[k], bool) else r[k]
                    for k in COLUMNS
                ]
            )
        elif self.fmt == "json":
            self.out.write(("," if self.n else "") + "\n" + json.dumps(r))
        else:
            if r["error"] is not None:
                self.out.write(f"{'-':>5}  {'':>6}  {'':>8}  {r['file']}: {r['error']}\n")
            else:
                digit = "rej" if r["rejected"] else str(r["digit"])
                self.out.write(
                    f"{digit:>5}  {r['probability']:6.4f}  {r['margin']:8.4f}  {r['file']}\n"
                )
        self.n += 1

    def end(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.n else "]\n")
        self.out.flush()


def progress_bar(stream: TextIO) -> Any:
    """A counter of files done on stderr, only on a terminal."""
    if not stream.isatty():
        return None

    def show(done: int, final: bool = False) -> None:
        stream.write(f"\r  {done:,} files" + ("\n" if final else ""))
        stream.flush()

    return show


def run(
    model: LeNet5,
    specs: list[str],
    *,
    invert: bool | str,
    reject: Any,
    fmt: str,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """The whole command: 0 when every file was read, 1 when some were not."""
    for spec in specs:  # a missing path or an empty folder is a usage error, before any output
        if next(iter_image_files([spec]), None) is None:
            raise ValueError(f"{spec}: a folder without image files (by their names' endings)")
    paths = iter_image_files(specs)
    writer = Writer(fmt, out)
    bar = progress_bar(err)
    failed = 0
    writer.start()
    for r in classify_files(model, paths, invert=invert, reject=reject):
        writer.row(r)
        failed += r["error"] is not None
        if bar is not None and writer.n % 1000 == 0:
            bar(writer.n)
    writer.end()
    if bar is not None and writer.n >= 1000:
        bar(writer.n, final=True)
    if failed:
        print(f"lenet-fast: {failed} of {writer.n} files could not be read", file=err)
    return 1 if failed else 0

#!/usr/bin/env python
"""Write the benchmark tables of the README and docs from the committed results.

Every generated table sits between two marker lines in README.md or docs/*.md::

    <!-- bench:NAME -->
    ...
    <!-- /bench:NAME -->

and NAME says which table of which result file goes there (``BLOCKS``): ``suite`` (the
suite's median images/s, bench/results/suite.json), ``suite-detail`` (every measurement of
the suite), ``kernels`` (bench/results/kernels.json), ``reproduce`` (the paper's error
rates, bench/results/reproduce.json). Each table ends with a line naming its source file,
CPU, threads, ISA, commit and date.

Usage::

    python bench/render_tables.py            # rewrite the blocks in place
    python bench/render_tables.py --check    # exit 1 if a block differs from its results

A block whose result file is missing is left as it is and makes the exit status 1 (with
``--check`` too). Exit status 2: a marker without its end, or an unknown NAME.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from harness.output import source_line
from harness.tables import BLOCKS

ROOT = Path(__file__).resolve().parents[1]
START = re.compile(r"^<!-- bench:([a-z0-9-]+) -->$")


class MarkerError(Exception):
    """A marker block that cannot be rendered (no end marker, unknown name)."""


def documents(root: Path) -> list[Path]:
    """README.md and docs/*.md under ``root``, those that exist."""
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]


def render_block(name: str, results: Path, root: Path) -> list[str]:
    """The lines of block ``name``: its table and the source line. FileNotFoundError if the
    result file is missing."""
    if name not in BLOCKS:
        raise MarkerError(f"unknown block {name!r} (known: {', '.join(BLOCKS)})")
    file, table = BLOCKS[name]
    path = results / file
    res: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    try:
        shown = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        shown = path.as_posix()
    return [*table(res), "", source_line(shown, res["facts"])]


def render_text(
    text: str, results: Path, root: Path, where: str = ""
) -> tuple[str, list[str], list[str]]:
    """``text`` with every block rewritten, the names of the blocks that changed, and those
    whose result file is missing (left as they are)."""
    lines = text.split("\n")
    out: list[str] = []
    changed: list[str] = []
    missing: list[str] = []
    i = 0
    while i < len(lines):
        m = START.match(lines[i].strip())
        out.append(lines[i])
        i += 1
        if not m:
            continue
        name = m.group(1)
        end = f"<!-- /bench:{name} -->"
        try:
            j = next(k for k in range(i, len(lines)) if lines[k].strip() == end)
        except StopIteration:
            raise MarkerError(f"{where}: block {name!r} has no {end} line") from None
        try:
            new = render_block(name, results, root)
        except FileNotFoundError:
            missing.append(name)
            new = lines[i:j]
        if lines[i:j] != new:
            changed.append(name)
        out += new
        i = j
    return "\n".join(out), changed, missing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if a block is stale or its results missing",
    )
    p.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    p.add_argument(
        "--results", type=Path, default=None, help="the result files (default ROOT/bench/results)"
    )
    args = p.parse_args(argv)
    results = args.results or args.root / "bench" / "results"
    failed = 0
    for doc in documents(args.root):
        where = doc.relative_to(args.root).as_posix()
        text = doc.read_text(encoding="utf-8")
        try:
            new, changed, missing = render_text(text, results, args.root, where)
        except MarkerError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for name in missing:
            print(
                f"error: {where}: block {name!r} needs {results / BLOCKS[name][0]}, "
                "which is missing",
                file=sys.stderr,
            )
        failed += len(missing)
        for name in changed:
            if args.check:
                print(
                    f"{where}: block {name!r} differs from what {BLOCKS[name][0]} renders; "
                    "run python bench/render_tables.py",
                    file=sys.stderr,
                )
            else:
                print(f"{where}: block {name!r} rewritten")
        if changed and not args.check:
            doc.write_text(new, encoding="utf-8")
        failed += len(changed) if args.check else 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

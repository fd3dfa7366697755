"""Writing results: the JSON files under bench/results/ and the markdown of the reports."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"
#: Bumped when a result file's layout changes in a way render_tables.py must know about.
SCHEMA = 1


def default_json(name: str) -> str:
    """bench/results/NAME.json, the default ``--json`` of a script."""
    return str(RESULTS / f"{name}.json")


def write_json(path: str | os.PathLike[str], result: dict[str, Any]) -> Path:
    """Write ``result`` as indented JSON (its folder created), atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p


def rate(v: float | None) -> str:
    """A rate for a table: thousands separators from 100 on, 3 significant digits below."""
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def ms(s: float) -> str:
    v = s * 1e3
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def us(s: float) -> str:
    v = s * 1e6
    if v >= 1000:
        return f"{v:,.0f}"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def md_table(head: Sequence[str], align: str, rows: Sequence[Sequence[str]]) -> list[str]:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r``."""
    rule = "|" + "".join("---|" if a == "l" else "---:|" for a in align)
    out = ["| " + " | ".join(head) + " |", rule]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def threads_text(threads: Any) -> str:
    if isinstance(threads, list):
        lo, hi = min(threads), max(threads)
        return f"{lo}-{hi}" if lo != hi else str(lo)
    return "?" if threads is None else str(threads)


def cpu_text(facts: dict[str, Any]) -> str:
    """The CPU as the tables quote it: its name, and its family, model and core when known."""
    m = facts.get("cpu_model") or {}
    if "family" not in m:
        return str(facts.get("cpu"))
    core = f", {m['core']}" if m.get("core") else ""
    return f"{facts.get('cpu')} (family {m['family']} model {m['model']}{core})"


def source_line(source: str, facts: dict[str, Any]) -> str:
    """The line under a generated table: its file, CPU, threads, ISA, commit and date."""
    commit = facts.get("git_commit", "unknown") + (
        " (modified)" if facts.get("git_tree_modified") else ""
    )
    isa = ", ".join(facts.get("isas_benchmarked") or [str(facts.get("isa"))])
    return (
        f"*Source: `{source}`; {cpu_text(facts)}, {threads_text(facts.get('threads'))} "
        f"thread(s), ISA {isa}, commit {commit}, {str(facts.get('date'))[:10]}.*"
    )

"""The worker-process protocol: the suite runs each implementation in a child process of its
own (the same script with ``--worker KEY --worker-out PART.json``), so no other library's
thread pool exists while one is timed. A part is what one process contributes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .impls import LABELS
from .threads import os_threads, thread_env

PEER_MODULES = ("torch", "onnxruntime")


def new_part() -> dict[str, Any]:
    """What one process contributes (JSON-ready). ``fatal``: why the run stops with exit
    status 1, nothing reported (lenet_fast or the reference disagreed with the float64
    reference, or its process failed); ``crashed``: why a worker process gave no results."""
    return {
        "validation": [],
        "rows": [],
        "status": {},
        "notes": [],
        "impls": {},
        "fatal": None,
        "crashed": None,
        "process": None,
    }


def worker_command(script: str, argv: list[str], key: str, out: Path) -> list[str]:
    """``script`` with this run's arguments, measuring only ``key``, writing its part to
    ``out``. The child inherits this process's environment and working directory."""
    return [sys.executable, script, *argv, "--worker", key, "--worker-out", str(out)]


def process_facts(isa: str) -> dict[str, Any]:
    """What a worker records about itself: pid, thread environment, ISA, the peer libraries
    it had loaded and its OS threads at the end."""
    return {
        "pid": os.getpid(),
        "thread_environment": thread_env(),
        "isa": isa,
        "peer_libraries_loaded": [m for m in PEER_MODULES if m in sys.modules],
        "os_threads_at_end": os_threads(),
    }


def write_part(path: str | Path, part: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(part, default=str) + "\n", encoding="utf-8")


def run_worker_process(cmd: list[str], key: str, out: Path) -> dict[str, Any]:
    """Run one worker to its end and return its part. A worker that exits nonzero, dies of a
    signal or writes no results gives a part with status "failed" and ``crashed`` = why
    (with the last line of its stderr). Its output goes to our stderr: stdout is the report's."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", check=False
    )
    sys.stderr.write(proc.stdout + proc.stderr)
    sys.stderr.flush()
    ran = {"exit_status": proc.returncode, "run_time_s": round(time.perf_counter() - t0, 3)}
    if proc.returncode == 0:
        try:
            part: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
            part["process"] = {**(part.get("process") or {}), **ran}
            return part
        except (OSError, ValueError) as e:
            why = f"its process exited without results ({type(e).__name__})"
    elif proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        why = f"its process was killed by {name}"
    else:
        why = f"its process exited with status {proc.returncode}"
    last = [s.strip() for s in proc.stderr.splitlines() if s.strip()]
    if last:
        why += f": {last[-1][:300]}"
    part = new_part()
    part["status"][key] = "failed"
    part["notes"].append(f"{LABELS[key]}: failed: {why}; not timed")
    part["crashed"] = why
    part["process"] = ran
    return part


def merge_parts(parts: list[dict[str, Any]], facts: dict[str, Any]) -> dict[str, Any]:
    """The parts as one result, with the ratios lenet_fast / peer, and a note if a worker saw
    another thread environment or ISA than this process."""
    rows = {(r["impl"], r["case"]): r for p in parts for r in p["rows"]}
    for (_, ck), r in rows.items():
        base = rows.get(("lenet_fast", ck), {}).get("images_per_s")
        r["ratio"] = base / r["images_per_s"] if base and r.get("images_per_s") else None
    res: dict[str, Any] = {
        "validation": [v for p in parts for v in p["validation"]],
        "rows": rows,
        "status": {k: v for p in parts for k, v in p["status"].items()},
        "notes": [n for p in parts for n in p["notes"]],
        "impls": {k: v for p in parts for k, v in p["impls"].items()},
        "processes": {k: p["process"] for p in parts for k in p["status"] if p["process"]},
    }
    for key, proc in res["processes"].items():
        env = proc.get("thread_environment")
        if env is not None and env != facts["thread_environment"]:
            res["notes"].append(
                f"{LABELS[key]}'s process saw the thread environment {env}, "
                f"not {facts['thread_environment']}"
            )
        if proc.get("isa") not in (None, facts["isa"]):
            res["notes"].append(f"{LABELS[key]}'s process ran lenet_fast on ISA {proc['isa']}")
    return res

"""The worker-process protocol: the suite runs each implementation in a child process of its
own (the same script with ``--worker KEY``), so that no other library's thread pool exists
in the process being timed, and keeps every child alive until the rounds
(:mod:`harness.rounds`) are over.

The protocol is JSON lines, over the child's stdin and its original stdout (the child points
its file descriptor 1 at stderr at once, so whatever a library prints goes there and cannot
garble a message):

- child -> parent, after validating: ``{"ready": PART}``, what the process contributes
  (:func:`new_part`, with ``plan``: the cases each implementation will be timed in);
- parent -> child ``{"op": "warm", "case": C}``; child -> parent ``{"warm": null | WHY}``;
- ``{"op": "time", "case": C, "seconds": S}`` -> ``{"time": {"s_per_call", "calls",
  "images"} | WHY}``: one round of back-to-back calls for >= S seconds;
- ``{"op": "quit"}`` -> ``{"bye": PROCESS_FACTS}``, and the child exits 0.

A child that ends before it answers (an exit status, a signal, or exit 0 without a message)
is a :class:`harness.rounds.PlayerDied`, with the reason and the last line of its stderr.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any, Callable

from .impls import LABELS
from .rounds import PlayerDied
from .threads import os_threads, thread_env

PEER_MODULES = ("torch", "onnxruntime", "ai_edge_litert", "openvino")


def new_part() -> dict[str, Any]:
    """What one process contributes (JSON-ready). ``fatal``: why the run stops with exit
    status 1, nothing reported (lenet_fast or the reference disagreed with the float64
    reference, or its process failed); ``crashed``: why a worker process gave no results;
    ``plan``: implementation -> the cases it will be timed in."""
    return {
        "validation": [],
        "rows": [],
        "status": {},
        "notes": [],
        "impls": {},
        "plan": {},
        "fatal": None,
        "crashed": None,
        "process": None,
    }


def worker_command(script: str, argv: list[str], key: str) -> list[str]:
    """``script`` with this run's arguments, serving only ``key``. The child inherits this
    process's environment and working directory."""
    return [sys.executable, script, *argv, "--worker", key]


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


# ---- the child's side


def protocol_channel() -> IO[str]:
    """The child's line to the parent: its original stdout, line-buffered. From here on
    file descriptor 1 (and so ``print`` and any library's output) goes to stderr."""
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(fd, "w", encoding="utf-8", buffering=1)


def send(out: IO[str], msg: dict[str, Any]) -> None:
    out.write(json.dumps(msg, default=str) + "\n")
    out.flush()


def serve(
    out: IO[str],
    inp: IO[str],
    part: dict[str, Any],
    warm: Callable[[str], str | None],
    time_round: Callable[[str, float], dict[str, Any] | str],
    bye: Callable[[], dict[str, Any]],
) -> None:
    """Send ``part``, then answer the parent's requests until it says quit (or its end of
    the pipe closes). A lenet_fast or reference disagreement ends the process after the
    part: nothing is timed then."""
    send(out, {"ready": part})
    if part["fatal"]:
        return
    for line in inp:
        msg = json.loads(line)
        if msg["op"] == "warm":
            send(out, {"warm": warm(msg["case"])})
        elif msg["op"] == "time":
            send(out, {"time": time_round(msg["case"], float(msg["seconds"]))})
        elif msg["op"] == "quit":
            send(out, {"bye": bye()})
            return
        else:
            raise ValueError(f"unknown request {msg!r}")


# ---- the parent's side


class WorkerProcess:
    """One implementation's child process, a player of the rounds: ``ready()`` waits for
    its part, ``warm`` and ``time`` ask it (raising :class:`PlayerDied` if it is gone),
    ``close()`` tells it to quit and returns its process facts. Its stderr is copied to
    ours as it comes: our stdout is the report's."""

    def __init__(self, cmd: list[str], key: str) -> None:
        self.key = key
        self.t0 = time.perf_counter()
        self.gone: str | None = None
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self.echo = threading.Thread(target=self._echo, daemon=True)
        self.echo.start()

    def _echo(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.tail.append(line)
            sys.stderr.write(line)
            sys.stderr.flush()

    def ran(self) -> dict[str, Any]:
        return {
            "exit_status": self.proc.returncode,
            "run_time_s": round(time.perf_counter() - self.t0, 3),
        }

    def _ended(self, odd: str | None = None) -> str:
        """Why the process gave no answer (it is reaped first), with its last stderr line."""
        if self.gone is not None:
            return self.gone
        if odd is not None:
            self.proc.kill()
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.echo.join(timeout=10)
        if odd is not None:
            why = odd
        elif code == 0:
            why = "its process exited without results"
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            why = f"its process was killed by {name}"
        else:
            why = f"its process exited with status {code}"
        last = [s.strip() for s in self.tail if s.strip()]
        if last and odd is None:
            why += f": {last[-1][:300]}"
        self.gone = why
        return why

    def _receive(self, what: str) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise PlayerDied(self._ended())
        try:
            return json.loads(line)[what]
        except (ValueError, KeyError, TypeError):
            raise PlayerDied(
                self._ended(f"its process answered {line.strip()[:120]!r}, not a {what!r} message")
            ) from None

    def _ask(self, msg: dict[str, Any], what: str) -> Any:
        if self.gone is not None:
            raise PlayerDied(self.gone)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise PlayerDied(self._ended()) from None
        return self._receive(what)

    def ready(self) -> dict[str, Any]:
        """The child's part; if it ended first, a part with status "failed" and ``crashed``
        = why."""
        try:
            part: dict[str, Any] = self._receive("ready")
        except PlayerDied as e:
            return failed_part(self.key, str(e), self.close())
        if part["fatal"]:
            self.close()
        return part

    def warm(self, case: str) -> str | None:
        why: str | None = self._ask({"op": "warm", "case": case}, "warm")
        return why

    def time(self, case: str, seconds: float) -> dict[str, Any] | str:
        got: dict[str, Any] | str = self._ask(
            {"op": "time", "case": case, "seconds": seconds}, "time"
        )
        return got

    def close(self) -> dict[str, Any]:
        """Ask the child to quit; its process facts with its exit status and run time (only
        those two if it is gone)."""
        facts: dict[str, Any] = {}
        if self.gone is None and self.proc.poll() is None:
            try:
                facts = self._ask({"op": "quit"}, "bye")
            except PlayerDied:
                pass
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.echo.join(timeout=10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return {**facts, **self.ran()}


def failed_part(key: str, why: str, ran: dict[str, Any]) -> dict[str, Any]:
    """The part of a worker that gave none: status "failed", why in the notes."""
    part = new_part()
    part["status"][key] = "failed"
    part["notes"].append(f"{LABELS[key]}: failed: {why}; not timed")
    part["crashed"] = why
    part["process"] = ran
    return part


def merge_parts(parts: list[dict[str, Any]], facts: dict[str, Any]) -> dict[str, Any]:
    """The parts as one result (the rows of the cases not timed among them), with a note if
    a worker saw another thread environment or ISA than this process."""
    res: dict[str, Any] = {
        "validation": [v for p in parts for v in p["validation"]],
        "rows": {(r["impl"], r["case"]): r for p in parts for r in p["rows"]},
        "status": {k: v for p in parts for k, v in p["status"].items()},
        "notes": [n for p in parts for n in p["notes"]],
        "impls": {k: v for p in parts for k, v in p["impls"].items()},
        "plan": {k: v for p in parts for k, v in p.get("plan", {}).items()},
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

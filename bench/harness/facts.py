"""The facts a measurement is quoted with: CPU, ISA, threads, versions, commit, date."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .output import cpu_text
from .threads import thread_env

REPO = Path(__file__).resolve().parents[2]
PEER_PACKAGES = ("torch", "onnxruntime", "onnx", "ai-edge-litert", "openvino")


def git(*cmd: str) -> str | None:
    """The output of ``git CMD`` in this repository, or None without git or a repository."""
    try:
        out = subprocess.run(
            ["git", *cmd], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def load_average() -> float | None:
    """The 1-minute load average, or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def cpu_flags() -> str:
    """The SIMD flags that matter here (avx2, fma, avx512f) among /proc/cpuinfo's."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return " ".join(x for x in ("avx2", "fma", "avx512f") if x in have)
    except OSError:
        pass
    return ""


def cpu_model() -> dict[str, Any]:
    """The CPU's vendor, family and model numbers from /proc/cpuinfo, and for AMD's Zen
    families the core generation (model names like "AMD EPYC" do not say it, and Zen 1
    runs 256-bit AVX2 at half the rate of Zen 2 to 4); {} where /proc/cpuinfo is missing."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    first: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        first[key.strip()] = value.strip()
    try:
        family, model = int(first["cpu family"]), int(first["model"])
    except (KeyError, ValueError):
        return {}
    out: dict[str, Any] = {"vendor": first.get("vendor_id"), "family": family, "model": model}
    if first.get("vendor_id") == "AuthenticAMD":
        if family == 23:
            out["core"] = "Zen 1" if model < 0x30 else "Zen 2"
        elif family == 25:
            out["core"] = "Zen 4" if (0x10 <= model < 0x20 or 0x60 <= model < 0x80) else "Zen 3"
        elif family == 26:
            out["core"] = "Zen 5"
    return out


def machine_facts(threads: int | list[int] | None = None) -> dict[str, Any]:
    """Everything a result is quoted with. ``threads``: the thread count(s) measured."""
    import numpy as np

    import lenet_fast

    info = lenet_fast.info()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": info["cpu"],  # lenet_fast.info() reads the model name from /proc/cpuinfo
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "machine": info.get("machine") or platform.machine(),
        "cores": os.cpu_count(),
        "isa": info.get("isa"),
        "available_isas": info.get("available_isas"),
        "threads": threads,
        "openmp": info.get("openmp"),
        "compiler": info.get("compiler"),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "lenet_fast": info.get("version"),
            **{p: _version(p) for p in PEER_PACKAGES},
        },
        "git_commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "git_tree_modified": bool(dirty) if dirty is not None else None,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_1min_at_start": load_average(),
        "thread_environment": thread_env(),
        "lenet_fast_info": info,
    }


def header_lines(facts: dict[str, Any]) -> list[str]:
    """The markdown lines that say where and with what a run was measured."""
    v = facts["versions"]
    modified = " (working tree modified)" if facts["git_tree_modified"] else ""
    commit = facts["git_commit"] + modified
    return [
        f"- CPU: {cpu_text(facts)} ({facts['machine']}, {facts['cores']} logical cores; "
        f"{facts['cpu_flags'] or 'no AVX2'})",
        f"- lenet_fast {v['lenet_fast']}, ISA {facts['isa']} (available: "
        f"{', '.join(facts['available_isas'])}), {facts['compiler']}, OpenMP {facts['openmp']}; "
        f"git commit {commit}",
        f"- Python {v['python']}, numpy {v['numpy']}"
        + "".join(f", {p} {v[p]}" for p in PEER_PACKAGES if v.get(p)),
        f"- date: {facts['date']}",
    ]

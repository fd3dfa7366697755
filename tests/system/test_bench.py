"""bench/bench_suite.py: each implementation validated and timed in a child process of its
own, with this process's environment and arguments; the same results as --in-process; a
peer's process that dies is reported, lenet_fast's stops the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SUITE = BENCH / "bench_suite.py"
sys.path.insert(0, str(BENCH))
import bench_suite  # noqa: E402
from harness import worker  # noqa: E402

# small and quick, but every kind of check: inference at 1 and 2 threads, training at batch 1
ARGS = ["--quick", "--repeats", "1", "--cases", "infer:2:1,infer:4:2,train:1:1"]


def run_suite(tmp_path: Path, *extra: str, **env: str) -> tuple[dict, str]:
    out = tmp_path / f"suite{len(list(tmp_path.iterdir()))}.json"
    proc = subprocess.run(
        [sys.executable, str(SUITE), *ARGS, *extra, "--json", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text(encoding="utf-8")), proc.stdout


@pytest.mark.slow
def test_each_implementation_in_its_own_process(tmp_path):
    peers = ["--peers", "lenet_fast,reference"]
    own, report = run_suite(tmp_path, *peers, OMP_WAIT_POLICY="passive")
    one, _ = run_suite(tmp_path, *peers, "--in-process")

    assert own["settings"]["process_mode"] == "each implementation timed in its own process"
    assert "each implementation timed in its own process" in report
    assert "## Median images/s" in report
    assert one["settings"]["process_mode"].endswith("(--in-process)")
    pids = set()
    for key in ("lenet_fast", "reference"):
        proc = own["peers"][key]["process"]
        assert proc["exit_status"] == 0
        assert proc["thread_environment"]["OMP_WAIT_POLICY"] == "passive"
        assert proc["thread_environment"] == own["facts"]["thread_environment"]
        assert proc["isa"] == own["facts"]["isa"]
        assert proc["peer_libraries_loaded"] == []
        pids.add(proc["pid"])
        assert one["peers"][key]["process"] is None
    assert len(pids) == 2 and os.getpid() not in pids

    # the same checks and the same measurements, whichever way they ran
    def checks(r: dict) -> list:
        return [(v["impl"], v["case"], v["kind"]) for v in r["validation"]]

    def timed(r: dict) -> list:
        return [(x["impl"], x["case"], x["images_per_s"] > 0) for x in r["results"]]

    assert checks(own) == checks(one) and len(checks(own)) >= 8
    assert timed(own) == timed(one) and len(timed(own)) == 6
    for r in own["results"]:
        assert r["runs"] == 1
        assert r["ratio"] == 1.0 if r["impl"] == "lenet_fast" else r["ratio"] > 0


@pytest.mark.parametrize(
    "code, why",
    [
        (
            (
                "import sys; print('noise', file=sys.stderr); "
                "print('RuntimeError: boom', file=sys.stderr); sys.exit(3)"
            ),
            "its process exited with status 3: RuntimeError: boom",
        ),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "killed by SIGKILL"),
        ("pass", "exited without results"),
    ],
)
def test_a_dead_worker_is_a_failed_peer(tmp_path, capsys, code, why):
    part = worker.run_worker_process([sys.executable, "-c", code], "torch", tmp_path / "part.json")
    assert part["status"] == {"torch": "failed"}
    assert why in part["crashed"] and part["fatal"] is None
    assert part["notes"] == [f"PyTorch eager: failed: {part['crashed']}; not timed"]
    assert part["rows"] == [] and part["validation"] == []


@pytest.mark.slow
def test_a_dead_peer_is_reported_a_dead_lenet_fast_stops_the_run(monkeypatch, capsys):
    real = bench_suite.run_worker_process
    started = []

    def fake(dead: str):
        def run(cmd: list[str], key: str, out: Path) -> dict:
            started.append(key)
            if key == dead:
                return real([sys.executable, "-c", "raise SystemExit(5)"], key, out)
            return real(cmd, key, out)

        return run

    args = ["--quick", "--repeats", "1", "--cases", "infer:2:1"]
    monkeypatch.setattr(bench_suite, "run_worker_process", fake("torch"))
    assert bench_suite.main([*args, "--peers", "lenet_fast,torch"]) == 0
    report = capsys.readouterr().out
    assert started == ["lenet_fast", "torch"]
    assert "| PyTorch eager | failed |" in report and "| lenet_fast | " in report
    assert "PyTorch eager: failed: its process exited with status 5; not timed" in report

    started.clear()
    monkeypatch.setattr(bench_suite, "run_worker_process", fake("lenet_fast"))
    assert bench_suite.main([*args, "--peers", "lenet_fast,reference"]) == 1
    out, err = capsys.readouterr()
    assert started == ["lenet_fast"] and out == ""
    assert "lenet_fast's process failed, nothing is reported" in err


def test_a_wrong_output_fails_validation_and_a_right_one_passes():
    import numpy as np

    from harness.validation import ValidationError, check_forward, check_gradients

    want = np.linspace(-2.0, 3.0, 20).reshape(2, 10)
    assert check_forward("ok", want.astype(np.float32), want) < 1.0
    bad = want.astype(np.float32)
    bad[1, 3] += 1e-3  # 1e-4 * max(1, 3) = 3e-4 allowed
    with pytest.raises(ValidationError, match=r"bad: disagrees .* at \(1, 3\)"):
        check_forward("bad", bad, want)
    g = {"c1.w": np.ones((2, 2))}
    with pytest.raises(ValidationError, match="the gradient of c1.w"):
        check_gradients("g", {"c1.w": g["c1.w"] * (1 + 1e-3)}, g)


def test_alternating_timing_runs_each_callable_once_per_round():
    from harness.timing import measure_alternating

    order: list[str] = []
    out = measure_alternating(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 3, 0.0, 0.0
    )
    assert [out[k]["runs"] for k in "ab"] == [3, 3]
    timed = order[-6:]  # after the warm-up calls, one run of each per round
    assert timed == ["a", "b"] * 3 and out["a"]["calls_per_run"] == 1


def test_the_implementations_have_lenet_fasts_parameter_names():
    from harness.impls import KEYS, get
    from lenet_fast.layout import MACS_PER_IMAGE, PARAM_SHAPES

    assert list(PARAM_SHAPES)[:2] == ["c1.w", "c1.b"] and len(PARAM_SHAPES) == 12
    assert MACS_PER_IMAGE == {"infer": 328_096, "train": 865_848}
    assert KEYS[0] == "lenet_fast"
    for key in KEYS:
        assert get(key).key == key


def test_bench_image_validates_then_times(tmp_path):
    """bench/bench_image.py --quick: validated against the reference, digits/s per size and
    thread count in its JSON."""
    out = tmp_path / "image.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_image.py"),
            "--quick",
            "--sizes",
            "28,64",
            "--threads",
            "1",
            "--repeats",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text(encoding="utf-8"))
    assert [v["side"] for v in r["validation"]] == [28, 64]
    assert all(v["identical_bytes"] for v in r["validation"])
    assert [(x["side"], x["threads"]) for x in r["results"]] == [(28, 1), (64, 1)]
    assert all(x["digits_per_s"] > 0 for x in r["results"])
    assert "digits/s" in proc.stdout

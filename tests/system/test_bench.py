"""bench/bench_suite.py: each implementation validated in a child process of its own, with
this process's environment and arguments, the processes kept alive and timed in rounds that
alternate between them; the same results as --in-process; the per-round ratios and the
fastest peer as the samples give them; LiteRT, ONNX Runtime (and OpenVINO where installed)
validated; a peer's process that dies is reported, lenet_fast's stops the run."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SUITE = BENCH / "bench_suite.py"
sys.path.insert(0, str(BENCH))
import bench_suite  # noqa: E402
from harness import rounds, worker  # noqa: E402

# small and quick, but every kind of check: inference at 1 and 2 threads, training at batch 1
ARGS = ["--quick", "--rounds", "2", "--cases", "infer:2:1,infer:4:2,train:1:1"]


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

    mode = "each implementation timed in its own process, all kept alive for the rounds"
    assert own["settings"]["process_mode"] == mode
    assert mode in report
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
    for r in own["results"] + one["results"]:
        assert r["runs"] == 2 and r["round_numbers"] == [1, 2]
        assert r["ratio"] == 1.0 if r["impl"] == "lenet_fast" else r["ratio"] > 0


def have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# OpenVINO is in the bench extra, not the test extra: where it is installed, it runs too
QUICK_PEERS = ["lenet_fast", "reference", "onnxruntime", "litert"] + (
    ["openvino"] if have("openvino") else []
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str]:
    """One quick suite in rounds: the inference peers and the reference, 3 rounds."""
    tmp = tmp_path_factory.mktemp("quick")
    out = tmp / "suite.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SUITE),
            "--quick",
            "--rounds",
            "3",
            "--cases",
            "infer:2:1,infer:4:2",
            "--peers",
            ",".join(QUICK_PEERS),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text(encoding="utf-8")), proc.stdout


@pytest.mark.slow
def test_the_quick_run_alternates_in_rounds(quick_run):
    r, report = quick_run
    s = r["settings"]
    assert (s["rounds"], s["round_s"], s["reference_rounds"]) == (3, 0.02, 2)
    timed = [x for x in r["results"] if x.get("images_per_s")]
    assert {x["impl"] for x in timed} == set(QUICK_PEERS)
    for x in timed:
        want = [1, 2] if x["impl"] == "reference" else [1, 2, 3]
        assert x["round_numbers"] == want, x["impl"]
        assert len(x["samples_s"]) == len(x["calls_per_round"]) == x["runs"] == len(want)
        assert x["images_per_s"] == pytest.approx(x["images_per_call"] / x["median_s"])
    # in each case, every implementation's round r starts after everyone's round r - 1
    # (the cases alternate within a round: infer:2:1, then infer:4:2)
    starts = sorted(
        (t, n, c, x["impl"])
        for x in timed
        for c in [x["case"]]
        for t, n in zip(x["round_started_s"], x["round_numbers"])
    )
    assert [(n, c) for _, n, c, _ in starts] == sorted(
        [(n, c) for _, n, c, _ in starts], key=lambda nc: (nc[0], s["cases"].index(nc[1]))
    )
    # the first implementation of a round changes from round to round
    firsts = [next(k for _, m, c, k in starts if (m, c) == (n, "infer:2:1")) for n in (1, 2, 3)]
    assert len(set(firsts)) == 3, firsts
    # separate processes, each with its own library only
    procs = {k: r["peers"][k]["process"] for k in QUICK_PEERS}
    assert len({p["pid"] for p in procs.values()}) == len(QUICK_PEERS)
    assert os.getpid() not in {p["pid"] for p in procs.values()}
    assert all(p["exit_status"] == 0 for p in procs.values())
    assert procs["lenet_fast"]["peer_libraries_loaded"] == []
    # (ONNX Runtime's process imports torch too where torch exports its graph)
    assert set(procs["onnxruntime"]["peer_libraries_loaded"]) - {"torch"} == {"onnxruntime"}
    assert procs["litert"]["peer_libraries_loaded"] == ["ai_edge_litert"]
    assert "then 3 rounds: in each, for each case" in report


@pytest.mark.slow
def test_the_per_round_ratios_are_those_of_the_samples(quick_run):
    r, _ = quick_run
    rows = {(x["impl"], x["case"]): x for x in r["results"] if x.get("images_per_s")}
    for case in r["settings"]["cases"]:
        base = rows[("lenet_fast", case)]
        mine = {
            n: base["images_per_call"] / t for n, t in zip(base["round_numbers"], base["samples_s"])
        }
        best = {}
        for (key, c), x in rows.items():
            if c != case:
                continue
            ips = {n: x["images_per_call"] / t for n, t in zip(x["round_numbers"], x["samples_s"])}
            ratios = [mine[n] / ips[n] for n in x["round_numbers"]]
            assert x["ratio_rounds"] == pytest.approx(ratios)
            assert x["ratio_per_round_median"] == pytest.approx(statistics.median(ratios))
            if key in ("onnxruntime", "litert", "openvino"):
                for n, v in ips.items():
                    best[n] = max(best.get(n, 0.0), v)
        versus = r["versus_fastest_peer"][case]
        want = [mine[n] / best[n] for n in sorted(best)]
        assert versus["ratio_rounds"] == pytest.approx(want)
        assert versus["ratio_per_round_median"] == pytest.approx(statistics.median(want))
        assert versus["fastest_peer"] in ("onnxruntime", "litert", "openvino")
    # the measured peak is what the % of FMA peak divides by
    peak = r["settings"]["fma_peak"]
    assert peak["how"].startswith("measured") and len(peak["tries_gmacs"]) == 3
    assert r["settings"]["peak_gmacs_per_core"] == statistics.median(peak["tries_gmacs"])
    x = rows[("lenet_fast", "infer:4:2")]
    assert x["peak_fraction"] == pytest.approx(
        x["images_per_s"] * 328_096 / (peak["gmacs_per_core"] * 1e9 * 2)
    )


@pytest.mark.slow
@pytest.mark.parametrize("key", ["onnxruntime", "litert"])
def test_litert_and_onnx_runtime_validate_in_the_quick_suite(quick_run, key):
    r, report = quick_run
    checks = [v for v in r["validation"] if v["impl"] == key]
    assert [(v["case"], v["kind"]) for v in checks] == [
        ("infer:2:1", "output"),
        ("infer:4:2", "output"),
    ]
    assert all(v["worst_err_over_tol"] < 1 for v in checks)
    assert not r["peers"][key]["status"].startswith("failed")
    assert all(x.get("images_per_s") for x in r["results"] if x["impl"] == key)
    if key == "litert":
        assert "XNNPACK" in r["peers"][key]["note"]
        assert "| LiteRT (XNNPACK) | " in report


@pytest.mark.slow
@pytest.mark.skipif(
    not have("openvino"),
    reason="openvino is not installed: it is in the bench extra, not the test extra "
    '(pip install ".[bench]")',
)
def test_openvino_validates_in_the_quick_suite(quick_run):
    r, _ = quick_run
    checks = [v for v in r["validation"] if v["impl"] == "openvino"]
    assert len(checks) == 2 and all(v["worst_err_over_tol"] < 1 for v in checks)
    assert "INFERENCE_PRECISION_HINT f32" in r["peers"]["openvino"]["note"]
    assert set(r["peers"]["openvino"]["process"]["peer_libraries_loaded"]) - {"torch"} == {
        "openvino"
    }
    assert all(x.get("images_per_s") for x in r["results"] if x["impl"] == "openvino")


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
def test_a_dead_worker_is_a_failed_peer(capsys, code, why):
    part = worker.WorkerProcess([sys.executable, "-c", code], "torch").ready()
    assert part["status"] == {"torch": "failed"}
    assert why in part["crashed"] and part["fatal"] is None
    assert part["notes"] == [f"PyTorch eager: failed: {part['crashed']}; not timed"]
    assert part["rows"] == [] and part["validation"] == []
    assert part["process"]["exit_status"] != 0 or "without results" in why


# A worker that follows the protocol for its first round of each case, then dies.
DIES_IN_ROUND_2 = """
import json, sys
part = {"validation": [], "rows": [], "status": {"torch": "2"}, "notes": [], "impls": {},
        "plan": {"torch": ["infer:2:1", "infer:4:1"]}, "fatal": None, "crashed": None,
        "process": None}
print(json.dumps({"ready": part}), flush=True)
timed = 0
for line in sys.stdin:
    msg = json.loads(line)
    if msg["op"] == "warm":
        print(json.dumps({"warm": None}), flush=True)
    elif timed == 2:
        print("RuntimeError: lost its pool", file=sys.stderr, flush=True)
        sys.exit(7)
    else:
        timed += 1
        print(json.dumps({"time": {"s_per_call": 0.01, "calls": 2, "images": 2}}), flush=True)
"""


def test_a_worker_that_dies_mid_run_keeps_its_earlier_rounds(capsys):
    w = worker.WorkerProcess([sys.executable, "-c", DIES_IN_ROUND_2], "torch")
    part = w.ready()
    assert part["plan"] == {"torch": ["infer:2:1", "infer:4:1"]}
    got = rounds.play({"torch": w}, part["plan"], ["infer:2:1", "infer:4:1"], 3, 0.0, pause_s=0)
    why = "its process exited with status 7: RuntimeError: lost its pool"
    assert got.deaths == {"torch": (why, 2)}
    for case in ("infer:2:1", "infer:4:1"):
        s = got.series[("torch", case)]
        assert s.round_numbers == [1] and s.samples_s == [0.01]
        assert s.stopped == f"its process died in round 2: {why}"
    assert w.close()["exit_status"] == 7

    # the same death of lenet_fast's process stops the run
    w = worker.WorkerProcess([sys.executable, "-c", DIES_IN_ROUND_2], "lenet_fast")
    plan = w.ready()["plan"]
    with pytest.raises(rounds.PlayerDied, match="status 7") as e:
        rounds.play(
            {"lenet_fast": w},
            {"lenet_fast": plan["torch"]},
            plan["torch"],
            3,
            0.0,
            pause_s=0,
            fatal=("lenet_fast",),
        )
    assert e.value.key == "lenet_fast"
    w.close()


class FakePlayer:
    """A player that logs every request; ``dies_at``: its n-th timed round raises
    PlayerDied; its rounds take ``s`` seconds per call."""

    def __init__(self, key: str, log: list, s: float, dies_at: int = 0) -> None:
        self.key, self.log, self.s, self.dies_at, self.timed = key, log, s, dies_at, 0

    def warm(self, case: str):
        self.log.append(("warm", self.key, case))
        return None

    def time(self, case: str, seconds: float):
        self.timed += 1
        if self.timed == self.dies_at:
            raise rounds.PlayerDied("boom")
        self.log.append(("time", self.key, case))
        return {"s_per_call": self.s, "calls": 3, "images": 4}


def test_rounds_rotate_the_first_player_and_stop_the_reference_early():
    log: list = []
    keys = ["lenet_fast", "reference", "torch"]
    players = {k: FakePlayer(k, log, 0.01) for k in keys}
    cases = ["infer:1:1", "train:1:1"]
    plan = {k: list(cases) for k in keys}
    out = rounds.play(players, plan, cases, 3, 0.0, max_rounds={"reference": 2}, pause_s=0)
    # every (implementation, case) warmed up once, before any round
    assert log[:6] == [("warm", k, c) for c in cases for k in keys]
    timed = [(k, c) for what, k, c in log[6:]]
    assert timed == [
        *[(k, c) for c in cases for k in ("lenet_fast", "reference", "torch")],  # round 1
        *[(k, c) for c in cases for k in ("reference", "torch", "lenet_fast")],  # round 2
        *[(k, c) for c in cases for k in ("torch", "lenet_fast")],  # round 3: no reference
    ]
    assert out.series[("reference", "train:1:1")].round_numbers == [1, 2]
    assert out.series[("torch", "train:1:1")].round_numbers == [1, 2, 3]
    assert out.deaths == {}


def test_a_dead_player_is_timed_no_more():
    log: list = []
    players = {
        "lenet_fast": FakePlayer("lenet_fast", log, 0.01),
        "torch": FakePlayer("torch", log, 0.02, dies_at=3),
    }
    cases = ["infer:1:1", "infer:8:1"]
    out = rounds.play(players, {k: list(cases) for k in players}, cases, 3, 0.0, pause_s=0)
    assert out.deaths == {"torch": ("boom", 2)}
    assert out.series[("torch", "infer:1:1")].round_numbers == [1]
    assert out.series[("torch", "infer:8:1")].round_numbers == [1]
    assert out.series[("lenet_fast", "infer:8:1")].round_numbers == [1, 2, 3]

    res = {"rows": {}, "notes": [], "status": {"torch": "torch 2"}, "plan": {"torch": cases}}
    rounds.collect(res, out, cases, {"gmacs_per_core": 50.0})
    assert res["status"]["torch"] == "failed in round 2"
    assert "PyTorch eager: failed: boom; timed in rounds 1-1 only" in res["notes"]
    row = res["rows"][("torch", "infer:1:1")]
    assert row["runs"] == 1 and row["stopped"].startswith("its process died in round 2")
    # one round together: lenet_fast's 400 images/s over torch's 200
    assert row["ratio_rounds"] == [2.0] and row["ratio_per_round_median"] == 2.0


def test_per_round_ratios_and_the_fastest_peer_come_from_each_rounds_pair():
    s = {  # seconds per call (4 images a call) in rounds 1-3
        "lenet_fast": [0.010, 0.020, 0.010],
        "onnxruntime": [0.020, 0.020, 0.040],
        "litert": [0.040, 0.010, 0.030],
        "reference": [0.001, 0.001, 0.001],  # fastest of all, but no contender
    }
    series = {
        (k, "infer:8:1"): rounds.Series(4, v, [1, 2, 3], [1, 1, 1], [0.0, 0.1, 0.2])
        for k, v in s.items()
    }
    rows = {k: rounds.timed_row(*k, v, 50.0) for k, v in series.items()}
    versus = rounds.add_ratios(rows, ["infer:8:1"])["infer:8:1"]
    ort = rows[("onnxruntime", "infer:8:1")]
    assert ort["ratio_rounds"] == pytest.approx([2.0, 1.0, 4.0])
    assert ort["ratio_per_round_median"] == pytest.approx(2.0)
    # the ratio of the medians (0.010 s against 0.020 s) is another number
    assert ort["ratio"] == pytest.approx(2.0)
    assert rows[("litert", "infer:8:1")]["ratio_rounds"] == pytest.approx([4.0, 0.5, 3.0])
    # round by round the fastest of ONNX Runtime and LiteRT: ORT, LiteRT, LiteRT
    assert versus["fastest_peer_by_round"] == ["onnxruntime", "litert", "litert"]
    assert versus["ratio_rounds"] == pytest.approx([2.0, 0.5, 3.0])
    assert versus["ratio_per_round_median"] == pytest.approx(2.0)
    assert versus["fastest_peer"] == "litert"
    assert rows[("lenet_fast", "infer:8:1")]["peak_fraction"] == pytest.approx(400 * 328_096 / 50e9)


@pytest.mark.slow
def test_a_dead_peer_is_reported_a_dead_lenet_fast_stops_the_run(monkeypatch, capsys):
    real = bench_suite.WorkerProcess
    started = []

    def fake(dead: str):
        def start(cmd: list[str], key: str) -> worker.WorkerProcess:
            started.append(key)
            if key == dead:
                return real([sys.executable, "-c", "raise SystemExit(5)"], key)
            return real(cmd, key)

        return start

    args = ["--quick", "--rounds", "1", "--cases", "infer:2:1"]
    monkeypatch.setattr(bench_suite, "WorkerProcess", fake("torch"))
    assert bench_suite.main([*args, "--peers", "lenet_fast,torch"]) == 0
    report = capsys.readouterr().out
    assert started == ["lenet_fast", "torch"]
    assert "| PyTorch eager | failed |" in report and "| lenet_fast | " in report
    assert "PyTorch eager: failed: its process exited with status 5; not timed" in report

    started.clear()
    monkeypatch.setattr(bench_suite, "WorkerProcess", fake("lenet_fast"))
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

"""bench/render_tables.py: the marker blocks of README.md and docs/*.md rewritten from small
result files, and --check failing on a stale block or a missing result file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import render_tables  # noqa: E402

FACTS = {
    "cpu": "Test CPU 9000",
    "threads": [1, 2],
    "isa": "avx2",
    "git_commit": "abc1234",
    "git_tree_modified": False,
    "date": "2026-01-02T03:04:05+00:00",
}


def row(impl: str, case: str, ips: float, ratio: float | None) -> dict:
    return {
        "impl": impl,
        "case": case,
        "images_per_s": ips,
        "images_per_s_min": ips * 0.9,
        "images_per_s_max": ips * 1.1,
        "s_per_step": 1 / ips,
        "peak_fraction": 0.25,
        "ratio": ratio,
    }


SUITE = {
    "facts": FACTS,
    "settings": {"cases": ["infer:1:1", "train:32:1"]},
    "peers": {
        "lenet_fast": {"status": "0.1.0"},
        "torch": {"status": "torch 2"},
        "onnxruntime": {"status": "not installed"},
    },
    "results": [
        row("lenet_fast", "infer:1:1", 40_123.4, 1.0),
        row("torch", "infer:1:1", 1_000.0, 40.1234),
        row("lenet_fast", "train:32:1", 20_500.0, 1.0),
        {"impl": "torch", "case": "train:32:1", "why": "failed", "reason": "boom"},
    ],
    "targets": {"infer:1:1": 40_000},
}
KERNELS = {
    "facts": {**FACTS, "threads": 1, "isas_benchmarked": ["scalar", "avx2"]},
    "kernels": [
        {
            "kernel": "conv2d",
            "layer": "C1",
            "direction": "forward",
            "batch": 1,
            "isa": "avx2",
            "median_s": 2.5e-6,
            "min_s": 2e-6,
            "max_s": 3e-6,
            "gflops": 94.08,
            "gelems": None,
        }
    ],
    "forward_pass": [
        {
            "implementation": "lenet_fast",
            "isa": "avx2",
            "batch": 1,
            "images_per_s": 30_000.0,
            "images_per_s_min": 29_000.0,
            "images_per_s_max": 31_000.0,
            "median_s": 1 / 30_000,
            "gflops": 19.7,
            "ratio_vs_reference": 80.0,
        }
    ],
}
REPRODUCE = {
    "facts": {**FACTS, "threads": 1},
    "settings": {"passes": 20},
    "paper_test_error_percent": {"plain": 0.95, "distort": 0.8},
    "runs": [
        {"seed": s, "distort": False, "test_error": e, "train_error": 0.005, "seconds": 600.0}
        for s, e in ((0, 0.0091), (1, 0.0095), (2, 0.0110))
    ],
}

README = """# lenet_fast

Intro text stays.

<!-- bench:suite -->
placeholder
<!-- /bench:suite -->

Text after.
"""
DOC = """# Performance

<!-- bench:suite-detail -->
<!-- /bench:suite-detail -->

<!-- bench:kernels -->
old table
<!-- /bench:kernels -->

# Reproducing

<!-- bench:reproduce -->
<!-- /bench:reproduce -->
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(README, encoding="utf-8")
    (tmp_path / "docs" / "performance.md").write_text(DOC, encoding="utf-8")
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    for name, data in (("suite", SUITE), ("kernels", KERNELS), ("reproduce", REPRODUCE)):
        (results / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")
    return tmp_path


def block(text: str, name: str) -> list[str]:
    lines = text.split("\n")
    i = lines.index(f"<!-- bench:{name} -->")
    j = lines.index(f"<!-- /bench:{name} -->")
    return lines[i + 1 : j]


def test_the_readme_table_comes_from_suite_json(repo: Path) -> None:
    assert render_tables.main(["--root", str(repo)]) == 0
    text = (repo / "README.md").read_text(encoding="utf-8")
    assert block(text, "suite") == [
        "| implementation | infer b=1, 1 thr | train b=32, 1 thr |",
        "|---|---:|---:|",
        "| lenet_fast | 40,123 | 20,500 |",
        "| PyTorch eager | 1,000 | failed |",
        "| ONNX Runtime | not installed | not installed |",
        "| *target for lenet_fast* | 40,000 | - |",
        "",
        "*Source: `bench/results/suite.json`; Test CPU 9000, 1-2 thread(s), ISA avx2, "
        "commit abc1234, 2026-01-02.*",
    ]
    # the text around the block is left as it was
    assert text.startswith("# lenet_fast\n\nIntro text stays.\n\n<!-- bench:suite -->\n")
    assert text.endswith("<!-- /bench:suite -->\n\nText after.\n")


def test_the_docs_blocks(repo: Path) -> None:
    assert render_tables.main(["--root", str(repo)]) == 0
    text = (repo / "docs" / "performance.md").read_text(encoding="utf-8")
    detail = block(text, "suite-detail")
    assert detail[2] == (
        "| inference, batch 1, 1 thr | lenet_fast | 40,123 | 36,111-44,136 | 0.0249 | 25.0% | - |"
    )
    assert detail[3].startswith("| inference, batch 1, 1 thr | PyTorch eager | 1,000 |")
    assert detail[3].endswith("| 40.12x |")
    assert len([r for r in detail if r.startswith("| ")]) == 4  # header + 3: no failed row
    kernels = block(text, "kernels")
    assert "| conv2d | C1 | forward | 1 | avx2 | 2.50 | 2.00-3.00 | 94.08 | - |" in kernels
    assert "| lenet_fast | avx2 | 1 | 30,000 | 29,000-31,000 | 0.0333 | 19.70 | 80.0x |" in kernels
    assert "old table" not in text
    assert kernels[-1].startswith(
        "*Source: `bench/results/kernels.json`; Test CPU 9000, 1 "
        "thread(s), ISA scalar, avx2, commit abc1234"
    )
    repro = block(text, "reproduce")
    assert "| original 60,000 | 1 | 0.95% | 0.50% | 10.0 min |" in repro
    assert "| original 60,000 | **median** | **0.95%** (paper 0.95%) | 0.50% | 10.0 min |" in repro
    assert repro[-1].startswith("*Source: `bench/results/reproduce.json`; Test CPU 9000, 1 thread")


def test_check_passes_on_fresh_blocks_and_names_a_stale_one(repo: Path, capsys) -> None:
    assert render_tables.main(["--root", str(repo), "--check"]) == 1  # placeholders: stale
    assert render_tables.main(["--root", str(repo)]) == 0
    capsys.readouterr()
    assert render_tables.main(["--root", str(repo), "--check"]) == 0
    assert render_tables.main(["--root", str(repo)]) == 0
    assert "rewritten" not in capsys.readouterr().out  # a second run changes nothing

    doc = repo / "docs" / "performance.md"
    before = doc.read_text(encoding="utf-8")
    doc.write_text(before.replace("30,000", "31,000"), encoding="utf-8")
    assert render_tables.main(["--root", str(repo), "--check"]) == 1
    err = capsys.readouterr().err
    assert "docs/performance.md: block 'kernels' differs from what kernels.json renders" in err
    assert doc.read_text(encoding="utf-8") != before  # --check changes nothing

    # new results make the committed block stale
    assert render_tables.main(["--root", str(repo)]) == 0
    suite = dict(SUITE, results=[row("lenet_fast", "infer:1:1", 50_000.0, 1.0)])
    (repo / "bench" / "results" / "suite.json").write_text(json.dumps(suite), encoding="utf-8")
    assert render_tables.main(["--root", str(repo), "--check"]) == 1
    assert "README.md: block 'suite'" in capsys.readouterr().err


def test_check_fails_when_a_blocks_result_file_is_missing(repo: Path, capsys) -> None:
    assert render_tables.main(["--root", str(repo)]) == 0
    (repo / "bench" / "results" / "reproduce.json").unlink()
    assert render_tables.main(["--root", str(repo), "--check"]) == 1
    err = capsys.readouterr().err
    assert "docs/performance.md: block 'reproduce' needs" in err and "reproduce.json" in err

    # rewriting: the other blocks are still written, the one without results left alone
    doc = repo / "docs" / "performance.md"
    doc.write_text(DOC, encoding="utf-8")
    assert render_tables.main(["--root", str(repo)]) == 1
    text = doc.read_text(encoding="utf-8")
    assert "old table" not in text and block(text, "reproduce") == []


def test_a_block_without_its_end_marker_is_an_error(repo: Path, capsys) -> None:
    (repo / "README.md").write_text("<!-- bench:suite -->\nno end\n", encoding="utf-8")
    assert render_tables.main(["--root", str(repo)]) == 2
    assert "README.md: block 'suite' has no <!-- /bench:suite --> line" in capsys.readouterr().err


def rounds_row(impl: str, case: str, ips: float, ratio: float, per_round: float, runs: int) -> dict:
    return {
        **row(impl, case, ips, ratio),
        "ratio_per_round_median": per_round,
        "runs": runs,
    }


# a result of the rounds (schema of bench_suite.py since the rounds): the summary gains the
# ratios to the fastest peer and to PyTorch eager and the measured peak; the detail table
# the per-round ratio and the rounds
SUITE_ROUNDS = {
    "facts": FACTS,
    "settings": {
        "cases": ["infer:1:1", "train:1:1"],
        "rounds": 9,
        "peak_gmacs_per_core": 48.25,
    },
    "peers": {
        "lenet_fast": {"status": "0.1.0"},
        "torch": {"status": "torch 2"},
        "litert": {"status": "ai-edge-litert 2"},
        "openvino": {"status": "not installed"},
    },
    "results": [
        rounds_row("lenet_fast", "infer:1:1", 40_000.0, 1.0, 1.0, 9),
        rounds_row("torch", "infer:1:1", 1_000.0, 40.0, 38.5, 9),
        rounds_row("litert", "infer:1:1", 20_000.0, 2.0, 2.25, 9),
        rounds_row("lenet_fast", "train:1:1", 10_000.0, 1.0, 1.0, 9),
        rounds_row("torch", "train:1:1", 500.0, 20.0, 19.0, 9),
        {"impl": "litert", "case": "train:1:1", "why": "-", "reason": "inference only"},
    ],
    "versus_fastest_peer": {
        "infer:1:1": {"fastest_peer": "litert", "ratio_per_round_median": 2.25},
        "train:1:1": {"fastest_peer": "torch", "ratio_per_round_median": 19.0},
    },
    "targets": {"infer:1:1": 40_000},
}


def test_a_result_of_the_rounds_shows_the_per_round_ratios(repo: Path) -> None:
    (repo / "bench" / "results" / "suite.json").write_text(
        json.dumps(SUITE_ROUNDS), encoding="utf-8"
    )
    assert render_tables.main(["--root", str(repo)]) == 0
    summary = block((repo / "README.md").read_text(encoding="utf-8"), "suite")
    assert summary[:8] == [
        "| implementation | infer b=1, 1 thr | train b=1, 1 thr |",
        "|---|---:|---:|",
        "| lenet_fast | 40,000 | 10,000 |",
        "| PyTorch eager | 1,000 | 500 |",
        "| LiteRT (XNNPACK) | 20,000 | - |",
        "| OpenVINO | not installed | not installed |",
        "| *lenet_fast / fastest peer (median per round)* | 2.25x vs LiteRT (XNNPACK) | "
        "19.00x vs PyTorch eager |",
        "| *lenet_fast / PyTorch eager (median per round)* | 38.50x | 19.00x |",
    ]
    assert summary[8] == (
        "| *lenet_fast, % of FMA peak (48.2 G multiply-adds/s per core)* | 25.0% | 25.0% |"
    )
    assert summary[9] == "| *target for lenet_fast* | 40,000 | - |"
    detail = block((repo / "docs" / "performance.md").read_text(encoding="utf-8"), "suite-detail")
    assert detail[0].endswith(
        "| lenet_fast / this, of medians | lenet_fast / this, per round | rounds |"
    )
    assert detail[2].endswith("| 25.0% | - | - | 9 |")
    assert detail[4] == (
        "| inference, batch 1, 1 thr | LiteRT (XNNPACK) | 20,000 | 18,000-22,000 | 0.05 | "
        "25.0% | 2.00x | 2.25x | 9 |"
    )


def test_the_targets_of_the_rounds_are_ratios_and_each_is_judged(repo: Path) -> None:
    """Targets as ratios to the fastest peer and PyTorch eager and as a fraction of the peak
    (bench_suite's TARGETS): the row states them and the next says which were met, from the
    per-round medians (2.25x LiteRT meets 2x; 19x PyTorch misses 25x; 25% misses 35%)."""
    res = {
        **SUITE_ROUNDS,
        "targets": {"infer:1:1": {"fastest": 2.0}, "train:1:1": {"torch": 25.0, "peak": 0.35}},
    }
    (repo / "bench" / "results" / "suite.json").write_text(json.dumps(res), encoding="utf-8")
    assert render_tables.main(["--root", str(repo)]) == 0
    summary = block((repo / "README.md").read_text(encoding="utf-8"), "suite")
    assert summary[9:11] == [
        "| *target for lenet_fast* | >= 2x fastest | >= 25x PyTorch eager; >= 35% of peak |",
        "| *target met* | yes | no (torch, peak) |",
    ]

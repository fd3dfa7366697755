"""The markdown tables of the results, from the JSON the scripts write: the scripts' reports
print them and ``bench/render_tables.py`` puts them into the README and docs, so a table
reads the same wherever it appears."""

from __future__ import annotations

import statistics
from typing import Any, Callable

from .impls import LABELS
from .output import md_table, ms, rate, us


def case_parts(key: str) -> tuple[str, int, int]:
    task, b, t = key.split(":")
    return task, int(b), int(t)


def case_label(key: str) -> str:
    task, b, t = case_parts(key)
    what = "inference" if task == "infer" else "training step"
    return f"{what}, batch {b}, {t} thr"


def _label(key: str) -> str:
    return LABELS.get(key, key)


def _rounds(res: dict[str, Any]) -> bool:
    """Whether the file comes from the suite's rounds (its per-round ratios, the fastest
    peer, the measured peak); older files render as they always did."""
    return res["settings"].get("rounds") is not None


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def suite_summary(res: dict[str, Any]) -> list[str]:
    """Median images/s per implementation and case; from the rounds, lenet_fast against the
    fastest peer and PyTorch eager (medians of the per-round ratios) and its % of the FMA
    peak; lenet_fast's targets."""
    cases = res["settings"]["cases"]
    rows = {(r["impl"], r["case"]): r for r in res["results"]}
    head = ["implementation"] + [
        f"{'infer' if case_parts(c)[0] == 'infer' else 'train'} b={case_parts(c)[1]}, "
        f"{case_parts(c)[2]} thr"
        for c in cases
    ]
    body = []
    for key, peer in res["peers"].items():
        cells = []
        for c in cases:
            r = rows.get((key, c))
            if r and r.get("images_per_s"):
                cells.append(rate(r["images_per_s"]))
            else:
                cells.append((r or {}).get("why", peer["status"]))
        body.append([_label(key), *cells])
    if _rounds(res):
        versus = res.get("versus_fastest_peer") or {}

        def fastest(c: str) -> str:
            v = versus.get(c)
            return (
                f"{v['ratio_per_round_median']:.2f}x vs {_label(v['fastest_peer'])}" if v else "-"
            )

        def of(key: str, field: str) -> list[Any]:
            return [rows.get((key, c), {}).get(field) for c in cases]

        peak = res["settings"]["peak_gmacs_per_core"]
        body += [
            ["*lenet_fast / fastest peer (median per round)*", *(fastest(c) for c in cases)],
            [
                "*lenet_fast / PyTorch eager (median per round)*",
                *(_x(v) for v in of("torch", "ratio_per_round_median")),
            ],
            [
                f"*lenet_fast, % of FMA peak ({peak:.1f} G multiply-adds/s per core)*",
                *(
                    "-" if v is None else f"{100 * v:.1f}%"
                    for v in of("lenet_fast", "peak_fraction")
                ),
            ],
        ]
    targets = res.get("targets", {})
    if any(isinstance(t, dict) for t in targets.values()):
        versus = res.get("versus_fastest_peer") or {}

        def target(c: str) -> str:
            t = targets.get(c) or {}
            parts = []
            if "fastest" in t:
                parts.append(f">= {t['fastest']:g}x fastest")
            if "torch" in t:
                parts.append(f">= {t['torch']:g}x PyTorch eager")
            if "peak" in t:
                parts.append(f">= {100 * t['peak']:g}% of peak")
            return "; ".join(parts) or "-"

        def met(c: str) -> str:
            t = targets.get(c)
            if not t:
                return "-"
            r = rows.get(("lenet_fast", c), {})
            got = {
                "fastest": (versus.get(c) or {}).get("ratio_per_round_median"),
                "torch": rows.get(("torch", c), {}).get("ratio_per_round_median"),
                "peak": r.get("peak_fraction"),
            }
            missed = [k for k, want in t.items() if got[k] is None or got[k] < want]
            return "yes" if not missed else "no (" + ", ".join(missed) + ")"

        body.append(["*target for lenet_fast*", *(target(c) for c in cases)])
        body.append(["*target met*", *(met(c) for c in cases)])
    elif any(c in targets for c in cases):
        body.append(["*target for lenet_fast*", *(rate(targets.get(c)) for c in cases)])
    return md_table(head, "l" + "r" * len(cases), body)


def suite_detail(res: dict[str, Any]) -> list[str]:
    """Every measurement: median and min-max images/s, ms per step, % of FMA peak, the
    ratio lenet_fast / this of the medians and, from the rounds, the median of the
    per-round ratios and the number of rounds."""
    rounds = _rounds(res)
    body = []
    for r in res["results"]:
        if r.get("images_per_s") is None:
            continue
        base = r["impl"] == "lenet_fast"
        cells = [
            case_label(r["case"]),
            _label(r["impl"]),
            rate(r["images_per_s"]),
            f"{rate(r['images_per_s_min'])}-{rate(r['images_per_s_max'])}",
            ms(r["s_per_step"]),
            f"{100 * r['peak_fraction']:.1f}%",
            "-" if base else _x(r.get("ratio")),
        ]
        if rounds:
            cells += ["-" if base else _x(r.get("ratio_per_round_median")), str(r["runs"])]
        body.append(cells)
    head = [
        "case",
        "implementation",
        "median images/s",
        "min-max images/s",
        "median ms/step",
        "% of FMA peak",
    ]
    if rounds:
        head += ["lenet_fast / this, of medians", "lenet_fast / this, per round", "rounds"]
    else:
        head += ["lenet_fast / this"]
    return md_table(head, "llrrrrr" + "rr" * rounds, body)


def kernel_table(res: dict[str, Any]) -> list[str]:
    """Every kernel at LeNet-5's shapes: time per call, GFLOP/s (squash: Gelem/s)."""
    body = []
    for r in res["kernels"]:
        gf = "-" if r["gflops"] is None else f"{r['gflops']:.2f}"
        ge = "-" if r["gelems"] is None else f"{r['gelems']:.2f}"
        body.append(
            [
                r["kernel"],
                r["layer"],
                r["direction"],
                str(r["batch"]),
                r["isa"],
                us(r["median_s"]),
                f"{us(r['min_s'])}-{us(r['max_s'])}",
                gf,
                ge,
            ]
        )
    head = [
        "kernel",
        "layer",
        "direction",
        "batch",
        "ISA",
        "median us",
        "min-max us",
        "GFLOP/s",
        "Gelem/s",
    ]
    return md_table(head, "lllrlrrrr", body)


def pass_table(res: dict[str, Any]) -> list[str]:
    """The forward pass built from the kernels, against the NumPy reference."""
    body = []
    for r in res["forward_pass"]:
        ratio = (
            "1 (baseline)"
            if r["ratio_vs_reference"] is None
            else f"{r['ratio_vs_reference']:,.1f}x"
        )
        body.append(
            [
                r["implementation"],
                r["isa"],
                str(r["batch"]),
                rate(r["images_per_s"]),
                f"{rate(r['images_per_s_min'])}-{rate(r['images_per_s_max'])}",
                f"{r['median_s'] * 1e3:.3g}",
                f"{r['gflops']:.2f}",
                ratio,
            ]
        )
    head = [
        "implementation",
        "ISA",
        "batch",
        "median images/s",
        "min-max images/s",
        "median ms/batch",
        "GFLOP/s",
        "vs reference",
    ]
    return md_table(head, "llrrrrrr", body)


def kernels_all(res: dict[str, Any]) -> list[str]:
    return [*kernel_table(res), "", *pass_table(res)]


def reproduce_table(res: dict[str, Any]) -> list[str]:
    """Test error per training set and seed, the median, and the paper's figure."""
    passes = res["settings"]["passes"]
    body = []
    for distort in (False, True):
        runs = sorted((r for r in res["runs"] if r["distort"] == distort), key=lambda r: r["seed"])
        if not runs:
            continue
        label = "distorted (paper III-C)" if distort else "original 60,000"
        for r in runs:
            body.append(
                [
                    label,
                    str(r["seed"]),
                    f"{100 * r['test_error']:.2f}%",
                    f"{100 * r['train_error']:.2f}%",
                    f"{r['seconds'] / 60:.1f} min",
                ]
            )
        paper = res["paper_test_error_percent"]["distort" if distort else "plain"]
        med = statistics.median(r["test_error"] for r in runs)
        body.append(
            [
                label,
                "**median**",
                f"**{100 * med:.2f}%** (paper {paper:.2f}%)",
                f"{100 * statistics.median(r['train_error'] for r in runs):.2f}%",
                f"{statistics.median(r['seconds'] for r in runs) / 60:.1f} min",
            ]
        )
    head = [
        "training set",
        "seed",
        f"test error after {passes} passes",
        "train error (on the fly, last pass)",
        "wall time",
    ]
    return md_table(head, "lrrrr", body)


def pretrained_table(res: dict[str, Any]) -> list[str]:
    """The shipped models: test error, rejection, and the error after re-normalisation."""
    models = res["models"]
    pct = lambda v: f"{100 * v:.2f}%"
    rows = [
        ["test error", *(pct(m["test_error"]) for m in models)],
        [
            "rejected for 0.5% error on the rest (Fig. 10; LeNet-4 1.8%, Boosted LeNet-4 0.5%)",
            *(pct(m["reject_for_half_percent_error"]) for m in models),
        ],
        ['test digits rejected by `reject="auto"`', *(pct(m["auto_rejects_test"]) for m in models)],
    ]
    for label in models[0]["renormalised_test_error"]:
        rows.append(
            [
                f"test error, digits {label}, re-normalised",
                *(pct(m["renormalised_test_error"][label]) for m in models),
            ]
        )
    for label in models[0]["auto_rejects_non_digits"]:
        rows.append(
            [
                f'{label} rejected by `reject="auto"`',
                *(pct(m["auto_rejects_non_digits"][label]) for m in models),
            ]
        )
    head = ["on the MNIST test set", *(f'`"{m["model"]}"`' for m in models)]
    return md_table(head, "l" + "r" * len(models), rows)


def image_table(res: dict[str, Any]) -> list[str]:
    """normalize_digits: digits/s per input side and thread count."""
    rows: dict[int, dict[int, float]] = {}
    for r in res["results"]:
        rows.setdefault(r["side"], {})[r["threads"]] = r["digits_per_s"]
    threads = sorted({t for v in rows.values() for t in v})
    body = [
        [f"{side}x{side}", *(rate(rows[side].get(t)) for t in threads)] for side in sorted(rows)
    ]
    head = ["image side (uint8)", *(f"digits/s, {t} thread{'s' * (t > 1)}" for t in threads)]
    return md_table(head, "l" + "r" * len(threads), body)


def predict_table(res: dict[str, Any]) -> list[str]:
    """lenet-fast predict on a folder of small PNGs: files/s, median of the runs."""
    runs = ", ".join(f"{s:.2f}" for s in res["seconds"])
    body = [
        [
            f"{res['files']:,} PNG files, 28x28 grey",
            rate(res["files_per_second"]),
            runs,
            f"{100 * res['right']:.2f}%",
            f"{100 * res['rejected']:.2f}%",
        ]
    ]
    head = ["input", "files/s (median)", "runs (s)", "right", "rejected (auto)"]
    return md_table(head, "lrrrr", body)


def pretrained_summary(res: dict[str, Any]) -> list[str]:
    """The shipped models' test error and rejection figures: the first rows of
    :func:`pretrained_table`, for the README."""
    return pretrained_table(res)[:5]


def export_table(res: dict[str, Any]) -> list[str]:
    """bench_export.py: per runtime and model, the MNIST test labels that agree with
    ``model.predict`` and the largest penalty (and posterior) differences."""
    body = [
        [
            r["runtime"],
            r["model"],
            f"{r['labels_agree']:,} / {r['digits']:,}",
            f"{r['max_abs_penalty_diff']:.2e}",
            "-" if r["max_abs_proba_diff"] is None else f"{r['max_abs_proba_diff']:.1e}",
        ]
        for r in res["rows"]
    ]
    head = [
        "runtime",
        "model",
        "labels as `predict`",
        "max abs. penalty diff.",
        "max abs. posterior diff.",
    ]
    missing = res.get("not_run", [])
    return md_table(head, "llrrr", body) + (
        [""] + [f"Not run: {m}." for m in missing] if missing else []
    )


def dask_table(res: dict[str, Any]) -> list[str]:
    """bench_dask.py: images/s of ``lenet_fast.dask.predict`` per worker count, beside a
    local one-thread ``predict``."""
    runs = lambda s: ", ".join(f"{v:.2f}" for v in s)
    body = [
        [
            "local `model.predict`, 1 thread",
            rate(res["local_one_thread_images_per_second"]),
            runs(res["local_one_thread_seconds"]),
            "-",
        ]
    ]
    for r in res["runs"]:
        w = r["workers"]
        body.append(
            [
                f"`lenet_fast.dask.predict`, {w} worker{'s' * (w > 1)} x {r['threads_per_worker']} thread",
                rate(r["images_per_second"]),
                runs(r["seconds"]),
                f"{r['load_average_1min_after']:g}",
            ]
        )
    head = [
        f"{res['images']:,} digits, chunks of {res['chunk']:,}",
        "images/s (median)",
        "runs (s)",
        "load average after",
    ]
    return md_table(head, "lrrr", body)


#: block name -> (result file under bench/results/, table of it)
BLOCKS: dict[str, tuple[str, Callable[[dict[str, Any]], list[str]]]] = {
    "suite": ("suite.json", suite_summary),
    "suite-detail": ("suite.json", suite_detail),
    "suite-zen3": ("suite-zen3.json", suite_summary),
    "kernels": ("kernels.json", kernels_all),
    "reproduce": ("reproduce.json", reproduce_table),
    "pretrained": ("pretrained.json", pretrained_table),
    "pretrained-summary": ("pretrained.json", pretrained_summary),
    "image": ("image.json", image_table),
    "predict": ("predict.json", predict_table),
    "export": ("export.json", export_table),
    "dask": ("dask.json", dask_table),
}

"""The ``lenet-fast`` command line: train and evaluate LeNet-5, classify digit images.

lenet-fast train [--data DIR] [--dataset mnist|idx] [--download] [--passes 20]
                 [--optimizer sdlm|sgd] [--loss mse|map] [--distort] [--seed N] [--out DIR]
                 [--resume CKPT] [--plot] [--mu MU] [--lr LR] [--limit N] ...
                 (lenet-fast train --help: all options)
lenet-fast eval MODEL [--data DIR] [--dataset mnist|idx] [--json] [--reject] [--plot OUT.png]
lenet-fast predict [--model NAME|PATH] [--invert auto|yes|no] [--reject auto|off|T]
                   [--json | --csv] PATH...
lenet-fast export MODEL OUT.onnx [--opset 17] [--uint8-input]
lenet-fast info

An expected failure prints ``lenet-fast: error: <message>`` (no traceback) and exits with
status 2 for bad arguments and unusable input files, 1 for a run that failed otherwise
(a download without network, a full disk), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from . import tables
from .mnist import load_idx, load_mnist
from .model import LeNet5
from .pretrained import PRETRAINED
from .runtime import info
from .train import evaluate, reject_curve, train


class UsageError(Exception):
    """Arguments that parse but do not make sense together: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with every error as ``lenet-fast: error: <message>`` after the usage."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"lenet-fast: error: {message}\n")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def _load_data(a: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four arrays of --dataset: MNIST (checksums verified) or any IDX folder."""
    if a.dataset == "idx":
        if a.data is None:
            raise UsageError("--dataset idx needs --data DIR, the folder of the four IDX files")
        if a.download:
            raise UsageError("--download fetches MNIST only; it does not go with --dataset idx")
        return load_idx(a.data)
    return load_mnist(a.data, download=a.download)


def _check_out_folder(out: Path) -> None:
    """Fail before any work when --out cannot hold the run's files."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot create the output folder ({e})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the output folder is not writable")


def _bar(stream: Any) -> Any:
    """A live progress bar inside a pass, only on a terminal."""
    if not stream.isatty():
        return None

    def progress(p: int, done: int, total: int, stats: dict[str, float]) -> None:
        width = 30
        filled = int(width * done / max(1, total))
        stream.write(
            f"\r  pass {p + 1}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total}  "
            f"loss {stats['loss']:.4f}  train error {100 * stats['train_error']:5.2f}%"
        )
        stream.flush()
        if done + 1 >= total:
            stream.write("\r" + " " * 100 + "\r")

    return progress


def cmd_train(a: argparse.Namespace) -> int:
    if a.mu is not None and a.optimizer != "sdlm":
        raise ValueError(
            f"--mu: SDLM's damping, not used by --optimizer {a.optimizer} (its rate is --lr)"
        )
    if a.resume is not None and not Path(a.resume).is_file():
        raise FileNotFoundError(f"--resume {a.resume}: no such checkpoint file")
    if a.plot:  # fail now, not after the last pass
        from .plots import _pyplot

        _pyplot()
    tr_x, tr_y, te_x, te_y = _load_data(a)
    out = Path(a.out)
    _check_out_folder(out)  # before the first pass, not at its end
    if a.limit:
        tr_x, tr_y = tr_x[: a.limit], tr_y[: a.limit]
    codes = tables.RBF_CODES_NO_TOP_BAR if a.codes == "no-top-bar" else tables.RBF_CODES
    model = LeNet5(
        seed=a.seed,
        loss=a.loss,
        map_j=a.map_j,
        loss_scale=a.loss_scale,
        rbf=a.rbf,
        subsample=a.subsample,
        codes=codes,
    )
    if a.limit and a.mu is None and a.optimizer == "sdlm" and len(tr_x) < 20_000:
        print(
            f"note: the default mu (8 in passes 1-2, 0.5 in 3-5, then 0.02) is sized for passes of "
            f"60,000 digits; on {len(tr_x):,} the first passes barely move the weights: "
            f"--mu 0.4 learns from the first pass",
            file=sys.stderr,
        )
    what = "MNIST digits" if a.dataset == "mnist" else f"images from {a.data} (IDX)"
    print(
        f"lenet_fast: training LeNet-5 on {len(tr_x):,} {what}, {a.passes} passes, "
        f"{a.optimizer}{' with distortions' if a.distort else ''}, loss {a.loss}, seed {a.seed}; "
        f"isa {info()['isa']}, out {out}",
        flush=True,
    )
    history = train(
        model,
        tr_x,
        tr_y,
        te_x,
        te_y,
        passes=a.passes,
        optimizer=a.optimizer,
        distort=a.distort,
        seed=a.seed,
        out=out,
        resume=a.resume,
        lr=a.lr,
        **({} if a.mu is None else {"mu": a.mu}),
        batch_size=a.batch_size,
        order=a.order,
        progress=_bar(sys.stderr),
        log=lambda line: print(line, flush=True),
    )
    final = history[-1]
    print(
        f"done: test error {100 * final['test_error']:.2f}% after {final['pass']} passes; "
        f"model in {out / 'model.npz'}"
    )
    if a.plot:
        from .plots import plot_curves, plot_misclassified

        plot_curves(history, out / "error_curves.png")
        ev = evaluate(model, te_x, te_y)
        plot_misclassified(
            te_x, te_y, ev["predicted"], ev["misclassified"], out / "misclassified.png"
        )
        print(f"plots: {out / 'error_curves.png'}, {out / 'misclassified.png'}")
    return 0


#: the paper's Fig. 10: % of the test set rejected for 0.5% error on the rest
PAPER_REJECT = {"LeNet-4": 1.8, "Boosted LeNet-4": 0.5}
#: the rows of the printed error-reject curve: % of the test digits rejected
CURVE_POINTS = (0, 0.5, 1, 2, 3, 5, 10)


def load_model(spec: str) -> LeNet5:
    """A model file, or the name of a shipped model when no such file exists."""
    if spec in PRETRAINED and not Path(spec).exists():
        return LeNet5.pretrained(spec)
    return LeNet5.load(spec)


def cmd_eval(a: argparse.Namespace) -> int:
    model = load_model(a.model)
    _, _, te_x, te_y = _load_data(a)
    ev = evaluate(model, te_x, te_y)
    curve = reject_curve(LeNet5._margin(ev["penalties"]), ev["predicted"] != te_y)
    figure = curve["reject_for_target"]
    if a.json:
        print(
            json.dumps(
                {
                    "test_error": ev["error"],
                    "errors": ev["errors"],
                    "confusion": ev["confusion"].tolist(),
                    "misclassified": ev["misclassified"].tolist(),
                    "reject_for_half_percent_error": figure,
                }
            )
        )
        return 0
    print(f"test error {100 * ev['error']:.2f}% ({ev['errors']} of {len(te_y):,})")
    if a.reject:
        paper = ", ".join(f"{k} {v}%" for k, v in PAPER_REJECT.items())
        print(
            f"to reach 0.5% error on the rest, reject {100 * figure:.2f}% of the test digits "
            f"(lowest margin first; the paper's Fig. 10: {paper})"
        )
        print("error-reject curve (rejected, lowest margin first -> error on the rest):")
        n = len(te_y)
        for pct in CURVE_POINTS:
            k = round(pct / 100 * n)
            print(
                f"  {pct:5.1f}% rejected (margin < {curve['threshold'][k]:.4f}): "
                f"{100 * curve['error'][k]:.2f}% error"
            )
        if a.plot:
            from .plots import plot_reject_curve

            plot_reject_curve(curve, Path(a.plot))
            print(f"plot: {a.plot}")
        return 0
    print("confusion matrix (rows: true digit, columns: predicted):")
    print("      " + "".join(f"{j:6d}" for j in range(10)))
    for i, row in enumerate(ev["confusion"]):
        print(f"{i:6d}" + "".join(f"{v:6d}" for v in row))
    print("misclassified test images (indices):")
    print(" ".join(map(str, ev["misclassified"].tolist())))
    if a.plot:
        from .plots import plot_misclassified

        plot_misclassified(te_x, te_y, ev["predicted"], ev["misclassified"], Path(a.plot))
        print(f"plot: {a.plot}")
    return 0


def _reject_arg(text: str) -> str | float:
    if text in ("auto", "off"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected auto, off or a margin threshold >= 0, got {text!r}"
        ) from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a margin threshold >= 0, got {text}")
    return value


def cmd_predict(a: argparse.Namespace) -> int:
    from . import _predict

    model = load_model(a.model)
    invert: bool | str = "auto" if a.invert == "auto" else a.invert == "yes"
    fmt = "json" if a.json else "csv" if a.csv else "table"
    return _predict.run(model, a.paths, invert=invert, reject=a.reject, fmt=fmt)


def cmd_export(a: argparse.Namespace) -> int:
    from . import export

    out = Path(a.out)
    write = export.exporter_for(out)  # an unknown extension fails before the model loads
    kwargs: dict[str, Any] = {}
    if out.suffix.lower() == ".onnx":
        kwargs = {"opset": export.DEFAULT_OPSET if a.opset is None else a.opset}
        kwargs["uint8_input"] = a.uint8_input
    elif a.opset is not None or a.uint8_input:
        raise UsageError(f"--opset and --uint8-input apply to .onnx files, not {out.suffix}")
    model = load_model(a.model)
    path = write(model, out, **kwargs)
    print(f"wrote {path}")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    for k, v in info().items():
        print(f"{k}: {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lenet-fast", description="LeNet-5 (LeCun et al. 1998) on the CPU.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    dataset_help = (
        "mnist (default): the four MNIST files, checksums verified; idx: any four files in "
        "MNIST's IDX layout and names, any counts (needs --data)"
    )

    t = sub.add_parser("train", help="train LeNet-5 on MNIST as the paper does")
    t.add_argument(
        "--data",
        help="folder with the four MNIST .gz files (default: $LENET_FAST_DATA, else the cache)",
    )
    t.add_argument("--dataset", choices=("mnist", "idx"), default="mnist", help=dataset_help)
    t.add_argument(
        "--download", action="store_true", help="fetch missing MNIST files (checksums verified)"
    )
    t.add_argument(
        "--passes",
        type=_int_at_least(1),
        default=20,
        help="passes over the training set (default 20)",
    )
    t.add_argument("--optimizer", choices=("sdlm", "sgd"), default="sdlm")
    t.add_argument(
        "--loss", choices=("mse", "map"), default="map", help="Eq. 9 (map, default) or Eq. 8 (mse)"
    )
    t.add_argument("--map-j", type=_positive_float, default=5.0, help="j of Eq. 9 (default 5)")
    t.add_argument(
        "--loss-scale",
        type=_positive_float,
        default=1.0,
        help="E is multiplied by this (default 1); for SDLM the same as dividing mu by it",
    )
    t.add_argument(
        "--mu",
        type=_positive_float,
        default=None,
        help="SDLM's mu for every pass (default: 8 in passes 1-2, 0.5 in 3-5, the paper's 0.02 after)",
    )
    t.add_argument("--rbf", choices=("fixed", "trainable"), default="fixed")
    t.add_argument(
        "--codes",
        choices=("paper", "no-top-bar"),
        default="paper",
        help="RBF centres: the transcribed Fig. 3 codes, or without the top bar of 0, 2, 4, 5",
    )
    t.add_argument(
        "--subsample",
        choices=("mean", "sum"),
        default="mean",
        help="S2/S4 coefficient times the 2x2 mean (default) or sum (the paper)",
    )
    t.add_argument("--distort", action="store_true", help="train on distorted copies (paper III-C)")
    t.add_argument(
        "--order",
        choices=("fixed", "reshuffle"),
        default="reshuffle",
        help="a new random order each pass (default) or one order for all passes",
    )
    t.add_argument(
        "--lr", type=_positive_float, default=0.005, help="SGD learning rate (default 0.005)"
    )
    t.add_argument("--batch-size", type=_int_at_least(1), default=32, help="SGD batch size")
    t.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=0,
        help="seeds the weights, the order and the distortions",
    )
    t.add_argument(
        "--limit", type=_int_at_least(1), default=0, help="train on the first N digits only"
    )
    t.add_argument(
        "--out", default="lenet-fast-run", help="output folder (default ./lenet-fast-run)"
    )
    t.add_argument("--resume", help="a checkpoint_PP.npz to continue from")
    t.add_argument(
        "--plot",
        action="store_true",
        help="write error curves and misclassified digits (needs matplotlib)",
    )
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="test error, confusion matrix, misclassified digits of a model")
    e.add_argument(
        "model",
        help="a model.npz or checkpoint written by lenet-fast train, or a shipped model's "
        "name (mnist, mnist-distorted)",
    )
    e.add_argument("--data", help="MNIST folder (default: $LENET_FAST_DATA, else the cache)")
    e.add_argument("--dataset", choices=("mnist", "idx"), default="mnist", help=dataset_help)
    e.add_argument("--download", action="store_true")
    e.add_argument("--json", action="store_true", help="print the results as JSON")
    e.add_argument(
        "--reject",
        action="store_true",
        help="the error-reject figures: the share of test digits to reject (lowest margin "
        "first) for 0.5%% error on the rest, as the paper's Fig. 10, and the curve",
    )
    e.add_argument(
        "--plot",
        metavar="PNG",
        help="write a sheet of the misclassified digits, or with --reject the error-reject "
        "curve (needs matplotlib)",
    )
    e.set_defaults(func=cmd_eval)

    pr = sub.add_parser(
        "predict",
        help="the digit in each image file, with its probability, or a refusal",
        description="Classify digit images (PNG, JPEG, BMP, GIF, TIFF, PGM, WebP), each "
        "normalised as MNIST's digits were. One result per file; exit status 0 when every "
        "file was read, 1 when some could not be (each is reported with its reason), 2 for "
        "bad arguments.",
    )
    pr.add_argument(
        "paths", nargs="+", metavar="PATH", help="an image file, a folder of them, or a glob"
    )
    pr.add_argument(
        "--model",
        default="mnist-distorted",
        help="a shipped model's name (mnist, mnist-distorted: the default) or a model file",
    )
    pr.add_argument(
        "--invert",
        choices=("auto", "yes", "no"),
        default="auto",
        help="dark ink on light paper: told from the image's border (auto), or stated",
    )
    pr.add_argument(
        "--reject",
        type=_reject_arg,
        default="auto",
        help="auto (the model's thresholds, the default), off, or a margin threshold T",
    )
    out_fmt = pr.add_mutually_exclusive_group()
    out_fmt.add_argument("--json", action="store_true", help="one JSON array of objects")
    out_fmt.add_argument("--csv", action="store_true", help="CSV with a header row")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser(
        "export",
        help="write a model for another runtime: ONNX (OUT.onnx)",
        description="Write a model in another runtime's format, chosen by OUT's extension: "
        ".onnx (needs the onnx package: pip install 'lenet_fast[onnx]'). The file is "
        "written atomically; an unknown extension or a missing folder exits with status 2.",
    )
    ex.add_argument(
        "model",
        help="a model file written by lenet-fast train, or a shipped model's name "
        "(mnist, mnist-distorted)",
    )
    ex.add_argument("out", metavar="OUT", help="the file to write, e.g. lenet5.onnx")
    ex.add_argument(
        "--opset",
        type=_int_at_least(1),
        default=None,
        help="ONNX opset (default 17; 13 is the lowest the graph allows)",
    )
    ex.add_argument(
        "--uint8-input",
        action="store_true",
        help="the graph takes uint8 digits (N,28,28) and pads and scales them itself",
    )
    ex.set_defaults(func=cmd_export)

    i = sub.add_parser("info", help="version, instruction set, compiler, threads")
    i.set_defaults(func=cmd_info)
    return p


# Exit status 2: the arguments or the input files cannot be used as given.
_USAGE_ERRORS = (
    UsageError,
    ValueError,  # a corrupt data or model file, or values that do not go together
    ImportError,  # --plot without matplotlib
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status (2 usage or input, 1 failed run, 130 Ctrl-C)."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except _USAGE_ERRORS as e:
        print(f"lenet-fast: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a download without network, a full disk: the run failed
        print(f"lenet-fast: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nlenet-fast: interrupted (the last checkpoint is intact)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

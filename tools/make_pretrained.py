#!/usr/bin/env python
"""Make the trained models shipped in the package: ``lenet_fast/models/<name>.npz``.

    python tools/make_pretrained.py --data DIR [--only mnist|mnist-distorted] [--jobs 2]

Each model is ``lenet-fast train`` with the paper's recipe (the defaults: 20 SDLM passes
over MNIST's 60,000 training digits, Eq. 9's loss) and seed 0, fixed before any run (no
seed is picked on the test set); "mnist-distorted" adds ``--distort``. Training runs in
its own process on one thread (``--jobs 2``: both at once on a 2-core machine), writing
under ``--out``. Then, for each model, in this process:

* ``meta`` records the name, the command, every option, the seed, the lenet_fast version
  and the commit it was trained at, the sha256 of the four MNIST files, and the training
  and test errors (the undistorted training and test sets);
* the ``reject="auto"`` threshold is set from the training digits only
  (:meth:`LeNet5.calibrate_reject`: the margin of their lowest 1%);
* the test set's error-reject figure (the share to reject for 0.5% error on the rest) is
  recorded as a result, not used to choose anything;
* the file is written atomically and its sha256 recorded in
  ``python/lenet_fast/pretrained.py``.

A tree with uncommitted changes is refused (the commit must say what trained the model).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "python" / "lenet_fast" / "models"
REGISTRY = REPO / "python" / "lenet_fast" / "pretrained.py"

SEED = 0
RECIPES: dict[str, list[str]] = {"mnist": [], "mnist-distorted": ["--distort"]}
REJECT_FRACTION = 0.01


def git(*cmd: str) -> str:
    return subprocess.run(
        ["git", *cmd], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def train_command(name: str, data: str, out: Path) -> list[str]:
    return [
        "lenet-fast",
        "train",
        "--data",
        data,
        "--seed",
        str(SEED),
        *RECIPES[name],
        "--out",
        str(out / name),
    ]


def train_one(name: str, data: str, out: Path) -> None:
    cmd = [sys.executable, "-m", "lenet_fast", *train_command(name, data, out)[1:]]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    (out / name).mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.log", "w") as log:
        r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    (out / name / "commit.txt").write_text(git("rev-parse", "HEAD") + "\n")
    if r.returncode:
        raise SystemExit(f"{name}: training failed (exit {r.returncode}); see {out / name}.log")


def mnist_sha256(data: str) -> dict[str, str]:
    from lenet_fast.download import MNIST_FILES

    out = {}
    for stem in MNIST_FILES:
        path = next(p for p in (Path(data) / (stem + ".gz"), Path(data) / stem) if p.is_file())
        out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def finish(name: str, data: str, out: Path) -> str:
    import lenet_fast
    from lenet_fast import LeNet5, evaluate, load_mnist
    from lenet_fast.train import reject_curve

    tr_x, tr_y, te_x, te_y = load_mnist(data)
    model = LeNet5.load(out / name / "model.npz")
    commit = (out / name / "commit.txt").read_text().strip()  # the commit it trained at
    config = model.train_state.get("config", {})
    train_ev = evaluate(model, tr_x, tr_y)
    test_ev = evaluate(model, te_x, te_y)
    model.meta = {
        "name": name,
        "command": " ".join(train_command(name, "$LENET_FAST_DATA", Path("runs"))),
        "made_by": "python tools/make_pretrained.py --data $LENET_FAST_DATA",
        "options": dict(model.options),
        "training": dict(config, passes=model.train_state.get("pass")),
        "seed": SEED,
        "lenet_fast_version": lenet_fast.__version__,
        "commit": commit,
        "isa": lenet_fast.get_isa(),
        "data": "MNIST (LeCun, Cortes and Burges): the 60,000 training digits",
        "mnist_sha256": mnist_sha256(data),
        "train_error": train_ev["error"],
        "test_error": test_ev["error"],
        "test_errors": test_ev["errors"],
    }
    tm, tp = model.calibrate_reject(tr_x, fraction=REJECT_FRACTION)
    curve = reject_curve(model.margin(te_x), test_ev["predicted"] != te_y)
    model.meta["reject_chosen_on"] = (
        f"the training digits: {REJECT_FRACTION:.0%} of them have a margin below "
        f"reject_margin, {REJECT_FRACTION:.0%} a smallest penalty above reject_penalty"
    )
    model.meta["test_reject_auto"] = float((model.predict(te_x, reject="auto") < 0).mean())
    model.meta["reject_for_half_percent_error"] = curve["reject_for_target"]
    model.history = model.history or []
    MODELS.mkdir(exist_ok=True)
    path = model.save(MODELS / f"{name}.npz", history=model.history)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    print(
        f"{name}: test error {100 * test_ev['error']:.2f}%, train error "
        f"{100 * train_ev['error']:.2f}%, reject margin {tm:.3f} penalty {tp:.3f} "
        f"(auto rejects {100 * model.meta['test_reject_auto']:.2f}% of the test set), "
        f"reject for 0.5% error {100 * curve['reject_for_target']:.2f}%; "
        f"{path} sha256 {sha}",
        flush=True,
    )
    return sha


def write_registry(shas: dict[str, str]) -> None:
    text = REGISTRY.read_text()
    m = re.search(r"PRETRAINED: dict\[str, tuple\[str, str\]\] = \{.*?\}\n", text, re.S)
    if not m:
        raise SystemExit(f"{REGISTRY}: no PRETRAINED table to update")
    from ast import literal_eval

    table = literal_eval(m.group(0).split("=", 1)[1].strip())
    table.update({name: (f"{name}.npz", sha) for name, sha in shas.items()})
    lines = ["PRETRAINED: dict[str, tuple[str, str]] = {"]
    for name in sorted(table):
        file, sha = table[name]
        lines.append(f'    "{name}": (\n        "{file}",\n        "{sha}",\n    ),')
    lines.append("}\n")
    REGISTRY.write_text(text[: m.start()] + "\n".join(lines) + text[m.end() :])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("LENET_FAST_DATA"), help="MNIST folder")
    p.add_argument("--only", choices=sorted(RECIPES), help="make only this model")
    p.add_argument("--jobs", type=int, default=2, help="trainings at a time (default 2)")
    p.add_argument("--out", default="pretrained-runs", help="folder for the training runs")
    p.add_argument(
        "--reuse", action="store_true", help="finish the runs already in --out, train none"
    )
    a = p.parse_args(argv)
    if not a.data:
        p.error("--data: the MNIST folder (or set LENET_FAST_DATA)")
    if git("status", "--porcelain", "--untracked-files=no"):
        raise SystemExit("uncommitted changes: commit first, so the models name their commit")
    names = [a.only] if a.only else list(RECIPES)
    out = Path(a.out)
    if not a.reuse:
        with ThreadPoolExecutor(max(1, a.jobs)) as pool:
            list(pool.map(lambda n: train_one(n, a.data, out), names))
    shas: dict[str, Any] = {n: finish(n, a.data, out) for n in names}
    write_registry(shas)
    print(f"updated {REGISTRY.relative_to(REPO)}; commit the models and it together")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ONNX export: a graph onnx.checker accepts, that ONNX Runtime runs to the model's own
labels, penalties and posteriors on MNIST's 10,000 test digits, with Table I's 60 C3
kernels only, the lowest IR version of its opset, its metadata, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import lenet_fast
from conftest import moved_model
from lenet_fast import LeNet5, export, load_mnist, preprocess, tables
from lenet_fast.layout import C3_CONNECTIONS

# the opsets a test writes: the lowest the graph allows and the default
OPSETS = (13, 17)
# the IR version each opset needs, from the ONNX versioning table (docs/Versioning.md):
# IR 7 came with opset 13 (onnx 1.8), IR 8 with opsets 14-17 (onnx 1.9-1.12)
IR_OF_OPSET = {13: 7, 17: 8}
# penalties: the graph runs in float32 in another order than the C++ kernels
RTOL, ATOL = 1e-4, 1e-3
PROBA_ATOL = 1e-5
BATCH = 2000


def session(path: Path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run(sess, x: np.ndarray) -> dict[str, np.ndarray]:
    """The three outputs on x, in batches of BATCH."""
    names = [o.name for o in sess.get_outputs()]
    parts = [sess.run(None, {"x": x[i : i + BATCH]}) for i in range(0, len(x), BATCH)]
    return {n: np.concatenate([p[k] for p in parts]) for k, n in enumerate(names)}


MODELS = {
    "mnist": lambda: LeNet5.pretrained("mnist"),
    "mnist-distorted": lambda: LeNet5.pretrained("mnist-distorted"),
    "trainable-rbf": lambda: moved_model({"rbf": "trainable"}),
    "subsample-sum": lambda: moved_model({"subsample": "sum"}),
}


@pytest.fixture(scope="module")
def test_digits(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    return load_mnist(mnist_dir)[2:]


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tmp_path_factory) -> tuple[LeNet5, Path]:
    model = MODELS[request.param]()
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    assert model.to_onnx(path) == path
    return model, path


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[LeNet5, Path]:
    model = LeNet5.pretrained("mnist")
    return model, model.to_onnx(tmp_path_factory.mktemp("onnx") / "mnist.onnx")


def digits(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


# ------------------------------------------------------------------ the file


@pytest.mark.parametrize("uint8_input", [False, True])
@pytest.mark.parametrize("opset", OPSETS)
def test_the_checker_accepts_the_graph_and_the_ir_version_is_the_lowest(
    tmp_path, opset, uint8_input
):
    path = LeNet5.pretrained("mnist").to_onnx(
        tmp_path / "m.onnx", opset=opset, uint8_input=uint8_input
    )
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    assert [(o.domain, o.version) for o in m.opset_import] == [("", opset)]
    assert m.ir_version == IR_OF_OPSET[opset]


def test_the_newest_opset_onnx_knows_is_written_and_checked(tmp_path):
    top = onnx.defs.onnx_opset_version()
    m = onnx.load(str(LeNet5.pretrained("mnist").to_onnx(tmp_path / "m.onnx", opset=top)))
    onnx.checker.check_model(m, full_check=True)
    # the lowest IR version any onnx release paired with an opset at least this one
    lowest = min(ir for _, ir, ai_onnx, *_ in onnx.helper.VERSION_TABLE if ai_onnx >= top)
    assert m.ir_version == lowest


def test_inputs_and_outputs(small):
    _, path = small
    g = onnx.load(str(path)).graph

    def shape(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    (x,) = g.input
    assert (x.name, x.type.tensor_type.elem_type, shape(x)) == (
        "x",
        onnx.TensorProto.FLOAT,
        ["N", 1, 32, 32],
    )
    outs = {o.name: (o.type.tensor_type.elem_type, shape(o)) for o in g.output}
    assert outs == {
        "penalties": (onnx.TensorProto.FLOAT, ["N", 10]),
        "label": (onnx.TensorProto.INT64, ["N"]),
        "proba": (onnx.TensorProto.FLOAT, ["N", 10]),
    }


def test_c3_holds_the_60_kernels_of_table_one_and_nothing_else(small):
    model, path = small
    g = onnx.load(str(path)).graph
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
    by_output = {n.output[0]: n for n in g.node}
    (conv,) = [n for n in g.node if n.op_type == "Conv" and n.name.startswith("c3")]
    # one depthwise Conv: a 5x5 kernel per connection, the packed (60,5,5) c3.w itself
    w = inits[conv.input[1]]
    assert w.size == 60 * 25 == C3_CONNECTIONS * 25 and len(conv.input) == 2
    assert next(a.i for a in conv.attribute if a.name == "group") == 60
    np.testing.assert_array_equal(w.reshape(60, 5, 5), model.params["c3.w"])
    # no dense 16x6 kernel anywhere in the file
    assert not any(a.size == 16 * 6 * 25 for a in inits.values())
    # the S2 map each connection reads, and the runs of C3 maps summed f channels at a time:
    # together, map k reads exactly the S2 maps Table I's column k marks
    gather = by_output[conv.input[0]]
    assert gather.op_type == "Gather"
    reads = inits[gather.input[1]].tolist()
    splits = [n for n in g.node if n.op_type == "Reshape" and n.name.startswith("c3")]
    runs = [inits[n.input[1]].tolist()[1:3] for n in splits]  # [maps, fan-in] per run
    assert sum(m for m, _ in runs) == 16 and sum(m * f for m, f in runs) == 60
    table = np.zeros((6, 16), dtype=bool)
    i = k = 0
    for maps, fan in runs:
        for _ in range(maps):
            table[reads[i : i + fan], k] = True
            assert len(set(reads[i : i + fan])) == fan
            i, k = i + fan, k + 1
    np.testing.assert_array_equal(table, tables.C3_TABLE)
    (bias,) = [n for n in g.node if n.name == "c3/biased"]
    np.testing.assert_array_equal(inits[bias.input[1]].reshape(16), model.params["c3.b"])


def test_metadata_holds_the_version_the_preprocessing_and_the_meta(small):
    model, path = small
    m = onnx.load(str(path))
    props = {p.key: p.value for p in m.metadata_props}
    assert props["lenet_fast.version"] == lenet_fast.__version__
    assert "-0.1 + 1.275*p/255" in props["lenet_fast.preprocessing"]
    assert "(N,1,32,32)" in props["lenet_fast.preprocessing"]
    assert json.loads(props["lenet_fast.meta"]) == model.meta
    assert json.loads(props["lenet_fast.options"]) == model.options
    assert model.meta["name"] == "mnist"
    assert (m.producer_name, m.producer_version) == ("lenet_fast", lenet_fast.__version__)


def test_the_batch_is_dynamic(small):
    model, path = small
    sess = session(path)
    x = preprocess(digits(5))
    want = model.forward(x)
    for n in (1, 2, 5):
        pen, label, proba = sess.run(None, {"x": x[:n]})
        assert pen.shape == (n, 10) and label.shape == (n,) and proba.shape == (n, 10)
        np.testing.assert_allclose(pen, want[:n], rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------ agreement on MNIST


@pytest.mark.slow
def test_onnx_runtime_agrees_with_the_model_on_the_mnist_test_set(exported, test_digits):
    model, path = exported
    te_x, _ = test_digits
    got = run(session(path), model.prepare(te_x))
    want = model.forward(te_x)
    assert got["penalties"].dtype == np.float32 and got["label"].dtype == np.int64
    np.testing.assert_array_equal(got["label"], model.predict(te_x))
    np.testing.assert_array_equal(got["label"], got["penalties"].argmin(axis=1))
    np.testing.assert_allclose(got["penalties"], want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got["proba"], model.predict_proba(te_x), rtol=0, atol=PROBA_ATOL)


@pytest.mark.slow
def test_the_float64_reference_agrees_with_the_graph(exported, test_digits):
    """The NumPy reference (float64 inside) is independent of the C++ kernels: the graph
    matches it too, on the first thousand test digits."""
    model, path = exported
    x = model.prepare(test_digits[0][:1000])
    ref = model.copy()
    ref.backend = "reference"
    got = run(session(path), x)
    np.testing.assert_allclose(got["penalties"], ref.forward(x), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("opset", OPSETS)
def test_the_uint8_graph_gives_the_float_graphs_outputs(tmp_path, test_digits, opset):
    model = LeNet5.pretrained("mnist-distorted")
    f = model.to_onnx(tmp_path / "f.onnx", opset=opset)
    u = model.to_onnx(tmp_path / "u.onnx", opset=opset, uint8_input=True)
    te_x = test_digits[0]
    sess = session(u)
    (x,) = sess.get_inputs()
    assert (x.type, x.shape) == ("tensor(uint8)", ["N", 28, 28])
    got = run(sess, te_x)
    want = run(session(f), preprocess(te_x))
    for name in ("penalties", "label", "proba"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    np.testing.assert_array_equal(got["label"], model.predict(te_x))


@pytest.mark.parametrize("subsample", ["mean", "sum"])
@pytest.mark.parametrize("rbf", ["fixed", "trainable"])
def test_every_option_exports_and_agrees(tmp_path, subsample, rbf):
    model = moved_model({"subsample": subsample, "rbf": rbf, "map_j": 3.0})
    x = digits(64, seed=1)
    got = run(session(model.to_onnx(tmp_path / "m.onnx", opset=13)), model.prepare(x))
    np.testing.assert_allclose(got["penalties"], model.forward(x), rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(got["label"], model.predict(x))
    np.testing.assert_allclose(got["proba"], model.predict_proba(x), rtol=0, atol=PROBA_ATOL)


def test_proba_is_eqs_9_posterior_for_input_near_no_code(tmp_path):
    """Large penalties (input far from every code) do not overflow the exponentials: the
    rubbish class takes the mass, as the model's predict_proba says."""
    model = LeNet5.pretrained("mnist")
    x = np.full((2, 1, 32, 32), 1.175, dtype=np.float32)  # all ink
    x[1] = -0.1  # no ink
    got = run(session(model.to_onnx(tmp_path / "m.onnx")), x)
    assert np.all(np.isfinite(got["proba"]))
    np.testing.assert_allclose(got["proba"], model.predict_proba(x), rtol=0, atol=PROBA_ATOL)


def test_the_module_function_is_the_method(tmp_path):
    model = moved_model({})
    a = export.to_onnx(model, tmp_path / "a.onnx", opset=13)
    b = model.to_onnx(tmp_path / "b.onnx", opset=13)
    assert a.read_bytes() == b.read_bytes()
    assert export.build_onnx(model, opset=13).SerializeToString() == a.read_bytes()


# ------------------------------------------------------------------ bad input


def test_an_opset_below_what_the_graph_needs_is_refused(tmp_path):
    model = LeNet5.pretrained("mnist")
    with pytest.raises(ValueError, match=r"opset: .*13.* got 12"):
        model.to_onnx(tmp_path / "m.onnx", opset=12)
    with pytest.raises(ValueError, match="opset: .*knows opsets up to"):
        model.to_onnx(tmp_path / "m.onnx", opset=onnx.defs.onnx_opset_version() + 1)
    with pytest.raises(TypeError, match="opset: expected an int, got str"):
        model.to_onnx(tmp_path / "m.onnx", opset="17")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="uint8_input: expected a bool"):
        model.to_onnx(tmp_path / "m.onnx", uint8_input=1)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_a_folder_and_another_extension_are_refused(tmp_path):
    model = LeNet5.pretrained("mnist")
    with pytest.raises(FileNotFoundError, match="path: the folder .*nowhere.* does not exist"):
        model.to_onnx(tmp_path / "nowhere" / "m.onnx")
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "d.onnx").mkdir()
    with pytest.raises(IsADirectoryError, match="path: .*d.onnx.* is a folder"):
        model.to_onnx(tmp_path / "d.onnx")
    with pytest.raises(ValueError, match="path: expected a file name ending in .onnx"):
        model.to_onnx(tmp_path / "m.pb")
    with pytest.raises(TypeError, match="path: expected a str or os.PathLike, got int"):
        model.to_onnx(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model: expected a lenet_fast.LeNet5, got dict"):
        export.to_onnx({}, tmp_path / "m.onnx")  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.onnx"]


def test_a_failed_export_leaves_the_previous_file_whole(tmp_path):
    model = LeNet5.pretrained("mnist")
    path = model.to_onnx(tmp_path / "m.onnx")
    before = path.read_bytes()
    bad = model.copy()
    bad.meta = {"not json": object()}
    with pytest.raises(TypeError, match="meta: expected a JSON-able dict"):
        bad.to_onnx(path)
    assert path.read_bytes() == before
    # a successful export over it replaces it whole, with no temporary file left behind
    moved_model({}).to_onnx(path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert path.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


# ------------------------------------------------------------------ the command line


def cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lenet_fast", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        cwd=cwd,
    )


@pytest.mark.slow
def test_the_command_exports_a_shipped_model_and_a_model_file(tmp_path):
    r = cli("export", "mnist-distorted", tmp_path / "a.onnx")
    assert r.returncode == 0, r.stderr
    assert str(tmp_path / "a.onnx") in r.stdout
    model = LeNet5.pretrained("mnist-distorted")
    x = digits(50, seed=2)
    got = run(session(tmp_path / "a.onnx"), preprocess(x))
    np.testing.assert_array_equal(got["label"], model.predict(x))

    trained = moved_model({"subsample": "sum"})
    trained.save(tmp_path / "m.npz")
    r = cli("export", tmp_path / "m.npz", tmp_path / "b.onnx", "--opset", "13", "--uint8-input")
    assert r.returncode == 0, r.stderr
    m = onnx.load(str(tmp_path / "b.onnx"))
    assert m.opset_import[0].version == 13
    got = run(session(tmp_path / "b.onnx"), x)
    np.testing.assert_allclose(got["penalties"], trained.forward(x), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_the_commands_errors(tmp_path):
    def error(r: subprocess.CompletedProcess, *words: str) -> None:
        assert r.returncode == 2, (r.returncode, r.stderr)
        assert "Traceback" not in r.stderr and "lenet-fast: error: " in r.stderr, r.stderr
        for w in words:
            assert w in r.stderr, (w, r.stderr)

    error(cli("export", "mnist", tmp_path / "m.pb"), "unknown extension '.pb'", ".onnx")
    error(cli("export", "mnist", tmp_path / "m"), "unknown extension '(none)'")
    error(cli("export", "mnist", tmp_path / "no" / "m.onnx"), "does not exist", "no")
    error(cli("export", "mnist", tmp_path / "m.onnx", "--opset", "12"), "opset", "12")
    error(cli("export", "nothing-such", tmp_path / "m.onnx"), "nothing-such")
    if not hasattr(export, "to_tflite"):
        error(cli("export", "mnist", tmp_path / "m.tflite"), ".tflite: not available")
    else:
        error(cli("export", "mnist", tmp_path / "m.tflite", "--opset", "13"), "--opset")
    assert list(tmp_path.iterdir()) == []

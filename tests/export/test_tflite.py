"""The LiteRT export: the file as the schema reads it back, and LiteRT's own interpreter
running it on the 10,000 MNIST test digits, with its default XNNPACK delegate and with
its builtin kernels only, against the model's C++ forward pass and the float64 reference."""

from __future__ import annotations

import json
import os
import platform
import sys

import numpy as np
import pytest

import lenet_fast
from conftest import TOL, moved_model
from lenet_fast import tables
from lenet_fast.tflite import to_tflite

# where the test extra installs ai-edge-litert (pyproject.toml's marker) it must import;
# elsewhere (no wheel for the platform) the module is skipped
if sys.platform == "linux" or (sys.platform == "darwin" and platform.machine() == "arm64"):
    import ai_edge_litert.interpreter as litert
    from ai_edge_litert import schema_py_generated as schema
else:  # pragma: no cover
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")

# The whole network against the model, as the kernel table's rule states it:
# |got - want| <= NET_TOL * max(1, max|want|). Its widest row (a float32 sum of a few thousand
# terms, plus a tanh of a few ulp) for the whole stack: XNNPACK sums in another order and
# has its own tanh, so the penalties agree to float32 rounding, not bit for bit.
NET_TOL = max(TOL.values())

# the builtin ops the XNNPACK delegate takes for float32 (those this graph may use)
XNNPACK_OPS = {
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "AVERAGE_POOL_2D",
    "MUL",
    "ADD",
    "SUB",
    "TANH",
    "FULLY_CONNECTED",
    "RESHAPE",
    "CONCATENATION",
    "SUM",
}
OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}

DEFAULT = litert.OpResolverType.AUTO
BUILTIN_ONLY = litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES

MODELS = {
    "mnist": lambda: lenet_fast.LeNet5.pretrained("mnist"),
    "mnist-distorted": lambda: lenet_fast.LeNet5.pretrained("mnist-distorted"),
    "rbf=trainable": lambda: moved_model({"rbf": "trainable"}),
    "subsample=sum": lambda: moved_model({"subsample": "sum"}),
}


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def run(path, x_nhwc: np.ndarray, resolver=DEFAULT):
    """The penalties LiteRT's interpreter gives for x (N,32,32,1), and the interpreter."""
    it = litert.Interpreter(
        model_path=str(path), experimental_op_resolver_type=resolver, num_threads=1
    )
    (inp,) = it.get_input_details()
    it.resize_tensor_input(inp["index"], list(x_nhwc.shape))
    it.allocate_tensors()
    it.set_tensor(inp["index"], x_nhwc)
    it.invoke()
    (out,) = it.get_output_details()
    return it.get_tensor(out["index"]), it


def read(path) -> object:
    return schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)


def assert_net_close(got: np.ndarray, want: np.ndarray, what: str) -> float:
    err = float(np.abs(got.astype(np.float64) - want).max())
    scale = max(1.0, float(np.abs(want).max()))
    assert err <= NET_TOL * scale, f"{what}: max error {err:.3g} > {NET_TOL:.1g} * {scale:.3g}"
    return err


def random_input(n: int, seed: int = 0) -> np.ndarray:
    digits = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    return lenet_fast.preprocess(digits)


# ---------------------------------------------------------------- the file itself


def test_the_file_reads_back_as_the_graph_described(tmp_path):
    m = lenet_fast.LeNet5.pretrained("mnist")
    path = to_tflite(m, tmp_path / "m.tflite")
    assert path == tmp_path / "m.tflite"
    data = path.read_bytes()
    assert data[4:8] == b"TFL3"
    model = read(path)
    (g,) = model.subgraphs
    ops = {OP_NAMES[model.operatorCodes[o.opcodeIndex].builtinCode] for o in g.operators}
    assert ops <= XNNPACK_OPS, ops - XNNPACK_OPS
    (x,), (y,) = g.inputs, g.outputs
    tx, ty = g.tensors[x], g.tensors[y]
    assert tx.name.decode() == "x" and ty.name.decode() == "penalties"
    assert list(tx.shapeSignature) == [-1, 32, 32, 1] and tx.type == schema.TensorType.FLOAT32
    assert list(ty.shapeSignature) == [-1, 10]
    (sig,) = model.signatureDefs
    assert sig.signatureKey.decode() == "serving_default"
    # constants start on 16-byte boundaries of the file, as the converter writes them
    for t in g.tensors:
        if t.buffer:
            payload = bytes(model.buffers[t.buffer].data)
            assert data.find(payload) % 16 == 0, t.name
    (md,) = model.metadata
    info = json.loads(bytes(model.buffers[md.buffer].data))
    assert md.name.decode() == "lenet_fast"
    assert info["lenet_fast_version"] == lenet_fast.__version__
    assert info["meta"] == m.meta and info["options"] == m.options
    assert "-0.1 + 1.275 * p / 255" in info["preprocessing"]


def test_the_weights_are_the_models(tmp_path):
    """Each constant is the model's array in TFLite's layout (OHWI kernels), C3's dense
    kernel holds the packed kernel of each Table I connection and zeros elsewhere."""
    m = moved_model({"subsample": "sum", "rbf": "trainable"})
    model = read(to_tflite(m, tmp_path / "m.tflite"))
    (g,) = model.subgraphs
    const = {
        t.name.decode(): np.frombuffer(bytes(model.buffers[t.buffer].data), np.float32).reshape(
            t.shape
        )
        for t in g.tensors
        if t.buffer and t.type == schema.TensorType.FLOAT32
    }
    p = m.params
    np.testing.assert_array_equal(const["c1.w"], p["c1.w"].transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(const["c5.w"], p["c5.w"].transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(const["f6.w"], p["f6.w"])
    np.testing.assert_array_equal(const["rbf.c"][0], m.centres)
    for name in ("c1", "c3", "c5"):
        np.testing.assert_array_equal(const[f"{name}.b"], p[f"{name}.b"])
    # "sum" mode: the block sum's coefficient is the stored one, on each of the 4 taps
    for s in ("s2", "s4"):
        np.testing.assert_array_equal(const[f"{s}.coef"][0, 1, 0], p[f"{s}.coef"])
        np.testing.assert_array_equal(const[f"{s}.bias"], p[f"{s}.bias"])
    c3 = const["c3.w"]  # (16,5,5,6)
    t = 0
    for k in range(16):
        for c in range(6):
            if tables.C3_TABLE[c, k]:
                np.testing.assert_array_equal(c3[k, :, :, c], p["c3.w"][t])
                t += 1
            else:
                assert not c3[k, :, :, c].any(), (k, c)
    assert t == 60


def test_mean_mode_folds_the_quarter_into_the_coefficient(tmp_path):
    m = moved_model({"subsample": "mean"})
    model = read(to_tflite(m, tmp_path / "m.tflite"))
    (g,) = model.subgraphs
    (t,) = [t for t in g.tensors if t.name.decode() == "s2.coef"]
    taps = np.frombuffer(bytes(model.buffers[t.buffer].data), np.float32).reshape(t.shape)
    np.testing.assert_array_equal(taps[0, 0, 0], m.params["s2.coef"] * np.float32(0.25))


# ---------------------------------------------------------------- the interpreter


@pytest.mark.parametrize("n", [1, 3, 17])
def test_the_batch_resizes(tmp_path, n):
    m = lenet_fast.LeNet5.pretrained("mnist")
    path = to_tflite(m, tmp_path / "m.tflite")
    x = random_input(n, seed=n)
    got, _ = run(path, nhwc(x))
    assert got.shape == (n, 10) and got.dtype == np.float32
    assert_net_close(got, m.forward(x), f"batch {n}")


def test_the_signature_runs(tmp_path):
    m = lenet_fast.LeNet5.pretrained("mnist-distorted")
    path = to_tflite(m, tmp_path / "m.tflite")
    x = random_input(4)
    it = litert.Interpreter(model_path=str(path), num_threads=1)
    out = it.get_signature_runner("serving_default")(x=nhwc(x))
    assert set(out) == {"penalties"}
    assert_net_close(out["penalties"], m.forward(x), "signature")


def test_xnnpack_takes_the_whole_graph(tmp_path):
    """With the default delegate one DELEGATE node replaces every op: it reads the input and
    the constants only and writes the penalties; with builtin kernels only there is none."""
    path = to_tflite(lenet_fast.LeNet5.pretrained("mnist"), tmp_path / "m.tflite")
    model = read(path)
    (g,) = model.subgraphs
    constants = {i for i, t in enumerate(g.tensors) if t.buffer}
    _, it = run(path, nhwc(random_input(2)))
    ops = it._get_ops_details()
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    assert len(ops) == len(g.operators) + 1 and len(delegates) == 1, ops
    (d,) = delegates
    assert set(d["inputs"]) - constants == set(g.inputs)
    assert list(d["outputs"]) == list(g.outputs)
    _, it = run(path, nhwc(random_input(2)), BUILTIN_ONLY)
    assert "DELEGATE" not in {o["op_name"] for o in it._get_ops_details()}


# ---------------------------------------------------------------- bad input


def test_bad_paths_write_nothing(tmp_path):
    m = lenet_fast.LeNet5.pretrained("mnist")
    with pytest.raises(FileNotFoundError, match="folder .*nowhere.* does not exist"):
        to_tflite(m, tmp_path / "nowhere" / "m.tflite")
    with pytest.raises(ValueError, match=r"path: expected a \.tflite file"):
        to_tflite(m, tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="path: expected a str or os.PathLike, got int"):
        to_tflite(m, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model: expected a lenet_fast.LeNet5, got dict"):
        to_tflite(m.params, tmp_path / "m.tflite")  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_a_failed_export_leaves_the_old_file(tmp_path):
    path = to_tflite(lenet_fast.LeNet5.pretrained("mnist"), tmp_path / "m.tflite")
    before = path.read_bytes()
    broken = lenet_fast.LeNet5.pretrained("mnist")
    broken.params["c5.w"] = broken.params["c5.w"][:, :8]
    with pytest.raises(ValueError, match=r"c5\.w has shape \(120, 8, 5, 5\)"):
        to_tflite(broken, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.tflite"]


# ---------------------------------------------------------------- MNIST's test digits


@pytest.fixture(scope="module")
def mnist_test(mnist_dir):
    _, _, te_x, _ = lenet_fast.load_mnist(mnist_dir)
    x = lenet_fast.preprocess(te_x)
    return x, nhwc(x)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mnist_test):
    """Each model, its file, its C++ penalties of the 10,000 test digits and the float64
    reference's of the first 1,000."""
    x, _ = mnist_test
    folder = tmp_path_factory.mktemp("tflite")
    out = {}
    for name, make in MODELS.items():
        m = make()
        ref = m.copy()
        ref.backend = "reference"
        y64 = ref.astype(np.float64).forward(x[:1000])
        out[name] = (m, to_tflite(m, folder / f"{name}.tflite"), m.forward(x), y64)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("resolver", [DEFAULT, BUILTIN_ONLY], ids=["xnnpack", "builtin"])
@pytest.mark.parametrize("name", list(MODELS))
def test_mnist_test_digits_agree(exported, mnist_test, name, resolver):
    """Every one of the 10,000 labels is the model's, the penalties within NET_TOL of the
    C++ forward pass and of the float64 reference (on the first 1,000: it is slow)."""
    m, path, want, want64 = exported[name]
    x, x_nhwc = mnist_test
    got, _ = run(path, x_nhwc, resolver)
    assert got.shape == (10_000, 10)
    labels = m.predict(x)
    np.testing.assert_array_equal(got.argmin(axis=1), labels)
    err = assert_net_close(got, want, f"{name} vs the C++ forward")
    err64 = assert_net_close(got[:1000], want64, f"{name} vs float64")
    print(
        f"{name} {resolver.name}: 10000/10000 labels, max |diff| {err:.3g} (C++), {err64:.3g} (float64, 1000 digits)"
    )


def test_the_command_line_exports_tflite(tmp_path):
    """``lenet-fast export NAME OUT.tflite``: the same file as to_tflite, and it runs."""
    import subprocess

    out = tmp_path / "m.tflite"
    r = subprocess.run(
        [sys.executable, "-m", "lenet_fast", "export", "mnist", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    model = lenet_fast.LeNet5.pretrained("mnist")
    to_tflite(model, tmp_path / "direct.tflite")
    assert out.read_bytes() == (tmp_path / "direct.tflite").read_bytes()
    x = random_input(5)
    assert np.array_equal(run(out, nhwc(x))[0].argmin(axis=1), model.predict(x))
    r = subprocess.run(
        [sys.executable, "-m", "lenet_fast", "export", "mnist", str(out), "--opset", "13"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "--opset and --uint8-input apply to .onnx" in r.stderr


def test_the_method_writes_the_same_file(tmp_path):
    model = moved_model({"subsample": "sum"})
    model.to_tflite(tmp_path / "a.tflite")
    to_tflite(model, tmp_path / "b.tflite")
    assert (tmp_path / "a.tflite").read_bytes() == (tmp_path / "b.tflite").read_bytes()

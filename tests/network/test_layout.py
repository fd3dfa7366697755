"""lenet_fast.layout, the one source of the parameter names and shapes, against what the
compiled module accepts and returns, and the counts derived from it."""

from __future__ import annotations

import numpy as np
import pytest

from lenet_fast import _core, layout, tables

TABLE = tables.C3_TABLE


def arrays(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: rng.uniform(-0.1, 0.1, s).astype(np.float32) for k, s in shapes.items()}


def centres() -> np.ndarray:
    return np.array(tables.RBF_CODES)


def x(n: int = 2) -> np.ndarray:
    return np.random.default_rng(1).uniform(-0.1, 1.175, (n, 1, 32, 32)).astype(np.float32)


def test_names_and_order():
    assert layout.PARAM_NAMES == (
        "c1.w",
        "c1.b",
        "s2.coef",
        "s2.bias",
        "c3.w",
        "c3.b",
        "s4.coef",
        "s4.bias",
        "c5.w",
        "c5.b",
        "f6.w",
        "f6.b",
    )
    assert list(layout.PARAM_SHAPES) == list(layout.PARAM_NAMES)
    assert layout.RBF_PARAM == "rbf.c" and layout.RBF_PARAM not in layout.PARAM_SHAPES
    assert list(layout.param_shapes(trainable_centres=True))[-1] == "rbf.c"


def test_layout_is_what_the_fused_forward_accepts():
    y = _core.network_forward(arrays(dict(layout.PARAM_SHAPES)), centres(), x(), TABLE, "mean")
    assert y.shape == (2, 10) and np.isfinite(y).all()


@pytest.mark.parametrize("name", layout.PARAM_NAMES)
def test_the_fused_forward_rejects_every_other_shape(name):
    shape = layout.PARAM_SHAPES[name]
    wrong = [shape[:-1] + (shape[-1] + 1,), shape + (1,)]
    if len(shape) > 1:
        wrong += [shape[:-1], (shape[0] + 1,) + shape[1:]]
    for bad in wrong:
        p = arrays({**layout.PARAM_SHAPES, name: bad})
        with pytest.raises(ValueError, match=f"params\\['{name}'\\]"):
            _core.network_forward(p, centres(), x(), TABLE, "mean")
    p = arrays(dict(layout.PARAM_SHAPES))
    del p[name]
    with pytest.raises(ValueError, match=f"missing '{name}'"):
        _core.network_forward(p, centres(), x(), TABLE, "mean")


def test_the_fused_forward_rejects_other_names():
    p = arrays(dict(layout.PARAM_SHAPES))
    p["c1_w"] = p.pop("c1.w")
    with pytest.raises(ValueError, match="unexpected key 'c1_w'"):
        _core.network_forward(p, centres(), x(), TABLE, "mean")
    with pytest.raises(ValueError, match="centres: expected \\(10,84\\)"):
        narrow = centres()[:, :83].copy()
        _core.network_forward(arrays(dict(layout.PARAM_SHAPES)), narrow, x(), TABLE, "mean")


@pytest.mark.parametrize("trainable_centres", [False, True])
def test_fused_gradients_come_back_in_the_layout(trainable_centres):
    p = arrays(dict(layout.PARAM_SHAPES))
    _, _, g, _ = _core.network_gradients(
        p, centres(), x(), np.array([3, 7]), TABLE, "map", 1.0, 5.0, "mean", trainable_centres
    )
    want = layout.param_shapes(trainable_centres=trainable_centres)
    assert {k: v.shape for k, v in g.items()} == want
    assert all(v.dtype == np.float32 for v in g.values())


def test_parameter_counts_are_the_papers():
    # the paper, section II-B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164
    assert layout.count_parameters() == {
        "C1": 156,
        "S2": 12,
        "C3": 1516,
        "S4": 32,
        "C5": 48120,
        "F6": 10164,
        "total": 60000,
    }
    assert layout.count_parameters(trainable_centres=True)["RBF"] == 840
    assert layout.count_parameters(trainable_centres=True)["total"] == 60840
    assert layout.C3_CONNECTIONS == 60


def test_multiply_adds_per_image():
    # counted by hand, layer by layer: see the docstring of layout._macs_per_image
    forward = 117_600 + 1_176 + 150_000 + 400 + 48_000 + 10_080 + 840
    assert layout.MACS_PER_IMAGE["infer"] == forward == 328_096
    backward = 2 * (150_000 + 48_000 + 10_080) + 117_600 + 2 * (1_176 + 400) + 840
    assert layout.MACS_PER_IMAGE["train"] == forward + backward == 865_848


def test_layout_is_read_only():
    with pytest.raises(TypeError):
        layout.PARAM_SHAPES["c1.w"] = (1,)  # type: ignore[index]
    with pytest.raises(TypeError):
        layout.MACS_PER_IMAGE["infer"] = 0  # type: ignore[index]

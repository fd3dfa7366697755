"""The parameters of LeNet-5: their names, shapes and order, and the network's size.

This is the one place the layout is written. The model, the checkpoint format, the fused
C++ network's Python face and the benchmarks read it from here; ``tests/network/test_layout.py``
checks it against what the compiled module accepts.

Names are ``layer.part``: ``w`` (weights), ``b`` (biases of a convolution or full
connection), ``coef`` and ``bias`` (the trainable coefficient and bias of a subsampling
layer), ``c`` (the RBF centres). C3's kernels are packed: one 5x5 kernel per connection of
Table I (:data:`lenet_fast.tables.C3_TABLE`, 60 of them), ordered by output map, then input
map.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from . import tables

__all__ = [
    "C3_CONNECTIONS",
    "MACS_PER_IMAGE",
    "PARAM_NAMES",
    "PARAM_SHAPES",
    "RBF_PARAM",
    "RBF_SHAPE",
    "count_parameters",
    "param_shapes",
]

#: The connections of C3 (Table I): one packed 5x5 kernel each.
C3_CONNECTIONS: int = int(tables.C3_TABLE.sum())

#: Every trainable array except the RBF centres, in the fixed order, with its shape.
PARAM_SHAPES: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "c1.w": (6, 1, 5, 5),
        "c1.b": (6,),
        "s2.coef": (6,),
        "s2.bias": (6,),
        "c3.w": (C3_CONNECTIONS, 5, 5),
        "c3.b": (16,),
        "s4.coef": (16,),
        "s4.bias": (16,),
        "c5.w": (120, 16, 5, 5),
        "c5.b": (120,),
        "f6.w": (84, 120),
        "f6.b": (84,),
    }
)
#: The names of :data:`PARAM_SHAPES`, in order.
PARAM_NAMES: tuple[str, ...] = tuple(PARAM_SHAPES)

#: The RBF centres: a parameter (after the others) only when they are trained.
RBF_PARAM = "rbf.c"
#: Ten centres (one per digit) of 84 values (a 7x12 bitmap).
RBF_SHAPE: tuple[int, int] = (10, 84)


def param_shapes(*, trainable_centres: bool = False) -> dict[str, tuple[int, ...]]:
    """The trainable arrays in order, with :data:`RBF_PARAM` last when the centres train."""
    shapes = dict(PARAM_SHAPES)
    if trainable_centres:
        shapes[RBF_PARAM] = RBF_SHAPE
    return shapes


def count_parameters(*, trainable_centres: bool = False) -> dict[str, int]:
    """Trainable parameters per layer ("C1" ... "F6", "RBF" when the centres train) and their
    total under "total": 60,000 (60,840 with trainable centres)."""
    counts: dict[str, int] = {}
    for name, shape in param_shapes(trainable_centres=trainable_centres).items():
        layer = name.split(".")[0].upper()
        size = 1
        for d in shape:
            size *= d
        counts[layer] = counts.get(layer, 0) + size
    counts["total"] = sum(counts.values())
    return counts


def _macs_per_image() -> dict[str, int]:
    """Multiply-adds per image, counted from the layer shapes (C3 sparse: 60 kernels).

    Inference: each convolution or full connection does one multiply-add per weight per
    output position (C1: 6x28x28 outputs x 25, C3: 60 kernels x 10x10 x 25, C5: 120 x 16x25,
    F6: 84 x 120), a subsampling layer one per output (S2: 6x14x14, S4: 16x5x5), the RBF one
    per centre value (10 x 84): 328,096. A training step adds, per forward multiply-add, one
    for the input gradient and one for the weight gradient of C3, C5 and F6, one for the
    weight gradient of C1 (its input gradient is not needed), two per subsampled output
    (the coefficient's and the input's gradient) and the RBF's input gradient (10 x 84):
    865,848 in all. The parameter update is not counted.
    """
    _, _, r, s = PARAM_SHAPES["c1.w"]
    c1 = 6 * 28 * 28 * r * s
    c3 = C3_CONNECTIONS * 10 * 10 * r * s
    k5, c5_in, r5, s5 = PARAM_SHAPES["c5.w"]
    c5 = k5 * c5_in * r5 * s5
    f6_out, f6_in = PARAM_SHAPES["f6.w"]
    f6 = f6_out * f6_in
    s2, s4 = 6 * 14 * 14, 16 * 5 * 5
    rbf = RBF_SHAPE[0] * RBF_SHAPE[1]
    infer = c1 + s2 + c3 + s4 + c5 + f6 + rbf
    train = infer + 2 * (c3 + c5 + f6) + c1 + 2 * (s2 + s4) + rbf
    return {"infer": infer, "train": train}


#: Multiply-adds of one image: a forward pass ("infer") and a training step ("train").
MACS_PER_IMAGE: Mapping[str, int] = MappingProxyType(_macs_per_image())

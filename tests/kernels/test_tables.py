"""Tests of the fixed LeNet-5 tables (lenet_fast.tables): Table I and the RBF codes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lenet_fast import tables
from lenet_fast.tables import C3_TABLE, RBF_CODES


def _inputs_of(k: int) -> set[int]:
    """The S2 maps that C3 map k reads."""
    return {int(c) for c in np.flatnonzero(C3_TABLE[:, k])}


def _cyclic_run(start: int, length: int, n: int = 6) -> set[int]:
    return {(start + i) % n for i in range(length)}


# --------------------------------------------------------------------------- C3 table


def test_c3_table_shape_and_count() -> None:
    assert C3_TABLE.shape == (6, 16)
    assert C3_TABLE.dtype == np.bool_
    assert int(C3_TABLE.sum()) == 60


def test_c3_table_column_sums() -> None:
    assert C3_TABLE.sum(axis=0).tolist() == [3] * 6 + [4] * 9 + [6]


@pytest.mark.parametrize("k", range(6))
def test_c3_maps_0_to_5_read_three_contiguous(k: int) -> None:
    assert _inputs_of(k) == _cyclic_run(k, 3)


@pytest.mark.parametrize("k", range(6, 12))
def test_c3_maps_6_to_11_read_four_contiguous(k: int) -> None:
    assert _inputs_of(k) == _cyclic_run(k - 6, 4)


@pytest.mark.parametrize(
    ("k", "expected"), [(12, {0, 1, 3, 4}), (13, {1, 2, 4, 5}), (14, {0, 2, 3, 5})]
)
def test_c3_maps_12_to_14_read_four_discontinuous(k: int, expected: set[int]) -> None:
    got = _inputs_of(k)
    assert got == expected
    assert all(got != _cyclic_run(start, 4) for start in range(6))


def test_c3_map_15_reads_all() -> None:
    assert _inputs_of(15) == set(range(6))


def test_c3_parameter_and_connection_counts() -> None:
    n_kernels, kernel_area, n_maps, map_area = (
        int(C3_TABLE.sum()),
        5 * 5,
        C3_TABLE.shape[1],
        10 * 10,
    )
    params = n_kernels * kernel_area + n_maps  # one 5x5 kernel per connection + one bias per map
    assert params == 60 * 25 + 16 == 1_516
    assert params * map_area == 151_600  # SPEC section 2


def test_c3_table_text_round_trips() -> None:
    assert tables.table_to_string(C3_TABLE) == "\n".join(tables.C3_TABLE_TEXT)
    assert tables.C3_TABLE_TEXT[0] == "X...XXX..XXXX.XX"


# --------------------------------------------------------------------------- RBF codes


def test_rbf_codes_shape_dtype_values() -> None:
    assert RBF_CODES.shape == (10, 84)
    assert RBF_CODES.dtype == np.float32
    assert set(np.unique(RBF_CODES).tolist()) == {-1.0, 1.0}


def test_rbf_codes_pairwise_distinct() -> None:
    for i, j in itertools.combinations(range(10), 2):
        assert not np.array_equal(RBF_CODES[i], RBF_CODES[j]), (i, j)


def test_rbf_code_text_layout() -> None:
    assert len(tables.RBF_CODE_TEXT) == 10
    for rows in tables.RBF_CODE_TEXT:
        assert len(rows) == 12
        assert all(len(r) == 7 and set(r) <= {"#", "."} for r in rows)


def test_rbf_codes_are_row_major_bitmaps() -> None:
    # Digit 1, row 9 (0-based) is the base of the "1": ".######".
    row = RBF_CODES[1].reshape(12, 7)[9]
    assert row.tolist() == [-1.0] + [1.0] * 6
    # Index 7 * row + column: digit 7's top bar is the first 7 entries.
    assert RBF_CODES[7, :7].tolist() == [1.0] * 7
    for d in range(10):
        drawn = tables.table_to_string(RBF_CODES[d].reshape(12, 7) > 0, "#", ".")
        assert drawn == "\n".join(tables.RBF_CODE_TEXT[d])


# --------------------------------------------------------------------------- read-only


@pytest.mark.parametrize("name", ["C3_TABLE", "RBF_CODES"])
def test_arrays_are_read_only(name: str) -> None:
    arr = getattr(tables, name)
    assert not arr.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        arr[0, 0] = arr[0, 1]

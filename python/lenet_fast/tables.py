"""Fixed tables of LeNet-5.

Source: Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-Based Learning
Applied to Document Recognition", Proc. IEEE 86(11):2278-2324, 1998.

* ``C3_TABLE`` is Table I of the paper: which S2 feature maps (rows) each C3 feature
  map (columns) reads. ``C3_TABLE[c, k]`` is True when C3 map ``k`` is connected to
  S2 map ``c``; there are 60 connections.
* ``RBF_CODES`` are the fixed centres of the Euclidean RBF output layer (Eq. 7,
  Fig. 3): one stylised 7x12 bitmap per digit, ``#`` = +1 and ``.`` = -1, flattened
  row-major over the 12 rows of 7 pixels into 84 values. The transcription is this
  project's reading of Fig. 3; the top bar on 0, 2, 4 and 5 may be an
  artefact of that transcription, and the codes are data that can be swapped.

Both arrays are read-only. The literals they are built from (``C3_TABLE_TEXT`` and
``RBF_CODE_TEXT``) are kept so that a reader can check them against the paper by eye.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "C3_TABLE",
    "C3_TABLE_TEXT",
    "RBF_CODES",
    "RBF_CODES_NO_TOP_BAR",
    "RBF_CODE_TEXT",
    "RBF_COLS",
    "RBF_ROWS",
    "TOP_BAR_DIGITS",
    "table_to_string",
]

# Table I. Rows: S2 map 0..5; columns: C3 map 0..15; "X" = connected.
#                     C3 map: 0123456789012345
C3_TABLE_TEXT: tuple[str, ...] = (
    "X...XXX..XXXX.XX",  # S2 map 0
    "XX...XXX..XXXX.X",  # S2 map 1
    "XXX...XXX..X.XXX",  # S2 map 2
    ".XXX..XXXX..X.XX",  # S2 map 3
    "..XXX..XXXX.XX.X",  # S2 map 4
    "...XXX..XXXX.XXX",  # S2 map 5
)

RBF_ROWS = 12
RBF_COLS = 7

# Fig. 3: one 12-row by 7-column bitmap per digit; "#" = +1, "." = -1.
RBF_CODE_TEXT: tuple[tuple[str, ...], ...] = (
    (  # digit 0
        ".#####.",
        ".......",
        "..###..",
        ".##.##.",
        "##...##",
        "##...##",
        "##...##",
        "##...##",
        ".##.##.",
        "..###..",
        ".......",
        ".......",
    ),
    (  # digit 1
        "...##..",
        "..###..",
        ".####..",
        "...##..",
        "...##..",
        "...##..",
        "...##..",
        "...##..",
        "...##..",
        ".######",
        ".......",
        ".......",
    ),
    (  # digit 2
        ".#####.",
        ".......",
        ".#####.",
        "##...##",
        "#....##",
        "....##.",
        "..###..",
        ".##....",
        "##.....",
        "#######",
        ".......",
        ".......",
    ),
    (  # digit 3
        "#######",
        ".....##",
        "....##.",
        "...##..",
        "..####.",
        ".....##",
        ".....##",
        ".....##",
        "##...##",
        ".#####.",
        ".......",
        ".......",
    ),
    (  # digit 4
        ".#####.",
        ".......",
        ".......",
        ".##..##",
        ".##..##",
        "###..##",
        "##...##",
        "##...##",
        "##..###",
        ".######",
        ".....##",
        ".....##",
    ),
    (  # digit 5
        ".#####.",
        ".......",
        "#######",
        "##.....",
        "##.....",
        ".####..",
        "..####.",
        ".....##",
        "##...##",
        ".#####.",
        ".......",
        ".......",
    ),
    (  # digit 6
        "..####.",
        ".##....",
        "##.....",
        "##.....",
        "######.",
        "###..##",
        "##...##",
        "##...##",
        "###..##",
        ".#####.",
        ".......",
        ".......",
    ),
    (  # digit 7
        "#######",
        ".....##",
        ".....##",
        "....##.",
        "...##..",
        "...##..",
        "..##...",
        "..##...",
        "..##...",
        "..##...",
        ".......",
        ".......",
    ),
    (  # digit 8
        ".#####.",
        "##...##",
        "##...##",
        "##...##",
        ".#####.",
        "##...##",
        "##...##",
        "##...##",
        "##...##",
        ".#####.",
        ".......",
        ".......",
    ),
    (  # digit 9
        ".#####.",
        "##..###",
        "##...##",
        "##...##",
        "##..###",
        ".######",
        ".....##",
        ".....##",
        "....##.",
        ".####..",
        ".......",
        ".......",
    ),
)


def _parse_bool_rows(
    rows: tuple[str, ...], true_char: str, false_char: str
) -> npt.NDArray[np.bool_]:
    """Turn equal-length strings of ``true_char``/``false_char`` into a 2-D bool array."""
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"rows of unequal length: {rows!r}")
    bad = set("".join(rows)) - {true_char, false_char}
    if bad:
        raise ValueError(f"unexpected characters {sorted(bad)!r} in {rows!r}")
    return np.array([[ch == true_char for ch in r] for r in rows], dtype=bool)


def _read_only(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a.flags.writeable = False
    return a


def table_to_string(table: npt.ArrayLike, true_char: str = "X", false_char: str = ".") -> str:
    """Render a 2-D boolean array as lines of ``true_char``/``false_char``.

    ``table_to_string(C3_TABLE)`` gives back the rows of ``C3_TABLE_TEXT``, and
    ``table_to_string(RBF_CODES[d].reshape(12, 7) > 0, "#")`` draws digit ``d``'s code.
    """
    t = np.asarray(table)
    if t.ndim != 2:
        raise ValueError(f"table: expected a 2-D array, got shape {t.shape}")
    return "\n".join("".join(true_char if v else false_char for v in row) for row in t.astype(bool))


#: Table I as a read-only (6, 16) bool array: ``C3_TABLE[c, k]`` connects S2 map c to C3 map k.
C3_TABLE: npt.NDArray[np.bool_] = _read_only(_parse_bool_rows(C3_TABLE_TEXT, "X", "."))

#: The ten RBF centres as a read-only (10, 84) float32 array of +1/-1,
#: row-major over each 12x7 bitmap (index = 7 * row + column).
RBF_CODES: npt.NDArray[np.float32] = _read_only(
    np.stack(
        [
            np.where(_parse_bool_rows(rows, "#", "."), 1.0, -1.0).astype(np.float32).reshape(-1)
            for rows in RBF_CODE_TEXT
        ]
    )
)

#: Digits whose transcribed code starts with a bar separated from the glyph by an empty row.
TOP_BAR_DIGITS: tuple[int, ...] = (0, 2, 4, 5)


def _without_top_bar(codes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    c = codes.reshape(10, RBF_ROWS, RBF_COLS).copy()
    for d in TOP_BAR_DIGITS:
        assert (c[d, 1] == -1).all(), "the bar is followed by an empty row"
        c[d, 0] = -1.0
    return c.reshape(10, RBF_ROWS * RBF_COLS)


#: ``RBF_CODES`` with the first row of digits 0, 2, 4 and 5 cleared. In the transcription
#: that bar stands apart from the glyph, above an empty row: likely an artefact of the
#: transcription. Without it the codes are further apart on average (mean Hamming distance
#: between two codes 33.0 instead of 31.1; the smallest stays 12).
RBF_CODES_NO_TOP_BAR: npt.NDArray[np.float32] = _read_only(_without_top_bar(RBF_CODES))

if C3_TABLE.shape != (6, 16) or RBF_CODES.shape != (10, RBF_ROWS * RBF_COLS):  # pragma: no cover
    raise AssertionError("malformed LeNet-5 table literals")

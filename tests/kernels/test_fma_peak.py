"""_core.fma_peak: the measured fp32 multiply-add rate of one thread, on every ISA, against
what the hardware can do at most, the AVX2 path against the scalar one, and its argument
checks. The machine may be busy: every bound leaves a wide margin."""

from __future__ import annotations

import math
import time

import pytest

import lenet_fast
from conftest import ticks_during
from lenet_fast import _core

# floats per multiply-add instruction of each path (ymm for AVX2, one float for scalar)
LANES = {"scalar": 1, "avx2": 8}
# no x86 or ARM core issues more than 4 vector multiply-adds (or multiply + add pairs'
# worth) per cycle, nor runs one thread above 6 GHz
MAX_MACS_PER_LANE = 4 * 6e9


def test_the_rate_is_positive_finite_and_below_the_hardware_bound(isa):
    t0 = time.perf_counter()
    rate = _core.fma_peak(0.05)
    took = time.perf_counter() - t0
    assert math.isfinite(rate) and rate > 0
    assert rate <= LANES[isa] * MAX_MACS_PER_LANE, f"{isa}: {rate:.3g} MACs/s"
    # a floor too: one multiply-add per lane every 20 ns even on a slow, busy core
    assert rate >= LANES[isa] * 5e7, f"{isa}: {rate:.3g} MACs/s"
    # it runs for the time asked (plus a warm-up of well under a millisecond per call)
    assert 0.05 <= took < 2.0


@pytest.mark.skipif("avx2" not in lenet_fast.available_isas(), reason="no AVX2+FMA on this CPU")
def test_the_avx2_peak_is_well_above_the_scalar_rate():
    """8 lanes per FMA against one float per multiply and add: 8x to 16x on current cores.
    The best of three tries each, interleaved, so a busy spell of the machine hits both."""
    before = lenet_fast.get_isa()
    best = {"scalar": 0.0, "avx2": 0.0}
    try:
        for _ in range(3):
            for isa in best:
                lenet_fast.set_isa(isa)
                best[isa] = max(best[isa], _core.fma_peak(0.03))
    finally:
        lenet_fast.set_isa(before)
    assert best["avx2"] >= 2 * best["scalar"], best


@pytest.mark.parametrize("bad", [-1.0, 0.0, math.nan, math.inf, -math.inf])
def test_a_bad_duration_is_a_value_error_naming_it(bad):
    with pytest.raises(ValueError, match=r"seconds: expected a finite duration > 0, got "):
        _core.fma_peak(bad)


def test_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError):
        _core.fma_peak("1")  # type: ignore[arg-type]


def test_it_releases_the_gil():
    """A pure-Python thread keeps running while another thread measures."""
    during = ticks_during(lambda: _core.fma_peak(0.2))
    # with the GIL held for the whole call the spinner could not advance at all
    assert during > 1000, f"the spinner advanced {during} times in 0.2 s"

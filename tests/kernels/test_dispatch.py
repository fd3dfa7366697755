"""ISA dispatch: LENET_FAST_ISA at import, set_isa at run time, and lenet_fast.info()."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import lenet_fast


def run_python(code: str, isa: str | None):
    env = dict(os.environ)
    env.pop("LENET_FAST_ISA", None)
    if isa is not None:
        env["LENET_FAST_ISA"] = isa
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("isa", lenet_fast.available_isas())
def test_env_var_selects_the_isa(isa):
    r = run_python("import lenet_fast; print(lenet_fast.get_isa())", isa)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == isa


def test_auto_and_unset_pick_the_best_available():
    best = lenet_fast.available_isas()[-1]
    for value in ("auto", None, ""):
        r = run_python("import lenet_fast; print(lenet_fast.get_isa())", value)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == best


def test_unknown_isa_in_env_is_a_clear_import_error():
    r = run_python("import lenet_fast", "avx512")
    assert r.returncode != 0
    assert "ImportError: LENET_FAST_ISA='avx512'" in r.stderr
    assert "expected one of 'scalar', 'avx2', 'auto'" in r.stderr


def test_set_isa_round_trip_and_errors():
    before = lenet_fast.get_isa()
    try:
        for isa in lenet_fast.available_isas():
            lenet_fast.set_isa(isa)
            assert lenet_fast.get_isa() == isa
        with pytest.raises(
            ValueError, match="expected one of 'scalar', 'avx2', 'auto', got 'neon'"
        ):
            lenet_fast.set_isa("neon")
        with pytest.raises(TypeError, match="name: expected a str"):
            lenet_fast.set_isa(2)
        if "avx2" not in lenet_fast.available_isas():
            with pytest.raises(ValueError, match="avx2"):
                lenet_fast.set_isa("avx2")
    finally:
        lenet_fast.set_isa(before)


def test_this_machine_runs_avx2():
    """The development machines and CI are AVX2+FMA CPUs: the fast path must be there, and
    auto must choose it (a silent fall-back to scalar would hide a build problem)."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    if " avx2" not in flags or " fma" not in flags:
        pytest.skip("this CPU has no AVX2+FMA")
    assert "avx2" in lenet_fast.info()["compiled_isas"]
    assert lenet_fast.available_isas() == ["scalar", "avx2"]


def test_info_reports_isa_compiler_threads():
    info = lenet_fast.info()
    assert info["isa"] == lenet_fast.get_isa()
    assert info["isa"] in info["available_isas"]
    assert set(info["available_isas"]) <= set(info["compiled_isas"])
    assert info["compiler"] and info["compiler"] != "unknown"
    assert info["num_threads"] == lenet_fast.get_num_threads() >= 1
    assert info["version"] == lenet_fast.__version__

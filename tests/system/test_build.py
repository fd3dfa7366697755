"""The binary and the Python face: AVX2 code only where it belongs, honest stubs."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import lenet_fast
from lenet_fast import _core, kernels, reference

# AVX/VEX instructions start with 'v' (vmovups, vfmadd231ps, vzeroupper, ...); baseline
# x86-64 code has none. These mnemonics start with 'v' but are not AVX.
NOT_AVX = {"verr", "verw", "vmcall", "vmlaunch", "vmresume", "vmxoff", "vmxon", "vmread", "vmwrite"}


@pytest.mark.skipif(shutil.which("objdump") is None, reason="binutils objdump not installed")
def test_avx_instructions_only_in_the_avx2_namespace():
    """A global -mavx2, or an inline function compiled in the AVX2 file and shared with the
    baseline code, would put AVX instructions outside lenet_fast::avx2 and crash CPUs
    without AVX2. Disassemble the module and check every function."""
    if "avx2" not in lenet_fast.info()["compiled_isas"]:
        pytest.skip("no AVX2 path in this build")
    out = subprocess.run(
        ["objdump", "-d", "-C", "--no-show-raw-insn", _core.__file__],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    func, offenders, avx_funcs = None, set(), set()
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            func = m.group(1)
            continue
        parts = line.split("\t")
        if func is None or len(parts) < 2:
            continue
        mnemonic = parts[1].split()[0] if parts[1].split() else ""
        if mnemonic.startswith("v") and mnemonic not in NOT_AVX:
            if "lenet_fast::avx2::" in func:
                avx_funcs.add(func)
            else:
                offenders.add(func)
    assert avx_funcs, "found no AVX code at all: is the AVX2 file compiled?"
    assert not offenders, f"AVX instructions outside lenet_fast::avx2: {sorted(offenders)[:10]}"


def stub_names() -> set[str]:
    tree = ast.parse((Path(lenet_fast.__file__).parent / "_core.pyi").read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_core_stub_lists_every_function():
    public = {n for n in dir(_core) if not n.startswith("_")}
    assert public == stub_names(), (
        f"missing from _core.pyi: {public - stub_names()}; stale: {stub_names() - public}"
    )


def test_kernels_and_reference_have_the_same_api():
    import inspect

    for name in kernels.__all__:
        k, r = getattr(kernels, name), getattr(reference, name)
        assert list(inspect.signature(k).parameters) == list(inspect.signature(r).parameters), name
        assert k.__doc__ and "(" in k.__doc__, f"{name} needs a docstring with shapes"
    assert set(kernels.__all__) <= set(reference.__all__)
    assert (Path(lenet_fast.__file__).parent / "py.typed").exists()

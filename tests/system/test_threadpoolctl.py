"""threadpoolctl limits lenet_fast's kernel threads: the controller runtime.py registers.

Each import-order case runs in a fresh interpreter, since the order of imports and the
loaded libraries are process state."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import threadpoolctl

import lenet_fast
from lenet_fast import _core


def ours(info: list[dict]) -> list[dict]:
    return [d for d in info if d["internal_api"] == "lenet_fast"]


@pytest.fixture
def three_threads():
    """A thread count other than 1 and than the default, restored afterwards."""
    before = lenet_fast.get_num_threads()
    lenet_fast.set_num_threads(3)
    yield 3
    lenet_fast.set_num_threads(before)


def test_info_lists_lenet_fast(three_threads):
    (entry,) = ours(threadpoolctl.threadpool_info())
    assert entry["num_threads"] == 3 == lenet_fast.get_num_threads()
    assert entry["user_api"] == "openmp" and entry["prefix"] == "_core"
    assert entry["version"] == lenet_fast.__version__
    assert os.path.samefile(entry["filepath"], _core.__file__)


def test_limits_inside_the_block_and_restores_after(three_threads):
    x = np.random.default_rng(0).integers(0, 256, (96, 28, 28), dtype=np.uint8)
    model = lenet_fast.LeNet5(seed=1)
    want = model.forward(x)
    with threadpoolctl.threadpool_limits(1):
        assert lenet_fast.get_num_threads() == 1
        assert ours(threadpoolctl.threadpool_info())[0]["num_threads"] == 1
        got = model.forward(x)
    assert lenet_fast.get_num_threads() == 3
    np.testing.assert_array_equal(got, want)  # the same bits on one thread as on three


def test_user_api_openmp_limits_it_and_blas_does_not(three_threads):
    with threadpoolctl.threadpool_limits(2, user_api="openmp"):
        assert lenet_fast.get_num_threads() == 2
    assert lenet_fast.get_num_threads() == 3
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert lenet_fast.get_num_threads() == 3
    only_ours = threadpoolctl.ThreadpoolController().select(internal_api="lenet_fast")
    with only_ours.limit(limits=1):
        assert lenet_fast.get_num_threads() == 1
    assert lenet_fast.get_num_threads() == 3


def test_the_controller_api(three_threads):
    (c,) = threadpoolctl.ThreadpoolController().select(internal_api="lenet_fast").lib_controllers
    c.set_num_threads(2)
    assert c.get_num_threads() == 2 == lenet_fast.get_num_threads()
    c.set_num_threads(0)  # ignored by the C function: no exception through ctypes
    assert lenet_fast.get_num_threads() == 2


def run_python(*code: str) -> str:
    """Run the pieces of code (each dedented) in a fresh interpreter; its stdout."""
    r = subprocess.run(
        [sys.executable, "-c", "".join(textwrap.dedent(c) for c in code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


CHECK = """
    with threadpoolctl.threadpool_limits(1):
        assert lenet_fast.get_num_threads() == 1
    assert lenet_fast.get_num_threads() == 4
    assert [d["num_threads"] for d in threadpoolctl.threadpool_info()
            if d["internal_api"] == "lenet_fast"] == [4]
    print("ok")
"""


def test_threadpoolctl_imported_and_used_before_lenet_fast():
    out = run_python(
        """
        import threadpoolctl
        assert not [d for d in threadpoolctl.threadpool_info() if d["internal_api"] == "lenet_fast"]
        with threadpoolctl.threadpool_limits(1):
            pass
        import lenet_fast
        lenet_fast.set_num_threads(4)
        """,
        CHECK,
    )
    assert out.strip() == "ok"


def test_threadpoolctl_imported_after_lenet_fast():
    out = run_python(
        """
        import lenet_fast
        lenet_fast.set_num_threads(4)
        import threadpoolctl
        """,
        CHECK,
    )
    assert out.strip() == "ok"


def test_without_threadpoolctl_lenet_fast_still_imports():
    out = run_python(
        """
        import sys
        sys.modules["threadpoolctl"] = None  # as if it were not installed
        import lenet_fast
        lenet_fast.set_num_threads(2)
        print(lenet_fast.get_num_threads())
        """
    )
    assert out.strip() == "2"


def test_another_packages_core_is_not_ours(tmp_path):
    """A shared library named _core.*.so without lenet_fast's symbols is not listed."""
    cc = os.environ.get("CC", "cc")
    src = tmp_path / "other.c"
    src.write_text(
        "int get_num_threads(void) { return 7; }\nint PyInit__core(void) { return 0; }\n"
    )
    lib = tmp_path / "otherpkg" / "_core.cpython-3xx-test.so"
    lib.parent.mkdir()
    try:
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"no C compiler to build a foreign _core ({e})")
    out = run_python(
        f"""
        import ctypes
        ctypes.CDLL({str(lib)!r})  # loaded first, so threadpoolctl sees it first
        import lenet_fast, threadpoolctl
        found = [d for d in threadpoolctl.threadpool_info() if d["prefix"] == "_core"]
        print(len(found), found[0]["internal_api"], found[0]["filepath"])
        """
    )
    n, api, path = out.split()
    assert (n, api) == ("1", "lenet_fast")
    assert Path(path).samefile(_core.__file__)

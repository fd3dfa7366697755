#!/usr/bin/env bash
# Build lenet_fast with AddressSanitizer + UndefinedBehaviorSanitizer (CMake option
# LENET_FAST_SANITIZE=ON, preset "sanitize" in CMakePresets.json) into its own build folder
# and its own virtual environment, then run the test suite under it.
#
#   bash tests/sanitize.sh                 # kernels, network, model, threads, fuzz (the default)
#   bash tests/sanitize.sh tests           # the whole suite
#   bash tests/sanitize.sh tests/system/test_fuzz.py -k conv2d   # any pytest arguments
#
# Environment: SANITIZE_DIR (default ${TMPDIR:-/tmp}/lenet-fast-asan) holds the venv and
# the build tree; LENET_FAST_DATA as for the normal suite.
#
# Python itself is not instrumented, so the ASan runtime must be loaded first (LD_PRELOAD),
# and leak detection is off (CPython's allocator keeps memory until exit, which LeakSanitizer
# would report; tests/system/test_leaks.py checks leaks by RSS instead). Any ASan or UBSan report
# aborts the process (halt_on_error, -fno-sanitize-recover=undefined), so a clean exit
# (allocator_may_return_null: a huge allocation is a MemoryError, as without ASan)
# means no report.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${SANITIZE_DIR:-${TMPDIR:-/tmp}/lenet-fast-asan}"
mkdir -p "$dir"
if [ ! -x "$dir/venv/bin/python" ]; then
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/python" -m pip install --quiet --upgrade pip
    "$dir/venv/bin/python" -m pip install --quiet numpy pytest hypothesis scikit-build-core pybind11
fi
py="$dir/venv/bin/python"

t0=$(date +%s)
# same settings as the "sanitize" preset in CMakePresets.json
"$py" -m pip install --quiet --no-deps --no-build-isolation --force-reinstall . \
    -Cbuild-dir="$dir/build" \
    -Ccmake.build-type=RelWithDebInfo \
    -Ccmake.define.LENET_FAST_SANITIZE=ON \
    -Cinstall.strip=false
t1=$(date +%s)
echo "sanitizer build: $((t1 - t0)) s"

cc="${CC:-gcc}"
asan="$($cc -print-file-name=libasan.so)"
ubsan="$($cc -print-file-name=libubsan.so)"
if [ ! -e "$asan" ]; then
    echo "sanitize.sh: libasan.so not found by $cc -print-file-name" >&2
    exit 2
fi

if [ "$#" -eq 0 ]; then
    set -- tests/kernels tests/network tests/model/test_model.py tests/system/test_threads.py \
        tests/system/test_fuzz.py
fi

# run from a folder outside the source tree's python/ so the venv's lenet_fast is imported
export LD_PRELOAD="$asan${ubsan:+:$ubsan}"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=1:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONMALLOC=malloc   # let ASan see Python's allocations too
"$py" -c "import lenet_fast, sys; assert 'site-packages' in lenet_fast.__file__, lenet_fast.__file__; print(lenet_fast.info())"
"$py" -m pytest -q -p no:cacheprovider "$@"
t2=$(date +%s)
echo "sanitizer test run: $((t2 - t1)) s (build $((t1 - t0)) s)"

#!/usr/bin/env bash
# tools/test_wheel.sh on every Python the package declares (requires-python >= 3.9; 3.9 to
# 3.13 are the ones released with wheels of its dependencies): a wheel built, repaired,
# installed without a compiler and tested, for each. One build per version takes a few
# minutes, so this is not part of .ci/run (which tests the wheel of its own Python).
#
#   bash tools/test_pythons.sh [PYTHON...]
#
# With no arguments it takes the newest pyenv install of each of 3.9 to 3.13. Each
# version's log goes to ${TMPDIR:-/tmp}/lenet-fast-wheel-X.Y.log; the summary at the end
# gives each one's result and time, and the exit status is 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
pythons=("$@")
if [ ${#pythons[@]} -eq 0 ]; then
    root="$(pyenv root 2> /dev/null || echo "$HOME/.pyenv")"
    for v in 3.9 3.10 3.11 3.12 3.13; do
        p="$(ls -d "$root"/versions/"$v".* 2> /dev/null | sort -V | tail -n 1)"
        if [ -n "$p" ] && [ -x "$p/bin/python" ]; then
            pythons+=("$p/bin/python")
        else
            echo "no pyenv install of Python $v" >&2
        fi
    done
fi
summary=()
status=0
for py in "${pythons[@]}"; do
    ver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    log="${TMPDIR:-/tmp}/lenet-fast-wheel-$ver.log"
    start=$SECONDS
    if bash tools/test_wheel.sh "$py" > "$log" 2>&1; then
        result=passed
    else
        result="FAILED (see $log)"
        status=1
    fi
    summary+=("Python $ver: $result in $((SECONDS - start)) s; $(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed)' "$log" | tail -n 1)")
done
printf '%s\n' "${summary[@]}"
exit $status

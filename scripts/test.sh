#!/bin/bash
# Runs every test: the normal build, then the whole suite again under
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
ulimit -c 0
echo "== tests (debugoptimized build)"
meson test -C build --print-errorlogs --num-processes 2 --no-suite slow "$@"
echo "== tests under ASan+UBSan"
if [[ ! -f build-asan/build.ninja ]]; then
    meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debug >/dev/null
fi
ninja -C build-asan >/dev/null
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions="$PWD/tests/lsan.supp" UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --num-processes 2 --no-suite slow "$@"

#!/bin/bash
# The long suite, outside CI: the bzImage Linux boot check and anything
# else in the meson suite 'slow'.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
meson test -C build --print-errorlogs --suite slow "$@"

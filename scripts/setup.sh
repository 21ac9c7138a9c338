#!/bin/bash
# Installs every Debian package vdfs needs (scripts/packages.txt), then
# configures the build directories.  Safe to run again: it only calls apt
# when something on the list is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
mapfile -t wanted < <(grep -v '^\s*#' "$here/packages.txt" | grep -v '^\s*$')
missing=()
for pkg in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: these packages are missing and installing them needs root: ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
modprobe fuse 2>/dev/null || true
modprobe loop 2>/dev/null || true
modprobe tun 2>/dev/null || true
cd "$root"
if [[ ! -f build/build.ninja ]]; then
    meson setup build --buildtype=debugoptimized >/dev/null
fi
ninja -C build >/dev/null

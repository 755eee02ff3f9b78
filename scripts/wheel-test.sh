#!/usr/bin/env bash
# Test the repaired wheel the way a user gets it: build it (scripts/wheel-build.sh), install it alone
# into a fresh venv, show that the extension loads the libgearman bundled in the wheel (ldd, and
# the maps of a process that imported it), then run the core tests against that install.
#
# Usage: scripts/wheel-test.sh            (make wheel-test)
# Environment (all optional, besides those of scripts/wheel-build.sh):
#   WHEEL             test this wheel instead of building one
#   WHEEL_TEST_DIR    work directory: venv/, junit.xml, ldd.txt (build/wheel-test)
# Exit 77: a needed tool is missing and cannot be installed here (tests/test_wheel.py skips).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/ensure-debs.sh
source scripts/ensure-debs.sh

PYTHON="${PYTHON:-python3}"
work="$(realpath -m "${WHEEL_TEST_DIR:-build/wheel-test}")"
# gearmand lives in /usr/sbin, which is not on a normal user's PATH; appended so nothing is shadowed.
export PATH="$PATH:/usr/sbin:/sbin"
# Nothing from the source tree may leak into the imports under test.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP
log() { echo "wheel-test: $*" >&2; }

core_tests=(tests/test_client.py tests/test_worker.py tests/test_errors.py tests/test_exception_hang.py)

# The core tests start gearmand themselves; they only need the binary.
missing=()
command -v gearmand >/dev/null 2>&1 || missing+=(gearman-job-server)
command -v ldd >/dev/null 2>&1 || missing+=(libc-bin)
ensure_debs "${missing[@]}"

wheel="${WHEEL:-}"
if [[ -z $wheel ]]; then
    # Exit 77 from the build passes through unchanged (set -e keeps the status).
    out="$(bash scripts/wheel-build.sh)"
    wheel="$(sed -n 's/^REPAIRED_WHEEL=//p' <<<"$out")"
fi
[[ -f $wheel ]] || { log "no wheel to test ('$wheel')"; exit 1; }
wheel="$(realpath "$wheel")"

venv="$work/venv"
log "fresh venv $venv"
rm -rf "$work"
mkdir -p "$work"
"$PYTHON" -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q "$wheel" pytest pytest-timeout
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')"
site="$(realpath "$site")"

# Run from an empty directory: neither the repository root nor src/ is on sys.path there.
scratch="$work/run"
mkdir -p "$scratch"
cd "$scratch"

pkg_file="$("$py" -c 'import pygearman; print(pygearman.__file__)')"
echo "import pygearman -> $pkg_file"
[[ $(realpath "$pkg_file") == "$site"/* ]] ||
    { log "pygearman was imported from outside the venv's site-packages ($site)"; exit 1; }

ext="$("$py" -c 'import pygearman._libgearman as m; print(m.__file__)')"
echo "extension: $ext"
ldd "$ext" | tee "$work/ldd.txt"
line="$(grep -E '^\s*libgearman' "$work/ldd.txt" || true)"
[[ -n $line ]] || { log "ldd shows no libgearman for $ext"; exit 1; }
resolved="$(awk '{print $3}' <<<"$line")"
[[ -e $resolved ]] || { log "libgearman does not resolve: $line"; exit 1; }
resolved="$(realpath "$resolved")"
echo "ldd: libgearman -> $resolved"
[[ $resolved == "$site"/pygearman_native.libs/* ]] ||
    { log "libgearman resolves outside the wheel's pygearman_native.libs/: $resolved"; exit 1; }

# What the dynamic loader actually mapped when Python imported the extension.
loaded="$("$py" -c '
import pygearman._libgearman
with open("/proc/self/maps") as maps:
    paths = {line.split()[-1] for line in maps if "/" in line}
print("\n".join(sorted(p for p in paths if p.rsplit("/", 1)[-1].startswith("libgearman"))))')"
echo "mapped at import: $loaded"
[[ -n $loaded ]] || { log "no libgearman in the process's maps"; exit 1; }
while read -r path; do
    [[ $(realpath "$path") == "$site"/pygearman_native.libs/* ]] ||
        { log "the process mapped a libgearman outside the wheel: $path"; exit 1; }
done <<<"$loaded"

# What the package itself says about it (python -m pygearman --version: the path of the libgearman
# loaded, and "bundled in the wheel" when it is the copy in pygearman_native.libs/).
version="$("$py" -m pygearman --version)"
echo "$version"
grep -Eq "^libgearman: $site/pygearman_native\.libs/libgearman[^ ]* \(bundled in the wheel\)\$" <<<"$version" ||
    { log "pygearman --version does not name the bundled libgearman"; exit 1; }

log "core tests against the installed wheel"
"$py" -m pytest -p no:cacheprovider --rootdir "$root" --junitxml "$work/junit.xml" -q \
    "${core_tests[@]/#/$root/}"
echo "WHEEL_TESTED=$wheel"

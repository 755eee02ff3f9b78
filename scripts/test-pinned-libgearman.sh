#!/usr/bin/env bash
# make test-pinned SRC=DIR: the whole test suite against the release the wheels bundle (the pin,
# vendor/libgearman.pin) instead of the system's libgearman and gearmand. Not run by CI.
#   1. vendor/build-libgearman.sh --source SRC --with-gearmand --with-sqlite-queue builds libgearman,
#      gearmand (with the libsqlite3 queue a test uses, as Debian's has), gearman and gearadmin of
#      the pinned release into $PINNED_DIR/prefix. SRC must be the pinned git tag's
#      tree: a checkout or worktree of the tag, or an export of it, e.g.
#        mkdir /tmp/gearmand-2.0.0 &&
#        git --git-dir=/path/to/gearmand.git archive 2.0.0 | tar -x -C /tmp/gearmand-2.0.0
#      Skipped when the prefix already holds a build made from the same pin and build script.
#   2. Copies this working tree (tracked and untracked, not ignored files: uncommitted edits
#      included; or the commit PINNED_REF, e.g. PINNED_REF=HEAD) to $PINNED_DIR/src, so the build
#      writes nothing into the tree (cythonize writes the .c next to the .pyx, setuptools an
#      .egg-info).
#   3. A venv $PINNED_DIR/venv with requirements-dev.txt; pygearman built from the copy against the
#      prefix (PYGEARMAN_LIBGEARMAN_PREFIX, which setup.py turns into -I/-L/-rpath); checks that
#      the extension was compiled against and loads the pinned libgearman.
#   4. pytest in the copy, with the pinned gearmand/gearman/gearadmin first on PATH (and GEARMAND
#      set: pygearman.testing.find_gearmand looks there first) and PYGEARMAN_LIBGEARMAN_PREFIX still
#      exported, so the wheel tests build their wheel against the pinned library too.
#      JUnit report: $PINNED_DIR/junit.xml; the exit status is pytest's.
# Environment: SRC (required), PINNED_DIR (build/pinned), PINNED_REF (test a commit instead of the
#   working tree), PYTHON (python3), PYTEST_ARGS (-q), JOBS (2: make -j), FORCE_REBUILD=1 (rebuild
#   the prefix even if it is up to date).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { echo "test-pinned: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-2}"
read -r -a pytest_args <<<"${PYTEST_ARGS:--q}"
[[ -n ${SRC:-} ]] || die "SRC is not set: make test-pinned SRC=/path/to/gearmand-source (see this script's header)"
[[ -d $SRC ]] || die "SRC=$SRC is not a directory"
SRC="$(cd "$SRC" && pwd -P)"
pinned_dir="$(realpath -m "${PINNED_DIR:-build/pinned}")"
prefix="$pinned_dir/prefix"
snapshot="$pinned_dir/src"
venv="$pinned_dir/venv"
version="$(sed -n 's/^version=//p' vendor/libgearman.pin | tail -n 1 | tr -d '[:space:]')"
mkdir -p "$pinned_dir"

# 1. The pinned libgearman + gearmand.
stamp="$prefix/.pygearman-build-stamp"
want_stamp="$(cat vendor/libgearman.pin vendor/build-libgearman.sh | sha256sum | cut -d' ' -f1)"
if [[ ${FORCE_REBUILD:-0} != 1 && -x $prefix/sbin/gearmand && -f $stamp &&
      $(cat "$stamp") == "$want_stamp" ]]; then
    log "libgearman/gearmand $version already built in $prefix (FORCE_REBUILD=1 rebuilds)"
else
    rm -rf "$prefix"
    bash vendor/build-libgearman.sh --source "$SRC" --with-gearmand --with-sqlite-queue --prefix "$prefix" \
        --build-dir "$pinned_dir/gearmand-build" --jobs "$JOBS"
    echo "$want_stamp" >"$stamp"
fi

# 2. A copy of the working tree (or of a commit: PINNED_REF).
rm -rf "$snapshot"
mkdir -p "$snapshot"
if [[ -n ${PINNED_REF:-} ]]; then
    git archive --format=tar "$PINNED_REF" | tar -xf - -C "$snapshot"
    log "copied $PINNED_REF ($(git rev-parse --short "$PINNED_REF")) to $snapshot"
else
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do  # tracked files deleted in the tree are left out
            if [[ -e $f || -L $f ]]; then printf '%s\0' "$f"; fi
        done |
        tar --null -T - -cf - | tar -xf - -C "$snapshot"
    log "copied the working tree to $snapshot"
fi

# 3. pygearman against the pinned libgearman.
if [[ ! -x $venv/bin/python ]]; then
    "$PYTHON" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q -r "$snapshot/requirements-dev.txt"
export PYGEARMAN_LIBGEARMAN_PREFIX="$prefix"
unset PYGEARMAN_CFLAGS PYGEARMAN_LDFLAGS
"$venv/bin/python" -m pip uninstall -y -q pygearman-native pygearman >/dev/null 2>&1 || true
log "building pygearman against $prefix"
"$venv/bin/python" -m pip install -q --no-build-isolation "$snapshot"
(cd / && "$venv/bin/python" - "$version" "$prefix" <<'EOF'
import subprocess, sys
import pygearman
from pygearman import _libgearman
want, prefix = sys.argv[1], sys.argv[2]
got = (pygearman.libgearman_version(), pygearman.LIBGEARMAN_BUILD_VERSION)
ldd = subprocess.run(["ldd", _libgearman.__file__], capture_output=True, text=True).stdout
line = next((l.strip() for l in ldd.splitlines() if "libgearman.so" in l), "")
print(f"test-pinned: {_libgearman.__file__}: run time {got[0]}, headers {got[1]}; {line}",
      file=sys.stderr)
if got != (want, want) or f"{prefix}/lib/" not in line:
    sys.exit(f"test-pinned: FAILED: the extension does not use the pinned libgearman {want}")
EOF
)

# 4. The whole test suite.
export PATH="$prefix/sbin:$prefix/bin:$venv/bin:$PATH"
export GEARMAND="$prefix/sbin/gearmand"
log "gearmand: $(command -v gearmand) ($("$GEARMAND" --version 2>&1 | grep -m 1 .)); gearman: $(command -v gearman)"
cd "$snapshot"
log "python -m pytest ${pytest_args[*]} (in $snapshot)"
set +e
"$venv/bin/python" -m pytest -p no:cacheprovider --junitxml="$pinned_dir/junit.xml" "${pytest_args[@]}"
status=$?
set -e
log "pytest exit status $status against libgearman/gearmand $version; JUnit report $pinned_dir/junit.xml"
exit "$status"

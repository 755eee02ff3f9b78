#!/usr/bin/env bash
# Build the pinned upstream libgearman (and, on request, gearmand) from source and install it into
# a prefix: the libgearman that pygearman's binary wheels bundle. In the spirit of psycopg's
# build_libpq.sh: one pinned release, verified before it is used, configured with the fewest
# dependencies (no SSL, no queue plugins), installed where the wheel build finds it.
#
# The pin is vendor/libgearman.pin (version, tarball URL + sha256, git tag/commit/tree). No gearmand
# source lives in this repository: it comes from exactly one of
#   (default)       the release tarball at the pinned URL, downloaded; its sha256 must match the pin
#   --tarball FILE  a local copy of that tarball; its sha256 must match the pin
#   --source DIR    a local source tree whose content must be the pinned git tree: a git checkout or
#                   worktree of the tag (its HEAD is used), or an export of it (`git archive 2.0.0`).
#                   Such a tree has no configure: it is bootstrapped with autoreconf, which needs
#                   autoconf, automake and libtool.
# Nothing unverified is ever built. After the install the script FAILS unless gearmand.pc, the
# installed version.h, gearman_version() at run time and (with --with-gearmand) `gearmand --version`
# all report the pinned version, and unless libgearman links no TLS library.
#
# Usage: vendor/build-libgearman.sh [options]
#   --prefix DIR       install prefix (default /usr/local; libraries go to DIR/lib)
#   --build-dir DIR    work directory: download cache, unpacked source, logs
#                      (default ${TMPDIR:-/tmp}/build-libgearman-<version>)
#   --tarball FILE     build this local release tarball (sha256-verified) instead of downloading
#   --source DIR       build this source tree (verified against the pinned git tree)
#   --with-gearmand    also build and install gearmand, gearman and gearadmin (the wheel tests start
#                      a gearmand; it is never bundled in a wheel)
#   --with-sqlite-queue  give that gearmand its libsqlite3 persistent queue (-q libsqlite3), as
#                      Debian's has; the full test suite uses it. libgearman is unaffected.
#   --install-deps     install the build dependencies with the system's package manager
#                      (dnf/yum incl. manylinux_2_28, apt-get, apk, brew); needs root except for brew
#   --jobs N           parallel make jobs (default: $JOBS, else the number of CPUs)
#   -v, --verbose      stream configure/make output (default: into logs, tail shown on failure)
# Environment: CC, CXX, CFLAGS, CXXFLAGS, LDFLAGS are passed to configure as usual.
# Last lines of output on success: LIBGEARMAN_PREFIX=<prefix> and LIBGEARMAN_VERSION=<version>.
#
# cibuildwheel before-all (Linux, manylinux_2_28):
#   bash {package}/vendor/build-libgearman.sh --install-deps --with-gearmand --prefix /usr/local
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pin_file="$here/libgearman.pin"

log() { echo "build-libgearman: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

[[ -f $pin_file ]] || die "no pin file $pin_file"
pin_get() {
    local value
    value="$(sed -n "s/^$1=//p" "$pin_file" | tail -n 1 | tr -d '[:space:]')"
    [[ -n $value ]] || die "$pin_file has no '$1=' line"
    printf '%s' "$value"
}
version="$(pin_get version)"
url="$(pin_get url)"
sha256="$(pin_get sha256)"
git_tree="$(pin_get git_tree)"
git_commit="$(pin_get git_commit)"

prefix=/usr/local
build_dir=""
tarball=""
source_dir=""
with_gearmand=0
sqlite_queue=0
install_deps=0
verbose=0
jobs="${JOBS:-}"

while (($#)); do
    case $1 in
        --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        --build-dir) build_dir="${2:?--build-dir needs a directory}"; shift 2 ;;
        --build-dir=*) build_dir="${1#*=}"; shift ;;
        --tarball) tarball="${2:?--tarball needs a file}"; shift 2 ;;
        --tarball=*) tarball="${1#*=}"; shift ;;
        --source) source_dir="${2:?--source needs a directory}"; shift 2 ;;
        --source=*) source_dir="${1#*=}"; shift ;;
        --with-gearmand) with_gearmand=1; shift ;;
        --with-sqlite-queue) sqlite_queue=1; shift ;;
        --install-deps) install_deps=1; shift ;;
        --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
        --jobs=*) jobs="${1#*=}"; shift ;;
        -j*) jobs="${1#-j}"; shift ;;
        -v|--verbose) verbose=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ -n $tarball && -n $source_dir ]] && die "--tarball and --source exclude each other"
((sqlite_queue && !with_gearmand)) && die "--with-sqlite-queue is a gearmand option: add --with-gearmand"
if [[ -z $jobs ]]; then
    jobs="$(getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)"
fi
[[ $jobs =~ ^[1-9][0-9]*$ ]] || die "--jobs must be a positive number, not '$jobs'"

os="$(uname -s)"
mode=download
[[ -n $tarball ]] && mode=tarball
[[ -n $source_dir ]] && mode=source

# A sha256 that is not 64 hex digits (the pin's TODO-verify) fails every tarball build, before
# anything is downloaded: the tarball is never used unverified.
if [[ $mode != source && ! $sha256 =~ ^[0-9a-f]{64}$ ]]; then
    die "the pin has no verified sha256 for $url (sha256=$sha256 in $pin_file).
  Nobody has hashed the real release tarball yet, and an unverified tarball is never built.
  Fill in sha256 from a verified download (vendor/README.md, 'Verifying the tarball'),
  or build from a source tree checked against the pinned git tree: --source DIR."
fi

as_root() {
    if [[ $(id -u) -eq 0 ]] || ! command -v sudo >/dev/null 2>&1; then "$@"; else sudo "$@"; fi
}

# Build dependencies. libgearman itself needs a C++ compiler, libuuid (util-linux; macOS: libc) and
# gperf; gearmand's configure also insists on Boost.Program_options and libevent (with pthreads)
# even for a library-only build. Autotools only for a source tree without configure.
install_build_deps() {
    local autotools=$1
    if command -v dnf >/dev/null 2>&1 || command -v yum >/dev/null 2>&1; then
        local pm=dnf
        command -v dnf >/dev/null 2>&1 || pm=yum
        # manylinux_2_28 = AlmaLinux 8: gperf and some -devel packages live in PowerTools (EL9: CRB).
        if [[ $pm == dnf ]]; then
            as_root dnf install -y dnf-plugins-core >/dev/null 2>&1 || true
            as_root dnf config-manager --set-enabled powertools >/dev/null 2>&1 ||
                as_root dnf config-manager --set-enabled crb >/dev/null 2>&1 || true
        fi
        local pkgs=(gcc gcc-c++ make tar gzip curl pkgconfig gperf libuuid-devel libevent-devel boost-devel)
        ((autotools)) && pkgs+=(autoconf automake libtool)
        ((sqlite_queue)) && pkgs+=(sqlite-devel)
        log "installing build dependencies with $pm: ${pkgs[*]}"
        as_root "$pm" install -y "${pkgs[@]}" >&2
    elif command -v apt-get >/dev/null 2>&1; then
        local pkgs=(g++ make tar gzip curl ca-certificates pkg-config gperf uuid-dev libevent-dev
                    libboost-program-options-dev)
        ((autotools)) && pkgs+=(autoconf automake libtool)
        ((sqlite_queue)) && pkgs+=(libsqlite3-dev)
        log "installing build dependencies with apt-get: ${pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get install -y --no-install-recommends "${pkgs[@]}" >&2 || {
            as_root apt-get update >&2
            as_root apt-get install -y --no-install-recommends "${pkgs[@]}" >&2
        }
    elif command -v apk >/dev/null 2>&1; then
        local pkgs=(g++ make tar gzip curl pkgconf gperf util-linux-dev libevent-dev boost-dev)
        ((autotools)) && pkgs+=(autoconf automake libtool)
        ((sqlite_queue)) && pkgs+=(sqlite-dev)
        log "installing build dependencies with apk: ${pkgs[*]}"
        apk add --no-cache "${pkgs[@]}" >&2
    elif [[ $os == Darwin ]] && command -v brew >/dev/null 2>&1; then
        local pkgs=(boost libevent gperf pkg-config)
        ((autotools)) && pkgs+=(autoconf automake libtool)
        ((sqlite_queue)) && pkgs+=(sqlite)
        log "installing build dependencies with brew: ${pkgs[*]}"
        brew install "${pkgs[@]}" >&2
    else
        die "--install-deps: no supported package manager (dnf, yum, apt-get, apk, brew)"
    fi
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
    else openssl dgst -sha256 -r "$1" | cut -d' ' -f1
    fi
}

verify_tarball() {
    local file=$1 actual
    actual="$(sha256_of "$file")"
    if [[ $actual != "$sha256" ]]; then
        die "sha256 mismatch for $file
  expected (pin): $sha256
  actual:         $actual"
    fi
    log "sha256 OK: $file ($actual)"
}

# The git tree id of a directory's content, computed with a throw-away index (nothing is written
# into the directory). Equals the tag's tree id iff the content is exactly the tag's files.
tree_id_of_dir() {
    local dir=$1 tmp id
    tmp="$(mktemp -d)"
    git init -q "$tmp"
    id="$(export GIT_DIR="$tmp/.git" GIT_INDEX_FILE="$tmp/index" GIT_WORK_TREE="$dir"
          git -c core.autocrlf=false -c core.fileMode=true -c core.symlinks=true add -A -f . &&
          git write-tree)" || { rm -rf "$tmp"; return 1; }
    rm -rf "$tmp"
    printf '%s' "$id"
}

# --source: copy the verified tree into $src, so the caller's directory is never written to.
prepare_source_tree() {
    local dir top tree
    [[ -d $source_dir ]] || die "--source $source_dir is not a directory"
    command -v git >/dev/null 2>&1 || die "--source needs git to check the tree against the pin"
    dir="$(cd "$source_dir" && pwd -P)"
    top="$(git -C "$dir" rev-parse --show-toplevel 2>/dev/null || true)"
    if [[ -n $top && $(cd "$top" && pwd -P) == "$dir" ]]; then
        # A checkout or worktree: its committed HEAD is what gets built (local edits are not).
        tree="$(git -C "$dir" rev-parse 'HEAD^{tree}')"
        [[ $tree == "$git_tree" ]] ||
            die "$dir: HEAD ($(git -C "$dir" rev-parse HEAD)) is not the pinned release $version
  (its tree is $tree, the pin's $git_tree: commit $git_commit). Check out the tag $version."
        if [[ -n $(git -C "$dir" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
            log "note: $dir has local changes; they are ignored (HEAD is built)"
        fi
        log "source: git checkout $dir at $(git -C "$dir" rev-parse HEAD) (tree $tree = pin)"
        git -C "$dir" archive --format=tar HEAD | tar -x -C "$src"
    else
        tree="$(tree_id_of_dir "$dir")" || die "could not compute the git tree id of $dir"
        [[ $tree == "$git_tree" ]] ||
            die "$dir is not the pinned release $version: its content has git tree id $tree,
  the tag's is $git_tree. Use a clean export of the tag (no bootstrap or build run in it), e.g.
    mkdir DIR && git --git-dir=/path/to/gearmand.git archive $version | tar -x -C DIR
  or a checkout/worktree of the tag; for a release tarball use --tarball FILE."
        log "source: $dir (git tree $tree = pin, tag $version)"
        tar -C "$dir" -cf - . | tar -x -C "$src"
    fi
    # version.m4 asks `git describe` for the version, which has no repository to ask in a copy
    # (configure would get an empty version). The tree is verified to be the tag's, and at the tag
    # `git describe` prints exactly the tag name, so that is written instead.
    grep -q 'git describe' "$src/version.m4" ||
        die "$src/version.m4 does not look like gearmand's (no 'git describe')"
    printf 'm4_define([VERSION_NUMBER], [%s])\n' "$version" >"$src/version.m4"
}

run() {  # run CMD... quietly into $logfile unless --verbose; on failure show the log's tail
    local logfile=$1; shift
    log "+ $* (log: $logfile)"
    if ((verbose)); then
        "$@" 2>&1 | tee -a "$logfile" >&2 || die "'$*' failed; full log: $logfile"  # pipefail
    elif ! "$@" >>"$logfile" 2>&1; then
        tail -n 80 "$logfile" >&2
        die "'$*' failed; full log: $logfile"
    fi
}

# The checks that make a wrong or TLS-enabled libgearman fail the build.
check_installed() {
    local libdir="$prefix/lib" pc version_h got lib deps probe_dir out
    pc="$libdir/pkgconfig/gearmand.pc"
    version_h="$prefix/include/libgearman-1.0/version.h"
    [[ -f $pc ]] || die "not installed: $pc"
    got="$(sed -n 's/^Version:[[:space:]]*//p' "$pc" | tr -d '[:space:]')"
    [[ $got == "$version" ]] || die "$pc says version '$got', the pin $version"
    got="$(sed -n 's/^#define LIBGEARMAN_VERSION_STRING "\(.*\)"/\1/p' "$version_h")"
    [[ $got == "$version" ]] || die "$version_h says '$got', the pin $version"

    # What the library itself reports when loaded (by rpath, ahead of any system libgearman).
    probe_dir="$(mktemp -d)"
    cat >"$probe_dir/probe.c" <<'EOF'
#include <stdio.h>
#include <libgearman-1.0/gearman.h>
int main(void) { printf("%s %s\n", LIBGEARMAN_VERSION_STRING, gearman_version()); return 0; }
EOF
    "${CC:-cc}" -o "$probe_dir/probe" "$probe_dir/probe.c" -I"$prefix/include" -L"$libdir" \
        -Wl,-rpath,"$libdir" -lgearman || die "cannot compile a program against $prefix"
    out="$(env -u LD_LIBRARY_PATH -u DYLD_LIBRARY_PATH "$probe_dir/probe")" ||
        die "a program linked against $libdir/libgearman does not run"
    rm -rf "$probe_dir"
    [[ $out == "$version $version" ]] ||
        die "header/run-time versions are '$out', the pin $version $version"

    if [[ $os == Darwin ]]; then
        lib="$(find "$libdir" -maxdepth 1 -name 'libgearman.*.dylib' | sort | head -n 1)"
        deps="$(otool -L "$lib" | tail -n +2 | awk '{print $1}')"
    else
        lib="$(readlink -f "$libdir/libgearman.so")"
        if command -v readelf >/dev/null 2>&1; then
            deps="$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
        else
            deps="$(objdump -p "$lib" | awk '$1 == "NEEDED" {print $2}')"
        fi
    fi
    log "$lib links: $(tr '\n' ' ' <<<"$deps")"
    if grep -Eiq 'ssl|crypto|wolfssl' <<<"$deps"; then
        die "$lib links a TLS library; the wheel's libgearman is built without SSL"
    fi

    if ((with_gearmand)); then
        out="$(env -u LD_LIBRARY_PATH "$prefix/sbin/gearmand" --version 2>&1)" ||
            die "$prefix/sbin/gearmand --version failed: $out"
        out="$(grep -m 1 . <<<"$out")"  # it prints an empty line first
        [[ $out == "gearmand $version "* ]] || die "gearmand --version says '$out', the pin $version"
        log "$out"
        if ((sqlite_queue)); then
            "$prefix/sbin/gearmand" --help 2>&1 | grep -q -- '--libsqlite3-db' ||
                die "gearmand has no libsqlite3 queue (--libsqlite3-db missing from --help)"
        fi
    fi
    log "verified: libgearman $version (gearmand.pc, version.h, gearman_version()) in $prefix"
}

# ---------------------------------------------------------------------------------------------

if ((install_deps)); then
    autotools=0
    [[ $mode == source ]] && autotools=1
    install_build_deps "$autotools"
fi

build_dir="${build_dir:-${TMPDIR:-/tmp}/build-libgearman-$version}"
mkdir -p "$build_dir"
build_dir="$(cd "$build_dir" && pwd -P)"
case $prefix in /*) ;; *) prefix="$PWD/$prefix" ;; esac  # configure wants an absolute prefix
src="$build_dir/gearmand-$version"
logs="$build_dir/logs"
# Only this script's own products are removed: the unpacked tree and the logs of an earlier run.
rm -rf "$src" "$logs"
mkdir -p "$src" "$logs"
log "libgearman $version -> $prefix (work dir $build_dir, make -j$jobs)"

case $mode in
    download)
        file="$build_dir/gearmand-$version.tar.gz"
        if [[ -f $file && $(sha256_of "$file") == "$sha256" ]]; then
            log "using the verified download already in $file"
        else
            rm -f "$file" "$file.part"
            log "downloading $url"
            if command -v curl >/dev/null 2>&1; then
                curl -fsSL --retry 3 --retry-delay 5 -o "$file.part" "$url" || die "download failed: $url"
            elif command -v wget >/dev/null 2>&1; then
                wget -q -O "$file.part" "$url" || die "download failed: $url"
            else
                die "neither curl nor wget is installed (or use --tarball FILE / --source DIR)"
            fi
            verify_tarball "$file.part"
            mv "$file.part" "$file"
        fi
        verify_tarball "$file"
        tar -xzf "$file" -C "$src" --strip-components=1
        ;;
    tarball)
        [[ -f $tarball ]] || die "--tarball $tarball is not a file"
        verify_tarball "$tarball"
        tar -xzf "$tarball" -C "$src" --strip-components=1
        ;;
    source)
        prepare_source_tree
        ;;
esac

cd "$src"
[[ -f libgearman-1.0/gearman.h && -f configure.ac ]] || die "$src does not look like gearmand's source"
if [[ ! -x configure ]]; then
    for tool in autoreconf automake libtoolize; do
        command -v "$tool" >/dev/null 2>&1 ||
            die "'$tool' is missing: a source tree without configure needs autoconf, automake, libtool (or --install-deps)"
    done
    run "$logs/autoreconf.log" autoreconf --install --force
fi
command -v gperf >/dev/null 2>&1 || die "gperf is missing (configure needs it; or --install-deps)"

configure_args=(
    --prefix="$prefix" --libdir="$prefix/lib"
    --disable-static --disable-dependency-tracking
    # No TLS: the wheel must not carry (or pretend to have) an OpenSSL.
    --disable-ssl --disable-wolfssl
    # No persistent-queue plugins or other optional back ends: nothing the library needs.
    --disable-libdrizzle --disable-libpq --disable-libtokyocabinet --disable-hiredis
    --disable-libmemcached --without-mysql --without-postgresql
    --disable-dtrace
)
if ((sqlite_queue)); then
    configure_args+=(--with-sqlite3)
else
    configure_args+=(--without-sqlite3)
fi
if [[ $os == Darwin ]]; then
    # As Homebrew's gearman formula does (not tried here): macOS has htonll as a macro only.
    export CFLAGS="${CFLAGS:-} -DHAVE_HTONLL" CXXFLAGS="${CXXFLAGS:-} -DHAVE_HTONLL"
fi
mkdir -p "$prefix"
run "$logs/configure.log" ./configure "${configure_args[@]}"
grep -q '^#define HAVE_SSL 1' gear_config.h && die "configure enabled SSL despite --disable-ssl"
if ((sqlite_queue)) && ! grep -q '^#define HAVE_LIBSQLITE3 1' gear_config.h; then
    die "--with-sqlite-queue: configure found no libsqlite3 (install its -dev package, or --install-deps)"
fi

# The Makefile is non-recursive and lists everything (tests, examples, benchmarks); only the
# generated headers (BUILT_SOURCES) and the wanted targets are built, and only they installed.
# shellcheck disable=SC2016  # $(BUILT_SOURCES) is make's, not the shell's
built_sources="$(printf 'pygearman-print-built-sources:\n\t@echo $(BUILT_SOURCES)\n' |
                 make -s -f Makefile -f - pygearman-print-built-sources)"
targets=(libgearman/libgearman.la)
install_targets=(install-libLTLIBRARIES install-nobase_includeHEADERS install-pkgconfigDATA)
if ((with_gearmand)); then
    targets+=(gearmand/gearmand bin/gearman bin/gearadmin)
    install_targets+=(install-sbinPROGRAMS install-binPROGRAMS)
fi
# shellcheck disable=SC2086  # a list of file names
run "$logs/make.log" make -j"$jobs" $built_sources
run "$logs/make.log" make -j"$jobs" "${targets[@]}"
run "$logs/install.log" make "${install_targets[@]}"
rm -f "$prefix/lib/libgearman.la"  # libtool archive: of no use to pygearman, may mislead other builds

if [[ $os == Linux && $(id -u) -eq 0 && ( $prefix == /usr/local || $prefix == /usr ) ]]; then
    ldconfig || true  # so auditwheel and the tests find the new library by its soname
fi

check_installed
echo "LIBGEARMAN_PREFIX=$prefix"
echo "LIBGEARMAN_VERSION=$version"

#!/usr/bin/env bash
# cibuildwheel before-all: install libgearman's headers and library from the build container's
# own package manager, so auditwheel/delocate can bundle the shared library into the wheel, and the
# gearmand server, which the wheel's tests start (they run in the same container, after the build).
# No source is downloaded or built here. The version we test against is in libgearman.version.
# PYGEARMAN_SKIP_GEARMAND=1 skips the server (a build whose wheels are not tested).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pinned="$(tr -d '[:space:]' < "$here/libgearman.version")"
export PATH="$PATH:/usr/sbin:/sbin"

log() { echo "install-libgearman: $*" >&2; }
want_server=1
[[ ${PYGEARMAN_SKIP_GEARMAND:-0} == 1 ]] && want_server=0

# Root in the Linux containers; on macOS brew must not run as root, so no sudo there.
as_root() {
    if [[ $(id -u) -eq 0 ]] || ! command -v sudo >/dev/null 2>&1; then "$@"; else sudo "$@"; fi
}

# Sets $gearmand to the server's path. It lives in sbin, which may not be on PATH (Homebrew's too).
find_gearmand() {
    local dir
    gearmand="$(command -v gearmand 2>/dev/null)" && return 0
    for dir in /usr/sbin /usr/local/sbin /sbin /opt/homebrew/sbin /usr/local/opt/gearman/sbin; do
        [[ -x $dir/gearmand ]] && gearmand="$dir/gearmand" && return 0
    done
    return 1
}

# Sets $module and $version. Upstream and Debian call the pkg-config module 'gearmand';
# accept 'libgearman' too. Judged by pkg-config rather than exit codes, because yum's exit
# status for a missing package is not reliable.
find_libgearman() {
    command -v pkg-config >/dev/null 2>&1 || return 1
    for module in gearmand libgearman; do
        version="$(pkg-config --modversion "$module" 2>/dev/null)" && return 0
    done
    return 1
}

if command -v apt-get >/dev/null 2>&1; then
    log "using apt-get"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update
    as_root apt-get install -y --no-install-recommends libgearman-dev pkg-config ||
        log "apt-get could not install libgearman-dev"
    if ((want_server)); then
        as_root apt-get install -y --no-install-recommends gearman-job-server ||
            log "apt-get could not install gearman-job-server"
    fi
elif command -v dnf >/dev/null 2>&1 || command -v yum >/dev/null 2>&1; then
    # manylinux_2_28 is AlmaLinux 8 (dnf), manylinux2014 is CentOS 7 (yum); libgearman is in EPEL.
    pm=dnf; command -v dnf >/dev/null 2>&1 || pm=yum
    log "using $pm + EPEL"
    as_root "$pm" install -y epel-release || log "could not install epel-release"
    # EPEL packages may depend on PowerTools (EL8) / CRB (EL9); best effort, harmless if absent.
    if [[ $pm == dnf ]]; then
        as_root dnf config-manager --set-enabled powertools >/dev/null 2>&1 ||
            as_root dnf config-manager --set-enabled crb >/dev/null 2>&1 || true
    fi
    as_root "$pm" install -y pkgconfig || log "could not install pkgconfig"
    # The devel package's name differs between EPEL/Fedora releases.
    for name in libgearman-devel gearmand-devel; do
        as_root "$pm" install -y "$name" || log "$pm could not install '$name'"
        find_libgearman && break
    done
    if ((want_server)); then
        as_root "$pm" install -y gearmand || log "$pm could not install 'gearmand'"
    fi
elif command -v apk >/dev/null 2>&1; then
    log "using apk"
    apk add --no-cache pkgconf || log "apk could not install pkgconf"
    apk add --no-cache gearman-dev || log "apk could not install gearman-dev (not in this Alpine?)"
    if ((want_server)); then
        apk add --no-cache gearmand || log "apk could not install gearmand (not in this Alpine?)"
    fi
elif [[ $(uname -s) == Darwin ]] && command -v brew >/dev/null 2>&1; then
    log "using brew"
    # The gearman formula holds libgearman and gearmand (in $(brew --prefix)/sbin).
    brew install gearman pkg-config || log "brew could not install gearman"
else
    log "no supported package manager found (apt-get, dnf, yum, apk, brew)"
fi

if ! find_libgearman; then
    log "FAILED: pkg-config cannot find libgearman (module 'gearmand' or 'libgearman')."
    log "  The build needs libgearman's headers (libgearman-1.0/gearman.h), libgearman.so and its .pc file:"
    log "  Debian/Ubuntu: libgearman-dev; EL8 (manylinux_2_28): epel-release, then libgearman-devel;"
    log "  Alpine (musllinux): gearman-dev; macOS: brew install gearman."
    exit 1
fi

log "libgearman $version found (pkg-config module '$module'; pinned: $pinned)"
log "  cflags: $(pkg-config --cflags "$module")  libs: $(pkg-config --libs "$module")"
if [[ $version != "$pinned"* ]]; then
    log "WARNING: not the pinned libgearman $pinned; the wheel will bundle $version"
fi

if ((want_server)); then
    if ! find_gearmand; then
        log "FAILED: gearmand (the Gearman server) is not installed; the wheel's tests start it."
        log "  Debian/Ubuntu: gearman-job-server; EL8 (EPEL): gearmand; macOS: brew install gearman."
        log "  Set PYGEARMAN_SKIP_GEARMAND=1 to build without it (then skip the wheel tests)."
        exit 1
    fi
    log "gearmand: $gearmand ($("$gearmand" --version 2>&1 | grep -m1 . || true))"
fi

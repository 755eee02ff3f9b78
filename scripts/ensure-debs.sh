# Sourced by scripts/wheel-build.sh and scripts/wheel-test.sh: install missing Debian packages.
#   ensure_debs PKG...   installs the named packages with apt-get when run as root; otherwise, or
#                        without apt-get, prints what is missing and exits 77 (the "cannot run here"
#                        status tests/test_wheel.py turns into a skip).
# Callers decide what is missing by checking the tools themselves (command -v, pkg-config), so a
# tool installed some other way (a non-Debian system, a self-built patchelf) is accepted as it is.

ensure_debs() {
    (($#)) || return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "$(basename "$0"): missing tools; install these packages (or their equivalents): $*" >&2
        echo "  Debian/Ubuntu: sudo apt-get install -y --no-install-recommends $*" >&2
        exit 77
    fi
    echo "$(basename "$0"): installing $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Only refresh the package lists when an install from the current ones fails.
    if ! apt-get install -y --no-install-recommends "$@" >&2; then
        apt-get update >&2
        apt-get install -y --no-install-recommends "$@" >&2 || {
            echo "$(basename "$0"): apt-get could not install: $*" >&2
            exit 77
        }
    fi
}

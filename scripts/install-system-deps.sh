#!/usr/bin/env bash
# Install the Debian packages pygearman needs to build and test, then check that the tools work.
# Idempotent and quick when everything is present: apt is only touched if a package is missing.
# Usage: scripts/install-system-deps.sh   (PYTHON=python3 by default; the Makefile passes its own)
set -euo pipefail

PYTHON="${PYTHON:-python3}"
# gearmand lives in /usr/sbin, which is not on a normal user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"

# gearman-job-server: gearmand for the tests; libgearman-dev + pkg-config + gcc: the build;
# php-cli + php-gearman: the reference client the tests compare against; gearman-tools: the `gearman` CLI.
# gearman-server: the Perl Gearman::Server, for the tests against other job servers. It installs a
# Perl /usr/bin/gearmand too: pygearman.testing.find_gearmand() skips it, and the check below
# asks /usr/sbin/gearmand (the C server) by its path.
packages=(gearman-job-server gearman-server libgearman-dev php-cli php-gearman gearman-tools pkg-config
          gcc make)

# Python headers and venv are only needed from apt when $PYTHON lacks them (a pyenv or
# self-built Python ships its own, and python3-dev would not help it anyway).
python_ok() {
    command -v "$PYTHON" >/dev/null 2>&1 &&
    "$PYTHON" -c 'import venv, ensurepip, sysconfig, os
assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' >/dev/null 2>&1
}
if ! python_ok; then
    packages+=(python3-dev python3-venv)
fi

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in "${packages[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
else
    echo "install-system-deps: no dpkg here (not Debian/Ubuntu); not installing anything." >&2
    echo "  Install the equivalents of: ${packages[*]}" >&2
fi

if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-system-deps: missing Debian packages: ${missing[*]}" >&2
        echo "  Install them, then re-run make:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "install-system-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Check that what the build and the tests call actually works; report every problem, not just the first.
problems=()
pkg-config --exists gearmand 2>/dev/null ||
    problems+=("pkg-config cannot find 'gearmand' (libgearman-dev, pkg-config)")
c_gearmand=/usr/sbin/gearmand
[[ -x $c_gearmand ]] || c_gearmand=gearmand
"$c_gearmand" --version 2>/dev/null | grep -q '^gearmand [0-9]' ||
    problems+=("'$c_gearmand --version' failed (gearman-job-server; gearmand is in /usr/sbin)")
# Capture first: 'php -m | grep -q' can make php die of SIGPIPE, which pipefail would report.
php_modules=$(php -m 2>/dev/null || true)
grep -qi gearman <<<"$php_modules" ||
    problems+=("php has no gearman extension ('php -m'; php-cli, php-gearman)")
command -v gearman >/dev/null 2>&1 ||
    problems+=("'gearman' command not found (gearman-tools)")
python_ok ||
    problems+=("$PYTHON ($(command -v "$PYTHON" || echo 'not found')) lacks venv/ensurepip or Python.h; python3-dev and python3-venv only fix Debian's /usr/bin/python3, so use PYTHON=/usr/bin/python3 or install the headers for your Python")

if ((${#problems[@]})); then
    echo "install-system-deps: the system is not ready:" >&2
    printf '  - %s\n' "${problems[@]}" >&2
    exit 1
fi
echo "install-system-deps: ok (libgearman $(pkg-config --modversion gearmand), $("$PYTHON" -c 'import platform; print("Python", platform.python_version())'))"

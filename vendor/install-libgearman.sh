#!/usr/bin/env bash
# Former cibuildwheel before-all script. It used to install whatever libgearman the build
# container's package manager had and only warn when that was not the pinned release; wheels now
# bundle exactly the pinned upstream release, built and verified by build-libgearman.sh (see
# README.md). Kept only so that a before-all line still naming this file builds the pinned release;
# point before-all at build-libgearman.sh and delete this file.
# (Local builds and CI's `make test` use the Debian packages: scripts/install-system-deps.sh.)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
echo "install-libgearman: deprecated; running build-libgearman.sh --install-deps --with-gearmand $*" >&2
exec bash "$here/build-libgearman.sh" --install-deps --with-gearmand "$@"

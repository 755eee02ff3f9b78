#!/usr/bin/env bash
# Run after auditwheel repair (Linux) or delocate (macOS): lists the shared libraries each wheel
# bundles and FAILS if
#   - the wheel does not carry vendor/NOTICE.md (as .dist-info/licenses/vendor/NOTICE.md),
#   - a bundled library has no section in that NOTICE.md (a heading "## <library> ...", e.g.
#     "## libuuid (util-linux)" covers pygearman_native.libs/libuuid-1a2b3c4d.so.1.3.0),
#   - no libgearman is bundled, or NOTICE.md's libgearman heading is not "## libgearman (gearmand
#     <pinned version>)", or the bundled libgearman, loaded, reports another version than the pin
#     (vendor/libgearman.pin): a repair that picked up a system libgearman fails here.
# Loading needs the wheel's own platform: run it where the wheel was built.
#
# Usage: vendor/check-wheel-libs.sh WHEEL...      (PYTHON: interpreter to use, default python3)
# cibuildwheel: repair-wheel-command = "auditwheel repair -w {dest_dir} {wheel} &&
#               bash {package}/vendor/check-wheel-libs.sh {dest_dir}/*.whl"
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
(($#)) || { echo "usage: $0 WHEEL..." >&2; exit 2; }
python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || python=python
version="$(sed -n 's/^version=//p' "$here/libgearman.pin" | tail -n 1 | tr -d '[:space:]')"
[[ -n $version ]] || { echo "check-wheel-libs: no version= in $here/libgearman.pin" >&2; exit 1; }

exec "$python" - "$version" "$@" <<'EOF'
import ctypes
import os
import re
import sys
import tempfile
import zipfile

pinned, wheels = sys.argv[1], sys.argv[2:]
NOTICE_SUFFIX = ".dist-info/licenses/vendor/NOTICE.md"


def log(msg):
    print(f"check-wheel-libs: {msg}", file=sys.stderr)


def is_bundled(name):
    """A library auditwheel (<dist>.libs/) or delocate (<pkg>/.dylibs/) copied into the wheel."""
    parts = name.split("/")
    base = parts[-1]
    shared = ".so" in base or base.endswith(".dylib")
    in_libs = (len(parts) == 2 and parts[0].endswith(".libs")) or ".dylibs" in parts[:-1]
    return shared and in_libs


def library_name(base):
    """libgearman-1a2b3c4d.so.8.0.0 -> libgearman; libgearman.8.dylib -> libgearman."""
    stem = base.split(".so", 1)[0] if ".so" in base else base.split(".", 1)[0]
    return re.sub(r"-[0-9a-f]{8}$", "", stem)


def load_all(directory, files):
    """Load the bundled libraries in an order their dependencies allow; returns {file: handle}."""
    handles, pending, errors = {}, list(files), {}
    while pending:
        progress = False
        for f in list(pending):
            try:
                handles[f] = ctypes.CDLL(os.path.join(directory, f), mode=ctypes.RTLD_GLOBAL)
            except OSError as e:
                errors[f] = str(e)
                continue
            pending.remove(f)
            progress = True
        if not progress:
            break
    return handles, {f: errors[f] for f in pending}


def check(wheel):
    problems = []
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        notices = [n for n in names if n.endswith(NOTICE_SUFFIX)]
        if len(notices) != 1:
            return [f"expected one *{NOTICE_SUFFIX} in the wheel, found {notices}"]
        notice = zf.read(notices[0]).decode("utf-8")
        sections = {}
        for line in notice.splitlines():
            m = re.match(r"^## (\S+)(.*)$", line)
            if m:
                sections[m.group(1)] = line[3:].strip()
        bundled = sorted(n for n in names if is_bundled(n))
        log(f"{os.path.basename(wheel)}: {len(bundled)} bundled libraries; "
            f"NOTICE.md sections: {', '.join(sorted(sections)) or 'none'}")
        gearman = []
        for n in bundled:
            lib = library_name(n.rsplit("/", 1)[-1])
            covered = sections.get(lib)
            log(f"  {n}  ->  {lib}: " + (f"NOTICE.md '## {covered}'" if covered else "NOT COVERED"))
            if not covered:
                problems.append(f"{n} ({lib}) has no '## {lib} ...' section in NOTICE.md")
            if lib == "libgearman":
                gearman.append(n)
        others = [n for n in names if (n.endswith(".so") or ".so." in n or n.endswith(".dylib"))
                  and not is_bundled(n) and "/_libgearman" not in n]
        if others:
            problems.append(f"shared libraries outside the bundled-library directory: {others}")
        if len(gearman) != 1:
            problems.append(f"expected one bundled libgearman, found {gearman}")
            return problems
        want = f"libgearman (gearmand {pinned})"
        if sections.get("libgearman") != want:
            problems.append(f"NOTICE.md's libgearman heading is '## {sections.get('libgearman')}', "
                            f"the pin wants '## {want}'")
        # The library's own answer: extract every bundled library (they find each other by their
        # rewritten names) and call gearman_version().
        libdir = gearman[0].rsplit("/", 1)[0]
        with tempfile.TemporaryDirectory() as tmp:
            files = []
            for n in bundled:
                if n.rsplit("/", 1)[0] == libdir:
                    zf.extract(n, tmp)
                    files.append(n.rsplit("/", 1)[-1])
            handles, failed = load_all(os.path.join(tmp, libdir), files)
            base = gearman[0].rsplit("/", 1)[-1]
            if base not in handles:
                problems.append(f"cannot load the bundled {base} to ask its version "
                                f"(run this check on the wheel's platform): {failed.get(base)}")
            else:
                fn = handles[base].gearman_version
                fn.restype = ctypes.c_char_p
                got = fn().decode()
                log(f"  bundled libgearman reports gearman_version() = {got}")
                if got != pinned:
                    problems.append(f"the bundled libgearman is {got}, the pin {pinned}")
    return problems


failed = False
for wheel in wheels:
    problems = check(wheel)
    for p in problems:
        log(f"FAILED: {os.path.basename(wheel)}: {p}")
    if problems:
        failed = True
    else:
        log(f"OK: {os.path.basename(wheel)}")
if failed:
    log("a library bundled into a wheel needs its licence notice in vendor/NOTICE.md "
        "(a '## <library> ...' section) before the wheel is published")
sys.exit(1 if failed else 0)
EOF

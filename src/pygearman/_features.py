"""Feature probes of the libgearman this process loaded (pygearman.has)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

__all__ = ["has", "FEATURES", "libgearman_path", "libgearman_bundled", "version_tuple"]

# Where binary wheels put the libgearman they bundle: auditwheel (Linux) copies it into
# <site-packages>/pygearman_native.libs/, delocate (macOS) into pygearman/.dylibs/.
_PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))
BUNDLE_DIRS = (os.path.join(os.path.dirname(_PACKAGE_DIR), "pygearman_native.libs"),
               os.path.join(_PACKAGE_DIR, ".dylibs"))

FEATURES: Dict[str, str] = {
    "ssl": "libgearman was built with TLS (libssl is in its dependency tree); Debian's is not",
    "worker_ssl": "gearman_worker_set_ssl is exported (missing in 1.1.20, gearmand #436)",
    "fifo_tasks": "libgearman sends task sets in the order they were added (2.0.0 and later; "
                  "pygearman gives FIFO either way)",
}


def version_tuple(version: str) -> Tuple[int, ...]:
    """'1.1.20+ds' -> (1, 1, 20)."""
    m = re.match(r"(\d+(?:\.\d+)*)", version)
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()


def _loaded_files() -> List[str]:
    """Files of the shared libraries loaded into this process: /proc/self/maps on Linux, dyld's
    image list on macOS; empty where neither is available."""
    try:
        with open("/proc/self/maps") as maps:
            return [line.rsplit(None, 1)[-1] for line in maps if "/" in line]
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            libc = ctypes.CDLL(None)
            libc._dyld_image_count.restype = ctypes.c_uint32
            libc._dyld_get_image_name.restype = ctypes.c_char_p
            libc._dyld_get_image_name.argtypes = [ctypes.c_uint32]
            names = (libc._dyld_get_image_name(i) for i in range(libc._dyld_image_count()))
            return [os.fsdecode(n) for n in names if n]
        except (OSError, AttributeError):
            pass
    return []


def libgearman_path() -> Optional[str]:
    """The file of the libgearman loaded into this process (the bundled one in a wheel). Where the
    loaded libraries cannot be listed, the one the system's loader would pick."""
    from pygearman import _libgearman  # noqa: F401  (makes sure it is loaded)

    for path in _loaded_files():
        name = os.path.basename(path)
        if name.startswith("libgearman") and (".so" in name or name.endswith(".dylib")):
            return path
    return ctypes.util.find_library("gearman")


def libgearman_bundled(path: Optional[str] = None) -> bool:
    """Whether the libgearman in use (or ``path``) is the copy a binary wheel bundles rather
    than the system's."""
    path = path if path is not None else libgearman_path()
    if not path or not os.path.isabs(path):
        return False
    return os.path.dirname(os.path.realpath(path)) in BUNDLE_DIRS


@lru_cache(maxsize=None)
def _handle() -> Optional[ctypes.CDLL]:
    path = libgearman_path()
    if not path:
        return None
    try:
        # RTLD_NOLOAD: only look at the library already loaded, never load another copy
        return ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | os.RTLD_LAZY)
    except OSError:
        return None


def _symbol(name: str) -> bool:
    lib = _handle()
    return lib is not None and hasattr(lib, name)   # dlsym searches the dependency tree too


def has(feature: str) -> bool:
    """Whether the libgearman in use has a feature: see ``pygearman.FEATURES``."""
    from pygearman._libgearman import libgearman_version

    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}; known: {', '.join(sorted(FEATURES))}")
    if feature == "ssl":
        return _symbol("SSL_CTX_new") or _symbol("SSL_new")
    if feature == "worker_ssl":
        return _symbol("gearman_worker_set_ssl")
    return version_tuple(libgearman_version()) >= (2, 0, 0)

"""Feature probes of the libgearman this process loaded (pygearman.has)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from functools import lru_cache
from typing import Dict, Optional, Tuple

__all__ = ["has", "FEATURES", "libgearman_path", "version_tuple"]

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


def libgearman_path() -> Optional[str]:
    """The file of the libgearman mapped into this process (the bundled one in a wheel)."""
    from pygearman import _libgearman  # noqa: F401  (makes sure it is loaded)

    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(None, 1)[-1]
                if "libgearman" in os.path.basename(path) and ".so" in path:
                    return path
    except OSError:
        pass
    return ctypes.util.find_library("gearman")


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

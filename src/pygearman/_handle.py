"""JobHandle: a job handle that knows which job server issued it (made in the compiled core)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple, Type

__all__ = ["JobHandle", "handle_class"]

if TYPE_CHECKING:
    class JobHandle(str):
        """A job handle (a ``str``) that knows the job server that issued it (``.server``)."""

        server: Optional[str]

        def __new__(cls, handle: str, server: Optional[str] = None) -> "JobHandle": ...

        def __reduce__(self) -> Tuple[Any, ...]: ...

    def handle_class(server: str) -> Type[JobHandle]: ...
else:
    # a str subclass that the cyclic GC does not track: see _core/handle.pxi
    from pygearman._libgearman import JobHandle, handle_class

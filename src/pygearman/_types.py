"""The type aliases of the public API, in one place (client, worker and asyncio use them)."""
from __future__ import annotations

import datetime
from typing import Any, Callable, Union

from pygearman._libgearman import GearmanJob, GearmanTask

#: What a job carries: bytes-like, or str (sent as UTF-8).
Workload = Union[bytes, bytearray, memoryview, str]
#: A function name, unique, identifier or handle.
Name = Union[str, bytes]
#: A time for a scheduled background job: a datetime or a POSIX timestamp.
When = Union[datetime.datetime, float, int]
#: A timeout in seconds, None for none, or the client's default (leave the argument out).
Timeout = Union[float, None, Any]
#: What a worker function may return.
Result = Union[bytes, bytearray, memoryview, str, None]
#: A worker function.
JobFunction = Callable[[GearmanJob], Result]
#: A task-set callback: gets the task.
TaskCallback = Callable[[GearmanTask], Any]
#: A task-set callback for WORK_DATA/WORK_WARNING: gets the task and the chunk.
TaskChunkCallback = Callable[[GearmanTask, bytes], Any]
#: A single job's on_data/on_warning: gets the chunk.
DataCallback = Callable[[bytes], Any]
#: A single job's on_status: gets numerator and denominator.
StatusCallback = Callable[[int, int], Any]

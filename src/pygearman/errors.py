"""Exceptions raised by pygearman, keyed by libgearman's gearman_return_t."""
from __future__ import annotations

import enum
import math
from typing import Dict, Optional, Type

__all__ = [
    "ReturnCode",
    "GearmanError",
    "GearmanConnectionError",
    "GearmanTimeoutError",
    "InvalidArgumentError",
    "ProtocolError",
    "ServerError",
    "NotSupportedError",
    "JobError",
    "JobFailed",
    "JobException",
    "Retry",
    "error_class_for",
    "NON_ERROR_CODES",
]


class ReturnCode(enum.IntEnum):
    """libgearman's ``gearman_return_t`` (values checked against the C enum by the tests)."""

    SUCCESS = 0
    IO_WAIT = 1
    SHUTDOWN = 2
    SHUTDOWN_GRACEFUL = 3
    ERRNO = 4
    EVENT = 5
    TOO_MANY_ARGS = 6
    NO_ACTIVE_FDS = 7
    INVALID_MAGIC = 8
    INVALID_COMMAND = 9
    INVALID_PACKET = 10
    UNEXPECTED_PACKET = 11
    GETADDRINFO = 12
    NO_SERVERS = 13
    LOST_CONNECTION = 14
    MEMORY_ALLOCATION_FAILURE = 15
    JOB_EXISTS = 16
    JOB_QUEUE_FULL = 17
    SERVER_ERROR = 18
    WORK_ERROR = 19
    WORK_DATA = 20
    WORK_WARNING = 21
    WORK_STATUS = 22
    WORK_EXCEPTION = 23
    WORK_FAIL = 24
    NOT_CONNECTED = 25
    COULD_NOT_CONNECT = 26
    SEND_IN_PROGRESS = 27
    RECV_IN_PROGRESS = 28
    NOT_FLUSHING = 29
    DATA_TOO_LARGE = 30
    INVALID_FUNCTION_NAME = 31
    INVALID_WORKER_FUNCTION = 32
    NO_REGISTERED_FUNCTION = 33
    NO_REGISTERED_FUNCTIONS = 34
    NO_JOBS = 35
    ECHO_DATA_CORRUPTION = 36
    NEED_WORKLOAD_FN = 37
    PAUSE = 38
    UNKNOWN_STATE = 39
    PTHREAD = 40
    PIPE_EOF = 41
    QUEUE_ERROR = 42
    FLUSH_DATA = 43
    SEND_BUFFER_TOO_SMALL = 44
    IGNORE_PACKET = 45
    UNKNOWN_OPTION = 46
    TIMEOUT = 47
    ARGUMENT_TOO_LARGE = 48
    INVALID_ARGUMENT = 49
    IN_PROGRESS = 50
    INVALID_SERVER_OPTION = 51
    JOB_NOT_FOUND = 52


class GearmanError(Exception):
    """Base class of every error pygearman raises for a libgearman or job failure.

    ``code`` is the :class:`ReturnCode` (``None`` for errors found by pygearman itself)
    and ``message`` the most specific text libgearman gave.
    """

    code: Optional[ReturnCode]
    message: str

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = ReturnCode(code) if code is not None else None

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        return f"{self.message} [{self.code.name}]"


class GearmanConnectionError(GearmanError, ConnectionError):
    """No job server could be reached, or the connection was lost."""


class GearmanTimeoutError(GearmanError, TimeoutError):
    """The call's deadline passed before the job server or the job answered."""


class InvalidArgumentError(GearmanError, ValueError):
    """libgearman or the job server rejected an argument."""


class ProtocolError(GearmanError):
    """The peer sent something that is not the Gearman protocol."""


class ServerError(GearmanError):
    """The job server reported an error (queue full, job not found, ...)."""


class NotSupportedError(GearmanError):
    """The feature does not exist in the libgearman this module runs with."""


class JobError(GearmanError):
    """Base class of job outcomes other than success."""

    handle: Optional[str]
    function: Optional[str]

    def __init__(self, message: str, code: Optional[int] = None, *,
                 handle: Optional[str] = None, function: Optional[str] = None) -> None:
        super().__init__(message, code)
        self.handle = handle
        self.function = function


class JobFailed(JobError):
    """The worker reported WORK_FAIL (no reason travels with it in the protocol)."""


class JobException(JobError):
    """The worker reported WORK_EXCEPTION; ``message`` is the worker's own text."""

    def __str__(self) -> str:
        return self.message


class Retry(Exception):
    """Raise in a worker function to hand the job back to the queue (another worker, or this
    one, runs it again). After ``max_retries`` hand-backs seen by this worker (default: the
    worker's ``max_retries``, 3) the job fails with a JobException instead. ``delay`` seconds
    are waited before handing it back. gearmand's own ``--job-retries=N`` also counts these
    attempts and fails the job server-side after N.
    """

    def __init__(self, message: str = "", *, delay: float = 0.0,
                 max_retries: Optional[int] = None) -> None:
        super().__init__(message)
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            raise TypeError(f"Retry(delay=) must be a number of seconds, not {type(delay).__name__}")
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"Retry(delay=) must be a finite number of seconds >= 0, got {delay!r}")
        if max_retries is not None:
            if isinstance(max_retries, bool) or not isinstance(max_retries, int):
                raise TypeError("Retry(max_retries=) must be an int or None, not "
                                f"{type(max_retries).__name__}")
            if not 0 <= max_retries <= 1000000:
                raise ValueError(f"Retry(max_retries=) must be between 0 and 1000000, got {max_retries}")
        self.delay = float(delay)
        self.max_retries = max_retries


# Codes that are not errors when a call returns them (progress or internal states).
NON_ERROR_CODES = frozenset({
    ReturnCode.SUCCESS, ReturnCode.IO_WAIT, ReturnCode.SHUTDOWN, ReturnCode.SHUTDOWN_GRACEFUL,
    ReturnCode.JOB_EXISTS, ReturnCode.IN_PROGRESS, ReturnCode.PAUSE, ReturnCode.WORK_DATA,
    ReturnCode.WORK_WARNING, ReturnCode.WORK_STATUS, ReturnCode.NO_JOBS, ReturnCode.IGNORE_PACKET,
    ReturnCode.FLUSH_DATA,
})

_CLASSES: Dict[ReturnCode, Type[GearmanError]] = {}
for _cls, _codes in (
    (GearmanConnectionError, ("NO_ACTIVE_FDS", "GETADDRINFO", "NO_SERVERS", "LOST_CONNECTION",
                              "NOT_CONNECTED", "COULD_NOT_CONNECT", "ERRNO", "PIPE_EOF",
                              "ECHO_DATA_CORRUPTION", "SEND_IN_PROGRESS", "RECV_IN_PROGRESS",
                              "NOT_FLUSHING")),
    (GearmanTimeoutError, ("TIMEOUT",)),
    (InvalidArgumentError, ("INVALID_ARGUMENT", "ARGUMENT_TOO_LARGE", "DATA_TOO_LARGE",
                            "INVALID_FUNCTION_NAME", "INVALID_WORKER_FUNCTION",
                            "NO_REGISTERED_FUNCTION", "NO_REGISTERED_FUNCTIONS",
                            "NEED_WORKLOAD_FN", "INVALID_SERVER_OPTION", "UNKNOWN_OPTION",
                            "TOO_MANY_ARGS", "SEND_BUFFER_TOO_SMALL")),
    (ProtocolError, ("INVALID_MAGIC", "INVALID_COMMAND", "INVALID_PACKET", "UNEXPECTED_PACKET")),
    (ServerError, ("SERVER_ERROR", "JOB_QUEUE_FULL", "JOB_NOT_FOUND", "QUEUE_ERROR",
                   "MEMORY_ALLOCATION_FAILURE", "PTHREAD", "EVENT", "UNKNOWN_STATE")),
    (JobFailed, ("WORK_FAIL", "WORK_ERROR")),
    (JobException, ("WORK_EXCEPTION",)),
):
    for _name in _codes:
        _CLASSES[ReturnCode[_name]] = _cls


def error_class_for(code: int) -> Type[GearmanError]:
    """The exception class raised for a libgearman return code (GearmanError if unmapped)."""
    try:
        return _CLASSES[ReturnCode(code)]
    except (KeyError, ValueError):
        return GearmanError

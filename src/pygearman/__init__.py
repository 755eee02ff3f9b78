"""pygearman: a fast Gearman client and worker for Python, built on libgearman."""
import logging as _logging

from pygearman._features import FEATURES, has
from pygearman._libgearman import (
    LIBGEARMAN_BUILD_VERSION,
    GearmanJob,
    GearmanTask,
    CompletedTasks,
    JobStream,
    libgearman_version,
    new_unique,
)
from pygearman._version import __version__
from pygearman._handle import JobHandle
from pygearman.client import GearmanClient, JobStatus, Priority
from pygearman.errors import (
    GearmanConnectionError,
    GearmanError,
    GearmanTimeoutError,
    InvalidArgumentError,
    JobError,
    JobException,
    JobFailed,
    NotSupportedError,
    ProtocolError,
    ReturnCode,
    Retry,
    ServerError,
)
from pygearman.worker import GearmanWorker

__all__ = [
    "JobHandle",
    "__version__",
    "GearmanClient",
    "GearmanWorker",
    "GearmanJob",
    "GearmanTask",
    "JobStream",
    "CompletedTasks",
    "Retry",
    "Priority",
    "JobStatus",
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
    "ReturnCode",
    "libgearman_version",
    "LIBGEARMAN_BUILD_VERSION",
    "has",
    "FEATURES",
    "new_unique",
]

# A library logs; the application decides what is shown (nothing by default).
_logging.getLogger("pygearman").addHandler(_logging.NullHandler())

"""pygearman: a fast Gearman client and worker for Python, built on libgearman."""
from pygearman._libgearman import GearmanJob, GearmanTask, JobStream, libgearman_version, new_unique
from pygearman._version import __version__
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
    "__version__",
    "GearmanClient",
    "GearmanWorker",
    "GearmanJob",
    "GearmanTask",
    "JobStream",
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
    "new_unique",
]

# cython: language_level=3
"""The compiled core of pygearman: owns every libgearman pointer and releases the GIL around I/O.

One extension module in files by concern (docs/libgearman-1.1.20.md lists the library's traps
that the comments cite)."""
cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.unicode cimport PyUnicode_GET_LENGTH
from cpython.pythread cimport PyThread_get_thread_ident

from libc.math cimport ceil, isnan
from libc.stdint cimport uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcmp, memcpy, memset, strlen

cdef extern from "<string.h>" nogil:
    size_t strnlen(const char *s, size_t maxlen)
from libc.time cimport time_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from posix.unistd cimport read

from pygearman.includes.libgearman cimport *

import logging
import os
import re
import signal as _signal_module
import threading
import warnings

from pygearman.errors import (
    GearmanConnectionError,
    GearmanError,
    GearmanTimeoutError,
    JobException,
    JobFailed,
    NotSupportedError,
    ProtocolError,
    Retry,
    error_class_for,
)
from pygearman._servers import enlarge_socket_buffers, probe_gearman, reset_on_close, unsent_bytes

include "_core/util.pxi"
include "_core/handle.pxi"
include "_core/errors.pxi"
include "_core/events.pxi"
include "_core/conn.pxi"
include "_core/route.pxi"
include "_core/run.pxi"
include "_core/task.pxi"
include "_core/batch.pxi"
include "_core/client.pxi"
include "_core/send.pxi"
include "_core/job.pxi"
include "_core/worker.pxi"
include "_core/wmulti.pxi"

# Layouts of the compiled classes (so other Cython modules can cimport them).
from pygearman.includes.libgearman cimport *


cdef struct _Payload:
    const char *ptr      # NULL for an empty payload (libgearman rejects non-NULL with size 0)
    size_t size
    bint has_view
    Py_buffer view


cdef class _ServerConn:
    cdef gearman_client_st *c      # one libgearman client per job server (failover and arming are per
                                   # server); NULL until first use and after reset()
    cdef readonly bytes host       # as given by the user (hostname or IP literal)
    cdef readonly int port
    cdef bint armed                # the "exceptions" server option was accepted on this connection
    cdef double down_until         # monotonic time until which a failed server is tried last
    cdef int ensure(self) except -1
    cdef void reset(self) noexcept


cdef class Client:
    cdef list _conns               # [_ServerConn]; owns every gearman_client_st
    cdef Py_ssize_t _rr            # round-robin cursor for submissions without a unique
    cdef double _default_timeout   # seconds; < 0 means no deadline
    cdef bint _busy                # a call is running (a handle is not thread-safe)
    cdef bint _closed
    cdef dict _handle_server       # job handle -> _ServerConn, so job_status asks the right server
    cdef int _check_usable(self) except -1
    cdef int _enter(self) except -1
    cdef void _leave(self) noexcept
    cdef int _arm(self, _ServerConn s, double deadline) except -1
    cdef list _order(self, bytes unique)
    cdef object _submit(self, int priority, bint background, object function, object workload,
                        object unique, object timeout)
    cdef object _submit_on(self, _ServerConn s, int priority, bint background, bytes fn,
                           const char *uq, _Payload *p, double deadline)
    cdef int _run(self, _ServerConn s, gearman_task_st *task, double deadline) except -1
    cdef void _remember(self, str handle, _ServerConn s)


cdef class Worker:
    cdef gearman_worker_st *_w
    cdef list _servers             # [(host bytes, port)] to re-add after a reset
    cdef dict _functions           # name -> _Function; keeps every context pointer given to C alive
    cdef list _retired             # replaced/unregistered _Function objects libgearman may still point to
    cdef int _read_fd              # libgearman's wakeup pipe (gearman_kill writes to it)
    cdef int _write_fd
    cdef bint _busy
    cdef bint _closed
    cdef bint _stop_requested
    cdef object _pending_exc       # BaseException from a job function to re-raise once work() returns
    cdef unsigned long long _jobs  # jobs handed to a function so far
    cdef double _backoff           # current reconnect backoff in seconds (0 while connected)
    cdef int _enter(self) except -1
    cdef void _drain_wakeup(self) noexcept
    cdef int _backoff_wait(self, double deadline) except -1
    cdef object _loop(self, bint one, double deadline)


cdef class GearmanJob:
    cdef gearman_job_st *_job      # borrowed from libgearman; NULL once the function has returned
    cdef bint _finished            # complete/fail/exception already sent by the user
    cdef object _workload          # bytes, copied once
    cdef unsigned long _owner      # thread that runs the function (job calls from other threads are refused)
    cdef int _check(self) except -1
    cdef int _sent(self, gearman_return_t rc, str what) except -1
    cdef int _send_bytes(self, int kind, object data) except -1
    cdef int _send_exception(self, bytes message) except -1

# Layouts of the compiled classes (so other Cython modules can cimport them).
from cpython.ref cimport PyObject
from pygearman.includes.libgearman cimport *


cdef struct _Payload:
    const char *ptr      # NULL for an empty payload (libgearman rejects non-NULL with size 0)
    size_t size
    bint has_view
    Py_buffer view


cdef struct _RunCtl:
    double slice_end     # when run_tasks should hand control back even if packets keep coming
    bint cb_error        # a Python callback raised; the exception waits on the Client
    bint pause_requested # stream(): a chunk is ready for the iterator
    Py_ssize_t done      # tasks finished in this run (complete/fail/exception)
    Py_ssize_t created   # JOB_CREATED packets seen in this run (the server has those jobs)


cdef struct _TaskCtx:
    void *result         # malloc'd by libgearman (gearman_task_take_data); ours to free
    size_t result_len
    bint have_result
    int kind             # 0 foreground job, 1 background job, 2 status query
    int rc               # outcome recorded by the callbacks (-1: none yet). Batches run with
                         # GEARMAN_CLIENT_FREE_TASKS, so the task itself is gone afterwards
    char handle[64]      # job handle, copied at JOB_CREATED
    char *exc            # WORK_EXCEPTION text (malloc'd; ours to free)
    size_t exc_len
    bint skip_next       # we paused run_tasks in a callback; libgearman calls it again on resume
    int wants            # EV_* events that need a Python call
    PyObject *pytask     # the GearmanTask for Python callbacks (borrowed: the run keeps it alive)
    _RunCtl *ctl


cdef class _ServerConn:
    cdef gearman_client_st *c      # one libgearman client per job server (failover and arming are per
                                   # server); NULL until first use and after reset()
    cdef readonly bytes host       # as given by the user (hostname or IP literal)
    cdef readonly int port
    cdef bint armed                # the "exceptions" server option was accepted on this connection
    cdef double down_until         # monotonic time until which a failed server is tried last
    cdef bint probed               # a Gearman server answered our own probe (see _probe)
    cdef int ensure(self, Client owner) except -1
    cdef void reset(self) noexcept


cdef class GearmanTask:
    cdef Client _client
    cdef bytes _fn                 # function name
    cdef bytes _uq                 # unique, or None (one is generated per submission)
    cdef bytes _workload           # copied at add time
    cdef int _priority
    cdef bint _background
    cdef bint _status_only         # add_task_status: a status query, not a job
    cdef str _state
    cdef str _handle
    cdef object _result
    cdef object _error
    cdef object _exception_text
    cdef unsigned int _num
    cdef unsigned int _den
    cdef bint _known
    cdef bint _running
    cdef list _data
    cdef list _warnings
    cdef JobStream _stream         # set for a stream() job
    cdef object _on_created, _on_data, _on_warning, _on_status
    cdef object _on_complete, _on_fail, _on_exception
    cdef public object context     # the user's object for this task
    cdef void _bind(self, _TaskCtx *ctx) noexcept
    cdef object _callback(self, str name)
    cdef int _event(self, gearman_task_st *task, int ev) except -1
    cdef void _finish(self, _TaskCtx *ctx) noexcept


cdef class JobStream:
    cdef GearmanTask _task
    cdef list _chunks              # chunks received and not yet yielded
    cdef bint _done
    cdef double _deadline
    cdef _Payload _payload         # the workload, borrowed until the job is sent
    cdef object _keep              # keeps the workload's bytes alive
    cdef _RunCtl *_ctl             # malloc'd: outlives the Python frames between next() calls
    cdef _TaskCtx *_ctx
    cdef char _genq[65]            # the unique sent with the job
    cdef gearman_task_st *_gtask
    cdef object _server            # _ServerConn running the job
    cdef void _push(self, bytes chunk)


cdef class Client:
    cdef list _conns               # [_ServerConn]; owns every gearman_client_st
    cdef Py_ssize_t _rr            # round-robin cursor for submissions without a unique
    cdef double _default_timeout   # seconds; < 0 means no deadline
    cdef bint _busy                # a call is running (a handle is not thread-safe)
    cdef bint _closed
    cdef dict _handle_server       # job handle -> _ServerConn, so job_status asks the right server
    cdef list _pending             # GearmanTasks added and not yet run
    cdef dict _callbacks           # client-wide task callbacks by event name
    cdef bytes _namespace
    cdef bytes _identifier
    cdef object _cb_exc            # exception raised by a task callback during run_tasks
    cdef JobStream _stream         # the open stream(), if any
    cdef int _check_usable(self) except -1
    cdef int _check_idle(self) except -1
    cdef int _enter(self) except -1
    cdef void _leave(self) noexcept
    cdef int _arm(self, _ServerConn s, double deadline) except -1
    cdef list _order(self, bytes unique)
    cdef object _failover(self, object attempt, bytes unique)
    cdef object _server_down(self, _ServerConn s, object not_sent)
    cdef object _none_reachable(self, object last)
    cdef int _run(self, _ServerConn s, _RunCtl *ctl, double deadline, bint any_known) except -1
    cdef object _submit(self, int priority, bint background, object function, object workload,
                        object unique, object timeout, object callbacks=*, object when=*)
    cdef int _check_fn_len(self, bytes fn) except -1
    cdef object _submit_on(self, _ServerConn s, int priority, bint background, bytes fn,
                           const char *uq, _Payload *p, double deadline, object callbacks,
                           double epoch)
    cdef void _remember(self, str handle, _ServerConn s)
    cdef void _stream_free(self, JobStream st) noexcept
    cdef object _stream_start(self, _ServerConn srv, JobStream st)
    cdef list _group(self, list tasks)
    cdef int _run_group(self, list group, double deadline, int batch, Py_ssize_t idx) except -1
    cdef object _failover_chunk(self, list chunk, list order, double deadline)
    cdef void _fail_tasks(self, list chunk, object err)
    cdef object _run_chunk(self, _ServerConn s, list chunk, double deadline)
    cdef object _batch_on(self, _ServerConn s, bytes fn, list items, list enc, list uqs,
                          Py_ssize_t start, Py_ssize_t stop, int priority, bint background,
                          double deadline, list out)
    cdef object _unique_status_on(self, _ServerConn s, bytes uq, double deadline)


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
    cdef bytes _identifier         # sent again after reconnects (libgearman forgets it)
    cdef bint _reident             # the identifier must be sent again
    cdef bint _reident_next        # ... with the next job (a Retry closed the sockets)
    cdef double _ident_at          # when it was last sent
    cdef dict _retries             # job handle -> times this worker handed it back (Retry)
    cdef int _max_retries
    cdef bint _probed              # every server answered our probe like a Gearman server
    cdef bint _bufs_done           # socket buffers enlarged since the last (re)connect
    cdef int _apply_identifier(self) except -1
    cdef int _probe_all(self) except -1
    cdef int _backoff_sleep(self, double seconds) except -1
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

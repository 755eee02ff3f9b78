# Tasks and streams: what Python sees of a job in a task set, and the stream iterator.


cdef class _Listener:
    """Receives the events of one job (inside run_tasks, with the GIL)."""

    cdef int _wants(self) noexcept:
        return EV_ALL

    cdef int _event(self, gearman_task_st *task, _TaskCtx *ctx, int ev) except -1:
        return 0


cdef class GearmanTask(_Listener):
    """One job of a task set (see GearmanClient.add_task). Its fields are copied out of
    libgearman as events arrive, so they stay readable after the run.

    ``context``: the object passed as ``add_task(..., context=...)`` (None by default), kept
    for the caller to tell its tasks apart; it may be reassigned. Tasks are made by
    ``GearmanClient.add_task*()``, ``stream()`` and ``as_completed()``, never directly.
    Like its client, a task is not thread-safe."""

    def __init__(self, *args, **kwargs):
        raise TypeError("GearmanTask objects are made by GearmanClient.add_task()")

    @property
    def function_name(self):
        """The function name (str)."""
        return self._fn.decode("utf-8", "replace") if self._fn is not None else None

    @property
    def unique(self):
        """The unique key the task was added with (str), or None."""
        return self._uq.decode("utf-8", "replace") if self._uq is not None else None

    @property
    def workload(self):
        """The workload (bytes), copied when the task was added."""
        return self._workload

    @property
    def priority(self):
        """The priority (an int of Priority)."""
        return self._priority

    @property
    def background(self):
        """True for a background job."""
        return self._background

    @property
    def handle(self):
        """The job handle once the server has the job (str), else None."""
        return self._handle

    @property
    def state(self):
        """'new', 'queued' (handed to libgearman), 'created' (the server has the job: where a
        background task ends), 'running', 'complete', 'failed', 'exception' or 'error' (the run
        ended first: a deadline, a lost connection; see ``error``)."""
        return self._state if self._state is not None else "new"

    @property
    def result(self):
        """The WORK_COMPLETE payload (bytes) or None."""
        return self._result

    @property
    def error(self):
        """The exception that ended this task (JobException, JobFailed, ConnectionError...)."""
        return self._error

    @property
    def exception(self):
        """The worker's exception text, for a task that ended in WORK_EXCEPTION."""
        return self._exception_text

    @property
    def numerator(self):
        """The last status numerator reported."""
        return self._num

    @property
    def denominator(self):
        """The last status denominator reported."""
        return self._den

    @property
    def known(self):
        """Whether the server knows the job (status queries; True while a job runs)."""
        return self._known

    @property
    def running(self):
        """Whether a worker has the job."""
        return self._running

    @property
    def finished(self):
        """True once the task has its outcome (for a background job: once it is queued)."""
        return self._state in ("complete", "failed", "exception", "error") or (
            self._background and self._state == "created")

    @property
    def data(self):
        """WORK_DATA chunks received so far (list of bytes)."""
        return list(self._data) if self._data is not None else []

    @property
    def warnings(self):
        """WORK_WARNING payloads received so far (list of bytes)."""
        return list(self._warnings) if self._warnings is not None else []

    cdef int _wants(self) noexcept:
        return self._want_mask

    cdef object _callback(self, str name):
        if name == "created":
            cb = self._on_created
        elif name == "data":
            cb = self._on_data
        elif name == "warning":
            cb = self._on_warning
        elif name == "status":
            cb = self._on_status
        elif name == "complete":
            cb = self._on_complete
        elif name == "fail":
            cb = self._on_fail
        else:
            cb = self._on_exception
        if cb is None and self._in_set and self._client is not None:
            # client-wide callbacks (set_*_callback) are for task sets only
            cb = self._client._callbacks.get(name)
        return cb

    cdef int _event(self, gearman_task_st *task, _TaskCtx *ctx, int ev) except -1:
        cdef const char *p
        cdef GearmanTask twin
        if ev == EV_CREATED:
            self._handle = ctx.handle.decode("utf-8", "replace")
            self._known = True
            self._state = "created"
            cb = self._callback("created")
            if self._notify is not None and self._background and not self._handed:
                self._handed = True
                self._notify.append(self)            # as_completed(): queued is done
                ctx.ctl.pause_requested = True
        elif ev == EV_DATA or ev == EV_WARNING:
            p = <const char *>gearman_task_data(task)
            chunk = p[:gearman_task_data_size(task)] if p != NULL else b""
            self._state = "running"
            self._running = True
            if ev == EV_DATA:
                if self._data is None:
                    self._data = []
                self._data.append(chunk)
                if self._stream is not None:
                    self._stream._chunks.append(chunk)
                    ctx.ctl.pause_requested = True
                cb = self._callback("data")
            else:
                if self._warnings is None:
                    self._warnings = []
                self._warnings.append(chunk)
                cb = self._callback("warning")
            if cb is not None:
                cb(self, chunk)
            cb = None
        elif ev == EV_STATUS:
            self._num = ctx.num
            self._den = ctx.den
            if self._status_only:
                self._known = ctx.known
                self._running = ctx.running
            else:
                self._running = True
                self._state = "running"
            cb = self._callback("status")
        elif ev == EV_COMPLETE:
            self._result = (PyBytes_FromStringAndSize(<char *>ctx.result, ctx.result_len)
                            if ctx.result != NULL else b"")
            self._state = "complete"
            self._known = self._running = False
            cb = self._callback("complete")
        elif ev == EV_EXCEPTION:
            # _record() has already copied the outcome into the task's context
            self._error = _ctx_error(ctx, self.function_name)
            self._exception_text = self._error.message
            self._state = "exception"
            self._known = self._running = False
            cb = self._callback("exception")
        else:
            if self._state == "exception":
                return 0          # WORK_FAIL after WORK_EXCEPTION: one outcome
            self._error = _ctx_error(ctx, self.function_name)
            self._state = "failed"
            self._known = self._running = False
            cb = self._callback("fail")
        if cb is not None:
            cb(self)
        if self._notify is not None and ev & (EV_COMPLETE | EV_FAIL | EV_EXCEPTION) \
                and not self._handed:
            self._handed = True
            self._notify.append(self)                # as_completed(): yield it next
            ctx.ctl.pause_requested = True
        if self._twins is not None:
            for twin in self._twins:
                twin._event(task, ctx, ev)
        return 0

    cdef bint _watched(self) noexcept:
        """Whether Python code can watch this task during the run: a callback of its own, or
        streamed, or handed out by as_completed()."""
        return not (self._on_created is None and self._on_data is None
                    and self._on_warning is None and self._on_status is None
                    and self._on_complete is None and self._on_fail is None
                    and self._on_exception is None and self._notify is None
                    and self._stream is None)

    cdef int _settle(self, _TaskCtx *ctx, object err) except -1:
        """After the run: the state from what the context kept (the task itself is freed)."""
        if self._handle is None and ctx.handle[0] != 0:
            self._handle = ctx.handle.decode("utf-8", "replace")
        if self._state in ("complete", "failed", "exception"):
            return 0
        if err is not None:
            self._error = err
            self._state = "error"
        elif ctx.rc == GEARMAN_SUCCESS:
            if self._status_only:
                self._known = ctx.known
                self._running = ctx.running
                self._num = ctx.num
                self._den = ctx.den
            elif not self._background and self._result is None:
                self._result = (PyBytes_FromStringAndSize(<char *>ctx.result, ctx.result_len)
                                if ctx.result != NULL else b"")
            # a background job is queued, not done: its task ends as 'created', with its handle
            self._state = "created" if self._background else "complete"
            if not self._status_only:
                # as the created (queued: known) or complete (done: neither) event says
                self._known = self._background
                self._running = False
        elif ctx.rc == GEARMAN_WORK_EXCEPTION:
            self._error = _ctx_error(ctx, self.function_name)
            self._exception_text = self._error.message
            self._state = "exception"
            self._known = self._running = False
        elif ctx.rc == GEARMAN_WORK_FAIL:
            self._error = _ctx_error(ctx, self.function_name)
            self._state = "failed"
            self._known = self._running = False
        elif self._state is not None and self._state != "new":
            self._error = _ctx_error(ctx, self.function_name)
            self._state = "error"
        return 0

    def __repr__(self):
        return f"<GearmanTask {self.function_name!r} state={self.state} handle={self._handle!r}>"


cdef GearmanTask _new_task(Client client, bytes fn, bytes uq, object workload, int priority,
                           bint background):
    cdef GearmanTask t = GearmanTask.__new__(GearmanTask)
    t._client = client
    t._fn = fn
    t._uq = uq
    t._workload = workload
    t._priority = priority
    t._background = background
    t._state = "new"
    t._want_mask = EV_ALL           # (_data and _warnings: lists made with the first chunk)
    return t


@cython.final
cdef class JobStream:
    """Iterator over the WORK_DATA chunks of one foreground job (GearmanClient.stream()).
    After the loop, ``result`` holds the final WORK_COMPLETE payload. Leaving the loop early
    (``break``, an exception, ``close()``) abandons the job: its connection is dropped."""

    def __init__(self, *args, **kwargs):
        raise TypeError("JobStream objects are made by GearmanClient.stream()")

    def __iter__(self):
        return self

    def __next__(self):
        if self._chunks:
            return self._chunks.pop(0)
        if self._task is None:
            raise RuntimeError("this JobStream was not made by GearmanClient.stream()")
        if self._done:
            if self._task._state == "error" and self._task._error is not None:
                raise self._task._error
            raise StopIteration
        self._client._stream_step(self)
        if self._chunks:
            return self._chunks.pop(0)
        if self._task._error is not None and self._task._state == "error":
            raise self._task._error
        if self._task._state in ("failed", "exception"):
            raise self._task._error
        raise StopIteration

    @property
    def task(self):
        """The GearmanTask of the job (state, handle, data, result)."""
        return self._task

    @property
    def result(self):
        """The WORK_COMPLETE payload once the stream is exhausted (else None)."""
        return self._task._result if self._task is not None else None

    @property
    def closed(self):
        """True once the job has ended or the stream was closed."""
        return self._done

    cdef void _release(self) noexcept:
        """Give back the workload buffer and the client (the job has ended or was abandoned)."""
        _payload_release(&self._payload)
        self._keep = None
        self._done = True
        if self._client is not None and self._client._stream is self:
            self._client._stream = None

    cdef void _abandon_after_fork(self) noexcept:
        """The process forked: the job and its connection belong to the parent."""
        if self._run is not None:
            del self._run.lanes[:]       # forgotten, not reset: see _Conn.forget
        if self._task is not None and not self._task.finished:
            self._task._error = RuntimeError("the stream was opened before the process forked")
            self._task._state = "error"
        self._release()

    def close(self):
        """Abandon the job if it is still running (its connection is dropped; the job may
        still run on the server). Idempotent."""
        if self._done:
            return
        if self._run is not None:
            self._run.close()
        if self._task is not None and not self._task.finished:
            self._task._error = RuntimeError("the stream was closed before its job finished")
            self._task._state = "error"
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        fn = self._task.function_name if self._task is not None else None
        return f"<JobStream {fn!r} {'closed' if self._done else 'open'}>"

    def __dealloc__(self):
        _payload_release(&self._payload)


@cython.final
cdef class CompletedTasks:
    """Iterator over the tasks of a task set in the order they finish
    (GearmanClient.as_completed()). Every task is in flight at once, as with run_tasks();
    callbacks still run. Leaving the loop early abandons the jobs still running (their
    connections are dropped); a deadline or a lost connection is raised from the loop, every
    task keeping the state it reached."""

    def __init__(self, *args, **kwargs):
        raise TypeError("CompletedTasks objects are made by GearmanClient.as_completed()")

    def __iter__(self):
        return self

    def __next__(self):
        cdef GearmanTask t
        if self._ready:
            return self._ready.pop(0)
        if self._client is None:
            raise RuntimeError("this CompletedTasks was not made by GearmanClient.as_completed()")
        if self._done:
            raise StopIteration
        self._client._completed_step(self)
        if self._ready:
            return self._ready.pop(0)
        raise StopIteration

    @property
    def tasks(self):
        """Every task of the set, in the order they were added."""
        return list(self._tasks) if self._tasks is not None else []

    @property
    def closed(self):
        """True once every task has finished or the iteration was closed."""
        return self._done

    cdef void _release(self) noexcept:
        cdef GearmanTask t
        self._done = True
        if self._tasks is not None:
            for t in self._tasks:
                t._notify = None
        if self._client is not None and self._client._completing is self:
            self._client._completing = None

    def close(self):
        """Abandon the jobs still running (their connections are dropped). Idempotent."""
        if self._done:
            return
        if self._run is not None:
            self._run.close()
            self._run.client = None
            _taskset_settle(self._run, self._tasks)
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        n = len(self._tasks) if self._tasks is not None else 0
        return f"<CompletedTasks {n} tasks {'closed' if self._done else 'open'}>"

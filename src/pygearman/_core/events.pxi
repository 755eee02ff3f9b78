# Event trampolines: libgearman calls these inside run_tasks with the GIL released. They record
# into the task's C context and only take the GIL when a Python callback was asked for.

# libgearman's own log lines go to the "pygearman.libgearman" logger, as diagnostics. libgearman
# is only asked for lines when that logger is enabled for INFO or lower when a handle is made.
_lg_log = logging.getLogger("pygearman.libgearman")


cdef void _log_line(const char *line, gearman_verbose_t verbose, void *context) noexcept with gil:
    """context: the owner's _Exc (borrowed; the owner outlives its handles)."""
    cdef str text
    try:
        text = _clean(_text(line))
        # every idle worker slice "fails" with GEARMAN_TIMEOUT: that is not news
        if verbose <= GEARMAN_VERBOSE_ERROR and "GEARMAN_TIMEOUT" not in text:
            level = logging.INFO
        else:
            level = logging.DEBUG
        _lg_log.log(level, "%s", text)
    except BaseException as e:
        if context != NULL:
            (<_Exc>context).store(e)


cdef gearman_verbose_t _log_verbosity():
    cdef int level = _lg_log.getEffectiveLevel()
    if level <= logging.DEBUG:
        return GEARMAN_VERBOSE_DEBUG
    if level <= logging.INFO:
        return GEARMAN_VERBOSE_ERROR
    return GEARMAN_VERBOSE_NEVER


cdef enum:
    EV_CREATED = 1
    EV_DATA = 2
    EV_WARNING = 4
    EV_STATUS = 8
    EV_COMPLETE = 16
    EV_FAIL = 32
    EV_EXCEPTION = 64
    EV_PROGRESS = 15            # created | data | warning | status
    EV_ALL = 127


cdef int _dispatch(gearman_task_st *task, _TaskCtx *ctx, int ev) noexcept with gil:
    """Hand an event to the task's listener. Returns 1 to make run_tasks return (a callback
    raised, or a stream has a chunk to yield)."""
    cdef _Listener li = <_Listener>ctx.listener
    try:
        li._event(task, ctx, ev)
    except BaseException as e:
        (<_Exc>ctx.carrier).store(e)
        ctx.ctl.cb_error = True
        return 1
    return 1 if ctx.ctl.pause_requested else 0


cdef inline void _finished(_TaskCtx *ctx) noexcept nogil:
    """Count a task as done once, whatever events its end brings."""
    if not ctx.finished:
        ctx.finished = True
        ctx.ctl.done += 1


cdef inline void _record(gearman_task_st *task, _TaskCtx *ctx, int ev) noexcept nogil:
    """Keep what the outcome needs in the context: runs use GEARMAN_CLIENT_FREE_TASKS, so
    libgearman frees each task as soon as it finishes."""
    cdef const char *p
    if ev == EV_CREATED:
        ctx.ctl.created += 1
        p = gearman_task_job_handle(task)
        if p != NULL:
            _copy_handle(ctx.handle, p)
        if ctx.kind == K_BACKGROUND:       # a background job's outcome is being queued
            ctx.rc = GEARMAN_SUCCESS
            _finished(ctx)
    elif ev == EV_COMPLETE:
        _finished(ctx)
        if not ctx.have_result:
            ctx.result = gearman_task_take_data(task, &ctx.result_len)
            ctx.have_result = True
        ctx.rc = GEARMAN_SUCCESS
    elif ev == EV_EXCEPTION:
        _finished(ctx)
        ctx.rc = GEARMAN_WORK_EXCEPTION
        p = gearman_task_exception(task).c_str
        ctx.exc_len = gearman_task_exception(task).size
        if p != NULL and ctx.exc_len and ctx.exc == NULL:
            ctx.exc = <char *>malloc(ctx.exc_len)
            if ctx.exc != NULL:
                memcpy(ctx.exc, p, ctx.exc_len)
    elif ev == EV_FAIL:
        _finished(ctx)
        if ctx.rc != GEARMAN_WORK_EXCEPTION:
            ctx.rc = GEARMAN_WORK_FAIL
    elif ev == EV_STATUS:
        ctx.num = gearman_task_numerator(task)
        ctx.den = gearman_task_denominator(task)
        if ctx.kind == K_STATUS or ctx.kind == K_STATUS_UNIQUE:
            ctx.known = gearman_task_is_known(task)
            ctx.running = gearman_task_is_running(task)
            ctx.rc = GEARMAN_SUCCESS
            _finished(ctx)


cdef object _ctx_error(_TaskCtx *ctx, str fname):
    """The exception for a job whose outcome is not success, from what _record() kept."""
    handle = ctx.handle.decode("utf-8", "replace") or None
    if ctx.rc == GEARMAN_WORK_EXCEPTION:
        text = (ctx.exc[:ctx.exc_len].decode("utf-8", "replace") if ctx.exc != NULL
                else "the worker raised an exception (no message)")
        return JobException(text, ctx.rc, handle=handle, function=fname)
    if ctx.rc == GEARMAN_WORK_FAIL:
        return JobFailed(f"job {fname!r} failed: the worker reported WORK_FAIL", ctx.rc,
                         handle=handle, function=fname)
    if ctx.rc < 0:
        return GearmanError(f"job {fname!r}: no outcome was received")
    return error_class_for(ctx.rc)(f"job {fname!r}: {strerror(ctx.rc)}", ctx.rc)


cdef inline void _ctx_clear(_TaskCtx *ctx) noexcept:
    if ctx.result != NULL:
        free(ctx.result)
        ctx.result = NULL
    if ctx.exc != NULL:
        free(ctx.exc)
        ctx.exc = NULL


cdef inline gearman_return_t _event(gearman_task_st *task, int ev) noexcept nogil:
    """Pausing (GEARMAN_PAUSE) makes run_tasks return with its state kept; libgearman's timeout
    is per poll, so a job that keeps sending status would otherwise never let us check Ctrl-C or
    the deadline (docs/libgearman-1.1.20.md#timeout-per-poll). On resume libgearman calls the
    same callback again for the same packet (docs/libgearman-1.1.20.md#callback-reinvoked):
    skip_next lets that call through without repeating the event."""
    cdef _TaskCtx *ctx = <_TaskCtx *>gearman_task_context(task)
    if ctx == NULL:
        return GEARMAN_SUCCESS
    if ctx.skip_next:
        ctx.skip_next = False
        return GEARMAN_SUCCESS
    _record(task, ctx, ev)
    if ctx.wants & ev:
        if _dispatch(task, ctx, ev):
            ctx.skip_next = True
            return GEARMAN_PAUSE
    if (ev & EV_PROGRESS) and _now() >= ctx.ctl.slice_end:
        ctx.skip_next = True
        return GEARMAN_PAUSE
    return GEARMAN_SUCCESS


cdef gearman_return_t _on_created(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_CREATED)

cdef gearman_return_t _on_data(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_DATA)

cdef gearman_return_t _on_warning(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_WARNING)

cdef gearman_return_t _on_status(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_STATUS)

cdef gearman_return_t _on_complete(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_COMPLETE)

cdef gearman_return_t _on_exception(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_EXCEPTION)

cdef gearman_return_t _on_fail(gearman_task_st *task) noexcept nogil:
    return _event(task, EV_FAIL)

# Task sets and batches: turning many jobs into specs of one run, and the outcomes back.


cdef int _taskset_specs(_Run run, list tasks) except -1:
    """A task set's tasks as the run's specs; coalesced tasks follow the first of their job."""
    cdef Py_ssize_t i, n = len(tasks)
    cdef GearmanTask t, first
    cdef bytes hb
    run.keep = [tasks]
    for i in range(n):
        t = tasks[i]
        if t._status_only:
            hb = t._handle.encode("utf-8")
            run.keep.append(hb)
            run.set_status(i, K_STATUS, PyBytes_AS_STRING(hb), t._pin)
        else:
            run.set_job(i, K_BACKGROUND if t._background else K_JOB, t._priority,
                        PyBytes_AS_STRING(t._fn), PyBytes_GET_SIZE(t._fn),
                        PyBytes_AS_STRING(t._uq) if t._uq is not None else NULL,
                        PyBytes_GET_SIZE(t._uq) if t._uq is not None else 0,
                        PyBytes_AS_STRING(t._workload), PyBytes_GET_SIZE(t._workload))
        run.bind(i, t)
        t._state = "queued"
    run._coalesce()
    for i in range(n):
        if run.specs[i].primary >= 0:
            first = tasks[run.specs[i].primary]
            if first._twins is None:
                first._twins = []
            first._twins.append(tasks[i])
    return 0


cdef int _taskset_settle(_Run run, list tasks) except -1:
    """After the run (finished or not): every task's final state from its job's outcome."""
    cdef Py_ssize_t i, o
    cdef GearmanTask t
    for i in range(len(tasks)):
        t = tasks[i]
        o = run.origin(i)
        if not t._status_only and run.specs[o].state != ST_QUEUED and run.specs[o].ctx.handle[0] \
                and (t._handle is None or type(t._handle) is str):
            # the JobHandle (knows its server) in place of what the created event decoded
            t._handle = run.server_of(o).handle(run.specs[o].ctx.handle)
        t._settle(&run.specs[o].ctx, run.failure(o))
    return 0


cdef tuple _batch_inputs(object workloads, object uniques):
    """(workloads as bytes, uniques as bytes or None), validated before anything is sent."""
    cdef Py_ssize_t i, n
    cdef list items, uqs = None
    if isinstance(workloads, (bytes, str, bytearray, memoryview)):
        raise TypeError("workloads must be an iterable of workloads, not a single workload")
    items = list(workloads)
    n = len(items)
    if uniques is not None:
        if isinstance(uniques, (bytes, str)):
            raise TypeError("uniques must be a sequence of uniques (one per workload), "
                            "not a single str or bytes")
        uqs = [_coerce(u, "unique", C_UNIQUE) for u in uniques]
        if len(uqs) != n:
            raise ValueError(f"got {len(uqs)} uniques for {n} workloads")
    for i in range(n):
        w = items[i]
        if not isinstance(w, bytes):
            if isinstance(w, str):
                w = items[i] = (<str>w).encode("utf-8")
            else:
                try:
                    mv = memoryview(w)
                except TypeError:
                    raise TypeError(f"workload {i} must be bytes-like or str, not "
                                    f"{type(w).__name__}") from None
                if mv.nbytes > C_MAX_PAYLOAD:
                    _payload_too_big(mv.nbytes, f"workload {i}")
                w = items[i] = bytes(mv)
        if PyBytes_GET_SIZE(w) > C_MAX_PAYLOAD:     # the message only when it is needed
            _payload_too_big(PyBytes_GET_SIZE(w), f"workload {i}")
    return items, uqs


cdef int _batch_specs(_Run run, bytes fn, list items, list uqs, int priority,
                      bint background) except -1:
    cdef Py_ssize_t i
    cdef bytes w, u
    cdef int kind = K_BACKGROUND if background else K_JOB
    run.keep = [items, uqs, fn]
    if uqs is None:
        # no caller uniques: nothing to coalesce, and each job is queued as it is set (no
        # more passes over a spec array that may be megabytes)
        run.coalesced = True
        for i in range(len(items)):
            w = items[i]
            run.set_job(i, kind, priority, PyBytes_AS_STRING(fn), PyBytes_GET_SIZE(fn), NULL, 0,
                        PyBytes_AS_STRING(w), PyBytes_GET_SIZE(w))
            run.queue_now(i)
        return 0
    for i in range(len(items)):
        w = items[i]
        u = uqs[i]
        run.set_job(i, kind, priority, PyBytes_AS_STRING(fn), PyBytes_GET_SIZE(fn),
                    PyBytes_AS_STRING(u) if u is not None else NULL,
                    PyBytes_GET_SIZE(u) if u is not None else 0,
                    PyBytes_AS_STRING(w), PyBytes_GET_SIZE(w))
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _batch_collect(_Run run, _Router r, bytes fn, bint background, list out) except -1:
    """Each spec's outcome into out, in input order, even when the run failed: results or
    handles, the exception of a job a server acknowledged, None for one no server did."""
    cdef Py_ssize_t i, o
    for i in range(run.n):
        o = run.origin(i)
        # failure(o) for an outcome of GEARMAN_SUCCESS is only errors[o]: read in place
        if run.specs[o].ctx.rc == GEARMAN_SUCCESS and (run.errors is None or run.errors[o] is None):
            out[i] = run.value_at(o)
        elif run.specs[o].ctx.rc >= 0 or run.specs[o].ctx.handle[0] != 0:
            out[i] = run.error_of(i, fn)
    return 0


cdef list _jobs_specs(_Run run, Client client, list jobs):
    """Specs of (function, workload, unique, priority, background) jobs; a job that fails
    validation gets its exception in the returned list (and is not sent: an empty spec)."""
    cdef Py_ssize_t i, n = len(jobs)
    cdef bytes fn = None, uq, w
    cdef int priority = 0
    # consecutive jobs mostly share their priority object: checked once per run of them (the
    # function name: Client._function_bytes)
    cdef object last_priority = None
    cdef bint have_priority = False
    keep = []
    errors = [None] * n
    for i in range(n):
        function, workload, unique, priority_obj, background = jobs[i]
        try:
            fn = client._function_bytes(function)
            uq = _coerce(unique, "unique", C_UNIQUE)
            if not have_priority or priority_obj is not last_priority:
                have_priority = False
                _check_priority(priority_obj)
                priority = priority_obj
                last_priority, have_priority = priority_obj, True
            w = _payload_copy(workload, "workload")
        except Exception as e:
            errors[i] = e
            run.skip(i)
            continue
        keep.append(fn)
        keep.append(w)
        if uq is not None:
            keep.append(uq)
        run.set_job(i, K_BACKGROUND if background else K_JOB, priority,
                    PyBytes_AS_STRING(fn), PyBytes_GET_SIZE(fn),
                    PyBytes_AS_STRING(uq) if uq is not None else NULL,
                    PyBytes_GET_SIZE(uq) if uq is not None else 0,
                    PyBytes_AS_STRING(w), PyBytes_GET_SIZE(w))
    run.keep = keep
    return errors

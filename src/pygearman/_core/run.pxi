# The run engine: adds N job specs to connections, runs them all at once to a deadline, leaves
# an outcome per spec. A single job, a batch, a task set, a status query and a stream are all
# callers of it.

cdef enum:
    MAX_LANES = 16       # connections one run may open to one server
    ROUND_MS = 20        # several busy connections: one round of waits lasts about this long


@cython.final
cdef class _Lane:
    """One connection in use by a run, with its window of tasks in flight."""

    def __cinit__(self, _Conn conn, Py_ssize_t index):
        self.conn = conn
        self.server = conn.server
        self.index = index
        memset(&self.ctl, 0, sizeof(_RunCtl))


@cython.final
cdef class _Run:
    """Runs job specs on a client's servers, all at once.

    ``setup(n)`` sizes the spec array; callers fill ``specs[i]`` with ``set_job``/``set_status``
    and keep the Python objects the specs point into in ``keep``. ``go()`` queues every spec on
    its server (duplicate foreground uniques are submitted once: the twins take the first one's
    outcome), opens as many connections per server as it needs (at most MAX_LANES, each with at
    most ``batch`` tasks in flight: libgearman matches replies in O(tasks in flight),
    docs/libgearman-1.1.20.md#reply-matching-quadratic), refills them as tasks finish, and drives
    them together in one thread: a single busy connection waits in GIL-free slices of SLICE_MS,
    several take turns in short non-blocking waits (libgearman has no public fds,
    docs/libgearman-1.1.20.md#no-public-fds). Status queries go after the jobs, on their own
    (docs/libgearman-1.1.20.md#status-steals-created).

    Ownership: the tasks belong to their connection (see _Conn). The run frees only epoch
    tasks, and only if the connection is still in the generation it added them in; everything
    else is freed by libgearman as it finishes (FREE_TASKS) or with the handle by ``abandon()``.
    ``specs`` stays allocated until no handle can point into it any more.
    """

    def __cinit__(self, _Exc carrier):
        self.carrier = carrier
        self.specs = NULL
        self.n = 0
        self.cap = 0

    def __dealloc__(self):
        self._abandon_lanes()
        self._free_specs()

    cdef void _free_specs(self) noexcept:
        cdef Py_ssize_t i
        if self.specs != NULL:
            for i in range(self.n):
                _ctx_clear(&self.specs[i].ctx)
            free(self.specs)
            self.specs = NULL
        self.n = self.cap = 0

    cdef int setup(self, Client client, Py_ssize_t n, double deadline, int batch) except -1:
        """Make room for n specs (a fresh run). The caller sets ``client`` to None when the
        run is over (no cycle through the client's own run)."""
        cdef Py_ssize_t i
        self._abandon_lanes()
        self.client = client
        for i in range(self.n):
            _ctx_clear(&self.specs[i].ctx)
        if n > self.cap:
            free(self.specs)
            self.specs = <_Spec *>malloc(n * sizeof(_Spec))
            if self.specs == NULL:
                self.cap = 0
                raise MemoryError()
            self.cap = n
        if n:
            memset(self.specs, 0, n * sizeof(_Spec))
        for i in range(n):
            self.specs[i].ctx.rc = -1
            self.specs[i].primary = -1
            self.specs[i].lane = -1
            self.specs[i].pinned = -1
        self.n = n
        self.deadline = deadline
        self.batch = batch
        self.keep = []
        self.listeners = None
        self.errors = None
        self.lanes = []
        self.queues = {}
        self.later = []
        self.started = False
        self.retried = set()
        self.abort_exc = None
        self.first_error = None
        self.seen = 0
        self.wait_ms = 1
        return 0

    cdef void set_job(self, Py_ssize_t i, int kind, int priority, const char *fn, size_t fnn,
                      const char *uq, size_t uqn, const char *wp, size_t wn) noexcept:
        """A job (K_JOB, K_BACKGROUND, K_EPOCH). uq NULL: a fresh unique is generated, as
        libgearman's own would cost a syscall per job (docs/libgearman-1.1.20.md#libuuid-unique-cost)."""
        cdef _Spec *sp = &self.specs[i]
        sp.kind = kind
        sp.priority = priority
        sp.fn = fn
        sp.fnn = fnn
        sp.uq = uq
        sp.uqn = uqn
        sp.wp = wp if wn else NULL      # libgearman refuses a non-NULL empty workload
        sp.wn = wn

    cdef void set_status(self, Py_ssize_t i, int kind, const char *key, Py_ssize_t server) noexcept:
        """A status query by handle (K_STATUS) or unique (K_STATUS_UNIQUE); server >= 0 pins
        it to one server."""
        cdef _Spec *sp = &self.specs[i]
        sp.kind = kind
        sp.uq = key
        sp.uqn = strlen(key)
        sp.pinned = server

    cdef void bind(self, Py_ssize_t i, _Listener li) noexcept:
        """Python callbacks for spec i: li gets the events in `li._wants()`."""
        if self.listeners is None:
            self.listeners = [None] * self.n
        self.listeners[i] = li
        self.specs[i].ctx.listener = <PyObject *>li
        self.specs[i].ctx.wants = li._wants()

    # -- queueing ----------------------------------------------------------------------------

    cdef int _coalesce(self) except -1:
        """Two foreground jobs with the same function and unique in one run are one job for
        gearmand, and libgearman would wait forever for the second reply
        (docs/libgearman-1.1.20.md#duplicate-unique-hang): send the first, the others follow it."""
        cdef Py_ssize_t i
        cdef _Spec *sp
        cdef dict seen = None
        for i in range(self.n):
            sp = &self.specs[i]
            if sp.kind != K_JOB or sp.uq == NULL:
                continue
            key = sp.fn[:sp.fnn] + b"\0" + sp.uq[:sp.uqn]
            if sp.uqn == 1 and (sp.uq[0] == b"-" or sp.uq[0] == b"#"):
                key += b"\0" + (sp.wp[:sp.wn] if sp.wn else b"")   # the workload is the key
            if seen is None:
                seen = {}
            first = seen.get(key)
            if first is None:
                seen[key] = i
            else:
                sp.primary = first
                sp.state = ST_DONE
        return 0

    cdef int _queue(self, Py_ssize_t i, _Server s) except -1:
        q = self.queues.get(s.index)
        if q is None:
            q = self.queues[s.index] = []
        q.append(i)
        self.specs[i].state = ST_QUEUED
        self.specs[i].server = s.index
        return 0

    cdef int _queue_all(self) except -1:
        cdef Py_ssize_t i
        cdef _Spec *sp
        cdef _Router r = self.client._router
        for i in range(self.n):
            sp = &self.specs[i]
            if sp.state == ST_DONE:
                continue
            if sp.kind == K_STATUS or sp.kind == K_STATUS_UNIQUE:
                self.later.append(i)
            else:
                if sp.uq == NULL:
                    _fresh_unique(sp.genq)
                    self._queue(i, r.first(NULL, 0))
                    sp.uq = sp.genq
                    sp.uqn = 32
                else:
                    self._queue(i, r.first(sp.uq, sp.uqn))
        return 0

    cdef int _queue_later(self) except -1:
        """The status queries, once no job is in flight any more."""
        cdef _Router r = self.client._router
        cdef _Spec *sp
        later = self.later
        self.later = []
        for i in later:
            sp = &self.specs[<Py_ssize_t>i]
            if sp.pinned >= 0:
                self._queue(i, <_Server>r.servers[sp.pinned])
            elif sp.kind == K_STATUS:
                s = r.handles.get(sp.uq[:sp.uqn].decode("utf-8", "replace"))
                self._queue(i, s if s is not None else <_Server>r.servers[0])
            else:
                self._queue(i, r.first(sp.uq, sp.uqn))
        return 0

    # -- lanes -------------------------------------------------------------------------------

    cdef int _fill(self) except -1:
        """Give every queued spec a place: refill open lanes, open more where needed."""
        cdef _Lane lane
        cdef _Server s
        cdef Py_ssize_t k
        cdef _Router r = self.client._router
        for sidx in list(self.queues):
            q = self.queues[sidx]
            s = <_Server>r.servers[sidx]
            k = 0
            for lane in self.lanes:
                if q and lane.server is s and not lane.dead:
                    self._add(lane, q)
                    k += 1
            # another connection only when the open ones are full and saw no reply in the last
            # round of waits (slow jobs): fast jobs make room faster than a connection opens
            while q and k < MAX_LANES and (k == 0 or self.wait_ms > 1):
                lane = self._open(s)
                if lane is None:
                    break         # the server's specs moved elsewhere (or failed)
                self._add(lane, q)
                k += 1
            if not self.queues.get(sidx):
                self.queues.pop(sidx, None)
        return 0

    cdef _Lane _open(self, _Server s):
        """A new lane on a connection of s that no live lane of this run uses."""
        cdef _Conn conn
        cdef _Lane lane
        cdef Py_ssize_t k = 0
        used = [lane.conn for lane in self.lanes if not lane.dead and lane.server is s]
        while True:
            conn = s.conn(k, self.client._exc)
            if conn not in used:
                break
            k += 1
        try:
            conn.open(self.client, self.deadline)
        except _NotSent as e:
            self._server_failed(s, e.args[0])
            return None
        lane = _Lane(conn, len(self.lanes))
        lane.gen = conn.gen
        self.lanes.append(lane)
        return lane

    cdef int _server_failed(self, _Server s, object err) except -1:
        """Nothing of the queued specs reached s: move them to the next server, or fail them
        once every server was tried."""
        cdef _Router r = self.client._router
        cdef _Spec *sp
        q = self.queues.pop(s.index, [])
        r.mark_down(s, err)
        for i in q:
            sp = &self.specs[<Py_ssize_t>i]
            sp.tries += 1
            if sp.pinned < 0 and sp.tries < len(r.servers):
                self._queue(i, r.after(s))
            else:
                self._fail(i, r.none_reachable(err))
                sp.refused = True
                if self.first_error is None:
                    self.first_error = self.errors[i]
        return 0

    cdef int _fail(self, Py_ssize_t i, object err) except -1:
        if self.errors is None:
            self.errors = [None] * self.n
        self.errors[i] = err
        self.specs[i].state = ST_DONE
        return 0

    cdef int _add(self, _Lane lane, list q) except -1:
        """Add up to batch - in flight specs from the front of q to the lane, in reverse on a
        LIFO library so that they go out in order (docs/libgearman-1.1.20.md#lifo-order)."""
        cdef Py_ssize_t room = self.batch - (lane.added - lane.ctl.done), m, j, i
        cdef _Spec *sp
        cdef gearman_task_st *gt
        cdef gearman_return_t rc
        cdef gearman_client_st *c = lane.conn.c
        if room <= 0 or c == NULL:
            return 0
        m = min(room, len(q))
        take = q[:m]
        del q[:m]
        for j in range(m):
            i = take[m - 1 - j] if _ADD_REVERSED else take[j]
            sp = &self.specs[i]
            sp.ctx.ctl = &lane.ctl
            sp.ctx.kind = sp.kind
            sp.ctx.carrier = <PyObject *>self.carrier
            sp.lane = lane.index
            sp.state = ST_SENT
            rc = GEARMAN_SUCCESS
            if sp.kind == K_STATUS:
                gt = gearman_client_add_task_status(c, NULL, &sp.ctx, sp.uq, &rc)
            elif sp.kind == K_STATUS_UNIQUE:
                gt = gearman_client_add_task_status_by_unique(c, NULL, sp.uq, &rc)
                if gt != NULL:
                    gearman_task_set_context(gt, &sp.ctx)
                # counted as a submission that no JOB_CREATED answers
                # (docs/libgearman-1.1.20.md#status-steals-created): a new handle afterwards
                lane.reset_after = True
            elif sp.kind == K_EPOCH:
                gt = self._add_epoch(lane, sp)
                if gt == NULL:
                    rc = gearman_client_error_code(c)
            else:
                gt = _add(c, sp.priority, sp.kind == K_BACKGROUND, &sp.ctx, sp.fn, sp.uq,
                          sp.wp, sp.wn, &rc)
            if gt == NULL:
                # refused before anything was sent (size, arguments): this spec alone fails
                self._fail(i, _error(rc, lane.conn, None))
                sp.refused = True
                if self.first_error is None:
                    self.first_error = self.errors[i]
                if lane.conn.c == NULL:
                    return 0
                continue
            lane.added += 1
            lane.idle = False
        return 0

    cdef gearman_task_st *_add_epoch(self, _Lane lane, _Spec *sp) except? NULL:
        """gearman_execute adds the task and runs every pending task with its own callbacks
        (docs/libgearman-1.1.20.md#epoch-jobs); it must not be freed under our feet."""
        cdef gearman_client_st *c = lane.conn.c
        cdef gearman_task_st *gt
        gearman_client_remove_options(c, GEARMAN_CLIENT_FREE_TASKS)
        gearman_client_set_timeout(c, _slice_ms(self.deadline, SLICE_MS))
        lane.ctl.slice_end = _now() + SLICE_MS / 1000.0
        with nogil:
            # whole seconds on the wire: rounded up so the job never runs early
            gt = _execute_epoch(c, sp.fn, sp.fnn, sp.uq, sp.uqn, <time_t>ceil(sp.epoch),
                                <gearman_job_priority_t>sp.priority, sp.wp, sp.wn, &sp.ctx)
        sp.task = gt
        sp.gen = lane.conn.gen
        lane.epoch = gt != NULL
        return gt

    cdef int _settle_epoch(self, _Lane lane) except -1:
        cdef Py_ssize_t i
        cdef _Spec *sp
        cdef gearman_return_t rc
        for i in range(self.n):
            sp = &self.specs[i]
            if sp.kind != K_EPOCH or sp.task == NULL or sp.lane != lane.index:
                continue
            if lane.conn.gen == sp.gen:
                rc = gearman_task_return(sp.task)
                if rc != GEARMAN_UNKNOWN_STATE:
                    sp.ctx.rc = rc
                    strncpy(sp.ctx.handle, gearman_task_job_handle(sp.task), 63)
                gearman_task_free(sp.task)
                gearman_client_add_options(lane.conn.c, GEARMAN_CLIENT_FREE_TASKS)
            sp.task = NULL
        lane.epoch = False
        return 0

    # -- running -----------------------------------------------------------------------------

    cdef int go(self) except -1:
        """Run until every spec has an outcome (returns 0), or a stream's chunk is ready (1).
        On an exception every connection with work in flight is abandoned first."""
        try:
            return self._go()
        except BaseException as e:
            self._abort(e)
            raise

    cdef int _go(self) except -1:
        cdef _Lane lane
        cdef list busy
        cdef bint nb
        if not self.started:
            self.started = True
            self._coalesce()
            self._queue_all()
        while True:
            if self.queues:
                self._fill()
            busy = [lane for lane in self.lanes if not lane.idle and not lane.dead]
            if not busy:
                if self.queues:
                    continue
                if self.later:
                    self._queue_later()
                    continue
                self._release_lanes()
                if self.first_error is not None:
                    raise self.first_error      # the other connections ran to their end first
                return 0
            nb = len(busy) > 1 or bool(self.queues)
            for lane in busy:
                if self._step(lane, nb):
                    return 1
            if nb:
                self._wait(busy)
            _check_signals(self.carrier)
            if self.deadline >= 0 and _now() >= self.deadline:
                raise GearmanTimeoutError(
                    f"{', '.join(sorted({lane.server.address for lane in busy}))}: "
                    f"the job did not finish before the deadline", GEARMAN_TIMEOUT)

    cdef int _step(self, _Lane lane, bint nb) except -1:
        """One call of run_tasks on the lane: a blocking slice, or (nb) only what can be done
        without waiting. Returns 1 when a stream's chunk is ready."""
        cdef gearman_return_t rc
        cdef gearman_client_st *c = lane.conn.c
        cdef int ms
        if nb != lane.nb:
            if nb:
                gearman_client_add_options(c, GEARMAN_CLIENT_NON_BLOCKING)
            else:
                gearman_client_remove_options(c, GEARMAN_CLIENT_NON_BLOCKING)
            lane.nb = nb
        ms = ROUND_MS if nb else _slice_ms(self.deadline, SLICE_MS)
        if not nb:
            gearman_client_set_timeout(c, ms)
        lane.ctl.slice_end = _now() + ms / 1000.0
        lane.ctl.pause_requested = False
        with nogil:
            rc = gearman_client_run_tasks(c)
        if lane.ctl.cb_error:
            lane.ctl.cb_error = False
            self.carrier.raise_if_stored()
        if rc == GEARMAN_SUCCESS:
            lane.idle = True
            if lane.epoch:
                self._settle_epoch(lane)
            if lane.reset_after:
                lane.conn.reset()
                lane.dead = True
            return 0
        if rc == GEARMAN_PAUSE and lane.ctl.pause_requested:
            return 1
        if rc == GEARMAN_TIMEOUT or rc == GEARMAN_IO_WAIT or rc == GEARMAN_PAUSE:
            return 0
        self._lane_failed(lane, rc)
        return 0

    cdef int _wait(self, list busy) except -1:
        """Several connections are busy: wait on each in turn for a short while (1 ms while
        replies keep coming, growing to ROUND_MS / n when they do not)."""
        cdef _Lane lane
        cdef gearman_return_t rc
        cdef int ms
        cdef Py_ssize_t seen = 0
        cdef gearman_client_st *c
        for lane in busy:
            seen += lane.ctl.done + lane.ctl.created
        if seen != self.seen:
            self.wait_ms = 1
        elif self.wait_ms < ROUND_MS // len(busy):
            self.wait_ms *= 2
        self.seen = seen
        for lane in busy:
            c = lane.conn.c
            if lane.dead or lane.idle or c == NULL:
                continue
            gearman_client_set_timeout(c, _slice_ms(self.deadline, max(1, self.wait_ms)))
            with nogil:
                rc = gearman_client_wait(c)
            if rc == GEARMAN_SUCCESS:
                self.wait_ms = 1
            elif rc != GEARMAN_TIMEOUT and rc != GEARMAN_IO_WAIT and rc != GEARMAN_NO_ACTIVE_FDS:
                self._lane_failed(lane, rc)
        return 0

    cdef int _lane_failed(self, _Lane lane, gearman_return_t rc) except -1:
        """The connection broke. Specs that never reached the server go to the next one; if
        the server acknowledged nothing on it (typically a socket left stale by a server
        restart) they are tried once more on a new connection; the rest fail with the error."""
        cdef Py_ssize_t i
        cdef _Spec *sp
        cdef bint untouched = lane.ctl.created == 0 and lane.ctl.done == 0
        cdef bint retry = untouched and lane.server.index not in self.retried and (
            rc == GEARMAN_LOST_CONNECTION or rc == GEARMAN_ERRNO)
        err = _error(rc, lane.conn, None)
        lane.conn.reset()
        lane.dead = True
        q = []
        for i in range(self.n):
            sp = &self.specs[i]
            if sp.lane != lane.index or sp.state != ST_SENT or sp.ctx.rc >= 0:
                continue
            if (_never_connected(rc) and sp.ctx.handle[0] == 0) or retry:
                sp.state = ST_QUEUED
                sp.lane = -1
                sp.ctx.skip_next = False
                q.append(i)
            else:
                self._fail(i, err)
                if self.first_error is None:
                    self.first_error = err
        if not q:
            return 0
        self.queues.setdefault(lane.server.index, []).extend(q)
        if retry:
            self.retried.add(lane.server.index)
            return 0
        self._server_failed(lane.server, err)
        return 0

    cdef void _release_lanes(self) noexcept:
        """The run is over: connections go back to blocking mode for the next call."""
        cdef _Lane lane
        for lane in self.lanes:
            if lane.conn.c != NULL and lane.conn.gen == lane.gen and lane.nb:
                gearman_client_remove_options(lane.conn.c, GEARMAN_CLIENT_NON_BLOCKING)
            lane.nb = False
        self.lanes = []

    cdef void _abandon_lanes(self) noexcept:
        """Drop every connection that still has work of this run: its tasks go with the handle."""
        cdef _Lane lane
        if self.lanes is None:
            return
        for lane in self.lanes:
            if lane.conn.gen == lane.gen and not lane.idle:
                lane.conn.reset()
        self._release_lanes()

    cdef void _abort(self, object exc) noexcept:
        """An exception ends the run: what has no outcome yet gets this error (a timeout, a
        lost connection) and the connections in use are dropped."""
        cdef Py_ssize_t i
        cdef _Spec *sp
        self._abandon_lanes()
        if isinstance(exc, Exception):
            self.abort_exc = exc

    def close(self):
        """Abandon what is still running (a stream closed early)."""
        self._abandon_lanes()

    # -- outcomes ----------------------------------------------------------------------------

    cdef Py_ssize_t origin(self, Py_ssize_t i) noexcept:
        """The spec whose job spec i followed (itself unless it was coalesced)."""
        cdef Py_ssize_t p = self.specs[i].primary
        return i if p < 0 else p

    cdef object failure(self, Py_ssize_t o):
        """What ended spec o other than its job's outcome (a lost connection, a refusal, the
        deadline or Ctrl-C that ended the run), or None."""
        if self.errors is not None and self.errors[o] is not None:
            return self.errors[o]
        if self.specs[o].ctx.rc < 0:
            return self.abort_exc
        return None

    cdef object error_of(self, Py_ssize_t i, bytes fn):
        """The exception of spec i, or None if it succeeded."""
        cdef Py_ssize_t o = self.origin(i)
        cdef _TaskCtx *ctx = &self.specs[o].ctx
        err = self.failure(o)
        if err is not None:
            return err
        if ctx.rc == GEARMAN_SUCCESS:
            return None
        return _ctx_error(ctx, fn.decode("utf-8", "replace") if fn is not None else None)

    cdef object value_of(self, Py_ssize_t i):
        """Result bytes (foreground), handle str (background) of a successful spec i."""
        cdef _TaskCtx *ctx = &self.specs[self.origin(i)].ctx
        if ctx.kind == K_BACKGROUND or ctx.kind == K_EPOCH:
            return ctx.handle.decode("utf-8", "replace")
        if ctx.result == NULL:
            return b""
        return PyBytes_FromStringAndSize(<char *>ctx.result, ctx.result_len)

    cdef _Server server_of(self, _Router r, Py_ssize_t i):
        """The server that ran spec i's job."""
        return <_Server>r.servers[self.specs[self.origin(i)].server]


cdef gearman_task_st *_add(gearman_client_st *c, int priority, bint background, void *ctx,
                           const char *fn, const char *uq, const char *wp, size_t wn,
                           gearman_return_t *rc) noexcept nogil:
    if background:
        if priority == GEARMAN_JOB_PRIORITY_HIGH:
            return gearman_client_add_task_high_background(c, NULL, ctx, fn, uq, wp, wn, rc)
        if priority == GEARMAN_JOB_PRIORITY_LOW:
            return gearman_client_add_task_low_background(c, NULL, ctx, fn, uq, wp, wn, rc)
        return gearman_client_add_task_background(c, NULL, ctx, fn, uq, wp, wn, rc)
    if priority == GEARMAN_JOB_PRIORITY_HIGH:
        return gearman_client_add_task_high(c, NULL, ctx, fn, uq, wp, wn, rc)
    if priority == GEARMAN_JOB_PRIORITY_LOW:
        return gearman_client_add_task_low(c, NULL, ctx, fn, uq, wp, wn, rc)
    return gearman_client_add_task(c, NULL, ctx, fn, uq, wp, wn, rc)

# The run engine: adds N job specs to connections, runs them all at once to a deadline, leaves
# an outcome per spec. A single job, a batch, a task set, a status query and a stream are all
# callers of it.

cdef enum:
    MAX_LANES = 16       # connections one run may open to one server
    ROUND_MS = 20        # several busy connections: one round of waits lasts about this long


@cython.no_gc_clear
cdef class _Specs:
    """The job specs of one run and what came of them: a C array the task callbacks write
    outcomes into (each spec's _TaskCtx), and the Python objects it points into (``keep``)."""

    def __cinit__(self, *args):
        self.specs = NULL

    def __dealloc__(self):
        self._free_specs()

    cdef int setup_specs(self, Py_ssize_t n) except -1:
        """Room for n fresh specs (what a previous run left is freed). The specs are made
        ready in order as set_job/set_status/skip reach them (``ninit`` of them so far), so a
        batch's array (344 bytes a spec: megabytes for tens of thousands of jobs) is written
        in the same pass that fills it, not once more before."""
        self._clear_outcomes()
        self.ninit = 0
        if n > self.cap:
            _specs_free(self.specs, self.cap * sizeof(_Spec), self.mapped)
            self.specs = <_Spec *>_specs_alloc(n * sizeof(_Spec), &self.mapped)
            if self.specs == NULL:
                self.cap = 0
                raise MemoryError()
            self.cap = n
        self.n = n
        self.keep = None
        self.listeners = None
        self.errors = None
        self.abort_exc = None
        self.first_error = None
        self.coalesced = False
        return 0

    cdef void _clear_outcomes(self) noexcept:
        """Free the results and exception texts the callbacks kept. Only specs other than
        background jobs can have them (``nfg`` counts those): a batch of background jobs is not
        walked once more for nothing."""
        cdef Py_ssize_t i
        if self.nfg:
            for i in range(self.ninit):
                _ctx_clear(&self.specs[i].ctx)
        self.nfg = 0

    cdef void _free_specs(self) noexcept:
        if self.specs != NULL:
            self._clear_outcomes()
            _specs_free(self.specs, self.cap * sizeof(_Spec), self.mapped)
            self.specs = NULL
        self.n = self.cap = self.ninit = 0

    cdef void _ready(self, Py_ssize_t i) noexcept:
        """Specs 0..i are initialised (empty, no outcome). Field by field: the text buffers
        at the end of a spec are not touched until they are filled."""
        cdef _Spec *sp
        while self.ninit <= i:
            sp = &self.specs[self.ninit]
            memset(sp, 0, <size_t>&sp.ctx.handle[0] - <size_t>sp)
            sp.ctx.handle[0] = 0
            sp.genq[0] = 0
            sp.ctx.rc = -1
            sp.primary = -1
            sp.lane = -1
            sp.pinned = -1
            sp.qnext = -1
            self.ninit += 1

    cdef void skip(self, Py_ssize_t i) noexcept:
        """Spec i is not run (its job failed validation; the caller keeps the error)."""
        self._ready(i)
        self.specs[i].state = ST_DONE

    cdef void set_job(self, Py_ssize_t i, int kind, int priority, const char *fn, size_t fnn,
                      const char *uq, size_t uqn, const char *wp, size_t wn) noexcept:
        """A job (K_JOB, K_BACKGROUND, K_EPOCH). uq NULL: a fresh unique is generated, as
        libgearman's own would cost a syscall per job (docs/libgearman-1.1.20.md#libuuid-unique-cost)."""
        cdef _Spec *sp
        self._ready(i)
        sp = &self.specs[i]
        if kind != K_BACKGROUND:    # (a background job's only outcome is its handle)
            self.nfg += 1
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
        cdef _Spec *sp
        self._ready(i)
        self.nfg += 1
        sp = &self.specs[i]
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

    cdef int _coalesce(self) except -1:
        """Two foreground jobs with the same function and unique in one run are one job for
        gearmand, and libgearman would wait forever for the second reply
        (docs/libgearman-1.1.20.md#duplicate-unique-hang): send the first, the others follow it.
        An open-addressing table of spec indexes in C, keyed by a hash of function and unique
        (and of the workload for the uniques "-" and "#", where the workload is the key)."""
        cdef Py_ssize_t i, j, m = 0, cap = 8, slot
        cdef Py_ssize_t *table
        cdef _Spec *sp
        cdef unsigned long long h
        if self.coalesced:
            return 0
        self.coalesced = True
        for i in range(self.n):
            if self.specs[i].kind == K_JOB and self.specs[i].uq != NULL:
                m += 1
        if m < 2:
            return 0
        while cap < 2 * m:
            cap *= 2
        table = <Py_ssize_t *>malloc(cap * sizeof(Py_ssize_t))
        if table == NULL:
            raise MemoryError()
        memset(table, 0xff, cap * sizeof(Py_ssize_t))      # every slot -1
        for i in range(self.n):
            sp = &self.specs[i]
            if sp.kind != K_JOB or sp.uq == NULL:
                continue
            h = _fnv1a(sp.fn, sp.fnn) * 1099511628211ULL ^ _fnv1a(sp.uq, sp.uqn)
            if sp.uqn == 1 and (sp.uq[0] == b"-" or sp.uq[0] == b"#"):
                h = h * 1099511628211ULL ^ _fnv1a(sp.wp, sp.wn)
            slot = <Py_ssize_t>(h & <unsigned long long>(cap - 1))
            while True:
                j = table[slot]
                if j < 0:
                    table[slot] = i
                    break
                if self._same_job(sp, &self.specs[j]):
                    sp.primary = j
                    sp.state = ST_DONE
                    break
                slot = (slot + 1) & (cap - 1)
        free(table)
        return 0

    cdef bint _same_job(self, _Spec *a, _Spec *b) noexcept:
        if a.fnn != b.fnn or a.uqn != b.uqn or memcmp(a.fn, b.fn, a.fnn) != 0 \
                or memcmp(a.uq, b.uq, a.uqn) != 0:
            return False
        if a.uqn == 1 and (a.uq[0] == b"-" or a.uq[0] == b"#"):
            return a.wn == b.wn and (a.wn == 0 or memcmp(a.wp, b.wp, a.wn) == 0)
        return True

    cdef int _fail(self, Py_ssize_t i, object err) except -1:
        """Spec i ends with err (not with its job's outcome); the call raises the first such
        error once everything else has run."""
        if self.errors is None:
            self.errors = [None] * self.n
        self.errors[i] = err
        self.specs[i].state = ST_DONE
        if self.first_error is None:
            self.first_error = err
        return 0

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
        return self.value_at(self.origin(i))

    cdef object value_at(self, Py_ssize_t o):
        """value_of() of the specs whose job is spec o's."""
        cdef _TaskCtx *ctx = &self.specs[o].ctx
        if ctx.kind == K_BACKGROUND or ctx.kind == K_EPOCH:
            return (<_Server>self.servers[self.specs[o].server]).handle(ctx.handle)
        if ctx.result == NULL:
            return b""
        return PyBytes_FromStringAndSize(<char *>ctx.result, ctx.result_len)

    cdef _Server server_of(self, Py_ssize_t i):
        """The server that ran spec i's job."""
        return <_Server>self.servers[self.specs[self.origin(i)].server]




@cython.final
@cython.no_gc_clear
cdef class _Run(_Specs):
    """Runs job specs on a client's servers, all at once.

    ``setup(client, n, ...)`` sizes the spec array; callers fill ``specs[i]`` with
    ``set_job``/``set_status`` and keep the Python objects the specs point into alive (``keep``).
    ``go()`` queues every spec on its server (duplicate foreground uniques are submitted once: the
    twins take the first one's outcome) and drives the servers' connections together in this
    thread: each connection (a "lane") holds at most ``batch`` tasks (libgearman matches replies in
    O(tasks in flight), docs/libgearman-1.1.20.md#reply-matching-quadratic) and is refilled in
    halves as they finish; another connection to the same server is opened only when the open
    ones are full and saw no reply for a while (slow jobs). A single busy connection waits in
    GIL-free slices of SLICE_MS; several take turns in short non-blocking waits (libgearman has no
    public fds, docs/libgearman-1.1.20.md#no-public-fds). Status queries go after the jobs, on
    their own (docs/libgearman-1.1.20.md#status-steals-created).

    Ownership: the tasks belong to their connection (see _Conn). The run frees only epoch
    tasks, and only if the connection is still in the generation it added them in; everything
    else is freed by libgearman as it finishes (FREE_TASKS) or with the handle by ``abandon``.
    ``specs`` stays allocated until no handle can point into it any more.
    """

    def __cinit__(self, _Exc carrier):
        self.carrier = carrier
        self.qhead = NULL
        self.lanes = []

    def __dealloc__(self):
        # before _Specs.__dealloc__ frees the specs: no handle may point into them any more
        self._abandon_lanes()
        free(self.qhead)
        self.qhead = NULL

    cdef int setup(self, Client client, Py_ssize_t n, double deadline, int batch) except -1:
        """Make room for n specs (a fresh run). The caller sets ``client`` to None when the
        run is over (no cycle through the client's own run)."""
        cdef Py_ssize_t i, ns = len(client._router.servers)
        self._abandon_lanes()
        self.setup_specs(n)
        if ns > self.qcap:
            free(self.qhead)
            # qhead[ns], qtail[ns]
            self.qhead = <Py_ssize_t *>malloc(2 * ns * sizeof(Py_ssize_t))
            if self.qhead == NULL:
                self.qcap = 0
                raise MemoryError()
            self.qcap = ns
        self.qtail = self.qhead + ns
        for i in range(ns):
            self.qhead[i] = self.qtail[i] = -1
        self.client = client
        self.servers = client._router.servers
        self.nservers = ns
        self.deadline = deadline
        self.batch = batch
        self.retried = None
        self.started = False
        self.stalled = False
        self.nqueued = 0
        self.nlater = 0
        self.seen = 0
        self.wait_ms = 1
        return 0

    # -- queueing ----------------------------------------------------------------------------

    cdef inline void _push(self, Py_ssize_t i, Py_ssize_t s) noexcept:
        """Queue spec i on server s (FIFO)."""
        cdef _Spec *sp = &self.specs[i]
        sp.state = ST_QUEUED
        sp.server = s
        sp.lane = -1
        sp.qnext = -1
        if self.qtail[s] < 0:
            self.qhead[s] = i
        else:
            self.specs[self.qtail[s]].qnext = i
        self.qtail[s] = i
        self.nqueued += 1

    cdef inline Py_ssize_t _pop(self, Py_ssize_t s) noexcept:
        cdef Py_ssize_t i = self.qhead[s]
        if i >= 0:
            self.qhead[s] = self.specs[i].qnext
            if self.qhead[s] < 0:
                self.qtail[s] = -1
            self.nqueued -= 1
        return i

    cdef void queue_now(self, Py_ssize_t i) noexcept:
        """Queue spec i, a job without a unique, as it is set (a batch that cannot coalesce):
        no pass over the specs for it later (_queue_all leaves queued specs alone)."""
        self._push(i, 0 if self.nservers == 1 else self.client._router.first(NULL, 0).index)

    cdef int _queue_all(self) except -1:
        cdef Py_ssize_t i
        cdef _Spec *sp
        cdef _Router r = self.client._router
        cdef Py_ssize_t only = 0 if self.nservers == 1 else -1    # no choice to make
        if self.nqueued == self.n:
            return 0            # every spec was queued as it was set (queue_now)
        for i in range(self.n):
            sp = &self.specs[i]
            if sp.state == ST_DONE or sp.state == ST_QUEUED:
                continue
            if sp.kind == K_STATUS or sp.kind == K_STATUS_UNIQUE:
                sp.state = ST_LATER
                self.nlater += 1
            elif sp.uq == NULL:
                # its unique is drawn when it is added (_add): in the pass that sends it
                self._push(i, only if only >= 0 else r.first(NULL, 0).index)
            else:
                self._push(i, only if only >= 0 else r.first(sp.uq, sp.uqn).index)
        return 0

    cdef int _queue_later(self) except -1:
        """The status queries, once no job is in flight any more."""
        cdef _Router r = self.client._router
        cdef _Spec *sp
        cdef Py_ssize_t i
        for i in range(self.n):
            sp = &self.specs[i]
            if sp.state != ST_LATER:
                continue
            if sp.pinned >= 0:
                self._push(i, sp.pinned)
            elif sp.kind == K_STATUS:
                self._push(i, 0)          # callers pin handles of several servers
            else:
                self._push(i, r.first(sp.uq, sp.uqn).index)
        self.nlater = 0
        return 0

    # -- lanes -------------------------------------------------------------------------------

    cdef int _fill(self) except -1:
        """Give queued specs a place: refill open lanes, open more where needed."""
        cdef _Conn lane
        cdef _Server s
        cdef Py_ssize_t k, sidx
        cdef _Router r = self.client._router
        for sidx in range(self.nservers):
            if self.qhead[sidx] < 0:
                continue
            s = <_Server>r.servers[sidx]
            k = 0
            for lane in self.lanes:
                if lane.server is s and not lane.dead:
                    self._add(lane, sidx)
                    k += 1
            # another connection only when the open ones are full and saw no reply for a
            # while (slow jobs): fast jobs make room sooner than a connection opens
            while self.qhead[sidx] >= 0 and k < MAX_LANES and (k == 0 or self.stalled):
                lane = self._open(s)
                if lane is None:
                    break         # the server's specs moved elsewhere (or failed)
                self._add(lane, sidx)
                k += 1
        return 0

    cdef _Conn _open(self, _Server s):
        """A connection of s that this run has not used yet, opened and made a lane."""
        cdef _Conn conn
        cdef Py_ssize_t k = 0
        while True:
            conn = s.conn(k, self.client._exc)
            if not self.lanes or conn not in self.lanes:
                break
            k += 1
        try:
            conn.open(self.client, self.deadline)
        except _NotSent as e:
            self._server_failed(s, e.args[0])
            return None
        except GearmanTimeoutError:
            if self.nservers > 1:
                self.client._router.set_aside(s, 5.0, "no answer before the deadline")
            raise
        conn.lane_start(len(self.lanes))
        _list_push(self.lanes, conn)
        return conn

    cdef int _server_failed(self, _Server s, object err) except -1:
        """Nothing of the queued specs reached s: move them to the next server, or fail them
        once every server was tried."""
        cdef _Router r = self.client._router
        cdef _Spec *sp
        cdef Py_ssize_t i
        cdef Py_ssize_t nxt = r.after(s).index
        r.mark_down(s, err)
        i = self._pop(s.index)
        while i >= 0:
            sp = &self.specs[i]
            sp.tries += 1
            if sp.pinned < 0 and sp.tries < self.nservers:
                self._push(i, nxt)
            else:
                self._fail(i, r.none_reachable(err))
            i = self._pop(s.index)
        return 0

    cdef int _add(self, _Conn lane, Py_ssize_t sidx) except -1:
        """Add queued specs of server sidx to the lane, up to ``batch`` in flight, in reverse on
        a LIFO library so that they go out in order (docs/libgearman-1.1.20.md#lifo-order)."""
        cdef Py_ssize_t room = self.batch - (lane.added - lane.ctl.done), m = 0, j, i, first
        cdef _Spec *sp
        cdef gearman_task_st *gt
        cdef gearman_return_t rc
        cdef gearman_client_st *c = lane.c
        if room <= 0 or c == NULL or self.qhead[sidx] < 0:
            return 0
        # take up to room specs off the queue, linked through qnext in queue order
        first = self.qhead[sidx]
        i = first
        while m < room and i >= 0:
            self.specs[i].state = ST_SENT
            self.specs[i].lane = lane.lane_index
            j = i
            i = self.specs[i].qnext
            m += 1
        self.qhead[sidx] = i
        if i < 0:
            self.qtail[sidx] = -1
        self.specs[j].qnext = -1
        self.nqueued -= m
        if _ADD_REVERSED and m > 1:
            # reverse the taken chain so that the last one is added first
            i = first
            first = -1
            while i >= 0:
                j = self.specs[i].qnext
                self.specs[i].qnext = first
                first = i
                i = j
        i = first
        while i >= 0:
            sp = &self.specs[i]
            i = sp.qnext
            sp.ctx.ctl = &lane.ctl
            sp.ctx.kind = sp.kind
            sp.ctx.carrier = <PyObject *>self.carrier
            if sp.uq == NULL:
                # a job without a unique: one drawn here, kept if it is sent again elsewhere
                _fresh_unique(sp.genq)
                sp.uq = sp.genq
                sp.uqn = 32
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
                self._fail(sp - self.specs, _error(rc, lane, None))
                continue
            lane.added += 1
            lane.idle = False
        return 0

    cdef gearman_task_st *_add_epoch(self, _Conn lane, _Spec *sp) except? NULL:
        """gearman_execute adds the task and runs every pending task with its own callbacks
        (docs/libgearman-1.1.20.md#epoch-jobs); it must not be freed under our feet."""
        cdef gearman_client_st *c = lane.c
        cdef gearman_task_st *gt
        gearman_client_remove_options(c, GEARMAN_CLIENT_FREE_TASKS)
        gearman_client_set_timeout(c, _slice_ms(self.deadline, SLICE_MS))
        lane.ctl.slice_end = _now() + SLICE_MS / 1000.0
        with nogil:
            # whole seconds on the wire: rounded up so the job never runs early
            gt = _execute_epoch(c, sp.fn, sp.fnn, sp.uq, sp.uqn, <time_t>ceil(sp.epoch),
                                <gearman_job_priority_t>sp.priority, sp.wp, sp.wn, &sp.ctx)
        sp.task = gt
        sp.gen = lane.gen
        lane.epoch = gt != NULL
        return gt

    cdef int _settle_epoch(self, _Conn lane) except -1:
        cdef Py_ssize_t i
        cdef _Spec *sp
        cdef gearman_return_t rc
        for i in range(self.n):
            sp = &self.specs[i]
            if sp.kind != K_EPOCH or sp.task == NULL or sp.lane != lane.lane_index:
                continue
            if lane.gen == sp.gen:
                rc = gearman_task_return(sp.task)
                if rc != GEARMAN_UNKNOWN_STATE:
                    sp.ctx.rc = rc
                    _copy_handle(sp.ctx.handle, gearman_task_job_handle(sp.task))
                gearman_task_free(sp.task)
                gearman_client_add_options(lane.c, GEARMAN_CLIENT_FREE_TASKS)
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
        cdef _Conn lane, one
        cdef list busy
        cdef Py_ssize_t nl
        _refresh_signal_policy()
        if not self.started:
            self.started = True
            if self.n:
                self._ready(self.n - 1)      # a spec no caller set stays empty, as before
            if self.n > 1:
                self._coalesce()
            self._queue_all()
        while True:
            if self.nqueued:
                self._fill()
            # the busy lanes: one (the common case: a single job, or one connection, without a
            # list per round) or several
            one = None
            busy = None
            nl = len(self.lanes)
            if nl == 1:
                lane = <_Conn>self.lanes[0]
                if not lane.idle and not lane.dead:
                    one = lane
            elif nl > 1:
                busy = [lane for lane in self.lanes if not lane.idle and not lane.dead]
                if len(busy) == 1:
                    one = <_Conn>busy[0]
                    busy = None
                elif not busy:
                    busy = None
            if one is not None:
                if self._step(one, False):
                    return 1
            elif busy is not None:
                for lane in busy:
                    if self._step(lane, True):
                        return 1
                self._wait(busy)
            else:
                if self.nqueued:
                    continue
                if self.nlater:
                    self._queue_later()
                    continue
                self._release_lanes()
                if self.first_error is not None:
                    raise self.first_error      # the other connections ran to their end first
                return 0
            _check_signals(self.carrier)
            if self.deadline >= 0 and _now() >= self.deadline:
                where = one.server.address if one is not None else \
                    ', '.join(sorted({lane.server.address for lane in busy}))
                raise GearmanTimeoutError(
                    f"{where}: the job did not finish before the deadline", GEARMAN_TIMEOUT)

    cdef int _step(self, _Conn lane, bint nb) except -1:
        """One call of run_tasks on the lane: a blocking slice, or (nb) only what can be done
        without waiting. Returns 1 when a stream's chunk is ready."""
        cdef gearman_return_t rc
        cdef gearman_client_st *c = lane.c
        cdef int ms
        cdef Py_ssize_t before = lane.ctl.done + lane.ctl.created
        cdef sigset_t old
        cdef bint held
        if nb != lane.nb:
            if nb:
                gearman_client_add_options(c, GEARMAN_CLIENT_NON_BLOCKING)
            else:
                gearman_client_remove_options(c, GEARMAN_CLIENT_NON_BLOCKING)
            lane.nb = nb
        if nb:
            ms = ROUND_MS
        else:
            # with specs waiting for room, come back soon to see whether they need a lane
            ms = _slice_ms(self.deadline, ROUND_MS if self.nqueued else SLICE_MS)
            gearman_client_set_timeout(c, ms)
        lane.ctl.slice_end = _now() + ms / 1000.0
        lane.ctl.pause_requested = False
        with nogil:
            if nb:
                rc = gearman_client_run_tasks(c)       # does not wait
            else:
                held = _hold_signals(&old)
                rc = gearman_client_run_tasks(c)
                if held:
                    _release_signals(&old)
        if lane.ctl.cb_error:
            lane.ctl.cb_error = False
            self.carrier.raise_if_stored()
        if not nb:
            self.stalled = lane.ctl.done + lane.ctl.created == before
        if rc == GEARMAN_SUCCESS:
            lane.idle = True
            if lane.epoch:
                self._settle_epoch(lane)
            if lane.reset_after:
                lane.reset()
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
        cdef _Conn lane
        cdef gearman_return_t rc
        cdef Py_ssize_t seen = 0
        cdef sigset_t old
        cdef bint held
        for lane in busy:
            seen += lane.ctl.done + lane.ctl.created
        if seen != self.seen:
            self.wait_ms = 1
            self.stalled = False
        else:
            self.stalled = True
            if self.wait_ms < ROUND_MS // len(busy):
                self.wait_ms *= 2
        self.seen = seen
        for lane in busy:
            if lane.dead or lane.idle or lane.c == NULL:
                continue
            gearman_client_set_timeout(lane.c, _slice_ms(self.deadline, max(1, self.wait_ms)))
            with nogil:
                held = _hold_signals(&old)
                rc = gearman_client_wait(lane.c)
                if held:
                    _release_signals(&old)
            if rc == GEARMAN_SUCCESS:
                self.wait_ms = 1
            elif rc != GEARMAN_TIMEOUT and rc != GEARMAN_IO_WAIT and rc != GEARMAN_NO_ACTIVE_FDS:
                self._lane_failed(lane, rc)
        return 0

    cdef int _lane_failed(self, _Conn lane, gearman_return_t rc) except -1:
        """The connection broke. Specs that never reached the server go to the next one; if
        the server acknowledged nothing on it (typically a socket left stale by a server
        restart) they are tried once more on a new connection; the rest fail with the error."""
        cdef Py_ssize_t i, requeued = 0
        cdef _Spec *sp
        cdef bint untouched = lane.ctl.created == 0 and lane.ctl.done == 0
        cdef bint retry = untouched and (rc == GEARMAN_LOST_CONNECTION or rc == GEARMAN_ERRNO) \
            and (self.retried is None or lane.server.index not in self.retried)
        # COULD_NOT_CONNECT: libgearman's own reconnect failed, nothing went out. A socket that
        # closed under us (NO_ACTIVE_FDS included) may have carried the jobs.
        cdef bint unsent = rc == GEARMAN_COULD_NOT_CONNECT or rc == GEARMAN_GETADDRINFO
        err = _error(rc, lane, None)
        if lane.epoch and _is_conn_error(rc) and not unsent:
            # the server took the connection and the options, then dropped it on this packet:
            # it does not know SUBMIT_JOB_EPOCH (Perl's Gearman::Server, gear)
            err = NotSupportedError(
                f"{lane.server.address}: the job server dropped the connection on a scheduled "
                f"job (SUBMIT_JOB_EPOCH): it does not implement them", rc)
            retry = False
        lane.reset()
        lane.dead = True
        for i in range(self.n):
            sp = &self.specs[i]
            if sp.lane != lane.lane_index or sp.state != ST_SENT or sp.ctx.rc >= 0:
                continue
            if retry or (unsent and sp.ctx.handle[0] == 0):
                sp.ctx.skip_next = False
                self._push(i, lane.server.index)
                requeued += 1
            else:
                self._fail(i, err)
        if requeued:
            if retry:
                if self.retried is None:
                    self.retried = set()
                self.retried.add(lane.server.index)
            else:
                self._server_failed(lane.server, err)
        return 0

    cdef void _release_lanes(self) noexcept:
        """The run is over: connections go back to blocking mode for the next call."""
        cdef _Conn lane
        if not self.lanes:
            return
        for lane in self.lanes:
            if lane.nb:
                if lane.c != NULL:
                    gearman_client_remove_options(lane.c, GEARMAN_CLIENT_NON_BLOCKING)
                lane.nb = False
        _list_clear(self.lanes)

    cdef void _abandon_lanes(self) noexcept:
        """Drop every connection that still has work of this run: its tasks go with the handle."""
        cdef _Conn lane
        if not self.lanes:
            return
        for lane in self.lanes:
            if not lane.idle and not lane.dead:
                lane.abandon()
        self._release_lanes()

    cdef void _abort(self, object exc) noexcept:
        """An exception ends the run: the connections in use are dropped, and what has no
        outcome yet gets this exception (a timeout, Ctrl-C...). A server that acknowledged none
        of its jobs before the deadline (frozen, or not reading) is set aside for a while, so
        the next calls go elsewhere instead of waiting for it again."""
        cdef _Conn lane
        cdef _Router r
        if isinstance(exc, GearmanTimeoutError) and self.client is not None:
            r = self.client._router
            for lane in self.lanes:
                if not lane.idle and not lane.dead and lane.added and lane.ctl.created == 0 \
                        and lane.ctl.done == 0 and len(r.servers) > 1:
                    r.set_aside(lane.server, 5.0, "it acknowledged no job before the deadline")
        self._abandon_lanes()
        if isinstance(exc, Exception):
            self.abort_exc = exc

    cdef void release(self) noexcept:
        """The call is over and its outcomes were read: a run the client reuses keeps nothing
        alive until the next call (results, the Python objects the specs point into), and a
        big spec array is given back. Whatever still ran was abandoned (go()'s exception path),
        so no handle points into the specs."""
        cdef Py_ssize_t i
        self._abandon_lanes()
        self._clear_outcomes()
        self.n = self.ninit = 0
        self.keep = self.listeners = self.errors = None
        self.abort_exc = self.first_error = None
        self.client = None
        if self.cap > 4096:
            self._free_specs()

    def close(self):
        """Abandon what is still running (a stream closed early)."""
        self._abandon_lanes()

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

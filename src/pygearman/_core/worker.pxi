# The worker: registration, the work loop, idle waits, reconnects, fork.

cdef enum:
    # With several servers, each handle's turn at waiting (a server that does not answer costs
    # at most this per round; a NOOP from another is seen within (servers - 1) times this)
    MULTI_WAIT_MS = 25

# A server that stopped reading while a result went to it is not asked again for this long.
cdef double ASIDE_STALLED = 5.0


# exc must outlive the handle (libgearman may log while it is freed): no clearing by the cycle
# collector before __dealloc__.
@cython.no_gc_clear
cdef class _WH:
    """One libgearman worker handle with one job server. A worker keeps one per server, so a
    server that is frozen or stops reading holds up only its own handle: libgearman's grab loop
    waits on each connection of a handle in turn (docs/libgearman-1.1.20.md#worker-one-server-at-a-time),
    and its sends wait forever on a silent one (docs/libgearman-1.1.20.md#job-send-loops).
    It owns its handle: it frees it when it dies (the Worker's list of them may be cleared by
    the cycle collector before the Worker's own __dealloc__ runs), except in a forked child."""

    def __dealloc__(self):
        if self.w != NULL and self.gen == _fork_gen:
            gearman_worker_free(self.w)
        self.w = NULL


cdef class Worker:
    """Compiled core of :class:`pygearman.GearmanWorker` (use that class).

    Handles: ``_hs`` holds one libgearman worker handle per job server (``_WH``), each with the
    same functions, namespace, identifier and options; ``_w`` is the one in use. With one
    server the work loop is the plain one (``_loop``); with several, ``_loop_multi``
    (wmulti.pxi) takes the servers in turn and sets aside one that does not answer. Only this
    class frees handles."""

    def __cinit__(self, *args, **kwargs):
        self._servers = []
        self._functions = {}
        self._retired = []
        self._retries = {}
        self._max_retries = 3
        self._identifier = None
        self._exc = _Exc()
        self._poll_interval = 1.0
        self._deadline = -1.0
        self._hs = []
        self._fork_gen = _fork_gen
        self._hs.append(self._new_wh())
        self._use(0)

    cdef _WH _new_wh(self):
        """A new libgearman worker handle with our settings, namespace and functions (no
        server yet)."""
        cdef gearman_id_t wid
        cdef gearman_return_t rc
        cdef _Function f
        cdef bytes bname
        cdef _WH h = _WH.__new__(_WH)
        h.gen = _fork_gen
        h.exc = self._exc
        h.w = gearman_worker_create(NULL)
        if h.w == NULL:
            raise MemoryError("gearman_worker_create failed")
        gearman_worker_remove_servers(h.w)   # drop $GEARMAN_SERVERS; the Python layer decides
        # set_timeout also turns on GEARMAN_WORKER_TIMEOUT_RETURN, without which the worker
        # swallows timeouts and we could never look at signals (docs/libgearman-1.1.20.md#timeout-per-poll).
        gearman_worker_set_timeout(h.w, SLICE_MS)
        gearman_worker_set_log_fn(h.w, _log_line, <void *>self._exc, _log_verbosity())
        # GRAB_JOB_UNIQ rather than libgearman's GRAB_JOB_ALL: every job server knows it (gear's
        # Server and Perl's Gearman::Server do not know GRAB_JOB_ALL), and it carries the unique
        gearman_worker_remove_options(h.w, GEARMAN_WORKER_GRAB_ALL)
        if not self._plain_grab:
            gearman_worker_add_options(h.w, GEARMAN_WORKER_GRAB_UNIQ)
        wid = gearman_worker_id(h.w)
        h.read_fd = wid.read_fd
        h.write_fd = wid.write_fd
        h.need_ident = self._identifier is not None
        if self._namespace_b is not None:
            gearman_worker_set_namespace(h.w, self._namespace_b, len(self._namespace_b))
        for f in self._functions.values():
            bname = f.name.encode("utf-8")
            rc = gearman_worker_define_function(h.w, bname, PyBytes_GET_SIZE(bname),
                                                gearman_function_create(_job_trampoline),
                                                <uint32_t>f.timeout, <void *>f)
            if rc != GEARMAN_SUCCESS:
                gearman_worker_free(h.w)
                h.w = NULL
                _check(rc, self, None)
        return h

    cdef int _use(self, int i) noexcept:
        cdef _WH h = <_WH>self._hs[i]
        self._cur = i
        self._w = h.w
        self._read_fd = h.read_fd
        self._write_fd = h.write_fd
        return 0

    cdef int _attach(self, bytes host, int port) except -1:
        """Give a (resolving) server its handle: the first handle while it has none."""
        cdef gearman_return_t rc
        cdef _WH h = <_WH>self._hs[0]
        cdef const char *hp = host
        cdef in_port_t pt = <in_port_t>port
        if h.host is not None:
            h = self._new_wh()
        with nogil:                 # resolves the name
            rc = gearman_worker_add_server(h.w, hp, pt)
        if rc != GEARMAN_SUCCESS:
            if h is not self._hs[0]:
                gearman_worker_free(h.w)
                h.w = NULL
            return <int>rc
        h.host = host
        h.port = port
        if h is not self._hs[0]:
            self._hs.append(h)
        return 0

    cdef int _after_fork(self) except -1:
        """First use in a forked child: the handles, their sockets and wakeup pipes are the
        parent's. They are left alone (freeing them would shut the parent's sockets down) and
        the child gets new ones with the same servers, namespace, functions and identifier."""
        cdef gearman_return_t rc
        self._w = NULL
        self._busy = False
        self._stop_requested = False
        self._spare = None
        self._fork_gen = _fork_gen
        self._hs = [self._new_wh()]
        self._use(0)
        for host, port in self._servers:
            if self._pending is not None and (host, port) in self._pending:
                continue
            rc = <gearman_return_t>self._attach(<bytes>host, <int>port)
            _check(rc, self, None)
        self._use(0)
        self._probed = False
        self._bufs_done = False
        self._backoff = 0
        self._reident = self._identifier is not None
        return 0

    def __dealloc__(self):
        self._w = NULL          # the handles are freed by their _WH objects

    cdef int _enter(self) except -1:
        if self._fork_gen != _fork_gen and not self._closed:
            self._after_fork()
        if self._closed:
            raise RuntimeError("this GearmanWorker is closed")
        if self._busy:
            raise RuntimeError("this GearmanWorker is in use by another call (a worker is not "
                               "thread-safe: use one per thread)")
        self._busy = True
        return 0

    def _add_server(self, bytes host, int port):
        cdef gearman_return_t rc
        self._enter()
        try:
            rc = <gearman_return_t>self._attach(host, port)
            if rc == GEARMAN_GETADDRINFO:
                # A name that does not resolve (yet: in container setups a peer's name often
                # appears later) must not stop the worker from serving the other servers: it is
                # added when it resolves (see _retry_pending), said once in a log line.
                if self._pending is None:
                    self._pending = []
                self._pending.append((host, port))
                _log.warning("worker: %s:%d does not resolve (yet); serving the other servers "
                             "and trying it again meanwhile", host.decode("utf-8", "replace"), port)
            elif rc != GEARMAN_SUCCESS:
                _check(rc, self, None)
            self._servers.append((host, port))
        finally:
            self._busy = False

    cdef int _retry_pending(self) except -1:
        """Add the servers whose names did not resolve, once they do (at most every 2 s)."""
        cdef gearman_return_t rc
        cdef double now = _now()
        if not self._pending or now - self._pending_at < 2.0:
            return 0
        self._pending_at = now
        still = []
        for host, port in self._pending:
            rc = <gearman_return_t>self._attach(<bytes>host, <int>port)
            if rc == GEARMAN_SUCCESS:
                _log.info("worker: %s:%d resolves now; serving it too",
                          (<bytes>host).decode("utf-8", "replace"), port)
            else:
                still.append((host, port))
        self._pending = still
        return 0

    @property
    def servers(self):
        """The job servers, as ``host:port`` strings, in the order they were added (names that
        do not resolve yet included)."""
        return [(f"[{h.decode()}]:{p}" if b":" in h else f"{h.decode()}:{p}") for h, p in self._servers]

    @property
    def functions(self):
        """Names of the registered functions."""
        return list(self._functions)

    @property
    def closed(self):
        """True after close()."""
        return self._closed

    @property
    def jobs_processed(self):
        """How many jobs were handed to a function so far."""
        return self._jobs

    def _add_function(self, name, function, timeout):
        """Register ``function(job) -> result`` under ``name``. ``timeout`` (seconds, whole) is
        the server-side CAN_DO_TIMEOUT: 0 means none."""
        cdef bytes bname = _coerce(name, "function name", C_FUNCTION)
        cdef gearman_return_t rc
        cdef _Function f
        if not callable(function):
            raise TypeError(f"function must be callable, not {type(function).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise TypeError("timeout must be a whole number of seconds")
        if not 0 <= timeout <= 0xFFFFFFFF:
            raise ValueError("timeout must be between 0 and 2**32-1 seconds")
        f = _Function.__new__(_Function)
        f.func = function
        f.timeout = timeout
        f.name = bname.decode("utf-8", "replace")
        f.worker = <PyObject *>self
        self._enter()
        try:
            for h in self._hs:
                rc = gearman_worker_define_function((<_WH>h).w, bname, PyBytes_GET_SIZE(bname),
                                                    gearman_function_create(_job_trampoline),
                                                    <uint32_t>timeout, <void *>f)
                if rc != GEARMAN_SUCCESS:
                    _check(rc, self, None)
            # libgearman replaced any earlier definition: only now may the old context die.
            old = self._functions.get(f.name)
            if old is not None:
                self._retired.append(old)
            self._functions[f.name] = f
        finally:
            self._busy = False

    def _unregister(self, name):
        """Stop taking jobs for one function."""
        cdef bytes bname = _coerce(name, "function name", C_FUNCTION)
        cdef gearman_return_t rc
        key = bname.decode("utf-8", "replace")
        if self._closed:
            raise RuntimeError("this GearmanWorker is closed")
        if key not in self._functions:
            raise KeyError(f"no function {key!r} is registered")
        self._enter()
        try:
            for h in self._hs:
                rc = gearman_worker_unregister((<_WH>h).w, bname)
                if rc != GEARMAN_SUCCESS:
                    _check(rc, self, None)
            # libgearman drops the function lazily: keep its context alive until the worker dies.
            self._retired.append(self._functions.pop(key))
        finally:
            self._busy = False

    def _function_items(self):
        """[(name, callable, timeout)] of the registered functions (for clone())."""
        cdef _Function f
        out = []
        for f in self._functions.values():
            out.append((f.name, f.func, f.timeout))
        return out

    def _unregister_all(self):
        """Stop taking jobs for every function."""
        cdef gearman_return_t rc
        self._enter()
        try:
            if self._functions:
                for h in self._hs:
                    rc = gearman_worker_unregister_all((<_WH>h).w)
                    if rc != GEARMAN_SUCCESS:
                        _check(rc, self, None)
                self._retired.extend(self._functions.values())
                self._functions = {}
        finally:
            self._busy = False

    def _set_namespace(self, namespace):
        cdef bytes b
        if isinstance(namespace, str):
            b = namespace.encode("utf-8")
        elif isinstance(namespace, bytes):
            b = namespace
        else:
            raise TypeError(f"namespace must be str or bytes, not {type(namespace).__name__}")
        if len(b) > 511 or b"\0" in b:
            raise ValueError("namespace must be at most 511 bytes, without NUL")
        if self._functions:
            raise RuntimeError("set the namespace before adding functions")
        for h in self._hs:
            gearman_worker_set_namespace((<_WH>h).w, b, len(b))
        self._namespace_b = b

    def _set_poll_interval(self, seconds):
        cdef double t
        if seconds is None:
            self._poll_interval = -1.0
            return
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"poll_interval must be a number of seconds or None, not "
                            f"{type(seconds).__name__}")
        t = seconds
        if isnan(t) or t <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds (or None), got {seconds!r}")
        self._poll_interval = t

    @property
    def poll_interval(self):
        """How often an idle worker asks the server again (None: only when woken by its NOOP).
        gearmand 1.1.20 has no timer: a scheduled job (when=) is handed out when a worker asks."""
        return None if self._poll_interval < 0 else self._poll_interval

    def _set_max_retries(self, n):
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError("max_retries must be an int")
        if not 0 <= n <= 1000000:
            raise ValueError("max_retries must be between 0 and 1000000")
        self._max_retries = n

    @property
    def max_retries(self):
        """How often this worker hands a job back (raise Retry) before failing it."""
        return self._max_retries

    @property
    def identifier(self):
        """This worker's name in the admin view (``workers``), or None."""
        return self._identifier.decode() if self._identifier is not None else None

    def _set_identifier(self, identifier):
        """Name this worker for the admin protocol (``workers``). libgearman 1.1.20 forgets it
        after a reconnect; pygearman sends it again."""
        cdef bytes b = _coerce(identifier, "identifier", C_IDENTIFIER)
        cdef int i
        self._enter()
        try:
            self._identifier = b
            for i in range(len(self._hs)):
                if (<_WH>self._hs[i]).host is not None:
                    self._use(i)
                    self._apply_identifier()
            self._use(0)
        finally:
            self._busy = False

    cdef int _apply_identifier(self) except -1:
        """Send the identifier again: libgearman 1.1.20 sends it once per connection object,
        never after a reconnect. Only called right after work() returned without a connection
        error, i.e. with the sockets connected: gearman_worker_set_identifier() would connect a
        closed socket itself, and libgearman then skips that server's CAN_DO registrations."""
        cdef gearman_return_t rc
        cdef const char *p
        cdef size_t n
        if self._identifier is None or not self._servers:
            self._reident = False
            return 0
        p = PyBytes_AS_STRING(self._identifier)
        n = PyBytes_GET_SIZE(self._identifier)
        with nogil:   # sends SET_CLIENT_ID on each connected socket
            rc = gearman_worker_set_identifier(self._w, p, n)
        _log.debug("worker: identifier %r sent again (%s)", self._identifier, strerror(rc))
        (<_WH>self._hs[self._cur]).need_ident = False
        self._reident = False
        self._ident_at = _now()
        return 0

    cdef int _backoff_sleep(self, double seconds) except -1:
        """Sleep without the GIL, woken early by stop()."""
        cdef pollfd pfd
        cdef int ms
        cdef double until = _now() + seconds
        while not self._stop_requested:
            ms = <int>((until - _now()) * 1000)
            if ms <= 0:
                break
            pfd.fd = self._read_fd
            pfd.events = POLLIN
            pfd.revents = 0
            with nogil:
                poll(&pfd, 1, ms if ms < SLICE_MS else SLICE_MS)
            _check_signals(self._exc)
        return 0

    # -- the work loop -----------------------------------------------------------------------

    cdef void _drain_wakeup(self) noexcept:
        cdef char buf[64]
        while read(self._read_fd, buf, sizeof(buf)) > 0:
            pass

    cdef int _backoff_wait(self, double deadline) except -1:
        """Server unreachable: wait (interruptibly: stop() writes to the pipe we poll) instead of
        spinning at 54k connect attempts per second (docs/libgearman-1.1.20.md#worker-connect-spin)."""
        cdef double until, left
        cdef pollfd pfd
        cdef int ms, r
        self._backoff = BACKOFF_MIN if self._backoff == 0 else min(self._backoff * 2, BACKOFF_MAX)
        until = _now() + self._backoff
        if deadline >= 0 and deadline < until:
            until = deadline
        while True:
            left = until - _now()
            if left <= 0:
                return 0
            ms = <int>(left * 1000) + 1
            if ms > SLICE_MS:
                ms = SLICE_MS
            pfd.fd = self._read_fd
            pfd.events = POLLIN
            pfd.revents = 0
            with nogil:
                r = poll(&pfd, 1, ms)
            _check_signals(self._exc)
            if self._stop_requested:
                return 0

    cdef int _idle_wait(self, double deadline) except -1:
        """No job: the worker has sent PRE_SLEEP; wait for the server's NOOP (or a job) without
        sending anything, in slices that look at stop(), Ctrl-C and the deadline. Every
        poll_interval seconds it asks again anyway: gearmand 1.1.20 has no timer, so a
        scheduled job (when=) only reaches a worker that asks."""
        cdef gearman_return_t rc
        cdef double regrab = _now() + self._poll_interval if self._poll_interval > 0 else -1
        cdef double now
        cdef int ms
        cdef sigset_t old
        cdef bint held
        while not self._stop_requested:
            ms = _slice_ms(deadline, SLICE_MS)
            if regrab >= 0:
                now = _now()
                if now >= regrab:
                    break
                if (regrab - now) * 1000 < ms:
                    ms = max(1, <int>((regrab - now) * 1000))
            gearman_worker_set_timeout(self._w, ms)
            with nogil:
                held = _hold_signals(&old)
                rc = gearman_worker_wait(self._w)
                if held:
                    _release_signals(&old)
            _check_signals(self._exc)
            if rc == GEARMAN_SHUTDOWN_GRACEFUL:
                self._drain_wakeup()
                break
            if rc != GEARMAN_TIMEOUT:
                break               # something arrived (or an error that work() will report)
            if deadline >= 0 and _now() >= deadline:
                break
        gearman_worker_set_timeout(self._w, _slice_ms(deadline, SLICE_MS))
        return 0

    cdef object _loop(self, bint one, double deadline):
        """Process jobs until one is done (one=True), stop() is called, or the deadline passes.
        Returns the number of jobs handed to functions."""
        cdef gearman_return_t rc
        cdef unsigned long long start = self._jobs
        cdef bint warned = False
        cdef int slice_ms, set_ms = -2
        cdef unsigned long long jobs_before
        cdef bint reached = False       # some server answered during this call
        cdef bint timed_out = False
        last_err = None
        self._enter()
        self._deadline = deadline
        try:
            if not self._functions:
                raise RuntimeError("no functions registered: call add_function() first")
            if not self._servers:
                raise ValueError("no job servers: add one with add_server()")
            while True:
                if self._stop_requested:
                    break
                if self._pending:
                    self._retry_pending()
                if len(self._pending or ()) == len(self._servers):
                    # no server resolves yet: nothing to work with but the wait
                    self._backoff_wait(deadline)
                    last_err = "no server name resolves"
                    _check_signals(self._exc)
                    if deadline >= 0 and _now() >= deadline:
                        timed_out = True
                        break
                    continue
                if not self._probed:
                    self._probe_all()
                slice_ms = _slice_ms(deadline, SLICE_MS)
                if slice_ms != set_ms:
                    gearman_worker_set_timeout(self._w, slice_ms)
                    set_ms = slice_ms
                _refresh_signal_policy()
                jobs_before = self._jobs
                rc = pyg_worker_work(self._w, &_async_signals if _handlers_installed and
                                     pthread_equal(pthread_self(), _main_thread) else NULL)
                self._exc.raise_if_stored()
                if rc == GEARMAN_SUCCESS or rc == GEARMAN_WORK_FAIL or rc == GEARMAN_TIMEOUT \
                        or rc == GEARMAN_IO_WAIT or rc == GEARMAN_NO_JOBS:
                    reached = True
                    if self._backoff:
                        _log.info("worker reconnected to the job server")
                        self._reident = True
                        self._bufs_done = False
                    if not self._bufs_done and rc != GEARMAN_IO_WAIT:
                        # connected (libgearman pins 32 KiB socket buffers; lift them)
                        enlarge_socket_buffers([(h.decode("utf-8", "replace"), p)
                                                for h, p in self._servers])
                        self._bufs_done = True
                    self._backoff = 0
                    warned = False
                    # libgearman does not re-send the identifier after a reconnect, and some
                    # reconnects are silent (server restarted during a job): re-send it after
                    # errors and every 2 s (one small packet).
                    if self._identifier is not None and not self._reident_next and (
                            self._reident or (len(self._servers) == 1 and _now() - self._ident_at > 2)):
                        self._apply_identifier()
                    if one and self._jobs != start and rc != GEARMAN_TIMEOUT:
                        break
                    if rc == GEARMAN_TIMEOUT and self._jobs == jobs_before:
                        # idle: sleep on the PRE_SLEEP already sent, like every Gearman worker,
                        # instead of asking again each slice
                        self._idle_wait(deadline)
                elif rc == GEARMAN_SHUTDOWN_GRACEFUL:
                    self._drain_wakeup()     # sticky until drained (docs/libgearman-1.1.20.md#wakeup-pipe-sticky)
                elif rc == GEARMAN_SHUTDOWN:
                    break
                elif _is_conn_error(rc):
                    last_err = _clean(_text(gearman_worker_error(self._w))) or strerror(rc)
                    self._probed = False    # look at whatever answers there next
                    if not warned:
                        _log.warning("worker: %s; retrying with backoff",
                                     _clean(_text(gearman_worker_error(self._w))) or strerror(rc))
                        warned = True
                    self._backoff_wait(deadline)
                elif rc == GEARMAN_UNEXPECTED_PACKET and not self._plain_grab and \
                        "GEARMAN_ERROR" in _text(gearman_worker_error(self._w)):
                    # the server answered GRAB_JOB_UNIQ with ERROR (Perl's Gearman::Server knows
                    # only GRAB_JOB): ask with GRAB_JOB from now on; job.unique is then empty
                    for h in self._hs:
                        gearman_worker_remove_options((<_WH>h).w, GEARMAN_WORKER_GRAB_UNIQ)
                    self._plain_grab = True
                    _log.warning("worker: %s answers GRAB_JOB_UNIQ with ERROR: using GRAB_JOB "
                                 "(job.unique is empty there)", ", ".join(self.servers))
                else:
                    # e.g. gearmand answering a late WORK_COMPLETE with ERROR after it requeued a
                    # job whose CAN_DO_TIMEOUT passed: report it, keep the worker alive.
                    _log.warning("worker: %s", _clean(_text(gearman_worker_error(self._w))) or strerror(rc))
                    self._reident = True
                    self._backoff_wait(deadline)
                _check_signals(self._exc)
                if deadline >= 0 and _now() >= deadline:
                    timed_out = True
                    break
        finally:
            self._stop_requested = False
            self._deadline = -1.0
            self._busy = False
        if timed_out and not reached and last_err is not None:
            # "no job" is False / 0; "no server at all" says so
            raise GearmanConnectionError(f"no job server could be reached before the deadline "
                                         f"({', '.join(self.servers)}): {last_err}",
                                         GEARMAN_COULD_NOT_CONNECT)
        return self._jobs - start

    def _work(self, timeout):
        """Wait for one job and run it. Returns True if a job was processed, False if the
        timeout passed or stop() was called first."""
        cdef double deadline = _deadline_from(timeout, -1.0)
        if len(self._hs) > 1 or self._pending:
            return _loop_multi(self, True, deadline) > 0
        return self._loop(True, deadline) > 0

    def _run(self, timeout):
        """Process jobs until stop() is called (from any thread or a signal handler), Ctrl-C,
        or the timeout. Returns the number of jobs processed."""
        cdef double deadline = _deadline_from(timeout, -1.0)
        if len(self._hs) > 1 or self._pending:
            return _loop_multi(self, False, deadline)
        return self._loop(False, deadline)

    def _stop(self):
        """Ask a running work()/run() to return after the job in hand. Safe from any thread and
        from signal handlers (it only writes a byte to libgearman's wakeup pipe)."""
        cdef gearman_id_t wid
        if self._closed:
            return
        self._stop_requested = True
        if self._fork_gen != _fork_gen:
            return          # the pipe is the parent's (nothing runs here yet)
        for h in self._hs:
            wid.read_fd = (<_WH>h).read_fd
            wid.write_fd = (<_WH>h).write_fd
            gearman_kill(wid, GEARMAN_INTERRUPT)

    cdef list _send_servers(self):
        """[(host str, port)] of the server the handle in use talks to."""
        cdef _WH h = <_WH>self._hs[self._cur]
        if h.host is None:
            return []
        return [(h.host.decode("utf-8", "replace"), h.port)]

    cdef int _probe_all(self) except -1:
        known = True
        for host, port in self._servers:
            if self._pending and (host, port) in self._pending:
                continue
            known = _probe(host, port, f"{host.decode()}:{port}") and known
        self._probed = known
        return 0

    def _echo(self, data):
        """Check each job server answers (ECHO)."""
        cdef object keep = None
        cdef _Payload p
        cdef gearman_return_t rc
        cdef int i
        keep = _payload_get(&p, data, "echo data")
        try:
            if p.size == 0:
                raise ValueError("echo data must not be empty")
            self._enter()
            try:
                if not self._probed:
                    self._probe_all()
                for i in range(len(self._hs)):
                    if (<_WH>self._hs[i]).host is None:
                        continue
                    self._use(i)
                    with nogil:
                        rc = gearman_worker_echo(self._w, p.ptr, p.size)
                    if rc != GEARMAN_SUCCESS:
                        _check(rc, self, None)
                return True
            finally:
                self._use(0)
                self._busy = False
        finally:
            _payload_release(&p)

    def _close(self):
        """Disconnect and free the worker. Idempotent."""
        if self._closed:
            return
        if self._busy:
            raise RuntimeError("cannot close a GearmanWorker while it is working; call stop() first")
        self._closed = True
        if self._fork_gen == _fork_gen:
            for h in self._hs:
                if (<_WH>h).w != NULL:
                    gearman_worker_free((<_WH>h).w)
                    (<_WH>h).w = NULL
        self._w = NULL
        self._functions = {}

    def __del__(self):
        if not self._closed and self._servers:
            try:
                warnings.warn(f"unclosed {type(self).__name__}; use close() or 'with'",
                              ResourceWarning, source=self)
            except Exception:
                pass  # interpreter shutdown: the memory is freed by __dealloc__ regardless

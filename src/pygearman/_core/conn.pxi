# The connection layer: a job server (_Server) and the libgearman client handles to it (_Conn).


@cython.final
cdef class _Conn:
    """One libgearman client handle to one job server, made on first use.

    Ownership: the handle owns every task added to it. ``reset()`` frees the handle (and with it
    every task still in it) and bumps ``gen``; whoever added a task remembers the generation it
    added it in and frees it itself only while ``gen`` is unchanged. Runs use
    GEARMAN_CLIENT_FREE_TASKS, so libgearman frees finished tasks; an unfinished run is always
    abandoned by ``reset()``. This is the only place a libgearman client handle is freed.
    """

    def __cinit__(self, _Server server, _Exc carrier):
        self.server = server
        self.carrier = carrier
        self.c = NULL
        self.gen = 0
        self.fork_gen = _fork_gen

    cdef int open(self, Client owner, double deadline) except -1:
        """Create, configure and arm the handle if needed. Raises _NotSent(error) when nothing
        can have reached the server (unreachable, not a Gearman server)."""
        cdef int step = 1000
        if self.c == NULL or not self.armed:
            _refresh_signal_policy()
        while self.c == NULL or not self.armed:
            if self.c == NULL:
                self._create(owner, deadline)
            if self._arm_once(deadline, step):
                return 0
            # No answer within `step`: drop this connection rather than ask again on it, so a
            # late answer can never be taken for the answer to a later request (a distant
            # server); the next attempt waits twice as long.
            self.reset()
            self.tick(deadline, "no answer from the job server")
            if step == 1000 and self._answers_status(owner, deadline, step):
                # A server that answers GET_STATUS but never OPTION_REQ (gear's Server, the
                # job server behind Zuul) does not know options: go on without "exceptions".
                self.server.no_options = True
                self.armed = True
                _log.warning("%s does not answer the 'exceptions' option request; a worker's "
                             "exception reaches this client as a plain failure (JobFailed)",
                             self.server.address)
                return 0
            step = min(2 * step, 8000)
        return 0

    cdef bint _answers_status(self, Client owner, double deadline, int step) except -1:
        """On a new connection: does the server answer a GET_STATUS (of a handle nobody has)
        within step ms? If so the connection is kept (armed is left to the caller)."""
        cdef gearman_return_t rc
        cdef sigset_t old
        cdef bint held
        cdef c_bool known = False, running = False
        cdef uint32_t num = 0, den = 0
        self._create(owner, deadline)
        gearman_client_set_timeout(self.c, _slice_ms(deadline, step))
        with nogil:
            held = _hold_signals(&old)
            rc = gearman_client_job_status(self.c, b"H:pygearman-probe:0", &known, &running,
                                           &num, &den)
            if held:
                _release_signals(&old)
        gearman_client_set_timeout(self.c, SLICE_MS)
        if rc == GEARMAN_SUCCESS:
            return True
        self.reset()
        self.tick(deadline, "no answer from the job server")
        return False

    cdef int _create(self, Client owner, double deadline) except -1:
        """A new libgearman handle for this server, with our callbacks and settings."""
        cdef gearman_return_t rc
        cdef _Server s = self.server
        cdef const char *host = s.host
        cdef in_port_t port = <in_port_t>s.port
        cdef const char *ident
        cdef size_t ident_len
        cdef double left
        if not s.probed:
            left = 1.0 if deadline < 0 else min(1.0, max(0.05, deadline - _now()))
            try:
                s.probed = _probe(s.host, s.port, s.address, left)
            except ProtocolError as e:
                raise _NotSent(e)
        self.c = gearman_client_create(NULL)
        if self.c == NULL:
            raise MemoryError("gearman_client_create failed")
        self.fork_gen = _fork_gen
        # gearman_client_create has already added $GEARMAN_SERVERS; this handle is for one server
        gearman_client_remove_servers(self.c)
        with nogil:   # resolves the name (getaddrinfo)
            rc = gearman_client_add_server(self.c, host, port)
        if rc != GEARMAN_SUCCESS:
            err = _error(rc, self, None)
            self.reset()
            raise _NotSent(err)
        gearman_client_set_timeout(self.c, SLICE_MS)
        gearman_client_set_log_fn(self.c, _log_line, <void *>self.carrier, _log_verbosity())
        gearman_client_set_created_fn(self.c, _on_created)
        gearman_client_set_data_fn(self.c, _on_data)
        gearman_client_set_warning_fn(self.c, _on_warning)
        gearman_client_set_status_fn(self.c, _on_status)
        gearman_client_set_complete_fn(self.c, _on_complete)
        gearman_client_set_exception_fn(self.c, _on_exception)
        gearman_client_set_fail_fn(self.c, _on_fail)
        gearman_client_add_options(self.c, GEARMAN_CLIENT_FREE_TASKS)
        if owner._namespace is not None:
            gearman_client_set_namespace(self.c, PyBytes_AS_STRING(owner._namespace),
                                         PyBytes_GET_SIZE(owner._namespace))
        if owner._identifier is not None:
            ident = PyBytes_AS_STRING(owner._identifier)
            ident_len = PyBytes_GET_SIZE(owner._identifier)
            with nogil:   # sends SET_CLIENT_ID at once (connects; no answer is expected)
                rc = gearman_client_set_identifier(self.c, ident, ident_len)
            if rc != GEARMAN_SUCCESS:
                err = _error(rc, self, "sending the identifier")
                self.reset()
                raise _NotSent(err)
        return 0

    cdef bint _arm_once(self, double deadline, int step) except -1:
        """Ask once for the "exceptions" option: without it libgearman 1.1.20 hangs on any job
        whose worker raises (docs/libgearman-1.1.20.md#exception-hang). It must be set after
        add_server and only sticks once a server has accepted it. False: no answer in time."""
        cdef bint ok, held
        cdef gearman_return_t rc
        cdef sigset_t old
        if self.server.no_options:
            self.armed = True
            return True
        gearman_client_set_timeout(self.c, _slice_ms(deadline, step))
        with nogil:
            held = _hold_signals(&old)
            ok = gearman_client_set_server_option(self.c, b"exceptions", 10)
            if held:
                _release_signals(&old)
        gearman_client_set_timeout(self.c, SLICE_MS)
        if ok:
            self.armed = True
            # the handle is connected now: lift libgearman's 32 KiB socket buffers
            # (docs/libgearman-1.1.20.md#socket-buffers-32k)
            enlarge_socket_buffers([(self.server.host.decode("utf-8", "replace"),
                                     self.server.port)])
            return True
        rc = gearman_client_error_code(self.c)
        if rc == GEARMAN_TIMEOUT:
            return False
        err = _error(rc, self, None if _is_conn_error(rc) else "setting the 'exceptions' option")
        self.reset()
        if _is_conn_error(rc):
            raise _NotSent(err)
        raise err

    cdef void lane_start(self, Py_ssize_t index) noexcept:
        """This connection becomes lane `index` of a run."""
        memset(&self.ctl, 0, sizeof(_RunCtl))
        self.lane_index = index
        self.added = 0
        self.idle = False
        self.dead = False
        self.reset_after = False
        self.epoch = False

    cdef int tick(self, double deadline, str what) except -1:
        """Between two slices of a blocking call: surface Ctrl-C and enforce the deadline.
        Either way the call is abandoned mid-protocol, so the connection is dropped."""
        try:
            _check_signals(self.carrier)
        except BaseException:
            self.abandon()
            raise
        if deadline >= 0 and _now() >= deadline:
            self.abandon()
            raise GearmanTimeoutError(f"{self.server.address}: {what} before the deadline",
                                      GEARMAN_TIMEOUT)
        return 0

    cdef void abandon(self) noexcept:
        """Like reset(), for a connection given up in the middle of a request: its socket may
        still hold unsent data, and closing it then lingers up to 10 s
        (docs/libgearman-1.1.20.md#linger-10s), so the handle is freed in a background thread
        and the caller goes on at once."""
        cdef gearman_client_st *c = self.c
        if c == NULL or self.fork_gen != _fork_gen:
            self.reset()
            return
        self.c = NULL
        self.reset()              # bumps gen, clears the rest (c is already detached)
        try:
            threading.Thread(target=_free_client_handle, args=(<size_t>c,), daemon=True,
                             name="pygearman-close").start()
        except BaseException:
            with nogil:
                gearman_client_free(c)

    cdef void reset(self) noexcept:
        """Start over with a new handle on next use: drops the socket, half-sent or half-read
        packets, every task and every counter. A new handle rather than remove/add_servers:
        re-sending the stored "exceptions" option inside run_tasks loses the next reply
        (docs/libgearman-1.1.20.md#exception-option-reissue), and COULD_NOT_CONNECT leaves the
        counters skewed (docs/libgearman-1.1.20.md#could-not-connect-skew). Freed without the
        GIL: closing a socket with unsent data can linger (docs/libgearman-1.1.20.md#linger-10s)."""
        cdef gearman_client_st *c = self.c
        if self.fork_gen != _fork_gen:
            self.forget()           # the parent's handle: never shut its socket down
            self.fork_gen = _fork_gen
            return
        self.c = NULL
        if c != NULL:
            with nogil:
                gearman_client_free(c)
        self.gen += 1
        self.armed = False
        self.server.probed = False     # whatever listens there now gets looked at again

    cdef void forget(self) noexcept:
        """In a forked child: drop the handle inherited from the parent without freeing it.
        Freeing would shut its socket down (shutdown(2) acts on the parent's connection too);
        the child leaves the descriptor open and unused and connects anew on next use."""
        self.c = NULL
        self.gen += 1
        self.armed = False
        self.idle = True

    def __dealloc__(self):
        if self.c != NULL and self.fork_gen == _fork_gen:
            gearman_client_free(self.c)
        self.c = NULL


def _free_client_handle(size_t handle):
    """Free an abandoned libgearman client handle (see _Conn.abandon), off the caller's way."""
    cdef gearman_client_st *c = <gearman_client_st *>handle
    with nogil:
        gearman_client_free(c)


@cython.final
cdef class _Server:
    """One job server: its address, whether it failed recently, and a pool of connections
    (``conns[0]`` serves single calls; a run opens more when one connection is full)."""

    def __cinit__(self, bytes host, int port, Py_ssize_t index):
        self.host = host
        self.port = port
        self.index = index
        h = host.decode("utf-8", "replace")
        self.address = f"[{h}]:{port}" if ":" in h else f"{h}:{port}"
        self.conns = []
        self.handle_cls = handle_class(self.address)

    cdef object handle(self, const char *text):
        """A JobHandle of this server, made in C (see _core/handle.pxi)."""
        return _new_handle(self.handle_cls, text)

    cdef _Conn conn(self, Py_ssize_t i, _Exc carrier):
        while len(self.conns) <= i:
            self.conns.append(_Conn(self, carrier))
        return <_Conn>self.conns[i]

    cdef void reset_all(self) noexcept:
        cdef _Conn c
        for c in self.conns:
            c.reset()

    cdef void forget_all(self) noexcept:
        cdef _Conn c
        for c in self.conns:
            c.forget()
            c.fork_gen = _fork_gen
        self.probed = False

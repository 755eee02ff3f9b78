# The worker's loop over several job servers: one libgearman handle each, taken in turn
# (libgearman's own handle asks its servers one after another and waits on each, so one frozen
# server would starve the others: docs/libgearman-1.1.20.md#worker-one-server-at-a-time).
# Functions of the Worker (its state is in its cdef attributes), kept apart from the one-server
# loop in worker.pxi.


cdef int _drain_all(Worker w) noexcept:
    cdef char buf[64]
    cdef _WH h
    for h in w._hs:
        while read(h.read_fd, buf, sizeof(buf)) > 0:
            pass
    return 0


cdef int _idle_wait_multi(Worker w, double deadline) except -1:
    """Every server said "no job" (each handle sent its PRE_SLEEP) or did not answer: wait
    for a NOOP on any of them, sending nothing. libgearman waits on one handle at a time, so
    the handles take turns in short waits (MULTI_WAIT_MS each); the one that wakes becomes
    the handle in use. Returns after poll_interval (to ask again), on stop(), at the deadline."""
    cdef gearman_return_t rc
    cdef double regrab = _now() + w._poll_interval if w._poll_interval > 0 else -1
    cdef double now
    cdef int ms, i, n = len(w._hs), waited
    cdef sigset_t old
    cdef bint held
    cdef _WH h
    cdef pollfd pfd
    while not w._stop_requested:
        waited = 0
        for i in range(n):
            h = <_WH>w._hs[(w._cur + 1 + i) % n]
            now = _now()
            if h.host is None or h.aside_until > now:
                continue
            ms = _slice_ms(deadline, MULTI_WAIT_MS)
            if regrab >= 0:
                if now >= regrab:
                    return 0
                if (regrab - now) * 1000 < ms:
                    ms = max(1, <int>((regrab - now) * 1000))
            gearman_worker_set_timeout(h.w, ms)
            with nogil:
                held = _hold_signals(&old)
                rc = gearman_worker_wait(h.w)
                if held:
                    _release_signals(&old)
            gearman_worker_set_timeout(h.w, SLICE_MS)
            _check_signals(w._exc)
            if rc == GEARMAN_SHUTDOWN_GRACEFUL:
                _drain_all(w)
                return 0
            if rc == GEARMAN_NO_ACTIVE_FDS:
                continue        # nothing to wait on there (not connected): asked next round
            waited += 1
            if rc != GEARMAN_TIMEOUT:
                w._use((w._cur + 1 + i) % n)      # it has something: serve it next
                return 0
            if w._stop_requested or (deadline >= 0 and _now() >= deadline):
                return 0
        if not waited:
            # no handle to wait on: sleep a slice on the pipe (stop() wakes it)
            pfd.fd = w._read_fd
            pfd.events = POLLIN
            pfd.revents = 0
            ms = _slice_ms(deadline, SLICE_MS)
            with nogil:
                poll(&pfd, 1, ms)
            _check_signals(w._exc)
            return 0
        if deadline >= 0 and _now() >= deadline:
            return 0
    return 0

cdef object _loop_multi(Worker w, bint one, double deadline):
    """_loop for several servers (or names still unresolved): one libgearman handle per
    server, asked in turn. A handle that has jobs is drained before the next is asked; one
    whose server does not answer costs at most its short slice per round. A server that
    cannot be reached, or that stopped reading while a result was sent to it, is set aside
    (backoff from BACKOFF_MIN doubling to BACKOFF_MAX; ASIDE_STALLED after a stalled send)
    with one log line, and the others are served meanwhile."""
    cdef gearman_return_t rc
    cdef unsigned long long start = w._jobs
    cdef unsigned long long jobs_before
    cdef bint reached = False
    cdef bint timed_out = False
    cdef int n, i, idle_run = 0, ready, ms
    cdef double now, soonest
    cdef _WH h
    cdef pollfd pfd
    last_err = None
    w._enter()
    w._deadline = deadline
    w._aborted = False
    try:
        if not w._functions:
            raise RuntimeError("no functions registered: call add_function() first")
        if not w._servers:
            raise ValueError("no job servers: add one with add_server()")
        while True:
            if w._stop_requested:
                break
            if w._pending:
                w._retry_pending()
            n = len(w._hs)
            now = _now()
            ready = 0
            soonest = -1
            for i in range(n):
                h = <_WH>w._hs[i]
                if h.host is None:
                    continue
                if h.aside_until <= now:
                    ready += 1
                elif soonest < 0 or h.aside_until < soonest:
                    soonest = h.aside_until
            if ready == 0:
                # nothing to ask now: wait (interruptibly) for the first to come back
                if last_err is None:
                    last_err = "no server name resolves" if soonest < 0 else "unreachable"
                if soonest < 0 or soonest > now + BACKOFF_MIN:
                    soonest = now + BACKOFF_MIN
                if deadline >= 0 and deadline < soonest:
                    soonest = deadline
                ms = max(1, <int>((soonest - now) * 1000) + 1)
                pfd.fd = w._read_fd
                pfd.events = POLLIN
                pfd.revents = 0
                with nogil:
                    poll(&pfd, 1, ms if ms < SLICE_MS else SLICE_MS)
                _check_signals(w._exc)
                if deadline >= 0 and _now() >= deadline:
                    timed_out = True
                    break
                continue
            h = <_WH>w._hs[w._cur]
            if h.host is None or h.aside_until > now:
                w._use((w._cur + 1) % n)
                continue
            if not h.probed and now >= h.probe_next:
                verdict = _probe(h.host, h.port, f"{h.host.decode()}:{h.port}", 0.5)
                h.probed = verdict
                h.probe_next = _now() + 10.0     # inconclusive (refused, silent): later
            gearman_worker_set_timeout(h.w, _slice_ms(deadline, MULTI_WAIT_MS))
            _refresh_signal_policy()
            jobs_before = w._jobs
            rc = pyg_worker_work(h.w, &_async_signals if _handlers_installed and
                                 pthread_equal(pthread_self(), _main_thread) else NULL)
            w._exc.raise_if_stored()
            if rc == GEARMAN_SUCCESS or rc == GEARMAN_WORK_FAIL or rc == GEARMAN_TIMEOUT \
                    or rc == GEARMAN_IO_WAIT or rc == GEARMAN_NO_JOBS:
                reached = True
                if h.backoff:
                    _log.info("worker: %s:%d answers again", h.host.decode("utf-8", "replace"),
                              h.port)
                    h.need_ident = True
                    w._bufs_done = False
                h.backoff = 0
                h.warned = False
                if w._aborted:
                    # a send to it was ended half-way (it stopped reading); libgearman has
                    # dropped the connection, gearmand requeues the job
                    w._aborted = False
                    h.aside_until = _now() + ASIDE_STALLED
                    h.need_ident = True
                    h.probed = False
                    _log.warning("worker: %s:%d stopped reading; set aside for %.0f s, serving "
                                 "the other servers", h.host.decode("utf-8", "replace"), h.port,
                                 ASIDE_STALLED)
                elif not w._bufs_done and rc != GEARMAN_IO_WAIT:
                    enlarge_socket_buffers([(sh.decode("utf-8", "replace"), sp)
                                            for sh, sp in w._servers])
                    w._bufs_done = True
                if w._identifier is not None and h.need_ident and h.aside_until <= _now():
                    w._apply_identifier()
                if w._jobs != jobs_before:
                    idle_run = 0
                    if one and rc != GEARMAN_TIMEOUT:
                        break
                else:
                    # no job from this one (or no answer in its slice): ask the next; when
                    # none had one, sleep on their PRE_SLEEPs
                    idle_run += 1
                    w._use((w._cur + 1) % n)
                    if idle_run >= ready:
                        idle_run = 0
                        _idle_wait_multi(w, deadline)
            elif rc == GEARMAN_SHUTDOWN_GRACEFUL:
                _drain_all(w)
            elif rc == GEARMAN_SHUTDOWN:
                break
            elif _is_conn_error(rc):
                last_err = _clean(_text(gearman_worker_error(h.w))) or strerror(rc)
                h.backoff = BACKOFF_MIN if h.backoff == 0 else min(h.backoff * 2, BACKOFF_MAX)
                h.aside_until = _now() + h.backoff
                h.need_ident = True
                h.probed = False
                h.probe_next = 0
                if not h.warned:
                    _log.warning("worker: %s:%d: %s; serving the other servers, retrying it "
                                 "with backoff", h.host.decode("utf-8", "replace"), h.port,
                                 last_err)
                    h.warned = True
                w._use((w._cur + 1) % n)
            elif rc == GEARMAN_UNEXPECTED_PACKET and not w._plain_grab and \
                    "GEARMAN_ERROR" in _text(gearman_worker_error(h.w)):
                for x in w._hs:
                    gearman_worker_remove_options((<_WH>x).w, GEARMAN_WORKER_GRAB_UNIQ)
                w._plain_grab = True
                _log.warning("worker: %s answers GRAB_JOB_UNIQ with ERROR: using GRAB_JOB "
                             "(job.unique is empty there)", ", ".join(w.servers))
            else:
                _log.warning("worker: %s", _clean(_text(gearman_worker_error(h.w))) or strerror(rc))
                h.need_ident = True
                h.aside_until = _now() + BACKOFF_MIN
                w._use((w._cur + 1) % n)
            _check_signals(w._exc)
            if deadline >= 0 and _now() >= deadline:
                timed_out = True
                break
    finally:
        _drain_all(w)
        w._stop_requested = False
        w._deadline = -1.0
        w._busy = False
    if timed_out and not reached and last_err is not None:
        raise GearmanConnectionError(f"no job server could be reached before the deadline "
                                     f"({', '.join(w.servers)}): {last_err}",
                                     GEARMAN_COULD_NOT_CONNECT)
    return w._jobs - start

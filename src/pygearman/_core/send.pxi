# Sends of a job's outcome that may block: a helper thread interrupts them every slice so that
# Ctrl-C, stop() and deadlines are looked at, and a send to a server that stopped reading ends.

# A send to a job server that stopped reading never returns by itself: libgearman's job send
# loops on GEARMAN_TIMEOUT inside (docs/libgearman-1.1.20.md#job-send-loops), and its only way
# out is the worker's wakeup pipe. While a big send runs, a helper thread (one per process,
# started on the first big send, signals blocked) writes a byte to that pipe every SLICE_MS: the
# send returns GEARMAN_SHUTDOWN_GRACEFUL, we look at Ctrl-C, stop() and the deadline, and resume
# it where it stopped (the connection keeps its place in the packet).
cdef extern from *:
    """
    #include <pthread.h>
    #include <signal.h>
    #include <time.h>
    #include <unistd.h>
    #define PYG_TICK_SLOTS 64
    static pthread_mutex_t pyg_tick_mu = PTHREAD_MUTEX_INITIALIZER;
    static pthread_mutex_t pyg_tick_init_mu = PTHREAD_MUTEX_INITIALIZER;
    static pthread_cond_t pyg_tick_cv;
    static int pyg_tick_started = 0;
    static int pyg_tick_fd[PYG_TICK_SLOTS];
    static double pyg_tick_next[PYG_TICK_SLOTS];
    static double pyg_tick_every = 0.1;

    /* In a forked child the helper thread does not exist and the mutexes may be in any state:
       start afresh on the next big send. */
    static void pyg_tick_atfork_child(void)
    {
        pthread_mutex_init(&pyg_tick_mu, NULL);
        pthread_mutex_init(&pyg_tick_init_mu, NULL);
        pyg_tick_started = 0;
    }

    static void pyg_tick_setup(void)
    {
        pthread_atfork(NULL, NULL, pyg_tick_atfork_child);
    }

    static double pyg_tick_now(void)
    {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
    }

    static void *pyg_tick_main(void *unused)
    {
        (void)unused;
        pthread_mutex_lock(&pyg_tick_mu);
        for (;;) {
            double now = pyg_tick_now(), next = -1;
            int i;
            for (i = 0; i < PYG_TICK_SLOTS; i++) {
                if (pyg_tick_fd[i] < 0)
                    continue;
                if (pyg_tick_next[i] <= now) {
                    ssize_t r = write(pyg_tick_fd[i], "1", 1);   /* as gearman_kill() does */
                    (void)r;
                    pyg_tick_next[i] = now + pyg_tick_every;
                }
                if (next < 0 || pyg_tick_next[i] < next)
                    next = pyg_tick_next[i];
            }
            if (next < 0) {
                pthread_cond_wait(&pyg_tick_cv, &pyg_tick_mu);
            } else {
                struct timespec ts;
                ts.tv_sec = (time_t)next;
                ts.tv_nsec = (long)((next - (double)ts.tv_sec) * 1e9);
                pthread_cond_timedwait(&pyg_tick_cv, &pyg_tick_mu, &ts);
            }
        }
        return NULL;
    }

    /* Called without the GIL. Returns a slot for pyg_tick_disarm, or -1 (no helper: the send
       then runs as before, and only stop() can end it). */
    static int pyg_tick_arm(int fd, int every_ms)
    {
        int i, slot = -1;
        pthread_mutex_lock(&pyg_tick_init_mu);
        if (!pyg_tick_started) {                     /* first use, or a forked child */
            pthread_condattr_t ca;
            pthread_attr_t ta;
            pthread_t th;
            sigset_t all, old;
            int ok;
            pthread_condattr_init(&ca);
            pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
            pthread_cond_init(&pyg_tick_cv, &ca);
            pthread_condattr_destroy(&ca);
            for (i = 0; i < PYG_TICK_SLOTS; i++)
                pyg_tick_fd[i] = -1;
            sigfillset(&all);                       /* signals stay with the application's threads */
            pthread_sigmask(SIG_BLOCK, &all, &old);
            pthread_attr_init(&ta);
            pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
            pthread_attr_setstacksize(&ta, 64 * 1024);
            ok = pthread_create(&th, &ta, pyg_tick_main, NULL) == 0;
            pthread_attr_destroy(&ta);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            if (!ok) {
                pthread_mutex_unlock(&pyg_tick_init_mu);
                return -1;
            }
            pyg_tick_started = 1;
        }
        pthread_mutex_unlock(&pyg_tick_init_mu);
        pthread_mutex_lock(&pyg_tick_mu);
        for (i = 0; i < PYG_TICK_SLOTS; i++) {
            if (pyg_tick_fd[i] < 0) {
                slot = i;
                pyg_tick_every = every_ms / 1000.0;
                pyg_tick_fd[i] = fd;
                pyg_tick_next[i] = pyg_tick_now() + pyg_tick_every;
                pthread_cond_signal(&pyg_tick_cv);
                break;
            }
        }
        pthread_mutex_unlock(&pyg_tick_mu);
        return slot;
    }

    /* After it returns, the helper writes no more to that fd. */
    static void pyg_tick_disarm(int slot)
    {
        if (slot < 0)
            return;
        pthread_mutex_lock(&pyg_tick_mu);
        pyg_tick_fd[slot] = -1;
        pthread_mutex_unlock(&pyg_tick_mu);
    }
    """
    int pyg_tick_arm(int fd, int every_ms) noexcept nogil
    void pyg_tick_disarm(int slot) noexcept nogil
    void pyg_tick_setup() noexcept


pyg_tick_setup()


cdef double SEND_GRACE = 1.0    # a send runs at least this long before stop()/a deadline ends it
# A send whose bytes have not moved for this long (the kernel's queue to the server unchanged)
# is ended even without a deadline: the server has stopped reading.
cdef double SEND_STALL = 10.0


cdef gearman_return_t _send_guarded(Worker w, gearman_job_st *job, int kind, const char *p,
                                    size_t n) noexcept:
    """A send that may block (kind 0 data, 1 warning, 2 complete, 3 exception), GIL held on
    entry. Ends early - the connection is then dropped, so gearmand requeues the job - on Ctrl-C
    or another signal handler's exception (stored on the worker), on stop() or past the call's
    deadline (after SEND_GRACE). Returns GEARMAN_SHUTDOWN_GRACEFUL then, and sets w._aborted."""
    cdef gearman_return_t rc
    cdef int slot
    cdef int fd = w._write_fd
    cdef double start = _now()
    cdef double now
    cdef str why = None
    cdef double checked = start, moved = start
    cdef long long unsent = -1, u
    with nogil:
        slot = pyg_tick_arm(fd, SLICE_MS)
        rc = _job_send_any(job, kind, p, n)
    while rc == GEARMAN_SHUTDOWN_GRACEFUL:
        w._drain_wakeup()
        try:
            _check_signals(w._exc)
        except BaseException as e:
            w._exc.store(e)
            why = f"{type(e).__name__}"
            break
        now = _now()
        if now - start >= SEND_GRACE:
            if w._stop_requested:
                why = "stop()"
                break
            if w._deadline >= 0 and now >= w._deadline:
                why = "the deadline"
                break
        if now - checked >= 1.0:
            # still sending after a second: is anything moving? (once a second; a few
            # system calls per socket of this process)
            checked = now
            try:
                u = unsent_bytes(w._send_servers())
            except Exception:
                u = -1
            if u != unsent or u <= 0:
                unsent = u
                moved = now
            elif now - moved >= SEND_STALL:
                why = f"no progress for {SEND_STALL:.0f} s"
                break
        with nogil:
            rc = _job_send_any(job, kind, p, n)
    with nogil:
        pyg_tick_disarm(slot)
    w._drain_wakeup()            # a tick between the end of the send and the disarm
    if why is not None:
        w._aborted = True
        try:
            # libgearman's close would wait up to 10 s for the unsent bytes
            # (docs/libgearman-1.1.20.md#linger-10s): a reset drops the half packet at once
            reset_on_close(w._send_servers())
        except BaseException:
            pass
        try:
            _log.warning("worker: a %d-byte send to the job server did not finish in %.1f s; "
                         "ended by %s: dropping the connection (the server requeues the job)",
                         n, _now() - start, why)
        except BaseException:
            pass
        return GEARMAN_SHUTDOWN_GRACEFUL
    return rc

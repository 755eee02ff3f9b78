# Utilities of the compiled core: clocks and deadlines, the one coercion helper for names,
# uniques and identifiers, borrowed payloads, generated uniques, server hashing, text.

cdef extern from *:
    """
    /* gearman_argument_t has const members: build it and the epoch attribute in C. */
    static gearman_task_st *pyg_execute_epoch(gearman_client_st *c, const char *fn, size_t fnn,
                                              const char *uq, size_t uqn, time_t when,
                                              gearman_job_priority_t prio, const char *wp,
                                              size_t wn, void *ctx)
    {
        gearman_task_attr_t attr = gearman_task_attr_init_epoch(when, prio);
        gearman_argument_t arg = gearman_argument_make(NULL, 0, wp, wn);
        return gearman_execute(c, fn, fnn, uq, uqn, &attr, &arg, ctx);
    }
    """
    gearman_task_st *_execute_epoch "pyg_execute_epoch"(
        gearman_client_st *c, const char *fn, size_t fnn, const char *uq, size_t uqn,
        time_t when, gearman_job_priority_t prio, const char *wp, size_t wn, void *ctx) nogil

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    enum:
        POLLIN

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    pthread_t pthread_self()
    int pthread_equal(pthread_t a, pthread_t b)

cdef extern from "<signal.h>" nogil:
    ctypedef struct sigset_t:
        pass
    int sigfillset(sigset_t *set)
    int sigdelset(sigset_t *set, int signum)
    int pthread_sigmask(int how, const sigset_t *set, sigset_t *oldset)
    enum:
        SIG_BLOCK
        SIG_SETMASK
        SIGSEGV
        SIGBUS
        SIGFPE
        SIGILL
        SIGABRT
        SIGTRAP
        SIGSYS

_log = logging.getLogger("pygearman")

# How long one blocking libgearman call may run before we look at signals and deadlines again:
# libgearman restarts poll() on EINTR with the full timeout (docs/libgearman-1.1.20.md#eintr-restart).
cdef enum:
    SLICE_MS = 100
cdef double BACKOFF_MIN = 0.1
cdef double BACKOFF_MAX = 5.0

PRIORITY_HIGH = <int>GEARMAN_JOB_PRIORITY_HIGH
PRIORITY_NORMAL = <int>GEARMAN_JOB_PRIORITY_NORMAL
PRIORITY_LOW = <int>GEARMAN_JOB_PRIORITY_LOW

MAX_FUNCTION_NAME = GEARMAN_FUNCTION_MAX_SIZE
# A unique of exactly GEARMAN_MAX_UNIQUE_SIZE bytes is cut to one less
# (docs/libgearman-1.1.20.md#limits): the longest unique that travels intact is 63 bytes.
MAX_UNIQUE = GEARMAN_MAX_UNIQUE_SIZE - 1
MAX_IDENTIFIER = GEARMAN_MAX_IDENTIFIER


def libgearman_version():
    """The version string of the libgearman loaded at run time."""
    return (<bytes>gearman_version()).decode()


LIBGEARMAN_BUILD_VERSION = (<bytes>LIBGEARMAN_VERSION_STRING).decode()


cdef bint _library_is_lifo():
    """libgearman before 2.0.0 puts new tasks at the head of its list and sends from the head
    (docs/libgearman-1.1.20.md#lifo-order); 2.0.0 sends them in the order they were added."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", libgearman_version())
    if m is None:
        return True
    return tuple(int(x) for x in m.groups()) < (2, 0, 0)


# Tasks are added in reverse on a LIFO library, so that they go out in the order given.
cdef bint _ADD_REVERSED = _library_is_lifo()


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef double _seconds(object timeout) except? -2.0:
    """A user's timeout in seconds, validated before any I/O; -1 for none (None or inf)."""
    cdef double t
    if timeout is None:
        return -1.0
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    t = timeout
    if isnan(t) or t < 0:
        raise ValueError(f"timeout must be >= 0 seconds (or None for no deadline), got {timeout!r}")
    if t == float("inf"):
        return -1.0
    return t


cdef double _deadline_from(object timeout, double default) except? -2.0:
    """Absolute monotonic deadline, or -1 for none. ``default`` (seconds, -1 none) applies when
    the caller passed nothing."""
    cdef double t = default if timeout is _UNSET else _seconds(timeout)
    if t < 0:
        return -1.0
    return _now() + t


cdef inline int _slice_ms(double deadline, int slice_ms) noexcept nogil:
    """The next wait's length: slice_ms, or what is left until the deadline (at least 1 ms:
    libgearman treats 0 as 'never poll', docs/libgearman-1.1.20.md#timeout-per-poll)."""
    cdef double left
    if deadline < 0:
        return slice_ms
    left = (deadline - _now()) * 1000.0
    if left >= slice_ms:
        return slice_ms
    if left < 1:
        return 1
    return <int>left


# libgearman restarts poll() with its full timeout whenever a signal interrupts it
# (docs/libgearman-1.1.20.md#eintr-restart): with a signal every few ms (a profiler, a periodic
# timer) a wait would never end, and neither would deadlines or Ctrl-C. So the main thread (where
# Python's handlers run) keeps asynchronous signals pending while libgearman waits; they are
# delivered, and their Python handlers run, as soon as the slice (at most SLICE_MS) is over.
cdef sigset_t _async_signals
sigfillset(&_async_signals)
for _sig in (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS):
    sigdelset(&_async_signals, _sig)
# where CPython runs signal handlers (its ident is the pthread_t on POSIX)
cdef pthread_t _main_thread = <pthread_t>threading.main_thread().ident


# Only a signal with a Python handler interrupts a wait (an ignored or default one does not;
# SIGINT's default_int_handler only on Ctrl-C): without one, nothing is held, and a wait costs no
# extra system call. Looked at again at most every 2 seconds.
cdef bint _handlers_installed = False
cdef double _handlers_checked = -10.0


cdef inline int _refresh_signal_policy() except -1:
    """Whether some signal has a Python handler (then waits hold signals; see above):
    looked at again every 2 s."""
    cdef double now = _now()
    if now - _handlers_checked < 2.0:
        return 0
    return _refresh_signal_policy_now(now)


cdef int _refresh_signal_policy_now(double now) except -1:
    global _handlers_installed, _handlers_checked
    _handlers_checked = now
    found = False
    for sig in _signal_module.valid_signals():
        if sig == _signal_module.SIGINT:
            continue        # its handler is CPython's own, unless replaced (checked below)
        try:
            h = _signal_module.getsignal(sig)
        except (ValueError, OSError):
            continue
        if h is not None and h is not _signal_module.SIG_DFL and h is not _signal_module.SIG_IGN:
            found = True
            break
    if not found:
        h = _signal_module.getsignal(_signal_module.SIGINT)
        found = h is not None and h is not _signal_module.SIG_DFL and \
            h is not _signal_module.SIG_IGN and h is not _signal_module.default_int_handler
    _handlers_installed = found
    return 0


cdef inline bint _hold_signals(sigset_t *old) noexcept nogil:
    """Keep signals pending during a libgearman wait (main thread only, and only when a
    Python handler is installed); True if it did."""
    if not _handlers_installed or not pthread_equal(pthread_self(), _main_thread):
        return False
    return pthread_sigmask(SIG_BLOCK, &_async_signals, old) == 0


cdef inline void _release_signals(sigset_t *old) noexcept nogil:
    pthread_sigmask(SIG_SETMASK, old, NULL)


cdef class _Unset:
    def __repr__(self):
        return "<default>"


_UNSET = _Unset()
UNSET = _UNSET

cdef enum:
    # what _coerce() checks a name against
    C_FUNCTION = 0      # function name: 1..512 bytes, no NUL
    C_UNIQUE = 1        # unique: None allowed, 1..63 bytes, no NUL
    C_IDENTIFIER = 2    # identifier: None allowed, 1..254 printable ASCII, no spaces
    C_HANDLE = 3        # job handle: 1..63 bytes, no NUL


cdef bytes _coerce(object value, str what, int kind):
    """The one place that turns a user's name, unique, identifier or handle into bytes and
    checks it against the Gearman limits (docs/libgearman-1.1.20.md#limits)."""
    cdef bytes b
    cdef Py_ssize_t n, limit
    cdef const unsigned char *p
    if value is None and (kind == C_UNIQUE or kind == C_IDENTIFIER):
        return None
    if isinstance(value, str):
        b = (<str>value).encode("utf-8")
    elif isinstance(value, bytes):
        b = <bytes>value
    else:
        allowed = "str, bytes or None" if kind in (C_UNIQUE, C_IDENTIFIER) else "str or bytes"
        raise TypeError(f"{what} must be {allowed}, not {type(value).__name__}")
    n = PyBytes_GET_SIZE(b)
    if kind == C_HANDLE and (n == 0 or n >= GEARMAN_JOB_HANDLE_SIZE or memchr(PyBytes_AS_STRING(b), 0, n) != NULL):
        raise ValueError(f"not a job handle: {value!r} (1..{GEARMAN_JOB_HANDLE_SIZE - 1} bytes, "
                         f"as returned by do_background)")
    if n == 0:
        if kind == C_UNIQUE:
            raise ValueError(f"{what} must not be empty (pass None to let pygearman choose one)")
        raise ValueError(f"{what} must not be empty")
    limit = (GEARMAN_FUNCTION_MAX_SIZE if kind == C_FUNCTION else
             MAX_UNIQUE if kind == C_UNIQUE else
             GEARMAN_MAX_IDENTIFIER if kind == C_IDENTIFIER else GEARMAN_JOB_HANDLE_SIZE - 1)
    if n > limit:
        if kind == C_UNIQUE:
            raise ValueError(f"{what} is {n} bytes; at most {limit} bytes travel intact through "
                             f"libgearman")
        raise ValueError(f"{what} is {n} bytes; the Gearman limit is {limit} bytes")
    if kind == C_IDENTIFIER:
        p = <const unsigned char *>PyBytes_AS_STRING(b)
        for i in range(n):
            if p[i] <= 32 or p[i] >= 127:
                raise ValueError(f"{what} may only contain printable ASCII without spaces")
    elif kind == C_FUNCTION:
        # the admin protocol is tab- and line-separated: one such name breaks `status` for the
        # whole server (the admin module refuses them too)
        p = <const unsigned char *>PyBytes_AS_STRING(b)
        for i in range(n):
            if p[i] == 0:
                raise ValueError(f"{what} must not contain NUL bytes")
            if p[i] <= 32 or p[i] == 127:
                raise ValueError(f"{what} must not contain spaces, tabs, newlines or other "
                                 f"control characters, got {value!r}")
    elif memchr(PyBytes_AS_STRING(b), 0, n) != NULL:
        raise ValueError(f"{what} must not contain NUL bytes")
    return b


cdef bytes _namespace_bytes(object namespace):
    cdef bytes b
    if namespace is None:
        return None
    if isinstance(namespace, str):
        b = (<str>namespace).encode("utf-8")
    elif isinstance(namespace, bytes):
        b = <bytes>namespace
    else:
        raise TypeError(f"namespace must be str, bytes or None, not {type(namespace).__name__}")
    if len(b) > 511 or b"\0" in b:
        # namespace + function name go into a 1024-byte stack buffer unchecked
        # (docs/libgearman-1.1.20.md#limits)
        raise ValueError("namespace must be at most 511 bytes, without NUL")
    return b or None


# A packet's length is 32 bits (docs/libgearman-1.1.20.md#limits); room for a function name,
# a unique or handle and the separators is kept.
# a C constant for the checks (a module global would be looked up and boxed on every job)
cdef Py_ssize_t C_MAX_PAYLOAD = 0xFFFFFFFF - 1024
MAX_PAYLOAD = C_MAX_PAYLOAD


cdef inline int _payload_size_ok(Py_ssize_t n, str what) except -1:
    if n > C_MAX_PAYLOAD:
        _payload_too_big(n, what)
    return 0


cdef int _payload_too_big(Py_ssize_t n, str what) except -1:
    if n > C_MAX_PAYLOAD:
        raise ValueError(f"{what} is {n} bytes; a Gearman packet carries at most {MAX_PAYLOAD} "
                         f"bytes (4 GiB less 1 KiB): store it elsewhere and send a reference")
    return 0


cdef object _payload_get(_Payload *p, object data, str what):
    """Borrow a pointer to bytes-like data (no copy) or to the UTF-8 of a str (one encode),
    refusing what no Gearman packet can carry before anything is copied. Returns the object the
    caller must keep alive while it uses p (or None)."""
    cdef bytes enc
    p.has_view = False
    p.ptr = NULL
    p.size = 0
    if isinstance(data, bytes):
        _payload_size_ok(PyBytes_GET_SIZE(data), what)
        p.size = PyBytes_GET_SIZE(data)
        if p.size:
            p.ptr = PyBytes_AS_STRING(data)
        return data
    if isinstance(data, str):
        if PyUnicode_GET_LENGTH(data) > C_MAX_PAYLOAD:
            _payload_size_ok(PyUnicode_GET_LENGTH(data), what)
        enc = (<str>data).encode("utf-8")
        _payload_size_ok(PyBytes_GET_SIZE(enc), what)
        p.size = PyBytes_GET_SIZE(enc)
        if p.size:
            p.ptr = PyBytes_AS_STRING(enc)
        return enc
    if data is None:
        raise TypeError(f"{what} must be bytes-like or str, not None (use b'' for an empty {what})")
    try:
        PyObject_GetBuffer(data, &p.view, PyBUF_SIMPLE)
    except (TypeError, BufferError) as e:
        raise TypeError(f"{what} must be bytes-like (bytes, bytearray, memoryview, ...) or str, "
                        f"not {type(data).__name__} ({e})") from None
    p.has_view = True
    if p.view.len > C_MAX_PAYLOAD:
        _payload_release(p)
        _payload_size_ok(p.view.len, what)
    p.size = p.view.len
    if p.size:
        p.ptr = <const char *>p.view.buf
    return None


cdef inline void _payload_release(_Payload *p) noexcept:
    if p.has_view:
        PyBuffer_Release(&p.view)
        p.has_view = False


cdef bytes _payload_copy(object data, str what):
    """A workload validated and copied now (the caller may reuse a bytearray afterwards)."""
    cdef _Payload p
    cdef object keep = _payload_get(&p, data, what)
    try:
        if isinstance(keep, bytes):
            return <bytes>keep
        return p.ptr[:p.size] if p.size else b""
    finally:
        _payload_release(&p)


# Uniques for jobs the caller gave none: libgearman's own cost ~9 us per job
# (docs/libgearman-1.1.20.md#libuuid-unique-cost), so we draw 128 random bits from a pool refilled
# with os.urandom. A forked child drops the pool (register_at_fork), so parent and child never hand
# out the same unique, and no getpid() per job is needed.
cdef bytes _rand_pool = b""
cdef Py_ssize_t _rand_pos = 0
# two hex digits per byte value, so that a unique is 16 two-byte copies
cdef const char *_HEX2 = (
    b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    b"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    b"404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    b"606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    b"808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    b"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    b"c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    b"e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
)


# Bumped in a forked child: objects made in an earlier generation hold libgearman handles whose
# sockets the parent still uses; they drop them (without a byte or a shutdown) on next use.
cdef unsigned long _fork_gen = 0


def _after_fork_in_child():
    global _rand_pool, _rand_pos, _fork_gen
    _rand_pool = b""
    _rand_pos = 0
    _fork_gen += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


cdef inline void _copy_handle(char *dst, const char *src) noexcept nogil:
    """A job handle into a 64-byte buffer (NUL-terminated; no padding as strncpy does)."""
    cdef size_t n = strnlen(src, 63)
    memcpy(dst, src, n)
    dst[n] = 0


cdef int _fresh_unique(char *out) except -1:
    """Writes 32 hex chars + NUL into out."""
    global _rand_pool, _rand_pos
    cdef const unsigned char *src
    cdef int i
    if _rand_pos + 16 > PyBytes_GET_SIZE(_rand_pool):
        _rand_pool = os.urandom(4096)
        _rand_pos = 0
    src = <const unsigned char *>PyBytes_AS_STRING(_rand_pool) + _rand_pos
    _rand_pos += 16
    for i in range(16):
        memcpy(out + 2 * i, _HEX2 + 2 * src[i], 2)
    out[32] = 0
    return 0


def new_unique():
    """A fresh random unique (32 hex characters), as pygearman uses for background jobs."""
    cdef char buf[33]
    _fresh_unique(buf)
    return (<bytes>buf).decode("ascii")


cdef unsigned long long _fnv1a(const char *p, Py_ssize_t n) noexcept:
    """A hash that is the same in every process (Python's hash() is salted per process), so
    every client sends a given unique to the same server and coalescing works."""
    cdef unsigned long long h = 1469598103934665603ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <unsigned char>p[i]) * 1099511628211ULL
    return h


cdef str _text(const char *s):
    if s == NULL:
        return ""
    return s[:strlen(s)].decode("utf-8", "replace")


cdef str _clean(str msg):
    """libgearman's texts end in ' -> libgearman/file.cc:123: pid(N)'; keep the useful part."""
    cdef Py_ssize_t i = msg.find(" -> libgearman")
    if i > 0:
        msg = msg[:i]
    return msg


cdef int _check_batch(object batch) except -1:
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"batch must be an int, not {type(batch).__name__}")
    if not 1 <= batch <= 1000000:
        raise ValueError(f"batch must be between 1 and 1000000, got {batch}")
    return 0


cdef int _check_priority(object priority) except -1:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be a Priority, not {type(priority).__name__}")
    if priority not in (PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW):
        raise ValueError(f"priority must be Priority.HIGH, NORMAL or LOW, not {priority!r}")
    return 0


cdef double _epoch_of(object when) except -1.0:
    if isinstance(when, bool) or when is None:
        raise TypeError("when must be a datetime or a POSIX timestamp")
    if hasattr(when, "timestamp") and callable(when.timestamp):
        return when.timestamp()   # naive datetimes are local time, as datetime.timestamp() says
    if isinstance(when, (int, float)):
        if isnan(when) or when < 0 or when > 253402300799:
            raise ValueError(f"when must be a time between 1970 and 9999, got {when!r}")
        return when
    raise TypeError(f"when must be a datetime or a POSIX timestamp, not {type(when).__name__}")


# Memory for the run engine (run.pxi): its lane list and its spec array.

cdef extern from *:
    """
    /* A run's lane list is filled and emptied on every call: keep its item array (a single
       job would otherwise free and allocate it each time). */
    static int pyg_list_push(PyObject *lst, PyObject *item)
    {
    #if !defined(PYPY_VERSION)
        PyListObject *l = (PyListObject *)lst;
        Py_ssize_t n = Py_SIZE(l);
        if (n < l->allocated) {
            Py_INCREF(item);
            l->ob_item[n] = item;
            Py_SET_SIZE(l, n + 1);
            return 0;
        }
    #endif
        return PyList_Append(lst, item);
    }

    static void pyg_list_clear(PyObject *lst)
    {
    #if !defined(PYPY_VERSION)
        PyListObject *l = (PyListObject *)lst;
        Py_ssize_t i, n = Py_SIZE(l);
        Py_SET_SIZE(l, 0);                   /* consistent before any decref runs code */
        for (i = n - 1; i >= 0; i--) {
            PyObject *o = l->ob_item[i];
            l->ob_item[i] = NULL;
            Py_DECREF(o);
        }
    #else
        if (PyList_SetSlice(lst, 0, PyList_GET_SIZE(lst), NULL) < 0)
            PyErr_Clear();
    #endif
    }
    """
    int _list_push "pyg_list_push"(list lst, object item) except -1
    void _list_clear "pyg_list_clear"(list lst)


cdef extern from *:
    """
    #include <sys/mman.h>
    /* A big spec array (a batch of thousands of jobs: megabytes) is mapped with its pages
       made present in one go: touched page by page, every first touch is a page fault, and on a
       virtual machine a fault costs microseconds (4 us each measured on a 2-vCPU VM: 0.3 us per
       job of a batch, more than the rest of the engine's work per job). Smaller arrays come
       from malloc, whose heap is mostly present already. */
    #define PYG_MAP_MIN ((size_t)1 << 20)
    static void *pyg_specs_alloc(size_t size, int *mapped)
    {
    #if defined(MAP_POPULATE) && defined(MAP_ANONYMOUS)
        if (size >= PYG_MAP_MIN) {
            void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
            if (p != MAP_FAILED) {
                *mapped = 1;
                return p;
            }
        }
    #endif
        *mapped = 0;
        return malloc(size);
    }

    static void pyg_specs_free(void *p, size_t size, int mapped)
    {
        if (p == NULL)
            return;
    #if defined(MAP_POPULATE) && defined(MAP_ANONYMOUS)
        if (mapped) {
            munmap(p, size);
            return;
        }
    #endif
        free(p);
    }
    """
    void *_specs_alloc "pyg_specs_alloc"(size_t size, int *mapped) noexcept nogil
    void _specs_free "pyg_specs_free"(void *p, size_t size, int mapped) noexcept nogil

# Layouts of the compiled classes, the C structs and the constants they share.
cimport cython
from cpython.ref cimport PyObject
from pygearman.includes.libgearman cimport *


cdef enum:
    # what a spec is (_Spec.kind, _TaskCtx.kind)
    K_JOB = 0                # foreground job
    K_BACKGROUND = 1         # background job
    K_STATUS = 2             # status query by job handle
    K_STATUS_UNIQUE = 3      # status query by unique
    K_EPOCH = 4              # background job scheduled for a time (gearman_execute)

cdef enum:
    # where a spec is in its run (_Spec.state)
    ST_NEW = 0
    ST_QUEUED = 1            # waiting for room on a connection to its server
    ST_SENT = 2              # added to a connection
    ST_DONE = 3              # has its outcome or error, or follows another spec (coalesced)
    ST_LATER = 4             # a status query, queued once no job is in flight


cdef struct _Payload:
    const char *ptr          # NULL for an empty payload (libgearman rejects non-NULL with size 0)
    size_t size
    bint has_view
    Py_buffer view


cdef struct _RunCtl:
    double slice_end         # when run_tasks should hand control back even if packets keep coming
    bint cb_error            # a Python callback raised; the exception waits in the run's carrier
    bint pause_requested     # stream(): a chunk is ready for the iterator
    Py_ssize_t done          # tasks finished on this connection (complete/fail/exception/queued)
    Py_ssize_t created       # JOB_CREATED packets seen on this connection


# The spec array of a batch is megabytes: the fields every pass reads come first, the text
# buffers (a handle, a generated unique) last, written only when they are filled. Run._ready sets
# every field but those buffers' tails.
cdef struct _TaskCtx:
    void *result             # malloc'd by libgearman (gearman_task_take_data); ours to free
    size_t result_len
    bint have_result
    bint finished            # counted in ctl.done
    int kind                 # K_*
    int rc                   # outcome recorded by the callbacks (-1: none yet)
    char *exc                # WORK_EXCEPTION text (malloc'd; ours to free)
    size_t exc_len
    unsigned int num         # last status
    unsigned int den
    bint known
    bint running
    bint skip_next           # we paused run_tasks in a callback; libgearman calls it again on resume
    int wants                # EV_* events that need a Python call
    PyObject *listener       # _Listener for Python callbacks (borrowed: the run keeps it alive)
    PyObject *carrier        # _Exc of the run (borrowed)
    _RunCtl *ctl             # the counters of the connection it was added to
    char handle[64]          # job handle, copied at JOB_CREATED ("" before)


cdef struct _Spec:
    const char *fn           # function name, NUL-terminated (borrowed: the run's keep list)
    size_t fnn
    const char *uq           # unique or status key, NUL-terminated (borrowed or genq)
    size_t uqn
    const char *wp           # workload (borrowed; libgearman copies it when the task is added)
    size_t wn
    int kind                 # K_*
    int priority
    double epoch             # K_EPOCH: when
    Py_ssize_t pinned        # status queries: the server index to ask, or -1
    Py_ssize_t primary       # coalesced: the spec whose job this one follows, or -1
    Py_ssize_t server        # index of the server it was queued on
    Py_ssize_t lane          # index of the lane it was added on, or -1
    int tries                # servers that could not take it
    int state                # ST_*
    Py_ssize_t qnext         # next spec in its server's queue (ST_QUEUED), or -1
    gearman_task_st *task    # K_EPOCH only (freed by the run, generation permitting)
    unsigned long gen        # the connection's generation when task was added
    _TaskCtx ctx
    char genq[33]            # a generated unique (drawn when the spec is added)


cdef class _Exc:
    cdef object exc                # the first exception stored, until raised
    cdef void store(self, BaseException e) noexcept
    cdef int raise_if_stored(self) except -1


cdef class _Server:
    cdef readonly bytes host       # as given by the user (hostname or IP literal)
    cdef readonly int port
    cdef readonly str address      # host:port for messages
    cdef Py_ssize_t index          # position in the router's list
    cdef double down_until         # monotonic time until which a failed server is tried last
    cdef bint probed               # a Gearman server answered our own probe (see _probe)
    cdef bint no_options           # it answers ECHO but never OPTION_REQ (gear's Server)
    cdef list conns                # [_Conn]; conns[0] serves single calls
    cdef object handle_cls         # the JobHandle subclass of this server's handles
    cdef _Conn conn(self, Py_ssize_t i, _Exc carrier)
    cdef void reset_all(self) noexcept
    cdef void forget_all(self) noexcept
    cdef object handle(self, const char *text)


cdef class _Conn:
    cdef gearman_client_st *c      # NULL until first use and after reset()
    cdef _Server server
    cdef _Exc carrier              # where the log callback stores exceptions (the client's)
    cdef unsigned long gen         # bumped by reset(): tasks of older generations are gone
    cdef bint armed                # the "exceptions" server option was accepted
    cdef unsigned long fork_gen    # process generation (see _fork_gen) the handle belongs to
    # as a lane of the run that uses it (lane_start() resets these):
    cdef _RunCtl ctl               # counters the task callbacks update
    cdef Py_ssize_t lane_index     # position in the run's lanes
    cdef Py_ssize_t added          # tasks added
    cdef bint idle                 # run_tasks said every task is done
    cdef bint dead                 # dropped during the run
    cdef bint nb                   # GEARMAN_CLIENT_NON_BLOCKING is set
    cdef bint reset_after          # drop the handle when idle (status by unique)
    cdef bint epoch                # holds an epoch task
    cdef int open(self, Client owner, double deadline) except -1
    cdef int _create(self, Client owner, double deadline) except -1
    cdef bint _arm_once(self, double deadline, int step) except -1
    cdef bint _answers_status(self, Client owner, double deadline, int step) except -1
    cdef int tick(self, double deadline, str what) except -1
    cdef void lane_start(self, Py_ssize_t index) noexcept
    cdef void reset(self) noexcept
    cdef void abandon(self) noexcept
    cdef void forget(self) noexcept


cdef class _Router:
    cdef list servers              # [_Server] in the order they were added
    cdef Py_ssize_t rr             # round-robin cursor for jobs without a unique
    cdef _Server first(self, const char *uq, Py_ssize_t uqn)
    cdef _Server after(self, _Server s)
    cdef object mark_down(self, _Server s, object err)
    cdef void set_aside(self, _Server s, double seconds, str why) noexcept
    cdef object none_reachable(self, object last)
    cdef _Server by_address(self, str address)
    cdef list servers_for(self, object handle)
    cdef list addresses(self)


cdef class _Specs:
    cdef _Spec *specs              # malloc'd; the callbacks write outcomes into specs[i].ctx
    cdef list servers              # the client's _Server list (spec.server indexes it)
    cdef Py_ssize_t n
    cdef Py_ssize_t cap
    cdef Py_ssize_t ninit          # specs[0:ninit] are initialised (see setup_specs)
    cdef int mapped                # specs came from mmap (a big array), not malloc
    cdef Py_ssize_t nfg            # foreground job specs set (only they can hold results)
    cdef public object keep        # Python objects the specs point into
    cdef list listeners            # per spec: _Listener or None
    cdef list errors               # per spec: exception or None
    cdef object abort_exc          # the exception that ended the run early
    cdef object first_error        # a connection's failure, raised once the others are done
    cdef bint coalesced            # _coalesce() has run over these specs
    cdef void _free_specs(self) noexcept
    cdef void _ready(self, Py_ssize_t i) noexcept
    cdef void skip(self, Py_ssize_t i) noexcept
    cdef void _clear_outcomes(self) noexcept
    @cython.final
    cdef void set_job(self, Py_ssize_t i, int kind, int priority, const char *fn, size_t fnn,
                      const char *uq, size_t uqn, const char *wp, size_t wn) noexcept
    cdef void set_status(self, Py_ssize_t i, int kind, const char *key, Py_ssize_t server) noexcept
    cdef void bind(self, Py_ssize_t i, _Listener li) noexcept
    cdef int _coalesce(self) except -1
    cdef bint _same_job(self, _Spec *a, _Spec *b) noexcept
    cdef int _fail(self, Py_ssize_t i, object err) except -1
    @cython.final
    cdef Py_ssize_t origin(self, Py_ssize_t i) noexcept
    @cython.final
    cdef object failure(self, Py_ssize_t o)
    @cython.final
    cdef object error_of(self, Py_ssize_t i, bytes fn)
    @cython.final
    cdef object value_of(self, Py_ssize_t i)
    @cython.final
    cdef object value_at(self, Py_ssize_t o)
    @cython.final
    cdef _Server server_of(self, Py_ssize_t i)
    cdef int setup_specs(self, Py_ssize_t n) except -1


cdef class _Run(_Specs):
    cdef Client client             # during a call only (None otherwise: no cycle)
    cdef _Exc carrier              # where callbacks store exceptions
    cdef Py_ssize_t *qhead         # per server: first queued spec, or -1 (malloc'd with qtail)
    cdef Py_ssize_t *qtail         # per server: last queued spec, or -1
    cdef Py_ssize_t qcap
    cdef Py_ssize_t nservers
    cdef Py_ssize_t nqueued        # specs waiting for room on a connection
    cdef Py_ssize_t nlater         # status queries waiting for the jobs to finish
    cdef double deadline
    cdef int batch                 # tasks in flight per connection
    cdef list lanes                # [_Conn] in use by this run
    cdef set retried               # servers whose specs were already retried after a stale socket
    cdef bint started
    cdef bint stalled              # the last wait saw no reply: slow jobs, more lanes may help
    cdef Py_ssize_t seen           # events seen at the last wait (progress detection)
    cdef int wait_ms
    cdef int setup(self, Client client, Py_ssize_t n, double deadline, int batch) except -1
    cdef void _push(self, Py_ssize_t i, Py_ssize_t s) noexcept
    cdef Py_ssize_t _pop(self, Py_ssize_t s) noexcept
    cdef void queue_now(self, Py_ssize_t i) noexcept
    cdef int _queue_all(self) except -1
    cdef int _queue_later(self) except -1
    cdef int _fill(self) except -1
    cdef _Conn _open(self, _Server s)
    cdef int _server_failed(self, _Server s, object err) except -1
    cdef int _add(self, _Conn lane, Py_ssize_t sidx) except -1
    cdef gearman_task_st *_add_epoch(self, _Conn lane, _Spec *sp) except? NULL
    cdef int _settle_epoch(self, _Conn lane) except -1
    cdef int go(self) except -1
    cdef int _go(self) except -1
    cdef int _step(self, _Conn lane, bint nb) except -1
    cdef int _wait(self, list busy) except -1
    cdef int _lane_failed(self, _Conn lane, gearman_return_t rc) except -1
    cdef void _release_lanes(self) noexcept
    cdef void _abandon_lanes(self) noexcept
    cdef void release(self) noexcept
    cdef void _abort(self, object exc) noexcept


cdef class _Listener:
    cdef int _wants(self) noexcept
    cdef int _event(self, gearman_task_st *task, _TaskCtx *ctx, int ev) except -1


cdef class GearmanTask(_Listener):
    cdef Client _client
    cdef bytes _fn                 # function name
    cdef bytes _uq                 # unique, or None (one is generated per submission)
    cdef bytes _workload           # copied at add time
    cdef int _priority
    cdef bint _background
    cdef bint _status_only         # add_task_status: a status query, not a job
    cdef Py_ssize_t _pin           # status query: index of the server to ask
    cdef bint _in_set              # added with add_task: client-wide callbacks apply
    cdef int _want_mask            # EV_* that reach Python
    cdef str _state
    cdef object _handle             # str, or JobHandle once the run has settled
    cdef object _result
    cdef object _error
    cdef object _exception_text
    cdef unsigned int _num
    cdef unsigned int _den
    cdef bint _known
    cdef bint _running
    cdef list _data
    cdef list _warnings
    cdef list _twins               # tasks coalesced into this one's job (same unique)
    cdef list _notify              # as_completed(): where to put it once it has finished
    cdef bint _handed              # ... and it was put there
    cdef JobStream _stream         # set for a stream() job
    cdef object _on_created, _on_data, _on_warning, _on_status
    cdef object _on_complete, _on_fail, _on_exception
    cdef public object context     # the user's object for this task
    cdef object _callback(self, str name)
    cdef bint _watched(self) noexcept
    cdef int _settle(self, _TaskCtx *ctx, object err) except -1


cdef class JobStream:
    cdef GearmanTask _task
    cdef Client _client
    cdef list _chunks              # chunks received and not yet yielded
    cdef bint _done
    cdef _Payload _payload         # the workload, borrowed until the job is sent
    cdef object _keep              # keeps the workload's bytes alive
    cdef _Exc _exc                 # exceptions of this stream's callbacks
    cdef _Run _run                 # the stream's own engine (paused between chunks)
    cdef void _release(self) noexcept
    cdef void _abandon_after_fork(self) noexcept


cdef class CompletedTasks:
    cdef Client _client
    cdef _Run _run                 # the set's own engine (paused whenever a task finishes)
    cdef list _tasks
    cdef list _ready               # finished, not handed out yet
    cdef bint _done
    cdef void _release(self) noexcept


cdef class Client:
    cdef _Router _router           # the servers; owns every connection
    cdef double _default_timeout   # seconds; < 0 means no deadline
    cdef bint _busy                # a call is running (a handle is not thread-safe)
    cdef bint _closed
    cdef list _pending             # GearmanTasks added and not yet run
    cdef dict _callbacks           # client-wide task callbacks by event name
    cdef bytes _namespace
    cdef bytes _identifier
    cdef _Exc _exc                 # exceptions of callbacks during this client's calls
    cdef JobStream _stream         # the open stream(), if any
    cdef CompletedTasks _completing  # the open as_completed(), if any
    cdef _Run _single              # the engine reused for single calls
    cdef _Run _multi               # and for the calls of several jobs (its spec array too)
    cdef object _fn_key            # the last function name given to a single call (a str is
    cdef bytes _fn_bytes           # immutable: the same object needs no new encode and check)
    cdef unsigned long _fork_gen   # process generation its connections belong to
    cdef void _after_fork(self) noexcept
    cdef bytes _function_bytes(self, object function)
    cdef void _reset_all(self) noexcept
    cdef int _check_idle(self) except -1
    cdef int _enter(self) except -1
    cdef int _check_fn(self, bytes fn) except -1
    cdef _Run _run_for(self, Py_ssize_t n, double deadline, int batch, bint single=*)
    cdef object _submit1(self, int priority, bint background, object function, object workload,
                         object unique, object timeout, object on_data=*, object on_warning=*,
                         object on_status=*, object when=*)


cdef class _WH:
    cdef gearman_worker_st *w      # owned: freed by Worker.close() or when this object dies
    cdef unsigned long gen         # process generation (a forked child never frees the parent's)
    cdef object exc                # the _Exc its log function writes to, kept alive with it
    cdef bytes host                # its one job server (None: not attached yet)
    cdef int port
    cdef int read_fd               # its wakeup pipe
    cdef int write_fd
    cdef double aside_until        # unreachable or stalled: not asked before then
    cdef double backoff            # current reconnect backoff (0 while connected)
    cdef double probe_next         # an inconclusive probe is repeated after this
    cdef bint probed               # answered our probe like a Gearman server
    cdef bint warned               # its connection problem was logged (once)
    cdef bint need_ident           # the identifier must be sent again on it


cdef class Worker:
    cdef gearman_worker_st *_w     # the handle in use (of _hs[_cur])
    cdef list _hs                  # _WH: one libgearman handle per job server
    cdef int _cur                  # index in _hs of the handle in use
    cdef list _servers             # [(host bytes, port)] to re-add after a reset
    cdef dict _functions           # name -> _Function; keeps every context pointer given to C alive
    cdef list _retired             # replaced/unregistered _Function objects libgearman may still point to
    cdef int _read_fd              # libgearman's wakeup pipe (gearman_kill writes to it)
    cdef int _write_fd
    cdef bint _busy
    cdef bint _closed
    cdef bint _stop_requested
    cdef _Exc _exc                 # BaseException from a job function to re-raise once work() returns
    cdef unsigned long long _jobs  # jobs handed to a function so far
    cdef double _backoff           # current reconnect backoff in seconds (0 while connected)
    cdef bytes _identifier         # sent again after reconnects (libgearman forgets it)
    cdef bint _reident             # the identifier must be sent again
    cdef bint _reident_next        # ... with the next job (a Retry closed the sockets)
    cdef double _ident_at          # when it was last sent
    cdef dict _retries             # job handle -> times this worker handed it back (Retry)
    cdef int _max_retries
    cdef bint _probed              # every server answered our probe like a Gearman server
    cdef bint _bufs_done           # socket buffers enlarged since the last (re)connect
    cdef GearmanJob _spare         # the last job object, when its function kept no reference (reused)
    cdef double _deadline          # of the running work()/run() (-1: none); sends look at it
    cdef bint _aborted             # a send of the current job was ended half-way (connection to drop)
    cdef int _apply_identifier(self) except -1
    cdef int _probe_all(self) except -1
    cdef list _send_servers(self)
    cdef int _backoff_sleep(self, double seconds) except -1
    cdef int _enter(self) except -1
    cdef void _drain_wakeup(self) noexcept
    cdef int _backoff_wait(self, double deadline) except -1
    cdef double _poll_interval     # idle: ask the server again this often (< 0: never)
    cdef bint _plain_grab          # GRAB_JOB instead of GRAB_JOB_UNIQ (a server without it)
    cdef unsigned long _fork_gen   # process generation the handle belongs to (see _fork_gen)
    cdef bytes _namespace_b        # to set again on a new handle
    cdef list _pending             # (host, port) whose names did not resolve yet
    cdef double _pending_at        # when they were last tried
    cdef int _retry_pending(self) except -1
    cdef _WH _new_wh(self)
    cdef int _attach(self, bytes host, int port) except -1
    cdef int _use(self, int i) noexcept
    cdef int _after_fork(self) except -1
    cdef int _idle_wait(self, double deadline) except -1
    cdef object _loop(self, bint one, double deadline)


cdef class GearmanJob:
    cdef gearman_job_st *_job      # borrowed from libgearman; NULL once the function has returned
    cdef bint _finished            # complete/fail/exception already sent by the user
    cdef object _workload          # bytes, copied on first access (None until then)
    cdef unsigned long _owner      # thread that runs the function (job calls from other threads are refused)
    cdef PyObject *_wk             # borrowed: the Worker running it (it owns its job objects)
    cdef int _check(self) except -1
    cdef int _sent(self, gearman_return_t rc, str what) except -1
    cdef int _send_bytes(self, int kind, object data) except -1

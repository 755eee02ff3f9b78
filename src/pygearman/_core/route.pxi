# The router: which job server gets a job, which servers are set aside, where a handle lives.


@cython.final
cdef class _Router:
    """Server order and failover for one client.

    A job with a unique always goes to the same server first (a stable hash, so that clients in
    other processes coalesce with it); a job without one goes round robin. A server that could
    not be reached is tried last for a second. Failover moves a job that never left this
    process to the next server; a job the server acknowledged is never sent again.
    """

    def __cinit__(self):
        self.servers = []
        self.rr = 0

    cdef _Server first(self, const char *uq, Py_ssize_t uqn):
        """The server a new job goes to (uq NULL: round robin)."""
        cdef Py_ssize_t n = len(self.servers), start, i
        cdef double now
        cdef _Server s
        if n == 1:
            return <_Server>self.servers[0]
        if uq != NULL:
            start = <Py_ssize_t>(_fnv1a(uq, uqn) % <unsigned long long>n)
        else:
            start = self.rr % n
            self.rr += 1
        now = _now()
        for i in range(n):
            s = <_Server>self.servers[(start + i) % n]
            if s.down_until <= now:
                return s
        return <_Server>self.servers[start]

    cdef _Server after(self, _Server s):
        """The server to try when s could not take a job."""
        return <_Server>self.servers[(s.index + 1) % len(self.servers)]

    cdef object mark_down(self, _Server s, object err):
        """A job could not be sent to s: try s last for a second; returns the error."""
        s.down_until = _now() + 1.0
        if len(self.servers) > 1:
            _log.warning("%s; trying the next server", err)
        return err

    cdef void set_aside(self, _Server s, double seconds, str why) noexcept:
        """s answers no more: other servers get the next jobs for a while (it stays the last
        resort). Said once in a log line."""
        if s.down_until <= _now():
            _log.warning("%s: %s; sending jobs to the other servers for %g s", s.address, why,
                         seconds)
        s.down_until = _now() + seconds

    cdef object none_reachable(self, object last):
        if len(self.servers) > 1 and isinstance(last, GearmanError):
            return GearmanConnectionError(
                f"no job server could be reached (tried "
                f"{', '.join([(<_Server>s).address for s in self.servers])}); "
                f"last error: {last.message}", last.code)
        return last

    cdef _Server by_address(self, str address):
        cdef _Server s
        for s in self.servers:
            if s.address == address:
                return s
        return None

    cdef list servers_for(self, object handle):
        """Where to ask about a handle: the server a JobHandle names, else every server."""
        cdef _Server s
        server = getattr(handle, "server", None)
        if server is not None:
            s = self.by_address(server)
            if s is None:
                raise ValueError(f"the handle {str(handle)!r} was issued by {server}, which is "
                                 f"not one of this client's servers ({', '.join(self.addresses())})")
            return [s]
        return list(self.servers)

    cdef list addresses(self):
        return [(<_Server>s).address for s in self.servers]

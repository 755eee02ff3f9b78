"""Version information, feature probes, TLS refusal, the wrong-port guard and logging."""
from __future__ import annotations

import logging
import socket

import pytest

import pygearman
from pygearman import GearmanClient, GearmanWorker

from _support.processes import run_python
from _support.textserver import TextServer

pytestmark = pytest.mark.timeout(60)


def test_versions_and_features():
    assert pygearman.__version__
    assert pygearman.libgearman_version().startswith(pygearman.LIBGEARMAN_BUILD_VERSION.split("+")[0])
    for name in pygearman.FEATURES:
        assert isinstance(pygearman.has(name), bool)
    assert pygearman.has("ssl") is False          # Debian's libgearman has no TLS
    from pygearman._features import version_tuple
    if version_tuple(pygearman.libgearman_version()) < (2, 0, 0):
        assert pygearman.has("worker_ssl") is False   # exported from 2.0.0 on
    with pytest.raises(ValueError, match="known: fifo_tasks, ssl, worker_ssl"):
        pygearman.has("teleport")


def test_ssl_is_refused_with_advice():
    for cls in (GearmanClient, GearmanWorker):
        with pytest.raises(pygearman.NotSupportedError, match="stunnel"):
            cls("127.0.0.1:4730", ssl=True)


@pytest.fixture
def text_server():
    """A TCP server that answers like a web server: libgearman 1.1.20 segfaults on that."""
    with TextServer(b"HTTP/1.0 400 Bad Request\r\n\r\n") as srv:
        yield srv.address


def test_a_non_gearman_server_is_refused_not_crashed_on(text_server, gearmand, fname):
    with GearmanClient(text_server, timeout=5) as c:
        with pytest.raises(pygearman.ProtocolError, match="not a Gearman job server"):
            c.do_normal("f", "x")
        with pytest.raises(pygearman.ProtocolError):
            c.do_background("f", "x")
    with GearmanWorker(text_server) as w:
        w.add_function("f", lambda job: None)
        with pytest.raises(pygearman.ProtocolError, match="check the port"):
            w.work(timeout=2)
    # with a real server next to it, the client fails over
    fn = fname("ok")
    with GearmanClient([text_server, gearmand.address], timeout=10) as c:
        assert c.do_background(fn, "x").startswith("H:")


def test_nothing_is_printed_by_default(tmp_path):
    out = run_python(tmp_path, "quiet",
                     "import pygearman\n"
                     "c = pygearman.GearmanClient('127.0.0.1:1')\n"
                     "try:\n    c.do_normal('f', 'x')\nexcept ConnectionError:\n    pass\n"
                     "w = pygearman.GearmanWorker('127.0.0.1:1')\n"
                     "w.add_function('f', lambda job: None)\n"
                     "try:\n    w.work(timeout=0.5)\nexcept ConnectionError:\n    pass\n"
                     "c.close(); w.close()\n", timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == ""


def test_errors_and_reconnects_are_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="pygearman")
    w = GearmanWorker("127.0.0.1:1")
    w.add_function("f", lambda job: None)
    with pytest.raises(ConnectionError):             # no server at all, not "no job"
        w.work(timeout=0.5)
    w.close()
    msgs = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert any(name == "pygearman" and level == "WARNING" and "retrying with backoff" in m
               for name, level, m in msgs), msgs
    assert any(name == "pygearman.libgearman" for name, _, _ in msgs), msgs


def _buffer_sizes_to(address):
    import os
    host, port = address.split(":")
    sizes = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        with s:
            try:
                if s.getpeername()[:2] == (host, int(port)):
                    sizes.append(s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
            except OSError:
                pass
    return sizes


def test_socket_buffers_are_lifted_past_libgearmans_32k(gearmand, fname, start_worker):
    """libgearman pins SO_SNDBUF/SO_RCVBUF at 32 KiB; large payloads then crawl. pygearman
    raises them on its own connections (PYGEARMAN_SOCKET_BUFFER, default 4 MiB)."""
    fn = fname("echo")
    start_worker(gearmand.address, {fn: lambda job: job.workload})
    data = bytes(range(256)) * 4096   # 1 MiB
    with GearmanClient(gearmand.address, timeout=60) as c:
        assert c.do_normal(fn, data) == data
        sizes = _buffer_sizes_to(gearmand.address)
    assert sizes and all(size > 2 * 32768 for size in sizes), sizes

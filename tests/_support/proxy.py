"""A fault-injecting TCP proxy in front of a job server, for tests: delay every byte by a fixed
time each way (a distant server), stall (stop forwarding and stop reading), forward one byte at a
time, cut connections with a reset, or close a connection once the server has sent N bytes
through it. It records what clients sent."""
from __future__ import annotations

import queue
import socket
import struct
import threading
import time
from typing import List, Optional, Tuple


class FaultProxy:
    """``FaultProxy(("127.0.0.1", port), delay=0.15)``; ``.address`` is what clients use."""

    def __init__(self, target: Tuple[str, int], *, delay: float = 0.0,
                 byte_at_a_time: bool = False, close_after: Optional[int] = None) -> None:
        self.target = target
        self.delay = delay
        self.byte_at_a_time = byte_at_a_time
        self.close_after = close_after
        self.sent_by_clients = bytearray()         # everything clients sent, in order
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._running.set()                         # cleared: stall (nothing moves)
        self._closing = False
        self._socks: List[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    # -- faults ------------------------------------------------------------------------------

    def stall(self) -> None:
        """Stop forwarding and stop reading, in both directions (a frozen peer)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def reset_all(self) -> None:
        """Cut every connection with a TCP reset."""
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            _cut(s, reset=True)

    def count_packets(self, ptype: int) -> int:
        """Request packets of a type (e.g. 16 ECHO_REQ, 15 GET_STATUS) clients sent, as framed
        by the Gearman binary protocol ('\\0REQ', type, length)."""
        data = bytes(self.sent_by_clients)
        n = pos = 0
        while pos + 12 <= len(data):
            if data[pos:pos + 4] != b"\0REQ":
                pos = data.find(b"\0REQ", pos + 1)
                if pos < 0:
                    break
                continue
            t, size = struct.unpack(">II", data[pos + 4:pos + 12])
            n += t == ptype
            pos += 12 + size
        return n

    def close(self) -> None:
        self._closing = True
        self._running.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self.reset_all()

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
            with self._lock:
                self._socks += [client, server]
            self._pipe(client, server, True)
            self._pipe(server, client, False)

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        q: "queue.Queue[Tuple[float, bytes]]" = queue.Queue()
        state = {"moved": 0}

        def reader() -> None:
            while True:
                self._running.wait()
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if from_client and data:
                    self.sent_by_clients += data
                q.put((time.monotonic() + self.delay, data))
                if not data:
                    return

        def writer() -> None:
            while True:
                due, data = q.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self._running.wait()
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                try:
                    if self.byte_at_a_time:
                        for i in range(len(data)):
                            dst.sendall(data[i:i + 1])
                            time.sleep(0.001)
                    else:
                        dst.sendall(data)
                except OSError:
                    return
                state["moved"] += len(data)
                if (self.close_after is not None and not from_client
                        and state["moved"] >= self.close_after):
                    for s in (src, dst):
                        _cut(s, reset=False)
                    return

        threading.Thread(target=reader, daemon=True).start()
        threading.Thread(target=writer, daemon=True).start()


def _cut(s: socket.socket, reset: bool) -> None:
    """Close s for real: shutdown() first, since a thread blocked in recv() on it would keep
    the socket open past close(); with reset, the peer gets a TCP reset."""
    try:
        if reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass

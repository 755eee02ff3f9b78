"""A TCP server that is not Gearman: the wrong peer libgearman 1.1.20 crashes on
(docs/libgearman-1.1.20.md#text-reply-crash)."""
from __future__ import annotations

import socket
import threading
import time


class TextServer:
    """A TCP server that is not Gearman: it answers anything with one fixed text reply (a web
    server's error page, a one-word line...). Standard library only: a child process can use it
    too (test_reliability_badinput.py)."""

    def __init__(self, reply: bytes, port: int = 0) -> None:
        self.reply = reply
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.connections = 0
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                if conn.recv(65536):
                    conn.sendall(self.reply)
                    time.sleep(0.5)
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes the accept() of the serving thread
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> "TextServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Parsing of job-server addresses: "host", "host:port", "[v6]:port", lists, $GEARMAN_SERVERS."""
from __future__ import annotations

import os
import re
import socket
import struct
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

DEFAULT_PORT = 4730
DEFAULT_SERVER = "127.0.0.1:4730"

ServerSpec = Union[str, Tuple[str, int]]
Servers = Union[str, ServerSpec, Sequence[ServerSpec], None]

_HOST_RE = re.compile(r"^[A-Za-z0-9._-]+$")


def parse_server(spec: ServerSpec) -> Tuple[str, int]:
    """One address -> (host, port). Raises ValueError/TypeError saying what is allowed."""
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise ValueError(f"a server tuple must be (host, port), got {spec!r}")
        host, port = spec
        if not isinstance(host, str):
            raise TypeError(f"server host must be a str, not {type(host).__name__}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"server port must be an int, not {type(port).__name__}")
        return _check(host, port, spec)
    if not isinstance(spec, str):
        raise TypeError(f"a server must be 'host:port' or (host, port), not {type(spec).__name__}")
    text = spec.strip()
    if not text:
        raise ValueError("empty server address; expected 'host', 'host:port' or '[ipv6]:port'")
    port_text: object = DEFAULT_PORT
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"bad server address {spec!r}: missing ']' after an IPv6 address")
        name, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad server address {spec!r}: expected ':port' after ']'")
            port_text = rest[1:]
    elif text.count(":") == 1:
        name, port_text = text.split(":")
    elif ":" in text:
        raise ValueError(f"bad server address {spec!r}: write IPv6 addresses as '[addr]:port'")
    else:
        name = text
    return _check(name, port_text, spec)


def _check(host: str, port: object, spec: object) -> Tuple[str, int]:
    if isinstance(port, str):
        if not port.isdigit():
            raise ValueError(f"bad server address {spec!r}: port must be a number 1-65535")
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"server port must be an int, not {type(port).__name__}")
    if not 0 < port < 65536:
        raise ValueError(f"bad server address {spec!r}: port must be 1-65535, got {port}")
    if not host:
        raise ValueError(f"bad server address {spec!r}: the host is empty")
    if ":" in host:
        pass  # IPv6 literal, validated by getaddrinfo when connecting
    elif not _HOST_RE.match(host):
        raise ValueError(f"bad server address {spec!r}: {host!r} is not a host name or IP address")
    return host, port


def parse_servers(servers: Servers) -> List[Tuple[str, int]]:
    """Any accepted form -> [(host, port)]. None means $GEARMAN_SERVERS, else 127.0.0.1:4730."""
    if servers is None:
        servers = os.environ.get("GEARMAN_SERVERS") or DEFAULT_SERVER
    items: Iterable[ServerSpec]
    if isinstance(servers, str):
        items = [s for s in servers.split(",") if s.strip()] or [servers]
    elif (isinstance(servers, tuple) and len(servers) == 2 and isinstance(servers[0], str)
          and not isinstance(servers[1], tuple)
          and (isinstance(servers[1], int) or
               (isinstance(servers[1], str) and servers[1].strip().isdigit()
                and ":" not in servers[0]))):
        # ("host", 4730) or ("host", "4730"): one server, not two
        items = [(servers[0], int(servers[1]))]
    elif isinstance(servers, (list, tuple)):
        items = servers
    else:
        raise TypeError("servers must be 'host:port[,host:port...]', a list of them, "
                        f"or None, not {type(servers).__name__}")
    out = [parse_server(s) for s in items]
    if not out:
        raise ValueError("the server list is empty")
    return out


def format_server(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"



def probe_gearman(host: str, port: int, timeout: float = 2.0) -> Union[None, bool, bytes]:
    """Is a Gearman server listening there? Sends one ECHO_REQ and looks at the reply.

    Returns True when the peer answers like a Gearman server, None when it cannot be judged
    (refused, silent, closed): libgearman reports those itself. Returns the first bytes of the
    reply when
    something else answers: libgearman 1.1.20 crashes (SIGSEGV) on a non-Gearman text reply
    (docs/libgearman-1.1.20.md#text-reply-crash), so that must be caught before libgearman
    talks to the peer.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None
    with sock:
        try:
            sock.sendall(b"\0REQ" + struct.pack(">II", 16, 4) + b"ping")  # ECHO_REQ "ping"
            data = b""
            while len(data) < 4:
                chunk = sock.recv(64)
                if not chunk:
                    break
                data += chunk
        except OSError:
            return None
    if not data:
        return None
    if data[:4] == b"\0RES" or b"\0RES".startswith(data):
        return True
    return data


def _socket_buffer_size() -> int:
    try:
        return max(0, int(os.environ.get("PYGEARMAN_SOCKET_BUFFER", 4 << 20)))
    except ValueError:
        return 4 << 20


SOCKET_BUFFER = _socket_buffer_size()


def _server_sockets(servers: Sequence[Tuple[str, int]]) -> Iterator[socket.socket]:
    """(socket object over a dup of the fd) for each TCP socket of this process connected to
    one of these servers; the caller closes each."""
    targets = set()
    for host, port in servers:
        try:
            for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
                targets.add((info[0], info[4][0], info[4][1]))
        except OSError:
            continue
    if not targets:
        return
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            dup = os.dup(int(name))
        except (OSError, ValueError):
            continue
        try:
            sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            continue
        try:
            peer = sock.getpeername()
            if (sock.family, peer[0], peer[1]) in targets:
                yield sock
                continue
        except (OSError, IndexError, TypeError):
            pass
        sock.close()


def unsent_bytes(servers: Sequence[Tuple[str, int]]) -> int:
    """Bytes written by this process to these servers that the kernel has not sent yet (sum of
    TIOCOUTQ over its sockets to them): a send whose count stays put is not moving."""
    import fcntl
    import termios
    total = 0
    for sock in _server_sockets(servers):
        with sock:
            try:
                total += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ,
                                                        b"\0\0\0\0"))[0]
            except OSError:
                pass
    return total


def reset_on_close(servers: Sequence[Tuple[str, int]]) -> int:
    """Make the next close() of this process's sockets to these servers that still hold unsent
    data a TCP reset (SO_LINGER 0) instead of a wait of up to 10 s for a peer that does not read
    (libgearman sets SO_LINGER 10 s on every socket; docs/libgearman-1.1.20.md#linger-10s).
    Only sockets with unsent bytes are touched. Returns how many."""
    import fcntl
    import termios
    changed = 0
    for sock in _server_sockets(servers):
        with sock:
            try:
                unsent = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ,
                                                        b"\0\0\0\0"))[0]
                if unsent > 0:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    changed += 1
            except OSError:
                pass
    return changed


def enlarge_socket_buffers(servers: Sequence[Tuple[str, int]], size: int = -1) -> int:
    """Raise SO_SNDBUF/SO_RCVBUF of this process's TCP connections to these job servers.

    libgearman 1.1.20 pins both at 32 KiB on every socket it opens, which makes payloads over
    ~128 KiB crawl (one delayed ACK per segment on loopback: 0.6 s per MiB;
    docs/libgearman-1.1.20.md#socket-buffers-32k).
    libgearman does not expose its sockets, so we find them: the sockets of this process whose
    peer is one of the job servers. Only buffer sizes are changed (the kernel caps them at
    net.core.[rw]mem_max); nothing is read or written. ``PYGEARMAN_SOCKET_BUFFER=0`` turns this
    off. Returns how many sockets were changed (0 where /proc is not available).
    """
    if size < 0:
        size = SOCKET_BUFFER
    if size <= 0:
        return 0
    changed = 0
    for sock in _server_sockets(servers):
        with sock:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
                changed += 1
            except OSError:
                pass
    return changed

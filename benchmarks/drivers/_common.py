"""Shared command line, payload, timing and output of the Python benchmark drivers (stdlib only).

Every driver (ours and the peers) takes the same arguments as benchmarks/c/gmbench.c::

    DRIVER client MODE HOST PORT FUNCTION N SIZE [BATCH]
    DRIVER worker MODE HOST PORT FUNCTION N
    DRIVER version

and prints one JSON line on stdout. Exit status: 0 ok, 1 wrong/missing results, 2 usage or
setup error, 3 "not available" (the library has no API for this mode; JSON has ``na``).

With ``GMBENCH_STOP_BEFORE_TIMED=1`` in the environment a driver stops itself (SIGSTOP) just before
its timed region, so that run.py can attach strace for the syscall pass and then continue it
(SIGCONT): start-up and imports stay out of the syscall counts.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

CLIENT_MODES = ("bg_loop", "bg_loop_uniq", "bg_batch", "bg_batch_uniq", "rt", "taskset", "taskset_uniq",
                "many", "many_uniq", "aio", "threads")
WORKER_MODES = ("echo", "drain")
EXIT_NA = 3


@dataclass
class Args:
    role: str
    mode: str
    host: str
    port: int
    function: str
    n: int
    size: int = 64
    batch: int = 1000

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def own_uniques(self) -> bool:
        return self.mode.endswith("_uniq")

    @property
    def base_mode(self) -> str:
        """The mode without its ``_uniq`` suffix."""
        return self.mode[:-5] if self.own_uniques else self.mode


def parse(argv: Optional[List[str]] = None) -> Args:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["version"]:
        return Args("version", "", "", 0, "", 0)
    if len(argv) < 6 or argv[0] not in ("client", "worker"):
        print("usage: DRIVER client MODE HOST PORT FUNCTION N SIZE [BATCH] | "
              "worker MODE HOST PORT FUNCTION N | version", file=sys.stderr)
        sys.exit(2)
    a = Args(argv[0], argv[1], argv[2], int(argv[3]), argv[4], int(argv[5]))
    if len(argv) > 6:
        a.size = int(argv[6])
    if len(argv) > 7 and int(argv[7]) > 0:
        a.batch = int(argv[7])
    modes = CLIENT_MODES if a.role == "client" else WORKER_MODES
    if a.mode not in modes:
        print(f"unknown {a.role} mode {a.mode!r}; expected one of {', '.join(modes)}", file=sys.stderr)
        sys.exit(2)
    return a


def payload(size: int) -> bytes:
    """The same bytes as the C and PHP drivers: 'abc...z' repeated."""
    alphabet = bytes(range(ord("a"), ord("a") + 26))
    return (alphabet * (size // 26 + 1))[:size]


def uniques(n: int, start: int = 0) -> List[str]:
    pid = os.getpid()
    return [f"{pid}-{i}" for i in range(start, start + n)]


def stop_before_timed() -> None:
    """The strace hook (see the module docstring)."""
    if os.environ.get("GMBENCH_STOP_BEFORE_TIMED") == "1":
        os.kill(os.getpid(), signal.SIGSTOP)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(sorted_values: List[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    i = int(p / 100.0 * (len(sorted_values) - 1) + 0.5)
    return sorted_values[min(i, len(sorted_values) - 1)]


def emit(result: Dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def not_available(reason: str) -> None:
    emit({"na": reason})
    sys.exit(EXIT_NA)


class Timer:
    """Wall and CPU time of the measured region."""

    def __enter__(self) -> "Timer":
        stop_before_timed()
        self.c0 = cpu_s()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.t0
        self.cpu = cpu_s() - self.c0


def finish(args: Args, ok: int, timer: Timer, api: str, **extra: Any) -> None:
    """Print the result line and exit (0 when every job was accounted for)."""
    emit({"n": args.n, "ok": ok, "elapsed": timer.elapsed, "cpu": timer.cpu, "api": api, **extra})
    # os._exit: skip interpreter teardown (some libraries leave non-daemon threads behind);
    # the result is already flushed.
    os._exit(0 if ok >= args.n else 1)


def latency_extra(lat_s: List[float]) -> Dict[str, float]:
    lat = sorted(lat_s)
    return {"lat_p50_us": percentile(lat, 50) * 1e6, "lat_p99_us": percentile(lat, 99) * 1e6}


def run_driver(version: Callable[[], Dict[str, Any]], client: Callable[[Args], None],
               worker: Callable[[Args], None]) -> None:
    args = parse()
    if args.role == "version":
        emit(version())
        return
    (client if args.role == "client" else worker)(args)

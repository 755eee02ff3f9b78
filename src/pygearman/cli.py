"""The command line: ``pygearman`` / ``python -m pygearman`` (submit, worker, status, ...).

Exit codes: 0 success; 1 the job failed or raised (JobFailed, JobException); 2 bad usage or
arguments; 3 a job server could not be reached or the connection broke; 4 a deadline passed;
5 another Gearman error; 130 interrupted (Ctrl-C). Every error is one line on stderr (and with
``--json`` also an ``{"ok": false, ...}`` object on stdout).
"""
from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import NoReturn, IO, Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["main", "build_parser", "version_info", "version_text", "Progress", "bench_echo",
           "EXIT_OK", "EXIT_JOB", "EXIT_USAGE", "EXIT_CONNECTION", "EXIT_TIMEOUT", "EXIT_ERROR",
           "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_JOB = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_TIMEOUT = 4
EXIT_ERROR = 5
EXIT_INTERRUPTED = 130

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


class CliError(Exception):
    """A failure with a message for the user and an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# -- output helpers -----------------------------------------------------------------------------

class Progress:
    """A one-line progress display on stderr, shown only when stderr is a terminal."""

    def __init__(self, label: str, total: Optional[int] = None, *,
                 stream: Optional[IO[str]] = None, enabled: Optional[bool] = None,
                 interval: float = 0.1) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            try:
                enabled = self.stream.isatty()
            except (AttributeError, ValueError):
                enabled = False
        self.enabled = enabled
        self.interval = interval
        self.start = time.monotonic()
        self._last = 0.0
        self._shown = False

    def update(self, done: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval and done != self.total:
            return
        self._last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total}" if self.total is not None else ""
        self.stream.write(f"\r{self.label}: {done}{of} ({rate:,.0f}/s)\x1b[K")
        self.stream.flush()
        self._shown = True

    def note(self, text: str) -> None:
        """Show a status text instead of a count (e.g. while one long call runs)."""
        if self.enabled:
            self.stream.write(f"\r{self.label}: {text}\x1b[K")
            self.stream.flush()
            self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _result_fields(data: bytes) -> Dict[str, Any]:
    """A result for JSON: text when it is UTF-8, else base64."""
    try:
        return {"result": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"result": None, "result_base64": base64.b64encode(data).decode("ascii")}


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _error_code(e: BaseException) -> int:
    from pygearman.errors import (GearmanConnectionError, GearmanError, GearmanTimeoutError,
                                  JobError)

    if isinstance(e, CliError):
        return e.code
    if isinstance(e, JobError):
        return EXIT_JOB
    if isinstance(e, (GearmanTimeoutError, TimeoutError)):
        return EXIT_TIMEOUT
    if isinstance(e, (GearmanConnectionError, ConnectionError, OSError)):
        return EXIT_CONNECTION
    if isinstance(e, (ValueError, TypeError)) and not isinstance(e, GearmanError):
        return EXIT_USAGE
    return EXIT_ERROR


def _default_servers() -> str:
    return os.environ.get("GEARMAN_SERVERS") or "127.0.0.1:4730"


def _servers(text: str) -> List[str]:
    from pygearman._servers import format_server, parse_servers

    try:
        return [format_server(h, p) for h, p in parse_servers(text)]
    except (ValueError, TypeError) as e:
        raise CliError(f"--servers: {e}", EXIT_USAGE) from None


# -- submit -------------------------------------------------------------------------------------

def _read_data(arg: Optional[str]) -> bytes:
    if arg is not None and arg != "-":
        return arg.encode("utf-8", "surrogateescape")
    if sys.stdin is None:
        return b""
    if sys.stdin.isatty():
        print("(reading the workload from stdin; end it with Ctrl-D)", file=sys.stderr)
    return sys.stdin.buffer.read()


def cmd_submit(args: argparse.Namespace) -> int:
    from pygearman.client import GearmanClient, Priority

    servers = _servers(args.servers)
    data = _read_data(args.data)
    priority = Priority[args.priority.upper()]
    if args.repeat < 1:
        raise CliError("--repeat must be >= 1", EXIT_USAGE)
    progress = Progress(f"submit {args.function}", args.repeat,
                        enabled=False if args.no_progress or args.repeat == 1 else None)
    results: List[Any] = []
    start = time.monotonic()
    try:
        with GearmanClient(servers, timeout=args.timeout) as client:
            for i in range(args.repeat):
                results.append(client.submit(args.function, data, priority=priority,
                                             background=args.background, unique=args.unique))
                progress.update(i + 1)
    except BaseException as e:
        progress.close()
        if args.json and results:
            e.completed = len(results)  # type: ignore[attr-defined]
        raise
    progress.close()
    seconds = time.monotonic() - start
    if args.json:
        def one(r: Any) -> Dict[str, Any]:
            return {"handle": r} if args.background else _result_fields(r)

        obj: Dict[str, Any] = {"ok": True, "function": args.function,
                               "background": args.background, "servers": servers}
        if args.repeat == 1:
            obj.update(one(results[0]))
            obj["seconds"] = round(seconds, 6)
        else:
            obj.update({"jobs": len(results), "seconds": round(seconds, 6),
                        "jobs_per_second": round(len(results) / seconds, 1) if seconds else None,
                        "results": [one(r) for r in results]})
        _emit_json(obj)
        return EXIT_OK
    out = sys.stdout.buffer
    for r in results:
        if args.background:
            out.write(r.encode() + b"\n")
        else:
            out.write(r)
            if args.repeat > 1 or (sys.stdout.isatty() and not r.endswith(b"\n")):
                out.write(b"\n")
    out.flush()
    if args.repeat > 1:
        print(f"{len(results)} jobs in {seconds:.3f} s ({len(results) / seconds:,.0f} jobs/s)"
              if seconds else f"{len(results)} jobs", file=sys.stderr)
    return EXIT_OK


# -- worker -------------------------------------------------------------------------------------

def _function_args(specs: Sequence[str], names: Sequence[str]) -> Dict[str, str]:
    """["mod:fn", "title=mod:other"] + --name ... -> {"name": "mod:attr"}."""
    out: Dict[str, str] = {}
    names = list(names)
    implicit = [s for s in specs if "=" not in s.split(":", 1)[0]]
    if len(names) > len(implicit):
        raise CliError(f"{len(names)} --name options for {len(implicit)} functions without "
                       "NAME= (each --name names the next MODULE:FUNCTION)", EXIT_USAGE)
    for spec in specs:
        head = spec.split(":", 1)[0]
        if "=" in head:
            name, _, ref = spec.partition("=")
        else:
            ref = spec
            name = names.pop(0) if names else spec.partition(":")[2].rsplit(".", 1)[-1]
        if ":" not in ref or not ref.partition(":")[0] or not ref.partition(":")[2]:
            raise CliError(f"{spec!r}: expected MODULE:FUNCTION (or NAME=MODULE:FUNCTION)",
                           EXIT_USAGE)
        if not name:
            raise CliError(f"{spec!r}: empty function name", EXIT_USAGE)
        if name in out:
            raise CliError(f"function name {name!r} given twice", EXIT_USAGE)
        out[name] = ref
    return out


def _pairs(items: Sequence[str], what: str) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name or not value.isdigit():
            raise CliError(f"{what} {item!r}: expected NAME=N", EXIT_USAGE)
        out[name] = int(value)
    return out


class _JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj = {"time": round(record.created, 6), "level": record.levelname,
               "logger": record.name, "pid": record.process, "message": record.getMessage()}
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj)


def cmd_worker(args: argparse.Namespace) -> int:
    from pygearman.runner import Runner

    if args.json:   # log records as JSON lines on stderr, for log shippers
        for h in logging.getLogger().handlers:
            h.setFormatter(_JsonLogFormatter())
    functions = _function_args(args.functions, args.name or [])
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())    # like `python -m`: modules in the current directory
    processes = args.processes
    if processes is None:
        processes = 0 if args.threads else 1
    try:
        runner = Runner(_servers(args.servers), functions, processes=processes,
                        threads=args.threads or 0, max_jobs=args.max_jobs,
                        max_seconds=args.max_seconds, limits=_pairs(args.limit or [], "--limit"),
                        timeouts=_pairs(args.can_do_timeout or [], "--can-do-timeout"),
                        identifier=args.identifier, namespace=args.namespace,
                        start_method=args.start_method, drain_timeout=args.drain_timeout)
        runner.run()
    except ValueError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    return EXIT_OK


# -- status, workers, ping ----------------------------------------------------------------------

def _admin_report(args: argparse.Namespace, command: str, results: Dict[str, Any],
                  render: Callable[[str, Any], Tuple[Dict[str, Any], List[Tuple[Any, ...]]]],
                  header: Tuple[str, ...]) -> int:
    """One admin query over several servers: a table (or --json); a dead server is reported
    on stderr (or in the JSON) and makes the exit status EXIT_CONNECTION."""
    failed = 0
    rows: List[Tuple[Any, ...]] = []
    obj: Dict[str, Any] = {}
    for server, value in results.items():
        if isinstance(value, Exception):
            failed += 1
            obj[server] = {"ok": False, "error": _one_line(str(value)),
                           "error_type": type(value).__name__}
            if not args.json:
                print(f"pygearman {command}: {server}: {type(value).__name__}: "
                      f"{_one_line(str(value))}", file=sys.stderr)
            continue
        entry, server_rows = render(server, value)
        obj[server] = {"ok": True, **entry}
        rows += server_rows
    if args.json:
        _emit_json(obj)
    elif rows or not failed:
        print(_table(rows, header))
    return EXIT_CONNECTION if failed else EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from pygearman.admin import status_all

    def render(server: str, value: Any) -> Tuple[Dict[str, Any], List[Tuple[Any, ...]]]:
        fns = [fs for fs in value if args.function is None or args.function in fs.function]
        return ({"functions": [{"function": fs.function, "total": fs.total,
                                "running": fs.running, "queued": fs.queued,
                                "workers": fs.workers} for fs in fns]},
                [(server, fs.function, fs.total, fs.running, fs.queued, fs.workers)
                 for fs in fns])

    return _admin_report(args, "status", status_all(_servers(args.servers), timeout=args.timeout),
                         render, ("SERVER", "FUNCTION", "TOTAL", "RUNNING", "QUEUED", "WORKERS"))


def cmd_workers(args: argparse.Namespace) -> int:
    from pygearman.admin import workers_all

    def render(server: str, value: Any) -> Tuple[Dict[str, Any], List[Tuple[Any, ...]]]:
        ws = [w for w in value if args.all or w.functions]
        return ({"workers": [{"fd": w.fd, "address": w.address, "client_id": w.client_id,
                              "functions": list(w.functions)} for w in ws]},
                [(server, w.fd, w.address, w.client_id, " ".join(w.functions)) for w in ws])

    return _admin_report(args, "workers",
                         workers_all(_servers(args.servers), timeout=args.timeout),
                         render, ("SERVER", "FD", "ADDRESS", "CLIENT-ID", "FUNCTIONS"))


def cmd_ping(args: argparse.Namespace) -> int:
    from pygearman.client import GearmanClient

    if args.count < 1:
        raise CliError("--count must be >= 1", EXIT_USAGE)
    failed = 0
    obj: Dict[str, Any] = {}
    for server in _servers(args.servers):
        try:
            with GearmanClient(server, timeout=args.timeout) as client:
                t0 = time.perf_counter()
                client.echo(b"ping")                      # includes the TCP connect
                connect_ms = (time.perf_counter() - t0) * 1000
                times = []
                for _ in range(args.count):
                    t0 = time.perf_counter()
                    client.echo(b"ping")
                    times.append((time.perf_counter() - t0) * 1000)
        except Exception as e:
            failed += 1
            obj[server] = {"ok": False, "error": _one_line(str(e)), "error_type": type(e).__name__}
            if not args.json:
                print(f"{server}  FAILED  {type(e).__name__}: {_one_line(str(e))}")
            continue
        avg = sum(times) / len(times)
        obj[server] = {"ok": True, "connect_ms": round(connect_ms, 3),
                       "latency_ms": [round(t, 3) for t in times], "min_ms": round(min(times), 3),
                       "avg_ms": round(avg, 3), "max_ms": round(max(times), 3)}
        if not args.json:
            print(f"{server}  ok  connect {connect_ms:.2f} ms  echo min/avg/max "
                  f"{min(times):.2f}/{avg:.2f}/{max(times):.2f} ms")
    if args.json:
        _emit_json(obj)
    return EXIT_CONNECTION if failed else EXIT_OK


# -- bench --------------------------------------------------------------------------------------

def bench_echo(job: Any) -> bytes:
    """The bench's worker function: returns the workload."""
    return bytes(job.workload)


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise CliError(f"bench: {what} within {timeout:.0f} s", EXIT_ERROR)
        time.sleep(0.05)


def cmd_bench(args: argparse.Namespace) -> int:
    from pygearman.admin import AdminClient
    from pygearman.client import GearmanClient

    n: int = args.jobs
    if n < 1 or args.workers < 1 or args.size < 0:
        raise CliError("--jobs and --workers must be >= 1, --size >= 0", EXIT_USAGE)
    server = None
    worker: Optional[subprocess.Popen[bytes]] = None
    fn = f"pygearman_bench_{uuid.uuid4().hex[:10]}"
    payload = b"x" * args.size
    phases: List[Dict[str, Any]] = []
    show = not args.no_progress

    def queued() -> int:
        total = 0
        for s in servers:
            with AdminClient(s, timeout=5) as admin:
                total += sum(fs.total for fs in admin.status() if fs.function == fn)
        return total

    def record(phase: str, jobs: int, seconds: float) -> None:
        phases.append({"phase": phase, "jobs": jobs, "seconds": round(seconds, 6),
                       "jobs_per_second": round(jobs / seconds, 1) if seconds > 0 else None})

    try:
        if args.servers:
            servers = _servers(args.servers)
        else:
            from pygearman.testing import GearmandServer, GearmandNotFound

            try:
                server = GearmandServer().start()
            except GearmandNotFound as e:
                raise CliError(f"bench: {e} (or pass --servers)", EXIT_ERROR) from None
            servers = [server.address]
            if not args.json:
                print(f"bench: started gearmand {server.address} (pid {server.pid})",
                      file=sys.stderr)
        worker = subprocess.Popen(
            [sys.executable, "-m", "pygearman", "worker", "pygearman.cli:bench_echo",
             "--name", fn, "--processes", str(args.workers), "--quiet",
             "--servers", ",".join(servers)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

        def registered() -> bool:
            if worker is not None and worker.poll() is not None:
                raise CliError(f"bench: the echo worker exited with code {worker.returncode}")
            with AdminClient(servers[0], timeout=5) as admin:
                return any(fs.function == fn and fs.workers >= args.workers
                           for fs in admin.status())

        _wait_for("the echo workers did not register", registered, 30)
        with GearmanClient(servers, timeout=args.timeout) as client:
            progress = Progress("bench do_background loop", n, enabled=None if show else False)
            t0 = t_background = time.perf_counter()
            for i in range(n):
                client.do_background(fn, payload)
                progress.update(i + 1)
            record("do_background loop", n, time.perf_counter() - t0)
            progress.close()

            progress = Progress("bench submit_background_many", enabled=None if show else False)
            progress.note(f"{n} jobs in one call...")
            t0 = time.perf_counter()
            client.submit_background_many(fn, [payload] * n)
            record("submit_background_many", n, time.perf_counter() - t0)
            progress.close()

            progress = Progress("bench background jobs done", 2 * n,
                                enabled=None if show else False)
            last = [2 * n]

            def drained() -> bool:
                last[0] = queued()
                progress.update(max(2 * n - last[0], 0))
                return last[0] == 0

            _wait_for("the background jobs were not processed", drained, max(60, n / 100))
            # from the first background submit until the workers finished all of them
            record(f"background end to end ({args.workers} workers)", 2 * n,
                   time.perf_counter() - t_background)
            progress.close()

            progress = Progress("bench do_normal round trips", n, enabled=None if show else False)
            t0 = time.perf_counter()
            for i in range(n):
                client.do_normal(fn, payload)
                progress.update(i + 1)
            record("do_normal round trips", n, time.perf_counter() - t0)
            progress.close()

            progress = Progress("bench submit_many", enabled=None if show else False)
            progress.note(f"{n} jobs in one call...")
            t0 = time.perf_counter()
            results = client.submit_many(fn, [payload] * n)
            record("submit_many", n, time.perf_counter() - t0)
            progress.close()
            if results != [payload] * n:
                raise CliError("bench: submit_many returned wrong results")
    finally:
        if worker is not None:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(15)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()
        if server is not None:
            server.cleanup()
    if args.json:
        _emit_json({"ok": True, "servers": servers, "jobs": n, "payload_bytes": args.size,
                    "worker_processes": args.workers, "local_gearmand": server is not None,
                    "results": phases})
    else:
        print(_table([(p["phase"], p["jobs"], f"{p['seconds']:.3f}",
                       f"{p['jobs_per_second']:,.0f}" if p["jobs_per_second"] else "-")
                      for p in phases], ("PHASE", "JOBS", "SECONDS", "JOBS/S")))
    return EXIT_OK


# -- demo, version ------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    from pygearman.demo import run_demo

    servers = args.servers.split(",") if args.servers else None
    return run_demo(servers)


def version_info() -> Dict[str, Any]:
    """pygearman's version and the libgearman it runs on: its version (the library loaded at run
    time, and the headers it was built against), the file loaded, and whether that file is the
    copy bundled in a binary wheel or the system's."""
    import pygearman
    from pygearman._features import libgearman_bundled, libgearman_path

    path = libgearman_path()
    return {"pygearman": pygearman.__version__,
            "libgearman": pygearman.libgearman_version(),
            "libgearman_build": pygearman.LIBGEARMAN_BUILD_VERSION,
            "libgearman_path": path,
            "libgearman_bundled": libgearman_bundled(path),
            "python": sys.version.split()[0]}


def version_text(info: Optional[Dict[str, Any]] = None) -> str:
    """What ``pygearman --version`` and ``pygearman version`` print (two lines)."""
    info = info if info is not None else version_info()
    where = "bundled in the wheel" if info["libgearman_bundled"] else "system"
    return (f"pygearman {info['pygearman']} (libgearman {info['libgearman']})\n"
            f"libgearman: {info['libgearman_path'] or 'unknown path'} ({where})")


def cmd_version(args: argparse.Namespace) -> int:
    info = version_info()
    if args.json:
        _emit_json(info)
    else:
        print(version_text(info))
    return EXIT_OK


class _VersionAction(argparse.Action):
    """``--version``: print version_text() and exit, like argparse's own "version" action, but
    the text (which loads the compiled core) is made only when the option is given."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: Optional[str] = None) -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0,
                         help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:
        try:
            text = version_text()
        except ImportError as e:   # the compiled core or its libgearman cannot be loaded
            from pygearman._version import __version__

            parser.exit(EXIT_ERROR, f"pygearman {__version__} (libgearman not loaded: "
                                    f"{_one_line(str(e))})\n")
        sys.stdout.write(text + "\n")   # stdout, as argparse's "version" action
        sys.stdout.flush()
        parser.exit(EXIT_OK)


# -- the parser ---------------------------------------------------------------------------------

def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """With --json anywhere on the command line, a usage error is a JSON object on stdout too
    (exit code 2), like every other error; the usual message still goes to stderr."""

    json_requested = False

    def error(self, message: str) -> NoReturn:
        if _Parser.json_requested:
            self.print_usage(sys.stderr)
            print(f"{self.prog}: error: {message}", file=sys.stderr)
            _emit_json({"ok": False, "error": message, "error_type": "UsageError",
                        "exit_code": 2})
            sys.exit(2)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pygearman", description="Gearman client and worker tools (pygearman, libgearman)",
        epilog="Exit codes: 0 ok, 1 job failed, 2 usage, 3 connection, 4 timeout, 5 other error.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--version", action=_VersionAction,
                        help="print pygearman's version, libgearman's version and the path of the "
                             "libgearman loaded (bundled or system), then exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, timeout: Optional[float]) -> None:
        p.add_argument("--servers", default=_default_servers(),
                       help="job servers host:port[,host:port...] (default: $GEARMAN_SERVERS, "
                            "else 127.0.0.1:4730; now %(default)s)")
        p.add_argument("--timeout", type=_positive_float, default=timeout,
                       help="deadline in seconds" + (" (default: none)" if timeout is None
                                                     else " (default: %(default)s)"))
        p.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    p = sub.add_parser("submit", help="submit a job and print its result (or handle)",
                       description="Submit a job. The workload is DATA, or stdin when DATA is "
                                   "omitted or '-'. Prints the result's raw bytes (background: "
                                   "the job handle).")
    p.add_argument("function", help="the function name to submit the job to")
    p.add_argument("data", nargs="?", help="the workload (default: read stdin)")
    p.add_argument("--background", action="store_true", help="queue it and print the handle")
    p.add_argument("--priority", choices=("high", "normal", "low"), default="normal",
                   help="job priority (default: %(default)s)")
    p.add_argument("--unique", help="unique key (jobs with the same key coalesce)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="submit N times (one result per line; progress on a terminal)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    common(p, None)
    p.set_defaults(handler=cmd_submit)

    p = sub.add_parser("worker", help="serve MODULE:FUNCTION job functions (processes/threads)",
                       description="Serve job functions with pygearman.runner: N processes or "
                                   "threads, graceful drain on SIGTERM/Ctrl-C, recycling, "
                                   "per-function limits, one INFO log line per job.")
    p.add_argument("functions", nargs="+", metavar="MODULE:FUNCTION",
                   help="a job function (taking a GearmanJob); NAME=MODULE:FUNCTION names it")
    p.add_argument("--name", action="append",
                   help="Gearman function name of the next MODULE:FUNCTION (repeatable; "
                        "default: the Python name)")
    p.add_argument("--processes", type=int, metavar="N",
                   help="worker processes (default 1; 0 with --threads: threads only)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads per process (or in this process, without --processes)")
    p.add_argument("--max-jobs", type=int, metavar="N", help="recycle a process after N jobs")
    p.add_argument("--max-seconds", type=_positive_float, metavar="T",
                   help="recycle a process after T seconds")
    p.add_argument("--limit", action="append", metavar="NAME=N",
                   help="register NAME on at most N processes/threads (repeatable)")
    p.add_argument("--can-do-timeout", action="append", metavar="NAME=SECONDS",
                   help="register NAME with CAN_DO_TIMEOUT (repeatable)")
    p.add_argument("--identifier", default="runner",
                   help="worker id prefix shown by 'workers' (default: %(default)s)")
    p.add_argument("--namespace", help="function name prefix")
    p.add_argument("--start-method", choices=("fork", "spawn", "forkserver"),
                   help="multiprocessing start method (default: fork where available)")
    p.add_argument("--drain-timeout", type=_positive_float, metavar="T",
                   help="on stop, kill processes still busy after T seconds (default: wait)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-job log lines")
    p.add_argument("--servers", default=_default_servers(),
                   help="job servers (default: $GEARMAN_SERVERS, else 127.0.0.1:4730)")
    p.add_argument("--json", action="store_true", help="log records as JSON lines on stderr")
    p.set_defaults(handler=cmd_worker)

    p = sub.add_parser("status", help="functions: queued, running, workers (admin 'status')")
    p.add_argument("--function", help="only functions whose name contains this")
    common(p, 5.0)
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("workers", help="worker connections and their functions")
    p.add_argument("--all", action="store_true", help="include connections without functions")
    common(p, 5.0)
    p.set_defaults(handler=cmd_workers)

    p = sub.add_parser("ping", help="ECHO to each job server and print the latency")
    p.add_argument("--count", type=int, default=3, help="echoes per server (default 3)")
    common(p, 5.0)
    p.set_defaults(handler=cmd_ping)

    p = sub.add_parser("bench", help="a quick throughput run (starts a local gearmand)")
    p.add_argument("--servers", help="use these job servers instead of a local gearmand")
    p.add_argument("-n", "--jobs", type=int, default=2000, help="jobs per phase (default 2000)")
    p.add_argument("--size", type=int, default=16, help="workload bytes (default 16)")
    p.add_argument("--workers", type=int, default=2, help="echo worker processes (default 2)")
    p.add_argument("--timeout", type=_positive_float, default=120.0,
                   help="deadline per call (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.set_defaults(handler=cmd_bench)

    p = sub.add_parser("demo", help="run the seed's example: gearmand + worker + client")
    p.add_argument("--servers", help="use these job servers (host:port,...) instead of "
                                     "starting a local gearmand")
    p.set_defaults(handler=cmd_demo, json=False)

    p = sub.add_parser("version", help="print pygearman's and libgearman's versions and the "
                                       "libgearman loaded (same as --version)")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.set_defaults(handler=cmd_version)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    _Parser.json_requested = "--json" in (sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    level = logging.WARNING
    if args.verbose or (args.command == "worker" and not args.quiet):
        level = logging.INFO
    logging.basicConfig(level=level, format=_LOG_FORMAT if args.command == "worker"
                        else "%(levelname)s %(name)s: %(message)s")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): no traceback, no second error at exit
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_ERROR
    except Exception as e:
        code = _error_code(e)
        name = "error" if isinstance(e, CliError) else type(e).__name__
        message = _one_line(str(e)) or type(e).__name__
        print(f"pygearman {args.command}: {name}: {message}", file=sys.stderr)
        if getattr(args, "json", False):
            obj: Dict[str, Any] = {"ok": False, "error": message,
                                   "error_type": type(e).__name__, "exit_code": code}
            completed = getattr(e, "completed", None)
            if completed is not None:
                obj["completed"] = completed
            _emit_json(obj)
        return code

"""The command line (pygearman / python -m pygearman) against a real gearmand."""
from __future__ import annotations

import io
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, List

import pytest

from pygearman import GearmanClient
from pygearman.admin import AdminClient
from pygearman.cli import EXIT_CONNECTION, EXIT_JOB, EXIT_TIMEOUT, EXIT_USAGE, Progress, main
from pygearman.testing import free_port

pytestmark = pytest.mark.timeout(90)


def cli(*args: str, input: Any = None, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin"
    env.update(kw.pop("env", {}))
    return subprocess.run([sys.executable, "-m", "pygearman", *args], input=input,
                          capture_output=True, timeout=timeout, env=env, **kw)


def dead_server() -> str:
    return f"127.0.0.1:{free_port()}"


def one_line_error(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


# -- submit -------------------------------------------------------------------------------------

def test_submit_round_trip_argument_and_stdin(gearmand, fname, start_worker):
    fn = fname("rev")
    start_worker(gearmand.address, {fn: lambda job: job.workload[::-1]})
    out = cli("submit", fn, "hello", "--servers", gearmand.address)
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"olleh"                     # raw bytes, nothing added
    out = cli("submit", fn, "--servers", gearmand.address, input=b"\x00\xffbin")
    assert out.returncode == 0 and out.stdout == b"nib\xff\x00"
    out = cli("submit", fn, "-", "--servers", gearmand.address, input=b"dash")
    assert out.stdout == b"hsad"
    out = cli("submit", fn, "x", "--priority", "high", "--unique", "u1",
              "--servers", gearmand.address, "--timeout", "10")
    assert out.returncode == 0 and out.stdout == b"x"


def test_submit_reads_gearman_servers_from_the_environment(gearmand, fname, start_worker):
    fn = fname("up")
    start_worker(gearmand.address, {fn: lambda job: job.workload.upper()})
    out = cli("submit", fn, "abc", env={"GEARMAN_SERVERS": gearmand.address})
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"ABC"


def test_submit_background_and_json(gearmand, fname, start_worker):
    fn = fname("echo")
    start_worker(gearmand.address, {fn: lambda job: job.workload})
    out = cli("submit", fn, "later", "--background", "--servers", gearmand.address)
    assert out.returncode == 0
    assert out.stdout.decode().startswith("H:") and out.stdout.endswith(b"\n")
    out = cli("submit", fn, "text", "--json", "--servers", gearmand.address)
    obj = json.loads(out.stdout)
    assert obj["ok"] is True and obj["result"] == "text" and obj["function"] == fn
    assert obj["background"] is False and obj["seconds"] >= 0
    out = cli("submit", fn, "--json", "--servers", gearmand.address, input=b"\xff\xfe")
    obj = json.loads(out.stdout)
    assert obj["result"] is None and obj["result_base64"] == "//4="
    out = cli("submit", fn, "bg", "--background", "--json", "--servers", gearmand.address)
    obj = json.loads(out.stdout)
    assert obj["handle"].startswith("H:") and obj["background"] is True


def test_submit_repeat(gearmand, fname, start_worker):
    fn = fname("echo")
    start_worker(gearmand.address, {fn: lambda job: job.workload})
    out = cli("submit", fn, "r", "--repeat", "5", "--servers", gearmand.address)
    assert out.returncode == 0
    assert out.stdout == b"r\n" * 5
    assert b"5 jobs in" in out.stderr and b"\r" not in out.stderr     # no progress: not a TTY
    out = cli("submit", fn, "r", "--repeat", "4", "--json", "--servers", gearmand.address)
    obj = json.loads(out.stdout)
    assert obj["jobs"] == 4 and obj["results"] == [{"result": "r"}] * 4
    assert obj["jobs_per_second"] > 0


def test_submit_progress_line_on_a_terminal(gearmand, fname, start_worker):
    fn = fname("slowish")

    def slowish(job: Any) -> bytes:
        time.sleep(0.05)
        return b"."

    start_worker(gearmand.address, {fn: slowish})
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "pygearman", "submit", fn, "x",
                                 "--repeat", "10", "--servers", gearmand.address],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        slave = -1
        seen = b""
        while True:
            r, _, _ = select.select([master], [], [], 20)
            if not r:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:          # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(20) == 0
        assert proc.stdout is not None and proc.stdout.read() == b".\n" * 10
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert f"\rsubmit {fn}: ".encode() in seen and b"/10 (" in seen, seen
    assert b"10 jobs in" in seen


def test_submit_errors_are_one_line_with_exit_codes(gearmand, fname, start_worker):
    bad = fname("boom")

    def boom(job: Any) -> bytes:
        raise ValueError("bad input")

    start_worker(gearmand.address, {bad: boom})
    out = cli("submit", bad, "x", "--servers", gearmand.address)
    assert out.returncode == EXIT_JOB and out.stdout == b""
    assert one_line_error(out.stderr) == "pygearman submit: JobException: ValueError: bad input"
    out = cli("submit", bad, "x", "--json", "--servers", gearmand.address)
    obj = json.loads(out.stdout)
    assert obj == {"ok": False, "error": "ValueError: bad input", "error_type": "JobException",
                   "exit_code": EXIT_JOB}

    out = cli("submit", fname("x"), "x", "--servers", dead_server(), "--timeout", "5")
    assert out.returncode == EXIT_CONNECTION
    line = one_line_error(out.stderr)
    assert line.startswith("pygearman submit: GearmanConnectionError: ") and "COULD_NOT_CONNECT" in line

    out = cli("submit", fname("nobody"), "x", "--servers", gearmand.address, "--timeout", "0.3")
    assert out.returncode == EXIT_TIMEOUT
    assert one_line_error(out.stderr).startswith("pygearman submit: GearmanTimeoutError: ")

    out = cli("submit", "fn", "x", "--servers", "bad:host:name")
    assert out.returncode == EXIT_USAGE
    assert one_line_error(out.stderr).startswith("pygearman submit: error: --servers: ")
    assert cli("submit", "fn", "x", "--priority", "urgent").returncode == EXIT_USAGE


# -- worker -------------------------------------------------------------------------------------

def test_worker_command_round_trip_and_sigterm(gearmand, fname, tmp_path):
    (tmp_path / "cli_jobs.py").write_text(textwrap.dedent('''
        def shout(job):
            return job.workload.upper() + b"!"

        def whisper(job):
            return job.workload.lower()
    '''))
    shout, whisper = fname("shout"), fname("whisper")
    proc = subprocess.Popen([sys.executable, "-m", "pygearman", "worker", "cli_jobs:shout",
                             "cli_jobs:whisper", "--name", shout, "--name", whisper,
                             "--threads", "2", "--servers", gearmand.address],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            with AdminClient(gearmand.address) as admin:
                st = {fs.function: fs.workers for fs in admin.status()}
            if st.get(shout) == 2 and st.get(whisper) == 2:
                break
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        out = cli("submit", shout, "hey", "--servers", gearmand.address)
        assert out.stdout == b"HEY!"
        out = cli("submit", whisper, "HEY", "--servers", gearmand.address)
        assert out.stdout == b"hey"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert f"INFO pygearman.runner" in stderr and f"job {shout} H:" in stderr
    assert "Traceback" not in stderr


def test_worker_command_usage_errors(tmp_path):
    out = cli("worker", "no_colon_here")
    assert out.returncode == EXIT_USAGE and b"MODULE:FUNCTION" in out.stderr
    out = cli("worker", "no_such_module_q:fn", "--servers", "127.0.0.1:4730")
    assert out.returncode == EXIT_USAGE
    assert one_line_error(out.stderr).startswith("pygearman worker: error: ")
    out = cli("worker", "os:getpid", "--name", "a", "--name", "b")
    assert out.returncode == EXIT_USAGE
    out = cli("worker", "os:getpid", "--limit", "getpid")
    assert out.returncode == EXIT_USAGE and b"NAME=N" in out.stderr


# -- status, workers, ping ----------------------------------------------------------------------

def test_status_workers_ping_tables_and_json(gearmand, fname, start_worker):
    fn = fname("listed")
    start_worker(gearmand.address, {fn: lambda job: b""})
    with GearmanClient(gearmand.address, timeout=10) as c:
        c.submit(fn, b"")       # the worker is registered
    out = cli("status", "--servers", gearmand.address, "--function", fn)
    assert out.returncode == 0
    lines = out.stdout.decode().splitlines()
    assert lines[0].split() == ["SERVER", "FUNCTION", "TOTAL", "RUNNING", "QUEUED", "WORKERS"]
    assert lines[1].split() == [gearmand.address, fn, "0", "0", "0", "1"]

    out = cli("status", "--json", "--servers", gearmand.address)
    obj = json.loads(out.stdout)
    rows = [r for r in obj[gearmand.address]["functions"] if r["function"] == fn]
    assert obj[gearmand.address]["ok"] and rows == [
        {"function": fn, "total": 0, "running": 0, "queued": 0, "workers": 1}]

    out = cli("workers", "--json", "--servers", gearmand.address)
    obj = json.loads(out.stdout)
    mine = [w for w in obj[gearmand.address]["workers"] if fn in w["functions"]]
    assert len(mine) == 1 and set(mine[0]) == {"fd", "address", "client_id", "functions"}
    assert all(w["functions"] for w in obj[gearmand.address]["workers"])    # workers only
    out = cli("workers", "--all", "--json", "--servers", gearmand.address)
    assert any(not w["functions"] for w in json.loads(out.stdout)[gearmand.address]["workers"])
    out = cli("workers", "--servers", gearmand.address)
    assert out.returncode == 0 and fn in out.stdout.decode()
    assert out.stdout.decode().splitlines()[0].split() == ["SERVER", "FD", "ADDRESS", "CLIENT-ID",
                                                           "FUNCTIONS"]

    out = cli("ping", "--servers", gearmand.address, "--count", "2")
    assert out.returncode == 0
    assert out.stdout.decode().startswith(f"{gearmand.address}  ok  connect ")
    out = cli("ping", "--json", "--servers", gearmand.address)
    obj = json.loads(out.stdout)[gearmand.address]
    assert obj["ok"] and len(obj["latency_ms"]) == 3 and obj["min_ms"] <= obj["avg_ms"] <= obj["max_ms"]


def test_several_servers_and_a_dead_one(gearmand, gearmand_exc):
    dead = dead_server()
    servers = f"{gearmand.address},{gearmand_exc.address},{dead}"
    for cmd in ("status", "workers", "ping"):
        out = cli(cmd, "--json", "--servers", servers, "--timeout", "5")
        assert out.returncode == EXIT_CONNECTION, (cmd, out.stderr)
        obj = json.loads(out.stdout)
        assert list(obj) == [gearmand.address, gearmand_exc.address, dead]
        assert obj[gearmand.address]["ok"] and obj[gearmand_exc.address]["ok"]
        assert obj[dead]["ok"] is False and obj[dead]["error_type"] == "GearmanConnectionError"
    out = cli("status", "--servers", servers)
    assert out.returncode == EXIT_CONNECTION
    assert one_line_error(out.stderr).startswith(f"pygearman status: {dead}: ")
    out = cli("ping", "--servers", servers)
    assert f"{dead}  FAILED  GearmanConnectionError" in out.stdout.decode()


# -- bench, version, demo, entry points ---------------------------------------------------------

def test_bench_json(gearmand):
    out = cli("bench", "-n", "200", "--workers", "1", "--json", "--servers", gearmand.address,
              timeout=80)
    assert out.returncode == 0, out.stderr
    obj = json.loads(out.stdout)
    assert obj["ok"] and obj["jobs"] == 200 and obj["local_gearmand"] is False
    phases = [p["phase"] for p in obj["results"]]
    assert phases == ["do_background loop", "submit_background_many",
                      "background end to end (1 workers)", "do_normal round trips", "submit_many"]
    assert all(p["jobs_per_second"] > 0 for p in obj["results"])
    with AdminClient(gearmand.address) as admin:   # the echo workers are gone
        assert not any(fs.function.startswith("pygearman_bench_") and fs.workers
                       for fs in admin.status())


def test_bench_starts_its_own_gearmand():
    out = cli("bench", "-n", "100", "--workers", "1", timeout=80)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[0].split() == ["PHASE", "JOBS", "SECONDS", "JOBS/S"] and len(lines) == 6
    assert b"started gearmand" in out.stderr


def _expected_version_lines() -> List[str]:
    """What --version must say, worked out here from the libgearman this process loaded."""
    import pygearman
    from pygearman._features import libgearman_path

    path = libgearman_path()
    assert path and os.path.isfile(path), path
    site = Path(pygearman.__file__).resolve().parents[1]
    bundled = Path(path).resolve().parent in (site / "pygearman_native.libs",
                                              Path(pygearman.__file__).resolve().parent / ".dylibs")
    where = "bundled in the wheel" if bundled else "system"
    return [f"pygearman {pygearman.__version__} (libgearman {pygearman.libgearman_version()})",
            f"libgearman: {path} ({where})"]


def test_version_plain_and_json():
    import pygearman

    out = cli("version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == _expected_version_lines()
    obj = json.loads(cli("version", "--json").stdout)
    assert obj["pygearman"] == pygearman.__version__
    assert obj["libgearman"] == pygearman.libgearman_version()
    assert obj["libgearman_build"] == pygearman.LIBGEARMAN_BUILD_VERSION
    assert _expected_version_lines()[1] == (
        f"libgearman: {obj['libgearman_path']} "
        f"({'bundled in the wheel' if obj['libgearman_bundled'] else 'system'})")


def test_version_option_names_the_libgearman_loaded(capsys):
    """--version (python -m pygearman, the console script, main()): pygearman's version, the
    runtime libgearman_version(), and the file of the libgearman loaded, bundled or system."""
    expected = _expected_version_lines()
    out = cli("--version")
    assert out.returncode == 0 and out.stderr == b"", out.stderr
    assert out.stdout.decode().splitlines() == expected
    # the loaded file really is the one this process mapped (not a guess from the linker's path)
    if os.path.exists("/proc/self/maps"):
        mapped = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                  if "/" in line}
        assert expected[1].split(": ", 1)[1].rsplit(" (", 1)[0] in mapped
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.splitlines() == expected
    assert cli("version").stdout == out.stdout        # the subcommand says the same
    exe = (shutil.which("pygearman", path=str(Path(sys.executable).parent))
           or shutil.which("pygearman"))
    if exe is not None:
        script = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
        assert script.returncode == 0 and script.stdout.splitlines() == expected


def test_version_bundled_is_judged_by_the_wheel_libs_directories(tmp_path):
    from pygearman import _features

    for bundle in _features.BUNDLE_DIRS:
        assert _features.libgearman_bundled(os.path.join(bundle, "libgearman-0123abcd.so.8.0.0"))
    assert not _features.libgearman_bundled("/usr/lib/x86_64-linux-gnu/libgearman.so.8")
    assert not _features.libgearman_bundled("libgearman.so.8")      # find_library's bare name
    assert not _features.libgearman_bundled(str(tmp_path / "libgearman.so.8"))


def test_console_script_and_main_function(capsys):
    exe = Path(sys.executable).parent / "pygearman"
    if not exe.exists():
        exe_found = shutil.which("pygearman")
        if exe_found is None:
            pytest.skip("the pygearman console script is not installed")
        exe = Path(exe_found)
    out = subprocess.run([str(exe), "version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("pygearman ")
    from pygearman.__main__ import main as entry_point

    assert entry_point is main
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("pygearman ")
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == EXIT_USAGE


def test_progress_line():
    buf = io.StringIO()
    p = Progress("job", 4, stream=buf, enabled=True, interval=0)
    for i in range(1, 5):
        p.update(i)
    p.note("waiting")
    p.close()
    text = buf.getvalue()
    assert "\rjob: 1/4 (" in text and "\rjob: 4/4 (" in text and "\rjob: waiting" in text
    assert text.endswith("\r\x1b[K")
    quiet = io.StringIO()
    p = Progress("job", 4, stream=quiet)        # StringIO is not a terminal
    p.update(1)
    p.close()
    assert quiet.getvalue() == ""


def test_json_usage_errors_are_json() -> None:
    """A usage error with --json: a JSON object on stdout as for every other error, exit 2."""
    import json as _json
    import subprocess as _sp
    import sys as _sys

    r = _sp.run([_sys.executable, "-m", "pygearman", "submit", "--json"], capture_output=True,
                text=True, timeout=60)
    assert r.returncode == 2
    obj = _json.loads(r.stdout)
    assert obj["ok"] is False and obj["exit_code"] == 2 and "function" in obj["error"]

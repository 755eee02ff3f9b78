"""The main job (python -m pygearman demo) and the pygearman.testing helpers."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import pygearman
from pygearman.demo import ucwords
from pygearman.testing import GearmandServer, find_gearmand

pytestmark = pytest.mark.timeout(90)


def _env():
    env = dict(os.environ)
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin"
    return env


def test_demo_runs_the_seed_example():
    out = subprocess.run([sys.executable, "-m", "pygearman", "demo"], capture_output=True,
                         text=True, timeout=60, env=_env())
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "All The World's A Stage" in lines
    assert any(l.startswith("[demo] background: do_background") for l in lines)
    assert any("status: known=True running=True" in l for l in lines)
    assert "[demo] background job finished" in lines
    assert "[demo]   in order: To Be, Or Not To Be / That Is The Question / Whether 'tis Nobler / " \
           "In The Mind To Suffer" in lines
    assert sum(1 for l in lines if l.startswith("[demo]   task ")) == 4


def test_demo_against_given_servers(gearmand):
    out = subprocess.run([sys.executable, "-m", "pygearman", "demo", "--servers",
                          gearmand.address], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "All The World's A Stage" in out.stdout.splitlines()
    assert "started gearmand" not in out.stdout


def test_version_command():
    out = subprocess.run([sys.executable, "-m", "pygearman", "version"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0
    assert pygearman.__version__ in out.stdout and pygearman.libgearman_version() in out.stdout


@pytest.mark.parametrize("text,expected", [
    ("all the world's a stage", "All The World's A Stage"),
    ("  two  spaces", "  Two  Spaces"),
    ("tab\tand\nnewline", "Tab\tAnd\nNewline"),
    ("", ""),
    ("élan vital", "Élan Vital"),
])
def test_ucwords_matches_php(text, expected):
    assert ucwords(text) == expected


def test_gearmand_server_lifecycle():
    assert os.access(find_gearmand(), os.X_OK)
    server = GearmandServer()
    assert not server.running
    with server:
        assert server.running and server.pid
        host, port = server.address.split(":")
        assert host == "127.0.0.1" and int(port) > 0
        assert "OK" in server.admin("version") or server.admin("version").strip()
        pid = server.pid
        server.restart()
        assert server.running and server.pid != pid and server.address == f"{host}:{port}"
        assert server.log_path.exists()
        server.kill()
        assert not server.running
        server.start()
        assert server.address == f"{host}:{port}"
        pid = server.pid
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_gearmand_options_and_fixture(gearmand, gearmand_factory):
    assert gearmand.running
    s = gearmand_factory(exceptions=True, args=["--job-retries=2"])
    assert s.running and s.address != gearmand.address


_USER_TEST = """
    from pygearman import GearmanClient, GearmanWorker
    def test_user(gearmand, gearmand_factory):
        assert gearmand_factory().address != gearmand.address
        with GearmanWorker(gearmand.address) as w, GearmanClient(gearmand.address) as c:
            w.add_function("up", lambda job: job.workload.upper())
            c.do_background("up", "x")
            assert w.work(timeout=10)
"""


def test_fixtures_are_usable_by_user_tests_through_a_conftest(pytester):
    pytester.makeconftest('pytest_plugins = ["pygearman.testing"]\n')
    pytester.makepyfile(_USER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_fixtures_are_usable_by_user_tests_through_the_p_option(pytester):
    pytester.makepyfile(_USER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "pygearman.testing")
    result.assert_outcomes(passed=1)


def test_plugin_is_opt_in_and_pytest_alone_does_not_import_the_extension(pytester):
    """No pytest11 entry point: a pytest session that did not ask for pygearman.testing neither
    gets its fixtures nor imports the compiled extension."""
    pytester.makepyfile("""
        import sys
        def test_nothing_loaded(request):
            assert "pygearman.testing" not in sys.modules
            assert "pygearman._libgearman" not in sys.modules
            plugins = request.config.pluginmanager
            assert not plugins.has_plugin("pygearman")
            assert not plugins.has_plugin("pygearman.testing")
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    listing = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fixtures")
    assert "gearmand_factory" not in listing.stdout.str()


ORPHAN = """
import sys, time, threading
from pygearman.testing import GearmandServer
if sys.argv[1] == "thread":
    box = []
    t = threading.Thread(target=lambda: box.append(GearmandServer().start()))
    t.start(); t.join()
    g = box[0]
else:
    g = GearmandServer().start()
print(g.pid, flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize("where", ["main", "thread"])
def test_a_test_server_does_not_outlive_a_killed_process(where: str) -> None:
    """SIGKILL the process that started a GearmandServer: its gearmand goes too (the
    parent-death signal from the main thread; a watchdog when started from another thread)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    p = subprocess.Popen([sys.executable, "-c", ORPHAN, where], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        pid = int(p.stdout.readline())
        os.kill(pid, 0)                                   # running
        p.kill()
        p.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            try:                                          # reap it if it is our zombie
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the gearmand outlived the process that started it")
    finally:
        if p.poll() is None:
            p.kill()


def test_find_gearmand_skips_a_gearmand_that_is_not_the_c_server(tmp_path, monkeypatch) -> None:
    import os

    from pygearman import testing

    fake = tmp_path / "gearmand"
    fake.write_text("#!/bin/sh\necho 'Usage: gearmand [--daemon] (Gearman::Server)'\n")
    fake.chmod(0o755)
    monkeypatch.delenv("GEARMAND", raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}:/usr/sbin")
    found = testing.find_gearmand()
    assert found != str(fake) and os.path.basename(found) == "gearmand"

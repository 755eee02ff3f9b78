"""The runnable examples work against a real gearmand, and the package type-checks."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parent.parent


def _sigint_default() -> None:
    # a test run started in the background (`make test &`) ignores SIGINT, and a child inherits
    # that: the worker below must get Ctrl-C as in a terminal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_examples_client_worker_background(gearmand):
    # -X faulthandler: if the worker ever ignores Ctrl-C, SIGABRT below prints where it was
    worker = subprocess.Popen([sys.executable, "-X", "faulthandler",
                               str(ROOT / "examples" / "worker.py"), gearmand.address],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=_sigint_default)
    try:
        out = subprocess.run([sys.executable, str(ROOT / "examples" / "client.py"), gearmand.address],
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "All The World's A Stage", out.stderr
        out = subprocess.run([sys.executable, str(ROOT / "examples" / "background.py"),
                              gearmand.address], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("queued H:") and out.stdout.rstrip().endswith("done")
    finally:
        worker.send_signal(2)
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.send_signal(signal.SIGABRT)
            worker.wait(10)
            pytest.fail("the example worker did not stop on Ctrl-C within 10 s; its stacks:\n"
                        + worker.stderr.read()[-6000:])
    assert "Traceback" not in worker.stderr.read()


@pytest.mark.skipif(shutil.which("mypy") is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), "mypy")), reason="mypy not installed")
def test_mypy_strict_on_package_and_examples():
    import pygearman
    pkg = Path(pygearman.__file__).parent
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                          str(ROOT / "examples")],
                         capture_output=True, text=True, timeout=170, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "pygearman"],
                         capture_output=True, text=True, timeout=170, cwd=str(pkg.parent.parent))
    assert out.returncode == 0, out.stdout + out.stderr

"""Shared fixtures: real gearmand servers (from pygearman.testing), workers in threads and Python
children in processes. Plain helpers are in _support/."""
from __future__ import annotations

import itertools
import shutil
import subprocess
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Sequence

import pytest

from pygearman import GearmanClient, GearmanWorker

from _support.processes import Child

if TYPE_CHECKING:
    from pygearman.testing import GearmandServer

# pygearman's fixtures (gearmand, gearmand_factory) are opt-in, as for any user of the package
# (no pytest11 entry point). pygearman.testing is imported here first, by pytest, so that it is not
# already imported when pytest registers it (an import above would make pytest warn that it
# cannot rewrite its asserts).
pytest_plugins = ["pytester", "pygearman.testing"]

_counter = itertools.count()


# -- PHP and the gearman CLI, for the interop tests ---------------------------------------

def _php_has_gearman(php: str) -> bool:
    try:
        out = subprocess.run([php, "-m"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "gearman" in [line.strip().lower() for line in out.splitlines()]


@pytest.fixture(scope="session")
def php() -> str:
    exe = shutil.which("php")
    if exe is None:
        pytest.skip("php (php-cli) is not installed")
    if not _php_has_gearman(exe):
        pytest.skip("php has no gearman extension (install php-gearman)")
    return exe


@pytest.fixture(scope="session")
def gearman_cli() -> str:
    exe = shutil.which("gearman")
    if exe is None:
        pytest.skip("the gearman command-line tool is not installed (gearman-tools)")
    return exe


@pytest.fixture(scope="session")
def gearmand_exc() -> Iterator[GearmandServer]:
    """A second session server, started with --exceptions."""
    from pygearman.testing import GearmandServer

    with GearmandServer(exceptions=True) as server:
        yield server


@pytest.fixture(params=["plain", "exceptions"])
def any_gearmand(request: pytest.FixtureRequest, gearmand: GearmandServer,
                 gearmand_exc: GearmandServer) -> GearmandServer:
    """Runs the test against gearmand without and with --exceptions."""
    return gearmand if request.param == "plain" else gearmand_exc


@pytest.fixture
def fname(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Function names unique to this test, so tests can share one server."""
    tag = f"{next(_counter)}_{uuid.uuid4().hex[:6]}"

    def make(base: str) -> str:
        return f"{base}_{tag}"

    return make


class WorkerThread:
    """A GearmanWorker running run() in a thread; stopped and joined on teardown."""

    def __init__(self, worker: GearmanWorker) -> None:
        self.worker = worker
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as e:  # surfaced by stop()
            self.error = e

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "worker thread did not stop within 15 s"
        self.worker.close()
        if self.error is not None:
            raise self.error


@pytest.fixture
def runners() -> Iterator[Callable[[GearmanWorker], WorkerThread]]:
    """runners(worker): run an already configured worker in a thread until the test ends."""
    started: List[WorkerThread] = []

    def start(worker: GearmanWorker) -> WorkerThread:
        wt = WorkerThread(worker)
        started.append(wt)
        return wt

    yield start
    for wt in started:
        if wt.thread.is_alive() or not wt.worker.closed:
            wt.stop()


@pytest.fixture
def start_worker(runners: Callable[[GearmanWorker], WorkerThread]
                 ) -> Callable[..., WorkerThread]:
    """start_worker(servers, {name: function}): a new worker serving those, in a thread."""

    def start(servers: object, functions: Dict[str, Callable[..., object]]) -> WorkerThread:
        worker = GearmanWorker(servers)  # type: ignore[arg-type]
        for name, fn in functions.items():
            worker.add_function(name, fn)
        return runners(worker)

    return start


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """child(source, args, name="child"): run a Python snippet in a child process, watched line by
    line (_support.processes.Child); every child still alive at teardown is killed."""
    children: List[Child] = []

    def start(source: str, args: Sequence[str], name: str = "child",
              env: Optional[Dict[str, str]] = None) -> Child:
        c = Child(tmp_path, f"{name}{len(children)}", source, args, env=env)
        children.append(c)
        return c

    try:
        yield start
    finally:
        for c in children:
            c.cleanup()


@pytest.fixture
def client(gearmand: GearmandServer) -> Iterator[GearmanClient]:
    with GearmanClient(gearmand.address, timeout=20) as c:
        yield c

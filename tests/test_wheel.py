"""The repaired binary wheel carries libgearman and passes the core tests when installed alone."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "wheel-test.sh"
SKIP_STATUS = 77  # scripts/ensure-debs.sh: a needed tool cannot be installed here
LIBS_DIR = "pygearman_native.libs"

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="auditwheel and ldd: the local wheel check is Linux-only"),
]


@dataclass
class WheelRun:
    wheel: Path
    venv: Path
    junit: Path
    output: str


@pytest.fixture(scope="module")
def wheel_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WheelRun]:
    """Runs scripts/wheel-test.sh once: build, repair, fresh venv, ldd, core tests."""
    if shutil.which("bash") is None:
        pytest.skip("bash is needed to run scripts/wheel-test.sh")
    work = tmp_path_factory.mktemp("wheel")
    env = dict(os.environ,
               PYTHON=sys.executable,  # the wheel is built and tested for the Python running us
               DIST_DIR=str(work / "dist"),
               WHEELHOUSE=str(work / "wheelhouse"),
               WHEEL_TEST_DIR=str(work / "test"))
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=560)
    tail = proc.stdout[-8000:]
    if proc.returncode == SKIP_STATUS:
        pytest.skip("scripts/wheel-test.sh cannot run here: "
                    + " ".join(proc.stdout.strip().splitlines()[-2:]))
    assert proc.returncode == 0, f"scripts/wheel-test.sh failed ({proc.returncode}):\n{tail}"
    tested = re.findall(r"^WHEEL_TESTED=(.+)$", proc.stdout, re.MULTILINE)
    assert len(tested) == 1, tail
    yield WheelRun(wheel=Path(tested[0]), venv=work / "test" / "venv",
                   junit=work / "test" / "junit.xml", output=proc.stdout)


def test_repaired_wheel_bundles_libgearman(wheel_run: WheelRun) -> None:
    assert re.search(r"-manylinux_\d+_\d+_\w+\.whl$", wheel_run.wheel.name), wheel_run.wheel.name
    with zipfile.ZipFile(wheel_run.wheel) as zf:
        names = zf.namelist()
    bundled = [n for n in names if n.startswith(LIBS_DIR + "/")]
    assert any(re.match(rf"{re.escape(LIBS_DIR)}/libgearman-[0-9a-f]+\.so", n) for n in bundled), names
    # libuuid is not on the manylinux whitelist, so it must travel too.
    assert any("/libuuid-" in n for n in bundled), bundled
    assert any(n.endswith(".dist-info/licenses/vendor/NOTICE.md") for n in names), names
    assert not any(n.endswith(".c") for n in names), "generated C source shipped in the wheel"


def test_installed_extension_loads_bundled_libgearman(wheel_run: WheelRun) -> None:
    exts = sorted(wheel_run.venv.glob("lib/python*/site-packages/pygearman/_libgearman*.so"))
    assert len(exts) == 1, exts
    site = exts[0].parent.parent.resolve()
    ldd = subprocess.run(["ldd", str(exts[0])], stdout=subprocess.PIPE, text=True,
                         check=True, timeout=60).stdout
    resolved = [line.split("=>")[1].split()[0] for line in ldd.splitlines()
                if line.strip().startswith("libgearman") and "=>" in line]
    assert len(resolved) == 1, ldd
    target = Path(resolved[0]).resolve()
    assert target.parent == site / LIBS_DIR, ldd
    assert "/usr/lib" not in str(target)


def test_core_tests_pass_against_wheel(wheel_run: WheelRun) -> None:
    assert re.search(r"^import pygearman -> .*/site-packages/pygearman/__init__\.py$",
                     wheel_run.output, re.MULTILINE), wheel_run.output[-4000:]
    root = ET.parse(wheel_run.junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors")}
    assert total["tests"] > 0, total
    assert total["failures"] == 0 and total["errors"] == 0, wheel_run.output[-6000:]


def test_wheel_extension_is_stripped(wheel_run: WheelRun) -> None:
    """scripts/wheel-build.sh builds with PYGEARMAN_STRIP=1: no debug sections in the extension
    (their names would be in the section-name table)."""
    with zipfile.ZipFile(wheel_run.wheel) as zf:
        (name,) = [n for n in zf.namelist() if re.match(r"pygearman/_libgearman\.[^/]*\.so$", n)]
        data = zf.read(name)
    assert b".debug_info" not in data and b".debug_line" not in data, name
    assert b"PyInit__libgearman" in data   # the dynamic symbols stay


def test_sdist_has_sources_but_no_generated_c(wheel_run: WheelRun) -> None:
    (sdist,) = (wheel_run.wheel.parent.parent / "dist").glob("pygearman_native-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = [n.split("/", 1)[1] for n in tf.getnames() if "/" in n]
    assert "src/pygearman/_libgearman.pyx" in names and "setup.py" in names, names
    assert not [n for n in names if n.startswith("src/") and n.endswith((".c", ".so"))], names

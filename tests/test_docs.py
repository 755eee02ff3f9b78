"""The documentation builds with -W (every warning an error) against the installed package, its
API reference covers the public API, and the tutorial's program runs.

`make docs` runs the same build into docs/_build/html; here it goes to a temporary directory.
"""
from __future__ import annotations

import enum
import importlib.util
import inspect
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Iterator, Set, Tuple

import pytest

import pygearman
import pygearman.admin
import pygearman.aio
import pygearman.errors
import pygearman.runner
import pygearman.testing

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

_missing = [m for m in ("sphinx", "myst_parser") if importlib.util.find_spec(m) is None]
needs_sphinx = pytest.mark.skipif(
    bool(_missing), reason=f"{' and '.join(_missing)} not installed: pip install -r "
                           "docs/requirements.txt (make setup installs it)")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "html"
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
                           "-q", str(DOCS), str(out)],
                          capture_output=True, text=True, timeout=55, cwd=ROOT)
    assert proc.returncode == 0, f"sphinx-build -W failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _inventory(html: Path) -> Set[str]:
    """Object names in Sphinx's objects.inv (format v2: four header lines, then zlib)."""
    data = (html / "objects.inv").read_bytes()
    header_end = 0
    for _ in range(4):
        header_end = data.index(b"\n", header_end) + 1
    names = set()
    for line in zlib.decompress(data[header_end:]).decode().splitlines():
        name, domain_role = line.split(" ", 2)[:2]
        if domain_role.startswith("py:"):
            names.add(name)
    return names


def _expected() -> Iterator[Tuple[str, str]]:
    """(documented name, why) for every public name and every public member pygearman defines
    of each public class: the same walk as tests/test_docstrings.py."""
    sections = [(pygearman, "pygearman"), (pygearman.errors, "pygearman"),
                (pygearman.aio, "pygearman.aio"), (pygearman.admin, "pygearman.admin"),
                (pygearman.runner, "pygearman.runner"), (pygearman.testing, "pygearman.testing")]
    for module, prefix in sections:
        for name in module.__all__:
            if module is pygearman.errors and name in ("error_class_for", "NON_ERROR_CODES"):
                prefix_here = "pygearman.errors"
            else:
                prefix_here = prefix
            yield f"{prefix_here}.{name}", f"{module.__name__}.__all__"
            obj = getattr(module, name)
            if not inspect.isclass(obj):
                continue
            for member in dir(obj):
                if member.startswith("_"):
                    continue
                owner = next((k for k in obj.__mro__ if member in vars(k)), None)
                if owner is None or owner.__module__.split(".")[0] != "pygearman":
                    continue
                raw = vars(owner)[member]
                if isinstance(obj, enum.EnumMeta) and isinstance(getattr(obj, member), obj):
                    continue
                if not (inspect.isroutine(raw) or inspect.isdatadescriptor(raw)
                        or isinstance(raw, (staticmethod, classmethod, property))):
                    continue                   # plain class data, described by the class
                yield f"{prefix_here}.{name}.{member}", f"a member of {name}"


@needs_sphinx
@pytest.mark.timeout(60)
def test_docs_build_with_warnings_as_errors_and_cover_the_api(built: Path) -> None:
    names = _inventory(built)
    missing = sorted({f"{n}  ({why})" for n, why in _expected() if n not in names})
    assert not missing, ("not in the API reference (docs/api/*.rst):\n" + "\n".join(missing))
    # the pages of every section exist, and the repository's Markdown files are in the site
    for page in ("index", "tutorial", "howto/workers", "howto/runner", "howto/asyncio",
                 "howto/admin", "howto/cli", "howto/testing", "libgearman-1.1.20",
                 "reliability", "benchmarks", "benchmark-results", "api/pygearman"):
        assert (built / f"{page}.html").is_file(), page
    traps = (built / "libgearman-1.1.20.html").read_text()
    assert 'id="exception-hang"' in traps and 'href="#exception-hang"' in traps
    bench = (built / "benchmarks.html").read_text()
    assert 'href="libgearman-1.1.20.html#socket-buffers-32k"' in bench
    cli = (built / "howto" / "cli.html").read_text()
    assert "usage: pygearman submit" in cli


@pytest.mark.timeout(60)
def test_the_tutorial_program_runs() -> None:
    """examples/three_modes.py, which docs/tutorial.md is built around, with its own gearmand."""
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "three_modes.py")],
                          capture_output=True, text=True, timeout=55)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["All The World's A Stage", "To Be, Or Not To Be"], proc.stdout
    assert sorted(line for line in lines if line.startswith("line ")) == [
        "line 0: Whether 'tis Nobler", "line 1: In The Mind", "line 2: To Suffer The Slings"]
    assert "[b\"Whether 'tis Nobler\", b'In The Mind', b'To Suffer The Slings']" in lines
    assert any(line.startswith("queued H:") for line in lines)
    assert lines[-1] == "done"

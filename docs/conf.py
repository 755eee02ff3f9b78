"""Sphinx configuration of pygearman's documentation.

Build it with ``make docs`` (``sphinx-build -W -b html docs docs/_build/html`` in .venv). The
API reference is generated from the docstrings of the *installed* package: the compiled core
exists only once built, so nothing here puts ``src/`` on ``sys.path``; ``make docs`` (through
``make setup``) builds and installs the package first.

Three Markdown files of the repository are pages here, unchanged: docs/libgearman-1.1.20.md (a
page of its own), RELIABILITY.md and the benchmark reports (included by reliability.md and
benchmarks.md). Two small rewrites make them work in Sphinx, in memory only (see
``_markdown_fixups``).
"""
from __future__ import annotations

import contextlib
import io
import os
import re
from typing import Any, Dict, List

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

import pygearman

project = "pygearman"
author = "the pygearman developers"
copyright = "the pygearman developers"
release = pygearman.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
# The whole site is checked with -W: a broken cross-reference inside the project is an error.
nitpicky = False

# -- MyST (Markdown) -----------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
# GitHub-style anchors for headings, so "[text](#a-heading)" links of the repository's Markdown
# files work here as they do on GitHub.
myst_heading_anchors = 3

# -- autodoc --------------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# The compiled core is built with Cython's embedsignature (help() shows "Class.method(self, ...)"
# as the docstring's first line) and binding=True (inspect.signature() works). autodoc takes the
# signature from inspect, which leaves out "self", and _strip_embedded_signature drops the line.
autodoc_docstring_signature = False

# -- HTML -----------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"pygearman {release}"
html_theme_options = {
    "description": "A fast Gearman client and worker for Python, on libgearman",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "250px",
}
html_show_sourcelink = False


# -- the repository's Markdown files ------------------------------------------------------------

# docs/libgearman-1.1.20.md marks its sections with HTML anchors, which code comments cite as
# docs/libgearman-1.1.20.md#<anchor>. HTML is opaque to Sphinx, so each becomes a MyST target
# with the same name: "#<anchor>" links then resolve, and the HTML ids stay the same.
_HTML_ANCHOR = re.compile(r'^<a id="([A-Za-z0-9_.-]+)"></a>[ \t]*$', re.M)
# Links between those files are relative to where they live in the repository.
_LINK_REWRITES = [
    (re.compile(r"\]\(\.\./docs/libgearman-1\.1\.20\.md#"), "](#"),
    (re.compile(r"\]\(docs/libgearman-1\.1\.20\.md#"), "](#"),
]


def _markdown_fixups(text: str) -> str:
    text = _HTML_ANCHOR.sub(r"(\1)=", text)
    for pattern, replacement in _LINK_REWRITES:
        text = pattern.sub(replacement, text)
    return text


def _on_source_read(app: Sphinx, docname: str, source: List[str]) -> None:
    if docname == "libgearman-1.1.20":
        source[0] = _markdown_fixups(source[0])


def _on_include_read(app: Sphinx, relative_path: Any, parent_docname: str,
                     content: List[str]) -> None:
    if str(relative_path).endswith(".md"):
        content[0] = _markdown_fixups(content[0])


# -- module docstrings ---------------------------------------------------------------------------

def _module_examples_as_code(app: Sphinx, what: str, name: str, obj: Any, options: Any,
                             lines: List[str]) -> None:
    """pygearman's module docstrings open with example code indented under the summary, as
    help() shows it, without reST's ``::``. An indented block that starts after a blank line and
    is not already introduced by ``::`` is such an example: make it a literal block."""
    if what != "module":
        return
    out: List[str] = []
    in_block = False
    last_text = ""
    for i, line in enumerate(lines):
        indented = bool(line.strip()) and line[:1] in (" ", "\t")
        if indented and not in_block and (i == 0 or not lines[i - 1].strip()):
            if not last_text.rstrip().endswith("::"):
                out += ["::", ""]
            in_block = True
        elif line.strip() and not indented:
            in_block = False
            last_text = line
        out.append(line)
    lines[:] = out


# -- the compiled core ------------------------------------------------------------------------

_EMBEDDED_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->\s*.+)?$")


def _strip_embedded_signature(app: Sphinx, what: str, name: str, obj: Any, options: Any,
                              lines: List[str]) -> None:
    """Drop the "Class.method(self, ...)" line Cython's embedsignature puts first."""
    short = name.rsplit(".", 1)[-1]
    if lines and _EMBEDDED_SIGNATURE.match(lines[0].strip()) \
            and lines[0].strip().split("(", 1)[0].rsplit(".", 1)[-1] == short:
        del lines[0]
        while lines and not lines[0].strip():
            del lines[0]


def _process_signature(app: Sphinx, what: str, name: str, obj: Any, options: Any,
                       signature: Any, return_annotation: Any) -> Any:
    # GearmanTask, JobStream, CompletedTasks and GearmanJob are made by pygearman; their
    # constructors only raise TypeError, so "(*args, **kwargs)" would mislead.
    if what in ("class", "exception") and getattr(obj, "__module__", "") == "pygearman._libgearman" \
            and signature is not None:
        return "", None
    return None


def _drop_object_base(app: Sphinx, name: str, obj: Any, options: Any, bases: List[Any]) -> None:
    """No "Bases: object" line under every plain class."""
    bases[:] = [b for b in bases if b is not object]


class _ClientTimeout:
    """What the rendered signatures show for a ``timeout`` left out: the client's own. The
    sentinel that means it prints as ``<default>``, which does not parse as Python, and Sphinx
    then prints the whole signature (overloads included) as unformatted text."""

    def __repr__(self) -> str:
        return "client.timeout"


def _show_default_timeouts() -> None:
    """In this (documentation) process only, swap the sentinel in the defaults of the client
    classes' methods for _ClientTimeout."""
    import pygearman.aio
    import pygearman.client
    from pygearman import _libgearman

    marker = _ClientTimeout()
    for module in (pygearman.client, pygearman.aio):
        for cls in vars(module).values():
            if not (isinstance(cls, type) and cls.__module__ == module.__name__):
                continue
            for fn in vars(cls).values():
                fn = getattr(fn, "__func__", fn)
                kwdefaults = getattr(fn, "__kwdefaults__", None)
                if kwdefaults:
                    for key, value in kwdefaults.items():
                        if value is _libgearman.UNSET:
                            kwdefaults[key] = marker
                defaults = getattr(fn, "__defaults__", None)
                if defaults and any(d is _libgearman.UNSET for d in defaults):
                    fn.__defaults__ = tuple(marker if d is _libgearman.UNSET else d
                                            for d in defaults)


_show_default_timeouts()


# -- the command line's help, generated ----------------------------------------------------------

class CliHelp(SphinxDirective):
    """``{pygearman-help} [COMMAND]``: the ``pygearman [COMMAND] --help`` text of the installed
    package, as a literal block (so the CLI page never lags behind the parser)."""

    optional_arguments = 1
    has_content = False
    option_spec = {"caption": directives.unchanged}

    def run(self) -> List[nodes.Node]:
        from pygearman.cli import build_parser

        argv = ([self.arguments[0]] if self.arguments else []) + ["--help"]
        saved = {k: os.environ.pop(k, None) for k in ("GEARMAN_SERVERS", "COLUMNS")}
        os.environ["COLUMNS"] = "96"          # argparse wraps at $COLUMNS: fixed for a stable page
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                build_parser().parse_args(argv)
        except SystemExit:
            pass
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        text = out.getvalue().rstrip()
        if not text:
            raise self.error(f"pygearman {' '.join(argv)} printed nothing")
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> Dict[str, Any]:
    app.connect("source-read", _on_source_read)
    app.connect("include-read", _on_include_read)
    app.connect("autodoc-process-docstring", _module_examples_as_code)
    app.connect("autodoc-process-docstring", _strip_embedded_signature)
    app.connect("autodoc-process-signature", _process_signature)
    app.connect("autodoc-process-bases", _drop_object_base)
    app.add_directive("pygearman-help", CliHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

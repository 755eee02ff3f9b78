"""Every public name has a docstring, and inspect.signature() works on every public routine,
the compiled ones included (the extension is built with Cython's ``binding=True``).

"Public" is what a user reaches from ``pygearman.__all__`` and the ``__all__`` of the public
modules below: those names, and every class's members that do not start with ``_`` and are
defined by pygearman (members inherited from ``str``, ``int``, ``Exception`` or
``asyncio.Future`` are documented by Python). The API reference (docs/api.rst) renders exactly
these docstrings, so a name missing here would be an empty entry there.
"""
from __future__ import annotations

import enum
import inspect
import re
import types
from typing import Any, Iterator, List, Set, Tuple

import pytest

import pygearman
import pygearman.admin
import pygearman.aio
import pygearman.errors
import pygearman.runner
import pygearman.testing
from pygearman import _libgearman

MODULES = [pygearman, pygearman.aio, pygearman.admin, pygearman.runner, pygearman.testing,
           pygearman.errors]

# Public names whose docstring is still missing, by "defining module.qualname". Only names
# compiled from src/pygearman/_core/worker.pxi may be listed: that file belongs to the worker
# engineer, who fills these in (then delete the entry: the test fails on a stale one).
MISSING_IN_WORKER_PXI: set = set()

# Names in __all__ that are data (constants, type aliases), not classes or functions: they
# carry no __doc__ of their own and are described in docs/api.rst instead.
DATA = {"__version__", "LIBGEARMAN_BUILD_VERSION", "FEATURES", "NON_ERROR_CODES", "MaxQueue",
        "DEFAULT_TIMEOUT", "FunctionRef"}

# Cython's embedsignature puts "Class.method(self, ...)" in front of a compiled docstring; a
# method without a docstring of its own still gets that line, which is not documentation.
_EMBEDDED_SIGNATURE = re.compile(r"^[\w.]+\(.*\)(\s*->\s*.+)?$")
# ... and a `cdef public` attribute gets "name: type", its only possible __doc__ (Cython has no
# docstrings for attributes).
_CYTHON_ATTRIBUTE_DOC = re.compile(r"^\w+: [\w.]+$")


def _own_doc(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str):
        return ""
    lines = doc.strip().splitlines()
    if lines and _EMBEDDED_SIGNATURE.match(lines[0].strip()):
        lines = lines[1:]
    return "\n".join(lines).strip()


def _is_ours(owner: type) -> bool:
    return owner.__module__.split(".")[0] == "pygearman"


def _is_attribute(raw: Any) -> bool:
    """Plain class data (``JobHandle.server``) or a Cython ``cdef public`` attribute
    (``GearmanTask.context``): neither can carry a docstring of its own."""
    if inspect.isgetsetdescriptor(raw):
        return bool(_CYTHON_ATTRIBUTE_DOC.match((raw.__doc__ or "").strip()))
    return not (inspect.isroutine(raw) or inspect.isclass(raw) or inspect.isdatadescriptor(raw)
                or isinstance(raw, (staticmethod, classmethod)))


def _members(cls: type) -> Iterator[Tuple[str, type, Any]]:
    """(name, defining class, raw attribute) of the public members pygearman defines."""
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        for owner in cls.__mro__:
            if name in vars(owner):
                raw = vars(owner)[name]
                break
        else:
            continue                           # a metaclass attribute
        if not _is_ours(owner):
            continue
        if isinstance(cls, enum.EnumMeta) and isinstance(getattr(cls, name), cls):
            continue                           # an enum member, e.g. ReturnCode.SUCCESS
        yield name, owner, raw


def _public_api() -> Iterator[Tuple[str, Any]]:
    """(defining module.qualname, object) of every public class, function, method and
    property, each once."""
    seen: Set[str] = set()
    for module in MODULES:
        for name in module.__all__:
            if name in DATA:
                continue
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or callable(obj)):
                continue                       # a type alias such as Workload
            key = f"{obj.__module__}.{obj.__qualname__}"
            if key in seen:
                continue
            seen.add(key)
            yield key, obj
            if not inspect.isclass(obj):
                continue
            for member, owner, raw in _members(obj):
                mkey = f"{owner.__module__}.{owner.__qualname__}.{member}"
                if mkey in seen or _is_attribute(raw):
                    continue
                seen.add(mkey)
                if isinstance(raw, (staticmethod, classmethod)):
                    raw = raw.__func__
                yield mkey, raw


API = list(_public_api())


def test_the_walk_finds_the_api() -> None:
    keys = {k for k, _ in API}
    # spot checks across plain Python, compiled classes, inherited compiled members, aio, admin
    for expected in ("pygearman.client.GearmanClient.submit",
                     "pygearman.client.GearmanClient.do_normal",
                     "pygearman._libgearman.Client.servers",
                     "pygearman._libgearman.GearmanTask.state",
                     "pygearman._libgearman.JobStream.close",
                     "pygearman._libgearman.CompletedTasks.tasks",
                     "pygearman._libgearman.GearmanJob.send_data",
                     "pygearman._libgearman.Worker.jobs_processed",
                     "pygearman._libgearman.new_unique",
                     "pygearman.aio.AsyncClient.stream",
                     "pygearman.aio.AsyncWorker.run",
                     "pygearman.admin.AdminClient.status",
                     "pygearman.admin.FunctionStatus.queued",
                     "pygearman.runner.Runner.run",
                     "pygearman.testing.GearmandServer.start",
                     "pygearman.errors.Retry"):
        assert expected in keys
    assert len(keys) > 200


def test_every_public_name_has_a_docstring() -> None:
    missing = sorted(k for k, obj in API if not _own_doc(obj))
    unexpected = [k for k in missing if k not in MISSING_IN_WORKER_PXI]
    assert not unexpected, "public names without a docstring:\n" + "\n".join(unexpected)
    stale = sorted(MISSING_IN_WORKER_PXI - set(missing))
    assert not stale, ("these now have a docstring; remove them from MISSING_IN_WORKER_PXI:\n"
                       + "\n".join(stale))


def test_attributes_are_described_by_their_class() -> None:
    """An attribute without a docstring of its own is named in its class's docstring, where
    readers (and autodoc) find it."""
    undocumented = []
    for module in MODULES:
        for name in module.__all__:
            cls = getattr(module, name)
            if not inspect.isclass(cls):
                continue
            for member, owner, raw in _members(cls):
                if _is_attribute(raw) and f"``{member}``" not in _own_doc(owner) \
                        and f"``.{member}``" not in _own_doc(owner):
                    undocumented.append(f"{owner.__module__}.{owner.__qualname__}.{member}")
    assert not undocumented, "attributes not named in their class docstring: " + \
        ", ".join(sorted(set(undocumented)))


def test_the_allow_list_only_names_worker_pxi() -> None:
    keys = dict(API)
    for key in MISSING_IN_WORKER_PXI:
        assert key.startswith(("pygearman._libgearman.Worker.",
                               "pygearman._libgearman.GearmanJob.")), key
        assert key in keys, f"{key} is not a public name any more"


def test_every_module_has_a_docstring() -> None:
    for module in MODULES + [pygearman.client, pygearman.worker]:
        assert _own_doc(module), module.__name__


def _routines() -> List[Tuple[str, Any]]:
    """Every public routine, and every class a user constructs. The compiled GearmanJob,
    GearmanTask, JobStream and CompletedTasks are left out as classes: pygearman makes them,
    their constructors only raise TypeError, and an extension type's __init__ is a slot
    wrapper without a signature whatever Cython's binding (their methods are checked)."""
    return [(k, o) for k, o in API
            if inspect.isroutine(o) or inspect.isclass(o) and not issubclass(o, BaseException)
            and o.__module__ != "pygearman._libgearman"]


@pytest.mark.parametrize("key,obj", _routines(), ids=[k for k, _ in _routines()])
def test_inspect_signature_works(key: str, obj: Any) -> None:
    inspect.signature(obj)


def test_compiled_methods_are_cython_functions() -> None:
    """binding=True (setup.py): compiled methods are cyfunctions, which carry __code__,
    __defaults__ and __annotations__ like Python functions (method_descriptor objects have no
    signature at all)."""
    for fn in (_libgearman.Client._submit, _libgearman.GearmanJob.send_data,
               _libgearman.JobStream.close, _libgearman.new_unique):
        assert type(fn).__name__ == "cython_function_or_method", type(fn)
        assert not isinstance(fn, types.MethodDescriptorType)


def test_signatures_of_compiled_primitives() -> None:
    # what GearmanClient.do_normal & co call
    sig = inspect.signature(_libgearman.Client._submit)
    assert list(sig.parameters)[:7] == ["self", "priority", "background", "function",
                                        "workload", "unique", "timeout"]
    assert sig.parameters["on_data"].default is None
    assert sig.parameters["when"].default is None
    assert list(inspect.signature(_libgearman.Client._submit_many).parameters) == [
        "self", "function", "workloads", "uniques", "priority", "background", "timeout",
        "batch", "return_exceptions"]
    assert list(inspect.signature(_libgearman.Client._job_status).parameters) == [
        "self", "handle", "timeout"]
    # the worker's job
    assert str(inspect.signature(pygearman.GearmanJob.send_data)) == "(self, data)"
    assert str(inspect.signature(pygearman.GearmanJob.send_status)) == \
        "(self, numerator, denominator)"
    assert str(inspect.signature(pygearman.GearmanJob.send_complete)) == "(self, data=b'')"
    # iterators and module functions
    assert str(inspect.signature(pygearman.JobStream.close)) == "(self)"
    assert str(inspect.signature(pygearman.CompletedTasks.close)) == "(self)"
    assert str(inspect.signature(pygearman.new_unique)) == "()"
    assert str(inspect.signature(pygearman.libgearman_version)) == "()"
    # a bound compiled method drops self, as a Python method does
    with pygearman.GearmanClient("127.0.0.1:1") as client:
        assert "self" not in inspect.signature(client._submit).parameters


def test_gearman_task_properties_are_documented_descriptors() -> None:
    """Properties of a cdef class are getset descriptors: nothing to call, so there is no
    signature to inspect (as for the properties of built-in types); what inspect and autodoc
    read from them is the docstring."""
    props = [n for n, _, raw in _members(pygearman.GearmanTask)
             if inspect.isgetsetdescriptor(raw)]
    assert {"function_name", "unique", "workload", "handle", "state", "result", "error",
            "exception", "numerator", "denominator", "data", "warnings"} <= set(props)
    for name in props:
        assert inspect.getdoc(getattr(pygearman.GearmanTask, name)), name
    with pytest.raises(TypeError, match="add_task"):
        pygearman.GearmanTask()

# JobHandle: the str that every background submit returns, made without the cyclic GC.
#
# A class statement makes a str subclass whose instances the cyclic garbage collector tracks
# (CPython gives every class made by type() that flag). A handle holds nothing but its text and
# a reference to its class, so tracking buys nothing, yet each one was allocated with a GC header,
# linked, counted towards the next collection and unlinked again: about 170 instructions per
# handle, and a batch of thousands of handles set off collections that walked the result list
# again and again. These classes are made with PyType_FromSpecWithBases instead, without
# Py_TPFLAGS_HAVE_GC. A user's own subclass (a class statement) is tracked as usual.

cdef extern from *:
    """
    /* Heap types' instances own a reference to their type: str's deallocator does not drop
       it, this one does (what a class statement's deallocator does for its instances). */
    static void pyg_handle_dealloc(PyObject *self)
    {
        PyTypeObject *tp = Py_TYPE(self);
        PyUnicode_Type.tp_dealloc(self);
        Py_DECREF(tp);
    }

    /* A subclass of base (str or a class made here) that the cyclic GC does not track. The
       name is a literal: Python 3.9 and 3.10 keep the pointer. */
    static PyObject *pyg_untracked_str_class(PyObject *base)
    {
        PyType_Slot slots[] = {
            {Py_tp_dealloc, (void *)pyg_handle_dealloc},
            {0, NULL},
        };
        PyType_Spec spec = {
            "pygearman.JobHandle", (int)sizeof(PyUnicodeObject), 0,
            Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, slots,
        };
        PyObject *bases = PyTuple_Pack(1, base), *cls;
        if (bases == NULL)
            return NULL;
        cls = PyType_FromSpecWithBases(&spec, bases);
        Py_DECREF(bases);
        return cls;
    }
    """
    object _untracked_str_class "pyg_untracked_str_class"(object base)


cdef extern from *:
    """
    /* A handle of class cls (a class made above) with text s.

       The usual way to make an instance of a str subclass, str's tp_new, makes a str of s,
       then a second object with a separate copy of the characters ("legacy" layout), and
       drops the first: three allocations and two copies. A job handle is ASCII, so it is made
       as CPython makes a str of s (one block: the header, then the characters) and then given
       its class. Every part of CPython reads a str's characters through the header's "compact"
       flag, whatever its class; nothing resizes or interns an instance of a subclass; str's
       deallocator frees the block whole, and pyg_handle_dealloc drops the class's reference.
       Anything else (non-ASCII text, another class) takes str's tp_new. */
    static PyObject *pyg_new_handle(PyObject *cls, const char *s)
    {
        Py_ssize_t i, n = (Py_ssize_t)strlen(s);
        PyObject *u = NULL, *args, *r;
        for (i = 0; i < n; i++)
            if ((unsigned char)s[i] > 127)
                break;
    #if !defined(PYPY_VERSION)
        if (i == n && n > 0 && ((PyTypeObject *)cls)->tp_dealloc == pyg_handle_dealloc
                && !PyType_IS_GC((PyTypeObject *)cls)) {
            u = PyUnicode_New(n, 127);          /* n > 0: a new object, never a shared one */
            if (u == NULL)
                return NULL;
            memcpy(PyUnicode_DATA(u), s, (size_t)n);
            Py_INCREF(cls);
            Py_SET_TYPE(u, (PyTypeObject *)cls);
            return u;
        }
    #endif
        u = PyUnicode_DecodeUTF8(s, n, "replace");
        if (u == NULL)
            return NULL;
        args = PyTuple_Pack(1, u);
        Py_DECREF(u);
        if (args == NULL)
            return NULL;
        r = PyUnicode_Type.tp_new((PyTypeObject *)cls, args, NULL);
        Py_DECREF(args);
        return r;
    }
    """
    object _new_handle "pyg_new_handle"(object cls, const char *s)


def _handle_new(cls, handle, server=None):
    if server is not None:
        cls = handle_class(server)
    return str.__new__(cls, handle)


def _handle_reduce(self):
    return (JobHandle, (str(self), self.server))


def _handle_repr(self):
    return f"JobHandle({str(self)!r}, server={self.server!r})"


JobHandle = _untracked_str_class(str)
JobHandle.__doc__ = """JobHandle(handle, server=None)

    A job handle (a ``str``, e.g. ``"H:host:42"``) that knows the job server that issued it
    (``.server``, ``"host:port"``). Two gearmand servers hand out the same handle texts, so
    :meth:`GearmanClient.job_status` and :meth:`GearmanClient.cancel_job` ask the server in
    ``.server``; a plain ``str`` handle is only accepted when it is unambiguous.

    Each server has its own subclass holding ``server`` as a class attribute, so a handle
    keeps no more than a ``str`` does; the garbage collector does not track handles (they hold
    no references)."""
JobHandle.server = None
JobHandle.__new__ = staticmethod(_handle_new)
JobHandle.__reduce__ = _handle_reduce
JobHandle.__repr__ = _handle_repr

_handle_classes = {}


def handle_class(str server):
    """The JobHandle subclass for handles issued by ``server`` (``"host:port"``)."""
    cls = _handle_classes.get(server)
    if cls is None:
        cls = _untracked_str_class(JobHandle)
        cls.server = server
        _handle_classes[server] = cls
    return cls

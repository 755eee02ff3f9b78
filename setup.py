"""Build the compiled core (pygearman._libgearman).

Nothing runs when this file is imported: libgearman is looked up (pkg-config, or the overrides
below) and _libgearman.pyx is cythonized only when the extension is built (``build_ext.run``).
So ``python -m build --sdist`` works on a machine without libgearman's headers, and the sdist
carries the .pyx/.pxd/.pxi sources, never a generated .c file.

Overrides (environment):
  PYGEARMAN_LIBGEARMAN_PREFIX=/opt/gearman   headers in PREFIX/include, library in PREFIX/lib
  PYGEARMAN_CFLAGS / PYGEARMAN_LDFLAGS       explicit flags (LDFLAGS default: -lgearman)
  PYGEARMAN_COVERAGE=1                       Cython line tracing (CYTHON_TRACE_NOGIL)
  PYGEARMAN_STRIP=1                          strip the built extension's debug info before it is
                                             packaged (wheels: scripts/wheel-build.sh and
                                             [tool.cibuildwheel] set it): `strip --strip-debug`,
                                             on macOS `strip -x`; $STRIP names another strip
"""
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext
from setuptools.errors import PlatformError

PYX = "src/pygearman/_libgearman.pyx"
EXT_NAME = "pygearman._libgearman"
PKG_NAMES = ("gearmand", "libgearman")  # Debian/upstream name first, then a few other distros'
# Where the header lands when libgearman is installed without a .pc file (or pkg-config is missing).
HEADER_DIRS = ("/usr/include", "/usr/local/include")
INSTALL_HINT = (
    "libgearman was not found. Install its development package:\n"
    "  Debian/Ubuntu: apt-get install libgearman-dev pkg-config\n"
    "  Fedora/EL (EPEL): dnf install libgearman-devel pkgconf-pkg-config\n"
    "  macOS: brew install gearman\n"
    "or point the build at another prefix with PYGEARMAN_LIBGEARMAN_PREFIX=/opt/gearman\n"
    "(or set PYGEARMAN_CFLAGS / PYGEARMAN_LDFLAGS explicitly)."
)
CYTHON_DIRECTIVES = {
    "language_level": "3",
    "embedsignature": True,
    # Compiled functions become cyfunctions (with __code__, __defaults__, __annotations__), so
    # inspect.signature(), help() and Sphinx autodoc work on them. Cost, measured with callgrind
    # over 3000 do_background calls: none per call (_submit's own code is unchanged, and calling
    # it takes ~15 instructions in the cyfunction's vectorcall instead of ~48 in CPython's
    # method_descriptor); importing the module takes ~0.16M more instructions (of ~600M).
    "binding": True,
    "boundscheck": False,
    "wraparound": False,
}


def _pkg_config(*args):
    for name in PKG_NAMES:
        try:
            out = subprocess.run(["pkg-config", *args, name], check=True,
                                 capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError):
            continue
        return shlex.split(out)
    return None


def libgearman_flags():
    """(cflags, ldflags) for libgearman; raises PlatformError with INSTALL_HINT if not found."""
    prefix = os.environ.get("PYGEARMAN_LIBGEARMAN_PREFIX")
    cflags = os.environ.get("PYGEARMAN_CFLAGS")
    ldflags = os.environ.get("PYGEARMAN_LDFLAGS")
    if cflags is not None or ldflags is not None:
        return shlex.split(cflags or ""), shlex.split(ldflags or "-lgearman")
    if prefix:
        return ([f"-I{prefix}/include"],
                [f"-L{prefix}/lib", f"-Wl,-rpath,{prefix}/lib", "-lgearman"])
    c = _pkg_config("--cflags")
    l = _pkg_config("--libs")
    if c is not None and l is not None:
        return c, l
    if any(os.path.exists(os.path.join(d, "libgearman-1.0", "gearman.h")) for d in HEADER_DIRS):
        return [], ["-lgearman"]
    raise PlatformError(INSTALL_HINT)


class build_ext(_build_ext):
    """setuptools' build_ext that first finds libgearman and cythonizes _libgearman.pyx."""

    def run(self):
        for ext in self.extensions or ():
            if ext.name == EXT_NAME and not getattr(ext, "_pygearman_prepared", False):
                self._prepare(ext)
                ext._pygearman_prepared = True
        super().run()

    def build_extension(self, ext):
        super().build_extension(ext)
        if ext.name == EXT_NAME and os.environ.get("PYGEARMAN_STRIP", "0") not in ("", "0"):
            self._strip(self.get_ext_fullpath(ext.name))

    def _strip(self, path):
        """Drop the debug info (most of the file's size) before the wheel is packed, so RECORD
        and any later repair (auditwheel, delocate) see the stripped file."""
        strip = shlex.split(os.environ.get("STRIP") or "strip")
        cmd = strip + (["-x"] if sys.platform == "darwin" else ["--strip-debug"]) + [path]
        before = os.path.getsize(path)
        try:
            subprocess.run(cmd, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise PlatformError(f"PYGEARMAN_STRIP is set but {shlex.join(cmd)} failed: "
                                f"{e}") from None
        print(f"stripped {path}: {before} -> {os.path.getsize(path)} bytes", file=sys.stderr)

    def _prepare(self, ext):
        """Add libgearman's flags to ext and replace its .pyx source by the generated .c."""
        try:
            from Cython.Build import cythonize
        except ImportError:
            raise PlatformError("building pygearman needs Cython>=3.1 (pip install 'Cython>=3.1'); "
                                "a PEP 517 frontend (pip, python -m build) installs it "
                                "by itself") from None
        cflags, ldflags = libgearman_flags()
        ext.sources = [PYX]  # setuptools swaps .pyx for .c when it cannot import Cython
        ext.include_dirs += [f[2:] for f in cflags if f.startswith("-I")]
        ext.extra_compile_args += [f for f in cflags if not f.startswith("-I")] + ["-O2"]
        ext.library_dirs += [f[2:] for f in ldflags if f.startswith("-L")]
        ext.libraries += [f[2:] for f in ldflags if f.startswith("-l")]
        ext.extra_link_args += [f for f in ldflags if not f.startswith(("-L", "-l"))]
        if os.environ.get("PYGEARMAN_COVERAGE"):
            ext.define_macros.append(("CYTHON_TRACE_NOGIL", "1"))
        # cythonize returns new Extension objects; keep setuptools' own (finalize_options set
        # private attributes on it) and take only the generated C source.
        (cythonized,) = cythonize([ext], include_path=["src"], force=bool(self.force),
                                  compiler_directives=CYTHON_DIRECTIVES)
        ext.sources = list(cythonized.sources)


setup(
    ext_modules=[Extension(EXT_NAME, [PYX])],
    cmdclass={"build_ext": build_ext},
)

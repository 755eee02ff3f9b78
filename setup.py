"""Build the compiled core: finds libgearman with pkg-config and compiles _libgearman.pyx."""
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup

PKG_NAMES = ("gearmand", "libgearman")  # Debian/upstream name first, then a few other distros'
INSTALL_HINT = (
    "libgearman was not found. Install its development package:\n"
    "  Debian/Ubuntu: apt-get install libgearman-dev pkg-config\n"
    "  Fedora/EL (EPEL): dnf install libgearman-devel pkgconf-pkg-config\n"
    "  macOS: brew install gearman\n"
    "or point the build at another prefix with PYGEARMAN_LIBGEARMAN_PREFIX=/opt/gearman\n"
    "(or set PYGEARMAN_CFLAGS / PYGEARMAN_LDFLAGS explicitly)."
)


def _pkg_config(*args: str) -> list:
    for name in PKG_NAMES:
        try:
            out = subprocess.run(["pkg-config", *args, name], check=True,
                                 capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError):
            continue
        return shlex.split(out)
    return None


def _flags():
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
    if c is None or l is None:
        if os.path.exists("/usr/include/libgearman-1.0/gearman.h"):
            return [], ["-lgearman"]
        sys.exit(INSTALL_HINT)
    return c, l


def extensions():
    from Cython.Build import cythonize

    cflags, ldflags = _flags()
    include_dirs = [f[2:] for f in cflags if f.startswith("-I")]
    extra_compile = [f for f in cflags if not f.startswith("-I")]
    library_dirs = [f[2:] for f in ldflags if f.startswith("-L")]
    libraries = [f[2:] for f in ldflags if f.startswith("-l")]
    extra_link = [f for f in ldflags if not f.startswith(("-L", "-l"))]
    macros = []
    if os.environ.get("PYGEARMAN_COVERAGE"):
        macros.append(("CYTHON_TRACE_NOGIL", "1"))
    ext = Extension(
        "pygearman._libgearman",
        ["src/pygearman/_libgearman.pyx"],
        include_dirs=include_dirs,
        library_dirs=library_dirs,
        libraries=libraries,
        extra_compile_args=extra_compile + ["-O2"],
        extra_link_args=extra_link,
        define_macros=macros,
    )
    return cythonize(
        [ext],
        include_path=["src"],
        compiler_directives={
            "language_level": "3",
            "embedsignature": True,
            "binding": False,
            "boundscheck": False,
            "wraparound": False,
        },
    )


setup(ext_modules=extensions())

"""kill -9 a child process after its n-th successful unlink or rmdir, at the libc call
(an ``LD_PRELOAD`` shim), so the kill tests stop whichever loop removes: the C pass
(``_speedups.clear_tree``) or the Python walk, with no hook in the library.  It also
injects errors there: ``$KILLSHIM_FAULT=NAME:ERRNO:COUNT`` makes the first COUNT
``unlinkat`` calls on an entry named NAME fail with ERRNO (both walks see them).

The child arms it with ``ARM`` then ``_arm(n)`` (n > 0: counting starts at the
call; the n-th removal after it is the last one the process makes).  Nothing is
counted before it is armed, so a test can arm it at a step of its choosing.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["ARM", "SOURCE", "build", "env", "lib"]

SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long armed, count;

/* $KILLSHIM_FAULT = "NAME:ERRNO:COUNT": the first COUNT unlinkat() calls on an entry
   named NAME fail with ERRNO (before the real call: nothing happens). */
static int fault(const char *path)
{
    static int parsed;
    static char name[256];
    static int code;
    static long left;
    if (!parsed) {
        const char *spec = getenv("KILLSHIM_FAULT");
        parsed = 1;
        if (spec == NULL || sscanf(spec, "%255[^:]:%d:%ld", name, &code, &left) != 3)
            left = 0;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (left > 0 && strcmp(base, name) == 0) {
        left--;
        errno = code;
        return 1;
    }
    return 0;
}

void killshim_arm(long n) { count = 0; armed = n; }

static int counted(int r)
{
    if (r == 0 && armed > 0 && ++count >= armed)
        kill(getpid(), SIGKILL);
    return r;
}

int unlinkat(int dirfd, const char *path, int flags)
{
    static int (*real)(int, const char *, int);
    if (!real)
        real = dlsym(RTLD_NEXT, "unlinkat");
    if (fault(path))
        return -1;
    return counted(real(dirfd, path, flags));
}

int unlink(const char *path)
{
    static int (*real)(const char *);
    if (!real)
        real = dlsym(RTLD_NEXT, "unlink");
    return counted(real(path));
}

int rmdir(const char *path)
{
    static int (*real)(const char *);
    if (!real)
        real = dlsym(RTLD_NEXT, "rmdir");
    return counted(real(path));
}
"""

#: The child's preamble: ``_arm(n)`` arms the shim (it is in the process through
#: ``LD_PRELOAD``; ``CDLL(None)`` finds its symbol).
ARM = "import ctypes; _arm = ctypes.CDLL(None).killshim_arm; _arm.argtypes = [ctypes.c_long]\n"


_built: list[Path | None] = []


def lib() -> Path | None:
    """The shim, built once per process into a temporary directory (removed at exit);
    None without a C compiler."""
    if not _built:
        where = Path(tempfile.mkdtemp(prefix="killshim-"))
        atexit.register(shutil.rmtree, where, True)
        _built.append(build(where))
    return _built[0]


def env(**extra: str) -> dict[str, str]:
    """The environment of a child that may arm the shim (``pytest.skip`` without it)."""
    import pytest

    shim = lib()
    if shim is None:
        pytest.skip("no C compiler to build the kill shim")
    return {**os.environ, "LD_PRELOAD": str(shim), **extra}


def build(where: Path) -> Path | None:
    """Compile the shim into ``where``; None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src = where / "killshim.c"
    lib = where / "killshim.so"
    src.write_text(SOURCE)
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", lib, src, "-ldl"], check=True)
    return lib

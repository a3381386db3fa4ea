"""An ``LD_PRELOAD`` shim that swaps a directory named "victim" in the window between a
walk's look at it and its ``openat``: for a symlink to ``$OUTSIDE``, or (``$SWAP=mount``,
root) for a tmpfs mounted on it.  ``build(where)`` compiles it (``pytest.skip``
without a C compiler)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["SOURCE", "build"]

SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static int done;

/* On the first O_DIRECTORY open of "victim" (after a walk's listing or statx, before
   its open): swap it for a symlink to $OUTSIDE (moving it to "victim-moved"), or
   with $SWAP=mount mount a tmpfs on it holding a file "precious" (root only). */
int openat(int dirfd, const char *path, int flags, ...)
{
    static int (*real)(int, const char *, int, ...);
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    if (!real)
        real = dlsym(RTLD_NEXT, "openat");
    if (!done && strcmp(path, "victim") == 0 && (flags & O_DIRECTORY)) {
        done = 1;
        const char *how = getenv("SWAP");
        if (how == NULL || strcmp(how, "symlink") == 0) {
            renameat(dirfd, "victim", dirfd, "victim-moved");
            symlinkat(getenv("OUTSIDE"), dirfd, "victim");
        } else {
            char where[64];
            snprintf(where, sizeof(where), "/proc/self/fd/%d/victim", dirfd);
            if (mount("lsswap", where, "tmpfs", 0, "size=1m") == 0) {
                int fd = real(dirfd, "victim/precious", O_WRONLY | O_CREAT, 0644);
                write(fd, "p", 1);
                close(fd);
            }
        }
    }
    return real(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));
"""


def build(where: Path) -> Path:
    import pytest

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the openat shim")
    lib = where / "swap.so"
    (where / "swap.c").write_text(SOURCE)
    subprocess.run([cc, "-shared", "-fPIC", "-o", lib, where / "swap.c", "-ldl"], check=True)
    return lib

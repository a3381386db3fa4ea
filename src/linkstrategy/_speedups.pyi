"""Types of the optional C extension (``_speedups.c``): place()'s per-file loop without the GIL."""

HARDLINK: int
REFLINK: int
COPY: int
#: errnos meaning "copy primitive not available": equal to _errors.COPY_GIVEUP
GIVEUP: tuple[int, ...]

def place_files(
    strategy: int,
    src_dir_fd: int,
    dst_dir_fd: int,
    names: list[str],
    start: int,
    umask: int,
    xattrs: bool,
    fsync: bool,
    copy_file_range: bool,
    times: bool = ...,
    /,
) -> tuple[int, int, bool, list[tuple[int, int, int]]]: ...

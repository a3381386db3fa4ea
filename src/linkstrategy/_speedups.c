/*
 * linkstrategy._speedups: place()'s per-file loop in C, run without the GIL.
 *
 * Optional.  place() works the same without it (the pure-Python loop in
 * _place.py); with it, the workers of one place() call really run in parallel
 * instead of taking turns at the GIL between two syscalls.
 *
 * Only the common case is done here: regular files written under their final
 * names into a directory this run created (still hidden under a temporary
 * name), by one strategy.  At the first file that does not go plainly -- any
 * error at all, a source with extended attributes, a sparse file, a setuid or
 * setgid file, a name that already exists --
 * the loop stops, removes what it created for that file, and
 * returns its index.  The caller then places that one file through the Python
 * path, which owns every decision about errors (the errno classes in
 * _errors.py), fallbacks and warnings, and calls back in for the rest.  So
 * there is exactly one copy of the policy, and this file only has to be
 * correct for the plain case.
 *
 * place_files(strategy, src_dir_fd, dst_dir_fd, names, start, umask,
 *             xattrs, fsync, copy_file_range[, times])
 *             -> (next, bytes, copy_file_range, linked)
 *
 *   strategy         0 hardlink, 1 reflink (FICLONE), 2 copy
 *   names            list of str or bytes (file names, no "/")
 *   start            index of the first name to place
 *   umask            the process umask: modes it would strip are set with fchmod
 *   xattrs           stop at a source with extended attributes (Python copies them)
 *   fsync            fsync each file before closing it
 *   copy_file_range  try copy_file_range first (copy only)
 *   times            give clones and copies the source's atime and mtime (default true)
 *
 *   next             index of the first name not placed (len(names) when all were)
 *   bytes            data cloned or written (a hardlink adds nothing)
 *   copy_file_range  False once copy_file_range refused this pair of files
 *   linked           [(index, st_dev, st_ino)] of the files placed whose source has
 *                    more than one link: the Python side keeps hard links within the
 *                    placed tree (a later name of the same inode becomes a link)
 *
 * Clones and copies: open the source O_NOFOLLOW, fstat it (it must still be a
 * regular file), create the destination O_CREAT|O_EXCL|O_NOFOLLOW with the
 * source's mode, clone or copy, fchmod when the umask took bits away, futimens
 * with the source's times (nanoseconds), close.  The same syscalls, in the same
 * order, as _place._write_file.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
/* The stable ABI of Python 3.10 (setup.py defines it too): one abi3 build serves every
 * CPython >= 3.10.  Only functions of the limited API below, no macros reaching into
 * objects (PyList_GET_ITEM, PyBytes_AS_STRING, ...). */
#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x030A0000
#endif
#include <Python.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif

enum { HARDLINK = 0, REFLINK = 1, COPY = 2 };

#define CHUNK ((size_t)1 << 30)
#define RW_CHUNK (1 << 20)
#define SPARSE_SLACK 65536 /* as in _place._write_file: holes worth keeping */

/* A directory's entries read with getdents64 into a buffer of our own: what
   fdopendir()/readdir() do, without the fstat and two fcntl calls fdopendir makes
   for every directory (three syscalls of about ten per directory in the walks).
   ds_fdopen takes fd (opened O_DIRECTORY|O_CLOEXEC by the caller) only when it
   succeeds; ds_read returns NULL at the end (errno 0) or on an error (errno set);
   an entry stays valid until the next ds_read of its stream. */
struct ds_ent {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

struct dstream {
    int fd;
    size_t pos, end;
    char buf[32768];
};

static struct dstream *ds_fdopen(int fd)
{
    struct dstream *s = malloc(sizeof(*s));
    if (s == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    s->fd = fd;
    s->pos = s->end = 0;
    return s;
}

static struct ds_ent *ds_read(struct dstream *s)
{
    if (s->pos >= s->end) {
        long n = syscall(SYS_getdents64, s->fd, s->buf, sizeof(s->buf));
        if (n <= 0) {
            if (n == 0)
                errno = 0;
            return NULL;
        }
        s->pos = 0;
        s->end = (size_t)n;
    }
    struct ds_ent *e = (struct ds_ent *)(s->buf + s->pos);
    s->pos += e->d_reclen;
    return e;
}

static int ds_fd(const struct dstream *s)
{
    return s->fd;
}

static void ds_close(struct dstream *s)
{
    close(s->fd);
    free(s);
}

/* copy_file_range/sendfile not available for this pair: try the next primitive
   (exported as GIVEUP: the same set as _errors.COPY_GIVEUP; 524 is the kernel's ENOTSUPP). */
static int giveup(int e)
{
    return e == EXDEV || e == EOPNOTSUPP || e == ENOSYS || e == EPERM || e == EINVAL ||
           e == ENOTSUP || e == 524;
}

/* Copy the data of sfd to dfd (both at offset 0).  *done: the bytes written.
   0 on success, -1 on error.  st_size is only a hint: /proc files say 0 and
   /sys files 4096 whatever they hold, so a short or empty copy ends in read/write
   to EOF (one read(2) for an empty file). */
static int copy_data(int sfd, int dfd, off_t size, int *cfr, long long *written)
{
    off_t done = 0;
    ssize_t n;
    *written = 0;

    if (*cfr) {
        while (done < size) {
            size_t want = (size_t)(size - done) < CHUNK ? (size_t)(size - done) : CHUNK;
            n = copy_file_range(sfd, NULL, dfd, NULL, want, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (done == 0 && giveup(errno)) {
                    *cfr = 0;
                    break;
                }
                return -1;
            }
            if (n == 0) /* EOF: the file shrank */
                break;
            done += n;
        }
        if (done >= size && done > 0 && *cfr) {
            *written = done;
            return 0;
        }
    }
    if (done < size) {
        int started = done > 0;
        int sendfile_ok = 1;
        while (done < size) {
            size_t want = (size_t)(size - done) < CHUNK ? (size_t)(size - done) : CHUNK;
            n = sendfile(dfd, sfd, NULL, want);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (!started && giveup(errno)) {
                    sendfile_ok = 0;
                    break;
                }
                return -1;
            }
            if (n == 0)
                break;
            started = 1;
            done += n;
        }
        if (sendfile_ok && done >= size && done > 0) {
            *written = done;
            return 0;
        }
    }
    /* read/write to EOF (the file may have grown; size is only a hint) */
    {
        char *buf = malloc(RW_CHUNK);
        int rc = -1;
        if (buf == NULL)
            return -1;
        for (;;) {
            ssize_t r = read(sfd, buf, RW_CHUNK);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                break;
            }
            if (r == 0) {
                rc = 0;
                *written = done;
                break;
            }
            done += r;
            char *p = buf;
            while (r > 0) {
                ssize_t w = write(dfd, p, (size_t)r);
                if (w < 0) {
                    if (errno == EINTR)
                        continue;
                    goto out;
                }
                p += w;
                r -= w;
            }
        }
    out:
        free(buf);
        return rc;
    }
}

/* A placed file whose source has other links: (index, st_dev, st_ino) for Python. */
struct link_rec {
    Py_ssize_t index;
    long long dev;
    long long ino;
};

/* Place one file.  0 placed; -1 not placed, nothing left behind for it. */
static int place_one(int strategy, int sdir, int ddir, const char *name, mode_t umask_,
                     int xattrs, int do_fsync, int times_, int *cfr, long long *bytes,
                     int *linked, long long *ldev, long long *lino)
{
    struct stat st;
    int sfd, dfd;

    if (strategy == HARDLINK)
        return linkat(sdir, name, ddir, name, 0) == 0 ? 0 : -1;

    sfd = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC); /* a FIFO swapped in must not block */
    if (sfd < 0)
        return -1;
    if (fstat(sfd, &st) != 0 || !S_ISREG(st.st_mode))
        goto fail_src;
    if (xattrs) {
        ssize_t x = flistxattr(sfd, NULL, 0);
        if (x > 0 || (x < 0 && errno != ENOTSUP && errno != EOPNOTSUPP))
            goto fail_src;
    }
    if (strategy == COPY && (long long)st.st_blocks * 512 < (long long)st.st_size - SPARSE_SLACK)
        goto fail_src; /* has holes: the Python path keeps them */
    if (st.st_mode & (S_ISUID | S_ISGID))
        goto fail_src; /* setuid/setgid: the Python path decides whether they may stay */
    if (st.st_nlink > 1) { /* reported: the Python side keeps links within the tree */
        *linked = 1;
        *ldev = (long long)st.st_dev;
        *lino = (long long)st.st_ino;
    }

    mode_t mode = st.st_mode & 07777;
    dfd = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (dfd < 0)
        goto fail_src;
    long long written = st.st_size;
    if (strategy == REFLINK) {
        if (ioctl(dfd, FICLONE, sfd) != 0)
            goto fail_dst;
    } else if (copy_data(sfd, dfd, st.st_size, cfr, &written) != 0) {
        goto fail_dst;
    }
    if ((mode & umask_) && fchmod(dfd, mode) != 0)
        goto fail_dst;
    if (times_) {
        struct timespec times[2] = {st.st_atim, st.st_mtim};
        if (futimens(dfd, times) != 0)
            goto fail_dst;
    }
    if (do_fsync && fsync(dfd) != 0)
        goto fail_dst;
    if (close(dfd) != 0) { /* NFS reports write-back errors here */
        unlinkat(ddir, name, 0);
        goto fail_src;
    }
    close(sfd);
    *bytes += written;
    return 0;

fail_dst:
    close(dfd);
    unlinkat(ddir, name, 0);
fail_src:
    close(sfd);
    return -1;
}

static PyObject *place_files(PyObject *self, PyObject *args)
{
    int strategy, sdir, ddir, umask_, xattrs, do_fsync, cfr, times_ = 1;
    PyObject *names, *item;
    Py_ssize_t start, n, i, k;
    long long bytes = 0;
    PyObject **enc = NULL;
    const char **paths = NULL;
    struct link_rec *links = NULL;
    Py_ssize_t nlinks = 0;
    PyObject *linked_list = NULL, *result;

    (void)self;
    if (!PyArg_ParseTuple(args, "iiiO!nippp|p", &strategy, &sdir, &ddir, &PyList_Type, &names,
                          &start, &umask_, &xattrs, &do_fsync, &cfr, &times_))
        return NULL;
    if (strategy < HARDLINK || strategy > COPY) {
        PyErr_Format(PyExc_ValueError, "unknown strategy %d", strategy);
        return NULL;
    }
    n = PyList_Size(names);
    if (n < 0)
        return NULL;
    if (start < 0 || start > n) {
        PyErr_SetString(PyExc_IndexError, "start out of range");
        return NULL;
    }
    enc = PyMem_Calloc((size_t)(n - start) + 1, sizeof(PyObject *));
    paths = PyMem_Calloc((size_t)(n - start) + 1, sizeof(const char *));
    if (enc == NULL || paths == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    /* Limited API: function calls, not the PyList_GET_ITEM/PyBytes_AS_STRING macros.
     * PyList_GetItem checks the index (a name's __fspath__ may shrink the list), and
     * every char * is taken here, with the GIL held, not inside the loop below. */
    for (k = 0; k < n - start; k++) {
        item = PyList_GetItem(names, start + k); /* borrowed: held while its __fspath__ runs */
        if (item == NULL)
            goto error;
        Py_INCREF(item);
        if (!PyUnicode_FSConverter(item, &enc[k]) || (paths[k] = PyBytes_AsString(enc[k])) == NULL) {
            Py_DECREF(item);
            goto error;
        }
        if (strchr(paths[k], '/') != NULL) {
            PyErr_Format(PyExc_ValueError, "not a file name: %R", item);
            Py_DECREF(item);
            goto error;
        }
        Py_DECREF(item);
    }

    links = PyMem_Calloc((size_t)(n - start) + 1, sizeof(*links));
    if (links == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < n - start; i++) {
        int linked = 0;
        long long ldev = 0, lino = 0;
        if (place_one(strategy, sdir, ddir, paths[i], (mode_t)umask_, xattrs, do_fsync, times_,
                      &cfr, &bytes, &linked, &ldev, &lino) != 0)
            break;
        if (linked) {
            links[nlinks].index = start + i;
            links[nlinks].dev = ldev;
            links[nlinks].ino = lino;
            nlinks++;
        }
    }
    Py_END_ALLOW_THREADS

    linked_list = PyList_New(0);
    for (k = 0; linked_list != NULL && k < nlinks; k++) {
        PyObject *t = Py_BuildValue("(nLL)", links[k].index, links[k].dev, links[k].ino);
        if (t == NULL || PyList_Append(linked_list, t) != 0) {
            Py_XDECREF(t);
            Py_CLEAR(linked_list);
            break;
        }
        Py_DECREF(t);
    }
    PyMem_Free(links);
    links = NULL;

    for (k = 0; k < n - start; k++)
        Py_XDECREF(enc[k]);
    PyMem_Free(enc);
    PyMem_Free(paths);
    if (linked_list == NULL)
        return NULL;
    result = Py_BuildValue("nLON", start + i, bytes, cfr ? Py_True : Py_False, linked_list);
    return result;

error:
    PyMem_Free(links);
    if (enc != NULL)
        for (k = 0; k < n - start; k++)
            Py_XDECREF(enc[k]);
    PyMem_Free(enc);
    PyMem_Free(paths);
    return NULL;
}

/* ---------------------------------------------------------------------------------
 * place_tree: a whole new directory tree in one call.
 *
 * place_tree(strategy, src_dir_fd, dst_dir_fd, umask, xattrs, fsync, copy_file_range,
 *            times, max_depth[, listed[, report_placed | (prefix, tails)[, hungry,
 *            give[, frame[, pstrategy]]]]])
 *     -> (files, bytes, copy_file_range, dirs, entries, rest, modes, linked, placed,
 *         privates, xdirs)
 *
 * ``listed`` (place(files=...)): bytes, ``<flag><relative path>\0`` per listed file,
 * sorted by path; only those files are placed ('p') or handed back ('r': a file the
 * caller's copy= policy names), and only the directories above them are made; a
 * listed name that is a directory is handed back (the Python path refuses it).
 * ``pstrategy`` (after ``frame``; REFLINK or COPY, -1 by default): the 'r' files are
 * placed here by it instead -- the first strategy of the policy's chain, never a
 * hardlink -- and counted in ``privates`` (of ``files``); one that does not go
 * plainly is handed back as before, for the chain's fallbacks.
 *
 * dst_dir_fd is a directory this run created and nothing else writes into (below a
 * new directory still hidden under a temporary name).  It gets src_dir_fd's mode as
 * _place._dir_job gives it (the mode | 0700 while it is filled); then the source is
 * read directory by directory from a *board* (see struct board): every regular file
 * placed by place_one() as it is read, every subdirectory put on the board as it is
 * found, and the subdirectory found last taken next -- made then (its source opened
 * O_NOFOLLOW first, mkdirat with its permission bits | 0700, then opened O_NOFOLLOW,
 * its parent held open until that is done) and
 * read the same way.  What is not plain is handed back, never decided here:
 *
 *   rest    ["rel/name"] entries not placed: symlinks, special files, files
 *           place_one() refused (any error, xattrs, holes, setuid...), a subdirectory
 *           that was swapped for something else between the listing and its open
 *           (its new directory is removed again), and subdirectories max_depth
 *           levels down (not made: the caller makes them and calls again).  The
 *           Python path places each, with every decision about errors and fallbacks.
 *   modes   [("rel", mode)] directories whose own mode lacks owner rwx: the caller
 *           gives them their mode when the tree is complete (as _dir_job records).
 *   xdirs   ["rel"] directories whose source has extended attributes (with xattrs:
 *           a directory's ACL guards what is in it): the caller copies them when the
 *           tree is complete, before the modes.
 *   linked  [("rel/name", st_dev, st_ino)] files placed whose source has more links.
 *   placed  ["rel/name"] every file placed, when report_placed is true (the caller's
 *           copy= policy has no file list to go by: it looks at these afterwards);
 *           when it is (prefix, tails) -- bytes, a tuple of bytes -- only those whose
 *           path from the source root, prefix + "rel/name", ends in one of the tails
 *           (the policy's literal tails: it can say yes to no other).
 *   files, bytes, dirs (directories made, counting dst_dir_fd), entries (files,
 *           symlinks and special files seen, and listed names handed back: the
 *           caller's "discovered", and with ``listed`` how it finds a missing one).
 *
 * hungry, give, frame (all three optional): idle workers join the walk.  ``hungry``
 * is a flag() the caller's pool keeps up while one of its threads could take a job
 * and none is queued.  A walk that sees it while a subdirectory waits on its board
 * (or, with none, after GIVE_AFTER entries of its own since it last gave: a big flat
 * directory) calls give(capsule) (taking the GIL); the caller queues a job, ahead of
 * the others, that calls place_tree again with ``frame=capsule`` (src_dir_fd and
 * dst_dir_fd then unused), and that walk takes its work from the same board.  A
 * walk that clones or copies gives its board once as it starts, whatever the flag
 * says, so that in a batch the next free thread joins it rather than start another
 * package (a hardlink walk does not: a Python job costs more than linking a
 * directory's files; measured, 20 % slower).  So the threads of a run work
 * on neighbouring directories, made in the order they are worked on, as
 * bench/floor.c's do: on XFS they then wait least on each other's
 * allocation-group locks.  A walk with nothing to take for JOIN_AFTER_NS reads a
 * directory another walk is reading, in turns under its lock (a big flat one); when
 * no directory is being read, or none is left to join, it returns.  Nothing is handed over whole: a capsule
 * never taken loses nothing (the walks on the board do its work) and frees the
 * board when it is freed.  Every walk's paths are relative to the first walk's
 * directories; a joining walk does not count them or set their modes again.  What
 * give() raises stops the walk, and is raised here.
 *
 * The board holds at most max_depth directories open (two fds each): a walk that
 * would open one more hands the subdirectory back instead (the caller places it
 * with a walk of its own).  One walk alone never does (it goes depth first); walks
 * far apart in the tree may.  An error on a directory itself (reading the source,
 * mkdirat, opening the new directory, fchmod, fsync) stops the walk, and the other
 * walks of its board take nothing more; it raises OSError with the relative path;
 * everything made so far is below the caller's hidden directory, which its
 * rollback removes.  Paths are relative to the call's directories ("" for
 * themselves).
 * ------------------------------------------------------------------------------- */

enum { REC_REST = 0, REC_MODE = 1, REC_LINKED = 2, REC_PLACED = 3, REC_XDIR = 4 };

struct rec {
    int kind;
    char *path;
    long long a, b;
};

struct recs {
    struct rec *v;
    size_t n, cap;
};

static int recs_add(struct recs *r, int kind, const char *path, size_t len, long long a,
                    long long b)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        struct rec *v = realloc(r->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        r->v = v;
        r->cap = cap;
    }
    char *p = malloc(len + 1);
    if (p == NULL)
        return -1;
    memcpy(p, path, len);
    p[len] = '\0';
    r->v[r->n].kind = kind;
    r->v[r->n].path = p;
    r->v[r->n].a = a;
    r->v[r->n].b = b;
    r->n++;
    return 0;
}

static void recs_free(struct recs *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].path);
    free(r->v);
}

/* A copy= policy's literal tails (a tuple of bytes, held by the caller for the call):
   no path that ends otherwise can match the policy. */
struct tails {
    const char **s;
    Py_ssize_t *n;
    Py_ssize_t count; /* -1: no tails (every path is a candidate) */
};

/* ``tuple`` (of bytes) into ``t``; -1 with an exception set.  tails_free() either way. */
static int tails_parse(PyObject *tuple, struct tails *t)
{
    if (!PyTuple_Check(tuple)) {
        PyErr_SetString(PyExc_TypeError, "tails must be a tuple of bytes");
        return -1;
    }
    t->count = PyTuple_Size(tuple);
    t->s = PyMem_Calloc((size_t)t->count + 1, sizeof(*t->s));
    t->n = PyMem_Calloc((size_t)t->count + 1, sizeof(*t->n));
    if (t->s == NULL || t->n == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < t->count; i++) {
        char *b;
        if (PyBytes_AsStringAndSize(PyTuple_GetItem(tuple, i), &b, &t->n[i]) != 0)
            return -1;
        t->s[i] = b;
    }
    return 0;
}

static void tails_free(struct tails *t)
{
    PyMem_Free(t->s);
    PyMem_Free(t->n);
}

/* Does ``prefix`` + ``path`` end in one of the tails (true without tails)?  A tail may
   reach back from the path into the prefix. */
static int ends_in_tail(const struct tails *t, const char *prefix, size_t plen, const char *path,
                        size_t len)
{
    if (t->count < 0)
        return 1;
    for (Py_ssize_t i = 0; i < t->count; i++) {
        size_t k = (size_t)t->n[i];
        const char *tail = t->s[i];
        if (k <= len) {
            if (memcmp(path + len - k, tail, k) == 0)
                return 1;
        } else if (k - len <= plen && memcmp(path, tail + (k - len), len) == 0 &&
                   memcmp(prefix + plen - (k - len), tail, k - len) == 0) {
            return 1; /* the tail reaches back into the prefix */
        }
    }
    return 0;
}

/* The walks of one new tree work from one board (see place_tree): a stack of the
   subdirectories found and not yet taken, and the directories being read.  A walk
   takes the subdirectory found last, makes it and reads it; it reads another
   walk's directory with it only when there is nothing to take.  So the walks work
   on neighbouring directories, made in the order they are worked on, as
   bench/floor.c's threads do: on XFS they then wait least on each other's
   allocation-group locks (README, Speed). */

/* A directory of the board: its source stream, read in turns under ``mu``, and its
   new destination directory.  Closed by the last walk or unit to let it go (and
   fsynced then, with fsync, once every entry of it is placed). */
struct node {
    pthread_mutex_t mu;
    struct dstream *sd;
    int dfd;
    int refs;                 /* under the board's mu: its readers and its units */
    int done;                 /* under mu: its stream is read to the end (or failed) */
    int depth;                /* 0: the board's root */
    struct node *prev, *next; /* in the board's list of directories still being read */
    size_t len;               /* its path, relative to the board's root */
    char path[];
};

/* A subdirectory found and not yet made: whichever walk takes it makes it. */
struct unit {
    struct node *parent;
    size_t len;
    char path[]; /* its name after the parent's path and a "/" (none at the root) */
};

struct board {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct unit **units; /* a stack: the one found last is taken first */
    size_t n, cap;
    struct node *reading; /* the directories whose stream is not read to the end */
    int active;           /* walks at work on a directory */
    int waiting;          /* walks waiting for work */
    int refs;             /* walks on the board, and capsules not yet taken */
    int open;             /* directories open (two fds each): at most max_depth */
    int max_depth, sync;
    int stop; /* a walk failed: the others take nothing more */
};

struct walk {
    int strategy, xattrs, do_fsync, times_, cfr;
    int pstrategy; /* for the files flagged 'r' (copy=): never HARDLINK; -1: hand them back */
    mode_t umask_;
    long long files, bytes, dirs, entries;
    long long privates; /* of ``files``, placed by pstrategy */
    struct recs recs;
    int err;          /* errno of the error that stopped the walk, 0 if none */
    char *err_path;   /* its relative path */
    /* The caller's file list (place(files=...)), or nallow < 0 for "everything":
       sorted relative paths, each with its flag ('p' place, 'r' hand back). */
    Py_ssize_t nallow;
    const char **allow;
    char *flags;
    int report_placed; /* list the files placed (the caller's copy= policy looks) */
    /* ... only those whose path from the source root (rprefix + path) ends in one of
       the policy's literal tails, when it has them */
    const char *rprefix;
    Py_ssize_t rprefix_len;
    struct tails rtails;
    /* Joining (see place_tree): *hungry is set by the caller's pool while a worker
       has nothing to do; give(capsule) queues a job that joins this board. */
    int *hungry;
    PyObject *give;
    long long kept;       /* ``entries`` when this walk began or last gave */
    PyObject *pyerr[3];   /* what give() raised: the walk stopped */
};

/* A board for another call of place_tree (the capsule's pointer): NULL once that
   call took it. */
struct gift {
    struct board *b;
};

static void walk_fail(struct walk *w, const char *path, size_t len)
{
    if (w->err)
        return;
    w->err = errno ? errno : EIO;
    w->err_path = malloc(len + 1);
    if (w->err_path != NULL) {
        memcpy(w->err_path, path, len);
        w->err_path[len] = '\0';
    }
}

/* Append "/name" (or "name" at the top) to the path buffer; the new length. */
static size_t path_push(char *buf, size_t len, const char *name)
{
    size_t n = strlen(name);
    if (len) {
        buf[len] = '/';
        memcpy(buf + len + 1, name, n + 1);
        return len + 1 + n;
    }
    memcpy(buf, name, n + 1);
    return n;
}

/* With no subdirectory waiting, a walk gives only after this many entries of its own
   since it began or last gave (a big flat directory, read in turns): a hand-off
   costs a Python job (tens of microseconds). */
#define GIVE_AFTER 32
/* A walk with nothing to take waits this long for a subdirectory before it reads
   a directory another walk is reading (a big flat one): two walks in one
   directory wait on each other's locks, two in neighbouring ones do not. */
#define JOIN_AFTER_NS 100000L

static const char GIFT[] = "linkstrategy._speedups.board";
static const char FLAG[] = "linkstrategy._speedups.flag"; /* place_tree's hungry: flag() */

static void board_wake(struct board *b) /* under b->mu */
{
    if (b->waiting)
        pthread_cond_broadcast(&b->cv);
}

static void reading_unlink(struct board *b, struct node *nd) /* under b->mu */
{
    if (nd->prev != NULL)
        nd->prev->next = nd->next;
    else if (b->reading == nd)
        b->reading = nd->next;
    else
        return; /* not in the list */
    if (nd->next != NULL)
        nd->next->prev = nd->prev;
    nd->prev = nd->next = NULL;
}

/* Let go of a directory; the last holder closes it, after an fsync of it when the
   board asks for it and every entry of it is placed (a failed fsync fails ``w``). */
static void node_release(struct walk *w, struct board *b, struct node *nd)
{
    pthread_mutex_lock(&b->mu);
    int last = --nd->refs == 0;
    if (last) {
        reading_unlink(b, nd);
        b->open--;
    }
    int sync = b->sync && !b->stop;
    pthread_mutex_unlock(&b->mu);
    if (!last)
        return;
    if (sync && nd->done && fsync(nd->dfd) != 0 && w != NULL)
        walk_fail(w, nd->path, nd->len);
    ds_close(nd->sd);
    close(nd->dfd);
    pthread_mutex_destroy(&nd->mu);
    free(nd);
}

/* A new directory of the board, open on both sides (its fds are the node's, and
   the caller counted it in b->open), in the list of those being read, held once
   (by the walk that opened it).  NULL (errno set) when out of memory; the fds are
   then the caller's. */
static struct node *node_new(struct board *b, struct dstream *sd, int dfd, int depth,
                             const char *path, size_t len)
{
    struct node *nd = malloc(sizeof(*nd) + len + 1);
    if (nd == NULL || pthread_mutex_init(&nd->mu, NULL) != 0) {
        free(nd);
        errno = ENOMEM;
        return NULL;
    }
    nd->sd = sd;
    nd->dfd = dfd;
    nd->refs = 1;
    nd->done = 0;
    nd->depth = depth;
    nd->len = len;
    memcpy(nd->path, path, len);
    nd->path[len] = '\0';
    pthread_mutex_lock(&b->mu);
    nd->prev = NULL;
    nd->next = b->reading;
    if (b->reading != NULL)
        b->reading->prev = nd;
    b->reading = nd;
    board_wake(b);
    pthread_mutex_unlock(&b->mu);
    return nd;
}

static struct board *board_new(int max_depth, int sync)
{
    struct board *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b);
        return NULL;
    }
    pthread_condattr_t ca;
    int ok = pthread_condattr_init(&ca) == 0;
    ok = ok && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
         pthread_cond_init(&b->cv, &ca) == 0;
    pthread_condattr_destroy(&ca);
    if (!ok) {
        pthread_mutex_destroy(&b->mu);
        free(b);
        return NULL;
    }
    b->refs = 1;
    b->max_depth = max_depth;
    b->sync = sync;
    return b;
}

/* Let go of the board; the last holder frees it, with the subdirectories still on
   it (a walk failed: nobody makes them). */
static void board_release(struct board *b)
{
    pthread_mutex_lock(&b->mu);
    int last = --b->refs == 0;
    pthread_mutex_unlock(&b->mu);
    if (!last)
        return;
    while (b->n > 0) {
        struct unit *u = b->units[--b->n];
        node_release(NULL, b, u->parent);
        free(u);
    }
    free(b->units);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

static void gift_free(PyObject *cap)
{
    struct gift *g = PyCapsule_GetPointer(cap, GIFT);
    if (g == NULL) {
        PyErr_Clear();
        return;
    }
    if (g->b != NULL) /* never taken: its job was skipped (the run failed) */
        board_release(g->b);
    free(g);
}

/* Index of ``path`` in the file list, -1 if it is not listed. */
static Py_ssize_t allow_find(const struct walk *w, const char *path)
{
    Py_ssize_t lo = 0, hi = w->nallow;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        int c = strcmp(w->allow[mid], path);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Is anything listed below the directory ``path`` (``path/...``)?  The buffer holds
   room for one more byte after ``len``. */
static int allow_below(const struct walk *w, char *path, size_t len)
{
    Py_ssize_t lo = 0, hi = w->nallow;
    char saved = path[len + 1];
    path[len] = '/';
    path[len + 1] = '\0';
    while (lo < hi) { /* the first entry >= "path/" */
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (strcmp(w->allow[mid], path) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    int below = lo < w->nallow && strncmp(w->allow[lo], path, len + 1) == 0;
    path[len] = '\0';
    path[len + 1] = saved;
    return below;
}

/* Give the new directory dfd the mode of its source sfd (st_mode smode), as _dir_job
   does for a hidden one; a source with extended attributes (an ACL) is handed back for
   the caller to copy them when the tree is complete. */
static int dir_mode(struct walk *w, int sfd, mode_t smode, int dfd, const char *rel, size_t len)
{
    mode_t mode = smode & 07777;
    if (mode != (0777 & ~w->umask_) && fchmod(dfd, mode | 0700) != 0)
        return -1;
    if ((mode & 0700) != 0700 && recs_add(&w->recs, REC_MODE, rel, len, (long long)mode, 0) != 0)
        return -1;
    if (w->xattrs && flistxattr(sfd, NULL, 0) > 0 &&
        recs_add(&w->recs, REC_XDIR, rel, len, 0, 0) != 0)
        return -1;
    return 0;
}

/* A worker of the caller's pool has nothing to do (*w->hungry): give it the board
   (give(capsule): the caller queues a job that joins it).  0, or -1 when give()
   raised (the walk stops; the caller re-raises). */
static int give_board(struct walk *w, struct board *b)
{
    w->kept = w->entries;
    struct gift *g = malloc(sizeof(*g));
    if (g == NULL)
        return 0; /* then the walks on it do it alone */
    pthread_mutex_lock(&b->mu);
    b->refs++; /* the capsule's */
    pthread_mutex_unlock(&b->mu);
    g->b = b;
    __atomic_store_n(w->hungry, 0, __ATOMIC_RELAXED);
    PyGILState_STATE gil = PyGILState_Ensure();
    int ret = 0;
    PyObject *cap = PyCapsule_New(g, GIFT, gift_free);
    if (cap == NULL) {
        board_release(b); /* still held by this walk */
        free(g);
        PyErr_Clear();
    } else {
        PyObject *r = PyObject_CallFunctionObjArgs(w->give, cap, NULL);
        Py_DECREF(cap);
        if (r == NULL) {
            PyErr_Fetch(&w->pyerr[0], &w->pyerr[1], &w->pyerr[2]);
            ret = -1;
        }
        Py_XDECREF(r);
    }
    PyGILState_Release(gil);
    return ret;
}

/* The next entry of a directory: its name (copied into ``buf``) and type, 1; 0 at
   the end; -1 on an error (errno set).  Either way but 1 the directory is done. */
static int node_next(struct node *nd, unsigned char *type, char *buf)
{
    pthread_mutex_lock(&nd->mu);
    errno = 0;
    struct ds_ent *ent = nd->done ? NULL : ds_read(nd->sd);
    int r;
    if (ent != NULL) {
        memcpy(buf, ent->d_name, strlen(ent->d_name) + 1);
        *type = ent->d_type;
        r = 1;
    } else {
        r = errno != 0 ? -1 : 0;
        nd->done = 1; /* an error too: the walk that met it reports it */
    }
    int e = errno;
    pthread_mutex_unlock(&nd->mu);
    errno = e;
    return r;
}

/* Put a subdirectory found on the board (its path in ``path``, ``len`` long). */
static int board_push(struct board *b, struct node *parent, const char *path, size_t len)
{
    struct unit *u = malloc(sizeof(*u) + len + 1);
    if (u == NULL)
        return -1;
    u->parent = parent;
    u->len = len;
    memcpy(u->path, path, len + 1);
    pthread_mutex_lock(&b->mu);
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        struct unit **units = realloc(b->units, cap * sizeof(*units));
        if (units == NULL) {
            pthread_mutex_unlock(&b->mu);
            free(u);
            return -1;
        }
        b->units = units;
        b->cap = cap;
    }
    b->units[b->n++] = u;
    parent->refs++;
    board_wake(b);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

/* Make and open the subdirectory of a unit taken from the board: the new node
   (held by this walk), or NULL when it was handed back or the walk failed.  The
   unit is freed and lets its parent go. */
static struct node *unit_open(struct walk *w, struct board *b, struct unit *u)
{
    struct node *p = u->parent, *nd = NULL;
    const char *name = u->path + (p->len ? p->len + 1 : 0);
    int psfd = ds_fd(p->sd);
    pthread_mutex_lock(&b->mu);
    int full = b->open >= b->max_depth;
    b->open += !full; /* taken before the fds are: walks opening at once stay within */
    pthread_mutex_unlock(&b->mu);
    if (full) { /* at the fd bound (walks far apart): the caller makes it, in a walk of its own */
        if (recs_add(&w->recs, REC_REST, u->path, u->len, 0, 0) != 0) {
            errno = ENOMEM;
            walk_fail(w, u->path, u->len);
        }
        goto out;
    }
    int csfd = openat(psfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (csfd < 0) {
        /* swapped for a symlink or a file since the listing, or gone: the Python
           path looks at it */
        if (recs_add(&w->recs, REC_REST, u->path, u->len, 0, 0) != 0)
            walk_fail(w, u->path, u->len);
        goto out;
    }
    /* Made with the source's permission bits (and owner rwx, to fill it): a private
       directory is private from its mkdir on -- made 0777 and given its mode later,
       another user could open it in between and list its names through that fd. */
    struct stat sst;
    if (fstat(csfd, &sst) != 0 || mkdirat(p->dfd, name, (sst.st_mode & 0777) | 0700) != 0) {
        walk_fail(w, u->path, u->len);
        close(csfd);
        goto out;
    }
    int cdfd = openat(p->dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct dstream *csd = cdfd < 0 ? NULL : ds_fdopen(csfd);
    if (csd == NULL || dir_mode(w, csfd, sst.st_mode, cdfd, u->path, u->len) != 0 ||
        (nd = node_new(b, csd, cdfd, p->depth + 1, u->path, u->len)) == NULL) {
        walk_fail(w, u->path, u->len);
        if (csd != NULL)
            ds_close(csd);
        else
            close(csfd);
        if (cdfd >= 0)
            close(cdfd);
        goto out;
    }
    w->dirs++;
out:
    if (nd == NULL && !full) {
        pthread_mutex_lock(&b->mu);
        b->open--;
        pthread_mutex_unlock(&b->mu);
    }
    node_release(w, b, p);
    free(u);
    return nd;
}

/* Read a directory of the board (alone or in turns with other walks): place each
   regular file, put each subdirectory on the board, hand back the rest.  0, or -1
   when the walk must stop (its error recorded). */
static int node_read(struct walk *w, struct board *b, struct node *nd, char *path)
{
    char name[NAME_MAX + 1];
    unsigned char type;
    int sfd = ds_fd(nd->sd);
    memcpy(path, nd->path, nd->len + 1);
    for (;;) {
        if (w->hungry != NULL && __atomic_load_n(w->hungry, __ATOMIC_RELAXED) &&
            (__atomic_load_n(&b->n, __ATOMIC_RELAXED) > 0 || w->entries - w->kept >= GIVE_AFTER) &&
            give_board(w, b) != 0)
            return -1;
        if (__atomic_load_n(&b->stop, __ATOMIC_RELAXED))
            return 0;
        int got = node_next(nd, &type, name);
        if (got < 0) {
            walk_fail(w, nd->path, nd->len);
            return -1;
        }
        if (got == 0) {
            pthread_mutex_lock(&b->mu);
            reading_unlink(b, nd);
            pthread_mutex_unlock(&b->mu);
            return 0;
        }
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
            continue;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                type = DT_UNKNOWN; /* gone or unreadable: the Python path says which */
            else if (S_ISDIR(st.st_mode))
                type = DT_DIR;
            else if (S_ISREG(st.st_mode))
                type = DT_REG;
            else
                type = DT_LNK; /* anything else: handed back */
        }
        size_t len = path_push(path, nd->len, name);
        int hand_back = 0, private_ = 0;
        if (w->nallow >= 0) { /* only what the list names, and the directories above it */
            Py_ssize_t k = allow_find(w, path);
            if (type == DT_DIR && k < 0 && !allow_below(w, path, len)) {
                path[nd->len] = '\0';
                continue;
            }
            if (type != DT_DIR && k < 0) {
                path[nd->len] = '\0';
                continue;
            }
            if (k >= 0) { /* a listed name: 'r' as asked, and a directory for Python to refuse */
                hand_back = w->flags[k] != 'p' || type == DT_DIR;
                if (hand_back && type == DT_REG && w->pstrategy >= 0) {
                    hand_back = 0; /* placed here by the policy's own strategy */
                    private_ = 1;
                }
            }
        }
        int r = 0;
        if (hand_back) {
            w->entries++;
            r = recs_add(&w->recs, REC_REST, path, len, 0, 0);
        } else if (type == DT_REG) {
            int linked = 0;
            long long ldev = 0, lino = 0;
            w->entries++;
            if (place_one(private_ ? w->pstrategy : w->strategy, sfd, nd->dfd, name, w->umask_,
                          w->xattrs, w->do_fsync, w->times_, &w->cfr, &w->bytes, &linked, &ldev,
                          &lino) == 0) {
                w->files++;
                w->privates += private_;
                if (linked)
                    r = recs_add(&w->recs, REC_LINKED, path, len, ldev, lino);
                if (r == 0 && w->report_placed &&
                    ends_in_tail(&w->rtails, w->rprefix, (size_t)w->rprefix_len, path, len))
                    r = recs_add(&w->recs, REC_PLACED, path, len, 0, 0);
            } else {
                r = recs_add(&w->recs, REC_REST, path, len, 0, 0);
            }
        } else if (type == DT_DIR) {
            if (nd->depth + 1 >= b->max_depth) /* not made: the caller makes it, in a walk of its own */
                r = recs_add(&w->recs, REC_REST, path, len, 0, 0);
            else
                r = board_push(b, nd, path, len);
        } else {
            w->entries++;
            r = recs_add(&w->recs, REC_REST, path, len, 0, 0);
        }
        if (r != 0) {
            errno = ENOMEM;
            walk_fail(w, path, len);
            return -1;
        }
        path[nd->len] = '\0';
    }
}

/* Wait for work on the board: a subdirectory to take (the one found last) or, with
   none for JOIN_AFTER_NS, a directory another walk is reading.  0 when there is no
   more for this walk (the board is done or stopped, or there was nothing to join);
   else 1, *u or *nd set, and the walk counted active. */
static int board_take(struct board *b, struct unit **u, struct node **nd)
{
    struct timespec until;
    int got = 0;
    pthread_mutex_lock(&b->mu);
    for (int waited = 0;;) {
        if (b->stop)
            break;
        if (b->n > 0) {
            *u = b->units[--b->n];
            got = 1;
            break;
        }
        if (waited && b->reading != NULL) {
            *nd = b->reading;
            (*nd)->refs++;
            got = 1;
            break;
        }
        /* nothing left; or nothing being read, so nothing more can come but from a
           subdirectory another walk is opening; or nothing for JOIN_AFTER_NS: this
           walk goes, its thread free for the caller's other jobs (the walks at work
           give again if they find more) */
        if (b->active == 0 || b->reading == NULL || waited)
            break;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += JOIN_AFTER_NS;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        b->waiting++;
        waited = pthread_cond_timedwait(&b->cv, &b->mu, &until) == ETIMEDOUT || waited;
        b->waiting--;
    }
    b->active += got;
    pthread_mutex_unlock(&b->mu);
    return got;
}

/* One walk's share of a board, until the board is done: ``nd``, the directory it
   starts in (held, and the walk counted active), or NULL to join. */
static void board_walk(struct walk *w, struct board *b, struct node *nd)
{
    char *path = malloc((size_t)(b->max_depth + 1) * 257 + 1);
    if (path == NULL) {
        errno = ENOMEM;
        walk_fail(w, "", 0);
    }
    if (nd == NULL) {
        pthread_mutex_lock(&b->mu);
        b->active++;
        pthread_mutex_unlock(&b->mu);
    }
    for (;;) {
        if (nd != NULL) {
            if (path != NULL && w->pyerr[0] == NULL)
                node_read(w, b, nd, path);
            node_release(w, b, nd);
        }
        nd = NULL;
        int failed = w->err != 0 || w->pyerr[0] != NULL;
        pthread_mutex_lock(&b->mu);
        b->active--;
        if (failed)
            __atomic_store_n(&b->stop, 1, __ATOMIC_RELAXED);
        if (failed || b->active == 0)
            board_wake(b);
        pthread_mutex_unlock(&b->mu);
        struct unit *u = NULL;
        if (failed || !board_take(b, &u, &nd))
            break;
        if (u != NULL)
            nd = unit_open(w, b, u);
    }
    free(path);
}

/* A board for a new walk: the new directory dst_dir_fd (its mode set) to be filled
   from src_dir_fd.  *root is its root, held by the caller, who counts as active on
   it.  NULL when that failed (the walk's error set). */
static struct board *board_start(struct walk *w, int src_dir_fd, int dst_dir_fd, int max_depth,
                                 struct node **root)
{
    struct board *b = board_new(max_depth, w->do_fsync);
    if (b == NULL) {
        errno = ENOMEM;
        walk_fail(w, "", 0);
        return NULL;
    }
    int sfd = fcntl(src_dir_fd, F_DUPFD_CLOEXEC, 0);
    int dfd = sfd < 0 ? -1 : fcntl(dst_dir_fd, F_DUPFD_CLOEXEC, 0);
    struct stat sst;
    struct dstream *sd = dfd < 0 || fstat(sfd, &sst) != 0 ? NULL : ds_fdopen(sfd);
    if (sd == NULL || dir_mode(w, sfd, sst.st_mode, dfd, "", 0) != 0 ||
        (*root = node_new(b, sd, dfd, 0, "", 0)) == NULL) {
        walk_fail(w, "", 0);
        if (sd != NULL)
            ds_close(sd);
        else if (sfd >= 0)
            close(sfd);
        if (dfd >= 0)
            close(dfd);
        board_release(b);
        return NULL;
    }
    w->dirs++;
    b->open = 1;
    b->active = 1; /* this walk, at work on the root (nobody else sees the board yet) */
    return b;
}

/* ---------------------------------------------------------------------------------
 * clear_tree(dir_fd, dev, mnt_id, max_depth) -> (removed, left)
 *
 * remove()'s fast pass on a local filesystem (_tree.Run.clear_tree): empty the
 * directory open at dir_fd, depth first, without the GIL.  Only the plain case is
 * done here.  Whatever does not go plainly stays where it is, counted in ``left``,
 * for the Python walk that runs next and owns every decision (the errno classes of
 * _errors.remove_action, permissions, busy and silly-renamed files, mounts, the
 * report): so there is one copy of the policy, and this has to be right only for
 * the plain case.
 *
 *   - Every entry of a directory is read before any is unlinked.
 *   - A non-directory goes by one unlinkat(); any error but ENOENT leaves it.
 *   - A directory is entered only when statx (AT_SYMLINK_NOFOLLOW, AT_NO_AUTOMOUNT)
 *     says it is a directory on device ``dev``, on mount ``mnt_id`` (-1: unknown),
 *     and not a mount root; it is opened O_NOFOLLOW relative to its parent's fd and
 *     must still be the inode statx saw (swapped in between: left).
 *   - At most 1 + max_depth directory fds are open besides dir_fd (its own
 *     reopened one, one a level below); deeper directories are left for the
 *     Python walk and its bounded fds.
 *   - A directory goes (unlinkat AT_REMOVEDIR) only when nothing was left in it.
 *
 * removed: what went, counted as the Python walk counts (files but not
 * silly-renamed names, and directories).  left: entries of dir_fd itself that
 * stay (0: it is empty as far as this pass saw).
 * --------------------------------------------------------------------------------- */

struct names {
    char *v;
    size_t len, cap;
};

static int names_add(struct names *b, const char *name)
{
    size_t n = strlen(name) + 1;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *v = realloc(b->v, cap);
        if (v == NULL)
            return -1;
        b->v = v;
        b->cap = cap;
    }
    memcpy(b->v + b->len, name, n);
    b->len += n;
    return 0;
}

static int hex_run(const char *s, int n, int upper)
{
    for (int i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
              (upper && ch >= 'A' && ch <= 'F')))
            return 0;
    }
    return 1;
}

/* _tree._SILLY: ".nfs" + 24 hex, ".nfs." + 8 hex + "." + 4 hex, ".fuse_hidden" + 16 hex */
static int is_silly(const char *name)
{
    size_t n = strlen(name);
    if (n == 28 && strncmp(name, ".nfs", 4) == 0 && hex_run(name + 4, 24, 1))
        return 1;
    if (n == 18 && strncmp(name, ".nfs.", 5) == 0 && hex_run(name + 5, 8, 0) && name[13] == '.' &&
        hex_run(name + 14, 4, 0))
        return 1;
    return n == 28 && strncmp(name, ".fuse_hidden", 12) == 0 && hex_run(name + 12, 16, 0);
}

struct cframe {
    struct dstream *d;
    struct names subs; /* its subdirectories, NUL-separated */
    size_t pos;        /* the next one to enter */
    long long left;    /* entries that stay in it */
};

struct clear {
    dev_t dev;
    long long mnt_id;
    long long removed;
    struct names files;
    int nomem;
};

/* Read every entry of f: directories into f->subs, the rest unlinked. */
static void clear_scan(struct clear *c, struct cframe *f)
{
    int fd = ds_fd(f->d);
    c->files.len = 0;
    f->subs.len = 0;
    f->pos = 0;
    f->left = 0;
    for (;;) {
        struct ds_ent *ent;
        errno = 0;
        ent = ds_read(f->d);
        if (ent == NULL) {
            if (errno != 0)
                f->left++; /* the Python walk lists it again and reports */
            break;
        }
        const char *name = ent->d_name;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
            continue;
        unsigned char type = ent->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno != ENOENT)
                    f->left++;
                continue;
            }
            type = S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
        }
        if (names_add(type == DT_DIR ? &f->subs : &c->files, name) != 0) {
            c->nomem = 1;
            f->left++;
            break;
        }
    }
    for (size_t k = 0; k < c->files.len;) {
        const char *name = c->files.v + k;
        k += strlen(name) + 1;
        if (unlinkat(fd, name, 0) == 0) {
            if (!is_silly(name))
                c->removed++;
        } else if (errno != ENOENT) {
            f->left++;
        }
    }
}

/* Open subdirectory ``name`` of pfd for emptying: 1 (in *out), 0 gone, -1 leave it. */
static int clear_open(struct clear *c, int pfd, const char *name, struct dstream **out)
{
    struct statx sx;
    struct stat st;
    if (statx(pfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
              STATX_TYPE | STATX_INO | STATX_MNT_ID, &sx) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(sx.stx_mode) || makedev(sx.stx_dev_major, sx.stx_dev_minor) != c->dev)
        return -1;
    if ((sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
        return -1;
    if (c->mnt_id >= 0 && (sx.stx_mask & STATX_MNT_ID) && (long long)sx.stx_mnt_id != c->mnt_id)
        return -1;
    int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    if (fstat(fd, &st) != 0 || st.st_dev != c->dev || st.st_ino != sx.stx_ino) {
        close(fd);
        return -1;
    }
    *out = ds_fdopen(fd);
    if (*out == NULL) {
        close(fd);
        return -1;
    }
    return 1;
}

/* The walk; returns the top's ``left``. */
static long long clear_walk(struct clear *c, int top_fd, int max_depth)
{
    struct cframe *stack = calloc((size_t)max_depth + 1, sizeof(*stack));
    long long left = 1;
    int depth = 0;
    if (stack == NULL) {
        c->nomem = 1;
        return left;
    }
    /* its own open file description: reading must not move the caller's offset */
    int fd = openat(top_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    stack[0].d = fd < 0 ? NULL : ds_fdopen(fd);
    if (stack[0].d == NULL) {
        if (fd >= 0)
            close(fd);
        goto out;
    }
    clear_scan(c, &stack[0]);
    while (depth >= 0) {
        struct cframe *f = &stack[depth];
        if (c->nomem && f->pos < f->subs.len) {
            f->left++;
            f->pos = f->subs.len;
        }
        if (f->pos < f->subs.len) {
            const char *name = f->subs.v + f->pos;
            struct dstream *d = NULL;
            int r = depth < max_depth ? clear_open(c, ds_fd(f->d), name, &d) : -1;
            if (r <= 0) {
                f->left += r < 0;
                f->pos += strlen(name) + 1;
                continue;
            }
            depth++;
            stack[depth].d = d;
            clear_scan(c, &stack[depth]);
            continue;
        }
        ds_close(f->d);
        f->d = NULL;
        if (depth == 0) {
            left = f->left;
            break;
        }
        struct cframe *p = &stack[depth - 1];
        const char *name = p->subs.v + p->pos;
        if (f->left != 0)
            p->left++;
        else if (unlinkat(ds_fd(p->d), name, AT_REMOVEDIR) == 0)
            c->removed++;
        else if (errno != ENOENT)
            p->left++;
        p->pos += strlen(name) + 1;
        depth--;
    }
out:
    for (int i = 0; i <= max_depth; i++) {
        if (stack[i].d != NULL)
            ds_close(stack[i].d);
        free(stack[i].subs.v);
    }
    free(stack);
    free(c->files.v);
    return left;
}

static PyObject *clear_tree(PyObject *self, PyObject *args)
{
    int fd, max_depth;
    unsigned long long dev;
    long long mnt_id, left;
    struct clear c;

    (void)self;
    if (!PyArg_ParseTuple(args, "iKLi", &fd, &dev, &mnt_id, &max_depth))
        return NULL;
    if (max_depth < 0 || max_depth > 64) {
        PyErr_SetString(PyExc_ValueError, "max_depth must be 0..64");
        return NULL;
    }
    memset(&c, 0, sizeof(c));
    c.dev = (dev_t)dev;
    c.mnt_id = mnt_id;
    Py_BEGIN_ALLOW_THREADS
    left = clear_walk(&c, fd, max_depth);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("LL", c.removed, left);
}

static PyObject *recs_list(struct recs *r, int kind)
{
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list != NULL && i < r->n; i++) {
        PyObject *t;
        if (r->v[i].kind != kind)
            continue;
        if (kind == REC_REST || kind == REC_PLACED || kind == REC_XDIR)
            t = PyUnicode_DecodeFSDefault(r->v[i].path);
        else if (kind == REC_MODE)
            t = Py_BuildValue("(NL)", PyUnicode_DecodeFSDefault(r->v[i].path), r->v[i].a);
        else
            t = Py_BuildValue("(NLL)", PyUnicode_DecodeFSDefault(r->v[i].path), r->v[i].a,
                              r->v[i].b);
        if (t == NULL || PyList_Append(list, t) != 0) {
            Py_XDECREF(t);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(t);
    }
    return list;
}

static PyObject *place_tree(PyObject *self, PyObject *args)
{
    int strategy, sdir, ddir, umask_, max_depth;
    struct walk w;
    PyObject *rest = NULL, *modes = NULL, *linked = NULL, *placed = NULL, *xdirs = NULL;
    PyObject *result = NULL;
    PyObject *listed = Py_None, *report = Py_False, *hungry = Py_None, *give = Py_None;
    PyObject *resume = Py_None;
    int pstrategy = -1;
    struct gift *gift = NULL;
    struct board *joined = NULL;

    (void)self;
    memset(&w, 0, sizeof(w));
    w.nallow = -1;
    w.rtails.count = -1;
    if (!PyArg_ParseTuple(args, "iiiippppi|OOOOOi", &strategy, &sdir, &ddir, &umask_, &w.xattrs,
                          &w.do_fsync, &w.cfr, &w.times_, &max_depth, &listed, &report,
                          &hungry, &give, &resume, &pstrategy))
        return NULL;
    if (pstrategy != -1 && pstrategy != REFLINK && pstrategy != COPY) {
        PyErr_Format(PyExc_ValueError, "private strategy must be REFLINK, COPY or -1, not %d",
                     pstrategy);
        return NULL;
    }
    w.pstrategy = pstrategy;
    if (hungry != Py_None) {
        w.hungry = PyCapsule_GetPointer(hungry, FLAG);
        if (w.hungry == NULL)
            return NULL;
        if (!PyCallable_Check(give)) {
            PyErr_SetString(PyExc_TypeError, "give must be callable");
            return NULL;
        }
        w.give = give;
    }
    if (resume != Py_None) {
        gift = PyCapsule_GetPointer(resume, GIFT);
        if (gift == NULL)
            return NULL;
        if (gift->b == NULL) {
            PyErr_SetString(PyExc_ValueError, "this board was taken already");
            return NULL;
        }
    }
    if (PyTuple_Check(report)) {
        /* (prefix, tails): bytes, and a tuple of bytes; all held by the caller's frame */
        PyObject *prefix, *tails;
        char *b;
        if (!PyArg_ParseTuple(report, "SO", &prefix, &tails) ||
            PyBytes_AsStringAndSize(prefix, &b, &w.rprefix_len) != 0)
            return NULL;
        w.rprefix = b;
        if (tails_parse(tails, &w.rtails) != 0)
            goto done;
        w.report_placed = 1;
    } else {
        w.report_placed = PyObject_IsTrue(report);
        if (w.report_placed < 0)
            return NULL;
    }
    if (listed != Py_None) {
        /* b"<flag><path>\0<flag><path>\0...", sorted by path: parsed in place (the
           bytes object is held by the caller's frame for the whole call) */
        char *buf;
        Py_ssize_t size, n = 0, k;
        if (PyBytes_AsStringAndSize(listed, &buf, &size) != 0)
            goto done;
        for (k = 0; k < size; k++)
            n += buf[k] == '\0';
        w.allow = PyMem_Calloc((size_t)n + 1, sizeof(*w.allow));
        w.flags = PyMem_Calloc((size_t)n + 1, 1);
        if (w.allow == NULL || w.flags == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (k = 0, n = 0; k < size; n++) {
            w.flags[n] = buf[k];
            w.allow[n] = buf + k + 1;
            k += (Py_ssize_t)strlen(buf + k) + 1;
            if (n > 0 && strcmp(w.allow[n - 1], w.allow[n]) >= 0) {
                PyErr_SetString(PyExc_ValueError, "the file list must be sorted and unique");
                goto done;
            }
        }
        w.nallow = n;
    }
    if (strategy < HARDLINK || strategy > COPY) {
        PyErr_Format(PyExc_ValueError, "unknown strategy %d", strategy);
        goto done;
    }
    if (max_depth < 1 || max_depth > 64) {
        PyErr_SetString(PyExc_ValueError, "max_depth must be 1..64");
        goto done;
    }
    w.strategy = strategy;
    w.umask_ = (mode_t)umask_;
    if (gift != NULL) { /* taken: this call lets it go */
        joined = gift->b;
        gift->b = NULL;
    }

    struct board *board = joined;
    struct node *root = NULL;
    if (board == NULL) {
        /* a few syscalls with the GIL held: a walk that clones or copies gives its
           board away as it starts, while it holds the GIL anyway, so that the job is
           queued before another thread looks for its next one (waiting for the GIL
           later, it was queued after that thread had started another package) */
        board = board_start(&w, sdir, ddir, max_depth, &root);
        if (board != NULL && w.hungry != NULL && strategy != HARDLINK)
            give_board(&w, board); /* what it raised stops the walk (below) */
    }
    Py_BEGIN_ALLOW_THREADS
    if (board != NULL) {
        board_walk(&w, board, root);
        board_release(board);
    }
    Py_END_ALLOW_THREADS

    if (w.pyerr[0] != NULL) {
        PyErr_Restore(w.pyerr[0], w.pyerr[1], w.pyerr[2]);
        goto done;
    }
    if (w.err) {
        errno = w.err;
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, w.err_path != NULL ? w.err_path : "");
        goto done;
    }
    rest = recs_list(&w.recs, REC_REST);
    modes = rest == NULL ? NULL : recs_list(&w.recs, REC_MODE);
    linked = modes == NULL ? NULL : recs_list(&w.recs, REC_LINKED);
    placed = linked == NULL ? NULL : recs_list(&w.recs, REC_PLACED);
    xdirs = placed == NULL ? NULL : recs_list(&w.recs, REC_XDIR);
    if (xdirs != NULL)
        result = Py_BuildValue("LLOLLOOOOLO", w.files, w.bytes, w.cfr ? Py_True : Py_False,
                               w.dirs, w.entries, rest, modes, linked, placed, w.privates, xdirs);
done:
    Py_XDECREF(xdirs);
    Py_XDECREF(rest);
    Py_XDECREF(modes);
    Py_XDECREF(linked);
    Py_XDECREF(placed);
    free(w.err_path);
    recs_free(&w.recs);
    PyMem_Free(w.allow);
    PyMem_Free(w.flags);
    tails_free(&w.rtails);
    return result;
}

/* ---------------------------------------------------------------------------------
 * file_list and file_blob: a caller's file list (place(files=<RECORD paths>)) for the
 * C walk, without Python work per path.
 *
 * file_list(files) -> list[bytes] | str | None
 *     ``files``: a list of str (os.PathLike items go through os.fspath).  Each entry
 *     checked and cleaned exactly as _place._file_rels does it: "." components and
 *     empty ones ("a//b", a trailing "/") dropped; an entry that is empty, absolute,
 *     has a ".." component or a NUL, or is nothing but "." components, is refused.
 *     Returns the entries encoded (os.fsencode), sorted and each once -- what
 *     ``sorted(map(os.fsencode, _file_rels(files, src)))`` gives -- or the first
 *     refused entry (a str: the caller raises InvalidArgument naming it), or None for
 *     an entry this function leaves to the Python path (not a str after os.fspath,
 *     or not encodable): the caller then runs _file_rels on the same list, whose
 *     errors (and their order) are the reference.
 *
 * file_blob(listed, lo, hi, strip, keep, tails) -> bytes
 *     ``listed[lo:hi]`` (sorted bytes paths from file_list, all starting with the same
 *     ``strip`` bytes: a directory's prefix) as place_tree's ``listed`` argument:
 *     ``<flag><path[strip:]>\0`` each, the flag 'r' where ``keep`` (the copy= policy,
 *     or None) says yes for the whole path (decoded, os.fsdecode), else 'p'.  With
 *     ``tails`` (a tuple of bytes) ``keep`` is asked only about paths ending in one of
 *     them (the policy's literal tails: no other path can match).
 * ------------------------------------------------------------------------------- */

/* ``s`` cleaned as _file_rels does: a new bytes object, NULL with *bad set when the
   entry is refused, NULL with an exception set on MemoryError. */
static PyObject *clean_path(const char *s, Py_ssize_t n, int *bad)
{
    if (n == 0 || s[0] == '/' || memchr(s, '\0', (size_t)n) != NULL) {
        *bad = 1;
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return NULL;
    char *o = PyBytes_AsString(out);
    Py_ssize_t len = 0, i = 0;
    while (i < n) {
        Py_ssize_t j = i;
        while (j < n && s[j] != '/')
            j++;
        Py_ssize_t k = j - i;
        if (k == 2 && s[i] == '.' && s[i + 1] == '.') {
            Py_DECREF(out);
            *bad = 1;
            return NULL;
        }
        if (k > 0 && !(k == 1 && s[i] == '.')) {
            if (len > 0)
                o[len++] = '/';
            memcpy(o + len, s + i, (size_t)k);
            len += k;
        }
        i = j + 1;
    }
    if (len == 0) {
        Py_DECREF(out);
        *bad = 1;
        return NULL;
    }
    PyObject *res = PyBytes_FromStringAndSize(o, len);
    Py_DECREF(out);
    return res;
}

/* Nothing for clean_path to do: no NUL, no "/." or "//", no "." or "/" at the start, no
   "/" at the end.  One pass (glibc's memmem took a third of file_list's time). */
static int plain_path(const char *s, Py_ssize_t n)
{
    if (n == 0 || s[0] == '.' || s[0] == '/' || s[n - 1] == '/' || memchr(s, '\0', (size_t)n))
        return 0;
    const char *end = s + n, *p = s;
    while ((p = memchr(p, '/', (size_t)(end - p))) != NULL) {
        p++; /* < end: s[n - 1] is not a '/' */
        if (*p == '.' || *p == '/')
            return 0;
    }
    return 1;
}

static PyObject *file_list(PyObject *self, PyObject *arg)
{
    PyObject *result = NULL, *all = NULL;
    Py_ssize_t n, i, m;

    (void)self;
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "file_list() takes a list");
        return NULL;
    }
    n = PyList_Size(arg);
    all = PyList_New(0); /* every entry, encoded and cleaned */
    if (all == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        PyObject *item = PyList_GetItem(arg, i), *str, *enc;
        if (item == NULL)
            goto done;
        Py_INCREF(item);
        if (PyUnicode_Check(item)) {
            str = item;
        } else { /* a PathLike: its path, or the Python path decides */
            str = PyOS_FSPath(item);
            Py_DECREF(item);
            if (str == NULL || !PyUnicode_Check(str)) {
                PyErr_Clear();
                Py_XDECREF(str);
                Py_INCREF(Py_None);
                result = Py_None;
                goto done;
            }
        }
        enc = PyUnicode_EncodeFSDefault(str);
        if (enc == NULL) { /* not encodable: os.fsencode raises, after _file_rels' checks */
            PyErr_Clear();
            Py_DECREF(str);
            Py_INCREF(Py_None);
            result = Py_None;
            goto done;
        }
        char *s;
        Py_ssize_t len;
        if (PyBytes_AsStringAndSize(enc, &s, &len) != 0) {
            Py_DECREF(enc);
            Py_DECREF(str);
            goto done;
        }
        if (!plain_path(s, len)) {
            int bad = 0;
            PyObject *clean = clean_path(s, len, &bad);
            Py_DECREF(enc);
            if (clean == NULL) {
                if (bad) /* refused: the entry itself, for the error message */
                    result = str;
                else
                    Py_DECREF(str);
                goto done;
            }
            enc = clean;
        }
        Py_DECREF(str);
        int appended = PyList_Append(all, enc);
        Py_DECREF(enc);
        if (appended != 0)
            goto done;
    }
    /* sorted by list.sort (bytes compare as memcmp, then length): a RECORD comes in runs,
       a zip's directory order, which its timsort takes whole (qsort took a third of
       file_list's time on memcmp of long common prefixes) */
    if (PyList_Sort(all) != 0)
        goto done;
    m = PyList_Size(all);
    result = PyList_New(0);
    for (i = 0; result != NULL && i < m; i++) {
        PyObject *it = PyList_GetItem(all, i), *prev = i > 0 ? PyList_GetItem(all, i - 1) : NULL;
        if (prev != NULL && PyBytes_Size(prev) == PyBytes_Size(it) &&
            memcmp(PyBytes_AsString(prev), PyBytes_AsString(it), (size_t)PyBytes_Size(it)) == 0)
            continue; /* listed twice (a RECORD can be sloppy): placed once */
        if (PyList_Append(result, it) != 0)
            Py_CLEAR(result);
    }
done:
    Py_DECREF(all);
    return result;
}

static PyObject *file_blob(PyObject *self, PyObject *args)
{
    PyObject *listed, *keep, *tails, *out = NULL, **held = NULL;
    Py_ssize_t lo, hi, strip, i, size = 0, nheld = 0;
    struct tails t = {NULL, NULL, -1};

    (void)self;
    if (!PyArg_ParseTuple(args, "O!nnnOO", &PyList_Type, &listed, &lo, &hi, &strip, &keep,
                          &tails))
        return NULL;
    if (lo < 0 || hi > PyList_Size(listed) || lo > hi || strip < 0) {
        PyErr_SetString(PyExc_IndexError, "file_blob(): range out of the list");
        return NULL;
    }
    if (keep == Py_None)
        keep = NULL;
    /* without tails: ask keep about every path */
    if (keep != NULL && tails != Py_None && tails_parse(tails, &t) != 0)
        goto done;
    /* the paths held for the call: keep may run any code, the list may change */
    held = PyMem_Calloc((size_t)(hi - lo) + 1, sizeof(*held));
    if (held == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = lo; i < hi; i++) {
        PyObject *p = PyList_GetItem(listed, i);
        char *s;
        Py_ssize_t n;
        if (p == NULL || PyBytes_AsStringAndSize(p, &s, &n) != 0)
            goto done;
        if (n < strip) {
            PyErr_SetString(PyExc_ValueError, "file_blob(): a path shorter than the prefix");
            goto done;
        }
        Py_INCREF(p);
        held[nheld++] = p;
        size += n - strip + 2;
    }
    out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL)
        goto done;
    char *o = PyBytes_AsString(out);
    for (i = 0; i < nheld; i++) {
        char *s;
        Py_ssize_t n;
        char flag = 'p';
        PyBytes_AsStringAndSize(held[i], &s, &n); /* checked above */
        if (keep != NULL && ends_in_tail(&t, "", 0, s, (size_t)n)) { /* the whole path */
            PyObject *path = PyUnicode_DecodeFSDefaultAndSize(s, n);
            PyObject *yes = path == NULL ? NULL : PyObject_CallFunctionObjArgs(keep, path, NULL);
            Py_XDECREF(path);
            int truth = yes == NULL ? -1 : PyObject_IsTrue(yes);
            Py_XDECREF(yes);
            if (truth < 0) {
                Py_CLEAR(out);
                goto done;
            }
            if (truth)
                flag = 'r';
        }
        *o++ = flag;
        memcpy(o, s + strip, (size_t)(n - strip));
        o += n - strip;
        *o++ = '\0';
    }
done:
    for (i = 0; i < nheld; i++)
        Py_DECREF(held[i]);
    PyMem_Free(held);
    tails_free(&t);
    return out;
}

/* A flag the caller's pool sets and a walk reads without the GIL (place_tree's
   ``hungry``): flag() -> capsule, flag_set(capsule, value). */
static void flag_free(PyObject *cap)
{
    void *p = PyCapsule_GetPointer(cap, FLAG);
    if (p == NULL)
        PyErr_Clear();
    free(p);
}

static PyObject *flag(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    int *p = calloc(1, sizeof(int));
    if (p == NULL)
        return PyErr_NoMemory();
    PyObject *cap = PyCapsule_New(p, FLAG, flag_free);
    if (cap == NULL)
        free(p);
    return cap;
}

static PyObject *flag_set(PyObject *self, PyObject *args)
{
    PyObject *cap;
    int value;
    (void)self;
    if (!PyArg_ParseTuple(args, "Op", &cap, &value))
        return NULL;
    int *p = PyCapsule_GetPointer(cap, FLAG);
    if (p == NULL)
        return NULL;
    __atomic_store_n(p, value, __ATOMIC_RELAXED);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"place_files", place_files, METH_VARARGS,
     "place_files(strategy, src_dir_fd, dst_dir_fd, names, start, umask, xattrs, fsync,\n"
     "            copy_file_range, times=True) -> (next, bytes, copy_file_range, linked)\n\n"
     "Place names[start:] from src_dir_fd into dst_dir_fd under the same names, stopping\n"
     "at the first one that does not go plainly (see the comment atop _speedups.c)."},
    {"place_tree", place_tree, METH_VARARGS,
     "place_tree(strategy, src_dir_fd, dst_dir_fd, umask, xattrs, fsync, copy_file_range,\n"
     "           times, max_depth[, listed[, report_placed | (prefix, tails)[, hungry,\n"
     "           give[, frame[, pstrategy]]]]])\n"
     "    -> (files, bytes, copy_file_range, dirs, entries, rest, modes, linked, placed,\n"
     "        privates, xdirs)\n\n"
     "Fill the new directory dst_dir_fd with the tree at src_dir_fd; hand back what is\n"
     "not plain (see the comment above place_tree in _speedups.c)."},
    {"flag", flag, METH_NOARGS, "flag() -> a flag for place_tree's hungry (see flag_set)"},
    {"flag_set", flag_set, METH_VARARGS, "flag_set(flag, value): set it (read without the GIL)"},
    {"clear_tree", clear_tree, METH_VARARGS,
     "clear_tree(dir_fd, dev, mnt_id, max_depth) -> (removed, left)\n\n"
     "remove()'s fast pass: empty the directory at dir_fd where that goes plainly;\n"
     "leave the rest for the Python walk (see the comment above clear_tree in _speedups.c)."},
    {"file_list", file_list, METH_O, "file_list(files) -> sorted clean paths | bad entry | None (see _speedups.c)"},
    {"file_blob", file_blob, METH_VARARGS, "file_blob(listed, lo, hi, strip, keep, tails) -> place_tree's listed"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "linkstrategy._speedups",
    "place()'s and remove()'s loops in C, run without the GIL (optional).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "HARDLINK", HARDLINK) || PyModule_AddIntConstant(m, "REFLINK", REFLINK) ||
        PyModule_AddIntConstant(m, "COPY", COPY)) {
        Py_DECREF(m);
        return NULL;
    }
    /* the errnos giveup() treats as "primitive not available": _errors.COPY_GIVEUP */
    PyObject *giveup_set = Py_BuildValue("(iiiiiii)", EXDEV, EOPNOTSUPP, ENOSYS, EPERM, EINVAL,
                                         ENOTSUP, 524);
    if (giveup_set == NULL || PyModule_AddObject(m, "GIVEUP", giveup_set) != 0) {
        Py_XDECREF(giveup_set);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

/*
 * latencyfs: a passthrough FUSE filesystem that delays every request.
 *
 *   latencyfs BACKING MOUNTPOINT [-f] [-o latency_us=N] [-o max_threads=64]
 *             [-o entry_timeout=S,attr_timeout=S,negative_timeout=S] [other fuse -o options]
 *
 * It emulates a network filesystem (NFS, EFS) for benchmarks: each request the
 * kernel sends sleeps latency_us microseconds in its libfuse worker thread, then
 * does the operation on BACKING + path.  Requests run concurrently (libfuse's
 * multithreaded loop; raise -o max_threads to keep more in flight), so the
 * sleeps overlap like round trips to a server do, and the daemon itself costs
 * next to no CPU.  tests/support/faultfs.py (Python, GIL-bound) is the one for fault
 * injection; this one only adds latency.
 *
 * One sleep per kernel request.  libfuse's high-level layer answers some
 * requests with more than one call into this file:
 *   - CREATE, MKNOD, MKDIR, SYMLINK and LINK call getattr after the operation
 *     to fill the reply (lookup_path() in lib/fuse.c);
 *   - SETATTR calls chmod, chown, truncate and utimens (whichever the request
 *     sets, in that order), then getattr.
 * Those operations, on success, set the thread-local flag `followup`: a
 * later part of the same request (the next setattr-family call, and the
 * closing getattr, which consumes the flag) then does not sleep again.  On
 * failure libfuse stops and calls nothing more, so the flag is cleared.
 * Not covered (two sleeps): MKNOD of a regular file (libfuse turns it into
 * create + getattr + release), and UNLINK/RENAME over a file that is still open
 * and the RELEASE that ends it (libfuse's .fuse_hidden* rename).  Requests that
 * libfuse answers without calling in here (FORGET, INTERRUPT, locks) do not sleep.
 *
 * copy_file_range is left out on purpose: EFS (NFSv4.1) has no server-side
 * copy either, so copies go through READ and WRITE, as they do on faultfs.
 * Directory listings are not READDIRPLUS-filled (also as on faultfs).
 *
 * Build: gcc -O2 -Wall -Wextra $(pkg-config --cflags fuse3) -o latencyfs \
 *            latencyfs.c $(pkg-config --libs fuse3) -lpthread
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <fuse.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static char backing[PATH_MAX];
static struct timespec latency;
static int am_root;
static __thread int followup; /* see the comment at the top */

static void delay(void)
{
	struct timespec left = latency;

	if (left.tv_sec == 0 && left.tv_nsec == 0)
		return;
	while (nanosleep(&left, &left) == -1 && errno == EINTR)
		;
}

/* Return value of an operation that libfuse follows with more calls on success. */
static int then_more(int res)
{
	followup = res == 0;
	return res;
}

/* Sleep unless an earlier call of the same request already did; consumes the flag. */
static void delay_once(void)
{
	if (followup)
		followup = 0;
	else
		delay();
}

static int err(int res)
{
	return res == -1 ? -errno : 0;
}

/* BACKING + path into buf (PATH_MAX bytes); 0 or -ENAMETOOLONG. */
static int full(char *buf, const char *path)
{
	int n = snprintf(buf, PATH_MAX, "%s%s", backing, path);

	return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

/* Declares char var[PATH_MAX] = BACKING + path; returns -ENAMETOOLONG from the caller. */
#define FULL(var, path)                         \
	char var[PATH_MAX];                     \
	do {                                    \
		int full_res = full(var, path); \
		if (full_res)                   \
			return full_res;        \
	} while (0)

/* Created files belong to the caller, not to the daemon's root. */
static int own(const char *p, int fd)
{
	struct fuse_context *ctx = fuse_get_context();

	if (!am_root || (ctx->uid == 0 && ctx->gid == 0))
		return 0;
	return err(fd >= 0 ? fchown(fd, ctx->uid, ctx->gid) : lchown(p, ctx->uid, ctx->gid));
}

static void *lfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	/* Concurrent LOOKUP/READDIR in one directory, as on NFS.  libfuse < 3.16
	 * never tells the kernel (libfuse PR #861), which then serializes them per
	 * directory: cold lookups of many names in one directory do not overlap. */
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* entry/attr/negative_timeout come from -o and are already in cfg. */
	cfg->use_ino = 1;
	cfg->nullpath_ok = 1;
	return NULL;
}

static int lfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	delay_once();
	if (fi)
		return err(fstat(fi->fh, st));
	FULL(p, path);
	return err(lstat(p, st));
}

static int lfs_access(const char *path, int mask)
{
	delay();
	FULL(p, path);
	return err(access(p, mask));
}

static int lfs_readlink(const char *path, char *buf, size_t size)
{
	ssize_t n;

	delay();
	FULL(p, path);
	n = readlink(p, buf, size - 1);
	if (n == -1)
		return -errno;
	buf[n] = '\0';
	return 0;
}

struct dirh {
	DIR *dp;
	struct dirent *entry; /* read but not yet passed to the filler */
	off_t offset;         /* telldir() after the last entry passed */
};

static int lfs_opendir(const char *path, struct fuse_file_info *fi)
{
	struct dirh *d;

	delay();
	FULL(p, path);
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->dp = opendir(p);
	if (!d->dp) {
		int e = errno;

		free(d);
		return -e;
	}
	fi->fh = (uintptr_t)d;
	return 0;
}

static int lfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
		       struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;

	(void)path;
	(void)flags;
	delay();
	if (offset != d->offset) {
		seekdir(d->dp, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	for (;;) {
		struct stat st;
		off_t next;

		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry)
				return -errno;
		}
		next = telldir(d->dp);
		memset(&st, 0, sizeof(st));
		st.st_ino = d->entry->d_ino;
		st.st_mode = DTTOIF(d->entry->d_type);
		if (filler(buf, d->entry->d_name, &st, next, 0))
			return 0; /* reply full: this entry goes first next time */
		d->entry = NULL;
		d->offset = next;
	}
}

static int lfs_releasedir(const char *path, struct fuse_file_info *fi)
{
	struct dirh *d = (struct dirh *)(uintptr_t)fi->fh;

	(void)path;
	delay();
	closedir(d->dp);
	free(d);
	return 0;
}

static int lfs_mknod(const char *path, mode_t mode, dev_t rdev)
{
	int res;

	delay();
	FULL(p, path);
	res = err(S_ISFIFO(mode) ? mkfifo(p, mode) : mknod(p, mode, rdev));
	if (res == 0)
		res = own(p, -1);
	return then_more(res);
}

static int lfs_mkdir(const char *path, mode_t mode)
{
	int res;

	delay();
	FULL(p, path);
	res = err(mkdir(p, mode));
	if (res == 0)
		res = own(p, -1);
	return then_more(res);
}

static int lfs_unlink(const char *path)
{
	delay();
	FULL(p, path);
	return err(unlink(p));
}

static int lfs_rmdir(const char *path)
{
	delay();
	FULL(p, path);
	return err(rmdir(p));
}

static int lfs_symlink(const char *target, const char *path)
{
	int res;

	delay();
	FULL(p, path);
	res = err(symlink(target, p));
	if (res == 0)
		res = own(p, -1);
	return then_more(res);
}

static int lfs_rename(const char *from, const char *to, unsigned int flags)
{
	delay();
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	FULL(pf, from);
	FULL(pt, to);
	return err(renameat2(AT_FDCWD, pf, AT_FDCWD, pt, flags));
}

static int lfs_link(const char *from, const char *to)
{
	delay();
	FULL(pf, from);
	FULL(pt, to);
	return then_more(err(link(pf, pt)));
}

static int lfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	delay_once();
	if (fi)
		return then_more(err(fchmod(fi->fh, mode)));
	FULL(p, path);
	return then_more(err(chmod(p, mode)));
}

static int lfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	delay_once();
	if (fi)
		return then_more(err(fchown(fi->fh, uid, gid)));
	FULL(p, path);
	return then_more(err(lchown(p, uid, gid)));
}

static int lfs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	delay_once();
	if (fi)
		return then_more(err(ftruncate(fi->fh, size)));
	FULL(p, path);
	return then_more(err(truncate(p, size)));
}

static int lfs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	delay_once();
	if (fi)
		return then_more(err(futimens(fi->fh, tv)));
	FULL(p, path);
	return then_more(err(utimensat(AT_FDCWD, p, tv, AT_SYMLINK_NOFOLLOW)));
}

static int lfs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int fd, res;

	delay();
	FULL(p, path);
	fd = open(p, fi->flags, mode);
	if (fd == -1)
		return then_more(-errno);
	res = own(p, fd);
	if (res) {
		close(fd);
		return then_more(res);
	}
	fi->fh = fd;
	return then_more(0);
}

static int lfs_open(const char *path, struct fuse_file_info *fi)
{
	int fd;

	delay();
	FULL(p, path);
	fd = open(p, fi->flags);
	if (fd == -1)
		return -errno;
	fi->fh = fd;
	return 0;
}

static int lfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	ssize_t n;

	(void)path;
	delay();
	n = pread(fi->fh, buf, size, off);
	return n == -1 ? -errno : (int)n;
}

static int lfs_write(const char *path, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	ssize_t n;

	(void)path;
	delay();
	n = pwrite(fi->fh, buf, size, off);
	return n == -1 ? -errno : (int)n;
}

static int lfs_statfs(const char *path, struct statvfs *st)
{
	delay();
	FULL(p, path);
	return err(statvfs(p, st));
}

static int lfs_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	delay();
	/* Reports close() errors of the backing fs (e.g. NFS) without closing fh. */
	return err(close(dup(fi->fh)));
}

static int lfs_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	delay();
	close(fi->fh);
	return 0;
}

static int lfs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	delay();
	return err(datasync ? fdatasync(fi->fh) : fsync(fi->fh));
}

static int lfs_setxattr(const char *path, const char *name, const char *value, size_t size,
			int flags)
{
	delay();
	FULL(p, path);
	return err(lsetxattr(p, name, value, size, flags));
}

static int lfs_getxattr(const char *path, const char *name, char *value, size_t size)
{
	ssize_t n;

	delay();
	FULL(p, path);
	n = lgetxattr(p, name, value, size);
	return n == -1 ? -errno : (int)n;
}

static int lfs_listxattr(const char *path, char *list, size_t size)
{
	ssize_t n;

	delay();
	FULL(p, path);
	n = llistxattr(p, list, size);
	return n == -1 ? -errno : (int)n;
}

static int lfs_removexattr(const char *path, const char *name)
{
	delay();
	FULL(p, path);
	return err(lremovexattr(p, name));
}

static int lfs_fallocate(const char *path, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	(void)path;
	delay();
	return err(fallocate(fi->fh, mode, off, len));
}

static off_t lfs_lseek(const char *path, off_t off, int whence, struct fuse_file_info *fi)
{
	off_t res;

	(void)path;
	delay();
	res = lseek(fi->fh, off, whence);
	return res == -1 ? -errno : res;
}

static const struct fuse_operations lfs_ops = {
	.init = lfs_init,
	.getattr = lfs_getattr,
	.access = lfs_access,
	.readlink = lfs_readlink,
	.opendir = lfs_opendir,
	.readdir = lfs_readdir,
	.releasedir = lfs_releasedir,
	.mknod = lfs_mknod,
	.mkdir = lfs_mkdir,
	.unlink = lfs_unlink,
	.rmdir = lfs_rmdir,
	.symlink = lfs_symlink,
	.rename = lfs_rename,
	.link = lfs_link,
	.chmod = lfs_chmod,
	.chown = lfs_chown,
	.truncate = lfs_truncate,
	.utimens = lfs_utimens,
	.create = lfs_create,
	.open = lfs_open,
	.read = lfs_read,
	.write = lfs_write,
	.statfs = lfs_statfs,
	.flush = lfs_flush,
	.release = lfs_release,
	.fsync = lfs_fsync,
	.setxattr = lfs_setxattr,
	.getxattr = lfs_getxattr,
	.listxattr = lfs_listxattr,
	.removexattr = lfs_removexattr,
	.fallocate = lfs_fallocate,
	.lseek = lfs_lseek,
};

struct options {
	unsigned long latency_us;
	const char *backing;
};

static const struct fuse_opt option_spec[] = {
	{"latency_us=%lu", offsetof(struct options, latency_us), 0},
	FUSE_OPT_END,
};

/* Takes the first non-option argument as BACKING; everything else goes to fuse_main. */
static int take_backing(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct options *o = data;

	(void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT && !o->backing) {
		o->backing = arg;
		return 0;
	}
	return 1;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options o = {0};
	struct stat st;
	int res;

	if (fuse_opt_parse(&args, &o, option_spec, take_backing) == -1)
		return 1;
	if (!o.backing) {
		fprintf(stderr, "usage: %s BACKING MOUNTPOINT [-f] [-o latency_us=N] "
				"[fuse options]\n", argv[0]);
		return 1;
	}
	/* Absolute, since fuse_main chdirs to / when it daemonizes (no -f). */
	if (!realpath(o.backing, backing) || stat(backing, &st) == -1) {
		perror(o.backing);
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "%s: not a directory\n", o.backing);
		return 1;
	}
	if (strcmp(backing, "/") == 0)
		backing[0] = '\0'; /* paths from libfuse start with "/" */
	latency.tv_sec = o.latency_us / 1000000;
	latency.tv_nsec = (long)(o.latency_us % 1000000) * 1000;
	am_root = geteuid() == 0;
	umask(0); /* the kernel has applied the caller's umask to modes already */

	res = fuse_main(args.argc, args.argv, &lfs_ops, NULL);
	fuse_opt_free_args(&args);
	return res;
}

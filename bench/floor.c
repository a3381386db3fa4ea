/*
 * floor: the least work that hardlinks or clones a tree, as a yardstick for place().
 *
 *   gcc -O2 -o /tmp/floor bench/floor.c -lpthread
 *   /tmp/floor SRC DST MODE THREADS      MODE 0: link(2) each file, 1: FICLONE each file,
 *                                        2: FICLONE keeping the source's mode and times
 *                                           (fstat, create with its mode, futimens: the
 *                                           least work for what place() gives a clone)
 *                                        3: as 1, but each thread takes one contiguous
 *                                           slice of the directories in tree order (as
 *                                           many files each) instead of the next one:
 *                                           the same work, spread as place() spread
 *                                           it before its walks shared a board (one
 *                                           thread a package); on XFS the threads
 *                                           then wait more on allocation-group locks
 *                                           (see README, Speed)
 *
 * Walks SRC once (untimed), then, timed: makes every directory of DST in one thread,
 * and links or clones the regular files of each directory on THREADS threads, one
 * directory at a time.  No modes or times (but in MODE 2), xattrs, symlinks, temporary
 * names, error handling or fallbacks: a floor, not a tool.  Prints the seconds.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char **dirs;
static int *nfiles; /* regular files in each directory */
static long totalfiles;
static int ndirs, capdirs, next_dir, mode;
static const char *src, *dst;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void collect(const char *rel)
{
	char p[4096];
	DIR *d;
	struct dirent *e;

	if (ndirs == capdirs) {
		capdirs = capdirs ? 2 * capdirs : 1024;
		dirs = realloc(dirs, capdirs * sizeof(*dirs));
		nfiles = realloc(nfiles, capdirs * sizeof(*nfiles));
	}
	int me = ndirs;
	nfiles[me] = 0;
	dirs[ndirs++] = strdup(rel);
	snprintf(p, sizeof p, "%s/%s", src, rel);
	d = opendir(p);
	while (d && (e = readdir(d))) {
		if (e->d_type == DT_REG) {
			nfiles[me]++;
			totalfiles++;
		}
		if (e->d_type == DT_DIR && strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			char r[4096];
			snprintf(r, sizeof r, "%s/%s", rel, e->d_name);
			collect(r);
		}
	}
	if (d)
		closedir(d);
}

static void one_dir(const char *rel)
{
	char s[4096], d[4096];
	int sfd, dfd;
	DIR *dp;
	struct dirent *e;

	snprintf(s, sizeof s, "%s/%s", src, rel);
	snprintf(d, sizeof d, "%s/%s", dst, rel);
	sfd = open(s, O_RDONLY | O_DIRECTORY);
	dfd = open(d, O_RDONLY | O_DIRECTORY);
	dp = fdopendir(dup(sfd));
	while ((e = readdir(dp))) {
		if (e->d_type != DT_REG)
			continue;
		if (mode == 0) {
			linkat(sfd, e->d_name, dfd, e->d_name, 0);
		} else if (mode == 1 || mode == 3) {
			int a = openat(sfd, e->d_name, O_RDONLY);
			int b = openat(dfd, e->d_name, O_WRONLY | O_CREAT | O_EXCL, 0644);
			ioctl(b, FICLONE, a);
			close(a);
			close(b);
		} else {
			struct stat st;
			int a = openat(sfd, e->d_name, O_RDONLY);
			fstat(a, &st);
			int b = openat(dfd, e->d_name, O_WRONLY | O_CREAT | O_EXCL, st.st_mode & 07777);
			struct timespec times[2] = {st.st_atim, st.st_mtim};
			ioctl(b, FICLONE, a);
			futimens(b, times);
			close(a);
			close(b);
		}
	}
	closedir(dp);
	close(sfd);
	close(dfd);
}

static int nthreads;

static void *worker(void *arg)
{
	if (mode == 3) { /* slice t of nthreads, cut where the files so far reach its share */
		long t = (long)arg, acc = 0;
		int i = 0, lo = -1, hi = ndirs;
		for (; i < ndirs && hi == ndirs; i++) {
			if (lo < 0 && acc * nthreads >= t * totalfiles)
				lo = i;
			if (acc * nthreads >= (t + 1) * totalfiles)
				hi = i;
			acc += nfiles[i];
		}
		for (i = lo < 0 ? ndirs : lo; i < hi; i++)
			one_dir(dirs[i]);
		return NULL;
	}
	for (;;) {
		int i;
		pthread_mutex_lock(&mu);
		i = next_dir++;
		pthread_mutex_unlock(&mu);
		if (i >= ndirs)
			return NULL;
		one_dir(dirs[i]);
	}
}

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	pthread_t th[64];
	int i;

	if (argc != 5) {
		fprintf(stderr, "usage: %s SRC DST MODE(0 link, 1 clone, 2 clone+mode+times, 3 clone in slices) THREADS\n", argv[0]);
		return 2;
	}
	src = argv[1];
	dst = argv[2];
	mode = atoi(argv[3]);
	nthreads = atoi(argv[4]);
	if (nthreads < 1 || nthreads > 64)
		nthreads = 1;
	collect(".");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	mkdir(dst, 0755);
	for (i = 1; i < ndirs; i++) {
		char d[4096];
		snprintf(d, sizeof d, "%s/%s", dst, dirs[i]);
		mkdir(d, 0755);
	}
	for (i = 0; i < nthreads; i++)
		pthread_create(&th[i], NULL, worker, (void *)(long)i);
	for (i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.3f\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}

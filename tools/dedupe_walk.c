/*
 * dedupe_walk.c: the tree walk of `reflinkfs dedupe -r` (dedupe.h,
 * dd_walk_tree), with several threads.
 *
 * Why threads: with the caches cold, a walk is a wait for one directory
 * block or inode at a time; nftw(3) and find(1) wait for each in turn.
 * On a FUSE mount every opendir, readdir and stat is a round trip to the
 * daemon, which has threads to serve several at once.  Four walkers over
 * four copies of /usr/share/doc, caches dropped: XFS on a loop device
 * 0.75-0.86 s for one find against 0.43-0.48 s for four; reflinkfs
 * 5.2-5.6 s against 3.1-3.3 s.
 *
 * What it does, and what stays as nftw(FTW_PHYS [| FTW_MOUNT]) did it:
 * every entry below root is lstat'ed (fstatat AT_SYMLINK_NOFOLLOW on
 * the directory's descriptor): symlinks are never followed; with one_fs
 * an entry on another device than root is not visited (a mount point
 * below root and all under it); paths are root (trailing slashes
 * dropped, as glibc's nftw does) + "/" + name ..., so a --hashfile
 * written by either walk matches.  Directories are queued (last in,
 * first out: depth first, a bounded queue in practice) and taken by
 * DD_WALK_THREADS threads.  The callbacks run one at a time under the
 * walk's lock (all but excluded, which must be safe to call from several
 * threads at once), so the caller's state needs no locking of its own; the
 * order of the calls is not defined.
 *
 * Kernel work per entry is what a cold walk costs (an unchanged
 * --hashfile rerun is this walk and nothing else): an entry the
 * directory says is a directory (d_type) is opened right there,
 * openat(2) on its parent's descriptor, and statx'ed, in place of an
 * fstatat now and an open of its whole path later (a second lookup of
 * every component); its descriptor waits on the stack, up to
 * DD_WALK_MAX_FDS (or a quarter of what RLIMIT_NOFILE leaves beside the
 * descriptors open at the start, dd_fds_left) at once, past that
 * the path as before.  An entry that cannot be opened so (a symlink, no
 * read permission, not a directory after all) is fstatat'ed as before,
 * so what is reported and how is unchanged.  An excluded entry is left
 * alone before any of this (ops->excluded runs first, on the walker's
 * thread); with one_fs a directory is fstatat'ed (AT_NO_AUTOMOUNT) and
 * opened only on root's device, so that -x never opens, and so never
 * triggers, an automount point below.  Directories are read with
 * getdents64(2) into a buffer of the walker's own, not opendir(3)
 * (which adds an fstat and an fcntl per directory).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "dedupe.h"

#define DD_WALK_THREADS 4
#define DD_WALK_MAX_FDS 256             /* directories held open on the stack */
#define DD_WALK_BUF_BYTES 32768         /* getdents64 buffer, as glibc's */

/* a directory not read yet: its path, and its descriptor (-1: open the
 * path when its turn comes) */
struct walk_dir {
	char *path;
	int fd;
};

/* the kernel's struct linux_dirent64 */
struct walk_dirent {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

struct walk {
	const struct dd_walk_ops *ops;
	void *arg;
	dev_t root_dev;
	bool one_fs;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct walk_dir *stack;     /* directories not read yet */
	size_t nstack, cap;
	unsigned nfds, max_fds;     /* descriptors on the stack */
	unsigned busy;              /* walkers reading a directory */
	int err;                    /* first callback error: stop */
};

/* Under w->lock. */
static int push_dir(struct walk *w, char *path, int fd)
{
	if (w->nstack == w->cap) {
		size_t ncap = w->cap ? w->cap * 2 : 64;
		struct walk_dir *n = realloc(w->stack, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		w->stack = n;
		w->cap = ncap;
	}
	w->stack[w->nstack++] = (struct walk_dir){ path, fd };
	pthread_cond_signal(&w->cond);
	return 0;
}

static char *join(const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);
	bool slash = dl > 0 && dir[dl - 1] == '/';
	char *p = malloc(dl + !slash + nl + 1);
	if (!p)
		return NULL;
	memcpy(p, dir, dl);
	if (!slash)
		p[dl++] = '/';
	memcpy(p + dl, name, nl + 1);
	return p;
}

/* Open a directory entry the parent says is a directory: its descriptor,
 * with st's type (a directory) and st_dev, all the walk looks at for a
 * directory, from statx(2) of the descriptor (asking for the type only,
 * so that a FUSE mount answers from the attributes of the lookup); or -1
 * (fstatat it, as any other entry).  Takes one of w->max_fds. */
static int open_subdir(struct walk *w, int dfd, const char *name, struct stat *st)
{
	if (__atomic_add_fetch(&w->nfds, 1, __ATOMIC_RELAXED) >
	    __atomic_load_n(&w->max_fds, __ATOMIC_RELAXED)) {
		__atomic_sub_fetch(&w->nfds, 1, __ATOMIC_RELAXED);
		return -1;
	}
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct statx sx;
	if (fd >= 0 && (statx(fd, "", AT_EMPTY_PATH, STATX_TYPE, &sx) != 0 ||
			!S_ISDIR(sx.stx_mode))) {
		close(fd);
		fd = -1;
	}
	if (fd >= 0) {
		memset(st, 0, sizeof(*st));
		st->st_mode = sx.stx_mode;
		st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
		st->st_ino = sx.stx_ino;
	}
	if (fd < 0)
		__atomic_sub_fetch(&w->nfds, 1, __ATOMIC_RELAXED);
	return fd;
}

static void close_subdir(struct walk *w, int fd)
{
	close(fd);
	__atomic_sub_fetch(&w->nfds, 1, __ATOMIC_RELAXED);
}

/* open(path) of a directory to read; at the open-file limit (EMFILE,
 * ENFILE: the process holds more than the walk counted on) the stack's
 * descriptors are closed (their paths stay), no more are kept, and the
 * open is tried again, waiting for other walkers to close theirs (up to
 * about 2 s).  The descriptor, or -1 with errno. */
static int open_dir_path(struct walk *w, const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	for (int tries = 0; fd < 0 && (errno == EMFILE || errno == ENFILE) && tries < 2000;
	     tries++) {
		pthread_mutex_lock(&w->lock);
		__atomic_store_n(&w->max_fds, 0, __ATOMIC_RELAXED);
		for (size_t i = 0; i < w->nstack; i++)
			if (w->stack[i].fd >= 0) {
				close(w->stack[i].fd);
				w->stack[i].fd = -1;
				__atomic_sub_fetch(&w->nfds, 1, __ATOMIC_RELAXED);
			}
		pthread_mutex_unlock(&w->lock);
		if (tries)
			usleep(1000);
		fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	return fd;
}

/* Read one directory (fd: its descriptor from open_subdir, or -1): its
 * entries to the callbacks, its subdirectories onto the stack.  Called
 * without the lock. */
static void read_dir(struct walk *w, char *path, int fd, char *buf)
{
	bool own_fd = fd >= 0;
	if (fd < 0)
		fd = open_dir_path(w, path);
	if (fd < 0) {
		int e = errno;
		pthread_mutex_lock(&w->lock);
		if (!w->err)
			w->ops->error(w->arg, path, "read directory", e);
		pthread_mutex_unlock(&w->lock);
		return;
	}
	bool stop = false;
	long nread;
	while (!stop && (nread = syscall(SYS_getdents64, fd, buf, DD_WALK_BUF_BYTES)) > 0) {
		for (long off = 0; !stop && off < nread;) {
			const struct walk_dirent *de = (const struct walk_dirent *)(buf + off);
			off += de->d_reclen;
			const char *name = de->d_name;
			if (name[0] == '.' &&
			    (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
				continue;
			char *child = join(path, name);
			struct stat st;
			int serr = 0, cfd = -1;
			if (!child) {
				pthread_mutex_lock(&w->lock);
				w->err = w->err ? w->err : -ENOMEM;
				pthread_mutex_unlock(&w->lock);
				stop = true;
				break;
			}
			/* an excluded entry is neither stat'ed nor opened (with
			 * its subtree): no lookup, no automount */
			if (w->ops->excluded(w->arg, child)) {
				free(child);
				continue;
			}
			bool stated = false;
			if (de->d_type == DT_DIR && w->one_fs) {
				/* -x: a mount point below is left closed (opening an
				 * autofs one would mount it): stat first */
				if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT) != 0)
					serr = errno;
				stated = true;
			}
			if (de->d_type == DT_DIR && !serr &&
			    (!stated || (S_ISDIR(st.st_mode) && st.st_dev == w->root_dev)))
				cfd = open_subdir(w, fd, name, &st);
			if (cfd < 0 && !stated &&
			    fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT) != 0)
				serr = errno;
			pthread_mutex_lock(&w->lock);
			bool keep = false;
			if (w->err != 0) {
				/* another walker failed: drain */
			} else if (serr) {
				w->ops->error(w->arg, child, "stat", serr);
			} else if (w->one_fs && st.st_dev != w->root_dev) {
				/* FTW_MOUNT: another filesystem */
			} else if (S_ISDIR(st.st_mode)) {
				int e = push_dir(w, child, cfd);
				if (e)
					w->err = e;
				else
					keep = true;
			} else {
				int e = w->ops->file(w->arg, child, &st);
				if (e)
					w->err = e;
			}
			stop = w->err != 0;
			pthread_mutex_unlock(&w->lock);
			if (!keep) {
				free(child);
				if (cfd >= 0)
					close_subdir(w, cfd);
			}
		}
	}
	if (!stop && nread < 0) {
		int e = errno;
		pthread_mutex_lock(&w->lock);
		if (!w->err)
			w->ops->error(w->arg, path, "read directory", e);
		pthread_mutex_unlock(&w->lock);
	}
	if (own_fd)
		close_subdir(w, fd);
	else
		close(fd);
}

static void *walker(void *arg)
{
	struct walk *w = arg;
	char *buf = malloc(DD_WALK_BUF_BYTES);
	if (!buf) {
		pthread_mutex_lock(&w->lock);
		w->err = w->err ? w->err : -ENOMEM;
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
		return NULL;
	}
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (w->nstack == 0 && w->busy > 0 && !w->err)
			pthread_cond_wait(&w->cond, &w->lock);
		if (w->nstack == 0 || w->err)
			break;      /* nothing queued and nobody can queue more */
		struct walk_dir dir = w->stack[--w->nstack];
		w->busy++;
		pthread_mutex_unlock(&w->lock);
		read_dir(w, dir.path, dir.fd, buf);
		free(dir.path);
		pthread_mutex_lock(&w->lock);
		w->busy--;
		if (w->busy == 0 && w->nstack == 0)
			pthread_cond_broadcast(&w->cond);   /* done: wake the others */
		if (w->err)
			pthread_cond_broadcast(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	free(buf);
	return NULL;
}

uint64_t dd_fds_left(void)
{
	struct rlimit rl;
	uint64_t lim = 1024;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		lim = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur;
	uint64_t used = 16;     /* no /proc: a guess */
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		used = 0;
		for (struct dirent *de; (de = readdir(d)) != NULL;)
			used += de->d_name[0] != '.';
		used -= used > 0;   /* not the one reading /proc/self/fd */
		closedir(d);
	}
	return lim > used ? lim - used : 0;
}

int dd_walk_tree(const char *root, const struct stat *root_st, bool one_fs,
		 const struct dd_walk_ops *ops, void *arg)
{
	struct walk w = { .ops = ops, .arg = arg, .root_dev = root_st->st_dev, .one_fs = one_fs };
	size_t rl = strlen(root);
	while (rl > 1 && root[rl - 1] == '/')
		rl--;                   /* "dir/" walks as "dir", as nftw */
	char *r = strndup(root, rl);
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	/* a quarter of what the limit leaves, beside the walkers' own
	 * descriptors and a margin */
	uint64_t left = dd_fds_left(), own = DD_WALK_THREADS + 8;
	left = left > own ? left - own : 0;
	w.max_fds = left / 4 < DD_WALK_MAX_FDS ? (unsigned)(left / 4) : DD_WALK_MAX_FDS;
	w.stack = malloc(64 * sizeof(*w.stack));
	if (!w.stack) {
		free(r);
		return -ENOMEM;
	}
	w.cap = 64;
	w.stack[w.nstack++] = (struct walk_dir){ r, -1 };
	pthread_t t[DD_WALK_THREADS];
	unsigned nt = 0;
	for (; nt < DD_WALK_THREADS; nt++)
		if (pthread_create(&t[nt], NULL, walker, &w) != 0)
			break;
	if (nt == 0)
		walker(&w);             /* no thread to be had: walk here */
	for (unsigned i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
	for (size_t i = 0; i < w.nstack; i++) {   /* left by a stop */
		if (w.stack[i].fd >= 0)
			close(w.stack[i].fd);
		free(w.stack[i].path);
	}
	free(w.stack);
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	return w.err;
}

/*
 * dedupe_prefetch.c: open the files the scan of `reflinkfs dedupe` will
 * read next and start their reads, several at once (dedupe.h).
 *
 * The scan reads one file at a time, in its order (largest first), and
 * with caches cold each small file is a wait for its inode and then for
 * its data: the disk sees one request at a time.  DD_PREFETCH_THREADS
 * threads walk the same order a little ahead of the scan (at most
 * max_files files, the caller's share of the open-file limit, and
 * DD_PREFETCH_BYTES bytes past the file the scan is at), open each file as the scan would, and ask the kernel to
 * read its first DD_PREFETCH_BYTES into the page cache
 * (posix_fadvise(POSIX_FADV_WILLNEED): the reads start and the call
 * returns).  The scan then takes the descriptor (dd_prefetch_take)
 * instead of opening the file itself, and its reads find the data in
 * the cache.  On reflinkfs the open and the reads are FUSE requests that
 * the daemon's threads now serve in parallel.
 *
 * Nothing here decides anything: the scan checks the descriptor's file
 * (statx of ino, size, mtime, ctime against the walk) as it checks one it
 * opened, and a file the prefetcher could not open is opened by the scan
 * (which reports the error).  Memory: one int per file and one prefix sum
 * per file; the data sits in the kernel's page cache, not in the heap.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "dedupe.h"

#define DD_PREFETCH_THREADS 4
#define DD_PREFETCH_BYTES (64ull << 20)

enum { PF_NONE = -1, PF_GONE = -2 };   /* fds[i]: not opened; taken or closed */

struct dd_prefetch {
	size_t nfiles;
	size_t max_files;               /* descriptors open ahead, at most */
	dd_prefetch_get_fn get;
	void *arg;
	uint64_t *prefix;               /* prefix[i]: bytes of files 0 .. i-1 */
	_Atomic int *fds;
	atomic_size_t next;             /* next file a thread claims */
	pthread_mutex_t lock;
	pthread_cond_t moved;
	size_t cur;                     /* the file the scan is at (lock) */
	size_t swept;                   /* files below it closed (scan thread) */
	bool stop;                      /* (lock) */
	int nthreads;
	pthread_t threads[DD_PREFETCH_THREADS];
};

/* Whether file i is too far ahead of the scan to be opened yet. */
static bool too_far(const struct dd_prefetch *p, size_t i)
{
	return i > p->cur && (i - p->cur > p->max_files ||
			      p->prefix[i] - p->prefix[p->cur] > DD_PREFETCH_BYTES);
}

static void *prefetch_thread(void *arg)
{
	struct dd_prefetch *p = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&p->next, 1);
		if (i >= p->nfiles)
			break;
		const char *path;
		uint64_t size;
		if (!p->get(p->arg, i, &path, &size))
			continue;
		pthread_mutex_lock(&p->lock);
		while (!p->stop && too_far(p, i))
			pthread_cond_wait(&p->moved, &p->lock);
		bool stop = p->stop, skip = i < p->cur;
		pthread_mutex_unlock(&p->lock);
		if (stop)
			break;
		if (skip)
			continue;
		int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		uint64_t len = size < DD_PREFETCH_BYTES ? size : DD_PREFETCH_BYTES;
		(void)posix_fadvise(fd, 0, (off_t)len, POSIX_FADV_WILLNEED);
		int none = PF_NONE;
		if (!atomic_compare_exchange_strong(&p->fds[i], &none, fd)) {
			close(fd);
			continue;
		}
		/* the scan may have passed i meanwhile: then nobody takes it */
		pthread_mutex_lock(&p->lock);
		bool passed = i < p->cur;
		pthread_mutex_unlock(&p->lock);
		if (passed) {
			int f = atomic_exchange(&p->fds[i], PF_GONE);
			if (f >= 0)
				close(f);
		}
	}
	return NULL;
}

int dd_prefetch_start(struct dd_prefetch **out, size_t nfiles, size_t max_files,
		      dd_prefetch_get_fn get, void *arg)
{
	*out = NULL;
	if (max_files == 0)
		return 0;
	struct dd_prefetch *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->nfiles = nfiles;
	p->max_files = max_files;
	p->get = get;
	p->arg = arg;
	p->prefix = malloc((nfiles + 1) * sizeof(*p->prefix));
	p->fds = malloc((nfiles + 1) * sizeof(*p->fds));
	if (!p->prefix || !p->fds) {
		free(p->prefix);
		free(p->fds);
		free(p);
		return -ENOMEM;
	}
	p->prefix[0] = 0;
	for (size_t i = 0; i < nfiles; i++) {
		const char *path;
		uint64_t size = 0;
		if (!get(arg, i, &path, &size))
			size = 0;
		p->prefix[i + 1] = p->prefix[i] + size;
		atomic_init(&p->fds[i], PF_NONE);
	}
	atomic_init(&p->next, 0);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->moved, NULL);
	for (int t = 0; t < DD_PREFETCH_THREADS; t++) {
		if (pthread_create(&p->threads[t], NULL, prefetch_thread, p) != 0)
			break;
		p->nthreads++;
	}
	*out = p;
	return 0;
}

void dd_prefetch_at(struct dd_prefetch *p, size_t i)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	if (i > p->cur)
		p->cur = i;
	pthread_cond_broadcast(&p->moved);
	pthread_mutex_unlock(&p->lock);
	/* files the scan went past without taking them */
	for (; p->swept < i && p->swept < p->nfiles; p->swept++) {
		int f = atomic_exchange(&p->fds[p->swept], PF_GONE);
		if (f >= 0)
			close(f);
	}
}

int dd_prefetch_take(struct dd_prefetch *p, size_t i)
{
	if (!p || i >= p->nfiles)
		return -1;
	int f = atomic_exchange(&p->fds[i], PF_GONE);
	return f >= 0 ? f : -1;
}

void dd_prefetch_stop(struct dd_prefetch *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->moved);
	pthread_mutex_unlock(&p->lock);
	for (int t = 0; t < p->nthreads; t++)
		pthread_join(p->threads[t], NULL);
	for (size_t i = 0; i < p->nfiles; i++) {
		int f = atomic_load(&p->fds[i]);
		if (f >= 0)
			close(f);
	}
	pthread_cond_destroy(&p->moved);
	pthread_mutex_destroy(&p->lock);
	free(p->prefix);
	free(p->fds);
	free(p);
}

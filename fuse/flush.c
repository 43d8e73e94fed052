/*
 * flush.c: make the kernel write a file's dirty pages back and wait until
 * the daemon has processed the WRITEs, and the slow pool for requests that
 * must wait for that (see daemon_int.h for the map of fuse/).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <linux/falloc.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <reflinkfs/fs.h>
#include <reflinkfs/ioctl.h>

#include "daemon.h"
#include "daemon_int.h"
#include "uring.h"

/*
 * The kernel does not write dirty pages back before FUSE_LSEEK, so with the
 * writeback cache a SEEK_DATA/SEEK_HOLE could miss data that is only in the
 * page cache (and the library's size could be behind).  The kernel holds
 * the file's inode lock during lseek, so the daemon cannot fsync it; when
 * any file may have dirty pages (open for writing since the last flush),
 * flush_and_wait() flushes per inode (flush_node, Linux 6.16 and later) or,
 * on older kernels, flush_by_barrier():
 *   1. syncfs(2) on the mount: every dirty page becomes a queued WRITE
 *      request (syncfs does not wait for the daemon to process them);
 *   2. opens and closes the mount's root directory: the close queues a
 *      RELEASEDIR, a background request like writeback's WRITEs, so it is
 *      dispatched after all of them (the kernel's background queue is FIFO);
 *   3. waits until that RELEASEDIR has been received, i.e. every earlier
 *      request has been read from /dev/fuse (worker_thread reads under one
 *      mutex and counts WRITEs in flight per inode before dropping it), and
 *      then until no WRITE to this inode is in flight.
 */
atomic_int g_writes_inflight[RLFS_WHASH];

static pthread_mutex_t g_barrier_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_barrier_cond = PTHREAD_COND_INITIALIZER;
struct barrier {
	pid_t tid;                      /* thread that opened the directory */
	bool opened, done;
	struct barrier *next;
};
static struct barrier *g_barriers;

unsigned whash(uint64_t nodeid)
{
	return (unsigned)((nodeid * 0x9E3779B97F4A7C15ull) >> 54) % RLFS_WHASH;
}

/* opendir/releasedir hooks: is this the barrier of a waiting thread? */
bool barrier_opened(pid_t pid)
{
	bool found = false;
	pthread_mutex_lock(&g_barrier_lock);
	for (struct barrier *b = g_barriers; b; b = b->next) {
		if (b->tid == pid && !b->opened) {
			b->opened = true;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&g_barrier_lock);
	return found;
}

void barrier_released(pid_t tid)
{
	pthread_mutex_lock(&g_barrier_lock);
	for (struct barrier *b = g_barriers; b; b = b->next) {
		if (b->tid == tid && b->opened)
			b->done = true;
	}
	pthread_cond_broadcast(&g_barrier_cond);
	pthread_mutex_unlock(&g_barrier_lock);
}

/*
 * Per-inode flush (g_wb_on_reply: Linux 6.16 and later).  The kernel no
 * longer copies a page under writeback into a temporary page and ends
 * writeback at once; the page stays under writeback until the daemon has
 * replied to its WRITE.  So waiting for the writeback of an inode's pages
 * is waiting for the daemon to have processed them, whichever thread or
 * queue the WRITEs went to.  The daemon opens the inode by file handle
 * (the kernel resolves a FUSE handle of a cached inode without a request:
 * fs/fuse/inode.c fuse_get_dentry; type FILEID_INO64_GEN, node id and
 * generation), starts writeback and waits for it (sync_file_range(2) takes
 * no inode lock, so this is safe while the kernel holds the lock for the
 * LSEEK being answered), and closes it.  Returns 0 or -errno (the caller
 * then falls back to syncfs of the mount).
 */
bool g_wb_on_reply;
cpu_set_t g_affinity;
bool g_affinity_ok;

/* Open the kernel's cached inode of nodeid by file handle (flags: open
 * flags).  mnt_fd: any descriptor on the mount (the daemon keeps none open
 * between uses: it would make umount fail with EBUSY).  A descriptor, or
 * -1 with errno (ESTALE: the kernel has no such inode cached). */
static int open_node(int mnt_fd, fuse_ino_t nodeid, int flags)
{
	struct {
		struct file_handle fh;
		uint32_t fid[3];
	} h;
	memset(&h, 0, sizeof(h));
	h.fh.handle_bytes = sizeof(h.fid);
	h.fh.handle_type = 0x81;        /* FILEID_INO64_GEN */
	h.fid[0] = (uint32_t)(nodeid >> 32);
	h.fid[1] = (uint32_t)nodeid;
	/* the generation the kernel has for it (fill_entry): with a wrong
	 * one the kernel answers ESTALE, taken by callers for "not cached",
	 * and a flush would silently not happen */
	h.fid[2] = (uint32_t)node_generation(n2i(nodeid));
	return open_by_handle_at(mnt_fd, &h.fh, flags | O_CLOEXEC);
}

int kernel_size(fuse_ino_t nodeid, uint64_t *size)
{
	/* open_by_handle_at wants a real descriptor, not O_PATH */
	int mnt_fd = open(g_mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mnt_fd < 0)
		return -errno;
	int err = 0;
	int fd = open_node(mnt_fd, nodeid, O_PATH);
	if (fd < 0) {
		err = -errno;
	} else {
		struct statx stx;
		if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_SIZE, &stx) < 0)
			err = -errno;
		else
			*size = stx.stx_size;
		close(fd);
	}
	close(mnt_fd);
	return err;
}

static int flush_node(int mnt_fd, fuse_ino_t nodeid)
{
	int fd = open_node(mnt_fd, nodeid, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return errno == ESTALE ? 0 : -errno;   /* not cached: no dirty pages */
	int err = 0;
	if (sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
				      SYNC_FILE_RANGE_WAIT_AFTER) < 0)
		err = -errno;
	close(fd);
	return err;
}

/* Linux >= 6.16: see flush_node. */
bool kernel_ends_writeback_on_reply(void)
{
	struct utsname u;
	unsigned major = 0, minor = 0;
	if (uname(&u) < 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2)
		return false;
	return major > 6 || (major == 6 && minor >= 16);
}

/* Seconds a flush waits for the barrier or for WRITEs in flight before
 * it says so in the log, and before it gives up (then the caller goes on
 * as after a failed flush: its compare or map may miss data the kernel
 * still had, which the log line records). */
#define FLUSH_WARN_SECS 10
#define FLUSH_GIVEUP_SECS 120

static double now_secs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait until no WRITE to nodeid is in flight; false if FLUSH_GIVEUP_SECS
 * passed first (logged). */
static bool wait_writes_done(fuse_ino_t nodeid)
{
	atomic_int *cnt = &g_writes_inflight[whash(nodeid)];
	double start = now_secs();
	bool warned = false;
	while (atomic_load(cnt) > 0) {
		double waited = now_secs() - start;
		if (waited > FLUSH_GIVEUP_SECS) {
			logmsg("reflinkfs: flush: WRITEs to inode %llu still in flight after %d s; "
			       "going on without them",
			       (unsigned long long)n2i(nodeid), FLUSH_GIVEUP_SECS);
			return false;
		}
		if (!warned && waited > FLUSH_WARN_SECS) {
			logmsg("reflinkfs: flush: waiting %d s for WRITEs to inode %llu",
			       FLUSH_WARN_SECS, (unsigned long long)n2i(nodeid));
			warned = true;
		}
		struct timespec ts = { 0, 50 * 1000 };
		nanosleep(&ts, NULL);
	}
	return true;
}

/* Older kernels: flush the whole mount and wait for the RELEASEDIR barrier
 * and the per-node WRITE counts (see the comment above g_writes_inflight).
 * A barrier not seen within FLUSH_WARN_SECS is logged and waited for up to
 * FLUSH_GIVEUP_SECS (a loaded machine, a daemon thread stuck behind a log
 * force): going on early would let a compare or a map miss data. */
static bool flush_by_barrier(const fuse_ino_t *nodes, int n)
{
	struct barrier b = { .tid = gettid() };
	pthread_mutex_lock(&g_barrier_lock);
	b.next = g_barriers;
	g_barriers = &b;
	pthread_mutex_unlock(&g_barrier_lock);

	bool ok = false;
	int fd = open(g_mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		ok = syncfs(fd) == 0;
		if (!ok)
			logmsg("reflinkfs: flush: syncfs: %s", strerror(errno));
		close(fd);      /* queues the RELEASEDIR barrier */
	} else {
		logmsg("reflinkfs: flush: cannot open the mount point: %s", strerror(errno));
	}
	struct timespec dl;
	deadline_in_ms(&dl, FLUSH_WARN_SECS * 1000);
	bool warned = false;
	pthread_mutex_lock(&g_barrier_lock);
	while (ok && !b.done) {
		if (pthread_cond_timedwait(&g_barrier_cond, &g_barrier_lock, &dl) != ETIMEDOUT)
			continue;
		if (warned) {
			ok = false;
			break;
		}
		warned = true;
		deadline_in_ms(&dl, (FLUSH_GIVEUP_SECS - FLUSH_WARN_SECS) * 1000);
	}
	for (struct barrier **pp = &g_barriers; *pp; pp = &(*pp)->next) {
		if (*pp == &b) {
			*pp = b.next;
			break;
		}
	}
	pthread_mutex_unlock(&g_barrier_lock);
	if (warned)
		logmsg("reflinkfs: flush: the RELEASEDIR barrier took over %d s%s", FLUSH_WARN_SECS,
		       ok ? "" : "; gave up waiting");
	if (!b.opened)
		ok = false;
	/* WRITEs read before the barrier are counted: wait for them. */
	for (int k = 0; k < n; k++)
		if (!wait_writes_done(nodes[k]))
			ok = false;
	return ok;
}

/* Whether flush_and_wait would have to flush. */
bool need_flush(void)
{
	if (atomic_load(&g_nwopen) != 0)
		return true;
	/* Linux 6.16+: the last close of a file waited until the daemon had
	 * its dirty pages (fuse_flush: write_inode_now, writeback ending at
	 * the WRITE reply); older kernels end writeback early, so files
	 * closed since the last whole-mount flush may still have WRITEs
	 * in flight */
	return !g_wb_on_reply && atomic_load(&g_wgen) != atomic_load(&g_synced_gen);
}

/* Before the daemon turns read-only after a remount (remount.c): every
 * WRITE the kernel sent before it must have been processed, or it would
 * fail with EROFS and its data would be lost.  Linux 6.16+: the remount's
 * sync_filesystem waited for the WRITE replies.  Older kernels end
 * writeback before the daemon has the WRITE: wait for the barrier (every
 * earlier request read) and then until no WRITE is in flight. */
void flush_all_wait(void)
{
	if (g_wb_on_reply)
		return;
	fuse_ino_t none = 0;
	flush_by_barrier(&none, 0);
	for (int i = 0; i < 200000; i++) {
		bool busy = false;
		for (int k = 0; k < RLFS_WHASH && !busy; k++)
			busy = atomic_load(&g_writes_inflight[k]) > 0;
		if (!busy)
			return;
		struct timespec ts = { 0, 50 * 1000 };
		nanosleep(&ts, NULL);
	}
}

/* Make the kernel write back its dirty pages of nodes[] (n of them) and
 * wait until the daemon has processed every resulting WRITE.  Skipped when
 * no file can have dirty pages (nothing open for writing since the last
 * flush). */
void flush_and_wait(const fuse_ino_t *nodes, int n)
{
	unsigned long gen = atomic_load(&g_wgen);
	if (!need_flush())
		return;
	if (g_wb_on_reply) {
		int mnt_fd = open(g_mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (mnt_fd < 0)
			return;
		for (int k = 0; k < n; k++) {
			if (flush_node(mnt_fd, nodes[k]) < 0)
				syncfs(mnt_fd);
		}
		close(mnt_fd);
		return;
	}
	if (flush_by_barrier(nodes, n))
		atomic_store(&g_synced_gen, gen);
}



/*
 * Requests that flush (flush_and_wait) block their thread until WRITE
 * requests have been processed by other threads.  If they ran on the
 * request threads, RLFS_WORKERS concurrent callers (parallel clones or
 * SEEK_DATAs) could occupy every thread while the WRITEs they wait for
 * sit unread: a deadlock.  So they are handed to a small pool of their
 * own (RLFS_SLOW_THREADS, started on first use) that replies itself;
 * the request threads stay free for the WRITEs.  Long requests go there
 * too (copy_file_range: a clone of a big file), so that with FUSE over
 * io_uring they do not hold up the ring of the caller's CPU.  A queued
 * request keeps copies of everything it needs from the request buffer.
 */
#define RLFS_SLOW_THREADS 4
static pthread_mutex_t g_slow_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_slow_cond = PTHREAD_COND_INITIALIZER;
static struct slow_job *g_slow_head, **g_slow_tail = &g_slow_head;
static int g_slow_nthreads;
static int g_slow_running;              /* jobs being run */
static pthread_cond_t g_slow_idle = PTHREAD_COND_INITIALIZER;

static void *slow_thread(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&g_slow_lock);
		while (!g_slow_head)
			pthread_cond_wait(&g_slow_cond, &g_slow_lock);
		struct slow_job *job = g_slow_head;
		g_slow_head = job->next;
		if (!g_slow_head)
			g_slow_tail = &g_slow_head;
		g_slow_running++;
		pthread_mutex_unlock(&g_slow_lock);
		job->run(job);
		free(job);
		pthread_mutex_lock(&g_slow_lock);
		g_slow_running--;
		if (!g_slow_running && !g_slow_head)
			pthread_cond_broadcast(&g_slow_idle);
		pthread_mutex_unlock(&g_slow_lock);
	}
	return NULL;
}

/* Wait until the pool has run every queued job (before the library mount
 * is closed). */
void slow_drain(void)
{
	pthread_mutex_lock(&g_slow_lock);
	while (g_slow_running || g_slow_head)
		pthread_cond_wait(&g_slow_idle, &g_slow_lock);
	pthread_mutex_unlock(&g_slow_lock);
}

/* Queue job (malloc'd; freed after it ran).  Runs it here if no pool
 * thread can be started. */
void slow_submit(struct slow_job *job)
{
	pthread_mutex_lock(&g_slow_lock);
	while (g_slow_nthreads < RLFS_SLOW_THREADS) {
		pthread_t t;
		pthread_attr_t a;
		sigset_t all, old;
		pthread_attr_init(&a);
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		/* not what the submitting thread has: with io_uring that is
		 * a ring thread, pinned to one CPU and SCHED_IDLE */
		struct sched_param sp = { 0 };
		pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED);
		pthread_attr_setschedpolicy(&a, SCHED_OTHER);
		pthread_attr_setschedparam(&a, &sp);
		if (g_affinity_ok)
			pthread_attr_setaffinity_np(&a, sizeof(g_affinity), &g_affinity);
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		int e = pthread_create(&t, &a, slow_thread, NULL);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&a);
		if (e != 0)
			break;
		g_slow_nthreads++;
	}
	if (g_slow_nthreads == 0) {
		pthread_mutex_unlock(&g_slow_lock);
		job->run(job);
		free(job);
		return;
	}
	job->next = NULL;
	*g_slow_tail = job;
	g_slow_tail = &job->next;
	pthread_cond_signal(&g_slow_cond);
	pthread_mutex_unlock(&g_slow_lock);
}

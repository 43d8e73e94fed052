/*
 * session.c: mounting, daemonizing, signals, the /dev/fuse request loop
 * and unmounting (see daemon_int.h for the map of fuse/).
 */
#include <dirent.h>
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
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <linux/falloc.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
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

extern char **environ;

/* ------------------------------------------------------------------ */
/* unmounting */

/* umount(2) as root, else fusermount3 -u.  0 or -errno (-EIO if the
 * helper failed; it printed why). */
static int do_unmount(const char *mnt, int lazy, int quiet)
{
	if (geteuid() == 0) {
		if (umount2(mnt, lazy ? MNT_DETACH : 0) < 0)
			return -errno;
		return 0;
	}
	char *argv[8];
	int i = 0;
	argv[i++] = (char *)"fusermount3";
	argv[i++] = (char *)"-u";
	if (lazy)
		argv[i++] = (char *)"-z";
	if (quiet)
		argv[i++] = (char *)"-q";
	argv[i++] = (char *)"--";
	argv[i++] = (char *)mnt;
	argv[i] = NULL;
	pid_t pid;
	int err = posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ);
	if (err)
		return -err;
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -EIO;
	return 0;
}

static int g_sigpipe[2] = { -1, -1 };
static void loop_finished(int err);

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char c = (unsigned char)sig;
	if (write(g_sigpipe[1], &c, 1) < 0) {
		/* nothing to do in a signal handler */
	}
	errno = saved;
}

/* Clean shutdown on SIGTERM/SIGINT/SIGHUP: unmount while the loop still
 * serves, so the kernel writes its dirty pages back through us and the
 * loop ends when the connection closes (then destroy flushes the image).
 * If the mount is busy: sync it, make the loop exit and detach the mount
 * (open files then see ENOTCONN).  A second signal forces the same. */
static void *monitor_thread(void *arg)
{
	(void)arg;
	int nsig = 0;
	for (;;) {
		unsigned char c;
		ssize_t n = read(g_sigpipe[0], &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return NULL;
		nsig++;
		logmsg("reflinkfs: signal %d: unmounting %s", c, g_mnt);
		if (nsig == 1 && do_unmount(g_mnt, 0, 1) == 0)
			continue;
		int fd = open(g_mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			syncfs(fd);
			close(fd);
		}
		/* Stop serving: the main thread cancels the workers, then
		 * fuse_session_unmount closes the connection and detaches. */
		loop_finished(0);
	}
	return NULL;
}

/* After daemonizing: lines written to stderr (library warnings, logmsg)
 * go to syslog, or appended to the file RLFS_LOG_FILE names (the tests
 * set it: their machines may have no syslog socket). */
static void *log_thread(void *arg)
{
	FILE *f = arg;
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		size_t l = strlen(line);
		if (l && line[l - 1] == '\n')
			line[l - 1] = '\0';
		syslog(LOG_ERR, "%s", line);
	}
	fclose(f);
	return NULL;
}

static void start_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, fn, arg) != 0)
		logmsg("reflinkfs: cannot start a thread: %s", strerror(errno));
	pthread_attr_destroy(&a);
}

static void redirect_stdio(void)
{
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	const char *logfile = getenv("RLFS_LOG_FILE");
	if (logfile && *logfile) {
		int fd = open(logfile, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0) {
			dup2(fd, STDERR_FILENO);
			close(fd);
			setvbuf(stderr, NULL, _IOLBF, 0);
			return;
		}
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) == 0) {
		FILE *f = fdopen(p[0], "r");
		if (f) {
			openlog("reflinkfs", LOG_PID, LOG_DAEMON);
			dup2(p[1], STDERR_FILENO);
			close(p[1]);
			setvbuf(stderr, NULL, _IOLBF, 0);
			start_thread(log_thread, f);
			return;
		}
		close(p[0]);
		close(p[1]);
	}
	if (null >= 0)
		dup2(STDIN_FILENO, STDERR_FILENO);
}

/* ------------------------------------------------------------------ */
/* progress of the shutdown */

/*
 * After the kernel has ended the session the daemon still has work to do
 * before it releases the image: let the requests in progress finish, free
 * deleted files that were still open, flush file data, write the dirty
 * metadata and flush again.  On a loaded machine or with much metadata
 * dirty that can take a while, so it is made visible:
 *   - a "status" thread names itself after the current step (um-drain,
 *     um-reclaim NN%, um-data, um-meta NN%, um-sync, um-close, um-free; see
 *     /proc/PID/task/TID/comm), which `reflinkfs umount` shows while it
 *     waits (sample_daemon, phase_words below);
 *   - once the shutdown has taken RLFS_PROGRESS_SECS seconds (default 5),
 *     a line per step and every RLFS_PROGRESS_SECS seconds within a step
 *     goes to stderr (syslog once daemonized), and a last line says when
 *     it was over.  The image is released before the caches are freed
 *     (step "free"), which can take longer than all the rest with a
 *     sanitizer on a loaded machine.
 * The library reports its steps through rlfs_set_progress (on_progress);
 * drain and close are the daemon's own.
 */
#define UM_DRAIN 100
#define UM_CLOSE 101
static atomic_int g_lib_phase;                  /* RLFS_PROGRESS_* */
static atomic_ullong g_lib_done, g_lib_total;
static atomic_int g_um_phase;                   /* UM_DRAIN, UM_CLOSE */
static pthread_mutex_t g_status_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_status_cond = PTHREAD_COND_INITIALIZER;
static bool g_status_stop, g_status_said;
static struct timespec g_status_t0;

/* Thread-name stem and description of a step. */
static const struct {
	int phase;
	const char *stem, *what, *unit;
} um_steps[] = {
	{ UM_DRAIN, "drain", "finishing the requests in progress", NULL },
	{ RLFS_PROGRESS_RECLAIM, "reclaim", "freeing deleted files that were still open", "inodes" },
	{ RLFS_PROGRESS_DATA, "data", "flushing file data to the image", NULL },
	{ RLFS_PROGRESS_META, "meta", "writing metadata", "blocks" },
	{ RLFS_PROGRESS_SYNC, "sync", "flushing metadata to the image", NULL },
	{ RLFS_PROGRESS_RELEASED, "free", "image released, freeing memory", NULL },
	{ UM_CLOSE, "close", "closing the image", NULL },
};

static double since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* A progress line: stderr in the foreground, syslog once daemonized (the
 * stderr pipe's reader may not get to the last lines before exit). */
static void progress_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress_line(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (g_daemonized) {
		vsyslog(LOG_INFO, fmt, ap);
	} else {
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}

static int progress_secs(void)
{
	const char *e = getenv("RLFS_PROGRESS_SECS");
	return e && *e ? atoi(e) : 5;
}

static int g_said_phase = -1;                   /* under g_status_lock */
static double g_said_at;
static int g_every_s;

/* The current step; name (the status thread's) and words for a line.
 * Under g_status_lock.  Logs a line once the shutdown has taken g_every_s
 * seconds: at each new step, then every g_every_s seconds. */
static void status_report(char name[16])
{
	int phase = atomic_load(&g_lib_phase);
	if (phase == RLFS_PROGRESS_IDLE)
		phase = atomic_load(&g_um_phase);
	uint64_t done = atomic_load(&g_lib_done), total = atomic_load(&g_lib_total);
	size_t k = 0;
	while (k + 1 < sizeof(um_steps) / sizeof(um_steps[0]) && um_steps[k].phase != phase)
		k++;
	char count[64] = "";
	if (um_steps[k].unit && total) {
		snprintf(name, 16, "um-%s %u%%", um_steps[k].stem, (unsigned)(done * 100 / total));
		snprintf(count, sizeof(count), ", %llu of %llu %s", (unsigned long long)done,
			 (unsigned long long)total, um_steps[k].unit);
	} else {
		snprintf(name, 16, "um-%s", um_steps[k].stem);
	}
	double t = since(&g_status_t0);
	if (t >= g_every_s &&
	    (phase != g_said_phase || t - g_said_at >= (g_every_s > 1 ? g_every_s : 1))) {
		progress_line("reflinkfs: unmount of %s: %s%s (%.1f s)", g_image, um_steps[k].what,
			      count, t);
		g_said_phase = phase;
		g_said_at = t;
		g_status_said = true;
	}
}

/* rlfs_set_progress callback: runs in the thread doing the work (under
 * the library's metadata lock: only atomics and, during the shutdown, a
 * line at a new step). */
static void on_progress(void *arg, int phase, uint64_t done, uint64_t total)
{
	(void)arg;
	int old = atomic_exchange(&g_lib_phase, RLFS_PROGRESS_IDLE);
	atomic_store(&g_lib_done, done);
	atomic_store(&g_lib_total, total);
	atomic_store(&g_lib_phase, phase);
	if (phase != old && atomic_load(&g_um_phase)) {
		char name[16];
		pthread_mutex_lock(&g_status_lock);
		status_report(name);
		pthread_mutex_unlock(&g_status_lock);
	}
}

static void set_um_phase(int phase)
{
	atomic_store(&g_um_phase, phase);
	char name[16];
	pthread_mutex_lock(&g_status_lock);
	status_report(name);
	pthread_mutex_unlock(&g_status_lock);
}

static void *status_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&g_status_lock);
	while (!g_status_stop) {
		char name[16];
		status_report(name);
		pthread_setname_np(pthread_self(), name);
		struct timespec dl;
		deadline_in_ms(&dl, 250);
		pthread_cond_timedwait(&g_status_cond, &g_status_lock, &dl);
	}
	pthread_mutex_unlock(&g_status_lock);
	return NULL;
}

/* The session has ended: from here to status_stop the shutdown shows. */
static pthread_t g_status_tid;
static bool g_status_started;

static void status_start(void)
{
	if (g_status_started)
		return;
	clock_gettime(CLOCK_MONOTONIC, &g_status_t0);
	g_every_s = progress_secs();
	set_um_phase(UM_DRAIN);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	g_status_started = pthread_create(&g_status_tid, NULL, status_thread, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void status_stop(void)
{
	if (!g_status_started)
		return;
	pthread_mutex_lock(&g_status_lock);
	g_status_stop = true;
	pthread_cond_broadcast(&g_status_cond);
	pthread_mutex_unlock(&g_status_lock);
	pthread_join(g_status_tid, NULL);
	g_status_started = false;
	if (g_status_said)
		progress_line("reflinkfs: unmount of %s: done after %.1f s", g_image,
			      since(&g_status_t0));
}

/* ------------------------------------------------------------------ */
/* mounting */

/* The kernel's readahead for the mount is min(bdi default, what INIT
 * negotiated) = 128 KiB; raise it to match max_write so sequential reads
 * arrive as 1 MiB requests.  Only root can write the bdi's sysfs knob; it
 * must be written after the INIT reply (which sets ra_pages), so this
 * runs in its own thread once init has been called. */
static void *tune_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 1000 && !atomic_load(&g_init_done); i++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	nanosleep(&ts, NULL);   /* let the INIT reply reach the kernel */
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return NULL;
	char *line = NULL;
	size_t cap = 0;
	char dev[64] = "";
	while (getline(&line, &cap, f) > 0) {
		unsigned id, parent, maj, min;
		char mnt[PATH_MAX + 1];
		if (sscanf(line, "%u %u %u:%u %*s %4096s", &id, &parent, &maj, &min, mnt) != 5)
			continue;
		if (strcmp(mnt, g_mnt) == 0 && strstr(line, " - fuse.reflinkfs "))
			snprintf(dev, sizeof(dev), "%u:%u", maj, min);
	}
	free(line);
	fclose(f);
	if (!dev[0])
		return NULL;
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	f = fopen(path, "we");
	if (f) {
		fprintf(f, "%u\n", RLFS_FUSE_MAX_WRITE / 1024);
		fclose(f);
	}
	return NULL;
}


/* fuse_opt value escaping: ',' and '\' are special in -o lists. */
static char *escape_opt(const char *s)
{
	size_t n = strlen(s);
	char *r = malloc(2 * n + 1);
	if (!r)
		return NULL;
	char *p = r;
	for (; *s; s++) {
		if (*s == ',' || *s == '\\')
			*p++ = '\\';
		*p++ = *s;
	}
	*p = '\0';
	return r;
}

static const char *mount_errstr(int err)
{
	switch (-err) {
	case EUCLEAN:
		return "not a reflinkfs filesystem, or corrupt";
	case EOPNOTSUPP:
		return "unsupported reflinkfs version or feature";
	default:
		return strerror(-err);
	}
}

/* The image holds the data of every file, whatever the files' own modes
 * say: one line on stderr if users other than its owner may read or write
 * it.  Block devices: only the "other" bits (their group is by convention
 * "disk", whose members can read every disk anyway). */
static void warn_image_mode(const char *prog, const char *image)
{
	struct stat st;
	if (stat(image, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
		return;
	mode_t others = st.st_mode & (S_ISBLK(st.st_mode) ? 0007 : 0077);
	if (!others)
		return;
	bool r = others & 0044, w = others & 0022;
	fprintf(stderr, "%s: warning: %s is %s by users other than its owner (mode %04o): "
		"they can %s every file's data in it (chmod go-rwx to stop that)\n", prog, image,
		r && w ? "readable and writable" : r ? "readable" : "writable",
		(unsigned)(st.st_mode & 07777), r && w ? "read and change" : r ? "read" : "change");
}

/*
 * The writeback reserve (docs/DESIGN.md "ENOSPC under the writeback
 * cache"): with the kernel's writeback cache a write(2) is done once its
 * data is in the page cache; this daemon sees it seconds later, when the
 * kernel writes the pages back, and a WRITE that fails then loses data
 * the writer was told was written.  XFS reserves the blocks at write(2)
 * (delalloc); FUSE asks nothing at write(2).  So the library holds back
 * g_wbresv_bytes that only such writebacks may use
 * (rlfs_set_writeback_reserve), the kernel is told to hold at most about
 * that much dirty data for this mount (its per-device dirty limit,
 * /sys/class/bdi/MAJ:MIN/max_bytes, which the kernel enforces strictly for
 * FUSE), and once only the reserve is left a write(2) fails with ENOSPC
 * (daemon.c, full_add after a writeback WRITE: the next write(2) of that
 * file asks for attributes and gets ENOSPC).  What the kernel accepted
 * before then fits in the reserve.
 */
static long long g_wbresv_bytes;

/* The reserve's size, before the mount: -o wbresv=BYTES or the default
 * (RLFS_WBRESV_*); set on a read-only mount too, for a remount
 * read-write. */
static void writeback_reserve_size(const struct rlfs_daemon_opts *o)
{
	g_wbresv_bytes = 0;
	if (o->wbresv_bytes == 0)
		return;
	struct statvfs sv;
	if (rlfs_statfs(g_mp, &sv) != 0)
		return;
	long long fs_bytes = (long long)sv.f_blocks * (long long)sv.f_frsize;
	long long want = o->wbresv_bytes;
	if (want < 0) {
		want = fs_bytes / 16;
		want = want < RLFS_WBRESV_MIN_BYTES ? RLFS_WBRESV_MIN_BYTES :
		       want > RLFS_WBRESV_MAX_BYTES ? RLFS_WBRESV_MAX_BYTES : want;
	}
	g_wbresv_bytes = want;
	rlfs_set_writeback_reserve(g_mp, (uint64_t)want);
}

/* Read (and if wr, first write) a /sys/class/bdi value; -1 if unknown. */
static long long bdi_value(const char *path, long long wr)
{
	if (wr >= 0) {
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			char b[32];
			int l = snprintf(b, sizeof(b), "%lld\n", wr);
			if (write(fd, b, (size_t)l) != l) {
				/* kept as it was: read back below */
			}
			close(fd);
		}
	}
	FILE *f = fopen(path, "re");
	long long v = -1;
	if (f) {
		if (fscanf(f, "%lld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/*
 * After the mount: the kernel's dirty limit for it at most three quarters
 * of the reserve (the rest covers pages under writeback and the
 * limit's slack).  If it cannot be lowered (not root, an old kernel), the
 * reserve grows toward covering the limit, but to at most an eighth of
 * the filesystem (a small image must stay usable): beyond that a
 * writeback can still fail at the very end, and the log says so.
 */
static void writeback_limit_set(const char *prog)
{
	if (g_wbresv_bytes <= 0)
		return;
	struct statx stx;
	if (statx(AT_FDCWD, g_mnt, AT_STATX_DONT_SYNC | AT_NO_AUTOMOUNT, STATX_TYPE, &stx) < 0)
		return;
	char path[96];
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/max_bytes", stx.stx_dev_major,
		 stx.stx_dev_minor);
	long long target = g_wbresv_bytes / 4 * 3;
	long long cur = bdi_value(path, -1);
	if (cur > target)
		cur = bdi_value(path, target);
	if (cur < 0) {
		logmsg("%s: the kernel's dirty limit for %s is unknown (%s): writes accepted by the "
		       "page cache may still fail at writeback on a full filesystem", prog, g_mnt, path);
		return;
	}
	if (cur > target) {
		long long need = cur / 3 * 4, cap = g_wbresv_bytes;
		struct statvfs sv;
		if (rlfs_statfs(g_mp, &sv) == 0 &&
		    (long long)(sv.f_blocks / 8 * sv.f_frsize) > cap)
			cap = (long long)(sv.f_blocks / 8 * sv.f_frsize);
		if (need > cap)
			need = cap;
		rlfs_set_writeback_reserve(g_mp, (uint64_t)need);
		logmsg("%s: could not lower the kernel's dirty limit for %s to %lld bytes (it is "
		       "%lld): writeback reserve %lld bytes%s", prog, g_mnt, target, cur, need,
		       need < cur / 3 * 4 ? " (less than the limit: a writer may still lose data "
		       "at writeback when the filesystem fills)" : "");
	}
}

/* Open the filesystem, create and mount the FUSE session.  Returns 0 or 1
 * (error printed). */
static int setup(const struct rlfs_daemon_opts *o, const char *image, struct fuse_args *args)
{
	/* Options first: fuse_session_new starts no thread and opens nothing. */
	g_se = fuse_session_new(args, &rlfs_fuse_ops, sizeof(rlfs_fuse_ops), NULL);
	if (!g_se) {
		fprintf(stderr, "%s: invalid mount options\n", o->prog);
		return 1;
	}
	int err = rlfs_mount_open(image, o->mount_flags, &g_mp);
	if (err) {
		g_mp = NULL;
		if (err == -EBUSY)
			fprintf(stderr, "%s: %s is already mounted (or in use)\n", o->prog, image);
		else
			fprintf(stderr, "%s: cannot open %s: %s\n", o->prog, image,
				mount_errstr(err));
		fuse_session_destroy(g_se);
		g_se = NULL;
		return 1;
	}
	g_root = rlfs_root_ino(g_mp);
	if (o->cowfill >= 0)
		rlfs_set_cow_fill(g_mp, (uint32_t)o->cowfill);
	const char *dax_env = getenv("RLFS_DAX");
	if (o->dax > 0 || (o->dax == 0 && dax_env && strcmp(dax_env, "1") == 0)) {
		/* refused rather than quietly served another way: whoever asked
		 * for direct access measures or relies on it */
		err = rlfs_set_dax(g_mp);
		if (err) {
			fprintf(stderr, "%s: -o dax: cannot map %s (%s); mount without dax "
				"for the pread/pwrite data path\n", o->prog, image, strerror(-err));
			goto fail_session;
		}
	}
	writeback_reserve_size(o);
	warn_image_mode(o->prog, image);
	rlfs_set_progress(g_mp, on_progress, NULL);
	if (pipe2(g_sigpipe, O_CLOEXEC) < 0) {
		fprintf(stderr, "%s: pipe: %s\n", o->prog, strerror(errno));
		goto fail_session;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	if (fuse_session_mount(g_se, g_mnt) != 0) {
		fprintf(stderr, "%s: cannot mount %s on %s\n", o->prog, image, g_mnt);
		goto fail_session;
	}
	writeback_limit_set(o->prog);
	err = callerfd_init(g_mnt, o->fuse_opts && strstr(o->fuse_opts, "allow_other"));
	if (err)
		/* the clone ioctls then refuse every source (EXDEV) */
		logmsg("reflinkfs: cannot stat the new mount %s: %s", g_mnt, strerror(-err));
	mount_state_attach();
	bool uring = rlfs_uring_wanted(o->uring);
	/* Per-CPU queues: the barrier flush of older kernels assumes the
	 * single FIFO queue of /dev/fuse (flush_by_barrier) */
	if (uring && !g_wb_on_reply) {
		logmsg("reflinkfs: io_uring needs the per-inode flush of Linux 6.16 "
		       "and later; serving requests through /dev/fuse");
		uring = false;
	}
	/* -o dax opens every file with FOPEN_DIRECT_IO: ask the kernel to
	 * allow shared mappings of them (docs/DESIGN.md, "Direct access") */
	rlfs_fuse_io_install(g_se, uring, rlfs_dax_enabled(g_mp),
			     loop_finished); /* falls back to /dev/fuse */
	return 0;
fail_session:
	fuse_session_destroy(g_se);
	g_se = NULL;
	rlfs_mount_close(g_mp);
	g_mp = NULL;
	return 1;
}

/*
 * The request loop: RLFS_WORKERS threads, all blocked in read(2) on
 * /dev/fuse (the kernel hands each request to one of them).  On kernels
 * before 6.16 (!g_wb_on_reply) reading is serialized by g_read_lock so
 * that a WRITE is counted in flight (by node id) before any later request
 * can be seen by another thread; see flush_by_barrier().  Processing runs
 * in parallel.  A thread leaves when the
 * session ends (unmount: the read fails with ENODEV) and wakes the main
 * thread, which then cancels the others (blocked in read).
 */
#define RLFS_WORKERS 32
/* struct fuse_in_header (linux/fuse.h): len, opcode, unique, nodeid, ... */
#define RLFS_FUSE_WRITE_OPCODE 16

static pthread_mutex_t g_read_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_finish_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_finish_cond = PTHREAD_COND_INITIALIZER;
static bool g_finished;
static int g_loop_err;

static void loop_finished(int err)
{
	pthread_mutex_lock(&g_finish_lock);
	if (err && !g_loop_err)
		g_loop_err = err;
	g_finished = true;
	pthread_cond_broadcast(&g_finish_cond);
	pthread_mutex_unlock(&g_finish_lock);
}

static void unlock_read(void *arg)
{
	if (*(bool *)arg)
		pthread_mutex_unlock(&g_read_lock);
}

/*
 * A worker's request buffer.  libfuse reads whole requests into fb.mem
 * (se->bufsize bytes: FUSE_MAX_MAX_PAGES pages plus a 4 KiB header area
 * in libfuse 3.14; RLFS_REQBUF_BYTES leaves room to spare).  fb.mem is
 * placed so that a WRITE's data, which follows struct fuse_in_header and
 * struct fuse_write_in (40 + 40 bytes), starts on a page boundary: the
 * library can then write it to the image with O_DIRECT (lib/dev.h).
 */
#define RLFS_REQBUF_BYTES (2u << 20)
#define RLFS_WRITE_HDR_BYTES 80u
/*
 * A worker that has served a request of RLFS_REQBUF_HUGE_MIN_BYTES or
 * more (writeback's WRITEs are 1 MiB) turns the first
 * RLFS_REQBUF_HUGE_BYTES of its buffer (base is aligned to that) into one
 * transparent huge page: the header page and a whole WRITE's data then
 * sit in it.  Every WRITE pins the buffer page by page twice (the kernel's
 * FUSE copy into it, fuse_copy_fill, and the O_DIRECT write out of it),
 * and on a huge page each pin walks to one PMD instead of through the
 * page tables.  Only such workers: a huge page costs its 2 MiB on first
 * touch, and a worker that only ever sees small requests touches one or
 * two 4 KiB pages.  THP in "madvise" or "always" mode; elsewhere the
 * advice fails and nothing changes.
 */
#define RLFS_REQBUF_HUGE_BYTES (2u << 20)   /* x86-64's PMD size */
#define RLFS_REQBUF_HUGE_MIN_BYTES (256u << 10)
struct reqbuf {
	struct fuse_buf fb;
	void *base;
	bool huge;      /* the advice was given (or tried) */
};

/* After the first large request: drop the buffer's 4 KiB pages (their
 * bytes are no longer needed: the request was processed) and advise a
 * huge page for the next fault. */
static void reqbuf_go_huge(struct reqbuf *rb)
{
	rb->huge = true;
	if (madvise(rb->base, RLFS_REQBUF_HUGE_BYTES, MADV_DONTNEED) == 0)
		(void)madvise(rb->base, RLFS_REQBUF_HUGE_BYTES, MADV_HUGEPAGE);
}

static void free_fbuf(void *arg)
{
	struct reqbuf *rb = arg;
	free(rb->base);
	free(rb);
}

/* Serve requests until the session ends; returns 0 or -errno. */
static int worker_loop(struct reqbuf *rb)
{
	struct fuse_buf *buf = &rb->fb;
	int err = 0;
	while (!fuse_session_exited(g_se)) {
		bool serial = !g_wb_on_reply;
		if (serial)
			pthread_mutex_lock(&g_read_lock);
		pthread_cleanup_push(unlock_read, &serial);
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		err = fuse_session_receive_buf(g_se, buf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		pthread_cleanup_pop(0);
		atomic_int *cnt = NULL;
		if (serial && err > 0 && !(buf->flags & FUSE_BUF_IS_FD) && buf->size >= 24) {
			uint32_t opcode;
			uint64_t nodeid;
			memcpy(&opcode, (char *)buf->mem + 4, sizeof(opcode));
			memcpy(&nodeid, (char *)buf->mem + 16, sizeof(nodeid));
			if (opcode == RLFS_FUSE_WRITE_OPCODE) {
				cnt = &g_writes_inflight[whash(nodeid)];
				atomic_fetch_add(cnt, 1);
			}
		}
		if (serial)
			pthread_mutex_unlock(&g_read_lock);
		if (err == -EINTR || err == -EAGAIN)
			continue;
		if (err <= 0)
			break;          /* 0: session ended (unmounted) */
		rlfs_process_buf(g_se, buf);
		if (cnt)
			atomic_fetch_sub(cnt, 1);
		if (!rb->huge && buf->size >= RLFS_REQBUF_HUGE_MIN_BYTES)
			reqbuf_go_huge(rb);
		err = 0;
	}
	return err < 0 ? err : 0;
}

static void *worker_thread(void *arg)
{
	(void)arg;
	struct reqbuf *rb = calloc(1, sizeof(*rb));
	if (!rb || posix_memalign(&rb->base, RLFS_REQBUF_HUGE_BYTES, RLFS_REQBUF_BYTES + 4096) != 0) {
		free(rb);
		loop_finished(-ENOMEM);
		return NULL;
	}
	rb->fb.mem = (char *)rb->base + 4096 - RLFS_WRITE_HDR_BYTES;
	/* cancelled while blocked in read: free the request buffer */
	pthread_cleanup_push(free_fbuf, rb);
	loop_finished(worker_loop(rb));
	pthread_cleanup_pop(1);
	return NULL;
}

static int run_loop(void)
{
	pthread_t tids[RLFS_WORKERS];
	int n = 0;
	sigset_t all, old;
	/* Workers take no signals (monitor_thread's handler runs in the
	 * main thread, which only waits). */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (; n < RLFS_WORKERS; n++) {
		if (pthread_create(&tids[n], NULL, worker_thread, NULL) != 0)
			break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (n == 0) {
		logmsg("reflinkfs: cannot start worker threads");
		return -EAGAIN;
	}
	pthread_mutex_lock(&g_finish_lock);
	while (!g_finished)
		pthread_cond_wait(&g_finish_cond, &g_finish_lock);
	pthread_mutex_unlock(&g_finish_lock);
	status_start();         /* the shutdown begins: show it */
	fuse_session_exit(g_se);
	for (int i = 0; i < n; i++)
		pthread_cancel(tids[i]);
	for (int i = 0; i < n; i++)
		pthread_join(tids[i], NULL);
	return g_loop_err;
}

/*
 * Background work on timers, in one thread, stopped (joined) before the
 * mount closes:
 *  - CoW garbage collection (XFS's background cowblocks scan): every
 *    quarter of the idle time (at most a minute) give back the staged CoW
 *    blocks of files whose fork has been non-empty for g_cowgc_s seconds
 *    and that nobody is writing now (rlfs_cowfork_gc, trylock);
 *  - the idle AIL push (xfsaild's role): every RLFS_AILD_MS,
 *    rlfs_log_push_idle writes dirty metadata in place while no
 *    transaction commits, so that the next busy phase finds log space.
 */
#define RLFS_AILD_MS 200
static long g_cowgc_s = RLFS_COWGC_DEFAULT_S;
static pthread_mutex_t g_cowgc_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cowgc_cond = PTHREAD_COND_INITIALIZER;
static bool g_cowgc_stop, g_cowgc_started;
static pthread_t g_cowgc_tid;

static void *cowgc_thread(void *arg)
{
	(void)arg;
	long every = g_cowgc_s / 4 < 1 ? 1 : g_cowgc_s / 4 > 60 ? 60 : g_cowgc_s / 4;
	long ticks = every * 1000 / RLFS_AILD_MS, tick = 0;
	pthread_mutex_lock(&g_cowgc_lock);
	while (!g_cowgc_stop) {
		struct timespec dl;
		deadline_in_ms(&dl, RLFS_AILD_MS);
		pthread_cond_timedwait(&g_cowgc_cond, &g_cowgc_lock, &dl);
		if (g_cowgc_stop)
			break;
		pthread_mutex_unlock(&g_cowgc_lock);
		int perr = rlfs_log_push_idle(g_mp);
		if (perr < 0)
			logmsg("reflinkfs: writing metadata back in the background failed: %s",
			       strerror(-perr));
		if (g_cowgc_s > 0 && ++tick >= ticks) {
			tick = 0;
			int64_t n = rlfs_cow_gc(g_mp, (uint32_t)g_cowgc_s);
			if (n < 0)
				logmsg("reflinkfs: giving back idle staged CoW blocks failed: %s",
				       strerror((int)-n));
		}
		pthread_mutex_lock(&g_cowgc_lock);
	}
	pthread_mutex_unlock(&g_cowgc_lock);
	return NULL;
}

static void cowgc_start(void)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	g_cowgc_started = pthread_create(&g_cowgc_tid, NULL, cowgc_thread, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void cowgc_stop(void)
{
	if (!g_cowgc_started)
		return;
	pthread_mutex_lock(&g_cowgc_lock);
	g_cowgc_stop = true;
	pthread_cond_broadcast(&g_cowgc_cond);
	pthread_mutex_unlock(&g_cowgc_lock);
	pthread_join(g_cowgc_tid, NULL);
	g_cowgc_started = false;
}

static int serve(void)
{
	start_thread(monitor_thread, NULL);
	cowgc_start();
	if (geteuid() == 0)
		start_thread(tune_thread, NULL);
	mount_state_start();
	int ret = run_loop();
	cowgc_stop();
	status_start();         /* if run_loop did not */
	/* ring threads can still hand jobs to the slow pool: stop them first */
	rlfs_uring_quiesce();
	slow_drain();
	mount_state_stop();
	rlfs_uring_stop();
	set_um_phase(UM_CLOSE);
	fuse_session_unmount(g_se);
	/* Calls destroy (rlfs_mount_close) if the kernel did not. */
	fuse_session_destroy(g_se);
	g_se = NULL;
	if (g_mp) {
		/* INIT never arrived: destroy was not called */
		rl_destroy(NULL);
	}
	status_stop();
	if (ret != 0 && !g_daemonized)
		logmsg("reflinkfs: the FUSE session ended with an error: %s", strerror(-ret));
	return g_close_err ? 1 : 0;
}

int rlfs_daemon_run(const struct rlfs_daemon_opts *o)
{
	/* RLFS_FLUSH_BARRIER=1 forces the pre-6.16 flush (tests run both) */
	g_wb_on_reply = kernel_ends_writeback_on_reply() && !getenv("RLFS_FLUSH_BARRIER");
	g_affinity_ok = sched_getaffinity(0, sizeof(g_affinity), &g_affinity) == 0;
	char *image = realpath(o->image, NULL);
	if (!image) {
		fprintf(stderr, "%s: %s: %s\n", o->prog, o->image, strerror(errno));
		return 1;
	}
	g_mnt = realpath(o->mountpoint, NULL);
	struct stat st;
	if (!g_mnt || stat(g_mnt, &st) < 0) {
		fprintf(stderr, "%s: mount point %s: %s\n", o->prog, o->mountpoint,
			strerror(errno));
		free(image);
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "%s: mount point %s is not a directory\n", o->prog,
			o->mountpoint);
		free(image);
		return 1;
	}

	free(g_image);
	g_image = strdup(image);
	mount_state_init(o);
	if (o->cowgc_s >= 0)
		g_cowgc_s = o->cowgc_s;
	/* -o default_permissions,fsname=reflinkfs#IMAGE,subtype=reflinkfs[,ro][,extra] */
	char *eimg = escape_opt(image);
	size_t olen = strlen(eimg) + (o->fuse_opts ? strlen(o->fuse_opts) : 0) + 128;
	char *opts = malloc(olen);
	if (!eimg || !opts) {
		fprintf(stderr, "%s: out of memory\n", o->prog);
		free(eimg);
		free(opts);
		free(image);
		return 1;
	}
	snprintf(opts, olen, "default_permissions,fsname=reflinkfs#%s,subtype=reflinkfs%s%s%s",
		 eimg, (o->mount_flags & RLFS_MOUNT_RDONLY) ? ",ro" : "",
		 o->fuse_opts && *o->fuse_opts ? "," : "", o->fuse_opts ? o->fuse_opts : "");
	free(eimg);
	char *argv[6];
	int argc = 0;
	argv[argc++] = (char *)"reflinkfs";
	argv[argc++] = (char *)"-o";
	argv[argc++] = opts;
	if (o->debug)
		argv[argc++] = (char *)"-d";
	argv[argc] = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);

	if (pthread_key_create(&g_bufkey, free_tlbuf) != 0) {
		fprintf(stderr, "%s: out of memory\n", o->prog);
		free(opts);
		free(image);
		return 1;
	}

	int foreground = o->foreground || o->debug;
	if (foreground) {
		int r = setup(o, image, &args);
		fuse_opt_free_args(&args);
		free(opts);
		free(image);
		return r ? r : serve();
	}

	/* Fork before the library or libfuse start any thread. */
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		fprintf(stderr, "%s: pipe: %s\n", o->prog, strerror(errno));
		free(opts);
		free(image);
		return 1;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "%s: fork: %s\n", o->prog, strerror(errno));
		free(opts);
		free(image);
		return 1;
	}
	if (pid > 0) {
		free(opts);
		free(image);
		close(p[1]);
		unsigned char status = 1;
		ssize_t n;
		do {
			n = read(p[0], &status, 1);
		} while (n < 0 && errno == EINTR);
		close(p[0]);
		if (n == 1 && status == 0)
			return 0;
		int ws;
		waitpid(pid, &ws, 0);
		if (n != 1)
			fprintf(stderr, "%s: the daemon exited before the mount was ready\n",
				o->prog);
		return 1;
	}

	/* child: the daemon */
	close(p[0]);
	setsid();
	int r = setup(o, image, &args);
	fuse_opt_free_args(&args);
	free(opts);
	free(image);
	unsigned char status = r ? 1 : 0;
	if (r) {
		if (write(p[1], &status, 1) < 0) {
			/* parent gone: nothing to report to */
		}
		_exit(1);
	}
	g_daemonized = true;
	if (chdir("/") < 0) {
		/* harmless: keep the old cwd */
	}
	redirect_stdio();
	if (write(p[1], &status, 1) < 0) {
		/* parent gone: keep serving */
	}
	close(p[1]);
	exit(serve());
}

/* ------------------------------------------------------------------ */
/* rlfs_daemon_umount */

/* Undo mountinfo's octal escapes (\040 etc.) in place. */
void unescape_mountinfo(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* Find the image of the reflinkfs mount on mnt (last one mounted there).
 * Returns a malloc'd path, "" if mnt is a reflinkfs mount of unknown
 * source, or NULL if it is not a reflinkfs mount. */
static char *find_mount_image(const char *mnt)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return NULL;
	char *line = NULL, *found = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		/* id parent maj:min root mountpoint opts [optional...] - fstype source super */
		char *save = NULL, *tok;
		char *fields[5] = { 0 };
		int i = 0;
		for (tok = strtok_r(line, " \n", &save); tok && i < 5;
		     tok = strtok_r(NULL, " \n", &save))
			fields[i++] = tok;
		if (i < 5)
			continue;
		while (tok && strcmp(tok, "-") != 0)
			tok = strtok_r(NULL, " \n", &save);
		if (!tok)
			continue;
		char *fstype = strtok_r(NULL, " \n", &save);
		char *source = strtok_r(NULL, " \n", &save);
		if (!fstype || strcmp(fstype, "fuse.reflinkfs") != 0)
			continue;
		unescape_mountinfo(fields[4]);
		if (strcmp(fields[4], mnt) != 0)
			continue;
		free(found);
		if (source) {
			unescape_mountinfo(source);
			if (strncmp(source, "reflinkfs#", 10) == 0)
				source += 10;
			found = strdup(source);
		} else {
			found = strdup("");
		}
	}
	free(line);
	fclose(f);
	return found;
}

/* The pid of the process that holds the flock of the file open as fd (the
 * daemon), from /proc/locks; 0 if none is found. */
static pid_t lock_holder(int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return 0;
	FILE *f = fopen("/proc/locks", "re");
	if (!f)
		return 0;
	char line[256];
	pid_t pid = 0;
	while (!pid && fgets(line, sizeof(line), f)) {
		/* "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; blocked
		 * waiters are "1: -> FLOCK ..." */
		char type[16];
		int p;
		unsigned maj, min;
		unsigned long long ino;
		if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%llu", type, &p, &maj, &min, &ino) != 5)
			continue;
		if (strcmp(type, "FLOCK") == 0 && maj == major(st.st_dev) &&
		    min == minor(st.st_dev) && ino == (unsigned long long)st.st_ino)
			pid = p;
	}
	fclose(f);
	return pid;
}

/* What a daemon is doing, sampled from /proc: its I/O counters and CPU
 * time (any change is progress), whether a thread waits for the disk
 * (state D: progress too) and the step its status thread is named after. */
struct daemon_sample {
	char io[512];               /* /proc/PID/io, as read */
	unsigned long long cpu;     /* utime + stime, clock ticks */
	unsigned long long wchar;   /* bytes written so far */
	bool in_disk_wait;
	bool stopped;               /* every thread stopped (SIGSTOP, tracer) */
	char phase[16];             /* "um-meta 45%", or "" */
};

static bool sample_daemon(pid_t pid, struct daemon_sample *s)
{
	memset(s, 0, sizeof(*s));
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
	FILE *f = fopen(path, "re");
	if (f) {
		size_t n = fread(s->io, 1, sizeof(s->io) - 1, f);
		s->io[n] = '\0';
		fclose(f);
		const char *w = strstr(s->io, "wchar:");
		if (w)
			s->wchar = strtoull(w + 6, NULL, 10);
	}
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return false;           /* gone */
	struct dirent *de;
	int nthreads = 0, nstopped = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char tpath[sizeof(path) + sizeof(de->d_name) + 8], buf[512];
		snprintf(tpath, sizeof(tpath), "%s/%s/stat", path, de->d_name);
		f = fopen(tpath, "re");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		/* pid (comm) state ... utime(14) stime(15): comm may hold spaces */
		char *r = strrchr(buf, ')');
		char state;
		unsigned long long ut, stt;
		if (!r || sscanf(r + 1, " %c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu",
				 &state, &ut, &stt) != 3)
			continue;
		s->cpu += ut + stt;
		nthreads++;
		if (state == 'D')
			s->in_disk_wait = true;
		if (state == 'T' || state == 't')
			nstopped++;
		char *l = strchr(buf, '(');
		if (l && strncmp(l + 1, "um-", 3) == 0) {
			size_t len = (size_t)(r - l - 1);
			if (len >= sizeof(s->phase))
				len = sizeof(s->phase) - 1;
			memcpy(s->phase, l + 1, len);
			s->phase[len] = '\0';
		}
	}
	closedir(d);
	s->stopped = nthreads && nstopped == nthreads;
	return true;
}

/* A status thread's name as words for the user. */
static const char *phase_words(const char *phase, char *buf, size_t size)
{
	if (!*phase)
		return "finishing";
	char stem[16];
	unsigned pct;
	int n = sscanf(phase, "um-%15[a-z] %u%%", stem, &pct);
	for (size_t k = 0; n >= 1 && k < sizeof(um_steps) / sizeof(um_steps[0]); k++) {
		if (strcmp(um_steps[k].stem, stem) == 0) {
			if (n == 2)
				snprintf(buf, size, "%s, %u%% done", um_steps[k].what, pct);
			else
				snprintf(buf, size, "%s", um_steps[k].what);
			return buf;
		}
	}
	return phase;
}

/*
 * Wait until the daemon has released the image open as fd (its flock).
 * Not a fixed time: as long as the daemon is alive and progressing (I/O
 * counters, CPU time, waiting for the disk; sample_daemon), this waits,
 * saying on stderr after 5 s what it waits for, and then every 15 s.  It
 * gives up when the daemon has made no progress at all for
 * RLFS_UMOUNT_STALL_SECS seconds (default 120).  If the lock holder
 * cannot be found in /proc/locks (another pid namespace), it waits at
 * most 10 minutes.  Returns 0 or 1 (message printed).
 */
static int wait_release(const char *prog, const char *mountpoint, const char *image, int fd)
{
	const char *e = getenv("RLFS_UMOUNT_STALL_SECS");
	double stall_s = e && *e ? atof(e) : 0;
	if (!(stall_s > 0))
		stall_s = 120;  /* unset or not a positive number */
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = 0;
	struct daemon_sample last;
	bool have_last = false;
	unsigned long long wchar0 = 0;
	double progress_at = 0, said_at = -1;
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			break;
		if (errno != EWOULDBLOCK && errno != EINTR)
			break;
		double t = since(&t0);
		if (!pid)
			pid = lock_holder(fd);
		struct daemon_sample cur;
		if (pid && sample_daemon(pid, &cur)) {
			if (!have_last) {
				wchar0 = cur.wchar;
				progress_at = t;
			} else if (cur.cpu != last.cpu || strcmp(cur.io, last.io) != 0 ||
				   cur.in_disk_wait) {
				progress_at = t;
			}
			last = cur;
			have_last = true;
			char words[128];
			if (t >= 5 && (said_at < 0 || t - said_at >= 15)) {
				fprintf(stderr, "%s: waiting for the daemon (pid %d) to release %s: %s%s "
					"(%.0f s, %.1f MiB written)\n", prog, (int)pid, image,
					phase_words(cur.phase, words, sizeof(words)),
					cur.stopped ? ", but the daemon is stopped" :
					cur.in_disk_wait ? ", waiting for the disk" : "", t,
					(double)(cur.wchar - wchar0) / (1 << 20));
				said_at = t;
			}
			if (t - progress_at >= stall_s) {
				fprintf(stderr, "%s: the daemon (pid %d) of %s has made no progress for "
					"%.0f s (%s%s); not waiting any longer\n", prog, (int)pid,
					mountpoint, t - progress_at,
					phase_words(cur.phase, words, sizeof(words)),
					cur.stopped ? ", stopped" : "");
				return 1;
			}
		} else {
			pid = 0;        /* gone (the lock goes with it) or unknown */
			if (t >= 600) {
				fprintf(stderr, "%s: the daemon of %s has not finished after 10 minutes\n",
					prog, mountpoint);
				return 1;
			}
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		if (t >= 1)
			ts.tv_nsec = 200 * 1000 * 1000;     /* sampling /proc costs */
		nanosleep(&ts, NULL);
	}
	return 0;
}

int rlfs_daemon_umount(const char *prog, const char *mountpoint, int lazy)
{
	char *mnt = realpath(mountpoint, NULL);
	if (!mnt) {
		fprintf(stderr, "%s: %s: %s\n", prog, mountpoint, strerror(errno));
		return 1;
	}
	char *image = find_mount_image(mnt);
	if (!image) {
		fprintf(stderr, "%s: %s is not a reflinkfs mount point\n", prog, mountpoint);
		free(mnt);
		return 1;
	}
	int fd = *image ? open(image, O_RDONLY | O_CLOEXEC) : -1;
	int err = do_unmount(mnt, lazy, 0);
	if (err) {
		if (err != -EIO)
			fprintf(stderr, "%s: cannot unmount %s: %s\n", prog, mountpoint,
				strerror(-err));
		if (fd >= 0)
			close(fd);
		free(image);
		free(mnt);
		return 1;
	}
	int ret = 0;
	/* The daemon holds an exclusive flock on the image until it has
	 * flushed everything and closed it.  A lazy unmount may keep it
	 * serving open files: do not wait then. */
	if (fd >= 0 && !lazy)
		ret = wait_release(prog, mountpoint, image, fd);
	if (fd >= 0)
		close(fd);
	free(image);
	free(mnt);
	return ret;
}

/*
 * session.c: mounting, daemonizing, signals, the /dev/fuse request loop
 * and unmounting (see daemon_int.h for the map of fuse/).
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

/* After daemonizing: lines written to stderr (library warnings) go to
 * syslog. */
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
	warn_image_mode(o->prog, image);
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
	bool uring = rlfs_uring_wanted(o->uring);
	/* Per-CPU queues: the barrier flush of older kernels assumes the
	 * single FIFO queue of /dev/fuse (flush_by_barrier) */
	if (uring && !g_wb_on_reply) {
		logmsg("reflinkfs: io_uring needs the per-inode flush of Linux 6.16 "
		       "and later; serving requests through /dev/fuse");
		uring = false;
	}
	rlfs_fuse_io_install(g_se, uring, loop_finished); /* falls back to /dev/fuse */
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
struct reqbuf {
	struct fuse_buf fb;
	void *base;
};

static void free_fbuf(void *arg)
{
	struct reqbuf *rb = arg;
	free(rb->base);
	free(rb);
}

/* Serve requests until the session ends; returns 0 or -errno. */
static int worker_loop(struct fuse_buf *buf)
{
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
		fuse_session_process_buf(g_se, buf);
		if (cnt)
			atomic_fetch_sub(cnt, 1);
		err = 0;
	}
	return err < 0 ? err : 0;
}

static void *worker_thread(void *arg)
{
	(void)arg;
	struct reqbuf *rb = calloc(1, sizeof(*rb));
	if (!rb || posix_memalign(&rb->base, 4096, RLFS_REQBUF_BYTES + 4096) != 0) {
		free(rb);
		loop_finished(-ENOMEM);
		return NULL;
	}
	rb->fb.mem = (char *)rb->base + 4096 - RLFS_WRITE_HDR_BYTES;
	/* cancelled while blocked in read: free the request buffer */
	pthread_cleanup_push(free_fbuf, rb);
	loop_finished(worker_loop(&rb->fb));
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
	fuse_session_exit(g_se);
	for (int i = 0; i < n; i++)
		pthread_cancel(tids[i]);
	for (int i = 0; i < n; i++)
		pthread_join(tids[i], NULL);
	return g_loop_err;
}

static int serve(void)
{
	start_thread(monitor_thread, NULL);
	if (geteuid() == 0)
		start_thread(tune_thread, NULL);
	int ret = run_loop();
	/* ring threads can still hand jobs to the slow pool: stop them first */
	rlfs_uring_quiesce();
	slow_drain();
	rlfs_uring_stop();
	fuse_session_unmount(g_se);
	/* Calls destroy (rlfs_mount_close) if the kernel did not. */
	fuse_session_destroy(g_se);
	g_se = NULL;
	if (g_mp) {
		/* INIT never arrived: destroy was not called */
		rl_destroy(NULL);
	}
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
	if (fd >= 0 && !lazy) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		int waited_ms = 0;
		while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			if (errno != EWOULDBLOCK && errno != EINTR)
				break;
			if (waited_ms >= 600 * 1000) {
				fprintf(stderr, "%s: the daemon of %s has not finished after 10 minutes\n",
					prog, mountpoint);
				ret = 1;
				break;
			}
			nanosleep(&ts, NULL);
			waited_ms += 10;
		}
	}
	if (fd >= 0)
		close(fd);
	free(image);
	free(mnt);
	return ret;
}

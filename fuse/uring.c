/*
 * uring.c: FUSE over io_uring for the reflinkfs daemon.
 *
 * What: a transport for FUSE requests and replies through io_uring
 * (kernel 6.14+, CONFIG_FUSE_IO_URING, module parameter enable_uring=Y)
 * next to the classic read()/writev() on /dev/fuse.  libfuse 3.14 does not
 * implement it; this file drives the protocol itself and keeps libfuse for
 * request parsing and reply building (fuse_session_process_buf, and a
 * custom io, fuse_session_custom_io, through which every reply passes).
 * The custom io is installed on every mount, rings or not: it also adds
 * FUSE_HANDLE_KILLPRIV_V2 and, under -o dax, FUSE_DIRECT_IO_ALLOW_MMAP to
 * the INIT reply (see uring.h).
 *
 * Why: with /dev/fuse a request wakes whichever daemon thread sleeps in
 * read(), usually on another CPU than the application; on small VMs that
 * cross-CPU wake-up dominates metadata operations.  With io_uring the
 * kernel has one queue per CPU and hands a request to the ring entry of
 * the CPU the application runs on; the thread serving that queue is pinned
 * to that CPU.
 *
 * Protocol (kernel include/uapi/linux/fuse.h, fs/fuse/dev_uring.c):
 *  1. INIT arrives through read() on /dev/fuse.  Its reply must set
 *     FUSE_INIT_EXT in flags and FUSE_OVER_IO_URING (bit 41 = flags2 bit 9);
 *     the custom writev patches libfuse's reply (init_patch).
 *  2. After the kernel processed the INIT reply (before that REGISTER fails
 *     with EAGAIN), every queue qid 0..nr_cpu_possible-1 registers ring
 *     entries: IORING_OP_URING_CMD on the /dev/fuse fd, cmd_op
 *     FUSE_IO_URING_CMD_REGISTER, addr/len = two iovecs (header buffer,
 *     payload buffer), struct fuse_uring_cmd_req {qid} in the SQE's command
 *     area (SQE128 rings).  The kernel uses the rings once every queue has
 *     an entry.
 *  3. A CQE with res 0 is a request: in_out holds the fuse_in_header,
 *     op_in the opcode's first argument, the payload the other arguments
 *     (ring_ent_in_out.payload_sz bytes).  ring_thread rebuilds the /dev/fuse
 *     layout (header, arg0, payload) in place, just before the payload, in
 *     the entry's headroom, so the payload is not copied.
 *  4. The reply (custom writev, out_header.unique == request unique) is
 *     copied into in_out (out header) and the payload (arguments), and
 *     sent with FUSE_IO_URING_CMD_COMMIT_AND_FETCH {commit_id = unique},
 *     which also re-arms the entry.
 *  5. FORGET, INTERRUPT and notifications keep using /dev/fuse: the
 *     daemon's classic reader threads keep running.
 *  6. At unmount or connection abort the kernel completes the commands with
 *     an error; ring threads leave when all their entries have ended.
 *
 * Threads: one ring thread per possible CPU, pinned to it, with its own
 * io_uring.  Replies are normally sent by the thread that received the
 * request (thread-local current entry), but the daemon's slow pool replies
 * later from other threads.  Those threads must not submit the commit
 * themselves: the kernel completes a uring command (delivers the entry's
 * next request) through task work of the task that submitted it, and a
 * slow-pool thread that then blocks uninterruptibly (syncfs waiting for
 * writeback) never runs it: the next request, possibly the WRITE the
 * syncfs waits for, would hang forever (seen by experiment).  So a foreign
 * thread fills the entry's buffers, queues the entry on its queue's
 * pending list and wakes the ring thread through an eventfd that the ring
 * reads; only the ring thread submits to its ring.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "uring.h"

/* ------------------------------------------------------------------ */
/* Kernel UAPI (include/uapi/linux/fuse.h, protocol 7.42); Debian 12's
 * headers predate it. */

#define FUSE_OPCODE_INIT 26
#define FUSE_OPCODE_SETXATTR 21
#define FUSE_OPCODE_CREATE 35
#define FUSE_OPCODE_TMPFILE 51                  /* protocol 7.37, Linux 6.1 */
#define FUSE_CREATE_IN_SIZE 16                  /* struct fuse_create_in */
#define FUSE_SETXATTR_IN_SIZE 16                /* extended struct fuse_setxattr_in */
#define FUSE_COMPAT_SETXATTR_IN_SIZE 8
#define FUSE_SETXATTR_ACL_KILL_SGID (1u << 0)
#define FUSE_SETXATTR_EXT (1u << 29)
#define FUSE_HANDLE_KILLPRIV_V2 (1u << 28)
#define FUSE_INIT_EXT (1u << 30)
#define FUSE_OVER_IO_URING_FLAGS2 (1u << 9)     /* bit 41 of the 64-bit flags */
#define FUSE_DIRECT_IO_ALLOW_MMAP_FLAGS2 (1u << 4) /* bit 36, protocol 7.39, Linux 6.6 */

enum fuse_uring_cmd {
	FUSE_IO_URING_CMD_INVALID = 0,
	FUSE_IO_URING_CMD_REGISTER = 1,
	FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2,
};

struct fuse_in_header_k {
	uint32_t len;
	uint32_t opcode;
	uint64_t unique;
	uint64_t nodeid;
	uint32_t uid;
	uint32_t gid;
	uint32_t pid;
	uint16_t total_extlen;
	uint16_t padding;
};

struct fuse_out_header_k {
	uint32_t len;
	int32_t error;
	uint64_t unique;
};

/* fuse_init_in: flags after major, minor, max_readahead; flags2 (the
 * upper 32 bits, meaningful when flags has FUSE_INIT_EXT) after flags */
#define INIT_IN_FLAGS 12
#define INIT_IN_FLAGS2 16
/* fuse_init_out offsets used here */
#define INIT_OUT_FLAGS 12
#define INIT_OUT_MAX_WRITE 20
#define INIT_OUT_MAX_PAGES 28
#define INIT_OUT_FLAGS2 32

#define FUSE_URING_IN_OUT_HEADER_SZ 128
#define FUSE_URING_OP_IN_OUT_SZ 128

struct fuse_uring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;     /* unique of the request, set by the kernel */
	uint32_t payload_sz;    /* bytes used in the payload buffer */
	uint32_t padding;
	uint64_t reserved;
};

struct fuse_uring_req_header {
	char in_out[FUSE_URING_IN_OUT_HEADER_SZ];   /* in/out header */
	char op_in[FUSE_URING_OP_IN_OUT_SZ];        /* first request argument */
	struct fuse_uring_ent_in_out ring_ent_in_out;
};

struct fuse_uring_cmd_req {
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

_Static_assert(sizeof(struct fuse_in_header_k) == 40, "fuse_in_header");
_Static_assert(sizeof(struct fuse_out_header_k) == 16, "fuse_out_header");
_Static_assert(sizeof(struct fuse_uring_req_header) == 288, "fuse_uring_req_header");
_Static_assert(sizeof(struct fuse_uring_cmd_req) == 24, "fuse_uring_cmd_req");

/* ------------------------------------------------------------------ */

#define RLFS_URING_DEPTH 8              /* ring entries per queue at start */
/* Entries whose request was handed to another thread (the slow pool) stay
 * in userspace until it replies; if every entry of a queue were held that
 * way, the WRITEs such a request waits for (its flush) could not be
 * delivered.  So a queue registers more entries whenever fewer than
 * RLFS_URING_MIN_FREE are left with the kernel, up to RLFS_URING_MAX_ENTS. */
#define RLFS_URING_MIN_FREE 4
#define RLFS_URING_MAX_ENTS 1024
#define RLFS_URING_HEADROOM 4096        /* in_header + arg0 before the payload */
#define RLFS_URING_PARAM "/sys/module/fuse/parameters/enable_uring"

struct ring_ent {
	struct ring_queue *q;
	struct fuse_uring_req_header *hdr;
	char *mem;                      /* [headroom | payload] */
	char *payload;
	size_t payload_sz;
	struct iovec iov[2];
	_Atomic uint64_t unique;        /* request in userspace, else 0 */
	uint64_t commit_id;             /* reply queued on the pending list */
	struct ring_ent *next_pending;
	struct ring_ent *next_bulk;     /* on the bulk queue */
	struct fuse_buf bulk_fb;        /* the rebuilt request, for a bulk thread */
	bool bulk;                      /* handed to a bulk thread */
	bool live;                      /* registered, not ended by the kernel */
};

struct ring_queue {
	unsigned qid;
	struct io_uring ring;
	pthread_mutex_t pending_lock;   /* pending */
	struct ring_ent *pending;       /* replies from other threads */
	int efd;                        /* eventfd: pending is not empty */
	uint64_t efd_val;               /* read target of the eventfd */
	pthread_t tid;
	_Atomic pid_t ktid;             /* kernel thread id, 0 until started */
	uint64_t run_ns, wait_ns;       /* CPU time, runqueue wait: last check */
	_Atomic unsigned normal_ticks;  /* > 0: SCHED_OTHER for that many checks */
	_Atomic unsigned bulk_inflight; /* bulk requests not yet committed */
	bool ring_ok, thread_ok;
	bool failed;                    /* ring thread: stop serving (fatal) */
	unsigned nlive;
	_Atomic unsigned nents;         /* ents[0..nents-1] are set up */
	struct ring_ent *ents[RLFS_URING_MAX_ENTS];
};

static struct fuse_session *g_se;
static int g_fd = -1;
static _Atomic uint64_t g_init_unique;  /* unique of INIT, 0 if not seen */
static _Atomic uint32_t g_init_in_flags; /* what the kernel offered in INIT */
static _Atomic uint32_t g_init_in_flags2; /* its upper half (0 without FUSE_INIT_EXT) */
static bool g_direct_mmap;              /* ask for FUSE_DIRECT_IO_ALLOW_MMAP */
static atomic_bool g_setxattr_ext;      /* the INIT reply asked for FUSE_SETXATTR_EXT */
static bool g_uring;                    /* rings wanted and possible */
static bool g_killpriv_v2 = true;       /* RLFS_NO_KILLPRIV_V2=1: false */
static atomic_bool g_started, g_stopping;
static void (*g_on_fatal)(int err);      /* from rlfs_fuse_io_install */
static atomic_bool g_fatal;             /* a ring failed: the session ends */
static struct ring_queue *g_queues;
static unsigned g_nqueues;
static size_t g_payload_sz;
static _Thread_local struct ring_ent *tl_cur;
static size_t rewrite_request(char *buf, size_t len);

static void ulog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ulog(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("reflinkfs: io_uring: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* q's ring cannot go on (a command or wait failed persistently): its
 * requests could never be answered, so end the session rather than let
 * the applications waiting for them hang.  The daemon then unmounts and
 * closes the image as after SIGTERM; the kernel fails what is left.  Ring
 * thread of q only; the thread leaves its loop. */
static void fatal(struct ring_queue *q, const char *what, int err)
{
	q->failed = true;
	if (atomic_exchange(&g_fatal, true))
		return;
	ulog("qid %u: %s: %s; ending the session", q->qid, what, strerror(-err));
	if (g_on_fatal)
		g_on_fatal(err);
}

bool rlfs_uring_wanted(int opt)
{
	const char *e = getenv("RLFS_URING");
	if (opt < 0)
		return false;
	return opt > 0 || (e && strcmp(e, "1") == 0);
}


/* Number of possible CPUs (kernel nr_cpu_ids, the number of queues the
 * kernel waits for): highest id in /sys/devices/system/cpu/possible
 * ("0-1", "0,2-5") plus one, or 0 if that file cannot be read.  glibc's
 * get_nprocs_conf() counts the cpuN directories (present CPUs), which can
 * be fewer; a wrong guess would hang the mount, so there is no fallback. */
static unsigned possible_cpus(void)
{
	FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
	char buf[256];
	unsigned max = 0;
	bool any = false;
	if (f && fgets(buf, sizeof(buf), f)) {
		for (char *p = buf; *p;) {
			char *end;
			unsigned long v = strtoul(p, &end, 10);
			if (end == p || v >= 65536)
				break;
			any = true;
			if (v > max)
				max = (unsigned)v;
			p = end;
			while (*p == '-' || *p == ',' || *p == '\n')
				p++;
		}
	}
	if (f)
		fclose(f);
	return any ? max + 1 : 0;
}

/* Y the module parameter (root only).  0 or -errno. */
static int enable_param(void)
{
	char c = 0;
	int fd = open(RLFS_URING_PARAM, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, &c, 1);
	close(fd);
	if (n == 1 && c == 'Y')
		return 0;
	fd = open(RLFS_URING_PARAM, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, "Y", 1);
	int err = n == 1 ? 0 : -errno;
	close(fd);
	return err;
}

/* ------------------------------------------------------------------ */
/* submission */

static void prep_cmd(struct io_uring_sqe *sqe, struct ring_ent *e, uint32_t cmd_op,
		     uint64_t commit_id)
{
	memset(sqe, 0, 128);    /* SQE128: the command area is 80 bytes */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = g_fd;
	sqe->cmd_op = cmd_op;
	sqe->addr = (uint64_t)(uintptr_t)e->iov;
	sqe->len = 2;
	sqe->user_data = (uint64_t)(uintptr_t)e;
	struct fuse_uring_cmd_req req = { .commit_id = commit_id, .qid = (uint16_t)e->q->qid };
	memcpy(sqe->cmd, &req, sizeof(req));
}

/* user_data of the eventfd read */
#define WAKE_TAG ((uint64_t)1)

/* Transient io_uring_submit failures: the kernel is short of memory
 * (EAGAIN), completions must be reaped first (EBUSY), or a signal (EINTR).
 * The SQEs stay queued, so submitting again is correct. */
static bool submit_transient(int err)
{
	return err == -EAGAIN || err == -EBUSY || err == -EINTR;
}

#define RLFS_URING_RETRY_US 100
#define RLFS_URING_RETRY_MAX 10000      /* one second of retries */

static void retry_pause(void)
{
	struct timespec ts = { 0, RLFS_URING_RETRY_US * 1000L };
	nanosleep(&ts, NULL);
}

/* Submit what q has queued, retrying transient failures for up to a
 * second.  A command that never reaches the kernel would leave its
 * request unanswered (the application hangs) or lose a ring entry, so a
 * failure that persists ends the session (fatal).  Ring thread only.
 * 0 or -errno. */
static int submit_queued(struct ring_queue *q)
{
	for (unsigned tries = 0;; tries++) {
		int err = io_uring_submit(&q->ring);
		if (err >= 0)
			return 0;
		if (!submit_transient(err) || tries >= RLFS_URING_RETRY_MAX) {
			fatal(q, "io_uring_submit", err);
			return err;
		}
		retry_pause();
	}
}

/* Test hook: RLFS_URING_FAIL_COMMIT=N makes every reply (commit) after
 * the first N fail as a persistent submission error would
 * (tests/integration/01-cli.sh). */
static long g_fail_commit_after = -1;
static _Atomic long g_commits;

/* Queue one SQE on q: the command built by prep_cmd, or if e is NULL the
 * eventfd read.  A full submission queue is submitted first.  Ring thread
 * only; the caller submits.  0 or -errno (the session is then ending). */
static int queue_sqe(struct ring_queue *q, struct ring_ent *e, uint32_t cmd_op,
		     uint64_t commit_id)
{
	if (g_fail_commit_after >= 0 && cmd_op == FUSE_IO_URING_CMD_COMMIT_AND_FETCH &&
	    atomic_fetch_add(&g_commits, 1) >= g_fail_commit_after) {
		fatal(q, "io_uring_submit (injected)", -EIO);
		return -EIO;
	}
	struct io_uring_sqe *sqe;
	while (!(sqe = io_uring_get_sqe(&q->ring))) {
		int err = submit_queued(q);
		if (err)
			return err;
	}
	if (e) {
		prep_cmd(sqe, e, cmd_op, commit_id);
	} else {
		io_uring_prep_read(sqe, q->efd, &q->efd_val, sizeof(q->efd_val), 0);
		sqe->user_data = WAKE_TAG;
	}
	return 0;
}

/* queue_sqe and submit.  Ring thread only.  0 or -errno (the session is
 * then ending). */
static int submit(struct ring_queue *q, struct ring_ent *e, uint32_t cmd_op, uint64_t commit_id)
{
	int err = queue_sqe(q, e, cmd_op, commit_id);
	return err ? err : submit_queued(q);
}

/* Wake q's ring thread (any thread). */
static void wake(struct ring_queue *q)
{
	uint64_t one = 1;
	if (write(q->efd, &one, sizeof(one)) < 0) {
		/* counter saturated: a wake-up is pending anyway */
	}
}

/* Ring thread: submit the commits other threads queued, re-arm the
 * eventfd read. */
static void set_policy(pthread_t t, int policy);
static bool idle_policy_ok(void);

/* Ring thread: one bulk request of q fewer in flight; back to SCHED_IDLE
 * after the last one unless the starvation guard holds it at SCHED_OTHER. */
static void bulk_done(struct ring_queue *q)
{
	if (atomic_load(&q->bulk_inflight) && atomic_fetch_sub(&q->bulk_inflight, 1) == 1 &&
	    !atomic_load(&q->normal_ticks) && idle_policy_ok())
		set_policy(pthread_self(), SCHED_IDLE);
}

static void flush_pending(struct ring_queue *q)
{
	pthread_mutex_lock(&q->pending_lock);
	struct ring_ent *e = q->pending;
	q->pending = NULL;
	pthread_mutex_unlock(&q->pending_lock);
	/* a failed queue_sqe has ended the session (fatal): the kernel then
	 * fails the requests still waiting for a reply */
	for (; e; e = e->next_pending) {
		queue_sqe(q, e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, e->commit_id);
		if (e->bulk) {
			e->bulk = false;
			bulk_done(q);
		}
	}
	if (queue_sqe(q, NULL, 0, 0) == 0)
		submit_queued(q);
}

/* ------------------------------------------------------------------ */
/* requests */

/*
 * Bulk data requests.  A ring thread shares its CPU with the application
 * and runs SCHED_IDLE, so a READ or WRITE of a megabyte processed there
 * waits while the application computes (dd copying the data it read) and
 * keeps the other CPUs idle: sequential reads ran at a third of the
 * /dev/fuse path.  READs and WRITEs of RLFS_URING_BULK_BYTES or more go to
 * RLFS_URING_BULK_THREADS unpinned SCHED_OTHER threads instead; their
 * replies reach the ring thread like those of the slow pool (pending list
 * and eventfd).
 */
#define RLFS_URING_BULK_BYTES (64u * 1024)
#define RLFS_URING_BULK_THREADS 4
#define FUSE_READ_OPCODE 15
#define FUSE_WRITE_OPCODE 16

static pthread_mutex_t g_bulk_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_bulk_cond = PTHREAD_COND_INITIALIZER;
static struct ring_ent *g_bulk_head, **g_bulk_tail = &g_bulk_head;
static bool g_bulk_stop;
static pthread_t g_bulk_tids[RLFS_URING_BULK_THREADS];
static _Atomic unsigned g_nbulk;

static void *bulk_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&g_bulk_lock);
	for (;;) {
		while (!g_bulk_head && !g_bulk_stop)
			pthread_cond_wait(&g_bulk_cond, &g_bulk_lock);
		struct ring_ent *e = g_bulk_head;
		if (!e)
			break;                  /* stopping and nothing left */
		g_bulk_head = e->next_bulk;
		if (!g_bulk_head)
			g_bulk_tail = &g_bulk_head;
		pthread_mutex_unlock(&g_bulk_lock);
		rlfs_process_buf(g_se, &e->bulk_fb);
		pthread_mutex_lock(&g_bulk_lock);
	}
	pthread_mutex_unlock(&g_bulk_lock);
	return NULL;
}

/* Whether the request in e (header in, first argument at arg0) moves bulk
 * data: a READ (fuse_read_in.size at byte 16) or WRITE of at least
 * RLFS_URING_BULK_BYTES. */
static bool is_bulk(const struct fuse_in_header_k *in, const char *arg0, size_t arg0_len,
		    uint32_t payload_sz)
{
	if (!atomic_load(&g_nbulk))
		return false;
	if (in->opcode == FUSE_WRITE_OPCODE)
		return payload_sz >= RLFS_URING_BULK_BYTES;
	if (in->opcode == FUSE_READ_OPCODE && arg0_len >= 20) {
		uint32_t size;
		memcpy(&size, arg0 + 16, sizeof(size));
		return size >= RLFS_URING_BULK_BYTES;
	}
	return false;
}

static void bulk_submit(struct ring_ent *e)
{
	pthread_mutex_lock(&g_bulk_lock);
	if (g_bulk_stop) {
		/* the bulk threads are gone: serve it here (the reply goes
		 * through the pending list like a bulk thread's) */
		pthread_mutex_unlock(&g_bulk_lock);
		rlfs_process_buf(g_se, &e->bulk_fb);
		return;
	}
	e->next_bulk = NULL;
	*g_bulk_tail = e;
	g_bulk_tail = &e->next_bulk;
	pthread_cond_signal(&g_bulk_cond);
	pthread_mutex_unlock(&g_bulk_lock);
}

/* Start the bulk threads (from start_rings: unpinned, SCHED_OTHER, all
 * signals blocked like the caller's mask at that point). */
static void bulk_start(void)
{
	unsigned n = 0;
	for (; n < RLFS_URING_BULK_THREADS; n++) {
		if (pthread_create(&g_bulk_tids[n], NULL, bulk_thread, NULL) != 0)
			break;
	}
	atomic_store(&g_nbulk, n);
}

/* Process what is queued, then join the bulk threads. */
static void bulk_stop(void)
{
	pthread_mutex_lock(&g_bulk_lock);
	g_bulk_stop = true;
	pthread_cond_broadcast(&g_bulk_cond);
	pthread_mutex_unlock(&g_bulk_lock);
	unsigned n = atomic_load(&g_nbulk);
	for (unsigned i = 0; i < n; i++)
		pthread_join(g_bulk_tids[i], NULL);
	atomic_store(&g_nbulk, 0);
}

/* Rebuild the /dev/fuse request layout in e's headroom and process it. */
static void serve_request(struct ring_ent *e)
{
	struct fuse_in_header_k in;
	memcpy(&in, e->hdr->in_out, sizeof(in));
	uint32_t psz = e->hdr->ring_ent_in_out.payload_sz;
	if (psz > e->payload_sz || in.len < sizeof(in) + psz ||
	    in.len - sizeof(in) - psz > FUSE_URING_OP_IN_OUT_SZ) {
		ulog("qid %u: malformed request (opcode %u len %u payload %u)", e->q->qid,
		     in.opcode, in.len, psz);
		struct fuse_out_header_k out = { sizeof(out), -EIO, in.unique };
		memcpy(e->hdr->in_out, &out, sizeof(out));
		e->hdr->ring_ent_in_out.payload_sz = 0;
		submit(e->q, e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, in.unique);
		return;
	}
	size_t arg0 = in.len - sizeof(in) - psz;
	char *start = e->payload - arg0 - sizeof(in);
	memcpy(start, &in, sizeof(in));
	memcpy(start + sizeof(in), e->hdr->op_in, arg0);
	atomic_store(&e->unique, in.unique);
	struct fuse_buf fb = { .mem = start, .size = rewrite_request(start, in.len) };
	if (is_bulk(&in, e->hdr->op_in, arg0, psz)) {
		/* While bulk requests are in flight the ring thread competes
		 * for its CPU normally: their replies must be committed while
		 * the application keeps the CPU busy (readahead pipelining). */
		if (atomic_fetch_add(&e->q->bulk_inflight, 1) == 0)
			set_policy(pthread_self(), SCHED_OTHER);
		e->bulk = true;
		e->bulk_fb = fb;
		bulk_submit(e);
		return;
	}
	tl_cur = e;
	rlfs_process_buf(g_se, &fb);
	tl_cur = NULL;
}

/* The entry holding the request with this unique, or NULL. */
static struct ring_ent *find_ent(uint64_t unique)
{
	struct ring_ent *e = tl_cur;
	if (e && atomic_load(&e->unique) == unique)
		return e;
	if (!atomic_load(&g_started))
		return NULL;
	for (unsigned i = 0; i < g_nqueues; i++) {
		struct ring_queue *q = &g_queues[i];
		unsigned n = atomic_load(&q->nents);
		for (unsigned j = 0; j < n; j++) {
			if (atomic_load(&q->ents[j]->unique) == unique)
				return q->ents[j];
		}
	}
	return NULL;
}

/* Send the reply in iov through e (COMMIT_AND_FETCH).  Returns the bytes
 * sent or -1 with errno. */
static ssize_t commit_reply(struct ring_ent *e, const struct iovec *iov, int count)
{
	struct fuse_out_header_k out;
	memcpy(&out, iov[0].iov_base, sizeof(out));
	size_t off = 0, total = iov[0].iov_len;
	for (int i = 1; i < count; i++) {
		if (off + iov[i].iov_len > e->payload_sz) {
			ulog("reply of %zu+ bytes does not fit the payload buffer",
			     off + iov[i].iov_len);
			out.error = -EIO;
			out.len = sizeof(out);
			off = 0;
			break;
		}
		memcpy(e->payload + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
		total += iov[i].iov_len;
	}
	memcpy(e->hdr->in_out, &out, sizeof(out));
	e->hdr->ring_ent_in_out.payload_sz = (uint32_t)off;
	atomic_store(&e->unique, 0);
	if (tl_cur == e) {
		/* the ring thread itself: submit directly */
		tl_cur = NULL;
		int err = submit(e->q, e, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, out.unique);
		if (err) {
			errno = -err;
			return -1;
		}
		return (ssize_t)total;
	}
	struct ring_queue *q = e->q;
	e->commit_id = out.unique;
	pthread_mutex_lock(&q->pending_lock);
	e->next_pending = q->pending;
	q->pending = e;
	pthread_mutex_unlock(&q->pending_lock);
	wake(q);
	return (ssize_t)total;
}

/* ------------------------------------------------------------------ */
/* ring threads */

/* Ring thread: allocate one more entry of q and register it.  0 or -errno. */
static int add_ent(struct ring_queue *q)
{
	unsigned n = atomic_load(&q->nents);
	if (n >= RLFS_URING_MAX_ENTS)
		return -ENOSPC;
	struct ring_ent *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->q = q;
	e->hdr = calloc(1, sizeof(*e->hdr));
	/* mmap: pages cost memory only once the kernel copies a request that
	 * large into them, and they go back to the system at the end */
	e->mem = mmap(NULL, RLFS_URING_HEADROOM + g_payload_sz, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!e->hdr || e->mem == MAP_FAILED) {
		free(e->hdr);
		if (e->mem != MAP_FAILED)
			munmap(e->mem, RLFS_URING_HEADROOM + g_payload_sz);
		free(e);
		return -ENOMEM;
	}
	e->payload = e->mem + RLFS_URING_HEADROOM;
	e->payload_sz = g_payload_sz;
	e->iov[0] = (struct iovec){ e->hdr, sizeof(*e->hdr) };
	e->iov[1] = (struct iovec){ e->payload, g_payload_sz };
	q->ents[n] = e;
	atomic_store(&q->nents, n + 1);         /* publish to find_ent */
	int err = submit(q, e, FUSE_IO_URING_CMD_REGISTER, 0);
	if (err)
		return err;
	e->live = true;
	q->nlive++;
	return 0;
}

/* Ring thread, after a request: keep RLFS_URING_MIN_FREE entries with the
 * kernel (see RLFS_URING_MIN_FREE). */
static void maybe_grow(struct ring_queue *q)
{
	unsigned n = atomic_load(&q->nents), held = 0;
	for (unsigned j = 0; j < n; j++)
		held += atomic_load(&q->ents[j]->unique) != 0;
	while (held + RLFS_URING_MIN_FREE > q->nlive && !atomic_load(&g_stopping)) {
		if (add_ent(q) != 0)
			break;
	}
}

/*
 * Scheduling of ring threads.  When a ring thread replies it wakes the
 * application on the same CPU, but the scheduler places a waking task on
 * an idle CPU if it can, and the ring thread's CPU is busy at that moment
 * (it is still returning from the commit): the application moves to the
 * other CPU, its next request goes to that CPU's queue, and every request
 * pays for waking an idle CPU (an IPI and, on a VM, a halt exit).  A CPU
 * that runs only SCHED_IDLE tasks counts as idle for that choice
 * (kernel/sched/fair.c select_idle_sibling, sched_idle_cpu), so ring
 * threads run SCHED_IDLE and the application stays on its CPU: 2-3x more
 * metadata operations per second on the 2-vCPU machine of BENCHMARKS.md.
 *
 * SCHED_IDLE threads get almost no CPU while normal tasks want it, so a
 * busy CPU would starve its queue.  starvation_guard() (every
 * RLFS_URING_GUARD_MS) reads each ring thread's CPU time and runqueue wait
 * (/proc/self/task/TID/schedstat, ns).  A thread that waited for the CPU
 * more than a quarter of the interval while running less than an eighth
 * of its wait is starved (a ring thread preempted by the application it
 * just woke also waits, but then runs again as soon as the application's
 * next request blocks it) and runs SCHED_OTHER for RLFS_URING_NORMAL_TICKS
 * intervals.
 */
#define RLFS_URING_GUARD_MS 20
#define RLFS_URING_NORMAL_TICKS 100

/* Whether a SCHED_IDLE thread may return to SCHED_OTHER (at nice 0):
 * root, or RLIMIT_NICE >= 20 (sched_setscheduler(2)).  Without that the
 * starvation guard could not help, so ring threads stay SCHED_OTHER. */
static bool idle_policy_ok(void)
{
	struct rlimit rl;
	if (geteuid() == 0)
		return true;
	return getrlimit(RLIMIT_NICE, &rl) == 0 && rl.rlim_cur >= 20;
}

static void set_policy(pthread_t t, int policy)
{
	struct sched_param sp = { 0 };
	pthread_setschedparam(t, policy, &sp);   /* best effort */
}

/* CPU time and runqueue wait of thread ktid in ns (0 if unknown). */
static void sched_times(pid_t ktid, uint64_t *run_ns, uint64_t *wait_ns)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", (int)ktid);
	unsigned long long run = 0, wait = 0;
	FILE *f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "%llu %llu", &run, &wait) != 2)
			run = wait = 0;
		fclose(f);
	}
	*run_ns = run;
	*wait_ns = wait;
}

static pthread_t g_guard_tid;
static bool g_guard_ok;

static void *starvation_guard(void *arg)
{
	(void)arg;
	const uint64_t limit_ns = RLFS_URING_GUARD_MS * 1000000ull / 4;
	while (!atomic_load(&g_stopping)) {
		struct timespec ts = { 0, RLFS_URING_GUARD_MS * 1000000L };
		nanosleep(&ts, NULL);
		for (unsigned i = 0; i < g_nqueues; i++) {
			struct ring_queue *q = &g_queues[i];
			pid_t ktid = atomic_load(&q->ktid);
			if (!ktid)
				continue;
			uint64_t r, w;
			sched_times(ktid, &r, &w);
			uint64_t dw = w - q->wait_ns, dr = r - q->run_ns;
			bool starved = dw > limit_ns && dr < dw / 8;
			q->run_ns = r;
			q->wait_ns = w;
			if (starved) {
				if (!q->normal_ticks)
					set_policy(q->tid, SCHED_OTHER);
				q->normal_ticks = RLFS_URING_NORMAL_TICKS;
			} else if (q->normal_ticks && --q->normal_ticks == 0 && idle_policy_ok() &&
				   !atomic_load(&q->bulk_inflight)) {
				set_policy(q->tid, SCHED_IDLE);
			}
		}
	}
	return NULL;
}

/*
 * Ring setup happens before the INIT reply asks for io_uring (see
 * probe_ring): start_rings starts the threads, each creates its ring and
 * reports (setup_report), and waits for the verdict (g_go: 1 register,
 * -1 leave) that uring_writev gives once it knows whether every ring
 * exists and the INIT reply went out.
 */
static pthread_mutex_t g_setup_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_setup_cond = PTHREAD_COND_INITIALIZER;
static unsigned g_setup_ok, g_setup_failed;
static int g_go;

/* Ring thread: report whether the ring exists; returns the verdict. */
static int setup_report(bool ok)
{
	pthread_mutex_lock(&g_setup_lock);
	if (ok)
		g_setup_ok++;
	else
		g_setup_failed++;
	pthread_cond_broadcast(&g_setup_cond);
	while (g_go == 0)
		pthread_cond_wait(&g_setup_cond, &g_setup_lock);
	int go = g_go;
	pthread_mutex_unlock(&g_setup_lock);
	return go;
}

static void set_go(int go)
{
	pthread_mutex_lock(&g_setup_lock);
	g_go = go;
	pthread_cond_broadcast(&g_setup_cond);
	pthread_mutex_unlock(&g_setup_lock);
}

/* Create q's ring with SQE128 and extra flags.  The completion queue holds
 * a completion for every entry the ring can have (RLFS_URING_MAX_ENTS)
 * plus the eventfd read, so it cannot overflow.  0 or -errno. */
static int ring_init(struct ring_queue *q, unsigned flags)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE | flags;
	p.cq_entries = 2 * RLFS_URING_MAX_ENTS;
	return io_uring_queue_init_params(64, &q->ring, &p);
}

static void *ring_thread(void *arg)
{
	struct ring_queue *q = arg;
	sched_times(gettid(), &q->run_ns, &q->wait_ns);
	atomic_store(&q->ktid, gettid());
	if (g_guard_ok && idle_policy_ok())
		set_policy(pthread_self(), SCHED_IDLE);
	/* Only this thread submits (see the header comment), so the kernel
	 * may run completions only when it waits (DEFER_TASKRUN, 6.1+). */
	int err = ring_init(q, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
	if (err == -EINVAL)
		err = ring_init(q, 0);
	if (err < 0)
		ulog("qid %u: io_uring_queue_init: %s", q->qid, strerror(-err));
	else
		q->ring_ok = true;
	if (setup_report(err >= 0) < 0 || err < 0)
		return NULL;
	for (unsigned j = 0; j < RLFS_URING_DEPTH; j++)
		add_ent(q);
	submit(q, NULL, 0, 0);          /* arm the wake-up read */
	unsigned wait_errors = 0;
	while (q->nlive > 0 && !q->failed && !atomic_load(&g_stopping)) {
		struct io_uring_cqe *cqe;
		err = io_uring_wait_cqe(&q->ring, &cqe);
		if (err == -EINTR)
			continue;
		if (err < 0) {
			/* EAGAIN/EBUSY: transient; anything else persists */
			if (!submit_transient(err) || ++wait_errors > RLFS_URING_RETRY_MAX) {
				fatal(q, "io_uring_wait_cqe", err);
				break;
			}
			retry_pause();
			continue;
		}
		wait_errors = 0;
		uint64_t tag = cqe->user_data;
		int res = cqe->res;
		io_uring_cqe_seen(&q->ring, cqe);
		if (tag == WAKE_TAG) {
			/* replies from other threads, or rlfs_uring_stop */
			flush_pending(q);
			continue;
		}
		struct ring_ent *e = (struct ring_ent *)(uintptr_t)tag;
		if (res == -EAGAIN) {
			/* registered before the kernel processed INIT */
			struct timespec ts = { 0, 1000 * 1000 };
			nanosleep(&ts, NULL);
			if (submit(q, e, FUSE_IO_URING_CMD_REGISTER, 0) != 0) {
				e->live = false;
				q->nlive--;
			}
			continue;
		}
		if (res < 0) {
			/* ENOTCONN, ECANCELED, ENODEV: connection ended */
			if (res != -ENOTCONN && res != -ECANCELED && res != -ENODEV &&
			    !atomic_load(&g_stopping))
				ulog("qid %u: command failed: %s", q->qid, strerror(-res));
			atomic_store(&e->unique, 0);
			e->live = false;
			q->nlive--;
			continue;
		}
		serve_request(e);
		maybe_grow(q);
	}
	return NULL;
}

static void free_queue(struct ring_queue *q)
{
	unsigned n = atomic_load(&q->nents);
	for (unsigned j = 0; j < n; j++) {
		free(q->ents[j]->hdr);
		munmap(q->ents[j]->mem, RLFS_URING_HEADROOM + q->ents[j]->payload_sz);
		free(q->ents[j]);
		q->ents[j] = NULL;
	}
	atomic_store(&q->nents, 0);
}

static int init_queue(struct ring_queue *q, unsigned qid)
{
	q->qid = qid;
	pthread_mutex_init(&q->pending_lock, NULL);
	q->efd = eventfd(0, EFD_CLOEXEC);
	if (q->efd < 0)
		return -errno;
	return 0;
}

/* Rings (each with its own thread) per CPU queue.  The kernel hands a
 * request to the entry that became free last (fs/fuse/dev_uring.c: freed
 * entries go to the head of ent_avail_queue), so a ring thread that blocks
 * in a handler (fsync, a small read from disk) keeps receiving requests
 * until its free entries are used up; only then do they go to another ring
 * of the queue.  With several rings such a stall is bounded; bulk data
 * requests leave the ring thread altogether (bulk threads). */
#define RLFS_URING_RINGS_PER_QUEUE 4
/* Each ring has a thread (and up to RLFS_URING_MAX_ENTS payload buffers,
 * mapped lazily), and the kernel wants a queue for every possible CPU, so
 * big machines get fewer rings per queue: at most about this many rings
 * for the CPUs we may run on, and one ring for each other possible CPU
 * (offline, or outside our affinity mask: no application of ours asks
 * there, but the kernel waits until every queue has an entry). */
#define RLFS_URING_RINGS_TARGET 16

/* Rings of queue qid: RLFS_URING_RINGS_PER_QUEUE on a small machine. */
static unsigned rings_for(unsigned qid, unsigned nusable, const cpu_set_t *usable)
{
	if (qid >= CPU_SETSIZE || !CPU_ISSET(qid, usable))
		return 1;
	unsigned r = RLFS_URING_RINGS_TARGET / (nusable ? nusable : 1);
	if (r > RLFS_URING_RINGS_PER_QUEUE)
		r = RLFS_URING_RINGS_PER_QUEUE;
	return r ? r : 1;
}

/* Start the rings (after the INIT reply reached the kernel).  Errors are
 * logged; requests then keep coming through /dev/fuse. */
static bool start_rings(void)
{
	unsigned ncpu = possible_cpus();
	if (ncpu == 0) {
		ulog("cannot read /sys/devices/system/cpu/possible");
		return false;
	}
	cpu_set_t usable;
	CPU_ZERO(&usable);
	if (sched_getaffinity(0, sizeof(usable), &usable) != 0)
		for (unsigned c = 0; c < ncpu && c < CPU_SETSIZE; c++)
			CPU_SET(c, &usable);
	unsigned nusable = (unsigned)CPU_COUNT(&usable), n = 0;
	for (unsigned qid = 0; qid < ncpu; qid++)
		n += rings_for(qid, nusable, &usable);
	g_queues = calloc(n, sizeof(*g_queues));
	if (!g_queues) {
		ulog("out of memory");
		return false;
	}
	g_nqueues = n;
	/* ring i serves queue g_queues[i].qid; a queue's rings are spread
	 * over the array (round robin) as before */
	for (unsigned i = 0, r = 0; i < n; r++) {
		for (unsigned qid = 0; qid < ncpu && i < n; qid++) {
			if (r < rings_for(qid, nusable, &usable))
				g_queues[i++].qid = qid;
		}
	}
	for (unsigned i = 0; i < n; i++)
		g_queues[i].efd = -1;
	/* find_ent may scan from now on: entries not set up have unique 0 */
	atomic_store(&g_started, true);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	bulk_start();
	/* before the ring threads: they use SCHED_IDLE only if it runs */
	g_guard_ok = pthread_create(&g_guard_tid, NULL, starvation_guard, NULL) == 0;
	unsigned started = 0;
	for (unsigned i = 0; i < n; i++) {
		struct ring_queue *q = &g_queues[i];
		unsigned qid = q->qid;
		int err = init_queue(q, qid);
		if (err) {
			ulog("queue %u: %s", qid, strerror(-err));
			break;
		}
		pthread_attr_t a;
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(qid, &set);
		pthread_attr_init(&a);
		pthread_attr_setaffinity_np(&a, sizeof(set), &set);
		err = pthread_create(&q->tid, &a, ring_thread, q);
		pthread_attr_destroy(&a);
		if (err == EINVAL) {
			/* CPU offline or outside our cpuset: the queue still
			 * needs a thread for the ring to become ready */
			err = pthread_create(&q->tid, NULL, ring_thread, q);
		}
		if (err) {
			ulog("queue %u: cannot start thread: %s", qid, strerror(err));
			break;
		}
		q->thread_ok = true;
		started++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_mutex_lock(&g_setup_lock);
	while (g_setup_ok + g_setup_failed < started)
		pthread_cond_wait(&g_setup_cond, &g_setup_lock);
	bool ok = started == n && g_setup_failed == 0;
	pthread_mutex_unlock(&g_setup_lock);
	return ok;
}

void rlfs_uring_quiesce(void)
{
	if (!atomic_load(&g_started) || atomic_load(&g_stopping))
		return;
	atomic_store(&g_stopping, true);
	if (g_guard_ok)
		pthread_join(g_guard_tid, NULL);
	g_guard_ok = false;
	/* ring threads first: after them nothing hands work to the bulk
	 * threads, which then finish what is queued */
	for (unsigned i = 0; i < g_nqueues; i++) {
		struct ring_queue *q = &g_queues[i];
		if (!q->thread_ok)
			continue;
		wake(q);
		pthread_join(q->tid, NULL);
		q->thread_ok = false;
	}
	bulk_stop();
}

void rlfs_uring_stop(void)
{
	if (!atomic_load(&g_started))
		return;
	rlfs_uring_quiesce();
	bool all_ended = true;
	for (unsigned i = 0; i < g_nqueues; i++) {
		struct ring_queue *q = &g_queues[i];
		if (q->nlive)
			all_ended = false;
		if (q->ring_ok)
			io_uring_queue_exit(&q->ring);
		q->ring_ok = false;
		if (q->efd >= 0)
			close(q->efd);
		q->efd = -1;
	}
	atomic_store(&g_started, false);
	/* Commands still registered are cancelled asynchronously by the ring's
	 * teardown; until the connection is gone the kernel may still copy a
	 * request into their buffers, so those stay allocated (reachable). */
	if (all_ended) {
		for (unsigned i = 0; i < g_nqueues; i++)
			free_queue(&g_queues[i]);
		free(g_queues);
		g_queues = NULL;
		g_nqueues = 0;
	}
}

/* ------------------------------------------------------------------ */
/* custom io */

/* Add to libfuse's INIT reply (iov[1] is struct fuse_init_out) what
 * libfuse 3.14 cannot ask for: FUSE_HANDLE_KILLPRIV_V2 if the kernel
 * offered it, FUSE_DIRECT_IO_ALLOW_MMAP if wanted (-o dax) and offered,
 * and with uring FUSE_OVER_IO_URING (then the payload size is taken from
 * the reply too).  The flags2 bits count only with FUSE_INIT_EXT in flags
 * (fs/fuse/inode.c process_init_reply). */
static void init_patch(struct iovec *iov, int count, char *copy, size_t cap, bool uring)
{
	if (count < 2 || iov[1].iov_len < INIT_OUT_FLAGS2 + 4 || iov[1].iov_len > cap)
		return;
	memcpy(copy, iov[1].iov_base, iov[1].iov_len);
	uint32_t flags, flags2, max_write;
	uint16_t max_pages;
	memcpy(&flags, copy + INIT_OUT_FLAGS, 4);
	memcpy(&flags2, copy + INIT_OUT_FLAGS2, 4);
	memcpy(&max_write, copy + INIT_OUT_MAX_WRITE, 4);
	memcpy(&max_pages, copy + INIT_OUT_MAX_PAGES, 2);
	if (g_killpriv_v2 && (atomic_load(&g_init_in_flags) & FUSE_HANDLE_KILLPRIV_V2))
		flags |= FUSE_HANDLE_KILLPRIV_V2;
	/* the kernel then tells an ACL setxattr that must clear setgid
	 * (rewrite_request folds it into the flags libfuse passes on) */
	if (atomic_load(&g_init_in_flags) & FUSE_SETXATTR_EXT) {
		flags |= FUSE_SETXATTR_EXT;
		atomic_store(&g_setxattr_ext, true);
	}
	if (g_direct_mmap && (atomic_load(&g_init_in_flags2) & FUSE_DIRECT_IO_ALLOW_MMAP_FLAGS2)) {
		flags |= FUSE_INIT_EXT;
		flags2 |= FUSE_DIRECT_IO_ALLOW_MMAP_FLAGS2;
	} else if (g_direct_mmap && !uring) {    /* once: the plain reply comes first */
		fprintf(stderr, "reflinkfs: the kernel does not offer FUSE_DIRECT_IO_ALLOW_MMAP "
			"(Linux 6.6+): a shared mmap of a file is ENODEV under -o dax\n");
	}
	if (uring) {
		flags |= FUSE_INIT_EXT;
		flags2 |= FUSE_OVER_IO_URING_FLAGS2;
	}
	memcpy(copy + INIT_OUT_FLAGS, &flags, 4);
	memcpy(copy + INIT_OUT_FLAGS2, &flags2, 4);
	iov[1].iov_base = copy;
	if (!uring)
		return;
	/* kernel: payload >= max(max_write, max_pages * PAGE_SIZE, 8 KiB) */
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t sz = max_write;
	if ((size_t)max_pages * page > sz)
		sz = (size_t)max_pages * page;
	if (sz < 8192)
		sz = 8192;
	g_payload_sz = (sz + page - 1) / page * page + page;
}

/*
 * Turn a request that libfuse 3.14 cannot parse into one it can, in place
 * (buf holds the whole request, len bytes); returns the new length.
 *  - FUSE_TMPFILE (O_TMPFILE; libfuse answers ENOSYS and the kernel then
 *    gives up on it) has FUSE_CREATE's arguments (fuse_create_in, then the
 *    name, which is "/" for a tmpfile: the kernel's dentry placeholder,
 *    fs/namei.c vfs_tmpfile) and reply (entry + open): it becomes a CREATE
 *    of "/", a name no real CREATE can carry, which the create handler
 *    serves as O_TMPFILE (RLFS_FUSE_TMPFILE_NAME).
 *  - FUSE_SETXATTR in the extended layout (we asked for FUSE_SETXATTR_EXT)
 *    becomes the compat layout libfuse 3.14 reads, with the kernel's
 *    FUSE_SETXATTR_ACL_KILL_SGID moved into the flags the setxattr
 *    handler gets (RLFS_FUSE_XATTR_KILL_SGID).
 */
static size_t rewrite_request(char *buf, size_t len)
{
	struct fuse_in_header_k in;
	if (len < sizeof(in))
		return len;
	memcpy(&in, buf, sizeof(in));
	if (in.len != len || in.total_extlen != 0)
		return len;
	char *arg = buf + sizeof(in);
	size_t alen = len - sizeof(in);
	if (in.opcode == FUSE_OPCODE_TMPFILE) {
		if (alen >= FUSE_CREATE_IN_SIZE + 2 && arg[FUSE_CREATE_IN_SIZE] == '/' &&
		    arg[FUSE_CREATE_IN_SIZE + 1] == '\0') {
			in.opcode = FUSE_OPCODE_CREATE;
			memcpy(buf, &in, sizeof(in));
		}
	} else if (in.opcode == FUSE_OPCODE_SETXATTR && atomic_load(&g_setxattr_ext) &&
		   alen >= FUSE_SETXATTR_IN_SIZE) {
		uint32_t size, flags, sflags;
		memcpy(&size, arg, 4);
		memcpy(&flags, arg + 4, 4);
		memcpy(&sflags, arg + 8, 4);
		if (sflags & FUSE_SETXATTR_ACL_KILL_SGID)
			flags |= RLFS_FUSE_XATTR_KILL_SGID;
		memcpy(arg + 4, &flags, 4);
		memmove(arg + FUSE_COMPAT_SETXATTR_IN_SIZE, arg + FUSE_SETXATTR_IN_SIZE,
			alen - FUSE_SETXATTR_IN_SIZE);
		len -= FUSE_SETXATTR_IN_SIZE - FUSE_COMPAT_SETXATTR_IN_SIZE;
		in.len = (uint32_t)len;
		memcpy(buf, &in, sizeof(in));
	}
	return len;
}

static ssize_t uring_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	ssize_t n = read(fd, buf, len);
	if (n > 0)
		n = (ssize_t)rewrite_request(buf, (size_t)n);
	if (n >= (ssize_t)sizeof(struct fuse_in_header_k)) {
		struct fuse_in_header_k in;
		memcpy(&in, buf, sizeof(in));
		if (in.opcode == FUSE_OPCODE_INIT) {
			uint32_t flags = 0, flags2 = 0;
			if ((size_t)n >= sizeof(in) + INIT_IN_FLAGS + 4)
				memcpy(&flags, (char *)buf + sizeof(in) + INIT_IN_FLAGS, 4);
			if ((flags & FUSE_INIT_EXT) && (size_t)n >= sizeof(in) + INIT_IN_FLAGS2 + 4)
				memcpy(&flags2, (char *)buf + sizeof(in) + INIT_IN_FLAGS2, 4);
			atomic_store(&g_init_in_flags, flags);
			atomic_store(&g_init_in_flags2, flags2);
			atomic_store(&g_init_unique, in.unique);
		}
	}
	return n;
}

static ssize_t uring_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	struct fuse_out_header_k out;
	if (count < 1 || iov[0].iov_len < sizeof(out))
		return writev(fd, iov, count);
	memcpy(&out, iov[0].iov_base, sizeof(out));
	if (out.unique != 0) {
		struct ring_ent *e = find_ent(out.unique);
		if (e)
			return commit_reply(e, iov, count);
	}
	uint64_t init = atomic_load(&g_init_unique);
	if (init == 0 || out.unique != init || out.error != 0)
		return writev(fd, iov, count);
	atomic_store(&g_init_unique, 0);
	char copy[256], plain_copy[256];
	struct iovec v[8], plain[8];
	if (count > 8)
		return writev(fd, iov, count);
	memcpy(plain, iov, (size_t)count * sizeof(*plain));
	init_patch(plain, count, plain_copy, sizeof(plain_copy), false);
	if (!g_uring)
		return writev(fd, plain, count);
	memcpy(v, iov, (size_t)count * sizeof(*v));
	init_patch(v, count, copy, sizeof(copy), true);
	/* every ring must exist before the reply asks for io_uring */
	if (!g_payload_sz || atomic_load(&g_started) || !start_rings()) {
		ulog("cannot set up the rings; using /dev/fuse");
		set_go(-1);
		rlfs_uring_stop();
		return writev(fd, plain, count);        /* without io_uring */
	}
	ssize_t n = writev(fd, v, count);
	set_go(n >= 0 ? 1 : -1);
	return n;
}

/*
 * Once the INIT reply has asked for io_uring, the kernel holds every new
 * request until all queues have a ring entry (fs/fuse/dev.c
 * fuse_block_alloc): a daemon that then cannot set up its rings hangs the
 * mount.  So check first that this process may create a ring of the kind
 * the ring threads use (io_uring_disabled sysctl, seccomp, memlock).
 * 0 or -errno.
 */
static int probe_ring(void)
{
	struct io_uring ring;
	int err = io_uring_queue_init(8, &ring, IORING_SETUP_SQE128);
	if (err < 0)
		return err;
	io_uring_queue_exit(&ring);
	return 0;
}

int rlfs_fuse_io_install(struct fuse_session *se, bool uring, bool direct_mmap,
			 void (*on_fatal)(int err))
{
	g_on_fatal = on_fatal;
	/* RLFS_NO_DIRECT_IO_MMAP=1: as on kernels without it (to compare) */
	const char *no_dm = getenv("RLFS_NO_DIRECT_IO_MMAP");
	g_direct_mmap = direct_mmap && !(no_dm && strcmp(no_dm, "1") == 0);
	const char *fail = getenv("RLFS_URING_FAIL_COMMIT");
	if (fail && *fail)
		g_fail_commit_after = strtol(fail, NULL, 10);
	/* RLFS_NO_KILLPRIV_V2=1: as on kernels without it (to compare) */
	const char *no_v2 = getenv("RLFS_NO_KILLPRIV_V2");
	g_killpriv_v2 = !(no_v2 && strcmp(no_v2, "1") == 0);
	int err = 0;
	g_uring = false;
	if (uring) {
		err = probe_ring();
		if (err)
			ulog("cannot create an io_uring: %s; using /dev/fuse", strerror(-err));
		else if ((err = enable_param()) != 0)
			ulog("cannot enable %s: %s; using /dev/fuse", RLFS_URING_PARAM,
			     strerror(-err));
		else
			g_uring = true;
	}
	static const struct fuse_custom_io io = {
		.read = uring_read,
		.writev = uring_writev,
	};
	g_se = se;
	g_fd = fuse_session_fd(se);
	int e2 = fuse_session_custom_io(se, &io, g_fd);
	if (e2) {
		ulog("cannot install the custom io: %s", strerror(-e2));
		g_uring = false;
		return e2;
	}
	return err;
}

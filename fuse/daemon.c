/*
 * daemon.c: the reflinkfs FUSE daemon, libfuse3 low-level API.
 *
 * Every operation maps onto one call of the public library API
 * (include/reflinkfs/fs.h); library errors are negative errno values and
 * are replied with the sign flipped.  FUSE node ids are the on-disk inode
 * numbers except the root: the kernel calls it FUSE_ROOT_ID (1), the
 * library rlfs_root_ino().  An inode number is never 1 (fsbno 0 holds the
 * superblock), so the mapping is unambiguous.
 *
 * Lookup counts: every reply that hands the kernel an entry (lookup,
 * create, mknod, mkdir, symlink, link, readdirplus) carries one count that
 * the library added; rlfs_forget drops them (fuse_lowlevel.h: forget).  The
 * root's count is not tracked by the kernel the same way (it holds it
 * implicitly from mount time and never forgets it), so counts the library
 * adds for the root are dropped at once and forgets of FUSE_ROOT_ID are
 * ignored.  Entries the kernel never received (the reply could not be
 * sent, or readdirplus's "." and "..", which the kernel does not link) are
 * forgotten again here.
 *
 * Reflink: copy_file_range clones the block-aligned part (rl_copy_file_range);
 * the private ioctls of reflinkfs/ioctl.h (clone, clone range, extent map,
 * unshare) resolve the caller's file descriptors through /proc and apply
 * the kernel's checks in the kernel's order (do_clone), flush dirty pages
 * first, and afterwards invalidate the destination's cached pages and
 * raise its cached size (after_change).
 *
 * Kernel caching: the writeback cache is on, so the kernel owns file size
 * and mtime while it holds dirty pages and sends large (1 MiB) writes from
 * writeback.  Two consequences handled here: lseek(SEEK_DATA/SEEK_HOLE) and
 * ioctls are not preceded by a flush in the kernel, so the daemon makes
 * the kernel write the file's dirty pages back and waits for the
 * resulting WRITEs first (flush_and_wait); and a clean
 * shutdown on SIGTERM must unmount while the loop still serves requests,
 * so that the kernel can write its dirty pages back (monitor_thread).
 *
 * Threads: RLFS_WORKERS request threads (worker_thread: our own loop over
 * fuse_session_receive_buf/fuse_session_process_buf instead of
 * fuse_session_loop_mt, because on kernels before 6.16 flush_and_wait
 * needs to know which WRITEs have been read but not yet processed),
 * RLFS_SLOW_THREADS threads for the
 * requests that must flush and wait for WRITEs (the private ioctls and
 * SEEK_DATA/SEEK_HOLE with possibly dirty pages; slow_submit), a signal
 * monitor, after daemonizing a thread that forwards stderr to syslog, and
 * with FUSE over io_uring the ring and bulk threads of fuse/uring.c (the
 * /dev/fuse workers keep serving FORGET and INTERRUPT).  Reads and writes
 * of different files run in parallel (the library locks per inode).
 *
 * Unmount: the kernel does not wait for a FUSE daemon (non-fuseblk mounts
 * get no DESTROY), so umount(2) returns before rlfs_mount_close has run.
 * The daemon holds the image's flock until it has flushed and closed, so
 * waiters take the lock: `reflinkfs umount` (rlfs_daemon_umount) does, and
 * so do fsck and the test helpers.
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

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
#include "uring.h"

extern char **environ;

/* Attribute and entry cache lifetime (seconds): the library is the only
 * writer of the image, so the kernel's cache can only be stale through
 * operations that it performs itself. */
/* Attributes: the kernel invalidates its copy on every operation that
 * changes them through this mount (write, fallocate, setattr, link...),
 * and ioctl-driven changes (clone) notify it explicitly. */
#define RLFS_FUSE_TIMEOUT 3600.0
/* Names change only through this mount, and the kernel updates its own
 * dentry cache for every namespace operation it sends us, so entries can
 * be cached long (attributes keep the short timeout: st_blocks changes
 * behind the writeback cache). */
#define RLFS_FUSE_ENTRY_TIMEOUT 3600.0
#define RLFS_FUSE_MAX_WRITE (1u << 20)

/* Whether rlfs_readdir(plus) adds a lookup count for "." and "..": fs.h
 * says every entry passed to fn with plus set gets one. */
#define RLFS_DOTS_COUNTED 1

static struct rlfs_mount *g_mp;         /* NULL after destroy */
static uint64_t g_root;                 /* rlfs_root_ino() */
static struct fuse_session *g_se;
static char *g_mnt;                     /* absolute mount point */
static int g_close_err;                 /* from rlfs_mount_close in destroy */
static bool g_daemonized;
static atomic_int g_init_done;          /* init was called */

/* Files open for writing (kernel may hold dirty pages for them) and a
 * generation of write opens, for the lseek flush (see rl_lseek). */
static atomic_long g_nwopen;
static atomic_ulong g_wgen, g_synced_gen;

static pthread_key_t g_bufkey;          /* per-thread read buffer */

/* fi->fh of an open regular file: RLFS_FH_FILE | its open flags (an ioctl
 * request carries fh but not the flags; see open_flags, rl_ioctl). */
#define RLFS_FH_FILE (1ull << 62)

static void unescape_mountinfo(char *s);

struct tlbuf {
	size_t cap;
	char data[];
};

/* ------------------------------------------------------------------ */
/* logging: stderr in the foreground; after daemonizing stderr is a pipe
 * read by log_thread and sent to syslog. */

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ------------------------------------------------------------------ */
/* node id <-> inode number */

static inline uint64_t n2i(fuse_ino_t n)
{
	return n == FUSE_ROOT_ID ? g_root : (uint64_t)n;
}

static inline fuse_ino_t i2n(uint64_t ino)
{
	return ino == g_root ? FUSE_ROOT_ID : (fuse_ino_t)ino;
}

#define GET_MP(req, mp)                                   \
	struct rlfs_mount *mp = g_mp;                     \
	do {                                              \
		if (!mp) {                                \
			fuse_reply_err(req, EIO);         \
			return;                           \
		}                                         \
	} while (0)

static void reply_status(fuse_req_t req, int err)
{
	fuse_reply_err(req, err < 0 ? -err : 0);
}

static void fill_entry(struct fuse_entry_param *e, const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = i2n(st->st_ino);
	e->generation = 0;
	e->attr = *st;
	e->attr_timeout = RLFS_FUSE_TIMEOUT;
	e->entry_timeout = RLFS_FUSE_ENTRY_TIMEOUT;
}

/* Drop a lookup count the library added for an entry the kernel did not
 * take (or for the root, whose count the kernel does not track). */
static void undo_lookup(struct rlfs_mount *mp, uint64_t ino)
{
	rlfs_forget(mp, ino, 1);
}

/* Reply with a new entry whose lookup count the library already added. */
static void reply_entry(fuse_req_t req, struct rlfs_mount *mp, const struct stat *st)
{
	struct fuse_entry_param e;
	fill_entry(&e, st);
	if (st->st_ino == g_root) {
		undo_lookup(mp, g_root);
		fuse_reply_entry(req, &e);
		return;
	}
	if (fuse_reply_entry(req, &e) != 0)
		undo_lookup(mp, st->st_ino);
}

static const struct fuse_ctx *req_ctx(fuse_req_t req)
{
	return fuse_req_ctx(req);
}

/* Owner of a new inode in dir: the caller's fsuid/fsgid, or the
 * directory's group if it is setgid (and directories inherit S_ISGID),
 * as Linux does (inode_init_owner). */
static void new_owner(fuse_req_t req, struct rlfs_mount *mp, uint64_t dir,
		      mode_t *mode, uid_t *uid, gid_t *gid)
{
	const struct fuse_ctx *ctx = req_ctx(req);
	struct stat dst;
	*uid = ctx->uid;
	*gid = ctx->gid;
	if (rlfs_getattr(mp, dir, &dst) == 0 && (dst.st_mode & S_ISGID)) {
		*gid = dst.st_gid;
		if (S_ISDIR(*mode))
			*mode |= S_ISGID;
	}
}

static bool writable_open(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY;
}

static int fh_flags(const struct fuse_file_info *fi, bool *known);

/* ------------------------------------------------------------------ */
/* init / destroy */

static void rl_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_WRITEBACK_CACHE)
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;   /* targets never change */
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	/* the private ioctls on a directory fd must reach rl_ioctl, which
	 * answers like the kernel's FICLONE does (EISDIR) */
	if (conn->capable & FUSE_CAP_IOCTL_DIR)
		conn->want |= FUSE_CAP_IOCTL_DIR;
	/* One directory operation at a time per directory (i_rwsem held
	 * exclusively by the VFS); truncation on open arrives as a setattr.
	 * Not the old FUSE_HANDLE_KILLPRIV (always kill, even for root):
	 * fuse/uring.c's custom io asks for FUSE_HANDLE_KILLPRIV_V2 in the
	 * INIT reply instead (libfuse 3.14 cannot), see rlfs_fuse_io_install. */
	conn->want &= ~(unsigned)(FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_ATOMIC_O_TRUNC |
				  FUSE_CAP_HANDLE_KILLPRIV);
	/* Requests of up to 1 MiB of data: libfuse's buffer holds
	 * FUSE_MAX_MAX_PAGES (256) pages plus the header, and it tells the
	 * kernel max_pages = max_write / page size (FUSE_MAX_PAGES), so
	 * writeback sends whole 1 MiB writes. */
	conn->max_write = RLFS_FUSE_MAX_WRITE;
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	conn->time_gran = 1;
	atomic_store(&g_init_done, 1);
}

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

static void rl_destroy(void *userdata)
{
	(void)userdata;
	struct rlfs_mount *mp = g_mp;
	if (!mp)
		return;
	g_mp = NULL;
	int err = rlfs_mount_close(mp);
	if (err) {
		g_close_err = err;
		logmsg("reflinkfs: error while flushing the filesystem at unmount: %s",
		       strerror(-err));
	}
}

/* ------------------------------------------------------------------ */
/* names */

static void rl_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	GET_MP(req, mp);
	struct stat st;
	int err = rlfs_lookup(mp, n2i(parent), name, &st);
	if (err) {
		reply_status(req, err);
		return;
	}
	reply_entry(req, mp, &st);
}

static void rl_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct rlfs_mount *mp = g_mp;
	if (mp && ino != FUSE_ROOT_ID)
		rlfs_forget(mp, ino, nlookup);
	fuse_reply_none(req);
}

static void rl_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct rlfs_mount *mp = g_mp;
	for (size_t i = 0; mp && i < count; i++) {
		if (forgets[i].ino != FUSE_ROOT_ID)
			rlfs_forget(mp, forgets[i].ino, forgets[i].nlookup);
	}
	fuse_reply_none(req);
}

/*
 * ENOSPC under the writeback cache.  A buffered write(2) only fills the
 * kernel's page cache; the WRITE that fails with ENOSPC comes later, from
 * writeback, and the kernel keeps that error for fsync(2) and close(2)
 * alone, so a writer that never syncs (`cat /dev/zero > f`) would go on
 * forever, its pages dropped as each writeback fails.
 *
 * The kernel's buffered write path refreshes stale attributes first, with
 * a GETATTR that carries the file handle (fs/fuse/file.c
 * fuse_cache_write_iter -> fuse_update_attributes; FUSE_GETATTR_FH), and
 * fails the write(2) with that GETATTR's error.  So when a WRITE fails for
 * lack of space, the node is remembered here and the kernel's attributes
 * are invalidated (FUSE_NOTIFY_INVAL_INODE, offset -1: attributes only,
 * no page is touched); while the filesystem stays full, a GETATTR for that
 * node through a file handle open for writing answers ENOSPC, and the
 * write(2) fails the way it does on a local filesystem.  stat(2) and
 * fstat(2) send no file handle and are answered as always.  Once space is
 * back (RLFS_FULL_BYTES available) the node is forgotten.  A handful of
 * slots is plenty: they only matter while the filesystem is full, and a
 * node pushed out early only costs one more failed writeback.
 */
#define RLFS_FULL_SLOTS 64
#define RLFS_FULL_BYTES RLFS_FUSE_MAX_WRITE
static pthread_mutex_t g_full_lock = PTHREAD_MUTEX_INITIALIZER;
static fuse_ino_t g_full_nodes[RLFS_FULL_SLOTS];
static unsigned g_full_next;            /* slot to reuse next */
static atomic_int g_nfull;              /* used slots: 0 on the fast path */

static void full_add(fuse_ino_t node)
{
	pthread_mutex_lock(&g_full_lock);
	bool known = false;
	for (int i = 0; i < RLFS_FULL_SLOTS; i++)
		known |= g_full_nodes[i] == node;
	if (!known) {
		if (g_full_nodes[g_full_next] == 0)
			atomic_fetch_add(&g_nfull, 1);
		g_full_nodes[g_full_next] = node;
		g_full_next = (g_full_next + 1) % RLFS_FULL_SLOTS;
	}
	pthread_mutex_unlock(&g_full_lock);
	/* the next write(2) then asks for attributes (see above) */
	fuse_lowlevel_notify_inval_inode(g_se, node, -1, 0);
}

/* Whether a write through a handle of node must fail with ENOSPC now. */
static bool full_refuses(struct rlfs_mount *mp, fuse_ino_t node)
{
	if (atomic_load(&g_nfull) == 0)
		return false;
	pthread_mutex_lock(&g_full_lock);
	int slot = -1;
	for (int i = 0; i < RLFS_FULL_SLOTS && slot < 0; i++)
		if (g_full_nodes[i] == node)
			slot = i;
	bool refuse = false;
	if (slot >= 0) {
		struct statvfs sv;
		refuse = rlfs_statfs(mp, &sv) == 0 &&
			 (uint64_t)sv.f_bavail * sv.f_frsize < RLFS_FULL_BYTES;
		if (!refuse) {
			g_full_nodes[slot] = 0;
			atomic_fetch_sub(&g_nfull, 1);
		}
	}
	pthread_mutex_unlock(&g_full_lock);
	return refuse;
}

static void rl_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	GET_MP(req, mp);
	bool known;
	if (writable_open(fh_flags(fi, &known)) && known && full_refuses(mp, ino)) {
		fuse_reply_err(req, ENOSPC);
		return;
	}
	struct stat st;
	int err = rlfs_getattr(mp, n2i(ino), &st);
	if (err) {
		reply_status(req, err);
		return;
	}
	fuse_reply_attr(req, &st, RLFS_FUSE_TIMEOUT);
}

static void rl_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)fi;
	GET_MP(req, mp);
	unsigned valid = 0;
	if (to_set & FUSE_SET_ATTR_MODE)
		valid |= RLFS_SET_MODE;
	if (to_set & FUSE_SET_ATTR_UID)
		valid |= RLFS_SET_UID;
	if (to_set & FUSE_SET_ATTR_GID)
		valid |= RLFS_SET_GID;
	if (to_set & FUSE_SET_ATTR_SIZE)
		valid |= RLFS_SET_SIZE;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		valid |= RLFS_SET_ATIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		valid |= RLFS_SET_ATIME;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		valid |= RLFS_SET_MTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		valid |= RLFS_SET_MTIME;
	if (to_set & FUSE_SET_ATTR_CTIME)
		valid |= RLFS_SET_CTIME;
	/* the kernel's FATTR_KILL_SUIDGID (same bit), sent under
	 * FUSE_HANDLE_KILLPRIV_V2 when the caller lacks CAP_FSETID */
	if (to_set & FUSE_SET_ATTR_KILL_SUID)
		valid |= RLFS_SET_KILL_SUIDGID;
	struct stat out;
	int err = rlfs_setattr(mp, n2i(ino), attr, valid, &out);
	if (err) {
		reply_status(req, err);
		return;
	}
	fuse_reply_attr(req, &out, RLFS_FUSE_TIMEOUT);
}

static void rl_readlink(fuse_req_t req, fuse_ino_t ino)
{
	GET_MP(req, mp);
	char buf[PATH_MAX + 1];
	int n = rlfs_readlink(mp, n2i(ino), buf, sizeof(buf) - 1);
	if (n < 0) {
		reply_status(req, n);
		return;
	}
	if ((size_t)n > sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

static void rl_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	GET_MP(req, mp);
	uid_t uid;
	gid_t gid;
	uint64_t dir = n2i(parent);
	new_owner(req, mp, dir, &mode, &uid, &gid);
	struct stat st;
	int err = rlfs_mknod(mp, dir, name, mode, rdev, uid, gid, &st);
	if (err) {
		reply_status(req, err);
		return;
	}
	reply_entry(req, mp, &st);
}

static void rl_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	GET_MP(req, mp);
	uid_t uid;
	gid_t gid;
	uint64_t dir = n2i(parent);
	mode = (mode & 07777) | S_IFDIR;
	new_owner(req, mp, dir, &mode, &uid, &gid);
	struct stat st;
	int err = rlfs_mkdir(mp, dir, name, mode, uid, gid, &st);
	if (err) {
		reply_status(req, err);
		return;
	}
	reply_entry(req, mp, &st);
}

static void rl_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	GET_MP(req, mp);
	uid_t uid;
	gid_t gid;
	mode_t mode = S_IFLNK | 0777;
	uint64_t dir = n2i(parent);
	new_owner(req, mp, dir, &mode, &uid, &gid);
	struct stat st;
	int err = rlfs_symlink(mp, dir, name, link, uid, gid, &st);
	if (err) {
		reply_status(req, err);
		return;
	}
	reply_entry(req, mp, &st);
}

static void rl_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	GET_MP(req, mp);
	struct stat st;
	int err = rlfs_link(mp, n2i(ino), n2i(newparent), newname, &st);
	if (err) {
		reply_status(req, err);
		return;
	}
	reply_entry(req, mp, &st);
}

static void rl_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	GET_MP(req, mp);
	reply_status(req, rlfs_unlink(mp, n2i(parent), name));
}

static void rl_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	GET_MP(req, mp);
	reply_status(req, rlfs_rmdir(mp, n2i(parent), name));
}

static void rl_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	GET_MP(req, mp);
	reply_status(req, rlfs_rename(mp, n2i(parent), name, n2i(newparent), newname, flags));
}

/* ------------------------------------------------------------------ */
/* files */

static void open_flags(struct fuse_file_info *fi)
{
	/* fh: the open flags, for the ioctls' open-mode checks (an ioctl
	 * request carries fh but not the flags) */
	fi->fh = RLFS_FH_FILE | (uint32_t)fi->flags;
	/* The page cache stays valid across opens: only this daemon writes
	 * the image, and every write passes through the kernel. */
	fi->keep_cache = 1;
	if (writable_open(fi->flags)) {
		atomic_fetch_add(&g_nwopen, 1);
		atomic_fetch_add(&g_wgen, 1);
	}
}

static void rl_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	GET_MP(req, mp);
	(void)ino;
	open_flags(fi);
	if (fuse_reply_open(req, fi) != 0 && writable_open(fi->flags))
		atomic_fetch_sub(&g_nwopen, 1);
}

static void rl_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	GET_MP(req, mp);
	uid_t uid;
	gid_t gid;
	uint64_t dir = n2i(parent);
	mode = (mode & 07777) | S_IFREG;
	new_owner(req, mp, dir, &mode, &uid, &gid);
	struct stat st;
	int err = rlfs_mknod(mp, dir, name, mode, 0, uid, gid, &st);
	if (err == -EEXIST && !(fi->flags & O_EXCL)) {
		/* Raced with another creator: open the existing file. */
		err = rlfs_lookup(mp, dir, name, &st);
		if (!err && S_ISDIR(st.st_mode)) {
			undo_lookup(mp, st.st_ino);
			err = -EISDIR;
		}
		if (!err && (fi->flags & O_TRUNC) && S_ISREG(st.st_mode)) {
			struct stat sz = { .st_size = 0 };
			err = rlfs_setattr(mp, st.st_ino, &sz, RLFS_SET_SIZE, &st);
			if (err)
				undo_lookup(mp, st.st_ino);
		}
	}
	if (err) {
		reply_status(req, err);
		return;
	}
	struct fuse_entry_param e;
	fill_entry(&e, &st);
	open_flags(fi);
	if (fuse_reply_create(req, &e, fi) != 0) {
		if (writable_open(fi->flags))
			atomic_fetch_sub(&g_nwopen, 1);
		undo_lookup(mp, st.st_ino);
	}
}

static void free_tlbuf(void *p)
{
	free(p);
}

static char *thread_buf(size_t size)
{
	struct tlbuf *b = pthread_getspecific(g_bufkey);
	if (b && b->cap >= size)
		return b->data;
	size_t cap = size < RLFS_FUSE_MAX_WRITE ? RLFS_FUSE_MAX_WRITE : size;
	struct tlbuf *nb = malloc(sizeof(*nb) + cap);
	if (!nb)
		return NULL;
	nb->cap = cap;
	free(b);
	pthread_setspecific(g_bufkey, nb);
	return nb->data;
}

static void rl_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)fi;
	GET_MP(req, mp);
	char *buf = thread_buf(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n = rlfs_read(mp, n2i(ino), buf, size, off);
	if (n < 0) {
		reply_status(req, (int)n);
		return;
	}
	fuse_reply_buf(req, buf, (size_t)n);
}

static void rl_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	GET_MP(req, mp);
	/* Writeback of cached pages (writepage): the kernel owns mtime and
	 * ctime under the writeback cache and sends them in a SETATTR from
	 * its inode writeback, which may reach us before this WRITE, so the
	 * write must not stamp its own; setuid/setgid were dealt with when
	 * the data entered the cache (the kernel's file_remove_privs, or
	 * under FUSE_HANDLE_KILLPRIV_V2 a write-through WRITE for a writer
	 * without CAP_FSETID).  Other WRITEs (write-through, O_DIRECT) stamp
	 * the times and drop setuid/setgid; libfuse 3.14 does not pass the
	 * kernel's FUSE_WRITE_KILL_SUIDGID, so a writer with CAP_FSETID loses
	 * them there too. */
	ssize_t n = rlfs_write_flags(mp, n2i(ino), buf, size, off,
				     fi && fi->writepage ? RLFS_WRITE_CACHED : 0);
	if (n < 0) {
		reply_status(req, (int)n);
	} else {
		fuse_reply_write(req, (size_t)n);
	}
	if (n == -ENOSPC || (n >= 0 && (size_t)n < size))
		full_add(ino);  /* after the reply: writeback may wait for it */
}

static void rl_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	if (writable_open(fi->flags))
		atomic_fetch_sub(&g_nwopen, 1);
	fuse_reply_err(req, 0);
}

static void rl_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)fi;
	GET_MP(req, mp);
	reply_status(req, rlfs_fsync(mp, n2i(ino), datasync));
}

static void rl_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
			 off_t length, struct fuse_file_info *fi)
{
	(void)fi;
	GET_MP(req, mp);
	reply_status(req, rlfs_fallocate(mp, n2i(ino), mode, offset, length));
}

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
#define RLFS_WHASH 1024
static atomic_int g_writes_inflight[RLFS_WHASH];   /* by nodeid hash */

static pthread_mutex_t g_barrier_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_barrier_cond = PTHREAD_COND_INITIALIZER;
struct barrier {
	pid_t tid;                      /* thread that opened the directory */
	bool opened, done;
	struct barrier *next;
};
static struct barrier *g_barriers;
#define RLFS_BARRIER_FH (1ull << 63)

static unsigned whash(uint64_t nodeid)
{
	return (unsigned)((nodeid * 0x9E3779B97F4A7C15ull) >> 54) % RLFS_WHASH;
}

/* opendir/releasedir hooks: is this the barrier of a waiting thread? */
static bool barrier_opened(pid_t pid)
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

static void barrier_released(pid_t tid)
{
	pthread_mutex_lock(&g_barrier_lock);
	for (struct barrier *b = g_barriers; b; b = b->next) {
		if (b->tid == tid && b->opened)
			b->done = true;
	}
	pthread_cond_broadcast(&g_barrier_cond);
	pthread_mutex_unlock(&g_barrier_lock);
}

static void deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
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
static bool g_wb_on_reply;
/* the daemon's CPU affinity at start, for threads created later */
static cpu_set_t g_affinity;
static bool g_affinity_ok;

/* mnt_fd: the mount's root (the daemon keeps no descriptor open on the
 * mount between flushes: it would make umount fail with EBUSY). */
static int flush_node(int mnt_fd, fuse_ino_t nodeid)
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
	h.fid[2] = 0;                   /* generation: fill_entry */
	int fd = open_by_handle_at(mnt_fd, &h.fh, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
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
static bool kernel_ends_writeback_on_reply(void)
{
	struct utsname u;
	unsigned major = 0, minor = 0;
	if (uname(&u) < 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2)
		return false;
	return major > 6 || (major == 6 && minor >= 16);
}

/* Older kernels: flush the whole mount and wait for the RELEASEDIR barrier
 * and the per-node WRITE counts (see the comment above g_writes_inflight). */
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
		close(fd);      /* queues the RELEASEDIR barrier */
	}
	struct timespec dl;
	deadline_in(&dl, 10000);
	pthread_mutex_lock(&g_barrier_lock);
	while (ok && !b.done) {
		if (pthread_cond_timedwait(&g_barrier_cond, &g_barrier_lock, &dl) == ETIMEDOUT)
			ok = false;
	}
	for (struct barrier **pp = &g_barriers; *pp; pp = &(*pp)->next) {
		if (*pp == &b) {
			*pp = b.next;
			break;
		}
	}
	pthread_mutex_unlock(&g_barrier_lock);
	if (!b.opened)
		ok = false;
	/* WRITEs read before the barrier are counted: wait for them. */
	for (int k = 0; k < n; k++) {
		atomic_int *cnt = &g_writes_inflight[whash(nodes[k])];
		for (int i = 0; i < 100000 && atomic_load(cnt) > 0; i++) {
			struct timespec ts = { 0, 50 * 1000 };
			nanosleep(&ts, NULL);
		}
	}
	return ok;
}

/* Whether flush_and_wait would have to flush. */
static bool need_flush(void)
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

/* Make the kernel write back its dirty pages of nodes[] (n of them) and
 * wait until the daemon has processed every resulting WRITE.  Skipped when
 * no file can have dirty pages (nothing open for writing since the last
 * flush). */
static void flush_and_wait(const fuse_ino_t *nodes, int n)
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

static void flush_for_seek(fuse_ino_t nodeid)
{
	flush_and_wait(&nodeid, 1);
}


/*
 * Requests that flush (flush_and_wait) block their thread until WRITE
 * requests have been processed by other threads.  If they ran on the
 * request threads, RLFS_WORKERS concurrent callers (parallel clones or
 * SEEK_DATAs) could occupy every thread while the WRITEs they wait for
 * sit unread: a deadlock.  So they are handed to a small pool of their
 * own (RLFS_SLOW_THREADS, started on first use) that replies itself;
 * the request threads stay free for the WRITEs.  A queued request keeps
 * copies of everything it needs from the request buffer.
 */
#define RLFS_SLOW_THREADS 4
struct slow_job {
	struct slow_job *next;
	void (*run)(struct slow_job *job);
	fuse_req_t req;
	fuse_ino_t ino;
	struct fuse_file_info fi;
	unsigned int cmd, flags;
	off_t off;
	int whence;
	size_t in_len, out_len;
	char in[];
};
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
static void slow_drain(void)
{
	pthread_mutex_lock(&g_slow_lock);
	while (g_slow_running || g_slow_head)
		pthread_cond_wait(&g_slow_idle, &g_slow_lock);
	pthread_mutex_unlock(&g_slow_lock);
}

/* Queue job (malloc'd; freed after it ran).  Runs it here if no pool
 * thread can be started. */
static void slow_submit(struct slow_job *job)
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

/* flush: make the kernel write back first (only on a slow-pool thread: a
 * request thread, above all an io_uring ring thread, must not wait for
 * WRITEs that may need it to be delivered) */
static void do_lseek(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino, off_t off,
		     int whence, bool flush)
{
	if (flush)
		flush_for_seek(ino);
	off_t r = rlfs_lseek(mp, n2i(ino), off, whence);
	if (r < 0) {
		reply_status(req, (int)r);
		return;
	}
	fuse_reply_lseek(req, r);
}

static void lseek_job(struct slow_job *job)
{
	struct rlfs_mount *mp = g_mp;
	if (!mp) {
		fuse_reply_err(job->req, EIO);
		return;
	}
	do_lseek(job->req, mp, job->ino, job->off, job->whence, true);
}

static void rl_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	(void)fi;
	GET_MP(req, mp);
	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (need_flush()) {
		struct slow_job *job = calloc(1, sizeof(*job));
		if (job) {
			job->run = lseek_job;
			job->req = req;
			job->ino = ino;
			job->off = off;
			job->whence = whence;
			slow_submit(job);
			return;
		}
	}
	/* nothing was open for writing when need_flush() looked */
	do_lseek(req, mp, ino, off, whence, false);
}

/* ------------------------------------------------------------------ */
/* directories */

static void rl_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	pid_t pid = req_ctx(req)->pid;
	fi->fh = 0;
	/* the daemon's own open of the root in flush_by_barrier() */
	if (ino == FUSE_ROOT_ID && barrier_opened(pid))
		fi->fh = RLFS_BARRIER_FH | (uint64_t)(uint32_t)pid;
	fuse_reply_open(req, fi);
}

static void rl_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	if (fi->fh & RLFS_BARRIER_FH)
		barrier_released((pid_t)(uint32_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void rl_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	(void)fi;
	GET_MP(req, mp);
	reply_status(req, rlfs_fsync(mp, n2i(ino), datasync));
}

struct dirbuf {
	fuse_req_t req;
	char *buf;
	size_t size, pos;
	int plus;
	/* plus: inodes whose lookup count went to the kernel with this reply
	 * (undone if the reply cannot be sent), and counts to drop after
	 * rlfs_readdir returns ("." and "..", the root). */
	uint64_t *sent;
	size_t nsent, cap;
	uint64_t drop[64];
	size_t ndrop;
	int oom;
};

static int is_dot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

static int dir_fill(void *priv, const char *name, const struct stat *st, uint64_t next_cookie)
{
	struct dirbuf *db = priv;
	size_t rem = db->size - db->pos;
	off_t off = (off_t)next_cookie;
	if (!db->plus) {
		size_t need = fuse_add_direntry(db->req, NULL, 0, name, NULL, 0);
		if (need > rem)
			return 1;
		fuse_add_direntry(db->req, db->buf + db->pos, rem, name, st, off);
		db->pos += need;
		return 0;
	}
	size_t need = fuse_add_direntry_plus(db->req, NULL, 0, name, NULL, 0);
	if (need > rem)
		return 1;
	struct fuse_entry_param e;
	bool dot = is_dot(name);
	bool root = st->st_ino == g_root;
	if (dot || root) {
		if (db->ndrop == sizeof(db->drop) / sizeof(db->drop[0]))
			return 1;   /* finish this reply first */
	} else if (db->nsent == db->cap) {
		size_t ncap = db->cap ? db->cap * 2 : 64;
		uint64_t *n = realloc(db->sent, ncap * sizeof(*n));
		if (!n) {
			db->oom = 1;
			return 1;
		}
		db->sent = n;
		db->cap = ncap;
	}
	if (dot) {
		/* The kernel does not link "." and ".." (no lookup count):
		 * give no node id, only the dirent's inode number and type. */
		memset(&e, 0, sizeof(e));
		e.attr.st_ino = st->st_ino;
		e.attr.st_mode = st->st_mode;
		if (RLFS_DOTS_COUNTED)
			db->drop[db->ndrop++] = st->st_ino;
	} else {
		fill_entry(&e, st);
		if (root)
			db->drop[db->ndrop++] = st->st_ino;
		else
			db->sent[db->nsent++] = st->st_ino;
	}
	fuse_add_direntry_plus(db->req, db->buf + db->pos, rem, name, &e, off);
	db->pos += need;
	return 0;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus)
{
	GET_MP(req, mp);
	struct dirbuf db = { .req = req, .size = size, .plus = plus };
	db.buf = malloc(size ? size : 1);
	if (!db.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	int err = rlfs_readdir(mp, n2i(ino), (uint64_t)off, plus, dir_fill, &db);
	if (err < 0 && db.pos == 0) {
		reply_status(req, err);
	} else if (db.pos == 0 && db.oom) {
		fuse_reply_err(req, ENOMEM);
	} else if (fuse_reply_buf(req, db.buf, db.pos) != 0) {
		for (size_t i = 0; i < db.nsent; i++)
			undo_lookup(mp, db.sent[i]);
	}
	for (size_t i = 0; i < db.ndrop; i++)
		undo_lookup(mp, db.drop[i]);
	free(db.sent);
	free(db.buf);
}

static void rl_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, 0);
}

static void rl_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, 1);
}

/* ------------------------------------------------------------------ */
/* filesystem-wide, xattrs */

static void rl_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	GET_MP(req, mp);
	struct statvfs st;
	int err = rlfs_statfs(mp, &st);
	if (err) {
		reply_status(req, err);
		return;
	}
	fuse_reply_statfs(req, &st);
}

/* POSIX ACLs are not supported (no FUSE_CAP_POSIX_ACL): the kernel would
 * store system.posix_acl_* as plain xattrs without applying them to the
 * mode or to permission checks, so refuse them like a filesystem mounted
 * without ACL support (cp -a and tar then fall back to chmod). */
static int is_posix_acl(const char *name)
{
	return strcmp(name, "system.posix_acl_access") == 0 ||
	       strcmp(name, "system.posix_acl_default") == 0;
}

static void rl_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	GET_MP(req, mp);
	if (is_posix_acl(name)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	reply_status(req, rlfs_setxattr(mp, n2i(ino), name, value, size, flags));
}

/* getxattr/listxattr: size 0 asks only for the length (fuse_reply_xattr),
 * otherwise the data in a buffer of size bytes.  fetch(mp, ino, name, buf,
 * size) is the library call: bytes or -errno. */
typedef int (*xattr_fetch_fn)(struct rlfs_mount *mp, fuse_ino_t ino, const char *name,
			      char *buf, size_t size);

static void reply_xattr_data(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino,
			     const char *name, size_t size, xattr_fetch_fn fetch)
{
	char *buf = NULL;
	if (size && !(buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	int n = fetch(mp, ino, name, buf, size);
	if (n < 0)
		reply_status(req, n);
	else if (!size)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static int fetch_xattr(struct rlfs_mount *mp, fuse_ino_t ino, const char *name, char *buf,
		       size_t size)
{
	return rlfs_getxattr(mp, n2i(ino), name, buf, size);
}

static int fetch_xattr_list(struct rlfs_mount *mp, fuse_ino_t ino, const char *name,
			    char *buf, size_t size)
{
	(void)name;
	return rlfs_listxattr(mp, n2i(ino), buf, size);
}

static void rl_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	GET_MP(req, mp);
	if (is_posix_acl(name)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	reply_xattr_data(req, mp, ino, name, size, fetch_xattr);
}

static void rl_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	GET_MP(req, mp);
	reply_xattr_data(req, mp, ino, NULL, size, fetch_xattr_list);
}

static void rl_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	GET_MP(req, mp);
	reply_status(req, rlfs_removexattr(mp, n2i(ino), name));
}

/* ------------------------------------------------------------------ */
/* reflink: copy_file_range and the private ioctls (reflinkfs/ioctl.h) */

/* Block size of the filesystem (statfs f_bsize), 0 if unknown. */
static uint64_t fs_blocksize(struct rlfs_mount *mp)
{
	static atomic_ulong bs;
	unsigned long v = atomic_load(&bs);
	if (v)
		return v;
	struct statvfs sv;
	if (rlfs_statfs(mp, &sv) != 0 || sv.f_bsize == 0 ||
	    (sv.f_bsize & (sv.f_bsize - 1)) != 0)
		return 0;
	atomic_store(&bs, sv.f_bsize);
	return sv.f_bsize;
}

static atomic_int g_no_reflink;         /* clone gave EOPNOTSUPP once */

/* Plain data copy of up to len bytes (at most RLFS_FUSE_MAX_WRITE per
 * call of this function); returns bytes copied (0 at source EOF) or
 * -errno. */
static ssize_t copy_data(struct rlfs_mount *mp, uint64_t src, uint64_t off_in, uint64_t dst,
			 uint64_t off_out, size_t len)
{
	char *buf = thread_buf(RLFS_FUSE_MAX_WRITE);
	if (!buf)
		return -ENOMEM;
	if (len > RLFS_FUSE_MAX_WRITE)
		len = RLFS_FUSE_MAX_WRITE;
	ssize_t n = rlfs_read(mp, src, buf, len, (off_t)off_in);
	if (n <= 0)
		return n;
	size_t done = 0;
	while (done < (size_t)n) {
		ssize_t w = rlfs_write(mp, dst, buf + done, (size_t)n - done,
				       (off_t)(off_out + done));
		if (w < 0)
			return done ? (ssize_t)done : w;
		if (w == 0)
			break;
		done += (size_t)w;
	}
	return (ssize_t)done;
}

/*
 * FUSE_COPY_FILE_RANGE (copy_file_range(2)).  The kernel has already
 * checked the open modes and file types, refused overlapping same-file
 * ranges, shortened len to the source EOF, written back and waited for the
 * dirty pages of both ranges (fuse_writeback_range), and after our reply
 * it drops the destination's cached pages in the range and updates its
 * size (fs/fuse/file.c __fuse_copy_file_range).  Whole blocks in the
 * middle are cloned (shared) when source and destination offsets have the
 * same alignment; the unaligned head and the tail (including a partial
 * EOF block) are copied.  A short count is fine: callers loop.
 */
static void rl_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	(void)fi_in;
	(void)fi_out;
	GET_MP(req, mp);
	uint64_t src = n2i(ino_in), dst = n2i(ino_out);
	if (flags != 0 || off_in < 0 || off_out < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	struct stat sst, dstt;
	int err = rlfs_getattr(mp, src, &sst);
	if (!err)
		err = rlfs_getattr(mp, dst, &dstt);
	if (err) {
		reply_status(req, err);
		return;
	}
	if (S_ISDIR(sst.st_mode) || S_ISDIR(dstt.st_mode)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (!S_ISREG(sst.st_mode) || !S_ISREG(dstt.st_mode)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* the reply's size is 32 bits (struct fuse_write_out) */
	if (len > (UINT32_MAX & ~(size_t)0xfff))
		len = UINT32_MAX & ~(size_t)0xfff;
	uint64_t in = (uint64_t)off_in, out = (uint64_t)off_out;
	uint64_t isize = (uint64_t)sst.st_size;
	if (in >= isize || len == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	if (len > isize - in)
		len = (size_t)(isize - in);
	if (src == dst && out + len > in && out < in + len) {
		fuse_reply_err(req, EINVAL);   /* copy_file_range(2): overlap */
		return;
	}
	unsigned kill = req_ctx(req)->uid != 0 ? RLFS_CLONE_KILL_SUID : 0;
	uint64_t bs = fs_blocksize(mp);
	uint64_t done = 0;
	int64_t r = 0;
	if (bs && (in & (bs - 1)) == (out & (bs - 1)) && !atomic_load(&g_no_reflink)) {
		uint64_t head = (bs - (in & (bs - 1))) & (bs - 1);
		/* a partial EOF block is shared too when the copy ends at the
		 * source EOF and lands at or past the destination EOF (the
		 * library refuses it otherwise: then it is copied) */
		bool to_eof = in + len == isize && ((len - head) & (bs - 1)) != 0;
		if (head < len && (len - head >= bs || to_eof)) {
			uint64_t mid = (len - head) & ~(bs - 1);
			/* head: copied */
			while (done < head) {
				ssize_t c = copy_data(mp, src, in + done, dst, out + done,
						      (size_t)(head - done));
				if (c <= 0) {
					r = c;
					goto reply;
				}
				done += (uint64_t)c;
			}
			/* middle (and maybe the EOF block): shared */
			uint64_t want = to_eof ? len - head : mid;
			r = rlfs_clone_range(mp, src, in + head, dst, out + head, want, kill);
			if (r == -EINVAL && to_eof && mid) {
				want = mid;
				r = rlfs_clone_range(mp, src, in + head, dst, out + head, want, kill);
			} else if (r == -EINVAL && to_eof) {
				r = 0;     /* EOF block mid-file: copy below */
				want = 0;
			}
			if (r == -EOPNOTSUPP)
				atomic_store(&g_no_reflink, 1);
			if (r < 0) {
				if (r != -EOPNOTSUPP && r != -EINVAL)
					goto reply;
				r = 0;     /* not clonable: copy below */
			} else {
				done += (uint64_t)r;
				if ((uint64_t)r < want)
					goto reply;   /* partial (ENOSPC midway) */
			}
		}
	}
	/* the rest (tail, or everything when not clonable): copied, at
	 * most a few MiB per request */
	while (done < len && done < 8u * RLFS_FUSE_MAX_WRITE) {
		ssize_t c = copy_data(mp, src, in + done, dst, out + done, (size_t)(len - done));
		if (c <= 0) {
			r = c;
			break;
		}
		done += (uint64_t)c;
		r = 0;
	}
reply:
	if (done == 0 && r < 0) {
		reply_status(req, (int)r);
		return;
	}
	fuse_reply_write(req, (size_t)done);
}

/* The image of this mount (realpath), for recognising our mount in
 * mountinfo. */
static char *g_image;

/* Is mount id mnt_id (as seen by process pid) this reflinkfs mount?  The
 * image is locked by this daemon, so "reflinkfs#IMAGE" names one mount
 * (bind mounts of it share the superblock and the source). */
static bool mnt_is_ours(pid_t pid, unsigned long mnt_id)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	char *line = NULL;
	size_t cap = 0;
	bool ours = false;
	while (!ours && getline(&line, &cap, f) > 0) {
		char *end;
		unsigned long id = strtoul(line, &end, 10);
		if (end == line || id != mnt_id)
			continue;
		char *sep = strstr(line, " - ");
		if (!sep)
			break;
		char *save = NULL;
		char *fstype = strtok_r(sep + 3, " \n", &save);
		char *source = strtok_r(NULL, " \n", &save);
		if (!fstype || !source || strcmp(fstype, "fuse.reflinkfs") != 0)
			break;
		unescape_mountinfo(source);
		if (strncmp(source, "reflinkfs#", 10) == 0 && g_image &&
		    strcmp(source + 10, g_image) == 0)
			ours = true;
		break;
	}
	free(line);
	fclose(f);
	return ours;
}

/*
 * Resolve the caller's file descriptor fd through
 * /proc/<pid>/fdinfo/<fd>: inode number, open flags, mount id.  0 with
 * *ino and *flags set; -EBADF if fd is not an open file of the caller (or
 * an O_PATH descriptor, which ioctls do not accept); -EXDEV if it is on
 * another filesystem or another reflinkfs mount.
 */
static int resolve_fd(pid_t pid, int64_t fd, uint64_t *ino, int *flags)
{
	if (fd < 0 || fd > INT_MAX || pid <= 0)
		return -EBADF;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)pid, (int)fd);
	FILE *f = fopen(path, "re");
	if (!f)
		return -EBADF;
	char line[256];
	bool have_ino = false, have_flags = false, have_mnt = false;
	unsigned long long v_ino = 0;
	unsigned long v_mnt = 0;
	unsigned int v_flags = 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "ino: %llu", &v_ino) == 1)
			have_ino = true;
		else if (sscanf(line, "flags: %o", &v_flags) == 1)
			have_flags = true;
		else if (sscanf(line, "mnt_id: %lu", &v_mnt) == 1)
			have_mnt = true;
	}
	fclose(f);
	if (!have_flags || !have_mnt || !have_ino)
		return -EBADF;
	if (v_flags & O_PATH)
		return -EBADF;
	if (!mnt_is_ours(pid, v_mnt))
		return -EXDEV;
	*ino = (uint64_t)v_ino;
	*flags = (int)v_flags;
	return 0;
}

static int fh_flags(const struct fuse_file_info *fi, bool *known)
{
	*known = fi && (fi->fh & RLFS_FH_FILE);
	return *known ? (int)(uint32_t)fi->fh : 0;
}

/* The kernel caches dest's pages and (writeback cache) owns its size: after
 * the library changed [off, off+len) of ino behind its back, drop the
 * cached pages and attributes, and if the file grew, raise the kernel's
 * size by storing the file's last page (FUSE_NOTIFY_STORE extends i_size,
 * fs/fuse/dev.c fuse_notify_store; the attributes of a regular file are
 * otherwise not taken from the daemon under the writeback cache).  Called
 * from the ioctl handler: the caller holds no inode or page lock, and the
 * notifications only take page locks and the connection's killsb. */
static void after_change(struct rlfs_mount *mp, fuse_ino_t node, uint64_t off, uint64_t len,
			 uint64_t old_size)
{
	struct fuse_session *se = g_se;
	if (!se)
		return;
	int e = fuse_lowlevel_notify_inval_inode(se, node, (off_t)off,
						 len > INT64_MAX ? 0 : (off_t)len);
	if (e && e != -ENOENT)
		logmsg("reflinkfs: cache invalidation of inode %llu failed: %s",
		       (unsigned long long)n2i(node), strerror(-e));
	struct stat st;
	if (rlfs_getattr(mp, n2i(node), &st) != 0 || (uint64_t)st.st_size <= old_size ||
	    st.st_size == 0)
		return;
	long pg = sysconf(_SC_PAGESIZE);
	if (pg <= 0)
		pg = 4096;
	uint64_t size = (uint64_t)st.st_size;
	uint64_t start = (size - 1) & ~((uint64_t)pg - 1);
	size_t n = (size_t)(size - start);
	char *buf = malloc(n);
	if (!buf)
		return;
	ssize_t got = rlfs_read(mp, n2i(node), buf, n, (off_t)start);
	if (got == (ssize_t)n) {
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT(n);
		bv.buf[0].mem = buf;
		e = fuse_lowlevel_notify_store(se, node, (off_t)start, &bv, 0);
		if (e && e != -ENOENT)
			logmsg("reflinkfs: size update of inode %llu failed: %s",
			       (unsigned long long)n2i(node), strerror(-e));
	}
	free(buf);
}

/* remap_verify_area (fs/remap_range.c): loff_t offsets and lengths that
 * do not wrap. */
static bool remap_area_ok(uint64_t pos, uint64_t len)
{
	return pos <= INT64_MAX && len <= INT64_MAX && len <= (uint64_t)INT64_MAX - pos;
}

/*
 * RLFS_IOC_CLONE / RLFS_IOC_CLONE_RANGE on the file (ino, fi), in the
 * order of the kernel's checks (fs/ioctl.c ioctl_file_clone ->
 * fs/remap_range.c vfs_clone_file_range -> do_clone_file_range ->
 * generic_file_rw_checks -> the filesystem's remap_file_range):
 * EBADF (src_fd not open), EINVAL (offsets/length wrap), EXDEV (another
 * filesystem), EISDIR/EINVAL (file types), EBADF (src not readable, dest
 * not writable or O_APPEND), then the library's checks.  A request that
 * clones less than a non-zero len is EINVAL (ioctl_file_clone).
 */
static int do_clone(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino,
		    struct fuse_file_info *fi, unsigned ioflags, int64_t src_fd,
		    uint64_t src_off, uint64_t len, uint64_t dst_off)
{
	const struct fuse_ctx *ctx = req_ctx(req);
	uint64_t src = 0;
	int src_flags = 0;
	int err = resolve_fd(ctx->pid, src_fd, &src, &src_flags);
	if (err == -EBADF)
		return err;
	if (!remap_area_ok(src_off, len) || !remap_area_ok(dst_off, len))
		return -EINVAL;
	if (err)
		return err;
	uint64_t dst = n2i(ino);
	struct stat sst, dstt;
	err = rlfs_getattr(mp, src, &sst);
	if (err)
		return err == -ENOENT ? -EXDEV : err;
	err = rlfs_getattr(mp, dst, &dstt);
	if (err)
		return err;
	if (S_ISDIR(sst.st_mode) || S_ISDIR(dstt.st_mode) || (ioflags & FUSE_IOCTL_DIR))
		return -EISDIR;
	if (!S_ISREG(sst.st_mode) || !S_ISREG(dstt.st_mode))
		return -EINVAL;
	bool known;
	int dflags = fh_flags(fi, &known);
	if ((src_flags & O_ACCMODE) == O_WRONLY || !known ||
	    (dflags & O_ACCMODE) == O_RDONLY || (dflags & O_APPEND))
		return -EBADF;
	/* The kernel does not write dirty pages back for an ioctl: do it
	 * (and wait for the WRITEs) so that the library sees the data and
	 * sizes the caller sees. */
	fuse_ino_t nodes[2] = { i2n(src), ino };
	flush_and_wait(nodes, 2);
	err = rlfs_getattr(mp, dst, &dstt);
	if (err)
		return err;
	unsigned kill = ctx->uid != 0 ? RLFS_CLONE_KILL_SUID : 0;
	int64_t r = rlfs_clone_range(mp, src, src_off, dst, dst_off, len, kill);
	if (r > 0) {
		uint64_t bs = fs_blocksize(mp);
		uint64_t span = bs ? ((uint64_t)r + bs - 1) & ~(bs - 1) : (uint64_t)r;
		after_change(mp, ino, dst_off, span, (uint64_t)dstt.st_size);
	}
	if (r < 0)
		return (int)r;
	if (len && (uint64_t)r != len)
		return -EINVAL;
	return 0;
}

static int do_get_extents(struct rlfs_mount *mp, fuse_ino_t ino, struct rlfs_ioc_extents *x)
{
	if (x->reserved || (x->flags & ~RLFS_IOC_EXT_SYNC))
		return -EINVAL;
	if (x->flags & RLFS_IOC_EXT_SYNC)
		flush_and_wait(&ino, 1);
	uint32_t count = 0;
	memset(x->ext, 0, sizeof(x->ext));
	int err = rlfs_get_extents(mp, n2i(ino), x->start, x->length, x->ext,
				   RLFS_IOC_EXTENTS_BATCH, &count);
	if (err)
		return err;
	x->count = count;
	x->abi_version = RLFS_IOC_ABI_VERSION;
	return 0;
}

static int do_unshare(struct rlfs_mount *mp, fuse_ino_t ino, struct fuse_file_info *fi,
		      unsigned ioflags, const struct rlfs_ioc_unshare *u)
{
	if (u->reserved || u->reserved2[0] || u->reserved2[1] ||
	    (u->flags & ~RLFS_IOC_UNSHARE_KEEP_SIZE))
		return -EINVAL;
	/* vfs_fallocate: offset >= 0, len > 0, no wrap; then the file */
	if (u->offset > INT64_MAX || u->length == 0 || u->length > INT64_MAX ||
	    u->length > (uint64_t)INT64_MAX - u->offset)
		return -EINVAL;
	bool known;
	int fl = fh_flags(fi, &known);
	if (ioflags & FUSE_IOCTL_DIR)
		return -EBADF;          /* a directory cannot be open for writing */
	if (!known || (fl & O_ACCMODE) == O_RDONLY)
		return -EBADF;
	flush_and_wait(&ino, 1);
	struct stat st;
	int err = rlfs_getattr(mp, n2i(ino), &st);
	if (err)
		return err;
	int mode = FALLOC_FL_UNSHARE_RANGE;
	if (u->flags & RLFS_IOC_UNSHARE_KEEP_SIZE)
		mode |= FALLOC_FL_KEEP_SIZE;
	err = rlfs_fallocate(mp, n2i(ino), mode, (off_t)u->offset, (off_t)u->length);
	if (!err && !(u->flags & RLFS_IOC_UNSHARE_KEEP_SIZE))
		after_change(mp, ino, u->offset, 0, (uint64_t)st.st_size);
	return err;
}

/*
 * ioctl: only the private, restricted ioctls of reflinkfs/ioctl.h (fixed
 * sizes encoded in the number, so the kernel copies the argument in and
 * out itself).  Their layouts are the same for 32-bit callers
 * (FUSE_IOCTL_COMPAT: only 64-bit fields, naturally aligned), so compat
 * requests are served the same way.  Other ioctls: ENOTTY.
 */
static void ioctl_work(fuse_req_t req, fuse_ino_t ino, unsigned int c,
		       struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		       size_t in_bufsz, size_t out_bufsz)
{
	GET_MP(req, mp);
	int err;
	switch (c) {
	case RLFS_IOC_CLONE: {
		struct rlfs_ioc_clone a;
		if (in_bufsz != sizeof(a) || out_bufsz != sizeof(a)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		memcpy(&a, in_buf, sizeof(a));
		if (a.reserved[0] || a.reserved[1] || a.reserved[2])
			err = -EINVAL;
		else
			err = do_clone(req, mp, ino, fi, flags, a.src_fd, 0, 0, 0);
		if (err)
			reply_status(req, err);
		else
			fuse_reply_ioctl(req, 0, &a, sizeof(a));
		return;
	}
	case RLFS_IOC_CLONE_RANGE: {
		struct rlfs_ioc_clone_range a;
		if (in_bufsz != sizeof(a) || out_bufsz != sizeof(a)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		memcpy(&a, in_buf, sizeof(a));
		err = do_clone(req, mp, ino, fi, flags, a.src_fd, a.src_offset, a.src_length,
			       a.dest_offset);
		if (err)
			reply_status(req, err);
		else
			fuse_reply_ioctl(req, 0, &a, sizeof(a));
		return;
	}
	case RLFS_IOC_GET_EXTENTS: {
		if (in_bufsz != sizeof(struct rlfs_ioc_extents) ||
		    out_bufsz != sizeof(struct rlfs_ioc_extents)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		struct rlfs_ioc_extents *x = malloc(sizeof(*x));
		if (!x) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		memcpy(x, in_buf, sizeof(*x));
		err = do_get_extents(mp, ino, x);
		if (err)
			reply_status(req, err);
		else
			fuse_reply_ioctl(req, 0, x, sizeof(*x));
		free(x);
		return;
	}
	case RLFS_IOC_UNSHARE_RANGE: {
		struct rlfs_ioc_unshare a;
		if (in_bufsz != sizeof(a) || out_bufsz != sizeof(a)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		memcpy(&a, in_buf, sizeof(a));
		err = do_unshare(mp, ino, fi, flags, &a);
		if (err)
			reply_status(req, err);
		else
			fuse_reply_ioctl(req, 0, &a, sizeof(a));
		return;
	}
	default:
		fuse_reply_err(req, ENOTTY);
		return;
	}
}

static void ioctl_job(struct slow_job *job)
{
	ioctl_work(job->req, job->ino, job->cmd, &job->fi, job->flags, job->in, job->in_len,
		   job->out_len);
}

/* The private ioctls flush (and clone or map) on the slow pool: see
 * slow_submit.  Unknown requests: ENOTTY at once. */
static void rl_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		     struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		     size_t in_bufsz, size_t out_bufsz)
{
	(void)arg;
	if ((flags & FUSE_IOCTL_UNRESTRICTED) ||
	    (cmd != RLFS_IOC_CLONE && cmd != RLFS_IOC_CLONE_RANGE &&
	     cmd != RLFS_IOC_GET_EXTENTS && cmd != RLFS_IOC_UNSHARE_RANGE)) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	if (in_bufsz > sizeof(struct rlfs_ioc_extents)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	struct slow_job *job = calloc(1, sizeof(*job) + in_bufsz);
	if (!job) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	job->run = ioctl_job;
	job->req = req;
	job->ino = ino;
	if (fi)
		job->fi = *fi;
	job->cmd = cmd;
	job->flags = flags;
	job->in_len = in_bufsz;
	job->out_len = out_bufsz;
	if (in_bufsz)
		memcpy(job->in, in_buf, in_bufsz);
	slow_submit(job);
}

static const struct fuse_lowlevel_ops rl_ops = {
	.init = rl_init,
	.destroy = rl_destroy,
	.lookup = rl_lookup,
	.forget = rl_forget,
	.forget_multi = rl_forget_multi,
	.getattr = rl_getattr,
	.setattr = rl_setattr,
	.readlink = rl_readlink,
	.mknod = rl_mknod,
	.mkdir = rl_mkdir,
	.unlink = rl_unlink,
	.rmdir = rl_rmdir,
	.symlink = rl_symlink,
	.rename = rl_rename,
	.link = rl_link,
	.open = rl_open,
	.create = rl_create,
	.read = rl_read,
	.write = rl_write,
	.release = rl_release,
	.fsync = rl_fsync,
	.opendir = rl_opendir,
	.readdir = rl_readdir,
	.readdirplus = rl_readdirplus,
	.releasedir = rl_releasedir,
	.fsyncdir = rl_fsyncdir,
	.statfs = rl_statfs,
	.setxattr = rl_setxattr,
	.getxattr = rl_getxattr,
	.listxattr = rl_listxattr,
	.removexattr = rl_removexattr,
	.fallocate = rl_fallocate,
	.lseek = rl_lseek,
	.copy_file_range = rl_copy_file_range,
	.ioctl = rl_ioctl,
};

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

/* Open the filesystem, create and mount the FUSE session.  Returns 0 or 1
 * (error printed). */
static int setup(const struct rlfs_daemon_opts *o, const char *image, struct fuse_args *args)
{
	/* Options first: fuse_session_new starts no thread and opens nothing. */
	g_se = fuse_session_new(args, &rl_ops, sizeof(rl_ops), NULL);
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
static void unescape_mountinfo(char *s)
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

/*
 * daemon.c: the reflinkfs FUSE daemon, libfuse3 low-level API: the request
 * handlers and the ops table.  The flush, the private ioctls and the
 * session live beside it (fuse/daemon_int.h has the map).
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
 * SEEK_DATA/SEEK_HOLE with possibly dirty pages) or can take long
 * (copy_file_range, which clones; slow_submit), a signal
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
#include <linux/fs.h>
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

/* Whether rlfs_readdir(plus) adds a lookup count for "." and "..": fs.h
 * says every entry passed to fn with plus set gets one. */
#define RLFS_DOTS_COUNTED 1

struct rlfs_mount *g_mp;
uint64_t g_root;
/* FUSE_CAP_POSIX_ACL (and DONT_MASK) granted in INIT */
static bool g_posix_acl;
/* OPENDIR is answered ENOSYS (rl_init, rl_opendir) */
static bool g_no_opendir;
/* the f_flags of the READDIR or READDIRPLUS this thread is processing
 * (rlfs_process_buf): libfuse 3.14 does not pass them on */
static _Thread_local uint32_t tl_read_flags;
struct fuse_session *g_se;
char *g_mnt;
char *g_image;
int g_close_err;
bool g_daemonized;
atomic_int g_init_done;
atomic_long g_nwopen;
atomic_ulong g_wgen, g_synced_gen;
pthread_key_t g_bufkey;

struct tlbuf {
	size_t cap;
	char data[];
};

/* ------------------------------------------------------------------ */
/* logging: stderr in the foreground; after daemonizing stderr is a pipe
 * read by log_thread and sent to syslog. */

void logmsg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void reply_status(fuse_req_t req, int err)
{
	fuse_reply_err(req, err < 0 ? -err : 0);
}

/* The generation the kernel gets with an entry (struct fuse_entry_out;
 * the kernel keeps the low 32 bits in i_generation and puts them in file
 * handles, fs/fuse/inode.c fuse_encode_fh).  The root's is 0: the kernel
 * made the root inode at mount with generation 0 and would take any other
 * value for a reused node id (fuse_iget: fuse_stale_inode). */
uint64_t node_generation(uint64_t ino)
{
	uint64_t gen = 0;
	struct rlfs_mount *mp = g_mp;
	if (ino == g_root || !mp || rlfs_get_generation(mp, ino, &gen) != 0)
		return 0;
	return gen;
}

static void fill_entry(struct fuse_entry_param *e, const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = i2n(st->st_ino);
	e->generation = node_generation(st->st_ino);
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

const struct fuse_ctx *req_ctx(fuse_req_t req)
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

bool writable_open(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY;
}

/*
 * Access time.  The FUSE kernel leaves atime to the daemon (its inodes
 * are S_NOATIME) and drops its cached atime after every READ, READDIR and
 * READLINK that reaches us (fuse_invalidate_atime), so the next stat asks
 * for it.  The policy is the mount's (g_atime_how, g_nodiratime: relatime
 * by default, strictatime, noatime), the rule the kernel's (lib/atime.c);
 * O_NOATIME opens and read-only mounts change nothing.  The update is
 * made before the reply, so a stat after the read sees it.  Reads served
 * from the kernel's page cache never reach us: see rl_open.
 */
static void accessed(struct rlfs_mount *mp, fuse_ino_t ino, bool dir, bool noatime_open)
{
	unsigned how = atomic_load(&g_atime_how);
	if (how == RLFS_ATIME_NOATIME || noatime_open || (dir && atomic_load(&g_nodiratime)))
		return;
	/* a read does not fail because its atime could not be stored */
	(void)rlfs_touch_atime(mp, n2i(ino), how);
}

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
	/* No OPENDIR and RELEASEDIR (see rl_opendir): only where the flush
	 * does not use the barrier, which needs the daemon's own OPENDIR and
	 * RELEASEDIR of the root (flush.c, kernels before 6.16 or
	 * RLFS_FLUSH_BARRIER).  RLFS_OPENDIR=1 keeps them (benchmarks). */
	if (g_wb_on_reply && (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) &&
	    !getenv("RLFS_OPENDIR")) {
		conn->want |= FUSE_CAP_NO_OPENDIR_SUPPORT;
		g_no_opendir = true;
	}
	/* POSIX ACLs: the kernel enforces and caches them; we store them as
	 * xattrs, keep the mode in step and inherit default ACLs on create,
	 * which needs the umask unapplied (DONT_MASK; the library applies it
	 * when there is no default ACL). */
	if ((conn->capable & FUSE_CAP_POSIX_ACL) && (conn->capable & FUSE_CAP_DONT_MASK)) {
		conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
		g_posix_acl = true;
	}
	/* file handles of inodes the kernel no longer caches: it looks them
	 * up as "." in the inode itself, and ".." for a directory's parent
	 * (fs/fuse/inode.c fuse_get_dentry, fuse_get_parent); see rl_lookup */
	if (conn->capable & FUSE_CAP_EXPORT_SUPPORT)
		conn->want |= FUSE_CAP_EXPORT_SUPPORT;
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

void rl_destroy(void *userdata)
{
	(void)userdata;
	struct rlfs_mount *mp = g_mp;
	if (!mp)
		return;
	g_mp = NULL;
	/* -o dax: mapped accesses that faulted (host out of space, I/O
	 * error, image shrunk) and were retried through pread/pwrite
	 * (lib/mapguard.c); said at unmount so an admin (and 65-dax-fault)
	 * can tell the guard was needed. */
	uint64_t map_faults = rlfs_dax_map_faults(mp);
	if (map_faults)
		logmsg("reflinkfs: %llu access(es) to the image mapping faulted and were "
		       "retried through pread/pwrite", (unsigned long long)map_faults);
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
	int err;
	/* The VFS never sends "." or ".." itself: "." is open_by_handle_at
	 * (or NFS) asking for an inode by number (parent may be any file
	 * type); ".." a directory's parent, which rlfs_lookup answers.  A
	 * free or deleted inode gives ENOENT, which the kernel turns into
	 * ESTALE; its generation check catches a reused number. */
	if (strcmp(name, ".") == 0)
		err = rlfs_lookup_ino(mp, n2i(parent), &st, NULL);
	else
		err = rlfs_lookup(mp, n2i(parent), name, &st);
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
 * fstat(2) send no file handle and are answered as always.
 *
 * "Full" is what the failing WRITE saw, not a fixed threshold: a write
 * can fail with more than a WRITE's worth still free (its bmbt and
 * refcount headroom, busy extents awaiting a log force), and a threshold
 * below that would let every GETATTR through while each writeback keeps
 * failing.  So each slot keeps the space available when its node's
 * write failed, and the node is forgotten once RLFS_FULL_BYTES more than
 * that is available again (something was freed).  A handful of slots is
 * plenty: they only matter while the filesystem is full, and a node
 * pushed out early only costs one more failed writeback.
 */
#define RLFS_FULL_SLOTS 64
#define RLFS_FULL_BYTES RLFS_FUSE_MAX_WRITE
struct full_slot {
	fuse_ino_t node;                /* 0: free slot */
	uint64_t avail_bytes;           /* available when its write failed */
};
static pthread_mutex_t g_full_lock = PTHREAD_MUTEX_INITIALIZER;
static struct full_slot g_full[RLFS_FULL_SLOTS];
static unsigned g_full_next;            /* slot to reuse next */
static atomic_int g_nfull;              /* used slots: 0 on the fast path */
static atomic_bool g_reserve_only;      /* only the writeback reserve is left
					 * (reserve_only_enter) */

/* Bytes available to unprivileged writers now; UINT64_MAX if unknown. */
static uint64_t full_avail_bytes(struct rlfs_mount *mp)
{
	struct statvfs sv;
	if (rlfs_statfs(mp, &sv) != 0)
		return UINT64_MAX;
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

static void full_add(struct rlfs_mount *mp, fuse_ino_t node)
{
	uint64_t avail = full_avail_bytes(mp);
	if (avail == UINT64_MAX)
		avail = 0;      /* unknown: full until RLFS_FULL_BYTES are free */
	pthread_mutex_lock(&g_full_lock);
	int slot = -1;
	for (int i = 0; i < RLFS_FULL_SLOTS && slot < 0; i++)
		if (g_full[i].node == node)
			slot = i;
	if (slot < 0) {
		slot = (int)g_full_next;
		if (g_full[slot].node == 0)
			atomic_fetch_add(&g_nfull, 1);
		g_full[slot].node = node;
		g_full_next = (g_full_next + 1) % RLFS_FULL_SLOTS;
		g_full[slot].avail_bytes = avail;
	} else if (avail < g_full[slot].avail_bytes) {
		g_full[slot].avail_bytes = avail;
	}
	pthread_mutex_unlock(&g_full_lock);
	/* the next write(2) then asks for attributes (see above) */
	fuse_lowlevel_notify_inval_inode(g_se, node, -1, 0);
}

/* Whether a write through a handle of node must fail with ENOSPC now. */
static bool full_refuses(struct rlfs_mount *mp, fuse_ino_t node)
{
	if (atomic_load(&g_reserve_only)) {
		/* every writer, while only the writeback reserve is left
		 * (reserve_only_enter); over when RLFS_FULL_BYTES are back */
		uint64_t avail = full_avail_bytes(mp);
		if (avail < RLFS_FULL_BYTES)
			return true;
		atomic_store(&g_reserve_only, false);
	}
	if (atomic_load(&g_nfull) == 0)
		return false;
	/* is node refused at all (no statfs, which takes meta_lock, for the
	 * GETATTRs of other nodes) */
	bool listed = false;
	pthread_mutex_lock(&g_full_lock);
	for (int i = 0; i < RLFS_FULL_SLOTS && !listed; i++)
		listed = g_full[i].node == node;
	pthread_mutex_unlock(&g_full_lock);
	if (!listed)
		return false;
	uint64_t avail = full_avail_bytes(mp);
	pthread_mutex_lock(&g_full_lock);
	bool refuse = false;
	for (int i = 0; i < RLFS_FULL_SLOTS; i++) {
		if (g_full[i].node != node)
			continue;
		refuse = avail != UINT64_MAX && avail < g_full[i].avail_bytes + RLFS_FULL_BYTES;
		if (!refuse) {
			g_full[i].node = 0;
			atomic_fetch_sub(&g_nfull, 1);
		}
		break;
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

/* A truncate to newsize that grows the file as the library sees it may
 * still shrink it (or keep its size) as the kernel sees it: under the
 * writeback cache the kernel's size runs ahead of the library's until
 * its dirty pages are written back.  XFS frees the blocks past the new
 * EOF (preallocations) unless the truncate really grows the file.  Whether
 * the kernel's size must be asked: the library would not trim by itself
 * and there is something past newsize to free. */
static bool trim_needs_kernel_size(struct rlfs_mount *mp, fuse_ino_t ino, uint64_t newsize)
{
	struct stat cur;
	if (rlfs_getattr(mp, n2i(ino), &cur) != 0 || !S_ISREG(cur.st_mode) ||
	    newsize <= (uint64_t)cur.st_size)
		return false;   /* the library trims by itself */
	struct rlfs_ioc_extent ext[1];
	uint32_t count = 0;
	return rlfs_get_extents(mp, n2i(ino), newsize, UINT64_MAX - newsize, ext, 1, &count) == 0 &&
	       count > 0;
}

static void setattr_finish(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino,
			   const struct stat *attr, unsigned valid)
{
	struct stat out;
	int err = rlfs_setattr(mp, n2i(ino), attr, valid, &out);
	if (err) {
		reply_status(req, err);
		return;
	}
	fuse_reply_attr(req, &out, RLFS_FUSE_TIMEOUT);
}

/* The truncate, on the slow pool: finding the kernel's size opens the
 * inode by handle through the mount's root, an OPENDIR that other threads
 * serve (with io_uring, perhaps the ring this request came from). */
static void setattr_trim_job(struct slow_job *job)
{
	struct rlfs_mount *mp = g_mp;
	if (!mp) {
		fuse_reply_err(job->req, EIO);
		return;
	}
	struct stat attr;
	memcpy(&attr, job->in, sizeof(attr));
	uint64_t ksize;
	unsigned valid = job->flags;
	if (kernel_size(job->ino, &ksize) == 0 && ksize >= (uint64_t)attr.st_size)
		valid |= RLFS_SET_TRIM_EOF;     /* not a real growth */
	setattr_finish(job->req, mp, job->ino, &attr, valid);
}

/*
 * The writeback cache's time flush (fs/fuse/file.c fuse_flush_times:
 * explicit mtime and ctime, with a writer's handle) comes after the
 * kernel updated its cached times itself (file_modified at a write or a
 * fallocate), also for a write or fallocate that this daemon then refuses
 * because the file is immutable or append-only (a FUSE kernel does not
 * know the flags; XFS refuses before it touches the times).  Refusing the
 * flush too would make the kernel report EIO on the file's next
 * writeback.  So for an immutable file it is answered with the times
 * unchanged, for an append-only one (whose appends do change it) mtime
 * and ctime become "now": 1 when replied here, 0 to go on.  (A futimens(2) of mtime alone through
 * a descriptor opened before the flag was set looks the same and is
 * ignored the same way, where the kernel would say EPERM.)
 */
static int times_flush_refused(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino)
{
	struct rlfs_fileattr fa;
	struct stat st;
	if (rlfs_fileattr_get(mp, n2i(ino), &fa) != 0 ||
	    !(fa.xflags & (FS_XFLAG_IMMUTABLE | FS_XFLAG_APPEND)))
		return 0;
	if (fa.xflags & FS_XFLAG_APPEND) {
		/* appends change the data: mtime and ctime become "now",
		 * which append-only allows */
		memset(&st, 0, sizeof(st));
		setattr_finish(req, mp, ino, &st, RLFS_SET_MTIME_NOW);
		return 1;
	}
	if (rlfs_getattr(mp, n2i(ino), &st) != 0)
		return 0;
	fuse_reply_attr(req, &st, RLFS_FUSE_TIMEOUT);
	return 1;
}

/*
 * utimes(path, NULL) ("now", which an append-only file allows) reaches a
 * writeback-cache daemon as atime NOW but mtime explicit: the kernel trusts
 * its own clock for mtime (fs/fuse/dir.c iattr_to_fattr,
 * trust_local_cmtime).  On an append-only file such an mtime within two
 * seconds of now is taken as "now", so that touch(1) works as on XFS;
 * true when it is.
 */
static bool touch_mtime_now(struct rlfs_mount *mp, fuse_ino_t ino, int to_set,
			    const struct stat *attr)
{
	if (!(to_set & FUSE_SET_ATTR_ATIME_NOW))
		return false;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (attr->st_mtim.tv_sec < now.tv_sec - 2 || attr->st_mtim.tv_sec > now.tv_sec + 2)
		return false;
	struct rlfs_fileattr fa;
	return rlfs_fileattr_get(mp, n2i(ino), &fa) == 0 && (fa.xflags & FS_XFLAG_APPEND);
}

static void rl_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	GET_MP(req, mp);
	if (fi && (to_set & FUSE_SET_ATTR_MTIME) &&
	    !(to_set & ~(FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME)) &&
	    times_flush_refused(req, mp, ino))
		return;
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
		valid |= touch_mtime_now(mp, ino, to_set, attr) ? RLFS_SET_MTIME_NOW
							       : RLFS_SET_MTIME;
	if (to_set & FUSE_SET_ATTR_CTIME)
		valid |= RLFS_SET_CTIME;
	/* the kernel's FATTR_KILL_SUIDGID (same bit), sent under
	 * FUSE_HANDLE_KILLPRIV_V2 with a chown, and with a truncate when the
	 * caller lacks CAP_FSETID: setuid, setgid if group-executable, and
	 * for a truncate setgid also when the caller is outside the file's
	 * group (setattr_should_drop_sgid) */
	bool kill_only = (to_set & ~(FUSE_SET_ATTR_KILL_SUID | FUSE_SET_ATTR_KILL_SGID)) == 0;
	if (to_set & FUSE_SET_ATTR_KILL_SUID)
		valid |= RLFS_SET_KILL_SUIDGID;
	if (((to_set & FUSE_SET_ATTR_KILL_SUID) && !(valid & (RLFS_SET_UID | RLFS_SET_GID))) ||
	    kill_only) {
		/* A SETATTR that sets nothing is the kernel's file_remove_privs
		 * (fallocate, copy_file_range: file_modified()), sent because
		 * the caller may not keep setuid/setgid, or because the file
		 * has security.capability (removed by its own REMOVEXATTR):
		 * the caller's credentials decide (privs_to_drop). */
		struct stat cur;
		if (rlfs_getattr(mp, n2i(ino), &cur) == 0) {
			unsigned kill = privs_to_drop(req, &cur, !kill_only);
			if (kill & PRIV_SUID)
				valid |= RLFS_SET_KILL_SUID;
			if (kill & PRIV_SGID)
				valid |= RLFS_SET_KILL_SGID;
		}
	}
	if ((valid & RLFS_SET_SIZE) && attr->st_size >= 0 &&
	    trim_needs_kernel_size(mp, ino, (uint64_t)attr->st_size)) {
		struct slow_job *job = calloc(1, sizeof(*job) + sizeof(*attr));
		if (job) {
			job->run = setattr_trim_job;
			job->req = req;
			job->ino = ino;
			job->flags = valid;
			memcpy(job->in, attr, sizeof(*attr));
			slow_submit(job);
			return;
		}
	}
	setattr_finish(req, mp, ino, attr, valid);
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
	/* the umask (FUSE_DONT_MASK) or the directory's default ACL */
	int err = rlfs_mknod_umask(mp, dir, name, mode, rdev, uid, gid, req_ctx(req)->umask, &st);
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
	int err = rlfs_mkdir_umask(mp, dir, name, mode, uid, gid, req_ctx(req)->umask, &st);
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
	/* RENAME_WHITEOUT: the whiteout is the caller's (the kernel sends the
	 * caller's ids with a whiteout rename, fuse_rename2) */
	const struct fuse_ctx *ctx = req_ctx(req);
	reply_status(req, rlfs_rename2(mp, n2i(parent), name, n2i(newparent), newname, flags,
				       ctx->uid, ctx->gid));
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

/*
 * A writable open of a regular file while only the writeback reserve is
 * left gets no page cache (FOPEN_DIRECT_IO): its write(2)s reach this
 * daemon at once and fail with ENOSPC there where they need space, and a
 * shared mmap of it (MAP_SHARED of a handle open for writing, even
 * PROT_READ) is refused with ENODEV (the kernel allows MAP_SHARED of such
 * a file only with FUSE_DIRECT_IO_ALLOW_MMAP, which we ask for only under
 * -o dax: there the refusal is gone, see below),
 * where through the page cache it would dirty pages that can fail at
 * writeback with no one to tell: FUSE sends no page_mkwrite, so the
 * SIGBUS XFS gives a write fault it cannot reserve for is not ours to
 * give (fstests generic/173).  Reads through such a handle bypass the
 * page cache too.  Only at "full" (f_bavail 0): a rewrite of unshared
 * blocks needs no space, and a database mapping its file on a merely
 * busy filesystem must keep working.  Opens made while there is space
 * keep the page cache (session.c's writeback reserve covers what they
 * accept, full_refuses stops them at full).
 */
static void open_direct(struct rlfs_mount *mp, uint64_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	if (rlfs_dax_enabled(mp)) {
		/* -o dax: every open of a regular file (only those reach
		 * OPEN/CREATE) bypasses the page cache; the data lives in
		 * the daemon's mapping of the image only, as with fsdax.
		 * The INIT reply asked for FUSE_DIRECT_IO_ALLOW_MMAP
		 * (rlfs_fuse_io_install), so a shared mmap is granted, full
		 * or not: the kernel has no per-open way to refuse it then,
		 * and a mapping made at full is exposed as one made while
		 * there was space (docs/DESIGN.md, "Direct access") */
		fi->direct_io = 1;
		fi->keep_cache = 0;
		fi->fh |= RLFS_FH_DIRECT;
		return;
	}
	if (!writable_open(fi->flags) || rlfs_avail_blocks_hint(mp) > 0)
		return;
	fi->direct_io = 1;
	fi->fh |= RLFS_FH_DIRECT;
}

/*
 * Nodes with a handle open for writing through the page cache (not
 * direct), with counts: when only the writeback reserve is left, each gets
 * its attributes invalidated, so that its next write(2) asks (GETATTR with
 * the handle) and full_refuses answers ENOSPC.  Without this only the
 * file whose writeback crossed the line would stop, and another writer
 * opened earlier could go on filling the page cache past the reserve.
 */
struct wopen {
	fuse_ino_t node;
	uint32_t n;
};
static pthread_mutex_t g_wopen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wopen *g_wopen;
static size_t g_nwopen_nodes, g_wopen_cap;

static void wopen_change(fuse_ino_t node, int delta)
{
	pthread_mutex_lock(&g_wopen_lock);
	size_t i = 0;
	while (i < g_nwopen_nodes && g_wopen[i].node != node)
		i++;
	if (i == g_nwopen_nodes && delta > 0) {
		if (g_nwopen_nodes == g_wopen_cap) {
			size_t cap = g_wopen_cap ? g_wopen_cap * 2 : 64;
			struct wopen *n = realloc(g_wopen, cap * sizeof(*n));
			if (!n) {
				pthread_mutex_unlock(&g_wopen_lock);
				return;   /* not tracked: only its own writeback stops it */
			}
			g_wopen = n;
			g_wopen_cap = cap;
		}
		g_wopen[g_nwopen_nodes++] = (struct wopen){ node, 0 };
	}
	if (i < g_nwopen_nodes) {
		if (delta > 0)
			g_wopen[i].n++;
		else if (g_wopen[i].n && --g_wopen[i].n == 0)
			g_wopen[i] = g_wopen[--g_nwopen_nodes];
	}
	pthread_mutex_unlock(&g_wopen_lock);
}

/* Only the reserve is left: every cached writer's next write(2) asks. */
static void reserve_only_enter(void)
{
	if (atomic_exchange(&g_reserve_only, true))
		return;
	pthread_mutex_lock(&g_wopen_lock);
	size_t n = g_nwopen_nodes;
	fuse_ino_t *nodes = n ? malloc(n * sizeof(*nodes)) : NULL;
	for (size_t i = 0; nodes && i < n; i++)
		nodes[i] = g_wopen[i].node;
	pthread_mutex_unlock(&g_wopen_lock);
	for (size_t i = 0; nodes && i < n; i++)
		fuse_lowlevel_notify_inval_inode(g_se, nodes[i], -1, 0);
	free(nodes);
}

/* may_open (fs/namei.c) for the inode flags, which the kernel of a FUSE
 * mount does not know: an immutable file opens for reading only, an
 * append-only one for writing only with O_APPEND; neither with O_TRUNC.
 * 0 or -EPERM. */
static int may_open_flags(struct rlfs_mount *mp, fuse_ino_t ino, int flags)
{
	struct rlfs_fileattr fa;
	if (rlfs_fileattr_get(mp, n2i(ino), &fa) != 0)
		return 0;       /* not a regular file; other errors come later */
	bool wr = (flags & O_ACCMODE) != O_RDONLY;
	if ((fa.xflags & FS_XFLAG_IMMUTABLE) && (wr || (flags & O_TRUNC)))
		return -EPERM;
	if ((fa.xflags & FS_XFLAG_APPEND) && ((wr && !(flags & O_APPEND)) || (flags & O_TRUNC)))
		return -EPERM;
	return 0;
}

static void rl_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	GET_MP(req, mp);
	int err = may_open_flags(mp, ino, fi->flags);
	if (err) {
		reply_status(req, err);
		return;
	}
	open_flags(fi);
	/* The kernel serves cached pages without a READ, so a file read
	 * after it was written (its pages still cached) would keep its old
	 * atime.  When the policy says the next read must update atime
	 * (relatime: atime not after mtime/ctime, or a day old; strictatime:
	 * always), drop the file's cached pages at this open (no
	 * FOPEN_KEEP_CACHE: the kernel writes dirty ones back and
	 * invalidates) so that the first read reaches us.  Under relatime
	 * that is once per modification, under strictatime every open. */
	unsigned how = atomic_load(&g_atime_how);
	if ((fi->flags & O_ACCMODE) != O_WRONLY && !(fi->flags & O_NOATIME) &&
	    how != RLFS_ATIME_NOATIME && rlfs_atime_needs_update(mp, n2i(ino), how) > 0)
		fi->keep_cache = 0;
	open_direct(mp, n2i(ino), fi);
	(void)rlfs_file_opened(mp, n2i(ino));
	bool cached_w = writable_open(fi->flags) && !fi->direct_io;
	if (cached_w)
		wopen_change(ino, 1);
	if (fuse_reply_open(req, fi) != 0) {
		if (writable_open(fi->flags))
			atomic_fetch_sub(&g_nwopen, 1);
		if (cached_w)
			wopen_change(ino, -1);
		rlfs_file_released(mp, n2i(ino));
	}
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
	mode_t umask = req_ctx(req)->umask;
	int err;
	if (strcmp(name, RLFS_FUSE_TMPFILE_NAME) == 0)
		/* O_TMPFILE (FUSE_TMPFILE, rewritten by fuse/uring.c): nlink 0,
		 * freed when the kernel forgets it unless linkat() names it */
		err = rlfs_tmpfile(mp, dir, mode, uid, gid, umask, &st);
	else
		err = rlfs_mknod_umask(mp, dir, name, mode, 0, uid, gid, umask, &st);
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
	open_direct(mp, st.st_ino, fi);
	(void)rlfs_file_opened(mp, st.st_ino);
	bool cached_w = writable_open(fi->flags) && !fi->direct_io;
	if (cached_w)
		wopen_change(e.ino, 1);
	if (fuse_reply_create(req, &e, fi) != 0) {
		if (cached_w)
			wopen_change(e.ino, -1);
		if (writable_open(fi->flags))
			atomic_fetch_sub(&g_nwopen, 1);
		rlfs_file_released(mp, st.st_ino);
		undo_lookup(mp, st.st_ino);
	}
}

void free_tlbuf(void *p)
{
	free(p);
}

char *thread_buf(size_t size)
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
	/* a READ on a write-only handle is the kernel reading a page it is
	 * about to overwrite partly, not an access */
	if (fi && (fi->flags & O_ACCMODE) != O_WRONLY)
		accessed(mp, ino, false, fi->flags & O_NOATIME);
	fuse_reply_buf(req, buf, (size_t)n);
}

/* struct fuse_in_header is 40 bytes; struct fuse_write_in follows it:
 * fh, offset (u64), size, write_flags (u32) ... (linux/fuse.h) */
#define RLFS_FUSE_IN_HEADER_BYTES 40
#define RLFS_FUSE_WRITE_OPCODE 16
#define RLFS_FUSE_WRITE_FLAGS_OFFSET (RLFS_FUSE_IN_HEADER_BYTES + 20)
#define RLFS_FUSE_WRITE_KILL_SUIDGID (1u << 2)  /* FUSE_WRITE_KILL_SUIDGID */
/* FUSE_FORGET and FUSE_BATCH_FORGET (include/uapi/linux/fuse.h) */
#define RLFS_FUSE_FORGET_OPCODE 2
#define RLFS_FUSE_BATCH_FORGET_OPCODE 42
/* READDIR and READDIRPLUS carry struct fuse_read_in: fh, offset (u64),
 * size, read_flags (u32), lock_owner (u64), flags (u32): flags is the
 * open file's f_flags (fs/fuse/file.c fuse_read_args_fill). */
#define RLFS_FUSE_READDIR_OPCODE 28
#define RLFS_FUSE_READDIRPLUS_OPCODE 44
#define RLFS_FUSE_READ_FLAGS_OFFSET (RLFS_FUSE_IN_HEADER_BYTES + 32)

/* write_flags of the WRITE this thread is processing (rlfs_process_buf):
 * libfuse 3.14 keeps only FUSE_WRITE_CACHE (fi->writepage) of them. */
static _Thread_local uint32_t tl_write_flags;

void rlfs_process_buf(struct fuse_session *se, const struct fuse_buf *fb)
{
	struct rlfs_mount *forget_mp = NULL;
	struct rlfs_inactive_ticket forget_ticket;
	tl_write_flags = 0;
	tl_read_flags = 0;
	if (!(fb->flags & FUSE_BUF_IS_FD) && fb->size >= RLFS_FUSE_IN_HEADER_BYTES) {
		uint32_t opcode;
		const char *arg = (const char *)fb->mem;
		memcpy(&opcode, arg + 4, sizeof(opcode));
		/* a FORGET may free an unlinked inode: statfs waits for it
		 * from now on (rlfs_inactive_wait in rl_statfs) */
		if ((opcode == RLFS_FUSE_FORGET_OPCODE || opcode == RLFS_FUSE_BATCH_FORGET_OPCODE) &&
		    (forget_mp = g_mp) != NULL)
			rlfs_inactive_begin(forget_mp, &forget_ticket);
		if (opcode == RLFS_FUSE_WRITE_OPCODE &&
		    fb->size >= RLFS_FUSE_WRITE_FLAGS_OFFSET + 4)
			memcpy(&tl_write_flags, arg + RLFS_FUSE_WRITE_FLAGS_OFFSET,
			       sizeof(tl_write_flags));
		else if ((opcode == RLFS_FUSE_READDIR_OPCODE ||
			  opcode == RLFS_FUSE_READDIRPLUS_OPCODE) &&
			 fb->size >= RLFS_FUSE_READ_FLAGS_OFFSET + 4)
			memcpy(&tl_read_flags, arg + RLFS_FUSE_READ_FLAGS_OFFSET,
			       sizeof(tl_read_flags));
	}
	fuse_session_process_buf(se, fb);
	if (forget_mp)
		rlfs_inactive_end(forget_mp, &forget_ticket);
}

unsigned privs_to_drop(fuse_req_t req, const struct stat *st, bool lacks_fsetid)
{
	if (!S_ISREG(st->st_mode) || !(st->st_mode & (S_ISUID | S_ISGID)))
		return 0;
	struct caller_creds c;
	caller_creds_get(req, &c);
	if (!lacks_fsetid && c.known && c.fsetid)
		return 0;
	unsigned kill = 0;
	if (st->st_mode & S_ISUID)
		kill |= PRIV_SUID;
	/* setgid without group exec marks mandatory locking: it stays for
	 * a caller in the file's group (and when we cannot tell) */
	if ((st->st_mode & S_ISGID) &&
	    ((st->st_mode & S_IXGRP) || (c.known && !caller_in_group(&c, st->st_gid))))
		kill |= PRIV_SGID;
	return kill;
}

/* The direct WRITE's reply, after the kernel has dropped the pages of the
 * range (see rl_write). */
static void direct_write_job(struct slow_job *job)
{
	struct fuse_session *se = g_se;
	if (se)
		fuse_lowlevel_notify_inval_inode(se, job->ino, job->off, (off_t)job->in_len);
	fuse_reply_write(job->req, job->in_len);
}

/* After a refused writeback WRITE: the kernel keeps the refused bytes in
 * its page cache (clean, AS_EIO noted), where reads would find them;
 * dropping the range makes the next read come here for the file's real
 * bytes.  On the slow pool, after the WRITE's reply (the invalidation
 * waits for that page writeback to end). */
static void refused_write_job(struct slow_job *job)
{
	struct fuse_session *se = g_se;
	if (se)
		fuse_lowlevel_notify_inval_inode(se, job->ino, job->off, (off_t)job->in_len);
}

static void rl_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	GET_MP(req, mp);
	uint32_t write_flags = tl_write_flags;
	/* Writeback of cached pages (writepage): the kernel owns mtime and
	 * ctime under the writeback cache and sends them in a SETATTR from
	 * its inode writeback, which may reach us before this WRITE, so the
	 * write must not stamp its own; setuid/setgid were dealt with when
	 * the data entered the cache (the kernel's file_remove_privs, or
	 * under FUSE_HANDLE_KILLPRIV_V2 a write-through WRITE for a writer
	 * without CAP_FSETID).  Other WRITEs (write-through, O_DIRECT) stamp
	 * the times; they drop setuid/setgid when the kernel says the writer
	 * lacks CAP_FSETID (FUSE_WRITE_KILL_SUIDGID, read from the raw
	 * request: libfuse 3.14 drops it), by the kernel's rules. */
	unsigned wflags = fi && fi->writepage ? RLFS_WRITE_CACHED : 0;
	if (write_flags & RLFS_FUSE_WRITE_KILL_SUIDGID) {
		struct stat st;
		if (rlfs_getattr(mp, n2i(ino), &st) == 0) {
			unsigned kill = privs_to_drop(req, &st, true);
			if (kill & PRIV_SUID)
				wflags |= RLFS_WRITE_KILL_SUID;
			if (kill & PRIV_SGID)
				wflags |= RLFS_WRITE_KILL_SGID;
		}
	}
	ssize_t n = rlfs_write_flags(mp, n2i(ino), buf, size, off, wflags);
	if (n > 0 && fi && !fi->writepage && ((fi->flags & O_DIRECT) || (fi->fh & RLFS_FH_DIRECT))) {
		/*
		 * A direct write: the kernel dropped the range's cached pages
		 * before sending it, but a buffered read racing it can have
		 * cached the old bytes again, and for an asynchronous direct
		 * write (AIO, io_uring) the kernel drops nothing afterwards
		 * (generic/451).  Drop them before the reply, so a read after
		 * the write's completion sees the new data.  The invalidation
		 * waits for pages locked by reads in flight, which other
		 * threads serve; it runs on the slow pool, which never serves
		 * READs, so it cannot wait for itself (nor, with io_uring, hold
		 * the ring thread a READ is queued on).  Write-through WRITEs of
		 * cached files (not O_DIRECT) keep their pages locked until the
		 * reply and must not wait for them.
		 */
		struct slow_job *job = calloc(1, sizeof(*job));
		if (job) {
			job->run = direct_write_job;
			job->req = req;
			job->ino = ino;
			job->off = off;
			job->in_len = (size_t)n;
			slow_submit(job);
			if ((size_t)n < size)
				full_add(mp, ino);
			return;
		}
	}
	if (n < 0) {
		reply_status(req, (int)n);
		if (n == -EPERM && fi && fi->writepage) {
			/* immutable or append-only since the write was cached */
			struct slow_job *job = calloc(1, sizeof(*job));
			if (job) {
				job->run = refused_write_job;
				job->ino = ino;
				job->off = off;
				job->in_len = size;
				slow_submit(job);
			}
		}
	} else {
		fuse_reply_write(req, (size_t)n);
	}
	if (n == -ENOSPC || (n >= 0 && (size_t)n < size))
		full_add(mp, ino);  /* after the reply: writeback may wait for it */
	else if (fi && fi->writepage && rlfs_avail_blocks_hint(mp) <= 0) {
		/* only the writeback reserve is left (session.c,
		 * writeback_limit_set), though the write path gave idle
		 * staged CoW blocks back first (rlfs_write_flags): every
		 * cached writer's next write(2) fails, before data past the
		 * reserve can be accepted */
		full_add(mp, ino);
		reserve_only_enter();
	}
}

static void rl_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	GET_MP(req, mp);
	if (writable_open(fi->flags))
		atomic_fetch_sub(&g_nwopen, 1);
	if (writable_open(fi->flags) && !(fi->fh & RLFS_FH_DIRECT))
		wopen_change(ino, -1);
	/* the last close gives back staged CoW blocks no write used */
	rlfs_file_released(mp, n2i(ino));
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
/* flush: make the kernel write back first (only on a slow-pool thread: a
 * request thread, above all an io_uring ring thread, must not wait for
 * WRITEs that may need it to be delivered) */
static void do_lseek(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino, off_t off,
		     int whence, bool flush)
{
	if (flush)
		flush_and_wait(&ino, 1);
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

/*
 * Opening a directory needs nothing of the daemon: a directory's handle
 * carries no state (readdir takes the O_NOATIME of the open from the
 * READDIR request itself, see rlfs_process_buf; fsyncdir and the ioctls
 * on directories do not look at fi->fh).  So where the kernel allows it
 * (FUSE_NO_OPENDIR_SUPPORT, Linux 5.1) and the flush barrier is not in
 * use (rl_init: g_no_opendir), OPENDIR is answered ENOSYS: the kernel
 * then opens directories without asking, for the connection's lifetime,
 * and sends no RELEASEDIR either.  That saves two of the four requests a
 * walk makes per directory (docs/DESIGN.md, "Round trips").  The kernel
 * then also caches directory listings (FOPEN_CACHE_DIR): see do_readdir.
 */
static void rl_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (g_no_opendir) {
		fuse_reply_err(req, ENOSYS);
		return;
	}
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

/* READDIR (plus 0) and READDIRPLUS (plus 1).  The directory's handle
 * carries nothing (no OPENDIR on 6.16+): the open's O_NOATIME comes from
 * the request (tl_read_flags). */
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
	if (err >= 0 || db.pos > 0)
		accessed(mp, ino, true, tl_read_flags & O_NOATIME);
	/* Without OPENDIR the kernel keeps a directory's listing once a
	 * reader has seen all of it (an empty reply: this one) and serves
	 * later readdirs from it without asking us, so their atime updates
	 * would be lost (strictatime; relatime after a chmod, a touch -a,
	 * a day; a remount).  Dropping the listing before the reply that
	 * completes it keeps every readdir coming here, as with OPENDIR;
	 * the kernel finds its first page gone and starts over
	 * (fs/fuse/readdir.c fuse_readdir_cached).  A notification is a
	 * write to /dev/fuse, no round trip. */
	if (g_no_opendir && err >= 0 && db.pos == 0)
		(void)fuse_lowlevel_notify_inval_inode(g_se, ino, 0, 0);
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
	do_readdir(req, ino, size, off, 0);
}

static void rl_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, 1);
}

/* ------------------------------------------------------------------ */
/* filesystem-wide, xattrs */

static void rl_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	GET_MP(req, mp);
	struct statvfs st;
	/* count the blocks of files just removed: their FORGETs may still be
	 * freeing them on other threads.  Bounded, as under io_uring this
	 * thread serves its CPU's whole queue: after 2 s (a huge, heavily
	 * shared file, or FORGETs arriving without pause) the count is what
	 * has been freed so far, as before this wait existed. */
	(void)rlfs_inactive_wait(mp, 2000);
	int err = rlfs_statfs(mp, &st);
	if (err) {
		reply_status(req, err);
		return;
	}
	fuse_reply_statfs(req, &st);
}

/* POSIX ACLs need FUSE_CAP_POSIX_ACL (rl_init): without it the kernel
 * would store system.posix_acl_* as plain xattrs without applying them to
 * the mode or to permission checks, so they are refused like on a
 * filesystem mounted without ACL support (cp -a and tar then fall back to
 * chmod).  With it the kernel enforces them and the library keeps the
 * mode in step (rlfs_setxattr). */
static int is_posix_acl(const char *name)
{
	return strcmp(name, "system.posix_acl_access") == 0 ||
	       strcmp(name, "system.posix_acl_default") == 0;
}

static void rl_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	GET_MP(req, mp);
	bool kill_sgid = flags & RLFS_FUSE_XATTR_KILL_SGID;
	flags &= ~RLFS_FUSE_XATTR_KILL_SGID;
	if (is_posix_acl(name) && !g_posix_acl) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (is_posix_acl(name) && kill_sgid)
		flags |= RLFS_XATTR_ACL_KILL_SGID;
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
	if (is_posix_acl(name) && !g_posix_acl) {
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


const struct fuse_lowlevel_ops rlfs_fuse_ops = {
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


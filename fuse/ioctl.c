/*
 * ioctl.c: copy_file_range and the private ioctls of reflinkfs/ioctl.h
 * (clone, clone range, extent map, unshare), with the resolution of a
 * caller's file descriptor (see daemon_int.h for the map of fuse/).
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
#include <stddef.h>
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
#include <reflinkfs/fsmap.h>
#include <reflinkfs/ioctl.h>

#include "daemon.h"
#include "daemon_int.h"
#include "uring.h"

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
 * struct rlfs_cancel for a clone done for req: stop once the caller is
 * dying, as the kernel's remap stops at fatal_signal_pending().  A caller
 * that takes a signal while it waits for the reply makes the kernel send
 * FUSE_INTERRUPT (fs/fuse/dev.c request_wait_answer); from then on the
 * caller thread's pending set is read from /proc/<tid>/status: a fatal
 * signal (SIGKILL, or one whose default action kills, which the kernel
 * turns into SIGKILL for every thread: complete_signal) shows as SIGKILL
 * in SigPnd.  A signal the caller handles does not stop the clone (on XFS
 * it would not either).  A caller that is gone is dying.  Without this a
 * killed caller stays in the kernel (uninterruptible) until the clone is
 * done, keeping the mount busy.
 */
static int caller_dying(void *arg)
{
	fuse_req_t req = arg;
	if (!fuse_req_interrupted(req))
		return 0;
	pid_t tid = req_ctx(req)->pid;
	if (tid <= 0)
		return 1;       /* outside our pid namespace: cannot ask; stop */
	char path[64], line[128];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 1;       /* gone */
	int dying = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long mask;
		if (sscanf(line, "SigPnd: %llx", &mask) == 1) {
			dying = (mask >> (SIGKILL - 1)) & 1;
			break;
		}
	}
	fclose(f);
	return dying;
}

/* RLFS_CLONE_KILL_* for a clone by req's caller onto the file st: the
 * kernel's rules (privs_to_drop: nothing for a caller with CAP_FSETID;
 * else setuid, and setgid if group-executable or the caller is outside
 * the file's group). */
static unsigned clone_kill_flags(fuse_req_t req, const struct stat *st)
{
	unsigned priv = privs_to_drop(req, st, false);
	return (priv ? RLFS_CLONE_KILL_SUID : 0) | ((priv & PRIV_SGID) ? RLFS_CLONE_KILL_SGID : 0);
}

/* If node's mode is no longer old->st_mode (the library cleared setuid or
 * setgid), drop the kernel's cached attributes of node (attributes only,
 * no pages: takes no inode or page lock, so it is safe while the kernel
 * holds the inode for the request), else the kernel shows the old mode
 * until its attribute timeout. */
static void mode_changed(struct rlfs_mount *mp, fuse_ino_t node, const struct stat *old)
{
	struct stat st;
	if (rlfs_getattr(mp, n2i(node), &st) != 0 || st.st_mode == old->st_mode || !g_se)
		return;
	int e = fuse_lowlevel_notify_inval_inode(g_se, node, -1, 0);
	if (e && e != -ENOENT)
		logmsg("reflinkfs: attribute invalidation of inode %llu failed: %s",
		       (unsigned long long)n2i(node), strerror(-e));
}

/* The arguments of a FUSE_COPY_FILE_RANGE handed to the slow pool (in
 * struct slow_job's in[]). */
struct cfr_args {
	fuse_ino_t ino_out;
	off_t off_out;
	size_t len;
	int flags;
};

/*
 * FUSE_COPY_FILE_RANGE (copy_file_range(2)), on a slow-pool thread: copy
 * (clone where aligned) len bytes of ino_in at off_in to ino_out at
 * off_out (bytes; flags must be 0) and reply with the bytes done or an
 * errno (EINVAL, EISDIR, ENOSPC, EIO...).  The kernel has already
 * checked the open modes and file types, refused overlapping same-file
 * ranges, shortened len to the source EOF, written back and waited for the
 * dirty pages of both ranges (fuse_writeback_range), and after our reply
 * it drops the destination's cached pages in the range and updates its
 * size (fs/fuse/file.c __fuse_copy_file_range).  Whole blocks in the
 * middle are cloned (shared) when source and destination offsets have the
 * same alignment; the unaligned head and the tail (including a partial
 * EOF block) are copied.  A short count is fine: callers loop.
 */
static void cfr_work(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_ino_t ino_out,
		     off_t off_out, size_t len, int flags)
{
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
	/* setuid/setgid by the caller's credentials, as for the clone
	 * ioctls (the kernel's file_modified() has already sent its SETATTR
	 * for them, by the same rules; this covers a mode it had stale) */
	unsigned kill = clone_kill_flags(req, &dstt);
	struct rlfs_cancel cancel = { caller_dying, req };  /* short count if killed */
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
			r = rlfs_clone_range_cancel(mp, src, in + head, dst, out + head, want,
						    kill, &cancel);
			if (r == -EINVAL && to_eof && mid) {
				want = mid;
				r = rlfs_clone_range_cancel(mp, src, in + head, dst, out + head,
							    want, kill, &cancel);
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
					goto reply;   /* partial (ENOSPC, caller killed) */
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
	if (kill)
		mode_changed(mp, ino_out, &dstt);
	if (done == 0 && r < 0) {
		reply_status(req, (int)r);
		return;
	}
	fuse_reply_write(req, (size_t)done);
}

static void cfr_job(struct slow_job *job)
{
	struct cfr_args a;
	memcpy(&a, job->in, sizeof(a));
	cfr_work(job->req, job->ino, job->off, a.ino_out, a.off_out, a.len, a.flags);
}

/*
 * FUSE_COPY_FILE_RANGE: handed to the slow pool (cfr_work does it), where
 * the private ioctls clone too.  A clone of a big file takes a while; with
 * FUSE over io_uring the thread that received the request is the ring
 * thread of the caller's CPU, and run there the clone held up every
 * request that the kernel queued on that ring meanwhile: any process on
 * that CPU stalled until the clone was done, among them one watching the
 * clone in order to kill its caller (29-clone-kill: its statfs returned
 * only after the whole clone, and the kill came too late to stop it).
 * fi_in and fi_out are not used.
 */
void rl_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			struct fuse_file_info *fi_out, size_t len, int flags)
{
	(void)fi_in;
	(void)fi_out;
	struct cfr_args a = { ino_out, off_out, len, flags };
	struct slow_job *job = calloc(1, sizeof(*job) + sizeof(a));
	if (!job) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	job->run = cfr_job;
	job->req = req;
	job->ino = ino_in;
	job->off = off_in;
	job->in_len = sizeof(a);
	memcpy(job->in, &a, sizeof(a));
	slow_submit(job);
}

int fh_flags(const struct fuse_file_info *fi, bool *known)
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

/* Remove security.capability from node (file_remove_privs' ATTR_KILL_PRIV:
 * whoever changes a file's data, the capabilities go), and tell the
 * kernel, which caches the xattr's absence per inode (S_NOSEC). */
static void drop_capabilities(struct rlfs_mount *mp, fuse_ino_t node)
{
	int err = rlfs_removexattr(mp, n2i(node), "security.capability");
	if (err == 0 && g_se)
		fuse_lowlevel_notify_inval_inode(g_se, node, -1, 0);
	else if (err && err != -ENODATA)
		logmsg("reflinkfs: cannot remove security.capability of inode %llu: %s",
		       (unsigned long long)n2i(node), strerror(-err));
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
static int clone_checked(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino,
			 struct fuse_file_info *fi, unsigned ioflags, const struct caller_file *cf,
			 uint64_t src_off, uint64_t len, uint64_t dst_off);

static int do_clone(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino,
		    struct fuse_file_info *fi, unsigned ioflags, int64_t src_fd,
		    uint64_t src_off, uint64_t len, uint64_t dst_off)
{
	struct caller_file cf;
	int err = callerfd_get(req, src_fd, &cf);
	if (err == -EBADF)
		return err;
	if (!remap_area_ok(src_off, len) || !remap_area_ok(dst_off, len))
		err = -EINVAL;
	if (!err)
		err = clone_checked(req, mp, ino, fi, ioflags, &cf, src_off, len, dst_off);
	callerfd_put(&cf);
	return err;
}

/* do_clone once the source is resolved (cf). */
static int clone_checked(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino,
			 struct fuse_file_info *fi, unsigned ioflags, const struct caller_file *cf,
			 uint64_t src_off, uint64_t len, uint64_t dst_off)
{
	uint64_t src = cf->ino;
	int src_flags = cf->flags;
	int err;
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
	/* file_remove_privs(dst) as the kernel's remap prep does it:
	 * security.capability goes whoever clones (new contents must not
	 * run with the old file's capabilities), setuid/setgid by the
	 * caller's credentials */
	drop_capabilities(mp, ino);
	unsigned kill = clone_kill_flags(req, &dstt);
	/* a dying caller stops the clone between pieces: the partial result
	 * is then EINVAL for CLONE_RANGE, 0 for CLONE (ioctl_file_clone) */
	struct rlfs_cancel cancel = { caller_dying, req };
	int64_t r = rlfs_clone_range_cancel(mp, src, src_off, dst, dst_off, len, kill, &cancel);
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

/*
 * RLFS_IOC_EXCHANGE_RANGE on file2 (ino, fi), in the order of the
 * kernel's checks (fs/xfs/xfs_exchrange.c xfs_ioc_exchange_range ->
 * xfs_exchange_range_checks): EINVAL (reserved words, unknown flags),
 * EBADF (file1_fd not open), EXDEV (another filesystem), EINVAL (offsets
 * or length wrap), EISDIR / EINVAL (file types), EBADF (either file not
 * open for reading and writing, or O_APPEND), then the library's
 * checks (rlfs_exchange_range).  Both files' dirty pages are written back
 * first; afterwards the kernel's caches of both ranges are dropped.
 */
static int do_exchange(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino,
		       struct fuse_file_info *fi, unsigned ioflags,
		       const struct rlfs_ioc_exchange_range *a,
		       const struct rlfs_exchange_fresh *fresh)
{
	if (a->reserved[0] || a->reserved[1] || a->reserved[2] ||
	    (a->flags & ~(uint64_t)RLFS_EXCHANGE_ALL_FLAGS))
		return -EINVAL;
	struct caller_file cf;
	int err = callerfd_get(req, a->file1_fd, &cf);
	if (err)
		return err;
	uint64_t ino1 = cf.ino, ino2 = n2i(ino);
	struct stat st1, st2;
	err = rlfs_getattr(mp, ino1, &st1);
	if (err == -ENOENT)
		err = -EXDEV;
	if (!err)
		err = rlfs_getattr(mp, ino2, &st2);
	if (!err && (!remap_area_ok(a->file1_offset, a->length) ||
		     !remap_area_ok(a->file2_offset, a->length)))
		err = -EINVAL;
	if (!err && (S_ISDIR(st1.st_mode) || S_ISDIR(st2.st_mode) || (ioflags & FUSE_IOCTL_DIR)))
		err = -EISDIR;
	if (!err && (!S_ISREG(st1.st_mode) || !S_ISREG(st2.st_mode)))
		err = -EINVAL;
	bool known;
	int fl2 = fh_flags(fi, &known);
	if (!err && ((cf.flags & O_ACCMODE) != O_RDWR || (cf.flags & O_APPEND) || !known ||
		     (fl2 & O_ACCMODE) != O_RDWR || (fl2 & O_APPEND)))
		err = -EBADF;
	int fl1 = cf.flags;
	callerfd_put(&cf);
	if (err)
		return err;
	fuse_ino_t nodes[2] = { i2n(ino1), ino };
	flush_and_wait(nodes, ino1 == ino2 ? 1 : 2);
	uint64_t flags = a->flags;
	if ((fl1 | fl2) & (O_SYNC | O_DSYNC))
		flags |= RLFS_EXCHANGE_DSYNC;   /* the man page: same effect */
	if (!(flags & RLFS_EXCHANGE_DRY_RUN)) {
		/* file_remove_privs of both files (xfs_exchange_range_finish) */
		if (rlfs_getattr(mp, ino1, &st1) == 0 && rlfs_getattr(mp, ino2, &st2) == 0) {
			unsigned k1 = clone_kill_flags(req, &st1), k2 = clone_kill_flags(req, &st2);
			if (k1 & RLFS_CLONE_KILL_SUID)
				flags |= RLFS_EXCHANGE_KILL_SUID1;
			if (k1 & RLFS_CLONE_KILL_SGID)
				flags |= RLFS_EXCHANGE_KILL_SGID1;
			if (k2 & RLFS_CLONE_KILL_SUID)
				flags |= RLFS_EXCHANGE_KILL_SUID2;
			if (k2 & RLFS_CLONE_KILL_SGID)
				flags |= RLFS_EXCHANGE_KILL_SGID2;
		}
	}
	uint64_t size1 = (uint64_t)st1.st_size, size2 = (uint64_t)st2.st_size;
	err = rlfs_commit_range(mp, ino1, a->file1_offset, ino2, a->file2_offset, a->length,
				flags, fresh);
	if (!err && !(flags & RLFS_EXCHANGE_DRY_RUN)) {
		drop_capabilities(mp, i2n(ino1));
		if (ino2 != ino1)
			drop_capabilities(mp, ino);
		/* contents (and with TO_EOF sizes) changed from the offsets on;
		 * in one file from the lower of the two (both ranges changed) */
		uint64_t from1 = a->file1_offset;
		if (ino2 == ino1 && a->file2_offset < from1)
			from1 = a->file2_offset;
		after_change(mp, i2n(ino1), from1 & ~(uint64_t)4095, UINT64_MAX, size1);
		if (ino2 != ino1)
			after_change(mp, ino, a->file2_offset & ~(uint64_t)4095, UINT64_MAX, size2);
	}
	return err;
}

/* RLFS_IOC_START_COMMIT on file2 (ino): its pending writes go to the
 * library first, then its freshness into a (rest zeroed). */
static int do_start_commit(struct rlfs_mount *mp, fuse_ino_t ino,
			   struct rlfs_ioc_commit_range *a)
{
	fuse_ino_t nodes[1] = { ino };
	flush_and_wait(nodes, 1);
	struct rlfs_exchange_fresh f;
	int err = rlfs_exchange_fresh_sample(mp, n2i(ino), &f);
	if (err)
		return err;
	memset(a, 0, sizeof(*a));
	a->file2_freshness[0] = f.ino;
	a->file2_freshness[1] = f.generation;
	a->file2_freshness[2] = (uint64_t)f.mtime.tv_sec;
	a->file2_freshness[3] = (uint64_t)f.mtime.tv_nsec;
	a->file2_freshness[4] = (uint64_t)f.ctime.tv_sec;
	a->file2_freshness[5] = (uint64_t)f.ctime.tv_nsec;
	return 0;
}

/* RLFS_IOC_COMMIT_RANGE: the exchange, if file2 is as a's freshness says. */
static int do_commit_range(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino,
			   struct fuse_file_info *fi, unsigned ioflags,
			   const struct rlfs_ioc_commit_range *a)
{
	if (a->reserved[0] || a->reserved[1])
		return -EINVAL;
	struct rlfs_ioc_exchange_range x = {
		.file1_fd = a->file1_fd, .file1_offset = a->file1_offset,
		.file2_offset = a->file2_offset, .length = a->length, .flags = a->flags,
	};
	struct rlfs_exchange_fresh f = {
		.ino = a->file2_freshness[0],
		.generation = a->file2_freshness[1],
		.mtime = { (time_t)a->file2_freshness[2], (long)a->file2_freshness[3] },
		.ctime = { (time_t)a->file2_freshness[4], (long)a->file2_freshness[5] },
	};
	return do_exchange(req, mp, ino, fi, ioflags, &x, &f);
}

/*
 * posix_acl_permission (fs/posix_acl.c) for MAY_WRITE on the access ACL
 * acl (the kernel's xattr form: le32 version 2, entries {le16 tag, le16
 * perm, le32 id}) of a file owned by st: the owner entry for the owner,
 * a named user entry (masked), else any group entry (owning or named,
 * masked) of the caller's groups that grants it, else, if one matched,
 * none; else the other entry.  1 granted, 0 refused, -1 a malformed ACL
 * (the caller falls back to the mode bits).
 */
static int acl_may_write(const uint8_t *acl, size_t n, const struct stat *st, uid_t uid,
			 const struct caller_creds *cc)
{
	enum { USER_OBJ = 1, USER = 2, GROUP_OBJ = 4, GROUP = 8, MASK = 16, OTHER = 32, W = 2 };
	if (n < 4 || (n - 4) % 8 || acl[0] != 2 || acl[1] || acl[2] || acl[3])
		return -1;
	unsigned mask = 7, other = 0;
	int user = -1;
	bool group_match = false, group_ok = false;
	for (size_t o = 4; o < n; o += 8) {
		unsigned tag = acl[o] | (unsigned)acl[o + 1] << 8;
		unsigned perm = acl[o + 2] | (unsigned)acl[o + 3] << 8;
		uint32_t id = (uint32_t)acl[o + 4] | (uint32_t)acl[o + 5] << 8 |
			      (uint32_t)acl[o + 6] << 16 | (uint32_t)acl[o + 7] << 24;
		switch (tag) {
		case USER_OBJ:
			if (st->st_uid == uid)
				return (perm & W) != 0;
			break;
		case USER:
			if (id == uid)
				user = (int)perm;
			break;
		case GROUP_OBJ:
		case GROUP: {
			gid_t g = tag == GROUP_OBJ ? st->st_gid : (gid_t)id;
			if (cc->known && caller_in_group(cc, g)) {
				group_match = true;
				if (perm & W)
					group_ok = true;  /* masked below */
			}
			break;
		}
		case MASK:
			mask = perm;
			break;
		case OTHER:
			other = perm;
			break;
		default:
			return -1;
		}
	}
	if (user >= 0)
		return ((unsigned)user & mask & W) != 0;
	if (group_match)
		return group_ok && (mask & W);
	return (other & W) != 0;
}

/*
 * allow_file_dedupe (fs/remap_range.c) for the destination st (inode
 * ino) opened with flags by req's caller: CAP_SYS_ADMIN, or open for
 * writing, or owned by the caller's fsuid, or writable by the caller
 * (inode_permission MAY_WRITE: the access ACL if the file has one, else
 * the mode bits: owner, group with the caller's groups, others; or
 * CAP_DAC_OVERRIDE, generic_permission's override for a regular file).
 * Immutability is the library's check (EPERM there too).
 */
static bool may_dedupe(fuse_req_t req, struct rlfs_mount *mp, uint64_t ino,
		       const struct caller_creds *cc, int flags, const struct stat *st)
{
	if (cc->known && cc->sysadmin)
		return true;
	if ((flags & O_ACCMODE) != O_RDONLY)
		return true;
	uid_t uid = req_ctx(req)->uid;
	if (st->st_uid == uid || (cc->known && cc->dac_override))
		return true;
	uint8_t acl[4096];
	int n = rlfs_getxattr(mp, ino, "system.posix_acl_access", acl, sizeof(acl));
	if (n > 0) {
		int r = acl_may_write(acl, (size_t)n, st, uid, cc);
		if (r >= 0)
			return r == 1;
	}
	if (cc->known && caller_in_group(cc, st->st_gid))
		return (st->st_mode & S_IWGRP) != 0;
	return (st->st_mode & S_IWOTH) != 0;
}

/* One destination of RLFS_IOC_DEDUPE_RANGE, in the order of the kernel's
 * vfs_dedupe_file_range / vfs_dedupe_file_range_one: the descriptor
 * (EBADF), reserved (EINVAL), the range (EINVAL), permission (EPERM),
 * filesystem (EXDEV), type (EISDIR), len 0, then the library (which
 * holds both iolocks from the compare through the share).  Sets status
 * and bytes_deduped. */
static void dedupe_one(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t src_node,
		       const struct caller_creds *cc, uint64_t src_off, uint64_t len,
		       struct rlfs_ioc_dedupe_info *info)
{
	struct caller_file cf;
	info->bytes_deduped = 0;
	info->status = 0;
	int err = callerfd_get(req, info->dest_fd, &cf);
	if (err) {
		info->status = err;
		return;
	}
	struct stat dst;
	if (info->reserved || !remap_area_ok(info->dest_offset, len))
		err = -EINVAL;
	if (!err) {
		err = rlfs_getattr(mp, cf.ino, &dst);
		if (err == -ENOENT)
			err = -EXDEV;
	}
	if (!err && !may_dedupe(req, mp, cf.ino, cc, cf.flags, &dst))
		err = -EPERM;
	if (!err && S_ISDIR(dst.st_mode))
		err = -EISDIR;
	if (!err && len) {
		/* the kernel writes dirty pages back in the remap prep; it
		 * does not for an ioctl to FUSE: do it, and wait */
		fuse_ino_t nodes[2] = { src_node, i2n(cf.ino) };
		flush_and_wait(nodes, src_node == nodes[1] ? 1 : 2);
		uint64_t done = 0;
		int r = rlfs_dedupe_range(mp, n2i(src_node), src_off, cf.ino, info->dest_offset,
					  len, &done);
		if (r == RLFS_DEDUPE_DIFFERS)
			info->status = RLFS_DEDUPE_DIFFERS;
		else if (r < 0)
			err = r;
		else
			info->bytes_deduped = len;      /* as the kernel reports it */
	}
	callerfd_put(&cf);
	if (err)
		info->status = err;
}

/* RLFS_IOC_DEDUPE_RANGE on the source (ino, fi): the whole-call checks of
 * vfs_dedupe_file_range, then each destination (reflinkfs/ioctl.h). */
static int do_dedupe(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino,
		     struct fuse_file_info *fi, unsigned ioflags, struct rlfs_ioc_dedupe_range *d)
{
	bool known;
	int fl = fh_flags(fi, &known);
	if ((ioflags & FUSE_IOCTL_DIR))
		return -EISDIR;
	if (!known || (fl & O_ACCMODE) == O_WRONLY)
		return -EINVAL;         /* source not open for reading */
	if (d->reserved1 || d->reserved2 || d->dest_count > RLFS_IOC_DEDUPE_MAX)
		return -EINVAL;
	struct stat st;
	int err = rlfs_getattr(mp, n2i(ino), &st);
	if (err)
		return err;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if (!remap_area_ok(d->src_offset, d->src_length))
		return -EINVAL;
	/* against the size the caller sees: its dirty pages first */
	flush_and_wait(&ino, 1);
	err = rlfs_getattr(mp, n2i(ino), &st);
	if (err)
		return err;
	if (d->src_offset + d->src_length > (uint64_t)st.st_size)
		return -EINVAL;
	/* the kernel's "arbitrary 1G limit on a single dedupe request" */
	uint64_t len = d->src_length;
	if (len > RLFS_IOC_DEDUPE_MAX_LEN)
		len = RLFS_IOC_DEDUPE_MAX_LEN;
	struct caller_creds cc;
	caller_creds_get(req, &cc);     /* unknown: no CAP_SYS_ADMIN */
	for (unsigned i = 0; i < d->dest_count; i++) {
		d->info[i].bytes_deduped = 0;
		d->info[i].status = 0;
	}
	for (unsigned i = 0; i < d->dest_count; i++) {
		dedupe_one(req, mp, ino, &cc, d->src_offset, len, &d->info[i]);
		if (caller_dying(req))
			break;          /* fatal_signal_pending: the rest stay 0 */
	}
	return 0;
}

/* RLFS_IOC_GET_EXTENTS with FS_IOC_FIEMAP's checks in its order
 * (fiemap_prep: length, start, then flags; the library checks the range). */
static int do_get_extents(struct rlfs_mount *mp, fuse_ino_t ino, struct rlfs_ioc_extents *x)
{
	uint32_t count = 0;
	if (x->reserved)
		return -EINVAL;
	if (x->flags & ~(RLFS_IOC_EXT_SYNC | RLFS_IOC_EXT_XATTR)) {
		int err = rlfs_get_extents(mp, n2i(ino), x->start, x->length, NULL, 0, &count);
		return err ? err : -EBADR;
	}
	if (x->flags & RLFS_IOC_EXT_SYNC)
		flush_and_wait(&ino, 1);
	memset(x->ext, 0, sizeof(x->ext));
	int err = (x->flags & RLFS_IOC_EXT_XATTR) ?
		  rlfs_get_xattr_extents(mp, n2i(ino), x->start, x->length, x->ext,
					 RLFS_IOC_EXTENTS_BATCH, &count) :
		  rlfs_get_extents(mp, n2i(ino), x->start, x->length, x->ext,
				   RLFS_IOC_EXTENTS_BATCH, &count);
	if (err)
		return err;
	x->count = count;
	x->abi_version = RLFS_IOC_ABI_VERSION;
	return 0;
}

/* vfs_fallocate's fd check for the fallocate-like ioctls: a regular file
 * open for writing (the kernel's FMODE_WRITE), else -EBADF. */
static int fd_writable(struct fuse_file_info *fi, unsigned ioflags)
{
	bool known;
	int fl = fh_flags(fi, &known);
	if (ioflags & FUSE_IOCTL_DIR)
		return -EBADF;          /* a directory cannot be open for writing */
	if (!known || (fl & O_ACCMODE) == O_RDONLY)
		return -EBADF;
	return 0;
}

/* Before a fallocate-like ioctl changes ino: the kernel's dirty pages
 * written back (an ioctl does not do it), the file's attributes into *st,
 * and file_modified()'s privilege drops (xfs_file_fallocate does them
 * first, for every mode): security.capability, and setuid/setgid by the
 * caller's credentials, with the kernel's cached attributes dropped.
 * 0 or the library's error. */
static int fallocate_prep(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino, struct stat *st)
{
	flush_and_wait(&ino, 1);
	int err = rlfs_getattr(mp, n2i(ino), st);
	if (err)
		return err;
	drop_capabilities(mp, ino);
	unsigned priv = privs_to_drop(req, st, false);
	if (priv) {
		struct stat out;
		err = rlfs_setattr(mp, n2i(ino), st,
				   ((priv & PRIV_SUID) ? RLFS_SET_KILL_SUID : 0) |
				   ((priv & PRIV_SGID) ? RLFS_SET_KILL_SGID : 0), &out);
		if (err)
			return err;
		if (g_se)
			fuse_lowlevel_notify_inval_inode(g_se, ino, -1, 0);
	}
	return 0;
}

static int do_unshare(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino,
		      struct fuse_file_info *fi,
		      unsigned ioflags, const struct rlfs_ioc_unshare *u)
{
	if (u->reserved || u->reserved2[0] || u->reserved2[1] ||
	    (u->flags & ~RLFS_IOC_UNSHARE_KEEP_SIZE))
		return -EINVAL;
	/* vfs_fallocate: offset >= 0, len > 0, no wrap; then the file */
	if (u->offset > INT64_MAX || u->length == 0 || u->length > INT64_MAX ||
	    u->length > (uint64_t)INT64_MAX - u->offset)
		return -EINVAL;
	int err = fd_writable(fi, ioflags);
	struct stat st;
	if (!err)
		err = fallocate_prep(req, mp, ino, &st);
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

/* RLFS_IOC_SHIFT_RANGE: collapse or insert range (reflinkfs/ioctl.h), with
 * do_unshare's checks and privilege drops; afterwards every cached page of
 * the file is dropped (all offsets past the point moved) and its
 * attributes with them. */
static int do_shift(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino,
		    struct fuse_file_info *fi, unsigned ioflags, struct rlfs_ioc_shift *a)
{
	if (a->reserved || a->reserved2[0] || a->reserved2[1] ||
	    (a->flags != RLFS_IOC_SHIFT_COLLAPSE && a->flags != RLFS_IOC_SHIFT_INSERT))
		return -EINVAL;
	if (a->offset > INT64_MAX || a->length == 0 || a->length > INT64_MAX)
		return -EINVAL;
	int err = fd_writable(fi, ioflags);
	if (err)
		return err;
	if (a->length > (uint64_t)INT64_MAX - a->offset)
		return -EFBIG;
	struct stat st;
	err = fallocate_prep(req, mp, ino, &st);
	if (err)
		return err;
	int mode = a->flags == RLFS_IOC_SHIFT_COLLAPSE ? FALLOC_FL_COLLAPSE_RANGE
						       : FALLOC_FL_INSERT_RANGE;
	err = rlfs_fallocate(mp, n2i(ino), mode, (off_t)a->offset, (off_t)a->length);
	if (err)
		return err;
	err = rlfs_getattr(mp, n2i(ino), &st);
	if (err)
		return err;
	a->new_size = (uint64_t)st.st_size;
	/* an insert raises the kernel's size by storing the last page */
	after_change(mp, ino, 0, 0, a->flags == RLFS_IOC_SHIFT_INSERT ? a->new_size - a->length
								   : a->new_size);
	return 0;
}

/*
 * RLFS_IOC_GETFSMAP: one batch of GETFSMAP (reflinkfs/ioctl.h).  Only for
 * CAP_SYS_ADMIN callers, as XFS's xfs_ioc_getfsmap (the map names every
 * file's blocks).  The library takes the metadata lock per AG; a batch is
 * at most RLFS_IOC_FSMAP_BATCH records, so this holds a slow-pool thread
 * briefly.
 */

/* The version a caller of RLFS_IOC_GETFSMAP / RLFS_IOC_FSMAP_GEOM says it
 * was built with: any from 1 on.  A structure never changes under its
 * ioctl number (reflinkfs/ioctl.h), so a caller built against an older or
 * a newer header means the same bytes; 0 is an argument never filled in. */
static bool abi_version_ok(uint32_t version)
{
	return version >= 1;
}
static void getfsmap_ioctl(fuse_req_t req, struct rlfs_mount *mp, const void *in_buf,
			   size_t in_bufsz, size_t out_bufsz)
{
	if (in_bufsz != sizeof(struct rlfs_ioc_fsmap) || out_bufsz != sizeof(struct rlfs_ioc_fsmap)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	struct caller_creds cc;
	if (caller_creds_get(req, &cc) || !cc.sysadmin) {
		fuse_reply_err(req, EPERM);
		return;
	}
	struct rlfs_ioc_fsmap *io = malloc(sizeof(*io));
	struct fsmap_head *h = malloc(sizeof(*h) + RLFS_IOC_FSMAP_BATCH * sizeof(struct fsmap));
	int err = -ENOMEM;
	if (io && h) {
		memcpy(io, in_buf, sizeof(*io));
		err = -EINVAL;
		if (abi_version_ok(io->version) && io->count <= RLFS_IOC_FSMAP_BATCH) {
			memset(h, 0, sizeof(*h));
			h->fmh_iflags = io->iflags;
			h->fmh_count = io->count;
			h->fmh_keys[0] = io->keys[0];
			h->fmh_keys[1] = io->keys[1];
			err = rlfs_getfsmap_head(mp, io->dev, h);
		}
	}
	if (err) {
		reply_status(req, err);
	} else {
		io->oflags = h->fmh_oflags;
		io->entries = h->fmh_entries;
		memset(io->recs, 0, sizeof(io->recs));
		if (io->count)
			memcpy(io->recs, h->fmh_recs, h->fmh_entries * sizeof(struct fsmap));
		fuse_reply_ioctl(req, 0, io, sizeof(*io));
	}
	free(io);
	free(h);
}

/*
 * ioctl: the private, restricted ioctls of reflinkfs/ioctl.h (fixed
 * sizes encoded in the number, so the kernel copies the argument in and
 * out itself).  Their layouts are the same for 32-bit callers
 * (FUSE_IOCTL_COMPAT: only 64-bit fields, naturally aligned), so compat
 * requests are served the same way.  And the fileattr ioctls the kernel
 * forwards itself (fileattr.c).  Other ioctls: ENOTTY.
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
		err = do_unshare(req, mp, ino, fi, flags, &a);
		if (err)
			reply_status(req, err);
		else
			fuse_reply_ioctl(req, 0, &a, sizeof(a));
		return;
	}
	case RLFS_IOC_SHIFT_RANGE: {
		struct rlfs_ioc_shift a;
		if (in_bufsz != sizeof(a) || out_bufsz != sizeof(a)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		memcpy(&a, in_buf, sizeof(a));
		err = do_shift(req, mp, ino, fi, flags, &a);
		if (err)
			reply_status(req, err);
		else
			fuse_reply_ioctl(req, 0, &a, sizeof(a));
		return;
	}
	case RLFS_IOC_DEDUPE_RANGE: {
		if (in_bufsz != sizeof(struct rlfs_ioc_dedupe_range) ||
		    out_bufsz != sizeof(struct rlfs_ioc_dedupe_range)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		struct rlfs_ioc_dedupe_range *d = malloc(sizeof(*d));
		if (!d) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		memcpy(d, in_buf, sizeof(*d));
		err = do_dedupe(req, mp, ino, fi, flags, d);
		if (err)
			reply_status(req, err);
		else
			fuse_reply_ioctl(req, 0, d, sizeof(*d));
		free(d);
		return;
	}
	case RLFS_IOC_EXCHANGE_RANGE: {
		struct rlfs_ioc_exchange_range a;
		if (in_bufsz != sizeof(a) || out_bufsz != sizeof(a)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		memcpy(&a, in_buf, sizeof(a));
		err = do_exchange(req, mp, ino, fi, flags, &a, NULL);
		if (err)
			reply_status(req, err);
		else
			fuse_reply_ioctl(req, 0, &a, sizeof(a));
		return;
	}
	case RLFS_IOC_START_COMMIT:
	case RLFS_IOC_COMMIT_RANGE: {
		struct rlfs_ioc_commit_range a;
		if (in_bufsz != sizeof(a) || out_bufsz != sizeof(a)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		memcpy(&a, in_buf, sizeof(a));
		if (c == RLFS_IOC_START_COMMIT)
			err = do_start_commit(mp, ino, &a);
		else
			err = do_commit_range(req, mp, ino, fi, flags, &a);
		if (err)
			reply_status(req, err);
		else
			fuse_reply_ioctl(req, 0, &a, sizeof(a));
		return;
	}
	case RLFS_IOC_MOUNT_STATE:
		mount_state_ioctl(req, in_buf, in_bufsz, out_bufsz);   /* remount.c */
		return;
	case RLFS_IOC_GETFSMAP:
		getfsmap_ioctl(req, mp, in_buf, in_bufsz, out_bufsz);
		return;
	case RLFS_IOC_FSMAP_GEOM: {
		struct rlfs_ioc_fsmap_geom g;
		if (in_bufsz != sizeof(g) || out_bufsz != sizeof(g)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		memcpy(&g, in_buf, sizeof(g));
		if (!abi_version_ok(g.version) || g.reserved[0] || g.reserved[1]) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		uint64_t dblocks;
		rlfs_fsmap_geometry(mp, &g.blocksize, &g.agblocks, &g.agcount, &dblocks);
		g.dblocks = dblocks;
		fuse_reply_ioctl(req, 0, &g, sizeof(g));
		return;
	}
	default:
		if (fileattr_ioctl_cmd(c)) {
			fileattr_ioctl(req, mp, ino, c, in_buf, in_bufsz, out_bufsz);
			return;
		}
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
 * slow_submit; a map that does not flush is answered at once.  Unknown
 * requests: ENOTTY at once. */
void rl_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		     struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		     size_t in_bufsz, size_t out_bufsz)
{
	(void)arg;
	if ((flags & FUSE_IOCTL_UNRESTRICTED) ||
	    (cmd != RLFS_IOC_CLONE && cmd != RLFS_IOC_CLONE_RANGE &&
	     cmd != RLFS_IOC_GET_EXTENTS && cmd != RLFS_IOC_UNSHARE_RANGE &&
	     cmd != RLFS_IOC_SHIFT_RANGE &&
	     cmd != RLFS_IOC_MOUNT_STATE && cmd != RLFS_IOC_GETFSMAP &&
	     cmd != RLFS_IOC_FSMAP_GEOM && cmd != RLFS_IOC_DEDUPE_RANGE &&
	     cmd != RLFS_IOC_EXCHANGE_RANGE && cmd != RLFS_IOC_START_COMMIT &&
	     cmd != RLFS_IOC_COMMIT_RANGE &&
	     !fileattr_ioctl_cmd(cmd))) {
		fuse_reply_err(req, ENOTTY);
		return;
	}
	if (in_bufsz > sizeof(struct rlfs_ioc_extents) && in_bufsz > sizeof(struct rlfs_ioc_fsmap) &&
	    in_bufsz > sizeof(struct rlfs_ioc_dedupe_range)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* A map without RLFS_IOC_EXT_SYNC never waits for WRITEs and is short
	 * (at most RLFS_IOC_EXTENTS_BATCH extents, the inode lock shared, as
	 * an lseek that needs no flush): answered on this request thread.
	 * The hand-off to the slow pool costs a thread wake-up per call, and
	 * `reflinkfs dedupe` maps every file it reads (docs/DESIGN.md "Round
	 * trips on reflinkfs"). */
	if (cmd == RLFS_IOC_GET_EXTENTS && in_bufsz == sizeof(struct rlfs_ioc_extents)) {
		struct rlfs_ioc_extents hdr;
		memcpy(&hdr, in_buf, offsetof(struct rlfs_ioc_extents, ext));
		if (!(hdr.flags & RLFS_IOC_EXT_SYNC)) {
			ioctl_work(req, ino, cmd, fi, flags, in_buf, in_bufsz, out_bufsz);
			return;
		}
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

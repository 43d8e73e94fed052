/*
 * fileattr.c: FS_IOC_GETFLAGS / FS_IOC_SETFLAGS and FS_IOC_FSGETXATTR /
 * FS_IOC_FSSETXATTR, which the kernel forwards to a FUSE daemon as ioctl
 * requests of fixed sizes (fs/fuse/ioctl.c fuse_fileattr_get/_set:
 * 4 bytes of flags, or a struct fsxattr), so lsattr(1), chattr(1) and
 * xfs_io's chattr/lsattr/extsize/cowextsize reach here unmodified.
 *
 * The kernel checks ownership and CAP_LINUX_IMMUTABLE itself before it
 * forwards a set (vfs_fileattr_set); the daemon checks them again from
 * the caller's credentials (a request from elsewhere, or a kernel without
 * the check, gets the same answer), then the library applies XFS's rules
 * (lib/fileattr.c).
 */
#include <errno.h>
#include <string.h>
#include <linux/fs.h>

#include "daemon.h"
#include "daemon_int.h"

/* FS_*_FL (FS_IOC_GETFLAGS) <-> FS_XFLAG_* (fileattr_fill_flags and
 * fileattr_fill_xflags, fs/file_attr.c), for the flags stored */
static const struct {
	uint32_t fl, xflag;
} fl_map[] = {
	{ FS_IMMUTABLE_FL, FS_XFLAG_IMMUTABLE },
	{ FS_APPEND_FL, FS_XFLAG_APPEND },
	{ FS_NODUMP_FL, FS_XFLAG_NODUMP },
	{ FS_NOATIME_FL, FS_XFLAG_NOATIME },
};
#define NFL (sizeof(fl_map) / sizeof(fl_map[0]))

static uint32_t xflags_to_fl(uint32_t x)
{
	uint32_t fl = 0;
	for (size_t i = 0; i < NFL; i++)
		if (x & fl_map[i].xflag)
			fl |= fl_map[i].fl;
	return fl;
}

/* -EOPNOTSUPP for a flag not stored (xfs_fileattr_set refuses the
 * FS_IOC_SETFLAGS bits it has no flag for: FS_DIRSYNC_FL, FS_COMPR_FL...;
 * FS_SYNC_FL too here, which reflinkfs does not honour) */
static int fl_to_xflags(uint32_t fl, uint32_t *x)
{
	*x = 0;
	for (size_t i = 0; i < NFL; i++) {
		if (fl & fl_map[i].fl) {
			*x |= fl_map[i].xflag;
			fl &= ~fl_map[i].fl;
		}
	}
	return fl ? -EOPNOTSUPP : 0;
}

/* inode_owner_or_capable: the caller's fsuid owns the inode, or it has
 * CAP_FOWNER; then what it may do with IMMUTABLE and APPEND.  0 or
 * -EPERM; *how gets RLFS_FA_CAP_LINUX_IMMUTABLE when it has that. */
static int caller_may_set(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino, unsigned *how)
{
	struct stat st;
	int err = rlfs_getattr(mp, n2i(ino), &st);
	if (err)
		return err;
	struct caller_creds cc;
	caller_creds_get(req, &cc);     /* unknown: no capabilities */
	if (st.st_uid != req_ctx(req)->uid && !(cc.known && cc.fowner))
		return -EPERM;
	if (cc.known && cc.linux_immutable)
		*how |= RLFS_FA_CAP_LINUX_IMMUTABLE;
	return 0;
}

static int set_attr(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino,
		    const struct rlfs_fileattr *fa, unsigned how)
{
	int err = caller_may_set(req, mp, ino, &how);
	if (err)
		return err;
	/* Pages the writeback cache holds were written while the flags
	 * allowed it: they go out before IMMUTABLE or APPEND can refuse
	 * them (on XFS they are in the file already). */
	flush_and_wait(&ino, 1);
	err = rlfs_fileattr_set(mp, n2i(ino), fa, how);
	if (!err && g_se)
		fuse_lowlevel_notify_inval_inode(g_se, ino, -1, 0);     /* ctime */
	return err;
}

/* The argument sizes of a get (out) or a set (in) of a want-byte value;
 * replies EINVAL and returns false when they do not match. */
static bool arg_size_ok(fuse_req_t req, bool set, size_t in_bufsz, size_t out_bufsz, size_t want)
{
	if ((set && in_bufsz != want) || (!set && out_bufsz != want)) {
		fuse_reply_err(req, EINVAL);
		return false;
	}
	return true;
}

/* A get: the inode's attributes into *fa, or the error replied (false). */
static bool get_attr(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino,
		     struct rlfs_fileattr *fa)
{
	int err = rlfs_fileattr_get(mp, n2i(ino), fa);
	if (err)
		reply_status(req, err);
	return !err;
}

/* A set's reply: its error, or the argument back if the caller has room. */
static void reply_set(fuse_req_t req, int err, const void *arg, size_t len, size_t out_bufsz)
{
	if (err)
		reply_status(req, err);
	else
		fuse_reply_ioctl(req, 0, out_bufsz >= len ? arg : NULL, out_bufsz >= len ? len : 0);
}

void fileattr_ioctl(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino, unsigned int cmd,
		    const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct rlfs_fileattr fa;
	int err;
	switch (cmd) {
	case FS_IOC_GETFLAGS:
	case FS_IOC_SETFLAGS:
	case FS_IOC32_GETFLAGS:
	case FS_IOC32_SETFLAGS: {
		/* the kernel sends an int whatever the number says */
		uint32_t fl;
		bool set = cmd == FS_IOC_SETFLAGS || cmd == FS_IOC32_SETFLAGS;
		if (!arg_size_ok(req, set, in_bufsz, out_bufsz, sizeof(fl)))
			return;
		if (!set) {
			if (!get_attr(req, mp, ino, &fa))
				return;
			fl = xflags_to_fl(fa.xflags);
			fuse_reply_ioctl(req, 0, &fl, sizeof(fl));
			return;
		}
		memcpy(&fl, in_buf, sizeof(fl));
		memset(&fa, 0, sizeof(fa));
		err = fl_to_xflags(fl, &fa.xflags);
		if (!err)
			err = set_attr(req, mp, ino, &fa, RLFS_FA_FLAGS_ONLY);
		reply_set(req, err, &fl, sizeof(fl), out_bufsz);
		return;
	}
	case FS_IOC_FSGETXATTR:
	case FS_IOC_FSSETXATTR: {
		struct fsxattr x;
		bool set = cmd == FS_IOC_FSSETXATTR;
		if (!arg_size_ok(req, set, in_bufsz, out_bufsz, sizeof(x)))
			return;
		if (!set) {
			if (!get_attr(req, mp, ino, &fa))
				return;
			memset(&x, 0, sizeof(x));
			x.fsx_xflags = fa.xflags;
			x.fsx_extsize = fa.extsize_bytes;
			x.fsx_nextents = fa.nextents;
			x.fsx_projid = fa.projid;
			x.fsx_cowextsize = fa.cowextsize_bytes;
			fuse_reply_ioctl(req, 0, &x, sizeof(x));
			return;
		}
		memcpy(&x, in_buf, sizeof(x));
		fa = (struct rlfs_fileattr){
			.xflags = x.fsx_xflags,
			.extsize_bytes = x.fsx_extsize,
			.cowextsize_bytes = x.fsx_cowextsize,
			.projid = x.fsx_projid,
		};
		reply_set(req, set_attr(req, mp, ino, &fa, 0), &x, sizeof(x), out_bufsz);
		return;
	}
	default:
		fuse_reply_err(req, ENOTTY);
		return;
	}
}

bool fileattr_ioctl_cmd(unsigned int cmd)
{
	return cmd == FS_IOC_GETFLAGS || cmd == FS_IOC_SETFLAGS || cmd == FS_IOC32_GETFLAGS ||
	       cmd == FS_IOC32_SETFLAGS || cmd == FS_IOC_FSGETXATTR || cmd == FS_IOC_FSSETXATTR;
}

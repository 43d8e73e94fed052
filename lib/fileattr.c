/*
 * fileattr.c: inode flags and extent size hints, the filesystem side of
 * FS_IOC_GETFLAGS / FS_IOC_SETFLAGS and FS_IOC_FSGETXATTR /
 * FS_IOC_FSSETXATTR (the kernel's fileattr calls, fs/file_attr.c), with
 * the rules of XFS (fs/xfs/xfs_ioctl.c xfs_fileattr_get/_set,
 * xfs_ioctl_setattr_check_extsize/_cowextsize, and
 * libxfs/xfs_inode_buf.c xfs_inode_validate_extsize/_cowextsize), and
 * their inheritance at create (xfs_inode_inherit_flags/_flags2).
 *
 * The caller (the FUSE daemon) checks ownership (inode_owner_or_capable);
 * the library checks CAP_LINUX_IMMUTABLE under the inode lock from what
 * the caller says it has, because only there are the old flags known.
 */
#include "reflinkfs/fs.h"

#include <errno.h>
#include <linux/fs.h>
#include <sys/stat.h>

#include "inode.h"
#include "rlfs.h"
#include "trans.h"

/* XFS_MAX_BMBT_EXTLEN: the longest extent a bmbt record holds, the
 * largest hint XFS accepts */
#define MAX_HINT_BLOCKS ((1u << 21) - 1)

/* RLFS_DIFLAG_* <-> FS_XFLAG_* (the bits stored; others are refused) */
static const struct {
	uint32_t diflag, xflag;
} flag_map[] = {
	{ RLFS_DIFLAG_IMMUTABLE, FS_XFLAG_IMMUTABLE },
	{ RLFS_DIFLAG_APPEND, FS_XFLAG_APPEND },
	{ RLFS_DIFLAG_NODUMP, FS_XFLAG_NODUMP },
	{ RLFS_DIFLAG_NOATIME, FS_XFLAG_NOATIME },
	{ RLFS_DIFLAG_EXTSIZE, FS_XFLAG_EXTSIZE },
	{ RLFS_DIFLAG_EXTSZINHERIT, FS_XFLAG_EXTSZINHERIT },
	{ RLFS_DIFLAG_COWEXTSIZE, FS_XFLAG_COWEXTSIZE },
};
#define NFLAGS (sizeof(flag_map) / sizeof(flag_map[0]))

static uint32_t diflags_to_xflags(uint32_t di)
{
	uint32_t x = 0;
	for (size_t i = 0; i < NFLAGS; i++)
		if (di & flag_map[i].diflag)
			x |= flag_map[i].xflag;
	return x;
}

static uint32_t xflags_to_diflags(uint32_t x)
{
	uint32_t di = 0;
	for (size_t i = 0; i < NFLAGS; i++)
		if (x & flag_map[i].xflag)
			di |= flag_map[i].diflag;
	return di;
}

uint32_t rlfs_fileattr_xflags_supported(void)
{
	return diflags_to_xflags(RLFS_DIFLAG_ALL);
}

/* Under ip's iolock. */
static void fill(const struct rlfs_inode *ip, struct rlfs_fileattr *fa)
{
	const struct rlfs_mount *mp = ip->mp;
	fa->xflags = diflags_to_xflags(ip->flags);
	if (ip->acount)
		fa->xflags |= FS_XFLAG_HASATTR;
	fa->extsize_bytes = (ip->flags & (RLFS_DIFLAG_EXTSIZE | RLFS_DIFLAG_EXTSZINHERIT))
				    ? ip->extsize_blocks * mp->blocksize : 0;
	fa->cowextsize_bytes = (ip->flags & RLFS_DIFLAG_COWEXTSIZE)
				       ? ip->cowextsize_blocks * mp->blocksize : 0;
	fa->nextents = ip->ext_loaded ? rlfs_iext_count(&ip->iext) : 0;
	fa->projid = 0;
}

int rlfs_fileattr_get(struct rlfs_mount *mp, uint64_t ino, struct rlfs_fileattr *fa)
{
	struct rlfs_inode *ip;
	int error = rlfs_iget(mp, ino, &ip);
	if (error)
		return error;
	if (!S_ISREG(ip->mode) && !S_ISDIR(ip->mode)) {
		rlfs_irele(ip);
		return -ENOTTY;         /* xfs_fileattr_get: d_is_special */
	}
	pthread_rwlock_rdlock(&ip->iolock);
	fill(ip, fa);
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return 0;
}

int rlfs_extsize_valid(const struct rlfs_mount *mp, uint32_t mode, uint32_t diflags,
		       uint32_t extsize_blocks)
{
	bool hint = diflags & RLFS_DIFLAG_EXTSIZE;
	bool inherit = diflags & RLFS_DIFLAG_EXTSZINHERIT;
	if ((hint || inherit) && !S_ISDIR(mode) && !S_ISREG(mode))
		return -EINVAL;
	if (hint && !S_ISREG(mode))
		return -EINVAL;
	if (inherit && !S_ISDIR(mode))
		return -EINVAL;
	if ((hint || inherit) && extsize_blocks == 0)
		return -EINVAL;
	if (!(hint || inherit) && extsize_blocks != 0)
		return -EINVAL;
	if (extsize_blocks > MAX_HINT_BLOCKS || extsize_blocks > mp->agblocks / 2)
		return -EINVAL;
	return 0;
}

int rlfs_cowextsize_valid(const struct rlfs_mount *mp, uint32_t mode, uint32_t diflags,
			  uint32_t cowextsize_blocks)
{
	bool hint = diflags & RLFS_DIFLAG_COWEXTSIZE;
	if (hint && !S_ISDIR(mode) && !S_ISREG(mode))
		return -EINVAL;
	if (hint && cowextsize_blocks == 0)
		return -EINVAL;
	if (!hint && cowextsize_blocks != 0)
		return -EINVAL;
	if (cowextsize_blocks > MAX_HINT_BLOCKS || cowextsize_blocks > mp->agblocks / 2)
		return -EINVAL;
	return 0;
}

/* fileattr_set_prepare (vfs) then xfs_ioctl_setattr_check_extsize /
 * _cowextsize, for the FSSETXATTR form; new is adjusted as the kernel
 * adjusts it (a zero hint clears its flags).  Under ip's iolock. */
static int check_fsx(const struct rlfs_inode *ip, struct rlfs_fileattr *new)
{
	const struct rlfs_mount *mp = ip->mp;
	uint32_t x = new->xflags;
	uint32_t mode = ip->mode;
	if ((x & FS_XFLAG_EXTSIZE) && !S_ISREG(mode))
		return -EINVAL;
	if ((x & FS_XFLAG_EXTSZINHERIT) && !S_ISDIR(mode))
		return -EINVAL;
	if ((x & FS_XFLAG_COWEXTSIZE) && !S_ISREG(mode) && !S_ISDIR(mode))
		return -EINVAL;
	if (new->extsize_bytes == 0)
		x &= ~(uint32_t)(FS_XFLAG_EXTSIZE | FS_XFLAG_EXTSZINHERIT);
	if (new->cowextsize_bytes == 0)
		x &= ~(uint32_t)FS_XFLAG_COWEXTSIZE;
	new->xflags = x;
	uint32_t di = xflags_to_diflags(x);
	uint64_t bmask = mp->blocksize - 1;
	/* a file with blocks keeps its extent size hint */
	if (S_ISREG(mode) && ip->ext_loaded && rlfs_iext_count(&ip->iext) &&
	    (uint64_t)ip->extsize_blocks * mp->blocksize != new->extsize_bytes)
		return -EINVAL;
	if (new->extsize_bytes & bmask)
		return -EINVAL;
	int error = rlfs_extsize_valid(mp, mode, di, new->extsize_bytes >> mp->blocklog);
	if (error)
		return error;
	if (new->cowextsize_bytes & bmask)
		return -EINVAL;
	return rlfs_cowextsize_valid(mp, mode, di, new->cowextsize_bytes >> mp->blocklog);
}

int rlfs_fileattr_set(struct rlfs_mount *mp, uint64_t ino, const struct rlfs_fileattr *fa,
		      unsigned how)
{
	struct rlfs_inode *ip;
	struct rlfs_trans *tp;
	if (mp->flags & RLFS_MOUNT_RDONLY)
		return -EROFS;
	int error = rlfs_iget(mp, ino, &ip);
	if (error)
		return error;
	if (!S_ISREG(ip->mode) && !S_ISDIR(ip->mode)) {
		rlfs_irele(ip);
		return -ENOTTY;         /* xfs_fileattr_set: d_is_special */
	}
	pthread_rwlock_wrlock(&ip->iolock);
	struct rlfs_fileattr old, new = *fa;
	fill(ip, &old);
	const uint32_t common = FS_XFLAG_IMMUTABLE | FS_XFLAG_APPEND | FS_XFLAG_NODUMP |
				FS_XFLAG_NOATIME;
	if (how & RLFS_FA_FLAGS_ONLY) {
		/* vfs_fileattr_set: the FS_IOC_SETFLAGS form changes only
		 * the flags it has words for; the hints stay */
		new.xflags = (new.xflags & common) | (old.xflags & ~common);
		new.extsize_bytes = old.extsize_bytes;
		new.cowextsize_bytes = old.cowextsize_bytes;
		new.projid = old.projid;
	}
	new.xflags &= ~(uint32_t)FS_XFLAG_HASATTR;      /* read-only */
	error = -EOPNOTSUPP;
	if (new.xflags & ~rlfs_fileattr_xflags_supported())
		goto out;               /* a flag not stored (SYNC, PROJINHERIT...) */
	if (new.projid != 0)
		goto out;               /* no project quotas */
	/* fileattr_set_prepare: IMMUTABLE and APPEND change only with
	 * CAP_LINUX_IMMUTABLE */
	error = -EPERM;
	if (((new.xflags ^ old.xflags) & (FS_XFLAG_IMMUTABLE | FS_XFLAG_APPEND)) &&
	    !(how & RLFS_FA_CAP_LINUX_IMMUTABLE))
		goto out;
	if (!(how & RLFS_FA_FLAGS_ONLY)) {
		error = check_fsx(ip, &new);
		if (error)
			goto out;
	}
	error = rlfs_trans_alloc(mp, &mp->resv.tr_ichange, 0, 0, &tp);
	if (error)
		goto out;
	rlfs_trans_ijoin(tp, ip);
	ip->flags = xflags_to_diflags(new.xflags);
	/* xfs_fileattr_set: a hint without its flag is cleared */
	ip->extsize_blocks = (ip->flags & (RLFS_DIFLAG_EXTSIZE | RLFS_DIFLAG_EXTSZINHERIT))
				     ? new.extsize_bytes >> mp->blocklog : 0;
	ip->cowextsize_blocks = (ip->flags & RLFS_DIFLAG_COWEXTSIZE)
					? new.cowextsize_bytes >> mp->blocklog : 0;
	rlfs_now(&ip->ctime);
	rlfs_trans_log_inode(tp, ip);
	error = rlfs_trans_commit(tp);
out:
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return error;
}

void rlfs_inherit_flags(struct rlfs_inode *ip, const struct rlfs_inode *dp)
{
	if (!S_ISREG(ip->mode) && !S_ISDIR(ip->mode))
		return;
	uint32_t di = 0;
	uint32_t extsize = 0, cowextsize = 0;
	if (dp->flags & RLFS_DIFLAG_EXTSZINHERIT) {
		di |= S_ISDIR(ip->mode) ? RLFS_DIFLAG_EXTSZINHERIT : RLFS_DIFLAG_EXTSIZE;
		extsize = dp->extsize_blocks;
	}
	/* the fs.xfs.inherit_noatime and inherit_nodump defaults (1) */
	di |= dp->flags & (RLFS_DIFLAG_NOATIME | RLFS_DIFLAG_NODUMP);
	if (dp->flags & RLFS_DIFLAG_COWEXTSIZE) {
		di |= RLFS_DIFLAG_COWEXTSIZE;
		cowextsize = dp->cowextsize_blocks;
	}
	/* a hint the verifier would refuse is dropped, as XFS does */
	if (rlfs_extsize_valid(ip->mp, ip->mode, di, extsize) != 0) {
		di &= ~(uint32_t)(RLFS_DIFLAG_EXTSIZE | RLFS_DIFLAG_EXTSZINHERIT);
		extsize = 0;
	}
	if (rlfs_cowextsize_valid(ip->mp, ip->mode, di, cowextsize) != 0) {
		di &= ~(uint32_t)RLFS_DIFLAG_COWEXTSIZE;
		cowextsize = 0;
	}
	ip->flags |= di;
	ip->extsize_blocks = extsize;
	ip->cowextsize_blocks = cowextsize;
}

uint32_t rlfs_cowextsize_hint_blocks(const struct rlfs_inode *ip)
{
	if (ip->flags & RLFS_DIFLAG_COWEXTSIZE)
		return ip->cowextsize_blocks;
	return RLFS_DEFAULT_COWEXTSIZE_BLOCKS;
}

/*
 * namei.c: the name operations of the public API (include/reflinkfs/fs.h):
 * lookup, mknod, mkdir, symlink, O_TMPFILE (rlfs_tmpfile), readlink,
 * link, unlink, rmdir, rename (with RENAME_WHITEOUT), forget, readdir.
 * Semantics and errors follow the man 2 pages of the matching system
 * calls; the caller (FUSE with default_permissions) has done the
 * permission checks, we enforce only the immutable/append-only inode flags
 * (-EPERM, as chattr(1) describes them).  New inodes get their POSIX ACLs
 * from the parent's default ACL (rlfs_acl_create_prep, xattr.c).
 *
 * Locking: every inode an operation changes is iolocked exclusively, in
 * ascending ino order.  Children are found by an unlocked lookup first,
 * then everything is locked in order and the lookup repeated; if the name
 * moved meanwhile we unlock and try again (no lock is ever taken out of
 * order).  Cross-directory renames also hold a global rename mutex (like
 * the kernel's s_vfs_rename_mutex) so that the parent chains walked by the
 * loop check cannot change under us.  Then one transaction per operation.
 *
 * Directory link counts: 2 + number of subdirectories; "." and ".." are
 * not stored, ".." is ip->parent.
 * Model: xfs_inode.c (xfs_create, xfs_link, xfs_remove, xfs_rename).
 */
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>

#include "reflinkfs/fs.h"
#include "alloc.h"
#include "bmap.h"
#include "dir.h"
#include "ialloc.h"
#include "inode.h"
#include "iunlink.h"
#include "xattr.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef RENAME_WHITEOUT
#define RENAME_WHITEOUT (1 << 2)
#endif

/* Largest link count (XFS_MAXLINK). */
#define RLFS_LINK_MAX 0x7fffffffu
/* Longest symlink target (PATH_MAX - 1). */
#define RLFS_SYMLINK_MAX 4095u

static pthread_mutex_t rlfs_rename_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- small helpers ---- */

/* 0 with *lenp, -ENOENT (empty), -ENAMETOOLONG (> 255 bytes). */
static int name_len(const char *name, size_t *lenp)
{
	if (!name)
		return -EINVAL;
	size_t len = strnlen(name, RLFS_NAME_MAX + 1);
	if (len == 0)
		return -ENOENT;
	if (len > RLFS_NAME_MAX)
		return -ENAMETOOLONG;
	*lenp = len;
	return 0;
}

static bool is_dot(const char *name, size_t len)
{
	return len == 1 && name[0] == '.';
}

static bool is_dotdot(const char *name, size_t len)
{
	return len == 2 && name[0] == '.' && name[1] == '.';
}

/* iget a directory: -ENOTDIR if it is something else. */
static int iget_dir(struct rlfs_mount *mp, uint64_t ino, struct rlfs_inode **dpp)
{
	struct rlfs_inode *dp;
	int error = rlfs_iget(mp, ino, &dp);
	if (error)
		return error;
	if (!S_ISDIR(dp->mode)) {
		rlfs_irele(dp);
		return -ENOTDIR;
	}
	*dpp = dp;
	return 0;
}

/* Lock up to 4 inodes exclusively in ascending ino order (NULLs and
 * duplicates skipped).  The sorted set is kept in lk for the unlock. */
struct ilockset {
	struct rlfs_inode *ips[4];
	int n;
};

static void ilock_set(struct ilockset *lk, struct rlfs_inode *a, struct rlfs_inode *b,
		      struct rlfs_inode *c, struct rlfs_inode *d)
{
	struct rlfs_inode *in[4] = { a, b, c, d };
	lk->n = 0;
	for (int i = 0; i < 4; i++) {
		struct rlfs_inode *ip = in[i];
		if (!ip)
			continue;
		bool dup = false;
		for (int j = 0; j < lk->n; j++)
			if (lk->ips[j] == ip)
				dup = true;
		if (dup)
			continue;
		int j = lk->n++;
		while (j > 0 && lk->ips[j - 1]->ino > ip->ino) {
			lk->ips[j] = lk->ips[j - 1];
			j--;
		}
		lk->ips[j] = ip;
	}
	for (int i = 0; i < lk->n; i++)
		pthread_rwlock_wrlock(&lk->ips[i]->iolock);
}

static void iunlock_set(struct ilockset *lk)
{
	for (int i = lk->n - 1; i >= 0; i--)
		pthread_rwlock_unlock(&lk->ips[i]->iolock);
	lk->n = 0;
}

/* Read-only lookup of name in dp (own transaction; no inode locks needed:
 * the tree is read under meta_lock).  0, -ENOENT, ... */
static int lookup_ino(struct rlfs_inode *dp, const char *name, size_t len, uint64_t *ino)
{
	struct rlfs_trans *tp;
	int error = rlfs_trans_alloc(dp->mp, &dp->mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
	if (error)
		return error;
	error = rlfs_dir_lookup(tp, dp, name, len, ino, NULL);
	rlfs_trans_cancel(tp);
	return error;
}

/*
 * iget the inode that name in dp pointed to (*inop, from an unlocked
 * lookup).  If it was freed meanwhile (-ENOENT from iget) the name is
 * looked up again and *inop updated; -ENOENT if the name went away.  A
 * name that keeps pointing at a free inode is corruption (-EUCLEAN).
 */
static int child_iget(struct rlfs_mount *mp, struct rlfs_inode *dp, const char *name,
		      size_t len, uint64_t *inop, struct rlfs_inode **ipp)
{
	for (int tries = 0; tries < 1000; tries++) {
		uint64_t again;
		int error = rlfs_iget(mp, *inop, ipp);
		if (error != -ENOENT)
			return error;
		error = lookup_ino(dp, name, len, &again);
		if (error)
			return error;
		if (again == *inop && tries >= 2)
			return rlfs_corrupt(mp, dp->root, "dir entry",
					    "dir ino %llu: entry '%.*s' points at free inode %llu",
					    (unsigned long long)dp->ino, (int)len, name,
					    (unsigned long long)again);
		*inop = again;
	}
	return -EIO;
}

/*
 * Find name in dp and lock dp and the child in ino order.  On 0 both are
 * locked (lk) and *ipp is referenced.  -ENOENT etc. with nothing held
 * except the caller's reference on dp.
 */
static int lock_dir_child(struct rlfs_inode *dp, const char *name, size_t len,
			  struct rlfs_inode **ipp, struct ilockset *lk)
{
	for (int tries = 0;; tries++) {
		uint64_t ino, ino2;
		struct rlfs_inode *ip;
		int error = lookup_ino(dp, name, len, &ino);
		if (error)
			return error;
		error = child_iget(dp->mp, dp, name, len, &ino, &ip);
		if (error)
			return error;
		ilock_set(lk, dp, ip, NULL, NULL);
		error = lookup_ino(dp, name, len, &ino2);
		if (!error && ino2 == ino) {
			*ipp = ip;
			return 0;
		}
		iunlock_set(lk);
		rlfs_irele(ip);
		if (error)
			return error;
		if (tries > 1000)
			return -EIO;
	}
}

static void ts_now_dirs(struct rlfs_inode *dp)
{
	struct timespec now;
	rlfs_now(&now);
	dp->mtime = now;
	dp->ctime = now;
}

static void ts_ctime(struct rlfs_inode *ip)
{
	rlfs_now(&ip->ctime);
}

static uint32_t ftype_to_mode(uint8_t ftype)
{
	switch (ftype) {
	case RLFS_FT_REG: return S_IFREG;
	case RLFS_FT_DIR: return S_IFDIR;
	case RLFS_FT_CHR: return S_IFCHR;
	case RLFS_FT_BLK: return S_IFBLK;
	case RLFS_FT_FIFO: return S_IFIFO;
	case RLFS_FT_SOCK: return S_IFSOCK;
	case RLFS_FT_LNK: return S_IFLNK;
	default: return 0;
	}
}

static bool no_change(const struct rlfs_inode *ip)
{
	return ip->flags & (RLFS_DIFLAG_IMMUTABLE | RLFS_DIFLAG_APPEND);
}

/* ---- lookup / forget ---- */

int rlfs_lookup(struct rlfs_mount *mp, uint64_t dir, const char *name, struct stat *out)
{
	struct rlfs_inode *dp, *ip = NULL;
	struct rlfs_trans *tp;
	size_t len;
	uint64_t ino;
	int error = name_len(name, &len);
	if (error)
		return error;
	error = iget_dir(mp, dir, &dp);
	if (error)
		return error;
	pthread_rwlock_rdlock(&dp->iolock);
	if (is_dot(name, len)) {
		rlfs_ihold(dp);
		ip = dp;
	} else if (is_dotdot(name, len)) {
		ino = dp->parent ? dp->parent : dp->ino;
		error = rlfs_iget(mp, ino, &ip);
	} else {
		error = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
		if (!error) {
			error = rlfs_dir_lookup(tp, dp, name, len, &ino, NULL);
			if (!error) {
				error = rlfs_iget_tp(tp, ino, &ip);
				if (error == -ENOENT)
					error = rlfs_corrupt(mp, dp->root, "dir entry",
							     "dir ino %llu: entry for free inode %llu",
							     (unsigned long long)dp->ino,
							     (unsigned long long)ino);
			}
			rlfs_trans_cancel(tp);
		}
	}
	if (!error) {
		rlfs_inode_lookup_add(ip, 1);
		if (out)
			rlfs_inode_stat(ip, out);
	}
	pthread_rwlock_unlock(&dp->iolock);
	if (ip)
		rlfs_irele(ip);
	rlfs_irele(dp);
	return error;
}

void rlfs_forget(struct rlfs_mount *mp, uint64_t ino, uint64_t nlookup)
{
	rlfs_inode_forget(mp, ino, nlookup);
}

/* ---- create: mknod, mkdir, symlink ---- */

/* Symlink payload bytes per remote block. */
static uint32_t symlink_payload(struct rlfs_mount *mp)
{
	return mp->blocksize - (uint32_t)sizeof(struct rlfs_remote_hdr);
}

/* Inline capacity for a symlink target: the data fork part of the
 * literal area. */
static size_t symlink_inline_max(struct rlfs_inode *ip)
{
	size_t lit = ip->mp->inodesize - RLFS_DINODE_CORE;
	size_t fo = ip->forkoff;
	return fo && fo <= lit ? fo : lit;
}

/* *fsbno = the fsbno of block off (in blocks) of ip's remote symlink target;
 * -EUCLEAN (reported) if that block is not mapped as written data. */
static int symlink_block(struct rlfs_mount *mp, struct rlfs_inode *ip, uint64_t off,
			 uint64_t *fsbno)
{
	struct rlfs_irec got;
	bool found;
	rlfs_bmap_lookup(ip, off, &got, &found);
	if (!found || got.blockcount == 0 || (got.state & RLFS_EXT_UNWRITTEN))
		return rlfs_corrupt(mp, 0, "symlink", "ino %llu: block %llu not mapped",
				    (unsigned long long)ip->ino, (unsigned long long)off);
	*fsbno = got.startblock + (off - got.startoff);
	return 0;
}

static int symlink_write_remote(struct rlfs_trans *tp, struct rlfs_inode *ip,
				const char *target, size_t tlen)
{
	struct rlfs_mount *mp = tp->mp;
	uint32_t payload = symlink_payload(mp);
	uint64_t nblks = (tlen + payload - 1) / payload;
	int error;

	if (!ip->ext_loaded) {
		error = rlfs_bmap_load(tp, ip);
		if (error)
			return error;
	}
	error = rlfs_bmap_alloc(tp, ip, 0, nblks, false);
	if (error)
		return error;
	for (uint64_t off = 0; off < nblks; off++) {
		struct rlfs_buf *bp;
		uint64_t fsbno;
		error = symlink_block(mp, ip, off, &fsbno);
		if (error)
			return error;
		error = rlfs_trans_get_buf(tp, fsbno, &rlfs_symlink_buf_ops, ip->ino, &bp);
		if (error)
			return error;
		struct rlfs_remote_hdr *rh = bp->data;
		uint32_t pos = (uint32_t)(off * payload);
		uint32_t n = (uint32_t)RLFS_MIN((size_t)payload, tlen - pos);
		rlfs_put32(rh->offset, pos);
		rlfs_put32(rh->bytes, n);
		memcpy((char *)bp->data + sizeof(*rh), target + pos, n);
		rlfs_trans_log_buf(tp, bp);
		rlfs_trans_brelse(tp, bp);
	}
	ip->size = tlen;
	rlfs_trans_log_inode(tp, ip);
	return 0;
}

static int symlink_write(struct rlfs_trans *tp, struct rlfs_inode *ip, const char *target,
			 size_t tlen)
{
	rlfs_trans_log_inode(tp, ip);
	if (tlen <= symlink_inline_max(ip)) {
		memcpy(ip->literal, target, tlen);
		ip->format = RLFS_FMT_LOCAL;
		ip->size = tlen;
		return 0;
	}
	return symlink_write_remote(tp, ip, target, tlen);
}

/*
 * Create an inode in dir: named name (mknod, mkdir, symlink with target),
 * or with name NULL an O_TMPFILE inode (nlink 0, no entry, dir unchanged).
 * The mode's permission bits are masked by dir's default ACL or umask
 * (rlfs_acl_create_prep), and the ACLs stored in the same transaction.
 */
static int do_create(struct rlfs_mount *mp, uint64_t dir, const char *name, uint32_t mode,
		     uint64_t rdev, uid_t uid, gid_t gid, const char *target, uint32_t umask,
		     struct stat *out)
{
	struct rlfs_inode *dp, *ip = NULL;
	struct rlfs_trans *tp;
	struct rlfs_acl_new acl = { 0 };
	size_t len = 0, tlen = 0;
	uint64_t ino;
	uint32_t resblks;
	bool tmpfile = !name;
	int error = tmpfile ? 0 : name_len(name, &len);
	if (error)
		return error == -ENOENT ? -EINVAL : error;
	if (target) {
		tlen = strnlen(target, RLFS_SYMLINK_MAX + 1);
		if (tlen == 0)
			return -ENOENT;
		if (tlen > RLFS_SYMLINK_MAX)
			return -ENAMETOOLONG;
	}
	if (!tmpfile && (is_dot(name, len) || is_dotdot(name, len)))
		return -EEXIST;
	error = iget_dir(mp, dir, &dp);
	if (error)
		return error;
	pthread_rwlock_wrlock(&dp->iolock);
	if (dp->nlink == 0) {
		error = -ENOENT; /* directory was removed */
		goto out_unlock;
	}
	if (dp->flags & RLFS_DIFLAG_IMMUTABLE) {
		error = -EPERM;
		goto out_unlock;
	}
	if (S_ISDIR(mode) && dp->nlink >= RLFS_LINK_MAX) {
		error = -EMLINK;
		goto out_unlock;
	}
	/* BSD group semantics for setgid directories (inode_init_owner) */
	if (dp->mode & S_ISGID) {
		gid = dp->gid;
		if (S_ISDIR(mode))
			mode |= S_ISGID;
	}
	error = rlfs_acl_create_prep(dp, &mode, umask, &acl);
	if (error)
		goto out_unlock;
	resblks = rlfs_ialloc_res(mp) + (tmpfile ? 0 : rlfs_dir_res(dp)) +
		  rlfs_acl_create_res(mp, &acl);
	if (target && tlen > 64) {
		uint32_t nblks = (uint32_t)((tlen + symlink_payload(mp) - 1) / symlink_payload(mp));
		resblks += nblks + rlfs_alloc_tree_res(mp, nblks) + 2;
	}
	error = rlfs_trans_alloc(mp, S_ISDIR(mode) ? &mp->resv.tr_mkdir : target ? &mp->resv.tr_symlink : &mp->resv.tr_create, resblks, 0, &tp);
	if (error)
		goto out_unlock;
	rlfs_trans_ijoin(tp, dp);
	if (!tmpfile) {
		error = rlfs_dir_lookup(tp, dp, name, len, &ino, NULL);
		if (error == 0)
			error = -EEXIST;
		if (error != -ENOENT)
			goto out_cancel;
	}
	error = rlfs_ialloc(tp, dp->ino, &ino);
	if (error)
		goto out_cancel;
	error = rlfs_inode_init(tp, ino, mode, uid, gid, rdev,
				S_ISDIR(mode) ? dp->ino : 0, &ip);
	if (error)
		goto out_cancel;
	rlfs_trans_log_inode(tp, ip);
	ip->nlink = S_ISDIR(mode) ? 2 : 1;
	if (S_ISDIR(mode))
		ip->parent = dp->ino;
	rlfs_inherit_flags(ip, dp);
	if (target) {
		error = symlink_write(tp, ip, target, tlen);
		if (error)
			goto out_cancel;
	}
	error = rlfs_acl_create_apply(tp, ip, &acl);
	if (error)
		goto out_cancel;
	if (tmpfile) {
		/* an open unlinked file (see rlfs_tmpfile): on its AG's
		 * unlinked list until linkat names it or it is freed */
		ip->nlink = 0;
		error = rlfs_iunlink(tp, ip);
		if (error)
			goto out_cancel;
	} else {
		error = rlfs_dir_add(tp, dp, name, len, ino, rlfs_mode_to_ftype(mode));
		if (error)
			goto out_cancel;
		if (S_ISDIR(mode))
			dp->nlink++;
		ts_now_dirs(dp);
		rlfs_trans_log_inode(tp, dp);
	}
	error = rlfs_trans_commit(tp);
	if (error)
		goto out_unlock;
	if (tmpfile)
		ip->linkable = true;
	rlfs_inode_lookup_add(ip, 1);
	if (out)
		rlfs_inode_stat(ip, out);
	goto out_unlock;
out_cancel:
	rlfs_trans_cancel(tp);
out_unlock:
	pthread_rwlock_unlock(&dp->iolock);
	rlfs_acl_new_free(&acl);
	if (ip)
		rlfs_irele(ip);
	rlfs_irele(dp);
	return error;
}

int rlfs_mknod(struct rlfs_mount *mp, uint64_t dir, const char *name, mode_t mode,
	       dev_t rdev, uid_t uid, gid_t gid, struct stat *out)
{
	return rlfs_mknod_umask(mp, dir, name, mode, rdev, uid, gid, 0, out);
}

int rlfs_mknod_umask(struct rlfs_mount *mp, uint64_t dir, const char *name, mode_t mode,
		     dev_t rdev, uid_t uid, gid_t gid, mode_t umask, struct stat *out)
{
	uint32_t m = (uint32_t)mode;
	switch (m & S_IFMT) {
	case 0:
		m |= S_IFREG;
		break;
	case S_IFREG:
	case S_IFIFO:
	case S_IFSOCK:
		rdev = 0;
		break;
	case S_IFCHR:
	case S_IFBLK:
		break;
	case S_IFDIR:
		return -EPERM;
	default:
		return -EINVAL;
	}
	if (S_ISREG(m))
		rdev = 0;
	m &= S_IFMT | 07777;
	if (!name)
		return -EINVAL;
	return do_create(mp, dir, name, m, (uint64_t)rdev, uid, gid, NULL, (uint32_t)umask,
			 out);
}

int rlfs_mkdir(struct rlfs_mount *mp, uint64_t dir, const char *name, mode_t mode,
	       uid_t uid, gid_t gid, struct stat *out)
{
	return rlfs_mkdir_umask(mp, dir, name, mode, uid, gid, 0, out);
}

int rlfs_mkdir_umask(struct rlfs_mount *mp, uint64_t dir, const char *name, mode_t mode,
		     uid_t uid, gid_t gid, mode_t umask, struct stat *out)
{
	uint32_t m = S_IFDIR | ((uint32_t)mode & 07777);
	if (!name)
		return -EINVAL;
	return do_create(mp, dir, name, m, 0, uid, gid, NULL, (uint32_t)umask, out);
}

int rlfs_tmpfile(struct rlfs_mount *mp, uint64_t dir, mode_t mode, uid_t uid, gid_t gid,
		 mode_t umask, struct stat *out)
{
	uint32_t m = S_IFREG | ((uint32_t)mode & 07777);
	return do_create(mp, dir, NULL, m, 0, uid, gid, NULL, (uint32_t)umask, out);
}

int rlfs_symlink(struct rlfs_mount *mp, uint64_t dir, const char *name,
		 const char *target, uid_t uid, gid_t gid, struct stat *out)
{
	if (!target || !name)
		return -EINVAL;
	return do_create(mp, dir, name, S_IFLNK | 0777, 0, uid, gid, target, 0, out);
}

/* ---- readlink ---- */

static int symlink_read_remote(struct rlfs_trans *tp, struct rlfs_inode *ip, char *buf,
			       size_t n)
{
	struct rlfs_mount *mp = tp->mp;
	uint32_t payload = symlink_payload(mp);
	uint64_t nblks = (ip->size + payload - 1) / payload;
	int error;

	if (!ip->ext_loaded) {
		error = rlfs_bmap_load(tp, ip);
		if (error)
			return error;
	}
	for (uint64_t off = 0; off < nblks && off * payload < n; off++) {
		struct rlfs_buf *bp;
		uint64_t fsbno;
		error = symlink_block(mp, ip, off, &fsbno);
		if (error)
			return error;
		error = rlfs_trans_read_buf(tp, fsbno, &rlfs_symlink_buf_ops, ip->ino, &bp);
		if (error)
			return error;
		struct rlfs_remote_hdr *rh = bp->data;
		uint32_t pos = (uint32_t)(off * payload);
		uint32_t want = (uint32_t)RLFS_MIN((uint64_t)payload, ip->size - pos);
		if (rlfs_get32(rh->offset) != pos || rlfs_get32(rh->bytes) != want) {
			rlfs_trans_brelse(tp, bp);
			return rlfs_corrupt(mp, fsbno, "symlink",
					    "ino %llu: remote block offset %u bytes %u, expected %u %u",
					    (unsigned long long)ip->ino, rlfs_get32(rh->offset),
					    rlfs_get32(rh->bytes), pos, want);
		}
		memcpy(buf + pos, (char *)bp->data + sizeof(*rh), RLFS_MIN((size_t)want, n - pos));
		rlfs_trans_brelse(tp, bp);
	}
	return 0;
}

int rlfs_readlink(struct rlfs_mount *mp, uint64_t ino, char *buf, size_t size)
{
	struct rlfs_inode *ip;
	struct rlfs_trans *tp;
	int error = rlfs_iget(mp, ino, &ip);
	if (error)
		return error;
	if (!S_ISLNK(ip->mode)) {
		rlfs_irele(ip);
		return -EINVAL;
	}
	pthread_rwlock_rdlock(&ip->iolock);
	size_t n = RLFS_MIN((size_t)ip->size, size);
	if (ip->size == 0 || ip->size > RLFS_SYMLINK_MAX) {
		error = rlfs_corrupt(mp, rlfs_ino_to_fsb(mp, ino), "symlink",
				     "ino %llu: target length %llu", (unsigned long long)ino,
				     (unsigned long long)ip->size);
	} else if (ip->format == RLFS_FMT_LOCAL) {
		if (ip->size > mp->inodesize - RLFS_DINODE_CORE)
			error = rlfs_corrupt(mp, rlfs_ino_to_fsb(mp, ino), "symlink",
					     "ino %llu: inline target of %llu bytes",
					     (unsigned long long)ino, (unsigned long long)ip->size);
		else
			memcpy(buf, ip->literal, n);
	} else if (ip->format == RLFS_FMT_EXTENTS || ip->format == RLFS_FMT_BTREE) {
		error = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
		if (!error) {
			error = symlink_read_remote(tp, ip, buf, n);
			rlfs_trans_cancel(tp);
		}
	} else {
		error = rlfs_corrupt(mp, rlfs_ino_to_fsb(mp, ino), "symlink",
				     "ino %llu: data fork format %u", (unsigned long long)ino,
				     ip->format);
	}
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	if (error)
		return error;
	if (n < size)
		buf[n] = '\0';
	return (int)n;
}

/* ---- link / unlink / rmdir ---- */

int rlfs_link(struct rlfs_mount *mp, uint64_t ino, uint64_t newdir, const char *newname,
	      struct stat *out)
{
	struct rlfs_inode *ip, *dp;
	struct rlfs_trans *tp;
	struct ilockset lk;
	size_t len;
	uint64_t x;
	int error = name_len(newname, &len);
	if (error)
		return error == -ENOENT ? -EINVAL : error;
	if (is_dot(newname, len) || is_dotdot(newname, len))
		return -EEXIST;
	error = rlfs_iget(mp, ino, &ip);
	if (error)
		return error;
	if (S_ISDIR(ip->mode)) {
		rlfs_irele(ip);
		return -EPERM;
	}
	error = iget_dir(mp, newdir, &dp);
	if (error) {
		rlfs_irele(ip);
		return error;
	}
	ilock_set(&lk, ip, dp, NULL, NULL);
	/* an unlinked inode gets a name back only if it is an O_TMPFILE one
	 * not linked yet (the kernel's I_LINKABLE; vfs_link) */
	if (dp->nlink == 0 || (ip->nlink == 0 && !ip->linkable)) {
		error = -ENOENT;
		goto out_unlock;
	}
	if (no_change(ip) || (dp->flags & RLFS_DIFLAG_IMMUTABLE)) {
		error = -EPERM;
		goto out_unlock;
	}
	if (ip->nlink >= RLFS_LINK_MAX) {
		error = -EMLINK;
		goto out_unlock;
	}
	error = rlfs_trans_alloc(mp, &mp->resv.tr_link, rlfs_dir_res(dp), 0, &tp);
	if (error)
		goto out_unlock;
	rlfs_trans_ijoin(tp, dp);
	rlfs_trans_ijoin(tp, ip);
	error = rlfs_dir_lookup(tp, dp, newname, len, &x, NULL);
	if (error == 0)
		error = -EEXIST;
	if (error != -ENOENT)
		goto out_cancel;
	error = rlfs_dir_add(tp, dp, newname, len, ip->ino, rlfs_mode_to_ftype(ip->mode));
	if (error)
		goto out_cancel;
	if (ip->nlink == 0) {
		/* an O_TMPFILE inode gets its first name: off the list */
		error = rlfs_iunlink_remove(tp, ip->ino, NULL);
		if (error)
			goto out_cancel;
	}
	ip->nlink++;
	ts_ctime(ip);
	ts_now_dirs(dp);
	rlfs_trans_log_inode(tp, ip);
	rlfs_trans_log_inode(tp, dp);
	error = rlfs_trans_commit(tp);
	if (!error) {
		ip->linkable = false;
		rlfs_inode_lookup_add(ip, 1);
		if (out)
			rlfs_inode_stat(ip, out);
	}
	goto out_unlock;
out_cancel:
	rlfs_trans_cancel(tp);
out_unlock:
	iunlock_set(&lk);
	rlfs_irele(ip);
	rlfs_irele(dp);
	return error;
}

static int do_remove(struct rlfs_mount *mp, uint64_t dir, const char *name, bool rmdir)
{
	struct rlfs_inode *dp, *ip;
	struct rlfs_trans *tp;
	struct ilockset lk;
	size_t len;
	int error = name_len(name, &len);
	if (error)
		return error;
	if (is_dot(name, len))
		return rmdir ? -EINVAL : -EISDIR;
	if (is_dotdot(name, len))
		return rmdir ? -ENOTEMPTY : -EISDIR;
	error = iget_dir(mp, dir, &dp);
	if (error)
		return error;
	error = lock_dir_child(dp, name, len, &ip, &lk);
	if (error) {
		rlfs_irele(dp);
		return error;
	}
	if (rmdir && !S_ISDIR(ip->mode)) {
		error = -ENOTDIR;
		goto out_unlock;
	}
	if (!rmdir && S_ISDIR(ip->mode)) {
		error = -EISDIR;
		goto out_unlock;
	}
	if (no_change(dp) || no_change(ip)) {
		error = -EPERM;
		goto out_unlock;
	}
	if (ip->ino == mp->rootino) {
		error = -EBUSY;
		goto out_unlock;
	}
	error = rlfs_trans_alloc(mp, &mp->resv.tr_remove, rlfs_dir_res(dp) + (rmdir ? rlfs_dir_res(ip) : 0),
				 RLFS_TRANS_RESERVE, &tp);
	if (error)
		goto out_unlock;
	rlfs_trans_ijoin(tp, dp);
	rlfs_trans_ijoin(tp, ip);
	if (rmdir) {
		bool empty;
		error = rlfs_dir_isempty(tp, ip, &empty);
		if (!error && !empty)
			error = -ENOTEMPTY;
		if (error)
			goto out_cancel;
	}
	error = rlfs_dir_remove(tp, dp, name, len, NULL);
	if (error)
		goto out_cancel;
	if (rmdir) {
		error = rlfs_dir_destroy(tp, ip);
		if (error)
			goto out_cancel;
		ip->nlink = 0;
		if (dp->nlink > 2)
			dp->nlink--;
	} else if (ip->nlink > 0) {
		ip->nlink--;
	}
	if (ip->nlink == 0) {
		/* last link gone: on the unlinked list until it is freed */
		error = rlfs_iunlink(tp, ip);
		if (error)
			goto out_cancel;
	}
	ts_ctime(ip);
	ts_now_dirs(dp);
	rlfs_trans_log_inode(tp, ip);
	rlfs_trans_log_inode(tp, dp);
	error = rlfs_trans_commit(tp);
	goto out_unlock;
out_cancel:
	rlfs_trans_cancel(tp);
out_unlock:
	iunlock_set(&lk);
	rlfs_irele(ip);
	rlfs_irele(dp);
	return error;
}

int rlfs_unlink(struct rlfs_mount *mp, uint64_t dir, const char *name)
{
	return do_remove(mp, dir, name, false);
}

int rlfs_rmdir(struct rlfs_mount *mp, uint64_t dir, const char *name)
{
	return do_remove(mp, dir, name, true);
}

/* ---- rename ---- */

/*
 * Is anc_ino start_ino itself or one of its ancestors?  Walks ".." links
 * (stable: the caller holds the rename mutex).  Bounded so that a corrupt
 * loop cannot hang us.
 */
static int is_ancestor(struct rlfs_mount *mp, uint64_t anc_ino, uint64_t start_ino,
		       bool *res)
{
	uint64_t cur = start_ino;
	*res = false;
	for (unsigned steps = 0; steps < 1u << 20; steps++) {
		struct rlfs_inode *ip;
		if (cur == anc_ino) {
			*res = true;
			return 0;
		}
		if (cur == mp->rootino)
			return 0;
		int error = rlfs_iget(mp, cur, &ip);
		if (error)
			return error == -ENOENT ? rlfs_corrupt(mp, 0, "dir parent",
				"ino %llu: parent chain reaches a free inode",
				(unsigned long long)start_ino) : error;
		uint64_t parent = ip->parent;
		rlfs_irele(ip);
		if (parent == 0 || parent == cur)
			return 0;
		cur = parent;
	}
	return rlfs_corrupt(mp, 0, "dir parent", "ino %llu: parent chain does not end",
			    (unsigned long long)start_ino);
}

/*
 * The whiteout of a RENAME_WHITEOUT rename, made in tp: a new character
 * device 0:0 with mode 0 (the kernel's WHITEOUT_MODE/WHITEOUT_DEV) owned
 * by uid and gid (the group of a setgid directory dp instead), which the
 * caller links at the source name.  XFS: xfs_rename_alloc_whiteout.
 * *wipp is referenced (released by the caller after commit or cancel,
 * which is what frees a cancelled new inode).
 */
static int make_whiteout(struct rlfs_trans *tp, struct rlfs_inode *dp, uid_t uid, gid_t gid,
			 struct rlfs_inode **wipp)
{
	uint64_t wino;
	int error = rlfs_ialloc(tp, dp->ino, &wino);
	if (error)
		return error;
	if (dp->mode & S_ISGID)
		gid = dp->gid;
	error = rlfs_inode_init(tp, wino, S_IFCHR, uid, gid, 0, 0, wipp);
	if (error)
		return error;
	(*wipp)->nlink = 1;
	rlfs_trans_log_inode(tp, *wipp);
	return 0;
}

int rlfs_rename(struct rlfs_mount *mp, uint64_t dir, const char *name, uint64_t newdir,
		const char *newname, unsigned flags)
{
	return rlfs_rename2(mp, dir, name, newdir, newname, flags, 0, 0);
}

int rlfs_rename2(struct rlfs_mount *mp, uint64_t dir, const char *name, uint64_t newdir,
		 const char *newname, unsigned flags, uid_t uid, gid_t gid)
{
	struct rlfs_inode *sdp = NULL, *tdp = NULL, *sip = NULL, *tip = NULL, *wip = NULL;
	struct rlfs_trans *tp;
	struct ilockset lk = { .n = 0 };
	size_t slen, tlen;
	uint64_t sino, tino;
	bool cross, exchange = flags & RENAME_EXCHANGE;
	bool whiteout = flags & RENAME_WHITEOUT;
	bool locked_rename = false;
	int error;

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT))
		return -EINVAL;
	if ((flags & RENAME_NOREPLACE) && exchange)
		return -EINVAL;
	if (whiteout && exchange)
		return -EINVAL;         /* do_renameat2 */
	error = name_len(name, &slen);
	if (error)
		return error;
	error = name_len(newname, &tlen);
	if (error)
		return error;
	if (is_dot(name, slen) || is_dotdot(name, slen) || is_dot(newname, tlen) ||
	    is_dotdot(newname, tlen))
		return -EINVAL;	/* the kernel returns EBUSY/EINVAL before us */
	error = iget_dir(mp, dir, &sdp);
	if (error)
		return error;
	if (newdir == dir) {
		tdp = sdp;
		rlfs_ihold(tdp);
	} else {
		error = iget_dir(mp, newdir, &tdp);
		if (error) {
			rlfs_irele(sdp);
			return error;
		}
	}
	cross = sdp != tdp;
	if (cross) {
		pthread_mutex_lock(&rlfs_rename_lock);
		locked_rename = true;
	}

	/* Resolve both names, lock all four inodes in order, check again. */
	for (int tries = 0;; tries++) {
		uint64_t s2, t2;
		int terr, terr2;
		sip = NULL;
		tip = NULL;
		error = lookup_ino(sdp, name, slen, &sino);
		if (error)
			goto out;
		terr = lookup_ino(tdp, newname, tlen, &tino);
		if (terr && terr != -ENOENT) {
			error = terr;
			goto out;
		}
		if (terr)
			tino = 0;
		error = child_iget(mp, sdp, name, slen, &sino, &sip);
		if (error) {
			sip = NULL;
			goto out;
		}
		if (tino) {
			error = child_iget(mp, tdp, newname, tlen, &tino, &tip);
			if (error == -ENOENT) {
				tino = 0;	/* the target went away: checked below */
				tip = NULL;
				error = 0;
			}
			if (error) {
				tip = NULL;
				rlfs_irele(sip);
				sip = NULL;
				goto out;
			}
		}
		ilock_set(&lk, sdp, tdp, sip, tip);
		error = lookup_ino(sdp, name, slen, &s2);
		terr2 = lookup_ino(tdp, newname, tlen, &t2);
		if (terr2 == -ENOENT)
			t2 = 0;
		if (!error && (terr2 == 0 || terr2 == -ENOENT) && s2 == sino && t2 == tino)
			break;
		iunlock_set(&lk);
		rlfs_irele(sip);
		sip = NULL;
		if (tip)
			rlfs_irele(tip);
		tip = NULL;
		if (error)
			goto out;
		if (terr2 && terr2 != -ENOENT) {
			error = terr2;
			goto out;
		}
		if (tries > 1000) {
			error = -EIO;
			goto out;
		}
	}

	/* Checks, in the order the kernel makes them. */
	if ((flags & RENAME_NOREPLACE) && tip) {
		error = -EEXIST;
		goto out_unlock;
	}
	if (exchange && !tip) {
		error = -ENOENT;
		goto out_unlock;
	}
	if (tdp->nlink == 0 || sdp->nlink == 0) {
		error = -ENOENT;
		goto out_unlock;
	}
	if (sip == tip) {
		/* two names of one inode (or the same name): nothing to do */
		error = 0;
		goto out_unlock;
	}
	if (cross) {
		bool inside;
		if (S_ISDIR(sip->mode)) {
			error = is_ancestor(mp, sip->ino, tdp->ino, &inside);
			if (error)
				goto out_unlock;
			if (inside) {
				error = -EINVAL;
				goto out_unlock;
			}
		}
		if (tip && S_ISDIR(tip->mode)) {
			error = is_ancestor(mp, tip->ino, sdp->ino, &inside);
			if (error)
				goto out_unlock;
			if (inside) {
				error = exchange ? -EINVAL : -ENOTEMPTY;
				goto out_unlock;
			}
		}
	}
	if (tip && !exchange) {
		if (S_ISDIR(sip->mode) && !S_ISDIR(tip->mode)) {
			error = -ENOTDIR;
			goto out_unlock;
		}
		if (!S_ISDIR(sip->mode) && S_ISDIR(tip->mode)) {
			error = -EISDIR;
			goto out_unlock;
		}
	}
	if (no_change(sdp) || no_change(sip) || (tip && no_change(tip)) ||
	    (tdp->flags & RLFS_DIFLAG_IMMUTABLE) || (tip && no_change(tdp))) {
		error = -EPERM;
		goto out_unlock;
	}
	if (cross && S_ISDIR(sip->mode) && !(tip && S_ISDIR(tip->mode)) &&
	    tdp->nlink >= RLFS_LINK_MAX) {
		error = -EMLINK;
		goto out_unlock;
	}

	uint32_t resblks = 2 * (rlfs_dir_res(sdp) + rlfs_dir_res(tdp));
	if (tip && S_ISDIR(tip->mode))
		resblks += rlfs_dir_res(tip);
	if (whiteout)
		resblks += rlfs_ialloc_res(mp);
	error = rlfs_trans_alloc(mp, &mp->resv.tr_rename, resblks, RLFS_TRANS_RESERVE, &tp);
	if (error)
		goto out_unlock;
	rlfs_trans_ijoin(tp, sdp);
	rlfs_trans_ijoin(tp, tdp);
	rlfs_trans_ijoin(tp, sip);
	if (tip)
		rlfs_trans_ijoin(tp, tip);

	uint8_t sft = rlfs_mode_to_ftype(sip->mode);
	bool sdir = S_ISDIR(sip->mode);
	uint64_t wino = 0;
	if (whiteout) {
		error = make_whiteout(tp, sdp, uid, gid, &wip);
		if (error)
			goto out_cancel;
		wino = wip->ino;
	}
	if (exchange) {
		uint8_t tft = rlfs_mode_to_ftype(tip->mode);
		bool tdir = S_ISDIR(tip->mode);
		error = rlfs_dir_replace(tp, sdp, name, slen, tip->ino, tft, NULL);
		if (!error)
			error = rlfs_dir_replace(tp, tdp, newname, tlen, sip->ino, sft, NULL);
		if (error)
			goto out_cancel;
		if (cross) {
			if (sdir) {
				sip->parent = tdp->ino;
				sdp->nlink--;
				tdp->nlink++;
			}
			if (tdir) {
				tip->parent = sdp->ino;
				tdp->nlink--;
				sdp->nlink++;
			}
		}
		ts_ctime(tip);
	} else if (tip) {
		bool empty = true;
		if (S_ISDIR(tip->mode)) {
			error = rlfs_dir_isempty(tp, tip, &empty);
			if (error)
				goto out_cancel;
			if (!empty) {
				error = -ENOTEMPTY;
				goto out_cancel;
			}
		}
		error = rlfs_dir_replace(tp, tdp, newname, tlen, sip->ino, sft, NULL);
		if (!error)
			error = whiteout ? rlfs_dir_replace(tp, sdp, name, slen, wino,
							    RLFS_FT_CHR, NULL) :
					   rlfs_dir_remove(tp, sdp, name, slen, NULL);
		if (error)
			goto out_cancel;
		if (S_ISDIR(tip->mode)) {
			error = rlfs_dir_destroy(tp, tip);
			if (error)
				goto out_cancel;
			tip->nlink = 0;
			tdp->nlink--;	/* lost subdirectory tip */
		} else if (tip->nlink > 0) {
			tip->nlink--;
		}
		if (tip->nlink == 0) {
			/* replaced and unlinked: listed until it is freed */
			error = rlfs_iunlink(tp, tip);
			if (error)
				goto out_cancel;
		}
		if (sdir) {
			sip->parent = tdp->ino;
			if (cross) {
				sdp->nlink--;
				tdp->nlink++;
			}
		}
		ts_ctime(tip);
	} else {
		error = whiteout ? rlfs_dir_replace(tp, sdp, name, slen, wino, RLFS_FT_CHR, NULL) :
				   rlfs_dir_remove(tp, sdp, name, slen, NULL);
		if (!error)
			error = rlfs_dir_add(tp, tdp, newname, tlen, sip->ino, sft);
		if (error)
			goto out_cancel;
		if (sdir && cross) {
			sip->parent = tdp->ino;
			sdp->nlink--;
			tdp->nlink++;
		}
	}
	ts_ctime(sip);
	ts_now_dirs(sdp);
	if (cross)
		ts_now_dirs(tdp);
	rlfs_trans_log_inode(tp, sdp);
	rlfs_trans_log_inode(tp, tdp);
	rlfs_trans_log_inode(tp, sip);
	if (tip)
		rlfs_trans_log_inode(tp, tip);
	error = rlfs_trans_commit(tp);
	goto out_unlock;
out_cancel:
	rlfs_trans_cancel(tp);
out_unlock:
	iunlock_set(&lk);
out:
	if (locked_rename)
		pthread_mutex_unlock(&rlfs_rename_lock);
	if (wip)
		rlfs_irele(wip);
	if (sip)
		rlfs_irele(sip);
	if (tip)
		rlfs_irele(tip);
	rlfs_irele(sdp);
	rlfs_irele(tdp);
	return error;
}

/* ---- readdir ---- */

struct readdir_ctx {
	struct rlfs_mount *mp;
	struct rlfs_inode *dp;
	struct rlfs_trans *tp;
	int plus;
	rlfs_readdir_fn fn;
	void *priv;
	struct rlfs_inode **held;   /* inodes referenced for plus, released later */
	size_t nheld, capheld;
	int error;
};

static int readdir_entry(void *priv, const char *name, size_t len, uint64_t ino,
			 uint8_t ftype, uint64_t next_cookie)
{
	struct readdir_ctx *ctx = priv;
	struct rlfs_inode *ip = NULL;
	struct stat st;
	char nbuf[RLFS_NAME_MAX + 1];
	int ret;

	memcpy(nbuf, name, len);
	nbuf[len] = '\0';
	memset(&st, 0, sizeof(st));
	if (ctx->plus) {
		if (ctx->nheld == ctx->capheld) {
			size_t cap = ctx->capheld ? ctx->capheld * 2 : 64;
			struct rlfs_inode **n = realloc(ctx->held, cap * sizeof(*n));
			if (!n)
				return -ENOMEM;
			ctx->held = n;
			ctx->capheld = cap;
		}
		int error = rlfs_iget_tp(ctx->tp, ino, &ip);
		if (error == -ENOENT)
			error = rlfs_corrupt(ctx->mp, ctx->dp->root, "dir entry",
					     "dir ino %llu: entry '%s' points at free inode %llu",
					     (unsigned long long)ctx->dp->ino, nbuf,
					     (unsigned long long)ino);
		if (error)
			return error;
		ctx->held[ctx->nheld++] = ip;
		rlfs_inode_stat(ip, &st);
	} else {
		st.st_ino = ino;
		st.st_mode = ftype_to_mode(ftype);
	}
	ret = ctx->fn(ctx->priv, nbuf, &st, next_cookie);
	if (ret == 0 && ip)
		rlfs_inode_lookup_add(ip, 1);
	return ret ? 1 : 0;
}

int rlfs_readdir(struct rlfs_mount *mp, uint64_t dir, uint64_t cookie, int plus,
		 rlfs_readdir_fn fn, void *priv)
{
	struct rlfs_inode *dp, *pp = NULL;
	struct readdir_ctx ctx = { .mp = mp, .plus = plus, .fn = fn, .priv = priv };
	struct stat st;
	int error = iget_dir(mp, dir, &dp);
	if (error)
		return error;
	ctx.dp = dp;
	pthread_rwlock_rdlock(&dp->iolock);
	if (cookie == RLFS_DIR_COOKIE_DOT) {
		memset(&st, 0, sizeof(st));
		if (plus)
			rlfs_inode_stat(dp, &st);
		else {
			st.st_ino = dp->ino;
			st.st_mode = S_IFDIR;
		}
		if (fn(priv, ".", &st, RLFS_DIR_COOKIE_DOTDOT))
			goto out;
		if (plus)
			rlfs_inode_lookup_add(dp, 1);
		cookie = RLFS_DIR_COOKIE_DOTDOT;
	}
	if (cookie == RLFS_DIR_COOKIE_DOTDOT) {
		uint64_t pino = dp->parent ? dp->parent : dp->ino;
		memset(&st, 0, sizeof(st));
		if (plus) {
			error = rlfs_iget(mp, pino, &pp);
			if (error)
				goto out;
			rlfs_inode_stat(pp, &st);
		} else {
			st.st_ino = pino;
			st.st_mode = S_IFDIR;
		}
		if (fn(priv, "..", &st, RLFS_DIR_COOKIE_FIRST))
			goto out;
		if (pp)
			rlfs_inode_lookup_add(pp, 1);
		cookie = RLFS_DIR_COOKIE_FIRST;
	}
	if (cookie >= RLFS_DIR_COOKIE_EOF)
		goto out;
	error = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &ctx.tp);
	if (error)
		goto out;
	error = rlfs_dir_iterate(ctx.tp, dp, cookie, readdir_entry, &ctx);
	rlfs_trans_cancel(ctx.tp);
out:
	pthread_rwlock_unlock(&dp->iolock);
	for (size_t i = 0; i < ctx.nheld; i++)
		rlfs_irele(ctx.held[i]);
	free(ctx.held);
	if (pp)
		rlfs_irele(pp);
	rlfs_irele(dp);
	return error;
}

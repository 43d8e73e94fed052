/*
 * atime.c: access time updates (the VFS's touch_atime and its relatime
 * rule, fs/inode.c atime_needs_update / relatime_need_update).
 *
 * A FUSE kernel never updates atime itself (its inodes are S_NOATIME), so
 * the daemon calls rlfs_touch_atime when a READ or READDIR reaches it.
 * The update is a transaction of its own that logs the inode core (no
 * block is allocated); ctime does not change, as in the kernel.
 */
#include "reflinkfs/fs.h"

#include <stdio.h>
#include <string.h>

#include "inode.h"
#include "rlfs.h"
#include "trans.h"

static int ts_cmp(const struct timespec *a, const struct timespec *b)
{
	if (a->tv_sec != b->tv_sec)
		return a->tv_sec < b->tv_sec ? -1 : 1;
	if (a->tv_nsec != b->tv_nsec)
		return a->tv_nsec < b->tv_nsec ? -1 : 1;
	return 0;
}

bool rlfs_atime_rule(unsigned how, const struct timespec *atime, const struct timespec *mtime,
		     const struct timespec *ctime, const struct timespec *now)
{
	if (how == RLFS_ATIME_NOATIME)
		return false;
	if (how == RLFS_ATIME_RELATIME && ts_cmp(mtime, atime) < 0 && ts_cmp(ctime, atime) < 0 &&
	    now->tv_sec - atime->tv_sec < RLFS_RELATIME_SECS)
		return false;
	return ts_cmp(atime, now) != 0;
}

/* Under ip's iolock (either mode). */
static bool needs_update(struct rlfs_inode *ip, unsigned how, const struct timespec *now)
{
	if (ip->flags & RLFS_DIFLAG_NOATIME)
		return false;
	return rlfs_atime_rule(how, &ip->atime, &ip->mtime, &ip->ctime, now);
}

/* Get ino and answer under the shared lock whether atime needs an update
 * now: 1 (*ipp holds a reference), 0 (nothing held), or -errno. */
static int get_if_needed(struct rlfs_mount *mp, uint64_t ino, unsigned how,
			 struct rlfs_inode **ipp)
{
	struct rlfs_inode *ip;
	struct timespec now;
	if (how == RLFS_ATIME_NOATIME || (mp->flags & RLFS_MOUNT_RDONLY))
		return 0;
	int error = rlfs_iget(mp, ino, &ip);
	if (error)
		return error;
	rlfs_now(&now);
	pthread_rwlock_rdlock(&ip->iolock);
	bool need = needs_update(ip, how, &now);
	pthread_rwlock_unlock(&ip->iolock);
	if (!need) {
		rlfs_irele(ip);
		return 0;
	}
	*ipp = ip;
	return 1;
}

int rlfs_atime_needs_update(struct rlfs_mount *mp, uint64_t ino, unsigned how)
{
	struct rlfs_inode *ip;
	int need = get_if_needed(mp, ino, how, &ip);
	if (need == 1)
		rlfs_irele(ip);
	return need;
}

int rlfs_touch_atime(struct rlfs_mount *mp, uint64_t ino, unsigned how)
{
	struct rlfs_inode *ip;
	struct rlfs_trans *tp;
	struct timespec now;
	/* the common case (relatime, already updated) under the shared lock */
	int error = get_if_needed(mp, ino, how, &ip);
	if (error <= 0)
		return error;
	pthread_rwlock_wrlock(&ip->iolock);
	rlfs_now(&now);
	int ret = 0;
	if (needs_update(ip, how, &now) && !(mp->flags & RLFS_MOUNT_RDONLY)) {
		error = rlfs_trans_alloc(mp, &mp->resv.tr_ichange, 0, 0, &tp);
		if (!error) {
			rlfs_trans_ijoin(tp, ip);
			ip->atime = now;
			rlfs_trans_log_inode(tp, ip);
			error = rlfs_trans_commit(tp);
		}
		ret = error ? error : 1;
	}
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return ret;
}

/*
 * export.c: what file handles need (XFS xfs_export.c): an inode's
 * generation, and a lookup by inode number alone for handles whose inode
 * the kernel no longer caches.
 */
#include "reflinkfs/fs.h"

#include "inode.h"
#include "rlfs.h"

int rlfs_get_generation(struct rlfs_mount *mp, uint64_t ino, uint64_t *gen)
{
	struct rlfs_inode *ip;
	int error = rlfs_iget(mp, ino, &ip);
	if (error)
		return error;
	*gen = ip->generation;
	rlfs_irele(ip);
	return 0;
}

int rlfs_lookup_ino(struct rlfs_mount *mp, uint64_t ino, struct stat *out, uint64_t *gen)
{
	struct rlfs_inode *ip;
	/* rlfs_iget checks the number against the geometry and the inode
	 * btree before it reads anything: a made-up number gives -ENOENT; an
	 * orphan on disk (nlink 0 after a crash) is not corruption either */
	int error = rlfs_iget_linked(mp, ino, &ip);
	if (error)
		return error == -EINVAL ? -ENOENT : error;
	pthread_rwlock_rdlock(&ip->iolock);
	if (ip->nlink == 0) {
		/* deleted: only the kernel's own (cached) reference may still
		 * reach it; a handle lookup must not bring it back */
		pthread_rwlock_unlock(&ip->iolock);
		rlfs_irele(ip);
		return -ENOENT;
	}
	rlfs_inode_lookup_add(ip, 1);
	if (out)
		rlfs_inode_stat(ip, out);
	if (gen)
		*gen = ip->generation;
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return 0;
}

/*
 * ialloc.h: inode allocation.  Inodes come in chunks of 64
 * (RLFS_INODES_PER_CHUNK) laid out in contiguous, chunk-aligned blocks;
 * each AG's inode btree (inobt) has one record per chunk with a free mask.
 * A chunk whose inodes are all free is given back to free space.
 * Model: xfs_ialloc.c.
 */
#ifndef RLFS_IALLOC_H
#define RLFS_IALLOC_H
#include "btree.h"

extern const struct rlfs_btree_ops rlfs_inobt_ops;

/* Largest height the inobt can reach in an AG of this geometry (every
 * block half full); used for AGFL sizing and reservations. */
unsigned rlfs_inobt_maxlevels(struct rlfs_mount *mp);
/* Blocks to reserve for one inode allocation (a new chunk + btree splits). */
uint32_t rlfs_ialloc_res(struct rlfs_mount *mp);
/*
 * Allocate a free inode, preferring parent_ino's AG (0 = any); allocates
 * and initialises a new chunk (every inode: magic, ino, uuid, mode 0, crc)
 * if none is free.  The caller then initialises the inode (rlfs_inode_init).
 * 0, -ENOSPC (no space for a chunk), -EUCLEAN.
 */
int rlfs_ialloc(struct rlfs_trans *tp, uint64_t parent_ino, uint64_t *ino);
/* Mark ino free in its chunk; if the chunk is all free, delete its inobt
 * record and queue the free of its blocks on tp (an EFI, finished when tp
 * commits: defer.h).
 * -EUCLEAN if ino was already free or lies in no chunk. */
int rlfs_ifree(struct rlfs_trans *tp, uint64_t ino);
/* Is ino inside an allocated chunk and marked in use?  For validating inode
 * numbers coming from directories.  *inuse set; 0, -EUCLEAN, -EINVAL (ino
 * out of range). */
int rlfs_ialloc_check(struct rlfs_trans *tp, uint64_t ino, bool *inuse);
#endif

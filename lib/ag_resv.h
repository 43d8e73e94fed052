/*
 * ag_resv.h: the per-AG reservation for the btrees that grow from an AG's
 * AGFL (the refcount btree with REFLINK, the rmap btree with RMAP): the
 * role of XFS's xfs_ag_resv (libxfs/xfs_ag_resv.c, XFS_AG_RESV_METADATA and
 * XFS_AG_RESV_RMAPBT).
 *
 * A refcount or rmap record can have to split when an AG is full of data:
 * a copy-on-write or an unlink of a shared file changes reference counts,
 * every mapping change changes the rmap.  Those trees take their blocks
 * from the AGFL, which is refilled from the AG's free space; so every
 * other allocation in the AG (file data, bmbt, directory and xattr blocks,
 * inode chunks: rlfs_alloc_extent) leaves the reserve free, and only the
 * AGFL refill (rlfs_alloc_fix_freelist) may use it.  The reserve is the
 * same for every AG and does not shrink as the trees grow (XFS counts what
 * the trees already use; that needs per-AG tree block counts in the AG
 * header, a later step).  Like the AGFL minimum it is never available to
 * files: statfs and transaction reservations leave it out (mp->setaside).
 */
#ifndef RLFS_AG_RESV_H
#define RLFS_AG_RESV_H
#include "rlfs.h"

/*
 * Blocks each AG keeps for its AGFL-fed btrees, from the geometry and
 * features: a refcount btree of agblocks/2 records in half-full leaves plus
 * its node levels and an AGFL refill (~0.3% of an AG at 4 KiB blocks,
 * ~1.2% at 1 KiB), and the same for the rmap btree's 24-byte records
 * (~0.6% at 4 KiB; XFS: xfs_refcountbt_calc_reserves,
 * xfs_rmapbt_calc_reserves).  0 without REFLINK and RMAP.
 */
uint32_t rlfs_ag_resv_blocks(struct rlfs_mount *mp);
#endif

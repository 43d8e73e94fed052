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
 * inode chunks: rlfs_alloc_extent) leaves the AG's reserve free, and only
 * the AGFL refill (rlfs_alloc_fix_freelist) may use it.
 *
 * How big (as xfs_ag_resv_init): "ask" is the most blocks both trees can
 * ever need in an AG of this size (mp->ag_resv_ask_blocks, the same for
 * every AG); the AG's reserve is ask less the blocks the trees already
 * hold, counted in the AG header (agh.refc_blocks + agh.rmap_blocks, kept
 * with the RLFS_FEAT_RO_COMPAT_AGBTCOUNT feature), and never below 0.  A
 * tree block taken while the trees hold fewer than ask blocks comes out
 * of the reserve (the reserve shrinks by one, the free-block counter
 * mp->fdblocks does not change); one taken beyond ask is an ordinary
 * allocation (fdblocks shrinks).  A freed tree block goes back the same
 * way.  Images without the feature bit (made before it) keep the whole
 * ask as their reserve: they have no counts to subtract.  Like the AGFL
 * minimum the reserve is never available to files: statfs and transaction
 * reservations leave the sum over the AGs out (mp->setaside, which each
 * transaction's tree growth changes at its commit: tp->ag_resv_used).
 */
#ifndef RLFS_AG_RESV_H
#define RLFS_AG_RESV_H
#include "rlfs.h"
#include "trans.h"

/*
 * Blocks both AGFL-fed btrees of one AG may ever need, from the geometry
 * and features: a refcount btree of agblocks/2 records in half-full leaves
 * plus its node levels and an AGFL refill (~0.3% of an AG at 4 KiB blocks,
 * ~1.2% at 1 KiB), and the same for the rmap btree's 24-byte records
 * (~0.6% at 4 KiB; XFS: xfs_refcountbt_calc_reserves,
 * xfs_rmapbt_calc_reserves).  0 without REFLINK and RMAP.
 */
uint32_t rlfs_ag_resv_ask_blocks(struct rlfs_mount *mp);

/* The AGBTCOUNT feature (SPEC section 5): agh.refc_blocks/rmap_blocks are
 * kept. */
static inline bool rlfs_has_agbtcount(const struct rlfs_mount *mp)
{ return mp->features_ro_compat & RLFS_FEAT_RO_COMPAT_AGBTCOUNT; }

/*
 * Blocks of the AG whose header is agh that allocations other than the
 * AGFL refill must leave free: mp->ag_resv_ask_blocks less agh's
 * refc_blocks + rmap_blocks (0 if those reach it) with AGBTCOUNT, the
 * whole ask without.  0 on a bare mount (ask not set).
 */
uint32_t rlfs_ag_resv_left_blocks(const struct rlfs_mount *mp, const struct rlfs_agh *agh);

/*
 * A block of an AGFL-fed tree under the reservation was taken from the
 * AGFL (delta +1) or given back to it (delta -1) in tp: count it in the
 * AG header agbp at count_off (offsetof refc_blocks or rmap_blocks; the
 * header is logged) and account it: out of / back into the AG's reserve
 * (tp->ag_resv_used) while the trees hold fewer than ask blocks (after
 * the give-back, before the take), else as an ordinary allocation or free
 * (rlfs_trans_mod_used / _freed).  Without AGBTCOUNT (or agbp NULL): the
 * ordinary accounting only, nothing counted.  Called by
 * rlfs_agbt_alloc_block / rlfs_agbt_free_block for trees whose ops set
 * agh_blocks_off.
 */
void rlfs_ag_resv_tree_block(struct rlfs_trans *tp, struct rlfs_buf *agbp, size_t count_off,
			     int delta);
#endif

/*
 * bmap.h: the data fork block map.  Every change goes to both the in-core
 * extent list (ip->iext) and the on-disk fork: inline extents in the inode
 * literal area while they fit (format EXTENTS), else a bmbt (format BTREE,
 * root block at ip->root, keyed by startoff, records struct rlfs_bmbt_rec).
 * Conversion both ways happens automatically.  Adjacent extents that are
 * contiguous on disk and in the file and in the same state are merged.
 * ip->nextents on disk = ip->next in core.  nblocks counts data and bmbt
 * blocks.  Caller holds ip->iolock exclusively and has joined ip to tp.
 * Model: xfs_bmap.c (xfs_bmapi_write / xfs_bunmapi), much simplified.
 */
#ifndef RLFS_BMAP_H
#define RLFS_BMAP_H
#include "inode.h"

extern const struct rlfs_btree_ops rlfs_bmbt_ops;

/* Load ip->iext from disk (inline or by walking the bmbt).  0, -EUCLEAN. */
int rlfs_bmap_load(struct rlfs_trans *tp, struct rlfs_inode *ip);

/*
 * Find the mapping for file block off: if an extent contains off, *got is
 * it and *found = true; otherwise *got is the next extent after off
 * (startoff > off) with *found = false, or got->blockcount = 0 if none.
 * Pure in-core lookup (binary search); caller holds iolock (shared is fine).
 */
void rlfs_bmap_lookup(struct rlfs_inode *ip, uint64_t off, struct rlfs_irec *got, bool *found);

/* Inline extent capacity of the data fork (literal area up to forkoff). */
uint32_t rlfs_bmap_inline_max(struct rlfs_inode *ip);
/* Blocks to reserve for changing nextents extents of ip (bmbt splits,
 * conversion to btree, and the free-space tree growth). */
uint32_t rlfs_bmap_res(struct rlfs_inode *ip, uint32_t nextents);

/*
 * Allocate and map blocks for the hole range [off, off+len) (blocks),
 * which must be unmapped.  Allocation is EXACT after the previous extent
 * (so a growing file stays one extent) falling back to NEAR then ANY; may
 * produce several extents.  unwritten: map as RLFS_EXT_UNWRITTEN (caller
 * did not write data).  Counts against tp's reservation.  0, -ENOSPC.
 */
int rlfs_bmap_alloc(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t off,
		    uint64_t len, bool unwritten);
/*
 * Like rlfs_bmap_alloc, but makes at most *allocs_left allocator calls
 * (decremented per call; NULL = no limit), so that the number of new
 * extents (and so the bmbt growth) stays within what the caller reserved
 * with rlfs_bmap_res.  *mapped_blocks gets the number of blocks mapped:
 * the prefix [off, off + *mapped_blocks) is mapped when it returns 0.
 * 0, -ENOSPC, -EEXIST (off already mapped), -EFBIG (past the max file
 * size), -EUCLEAN.
 */
int rlfs_bmap_alloc_range(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t off,
			  uint64_t len, bool unwritten, uint32_t *allocs_left,
			  uint64_t *mapped_blocks);

/* Insert an already-allocated mapping into a hole (reflink: the caller
 * took the reference with rlfs_refcount_increase).  Adds rec->blockcount
 * to nblocks.  Extents merge only within one AG. */
int rlfs_bmap_map_extent(struct rlfs_trans *tp, struct rlfs_inode *ip,
			 const struct rlfs_irec *rec);
/*
 * Remove mappings in [off, off+len) (blocks), splitting extents at the
 * edges.  free_mode says what happens to the data blocks:
 *   RLFS_BUNMAP_KEEP (0)   nothing (the caller moves them elsewhere);
 *   RLFS_BUNMAP_FREE (1)   released in tp (rlfs_extent_release: refcount
 *                          -1, freed when it reaches 0; a plain free
 *                          without the REFLINK feature);
 *   RLFS_BUNMAP_DEFER (2)  released by deferred work queued on tp
 *                          (rlfs_defer_extent_release: a CUI decrease or
 *                          an EFI, finished in rolled transactions when tp
 *                          commits; crash-safe through the log's intents).
 * bmbt blocks are never shared and are freed directly.  Stops early after
 * max_extents extents (0 = no limit) so long truncates can roll the
 * transaction; *done set true when the whole range is unmapped.
 * Source: xfs_bunmapi (+ __xfs_free_extent_later / xfs_refcount_decrease_extent).
 */
#define RLFS_BUNMAP_KEEP  0u
#define RLFS_BUNMAP_FREE  1u
#define RLFS_BUNMAP_DEFER 2u
int rlfs_bmap_unmap(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t off,
		    uint64_t len, unsigned free_mode, uint32_t max_extents, bool *done);
/* Mark [off, off+len) written (unwritten -> normal), splitting as needed. */
int rlfs_bmap_convert_written(struct rlfs_trans *tp, struct rlfs_inode *ip,
			      uint64_t off, uint64_t len);
/*
 * Repair (fsck): give ip, loaded by rlfs_iget_fork_lost (empty inline
 * fork) and joined to tp, the data fork ext[0..n) (sorted by startoff, no
 * overlaps, each extent inside one AG: the file's mappings as its rmap
 * records say), without reading the old fork.  The old bmbt's block runs
 * old_bmbt[0..nold) (startblock/blockcount; the rmap's bmbt-block records
 * of the inode) leave the rmap and are freed; a new bmbt is built when the
 * extents do not fit inline.  The data blocks' refcounts and rmap records
 * are left alone: they already describe ext.  ip->nblocks must not count
 * the old bmbt blocks (the caller sets it); new bmbt blocks are added.
 * Everything happens in tp: -EFBIG when the new bmbt would not fit one
 * checkpoint (estimated against half the log), -EINVAL (a bad list, or ip's fork not
 * empty), -ENOSPC, -EUCLEAN, -ENOMEM (cancel tp).  Source: the role of
 * xfs_repair's phase 4 rebuilding a bmbt from reverse mappings
 * (xfs_repair/rmap.c, and the online repair's xrep_bmap).
 */
/* Would rlfs_bmap_repair_fork of n extents fit one checkpoint of a log of
 * log_blocks blocks (the estimate it refuses with -EFBIG)? */
bool rlfs_bmap_repair_fits(const struct rlfs_mount *mp, uint64_t n, uint32_t log_blocks);
int rlfs_bmap_repair_fork(struct rlfs_trans *tp, struct rlfs_inode *ip,
			  const struct rlfs_irec *ext, uint32_t n,
			  const struct rlfs_irec *old_bmbt, uint32_t nold);
/* Check the in-core list against the on-disk fork (fsck/tests): 0/-EUCLEAN */
int rlfs_bmap_check(struct rlfs_trans *tp, struct rlfs_inode *ip);
#endif

/*
 * refcount.h: the per-AG reference count b+tree (REFLINK feature).
 *
 * It records how many data-fork mappings point at each shared block:
 * records (agbno, blockcount, refcount) exist only for extents with
 * refcount >= 2 (the SHARED domain); a mapped block without a record has
 * refcount 1.  A second domain (COW: startblock | RLFS_REFC_COWFLAG,
 * refcount always 1) marks blocks staged for copy-on-write, so that after a
 * crash they can be found and freed; shared and CoW records never merge.
 * Blocks come from and go to the AGFL like the other AG trees.
 *
 * The adjust algorithm (xfs_refcount.c, xfs_refcount_adjust): for a range
 * [agbno, agbno+len) and delta +1/-1: split records crossing the range
 * edges, walk the range (gaps count as refcount 1: +1 inserts a record
 * with 2, -1 frees the gap's blocks), update records in place, delete
 * records that drop to 1 (and free those that drop to 0), then merge with
 * neighbours that ended up with the same count.  A record at
 * RLFS_REFC_REFCOUNT_MAX stays there (the blocks leak, never freed early).
 * Ranges crossing an AG boundary are split per AG internally.
 *
 * Every function runs inside the caller's transaction; errors 0 / -EUCLEAN
 * (corrupt tree, after rlfs_corrupt) / -ENOSPC / -EIO.
 */
#ifndef RLFS_REFCOUNT_H
#define RLFS_REFCOUNT_H
#include "btree.h"

extern const struct rlfs_btree_ops rlfs_refcountbt_ops;
extern const struct rlfs_buf_ops rlfs_refcountbt_buf_ops;

static inline bool rlfs_has_reflink(const struct rlfs_mount *mp)
{ return mp->features_incompat & RLFS_FEAT_INCOMPAT_REFLINK; }

/* Set up a cursor on AG agno's refcount btree (agbp: the AG header buffer,
 * or NULL to read it on demand).  For fsck and tests; free with
 * rlfs_btree_cur_del. */
void rlfs_refcount_cur_init(struct rlfs_btree_cur *cur, struct rlfs_trans *tp, uint32_t agno,
			    struct rlfs_buf *agbp);

/*
 * Calling conventions (all functions below):
 *   - ranges are fsbno + blocks; a range may cross AG boundaries (split
 *     per AG); fsbno 0, a range beyond the device or one touching an AG's
 *     header blocks is -EUCLEAN; len 0 is a no-op;
 *   - increase/decrease/cow_* on a filesystem without the feature:
 *     -EOPNOTSUPP (find_shared/get then report "nothing shared" / 1);
 *   - every function keeps the AGFL stocked itself and may allocate tree
 *     blocks from it (accounted with rlfs_trans_mod_used: reserve
 *     rlfs_refcount_res); a failure half way leaves the tree half changed:
 *     cancel the transaction.
 */
/* Add one reference to every block of [fsbno, fsbno+len_blocks). */
int rlfs_refcount_increase(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks);
/* Drop one reference; blocks whose count reaches 0 go back to free space
 * (rlfs_free_extent). */
int rlfs_refcount_decrease(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks);
/* The same, but blocks whose count reaches 0 are queued on tp as an EFI
 * (defer.h) instead of freed at once: the CUI decrease step. */
int rlfs_refcount_decrease_deferred(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks);
/*
 * Release a data-fork mapping of [fsbno, fsbno+len): on a reflink
 * filesystem rlfs_refcount_decrease, else rlfs_free_extent.  What the
 * block-map code calls when it unmaps blocks.
 */
int rlfs_extent_release(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks);
/*
 * Find the first shared block in [fsbno, fsbno+len): *shared_fsbno and
 * *shared_len (the length of the run of shared blocks from there, within
 * the range).  None: *shared_len = 0, *shared_fsbno = fsbno + len.
 * Mirrors xfs_refcount_find_shared(find_end_of_shared = true).
 */
int rlfs_refcount_find_shared(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len,
			      uint64_t *shared_fsbno, uint32_t *shared_len);
/* The reference count of one block as the tree says (1 without a record;
 * callers know whether the block is in use).  For FIEMAP SHARED and tests. */
int rlfs_refcount_get(struct rlfs_trans *tp, uint64_t fsbno, uint32_t *refcount);
/* CoW staging domain: record / forget [fsbno, fsbno+len) as staging. */
int rlfs_refcount_cow_alloc(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks);
int rlfs_refcount_cow_free(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks);
/* The first CoW-domain (staging) record of AG agno starting at or after
 * from_agbno: *agbno, *len_blocks, *found (false: none, or no REFLINK).
 * 0, -EINVAL (agno or from_agbno out of range), -EUCLEAN, -EIO.  For the
 * mount's staging recovery (xfs_refcount_recover_cow_leftovers' query). */
int rlfs_refcount_cow_next(struct rlfs_trans *tp, uint32_t agno, uint32_t from_agbno,
			   uint32_t *agbno, uint32_t *len_blocks, bool *found);
/* Worst-case blocks one adjust of nextents extents can take (splits of the
 * refcount tree plus the free-space trees for frees). */
uint32_t rlfs_refcount_res(struct rlfs_mount *mp, uint32_t nextents);
unsigned rlfs_refcount_maxlevels(struct rlfs_mount *mp);
#endif

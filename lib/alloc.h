/*
 * alloc.h: the space layer: AG headers, the AGFL, the free-space btrees
 * (bnobt by start block, cntbt by (length, start)) and the extent allocator.
 * Model: xfs_alloc.c (allocation types, fix_freelist keeping the AGFL
 * stocked so btree splits of bnobt/cntbt never recurse into the allocator).
 *
 * Accounting: an allocation consumes from the transaction's reservation
 * (rlfs_trans_mod_used) and decrements agh.freeblks; a free increments
 * agh.freeblks and credits tp (rlfs_trans_mod_freed).  agh.longest always
 * equals the largest cntbt record.
 */
#ifndef RLFS_ALLOC_H
#define RLFS_ALLOC_H
#include "btree.h"

extern const struct rlfs_buf_ops rlfs_agh_buf_ops;
extern const struct rlfs_buf_ops rlfs_agfl_buf_ops;
extern const struct rlfs_buf_ops rlfs_sb_buf_ops;
extern const struct rlfs_btree_ops rlfs_bnobt_ops;
extern const struct rlfs_btree_ops rlfs_cntbt_ops;

/* Read AG agno's header (joined to tp).  0, -EUCLEAN, -EIO. */
int rlfs_ag_read_header(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf **bpp);
static inline struct rlfs_agh *rlfs_agh(struct rlfs_buf *bp) { return bp->data; }
/* A field of the AG header changed: log struct rlfs_agh's bytes of the
 * block, not the whole block (xfs_alloc_log_agf / xfs_ialloc_log_agi). */
static inline void rlfs_ag_log_header(struct rlfs_trans *tp, struct rlfs_buf *agbp)
{
	rlfs_trans_log_buf_range(tp, agbp, 0, (uint32_t)sizeof(struct rlfs_agh) - 1);
}

enum rlfs_alloc_type {
	RLFS_ALLOC_EXACT,   /* start exactly at hint (grow a file in place) */
	RLFS_ALLOC_NEAR,    /* as close to hint as possible */
	RLFS_ALLOC_ANY,     /* anywhere: best fit by size, any AG */
};

/*
 * One allocation request.  The allocator returns one extent of between
 * minlen and maxlen blocks (as long as it can, up to maxlen), preferring
 * the hint's AG, then trying the others in order (not for EXACT).
 * hint_fsbno 0 = no preference.  Units: blocks, fsbno.
 */
struct rlfs_alloc_arg {
	struct rlfs_trans *tp;
	enum rlfs_alloc_type type;
	uint64_t hint_fsbno;
	uint32_t minlen;            /* >= 1 */
	uint32_t maxlen;            /* >= minlen, <= RLFS_MAX_EXTLEN */
	uint32_t alignment;         /* start aligned to this many blocks (1 = any) */
	bool for_btree;             /* metadata block for an inode tree */
	/* out */
	uint64_t fsbno;             /* 0 if nothing found */
	uint32_t len;
};
/*
 * Policies (the extent never crosses an AG end; alignment is of the fsbno):
 *   EXACT: [hint, hint+minlen) must be free (and hint aligned); returns as
 *          much as is free from hint on, up to maxlen.  Only the hint's AG.
 *   NEAR:  first pass over the AGs (hint's AG first, then the next ones,
 *          wrapping) wants maxlen, second pass accepts minlen.  Inside an
 *          AG: the longest length achievable there (up to maxlen), placed
 *          as close to the hint as possible (bnobt walked both ways from
 *          the hint; other AGs use agbno 0 as the hint).
 *   ANY:   the first AG (from the hint's) holding maxlen gets a best fit by
 *          size (smallest cntbt record that holds it); if no AG has maxlen,
 *          the AGs with the longest free extent are tried first and the
 *          longest aligned piece (>= minlen) is returned.
 * The AGFL is topped up first (rlfs_alloc_fix_freelist); an AG that cannot
 * keep its AGFL at the minimum is skipped, and so is one whose free blocks
 * beyond its reserve (rlfs_ag_resv_left_blocks, ag_resv.h) are fewer than the
 * pass needs: no allocation through here takes the reserve, which only the
 * AGFL refill for the refcount and rmap btrees may use (XFS:
 * xfs_alloc_space_available).  alignment 0 counts as 1.
 * 0 with args->fsbno/len set, -ENOSPC if no extent of minlen exists (EXACT:
 * if the hint block is not free for minlen), -EINVAL (minlen 0, maxlen <
 * minlen or > RLFS_MAX_EXTLEN), -EUCLEAN, -EIO.  Blocks are accounted with
 * rlfs_trans_mod_used.  Model: xfs_alloc_vextent.
 */
int rlfs_alloc_extent(struct rlfs_alloc_arg *args);
/* Return [fsbno, fsbno+len) to free space, merging with neighbours.
 * -EUCLEAN if any of it is already free (double free). */
int rlfs_free_extent(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len);
/* The same for blocks that tp itself allocated and that nothing on disk
 * refers to (an allocation given back: too long, in the wrong AG, or the
 * operation failed): they were not busy when allocated, so they do not
 * become busy now (busy.h); anything else must use rlfs_free_extent. */
int rlfs_free_extent_unused(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len);

/* AG btree block allocation from / to the AGFL (bnobt/cntbt/inobt ops use
 * these; -ENOSPC when the AGFL is empty, -EUCLEAN on a bad slot or an
 * overflow).  No space accounting here: the btree ops do it.
 * rlfs_alloc_fix_freelist tops the AGFL up to rlfs_agfl_min (from the
 * trees; -ENOSPC if the AG has too little free space) and gives a surplus
 * left by btree merges back to the trees; the allocator and
 * rlfs_free_extent call it before touching the free-space trees, ialloc
 * before inobt changes.  See the policy note at the top of alloc.c. */
int rlfs_agfl_get_block(struct rlfs_trans *tp, uint32_t agno, uint32_t *agbno);
int rlfs_agfl_put_block(struct rlfs_trans *tp, uint32_t agno, uint32_t agbno);
int rlfs_alloc_fix_freelist(struct rlfs_trans *tp, uint32_t agno);
/* AGFL ring: slots per block, blocks kept in it (min and target). */
unsigned rlfs_agfl_size(struct rlfs_mount *mp);
unsigned rlfs_agfl_min(struct rlfs_mount *mp);

/*
 * Shared btree-ops pieces of the AG-rooted trees (bnobt, cntbt, inobt,
 * refcountbt): the root agbno and height live in the AG header at the given
 * field offsets, blocks come from and go back to the AGFL (counted with
 * rlfs_trans_mod_used / rlfs_trans_mod_freed), and the block owner is the
 * agno.  cur->priv caches the AG header buffer (read on first use, joined
 * to cur->tp); rlfs_agbt_agbp returns NULL if it cannot be read, and then
 * get_root reports an empty tree and set_root does nothing (the caller's
 * next read fails with the header's error).  Errors: those of
 * rlfs_agfl_get_block / rlfs_agfl_put_block.  Model: xfs_allocbt_ops etc.
 */
struct rlfs_buf *rlfs_agbt_agbp(struct rlfs_btree_cur *cur);
void rlfs_agbt_get_root(struct rlfs_btree_cur *cur, size_t root_off, size_t level_off,
			uint64_t *fsbno, unsigned *nlevels);
void rlfs_agbt_set_root(struct rlfs_btree_cur *cur, size_t root_off, size_t level_off,
			uint64_t fsbno, unsigned nlevels);
int rlfs_agbt_alloc_block(struct rlfs_btree_cur *cur, uint64_t hint_fsbno, uint64_t *fsbno);
int rlfs_agbt_free_block(struct rlfs_btree_cur *cur, uint64_t fsbno);
uint64_t rlfs_agbt_owner(struct rlfs_btree_cur *cur);
/* Define prefix_get_root / prefix_set_root for the tree whose root and
 * height are the AG header fields rootf / levelf. */
#define RLFS_AGBT_ROOT_OPS(prefix, rootf, levelf)                                        \
	static void prefix##_get_root(struct rlfs_btree_cur *cur, uint64_t *fsbno,          \
				      unsigned *nlevels)                                    \
	{                                                                                   \
		rlfs_agbt_get_root(cur, offsetof(struct rlfs_agh, rootf),                   \
				   offsetof(struct rlfs_agh, levelf), fsbno, nlevels);      \
	}                                                                                   \
	static void prefix##_set_root(struct rlfs_btree_cur *cur, uint64_t fsbno,           \
				      unsigned nlevels)                                     \
	{                                                                                   \
		rlfs_agbt_set_root(cur, offsetof(struct rlfs_agh, rootf),                   \
				   offsetof(struct rlfs_agh, levelf), fsbno, nlevels);      \
	}

/* Worst-case blocks a transaction must reserve for btree growth when it
 * allocates or frees nextents extents (splits in bnobt/cntbt/AGFL refill). */
uint32_t rlfs_alloc_tree_res(struct rlfs_mount *mp, uint32_t nextents);

/*
 * Set up a cursor on the bnobt or cntbt (ops) of AG agno.  agbp is the AG
 * header buffer from rlfs_ag_read_header (the tree root lives there), or
 * NULL to have the cursor read it.  Free with rlfs_btree_cur_del.  The
 * inobt cursor is set up the same way: rlfs_btree_cur_init(cur, tp,
 * &rlfs_inobt_ops, agno, NULL, agbp).
 */
void rlfs_alloc_cur_init(struct rlfs_btree_cur *cur, struct rlfs_trans *tp,
			 const struct rlfs_btree_ops *ops, uint32_t agno, struct rlfs_buf *agbp);

/* Sum of free blocks over all AGs (freeblks + flcount), read from the AG
 * headers; used at mount to initialise mp->fdblocks and by fsck.  */
int rlfs_count_free(struct rlfs_trans *tp, uint64_t *free_blocks);
#endif

/*
 * btree_bload.h: bottom-up bulk loading of a whole b+tree of any type
 * described by struct rlfs_btree_ops (btree.h), for fsck's rebuilds.
 * Model: xfsprogs/kernel xfs_btree_bload (libxfs/xfs_btree_staging.c):
 * compute the shape first, reserve exactly that many blocks, then write
 * every block once, leaves left to right, then each node level, without a
 * single split or per-record insert.  Own code, same two steps.
 *
 * Shape: level 0 holds the records, each block of a level holds entries
 * (records, or key slots + child pointers) up to maxrecs - slack, spread
 * evenly (block counts differ by at most one entry), never fewer than
 * maxrecs / 2 unless the block is the root (the invariant btree.c keeps,
 * so the library can insert and delete in the new tree at once).  Node
 * key slots are the child's low key, and in overlapping trees (rmapbt)
 * also the largest high key below the child, computed from the children.
 * Sibling pointers link every level left to right.  Zero records give one
 * empty leaf root (mkfs's empty tree).
 *
 * Trees: AG-rooted ones (bnobt, cntbt, inobt, refcountbt, rmapbt): the
 * block owner comes from ops->owner on a cursor holding only agno (and
 * cur_priv), no inode; an inode-rooted bmbt (root in the inode fork) is
 * not handled yet.
 *
 * Units: record counts and block counts; block numbers are fsbno (the
 * caller turns the root into an agbno for its AG header).
 *
 * Usage:
 *   struct rlfs_bload bl = { .ops = &rlfs_bnobt_ops, .agno = agno,
 *                            .leaf_slack = -1, .node_slack = -1,
 *                            .get_rec = fn, .claim_block = fn2, .priv = p };
 *   rlfs_btree_bload_compute_geometry(mp, &bl, nrecs);  -> bl.nblocks
 *   (reserve bl.nblocks blocks for claim_block to hand out)
 *   rlfs_btree_bload(tp, &bl);                          -> bl.root_fsbno,
 *                                                          bl.nlevels
 * The blocks are dirtied in tp (rlfs_trans_get_buf + rlfs_trans_log_buf,
 * with ops->buf_ops, so they pass the same pre-write verifier and get the
 * same crc/LSN stamping as any block of that tree).  On a mount without a
 * log (fsck's bare mount) committing tp and flushing writes them in place;
 * a whole tree exceeds any log reservation, so do not use it in a logged
 * transaction.  Nothing here touches an AG header: the caller installs the
 * root.
 */
#ifndef RLFS_BTREE_BLOAD_H
#define RLFS_BTREE_BLOAD_H
#include "btree.h"

/* Copy the next record (ops->rec_len bytes, on-disk format) into rec.
 * Called exactly nrecs times, in key order.  0 or negative errno. */
typedef int (*rlfs_bload_get_rec_fn)(void *priv, void *rec);
/* Hand out one reserved block (fsbno).  Called exactly nblocks times.
 * 0 or negative errno (-ENOSPC). */
typedef int (*rlfs_bload_claim_fn)(void *priv, uint64_t *fsbno);

struct rlfs_bload {
	/* set by the caller */
	const struct rlfs_btree_ops *ops;
	uint32_t agno;              /* AG trees: for ops->owner / cmp_key */
	void *cur_priv;             /* cursor priv the ops may need (or NULL) */
	int leaf_slack;             /* entries left free per block; < 0: 2 */
	int node_slack;
	rlfs_bload_get_rec_fn get_rec;
	rlfs_bload_claim_fn claim_block;
	void *priv;                 /* for get_rec and claim_block */

	/* set by rlfs_btree_bload_compute_geometry */
	uint64_t nrecs;
	unsigned nlevels;           /* 1: the root is a leaf */
	uint64_t nblocks;           /* total blocks the tree needs */
	uint64_t level_blocks[RLFS_BTREE_MAXLEVELS];

	/* set by rlfs_btree_bload */
	uint64_t root_fsbno;
};

/*
 * Compute the shape of a tree of nrecs records (bl->nlevels, nblocks,
 * level_blocks).  0; -EINVAL if the ops are unusable at mp's block size
 * (see btree.h) or a slack leaves fewer than half of maxrecs; -EFBIG if
 * the tree would need more than RLFS_BTREE_MAXLEVELS levels.
 */
int rlfs_btree_bload_compute_geometry(struct rlfs_mount *mp, struct rlfs_bload *bl,
				      uint64_t nrecs);

/*
 * Build the tree whose geometry was computed: takes bl->nrecs records
 * from get_rec and bl->nblocks blocks from claim_block, writes every
 * block into tp, sets bl->root_fsbno (nlevels stays as computed).
 * 0, -EINVAL (records not in strictly increasing key order, a claimed
 * block 0 or outside the device, the same block claimed twice in a row),
 * a callback's error, or a buffer error (-ENOMEM, -EIO).  On error some
 * blocks may be dirty in tp: cancel it.
 */
int rlfs_btree_bload(struct rlfs_trans *tp, struct rlfs_bload *bl);

#endif

/*
 * btree.h: the one generic b+tree used by every tree in reflinkfs (bnobt,
 * cntbt, inobt, bmbt, directory and xattr trees; refcount and rmap later).
 * Model: xfsprogs libxfs/xfs_btree.c (generic code + per-type ops vector,
 * including the overlapping-interval variant used by the rmap btree).
 *
 * Block layout (struct rlfs_btree_block in format.h):
 *   leaf (level 0): header, then numrecs records of ops->rec_len bytes;
 *   node (level>0): header, then numrecs key slots, then (at the offset
 *   after maxrecs key slots) numrecs le64 child fsbnos.  A key slot is
 *   ops->key_len bytes, or 2*key_len (low key, high key) when
 *   ops->overlapping: the high key of a slot is the largest high key of any
 *   record below that child, so a range query can skip subtrees.
 *   maxrecs = (blocksize - 72) / rec_len for leaves,
 *             (blocksize - 72) / (slot_len + 8) for nodes.
 * Keys are compared with ops->cmp_key.  Records are kept in key order and
 * keys are unique (insert of an existing key gives -EEXIST).
 *
 * A cursor holds a path from root to leaf (buffer + index at each level).
 * The cursor's buffers are joined to its transaction.  Any call that
 * changes the tree may move or invalidate the cursor position except as
 * documented.
 *
 * Non-root blocks are kept at least half full (maxrecs / 2 entries); a
 * node root has at least two children (a root left with one child is
 * collapsed).  Sibling pointers link every level left to right.
 *
 * ops requirements (else -EINVAL from every call): key_len <= 32,
 * rec_len <= 512, leaf maxrecs >= 2 and node maxrecs >= 4 at the mount's
 * block size.  A get_root fsbno of 0 means a tree with no block at all:
 * lookups and queries find nothing, and the first insert allocates a root
 * leaf (alloc_block, then set_root(fsbno, 1)).
 *
 * Errors: 0 or negative errno; -EUCLEAN for a block failing verification
 * or a structural inconsistency (after rlfs_corrupt logs it), -ENOSPC if a
 * split needs a block and ops->alloc_block finds none, -EIO.  A change
 * that fails half way (-ENOSPC, -EUCLEAN, -EIO from insert, delete or
 * destroy) may leave the tree inconsistent in memory: cancel the
 * transaction (which restores every block).
 */
#ifndef RLFS_BTREE_H
#define RLFS_BTREE_H
#include "trans.h"

#define RLFS_BTREE_MAXLEVELS 10
#define RLFS_BTREE_MAX_KEYLEN 32
#define RLFS_BTREE_MAX_RECLEN 512

struct rlfs_btree_cur;

struct rlfs_btree_ops {
	const char *name;           /* "bnobt" ... for messages */
	uint32_t magic;             /* block magic */
	uint16_t rec_len;           /* bytes per leaf record */
	uint16_t key_len;           /* bytes per key (one of low/high) */
	bool overlapping;           /* node slots carry low+high keys */
	const struct rlfs_buf_ops *buf_ops; /* verifier for this tree's blocks */

	/* key of a record (the low key in overlapping trees) */
	void (*init_key_from_rec)(void *key, const void *rec);
	/* overlapping trees: the highest key a record covers */
	void (*init_high_key_from_rec)(void *key, const void *rec);
	/* <0, 0, >0 as k1 <, ==, > k2 */
	int (*cmp_key)(struct rlfs_btree_cur *cur, const void *k1, const void *k2);
	/* optional, overlapping trees (speed only): compare a record's low /
	 * high key with key without building it; must equal
	 * cmp_key(init_key_from_rec(rec) / init_high_key_from_rec(rec), key).
	 * Range queries scan leaves from their first record, so these run
	 * for most records of every leaf a query visits. */
	int (*cmp_rec_low)(const void *rec, const void *key);
	int (*cmp_rec_high)(const void *rec, const void *key);
	/* optional, overlapping trees (speed only): given a leaf's nrecs >= 1
	 * records (packed, rec_len bytes each, in key order), the 1-based
	 * index of the first one whose high key can be >= low_key; every
	 * record before it has a high key below low_key.  Returning 1 is
	 * always correct. */
	unsigned (*leaf_overlap_start)(const void *recs, unsigned nrecs, const void *low_key);
	/* optional: check one record read from disk; 0 or -EUCLEAN */
	int (*verify_rec)(struct rlfs_btree_cur *cur, const void *rec);

	/* Where the root lives (AG header or inode).  level: 1 = leaf root. */
	void (*get_root)(struct rlfs_btree_cur *cur, uint64_t *fsbno, unsigned *nlevels);
	/* Record a new root (log the AG header / inode in cur->tp). */
	void (*set_root)(struct rlfs_btree_cur *cur, uint64_t fsbno, unsigned nlevels);
	/* Get a block for a split / new root, near hint.  0, -ENOSPC, ... */
	int (*alloc_block)(struct rlfs_btree_cur *cur, uint64_t hint_fsbno, uint64_t *fsbno);
	/* Give back a block emptied by a merge / root collapse. */
	int (*free_block)(struct rlfs_btree_cur *cur, uint64_t fsbno);
	/* hdr.owner for blocks of this tree (agno or ino) */
	uint64_t (*owner)(struct rlfs_btree_cur *cur);
	/* An AG tree fed by the AGFL whose blocks have their own rmap owner
	 * (RLFS_RMAP_OWN_INOBT, _REFC): rlfs_agbt_alloc_block / free_block
	 * move them from and back to RLFS_RMAP_OWN_AG.  0: they stay
	 * OWN_AG (bnobt, cntbt, rmapbt, as XFS's). */
	uint64_t rmap_owner;
	/* An AG tree under the AG reservation (refcountbt, rmapbt;
	 * ag_resv.h): the offset in struct rlfs_agh of its block count
	 * (refc_blocks, rmap_blocks), which rlfs_agbt_alloc_block /
	 * free_block keep and account against the reserve.  0: none. */
	uint16_t agh_blocks_off;
};

struct rlfs_btree_level {
	struct rlfs_buf *bp;        /* NULL if level not loaded */
	int ptr;                    /* 1-based index of the current entry */
};

struct rlfs_btree_cur {
	struct rlfs_trans *tp;
	struct rlfs_mount *mp;
	const struct rlfs_btree_ops *ops;
	uint32_t agno;              /* AG trees */
	struct rlfs_inode *ip;      /* inode-rooted trees */
	void *priv;                 /* tree-specific extra state */
	unsigned nlevels;           /* height; 1 = the root is a leaf */
	struct rlfs_btree_level lev[RLFS_BTREE_MAXLEVELS];
	/* btree.c private: a failed lookup left lev[0].ptr at an insertion
	 * point (between two records), not on a record */
	bool between;
};

enum rlfs_btree_lookup { RLFS_LOOKUP_EQ, RLFS_LOOKUP_LE, RLFS_LOOKUP_GE };

/* Set up a cursor (reads nothing yet).  Free with rlfs_btree_cur_del. */
void rlfs_btree_cur_init(struct rlfs_btree_cur *cur, struct rlfs_trans *tp,
			 const struct rlfs_btree_ops *ops, uint32_t agno,
			 struct rlfs_inode *ip, void *priv);
/* Release the cursor's buffers (they stay joined to the transaction). */
void rlfs_btree_cur_del(struct rlfs_btree_cur *cur);

/*
 * Position the cursor on the record matching key per dir: EQ exact, LE the
 * last record with key <= key, GE the first with key >= key.  *stat = 1 if
 * such a record exists (cursor on it), 0 if not (cursor position then is
 * where key would be inserted; get_rec gives *stat 0).
 */
int rlfs_btree_lookup(struct rlfs_btree_cur *cur, enum rlfs_btree_lookup dir,
		      const void *key, int *stat);
/* Copy the record under the cursor into rec (rec_len bytes); *stat 0 if the
 * cursor is not on a record. */
int rlfs_btree_get_rec(struct rlfs_btree_cur *cur, void *rec, int *stat);
/* Move to the next / previous record; *stat 0 at the end / start.  After a
 * lookup that found nothing (*stat 0), the cursor sits between two records:
 * increment goes to the first record after the looked-up key, decrement
 * to the last record before it. */
int rlfs_btree_increment(struct rlfs_btree_cur *cur, int *stat);
int rlfs_btree_decrement(struct rlfs_btree_cur *cur, int *stat);
/*
 * Insert rec at its key position (the cursor is repositioned internally);
 * -EEXIST if a record with an equal key exists.  Splits blocks and grows the
 * root as needed.  Afterwards the cursor is on the new record.  Needs at
 * most nlevels + 1 new blocks (one per split level plus a new root);
 * -EFBIG if the tree would exceed RLFS_BTREE_MAXLEVELS.
 */
int rlfs_btree_insert(struct rlfs_btree_cur *cur, const void *rec);
/* Delete the record under the cursor; merges/rebalances underfull blocks
 * and shrinks the root.  *stat 0 if the cursor was not on a record.
 * Afterwards the cursor is where lookup GE of the deleted key puts it (on
 * the record that followed the deleted one, if any), so a loop of
 * delete + get_rec walks forward.  Any error other than -EINVAL while
 * changing the tree leaves it half changed: cancel the transaction. */
int rlfs_btree_delete(struct rlfs_btree_cur *cur, int *stat);
/* Overwrite the record under the cursor.  The new record's key must sort
 * in the same place (-EINVAL otherwise); parent keys are updated (and high
 * keys in overlapping trees). */
int rlfs_btree_update(struct rlfs_btree_cur *cur, const void *rec);

/*
 * Call fn for every record overlapping [low_key, high_key] (both inclusive),
 * in key order.  Non-overlapping trees: records whose key is in the range.
 * Overlapping trees: records with low <= high_key and high >= low_key,
 * pruning subtrees by their high keys.  fn returns 0 to go on, a positive
 * value to stop (returned as is), or a negative errno (returned).  While fn
 * runs the cursor is on the record (get_rec works); fn must not change the
 * tree.  -EINVAL if low_key > high_key.  Mirrors xfs_btree_query_range.
 */
typedef int (*rlfs_btree_rec_fn)(struct rlfs_btree_cur *cur, const void *rec, void *priv);
int rlfs_btree_query_range(struct rlfs_btree_cur *cur, const void *low_key,
			   const void *high_key, rlfs_btree_rec_fn fn, void *priv);
/* Every record in key order (same fn contract). */
int rlfs_btree_query_all(struct rlfs_btree_cur *cur, rlfs_btree_rec_fn fn, void *priv);

/* Call fn for every block of the tree (root first, level by level, left
 * to right along the sibling links); fn gets the buffer (held only during
 * the call) and its level; a nonzero return stops the walk and is
 * returned.  For fsck and space accounting. */
typedef int (*rlfs_btree_blk_fn)(struct rlfs_btree_cur *cur, struct rlfs_buf *bp,
				 unsigned level, void *priv);
int rlfs_btree_visit_blocks(struct rlfs_btree_cur *cur, rlfs_btree_blk_fn fn, void *priv);
/* Free every block of the tree through ops->free_block (after which the
 * caller forgets the root).  Records are not visited. */
int rlfs_btree_destroy(struct rlfs_btree_cur *cur);
/* Count records (walks the leaves). */
int rlfs_btree_count(struct rlfs_btree_cur *cur, uint64_t *nrecs);

/*
 * Structural check of the whole tree for fsck and tests: key order within
 * and across blocks, parent keys == first child key, high keys correct in
 * overlapping trees, levels, sibling links, numrecs within limits (root may
 * be underfull).  Returns 0 or -EUCLEAN (each problem logged via
 * rlfs_corrupt with block number).
 */
int rlfs_btree_check(struct rlfs_btree_cur *cur);

/* cmp_key for trees whose key is one little-endian unsigned integer of 4
 * (le32) or 8 (le64) bytes: bnobt, refcountbt; inobt, bmbt, dir, xattr. */
int rlfs_btree_cmp_le32(struct rlfs_btree_cur *cur, const void *k1, const void *k2);
int rlfs_btree_cmp_le64(struct rlfs_btree_cur *cur, const void *k1, const void *k2);

/* Write an empty leaf root into a fresh buffer (mkfs, new trees). */
void rlfs_btree_init_block(struct rlfs_mount *mp, struct rlfs_buf *bp,
			   const struct rlfs_btree_ops *ops, unsigned level,
			   uint64_t owner);
/* Generic buffer verifier for btree blocks of ops's type (the buffer cache
 * has checked the rlfs_blkhdr already): level < MAXLEVELS, numrecs <=
 * maxrecs, zero pad, sibling pointers inside the device and not the block
 * itself, node child pointers nonzero and inside the device.  0 or -EUCLEAN.
 * Tree buf_ops->verify should call it. */
int rlfs_btree_verify_block(struct rlfs_mount *mp, struct rlfs_buf *bp,
			    uint16_t rec_len, uint16_t key_len, bool overlapping);
/* Entries per leaf (records) or node (key slots + pointers) at mp's
 * block size; see the layout above. */
unsigned rlfs_btree_maxrecs(struct rlfs_mount *mp, const struct rlfs_btree_ops *ops,
			    bool leaf);
#endif

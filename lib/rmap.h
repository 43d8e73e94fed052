/*
 * rmap.h: the per-AG reverse-mapping b+tree (RMAP feature; issue 11, first
 * step: the tree type and record-level wrappers only).
 *
 * Records struct rlfs_rmap_rec (format.h): "blocks [startblock,
 * startblock+blockcount) of this AG belong to owner at file offset offset
 * (blocks) of its data or attr fork", or to a special owner
 * (RLFS_RMAP_OWN_*).  Shared blocks have one record per owner, so the tree
 * uses the generic b+tree's overlapping-interval mode: key (startblock,
 * owner, offset & ~UNWRITTEN), high key (startblock + blockcount - 1,
 * owner, offset + blockcount - 1; offset unchanged for special owners and
 * bmbt blocks).  The root lives in agh.rmap_root / rmap_level; blocks come
 * from and go back to the AGFL like the inobt's and refcountbt's.
 *
 * Not done yet (see docs/DESIGN.md "Reverse mapping: in progress"): no
 * caller keeps the tree in step with allocation or block maps, no RUI/RUD
 * log items, no merging of adjacent records, no mkfs/fsck support, and the
 * feature bit is not known to mount.
 *
 * Model: xfsprogs libxfs/xfs_rmap_btree.c (ops) and xfs_rmap.c
 * (xfs_rmap_query_range; insert/delete here are the raw record
 * operations, like xfs_rmap_insert / the delete in xfs_rmap_free's simple
 * case, not XFS's map/unmap with record splitting and merging).
 */
#ifndef RLFS_RMAP_H
#define RLFS_RMAP_H
#include "btree.h"

extern const struct rlfs_btree_ops rlfs_rmapbt_ops;
extern const struct rlfs_buf_ops rlfs_rmapbt_buf_ops;

/* A decoded record.  offset is as on disk: RLFS_RMAP_OFF_* flags in the top
 * bits, the file offset (blocks) in RLFS_RMAP_OFF_MASK. */
struct rlfs_rmap_irec {
	uint32_t startblock; /* agbno */
	uint32_t blockcount; /* blocks */
	uint64_t owner;      /* ino or RLFS_RMAP_OWN_* */
	uint64_t offset;     /* flags | file offset */
};

void rlfs_rmap_rec_encode(const struct rlfs_rmap_irec *ir, struct rlfs_rmap_rec *r);
void rlfs_rmap_rec_decode(const struct rlfs_rmap_rec *r, struct rlfs_rmap_irec *ir);

/*
 * Is ir a well-formed record for an AG of aglen blocks?  blockcount >= 1,
 * [startblock, startblock+blockcount) inside [0, aglen), offset bits 54..60
 * zero, file offset + blockcount within RLFS_RMAP_OFF_MASK; special owners
 * (and RLFS_RMAP_OWN_NULL) have offset 0 with no flags; a bmbt block record
 * has file offset 0 and no unwritten flag; attr-fork extents are never
 * unwritten.  Returns NULL if fine, else a short reason.  Mirrors
 * xfs_rmap_check_irec.
 */
const char *rlfs_rmap_check_irec(const struct rlfs_rmap_irec *ir, uint32_t aglen);

/* Set up a cursor on AG agno's rmap btree (agbp: the AG header buffer or
 * NULL).  Free with rlfs_btree_cur_del. */
void rlfs_rmap_cur_init(struct rlfs_btree_cur *cur, struct rlfs_trans *tp, uint32_t agno,
			struct rlfs_buf *agbp);

/*
 * Insert one record as is (no merging with neighbours).  cur: a cursor on
 * an rmap btree (any ops vector whose key/compare functions are the
 * rmapbt's, e.g. rlfs_rmapbt_ops).  Errors: -EINVAL if rlfs_rmap_check_irec
 * rejects it for the cursor's AG, -EEXIST if a record with the same key
 * (startblock, owner, offset without the unwritten flag) exists, and the
 * errors of rlfs_btree_insert (-ENOSPC, -EUCLEAN, -EIO; then cancel the
 * transaction).  Mirrors xfs_rmap_insert (xfs_rmap.c).
 */
int rlfs_rmap_insert(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *rec);

/*
 * Delete the record equal to rec (same key, blockcount and unwritten flag).
 * -ENOENT if there is none (nothing changed), else the errors of
 * rlfs_btree_delete.  A raw delete: unmapping part of a record (XFS's
 * xfs_rmap_unmap) is a later step.
 */
int rlfs_rmap_delete(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *rec);

/*
 * Call fn for every record overlapping the key range [low, high] (both
 * inclusive; blockcount of low and high is ignored): records whose key is
 * <= high's key and whose high key is >= low's key, comparing (startblock,
 * owner, offset) in that order.  So low = (a, 0, 0), high = (b, ~0, ~0)
 * returns every record sharing a block with agbno range [a, b].  Records
 * come in key order; fn returns 0 to go on, > 0 to stop (returned), < 0 an
 * errno (returned); fn must not change the tree.  -EINVAL if low > high.
 * Mirrors xfs_rmap_query_range (xfs_rmap.c).
 */
typedef int (*rlfs_rmap_query_fn)(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *rec,
				  void *priv);
int rlfs_rmap_query_range(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *low,
			  const struct rlfs_rmap_irec *high, rlfs_rmap_query_fn fn, void *priv);
#endif

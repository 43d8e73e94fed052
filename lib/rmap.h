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
 * Record operations with splitting and merging exist (rlfs_rmap_map /
 * unmap / convert, the "_shared" flavour of XFS's, correct whether or not
 * other owners share the blocks), and the transaction-level updates the
 * hooks use (rlfs_rmap_update; bmap.c queues RUIs for data-fork changes,
 * metadata allocations call it directly; docs/DESIGN.md "Reverse
 * mapping"); GETFSMAP is lib/fsmap.c.  Not done yet: repair from or of
 * the tree, a counted per-AG reservation.
 *
 * Model: xfsprogs libxfs/xfs_rmap_btree.c (ops) and xfs_rmap.c
 * (xfs_rmap_query_range; insert/delete here are the raw record
 * operations, like xfs_rmap_insert / the delete in xfs_rmap_free's simple
 * case; map/unmap/convert are xfs_rmap_map_shared / unmap_shared /
 * convert_shared).
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

/*
 * Compare the keys of two decoded records as the tree orders them:
 * (startblock, owner, offset without RLFS_RMAP_OFF_UNWRITTEN), unsigned,
 * in that order.  <0, 0, >0.  rlfs_rmap_irec_high_key gives r's high key
 * as a record (startblock and, for inode data and attr extents, the file
 * offset advanced to r's last block; blockcount 1) to compare the same
 * way.  Mirror the rmapbt ops' key functions (xfs_rmapbt_diff_two_keys,
 * xfs_rmapbt_init_high_key_from_rec).
 */
int rlfs_rmap_irec_cmp_key(const struct rlfs_rmap_irec *a, const struct rlfs_rmap_irec *b);
struct rlfs_rmap_irec rlfs_rmap_irec_high_key(const struct rlfs_rmap_irec *r);

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

/*
 * Record operations (xfs_rmap.c's "_shared" functions).  Arguments: agbno
 * and len_blocks (blocks, >= 1) the physical range in the cursor's AG;
 * owner an inode number or RLFS_RMAP_OWN_*; offset as the on-disk field:
 * RLFS_RMAP_OFF_* flags | file offset (blocks) of agbno.  For special
 * owners offset must be 0 and for bmbt blocks exactly
 * RLFS_RMAP_OFF_BMBT_BLOCK (rlfs_rmap_check_irec); their offset plays no
 * part in merging or coverage (XFS's ignore_off).  RLFS_RMAP_OWN_UNKNOWN
 * is an ordinary special owner here: XFS's xfs_rmap_unmap treats it as
 * "whoever owns these blocks", which with shared blocks is ambiguous, so
 * it is not a wildcard.
 *
 * Errors: -EINVAL (nothing changed) for len_blocks 0 or a range/offset
 * rlfs_rmap_check_irec rejects; -EUCLEAN (XFS's -EFSCORRUPTED, logged by
 * rlfs_corrupt) when the tree does not agree with the request, as listed
 * per function; and the btree's -ENOSPC, -EIO, -EUCLEAN.  After any error
 * other than -EINVAL cancel the transaction: -EUCLEAN found while looking
 * (before any change) leaves the tree as it was, but errors from the
 * btree, and any error from convert's second half, may leave it half
 * changed.  Records stay canonical: no two records are
 * rlfs_rmap_is_mergeable, if they were not before.
 */

/* Largest blockcount a merge may produce (XFS_RMAP_LEN_MAX). */
#define RLFS_RMAP_LEN_MAX UINT32_MAX

/*
 * True if b directly follows a and the two can be one record: same owner
 * (not RLFS_RMAP_OWN_NULL), same RLFS_RMAP_OFF_* flags (fork, bmbt,
 * unwritten), a ends where b starts, a's file offset + blockcount == b's
 * (not compared for special owners and bmbt blocks), and the sum of the
 * blockcounts <= RLFS_RMAP_LEN_MAX.  Mirrors xfs_rmap_is_mergeable plus
 * the adjacency tests of xfs_rmap_map_shared.
 */
bool rlfs_rmap_is_mergeable(const struct rlfs_rmap_irec *a, const struct rlfs_rmap_irec *b);

/*
 * Find the record mapping block agbno to owner at file offset
 * RLFS_RMAP_OFF(offset) of the fork given by offset's ATTR_FORK /
 * BMBT_BLOCK flags (any file offset for special owners and bmbt blocks);
 * the unwritten flag is not compared.  *stat 1 and *irec the record if
 * found, *stat 0 if not.  -EUCLEAN if two records map it.  Shared blocks
 * have one record per owner and mapping, so this is the lookup that names
 * the owner.  Mirrors xfs_rmap_lookup_le_range (a point query over the
 * overlapping tree).
 */
int rlfs_rmap_lookup_le_range(struct rlfs_btree_cur *cur, uint32_t agbno, uint64_t owner,
			      uint64_t offset, struct rlfs_rmap_irec *irec, int *stat);

/*
 * Record that [agbno, agbno + len_blocks) is mapped by owner at offset,
 * merging with the record of the same owner and flags that ends at agbno
 * at file offset - 1 (left) and the one starting at agbno + len_blocks at
 * file offset + len_blocks (right), when rlfs_rmap_is_mergeable (if both
 * merges together would exceed RLFS_RMAP_LEN_MAX only the left is done).
 * Records of other owners (and of this owner at other offsets: reflink
 * within a file) on the same blocks are left alone.  -EUCLEAN if a record
 * of this owner and fork already maps one of the blocks at the same file
 * offset (any overlap for special owners and bmbt blocks), or if the
 * neighbours overlap each other.  Mirrors xfs_rmap_map_shared.
 */
int rlfs_rmap_map(struct rlfs_btree_cur *cur, uint32_t agbno, uint32_t len_blocks,
		  uint64_t owner, uint64_t offset);

/*
 * Remove [agbno, agbno + len_blocks) mapped by owner at offset from the
 * one record that maps all of it (found with rlfs_rmap_lookup_le_range
 * at agbno): delete the record, trim its left or right end, or split it
 * in two.  -EUCLEAN if no record maps agbno at that offset, if the record
 * ends inside the range (a range spanning two records is not accepted, as
 * in XFS), or if its unwritten flag differs from offset's.  Mirrors
 * xfs_rmap_unmap_shared.
 */
int rlfs_rmap_unmap(struct rlfs_btree_cur *cur, uint32_t agbno, uint32_t len_blocks,
		    uint64_t owner, uint64_t offset);

/*
 * Flip the unwritten state of [agbno, agbno + len_blocks) of owner's data
 * fork.  offset carries the NEW state (RLFS_RMAP_OFF_UNWRITTEN set:
 * written -> unwritten; clear: unwritten -> written), as XFS's deferred
 * rmap intent carries the new bmap state (xfs_rmap_finish_one passes
 * !unwritten, the old state, to xfs_rmap_convert_shared).  The range must
 * lie inside one record in the old state (else -EUCLEAN, as unmap);
 * afterwards it is merged with neighbours in the new state (as map).
 * -EINVAL for special owners, bmbt blocks and the attr fork.  Implemented
 * as rlfs_rmap_unmap(old state) + rlfs_rmap_map(new state), which gives
 * the same records as XFS's case analysis at the cost of more btree
 * calls; an error in the map half leaves the tree half changed.  Mirrors
 * xfs_rmap_convert_shared.
 */
int rlfs_rmap_convert(struct rlfs_btree_cur *cur, uint32_t agbno, uint32_t len_blocks,
		      uint64_t owner, uint64_t offset);

/* ---- transaction level: keeping the tree in step (issue 11 step 3) ---- */

static inline bool rlfs_has_rmap(const struct rlfs_mount *mp)
{ return mp->features_incompat & RLFS_FEAT_INCOMPAT_RMAP; }

/* The most levels an AG's rmap btree can have: shared blocks have any
 * number of records, so the bound is the tallest tree of half-full nodes
 * that fits in the AG's blocks (xfs_btree_space_to_height, as XFS uses
 * for the rmapbt with reflink). */
unsigned rlfs_rmap_maxlevels(struct rlfs_mount *mp);

/*
 * One change of the rmap btree of fsbno's AG in tp: op RLFS_RUI_MAP /
 * _UNMAP / _CONVERT (format.h) of [fsbno, fsbno+len_blocks) for owner at
 * offset (RLFS_RMAP_OFF_* flags | file block; 0 for special owners), as
 * rlfs_rmap_map / unmap / convert.  0 at once without the RMAP feature.
 * Errors: -EINVAL (len 0, a range outside one AG, an unknown op), the
 * record operations' -EUCLEAN (the tree disagrees), -ENOSPC, -EIO: cancel
 * the transaction.  This direct form serves metadata owners in the
 * transaction that allocates or frees their blocks (xfs_rmap_alloc /
 * xfs_rmap_free with an owner info); file mappings change through RUIs
 * (rlfs_rui_add, defer.h), whose finish step calls this.
 */
int rlfs_rmap_update(struct rlfs_trans *tp, unsigned op, uint64_t fsbno, uint32_t len_blocks,
		     uint64_t owner, uint64_t offset);
/* The rmap offset of an inode's metadata blocks (offset ignored, so
 * adjacent ones merge): a bmbt or directory btree block is a data-fork
 * btree block; an xattr btree block or xattr value run belongs to the
 * attr fork. */
#define RLFS_RMAP_DATA_META RLFS_RMAP_OFF_BMBT_BLOCK
#define RLFS_RMAP_ATTR_META (RLFS_RMAP_OFF_ATTR_FORK | RLFS_RMAP_OFF_BMBT_BLOCK)
/* Blocks [fsbno, +len_blocks) pass from special owner `from` to `to` (an
 * AGFL block becoming an inobt or refcountbt block, and back): unmap then
 * map in tp.  0 without the RMAP feature; errors as rlfs_rmap_update. */
int rlfs_rmap_change_owner(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks,
			   uint64_t from, uint64_t to);
#endif

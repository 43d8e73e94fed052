/*
 * alloc.c: the space layer: superblock / AG header / AGFL verifiers, the
 * free-space btrees (bnobt keyed on startblock, cntbt keyed on
 * (blockcount, startblock)), the AGFL ring and the extent allocator.
 * Model: xfs_alloc.c, xfs_alloc_btree.c (much simplified).
 *
 * Invariants kept here (fsck checks them):
 *   - every free block of an AG outside the AGFL is in exactly one bnobt
 *     record and the cntbt holds the same records; records never touch
 *     (adjacent free extents are merged);
 *   - agh.freeblks = sum of the records, agh.longest = largest record;
 *   - AGFL blocks count as free in mp->fdblocks (freeblks + flcount) but
 *     are used only for AG btree blocks (bnobt, cntbt, inobt, refcountbt,
 *     rmapbt);
 *   - agh.btreeblks = bnobt + cntbt blocks beyond their roots.
 *
 * AGFL policy.  One allocator call or free changes the trees by at most one
 * bnobt insert and two cntbt inserts (each may split every level and grow
 * the root), and an inode chunk adds one inobt insert.  An insert into a
 * tree that can be at most L levels high takes at most L new blocks (it
 * splits h < L levels and adds a root), so the worst case is
 * W = 3*Lfree + Lino (+ Lrefc with REFLINK, + 3*Lrmap with RMAP) blocks,
 * with L the largest height the tree can reach
 * in an AG of this size when every block is only half full.
 * rlfs_alloc_fix_freelist keeps at least max(2W, 8) blocks on the AGFL
 * before every allocation/free (so the refill itself, which is an
 * allocation from the trees, never runs dry) and trims it back to that
 * minimum when it holds more than min(3W, size - W) (so that blocks given
 * back by btree merges always fit, and idle AGFL blocks do not fragment
 * free space).  The trees therefore never call the allocator: no recursion.
 */
#include "alloc.h"
#include "ag_resv.h"
#include "busy.h"
#include "ialloc.h"
#include "iunlink.h"
#include "refcount.h"
#include "rmap.h"

#include <stdlib.h>
#include <string.h>

#define AGFL_NULL 0xffffffffu
#define AG_FIRST_FREE (RLFS_AGFL_AGBNO + 1) /* lowest agbno a tree/extent may use */

/* ------------------------------------------------------------------ */
/* Geometry helpers                                                    */

unsigned rlfs_agfl_size(struct rlfs_mount *mp)
{
	return (mp->blocksize - (unsigned)sizeof(struct rlfs_agfl)) / 4;
}

static rlfs_le32 *agfl_bno(struct rlfs_buf *bp)
{
	return (rlfs_le32 *)((char *)bp->data + sizeof(struct rlfs_agfl));
}

/* AGFL slot i changed: log its four bytes of the AGFL block. */
static void log_agfl_slot(struct rlfs_trans *tp, struct rlfs_buf *flbp, uint32_t i)
{
	uint32_t off = (uint32_t)((char *)&agfl_bno(flbp)[i] - (char *)flbp->data);
	rlfs_trans_log_buf_range(tp, flbp, off, off + 3);
}

/* Largest height a btree with nrecs records can reach when every block is
 * only half full (xfs_btree_compute_maxlevels). */
static unsigned compute_maxlevels(unsigned leafmax, unsigned nodemax, uint64_t nrecs)
{
	uint64_t minl = RLFS_MAX(leafmax / 2, 1u), minn = RLFS_MAX(nodemax / 2, 2u);
	uint64_t n = (nrecs + minl - 1) / minl;
	unsigned lev = 1;
	while (n > 1) {
		n = (n + minn - 1) / minn;
		lev++;
	}
	return RLFS_MIN(lev, (unsigned)RLFS_BTREE_MAXLEVELS);
}

static unsigned free_maxlevels(struct rlfs_mount *mp)
{
	unsigned space = mp->blocksize - (unsigned)sizeof(struct rlfs_btree_block);
	uint64_t nrecs = ((uint64_t)mp->agblocks + 1) / 2;
	unsigned lb = compute_maxlevels(space / 8, space / (4 + 8), nrecs);
	unsigned lc = compute_maxlevels(space / 8, space / (8 + 8), nrecs);
	return RLFS_MAX(lb, lc);
}

/* Worst-case AGFL consumption of one allocator operation (with REFLINK:
 * plus one refcount btree insert, which rlfs_refcount_* do between two
 * rlfs_alloc_fix_freelist calls; with RMAP: plus the rmap btree changes
 * below, as xfs_alloc_min_freelist adds the rmapbt's height). */
static unsigned agfl_worst_compute(struct rlfs_mount *mp)
{
	unsigned lf = free_maxlevels(mp), li = rlfs_inobt_maxlevels(mp);
	unsigned lr = rlfs_has_reflink(mp) ? rlfs_refcount_maxlevels(mp) : 0;
	/* rmap: the refill's OWN_AG record, and an inobt/refcountbt block's
	 * owner change (an unmap that may split a record, then a map) */
	unsigned lm = rlfs_has_rmap(mp) ? 3 * rlfs_rmap_maxlevels(mp) : 0;
	return lf * 3 + li + lr + lm;
}

static unsigned agfl_worst(struct rlfs_mount *mp)
{
	/* cached: a function of the geometry, asked on every allocation */
	unsigned c = __atomic_load_n(&mp->agfl_worst_blocks, __ATOMIC_RELAXED);
	if (c)
		return c;
	c = agfl_worst_compute(mp);
	__atomic_store_n(&mp->agfl_worst_blocks, c, __ATOMIC_RELAXED);
	return c;
}

unsigned rlfs_agfl_min(struct rlfs_mount *mp)
{
	unsigned m = RLFS_MAX(2 * agfl_worst(mp), 8u);
	return RLFS_MIN(m, rlfs_agfl_size(mp) / 2);
}

/* Above this many AGFL blocks (btree merges gave them back), fix_freelist
 * returns the surplus to the trees, down to rlfs_agfl_min: free space does
 * not stay fragmented by idle AGFL blocks, and there is always room for
 * the blocks one operation's merges give back. */
static unsigned agfl_hi(struct rlfs_mount *mp)
{
	unsigned size = rlfs_agfl_size(mp), w = agfl_worst(mp), min = rlfs_agfl_min(mp);
	unsigned hi = RLFS_MIN(min + w, size > w ? size - w : size);
	return RLFS_MAX(hi, min + 1);
}

uint32_t rlfs_alloc_tree_res(struct rlfs_mount *mp, uint32_t nextents)
{
	/* the operation's own splits plus those of an AGFL refill before it */
	unsigned lf = free_maxlevels(mp);
	return nextents * 2 * lf * 3;
}

/* ------------------------------------------------------------------ */
/* Superblock, AG header, AGFL verifiers                               */

static int sb_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	const struct rlfs_sb *sb = bp->data;
	uint32_t bs = rlfs_get32(sb->blocksize);
	uint64_t dblocks = rlfs_get64(sb->dblocks);
	uint32_t agblocks = rlfs_get32(sb->agblocks), agcount = rlfs_get32(sb->agcount);
	uint32_t isize = rlfs_get16(sb->inodesize), inopb = rlfs_get16(sb->inopblock);
	const char *w = "superblock";

	if (bs != mp->blocksize)
		return rlfs_corrupt(mp, bp->fsbno, w, "blocksize %u, mounted with %u", bs,
				    mp->blocksize);
	if (dblocks == 0 || agblocks < 64 || agblocks > RLFS_MAX_AGBLOCKS || agcount == 0 ||
	    (uint64_t)(agcount - 1) * agblocks >= dblocks ||
	    (uint64_t)agcount * agblocks < dblocks)
		return rlfs_corrupt(mp, bp->fsbno, w, "bad geometry: %llu blocks, %u AGs of %u",
				    (unsigned long long)dblocks, agcount, agblocks);
	if (mp->dblocks && dblocks != mp->dblocks)
		return rlfs_corrupt(mp, bp->fsbno, w, "dblocks %llu, mounted with %llu",
				    (unsigned long long)dblocks, (unsigned long long)mp->dblocks);
	if (mp->agblocks && agblocks != mp->agblocks)
		return rlfs_corrupt(mp, bp->fsbno, w, "agblocks %u, mounted with %u", agblocks,
				    mp->agblocks);
	if (isize < 256 || isize > bs || (isize & (isize - 1)) || inopb != bs / isize ||
	    inopb > RLFS_INODES_PER_CHUNK)
		return rlfs_corrupt(mp, bp->fsbno, w, "bad inode size %u / %u per block", isize,
				    inopb);
	if (rlfs_get64(sb->hdr.owner) != rlfs_fsb_to_agno(mp, bp->fsbno) ||
	    rlfs_fsb_to_agbno(mp, bp->fsbno) != RLFS_SB_AGBNO)
		return rlfs_corrupt(mp, bp->fsbno, w, "superblock copy in the wrong place");
	if (rlfs_get32(sb->state) > RLFS_STATE_DIRTY)
		return rlfs_corrupt(mp, bp->fsbno, w, "bad state %u", rlfs_get32(sb->state));
	uint64_t rootino = rlfs_get64(sb->rootino);
	if (rootino == 0 || rootino / inopb >= dblocks)
		return rlfs_corrupt(mp, bp->fsbno, w, "root inode %llu out of range",
				    (unsigned long long)rootino);
	if (rlfs_get64(sb->fdblocks) > dblocks || rlfs_get64(sb->ifree) > rlfs_get64(sb->icount))
		return rlfs_corrupt(mp, bp->fsbno, w, "bad summary counters");
	if (rlfs_get64(sb->maxbytes) == 0 || rlfs_get64(sb->maxbytes) > INT64_MAX)
		return rlfs_corrupt(mp, bp->fsbno, w, "bad maxbytes");
	return 0;
}

const struct rlfs_buf_ops rlfs_sb_buf_ops = {
	.name = "superblock", .magic = RLFS_SB_MAGIC, .has_hdr = true, .verify = sb_verify,
};

static int tree_root_ok(uint32_t root, uint32_t len)
{
	return root >= AG_FIRST_FREE && root < len;
}

static int agh_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	const struct rlfs_agh *agh = bp->data;
	const char *w = "AG header";
	uint32_t agno = rlfs_fsb_to_agno(mp, bp->fsbno);
	if (rlfs_fsb_to_agbno(mp, bp->fsbno) != RLFS_AGH_AGBNO || agno >= mp->agcount)
		return rlfs_corrupt(mp, bp->fsbno, w, "AG header in the wrong place");
	if (rlfs_get32(agh->agno) != agno || rlfs_get64(agh->hdr.owner) != agno)
		return rlfs_corrupt(mp, bp->fsbno, w, "agno %u / owner %llu, expected %u",
				    rlfs_get32(agh->agno),
				    (unsigned long long)rlfs_get64(agh->hdr.owner), agno);
	uint32_t len = rlfs_get32(agh->length);
	if (len != rlfs_ag_blocks(mp, agno))
		return rlfs_corrupt(mp, bp->fsbno, w, "length %u, expected %u", len,
				    rlfs_ag_blocks(mp, agno));
	if (!tree_root_ok(rlfs_get32(agh->bno_root), len) ||
	    !tree_root_ok(rlfs_get32(agh->cnt_root), len) ||
	    !tree_root_ok(rlfs_get32(agh->ino_root), len))
		return rlfs_corrupt(mp, bp->fsbno, w, "tree root outside the AG (%u %u %u)",
				    rlfs_get32(agh->bno_root), rlfs_get32(agh->cnt_root),
				    rlfs_get32(agh->ino_root));
	/* rmap btree: present exactly when the RMAP feature is on */
	uint32_t mr = rlfs_get32(agh->rmap_root);
	unsigned ml = rlfs_get16(agh->rmap_level);
	if (rlfs_has_rmap(mp) && (!tree_root_ok(mr, len) || ml < 1 || ml > RLFS_BTREE_MAXLEVELS))
		return rlfs_corrupt(mp, bp->fsbno, w, "rmap btree root %u level %u invalid", mr, ml);
	if (!rlfs_has_rmap(mp) && (mr || ml))
		return rlfs_corrupt(mp, bp->fsbno, w,
				    "rmap btree root %u level %u without the RMAP feature", mr, ml);
	/* refcount btree: present exactly when the REFLINK feature is on */
	uint32_t rr = rlfs_get32(agh->refc_root);
	unsigned rl = rlfs_get16(agh->refc_level);
	if (rlfs_has_reflink(mp) && (!tree_root_ok(rr, len) || rl < 1 || rl > RLFS_BTREE_MAXLEVELS))
		return rlfs_corrupt(mp, bp->fsbno, w, "refcount btree root %u level %u invalid", rr,
				    rl);
	if (!rlfs_has_reflink(mp) && (rr || rl))
		return rlfs_corrupt(mp, bp->fsbno, w,
				    "refcount btree root %u level %u without the REFLINK feature",
				    rr, rl);
	unsigned lb = rlfs_get16(agh->bno_level), lc = rlfs_get16(agh->cnt_level),
		 li = rlfs_get16(agh->ino_level);
	if (lb < 1 || lb > RLFS_BTREE_MAXLEVELS || lc < 1 || lc > RLFS_BTREE_MAXLEVELS ||
	    li < 1 || li > RLFS_BTREE_MAXLEVELS)
		return rlfs_corrupt(mp, bp->fsbno, w, "bad tree levels %u %u %u", lb, lc, li);
	unsigned size = rlfs_agfl_size(mp);
	uint32_t ff = rlfs_get32(agh->flfirst), fl = rlfs_get32(agh->fllast),
		 fc = rlfs_get32(agh->flcount);
	if (ff >= size || fl >= size || fc > size || (fc && (ff + fc - 1) % size != fl) ||
	    (!fc && (fl + 1) % size != ff))
		return rlfs_corrupt(mp, bp->fsbno, w, "bad AGFL ring first %u last %u count %u",
				    ff, fl, fc);
	uint32_t freeblks = rlfs_get32(agh->freeblks), longest = rlfs_get32(agh->longest);
	if (freeblks > len || longest > freeblks || (freeblks && !longest) ||
	    (uint64_t)freeblks + fc + AG_FIRST_FREE > len)
		return rlfs_corrupt(mp, bp->fsbno, w, "bad free counts: freeblks %u longest %u",
				    freeblks, longest);
	if (rlfs_get32(agh->btreeblks) > len)
		return rlfs_corrupt(mp, bp->fsbno, w, "bad btreeblks %u",
				    rlfs_get32(agh->btreeblks));
	uint64_t icount = rlfs_get64(agh->icount), ifree = rlfs_get64(agh->ifree);
	if (icount % RLFS_INODES_PER_CHUNK || ifree > icount ||
	    icount > (uint64_t)len * mp->inopblock)
		return rlfs_corrupt(mp, bp->fsbno, w, "bad inode counts %llu/%llu",
				    (unsigned long long)icount, (unsigned long long)ifree);
	uint64_t ul = rlfs_get64(agh->unlinked);
	if (ul && !rlfs_iunlink_ino_ok(mp, agno, ul))
		return rlfs_corrupt(mp, bp->fsbno, w, "unlinked list head %llu not an inode of AG %u",
				    (unsigned long long)ul, agno);
	return 0;
}

const struct rlfs_buf_ops rlfs_agh_buf_ops = {
	.name = "AG header", .magic = RLFS_AGH_MAGIC, .has_hdr = true, .verify = agh_verify,
};

static int agfl_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	const struct rlfs_agfl *agfl = bp->data;
	uint32_t agno = rlfs_fsb_to_agno(mp, bp->fsbno);
	if (rlfs_fsb_to_agbno(mp, bp->fsbno) != RLFS_AGFL_AGBNO || agno >= mp->agcount ||
	    rlfs_get32(agfl->agno) != agno || rlfs_get64(agfl->hdr.owner) != agno)
		return rlfs_corrupt(mp, bp->fsbno, "AGFL", "AGFL in the wrong place or wrong agno %u",
				    rlfs_get32(agfl->agno));
	uint32_t len = rlfs_ag_blocks(mp, agno);
	rlfs_le32 *bno = agfl_bno(bp);
	for (unsigned i = 0; i < rlfs_agfl_size(mp); i++) {
		uint32_t b = rlfs_get32(bno[i]);
		if (b != AGFL_NULL && (b < AG_FIRST_FREE || b >= len))
			return rlfs_corrupt(mp, bp->fsbno, "AGFL", "slot %u holds agbno %u outside the AG",
					    i, b);
	}
	return 0;
}

const struct rlfs_buf_ops rlfs_agfl_buf_ops = {
	.name = "AGFL", .magic = RLFS_AGFL_MAGIC, .has_hdr = true, .verify = agfl_verify,
};

int rlfs_ag_read_header(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf **bpp)
{
	struct rlfs_mount *mp = tp->mp;
	if (agno >= mp->agcount)
		return rlfs_corrupt(mp, 0, "AG header", "AG %u does not exist (%u AGs)", agno,
				    mp->agcount);
	return rlfs_trans_read_buf(tp, rlfs_agb_to_fsb(mp, agno, RLFS_AGH_AGBNO), &rlfs_agh_buf_ops,
				   agno, bpp);
}

static int agfl_read(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf **bpp)
{
	return rlfs_trans_read_buf(tp, rlfs_agb_to_fsb(tp->mp, agno, RLFS_AGFL_AGBNO),
				   &rlfs_agfl_buf_ops, agno, bpp);
}

/* ------------------------------------------------------------------ */
/* bnobt / cntbt ops                                                   */

/* The AG header buffer of an AG-rooted tree cursor (cur->priv; read on
 * demand when the caller did not pass it). */
struct rlfs_buf *rlfs_agbt_agbp(struct rlfs_btree_cur *cur)
{
	if (!cur->priv) {
		struct rlfs_buf *bp;
		if (rlfs_ag_read_header(cur->tp, cur->agno, &bp))
			return NULL;
		rlfs_trans_brelse(cur->tp, bp); /* stays joined (and alive) until commit */
		cur->priv = bp;
	}
	return cur->priv;
}

void rlfs_agbt_get_root(struct rlfs_btree_cur *cur, size_t root_off, size_t level_off,
			uint64_t *fsbno, unsigned *nlevels)
{
	struct rlfs_buf *bp = rlfs_agbt_agbp(cur);
	*fsbno = 0;
	*nlevels = 0;
	if (!bp)
		return;
	rlfs_le32 root;
	rlfs_le16 level;
	memcpy(&root, (const char *)bp->data + root_off, sizeof(root));
	memcpy(&level, (const char *)bp->data + level_off, sizeof(level));
	if (rlfs_get32(root)) {
		*fsbno = rlfs_agb_to_fsb(cur->mp, cur->agno, rlfs_get32(root));
		*nlevels = rlfs_get16(level);
	}
}

void rlfs_agbt_set_root(struct rlfs_btree_cur *cur, size_t root_off, size_t level_off,
			uint64_t fsbno, unsigned nlevels)
{
	struct rlfs_buf *bp = rlfs_agbt_agbp(cur);
	if (!bp)
		return;
	rlfs_le32 root = rlfs_le32_of(rlfs_fsb_to_agbno(cur->mp, fsbno));
	rlfs_le16 level = rlfs_le16_of((uint16_t)nlevels);
	memcpy((char *)bp->data + root_off, &root, sizeof(root));
	memcpy((char *)bp->data + level_off, &level, sizeof(level));
	rlfs_ag_log_header(cur->tp, bp);
}

int rlfs_agbt_alloc_block(struct rlfs_btree_cur *cur, uint64_t hint_fsbno, uint64_t *fsbno)
{
	(void)hint_fsbno; /* the AGFL holds what it holds */
	uint32_t agbno;
	int err = rlfs_agfl_get_block(cur->tp, cur->agno, &agbno);
	if (err)
		return err;
	if (cur->ops->agh_blocks_off)
		rlfs_ag_resv_tree_block(cur->tp, rlfs_agbt_agbp(cur), cur->ops->agh_blocks_off, 1);
	else
		rlfs_trans_mod_used(cur->tp, 1);
	*fsbno = rlfs_agb_to_fsb(cur->mp, cur->agno, agbno);
	if (cur->ops->rmap_owner)
		err = rlfs_rmap_change_owner(cur->tp, *fsbno, 1, RLFS_RMAP_OWN_AG,
					     cur->ops->rmap_owner);
	return err;
}

int rlfs_agbt_free_block(struct rlfs_btree_cur *cur, uint64_t fsbno)
{
	int err = 0;
	if (cur->ops->rmap_owner)
		err = rlfs_rmap_change_owner(cur->tp, fsbno, 1, cur->ops->rmap_owner,
					     RLFS_RMAP_OWN_AG);
	if (!err)
		err = rlfs_agfl_put_block(cur->tp, cur->agno, rlfs_fsb_to_agbno(cur->mp, fsbno));
	if (!err && cur->ops->agh_blocks_off)
		rlfs_ag_resv_tree_block(cur->tp, rlfs_agbt_agbp(cur), cur->ops->agh_blocks_off, -1);
	else if (!err)
		rlfs_trans_mod_freed(cur->tp, 1);
	return err;
}

uint64_t rlfs_agbt_owner(struct rlfs_btree_cur *cur)
{
	return cur->agno;
}

RLFS_AGBT_ROOT_OPS(bno, bno_root, bno_level)
RLFS_AGBT_ROOT_OPS(cnt, cnt_root, cnt_level)

static void alloc_key_from_rec(void *key, const void *rec)
{
	memcpy(key, rec, 4); /* startblock */
}

static void cnt_key_from_rec(void *key, const void *rec)
{
	memcpy(key, rec, sizeof(struct rlfs_alloc_rec));
}

static int cnt_cmp(struct rlfs_btree_cur *cur, const void *k1, const void *k2)
{
	struct rlfs_alloc_rec a, b;
	memcpy(&a, k1, sizeof(a));
	memcpy(&b, k2, sizeof(b));
	uint32_t ac = rlfs_get32(a.blockcount), bc = rlfs_get32(b.blockcount);
	if (ac != bc)
		return ac < bc ? -1 : 1;
	uint32_t as = rlfs_get32(a.startblock), bs = rlfs_get32(b.startblock);
	return as < bs ? -1 : as > bs;
}

static int alloc_verify_rec(struct rlfs_btree_cur *cur, const void *rec)
{
	struct rlfs_alloc_rec r;
	memcpy(&r, rec, sizeof(r));
	uint32_t s = rlfs_get32(r.startblock), n = rlfs_get32(r.blockcount);
	uint32_t len = rlfs_ag_blocks(cur->mp, cur->agno);
	if (n == 0 || s < AG_FIRST_FREE || s >= len || n > len - s)
		return rlfs_corrupt(cur->mp, rlfs_agb_to_fsb(cur->mp, cur->agno, s), cur->ops->name,
				    "bad free extent record [%u, +%u) in AG of %u blocks", s, n, len);
	return 0;
}

/* bnobt/cntbt blocks are also counted in agh.btreeblks */
static void freesp_count(struct rlfs_btree_cur *cur, int delta)
{
	struct rlfs_buf *bp = rlfs_agbt_agbp(cur);
	if (!bp)
		return;
	struct rlfs_agh *agh = rlfs_agh(bp);
	uint32_t n = rlfs_get32(agh->btreeblks);
	rlfs_put32(agh->btreeblks, delta < 0 ? (n ? n - 1 : 0) : n + 1);
	rlfs_ag_log_header(cur->tp, bp);
}

static int freesp_alloc_block(struct rlfs_btree_cur *cur, uint64_t hint, uint64_t *fsbno)
{
	int err = rlfs_agbt_alloc_block(cur, hint, fsbno);
	if (!err)
		freesp_count(cur, 1);
	return err;
}

static int freesp_free_block(struct rlfs_btree_cur *cur, uint64_t fsbno)
{
	int err = rlfs_agbt_free_block(cur, fsbno);
	if (!err)
		freesp_count(cur, -1);
	return err;
}

static int bnobt_buf_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	return rlfs_btree_verify_block(mp, bp, sizeof(struct rlfs_alloc_rec), 4, false);
}

static int cntbt_buf_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	return rlfs_btree_verify_block(mp, bp, sizeof(struct rlfs_alloc_rec),
				       sizeof(struct rlfs_alloc_rec), false);
}

static const struct rlfs_buf_ops bnobt_buf_ops = {
	.name = "bnobt", .magic = RLFS_BNOBT_MAGIC, .has_hdr = true, .verify = bnobt_buf_verify,
};
static const struct rlfs_buf_ops cntbt_buf_ops = {
	.name = "cntbt", .magic = RLFS_CNTBT_MAGIC, .has_hdr = true, .verify = cntbt_buf_verify,
};

const struct rlfs_btree_ops rlfs_bnobt_ops = {
	.name = "bnobt",
	.magic = RLFS_BNOBT_MAGIC,
	.rec_len = sizeof(struct rlfs_alloc_rec),
	.key_len = 4,
	.buf_ops = &bnobt_buf_ops,
	.init_key_from_rec = alloc_key_from_rec,
	.cmp_key = rlfs_btree_cmp_le32,
	.verify_rec = alloc_verify_rec,
	.get_root = bno_get_root,
	.set_root = bno_set_root,
	.alloc_block = freesp_alloc_block,
	.free_block = freesp_free_block,
	.owner = rlfs_agbt_owner,
};

const struct rlfs_btree_ops rlfs_cntbt_ops = {
	.name = "cntbt",
	.magic = RLFS_CNTBT_MAGIC,
	.rec_len = sizeof(struct rlfs_alloc_rec),
	.key_len = sizeof(struct rlfs_alloc_rec),
	.buf_ops = &cntbt_buf_ops,
	.init_key_from_rec = cnt_key_from_rec,
	.cmp_key = cnt_cmp,
	.verify_rec = alloc_verify_rec,
	.get_root = cnt_get_root,
	.set_root = cnt_set_root,
	.alloc_block = freesp_alloc_block,
	.free_block = freesp_free_block,
	.owner = rlfs_agbt_owner,
};

void rlfs_alloc_cur_init(struct rlfs_btree_cur *cur, struct rlfs_trans *tp,
			 const struct rlfs_btree_ops *ops, uint32_t agno, struct rlfs_buf *agbp)
{
	rlfs_btree_cur_init(cur, tp, ops, agno, NULL, agbp);
}

/* ------------------------------------------------------------------ */
/* AGFL ring                                                           */

/* Take a block off the AGFL without accounting (refill/trim use this). */
static int agfl_take(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf *agbp,
		     uint32_t *agbno)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_agh *agh = rlfs_agh(agbp);
	uint32_t count = rlfs_get32(agh->flcount);
	if (count == 0)
		return -ENOSPC;
	struct rlfs_buf *flbp;
	int err = agfl_read(tp, agno, &flbp);
	if (err)
		return err;
	unsigned size = rlfs_agfl_size(mp);
	uint32_t first = rlfs_get32(agh->flfirst);
	rlfs_le32 *bno = agfl_bno(flbp);
	uint32_t b = rlfs_get32(bno[first]);
	uint32_t len = rlfs_get32(agh->length);
	if (b < AG_FIRST_FREE || b >= len) {
		rlfs_trans_brelse(tp, flbp);
		return rlfs_corrupt(mp, flbp->fsbno, "AGFL", "slot %u holds bad agbno %u", first, b);
	}
	rlfs_put32(bno[first], AGFL_NULL);
	rlfs_put32(agh->flfirst, (first + 1) % size);
	rlfs_put32(agh->flcount, count - 1);
	log_agfl_slot(tp, flbp, first);
	rlfs_ag_log_header(tp, agbp);
	rlfs_trans_brelse(tp, flbp);
	*agbno = b;
	return 0;
}

static int agfl_give(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf *agbp,
		     uint32_t agbno)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_agh *agh = rlfs_agh(agbp);
	unsigned size = rlfs_agfl_size(mp);
	uint32_t count = rlfs_get32(agh->flcount);
	if (agbno < AG_FIRST_FREE || agbno >= rlfs_get32(agh->length))
		return rlfs_corrupt(mp, rlfs_agb_to_fsb(mp, agno, agbno), "AGFL",
				    "freeing agbno %u outside the AG", agbno);
	if (count >= size)
		return rlfs_corrupt(mp, rlfs_agb_to_fsb(mp, agno, RLFS_AGFL_AGBNO), "AGFL",
				    "free list overflow (%u slots)", size);
	struct rlfs_buf *flbp;
	int err = agfl_read(tp, agno, &flbp);
	if (err)
		return err;
	uint32_t last = (rlfs_get32(agh->fllast) + 1) % size;
	rlfs_put32(agfl_bno(flbp)[last], agbno);
	rlfs_put32(agh->fllast, last);
	rlfs_put32(agh->flcount, count + 1);
	log_agfl_slot(tp, flbp, last);
	rlfs_ag_log_header(tp, agbp);
	rlfs_trans_brelse(tp, flbp);
	return 0;
}

int rlfs_agfl_get_block(struct rlfs_trans *tp, uint32_t agno, uint32_t *agbno)
{
	struct rlfs_buf *agbp;
	int err = rlfs_ag_read_header(tp, agno, &agbp);
	if (err)
		return err;
	err = agfl_take(tp, agno, agbp, agbno);
	rlfs_trans_brelse(tp, agbp);
	return err;
}

int rlfs_agfl_put_block(struct rlfs_trans *tp, uint32_t agno, uint32_t agbno)
{
	struct rlfs_buf *agbp;
	int err = rlfs_ag_read_header(tp, agno, &agbp);
	if (err)
		return err;
	err = agfl_give(tp, agno, agbp, agbno);
	rlfs_trans_brelse(tp, agbp);
	return err;
}

/* ------------------------------------------------------------------ */
/* Free-space tree primitives                                          */

static struct rlfs_alloc_rec mkrec(uint32_t s, uint32_t n)
{
	struct rlfs_alloc_rec r;
	rlfs_put32(r.startblock, s);
	rlfs_put32(r.blockcount, n);
	return r;
}

/* Read the record under the cursor into (s, n); *stat 0 if none. */
static int cur_get(struct rlfs_btree_cur *cur, uint32_t *s, uint32_t *n, int *stat)
{
	struct rlfs_alloc_rec r;
	int err = rlfs_btree_get_rec(cur, &r, stat);
	if (err || !*stat)
		return err;
	*s = rlfs_get32(r.startblock);
	*n = rlfs_get32(r.blockcount);
	return 0;
}

/* Recompute agh.longest from the cntbt's last record. */
static int update_longest(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf *agbp)
{
	struct rlfs_btree_cur cur;
	struct rlfs_alloc_rec key = mkrec(UINT32_MAX, UINT32_MAX);
	uint32_t s = 0, n = 0;
	int stat;
	rlfs_alloc_cur_init(&cur, tp, &rlfs_cntbt_ops, agno, agbp);
	int err = rlfs_btree_lookup(&cur, RLFS_LOOKUP_LE, &key, &stat);
	if (!err && stat)
		err = cur_get(&cur, &s, &n, &stat);
	rlfs_btree_cur_del(&cur);
	if (err)
		return err;
	if (!stat)
		n = 0;
	rlfs_put32(rlfs_agh(agbp)->longest, n);
	rlfs_ag_log_header(tp, agbp);
	return 0;
}

/* Delete exactly record (s, n) from the tree ops; -EUCLEAN if missing. */
static int tree_delete(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf *agbp,
		       const struct rlfs_btree_ops *ops, uint32_t s, uint32_t n)
{
	struct rlfs_btree_cur cur;
	struct rlfs_alloc_rec key = mkrec(s, n);
	uint32_t gs, gn;
	int stat;
	rlfs_alloc_cur_init(&cur, tp, ops, agno, agbp);
	int err = rlfs_btree_lookup(&cur, RLFS_LOOKUP_EQ, &key, &stat);
	if (!err && stat)
		err = cur_get(&cur, &gs, &gn, &stat);
	if (!err && (!stat || gs != s || gn != n))
		err = rlfs_corrupt(tp->mp, rlfs_agb_to_fsb(tp->mp, agno, s), ops->name,
				   "free extent [%u, +%u) missing", s, n);
	if (!err)
		err = rlfs_btree_delete(&cur, &stat);
	rlfs_btree_cur_del(&cur);
	return err;
}

static int tree_insert(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf *agbp,
		       const struct rlfs_btree_ops *ops, uint32_t s, uint32_t n)
{
	struct rlfs_btree_cur cur;
	struct rlfs_alloc_rec rec = mkrec(s, n);
	rlfs_alloc_cur_init(&cur, tp, ops, agno, agbp);
	int err = rlfs_btree_insert(&cur, &rec);
	rlfs_btree_cur_del(&cur);
	if (err == -EEXIST)
		err = rlfs_corrupt(tp->mp, rlfs_agb_to_fsb(tp->mp, agno, s), ops->name,
				   "free extent [%u, +%u) already present", s, n);
	return err;
}

/* bnobt: replace record starting at old_s by (s, n) (same sort position). */
static int bno_update(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf *agbp,
		      uint32_t old_s, uint32_t s, uint32_t n)
{
	struct rlfs_btree_cur cur;
	struct rlfs_alloc_rec key = mkrec(old_s, 0), rec = mkrec(s, n);
	int stat;
	rlfs_alloc_cur_init(&cur, tp, &rlfs_bnobt_ops, agno, agbp);
	int err = rlfs_btree_lookup(&cur, RLFS_LOOKUP_EQ, &key, &stat);
	if (!err && !stat)
		err = rlfs_corrupt(tp->mp, rlfs_agb_to_fsb(tp->mp, agno, old_s), "bnobt",
				   "free extent at %u missing", old_s);
	if (!err)
		err = rlfs_btree_update(&cur, &rec);
	rlfs_btree_cur_del(&cur);
	return err;
}

/*
 * Take [start, start+len) out of the free record (fs, fn) in both trees and
 * update freeblks/longest.  No accounting against the transaction.
 */
static int take_from_record(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf *agbp,
			    uint32_t fs, uint32_t fn, uint32_t start, uint32_t len)
{
	uint32_t fe = fs + fn, end = start + len;
	int err;
	/* cntbt first: delete the old size record */
	err = tree_delete(tp, agno, agbp, &rlfs_cntbt_ops, fs, fn);
	if (err)
		return err;
	/* bnobt */
	if (start == fs && end == fe)
		err = tree_delete(tp, agno, agbp, &rlfs_bnobt_ops, fs, fn);
	else if (start == fs)
		err = bno_update(tp, agno, agbp, fs, end, fe - end);
	else {
		err = bno_update(tp, agno, agbp, fs, fs, start - fs);
		if (!err && end < fe)
			err = tree_insert(tp, agno, agbp, &rlfs_bnobt_ops, end, fe - end);
	}
	if (err)
		return err;
	if (start > fs)
		err = tree_insert(tp, agno, agbp, &rlfs_cntbt_ops, fs, start - fs);
	if (!err && end < fe)
		err = tree_insert(tp, agno, agbp, &rlfs_cntbt_ops, end, fe - end);
	if (err)
		return err;
	struct rlfs_agh *agh = rlfs_agh(agbp);
	rlfs_put32(agh->freeblks, rlfs_get32(agh->freeblks) - len);
	rlfs_ag_log_header(tp, agbp);
	return update_longest(tp, agno, agbp);
}

/*
 * Put [s, s+n) (agbno) into the free-space trees, merging with its
 * neighbours.  -EUCLEAN if any block is already free.  No accounting.
 */
static int free_into_trees(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf *agbp,
			   uint32_t s, uint32_t n, bool busy)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_agh *agh = rlfs_agh(agbp);
	uint32_t aglen = rlfs_get32(agh->length);
	uint32_t e = s + n;
	if (n == 0 || s < AG_FIRST_FREE || s >= aglen || n > aglen - s)
		return rlfs_corrupt(mp, rlfs_agb_to_fsb(mp, agno, s), "free space",
				    "freeing [%u, +%u) outside the usable AG (%u blocks)", s, n, aglen);
	/* not reusable before this transaction is durable (busy.h); first, so
	 * that a failure leaves the trees untouched */
	int berr = busy ? rlfs_busy_insert(mp, agno, s, n, rlfs_busy_cur_seq(mp)) : 0;
	if (berr)
		return berr;
	struct rlfs_btree_cur cur;
	struct rlfs_alloc_rec key = mkrec(s, 0);
	uint32_t ls = 0, ln = 0, rs = 0, rn = 0;
	int haveleft = 0, haveright = 0, stat, err;

	rlfs_alloc_cur_init(&cur, tp, &rlfs_bnobt_ops, agno, agbp);
	err = rlfs_btree_lookup(&cur, RLFS_LOOKUP_LE, &key, &stat);
	if (!err && stat) {
		err = cur_get(&cur, &ls, &ln, &haveleft);
		if (!err && haveleft)
			err = rlfs_btree_increment(&cur, &stat);
	} else if (!err) {
		key = mkrec(s, 0);
		err = rlfs_btree_lookup(&cur, RLFS_LOOKUP_GE, &key, &stat);
	}
	if (!err && stat)
		err = cur_get(&cur, &rs, &rn, &haveright);
	rlfs_btree_cur_del(&cur);
	if (err)
		return err;
	if (haveleft && ls + ln > s)
		return rlfs_corrupt(mp, rlfs_agb_to_fsb(mp, agno, s), "free space",
				    "double free: [%u, +%u) overlaps free [%u, +%u)", s, n, ls, ln);
	if (haveright && rs < e)
		return rlfs_corrupt(mp, rlfs_agb_to_fsb(mp, agno, s), "free space",
				    "double free: [%u, +%u) overlaps free [%u, +%u)", s, n, rs, rn);
	bool mleft = haveleft && ls + ln == s, mright = haveright && rs == e;
	uint32_t ns = s, nn = n;
	if (mleft) {
		err = tree_delete(tp, agno, agbp, &rlfs_cntbt_ops, ls, ln);
		ns = ls;
		nn += ln;
	}
	if (!err && mright) {
		err = tree_delete(tp, agno, agbp, &rlfs_cntbt_ops, rs, rn);
		nn += rn;
	}
	if (err)
		return err;
	if (mleft && mright) {
		err = tree_delete(tp, agno, agbp, &rlfs_bnobt_ops, rs, rn);
		if (!err)
			err = bno_update(tp, agno, agbp, ls, ns, nn);
	} else if (mleft) {
		err = bno_update(tp, agno, agbp, ls, ns, nn);
	} else if (mright) {
		err = bno_update(tp, agno, agbp, rs, ns, nn);
	} else {
		err = tree_insert(tp, agno, agbp, &rlfs_bnobt_ops, ns, nn);
	}
	if (!err)
		err = tree_insert(tp, agno, agbp, &rlfs_cntbt_ops, ns, nn);
	if (err)
		return err;
	rlfs_put32(agh->freeblks, rlfs_get32(agh->freeblks) + n);
	if (nn > rlfs_get32(agh->longest))
		rlfs_put32(agh->longest, nn);
	rlfs_ag_log_header(tp, agbp);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Candidate search                                                    */

struct cand {
	bool found;
	uint32_t fs, fn;        /* the free record */
	uint32_t start, len;    /* the part to take */
	uint64_t dist;
};

static uint32_t align_up_ag(uint64_t agstart, uint32_t agbno, uint32_t align)
{
	if (align <= 1)
		return agbno;
	uint64_t f = agstart + agbno;
	uint64_t a = (f + align - 1) / align * align;
	return (uint32_t)(a - agstart);
}

static uint32_t align_down_ag(uint64_t agstart, uint32_t agbno, uint32_t align)
{
	if (align <= 1)
		return agbno;
	uint64_t f = agstart + agbno;
	uint64_t a = f / align * align;
	return a < agstart ? 0 : (uint32_t)(a - agstart);
}

/* Blocks usable from the aligned start of [fs, fs+fn). */
static uint32_t usable_len(uint64_t agstart, uint32_t fs, uint32_t fn, uint32_t align)
{
	uint64_t a = align_up_ag(agstart, fs, align);
	return a >= (uint64_t)fs + fn ? 0 : (uint32_t)(fs + fn - a);
}

/*
 * Place an extent of at least target blocks in record [fs, fs+fn) as close
 * to hint as possible; fills c (not c->found) and returns true if it fits.
 */
static bool place_near(uint64_t agstart, uint32_t fs, uint32_t fn, uint32_t hint,
		       uint32_t target, uint32_t maxlen, uint32_t align, struct cand *c)
{
	uint32_t fe = fs + fn;
	uint32_t A = align_up_ag(agstart, fs, align);
	if ((uint64_t)A + target > fe)
		return false;
	uint32_t B = fe - target; /* last possible start */
	uint32_t st;
	if (hint <= A)
		st = A;
	else if (hint >= B)
		st = align_down_ag(agstart, B, align);
	else {
		st = align_up_ag(agstart, hint, align);
		if (st > B)
			st = align_down_ag(agstart, hint, align);
	}
	if (st < A)
		st = A;
	c->fs = fs;
	c->fn = fn;
	c->start = st;
	c->len = RLFS_MIN(maxlen, fe - st);
	c->dist = st > hint ? st - hint : hint - st;
	return true;
}

/*
 * Pieces of one free record looked at per search: a record that frees of
 * a fragmented file cut into thousands of busy pieces is not walked whole
 * for every allocation; the search notes it (rlfs_busy_note_heavy) and the
 * next allocation makes the frees durable first (rlfs_alloc_extent).
 */
#define RLFS_ALLOC_PIECES_MAX 64

/*
 * The non-busy piece of free record [fs, fs+fn) that starts at or after
 * from: true with [*ps, *ps + *pn), false if the rest is busy (busy.h).
 * Candidates are placed in pieces, never across a busy block; the record
 * itself is what take_from_record changes.
 */
static bool piece(struct rlfs_mount *mp, uint32_t agno, uint32_t fs, uint32_t fn,
		  uint32_t from, uint32_t *ps, uint32_t *pn)
{
	uint32_t s, e;
	if (!rlfs_busy_next_free(mp, agno, from, fs + fn, &s, &e))
		return false;
	*ps = s;
	*pn = e - s;
	return true;
}

/* place_near over the non-busy pieces of record [fs, fs+fn): the closest
 * placement; c->fs/fn name the record. */
static bool place_near_rec(struct rlfs_mount *mp, uint32_t agno, uint64_t agstart, uint32_t fs,
			   uint32_t fn, uint32_t hint, uint32_t target, uint32_t maxlen,
			   uint32_t align, struct cand *c)
{
	bool found = false;
	uint32_t ps, pn, npieces = 0;
	for (uint32_t from = fs; piece(mp, agno, fs, fn, from, &ps, &pn); from = ps + pn) {
		if (++npieces > RLFS_ALLOC_PIECES_MAX) {
			rlfs_busy_note_heavy(mp);
			break;
		}
		/* pieces come in block order: once one starts past the hint
		 * by the best distance, none after it is closer (a record
		 * cut into thousands of busy pieces costs only those near
		 * the hint) */
		if (found && ps >= hint && ps - hint >= c->dist)
			break;
		struct cand t;
		if (place_near(agstart, ps, pn, hint, target, maxlen, align, &t) &&
		    (!found || t.dist < c->dist)) {
			*c = t;
			found = true;
		}
	}
	if (found) {
		c->fs = fs;
		c->fn = fn;
	} else if (place_near(agstart, fs, fn, hint, target, maxlen, align, c)) {
		rlfs_busy_note_blocked(mp); /* it would fit but for busy blocks */
	}
	return found;
}

#define NEAR_SCAN_LIMIT 512

/* Closest extent of >= target blocks by walking the bnobt both ways. */
static int near_bno_search(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf *agbp,
			   uint32_t hint, uint32_t target, uint32_t maxlen, uint32_t align,
			   struct cand *best)
{
	struct rlfs_mount *mp = tp->mp;
	uint64_t agstart = rlfs_agb_to_fsb(mp, agno, 0);
	struct rlfs_btree_cur lc, rc;
	struct rlfs_alloc_rec key = mkrec(hint, 0);
	int lstat = 0, rstat = 0, err, stat;
	unsigned scanned = 0;
	uint32_t s, n;

	rlfs_alloc_cur_init(&lc, tp, &rlfs_bnobt_ops, agno, agbp);
	rlfs_alloc_cur_init(&rc, tp, &rlfs_bnobt_ops, agno, agbp);
	err = rlfs_btree_lookup(&lc, RLFS_LOOKUP_LE, &key, &lstat);
	if (!err) {
		key = mkrec(hint + 1, 0);
		err = hint == UINT32_MAX ? 0 : rlfs_btree_lookup(&rc, RLFS_LOOKUP_GE, &key, &rstat);
	}
	while (!err && (lstat || rstat) && scanned < NEAR_SCAN_LIMIT) {
		if (lstat) {
			err = cur_get(&lc, &s, &n, &stat);
			if (err)
				break;
			scanned++;
			if (!stat) {
				lstat = 0;
			} else {
				/* lower bound of the distance of anything further left */
				uint64_t lb = (uint64_t)s + n > hint ? 0 : hint - (s + n);
				if (best->found && lb >= best->dist) {
					lstat = 0;
				} else {
					struct cand c;
					if (place_near_rec(mp, agno, agstart, s, n, hint, target,
							   maxlen, align, &c) &&
					    (!best->found || c.dist < best->dist)) {
						*best = c;
						best->found = true;
					}
					err = rlfs_btree_decrement(&lc, &lstat);
					if (err)
						break;
				}
			}
		}
		if (rstat) {
			err = cur_get(&rc, &s, &n, &stat);
			if (err)
				break;
			scanned++;
			if (!stat) {
				rstat = 0;
			} else {
				uint64_t lb = s > hint ? s - hint : 0;
				if (best->found && lb >= best->dist) {
					rstat = 0;
				} else {
					struct cand c;
					if (place_near_rec(mp, agno, agstart, s, n, hint, target,
							   maxlen, align, &c) &&
					    (!best->found || c.dist < best->dist)) {
						*best = c;
						best->found = true;
					}
					err = rlfs_btree_increment(&rc, &rstat);
				}
			}
		}
	}
	rlfs_btree_cur_del(&lc);
	rlfs_btree_cur_del(&rc);
	return err;
}

/*
 * The non-busy piece of free record [s, s+n) with the most usable aligned
 * blocks: that count (0: none), its piece's first aligned block in *start.
 * When no piece gives want blocks but the record would without its busy
 * blocks, the allocator is told it was blocked (busy.h).
 */
static uint32_t best_piece(struct rlfs_mount *mp, uint32_t agno, uint64_t agstart, uint32_t s,
			   uint32_t n, uint32_t align, uint32_t want, uint32_t enough,
			   uint32_t *start)
{
	uint32_t ps, pn, bestu = 0, npieces = 0;
	for (uint32_t from = s; piece(mp, agno, s, n, from, &ps, &pn); from = ps + pn) {
		if (++npieces > RLFS_ALLOC_PIECES_MAX) {
			rlfs_busy_note_heavy(mp);
			break;
		}
		uint32_t u = usable_len(agstart, ps, pn, align);
		if (u > bestu) {
			bestu = u;
			*start = align_up_ag(agstart, ps, align);
		}
		/* enough, or nothing longer can follow: stop (a record cut
		 * into thousands of busy pieces is otherwise walked whole for
		 * every allocation) */
		if (bestu >= enough || (uint64_t)s + n - (ps + pn) <= bestu)
			break;
	}
	if (bestu < want && usable_len(agstart, s, n, align) >= want)
		rlfs_busy_note_blocked(mp); /* it would fit but for busy blocks */
	return bestu;
}

/* Smallest record (by cntbt order) with >= target usable aligned blocks. */
static int cnt_fit_search(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf *agbp,
			  uint32_t target, uint32_t align, struct cand *best)
{
	struct rlfs_mount *mp = tp->mp;
	uint64_t agstart = rlfs_agb_to_fsb(mp, agno, 0);
	struct rlfs_btree_cur cur;
	struct rlfs_alloc_rec key = mkrec(0, target);
	int stat, err;
	uint32_t s, n;
	rlfs_alloc_cur_init(&cur, tp, &rlfs_cntbt_ops, agno, agbp);
	err = rlfs_btree_lookup(&cur, RLFS_LOOKUP_GE, &key, &stat);
	while (!err && stat) {
		err = cur_get(&cur, &s, &n, &stat);
		if (err || !stat)
			break;
		uint32_t start;
		if (best_piece(mp, agno, agstart, s, n, align, target, target, &start) >= target) {
			best->found = true;
			best->fs = s;
			best->fn = n;
			best->start = start;
			best->len = target;
			break;
		}
		err = rlfs_btree_increment(&cur, &stat);
	}
	rlfs_btree_cur_del(&cur);
	return err;
}

/* The record with the most usable aligned blocks (>= minlen). */
static int cnt_longest_search(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf *agbp,
			      uint32_t minlen, uint32_t align, struct cand *best)
{
	struct rlfs_mount *mp = tp->mp;
	uint64_t agstart = rlfs_agb_to_fsb(mp, agno, 0);
	struct rlfs_btree_cur cur;
	struct rlfs_alloc_rec key = mkrec(UINT32_MAX, UINT32_MAX);
	int stat, err;
	uint32_t s, n, bestu = 0;
	rlfs_alloc_cur_init(&cur, tp, &rlfs_cntbt_ops, agno, agbp);
	err = rlfs_btree_lookup(&cur, RLFS_LOOKUP_LE, &key, &stat);
	while (!err && stat) {
		err = cur_get(&cur, &s, &n, &stat);
		if (err || !stat || n <= bestu || n < minlen)
			break;
		uint32_t start;
		uint32_t u = best_piece(mp, agno, agstart, s, n, align, minlen, UINT32_MAX, &start);
		if (u > bestu && u >= minlen) {
			bestu = u;
			best->found = true;
			best->fs = s;
			best->fn = n;
			best->start = start;
			best->len = u;
		}
		err = rlfs_btree_decrement(&cur, &stat);
	}
	rlfs_btree_cur_del(&cur);
	return err;
}

/* ------------------------------------------------------------------ */
/* Freelist maintenance                                                */

int rlfs_alloc_fix_freelist(struct rlfs_trans *tp, uint32_t agno)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_buf *agbp;
	int err = rlfs_ag_read_header(tp, agno, &agbp);
	if (err)
		return err;
	struct rlfs_agh *agh = rlfs_agh(agbp);
	unsigned min = rlfs_agfl_min(mp), hi = agfl_hi(mp);
	uint64_t blocked = rlfs_busy_blocked(mp);
	bool forced = false;

	/* too many (merges gave blocks back): return some to free space */
	if (rlfs_get32(agh->flcount) > hi)
		while (!err && rlfs_get32(agh->flcount) > min) {
		uint32_t b;
		err = agfl_take(tp, agno, agbp, &b);
		if (!err)
			err = rlfs_rmap_update(tp, RLFS_RUI_UNMAP, rlfs_agb_to_fsb(mp, agno, b), 1,
					       RLFS_RMAP_OWN_AG, 0);
		if (!err)
			err = free_into_trees(tp, agno, agbp, b, 1, true);
	}
	/* too few: refill from the trees (best fit, else the largest piece) */
	while (!err && rlfs_get32(agh->flcount) < min) {
		uint32_t need = min - rlfs_get32(agh->flcount);
		struct cand c = { 0 };
		if (rlfs_get32(agh->longest) == 0) {
			err = -ENOSPC;
			break;
		}
		err = cnt_fit_search(tp, agno, agbp, need, 1, &c);
		if (!err && !c.found)
			err = cnt_longest_search(tp, agno, agbp, 1, 1, &c);
		if (err)
			break;
		if (!c.found && !forced) {
			/* only busy space left here: make the committed frees
			 * durable and look again (busy.h) */
			forced = true;
			err = rlfs_busy_force_retry(tp, rlfs_busy_blocked(mp) != blocked);
			if (!err)
				continue;
			break;
		}
		if (!c.found) {
			err = -ENOSPC;
			break;
		}
		uint32_t take = RLFS_MIN(need, c.len); /* a non-busy piece */
		err = take_from_record(tp, agno, agbp, c.fs, c.fn, c.start, take);
		for (uint32_t i = 0; !err && i < take; i++)
			err = agfl_give(tp, agno, agbp, c.start + i);
		if (!err)
			err = rlfs_rmap_update(tp, RLFS_RUI_MAP, rlfs_agb_to_fsb(mp, agno, c.start),
					       take, RLFS_RMAP_OWN_AG, 0);
	}
	rlfs_trans_brelse(tp, agbp);
	return err;
}

/* ------------------------------------------------------------------ */
/* Allocation                                                          */

/*
 * Try to allocate in one AG.  pass_min: the length this pass insists on
 * (maxlen in the first pass over the AGs, minlen in the second).
 * -ENOSPC if this AG cannot satisfy it.
 */
static int alloc_ag(struct rlfs_alloc_arg *a, uint32_t agno, uint32_t hint_agbno,
		    bool use_hint, uint32_t pass_min)
{
	struct rlfs_trans *tp = a->tp;
	struct rlfs_mount *mp = tp->mp;
	uint64_t agstart = rlfs_agb_to_fsb(mp, agno, 0);
	struct rlfs_buf *agbp;
	int err = rlfs_ag_read_header(tp, agno, &agbp);
	if (err)
		return err;
	struct rlfs_agh *agh = rlfs_agh(agbp);
	uint32_t align = a->alignment ? a->alignment : 1;
	uint32_t maxlen_saved = 0;
	struct cand c = { 0 };

	if (rlfs_get32(agh->longest) < pass_min) {
		err = -ENOSPC;
		goto out;
	}
	err = rlfs_alloc_fix_freelist(tp, agno);
	if (err)
		goto out;
	uint32_t longest = rlfs_get32(agh->longest);
	if (longest < pass_min) {
		err = -ENOSPC;
		goto out;
	}
	/* the AG's reserve for its AGFL-fed btrees (what they may still
	 * need: ag_resv.h) stays free (xfs_alloc_space_available): at most
	 * freeblks - reserve here */
	uint32_t freeb = rlfs_get32(agh->freeblks), resv = rlfs_ag_resv_left_blocks(mp, agh);
	uint32_t avail = freeb > resv ? freeb - resv : 0;
	if (avail < pass_min || avail < a->minlen) {
		err = -ENOSPC;
		goto out;
	}
	maxlen_saved = a->maxlen;
	a->maxlen = RLFS_MIN(a->maxlen, avail);

	if (a->type == RLFS_ALLOC_EXACT) {
		struct rlfs_btree_cur cur;
		struct rlfs_alloc_rec key = mkrec(hint_agbno, 0);
		uint32_t s = 0, n = 0;
		int stat;
		if (align > 1 && (agstart + hint_agbno) % align) {
			err = -ENOSPC;
			goto out;
		}
		rlfs_alloc_cur_init(&cur, tp, &rlfs_bnobt_ops, agno, agbp);
		err = rlfs_btree_lookup(&cur, RLFS_LOOKUP_LE, &key, &stat);
		if (!err && stat)
			err = cur_get(&cur, &s, &n, &stat);
		rlfs_btree_cur_del(&cur);
		if (err)
			goto out;
		/* no blocked note: an exact allocation never forces busy
		 * extents (rlfs_alloc_extent), it falls back to a near one */
		uint32_t ps, pn;
		if (!stat || (uint64_t)s + n <= hint_agbno ||
		    !piece(mp, agno, s, n, hint_agbno, &ps, &pn) || ps != hint_agbno ||
		    pn < pass_min) {
			err = -ENOSPC; /* not free, or busy (busy.h) */
			goto out;
		}
		c.found = true;
		c.fs = s;
		c.fn = n;
		c.start = hint_agbno;
		c.len = RLFS_MIN(a->maxlen, pn);
	} else if (a->type == RLFS_ALLOC_NEAR) {
		uint32_t target = RLFS_MAX(pass_min, RLFS_MIN(a->maxlen, longest));
		err = near_bno_search(tp, agno, agbp, use_hint ? hint_agbno : 0, target,
				      a->maxlen, align, &c);
		if (!err && !c.found) {
			err = cnt_fit_search(tp, agno, agbp, target, align, &c);
			if (!err && c.found)
				place_near_rec(mp, agno, agstart, c.fs, c.fn,
					       use_hint ? hint_agbno : 0, target, a->maxlen, align,
					       &c);
		}
		if (!err && !c.found && target > pass_min) {
			err = cnt_longest_search(tp, agno, agbp, pass_min, align, &c);
			if (!err && c.found)
				c.len = RLFS_MIN(c.len, a->maxlen);
		}
	} else {
		err = cnt_fit_search(tp, agno, agbp, a->maxlen, align, &c);
		if (!err && !c.found) {
			err = cnt_longest_search(tp, agno, agbp, pass_min, align, &c);
			if (!err && c.found)
				c.len = RLFS_MIN(c.len, a->maxlen);
		}
	}
	if (err)
		goto out;
	if (!c.found || c.len < pass_min || c.len < a->minlen) {
		err = -ENOSPC;
		goto out;
	}
	err = take_from_record(tp, agno, agbp, c.fs, c.fn, c.start, c.len);
	if (err)
		goto out;
	rlfs_trans_mod_used(tp, c.len);
	a->fsbno = agstart + c.start;
	a->len = c.len;
out:
	if (maxlen_saved)
		a->maxlen = maxlen_saved;
	rlfs_trans_brelse(tp, agbp);
	return err;
}

static int ag_longest(struct rlfs_trans *tp, uint32_t agno, uint32_t *longest)
{
	struct rlfs_buf *agbp;
	int err = rlfs_ag_read_header(tp, agno, &agbp);
	if (err)
		return err;
	*longest = rlfs_get32(rlfs_agh(agbp)->longest);
	rlfs_trans_brelse(tp, agbp);
	return 0;
}

static int alloc_extent_once(struct rlfs_alloc_arg *a)
{
	struct rlfs_mount *mp = a->tp->mp;
	a->fsbno = 0;
	a->len = 0;
	if (a->minlen == 0 || a->maxlen < a->minlen || a->maxlen > RLFS_MAX_EXTLEN)
		return -EINVAL;
	uint64_t hint = a->hint_fsbno < mp->dblocks ? a->hint_fsbno : 0;
	uint32_t start_agno = hint ? rlfs_fsb_to_agno(mp, hint) : 0;
	uint32_t hint_agbno = hint ? rlfs_fsb_to_agbno(mp, hint) : 0;
	int err;

	if (a->type == RLFS_ALLOC_EXACT) {
		if (!hint)
			return -ENOSPC;
		return alloc_ag(a, start_agno, hint_agbno, true, a->minlen);
	}
	if (a->type == RLFS_ALLOC_NEAR) {
		for (int pass = 0; pass < 2; pass++) {
			uint32_t need = pass == 0 ? a->maxlen : a->minlen;
			if (pass == 1 && a->minlen == a->maxlen)
				break;
			for (uint32_t i = 0; i < mp->agcount; i++) {
				uint32_t agno = (start_agno + i) % mp->agcount;
				err = alloc_ag(a, agno, hint_agbno, agno == start_agno && hint, need);
				if (err != -ENOSPC)
					return err;
			}
		}
		return -ENOSPC;
	}
	/* ANY: first AG (from the hint's) where maxlen fits, best fit inside */
	for (uint32_t i = 0; i < mp->agcount; i++) {
		uint32_t agno = (start_agno + i) % mp->agcount, longest;
		err = ag_longest(a->tp, agno, &longest);
		if (err)
			return err;
		if (longest < a->maxlen)
			continue;
		err = alloc_ag(a, agno, 0, false, a->maxlen);
		if (err != -ENOSPC)
			return err;
	}
	if (a->minlen == a->maxlen)
		return -ENOSPC;
	/* nothing fits maxlen: the longest extents first, largest AG first */
	uint32_t *tried = calloc((mp->agcount + 31) / 32, sizeof(uint32_t));
	if (!tried)
		return -ENOMEM;
	err = -ENOSPC;
	for (;;) {
		uint32_t bestag = UINT32_MAX, bestlen = 0;
		for (uint32_t agno = 0; agno < mp->agcount; agno++) {
			uint32_t longest;
			if (tried[agno / 32] & (1u << (agno % 32)))
				continue;
			int e = ag_longest(a->tp, agno, &longest);
			if (e) {
				free(tried);
				return e;
			}
			if (longest >= a->minlen && longest > bestlen) {
				bestlen = longest;
				bestag = agno;
			}
		}
		if (bestag == UINT32_MAX) {
			err = -ENOSPC;
			break;
		}
		tried[bestag / 32] |= 1u << (bestag % 32);
		err = alloc_ag(a, bestag, 0, false, a->minlen);
		if (err != -ENOSPC)
			break;
	}
	free(tried);
	return err;
}

int rlfs_alloc_extent(struct rlfs_alloc_arg *a)
{
	struct rlfs_mount *mp = a->tp->mp;
	/* an earlier search met free space cut into too many busy pieces:
	 * make the committed frees durable once (a log force), so that this
	 * and later searches see whole records again */
	if (rlfs_busy_take_heavy(mp) && rlfs_busy_forceable(mp)) {
		int ferr = rlfs_busy_force(a->tp);
		if (ferr && ferr != -EAGAIN)
			return ferr;
	}
	uint64_t blocked = rlfs_busy_blocked(mp);
	int err = alloc_extent_once(a);
	/* Only busy space fits (a search met a free extent that would have
	 * done but for busy blocks): make the committed frees durable and
	 * try again (xfs_extent_busy_flush), so ENOSPC is never reported
	 * while busy space of committed transactions exists.  Not for EXACT:
	 * its callers fall back to NEAR, which forces if it has to. */
	if (err == -ENOSPC && a->type != RLFS_ALLOC_EXACT) {
		int ferr = rlfs_busy_force_retry(a->tp, rlfs_busy_blocked(mp) != blocked);
		if (!ferr)
			err = alloc_extent_once(a);
		else if (ferr != -ENOSPC)
			err = ferr;
	}
	return err;
}

static int free_extent(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len, bool busy)
{
	struct rlfs_mount *mp = tp->mp;
	if (len == 0)
		return 0;
	if (fsbno == 0 || fsbno >= mp->dblocks || len > mp->dblocks - fsbno)
		return rlfs_corrupt(mp, fsbno, "free space", "freeing [%llu, +%u) beyond the device",
				    (unsigned long long)fsbno, len);
	uint32_t agno = rlfs_fsb_to_agno(mp, fsbno), agbno = rlfs_fsb_to_agbno(mp, fsbno);
	if ((uint64_t)agbno + len > rlfs_ag_blocks(mp, agno))
		return rlfs_corrupt(mp, fsbno, "free space", "freeing [%llu, +%u) crosses an AG end",
				    (unsigned long long)fsbno, len);
	/* no cached metadata of these blocks may be written after this */
	rlfs_trans_binval_range(tp, fsbno, len);
	struct rlfs_buf *agbp;
	int err = rlfs_ag_read_header(tp, agno, &agbp);
	if (err)
		return err;
	/* keep the AGFL stocked for the splits; a shortage is not fatal here
	 * (freeing only adds space), so -ENOSPC is ignored */
	err = rlfs_alloc_fix_freelist(tp, agno);
	if (err == -ENOSPC)
		err = 0;
	if (!err)
		err = free_into_trees(tp, agno, agbp, agbno, len, busy);
	if (!err)
		rlfs_trans_mod_freed(tp, len);
	rlfs_trans_brelse(tp, agbp);
	return err;
}

int rlfs_free_extent(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len)
{
	return free_extent(tp, fsbno, len, true);
}

int rlfs_free_extent_unused(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len)
{
	return free_extent(tp, fsbno, len, false);
}

int rlfs_count_free(struct rlfs_trans *tp, uint64_t *free_blocks)
{
	uint64_t sum = 0;
	for (uint32_t agno = 0; agno < tp->mp->agcount; agno++) {
		struct rlfs_buf *bp;
		int err = rlfs_ag_read_header(tp, agno, &bp);
		if (err)
			return err;
		sum += rlfs_get32(rlfs_agh(bp)->freeblks) + rlfs_get32(rlfs_agh(bp)->flcount);
		rlfs_trans_brelse(tp, bp);
	}
	*free_blocks = sum;
	return 0;
}

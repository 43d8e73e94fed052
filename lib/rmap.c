/*
 * rmap.c: the per-AG reverse-mapping b+tree; see rmap.h for the contract.
 *
 * Tree: records struct rlfs_rmap_rec (24 bytes), keys struct rlfs_rmap_key
 * (24 bytes, overlapping mode: a node slot is a low and a high key, 48
 * bytes).  Keys compare on (startblock, owner, offset with the unwritten
 * bit masked), all unsigned.  The high key of a record is its last block:
 * (startblock + blockcount - 1, owner, offset + blockcount - 1), offset
 * unchanged for special owners and bmbt blocks, whose offset is not a file
 * position (xfs_rmapbt_init_high_key_from_rec).
 *
 * Model: xfsprogs libxfs/xfs_rmap_btree.c, xfs_rmap.c.
 */
#include "rmap.h"

#include <string.h>

#include "alloc.h"

/* ------------------------------------------------------------------ */
/* Records and keys                                                    */

void rlfs_rmap_rec_encode(const struct rlfs_rmap_irec *ir, struct rlfs_rmap_rec *r)
{
	rlfs_put32(r->startblock, ir->startblock);
	rlfs_put32(r->blockcount, ir->blockcount);
	rlfs_put64(r->owner, ir->owner);
	rlfs_put64(r->offset, ir->offset);
}

void rlfs_rmap_rec_decode(const struct rlfs_rmap_rec *r, struct rlfs_rmap_irec *ir)
{
	ir->startblock = rlfs_get32(r->startblock);
	ir->blockcount = rlfs_get32(r->blockcount);
	ir->owner = rlfs_get64(r->owner);
	ir->offset = rlfs_get64(r->offset);
}

const char *rlfs_rmap_check_irec(const struct rlfs_rmap_irec *ir, uint32_t aglen)
{
	if (ir->blockcount == 0)
		return "zero length";
	if (ir->startblock >= aglen || ir->blockcount > aglen - ir->startblock)
		return "extent outside the AG";
	if (ir->offset & ~(RLFS_RMAP_OFF_FLAGS | RLFS_RMAP_OFF_MASK))
		return "reserved offset bits set";
	if (RLFS_RMAP_NON_INODE_OWNER(ir->owner)) {
		if (ir->owner <= RLFS_RMAP_OWN_MIN)
			return "unknown special owner";
		return ir->offset ? "special owner with an offset or flags" : NULL;
	}
	if (ir->owner == 0)
		return "owner 0";
	if (ir->offset & RLFS_RMAP_OFF_BMBT_BLOCK)
		return (ir->offset & (RLFS_RMAP_OFF_MASK | RLFS_RMAP_OFF_UNWRITTEN))
			       ? "bmbt block with an offset or unwritten" : NULL;
	if ((ir->offset & RLFS_RMAP_OFF_ATTR_FORK) && (ir->offset & RLFS_RMAP_OFF_UNWRITTEN))
		return "unwritten attr fork extent";
	if (RLFS_RMAP_OFF(ir->offset) + ir->blockcount - 1 > RLFS_RMAP_OFF_MASK)
		return "file offset out of range";
	return NULL;
}

static uint64_t key_offset(uint64_t off)
{
	return off & ~RLFS_RMAP_OFF_UNWRITTEN; /* XFS offset_keymask */
}

static void rmap_key_from_rec(void *key, const void *rec)
{
	struct rlfs_rmap_rec r;
	struct rlfs_rmap_key k;
	memcpy(&r, rec, sizeof(r));
	memset(&k, 0, sizeof(k));
	k.startblock = r.startblock;
	k.owner = r.owner;
	rlfs_put64(k.offset, key_offset(rlfs_get64(r.offset)));
	memcpy(key, &k, sizeof(k));
}

static void rmap_high_key_from_rec(void *key, const void *rec)
{
	struct rlfs_rmap_rec r;
	struct rlfs_rmap_key k;
	memcpy(&r, rec, sizeof(r));
	uint32_t adj = rlfs_get32(r.blockcount) ? rlfs_get32(r.blockcount) - 1 : 0;
	uint64_t owner = rlfs_get64(r.owner), off = key_offset(rlfs_get64(r.offset));
	memset(&k, 0, sizeof(k));
	rlfs_put32(k.startblock, rlfs_get32(r.startblock) + adj);
	k.owner = r.owner;
	if (!RLFS_RMAP_NON_INODE_OWNER(owner) && !(off & RLFS_RMAP_OFF_BMBT_BLOCK))
		off = ((RLFS_RMAP_OFF(off) + adj) & RLFS_RMAP_OFF_MASK) | (off & ~RLFS_RMAP_OFF_MASK);
	rlfs_put64(k.offset, off);
	memcpy(key, &k, sizeof(k));
}

static int cmp_u64(uint64_t a, uint64_t b) { return a < b ? -1 : a > b; }

static int rmap_cmp_key(struct rlfs_btree_cur *cur, const void *k1, const void *k2)
{
	struct rlfs_rmap_key a, b;
	memcpy(&a, k1, sizeof(a));
	memcpy(&b, k2, sizeof(b));
	int d = cmp_u64(rlfs_get32(a.startblock), rlfs_get32(b.startblock));
	if (!d)
		d = cmp_u64(rlfs_get64(a.owner), rlfs_get64(b.owner));
	if (!d)
		d = cmp_u64(key_offset(rlfs_get64(a.offset)), key_offset(rlfs_get64(b.offset)));
	return d;
}

static int rmap_verify_rec(struct rlfs_btree_cur *cur, const void *rec)
{
	struct rlfs_rmap_rec r;
	struct rlfs_rmap_irec ir;
	memcpy(&r, rec, sizeof(r));
	rlfs_rmap_rec_decode(&r, &ir);
	const char *why = rlfs_rmap_check_irec(&ir, rlfs_ag_blocks(cur->mp, cur->agno));
	if (!why)
		return 0;
	return rlfs_corrupt(cur->mp, 0, "rmapbt",
			    "AG %u: record [%u, +%u) owner %llu offset 0x%llx: %s", cur->agno,
			    ir.startblock, ir.blockcount, (unsigned long long)ir.owner,
			    (unsigned long long)ir.offset, why);
}

RLFS_AGBT_ROOT_OPS(rmap, rmap_root, rmap_level)

/* Buffer verifier: generic block checks, owner = the AG the block is in,
 * leaf records well formed and in strictly increasing key order. */
static int rmapbt_buf_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	int err = rlfs_btree_verify_block(mp, bp, sizeof(struct rlfs_rmap_rec),
					  sizeof(struct rlfs_rmap_key), true);
	if (err)
		return err;
	const struct rlfs_btree_block *blk = bp->data;
	uint32_t agno = rlfs_fsb_to_agno(mp, bp->fsbno);
	if (rlfs_get64(blk->hdr.owner) != agno)
		return rlfs_corrupt(mp, bp->fsbno, "rmapbt", "owner %llu, block is in AG %u",
				    (unsigned long long)rlfs_get64(blk->hdr.owner), agno);
	if (rlfs_get16(blk->level) != 0)
		return 0;
	unsigned n = rlfs_get16(blk->numrecs);
	const uint8_t *p = (const uint8_t *)bp->data + sizeof(*blk);
	uint32_t aglen = rlfs_ag_blocks(mp, agno);
	struct rlfs_rmap_key prev;
	for (unsigned i = 0; i < n; i++) {
		struct rlfs_rmap_rec r;
		struct rlfs_rmap_irec ir;
		struct rlfs_rmap_key k;
		memcpy(&r, p + (size_t)i * sizeof(r), sizeof(r));
		rlfs_rmap_rec_decode(&r, &ir);
		const char *why = rlfs_rmap_check_irec(&ir, aglen);
		if (why)
			return rlfs_corrupt(mp, bp->fsbno, "rmapbt", "AG %u: record %u: %s", agno,
					    i + 1, why);
		rmap_key_from_rec(&k, &r);
		if (i && rmap_cmp_key(NULL, &prev, &k) >= 0)
			return rlfs_corrupt(mp, bp->fsbno, "rmapbt",
					    "AG %u: record %u out of key order", agno, i + 1);
		prev = k;
	}
	return 0;
}

const struct rlfs_buf_ops rlfs_rmapbt_buf_ops = {
	.name = "rmapbt", .magic = RLFS_RMAPBT_MAGIC, .has_hdr = true,
	.verify = rmapbt_buf_verify,
};

const struct rlfs_btree_ops rlfs_rmapbt_ops = {
	.name = "rmapbt",
	.magic = RLFS_RMAPBT_MAGIC,
	.rec_len = sizeof(struct rlfs_rmap_rec),
	.key_len = sizeof(struct rlfs_rmap_key),
	.overlapping = true,
	.buf_ops = &rlfs_rmapbt_buf_ops,
	.init_key_from_rec = rmap_key_from_rec,
	.init_high_key_from_rec = rmap_high_key_from_rec,
	.cmp_key = rmap_cmp_key,
	.verify_rec = rmap_verify_rec,
	.get_root = rmap_get_root,
	.set_root = rmap_set_root,
	.alloc_block = rlfs_agbt_alloc_block,
	.free_block = rlfs_agbt_free_block,
	.owner = rlfs_agbt_owner,
};

void rlfs_rmap_cur_init(struct rlfs_btree_cur *cur, struct rlfs_trans *tp, uint32_t agno,
			struct rlfs_buf *agbp)
{
	rlfs_btree_cur_init(cur, tp, &rlfs_rmapbt_ops, agno, NULL, agbp);
}

/* ------------------------------------------------------------------ */
/* Record operations                                                   */

int rlfs_rmap_insert(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *rec)
{
	if (rlfs_rmap_check_irec(rec, rlfs_ag_blocks(cur->mp, cur->agno)))
		return -EINVAL;
	struct rlfs_rmap_rec r;
	rlfs_rmap_rec_encode(rec, &r);
	return rlfs_btree_insert(cur, &r);
}

int rlfs_rmap_delete(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *rec)
{
	struct rlfs_rmap_rec r, got;
	struct rlfs_rmap_key k;
	int stat, err;
	rlfs_rmap_rec_encode(rec, &r);
	rmap_key_from_rec(&k, &r);
	err = rlfs_btree_lookup(cur, RLFS_LOOKUP_EQ, &k, &stat);
	if (err)
		return err;
	if (!stat)
		return -ENOENT;
	err = rlfs_btree_get_rec(cur, &got, &stat);
	if (err)
		return err;
	if (!stat || memcmp(&got, &r, sizeof(r)))
		return -ENOENT;
	err = rlfs_btree_delete(cur, &stat);
	if (err)
		return err;
	return stat ? 0 : -EUCLEAN;
}

struct query_ctx {
	rlfs_rmap_query_fn fn;
	void *priv;
};

static int query_helper(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct query_ctx *q = priv;
	struct rlfs_rmap_rec r;
	struct rlfs_rmap_irec ir;
	memcpy(&r, rec, sizeof(r));
	rlfs_rmap_rec_decode(&r, &ir);
	return q->fn(cur, &ir, q->priv);
}

int rlfs_rmap_query_range(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *low,
			  const struct rlfs_rmap_irec *high, rlfs_rmap_query_fn fn, void *priv)
{
	struct rlfs_rmap_rec lr, hr;
	struct rlfs_rmap_key lk, hk;
	struct query_ctx q = { fn, priv };
	rlfs_rmap_rec_encode(low, &lr);
	rlfs_rmap_rec_encode(high, &hr);
	rmap_key_from_rec(&lk, &lr);
	rmap_key_from_rec(&hk, &hr);
	return rlfs_btree_query_range(cur, &lk, &hk, query_helper, &q);
}

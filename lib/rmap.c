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

int rlfs_rmap_irec_cmp_key(const struct rlfs_rmap_irec *a, const struct rlfs_rmap_irec *b)
{
	int d = cmp_u64(a->startblock, b->startblock);
	if (!d)
		d = cmp_u64(a->owner, b->owner);
	if (!d)
		d = cmp_u64(key_offset(a->offset), key_offset(b->offset));
	return d;
}

struct rlfs_rmap_irec rlfs_rmap_irec_high_key(const struct rlfs_rmap_irec *r)
{
	struct rlfs_rmap_rec raw;
	struct rlfs_rmap_key k;
	struct rlfs_rmap_irec h;
	rlfs_rmap_rec_encode(r, &raw);
	rmap_high_key_from_rec(&k, &raw);
	h.startblock = rlfs_get32(k.startblock);
	h.blockcount = 1;
	h.owner = rlfs_get64(k.owner);
	h.offset = rlfs_get64(k.offset);
	return h;
}

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

/* The btree's direct comparators (ops->cmp_rec_low / cmp_rec_high):
 * rmap_cmp_key of the record's low / high key and key, decoding only the
 * fields the comparison reaches (most records differ in startblock). */
static int rmap_cmp_rec_low(const void *rec, const void *key)
{
	struct rlfs_rmap_rec r;
	struct rlfs_rmap_key k;
	memcpy(&r, rec, sizeof(r));
	memcpy(&k, key, sizeof(k));
	int d = cmp_u64(rlfs_get32(r.startblock), rlfs_get32(k.startblock));
	if (!d)
		d = cmp_u64(rlfs_get64(r.owner), rlfs_get64(k.owner));
	if (!d)
		d = cmp_u64(key_offset(rlfs_get64(r.offset)), key_offset(rlfs_get64(k.offset)));
	return d;
}

static int rmap_cmp_rec_high(const void *rec, const void *key)
{
	struct rlfs_rmap_rec r;
	struct rlfs_rmap_key k;
	memcpy(&r, rec, sizeof(r));
	memcpy(&k, key, sizeof(k));
	uint32_t bc = rlfs_get32(r.blockcount), adj = bc ? bc - 1 : 0;
	int d = cmp_u64((uint64_t)(uint32_t)(rlfs_get32(r.startblock) + adj),
			rlfs_get32(k.startblock));
	if (d)
		return d;
	uint64_t owner = rlfs_get64(r.owner), off = key_offset(rlfs_get64(r.offset));
	d = cmp_u64(owner, rlfs_get64(k.owner));
	if (d)
		return d;
	if (!RLFS_RMAP_NON_INODE_OWNER(owner) && !(off & RLFS_RMAP_OFF_BMBT_BLOCK))
		off = ((RLFS_RMAP_OFF(off) + adj) & RLFS_RMAP_OFF_MASK) | (off & ~RLFS_RMAP_OFF_MASK);
	return cmp_u64(key_offset(off), key_offset(rlfs_get64(k.offset)));
}

/*
 * ops->leaf_overlap_start: a record's high key starts at most
 * blockcount - 1 blocks after its low key (less if startblock + blockcount
 * - 1 wraps, which only a corrupt record does), so with L the leaf's
 * largest blockcount, records starting before low_key's startblock - (L - 1)
 * end below it.  Records are in startblock order: binary search for the
 * first one at or after that block.  One pass over the leaf's blockcounts
 * replaces building and comparing the keys of every record before the
 * range (XFS scans them all).
 */
static unsigned rmap_leaf_overlap_start(const void *recs, unsigned nrecs, const void *low_key)
{
	const uint8_t *base = recs;
	struct rlfs_rmap_rec r;
	struct rlfs_rmap_key k;
	uint32_t max_blocks = 1;
	for (unsigned i = 0; i < nrecs; i++) {
		memcpy(&r, base + (size_t)i * sizeof(r), sizeof(r));
		uint32_t bc = rlfs_get32(r.blockcount);
		if (bc > max_blocks)
			max_blocks = bc;
	}
	memcpy(&k, low_key, sizeof(k));
	uint32_t lo = rlfs_get32(k.startblock);
	uint32_t from = lo >= max_blocks - 1 ? lo - (max_blocks - 1) : 0;
	unsigned a = 0, b = nrecs; /* first index in [a, b) with startblock >= from */
	while (a < b) {
		unsigned mid = a + (b - a) / 2;
		memcpy(&r, base + (size_t)mid * sizeof(r), sizeof(r));
		if (rlfs_get32(r.startblock) < from)
			a = mid + 1;
		else
			b = mid;
	}
	return a + 1;
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
	.cmp_rec_low = rmap_cmp_rec_low,
	.cmp_rec_high = rmap_cmp_rec_high,
	.leaf_overlap_start = rmap_leaf_overlap_start,
	.cmp_key = rmap_cmp_key,
	.verify_rec = rmap_verify_rec,
	.get_root = rmap_get_root,
	.set_root = rmap_set_root,
	.alloc_block = rlfs_agbt_alloc_block,
	.free_block = rlfs_agbt_free_block,
	.owner = rlfs_agbt_owner,
	.agh_blocks_off = offsetof(struct rlfs_agh, rmap_blocks),
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

/* Position the cursor on the record with rec's key; *stat 0 if none. */
static int lookup_eq(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *rec, int *stat)
{
	struct rlfs_rmap_rec r;
	struct rlfs_rmap_key k;
	rlfs_rmap_rec_encode(rec, &r);
	rmap_key_from_rec(&k, &r);
	return rlfs_btree_lookup(cur, RLFS_LOOKUP_EQ, &k, stat);
}

int rlfs_rmap_delete(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *rec)
{
	struct rlfs_rmap_rec r, got;
	int stat, err = lookup_eq(cur, rec, &stat);
	if (err)
		return err;
	if (!stat)
		return -ENOENT;
	rlfs_rmap_rec_encode(rec, &r);
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

/* ------------------------------------------------------------------ */
/* Map, unmap, convert: record splitting and merging                   */

/* The offset of special owners and bmbt blocks is not a file position:
 * merging and coverage ignore it (XFS's ignore_off / XFS_RMAP_BMBT_BLOCK
 * cases). */
static bool ignore_off(uint64_t owner, uint64_t offset)
{
	return RLFS_RMAP_NON_INODE_OWNER(owner) || (offset & RLFS_RMAP_OFF_BMBT_BLOCK);
}

/* Same owner and same kind of mapping (attr fork / bmbt block / data). */
static bool same_kind(const struct rlfs_rmap_irec *r, uint64_t owner, uint64_t offset)
{
	const uint64_t kind = RLFS_RMAP_OFF_ATTR_FORK | RLFS_RMAP_OFF_BMBT_BLOCK;
	return r->owner == owner && (r->offset & kind) == (offset & kind);
}

/* Does r map block agbno of owner at file offset RLFS_RMAP_OFF(offset)
 * (any offset for special owners and bmbt blocks)?  Unwritten ignored. */
static bool maps_block(const struct rlfs_rmap_irec *r, uint32_t agbno, uint64_t owner,
		       uint64_t offset)
{
	if (!same_kind(r, owner, offset) || agbno < r->startblock ||
	    agbno - r->startblock >= r->blockcount)
		return false;
	return ignore_off(owner, offset) ||
	       RLFS_RMAP_OFF(r->offset) + (agbno - r->startblock) == RLFS_RMAP_OFF(offset);
}

bool rlfs_rmap_is_mergeable(const struct rlfs_rmap_irec *a, const struct rlfs_rmap_irec *b)
{
	if (a->owner == RLFS_RMAP_OWN_NULL || a->owner != b->owner ||
	    (a->offset & RLFS_RMAP_OFF_FLAGS) != (b->offset & RLFS_RMAP_OFF_FLAGS))
		return false;
	if ((uint64_t)a->startblock + a->blockcount != b->startblock)
		return false;
	if ((uint64_t)a->blockcount + b->blockcount > RLFS_RMAP_LEN_MAX)
		return false;
	return ignore_off(a->owner, a->offset) ||
	       RLFS_RMAP_OFF(a->offset) + a->blockcount == RLFS_RMAP_OFF(b->offset);
}

/* A key-range query given as (startblock, owner, offset) triples. */
static int query_keys(struct rlfs_btree_cur *cur, uint32_t lo_bno, uint64_t owner,
		      uint64_t lo_off, uint32_t hi_bno, uint64_t hi_off, rlfs_rmap_query_fn fn,
		      void *priv)
{
	const struct rlfs_rmap_irec lo = { lo_bno, 1, owner, lo_off },
				   hi = { hi_bno, 1, owner, hi_off };
	return rlfs_rmap_query_range(cur, &lo, &hi, fn, priv);
}

struct lookup_ctx {
	uint32_t agbno;
	uint64_t owner, offset;
	struct rlfs_rmap_irec *irec;
	int *stat;
};

static int lookup_helper(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *rec,
			 void *priv)
{
	struct lookup_ctx *c = priv;
	if (!maps_block(rec, c->agbno, c->owner, c->offset))
		return 0;
	if (*c->stat)
		return rlfs_corrupt(cur->mp, 0, "rmapbt",
				    "AG %u: two records map agbno %u to owner %llu offset 0x%llx",
				    cur->agno, c->agbno, (unsigned long long)c->owner,
				    (unsigned long long)c->offset);
	*c->irec = *rec;
	*c->stat = 1;
	return 0;
}

int rlfs_rmap_lookup_le_range(struct rlfs_btree_cur *cur, uint32_t agbno, uint64_t owner,
			      uint64_t offset, struct rlfs_rmap_irec *irec, int *stat)
{
	struct lookup_ctx c = { agbno, owner, offset & ~RLFS_RMAP_OFF_UNWRITTEN, irec, stat };
	*stat = 0;
	/* Every record that maps (agbno, owner, offset) has low key <= that
	 * point and high key >= it, so a point query finds it (and records of
	 * other owners or offsets spanning the point, skipped by the helper). */
	return query_keys(cur, agbno, owner, c.offset, agbno, c.offset, lookup_helper, &c);
}

/* Neighbours of a new mapping new (see rlfs_rmap_map). */
struct nb_ctx {
	const struct rlfs_rmap_irec *new;
	struct rlfs_rmap_irec left, right;
	bool have_left, have_right;
};

static int neighbour_helper(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *rec,
			    void *priv)
{
	struct nb_ctx *c = priv;
	const struct rlfs_rmap_irec *n = c->new;
	uint64_t end = (uint64_t)rec->startblock + rec->blockcount;
	if (!same_kind(rec, n->owner, n->offset))
		return 0;
	if (rec->startblock < (uint64_t)n->startblock + n->blockcount && end > n->startblock) {
		/* blocks in common: corrupt if some block gets the same
		 * mapping twice (same offset on the same diagonal) */
		uint32_t b = rec->startblock > n->startblock ? rec->startblock : n->startblock;
		if (maps_block(n, b, rec->owner,
			       (rec->offset & ~RLFS_RMAP_OFF_MASK) |
				       (RLFS_RMAP_OFF(rec->offset) + (b - rec->startblock))))
			return rlfs_corrupt(cur->mp, 0, "rmapbt",
					    "AG %u: map [%u, +%u) owner %llu offset 0x%llx: "
					    "record [%u, +%u) offset 0x%llx already maps it",
					    cur->agno, n->startblock, n->blockcount,
					    (unsigned long long)n->owner,
					    (unsigned long long)n->offset, rec->startblock,
					    rec->blockcount, (unsigned long long)rec->offset);
		return 0;
	}
	bool *have = NULL;
	struct rlfs_rmap_irec *slot = NULL;
	if (rlfs_rmap_is_mergeable(rec, n)) {
		have = &c->have_left;
		slot = &c->left;
	} else if (rlfs_rmap_is_mergeable(n, rec)) {
		have = &c->have_right;
		slot = &c->right;
	}
	if (!have)
		return 0;
	if (*have) /* two records, each overlapping the other: corrupt */
		return rlfs_corrupt(cur->mp, 0, "rmapbt",
				    "AG %u: owner %llu has overlapping records at agbno %u",
				    cur->agno, (unsigned long long)rec->owner, rec->startblock);
	*have = true;
	*slot = *rec;
	return 0;
}

/* Position the cursor on the record whose key is r's; -EUCLEAN if none. */
static int lookup_rec(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *r)
{
	int stat, err = lookup_eq(cur, r, &stat);
	if (err)
		return err;
	if (!stat)
		return rlfs_corrupt(cur->mp, 0, "rmapbt", "AG %u: record at agbno %u vanished",
				    cur->agno, r->startblock);
	return 0;
}

/* Replace the record with old's key by new (same key, other blockcount). */
static int update_rec(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *old,
		      const struct rlfs_rmap_irec *new)
{
	struct rlfs_rmap_rec raw;
	int err = lookup_rec(cur, old);
	if (err)
		return err;
	rlfs_rmap_rec_encode(new, &raw);
	return rlfs_btree_update(cur, &raw);
}

/* Insert or delete as part of an operation: a key clash or a missing
 * record there means the tree disagrees with what was looked up. */
static int insert_rec(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *r)
{
	int err = rlfs_rmap_insert(cur, r);
	if (err == -EEXIST || err == -EINVAL)
		return rlfs_corrupt(cur->mp, 0, "rmapbt",
				    "AG %u: cannot insert [%u, +%u) owner %llu: %d", cur->agno,
				    r->startblock, r->blockcount, (unsigned long long)r->owner, err);
	return err;
}

static int delete_rec(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *r)
{
	int err = rlfs_rmap_delete(cur, r);
	if (err == -ENOENT)
		return rlfs_corrupt(cur->mp, 0, "rmapbt",
				    "AG %u: record [%u, +%u) owner %llu vanished", cur->agno,
				    r->startblock, r->blockcount, (unsigned long long)r->owner);
	return err;
}

/* The argument checks shared by map, unmap and convert. */
static int check_args(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *r)
{
	if (r->blockcount == 0 || rlfs_rmap_check_irec(r, rlfs_ag_blocks(cur->mp, cur->agno)))
		return -EINVAL;
	return 0;
}

int rlfs_rmap_map(struct rlfs_btree_cur *cur, uint32_t agbno, uint32_t len_blocks,
		  uint64_t owner, uint64_t offset)
{
	const struct rlfs_rmap_irec new = { agbno, len_blocks, owner, offset };
	struct nb_ctx c = { .new = &new };
	int err = check_args(cur, &new);
	if (err)
		return err;
	/* Three narrow queries (a wide one visits every record of every
	 * owner at these blocks: quadratic for a block shared 65,536 times
	 * within one file):
	 *  - the left neighbour: its high key is the point (agbno - 1,
	 *    owner, offset - 1);
	 *  - the right one: its key is the point (agbno + len, owner,
	 *    offset + len);
	 *  - every record of owner mapping one of the blocks at the same
	 *    offsets: keys from (agbno, owner, offset) to (agbno + len - 1,
	 *    owner, offset + len - 1).
	 * (For special owners and bmbt blocks the offset stays as is.) */
	bool io = ignore_off(owner, offset);
	uint64_t key_off = offset & ~RLFS_RMAP_OFF_UNWRITTEN;
	if (agbno > 0 && (io || RLFS_RMAP_OFF(offset) > 0)) {
		uint64_t lo = io ? key_off : key_off - 1;
		err = query_keys(cur, agbno - 1, owner, lo, agbno - 1, lo, neighbour_helper, &c);
		if (err)
			return err;
	}
	if ((uint64_t)agbno + len_blocks < rlfs_ag_blocks(cur->mp, cur->agno)) {
		uint64_t ro = io ? key_off : key_off + len_blocks;
		err = query_keys(cur, agbno + len_blocks, owner, ro, agbno + len_blocks, ro,
				 neighbour_helper, &c);
		if (err)
			return err;
	}
	err = query_keys(cur, agbno, owner, key_off, agbno + len_blocks - 1,
			 io ? key_off : key_off + len_blocks - 1, neighbour_helper, &c);
	if (err)
		return err;
	/* XFS_RMAP_LEN_MAX: each merge alone fits (is_mergeable); both
	 * together may not, then only the left one is done. */
	if (c.have_left && c.have_right &&
	    (uint64_t)c.left.blockcount + len_blocks + c.right.blockcount > RLFS_RMAP_LEN_MAX)
		c.have_right = false;

	struct rlfs_rmap_irec rec = new;
	if (c.have_right) {
		err = delete_rec(cur, &c.right);
		if (err)
			return err;
		rec.blockcount += c.right.blockcount;
	}
	if (!c.have_left)
		return insert_rec(cur, &rec);
	struct rlfs_rmap_irec merged = c.left;
	merged.blockcount += rec.blockcount;
	return update_rec(cur, &c.left, &merged);
}

int rlfs_rmap_unmap(struct rlfs_btree_cur *cur, uint32_t agbno, uint32_t len_blocks,
		    uint64_t owner, uint64_t offset)
{
	const struct rlfs_rmap_irec arg = { agbno, len_blocks, owner, offset };
	struct rlfs_rmap_irec r;
	int stat, err = check_args(cur, &arg);
	if (err)
		return err;
	err = rlfs_rmap_lookup_le_range(cur, agbno, owner, offset, &r, &stat);
	if (err)
		return err;
	uint64_t end = (uint64_t)agbno + len_blocks, rend = 0;
	if (stat)
		rend = (uint64_t)r.startblock + r.blockcount;
	if (!stat || rend < end)
		return rlfs_corrupt(cur->mp, 0, "rmapbt",
				    "AG %u: unmap [%u, +%u) owner %llu offset 0x%llx: %s",
				    cur->agno, agbno, len_blocks, (unsigned long long)owner,
				    (unsigned long long)offset,
				    stat ? "the record mapping it ends inside the range"
					 : "no record maps it");
	if ((r.offset ^ offset) & RLFS_RMAP_OFF_UNWRITTEN)
		return rlfs_corrupt(cur->mp, 0, "rmapbt",
				    "AG %u: unmap [%u, +%u) owner %llu offset 0x%llx: the record "
				    "[%u, +%u) has offset 0x%llx (unwritten state differs)",
				    cur->agno, agbno, len_blocks, (unsigned long long)owner,
				    (unsigned long long)offset, r.startblock, r.blockcount,
				    (unsigned long long)r.offset);

	/* What is left: r's blocks before agbno and after the range. */
	struct rlfs_rmap_irec left = r, right = r;
	left.blockcount = agbno - r.startblock;
	right.startblock = (uint32_t)end;
	right.blockcount = (uint32_t)(rend - end);
	if (!ignore_off(owner, offset))
		right.offset += end - r.startblock;
	if (left.blockcount) /* trim the right end: key unchanged */
		err = update_rec(cur, &r, &left);
	else /* the record starts in the range: its key goes */
		err = delete_rec(cur, &r);
	if (err || !right.blockcount)
		return err;
	return insert_rec(cur, &right);
}

int rlfs_rmap_convert(struct rlfs_btree_cur *cur, uint32_t agbno, uint32_t len_blocks,
		      uint64_t owner, uint64_t offset)
{
	if (RLFS_RMAP_NON_INODE_OWNER(owner) ||
	    (offset & (RLFS_RMAP_OFF_ATTR_FORK | RLFS_RMAP_OFF_BMBT_BLOCK)))
		return -EINVAL;
	int err = rlfs_rmap_unmap(cur, agbno, len_blocks, owner, offset ^ RLFS_RMAP_OFF_UNWRITTEN);
	if (err)
		return err;
	return rlfs_rmap_map(cur, agbno, len_blocks, owner, offset);
}

/* ------------------------------------------------------------------ */
/* Transaction level                                                   */

int rlfs_rmap_update(struct rlfs_trans *tp, unsigned op, uint64_t fsbno, uint32_t len_blocks,
		     uint64_t owner, uint64_t offset)
{
	struct rlfs_mount *mp = tp->mp;
	if (!rlfs_has_rmap(mp))
		return 0;
	uint32_t agno = rlfs_fsb_to_agno(mp, fsbno), agbno = rlfs_fsb_to_agbno(mp, fsbno);
	if (len_blocks == 0 || agno >= mp->agcount ||
	    (uint64_t)agbno + len_blocks > rlfs_ag_blocks(mp, agno))
		return -EINVAL;
	struct rlfs_btree_cur cur;
	rlfs_rmap_cur_init(&cur, tp, agno, NULL);
	int err;
	switch (op) {
	case RLFS_RUI_MAP:
		err = rlfs_rmap_map(&cur, agbno, len_blocks, owner, offset);
		break;
	case RLFS_RUI_UNMAP:
		err = rlfs_rmap_unmap(&cur, agbno, len_blocks, owner, offset);
		break;
	case RLFS_RUI_CONVERT:
		err = rlfs_rmap_convert(&cur, agbno, len_blocks, owner, offset);
		break;
	default:
		err = -EINVAL;
	}
	rlfs_btree_cur_del(&cur);
	return err;
}

int rlfs_rmap_change_owner(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks,
			   uint64_t from, uint64_t to)
{
	int err = rlfs_rmap_update(tp, RLFS_RUI_UNMAP, fsbno, len_blocks, from, 0);
	return err ? err : rlfs_rmap_update(tp, RLFS_RUI_MAP, fsbno, len_blocks, to, 0);
}

unsigned rlfs_rmap_maxlevels(struct rlfs_mount *mp)
{
	unsigned space = mp->blocksize - (unsigned)sizeof(struct rlfs_btree_block);
	/* a node slot: low key, high key, pointer */
	uint64_t minn = RLFS_MAX(space / (2 * sizeof(struct rlfs_rmap_key) + 8) / 2, 2u);
	uint64_t node_blocks = minn, left = mp->agblocks ? mp->agblocks - 1 : 0;
	unsigned h = 1;
	while (node_blocks < left && h < RLFS_BTREE_MAXLEVELS) {
		left -= node_blocks;
		node_blocks *= minn;
		h++;
	}
	return h;
}

/*
 * refcount.c: the per-AG reference count b+tree (REFLINK feature); see
 * refcount.h for the contract.
 *
 * Tree: records struct rlfs_refcount_rec (12 bytes), key = startblock
 * (le32, RLFS_REFC_COWFLAG included, compared as an unsigned number), so
 * every shared-domain record sorts before every CoW-staging record.  The
 * root lives in the AG header (refc_root / refc_level); blocks come from
 * and go back to the AGFL like the inobt's (no agh.btreeblks accounting:
 * that counter is the free-space trees' only).
 *
 * Adjust (xfs_refcount_adjust, own code, simplified).  For [agbno, end)
 * and delta +1/-1 in the shared domain:
 *   1. split the record crossing agbno and the one crossing end, so that
 *      every record touching the range lies wholly inside it;
 *   2. walk the range from agbno: a gap (no record: refcount 1) gets a new
 *      record with refcount 2 on +1, or is freed (rlfs_free_extent) on -1;
 *      a record gets refcount + delta (deleted when that is 1), except a
 *      record at RLFS_REFC_REFCOUNT_MAX, which stays (its blocks leak
 *      rather than being freed while someone may still map them);
 *   3. merge pass over the range and its two neighbours: adjacent records
 *      of the same domain with equal refcount become one.
 * Every tree change is a separate positioned lookup + insert/update/delete
 * (the cursor never survives a change), preceded by
 * rlfs_alloc_fix_freelist so the AGFL always holds enough blocks for one
 * insert's splits and room for one delete's merges.
 *
 * The CoW domain records staging extents: cow_alloc inserts (merging with
 * adjacent staging records), cow_free splits at the edges and deletes; it
 * never frees blocks (the caller either maps them or frees them).
 *
 * Model: xfsprogs libxfs/xfs_refcount.c, xfs_refcount_btree.c.
 */
#include "refcount.h"
#include "busy.h"
#include "defer.h"

#include <string.h>

#include "alloc.h"

#define AG_FIRST_FREE (RLFS_AGFL_AGBNO + 1)

/* A decoded record: start is the key (flag included). */
struct rrec {
	uint32_t start, len, rc;
};

static bool is_cow(uint32_t key) { return key & RLFS_REFC_COWFLAG; }

/* ------------------------------------------------------------------ */
/* Tree ops                                                            */

static void refc_key_from_rec(void *key, const void *rec)
{
	memcpy(key, rec, 4);
}

/* Check one record of AG agno; 0 or -EUCLEAN (logged against blkno). */
static int check_rec(struct rlfs_mount *mp, uint64_t blkno, uint32_t agno,
		     const struct rlfs_refcount_rec *r)
{
	uint32_t key = rlfs_get32(r->startblock), n = rlfs_get32(r->blockcount),
		 rc = rlfs_get32(r->refcount);
	uint32_t s = key & ~RLFS_REFC_COWFLAG, aglen = rlfs_ag_blocks(mp, agno);
	if (n == 0 || s < AG_FIRST_FREE || s >= aglen || n > aglen - s)
		return rlfs_corrupt(mp, blkno, "refcountbt",
				    "AG %u: record [%u, +%u) outside the AG (%u blocks)", agno, s,
				    n, aglen);
	if (is_cow(key) ? rc != 1 : rc < 2)
		return rlfs_corrupt(mp, blkno, "refcountbt",
				    "AG %u: %s record [%u, +%u) with refcount %u", agno,
				    is_cow(key) ? "CoW staging" : "shared", s, n, rc);
	return 0;
}

static int refc_verify_rec(struct rlfs_btree_cur *cur, const void *rec)
{
	struct rlfs_refcount_rec r;
	memcpy(&r, rec, sizeof(r));
	uint64_t blk = rlfs_agb_to_fsb(cur->mp, cur->agno,
				       rlfs_get32(r.startblock) & ~RLFS_REFC_COWFLAG);
	return check_rec(cur->mp, blk < cur->mp->dblocks ? blk : 0, cur->agno, &r);
}

RLFS_AGBT_ROOT_OPS(refc, refc_root, refc_level)

/* Buffer verifier: generic block checks, owner = the AG the block is in,
 * leaf records sane, sorted and not overlapping. */
static int refcbt_buf_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	int err = rlfs_btree_verify_block(mp, bp, sizeof(struct rlfs_refcount_rec), 4, false);
	if (err)
		return err;
	const struct rlfs_btree_block *blk = bp->data;
	uint32_t agno = rlfs_fsb_to_agno(mp, bp->fsbno);
	if (rlfs_get64(blk->hdr.owner) != agno)
		return rlfs_corrupt(mp, bp->fsbno, "refcountbt", "owner %llu, block is in AG %u",
				    (unsigned long long)rlfs_get64(blk->hdr.owner), agno);
	if (rlfs_get16(blk->level) != 0)
		return 0;
	unsigned n = rlfs_get16(blk->numrecs);
	const uint8_t *p = (const uint8_t *)bp->data + sizeof(*blk);
	uint64_t prev_end = 0; /* key space: start + len of the previous record */
	for (unsigned i = 0; i < n; i++) {
		struct rlfs_refcount_rec r;
		memcpy(&r, p + (size_t)i * sizeof(r), sizeof(r));
		err = check_rec(mp, bp->fsbno, agno, &r);
		if (err)
			return err;
		uint32_t key = rlfs_get32(r.startblock);
		if (i && key < prev_end)
			return rlfs_corrupt(mp, bp->fsbno, "refcountbt",
					    "AG %u: record %u at %u overlaps or is out of order", agno,
					    i + 1, key & ~RLFS_REFC_COWFLAG);
		prev_end = (uint64_t)key + rlfs_get32(r.blockcount);
	}
	return 0;
}

const struct rlfs_buf_ops rlfs_refcountbt_buf_ops = {
	.name = "refcountbt", .magic = RLFS_REFCBT_MAGIC, .has_hdr = true,
	.verify = refcbt_buf_verify,
};

const struct rlfs_btree_ops rlfs_refcountbt_ops = {
	.name = "refcountbt",
	.magic = RLFS_REFCBT_MAGIC,
	.rec_len = sizeof(struct rlfs_refcount_rec),
	.key_len = 4,
	.buf_ops = &rlfs_refcountbt_buf_ops,
	.init_key_from_rec = refc_key_from_rec,
	.cmp_key = rlfs_btree_cmp_le32,
	.verify_rec = refc_verify_rec,
	.get_root = refc_get_root,
	.set_root = refc_set_root,
	.alloc_block = rlfs_agbt_alloc_block,
	.free_block = rlfs_agbt_free_block,
	.owner = rlfs_agbt_owner,
	.agh_blocks_off = offsetof(struct rlfs_agh, refc_blocks),
	.rmap_owner = RLFS_RMAP_OWN_REFC,
};

void rlfs_refcount_cur_init(struct rlfs_btree_cur *cur, struct rlfs_trans *tp, uint32_t agno,
			    struct rlfs_buf *agbp)
{
	rlfs_btree_cur_init(cur, tp, &rlfs_refcountbt_ops, agno, NULL, agbp);
}

/* ------------------------------------------------------------------ */
/* Geometry                                                            */

unsigned rlfs_refcount_maxlevels(struct rlfs_mount *mp)
{
	unsigned space = mp->blocksize - (unsigned)sizeof(struct rlfs_btree_block);
	/* worst case: one record per block of the AG */
	uint64_t nrecs = mp->agblocks;
	uint64_t minl = RLFS_MAX(space / sizeof(struct rlfs_refcount_rec) / 2, 1u);
	uint64_t minn = RLFS_MAX(space / (4 + 8) / 2, 2u);
	uint64_t n = (nrecs + minl - 1) / minl;
	unsigned lev = 1;
	while (n > 1) {
		n = (n + minn - 1) / minn;
		lev++;
	}
	return RLFS_MIN(lev, (unsigned)RLFS_BTREE_MAXLEVELS);
}

uint32_t rlfs_refcount_res(struct rlfs_mount *mp, uint32_t nextents)
{
	/* per extent: two edge splits and two gap inserts, each splitting
	 * every level, plus the free-space tree changes of freeing it */
	return nextents * 4 * rlfs_refcount_maxlevels(mp) + rlfs_alloc_tree_res(mp, nextents);
}

/* ------------------------------------------------------------------ */
/* Record primitives: each one positions a fresh cursor                */

struct ag_ctx {
	struct rlfs_trans *tp;
	uint32_t agno;
	struct rlfs_buf *agbp;
};

static struct rlfs_refcount_rec enc(const struct rrec *r)
{
	struct rlfs_refcount_rec d;
	rlfs_put32(d.startblock, r->start);
	rlfs_put32(d.blockcount, r->len);
	rlfs_put32(d.refcount, r->rc);
	return d;
}

static int cur_get(struct rlfs_btree_cur *cur, struct rrec *r, int *stat)
{
	struct rlfs_refcount_rec d;
	int err = rlfs_btree_get_rec(cur, &d, stat);
	if (err || !*stat)
		return err;
	r->start = rlfs_get32(d.startblock);
	r->len = rlfs_get32(d.blockcount);
	r->rc = rlfs_get32(d.refcount);
	return 0;
}

/* The record found by lookup dir of key; *found 0 if none. */
static int find(struct ag_ctx *a, enum rlfs_btree_lookup dir, uint32_t key, struct rrec *r,
		int *found)
{
	struct rlfs_btree_cur cur;
	rlfs_le32 k = rlfs_le32_of(key);
	int stat;
	*found = 0;
	rlfs_refcount_cur_init(&cur, a->tp, a->agno, a->agbp);
	int err = rlfs_btree_lookup(&cur, dir, &k, &stat);
	if (!err && stat)
		err = cur_get(&cur, r, found);
	rlfs_btree_cur_del(&cur);
	return err;
}

static int fix_agfl(struct ag_ctx *a)
{
	int err = rlfs_alloc_fix_freelist(a->tp, a->agno);
	return err == -ENOSPC ? 0 : err; /* a real shortage shows up in the insert */
}

static int rec_insert(struct ag_ctx *a, const struct rrec *r)
{
	int err = fix_agfl(a);
	if (err)
		return err;
	struct rlfs_btree_cur cur;
	struct rlfs_refcount_rec d = enc(r);
	rlfs_refcount_cur_init(&cur, a->tp, a->agno, a->agbp);
	err = rlfs_btree_insert(&cur, &d);
	rlfs_btree_cur_del(&cur);
	if (err == -EEXIST)
		err = rlfs_corrupt(a->tp->mp,
				   rlfs_agb_to_fsb(a->tp->mp, a->agno, r->start & ~RLFS_REFC_COWFLAG),
				   "refcountbt", "AG %u: record at %u already present", a->agno,
				   r->start & ~RLFS_REFC_COWFLAG);
	return err;
}

/* Position a cursor exactly on the record with key `key`. */
static int lookup_exact(struct ag_ctx *a, struct rlfs_btree_cur *cur, uint32_t key)
{
	rlfs_le32 k = rlfs_le32_of(key);
	int stat;
	rlfs_refcount_cur_init(cur, a->tp, a->agno, a->agbp);
	int err = rlfs_btree_lookup(cur, RLFS_LOOKUP_EQ, &k, &stat);
	if (!err && !stat)
		err = rlfs_corrupt(a->tp->mp,
				   rlfs_agb_to_fsb(a->tp->mp, a->agno, key & ~RLFS_REFC_COWFLAG),
				   "refcountbt", "AG %u: record at %u vanished", a->agno,
				   key & ~RLFS_REFC_COWFLAG);
	return err;
}

/* Overwrite the record whose key is r->start. */
static int rec_update(struct ag_ctx *a, const struct rrec *r)
{
	struct rlfs_btree_cur cur;
	struct rlfs_refcount_rec d = enc(r);
	int err = lookup_exact(a, &cur, r->start);
	if (!err)
		err = rlfs_btree_update(&cur, &d);
	rlfs_btree_cur_del(&cur);
	return err;
}

static int rec_delete(struct ag_ctx *a, uint32_t key)
{
	int err = fix_agfl(a);
	if (err)
		return err;
	struct rlfs_btree_cur cur;
	int stat;
	err = lookup_exact(a, &cur, key);
	if (!err)
		err = rlfs_btree_delete(&cur, &stat);
	rlfs_btree_cur_del(&cur);
	return err;
}

/* ------------------------------------------------------------------ */
/* Adjust                                                              */

/* Split the record crossing key k (start < k < end) into two at k. */
static int split_at(struct ag_ctx *a, uint32_t k)
{
	struct rrec r;
	int found;
	int err = find(a, RLFS_LOOKUP_LE, k, &r, &found);
	if (err || !found || is_cow(r.start) != is_cow(k) || r.start == k ||
	    (uint64_t)r.start + r.len <= k)
		return err;
	struct rrec left = r, right = { k, r.start + r.len - k, r.rc };
	left.len = k - r.start;
	err = rec_update(a, &left);
	if (!err)
		err = rec_insert(a, &right);
	return err;
}

/* Merge adjacent equal-count records of one domain from the record
 * before key lo up to the record starting at key hi. */
static int merge_range(struct ag_ctx *a, uint32_t lo, uint32_t hi)
{
	struct rrec r, nx;
	int found, err;
	uint32_t base = lo & RLFS_REFC_COWFLAG;
	if (lo > base) {
		err = find(a, RLFS_LOOKUP_LE, lo - 1, &r, &found);
		if (!err && found && (r.start & RLFS_REFC_COWFLAG) != base)
			found = 0;
	} else {
		found = 0;
		err = 0;
	}
	if (!err && !found)
		err = find(a, RLFS_LOOKUP_GE, lo, &r, &found);
	while (!err && found && r.start <= hi) {
		uint64_t rend = (uint64_t)r.start + r.len;
		int nfound;
		if (rend > UINT32_MAX)
			break;
		err = find(a, RLFS_LOOKUP_GE, (uint32_t)rend, &nx, &nfound);
		if (err || !nfound)
			break;
		if (nx.start == rend && nx.rc == r.rc && is_cow(nx.start) == is_cow(r.start)) {
			err = rec_delete(a, nx.start);
			if (!err) {
				r.len += nx.len;
				err = rec_update(a, &r);
			}
		} else {
			r = nx;
		}
	}
	return err;
}

/* adjust_ag's delta for a decrease whose frees are deferred (EFI) */
#define DELTA_DEC_DEFER (-2)

/* Adjust the shared-domain counts of [agbno, agbno+len) in one AG: delta
 * +1, -1, or DELTA_DEC_DEFER (-1, blocks reaching 0 queued as an EFI). */
static int adjust_ag(struct ag_ctx *a, uint32_t agbno, uint32_t len, int delta)
{
	struct rlfs_mount *mp = a->tp->mp;
	uint32_t end = agbno + len;
	int err = fix_agfl(a);
	if (!err)
		err = split_at(a, agbno);
	if (!err)
		err = split_at(a, end);
	uint32_t pos = agbno;
	while (!err && pos < end) {
		struct rrec r;
		int found;
		err = find(a, RLFS_LOOKUP_GE, pos, &r, &found);
		if (err)
			break;
		if (!found || r.start >= end || r.start > pos) {
			/* gap [pos, gend): refcount 1 */
			uint32_t gend = found && r.start < end ? r.start : end;
			if (delta > 0) {
				struct rrec n = { pos, gend - pos, 2 };
				err = rec_insert(a, &n);
			} else if (delta == DELTA_DEC_DEFER) {
				err = rlfs_efi_add(a->tp, rlfs_agb_to_fsb(mp, a->agno, pos),
						   gend - pos);
			} else {
				err = rlfs_free_extent(a->tp, rlfs_agb_to_fsb(mp, a->agno, pos),
						       gend - pos);
			}
			pos = gend;
			continue;
		}
		/* r.start == pos; the edge splits make r end inside the range */
		if ((uint64_t)r.start + r.len > end) {
			err = rlfs_corrupt(mp, rlfs_agb_to_fsb(mp, a->agno, r.start), "refcountbt",
					   "AG %u: record [%u, +%u) crosses %u after the split",
					   a->agno, r.start, r.len, end);
			break;
		}
		if (r.rc != RLFS_REFC_REFCOUNT_MAX) {
			uint32_t nrc = delta > 0 ? r.rc + 1 : r.rc - 1;
			if (nrc == 1) {
				err = rec_delete(a, r.start);
				/* shared on disk until this transaction is
				 * durable: busy.h "Unshare-busy ranges" */
				if (!err && delta < 0)
					err = rlfs_busy_insert_unshared(mp, a->agno, r.start, r.len,
									rlfs_busy_cur_seq(mp));
			} else {
				r.rc = nrc;
				err = rec_update(a, &r);
			}
		}
		pos = r.start + r.len;
	}
	if (!err)
		err = merge_range(a, agbno, end);
	return err;
}

/* Run fn over the per-AG pieces of [fsbno, fsbno+len). */
typedef int (*ag_fn)(struct ag_ctx *a, uint32_t agbno, uint32_t len, int arg);

static int for_each_ag(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len, ag_fn fn, int arg)
{
	struct rlfs_mount *mp = tp->mp;
	if (len == 0)
		return 0;
	if (fsbno == 0 || fsbno >= mp->dblocks || len > mp->dblocks - fsbno)
		return rlfs_corrupt(mp, fsbno, "refcountbt", "extent [%llu, +%u) beyond the device",
				    (unsigned long long)fsbno, len);
	if (!rlfs_has_reflink(mp))
		return -EOPNOTSUPP;
	while (len) {
		uint32_t agno = rlfs_fsb_to_agno(mp, fsbno), agbno = rlfs_fsb_to_agbno(mp, fsbno);
		uint32_t aglen = rlfs_ag_blocks(mp, agno);
		uint32_t n = RLFS_MIN(len, aglen - agbno);
		if (agbno < AG_FIRST_FREE)
			return rlfs_corrupt(mp, fsbno, "refcountbt",
					    "extent at AG %u agbno %u overlaps the AG headers", agno,
					    agbno);
		struct ag_ctx a = { tp, agno, NULL };
		int err = rlfs_ag_read_header(tp, agno, &a.agbp);
		if (err)
			return err;
		if (!rlfs_get32(rlfs_agh(a.agbp)->refc_root))
			err = rlfs_corrupt(mp, a.agbp->fsbno, "AG header",
					   "AG %u has no refcount btree", agno);
		if (!err)
			err = fn(&a, agbno, n, arg);
		rlfs_trans_brelse(tp, a.agbp);
		if (err)
			return err;
		fsbno += n;
		len -= n;
	}
	return 0;
}

int rlfs_refcount_increase(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks)
{
	return for_each_ag(tp, fsbno, len_blocks, adjust_ag, 1);
}

int rlfs_refcount_decrease(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks)
{
	return for_each_ag(tp, fsbno, len_blocks, adjust_ag, -1);
}

int rlfs_refcount_decrease_deferred(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks)
{
	return for_each_ag(tp, fsbno, len_blocks, adjust_ag, DELTA_DEC_DEFER);
}

int rlfs_extent_release(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks)
{
	if (!rlfs_has_reflink(tp->mp))
		return rlfs_free_extent(tp, fsbno, len_blocks);
	return rlfs_refcount_decrease(tp, fsbno, len_blocks);
}

/* ------------------------------------------------------------------ */
/* Queries                                                             */

struct shared_q {
	uint32_t agbno, end;        /* range within the AG */
	uint32_t s, n;              /* out: first shared run (n 0: none) */
};

static int shared_ag(struct ag_ctx *a, uint32_t agbno, uint32_t len, struct shared_q *q)
{
	struct rrec r;
	int found;
	uint32_t end = agbno + len;
	q->n = 0;
	int err = find(a, RLFS_LOOKUP_LE, agbno, &r, &found);
	if (!err && (!found || (uint64_t)r.start + r.len <= agbno))
		err = find(a, RLFS_LOOKUP_GE, agbno, &r, &found);
	if (err || !found || r.start >= end)
		return err;
	uint32_t s = RLFS_MAX(r.start, agbno), e = RLFS_MIN(r.start + r.len, end);
	/* extend over adjacent records */
	while (e < end) {
		err = find(a, RLFS_LOOKUP_GE, e, &r, &found);
		if (err || !found || r.start != e)
			break;
		e = RLFS_MIN(r.start + r.len, end);
	}
	q->s = s;
	q->n = e - s;
	return err;
}

int rlfs_refcount_find_shared(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len,
			      uint64_t *shared_fsbno, uint32_t *shared_len)
{
	struct rlfs_mount *mp = tp->mp;
	*shared_fsbno = fsbno + len;
	*shared_len = 0;
	if (len == 0 || !rlfs_has_reflink(mp))
		return 0;
	if (fsbno == 0 || fsbno >= mp->dblocks || len > mp->dblocks - fsbno)
		return rlfs_corrupt(mp, fsbno, "refcountbt", "extent [%llu, +%u) beyond the device",
				    (unsigned long long)fsbno, len);
	while (len) {
		uint32_t agno = rlfs_fsb_to_agno(mp, fsbno), agbno = rlfs_fsb_to_agbno(mp, fsbno);
		uint32_t n = RLFS_MIN(len, rlfs_ag_blocks(mp, agno) - agbno);
		struct ag_ctx a = { tp, agno, NULL };
		struct shared_q q = { 0 };
		int err = rlfs_ag_read_header(tp, agno, &a.agbp);
		if (err)
			return err;
		err = shared_ag(&a, agbno, n, &q);
		rlfs_trans_brelse(tp, a.agbp);
		if (err)
			return err;
		if (q.n) {
			*shared_fsbno = rlfs_agb_to_fsb(mp, agno, q.s);
			*shared_len = q.n;
			return 0;
		}
		fsbno += n;
		len -= n;
	}
	return 0;
}

int rlfs_refcount_get(struct rlfs_trans *tp, uint64_t fsbno, uint32_t *refcount)
{
	struct rlfs_mount *mp = tp->mp;
	*refcount = 1;
	if (!rlfs_has_reflink(mp))
		return 0;
	if (fsbno >= mp->dblocks)
		return -EINVAL;
	uint32_t agno = rlfs_fsb_to_agno(mp, fsbno), agbno = rlfs_fsb_to_agbno(mp, fsbno);
	struct ag_ctx a = { tp, agno, NULL };
	struct rrec r;
	int found;
	int err = rlfs_ag_read_header(tp, agno, &a.agbp);
	if (err)
		return err;
	err = find(&a, RLFS_LOOKUP_LE, agbno, &r, &found);
	rlfs_trans_brelse(tp, a.agbp);
	if (!err && found && (uint64_t)r.start + r.len > agbno)
		*refcount = r.rc;
	return err;
}

/* ------------------------------------------------------------------ */
/* CoW staging domain                                                  */

static int cow_alloc_ag(struct ag_ctx *a, uint32_t agbno, uint32_t len, int unused)
{
	struct rlfs_mount *mp = a->tp->mp;
	uint32_t k = agbno | RLFS_REFC_COWFLAG, kend = k + len;
	struct rrec r;
	int found;
	int err = find(a, RLFS_LOOKUP_LE, k, &r, &found);
	if (!err && found && is_cow(r.start) && (uint64_t)r.start + r.len > k)
		goto overlap;
	if (!err)
		err = find(a, RLFS_LOOKUP_GE, k, &r, &found);
	if (!err && found && r.start < kend)
		goto overlap;
	if (err)
		return err;
	struct rrec n = { k, len, 1 };
	err = rec_insert(a, &n);
	if (!err)
		err = merge_range(a, k, kend);
	return err;
overlap:
	return rlfs_corrupt(mp, rlfs_agb_to_fsb(mp, a->agno, agbno), "refcountbt",
			    "AG %u: staging [%u, +%u) overlaps staging [%u, +%u)", a->agno, agbno,
			    len, r.start & ~RLFS_REFC_COWFLAG, r.len);
}

static int cow_free_ag(struct ag_ctx *a, uint32_t agbno, uint32_t len, int unused)
{
	struct rlfs_mount *mp = a->tp->mp;
	uint32_t k = agbno | RLFS_REFC_COWFLAG, kend = k + len;
	int err = fix_agfl(a);
	if (!err)
		err = split_at(a, k);
	if (!err)
		err = split_at(a, kend);
	uint32_t pos = k;
	while (!err && pos < kend) {
		struct rrec r;
		int found;
		err = find(a, RLFS_LOOKUP_GE, pos, &r, &found);
		if (err)
			break;
		if (!found || r.start != pos || (uint64_t)r.start + r.len > kend) {
			err = rlfs_corrupt(mp, rlfs_agb_to_fsb(mp, a->agno, pos & ~RLFS_REFC_COWFLAG),
					   "refcountbt", "AG %u: staging extent at %u missing", a->agno,
					   pos & ~RLFS_REFC_COWFLAG);
			break;
		}
		err = rec_delete(a, r.start);
		pos = r.start + r.len;
	}
	return err;
}

int rlfs_refcount_cow_alloc(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks)
{
	return for_each_ag(tp, fsbno, len_blocks, cow_alloc_ag, 0);
}

int rlfs_refcount_cow_free(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len_blocks)
{
	return for_each_ag(tp, fsbno, len_blocks, cow_free_ag, 0);
}

int rlfs_refcount_cow_next(struct rlfs_trans *tp, uint32_t agno, uint32_t from_agbno,
			   uint32_t *agbno, uint32_t *len_blocks, bool *found)
{
	struct rlfs_mount *mp = tp->mp;
	*found = false;
	if (!rlfs_has_reflink(mp))
		return 0;
	if (agno >= mp->agcount || from_agbno >= RLFS_REFC_COWFLAG)
		return -EINVAL;
	struct ag_ctx a = { tp, agno, NULL };
	struct rrec r;
	int f;
	int err = rlfs_ag_read_header(tp, agno, &a.agbp);
	if (err)
		return err;
	if (!rlfs_get32(rlfs_agh(a.agbp)->refc_root)) {
		rlfs_trans_brelse(tp, a.agbp);
		return 0;
	}
	err = find(&a, RLFS_LOOKUP_GE, from_agbno | RLFS_REFC_COWFLAG, &r, &f);
	rlfs_trans_brelse(tp, a.agbp);
	if (!err && f && is_cow(r.start)) {
		*agbno = r.start & ~RLFS_REFC_COWFLAG;
		*len_blocks = r.len;
		*found = true;
	}
	return err;
}

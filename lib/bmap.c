/*
 * bmap.c: the data fork block map.
 *
 * The in-core extent list (ip->iext, sorted records in leaves: iext.h) is
 * the authority for reads and block mapping; every change to it
 * is mirrored in the same call into the on-disk fork: nothing to do for
 * inline extents (format EXTENTS: the inode log item encodes ip->iext into
 * the literal area at commit), or the matching bmbt insert/delete/update
 * (format BTREE).  After each public operation the fork format is fixed up:
 * inline extents that no longer fit move into a new bmbt root leaf, and a
 * bmbt whose records fit inline again is freed.
 *
 * Errors leave the in-core list and the disk out of step only inside the
 * transaction: the caller cancels, which restores the joined buffers and
 * (through the inode log item) the in-core list.
 *
 * Model: xfs_bmap.c (xfs_bmapi_write, xfs_bunmapi, xfs_bmap_add_extent_*),
 * xfs_bmap_btree.c, xfs_iext_tree.c (here iext.c: two levels of leaves).
 */
#include "bmap.h"
#include "defer.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "btree.h"
#include "log.h"
#include "refcount.h"
#include "rmap.h"

#define REC_LEN ((uint16_t)sizeof(struct rlfs_bmbt_rec))

static void irec_to_disk(struct rlfs_bmbt_rec *d, const struct rlfs_irec *r)
{
	rlfs_put64(d->startoff, r->startoff);
	rlfs_put64(d->startblock, r->startblock);
	rlfs_put32(d->blockcount, r->blockcount);
	rlfs_put32(d->state, r->state);
}

static void irec_from_disk(struct rlfs_irec *r, const struct rlfs_bmbt_rec *d)
{
	r->startoff = rlfs_get64(d->startoff);
	r->startblock = rlfs_get64(d->startblock);
	r->blockcount = rlfs_get32(d->blockcount);
	r->state = rlfs_get32(d->state);
}

static inline uint64_t irec_end(const struct rlfs_irec *r)
{
	return r->startoff + r->blockcount;
}

/* Largest file block number + 1 a file may map. */
static uint64_t max_fileoff(const struct rlfs_mount *mp)
{
	return rlfs_b_to_fsb(mp, mp->maxbytes);
}

/* One record's sanity, for records read from disk. */
static int irec_check(struct rlfs_mount *mp, struct rlfs_inode *ip, uint64_t where,
		      const struct rlfs_irec *r)
{
	if (r->blockcount == 0 || r->blockcount > RLFS_MAX_EXTLEN ||
	    r->startblock == 0 || r->startblock >= mp->dblocks ||
	    r->startblock + r->blockcount > mp->dblocks ||
	    r->startoff >= max_fileoff(mp) ||
	    r->startoff + r->blockcount > max_fileoff(mp) ||
	    (r->state & ~RLFS_EXT_UNWRITTEN))
		return rlfs_corrupt(mp, where, "bmbt",
				    "ino %llu: bad extent (off %llu, fsbno %llu, len %u, state %u)",
				    (unsigned long long)ip->ino,
				    (unsigned long long)r->startoff,
				    (unsigned long long)r->startblock, r->blockcount, r->state);
	return 0;
}

/* ------------------------------------------------------------------ */
/* bmbt: btree ops                                                      */
/* ------------------------------------------------------------------ */

static int bmbt_buf_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	return rlfs_btree_verify_block(mp, bp, REC_LEN, 8, false);
}

static const struct rlfs_buf_ops rlfs_bmbt_buf_ops = {
	.name = "bmbt",
	.magic = RLFS_BMBT_MAGIC,
	.has_hdr = true,
	.verify = bmbt_buf_verify,
};

static void bmbt_init_key_from_rec(void *key, const void *rec)
{
	memcpy(key, &((const struct rlfs_bmbt_rec *)rec)->startoff, 8);
}

static int bmbt_verify_rec(struct rlfs_btree_cur *cur, const void *rec)
{
	struct rlfs_irec r;
	irec_from_disk(&r, rec);
	return irec_check(cur->mp, cur->ip, cur->ip->root, &r);
}

static void bmbt_get_root(struct rlfs_btree_cur *cur, uint64_t *fsbno, unsigned *nlevels)
{
	*fsbno = cur->ip->root;
	*nlevels = cur->ip->root_level;
}

static void bmbt_set_root(struct rlfs_btree_cur *cur, uint64_t fsbno, unsigned nlevels)
{
	cur->ip->root = fsbno;
	cur->ip->root_level = (uint16_t)nlevels;
	rlfs_trans_log_inode(cur->tp, cur->ip);
}

static int bmbt_alloc(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t hint,
		      uint64_t *fsbno)
{
	struct rlfs_alloc_arg args = {
		.tp = tp,
		.type = RLFS_ALLOC_NEAR,
		.hint_fsbno = hint ? hint : rlfs_ino_to_fsb(ip->mp, ip->ino),
		.minlen = 1,
		.maxlen = 1,
		.alignment = 1,
		.for_btree = true,
	};
	/* (like every allocation, it leaves each AG's reserve for the
	 * AGFL-fed btrees alone: ag_resv.h) */
	int error = rlfs_alloc_extent(&args);
	if (error)
		return error;
	if (!args.fsbno || args.len != 1)
		return -ENOSPC;
	error = rlfs_rmap_update(tp, RLFS_RUI_MAP, args.fsbno, 1, ip->ino, RLFS_RMAP_DATA_META);
	if (error)
		return error;
	*fsbno = args.fsbno;
	ip->nblocks++;
	rlfs_trans_log_inode(tp, ip);
	return 0;
}

static int bmbt_alloc_block(struct rlfs_btree_cur *cur, uint64_t hint_fsbno, uint64_t *fsbno)
{
	return bmbt_alloc(cur->tp, cur->ip, hint_fsbno, fsbno);
}

static int bmbt_free_block(struct rlfs_btree_cur *cur, uint64_t fsbno)
{
	int error = rlfs_rmap_update(cur->tp, RLFS_RUI_UNMAP, fsbno, 1, cur->ip->ino,
				     RLFS_RMAP_DATA_META);
	if (!error)
		error = rlfs_free_extent(cur->tp, fsbno, 1);
	if (error)
		return error;
	if (cur->ip->nblocks)
		cur->ip->nblocks--;
	rlfs_trans_log_inode(cur->tp, cur->ip);
	return 0;
}

static uint64_t bmbt_owner(struct rlfs_btree_cur *cur)
{
	return cur->ip->ino;
}

const struct rlfs_btree_ops rlfs_bmbt_ops = {
	.name = "bmbt",
	.magic = RLFS_BMBT_MAGIC,
	.rec_len = REC_LEN,
	.key_len = 8,
	.overlapping = false,
	.buf_ops = &rlfs_bmbt_buf_ops,
	.init_key_from_rec = bmbt_init_key_from_rec,
	.cmp_key = rlfs_btree_cmp_le64,
	.verify_rec = bmbt_verify_rec,
	.get_root = bmbt_get_root,
	.set_root = bmbt_set_root,
	.alloc_block = bmbt_alloc_block,
	.free_block = bmbt_free_block,
	.owner = bmbt_owner,
};

/* ------------------------------------------------------------------ */
/* In-core extent list                                                  */
/* ------------------------------------------------------------------ */

/* Index of the last extent with startoff <= off, or -1. */
static int64_t ext_search(const struct rlfs_inode *ip, uint64_t off)
{
	return rlfs_iext_search(&ip->iext, off);
}

void rlfs_bmap_lookup(struct rlfs_inode *ip, uint64_t off, struct rlfs_irec *got, bool *found)
{
	*found = false;
	memset(got, 0, sizeof(*got));
	if (!ip->ext_loaded || rlfs_iext_count(&ip->iext) == 0)
		return;
	int64_t i = ext_search(ip, off);
	if (i >= 0) {
		const struct rlfs_irec *e = rlfs_iext_at(&ip->iext, (uint32_t)i);
		if (off < irec_end(e)) {
			*got = *e;
			*found = true;
			return;
		}
	}
	if ((uint64_t)(i + 1) < rlfs_iext_count(&ip->iext))
		*got = *rlfs_iext_at(&ip->iext, (uint32_t)(i + 1));
}

uint32_t rlfs_bmap_inline_max(struct rlfs_inode *ip)
{
	return ip->forkoff / REC_LEN;
}

uint32_t rlfs_bmap_res(struct rlfs_inode *ip, uint32_t nextents)
{
	/*
	 * A realistic bound, not the theoretical worst case (which would hold
	 * back megabytes per write): a bmbt leaf takes at least maxrecs/2
	 * new records before it splits, and each split may climb every level
	 * plus a new root; one more block for the extents -> btree
	 * conversion.  The free-space trees absorb a handful of extent
	 * changes per AGFL refill.  The transaction layer charges any overrun
	 * to free space directly, so an estimate that is short never breaks
	 * the accounting; the allocator then reports a real -ENOSPC.
	 */
	struct rlfs_mount *mp = ip->mp;
	uint32_t levels = ip->format == RLFS_FMT_BTREE && ip->root_level ? ip->root_level : 1;
	uint32_t per_leaf = RLFS_MAX((mp->blocksize - 72) / REC_LEN / 2, 1u);
	uint32_t splits = nextents / per_leaf + 1;
	uint32_t bm = splits * (levels + 1) + 1;
	uint32_t refc = 0;
	if (rlfs_has_reflink(mp)) {
		/* releasing shared extents splits refcount records at the
		 * range edges: two records per extent at most */
		uint32_t per_refc = RLFS_MAX((mp->blocksize - 72) / 12 / 2, 1u);
		refc = (2 * nextents / per_refc + 1) * (rlfs_refcount_maxlevels(mp) + 1);
	}
	return bm + refc + rlfs_alloc_tree_res(mp, RLFS_MIN(nextents + bm, 4u));
}

/* ------------------------------------------------------------------ */
/* Fork primitives: in-core list + bmbt kept in step                    */
/* ------------------------------------------------------------------ */

static int bt_lookup_eq(struct rlfs_btree_cur *cur, uint64_t startoff)
{
	rlfs_le64 key = rlfs_le64_of(startoff);
	int stat = 0;
	int error = rlfs_btree_lookup(cur, RLFS_LOOKUP_EQ, &key, &stat);
	if (error)
		return error;
	if (!stat)
		return rlfs_corrupt(cur->mp, cur->ip->root, "bmbt",
				    "ino %llu: extent at file block %llu missing from bmbt",
				    (unsigned long long)cur->ip->ino,
				    (unsigned long long)startoff);
	return 0;
}

/* ------------------------------------------------------------------ */
/* The rmap side of data-fork changes                                  */

/*
 * The rmap side of data-fork changes: one RUI for file blocks [off,
 * off+len) of r's mapping, op RLFS_RUI_MAP / _UNMAP / _CONVERT (to r's
 * state).  Callers queue exactly the blocks whose mapping changes —
 * fork_add the range it maps, rlfs_bmap_unmap the range it unmaps,
 * rlfs_bmap_convert_written the range it converts — never the neighbours
 * a fork record merge or split touches (XFS calls xfs_rmap_map_extent &
 * co. the same way from xfs_bmap_add_extent_* and xfs_bmap_del_extent_real).
 * That keeps every intent in the log independent of the others: log
 * recovery finishes the pending intents in log order, not in the order the
 * chain ran them, so an RUI naming blocks outside its change (an "unmap
 * the whole old record, map what is left" pair) would meet a record
 * another recovered intent had split first.  Nothing without RMAP.
 */
static int rui_part(struct rlfs_trans *tp, struct rlfs_inode *ip, unsigned op,
		    const struct rlfs_irec *r, uint64_t off, uint64_t len)
{
	if (len == 0)
		return 0;
	uint64_t flags = (r->state & RLFS_EXT_UNWRITTEN) ? RLFS_RMAP_OFF_UNWRITTEN : 0;
	return rlfs_rui_add(tp, op, r->startblock + (off - r->startoff), (uint32_t)len, ip->ino,
			    off | flags);
}

static int fork_insert(struct rlfs_trans *tp, struct rlfs_inode *ip, uint32_t idx,
		       const struct rlfs_irec *r)
{
	int error = rlfs_inode_ext_reserve(ip);
	if (!error)
		error = rlfs_iext_insert(&ip->iext, idx, r);
	if (error)
		return error;
	if (ip->format == RLFS_FMT_BTREE) {
		struct rlfs_btree_cur cur;
		struct rlfs_bmbt_rec d;
		irec_to_disk(&d, r);
		rlfs_btree_cur_init(&cur, tp, &rlfs_bmbt_ops, 0, ip, NULL);
		error = rlfs_btree_insert(&cur, &d);
		rlfs_btree_cur_del(&cur);
		if (error) {
			rlfs_iext_remove(&ip->iext, idx);
			return error;
		}
	}
	rlfs_inode_ext_logged(ip, RLFS_EXT_INSERT, idx, NULL);
	return 0;
}

static int fork_delete(struct rlfs_trans *tp, struct rlfs_inode *ip, uint32_t idx)
{
	int error = rlfs_inode_ext_reserve(ip);
	if (error)
		return error;
	if (ip->format == RLFS_FMT_BTREE) {
		struct rlfs_btree_cur cur;
		int stat = 0;
		rlfs_btree_cur_init(&cur, tp, &rlfs_bmbt_ops, 0, ip, NULL);
		error = bt_lookup_eq(&cur, rlfs_iext_at(&ip->iext, idx)->startoff);
		if (!error)
			error = rlfs_btree_delete(&cur, &stat);
		rlfs_btree_cur_del(&cur);
		if (error)
			return error;
	}
	struct rlfs_irec old = *rlfs_iext_at(&ip->iext, idx);
	rlfs_iext_remove(&ip->iext, idx);
	rlfs_inode_ext_logged(ip, RLFS_EXT_DELETE, idx, &old);
	return 0;
}

static int fork_update(struct rlfs_trans *tp, struct rlfs_inode *ip, uint32_t idx,
		       const struct rlfs_irec *r)
{
	int error = rlfs_inode_ext_reserve(ip);
	if (error)
		return error;
	if (ip->format == RLFS_FMT_BTREE) {
		struct rlfs_btree_cur cur;
		struct rlfs_bmbt_rec d;
		irec_to_disk(&d, r);
		rlfs_btree_cur_init(&cur, tp, &rlfs_bmbt_ops, 0, ip, NULL);
		error = bt_lookup_eq(&cur, rlfs_iext_at(&ip->iext, idx)->startoff);
		if (!error)
			error = rlfs_btree_update(&cur, &d);
		rlfs_btree_cur_del(&cur);
		if (error)
			return error;
	}
	struct rlfs_irec old = *rlfs_iext_at(&ip->iext, idx);
	*rlfs_iext_at(&ip->iext, idx) = *r;
	rlfs_inode_ext_logged(ip, RLFS_EXT_UPDATE, idx, &old);
	return 0;
}

/* Mergeable: contiguous in the file and on disk, same state, and in the
 * same AG (refcount ranges are per AG: an extent never crosses an AG end,
 * so every data-fork extent can be released with per-AG adjustments and
 * the allocator's "never across an AG end" holds for mappings too). */
static bool irec_contig(struct rlfs_mount *mp, const struct rlfs_irec *a,
			const struct rlfs_irec *b)
{
	return irec_end(a) == b->startoff &&
	       rlfs_fsb_to_agno(mp, a->startblock) == rlfs_fsb_to_agno(mp, b->startblock) &&
	       a->startblock + a->blockcount == b->startblock &&
	       a->state == b->state &&
	       (uint64_t)a->blockcount + b->blockcount <= RLFS_MAX_EXTLEN;
}

/* Put r into a hole of the fork, merging with contiguous neighbours
 * (the fork records only: the caller queues the rmap change). */
static int fork_add_rec(struct rlfs_trans *tp, struct rlfs_inode *ip, const struct rlfs_irec *r)
{
	int64_t i = ext_search(ip, r->startoff);
	uint32_t j = (uint32_t)(i + 1);

	if (r->blockcount == 0 || r->blockcount > RLFS_MAX_EXTLEN)
		return -EINVAL;
	/* neighbours, copied: the changes below move records */
	struct rlfs_irec pi = { 0 }, pj = { 0 };
	if (i >= 0)
		pi = *rlfs_iext_at(&ip->iext, (uint32_t)i);
	if (j < rlfs_iext_count(&ip->iext))
		pj = *rlfs_iext_at(&ip->iext, j);
	if (i >= 0 && irec_end(&pi) > r->startoff)
		return -EEXIST;
	if (pj.blockcount && pj.startoff < irec_end(r))
		return -EEXIST;

	bool left = i >= 0 && irec_contig(ip->mp, &pi, r);
	bool right = pj.blockcount && irec_contig(ip->mp, r, &pj);
	if (left && right &&
	    (uint64_t)pi.blockcount + r->blockcount + pj.blockcount <= RLFS_MAX_EXTLEN) {
		struct rlfs_irec n = pi;
		n.blockcount += r->blockcount + pj.blockcount;
		int error = fork_delete(tp, ip, j);
		if (error)
			return error;
		return fork_update(tp, ip, (uint32_t)i, &n);
	}
	if (left) {
		struct rlfs_irec n = pi;
		n.blockcount += r->blockcount;
		return fork_update(tp, ip, (uint32_t)i, &n);
	}
	if (right) {
		struct rlfs_irec n = *r;
		n.blockcount += pj.blockcount;
		return fork_update(tp, ip, j, &n);
	}
	return fork_insert(tp, ip, j, r);
}

/* Map r into a hole: fork records and the rmap. */
static int fork_add(struct rlfs_trans *tp, struct rlfs_inode *ip, const struct rlfs_irec *r)
{
	int error = fork_add_rec(tp, ip, r);
	return error ? error : rui_part(tp, ip, RLFS_RUI_MAP, r, r->startoff, r->blockcount);
}

/* Move inline extents into a new bmbt root leaf. */
static int fork_to_btree(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_buf *bp;
	struct rlfs_btree_cur cur;
	uint64_t fsbno;
	int error;

	error = bmbt_alloc(tp, ip, 0, &fsbno);
	if (error)
		return error;
	error = rlfs_trans_get_buf(tp, fsbno, &rlfs_bmbt_buf_ops, ip->ino, &bp);
	if (error)
		return error;
	rlfs_btree_init_block(mp, bp, &rlfs_bmbt_ops, 0, ip->ino);
	rlfs_trans_log_buf(tp, bp);
	rlfs_trans_brelse(tp, bp);
	ip->root = fsbno;
	ip->root_level = 1;
	ip->format = RLFS_FMT_BTREE;
	rlfs_trans_log_inode(tp, ip);

	rlfs_btree_cur_init(&cur, tp, &rlfs_bmbt_ops, 0, ip, NULL);
	for (uint32_t k = 0; k < rlfs_iext_count(&ip->iext) && !error; k++) {
		struct rlfs_bmbt_rec d;
		irec_to_disk(&d, rlfs_iext_at(&ip->iext, k));
		error = rlfs_btree_insert(&cur, &d);
	}
	rlfs_btree_cur_del(&cur);
	return error;
}

/* Free the bmbt; the records live inline again. */
static int fork_to_extents(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	struct rlfs_btree_cur cur;
	rlfs_btree_cur_init(&cur, tp, &rlfs_bmbt_ops, 0, ip, NULL);
	int error = rlfs_btree_destroy(&cur);
	rlfs_btree_cur_del(&cur);
	if (error)
		return error;
	ip->root = 0;
	ip->root_level = 0;
	ip->format = RLFS_FMT_EXTENTS;
	rlfs_trans_log_inode(tp, ip);
	return 0;
}

static int fork_fixup(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	uint32_t max = rlfs_bmap_inline_max(ip);
	int error = 0;
	if (ip->format != RLFS_FMT_BTREE && rlfs_iext_count(&ip->iext) > max)
		error = fork_to_btree(tp, ip);
	else if (ip->format == RLFS_FMT_BTREE && rlfs_iext_count(&ip->iext) <= max)
		error = fork_to_extents(tp, ip);
	rlfs_trans_log_inode(tp, ip);
	return error;
}

/* ------------------------------------------------------------------ */
/* Loading                                                              */
/* ------------------------------------------------------------------ */

static int load_append(struct rlfs_inode *ip, const struct rlfs_irec *r, uint64_t where)
{
	struct rlfs_mount *mp = ip->mp;
	int error = irec_check(mp, ip, where, r);
	if (error)
		return error;
	uint32_t n = rlfs_iext_count(&ip->iext);
	if (n && irec_end(rlfs_iext_at(&ip->iext, n - 1)) > r->startoff)
		return rlfs_corrupt(mp, where, "bmbt",
				    "ino %llu: extents out of order or overlapping at file block %llu",
				    (unsigned long long)ip->ino, (unsigned long long)r->startoff);
	return rlfs_iext_insert(&ip->iext, n, r);
}

static int load_rec_fn(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct rlfs_irec r;
	irec_from_disk(&r, rec);
	return load_append(cur->ip, &r, cur->ip->root);
}

int rlfs_bmap_load(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	struct rlfs_mount *mp = ip->mp;
	int error = 0;

	rlfs_iext_destroy(&ip->iext);
	ip->ext_loaded = false;
	if (ip->format == RLFS_FMT_EXTENTS || ip->format == RLFS_FMT_NONE) {
		uint32_t max = rlfs_bmap_inline_max(ip);
		const struct rlfs_bmbt_rec *d = (const struct rlfs_bmbt_rec *)ip->literal;
		for (uint32_t k = 0; k < max; k++) {
			struct rlfs_irec r;
			irec_from_disk(&r, &d[k]);
			if (r.blockcount == 0)
				break;
			error = load_append(ip, &r, rlfs_ino_to_fsb(mp, ip->ino));
			if (error)
				return error;
		}
	} else if (ip->format == RLFS_FMT_BTREE) {
		struct rlfs_btree_cur cur;
		rlfs_btree_cur_init(&cur, tp, &rlfs_bmbt_ops, 0, ip, NULL);
		error = rlfs_btree_query_all(&cur, load_rec_fn, NULL);
		rlfs_btree_cur_del(&cur);
		if (error) {
			rlfs_iext_destroy(&ip->iext);
			return error < 0 ? error : -EUCLEAN;
		}
	} else {
		return rlfs_corrupt(mp, rlfs_ino_to_fsb(mp, ip->ino), "inode",
				    "ino %llu: data fork format %u has no extents",
				    (unsigned long long)ip->ino, ip->format);
	}
	ip->ext_loaded = true;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Allocation                                                           */
/* ------------------------------------------------------------------ */

int rlfs_bmap_alloc_range(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t off,
			  uint64_t len, bool unwritten, uint32_t *allocs_left,
			  uint64_t *mapped_blocks)
{
	struct rlfs_mount *mp = tp->mp;
	int error = 0;

	*mapped_blocks = 0;
	if (!ip->ext_loaded)
		return -EINVAL;
	if (off >= max_fileoff(mp) || len > max_fileoff(mp) - off)
		return -EFBIG;
	rlfs_trans_ijoin(tp, ip);
	while (len > 0) {
		if (allocs_left && *allocs_left == 0)
			break;
		uint64_t want = RLFS_MIN(len, (uint64_t)RLFS_MAX_EXTLEN);
		int64_t i = ext_search(ip, off);
		const struct rlfs_irec *prev = i >= 0 ? rlfs_iext_at(&ip->iext, i) : NULL;
		if (prev && irec_end(prev) > off) {
			error = -EEXIST;
			break;
		}
		if ((uint64_t)(i + 1) < rlfs_iext_count(&ip->iext)) {
			uint64_t room = rlfs_iext_at(&ip->iext, i + 1)->startoff - off;
			want = RLFS_MIN(want, room);
		}
		struct rlfs_alloc_arg args = {
			.tp = tp, .minlen = 1, .maxlen = (uint32_t)want, .alignment = 1,
		};
		bool got = false;
		uint64_t hint = rlfs_ino_to_fsb(mp, ip->ino);
		if (prev) {
			uint64_t pend = prev->startblock + prev->blockcount;
			hint = pend + (off - irec_end(prev));
			if (hint >= mp->dblocks)
				hint = pend < mp->dblocks ? pend : 0;
			if (irec_end(prev) == off && pend < mp->dblocks) {
				args.type = RLFS_ALLOC_EXACT;
				args.hint_fsbno = pend;
				error = rlfs_alloc_extent(&args);
				if (error && error != -ENOSPC)
					break;
				got = !error && args.fsbno;
			}
		}
		if (!got) {
			args.type = RLFS_ALLOC_NEAR;
			args.hint_fsbno = hint;
			args.minlen = (uint32_t)want;
			error = rlfs_alloc_extent(&args);
			if (error && error != -ENOSPC)
				break;
			got = !error && args.fsbno;
		}
		if (!got) {
			args.type = RLFS_ALLOC_ANY;
			args.hint_fsbno = hint;
			args.minlen = 1;
			error = rlfs_alloc_extent(&args);
			if (error)
				break;
			got = args.fsbno != 0;
		}
		if (!got || args.len == 0 || args.len > want ||
		    args.fsbno + args.len > mp->dblocks) {
			error = !got ? -ENOSPC :
				rlfs_corrupt(mp, args.fsbno, "alloc",
					     "ino %llu: allocator gave %u blocks at fsbno %llu for %llu wanted",
					     (unsigned long long)ip->ino, args.len,
					     (unsigned long long)args.fsbno, (unsigned long long)want);
			break;
		}
		if (allocs_left)
			(*allocs_left)--;
		struct rlfs_irec r = {
			.startoff = off, .startblock = args.fsbno, .blockcount = args.len,
			.state = unwritten ? RLFS_EXT_UNWRITTEN : 0,
		};
		ip->nblocks += args.len;
		error = fork_add(tp, ip, &r);
		if (error)
			break;
		off += args.len;
		len -= args.len;
		*mapped_blocks += args.len;
	}
	if (error)
		return error; /* the caller cancels: no format fix-up */
	return fork_fixup(tp, ip);
}

int rlfs_bmap_alloc(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t off,
		    uint64_t len, bool unwritten)
{
	uint64_t mapped;
	return rlfs_bmap_alloc_range(tp, ip, off, len, unwritten, NULL, &mapped);
}

int rlfs_bmap_map_extent(struct rlfs_trans *tp, struct rlfs_inode *ip,
			 const struct rlfs_irec *rec)
{
	struct rlfs_mount *mp = tp->mp;
	if (!ip->ext_loaded)
		return -EINVAL;
	if (rec->blockcount == 0 || rec->blockcount > RLFS_MAX_EXTLEN ||
	    rec->startblock == 0 || rec->startblock + rec->blockcount > mp->dblocks ||
	    rec->startoff + rec->blockcount > max_fileoff(mp))
		return -EINVAL;
	rlfs_trans_ijoin(tp, ip);
	int error = fork_add(tp, ip, rec);
	if (error)
		return error;
	ip->nblocks += rec->blockcount;
	return fork_fixup(tp, ip);
}

/* ------------------------------------------------------------------ */
/* Unmapping                                                            */
/* ------------------------------------------------------------------ */

int rlfs_bmap_unmap(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t off,
		    uint64_t len, unsigned free_mode, uint32_t max_extents, bool *done)
{
	uint64_t end = len > UINT64_MAX - off ? UINT64_MAX : off + len;
	uint32_t n = 0;
	int error = 0;

	*done = false;
	if (!ip->ext_loaded) {
		*done = true;
		return 0;
	}
	rlfs_trans_ijoin(tp, ip);
	while (end > off) {
		int64_t i = ext_search(ip, end - 1);
		if (i < 0 || irec_end(rlfs_iext_at(&ip->iext, i)) <= off) {
			*done = true;
			break;
		}
		if (max_extents && n >= max_extents)
			break;
		struct rlfs_irec e = *rlfs_iext_at(&ip->iext, i);
		uint64_t s = RLFS_MAX(e.startoff, off);
		uint64_t t = RLFS_MIN(irec_end(&e), end);
		uint64_t fsb = e.startblock + (s - e.startoff);
		uint32_t cnt = (uint32_t)(t - s);

		if (s == e.startoff && t == irec_end(&e)) {
			error = fork_delete(tp, ip, (uint32_t)i);
		} else if (s == e.startoff) {
			struct rlfs_irec r = e;
			r.startoff = t;
			r.startblock = e.startblock + (t - e.startoff);
			r.blockcount = (uint32_t)(irec_end(&e) - t);
			error = fork_update(tp, ip, (uint32_t)i, &r);
		} else if (t == irec_end(&e)) {
			struct rlfs_irec r = e;
			r.blockcount = (uint32_t)(s - e.startoff);
			error = fork_update(tp, ip, (uint32_t)i, &r);
		} else {
			struct rlfs_irec l = e, r = e;
			l.blockcount = (uint32_t)(s - e.startoff);
			r.startoff = t;
			r.startblock = e.startblock + (t - e.startoff);
			r.blockcount = (uint32_t)(irec_end(&e) - t);
			error = fork_update(tp, ip, (uint32_t)i, &l);
			if (!error)
				error = fork_insert(tp, ip, (uint32_t)i + 1, &r);
		}
		if (!error)
			error = rui_part(tp, ip, RLFS_RUI_UNMAP, &e, s, cnt);
		if (error)
			break;
		if (free_mode == RLFS_BUNMAP_DEFER) {
			/* a CUI decrease (EFI without REFLINK) finished after
			 * tp commits; the unmap and the intent commit together */
			error = rlfs_defer_extent_release(tp, fsb, cnt);
			if (error)
				break;
		} else if (free_mode) {
			/* data blocks may be shared: drop one reference (frees
			 * them at 0; a plain free without the REFLINK feature) */
			error = rlfs_extent_release(tp, fsb, cnt);
			if (error)
				break;
		}
		ip->nblocks = ip->nblocks >= cnt ? ip->nblocks - cnt : 0;
		n++;
		end = s;
	}
	if (end <= off)
		*done = true;
	if (error)
		return error; /* the caller cancels: no format fix-up */
	return fork_fixup(tp, ip);
}

/* ------------------------------------------------------------------ */
/* Unwritten -> written                                                 */
/* ------------------------------------------------------------------ */

int rlfs_bmap_convert_written(struct rlfs_trans *tp, struct rlfs_inode *ip,
			      uint64_t off, uint64_t len)
{
	uint64_t end = len > UINT64_MAX - off ? UINT64_MAX : off + len;
	uint64_t pos = off;
	int error = 0;

	if (!ip->ext_loaded)
		return -EINVAL;
	rlfs_trans_ijoin(tp, ip);
	while (pos < end && !error) {
		int64_t i = ext_search(ip, pos);
		if (i < 0 || irec_end(rlfs_iext_at(&ip->iext, i)) <= pos) {
			uint64_t j = (uint64_t)(i + 1);
			if (j >= rlfs_iext_count(&ip->iext) || rlfs_iext_at(&ip->iext, j)->startoff >= end)
				break;
			pos = rlfs_iext_at(&ip->iext, j)->startoff;
			continue;
		}
		struct rlfs_irec e = *rlfs_iext_at(&ip->iext, i);
		uint64_t t = RLFS_MIN(irec_end(&e), end);
		if (!(e.state & RLFS_EXT_UNWRITTEN)) {
			pos = t;
			continue;
		}
		struct rlfs_irec mid = {
			.startoff = pos, .startblock = e.startblock + (pos - e.startoff),
			.blockcount = (uint32_t)(t - pos), .state = 0,
		};
		bool has_left = pos > e.startoff, has_right = t < irec_end(&e);
		struct rlfs_irec l = e, r = e;
		l.blockcount = (uint32_t)(pos - e.startoff);
		r.startoff = t;
		r.startblock = e.startblock + (t - e.startoff);
		r.blockcount = (uint32_t)(irec_end(&e) - t);

		if (has_left) {
			error = fork_update(tp, ip, (uint32_t)i, &l);
			if (!error && has_right)
				error = fork_insert(tp, ip, (uint32_t)i + 1, &r);
		} else {
			error = fork_delete(tp, ip, (uint32_t)i);
			if (!error && has_right)
				error = fork_insert(tp, ip, (uint32_t)i, &r);
		}
		if (!error)
			error = fork_add_rec(tp, ip, &mid);
		if (!error)
			error = rui_part(tp, ip, RLFS_RUI_CONVERT, &mid, pos, t - pos);
		pos = t;
	}
	if (error)
		return error; /* the caller cancels: no format fix-up */
	return fork_fixup(tp, ip);
}

/* ------------------------------------------------------------------ */
/* Check                                                                */
/* ------------------------------------------------------------------ */

struct check_ctx {
	struct rlfs_inode *ip;
	uint32_t idx;
};

static int check_rec_fn(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct check_ctx *c = priv;
	struct rlfs_irec r;
	irec_from_disk(&r, rec);
	if (c->idx >= rlfs_iext_count(&c->ip->iext) || memcmp(&r, rlfs_iext_at(&c->ip->iext, c->idx), sizeof(r)) != 0)
		return rlfs_corrupt(cur->mp, cur->ip->root, "bmbt",
				    "ino %llu: bmbt record %u (off %llu) differs from in-core list",
				    (unsigned long long)c->ip->ino, c->idx,
				    (unsigned long long)r.startoff);
	c->idx++;
	return 0;
}

bool rlfs_bmap_repair_fits(const struct rlfs_mount *mp, uint64_t n, uint32_t log_blocks)
{
	/* One transaction, so one checkpoint, which must fit in the log
	 * (log_cil.c refuses a larger one): the new bmbt's blocks are logged
	 * whole.  Records inserted in order leave half-full leaves; count
	 * those, their nodes, and 48 blocks for the free-space, rmap and
	 * header blocks the frees and allocations touch, against three
	 * quarters of the log (the rest: record headers, a wrap; measured:
	 * 11,000 extents, 133 new bmbt blocks, commit fine in a log of 256
	 * blocks). */
	uint64_t half = RLFS_MAX((mp->blocksize - 72) / REC_LEN / 2, 1u);
	uint64_t leaves = n / half + 1;
	uint64_t est = leaves + leaves / half + 1 + 48;

	return est <= (uint64_t)log_blocks * 3 / 4;
}

int rlfs_bmap_repair_fork(struct rlfs_trans *tp, struct rlfs_inode *ip,
			  const struct rlfs_irec *ext, uint32_t n,
			  const struct rlfs_irec *old_bmbt, uint32_t nold)
{
	struct rlfs_mount *mp = tp->mp;
	int error;

	if (!ip->ext_loaded || rlfs_iext_count(&ip->iext) || ip->format != RLFS_FMT_EXTENTS)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		const struct rlfs_irec *r = &ext[i];

		if (r->blockcount == 0 || r->blockcount > RLFS_MAX_EXTLEN ||
		    (r->state & ~RLFS_EXT_UNWRITTEN) ||
		    (i && irec_end(&ext[i - 1]) > r->startoff) ||
		    r->startblock == 0 || r->startblock + r->blockcount > mp->dblocks ||
		    rlfs_fsb_to_agno(mp, r->startblock) !=
		    rlfs_fsb_to_agno(mp, r->startblock + r->blockcount - 1))
			return -EINVAL;
	}
	if (mp->log && !rlfs_bmap_repair_fits(mp, n, mp->log->size_blocks))
		return -EFBIG;
	/* the old bmbt: its blocks leave the inode's rmap and are freed */
	for (uint32_t i = 0; i < nold; i++) {
		const struct rlfs_irec *o = &old_bmbt[i];

		error = rlfs_rmap_update(tp, RLFS_RUI_UNMAP, o->startblock, o->blockcount,
					 ip->ino, RLFS_RMAP_DATA_META);
		if (!error)
			error = rlfs_free_extent(tp, o->startblock, o->blockcount);
		if (error)
			return error;
	}
	/* the recovered list, then a new bmbt if it does not fit inline;
	 * the data blocks' refcounts and rmap records already say this */
	error = 0;
	for (uint32_t i = 0; i < n && !error; i++) {
		error = rlfs_inode_ext_reserve(ip);
		if (!error)
			error = rlfs_iext_insert(&ip->iext, i, &ext[i]);
		if (error)
			break;
		rlfs_inode_ext_logged(ip, RLFS_EXT_INSERT, i, NULL);
	}
	if (!error && n > rlfs_bmap_inline_max(ip))
		error = fork_to_btree(tp, ip);
	rlfs_trans_log_inode(tp, ip);
	return error;
}

int rlfs_bmap_check(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	struct rlfs_mount *mp = tp->mp;
	uint64_t fsb = rlfs_ino_to_fsb(mp, ip->ino);
	int error;

	if (!ip->ext_loaded)
		return 0;
	for (uint32_t k = 0; k < rlfs_iext_count(&ip->iext); k++) {
		const struct rlfs_irec *r = rlfs_iext_at(&ip->iext, k);
		error = irec_check(mp, ip, fsb, r);
		if (error)
			return error;
		if (k && irec_end(rlfs_iext_at(&ip->iext, k - 1)) > r->startoff)
			return rlfs_corrupt(mp, fsb, "bmap", "ino %llu: in-core extents overlap at %u",
					    (unsigned long long)ip->ino, k);
	}
	if (ip->format == RLFS_FMT_BTREE) {
		if (rlfs_iext_count(&ip->iext) <= rlfs_bmap_inline_max(ip))
			return rlfs_corrupt(mp, fsb, "bmap",
					    "ino %llu: btree format with only %u extents",
					    (unsigned long long)ip->ino, rlfs_iext_count(&ip->iext));
		struct rlfs_btree_cur cur;
		struct check_ctx c = { .ip = ip };
		rlfs_btree_cur_init(&cur, tp, &rlfs_bmbt_ops, 0, ip, NULL);
		error = rlfs_btree_check(&cur);
		if (!error)
			error = rlfs_btree_query_all(&cur, check_rec_fn, &c);
		rlfs_btree_cur_del(&cur);
		if (error)
			return error < 0 ? error : -EUCLEAN;
		if (c.idx != rlfs_iext_count(&ip->iext))
			return rlfs_corrupt(mp, ip->root, "bmbt",
					    "ino %llu: bmbt has %u records, in-core list %u",
					    (unsigned long long)ip->ino, c.idx, rlfs_iext_count(&ip->iext));
		return 0;
	}
	/* inline: compare with the inode in its cluster buffer */
	struct rlfs_buf *bp;
	error = rlfs_trans_read_buf(tp, fsb, &rlfs_inode_buf_ops, RLFS_OWNER_ANY, &bp);
	if (error)
		return error;
	const struct rlfs_dinode *dip = (const struct rlfs_dinode *)((const uint8_t *)bp->data +
				(size_t)rlfs_ino_to_slot(mp, ip->ino) * mp->inodesize);
	const struct rlfs_bmbt_rec *d =
		(const struct rlfs_bmbt_rec *)((const uint8_t *)dip + RLFS_DINODE_CORE);
	error = 0;
	if (rlfs_get32(dip->nextents) != rlfs_iext_count(&ip->iext) || dip->format != ip->format)
		error = rlfs_corrupt(mp, fsb, "inode",
				     "ino %llu: disk has %u extents (format %u), in-core %u (format %u)",
				     (unsigned long long)ip->ino, rlfs_get32(dip->nextents),
				     dip->format, rlfs_iext_count(&ip->iext), ip->format);
	for (uint32_t k = 0; !error && k < rlfs_iext_count(&ip->iext); k++) {
		struct rlfs_irec r;
		irec_from_disk(&r, &d[k]);
		if (memcmp(&r, rlfs_iext_at(&ip->iext, k), sizeof(r)) != 0)
			error = rlfs_corrupt(mp, fsb, "inode",
					     "ino %llu: inline extent %u differs from in-core list",
					     (unsigned long long)ip->ino, k);
	}
	rlfs_trans_brelse(tp, bp);
	return error;
}

/*
 * btree.c: the generic b+tree (see btree.h for the contract and layout).
 *
 * Conventions: levels are numbered from the leaves (level 0) up to the root
 * (level nlevels - 1); entry indexes are 1-based as in XFS.  A "slot" is
 * one node key slot (low key, plus high key in overlapping trees).  The
 * keys of a block are its low key (the key of its first entry) and, for
 * overlapping trees, its high key (the largest high key of any record
 * below it); the parent's slot for a block always equals the block's keys.
 *
 * Modifying operations follow the cursor path: an insert that splits a
 * block hands a new slot up to the parent (growing a new root at the top),
 * a delete that leaves a block under half full borrows an entry from a
 * sibling under the same parent or merges with it and removes the merged
 * block's slot from the parent (collapsing a root with one child).  After
 * every change the keys are refreshed up the path until nothing changes.
 * Structural problems found on the way give rlfs_corrupt() + -EUCLEAN;
 * nothing here trusts a value read from disk.
 *
 * Model: xfsprogs libxfs/xfs_btree.c (lookup, increment, insrec/split/
 * new root, delrec with lshift/rshift/join, update_keys, overlapped query
 * range).  Own code.
 */
#include "btree.h"

#include <string.h>

#define HDR_LEN sizeof(struct rlfs_btree_block)

/* One entry of a block at some level: a record (leaves) or a slot and a
 * child pointer (nodes). */
struct ent {
	uint8_t b[RLFS_BTREE_MAX_RECLEN];
	uint64_t ptr;
};

/* ---- raw block accessors ---- */

static struct rlfs_btree_block *bblk(struct rlfs_buf *bp) { return bp->data; }
static unsigned bb_numrecs(struct rlfs_buf *bp) { return rlfs_get16(bblk(bp)->numrecs); }
static unsigned bb_level(struct rlfs_buf *bp) { return rlfs_get16(bblk(bp)->level); }
static uint64_t bb_left(struct rlfs_buf *bp) { return rlfs_get64(bblk(bp)->leftsib); }
static uint64_t bb_right(struct rlfs_buf *bp) { return rlfs_get64(bblk(bp)->rightsib); }
static void bb_set_numrecs(struct rlfs_buf *bp, unsigned n) { rlfs_put16(bblk(bp)->numrecs, (uint16_t)n); }
static void bb_set_left(struct rlfs_buf *bp, uint64_t v) { rlfs_put64(bblk(bp)->leftsib, v); }
static void bb_set_right(struct rlfs_buf *bp, uint64_t v) { rlfs_put64(bblk(bp)->rightsib, v); }

static unsigned raw_maxrecs(uint32_t blocksize, unsigned rec_len, unsigned key_len,
			    bool overlapping, bool leaf)
{
	unsigned sz = leaf ? rec_len : key_len * (overlapping ? 2u : 1u) + 8u;
	if (blocksize <= HDR_LEN || sz == 0)
		return 0;
	return (unsigned)((blocksize - HDR_LEN) / sz);
}

unsigned rlfs_btree_maxrecs(struct rlfs_mount *mp, const struct rlfs_btree_ops *ops,
			    bool leaf)
{
	return raw_maxrecs(mp->blocksize, ops->rec_len, ops->key_len, ops->overlapping, leaf);
}

static unsigned slot_len(const struct rlfs_btree_cur *cur)
{
	return cur->ops->key_len * (cur->ops->overlapping ? 2u : 1u);
}
static unsigned maxr(const struct rlfs_btree_cur *cur, unsigned level)
{
	return rlfs_btree_maxrecs(cur->mp, cur->ops, level == 0);
}
static unsigned minr(const struct rlfs_btree_cur *cur, unsigned level)
{
	return maxr(cur, level) / 2;
}
/* bytes of one entry's key/record part at level */
static unsigned ent_len(const struct rlfs_btree_cur *cur, unsigned level)
{
	return level == 0 ? cur->ops->rec_len : slot_len(cur);
}

static uint8_t *rec_at(const struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned i)
{
	return (uint8_t *)bp->data + HDR_LEN + (size_t)(i - 1) * cur->ops->rec_len;
}
static uint8_t *key_at(const struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned i)
{
	return (uint8_t *)bp->data + HDR_LEN + (size_t)(i - 1) * slot_len(cur);
}
static uint8_t *high_at(const struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned i)
{
	return key_at(cur, bp, i) + cur->ops->key_len;
}
/* entry bytes (record or slot) of entry i at level */
static uint8_t *ent_at(const struct rlfs_btree_cur *cur, unsigned level,
		       struct rlfs_buf *bp, unsigned i)
{
	return level == 0 ? rec_at(cur, bp, i) : key_at(cur, bp, i);
}
static uint8_t *ptr_addr(const struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned i)
{
	return (uint8_t *)bp->data + HDR_LEN + (size_t)maxr(cur, 1) * slot_len(cur) +
	       (size_t)(i - 1) * 8;
}
static uint64_t ptr_get(const struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned i)
{
	rlfs_le64 v;
	memcpy(&v, ptr_addr(cur, bp, i), sizeof(v));
	return rlfs_get64(v);
}
static void ptr_set(const struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned i,
		    uint64_t fsbno)
{
	rlfs_le64 v = rlfs_le64_of(fsbno);
	memcpy(ptr_addr(cur, bp, i), &v, sizeof(v));
}

/* Move count entries from src[si..] to dst[di..] (may be the same block). */
static void ent_move(const struct rlfs_btree_cur *cur, unsigned level,
		     struct rlfs_buf *dst, unsigned di, struct rlfs_buf *src,
		     unsigned si, unsigned count)
{
	if (!count)
		return;
	memmove(ent_at(cur, level, dst, di), ent_at(cur, level, src, si),
		(size_t)count * ent_len(cur, level));
	if (level > 0)
		memmove(ptr_addr(cur, dst, di), ptr_addr(cur, src, si), (size_t)count * 8);
}
static void ent_get(const struct rlfs_btree_cur *cur, unsigned level,
		    struct rlfs_buf *bp, unsigned i, struct ent *e)
{
	memcpy(e->b, ent_at(cur, level, bp, i), ent_len(cur, level));
	e->ptr = level > 0 ? ptr_get(cur, bp, i) : 0;
}
static void ent_put(const struct rlfs_btree_cur *cur, unsigned level,
		    struct rlfs_buf *bp, unsigned i, const struct ent *e)
{
	memcpy(ent_at(cur, level, bp, i), e->b, ent_len(cur, level));
	if (level > 0)
		ptr_set(cur, bp, i, e->ptr);
}

/* Log entries first..last (1-based; none when first > last) of bp at
 * level: their records or keys, and at node levels their pointers; with
 * hdr the block header too (numrecs, siblings).  The ranges of
 * xfs_btree_log_recs / _keys / _ptrs / _block (the chunks are still
 * compared: a shifted chunk that holds the same bytes is not logged). */
static void log_ents(const struct rlfs_btree_cur *cur, unsigned level, struct rlfs_buf *bp,
		     unsigned first, unsigned last, bool hdr)
{
	const uint8_t *base = bp->data;
	if (hdr)
		rlfs_trans_log_buf_range(cur->tp, bp, 0, (uint32_t)HDR_LEN - 1);
	if (first > last)
		return;
	uint32_t lo = (uint32_t)(ent_at(cur, level, bp, first) - base);
	uint32_t hi = (uint32_t)(ent_at(cur, level, bp, last) - base) + ent_len(cur, level) - 1;
	rlfs_trans_log_buf_range(cur->tp, bp, lo, hi);
	if (level > 0)
		rlfs_trans_log_buf_range(cur->tp, bp, (uint32_t)(ptr_addr(cur, bp, first) - base),
					 (uint32_t)(ptr_addr(cur, bp, last) - base) + 7);
}

/* Insert e at position p (1..n+1) of a block that has room. */
static void ent_insert(const struct rlfs_btree_cur *cur, unsigned level,
		       struct rlfs_buf *bp, unsigned p, const struct ent *e)
{
	unsigned n = bb_numrecs(bp);
	ent_move(cur, level, bp, p + 1, bp, p, n - p + 1);
	ent_put(cur, level, bp, p, e);
	bb_set_numrecs(bp, n + 1);
}
/* Remove entry p (1..n). */
static void ent_remove(const struct rlfs_btree_cur *cur, unsigned level,
		       struct rlfs_buf *bp, unsigned p)
{
	unsigned n = bb_numrecs(bp);
	ent_move(cur, level, bp, p, bp, p + 1, n - p);
	bb_set_numrecs(bp, n - 1);
}

static int cmpk(struct rlfs_btree_cur *cur, const void *a, const void *b)
{
	return cur->ops->cmp_key(cur, a, b);
}

/* A record's low / high key against key: the ops' direct comparators
 * when the tree has them, else build the key in tmp and compare. */
static int rec_cmp_low(struct rlfs_btree_cur *cur, const void *rec, const void *key,
		       uint8_t *tmp)
{
	if (cur->ops->cmp_rec_low)
		return cur->ops->cmp_rec_low(rec, key);
	cur->ops->init_key_from_rec(tmp, rec);
	return cmpk(cur, tmp, key);
}

static int rec_cmp_high(struct rlfs_btree_cur *cur, const void *rec, const void *key,
			uint8_t *tmp)
{
	if (cur->ops->cmp_rec_high)
		return cur->ops->cmp_rec_high(rec, key);
	cur->ops->init_high_key_from_rec(tmp, rec);
	return cmpk(cur, tmp, key);
}

/* Key (low key) of entry i at level. */
static void ent_key(struct rlfs_btree_cur *cur, unsigned level, struct rlfs_buf *bp,
		    unsigned i, uint8_t *key)
{
	if (level == 0)
		cur->ops->init_key_from_rec(key, rec_at(cur, bp, i));
	else
		memcpy(key, key_at(cur, bp, i), cur->ops->key_len);
}

/*
 * The keys of a block with at least one entry: its low key, and for
 * overlapping trees the largest high key of its entries, written as one
 * slot (slot_len bytes).
 */
static void block_keys(struct rlfs_btree_cur *cur, unsigned level, struct rlfs_buf *bp,
		       uint8_t *slot)
{
	const struct rlfs_btree_ops *ops = cur->ops;
	unsigned n = bb_numrecs(bp);
	ent_key(cur, level, bp, 1, slot);
	if (!ops->overlapping)
		return;
	uint8_t *high = slot + ops->key_len;
	uint8_t tmp[RLFS_BTREE_MAX_KEYLEN];
	/* last to first: entries are in low-key order, so the largest high
	 * key is usually near the end and the direct comparator skips the
	 * rest without building their keys */
	for (unsigned i = n; i >= 1; i--) {
		const uint8_t *k;
		if (level == 0) {
			const uint8_t *r = rec_at(cur, bp, i);
			if (i < n && ops->cmp_rec_high && ops->cmp_rec_high(r, high) <= 0)
				continue;
			ops->init_high_key_from_rec(tmp, r);
			k = tmp;
		} else {
			k = high_at(cur, bp, i);
		}
		if (i == n || cmpk(cur, k, high) > 0)
			memcpy(high, k, ops->key_len);
	}
}

/* ---- cursor and block reading ---- */

static uint64_t cur_owner(struct rlfs_btree_cur *cur)
{
	return cur->ops->owner ? cur->ops->owner(cur) : RLFS_OWNER_ANY;
}

static void set_lev(struct rlfs_btree_cur *cur, unsigned level, struct rlfs_buf *bp, int ptr)
{
	if (cur->lev[level].bp && cur->lev[level].bp != bp)
		rlfs_trans_brelse(cur->tp, cur->lev[level].bp);
	else if (cur->lev[level].bp && cur->lev[level].bp == bp)
		rlfs_trans_brelse(cur->tp, bp); /* drop the extra reference */
	cur->lev[level].bp = bp;
	cur->lev[level].ptr = ptr;
}

static void release_levels(struct rlfs_btree_cur *cur, unsigned from)
{
	for (unsigned l = from; l < RLFS_BTREE_MAXLEVELS; l++) {
		if (cur->lev[l].bp)
			rlfs_trans_brelse(cur->tp, cur->lev[l].bp);
		cur->lev[l].bp = NULL;
		cur->lev[l].ptr = 0;
	}
}

/* The ops vector must describe a tree this code can handle. */
static int check_ops(struct rlfs_btree_cur *cur)
{
	const struct rlfs_btree_ops *ops = cur->ops;
	if (!ops || !cur->tp || !cur->mp || ops->key_len == 0 ||
	    ops->key_len > RLFS_BTREE_MAX_KEYLEN || ops->rec_len == 0 ||
	    ops->rec_len > RLFS_BTREE_MAX_RECLEN || !ops->cmp_key ||
	    !ops->init_key_from_rec || !ops->get_root ||
	    (ops->overlapping && !ops->init_high_key_from_rec))
		return -EINVAL;
	if (maxr(cur, 0) < 2 || maxr(cur, 1) < 4)
		return -EINVAL;
	return 0;
}

/*
 * Read the block at fsbno, expected at level (is_root: may be an empty
 * leaf).  from: the block that pointed here (for messages).
 */
static int read_blk(struct rlfs_btree_cur *cur, uint64_t fsbno, unsigned level,
		    bool is_root, uint64_t from, struct rlfs_buf **bpp)
{
	struct rlfs_mount *mp = cur->mp;
	const char *name = cur->ops->name;
	struct rlfs_buf *bp;
	*bpp = NULL;
	if (fsbno == 0 || fsbno >= mp->dblocks)
		return rlfs_corrupt(mp, from, name, "bad block pointer %llu (level %u)",
				    (unsigned long long)fsbno, level);
	int err = rlfs_trans_read_buf(cur->tp, fsbno, cur->ops->buf_ops, cur_owner(cur), &bp);
	if (err)
		return err;
	if (rlfs_get32(bblk(bp)->hdr.magic) != cur->ops->magic) {
		err = rlfs_corrupt(mp, fsbno, name, "bad magic 0x%08x",
				   rlfs_get32(bblk(bp)->hdr.magic));
	} else if (bb_level(bp) != level) {
		err = rlfs_corrupt(mp, fsbno, name, "level %u, expected %u (pointed to by %llu)",
				   bb_level(bp), level, (unsigned long long)from);
	} else if (bb_numrecs(bp) > maxr(cur, level)) {
		err = rlfs_corrupt(mp, fsbno, name, "numrecs %u > max %u", bb_numrecs(bp),
				   maxr(cur, level));
	} else if (bb_numrecs(bp) == 0 && (level > 0 || !is_root)) {
		err = rlfs_corrupt(mp, fsbno, name, "empty %s block at level %u",
				   is_root ? "root" : "non-root", level);
	} else if (bb_left(bp) == fsbno || bb_right(bp) == fsbno ||
		   bb_left(bp) >= mp->dblocks || bb_right(bp) >= mp->dblocks ||
		   (is_root && (bb_left(bp) || bb_right(bp)))) {
		err = rlfs_corrupt(mp, fsbno, name, "bad sibling pointers %llu/%llu",
				   (unsigned long long)bb_left(bp),
				   (unsigned long long)bb_right(bp));
	}
	if (err) {
		rlfs_trans_brelse(cur->tp, bp);
		return err;
	}
	*bpp = bp;
	return 0;
}

/*
 * Read the root (fsbno, nlevels) from ops->get_root into *rootp; 0 if the
 * tree has no root block at all (then cur->nlevels = 0).
 */
static int load_root(struct rlfs_btree_cur *cur, uint64_t *rootp)
{
	uint64_t fsbno = 0;
	unsigned nl = 0;
	cur->ops->get_root(cur, &fsbno, &nl);
	*rootp = 0;
	if (fsbno == 0) {
		release_levels(cur, 0);
		cur->nlevels = 0;
		return 0;
	}
	if (nl < 1 || nl > RLFS_BTREE_MAXLEVELS)
		return rlfs_corrupt(cur->mp, fsbno, cur->ops->name, "bad tree height %u", nl);
	if (nl < cur->nlevels)
		release_levels(cur, nl);
	cur->nlevels = nl;
	*rootp = fsbno;
	return 0;
}

static void free_blk(struct rlfs_btree_cur *cur, struct rlfs_buf *bp, int *errp)
{
	uint64_t fsbno = bp->fsbno;
	rlfs_trans_binval(cur->tp, bp);
	rlfs_trans_brelse(cur->tp, bp);
	int err = cur->ops->free_block ? cur->ops->free_block(cur, fsbno) : 0;
	if (err && !*errp)
		*errp = err;
}

/* Get a fresh block at level for a split / new root / new tree. */
static int new_blk(struct rlfs_btree_cur *cur, uint64_t hint, unsigned level,
		   struct rlfs_buf **bpp)
{
	uint64_t fsbno = 0;
	struct rlfs_buf *bp;
	if (!cur->ops->alloc_block)
		return -ENOSPC;
	int err = cur->ops->alloc_block(cur, hint, &fsbno);
	if (err)
		return err;
	if (fsbno == 0 || fsbno >= cur->mp->dblocks)
		return -EIO;
	uint64_t owner = cur_owner(cur);
	if (owner == RLFS_OWNER_ANY)
		owner = 0;
	err = rlfs_trans_get_buf(cur->tp, fsbno, cur->ops->buf_ops, owner, &bp);
	if (err) {
		if (cur->ops->free_block)
			cur->ops->free_block(cur, fsbno);
		return err;
	}
	rlfs_btree_init_block(cur->mp, bp, cur->ops, level, owner);
	rlfs_trans_log_buf(cur->tp, bp);
	*bpp = bp;
	return 0;
}

void rlfs_btree_cur_init(struct rlfs_btree_cur *cur, struct rlfs_trans *tp,
			 const struct rlfs_btree_ops *ops, uint32_t agno,
			 struct rlfs_inode *ip, void *priv)
{
	memset(cur, 0, sizeof(*cur));
	cur->tp = tp;
	cur->mp = tp ? tp->mp : NULL;
	cur->ops = ops;
	cur->agno = agno;
	cur->ip = ip;
	cur->priv = priv;
}

void rlfs_btree_cur_del(struct rlfs_btree_cur *cur)
{
	if (cur->tp)
		release_levels(cur, 0);
	cur->nlevels = 0;
	cur->between = false;
}

/* A second cursor on the same position (own buffer references). */
static int cur_dup(struct rlfs_btree_cur *src, struct rlfs_btree_cur *dst)
{
	*dst = *src;
	for (unsigned l = 0; l < RLFS_BTREE_MAXLEVELS; l++) {
		dst->lev[l].bp = NULL;
		if (!src->lev[l].bp)
			continue;
		struct rlfs_buf *bp;
		int err = rlfs_trans_read_buf(src->tp, src->lev[l].bp->fsbno,
					      src->ops->buf_ops, RLFS_OWNER_ANY, &bp);
		if (err) {
			release_levels(dst, 0);
			return err;
		}
		dst->lev[l].bp = bp;
	}
	return 0;
}

/* Is every level of the path loaded? */
static bool path_ok(struct rlfs_btree_cur *cur)
{
	if (cur->nlevels == 0)
		return false;
	for (unsigned l = 0; l < cur->nlevels; l++)
		if (!cur->lev[l].bp)
			return false;
	return true;
}

static bool on_rec(struct rlfs_btree_cur *cur)
{
	if (!path_ok(cur) || cur->between)
		return false;
	int p = cur->lev[0].ptr;
	return p >= 1 && (unsigned)p <= bb_numrecs(cur->lev[0].bp);
}

/* ---- positioning ---- */

/* Load the child of lev[level+1] at its ptr into lev[level], ptr at the
 * first (first=true) or last entry. */
static int load_child(struct rlfs_btree_cur *cur, unsigned level, bool first)
{
	struct rlfs_buf *pbp = cur->lev[level + 1].bp;
	int pp = cur->lev[level + 1].ptr;
	struct rlfs_buf *bp;
	if (pp < 1 || (unsigned)pp > bb_numrecs(pbp))
		return rlfs_corrupt(cur->mp, pbp->fsbno, cur->ops->name, "bad cursor index %d", pp);
	int err = read_blk(cur, ptr_get(cur, pbp, (unsigned)pp), level, false, pbp->fsbno, &bp);
	if (err)
		return err;
	set_lev(cur, level, bp, first ? 1 : (int)bb_numrecs(bp));
	return 0;
}

static int increment_raw(struct rlfs_btree_cur *cur, int *stat)
{
	*stat = 0;
	struct rlfs_buf *bp = cur->lev[0].bp;
	if (++cur->lev[0].ptr >= 1 && (unsigned)cur->lev[0].ptr <= bb_numrecs(bp)) {
		*stat = 1;
		return 0;
	}
	cur->lev[0].ptr = (int)bb_numrecs(bp) + 1;
	unsigned l;
	for (l = 1; l < cur->nlevels; l++)
		if (cur->lev[l].ptr < (int)bb_numrecs(cur->lev[l].bp))
			break;
	if (l >= cur->nlevels)
		return 0; /* at the end */
	cur->lev[l].ptr++;
	while (l-- > 0) {
		int err = load_child(cur, l, true);
		if (err)
			return err;
	}
	*stat = 1;
	return 0;
}

static int decrement_raw(struct rlfs_btree_cur *cur, int *stat)
{
	*stat = 0;
	struct rlfs_buf *bp = cur->lev[0].bp;
	int p = cur->lev[0].ptr - 1;
	if (p > (int)bb_numrecs(bp))
		p = (int)bb_numrecs(bp);
	cur->lev[0].ptr = p;
	if (p >= 1) {
		*stat = 1;
		return 0;
	}
	cur->lev[0].ptr = 0;
	unsigned l;
	for (l = 1; l < cur->nlevels; l++)
		if (cur->lev[l].ptr > 1)
			break;
	if (l >= cur->nlevels)
		return 0; /* at the start */
	cur->lev[l].ptr--;
	while (l-- > 0) {
		int err = load_child(cur, l, false);
		if (err)
			return err;
	}
	*stat = 1;
	return 0;
}

int rlfs_btree_increment(struct rlfs_btree_cur *cur, int *stat)
{
	*stat = 0;
	if (!path_ok(cur))
		return 0;
	if (cur->between) {
		/* between two records: the next one is the one at ptr */
		cur->between = false;
		int p = cur->lev[0].ptr;
		unsigned n = bb_numrecs(cur->lev[0].bp);
		if (p >= 1 && (unsigned)p <= n) {
			*stat = 1;
			return 0;
		}
		if (p > (int)n)
			cur->lev[0].ptr = (int)n;
		else
			cur->lev[0].ptr = 0;
	}
	return increment_raw(cur, stat);
}

int rlfs_btree_decrement(struct rlfs_btree_cur *cur, int *stat)
{
	*stat = 0;
	if (!path_ok(cur))
		return 0;
	cur->between = false;
	return decrement_raw(cur, stat);
}

/* Descend from the root to the leftmost leaf, cursor on its first record. */
static int goto_first(struct rlfs_btree_cur *cur, int *stat)
{
	uint64_t root;
	*stat = 0;
	cur->between = false;
	int err = load_root(cur, &root);
	if (err || !root)
		return err;
	struct rlfs_buf *bp;
	unsigned top = cur->nlevels - 1;
	err = read_blk(cur, root, top, true, 0, &bp);
	if (err)
		return err;
	set_lev(cur, top, bp, 1);
	for (unsigned l = top; l-- > 0;) {
		err = load_child(cur, l, true);
		if (err)
			return err;
	}
	*stat = bb_numrecs(cur->lev[0].bp) > 0;
	return 0;
}

int rlfs_btree_lookup(struct rlfs_btree_cur *cur, enum rlfs_btree_lookup dir,
		      const void *key, int *stat)
{
	uint64_t root, fsbno, from = 0;
	uint8_t k[RLFS_BTREE_MAX_KEYLEN];
	int err;

	*stat = 0;
	cur->between = false;
	if ((err = check_ops(cur)))
		return err;
	if ((err = load_root(cur, &root)) || !root)
		return err;
	fsbno = root;
	unsigned level = cur->nlevels - 1;
	for (;;) {
		struct rlfs_buf *bp;
		err = read_blk(cur, fsbno, level, level == cur->nlevels - 1, from, &bp);
		if (err)
			return err;
		set_lev(cur, level, bp, 1);
		unsigned n = bb_numrecs(bp);
		if (level == 0)
			break;
		/* last slot whose low key <= key (or the first slot) */
		unsigned lo = 1, hi = n, i = 0;
		while (lo <= hi) {
			unsigned mid = lo + (hi - lo) / 2;
			if (cmpk(cur, key_at(cur, bp, mid), key) <= 0) {
				i = mid;
				lo = mid + 1;
			} else {
				hi = mid - 1;
			}
		}
		if (i == 0)
			i = 1;
		cur->lev[level].ptr = (int)i;
		from = fsbno;
		fsbno = ptr_get(cur, bp, i);
		level--;
	}

	/* leaf: first record with key >= key */
	struct rlfs_buf *bp = cur->lev[0].bp;
	unsigned n = bb_numrecs(bp);
	unsigned lo = 1, hi = n, i = n + 1;
	int c = 1;
	while (lo <= hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int cm = rec_cmp_low(cur, rec_at(cur, bp, mid), key, k);
		if (cm >= 0) {
			i = mid;
			c = cm;
			hi = mid - 1;
		} else {
			lo = mid + 1;
		}
	}
	bool eq = i <= n && c == 0;
	cur->lev[0].ptr = (int)i;
	switch (dir) {
	case RLFS_LOOKUP_EQ:
		*stat = eq;
		break;
	case RLFS_LOOKUP_GE:
		if (i <= n) {
			*stat = 1;
		} else if (n > 0) {
			cur->lev[0].ptr = (int)n;
			err = increment_raw(cur, stat);
			if (err)
				return err;
		}
		break;
	case RLFS_LOOKUP_LE:
		if (eq) {
			*stat = 1;
		} else if (i > 1) {
			cur->lev[0].ptr = (int)i - 1;
			*stat = 1;
		} else {
			cur->lev[0].ptr = 1;
			err = decrement_raw(cur, stat);
			if (err)
				return err;
			if (!*stat)
				cur->lev[0].ptr = 1; /* insertion point: before the first */
		}
		break;
	default:
		return -EINVAL;
	}
	if (!*stat)
		cur->between = true;
	return 0;
}

int rlfs_btree_get_rec(struct rlfs_btree_cur *cur, void *rec, int *stat)
{
	*stat = 0;
	if (!on_rec(cur))
		return 0;
	struct rlfs_buf *bp = cur->lev[0].bp;
	const void *r = rec_at(cur, bp, (unsigned)cur->lev[0].ptr);
	if (cur->ops->verify_rec) {
		int err = cur->ops->verify_rec(cur, r);
		if (err)
			return rlfs_corrupt(cur->mp, bp->fsbno, cur->ops->name,
					    "record %d failed verification", cur->lev[0].ptr);
	}
	memcpy(rec, r, cur->ops->rec_len);
	*stat = 1;
	return 0;
}

/* ---- keys up the path ---- */

/*
 * Write child's keys into slot pi of pbp; returns true if that changed
 * the slot (then pbp is logged).
 */
static bool fix_slot(struct rlfs_btree_cur *cur, unsigned child_level,
		     struct rlfs_buf *child, struct rlfs_buf *pbp, unsigned pi)
{
	uint8_t slot[2 * RLFS_BTREE_MAX_KEYLEN];
	if (bb_numrecs(child) == 0)
		return false;
	block_keys(cur, child_level, child, slot);
	uint8_t *dst = key_at(cur, pbp, pi);
	if (!memcmp(dst, slot, slot_len(cur)))
		return false;
	memcpy(dst, slot, slot_len(cur));
	uint32_t lo = (uint32_t)(dst - (uint8_t *)pbp->data);
	rlfs_trans_log_buf_range(cur->tp, pbp, lo, lo + slot_len(cur) - 1);
	return true;
}

/* The block at lev[level] changed: refresh its slot in the parent and so
 * on upwards while anything changes. */
static void update_keys(struct rlfs_btree_cur *cur, unsigned level)
{
	for (unsigned l = level; l + 1 < cur->nlevels; l++) {
		struct rlfs_buf *bp = cur->lev[l].bp, *pbp = cur->lev[l + 1].bp;
		if (!bp || !pbp)
			break;
		if (!fix_slot(cur, l, bp, pbp, (unsigned)cur->lev[l + 1].ptr))
			break;
	}
}

/* ---- insert ---- */

/*
 * Insert e at position p of the block lev[level].  If the block is full it
 * is split; then *up is set and *upe is the slot + pointer of the new
 * right block, to be inserted after lev[level+1].ptr.
 */
static int insrec(struct rlfs_btree_cur *cur, unsigned level, const struct ent *e,
		  unsigned p, bool *up, struct ent *upe)
{
	struct rlfs_buf *bp = cur->lev[level].bp;
	unsigned n = bb_numrecs(bp), max = maxr(cur, level);
	int err;

	*up = false;
	if (p < 1 || p > n + 1)
		return rlfs_corrupt(cur->mp, bp->fsbno, cur->ops->name, "bad insert index %u", p);
	if (n < max) {
		ent_insert(cur, level, bp, p, e);
		log_ents(cur, level, bp, p, n + 1, true);
		update_keys(cur, level);
		return 0;
	}

	/* split: the upper half moves to a new right block */
	bool is_root = level == cur->nlevels - 1;
	struct rlfs_buf *rbp, *nrbp = NULL, *xbp = NULL;
	if (is_root && cur->nlevels >= RLFS_BTREE_MAXLEVELS)
		return -EFBIG;
	uint64_t xfsbno = bb_right(bp);
	if (xfsbno) {
		err = read_blk(cur, xfsbno, level, false, bp->fsbno, &xbp);
		if (err)
			return err;
		if (bb_left(xbp) != bp->fsbno) {
			rlfs_trans_brelse(cur->tp, xbp);
			return rlfs_corrupt(cur->mp, xfsbno, cur->ops->name,
					    "left sibling %llu, expected %llu",
					    (unsigned long long)bb_left(xbp),
					    (unsigned long long)bp->fsbno);
		}
	}
	err = new_blk(cur, bp->fsbno, level, &rbp);
	if (err)
		goto out;
	if (is_root) {
		err = new_blk(cur, bp->fsbno, level + 1, &nrbp);
		if (err) {
			int e2 = 0;
			free_blk(cur, rbp, &e2);
			goto out;
		}
	}
	unsigned lcount = (n + 2) / 2; /* left keeps ceil((n+1)/2) */
	if (p <= lcount) {
		ent_move(cur, level, rbp, 1, bp, lcount, n - lcount + 1);
		bb_set_numrecs(rbp, n - lcount + 1);
		bb_set_numrecs(bp, lcount - 1);
		ent_insert(cur, level, bp, p, e);
	} else {
		ent_move(cur, level, rbp, 1, bp, lcount + 1, n - lcount);
		bb_set_numrecs(rbp, n - lcount);
		bb_set_numrecs(bp, lcount);
		ent_insert(cur, level, rbp, p - lcount, e);
	}
	bb_set_left(rbp, bp->fsbno);
	bb_set_right(rbp, xfsbno);
	bb_set_right(bp, rbp->fsbno);
	if (xbp) {
		bb_set_left(xbp, rbp->fsbno);
		rlfs_trans_log_buf(cur->tp, xbp);
	}
	rlfs_trans_log_buf(cur->tp, bp);
	rlfs_trans_log_buf(cur->tp, rbp);

	if (is_root) {
		struct ent ne;
		block_keys(cur, level, bp, ne.b);
		ne.ptr = bp->fsbno;
		ent_put(cur, level + 1, nrbp, 1, &ne);
		block_keys(cur, level, rbp, ne.b);
		ne.ptr = rbp->fsbno;
		ent_put(cur, level + 1, nrbp, 2, &ne);
		bb_set_numrecs(nrbp, 2);
		cur->ops->set_root(cur, nrbp->fsbno, cur->nlevels + 1);
		cur->nlevels++;
		set_lev(cur, level + 1, nrbp, 1);
		nrbp = NULL;
	} else {
		update_keys(cur, level);
		block_keys(cur, level, rbp, upe->b);
		upe->ptr = rbp->fsbno;
		*up = true;
	}
	rlfs_trans_brelse(cur->tp, rbp);
out:
	if (xbp)
		rlfs_trans_brelse(cur->tp, xbp);
	return err;
}

int rlfs_btree_insert(struct rlfs_btree_cur *cur, const void *rec)
{
	uint8_t key[RLFS_BTREE_MAX_KEYLEN];
	struct ent e, upe;
	int err, stat;

	if ((err = check_ops(cur)))
		return err;
	cur->ops->init_key_from_rec(key, rec);
	err = rlfs_btree_lookup(cur, RLFS_LOOKUP_EQ, key, &stat);
	if (err)
		return err;
	if (stat)
		return -EEXIST;
	if (cur->nlevels == 0) {
		/* no root block at all: start a tree with an empty leaf */
		struct rlfs_buf *bp;
		err = new_blk(cur, 0, 0, &bp);
		if (err)
			return err;
		cur->ops->set_root(cur, bp->fsbno, 1);
		cur->nlevels = 1;
		set_lev(cur, 0, bp, 1);
	}
	memcpy(e.b, rec, cur->ops->rec_len);
	e.ptr = 0;
	unsigned level = 0, p = (unsigned)cur->lev[0].ptr;
	for (;;) {
		bool up;
		err = insrec(cur, level, &e, p, &up, &upe);
		if (err)
			return err;
		if (!up)
			break;
		p = (unsigned)cur->lev[level + 1].ptr + 1;
		level++;
		e = upe;
	}
	/* put the cursor on the new record */
	err = rlfs_btree_lookup(cur, RLFS_LOOKUP_EQ, key, &stat);
	if (err)
		return err;
	if (!stat)
		return rlfs_corrupt(cur->mp, 0, cur->ops->name, "inserted record not found");
	return 0;
}

/* ---- delete ---- */

/*
 * Remove entry lev[level].ptr from its block and restore the invariants:
 * keys up the path, minimum fill (borrow from or merge with a sibling under
 * the same parent, then remove the merged block's slot one level up), root
 * collapse.
 */
static int delrec(struct rlfs_btree_cur *cur, unsigned level)
{
	struct rlfs_mount *mp = cur->mp;
	const char *name = cur->ops->name;
	int err = 0;

	for (;;) {
		struct rlfs_buf *bp = cur->lev[level].bp;
		unsigned n = bb_numrecs(bp);
		int p = cur->lev[level].ptr;
		if (p < 1 || (unsigned)p > n)
			return rlfs_corrupt(mp, bp->fsbno, name, "bad delete index %d", p);
		ent_remove(cur, level, bp, (unsigned)p);
		log_ents(cur, level, bp, (unsigned)p, n - 1, true);
		n--;

		if (level == cur->nlevels - 1) {
			/* the root: collapse a node root with a single child */
			if (level > 0 && n == 1) {
				uint64_t child = ptr_get(cur, bp, 1);
				cur->ops->set_root(cur, child, cur->nlevels - 1);
				cur->lev[level].bp = NULL;
				cur->lev[level].ptr = 0;
				cur->nlevels--;
				free_blk(cur, bp, &err);
			}
			return err;
		}
		update_keys(cur, level);
		unsigned min = minr(cur, level), max = maxr(cur, level);
		if (n >= min)
			return 0;

		/* under-full: look at the siblings under the same parent */
		struct rlfs_buf *pbp = cur->lev[level + 1].bp;
		unsigned pi = (unsigned)cur->lev[level + 1].ptr, pn = bb_numrecs(pbp);
		struct rlfs_buf *lbp = NULL, *rbp = NULL;
		if (pi > 1) {
			err = read_blk(cur, ptr_get(cur, pbp, pi - 1), level, false, pbp->fsbno, &lbp);
			if (err)
				return err;
			if (lbp == bp || bb_right(lbp) != bp->fsbno || bb_left(bp) != lbp->fsbno) {
				err = rlfs_corrupt(mp, bp->fsbno, name, "sibling links disagree with "
						   "left neighbour %llu", (unsigned long long)lbp->fsbno);
				goto out;
			}
		}
		if (pi < pn) {
			err = read_blk(cur, ptr_get(cur, pbp, pi + 1), level, false, pbp->fsbno, &rbp);
			if (err)
				goto out;
			if (rbp == bp || rbp == lbp || bb_left(rbp) != bp->fsbno ||
			    bb_right(bp) != rbp->fsbno) {
				err = rlfs_corrupt(mp, bp->fsbno, name, "sibling links disagree with "
						   "right neighbour %llu", (unsigned long long)rbp->fsbno);
				goto out;
			}
		}
		unsigned ln = lbp ? bb_numrecs(lbp) : 0, rn = rbp ? bb_numrecs(rbp) : 0;
		struct ent e;

		if (rbp && rn > min) {
			/* borrow the right sibling's first entry */
			ent_get(cur, level, rbp, 1, &e);
			ent_insert(cur, level, bp, n + 1, &e);
			ent_remove(cur, level, rbp, 1);
			log_ents(cur, level, bp, n + 1, n + 1, true);
			log_ents(cur, level, rbp, 1, rn - 1, true);
			fix_slot(cur, level, bp, pbp, pi);
			fix_slot(cur, level, rbp, pbp, pi + 1);
			update_keys(cur, level + 1);
			goto out;
		}
		if (lbp && ln > min) {
			/* borrow the left sibling's last entry */
			ent_get(cur, level, lbp, ln, &e);
			ent_insert(cur, level, bp, 1, &e);
			ent_remove(cur, level, lbp, ln);
			log_ents(cur, level, bp, 1, n + 1, true);
			log_ents(cur, level, lbp, 1, 0, true);
			fix_slot(cur, level, lbp, pbp, pi - 1);
			fix_slot(cur, level, bp, pbp, pi);
			update_keys(cur, level + 1);
			goto out;
		}
		struct rlfs_buf *dst = NULL, *src = NULL;
		unsigned dst_pi = 0, src_pi = 0;
		if (lbp && ln + n <= max) {
			dst = lbp; src = bp; dst_pi = pi - 1; src_pi = pi;
		} else if (rbp && rn + n <= max) {
			dst = bp; src = rbp; dst_pi = pi; src_pi = pi + 1;
		} else {
			/* no sibling to help (only in a damaged tree): leave it */
			goto out;
		}
		/* merge src into dst (its left neighbour), free src */
		unsigned dn = bb_numrecs(dst), sn = bb_numrecs(src);
		ent_move(cur, level, dst, dn + 1, src, 1, sn);
		bb_set_numrecs(dst, dn + sn);
		uint64_t xfsbno = bb_right(src);
		bb_set_right(dst, xfsbno);
		log_ents(cur, level, dst, dn + 1, dn + sn, true);
		if (xfsbno) {
			struct rlfs_buf *xbp;
			err = read_blk(cur, xfsbno, level, false, src->fsbno, &xbp);
			if (err)
				goto out;
			if (bb_left(xbp) != src->fsbno) {
				rlfs_trans_brelse(cur->tp, xbp);
				err = rlfs_corrupt(mp, xfsbno, name, "left sibling %llu, expected %llu",
						   (unsigned long long)bb_left(xbp),
						   (unsigned long long)src->fsbno);
				goto out;
			}
			bb_set_left(xbp, dst->fsbno);
			log_ents(cur, level, xbp, 1, 0, true);
			rlfs_trans_brelse(cur->tp, xbp);
		}
		fix_slot(cur, level, dst, pbp, dst_pi);
		if (src == bp) {
			/* the cursor's block goes away */
			cur->lev[level].bp = NULL;
			cur->lev[level].ptr = 0;
		} else {
			rbp = NULL;
		}
		free_blk(cur, src, &err);
		if (lbp)
			rlfs_trans_brelse(cur->tp, lbp);
		if (rbp)
			rlfs_trans_brelse(cur->tp, rbp);
		if (err)
			return err;
		/* now remove src's slot from the parent */
		cur->lev[level + 1].ptr = (int)src_pi;
		level++;
		continue;
out:
		if (lbp)
			rlfs_trans_brelse(cur->tp, lbp);
		if (rbp)
			rlfs_trans_brelse(cur->tp, rbp);
		return err;
	}
}

int rlfs_btree_delete(struct rlfs_btree_cur *cur, int *stat)
{
	uint8_t key[RLFS_BTREE_MAX_KEYLEN];
	int err, st;

	*stat = 0;
	if ((err = check_ops(cur)))
		return err;
	if (!on_rec(cur))
		return 0;
	cur->ops->init_key_from_rec(key, rec_at(cur, cur->lev[0].bp, (unsigned)cur->lev[0].ptr));
	err = delrec(cur, 0);
	if (err)
		return err;
	*stat = 1;
	/* leave the cursor on the record after the deleted one */
	return rlfs_btree_lookup(cur, RLFS_LOOKUP_GE, key, &st);
}

/* ---- update ---- */

int rlfs_btree_update(struct rlfs_btree_cur *cur, const void *rec)
{
	uint8_t nkey[RLFS_BTREE_MAX_KEYLEN], okey[RLFS_BTREE_MAX_KEYLEN];
	uint8_t k[RLFS_BTREE_MAX_KEYLEN];
	int err;

	if ((err = check_ops(cur)))
		return err;
	if (!on_rec(cur))
		return -EINVAL;
	struct rlfs_buf *bp = cur->lev[0].bp;
	unsigned p = (unsigned)cur->lev[0].ptr, n = bb_numrecs(bp);
	cur->ops->init_key_from_rec(nkey, rec);
	cur->ops->init_key_from_rec(okey, rec_at(cur, bp, p));
	if (cmpk(cur, nkey, okey) != 0) {
		/* the new key must stay between the neighbours' keys */
		for (int dir = -1; dir <= 1; dir += 2) {
			bool have = false;
			if (dir < 0 && p > 1) {
				cur->ops->init_key_from_rec(k, rec_at(cur, bp, p - 1));
				have = true;
			} else if (dir > 0 && p < n) {
				cur->ops->init_key_from_rec(k, rec_at(cur, bp, p + 1));
				have = true;
			} else {
				struct rlfs_btree_cur tc;
				int st;
				err = cur_dup(cur, &tc);
				if (err)
					return err;
				err = dir < 0 ? decrement_raw(&tc, &st) : increment_raw(&tc, &st);
				if (!err && st) {
					cur->ops->init_key_from_rec(
						k, rec_at(&tc, tc.lev[0].bp, (unsigned)tc.lev[0].ptr));
					have = true;
				}
				rlfs_btree_cur_del(&tc);
				if (err)
					return err;
			}
			if (have && (dir < 0 ? cmpk(cur, nkey, k) <= 0 : cmpk(cur, nkey, k) >= 0))
				return -EINVAL;
		}
	}
	memcpy(rec_at(cur, bp, p), rec, cur->ops->rec_len);
	log_ents(cur, 0, bp, p, p, false);
	update_keys(cur, 0);
	return 0;
}

/* ---- queries ---- */

static int call_fn(struct rlfs_btree_cur *cur, const void *rec, rlfs_btree_rec_fn fn, void *priv)
{
	if (cur->ops->verify_rec && cur->ops->verify_rec(cur, rec))
		return rlfs_corrupt(cur->mp, cur->lev[0].bp->fsbno, cur->ops->name,
				    "record %d failed verification", cur->lev[0].ptr);
	return fn(cur, rec, priv);
}

/* Walk forward from the cursor calling fn while the key is <= high_key
 * (high_key NULL: to the end). */
static int walk_from(struct rlfs_btree_cur *cur, int stat, const void *high_key,
		     rlfs_btree_rec_fn fn, void *priv)
{
	uint8_t k[RLFS_BTREE_MAX_KEYLEN];
	int err = 0;
	while (stat) {
		const uint8_t *r = rec_at(cur, cur->lev[0].bp, (unsigned)cur->lev[0].ptr);
		if (high_key) {
			cur->ops->init_key_from_rec(k, r);
			if (cmpk(cur, k, high_key) > 0)
				break;
		}
		err = call_fn(cur, r, fn, priv);
		if (err)
			return err;
		err = increment_raw(cur, &stat);
		if (err)
			return err;
	}
	return 0;
}

/* A query entering a leaf: skip the records that end below low_key when
 * the ops can tell which (ops->leaf_overlap_start), else start at 1. */
static void leaf_start(struct rlfs_btree_cur *cur, const void *low_key)
{
	struct rlfs_buf *bp = cur->lev[0].bp;
	unsigned n = bb_numrecs(bp);
	if (n && cur->ops->leaf_overlap_start) {
		unsigned p = cur->ops->leaf_overlap_start(rec_at(cur, bp, 1), n, low_key);
		cur->lev[0].ptr = p >= 1 && p <= n + 1 ? (int)p : 1;
	}
}

/*
 * Overlapping trees: depth-first over the tree, skipping subtrees whose
 * high key is below low_key, and stopping at the first slot or record
 * whose low key is above high_key (everything after it is higher still).
 */
static int overlapped_query(struct rlfs_btree_cur *cur, const void *low_key,
			    const void *high_key, rlfs_btree_rec_fn fn, void *priv)
{
	uint8_t lk[RLFS_BTREE_MAX_KEYLEN], hk[RLFS_BTREE_MAX_KEYLEN];
	uint64_t root;
	struct rlfs_buf *bp;
	int err = load_root(cur, &root);
	if (err || !root)
		return err;
	unsigned top = cur->nlevels - 1;
	err = read_blk(cur, root, top, true, 0, &bp);
	if (err)
		return err;
	set_lev(cur, top, bp, 1);
	if (top == 0)
		leaf_start(cur, low_key);
	unsigned level = top;
	for (;;) {
		bp = cur->lev[level].bp;
		int p = cur->lev[level].ptr;
		if (p > (int)bb_numrecs(bp)) {
			if (level == top)
				return 0;
			level++;
			cur->lev[level].ptr++;
			continue;
		}
		if (level == 0) {
			const uint8_t *r = rec_at(cur, bp, (unsigned)p);
			if (rec_cmp_low(cur, r, high_key, lk) > 0)
				return 0;
			if (rec_cmp_high(cur, r, low_key, hk) >= 0) {
				err = call_fn(cur, r, fn, priv);
				if (err)
					return err;
			}
			cur->lev[0].ptr++;
			continue;
		}
		if (cmpk(cur, key_at(cur, bp, (unsigned)p), high_key) > 0)
			return 0;
		if (cmpk(cur, high_at(cur, bp, (unsigned)p), low_key) < 0) {
			cur->lev[level].ptr++;
			continue;
		}
		err = load_child(cur, level - 1, true);
		if (err)
			return err;
		level--;
		if (level == 0)
			leaf_start(cur, low_key);
	}
}

int rlfs_btree_query_range(struct rlfs_btree_cur *cur, const void *low_key,
			   const void *high_key, rlfs_btree_rec_fn fn, void *priv)
{
	int err, stat;
	if ((err = check_ops(cur)))
		return err;
	if (cmpk(cur, low_key, high_key) > 0)
		return -EINVAL;
	cur->between = false;
	if (cur->ops->overlapping)
		return overlapped_query(cur, low_key, high_key, fn, priv);
	err = rlfs_btree_lookup(cur, RLFS_LOOKUP_GE, low_key, &stat);
	if (err)
		return err;
	cur->between = false;
	return walk_from(cur, stat, high_key, fn, priv);
}

int rlfs_btree_query_all(struct rlfs_btree_cur *cur, rlfs_btree_rec_fn fn, void *priv)
{
	int err, stat;
	if ((err = check_ops(cur)))
		return err;
	err = goto_first(cur, &stat);
	if (err)
		return err;
	return walk_from(cur, stat, NULL, fn, priv);
}

/* ---- whole-tree walks ---- */

/*
 * Visit every block level by level, left to right along the sibling
 * chain; free_them: free each block after the callback.
 */
static int walk_blocks(struct rlfs_btree_cur *cur, rlfs_btree_blk_fn fn, void *priv,
		       bool free_them)
{
	uint64_t root;
	int err;
	if ((err = check_ops(cur)))
		return err;
	if ((err = load_root(cur, &root)) || !root)
		return err;
	unsigned nl = cur->nlevels;
	release_levels(cur, 0);
	uint64_t leftmost = root;
	for (unsigned level = nl; level-- > 0;) {
		uint64_t fsbno = leftmost, prev = 0, count = 0;
		leftmost = 0;
		while (fsbno) {
			struct rlfs_buf *bp;
			err = read_blk(cur, fsbno, level, level == nl - 1, prev, &bp);
			if (err)
				return err;
			if (bb_left(bp) != prev || (level == nl - 1 && bb_right(bp))) {
				err = rlfs_corrupt(cur->mp, fsbno, cur->ops->name,
						   "bad sibling pointers (left %llu, expected %llu)",
						   (unsigned long long)bb_left(bp),
						   (unsigned long long)prev);
				rlfs_trans_brelse(cur->tp, bp);
				return err;
			}
			if (level > 0 && prev == 0)
				leftmost = ptr_get(cur, bp, 1);
			uint64_t next = bb_right(bp);
			err = fn ? fn(cur, bp, level, priv) : 0;
			if (free_them)
				free_blk(cur, bp, &err);
			else
				rlfs_trans_brelse(cur->tp, bp);
			if (err)
				return err;
			prev = fsbno;
			fsbno = next;
			if (++count > cur->mp->dblocks)
				return rlfs_corrupt(cur->mp, prev, cur->ops->name, "sibling loop");
		}
	}
	if (free_them)
		cur->nlevels = 0;
	return 0;
}

int rlfs_btree_visit_blocks(struct rlfs_btree_cur *cur, rlfs_btree_blk_fn fn, void *priv)
{
	return walk_blocks(cur, fn, priv, false);
}

int rlfs_btree_destroy(struct rlfs_btree_cur *cur)
{
	return walk_blocks(cur, NULL, NULL, true);
}

static int count_fn(struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned level, void *priv)
{
	if (level == 0)
		*(uint64_t *)priv += bb_numrecs(bp);
	return 0;
}

int rlfs_btree_count(struct rlfs_btree_cur *cur, uint64_t *nrecs)
{
	*nrecs = 0;
	return walk_blocks(cur, count_fn, nrecs, false);
}

/* ---- structural check ---- */

struct chk {
	uint64_t prev[RLFS_BTREE_MAXLEVELS];       /* last block seen per level */
	uint64_t prev_right[RLFS_BTREE_MAXLEVELS]; /* its rightsib */
	uint8_t last[RLFS_BTREE_MAXLEVELS][RLFS_BTREE_MAX_KEYLEN];
	bool have_last[RLFS_BTREE_MAXLEVELS];
	unsigned problems;
};

/*
 * Check the subtree at fsbno (level) and return its keys in slot.  Returns
 * 0 (problems counted in c), or an error that stops the check.
 */
static int check_subtree(struct rlfs_btree_cur *cur, struct chk *c, uint64_t fsbno,
			 unsigned level, uint64_t from, uint8_t *slot, bool *have_keys)
{
	struct rlfs_mount *mp = cur->mp;
	const struct rlfs_btree_ops *ops = cur->ops;
	const char *name = ops->name;
	bool is_root = level == cur->nlevels - 1;
	struct rlfs_buf *bp;
	uint8_t k[RLFS_BTREE_MAX_KEYLEN];
	int err;

	*have_keys = false;
	err = read_blk(cur, fsbno, level, is_root, from, &bp);
	if (err)
		return err;
	set_lev(cur, level, bp, 1);
	unsigned n = bb_numrecs(bp);

	/* sibling chain and fill */
	if (bb_left(bp) != c->prev[level]) {
		rlfs_corrupt(mp, fsbno, name, "level %u: left sibling %llu, expected %llu", level,
			     (unsigned long long)bb_left(bp), (unsigned long long)c->prev[level]);
		c->problems++;
	}
	if (c->prev[level] && c->prev_right[level] != fsbno) {
		rlfs_corrupt(mp, c->prev[level], name, "level %u: right sibling %llu, expected %llu",
			     level, (unsigned long long)c->prev_right[level],
			     (unsigned long long)fsbno);
		c->problems++;
	}
	c->prev[level] = fsbno;
	c->prev_right[level] = bb_right(bp);
	if (!is_root && n < minr(cur, level)) {
		rlfs_corrupt(mp, fsbno, name, "level %u: %u entries, fewer than the minimum %u",
			     level, n, minr(cur, level));
		c->problems++;
	}

	for (unsigned i = 1; i <= n; i++) {
		cur->lev[level].ptr = (int)i;
		ent_key(cur, level, bp, i, k);
		if (c->have_last[level] && cmpk(cur, c->last[level], k) >= 0) {
			rlfs_corrupt(mp, fsbno, name, "level %u entry %u: key out of order", level, i);
			c->problems++;
		}
		memcpy(c->last[level], k, ops->key_len);
		c->have_last[level] = true;
		if (level == 0) {
			if (ops->verify_rec && ops->verify_rec(cur, rec_at(cur, bp, i))) {
				rlfs_corrupt(mp, fsbno, name, "record %u failed verification", i);
				c->problems++;
			}
			continue;
		}
		if (ops->overlapping && cmpk(cur, high_at(cur, bp, i), k) < 0) {
			rlfs_corrupt(mp, fsbno, name, "level %u entry %u: high key below low key",
				     level, i);
			c->problems++;
		}
		uint8_t cslot[2 * RLFS_BTREE_MAX_KEYLEN];
		bool chave;
		err = check_subtree(cur, c, ptr_get(cur, bp, i), level - 1, fsbno, cslot, &chave);
		if (err)
			return err;
		if (!chave)
			continue;
		if (cmpk(cur, cslot, k) != 0) {
			rlfs_corrupt(mp, fsbno, name, "level %u entry %u: key differs from the "
				     "child's first key", level, i);
			c->problems++;
		}
		if (ops->overlapping &&
		    cmpk(cur, cslot + ops->key_len, high_at(cur, bp, i)) != 0) {
			rlfs_corrupt(mp, fsbno, name, "level %u entry %u: high key differs from "
				     "the child's highest key", level, i);
			c->problems++;
		}
	}
	if (n > 0) {
		block_keys(cur, level, bp, slot);
		*have_keys = true;
	}
	return 0;
}

int rlfs_btree_check(struct rlfs_btree_cur *cur)
{
	struct chk c;
	uint64_t root;
	uint8_t slot[2 * RLFS_BTREE_MAX_KEYLEN];
	bool have;
	int err;

	if ((err = check_ops(cur)))
		return err;
	if ((err = load_root(cur, &root)) || !root)
		return err;
	memset(&c, 0, sizeof(c));
	cur->between = false;
	err = check_subtree(cur, &c, root, cur->nlevels - 1, 0, slot, &have);
	if (err)
		return err;
	for (unsigned l = 0; l < cur->nlevels; l++) {
		if (c.prev_right[l]) {
			rlfs_corrupt(cur->mp, c.prev[l], cur->ops->name,
				     "level %u: last block has right sibling %llu", l,
				     (unsigned long long)c.prev_right[l]);
			c.problems++;
		}
	}
	release_levels(cur, 0);
	return c.problems ? -EUCLEAN : 0;
}

/* ---- block init / verify ---- */

void rlfs_btree_init_block(struct rlfs_mount *mp, struct rlfs_buf *bp,
			   const struct rlfs_btree_ops *ops, unsigned level,
			   uint64_t owner)
{
	memset(bp->data, 0, mp->blocksize);
	rlfs_blkhdr_init(mp, bp->data, ops->magic, bp->fsbno, owner);
	rlfs_put16(bblk(bp)->level, (uint16_t)level);
}

int rlfs_btree_verify_block(struct rlfs_mount *mp, struct rlfs_buf *bp,
			    uint16_t rec_len, uint16_t key_len, bool overlapping)
{
	const char *name = bp->ops ? bp->ops->name : "btree";
	unsigned level = bb_level(bp), n = bb_numrecs(bp);
	if (level >= RLFS_BTREE_MAXLEVELS)
		return rlfs_corrupt(mp, bp->fsbno, name, "bad level %u", level);
	unsigned max = raw_maxrecs(mp->blocksize, rec_len, key_len, overlapping, level == 0);
	if (n > max)
		return rlfs_corrupt(mp, bp->fsbno, name, "numrecs %u > max %u", n, max);
	if (rlfs_get32(bblk(bp)->pad))
		return rlfs_corrupt(mp, bp->fsbno, name, "nonzero padding");
	uint64_t l = bb_left(bp), r = bb_right(bp);
	if (l >= mp->dblocks || r >= mp->dblocks || l == bp->fsbno || r == bp->fsbno ||
	    (l && l == r))
		return rlfs_corrupt(mp, bp->fsbno, name, "bad sibling pointers %llu/%llu",
				    (unsigned long long)l, (unsigned long long)r);
	if (level > 0) {
		unsigned slen = key_len * (overlapping ? 2u : 1u);
		unsigned nmax = raw_maxrecs(mp->blocksize, rec_len, key_len, overlapping, false);
		const uint8_t *base = (const uint8_t *)bp->data + HDR_LEN + (size_t)nmax * slen;
		for (unsigned i = 0; i < n; i++) {
			rlfs_le64 v;
			memcpy(&v, base + (size_t)i * 8, sizeof(v));
			uint64_t c = rlfs_get64(v);
			if (c == 0 || c >= mp->dblocks || c == bp->fsbno)
				return rlfs_corrupt(mp, bp->fsbno, name,
						    "bad child pointer %llu in entry %u",
						    (unsigned long long)c, i + 1);
		}
	}
	return 0;
}

int rlfs_btree_cmp_le32(struct rlfs_btree_cur *cur, const void *k1, const void *k2)
{
	(void)cur;
	rlfs_le32 a, b;
	memcpy(&a, k1, sizeof(a));
	memcpy(&b, k2, sizeof(b));
	uint32_t x = rlfs_get32(a), y = rlfs_get32(b);
	return x < y ? -1 : x > y;
}

int rlfs_btree_cmp_le64(struct rlfs_btree_cur *cur, const void *k1, const void *k2)
{
	(void)cur;
	rlfs_le64 a, b;
	memcpy(&a, k1, sizeof(a));
	memcpy(&b, k2, sizeof(b));
	uint64_t x = rlfs_get64(a), y = rlfs_get64(b);
	return x < y ? -1 : x > y;
}

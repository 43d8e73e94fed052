/*
 * btree_bload.c: bottom-up bulk loader for the generic b+tree (see
 * btree_bload.h for the interface, shapes and errors).  Model:
 * xfs_btree_bload / xfs_btree_bload_compute_geometry in
 * libxfs/xfs_btree_staging.c; the block layout is btree.h's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "btree_bload.h"

#define HDR_LEN sizeof(struct rlfs_btree_block)
#define BLOAD_DEFAULT_SLACK 2

static unsigned slot_len(const struct rlfs_btree_ops *ops)
{
	return ops->key_len * (ops->overlapping ? 2u : 1u);
}

/*
 * Blocks needed for n entries at one level, each holding at most per
 * (maxrecs - slack) and at least half of maxr unless it is the only block.
 */
static uint64_t level_blocks(uint64_t n, unsigned per, unsigned maxr)
{
	uint64_t nb;

	if (n == 0)
		return 1;
	nb = (n + per - 1) / per;
	while (nb > 1 && n / nb < maxr / 2)
		nb--;
	return nb;
}

/* Entries of block i (0-based) of nb blocks holding n entries evenly. */
static unsigned block_entries(uint64_t n, uint64_t nb, uint64_t i)
{
	uint64_t per = n / nb, extra = n % nb;

	return (unsigned)(per + (i < extra ? 1 : 0));
}

static int bad_ops(struct rlfs_mount *mp, const struct rlfs_btree_ops *ops)
{
	if (!ops || !mp || ops->key_len == 0 || ops->key_len > RLFS_BTREE_MAX_KEYLEN ||
	    ops->rec_len == 0 || ops->rec_len > RLFS_BTREE_MAX_RECLEN || !ops->cmp_key ||
	    !ops->init_key_from_rec || !ops->buf_ops ||
	    (ops->overlapping && !ops->init_high_key_from_rec))
		return 1;
	return rlfs_btree_maxrecs(mp, ops, true) < 2 || rlfs_btree_maxrecs(mp, ops, false) < 4;
}

static int per_block(unsigned maxr, int slack, unsigned *per)
{
	unsigned s = slack < 0 ? BLOAD_DEFAULT_SLACK : (unsigned)slack;

	if (s > maxr || maxr - s < (maxr + 1) / 2)
		return -EINVAL;
	*per = maxr - s;
	if (*per == 0)
		return -EINVAL;
	return 0;
}

int rlfs_btree_bload_compute_geometry(struct rlfs_mount *mp, struct rlfs_bload *bl,
				      uint64_t nrecs)
{
	unsigned lmax, nmax, lper, nper, lev = 0;
	uint64_t n = nrecs, total = 0;
	int err;

	if (bad_ops(mp, bl->ops))
		return -EINVAL;
	lmax = rlfs_btree_maxrecs(mp, bl->ops, true);
	nmax = rlfs_btree_maxrecs(mp, bl->ops, false);
	err = per_block(lmax, bl->leaf_slack, &lper);
	if (!err)
		err = per_block(nmax, bl->node_slack, &nper);
	if (err)
		return err;
	memset(bl->level_blocks, 0, sizeof(bl->level_blocks));
	for (;;) {
		uint64_t nb;

		if (lev >= RLFS_BTREE_MAXLEVELS)
			return -EFBIG;
		nb = lev == 0 ? level_blocks(n, lper, lmax) : level_blocks(n, nper, nmax);
		bl->level_blocks[lev++] = nb;
		total += nb;
		if (nb == 1)
			break;
		n = nb;
	}
	bl->nrecs = nrecs;
	bl->nlevels = lev;
	bl->nblocks = total;
	bl->root_fsbno = 0;
	return 0;
}

/* What the level above needs of one written block: where it is and its
 * key slot (low key, and high key in overlapping trees). */
struct child {
	uint64_t fsbno;
	uint8_t slot[2 * RLFS_BTREE_MAX_KEYLEN];
};

struct bload_ctx {
	struct rlfs_trans *tp;
	struct rlfs_mount *mp;
	struct rlfs_bload *bl;
	struct rlfs_btree_cur cur;  /* for ops->cmp_key and ops->owner only */
	uint64_t owner;
	uint64_t last_claimed;
};

static int claim(struct bload_ctx *c, uint64_t *fsbno)
{
	int err = c->bl->claim_block(c->bl->priv, fsbno);

	if (err)
		return err;
	if (*fsbno == 0 || *fsbno >= c->mp->dblocks || *fsbno == c->last_claimed)
		return -EINVAL;
	c->last_claimed = *fsbno;
	return 0;
}

/* Largest-high-key merge for overlapping trees. */
static void max_high(struct bload_ctx *c, uint8_t *high, const uint8_t *k, bool first)
{
	const struct rlfs_btree_ops *ops = c->bl->ops;

	if (first || ops->cmp_key(&c->cur, k, high) > 0)
		memcpy(high, k, ops->key_len);
}

static int get_block(struct bload_ctx *c, uint64_t fsbno, unsigned level, struct rlfs_buf **bpp)
{
	int err = rlfs_trans_get_buf(c->tp, fsbno, c->bl->ops->buf_ops, c->owner, bpp);

	if (err)
		return err;
	rlfs_btree_init_block(c->mp, *bpp, c->bl->ops, level, c->owner);
	return 0;
}

static void finish_block(struct bload_ctx *c, struct rlfs_buf *bp, unsigned n,
			 uint64_t left, uint64_t right)
{
	struct rlfs_btree_block *b = bp->data;

	rlfs_put16(b->numrecs, (uint16_t)n);
	rlfs_put64(b->leftsib, left);
	rlfs_put64(b->rightsib, right);
	rlfs_trans_log_buf(c->tp, bp);
	rlfs_trans_brelse(c->tp, bp);
}

/* Level 0: nb leaves at fsbnos out[].fsbno (claimed already). */
static int load_leaves(struct bload_ctx *c, struct child *out, uint64_t nb)
{
	const struct rlfs_btree_ops *ops = c->bl->ops;
	uint8_t prev[RLFS_BTREE_MAX_KEYLEN], key[RLFS_BTREE_MAX_KEYLEN];
	uint8_t high[RLFS_BTREE_MAX_KEYLEN];
	bool have_prev = false;
	int err;

	for (uint64_t i = 0; i < nb; i++) {
		unsigned n = block_entries(c->bl->nrecs, nb, i);
		struct rlfs_buf *bp;
		uint8_t *rec;

		err = get_block(c, out[i].fsbno, 0, &bp);
		if (err)
			return err;
		rec = (uint8_t *)bp->data + HDR_LEN;
		for (unsigned j = 0; j < n; j++, rec += ops->rec_len) {
			err = c->bl->get_rec(c->bl->priv, rec);
			if (!err) {
				ops->init_key_from_rec(key, rec);
				if (have_prev && ops->cmp_key(&c->cur, prev, key) >= 0)
					err = -EINVAL;
			}
			if (err) {
				rlfs_trans_brelse(c->tp, bp);
				return err;
			}
			memcpy(prev, key, ops->key_len);
			have_prev = true;
			if (j == 0)
				memcpy(out[i].slot, key, ops->key_len);
			if (ops->overlapping) {
				ops->init_high_key_from_rec(high, rec);
				max_high(c, out[i].slot + ops->key_len, high, j == 0);
			}
		}
		finish_block(c, bp, n, i ? out[i - 1].fsbno : 0, i + 1 < nb ? out[i + 1].fsbno : 0);
	}
	return 0;
}

/* One node level: nb blocks at out[].fsbno over the nchild blocks in in[]. */
static int load_nodes(struct bload_ctx *c, unsigned level, const struct child *in,
		      uint64_t nchild, struct child *out, uint64_t nb)
{
	const struct rlfs_btree_ops *ops = c->bl->ops;
	unsigned sl = slot_len(ops), nmax = rlfs_btree_maxrecs(c->mp, ops, false);
	uint64_t k = 0;
	int err;

	for (uint64_t i = 0; i < nb; i++) {
		unsigned n = block_entries(nchild, nb, i);
		struct rlfs_buf *bp;
		uint8_t *keys, *ptrs;

		err = get_block(c, out[i].fsbno, level, &bp);
		if (err)
			return err;
		keys = (uint8_t *)bp->data + HDR_LEN;
		ptrs = keys + (size_t)nmax * sl;
		for (unsigned j = 0; j < n; j++, k++) {
			rlfs_le64 p = rlfs_le64_of(in[k].fsbno);

			memcpy(keys + (size_t)j * sl, in[k].slot, sl);
			memcpy(ptrs + (size_t)j * 8, &p, 8);
			if (j == 0)
				memcpy(out[i].slot, in[k].slot, ops->key_len);
			if (ops->overlapping)
				max_high(c, out[i].slot + ops->key_len,
					 in[k].slot + ops->key_len, j == 0);
		}
		finish_block(c, bp, n, i ? out[i - 1].fsbno : 0, i + 1 < nb ? out[i + 1].fsbno : 0);
	}
	return 0;
}

int rlfs_btree_bload(struct rlfs_trans *tp, struct rlfs_bload *bl)
{
	struct bload_ctx c = { .tp = tp, .mp = tp ? tp->mp : NULL, .bl = bl };
	struct child *in = NULL, *out = NULL;
	uint64_t nin = 0;
	int err = 0;

	if (!tp || bad_ops(c.mp, bl->ops) || !bl->get_rec || !bl->claim_block ||
	    bl->nlevels == 0 || bl->nlevels > RLFS_BTREE_MAXLEVELS)
		return -EINVAL;
	rlfs_btree_cur_init(&c.cur, tp, bl->ops, bl->agno, NULL, bl->cur_priv);
	c.owner = bl->ops->owner ? bl->ops->owner(&c.cur) : bl->agno;
	for (unsigned lev = 0; lev < bl->nlevels && !err; lev++) {
		uint64_t nb = bl->level_blocks[lev];

		out = calloc(nb, sizeof(*out));
		if (!out) {
			err = -ENOMEM;
			break;
		}
		for (uint64_t i = 0; i < nb && !err; i++)
			err = claim(&c, &out[i].fsbno);
		if (!err)
			err = lev == 0 ? load_leaves(&c, out, nb) :
					 load_nodes(&c, lev, in, nin, out, nb);
		free(in);
		in = out;
		nin = nb;
		out = NULL;
	}
	if (!err)
		bl->root_fsbno = in[0].fsbno;
	free(in);
	rlfs_btree_cur_del(&c.cur);
	return err;
}

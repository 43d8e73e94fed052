/*
 * test_bload.c: the bulk loader (lib/btree_bload.c) for every AG tree type
 * (bnobt, cntbt, inobt, refcountbt, rmapbt), with the real ops vectors
 * (keys, comparison, record and block verifiers) and only the root hooks
 * replaced.  Memory device, bare mount, one AG of 2^18 blocks of 1 KiB.
 *
 * For each tree and record count (0, 1, one full leaf and one more with
 * slack 0, then many with the default slack, a 3-level tree): compute the
 * geometry, build the tree from generated records (strictly increasing
 * keys; rmapbt records overlap), commit, flush (the pre-write verifiers
 * run), then drop the cache by remounting the memory device so every
 * block is read back through its read verifier, and check:
 * rlfs_btree_check; rlfs_btree_count == nrecs; query_all returns exactly
 * the generated records in order; a lookup EQ of every record's key finds
 * that record; the levels and per-block fill (every non-root block holds
 * between maxrecs/2 and maxrecs - slack entries); the claimed block count
 * equals the geometry's; and for the rmapbt, agbno range queries against a
 * brute-force scan.  Then one insert through the library into the loaded
 * tree (it must stay consistent).  Also: out-of-order records give
 * -EINVAL.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev.h"
#include "alloc.h"
#include "ialloc.h"
#include "refcount.h"
#include "rmap.h"
#include "btree_bload.h"

#define BLOCKSIZE 1024u
#define DBLOCKS (1u << 18)
#define TREE_AREA 240000u   /* tree blocks come from here up */

enum tree { T_BNO, T_CNT, T_INO, T_REFC, T_RMAP, T_NR };
static const char *const tname[T_NR] = { "bnobt", "cntbt", "inobt", "refcountbt", "rmapbt" };

struct env {
	struct rlfs_dev *dev;
	struct rlfs_mount *mp;
	struct rlfs_btree_ops ops;
	enum tree t;
	uint64_t root;
	unsigned nlevels;
	uint64_t next_blk, nclaimed;
	uint64_t nrecs, gen_i;
	bool disorder;              /* swap two records (error test) */
	uint8_t *recs;              /* every generated record, rec_len each */
};

static struct env *g_env;

static void e_get_root(struct rlfs_btree_cur *cur, uint64_t *fsbno, unsigned *nlevels)
{
	*fsbno = g_env->root;
	*nlevels = g_env->nlevels;
}

static void e_set_root(struct rlfs_btree_cur *cur, uint64_t fsbno, unsigned nlevels)
{
	g_env->root = fsbno;
	g_env->nlevels = nlevels;
}

static int e_alloc_block(struct rlfs_btree_cur *cur, uint64_t hint, uint64_t *fsbno)
{
	if (g_env->next_blk >= DBLOCKS)
		return -ENOSPC;
	*fsbno = g_env->next_blk++;
	return 0;
}

static int e_free_block(struct rlfs_btree_cur *cur, uint64_t fsbno) { return 0; }

static const struct rlfs_btree_ops *base_ops(enum tree t)
{
	switch (t) {
	case T_BNO: return &rlfs_bnobt_ops;
	case T_CNT: return &rlfs_cntbt_ops;
	case T_INO: return &rlfs_inobt_ops;
	case T_REFC: return &rlfs_refcountbt_ops;
	default: return &rlfs_rmapbt_ops;
	}
}

/* Record i of n of tree t, on-disk format, keys strictly increasing in i. */
static void gen_rec(struct rlfs_mount *mp, enum tree t, uint64_t i, uint64_t n, void *out)
{
	switch (t) {
	case T_BNO: {
		struct rlfs_alloc_rec r;
		rlfs_put32(r.startblock, (uint32_t)(64 + 2 * i));
		rlfs_put32(r.blockcount, 1);
		memcpy(out, &r, sizeof(r));
		break;
	}
	case T_CNT: {
		struct rlfs_alloc_rec r;
		rlfs_put32(r.startblock, (uint32_t)(64 + 2 * (i % 2000)));
		rlfs_put32(r.blockcount, (uint32_t)(1 + i / 2000));
		memcpy(out, &r, sizeof(r));
		break;
	}
	case T_INO: {
		struct rlfs_inobt_rec r;
		uint64_t mask = i % 3 == 0 ? 0x0full << (i % 7) : 0;
		memset(&r, 0, sizeof(r));
		rlfs_put64(r.startino, rlfs_fsb_to_ino(mp, (i + 1) * mp->chunk_blocks, 0));
		rlfs_put32(r.freecount, (uint32_t)__builtin_popcountll(mask));
		rlfs_put64(r.free, mask);
		memcpy(out, &r, sizeof(r));
		break;
	}
	case T_REFC: {
		struct rlfs_refcount_rec r;
		uint64_t ncow = n >= 20 ? 10 : 0;
		if (i < n - ncow) {
			rlfs_put32(r.startblock, (uint32_t)(64 + 2 * i));
			rlfs_put32(r.refcount, (uint32_t)(2 + i % 3));
		} else {
			rlfs_put32(r.startblock, (uint32_t)(64 + 2 * (i - (n - ncow))) |
					       RLFS_REFC_COWFLAG);
			rlfs_put32(r.refcount, 1);
		}
		rlfs_put32(r.blockcount, 1);
		memcpy(out, &r, sizeof(r));
		break;
	}
	default: {
		struct rlfs_rmap_irec ir = {
			.startblock = (uint32_t)(64 + i / 4),
			.blockcount = i % 50 == 7 ? 400 : 3, /* long ones: high keys out of order */
			.owner = 128 + i % 4, .offset = i * 8,
		};
		struct rlfs_rmap_rec r;
		rlfs_rmap_rec_encode(&ir, &r);
		memcpy(out, &r, sizeof(r));
		break;
	}
	}
}

static int e_get_rec(void *priv, void *rec)
{
	struct env *e = priv;
	uint64_t i = e->gen_i++;

	if (i >= e->nrecs)
		return -ERANGE;
	if (e->disorder && e->nrecs >= 2 && i < 2)
		i = 1 - i;
	gen_rec(e->mp, e->t, i, e->nrecs, rec);
	memcpy(e->recs + i * e->ops.rec_len, rec, e->ops.rec_len);
	return 0;
}

static int e_claim(void *priv, uint64_t *fsbno)
{
	struct env *e = priv;

	if (e->next_blk >= DBLOCKS)
		return -ENOSPC;
	*fsbno = e->next_blk++;
	e->nclaimed++;
	return 0;
}

static void env_mount(struct env *e)
{
	assert_int_equal(rlfs_mount_alloc_bare(e->dev, BLOCKSIZE, DBLOCKS, 0, &e->mp), 0);
}

static void env_setup(struct env *e, enum tree t)
{
	memset(e, 0, sizeof(*e));
	g_env = e;
	e->t = t;
	e->ops = *base_ops(t);
	e->ops.get_root = e_get_root;
	e->ops.set_root = e_set_root;
	e->ops.alloc_block = e_alloc_block;
	e->ops.free_block = e_free_block;
	e->ops.rmap_owner = 0;
	assert_int_equal(rlfs_dev_open_mem((uint64_t)DBLOCKS * BLOCKSIZE, &e->dev), 0);
	env_mount(e);
	e->next_blk = TREE_AREA;
}

static void env_teardown(struct env *e)
{
	rlfs_mount_free_bare(e->mp);
	rlfs_dev_close(e->dev);
	free(e->recs);
	g_env = NULL;
}

static struct rlfs_trans *tx(struct env *e)
{
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(e->mp, &e->mp->resv.tr_fsck, 0, 0, &tp), 0);
	return tp;
}

/* Build a tree of n records; returns rlfs_btree_bload's result. */
static int build(struct env *e, uint64_t n, int slack, struct rlfs_bload *bl)
{
	struct rlfs_trans *tp;
	int err;

	memset(bl, 0, sizeof(*bl));
	bl->ops = &e->ops;
	bl->agno = 0;
	bl->leaf_slack = bl->node_slack = slack;
	bl->get_rec = e_get_rec;
	bl->claim_block = e_claim;
	bl->priv = e;
	free(e->recs);
	e->recs = calloc(n ? n : 1, e->ops.rec_len);
	assert_non_null(e->recs);
	e->nrecs = n;
	e->gen_i = 0;
	e->nclaimed = 0;
	assert_int_equal(rlfs_btree_bload_compute_geometry(e->mp, bl, n), 0);
	tp = tx(e);
	err = rlfs_btree_bload(tp, bl);
	if (err) {
		rlfs_trans_cancel(tp);
		return err;
	}
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(rlfs_buf_flush_all(e->mp), 0);
	/* forget the cache: everything below is read back and verified */
	rlfs_mount_free_bare(e->mp);
	env_mount(e);
	e->root = bl->root_fsbno;
	e->nlevels = bl->nlevels;
	return 0;
}

struct fill {
	struct env *e;
	unsigned lmax, nmax, lper, nper;
	unsigned nblocks, bad;
	unsigned per_level[RLFS_BTREE_MAXLEVELS];
};

static int fill_fn(struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned level, void *priv)
{
	struct fill *fl = priv;
	const struct rlfs_btree_block *b = bp->data;
	unsigned n = rlfs_get16(b->numrecs);
	unsigned max = level ? fl->nmax : fl->lmax, per = level ? fl->nper : fl->lper;
	bool root = bp->fsbno == fl->e->root;

	fl->nblocks++;
	if (level < RLFS_BTREE_MAXLEVELS)
		fl->per_level[level]++;
	if (!root && (n > per || n < max / 2)) {
		fprintf(stderr, "test_bload: %s block %llu level %u holds %u (max %u, target %u)\n",
			tname[fl->e->t], (unsigned long long)bp->fsbno, level, n, max, per);
		fl->bad++;
	}
	if (rlfs_get64(b->hdr.owner) != 0)
		fl->bad++;
	return 0;
}

struct seen {
	struct env *e;
	uint64_t n;
	unsigned bad;
};

static int all_fn(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct seen *s = priv;
	unsigned rl = s->e->ops.rec_len;

	if (s->n >= s->e->nrecs || memcmp(rec, s->e->recs + s->n * rl, rl))
		s->bad++;
	s->n++;
	return 0;
}

struct qcount {
	uint64_t n;
};

static int q_fn(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *rec, void *priv)
{
	((struct qcount *)priv)->n++;
	return 0;
}

static void check_rmap_queries(struct env *e, struct rlfs_btree_cur *cur)
{
	for (unsigned q = 0; q < 40; q++) {
		uint32_t lo = 60 + (uint32_t)(tu_rand() % (e->nrecs / 4 + 8));
		uint32_t hi = lo + (uint32_t)(tu_rand() % 6);
		struct rlfs_rmap_irec klo = { .startblock = lo };
		struct rlfs_rmap_irec khi = { .startblock = hi, .owner = ~0ull, .offset = ~0ull };
		struct qcount qc = { 0 };
		uint64_t want = 0;

		for (uint64_t i = 0; i < e->nrecs; i++) {
			struct rlfs_rmap_rec r;
			struct rlfs_rmap_irec ir;
			memcpy(&r, e->recs + i * sizeof(r), sizeof(r));
			rlfs_rmap_rec_decode(&r, &ir);
			if (ir.startblock <= hi && ir.startblock + ir.blockcount - 1 >= lo)
				want++;
		}
		assert_int_equal(rlfs_rmap_query_range(cur, &klo, &khi, q_fn, &qc), 0);
		if (qc.n != want)
			fprintf(stderr, "test_bload: rmap query [%u, %u]: %llu records, want %llu\n",
				lo, hi, (unsigned long long)qc.n, (unsigned long long)want);
		assert_int_equal(qc.n, want);
	}
}

static void verify_tree(struct env *e, const struct rlfs_bload *bl, int slack)
{
	struct rlfs_trans *tp = tx(e);
	struct rlfs_btree_cur cur;
	uint64_t cnt = 0;
	struct seen s = { .e = e };
	struct fill fl = { .e = e };
	unsigned sl = slack < 0 ? 2 : (unsigned)slack;

	assert_int_equal(e->nclaimed, bl->nblocks);
	assert_int_equal(e->gen_i, e->nrecs);
	rlfs_btree_cur_init(&cur, tp, &e->ops, 0, NULL, NULL);
	assert_int_equal(rlfs_btree_check(&cur), 0);
	assert_int_equal(rlfs_btree_count(&cur, &cnt), 0);
	assert_int_equal(cnt, e->nrecs);
	assert_int_equal(rlfs_btree_query_all(&cur, all_fn, &s), 0);
	assert_int_equal(s.n, e->nrecs);
	assert_int_equal(s.bad, 0);

	fl.lmax = rlfs_btree_maxrecs(e->mp, &e->ops, true);
	fl.nmax = rlfs_btree_maxrecs(e->mp, &e->ops, false);
	fl.lper = fl.lmax - sl;
	fl.nper = fl.nmax - sl;
	assert_int_equal(rlfs_btree_visit_blocks(&cur, fill_fn, &fl), 0);
	assert_int_equal(fl.bad, 0);
	assert_int_equal(fl.nblocks, bl->nblocks);
	for (unsigned l = 0; l < bl->nlevels; l++)
		assert_int_equal(fl.per_level[l], bl->level_blocks[l]);

	for (uint64_t i = 0; i < e->nrecs; i++) {
		uint8_t key[RLFS_BTREE_MAX_KEYLEN], rec[RLFS_BTREE_MAX_RECLEN];
		const uint8_t *want = e->recs + i * e->ops.rec_len;
		int stat = 0;

		e->ops.init_key_from_rec(key, want);
		assert_int_equal(rlfs_btree_lookup(&cur, RLFS_LOOKUP_EQ, key, &stat), 0);
		assert_int_equal(stat, 1);
		assert_int_equal(rlfs_btree_get_rec(&cur, rec, &stat), 0);
		assert_int_equal(stat, 1);
		assert_memory_equal(rec, want, e->ops.rec_len);
	}
	if (e->t == T_RMAP && e->nrecs)
		check_rmap_queries(e, &cur);
	rlfs_btree_cur_del(&cur);
	rlfs_trans_cancel(tp);
}

/* One record past the generated ones goes in through the library: the
 * loaded tree must accept normal updates (splits included). */
static void insert_after(struct env *e)
{
	struct rlfs_trans *tp = tx(e);
	struct rlfs_btree_cur cur;
	uint8_t rec[RLFS_BTREE_MAX_RECLEN];
	uint64_t cnt = 0;

	if (e->t == T_REFC || e->t == T_INO)
		return (void)rlfs_trans_cancel(tp); /* keys of n+1 differ from n's series */
	gen_rec(e->mp, e->t, e->nrecs, e->nrecs + 1, rec);
	rlfs_btree_cur_init(&cur, tp, &e->ops, 0, NULL, NULL);
	assert_int_equal(rlfs_btree_insert(&cur, rec), 0);
	assert_int_equal(rlfs_btree_check(&cur), 0);
	assert_int_equal(rlfs_btree_count(&cur, &cnt), 0);
	assert_int_equal(cnt, e->nrecs + 1);
	rlfs_btree_cur_del(&cur);
	assert_int_equal(rlfs_trans_commit(tp), 0);
}

static uint64_t many(enum tree t)
{
	/* inobt chunks take 32 blocks each in the 2^18-block AG */
	return t == T_INO ? 7000 : 100000;
}

static void test_bload_trees(void **state)
{
	for (enum tree t = 0; t < T_NR; t++) {
		struct env e;
		env_setup(&e, t);
		unsigned lmax = rlfs_btree_maxrecs(e.mp, &e.ops, true);
		struct { uint64_t n; int slack; unsigned levels; } cases[] = {
			{ 0, 0, 1 }, { 1, 0, 1 }, { lmax, 0, 1 }, { lmax + 1, 0, 2 },
			{ lmax, -1, 2 }, { many(t), -1, 0 },
		};
		for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
			struct rlfs_bload bl;

			fprintf(stderr, "test_bload: %s, %llu records, slack %d\n", tname[t],
				(unsigned long long)cases[c].n, cases[c].slack);
			assert_int_equal(build(&e, cases[c].n, cases[c].slack, &bl), 0);
			if (cases[c].levels)
				assert_int_equal(bl.nlevels, cases[c].levels);
			else
				assert_true(bl.nlevels >= 3);
			verify_tree(&e, &bl, cases[c].slack);
			insert_after(&e);
		}
		env_teardown(&e);
	}
}

static void test_bload_errors(void **state)
{
	struct env e;
	struct rlfs_bload bl;

	env_setup(&e, T_BNO);
	e.disorder = true;
	assert_int_equal(build(&e, 500, -1, &bl), -EINVAL);
	e.disorder = false;
	/* a slack leaving less than half a block is refused */
	memset(&bl, 0, sizeof(bl));
	bl.ops = &e.ops;
	bl.leaf_slack = (int)rlfs_btree_maxrecs(e.mp, &e.ops, true) / 2 + 1;
	bl.node_slack = -1;
	assert_int_equal(rlfs_btree_bload_compute_geometry(e.mp, &bl, 100), -EINVAL);
	env_teardown(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bload_trees),
		cmocka_unit_test(test_bload_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_refcount.c: unit tests of the refcount btree (refcount.c).
 *
 * The randomized tests keep a model: the reference count of every block
 * the test allocated (rlfs_alloc_extent, so free-space accounting is real)
 * and the set of CoW staging blocks.  Operations are random increments and
 * decrements of partially overlapping ranges (generic/358-359: many clones
 * of overlapping ranges, then unshares), a tenth of them cancelled.  After
 * every batch: the tree's records equal the model's run-length encoding
 * (maximal runs of equal count >= 2, and staging runs), rlfs_btree_check
 * passes, every block with count >= 1 is neither free nor AGFL nor btree,
 * every block the test dropped to 0 is free again (or taken by the AG
 * trees/AGFL), agh.freeblks matches the bnobt, and the free counters are
 * exact.  1 KiB blocks so the tree grows to 3 levels.
 * Seed: RLFS_TEST_SEED (default fixed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "alloc.h"
#include "bmap.h"
#include "ialloc.h"
#include "inode.h"
#include "refcount.h"
#include "rmap.h"
#include "reflinkfs/fs.h"

static void seed_from_env(void)
{
	const char *s = getenv("RLFS_TEST_SEED");
	tu_seed(s ? strtoull(s, NULL, 0) : 4242);
}

static uint32_t rnd(uint32_t n)
{
	return n ? (uint32_t)(tu_rand() % n) : 0;
}

static struct rlfs_trans *tx(struct rlfs_mount *mp, uint32_t res)
{
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, res, RLFS_TRANS_RESERVE, &tp), 0);
	return tp;
}

/* ------------------------------------------------------------------ */
/* Model and checker                                                   */

struct model {
	struct rlfs_mount *mp;
	uint64_t n;            /* dblocks */
	uint32_t *cnt;         /* reference count per fsbno (0 = not ours) */
	uint8_t *cow;          /* staging block */
	uint8_t *ours;         /* ever allocated by the test */
	uint64_t *pool;        /* fsbnos ever allocated (for random picks) */
	size_t npool, cap;
	unsigned maxlevel;     /* tallest refcount tree seen */
};

static void model_init(struct model *m, struct rlfs_mount *mp)
{
	memset(m, 0, sizeof(*m));
	m->mp = mp;
	m->n = mp->dblocks;
	m->cnt = calloc(m->n, sizeof(uint32_t));
	m->cow = calloc(m->n, 1);
	m->ours = calloc(m->n, 1);
	assert_non_null(m->cnt);
	assert_non_null(m->cow);
	assert_non_null(m->ours);
}

static void model_free(struct model *m)
{
	free(m->cnt);
	free(m->cow);
	free(m->ours);
	free(m->pool);
}

static void pool_add(struct model *m, uint64_t fsbno, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++) {
		if (m->ours[fsbno + i])
			continue;
		m->ours[fsbno + i] = 1;
		if (m->npool == m->cap) {
			m->cap = m->cap ? m->cap * 2 : 4096;
			m->pool = realloc(m->pool, m->cap * sizeof(*m->pool));
			assert_non_null(m->pool);
		}
		m->pool[m->npool++] = fsbno + i;
	}
}

struct rcrec {
	uint32_t key, len, rc;
};

struct reclist {
	struct rcrec *r;
	size_t n, cap;
};

static void rl_push(struct reclist *l, uint32_t key, uint32_t len, uint32_t rc)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1024;
		l->r = realloc(l->r, l->cap * sizeof(*l->r));
		assert_non_null(l->r);
	}
	l->r[l->n++] = (struct rcrec){ key, len, rc };
}

static int collect(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct rlfs_refcount_rec r;
	memcpy(&r, rec, sizeof(r));
	rl_push(priv, rlfs_get32(r.startblock), rlfs_get32(r.blockcount), rlfs_get32(r.refcount));
	return 0;
}

/* Expected records of AG agno from the model. */
static void model_recs(struct model *m, uint32_t agno, struct reclist *l)
{
	struct rlfs_mount *mp = m->mp;
	uint64_t start = rlfs_agb_to_fsb(mp, agno, 0);
	uint32_t len = rlfs_ag_blocks(mp, agno);
	for (uint32_t b = 0; b < len;) {
		uint32_t c = m->cnt[start + b];
		if (c < 2) {
			b++;
			continue;
		}
		uint32_t e = b + 1;
		while (e < len && m->cnt[start + e] == c)
			e++;
		rl_push(l, b, e - b, c);
		b = e;
	}
	for (uint32_t b = 0; b < len;) {
		if (!m->cow[start + b]) {
			b++;
			continue;
		}
		uint32_t e = b + 1;
		while (e < len && m->cow[start + e])
			e++;
		rl_push(l, b | RLFS_REFC_COWFLAG, e - b, 1);
		b = e;
	}
}

enum { K_NONE, K_FREE, K_AGFL, K_META };

static int mark_meta(struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned level, void *priv)
{
	uint8_t *kind = priv;
	assert_int_equal(kind[bp->fsbno], K_NONE);
	kind[bp->fsbno] = K_META;
	return 0;
}

struct freesum {
	uint8_t *kind;
	uint64_t sum;
};

static int mark_free(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct freesum *f = priv;
	struct rlfs_alloc_rec r;
	memcpy(&r, rec, sizeof(r));
	uint64_t s = rlfs_agb_to_fsb(cur->mp, cur->agno, rlfs_get32(r.startblock));
	for (uint32_t i = 0; i < rlfs_get32(r.blockcount); i++) {
		assert_int_equal(f->kind[s + i], K_NONE);
		f->kind[s + i] = K_FREE;
	}
	f->sum += rlfs_get32(r.blockcount);
	return 0;
}

/* The full consistency check described at the top. */
static void check(struct model *m)
{
	struct rlfs_mount *mp = m->mp;
	uint8_t *kind = calloc(m->n, 1);
	assert_non_null(kind);
	struct rlfs_trans *tp = tx(mp, 0);
	uint64_t total_free = 0;
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		struct rlfs_buf *agbp;
		assert_int_equal(rlfs_ag_read_header(tp, agno, &agbp), 0);
		struct rlfs_agh *agh = rlfs_agh(agbp);
		struct rlfs_btree_cur cur;

		/* refcount tree == model */
		struct reclist got = { 0 }, want = { 0 };
		rlfs_refcount_cur_init(&cur, tp, agno, agbp);
		assert_int_equal(rlfs_btree_check(&cur), 0);
		assert_int_equal(rlfs_btree_query_all(&cur, collect, &got), 0);
		assert_int_equal(rlfs_btree_visit_blocks(&cur, mark_meta, kind), 0);
		rlfs_btree_cur_del(&cur);
		if (rlfs_get16(agh->refc_level) > m->maxlevel)
			m->maxlevel = rlfs_get16(agh->refc_level);
		model_recs(m, agno, &want);
		for (size_t i = 0; i < got.n || i < want.n; i++) {
			if (i >= got.n || i >= want.n || got.r[i].key != want.r[i].key ||
			    got.r[i].len != want.r[i].len || got.r[i].rc != want.r[i].rc) {
				if (i < got.n)
					fprintf(stderr, "tree  rec %zu: %#x +%u rc %u\n", i, got.r[i].key,
						got.r[i].len, got.r[i].rc);
				if (i < want.n)
					fprintf(stderr, "model rec %zu: %#x +%u rc %u\n", i, want.r[i].key,
						want.r[i].len, want.r[i].rc);
				fail_msg("AG %u: refcount records differ from the model at %zu (%zu vs %zu)",
					 agno, i, got.n, want.n);
			}
		}
		free(got.r);
		free(want.r);

		/* free space and the other trees */
		struct freesum fsum = { kind, 0 };
		rlfs_alloc_cur_init(&cur, tp, &rlfs_bnobt_ops, agno, agbp);
		assert_int_equal(rlfs_btree_check(&cur), 0);
		assert_int_equal(rlfs_btree_query_all(&cur, mark_free, &fsum), 0);
		assert_int_equal(rlfs_btree_visit_blocks(&cur, mark_meta, kind), 0);
		rlfs_btree_cur_del(&cur);
		assert_int_equal(fsum.sum, rlfs_get32(agh->freeblks));
		rlfs_alloc_cur_init(&cur, tp, &rlfs_cntbt_ops, agno, agbp);
		assert_int_equal(rlfs_btree_check(&cur), 0);
		assert_int_equal(rlfs_btree_visit_blocks(&cur, mark_meta, kind), 0);
		rlfs_btree_cur_del(&cur);
		rlfs_btree_cur_init(&cur, tp, &rlfs_inobt_ops, agno, NULL, agbp);
		assert_int_equal(rlfs_btree_visit_blocks(&cur, mark_meta, kind), 0);
		rlfs_btree_cur_del(&cur);
		struct rlfs_buf *flbp;
		uint64_t agstart = rlfs_agb_to_fsb(mp, agno, 0);
		assert_int_equal(rlfs_trans_read_buf(tp, agstart + RLFS_AGFL_AGBNO, &rlfs_agfl_buf_ops,
						     agno, &flbp), 0);
		rlfs_le32 *slots = (rlfs_le32 *)((char *)flbp->data + sizeof(struct rlfs_agfl));
		uint32_t size = rlfs_agfl_size(mp), first = rlfs_get32(agh->flfirst);
		for (uint32_t i = 0; i < rlfs_get32(agh->flcount); i++) {
			uint64_t b = agstart + rlfs_get32(slots[(first + i) % size]);
			assert_int_equal(kind[b], K_NONE);
			kind[b] = K_AGFL;
		}
		total_free += fsum.sum + rlfs_get32(agh->flcount);
	}
	rlfs_trans_cancel(tp);
	assert_int_equal(total_free, (uint64_t)mp->fdblocks + mp->setaside);

	/* blocks: referenced <=> not free; dropped to 0 => free (or reused by
	 * the AG trees / AGFL) */
	for (size_t i = 0; i < m->npool; i++) {
		uint64_t b = m->pool[i];
		bool inuse = m->cnt[b] || m->cow[b];
		if (inuse && kind[b] != K_NONE)
			fail_msg("fsbno %llu: refcount %u staging %u but %s", (unsigned long long)b,
				 m->cnt[b], m->cow[b],
				 kind[b] == K_FREE ? "free" : kind[b] == K_AGFL ? "on the AGFL" : "metadata");
		if (!inuse && kind[b] == K_NONE)
			fail_msg("fsbno %llu: refcount dropped to 0 but the block was not freed",
				 (unsigned long long)b);
	}
	free(kind);
}

/* ------------------------------------------------------------------ */
/* Operations                                                          */

/* Allocate an extent of up to maxlen blocks near hint for the pool. */
static bool pool_alloc(struct model *m, uint64_t hint, uint32_t maxlen)
{
	struct rlfs_mount *mp = m->mp;
	struct rlfs_trans *tp = tx(mp, maxlen + rlfs_alloc_tree_res(mp, 1));
	struct rlfs_alloc_arg a = { .tp = tp, .type = RLFS_ALLOC_NEAR, .hint_fsbno = hint,
				    .minlen = 1, .maxlen = maxlen, .alignment = 1 };
	int err = rlfs_alloc_extent(&a);
	if (err == -ENOSPC) {
		rlfs_trans_cancel(tp);
		return false;
	}
	assert_int_equal(err, 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	for (uint32_t i = 0; i < a.len; i++) {
		assert_int_equal(m->cnt[a.fsbno + i], 0);
		assert_int_equal(m->cow[a.fsbno + i], 0);
	}
	pool_add(m, a.fsbno, a.len);
	for (uint32_t i = 0; i < a.len; i++)
		m->cnt[a.fsbno + i] = 1;
	return true;
}

/* A random range of blocks with count >= 1 (not staging), up to maxlen
 * long, inside one AG.  false if the pick hit an unused block. */
static bool pick_range(struct model *m, uint32_t maxlen, uint64_t *fsbno, uint32_t *len)
{
	if (!m->npool)
		return false;
	uint64_t b = m->pool[rnd((uint32_t)m->npool)];
	if (!m->cnt[b])
		return false;
	uint32_t want = 1 + rnd(maxlen);
	uint32_t agno = rlfs_fsb_to_agno(m->mp, b);
	uint32_t n = 1;
	while (n < want && b + n < m->n && m->cnt[b + n] &&
	       rlfs_fsb_to_agno(m->mp, b + n) == agno)
		n++;
	*fsbno = b;
	*len = n;
	return true;
}

static uint32_t op_maxlen(void)
{
	uint32_t r = rnd(100);
	return r < 70 ? 6 : r < 95 ? 40 : 400;
}

/* One increment (+1) or decrement (-1) in its own transaction; cancelled
 * with probability 1/10.  Returns false if nothing was picked. */
static bool do_adjust(struct model *m, int delta)
{
	struct rlfs_mount *mp = m->mp;
	uint64_t fsbno;
	uint32_t len;
	if (!pick_range(m, op_maxlen(), &fsbno, &len))
		return false;
	struct rlfs_trans *tp = tx(mp, rlfs_refcount_res(mp, 1));
	int err = delta > 0 ? rlfs_refcount_increase(tp, fsbno, len)
			    : rlfs_refcount_decrease(tp, fsbno, len);
	assert_int_equal(err, 0);
	if (rnd(10) == 0) {
		rlfs_trans_cancel(tp);
		return true;
	}
	assert_int_equal(rlfs_trans_commit(tp), 0);
	for (uint32_t i = 0; i < len; i++) {
		uint32_t *c = &m->cnt[fsbno + i];
		if (*c != RLFS_REFC_REFCOUNT_MAX)
			*c = delta > 0 ? *c + 1 : *c - 1;
	}
	return true;
}

/* Stage a fresh extent for CoW, or unstage (and free) part of one. */
static void do_cow(struct model *m)
{
	struct rlfs_mount *mp = m->mp;
	if (rnd(2)) {
		struct rlfs_trans *tp = tx(mp, 16 + rlfs_refcount_res(mp, 1));
		struct rlfs_alloc_arg a = { .tp = tp, .type = RLFS_ALLOC_ANY,
					    .hint_fsbno = m->pool[rnd((uint32_t)m->npool)],
					    .minlen = 1, .maxlen = 1 + rnd(16), .alignment = 1 };
		int err = rlfs_alloc_extent(&a);
		if (err == -ENOSPC) {
			rlfs_trans_cancel(tp);
			return;
		}
		assert_int_equal(err, 0);
		assert_int_equal(rlfs_refcount_cow_alloc(tp, a.fsbno, a.len), 0);
		assert_int_equal(rlfs_rmap_update(tp, RLFS_RUI_MAP, a.fsbno, a.len,
						  RLFS_RMAP_OWN_COW, 0), 0);
		if (rnd(10) == 0) {
			rlfs_trans_cancel(tp);
			return;
		}
		assert_int_equal(rlfs_trans_commit(tp), 0);
		pool_add(m, a.fsbno, a.len);
		for (uint32_t i = 0; i < a.len; i++) {
			assert_int_equal(m->cnt[a.fsbno + i], 0);
			m->cow[a.fsbno + i] = 1;
		}
		return;
	}
	/* unstage a random staging run (part of it) */
	for (int tries = 0; tries < 50; tries++) {
		uint64_t b = m->pool[rnd((uint32_t)m->npool)];
		if (!m->cow[b])
			continue;
		uint32_t n = 1, want = 1 + rnd(20), agno = rlfs_fsb_to_agno(mp, b);
		while (n < want && b + n < m->n && m->cow[b + n] && rlfs_fsb_to_agno(mp, b + n) == agno)
			n++;
		struct rlfs_trans *tp = tx(mp, rlfs_refcount_res(mp, 1));
		assert_int_equal(rlfs_refcount_cow_free(tp, b, n), 0);
		assert_int_equal(rlfs_rmap_update(tp, RLFS_RUI_UNMAP, b, n, RLFS_RMAP_OWN_COW, 0), 0);
		assert_int_equal(rlfs_free_extent(tp, b, n), 0);
		if (rnd(10) == 0) {
			rlfs_trans_cancel(tp);
			return;
		}
		assert_int_equal(rlfs_trans_commit(tp), 0);
		memset(m->cow + b, 0, n);
		return;
	}
}

/* find_shared / get against the model on a random range. */
static void check_queries(struct model *m)
{
	struct rlfs_mount *mp = m->mp;
	uint64_t fsbno;
	uint32_t len;
	if (!pick_range(m, 200, &fsbno, &len))
		return;
	struct rlfs_trans *tp = tx(mp, 0);
	uint64_t sf;
	uint32_t sl, rc;
	assert_int_equal(rlfs_refcount_find_shared(tp, fsbno, len, &sf, &sl), 0);
	uint32_t i = 0;
	while (i < len && m->cnt[fsbno + i] < 2)
		i++;
	if (i == len) {
		assert_int_equal(sl, 0);
		assert_int_equal(sf, fsbno + len);
	} else {
		uint32_t j = i;
		while (j < len && m->cnt[fsbno + j] >= 2)
			j++;
		assert_int_equal(sf, fsbno + i);
		assert_int_equal(sl, j - i);
	}
	uint64_t b = fsbno + rnd(len);
	assert_int_equal(rlfs_refcount_get(tp, b, &rc), 0);
	assert_int_equal(rc, m->cnt[b] >= 2 ? m->cnt[b] : 1);
	rlfs_trans_cancel(tp);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

/*
 * generic/358-359 style: fill a pool, then a clone-heavy phase (70% +1),
 * an unshare-heavy phase (70% -1), a remount, and a drain (every reference
 * dropped): at the end the free space is exactly what it was.
 */
static void random_run(uint64_t size, uint32_t bs, uint32_t agcount, int nops, uint32_t poolfrac,
		       unsigned minlevels)
{
	struct tu_fs fs;
	seed_from_env();
	tu_mkfs_mount(&fs, size, bs, agcount);
	struct model m;
	model_init(&m, fs.mp);
	struct rlfs_trans *tp = tx(fs.mp, 0);
	uint64_t free0;
	assert_int_equal(rlfs_count_free(tp, &free0), 0);
	rlfs_trans_cancel(tp);

	/* pool: poolfrac percent of the filesystem in extents of 1..64 */
	uint64_t target = fs.mp->dblocks * poolfrac / 100;
	while (m.npool < target)
		if (!pool_alloc(&m, rnd((uint32_t)fs.mp->dblocks), 1 + rnd(64)))
			break;
	check(&m);

	for (int phase = 0; phase < 2; phase++) {
		for (int i = 0; i < nops; i++) {
			uint32_t r = rnd(100);
			if (r < 3)
				do_cow(&m);
			else if (r < 5)
				pool_alloc(&m, m.pool[rnd((uint32_t)m.npool)], 1 + rnd(32));
			else if (r < 8)
				check_queries(&m);
			else
				do_adjust(&m, (rnd(100) < 70) == (phase == 0) ? 1 : -1);
			if (i % 1000 == 999)
				check(&m);
		}
		check(&m);
		tu_remount(&fs);
		m.mp = fs.mp;
		/* the mount freed every staging extent (no CoW fork owns one
		 * after a remount: rlfs_cowfork_recover) */
		memset(m.cow, 0, m.n);
		check(&m);
	}
	if (getenv("RLFS_TEST_VERBOSE"))
		fprintf(stderr, "refcount tree reached %u levels\n", m.maxlevel);
	assert_true(m.maxlevel >= minlevels);

	/* drain: drop every reference (run by run) and unstage everything */
	for (bool any = true; any;) {
		any = false;
		for (uint64_t b = 0; b < m.n;) {
			if (!m.cnt[b]) {
				b++;
				continue;
			}
			uint32_t agno = rlfs_fsb_to_agno(fs.mp, b);
			uint64_t e = b + 1;
			while (e < m.n && m.cnt[e] && rlfs_fsb_to_agno(fs.mp, e) == agno)
				e++;
			tp = tx(fs.mp, rlfs_refcount_res(fs.mp, 1));
			assert_int_equal(rlfs_extent_release(tp, b, (uint32_t)(e - b)), 0);
			assert_int_equal(rlfs_trans_commit(tp), 0);
			for (uint64_t i = b; i < e; i++) {
				assert_true(m.cnt[i] != RLFS_REFC_REFCOUNT_MAX);
				m.cnt[i]--;
			}
			any = true;
			b = e;
		}
	}
	for (uint64_t b = 0; b < m.n; b++) {
		if (!m.cow[b])
			continue;
		tp = tx(fs.mp, rlfs_refcount_res(fs.mp, 1));
		assert_int_equal(rlfs_refcount_cow_free(tp, b, 1), 0);
		assert_int_equal(rlfs_rmap_update(tp, RLFS_RUI_UNMAP, b, 1, RLFS_RMAP_OWN_COW, 0), 0);
		assert_int_equal(rlfs_free_extent(tp, b, 1), 0);
		assert_int_equal(rlfs_trans_commit(tp), 0);
		m.cow[b] = 0;
	}
	check(&m);
	tp = tx(fs.mp, 0);
	uint64_t free1;
	assert_int_equal(rlfs_count_free(tp, &free1), 0);
	for (uint32_t agno = 0; agno < fs.mp->agcount; agno++) {
		struct rlfs_buf *agbp;
		assert_int_equal(rlfs_ag_read_header(tp, agno, &agbp), 0);
		assert_int_equal(rlfs_get16(rlfs_agh(agbp)->refc_level), 1);
	}
	rlfs_trans_cancel(tp);
	assert_int_equal(free1, free0);
	model_free(&m);
	tu_unmount(&fs);
}

/* 1 KiB blocks, one big AG of interest: the tree grows to 3 levels. */
static void test_random_1k_tall(void **state)
{
	/* exact free-block accounting: without the rmap btree, which keeps
	 * the blocks it grew into and changes the AGFL's refills (its own
	 * accounting: test_rmapfeat and fsck's cross-check) */
	tu_mkfs_rmapbt = -1;
	random_run(96ull << 20, 1024, 2, 12000, 60, 3);
	tu_mkfs_rmapbt = 0;
}

/* 4 KiB blocks, 4 AGs: shorter trees, ops spread over AGs. */
static void test_random_4k(void **state)
{
	random_run(64ull << 20, 4096, 4, 4000, 50, 2);
}

static void expect_recs(struct rlfs_mount *mp, uint32_t agno, const struct rcrec *want, size_t n)
{
	struct rlfs_trans *tp = tx(mp, 0);
	struct rlfs_btree_cur cur;
	struct reclist got = { 0 };
	rlfs_refcount_cur_init(&cur, tp, agno, NULL);
	assert_int_equal(rlfs_btree_check(&cur), 0);
	assert_int_equal(rlfs_btree_query_all(&cur, collect, &got), 0);
	rlfs_btree_cur_del(&cur);
	rlfs_trans_cancel(tp);
	if (got.n != n)
		for (size_t i = 0; i < got.n; i++)
			fprintf(stderr, "  rec %#x +%u rc %u\n", got.r[i].key, got.r[i].len, got.r[i].rc);
	assert_int_equal(got.n, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(got.r[i].key, want[i].key);
		assert_int_equal(got.r[i].len, want[i].len);
		assert_int_equal(got.r[i].rc, want[i].rc);
	}
	free(got.r);
}

static uint64_t alloc_exact(struct rlfs_mount *mp, uint32_t len)
{
	struct rlfs_trans *tp = tx(mp, len + rlfs_alloc_tree_res(mp, 1));
	struct rlfs_alloc_arg a = { .tp = tp, .type = RLFS_ALLOC_ANY, .minlen = len,
				    .maxlen = len, .alignment = 1 };
	assert_int_equal(rlfs_alloc_extent(&a), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	return a.fsbno;
}

static bool block_is_free(struct rlfs_mount *mp, uint64_t fsbno)
{
	struct rlfs_trans *tp = tx(mp, 0);
	struct rlfs_btree_cur cur;
	struct rlfs_alloc_rec key, r;
	int stat;
	uint32_t agno = rlfs_fsb_to_agno(mp, fsbno), agbno = rlfs_fsb_to_agbno(mp, fsbno);
	rlfs_put32(key.startblock, agbno);
	rlfs_put32(key.blockcount, 0);
	rlfs_alloc_cur_init(&cur, tp, &rlfs_bnobt_ops, agno, NULL);
	assert_int_equal(rlfs_btree_lookup(&cur, RLFS_LOOKUP_LE, &key, &stat), 0);
	bool isfree = false;
	if (stat) {
		assert_int_equal(rlfs_btree_get_rec(&cur, &r, &stat), 0);
		isfree = stat && rlfs_get32(r.startblock) + rlfs_get32(r.blockcount) > agbno;
	}
	rlfs_btree_cur_del(&cur);
	rlfs_trans_cancel(tp);
	return isfree;
}

static void adj(struct rlfs_mount *mp, uint64_t fsbno, uint32_t len, int delta)
{
	struct rlfs_trans *tp = tx(mp, rlfs_refcount_res(mp, 1));
	assert_int_equal(delta > 0 ? rlfs_refcount_increase(tp, fsbno, len)
				   : rlfs_refcount_decrease(tp, fsbno, len), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
}

/* Records at RLFS_REFC_REFCOUNT_MAX stay there; neighbours keep moving. */
static void test_max_refcount(void **state)
{
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 32ull << 20, 1024, 1);
	struct rlfs_mount *mp = fs.mp;
	uint64_t x = alloc_exact(mp, 10);
	uint32_t agno = rlfs_fsb_to_agno(mp, x), a0 = rlfs_fsb_to_agbno(mp, x);
	adj(mp, x, 10, 1);
	adj(mp, x + 2, 3, 1);
	/* force the middle record to MAX - 1 */
	struct rlfs_trans *tp = tx(mp, 0);
	struct rlfs_btree_cur cur;
	rlfs_le32 k = rlfs_le32_of(a0 + 2);
	int stat;
	rlfs_refcount_cur_init(&cur, tp, agno, NULL);
	assert_int_equal(rlfs_btree_lookup(&cur, RLFS_LOOKUP_EQ, &k, &stat), 0);
	assert_int_equal(stat, 1);
	struct rlfs_refcount_rec r;
	rlfs_put32(r.startblock, a0 + 2);
	rlfs_put32(r.blockcount, 3);
	rlfs_put32(r.refcount, RLFS_REFC_REFCOUNT_MAX - 1);
	assert_int_equal(rlfs_btree_update(&cur, &r), 0);
	rlfs_btree_cur_del(&cur);
	assert_int_equal(rlfs_trans_commit(tp), 0);

	adj(mp, x, 10, 1); /* 3, MAX, 3 */
	adj(mp, x, 10, 1); /* 4, MAX, 4 */
	const struct rcrec w1[] = { { a0, 2, 4 }, { a0 + 2, 3, RLFS_REFC_REFCOUNT_MAX },
				    { a0 + 5, 5, 4 } };
	expect_recs(mp, agno, w1, 3);
	for (int i = 0; i < 3; i++)
		adj(mp, x, 10, -1); /* 1, MAX, 1 */
	const struct rcrec w2[] = { { a0 + 2, 3, RLFS_REFC_REFCOUNT_MAX } };
	expect_recs(mp, agno, w2, 1);
	adj(mp, x, 10, -1); /* 0 (freed), MAX, 0 (freed) */
	expect_recs(mp, agno, w2, 1);
	assert_true(block_is_free(mp, x));
	assert_true(block_is_free(mp, x + 1));
	assert_false(block_is_free(mp, x + 2));
	assert_false(block_is_free(mp, x + 4));
	assert_true(block_is_free(mp, x + 5));
	assert_true(block_is_free(mp, x + 9));
	/* MAX sticks, and a MAX neighbour reached from below merges */
	adj(mp, x + 2, 3, -1);
	expect_recs(mp, agno, w2, 1);
	tp = tx(mp, 0);
	uint32_t rc;
	assert_int_equal(rlfs_refcount_get(tp, x + 3, &rc), 0);
	assert_int_equal(rc, RLFS_REFC_REFCOUNT_MAX);
	rlfs_trans_cancel(tp);
	tu_remount(&fs);
	expect_recs(fs.mp, agno, w2, 1);
	tu_unmount(&fs);
}

/* Staging records: never merge with shared ones, merge with each other,
 * split on partial free, overlap and missing ranges are corruption. */
static void test_cow_domain(void **state)
{
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 32ull << 20, 1024, 1);
	struct rlfs_mount *mp = fs.mp;
	uint64_t x = alloc_exact(mp, 30);
	uint32_t agno = rlfs_fsb_to_agno(mp, x), a0 = rlfs_fsb_to_agbno(mp, x);
	const uint32_t F = RLFS_REFC_COWFLAG;
	adj(mp, x, 10, 1);
	struct rlfs_trans *tp = tx(mp, rlfs_refcount_res(mp, 2));
	assert_int_equal(rlfs_refcount_cow_alloc(tp, x + 10, 5), 0);
	assert_int_equal(rlfs_refcount_cow_alloc(tp, x + 15, 5), 0); /* merges */
	assert_int_equal(rlfs_trans_commit(tp), 0);
	const struct rcrec w1[] = { { a0, 10, 2 }, { (a0 + 10) | F, 10, 1 } };
	expect_recs(mp, agno, w1, 2);
	/* shared next to staging: +1 on [x+5, x+10) must not touch staging */
	adj(mp, x + 5, 5, 1);
	const struct rcrec w2[] = { { a0, 5, 2 }, { a0 + 5, 5, 3 }, { (a0 + 10) | F, 10, 1 } };
	expect_recs(mp, agno, w2, 3);
	/* overlap: corruption, cancelled */
	tp = tx(mp, rlfs_refcount_res(mp, 1));
	assert_int_equal(rlfs_refcount_cow_alloc(tp, x + 18, 4), -EUCLEAN);
	rlfs_trans_cancel(tp);
	/* free a middle part: splits */
	tp = tx(mp, rlfs_refcount_res(mp, 1));
	assert_int_equal(rlfs_refcount_cow_free(tp, x + 12, 3), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	const struct rcrec w3[] = { { a0, 5, 2 }, { a0 + 5, 5, 3 }, { (a0 + 10) | F, 2, 1 },
				    { (a0 + 15) | F, 5, 1 } };
	expect_recs(mp, agno, w3, 4);
	/* freeing something not staged: corruption */
	tp = tx(mp, rlfs_refcount_res(mp, 1));
	assert_int_equal(rlfs_refcount_cow_free(tp, x + 11, 3), -EUCLEAN);
	rlfs_trans_cancel(tp);
	expect_recs(mp, agno, w3, 4);
	/* refcount_get / find_shared ignore staging */
	tp = tx(mp, 0);
	uint32_t rc, sl;
	uint64_t sf;
	assert_int_equal(rlfs_refcount_get(tp, x + 10, &rc), 0);
	assert_int_equal(rc, 1);
	assert_int_equal(rlfs_refcount_get(tp, x + 7, &rc), 0);
	assert_int_equal(rc, 3);
	assert_int_equal(rlfs_refcount_find_shared(tp, x + 3, 20, &sf, &sl), 0);
	assert_int_equal(sf, x + 3);
	assert_int_equal(sl, 7); /* over two adjacent records */
	assert_int_equal(rlfs_refcount_find_shared(tp, x + 10, 20, &sf, &sl), 0);
	assert_int_equal(sl, 0);
	assert_int_equal(sf, x + 30);
	rlfs_trans_cancel(tp);
	/* a range touching the AG headers is refused */
	tp = tx(mp, 0);
	assert_int_equal(rlfs_refcount_increase(tp, 1, 2), -EUCLEAN);
	rlfs_trans_cancel(tp);
	tu_unmount(&fs);
}

/* Without the feature: no tree, extent_release frees, adjust refused. */
static void test_no_reflink(void **state)
{
	char path[] = "/tmp/rlfs-unit-norefl-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct rlfs_mkfs_opts o = { .size_bytes = 32ull << 20, .blocksize = 1024, .force = 1,
				    .reflink = -1 };
	assert_int_equal(rlfs_mkfs(path, &o), 0);
	struct rlfs_mount *mp;
	assert_int_equal(rlfs_mount_open(path, RLFS_MOUNT_NOLOCK, &mp), 0);
	assert_false(rlfs_has_reflink(mp));
	uint64_t x = alloc_exact(mp, 4);
	struct rlfs_trans *tp = tx(mp, 8);
	struct rlfs_buf *agbp;
	assert_int_equal(rlfs_ag_read_header(tp, 0, &agbp), 0);
	assert_int_equal(rlfs_get32(rlfs_agh(agbp)->refc_root), 0);
	assert_int_equal(rlfs_refcount_increase(tp, x, 4), -EOPNOTSUPP);
	uint64_t sf;
	uint32_t sl;
	assert_int_equal(rlfs_refcount_find_shared(tp, x, 4, &sf, &sl), 0);
	assert_int_equal(sl, 0);
	assert_int_equal(rlfs_extent_release(tp, x, 4), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_true(block_is_free(mp, x));
	assert_int_equal(rlfs_mount_close(mp), 0);
	/* reflink = 2 is not an option */
	o.reflink = 2;
	assert_int_equal(rlfs_mkfs(path, &o), -EINVAL);
	o.reflink = 1;
	assert_int_equal(rlfs_mkfs(path, &o), 0);
	assert_int_equal(rlfs_mount_open(path, RLFS_MOUNT_NOLOCK, &mp), 0);
	assert_true(rlfs_has_reflink(mp));
	assert_int_equal(rlfs_mount_close(mp), 0);
	unlink(path);
}

/* Cancelled adjusts restore the tree and free space exactly. */
static void test_cancel(void **state)
{
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 32ull << 20, 1024, 1);
	struct rlfs_mount *mp = fs.mp;
	struct model m;
	model_init(&m, mp);
	seed_from_env();
	for (int i = 0; i < 40; i++)
		pool_alloc(&m, 0, 50);
	for (int i = 0; i < 3000; i++)
		do_adjust(&m, rnd(3) ? 1 : -1);
	check(&m);
	struct rlfs_trans *tp = tx(mp, 0);
	uint64_t f0;
	assert_int_equal(rlfs_count_free(tp, &f0), 0);
	rlfs_trans_cancel(tp);
	int64_t fd0 = mp->fdblocks;
	/* big ranges, cancelled: +1 then -1 of the same range (net zero),
	 * then one -1 (may free blocks) */
	for (int i = 0; i < 20; i++) {
		tp = tx(mp, rlfs_refcount_res(mp, 8));
		uint64_t fsbno;
		uint32_t len;
		for (int j = 0; j < 4; j++) {
			if (!pick_range(&m, 400, &fsbno, &len))
				continue;
			assert_int_equal(rlfs_refcount_increase(tp, fsbno, len), 0);
			assert_int_equal(rlfs_refcount_increase(tp, fsbno, len), 0);
			assert_int_equal(rlfs_refcount_decrease(tp, fsbno, len), 0);
		}
		if (pick_range(&m, 400, &fsbno, &len))
			assert_int_equal(rlfs_refcount_decrease(tp, fsbno, len), 0);
		rlfs_trans_cancel(tp);
	}
	assert_int_equal(mp->fdblocks, fd0);
	check(&m);
	tp = tx(mp, 0);
	uint64_t f1;
	assert_int_equal(rlfs_count_free(tp, &f1), 0);
	rlfs_trans_cancel(tp);
	assert_int_equal(f1, f0);
	model_free(&m);
	tu_unmount(&fs);
}

/* ------------------------------------------------------------------ */
/* fsck: per-block reference counts                                    */

/* Exit status of "fsck -n" on the image (the fs must be unmounted; a
 * missing fsck binary fails the test, see tu_fsck_bin). */
static int run_fsck(const char *path, int expect)
{
	return tu_fsck(path, expect);
}

/*
 * Files a and b: a written (one extent), b maps a's extent too.  how:
 * 0 refcount +1 (correct), 1 no refcount change, 2 one more +1 on part,
 * 3 a refcount record on blocks nobody maps, 4 a leaked staging extent.
 */
static int fsck_case(int how)
{
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 32ull << 20, 4096, 2);
	struct rlfs_mount *mp = fs.mp;
	struct stat a, b;
	assert_int_equal(rlfs_mknod(mp, mp->rootino, "a", S_IFREG | 0644, 0, 0, 0, &a), 0);
	assert_int_equal(rlfs_mknod(mp, mp->rootino, "b", S_IFREG | 0644, 0, 0, 0, &b), 0);
	static char buf[8 * 4096];
	memset(buf, 'r', sizeof(buf));
	assert_int_equal(rlfs_write(mp, a.st_ino, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(rlfs_fsync(mp, a.st_ino, 0), 0);
	struct rlfs_inode *ia, *ib;
	assert_int_equal(rlfs_iget(mp, a.st_ino, &ia), 0);
	assert_int_equal(rlfs_iget(mp, b.st_ino, &ib), 0);
	pthread_rwlock_wrlock(&ib->iolock);
	struct rlfs_trans *tp = tx(mp, 64);
	struct rlfs_irec got;
	bool found;
	assert_int_equal(rlfs_bmap_load(tp, ia), 0);
	rlfs_bmap_lookup(ia, 0, &got, &found);
	assert_true(found);
	assert_int_equal(got.blockcount, 8);
	if (how <= 2) {
		assert_int_equal(rlfs_bmap_load(tp, ib), 0);
		rlfs_trans_ijoin(tp, ib);
		assert_int_equal(rlfs_bmap_map_extent(tp, ib, &got), 0);
		ib->size = sizeof(buf);
		rlfs_trans_log_inode(tp, ib);
		if (how != 1)
			assert_int_equal(rlfs_refcount_increase(tp, got.startblock, 8), 0);
		if (how == 2)
			assert_int_equal(rlfs_refcount_increase(tp, got.startblock + 2, 3), 0);
	} else {
		struct rlfs_alloc_arg aa = { .tp = tp, .type = RLFS_ALLOC_ANY, .minlen = 5,
					     .maxlen = 5, .alignment = 1 };
		assert_int_equal(rlfs_alloc_extent(&aa), 0);
		if (how == 3)
			assert_int_equal(rlfs_refcount_increase(tp, aa.fsbno, 5), 0);
		else
			assert_int_equal(rlfs_refcount_cow_alloc(tp, aa.fsbno, 5), 0);
	}
	assert_int_equal(rlfs_trans_commit(tp), 0);
	pthread_rwlock_unlock(&ib->iolock);
	rlfs_irele(ia);
	rlfs_irele(ib);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	int rc = run_fsck(fs.path, how == 0 ? 0 : 4);
	tu_unmount(&fs);
	return rc;
}

static void test_fsck_counts(void **state)
{
	assert_int_equal(fsck_case(0), 0);
	assert_int_equal(fsck_case(1), 4);
	assert_int_equal(fsck_case(2), 4);
	assert_int_equal(fsck_case(3), 4);
	assert_int_equal(fsck_case(4), 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_max_refcount),
		cmocka_unit_test(test_cow_domain),
		cmocka_unit_test(test_no_reflink),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_fsck_counts),
		cmocka_unit_test(test_random_4k),
		cmocka_unit_test(test_random_1k_tall),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

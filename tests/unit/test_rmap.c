/*
 * test_rmap.c: the rmap btree's ops vector and record wrappers (lib/rmap.c)
 * against a brute-force scan of an in-memory array.
 *
 * The tree is built like test_btree.c's overlapping-mode trees: a memory
 * device and a bare mount (one AG), the root kept in a "holder" block, tree
 * blocks from a bump allocator; the ops are rlfs_rmapbt_ops with only the
 * root and block hooks replaced (keys, high keys, comparison, record and
 * block verifiers are the real ones).  1 KiB blocks (39 records a leaf, 17
 * slots a node) so a few hundred records make a 2-3 level tree.
 *
 * Records: groups of physical extents mapped by several inodes at different
 * file offsets (shared blocks: overlapping records), unshared extents,
 * unwritten, attr-fork and bmbt-block records, and special owners.  Every
 * range query is compared with a scan of the array using independent
 * arithmetic: for agbno-range queries (a, 0, 0)..(b, ~0, ~0) "the extent
 * shares a block with [a, b]"; for random key ranges the lexicographic
 * overlap of [key, high key] with [low, high].
 *
 * Seed: RLFS_TEST_SEED (decimal); printed with every failure.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev.h"
#include "rmap.h"

#define BLOCKSIZE 1024u
#define DBLOCKS 8192u
#define HOLDER_FSBNO 1
#define ROOT_FSBNO 2
#define HOLDER_MAGIC 0x544f4f52u /* "ROOT" */

static uint64_t g_seed;

#define R_FAIL(...)                                                                \
	do {                                                                       \
		fprintf(stderr, "test_rmap: ");                                    \
		fprintf(stderr, __VA_ARGS__);                                      \
		fprintf(stderr, " [%s:%d, RLFS_TEST_SEED=%llu]\n", __FILE__,       \
			__LINE__, (unsigned long long)g_seed);                     \
		fail();                                                            \
	} while (0)
#define R_EQ(a, b)                                                                 \
	do {                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                \
		if (a_ != b_)                                                      \
			R_FAIL("%s == %lld, expected %s == %lld", #a, a_, #b, b_); \
	} while (0)

static uint64_t rnd(uint64_t n) { return n ? tu_rand() % n : 0; }

struct env {
	struct rlfs_dev *dev;
	struct rlfs_mount *mp;
	struct rlfs_btree_ops ops;
	struct rlfs_trans *tp;
	struct rlfs_buf *holder;
	uint64_t next_blk;
	struct rlfs_rmap_irec *m; /* model: every record in the tree */
	size_t n, cap;
};

static const struct rlfs_buf_ops holder_bops = {
	.name = "holder", .magic = HOLDER_MAGIC, .has_hdr = true,
};

static void put64(uint8_t *p, uint64_t v) { rlfs_le64 x = rlfs_le64_of(v); memcpy(p, &x, 8); }
static uint64_t get64(const uint8_t *p) { rlfs_le64 x; memcpy(&x, p, 8); return rlfs_get64(x); }

static void h_get_root(struct rlfs_btree_cur *cur, uint64_t *fsbno, unsigned *nlevels)
{
	struct env *e = cur->priv;
	*fsbno = get64((uint8_t *)e->holder->data + 48);
	*nlevels = (unsigned)get64((uint8_t *)e->holder->data + 56);
}

static void h_set_root(struct rlfs_btree_cur *cur, uint64_t fsbno, unsigned nlevels)
{
	struct env *e = cur->priv;
	put64((uint8_t *)e->holder->data + 48, fsbno);
	put64((uint8_t *)e->holder->data + 56, nlevels);
	rlfs_trans_log_buf(cur->tp, e->holder);
}

static int h_alloc_block(struct rlfs_btree_cur *cur, uint64_t hint, uint64_t *fsbno)
{
	struct env *e = cur->priv;
	if (e->next_blk >= DBLOCKS)
		return -ENOSPC;
	*fsbno = e->next_blk++;
	return 0;
}

static int h_free_block(struct rlfs_btree_cur *cur, uint64_t fsbno) { return 0; }
static uint64_t h_owner(struct rlfs_btree_cur *cur) { return 0; /* AG 0 */ }

static void tx_begin(struct env *e)
{
	assert_int_equal(rlfs_trans_alloc(e->mp, &e->mp->resv.tr_fsck, 0, 0, &e->tp), 0);
	assert_int_equal(rlfs_trans_read_buf(e->tp, HOLDER_FSBNO, &holder_bops, RLFS_OWNER_ANY,
					     &e->holder), 0);
}

static void tx_commit(struct env *e)
{
	assert_int_equal(rlfs_trans_commit(e->tp), 0);
	e->tp = NULL;
	e->holder = NULL;
}

static void cur_init(struct env *e, struct rlfs_btree_cur *cur)
{
	rlfs_btree_cur_init(cur, e->tp, &e->ops, 0, NULL, e);
}

static void env_setup(struct env *e)
{
	memset(e, 0, sizeof(*e));
	e->ops = rlfs_rmapbt_ops;
	e->ops.get_root = h_get_root;
	e->ops.set_root = h_set_root;
	e->ops.alloc_block = h_alloc_block;
	e->ops.free_block = h_free_block;
	e->ops.owner = h_owner;
	assert_int_equal(rlfs_dev_open_mem((uint64_t)DBLOCKS * BLOCKSIZE, &e->dev), 0);
	assert_int_equal(rlfs_mount_alloc_bare(e->dev, BLOCKSIZE, DBLOCKS, 0, &e->mp), 0);
	e->next_blk = ROOT_FSBNO + 1;
	struct rlfs_trans *tp;
	struct rlfs_buf *hbp, *rbp;
	assert_int_equal(rlfs_trans_alloc(e->mp, &e->mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_trans_get_buf(tp, HOLDER_FSBNO, &holder_bops, 0, &hbp), 0);
	put64((uint8_t *)hbp->data + 48, ROOT_FSBNO);
	put64((uint8_t *)hbp->data + 56, 1);
	rlfs_trans_log_buf(tp, hbp);
	assert_int_equal(rlfs_trans_get_buf(tp, ROOT_FSBNO, &rlfs_rmapbt_buf_ops, 0, &rbp), 0);
	rlfs_btree_init_block(e->mp, rbp, &e->ops, 0, 0);
	rlfs_trans_log_buf(tp, rbp);
	assert_int_equal(rlfs_trans_commit(tp), 0);
}

static void env_teardown(struct env *e)
{
	rlfs_mount_free_bare(e->mp);
	rlfs_dev_close(e->dev);
	free(e->m);
}

/* ------------------------------------------------------------------ */
/* model arithmetic, written independently of lib/rmap.c               */

struct k3 {
	uint64_t a, o, f;
};

static int k3_cmp(struct k3 x, struct k3 y)
{
	if (x.a != y.a)
		return x.a < y.a ? -1 : 1;
	if (x.o != y.o)
		return x.o < y.o ? -1 : 1;
	if (x.f != y.f)
		return x.f < y.f ? -1 : 1;
	return 0;
}

static struct k3 m_low(const struct rlfs_rmap_irec *r)
{
	return (struct k3){ r->startblock, r->owner, r->offset & ~RLFS_RMAP_OFF_UNWRITTEN };
}

static struct k3 m_high(const struct rlfs_rmap_irec *r)
{
	struct k3 k = m_low(r);
	k.a += r->blockcount - 1;
	if (r->owner < (1ull << 63) && !(r->offset & RLFS_RMAP_OFF_BMBT_BLOCK))
		k.f += r->blockcount - 1; /* flags are in the top bits: no carry */
	return k;
}

static int irec_sort(const void *x, const void *y)
{
	return k3_cmp(m_low(x), m_low(y));
}

static bool m_has_key(const struct env *e, const struct rlfs_rmap_irec *r)
{
	for (size_t i = 0; i < e->n; i++)
		if (!k3_cmp(m_low(&e->m[i]), m_low(r)))
			return true;
	return false;
}

static void m_add(struct env *e, const struct rlfs_rmap_irec *r)
{
	if (e->n == e->cap) {
		e->cap = e->cap ? 2 * e->cap : 256;
		e->m = realloc(e->m, e->cap * sizeof(*e->m));
		assert_non_null(e->m);
	}
	e->m[e->n++] = *r;
}

/* ------------------------------------------------------------------ */
/* queries                                                             */

struct got {
	struct rlfs_rmap_irec *r;
	size_t n, cap;
};

static int got_fn(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *rec, void *priv)
{
	struct got *g = priv;
	if (g->n == g->cap) {
		g->cap = g->cap ? 2 * g->cap : 64;
		g->r = realloc(g->r, g->cap * sizeof(*g->r));
		if (!g->r)
			return -ENOMEM;
	}
	g->r[g->n++] = *rec;
	return 0;
}

/* Query [lo, hi]; expected: the model records for which want(rec) holds, in
 * key order (the model is kept sorted before queries). */
static void check_query(struct env *e, const struct rlfs_rmap_irec *lo,
			const struct rlfs_rmap_irec *hi, bool by_agbno)
{
	struct rlfs_btree_cur cur;
	struct got g = { 0 };
	cur_init(e, &cur);
	int err = rlfs_rmap_query_range(&cur, lo, hi, got_fn, &g);
	rlfs_btree_cur_del(&cur);
	R_EQ(err, 0);
	size_t j = 0;
	for (size_t i = 0; i < e->n; i++) {
		const struct rlfs_rmap_irec *r = &e->m[i];
		bool want;
		if (by_agbno) /* the extent shares a block with [lo, hi] */
			want = r->startblock <= hi->startblock &&
			       (uint64_t)r->startblock + r->blockcount - 1 >= lo->startblock;
		else
			want = k3_cmp(m_low(r), m_low(hi)) <= 0 && k3_cmp(m_high(r), m_low(lo)) >= 0;
		if (!want)
			continue;
		if (j >= g.n)
			R_FAIL("query [%u..%u]: missing record [%u, +%u) owner %llu off 0x%llx",
			       lo->startblock, hi->startblock, r->startblock, r->blockcount,
			       (unsigned long long)r->owner, (unsigned long long)r->offset);
		if (memcmp(&g.r[j], r, sizeof(*r)))
			R_FAIL("query [%u..%u]: result %zu is [%u, +%u) owner %llu, expected "
			       "[%u, +%u) owner %llu", lo->startblock, hi->startblock, j,
			       g.r[j].startblock, g.r[j].blockcount,
			       (unsigned long long)g.r[j].owner, r->startblock, r->blockcount,
			       (unsigned long long)r->owner);
		j++;
	}
	if (j != g.n)
		R_FAIL("query [%u..%u]: %zu records, expected %zu", lo->startblock,
		       hi->startblock, g.n, j);
	free(g.r);
}

static void check_all_queries(struct env *e, unsigned nrandom)
{
	qsort(e->m, e->n, sizeof(*e->m), irec_sort);
	tx_begin(e);
	struct rlfs_btree_cur cur;
	cur_init(e, &cur);
	R_EQ(rlfs_btree_check(&cur), 0);
	uint64_t cnt;
	R_EQ(rlfs_btree_count(&cur, &cnt), 0);
	R_EQ(cnt, e->n);
	rlfs_btree_cur_del(&cur);
	/* every single block and many agbno ranges: all owners of each block */
	for (uint32_t a = 0; a < 2500; a++) {
		uint32_t b = a + (uint32_t)(a % 7 ? rnd(3) : rnd(60));
		struct rlfs_rmap_irec lo = { a, 1, 0, 0 }, hi = { b, 1, ~0ull, ~0ull };
		check_query(e, &lo, &hi, true);
	}
	/* random key ranges: owner and offset take part */
	for (unsigned i = 0; i < nrandom; i++) {
		const struct rlfs_rmap_irec *p = &e->m[rnd(e->n)], *q = &e->m[rnd(e->n)];
		struct rlfs_rmap_irec lo = { p->startblock + (uint32_t)rnd(3), 1, p->owner,
					     p->offset + rnd(5) },
				      hi = { q->startblock + (uint32_t)rnd(3), 1, q->owner,
					     q->offset + rnd(5) };
		if (rnd(4) == 0)
			lo.owner = rnd(2) ? 0 : lo.owner + 1;
		if (k3_cmp(m_low(&lo), m_low(&hi)) > 0) {
			struct rlfs_rmap_irec t = lo;
			lo = hi;
			hi = t;
		}
		check_query(e, &lo, &hi, false);
	}
	/* low > high is -EINVAL */
	struct rlfs_rmap_irec lo = { 50, 1, 7, 0 }, hi = { 40, 1, 7, 0 };
	struct got g = { 0 };
	cur_init(e, &cur);
	R_EQ(rlfs_rmap_query_range(&cur, &lo, &hi, got_fn, &g), -EINVAL);
	rlfs_btree_cur_del(&cur);
	free(g.r);
	rlfs_trans_cancel(e->tp);
	e->tp = NULL;
}

/* ------------------------------------------------------------------ */
/* the test                                                            */

static uint64_t pick_flags(void)
{
	switch (rnd(8)) {
	case 0: return RLFS_RMAP_OFF_UNWRITTEN;
	case 1: return RLFS_RMAP_OFF_ATTR_FORK;
	default: return 0;
	}
}

static void insert_rec(struct env *e, struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *r)
{
	if (m_has_key(e, r))
		return;
	int err = rlfs_rmap_insert(cur, r);
	if (err)
		R_FAIL("insert [%u, +%u) owner %llu off 0x%llx: %d", r->startblock, r->blockcount,
		       (unsigned long long)r->owner, (unsigned long long)r->offset, err);
	m_add(e, r);
}

static void test_rmap_query(void **state)
{
	struct env e;
	const char *s = getenv("RLFS_TEST_SEED");
	g_seed = s && *s ? strtoull(s, NULL, 0) : 20261206ull;
	tu_seed(g_seed);
	env_setup(&e);

	tx_begin(&e);
	struct rlfs_btree_cur cur;
	cur_init(&e, &cur);
	/* special owners: headers, AG trees, inode chunks, CoW staging */
	const struct rlfs_rmap_irec specials[] = {
		{ 0, 3, RLFS_RMAP_OWN_FS, 0 },     { 3, 2, RLFS_RMAP_OWN_AG, 0 },
		{ 5, 1, RLFS_RMAP_OWN_INOBT, 0 },  { 6, 1, RLFS_RMAP_OWN_REFC, 0 },
		{ 7, 16, RLFS_RMAP_OWN_INODES, 0 }, { 23, 9, RLFS_RMAP_OWN_LOG, 0 },
		{ 2450, 30, RLFS_RMAP_OWN_COW, 0 },
	};
	for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); i++)
		insert_rec(&e, &cur, &specials[i]);
	rlfs_btree_cur_del(&cur);
	tx_commit(&e);

	unsigned batch = 0;
	uint32_t agbno = 40;
	while (e.n < 900 && agbno < 2400) {
		tx_begin(&e);
		cur_init(&e, &cur);
		for (unsigned k = 0; k < 10 && agbno < 2400; k++) {
			uint32_t len = 1 + (uint32_t)rnd(rnd(4) ? 8 : 40);
			unsigned owners = rnd(3) ? 1 + (unsigned)rnd(5) : 1;
			for (unsigned o = 0; o < owners; o++) {
				/* the same blocks, several inodes, various offsets */
				struct rlfs_rmap_irec r = { agbno, len, 128 + rnd(24),
							    rnd(1000) | pick_flags() };
				insert_rec(&e, &cur, &r);
				/* a sub-range of the shared extent mapped again */
				if (len > 2 && rnd(3) == 0) {
					uint32_t d = 1 + (uint32_t)rnd(len - 2);
					struct rlfs_rmap_irec r2 = { agbno + d, len - d, 200 + rnd(8),
								     rnd(500) };
					insert_rec(&e, &cur, &r2);
				}
			}
			if (rnd(6) == 0) { /* a bmbt block of one of the inodes */
				struct rlfs_rmap_irec b = { agbno + len, 1, 128 + rnd(24),
							    RLFS_RMAP_OFF_BMBT_BLOCK };
				insert_rec(&e, &cur, &b);
				len++;
			}
			agbno += len + (uint32_t)rnd(4) - (rnd(4) == 0 ? (len > 1) : 0);
		}
		rlfs_btree_cur_del(&cur);
		tx_commit(&e);
		batch++;
	}
	unsigned nlevels;
	uint64_t root;
	tx_begin(&e);
	cur_init(&e, &cur);
	h_get_root(&cur, &root, &nlevels);
	/* duplicate key, invalid records */
	struct rlfs_rmap_irec dup = e.m[e.n / 2];
	dup.blockcount = dup.blockcount > 1 ? 1 : 2;
	R_EQ(rlfs_rmap_insert(&cur, &dup), -EEXIST);
	struct rlfs_rmap_irec bad[] = {
		{ 100, 0, 130, 0 },                            /* zero length */
		{ DBLOCKS - 2, 5, 130, 0 },                    /* beyond the AG */
		{ 100, 1, RLFS_RMAP_OWN_AG, 5 },               /* special owner with offset */
		{ 100, 1, RLFS_RMAP_OWN_MIN, 0 },              /* unknown special owner */
		{ 100, 1, 130, RLFS_RMAP_OFF_BMBT_BLOCK | 3 }, /* bmbt block at an offset */
		{ 100, 1, 130, 1ull << 55 },                   /* reserved bit */
		{ 100, 1, 130, RLFS_RMAP_OFF_ATTR_FORK | RLFS_RMAP_OFF_UNWRITTEN },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		R_EQ(rlfs_rmap_insert(&cur, &bad[i]), -EINVAL);
	rlfs_btree_cur_del(&cur);
	rlfs_trans_cancel(e.tp);
	e.tp = NULL;
	print_message("test_rmap: %zu records in %u batches, tree height %u, %llu blocks\n", e.n,
		      batch, nlevels, (unsigned long long)(e.next_blk - ROOT_FSBNO));
	if (e.n < 500 || nlevels < 3)
		R_FAIL("tree too small: %zu records, height %u", e.n, nlevels);
	check_all_queries(&e, 2000);

	/* delete about half (and a record that is not there), then again */
	tx_begin(&e);
	cur_init(&e, &cur);
	struct rlfs_rmap_irec gone = e.m[0];
	gone.blockcount++;
	R_EQ(rlfs_rmap_delete(&cur, &gone), -ENOENT);
	size_t keep = 0;
	for (size_t i = 0; i < e.n; i++) {
		if (rnd(2)) {
			e.m[keep++] = e.m[i];
			continue;
		}
		int err = rlfs_rmap_delete(&cur, &e.m[i]);
		if (err)
			R_FAIL("delete [%u, +%u) owner %llu: %d", e.m[i].startblock,
			       e.m[i].blockcount, (unsigned long long)e.m[i].owner, err);
	}
	e.n = keep;
	rlfs_btree_cur_del(&cur);
	tx_commit(&e);
	check_all_queries(&e, 1000);
	env_teardown(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rmap_query),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

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
 * The record operations (rlfs_rmap_map / unmap / convert, merging and
 * splitting) are tested twice: test_rmap_ops_cases, hand-written cases
 * with the exact records expected (merges left, right and both sides,
 * shared blocks, unmap of a whole record, its ends and its middle, convert
 * of a middle part and of a whole record between two neighbours, and the
 * -EUCLEAN / -EINVAL cases, which must leave the tree unchanged both
 * before and after the transaction is cancelled); and test_rmap_ops_model,
 * thousands of random valid operations per seed (inodes' data and attr
 * forks, unwritten extents, bmbt blocks, special owners, blocks shared by
 * up to 8 mappings, a 3-level tree) checked after every batch of 25
 * against a per-block model: every block's set of (owner, flags, file
 * offset) equals the tree's records expanded per block, no record is
 * directly followed by one it should have merged with (canonical form),
 * and every record passes rlfs_rmap_check_irec; after each batch one
 * random operation that must fail gets -EUCLEAN and changes nothing.
 * (The refused operations print "corruption" lines on stderr.)
 *
 * Seed: RLFS_TEST_SEED (decimal); printed with every failure.  Without
 * it the model test runs a fixed list of seeds.
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

/* ------------------------------------------------------------------ */
/* map / unmap / convert (rlfs_rmap_map etc.)                          */

/* All records of the tree, in key order, read in e->tp. */
static void tree_recs_in(struct env *e, struct got *g)
{
	struct rlfs_btree_cur cur;
	const struct rlfs_rmap_irec lo = { 0, 1, 0, 0 }, hi = { ~0u, 1, ~0ull, ~0ull };
	memset(g, 0, sizeof(*g));
	cur_init(e, &cur);
	R_EQ(rlfs_btree_check(&cur), 0);
	R_EQ(rlfs_rmap_query_range(&cur, &lo, &hi, got_fn, g), 0);
	rlfs_btree_cur_del(&cur);
}

/* The same in a transaction of its own (cancelled). */
static void tree_recs(struct env *e, struct got *g)
{
	tx_begin(e);
	tree_recs_in(e, g);
	rlfs_trans_cancel(e->tp);
	e->tp = NULL;
}

static bool same_recs(const struct got *a, const struct got *b)
{
	return a->n == b->n && (!a->n || !memcmp(a->r, b->r, a->n * sizeof(*a->r)));
}

enum op { OP_MAP, OP_UNMAP, OP_CONVERT };
static const char *const op_name[] = { "map", "unmap", "convert" };

static int op_call(struct rlfs_btree_cur *cur, enum op op, uint32_t bno, uint32_t len,
		   uint64_t owner, uint64_t off)
{
	switch (op) {
	case OP_MAP: return rlfs_rmap_map(cur, bno, len, owner, off);
	case OP_UNMAP: return rlfs_rmap_unmap(cur, bno, len, owner, off);
	default: return rlfs_rmap_convert(cur, bno, len, owner, off);
	}
}

/* One operation in its own transaction: committed if it worked, else
 * cancelled.  A failed operation must not have changed the tree, neither
 * before the cancel (every error these tests provoke is found while
 * looking) nor after it. */
static int op_tx(struct env *e, enum op op, uint32_t bno, uint32_t len, uint64_t owner,
		 uint64_t off)
{
	struct got before, in_tx, after;
	struct rlfs_btree_cur cur;
	tree_recs(e, &before);
	tx_begin(e);
	cur_init(e, &cur);
	int err = op_call(&cur, op, bno, len, owner, off);
	rlfs_btree_cur_del(&cur);
	if (!err) {
		tx_commit(e);
		free(before.r);
		return 0;
	}
	tree_recs_in(e, &in_tx);
	rlfs_trans_cancel(e->tp);
	e->tp = NULL;
	tree_recs(e, &after);
	if (!same_recs(&before, &in_tx) || !same_recs(&before, &after))
		R_FAIL("%s [%u, +%u) owner %llu: error %d changed the tree (%s the cancel)",
		       op_name[op], bno, len, (unsigned long long)owner, err,
		       same_recs(&before, &in_tx) ? "after" : "before");
	free(before.r);
	free(in_tx.r);
	free(after.r);
	return err;
}

/* The tree holds exactly these records (in key order). */
static void expect_tree(struct env *e, const struct rlfs_rmap_irec *want, size_t n, int line)
{
	struct got g;
	tree_recs(e, &g);
	bool same = g.n == n;
	for (size_t i = 0; same && i < n; i++)
		same = !memcmp(&g.r[i], &want[i], sizeof(want[i]));
	if (!same) {
		for (size_t i = 0; i < g.n; i++)
			fprintf(stderr, "  got [%u, +%u) owner %llu off 0x%llx\n", g.r[i].startblock,
				g.r[i].blockcount, (unsigned long long)g.r[i].owner,
				(unsigned long long)g.r[i].offset);
		R_FAIL("line %d: tree differs from the %zu expected records", line, n);
	}
	free(g.r);
}
#define EXPECT_TREE(e, ...)                                                            \
	do {                                                                           \
		const struct rlfs_rmap_irec want_[] = { __VA_ARGS__ };                 \
		expect_tree(e, want_, sizeof(want_) / sizeof(want_[0]), __LINE__);    \
	} while (0)

#define UNW RLFS_RMAP_OFF_UNWRITTEN
#define ATTR RLFS_RMAP_OFF_ATTR_FORK
#define BMBT RLFS_RMAP_OFF_BMBT_BLOCK

static void test_rmap_ops_cases(void **state)
{
	struct env e;
	g_seed = 0;
	env_setup(&e);
	/* map: left, right, both sides; shared blocks; not mergeable */
	R_EQ(op_tx(&e, OP_MAP, 10, 5, 130, 100), 0);
	R_EQ(op_tx(&e, OP_MAP, 15, 2, 130, 105), 0);            /* left */
	R_EQ(op_tx(&e, OP_MAP, 20, 5, 130, 110), 0);
	R_EQ(op_tx(&e, OP_MAP, 17, 3, 130, 107), 0);            /* both */
	R_EQ(op_tx(&e, OP_MAP, 8, 2, 130, 98), 0);              /* right */
	EXPECT_TREE(&e, { 8, 17, 130, 98 });
	R_EQ(op_tx(&e, OP_MAP, 10, 15, 131, 0), 0);             /* other owner */
	R_EQ(op_tx(&e, OP_MAP, 12, 3, 130, 500), 0);            /* same file, other offset */
	R_EQ(op_tx(&e, OP_MAP, 25, 1, 130, 115), 0);            /* merges with 130's only */
	R_EQ(op_tx(&e, OP_MAP, 26, 1, 130, 200), 0);            /* offset not contiguous */
	R_EQ(op_tx(&e, OP_MAP, 27, 1, 130, 201 | UNW), 0);      /* unwritten differs */
	R_EQ(op_tx(&e, OP_MAP, 28, 1, 130, 202 | ATTR), 0);     /* other fork */
	R_EQ(op_tx(&e, OP_MAP, 29, 1, 132, 203), 0);            /* other owner */
	EXPECT_TREE(&e, { 8, 18, 130, 98 }, { 10, 15, 131, 0 }, { 12, 3, 130, 500 },
		    { 26, 1, 130, 200 }, { 27, 1, 130, 201 | UNW }, { 28, 1, 130, 202 | ATTR },
		    { 29, 1, 132, 203 });
	/* special owners and bmbt blocks merge whatever the offset */
	R_EQ(op_tx(&e, OP_MAP, 102, 3, RLFS_RMAP_OWN_AG, 0), 0);
	R_EQ(op_tx(&e, OP_MAP, 100, 2, RLFS_RMAP_OWN_AG, 0), 0);
	R_EQ(op_tx(&e, OP_MAP, 106, 1, 130, BMBT), 0);
	R_EQ(op_tx(&e, OP_MAP, 105, 1, 130, BMBT), 0);
	R_EQ(op_tx(&e, OP_MAP, 107, 1, RLFS_RMAP_OWN_INOBT, 0), 0);
	R_EQ(op_tx(&e, OP_UNMAP, 101, 3, RLFS_RMAP_OWN_AG, 0), 0);
	EXPECT_TREE(&e, { 8, 18, 130, 98 }, { 10, 15, 131, 0 }, { 12, 3, 130, 500 },
		    { 26, 1, 130, 200 }, { 27, 1, 130, 201 | UNW }, { 28, 1, 130, 202 | ATTR },
		    { 29, 1, 132, 203 }, { 100, 1, RLFS_RMAP_OWN_AG, 0 },
		    { 104, 1, RLFS_RMAP_OWN_AG, 0 }, { 105, 2, 130, BMBT },
		    { 107, 1, RLFS_RMAP_OWN_INOBT, 0 });

	/* unmap: middle (split), left end, right end, whole */
	env_teardown(&e);
	env_setup(&e);
	R_EQ(op_tx(&e, OP_MAP, 200, 10, 132, 50), 0);
	R_EQ(op_tx(&e, OP_MAP, 200, 10, 133, 7), 0); /* shared, untouched below */
	R_EQ(op_tx(&e, OP_UNMAP, 203, 3, 132, 53), 0);
	EXPECT_TREE(&e, { 200, 3, 132, 50 }, { 200, 10, 133, 7 }, { 206, 4, 132, 56 });
	R_EQ(op_tx(&e, OP_UNMAP, 200, 1, 132, 50), 0);
	R_EQ(op_tx(&e, OP_UNMAP, 208, 2, 132, 58), 0);
	EXPECT_TREE(&e, { 200, 10, 133, 7 }, { 201, 2, 132, 51 }, { 206, 2, 132, 56 });
	R_EQ(op_tx(&e, OP_UNMAP, 201, 2, 132, 51), 0);
	R_EQ(op_tx(&e, OP_UNMAP, 206, 2, 132, 56), 0);
	EXPECT_TREE(&e, { 200, 10, 133, 7 });

	/* convert: middle (three records), then back (one record); a whole
	 * record merging with both neighbours */
	R_EQ(op_tx(&e, OP_MAP, 300, 10, 130, 0 | UNW), 0);
	R_EQ(op_tx(&e, OP_CONVERT, 303, 3, 130, 3), 0);
	EXPECT_TREE(&e, { 200, 10, 133, 7 }, { 300, 3, 130, UNW }, { 303, 3, 130, 3 },
		    { 306, 4, 130, 6 | UNW });
	R_EQ(op_tx(&e, OP_CONVERT, 303, 3, 130, 3 | UNW), 0);
	EXPECT_TREE(&e, { 200, 10, 133, 7 }, { 300, 10, 130, UNW });
	R_EQ(op_tx(&e, OP_MAP, 400, 3, 130, 0), 0);
	R_EQ(op_tx(&e, OP_MAP, 403, 2, 130, 3 | UNW), 0);
	R_EQ(op_tx(&e, OP_MAP, 405, 3, 130, 5), 0);
	R_EQ(op_tx(&e, OP_MAP, 403, 2, 131, 3 | UNW), 0); /* another owner, same blocks */
	EXPECT_TREE(&e, { 200, 10, 133, 7 }, { 300, 10, 130, UNW }, { 400, 3, 130, 0 },
		    { 403, 2, 130, 3 | UNW }, { 403, 2, 131, 3 | UNW }, { 405, 3, 130, 5 });
	R_EQ(op_tx(&e, OP_CONVERT, 403, 2, 130, 3), 0);
	EXPECT_TREE(&e, { 200, 10, 133, 7 }, { 300, 10, 130, UNW }, { 400, 8, 130, 0 },
		    { 403, 2, 131, 3 | UNW });

	/* errors: -EUCLEAN, tree unchanged (op_tx checks after cancelling) */
	R_EQ(op_tx(&e, OP_UNMAP, 600, 2, 130, 0), -EUCLEAN);   /* not mapped */
	R_EQ(op_tx(&e, OP_UNMAP, 400, 2, 131, 0), -EUCLEAN);   /* not by that owner */
	R_EQ(op_tx(&e, OP_UNMAP, 400, 2, 130, 1), -EUCLEAN);   /* other offset */
	R_EQ(op_tx(&e, OP_UNMAP, 400, 2, 130, ATTR), -EUCLEAN); /* other fork */
	R_EQ(op_tx(&e, OP_UNMAP, 405, 5, 130, 5), -EUCLEAN);   /* past the record */
	R_EQ(op_tx(&e, OP_UNMAP, 400, 2, 130, UNW), -EUCLEAN); /* unwritten differs */
	R_EQ(op_tx(&e, OP_CONVERT, 400, 2, 130, UNW | 0), 0);  /* (fine: W -> U) */
	R_EQ(op_tx(&e, OP_CONVERT, 400, 2, 130, UNW | 0), -EUCLEAN); /* already U */
	R_EQ(op_tx(&e, OP_CONVERT, 300, 12, 130, 0), -EUCLEAN); /* spans two records */
	R_EQ(op_tx(&e, OP_MAP, 401, 2, 130, 1), -EUCLEAN);     /* already mapped */
	R_EQ(op_tx(&e, OP_MAP, 198, 3, 133, 5), -EUCLEAN);     /* overlaps the left end */
	R_EQ(op_tx(&e, OP_MAP, 406, 4, 130, 6 | UNW), -EUCLEAN); /* same offsets, other state */
	R_EQ(op_tx(&e, OP_MAP, 200, 20, 133, 7), -EUCLEAN);    /* covers the record */
	R_EQ(op_tx(&e, OP_MAP, 205, 1, 133, 12), -EUCLEAN);    /* inside the record */
	R_EQ(op_tx(&e, OP_MAP, 402, 1, 130, 700), 0);          /* other offset: fine */
	/* -EINVAL */
	R_EQ(op_tx(&e, OP_MAP, 700, 0, 130, 0), -EINVAL);
	R_EQ(op_tx(&e, OP_UNMAP, 700, 0, 130, 0), -EINVAL);
	R_EQ(op_tx(&e, OP_MAP, DBLOCKS - 1, 2, 130, 0), -EINVAL);
	R_EQ(op_tx(&e, OP_MAP, 700, 1, RLFS_RMAP_OWN_AG, 3), -EINVAL);
	R_EQ(op_tx(&e, OP_MAP, 700, 1, 130, BMBT | 3), -EINVAL);
	R_EQ(op_tx(&e, OP_MAP, 700, 1, 130, ATTR | UNW), -EINVAL);
	R_EQ(op_tx(&e, OP_CONVERT, 400, 1, 130, ATTR), -EINVAL);
	R_EQ(op_tx(&e, OP_CONVERT, 400, 1, RLFS_RMAP_OWN_AG, 0), -EINVAL);
	R_EQ(op_tx(&e, OP_MAP, 800, 2, RLFS_RMAP_OWN_COW, 0), 0);
	R_EQ(op_tx(&e, OP_MAP, 801, 2, RLFS_RMAP_OWN_COW, 0), -EUCLEAN); /* special overlap */
	EXPECT_TREE(&e, { 200, 10, 133, 7 }, { 300, 10, 130, UNW }, { 400, 2, 130, UNW },
		    { 402, 6, 130, 2 }, { 402, 1, 130, 700 }, { 403, 2, 131, 3 | UNW },
		    { 800, 2, RLFS_RMAP_OWN_COW, 0 });
	/* lookup_le_range names the record mapping a block at an offset */
	struct rlfs_btree_cur cur;
	struct rlfs_rmap_irec r;
	int stat;
	tx_begin(&e);
	cur_init(&e, &cur);
	R_EQ(rlfs_rmap_lookup_le_range(&cur, 404, 130, 4, &r, &stat), 0);
	R_EQ(stat, 1);
	R_EQ(r.startblock, 402);
	R_EQ(r.blockcount, 6);
	R_EQ(rlfs_rmap_lookup_le_range(&cur, 402, 130, 700 | UNW, &r, &stat), 0);
	R_EQ(stat, 1);
	R_EQ(r.offset, 700);
	R_EQ(rlfs_rmap_lookup_le_range(&cur, 404, 130, 5, &r, &stat), 0);
	R_EQ(stat, 0);
	R_EQ(rlfs_rmap_lookup_le_range(&cur, 801, RLFS_RMAP_OWN_COW, 0, &r, &stat), 0);
	R_EQ(stat, 1);
	R_EQ(r.startblock, 800);
	rlfs_btree_cur_del(&cur);
	rlfs_trans_cancel(e.tp);
	e.tp = NULL;
	env_teardown(&e);
}

/* ------------------------------------------------------------------ */
/* randomized: map/unmap/convert against a per-block model             */

#define NB 3000u /* model blocks: [0, NB) */
#define MAXT 8   /* mappings per block */

/* One block's mapping: owner, RLFS_RMAP_OFF_* flags, file offset of this
 * block (0 for special owners and bmbt blocks). */
struct mt {
	uint64_t owner, flags, fileoff;
};

struct model {
	struct mt t[NB][MAXT];
	uint8_t n[NB];
	uint8_t seen[NB]; /* bit i: t[b][i] matched by a record */
	unsigned ops[3], skipped, refused, max_height;
	size_t max_recs;
};

static bool no_off(uint64_t owner, uint64_t flags)
{
	return owner >= (1ull << 63) || (flags & BMBT);
}

/* The mapping (owner, offset) gives block start + i. */
static struct mt mt_at(uint64_t owner, uint64_t offset, uint32_t i)
{
	uint64_t fl = offset & RLFS_RMAP_OFF_FLAGS;
	return (struct mt){ owner, fl, no_off(owner, fl) ? 0 : (offset & RLFS_RMAP_OFF_MASK) + i };
}

/* Index of t in block b: exact (with unwritten) or not; -1 if absent. */
static int m_find(const struct model *m, uint32_t b, struct mt t, bool exact)
{
	uint64_t mask = exact ? ~0ull : ~UNW;
	for (int i = 0; i < m->n[b]; i++)
		if (m->t[b][i].owner == t.owner && m->t[b][i].fileoff == t.fileoff &&
		    !((m->t[b][i].flags ^ t.flags) & mask))
			return i;
	return -1;
}

/* The next / previous block of the same extent of t's mapping. */
static struct mt mt_step(struct mt t, int d)
{
	if (!no_off(t.owner, t.flags))
		t.fileoff += (uint64_t)(int64_t)d;
	return t;
}

static void m_apply(struct model *m, enum op op, uint32_t bno, uint32_t len, uint64_t owner,
		    uint64_t off)
{
	for (uint32_t i = 0; i < len; i++) {
		uint32_t b = bno + i;
		struct mt t = mt_at(owner, off, i);
		if (op == OP_MAP) {
			m->t[b][m->n[b]++] = t;
			continue;
		}
		int k = m_find(m, b, op == OP_UNMAP ? t : mt_at(owner, off ^ UNW, i), true);
		assert_true(k >= 0);
		if (op == OP_CONVERT)
			m->t[b][k].flags ^= UNW;
		else
			m->t[b][k] = m->t[b][--m->n[b]];
	}
}

/* Can [bno, +len) be mapped to (owner, off) without a duplicate? */
static bool m_can_map(const struct model *m, uint32_t bno, uint32_t len, uint64_t owner,
		      uint64_t off)
{
	if (bno >= NB || len > NB - bno)
		return false;
	for (uint32_t i = 0; i < len; i++)
		if (m->n[bno + i] >= MAXT || m_find(m, bno + i, mt_at(owner, off, i), false) >= 0)
			return false;
	return true;
}

/* A random block that has a mapping, and one of its mappings. */
static bool m_pick(const struct model *m, uint32_t *b, struct mt *t)
{
	for (int tries = 0; tries < 50; tries++) {
		*b = (uint32_t)rnd(NB);
		if (m->n[*b]) {
			*t = m->t[*b][rnd(m->n[*b])];
			return true;
		}
	}
	return false;
}

/* The extent of t's mapping around block b: [*s, *e), as one canonical
 * record would hold it. */
static void m_extent(const struct model *m, uint32_t b, struct mt t, uint32_t *s, uint32_t *e)
{
	struct mt u = t;
	*s = b;
	while (*s > 0 && (no_off(t.owner, t.flags) || u.fileoff > 0) &&
	       m_find(m, *s - 1, mt_step(u, -1), true) >= 0) {
		u = mt_step(u, -1);
		(*s)--;
	}
	u = t;
	*e = b + 1;
	while (*e < NB && m_find(m, *e, mt_step(u, 1), true) >= 0) {
		u = mt_step(u, 1);
		(*e)++;
	}
}

static const uint64_t special_owners[] = {
	RLFS_RMAP_OWN_FS, RLFS_RMAP_OWN_LOG, RLFS_RMAP_OWN_AG, RLFS_RMAP_OWN_INOBT,
	RLFS_RMAP_OWN_INODES, RLFS_RMAP_OWN_REFC, RLFS_RMAP_OWN_COW,
};

static void random_owner(uint64_t *owner, uint64_t *off)
{
	uint64_t r = rnd(12);
	*owner = 128 + rnd(6);
	if (r == 0) {
		*owner = special_owners[rnd(sizeof(special_owners) / sizeof(special_owners[0]))];
		*off = 0;
	} else if (r == 1) {
		*off = BMBT;
	} else if (r == 2) {
		*off = ATTR | rnd(3000);
	} else {
		*off = rnd(3000) | (rnd(3) ? 0 : UNW);
	}
}

/* Choose a random operation valid for the model; false if none found. */
static bool random_op(const struct model *m, enum op *op, uint32_t *bno, uint32_t *len,
		      uint64_t *owner, uint64_t *off)
{
	uint32_t b, s, e;
	struct mt t;
	uint64_t r = rnd(100);
	if (r < 52) {
		*op = OP_MAP;
		*len = 1 + (uint32_t)rnd(rnd(6) ? 8 : 60);
		if (r < 22 && m_pick(m, &b, &t)) { /* next to an extent: merges */
			m_extent(m, b, t, &s, &e);
			*owner = t.owner;
			bool right = rnd(2);
			if (!right && !no_off(t.owner, t.flags) && t.fileoff - (b - s) < *len)
				right = true;
			if (!right && s < *len)
				right = true;
			*bno = right ? e : s - *len;
			struct mt at = right ? mt_step(t, (int)(e - b)) : mt_step(t, -(int)(b - s + *len));
			*off = at.flags | at.fileoff;
			if (!no_off(t.owner, t.flags) && !(t.flags & ATTR) && rnd(5) == 0)
				*off ^= UNW;
		} else {
			random_owner(owner, off);
			*bno = (r < 40 && m_pick(m, &b, &t)) ? b : (uint32_t)rnd(NB); /* shared */
		}
		return m_can_map(m, *bno, *len, *owner, *off);
	}
	if (!m_pick(m, &b, &t))
		return false;
	*op = r < 76 ? OP_UNMAP : OP_CONVERT;
	if (*op == OP_CONVERT && (no_off(t.owner, t.flags) || (t.flags & ATTR)))
		return false;
	m_extent(m, b, t, &s, &e);
	switch (rnd(4)) { /* whole, left part, right part, middle */
	case 0: break;
	case 1: e = s + 1 + (uint32_t)rnd(e - s); break;
	case 2: s = e - 1 - (uint32_t)rnd(e - s); break;
	default:
		s += (uint32_t)rnd(e - s);
		e = s + 1 + (uint32_t)rnd(e - s);
	}
	struct mt at = mt_step(t, (int)s - (int)b);
	*bno = s;
	*len = e - s;
	*owner = t.owner;
	*off = (at.flags ^ (*op == OP_CONVERT ? UNW : 0)) | at.fileoff;
	return true;
}

/* A random operation the tree must refuse with -EUCLEAN: map blocks of
 * an extent again at the same offsets (either unwritten state), unmap an
 * extent plus the block after it, unmap or convert with the wrong
 * unwritten state.  false if none found. */
static bool random_bad_op(const struct model *m, enum op *op, uint32_t *bno, uint32_t *len,
			  uint64_t *owner, uint64_t *off)
{
	uint32_t b, s, e;
	struct mt t;
	if (!m_pick(m, &b, &t))
		return false;
	m_extent(m, b, t, &s, &e);
	bool data = !no_off(t.owner, t.flags) && !(t.flags & ATTR);
	*owner = t.owner;
	switch (rnd(4)) {
	case 0: /* map again, from inside the extent */
		*op = OP_MAP;
		*bno = b;
		*len = 1 + (uint32_t)rnd(4);
		*off = t.flags | t.fileoff;
		if (data && rnd(2))
			*off ^= UNW;
		return *bno + *len <= NB;
	case 1: /* one block too many */
		if (e >= NB)
			return false;
		*op = OP_UNMAP;
		*bno = s;
		*len = e + 1 - s;
		*off = mt_step(t, -(int)(b - s)).fileoff | t.flags;
		return true;
	default: /* wrong state */
		if (!data)
			return false;
		*op = rnd(2) ? OP_UNMAP : OP_CONVERT;
		*bno = b;
		*len = 1;
		*off = (t.flags ^ (*op == OP_UNMAP ? UNW : 0)) | t.fileoff;
		return true;
	}
}

static int rec_key_cmp(const void *x, const void *y)
{
	const struct rlfs_rmap_irec *a = x, *b = y;
	if (a->owner != b->owner)
		return a->owner < b->owner ? -1 : 1;
	if (a->offset != b->offset) /* flags, then file offset */
		return a->offset < b->offset ? -1 : 1;
	if (a->startblock != b->startblock)
		return a->startblock < b->startblock ? -1 : 1;
	return 0;
}

/* The tree against the model: same per-block mappings, canonical
 * (no record directly followed by a mergeable one), well formed. */
static void m_check(struct env *e, struct model *m, const char *when)
{
	struct got g;
	tree_recs(e, &g);
	memset(m->seen, 0, sizeof(m->seen));
	for (size_t i = 0; i < g.n; i++) {
		const struct rlfs_rmap_irec *r = &g.r[i];
		const char *why = rlfs_rmap_check_irec(r, DBLOCKS);
		if (why)
			R_FAIL("%s: record [%u, +%u) owner %llu: %s", when, r->startblock,
			       r->blockcount, (unsigned long long)r->owner, why);
		for (uint32_t j = 0; j < r->blockcount; j++) {
			uint32_t b = r->startblock + j;
			int k = b < NB ? m_find(m, b, mt_at(r->owner, r->offset, j), true) : -1;
			if (k < 0 || (m->seen[b] & (1u << k)))
				R_FAIL("%s: record [%u, +%u) owner %llu off 0x%llx: block %u %s", when,
				       r->startblock, r->blockcount, (unsigned long long)r->owner,
				       (unsigned long long)r->offset, b,
				       k < 0 ? "not in the model" : "twice");
			m->seen[b] |= (uint8_t)(1u << k);
		}
	}
	for (uint32_t b = 0; b < NB; b++)
		if (m->seen[b] != (uint8_t)((1u << m->n[b]) - 1))
			R_FAIL("%s: block %u: %u mappings, the tree has another set", when, b,
			       m->n[b]);
	/* canonical: look each record's would-be successor up by
	 * (owner, flags + file offset, startblock) */
	qsort(g.r, g.n, sizeof(*g.r), rec_key_cmp);
	for (size_t i = 0; i < g.n; i++) {
		struct rlfs_rmap_irec next = g.r[i];
		next.startblock += next.blockcount;
		if (!no_off(next.owner, next.offset))
			next.offset += next.blockcount;
		if (bsearch(&next, g.r, g.n, sizeof(*g.r), rec_key_cmp))
			R_FAIL("%s: record [%u, +%u) owner %llu off 0x%llx and the next one "
			       "should be merged", when, g.r[i].startblock, g.r[i].blockcount,
			       (unsigned long long)g.r[i].owner, (unsigned long long)g.r[i].offset);
	}
	if (g.n > m->max_recs)
		m->max_recs = g.n;
	free(g.r);
}

static void run_model(uint64_t seed, unsigned nops)
{
	struct env e;
	struct model *m = calloc(1, sizeof(*m));
	assert_non_null(m);
	g_seed = seed;
	tu_seed(seed);
	env_setup(&e);
	unsigned done = 0;
	while (done < nops) {
		tx_begin(&e);
		struct rlfs_btree_cur cur;
		cur_init(&e, &cur);
		for (unsigned k = 0; k < 25 && done < nops; k++) {
			enum op op;
			uint32_t bno, len;
			uint64_t owner, off;
			if (!random_op(m, &op, &bno, &len, &owner, &off)) {
				m->skipped++;
				continue;
			}
			int err = op_call(&cur, op, bno, len, owner, off);
			if (err)
				R_FAIL("op %u: %s [%u, +%u) owner %llu off 0x%llx: %d", done,
				       op_name[op], bno, len, (unsigned long long)owner,
				       (unsigned long long)off, err);
			m_apply(m, op, bno, len, owner, off);
			m->ops[op]++;
			done++;
		}
		uint64_t root;
		unsigned height;
		h_get_root(&cur, &root, &height);
		if (height > m->max_height)
			m->max_height = height;
		rlfs_btree_cur_del(&cur);
		tx_commit(&e);
		char when[48];
		snprintf(when, sizeof(when), "after op %u", done);
		m_check(&e, m, when);
		/* one refused operation (op_tx checks the tree is unchanged) */
		enum op op;
		uint32_t bno, len;
		uint64_t owner, off;
		if (random_bad_op(m, &op, &bno, &len, &owner, &off)) {
			int err = op_tx(&e, op, bno, len, owner, off);
			if (err != -EUCLEAN)
				R_FAIL("%s: %s [%u, +%u) owner %llu off 0x%llx: %d, expected "
				       "-EUCLEAN", when, op_name[op], bno, len,
				       (unsigned long long)owner, (unsigned long long)off, err);
			m->refused++;
		}
	}
	print_message("test_rmap: seed %llu: %u map, %u unmap, %u convert (%u skipped), %u "
		      "refused, up to %zu records, height up to %u\n", (unsigned long long)seed,
		      m->ops[OP_MAP], m->ops[OP_UNMAP], m->ops[OP_CONVERT], m->skipped,
		      m->refused, m->max_recs, m->max_height);
	if (m->max_height < 3 || m->ops[OP_CONVERT] < nops / 10 || m->ops[OP_UNMAP] < nops / 10)
		R_FAIL("seed %llu: too little exercised", (unsigned long long)seed);
	env_teardown(&e);
	free(m);
}

static void test_rmap_ops_model(void **state)
{
	const char *s = getenv("RLFS_TEST_SEED");
	if (s && *s) {
		run_model(strtoull(s, NULL, 0), 6000);
		return;
	}
	static const uint64_t seeds[] = { 1, 2, 3, 20261206 };
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		run_model(seeds[i], 6000);
}

/*
 * The rmapbt's direct comparators (ops->cmp_rec_low / cmp_rec_high, a
 * speed path of range queries and lookups) against the definition: the
 * sign of cmp_key(init_key_from_rec(rec) or init_high_key_from_rec(rec),
 * key), over random records drawn from few values per field (so ties reach
 * owner and offset) with every flag, special owners, long extents and
 * startblocks near 2^32, and keys taken from other records' low and high
 * keys.
 */
static uint64_t dc_rand(uint64_t *st)
{
	*st ^= *st << 13;
	*st ^= *st >> 7;
	*st ^= *st << 17;
	return *st;
}

static void dc_rec(uint64_t *st, struct rlfs_rmap_rec *raw)
{
	static const uint64_t owners[] = { 128, 129, 4096, RLFS_RMAP_OWN_FS, RLFS_RMAP_OWN_AG,
					   RLFS_RMAP_OWN_INODES, RLFS_RMAP_OWN_COW };
	static const uint64_t flags[] = { 0,
					  RLFS_RMAP_OFF_UNWRITTEN,
					  RLFS_RMAP_OFF_ATTR_FORK,
					  RLFS_RMAP_OFF_BMBT_BLOCK,
					  RLFS_RMAP_OFF_ATTR_FORK | RLFS_RMAP_OFF_BMBT_BLOCK };
	static const uint32_t starts[] = { 0, 1, 7, 8, 100, 0xfffffff0u, 0xffffffffu };
	struct rlfs_rmap_irec r;
	r.startblock = starts[dc_rand(st) % 7] + (uint32_t)(dc_rand(st) % 3);
	r.blockcount = dc_rand(st) % 4 ? 1 + (uint32_t)(dc_rand(st) % 9)
				       : (uint32_t)(dc_rand(st) % ((uint64_t)RLFS_RMAP_LEN_MAX + 1));
	r.owner = owners[dc_rand(st) % 7];
	r.offset = flags[dc_rand(st) % 5] | (dc_rand(st) % 4 ? dc_rand(st) % 12
							    : RLFS_RMAP_OFF_MASK - dc_rand(st) % 4);
	rlfs_rmap_rec_encode(&r, raw);
}

static int dc_sign(int d) { return (d > 0) - (d < 0); }

static void test_rmap_direct_cmp(void **state)
{
	(void)state;
	const struct rlfs_btree_ops *ops = &rlfs_rmapbt_ops;
	assert_non_null(ops->cmp_rec_low);
	assert_non_null(ops->cmp_rec_high);
	uint64_t st = 20261206;
	unsigned ties = 0;
	for (int i = 0; i < 200000; i++) {
		struct rlfs_rmap_rec rec, other;
		uint8_t key[RLFS_BTREE_MAX_KEYLEN], k[RLFS_BTREE_MAX_KEYLEN];
		dc_rec(&st, &rec);
		dc_rec(&st, &other);
		if (dc_rand(&st) % 3 == 0) { /* same startblock, maybe same owner */
			other.startblock = rec.startblock;
			if (dc_rand(&st) & 1)
				other.owner = rec.owner;
		}
		if (dc_rand(&st) & 1)
			ops->init_key_from_rec(key, &other);
		else
			ops->init_high_key_from_rec(key, &other);
		ops->init_key_from_rec(k, &rec);
		int want = dc_sign(ops->cmp_key(NULL, k, key));
		assert_int_equal(dc_sign(ops->cmp_rec_low(&rec, key)), want);
		ties += memcmp(k, key, 4) == 0; /* same startblock (the key's first field) */
		ops->init_high_key_from_rec(k, &rec);
		want = dc_sign(ops->cmp_key(NULL, k, key));
		assert_int_equal(dc_sign(ops->cmp_rec_high(&rec, key)), want);
		ties += memcmp(k, key, 4) == 0;
	}
	assert_true(ties > 20000); /* the draw reaches the owner and offset fields */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rmap_query),
		cmocka_unit_test(test_rmap_ops_cases),
		cmocka_unit_test(test_rmap_ops_model),
		cmocka_unit_test(test_rmap_direct_cmp),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

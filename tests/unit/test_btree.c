/*
 * test_btree.c: the generic b+tree against an in-memory model.
 *
 * Each test builds a tree on a memory device through a bare mount (no mkfs,
 * no allocator): the root lives in a "holder" block (so that a cancelled
 * transaction restores it like any other block) and tree blocks come from a
 * bump/free-list allocator that only reuses blocks freed by committed
 * transactions.  Records and keys carry filler bytes derived from their
 * fields so that any misplaced byte is noticed.
 *
 * Randomized runs (normal and overlapping trees, several record/key sizes
 * and block sizes) grow a tree to 3-5 levels, churn it, and shrink it back
 * to a single leaf, checking every answer (lookup EQ/LE/GE, iteration both
 * ways, range queries, counts) against a sorted array, running
 * rlfs_btree_check and block accounting after every batch, and cancelling
 * some batches (the tree must then match the model from before the batch).
 * Corruption tests flip bytes in tree blocks on the device.
 *
 * Seed: RLFS_TEST_SEED (decimal); printed with every failure.
 */
#include "testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "btree.h"
#include "dev.h"

static uint64_t g_seed;
static int g_saved_stderr = -1;

/* Corruption tests provoke many "corruption:" lines; hide them (a failure
 * message brings stderr back first). */
static void quiet(void)
{
	fflush(stderr);
	g_saved_stderr = dup(2);
	int fd = open("/dev/null", O_WRONLY);
	if (fd >= 0) {
		dup2(fd, 2);
		close(fd);
	}
}

static void unquiet(void)
{
	if (g_saved_stderr < 0)
		return;
	fflush(stderr);
	dup2(g_saved_stderr, 2);
	close(g_saved_stderr);
	g_saved_stderr = -1;
}

#define T_FAIL(...)                                                                \
	do {                                                                       \
		unquiet();                                                         \
		fprintf(stderr, "test_btree: ");                                   \
		fprintf(stderr, __VA_ARGS__);                                      \
		fprintf(stderr, " [%s:%d, RLFS_TEST_SEED=%llu]\n", __FILE__,       \
			__LINE__, (unsigned long long)g_seed);                     \
		fail();                                                            \
	} while (0)
#define T_ASSERT(c)                                                                \
	do {                                                                       \
		if (!(c))                                                          \
			T_FAIL("assertion failed: %s", #c);                        \
	} while (0)
#define T_EQ(a, b)                                                                 \
	do {                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                \
		if (a_ != b_)                                                      \
			T_FAIL("%s == %lld, expected %s == %lld", #a, a_, #b, b_); \
	} while (0)

static uint64_t rnd(uint64_t n) { return n ? tu_rand() % n : 0; }
static bool chance(unsigned pct) { return rnd(100) < pct; }

/* ------------------------------------------------------------------ */
/* tree configurations                                                 */

struct tconf {
	const char *name;
	uint32_t blocksize;
	uint16_t rec_len, key_len;
	bool overlapping;
	unsigned target;     /* records to grow to */
	unsigned min_height; /* height the tree must reach */
	unsigned mixed_ops;  /* ops in the churn phase */
	uint64_t keyspace;   /* keys (starts) drawn from [0, keyspace) */
};

/* ------------------------------------------------------------------ */
/* model                                                               */

/* normal trees: key a, value val.  overlapping: (a = start, b = owner),
 * len blocks, value val. */
struct mrec {
	uint64_t a, b;
	uint32_t len, val;
};

struct model {
	struct mrec *r;
	size_t n, cap;
};

static int mkey_cmp(const struct mrec *x, uint64_t a, uint64_t b)
{
	if (x->a != a)
		return x->a < a ? -1 : 1;
	if (x->b != b)
		return x->b < b ? -1 : 1;
	return 0;
}

/* first index with key >= (a, b) */
static size_t m_lower(const struct model *m, uint64_t a, uint64_t b)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (mkey_cmp(&m->r[mid], a, b) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool m_has(const struct model *m, uint64_t a, uint64_t b, size_t *idx)
{
	size_t i = m_lower(m, a, b);
	*idx = i;
	return i < m->n && mkey_cmp(&m->r[i], a, b) == 0;
}

static void m_insert(struct model *m, size_t i, const struct mrec *r)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 256;
		m->r = realloc(m->r, m->cap * sizeof(*m->r));
		T_ASSERT(m->r);
	}
	memmove(&m->r[i + 1], &m->r[i], (m->n - i) * sizeof(*m->r));
	m->r[i] = *r;
	m->n++;
}

static void m_delete(struct model *m, size_t i)
{
	memmove(&m->r[i], &m->r[i + 1], (m->n - i - 1) * sizeof(*m->r));
	m->n--;
}

static void m_copy(struct model *dst, const struct model *src)
{
	if (dst->cap < src->n) {
		dst->cap = src->cap;
		dst->r = realloc(dst->r, dst->cap * sizeof(*dst->r));
		T_ASSERT(dst->r);
	}
	if (src->n)
		memcpy(dst->r, src->r, src->n * sizeof(*src->r));
	dst->n = src->n;
}

/* ------------------------------------------------------------------ */
/* environment: memory device, bare mount, holder block, allocator     */

#define HOLDER_FSBNO 1
#define FIRST_TREE_BLK 2
#define HOLDER_MAGIC 0x544f4f52u /* "ROOT" */
#define TREE_MAGIC 0x54534554u   /* "TEST" */
#define TREE_OWNER 7

struct env {
	const struct tconf *cf;
	struct rlfs_dev *dev;
	struct rlfs_mount *mp;
	uint64_t dblocks;
	struct rlfs_btree_ops ops;
	struct rlfs_buf_ops bops;
	bool verify_generic;   /* buf verifier calls rlfs_btree_verify_block */

	struct rlfs_trans *tp;
	struct rlfs_buf *holder;

	uint64_t next_blk;
	uint64_t *freel;
	size_t nfree;
	uint64_t *tx_alloc, *tx_free;
	size_t ntx_alloc, ntx_free;
	unsigned fail_alloc_after; /* 0 = never; else fail the Nth alloc */
	unsigned nallocs;

	struct model m, snap;
	/* statistics for the log line */
	unsigned long nops, nbatches, ncancels, maxrecs_seen;
	unsigned maxheight;
};

static struct env *g_env;

static const struct rlfs_buf_ops holder_bops = {
	.name = "holder", .magic = HOLDER_MAGIC, .has_hdr = true,
};

static void fill(uint8_t *p, size_t len, uint64_t v)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)((v >> ((i % 8) * 8)) + i * 7 + 1);
}

static void put64(uint8_t *p, uint64_t v) { rlfs_le64 x = rlfs_le64_of(v); memcpy(p, &x, 8); }
static void put32(uint8_t *p, uint32_t v) { rlfs_le32 x = rlfs_le32_of(v); memcpy(p, &x, 4); }
static uint64_t get64(const uint8_t *p) { rlfs_le64 x; memcpy(&x, p, 8); return rlfs_get64(x); }
static uint32_t get32(const uint8_t *p) { rlfs_le32 x; memcpy(&x, p, 4); return rlfs_get32(x); }

/* record bytes from a model record */
static void enc_rec(const struct env *e, const struct mrec *r, uint8_t *buf)
{
	put64(buf, r->a);
	put64(buf + 8, r->b);
	put32(buf + 16, r->len);
	put32(buf + 20, r->val);
	fill(buf + 24, e->cf->rec_len - 24u, r->a * 0x9E3779B97F4A7C15ull ^ r->b ^
	     ((uint64_t)r->val << 20) ^ r->len);
}

static void dec_rec(const uint8_t *buf, struct mrec *r)
{
	r->a = get64(buf);
	r->b = get64(buf + 8);
	r->len = get32(buf + 16);
	r->val = get32(buf + 20);
}

/* key bytes: (x, owner) + filler */
static void enc_key(uint16_t key_len, uint64_t x, uint64_t owner, bool ovl, uint8_t *k)
{
	put64(k, x);
	if (ovl) {
		put64(k + 8, owner);
		fill(k + 16, key_len - 16u, x * 31 + owner);
	} else {
		fill(k + 8, key_len - 8u, x * 31);
	}
}

static void t_init_key(void *key, const void *rec)
{
	const struct env *e = g_env;
	const uint8_t *r = rec;
	enc_key(e->cf->key_len, get64(r), get64(r + 8), e->cf->overlapping, key);
}

static void t_init_high_key(void *key, const void *rec)
{
	const struct env *e = g_env;
	const uint8_t *r = rec;
	uint64_t start = get64(r);
	uint32_t len = get32(r + 16);
	enc_key(e->cf->key_len, start + (len ? len : 1) - 1, get64(r + 8), true, key);
}

static int t_cmp_key(struct rlfs_btree_cur *cur, const void *k1, const void *k2)
{
	const uint8_t *a = k1, *b = k2;
	uint64_t x1 = get64(a), x2 = get64(b);
	if (x1 != x2)
		return x1 < x2 ? -1 : 1;
	if (((struct env *)cur->priv)->cf->overlapping) {
		uint64_t o1 = get64(a + 8), o2 = get64(b + 8);
		if (o1 != o2)
			return o1 < o2 ? -1 : 1;
	}
	return 0;
}

static int t_verify_rec(struct rlfs_btree_cur *cur, const void *rec)
{
	struct env *e = cur->priv;
	struct mrec r;
	uint8_t buf[RLFS_BTREE_MAX_RECLEN];
	dec_rec(rec, &r);
	enc_rec(e, &r, buf);
	if (memcmp(buf, rec, e->cf->rec_len))
		return rlfs_corrupt(cur->mp, 0, "testbt", "record filler does not match");
	if (!e->cf->overlapping && r.b)
		return rlfs_corrupt(cur->mp, 0, "testbt", "record b field set");
	return 0;
}

static void t_get_root(struct rlfs_btree_cur *cur, uint64_t *fsbno, unsigned *nlevels)
{
	struct env *e = cur->priv;
	const uint8_t *d = e->holder->data;
	*fsbno = get64(d + 48);
	*nlevels = get32(d + 56);
}

static void t_set_root(struct rlfs_btree_cur *cur, uint64_t fsbno, unsigned nlevels)
{
	struct env *e = cur->priv;
	uint8_t *d = e->holder->data;
	put64(d + 48, fsbno);
	put32(d + 56, nlevels);
	rlfs_trans_log_buf(cur->tp, e->holder);
}

static int t_alloc_block(struct rlfs_btree_cur *cur, uint64_t hint, uint64_t *fsbno)
{
	struct env *e = cur->priv;
	(void)hint;
	e->nallocs++;
	if (e->fail_alloc_after && e->nallocs >= e->fail_alloc_after)
		return -ENOSPC;
	if (e->nfree) {
		size_t i = (size_t)rnd(e->nfree);
		*fsbno = e->freel[i];
		e->freel[i] = e->freel[--e->nfree];
	} else {
		if (e->next_blk >= e->dblocks)
			return -ENOSPC;
		*fsbno = e->next_blk++;
	}
	e->tx_alloc[e->ntx_alloc++] = *fsbno;
	return 0;
}

static int t_free_block(struct rlfs_btree_cur *cur, uint64_t fsbno)
{
	struct env *e = cur->priv;
	e->tx_free[e->ntx_free++] = fsbno;
	return 0;
}

static uint64_t t_owner(struct rlfs_btree_cur *cur)
{
	return TREE_OWNER;
}

static int t_buf_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	if (!g_env->verify_generic)
		return 0;
	return rlfs_btree_verify_block(mp, bp, g_env->ops.rec_len, g_env->ops.key_len,
				       g_env->ops.overlapping);
}

static void tx_begin(struct env *e)
{
	T_EQ(rlfs_trans_alloc(e->mp, &e->mp->resv.tr_fsck, 0, 0, &e->tp), 0);
	T_EQ(rlfs_trans_read_buf(e->tp, HOLDER_FSBNO, &holder_bops, RLFS_OWNER_ANY, &e->holder), 0);
	e->ntx_alloc = e->ntx_free = 0;
}

static void tx_commit(struct env *e)
{
	T_EQ(rlfs_trans_commit(e->tp), 0);
	for (size_t i = 0; i < e->ntx_free; i++)
		e->freel[e->nfree++] = e->tx_free[i];
	e->tp = NULL;
	e->holder = NULL;
	e->ntx_alloc = e->ntx_free = 0;
}

static void tx_cancel(struct env *e)
{
	rlfs_trans_cancel(e->tp);
	for (size_t i = 0; i < e->ntx_alloc; i++)
		e->freel[e->nfree++] = e->tx_alloc[i];
	e->tp = NULL;
	e->holder = NULL;
	e->ntx_alloc = e->ntx_free = 0;
}

static void cur_init(struct env *e, struct rlfs_btree_cur *cur)
{
	rlfs_btree_cur_init(cur, e->tp, &e->ops, 0, NULL, e);
}

static void env_setup(struct env *e, const struct tconf *cf, uint64_t dblocks)
{
	memset(e, 0, sizeof(*e));
	g_env = e;
	e->cf = cf;
	e->dblocks = dblocks;
	e->verify_generic = true;
	e->bops = (struct rlfs_buf_ops){ .name = "testbt", .magic = TREE_MAGIC, .has_hdr = true,
					 .verify = t_buf_verify };
	e->ops = (struct rlfs_btree_ops){
		.name = "testbt", .magic = TREE_MAGIC, .rec_len = cf->rec_len,
		.key_len = cf->key_len, .overlapping = cf->overlapping, .buf_ops = &e->bops,
		.init_key_from_rec = t_init_key,
		.init_high_key_from_rec = cf->overlapping ? t_init_high_key : NULL,
		.cmp_key = t_cmp_key, .verify_rec = t_verify_rec, .get_root = t_get_root,
		.set_root = t_set_root, .alloc_block = t_alloc_block,
		.free_block = t_free_block, .owner = t_owner,
	};
	T_EQ(rlfs_dev_open_mem(dblocks * cf->blocksize, &e->dev), 0);
	T_EQ(rlfs_mount_alloc_bare(e->dev, cf->blocksize, dblocks, 0, &e->mp), 0);
	e->freel = calloc(dblocks, sizeof(uint64_t));
	e->tx_alloc = calloc(dblocks, sizeof(uint64_t));
	e->tx_free = calloc(dblocks, sizeof(uint64_t));
	T_ASSERT(e->freel && e->tx_alloc && e->tx_free);
	e->next_blk = FIRST_TREE_BLK + 1;

	/* holder block + an empty root leaf at FIRST_TREE_BLK */
	struct rlfs_trans *tp;
	struct rlfs_buf *hbp, *rbp;
	T_EQ(rlfs_trans_alloc(e->mp, &e->mp->resv.tr_fsck, 0, 0, &tp), 0);
	T_EQ(rlfs_trans_get_buf(tp, HOLDER_FSBNO, &holder_bops, 0, &hbp), 0);
	put64((uint8_t *)hbp->data + 48, FIRST_TREE_BLK);
	put32((uint8_t *)hbp->data + 56, 1);
	rlfs_trans_log_buf(tp, hbp);
	T_EQ(rlfs_trans_get_buf(tp, FIRST_TREE_BLK, &e->bops, TREE_OWNER, &rbp), 0);
	rlfs_btree_init_block(e->mp, rbp, &e->ops, 0, TREE_OWNER);
	rlfs_trans_log_buf(tp, rbp);
	T_EQ(rlfs_trans_commit(tp), 0);
}

static void env_teardown(struct env *e)
{
	rlfs_mount_free_bare(e->mp);
	rlfs_dev_close(e->dev);
	free(e->freel);
	free(e->tx_alloc);
	free(e->tx_free);
	free(e->m.r);
	free(e->snap.r);
	g_env = NULL;
}

/* Flush dirty buffers to the device (inside a transaction for the lock). */
static void env_flush(struct env *e)
{
	struct rlfs_trans *tp;
	T_EQ(rlfs_trans_alloc(e->mp, &e->mp->resv.tr_fsck, 0, 0, &tp), 0);
	T_EQ(rlfs_buf_flush_all(e->mp), 0);
	rlfs_trans_cancel(tp);
}

static void tree_height(struct env *e, uint64_t *root, unsigned *nl)
{
	struct rlfs_btree_cur cur;
	bool own = !e->tp;
	if (own)
		tx_begin(e);
	cur_init(e, &cur);
	t_get_root(&cur, root, nl);
	if (own)
		tx_cancel(e);
}

/* ------------------------------------------------------------------ */
/* verification                                                        */

struct collect {
	struct env *e;
	struct mrec *r;
	size_t n, cap;
	size_t stop_after; /* return 1 after this many (0 = never) */
};

static int collect_fn(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct collect *c = priv;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->r = realloc(c->r, c->cap * sizeof(*c->r));
		T_ASSERT(c->r);
	}
	/* the cursor must be on the record handed to us */
	int stat;
	uint8_t buf[RLFS_BTREE_MAX_RECLEN];
	T_EQ(rlfs_btree_get_rec(cur, buf, &stat), 0);
	T_EQ(stat, 1);
	T_ASSERT(!memcmp(buf, rec, c->e->cf->rec_len));
	dec_rec(rec, &c->r[c->n++]);
	if (c->stop_after && c->n == c->stop_after)
		return 1;
	return 0;
}

static void expect_rec(struct env *e, const uint8_t *buf, const struct mrec *want)
{
	struct mrec got;
	uint8_t wbuf[RLFS_BTREE_MAX_RECLEN];
	dec_rec(buf, &got);
	enc_rec(e, want, wbuf);
	if (memcmp(buf, wbuf, e->cf->rec_len))
		T_FAIL("record (%llu,%llu,len %u,val %u), expected (%llu,%llu,len %u,val %u)",
		       (unsigned long long)got.a, (unsigned long long)got.b, got.len, got.val,
		       (unsigned long long)want->a, (unsigned long long)want->b, want->len,
		       want->val);
}

/* The cursor must be on model record idx (or on nothing if idx == n). */
static void expect_cur(struct env *e, struct rlfs_btree_cur *cur, int stat, size_t idx)
{
	uint8_t buf[RLFS_BTREE_MAX_RECLEN];
	int st;
	if (idx >= e->m.n) {
		T_EQ(stat, 0);
		T_EQ(rlfs_btree_get_rec(cur, buf, &st), 0);
		T_EQ(st, 0);
		return;
	}
	T_EQ(stat, 1);
	T_EQ(rlfs_btree_get_rec(cur, buf, &st), 0);
	T_EQ(st, 1);
	expect_rec(e, buf, &e->m.r[idx]);
}

struct blkcount {
	uint64_t nblocks;
	uint8_t *seen;
	unsigned maxlevel;
};

static int blk_fn(struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned level, void *priv)
{
	struct blkcount *bc = priv;
	T_ASSERT(bp->fsbno < g_env->dblocks);
	T_ASSERT(!bc->seen[bp->fsbno]);
	bc->seen[bp->fsbno] = 1;
	bc->nblocks++;
	if (level > bc->maxlevel)
		bc->maxlevel = level;
	return 0;
}

/* Everything about the committed tree vs the model. */
static void verify_all(struct env *e)
{
	struct rlfs_btree_cur cur;
	tx_begin(e);
	cur_init(e, &cur);
	T_EQ(rlfs_btree_check(&cur), 0);

	struct collect c = { .e = e };
	T_EQ(rlfs_btree_query_all(&cur, collect_fn, &c), 0);
	T_EQ(c.n, e->m.n);
	for (size_t i = 0; i < c.n; i++)
		T_ASSERT(!memcmp(&c.r[i], &e->m.r[i], sizeof(struct mrec)));
	free(c.r);

	uint64_t cnt;
	T_EQ(rlfs_btree_count(&cur, &cnt), 0);
	T_EQ(cnt, e->m.n);

	/* block accounting: tree blocks == allocated blocks, none free */
	struct blkcount bc = { .seen = calloc(e->dblocks, 1) };
	T_ASSERT(bc.seen);
	T_EQ(rlfs_btree_visit_blocks(&cur, blk_fn, &bc), 0);
	uint64_t root;
	unsigned nl;
	tree_height(e, &root, &nl);
	if (root)
		T_EQ(bc.maxlevel + 1, nl);
	else
		T_EQ(bc.nblocks, 0);
	T_EQ(bc.nblocks, e->next_blk - FIRST_TREE_BLK - e->nfree);
	for (size_t i = 0; i < e->nfree; i++)
		T_ASSERT(!bc.seen[e->freel[i]]);
	free(bc.seen);
	rlfs_btree_cur_del(&cur);
	tx_cancel(e);
}

/* ------------------------------------------------------------------ */
/* random operations (inside e->tp, on cursor cur)                     */

static void rand_rec(struct env *e, struct mrec *r)
{
	memset(r, 0, sizeof(*r));
	r->a = rnd(e->cf->keyspace);
	r->val = (uint32_t)tu_rand();
	if (e->cf->overlapping) {
		r->b = rnd(4);
		r->len = 1 + (uint32_t)rnd(64);
	}
}

static void rand_key(struct env *e, uint64_t *a, uint64_t *b)
{
	*a = rnd(e->cf->keyspace + 2);
	*b = e->cf->overlapping ? rnd(5) : 0;
}

static void op_insert(struct env *e, struct rlfs_btree_cur *cur)
{
	struct mrec r;
	uint8_t buf[RLFS_BTREE_MAX_RECLEN];
	size_t idx;
	rand_rec(e, &r);
	enc_rec(e, &r, buf);
	bool exists = m_has(&e->m, r.a, r.b, &idx);
	int err = rlfs_btree_insert(cur, buf);
	if (exists) {
		T_EQ(err, -EEXIST);
		return;
	}
	T_EQ(err, 0);
	m_insert(&e->m, idx, &r);
	expect_cur(e, cur, 1, idx);
}

static void op_delete(struct env *e, struct rlfs_btree_cur *cur)
{
	uint64_t a, b;
	size_t idx;
	int stat;
	uint8_t k[RLFS_BTREE_MAX_KEYLEN];
	if (e->m.n && chance(85)) {
		idx = (size_t)rnd(e->m.n);
		a = e->m.r[idx].a;
		b = e->m.r[idx].b;
	} else {
		rand_key(e, &a, &b);
	}
	bool exists = m_has(&e->m, a, b, &idx);
	enc_key(e->cf->key_len, a, b, e->cf->overlapping, k);
	T_EQ(rlfs_btree_lookup(cur, RLFS_LOOKUP_EQ, k, &stat), 0);
	T_EQ(stat, exists);
	T_EQ(rlfs_btree_delete(cur, &stat), 0);
	T_EQ(stat, exists);
	if (!exists)
		return;
	m_delete(&e->m, idx);
	/* the cursor is now on the record after the deleted one */
	uint8_t buf[RLFS_BTREE_MAX_RECLEN];
	T_EQ(rlfs_btree_get_rec(cur, buf, &stat), 0);
	expect_cur(e, cur, stat, idx);
	/* and a second delete right there works (delete loops) */
	if (stat && chance(20)) {
		T_EQ(rlfs_btree_delete(cur, &stat), 0);
		T_EQ(stat, 1);
		m_delete(&e->m, idx);
		T_EQ(rlfs_btree_get_rec(cur, buf, &stat), 0);
		expect_cur(e, cur, stat, idx);
	}
}

static void op_update(struct env *e, struct rlfs_btree_cur *cur)
{
	if (!e->m.n)
		return;
	size_t idx = (size_t)rnd(e->m.n);
	struct mrec r = e->m.r[idx];
	uint8_t k[RLFS_BTREE_MAX_KEYLEN], buf[RLFS_BTREE_MAX_RECLEN];
	int stat;
	enc_key(e->cf->key_len, r.a, r.b, e->cf->overlapping, k);
	T_EQ(rlfs_btree_lookup(cur, RLFS_LOOKUP_EQ, k, &stat), 0);
	T_EQ(stat, 1);
	r.val = (uint32_t)tu_rand();
	if (e->cf->overlapping && chance(50))
		r.len = 1 + (uint32_t)rnd(200); /* changes the high key */
	bool ok = true;
	if (chance(30)) {
		/* move the key a little; valid only between the neighbours */
		uint64_t na = r.a + rnd(7);
		na = na >= 3 ? na - 3 : 0;
		uint64_t nb = e->cf->overlapping ? rnd(4) : 0;
		struct mrec t = { .a = na, .b = nb };
		if (idx > 0 && mkey_cmp(&e->m.r[idx - 1], t.a, t.b) >= 0)
			ok = false;
		if (idx + 1 < e->m.n && mkey_cmp(&e->m.r[idx + 1], t.a, t.b) <= 0)
			ok = false;
		r.a = na;
		r.b = nb;
	}
	enc_rec(e, &r, buf);
	int err = rlfs_btree_update(cur, buf);
	if (!ok) {
		T_EQ(err, -EINVAL);
		return;
	}
	T_EQ(err, 0);
	e->m.r[idx] = r;
	/* the cursor stays on the record */
	expect_cur(e, cur, 1, idx);
}

/* Walk steps records from model index idx (cursor on it) and back. */
static void walk_check(struct env *e, struct rlfs_btree_cur *cur, size_t idx)
{
	int stat;
	unsigned steps = (unsigned)rnd(12);
	bool fwd = chance(50);
	for (unsigned s = 0; s < steps; s++) {
		if (fwd) {
			T_EQ(rlfs_btree_increment(cur, &stat), 0);
			if (idx + 1 >= e->m.n) {
				T_EQ(stat, 0);
				return;
			}
			idx++;
		} else {
			T_EQ(rlfs_btree_decrement(cur, &stat), 0);
			if (idx == 0) {
				T_EQ(stat, 0);
				return;
			}
			idx--;
		}
		expect_cur(e, cur, stat, idx);
	}
}

static void op_lookup(struct env *e, struct rlfs_btree_cur *cur)
{
	uint64_t a, b;
	uint8_t k[RLFS_BTREE_MAX_KEYLEN];
	size_t idx;
	int stat;
	if (e->m.n && chance(40)) {
		idx = (size_t)rnd(e->m.n);
		a = e->m.r[idx].a;
		b = e->m.r[idx].b;
	} else {
		rand_key(e, &a, &b);
	}
	enc_key(e->cf->key_len, a, b, e->cf->overlapping, k);
	bool exists = m_has(&e->m, a, b, &idx); /* idx = first >= key */
	enum rlfs_btree_lookup dir = (enum rlfs_btree_lookup)rnd(3);
	T_EQ(rlfs_btree_lookup(cur, dir, k, &stat), 0);
	size_t want; /* model index the cursor must be on, or n = none */
	switch (dir) {
	case RLFS_LOOKUP_EQ:
		want = exists ? idx : e->m.n;
		break;
	case RLFS_LOOKUP_GE:
		want = idx;
		break;
	default:
		want = exists ? idx : (idx > 0 ? idx - 1 : e->m.n);
		break;
	}
	expect_cur(e, cur, stat, want);
	if (stat) {
		walk_check(e, cur, want);
		return;
	}
	/* not found: the cursor is between records; increment gives the
	 * first record after the key, decrement the last one before it */
	size_t after = exists ? idx + 1 : idx;
	if (chance(50)) {
		T_EQ(rlfs_btree_increment(cur, &stat), 0);
		expect_cur(e, cur, stat, after);
	} else {
		T_EQ(rlfs_btree_decrement(cur, &stat), 0);
		expect_cur(e, cur, stat, idx > 0 ? idx - 1 : e->m.n);
	}
}

/* does model record r overlap the query [qlo, qhi]? */
static bool m_match(struct env *e, const struct mrec *r, uint64_t la, uint64_t lb,
		    uint64_t ha, uint64_t hb)
{
	if (!e->cf->overlapping)
		return r->a >= la && r->a <= ha;
	/* low (a, b) <= (ha, hb)  and  high (a+len-1, b) >= (la, lb) */
	bool lo_ok = r->a < ha || (r->a == ha && r->b <= hb);
	uint64_t hx = r->a + r->len - 1;
	bool hi_ok = hx > la || (hx == la && r->b >= lb);
	return lo_ok && hi_ok;
}

static void op_range(struct env *e, struct rlfs_btree_cur *cur)
{
	uint64_t la, lb, ha, hb;
	uint8_t lk[RLFS_BTREE_MAX_KEYLEN], hk[RLFS_BTREE_MAX_KEYLEN];
	rand_key(e, &la, &lb);
	uint64_t span = chance(20) ? e->cf->keyspace : rnd(e->cf->keyspace / 8 + 2);
	ha = la + span;
	hb = e->cf->overlapping ? rnd(5) : 0;
	if (chance(10)) { /* empty-width query */
		ha = la;
		hb = lb;
	}
	enc_key(e->cf->key_len, la, lb, e->cf->overlapping, lk);
	enc_key(e->cf->key_len, ha, hb, e->cf->overlapping, hk);
	struct collect c = { .e = e };
	size_t nmatch = 0;
	for (size_t i = 0; i < e->m.n; i++)
		nmatch += m_match(e, &e->m.r[i], la, lb, ha, hb);
	if (nmatch > 1 && chance(20))
		c.stop_after = 1 + (size_t)rnd(nmatch - 1);
	int ret = rlfs_btree_query_range(cur, lk, hk, collect_fn, &c);
	if (la > ha || (la == ha && lb > hb)) {
		T_EQ(ret, -EINVAL); /* low key above high key */
		T_EQ(c.n, 0);
		return;
	}
	T_EQ(ret, c.stop_after ? 1 : 0);
	size_t j = 0;
	for (size_t i = 0; i < e->m.n && j < c.n; i++) {
		if (!m_match(e, &e->m.r[i], la, lb, ha, hb))
			continue;
		if (memcmp(&c.r[j], &e->m.r[i], sizeof(struct mrec)))
			T_FAIL("range [%llu,%llu]-[%llu,%llu]: result %zu is (%llu,%llu), expected "
			       "(%llu,%llu)", (unsigned long long)la, (unsigned long long)lb,
			       (unsigned long long)ha, (unsigned long long)hb, j,
			       (unsigned long long)c.r[j].a, (unsigned long long)c.r[j].b,
			       (unsigned long long)e->m.r[i].a, (unsigned long long)e->m.r[i].b);
		j++;
	}
	T_EQ(c.n, c.stop_after ? c.stop_after : nmatch);
	T_EQ(j, c.n);
	free(c.r);
}

/* percentages: insert, delete, update, lookup; rest range */
struct mix {
	unsigned ins, del, upd, look;
};

static void run_batch(struct env *e, const struct mix *mx, unsigned nops, unsigned cancel_pct)
{
	struct rlfs_btree_cur cur;
	m_copy(&e->snap, &e->m);
	tx_begin(e);
	cur_init(e, &cur);
	for (unsigned i = 0; i < nops; i++) {
		/* sometimes a fresh cursor, usually the same one */
		if (chance(5)) {
			rlfs_btree_cur_del(&cur);
			cur_init(e, &cur);
		}
		unsigned r = (unsigned)rnd(100);
		if (r < mx->ins)
			op_insert(e, &cur);
		else if ((r -= mx->ins) < mx->del)
			op_delete(e, &cur);
		else if ((r -= mx->del) < mx->upd)
			op_update(e, &cur);
		else if ((r -= mx->upd) < mx->look)
			op_lookup(e, &cur);
		else
			op_range(e, &cur);
	}
	if (chance(10))
		T_EQ(rlfs_btree_check(&cur), 0); /* inside the transaction too */
	rlfs_btree_cur_del(&cur);
	e->nops += nops;
	e->nbatches++;
	if (e->m.n > e->maxrecs_seen)
		e->maxrecs_seen = e->m.n;
	uint64_t root;
	unsigned nl;
	tree_height(e, &root, &nl);
	if (nl > e->maxheight)
		e->maxheight = nl;
	if (chance(cancel_pct)) {
		e->ncancels++;
		tx_cancel(e);
		m_copy(&e->m, &e->snap);
	} else {
		tx_commit(e);
	}
	if (chance(5))
		env_flush(e);
	verify_all(e);
}

static void run_config(const struct tconf *cf, uint64_t seed)
{
	struct env e;
	uint64_t root;
	unsigned nl, maxnl = 1;
	g_seed = seed;
	tu_seed(seed);
	print_message("%s: blocksize %u rec %u key %u%s, seed %llu\n", cf->name, cf->blocksize,
		      cf->rec_len, cf->key_len, cf->overlapping ? " overlapping" : "",
		      (unsigned long long)seed);
	env_setup(&e, cf, cf->overlapping ? 12000 : 16000);
	verify_all(&e);

	/* grow */
	static const struct mix grow = { 75, 8, 5, 7 };
	while (e.m.n < cf->target) {
		run_batch(&e, &grow, 1 + (unsigned)rnd(300), 10);
		tree_height(&e, &root, &nl);
		maxnl = RLFS_MAX(maxnl, nl);
	}
	if (maxnl < cf->min_height)
		T_FAIL("%s: tree grew to %u levels only, expected >= %u", cf->name, maxnl,
		       cf->min_height);

	/* churn */
	static const struct mix churn = { 28, 28, 14, 18 };
	for (unsigned done = 0; done < cf->mixed_ops;) {
		unsigned n = 1 + (unsigned)rnd(200);
		run_batch(&e, &churn, n, 20);
		done += n;
	}

	/* shrink to nothing */
	static const struct mix shrink = { 8, 72, 6, 8 };
	while (e.m.n > 0)
		run_batch(&e, &shrink, 1 + (unsigned)rnd(300), 10);
	tree_height(&e, &root, &nl);
	T_EQ(nl, 1);
	T_EQ(e.next_blk - FIRST_TREE_BLK - e.nfree, 1);

	/* destroy the (empty) tree, then grow a tree from no root at all */
	struct rlfs_btree_cur cur;
	tx_begin(&e);
	cur_init(&e, &cur);
	T_EQ(rlfs_btree_destroy(&cur), 0);
	T_EQ(e.ntx_free, 1);
	t_set_root(&cur, 0, 0);
	rlfs_btree_cur_del(&cur);
	tx_commit(&e);
	verify_all(&e);
	static const struct mix grow2 = { 85, 5, 0, 5 };
	for (int i = 0; i < 3; i++)
		run_batch(&e, &grow2, 200, 0);
	tree_height(&e, &root, &nl);
	T_ASSERT(root != 0 && nl >= 1);

	/* destroy a populated tree: every block comes back */
	tx_begin(&e);
	cur_init(&e, &cur);
	T_EQ(rlfs_btree_destroy(&cur), 0);
	t_set_root(&cur, 0, 0);
	rlfs_btree_cur_del(&cur);
	tx_commit(&e);
	e.m.n = 0;
	T_EQ(e.next_blk - FIRST_TREE_BLK - e.nfree, 0);
	verify_all(&e);
	print_message("%s: %lu ops in %lu transactions (%lu cancelled), up to %lu records "
		      "and %u levels, back to 1 level\n", cf->name, e.nops, e.nbatches,
		      e.ncancels, e.maxrecs_seen, e.maxheight);
	env_teardown(&e);
}

static uint64_t base_seed(void)
{
	const char *s = getenv("RLFS_TEST_SEED");
	return s && *s ? strtoull(s, NULL, 0) : 20261121ull;
}

/* small blocks, big records and keys: deep trees, leaf max 4, node max 23 */
static const struct tconf cf_deep = { "deep", 1024, 200, 32, false, 2000, 4, 3000, 6000 };
/* leaf max 2 (the smallest allowed), node max 23 */
static const struct tconf cf_tiny = { "tiny-leaf", 1024, 400, 32, false, 900, 4, 2000, 3000 };
/* u64 key, 24-byte records at 1 KiB: leaf max 39, node max 59 */
static const struct tconf cf_small = { "small", 1024, 24, 8, false, 6000, 3, 4000, 20000 };
/* 4 KiB blocks: leaf max 167, node max 251 */
static const struct tconf cf_4k = { "4k", 4096, 24, 8, false, 4000, 2, 2000, 12000 };
/* rmap-like overlapping trees */
static const struct tconf cf_ovl_deep = { "ovl-deep", 1024, 200, 32, true, 2000, 4, 3000, 3000 };
/* leaf max 2, node max 13: five levels with a few thousand records */
static const struct tconf cf_ovl_tiny = { "ovl-tiny", 1024, 400, 32, true, 3000, 5, 3000, 4000 };
static const struct tconf cf_ovl = { "ovl", 1024, 24, 16, true, 5000, 3, 4000, 6000 };
static const struct tconf cf_ovl_4k = { "ovl-4k", 4096, 32, 16, true, 3000, 2, 2000, 4000 };

static void test_random_deep(void **state) { run_config(&cf_deep, base_seed() + 1); }
static void test_random_tiny(void **state) { run_config(&cf_tiny, base_seed() + 2); }
static void test_random_small(void **state) { run_config(&cf_small, base_seed() + 3); }
static void test_random_4k(void **state) { run_config(&cf_4k, base_seed() + 4); }
static void test_random_ovl_deep(void **state) { run_config(&cf_ovl_deep, base_seed() + 5); }
static void test_random_ovl_tiny(void **state) { run_config(&cf_ovl_tiny, base_seed() + 8); }
static void test_random_ovl(void **state) { run_config(&cf_ovl, base_seed() + 6); }
static void test_random_ovl_4k(void **state) { run_config(&cf_ovl_4k, base_seed() + 7); }

/* ------------------------------------------------------------------ */
/* targeted tests                                                      */

/* Fill a tree with keys 0, 2, 4, ... (n records), committed. */
static void build_sequential(struct env *e, unsigned n)
{
	struct rlfs_btree_cur cur;
	uint8_t buf[RLFS_BTREE_MAX_RECLEN];
	tx_begin(e);
	cur_init(e, &cur);
	for (unsigned i = 0; i < n; i++) {
		struct mrec r = { .a = 2ull * i, .val = i };
		if (e->cf->overlapping) {
			r.b = i % 3;
			r.len = 1 + i % 50;
		}
		enc_rec(e, &r, buf);
		T_EQ(rlfs_btree_insert(&cur, buf), 0);
		m_insert(&e->m, e->m.n, &r);
	}
	rlfs_btree_cur_del(&cur);
	tx_commit(e);
}

#define EDGE_N 1500

/* Edge cases of lookups on an empty tree and on the ends of a tree. */
static void test_edges(void **state)
{
	struct env e;
	struct rlfs_btree_cur cur;
	uint8_t k[RLFS_BTREE_MAX_KEYLEN], buf[RLFS_BTREE_MAX_RECLEN];
	int stat;
	g_seed = base_seed() + 10;
	tu_seed(g_seed);
	env_setup(&e, &cf_deep, 4000);

	/* empty tree */
	tx_begin(&e);
	cur_init(&e, &cur);
	for (int d = 0; d < 3; d++) {
		enc_key(32, 5, 0, false, k);
		T_EQ(rlfs_btree_lookup(&cur, (enum rlfs_btree_lookup)d, k, &stat), 0);
		T_EQ(stat, 0);
		T_EQ(rlfs_btree_get_rec(&cur, buf, &stat), 0);
		T_EQ(stat, 0);
		T_EQ(rlfs_btree_increment(&cur, &stat), 0);
		T_EQ(stat, 0);
		T_EQ(rlfs_btree_decrement(&cur, &stat), 0);
		T_EQ(stat, 0);
	}
	T_EQ(rlfs_btree_delete(&cur, &stat), 0);
	T_EQ(stat, 0);
	T_EQ(rlfs_btree_update(&cur, buf), -EINVAL);
	uint64_t cnt;
	T_EQ(rlfs_btree_count(&cur, &cnt), 0);
	T_EQ(cnt, 0);
	rlfs_btree_cur_del(&cur);
	tx_cancel(&e);

	build_sequential(&e, EDGE_N); /* keys 0, 2, .. 2*(EDGE_N-1): 4 levels */
	uint64_t root;
	unsigned nl;
	tree_height(&e, &root, &nl);
	T_ASSERT(nl >= 4);
	tx_begin(&e);
	cur_init(&e, &cur);
	/* before the first record */
	enc_key(32, 0, 0, false, k);
	T_EQ(rlfs_btree_lookup(&cur, RLFS_LOOKUP_LE, k, &stat), 0);
	expect_cur(&e, &cur, stat, 0);
	T_EQ(rlfs_btree_decrement(&cur, &stat), 0);
	T_EQ(stat, 0);
	T_EQ(rlfs_btree_increment(&cur, &stat), 0);
	expect_cur(&e, &cur, stat, 0);
	/* past the last record */
	enc_key(32, 3 * EDGE_N, 0, false, k);
	T_EQ(rlfs_btree_lookup(&cur, RLFS_LOOKUP_GE, k, &stat), 0);
	T_EQ(stat, 0);
	T_EQ(rlfs_btree_increment(&cur, &stat), 0);
	T_EQ(stat, 0);
	T_EQ(rlfs_btree_lookup(&cur, RLFS_LOOKUP_GE, k, &stat), 0);
	T_EQ(rlfs_btree_decrement(&cur, &stat), 0);
	expect_cur(&e, &cur, stat, EDGE_N - 1);
	T_EQ(rlfs_btree_lookup(&cur, RLFS_LOOKUP_LE, k, &stat), 0);
	expect_cur(&e, &cur, stat, EDGE_N - 1);
	/* full forward and backward iteration */
	enc_key(32, 0, 0, false, k);
	T_EQ(rlfs_btree_lookup(&cur, RLFS_LOOKUP_GE, k, &stat), 0);
	for (size_t i = 0; i < EDGE_N; i++) {
		expect_cur(&e, &cur, stat, i);
		T_EQ(rlfs_btree_increment(&cur, &stat), 0);
	}
	T_EQ(stat, 0);
	T_EQ(rlfs_btree_decrement(&cur, &stat), 0);
	for (size_t i = EDGE_N; i-- > 0;) {
		expect_cur(&e, &cur, stat, i);
		T_EQ(rlfs_btree_decrement(&cur, &stat), 0);
	}
	T_EQ(stat, 0);
	/* odd keys: EQ misses, LE/GE neighbours */
	for (uint64_t a = 1; a < 2 * EDGE_N; a += 2) {
		enc_key(32, a, 0, false, k);
		T_EQ(rlfs_btree_lookup(&cur, RLFS_LOOKUP_EQ, k, &stat), 0);
		T_EQ(stat, 0);
		T_EQ(rlfs_btree_lookup(&cur, RLFS_LOOKUP_LE, k, &stat), 0);
		expect_cur(&e, &cur, stat, a / 2);
		T_EQ(rlfs_btree_lookup(&cur, RLFS_LOOKUP_GE, k, &stat), 0);
		expect_cur(&e, &cur, stat, a / 2 + 1);
	}
	/* update that would reorder is refused; one in the gap is taken */
	enc_key(32, 100, 0, false, k);
	T_EQ(rlfs_btree_lookup(&cur, RLFS_LOOKUP_EQ, k, &stat), 0);
	struct mrec r = { .a = 102, .val = 1 };
	enc_rec(&e, &r, buf);
	T_EQ(rlfs_btree_update(&cur, buf), -EINVAL);
	r.a = 98;
	enc_rec(&e, &r, buf);
	T_EQ(rlfs_btree_update(&cur, buf), -EINVAL);
	r.a = 101;
	enc_rec(&e, &r, buf);
	T_EQ(rlfs_btree_update(&cur, buf), 0);
	e.m.r[50] = r;
	/* the first record of leaves moved below their parent keys: the
	 * parent keys must follow (verify_all runs the check) */
	unsigned moved = 0;
	for (uint64_t i = 300; i < 600 && moved < 5; i++) {
		enc_key(32, 2 * i, 0, false, k);
		T_EQ(rlfs_btree_lookup(&cur, RLFS_LOOKUP_EQ, k, &stat), 0);
		T_EQ(stat, 1);
		if (cur.lev[0].ptr != 1)
			continue;
		r = (struct mrec){ .a = 2 * i - 1, .val = 7 };
		enc_rec(&e, &r, buf);
		T_EQ(rlfs_btree_update(&cur, buf), 0);
		e.m.r[i] = r;
		moved++;
	}
	T_ASSERT(moved == 5);
	/* duplicate insert */
	T_EQ(rlfs_btree_insert(&cur, buf), -EEXIST);
	rlfs_btree_cur_del(&cur);
	tx_commit(&e);
	verify_all(&e);

	/* ascending / descending bulk delete from the left and the right */
	tx_begin(&e);
	cur_init(&e, &cur);
	for (int i = 0; i < 250; i++) {
		enc_key(32, 0, 0, false, k);
		T_EQ(rlfs_btree_lookup(&cur, RLFS_LOOKUP_GE, k, &stat), 0);
		T_EQ(stat, 1);
		T_EQ(rlfs_btree_delete(&cur, &stat), 0);
		T_EQ(stat, 1);
		m_delete(&e.m, 0);
		enc_key(32, 1u << 20, 0, false, k);
		T_EQ(rlfs_btree_lookup(&cur, RLFS_LOOKUP_LE, k, &stat), 0);
		T_EQ(stat, 1);
		T_EQ(rlfs_btree_delete(&cur, &stat), 0);
		T_EQ(stat, 1);
		m_delete(&e.m, e.m.n - 1);
	}
	rlfs_btree_cur_del(&cur);
	tx_commit(&e);
	verify_all(&e);
	env_teardown(&e);
}

/* A split that cannot get a block fails cleanly; cancel restores all. */
static void test_enospc_cancel(void **state)
{
	struct env e;
	struct rlfs_btree_cur cur;
	uint8_t buf[RLFS_BTREE_MAX_RECLEN];
	g_seed = base_seed() + 11;
	tu_seed(g_seed);
	env_setup(&e, &cf_ovl_deep, 4000);
	build_sequential(&e, 300);
	verify_all(&e);
	for (unsigned after = 1; after <= 4; after++) {
		tx_begin(&e);
		cur_init(&e, &cur);
		e.nallocs = 0;
		e.fail_alloc_after = after;
		int err = 0;
		for (unsigned i = 0; i < 400 && !err; i++) {
			struct mrec r = { .a = 2ull * (i % 300) + 1, .b = i / 300, .len = 3, .val = i };
			enc_rec(&e, &r, buf);
			err = rlfs_btree_insert(&cur, buf);
		}
		T_EQ(err, -ENOSPC);
		e.fail_alloc_after = 0;
		rlfs_btree_cur_del(&cur);
		tx_cancel(&e);
		verify_all(&e);
	}
	env_teardown(&e);
}

/* ------------------------------------------------------------------ */
/* corruption                                                          */

struct blklist {
	uint64_t fsbno[4096];
	unsigned level[4096];
	size_t n;
};

static int list_fn(struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned level, void *priv)
{
	struct blklist *l = priv;
	if (l->n < 4096) {
		l->fsbno[l->n] = bp->fsbno;
		l->level[l->n++] = level;
	}
	return 0;
}

static bool ok_or_corrupt(int err) { return err == 0 || err == -EUCLEAN; }
static bool g_fuzzing; /* a damaged key may collide with an inserted one */

/* Run every API call on the (possibly damaged) tree: no crash, and any
 * error is -EUCLEAN.  Returns true if some call reported -EUCLEAN. */
static bool exercise(struct env *e)
{
	struct rlfs_btree_cur cur;
	uint8_t k[RLFS_BTREE_MAX_KEYLEN], k2[RLFS_BTREE_MAX_KEYLEN], buf[RLFS_BTREE_MAX_RECLEN];
	int stat, err;
	bool seen = false;
	struct collect c = { .e = e };
	uint64_t cnt;

	tx_begin(e);
	cur_init(e, &cur);
	err = rlfs_btree_check(&cur);
	T_ASSERT(ok_or_corrupt(err));
	seen |= err != 0;
	err = rlfs_btree_query_all(&cur, collect_fn, &c);
	T_ASSERT(ok_or_corrupt(err));
	seen |= err != 0;
	free(c.r);
	err = rlfs_btree_count(&cur, &cnt);
	T_ASSERT(ok_or_corrupt(err));
	seen |= err != 0;
	struct blklist *bl = calloc(1, sizeof(*bl));
	err = rlfs_btree_visit_blocks(&cur, list_fn, bl);
	free(bl);
	T_ASSERT(ok_or_corrupt(err));
	seen |= err != 0;
	for (uint64_t a = 0; a < 1300; a += 37) {
		enc_key(e->cf->key_len, a, 0, e->cf->overlapping, k);
		for (int d = 0; d < 3; d++) {
			err = rlfs_btree_lookup(&cur, (enum rlfs_btree_lookup)d, k, &stat);
			T_ASSERT(ok_or_corrupt(err));
			seen |= err != 0;
			if (!err && stat) {
				err = rlfs_btree_get_rec(&cur, buf, &stat);
				T_ASSERT(ok_or_corrupt(err));
				for (int s = 0; s < 5 && !err; s++)
					err = rlfs_btree_increment(&cur, &stat);
				for (int s = 0; s < 10 && !err; s++)
					err = rlfs_btree_decrement(&cur, &stat);
				T_ASSERT(ok_or_corrupt(err));
				seen |= err != 0;
			}
		}
		enc_key(e->cf->key_len, a + 40, 3, e->cf->overlapping, k2);
		struct collect c2 = { .e = e };
		err = rlfs_btree_query_range(&cur, k, k2, collect_fn, &c2);
		free(c2.r);
		T_ASSERT(ok_or_corrupt(err));
		seen |= err != 0;
	}
	/* modifications (cancelled below) */
	for (unsigned i = 0; i < 60; i++) {
		struct mrec r = { .a = 2ull * i * 10 + 1, .len = 2, .val = i };
		enc_rec(e, &r, buf);
		err = rlfs_btree_insert(&cur, buf);
		T_ASSERT(ok_or_corrupt(err) || (g_fuzzing && err == -EEXIST));
		seen |= err == -EUCLEAN;
		enc_key(e->cf->key_len, 2ull * i * 10, 0, e->cf->overlapping, k);
		err = rlfs_btree_lookup(&cur, RLFS_LOOKUP_EQ, k, &stat);
		T_ASSERT(ok_or_corrupt(err));
		seen |= err != 0;
		if (!err && stat) {
			err = rlfs_btree_delete(&cur, &stat);
			T_ASSERT(ok_or_corrupt(err));
			seen |= err != 0;
		}
	}
	rlfs_btree_cur_del(&cur);
	tx_cancel(e);
	return seen;
}

/* Read block fsbno from the device, let mutate change it, optionally
 * re-stamp the crc, write it back and drop the cached copy. */
static void damage(struct env *e, uint64_t fsbno, void (*mutate)(struct env *, uint8_t *, unsigned),
		   unsigned level, bool fix_crc, uint8_t *saved)
{
	uint32_t bs = e->cf->blocksize;
	uint8_t *blk = malloc(bs);
	T_ASSERT(blk);
	T_EQ(rlfs_dev_pread(e->dev, blk, bs, fsbno * bs), 0);
	memcpy(saved, blk, bs);
	mutate(e, blk, level);
	if (fix_crc)
		rlfs_cksum_update(blk, bs, RLFS_CRC_OFF);
	T_EQ(rlfs_dev_pwrite(e->dev, blk, bs, fsbno * bs), 0);
	rlfs_buf_forget(e->mp, fsbno);
	free(blk);
}

static void restore(struct env *e, uint64_t fsbno, const uint8_t *saved)
{
	T_EQ(rlfs_dev_pwrite(e->dev, saved, e->cf->blocksize, fsbno * e->cf->blocksize), 0);
	rlfs_buf_forget(e->mp, fsbno);
}

static struct rlfs_btree_block *bh(uint8_t *b) { return (struct rlfs_btree_block *)b; }

static void mut_flip_byte(struct env *e, uint8_t *b, unsigned level)
{
	b[72 + rnd(e->cf->blocksize - 72)] ^= (uint8_t)(1 + rnd(255));
}
static void mut_numrecs_huge(struct env *e, uint8_t *b, unsigned level)
{
	rlfs_put16(bh(b)->numrecs, 0xfff0);
}
static void mut_numrecs_one(struct env *e, uint8_t *b, unsigned level)
{
	rlfs_put16(bh(b)->numrecs, 1);
}
static void mut_numrecs_zero(struct env *e, uint8_t *b, unsigned level)
{
	rlfs_put16(bh(b)->numrecs, 0);
}
static void mut_level_up(struct env *e, uint8_t *b, unsigned level)
{
	rlfs_put16(bh(b)->level, (uint16_t)(level + 1));
}
static void mut_level_huge(struct env *e, uint8_t *b, unsigned level)
{
	rlfs_put16(bh(b)->level, 900);
}
static void mut_child_zero(struct env *e, uint8_t *b, unsigned level)
{
	/* node: first child pointer 0 */
	unsigned max = rlfs_btree_maxrecs(e->mp, &e->ops, false);
	unsigned slen = e->cf->key_len * (e->cf->overlapping ? 2u : 1u);
	memset(b + 72 + (size_t)max * slen, 0, 8);
}
static void mut_child_self(struct env *e, uint8_t *b, unsigned level)
{
	unsigned max = rlfs_btree_maxrecs(e->mp, &e->ops, false);
	unsigned slen = e->cf->key_len * (e->cf->overlapping ? 2u : 1u);
	unsigned n = rlfs_get16(bh(b)->numrecs);
	/* last child points at the first child's block: a shared subtree */
	memcpy(b + 72 + (size_t)max * slen + (size_t)(n - 1) * 8, b + 72 + (size_t)max * slen, 8);
}
static void mut_child_far(struct env *e, uint8_t *b, unsigned level)
{
	unsigned max = rlfs_btree_maxrecs(e->mp, &e->ops, false);
	unsigned slen = e->cf->key_len * (e->cf->overlapping ? 2u : 1u);
	rlfs_le64 v = rlfs_le64_of(e->dblocks + 5);
	memcpy(b + 72 + (size_t)max * slen + 8, &v, 8);
}
static void mut_child_holder(struct env *e, uint8_t *b, unsigned level)
{
	unsigned max = rlfs_btree_maxrecs(e->mp, &e->ops, false);
	unsigned slen = e->cf->key_len * (e->cf->overlapping ? 2u : 1u);
	rlfs_le64 v = rlfs_le64_of(HOLDER_FSBNO);
	memcpy(b + 72 + (size_t)max * slen + 8, &v, 8);
}
static void mut_swap_keys(struct env *e, uint8_t *b, unsigned level)
{
	/* swap the first two entries' key bytes (leaf: records) */
	unsigned len = level == 0 ? e->cf->rec_len
				  : e->cf->key_len * (e->cf->overlapping ? 2u : 1u);
	uint8_t tmp[RLFS_BTREE_MAX_RECLEN];
	memcpy(tmp, b + 72, len);
	memcpy(b + 72, b + 72 + len, len);
	memcpy(b + 72 + len, tmp, len);
}
static void mut_node_key(struct env *e, uint8_t *b, unsigned level)
{
	/* second slot's low key bumped: no longer the child's first key */
	unsigned slen = e->cf->key_len * (e->cf->overlapping ? 2u : 1u);
	uint8_t *k = b + 72 + slen;
	put64(k, get64(k) + 1);
}
static void mut_high_key(struct env *e, uint8_t *b, unsigned level)
{
	/* overlapping node: first slot's high key lowered */
	uint8_t *hk = b + 72 + e->cf->key_len;
	put64(hk, get64(hk) - 1);
}
static void mut_sibling(struct env *e, uint8_t *b, unsigned level)
{
	rlfs_put64(bh(b)->rightsib, rlfs_get64(bh(b)->rightsib) == FIRST_TREE_BLK + 1
			    ? FIRST_TREE_BLK + 2 : FIRST_TREE_BLK + 1);
}
static void mut_magic(struct env *e, uint8_t *b, unsigned level)
{
	rlfs_put32(bh(b)->hdr.magic, 0x12345678);
}
static void mut_record(struct env *e, uint8_t *b, unsigned level)
{
	/* a record's payload (filler) byte: only verify_rec notices */
	b[72 + 30] ^= 0x5a;
}

struct corruption {
	const char *name;
	void (*mutate)(struct env *, uint8_t *, unsigned);
	int want_level;    /* -1 leaf, 1 any node, 2 the root */
	bool fix_crc;
	bool generic;      /* buffer verifier uses rlfs_btree_verify_block */
	bool must_detect;  /* exercise() must see -EUCLEAN */
};

static void run_corruptions(const struct tconf *cf, uint64_t seed)
{
	static const struct corruption cases[] = {
		{ "flipped byte, bad crc", mut_flip_byte, -1, false, true, true },
		{ "flipped byte in node, bad crc", mut_flip_byte, 1, false, true, true },
		{ "bad magic", mut_magic, 1, true, true, true },
		{ "numrecs huge (verifier)", mut_numrecs_huge, -1, true, true, true },
		{ "numrecs huge (btree.c)", mut_numrecs_huge, 1, true, false, true },
		{ "numrecs zero leaf", mut_numrecs_zero, -1, true, false, true },
		{ "leaf under minimum fill", mut_numrecs_one, -1, true, true, true },
		{ "numrecs zero node", mut_numrecs_zero, 1, true, false, true },
		{ "level mismatch leaf", mut_level_up, -1, true, false, true },
		{ "level mismatch node", mut_level_up, 1, true, true, true },
		{ "level huge", mut_level_huge, 1, true, true, true },
		{ "child pointer 0 (verifier)", mut_child_zero, 1, true, true, true },
		{ "child pointer 0 (btree.c)", mut_child_zero, 1, true, false, true },
		{ "child pointer out of range", mut_child_far, 1, true, false, true },
		{ "child pointer to another type", mut_child_holder, 1, true, false, true },
		{ "shared child", mut_child_self, 1, true, false, true },
		{ "keys out of order in leaf", mut_swap_keys, -1, true, false, true },
		{ "keys out of order in node", mut_swap_keys, 1, true, false, true },
		{ "node key != child key", mut_node_key, 1, true, false, true },
		{ "bad sibling pointer", mut_sibling, -1, true, false, true },
		{ "record payload", mut_record, -1, true, false, true },
		{ "high key wrong", mut_high_key, 1, true, false, true },
	};
	struct env e;
	g_seed = seed;
	tu_seed(seed);
	env_setup(&e, cf, 4000);
	build_sequential(&e, 500);
	env_flush(&e);
	verify_all(&e);
	T_ASSERT(!exercise(&e));

	struct blklist *bl = calloc(1, sizeof(*bl));
	T_ASSERT(bl);
	struct rlfs_btree_cur cur;
	tx_begin(&e);
	cur_init(&e, &cur);
	T_EQ(rlfs_btree_visit_blocks(&cur, list_fn, bl), 0);
	rlfs_btree_cur_del(&cur);
	tx_cancel(&e);
	uint64_t root;
	unsigned nl;
	tree_height(&e, &root, &nl);
	T_ASSERT(nl >= 3);

	uint8_t *saved = malloc(cf->blocksize);
	T_ASSERT(saved);
	for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
		const struct corruption *cs = &cases[ci];
		if (cs->mutate == mut_high_key && !cf->overlapping)
			continue;
		/* pick a block of the wanted kind, several times */
		for (int rep = 0; rep < 3; rep++) {
			size_t i;
			do {
				i = (size_t)rnd(bl->n);
			} while (cs->want_level == -1 ? bl->level[i] != 0
				 : cs->want_level == 2 ? bl->fsbno[i] != root
						       : bl->level[i] == 0);
			e.verify_generic = cs->generic;
			damage(&e, bl->fsbno[i], cs->mutate, bl->level[i], cs->fix_crc, saved);
			quiet();
			bool seen = exercise(&e);
			unquiet();
			if (cs->must_detect && !seen)
				T_FAIL("%s: corruption '%s' in block %llu (level %u) not detected",
				       cf->name, cs->name, (unsigned long long)bl->fsbno[i],
				       bl->level[i]);
			restore(&e, bl->fsbno[i], saved);
			e.verify_generic = true;
			verify_all(&e);
		}
	}
	free(saved);

	/* bad root pointer / height where the tree's root is kept */
	uint64_t leaf = 0;
	for (size_t i = 0; i < bl->n && !leaf; i++)
		if (bl->level[i] == 0)
			leaf = bl->fsbno[i];
	const struct { uint64_t root; unsigned nl; const char *what; } roots[] = {
		{ root, nl + 1, "height one too big" },
		{ root, nl - 1, "height one too small" },
		{ root, 0, "height 0" },
		{ root, RLFS_BTREE_MAXLEVELS + 1, "height too big" },
		{ e.dblocks + 3, nl, "root beyond the device" },
		{ HOLDER_FSBNO, nl, "root is another block type" },
		{ leaf, nl, "root is a leaf" },
	};
	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		tx_begin(&e);
		cur_init(&e, &cur);
		t_set_root(&cur, roots[i].root, roots[i].nl);
		tx_commit(&e);
		quiet();
		bool seen = exercise(&e);
		unquiet();
		if (!seen)
			T_FAIL("%s: bad root (%s) not detected", cf->name, roots[i].what);
		tx_begin(&e);
		cur_init(&e, &cur);
		t_set_root(&cur, root, nl);
		tx_commit(&e);
		verify_all(&e);
	}
	free(bl);
	env_teardown(&e);
}

static uint64_t g_fuzz_nbytes;
static void mut_fuzz(struct env *e, uint8_t *b, unsigned level)
{
	for (uint64_t i = 0; i < g_fuzz_nbytes; i++) {
		/* mostly the btree header and the first entries */
		size_t off = chance(50) ? 48 + rnd(24) : 72 + rnd(e->cf->blocksize - 72);
		b[off] ^= (uint8_t)(1u << rnd(8));
	}
}

/* Random bit flips (crc fixed, so the btree code sees them) in random
 * blocks: every call must return 0 or -EUCLEAN, never crash. */
static void run_fuzz(const struct tconf *cf, uint64_t seed, unsigned rounds)
{
	struct env e;
	struct rlfs_btree_cur cur;
	g_seed = seed;
	tu_seed(seed);
	env_setup(&e, cf, 4000);
	build_sequential(&e, 400);
	/* churn a little so that freed blocks with stale contents exist */
	static const struct mix churn = { 40, 40, 10, 5 };
	for (int i = 0; i < 5; i++)
		run_batch(&e, &churn, 200, 0);
	env_flush(&e);
	struct blklist *bl = calloc(1, sizeof(*bl));
	uint8_t *saved = malloc(cf->blocksize);
	T_ASSERT(bl && saved);
	tx_begin(&e);
	cur_init(&e, &cur);
	T_EQ(rlfs_btree_visit_blocks(&cur, list_fn, bl), 0);
	rlfs_btree_cur_del(&cur);
	tx_cancel(&e);
	g_fuzzing = true;
	unsigned detected = 0;
	for (unsigned r = 0; r < rounds; r++) {
		size_t i = (size_t)rnd(bl->n);
		g_fuzz_nbytes = 1 + rnd(4);
		e.verify_generic = chance(50);
		damage(&e, bl->fsbno[i], mut_fuzz, bl->level[i], true, saved);
		quiet();
		detected += exercise(&e);
		unquiet();
		restore(&e, bl->fsbno[i], saved);
		e.verify_generic = true;
	}
	g_fuzzing = false;
	verify_all(&e);
	print_message("%s: %u of %u random corruptions reported\n", cf->name, detected, rounds);
	free(saved);
	free(bl);
	env_teardown(&e);
}

static void test_fuzz_normal(void **state) { run_fuzz(&cf_deep, base_seed() + 40, 300); }
static void test_fuzz_ovl(void **state) { run_fuzz(&cf_ovl_deep, base_seed() + 41, 300); }

static void test_corrupt_normal(void **state) { run_corruptions(&cf_deep, base_seed() + 20); }
static void test_corrupt_ovl(void **state) { run_corruptions(&cf_ovl_deep, base_seed() + 21); }

/* Block verifier and maxrecs on their own. */
static void test_verify_block(void **state)
{
	struct env e;
	g_seed = base_seed() + 30;
	env_setup(&e, &cf_small, 100);
	T_EQ(rlfs_btree_maxrecs(e.mp, &e.ops, true), (1024 - 72) / 24);
	T_EQ(rlfs_btree_maxrecs(e.mp, &e.ops, false), (1024 - 72) / 16);
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	T_EQ(rlfs_trans_alloc(e.mp, &e.mp->resv.tr_fsck, 0, 0, &tp), 0);
	T_EQ(rlfs_trans_get_buf(tp, 10, &e.bops, TREE_OWNER, &bp), 0);
	rlfs_btree_init_block(e.mp, bp, &e.ops, 0, TREE_OWNER);
	T_EQ(rlfs_btree_verify_block(e.mp, bp, 24, 8, false), 0);
	struct rlfs_btree_block *b = bp->data;
	T_EQ(rlfs_get32(b->hdr.magic), TREE_MAGIC);
	T_EQ(rlfs_get64(b->hdr.blkno), 10);
	T_EQ(rlfs_get64(b->hdr.owner), TREE_OWNER);
	rlfs_put16(b->numrecs, 40);
	T_EQ(rlfs_btree_verify_block(e.mp, bp, 24, 8, false), -EUCLEAN);
	rlfs_put16(b->numrecs, 39);
	T_EQ(rlfs_btree_verify_block(e.mp, bp, 24, 8, false), 0);
	rlfs_put64(b->rightsib, 10);
	T_EQ(rlfs_btree_verify_block(e.mp, bp, 24, 8, false), -EUCLEAN);
	rlfs_put64(b->rightsib, 500);
	T_EQ(rlfs_btree_verify_block(e.mp, bp, 24, 8, false), -EUCLEAN);
	rlfs_put64(b->rightsib, 0);
	rlfs_put16(b->level, RLFS_BTREE_MAXLEVELS);
	T_EQ(rlfs_btree_verify_block(e.mp, bp, 24, 8, false), -EUCLEAN);
	rlfs_put16(b->level, 1);
	rlfs_put16(b->numrecs, 1);
	T_EQ(rlfs_btree_verify_block(e.mp, bp, 24, 8, false), -EUCLEAN); /* child 0 */
	rlfs_trans_cancel(tp);
	env_teardown(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verify_block),
		cmocka_unit_test(test_edges),
		cmocka_unit_test(test_enospc_cancel),
		cmocka_unit_test(test_random_deep),
		cmocka_unit_test(test_random_tiny),
		cmocka_unit_test(test_random_small),
		cmocka_unit_test(test_random_4k),
		cmocka_unit_test(test_random_ovl_deep),
		cmocka_unit_test(test_random_ovl_tiny),
		cmocka_unit_test(test_random_ovl),
		cmocka_unit_test(test_random_ovl_4k),
		cmocka_unit_test(test_corrupt_normal),
		cmocka_unit_test(test_corrupt_ovl),
		cmocka_unit_test(test_fuzz_normal),
		cmocka_unit_test(test_fuzz_ovl),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

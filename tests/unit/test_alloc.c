/*
 * test_alloc.c: unit tests of the space layer (alloc.c, ialloc.c, mkfs.c).
 *
 * The randomized test keeps a model of which blocks the test owns and,
 * after every batch, checks that every block of every AG is accounted for
 * exactly once: fixed headers, free-space records, AGFL, btree blocks,
 * inode chunks, or owned by the test; that bnobt and cntbt hold the same
 * records; that agh.freeblks/longest are exact; and rlfs_btree_check.
 * Seed: RLFS_TEST_SEED (default fixed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "log.h"

#include "alloc.h"
#include "ialloc.h"
#include "inode.h"
#include "refcount.h"
#include "rmap.h"
#include "reflinkfs/fs.h"

/* ------------------------------------------------------------------ */

static void seed_from_env(void)
{
	const char *s = getenv("RLFS_TEST_SEED");
	tu_seed(s ? strtoull(s, NULL, 0) : 12345);
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

static uint64_t count_free(struct rlfs_mount *mp)
{
	struct rlfs_trans *tp = tx(mp, 0);
	uint64_t n = 0;
	assert_int_equal(rlfs_count_free(tp, &n), 0);
	rlfs_trans_cancel(tp);
	return n;
}

/* ------------------------------------------------------------------ */
/* Consistency check                                                   */

enum { B_NONE, B_FIXED, B_FREE, B_AGFL, B_BTREE, B_INODE, B_OWNED };

struct ctx {
	uint8_t *map;              /* per block of the AG: B_* */
	uint32_t aglen;
	uint64_t agstart;
	struct rlfs_alloc_rec *recs;
	size_t nrecs, cap;
	uint64_t inodes, ifree;
};

static void mark(struct ctx *c, uint32_t agbno, uint32_t n, uint8_t what)
{
	assert_true((uint64_t)agbno + n <= c->aglen);
	for (uint32_t i = 0; i < n; i++) {
		if (c->map[agbno + i] != B_NONE)
			fail_msg("block agbno %u marked %u and %u", agbno + i, c->map[agbno + i], what);
		c->map[agbno + i] = what;
	}
}

static int collect_rec(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct ctx *c = priv;
	if (c->nrecs == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 256;
		c->recs = realloc(c->recs, c->cap * sizeof(*c->recs));
		assert_non_null(c->recs);
	}
	memcpy(&c->recs[c->nrecs++], rec, sizeof(struct rlfs_alloc_rec));
	return 0;
}

static int mark_block(struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned level, void *priv)
{
	struct ctx *c = priv;
	mark(c, (uint32_t)(bp->fsbno - c->agstart), 1, B_BTREE);
	return 0;
}

static int mark_chunk(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct ctx *c = priv;
	struct rlfs_inobt_rec r;
	memcpy(&r, rec, sizeof(r));
	uint64_t fsb = rlfs_ino_to_fsb(cur->mp, rlfs_get64(r.startino));
	mark(c, (uint32_t)(fsb - c->agstart), cur->mp->chunk_blocks, B_INODE);
	c->inodes += RLFS_INODES_PER_CHUNK;
	c->ifree += rlfs_get32(r.freecount);
	return 0;
}

static int cmp_bno(const void *a, const void *b)
{
	const struct rlfs_alloc_rec *x = a, *y = b;
	uint32_t p = rlfs_get32(x->startblock), q = rlfs_get32(y->startblock);
	return p < q ? -1 : p > q;
}

/* If set, check_fs fills it: 1 for every fsbno in a free-space record. */
static uint8_t *g_freemap;

/* owned: one byte per fsbno, nonzero if the test owns the block.
 * Returns the blocks the AG btrees use beyond their mkfs roots (space that
 * is legitimately not free while the trees are taller than one block). */
static uint64_t check_fs(struct rlfs_mount *mp, const uint8_t *owned)
{
	uint64_t overhead = 0;
	struct rlfs_trans *tp = tx(mp, 0);
	uint64_t total_free = 0, icount = 0, ifree = 0;
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		struct ctx c = { 0 };
		if (g_freemap)
			memset(g_freemap + rlfs_agb_to_fsb(mp, agno, 0), 0, rlfs_ag_blocks(mp, agno));
		c.aglen = rlfs_ag_blocks(mp, agno);
		c.agstart = rlfs_agb_to_fsb(mp, agno, 0);
		c.map = calloc(c.aglen, 1);
		assert_non_null(c.map);
		struct rlfs_buf *agbp, *flbp;
		assert_int_equal(rlfs_ag_read_header(tp, agno, &agbp), 0);
		struct rlfs_agh *agh = rlfs_agh(agbp);
		mark(&c, 0, 3, B_FIXED);

		/* bnobt records */
		struct rlfs_btree_cur cur;
		rlfs_alloc_cur_init(&cur, tp, &rlfs_bnobt_ops, agno, agbp);
		assert_int_equal(rlfs_btree_check(&cur), 0);
		assert_int_equal(rlfs_btree_query_all(&cur, collect_rec, &c), 0);
		assert_int_equal(rlfs_btree_visit_blocks(&cur, mark_block, &c), 0);
		rlfs_btree_cur_del(&cur);
		size_t nb = c.nrecs;
		struct rlfs_alloc_rec *bno = c.recs;
		c.recs = NULL;
		c.nrecs = c.cap = 0;
		uint64_t sum = 0;
		uint32_t longest = 0, prev_end = 0;
		for (size_t i = 0; i < nb; i++) {
			uint32_t s = rlfs_get32(bno[i].startblock), n = rlfs_get32(bno[i].blockcount);
			assert_true(n > 0);
			if (i)
				assert_true(s > prev_end); /* sorted, never adjacent */
			prev_end = s + n;
			mark(&c, s, n, B_FREE);
			if (g_freemap)
				memset(g_freemap + c.agstart + s, 1, n);
			sum += n;
			if (n > longest)
				longest = n;
		}
		assert_int_equal(sum, rlfs_get32(agh->freeblks));
		assert_int_equal(longest, rlfs_get32(agh->longest));

		/* cntbt: same records */
		rlfs_alloc_cur_init(&cur, tp, &rlfs_cntbt_ops, agno, agbp);
		assert_int_equal(rlfs_btree_check(&cur), 0);
		assert_int_equal(rlfs_btree_query_all(&cur, collect_rec, &c), 0);
		assert_int_equal(rlfs_btree_visit_blocks(&cur, mark_block, &c), 0);
		rlfs_btree_cur_del(&cur);
		assert_int_equal(c.nrecs, nb);
		for (size_t i = 1; i < c.nrecs; i++) { /* cntbt order */
			uint32_t a = rlfs_get32(c.recs[i - 1].blockcount), b = rlfs_get32(c.recs[i].blockcount);
			assert_true(a < b || (a == b && rlfs_get32(c.recs[i - 1].startblock) <
							   rlfs_get32(c.recs[i].startblock)));
		}
		if (c.nrecs)
			qsort(c.recs, c.nrecs, sizeof(*c.recs), cmp_bno);
		for (size_t i = 0; i < nb; i++)
			assert_memory_equal(&bno[i], &c.recs[i], sizeof(bno[i]));
		free(bno);

		/* inobt */
		rlfs_btree_cur_init(&cur, tp, &rlfs_inobt_ops, agno, NULL, agbp);
		assert_int_equal(rlfs_btree_check(&cur), 0);
		assert_int_equal(rlfs_btree_query_all(&cur, mark_chunk, &c), 0);
		assert_int_equal(rlfs_btree_visit_blocks(&cur, mark_block, &c), 0);
		rlfs_btree_cur_del(&cur);
		assert_int_equal(c.inodes, rlfs_get64(agh->icount));
		assert_int_equal(c.ifree, rlfs_get64(agh->ifree));
		icount += c.inodes;
		ifree += c.ifree;

		/* refcount btree (REFLINK feature): its blocks are AG metadata */
		if (rlfs_has_reflink(mp)) {
			rlfs_refcount_cur_init(&cur, tp, agno, agbp);
			assert_int_equal(rlfs_btree_check(&cur), 0);
			assert_int_equal(rlfs_btree_visit_blocks(&cur, mark_block, &c), 0);
			rlfs_btree_cur_del(&cur);
		}
		/* rmap btree (RMAP feature): AG metadata too */
		if (rlfs_has_rmap(mp)) {
			rlfs_rmap_cur_init(&cur, tp, agno, agbp);
			assert_int_equal(rlfs_btree_check(&cur), 0);
			assert_int_equal(rlfs_btree_visit_blocks(&cur, mark_block, &c), 0);
			rlfs_btree_cur_del(&cur);
		}

		/* AGFL */
		assert_int_equal(rlfs_trans_read_buf(tp, c.agstart + RLFS_AGFL_AGBNO, &rlfs_agfl_buf_ops,
						     agno, &flbp), 0);
		rlfs_le32 *slots = (rlfs_le32 *)((char *)flbp->data + sizeof(struct rlfs_agfl));
		uint32_t size = rlfs_agfl_size(mp), first = rlfs_get32(agh->flfirst);
		for (uint32_t i = 0; i < rlfs_get32(agh->flcount); i++)
			mark(&c, rlfs_get32(slots[(first + i) % size]), 1, B_AGFL);
		total_free += sum + rlfs_get32(agh->flcount);

		/* the write-ahead log's blocks */
		if (mp->log && rlfs_fsb_to_agno(mp, mp->log->start_fsbno) == agno)
			mark(&c, rlfs_fsb_to_agbno(mp, mp->log->start_fsbno),
			     mp->log->size_blocks, B_FIXED);

		/* everything else must be the test's */
		for (uint32_t b = 0; b < c.aglen; b++) {
			overhead += c.map[b] == B_BTREE;
			bool own = owned && owned[c.agstart + b];
			if (own && c.map[b] != B_NONE)
				fail_msg("AG %u agbno %u owned by the test but also type %u", agno, b,
					 c.map[b]);
			if (!own && c.map[b] == B_NONE)
				fail_msg("AG %u agbno %u leaked (not free, not owned, not metadata)", agno,
					 b);
		}
		if (getenv("RLFS_TEST_VERBOSE"))
			fprintf(stderr, "AG %u: %zu free extents, freeblks %u, longest %u, levels bno %u "
				"cnt %u ino %u, AGFL %u, btreeblks %u, inodes %llu\n", agno, nb,
				rlfs_get32(agh->freeblks), rlfs_get32(agh->longest),
				rlfs_get16(agh->bno_level), rlfs_get16(agh->cnt_level),
				rlfs_get16(agh->ino_level), rlfs_get32(agh->flcount),
				rlfs_get32(agh->btreeblks), (unsigned long long)c.inodes);
		free(c.recs);
		free(c.map);
	}
	rlfs_trans_cancel(tp);
	assert_int_equal(total_free, (uint64_t)mp->fdblocks + mp->setaside);
	assert_int_equal(icount, mp->icount);
	assert_int_equal(ifree, mp->ifree);
	return overhead - (rlfs_has_reflink(mp) ? 4ull : 3ull) * mp->agcount;
}

/* ------------------------------------------------------------------ */

static void test_mkfs_geometries(void **state)
{
	static const struct { uint32_t bs, agcount; uint64_t size; } cases[] = {
		{ 1024, 0, 32ull << 20 },  { 1024, 1, 16ull << 20 }, { 1024, 7, 40ull << 20 },
		{ 4096, 0, 64ull << 20 },  { 4096, 3, 64ull << 20 }, { 4096, 16, 100ull << 20 },
		{ 65536, 0, 64ull << 20 }, { 65536, 2, 16ull << 20 }, { 4096, 0, 6ull << 30 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tu_fs fs;
		tu_mkfs_mount(&fs, cases[i].size, cases[i].bs, cases[i].agcount);
		struct rlfs_mount *mp = fs.mp;
		assert_int_equal(mp->blocksize, cases[i].bs);
		if (cases[i].agcount)
			assert_int_equal(mp->agcount, cases[i].agcount);
		assert_true(mp->agblocks >= 64);
		assert_true(mp->inopblock <= RLFS_INODES_PER_CHUNK);
		assert_int_equal(mp->icount, 64);
		assert_int_equal(mp->ifree, 63);
		assert_true(mp->rootino != 0);
		check_fs(mp, NULL);
		uint64_t f = count_free(mp);
		tu_remount(&fs);
		check_fs(fs.mp, NULL);
		assert_int_equal(count_free(fs.mp), f);
		tu_unmount(&fs);
	}
}

static void test_mkfs_errors(void **state)
{
	char path[] = "/tmp/rlfs-unit-mkfs-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct rlfs_mkfs_opts o = { .size_bytes = 1 << 20, .force = 1 };
	assert_int_equal(rlfs_mkfs(path, &o), -EINVAL); /* too small */
	o.size_bytes = 64 << 20;
	o.blocksize = 3000;
	assert_int_equal(rlfs_mkfs(path, &o), -EINVAL);
	o.blocksize = 512;
	assert_int_equal(rlfs_mkfs(path, &o), -EINVAL);
	o.blocksize = 131072;
	assert_int_equal(rlfs_mkfs(path, &o), -EINVAL);
	o.blocksize = 4096;
	o.agcount = 1000; /* 16 blocks per AG */
	assert_int_equal(rlfs_mkfs(path, &o), -EINVAL);
	o.agcount = 0;
	o.inodesize = 300;
	assert_int_equal(rlfs_mkfs(path, &o), -EINVAL);
	o.inodesize = 0;
	assert_int_equal(rlfs_mkfs(path, &o), 0);
	o.force = 0;
	assert_int_equal(rlfs_mkfs(path, &o), -EEXIST);
	o.size_bytes = 0; /* existing size */
	o.force = 1;
	assert_int_equal(rlfs_mkfs(path, &o), 0);
	struct rlfs_mount *mp;
	assert_int_equal(rlfs_mount_open(path, 0, &mp), 0); /* locks the image */
	assert_int_equal(mp->dblocks, (64u << 20) / 4096);
	check_fs(mp, NULL);
	assert_int_equal(rlfs_mkfs(path, &o), -EBUSY); /* mounted */
	assert_int_equal(rlfs_mount_close(mp), 0);
	unlink(path);
	/* a new file needs a size */
	o.size_bytes = 0;
	assert_int_equal(rlfs_mkfs(path, &o), -EINVAL);
}

/* ------------------------------------------------------------------ */

struct held {
	uint64_t fsbno;
	uint32_t len;
};

static void own(uint8_t *owned, uint64_t fsbno, uint32_t len, uint8_t v)
{
	for (uint32_t i = 0; i < len; i++) {
		assert_true(owned[fsbno + i] != v);
		owned[fsbno + i] = v;
	}
}

static void random_alloc_run(uint32_t bs, uint32_t agcount, uint64_t size, int nops)
{
	struct tu_fs fs;
	tu_mkfs_mount(&fs, size, bs, agcount);
	struct rlfs_mount *mp = fs.mp;
	uint64_t initial = count_free(mp);
	uint8_t *owned = calloc(mp->dblocks, 1);
	struct held *h = calloc((size_t)nops + 1, sizeof(*h));
	size_t nh = 0;
	assert_non_null(owned);
	assert_non_null(h);
	uint32_t maxreq = (uint32_t)RLFS_MIN(mp->agblocks / 4, 2000u);

	for (int op = 0; op < nops; op++) {
		if (nh && rnd(100) < 45) {
			/* free a held extent, sometimes only a piece of it */
			size_t i = rnd((uint32_t)nh);
			uint64_t fsbno = h[i].fsbno;
			uint32_t len = h[i].len;
			uint32_t off = 0, n = len;
			if (len > 2 && rnd(3) == 0) {
				off = 1 + rnd(len - 2);
				n = 1 + rnd(len - off);
			}
			struct rlfs_trans *tp = tx(mp, rlfs_alloc_tree_res(mp, 1));
			assert_int_equal(rlfs_free_extent(tp, fsbno + off, n), 0);
			assert_int_equal(rlfs_trans_commit(tp), 0);
			own(owned, fsbno + off, n, 0);
			/* keep the remaining pieces */
			h[i] = h[--nh];
			if (off)
				h[nh++] = (struct held){ fsbno, off };
			if (off + n < len)
				h[nh++] = (struct held){ fsbno + off + n, len - off - n };
		} else {
			struct rlfs_alloc_arg a = { 0 };
			a.type = (enum rlfs_alloc_type)rnd(3);
			a.maxlen = 1 + rnd(rnd(4) == 0 ? maxreq : 16);
			a.minlen = 1 + rnd(a.maxlen);
			a.alignment = rnd(4) == 0 ? 1u << rnd(4) : 1;
			a.hint_fsbno = rnd(2) ? rnd((uint32_t)mp->dblocks) : 0;
			if (a.type == RLFS_ALLOC_EXACT && nh && rnd(2)) {
				struct held *x = &h[rnd((uint32_t)nh)];
				a.hint_fsbno = x->fsbno + x->len;
			}
			struct rlfs_trans *tp;
			int err = rlfs_trans_alloc(mp, &mp->resv.tr_fsck, a.maxlen + rlfs_alloc_tree_res(mp, 1),
						   RLFS_TRANS_RESERVE, &tp);
			if (err == -ENOSPC)
				continue;
			assert_int_equal(err, 0);
			a.tp = tp;
			err = rlfs_alloc_extent(&a);
			if (err == -ENOSPC) {
				rlfs_trans_cancel(tp);
				continue;
			}
			assert_int_equal(err, 0);
			assert_true(a.len >= a.minlen && a.len <= a.maxlen);
			if (a.type != RLFS_ALLOC_EXACT && a.alignment > 1)
				assert_int_equal(a.fsbno % a.alignment, 0);
			if (a.type == RLFS_ALLOC_EXACT)
				assert_int_equal(a.fsbno, a.hint_fsbno);
			/* never crosses an AG */
			assert_int_equal(rlfs_fsb_to_agno(mp, a.fsbno),
					 rlfs_fsb_to_agno(mp, a.fsbno + a.len - 1));
			if (rnd(20) == 0) {
				rlfs_trans_cancel(tp); /* undo must restore everything */
				continue;
			}
			assert_int_equal(rlfs_trans_commit(tp), 0);
			own(owned, a.fsbno, a.len, 1);
			h[nh++] = (struct held){ a.fsbno, a.len };
		}
		if (op % 500 == 499)
			check_fs(mp, owned);
		if (op % 2000 == 1999) {
			tu_remount(&fs);
			mp = fs.mp;
			check_fs(mp, owned);
		}
	}
	check_fs(mp, owned);
	/* everything back */
	for (size_t i = 0; i < nh; i++) {
		struct rlfs_trans *tp = tx(mp, rlfs_alloc_tree_res(mp, 1));
		assert_int_equal(rlfs_free_extent(tp, h[i].fsbno, h[i].len), 0);
		assert_int_equal(rlfs_trans_commit(tp), 0);
		own(owned, h[i].fsbno, h[i].len, 0);
	}
	assert_int_equal(count_free(mp) + check_fs(mp, owned), initial);
	free(h);
	free(owned);
	tu_unmount(&fs);
}

static void test_alloc_random_4k(void **state)
{
	random_alloc_run(4096, 4, 64ull << 20, 6000);
}

static void test_alloc_random_1k(void **state)
{
	/* small blocks: trees several levels high */
	random_alloc_run(1024, 3, 48ull << 20, 6000);
}

static void test_alloc_random_64k(void **state)
{
	random_alloc_run(65536, 0, 64ull << 20, 2000);
}

/* A growing file: EXACT at the end of the last extent keeps one extent. */
static void test_exact_growth(void **state)
{
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64ull << 20, 4096, 4);
	struct rlfs_mount *mp = fs.mp;
	struct rlfs_trans *tp = tx(mp, 8 + rlfs_alloc_tree_res(mp, 1));
	struct rlfs_alloc_arg a = { .tp = tp, .type = RLFS_ALLOC_NEAR,
				    .hint_fsbno = rlfs_agb_to_fsb(mp, 1, 100),
				    .minlen = 1, .maxlen = 8, .alignment = 1 };
	assert_int_equal(rlfs_alloc_extent(&a), 0);
	assert_int_equal(a.len, 8);
	assert_int_equal(a.fsbno, rlfs_agb_to_fsb(mp, 1, 100)); /* hint was free */
	assert_int_equal(rlfs_trans_commit(tp), 0);
	uint64_t start = a.fsbno, end = a.fsbno + a.len;
	/* interleave with other allocations that should go elsewhere (NEAR
	 * to another place), as another file would */
	for (int i = 0; i < 200; i++) {
		tp = tx(mp, 16 + 2 * rlfs_alloc_tree_res(mp, 1));
		struct rlfs_alloc_arg b = { .tp = tp, .type = RLFS_ALLOC_EXACT, .hint_fsbno = end,
					    .minlen = 1, .maxlen = 8, .alignment = 1 };
		assert_int_equal(rlfs_alloc_extent(&b), 0);
		assert_int_equal(b.fsbno, end);
		assert_int_equal(b.len, 8);
		end += b.len;
		struct rlfs_alloc_arg c = { .tp = tp, .type = RLFS_ALLOC_NEAR,
					    .hint_fsbno = rlfs_agb_to_fsb(mp, 2, 10),
					    .minlen = 1, .maxlen = 3, .alignment = 1 };
		assert_int_equal(rlfs_alloc_extent(&c), 0);
		assert_int_equal(rlfs_fsb_to_agno(mp, c.fsbno), 2);
		assert_int_equal(rlfs_trans_commit(tp), 0);
	}
	assert_int_equal(end - start, 8 * 201);
	/* EXACT on a used block fails */
	tp = tx(mp, 8);
	a = (struct rlfs_alloc_arg){ .tp = tp, .type = RLFS_ALLOC_EXACT, .hint_fsbno = start + 5,
				     .minlen = 1, .maxlen = 8, .alignment = 1 };
	assert_int_equal(rlfs_alloc_extent(&a), -ENOSPC);
	rlfs_trans_cancel(tp);
	tu_unmount(&fs);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Fill to ENOSPC, free everything, all space is back. */
static void test_enospc(void **state)
{
	static const uint32_t bss[] = { 1024, 4096 };
	for (size_t k = 0; k < 2; k++) {
		struct tu_fs fs;
		tu_mkfs_mount(&fs, 16ull << 20, bss[k], 4);
		struct rlfs_mount *mp = fs.mp;
		uint64_t initial = count_free(mp);
		size_t cap = 1 << 16, n = 0;
		struct held *h = calloc(cap, sizeof(*h));
		uint8_t *owned = calloc(mp->dblocks, 1);
		uint64_t got = 0;
		for (;;) {
			struct rlfs_trans *tp;
			uint32_t want = 1 + rnd(300);
			if (rlfs_trans_alloc(mp, &mp->resv.tr_fsck, want + rlfs_alloc_tree_res(mp, 1), RLFS_TRANS_RESERVE, &tp))
				want = 1;
			else
				rlfs_trans_cancel(tp);
			if (rlfs_trans_alloc(mp, &mp->resv.tr_fsck, want, RLFS_TRANS_RESERVE, &tp))
				break;
			struct rlfs_alloc_arg a = { .tp = tp, .type = RLFS_ALLOC_ANY, .minlen = 1,
						    .maxlen = want, .alignment = 1 };
			int err = rlfs_alloc_extent(&a);
			if (err == -ENOSPC) {
				rlfs_trans_cancel(tp);
				break;
			}
			assert_int_equal(err, 0);
			assert_int_equal(rlfs_trans_commit(tp), 0);
			own(owned, a.fsbno, a.len, 1);
			got += a.len;
			assert_true(n < cap);
			h[n++] = (struct held){ a.fsbno, a.len };
		}
		check_fs(mp, owned);
		/* nearly everything was handed out: at most the set-aside (AGFL
		 * minimum and refcount headroom of every AG) and a little more */
		assert_true(got + mp->setaside + (uint64_t)mp->agcount * 64 >= initial);
		/* free in random order */
		for (size_t i = 0; i < n; i++) {
			size_t j = i + rnd((uint32_t)(n - i));
			struct held t = h[i];
			h[i] = h[j];
			h[j] = t;
			struct rlfs_trans *tp = tx(mp, 0);
			assert_int_equal(rlfs_free_extent(tp, h[i].fsbno, h[i].len), 0);
			assert_int_equal(rlfs_trans_commit(tp), 0);
			own(owned, h[i].fsbno, h[i].len, 0);
		}
		assert_int_equal(count_free(mp) + check_fs(mp, owned), initial);
		free(h);
		free(owned);
		tu_unmount(&fs);
	}
}

static void test_double_free(void **state)
{
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 32ull << 20, 4096, 2);
	struct rlfs_mount *mp = fs.mp;
	struct rlfs_trans *tp = tx(mp, 10 + rlfs_alloc_tree_res(mp, 1));
	struct rlfs_alloc_arg a = { .tp = tp, .type = RLFS_ALLOC_ANY, .minlen = 10, .maxlen = 10,
				    .alignment = 1 };
	assert_int_equal(rlfs_alloc_extent(&a), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	tp = tx(mp, 0);
	assert_int_equal(rlfs_free_extent(tp, a.fsbno + 2, 3), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	uint64_t before = count_free(mp);
	tp = tx(mp, 0); /* overlaps the freed middle */
	assert_int_equal(rlfs_free_extent(tp, a.fsbno, 10), -EUCLEAN);
	rlfs_trans_cancel(tp);
	tp = tx(mp, 0);
	assert_int_equal(rlfs_free_extent(tp, a.fsbno + 4, 1), -EUCLEAN);
	rlfs_trans_cancel(tp);
	/* a free block that is not even allocated: the AG header */
	tp = tx(mp, 0);
	assert_int_equal(rlfs_free_extent(tp, rlfs_agb_to_fsb(mp, 1, 1), 1), -EUCLEAN);
	rlfs_trans_cancel(tp);
	assert_int_equal(count_free(mp), before);
	tp = tx(mp, 0);
	assert_int_equal(rlfs_free_extent(tp, a.fsbno, 2), 0);
	assert_int_equal(rlfs_free_extent(tp, a.fsbno + 5, 5), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	check_fs(mp, NULL);

	/* inode double free */
	uint64_t ino;
	tp = tx(mp, rlfs_ialloc_res(mp));
	assert_int_equal(rlfs_ialloc(tp, mp->rootino, &ino), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	tp = tx(mp, 0);
	assert_int_equal(rlfs_ifree(tp, ino), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	tp = tx(mp, 0);
	assert_int_equal(rlfs_ifree(tp, ino), -EUCLEAN);
	rlfs_trans_cancel(tp);
	tp = tx(mp, 0);
	assert_int_equal(rlfs_ifree(tp, ino + 64 * 50), -EUCLEAN); /* in no chunk */
	rlfs_trans_cancel(tp);
	check_fs(mp, NULL);
	tu_unmount(&fs);
}


static void test_inodes(void **state)
{
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64ull << 20, 1024, 4);
	struct rlfs_mount *mp = fs.mp;
	uint64_t initial = count_free(mp);
	enum { N = 5000 };
	uint64_t *inos = calloc(N, sizeof(*inos));
	uint64_t parent = mp->rootino;
	for (int i = 0; i < N;) {
		struct rlfs_trans *tp = tx(mp, 50 * rlfs_ialloc_res(mp));
		int batch_start = i;
		for (int k = 0; k < 50 && i < N; k++, i++) {
			assert_int_equal(rlfs_ialloc(tp, parent, &inos[i]), 0);
			if (rnd(100) == 0)
				parent = inos[i];
		}
		if (rnd(10) == 0) { /* cancel: the inodes are free again */
			rlfs_trans_cancel(tp);
			i = batch_start;
			continue;
		}
		assert_int_equal(rlfs_trans_commit(tp), 0);
	}
	uint64_t *sorted = malloc(N * sizeof(*sorted));
	memcpy(sorted, inos, N * sizeof(*sorted));
	qsort(sorted, N, sizeof(*sorted), cmp_u64);
	for (int i = 1; i < N; i++)
		assert_true(sorted[i] != sorted[i - 1]);
	for (int i = 0; i < N; i++)
		assert_true(sorted[i] != mp->rootino);
	free(sorted);
	uint64_t chunks = (N + 1 + 63) / 64;
	assert_true(mp->icount >= chunks * 64);
	assert_int_equal(mp->icount - mp->ifree, N + 1);
	check_fs(mp, NULL);
	/* every allocated inode is in use; a free one in a chunk is not */
	struct rlfs_trans *tp = tx(mp, 0);
	for (int i = 0; i < N; i += 37) {
		bool inuse = false;
		assert_int_equal(rlfs_ialloc_check(tp, inos[i], &inuse), 0);
		assert_true(inuse);
	}
	bool inuse = true;
	assert_int_equal(rlfs_ialloc_check(tp, 1ull << 40, &inuse), -EINVAL);
	rlfs_trans_cancel(tp);
	tu_remount(&fs);
	mp = fs.mp;
	check_fs(mp, NULL);

	/* free in random order, in batches */
	for (int i = N - 1; i > 0; i--) {
		int j = (int)rnd((uint32_t)i + 1);
		uint64_t t = inos[i];
		inos[i] = inos[j];
		inos[j] = t;
	}
	for (int i = 0; i < N;) {
		tp = tx(mp, 0);
		for (int k = 0; k < 40 && i < N; k++, i++)
			assert_int_equal(rlfs_ifree(tp, inos[i]), 0);
		assert_int_equal(rlfs_trans_commit(tp), 0);
		if (i % 1000 == 0)
			check_fs(mp, NULL);
	}
	/* only the root's chunk is left, and all space is back */
	assert_int_equal(mp->icount, 64);
	assert_int_equal(mp->ifree, 63);
	assert_int_equal(count_free(mp) + check_fs(mp, NULL), initial);
	tp = tx(mp, 0);
	assert_int_equal(rlfs_ialloc_check(tp, inos[0], &inuse), 0);
	assert_false(inuse);
	rlfs_trans_cancel(tp);
	free(inos);
	tu_unmount(&fs);
}

/* Fill the inode space of a small fs: -ENOSPC, then free all. */
static void test_inode_enospc(void **state)
{
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 16ull << 20, 4096, 2);
	struct rlfs_mount *mp = fs.mp;
	uint64_t initial = count_free(mp);
	size_t cap = 200000, n = 0;
	uint64_t *inos = malloc(cap * sizeof(*inos));
	for (;;) {
		struct rlfs_trans *tp;
		if (rlfs_trans_alloc(mp, &mp->resv.tr_fsck, rlfs_ialloc_res(mp), RLFS_TRANS_RESERVE, &tp))
			break;
		int err = rlfs_ialloc(tp, 0, &inos[n]);
		if (err == -ENOSPC) {
			rlfs_trans_cancel(tp);
			break;
		}
		assert_int_equal(err, 0);
		assert_int_equal(rlfs_trans_commit(tp), 0);
		n++;
		assert_true(n < cap);
	}
	assert_true(n > 10000);
	check_fs(mp, NULL);
	for (size_t i = 0; i < n; i++) {
		struct rlfs_trans *tp = tx(mp, 0);
		assert_int_equal(rlfs_ifree(tp, inos[i]), 0);
		assert_int_equal(rlfs_trans_commit(tp), 0);
	}
	assert_int_equal(count_free(mp) + check_fs(mp, NULL), initial);
	free(inos);
	tu_unmount(&fs);
}

/*
 * Fragment the free space into single blocks (tall bnobt/cntbt), check
 * NEAR picks the closest free block, then merge everything back.
 */
static void test_fragmented(void **state)
{
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 20ull << 20, 1024, 1);
	struct rlfs_mount *mp = fs.mp;
	uint64_t initial = count_free(mp);
	uint8_t *owned = calloc(mp->dblocks, 1);
	uint64_t *blk = malloc(mp->dblocks * sizeof(*blk));
	size_t n = 0;
	bool full = false;
	while (!full) {
		struct rlfs_trans *tp;
		uint32_t batch = 64;
		if (rlfs_trans_alloc(mp, &mp->resv.tr_fsck, batch + 4 * rlfs_alloc_tree_res(mp, 1), RLFS_TRANS_RESERVE, &tp)) {
			batch = 1;
			if (rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 1, RLFS_TRANS_RESERVE, &tp))
				break;
		}
		for (uint32_t k = 0; k < batch; k++) {
			struct rlfs_alloc_arg a = { .tp = tp, .type = RLFS_ALLOC_ANY, .minlen = 1,
						    .maxlen = 1, .alignment = 1 };
			int err = rlfs_alloc_extent(&a);
			if (err == -ENOSPC) {
				full = true;
				break;
			}
			assert_int_equal(err, 0);
			own(owned, a.fsbno, 1, 1);
			blk[n++] = a.fsbno;
		}
		assert_int_equal(rlfs_trans_commit(tp), 0);
	}
	check_fs(mp, owned);
	qsort(blk, n, sizeof(*blk), cmp_u64);
	/* free every other block, in random order */
	size_t nodd = 0;
	uint64_t *odd = malloc(n * sizeof(*odd));
	for (size_t i = 1; i < n; i += 2)
		odd[nodd++] = blk[i];
	for (size_t i = 0; i < nodd; i++) {
		size_t j = i + rnd((uint32_t)(nodd - i));
		uint64_t t = odd[i];
		odd[i] = odd[j];
		odd[j] = t;
	}
	for (size_t i = 0; i < nodd;) {
		struct rlfs_trans *tp = tx(mp, 0);
		for (int k = 0; k < 100 && i < nodd; k++, i++) {
			assert_int_equal(rlfs_free_extent(tp, odd[i], 1), 0);
			own(owned, odd[i], 1, 0);
		}
		assert_int_equal(rlfs_trans_commit(tp), 0);
		if (i % 4000 == 0)
			check_fs(mp, owned);
	}
	check_fs(mp, owned);
	struct rlfs_trans *tp = tx(mp, 0);
	struct rlfs_buf *agbp;
	assert_int_equal(rlfs_ag_read_header(tp, 0, &agbp), 0);
	assert_true(rlfs_get16(rlfs_agh(agbp)->bno_level) >= 3);
	assert_true(rlfs_get16(rlfs_agh(agbp)->cnt_level) >= 3);
	rlfs_trans_cancel(tp);
	tu_remount(&fs);
	mp = fs.mp;

	/* NEAR: the closest free block to the hint (AGFL stocked first) */
	tp = tx(mp, 0);
	assert_int_equal(rlfs_alloc_fix_freelist(tp, 0), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	g_freemap = calloc(mp->dblocks, 1);
	check_fs(mp, owned);
	for (int t = 0; t < 300; t++) {
		uint64_t hint = 1 + rnd((uint32_t)mp->dblocks - 1);
		uint64_t best = UINT64_MAX;
		for (uint64_t d = 0; d < mp->dblocks && best == UINT64_MAX; d++) {
			if (hint >= d && g_freemap[hint - d])
				best = d;
			else if (hint + d < mp->dblocks && g_freemap[hint + d])
				best = d;
		}
		tp = tx(mp, 1 + rlfs_alloc_tree_res(mp, 1));
		struct rlfs_alloc_arg a = { .tp = tp, .type = RLFS_ALLOC_NEAR, .hint_fsbno = hint,
					    .minlen = 1, .maxlen = 1, .alignment = 1 };
		assert_int_equal(rlfs_alloc_extent(&a), 0);
		uint64_t d = a.fsbno > hint ? a.fsbno - hint : hint - a.fsbno;
		assert_int_equal(d, best);
		rlfs_trans_cancel(tp);
	}
	free(g_freemap);
	g_freemap = NULL;
	check_fs(mp, owned);

	/* give the rest back: every free merges two neighbours */
	size_t neven = 0;
	for (size_t i = 0; i < n; i += 2)
		odd[neven++] = blk[i];
	for (size_t i = 0; i < neven; i++) {
		size_t j = i + rnd((uint32_t)(neven - i));
		uint64_t t = odd[i];
		odd[i] = odd[j];
		odd[j] = t;
	}
	for (size_t i = 0; i < neven;) {
		tp = tx(mp, 0);
		for (int k = 0; k < 100 && i < neven; k++, i++) {
			assert_int_equal(rlfs_free_extent(tp, odd[i], 1), 0);
			own(owned, odd[i], 1, 0);
		}
		assert_int_equal(rlfs_trans_commit(tp), 0);
		if (i % 4000 == 0)
			check_fs(mp, owned);
	}
	assert_int_equal(count_free(mp) + check_fs(mp, owned), initial);
	free(odd);
	free(blk);
	free(owned);
	tu_unmount(&fs);
}

/* Rewrite one field of a metadata block on disk (crc recomputed, so only
 * the verifier's field checks can catch it). */
static void patch_block(const char *path, uint32_t bs, uint64_t fsbno, size_t off,
			const void *val, size_t len)
{
	FILE *f = fopen(path, "r+b");
	assert_non_null(f);
	uint8_t *blk = malloc(bs);
	assert_int_equal(fseeko(f, (off_t)(fsbno * bs), SEEK_SET), 0);
	assert_int_equal(fread(blk, 1, bs, f), bs);
	memcpy(blk + off, val, len);
	rlfs_cksum_update(blk, bs, RLFS_CRC_OFF);
	assert_int_equal(fseeko(f, (off_t)(fsbno * bs), SEEK_SET), 0);
	assert_int_equal(fwrite(blk, 1, bs, f), bs);
	fclose(f);
	free(blk);
}

static void test_verifiers(void **state)
{
	const uint32_t bs = 4096, agblocks = 4096;
	struct {
		uint32_t agbno; /* in AG 1 */
		size_t off;
		uint32_t val;
		int width;
	} agh_cases[] = {
		{ 1, offsetof(struct rlfs_agh, agno), 2, 4 },
		{ 1, offsetof(struct rlfs_agh, length), agblocks + 1, 4 },
		{ 1, offsetof(struct rlfs_agh, bno_root), 0, 4 },
		{ 1, offsetof(struct rlfs_agh, cnt_root), agblocks, 4 },
		{ 1, offsetof(struct rlfs_agh, ino_root), 2, 4 },
		{ 1, offsetof(struct rlfs_agh, bno_level), 0, 2 },
		{ 1, offsetof(struct rlfs_agh, ino_level), RLFS_BTREE_MAXLEVELS + 1, 2 },
		{ 1, offsetof(struct rlfs_agh, flcount), 5000, 4 },
		{ 1, offsetof(struct rlfs_agh, flfirst), 3, 4 },
		{ 1, offsetof(struct rlfs_agh, freeblks), agblocks, 4 },
		{ 1, offsetof(struct rlfs_agh, longest), agblocks - 1, 4 },
		{ 1, offsetof(struct rlfs_agh, icount), 63, 4 },
		{ 0, offsetof(struct rlfs_sb, inodesize), 128, 2 },
		{ 0, offsetof(struct rlfs_sb, agblocks), 10, 4 },
		{ 0, offsetof(struct rlfs_sb, rootino), 0, 4 },
		{ 0, offsetof(struct rlfs_sb, state), 7, 4 },
	};
	for (size_t i = 0; i < sizeof(agh_cases) / sizeof(agh_cases[0]); i++) {
		struct tu_fs fs;
		tu_mkfs_mount(&fs, 64ull << 20, bs, 4);
		assert_int_equal(fs.mp->agblocks, agblocks);
		assert_int_equal(rlfs_mount_close(fs.mp), 0);
		fs.mp = NULL;
		uint64_t fsbno = agh_cases[i].agbno == 0 ? 0 : agblocks + agh_cases[i].agbno;
		rlfs_le32 v32 = rlfs_le32_of(agh_cases[i].val);
		rlfs_le16 v16 = rlfs_le16_of((uint16_t)agh_cases[i].val);
		if (agh_cases[i].width == 4)
			patch_block(fs.path, bs, fsbno, agh_cases[i].off, &v32, 4);
		else
			patch_block(fs.path, bs, fsbno, agh_cases[i].off, &v16, 2);
		struct rlfs_mount *mp = NULL;
		int err = rlfs_mount_open(fs.path, RLFS_MOUNT_NOLOCK, &mp);
		if (err == 0)
			fail_msg("case %zu: corrupt field at offset %zu accepted", i, agh_cases[i].off);
		assert_int_equal(err, -EUCLEAN);
		tu_unmount(&fs);
	}
	/* AGFL slot pointing at the AG header */
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64ull << 20, bs, 4);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	rlfs_le32 one = rlfs_le32_of(1);
	patch_block(fs.path, bs, agblocks + RLFS_AGFL_AGBNO, sizeof(struct rlfs_agfl), &one, 4);
	assert_int_equal(rlfs_mount_open(fs.path, RLFS_MOUNT_NOLOCK, &fs.mp), 0);
	struct rlfs_trans *tp = tx(fs.mp, 0);
	uint32_t agbno;
	assert_int_equal(rlfs_agfl_get_block(tp, 1, &agbno), -EUCLEAN);
	rlfs_trans_cancel(tp);
	tu_unmount(&fs);
}

int main(void)
{
	seed_from_env();
	/* the allocator alone: raw extents with no owner, exact free-block
	 * accounting; the rmap btree's upkeep is test_rmapfeat's */
	tu_mkfs_rmapbt = -1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mkfs_geometries),
		cmocka_unit_test(test_mkfs_errors),
		cmocka_unit_test(test_verifiers),
		cmocka_unit_test(test_exact_growth),
		cmocka_unit_test(test_double_free),
		cmocka_unit_test(test_alloc_random_4k),
		cmocka_unit_test(test_alloc_random_1k),
		cmocka_unit_test(test_alloc_random_64k),
		cmocka_unit_test(test_enospc),
		cmocka_unit_test(test_fragmented),
		cmocka_unit_test(test_inodes),
		cmocka_unit_test(test_inode_enospc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

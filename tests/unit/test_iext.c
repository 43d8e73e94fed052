/*
 * test_iext.c: the in-core extent list in leaves (lib/iext.c) against a
 * flat array holding the same records.
 *
 *   test_random     thousands of random inserts and removes, in groups
 *                   that are then either kept (trim) or undone newest
 *                   first as a cancel does (remove for an insert,
 *                   reinsert for a remove); after every step every record,
 *                   the count, first[], the leaves' fill and search() agree
 *                   with the array
 *   test_cascade    reinsert with every leaf full and no spare leaf: the
 *                   record finds room by moving one record per leaf to the
 *                   right, to the left, and at a leaf's first position
 *   test_cascade_all every reinsert index against a removal at each
 *                   position kind of each leaf (all others full)
 *   test_reserve    after rlfs_iext_reserve(n), n inserts allocate, grow
 *                   and free nothing (reserved spares become leaves)
 *   test_trim       removing most records then trimming merges thin leaves
 *                   and frees the spares; the records stay
 * Seed: RLFS_TEST_SEED.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "iext.h"

#define MAXREC 20000u
#define RLFS_TEST_MIN(a, b) ((a) < (b) ? (a) : (b))

struct model {
	struct rlfs_irec *a;
	uint32_t n;
};

static uint64_t rnd(uint64_t n)
{
	return n ? tu_rand() % n : 0;
}

static struct rlfs_iext *g_x;   /* the list rec_at may respace with its model */
static bool g_in_group;         /* undo entries pending: no respacing */

/* Every record's startoff (i + 1) * 2^44, in the model and in g_x. */
static void respace(struct model *m)
{
	for (uint32_t i = 0; i < m->n; i++) {
		m->a[i].startoff = (uint64_t)(i + 1) << 44;
		if (g_x)
			rlfs_iext_at(g_x, i)->startoff = m->a[i].startoff;
	}
}

/* A record whose startoff orders it at index idx: halfway between its
 * neighbours; when they are too close, every record of the model and of
 * g_x is respaced first (startoffs changed in place keep the order). */
static struct rlfs_irec rec_at(struct model *m, uint32_t idx)
{
	uint64_t lo = idx ? m->a[idx - 1].startoff : 0;
	uint64_t hi = idx < m->n ? m->a[idx].startoff : lo + (1ull << 40);
	if (hi - lo < 4) {
		assert_false(g_in_group);
		respace(m);
		lo = idx ? m->a[idx - 1].startoff : 0;
		hi = idx < m->n ? m->a[idx].startoff : lo + (1ull << 40);
	}
	struct rlfs_irec r = { .startoff = lo + (hi - lo) / 2, .startblock = tu_rand(),
			       .blockcount = 1, .state = (uint32_t)(tu_rand() & 1) };
	assert_true(r.startoff > lo || idx == 0);
	assert_true(r.startoff < hi);
	return r;
}

static void model_insert(struct model *m, uint32_t idx, const struct rlfs_irec *r)
{
	memmove(&m->a[idx + 1], &m->a[idx], (size_t)(m->n - idx) * sizeof(*r));
	m->a[idx] = *r;
	m->n++;
}

static void model_remove(struct model *m, uint32_t idx)
{
	memmove(&m->a[idx], &m->a[idx + 1], (size_t)(m->n - idx - 1) * sizeof(*m->a));
	m->n--;
}

/* A new record ordered at idx, put into the list x and the model m alike
 * (the insert must succeed); returns it. */
static struct rlfs_irec insert_both(struct rlfs_iext *x, struct model *m, uint32_t idx)
{
	struct rlfs_irec r = rec_at(m, idx);
	assert_int_equal(rlfs_iext_insert(x, idx, &r), 0);
	model_insert(m, idx, &r);
	return r;
}

/* Everything the list says agrees with the model and its own shape. */
static void check(const struct rlfs_iext *x, const struct model *m)
{
	assert_int_equal(rlfs_iext_count(x), m->n);
	uint32_t total = 0;
	for (uint32_t k = 0; k < x->nleaves; k++) {
		assert_int_equal(x->first[k], total);
		assert_true(x->leaf[k]->n >= 1);
		assert_true(x->leaf[k]->n <= x->leaf[k]->cap);
		assert_true(x->leaf[k]->cap <= RLFS_IEXT_LEAF_RECS);
		total += x->leaf[k]->n;
	}
	assert_int_equal(total, m->n);
	assert_true(x->leaves_cap >= x->nleaves + x->nspare);
	for (uint32_t i = 0; i < m->n; i++)
		assert_memory_equal(rlfs_iext_at(x, i), &m->a[i], sizeof(m->a[i]));
	/* search: exact starts, just before, just after, and outside */
	for (uint32_t t = 0; t < 16 && m->n; t++) {
		uint32_t i = (uint32_t)rnd(m->n);
		assert_int_equal(rlfs_iext_search(x, m->a[i].startoff), i);
		assert_int_equal(rlfs_iext_search(x, m->a[i].startoff + 1),
				 i + 1 < m->n && m->a[i + 1].startoff == m->a[i].startoff + 1 ? i + 1 : i);
		if (m->a[i].startoff)
			assert_int_equal(rlfs_iext_search(x, m->a[i].startoff - 1), (int64_t)i - 1);
	}
	if (m->n)
		assert_int_equal(rlfs_iext_search(x, UINT64_MAX), m->n - 1);
	else
		assert_int_equal(rlfs_iext_search(x, 12345), -1);
}

struct undo {
	int op;             /* 1 inserted at idx, 2 removed old from idx */
	uint32_t idx;
	struct rlfs_irec old;
};

static void test_random(void **state)
{
	(void)state;
	struct rlfs_iext x = { 0 };
	struct model m = { calloc(MAXREC + 1, sizeof(struct rlfs_irec)), 0 };
	g_x = &x;
	struct undo *u = calloc(4096, sizeof(*u));
	assert_non_null(m.a);
	assert_non_null(u);
	unsigned cancels = 0, commits = 0, reinserts = 0;
	for (int round = 0; round < 1500; round++) {
		/* growth phases and shrink phases, so leaves split, empty and
		 * merge; groups of up to 300 changes, like a big transaction */
		int grow = (round / 150) % 2 == 0 ? 70 : 30;
		uint32_t nu = 0, steps = 1 + (uint32_t)rnd(round % 7 == 0 ? 300 : 12);
		/* undo records keep their startoffs: respace before a group,
		 * when some gap is below 2^40 (a group halves one gap at most 300
		 * times, but ends, where it can repeat, get an eighth of them) */
		uint64_t gap = m.n ? m.a[0].startoff : UINT64_MAX;
		for (uint32_t i = 1; i < m.n; i++)
			gap = RLFS_TEST_MIN(gap, m.a[i].startoff - m.a[i - 1].startoff);
		if (gap < (1ull << 40))
			respace(&m);
		g_in_group = true;
		for (uint32_t s = 0; s < steps; s++) {
			if (m.n < MAXREC && (m.n == 0 || (int)rnd(100) < grow)) {
				uint32_t idx = (uint32_t)rnd(m.n + 1);
				if (rnd(4) == 0)
					idx = rnd(2) ? m.n : 0;   /* ends: appends, fronts */
				u[nu++] = (struct undo){ 1, idx, insert_both(&x, &m, idx) };
			} else {
				uint32_t idx = (uint32_t)rnd(m.n);
				u[nu++] = (struct undo){ 2, idx, m.a[idx] };
				rlfs_iext_remove(&x, idx);
				model_remove(&m, idx);
			}
			/* an in-place change through the pointer */
			if (m.n && rnd(3) == 0) {
				uint32_t i = (uint32_t)rnd(m.n);
				rlfs_iext_at(&x, i)->blockcount += 7;
				m.a[i].blockcount += 7;
			}
		}
		g_in_group = false;
		if (rnd(3) == 0) {
			/* a cancel: newest first, without allocating */
			while (nu-- > 0) {
				if (u[nu].op == 1) {
					rlfs_iext_remove(&x, u[nu].idx);
					model_remove(&m, u[nu].idx);
				} else {
					rlfs_iext_reinsert(&x, u[nu].idx, &u[nu].old);
					model_insert(&m, u[nu].idx, &u[nu].old);
					reinserts++;
				}
			}
			cancels++;
		} else {
			commits++;
		}
		check(&x, &m);
		rlfs_iext_trim(&x);
		assert_int_equal(x.nspare, 0);
		check(&x, &m);
	}
	printf("# %u commits, %u cancels, %u reinserts, %u records, %u leaves at the end\n", commits,
	       cancels, reinserts, m.n, x.nleaves);
	assert_true(cancels > 100 && reinserts > 1000);
	rlfs_iext_destroy(&x);
	assert_int_equal(x.count, 0);
	free(m.a);
	free(u);
}

/* Build n records, then fill every leaf to its capacity. */
static void build_full(struct rlfs_iext *x, struct model *m, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		insert_both(x, m, m->n);
	for (uint32_t k = 0; k < x->nleaves; k++) {
		while (x->leaf[k]->n < x->leaf[k]->cap) {
			/* position 1 of leaf k goes into leaf k */
			uint32_t before = x->nleaves;
			insert_both(x, m, x->first[k] + 1);
			assert_int_equal(x->nleaves, before);
		}
	}
	for (uint32_t k = 0; k < x->nleaves; k++)
		assert_int_equal(x->leaf[k]->n, x->leaf[k]->cap);
	assert_true(x->nleaves >= 4);
	assert_int_equal(x->nspare, 0);
	check(x, m);
}

/* Remove record idx, then put it back at idx with reinsert (no spare, so
 * a cascade when its leaf filled up again meanwhile). */
static void cascade_case(uint32_t remove_leaf, int where)
{
	struct rlfs_iext x = { 0 };
	struct model m = { calloc(MAXREC, sizeof(struct rlfs_irec)), 0 };
	g_x = &x;
	assert_non_null(m.a);
	build_full(&x, &m, 600);
	/* room in one leaf only: the removed record's */
	uint32_t k = remove_leaf == UINT32_MAX ? x.nleaves - 1 : remove_leaf;
	uint32_t ridx = x.first[k] + 3;
	rlfs_iext_remove(&x, ridx);
	model_remove(&m, ridx);
	assert_int_equal(x.nspare, 0);
	/* put it back elsewhere in order: a record ordered at the target */
	uint32_t idx;
	if (where == 0)
		idx = 5;                          /* in leaf 0: room only to the right */
	else if (where == 1)
		idx = m.n;                        /* at the end: room only to the left */
	else
		idx = x.first[x.nleaves - 1];     /* first of the last leaf, left room */
	/* the record at the target position is a new one (the model says
	 * where it goes); reinsert's contract is room, which the removal
	 * left */
	struct rlfs_irec r = rec_at(&m, idx);
	rlfs_iext_reinsert(&x, idx, &r);
	model_insert(&m, idx, &r);
	check(&x, &m);
	rlfs_iext_destroy(&x);
	free(m.a);
}

static void test_cascade(void **state)
{
	(void)state;
	cascade_case(UINT32_MAX, 0);    /* room in the last leaf, insert in the first */
	cascade_case(0, 1);             /* room in the first leaf, append at the end */
	cascade_case(0, 2);             /* ... insert at the last leaf's first slot */
	cascade_case(2, 0);
	cascade_case(1, 1);
}

/* Every reinsert position against every kind of removal: all leaves full
 * but the one a removal left room in (its first, second, middle or last
 * record), then a record put back at each index 0..count.  Covers the
 * cascades to the right and to the left from every position of a leaf,
 * including the first and last position of a full leaf and the end. */
static void test_cascade_all(void **state)
{
	(void)state;
	unsigned cases = 0;
	for (uint32_t rk = 0; rk < 4; rk++) {
		for (int rp = 0; rp < 4; rp++) {
			struct rlfs_iext x = { 0 };
			struct model m = { calloc(MAXREC, sizeof(struct rlfs_irec)), 0 };
			assert_non_null(m.a);
			g_x = &x;
			build_full(&x, &m, 400);
			uint32_t nrec = m.n;
			rlfs_iext_destroy(&x);
			free(m.a);
			for (uint32_t idx = 0; idx < nrec; idx++) {
				struct rlfs_iext y = { 0 };
				struct model n = { calloc(MAXREC, sizeof(struct rlfs_irec)), 0 };
				assert_non_null(n.a);
				g_x = &y;
				build_full(&y, &n, 400);
				uint32_t k = rk < y.nleaves ? rk : y.nleaves - 1;
				uint32_t ln = y.leaf[k]->n;
				uint32_t pos = rp == 0 ? 0 : rp == 1 ? 1 : rp == 2 ? ln / 2 : ln - 1;
				uint32_t ridx = y.first[k] + pos;
				rlfs_iext_remove(&y, ridx);
				model_remove(&n, ridx);
				assert_int_equal(y.nspare, 0);
				struct rlfs_irec r = rec_at(&n, idx);
				rlfs_iext_reinsert(&y, idx, &r);
				model_insert(&n, idx, &r);
				check(&y, &n);
				rlfs_iext_destroy(&y);
				free(n.a);
				cases++;
			}
		}
	}
	printf("# %u reinsert cases\n", cases);
}

/* Leaves and their room, active and spare: what a malloc would change. */
static uint64_t footprint(const struct rlfs_iext *x)
{
	uint64_t f = (uint64_t)(x->nleaves + x->nspare) << 32;
	for (uint32_t k = 0; k < x->nleaves; k++)
		f += x->leaf[k]->cap;
	for (const struct rlfs_iext_leaf *l = x->spare; l; l = l->next)
		f += l->cap;
	return f;
}

static void test_reserve(void **state)
{
	(void)state;
	struct rlfs_iext x = { 0 };
	struct model m = { calloc(MAXREC, sizeof(struct rlfs_irec)), 0 };
	g_x = &x;
	assert_non_null(m.a);
	unsigned splits = 0;
	for (int round = 0; round < 400; round++) {
		uint32_t more = 1 + (uint32_t)rnd(6);
		assert_int_equal(rlfs_iext_reserve(&x, more), 0);
		assert_true(x.nspare >= more);
		uint64_t before = footprint(&x);
		uint32_t leaves = x.nleaves;
		for (uint32_t i = 0; i < more; i++) {
			insert_both(&x, &m, (uint32_t)rnd(m.n + 1));
		}
		/* nothing allocated, grown or freed: spares became leaves */
		assert_true(footprint(&x) == before);
		splits += x.nleaves - leaves;
		check(&x, &m);
		rlfs_iext_trim(&x);
		check(&x, &m);
	}
	assert_true(splits > 5);
	rlfs_iext_destroy(&x);
	free(m.a);
}

static void test_trim(void **state)
{
	(void)state;
	struct rlfs_iext x = { 0 };
	struct model m = { calloc(MAXREC, sizeof(struct rlfs_irec)), 0 };
	g_x = &x;
	assert_non_null(m.a);
	for (uint32_t i = 0; i < 5000; i++)
		insert_both(&x, &m, (uint32_t)rnd(m.n + 1));
	uint32_t leaves = x.nleaves;
	assert_true(leaves >= 5000 / RLFS_IEXT_LEAF_RECS);
	/* keep every 20th record */
	for (uint32_t i = m.n; i-- > 0;) {
		if (i % 20) {
			rlfs_iext_remove(&x, i);
			model_remove(&m, i);
		}
	}
	check(&x, &m);
	rlfs_iext_trim(&x);
	check(&x, &m);
	assert_int_equal(x.nspare, 0);
	/* 250 records fit in a few leaves once thin neighbours merge */
	assert_true(x.nleaves <= 2 * (m.n / (RLFS_IEXT_LEAF_RECS / 2)) + 2);
	assert_true(x.nleaves < leaves / 4);
	while (m.n) {
		rlfs_iext_remove(&x, 0);
		model_remove(&m, 0);
	}
	check(&x, &m);
	assert_int_equal(x.nleaves, 0);
	rlfs_iext_trim(&x);
	rlfs_iext_destroy(&x);
	free(m.a);
}

int main(void)
{
	const char *s = getenv("RLFS_TEST_SEED");
	tu_seed(s ? strtoull(s, NULL, 0) : 4242);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_cascade),
		cmocka_unit_test(test_cascade_all),
		cmocka_unit_test(test_reserve),
		cmocka_unit_test(test_trim),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

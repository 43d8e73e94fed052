/*
 * test_fsck_claims.c: fsck's claim store (tools/fsck_claims.c) against a
 * plain in-memory model.  Random appends to a few buckets, marks and
 * rewinds (phase 3's tentative stretches), bucket clears, under caps from
 * 0 (every append spills) to one larger than everything: every bucket
 * loaded must hold exactly the model's records in append order (nothing
 * lost or duplicated by a spill, a run extended in the file, or a rewind
 * cutting spilled runs), and the in-memory bytes never pass the cap.
 * Then a spill file that cannot be made (TMPDIR missing): a clear sticky
 * error, never a crash.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "../../tools/fsck_claims.h"

#define NB 5
#define MAXREC 20000

struct rec {
	uint64_t seq;
	uint32_t bucket;
	uint32_t pad;
};

struct model {
	struct rec r[NB][MAXREC];
	size_t n[NB];
	size_t mark_n[NB];
	bool marked;
};

static uint64_t rng = 88172645463325252ull;
static uint64_t xr(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void check_all(struct fsck_claims *s, const struct model *m)
{
	size_t total = 0;

	for (uint32_t b = 0; b < NB; b++) {
		void *p;
		size_t n;

		assert_int_equal(fsck_claims_count(s, b), m->n[b]);
		assert_int_equal(fsck_claims_load(s, b, &p, &n), 0);
		assert_int_equal(n, m->n[b]);
		if (n)
			assert_memory_equal(p, m->r[b], n * sizeof(struct rec));
		free(p);
		total += n;
	}
	assert_int_equal(s->total, total);
}

static void run_model(size_t cap_bytes, unsigned nops)
{
	static struct model m;
	struct fsck_claims s;
	struct fsck_claims_mark mk = { 0 };
	uint64_t seq = 0;

	memset(&m, 0, sizeof(m));
	assert_int_equal(fsck_claims_init(&s, "test", sizeof(struct rec), NB, cap_bytes), 0);
	for (unsigned op = 0; op < nops; op++) {
		unsigned k = (unsigned)(xr() % 100);

		if (k < 85) {
			uint32_t b = (uint32_t)(xr() % NB);
			struct rec r = { .seq = ++seq, .bucket = b };

			if (m.n[b] == MAXREC)
				continue;
			assert_int_equal(fsck_claims_add(&s, b, &r), 0);
			m.r[b][m.n[b]++] = r;
			assert_true(s.mem_bytes <= (cap_bytes > sizeof(r) ? cap_bytes : sizeof(r)));
		} else if (k < 92) {
			fsck_claims_mark(&s, &mk);
			memcpy(m.mark_n, m.n, sizeof(m.n));
			m.marked = true;
		} else if (k < 97) {
			if (!m.marked)
				continue;
			assert_int_equal(fsck_claims_rewind(&s, &mk), 0);
			memcpy(m.n, m.mark_n, sizeof(m.n));
		} else if (k < 98) {
			uint32_t b = (uint32_t)(xr() % NB);

			fsck_claims_clear(&s, b);
			m.n[b] = 0;
			m.marked = false;   /* (a clear is not between mark and rewind) */
		} else {
			check_all(&s, &m);
		}
	}
	check_all(&s, &m);
	/* an old mark cannot be rewound to once a newer one exists */
	struct fsck_claims_mark old;
	fsck_claims_mark(&s, &old);
	fsck_claims_mark(&s, &mk);
	assert_int_equal(fsck_claims_rewind(&s, &old), -EINVAL);
	if (cap_bytes < 1000)
		assert_true(s.spilled_bytes > 0);
	if (cap_bytes >= (size_t)MAXREC * NB * sizeof(struct rec))
		assert_int_equal(s.spilled_bytes, 0);
	fsck_claims_destroy(&s);
}

static void test_store_caps(void **state)
{
	(void)state;
	run_model(0, 20000);
	run_model(sizeof(struct rec), 20000);
	run_model(100, 20000);
	run_model(4096, 40000);
	run_model((size_t)MAXREC * NB * sizeof(struct rec), 40000);
}

static void test_store_no_tmpdir(void **state)
{
	struct fsck_claims s;
	struct rec r = { .seq = 1 };
	char buf[512];
	void *p;
	size_t n;

	(void)state;
	setenv("TMPDIR", "/nonexistent-rlfs-dir", 1);
	assert_int_equal(fsck_claims_init(&s, "test", sizeof(r), 2, 0), 0);
	assert_int_equal(fsck_claims_add(&s, 0, &r), 0);      /* first: nothing to spill */
	assert_int_equal(fsck_claims_add(&s, 1, &r), -ENOENT); /* spill: no file */
	assert_int_equal(fsck_claims_add(&s, 1, &r), -ENOENT); /* sticky */
	assert_int_equal(fsck_claims_load(&s, 0, &p, &n), -ENOENT);
	assert_null(p);
	fsck_claims_strerror(&s, buf, sizeof(buf));
	assert_non_null(strstr(buf, "cannot create the spill file in /nonexistent-rlfs-dir"));
	assert_int_equal(fsck_claims_add(&s, 7, &r), -ENOENT);
	fsck_claims_destroy(&s);
	unsetenv("TMPDIR");
	/* a bucket out of range */
	assert_int_equal(fsck_claims_init(&s, "test", sizeof(r), 2, 1 << 20), 0);
	assert_int_equal(fsck_claims_add(&s, 2, &r), -EINVAL);
	assert_int_equal(fsck_claims_load(&s, 2, &p, &n), -EINVAL);
	fsck_claims_destroy(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_caps),
		cmocka_unit_test(test_store_no_tmpdir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_dedupe_tool.c: the bounded block-hash table and run growing of
 * `reflinkfs dedupe` (tools/dedupe_hash.c): lookups find what was
 * entered; a full table degrades by content sampling (k doubles, entries
 * outside the sample are gone, those inside still found, memory never
 * grows); a seed grows backwards and forwards to the longest run of equal
 * block hashes, stops at holes, at the floor and at either file's end, and
 * keeps a same-file source wholly before its destination.  The scan's
 * read-ahead (tools/dedupe_prefetch.c) hands out a descriptor of the right
 * file or none, never opens more than its window ahead of the scan, and
 * leaves no descriptor open after stopping.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../tools/dedupe.h"

static struct dd_hash hval(uint64_t v)
{
	/* a well-mixed key, as XXH3 gives */
	uint64_t x = v * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 29;
	struct dd_hash h = { x | 1, x * 0x94d049bb133111ebULL };
	return h;
}

/* ---- the scan's read-ahead ---- */

#define PF_FILES 600
struct pf_corpus {
	char *paths[PF_FILES];
	uint64_t sizes[PF_FILES];
	ino_t inos[PF_FILES];
	bool skip[PF_FILES];
};

static bool pf_get(void *arg, size_t i, const char **path, uint64_t *size_bytes)
{
	struct pf_corpus *k = arg;
	*path = k->paths[i];
	*size_bytes = k->sizes[i];
	return !k->skip[i];
}

/* Descriptors of this process open on files of dir. */
static int open_below(const char *dir)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		char lp[300], target[4096];
		snprintf(lp, sizeof(lp), "/proc/self/fd/%s", e->d_name);
		ssize_t l = readlink(lp, target, sizeof(target) - 1);
		if (l <= 0)
			continue;
		target[l] = 0;
		if (strncmp(target, dir, strlen(dir)) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static void test_prefetch(void **state)
{
	(void)state;
	char dir[] = "/tmp/rlfs-pf.XXXXXX";
	assert_non_null(mkdtemp(dir));
	static struct pf_corpus k;
	char buf[3 * 4096];
	memset(buf, 0x5a, sizeof(buf));
	for (int i = 0; i < PF_FILES; i++) {
		assert_true(asprintf(&k.paths[i], "%s/f%d", dir, i) > 0);
		/* every 7th file is missing (the prefetcher cannot open it), every
		 * 11th is not to be prefetched */
		k.sizes[i] = (uint64_t)(i % 3) * 4096 + 100;
		k.skip[i] = i % 11 == 5;
		if (i % 7 == 3)
			continue;
		int fd = open(k.paths[i], O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, buf, k.sizes[i]), (ssize_t)k.sizes[i]);
		struct stat st;
		assert_int_equal(fstat(fd, &st), 0);
		k.inos[i] = st.st_ino;
		close(fd);
	}
	struct dd_prefetch *p;
	assert_int_equal(dd_prefetch_start(&p, PF_FILES, 0, pf_get, &k), 0);
	assert_null(p);         /* no room for descriptors: nothing started */
	assert_int_equal(dd_prefetch_start(&p, PF_FILES, 128, pf_get, &k), 0);
	assert_non_null(p);
	int taken = 0;
	for (int i = 0; i < PF_FILES; i++) {
		/* the scan skips every 5th file without taking it */
		dd_prefetch_at(p, (size_t)i);
		if (i % 50 == 0)
			usleep(20000);  /* let the window fill */
		/* never more than the window (128 files) open ahead, plus one
		 * per thread (4) between its open and its check, plus the
		 * last one taken (closed) */
		assert_true(open_below(dir) <= 128 + 4 + 1);
		if (i % 5 == 4)
			continue;
		int fd = dd_prefetch_take(p, (size_t)i);
		if (fd < 0)
			continue;
		assert_false(k.skip[i]);
		assert_true(i % 7 != 3);
		struct stat st;
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_ino, k.inos[i]);
		/* taken once only */
		assert_int_equal(dd_prefetch_take(p, (size_t)i), -1);
		close(fd);
		taken++;
	}
	/* most files were opened ahead (the threads are not starved here) */
	assert_true(taken > PF_FILES / 4);
	dd_prefetch_stop(p);
	assert_int_equal(open_below(dir), 0);
	for (int i = 0; i < PF_FILES; i++) {
		unlink(k.paths[i]);
		free(k.paths[i]);
	}
	rmdir(dir);
}

static void test_hash_block(void **state)
{
	(void)state;
	char a[4096], b[4096];
	memset(a, 7, sizeof(a));
	memcpy(b, a, sizeof(b));
	struct dd_hash x = dd_hash_block(a, sizeof(a)), y = dd_hash_block(b, sizeof(b));
	assert_true(dd_hash_eq(&x, &y));
	assert_false(dd_hash_is_hole(&x));
	/* a partial tail differs from the full block of the same bytes */
	struct dd_hash t = dd_hash_block(a, 100);
	assert_false(dd_hash_eq(&x, &t));
	b[4095] ^= 1;
	y = dd_hash_block(b, sizeof(b));
	assert_false(dd_hash_eq(&x, &y));
}

static void test_table_basic(void **state)
{
	(void)state;
	struct dd_table t;
	assert_int_equal(dd_table_init(&t, 1 << 20, 0), 0);
	assert_int_equal(t.capacity, (1 << 20) / 32);   /* power of two that fits */
	struct dd_table small;
	assert_int_equal(dd_table_init(&small, 1 << 20, 3000), 0);
	assert_int_equal(small.capacity, 4096);         /* 3000 fit in 3/4 of 4096 */
	dd_table_free(&small);
	for (uint64_t i = 0; i < 1000; i++) {
		struct dd_hash k = hval(i);
		assert_int_equal(dd_table_insert(&t, &k, (uint32_t)(i % 7), i), 0);
	}
	assert_int_equal(t.used, 1000);
	for (uint64_t i = 0; i < 1000; i++) {
		struct dd_hash k = hval(i);
		struct dd_table_entry *e = dd_table_lookup(&t, &k);
		assert_non_null(e);
		assert_int_equal(e->blk1 - 1, i);
		assert_int_equal(e->file, i % 7);
	}
	struct dd_hash miss = hval(5000);
	assert_null(dd_table_lookup(&t, &miss));
	/* replacing keeps one entry */
	struct dd_hash k3 = hval(3);
	assert_int_equal(dd_table_insert(&t, &k3, 9, 99), 0);
	assert_int_equal(t.used, 1000);
	assert_int_equal(dd_table_lookup(&t, &k3)->blk1 - 1, 99);
	/* a block index that does not fit is refused */
	struct dd_hash kb = hval(6000);
	assert_int_equal(dd_table_insert(&t, &kb, 0, (uint64_t)UINT32_MAX), 1);
	/* the device is part of the key */
	struct dd_hash a = dd_table_key(&k3, 1), b = dd_table_key(&k3, 2);
	assert_false(dd_hash_eq(&a, &b));
	dd_table_free(&t);
}

static void test_table_degrade(void **state)
{
	(void)state;
	struct dd_table t;
	assert_int_equal(dd_table_init(&t, 1024 * 32, 0), 0);     /* 1024 entries */
	assert_int_equal(t.capacity, 1024);
	struct dd_table_entry *slot = t.slot;
	const uint64_t n = 20000;
	for (uint64_t i = 0; i < n; i++) {
		struct dd_hash k = hval(i);
		dd_table_insert(&t, &k, 1, i);
		assert_true(t.used * 4 <= t.capacity * 3);
	}
	assert_ptr_equal(t.slot, slot);          /* never reallocated */
	assert_true(t.sample_k >= 16);           /* 20000 keys in 768 entries */
	assert_true(t.degrades >= 4);
	/* every entry is in the sample and findable; every sampled key of the
	 * last half (inserted after the last degrade could drop them only by
	 * sampling) is either present or outside the sample */
	uint64_t found = 0, sampled = 0;
	for (uint64_t i = 0; i < n; i++) {
		struct dd_hash k = hval(i);
		struct dd_table_entry *e = dd_table_lookup(&t, &k);
		if (dd_table_sampled(&t, &k))
			sampled++;
		else
			assert_null(e);
		if (e) {
			assert_int_equal(e->blk1 - 1, i);
			found++;
		}
	}
	assert_int_equal(found, t.used);
	/* all sampled keys are kept: the sample of 20000 fits */
	assert_int_equal(found, sampled);
	for (uint64_t i = 0; i < t.capacity; i++)
		if (t.slot[i].blk1 != 0)
			assert_int_equal(t.slot[i].key_hi & (t.sample_k - 1), 0);
	dd_table_free(&t);
}

/* Two "files" of block hashes; 0 = hole. */
struct files2 {
	const uint64_t *f[2];
	uint64_t n[2];
	int calls;
};

static int get2(void *priv, int side, uint64_t blk, struct dd_hash *out)
{
	struct files2 *p = priv;
	p->calls++;
	if (blk >= p->n[side])
		return -ERANGE;
	uint64_t v = p->f[side][blk];
	if (v == 0)
		memset(out, 0, sizeof(*out));
	else
		*out = hval(v);
	return 0;
}

/* The table starts small and doubles as distinct blocks arrive, up to the
 * memory cap, without sampling; at the cap it samples. */
static void test_table_growth(void **state)
{
	(void)state;
	struct dd_table t;
	assert_int_equal(dd_table_init(&t, 64u << 20, 0), 0);
	assert_int_equal(t.capacity, DD_TABLE_START);
	assert_true(t.max_capacity > 4 * DD_TABLE_START);
	const uint64_t n = 3 * DD_TABLE_START;
	for (uint64_t i = 0; i < n; i++) {
		struct dd_hash k = hval(i);
		assert_int_equal(dd_table_insert(&t, &k, (uint32_t)(i % 5), i), 0);
	}
	assert_int_equal(t.used, n);
	assert_int_equal(t.sample_k, 1);
	assert_true(t.capacity >= n * 4 / 3 && t.capacity <= t.max_capacity);
	for (uint64_t i = 0; i < n; i++) {
		struct dd_hash k = hval(i);
		struct dd_table_entry *e = dd_table_lookup(&t, &k);
		assert_non_null(e);
		assert_int_equal(e->blk1 - 1, i);
	}
	dd_table_free(&t);
	/* capped at 2 * START entries: grows once, then samples */
	assert_int_equal(dd_table_init(&t, 2 * DD_TABLE_START * DD_TABLE_ENTRY_BYTES, 0), 0);
	for (uint64_t i = 0; i < n; i++) {
		struct dd_hash k = hval(i);
		(void)dd_table_insert(&t, &k, 0, i);
	}
	assert_int_equal(t.capacity, 2 * DD_TABLE_START);
	assert_true(t.sample_k > 1);
	dd_table_free(&t);
}

/* The cache of shared device blocks: keyed by device and address, a
 * replaced value wins, nothing before the first put, full at 3/4. */
static void test_pcache(void **state)
{
	(void)state;
	struct dd_pcache pc;
	struct dd_hash h, a = { 1, 2 }, b = { 3, 4 };
	dd_pcache_init(&pc, 64 * 1024);
	assert_false(dd_pcache_get(&pc, 7, 4096, &h));
	dd_pcache_put(&pc, 7, 4096, &a);
	assert_true(dd_pcache_get(&pc, 7, 4096, &h));
	assert_true(dd_hash_eq(&h, &a));
	assert_false(dd_pcache_get(&pc, 8, 4096, &h));   /* another device */
	assert_false(dd_pcache_get(&pc, 7, 8192, &h));
	dd_pcache_put(&pc, 7, 4096, &b);
	assert_true(dd_pcache_get(&pc, 7, 4096, &h));
	assert_true(dd_hash_eq(&h, &b));
	assert_int_equal(pc.capacity, 2048);   /* 64 KiB of 32-byte entries */
	for (uint64_t i = 1; i <= 2 * pc.capacity; i++)
		dd_pcache_put(&pc, 9, i * 4096, &a);
	assert_int_equal(pc.used, pc.capacity / 4 * 3);
	assert_true(dd_pcache_get(&pc, 9, 4096, &h));
	assert_false(dd_pcache_get(&pc, 9, 2 * pc.capacity * 4096, &h));
	dd_pcache_free(&pc);
}

static void test_grow(void **state)
{
	(void)state;
	/* dst shares 4 5 6 7 with src shifted by two blocks; a hole in src
	 * after it; dst block 0 equals src block 0 but is below the floor */
	static const uint64_t dst[] = { 1, 9, 4, 5, 6, 7, 8, 30 };
	static const uint64_t src[] = { 1, 3, 2, 2, 4, 5, 6, 7, 0, 31 };
	struct files2 p = { { dst, src }, { 8, 10 }, 0 };
	struct dd_run r;
	assert_int_equal(dd_grow_run(get2, &p, 4, 6, 0, 8, 10, false, &r), 0);
	assert_int_equal(r.dst_blk, 2);
	assert_int_equal(r.src_blk, 4);
	assert_int_equal(r.nblocks, 4);
	/* the floor stops the backward growth */
	assert_int_equal(dd_grow_run(get2, &p, 4, 6, 3, 8, 10, false, &r), 0);
	assert_int_equal(r.dst_blk, 3);
	assert_int_equal(r.nblocks, 3);
	/* a seed that does not match */
	assert_int_equal(dd_grow_run(get2, &p, 1, 1, 0, 8, 10, false, &r), -EINVAL);
	/* a seed below the floor or past the end */
	assert_int_equal(dd_grow_run(get2, &p, 2, 4, 3, 8, 10, false, &r), -EINVAL);
	assert_int_equal(dd_grow_run(get2, &p, 8, 4, 0, 8, 10, false, &r), -EINVAL);

	/* runs to both ends */
	static const uint64_t a[] = { 11, 12, 13, 14 }, b[] = { 11, 12, 13, 14 };
	struct files2 q = { { a, b }, { 4, 4 }, 0 };
	assert_int_equal(dd_grow_run(get2, &q, 2, 2, 0, 4, 4, false, &r), 0);
	assert_int_equal(r.dst_blk, 0);
	assert_int_equal(r.nblocks, 4);

	/* holes match nothing, even hole against hole */
	static const uint64_t h1[] = { 11, 0, 13 }, h2[] = { 11, 0, 13 };
	struct files2 hh = { { h1, h2 }, { 3, 3 }, 0 };
	assert_int_equal(dd_grow_run(get2, &hh, 0, 0, 0, 3, 3, false, &r), 0);
	assert_int_equal(r.nblocks, 1);
	assert_int_equal(dd_grow_run(get2, &hh, 1, 1, 0, 3, 3, false, &r), -EINVAL);
}

static void test_grow_same_file(void **state)
{
	(void)state;
	/* one file: 1 2 3 1 2 3 1 2 3 — source must end before the destination */
	static const uint64_t f[] = { 1, 2, 3, 1, 2, 3, 1, 2, 3 };
	struct files2 p = { { f, f }, { 9, 9 }, 0 };
	struct dd_run r;
	assert_int_equal(dd_grow_run(get2, &p, 3, 0, 0, 9, 9, true, &r), 0);
	assert_int_equal(r.src_blk, 0);
	assert_int_equal(r.dst_blk, 3);
	assert_int_equal(r.nblocks, 3);
	assert_true(r.src_blk + r.nblocks <= r.dst_blk);
	/* seed 7 ~ 4: grows back to 6 ~ 3? src [3,6) dst [6,9) */
	assert_int_equal(dd_grow_run(get2, &p, 7, 4, 0, 9, 9, true, &r), 0);
	assert_true(r.src_blk + r.nblocks <= r.dst_blk);
	assert_int_equal(r.nblocks, 3);
	/* a same-file seed with the source after the destination is refused */
	assert_int_equal(dd_grow_run(get2, &p, 0, 3, 0, 9, 9, true, &r), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prefetch),
		cmocka_unit_test(test_hash_block),
		cmocka_unit_test(test_table_basic),
		cmocka_unit_test(test_table_degrade),
		cmocka_unit_test(test_table_growth),
		cmocka_unit_test(test_pcache),
		cmocka_unit_test(test_grow),
		cmocka_unit_test(test_grow_same_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

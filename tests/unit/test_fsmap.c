/*
 * test_fsmap.c: GETFSMAP (lib/fsmap.c, issue 11 section 2) on a populated
 * RMAP + REFLINK image (files, a clone and CoW writes into it so blocks
 * are shared and shared extents overlap partly, fallocate for unwritten
 * extents, remote xattrs, a 300-extent file with a bmbt):
 *  (a) the records tile the device exactly: every block covered, only
 *      shared file data covered more than once, and those records carry
 *      FMR_OF_SHARED (data records without it map no shared block);
 *      unwritten, attr-fork, extent-map and log records appear;
 *  (b) the FMR_OWN_FREE lengths add up to the AGs' free-space counters
 *      and, with the AGFL blocks (OWN_AG in the rmap), to statfs f_bfree;
 *  (c) the iteration protocol (fsmap_head with 1, 2, 3, 5 records per
 *      call, the last record copied into the low key) returns exactly the
 *      records of one big call, FMR_OF_LAST on the very last only, and
 *      fmh_count 0 counts them;
 *  (d) low/high keys in the middle of the device (aligned and not)
 *      return exactly the records overlapping the range, free space
 *      clipped to it; a fresh low key at a record's block with a higher
 *      owner never reports a used block as free;
 *  (e) invalid arguments give -EINVAL; no rmap btree gives -EOPNOTSUPP.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "trans.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/fsmap.h"

#define MiB (1024ull * 1024)
#define DEV 0x1234u

struct recs {
	size_t n, cap;
	struct fsmap *r;
};

static int collect(const struct fsmap *rec, void *priv)
{
	struct recs *rs = priv;
	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? 2 * rs->cap : 256;
		rs->r = realloc(rs->r, rs->cap * sizeof(*rs->r));
		assert_non_null(rs->r);
	}
	rs->r[rs->n++] = *rec;
	return 0;
}

static void all_keys(struct fsmap *lo, struct fsmap *hi)
{
	memset(lo, 0, sizeof(*lo));
	memset(hi, 0xff, sizeof(*hi));
	memset(hi->fmr_reserved, 0, sizeof(hi->fmr_reserved));
	hi->fmr_length = 0;
}

static void image(char *path, size_t len, const char *tag)
{
	snprintf(path, len, "/tmp/rlfs-fsmap-%d-%s.img", (int)getpid(), tag);
}

static void populate(struct rlfs_mount *mp)
{
	char blk[4096];
	struct stat st;
	uint64_t root = rlfs_root_ino(mp);
	memset(blk, 'a', sizeof(blk));
	/* big: one 64-block extent (written in one call, before the
	 * interleaved writes of frag) */
	char *b64 = malloc(64 * 4096);
	assert_non_null(b64);
	memset(b64, 'b', 64 * 4096);
	assert_int_equal(rlfs_mknod(mp, root, "big", S_IFREG | 0644, 0, 0, 0, &st), 0);
	uint64_t big = st.st_ino;
	assert_int_equal(rlfs_write(mp, big, b64, 64 * 4096, 0), 64 * 4096);
	free(b64);
	assert_int_equal(rlfs_mknod(mp, root, "u", S_IFREG | 0644, 0, 0, 0, &st), 0);
	assert_int_equal(rlfs_fallocate(mp, st.st_ino, 0, 0, 8 * 4096), 0);
	assert_int_equal(rlfs_mknod(mp, root, "x", S_IFREG | 0644, 0, 0, 0, &st), 0);
	uint64_t x = st.st_ino;
	tu_big_xattrs(mp, x, 6, 3000);
	uint64_t frag = tu_frag_file(mp, "frag", 300);
	/* a clone of big, CoW into its middle: big's record spans the
	 * clone's two pieces; and a clone of part of frag */
	assert_int_equal(rlfs_mknod(mp, root, "clone", S_IFREG | 0644, 0, 0, 0, &st), 0);
	uint64_t cl = st.st_ino;
	assert_int_equal(rlfs_clone_range(mp, big, 0, cl, 0, 64 * 4096, 0), 64 * 4096);
	memset(blk, 'c', sizeof(blk));
	for (int i = 10; i < 64; i += 20)
		assert_int_equal(rlfs_write(mp, cl, blk, sizeof(blk), (off_t)i * 4096),
				 (ssize_t)sizeof(blk));
	assert_int_equal(rlfs_mknod(mp, root, "fclone", S_IFREG | 0644, 0, 0, 0, &st), 0);
	assert_int_equal(rlfs_clone_range(mp, frag, 0, st.st_ino, 0, 100 * 4096, 0), 100 * 4096);
}

static bool same(const struct fsmap *a, const struct fsmap *b)
{
	return a->fmr_device == b->fmr_device && a->fmr_flags == b->fmr_flags &&
	       a->fmr_physical == b->fmr_physical && a->fmr_owner == b->fmr_owner &&
	       a->fmr_offset == b->fmr_offset && a->fmr_length == b->fmr_length;
}

static void assert_same_list(const struct fsmap *a, size_t na, const struct fsmap *b, size_t nb)
{
	for (size_t i = 0; i < na && i < nb; i++)
		if (!same(&a[i], &b[i]))
			fail_msg("record %zu differs: phys %llu owner %llx len %llu flags %x vs "
				 "phys %llu owner %llx len %llu flags %x", i,
				 (unsigned long long)a[i].fmr_physical,
				 (unsigned long long)a[i].fmr_owner,
				 (unsigned long long)a[i].fmr_length, a[i].fmr_flags,
				 (unsigned long long)b[i].fmr_physical,
				 (unsigned long long)b[i].fmr_owner,
				 (unsigned long long)b[i].fmr_length, b[i].fmr_flags);
	assert_int_equal(na, nb);
}

/* (a) and (b) */
static void check_tiling(struct rlfs_mount *mp, const struct recs *rs)
{
	uint64_t nblocks = mp->dblocks, bs = mp->blocksize;
	unsigned *cnt = calloc(nblocks, sizeof(*cnt));
	assert_non_null(cnt);
	uint64_t free_bytes = 0, prev = 0;
	unsigned seen = 0;
	for (size_t i = 0; i < rs->n; i++) {
		const struct fsmap *f = &rs->r[i];
		assert_int_equal(f->fmr_device, DEV);
		assert_true(f->fmr_physical >= prev);          /* sorted */
		prev = f->fmr_physical;
		assert_int_equal(f->fmr_physical % bs, 0);
		assert_int_equal(f->fmr_length % bs, 0);
		assert_true(f->fmr_length > 0);
		assert_true(f->fmr_physical + f->fmr_length <= nblocks * bs);
		for (uint64_t b = f->fmr_physical / bs; b < (f->fmr_physical + f->fmr_length) / bs; b++)
			cnt[b]++;
		if (f->fmr_flags & FMR_OF_SPECIAL_OWNER) {
			assert_int_equal(f->fmr_offset, 0);
			assert_int_equal(f->fmr_flags, FMR_OF_SPECIAL_OWNER);
			if (f->fmr_owner == RLFS_FMR_OWN_FREE)
				free_bytes += f->fmr_length;
			if (f->fmr_owner == RLFS_FMR_OWN_LOG)
				seen |= 1;
		}
		if (f->fmr_flags & FMR_OF_PREALLOC)
			seen |= 2;
		if (f->fmr_flags & FMR_OF_ATTR_FORK)
			seen |= 4;
		if (f->fmr_flags & FMR_OF_EXTENT_MAP)
			seen |= 8;
		if (f->fmr_flags & FMR_OF_SHARED)
			seen |= 16;
		assert_false(f->fmr_flags & FMR_OF_LAST);
	}
	assert_int_equal(seen, 31);
	for (uint64_t b = 0; b < nblocks; b++)
		if (cnt[b] == 0)
			fail_msg("block %llu not covered", (unsigned long long)b);
	/* only shared file data overlaps, and SHARED is exact per record */
	for (size_t i = 0; i < rs->n; i++) {
		const struct fsmap *f = &rs->r[i];
		unsigned maxc = 0;
		for (uint64_t b = f->fmr_physical / bs; b < (f->fmr_physical + f->fmr_length) / bs; b++)
			maxc = cnt[b] > maxc ? cnt[b] : maxc;
		if (maxc > 1 && !(f->fmr_flags & FMR_OF_SHARED))
			fail_msg("record at %llu owner %llx flags %x overlaps another, not SHARED",
				 (unsigned long long)f->fmr_physical,
				 (unsigned long long)f->fmr_owner, f->fmr_flags);
		if (maxc == 1 && (f->fmr_flags & FMR_OF_SHARED))
			fail_msg("record at %llu SHARED but alone", (unsigned long long)f->fmr_physical);
	}
	free(cnt);
	/* (b) free space: the AGs' bnobt counters; statfs adds the AGFL and
	 * takes away the per-AG set-aside (rlfs_mount: never free for files) */
	struct rlfs_trans *tp;
	uint64_t freeblks = 0, flcount = 0;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp), 0);
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		struct rlfs_buf *agbp;
		assert_int_equal(rlfs_ag_read_header(tp, agno, &agbp), 0);
		freeblks += rlfs_get32(rlfs_agh(agbp)->freeblks);
		flcount += rlfs_get32(rlfs_agh(agbp)->flcount);
		rlfs_trans_brelse(tp, agbp);
	}
	rlfs_trans_cancel(tp);
	assert_int_equal(free_bytes, freeblks * bs);
	struct statvfs sv;
	assert_int_equal(rlfs_statfs(mp, &sv), 0);
	assert_int_equal(free_bytes / bs + flcount - mp->setaside, sv.f_bfree);
}

/* (c) fsmap_head calls of `per` records, the last becoming the low key */
static void check_iteration(struct rlfs_mount *mp, const struct recs *all, unsigned per)
{
	struct fsmap_head *h = calloc(1, sizeof(*h) + per * sizeof(struct fsmap));
	assert_non_null(h);
	struct recs got = { 0 };
	all_keys(&h->fmh_keys[0], &h->fmh_keys[1]);
	h->fmh_keys[0].fmr_device = DEV;
	unsigned calls = 0;
	for (;;) {
		h->fmh_count = per;
		assert_int_equal(rlfs_getfsmap_head(mp, DEV, h), 0);
		assert_int_equal(h->fmh_oflags, FMH_OF_DEV_T);
		assert_true(h->fmh_entries <= per);
		calls++;
		if (h->fmh_entries == 0)
			break;
		for (unsigned i = 0; i < h->fmh_entries; i++) {
			struct fsmap r = h->fmh_recs[i];
			bool last = r.fmr_flags & FMR_OF_LAST;
			if (last)
				assert_int_equal(i, h->fmh_entries - 1);
			r.fmr_flags &= ~FMR_OF_LAST;
			collect(&r, &got);
		}
		if (h->fmh_recs[h->fmh_entries - 1].fmr_flags & FMR_OF_LAST)
			break;
		assert_int_equal(h->fmh_entries, per);
		if (got.n > all->n)     /* repeating itself: it would never end */
			fail_msg("%u per call: more than the %zu records of one call", per, all->n);
		h->fmh_keys[0] = h->fmh_recs[h->fmh_entries - 1];
	}
	assert_same_list(got.r, got.n, all->r, all->n);
	assert_true(calls >= all->n / per);
	free(got.r);
	free(h);
}

/* (d) the records a [lo, hi] query should give, from the full list */
static void check_range(struct rlfs_mount *mp, const struct recs *all, uint64_t lo, uint64_t hi)
{
	uint64_t bs = mp->blocksize, lob = lo / bs * bs, hend = (hi / bs + 1) * bs;
	struct recs want = { 0 }, got = { 0 };
	for (size_t i = 0; i < all->n; i++) {
		struct fsmap f = all->r[i];
		uint64_t end = f.fmr_physical + f.fmr_length;
		if (f.fmr_owner == RLFS_FMR_OWN_FREE && (f.fmr_flags & FMR_OF_SPECIAL_OWNER)) {
			uint64_t s = f.fmr_physical > lo ? f.fmr_physical : lo;
			uint64_t e = end < hend ? end : hend;
			if (s >= e)
				continue;
			f.fmr_physical = s;
			f.fmr_length = e - s;
		} else if (end <= lob || f.fmr_physical >= hend) {
			continue;
		}
		collect(&f, &want);
	}
	struct fsmap k[2];
	all_keys(&k[0], &k[1]);
	k[0].fmr_physical = lo;
	k[1].fmr_physical = hi;
	assert_int_equal(rlfs_getfsmap(mp, DEV, &k[0], &k[1], 0, collect, &got), 0);
	assert_true(want.n > 0);
	assert_same_list(got.r, got.n, want.r, want.n);
	free(want.r);
	free(got.r);
}

/* (d) fresh queries (fmr_length 0) starting at a record's block with a
 * higher owner than the record's: whatever is left out, free space is
 * never claimed on a used block */
static void check_fresh_owner_keys(struct rlfs_mount *mp, const struct recs *all)
{
	uint64_t bs = mp->blocksize, nblocks = mp->dblocks;
	bool *used = calloc(nblocks, sizeof(*used));
	assert_non_null(used);
	for (size_t i = 0; i < all->n; i++)
		if (!(all->r[i].fmr_flags & FMR_OF_SPECIAL_OWNER) ||
		    all->r[i].fmr_owner != RLFS_FMR_OWN_FREE)
			for (uint64_t b = all->r[i].fmr_physical / bs;
			     b < (all->r[i].fmr_physical + all->r[i].fmr_length) / bs; b++)
				used[b] = true;
	unsigned tried = 0;
	for (size_t i = 0; i < all->n; i++) {
		const struct fsmap *x = &all->r[i];
		if (x->fmr_flags & FMR_OF_SPECIAL_OWNER)
			continue;
		struct fsmap k[2];
		struct recs got = { 0 };
		all_keys(&k[0], &k[1]);
		k[0].fmr_physical = x->fmr_physical;
		k[0].fmr_owner = x->fmr_owner + 1;
		assert_int_equal(rlfs_getfsmap(mp, DEV, &k[0], &k[1], 0, collect, &got), 0);
		for (size_t j = 0; j < got.n; j++) {
			const struct fsmap *f = &got.r[j];
			if (!(f->fmr_flags & FMR_OF_SPECIAL_OWNER) || f->fmr_owner != RLFS_FMR_OWN_FREE)
				continue;
			for (uint64_t b = f->fmr_physical / bs;
			     b < (f->fmr_physical + f->fmr_length + bs - 1) / bs; b++)
				if (used[b])
					fail_msg("low key (%llu, owner %llu): block %llu reported free",
						 (unsigned long long)k[0].fmr_physical,
						 (unsigned long long)k[0].fmr_owner,
						 (unsigned long long)b);
		}
		free(got.r);
		tried++;
	}
	assert_true(tried > 100);
	free(used);
}

static int stop_after(const struct fsmap *rec, void *priv)
{
	(void)rec;
	return --*(int *)priv == 0 ? 7 : 0;
}

/* (e) */
static void check_invalid(struct rlfs_mount *mp)
{
	struct fsmap lo, hi, l2, h2;
	struct recs rs = { 0 };
	all_keys(&lo, &hi);
#define BAD(mod)                                                                     \
	do {                                                                         \
		l2 = lo;                                                             \
		h2 = hi;                                                             \
		mod;                                                                 \
		assert_int_equal(rlfs_getfsmap(mp, DEV, &l2, &h2, 0, collect, &rs), -EINVAL); \
	} while (0)
	BAD(l2.fmr_reserved[0] = 1);
	BAD(h2.fmr_reserved[2] = 1);
	BAD((l2.fmr_physical = 8192, h2 = l2));                              /* low == high */
	BAD((l2.fmr_physical = 8192, h2 = l2, h2.fmr_physical = 4096));      /* low > high */
	BAD(h2.fmr_length = 4096);
	BAD((l2.fmr_flags = FMR_OF_SPECIAL_OWNER, l2.fmr_offset = 4096));
	BAD((l2.fmr_flags = FMR_OF_EXTENT_MAP, l2.fmr_offset = 4096));
	BAD((l2.fmr_flags = FMR_OF_SPECIAL_OWNER, l2.fmr_owner = FMR_OWN_METADATA));
	BAD((l2.fmr_flags = FMR_OF_SPECIAL_OWNER, l2.fmr_owner = RLFS_FMR_OWN_DEFECTIVE));
	BAD(l2.fmr_device = 77);
	BAD(h2.fmr_device = 77);
#undef BAD
	assert_int_equal(rlfs_getfsmap(mp, DEV, &lo, &hi, 1, collect, &rs), -EINVAL);
	assert_int_equal(rs.n, 0);
	struct fsmap_head *h = calloc(1, sizeof(*h) + 4 * sizeof(struct fsmap));
	assert_non_null(h);
	all_keys(&h->fmh_keys[0], &h->fmh_keys[1]);
	h->fmh_count = 4;
	h->fmh_reserved[5] = 1;
	assert_int_equal(rlfs_getfsmap_head(mp, DEV, h), -EINVAL);
	h->fmh_reserved[5] = 0;
	h->fmh_iflags = 2;
	assert_int_equal(rlfs_getfsmap_head(mp, DEV, h), -EINVAL);
	free(h);
	/* the callback's stop value comes back; a device of 0 or ~0 is fine */
	int left = 3;
	lo.fmr_device = UINT32_MAX;
	assert_int_equal(rlfs_getfsmap(mp, DEV, &lo, &hi, 0, stop_after, &left), 7);
}

static void test_fsmap(void **state)
{
	(void)state;
	char path[96];
	struct rlfs_mount *mp;
	image(path, sizeof(path), "pop");
	struct rlfs_mkfs_opts o = { .size_bytes = 64 * MiB, .agcount = 4, .force = 1,
				    .reflink = 1, .rmapbt = 1 };
	unlink(path);
	assert_int_equal(rlfs_mkfs(path, &o), 0);
	assert_int_equal(rlfs_mount_open(path, RLFS_MOUNT_NOLOCK, &mp), 0);
	populate(mp);
	for (int pass = 0; pass < 2; pass++) {
		/* pass 0: the live read-write mount; pass 1: read-only, after
		 * a clean unmount */
		struct fsmap lo, hi;
		struct recs all = { 0 };
		all_keys(&lo, &hi);
		assert_int_equal(rlfs_getfsmap(mp, DEV, &lo, &hi, 0, collect, &all), 0);
		check_tiling(mp, &all);
		/* one big call: the same records, FMR_OF_LAST on the last */
		struct fsmap_head *h = calloc(1, sizeof(*h) + (all.n + 5) * sizeof(struct fsmap));
		assert_non_null(h);
		all_keys(&h->fmh_keys[0], &h->fmh_keys[1]);
		assert_int_equal(rlfs_getfsmap_head(mp, DEV, h), 0);     /* count 0: counting */
		assert_int_equal(h->fmh_entries, all.n);
		h->fmh_count = (uint32_t)all.n + 5;
		assert_int_equal(rlfs_getfsmap_head(mp, DEV, h), 0);
		assert_int_equal(h->fmh_entries, all.n);
		assert_true(h->fmh_recs[all.n - 1].fmr_flags & FMR_OF_LAST);
		h->fmh_recs[all.n - 1].fmr_flags &= ~FMR_OF_LAST;
		assert_same_list(h->fmh_recs, h->fmh_entries, all.r, all.n);
		free(h);
		for (unsigned per = 1; per <= 5; per += per == 3 ? 2 : 1)
			check_iteration(mp, &all, per);
		uint64_t dev = mp->dblocks * mp->blocksize;
		for (int i = 1; i < 12; i++) {
			uint64_t lo_b = dev / 13 * i + (i % 2 ? 0 : 777), len = dev / 9 + i * 4096;
			uint64_t hi_b = lo_b + len < dev ? lo_b + len : dev - 1;
			check_range(mp, &all, lo_b, hi_b);
		}
		/* every record's own range, and from its middle to its end */
		for (size_t i = 0; i < all.n; i += 7) {
			check_range(mp, &all, all.r[i].fmr_physical,
				    all.r[i].fmr_physical + all.r[i].fmr_length - 1);
			check_range(mp, &all, all.r[i].fmr_physical + all.r[i].fmr_length / 2,
				    dev + 12345);
		}
		check_fresh_owner_keys(mp, &all);
		check_invalid(mp);
		free(all.r);
		assert_int_equal(rlfs_mount_close(mp), 0);
		if (pass == 0) {
			assert_int_equal(tu_fsck(path, 0), 0);
			assert_int_equal(rlfs_mount_open(path, RLFS_MOUNT_RDONLY | RLFS_MOUNT_NOLOCK,
							 &mp), 0);
		}
	}
	unlink(path);
}

static void test_no_rmap(void **state)
{
	(void)state;
	char path[96];
	struct rlfs_mount *mp;
	struct fsmap lo, hi;
	struct recs rs = { 0 };
	image(path, sizeof(path), "normap");
	struct rlfs_mkfs_opts o = { .size_bytes = 32 * MiB, .force = 1, .rmapbt = -1 };
	unlink(path);
	assert_int_equal(rlfs_mkfs(path, &o), 0);
	assert_int_equal(rlfs_mount_open(path, RLFS_MOUNT_NOLOCK, &mp), 0);
	all_keys(&lo, &hi);
	assert_int_equal(rlfs_getfsmap(mp, 0, &lo, &hi, 0, collect, &rs), -EOPNOTSUPP);
	assert_int_equal(rs.n, 0);
	assert_int_equal(rlfs_mount_close(mp), 0);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fsmap),
		cmocka_unit_test(test_no_rmap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

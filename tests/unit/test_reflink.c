/*
 * test_reflink.c: clone range, copy-on-write, unshare and the extent
 * listing (lib/reflink.c, the CoW paths of lib/file.c), in process.
 *
 * Our versions of the fstests clone cases: generic/110 (clone then modify
 * both copies), 142 (many clones each rewritten), 150/151 (space use after
 * clone and delete), 157 (bad calls and their errnos), 181/182 (length 0),
 * 515/517/518 (EOF blocks), 358/359 (partially overlapping sharing), clone
 * onto self, unshare, punch/zero/truncate of shared ranges, ENOSPC in the
 * middle of a clone and of a CoW write, a 20,000-extent clone, and an
 * fsx-style random run against an in-memory model of several files.
 *
 * After most steps check_fs() verifies: every file's contents equal the
 * model; for every block the refcount btree says exactly the number of
 * data-fork mappings across all files (records == maximal runs of equal
 * count >= 2, no staging records left); no mapped block is free;
 * rlfs_btree_check of the refcount and free-space trees; rlfs_bmap_check
 * of every file.  `reflinkfs fsck -n` (the binary next to this test, in
 * the build directory, or RLFS_TEST_FSCK; missing = failure) runs on the
 * image at the end of each test too.  Seed: RLFS_TEST_SEED.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "alloc.h"
#include "bmap.h"
#include "dev.h"
#include "inode.h"
#include "refcount.h"
#include "rmap.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/ioctl.h"

#define MB (1024ull * 1024)

static void seed_from_env(void)
{
	const char *s = getenv("RLFS_TEST_SEED");
	tu_seed(s ? strtoull(s, NULL, 0) : 1337);
}

static uint64_t rnd(uint64_t n)
{
	return n ? tu_rand() % n : 0;
}

/* ------------------------------------------------------------------ */
/* Files and their model                                               */

#include "filemodel.h"

static void rmfile(struct ctx *c, int i)
{
	assert_int_equal(rlfs_unlink(MP(c), rlfs_root_ino(MP(c)), c->f[i].name), 0);
	free(c->f[i].data);
	c->f[i] = c->f[--c->nf];
}


static uint64_t bfree(struct ctx *c)
{
	struct statvfs sv;
	assert_int_equal(rlfs_statfs(MP(c), &sv), 0);
	return sv.f_bfree;
}

/* blocks an ordinary (non-reserve) transaction can still get */
static uint64_t bavail(struct ctx *c)
{
	struct statvfs sv;
	assert_int_equal(rlfs_statfs(MP(c), &sv), 0);
	return sv.f_bavail;
}

static uint32_t nshared_extents(struct ctx *c, int i, uint32_t *nunshared)
{
	struct rlfs_ioc_extent ext[512];
	uint32_t n, sh = 0, un = 0;
	assert_int_equal(rlfs_get_extents(MP(c), c->f[i].ino, 0, ~0ull, ext, 512, &n), 0);
	for (uint32_t k = 0; k < n; k++) {
		if (ext[k].flags & RLFS_IOC_EXT_SHARED)
			sh++;
		else
			un++;
	}
	if (nunshared)
		*nunshared = un;
	return sh;
}

/* ------------------------------------------------------------------ */
/* generic/110: clone, then modify both copies                          */

static void test_clone_modify(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b");
	do_write(&c, a, 0, 64 * 4096 + 1000, 1);
	uint64_t free0 = bfree(&c);
	do_clone(&c, a, 0, b, 0, 0);
	uint64_t free1 = bfree(&c);
	assert_true(free0 - free1 <= 4); /* shared blocks counted once */
	check_fs(&c);
	uint32_t un;
	assert_true(nshared_extents(&c, a, &un) >= 1);
	assert_int_equal(un, 0);
	/* partial and whole-block writes to both copies */
	do_write(&c, a, 100, 50, 2);
	do_write(&c, b, 4096 * 3 + 17, 4096 * 2, 3);
	do_write(&c, a, 4096 * 10, 4096 * 4, 4);
	do_write(&c, b, 64 * 4096 + 500, 3000, 5); /* shared partial EOF block */
	do_write(&c, a, 64 * 4096 + 1000, 4096, 6); /* extend past EOF block */
	check_fs(&c);
	assert_true(nshared_extents(&c, a, &un) >= 1);
	assert_true(un >= 3);
	tu_remount(&c.fs);
	check_fs(&c);
	/* the other copy's blocks after delete: a keeps its data */
	rmfile(&c, b);
	check_fs(&c);
	assert_int_equal(nshared_extents(&c, a, NULL), 0);
	ctx_fini(&c);
}

/* dedupe (rlfs_dedupe_range): identical ranges share and free the
 * destination's blocks, differing ones change nothing, an already shared
 * range succeeds again without change, the kernel's range rules, times
 * unchanged, writes afterwards copy on write */
static void test_dedupe(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	struct rlfs_mount *mp = MP(&c);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b"), d = mkfile(&c, "d"), e = mkfile(&c, "e");
	do_write(&c, a, 0, 256 * 4096, 21);
	do_write(&c, b, 0, 256 * 4096, 21);
	do_write(&c, d, 0, 256 * 4096, 21);
	do_write(&c, d, 200 * 4096 + 5, 1, 22);          /* one byte differs */
	do_write(&c, e, 0, 10000, 21);                   /* a's first 10000 bytes */
	uint64_t A = c.f[a].ino, B = c.f[b].ino, D = c.f[d].ino, E = c.f[e].ino, done = 9;
	struct stat st0, st1;
	assert_int_equal(rlfs_getattr(mp, B, &st0), 0);
	uint64_t free0 = bfree(&c);
	assert_int_equal(rlfs_dedupe_range(mp, A, 0, B, 0, 256 * 4096, &done), 0);
	assert_int_equal(done, 256 * 4096);
	assert_true(bfree(&c) - free0 >= 256);           /* b's old blocks freed */
	assert_true(nshared_extents(&c, b, NULL) >= 1);
	assert_int_equal(rlfs_getattr(mp, B, &st1), 0);
	assert_true(st1.st_mtim.tv_sec == st0.st_mtim.tv_sec &&
		    st1.st_mtim.tv_nsec == st0.st_mtim.tv_nsec);
	check_fs(&c);
	/* already shared: same answer, nothing changes */
	uint64_t free1 = bfree(&c);
	assert_int_equal(rlfs_dedupe_range(mp, A, 0, B, 0, 256 * 4096, &done), 0);
	assert_int_equal(done, 256 * 4096);
	assert_int_equal(bfree(&c), free1);
	/* differs: nothing shared, nothing freed */
	assert_int_equal(rlfs_dedupe_range(mp, A, 0, D, 0, 256 * 4096, &done),
			 RLFS_DEDUPE_DIFFERS);
	assert_int_equal(done, 0);
	assert_int_equal(bfree(&c), free1);
	assert_int_equal(nshared_extents(&c, d, NULL), 0);
	/* the part before the difference is identical */
	assert_int_equal(rlfs_dedupe_range(mp, A, 0, D, 0, 200 * 4096, &done), 0);
	assert_int_equal(done, 200 * 4096);
	/* rules: alignment, EOF, unaligned tail, overlap, len 0 */
	assert_int_equal(rlfs_dedupe_range(mp, A, 1, B, 1, 4096, &done), -EINVAL);
	assert_int_equal(rlfs_dedupe_range(mp, A, 0, E, 0, 4 * 4096, &done), -EINVAL);
	assert_int_equal(rlfs_dedupe_range(mp, A, 255 * 4096, B, 255 * 4096, 2 * 4096, &done),
			 -EINVAL);
	assert_int_equal(rlfs_dedupe_range(mp, A, 0, A, 4096, 2 * 4096, &done), -EINVAL);
	assert_int_equal(rlfs_dedupe_range(mp, A, 0, B, 0, 0, &done), 0);
	assert_int_equal(done, 0);
	/* a's range is longer than e: the tail is cut to whole blocks */
	assert_int_equal(rlfs_dedupe_range(mp, A, 0, E, 0, 10000, &done), 0);
	assert_int_equal(done, 8192);
	check_fs(&c);
	/* copy-on-write keeps the two apart */
	do_write(&c, b, 4096 * 7 + 3, 5000, 23);
	do_write(&c, a, 4096 * 100, 4096, 24);
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	ctx_fini(&c);
}

/* generic/142: many clones of one file, each rewritten */
static void test_many_clones(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	uint64_t free0 = bfree(&c);
	int a = mkfile(&c, "orig");
	do_write(&c, a, 0, 32 * 4096, 7);
	for (int i = 0; i < 10; i++) {
		char name[16];
		snprintf(name, sizeof(name), "c%d", i);
		int d = mkfile(&c, name);
		do_clone(&c, a, 0, d, 0, 0);
	}
	check_fs(&c);
	for (int i = 1; i < c.nf; i++)
		do_write(&c, i, (uint64_t)i * 4096 + 11, 4096 * 2, 100 + i);
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	while (c.nf)
		rmfile(&c, c.nf - 1);
	check_fs(&c);
	assert_int_equal(bfree(&c), free0);
	ctx_fini(&c);
}

/* generic/150-151: space use after reflink and after delete */
static void test_usage(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	uint64_t free0 = bfree(&c);
	int a = mkfile(&c, "a");
	do_write(&c, a, 0, 1024 * 4096, 9);
	uint64_t free1 = bfree(&c);
	assert_true(free0 - free1 >= 1024);
	for (int i = 0; i < 5; i++) {
		char name[16];
		snprintf(name, sizeof(name), "r%d", i);
		int d = mkfile(&c, name);
		do_clone(&c, a, 0, d, 0, 0);
	}
	uint64_t free2 = bfree(&c);
	assert_true(free1 - free2 <= 16);
	check_fs(&c);
	/* deleting the original frees nothing (still referenced) */
	rmfile(&c, a);
	assert_true(bfree(&c) - free2 <= 4);
	check_fs(&c);
	while (c.nf)
		rmfile(&c, c.nf - 1);
	assert_int_equal(bfree(&c), free0);
	check_fs(&c);
	ctx_fini(&c);
}

/* generic/157: bad calls and their errors; nothing changes */
static void test_errors(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	struct rlfs_mount *mp = MP(&c);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b");
	do_write(&c, a, 0, 8 * 4096, 1);
	do_write(&c, b, 0, 8 * 4096, 2);
	uint64_t A = c.f[a].ino, B = c.f[b].ino;
	struct stat st;
	assert_int_equal(rlfs_mkdir(mp, rlfs_root_ino(mp), "dir", 0755, 0, 0, &st), 0);
	uint64_t D = st.st_ino;
	rlfs_forget(mp, D, 1);
	assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), "fifo", S_IFIFO | 0644, 0, 0, 0, &st),
			 0);
	uint64_t F = st.st_ino;
	rlfs_forget(mp, F, 1);

	/* unaligned offsets */
	assert_int_equal(rlfs_clone_range(mp, A, 1, B, 0, 4096, 0), -EINVAL);
	assert_int_equal(rlfs_clone_range(mp, A, 0, B, 512, 4096, 0), -EINVAL);
	/* unaligned length not at source EOF */
	assert_int_equal(rlfs_clone_range(mp, A, 0, B, 0, 4097, 0), -EINVAL);
	/* source offset at/after EOF */
	assert_int_equal(rlfs_clone_range(mp, A, 8 * 4096, B, 0, 4096, 0), -EINVAL);
	assert_int_equal(rlfs_clone_range(mp, A, 9 * 4096, B, 0, 4096, 0), -EINVAL);
	/* range past source EOF */
	assert_int_equal(rlfs_clone_range(mp, A, 4 * 4096, B, 0, 8 * 4096, 0), -EINVAL);
	/* same file overlapping */
	assert_int_equal(rlfs_clone_range(mp, A, 0, A, 4096, 2 * 4096, 0), -EINVAL);
	assert_int_equal(rlfs_clone_range(mp, A, 4096, A, 0, 2 * 4096, 0), -EINVAL);
	assert_int_equal(rlfs_clone_range(mp, A, 0, A, 0, 4096, 0), -EINVAL);
	/* directories, non-regular */
	assert_int_equal(rlfs_clone_range(mp, D, 0, B, 0, 4096, 0), -EISDIR);
	assert_int_equal(rlfs_clone_range(mp, A, 0, D, 0, 4096, 0), -EISDIR);
	assert_int_equal(rlfs_clone_range(mp, F, 0, B, 0, 4096, 0), -EINVAL);
	assert_int_equal(rlfs_clone_range(mp, A, 0, F, 0, 4096, 0), -EINVAL);
	/* offsets that wrap or are negative as loff_t */
	assert_int_equal(rlfs_clone_range(mp, A, 0, B, (1ull << 63), 4096, 0), -EINVAL);
	assert_int_equal(rlfs_clone_range(mp, A, 0, B, INT64_MAX - 4095, 8192, 0), -EINVAL);
	assert_int_equal(rlfs_clone_range(mp, A, 0, B, 0, (1ull << 63) + 4096, 0), -EINVAL);
	/* past the max file size */
	uint64_t maxb = mp->maxbytes & ~4095ull;
	if (mp->maxbytes < (uint64_t)INT64_MAX - 2 * 4096) {
		assert_int_equal(rlfs_clone_range(mp, A, 0, B, maxb, 4096, 0), -EFBIG);
		assert_int_equal(rlfs_clone_range(mp, A, 0, B, maxb - 4096, 2 * 4096, 0),
				 -EFBIG);
	} else {
		/* maxbytes is the loff_t limit: past it the offsets wrap */
		assert_int_equal(rlfs_clone_range(mp, A, 0, B, maxb, 4096, 0), -EINVAL);
		assert_int_equal(rlfs_clone_range(mp, A, 0, B, maxb - 4096, 2 * 4096, 0),
				 -EINVAL);
		/* the last whole block below the limit works (a sparse giant) */
		struct stat st2;
		assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), "giant", S_IFREG | 0644, 0, 0,
					    0, &st2), 0);
		rlfs_forget(mp, st2.st_ino, 1);
		assert_int_equal(rlfs_clone_range(mp, A, 0, st2.st_ino, maxb - 4096, 4096, 0),
				 4096);
		assert_int_equal(rlfs_getattr(mp, st2.st_ino, &st2), 0);
		assert_int_equal((uint64_t)st2.st_size, maxb);
		assert_int_equal(rlfs_unlink(mp, rlfs_root_ino(mp), "giant"), 0);
	}
	/* missing inode */
	assert_true(rlfs_clone_range(mp, A, 0, 999999, 0, 4096, 0) < 0);
	/* immutable / append-only destination */
	struct rlfs_inode *ip;
	assert_int_equal(rlfs_iget(mp, B, &ip), 0);
	ip->flags |= RLFS_DIFLAG_IMMUTABLE;
	assert_int_equal(rlfs_clone_range(mp, A, 0, B, 0, 4096, 0), -EPERM);
	ip->flags = (ip->flags & ~RLFS_DIFLAG_IMMUTABLE) | RLFS_DIFLAG_APPEND;
	assert_int_equal(rlfs_clone_range(mp, A, 0, B, 0, 4096, 0), -EPERM);
	ip->flags &= ~RLFS_DIFLAG_APPEND;
	rlfs_irele(ip);
	/* immutable source is fine (read only) */
	check_fs(&c);
	assert_int_equal(nshared_extents(&c, a, NULL), 0);
	ctx_fini(&c);
}

/* generic/181-182: length 0 means "to source EOF" */
static void test_len0(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	struct rlfs_mount *mp = MP(&c);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b"), e = mkfile(&c, "empty");
	do_write(&c, a, 0, 5 * 4096 + 123, 1);
	do_write(&c, b, 0, 10 * 4096, 2);
	/* len 0 from offset 2 blocks: to EOF incl. the partial block (at dst EOF) */
	do_clone(&c, a, 2 * 4096, b, 10 * 4096, 0);
	check_fs(&c);
	/* len 0 at source EOF: nothing, returns 0 */
	assert_int_equal(rlfs_clone_range(mp, c.f[a].ino, 5 * 4096 + 123, c.f[b].ino, 0, 0, 0),
			 0);
	/* len 0 past source EOF: EINVAL */
	assert_int_equal(rlfs_clone_range(mp, c.f[a].ino, 6 * 4096, c.f[b].ino, 0, 0, 0),
			 -EINVAL);
	/* empty source: len 0 clones nothing */
	assert_int_equal(rlfs_clone_range(mp, c.f[e].ino, 0, c.f[b].ino, 0, 0, 0), 0);
	/* whole-file clone (FICLONE) into an empty file */
	int d = mkfile(&c, "d");
	do_clone(&c, a, 0, d, 0, 0);
	check_fs(&c);
	ctx_fini(&c);
}

/* generic/515, 517, 518: partial EOF blocks */
static void test_eof(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	struct rlfs_mount *mp = MP(&c);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b");
	do_write(&c, a, 0, 3 * 4096 + 100, 1);
	do_write(&c, b, 0, 8 * 4096, 2);
	uint64_t A = c.f[a].ino, B = c.f[b].ino;
	/* partial EOF block into the middle of dst: EINVAL */
	assert_int_equal(rlfs_clone_range(mp, A, 2 * 4096, B, 4096, 4096 + 100, 0), -EINVAL);
	assert_int_equal(rlfs_clone_range(mp, A, 2 * 4096, B, 4096, 0, 0), -EINVAL);
	/* ending exactly at dst EOF: ok */
	struct stat st = { .st_size = 7 * 4096 + 100 };
	assert_int_equal(rlfs_setattr(mp, B, &st, RLFS_SET_SIZE, NULL), 0);
	mf_setsize(&c.f[b], 7 * 4096 + 100);
	assert_int_equal(rlfs_clone_range(mp, A, 3 * 4096, B, 6 * 4096, 0, 0), -EINVAL);
	do_clone(&c, a, 3 * 4096, b, 7 * 4096, 0);
	check_fs(&c);
	/* at or past dst EOF: ok */
	do_clone(&c, a, 2 * 4096, b, 7 * 4096, 4096 + 100);
	do_clone(&c, a, 0, b, 12 * 4096, 3 * 4096 + 100);
	check_fs(&c);
	ctx_fini(&c);
}

static void test_eof2(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	struct rlfs_mount *mp = MP(&c);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b");
	do_write(&c, a, 0, 3 * 4096 + 100, 1);
	do_write(&c, b, 0, 5 * 4096 + 50, 2);
	uint64_t A = c.f[a].ino, B = c.f[b].ino;
	/* dst EOF is inside the landing block: dst_off + len >= dst size is ok */
	do_clone(&c, a, 2 * 4096, b, 4 * 4096, 0); /* ends at 6*4096+100 > size */
	check_fs(&c);
	/* past dst EOF with a gap: ok, the gap reads as zeros */
	do_clone(&c, a, 0, b, 20 * 4096, 0);
	check_fs(&c);
	/* block-aligned mid-file clone into the middle */
	do_clone(&c, a, 0, b, 8 * 4096, 2 * 4096);
	check_fs(&c);
	/* the partial block, landed past EOF, rewritten in both */
	do_write(&c, a, 3 * 4096 + 50, 200, 3);
	do_write(&c, b, 20 * 4096 + 3 * 4096 + 10, 10, 4);
	check_fs(&c);
	/* truncate up after the shared partial block shows zeros */
	struct stat st = { .st_size = 30 * 4096 };
	assert_int_equal(rlfs_setattr(mp, A, &st, RLFS_SET_SIZE, NULL), 0);
	mf_setsize(&c.f[a], 30 * 4096);
	(void)B;
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	ctx_fini(&c);
}

/* Clone onto self at a non-overlapping offset */
static void test_self(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	int a = mkfile(&c, "a");
	do_write(&c, a, 0, 16 * 4096, 1);
	do_clone(&c, a, 0, a, 16 * 4096, 16 * 4096);
	do_clone(&c, a, 4 * 4096, a, 40 * 4096, 4 * 4096);
	do_clone(&c, a, 40 * 4096, a, 0, 2 * 4096); /* block shared 3 times */
	check_fs(&c);
	do_write(&c, a, 4096 + 7, 4096 * 5, 2);
	do_write(&c, a, 41 * 4096, 4096, 3);
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	ctx_fini(&c);
}

/* generic/358-359 patterns: partially overlapping shared ranges */
static void test_overlap_patterns(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 1024, 0);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b"), d = mkfile(&c, "d");
	uint32_t bs = c.bs;
	do_write(&c, a, 0, 256 * bs, 1);
	do_write(&c, b, 0, 256 * bs, 2);
	for (int i = 0; i < 32; i++)
		do_clone(&c, a, (uint64_t)i * 4 * bs, b, (uint64_t)(i * 3 + 5) * bs, 11 * bs);
	check_fs(&c);
	for (int i = 0; i < 20; i++)
		do_clone(&c, b, (uint64_t)(i * 7) * bs, d, (uint64_t)(i * 5) * bs, 17 * bs);
	check_fs(&c);
	/* unshare pieces, overwrite others */
	for (int i = 0; i < 10; i++) {
		assert_int_equal(rlfs_fallocate(MP(&c), c.f[b].ino,
						FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE,
						(off_t)(i * 20 * bs), (off_t)(6 * bs + 100)), 0);
		do_write(&c, d, (uint64_t)(i * 9) * bs + 5, 3 * bs, 50 + i);
	}
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	ctx_fini(&c);
}

/* unshare, punch/zero/truncate of shared ranges: the other copy intact */
static void test_unshare_punch(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	struct rlfs_mount *mp = MP(&c);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b");
	do_write(&c, a, 0, 40 * 4096, 1);
	/* an unwritten (preallocated) shared extent too */
	assert_int_equal(rlfs_fallocate(mp, c.f[a].ino, 0, 40 * 4096, 8 * 4096), 0);
	mf_setsize(&c.f[a], 48 * 4096);
	do_clone(&c, a, 0, b, 0, 0);
	check_fs(&c);
	uint64_t A = c.f[a].ino;
	/* unshare [2,6) blocks */
	uint64_t fr = bfree(&c);
	assert_int_equal(rlfs_fallocate(mp, A, FALLOC_FL_UNSHARE_RANGE, 2 * 4096, 4 * 4096), 0);
	assert_int_equal(fr - bfree(&c), 4);
	check_fs(&c);
	/* unshare twice: nothing more */
	fr = bfree(&c);
	assert_int_equal(rlfs_fallocate(mp, A, FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE,
					2 * 4096, 4 * 4096), 0);
	assert_int_equal(fr, bfree(&c));
	/* unshare of an unwritten shared range stays unwritten (reads zeros) */
	assert_int_equal(rlfs_fallocate(mp, A, FALLOC_FL_UNSHARE_RANGE, 41 * 4096, 2 * 4096), 0);
	check_fs(&c);
	/* punch partial + whole shared blocks */
	assert_int_equal(rlfs_fallocate(mp, A, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					10 * 4096 + 100, 3 * 4096), 0);
	memset(c.f[a].data + 10 * 4096 + 100, 0, 3 * 4096);
	check_fs(&c);
	/* zero range partial edges */
	assert_int_equal(rlfs_fallocate(mp, A, FALLOC_FL_ZERO_RANGE, 20 * 4096 + 5, 2 * 4096),
			 0);
	memset(c.f[a].data + 20 * 4096 + 5, 0, 2 * 4096);
	check_fs(&c);
	/* truncate down into a shared block */
	struct stat st = { .st_size = 30 * 4096 + 77 };
	assert_int_equal(rlfs_setattr(mp, A, &st, RLFS_SET_SIZE, NULL), 0);
	mf_setsize(&c.f[a], 30 * 4096 + 77);
	check_fs(&c);
	st.st_size = 35 * 4096;
	assert_int_equal(rlfs_setattr(mp, A, &st, RLFS_SET_SIZE, NULL), 0);
	mf_setsize(&c.f[a], 35 * 4096);
	check_fs(&c);
	/* unshare of everything: no more sharing in b */
	assert_int_equal(rlfs_fallocate(mp, c.f[b].ino, FALLOC_FL_UNSHARE_RANGE, 0,
					(off_t)c.f[b].size), 0);
	assert_int_equal(nshared_extents(&c, b, NULL), 0);
	assert_int_equal(nshared_extents(&c, a, NULL), 0);
	/* bad unshare combinations */
	assert_int_equal(rlfs_fallocate(mp, A, FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_ZERO_RANGE, 0,
					4096), -EINVAL);
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	ctx_fini(&c);
}

/* GET_EXTENTS: split where sharing changes, flags, LAST, batches */
static void test_extents(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	struct rlfs_mount *mp = MP(&c);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b");
	do_write(&c, a, 0, 10 * 4096, 1);
	do_clone(&c, a, 2 * 4096, b, 0, 3 * 4096);
	struct rlfs_ioc_extent ext[16];
	uint32_t n;
	assert_int_equal(rlfs_get_extents(mp, c.f[a].ino, 0, ~0ull, ext, 16, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(ext[0].logical, 0);
	assert_int_equal(ext[0].length, 2 * 4096);
	assert_int_equal(ext[0].flags, 0);
	assert_int_equal(ext[1].logical, 2 * 4096);
	assert_int_equal(ext[1].length, 3 * 4096);
	assert_int_equal(ext[1].flags, RLFS_IOC_EXT_SHARED);
	assert_int_equal(ext[2].logical, 5 * 4096);
	assert_int_equal(ext[2].flags, RLFS_IOC_EXT_LAST);
	assert_int_equal(ext[1].physical, ext[0].physical + 2 * 4096);
	/* b's physical equals a's shared piece */
	struct rlfs_ioc_extent eb[4];
	assert_int_equal(rlfs_get_extents(mp, c.f[b].ino, 0, ~0ull, eb, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(eb[0].physical, ext[1].physical);
	assert_int_equal(eb[0].flags, RLFS_IOC_EXT_SHARED | RLFS_IOC_EXT_LAST);
	/* a range, batches of one */
	assert_int_equal(rlfs_get_extents(mp, c.f[a].ino, 3 * 4096, 4096, ext, 16, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ext[0].logical, 2 * 4096);
	assert_int_equal(rlfs_get_extents(mp, c.f[a].ino, 0, ~0ull, ext, 1, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rlfs_get_extents(mp, c.f[a].ino, ext[0].logical + ext[0].length, ~0ull,
					  ext, 1, &n), 0);
	assert_int_equal(ext[0].logical, 2 * 4096);
	/* unwritten */
	assert_int_equal(rlfs_fallocate(mp, c.f[a].ino, FALLOC_FL_KEEP_SIZE, 20 * 4096, 4096), 0);
	assert_int_equal(rlfs_get_extents(mp, c.f[a].ino, 0, ~0ull, ext, 16, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(ext[2].flags, 0);
	assert_int_equal(ext[3].flags, RLFS_IOC_EXT_UNWRITTEN | RLFS_IOC_EXT_LAST);
	/* empty file */
	int e = mkfile(&c, "e");
	assert_int_equal(rlfs_get_extents(mp, c.f[e].ino, 0, ~0ull, ext, 16, &n), 0);
	assert_int_equal(n, 0);
	check_fs(&c);
	ctx_fini(&c);
}

/* ENOSPC in the middle of clones and CoW writes on a small image */
static void test_enospc(void **state)
{
	struct ctx c;
	/* exact free-block accounting: without the rmap btree, which keeps
	 * the blocks it grew into and changes the AGFL's refills (its own
	 * accounting: test_rmapfeat and fsck's cross-check) */
	tu_mkfs_rmapbt = -1;
	ctx_init(&c, 16 * MB, 1024, 2);
	tu_mkfs_rmapbt = 0;
	struct rlfs_mount *mp = MP(&c);
	uint64_t free0 = bfree(&c);
	int a = mkfile(&c, "a");
	/* a fragmented source: every other block */
	uint32_t bs = c.bs;
	for (int i = 0; i < 1500; i++)
		do_write(&c, a, (uint64_t)i * 2 * bs, bs, (uint64_t)i);
	int filler = mkfile(&c, "filler");
	int kfirst = c.nf;
	for (int i = 0; i < 12; i++) {
		char name[16];
		snprintf(name, sizeof(name), "k%d", i);
		mkfile(&c, name);
	}
	/* fill the rest of the space, leaving room for a few whole clones
	 * (each needs ~100 metadata blocks here) before one runs out */
	uint64_t off = 0;
	uint8_t *buf = malloc(64 * bs);
	fill_pattern(buf, 64 * bs, 77);
	while (bavail(&c) > 300 + 64) {
		ssize_t r = rlfs_write(mp, c.f[filler].ino, buf, 64 * bs, (off_t)off);
		if (r <= 0)
			break;
		mf_reserve(&c.f[filler], off + (uint64_t)r);
		memcpy(c.f[filler].data + off, buf, (size_t)r);
		off += (uint64_t)r;
		c.f[filler].size = off;
	}
	free(buf);
	check_fs(&c);
	/* clones until ENOSPC: each either completes or fails whole/partly
	 * (the targets exist already: inode chunks need contiguous space) */
	int clones = 0, failed = 0;
	for (int i = 0; i < 200 && !failed; i++) {
		struct mfile *m = &c.f[kfirst + i % 12];
		uint64_t doff = (m->size + bs - 1) / bs * bs;
		int64_t n = rlfs_clone_range(mp, c.f[a].ino, 0, m->ino, doff, 0, 0);
		uint64_t want = n == (int64_t)c.f[a].size ? c.f[a].size : 0;
		if (want) {
			clones++;
		} else {
			/* partial (bytes) or -ENOSPC: the prefix is the clone */
			assert_true(n == -ENOSPC || (n > 0 && n < (int64_t)c.f[a].size));
			want = n > 0 ? (uint64_t)n : 0;
			failed = 1;
		}
		if (want) {
			mf_reserve(m, doff + want);
			memcpy(m->data + doff, c.f[a].data, want);
			m->size = doff + want;
		}
		if (failed || i % 8 == 0)
			check_fs(&c);
	}
	print_message("%d whole clones before ENOSPC\n", clones);
	assert_true(failed);
	assert_true(clones >= 1);
	/* CoW writes until ENOSPC: old or new contents per write */
	for (int i = 0; i < 3000; i++) {
		int f = c.nf > 2 ? 2 + (int)rnd((uint64_t)c.nf - 2) : 0;
		struct mfile *m = &c.f[f];
		if (!m->size)
			continue;
		uint64_t o = rnd(m->size), l = 1 + rnd(3 * bs);
		uint8_t *w = malloc(l);
		fill_pattern(w, l, 1000 + (uint64_t)i);
		ssize_t r = rlfs_write(mp, m->ino, w, l, (off_t)o);
		if (r > 0) {
			mf_reserve(m, o + (uint64_t)r);
			memcpy(m->data + o, w, (size_t)r);
			if (o + (uint64_t)r > m->size)
				m->size = o + (uint64_t)r;
		} else {
			assert_int_equal(r, -ENOSPC);
		}
		free(w);
		if (r < (ssize_t)l) {
			check_fs(&c);
			break;
		}
	}
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	run_fsck(&c);
	while (c.nf)
		rmfile(&c, c.nf - 1);
	check_fs(&c);
	assert_int_equal(bfree(&c), free0);
	ctx_fini(&c);
}

/* 20,000-extent clone: fragmented source, clone, verify, time it */
static void test_many_extents(void **state)
{
	struct ctx c;
	ctx_init(&c, 128 * MB, 1024, 4);
	struct rlfs_mount *mp = MP(&c);
	int a = mkfile(&c, "frag"), b = mkfile(&c, "clone");
	uint32_t bs = c.bs;
	const int N = 20000;
	struct mfile *m = &c.f[a];
	mf_reserve(m, (uint64_t)N * 2 * bs);
	for (int i = 0; i < N; i++) {
		uint8_t blk[1024];
		fill_pattern(blk, bs, (uint64_t)i * 3);
		assert_int_equal(rlfs_write(mp, m->ino, blk, bs, (off_t)((uint64_t)i * 2 * bs)),
				 (ssize_t)bs);
		memcpy(m->data + (uint64_t)i * 2 * bs, blk, bs);
	}
	m->size = (uint64_t)(N - 1) * 2 * bs + bs;
	struct rlfs_inode *ip;
	assert_int_equal(rlfs_iget(mp, m->ino, &ip), 0);
	uint32_t next = rlfs_iext_count(&ip->iext);
	rlfs_irele(ip);
	assert_true(next >= (uint32_t)N);
	uint64_t fr = bfree(&c);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do_clone(&c, a, 0, b, 0, 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	print_message("clone of %u extents: %.3f s (%.0f extents/s), %llu blocks used\n", next,
		      secs, next / secs, (unsigned long long)(fr - bfree(&c)));
	assert_int_equal(rlfs_iget(mp, c.f[b].ino, &ip), 0);
	assert_int_equal(rlfs_iext_count(&ip->iext), next);
	rlfs_irele(ip);
	check_fs(&c);
	/* delete the source: the clone keeps everything */
	rmfile(&c, a);
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	ctx_fini(&c);
}

/* A file of n one-block extents (every other block written). */
static int frag_file(struct ctx *c, const char *name, int n)
{
	int a = mkfile(c, name);
	uint32_t bs = c->bs;
	struct mfile *m = &c->f[a];
	uint8_t *blk = malloc(bs);
	assert_non_null(blk);
	mf_reserve(m, (uint64_t)n * 2 * bs);
	for (int i = 0; i < n; i++) {
		fill_pattern(blk, bs, (uint64_t)i * 5 + 1);
		assert_int_equal(rlfs_write(MP(c), m->ino, blk, bs, (off_t)((uint64_t)i * 2 * bs)),
				 (ssize_t)bs);
		memcpy(m->data + (uint64_t)i * 2 * bs, blk, bs);
	}
	m->size = (uint64_t)(n - 1) * 2 * bs + bs;
	free(blk);
	return a;
}

/*
 * Copy-on-write over more old extents than one transaction may take
 * (RLFS_TX_COW_EXTENTS): one write across a clone of a 300-extent file,
 * and FALLOC_FL_UNSHARE_RANGE over another clone, each done in several
 * bounded transactions.  The data, the refcounts and fsck must come out
 * as if done at once; every tr_cow commit must fit its reservation.
 */
static void test_cow_bounded(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 4);
	struct rlfs_mount *mp = MP(&c);
	/* 300 one-block extents with no holes: two files written block by
	 * block in turn get interleaved blocks */
	int a = mkfile(&c, "frag"), x = mkfile(&c, "other");
	for (uint64_t i = 0; i < 300; i++) {
		do_write(&c, a, i * c.bs, c.bs, 1000 + i);
		do_write(&c, x, i * c.bs, c.bs, 5000 + i);
	}
	int b = mkfile(&c, "b"), u = mkfile(&c, "u");
	do_clone(&c, a, 0, b, 0, 0);
	do_clone(&c, a, 0, u, 0, 0);
	uint64_t commits0 = mp->resv.tr_cow.commits;
	do_write(&c, b, 100, c.f[b].size - 200, 77);
	uint64_t commits = mp->resv.tr_cow.commits - commits0;
	print_message("write over 300 shared extents: %llu tr_cow commits, the largest "
		      "%u bytes\n", (unsigned long long)commits, mp->resv.tr_cow.max_used_bytes);
	/* (commits also count the rolls of each plan's deferred chain, so
	 * their number says nothing about the bound; the size does:) a
	 * bounded plan logs at most 3 intents per 16 of its 64 extents,
	 * the inode and the allocator's blocks; unbounded it logged 600
	 * intents' worth at once.  With the rmap each extent's fork change
	 * also queues up to two RUI items: 41 blocks measured. */
	assert_true(mp->resv.tr_cow.max_used_bytes < (rlfs_has_rmap(mp) ? 48u : 16u) * c.bs);
	assert_int_equal(rlfs_fallocate(mp, c.f[u].ino, FALLOC_FL_UNSHARE_RANGE, 0,
					(off_t)c.f[u].size), 0);
	assert_int_equal(mp->resv.tr_cow.overruns, 0);
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	ctx_fini(&c);
}

struct stop_after {
	int calls, stop_at;
};

static int stop_after_n(void *arg)
{
	struct stop_after *s = arg;
	return ++s->calls >= s->stop_at;
}

/* rlfs_clone_range_cancel: a stop between pieces keeps what is done and
 * returns it (a prefix of the range, whole blocks, dst's size covering
 * it); a stop before the first piece is -EINTR with nothing changed;
 * never stopping clones everything.  The refcounts match the mappings
 * and fsck is clean after each. */
static void test_clone_cancel(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 1024, 0);
	struct rlfs_mount *mp = MP(&c);
	uint32_t bs = c.bs;
	const int N = 3000;   /* 6000 pieces: several transactions, many polls */
	int a = frag_file(&c, "frag", N);
	int b = mkfile(&c, "part"), e = mkfile(&c, "none"), f = mkfile(&c, "full");
	uint64_t len = c.f[a].size;

	/* stopped at the 10th poll: CLONE_POLL pieces per poll inside the
	 * first transaction, so a prefix of the range, not all of it */
	struct stop_after s1 = { 0, 10 };
	struct rlfs_cancel k1 = { stop_after_n, &s1 };
	int64_t r = rlfs_clone_range_cancel(mp, c.f[a].ino, 0, c.f[b].ino, 0, 0, 0, &k1);
	print_message("stopped after %d polls: %lld of %llu bytes cloned\n", s1.calls,
		      (long long)r, (unsigned long long)len);
	assert_true(r > 0);
	assert_true((uint64_t)r < len);
	assert_int_equal((uint64_t)r % bs, 0);
	assert_int_equal(s1.calls, 10);
	mf_reserve(&c.f[b], (uint64_t)r);
	memcpy(c.f[b].data, c.f[a].data, (size_t)r);
	c.f[b].size = (uint64_t)r;
	check_fs(&c);   /* contents, size and refcounts of the prefix */

	/* stopped before the first piece: -EINTR, dst untouched */
	struct stat st0, st1;
	assert_int_equal(rlfs_getattr(mp, c.f[e].ino, &st0), 0);
	struct stop_after s2 = { 0, 1 };
	struct rlfs_cancel k2 = { stop_after_n, &s2 };
	assert_int_equal(rlfs_clone_range_cancel(mp, c.f[a].ino, 0, c.f[e].ino, 0, 0, 0, &k2),
			 -EINTR);
	assert_int_equal(rlfs_getattr(mp, c.f[e].ino, &st1), 0);
	assert_int_equal(st1.st_size, 0);
	assert_int_equal(st1.st_blocks, 0);
	assert_int_equal(st1.st_mtim.tv_nsec, st0.st_mtim.tv_nsec);
	assert_int_equal(st1.st_mtim.tv_sec, st0.st_mtim.tv_sec);

	/* a cancel that never stops: everything, polled along the way */
	struct stop_after s3 = { 0, INT_MAX };
	struct rlfs_cancel k3 = { stop_after_n, &s3 };
	assert_int_equal(rlfs_clone_range_cancel(mp, c.f[a].ino, 0, c.f[f].ino, 0, 0, 0, &k3),
			 (int64_t)len);
	assert_true(s3.calls > 2 * N / 64);
	mf_reserve(&c.f[f], len);
	memcpy(c.f[f].data, c.f[a].data, len);
	c.f[f].size = len;
	check_fs(&c);
	/* the partial clone can be finished by a second call */
	do_clone(&c, a, (uint64_t)r, b, (uint64_t)r, len - (uint64_t)r);
	check_fs(&c);
	ctx_fini(&c);
}

/* Reads of the source run while a clone of it is in progress (the clone
 * holds the source's iolock shared: XFS since 6.7, generic/733), and a
 * write to the source waits for the clone.  The clone's cancel poll (made
 * between pieces, while it holds both iolocks) lets a reader thread run
 * and waits, a bounded number of times, until the reader has completed
 * some reads: with the source locked exclusively no read can complete
 * before the clone returns.  Asserted on order, not time. */
struct reader_arg {
	struct ctx *c;
	uint64_t ino, len;
	atomic_int go, stop, reads;
	atomic_int reads_in_clone;   /* reads done while the clone held its locks */
	atomic_int in_clone;
};

static void *reader_main(void *p)
{
	struct reader_arg *r = p;
	uint8_t *buf = malloc(r->len);
	assert_non_null(buf);
	while (!atomic_load(&r->go))
		sched_yield();
	while (!atomic_load(&r->stop)) {
		ssize_t n = rlfs_read(MP(r->c), r->ino, buf, r->len, 0);
		assert_int_equal(n, (ssize_t)r->len);
		atomic_fetch_add(&r->reads, 1);
		if (atomic_load(&r->in_clone))
			atomic_fetch_add(&r->reads_in_clone, 1);
	}
	free(buf);
	return NULL;
}

static int poll_lets_reader_run(void *arg)
{
	struct reader_arg *r = arg;
	if (atomic_exchange(&r->in_clone, 1) == 0) {
		atomic_store(&r->go, 1);
		/* first poll: give the reader a bounded chance (it never gets
		 * one if the clone holds the source exclusively) */
		for (int i = 0; i < 2000 && atomic_load(&r->reads_in_clone) < 3; i++) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
	}
	return 0;
}

static void test_clone_source_readable(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 1024, 0);
	int a = frag_file(&c, "src", 2000);
	int b = mkfile(&c, "dst");
	struct reader_arg r = { .c = &c, .ino = c.f[a].ino, .len = 64 * 1024 };
	atomic_init(&r.go, 0);
	atomic_init(&r.stop, 0);
	atomic_init(&r.reads, 0);
	atomic_init(&r.reads_in_clone, 0);
	atomic_init(&r.in_clone, 0);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, reader_main, &r), 0);
	struct rlfs_cancel k = { poll_lets_reader_run, &r };
	int64_t n = rlfs_clone_range_cancel(MP(&c), c.f[a].ino, 0, c.f[b].ino, 0, 0, 0, &k);
	atomic_store(&r.in_clone, 0);
	int during = atomic_load(&r.reads_in_clone);
	atomic_store(&r.go, 1);
	atomic_store(&r.stop, 1);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(n, (int64_t)c.f[a].size);
	print_message("%d reads of the source completed during the clone\n", during);
	assert_true(during >= 3);
	do_clone(&c, a, 0, b, 0, 0);   /* model; clones the same again */
	check_fs(&c);
	ctx_fini(&c);
}

/* The unmount's device traffic, recorded: 'w' writes (offset, and for the
 * superblock its state), 'f' flushes. */
struct devop {
	char kind;
	uint64_t off;
	uint32_t sb_state;
};
static struct {
	const struct rlfs_dev_ops *orig;
	struct devop *ops;
	size_t n, cap;
} rec;

static void rec_add(char kind, uint64_t off, uint32_t sb_state)
{
	if (rec.n == rec.cap) {
		rec.cap = rec.cap ? rec.cap * 2 : 1024;
		rec.ops = realloc(rec.ops, rec.cap * sizeof(*rec.ops));
		assert_non_null(rec.ops);
	}
	rec.ops[rec.n++] = (struct devop){ kind, off, sb_state };
}

static int rec_pread(struct rlfs_dev *d, void *b, size_t l, uint64_t o)
{
	return rec.orig->pread(d, b, l, o);
}

static int rec_pwrite(struct rlfs_dev *d, const void *b, size_t l, uint64_t o)
{
	uint32_t state = UINT32_MAX;
	if (o == 0 && l >= sizeof(struct rlfs_sb))
		state = rlfs_get32(((const struct rlfs_sb *)b)->state);
	rec_add('w', o, state);
	return rec.orig->pwrite(d, b, l, o);
}

static int rec_flush(struct rlfs_dev *d)
{
	rec_add('f', 0, 0);
	return rec.orig->flush(d);
}

static void rec_close(struct rlfs_dev *d)
{
	rec.orig->close(d);
}

static const struct rlfs_dev_ops rec_dev_ops = {
	.pread = rec_pread, .pwrite = rec_pwrite, .flush = rec_flush, .close = rec_close,
};

/* Unmount after a clone-while-writing workload: the superblock says CLEAN
 * only after every other metadata block has been written and flushed, so
 * a daemon stopped at any point of its final flush leaves an image that
 * says DIRTY (fsck: "not cleanly unmounted"), never a CLEAN one over torn
 * trees.  Before, the flush wrote the CLEAN superblock first (block
 * order) and thousands of other blocks after it. */
static void test_unmount_clean_last(void **state)
{
	struct ctx c;
	/* the in-place flush of an image without a log (with a log, the
	 * last write is the unmount record: test_log.c) */
	tu_mkfs_log = -1;
	ctx_init(&c, 64 * MB, 4096, 4);
	tu_mkfs_log = 0;
	struct rlfs_mount *mp = MP(&c);
	int a = frag_file(&c, "src", 600);
	for (int i = 0; i < 6; i++) {
		char name[16];
		snprintf(name, sizeof(name), "snap%d", i);
		int b = mkfile(&c, name);
		do_clone(&c, a, 0, b, 0, 0);
		for (int k = 0; k < 40; k++)
			do_write(&c, a, rnd(c.f[a].size), 1 + rnd(3 * c.bs), 900 + (uint64_t)(i * 40 + k));
	}
	rmfile(&c, 1);
	check_fs(&c);
	rec.orig = mp->dev->ops;
	rec.n = 0;
	mp->dev->ops = &rec_dev_ops;
	assert_int_equal(rlfs_mount_close(mp), 0);
	c.fs.mp = NULL;
	/* the last write is the superblock, CLEAN, between two flushes; every
	 * other write came before that first flush; no earlier CLEAN */
	size_t last_w = SIZE_MAX, nw = 0;
	for (size_t i = 0; i < rec.n; i++)
		if (rec.ops[i].kind == 'w') {
			last_w = i;
			nw++;
		}
	print_message("unmount: %zu block writes, %zu device operations\n", nw, rec.n);
	assert_true(nw > 20);
	assert_true(last_w != SIZE_MAX);
	assert_int_equal(rec.ops[last_w].off, 0);
	assert_int_equal(rec.ops[last_w].sb_state, RLFS_STATE_CLEAN);
	assert_true(last_w >= 1 && rec.ops[last_w - 1].kind == 'f');
	assert_true(last_w + 1 < rec.n && rec.ops[last_w + 1].kind == 'f');
	for (size_t i = 0; i < last_w; i++)
		if (rec.ops[i].kind == 'w' && rec.ops[i].off == 0)
			assert_int_not_equal(rec.ops[i].sb_state, RLFS_STATE_CLEAN);
	free(rec.ops);
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(tu_fsck(c.fs.path, 0), 0);
	assert_int_equal(rlfs_mount_open(c.fs.path, RLFS_MOUNT_NOLOCK, &c.fs.mp), 0);
	check_fs(&c);
	ctx_fini(&c);
}

/* A file that fills its AG, cloned, then CoW-written at random: the AG's
 * refcount btree keeps growing (records split per write) although the AG
 * has no free data space; data and bmbt blocks leave it headroom */
static void test_full_ag(void **state)
{
	struct ctx c;
	/* exact free-block accounting: without the rmap btree, which keeps
	 * the blocks it grew into and changes the AGFL's refills (its own
	 * accounting: test_rmapfeat and fsck's cross-check) */
	tu_mkfs_rmapbt = -1;
	ctx_init(&c, 32 * MB, 1024, 2);
	tu_mkfs_rmapbt = 0;
	struct rlfs_mount *mp = MP(&c);
	uint64_t free0 = bfree(&c);
	uint32_t bs = c.bs;
	int a = mkfile(&c, "a"), b = mkfile(&c, "b");
	uint64_t blocks = (uint64_t)mp->agblocks + mp->agblocks / 4;
	for (uint64_t off = 0; off < blocks * bs; off += 256 * bs)
		do_write(&c, a, off, 256 * bs, off);
	do_clone(&c, a, 0, b, 0, 0);
	for (int i = 0; i < 3000; i++) {
		int f = i % 3 == 0 ? b : a;
		uint64_t o = rnd(blocks) * bs + rnd(bs);
		do_write(&c, f, o, 1 + rnd(bs), 5000 + (uint64_t)i);
		if (i % 1000 == 999)
			check_fs(&c);
	}
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	while (c.nf)
		rmfile(&c, c.nf - 1);
	assert_int_equal(bfree(&c), free0);
	ctx_fini(&c);
}

/* AG 0 filled with data up to its reserve, then metadata allocated near
 * inodes of AG 0 (directory blocks of a big directory, xattr blocks of the
 * root, inode chunks): none of it may take the reserve the AG's refcount
 * and rmap btrees need (it goes to AG 1 instead), and a clone plus CoW
 * writes in AG 0 still work afterwards.  XFS: every allocation that is not
 * a reserved tree's checks the per-AG reservation (xfs_alloc_space_available). */
static void test_ag_resv_metadata(void **state)
{
	struct ctx c;
	(void)state;
	ctx_init(&c, 32 * MB, 1024, 2);
	struct rlfs_mount *mp = MP(&c);
	uint32_t bs = c.bs, resv = mp->ag_resv_ask_blocks;
	int a = mkfile(&c, "a");
	uint64_t blocks = mp->agblocks;
	for (uint64_t off = 0; off < blocks * bs; off += 256 * bs)
		do_write(&c, a, off, 256 * bs, off);
	/* a directory of the root's AG: its blocks want AG 0 */
	uint64_t root = rlfs_root_ino(mp);
	char name[200];
	for (int i = 0; i < 3000; i++) {
		struct stat st;
		snprintf(name, sizeof(name), "entry-with-a-long-name-to-use-up-directory-blocks-%05d", i);
		assert_int_equal(rlfs_mknod(mp, root, name, S_IFREG | 0644, 0, 0, 0, &st), 0);
		rlfs_forget(mp, st.st_ino, 1);
	}
	for (int i = 0; i < 40; i++) {
		char v[900];
		memset(v, 'x' + i % 3, sizeof(v));
		snprintf(name, sizeof(name), "user.big-%02d", i);
		assert_int_equal(rlfs_setxattr(mp, root, name, v, sizeof(v), 0), 0);
	}
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp), 0);
	assert_int_equal(rlfs_ag_read_header(tp, 0, &bp), 0);
	uint32_t freeblks = rlfs_get32(rlfs_agh(bp)->freeblks);
	uint32_t flcount = rlfs_get32(rlfs_agh(bp)->flcount);
	rlfs_trans_brelse(tp, bp);
	rlfs_trans_cancel(tp);
	print_message("AG 0: %u free + %u on the AGFL, reserve %u\n", freeblks, flcount, resv);
	assert_true(freeblks + flcount >= resv);
	/* the reserve is there for this: shared extents split by CoW */
	int b = mkfile(&c, "b");
	do_clone(&c, a, 0, b, 0, 0);
	for (int i = 0; i < 300; i++)
		do_write(&c, i % 2 ? a : b, rnd(blocks) * bs, bs, 7000 + (uint64_t)i);
	check_fs(&c);
	ctx_fini(&c);
}

/* Threads cloning between files in both directions (lock order), writing,
 * unsharing and reading at once; afterwards the refcounts must match the
 * mappings and fsck must be clean.  Contents are not modelled here. */
struct thr_arg {
	struct ctx *c;
	int id;
	int errors;
};

static void *thr_main(void *p)
{
	struct thr_arg *t = p;
	struct rlfs_mount *mp = MP(t->c);
	uint32_t bs = t->c->bs;
	uint64_t st = 0x1234567ull * (uint64_t)(t->id + 1);
	uint8_t *buf = malloc(8 * bs);
	memset(buf, t->id + 1, 8 * bs);
	for (int i = 0; i < 300; i++) {
		st ^= st << 13;
		st ^= st >> 7;
		st ^= st << 17;
		int a = (int)(st % 4), b = (int)((st >> 8) % 4);
		uint64_t ia = t->c->f[a].ino, ib = t->c->f[b].ino;
		uint64_t o1 = ((st >> 16) % 60) * bs, o2 = ((st >> 24) % 60) * bs;
		uint64_t l = (1 + (st >> 32) % 4) * bs;
		int64_t r = 0;
		switch ((st >> 40) % 4) {
		case 0:
			r = rlfs_clone_range(mp, ia, o1, ib, o2, l, 0);
			if (r != (int64_t)l && r != -EINVAL)
				t->errors++;
			break;
		case 1:
			r = rlfs_write(mp, ia, buf, l, (off_t)o1 + 7);
			if (r != (int64_t)l)
				t->errors++;
			break;
		case 2:
			if (rlfs_fallocate(mp, ia, FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE,
					   (off_t)o1, (off_t)l) != 0)
				t->errors++;
			break;
		case 3:
			if (rlfs_read(mp, ia, buf, l, (off_t)o1) < 0)
				t->errors++;
			break;
		}
	}
	free(buf);
	return NULL;
}

static void test_threads(void **state)
{
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 4);
	for (int i = 0; i < 4; i++) {
		char name[8];
		snprintf(name, sizeof(name), "t%d", i);
		int f = mkfile(&c, name);
		do_write(&c, f, 0, 64 * 4096, (uint64_t)i);
	}
	pthread_t th[4];
	struct thr_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thr_arg){ &c, i, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, thr_main, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(args[i].errors, 0);
	}
	/* contents: re-read into the model, then the structural checks */
	for (int i = 0; i < c.nf; i++) {
		struct stat st;
		assert_int_equal(rlfs_getattr(MP(&c), c.f[i].ino, &st), 0);
		mf_setsize(&c.f[i], (uint64_t)st.st_size);
		assert_int_equal(rlfs_read(MP(&c), c.f[i].ino, c.f[i].data, c.f[i].size, 0),
				 (ssize_t)c.f[i].size);
	}
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	ctx_fini(&c);
}

/* dst mtime/ctime change (src's do not); KILL_SUID clears setuid/setgid */
static void test_times_suid(void **state)
{
	struct ctx c;
	ctx_init(&c, 32 * MB, 4096, 0);
	struct rlfs_mount *mp = MP(&c);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b");
	do_write(&c, a, 0, 4 * 4096, 1);
	do_write(&c, b, 0, 4 * 4096, 2);
	struct stat st = { .st_mode = 06755 }, sa0, sb0, sa1, sb1;
	assert_int_equal(rlfs_setattr(mp, c.f[b].ino, &st, RLFS_SET_MODE, NULL), 0);
	st.st_atim.tv_sec = st.st_mtim.tv_sec = 1000;
	assert_int_equal(rlfs_setattr(mp, c.f[a].ino, &st, RLFS_SET_ATIME | RLFS_SET_MTIME,
				      NULL), 0);
	assert_int_equal(rlfs_setattr(mp, c.f[b].ino, &st, RLFS_SET_ATIME | RLFS_SET_MTIME,
				      NULL), 0);
	assert_int_equal(rlfs_getattr(mp, c.f[a].ino, &sa0), 0);
	assert_int_equal(rlfs_getattr(mp, c.f[b].ino, &sb0), 0);
	/* let the clock move on, so that a ctime update is visible */
	struct timespec pause = { 0, 2 * 1000 * 1000 };
	nanosleep(&pause, NULL);
	do_clone(&c, a, 0, b, 0, 4096); /* root caller: no flag */
	assert_int_equal(rlfs_getattr(mp, c.f[a].ino, &sa1), 0);
	assert_int_equal(rlfs_getattr(mp, c.f[b].ino, &sb1), 0);
	assert_int_equal(sb1.st_mode & 07777, 06755);
	assert_int_equal(sa1.st_mtim.tv_sec, sa0.st_mtim.tv_sec);
	assert_int_equal(sa1.st_mtim.tv_nsec, sa0.st_mtim.tv_nsec);
	assert_int_equal(sa1.st_ctim.tv_sec, sa0.st_ctim.tv_sec);
	assert_int_equal(sa1.st_ctim.tv_nsec, sa0.st_ctim.tv_nsec);
	assert_true(sb1.st_mtim.tv_sec > 1000);
	assert_true(sb1.st_ctim.tv_sec > sb0.st_ctim.tv_sec ||
		    (sb1.st_ctim.tv_sec == sb0.st_ctim.tv_sec &&
		     sb1.st_ctim.tv_nsec > sb0.st_ctim.tv_nsec));
	assert_int_equal(rlfs_clone_range(mp, c.f[a].ino, 4096, c.f[b].ino, 4096, 4096,
					  RLFS_CLONE_KILL_SUID), 4096);
	memcpy(c.f[b].data + 4096, c.f[a].data + 4096, 4096);
	assert_int_equal(rlfs_getattr(mp, c.f[b].ino, &sb1), 0);
	assert_int_equal(sb1.st_mode & 07777, 0755);
	/* unknown flags */
	assert_int_equal(rlfs_clone_range(mp, c.f[a].ino, 0, c.f[b].ino, 0, 4096, 0x80),
			 -EINVAL);
	check_fs(&c);
	ctx_fini(&c);
}

/* Without the REFLINK feature: clone -EOPNOTSUPP, frees plain */
static void test_noreflink(void **state)
{
	struct ctx c;
	memset(&c, 0, sizeof(c));
	struct rlfs_mkfs_opts o = { .size_bytes = 32 * MB, .force = 1, .reflink = -1 };
	snprintf(c.fs.path, sizeof(c.fs.path), "/tmp/rlfs-unit-XXXXXX");
	int fd = mkstemp(c.fs.path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(rlfs_mkfs(c.fs.path, &o), 0);
	assert_int_equal(rlfs_mount_open(c.fs.path, RLFS_MOUNT_NOLOCK, &c.fs.mp), 0);
	c.bs = MP(&c)->blocksize;
	uint64_t free0 = bfree(&c);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b");
	do_write(&c, a, 0, 10 * c.bs, 1);
	assert_int_equal(rlfs_clone_range(MP(&c), c.f[a].ino, 0, c.f[b].ino, 0, 0, 0),
			 -EOPNOTSUPP);
	assert_int_equal(rlfs_fallocate(MP(&c), c.f[a].ino, FALLOC_FL_UNSHARE_RANGE, 0, 4096), 0);
	do_write(&c, a, 100, 5000, 2);
	check_fs(&c);
	while (c.nf)
		rmfile(&c, c.nf - 1);
	assert_int_equal(bfree(&c), free0);
	ctx_fini(&c);
}

/* fsx-style: random writes, clones, clone+write of unaligned ranges,
 * unshare, punch, truncate over several files, verified against the model */
static void random_run(uint64_t size, uint32_t bsz, int nops)
{
	struct ctx c;
	ctx_init(&c, size, bsz, 2);
	struct rlfs_mount *mp = MP(&c);
	uint64_t free0 = bfree(&c);
	const int NF = 5;
	uint32_t bs = c.bs;
	const uint64_t maxsz = 96ull * bs;
	for (int i = 0; i < NF; i++) {
		char name[8];
		snprintf(name, sizeof(name), "f%d", i);
		mkfile(&c, name);
	}
	int counts[8] = { 0 };
	for (int op = 0; op < nops; op++) {
		int i = (int)rnd(NF), j = (int)rnd(NF);
		struct mfile *m = &c.f[i], *n = &c.f[j];
		int kind = (int)rnd(8);
		counts[kind]++;
		switch (kind) {
		case 0: case 1: { /* write */
			uint64_t o = rnd(maxsz), l = 1 + rnd(8 * bs);
			if (o + l > maxsz)
				l = maxsz - o;
			if (l)
				do_write(&c, i, o, l, (uint64_t)op);
			break;
		}
		case 2: case 3: { /* clone range (aligned, maybe to src EOF) */
			if (!n->size)
				break;
			uint64_t nblk = (n->size + bs - 1) / bs;
			uint64_t so = rnd(nblk) * bs;
			uint64_t len = rnd(4) == 0 ? 0 : (1 + rnd(nblk - so / bs)) * bs;
			uint64_t count = len ? len : n->size - so;
			if (so + count > n->size) {
				count = n->size - so; /* end at EOF: partial block */
				len = count;
			}
			uint64_t dO = rnd(maxsz / bs) * bs;
			if (dO + count > maxsz + bs)
				break;
			if (i == j && dO < so + ((count + bs - 1) / bs) * bs &&
			    so < dO + ((count + bs - 1) / bs) * bs) {
				assert_int_equal(rlfs_clone_range(mp, n->ino, so, m->ino, dO, len, 0),
						 -EINVAL);
				break;
			}
			if ((count % bs) && dO + count < m->size) {
				assert_int_equal(rlfs_clone_range(mp, n->ino, so, m->ino, dO, len, 0),
						 -EINVAL);
				break;
			}
			do_clone(&c, j, so, i, dO, len);
			break;
		}
		case 4: { /* clone the aligned middle + write head/tail */
			/* The library has no copy_file_range: this is the test's
			 * own composition of rlfs_clone_range and rlfs_write, the
			 * way the daemon's rl_copy_file_range composes them (the
			 * daemon's path itself runs in the integration tests, fsx
			 * op 'x').  Whole blocks inside [so, so+l) are always
			 * clonable here, so they are always cloned. */
			if (!n->size || i == j)
				break;
			uint64_t so = rnd(n->size), l = 1 + rnd(n->size - so);
			uint64_t dO = (so % bs) + rnd(maxsz / bs - 1) * bs; /* same alignment */
			if (dO + l > maxsz)
				break;
			uint64_t a0 = (so + bs - 1) / bs * bs, a1 = (so + l) / bs * bs;
			uint8_t *tmp = malloc(l);
			memcpy(tmp, n->data + so, l);
			if (a1 > a0) {
				int64_t r = rlfs_clone_range(mp, n->ino, a0, m->ino, dO + (a0 - so),
							     a1 - a0, 0);
				assert_int_equal(r, (int64_t)(a1 - a0));
				if (a0 > so)
					assert_int_equal(rlfs_write(mp, m->ino, tmp, a0 - so,
								    (off_t)dO),
							 (ssize_t)(a0 - so));
				if (so + l > a1)
					assert_int_equal(rlfs_write(mp, m->ino, tmp + (a1 - so),
								    so + l - a1,
								    (off_t)(dO + (a1 - so))),
							 (ssize_t)(so + l - a1));
			} else {
				assert_int_equal(rlfs_write(mp, m->ino, tmp, l, (off_t)dO),
						 (ssize_t)l);
			}
			mf_reserve(m, dO + l);
			memcpy(m->data + dO, tmp, l);
			if (dO + l > m->size)
				m->size = dO + l;
			free(tmp);
			break;
		}
		case 5: { /* unshare */
			uint64_t o = rnd(maxsz), l = 1 + rnd(16 * bs);
			int mode = FALLOC_FL_UNSHARE_RANGE | (rnd(2) ? FALLOC_FL_KEEP_SIZE : 0);
			if (o + l > maxsz)
				break;
			assert_int_equal(rlfs_fallocate(mp, m->ino, mode, (off_t)o, (off_t)l), 0);
			if (!(mode & FALLOC_FL_KEEP_SIZE) && o + l > m->size)
				mf_setsize(m, o + l);
			break;
		}
		case 6: { /* punch or zero */
			uint64_t o = rnd(maxsz), l = 1 + rnd(8 * bs);
			if (o + l > maxsz)
				break;
			int mode = rnd(2) ? (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)
					  : (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
			assert_int_equal(rlfs_fallocate(mp, m->ino, mode, (off_t)o, (off_t)l), 0);
			if (o < m->size)
				memset(m->data + o, 0, (size_t)RLFS_MIN(l, m->size - o));
			break;
		}
		case 7: { /* truncate */
			uint64_t s = rnd(maxsz);
			struct stat st = { .st_size = (off_t)s };
			assert_int_equal(rlfs_setattr(mp, m->ino, &st, RLFS_SET_SIZE, NULL), 0);
			mf_setsize(m, s);
			break;
		}
		}
		if (op % 50 == 49)
			check_fs(&c);
		if (op % 400 == 399) {
			tu_remount(&c.fs);
			mp = MP(&c);
		}
	}
	print_message("ops: write %d clone %d copy %d unshare %d punch/zero %d trunc %d\n",
		      counts[0] + counts[1], counts[2] + counts[3], counts[4], counts[5],
		      counts[6], counts[7]);
	check_fs(&c);
	run_fsck(&c);
	while (c.nf)
		rmfile(&c, c.nf - 1);
	assert_int_equal(bfree(&c), free0);
	ctx_fini(&c);
}

static void test_random_1k(void **state)
{
	random_run(32 * MB, 1024, 2000);
}

static void test_random_4k(void **state)
{
	random_run(64 * MB, 4096, 1200);
}

int main(void)
{
	seed_from_env();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clone_modify),
		cmocka_unit_test(test_many_clones),
		cmocka_unit_test(test_usage),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_len0),
		cmocka_unit_test(test_eof),
		cmocka_unit_test(test_eof2),
		cmocka_unit_test(test_self),
		cmocka_unit_test(test_overlap_patterns),
		cmocka_unit_test(test_unshare_punch),
		cmocka_unit_test(test_extents),
		cmocka_unit_test(test_noreflink),
		cmocka_unit_test(test_full_ag),
		cmocka_unit_test(test_ag_resv_metadata),
		cmocka_unit_test(test_times_suid),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_enospc),
		cmocka_unit_test(test_many_extents),
		cmocka_unit_test(test_cow_bounded),
		cmocka_unit_test(test_dedupe),
		cmocka_unit_test(test_clone_cancel),
		cmocka_unit_test(test_clone_source_readable),
		cmocka_unit_test(test_unmount_clean_last),
		cmocka_unit_test(test_random_1k),
		cmocka_unit_test(test_random_4k),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

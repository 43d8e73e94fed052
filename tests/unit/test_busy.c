/*
 * test_busy.c: busy extents and busy inodes (lib/busy.c): a block or an
 * inode number freed in a transaction is not handed to a new owner until
 * the freeing transaction is durable.
 *
 * The crash tests simulate a kill -9 of the daemon: file data goes to the
 * device in place at once, metadata only at the next metadata flush, so a
 * copy of the image taken while still mounted (without a flush) is what a
 * killed daemon leaves.  The copy is mounted and the file that was fsync'd
 * before must still hold its bytes, not the bytes of a file created after
 * it was truncated or unlinked (issue 10: "truncate f60; create f147").
 *
 * Also: inode numbers are not reused before the free is durable (and are
 * after it), no ENOSPC while busy space exists (the allocator forces the
 * frees to disk and retries), and the allocator never returns a busy block.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/ioctl.h"
#include "alloc.h"
#include "busy.h"
#include "trans.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define FILE_BYTES (256 * KiB)

static uint64_t mkfile(struct rlfs_mount *mp, const char *name)
{
	struct stat st;
	assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), name, S_IFREG | 0644, 0, 0, 0, &st), 0);
	rlfs_forget(mp, st.st_ino, 1);
	return st.st_ino;
}

static uint64_t mkdir_at(struct rlfs_mount *mp, const char *name)
{
	struct stat st;
	assert_int_equal(rlfs_mkdir(mp, rlfs_root_ino(mp), name, 0755, 0, 0, &st), 0);
	rlfs_forget(mp, st.st_ino, 1);
	return st.st_ino;
}

/* The crash image: the summary counters may need a recount (v1 writes them
 * only at unmount: fsck exit 1), nothing else; then it checks clean. */
static void crash_fsck(const char *copy)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "%s fsck %s >/dev/null 2>&1", tu_fsck_bin(), copy);
	int rc = system(cmd);
	assert_true(WIFEXITED(rc) && (WEXITSTATUS(rc) == 0 || WEXITSTATUS(rc) == 1));
	assert_int_equal(tu_fsck(copy, 0), 0);
}

/* Mount the crash copy and check that ino holds FILE_BYTES of byte. */
static void check_crash_file(const char *copy, uint64_t ino, uint8_t byte)
{
	struct rlfs_mount *cmp;
	struct stat st;
	assert_int_equal(rlfs_mount_open(copy, RLFS_MOUNT_NOLOCK, &cmp), 0);
	assert_int_equal(rlfs_getattr(cmp, ino, &st), 0);
	assert_int_equal(st.st_size, FILE_BYTES);
	uint8_t *rd = malloc(FILE_BYTES);
	assert_non_null(rd);
	assert_int_equal(rlfs_read(cmp, ino, rd, FILE_BYTES, 0), (ssize_t)FILE_BYTES);
	for (size_t i = 0; i < FILE_BYTES; i++)
		if (rd[i] != byte)
			fail_msg("after the crash, byte %zu of the fsync'd file is %#x, not %#x "
				 "(another file's data)", i, rd[i], byte);
	free(rd);
	assert_int_equal(rlfs_mount_close(cmp), 0);
}

enum how { BY_TRUNCATE, BY_UNLINK };

/* f60 written and fsync'd; then f60 truncated (or unlinked) and f147
 * created and written, no flush; the daemon dies.  f60 must be intact. */
static void crash_after_free(enum how how)
{
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MiB, 4096, 1);
	uint64_t f60 = mkfile(fs.mp, "f60");
	tu_fill(fs.mp, f60, 0x60, FILE_BYTES);
	assert_int_equal(rlfs_fsync(fs.mp, f60, 0), 0);

	if (how == BY_TRUNCATE) {
		struct stat st = { .st_size = 0 };
		assert_int_equal(rlfs_setattr(fs.mp, f60, &st, RLFS_SET_SIZE, NULL), 0);
	} else {
		assert_int_equal(rlfs_unlink(fs.mp, rlfs_root_ino(fs.mp), "f60"), 0);
	}
	uint64_t f147 = mkfile(fs.mp, "f147");
	tu_fill(fs.mp, f147, 0x47, FILE_BYTES);

	char copy[96];
	tu_crash_copy(&fs, ".crash", copy, sizeof(copy));
	tu_unmount(&fs);
	crash_fsck(copy);
	check_crash_file(copy, f60, 0x60);
	unlink(copy);
}

static void test_crash_truncate_create(void **state)
{
	(void)state;
	crash_after_free(BY_TRUNCATE);
}

static void test_crash_unlink_create(void **state)
{
	(void)state;
	crash_after_free(BY_UNLINK);
}

/* Unshare-busy (busy.h): f60 and its clone c are durable and share their
 * blocks; c is unlinked (or truncated: refcount 2 -> 1, not yet durable)
 * and f60 is rewritten; the daemon dies.  c comes back with the crash and
 * must still hold f60's old bytes: f60's rewrite had to copy on write,
 * not overwrite the blocks the durable trees still give to c.  Then, once
 * the unlink is durable, a rewrite of f60 goes in place again. */
static void crash_after_unshare(enum how how)
{
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MiB, 4096, 1);
	uint64_t f60 = mkfile(fs.mp, "f60");
	tu_fill(fs.mp, f60, 0x60, FILE_BYTES);
	uint64_t c = mkfile(fs.mp, "c");
	assert_int_equal(rlfs_clone_range(fs.mp, f60, 0, c, 0, FILE_BYTES, 0), (int64_t)FILE_BYTES);
	assert_int_equal(rlfs_sync(fs.mp), 0);

	if (how == BY_TRUNCATE) {
		struct stat st = { .st_size = 0 };
		assert_int_equal(rlfs_setattr(fs.mp, c, &st, RLFS_SET_SIZE, NULL), 0);
	} else {
		assert_int_equal(rlfs_unlink(fs.mp, rlfs_root_ino(fs.mp), "c"), 0);
	}
	assert_true(rlfs_busy_unshared_blocks(fs.mp) >= FILE_BYTES / 4096);
	struct rlfs_ioc_extent before, after;
	uint32_t n;
	assert_int_equal(rlfs_get_extents(fs.mp, f60, 0, 4096, &before, 1, &n), 0);
	tu_fill(fs.mp, f60, 0x47, FILE_BYTES);
	assert_int_equal(rlfs_get_extents(fs.mp, f60, 0, 4096, &after, 1, &n), 0);
	assert_int_not_equal(before.physical, after.physical);

	char copy[96];
	tu_crash_copy(&fs, ".crash", copy, sizeof(copy));
	/* durable now: no more unshare-busy blocks, and writes go in place */
	assert_int_equal(rlfs_sync(fs.mp), 0);
	assert_int_equal(rlfs_busy_unshared_blocks(fs.mp), 0);
	tu_fill(fs.mp, f60, 0x48, FILE_BYTES);
	assert_int_equal(rlfs_get_extents(fs.mp, f60, 0, 4096, &before, 1, &n), 0);
	assert_int_equal(before.physical, after.physical);
	tu_unmount(&fs);
	crash_fsck(copy);
	check_crash_file(copy, c, 0x60);
	unlink(copy);
}

static void test_crash_unshare_unlink(void **state)
{
	(void)state;
	crash_after_unshare(BY_UNLINK);
}

static void test_crash_unshare_truncate(void **state)
{
	(void)state;
	crash_after_unshare(BY_TRUNCATE);
}

/* A freed inode number is not given to a new file or directory before the
 * free is durable; after a flush it may be (busy inodes do not leak). */
static void test_inode_not_reused(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MiB, 4096, 1);
	uint64_t victim = mkfile(fs.mp, "victim");
	tu_fill(fs.mp, victim, 0x11, FILE_BYTES);
	assert_int_equal(rlfs_sync(fs.mp), 0);

	assert_int_equal(rlfs_unlink(fs.mp, rlfs_root_ino(fs.mp), "victim"), 0);
	uint64_t f = mkfile(fs.mp, "newfile");
	uint64_t d = mkdir_at(fs.mp, "newdir");
	assert_true(f != victim);
	assert_true(d != victim);
	/* the unlink is not durable: a crash now still has the old file */
	char copy[96];
	tu_crash_copy(&fs, ".crash", copy, sizeof(copy));
	crash_fsck(copy);
	check_crash_file(copy, victim, 0x11);
	unlink(copy);

	/* durable now: the number is free for reuse (lowest free slot) */
	assert_int_equal(rlfs_sync(fs.mp), 0);
	uint64_t g = mkfile(fs.mp, "after");
	assert_int_equal(g, victim);
	tu_unmount(&fs);
}

/* Inside the library: a block freed by a committed transaction is not
 * returned by the allocator until a flush made the free durable; the busy
 * extent is then gone. */
static void test_alloc_skips_busy(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MiB, 4096, 1);
	struct rlfs_mount *mp = fs.mp;
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_sync(mp), 0);

	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 64, 0, &tp), 0);
	struct rlfs_alloc_arg a = { .tp = tp, .type = RLFS_ALLOC_NEAR, .hint_fsbno = 1000,
				    .minlen = 16, .maxlen = 16, .alignment = 1 };
	assert_int_equal(rlfs_alloc_extent(&a), 0);
	uint64_t got = a.fsbno;
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(rlfs_sync(mp), 0);

	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 64, 0, &tp), 0);
	assert_int_equal(rlfs_free_extent(tp, got, 16), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(rlfs_busy_blocks(mp), 16);

	/* EXACT at the freed block: busy, refused */
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 64, 0, &tp), 0);
	a = (struct rlfs_alloc_arg){ .tp = tp, .type = RLFS_ALLOC_EXACT, .hint_fsbno = got,
				     .minlen = 1, .maxlen = 16, .alignment = 1 };
	assert_int_equal(rlfs_alloc_extent(&a), -ENOSPC);
	/* NEAR at it: somewhere else, not overlapping */
	a = (struct rlfs_alloc_arg){ .tp = tp, .type = RLFS_ALLOC_NEAR, .hint_fsbno = got,
				     .minlen = 16, .maxlen = 16, .alignment = 1 };
	assert_int_equal(rlfs_alloc_extent(&a), 0);
	assert_true(a.fsbno + a.len <= got || a.fsbno >= got + 16);
	rlfs_trans_cancel(tp);

	/* durable: no longer busy, EXACT gets it */
	assert_int_equal(rlfs_sync(mp), 0);
	assert_int_equal(rlfs_busy_blocks(mp), 0);
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 64, 0, &tp), 0);
	a = (struct rlfs_alloc_arg){ .tp = tp, .type = RLFS_ALLOC_EXACT, .hint_fsbno = got,
				     .minlen = 16, .maxlen = 16, .alignment = 1 };
	assert_int_equal(rlfs_alloc_extent(&a), 0);
	assert_int_equal(a.fsbno, got);
	rlfs_trans_cancel(tp);
	tu_unmount(&fs);
}

/* A free record cut into many busy pieces (a run whose odd blocks were
 * freed long ago and even ones just now): the allocator looks at
 * RLFS_ALLOC_PIECES_MAX pieces of it, no more, and the next allocation
 * makes the frees durable first (one force), after which the space is
 * whole again. */
static void test_busy_heavy_forces(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MiB, 4096, 1);
	struct rlfs_mount *mp = fs.mp;
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_sync(mp), 0);
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 700, 0, &tp), 0);
	struct rlfs_alloc_arg a = { .tp = tp, .type = RLFS_ALLOC_NEAR, .hint_fsbno = 2000,
				    .minlen = 600, .maxlen = 600, .alignment = 1 };
	assert_int_equal(rlfs_alloc_extent(&a), 0);
	uint64_t run = a.fsbno;
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(rlfs_sync(mp), 0);
	for (uint64_t first = 1; first != 2; first = first ? 0 : 2) {
		/* odd blocks, made durable (not busy); then even ones, busy */
		assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 64, RLFS_TRANS_RESERVE, &tp),
				 0);
		for (uint64_t b = run + first; b < run + 600; b += 2)
			assert_int_equal(rlfs_free_extent(tp, b, 1), 0);
		assert_int_equal(rlfs_trans_commit(tp), 0);
		if (first)
			assert_int_equal(rlfs_sync(mp), 0);
	}
	assert_int_equal(rlfs_busy_blocks(mp), 300);
	uint64_t forces = rlfs_busy_forces(mp);
	/* near the run's end: its record, 600 blocks in 300 busy and 300
	 * free pieces, is walked from the left towards the hint */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 64, 0, &tp), 0);
		a = (struct rlfs_alloc_arg){ .tp = tp, .type = RLFS_ALLOC_NEAR,
					     .hint_fsbno = run + 599, .minlen = 1, .maxlen = 1,
					     .alignment = 1 };
		assert_int_equal(rlfs_alloc_extent(&a), 0);
		assert_int_equal(rlfs_trans_commit(tp), 0);
	}
	/* the second allocation forced the frees durable: nothing busy */
	assert_int_equal(rlfs_busy_forces(mp), forces + 1);
	assert_int_equal(rlfs_busy_blocks(mp), 0);
	tu_unmount(&fs);
}

/* rlfs_busy_force from inside an open transaction that has changed
 * buffers holding committed but unwritten changes (the AG header): the
 * committed state goes to disk, not the open transaction's; the busy
 * extents of the committed free are gone; cancel leaves memory == disk. */
static void force_inside_trans(bool log)
{
	struct tu_fs fs;
	tu_mkfs_log = log ? 0 : -1;
	tu_mkfs_mount(&fs, 64 * MiB, 4096, 1);
	tu_mkfs_log = 0;
	struct rlfs_mount *mp = fs.mp;
	struct rlfs_trans *tp;
	struct rlfs_alloc_arg a = { .type = RLFS_ALLOC_NEAR, .hint_fsbno = 2000, .minlen = 64,
				    .maxlen = 64, .alignment = 1 };
	/* a file owns nothing here: allocate and commit, flush, free, commit:
	 * the free is committed, not durable */
	uint64_t victim = mkfile(mp, "v");
	tu_fill(mp, victim, 0x22, FILE_BYTES);
	assert_int_equal(rlfs_sync(mp), 0);
	assert_int_equal(rlfs_unlink(mp, rlfs_root_ino(mp), "v"), 0);
	assert_true(rlfs_busy_blocks(mp) >= FILE_BYTES / 4096);
	assert_true(rlfs_busy_forceable(mp));

	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 128, 0, &tp), 0);
	a.tp = tp;
	assert_int_equal(rlfs_alloc_extent(&a), 0); /* AG header now logged in tp */
	/* without a log the header holds committed changes not yet on disk
	 * (dirty) that tp has changed again; with the log those are in the
	 * CIL and tp's changes stay out of it until commit */
	bool dirty_logged = false;
	for (struct rlfs_buf *bp = tp->bufs; bp; bp = bp->tnext)
		dirty_logged |= bp->logged && (bp->flags & RLFS_BUF_DIRTY);
	assert_true(dirty_logged == !log);
	uint64_t forces = rlfs_busy_forces(mp);
	assert_int_equal(rlfs_busy_force(tp), 0);
	assert_int_equal(rlfs_busy_forces(mp), forces + 1);
	assert_int_equal(rlfs_busy_blocks(mp), 0);
	/* the image now: the unlink is there, tp's allocation is not (fsck
	 * would find its 64 blocks allocated to nobody) */
	char copy[96];
	tu_crash_copy(&fs, ".crash", copy, sizeof(copy));
	rlfs_trans_cancel(tp);
	crash_fsck(copy);
	struct rlfs_mount *cmp;
	struct stat st;
	assert_int_equal(rlfs_mount_open(copy, RLFS_MOUNT_NOLOCK, &cmp), 0);
	assert_int_equal(rlfs_lookup(cmp, rlfs_root_ino(cmp), "v", &st), -ENOENT);
	assert_int_equal(rlfs_mount_close(cmp), 0);
	unlink(copy);
	/* and the live mount after the cancel */
	tu_unmount(&fs);
}

static void test_force_inside_trans(void **state)
{
	(void)state;
	force_inside_trans(false);
}

static void test_force_inside_trans_log(void **state)
{
	(void)state;
	force_inside_trans(true);
}

/* A full filesystem, one big file deleted, then written again at once (no
 * flush in between): the allocator finds only busy space, forces the frees
 * to disk and goes on; no ENOSPC while busy space exists.  The image is
 * consistent at every point a crash could hit. */
static void test_no_enospc_while_busy(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 32 * MiB, 4096, 1);
	struct rlfs_mount *mp = fs.mp;
	size_t chunk = 256 * KiB;
	uint8_t *buf = malloc(chunk);
	assert_non_null(buf);
	memset(buf, 0xaa, chunk);
	uint64_t big = mkfile(mp, "big");
	uint64_t first = 0;
	for (;;) {
		ssize_t n = rlfs_write(mp, big, buf, chunk, (off_t)first);
		if (n <= 0) {
			assert_int_equal(n, -ENOSPC);
			break;
		}
		first += (uint64_t)n;
	}
	assert_true(first > 16 * MiB);
	assert_int_equal(rlfs_sync(mp), 0);
	assert_int_equal(rlfs_unlink(mp, rlfs_root_ino(mp), "big"), 0);
	assert_true(rlfs_busy_blocks(mp) > 0);

	memset(buf, 0xbb, chunk);
	uint64_t again = mkfile(mp, "again"), second = 0;
	for (;;) {
		ssize_t n = rlfs_write(mp, again, buf, chunk, (off_t)second);
		if (n <= 0) {
			assert_int_equal(n, -ENOSPC);
			break;
		}
		second += (uint64_t)n;
	}
	/* the allocator had to force the frees to disk at least once */
	assert_true(rlfs_busy_forces(mp) > 0);
	/* the same space again, give or take the metadata of the first */
	if (second + 256 * KiB < first)
		fail_msg("second fill got %llu bytes, the first %llu: ENOSPC with busy space",
			 (unsigned long long)second, (unsigned long long)first);
	char copy[96];
	tu_crash_copy(&fs, ".crash", copy, sizeof(copy));
	crash_fsck(copy);
	unlink(copy);
	free(buf);
	tu_unmount(&fs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crash_truncate_create),
		cmocka_unit_test(test_crash_unlink_create),
		cmocka_unit_test(test_crash_unshare_unlink),
		cmocka_unit_test(test_crash_unshare_truncate),
		cmocka_unit_test(test_inode_not_reused),
		cmocka_unit_test(test_alloc_skips_busy),
		cmocka_unit_test(test_busy_heavy_forces),
		cmocka_unit_test(test_force_inside_trans),
		cmocka_unit_test(test_force_inside_trans_log),
		cmocka_unit_test(test_no_enospc_while_busy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

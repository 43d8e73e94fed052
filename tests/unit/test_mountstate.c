/*
 * test_mountstate.c: what the mount options and file handles need from the
 * library, in-process on a fresh image:
 *   - the atime rule (relatime / strictatime / noatime, the 24-hour rule
 *     that integration tests cannot wait for) and rlfs_touch_atime (ctime
 *     kept, the noatime inode flag, persistence);
 *   - remount: read-only flushes and marks the image clean (fsck clean on
 *     a copy while still mounted), refuses writes and atime updates;
 *     read-write again, also for a mount opened read-only; an unlinked
 *     file forgotten while read-only is freed at remount read-write or at
 *     unmount, not leaked;
 *   - generations: a reused inode slot gets a new one; rlfs_lookup_ino
 *     answers -ENOENT for free, deleted and made-up inode numbers, and
 *     for an orphan a crash left on disk (not corruption).
 */
#include "testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "inode.h"
#include "trans.h"

static struct timespec ts(time_t s, long ns)
{
	struct timespec t = { .tv_sec = s, .tv_nsec = ns };
	return t;
}

static void test_atime_rule(void **state)
{
	(void)state;
	struct timespec now = ts(1000000, 500);
	struct timespec old = ts(1000000 - 3600, 0), older = ts(1000000 - 7200, 0);
	struct timespec day_old = ts(1000000 - RLFS_RELATIME_SECS, 500);
	struct timespec fresh = ts(1000000 - RLFS_RELATIME_SECS + 1, 0);
	/* relatime: atime not after mtime or ctime */
	assert_true(rlfs_atime_rule(RLFS_ATIME_RELATIME, &older, &old, &older, &now));
	assert_true(rlfs_atime_rule(RLFS_ATIME_RELATIME, &old, &older, &old, &now));
	assert_true(rlfs_atime_rule(RLFS_ATIME_RELATIME, &old, &old, &older, &now));
	/* newer than both and under a day old: no */
	assert_false(rlfs_atime_rule(RLFS_ATIME_RELATIME, &old, &older, &older, &now));
	/* a day old (seconds compared, as relatime_need_update does) */
	struct timespec ancient = ts(1000000 - 2 * RLFS_RELATIME_SECS, 0);
	assert_false(rlfs_atime_rule(RLFS_ATIME_RELATIME, &fresh, &ancient, &ancient, &now));
	assert_true(rlfs_atime_rule(RLFS_ATIME_RELATIME, &day_old, &ancient, &ancient, &now));
	/* atime == now: never */
	assert_false(rlfs_atime_rule(RLFS_ATIME_RELATIME, &now, &now, &now, &now));
	assert_false(rlfs_atime_rule(RLFS_ATIME_STRICT, &now, &older, &older, &now));
	/* strict: any other atime, also one in the future */
	struct timespec future = ts(1000000 + 10, 0);
	assert_true(rlfs_atime_rule(RLFS_ATIME_STRICT, &old, &older, &older, &now));
	assert_true(rlfs_atime_rule(RLFS_ATIME_STRICT, &future, &older, &older, &now));
	assert_false(rlfs_atime_rule(RLFS_ATIME_RELATIME, &future, &older, &older, &now));
	/* noatime */
	assert_false(rlfs_atime_rule(RLFS_ATIME_NOATIME, &older, &now, &now, &now));
}

static uint64_t mkfile(struct tu_fs *fs, const char *name, bool keep_lookup)
{
	struct stat st;
	assert_int_equal(rlfs_mknod(fs->mp, rlfs_root_ino(fs->mp), name, S_IFREG | 0644, 0, 0, 0,
				    &st), 0);
	if (!keep_lookup)
		rlfs_forget(fs->mp, st.st_ino, 1);
	return st.st_ino;
}

static void set_atime(struct tu_fs *fs, uint64_t ino, time_t sec)
{
	struct stat st = { 0 };
	st.st_atim = ts(sec, 0);
	assert_int_equal(rlfs_setattr(fs->mp, ino, &st, RLFS_SET_ATIME, NULL), 0);
}

static void test_touch_atime(void **state)
{
	(void)state;
	struct tu_fs fs;
	struct stat a, b;
	tu_mkfs_mount(&fs, 64 << 20, 0, 0);
	uint64_t ino = mkfile(&fs, "f", false);
	assert_int_equal(rlfs_write(fs.mp, ino, "data", 4, 0), 4);
	set_atime(&fs, ino, time(NULL) - 7200);         /* older than mtime */
	assert_int_equal(rlfs_getattr(fs.mp, ino, &a), 0);
	assert_int_equal(rlfs_atime_needs_update(fs.mp, ino, RLFS_ATIME_RELATIME), 1);
	assert_int_equal(rlfs_touch_atime(fs.mp, ino, RLFS_ATIME_RELATIME), 1);
	assert_int_equal(rlfs_getattr(fs.mp, ino, &b), 0);
	assert_true(b.st_atim.tv_sec >= time(NULL) - 5);
	/* ctime and mtime stay */
	assert_int_equal(b.st_ctim.tv_sec, a.st_ctim.tv_sec);
	assert_int_equal(b.st_ctim.tv_nsec, a.st_ctim.tv_nsec);
	assert_int_equal(b.st_mtim.tv_nsec, a.st_mtim.tv_nsec);
	/* now newer than mtime/ctime: relatime says no, noatime never */
	assert_int_equal(rlfs_atime_needs_update(fs.mp, ino, RLFS_ATIME_RELATIME), 0);
	assert_int_equal(rlfs_touch_atime(fs.mp, ino, RLFS_ATIME_RELATIME), 0);
	assert_int_equal(rlfs_touch_atime(fs.mp, ino, RLFS_ATIME_NOATIME), 0);
	/* strict: yes, once the clock has moved */
	struct timespec pause = { 0, 2 * 1000 * 1000 };
	nanosleep(&pause, NULL);
	assert_int_equal(rlfs_touch_atime(fs.mp, ino, RLFS_ATIME_STRICT), 1);
	assert_int_equal(rlfs_getattr(fs.mp, ino, &a), 0);
	/* persists */
	tu_remount(&fs);
	assert_int_equal(rlfs_getattr(fs.mp, ino, &b), 0);
	assert_int_equal(b.st_atim.tv_sec, a.st_atim.tv_sec);
	assert_int_equal(b.st_atim.tv_nsec, a.st_atim.tv_nsec);
	/* the noatime inode flag (FS_NOATIME_FL) */
	struct rlfs_inode *ip;
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_iget(fs.mp, ino, &ip), 0);
	pthread_rwlock_wrlock(&ip->iolock);
	assert_int_equal(rlfs_trans_alloc(fs.mp, &fs.mp->resv.tr_fsck, 0, 0, &tp), 0);
	rlfs_trans_ijoin(tp, ip);
	ip->flags |= RLFS_DIFLAG_NOATIME;
	rlfs_trans_log_inode(tp, ip);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	set_atime(&fs, ino, time(NULL) - 7200);
	assert_int_equal(rlfs_atime_needs_update(fs.mp, ino, RLFS_ATIME_STRICT), 0);
	assert_int_equal(rlfs_touch_atime(fs.mp, ino, RLFS_ATIME_STRICT), 0);
	assert_int_equal(rlfs_touch_atime(fs.mp, 0, RLFS_ATIME_STRICT), -ENOENT);
	tu_unmount(&fs);
}

static uint32_t sb_state(const char *path)
{
	struct rlfs_sb sb;
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &sb, sizeof(sb), 0), (ssize_t)sizeof(sb));
	close(fd);
	return rlfs_get32(sb.state);
}

/* fsck -n of a copy of the image (the mount keeps running) */
static void fsck_copy(struct tu_fs *fs, int expect)
{
	char copy[96];
	tu_crash_copy(fs, ".copy", copy, sizeof(copy));
	assert_int_equal(tu_fsck(copy, expect), expect);
	unlink(copy);
}

static void test_remount(void **state)
{
	(void)state;
	struct tu_fs fs;
	char buf[8];
	tu_mkfs_mount(&fs, 64 << 20, 0, 0);
	uint64_t ino = mkfile(&fs, "f", false);
	assert_int_equal(rlfs_write(fs.mp, ino, "before", 6, 0), 6);
	assert_int_equal(sb_state(fs.path), RLFS_STATE_DIRTY);
	assert_false(rlfs_mount_is_rdonly(fs.mp));

	assert_int_equal(rlfs_mount_set_rdonly(fs.mp, true), 0);
	assert_true(rlfs_mount_is_rdonly(fs.mp));
	assert_int_equal(rlfs_mount_set_rdonly(fs.mp, true), 0);   /* idempotent */
	assert_int_equal(sb_state(fs.path), RLFS_STATE_CLEAN);
	fsck_copy(&fs, 0);
	assert_int_equal(rlfs_write(fs.mp, ino, "x", 1, 0), -EROFS);
	struct stat at = { 0 };
	assert_int_equal(rlfs_setattr(fs.mp, ino, &at, RLFS_SET_ATIME, NULL), -EROFS);
	assert_int_equal(rlfs_touch_atime(fs.mp, ino, RLFS_ATIME_STRICT), 0);
	assert_int_equal(rlfs_read(fs.mp, ino, buf, sizeof(buf), 0), 6);

	assert_int_equal(rlfs_mount_set_rdonly(fs.mp, false), 0);
	assert_false(rlfs_mount_is_rdonly(fs.mp));
	assert_int_equal(sb_state(fs.path), RLFS_STATE_DIRTY);
	assert_int_equal(rlfs_write(fs.mp, ino, "after!", 6, 0), 6);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	assert_int_equal(sb_state(fs.path), RLFS_STATE_CLEAN);
	assert_int_equal(tu_fsck(fs.path, 0), 0);

	/* opened read-only (the device too), then read-write */
	assert_int_equal(rlfs_mount_open(fs.path, RLFS_MOUNT_NOLOCK | RLFS_MOUNT_RDONLY, &fs.mp),
			 0);
	assert_true(rlfs_mount_is_rdonly(fs.mp));
	assert_int_equal(rlfs_write(fs.mp, ino, "x", 1, 0), -EROFS);
	assert_int_equal(rlfs_mount_set_rdonly(fs.mp, false), 0);
	assert_int_equal(rlfs_write(fs.mp, ino, "third.", 6, 0), 6);
	uint64_t ino2 = mkfile(&fs, "g", false);
	assert_int_equal(rlfs_write(fs.mp, ino2, "g", 1, 0), 1);
	tu_remount(&fs);
	assert_int_equal(rlfs_read(fs.mp, ino, buf, sizeof(buf), 0), 6);
	assert_memory_equal(buf, "third.", 6);
	tu_unmount(&fs);
}

static void test_remount_unlinked(void **state)
{
	(void)state;
	struct tu_fs fs;
	struct statvfs sv0, sv;
	tu_mkfs_mount(&fs, 64 << 20, 0, 0);
	mkfile(&fs, "keep", false);     /* the root directory has its block now */
	assert_int_equal(rlfs_statfs(fs.mp, &sv0), 0);
	for (int at_close = 0; at_close < 2; at_close++) {
		/* open-unlinked: the kernel still holds a lookup count */
		uint64_t ino = mkfile(&fs, "held", true);
		static char data[256 << 10];
		assert_int_equal(rlfs_write(fs.mp, ino, data, sizeof(data), 0), (ssize_t)sizeof(data));
		assert_int_equal(rlfs_unlink(fs.mp, rlfs_root_ino(fs.mp), "held"), 0);
		assert_int_equal(rlfs_mount_set_rdonly(fs.mp, true), 0);
		rlfs_forget(fs.mp, ino, 1);     /* the kernel's late FORGET */
		assert_int_equal(rlfs_statfs(fs.mp, &sv), 0);
		assert_true(sv.f_bfree < sv0.f_bfree);  /* not freed while read-only */
		assert_int_equal(sb_state(fs.path), RLFS_STATE_CLEAN);
		if (at_close) {
			tu_remount(&fs);
		} else {
			assert_int_equal(rlfs_mount_set_rdonly(fs.mp, false), 0);
		}
		assert_int_equal(rlfs_statfs(fs.mp, &sv), 0);
		assert_int_equal(sv.f_bfree, sv0.f_bfree);
		assert_int_equal(sv.f_files - sv.f_ffree, sv0.f_files - sv0.f_ffree);
	}
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	assert_int_equal(tu_fsck(fs.path, 0), 0);
	tu_unmount(&fs);
}

static void test_generation(void **state)
{
	(void)state;
	struct tu_fs fs;
	struct stat st;
	uint64_t gen, gen2, gen3;
	tu_mkfs_mount(&fs, 64 << 20, 0, 0);
	uint64_t ino = mkfile(&fs, "a", false);
	assert_int_equal(rlfs_get_generation(fs.mp, ino, &gen), 0);
	assert_int_equal(rlfs_lookup_ino(fs.mp, ino, &st, &gen2), 0);
	assert_int_equal(st.st_ino, ino);
	assert_true(gen2 == gen);
	rlfs_forget(fs.mp, ino, 1);
	/* freed: once the free is durable (busy inodes, lib/busy.h), the
	 * number is reused by the next file, with the next generation */
	assert_int_equal(rlfs_unlink(fs.mp, rlfs_root_ino(fs.mp), "a"), 0);
	assert_int_equal(rlfs_lookup_ino(fs.mp, ino, &st, NULL), -ENOENT);
	assert_int_equal(rlfs_get_generation(fs.mp, ino, &gen2), -ENOENT);
	assert_int_equal(rlfs_sync(fs.mp), 0);
	uint64_t ino2 = mkfile(&fs, "b", false);
	assert_int_equal(ino2, ino);
	assert_int_equal(rlfs_get_generation(fs.mp, ino2, &gen3), 0);
	assert_true(gen3 == gen + 1);
	tu_remount(&fs);
	assert_int_equal(rlfs_get_generation(fs.mp, ino2, &gen2), 0);
	assert_true(gen2 == gen3);
	/* deleted but held: not by number */
	uint64_t held = mkfile(&fs, "held", true);
	assert_int_equal(rlfs_unlink(fs.mp, rlfs_root_ino(fs.mp), "held"), 0);
	assert_int_equal(rlfs_lookup_ino(fs.mp, held, &st, NULL), -ENOENT);
	rlfs_forget(fs.mp, held, 1);
	/* made-up numbers */
	uint64_t bogus[] = { 0, 1, 2, 3 * 8, 7 * 8 + 3, (64ull << 20) / 4096 * 8 + 5, ~0ull,
			     ino + 40 };
	for (size_t i = 0; i < sizeof(bogus) / sizeof(bogus[0]); i++)
		assert_int_equal(rlfs_lookup_ino(fs.mp, bogus[i], &st, NULL), -ENOENT);
	/* the root */
	assert_int_equal(rlfs_lookup_ino(fs.mp, rlfs_root_ino(fs.mp), &st, NULL), 0);
	rlfs_forget(fs.mp, rlfs_root_ino(fs.mp), 1);
	assert_true(S_ISDIR(st.st_mode));
	tu_unmount(&fs);
}

/* An orphan on disk (a file unlinked while open when the filesystem
 * stopped: nlink 0, named nowhere) looked up by number, as for a file
 * handle, is -ENOENT: not corruption (rlfs_iget's validation would report
 * it and set the error record).  Found by rlfs-crashtest's meta workload. */
static void test_lookup_ino_orphan(void **state)
{
	(void)state;
	struct tu_fs fs;
	struct stat st;
	char copy[96];
	tu_mkfs_mount(&fs, 64 << 20, 0, 0);
	uint64_t held = mkfile(&fs, "held", true);
	assert_int_equal(rlfs_write(fs.mp, held, "data", 4, 0), 4);
	assert_int_equal(rlfs_unlink(fs.mp, rlfs_root_ino(fs.mp), "held"), 0);
	assert_int_equal(rlfs_fsync(fs.mp, held, 0), 0);
	assert_int_equal(rlfs_sync(fs.mp), 0);
	/* the crash: a copy of the image while the file is still held */
	tu_crash_copy(&fs, ".copy", copy, sizeof(copy));
	rlfs_forget(fs.mp, held, 1);
	tu_unmount(&fs);
	struct rlfs_mount *mp;
	/* read-only: a read-write mount would free it from the unlinked list
	 * first, and the lookup would never meet the orphan */
	assert_int_equal(rlfs_mount_open(copy, RLFS_MOUNT_NOLOCK | RLFS_MOUNT_RDONLY, &mp), 0);
	assert_int_equal(rlfs_lookup_ino(mp, held, &st, NULL), -ENOENT);
	assert_int_equal(rlfs_lookup_ino(mp, held, &st, NULL), -ENOENT);
	assert_false(mp->err.flags & RLFS_SB_ERR_CORRUPT);
	assert_int_equal(rlfs_mount_close(mp), 0);
	unlink(copy);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_atime_rule),
		cmocka_unit_test(test_touch_atime),
		cmocka_unit_test(test_remount),
		cmocka_unit_test(test_remount_unlinked),
		cmocka_unit_test(test_generation),
		cmocka_unit_test(test_lookup_ino_orphan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

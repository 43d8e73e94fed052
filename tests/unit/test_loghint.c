/*
 * test_loghint.c: the superblock's clean-log hint (sb.log_clean_lsn,
 * lib/recover.c clean_head).
 *
 * A clean unmount stores the LSN of its unmount record; the next mount
 * finds the log's head from it with two block reads instead of reading the
 * whole ring.  Checked here, on image files through the library:
 *   - mkfs leaves the hint at (1, 0); a mount zeroes it while the image is
 *     DIRTY; a clean unmount stores the LSN of a valid unmount record;
 *   - a scan from the hint finds what the full scan finds (tail, head,
 *     next sequence number, nothing to replay), and says it used the hint;
 *   - a stale hint (an older clean unmount's record, with later records
 *     after it: what an older binary that keeps the field leaves), a hint
 *     at a block that is not a record, one past the ring and one of cycle
 *     0 are all refused, and the full scan decides; mounting over a stale
 *     hint and writing leaves an image fsck finds clean;
 *   - an unmount record whose tail is behind it (a failed intent left in
 *     the log) is not a clean head: its hint is refused and the log replayed.
 */
#include "testutil.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "dev.h"
#include "log.h"
#include "trans.h"

static void read_sb(const char *path, uint8_t *blk, size_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, blk, len, 0), (ssize_t)len);
	close(fd);
}

static struct rlfs_sb sb_of(const char *path)
{
	struct rlfs_sb sb;
	read_sb(path, (uint8_t *)&sb, sizeof(sb));
	return sb;
}

/* Rewrite the primary superblock's state and hint (checksum updated). */
static void set_hint(const char *path, uint32_t state, uint64_t hint)
{
	struct rlfs_sb sb = sb_of(path);
	uint32_t bs = rlfs_get32(sb.blocksize);
	uint8_t *blk = malloc(bs);
	assert_non_null(blk);
	read_sb(path, blk, bs);
	struct rlfs_sb *p = (struct rlfs_sb *)blk;
	rlfs_put32(p->state, state);
	rlfs_put64(p->log_clean_lsn, hint);
	rlfs_cksum_update(blk, bs, RLFS_CRC_OFF);
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, blk, bs, 0), (ssize_t)bs);
	close(fd);
	free(blk);
}

/* The log scan of the image at path through a bare mount, with hint as
 * mp->log_clean_lsn (0: the full scan). */
static struct rlfs_log_scan scan_with(const char *path, uint64_t hint)
{
	struct rlfs_sb sb = sb_of(path);
	struct rlfs_dev *dev;
	assert_int_equal(rlfs_dev_open(path, 0, 0, &dev), 0);
	struct rlfs_mount *bare;
	assert_int_equal(rlfs_mount_alloc_bare(dev, rlfs_get32(sb.blocksize),
					       rlfs_get64(sb.dblocks), rlfs_get32(sb.agblocks),
					       &bare), 0);
	memcpy(bare->uuid, sb.hdr.uuid, RLFS_UUID_SIZE);
	bare->inodesize = rlfs_get16(sb.inodesize);
	bare->inopblock = rlfs_get16(sb.inopblock);
	bare->log_clean_lsn = hint;
	struct rlfs_log_scan scan;
	assert_int_equal(rlfs_log_recover(bare, rlfs_get64(sb.log_start),
					  rlfs_get32(sb.log_blocks), false, &scan, NULL), 0);
	assert_null(scan.intents);
	rlfs_mount_free_bare(bare);
	rlfs_dev_close(dev);
	return scan;
}

static void assert_same_scan(const struct rlfs_log_scan *a, const struct rlfs_log_scan *b)
{
	assert_int_equal(a->tail_lsn, b->tail_lsn);
	assert_int_equal(a->head_lsn, b->head_lsn);
	assert_int_equal(a->next_seq, b->next_seq);
	assert_int_equal(a->needs_replay, b->needs_replay);
	assert_int_equal(a->ckpts, b->ckpts);
}

/* A hint is used (and agrees with the full scan) or refused. */
static void check_hint(const char *path, uint64_t hint, bool used)
{
	struct rlfs_log_scan full = scan_with(path, 0), h = scan_with(path, hint);
	assert_false(full.from_hint);
	assert_int_equal(h.from_hint, used);
	assert_same_scan(&h, &full);
	assert_false(full.needs_replay);
}

static void write_files(struct rlfs_mount *mp, const char *prefix, int n)
{
	for (int i = 0; i < n; i++) {
		char name[32];
		struct stat st;
		snprintf(name, sizeof(name), "%s%d", prefix, i);
		assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), name, S_IFREG | 0644, 0, 0, 0,
					    &st), 0);
		tu_fill(mp, st.st_ino, (uint8_t)i, 8192);
		rlfs_forget(mp, st.st_ino, 1);
		if (i % 7 == 0)
			assert_int_equal(rlfs_fsync(mp, st.st_ino, 0), 0);
	}
	assert_int_equal(rlfs_sync(mp), 0);
}

/* Mount fs's image, write n files named prefix<i>, unmount cleanly;
 * the hint the unmount left. */
static uint64_t remount_write(struct tu_fs *fs, const char *prefix, int n)
{
	assert_int_equal(rlfs_mount_open(fs->path, RLFS_MOUNT_NOLOCK, &fs->mp), 0);
	write_files(fs->mp, prefix, n);
	assert_int_equal(rlfs_mount_close(fs->mp), 0);
	fs->mp = NULL;
	return rlfs_get64(sb_of(fs->path).log_clean_lsn);
}

static void test_hint_lifecycle(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 << 20, 0, 0);
	/* mounted: DIRTY, no hint */
	struct rlfs_sb sb = sb_of(fs.path);
	assert_int_equal(rlfs_get32(sb.state), RLFS_STATE_DIRTY);
	assert_int_equal(rlfs_get64(sb.log_clean_lsn), 0);
	write_files(fs.mp, "a", 40);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;

	sb = sb_of(fs.path);
	assert_int_equal(rlfs_get32(sb.state), RLFS_STATE_CLEAN);
	uint64_t h1 = rlfs_get64(sb.log_clean_lsn);
	assert_true(RLFS_LSN_CYCLE(h1) >= 1);
	assert_true(h1 > RLFS_LSN(1, 0)); /* records were written after mkfs's */
	check_hint(fs.path, h1, true);
	struct rlfs_log_scan s1 = scan_with(fs.path, h1);
	assert_int_equal(s1.tail_lsn, h1);

	/* a second mount from the hint, more records, a new hint */
	uint64_t h2 = remount_write(&fs, "b", 40);
	assert_true(h2 > h1);
	check_hint(fs.path, h2, true);

	/* the old hint now has records after it: refused, full scan */
	check_hint(fs.path, h1, false);
	/* not a record / past the ring / cycle 0 / a later cycle */
	uint32_t lb = rlfs_get32(sb.log_blocks);
	check_hint(fs.path, RLFS_LSN(RLFS_LSN_CYCLE(h2), RLFS_LSN_BLOCK(h2) + 3), false);
	check_hint(fs.path, RLFS_LSN(1, lb + 5), false);
	check_hint(fs.path, RLFS_LSN(0, RLFS_LSN_BLOCK(h2)), false);
	check_hint(fs.path, RLFS_LSN(RLFS_LSN_CYCLE(h2) + 1, RLFS_LSN_BLOCK(h2)), false);

	/* a mount over the stale hint (as an older binary leaves it) finds
	 * the real head: what it writes is found again, fsck clean */
	set_hint(fs.path, RLFS_STATE_CLEAN, h1);
	uint64_t h3 = remount_write(&fs, "c", 20);
	assert_true(h3 > h2);
	check_hint(fs.path, h3, true);
	assert_int_equal(tu_fsck(fs.path, 0), 0);

	/* a hint in a DIRTY superblock is not used by a mount (state first) */
	set_hint(fs.path, RLFS_STATE_DIRTY, h3);
	assert_int_equal(rlfs_mount_open(fs.path, RLFS_MOUNT_NOLOCK, &fs.mp), 0);
	assert_int_equal(fs.mp->log_clean_lsn, 0);
	tu_unmount(&fs);
}

/*
 * An unmount record that still needs earlier records (its tail before its
 * own LSN: an intent whose work failed stays in the log at unmount) is not
 * a clean head: a hint naming it is refused and the full scan replays what
 * the log holds.  Made here by writing such a record by hand after a
 * forced checkpoint that is not in place yet, then taking the image as a
 * kill -9 leaves it, marked CLEAN with the hint.
 */
static void test_hint_tail_behind(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 << 20, 0, 0);
	write_files(fs.mp, "a", 10);
	struct stat st;
	assert_int_equal(rlfs_mknod(fs.mp, rlfs_root_ino(fs.mp), "late", S_IFREG | 0644, 0, 0, 0,
				    &st), 0);
	tu_fill(fs.mp, st.st_ino, 0x77, 8192);
	assert_int_equal(rlfs_fsync(fs.mp, st.st_ino, 0), 0); /* in the log, not in place */
	rlfs_forget(fs.mp, st.st_ino, 1);
	struct rlfs_log *log = fs.mp->log;
	rlfs_meta_lock(fs.mp);
	rlfs_log_head_wrap(log);
	uint64_t lsn = rlfs_log_head_lsn(log);
	uint64_t tail = rlfs_log_ail_tail(log, lsn);
	assert_true(tail < lsn);
	assert_int_equal(rlfs_log_write_tail(log, RLFS_LREC_UNMOUNT, tail), 0);
	assert_int_equal(log->clean_lsn, 0); /* not a clean head: no hint */
	pthread_mutex_unlock(&fs.mp->meta_lock);
	char copy[PATH_MAX];
	tu_crash_copy(&fs, ".tail", copy, sizeof(copy));
	tu_unmount(&fs);

	set_hint(copy, RLFS_STATE_CLEAN, lsn);
	struct rlfs_log_scan full = scan_with(copy, 0), h = scan_with(copy, lsn);
	assert_true(full.needs_replay);
	assert_false(h.from_hint);
	assert_same_scan(&h, &full);
	/* mounted, the log is replayed: "late" is there with its data */
	struct rlfs_mount *mp;
	assert_int_equal(rlfs_mount_open(copy, RLFS_MOUNT_NOLOCK, &mp), 0);
	assert_int_equal(rlfs_lookup(mp, rlfs_root_ino(mp), "late", &st), 0);
	assert_int_equal(st.st_size, 8192);
	rlfs_forget(mp, st.st_ino, 1);
	assert_int_equal(rlfs_mount_close(mp), 0);
	assert_int_equal(tu_fsck(copy, 0), 0);
	unlink(copy);
}

static void test_hint_mkfs(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 << 20, 0, 0);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	/* a fresh image: the hint is mkfs's record until a mount; this one
	 * wrote nothing but its unmount record, right after it */
	check_hint(fs.path, rlfs_get64(sb_of(fs.path).log_clean_lsn), true);
	unlink(fs.path);

	char path[64];
	snprintf(path, sizeof(path), "/tmp/rlfs-loghint-%d.img", (int)getpid());
	struct rlfs_mkfs_opts o;
	memset(&o, 0, sizeof(o));
	o.size_bytes = 64 << 20;
	o.force = 1;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 64 << 20), 0);
	close(fd);
	assert_int_equal(rlfs_mkfs(path, &o), 0);
	struct rlfs_sb sb = sb_of(path);
	assert_int_equal(rlfs_get32(sb.state), RLFS_STATE_CLEAN);
	assert_int_equal(rlfs_get64(sb.log_clean_lsn), RLFS_LSN(1, 0));
	check_hint(path, RLFS_LSN(1, 0), true);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hint_lifecycle),
		cmocka_unit_test(test_hint_mkfs),
		cmocka_unit_test(test_hint_tail_behind),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

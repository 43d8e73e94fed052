/*
 * test_logcheck.c: the head check of log recovery (lib/recover.c,
 * later_record; docs/DESIGN.md "Log recovery: torn write or corruption").
 *
 * A record that fails its checks where the walk from the tail expects
 * the next one is either the torn write of the last checkpoint (nothing
 * valid and newer after it, or only records of that same checkpoint: the
 * head moves back before it and everything older is replayed) or
 * corruption (a valid record of a later checkpoint follows: the mount
 * refuses with -EUCLEAN and a message naming `fsck -L`; fsck -n reports
 * it, fsck refuses to replay, fsck -L zeroes the log).
 *
 * A "crash" is a copy of the image file taken while the mount is open.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"
#include "dev.h"
#include "log.h"
#include "reflinkfs/fs.h"

#define MiB (1ull << 20)

static uint64_t mkfile(struct rlfs_mount *mp, const char *name)
{
	struct stat st;
	assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), name, S_IFREG | 0644, 0, 0, 0, &st), 0);
	rlfs_forget(mp, st.st_ino, 1);
	return st.st_ino;
}

static bool exists(struct rlfs_mount *mp, const char *name)
{
	struct stat st;
	return rlfs_lookup(mp, rlfs_root_ino(mp), name, &st) == 0;
}

/* Flip one byte of path at off. */
static void flip_byte(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x5a;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

/* The whole file, malloc'd, *len set. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	char *buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = 0;
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* rlfs_mount_open of image with stderr captured into *out (malloc'd). */
static int mount_capture(const char *image, struct rlfs_mount **mpp, char **out)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/rlfs-logcheck-err-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	int saved = dup(2);
	assert_true(saved >= 0);
	assert_true(dup2(fd, 2) >= 0);
	int err = rlfs_mount_open(image, RLFS_MOUNT_NOLOCK, mpp);
	fflush(stderr);
	assert_true(dup2(saved, 2) >= 0);
	close(saved);
	close(fd);
	size_t len;
	*out = slurp(path, &len);
	unlink(path);
	fprintf(stderr, "%s", *out);
	return err;
}

/* `reflinkfs fsck ARGS IMAGE`: exit status, output into *out (malloc'd). */
static int fsck_capture(const char *args, const char *image, char **out)
{
	char cmd[1400], path[600];
	snprintf(path, sizeof(path), "%s.fsckout", image);
	snprintf(cmd, sizeof(cmd), "%s fsck %s %s >%s 2>&1", tu_fsck_bin(), args, image, path);
	int rc = system(cmd);
	assert_true(rc != -1 && WIFEXITED(rc));
	size_t len;
	*out = slurp(path, &len);
	unlink(path);
	fprintf(stderr, "fsck %s: exit %d:\n%s", args, WEXITSTATUS(rc), *out);
	return WEXITSTATUS(rc);
}

/* Three fsync'd files, each its own checkpoint; *ck[i] = the LSN where
 * file i's checkpoint starts.  The crash copy goes to crash. */
static void three_checkpoints(struct tu_fs *fs, uint64_t ck[3], char *crash, size_t len)
{
	static const char *names[3] = { "first", "second", "third" };
	tu_mkfs_mount(fs, 64 * MiB, 0, 0);
	for (int i = 0; i < 3; i++) {
		rlfs_log_head_wrap(fs->mp->log);
		ck[i] = rlfs_log_head_lsn(fs->mp->log);
		uint64_t ino = mkfile(fs->mp, names[i]);
		assert_int_equal(rlfs_fsync(fs->mp, ino, 0), 0);
	}
	tu_crash_copy(fs, ".crash", crash, len);
}

/* Byte offset in the image of log block lblk, plus off. */
static uint64_t log_byte(const struct tu_fs *fs, uint32_t lblk, uint32_t off)
{
	return (fs->mp->log->start_fsbno + lblk) * fs->mp->blocksize + off;
}

/*
 * One byte of a record in the middle of a three-checkpoint log corrupted
 * (the second checkpoint's header, then its payload): later records
 * exist, so this is corruption, not a torn write.  Mount refuses with
 * -EUCLEAN and says where and what to do; fsck -n reports it (exit 4,
 * image unchanged); fsck refuses to replay (exit 4, names -L); fsck -L
 * zeroes the log and the image then checks clean and mounts.  On the
 * code before the head check the mount succeeded and silently dropped
 * "second" and "third".
 */
static void test_corrupt_middle_record(void **state)
{
	(void)state;
	for (int where = 0; where < 2; where++) {
		struct tu_fs fs;
		char crash[128];
		uint64_t ck[3];
		three_checkpoints(&fs, ck, crash, sizeof(crash));
		uint32_t blk = RLFS_LSN_BLOCK(ck[1]);
		/* header: a byte among the descriptors; payload: the first
		 * payload block */
		flip_byte(crash, where == 0 ? log_byte(&fs, blk, 90) : log_byte(&fs, blk + 1, 300));
		char want[128];
		snprintf(want, sizeof(want), "log corrupt at block %u (cycle %u): %s", blk,
			 RLFS_LSN_CYCLE(ck[1]),
			 where == 0 ? "checksum mismatch" : "payload checksum mismatch");

		struct rlfs_mount *mp = NULL;
		char *out;
		assert_int_equal(mount_capture(crash, &mp, &out), -EUCLEAN);
		assert_null(mp);
		assert_non_null(strstr(out, want));
		assert_non_null(strstr(out, "later records exist"));
		assert_non_null(strstr(out, "fsck -L"));
		free(out);

		size_t n0, n1;
		char *img0 = slurp(crash, &n0);
		assert_int_equal(fsck_capture("-n", crash, &out), 4);
		assert_non_null(strstr(out, want));
		assert_non_null(strstr(out, "fsck -L"));
		free(out);
		char *img1 = slurp(crash, &n1);
		assert_true(n0 == n1 && memcmp(img0, img1, n0) == 0); /* -n changed nothing */
		free(img1);

		assert_int_equal(fsck_capture("", crash, &out), 4); /* no replay */
		assert_non_null(strstr(out, "fsck -L"));
		free(out);
		img1 = slurp(crash, &n1);
		assert_true(n0 == n1 && memcmp(img0, img1, n0) == 0);
		free(img1);
		free(img0);

		int rc = fsck_capture("-L", crash, &out);
		assert_true(rc == 0 || rc == 1);
		assert_non_null(strstr(out, "the log is corrupt"));
		free(out);
		assert_int_equal(tu_fsck(crash, 0), 0);
		assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &mp), 0);
		assert_int_equal(rlfs_mount_close(mp), 0);
		unlink(crash);
		tu_unmount(&fs);
	}
}

/*
 * The last checkpoint's record corrupted (its header, then its payload):
 * nothing newer follows, so it is the torn write of the last checkpoint.
 * The mount replays everything before it ("first", "second") and drops
 * it ("third"); fsck is clean.
 */
static void test_corrupt_last_record_is_torn(void **state)
{
	(void)state;
	for (int where = 0; where < 2; where++) {
		struct tu_fs fs;
		char crash[128];
		uint64_t ck[3];
		three_checkpoints(&fs, ck, crash, sizeof(crash));
		uint32_t blk = RLFS_LSN_BLOCK(ck[2]);
		flip_byte(crash, where == 0 ? log_byte(&fs, blk, 90) : log_byte(&fs, blk + 1, 300));
		struct rlfs_mount *mp = NULL;
		char *out;
		assert_int_equal(mount_capture(crash, &mp, &out), 0);
		assert_null(strstr(out, "log corrupt"));
		free(out);
		assert_true(exists(mp, "first"));
		assert_true(exists(mp, "second"));
		assert_false(exists(mp, "third"));
		assert_int_equal(rlfs_mount_close(mp), 0);
		assert_int_equal(tu_fsck(crash, 0), 0);
		unlink(crash);
		tu_unmount(&fs);
	}
}

/*
 * A checkpoint of two records in flight (written, not flushed) whose
 * first record is torn while its second (the commit record) made it: the
 * surviving record belongs to the same in-flight checkpoint (same
 * ckpt_lsn), so this is a torn write, not corruption.  The records are
 * written directly (empty records: the checkpoint carries nothing), after
 * two fsync'd checkpoints.
 */
static void test_torn_first_record_of_inflight_checkpoint(void **state)
{
	(void)state;
	struct tu_fs fs;
	char crash[128];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t ino = mkfile(fs.mp, "first");
	assert_int_equal(rlfs_fsync(fs.mp, ino, 0), 0);
	ino = mkfile(fs.mp, "second");
	assert_int_equal(rlfs_fsync(fs.mp, ino, 0), 0);
	struct rlfs_log *log = fs.mp->log;
	rlfs_log_head_wrap(log);
	uint64_t ck = rlfs_log_head_lsn(log);
	uint64_t tail = log->tail_lsn;
	assert_int_equal(rlfs_log_write_rec(log, log->seq, 0, ck, tail, NULL, 0, NULL, 0), 0);
	assert_int_equal(rlfs_log_write_rec(log, log->seq, RLFS_LREC_COMMIT, ck, tail, NULL, 0,
					    NULL, 0), 0);
	log->seq++;
	tu_crash_copy(&fs, ".crash", crash, sizeof(crash));
	flip_byte(crash, log_byte(&fs, RLFS_LSN_BLOCK(ck), 90));
	struct rlfs_mount *mp = NULL;
	char *out;
	assert_int_equal(mount_capture(crash, &mp, &out), 0);
	assert_null(strstr(out, "log corrupt"));
	free(out);
	assert_true(exists(mp, "first"));
	assert_true(exists(mp, "second"));
	assert_int_equal(rlfs_mount_close(mp), 0);
	assert_int_equal(tu_fsck(crash, 0), 0);

	/* the same two records as two checkpoints (the second flushed after
	 * the first): the first corrupt with the second intact is corruption */
	unlink(crash);
	rlfs_log_head_wrap(log);
	uint64_t ck1 = rlfs_log_head_lsn(log);
	assert_int_equal(rlfs_log_write_rec(log, log->seq, RLFS_LREC_COMMIT, ck1, tail, NULL, 0,
					    NULL, 0), 0);
	log->seq++;
	assert_int_equal(rlfs_dev_flush(fs.mp->dev), 0);
	rlfs_log_head_wrap(log);
	uint64_t ck2 = rlfs_log_head_lsn(log);
	assert_int_equal(rlfs_log_write_rec(log, log->seq, RLFS_LREC_COMMIT, ck2, tail, NULL, 0,
					    NULL, 0), 0);
	log->seq++;
	tu_crash_copy(&fs, ".crash", crash, sizeof(crash));
	flip_byte(crash, log_byte(&fs, RLFS_LSN_BLOCK(ck1), 90));
	mp = NULL;
	assert_int_equal(mount_capture(crash, &mp, &out), -EUCLEAN);
	assert_non_null(strstr(out, "later records exist"));
	free(out);
	unlink(crash);
	tu_unmount(&fs);
}

/*
 * The writer keeps one checkpoint in flight at most: a checkpoint pushed
 * without a flush (a background push) is flushed before the next one
 * starts, so recovery's bound holds.
 */
static void test_one_checkpoint_in_flight(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	struct rlfs_log *log = fs.mp->log;
	rlfs_log_head_wrap(log);
	uint64_t ck = rlfs_log_head_lsn(log);
	assert_int_equal(rlfs_log_write_rec(log, log->seq, RLFS_LREC_COMMIT, ck, log->tail_lsn,
					    NULL, 0, NULL, 0), 0);
	log->seq++;
	log->unflushed = true;
	rlfs_log_head_wrap(log);
	ck = rlfs_log_head_lsn(log);
	assert_int_equal(rlfs_log_write_rec(log, log->seq, 0, ck, log->tail_lsn, NULL, 0,
					    NULL, 0), 0);
	assert_false(log->unflushed); /* flushed before the new checkpoint */
	log->unflushed = true;
	/* a second record of the same checkpoint: no flush */
	assert_int_equal(rlfs_log_write_rec(log, log->seq, RLFS_LREC_COMMIT, ck, log->tail_lsn,
					    NULL, 0, NULL, 0), 0);
	assert_true(log->unflushed);
	log->seq++;
	tu_unmount(&fs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corrupt_middle_record),
		cmocka_unit_test(test_corrupt_last_record_is_torn),
		cmocka_unit_test(test_torn_first_record_of_inflight_checkpoint),
		cmocka_unit_test(test_one_checkpoint_in_flight),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

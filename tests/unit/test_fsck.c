/*
 * test_fsck.c: the superblock's error record (SPEC.md section 4) as the
 * library keeps it.  Corrupt metadata met while mounted (a bmbt block with
 * a bad crc, read through rlfs_read) is recorded in core, reaches the disk
 * with the next metadata flush (fsync) and at unmount, and the next mount
 * warns on one line; a failed unmount flush still gets the record (and the
 * unclean state) to the disk; a read-only mount records nothing on disk;
 * fsck -n reports the record, repair clears it only when it finds the
 * filesystem clean.  fsck's repairs of counters, link counts and parents
 * are tested through the CLI in tests/integration/27-fsck-repair.sh.
 */
#include "testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev.h"
#include "inode.h"
#include "reflinkfs/fs.h"

#define MiB (1024ull * 1024)

/* The primary superblock as it is on the image file now. */
static void read_sb(const char *path, struct rlfs_sb *sb)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, sb, sizeof(*sb), 0), (ssize_t)sizeof(*sb));
	close(fd);
}

/* xor one byte of the image file (unmounted) */
static void flip_byte(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x5a;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

static uint64_t mkfile(struct tu_fs *fs, const char *name)
{
	struct stat st;
	assert_int_equal(rlfs_mknod(fs->mp, rlfs_root_ino(fs->mp), name, S_IFREG | 0644, 0, 0, 0,
				    &st), 0);
	return st.st_ino;
}

/* A file with a bmbt (every other block written); returns its ino and the
 * bmbt root's fsbno. */
static uint64_t mkfrag(struct tu_fs *fs, uint64_t *root)
{
	uint64_t ino = mkfile(fs, "frag");
	char blk[4096];
	memset(blk, 'f', sizeof(blk));
	for (int i = 0; i < 600; i += 2)
		assert_int_equal(rlfs_write(fs->mp, ino, blk, sizeof(blk), (off_t)i * 4096),
				 (ssize_t)sizeof(blk));
	struct rlfs_inode *ip;
	assert_int_equal(rlfs_iget(fs->mp, ino, &ip), 0);
	assert_int_equal(ip->format, RLFS_FMT_BTREE);
	*root = ip->root;
	rlfs_irele(ip);
	return ino;
}

/*
 * A bmbt block with a bad crc, met by a read: in-core record, on disk after
 * the next fsync (before unmount), kept by unmount, and the next mount warns
 * naming the block; fsck -n still finds the damage (4).  With the rmap
 * btree (the default) repair rebuilds the file's fork from it (1) and
 * clears the record, and the file reads back; without it repair leaves the
 * damage (4) and keeps the record (test_runtime_corruption_normap).
 */
static void runtime_corruption(bool rmap)
{
	struct tu_fs fs;
	struct rlfs_sb sb;
	char buf[4096], out[4096];
	uint64_t root;
	tu_mkfs_rmapbt = rmap ? 0 : -1;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	tu_mkfs_rmapbt = 0;
	uint64_t frag = mkfrag(&fs, &root);
	uint64_t plain = mkfile(&fs, "plain");
	assert_int_equal(rlfs_write(fs.mp, plain, "hello", 5, 0), 5);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	read_sb(fs.path, &sb);
	assert_int_equal(rlfs_get32(sb.errors), 0);

	flip_byte(fs.path, root * 4096 + 2000);
	assert_int_equal(tu_mount_capture(fs.path, RLFS_MOUNT_NOLOCK, &fs.mp, out, sizeof(out)), 0);
	assert_null(strstr(out, "has errors"));     /* nothing recorded yet */
	assert_int_equal(fs.mp->err.flags, 0);
	assert_int_equal(rlfs_read(fs.mp, frag, buf, sizeof(buf), 0), -EUCLEAN);
	assert_true(fs.mp->err.flags & RLFS_SB_ERR_CORRUPT);
	assert_true(fs.mp->err.count >= 1);
	assert_int_equal(fs.mp->err.first_fsbno, root);
	assert_string_equal(fs.mp->err.first_what, "bmbt");
	/* the rest of the filesystem goes on working */
	assert_int_equal(rlfs_read(fs.mp, plain, buf, sizeof(buf), 0), 5);
	assert_int_equal(rlfs_write(fs.mp, plain, "world", 5, 5), 5);

	/* any metadata flush writes the record, not only unmount */
	assert_int_equal(rlfs_fsync(fs.mp, plain, 0), 0);
	read_sb(fs.path, &sb);
	assert_true(rlfs_get32(sb.errors) & RLFS_SB_ERR_CORRUPT);
	assert_int_equal(rlfs_get64(sb.first_error_fsbno), root);
	assert_int_equal(rlfs_get32(sb.state), RLFS_STATE_DIRTY);

	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	read_sb(fs.path, &sb);
	assert_int_equal(rlfs_get32(sb.errors), RLFS_SB_ERR_CORRUPT);
	assert_true(rlfs_get32(sb.error_count) >= 1);
	assert_true(rlfs_get64(sb.first_error_time) > 0);
	assert_int_equal(rlfs_get32(sb.state), RLFS_STATE_CLEAN);

	/* the next mount warns, one line, and works (read-write) */
	assert_int_equal(tu_mount_capture(fs.path, RLFS_MOUNT_NOLOCK, &fs.mp, out, sizeof(out)), 0);
	char want[128];
	snprintf(want, sizeof(want), "bmbt at fsbno %llu", (unsigned long long)root);
	assert_non_null(strstr(out, "has errors"));
	assert_non_null(strstr(out, want));
	assert_non_null(strstr(out, "run `reflinkfs fsck"));
	assert_non_null(strchr(out, '\n'));
	assert_null(strchr(strchr(out, '\n') + 1, '\n'));  /* exactly one line */
	assert_true(fs.mp->err.flags & RLFS_SB_ERR_CORRUPT);
	assert_int_equal(rlfs_read(fs.mp, plain, buf, sizeof(buf), 0), 10);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;

	/* the damage is still there: fsck -n finds it (4) */
	assert_int_equal(tu_fsck(fs.path, 4), 4);
	if (rmap) {
		/* repair rebuilds frag's fork from the rmap and clears the record */
		assert_int_equal(tu_fsck_repair(fs.path), 1);
		read_sb(fs.path, &sb);
		assert_int_equal(rlfs_get32(sb.errors), 0);
		assert_int_equal(tu_fsck_repair(fs.path), 0);
		assert_int_equal(tu_mount_capture(fs.path, RLFS_MOUNT_NOLOCK, &fs.mp, out,
						  sizeof(out)), 0);
		assert_null(strstr(out, "has errors"));
		for (int i = 0; i < 599; i++) {
			assert_int_equal(rlfs_read(fs.mp, frag, buf, sizeof(buf), (off_t)i * 4096),
					 (ssize_t)sizeof(buf));
			for (size_t k = 0; k < sizeof(buf); k++)
				assert_int_equal(buf[k], i % 2 ? 0 : 'f');
		}
	} else {
		/* nothing to rebuild from: repair leaves it (4) and adds its
		 * own mark to the record */
		assert_int_equal(tu_fsck_repair(fs.path), 4);
		read_sb(fs.path, &sb);
		assert_int_equal(rlfs_get32(sb.errors), RLFS_SB_ERR_CORRUPT | RLFS_SB_ERR_FSCK);
		assert_true(rlfs_get32(sb.fsck_errors) >= 1);
		assert_int_equal(tu_fsck_repair(fs.path), 4);
	}
	tu_unmount(&fs);
}

static void test_runtime_corruption_recorded(void **state)
{
	(void)state;
	runtime_corruption(true);
}

static void test_runtime_corruption_normap(void **state)
{
	(void)state;
	runtime_corruption(false);
}

/* Device wrappers for the failing-flush test. */
static const struct rlfs_dev_ops *orig_ops;
static int fail_mode;       /* 1: every flush fails; 2: writes past block 0 fail */

static int f_pread(struct rlfs_dev *d, void *b, size_t l, uint64_t o)
{
	return orig_ops->pread(d, b, l, o);
}
static int f_pwrite(struct rlfs_dev *d, const void *b, size_t l, uint64_t o)
{
	if (fail_mode == 2 && o >= 4096)
		return -EIO;
	return orig_ops->pwrite(d, b, l, o);
}
static int f_flush(struct rlfs_dev *d)
{
	if (fail_mode == 1)
		return -EIO;
	return orig_ops->flush(d);
}
static void f_close(struct rlfs_dev *d)
{
	orig_ops->close(d);
}
static const struct rlfs_dev_ops failing_ops = {
	.pread = f_pread, .pwrite = f_pwrite, .flush = f_flush, .close = f_close,
};

/*
 * The unmount flush fails (1: the device flush fails, so nothing is
 * written by it; 2: every block but the superblock fails to write, after
 * the superblock went out saying "clean"): the record still reaches the
 * image, with RLFS_SB_ERR_WRITE, and the state says dirty.  With a
 * corruption report before (mode 1) both flags are kept.
 */
static void test_failed_unmount_flush_recorded(void **state)
{
	(void)state;
	for (int mode = 1; mode <= 2; mode++) {
		struct tu_fs fs;
		struct rlfs_sb sb;
		char out[4096];
		tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
		for (int i = 0; i < 20; i++) {
			char name[16];
			snprintf(name, sizeof(name), "f%d", i);
			mkfile(&fs, name);      /* dirty metadata for the unmount flush */
		}
		if (mode == 1)
			rlfs_corrupt(fs.mp, 77, "test", "injected report");
		orig_ops = fs.mp->dev->ops;
		fail_mode = mode;
		fs.mp->dev->ops = &failing_ops;
		assert_int_equal(rlfs_mount_close(fs.mp), -EIO);
		fs.mp = NULL;
		fail_mode = 0;
		read_sb(fs.path, &sb);
		uint32_t want = RLFS_SB_ERR_WRITE | (mode == 1 ? RLFS_SB_ERR_CORRUPT : 0);
		assert_int_equal(rlfs_get32(sb.errors), want);
		assert_int_equal(rlfs_get32(sb.state), RLFS_STATE_DIRTY);
		if (mode == 1) {
			assert_int_equal(rlfs_get64(sb.first_error_fsbno), 77);
			assert_int_equal(rlfs_get32(sb.error_count), 1);
		}
		/* the image still mounts (the superblock verifies) and says why */
		assert_int_equal(tu_mount_capture(fs.path, RLFS_MOUNT_NOLOCK | RLFS_MOUNT_RDONLY,
					       &fs.mp, out, sizeof(out)), 0);
		assert_non_null(strstr(out, "metadata could not be written at unmount"));
		assert_int_equal(rlfs_mount_close(fs.mp), 0);
		fs.mp = NULL;
		tu_unmount(&fs);
	}
}

/* A read-only mount cannot write: the report stays in core and the image
 * is unchanged. */
static void test_rdonly_not_recorded(void **state)
{
	(void)state;
	struct tu_fs fs;
	struct rlfs_sb before, after;
	char out[256];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	read_sb(fs.path, &before);
	assert_int_equal(tu_mount_capture(fs.path, RLFS_MOUNT_NOLOCK | RLFS_MOUNT_RDONLY, &fs.mp, out,
				       sizeof(out)), 0);
	rlfs_corrupt(fs.mp, 5, "test", "injected report");
	assert_true(fs.mp->err.flags & RLFS_SB_ERR_CORRUPT);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	read_sb(fs.path, &after);
	assert_memory_equal(&before, &after, sizeof(before));
	tu_unmount(&fs);
}

/*
 * A record whose cause is gone (here: a report injected with nothing
 * damaged): fsck -n says the filesystem is clean (0, as e2fsck -n with
 * EXT2_ERROR_FS set) and that the record stays, writing nothing; repair
 * clears it (still 0: nothing else was wrong), and the next mount does not
 * warn.
 */
static void test_fsck_clears_stale_record(void **state)
{
	(void)state;
	struct tu_fs fs;
	struct rlfs_sb sb;
	char out[4096];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	mkfile(&fs, "a");
	rlfs_corrupt(fs.mp, 9, "test", "injected report");
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	assert_int_equal(tu_fsck(fs.path, 0), 0);
	read_sb(fs.path, &sb);
	assert_int_equal(rlfs_get32(sb.errors), RLFS_SB_ERR_CORRUPT);   /* -n wrote nothing */
	assert_int_equal(tu_fsck_repair(fs.path), 0);
	read_sb(fs.path, &sb);
	assert_int_equal(rlfs_get32(sb.errors), 0);
	assert_int_equal(rlfs_get32(sb.error_count), 0);
	assert_int_equal(rlfs_get64(sb.first_error_time), 0);
	assert_int_equal(tu_fsck(fs.path, 0), 0);
	assert_int_equal(tu_mount_capture(fs.path, RLFS_MOUNT_NOLOCK, &fs.mp, out, sizeof(out)), 0);
	assert_null(strstr(out, "has errors"));
	tu_unmount(&fs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_runtime_corruption_recorded),
		cmocka_unit_test(test_runtime_corruption_normap),
		cmocka_unit_test(test_failed_unmount_flush_recorded),
		cmocka_unit_test(test_rdonly_not_recorded),
		cmocka_unit_test(test_fsck_clears_stale_record),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_log.c: the write-ahead log (lib/log*.c, lib/recover.c).
 *
 * A "crash" is a copy of the image file taken while the mount is still
 * open: it holds exactly what the mount has written so far (the host page
 * cache is coherent), i.e. the device after a kill -9 of the daemon.
 * Recovery then runs on the copy through rlfs_mount_open.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "testutil.h"
#include "buf.h"
#include "defer.h"
#include "dev.h"
#include "dev_crash.h"
#include "inode.h"
#include "log.h"
#include "trans.h"
#include "xattr.h"
#include "reflinkfs/fs.h"

#define MiB (1ull << 20)

static void copy_image(const char *src, char *dst, size_t dstlen)
{
	snprintf(dst, dstlen, "/tmp/rlfs-crash-XXXXXX");
	int out = mkstemp(dst);
	assert_true(out >= 0);
	int in = open(src, O_RDONLY);
	assert_true(in >= 0);
	static char buf[1 << 20];
	off_t off = 0;
	for (;;) {
		ssize_t n = pread(in, buf, sizeof(buf), off);
		assert_true(n >= 0);
		if (n == 0)
			break;
		/* keep the copy sparse-ish: skip all-zero chunks */
		bool zero = true;
		for (ssize_t i = 0; i < n && zero; i++)
			zero = buf[i] == 0;
		if (!zero)
			assert_int_equal(pwrite(out, buf, (size_t)n, off), n);
		off += n;
	}
	assert_int_equal(ftruncate(out, off), 0);
	close(in);
	close(out);
}

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

static void read_raw(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void write_raw(const char *path, uint64_t off, const void *buf, size_t len)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* fsync'd creates survive a crash: the crash image needs replay (fsck -n
 * says so, exit 4, and changes nothing), mount replays it, fsck is clean,
 * and a crash before the force loses only what was not forced. */
static void test_replay_after_crash(void **state)
{
	(void)state;
	struct tu_fs fs;
	char crash[64];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	for (int i = 0; i < 50; i++) {
		char name[16];
		snprintf(name, sizeof(name), "f%d", i);
		uint64_t ino = mkfile(fs.mp, name);
		assert_int_equal(rlfs_write(fs.mp, ino, name, strlen(name), 0), (ssize_t)strlen(name));
	}
	uint64_t ino = mkfile(fs.mp, "synced");
	assert_int_equal(rlfs_fsync(fs.mp, ino, 0), 0);
	mkfile(fs.mp, "not-synced");            /* only in the CIL */
	copy_image(fs.path, crash, sizeof(crash));

	assert_int_equal(tu_fsck(crash, 4), 4); /* log needs replay */
	assert_int_equal(tu_fsck(crash, 4), 4); /* ... and -n changed nothing */
	struct rlfs_mount *mp;
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &mp), 0);
	struct rlfs_log_stats st;
	rlfs_log_get_stats(mp, &st);
	assert_true(st.replayed_ckpts >= 1);
	assert_true(st.replayed_blocks >= 3);
	assert_true(exists(mp, "synced"));
	assert_true(exists(mp, "f0"));
	assert_true(exists(mp, "f49"));
	assert_false(exists(mp, "not-synced"));
	char buf[8];
	struct stat sst;
	assert_int_equal(rlfs_lookup(mp, rlfs_root_ino(mp), "f7", &sst), 0);
	assert_int_equal(rlfs_read(mp, sst.st_ino, buf, sizeof(buf), 0), 2);
	assert_memory_equal(buf, "f7", 2);
	assert_int_equal(rlfs_mount_close(mp), 0);
	assert_int_equal(tu_fsck(crash, 0), 0);
	unlink(crash);
	tu_unmount(&fs);
}

/* The last record torn (a payload byte flipped: its crc fails): that
 * checkpoint is not replayed, the ones before it are. */
static void test_torn_last_record(void **state)
{
	(void)state;
	struct tu_fs fs;
	char crash[64];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t a = mkfile(fs.mp, "first");
	assert_int_equal(rlfs_fsync(fs.mp, a, 0), 0);
	uint64_t head_before = rlfs_log_head_lsn(fs.mp->log);
	uint64_t b = mkfile(fs.mp, "second");
	assert_int_equal(rlfs_fsync(fs.mp, b, 0), 0);
	struct rlfs_log *log = fs.mp->log;
	uint64_t start = log->start_fsbno;
	copy_image(fs.path, crash, sizeof(crash));
	/* flip a byte in the first payload block of the last checkpoint */
	uint64_t off = (start + RLFS_LSN_BLOCK(head_before) + 1) * fs.mp->blocksize + 100;
	uint8_t byte;
	read_raw(crash, off, &byte, 1);
	byte ^= 0xff;
	write_raw(crash, off, &byte, 1);

	struct rlfs_mount *mp;
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &mp), 0);
	assert_true(exists(mp, "first"));
	assert_false(exists(mp, "second"));
	assert_int_equal(rlfs_mount_close(mp), 0);
	assert_int_equal(tu_fsck(crash, 0), 0);
	unlink(crash);
	tu_unmount(&fs);
}

/* A block on disk newer than the logged image (its LSN is larger) is not
 * overwritten by replay. */
static void test_skip_newer_block(void **state)
{
	(void)state;
	struct tu_fs fs;
	char crash[64];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t a = mkfile(fs.mp, "x");
	assert_int_equal(rlfs_fsync(fs.mp, a, 0), 0);
	uint32_t bs = fs.mp->blocksize;
	copy_image(fs.path, crash, sizeof(crash));
	/* the root directory's inode cluster is in the last checkpoint (the
	 * create changed the root); on disk it gets another atime and a far
	 * newer LSN: replay must leave it alone */
	uint64_t root = rlfs_root_ino(fs.mp);
	uint64_t fsbno = root / fs.mp->inopblock;
	uint32_t isz = fs.mp->inodesize;
	assert_int_equal(root % fs.mp->inopblock, 0);   /* slot 0 carries the LSN */
	uint8_t *blk = malloc(bs);
	read_raw(crash, fsbno * bs, blk, bs);
	struct rlfs_dinode *dip = (struct rlfs_dinode *)blk;
	assert_int_equal(rlfs_get64(dip->ino), root);
	rlfs_put64(dip->atime.sec, 12345);
	rlfs_put64(dip->lsn, RLFS_LSN(1000, 0));
	rlfs_cksum_update(blk, isz, offsetof(struct rlfs_dinode, crc));
	write_raw(crash, fsbno * bs, blk, bs);
	struct rlfs_mount *mp;
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &mp), 0);
	struct rlfs_log_stats st;
	rlfs_log_get_stats(mp, &st);
	assert_true(st.skipped_blocks >= 1);
	struct stat rst;
	assert_int_equal(rlfs_lookup_ino(mp, root, &rst, NULL), 0);
	assert_int_equal(rst.st_atim.tv_sec, 12345);
	assert_int_equal(rlfs_mount_close(mp), 0);
	free(blk);
	unlink(crash);
	tu_unmount(&fs);
}

/* ---- byte-range logging (log.h: rlfs_log_img.map) ----
 * The tests log a block of their own: a symlink-typed block (a header
 * with an LSN) at a free fsbno, changed by hand in transactions, the
 * checkpoints forced and the AIL pushed under meta_lock. */

struct rl_blk {
	struct tu_fs fs;
	uint64_t fsbno;
	uint32_t bs;
};

static void rl_setup(struct rl_blk *t)
{
	tu_mkfs_mount(&t->fs, 64 * MiB, 0, 0);
	struct rlfs_mount *mp = t->fs.mp;
	t->bs = mp->blocksize;
	t->fsbno = mp->dblocks - 8;
	struct rlfs_log *log = mp->log;
	assert_true(t->fsbno < log->start_fsbno || t->fsbno >= log->start_fsbno + log->size_blocks);
}

/* One transaction: get (new) or read the block, set len bytes at off to
 * val, commit.  new: fill the payload with the pattern i & 0xff. */
static void rl_change(struct rl_blk *t, bool new, uint32_t off, uint8_t val, uint32_t len)
{
	struct rlfs_mount *mp = t->fs.mp;
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	if (new) {
		assert_int_equal(rlfs_trans_get_buf(tp, t->fsbno, &rlfs_symlink_buf_ops, 7, &bp), 0);
		uint8_t *d = bp->data;
		for (uint32_t i = sizeof(struct rlfs_remote_hdr); i < t->bs; i++)
			d[i] = (uint8_t)i;
		struct rlfs_remote_hdr *rh = bp->data;
		rlfs_put32(rh->offset, 0);
		rlfs_put32(rh->bytes, 100);
	} else {
		assert_int_equal(rlfs_trans_read_buf(tp, t->fsbno, &rlfs_symlink_buf_ops, 7, &bp), 0);
	}
	memset((uint8_t *)bp->data + off, val, len);
	rlfs_trans_log_buf(tp, bp);
	assert_int_equal(rlfs_trans_commit(tp), 0);
}

/* One transaction that sets len bytes at off to val and logs the range
 * [log_first, log_last] (rlfs_trans_log_buf_range). */
static void rl_change_range(struct rl_blk *t, uint32_t off, uint8_t val, uint32_t len,
			    uint32_t log_first, uint32_t log_last)
{
	struct rlfs_mount *mp = t->fs.mp;
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_trans_read_buf(tp, t->fsbno, &rlfs_symlink_buf_ops, 7, &bp), 0);
	memset((uint8_t *)bp->data + off, val, len);
	rlfs_trans_log_buf_range(tp, bp, log_first, log_last);
	assert_int_equal(rlfs_trans_commit(tp), 0);
}

static struct rlfs_buf *rl_buf(struct rl_blk *t)
{
	struct rlfs_buf *bp;
	assert_int_equal(rlfs_buf_read(t->fs.mp, t->fsbno, &rlfs_symlink_buf_ops, 7, &bp), 0);
	rlfs_buf_relse(bp);
	return bp;
}

/* Force the CIL as one checkpoint; with inplace, also push the AIL (the
 * block written in place, its map cleared).  Returns the checkpoint's
 * LSN (the head before the force). */
static uint64_t rl_force(struct rl_blk *t, bool inplace)
{
	struct rlfs_mount *mp = t->fs.mp;
	rlfs_meta_lock(mp);
	rlfs_log_head_wrap(mp->log);
	uint64_t lsn = rlfs_log_head_lsn(mp->log);
	assert_int_equal(rlfs_log_force(mp), 0);
	if (inplace)
		assert_int_equal(rlfs_log_ail_push(mp->log, UINT64_MAX), 0);
	pthread_mutex_unlock(&mp->meta_lock);
	return lsn;
}

/* The block as the latest checkpoint logged it (its AIL image: stamped). */
static void rl_durable(struct rl_blk *t, uint8_t *out)
{
	struct rlfs_buf *bp = rl_buf(t);
	assert_non_null(bp->log_ail);
	memcpy(out, rlfs_log_img_content(bp->log_ail), t->bs);
}

static bool map_bit(const uint8_t *map, uint32_t c)
{
	return map[c >> 3] & (1u << (c & 7));
}

/* Recover a copy of the image (mount + unmount) and read the block. */
static void rl_recover(struct rl_blk *t, const char *crash, uint8_t *out)
{
	struct rlfs_mount *mp;
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &mp), 0);
	assert_int_equal(rlfs_mount_close(mp), 0);
	read_raw(crash, t->fsbno * t->bs, out, t->bs);
}

/* A block changed by two transactions before one checkpoint: the map is
 * the union of their chunks (and only those, plus the header stamped at
 * the push), and replay over the block on disk gives both changes. */
static void test_ranges_two_trans_one_ckpt(void **state)
{
	(void)state;
	struct rl_blk t;
	char crash[64];
	rl_setup(&t);
	rl_change(&t, true, 100, 0x11, 4);
	rl_force(&t, true);                 /* whole block, now in place */
	assert_null(rl_buf(&t)->log_ail);
	rl_change(&t, false, 300, 0xaa, 8);         /* chunk 2 */
	rl_change(&t, false, 2000, 0xbb, 300);      /* chunks 15..17 */
	struct rlfs_buf *bp = rl_buf(&t);
	assert_non_null(bp->log_cil);
	const uint8_t *map = bp->log_cil->map;
	assert_int_equal(rlfs_log_map_count(map, t.bs), 4);
	assert_true(map_bit(map, 2) && map_bit(map, 15) && map_bit(map, 16) && map_bit(map, 17));
	uint64_t before = t.fs.mp->log->stats.bytes_written;
	rl_force(&t, false);
	/* one block: the header, the descriptor and the segment (map + 5
	 * chunks: the header's chunk joins at the push), not the whole block */
	assert_int_equal(t.fs.mp->log->stats.bytes_written - before, 1ull * t.bs);
	uint8_t *want = malloc(t.bs), *got = malloc(t.bs);
	rl_durable(&t, want);
	assert_int_equal(want[300], 0xaa);
	assert_int_equal(want[2200], 0xbb);
	copy_image(t.fs.path, crash, sizeof(crash));
	read_raw(crash, t.fsbno * t.bs, got, t.bs);
	assert_int_equal(got[300], (uint8_t)300);   /* on disk: the old block */
	rl_recover(&t, crash, got);
	assert_memory_equal(got, want, t.bs);
	assert_true(rlfs_cksum_verify(got, t.bs, RLFS_CRC_OFF));
	free(want);
	free(got);
	unlink(crash);
	tu_unmount(&t.fs);
}

/* Logged byte ranges (rlfs_trans_log_buf_range): the map holds the
 * chunks of the ranges whose bytes changed (a logged chunk left equal is
 * not marked), both for the first commit of a block in
 * the CIL and for a relog into the same CIL image; replay over the block
 * on disk gives every change.  A change outside the logged ranges is a
 * caller bug that the range check (on under ASan) stops with abort. */
static void test_logged_ranges(void **state)
{
	(void)state;
	struct rl_blk t;
	char crash[64];
	rl_setup(&t);
	rl_change(&t, true, 100, 0x11, 4);
	rl_force(&t, true);                 /* whole block, now in place */
	assert_null(rl_buf(&t)->log_ail);
	/* fresh in the CIL: chunk 2 changed, chunk 5 logged but unchanged */
	rl_change_range(&t, 300, 0xaa, 8, 300, 307);
	rl_change_range(&t, 700, (uint8_t)700, 1, 640, 760);
	/* relogged into the same image: chunks 15..17 changed, 20 did not */
	rl_change_range(&t, 2000, 0xbb, 300, 2000, 2299);
	rl_change_range(&t, 2600, (uint8_t)2600, 1, 2560, 2687);
	struct rlfs_buf *bp = rl_buf(&t);
	assert_non_null(bp->log_cil);
	const uint8_t *map = bp->log_cil->map;
	assert_int_equal(rlfs_log_map_count(map, t.bs), 4);
	assert_true(map_bit(map, 2) && map_bit(map, 15) && map_bit(map, 16) && map_bit(map, 17));
	assert_false(map_bit(map, 5) || map_bit(map, 20));
	assert_memory_equal(bp->log_cil->data, bp->data, t.bs);
	rl_force(&t, false);
	uint8_t *want = malloc(t.bs), *got = malloc(t.bs);
	rl_durable(&t, want);
	assert_int_equal(want[300], 0xaa);
	assert_int_equal(want[2200], 0xbb);
	copy_image(t.fs.path, crash, sizeof(crash));
	rl_recover(&t, crash, got);
	assert_memory_equal(got, want, t.bs);
	unlink(crash);
	/* a change outside the logged range: the child aborts at commit */
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(30); /* a hang is a failure too */
		t.fs.mp->log->check_ranges = true;
		rl_change_range(&t, 1000, 0xcc, 1, 0, 10);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
	free(want);
	free(got);
	tu_unmount(&t.fs);
}

/* A checkpointed block the buffer still matches borrows the buffer's
 * bytes (no second copy); a later transaction that changes the block
 * before it goes in place first gives the AIL image its own copy, so the
 * push writes the checkpointed block, not the newer, unlogged one. */
static void test_ail_borrow(void **state)
{
	(void)state;
	struct rl_blk t;
	rl_setup(&t);
	struct rlfs_log *log = t.fs.mp->log;
	rl_change(&t, true, 100, 0x11, 4);
	rl_force(&t, false);
	struct rlfs_buf *bp = rl_buf(&t);
	assert_non_null(bp->log_ail);
	assert_true(bp->log_ail->borrowed);
	assert_null(bp->log_ail->data);
	uint64_t unborrowed = log->stats.ail_unborrowed;
	uint8_t *want = malloc(t.bs), *got = malloc(t.bs);
	rl_durable(&t, want);
	rl_change(&t, false, 500, 0xcc, 10);        /* not forced */
	assert_int_equal(log->stats.ail_unborrowed, unborrowed + 1);
	assert_false(bp->log_ail->borrowed);
	assert_non_null(bp->log_ail->data);
	assert_int_equal(((uint8_t *)bp->data)[500], 0xcc);
	/* push only the first checkpoint: the block in place as it was */
	rlfs_meta_lock(t.fs.mp);
	assert_int_equal(rlfs_log_ail_push(log, UINT64_MAX), 0);
	pthread_mutex_unlock(&t.fs.mp->meta_lock);
	read_raw(t.fs.path, t.fsbno * t.bs, got, t.bs);
	assert_memory_equal(got, want, t.bs);
	assert_int_equal(got[500], (uint8_t)500);
	assert_int_equal(got[100], 0x11);
	free(want);
	free(got);
	tu_unmount(&t.fs);
}

/* An inode logged by a transaction that changed none of its bytes, with
 * its cluster already in place: the checkpoint must still replay (an
 * image item with no chunk used to be written, and recovery refused the
 * whole log as corrupt: log recovery's BUI unmap of a clone hit it). */
static void test_ranges_unchanged_inode(void **state)
{
	(void)state;
	struct tu_fs fs;
	char crash[64];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	struct rlfs_mount *mp = fs.mp;
	uint64_t ino = mkfile(mp, "f");
	assert_int_equal(rlfs_fsync(mp, ino, 0), 0);
	rlfs_meta_lock(mp);
	assert_int_equal(rlfs_log_force(mp), 0);
	assert_int_equal(rlfs_log_ail_push(mp->log, UINT64_MAX), 0);
	pthread_mutex_unlock(&mp->meta_lock);
	struct rlfs_inode *ip;
	assert_int_equal(rlfs_iget(mp, ino, &ip), 0);
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_setattr, 0, 0, &tp), 0);
	rlfs_trans_ijoin(tp, ip);
	rlfs_trans_log_inode(tp, ip);           /* nothing changed */
	assert_int_equal(rlfs_trans_commit(tp), 0);
	rlfs_irele(ip);
	rlfs_meta_lock(mp);
	assert_int_equal(rlfs_log_force(mp), 0); /* a checkpoint of its own */
	pthread_mutex_unlock(&mp->meta_lock);
	mkfile(mp, "g");                        /* a change to replay after it */
	rlfs_meta_lock(mp);
	assert_int_equal(rlfs_log_force(mp), 0);
	pthread_mutex_unlock(&mp->meta_lock);
	copy_image(fs.path, crash, sizeof(crash));
	struct rlfs_mount *rmp;
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &rmp), 0);
	assert_true(exists(rmp, "g"));
	assert_int_equal(rlfs_mount_close(rmp), 0);
	assert_int_equal(tu_fsck(crash, 0), 0);
	unlink(crash);
	tu_unmount(&fs);
}

/* A partial record is applied over a block on disk with an older LSN,
 * skipped over one with a newer LSN, and a block newer than record A but
 * older than record B gets B.  B carries A's chunks too (relogged: the
 * map keeps every chunk changed since the block was written in place),
 * so B alone brings a block older than both up to date once the tail has
 * moved past A. */
static void test_ranges_disk_lsn(void **state)
{
	(void)state;
	struct rl_blk t;
	char crash[64];
	rl_setup(&t);
	uint32_t bs = 0;
	rl_change(&t, true, 100, 0x11, 4);
	rl_force(&t, true);
	bs = t.bs;
	uint8_t *s1 = malloc(bs), *s2 = malloc(bs), *s3 = malloc(bs), *got = malloc(bs);
	read_raw(t.fs.path, t.fsbno * bs, s1, bs);          /* state 1, in place */
	rl_change(&t, false, 300, 0xaa, 8);                 /* chunk 2 */
	uint64_t lsn2 = rl_force(&t, false);
	rl_durable(&t, s2);
	rl_change(&t, false, 2000, 0xbb, 8);                /* chunk 15 */
	uint64_t lsn3 = rl_force(&t, false);
	rl_durable(&t, s3);
	/* relogged: record 3 carries chunk 2 as well */
	assert_true(map_bit(rl_buf(&t)->log_ail->map, 2));
	assert_true(lsn2 < lsn3);
	/* another checkpoint (another block) moves the tail to record 3:
	 * record 2 is no longer replayed, record 3 alone must carry it */
	mkfile(t.fs.mp, "other");
	rl_force(&t, false);
	assert_int_equal(t.fs.mp->log->tail_lsn, lsn3);
	copy_image(t.fs.path, crash, sizeof(crash));

	/* older on disk (state 1): record 3 applied */
	rl_recover(&t, crash, got);
	assert_memory_equal(got, s3, bs);

	/* newer on disk: left alone */
	unlink(crash);
	copy_image(t.fs.path, crash, sizeof(crash));
	memcpy(got, s1, bs);
	got[300] = 0x77;
	rlfs_put64(((struct rlfs_blkhdr *)got)->lsn, RLFS_LSN(1000, 0));
	rlfs_cksum_update(got, bs, RLFS_CRC_OFF);
	write_raw(crash, t.fsbno * bs, got, bs);
	rl_recover(&t, crash, got);
	assert_int_equal(got[300], 0x77);
	assert_int_equal(got[2000], (uint8_t)2000);
	assert_int_equal(rlfs_get64(((struct rlfs_blkhdr *)got)->lsn), RLFS_LSN(1000, 0));

	/* between (state 2 on disk, LSN of record 2): record 3 still applied */
	unlink(crash);
	copy_image(t.fs.path, crash, sizeof(crash));
	write_raw(crash, t.fsbno * bs, s2, bs);
	rl_recover(&t, crash, got);
	assert_memory_equal(got, s3, bs);
	free(s1);
	free(s2);
	free(s3);
	free(got);
	unlink(crash);
	tu_unmount(&t.fs);
}

/* A range record that is torn (a chunk byte flipped: payload crc fails)
 * or corrupt with a good crc (a bitmap bit flipped, so the chunks no
 * longer match its count) ends the log there: that checkpoint is not
 * replayed, the one before it is. */
static void test_ranges_torn_record(void **state)
{
	(void)state;
	struct rl_blk t;
	char crash[64];
	rl_setup(&t);
	rl_change(&t, true, 100, 0x11, 4);
	rl_force(&t, true);
	uint32_t bs = t.bs;
	uint8_t *s2 = malloc(bs), *got = malloc(bs), *rec = malloc(3 * (size_t)bs);
	rl_change(&t, false, 300, 0xaa, 8);
	rl_force(&t, false);
	rl_durable(&t, s2);
	rl_change(&t, false, 2000, 0xbb, 8);
	uint64_t lsn3 = rl_force(&t, false);
	struct rlfs_log *log = t.fs.mp->log;
	uint64_t roff = (log->start_fsbno + RLFS_LSN_BLOCK(lsn3)) * bs;
	for (int mode = 0; mode < 2; mode++) {
		copy_image(t.fs.path, crash, sizeof(crash));
		read_raw(crash, roff, rec, 2 * (size_t)bs);
		struct rlfs_log_rec *h = (struct rlfs_log_rec *)rec;
		assert_int_equal(rlfs_get32(h->nitems), 1);
		uint32_t len = rlfs_get32(h->len_blocks);
		assert_true(len <= 1);
		struct rlfs_log_seg seg;
		assert_int_equal(rlfs_log_rec_segs(t.fs.mp, rec, &seg), 0);
		assert_non_null(seg.map);
		assert_int_equal(seg.bytes, 3 * RLFS_LOG_CHUNK);
		uint8_t *map = rec + (seg.map - rec);
		if (mode == 0) {
			map[RLFS_LOG_MAP_BYTES(bs) + 130] ^= 0xff;        /* a chunk byte */
		} else {
			map[0] ^= 0x08;                                   /* chunk 3 */
			rlfs_put32(h->payload_crc, rlfs_crc32c(rec + bs, (size_t)len * bs));
			rlfs_cksum_update(rec, bs, offsetof(struct rlfs_log_rec, crc));
			assert_int_equal(rlfs_log_rec_segs(t.fs.mp, rec, &seg), -EUCLEAN);
		}
		write_raw(crash, roff, rec, 2 * (size_t)bs);
		rl_recover(&t, crash, got);
		assert_memory_equal(got, s2, bs);
		unlink(crash);
	}
	free(s2);
	free(got);
	free(rec);
	tu_unmount(&t.fs);
}

/* A version 1 record (whole-block images, older versions) is still
 * replayed: the last checkpoint rewritten in the old format. */
static void test_ranges_v1_record(void **state)
{
	(void)state;
	struct rl_blk t;
	char crash[64];
	rl_setup(&t);
	rl_change(&t, true, 100, 0x11, 4);
	rl_force(&t, true);
	uint32_t bs = t.bs;
	uint8_t *want = malloc(bs), *got = malloc(bs), *rec = calloc(2, bs);
	rl_change(&t, false, 300, 0xaa, 8);
	uint64_t lsn = rl_force(&t, false);
	rl_durable(&t, want);
	struct rlfs_log *log = t.fs.mp->log;
	uint64_t roff = (log->start_fsbno + RLFS_LSN_BLOCK(lsn)) * bs;
	copy_image(t.fs.path, crash, sizeof(crash));
	read_raw(crash, roff, rec, bs);
	struct rlfs_log_rec *h = (struct rlfs_log_rec *)rec;
	assert_int_equal(rlfs_get32(h->version), RLFS_LOG_VERSION);
	assert_int_equal(rlfs_get32(h->nitems), 1);
	/* the same header, version 1: one whole block after it */
	struct rlfs_log_desc *d = (struct rlfs_log_desc *)(rec + sizeof(*h));
	rlfs_put32(d->count, 0);
	memset(rec + sizeof(*h) + sizeof(*d), 0, bs - sizeof(*h) - sizeof(*d));
	memcpy(rec + bs, want, bs);
	rlfs_put32(h->version, RLFS_LOG_VERSION_WHOLE);
	rlfs_put32(h->len_blocks, 1);
	rlfs_put32(h->payload_crc, rlfs_crc32c(rec + bs, bs));
	rlfs_cksum_update(rec, bs, offsetof(struct rlfs_log_rec, crc));
	struct rlfs_log_seg seg;
	assert_int_equal(rlfs_log_rec_segs(t.fs.mp, rec, &seg), 0);
	assert_null(seg.map);
	write_raw(crash, roff, rec, 2 * (size_t)bs);
	read_raw(crash, t.fsbno * bs, got, bs);
	assert_int_equal(got[300], (uint8_t)300);
	rl_recover(&t, crash, got);
	assert_memory_equal(got, want, bs);
	free(want);
	free(got);
	free(rec);
	unlink(crash);
	tu_unmount(&t.fs);
}

/* Recovery that crashes after writing in place but before its clean
 * record replays again, with the same result (idempotent). */
static void test_recovery_idempotent(void **state)
{
	(void)state;
	struct tu_fs fs;
	char crash[64];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	for (int i = 0; i < 20; i++) {
		char name[16];
		snprintf(name, sizeof(name), "g%d", i);
		uint64_t ino = mkfile(fs.mp, name);
		if (i % 5 == 0)
			assert_int_equal(rlfs_fsync(fs.mp, ino, 0), 0);
	}
	assert_int_equal(rlfs_sync(fs.mp), 0);
	uint64_t start = fs.mp->log->start_fsbno;
	uint32_t nblk = fs.mp->log->size_blocks;
	copy_image(fs.path, crash, sizeof(crash));

	/* replay through a bare mount, as recovery does, without the clean
	 * record: the "crash during recovery" */
	struct rlfs_dev *dev;
	assert_int_equal(rlfs_dev_open(crash, 1, 0, &dev), 0);
	struct rlfs_mount *bare;
	assert_int_equal(rlfs_mount_alloc_bare(dev, fs.mp->blocksize, fs.mp->dblocks,
					       fs.mp->agblocks, &bare), 0);
	memcpy(bare->uuid, fs.mp->uuid, RLFS_UUID_SIZE);
	bare->inodesize = fs.mp->inodesize;
	bare->inopblock = fs.mp->inopblock;
	struct rlfs_log_scan scan;
	struct rlfs_log_stats st = { 0 };
	assert_int_equal(rlfs_log_recover(bare, start, nblk, true, &scan, &st), 0);
	assert_true(scan.needs_replay);
	uint64_t first_blocks = st.replayed_blocks;
	assert_true(first_blocks > 0);
	/* again: everything on disk is as new as the log now */
	memset(&st, 0, sizeof(st));
	assert_int_equal(rlfs_log_recover(bare, start, nblk, true, &scan, &st), 0);
	assert_true(scan.needs_replay);
	assert_int_equal(st.replayed_blocks, 0);
	rlfs_mount_free_bare(bare);
	rlfs_dev_close(dev);

	struct rlfs_mount *mp;
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &mp), 0);
	for (int i = 0; i < 20; i++) {
		char name[16];
		snprintf(name, sizeof(name), "g%d", i);
		assert_true(exists(mp, name));
	}
	assert_int_equal(rlfs_mount_close(mp), 0);
	assert_int_equal(tu_fsck(crash, 0), 0);
	unlink(crash);
	tu_unmount(&fs);
}

/* --- the write-ahead rule, on a device that records every write --- */

static const struct rlfs_dev_ops *orig_ops;
static struct {
	uint64_t log_start_bytes, log_end_bytes;
	uint32_t bs;
	uint8_t uuid[RLFS_UUID_SIZE];
	uint64_t written_lsn;   /* newest record LSN written to the log */
	uint64_t durable_lsn;   /* newest record LSN followed by a flush */
	uint64_t inplace;       /* metadata blocks written in place */
	uint64_t violations;
} wa;

static int wa_pwrite(struct rlfs_dev *dev, const void *buf, size_t len, uint64_t off)
{
	for (size_t o = 0; o < len; o += wa.bs) {
		const uint8_t *b = (const uint8_t *)buf + o;
		uint64_t at = off + o;
		if (at >= wa.log_start_bytes && at < wa.log_end_bytes) {
			const struct rlfs_log_rec *rec = (const void *)b;
			if (rlfs_get32(rec->magic) == RLFS_LOG_MAGIC)
				wa.written_lsn = RLFS_MAX(wa.written_lsn, rlfs_get64(rec->lsn));
			continue;
		}
		const struct rlfs_blkhdr *h = (const void *)b;
		if (len - o < sizeof(*h))
			continue; /* a short write (no whole header to read) */
		if (memcmp(h->uuid, wa.uuid, RLFS_UUID_SIZE) != 0 ||
		    rlfs_get64(h->blkno) != at / wa.bs)
			continue; /* file data, or not a block with a header */
		wa.inplace++;
		uint64_t lsn = rlfs_get64(h->lsn);
		if (lsn == 0 || lsn > wa.durable_lsn)
			wa.violations++;
	}
	return orig_ops->pwrite(dev, buf, len, off);
}

static int wa_flush(struct rlfs_dev *dev)
{
	int err = orig_ops->flush(dev);
	if (!err)
		wa.durable_lsn = wa.written_lsn;
	return err;
}

static int wa_pread(struct rlfs_dev *dev, void *buf, size_t len, uint64_t off)
{
	return orig_ops->pread(dev, buf, len, off);
}

static void wa_close(struct rlfs_dev *dev)
{
	orig_ops->close(dev);
}

static const struct rlfs_dev_ops wa_ops = { wa_pread, wa_pwrite, wa_flush, wa_close };

/* Every block written in place carries the LSN of a checkpoint that was
 * durable (written and flushed) before the write; and with a small log,
 * many fsyncs wrap the ring several times and the AIL is pushed. */
static void test_write_ahead_and_wrap(void **state)
{
	(void)state;
	struct tu_fs fs;
	char crash[64];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);  /* default log: 1 MiB, 256 blocks */
	struct rlfs_mount *mp = fs.mp;
	memset(&wa, 0, sizeof(wa));
	wa.bs = mp->blocksize;
	wa.log_start_bytes = mp->log->start_fsbno * mp->blocksize;
	wa.log_end_bytes = wa.log_start_bytes + (uint64_t)mp->log->size_blocks * mp->blocksize;
	memcpy(wa.uuid, mp->uuid, RLFS_UUID_SIZE);
	wa.durable_lsn = rlfs_log_head_lsn(mp->log);
	orig_ops = mp->dev->ops;
	mp->dev->ops = &wa_ops;
	uint32_t cycle0 = mp->log->head_cycle;
	for (int i = 0; i < 600; i++) {
		char name[16];
		snprintf(name, sizeof(name), "w%d", i);
		uint64_t ino = mkfile(mp, name);
		assert_int_equal(rlfs_write(mp, ino, name, strlen(name), 0), (ssize_t)strlen(name));
		if (i % 3 == 0)
			assert_int_equal(rlfs_fsync(mp, ino, 0), 0);
		if (i % 7 == 0 && i)
			assert_int_equal(rlfs_unlink(mp, rlfs_root_ino(mp), "w1"), i == 7 ? 0 : -ENOENT);
	}
	assert_true(mp->log->head_cycle >= cycle0 + 2);
	struct rlfs_log_stats st;
	rlfs_log_get_stats(mp, &st);
	assert_true(st.ail_pushes >= 2);
	assert_true(wa.inplace > 0);
	assert_int_equal(wa.violations, 0);
	print_message("log: %llu bytes in %llu records, %llu checkpoints, %llu AIL pushes, "
		      "cycle %u\n", (unsigned long long)st.bytes_written,
		      (unsigned long long)st.records_written, (unsigned long long)st.ckpts_written,
		      (unsigned long long)st.ail_pushes, mp->log->head_cycle);
	copy_image(fs.path, crash, sizeof(crash));
	mp->dev->ops = orig_ops;

	struct rlfs_mount *cm;
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &cm), 0);
	assert_true(exists(cm, "w0"));
	assert_true(exists(cm, "w597"));
	assert_false(exists(cm, "w1"));
	assert_int_equal(rlfs_mount_close(cm), 0);
	assert_int_equal(tu_fsck(crash, 0), 0);
	unlink(crash);
	tu_unmount(&fs);
}

/* Log bytes per operation (byte-range logging, format 2): printed for
 * docs/DESIGN.md; bounded so a format change that bloats it is seen. */
static void test_log_bytes_per_op(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	struct rlfs_mount *mp = fs.mp;
	struct rlfs_log_stats a, b;
	enum { N = 100 };
	uint64_t ino[N];
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "warm%d", i);
		ino[i] = mkfile(mp, name);
	}
	assert_int_equal(rlfs_sync(mp), 0);
	/* create + fsync each: one checkpoint per op */
	rlfs_log_get_stats(mp, &a);
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "c%d", i);
		ino[i] = mkfile(mp, name);
		assert_int_equal(rlfs_fsync(mp, ino[i], 0), 0);
	}
	rlfs_log_get_stats(mp, &b);
	double create = (double)(b.bytes_written - a.bytes_written) / N;
	rlfs_log_get_stats(mp, &a);
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "c%d", i);
		assert_int_equal(rlfs_unlink(mp, rlfs_root_ino(mp), name), 0);
		assert_int_equal(rlfs_sync(mp), 0);
	}
	rlfs_log_get_stats(mp, &b);
	double unlinkb = (double)(b.bytes_written - a.bytes_written) / N;
	/* clone of a 16-block file + fsync */
	uint64_t src = mkfile(mp, "src");
	static char data[16 * 4096];
	memset(data, 'a', sizeof(data));
	assert_int_equal(rlfs_write(mp, src, data, sizeof(data), 0), (ssize_t)sizeof(data));
	assert_int_equal(rlfs_sync(mp), 0);
	rlfs_log_get_stats(mp, &a);
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "cl%d", i);
		uint64_t dst = mkfile(mp, name);
		assert_int_equal(rlfs_clone_range(mp, src, 0, dst, 0, 0, 0), (int64_t)sizeof(data));
		assert_int_equal(rlfs_sync(mp), 0);
	}
	rlfs_log_get_stats(mp, &b);
	double clone = (double)(b.bytes_written - a.bytes_written) / N;
	print_message("log bytes per op (block %u): create+fsync %.0f, unlink+sync %.0f, "
		      "create+clone 16 blocks+sync %.0f\n", mp->blocksize, create, unlinkb, clone);
	assert_true(create > 0 && create < 16.0 * mp->blocksize);
	tu_unmount(&fs);
}

/* fsync of a file whose last change is durable in the log writes nothing
 * to the log; a change makes the next fsync force it (and survive). */
static void test_fsync_forces_only_when_needed(void **state)
{
	(void)state;
	struct tu_fs fs;
	char crash[64];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	struct rlfs_mount *mp = fs.mp;
	uint64_t a = mkfile(mp, "a");
	uint64_t b = mkfile(mp, "b");
	assert_int_equal(rlfs_fsync(mp, a, 0), 0);
	struct rlfs_log_stats s0, s1;
	rlfs_log_get_stats(mp, &s0);
	assert_int_equal(rlfs_fsync(mp, a, 0), 0);   /* nothing new */
	assert_int_equal(rlfs_fsync(mp, b, 0), 0);   /* b came in the same checkpoint */
	rlfs_log_get_stats(mp, &s1);
	assert_int_equal(s1.ckpts_written, s0.ckpts_written);
	assert_int_equal(s1.bytes_written, s0.bytes_written);
	assert_int_equal(rlfs_write(mp, b, "data", 4, 0), 4);
	assert_int_equal(rlfs_fsync(mp, b, 0), 0);   /* b changed: forced */
	rlfs_log_get_stats(mp, &s1);
	assert_int_equal(s1.ckpts_written, s0.ckpts_written + 1);
	copy_image(fs.path, crash, sizeof(crash));
	struct rlfs_mount *cm;
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &cm), 0);
	struct stat st;
	assert_int_equal(rlfs_lookup(cm, rlfs_root_ino(cm), "b", &st), 0);
	assert_int_equal(st.st_size, 4);
	char buf[4];
	assert_int_equal(rlfs_read(cm, st.st_ino, buf, 4, 0), 4);
	assert_memory_equal(buf, "data", 4);
	assert_int_equal(rlfs_mount_close(cm), 0);
	unlink(crash);
	tu_unmount(&fs);
}

/* The image after a clean power cut at event pos of rec, in a new file
 * named into path. */
static void build_cut(struct rlfs_crash_rec *rec, uint64_t pos, char *path, size_t len)
{
	snprintf(path, len, "/tmp/rlfs-intent-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	struct rlfs_crash_cut cut = { .pos = pos, .keep_all = true };
	assert_int_equal(rlfs_crash_rec_build(rec, &cut, fd, NULL), 0);
	close(fd);
}

/* Files for the intent tests: "a" (100 one-block extents, every other
 * block), "b" a clone of its first 60 (shared: refcount 2), "c" like "a" but not
 * shared; everything synced. */
static void make_intent_files(struct rlfs_mount *mp)
{
	uint32_t bs = mp->blocksize;
	uint64_t a = mkfile(mp, "a"), b = mkfile(mp, "b"), c = mkfile(mp, "c");
	char *buf = malloc(bs);
	assert_non_null(buf);
	memset(buf, 'x', bs);
	for (uint64_t i = 0; i < 100; i++) {
		assert_int_equal(rlfs_write(mp, a, buf, bs, 2 * i * bs), (ssize_t)bs);
		assert_int_equal(rlfs_write(mp, c, buf, bs, 2 * i * bs), (ssize_t)bs);
	}
	/* 60 extents: b's inactivation is one transaction (more would
	 * leave an orphan inode between its rolls after a crash: no unlinked
	 * list yet) */
	assert_int_equal(rlfs_clone_range(mp, a, 0, b, 0, 119ull * bs, 0), (int64_t)(119 * bs));
	assert_int_equal(rlfs_sync(mp), 0);
	free(buf);
}

/* The work whose freeing goes through intents: unlink of the clone "b"
 * (CUI decreases 2 -> 1), truncate of "a" (decreases 1 -> 0: EFIs) and
 * punch of "c"'s first half, truncate of the rest (EFIs). */
static void intent_work(struct rlfs_mount *mp)
{
	uint32_t bs = mp->blocksize;
	struct stat st, out;
	assert_int_equal(rlfs_unlink(mp, rlfs_root_ino(mp), "b"), 0);
	assert_int_equal(rlfs_lookup(mp, rlfs_root_ino(mp), "a", &st), 0);
	memset(&out, 0, sizeof(out));
	struct stat sz = st;
	sz.st_size = 0;
	assert_int_equal(rlfs_setattr(mp, st.st_ino, &sz, RLFS_SET_SIZE, &out), 0);
	rlfs_forget(mp, st.st_ino, 1);
	assert_int_equal(rlfs_lookup(mp, rlfs_root_ino(mp), "c", &st), 0);
	assert_int_equal(rlfs_fallocate(mp, st.st_ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					0, 100ull * bs), 0);
	sz = st;
	sz.st_size = bs;
	assert_int_equal(rlfs_setattr(mp, st.st_ino, &sz, RLFS_SET_SIZE, &out), 0);
	rlfs_forget(mp, st.st_ino, 1);
	assert_int_equal(rlfs_sync(mp), 0);
}

/*
 * Intents survive a crash and recovery finishes them.  The work above runs
 * on a crash-recording device with every intent forced to the log in its
 * own checkpoint (force_intents), so that power cuts fall between an
 * intent and its done.  The image after a cut at every flush is mounted
 * (recovery) and must check clean: blocks freed and refcounts right.
 * Without the intents' recovery the cuts between an intent and its done
 * leave refcount records of unmapped blocks or leaked blocks (fsck finds
 * them).  Then a crash right after a recovery (before a clean unmount)
 * recovers again to the same clean state.
 */
static void test_intents_recovered(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	struct rlfs_mount *mp = fs.mp;
	make_intent_files(mp);
	struct rlfs_crash_rec *rec = tu_crash_record(mp);
	mp->log->force_intents = true;
	struct rlfs_log_stats st0, st;
	rlfs_log_get_stats(mp, &st0);  /* the clone above used intents too */
	intent_work(mp);
	rlfs_log_get_stats(mp, &st);
	assert_true(st.intents_logged - st0.intents_logged >= 10);
	assert_int_equal(st.intents_whiteout - st0.intents_whiteout, 0);

	uint64_t npos = rlfs_crash_rec_pos(rec), cuts = 0, with_intents = 0, recovered = 0;
	uint64_t again_pos = 0;
	char img[64];
	for (uint64_t i = 0; i < npos; i++) {
		struct rlfs_crash_event ev;
		assert_int_equal(rlfs_crash_rec_event(rec, i, &ev), 0);
		if (ev.kind != RLFS_CRASH_FLUSH)
			continue;
		build_cut(rec, i + 1, img, sizeof(img));
		struct rlfs_mount *cm;
		assert_int_equal(rlfs_mount_open(img, RLFS_MOUNT_NOLOCK, &cm), 0);
		struct rlfs_log_stats cst;
		rlfs_log_get_stats(cm, &cst);
		cuts++;
		if (cst.intents_recovered) {
			with_intents++;
			recovered += cst.intents_recovered;
			if (!again_pos)
				again_pos = i + 1;
		}
		assert_int_equal(rlfs_mount_close(cm), 0);
		if (tu_fsck(img, 0) != 0)
			fail_msg("cut at event %llu of %llu: fsck not clean",
				 (unsigned long long)i, (unsigned long long)npos);
		unlink(img);
	}
	print_message("intents: %llu cuts, %llu with intents to finish (%llu intents)\n",
		      (unsigned long long)cuts, (unsigned long long)with_intents,
		      (unsigned long long)recovered);
	assert_true(with_intents >= 3);
	assert_true(again_pos > 0);

	/* a crash right after recovery finished the intents (copy taken
	 * while that mount is open: no clean unmount) recovers again */
	char crash2[64];
	struct rlfs_mount *cm;
	build_cut(rec, again_pos, img, sizeof(img));
	assert_int_equal(rlfs_mount_open(img, RLFS_MOUNT_NOLOCK, &cm), 0);
	copy_image(img, crash2, sizeof(crash2));
	assert_int_equal(rlfs_mount_close(cm), 0);
	assert_int_equal(rlfs_mount_open(crash2, RLFS_MOUNT_NOLOCK, &cm), 0);
	assert_int_equal(rlfs_mount_close(cm), 0);
	assert_int_equal(tu_fsck(crash2, 0), 0);
	unlink(crash2);
	unlink(img);
	/* fsck -n says the log needs replay; fsck (repair) finishes the
	 * intents itself (through a mount), leaving a clean image */
	build_cut(rec, again_pos, img, sizeof(img));
	assert_int_equal(tu_fsck(img, 4), 4);
	assert_int_equal(tu_fsck_repair(img), 0);
	assert_int_equal(tu_fsck(img, 0), 0);
	unlink(img);
	tu_unmount(&fs);
	rlfs_crash_rec_free(rec);
}

/* A type of the test's own (4-byte items), registered for recovery, and
 * one that is not. */
struct tt_item {
	struct rlfs_defer_item di;
	uint8_t v[4];
};
static unsigned tt_finished, tt_recovered;
static uint8_t tt_last[4];
static bool tt_recover_rdonly;  /* the mount read-only while recovering */
static const struct rlfs_defer_type tt_type;

static void tt_encode(const struct rlfs_defer_item *item, void *buf)
{
	memcpy(buf, ((const struct tt_item *)item)->v, 4);
}
static int tt_finish(struct rlfs_trans *tp, struct rlfs_defer_item *item)
{
	tt_finished++;
	return 0;
}
static void tt_cancel(struct rlfs_defer_item *item)
{
	free(item);
}
static int tt_recover(struct rlfs_trans *tp, const void *buf, size_t bytes)
{
	assert_int_equal(bytes, 4);
	memcpy(tt_last, buf, 4);
	tt_recovered++;
	tt_recover_rdonly = rlfs_mount_is_rdonly(tp->mp);
	struct tt_item *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	memcpy(t->v, buf, 4);
	return rlfs_defer_add(tp, &tt_type, &t->di);
}
static const struct rlfs_defer_type tt_type = {
	.name = "test", .intent_code = 0x7e11, .done_code = 0x7e12, .max_items = 4,
	.item_bytes = 4, .encode = tt_encode, .finish_item = tt_finish,
	.cancel_item = tt_cancel, .recover_item = tt_recover,
};
static const struct rlfs_defer_type tt_unknown = {
	.name = "unregistered", .intent_code = 0x7e21, .done_code = 0x7e22, .max_items = 4,
	.item_bytes = 4, .encode = tt_encode, .finish_item = tt_finish,
	.cancel_item = tt_cancel, .recover_item = tt_recover,
};

/* Commit one item of type; its intent is forced to the log, its done
 * stays in the CIL; return a copy of the image as a kill -9 leaves it. */
static void tt_crash(struct tu_fs *fs, const struct rlfs_defer_type *type, char *crash,
		     size_t len)
{
	fs->mp->log->force_intents = true;
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(fs->mp, &fs->mp->resv.tr_fsck, 0, 0, &tp), 0);
	struct tt_item *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	memcpy(t->v, "\x01\x02\x03\x04", 4);
	assert_int_equal(rlfs_defer_add(tp, type, &t->di), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	copy_image(fs->path, crash, len);
}

/* An intent of any registered type whose done is lost is handed back to
 * its recover_item with its bytes, and finished again; an intent of a
 * type recovery does not know fails the mount (-EUCLEAN) and leaves the
 * image as it was. */
static void test_intent_type_recovery(void **state)
{
	(void)state;
	struct tu_fs fs;
	char crash[64];
	assert_int_equal(rlfs_defer_type_register(&tt_type), 0);
	assert_ptr_equal(rlfs_defer_type_find(0x7e11), &tt_type);
	assert_ptr_equal(rlfs_defer_type_find(RLFS_LOG_EFI), &rlfs_efi_type);
	assert_ptr_equal(rlfs_defer_type_find(RLFS_LOG_CUI), &rlfs_cui_type);
	assert_null(rlfs_defer_type_find(0x7e21));
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	tt_finished = tt_recovered = 0;
	tt_crash(&fs, &tt_type, crash, sizeof(crash));
	assert_int_equal(tt_finished, 1);
	struct rlfs_mount *mp;
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &mp), 0);
	struct rlfs_log_stats st;
	rlfs_log_get_stats(mp, &st);
	assert_int_equal(st.intents_recovered, 1);
	assert_int_equal(tt_recovered, 1);
	assert_int_equal(tt_finished, 2);
	assert_memory_equal(tt_last, "\x01\x02\x03\x04", 4);
	assert_int_equal(rlfs_mount_close(mp), 0);
	/* finished: a second mount has nothing to recover */
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &mp), 0);
	assert_int_equal(tt_recovered, 1);
	assert_int_equal(rlfs_mount_close(mp), 0);
	assert_int_equal(tu_fsck(crash, 0), 0);
	unlink(crash);

	/* a read-only mount replays but leaves the intent; remounting
	 * read-write finishes it */
	tt_crash(&fs, &tt_type, crash, sizeof(crash));
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK | RLFS_MOUNT_RDONLY, &mp), 0);
	assert_int_equal(tt_recovered, 1);
	tt_recover_rdonly = false;
	assert_int_equal(rlfs_mount_set_rdonly(mp, false), 0);
	assert_int_equal(tt_recovered, 2);
	/* no user write could start while the intent was finished (the
	 * daemon serves requests meanwhile): the mount said read-only */
	assert_true(tt_recover_rdonly);
	assert_false(rlfs_mount_is_rdonly(mp));
	assert_int_equal(rlfs_mount_close(mp), 0);
	assert_int_equal(tu_fsck(crash, 0), 0);
	unlink(crash);

	tt_crash(&fs, &tt_unknown, crash, sizeof(crash));
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &mp), -EUCLEAN);
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &mp), -EUCLEAN);
	unlink(crash);
	tu_unmount(&fs);
}

/* Without force_intents, an intent whose done commits before the next
 * log force never reaches the log (whiteout): the log holds neither. */
static void test_intent_whiteout(void **state)
{
	(void)state;
	struct tu_fs fs;
	/* without the rmap: its RUIs fill this small log's CIL mid-chain,
	 * so a background push logs some intents before their dones */
	tu_mkfs_rmapbt = -1;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	tu_mkfs_rmapbt = 0;
	make_intent_files(fs.mp);
	struct rlfs_log_stats before, after;
	rlfs_log_get_stats(fs.mp, &before);
	intent_work(fs.mp);
	rlfs_log_get_stats(fs.mp, &after);
	assert_true(after.intents_logged - before.intents_logged >= 10);
	assert_int_equal(after.intents_logged - before.intents_logged,
			 after.intents_whiteout - before.intents_whiteout);
	assert_null(fs.mp->log->live_intents.first);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	assert_int_equal(tu_fsck(fs.path, 0), 0);
	tu_unmount(&fs);
}

static struct rlfs_log_stats stats_of(struct rlfs_mount *mp)
{
	struct rlfs_log_stats st;
	rlfs_log_get_stats(mp, &st);
	return st;
}

/* No log write and no log flush between two stats snapshots. */
static void assert_log_still(const struct rlfs_log_stats *a, const struct rlfs_log_stats *b)
{
	assert_int_equal(b->records_written, a->records_written);
	assert_int_equal(b->bytes_written, a->bytes_written);
	assert_int_equal(b->ckpts_written, a->ckpts_written);
	assert_int_equal(b->forces, a->forces);
}

/*
 * fsync forces the log only up to the CIL context that last changed the
 * inode (xfs_log_force_seq with ili_commit_seq / ili_datasync_seq): with
 * another inode's change in the CIL, fsync of a clean inode (also one
 * evicted from the inode cache and loaded again) and fdatasync of an inode
 * whose last change was timestamps only write nothing to the log; fsync of
 * the changed inode and of a directory with a new entry do, and what they
 * forced survives a crash.
 */
static void test_fsync_lsn(void **state)
{
	(void)state;
	struct tu_fs fs;
	char crash[64];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	struct rlfs_mount *mp = fs.mp;
	uint64_t root = rlfs_root_ino(mp);
	struct stat st, sa, sb, sd;
	/* a and b stay cached (a lookup each, as the kernel holds them);
	 * e is evicted after every operation (no lookup) */
	assert_int_equal(rlfs_mknod(mp, root, "a", S_IFREG | 0644, 0, 0, 0, &sa), 0);
	assert_int_equal(rlfs_mknod(mp, root, "b", S_IFREG | 0644, 0, 0, 0, &sb), 0);
	assert_int_equal(rlfs_mkdir(mp, root, "d", 0755, 0, 0, &sd), 0);
	uint64_t e = mkfile(mp, "e");
	static char blk[8192];
	memset(blk, 'b', sizeof(blk));
	assert_int_equal(rlfs_write(mp, sb.st_ino, blk, sizeof(blk), 0), (ssize_t)sizeof(blk));
	assert_int_equal(rlfs_write(mp, e, blk, 4096, 0), 4096);
	assert_int_equal(rlfs_sync(mp), 0);

	/* dirty a: its size and block map are in the CIL */
	memset(blk, 'a', sizeof(blk));
	assert_int_equal(rlfs_write(mp, sa.st_ino, blk, 4096, 0), 4096);
	struct rlfs_log_stats s0 = stats_of(mp);
	assert_int_equal(rlfs_fsync(mp, sb.st_ino, 0), 0);  /* clean, durable */
	assert_int_equal(rlfs_fsync(mp, sb.st_ino, 1), 0);
	assert_int_equal(rlfs_fsync(mp, e, 0), 0);          /* loaded again, durable */
	assert_int_equal(rlfs_fsync(mp, root, 0), 0);       /* no entry changed since */
	struct rlfs_log_stats s1 = stats_of(mp);
	assert_log_still(&s0, &s1);

	/* timestamps only: fdatasync needs nothing from the log, fsync does */
	st.st_mtim.tv_sec = 1000000000;
	st.st_mtim.tv_nsec = 0;
	assert_int_equal(rlfs_setattr(mp, sb.st_ino, &st, RLFS_SET_MTIME, NULL), 0);
	assert_int_equal(rlfs_fsync(mp, sb.st_ino, 1), 0);
	s1 = stats_of(mp);
	assert_log_still(&s0, &s1);
	/* an overwrite of written blocks within the size: mtime/ctime only */
	assert_int_equal(rlfs_write(mp, sb.st_ino, blk, 4096, 0), 4096);
	assert_int_equal(rlfs_fsync(mp, sb.st_ino, 1), 0);
	s1 = stats_of(mp);
	assert_log_still(&s0, &s1);

	/* fsync of a: one checkpoint (with everything else in the CIL) */
	assert_int_equal(rlfs_fsync(mp, sa.st_ino, 1), 0);
	s1 = stats_of(mp);
	assert_int_equal(s1.ckpts_written, s0.ckpts_written + 1);
	assert_int_equal(s1.forces, s0.forces + 1);
	/* b's timestamps came in that checkpoint: nothing left to force */
	assert_int_equal(rlfs_fsync(mp, sb.st_ino, 0), 0);
	struct rlfs_log_stats s2 = stats_of(mp);
	assert_log_still(&s1, &s2);

	/* a new file in d: fsync of the directory forces its entry, and
	 * fsync of the new file after that needs nothing more */
	assert_int_equal(rlfs_mknod(mp, sd.st_ino, "n", S_IFREG | 0644, 0, 0, 0, &st), 0);
	assert_int_equal(rlfs_write(mp, st.st_ino, "new!", 4, 0), 4);
	s1 = stats_of(mp);
	assert_int_equal(rlfs_fsync(mp, sd.st_ino, 1), 0);
	s2 = stats_of(mp);
	assert_int_equal(s2.ckpts_written, s1.ckpts_written + 1);
	assert_int_equal(rlfs_fsync(mp, st.st_ino, 0), 0);
	s1 = stats_of(mp);
	assert_log_still(&s2, &s1);

	/* the crash image (a kill -9 now) has a's data, d/n and its data */
	copy_image(fs.path, crash, sizeof(crash));
	struct rlfs_mount *cm;
	assert_int_equal(rlfs_mount_open(crash, RLFS_MOUNT_NOLOCK, &cm), 0);
	char buf[4096];
	assert_int_equal(rlfs_lookup(cm, rlfs_root_ino(cm), "a", &st), 0);
	assert_int_equal(st.st_size, 4096);
	assert_int_equal(rlfs_read(cm, st.st_ino, buf, 4096, 0), 4096);
	assert_memory_equal(buf, blk, 4096);
	assert_int_equal(rlfs_lookup(cm, rlfs_root_ino(cm), "d", &st), 0);
	assert_int_equal(rlfs_lookup(cm, st.st_ino, "n", &st), 0);
	assert_int_equal(rlfs_read(cm, st.st_ino, buf, 4, 0), 4);
	assert_memory_equal(buf, "new!", 4);
	assert_int_equal(rlfs_mount_close(cm), 0);
	assert_int_equal(tu_fsck(crash, 0), 0);
	unlink(crash);
	rlfs_forget(mp, sa.st_ino, 1);
	rlfs_forget(mp, sb.st_ino, 1);
	rlfs_forget(mp, sd.st_ino, 1);
	tu_unmount(&fs);
}

/* A thread's operation: its arguments, result and whether it ended. */
struct op_arg {
	struct rlfs_mount *mp;
	uint64_t ino;
	const char *name;
	int rc;
	int done;
};

static void *fsync_op_thread(void *p)
{
	struct op_arg *a = p;
	a->rc = rlfs_fsync(a->mp, a->ino, 0);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Group commit: four files changed, then fsync'd from four threads at
 * once: one checkpoint and one log force in all (the fsyncs queued behind
 * the first find their sequence durable). */
static void test_fsync_group_commit(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	struct rlfs_mount *mp = fs.mp;
	enum { N = 4 };
	struct stat st[N];
	struct op_arg args[N];
	pthread_t th[N];
	for (int i = 0; i < N; i++) {
		char name[16];
		snprintf(name, sizeof(name), "g%d", i);
		assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), name, S_IFREG | 0644, 0, 0, 0,
					    &st[i]), 0);
	}
	assert_int_equal(rlfs_sync(mp), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(rlfs_write(mp, st[i].st_ino, "group", 5, 0), 5);
	struct rlfs_log_stats s0 = stats_of(mp);
	for (int i = 0; i < N; i++) {
		args[i] = (struct op_arg){ .mp = mp, .ino = st[i].st_ino, .rc = -1 };
		assert_int_equal(pthread_create(&th[i], NULL, fsync_op_thread, &args[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(args[i].rc, 0);
	}
	struct rlfs_log_stats s1 = stats_of(mp);
	assert_int_equal(s1.ckpts_written, s0.ckpts_written + 1);
	assert_int_equal(s1.forces, s0.forces + 1);
	for (int i = 0; i < N; i++)
		rlfs_forget(mp, st[i].st_ino, 1);
	tu_unmount(&fs);
}

/* A device whose flushes wait, while slow_block is set, until the test
 * lets them go (slow_release); slow_entered counts flushes that waited. */
static const struct rlfs_dev_ops *slow_inner;
static struct rlfs_dev_ops slow_ops;
static int slow_block, slow_release, slow_entered;

static int slow_fail;   /* flushes to fail with -EIO */

static int slow_flush(struct rlfs_dev *dev)
{
	if (__atomic_load_n(&slow_fail, __ATOMIC_ACQUIRE) > 0) {
		__atomic_sub_fetch(&slow_fail, 1, __ATOMIC_ACQ_REL);
		return -EIO;
	}
	if (__atomic_load_n(&slow_block, __ATOMIC_ACQUIRE)) {
		__atomic_add_fetch(&slow_entered, 1, __ATOMIC_ACQ_REL);
		while (!__atomic_load_n(&slow_release, __ATOMIC_ACQUIRE))
			usleep(1000);
		__atomic_store_n(&slow_release, 0, __ATOMIC_RELEASE);
	}
	return slow_inner->flush(dev);
}

static void *create_thread(void *p)
{
	struct op_arg *a = p;
	struct stat st;
	a->rc = rlfs_mknod(a->mp, rlfs_root_ino(a->mp), a->name, S_IFREG | 0644, 0, 0, 0, &st);
	if (a->rc == 0)
		rlfs_forget(a->mp, st.st_ino, 1);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static bool wait_flag(int *flag, int want, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (__atomic_load_n(flag, __ATOMIC_ACQUIRE) >= want)
			return true;
		usleep(1000);
	}
	return false;
}

/* While an fsync's device flush is in progress (the data flush before
 * the checkpoint, then the checkpoint's own flush) another thread's
 * create commits: fsync does not hold meta_lock across its flushes.
 * Fails on the code that flushed under meta_lock (the create waited for
 * the flush). */
static void test_fsync_flush_unlocked(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	struct rlfs_mount *mp = fs.mp;
	uint64_t a = mkfile(mp, "a");
	static char blk[4096];
	memset(blk, 'a', sizeof(blk));
	assert_int_equal(rlfs_write(mp, a, blk, sizeof(blk), 0), (ssize_t)sizeof(blk));
	slow_inner = mp->dev->ops;
	slow_ops = *slow_inner;
	slow_ops.flush = slow_flush;
	mp->dev->ops = &slow_ops;
	slow_entered = slow_release = 0;
	__atomic_store_n(&slow_block, 1, __ATOMIC_RELEASE);

	struct op_arg fa = { .mp = mp, .ino = a };
	pthread_t ft;
	assert_int_equal(pthread_create(&ft, NULL, fsync_op_thread, &fa), 0);
	const char *names[2] = { "during-data-flush", "during-log-flush" };
	bool ok[2] = { false, false };
	bool entered = true;
	for (int k = 0; k < 2 && entered; k++) {
		/* the fsync's k-th flush is waiting */
		entered = wait_flag(&slow_entered, k + 1, 5000);
		if (!entered)
			break;
		struct op_arg ca = { .mp = mp, .name = names[k] };
		pthread_t ct;
		assert_int_equal(pthread_create(&ct, NULL, create_thread, &ca), 0);
		ok[k] = wait_flag(&ca.done, 1, 3000);
		if (!ok[k]) {
			/* stuck behind the flush (meta_lock held across
			 * it): let every flush through, then fail */
			__atomic_store_n(&slow_block, 0, __ATOMIC_RELEASE);
			entered = false;
		}
		__atomic_store_n(&slow_release, 1, __ATOMIC_RELEASE);
		assert_int_equal(pthread_join(ct, NULL), 0);
		assert_int_equal(ca.rc, 0);
	}
	__atomic_store_n(&slow_block, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&slow_release, 1, __ATOMIC_RELEASE);
	assert_int_equal(pthread_join(ft, NULL), 0);
	assert_int_equal(fa.rc, 0);
	mp->dev->ops = slow_inner;
	assert_true(ok[0]);  /* the create did not wait for the data flush */
	assert_true(ok[1]);  /* ... nor for the checkpoint's */
	assert_true(exists(mp, "during-data-flush"));
	tu_unmount(&fs);
}

/* A device flush that fails reaches fsync's caller: the data flush made
 * before meta_lock is taken is not retried into a success (a host
 * writeback error is reported to one fdatasync only). */
static void test_fsync_flush_error(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	struct rlfs_mount *mp = fs.mp;
	uint64_t a = mkfile(mp, "a");
	static char blk[4096];
	memset(blk, 'a', sizeof(blk));
	assert_int_equal(rlfs_write(mp, a, blk, sizeof(blk), 0), (ssize_t)sizeof(blk));
	slow_inner = mp->dev->ops;
	slow_ops = *slow_inner;
	slow_ops.flush = slow_flush;
	mp->dev->ops = &slow_ops;
	slow_block = 0;
	slow_fail = 1;
	int rc = rlfs_fsync(mp, a, 0);
	slow_fail = 0;
	mp->dev->ops = slow_inner;
	assert_int_equal(rc, -EIO);
	assert_int_equal(rlfs_fsync(mp, a, 0), 0);     /* the next one flushes */
	tu_unmount(&fs);
}

static uint32_t mode_of(struct rlfs_mount *mp, uint64_t ino)
{
	struct stat st;
	assert_int_equal(rlfs_getattr(mp, ino, &st), 0);
	return (uint32_t)st.st_mode & 07777;
}

static void chmod_ino(struct rlfs_mount *mp, uint64_t ino, uint32_t mode)
{
	struct stat in = { .st_mode = (mode_t)(S_IFREG | mode) }, out;
	assert_int_equal(rlfs_setattr(mp, ino, &in, RLFS_SET_MODE, &out), 0);
}

/*
 * A background push (the CIL past cil_max: written, not flushed) that
 * logs a block again must not move the tail past the block's older,
 * durable checkpoint until the new one is flushed.  C1: chmod of "a" to
 * 0600, fsync (its inode block durable in the log only).  C2: chmod to
 * 0640, pushed without a flush.  C3: another background checkpoint.  The
 * device then writes C3 but loses C2 (the unflushed writes are reordered):
 * recovery starts at the newest tail found in a header (C3's) and must
 * still replay C1, so "a" is 0600.  Before the fix C3 carried the tail C2
 * (the AIL moved the relogged block at the unflushed push), recovery found
 * nothing to replay at C2 and "a" came back 0644: an fsync'd chmod lost
 * (the crash tester's meta workload, seed 2, cut 634: an ACL rewritten by
 * an fsync'd chmod came back old).
 */
static void test_background_push_tail(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t a = mkfile(fs.mp, "a");
	tu_remount(&fs);        /* everything in place, the AIL empty */
	struct rlfs_mount *mp = fs.mp;
	struct rlfs_crash_rec *rec = tu_crash_record(mp);

	chmod_ino(mp, a, 0600);
	assert_int_equal(rlfs_fsync(mp, a, 0), 0);                 /* C1 */
	uint64_t p1 = rlfs_crash_rec_pos(rec);
	struct rlfs_log_stats s0 = stats_of(mp);
	mp->log->cil_max = 1;   /* every commit pushes, without a flush */
	chmod_ino(mp, a, 0640);                                     /* C2 */
	uint64_t p2 = rlfs_crash_rec_pos(rec);
	mkfile(mp, "b");                                            /* C3 */
	uint64_t p3 = rlfs_crash_rec_pos(rec);
	struct rlfs_log_stats s1 = stats_of(mp);
	assert_true(s1.ckpts_written >= s0.ckpts_written + 2);
	assert_int_equal(s1.forces, s0.forces);
	assert_true(p1 < p2 && p2 < p3);

	/* C3 may not start while C2 is unflushed: the writer flushes first
	 * (at most one checkpoint in flight, log.c), so the device can no
	 * longer lose C2 and keep C3 (a log that looks so is refused as
	 * corrupt: later records past a bad one).  Before that flush, the
	 * tail hold (relog_hold_lsn) guarded this case: "a" came back 0644
	 * instead of the fsync'd 0600. */
	char img[64];
	uint64_t pf = 0;
	for (uint64_t i = p2; i < p3 && !pf; i++) {
		struct rlfs_crash_event ev;
		assert_int_equal(rlfs_crash_rec_event(rec, i, &ev), 0);
		if (ev.kind == RLFS_CRASH_FLUSH)
			pf = i + 1;
	}
	assert_true(pf > 0);
	struct rlfs_mount *cm;
	/* a cut right after that flush (C3 lost): the chmod of C2 is there */
	build_cut(rec, pf, img, sizeof(img));
	assert_int_equal(rlfs_mount_open(img, RLFS_MOUNT_NOLOCK, &cm), 0);
	assert_int_equal(mode_of(cm, a), 0640);
	assert_int_equal(rlfs_mount_close(cm), 0);
	assert_int_equal(tu_fsck(img, 0), 0);
	unlink(img);
	tu_unmount(&fs);
	rlfs_crash_rec_free(rec);
}

/* ---- relogging of long-lived intents (defer.h, log_intent.c) ----
 * lc_type: a chain of dependent steps on a scratch block (a symlink-typed
 * block at a free fsbno, as the byte-range tests use).  An item is
 * {kind, n}: a step (kind 1) sets bit n of the block's bitmap (from byte
 * 64), rewrites 1 KiB of it (log traffic) and queues step n - 1; the
 * anchors (kind 2) set bits LC_STEPS + 1 on.  lc_run queues step N and then
 * LC_ANCHORS anchors: depth first, their intents stay in the log for the
 * whole chain, holding the tail unless they are relogged, and recovery
 * finishes them after the chain, one by one. */
#define LC_STEPS 200
#define LC_ANCHORS 4
#define LC_BITS (LC_STEPS + LC_ANCHORS)   /* bits 1 .. LC_BITS */
struct lc_item {
	struct rlfs_defer_item di;
	uint16_t kind, n;
};
static uint64_t lc_fsbno;
static unsigned lc_finished, lc_recovered;
static const struct rlfs_defer_type lc_type;

static struct lc_item *lc_new(uint16_t kind, uint16_t n)
{
	struct lc_item *it = calloc(1, sizeof(*it));
	assert_non_null(it);
	it->kind = kind;
	it->n = n;
	return it;
}
static void lc_encode(const struct rlfs_defer_item *item, void *buf)
{
	const struct lc_item *it = (const struct lc_item *)item;
	uint8_t *b = buf;
	b[0] = (uint8_t)it->kind;
	b[1] = (uint8_t)(it->kind >> 8);
	b[2] = (uint8_t)it->n;
	b[3] = (uint8_t)(it->n >> 8);
}
static int lc_finish(struct rlfs_trans *tp, struct rlfs_defer_item *item)
{
	struct lc_item *it = (struct lc_item *)item;
	struct rlfs_buf *bp;
	int err = rlfs_trans_read_buf(tp, lc_fsbno, &rlfs_symlink_buf_ops, 7, &bp);
	if (err)
		return err;
	uint8_t *d = bp->data;
	d[64 + it->n / 8] |= (uint8_t)(1u << (it->n % 8));
	memset(d + 2048, (int)(it->n & 0xff), 1024);
	rlfs_trans_log_buf(tp, bp);
	rlfs_trans_brelse(tp, bp);
	lc_finished++;
	if (it->kind == 1 && it->n > 1)
		return rlfs_defer_add(tp, &lc_type, &lc_new(1, it->n - 1)->di);
	return 0;
}
static void lc_cancel(struct rlfs_defer_item *item)
{
	free(item);
}
static int lc_recover(struct rlfs_trans *tp, const void *buf, size_t bytes)
{
	assert_int_equal(bytes, 4);
	const uint8_t *b = buf;
	lc_recovered++;
	return rlfs_defer_add(tp, &lc_type,
			      &lc_new((uint16_t)(b[0] | b[1] << 8), (uint16_t)(b[2] | b[3] << 8))->di);
}
static const struct rlfs_defer_type lc_type = {
	.name = "longchain", .intent_code = 0x7e31, .done_code = 0x7e32, .max_items = 1,
	.item_bytes = 4, .encode = lc_encode, .finish_item = lc_finish,
	.cancel_item = lc_cancel, .recover_item = lc_recover,
};

/* A fresh filesystem with a 512 KiB (128-block) log and the rmap, the
 * scratch block written and synced. */
static void lc_setup(struct tu_fs *fs)
{
	assert_int_equal(rlfs_defer_type_register(&lc_type), 0);
	tu_mkfs_log_bytes = 512 << 10;
	tu_mkfs_mount(fs, 64 * MiB, 4096, 0);
	tu_mkfs_log_bytes = 0;
	struct rlfs_mount *mp = fs->mp;
	assert_int_equal(mp->log->size_blocks, 128);
	lc_fsbno = mp->dblocks - 8;
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_trans_get_buf(tp, lc_fsbno, &rlfs_symlink_buf_ops, 7, &bp), 0);
	struct rlfs_remote_hdr *rh = bp->data;
	rlfs_put32(rh->offset, 0);
	rlfs_put32(rh->bytes, 100);
	rlfs_trans_log_buf(tp, bp);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(rlfs_sync(mp), 0);
	lc_finished = lc_recovered = 0;
}

/* Queue step n and the anchors in one transaction and commit: the whole
 * chain runs.  Every intent goes to the log in its own checkpoint
 * (force_intents): each step moves the head. */
static int lc_run(struct rlfs_mount *mp, uint16_t n)
{
	mp->log->force_intents = true;
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_defer_add(tp, &lc_type, &lc_new(1, n)->di), 0);
	for (uint16_t j = 1; j <= LC_ANCHORS; j++)
		assert_int_equal(rlfs_defer_add(tp, &lc_type, &lc_new(2, LC_STEPS + j)->di), 0);
	return rlfs_trans_commit(tp);
}

/* Bits 1..n of the scratch block's bitmap in data: how many are set. */
static unsigned lc_bits(const uint8_t *d, unsigned n)
{
	unsigned k = 0;
	for (unsigned b = 1; b <= n; b++)
		k += (d[64 + b / 8] >> (b % 8)) & 1;
	return k;
}

/*
 * A chain of LC_STEPS dependent steps whose anchor intent is logged in
 * its first transaction, on a 128-block log with every intent in its own
 * checkpoint.  Without relogging (log->no_relog, RLFS_LOG_NO_RELOG=1) the
 * anchor holds the tail while the head goes round: the log fills and the
 * sync fails with -ENOSPC ("intents hold the tail").  With relogging the
 * chain completes, its intents were relogged, nothing is left live, and
 * the image checks clean.
 */
static void test_relog_long_chain(void **state)
{
	(void)state;
	struct tu_fs fs;
	struct rlfs_log_stats st;

	lc_setup(&fs);
	fs.mp->log->no_relog = true;
	int err = lc_run(fs.mp, LC_STEPS);
	if (!err)
		err = rlfs_sync(fs.mp);
	rlfs_log_get_stats(fs.mp, &st);
	print_message("relog off: chain %d (%s), %u steps done, %llu relogged\n", err,
		      strerror(-err), lc_finished, (unsigned long long)st.intents_relogged);
	assert_int_equal(err, -ENOSPC);
	assert_int_equal(st.intents_relogged, 0);
	(void)rlfs_mount_close(fs.mp);   /* the log is stuck: fails */
	fs.mp = NULL;
	tu_unmount(&fs);

	lc_setup(&fs);
	uint64_t logged0 = 0;
	rlfs_log_get_stats(fs.mp, &st);
	logged0 = st.intents_logged;
	assert_int_equal(lc_run(fs.mp, LC_STEPS), 0);
	assert_int_equal(rlfs_sync(fs.mp), 0);
	rlfs_log_get_stats(fs.mp, &st);
	print_message("relog on: %u steps done, %llu intents logged, %llu relogged, log at "
		      "cycle %u\n", lc_finished, (unsigned long long)(st.intents_logged - logged0),
		      (unsigned long long)st.intents_relogged, fs.mp->log->head_cycle);
	assert_int_equal(lc_finished, LC_BITS);
	assert_true(st.intents_relogged > 0);
	assert_true(fs.mp->log->head_cycle >= 3);   /* the head went round */
	for (const struct rlfs_log_ilog *il = fs.mp->log->live_intents.first; il; il = il->next)
		assert_true(il->done && rlfs_log_seq_durable(fs.mp, il->done_seq)); /* durable */
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	uint8_t *blk = malloc(4096);
	assert_non_null(blk);
	read_raw(fs.path, lc_fsbno * 4096, blk, 4096);
	assert_int_equal(lc_bits(blk, LC_BITS), LC_BITS);
	free(blk);
	assert_int_equal(tu_fsck(fs.path, 0), 0);
	tu_unmount(&fs);
}

/*
 * The same chain with the CIL pushed in the background (no flush) after
 * every step (two items: the scratch block and an intent), as a long chain
 * runs when nothing forces the log: once a later
 * flush has made an intent's done durable the intent is dropped, so the
 * live list stays within the intents of the checkpoints since the last
 * flush.  (It kept every intent whose done was written unflushed until a
 * force: an inactivation of a 65,536-extent file kept 24,000 of them, and
 * each step searched the list once per pending batch.)
 */
static void test_live_intents_pruned(void **state)
{
	(void)state;
	struct tu_fs fs;
	struct rlfs_log_stats st;

	lc_setup(&fs);
	struct rlfs_mount *mp = fs.mp;
	mp->log->cil_max = 2;   /* the scratch block and an intent */
	mp->log->force_intents = false;
	rlfs_log_get_stats(mp, &st);
	uint64_t logged0 = st.intents_logged;
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_defer_add(tp, &lc_type, &lc_new(1, LC_STEPS)->di), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(lc_finished, LC_STEPS);
	rlfs_log_get_stats(mp, &st);
	size_t live = 0, done = 0;
	for (const struct rlfs_log_ilog *il = mp->log->live_intents.first; il; il = il->next) {
		live++;
		done += il->done;
	}
	print_message("%llu intents logged, %llu whited out, %zu live (%zu with a done)\n",
		      (unsigned long long)(st.intents_logged - logged0),
		      (unsigned long long)st.intents_whiteout, live, done);
	assert_true(st.intents_logged - logged0 >= LC_STEPS);
	assert_true(live <= 4);
	assert_int_equal(mp->log->ihash_count, live + mp->log->cil_nintents);
	assert_int_equal(rlfs_sync(mp), 0);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	assert_int_equal(tu_fsck(fs.path, 0), 0);
	tu_unmount(&fs);
}

/*
 * Crashes in the middle of a relogged chain.  The chain of
 * test_relog_long_chain runs on a crash-recording device; images cut at
 * flushes spread over it are mounted read-only first (the log replayed,
 * the intents left: the scratch block shows which steps are durable), then
 * read-write, which finishes the intents.  At every cut recovery must do
 * exactly the work that was left: at most 1 + LC_ANCHORS intents (the
 * step in flight and the anchors; an intent that was relogged is
 * cancelled by its done), each remaining step and anchor finished once,
 * every bit set afterwards, fsck clean.  Some cuts must find an anchor
 * relogged (an id other than its first), and some recoveries must relog
 * the anchors still waiting, once the chain's remaining steps have moved
 * the head on (log_intent.c relog_recovered).
 */
static void test_relog_recovery(void **state)
{
	(void)state;
	struct tu_fs fs;
	lc_setup(&fs);
	struct rlfs_mount *mp = fs.mp;
	struct rlfs_crash_rec *rec = tu_crash_record(mp);
	/* lc_run's anchors: the intents after the first */
	uint64_t anchor_last = mp->defer_intent_seq + 1 + LC_ANCHORS;
	assert_int_equal(lc_run(mp, LC_STEPS), 0);
	assert_int_equal(rlfs_sync(mp), 0);
	struct rlfs_log_stats st;
	rlfs_log_get_stats(mp, &st);
	assert_true(st.intents_relogged > 0);

	uint64_t npos = rlfs_crash_rec_pos(rec), nflush = 0;
	uint64_t *flushes = calloc(npos, sizeof(*flushes));
	assert_non_null(flushes);
	for (uint64_t i = 0; i < npos; i++) {
		struct rlfs_crash_event ev;
		assert_int_equal(rlfs_crash_rec_event(rec, i, &ev), 0);
		if (ev.kind == RLFS_CRASH_FLUSH)
			flushes[nflush++] = i + 1;
	}
	unsigned cuts = 0, mid = 0, relogged = 0, rec_relogged = 0;
	char img[64];
	for (uint64_t f = 0; f < nflush; f += nflush / 24 + 1) {
		build_cut(rec, flushes[f], img, sizeof(img));
		struct rlfs_mount *cm;
		assert_int_equal(rlfs_mount_open(img, RLFS_MOUNT_NOLOCK | RLFS_MOUNT_RDONLY, &cm), 0);
		struct rlfs_buf *bp;
		assert_int_equal(rlfs_buf_read(cm, lc_fsbno, &rlfs_symlink_buf_ops, 7, &bp), 0);
		unsigned pre = lc_bits(bp->data, LC_BITS);
		rlfs_buf_relse(bp);
		unsigned nrec = 0;
		bool anchor_relogged = false;
		for (const struct rlfs_log_ilog *il = cm->log ? cm->log->live_intents.first : NULL; il;
		     il = il->next) {
			if (!il->recovered)
				continue;
			assert_int_equal(il->code, lc_type.intent_code);
			nrec++;
			if (il->data[sizeof(struct rlfs_log_intent)] == 2 && il->id > anchor_last)
				anchor_relogged = true;
		}
		lc_finished = lc_recovered = 0;
		assert_int_equal(rlfs_mount_set_rdonly(cm, false), 0);
		struct rlfs_log_stats cst;
		rlfs_log_get_stats(cm, &cst);
		rec_relogged += cst.intents_relogged > 0;   /* the waiting anchors */
		assert_int_equal(rlfs_mount_close(cm), 0);
		uint8_t blk[4096];
		read_raw(img, lc_fsbno * 4096, blk, sizeof(blk));
		unsigned post = lc_bits(blk, LC_BITS);
		cuts++;
		if (nrec)
			mid++;
		relogged += anchor_relogged;
		/* lc_recovered: each recovered intent, and each step its
		 * chain went on with (recovery logs a recovered intent's
		 * follow-up work as new intents and recovers those in turn) */
		if (nrec > 1 + LC_ANCHORS || lc_recovered < nrec ||
		    lc_finished != (nrec ? LC_BITS - pre : 0) ||
		    (nrec && post != LC_BITS) || (!nrec && post != pre))
			fail_msg("cut at event %llu: %u intents recovered (%u items), %u of %u steps "
				 "durable before, %u finished by recovery, %u after",
				 (unsigned long long)flushes[f], nrec, lc_recovered, pre,
				 LC_BITS, lc_finished, post);
		if (tu_fsck(img, 0) != 0)
			fail_msg("cut at event %llu: fsck not clean", (unsigned long long)flushes[f]);
		unlink(img);
	}
	print_message("relogged chain: %llu flushes, %u cuts, %u in the chain, %u with an "
		      "anchor relogged, %u recoveries relogging the waiting anchors\n",
		      (unsigned long long)nflush, cuts, mid, relogged, rec_relogged);
	assert_true(mid >= 10);
	assert_true(relogged >= 3);
	assert_true(rec_relogged >= 1);
	free(flushes);
	tu_unmount(&fs);
	rlfs_crash_rec_free(rec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replay_after_crash),
		cmocka_unit_test(test_torn_last_record),
		cmocka_unit_test(test_skip_newer_block),
		cmocka_unit_test(test_ranges_two_trans_one_ckpt),
		cmocka_unit_test(test_ail_borrow),
		cmocka_unit_test(test_logged_ranges),
		cmocka_unit_test(test_ranges_disk_lsn),
		cmocka_unit_test(test_ranges_torn_record),
		cmocka_unit_test(test_ranges_v1_record),
		cmocka_unit_test(test_ranges_unchanged_inode),
		cmocka_unit_test(test_fsync_flush_unlocked),
		cmocka_unit_test(test_fsync_flush_error),
		cmocka_unit_test(test_recovery_idempotent),
		cmocka_unit_test(test_write_ahead_and_wrap),
		cmocka_unit_test(test_log_bytes_per_op),
		cmocka_unit_test(test_fsync_forces_only_when_needed),
		cmocka_unit_test(test_intents_recovered),
		cmocka_unit_test(test_intent_whiteout),
		cmocka_unit_test(test_intent_type_recovery),
		cmocka_unit_test(test_fsync_lsn),
		cmocka_unit_test(test_fsync_group_commit),
		cmocka_unit_test(test_background_push_tail),
		cmocka_unit_test(test_relog_long_chain),
		cmocka_unit_test(test_live_intents_pruned),
		cmocka_unit_test(test_relog_recovery),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_core.c: crc32c, the buffer cache and transactions over a memory
 * device: commit makes changes stick, cancel restores before-images,
 * flush writes stamped blocks that verify when read back, a flipped byte
 * on the device is caught as -EUCLEAN, reservations give -ENOSPC, the
 * flush writes runs of consecutive blocks at once (copied into one buffer,
 * or gathered by a device with pwritev) and reports progress,
 * log reservations: the measure and the commit-time overrun report.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dev.h"
#include "reflinkfs/fs.h"
#include "log.h"
#include "trans.h"

#define TEST_MAGIC 0x54534554u
static const struct rlfs_buf_ops test_ops = { .name = "test", .magic = TEST_MAGIC,
					      .has_hdr = true };

static void test_crc32c_vector(void **state)
{
	(void)state;
	assert_int_equal(rlfs_crc32c("123456789", 9), 0xE3069283u);
	uint8_t blk[64] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	rlfs_cksum_update(blk, sizeof(blk), 4);
	assert_true(rlfs_cksum_verify(blk, sizeof(blk), 4));
	blk[40] ^= 1;
	assert_false(rlfs_cksum_verify(blk, sizeof(blk), 4));
}

static struct rlfs_mount *bare(uint32_t bs, uint64_t nblocks)
{
	struct rlfs_dev *dev;
	struct rlfs_mount *mp;
	assert_int_equal(rlfs_dev_open_mem((uint64_t)bs * nblocks, &dev), 0);
	assert_int_equal(rlfs_mount_alloc_bare(dev, bs, nblocks, 0, &mp), 0);
	memset(mp->uuid, 0xab, sizeof(mp->uuid));
	mp->fdblocks = 100;
	return mp;
}

static void done(struct rlfs_mount *mp)
{
	struct rlfs_dev *dev = mp->dev;
	rlfs_mount_free_bare(mp);
	rlfs_dev_close(dev);
}

static void write_block(struct rlfs_mount *mp, uint64_t fsbno, uint8_t fill, bool commit)
{
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_trans_get_buf(tp, fsbno, &test_ops, 7, &bp), 0);
	memset((uint8_t *)bp->data + 100, fill, 50);
	rlfs_trans_log_buf(tp, bp);
	if (commit)
		assert_int_equal(rlfs_trans_commit(tp), 0);
	else
		rlfs_trans_cancel(tp);
}

static uint8_t read_fill(struct rlfs_mount *mp, uint64_t fsbno, int *err)
{
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	uint8_t v = 0;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	*err = rlfs_trans_read_buf(tp, fsbno, &test_ops, 7, &bp);
	if (!*err)
		v = ((uint8_t *)bp->data)[120];
	rlfs_trans_cancel(tp);
	return v;
}

static void test_commit_cancel_flush(void **state)
{
	(void)state;
	struct rlfs_mount *mp = bare(1024, 64);
	int err;
	write_block(mp, 5, 0x11, true);
	assert_int_equal(rlfs_buf_ndirty(mp), 1);
	assert_int_equal(read_fill(mp, 5, &err), 0x11);
	/* cancel of a change to an existing block restores it */
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_trans_read_buf(tp, 5, &test_ops, 7, &bp), 0);
	memset((uint8_t *)bp->data + 100, 0x22, 50);
	rlfs_trans_log_buf(tp, bp);
	rlfs_trans_cancel(tp);
	assert_int_equal(read_fill(mp, 5, &err), 0x11);
	/* flush, drop from cache, read back through the verifier */
	assert_int_equal(rlfs_buf_flush_all(mp), 0);
	assert_int_equal(rlfs_buf_ndirty(mp), 0);
	rlfs_buf_forget(mp, 5);
	assert_int_equal(read_fill(mp, 5, &err), 0x11);
	assert_int_equal(err, 0);
	/* wrong owner is refused */
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_trans_read_buf(tp, 5, &test_ops, 8, &bp), -EUCLEAN);
	rlfs_trans_cancel(tp);
	/* a flipped byte on the device is caught */
	rlfs_buf_forget(mp, 5);
	uint8_t b;
	assert_int_equal(rlfs_dev_pread(mp->dev, &b, 1, 5 * 1024 + 500), 0);
	b ^= 0x40;
	assert_int_equal(rlfs_dev_pwrite(mp->dev, &b, 1, 5 * 1024 + 500), 0);
	read_fill(mp, 5, &err);
	assert_int_equal(err, -EUCLEAN);
	/* a never-written block (zeros) does not verify either */
	read_fill(mp, 9, &err);
	assert_int_equal(err, -EUCLEAN);
	/* a new block whose transaction was cancelled leaves nothing behind */
	write_block(mp, 10, 0x33, false);
	assert_int_equal(rlfs_buf_ndirty(mp), 0);
	read_fill(mp, 10, &err);
	assert_int_equal(err, -EUCLEAN);
	done(mp);
}

/* A freed block's dirty buffer is never written (it would land on the
 * block's next owner); a cancelled free leaves it alone. */
static void test_binval_range(void **state)
{
	(void)state;
	struct rlfs_mount *mp = bare(1024, 64);
	struct rlfs_trans *tp;
	int err;
	write_block(mp, 20, 0x44, true);
	write_block(mp, 21, 0x55, true);
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	rlfs_trans_binval_range(tp, 20, 2);
	rlfs_trans_cancel(tp);
	assert_int_equal(read_fill(mp, 21, &err), 0x55);
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	rlfs_trans_binval_range(tp, 18, 3); /* covers 20 only; 18, 19 not cached */
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(rlfs_buf_flush_all(mp), 0);
	uint8_t raw[1024];
	assert_int_equal(rlfs_dev_pread(mp->dev, raw, sizeof(raw), 20 * 1024), 0);
	for (size_t i = 0; i < sizeof(raw); i++)
		assert_int_equal(raw[i], 0);   /* never written */
	rlfs_buf_forget(mp, 21);
	assert_int_equal(read_fill(mp, 21, &err), 0x55); /* neighbour written */
	done(mp);
}

static void test_reservations(void **state)
{
	(void)state;
	struct rlfs_mount *mp = bare(4096, 32);
	struct rlfs_trans *tp;
	mp->fdblocks = 10;
	mp->resblks = 4;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 7, 0, &tp), -ENOSPC);
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 7, RLFS_TRANS_RESERVE, &tp), 0);
	assert_int_equal(mp->fdblocks, 3);
	rlfs_trans_mod_used(tp, 2);
	rlfs_trans_mod_freed(tp, 1);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(mp->fdblocks, 10 - 2 + 1);
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 5, 0, &tp), 0);
	rlfs_trans_mod_used(tp, 5);
	rlfs_trans_cancel(tp);
	assert_int_equal(mp->fdblocks, 9);
	done(mp);
}

/* The writeback reserve (rlfs_set_writeback_reserve): ordinary
 * transactions leave it alone, writeback ones (flag, or inside
 * rlfs_trans_writeback_begin/_end) and RESERVE ones may take it. */
static void test_writeback_reserve(void **state)
{
	(void)state;
	struct rlfs_mount *mp = bare(4096, 32);
	struct rlfs_trans *tp;
	mp->fdblocks = 20;
	mp->resblks = 4;
	rlfs_set_writeback_reserve(mp, 10 * 4096 - 100);  /* rounds up: 10 blocks */
	assert_int_equal(rlfs_avail_blocks_hint(mp), 6);
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 7, 0, &tp), -ENOSPC);
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 6, 0, &tp), 0);
	rlfs_trans_cancel(tp);
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 16, RLFS_TRANS_WRITEBACK, &tp), 0);
	rlfs_trans_cancel(tp);
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 17, RLFS_TRANS_WRITEBACK, &tp),
			 -ENOSPC);
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 20, RLFS_TRANS_RESERVE, &tp), 0);
	rlfs_trans_cancel(tp);
	rlfs_trans_writeback_begin();
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 16, 0, &tp), 0);
	rlfs_trans_cancel(tp);
	rlfs_trans_writeback_end();
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 16, 0, &tp), -ENOSPC);
	/* never more than half the filesystem */
	rlfs_set_writeback_reserve(mp, UINT64_C(1) << 40);
	assert_int_equal(mp->wb_resv_blocks, mp->dblocks / 2);
	rlfs_set_writeback_reserve(mp, 0);
	assert_int_equal(rlfs_avail_blocks_hint(mp), 16);
	done(mp);
}

/* Log reservations (trans_resv.h): the measure, the table's shape, and a
 * commit that logs more than its type's reservation is counted and
 * reported to $RLFS_RESV_REPORT (restored after: tests/run.sh's own
 * report must not see this deliberate overrun). */
static void test_log_reservations(void **state)
{
	(void)state;
	struct rlfs_mount *mp = bare(4096, 4096);
	rlfs_trans_resv_init(mp);
	uint32_t bs = mp->blocksize, ipr = rlfs_log_items_per_rec(bs);
	assert_int_equal(rlfs_trans_resv_bytes(mp, 0, 0), 0);
	assert_int_equal(rlfs_trans_resv_bytes(mp, 1, 1), 2 * bs);      /* image + header */
	assert_int_equal(rlfs_trans_resv_bytes(mp, 0, ipr), bs);         /* one header full */
	assert_int_equal(rlfs_trans_resv_bytes(mp, 0, ipr + 1), 2 * bs); /* a second one */
	assert_int_equal(mp->resv.tr_rdonly.log_bytes, 0);
	assert_int_equal(mp->resv.tr_ichange.log_bytes, 2 * bs);
	assert_true(mp->resv.tr_mkdir.log_bytes >= mp->resv.tr_create.log_bytes);
	assert_true(mp->resv.tr_symlink.log_bytes >= mp->resv.tr_create.log_bytes);
	assert_true(mp->resv.tr_itruncate.log_bytes >= mp->resv.tr_efi.log_bytes);
	for (unsigned i = 1; i < RLFS_TRANS_RESV_NTYPES; i++) {
		const struct rlfs_trans_res *r = rlfs_trans_resv_nth(mp, i);
		assert_non_null(r->name);
		assert_int_equal(strncmp(r->name, "tr_", 3), 0);
		assert_true(r->log_bytes >= 2 * bs);
		assert_true(rlfs_trans_resv_what(i)[0] != 0);
	}
	assert_null(rlfs_trans_resv_nth(mp, RLFS_TRANS_RESV_NTYPES));

	char path[] = "/tmp/rlfs-resv-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	const char *old = getenv("RLFS_RESV_REPORT");
	char *saved = old ? strdup(old) : NULL;
	setenv("RLFS_RESV_REPORT", path, 1);
	/* within: one inode-sized change */
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_ichange, 0, 0, &tp), 0);
	assert_int_equal(rlfs_trans_get_buf(tp, 10, &test_ops, 7, &bp), 0);
	rlfs_trans_log_buf(tp, bp);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(mp->resv.tr_ichange.overruns, 0);
	assert_int_equal(mp->resv.tr_ichange.max_used_bytes, 2 * bs);
	/* over: three blocks in a one-inode transaction */
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_ichange, 0, 0, &tp), 0);
	for (uint64_t b = 11; b < 14; b++) {
		assert_int_equal(rlfs_trans_get_buf(tp, b, &test_ops, 7, &bp), 0);
		rlfs_trans_log_buf(tp, bp);
	}
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(mp->resv.tr_ichange.overruns, 1);
	assert_int_equal(mp->resv.tr_ichange.commits, 2);
	assert_int_equal(mp->resv.tr_ichange.max_used_bytes, 4 * bs);
	if (saved) {
		setenv("RLFS_RESV_REPORT", saved, 1);
		free(saved);
	} else {
		unsetenv("RLFS_RESV_REPORT");
	}
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[256] = "";
	assert_non_null(fgets(line, sizeof(line), f));
	fclose(f);
	unlink(path);
	assert_string_equal(line, "reflinkfs: log reservation overrun: tr_ichange used 16384 bytes "
				  "> reserved 8192\n");
	/* keep the deliberate overrun out of run.sh's headroom table (the
	 * teardown report of this mount) */
	mp->resv.tr_ichange.max_used_bytes = 0;
	mp->resv.tr_ichange.commits = 0;
	mp->resv.tr_ichange.overruns = 0;
	done(mp);
}

/* rlfs_buf_find_range callback: count cached buffers, give each back */
static void count_cached(struct rlfs_buf *bp, void *priv)
{
	struct rlfs_mount *mp = ((void **)priv)[0];
	(*(size_t *)((void **)priv)[1])++;
	rlfs_buf_relse(bp);
	rlfs_buf_settle(mp, bp);
}

static size_t ncached(struct rlfs_mount *mp, uint64_t fsbno, uint64_t len)
{
	size_t n = 0;
	void *priv[2] = { mp, &n };
	rlfs_buf_find_range(mp, fsbno, len, count_cached, priv);
	return n;
}

/* never 0 (a failed read_fill returns 0) */
static uint8_t pattern(uint64_t b)
{
	return (uint8_t)(b % 255 + 1);
}

/* Flip one byte of block b on the device (twice restores it). */
static void flip_on_device(struct rlfs_mount *mp, uint64_t b)
{
	uint8_t x;
	assert_int_equal(rlfs_dev_pread(mp->dev, &x, 1, b * 1024 + 500), 0);
	x ^= 0x40;
	assert_int_equal(rlfs_dev_pwrite(mp->dev, &x, 1, b * 1024 + 500), 0);
}

/* A cache budget of 64 clean 1 KiB buffers and 4095 blocks written: after
 * the flush only the budget stays cached, evicted blocks are read back
 * (verified) from the device, cached ones are served from memory. */
static void test_cache_eviction(void **state)
{
	(void)state;
	struct rlfs_mount *mp = bare(1024, 4096);
	const size_t budget = 64;
	int err;
	rlfs_bcache_destroy(mp);      /* the bare mount's 256 MiB would never evict */
	assert_int_equal(rlfs_bcache_init(mp, budget * 1024), 0);
	for (uint64_t b = 1; b < 4096; b++)
		write_block(mp, b, pattern(b), true);
	assert_int_equal(ncached(mp, 1, 4095), 4095); /* dirty: all kept */
	assert_int_equal(rlfs_buf_flush_all(mp), 0);
	assert_int_equal(rlfs_buf_ndirty(mp), 0);
	assert_int_equal(ncached(mp, 1, 4095), budget); /* clean: the budget */
	/* flushed in block order, so the oldest (block 1) went, 4095 stayed */
	assert_int_equal(ncached(mp, 1, 1), 0);
	assert_int_equal(ncached(mp, 4095, 1), 1);
	flip_on_device(mp, 4095);
	assert_int_equal(read_fill(mp, 4095, &err), pattern(4095)); /* from memory */
	assert_int_equal(err, 0);
	flip_on_device(mp, 4095);
	flip_on_device(mp, 1);
	read_fill(mp, 1, &err);                   /* from the device */
	assert_int_equal(err, -EUCLEAN);
	flip_on_device(mp, 1);
	for (uint64_t b = 1; b < 4096; b += 7) {
		assert_int_equal(read_fill(mp, b, &err), pattern(b));
		assert_int_equal(err, 0);
	}
	assert_true(ncached(mp, 1, 4095) <= budget);
	done(mp);
}

/* A memory device that counts its writes and flushes. */
static const struct rlfs_dev_ops *mem_ops;
static int n_pwrite, n_pwritev, n_flush;
static int counting_pwrite(struct rlfs_dev *dev, const void *buf, size_t len, uint64_t off)
{
	n_pwrite++;
	return mem_ops->pwrite(dev, buf, len, off);
}
/* a gathered write: one device write as well */
static int counting_pwritev(struct rlfs_dev *dev, const struct iovec *iov, int n, uint64_t off)
{
	n_pwrite++;
	n_pwritev++;
	for (int i = 0; i < n; i++) {
		int err = mem_ops->pwrite(dev, iov[i].iov_base, iov[i].iov_len, off);
		if (err)
			return err;
		off += iov[i].iov_len;
	}
	return 0;
}
static int counting_flush(struct rlfs_dev *dev)
{
	n_flush++;
	return mem_ops->flush(dev);
}
static struct rlfs_dev_ops counting_ops;

/* test_ops, whose verifier fails a block marked 0xEE at byte 120 */
static int picky_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	if (((uint8_t *)bp->data)[120] == 0xEE)
		return rlfs_corrupt(mp, bp->fsbno, "test", "marked bad");
	return 0;
}

/* rlfs_set_progress callback: the phases in order, the last META count */
static int phases[16], nphases;
static uint64_t meta_done, meta_total;
static void record_progress(void *arg, int phase, uint64_t done, uint64_t total)
{
	(void)arg;
	if (nphases < 16 && (!nphases || phases[nphases - 1] != phase))
		phases[nphases++] = phase;
	if (phase == RLFS_PROGRESS_META) {
		meta_done = done;
		meta_total = total;
	}
}

/* The flush writes runs of consecutive dirty blocks with one device write
 * each (15 blocks in 5 runs here), never a block that fails its pre-write
 * check (it splits the run around it and stays dirty), flushes the device
 * twice (data before metadata, then metadata), and reports its phases. */
static void flush_runs(bool gather)
{
	struct rlfs_mount *mp = bare(1024, 256);
	mem_ops = mp->dev->ops;
	counting_ops = *mem_ops;
	counting_ops.pwrite = counting_pwrite;
	counting_ops.pwritev = gather ? counting_pwritev : NULL;
	n_pwritev = 0;
	counting_ops.flush = counting_flush;
	mp->dev->ops = &counting_ops;
	struct rlfs_buf_ops picky = test_ops;
	picky.verify = picky_verify;
	const uint64_t blocks[] = { 61, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 31, 30, 50, 59 };
	for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++)
		write_block(mp, blocks[i], pattern(blocks[i]), true);
	/* block 60 between 59 and 61, marked bad */
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_trans_get_buf(tp, 60, &picky, 7, &bp), 0);
	memset((uint8_t *)bp->data + 100, 0xEE, 50);
	rlfs_trans_log_buf(tp, bp);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(rlfs_buf_ndirty(mp), 16);

	rlfs_set_progress(mp, record_progress, NULL);
	n_pwrite = n_flush = nphases = 0;
	assert_int_equal(rlfs_buf_flush_all(mp), -EUCLEAN);
	assert_int_equal(n_pwrite, 5);  /* 10..19, 30..31, 50, 59, 61 */
	assert_int_equal(n_pwritev, gather ? 2 : 0); /* the two runs */
	assert_int_equal(n_flush, 2);
	assert_int_equal(rlfs_buf_ndirty(mp), 1);       /* the bad one */
	assert_int_equal(nphases, 4);
	assert_int_equal(phases[0], RLFS_PROGRESS_DATA);
	assert_int_equal(phases[1], RLFS_PROGRESS_META);
	assert_int_equal(phases[2], RLFS_PROGRESS_SYNC);
	assert_int_equal(phases[3], RLFS_PROGRESS_IDLE);
	assert_int_equal(meta_total, 16);
	int err;
	for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
		rlfs_buf_forget(mp, blocks[i]);
		assert_int_equal(read_fill(mp, blocks[i], &err), pattern(blocks[i]));
		assert_int_equal(err, 0);
	}
	uint8_t raw[1024];
	assert_int_equal(rlfs_dev_pread(mp->dev, raw, sizeof(raw), 60 * 1024), 0);
	for (size_t i = 0; i < sizeof(raw); i++)
		assert_int_equal(raw[i], 0);   /* never written */
	/* only the bad block is dirty: not written again */
	n_pwrite = n_flush = 0;
	assert_int_equal(rlfs_buf_flush_all(mp), -EUCLEAN);
	assert_int_equal(n_pwrite, 0);
	assert_int_equal(n_flush, 2);
	/* nothing dirty: the flush only flushes the device */
	rlfs_buf_forget(mp, 60);        /* an unheld dirty buffer: dropped */
	assert_int_equal(rlfs_buf_ndirty(mp), 0);
	n_pwrite = n_flush = 0;
	assert_int_equal(rlfs_buf_flush_all(mp), 0);
	assert_int_equal(n_pwrite, 0);
	assert_int_equal(n_flush, 1);
	done(mp);
}

static void test_flush_runs(void **state)
{
	(void)state;
	flush_runs(false);
}

/* The same with a device that gathers writes (pwritev): the runs shorter
 * than a direct write go out as one gathered write each, no copy. */
static void test_flush_runs_gather(void **state)
{
	(void)state;
	flush_runs(true);
}

/* The image-file device's gathered write puts each piece in its place and
 * refuses a write past the end. */
static void test_file_pwritev(void **state)
{
	(void)state;
	char path[] = "/tmp/rlfs-pwritev-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 16), 0);
	close(fd);
	struct rlfs_dev *dev;
	assert_int_equal(rlfs_dev_open(path, 1, 0, &dev), 0);
	unlink(path);
	assert_non_null(dev->ops->pwritev);
	static uint8_t a[3000], b[5], c[4096], back[8192];
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	memset(c, 'c', sizeof(c));
	struct iovec iov[] = { { a, sizeof(a) }, { b, sizeof(b) }, { c, sizeof(c) } };
	assert_int_equal(dev->ops->pwritev(dev, iov, 3, 100), 0);
	assert_int_equal(rlfs_dev_pread(dev, back, sizeof(back), 0), 0);
	for (size_t i = 0; i < sizeof(back); i++) {
		uint8_t want = i < 100 ? 0 : i < 3100 ? 'a' : i < 3105 ? 'b' : i < 7201 ? 'c' : 0;
		assert_int_equal(back[i], want);
	}
	assert_int_equal(dev->ops->pwritev(dev, iov, 3, (1 << 16) - 4000), -EIO);
	rlfs_dev_close(dev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_vector),
		cmocka_unit_test(test_commit_cancel_flush),
		cmocka_unit_test(test_binval_range),
		cmocka_unit_test(test_reservations),
		cmocka_unit_test(test_writeback_reserve),
		cmocka_unit_test(test_log_reservations),
		cmocka_unit_test(test_cache_eviction),
		cmocka_unit_test(test_flush_runs),
		cmocka_unit_test(test_flush_runs_gather),
		cmocka_unit_test(test_file_pwritev),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

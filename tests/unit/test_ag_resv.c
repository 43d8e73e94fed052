/*
 * test_ag_resv.c: the per-AG reservation for the refcount and rmap btrees
 * (lib/ag_resv.h), counted as XFS's xfs_ag_resv: reserve = ask - what the
 * trees already hold (agh.refc_blocks + agh.rmap_blocks, the AGBTCOUNT
 * feature, SPEC section 5).
 *
 *  - grow_in_full_ag: AG 0 filled with data up to its reserve, then its
 *    refcount and rmap btrees grown by thousands of records (a clone, then
 *    single-block copy-on-writes every other block): no ENOSPC, the
 *    reserve shrank by exactly the trees' growth (mp->setaside follows),
 *    data then fills AG 0 down to the smaller reserve, and statfs counts
 *    the trees' blocks as free compared with the old fixed reserve;
 *  - old_image: an image without the feature bit (counts zero, as made
 *    before it) keeps the fixed reserve, leaves the counts at zero, and
 *    fsck stays clean;
 *  - unknown_ro_compat: an unknown read-only compatible bit refuses a
 *    read-write mount and allows a read-only one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "filemodel.h"
#include "testutil.h"

#include "ag_resv.h"
#include "alloc.h"
#include "trans.h"
#include "reflinkfs/fs.h"

#define MB (1024ull * 1024)

struct agcounts {
	uint32_t freeblks, flcount, refc_blocks, rmap_blocks, left;
};

static void ag_counts(struct rlfs_mount *mp, uint32_t agno, struct agcounts *a)
{
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp), 0);
	assert_int_equal(rlfs_ag_read_header(tp, agno, &bp), 0);
	struct rlfs_agh *agh = rlfs_agh(bp);
	a->freeblks = rlfs_get32(agh->freeblks);
	a->flcount = rlfs_get32(agh->flcount);
	a->refc_blocks = rlfs_get32(agh->refc_blocks);
	a->rmap_blocks = rlfs_get32(agh->rmap_blocks);
	a->left = rlfs_ag_resv_left_blocks(mp, agh);
	rlfs_trans_brelse(tp, bp);
	rlfs_trans_cancel(tp);
}

/* mp->setaside is the AGFL minimum plus each AG's reserve as the headers
 * say now (what the commits kept it at = what a fresh mount computes);
 * returns the sum of the trees' blocks over the AGs. */
static uint64_t check_setaside(struct rlfs_mount *mp)
{
	uint64_t left = 0, trees = 0;
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		struct agcounts a;
		ag_counts(mp, agno, &a);
		left += a.left;
		trees += (uint64_t)a.refc_blocks + a.rmap_blocks;
	}
	assert_int_equal(mp->setaside, (uint64_t)mp->agcount * rlfs_agfl_min(mp) + left);
	return trees;
}

static void test_grow_in_full_ag(void **state)
{
	struct ctx c;
	(void)state;
	ctx_init(&c, 32 * MB, 1024, 2);
	struct rlfs_mount *mp = MP(&c);
	uint32_t bs = c.bs, ask = mp->ag_resv_ask_blocks;
	assert_true(rlfs_has_agbtcount(mp));
	assert_true(ask > 100);
	struct agcounts a0;
	ag_counts(mp, 0, &a0);
	/* mkfs: each tree is its root leaf */
	assert_int_equal(a0.refc_blocks, 1);
	assert_int_equal(a0.rmap_blocks, 1);
	assert_int_equal(a0.left, ask - 2);
	check_setaside(mp);

	/* AG 0 full of data up to its reserve (the rest spills into AG 1) */
	int a = mkfile(&c, "a");
	uint64_t blocks = mp->agblocks;
	for (uint64_t off = 0; off < blocks * bs; off += 256 * bs)
		do_write(&c, a, off, 256 * bs, off);
	struct agcounts full;
	ag_counts(mp, 0, &full);
	assert_true(full.freeblks >= full.left);
	assert_true(full.freeblks < full.left + 64);
	uint64_t trees0 = check_setaside(mp);

	/* the trees of AG 0 grow by thousands of records: every other block
	 * of the clone rewritten (CoW to AG 1), so a's blocks alternate
	 * between shared (a refcount record each) and not, and b's rmap
	 * records are split at each one */
	int b = mkfile(&c, "b");
	do_clone(&c, a, 0, b, 0, 0);
	uint64_t in_ag0 = RLFS_MIN(blocks - 2 * ask, 8000); /* offsets mapped in AG 0 */
	for (uint64_t blk = 1; blk < in_ag0; blk += 2)
		do_write(&c, b, blk * bs, bs, 9000 + blk);
	assert_int_equal(rlfs_fsync(mp, c.f[b].ino, 0), 0);
	struct agcounts grown;
	ag_counts(mp, 0, &grown);
	uint32_t g = grown.refc_blocks + grown.rmap_blocks - (full.refc_blocks + full.rmap_blocks);
	print_message("AG 0: ask %u; trees %u+%u -> %u+%u blocks (+%u); reserve %u -> %u\n", ask,
		      full.refc_blocks, full.rmap_blocks, grown.refc_blocks, grown.rmap_blocks, g,
		      full.left, grown.left);
	assert_true(g >= 40);
	assert_true(grown.refc_blocks + grown.rmap_blocks < ask);
	/* the reserve shrank by exactly the trees' growth */
	assert_int_equal(grown.left, full.left - g);
	uint64_t trees = check_setaside(mp);
	assert_true(trees >= trees0 + g);

	/* the allocator honours the smaller reserve: data fills AG 0 down
	 * to it (with the fixed reserve it stopped at ask) */
	int d = mkfile(&c, "d");
	for (int i = 0; i < 64; i++)
		do_write(&c, d, (uint64_t)i * 16 * bs, 16 * bs, 500 + (uint64_t)i);
	struct agcounts refill;
	ag_counts(mp, 0, &refill);
	print_message("AG 0 after more data: %u free (reserve %u, ask %u)\n", refill.freeblks,
		      refill.left, ask);
	assert_true(refill.freeblks >= refill.left);
	assert_true(refill.freeblks < ask);
	trees = check_setaside(mp);

	/* statfs: the trees' blocks are no longer held back twice */
	struct statvfs sv;
	assert_int_equal(rlfs_statfs(mp, &sv), 0);
	uint64_t on_disk_free = 0;
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		struct agcounts x;
		ag_counts(mp, agno, &x);
		on_disk_free += (uint64_t)x.freeblks + x.flcount;
	}
	uint64_t fixed = (uint64_t)mp->agcount * (rlfs_agfl_min(mp) + ask);
	uint64_t old_bfree = on_disk_free - fixed;
	print_message("statfs free %llu blocks, %llu with the fixed reserve (+%llu: the trees' "
		      "blocks)\n", (unsigned long long)sv.f_bfree, (unsigned long long)old_bfree,
		      (unsigned long long)(sv.f_bfree - old_bfree));
	assert_int_equal(sv.f_bfree, on_disk_free - mp->setaside);
	assert_int_equal(sv.f_bfree - old_bfree, trees);

	/* a fresh mount computes the same set-aside (counts on disk) */
	uint64_t setaside = mp->setaside;
	check_fs(&c);
	run_fsck(&c);
	mp = MP(&c);
	assert_int_equal(mp->setaside, setaside);
	/* and the trees shrink back: the reserve grows again */
	assert_int_equal(rlfs_unlink(mp, rlfs_root_ino(mp), "b"), 0);
	free(c.f[b].data); /* b leaves the models; d takes its slot */
	c.f[b] = c.f[d];
	c.nf--;
	struct agcounts back;
	ag_counts(mp, 0, &back);
	assert_true(back.refc_blocks + back.rmap_blocks < grown.refc_blocks + grown.rmap_blocks);
	assert_int_equal(back.left, ask - back.refc_blocks - back.rmap_blocks);
	check_setaside(mp);
	ctx_fini(&c);
}

/* Rewrite one metadata block of an unmounted image with edit(), crc fixed. */
static void edit_block(const char *path, uint32_t bs, uint64_t fsbno,
		       void (*edit)(void *blk, void *arg), void *arg)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	void *blk = malloc(bs);
	assert_int_equal(pread(fd, blk, bs, (off_t)(fsbno * bs)), (ssize_t)bs);
	edit(blk, arg);
	rlfs_cksum_update(blk, bs, RLFS_CRC_OFF);
	assert_int_equal(pwrite(fd, blk, bs, (off_t)(fsbno * bs)), (ssize_t)bs);
	free(blk);
	close(fd);
}

static void set_ro_compat(void *blk, void *arg)
{
	rlfs_put64(((struct rlfs_sb *)blk)->features_ro_compat, *(uint64_t *)arg);
}

static void zero_counts(void *blk, void *arg)
{
	(void)arg;
	rlfs_put32(((struct rlfs_agh *)blk)->refc_blocks, 0);
	rlfs_put32(((struct rlfs_agh *)blk)->rmap_blocks, 0);
}

/* Make c's (unmounted) image look like one made before AGBTCOUNT, or
 * give it other ro_compat bits. */
static void set_image_features(struct ctx *c, uint32_t bs, uint32_t agblocks, uint32_t agcount,
			       uint64_t ro_compat)
{
	for (uint32_t agno = 0; agno < agcount; agno++) {
		edit_block(c->fs.path, bs, (uint64_t)agno * agblocks, set_ro_compat, &ro_compat);
		if (!(ro_compat & RLFS_FEAT_RO_COMPAT_AGBTCOUNT))
			edit_block(c->fs.path, bs, (uint64_t)agno * agblocks + RLFS_AGH_AGBNO,
				   zero_counts, NULL);
	}
}

static void test_old_image(void **state)
{
	struct ctx c;
	(void)state;
	ctx_init(&c, 32 * MB, 1024, 2);
	struct rlfs_mount *mp = MP(&c);
	uint32_t bs = c.bs, agblocks = mp->agblocks, agcount = mp->agcount;
	uint32_t ask = mp->ag_resv_ask_blocks;
	assert_int_equal(rlfs_mount_close(mp), 0);
	c.fs.mp = NULL;
	set_image_features(&c, bs, agblocks, agcount, 0);
	assert_int_equal(tu_fsck(c.fs.path, 0), 0);
	assert_int_equal(rlfs_mount_open(c.fs.path, RLFS_MOUNT_NOLOCK, &c.fs.mp), 0);
	mp = MP(&c);
	assert_false(rlfs_has_agbtcount(mp));
	/* the fixed reserve: the whole ask in every AG */
	assert_int_equal(mp->setaside, (uint64_t)agcount * (rlfs_agfl_min(mp) + ask));
	int a = mkfile(&c, "a");
	for (uint64_t off = 0; off < 2048ull * bs; off += 64 * bs)
		do_write(&c, a, off, 64 * bs, off);
	int b = mkfile(&c, "b");
	do_clone(&c, a, 0, b, 0, 0);
	for (uint64_t blk = 1; blk < 2048; blk += 2)
		do_write(&c, b, blk * bs, bs, 77 + blk);
	struct agcounts x;
	ag_counts(mp, 0, &x);
	assert_int_equal(x.refc_blocks, 0);
	assert_int_equal(x.rmap_blocks, 0);
	assert_int_equal(x.left, ask);
	assert_int_equal(mp->setaside, (uint64_t)agcount * (rlfs_agfl_min(mp) + ask));
	check_fs(&c);
	ctx_fini(&c); /* fsck -n clean */
}

static void test_unknown_ro_compat(void **state)
{
	struct ctx c;
	(void)state;
	ctx_init(&c, 32 * MB, 1024, 2);
	struct rlfs_mount *mp = MP(&c);
	uint32_t bs = c.bs, agblocks = mp->agblocks, agcount = mp->agcount;
	assert_int_equal(rlfs_mount_close(mp), 0);
	c.fs.mp = NULL;
	set_image_features(&c, bs, agblocks, agcount, RLFS_FEAT_RO_COMPAT_AGBTCOUNT | (1ull << 40));
	char out[4096];
	assert_int_equal(tu_mount_capture(c.fs.path, RLFS_MOUNT_NOLOCK, &mp, out, sizeof(out)),
			 -EROFS);
	assert_non_null(strstr(out, "read-only compatible"));
	assert_int_equal(rlfs_mount_open(c.fs.path, RLFS_MOUNT_NOLOCK | RLFS_MOUNT_RDONLY, &mp), 0);
	assert_int_equal(rlfs_mount_set_rdonly(mp, false), -EROFS);
	assert_int_equal(rlfs_mount_close(mp), 0);
	set_image_features(&c, bs, agblocks, agcount, RLFS_FEAT_RO_COMPAT_AGBTCOUNT);
	assert_int_equal(rlfs_mount_open(c.fs.path, RLFS_MOUNT_NOLOCK, &c.fs.mp), 0);
	ctx_fini(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grow_in_full_ag),
		cmocka_unit_test(test_old_image),
		cmocka_unit_test(test_unknown_ro_compat),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

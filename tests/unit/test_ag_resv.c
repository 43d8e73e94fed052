/*
 * test_ag_resv.c: the per-AG reservation for the refcount and rmap btrees
 * (lib/ag_resv.h), counted as XFS's xfs_ag_resv: reserve = ask - what the
 * trees already hold (agh.refc_blocks + agh.rmap_blocks, the AGBTCOUNT
 * feature, SPEC section 5).
 *
 *  - grow_in_full_ag: AG 0's refcount and rmap btrees grown by thousands
 *    of records (a clone, then every other block punched): the reserve shrank by exactly the trees' growth (mp->setaside
 *    follows); data then fills AG 0 down to the smaller reserve (not to
 *    the fixed ask); the trees grow again in the full AG (a second clone
 *    doubles the refcount btree; then CoW of every fourth block) with no
 *    ENOSPC, out of the reserve; statfs
 *    counts the trees' blocks as free compared with the old fixed
 *    reserve; a crash copy recovers the same counts; unlinking the clones
 *    shrinks the trees and gives back;
 *  - old_image: an image without the feature bit (counts zero, as made
 *    before it) keeps the fixed reserve, leaves the counts at zero, and
 *    fsck stays clean;
 *  - unknown_ro_compat: an unknown read-only compatible bit refuses a
 *    read-write mount and allows a read-only one.
 */
#include <errno.h>
#include <linux/falloc.h>
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

	/* 1. AG 0's trees grow by thousands of records: a clone of 8000
	 * blocks, every other block of it punched, so a's blocks alternate
	 * between shared (a refcount record each) and not, and b's rmap
	 * records are split at each one (punching, not CoW: AG 0's free
	 * space stays in one piece for step 2) */
	enum { NBLK = 8000 };
	int a = mkfile(&c, "a");
	for (uint64_t off = 0; off < NBLK * bs; off += 250 * bs)
		do_write(&c, a, off, 250 * bs, off);
	int b = mkfile(&c, "b");
	do_clone(&c, a, 0, b, 0, 0);
	for (uint64_t blk = 1; blk < NBLK; blk += 2) {
		assert_int_equal(rlfs_fallocate(mp, c.f[b].ino,
						FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						(off_t)(blk * bs), bs), 0);
		memset(c.f[b].data + blk * bs, 0, bs);
	}
	struct agcounts grown;
	ag_counts(mp, 0, &grown);
	uint32_t g = grown.refc_blocks + grown.rmap_blocks - (a0.refc_blocks + a0.rmap_blocks);
	print_message("AG 0: ask %u; trees %u+%u -> %u+%u blocks (+%u); reserve %u -> %u\n", ask,
		      a0.refc_blocks, a0.rmap_blocks, grown.refc_blocks, grown.rmap_blocks, g,
		      a0.left, grown.left);
	assert_true(g >= 40);
	assert_true(grown.refc_blocks + grown.rmap_blocks < ask);
	/* the reserve shrank by exactly the trees' growth */
	assert_int_equal(grown.left, a0.left - g);
	check_setaside(mp);

	/* 2. AG 0 filled with data: the allocator leaves the smaller reserve
	 * free (the fixed one left ask) */
	int d = mkfile(&c, "d");
	struct agcounts full;
	uint64_t i = 0;
	do {    /* until data goes elsewhere: 256 more blocks left AG 0 alone */
		ag_counts(mp, 0, &full);
		uint32_t before = full.freeblks;
		for (int j = 0; j < 16; j++, i++)
			do_write(&c, d, i * 16 * bs, 16 * bs, 500 + i);
		ag_counts(mp, 0, &full);
		if (full.freeblks == before)
			break;
	} while (i < 16000 / 16);
	print_message("AG 0 filled: %u free + %u on the AGFL (reserve %u, ask %u)\n",
		      full.freeblks, full.flcount, full.left, ask);
	assert_true(full.freeblks >= full.left);
	assert_true(full.freeblks < ask);
	assert_true(full.freeblks < full.left + 64);
	check_setaside(mp);

	/* 3. the trees still grow in the full AG, out of the reserve: a
	 * second clone of a (a refcount record for every block of a now:
	 * the refcount btree doubles), then every fourth block of the clone
	 * rewritten (its new blocks go to AG 1; AG 0's trees change again) */
	int e = mkfile(&c, "c");
	do_clone(&c, a, 0, e, 0, 0);
	struct agcounts more;
	ag_counts(mp, 0, &more);
	int64_t g2 = (int64_t)more.refc_blocks + more.rmap_blocks -
		     ((int64_t)full.refc_blocks + full.rmap_blocks);
	print_message("full AG 0, clone: trees %u+%u -> %u+%u blocks (%+lld); reserve %u -> %u, "
		      "%u free + %u on the AGFL\n", full.refc_blocks, full.rmap_blocks,
		      more.refc_blocks, more.rmap_blocks, (long long)g2, full.left, more.left,
		      more.freeblks, more.flcount);
	assert_true(g2 >= 20);
	assert_int_equal(more.left, full.left - g2);
	assert_true(more.freeblks + more.flcount >= more.left);
	check_setaside(mp);
	rlfs_set_cow_fill(mp, 0); /* each write remaps its own block only */
	for (uint64_t blk = 1; blk < NBLK; blk += 4)
		do_write(&c, e, blk * bs, bs, 33000 + blk);
	assert_int_equal(rlfs_fsync(mp, c.f[e].ino, 0), 0);
	ag_counts(mp, 0, &more);
	print_message("full AG 0, CoW: trees %u+%u blocks; reserve %u, %u free + %u on the AGFL\n",
		      more.refc_blocks, more.rmap_blocks, more.left, more.freeblks, more.flcount);
	assert_int_equal(more.left, ask - more.refc_blocks - more.rmap_blocks);
	assert_true(more.freeblks + more.flcount >= more.left);

	/* a crash now (the fsync forced the log): recovery replays the
	 * counts with the trees (the AG header is logged with them); the
	 * recovering mount's own transactions (CoW staging given back, in
	 * AG 1) keep the set-aside consistent; fsck -n agrees */
	char copy[96];
	tu_crash_copy(&c.fs, ".crash", copy, sizeof(copy));
	struct rlfs_mount *cmp;
	assert_int_equal(rlfs_mount_open(copy, RLFS_MOUNT_NOLOCK, &cmp), 0);
	struct agcounts rec;
	ag_counts(cmp, 0, &rec);
	assert_int_equal(rec.refc_blocks, more.refc_blocks);
	assert_int_equal(rec.rmap_blocks, more.rmap_blocks);
	assert_int_equal(rec.left, more.left);
	check_setaside(cmp);
	assert_int_equal(rlfs_mount_close(cmp), 0);
	assert_int_equal(tu_fsck(copy, 0), 0);
	unlink(copy);
	uint64_t trees = check_setaside(mp);

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
	assert_int_equal(rlfs_unlink(mp, rlfs_root_ino(mp), "c"), 0);
	assert_int_equal(rlfs_unlink(mp, rlfs_root_ino(mp), "b"), 0);
	free(c.f[b].data); /* b and c leave the models; d takes b's slot */
	free(c.f[e].data);
	c.f[b] = c.f[d];
	c.nf = 2;
	struct agcounts back;
	ag_counts(mp, 0, &back);
	print_message("after unlinking the clones: trees %u+%u blocks, reserve %u\n",
		      back.refc_blocks, back.rmap_blocks, back.left);
	assert_true(back.refc_blocks + back.rmap_blocks < full.refc_blocks + full.rmap_blocks);
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

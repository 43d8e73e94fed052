/*
 * ialloc.c: inode chunks and the per-AG inode btree (inobt).
 *
 * A chunk is RLFS_INODES_PER_CHUNK (64) inodes in mp->chunk_blocks
 * contiguous blocks whose first fsbno is a multiple of chunk_blocks, so its
 * first inode number (fsbno * inopblock) is a multiple of 64.  The inobt
 * has one record per chunk: (startino, freecount, free mask), keyed on
 * startino; its blocks come from the AGFL like the free-space trees'.
 * A chunk whose 64 inodes are all free is deleted and its blocks go back to
 * free space, so deleting every file returns all the space.
 * Model: xfs_ialloc.c, xfs_ialloc_btree.c.
 */
#include "ialloc.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "alloc.h"
#include "busy.h"
#include "defer.h"
#include "inode.h"
#include "rmap.h"

#define FULL_MASK UINT64_MAX /* 64 inodes per chunk */

unsigned rlfs_inobt_maxlevels(struct rlfs_mount *mp)
{
	unsigned space = mp->blocksize - (unsigned)sizeof(struct rlfs_btree_block);
	uint64_t nrecs = mp->agblocks / RLFS_MAX(mp->chunk_blocks, 1u) + 1;
	uint64_t minl = RLFS_MAX(space / sizeof(struct rlfs_inobt_rec) / 2, 1u);
	uint64_t minn = RLFS_MAX(space / (8 + 8) / 2, 2u);
	uint64_t n = (nrecs + minl - 1) / minl;
	unsigned lev = 1;
	while (n > 1) {
		n = (n + minn - 1) / minn;
		lev++;
	}
	return RLFS_MIN(lev, (unsigned)RLFS_BTREE_MAXLEVELS);
}

uint32_t rlfs_ialloc_res(struct rlfs_mount *mp)
{
	return mp->chunk_blocks + rlfs_alloc_tree_res(mp, 1) + rlfs_inobt_maxlevels(mp) + 1;
}

/* ------------------------------------------------------------------ */
/* inobt ops                                                           */

static void ino_key_from_rec(void *key, const void *rec)
{
	memcpy(key, rec, 8);
}

/* First inode number of AG agno and one past its last. */
static void ag_ino_range(struct rlfs_mount *mp, uint32_t agno, uint64_t *lo, uint64_t *hi)
{
	*lo = rlfs_fsb_to_ino(mp, rlfs_agb_to_fsb(mp, agno, 0), 0);
	*hi = rlfs_fsb_to_ino(mp, rlfs_agb_to_fsb(mp, agno, 0) + rlfs_ag_blocks(mp, agno), 0);
}

static int ino_verify_rec(struct rlfs_btree_cur *cur, const void *rec)
{
	struct rlfs_inobt_rec r;
	memcpy(&r, rec, sizeof(r));
	struct rlfs_mount *mp = cur->mp;
	uint64_t start = rlfs_get64(r.startino), lo, hi;
	ag_ino_range(mp, cur->agno, &lo, &hi);
	uint64_t mask = rlfs_get64(r.free);
	unsigned fc = rlfs_get32(r.freecount);
	uint64_t fsb = rlfs_ino_to_fsb(mp, start);
	if (start % RLFS_INODES_PER_CHUNK || start < lo || start + RLFS_INODES_PER_CHUNK > hi ||
	    fsb % mp->chunk_blocks || rlfs_fsb_to_agbno(mp, fsb) <= RLFS_AGFL_AGBNO)
		return rlfs_corrupt(mp, fsb < mp->dblocks ? fsb : 0, "inobt",
				    "chunk startino %llu outside AG %u or misaligned",
				    (unsigned long long)start, cur->agno);
	if (fc != (unsigned)__builtin_popcountll(mask) || fc == RLFS_INODES_PER_CHUNK)
		return rlfs_corrupt(mp, fsb, "inobt",
				    "chunk %llu: freecount %u does not match mask 0x%llx",
				    (unsigned long long)start, fc, (unsigned long long)mask);
	return 0;
}

RLFS_AGBT_ROOT_OPS(ino, ino_root, ino_level)

static int inobt_buf_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	return rlfs_btree_verify_block(mp, bp, sizeof(struct rlfs_inobt_rec), 8, false);
}

static const struct rlfs_buf_ops inobt_buf_ops = {
	.name = "inobt", .magic = RLFS_INOBT_MAGIC, .has_hdr = true, .verify = inobt_buf_verify,
};

const struct rlfs_btree_ops rlfs_inobt_ops = {
	.name = "inobt",
	.magic = RLFS_INOBT_MAGIC,
	.rec_len = sizeof(struct rlfs_inobt_rec),
	.key_len = 8,
	.buf_ops = &inobt_buf_ops,
	.init_key_from_rec = ino_key_from_rec,
	.cmp_key = rlfs_btree_cmp_le64,
	.verify_rec = ino_verify_rec,
	.get_root = ino_get_root,
	.set_root = ino_set_root,
	.alloc_block = rlfs_agbt_alloc_block,
	.free_block = rlfs_agbt_free_block,
	.owner = rlfs_agbt_owner,
	.rmap_owner = RLFS_RMAP_OWN_INOBT,
};

/* ------------------------------------------------------------------ */
/* mp->icount / mp->ifree follow the transaction: a log item undoes the
 * in-memory deltas on cancel. */

struct icount_item {
	struct rlfs_log_item li;
	struct rlfs_mount *mp;
	int64_t dicount, difree;
};

static void icount_abort(struct rlfs_trans *tp, struct rlfs_log_item *lip)
{
	struct icount_item *it = (struct icount_item *)lip;
	it->mp->icount -= (uint64_t)it->dicount;
	it->mp->ifree -= (uint64_t)it->difree;
}

static void icount_release(struct rlfs_trans *tp, struct rlfs_log_item *lip)
{
	free(lip);
}

static const struct rlfs_log_item_ops icount_item_ops = {
	.abort = icount_abort,
	.release = icount_release,
};

static int mod_icount(struct rlfs_trans *tp, int64_t dicount, int64_t difree)
{
	struct icount_item *it = NULL;
	for (struct rlfs_log_item *lip = tp->items; lip; lip = lip->next)
		if (lip->ops == &icount_item_ops) {
			it = (struct icount_item *)lip;
			break;
		}
	if (!it) {
		it = calloc(1, sizeof(*it));
		if (!it)
			return -ENOMEM;
		it->li.ops = &icount_item_ops;
		it->mp = tp->mp;
		rlfs_trans_add_item(tp, &it->li);
	}
	it->dicount += dicount;
	it->difree += difree;
	tp->mp->icount += (uint64_t)dicount;
	tp->mp->ifree += (uint64_t)difree;
	return 0;
}

/* ------------------------------------------------------------------ */

static void rec_get(const struct rlfs_inobt_rec *r, uint64_t *start, uint32_t *fc, uint64_t *mask)
{
	*start = rlfs_get64(r->startino);
	*fc = rlfs_get32(r->freecount);
	*mask = rlfs_get64(r->free);
}

static struct rlfs_inobt_rec mkrec(uint64_t start, uint32_t fc, uint64_t mask)
{
	struct rlfs_inobt_rec r;
	memset(&r, 0, sizeof(r));
	rlfs_put64(r.startino, start);
	rlfs_put32(r.freecount, fc);
	rlfs_put64(r.free, mask);
	return r;
}

/* Take a free inode from an existing chunk of AG agno (agh.ifree > 0). */
static int alloc_from_chunks(struct rlfs_trans *tp, uint32_t agno, struct rlfs_buf *agbp,
			     uint64_t hint, uint64_t *inop)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_agh *agh = rlfs_agh(agbp);
	struct rlfs_btree_cur cur;
	struct rlfs_inobt_rec r;
	uint64_t lo, hi, start = 0, mask = 0;
	uint32_t fc = 0;
	int stat = 0, err;
	bool found = false, saw_busy = false;

	ag_ino_range(mp, agno, &lo, &hi);
	uint64_t newino = rlfs_get64(agh->newino);
	if (hint < lo || hint >= hi)
		hint = newino;
	rlfs_btree_cur_init(&cur, tp, &rlfs_inobt_ops, agno, NULL, agbp);
	/* The hint's chunk (near the parent), then from the newest chunk to
	 * the end, then from the start.  A walk from the parent's chunk
	 * crossed every full chunk after it on each create: creating 20,000
	 * files in one directory read ~150 inobt records per file, 100,000
	 * files ~800 (XFS keeps a free-inode btree for this; the newest chunk
	 * is where a growing directory's free inodes are). */
	for (int pass = 0; pass < 3 && !found; pass++) {
		if (pass == 1 && newino < lo)
			continue;
		rlfs_le64 key = rlfs_le64_of(pass == 0 ? hint : pass == 1 ? newino : 0);
		err = rlfs_btree_lookup(&cur, pass == 2 ? RLFS_LOOKUP_GE : RLFS_LOOKUP_LE, &key,
					&stat);
		if (!err && !stat && pass < 2)
			continue;
		while (!err && stat) {
			err = rlfs_btree_get_rec(&cur, &r, &stat);
			if (err || !stat)
				break;
			rec_get(&r, &start, &fc, &mask);
			if (fc > 0 && mask) {
				uint64_t busy = rlfs_busy_ino_mask(mp, start);
				if (mask & busy)
					saw_busy = true;
				mask &= ~busy;
			}
			if (fc > 0 && mask) {
				found = true;
				break;
			}
			if (pass == 0)
				break; /* the hint's chunk only */
			err = rlfs_btree_increment(&cur, &stat);
		}
		if (err)
			goto out;
	}
	if (!found && saw_busy) {
		err = -EAGAIN;
		goto out;
	}
	if (!found) {
		err = rlfs_corrupt(mp, agbp->fsbno, "AG header",
				   "ifree %llu but no chunk has a free inode",
				   (unsigned long long)rlfs_get64(agh->ifree));
		goto out;
	}
	unsigned bit = (unsigned)__builtin_ctzll(mask);
	r = mkrec(start, fc - 1, rlfs_get64(r.free) & ~(1ull << bit));
	err = rlfs_btree_update(&cur, &r);
	if (err)
		goto out;
	err = mod_icount(tp, 0, -1);
	if (err)
		goto out;
	rlfs_put64(agh->ifree, rlfs_get64(agh->ifree) - 1);
	rlfs_ag_log_header(tp, agbp);
	*inop = start + bit;
out:
	rlfs_btree_cur_del(&cur);
	return err;
}

/* Allocate and initialise a new chunk near hint_fsbno; the first inode is
 * taken.  -ENOSPC if no aligned run of chunk_blocks is free. */
static int alloc_chunk(struct rlfs_trans *tp, uint64_t hint_fsbno, uint64_t *inop)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_alloc_arg a = {
		.tp = tp, .type = RLFS_ALLOC_NEAR, .hint_fsbno = hint_fsbno,
		.minlen = mp->chunk_blocks, .maxlen = mp->chunk_blocks,
		.alignment = mp->chunk_blocks,
	};
	int err = rlfs_alloc_extent(&a);
	if (!err && !a.fsbno)
		err = -ENOSPC;
	if (!err)
		err = rlfs_rmap_update(tp, RLFS_RUI_MAP, a.fsbno, mp->chunk_blocks,
				       RLFS_RMAP_OWN_INODES, 0);
	if (err)
		return err;
	uint32_t agno = rlfs_fsb_to_agno(mp, a.fsbno);
	uint64_t startino = rlfs_fsb_to_ino(mp, a.fsbno, 0);

	/* every inode of the chunk on disk: free (mode 0), self-describing,
	 * with a random generation (XFS xfs_ialloc_inode_init): a chunk can
	 * be freed and allocated again, and its inode numbers must not come
	 * back with generations that old file handles still carry */
	uint32_t gen;
	if (getrandom(&gen, sizeof(gen), 0) != (ssize_t)sizeof(gen)) {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		gen = (uint32_t)now.tv_nsec ^ (uint32_t)now.tv_sec;
	}
	for (uint32_t b = 0; b < mp->chunk_blocks; b++) {
		struct rlfs_buf *bp;
		err = rlfs_trans_get_buf(tp, a.fsbno + b, &rlfs_inode_buf_ops, RLFS_OWNER_ANY, &bp);
		if (err)
			return err;
		for (uint32_t i = 0; i < mp->inopblock; i++) {
			uint8_t *p = (uint8_t *)bp->data + (size_t)i * mp->inodesize;
			struct rlfs_dinode *dip = (struct rlfs_dinode *)p;
			memset(p, 0, mp->inodesize);
			rlfs_put32(dip->magic, RLFS_DINODE_MAGIC);
			rlfs_put64(dip->ino, rlfs_fsb_to_ino(mp, a.fsbno + b, i));
			memcpy(dip->uuid, mp->uuid, RLFS_UUID_SIZE);
			rlfs_put64(dip->generation, gen);
			rlfs_cksum_update(p, mp->inodesize, offsetof(struct rlfs_dinode, crc));
		}
		rlfs_trans_log_buf(tp, bp);
		rlfs_trans_brelse(tp, bp);
	}

	struct rlfs_buf *agbp;
	err = rlfs_ag_read_header(tp, agno, &agbp);
	if (err)
		return err;
	/* stock the AGFL for the inobt insert; a shortage shows up as -ENOSPC
	 * from the insert itself */
	err = rlfs_alloc_fix_freelist(tp, agno);
	if (err == -ENOSPC)
		err = 0;
	struct rlfs_btree_cur cur;
	struct rlfs_inobt_rec r = mkrec(startino, RLFS_INODES_PER_CHUNK - 1, FULL_MASK & ~1ull);
	rlfs_btree_cur_init(&cur, tp, &rlfs_inobt_ops, agno, NULL, agbp);
	if (!err)
		err = rlfs_btree_insert(&cur, &r);
	rlfs_btree_cur_del(&cur);
	if (err == -EEXIST)
		err = rlfs_corrupt(mp, a.fsbno, "inobt", "chunk %llu already in the inode btree",
				   (unsigned long long)startino);
	if (!err)
		err = mod_icount(tp, RLFS_INODES_PER_CHUNK, RLFS_INODES_PER_CHUNK - 1);
	if (!err) {
		struct rlfs_agh *agh = rlfs_agh(agbp);
		rlfs_put64(agh->icount, rlfs_get64(agh->icount) + RLFS_INODES_PER_CHUNK);
		rlfs_put64(agh->ifree, rlfs_get64(agh->ifree) + RLFS_INODES_PER_CHUNK - 1);
		rlfs_put64(agh->newino, startino);
		rlfs_ag_log_header(tp, agbp);
		*inop = startino;
	}
	rlfs_trans_brelse(tp, agbp);
	return err;
}

static bool ino_valid(struct rlfs_mount *mp, uint64_t ino)
{
	uint64_t fsb = rlfs_ino_to_fsb(mp, ino);
	return ino != 0 && fsb < mp->dblocks &&
	       rlfs_fsb_to_agbno(mp, fsb) > RLFS_AGFL_AGBNO;
}

static int ialloc_once(struct rlfs_trans *tp, uint64_t parent_ino, uint64_t *inop,
		       bool *saw_busy)
{
	struct rlfs_mount *mp = tp->mp;
	uint32_t pagno = 0;
	uint64_t hint_fsbno = 0;
	int err;
	if (parent_ino && ino_valid(mp, parent_ino)) {
		hint_fsbno = rlfs_ino_to_fsb(mp, parent_ino);
		pagno = rlfs_fsb_to_agno(mp, hint_fsbno);
	}
	for (uint32_t i = 0; i < mp->agcount; i++) {
		uint32_t agno = (pagno + i) % mp->agcount;
		struct rlfs_buf *agbp;
		err = rlfs_ag_read_header(tp, agno, &agbp);
		if (err)
			return err;
		if (rlfs_get64(rlfs_agh(agbp)->ifree) > 0) {
			err = alloc_from_chunks(tp, agno, agbp, parent_ino, inop);
			rlfs_trans_brelse(tp, agbp);
			if (err != -EAGAIN) /* -EAGAIN: only busy inodes here */
				return err;
			*saw_busy = true;
			continue;
		}
		rlfs_trans_brelse(tp, agbp);
	}
	return alloc_chunk(tp, hint_fsbno, inop);
}

int rlfs_ialloc(struct rlfs_trans *tp, uint64_t parent_ino, uint64_t *inop)
{
	bool saw_busy = false;
	int err = ialloc_once(tp, parent_ino, inop, &saw_busy);
	/* no room for a new chunk, and free inodes are only busy: make the
	 * frees durable and try again (busy.h) */
	if (err == -ENOSPC) {
		int ferr = rlfs_busy_force_retry(tp, saw_busy);
		if (!ferr)
			err = ialloc_once(tp, parent_ino, inop, &saw_busy);
		else if (ferr != -ENOSPC)
			err = ferr;
	}
	return err;
}

/* Find the inobt record of the chunk holding ino; *stat 0 if none. */
static int find_chunk(struct rlfs_btree_cur *cur, uint64_t ino, struct rlfs_inobt_rec *r,
		      int *stat)
{
	rlfs_le64 key = rlfs_le64_of(ino);
	int err = rlfs_btree_lookup(cur, RLFS_LOOKUP_LE, &key, stat);
	if (err || !*stat)
		return err;
	err = rlfs_btree_get_rec(cur, r, stat);
	if (err || !*stat)
		return err;
	uint64_t start = rlfs_get64(r->startino);
	if (ino >= start + RLFS_INODES_PER_CHUNK)
		*stat = 0;
	return 0;
}

int rlfs_ifree(struct rlfs_trans *tp, uint64_t ino)
{
	struct rlfs_mount *mp = tp->mp;
	if (!ino_valid(mp, ino))
		return rlfs_corrupt(mp, 0, "inobt", "freeing inode %llu: number out of range",
				    (unsigned long long)ino);
	uint64_t fsb = rlfs_ino_to_fsb(mp, ino);
	uint32_t agno = rlfs_fsb_to_agno(mp, fsb);
	struct rlfs_buf *agbp;
	int err = rlfs_ag_read_header(tp, agno, &agbp);
	if (err)
		return err;
	struct rlfs_agh *agh = rlfs_agh(agbp);
	struct rlfs_btree_cur cur;
	struct rlfs_inobt_rec r;
	int stat;
	uint64_t start, mask;
	uint32_t fc;
	bool chunk_free = false;

	rlfs_btree_cur_init(&cur, tp, &rlfs_inobt_ops, agno, NULL, agbp);
	err = find_chunk(&cur, ino, &r, &stat);
	if (err)
		goto out;
	if (!stat) {
		err = rlfs_corrupt(mp, fsb, "inobt", "freeing inode %llu: in no chunk",
				   (unsigned long long)ino);
		goto out;
	}
	rec_get(&r, &start, &fc, &mask);
	unsigned bit = (unsigned)(ino - start);
	if (mask & (1ull << bit)) {
		err = rlfs_corrupt(mp, fsb, "inobt", "freeing inode %llu: already free",
				   (unsigned long long)ino);
		goto out;
	}
	/* the number is not reused before this free is durable (busy.h) */
	err = rlfs_busy_insert_ino(mp, ino, rlfs_busy_cur_seq(mp));
	if (err)
		goto out;
	mask |= 1ull << bit;
	fc++;
	if (fc == RLFS_INODES_PER_CHUNK) {
		chunk_free = true;
		rlfs_btree_cur_del(&cur);
		/* room on the AGFL for blocks the delete may give back */
		err = rlfs_alloc_fix_freelist(tp, agno);
		if (err == -ENOSPC)
			err = 0;
		rlfs_btree_cur_init(&cur, tp, &rlfs_inobt_ops, agno, NULL, agbp);
		if (!err)
			err = find_chunk(&cur, ino, &r, &stat);
		if (!err)
			err = rlfs_btree_delete(&cur, &stat);
		if (!err)
			err = mod_icount(tp, -RLFS_INODES_PER_CHUNK, -(RLFS_INODES_PER_CHUNK - 1));
		if (err)
			goto out;
		rlfs_put64(agh->icount, rlfs_get64(agh->icount) - RLFS_INODES_PER_CHUNK);
		rlfs_put64(agh->ifree, rlfs_get64(agh->ifree) - (RLFS_INODES_PER_CHUNK - 1));
	} else {
		r = mkrec(start, fc, mask);
		err = rlfs_btree_update(&cur, &r);
		if (!err)
			err = mod_icount(tp, 0, 1);
		if (err)
			goto out;
		rlfs_put64(agh->ifree, rlfs_get64(agh->ifree) + 1);
	}
	rlfs_ag_log_header(tp, agbp);
out:
	rlfs_btree_cur_del(&cur);
	if (!err && chunk_free) {
		/* the chunk's blocks go back as deferred work (an EFI, as
		 * xfs_difree_inode_chunk): the inobt delete and the intent
		 * commit together, the free-space trees change in the next
		 * transaction; rlfs_free_extent there invalidates the cached
		 * cluster buffers.  Nothing can use the chunk in between: it
		 * is in no inobt record. */
		uint64_t cfsb = rlfs_ino_to_fsb(mp, start);
		err = rlfs_rmap_update(tp, RLFS_RUI_UNMAP, cfsb, mp->chunk_blocks,
				       RLFS_RMAP_OWN_INODES, 0);
		if (!err)
			err = rlfs_efi_add(tp, cfsb, mp->chunk_blocks);
	}
	rlfs_trans_brelse(tp, agbp);
	return err;
}

int rlfs_ialloc_check(struct rlfs_trans *tp, uint64_t ino, bool *inuse)
{
	struct rlfs_mount *mp = tp->mp;
	*inuse = false;
	if (!ino_valid(mp, ino))
		return -EINVAL;
	uint64_t fsb = rlfs_ino_to_fsb(mp, ino);
	uint32_t agno = rlfs_fsb_to_agno(mp, fsb);
	struct rlfs_buf *agbp;
	int err = rlfs_ag_read_header(tp, agno, &agbp);
	if (err)
		return err;
	struct rlfs_btree_cur cur;
	struct rlfs_inobt_rec r;
	int stat;
	rlfs_btree_cur_init(&cur, tp, &rlfs_inobt_ops, agno, NULL, agbp);
	err = find_chunk(&cur, ino, &r, &stat);
	rlfs_btree_cur_del(&cur);
	rlfs_trans_brelse(tp, agbp);
	if (err)
		return err;
	if (stat)
		*inuse = !(rlfs_get64(r.free) & (1ull << (ino - rlfs_get64(r.startino))));
	return 0;
}

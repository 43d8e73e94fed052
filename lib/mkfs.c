/*
 * mkfs.c: rlfs_mkfs(), format an image file or block device.
 *
 * Layout of every AG written here (agbno within the AG):
 *   0   superblock (AG 0: primary; the others: backup copies)   RLFS_SB_AGBNO
 *   1   AG header                                               RLFS_AGH_AGBNO
 *   2   AGFL block                                              RLFS_AGFL_AGBNO
 *   3   bnobt root (an empty-but-one leaf)                      MKFS_BNO_AGBNO
 *   4   cntbt root                                              MKFS_CNT_AGBNO
 *   5   inobt root (empty leaf)                                 MKFS_INO_AGBNO
 *   6   refcount btree root (empty leaf), REFLINK feature only  MKFS_REFC_AGBNO
 *   r   rmap btree root (one leaf), RMAP feature only, r = 7 with REFLINK,
 *       6 without                                               rmap_agbno()
 *   f .. f+m-1   AGFL pre-fill, m = rlfs_agfl_min(mp) blocks (ring slots 0..m-1),
 *                f = 6 + 1 with REFLINK + 1 with RMAP (first_agfl())
 *   f+m .. f+m+l-1  the log (LOG feature, middle AG agcount/2 only)
 *   then         one free extent: the single record of bnobt and cntbt
 * The root directory is the first inode of the first chunk, allocated in
 * AG 0 by rlfs_ialloc (chunk aligned to chunk_blocks, so it is the first
 * aligned run after the AGFL pre-fill).  The REFLINK feature
 * (RLFS_FEAT_INCOMPAT_REFLINK) is on unless opts->reflink < 0; without it
 * refc_root/refc_level are 0.  The RMAP feature is on unless
 * opts->rmapbt < 0; without it rmap_root/rmap_level are 0.  With it each AG's rmap leaf holds the records of everything
 * above (merged where adjacent blocks have the same special owner):
 *   [0, 2) OWN_FS; [2, 5) OWN_AG (AGFL block, bnobt, cntbt); 5 OWN_INOBT;
 *   6 OWN_REFC (REFLINK); [r, f+m) OWN_AG (rmap root + AGFL pre-fill);
 *   the log OWN_LOG.  The root directory's inode chunk (AG 0) gets its
 *   OWN_INODES record from rlfs_ialloc's rmap hook in make_root; the
 *   AGFL pre-fill stays as written (the AGFL is already at its minimum);
 *   the empty root directory owns no block.
 *
 * AG sizing rule (dblocks = size / blocksize; image must be >= 16 MiB):
 *   - agcount given: agblocks = ceil(dblocks / agcount), then agcount =
 *     ceil(dblocks / agblocks);
 *   - else if the image is <= 4 GiB: 4 AGs, agblocks = ceil(dblocks / 4);
 *   - else agblocks = 1 GiB worth of blocks, doubled while there would be
 *     more than 64 AGs (never above RLFS_MAX_AGBLOCKS = 2^31 - 1);
 *   - a last AG shorter than max(64, 6 + 2*m) blocks is dropped (dblocks
 *     shrinks to a whole number of AGs), as mkfs.xfs does;
 *   - agblocks must be 64 .. 2^31-1 and AG 0 must hold the headers, the
 *     AGFL pre-fill and one aligned inode chunk, else -EINVAL.
 * Inode size: 512 by default, raised to blocksize/64 when that is larger
 * (a block never holds more than one chunk of 64 inodes), must be a power
 * of two in 256..blocksize.
 * maxbytes = min(2^63 - 1, 2^54 blocks).
 * Model: xfsprogs mkfs/xfs_mkfs.c (much simplified).
 */
#include "reflinkfs/fs.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ag_resv.h"
#include "alloc.h"
#include "dev.h"
#include "ialloc.h"
#include "inode.h"
#include "log.h"
#include "refcount.h"
#include "rlfs.h"
#include "rmap.h"
#include "trans.h"

#define MKFS_BNO_AGBNO 3u
#define MKFS_CNT_AGBNO 4u
#define MKFS_INO_AGBNO 5u
#define MKFS_REFC_AGBNO 6u
#define MKFS_FIRST_AGFL_AGBNO 6u /* without REFLINK and RMAP (first_agfl()) */
#define MKFS_MIN_BYTES (16ull << 20)
#define MKFS_MIN_AGBLOCKS 64u

struct geom {
	uint32_t blocksize, inodesize, agblocks, agcount;
	uint64_t dblocks;
	uint64_t features_incompat;
	uint64_t features_ro_compat;
	uint32_t log_agno;          /* LOG feature: AG holding the log */
	uint32_t log_blocks;        /* 0 = no log */
};

uint64_t rlfs_mkfs_default_log_bytes(uint64_t size_bytes, uint32_t blocksize)
{
	uint64_t min = RLFS_MAX((uint64_t)RLFS_LOG_MIN_BLOCKS * blocksize, RLFS_LOG_MIN_BYTES);
	uint64_t bytes = size_bytes / 64;
	bytes = RLFS_MIN(bytes, 64ull << 20);
	bytes = RLFS_MAX(bytes, min);
	return bytes / blocksize * blocksize;
}

/* agbno of the rmap btree root (RMAP feature): after the refcount root. */
static uint32_t rmap_agbno(const struct rlfs_mount *mp)
{
	return MKFS_REFC_AGBNO + (rlfs_has_reflink(mp) ? 1u : 0u);
}

/* First agbno of the AGFL pre-fill. */
static uint32_t first_agfl(const struct rlfs_mount *mp)
{
	return MKFS_FIRST_AGFL_AGBNO + (rlfs_has_reflink(mp) ? 1u : 0u) +
	       (rlfs_has_rmap(mp) ? 1u : 0u);
}

static void geom_mp(const struct geom *g, struct rlfs_mount *mp)
{
	memset(mp, 0, sizeof(*mp));
	mp->blocksize = g->blocksize;
	mp->blocklog = (uint32_t)__builtin_ctz(g->blocksize);
	mp->dblocks = g->dblocks;
	mp->agblocks = g->agblocks;
	mp->agcount = g->agcount;
	mp->inodesize = g->inodesize;
	mp->inopblock = g->blocksize / g->inodesize;
	mp->chunk_blocks = RLFS_MAX(1u, RLFS_INODES_PER_CHUNK / mp->inopblock);
	mp->features_incompat = g->features_incompat;
	mp->features_ro_compat = g->features_ro_compat;
}

static bool pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static int compute_geometry(const struct rlfs_mkfs_opts *o, uint64_t size_bytes, struct geom *g)
{
	g->features_incompat = o->reflink >= 0 ? RLFS_FEAT_INCOMPAT_REFLINK : 0;
	if (o->reflink > 1 || o->rmapbt > 1)
		return -EINVAL;
	if (o->rmapbt >= 0)
		g->features_incompat |= RLFS_FEAT_INCOMPAT_RMAP;
	/* AG header counts of the refcount/rmap btree blocks (SPEC section 5):
	 * always kept by this version */
	g->features_ro_compat = RLFS_FEAT_RO_COMPAT_AGBTCOUNT;
	g->blocksize = o->blocksize ? o->blocksize : RLFS_DEFAULT_BLOCKSIZE;
	if (!pow2(g->blocksize) || g->blocksize < RLFS_MIN_BLOCKSIZE ||
	    g->blocksize > RLFS_MAX_BLOCKSIZE)
		return -EINVAL;
	if (o->inodesize) {
		g->inodesize = o->inodesize;
		if (!pow2(g->inodesize) || g->inodesize < 256 || g->inodesize > g->blocksize ||
		    g->blocksize / g->inodesize > RLFS_INODES_PER_CHUNK)
			return -EINVAL;
	} else {
		g->inodesize = RLFS_MAX(RLFS_DEFAULT_INODESIZE, g->blocksize / RLFS_INODES_PER_CHUNK);
	}
	if (size_bytes < MKFS_MIN_BYTES)
		return -EINVAL;
	uint64_t dblocks = size_bytes / g->blocksize;
	uint64_t agblocks;
	if (o->agcount) {
		agblocks = (dblocks + o->agcount - 1) / o->agcount;
	} else if (size_bytes <= (4ull << 30)) {
		agblocks = (dblocks + 3) / 4;
	} else {
		agblocks = (1ull << 30) / g->blocksize;
		while ((dblocks + agblocks - 1) / agblocks > 64 && agblocks * 2 <= RLFS_MAX_AGBLOCKS)
			agblocks *= 2;
	}
	if (agblocks < MKFS_MIN_AGBLOCKS || agblocks > RLFS_MAX_AGBLOCKS)
		return -EINVAL;
	g->agblocks = (uint32_t)agblocks;
	g->agcount = (uint32_t)((dblocks + agblocks - 1) / agblocks);
	g->dblocks = dblocks;

	struct rlfs_mount m;
	geom_mp(g, &m);
	unsigned fl = rlfs_agfl_min(&m);
	uint64_t last = dblocks - (uint64_t)(g->agcount - 1) * agblocks;
	if (g->agcount > 1 && last < RLFS_MAX(MKFS_MIN_AGBLOCKS, first_agfl(&m) + 2 * fl)) {
		g->agcount--;
		g->dblocks = (uint64_t)g->agcount * agblocks;
	}
	if (g->agcount == 1 && g->dblocks < MKFS_MIN_AGBLOCKS)
		return -EINVAL;
	/* AG 0 must hold headers, AGFL pre-fill, one aligned chunk */
	uint64_t first = first_agfl(&m) + fl;
	uint64_t cb = m.chunk_blocks;
	uint64_t chunk_at = (first + cb - 1) / cb * cb;
	if (chunk_at + cb > RLFS_MIN((uint64_t)g->agblocks, g->dblocks))
		return -EINVAL;
	if (g->dblocks - (uint64_t)(g->agcount - 1) * g->agblocks < first + 1)
		return -EINVAL;
	/* the log: right after the AGFL pre-fill of the middle AG, leaving
	 * at least a sixteenth of the AG (and 8 blocks) free there */
	g->log_blocks = 0;
	g->log_agno = 0;
	if (o->log >= 0) {
		uint64_t lb = (o->log_bytes ? o->log_bytes
					    : rlfs_mkfs_default_log_bytes(size_bytes, g->blocksize)) /
			      g->blocksize;
		g->log_agno = g->agcount / 2;
		uint64_t agb = RLFS_MIN((uint64_t)g->agblocks,
					g->dblocks - (uint64_t)g->log_agno * g->agblocks);
		uint64_t room = first + (g->log_agno == 0 ? cb + (chunk_at - first) : 0) +
				RLFS_MAX(8u, agb / 16);
		/* No larger default with the rmap (which about doubles the
		 * intents of a deferred chain): long chains relog their
		 * intents (defer.h), so they do not pin the tail of even the
		 * smallest log (docs/DESIGN.md "Intents", the measurements) */
		if (lb < RLFS_LOG_MIN_BLOCKS || lb * g->blocksize < RLFS_LOG_MIN_BYTES ||
		    lb > UINT32_MAX || lb + room > agb)
			return -EINVAL;
		g->log_blocks = (uint32_t)lb;
		g->features_incompat |= RLFS_FEAT_INCOMPAT_LOG;
	}
	return 0;
}

/* Append [start, start+len) of special owner to the sorted list
 * r[0..*n), merged with the previous record when rlfs_rmap_is_mergeable
 * (same owner, touching). */
static void rmap_add(struct rlfs_rmap_irec *r, unsigned *n, uint32_t start, uint32_t len,
		     uint64_t owner)
{
	struct rlfs_rmap_irec ir = { .startblock = start, .blockcount = len, .owner = owner };
	if (!len)
		return;
	if (*n && rlfs_rmap_is_mergeable(&r[*n - 1], &ir))
		r[*n - 1].blockcount += len;
	else
		r[(*n)++] = ir;
}

/* The rmap records of a fresh AG before any inode chunk (layout above);
 * at most MKFS_RMAP_RECS of them, in key order. */
#define MKFS_RMAP_RECS 8u
static unsigned rmap_ag_recs(struct rlfs_mount *mp, uint32_t agno, const struct geom *g,
			     struct rlfs_rmap_irec *r)
{
	unsigned n = 0;
	uint32_t fa = first_agfl(mp), fl = rlfs_agfl_min(mp);
	rmap_add(r, &n, RLFS_SB_AGBNO, 2, RLFS_RMAP_OWN_FS); /* sb + AG header */
	rmap_add(r, &n, RLFS_AGFL_AGBNO, 1, RLFS_RMAP_OWN_AG);
	rmap_add(r, &n, MKFS_BNO_AGBNO, 2, RLFS_RMAP_OWN_AG); /* bnobt, cntbt */
	rmap_add(r, &n, MKFS_INO_AGBNO, 1, RLFS_RMAP_OWN_INOBT);
	if (rlfs_has_reflink(mp))
		rmap_add(r, &n, MKFS_REFC_AGBNO, 1, RLFS_RMAP_OWN_REFC);
	rmap_add(r, &n, rmap_agbno(mp), 1, RLFS_RMAP_OWN_AG);
	rmap_add(r, &n, fa, fl, RLFS_RMAP_OWN_AG); /* the blocks on the AGFL */
	if (g->log_blocks && g->log_agno == agno)
		rmap_add(r, &n, fa + fl, g->log_blocks, RLFS_RMAP_OWN_LOG);
	return n;
}

/* Write the per-AG structures of AG agno (see the layout above). */
static int init_ag(struct rlfs_trans *tp, uint32_t agno, const struct geom *g)
{
	struct rlfs_mount *mp = tp->mp;
	uint32_t len = rlfs_ag_blocks(mp, agno);
	unsigned fl = rlfs_agfl_min(mp), size = rlfs_agfl_size(mp);
	uint32_t fa = first_agfl(mp);
	uint32_t free_start = fa + fl;
	if (g->log_blocks && g->log_agno == agno)
		free_start += g->log_blocks;    /* the log: never free space */
	uint32_t freeblks = len - free_start;
	struct rlfs_buf *bp;
	int err;

	/* AGFL */
	err = rlfs_trans_get_buf(tp, rlfs_agb_to_fsb(mp, agno, RLFS_AGFL_AGBNO),
				 &rlfs_agfl_buf_ops, agno, &bp);
	if (err)
		return err;
	struct rlfs_agfl *agfl = bp->data;
	rlfs_put32(agfl->agno, agno);
	rlfs_le32 *slots = (rlfs_le32 *)((char *)bp->data + sizeof(struct rlfs_agfl));
	for (unsigned i = 0; i < size; i++)
		rlfs_put32(slots[i], i < fl ? fa + i : 0xffffffffu);
	rlfs_trans_log_buf(tp, bp);
	rlfs_trans_brelse(tp, bp);

	/* tree roots */
	static const struct {
		const struct rlfs_btree_ops *ops;
		uint32_t agbno;
	} roots[] = {
		{ &rlfs_bnobt_ops, MKFS_BNO_AGBNO },
		{ &rlfs_cntbt_ops, MKFS_CNT_AGBNO },
		{ &rlfs_inobt_ops, MKFS_INO_AGBNO },
		{ &rlfs_refcountbt_ops, MKFS_REFC_AGBNO },
	};
	unsigned nroots = rlfs_has_reflink(mp) ? 4 : 3;
	if (rlfs_has_rmap(mp)) {
		struct rlfs_rmap_irec r[MKFS_RMAP_RECS];
		unsigned n = rmap_ag_recs(mp, agno, g, r);
		err = rlfs_trans_get_buf(tp, rlfs_agb_to_fsb(mp, agno, rmap_agbno(mp)),
					 &rlfs_rmapbt_buf_ops, agno, &bp);
		if (err)
			return err;
		rlfs_btree_init_block(mp, bp, &rlfs_rmapbt_ops, 0, agno);
		struct rlfs_btree_block *blk = bp->data;
		struct rlfs_rmap_rec *out = (struct rlfs_rmap_rec *)(blk + 1);
		for (unsigned i = 0; i < n; i++)
			rlfs_rmap_rec_encode(&r[i], &out[i]);
		rlfs_put16(blk->numrecs, (uint16_t)n);
		rlfs_trans_log_buf(tp, bp);
		rlfs_trans_brelse(tp, bp);
	}
	for (unsigned i = 0; i < nroots; i++) {
		err = rlfs_trans_get_buf(tp, rlfs_agb_to_fsb(mp, agno, roots[i].agbno),
					 roots[i].ops->buf_ops, agno, &bp);
		if (err)
			return err;
		rlfs_btree_init_block(mp, bp, roots[i].ops, 0, agno);
		if (roots[i].ops == &rlfs_bnobt_ops || roots[i].ops == &rlfs_cntbt_ops) {
			struct rlfs_btree_block *blk = bp->data;
			struct rlfs_alloc_rec rec;
			rlfs_put32(rec.startblock, free_start);
			rlfs_put32(rec.blockcount, freeblks);
			rlfs_put16(blk->numrecs, 1);
			memcpy((char *)bp->data + sizeof(*blk), &rec, sizeof(rec));
		}
		rlfs_trans_log_buf(tp, bp);
		rlfs_trans_brelse(tp, bp);
	}

	/* AG header */
	err = rlfs_trans_get_buf(tp, rlfs_agb_to_fsb(mp, agno, RLFS_AGH_AGBNO),
				 &rlfs_agh_buf_ops, agno, &bp);
	if (err)
		return err;
	struct rlfs_agh *agh = bp->data;
	rlfs_put32(agh->agno, agno);
	rlfs_put32(agh->length, len);
	rlfs_put32(agh->bno_root, MKFS_BNO_AGBNO);
	rlfs_put32(agh->cnt_root, MKFS_CNT_AGBNO);
	rlfs_put32(agh->ino_root, MKFS_INO_AGBNO);
	rlfs_put16(agh->bno_level, 1);
	rlfs_put16(agh->cnt_level, 1);
	rlfs_put16(agh->ino_level, 1);
	if (rlfs_has_reflink(mp)) {
		rlfs_put32(agh->refc_root, MKFS_REFC_AGBNO);
		rlfs_put16(agh->refc_level, 1);
		if (rlfs_has_agbtcount(mp))
			rlfs_put32(agh->refc_blocks, 1);
	}
	if (rlfs_has_rmap(mp)) {
		rlfs_put32(agh->rmap_root, rmap_agbno(mp));
		rlfs_put16(agh->rmap_level, 1);
		if (rlfs_has_agbtcount(mp))
			rlfs_put32(agh->rmap_blocks, 1);
	}
	rlfs_put32(agh->freeblks, freeblks);
	rlfs_put32(agh->longest, freeblks);
	rlfs_put32(agh->flfirst, 0);
	rlfs_put32(agh->fllast, fl ? fl - 1 : size - 1);
	rlfs_put32(agh->flcount, fl);
	rlfs_trans_log_buf(tp, bp);
	rlfs_trans_brelse(tp, bp);
	return 0;
}

/* Root directory: an empty directory that is its own parent. */
static int make_root(struct rlfs_mount *mp, const struct rlfs_mkfs_opts *o)
{
	/* the hints the root directory passes on (mkfs.xfs -d cowextsize=,
	 * extszinherit=): checked as FS_IOC_FSSETXATTR checks them */
	uint32_t diflags = (o->cowextsize_blocks ? RLFS_DIFLAG_COWEXTSIZE : 0) |
			   (o->extszinherit_blocks ? RLFS_DIFLAG_EXTSZINHERIT : 0);
	if (rlfs_cowextsize_valid(mp, S_IFDIR, diflags, o->cowextsize_blocks) ||
	    rlfs_extsize_valid(mp, S_IFDIR, diflags, o->extszinherit_blocks))
		return -EINVAL;
	struct rlfs_trans *tp;
	int err = rlfs_trans_alloc(mp, &mp->resv.tr_mkdir, rlfs_ialloc_res(mp), 0, &tp);
	if (err)
		return err;
	uint64_t ino;
	err = rlfs_ialloc(tp, 0, &ino);
	if (err)
		goto cancel;
	struct rlfs_buf *bp;
	err = rlfs_trans_read_buf(tp, rlfs_ino_to_fsb(mp, ino), &rlfs_inode_buf_ops,
				  RLFS_OWNER_ANY, &bp);
	if (err)
		goto cancel;
	uint8_t *p = (uint8_t *)bp->data + (size_t)rlfs_ino_to_slot(mp, ino) * mp->inodesize;
	struct rlfs_dinode *dip = (struct rlfs_dinode *)p;
	struct timespec now;
	uint64_t gen = 0;
	clock_gettime(CLOCK_REALTIME, &now);
	if (getrandom(&gen, sizeof(gen), 0) != sizeof(gen))
		gen = (uint64_t)now.tv_nsec;
	rlfs_put32(dip->mode, S_IFDIR | 0755);
	rlfs_put32(dip->uid, (uint32_t)getuid());
	rlfs_put32(dip->gid, (uint32_t)getgid());
	rlfs_put32(dip->nlink, 2);
	rlfs_put64(dip->size, 0);
	rlfs_put64(dip->nblocks, 0);
	struct rlfs_timestamp ts;
	memset(&ts, 0, sizeof(ts));
	rlfs_put64(ts.sec, (uint64_t)now.tv_sec);
	rlfs_put32(ts.nsec, (uint32_t)now.tv_nsec);
	dip->atime = dip->mtime = dip->ctime = dip->crtime = ts;
	rlfs_put64(dip->generation, gen);
	rlfs_put64(dip->parent, ino);
	rlfs_put32(dip->flags, diflags);
	rlfs_put32(dip->cowextsize_blocks, o->cowextsize_blocks);
	rlfs_put32(dip->extsize_blocks, o->extszinherit_blocks);
	dip->format = RLFS_FMT_NONE;
	dip->aformat = RLFS_FMT_NONE;
	rlfs_put16(dip->forkoff, rlfs_inode_default_forkoff(mp));
	rlfs_cksum_update(p, mp->inodesize, offsetof(struct rlfs_dinode, crc));
	rlfs_trans_log_buf(tp, bp);
	rlfs_trans_brelse(tp, bp);
	mp->rootino = ino;
	return rlfs_trans_commit(tp);
cancel:
	rlfs_trans_cancel(tp);
	return err;
}

/* Superblock copies, written raw last (the primary one is fsbno 0, which
 * the buffer cache does not hand out for writing from scratch). */
static int write_superblocks(struct rlfs_mount *mp, const struct rlfs_mkfs_opts *o,
			     uint64_t log_start, uint32_t log_blocks)
{
	void *blk = aligned_alloc(64, mp->blocksize);
	if (!blk)
		return -ENOMEM;
	int err = 0;
	/* min(2^63 - 1, 2^54 blocks): with blocksize >= 1024, 2^54 blocks is
	 * >= 2^64 bytes, so the byte limit of off_t always wins */
	uint64_t maxbytes = INT64_MAX;
	mp->maxbytes = maxbytes;
	for (uint32_t agno = 0; agno < mp->agcount && !err; agno++) {
		uint64_t fsbno = rlfs_agb_to_fsb(mp, agno, RLFS_SB_AGBNO);
		memset(blk, 0, mp->blocksize);
		struct rlfs_sb *sb = blk;
		rlfs_blkhdr_init(mp, blk, RLFS_SB_MAGIC, fsbno, agno);
		rlfs_put32(sb->version, RLFS_VERSION);
		rlfs_put32(sb->blocksize, mp->blocksize);
		rlfs_put64(sb->dblocks, mp->dblocks);
		rlfs_put32(sb->agblocks, mp->agblocks);
		rlfs_put32(sb->agcount, mp->agcount);
		rlfs_put16(sb->inodesize, (uint16_t)mp->inodesize);
		rlfs_put16(sb->inopblock, (uint16_t)mp->inopblock);
		rlfs_put32(sb->state, RLFS_STATE_CLEAN);
		rlfs_put64(sb->features_incompat, mp->features_incompat);
		rlfs_put64(sb->features_ro_compat, mp->features_ro_compat);
		rlfs_put64(sb->rootino, mp->rootino);
		rlfs_put64(sb->icount, mp->icount);
		rlfs_put64(sb->ifree, mp->ifree);
		rlfs_put64(sb->fdblocks, mp->fdblocks > 0 ? (uint64_t)mp->fdblocks : 0);
		rlfs_put64(sb->ctime_sec, (uint64_t)time(NULL));
		if (o->label)
			strncpy(sb->label, o->label, sizeof(sb->label) - 1);
		rlfs_put64(sb->maxbytes, maxbytes);
		rlfs_put64(sb->log_start, log_start);
		rlfs_put32(sb->log_blocks, log_blocks);
		/* the primary: the log's clean head (rlfs_log_format's unmount
		 * record at block 0, cycle 1) */
		if (agno == 0 && log_blocks)
			rlfs_put64(sb->log_clean_lsn, RLFS_LSN(1, 0));
		rlfs_cksum_update(blk, mp->blocksize, RLFS_CRC_OFF);
		err = rlfs_dev_pwrite(mp->dev, blk, mp->blocksize, fsbno << mp->blocklog);
	}
	free(blk);
	if (!err)
		err = rlfs_dev_flush(mp->dev);
	return err;
}

static int format(struct rlfs_dev *dev, const struct geom *g, const struct rlfs_mkfs_opts *o)
{
	struct rlfs_mount *mp;
	int err = rlfs_mount_alloc_bare(dev, g->blocksize, g->dblocks, g->agblocks, &mp);
	if (err)
		return err;
	struct rlfs_mount m;
	geom_mp(g, &m);
	mp->agcount = m.agcount;
	mp->inodesize = m.inodesize;
	mp->inopblock = m.inopblock;
	mp->chunk_blocks = m.chunk_blocks;
	mp->features_incompat = m.features_incompat;
	mp->features_ro_compat = m.features_ro_compat;
	if (getrandom(mp->uuid, RLFS_UUID_SIZE, 0) != RLFS_UUID_SIZE) {
		err = -EIO;
		goto out;
	}
	mp->uuid[6] = (uint8_t)((mp->uuid[6] & 0x0f) | 0x40); /* RFC 4122 v4 */
	mp->uuid[8] = (uint8_t)((mp->uuid[8] & 0x3f) | 0x80);

	/* invalidate any old superblock first: a failed mkfs leaves no fs */
	void *zero = calloc(1, mp->blocksize);
	if (!zero) {
		err = -ENOMEM;
		goto out;
	}
	err = rlfs_dev_pwrite(dev, zero, mp->blocksize, 0);
	free(zero);
	if (err)
		goto out;

	struct rlfs_trans *tp;
	err = rlfs_trans_alloc(mp, &mp->resv.tr_mkfs, 0, 0, &tp);
	if (err)
		goto out;
	for (uint32_t agno = 0; agno < mp->agcount && !err; agno++)
		err = init_ag(tp, agno, g);
	if (err) {
		rlfs_trans_cancel(tp);
		goto out;
	}
	err = rlfs_trans_commit(tp);
	if (err)
		goto out;
	/* free-space counter: what the AG headers say (as mount computes it) */
	err = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, 0, &tp);
	if (err)
		goto out;
	uint64_t free_blocks = 0;
	err = rlfs_count_free(tp, &free_blocks);
	rlfs_trans_cancel(tp);
	if (err)
		goto out;
	mp->fdblocks = (int64_t)free_blocks;
	mp->icount = mp->ifree = 0;

	err = make_root(mp, o);
	if (err)
		goto out;
	err = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, 0, &tp);
	if (err)
		goto out;
	err = rlfs_buf_flush_all(mp);
	rlfs_trans_cancel(tp);
	if (err)
		goto out;
	uint64_t log_start = 0;
	if (g->log_blocks) {
		/* a zeroed ring with an unmount record at block 0, cycle 1: a
		 * clean, empty log */
		log_start = rlfs_agb_to_fsb(mp, g->log_agno, first_agfl(mp) + rlfs_agfl_min(mp));
		err = rlfs_log_format(mp, log_start, g->log_blocks);
		if (err)
			goto out;
	}
	err = write_superblocks(mp, o, log_start, g->log_blocks);
out:
	rlfs_mount_free_bare(mp);
	return err;
}

int rlfs_mkfs(const char *image, const struct rlfs_mkfs_opts *opts)
{
	static const struct rlfs_mkfs_opts defaults;
	const struct rlfs_mkfs_opts *o = opts ? opts : &defaults;
	struct stat st;
	bool exists = stat(image, &st) == 0;
	uint64_t size = o->size_bytes;
	int err;

	if (exists && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return -EINVAL;
	if (!exists && errno != ENOENT)
		return -errno;
	if (exists && S_ISBLK(st.st_mode)) {
		struct rlfs_dev *dev;
		err = rlfs_dev_open(image, 0, 0, &dev);
		if (err)
			return err;
		uint64_t devsize = dev->size_bytes;
		rlfs_dev_close(dev);
		if (size > devsize)
			return -EINVAL;
		if (!size)
			size = devsize;
	} else if (!size) {
		if (!exists)
			return -EINVAL;
		size = (uint64_t)st.st_size;
	}
	struct geom g = { 0 };
	err = compute_geometry(o, size, &g);
	if (err)
		return err;

	/* Lock the image (a mounted one holds the lock: -EBUSY) while looking
	 * for an existing filesystem and sizing it.  A new image is 0600: it
	 * holds every file's data, whatever the files' own modes say (an
	 * existing file or device keeps its mode). */
	int fd = open(image, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		err = errno == EWOULDBLOCK ? -EBUSY : -errno;
		close(fd);
		return err;
	}
	if (exists && !o->force) {
		rlfs_le32 magic = { 0 };
		ssize_t n = pread(fd, &magic, sizeof(magic), 0);
		if (n == (ssize_t)sizeof(magic) && rlfs_get32(magic) == RLFS_SB_MAGIC) {
			close(fd);
			return -EEXIST;
		}
	}
	if ((!exists || S_ISREG(st.st_mode)) && ftruncate(fd, (off_t)size) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	close(fd); /* drops the lock; the device open below takes it again */
	struct rlfs_dev *dev;
	err = rlfs_dev_open(image, 1, 1, &dev);
	if (err)
		return err;
	err = format(dev, &g, o);
	rlfs_dev_close(dev);
	return err;
}

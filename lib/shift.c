/*
 * shift.c: collapse range and insert range (shift.h), the SXI/SXD deferred
 * type and its steps.
 *
 * A step moves one mapping m (or, for an insert, the part of it at or
 * after the insert point) by unmapping it from the fork without releasing
 * its blocks (RLFS_BUNMAP_KEEP) and mapping the same blocks, same state,
 * at the new file offset (rlfs_bmap_map_extent, which merges with a
 * neighbour that is contiguous on disk).  Both primitives queue the RUIs
 * of exactly those blocks, so the rmap records follow; nblocks is
 * unchanged; refcounts are not touched.  Order makes every target a hole:
 * a collapse moves mappings left in ascending order into the punched
 * range and the gaps the earlier moves left; an insert moves them right
 * from the last one down.  Model: xfs_bmap_collapse_extents /
 * xfs_bmap_insert_extents and xfs_bmap_split_extent (xfs_bmap.c).
 */
#include "shift.h"

#include <errno.h>
#include <stdlib.h>

#include "bmap.h"
#include "cowfork.h"
#include "reflinkfs/fs.h"
#include "rlfs.h"

struct sxi_work {
	struct rlfs_defer_item di;
	uint64_t ino;
	uint64_t startoff;
	uint64_t shift;
	uint64_t cursor;
	uint64_t new_size;
	uint32_t flags;             /* RLFS_SXI_* */
};

static uint64_t max_fileoff(const struct rlfs_mount *mp)
{
	return rlfs_b_to_fsb(mp, mp->maxbytes);
}

static inline uint64_t irec_end(const struct rlfs_irec *r)
{
	return r->startoff + r->blockcount;
}

static void sxi_encode(const struct rlfs_defer_item *item, void *buf)
{
	const struct sxi_work *w = (const struct sxi_work *)item;
	struct rlfs_sxi_item *s = buf;
	rlfs_put64(s->ino, w->ino);
	rlfs_put64(s->startoff, w->startoff);
	rlfs_put64(s->shift, w->shift);
	rlfs_put64(s->cursor, w->cursor);
	rlfs_put64(s->new_size, w->new_size);
	rlfs_put32(s->flags, w->flags);
	rlfs_put32(s->pad, 0);
}

static void sxi_free(struct rlfs_defer_item *item)
{
	free(item);
}

static int sxi_add(struct rlfs_trans *tp, const struct sxi_work *from)
{
	struct sxi_work *w = malloc(sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = *from;
	w->di.next = NULL;
	int err = rlfs_defer_add(tp, &rlfs_sxi_type, &w->di);
	if (err)
		free(w);
	return err;
}

/* The SXI's inode joined to tp (as defer_item.c's BUI: the caller's
 * reference keeps it in normal operation; recovery reads it in). */
static int sxi_inode(struct rlfs_trans *tp, const struct sxi_work *w, struct rlfs_inode **ipp)
{
	return rlfs_defer_item_inode(tp, "SXI", w->ino, ipp);
}

/* Move mapping m of ip to file block newoff (a hole there). */
static int move_mapping(struct rlfs_trans *tp, struct rlfs_inode *ip, const struct rlfs_irec *m,
			uint64_t newoff)
{
	bool done;
	int err = rlfs_bmap_unmap(tp, ip, m->startoff, m->blockcount, RLFS_BUNMAP_KEEP, 0, &done);
	if (err)
		return err;
	struct rlfs_irec n = *m;
	n.startoff = newoff;
	err = rlfs_bmap_map_extent(tp, ip, &n);
	if (err == -EEXIST || err == -EINVAL)
		err = rlfs_corrupt(tp->mp, m->startblock, "bmap",
				   "shift of inode %llu file block %llu (+%u) to %llu: the target "
				   "is not a hole", (unsigned long long)ip->ino,
				   (unsigned long long)m->startoff, m->blockcount,
				   (unsigned long long)newoff);
	return err;
}

/* Index of the last mapping of ip that starts before off, or -1. */
static int64_t last_before(const struct rlfs_inode *ip, uint64_t off)
{
	return off ? rlfs_iext_search(&ip->iext, off - 1) : -1;
}

/* One collapse step: 0 (nothing left to move), -EAGAIN (w advanced) or
 * -errno. */
static int collapse_step(struct rlfs_trans *tp, struct rlfs_inode *ip, struct sxi_work *w)
{
	if (w->flags & RLFS_SXI_PUNCHING) {
		bool done;
		int err = rlfs_bmap_unmap(tp, ip, w->startoff, w->shift, RLFS_BUNMAP_DEFER,
					  RLFS_SXI_PUNCH_EXTENTS, &done);
		if (err)
			return err;
		if (done) {
			w->flags &= ~RLFS_SXI_PUNCHING;
			w->cursor = w->startoff + w->shift;
		}
		return -EAGAIN;
	}
	for (unsigned n = 0; n < RLFS_SXI_STEP_EXTENTS; n++) {
		struct rlfs_irec got;
		bool found;
		rlfs_bmap_lookup(ip, w->cursor, &got, &found);
		if (got.blockcount == 0)
			return 0;
		if (found && got.startoff != w->cursor)
			return rlfs_corrupt(tp->mp, got.startblock, "bmap",
					    "collapse of inode %llu: a mapping spans its cursor %llu",
					    (unsigned long long)ip->ino,
					    (unsigned long long)w->cursor);
		int err = move_mapping(tp, ip, &got, got.startoff - w->shift);
		if (err)
			return err;
		w->cursor = irec_end(&got);
	}
	struct rlfs_irec got;
	bool found;
	rlfs_bmap_lookup(ip, w->cursor, &got, &found);
	return got.blockcount ? -EAGAIN : 0;
}

/* One insert step, as collapse_step. */
static int insert_step(struct rlfs_trans *tp, struct rlfs_inode *ip, struct sxi_work *w)
{
	for (unsigned n = 0; n < RLFS_SXI_STEP_EXTENTS; n++) {
		int64_t i = last_before(ip, w->cursor);
		if (i < 0 || irec_end(rlfs_iext_at(&ip->iext, i)) <= w->startoff)
			return 0;
		struct rlfs_irec e = *rlfs_iext_at(&ip->iext, i);
		if (irec_end(&e) > w->cursor)
			return rlfs_corrupt(tp->mp, e.startblock, "bmap",
					    "insert of inode %llu: a mapping spans its cursor %llu",
					    (unsigned long long)ip->ino,
					    (unsigned long long)w->cursor);
		uint64_t p = RLFS_MAX(e.startoff, w->startoff);
		struct rlfs_irec part = e;
		part.startoff = p;
		part.startblock = e.startblock + (p - e.startoff);
		part.blockcount = (uint32_t)(irec_end(&e) - p);
		int err = move_mapping(tp, ip, &part, p + w->shift);
		if (err)
			return err;
		w->cursor = p;
		if (p == w->startoff)
			return 0;
	}
	int64_t i = last_before(ip, w->cursor);
	return (i >= 0 && irec_end(rlfs_iext_at(&ip->iext, i)) > w->startoff) ? -EAGAIN : 0;
}

static int sxi_finish(struct rlfs_trans *tp, struct rlfs_defer_item *item)
{
	struct sxi_work *w = (struct sxi_work *)item;
	struct rlfs_inode *ip;
	int err = sxi_inode(tp, w, &ip);
	if (err)
		return err;
	if ((w->flags & RLFS_SXI_OP_MASK) == RLFS_SXI_COLLAPSE)
		err = collapse_step(tp, ip, w);
	else
		err = insert_step(tp, ip, w);
	if (err && err != -EAGAIN)
		return err;
	if (err == 0) {
		/* the last step: the new size and times commit with it */
		struct timespec now;
		rlfs_now(&now);
		ip->size = w->new_size;
		ip->mtime = ip->ctime = now;
	}
	rlfs_trans_log_inode(tp, ip);
	return err;
}

static int sxi_recover(struct rlfs_trans *tp, const void *buf, size_t bytes)
{
	const struct rlfs_sxi_item *s = buf;
	struct rlfs_mount *mp = tp->mp;
	struct sxi_work w = {
		.ino = rlfs_get64(s->ino),
		.startoff = rlfs_get64(s->startoff),
		.shift = rlfs_get64(s->shift),
		.cursor = rlfs_get64(s->cursor),
		.new_size = rlfs_get64(s->new_size),
		.flags = rlfs_get32(s->flags),
	};
	unsigned op = w.flags & RLFS_SXI_OP_MASK;
	uint64_t maxoff = max_fileoff(mp);
	bool ok = bytes == sizeof(*s) && rlfs_get32(s->pad) == 0 && w.ino != 0 &&
		  (op == RLFS_SXI_COLLAPSE || op == RLFS_SXI_INSERT) &&
		  !(w.flags & ~(RLFS_SXI_OP_MASK | RLFS_SXI_PUNCHING)) &&
		  !(op == RLFS_SXI_INSERT && (w.flags & RLFS_SXI_PUNCHING)) &&
		  w.shift != 0 && w.shift <= maxoff && w.startoff <= maxoff - w.shift &&
		  w.cursor <= maxoff && w.new_size <= mp->maxbytes &&
		  (op == RLFS_SXI_INSERT || (w.flags & RLFS_SXI_PUNCHING) ||
		   w.cursor >= w.startoff + w.shift) &&
		  (op == RLFS_SXI_COLLAPSE || w.cursor >= w.startoff);
	if (!ok)
		return rlfs_corrupt(mp, rlfs_ino_to_fsb(mp, w.ino), "log",
				    "SXI item (inode %llu, file block %llu, shift %llu, cursor %llu, "
				    "size %llu, flags 0x%x) is not valid",
				    (unsigned long long)w.ino, (unsigned long long)w.startoff,
				    (unsigned long long)w.shift, (unsigned long long)w.cursor,
				    (unsigned long long)w.new_size, w.flags);
	struct rlfs_inode *ip;
	int err = sxi_inode(tp, &w, &ip);   /* a regular file in use */
	if (err)
		return err;
	return sxi_add(tp, &w);
}

const struct rlfs_defer_type rlfs_sxi_type = {
	.name = "shift extents",
	.intent_code = RLFS_LOG_SXI,
	.done_code = RLFS_LOG_SXD,
	.max_items = 1,
	.item_bytes = sizeof(struct rlfs_sxi_item),
	.encode = sxi_encode,
	.finish_item = sxi_finish,
	.cancel_item = sxi_free,
	.recover_item = sxi_recover,
};

int rlfs_shift_range(struct rlfs_inode *ip, bool collapse, uint64_t startoff, uint64_t shift,
		     uint64_t new_size_bytes)
{
	struct rlfs_mount *mp = ip->mp;
	if (shift == 0 || !ip->ext_loaded)
		return -EINVAL;
	struct sxi_work w = {
		.ino = ip->ino,
		.startoff = startoff,
		.shift = shift,
		.new_size = new_size_bytes,
		.flags = collapse ? (RLFS_SXI_COLLAPSE | RLFS_SXI_PUNCHING) : RLFS_SXI_INSERT,
	};
	if (collapse) {
		w.cursor = startoff;
	} else {
		/* the end of the last mapping: nothing may move past the
		 * largest file offset */
		uint32_t n = rlfs_iext_count(&ip->iext);
		uint64_t last = n ? irec_end(rlfs_iext_at(&ip->iext, n - 1)) : startoff;
		if (shift > max_fileoff(mp) || last > max_fileoff(mp) - shift)
			return -EFBIG;
		w.cursor = RLFS_MAX(last, startoff);
	}
	/* staged CoW blocks are at file offsets that are about to change */
	int err = rlfs_cowfork_cancel(ip, startoff, UINT64_MAX);
	if (err)
		return err;
	struct rlfs_trans *tp;
	err = rlfs_trans_alloc(mp, &mp->resv.tr_punch,
			       rlfs_bmap_res(ip, 2 * RLFS_SXI_PUNCH_EXTENTS + 4), RLFS_TRANS_RESERVE,
			       &tp);
	if (err)
		return err;
	err = rlfs_defer_hold_inode(tp, ip);
	if (!err)
		err = sxi_add(tp, &w);
	if (err) {
		rlfs_trans_cancel(tp);
		return err;
	}
	return rlfs_trans_commit(tp);
}

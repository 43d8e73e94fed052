/*
 * cowfork.c: the CoW fork -- staged copy-on-write blocks per inode,
 * their remap after the data write, their cancel and garbage collection,
 * and the mount's recovery of staging extents a crash left (cowfork.h
 * has the design).
 *
 * The in-core fork is a sorted array of extents, as the data fork's
 * (inode.h); the on-disk trace of a staged extent is a refcount record in
 * the CoW domain and an rmap record of owner RLFS_RMAP_OWN_COW, both
 * written in the transaction that allocates it and dropped in the one
 * that remaps or frees it.  Every transaction here works on at most
 * RLFS_TX_COWFORK_EXTENTS staged pieces (tr_cowfork).
 *
 * Own code; model: xfs_reflink.c, xfs_icache.c (cowblocks).
 */
#include "cowfork.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rlfs.h"
#include "reflinkfs/fs.h"
#include "alloc.h"
#include "bmap.h"
#include "defer.h"
#include "refcount.h"
#include "rmap.h"

#define PIECES RLFS_TX_COWFORK_EXTENTS

static inline uint64_t irec_end(const struct rlfs_irec *r)
{
	return r->startoff + r->blockcount;
}

/* ------------------------------------------------------------------ */
/* In-core fork                                                        */
/* ------------------------------------------------------------------ */

/* Index of the first extent ending after fb (== the count if none). */
static uint32_t ext_search(const struct rlfs_cowfork *f, uint64_t fb)
{
	int64_t i = rlfs_iext_search(&f->iext, fb);
	if (i >= 0 && irec_end(rlfs_iext_at(&f->iext, (uint32_t)i)) > fb)
		return (uint32_t)i;
	return (uint32_t)(i + 1);
}

void rlfs_cowfork_lookup(struct rlfs_inode *ip, uint64_t fb, struct rlfs_irec *got,
			 bool *found)
{
	struct rlfs_cowfork *f = ip->cow;
	*found = false;
	memset(got, 0, sizeof(*got));
	if (!f)
		return;
	uint32_t i = ext_search(f, fb);
	if (i == rlfs_iext_count(&f->iext))
		return;
	*got = *rlfs_iext_at(&f->iext, i);
	*found = got->startoff <= fb;
}

/* Keep the mount's list and count in step with f (under cow_lock). */
static void fork_account(struct rlfs_mount *mp, struct rlfs_cowfork *f, int64_t delta)
{
	pthread_mutex_lock(&mp->cow_lock);
	mp->cow_staged_blocks += (uint64_t)delta;
	if (rlfs_iext_count(&f->iext) && !f->listed) {
		f->lprev = NULL;
		f->lnext = mp->cow_forks;
		if (mp->cow_forks)
			mp->cow_forks->lprev = f;
		mp->cow_forks = f;
		f->listed = true;
		clock_gettime(CLOCK_MONOTONIC, &f->since);
	} else if (!rlfs_iext_count(&f->iext) && f->listed) {
		if (f->lprev)
			f->lprev->lnext = f->lnext;
		else
			mp->cow_forks = f->lnext;
		if (f->lnext)
			f->lnext->lprev = f->lprev;
		f->lprev = f->lnext = NULL;
		f->listed = false;
	}
	pthread_mutex_unlock(&mp->cow_lock);
}

/* Room in ip's fork (made if missing) for `more` new records, taken
 * before a commit so that the in-core update after it cannot fail: an
 * insert takes one, a remove inside one extent splits it (one).  Kept
 * until fork_trim. */
static int fork_prepare(struct rlfs_inode *ip, uint32_t more)
{
	if (!ip->cow) {
		struct rlfs_cowfork *f = calloc(1, sizeof(*f));
		if (!f)
			return -ENOMEM;
		f->ip = ip;
		ip->cow = f;
	}
	return rlfs_iext_reserve(&ip->cow->iext, more);
}

/* After the in-core updates of an operation: give back the room
 * fork_prepare kept and removals left. */
static void fork_trim(struct rlfs_inode *ip)
{
	if (ip->cow)
		rlfs_iext_trim(&ip->cow->iext);
}

/* Add a staged extent (not overlapping any), merging with neighbours
 * contiguous in the file and on the device. */
static int fork_insert(struct rlfs_inode *ip, const struct rlfs_irec *r)
{
	int err = fork_prepare(ip, 1);
	if (err)
		return err;
	struct rlfs_cowfork *f = ip->cow;
	uint32_t i = ext_search(f, r->startoff);
	struct rlfs_irec *prev = i ? rlfs_iext_at(&f->iext, i - 1) : NULL;
	struct rlfs_irec *nx = i < rlfs_iext_count(&f->iext) ? rlfs_iext_at(&f->iext, i) : NULL;
	bool mprev = prev && irec_end(prev) == r->startoff &&
		     prev->startblock + prev->blockcount == r->startblock &&
		     (uint64_t)prev->blockcount + r->blockcount <= RLFS_MAX_EXTLEN;
	bool mnext = nx && irec_end(r) == nx->startoff &&
		     r->startblock + r->blockcount == nx->startblock &&
		     (uint64_t)nx->blockcount + r->blockcount +
			     (mprev ? prev->blockcount : 0) <= RLFS_MAX_EXTLEN;
	if (mprev && mnext) {
		prev->blockcount += r->blockcount + nx->blockcount;
		rlfs_iext_remove(&f->iext, i);
	} else if (mprev) {
		prev->blockcount += r->blockcount;
	} else if (mnext) {
		nx->startoff = r->startoff;
		nx->startblock = r->startblock;
		nx->blockcount += r->blockcount;
	} else {
		struct rlfs_irec n = *r;
		n.state = 0;
		err = rlfs_iext_insert(&f->iext, i, &n);
		if (err)
			return err;
	}
	f->staged_blocks += r->blockcount;
	fork_account(ip->mp, f, (int64_t)r->blockcount);
	return 0;
}

/* Take [fb0, fb1) out of the fork (splitting extents at the edges).
 * -ENOMEM only when a split needs room (nothing changed then). */
static int fork_remove(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1)
{
	struct rlfs_cowfork *f = ip->cow;
	if (!f || fb0 >= fb1)
		return 0;
	uint64_t removed = 0;
	uint32_t i = ext_search(f, fb0);
	uint32_t cnt = rlfs_iext_count(&f->iext);
	const struct rlfs_irec *first = i < cnt ? rlfs_iext_at(&f->iext, i) : NULL;
	if (first && first->startoff < fb0 && irec_end(first) > fb1) {
		/* inside one extent: split in two */
		int err = rlfs_iext_reserve(&f->iext, 1);
		if (err)
			return err;
		struct rlfs_irec *r = rlfs_iext_at(&f->iext, i);  /* first, writable */
		struct rlfs_irec tail = {
			.startoff = fb1, .startblock = r->startblock + (fb1 - r->startoff),
			.blockcount = (uint32_t)(irec_end(r) - fb1),
		};
		removed = fb1 - fb0;
		r->blockcount = (uint32_t)(fb0 - r->startoff);
		err = rlfs_iext_insert(&f->iext, i + 1, &tail);  /* reserved: cannot fail */
		if (err)
			return err;
	} else {
		uint32_t keep_from = i, del_to = i;
		if (first && first->startoff < fb0) {
			/* trim the tail of the first */
			struct rlfs_irec *r = rlfs_iext_at(&f->iext, i);
			removed += irec_end(r) - fb0;
			r->blockcount = (uint32_t)(fb0 - r->startoff);
			keep_from = del_to = i + 1;
		}
		while (del_to < cnt && irec_end(rlfs_iext_at(&f->iext, del_to)) <= fb1) {
			removed += rlfs_iext_at(&f->iext, del_to)->blockcount;
			del_to++;
		}
		if (del_to < cnt && rlfs_iext_at(&f->iext, del_to)->startoff < fb1) {
			/* trim the head of the last */
			struct rlfs_irec *r = rlfs_iext_at(&f->iext, del_to);
			uint64_t cut = fb1 - r->startoff;
			removed += cut;
			r->startoff = fb1;
			r->startblock += cut;
			r->blockcount -= (uint32_t)cut;
		}
		for (uint32_t k = del_to; k-- > keep_from;)
			rlfs_iext_remove(&f->iext, k);
	}
	f->staged_blocks -= removed;
	fork_account(ip->mp, f, -(int64_t)removed);
	return 0;
}

void rlfs_cowfork_destroy(struct rlfs_inode *ip)
{
	struct rlfs_cowfork *f = ip->cow;
	if (!f)
		return;
	uint64_t n = f->staged_blocks;
	rlfs_iext_destroy(&f->iext);
	f->staged_blocks = 0;
	fork_account(ip->mp, f, -(int64_t)n);
	free(f);
	ip->cow = NULL;
}

uint64_t rlfs_cowfork_inode_blocks(const struct rlfs_inode *ip)
{
	return ip->cow ? ip->cow->staged_blocks : 0;
}

uint64_t rlfs_cowfork_staged_blocks(struct rlfs_mount *mp)
{
	pthread_mutex_lock(&mp->cow_lock);
	uint64_t n = mp->cow_staged_blocks;
	pthread_mutex_unlock(&mp->cow_lock);
	return n;
}

/* End of the run the fork covers from fb on, at most lim (fb: none). */
static uint64_t covered_run(struct rlfs_inode *ip, uint64_t fb, uint64_t lim)
{
	uint64_t pos = fb;
	while (pos < lim) {
		struct rlfs_irec got;
		bool found;
		rlfs_cowfork_lookup(ip, pos, &got, &found);
		if (!found)
			break;
		pos = irec_end(&got);
	}
	return RLFS_MIN(pos, lim);
}

uint64_t rlfs_cowfork_dev_offset(struct rlfs_inode *ip, uint64_t pos, uint64_t *contig_bytes)
{
	struct rlfs_mount *mp = ip->mp;
	uint64_t fb = pos >> mp->blocklog, mask = (uint64_t)mp->blocksize - 1;
	struct rlfs_irec got;
	bool found;
	rlfs_cowfork_lookup(ip, fb, &got, &found);
	if (!found) {
		*contig_bytes = 0;
		return UINT64_MAX;
	}
	*contig_bytes = ((irec_end(&got) - fb) << mp->blocklog) - (pos & mask);
	return ((got.startblock + (fb - got.startoff)) << mp->blocklog) + (pos & mask);
}

/* ------------------------------------------------------------------ */
/* Stage                                                               */
/* ------------------------------------------------------------------ */

/* Record [fsbno, +len) as staging (refcount CoW domain, rmap OWN_COW) or
 * drop that record. */
static int staging_record(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len, bool add)
{
	int err = add ? rlfs_refcount_cow_alloc(tp, fsbno, len)
		      : rlfs_refcount_cow_free(tp, fsbno, len);
	if (!err)
		err = rlfs_rmap_update(tp, add ? RLFS_RUI_MAP : RLFS_RUI_UNMAP, fsbno, len,
				       RLFS_RMAP_OWN_COW, 0);
	return err;
}

/* Blocks for one CoW-fork transaction beyond the data: the refcount and
 * free-space trees for PIECES extents (an estimate: the transaction layer
 * charges an overrun to free space). */
static uint32_t fork_tx_res(struct rlfs_mount *mp)
{
	return rlfs_refcount_res(mp, PIECES) + rlfs_alloc_tree_res(mp, PIECES);
}

/* Where to put a new staged extent for file block fb: right after the
 * staged extent ending at fb, else near the data fork's block at fb (or
 * the next mapped one), else near the inode. */
static void stage_hint(struct rlfs_inode *ip, uint64_t fb, uint64_t *hint, bool *exact)
{
	struct rlfs_mount *mp = ip->mp;
	struct rlfs_cowfork *f = ip->cow;
	*exact = false;
	if (f && fb) {
		struct rlfs_irec got;
		bool found;
		rlfs_cowfork_lookup(ip, fb - 1, &got, &found);
		if (found && irec_end(&got) == fb) {
			*hint = got.startblock + got.blockcount;
			*exact = *hint < mp->dblocks;
			if (*exact)
				return;
		}
	}
	struct rlfs_irec got;
	bool found;
	if (fb) {
		/* right after what the data fork maps at fb - 1: when that
		 * is a block remapped from the region before, the two
		 * regions' blocks join into one extent as they are written */
		rlfs_bmap_lookup(ip, fb - 1, &got, &found);
		if (found && !(got.state & RLFS_EXT_UNWRITTEN)) {
			*hint = got.startblock + (fb - got.startoff);
			*exact = *hint < mp->dblocks;
			if (*exact)
				return;
		}
	}
	rlfs_bmap_lookup(ip, fb, &got, &found);
	if (found)
		*hint = got.startblock + (fb - got.startoff);
	else if (got.blockcount)
		*hint = got.startblock;
	else
		*hint = rlfs_ino_to_fsb(mp, ip->ino);
}

/*
 * One transaction staging the gaps of the fork inside [a0, a1), in file
 * order, at most PIECES new extents.  *progress: blocks staged.  0 (maybe
 * with less than the whole region staged: free space ran out after some
 * progress, or the bound), -ENOSPC (nothing could be staged), -errno.
 */
static int stage_region(struct rlfs_inode *ip, uint64_t a0, uint64_t a1, uint64_t *progress)
{
	struct rlfs_mount *mp = ip->mp;
	struct rlfs_irec got, added[PIECES];
	uint32_t nadded = 0;
	uint64_t want = 0;
	bool found;

	*progress = 0;
	/* blocks to reserve: the gaps, as far as PIECES extents can go */
	for (uint64_t pos = a0; pos < a1;) {
		rlfs_cowfork_lookup(ip, pos, &got, &found);
		if (found) {
			pos = irec_end(&got);
			continue;
		}
		uint64_t ge = got.blockcount ? RLFS_MIN(got.startoff, a1) : a1;
		want += ge - pos;
		pos = ge;
	}
	if (want == 0)
		return 0;
	want = RLFS_MIN(want, (uint64_t)PIECES * RLFS_MAX_EXTLEN);
	struct rlfs_trans *tp;
	int err = rlfs_trans_alloc(mp, &mp->resv.tr_cowfork, (uint32_t)want + fork_tx_res(mp), 0,
				   &tp);
	if (err)
		return err;
	uint64_t pos = a0;
	while (!err && pos < a1 && nadded < PIECES) {
		rlfs_cowfork_lookup(ip, pos, &got, &found);
		if (found) {
			pos = irec_end(&got);
			continue;
		}
		/* the gap [pos, ge) and the extents staged in this
		 * transaction (not in the fork yet) that follow pos */
		uint64_t ge = got.blockcount ? RLFS_MIN(got.startoff, a1) : a1;
		uint64_t hint;
		bool exact;
		if (nadded && irec_end(&added[nadded - 1]) == pos) {
			hint = added[nadded - 1].startblock + added[nadded - 1].blockcount;
			exact = hint < mp->dblocks;
		} else {
			stage_hint(ip, pos, &hint, &exact);
		}
		uint32_t maxlen = (uint32_t)RLFS_MIN(ge - pos, (uint64_t)RLFS_MAX_EXTLEN);
		struct rlfs_alloc_arg args = {
			.tp = tp, .minlen = 1, .maxlen = maxlen, .alignment = 1,
		};
		bool ok = false;
		if (exact) {
			/* only the whole gap: a short piece there would cut
			 * the region in two */
			args.type = RLFS_ALLOC_EXACT;
			args.hint_fsbno = hint;
			args.minlen = maxlen;
			err = rlfs_alloc_extent(&args);
			if (err == -ENOSPC)
				err = 0;
			ok = !err && args.fsbno;
		}
		if (!err && !ok) {
			args.type = RLFS_ALLOC_NEAR;
			args.hint_fsbno = hint;
			args.minlen = 1;
			err = rlfs_alloc_extent(&args);
			ok = !err && args.fsbno;
			if (!err && !ok)
				err = -ENOSPC;
		}
		if (err)
			break;
		if (args.len == 0 || args.len > maxlen || args.fsbno + args.len > mp->dblocks) {
			err = rlfs_corrupt(mp, args.fsbno, "alloc",
					   "ino %llu: allocator gave %u blocks at fsbno %llu for %u "
					   "wanted", (unsigned long long)ip->ino, args.len,
					   (unsigned long long)args.fsbno, maxlen);
			break;
		}
		err = staging_record(tp, args.fsbno, args.len, true);
		if (err)
			break;
		added[nadded++] = (struct rlfs_irec){
			.startoff = pos, .startblock = args.fsbno, .blockcount = args.len,
		};
		pos += args.len;
	}
	if (err == -ENOSPC && nadded)
		err = 0;  /* keep what fitted */
	if (!err)
		err = fork_prepare(ip, nadded);
	if (err) {
		rlfs_trans_cancel(tp);
		return err;
	}
	err = rlfs_trans_commit(tp);
	if (err)
		return err;  /* the staging records (if any reached the log)
			      * are the next mount's to free */
	for (uint32_t i = 0; i < nadded; i++) {
		int e = fork_insert(ip, &added[i]);
		if (e) {
			/* out of memory for the in-core record: give the rest
			 * back at once (the on-disk records are recovered) */
			rlfs_warn("ino %llu: CoW fork: %s; staged blocks left for the next mount "
				  "to free", (unsigned long long)ip->ino, strerror(-e));
			fork_trim(ip);
			return e;
		}
		*progress += added[i].blockcount;
	}
	fork_trim(ip);
	return 0;
}

/* Stage until [fb0, fb1) is covered inside [a0, a1) or no progress. */
static int stage_loop(struct rlfs_inode *ip, uint64_t a0, uint64_t a1, uint64_t fb0,
		      uint64_t fb1)
{
	int err = 0;
	while (covered_run(ip, fb0, fb1) < fb1) {
		uint64_t progress;
		err = stage_region(ip, a0, a1, &progress);
		if (err || progress == 0)
			break;
	}
	return err;
}

/* Short of space for [fb0, fb1): give back the other files' staged
 * blocks (those not busy) and ip's own outside the range.  True if any
 * were freed. */
static bool gc_for(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1)
{
	uint64_t own = rlfs_cowfork_inode_blocks(ip);
	int64_t n = rlfs_cowfork_gc(ip->mp, 0, ip, false);
	if (rlfs_cowfork_cancel(ip, 0, fb0) == 0 && rlfs_cowfork_cancel(ip, fb1, UINT64_MAX) == 0)
		n = RLFS_MAX(n, 0) + (int64_t)(own - rlfs_cowfork_inode_blocks(ip));
	return n > 0;
}

int rlfs_cowfork_stage(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1,
		       uint64_t *covered_end)
{
	struct rlfs_mount *mp = ip->mp;
	*covered_end = fb0;
	if (fb0 >= fb1)
		return -EINVAL;
	if (covered_run(ip, fb0, fb1) < fb1) {
		uint64_t hint = RLFS_MAX(rlfs_cowextsize_hint_blocks(ip), 1u);
		uint64_t a0 = fb0 - fb0 % hint;
		uint64_t a1 = RLFS_MIN((fb1 + hint - 1) / hint * hint,
				       RLFS_MAX(fb1, rlfs_b_to_fsb(mp, ip->size)));
		int err = stage_loop(ip, a0, a1, fb0, fb1);
		if (err == -ENOSPC || (!err && covered_run(ip, fb0, fb1) == fb0)) {
			/* the rounded region does not fit: the range alone,
			 * then again after the other files' reservations
			 * are given back (XFS: xfs_blockgc_free_space) */
			err = stage_loop(ip, fb0, fb1, fb0, fb1);
			if ((err == -ENOSPC || (!err && covered_run(ip, fb0, fb1) == fb0)) &&
			    gc_for(ip, fb0, fb1))
				err = stage_loop(ip, fb0, fb1, fb0, fb1);
		}
		if (err && err != -ENOSPC)
			return err;
	}
	*covered_end = covered_run(ip, fb0, fb1);
	return *covered_end > fb0 ? 0 : -ENOSPC;
}

/* ------------------------------------------------------------------ */
/* Remap                                                               */
/* ------------------------------------------------------------------ */

typedef void (*lookup_fn)(struct rlfs_inode *ip, uint64_t fb, struct rlfs_irec *got,
			  bool *found);

/* The next mapped piece of [*pos, end) in the fork lookup reads (the data
 * fork's or the CoW fork's): *piece clipped to the range, *pos moved past
 * it; false when none is left. */
static bool next_piece(lookup_fn lookup, struct rlfs_inode *ip, uint64_t *pos, uint64_t end,
		       struct rlfs_irec *piece)
{
	while (*pos < end) {
		struct rlfs_irec got;
		bool found;
		lookup(ip, *pos, &got, &found);
		if (!found) {
			if (!got.blockcount || got.startoff >= end)
				return false;
			*pos = got.startoff;
			continue;
		}
		uint64_t pe = RLFS_MIN(irec_end(&got), end);
		*piece = (struct rlfs_irec){
			.startoff = *pos, .startblock = got.startblock + (*pos - got.startoff),
			.blockcount = (uint32_t)(pe - *pos), .state = got.state,
		};
		*pos = pe;
		return true;
	}
	return false;
}

void rlfs_cowfork_remap_pieces(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1,
			       uint32_t *staged, uint32_t *mapped)
{
	struct rlfs_irec r;
	uint64_t pos = fb0;
	*staged = *mapped = 0;
	while (next_piece(rlfs_cowfork_lookup, ip, &pos, fb1, &r))
		(*staged)++;
	pos = fb0;
	while (next_piece(rlfs_bmap_lookup, ip, &pos, fb1, &r))
		(*mapped)++;
}

int rlfs_cowfork_remap(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t fb0,
		       uint64_t fb1)
{
	struct rlfs_mount *mp = ip->mp;
	struct rlfs_irec r;
	uint64_t pos;
	int err = 0;

	if (covered_run(ip, fb0, fb1) < fb1)
		return rlfs_corrupt(mp, rlfs_ino_to_fsb(mp, ip->ino), "cow",
				    "ino %llu: remap of file blocks [%llu, %llu) not staged",
				    (unsigned long long)ip->ino, (unsigned long long)fb0,
				    (unsigned long long)fb1);
	/* rlfs_cowfork_remapped may split an extent: room first */
	err = fork_prepare(ip, 1);
	if (err)
		return err;
	rlfs_trans_ijoin(tp, ip);
	/* the staged blocks stop being staging now */
	for (pos = fb0; !err && next_piece(rlfs_cowfork_lookup, ip, &pos, fb1, &r);)
		err = staging_record(tp, r.startblock, r.blockcount, false);
	/* the old mappings go (their blocks lose a reference) ... */
	for (pos = fb0; !err && next_piece(rlfs_bmap_lookup, ip, &pos, fb1, &r);)
		err = rlfs_bui_add(tp, RLFS_BUI_UNMAP, ip->ino, r.startoff, r.startblock,
				   r.blockcount);
	/* ... and the staged blocks take their place, written */
	for (pos = fb0; !err && next_piece(rlfs_cowfork_lookup, ip, &pos, fb1, &r);)
		err = rlfs_bui_add(tp, RLFS_BUI_MAP, ip->ino, r.startoff, r.startblock,
				   r.blockcount);
	if (!err)
		rlfs_trans_log_inode(tp, ip);
	return err;
}

void rlfs_cowfork_remapped(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1)
{
	if (fork_remove(ip, fb0, fb1))
		/* no memory to split the in-core extent: dropping the whole
		 * extents around the range would leak their blocks until the
		 * next mount; a remap of fewer blocks never needs a split of
		 * more than one extent, so this is one realloc failing */
		rlfs_warn("ino %llu: CoW fork: out of memory after a remap",
			  (unsigned long long)ip->ino);
	fork_trim(ip);
}

/* ------------------------------------------------------------------ */
/* Cancel, GC                                                          */
/* ------------------------------------------------------------------ */

int rlfs_cowfork_cancel(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1)
{
	struct rlfs_mount *mp = ip->mp;
	for (;;) {
		struct rlfs_irec piece[PIECES];
		uint32_t n = 0;
		uint64_t pos = fb0;
		while (n < PIECES && next_piece(rlfs_cowfork_lookup, ip, &pos, fb1, &piece[n]))
			n++;
		if (n == 0)
			return 0;
		struct rlfs_trans *tp;
		int err = fork_prepare(ip, 1);
		if (err)
			return err;
		err = rlfs_trans_alloc(mp, &mp->resv.tr_cowfork, fork_tx_res(mp),
				       RLFS_TRANS_RESERVE, &tp);
		if (err)
			return err;
		for (uint32_t i = 0; !err && i < n; i++) {
			err = staging_record(tp, piece[i].startblock, piece[i].blockcount, false);
			if (!err)
				err = rlfs_free_extent(tp, piece[i].startblock, piece[i].blockcount);
		}
		if (err) {
			rlfs_trans_cancel(tp);
			return err;
		}
		err = rlfs_trans_commit(tp);
		if (err)
			return err;
		for (uint32_t i = 0; i < n; i++) {
			if (fork_remove(ip, piece[i].startoff, irec_end(&piece[i]))) {
				fork_trim(ip);
				return -ENOMEM;
			}
		}
		fork_trim(ip);
		rlfs_trans_yield(mp);
	}
}

int64_t rlfs_cowfork_gc(struct rlfs_mount *mp, uint32_t min_age_s,
			const struct rlfs_inode *skip_ip, bool wait)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	struct rlfs_inode **v = NULL;
	size_t nv = 0, cap = 0;
	int64_t freed = 0;
	int first = 0;

	pthread_mutex_lock(&mp->cow_lock);
	for (struct rlfs_cowfork *f = mp->cow_forks; f; f = f->lnext) {
		if (f->ip == skip_ip || now.tv_sec - f->since.tv_sec < (time_t)min_age_s)
			continue;
		if (nv == cap) {
			size_t nc = cap ? 2 * cap : 16;
			struct rlfs_inode **n = realloc(v, nc * sizeof(*n));
			if (!n)
				break;
			v = n;
			cap = nc;
		}
		/* cow_lock before icache_lock; an inode on its way out is
		 * its own freeing's to cancel */
		if (rlfs_igrab(f->ip))
			v[nv++] = f->ip;
	}
	pthread_mutex_unlock(&mp->cow_lock);
	for (size_t i = 0; i < nv; i++) {
		struct rlfs_inode *ip = v[i];
		if (wait)
			pthread_rwlock_wrlock(&ip->iolock);
		else if (pthread_rwlock_trywrlock(&ip->iolock) != 0) {
			rlfs_irele(ip);
			continue;
		}
		uint64_t before = rlfs_cowfork_inode_blocks(ip);
		int err = rlfs_cowfork_cancel(ip, 0, UINT64_MAX);
		freed += (int64_t)(before - rlfs_cowfork_inode_blocks(ip));
		pthread_rwlock_unlock(&ip->iolock);
		rlfs_irele(ip);
		if (err && !first)
			first = err;
	}
	free(v);
	return first ? first : freed;
}

/* ------------------------------------------------------------------ */
/* Mount: staging extents a crash left                                 */
/* ------------------------------------------------------------------ */

int rlfs_cowfork_recover(struct rlfs_mount *mp, uint64_t *nfreed_blocks)
{
	uint64_t total = 0;
	int err = 0;
	if (nfreed_blocks)
		*nfreed_blocks = 0;
	if (!rlfs_has_reflink(mp))
		return 0;
	if (rlfs_cowfork_staged_blocks(mp))
		return -EBUSY;  /* in-core forks own staging records */
	for (uint32_t agno = 0; !err && agno < mp->agcount; agno++) {
		bool more = true;
		while (!err && more) {
			struct rlfs_trans *tp;
			err = rlfs_trans_alloc(mp, &mp->resv.tr_cowfork, fork_tx_res(mp),
					       RLFS_TRANS_RESERVE, &tp);
			if (err)
				break;
			uint32_t n = 0, from = 0;
			more = false;
			while (!err && n < PIECES) {
				uint32_t agbno, len;
				bool found;
				err = rlfs_refcount_cow_next(tp, agno, from, &agbno, &len, &found);
				if (err || !found)
					break;
				uint64_t fsbno = rlfs_agb_to_fsb(mp, agno, agbno);
				err = staging_record(tp, fsbno, len, false);
				if (!err)
					err = rlfs_free_extent(tp, fsbno, len);
				total += len;
				from = agbno + len;
				n++;
			}
			more = !err && n == PIECES;
			if (err) {
				rlfs_trans_cancel(tp);
				break;
			}
			err = rlfs_trans_commit(tp);
		}
	}
	if (nfreed_blocks)
		*nfreed_blocks = total;
	return err;
}

/* ------------------------------------------------------------------ */
/* Public entry points (reflinkfs/fs.h)                                */
/* ------------------------------------------------------------------ */

int rlfs_file_opened(struct rlfs_mount *mp, uint64_t ino)
{
	struct rlfs_inode *ip;
	int err = rlfs_iget(mp, ino, &ip);
	if (err)
		return err;
	__atomic_add_fetch(&ip->nopen, 1, __ATOMIC_RELAXED);
	rlfs_irele(ip);
	return 0;
}

void rlfs_file_released(struct rlfs_mount *mp, uint64_t ino)
{
	struct rlfs_inode *ip;
	if (rlfs_iget(mp, ino, &ip))
		return;
	uint32_t n = __atomic_load_n(&ip->nopen, __ATOMIC_RELAXED);
	while (n && !__atomic_compare_exchange_n(&ip->nopen, &n, n - 1, false, __ATOMIC_RELAXED,
						 __ATOMIC_RELAXED))
		;
	if (n == 1 && ip->cow && !rlfs_mount_is_rdonly(mp)) {
		/* the last close: what no write used goes back (as the
		 * XFS's release trims post-EOF preallocation) */
		pthread_rwlock_wrlock(&ip->iolock);
		if (!__atomic_load_n(&ip->nopen, __ATOMIC_RELAXED))
			(void)rlfs_cowfork_cancel(ip, 0, UINT64_MAX);
		pthread_rwlock_unlock(&ip->iolock);
	}
	rlfs_irele(ip);
}

int64_t rlfs_cow_gc(struct rlfs_mount *mp, uint32_t min_age_s)
{
	if (rlfs_mount_is_rdonly(mp))
		return 0;
	return rlfs_cowfork_gc(mp, min_age_s, NULL, false);
}

/*
 * reflink.c: clone range, FIEMAP-like extent listing and the
 * copy-on-write helpers (see reflink.h and reflinkfs/fs.h).
 *
 * Clone range (rlfs_clone_range) follows the kernel's remap_file_range
 * (fs/remap_range.c: remap_verify_area, generic_remap_checks,
 * generic_remap_check_len, __generic_remap_file_range_prep) for the
 * argument rules, and xfs_reflink_remap_blocks for the work, with one
 * difference: XFS rolls a transaction per extent, we batch many source
 * extents per transaction (CLONE_BATCH pieces under one reservation) and
 * fall back to smaller batches on -ENOSPC.  A "piece" is the intersection
 * of one source extent (or hole) with one destination extent (or hole), so
 * each piece unmaps at most one destination extent and maps at most one
 * source extent: its cost is bounded.  Each transaction is atomic (a
 * cancel restores buffers and in-core inodes), so a failure leaves every
 * destination block with either its old or its new contents.  A caller's
 * struct rlfs_cancel is polled between pieces (every CLONE_POLL of them)
 * and between transactions; a stop keeps what is committed and returns
 * it, as XFS stops at a fatal signal.  The source's iolock is taken
 * shared (lock_clone).
 *
 * Own code; model: xfs_reflink.c, fs/remap_range.c.
 */
#include "reflink.h"

#include <stdlib.h>
#include <string.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/ioctl.h"
#include "alloc.h"
#include "bmap.h"
#include "defer.h"
#include "dev.h"
#include "log.h"
#include "refcount.h"
#include "busy.h"

#define CLONE_BATCH RLFS_TX_CLONE_PIECES /* most pieces planned per clone transaction (trans_resv.h) */
#define CLONE_POLL 64u           /* pieces between two cancel polls */
#define CLONE_DEDUPE (1u << 31)  /* clone_blocks flag: a dedupe (times stay) */
#define DEDUPE_CHUNK (256u << 10) /* bytes compared per read of each file */
#define UNSHARE_CHUNK RLFS_TX_UNSHARE_BLOCKS /* blocks unshared per transaction */
#define COPY_BUF_BYTES (1u << 20)

static inline uint64_t irec_end(const struct rlfs_irec *r)
{
	return r->startoff + r->blockcount;
}

/* ------------------------------------------------------------------ */
/* Reservations                                                        */
/* ------------------------------------------------------------------ */

/*
 * Realistic blocks for nextents refcount adjustments plus frees of up to
 * nextents extents: tree leaves split after half a leaf of new records,
 * each split may climb every level; AGFL refills.  Like rlfs_bmap_res an
 * estimate (the transaction layer charges an overrun to free space).
 */
static uint32_t refc_est(struct rlfs_mount *mp, uint32_t nextents)
{
	if (!rlfs_has_reflink(mp))
		return rlfs_alloc_tree_res(mp, RLFS_MIN(nextents, 8u));
	uint32_t lv = rlfs_refcount_maxlevels(mp) + 1;
	uint32_t half_refc = RLFS_MAX((mp->blocksize - 64) / 12 / 2, 1u);
	uint32_t half_free = RLFS_MAX((mp->blocksize - 64) / 8 / 2, 1u);
	uint64_t r = (uint64_t)(2 * (uint64_t)nextents / half_refc + 1) * lv +
		     (uint64_t)(2 * (uint64_t)nextents / half_free + 1) * 2 * lv +
		     rlfs_alloc_tree_res(mp, RLFS_MIN(nextents, 8u));
	return r > UINT32_MAX / 4 ? UINT32_MAX / 4 : (uint32_t)r;
}

uint32_t rlfs_cow_res(struct rlfs_inode *ip, uint32_t nextents)
{
	/* unmap splits + new extents in the bmbt, refcount -1 per old extent */
	return rlfs_bmap_res(ip, 2 * nextents + 4) + refc_est(ip->mp, nextents + 1);
}

static uint32_t clone_res(struct rlfs_inode *dst, uint32_t pieces)
{
	return rlfs_bmap_res(dst, 2 * pieces + 2) + refc_est(dst->mp, 2 * pieces);
}

/* ------------------------------------------------------------------ */
/* Sharing queries                                                     */
/* ------------------------------------------------------------------ */

/* The first unshare-busy run of [fsbno, fsbno+len) in fsbno terms (see
 * busy.h): *sfsb and *sl, or *sl 0 if none. */
static void find_unshare_busy(struct rlfs_mount *mp, uint64_t fsbno, uint32_t len,
			      uint64_t *sfsb, uint32_t *sl)
{
	*sl = 0;
	*sfsb = fsbno + len;
	if (!rlfs_busy_unshared_blocks(mp))
		return;
	while (len) {
		uint32_t agno = rlfs_fsb_to_agno(mp, fsbno), agbno = rlfs_fsb_to_agbno(mp, fsbno);
		uint32_t n = RLFS_MIN(len, rlfs_ag_blocks(mp, agno) - agbno);
		uint32_t ps, pe;
		if (rlfs_busy_next_unshared(mp, agno, agbno, agbno + n, &ps, &pe)) {
			*sfsb = rlfs_agb_to_fsb(mp, agno, ps);
			*sl = pe - ps;
			return;
		}
		fsbno += n;
		len -= n;
	}
}

/*
 * Blocks the write path must treat as shared: the first run of
 * [fsbno, fsbno+len) that the refcount btree says is shared or that is
 * unshare-busy (its last other owner dropped it in a transaction not yet
 * durable).  Same outputs as rlfs_refcount_find_shared.
 */
static int find_shared_for_write(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len,
				 uint64_t *sfsb, uint32_t *sl)
{
	struct rlfs_mount *mp = tp->mp;
	uint64_t end = fsbno + len;
	uint64_t rs, bs;
	uint32_t rl, bl;
	int error = rlfs_refcount_find_shared(tp, fsbno, len, &rs, &rl);
	if (error || !rlfs_busy_unshared_blocks(mp)) {
		/* the common case: nothing unshare-busy, the tree's answer */
		*sfsb = rs;
		*sl = rl;
		return error;
	}
	find_unshare_busy(mp, fsbno, len, &bs, &bl);
	if (!rl && !bl) {
		*sfsb = rs;
		*sl = 0;
		return 0;
	}
	uint64_t s = !rl ? bs : !bl ? rs : RLFS_MIN(rs, bs);
	uint64_t e = s;
	if (rl && rs == s)
		e = rs + rl;
	if (bl && bs == s && bs + bl > e)
		e = bs + bl;
	/* runs of one kind that continue where the other ends */
	for (bool grew = true; grew && e < end;) {
		grew = false;
		error = rlfs_refcount_find_shared(tp, e, (uint32_t)(end - e), &rs, &rl);
		if (error)
			return error;
		if (rl && rs == e) {
			e += rl;
			grew = true;
		}
		find_unshare_busy(mp, e, (uint32_t)(end - e), &bs, &bl);
		if (bl && bs == e) {
			e += bl;
			grew = true;
		}
	}
	*sfsb = s;
	*sl = (uint32_t)(e - s);
	return 0;
}

int rlfs_reflink_find_shared(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t fb,
			     uint64_t len, uint64_t *sfb, uint64_t *slen)
{
	struct rlfs_mount *mp = ip->mp;
	uint64_t end = len > UINT64_MAX - fb ? UINT64_MAX : fb + len;
	uint64_t pos = fb;

	*sfb = end;
	*slen = 0;
	if (!rlfs_has_reflink(mp) || !ip->ext_loaded)
		return 0;
	while (pos < end) {
		struct rlfs_irec got;
		bool found;
		rlfs_bmap_lookup(ip, pos, &got, &found);
		if (!found) {
			if (!got.blockcount || got.startoff >= end)
				return 0;
			pos = got.startoff;
			continue;
		}
		uint64_t e = RLFS_MIN(irec_end(&got), end);
		uint64_t fsb = got.startblock + (pos - got.startoff);
		uint64_t sfsb;
		uint32_t sl;
		int error = find_shared_for_write(tp, fsb, (uint32_t)(e - pos), &sfsb, &sl);
		if (error)
			return error;
		if (!sl) {
			pos = e;
			continue;
		}
		*sfb = pos + (sfsb - fsb);
		*slen = sl;
		/* extend over following extents shared from their start */
		uint64_t rend = *sfb + sl;
		while (rend == e && rend < end) {
			rlfs_bmap_lookup(ip, rend, &got, &found);
			if (!found)
				break;
			e = RLFS_MIN(irec_end(&got), end);
			fsb = got.startblock + (rend - got.startoff);
			error = find_shared_for_write(tp, fsb, (uint32_t)(e - rend), &sfsb,
							  &sl);
			if (error)
				return error;
			if (!sl || sfsb != fsb)
				break;
			rend += sl;
		}
		*slen = rend - *sfb;
		return 0;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Copy-on-write helpers                                               */
/* ------------------------------------------------------------------ */

void rlfs_cow_release(struct rlfs_cow *cow)
{
	free(cow->ext);
	memset(cow, 0, sizeof(*cow));
}

static int cow_add(struct rlfs_cow *cow, const struct rlfs_irec *r)
{
	if (cow->next == cow->cap) {
		uint32_t cap = cow->cap ? cow->cap * 2 : 4;
		struct rlfs_irec *n = realloc(cow->ext, (size_t)cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		cow->ext = n;
		cow->cap = cap;
	}
	cow->ext[cow->next++] = *r;
	return 0;
}

int rlfs_cow_prepare(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t off,
		     uint64_t len, struct rlfs_cow *cow)
{
	struct rlfs_mount *mp = ip->mp;
	uint64_t pos = off, end = off + len;
	uint64_t next_exact = 0;

	memset(cow, 0, sizeof(*cow));
	cow->off = off;
	cow->len = len;
	while (pos < end) {
		struct rlfs_irec got;
		bool found;
		rlfs_bmap_lookup(ip, pos, &got, &found);
		if (!found)
			return rlfs_corrupt(mp, rlfs_ino_to_fsb(mp, ip->ino), "cow",
					    "ino %llu: CoW of unmapped file block %llu",
					    (unsigned long long)ip->ino, (unsigned long long)pos);
		uint64_t old = got.startblock + (pos - got.startoff);
		uint32_t want = (uint32_t)RLFS_MIN(end - pos, (uint64_t)RLFS_MAX_EXTLEN);
		struct rlfs_alloc_arg args = {
			.tp = tp, .minlen = 1, .maxlen = want, .alignment = 1,
		};
		bool ok = false;
		int error;
		if (next_exact && next_exact < mp->dblocks) {
			/* continue the previous new extent */
			args.type = RLFS_ALLOC_EXACT;
			args.hint_fsbno = next_exact;
			error = rlfs_alloc_extent(&args);
			if (error && error != -ENOSPC)
				return error;
			ok = !error && args.fsbno;
		}
		if (!ok) {
			args.type = RLFS_ALLOC_NEAR;
			args.hint_fsbno = old;
			args.minlen = 1;
			error = rlfs_alloc_extent(&args);
			if (error)
				return error;
			if (!args.fsbno)
				return -ENOSPC;
		}
		if (args.len == 0 || args.len > want || args.fsbno + args.len > mp->dblocks)
			return rlfs_corrupt(mp, args.fsbno, "alloc",
					    "ino %llu: allocator gave %u blocks at fsbno %llu for %u wanted",
					    (unsigned long long)ip->ino, args.len,
					    (unsigned long long)args.fsbno, want);
		struct rlfs_irec r = {
			.startoff = pos, .startblock = args.fsbno, .blockcount = args.len,
		};
		error = cow_add(cow, &r);
		if (error) {
			/* not in the list: give it back now (the caller cancels anyway) */
			rlfs_free_extent_unused(tp, args.fsbno, args.len);
			return error;
		}
		next_exact = args.fsbno + args.len;
		pos += args.len;
		if (cow->next == RLFS_TX_COW_EXTENTS && pos < end) {
			/* bounded per transaction: a shorter range */
			cow->len = pos - off;
			break;
		}
	}
	return 0;
}

uint64_t rlfs_cow_dev_offset(const struct rlfs_cow *cow, const struct rlfs_mount *mp,
			     uint64_t pos, uint64_t *contig_bytes)
{
	uint64_t fb = pos >> mp->blocklog;
	uint64_t mask = (uint64_t)mp->blocksize - 1;
	uint32_t lo = 0, hi = cow->next;
	while (lo < hi) { /* last extent with startoff <= fb */
		uint32_t mid = lo + (hi - lo) / 2;
		if (cow->ext[mid].startoff <= fb)
			lo = mid + 1;
		else
			hi = mid;
	}
	const struct rlfs_irec *r = &cow->ext[lo ? lo - 1 : 0];
	*contig_bytes = ((irec_end(r) - fb) << mp->blocklog) - (pos & mask);
	return ((r->startblock + (fb - r->startoff)) << mp->blocklog) + (pos & mask);
}

int rlfs_cow_copy_old_bytes(struct rlfs_inode *ip, const struct rlfs_cow *cow, uint64_t pos,
			    uint64_t end)
{
	struct rlfs_mount *mp = ip->mp;
	uint8_t *buf = NULL;
	size_t bufsz = 0;
	int error = 0;

	if (pos >= end)
		return 0;
	if (!mp->dev->map) {    /* copies go through a bounce buffer */
		bufsz = (size_t)RLFS_MIN((uint64_t)COPY_BUF_BYTES, end - pos);
		buf = malloc(bufsz);
		if (!buf)
			return -ENOMEM;
	}
	while (pos < end && !error) {
		struct rlfs_irec got;
		bool found;
		uint64_t b = pos >> mp->blocklog;
		rlfs_bmap_lookup(ip, b, &got, &found);
		uint64_t contig;
		uint64_t dst = rlfs_cow_dev_offset(cow, mp, pos, &contig);
		uint64_t chunk = RLFS_MIN(end - pos, contig);
		if (buf)
			chunk = RLFS_MIN(chunk, (uint64_t)bufsz);
		if (found)
			chunk = RLFS_MIN(chunk, (irec_end(&got) << mp->blocklog) - pos);
		else if (got.blockcount)
			chunk = RLFS_MIN(chunk, (got.startoff << mp->blocklog) - pos);
		if (found && !(got.state & RLFS_EXT_UNWRITTEN)) {
			uint64_t src = ((got.startblock + (b - got.startoff)) << mp->blocklog) +
				       (pos & ((uint64_t)mp->blocksize - 1));
			error = rlfs_dev_data_copy(mp->dev, dst, src, chunk, buf, bufsz);
		} else {
			error = rlfs_dev_data_zero(mp->dev, dst, chunk);
		}
		if (!error)
			__atomic_fetch_add(&mp->cow_copied_bytes, chunk, __ATOMIC_RELAXED);
		pos += chunk;
	}
	free(buf);
	return error;
}

int rlfs_cow_copy_old(struct rlfs_inode *ip, const struct rlfs_cow *cow, uint64_t fb,
		      uint64_t n)
{
	struct rlfs_mount *mp = ip->mp;
	return rlfs_cow_copy_old_bytes(ip, cow, fb << mp->blocklog, (fb + n) << mp->blocklog);
}

/*
 * The remap as a deferred chain (XFS's xfs_reflink_end_cow_extent): one
 * BUI unmap per old extent of the range (its blocks lose a reference
 * through a CUI decrease when the unmap is finished: freed at 0), then one
 * BUI map per run of new blocks.  They are logged in tp, whose commit
 * finishes them in rolled transactions; the new blocks, allocated in tp,
 * belong to the map intents until then, so after a crash recovery maps
 * them and nothing leaks: the file shows the old blocks or the new ones,
 * never a hole.  !written: each new run takes the state of the old
 * extent it replaces (unshare keeps unwritten blocks unwritten).
 */
int rlfs_cow_remap(struct rlfs_trans *tp, struct rlfs_inode *ip, const struct rlfs_cow *cow,
		   bool written)
{
	uint64_t pos = cow->off, end = cow->off + cow->len;
	int error = 0;

	rlfs_trans_ijoin(tp, ip);
	/* unmaps, in file order; remember the states for the maps */
	struct rlfs_irec *old = NULL;
	uint32_t nold = 0;
	while (!error && pos < end) {
		struct rlfs_irec got;
		bool found;
		rlfs_bmap_lookup(ip, pos, &got, &found);
		if (!found) {
			error = rlfs_corrupt(ip->mp, rlfs_ino_to_fsb(ip->mp, ip->ino), "cow",
					     "ino %llu: CoW remap of unmapped file block %llu",
					     (unsigned long long)ip->ino, (unsigned long long)pos);
			break;
		}
		uint64_t t = RLFS_MIN(irec_end(&got), end);
		struct rlfs_irec piece = {
			.startoff = pos,
			.startblock = got.startblock + (pos - got.startoff),
			.blockcount = (uint32_t)(t - pos),
			.state = got.state,
		};
		struct rlfs_irec *n = realloc(old, (size_t)(nold + 1) * sizeof(*n));
		if (!n) {
			error = -ENOMEM;
			break;
		}
		old = n;
		old[nold++] = piece;
		error = rlfs_bui_add(tp, RLFS_BUI_UNMAP, ip->ino, piece.startoff,
				     piece.startblock, piece.blockcount);
		pos = t;
	}
	/* maps: each new extent, cut where the old states change */
	uint32_t k = 0;
	for (uint32_t i = 0; !error && i < cow->next; i++) {
		const struct rlfs_irec *r = &cow->ext[i];
		uint64_t p = r->startoff;
		while (!error && p < irec_end(r)) {
			while (k + 1 < nold && irec_end(&old[k]) <= p)
				k++;
			uint64_t run_end = irec_end(r);
			unsigned flags = RLFS_BUI_MAP;
			if (!written && nold) {
				run_end = RLFS_MIN(run_end, irec_end(&old[k]));
				if (old[k].state & RLFS_EXT_UNWRITTEN)
					flags |= RLFS_BUI_UNWRITTEN;
			}
			error = rlfs_bui_add(tp, flags, ip->ino, p,
					     r->startblock + (p - r->startoff),
					     (uint32_t)(run_end - p));
			p = run_end;
		}
	}
	free(old);
	if (!error)
		rlfs_trans_log_inode(tp, ip);
	return error;
}

/* Extents mapping [fb, fb+*len); stops at RLFS_TX_COW_EXTENTS of them,
 * shortening *len to where the last one counted ends. */
static uint32_t count_extents(struct rlfs_inode *ip, uint64_t fb, uint64_t *len)
{
	uint64_t pos = fb, end = fb + *len;
	uint32_t n = 0;
	while (pos < end) {
		struct rlfs_irec got;
		bool found;
		rlfs_bmap_lookup(ip, pos, &got, &found);
		if (!found) {
			if (!got.blockcount)
				break;
			pos = got.startoff;
			continue;
		}
		n++;
		pos = irec_end(&got);
		if (n == RLFS_TX_COW_EXTENTS && pos < end) {
			*len = pos - fb;
			break;
		}
	}
	return n;
}

int rlfs_reflink_unshare(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1)
{
	struct rlfs_mount *mp = ip->mp;
	uint64_t pos = fb0;
	int error = 0;

	if (!rlfs_has_reflink(mp))
		return 0;
	while (pos < fb1) {
		struct rlfs_trans *tp;
		uint64_t s, sl;
		error = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, 0, &tp);
		if (error)
			return error;
		error = rlfs_reflink_find_shared(tp, ip, pos, fb1 - pos, &s, &sl);
		rlfs_trans_cancel(tp);
		if (error || sl == 0)
			return error;
		uint64_t n = RLFS_MIN(sl, (uint64_t)UNSHARE_CHUNK);
		uint32_t ne = count_extents(ip, s, &n);
		error = rlfs_trans_alloc(mp, &mp->resv.tr_cow, (uint32_t)n + rlfs_cow_res(ip, ne), 0, &tp);
		if (error)
			return error;
		rlfs_trans_ijoin(tp, ip);
		struct rlfs_cow cow;
		error = rlfs_cow_prepare(tp, ip, s, n, &cow);
		if (!error)
			n = cow.len;  /* the allocation may have stopped short */
		if (!error)
			error = rlfs_cow_copy_old(ip, &cow, s, n);
		if (!error)
			error = rlfs_cow_remap(tp, ip, &cow, false);
		rlfs_cow_release(&cow);
		if (error) {
			rlfs_trans_cancel(tp);
			return error;
		}
		rlfs_data_written(mp);
		ip->data_dirty = true;
		rlfs_trans_log_inode(tp, ip);
		error = rlfs_trans_commit(tp);
		if (error)
			return error;
		pos = s + n;
		rlfs_trans_yield(mp);  /* let other metadata users in */
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Clone range                                                         */
/* ------------------------------------------------------------------ */

/* file_remove_privs: setuid always, setgid with group exec, or always
 * with RLFS_CLONE_KILL_SGID (a caller outside the file's group). */
static void clone_kill_suid(struct rlfs_inode *ip, unsigned flags)
{
	uint32_t mode = ip->mode & ~(uint32_t)S_ISUID;
	if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP) || (flags & RLFS_CLONE_KILL_SGID))
		mode &= ~(uint32_t)S_ISGID;
	if (mode != ip->mode) /* others read the type bits without the iolock */
		ip->mode = mode;
}

static bool stop_requested(const struct rlfs_cancel *cancel)
{
	return cancel && cancel->stop && cancel->stop(cancel->arg) != 0;
}

/* One piece of a clone batch: dst file blocks [d, d+n), mapped now at
 * dfsb (0: a hole), to be mapped to src's sfsb (0: src has a hole). */
struct clone_piece {
	uint64_t d;
	uint64_t dfsb, sfsb;
	uint32_t n;
	uint32_t sstate;
};

/*
 * Queue a clone batch as deferred work on tp, grouped by kind so that
 * each kind shares intents (at most 16 items each) instead of one roll
 * per item: every unmap of dst's old blocks (BUI; their CUI decreases
 * follow each unmap batch), then every refcount increase of src's blocks
 * (CUI), then every map (BUI).  XFS's xfs_reflink_remap_extent queues the
 * same three steps per extent.  0 or -ENOMEM.
 */
static int clone_queue(struct rlfs_trans *tp, struct rlfs_inode *dst,
		       const struct clone_piece *q, uint32_t nq)
{
	int error = 0;
	for (uint32_t i = 0; !error && i < nq; i++)
		if (q[i].dfsb)
			error = rlfs_bui_add(tp, RLFS_BUI_UNMAP, dst->ino, q[i].d, q[i].dfsb,
					     q[i].n);
	for (uint32_t i = 0; !error && i < nq; i++)
		if (q[i].sfsb)
			error = rlfs_cui_add(tp, RLFS_CUI_INCREASE, q[i].sfsb, q[i].n);
	for (uint32_t i = 0; !error && i < nq; i++)
		if (q[i].sfsb)
			error = rlfs_bui_add(tp, RLFS_BUI_MAP |
					     ((q[i].sstate & RLFS_EXT_UNWRITTEN) ?
					      RLFS_BUI_UNWRITTEN : 0),
					     dst->ino, q[i].d, q[i].sfsb, q[i].n);
	return error;
}

/*
 * Pieces per clone batch.  A batch's plan transaction logs up to three
 * intents per RLFS_BUI_MAX_ITEMS pieces (unmaps, refcount increases,
 * maps), one log block each: keep them within an eighth of the log, so a
 * plan never crowds a small log (the 512 KiB minimum holds 128 blocks of
 * 4 KiB: 80 pieces; a 1 GiB filesystem's 16 MiB log: the full 1024).
 */
static uint32_t clone_batch_max(const struct rlfs_mount *mp)
{
	if (!mp->log)
		return CLONE_BATCH;
	uint64_t p = (uint64_t)mp->log->size_blocks / 8 / 3 * RLFS_BUI_MAX_ITEMS;
	return (uint32_t)RLFS_MAX(RLFS_MIN(p, (uint64_t)CLONE_BATCH), (uint64_t)RLFS_BUI_MAX_ITEMS);
}

/*
 * Remap nb blocks from src block sb to dst block db in batches.  newsize:
 * dst's size once the whole range is done (grown only).  *done_blocks:
 * blocks [0, *done_blocks) of the range are committed.  cancel is polled
 * before each transaction and every CLONE_POLL pieces inside one; a stop
 * commits the pieces done and returns -EINTR.
 */
static int clone_blocks(struct rlfs_inode *src, uint64_t sb, struct rlfs_inode *dst,
			uint64_t db, uint64_t nb, uint64_t newsize, unsigned flags,
			const struct rlfs_cancel *cancel, uint64_t *done_blocks)
{
	struct rlfs_mount *mp = dst->mp;
	uint32_t batch = clone_batch_max(mp);
	uint64_t done = 0;
	bool first = true, stopped = false;
	struct clone_piece *q = NULL;
	uint32_t qcap = 0;
	int error = 0;

	*done_blocks = 0;
	while (done < nb || first) {
		struct rlfs_trans *tp;
		if (stop_requested(cancel)) {
			error = -EINTR;
			break;
		}
		error = rlfs_trans_alloc(mp, &mp->resv.tr_clone, clone_res(dst, batch), 0, &tp);
		if (error == -ENOSPC && batch > 1) {
			batch /= 2;
			continue;
		}
		/* batch 1 and still -ENOSPC: the clone stops here, before
		 * any of its intents is logged (the chain's steps live on
		 * what this transaction reserves and cannot be cancelled) */
		if (error)
			break;
		rlfs_trans_ijoin(tp, dst);
		if (first && !(flags & CLONE_DEDUPE)) {
			/* file_modified(): times and privileges, once (a
			 * dedupe changes no contents: neither) */
			struct timespec now;
			rlfs_now(&now);
			dst->mtime = dst->ctime = now;
			if (flags & (RLFS_CLONE_KILL_SUID | RLFS_CLONE_KILL_SGID))
				clone_kill_suid(dst, flags);
		}
		uint64_t pos = done;
		uint32_t pieces = 0, steps = 0, nq = 0;
		while (!error && pos < nb && pieces < batch) {
			if (++steps % CLONE_POLL == 0 && stop_requested(cancel)) {
				stopped = true;
				break;
			}
			uint64_t s = sb + pos, d = db + pos, n = nb - pos;
			struct rlfs_irec sg, dg;
			bool sf, df;
			rlfs_bmap_lookup(src, s, &sg, &sf);
			if (sf)
				n = RLFS_MIN(n, irec_end(&sg) - s);
			else if (sg.blockcount)
				n = RLFS_MIN(n, sg.startoff - s);
			rlfs_bmap_lookup(dst, d, &dg, &df);
			if (df)
				n = RLFS_MIN(n, irec_end(&dg) - d);
			else if (dg.blockcount)
				n = RLFS_MIN(n, dg.startoff - d);
			if (sf || df) {
				if (nq == qcap) {
					uint32_t cap = qcap ? 2 * qcap : 64;
					struct clone_piece *nqv = realloc(q, cap * sizeof(*nqv));
					if (!nqv) {
						error = -ENOMEM;
						break;
					}
					q = nqv;
					qcap = cap;
				}
				q[nq++] = (struct clone_piece){
					.d = d, .n = (uint32_t)n,
					.dfsb = df ? dg.startblock + (d - dg.startoff) : 0,
					.sfsb = sf ? sg.startblock + (s - sg.startoff) : 0,
					.sstate = sf ? sg.state : 0,
				};
				pieces++;
			}
			pos += n;
		}
		if (!error)
			error = clone_queue(tp, dst, q, nq);
		if (!error) {
			uint64_t reached = (db + pos) << mp->blocklog;
			uint64_t sz = RLFS_MIN(newsize, reached);
			if (sz > dst->size)
				dst->size = sz;
			rlfs_trans_log_inode(tp, dst);
			error = rlfs_trans_commit(tp);
			if (error)
				break;
			done = pos;
			*done_blocks = done;
			first = false;
			if (stopped) {
				error = -EINTR;
				break;
			}
			rlfs_trans_yield(mp);  /* let other metadata users in */
			continue;
		}
		rlfs_trans_cancel(tp);
		if (error == -ENOSPC && batch > 1) {
			batch = RLFS_MAX(batch / 4, 1u);
			error = 0;
			continue;
		}
		break;
	}
	free(q);
	return error;
}

/* generic_file_rw_checks: directories -EISDIR, other non-regular -EINVAL
 * (caller holds the iolocks: mode is read under them). */
static int check_types(const struct rlfs_inode *src, const struct rlfs_inode *dst)
{
	if (S_ISDIR(src->mode) || S_ISDIR(dst->mode))
		return -EISDIR;
	if (!S_ISREG(src->mode) || !S_ISREG(dst->mode))
		return -EINVAL;
	return 0;
}

/*
 * The iolocks of a clone, in ascending inode number: dst exclusive; src
 * shared when it is another file.  A clone changes nothing of the source
 * but refcounts, which live under the metadata lock: its data fork, size
 * and data stay as they are, so its readers (and other clones from it)
 * need not wait, while its writers (exclusive) still do, which keeps
 * find_shared's answer in file.c true.  XFS takes the source's
 * MMAPLOCK/IOLOCK shared since Linux 6.7 for the same reason.
 */
static void lock_clone(struct rlfs_inode *src, struct rlfs_inode *dst)
{
	if (src == dst) {
		pthread_rwlock_wrlock(&dst->iolock);
	} else if (src->ino < dst->ino) {
		pthread_rwlock_rdlock(&src->iolock);
		pthread_rwlock_wrlock(&dst->iolock);
	} else {
		pthread_rwlock_wrlock(&dst->iolock);
		pthread_rwlock_rdlock(&src->iolock);
	}
}

static void unlock_clone(struct rlfs_inode *src, struct rlfs_inode *dst)
{
	pthread_rwlock_unlock(&dst->iolock);
	if (src != dst)
		pthread_rwlock_unlock(&src->iolock);
}

/* The checks of remap_verify_area (offsets and lengths are loff_t that do
 * not wrap: -EINVAL), then both inodes, referenced (rlfs_iget's errors;
 * nothing held on error).  Clone and dedupe start here. */
static int remap_get_pair(struct rlfs_mount *mp, uint64_t src_ino, uint64_t src_off,
			  uint64_t dst_ino, uint64_t dst_off, uint64_t len,
			  struct rlfs_inode **srcp, struct rlfs_inode **dstp)
{
	int error;

	if (src_off > INT64_MAX || dst_off > INT64_MAX || len > INT64_MAX ||
	    len > (uint64_t)INT64_MAX - src_off || len > (uint64_t)INT64_MAX - dst_off)
		return -EINVAL;
	error = rlfs_iget(mp, src_ino, srcp);
	if (error)
		return error;
	error = rlfs_iget(mp, dst_ino, dstp);
	if (error) {
		rlfs_irele(*srcp);
		*srcp = NULL;
	}
	return error;
}

int64_t rlfs_clone_range(struct rlfs_mount *mp, uint64_t src_ino, uint64_t src_off,
			 uint64_t dst_ino, uint64_t dst_off, uint64_t len, unsigned flags)
{
	return rlfs_clone_range_cancel(mp, src_ino, src_off, dst_ino, dst_off, len, flags, NULL);
}

int64_t rlfs_clone_range_cancel(struct rlfs_mount *mp, uint64_t src_ino, uint64_t src_off,
				uint64_t dst_ino, uint64_t dst_off, uint64_t len, unsigned flags,
				const struct rlfs_cancel *cancel)
{
	struct rlfs_inode *src = NULL, *dst = NULL;
	const uint64_t bs = mp->blocksize, mask = bs - 1;
	int64_t ret;
	int error;

	if (flags & ~(RLFS_CLONE_KILL_SUID | RLFS_CLONE_KILL_SGID))
		return -EINVAL;
	error = remap_get_pair(mp, src_ino, src_off, dst_ino, dst_off, len, &src, &dst);
	if (error)
		return error;
	lock_clone(src, dst);
	ret = check_types(src, dst);
	if (ret)
		goto out;
	if (mp->flags & RLFS_MOUNT_RDONLY) {
		ret = -EROFS;
		goto out;
	}
	if (!src->ext_loaded || !dst->ext_loaded) {
		ret = -EUCLEAN;
		goto out;
	}
	if (!rlfs_has_reflink(mp)) {
		ret = -EOPNOTSUPP;
		goto out;
	}
	if (dst->flags & (RLFS_DIFLAG_IMMUTABLE | RLFS_DIFLAG_APPEND)) {
		ret = -EPERM;
		goto out;
	}
	uint64_t size_in = src->size, size_out = dst->size;
	/* zero length clones to the source EOF */
	if (len == 0) {
		if (src_off == size_in) {
			ret = 0;
			goto out;
		}
		if (src_off > size_in) {
			ret = -EINVAL;
			goto out;
		}
		len = size_in - src_off;
	}
	/* generic_remap_checks */
	if ((src_off & mask) || (dst_off & mask)) {
		ret = -EINVAL;
		goto out;
	}
	if (src_off >= size_in) {
		ret = -EINVAL;
		goto out;
	}
	uint64_t count = RLFS_MIN(len, size_in - src_off);
	if (dst_off >= mp->maxbytes || count > mp->maxbytes - dst_off) {
		ret = -EFBIG;
		goto out;
	}
	uint64_t bcount;
	if (src_off + count == size_in) {
		bcount = ((size_in + mask) & ~mask) - src_off;
	} else {
		count &= ~mask;
		bcount = count;
	}
	if (src == dst && dst_off + bcount > src_off && dst_off < src_off + bcount) {
		ret = -EINVAL;
		goto out;
	}
	if (count != len) {
		/* shortened (past source EOF, or unaligned mid-file length):
		 * the caller cannot take a short clone */
		ret = -EINVAL;
		goto out;
	}
	/* generic_remap_check_len: a partial EOF block only at/after dst EOF */
	if ((count & mask) && dst_off + count < size_out) {
		ret = -EINVAL;
		goto out;
	}
	if (count == 0) {
		ret = 0;
		goto out;
	}
	uint64_t done_blocks = 0;
	error = clone_blocks(src, src_off >> mp->blocklog, dst, dst_off >> mp->blocklog,
			     bcount >> mp->blocklog, dst_off + count, flags, cancel, &done_blocks);
	if (error) {
		/* like XFS: report the part that was remapped, if any (ENOSPC,
		 * or stopped by cancel: -EINTR) */
		uint64_t done_bytes = RLFS_MIN(count, done_blocks << mp->blocklog);
		ret = done_bytes ? (int64_t)done_bytes : error;
	} else {
		ret = (int64_t)count;
	}
out:
	unlock_clone(src, dst);
	rlfs_irele(dst);
	rlfs_irele(src);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Dedupe range                                                        */
/* ------------------------------------------------------------------ */

/*
 * Compare [soff, soff+len) of src with [doff, doff+len) of dst (both
 * iolocks held).  Where both files map the same device blocks in the same
 * state the bytes are equal without reading them (already shared);
 * elsewhere both sides are read through the data fork in chunks of at
 * most DEDUPE_CHUNK bytes.  *same: equal; *all_shared: every byte was
 * already shared (nothing to remap).  0, -ENOMEM, -EIO.
 */
/* The device bytes of file bytes [pos, pos + *n) of ip in the mapping
 * (rlfs_dev_map), *n cut to where they stay contiguous; NULL for a hole or
 * unwritten range (zeros), *n cut to its end.  0, -EIO. */
static int mapped_at(struct rlfs_inode *ip, uint64_t pos, uint64_t *n, const uint8_t **p)
{
	struct rlfs_mount *mp = ip->mp;
	struct rlfs_irec got;
	bool found;
	uint64_t fb = pos >> mp->blocklog;
	rlfs_bmap_lookup(ip, fb, &got, &found);
	*p = NULL;
	if (!found) {
		if (got.blockcount)
			*n = RLFS_MIN(*n, (got.startoff << mp->blocklog) - pos);
		return 0;
	}
	*n = RLFS_MIN(*n, (irec_end(&got) << mp->blocklog) - pos);
	if (got.state & RLFS_EXT_UNWRITTEN)
		return 0;
	uint64_t dev_off = ((got.startblock + (fb - got.startoff)) << mp->blocklog) +
			   (pos & ((uint64_t)mp->blocksize - 1));
	*p = rlfs_dev_data_at(mp->dev, dev_off, (size_t)*n);
	return *p ? 0 : -EIO;
}

/* Compare file bytes [s, s + *n) of src with [d, d + *n) of dst in place
 * in the mapping (the fsdax dedupe compare, dax_dedupe_file_range_compare),
 * *n cut to the first piece where either file's mapping changes.  0 equal,
 * 1 different, -EIO. */
static int compare_in_place(struct rlfs_inode *src, uint64_t s, struct rlfs_inode *dst,
			    uint64_t d, uint64_t *n)
{
	const uint8_t *a, *b;
	*n = RLFS_MIN(*n, (uint64_t)DEDUPE_CHUNK);
	int error = mapped_at(src, s, n, &a);
	if (!error)
		error = mapped_at(dst, d, n, &b);
	if (error)
		return error;
	/* a NULL side (hole, unwritten) reads as zeros */
	return rlfs_dev_data_cmp(src->mp->dev, a, b, (size_t)*n);
}

static int dedupe_compare(struct rlfs_inode *src, uint64_t soff, struct rlfs_inode *dst,
			  uint64_t doff, uint64_t len, bool *same, bool *all_shared)
{
	struct rlfs_mount *mp = src->mp;
	const uint64_t mask = mp->blocksize - 1;
	uint8_t *a = NULL, *b = NULL;
	uint64_t pos = 0;
	int error = 0;

	*same = true;
	*all_shared = true;
	while (pos < len) {
		uint64_t s = soff + pos, d = doff + pos, n = len - pos;
		/* whole blocks mapped to the same device blocks: shared */
		if (!(s & mask) && !(d & mask)) {
			struct rlfs_irec sg, dg;
			bool sf, df;
			uint64_t sb = s >> mp->blocklog, db = d >> mp->blocklog;
			rlfs_bmap_lookup(src, sb, &sg, &sf);
			rlfs_bmap_lookup(dst, db, &dg, &df);
			if (sf && df && sg.state == dg.state &&
			    sg.startblock + (sb - sg.startoff) == dg.startblock + (db - dg.startoff)) {
				uint64_t nb = RLFS_MIN(irec_end(&sg) - sb, irec_end(&dg) - db);
				uint64_t run = RLFS_MIN(n, nb << mp->blocklog);
				pos += run;
				continue;
			}
			if (sf && df) /* read up to the end of the nearer extent */
				n = RLFS_MIN(n, RLFS_MIN(irec_end(&sg) - sb, irec_end(&dg) - db)
					     << mp->blocklog);
		}
		*all_shared = false;
		if (mp->dev->map) {
			/* direct access: compare in the mapping, no copies */
			int c = compare_in_place(src, s, dst, d, &n);
			if (c < 0) {
				error = c;
				break;
			}
			if (c > 0) {
				*same = false;
				break;
			}
			pos += n;
			continue;
		}
		n = RLFS_MIN(n, (uint64_t)DEDUPE_CHUNK);
		if (!a) {
			a = malloc(DEDUPE_CHUNK);
			b = malloc(DEDUPE_CHUNK);
			if (!a || !b) {
				error = -ENOMEM;
				break;
			}
		}
		error = rlfs_read_mapped(src, a, s, s + n);
		if (!error)
			error = rlfs_read_mapped(dst, b, d, d + n);
		if (error)
			break;
		if (memcmp(a, b, (size_t)n) != 0) {
			*same = false;
			break;
		}
		pos += n;
	}
	free(a);
	free(b);
	return error;
}

int rlfs_dedupe_range(struct rlfs_mount *mp, uint64_t src_ino, uint64_t src_off,
		      uint64_t dst_ino, uint64_t dst_off, uint64_t len, uint64_t *deduped)
{
	struct rlfs_inode *src = NULL, *dst = NULL;
	const uint64_t mask = mp->blocksize - 1;
	int ret, error;

	*deduped = 0;
	if (len == 0 && src_off <= INT64_MAX && dst_off <= INT64_MAX)
		return 0;       /* vfs_dedupe_file_range_one: nothing to do */
	error = remap_get_pair(mp, src_ino, src_off, dst_ino, dst_off, len, &src, &dst);
	if (error)
		return error;
	/* src shared, dst exclusive, in inode order (lock_clone): no write
	 * to either file gets between the compare and the share */
	lock_clone(src, dst);
	if (mp->flags & RLFS_MOUNT_RDONLY) {
		ret = -EROFS;
		goto out;
	}
	if (!rlfs_has_reflink(mp)) {
		ret = -EOPNOTSUPP;
		goto out;
	}
	/* __generic_remap_file_range_prep */
	if (dst->flags & RLFS_DIFLAG_IMMUTABLE) {
		ret = -EPERM;
		goto out;
	}
	ret = check_types(src, dst);
	if (ret)
		goto out;
	if (!src->ext_loaded || !dst->ext_loaded) {
		ret = -EUCLEAN;
		goto out;
	}
	/* generic_remap_checks with REMAP_FILE_DEDUP | REMAP_FILE_CAN_SHORTEN */
	uint64_t size_in = src->size, size_out = dst->size, count = len, bcount;
	if ((src_off & mask) || (dst_off & mask)) {
		ret = -EINVAL;
		goto out;
	}
	if (src_off >= size_in || src_off + count > size_in ||
	    dst_off >= size_out || dst_off + count > size_out) {
		ret = -EINVAL;
		goto out;
	}
	if (dst_off >= mp->maxbytes) {
		ret = -EFBIG;
		goto out;
	}
	count = RLFS_MIN(count, mp->maxbytes - dst_off);
	if (src_off + count == size_in && dst_off + count == size_out) {
		bcount = ((size_in + mask) & ~mask) - src_off;
	} else {
		count &= ~mask;  /* shortened to whole blocks (CAN_SHORTEN) */
		bcount = count;
	}
	if (src == dst && dst_off + bcount > src_off && dst_off < src_off + bcount) {
		ret = -EINVAL;
		goto out;
	}
	if (count == 0) {
		ret = 0;
		goto out;
	}
	/* Dirty data: the library has no cache of its own; the caller wrote
	 * back what it caches (the daemon: the kernel's pages) before. */
	bool same, all_shared;
	error = dedupe_compare(src, src_off, dst, dst_off, count, &same, &all_shared);
	if (error) {
		ret = error;
		goto out;
	}
	if (!same) {
		ret = RLFS_DEDUPE_DIFFERS;
		goto out;
	}
	if (!all_shared) {
		uint64_t done_blocks = 0;
		error = clone_blocks(src, src_off >> mp->blocklog, dst, dst_off >> mp->blocklog,
				     bcount >> mp->blocklog, dst_off + count, CLONE_DEDUPE, NULL,
				     &done_blocks);
		if (error) {
			/* like the clone: report the part that was remapped */
			uint64_t done_bytes = RLFS_MIN(count, done_blocks << mp->blocklog);
			if (!done_bytes) {
				ret = error;
				goto out;
			}
			count = done_bytes;
		}
	}
	*deduped = count;
	ret = 0;
out:
	unlock_clone(src, dst);
	rlfs_irele(dst);
	rlfs_irele(src);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Extent listing                                                      */
/* ------------------------------------------------------------------ */

int rlfs_get_extents(struct rlfs_mount *mp, uint64_t ino, uint64_t start, uint64_t len,
		     struct rlfs_ioc_extent *ext, uint32_t max, uint32_t *count)
{
	struct rlfs_inode *ip;
	struct rlfs_trans *tp;
	int error;

	*count = 0;
	error = rlfs_fiemap_prep(mp, start, &len);
	if (error)
		return error;
	error = rlfs_iget(mp, ino, &ip);
	if (error)
		return error;
	pthread_rwlock_rdlock(&ip->iolock);
	if (!ip->ext_loaded || max == 0)
		goto out_unlock;
	error = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, 0, &tp);
	if (error)
		goto out_unlock;
	uint64_t fb0 = start >> mp->blocklog;
	uint64_t endb = len > UINT64_MAX - start ? UINT64_MAX : start + len;
	uint64_t fb1 = (endb >> mp->blocklog) + ((endb & (mp->blocksize - 1)) ? 1 : 0);
	if (endb == UINT64_MAX)
		fb1 = UINT64_MAX;
	uint64_t pos = fb0;
	while (pos < fb1 && *count < max) {
		struct rlfs_irec got;
		bool found;
		rlfs_bmap_lookup(ip, pos, &got, &found);
		if (!found) {
			if (!got.blockcount || got.startoff >= fb1)
				break;
			pos = got.startoff;
			continue;
		}
		/* the file's last extent: nothing mapped after it */
		struct rlfs_irec nx;
		bool nf;
		rlfs_bmap_lookup(ip, irec_end(&got), &nx, &nf);
		bool last_ext = !nf && nx.blockcount == 0;
		/* split the extent where sharing changes; report the pieces
		 * that overlap the range (whole, like FIEMAP's extents) */
		uint64_t e = irec_end(&got);
		pos = got.startoff;
		while (pos < e && *count < max) {
			uint64_t fsb = got.startblock + (pos - got.startoff);
			uint64_t sfsb;
			uint32_t sl;
			error = rlfs_refcount_find_shared(tp, fsb, (uint32_t)(e - pos), &sfsb, &sl);
			if (error)
				break;
			uint64_t pend;
			bool shared;
			if (sl && sfsb == fsb) {
				pend = pos + sl;
				shared = true;
			} else {
				pend = sl ? pos + (sfsb - fsb) : e;
				shared = false;
			}
			if (pend <= fb0) {
				pos = pend;
				continue;
			}
			struct rlfs_ioc_extent *x = &ext[(*count)++];
			memset(x, 0, sizeof(*x));
			x->logical = pos << mp->blocklog;
			x->physical = fsb << mp->blocklog;
			x->length = (pend - pos) << mp->blocklog;
			x->flags = (shared ? RLFS_IOC_EXT_SHARED : 0) |
				   ((got.state & RLFS_EXT_UNWRITTEN) ? RLFS_IOC_EXT_UNWRITTEN : 0) |
				   (last_ext && pend == e ? RLFS_IOC_EXT_LAST : 0);
			pos = pend;
			if (pos >= fb1)
				break;
		}
		if (error)
			break;
		pos = RLFS_MAX(pos, RLFS_MIN(e, fb1));
		if (pos < e)
			break; /* out of room or range */
	}
	rlfs_trans_cancel(tp);
out_unlock:
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return error;
}

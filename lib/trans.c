/*
 * trans.c: transactions (see trans.h for the contract).
 *
 * A transaction holds mp->meta_lock from alloc to commit/cancel.  Buffers
 * join it through rlfs_trans_read_buf/get_buf; the join takes one reference
 * and a before-image of the block (or notes that the block is new), so that
 * cancel can put every block back exactly as it was.  Commit marks logged
 * buffers dirty in the cache (no log yet: the dirty buffers are the
 * transaction's effect) and stales freed ones.  Log items (inodes) get
 * precommit before and release after.
 *
 * Free-block accounting: alloc takes resblks from mp->fdblocks up front
 * (-ENOSPC if short; RLFS_TRANS_RESERVE may also use the mp->resblks pool);
 * commit gives back what was reserved but not used, plus what was freed.
 * Model: xfs_trans.c, xfs_trans_buf.c.
 */
#include "trans.h"
#include "defer.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>


/* Committed changes not yet written in place: dirty in the cache (no
 * log), or pinned by the log (an image in the CIL or AIL). */
static bool buf_changed(const struct rlfs_buf *bp)
{
	return (bp->flags & RLFS_BUF_DIRTY) || bp->log_cil || bp->log_ail;
}

void rlfs_meta_lock(struct rlfs_mount *mp)
{
	__atomic_add_fetch(&mp->meta_waiters, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&mp->meta_lock);
	__atomic_sub_fetch(&mp->meta_waiters, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&mp->meta_turns, 1, __ATOMIC_RELEASE);
}

void rlfs_trans_yield(struct rlfs_mount *mp)
{
	uint64_t turn = __atomic_load_n(&mp->meta_turns, __ATOMIC_ACQUIRE);
	/* at most ~2000 short sleeps: a waiter normally gets the lock within
	 * one wake-up; never wait for ever on a count that went stale */
	for (int i = 0; i < 2000; i++) {
		if (!__atomic_load_n(&mp->meta_waiters, __ATOMIC_RELAXED) ||
		    __atomic_load_n(&mp->meta_turns, __ATOMIC_ACQUIRE) != turn)
			return;
		struct timespec ts = { 0, 10000 };
		nanosleep(&ts, NULL);
	}
}

static _Thread_local unsigned tl_writeback;

void rlfs_trans_writeback_begin(void)
{
	tl_writeback++;
}

void rlfs_trans_writeback_end(void)
{
	if (tl_writeback)
		tl_writeback--;
}

int rlfs_trans_alloc(struct rlfs_mount *mp, struct rlfs_trans_res *res, uint32_t resblks,
		     unsigned flags, struct rlfs_trans **tpp)
{
	if (tl_writeback)
		flags |= RLFS_TRANS_WRITEBACK;
	struct rlfs_trans *tp = calloc(1, sizeof(*tp));
	if (!tp)
		return -ENOMEM;
	tp->mp = mp;
	tp->flags = flags;
	tp->res = res;
	if (mp->shutdown && !(flags & RLFS_TRANS_RDONLY) && res != &mp->resv.tr_rdonly) {
		free(tp);
		return -EIO;
	}
	rlfs_meta_lock(mp);
	rlfs_trans_resv_init(mp); /* a no-op unless the geometry changed */
	if (resblks) {
		int64_t avail = mp->fdblocks;
		if (!(flags & RLFS_TRANS_RESERVE))
			avail -= (int64_t)mp->resblks;
		/* the writeback reserve: only for data the kernel has accepted
		 * already, and for what frees space */
		if (!(flags & (RLFS_TRANS_RESERVE | RLFS_TRANS_WRITEBACK)))
			avail -= (int64_t)__atomic_load_n(&mp->wb_resv_blocks, __ATOMIC_RELAXED);
		if (avail < (int64_t)resblks) {
			pthread_mutex_unlock(&mp->meta_lock);
			free(tp);
			return -ENOSPC;
		}
		mp->fdblocks -= resblks;
		tp->blk_res = resblks;
	}
	*tpp = tp;
	return 0;
}

static int join(struct rlfs_trans *tp, struct rlfs_buf *bp, bool is_new)
{
	if (bp->tp == tp) {
		bp->trefs++; /* already joined: one more reference through tp */
		return 0;
	}
	if (!(tp->flags & RLFS_TRANS_RDONLY) && tp->mp->log) {
		/* the AIL's image of bp may be the buffer itself */
		int err = rlfs_log_buf_unborrow(tp->mp, bp);
		if (err)
			return err;
	}
	bp->tp = tp;
	bp->trefs = 1;
	bp->logged = false;
	bp->log_whole = false;
	bp->log_hint = 0;
	bp->flags &= ~(RLFS_BUF_NEW_IN_TP | RLFS_BUF_INVAL_IN_TP);
	if (is_new) {
		bp->flags |= RLFS_BUF_NEW_IN_TP;
	} else if (!(tp->flags & RLFS_TRANS_RDONLY)) {
		bp->undo = rlfs_blk_get(tp->mp);
		if (!bp->undo) {
			bp->tp = NULL;
			return -ENOMEM;
		}
		memcpy(bp->undo, bp->data, tp->mp->blocksize);
	}
	bp->tnext = tp->bufs;
	tp->bufs = bp;
	return 0;
}

int rlfs_trans_read_buf(struct rlfs_trans *tp, uint64_t fsbno,
			const struct rlfs_buf_ops *ops, uint64_t owner,
			struct rlfs_buf **bpp)
{
	struct rlfs_buf *bp;
	int err = rlfs_buf_read(tp->mp, fsbno, ops, owner, &bp);
	if (err)
		return err;
	err = join(tp, bp, false);
	if (err) {
		rlfs_buf_relse(bp);
		rlfs_buf_settle(tp->mp, bp);
		return err;
	}
	*bpp = bp;
	return 0;
}

int rlfs_trans_get_buf(struct rlfs_trans *tp, uint64_t fsbno,
		       const struct rlfs_buf_ops *ops, uint64_t owner,
		       struct rlfs_buf **bpp)
{
	struct rlfs_buf *bp;
	/* If the block is joined already, its before-image is kept. */
	int err = rlfs_buf_get(tp->mp, fsbno, ops, owner, &bp);
	if (err)
		return err;
	err = join(tp, bp, bp->tp != tp);
	if (err) {
		rlfs_buf_relse(bp);
		rlfs_buf_settle(tp->mp, bp);
		return err;
	}
	bp->flags &= ~RLFS_BUF_INVAL_IN_TP;
	*bpp = bp;
	return 0;
}

void rlfs_trans_log_buf(struct rlfs_trans *tp, struct rlfs_buf *bp)
{
	if ((tp->flags & RLFS_TRANS_RDONLY) && !bp->logged)
		rlfs_warn("bug: fsbno %llu logged in a read-only transaction",
			  (unsigned long long)bp->fsbno);
	bp->logged = true;
	bp->log_whole = true;
}

void rlfs_trans_log_buf_range(struct rlfs_trans *tp, struct rlfs_buf *bp, uint32_t first,
			      uint32_t last)
{
	uint32_t c0 = first / RLFS_LOG_CHUNK, c1 = last / RLFS_LOG_CHUNK;
	if (last < first || last >= tp->mp->blocksize || c1 >= 64) {
		rlfs_trans_log_buf(tp, bp);
		return;
	}
	if ((tp->flags & RLFS_TRANS_RDONLY) && !bp->logged)
		rlfs_warn("bug: fsbno %llu logged in a read-only transaction",
			  (unsigned long long)bp->fsbno);
	bp->logged = true;
	uint64_t upto = c1 == 63 ? ~0ull : (1ull << (c1 + 1)) - 1;
	bp->log_hint |= upto & ~((1ull << c0) - 1);
}

void rlfs_trans_brelse(struct rlfs_trans *tp, struct rlfs_buf *bp)
{
	/* never drop the last reference through tp: the buffer stays joined */
	if (bp->tp == tp && bp->trefs > 1) {
		bp->trefs--;
		rlfs_buf_relse(bp);
	}
}

void rlfs_trans_binval(struct rlfs_trans *tp, struct rlfs_buf *bp)
{
	(void)tp;
	bp->flags |= RLFS_BUF_INVAL_IN_TP;
	bp->logged = true;
}

static void binval_one(struct rlfs_buf *bp, void *priv)
{
	struct rlfs_trans *tp = priv;
	if (join(tp, bp, false)) { /* ENOMEM: at least never write it again */
		rlfs_buf_relse(bp);
		rlfs_buf_stale(tp->mp, bp);
		return;
	}
	rlfs_trans_binval(tp, bp);
}

void rlfs_trans_binval_range(struct rlfs_trans *tp, uint64_t fsbno, uint64_t len)
{
	rlfs_buf_find_range(tp->mp, fsbno, len, binval_one, tp);
}

void rlfs_trans_add_item(struct rlfs_trans *tp, struct rlfs_log_item *lip)
{
	lip->next = tp->items;
	tp->items = lip;
}

void rlfs_trans_mod_used(struct rlfs_trans *tp, int64_t nblocks)
{
	tp->blk_used += nblocks;
	if (tp->blk_used > tp->blk_res) {
		/* Over the reservation: take it from free space directly.  The
		 * reservations are estimates; this keeps the counter exact. */
		tp->mp->fdblocks -= tp->blk_used - tp->blk_res;
		tp->blk_res = tp->blk_used;
	}
}

void rlfs_trans_mod_freed(struct rlfs_trans *tp, int64_t nblocks)
{
	tp->blk_freed += nblocks;
}

/* Let go of every joined buffer. */
static void release_bufs(struct rlfs_trans *tp)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_buf *bp = tp->bufs;
	while (bp) {
		struct rlfs_buf *next = bp->tnext;
		rlfs_blk_put(mp, bp->undo);
		bp->undo = NULL;
		bp->tp = NULL;
		bp->tnext = NULL;
		bp->logged = false;
		bp->flags &= ~(RLFS_BUF_NEW_IN_TP | RLFS_BUF_INVAL_IN_TP);
		while (bp->trefs) {
			bp->trefs--;
			rlfs_buf_relse(bp);
		}
		rlfs_buf_settle(mp, bp);
		bp = next;
	}
	tp->bufs = NULL;
}

static void release_items(struct rlfs_trans *tp)
{
	struct rlfs_log_item *lip = tp->items;
	tp->items = NULL;
	while (lip) {
		struct rlfs_log_item *next = lip->next;
		if (lip->ops->release)
			lip->ops->release(tp, lip);
		lip = next;
	}
}

static void trans_free(struct rlfs_trans *tp)
{
	pthread_mutex_unlock(&tp->mp->meta_lock);
	free(tp);
}

void rlfs_trans_cancel(struct rlfs_trans *tp)
{
	struct rlfs_mount *mp = tp->mp;
	rlfs_defer_cancel(tp);
	/* 1. blocks back to their before-images; new blocks forgotten */
	for (struct rlfs_buf *bp = tp->bufs; bp; bp = bp->tnext) {
		if (bp->flags & RLFS_BUF_NEW_IN_TP) {
			if (!buf_changed(bp))
				bp->flags |= RLFS_BUF_STALE; /* contents are not the disk's */
		} else if (bp->undo && bp->logged) {
			memcpy(bp->data, bp->undo, mp->blocksize);
		}
	}
	/* 2. in-core state of log items */
	for (struct rlfs_log_item *lip = tp->items; lip; lip = lip->next)
		if (lip->ops->abort)
			lip->ops->abort(tp, lip);
	/* 3. space: the whole reservation goes back, frees never happened */
	mp->fdblocks += tp->blk_res;
	release_items(tp);
	release_bufs(tp);
	trans_free(tp);
}

int rlfs_trans_commit(struct rlfs_trans *tp)
{
	if (tp->dfops) {
		int err = rlfs_defer_finish(&tp);
		if (err)
			return err;   /* tp was cancelled */
	}
	struct rlfs_mount *mp = tp->mp;
	/* precommit may join and log more buffers (inode cores) */
	for (struct rlfs_log_item *lip = tp->items; lip; lip = lip->next) {
		if (lip->ops->precommit) {
			int err = lip->ops->precommit(tp, lip);
			if (err) {
				rlfs_trans_cancel(tp);
				return err;
			}
		}
	}
	/* what this transaction adds to the log, against its reservation */
	uint64_t nimages = tp->log_nintents, ndescs = tp->log_nintents + tp->log_ndones;
	for (struct rlfs_buf *bp = tp->bufs; bp; bp = bp->tnext) {
		if (bp->flags & RLFS_BUF_INVAL_IN_TP) {
			ndescs++;           /* a cancel item */
		} else if (bp->logged) {
			nimages++;          /* a whole block image */
			ndescs++;
		}
	}
	if (tp->res)
		rlfs_trans_resv_account(mp, tp->res, rlfs_trans_resv_bytes(mp, nimages, ndescs));
	/* the CIL images this commit needs, before anything is changed:
	 * from here on the commit cannot fail */
	int rerr = rlfs_log_cil_reserve(tp);
	if (rerr) {
		rlfs_trans_cancel(tp);
		return rerr;
	}
	for (struct rlfs_buf *bp = tp->bufs; bp; bp = bp->tnext) {
		if (bp->flags & RLFS_BUF_INVAL_IN_TP)
			rlfs_buf_stale(mp, bp);
		else if (bp->logged)
			rlfs_buf_mark_dirty(mp, bp);
		else if (bp->flags & RLFS_BUF_NEW_IN_TP && !buf_changed(bp))
			bp->flags |= RLFS_BUF_STALE; /* got but never filled in */
	}
	mp->fdblocks += (tp->blk_res - tp->blk_used) + tp->blk_freed;
	mp->setaside -= (uint64_t)tp->ag_resv_used; /* (ag_resv.h) */
	mp->trans_seq++; /* this commit's sequence (busy.h) */
	uint64_t cil_seq = rlfs_log_cil_seq(mp);
	for (struct rlfs_log_item *lip = tp->items; lip; lip = lip->next) {
		lip->commit_seq = cil_seq;
		if (lip->datasync_dirty)
			lip->datasync_seq = cil_seq;
		lip->datasync_dirty = false;
		if (lip->ops->committed)
			lip->ops->committed(tp, lip);
	}
	release_items(tp);
	release_bufs(tp);
	rlfs_log_commit_done(mp);
	trans_free(tp);
	return 0;
}

void rlfs_force_shutdown(struct rlfs_mount *mp, const char *why)
{
	bool was = mp->shutdown;
	mp->shutdown = true;
	if (!was)
		rlfs_warn("%s: filesystem shut down (%s): metadata changes now fail with EIO; "
			  "unmount, and the next mount's log recovery finishes the work",
			  mp->image ? mp->image : "reflinkfs", why);
}

int rlfs_trans_roll_carry(struct rlfs_trans **tpp, bool *committed)
{
	struct rlfs_trans *tp = *tpp;
	struct rlfs_mount *mp = tp->mp;
	unsigned flags = tp->flags;
	struct rlfs_trans_res *res = tp->res;
	int64_t carry = tp->blk_res - tp->blk_used;
	if (carry < 0)
		carry = 0;
	tp->blk_res -= carry;    /* stays taken from fdblocks across the roll */
	*tpp = NULL;
	int err = rlfs_trans_commit(tp);
	*committed = !err;
	if (!err) {
		rlfs_trans_yield(mp);
		err = rlfs_trans_alloc(mp, res, 0, flags, tpp);
	}
	if (err) {
		rlfs_meta_lock(mp);
		mp->fdblocks += carry;
		pthread_mutex_unlock(&mp->meta_lock);
		return err;
	}
	(*tpp)->blk_res = carry;
	return 0;
}

int rlfs_trans_roll(struct rlfs_trans **tpp, uint32_t resblks)
{
	struct rlfs_trans *tp = *tpp;
	struct rlfs_mount *mp = tp->mp;
	unsigned flags = tp->flags;
	struct rlfs_trans_res *res = tp->res;
	*tpp = NULL;
	int err = rlfs_trans_commit(tp);
	if (err)
		return err;
	rlfs_trans_yield(mp);
	return rlfs_trans_alloc(mp, res, resblks, flags, tpp);
}

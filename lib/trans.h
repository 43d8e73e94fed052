/*
 * trans.h: transactions.  Every metadata change happens inside one.
 *
 *   rlfs_trans_alloc(mp, &mp->resv.tr_TYPE, resblks, flags, &tp)
 *       takes mp->meta_lock and reserves resblks free blocks (data +
 *       worst-case btree growth) so the transaction cannot hit ENOSPC half
 *       way; tr_TYPE is the transaction's log reservation (trans_resv.h:
 *       the most bytes it may add to the log, computed from the geometry;
 *       the commit checks it and reports an overrun);
 *   rlfs_trans_read_buf / get_buf              join buffers;
 *   rlfs_trans_log_buf                         marks a joined buffer changed;
 *   rlfs_trans_ijoin / log_inode (inode.h)     joins an in-core inode, whose
 *       core is copied to its inode cluster buffer at commit (a log item);
 *   rlfs_trans_commit                          makes the changes part of the
 *       in-memory filesystem (dirty in the buffer cache) and drops the lock;
 *   rlfs_trans_cancel                          undoes every change: joined
 *       buffers get their before-images back, joined inodes are restored.
 *
 * v1 has no log: commit leaves buffers dirty in the cache and
 * rlfs_buf_flush_all() writes them later.  A later issue puts a write-ahead
 * log under this same API (commit will then format the logged buffers into
 * the log).  Read-only users (lookup, readdir) use a transaction with
 * resblks 0 and cancel it; nothing logged means nothing to undo.
 *
 * Model: xfs_trans.c.  No nesting: a thread must not allocate a second
 * transaction while holding one (self-deadlock on meta_lock).
 */
#ifndef RLFS_TRANS_H
#define RLFS_TRANS_H
#include "buf.h"
#include "trans_resv.h"

struct rlfs_defer_pending;

/* bp->flags of a buffer joined to the open transaction (trans.c) */
#define RLFS_BUF_NEW_IN_TP (1u << 8)   /* got via get_buf in this tp */
#define RLFS_BUF_INVAL_IN_TP (1u << 9) /* binval'd in this tp */

/* flags for rlfs_trans_alloc */
#define RLFS_TRANS_RESERVE (1u << 0) /* may dip into mp->resblks (unlink etc.) */
/* Read-only: joined buffers get no before-image (lookups, readdir, fsck
 * walks of big trees).  Logging a buffer in such a transaction is a bug:
 * it is reported and the change is not undone on cancel. */
#define RLFS_TRANS_RDONLY  (1u << 1)
/* Writeback: may use mp->wb_resv_blocks, the space held back for data the
 * FUSE writeback cache has accepted and not yet sent (rlfs_trans_alloc
 * adds it by itself while rlfs_trans_writeback_begin is in force). */
#define RLFS_TRANS_WRITEBACK (1u << 2)

/*
 * A log item: something other than a buffer that takes part in a
 * transaction (an in-core inode).  precommit runs at commit, before the
 * buffers are finalised, and may join/log buffers (the inode core is copied
 * into its cluster buffer there); abort runs on cancel after buffers got
 * their before-images back (restore in-core state); release runs last in
 * both cases.  committed (optional) runs at commit once nothing can fail
 * any more, after the buffers joined the CIL (the log's intent and done
 * items join the CIL there).  Model: xfs_log_item / xfs_item_ops.
 */
struct rlfs_trans;
struct rlfs_log_item;
struct rlfs_log_item_ops {
	int (*precommit)(struct rlfs_trans *tp, struct rlfs_log_item *lip);
	void (*abort)(struct rlfs_trans *tp, struct rlfs_log_item *lip);
	void (*release)(struct rlfs_trans *tp, struct rlfs_log_item *lip);
	void (*committed)(struct rlfs_trans *tp, struct rlfs_log_item *lip);
};
struct rlfs_log_item {
	const struct rlfs_log_item_ops *ops;
	struct rlfs_log_item *next;
	/* Set by rlfs_trans_commit: the CIL context sequence that holds the
	 * item's last committed change (log->cil_seq then, see log.h), 0
	 * without a log (xfs_inode_log_item's ili_commit_seq).  datasync_seq:
	 * the same for the last change that fdatasync must make durable
	 * (ili_datasync_seq): set at commit when the owner's precommit set
	 * datasync_dirty (for an inode: anything but timestamps changed).  A
	 * freshly loaded inode gets a sequence that covers every change made
	 * while it was out of the cache (inode.c).  fsync forces the log only
	 * up to it (rlfs_log_force_seq_begin). */
	uint64_t commit_seq;
	uint64_t datasync_seq;
	bool datasync_dirty;
};

struct rlfs_trans {
	struct rlfs_mount *mp;
	unsigned flags;
	int64_t blk_res;            /* blocks reserved */
	int64_t blk_used;           /* blocks allocated so far (<= blk_res) */
	int64_t blk_freed;          /* blocks freed, credited at commit */
	int64_t ag_resv_used;       /* blocks the AG reservations gave to the
				     * refcount/rmap btrees (< 0: got back),
				     * taken off mp->setaside at commit
				     * (ag_resv.h) */
	struct rlfs_buf *bufs;      /* joined buffers (via bp->tnext) */
	struct rlfs_log_item *items;/* joined log items, newest first */
	/* deferred work (defer.h): batches to do, inodes kept joined
	 * across rolls */
	struct rlfs_defer_pending *dfops;
	unsigned ndheld;
	/* the log reservation of the transaction's type (&mp->resv.tr_*;
	 * kept across rolls), and the intents and dones logged in it (defer.c
	 * counts them for the commit-time reservation check) */
	struct rlfs_trans_res *res;
	uint32_t log_nintents;
	uint32_t log_ndones;
	struct rlfs_inode *dheld[2];
};

/*
 * Stop all metadata changes of this mount (XFS's xfs_force_shutdown): from
 * now on rlfs_trans_alloc refuses every transaction that may log (-EIO),
 * the log writes nothing more (forces return -EIO) and unmount leaves the
 * image for the next mount's log recovery.  Called when a deferred chain
 * fails after its intent was committed: the in-core state is half done,
 * the log holds what finishes it.  why: said once.  Idempotent.
 */
void rlfs_force_shutdown(struct rlfs_mount *mp, const char *why);
/*
 * Start a transaction of type res (a member of mp->resv, trans_resv.h:
 * &mp->resv.tr_create etc.; its log_bytes bound what the commit may log)
 * with resblks free blocks reserved.  Computes mp->resv first if the
 * geometry changed.  0, -ENOMEM, -ENOSPC (not enough free blocks for
 * resblks), -EIO (shut down, rlfs_force_shutdown; not for
 * RLFS_TRANS_RDONLY or tr_rdonly).  Always sets *tpp on 0.  Source:
 * xfs_trans_alloc.
 */
int rlfs_trans_alloc(struct rlfs_mount *mp, struct rlfs_trans_res *res, uint32_t resblks,
		     unsigned flags, struct rlfs_trans **tpp);
/* Like rlfs_buf_read/get, then joined to tp (a second call returns the same
 * buffer with another reference).  Same errors. */
int rlfs_trans_read_buf(struct rlfs_trans *tp, uint64_t fsbno,
			const struct rlfs_buf_ops *ops, uint64_t owner,
			struct rlfs_buf **bpp);
int rlfs_trans_get_buf(struct rlfs_trans *tp, uint64_t fsbno,
		       const struct rlfs_buf_ops *ops, uint64_t owner,
		       struct rlfs_buf **bpp);
/* Record that bp's contents changed (call before or after changing it; the
 * before-image is taken when the buffer is joined).  The commit finds the
 * changed bytes by comparing the whole block with its before-image. */
void rlfs_trans_log_buf(struct rlfs_trans *tp, struct rlfs_buf *bp);
/* Record that bytes [first, last] of bp (offsets in the block, inclusive,
 * as xfs_trans_log_buf's) changed.  The ranges a transaction logs add up;
 * the commit then compares only their RLFS_LOG_CHUNK-byte chunks with the
 * before-image (or the CIL image), so every byte the transaction changes
 * in bp must be in a logged range, unless rlfs_trans_log_buf logs the
 * whole block too.  A range past chunk 63 (blocks over 8 KiB) counts as
 * the whole block.  Builds with AddressSanitizer, and any build with
 * RLFS_LOG_CHECK_RANGES=1 in the environment at mount, check every
 * commit's ranges against the whole block and abort on a change outside
 * them.  Mirrors xfs_trans_log_buf(tp, bp, first, last). */
void rlfs_trans_log_buf_range(struct rlfs_trans *tp, struct rlfs_buf *bp, uint32_t first,
			      uint32_t last);
/* Drop this holder's reference; the buffer stays joined until commit. */
void rlfs_trans_brelse(struct rlfs_trans *tp, struct rlfs_buf *bp);
/* Block freed in this transaction: stale at commit. */
void rlfs_trans_binval(struct rlfs_trans *tp, struct rlfs_buf *bp);
/* Blocks [fsbno, fsbno+len) are being freed: every cached buffer of them
 * is joined and invalidated (stale at commit, untouched on cancel), so no
 * dirty metadata of a freed block can later be written over the block's
 * next owner's data.  rlfs_free_extent calls it. */
void rlfs_trans_binval_range(struct rlfs_trans *tp, uint64_t fsbno, uint64_t len);
/* Join a log item (the item's owner makes sure it joins only once). */
void rlfs_trans_add_item(struct rlfs_trans *tp, struct rlfs_log_item *lip);
/* (rlfs_trans_ijoin / rlfs_trans_log_inode are in inode.h.) */
/* Account blocks taken from free space (+n) against the reservation. */
void rlfs_trans_mod_used(struct rlfs_trans *tp, int64_t nblocks);
/* Account blocks returned to free space. */
void rlfs_trans_mod_freed(struct rlfs_trans *tp, int64_t nblocks);
/* Finishes queued deferred work first (rlfs_defer_finish: rolls).  Counts
 * what the transaction logged (every logged buffer a whole block image and
 * a descriptor, freed buffers a cancel descriptor, intents a payload block
 * and a descriptor, dones a descriptor: rlfs_trans_resv_bytes) against
 * tp->res (rlfs_trans_resv_account: an overrun is reported).  0 or
 * the first error from that or from writing inode cores to buffers; on
 * error the transaction is cancelled.  Always frees tp and drops
 * meta_lock. */
int rlfs_trans_commit(struct rlfs_trans *tp);
void rlfs_trans_cancel(struct rlfs_trans *tp);
/* Take mp->meta_lock (rlfs_trans_alloc and the few others that take it),
 * counting the waiters and turns that rlfs_trans_yield looks at. */
void rlfs_meta_lock(struct rlfs_mount *mp);
/* Between two transactions of a long operation (no transaction held): if
 * other threads wait for meta_lock, wait (briefly, bounded) until one of
 * them has had it.  glibc mutexes are not fair: a thread that unlocks and
 * locks again at once keeps the lock, and a 100,000-extent clone held
 * every other metadata operation (lookup, create, statfs) off for its
 * whole run. */
void rlfs_trans_yield(struct rlfs_mount *mp);
/* Commit and start a new transaction of the same type (tp->res) with a
 * fresh reservation of resblks (long operations: truncate, punch), letting meta_lock waiters in between
 * (rlfs_trans_yield).  Joined inodes must be joined again by the caller.
 * On error *tpp is NULL and the first part stays committed. */
int rlfs_trans_roll(struct rlfs_trans **tpp, uint32_t resblks);
/*
 * Every transaction this thread allocates until rlfs_trans_writeback_end
 * is a writeback one (RLFS_TRANS_WRITEBACK): rlfs_write_flags brackets the
 * writeback of cached pages with them, so that the copy-on-write, CoW fork
 * and hole-filling transactions under it may use the writeback reserve
 * without each call site knowing.  They nest; per thread.
 */
void rlfs_trans_writeback_begin(void);
void rlfs_trans_writeback_end(void);
/* Roll keeping the blocks reserved and not yet used: they move to the new
 * transaction instead of going back to free space, so a chain of deferred
 * steps (defer.c) spends the reservation its first transaction took and
 * no other thread can take those blocks between two steps.  Source:
 * xfs_trans_dup's t_blk_res transfer.  0, or -ENOMEM/-EIO from the commit
 * or the new transaction (*tpp NULL, the carried blocks back in free
 * space); *committed says whether the old transaction was committed. */
int rlfs_trans_roll_carry(struct rlfs_trans **tpp, bool *committed);
#endif

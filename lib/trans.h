/*
 * trans.h: transactions.  Every metadata change happens inside one.
 *
 *   rlfs_trans_alloc(mp, resblks, flags, &tp)  takes mp->meta_lock and
 *       reserves resblks free blocks (data + worst-case btree growth) so the
 *       transaction cannot hit ENOSPC half way;
 *   rlfs_trans_read_buf / get_buf              join buffers;
 *   rlfs_trans_log_buf                         marks a joined buffer changed;
 *   rlfs_trans_ijoin / log_inode               joins an in-core inode, whose
 *       core is copied to its inode cluster buffer at commit;
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

/* flags for rlfs_trans_alloc */
#define RLFS_TRANS_RESERVE (1u << 0) /* may dip into mp->resblks (unlink etc.) */

struct rlfs_trans {
	struct rlfs_mount *mp;
	unsigned flags;
	int64_t blk_res;            /* blocks reserved */
	int64_t blk_used;           /* blocks allocated so far (<= blk_res) */
	int64_t fdblocks_delta;     /* freed (+) blocks, applied at commit */
	struct rlfs_buf *bufs;      /* joined buffers (via bp->tnext) */
	struct rlfs_inode *inodes[8]; /* joined inodes */
	int ninodes;
	void *inode_undo[8];        /* snapshots for cancel (inode.c owns) */
};

/* 0, -ENOSPC (not enough free blocks for resblks). Always sets *tpp on 0. */
int rlfs_trans_alloc(struct rlfs_mount *mp, uint32_t resblks, unsigned flags,
		     struct rlfs_trans **tpp);
/* Like rlfs_buf_read/get, then joined to tp (a second call returns the same
 * buffer with another reference).  Same errors. */
int rlfs_trans_read_buf(struct rlfs_trans *tp, uint64_t fsbno,
			const struct rlfs_buf_ops *ops, uint64_t owner,
			struct rlfs_buf **bpp);
int rlfs_trans_get_buf(struct rlfs_trans *tp, uint64_t fsbno,
		       const struct rlfs_buf_ops *ops, uint64_t owner,
		       struct rlfs_buf **bpp);
/* Record that bp's contents changed (call before or after changing it; the
 * before-image is taken when the buffer is joined). */
void rlfs_trans_log_buf(struct rlfs_trans *tp, struct rlfs_buf *bp);
/* Drop this holder's reference; the buffer stays joined until commit. */
void rlfs_trans_brelse(struct rlfs_trans *tp, struct rlfs_buf *bp);
/* Block freed in this transaction: stale at commit. */
void rlfs_trans_binval(struct rlfs_trans *tp, struct rlfs_buf *bp);
/* Join an inode (caller holds its iolock exclusively); snapshot for cancel.
 * At most 8 per transaction.  Idempotent. */
void rlfs_trans_ijoin(struct rlfs_trans *tp, struct rlfs_inode *ip);
/* Inode core changed: copy to its buffer at commit. Implies ijoin. */
void rlfs_trans_log_inode(struct rlfs_trans *tp, struct rlfs_inode *ip);
/* Account blocks taken from free space (+n) against the reservation. */
void rlfs_trans_mod_used(struct rlfs_trans *tp, int64_t nblocks);
/* Account blocks returned to free space. */
void rlfs_trans_mod_freed(struct rlfs_trans *tp, int64_t nblocks);
/* 0 or the first error from writing inode cores to buffers; on error the
 * transaction is cancelled.  Always frees tp and drops meta_lock. */
int rlfs_trans_commit(struct rlfs_trans *tp);
void rlfs_trans_cancel(struct rlfs_trans *tp);
/* Commit and start a new transaction with the same joined inodes and
 * a fresh reservation of resblks (long operations: truncate, punch).
 * On error *tpp is NULL and everything was cancelled/committed. */
int rlfs_trans_roll(struct rlfs_trans **tpp, uint32_t resblks);
#endif

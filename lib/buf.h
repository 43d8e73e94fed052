/*
 * buf.h: the metadata buffer cache.  One buffer = one filesystem block,
 * keyed by fsbno.  Buffers are verified when read from the device and
 * verified again (and their crc stamped) right before being written.
 * Dirty buffers stay in memory until rlfs_buf_flush_all(), which first
 * flushes file data to the device (so metadata never points at blocks whose
 * data is not yet durable), then writes the metadata, then flushes again.
 *
 * All functions here must be called with mp->meta_lock held (i.e. from
 * inside a transaction: use the rlfs_trans_* wrappers in trans.h).
 * Model: xfs_buf.c / SQLite pager.c, much simplified.
 */
#ifndef RLFS_BUF_H
#define RLFS_BUF_H
#include "rlfs.h"

struct rlfs_buf;

/*
 * Per-type buffer operations.  magic is checked against hdr.magic by the
 * generic verifier for blocks that start with struct rlfs_blkhdr
 * (has_hdr true): magic, blkno == own fsbno, uuid == fs uuid, crc, and the
 * owner when the caller asked for one.  verify (optional) then checks the
 * type's own fields.  Inode cluster blocks set has_hdr false and do all
 * checking and crc stamping in verify/stamp.
 */
struct rlfs_buf_ops {
	const char *name;           /* "bnobt", "inode", ... for messages */
	uint32_t magic;
	bool has_hdr;
	/* 0 or -EUCLEAN (after rlfs_corrupt) */
	int (*verify)(struct rlfs_mount *mp, struct rlfs_buf *bp);
	/* optional: prepare block for write (e.g. per-inode crcs) */
	void (*stamp)(struct rlfs_mount *mp, struct rlfs_buf *bp);
};

#define RLFS_BUF_DIRTY   (1u << 0)
#define RLFS_BUF_STALE   (1u << 1) /* block was freed: never write it */

struct rlfs_buf {
	uint64_t fsbno;
	void *data;                 /* blocksize bytes, 64-byte aligned */
	const struct rlfs_buf_ops *ops;
	unsigned flags;
	unsigned refcount;          /* holders; 0 = only in cache */
	/* transaction bookkeeping (trans.c) */
	struct rlfs_trans *tp;      /* transaction that holds it, or NULL */
	void *undo;                 /* before-image for cancel, or NULL */
	bool logged;                /* logged in tp */
	/* what tp logged of it (rlfs_trans_log_buf_range): log_whole = the
	 * whole block may have changed; else bit i of log_hint = chunk i
	 * (RLFS_LOG_CHUNK bytes at i * RLFS_LOG_CHUNK) may have changed, and
	 * no byte outside those chunks did.  Reset when tp joins it. */
	bool log_whole;
	uint64_t log_hint;
	unsigned trefs;             /* references taken through tp (dropped at
				     * commit/cancel: callers need not release) */
	/* cache bookkeeping (buf.c) */
	struct rlfs_buf *hnext;     /* hash chain by block */
	struct rlfs_buf *gnext;     /* hash chain by group of 16 blocks */
	struct rlfs_buf *lru_prev, *lru_next;
	struct rlfs_buf *dirty_prev, *dirty_next; /* on the dirty list iff DIRTY */
	struct rlfs_buf *tnext;     /* next buffer in tp's list */
	/* write-ahead log (log.h): this block's image in the CIL / AIL, or
	 * NULL.  Either set = pinned: never evicted, never written in place
	 * by the cache (the AIL writes the durable image). */
	struct rlfs_log_img *log_cil, *log_ail;
};

#define RLFS_OWNER_ANY UINT64_MAX

/* Create the cache; max_clean_bytes bounds clean buffers kept. -ENOMEM. */
int rlfs_bcache_init(struct rlfs_mount *mp, size_t max_clean_bytes);
/* Drop everything; dirty buffers are lost (call flush first). */
void rlfs_bcache_destroy(struct rlfs_mount *mp);

/*
 * Block-sized scratch memory (mp->blocksize bytes): transaction undo
 * images (trans.c) and log images (log_cil.c).  Freed blocks are kept
 * on a free list of up to RLFS_BLK_FREE_MAX and handed out again: with
 * the log's images alive between commits, malloc of 4 KiB blocks walked
 * fragmented bins and took 18% of an in-process create (the kmem caches
 * XFS keeps for its log vectors serve the same end).  Under meta_lock.
 * rlfs_blk_get: NULL without memory.  rlfs_blk_put: NULL is a no-op.
 */
#define RLFS_BLK_FREE_MAX 2048u
void *rlfs_blk_get(struct rlfs_mount *mp);
void rlfs_blk_put(struct rlfs_mount *mp, void *p);

/*
 * Get the buffer for fsbno, reading and verifying it if it is not cached.
 * ops: expected type; owner: expected hdr.owner or RLFS_OWNER_ANY.
 * Returns 0, -EUCLEAN on a failed verify (nothing cached), -EIO, -EINVAL
 * for fsbno out of range.  Takes a reference; drop it with rlfs_buf_relse.
 */
int rlfs_buf_read(struct rlfs_mount *mp, uint64_t fsbno,
		  const struct rlfs_buf_ops *ops, uint64_t owner,
		  struct rlfs_buf **bpp);
/*
 * Get a buffer for a freshly allocated block without reading it: contents
 * zeroed; if ops->has_hdr the header is initialised (magic, blkno, owner,
 * uuid).  Returns 0 or -ENOMEM / -EINVAL.
 */
int rlfs_buf_get(struct rlfs_mount *mp, uint64_t fsbno,
		 const struct rlfs_buf_ops *ops, uint64_t owner,
		 struct rlfs_buf **bpp);
void rlfs_buf_hold(struct rlfs_buf *bp);
void rlfs_buf_relse(struct rlfs_buf *bp);
void rlfs_buf_mark_dirty(struct rlfs_mount *mp, struct rlfs_buf *bp);
/* The block was freed: drop dirty state, never write it back. */
void rlfs_buf_stale(struct rlfs_mount *mp, struct rlfs_buf *bp);
/*
 * Forget a cached block if present (e.g. a metadata block freed and
 * reused as file data).  No-op if not cached.
 */
void rlfs_buf_forget(struct rlfs_mount *mp, uint64_t fsbno);
/*
 * Flush: device flush (data first), stamp+verify+write every dirty buffer
 * in fsbno order, device flush.  A buffer failing its pre-write verify is
 * not written and gives -EUCLEAN (the rest are still written).  The cost is
 * proportional to the number of dirty buffers (a dirty list, not a walk of
 * the cache); runs of consecutive blocks go to the device as one write of
 * up to RLFS_FLUSH_RUN_BYTES.  Reports RLFS_PROGRESS_DATA, _META, _SYNC
 * (fs.h rlfs_set_progress).
 */
#define RLFS_FLUSH_RUN_BYTES (1u << 20)
int rlfs_buf_flush_all(struct rlfs_mount *mp);
/*
 * Write n whole blocks in place: block i is fsbno[i] with blocksize bytes
 * at data[i] (NULL: skip it); the blocks are sorted by fsbno, and runs of
 * consecutive blocks go to the device as one write of up to
 * RLFS_FLUSH_RUN_BYTES (one write per block if no run buffer can be had).
 * done(arg, i) is called for every block written; no flush.  Reports
 * RLFS_PROGRESS_META.  0 or the first write's error (-EIO...; the other
 * runs are still written).  The writer of rlfs_buf_flush_all and of the
 * log's AIL push; XFS's counterpart is the delwri queue's submission
 * (xfs_buf_delwri_submit_buffers), which the block layer merges instead.
 */
int rlfs_buf_write_blocks(struct rlfs_mount *mp, size_t n, const uint64_t *fsbno,
			  const void *const *data, void (*done)(void *arg, size_t i), void *arg);
/* Number of dirty buffers (flush policy). */
size_t rlfs_buf_ndirty(struct rlfs_mount *mp);
/* Call fn for every cached buffer in [fsbno, fsbno+len), each with a
 * reference taken for fn (fn must drop or keep it). */
void rlfs_buf_find_range(struct rlfs_mount *mp, uint64_t fsbno, uint64_t len,
			 void (*fn)(struct rlfs_buf *bp, void *priv), void *priv);

/* An unheld buffer goes back on the clean LRU (or is dropped if stale).
 * rlfs_buf_relse only drops the count; the transaction code settles. */
void rlfs_buf_settle(struct rlfs_mount *mp, struct rlfs_buf *bp);

/* Generic checks/stamping for blocks starting with struct rlfs_blkhdr. */
int rlfs_blkhdr_verify(struct rlfs_mount *mp, struct rlfs_buf *bp, uint64_t owner);
void rlfs_blkhdr_init(struct rlfs_mount *mp, void *block, uint32_t magic,
		      uint64_t fsbno, uint64_t owner);
#endif

/*
 * busy.h: busy extents and busy inodes.  Model: xfs_extent_busy.c.
 *
 * A block (or an inode number) freed by a transaction stays *busy* until
 * that transaction's changes are durable on disk: until then the disk still
 * gives it to its old owner, and a crash (even a kill -9 of the daemon)
 * brings the old owner back.  File data goes to the device in place and at
 * once, so handing a busy block to a new file would let the new file's
 * bytes land in a block that the old, fsync'd file still maps on disk.
 *
 * Sequences.  mp->trans_seq counts committed transactions (trans.c adds 1
 * at every commit); the transaction that is open (there is at most one:
 * meta_lock) will commit as mp->trans_seq + 1, and every busy extent or
 * inode it frees is tagged with that number (rlfs_busy_cur_seq).  When the
 * changes of every transaction up to seq are durable, the durability path
 * calls rlfs_busy_clear_durable(mp, seq) and everything tagged <= seq is
 * free for reuse.  Today that path is a successful rlfs_buf_flush_all (all
 * dirty metadata written in place, then a device flush); with a
 * write-ahead log it is the completion of a checkpoint (XFS: the CIL
 * context's busy list cleared in xlog_cil_committed).  A cancelled
 * transaction's busy entries stay until the next commit's durability
 * (harmless: they only hide space for a while).
 *
 * What is busy (rlfs_busy_insert is called by the free-space code itself,
 * alloc.c free_into_trees, so every free is covered: data extents of
 * truncate/unlink/punch, refcount drops to zero, CoW remap of the old
 * blocks, inode chunks, bmbt/directory/xattr tree blocks, and AGFL blocks
 * given back to the free-space trees).  Blocks that AG btrees (bnobt,
 * cntbt, inobt, refcountbt) free go to the AGFL, which only ever hands them
 * to AG btrees again: metadata that reaches the disk no earlier than the
 * free, which is the reuse XFS allows with xfs_extent_busy_reuse; they
 * become busy when the AGFL gives them back to free space.
 *
 * The allocator never hands out a busy block (rlfs_busy_next_free trims
 * each free-space record to its non-busy pieces, as xfs_extent_busy_trim;
 * no reuse of busy space by metadata, unlike XFS: simpler; the cost of
 * the policy is measured in docs/DESIGN.md "Busy extents").  If nothing
 * non-busy fits, rlfs_busy_force makes the committed frees durable and
 * the allocation is retried, so -ENOSPC is not reported while busy space
 * of committed transactions exists (xfs_extent_busy_flush).
 *
 * All functions run under mp->meta_lock.  Memory: one node per busy range
 * (adjacent and overlapping ranges merge, keeping the larger sequence) and
 * one entry per inode chunk with busy inodes; all freed at durability.
 */
#ifndef RLFS_BUSY_H
#define RLFS_BUSY_H
#include "trans.h"

/* The sequence the open transaction will commit as (its busy tag). */
static inline uint64_t rlfs_busy_cur_seq(const struct rlfs_mount *mp)
{
	return mp->trans_seq + 1;
}

/*
 * Mark [agbno, agbno+len) of AG agno busy until sequence seq is durable.
 * Overlapping or touching busy ranges merge (the larger seq is kept).
 * 0, -ENOMEM (then the free must fail: nothing would keep the blocks from
 * reuse).  Model: xfs_extent_busy_insert.
 */
int rlfs_busy_insert(struct rlfs_mount *mp, uint32_t agno, uint32_t agbno, uint32_t len,
		     uint64_t seq);

/*
 * The first non-busy piece of [agbno, end) (agbno units, end exclusive):
 * true with [*pstart, *pend) set (a maximal non-busy run inside the range,
 * starting at or after agbno), false if every block of the range is busy.
 * O(log n) per piece; an AG without busy extents costs one test.
 * Model: xfs_extent_busy_trim (which returns one piece; callers here walk
 * the pieces of a free record with this).
 */
bool rlfs_busy_next_free(struct rlfs_mount *mp, uint32_t agno, uint32_t agbno, uint32_t end,
			 uint32_t *pstart, uint32_t *pend);

/*
 * Unshare-busy ranges.  A refcount decrement that leaves a block with one
 * owner (a CoW remap, truncate or unlink of one of two sharers) is not on
 * disk until its transaction is durable; until then the disk still says
 * the block is shared, and a crash brings the other owner back.  Were the
 * remaining owner to overwrite the block in place meanwhile, the returning
 * owner (say an fsync'd clone) would show the new bytes.  So such a block
 * is written as shared (copy-on-write) until the decrement is durable:
 * refcount.c records every range whose count drops to 1, and the write
 * path's sharing query (rlfs_reflink_find_shared) treats these ranges as
 * shared.  Cleared with the busy extents by rlfs_busy_clear_durable.  XFS
 * has no such list because its data writes are ordered against the log
 * by the CoW fork's remap at I/O completion; ours go in place at once.
 */
/* Mark [agbno, agbno+len) of AG agno (blocks) unshare-busy until seq is
 * durable.  Merges like rlfs_busy_insert.  0, -ENOMEM, -EINVAL (agno out
 * of range).  No XFS counterpart (see above); shaped as
 * xfs_extent_busy_insert. */
int rlfs_busy_insert_unshared(struct rlfs_mount *mp, uint32_t agno, uint32_t agbno,
			      uint32_t len, uint64_t seq);
/* The first unshare-busy piece of AG blocks [agbno, end): true with
 * [*pstart, *pend) (clipped to the range), false if none.  O(log n); one
 * test when nothing is unshare-busy.  Never fails.  No XFS counterpart. */
bool rlfs_busy_next_unshared(const struct rlfs_mount *mp, uint32_t agno, uint32_t agbno,
			     uint32_t end, uint32_t *pstart, uint32_t *pend);
/* Unshare-busy blocks now (all AGs); for tests. */
uint64_t rlfs_busy_unshared_blocks(const struct rlfs_mount *mp);

/*
 * The changes of every transaction with sequence <= seq are durable: drop
 * every busy extent and busy inode tagged <= seq, and remember seq as the
 * durable sequence (a smaller seq than one seen before changes nothing).
 * rlfs_buf_flush_all calls it with mp->trans_seq after a flush that wrote
 * every dirty buffer and flushed the device; the log calls it when a
 * checkpoint is durable.  Never fails.  Model: xfs_extent_busy_clear.
 */
void rlfs_busy_clear_durable(struct rlfs_mount *mp, uint64_t seq);
/* The last sequence passed to rlfs_busy_clear_durable (0 before any). */
uint64_t rlfs_busy_durable_seq(const struct rlfs_mount *mp);

/*
 * From inside the open transaction tp: make every committed transaction
 * durable now, so that their busy extents and inodes can be reused.  The
 * buffers tp has joined and changed are written with their before-images
 * (the committed state) and stay changed in memory for tp.  0 when the
 * flush succeeded (the busy entries of committed transactions are then
 * gone), -EAGAIN if a buffer of tp holds committed changes but has no
 * before-image (nothing was written), or the flush's error (-EIO,
 * -EUCLEAN, -ENOMEM).  Model: xfs_extent_busy_flush (a log force).
 */
int rlfs_busy_force(struct rlfs_trans *tp);

/* Would rlfs_busy_force free anything: a busy extent or inode tagged with
 * a committed sequence (<= mp->trans_seq)? */
bool rlfs_busy_forceable(const struct rlfs_mount *mp);

/*
 * A search came back empty (the caller's ENOSPC) and busy space may be
 * why (blocked: the search met busy space that would have done): force
 * the committed frees durable so the caller can search once more.  0:
 * forced, search again; -ENOSPC: nothing a force can free (not blocked,
 * nothing forceable, or the force wrote nothing: -EAGAIN), keep the
 * ENOSPC; else rlfs_busy_force's error.  The allocator passes blocked =
 * rlfs_busy_blocked() changed during its search, inode allocation
 * whether it skipped busy inodes.  Source: the retry after
 * xfs_extent_busy_flush in xfs_alloc_ag_vextent_near/size.
 */
int rlfs_busy_force_retry(struct rlfs_trans *tp, bool blocked);

/*
 * Busy inodes: inode number ino was freed by the transaction that commits
 * as seq; it is not reused before seq is durable.  0 or -ENOMEM.
 */
int rlfs_busy_insert_ino(struct rlfs_mount *mp, uint64_t ino, uint64_t seq);
/* Busy inodes of the chunk starting at inode number startino (a multiple
 * of 64): bit i set = startino + i is busy.  Never fails.  The inode side
 * of XFS's rule that a freed inode cluster is not reused before its free
 * is durable (xfs_difree with busy extents on the cluster blocks). */
uint64_t rlfs_busy_ino_mask(const struct rlfs_mount *mp, uint64_t startino);

/* The allocator met a free extent that would have done but for busy
 * blocks (it then forces, if rlfs_busy_blocked changed during the failed
 * search).  A counter; never fails. */
void rlfs_busy_note_blocked(struct rlfs_mount *mp);
/* A search met a free record cut into more busy pieces than it looks at
 * (alloc.c, RLFS_ALLOC_PIECES_MAX): rlfs_busy_take_heavy then says so
 * once (and clears it), for the allocator to force the frees durable
 * before its next search.  Never fail. */
void rlfs_busy_note_heavy(struct rlfs_mount *mp);
bool rlfs_busy_take_heavy(struct rlfs_mount *mp);
uint64_t rlfs_busy_blocked(const struct rlfs_mount *mp);

/* Counters for tests and measurements: busy blocks (all AGs), busy
 * inodes, and forced flushes so far. */
uint64_t rlfs_busy_blocks(const struct rlfs_mount *mp);
uint64_t rlfs_busy_inodes(const struct rlfs_mount *mp);
uint64_t rlfs_busy_forces(const struct rlfs_mount *mp);

/* Free the busy state (unmount, rlfs_mount_free_bare). */
void rlfs_busy_destroy(struct rlfs_mount *mp);
#endif

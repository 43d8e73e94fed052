/*
 * cowfork.h: the CoW fork -- an in-core second extent map per inode that
 * holds the blocks staged for copy-on-write (internal).
 *
 * XFS (seed 000): "Copy on Write is implemented by creating a separate CoW
 * extent mapping fork ... to try to allocate as large of a replacement
 * extent as possible before committing the new data to media."  Here:
 *
 *   stage    a write that must copy on write (its blocks are shared, or the
 *            CoW fork already covers them) first makes sure the CoW fork
 *            covers its range.  A missing part is allocated for the whole
 *            region around it aligned to the inode's CoW extent size hint
 *            (rlfs_cowextsize_hint_blocks, default 32 blocks), as few
 *            extents as free space allows, near the old blocks, and
 *            recorded as staging in the same transaction: a refcount
 *            record in the CoW domain (refcount 1) and an rmap record of
 *            owner RLFS_RMAP_OWN_COW.  The transaction commits before any
 *            data is written.
 *   write    the data goes to the staged blocks (old contents copied into
 *            partially written edge blocks first).
 *   remap    after the data is on the device's queue, one transaction
 *            drops the staging records of the written blocks and queues
 *            the BUI unmap of the old blocks (refcount -1 through a CUI,
 *            freed at 0) and the BUI map of the staged ones; its commit
 *            finishes the chain.  Only the written blocks leave the fork:
 *            the rest of the region stays staged, and a later write into
 *            it (shared block or not: XFS's promotion) lands next to the
 *            first one, so a file rewritten at random after a clone gets
 *            contiguous replacement extents instead of one per write.
 *   cancel   staged blocks no write used go back to free space (staging
 *            records dropped, blocks freed): at the last close of a file,
 *            truncate, inactivation and eviction, remount read-only,
 *            unmount, after an idle time (rlfs_cowfork_gc), and before a
 *            write reports ENOSPC.
 *   recover  a mount frees every staging record left in the refcount
 *            btrees (a crash between stage and remap); nothing maps those
 *            blocks, so the file shows its old data.
 *
 * A crash at any point leaves the old data or the new, never a hole:
 * before the remap commits, the data fork still maps the old blocks; after
 * it, the log's BUIs finish the switch.  There is no delayed (unallocated)
 * state: the daemon's WRITE is the kernel's writeback, so the reservation
 * and the allocation happen at the same moment (XFS's delalloc CoW
 * extents become real ones at writeback too).
 *
 * Locking: the fork is changed and read under ip->iolock held exclusively
 * (writes, truncate, inactivation hold it).  mp->cow_lock guards only the
 * mount's list of inodes with a non-empty fork (for the GC); order:
 * iolock, then cow_lock, then icache_lock.  An inode with staged blocks
 * is never evicted with them: the last reference cancels them first.
 *
 * Model: xfs_reflink.c (xfs_reflink_allocate_cow, xfs_reflink_end_cow,
 * xfs_reflink_cancel_cow_range, xfs_reflink_recover_cow), xfs_icache.c
 * (cowblocks GC).
 */
#ifndef RLFS_COWFORK_H
#define RLFS_COWFORK_H
#include "inode.h"

/* The fork of one inode (ip->cow; NULL while never used). */
struct rlfs_cowfork {
	struct rlfs_iext iext;      /* staged extents: sorted by startoff, no
				     * overlaps, state 0 */
	uint64_t staged_blocks;     /* sum of blockcounts */
	struct rlfs_inode *ip;
	/* mp->cow_forks list while it holds extents, under mp->cow_lock */
	struct rlfs_cowfork *lprev, *lnext;
	bool listed;
	struct timespec since;      /* CLOCK_MONOTONIC: when it became non-empty */
};

/* As rlfs_bmap_lookup, in the CoW fork: *found with the extent containing
 * fb, else the next one (got->blockcount 0 if none).  iolock held. */
void rlfs_cowfork_lookup(struct rlfs_inode *ip, uint64_t fb, struct rlfs_irec *got,
			 bool *found);

/*
 * Make the CoW fork cover file blocks [fb0, fb1) of ip (iolock held
 * exclusively; regular file on a REFLINK filesystem), staging what is
 * missing in transactions of its own (see the top comment), rounded out
 * to the CoW extent size hint.  *covered_end: the end of the run the
 * fork now covers from fb0 on (fb1, or less when free space ran out part
 * way or the per-transaction bound was reached; the caller does that much
 * and comes back).  When the rounded region does not fit, the write's own
 * range is tried alone; when that does not fit either, staged blocks of
 * other files are cancelled (rlfs_cowfork_gc) and it is tried once more.
 * 0, -ENOSPC (not even block fb0 could be staged), -ENOMEM, -EUCLEAN,
 * -EIO.
 */
int rlfs_cowfork_stage(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1,
		       uint64_t *covered_end);

/*
 * The device byte offset of file byte pos in the CoW fork and the bytes
 * contiguous from there inside that staged extent.  pos's block must be
 * covered (rlfs_cowfork_stage); else UINT64_MAX.
 */
uint64_t rlfs_cowfork_dev_offset(struct rlfs_inode *ip, uint64_t pos, uint64_t *contig_bytes);

/* The remap's pieces in [fb0, fb1): *staged extents of the fork and
 * *mapped extents of the data fork, for the caller's per-transaction
 * bounds (RLFS_TX_COWFORK_EXTENTS, RLFS_TX_COW_EXTENTS). */
void rlfs_cowfork_remap_pieces(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1,
			       uint32_t *staged, uint32_t *mapped);

/*
 * Queue in tp the remap of file blocks [fb0, fb1), which the fork covers
 * and whose new data is written: staging records dropped (refcount CoW
 * domain, rmap OWN_COW) in tp, then BUI unmaps of whatever the data fork
 * maps there (holes skipped) and BUI maps of the staged blocks (written).
 * The commit finishes the chain; after a successful commit the caller
 * calls rlfs_cowfork_remapped.  0, -ENOMEM, -EUCLEAN (range not covered),
 * the refcount/rmap errors; the caller cancels tp then (the fork is
 * unchanged).  Source: xfs_reflink_end_cow_extent.
 */
int rlfs_cowfork_remap(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t fb0,
		       uint64_t fb1);
/* The remap of [fb0, fb1) committed: those blocks leave the fork. */
void rlfs_cowfork_remapped(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1);

/*
 * Give back the staged blocks of file blocks [fb0, fb1) (UINT64_MAX: to
 * the end) to free space, in transactions of their own (iolock held
 * exclusively).  0, or the first transaction's error (-EIO after a
 * shutdown, -EUCLEAN): what was cancelled before stays cancelled.
 * Source: xfs_reflink_cancel_cow_range.
 */
int rlfs_cowfork_cancel(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1);

/* Drop ip's in-core fork without touching the disk (inode being freed
 * from memory: staging records left are a mount's recovery's to free). */
void rlfs_cowfork_destroy(struct rlfs_inode *ip);

/* Blocks staged in ip's fork / in the whole mount. */
uint64_t rlfs_cowfork_inode_blocks(const struct rlfs_inode *ip);
uint64_t rlfs_cowfork_staged_blocks(struct rlfs_mount *mp);

/*
 * CoW garbage collection (XFS's cowblocks): cancel the staged blocks of
 * every inode whose fork has been non-empty for at least min_age_s
 * seconds (0: all), except skip_ip (a caller's own, or NULL).  wait: take
 * each inode's iolock (unmount, remount read-only); otherwise try it and
 * skip a busy inode (a writer short of space, the idle timer).  Returns
 * the blocks given back (>= 0) or -errno of the first failed cancel.
 */
int64_t rlfs_cowfork_gc(struct rlfs_mount *mp, uint32_t min_age_s,
			const struct rlfs_inode *skip_ip, bool wait);

/*
 * Mount (read-write, after log recovery): free every CoW staging extent
 * the refcount btrees still record -- a crash left them between stage and
 * remap; no file maps them.  Records and rmap OWN_COW records dropped,
 * blocks freed, in transactions of their own.  *nfreed_blocks (may be
 * NULL).  0, -EBUSY (an in-core fork holds staged blocks: its records are
 * not leftovers), or a transaction's -errno.  Source:
 * xfs_reflink_recover_cow.
 */
int rlfs_cowfork_recover(struct rlfs_mount *mp, uint64_t *nfreed_blocks);
#endif

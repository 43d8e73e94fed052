/*
 * reflink.h: block sharing at the file level (internal).  The public entry
 * points rlfs_clone_range and rlfs_get_extents are in reflinkfs/fs.h; this
 * header is for file.c, which calls the copy-on-write helpers.
 *
 * Copy-on-write in this issue is synchronous and happens inside ONE
 * transaction of the caller (who holds ip->iolock exclusively):
 *
 *   rlfs_reflink_find_shared   which file blocks of a range are shared
 *   rlfs_cow_prepare           allocate new blocks for a shared range
 *                              (as few extents as possible, near the old
 *                              blocks); nothing mapped yet
 *   rlfs_cow_copy_old          copy old contents of some blocks of the range
 *                              to their new blocks (partial-block edges)
 *   (caller writes its new data through rlfs_cow_dev_offset)
 *   rlfs_cow_remap             queue the remap: BUI unmaps of the old
 *                              range (refcount -1 by CUI) and BUI maps of
 *                              the new extents, finished by the commit
 *
 * The data reaches the device before the commit; the log writes no
 * checkpoint before the data is flushed, so no mapping on disk ever
 * points at blocks without their data.  A cancel returns the new blocks
 * to free space (the allocation is undone with the rest); after the
 * commit the map intents own them until they are mapped.
 * Writes use this one-transaction form only for whole CoW regions the
 * CoW fork does not touch; other copy-on-write writes stage through the
 * fork (cowfork.h), which keeps the staged blocks in the refcount tree's
 * CoW domain between its stage and remap transactions.  Unshare uses it.
 * Model: xfs_reflink.c (xfs_reflink_allocate_cow, xfs_reflink_end_cow).
 */
#ifndef RLFS_REFLINK_H
#define RLFS_REFLINK_H
#include "inode.h"

/*
 * First run of shared blocks (refcount >= 2) among the MAPPED blocks of file
 * range [fb, fb+len) of ip: *sfb (file block) and *slen (blocks; the run
 * may span several extents that follow each other in the file, and stops
 * where sharing stops or a hole starts).  None: *slen = 0, *sfb = fb + len.  Holes never count as shared.
 * Without the REFLINK feature nothing is shared.  0, -EUCLEAN, -EIO.
 */
int rlfs_reflink_find_shared(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t fb,
			     uint64_t len, uint64_t *sfb, uint64_t *slen);

/* A staged copy-on-write of file blocks [off, off+len): new extents
 * (startoff = file block, startblock = new fsbno), in file order, covering
 * the range exactly. */
struct rlfs_cow {
	uint64_t off, len;          /* file blocks */
	struct rlfs_irec *ext;      /* new blocks */
	uint32_t next, cap;
};

/*
 * Allocate new blocks for [off, off+len) (every block mapped) within tp,
 * near the old blocks, as one extent where possible; at most
 * RLFS_TX_COW_EXTENTS extents (trans_resv.h): after that cow->len is
 * shortened to what was allocated and the caller does that much.  Counts against tp's
 * reservation (the caller reserves len + rlfs_cow_res).  0, -ENOSPC,
 * -ENOMEM, -EUCLEAN.  On error the caller cancels tp and calls
 * rlfs_cow_release.
 */
int rlfs_cow_prepare(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t off,
		     uint64_t len, struct rlfs_cow *cow);
/* Blocks to reserve (besides the len data blocks) for a CoW of a range
 * currently mapped by about nextents extents. */
uint32_t rlfs_cow_res(struct rlfs_inode *ip, uint32_t nextents);
/* Device byte offset of file byte pos (inside cow's range) in the NEW
 * blocks; *contig_bytes: bytes from there that stay contiguous. */
uint64_t rlfs_cow_dev_offset(const struct rlfs_cow *cow, const struct rlfs_mount *mp,
			     uint64_t pos, uint64_t *contig_bytes);
/*
 * Copy the old contents of file blocks [fb, fb+n) (inside cow's range) from
 * the current (old) mapping to the new blocks: written blocks are copied,
 * unwritten blocks become zeros on the device.  0, -EIO.
 */
/*
 * The same for file bytes [pos, end) (inside cow's range, any alignment):
 * copy-around of direct access (fsdax's dax_iomap_copy_around) copies
 * only the parts of the new edge blocks a write does not cover.  Through
 * the mapping (rlfs_dev_map) when there is one.  Both count the bytes in
 * mp->cow_copied_bytes.  0, -ENOMEM, -EIO.
 */
int rlfs_cow_copy_old_bytes(struct rlfs_inode *ip, const struct rlfs_cow *cow, uint64_t pos,
			    uint64_t end);
int rlfs_cow_copy_old(struct rlfs_inode *ip, const struct rlfs_cow *cow, uint64_t fb,
		      uint64_t n);
/*
 * Switch the mapping as deferred work queued on tp (defer.h): a BUI unmap
 * per old extent of cow's range (its blocks lose a reference by CUI when
 * it is finished) and a BUI map per run of new blocks; rlfs_trans_commit
 * finishes them.  The caller keeps ip referenced and its iolock
 * exclusive until the commit returns.  written: the new blocks all hold
 * data (state normal); otherwise each keeps its old state (unshare of
 * unwritten extents).  0, -ENOMEM, -EUCLEAN (a block of the range is not
 * mapped).  Source: xfs_reflink_end_cow_extent.
 */
int rlfs_cow_remap(struct rlfs_trans *tp, struct rlfs_inode *ip, const struct rlfs_cow *cow,
		   bool written);
/* Free the in-core staging list (not the blocks). */
void rlfs_cow_release(struct rlfs_cow *cow);

/*
 * FALLOC_FL_UNSHARE_RANGE on file blocks [fb0, fb1): every shared block in
 * the range gets a private copy (written blocks copied, unwritten stay
 * unwritten), in transactions of bounded size.  Caller holds the iolock
 * exclusively.  Partial progress stays on error.  0, -ENOSPC, -EIO.
 */
int rlfs_reflink_unshare(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1);

/*
 * Read file bytes [pos, end) of ip into buf (end - pos bytes) through the
 * data fork as it is: holes and unwritten extents read as zeros, written
 * extents from the device (the pieces of a fragmented range announced
 * to it first: rlfs_dev_data_prefetch); no EOF clamp.  The caller holds
 * ip->iolock (shared or exclusive).  0 or -EIO.  Used by rlfs_read and by
 * dedupe's compare (file.c).
 */
int rlfs_read_mapped(struct rlfs_inode *ip, uint8_t *buf, uint64_t pos, uint64_t end);
#endif

/*
 * file.c: attribute and data operations of the public API (fs.h):
 * getattr/setattr, read/write, fsync, fallocate, lseek SEEK_DATA/SEEK_HOLE.
 *
 * Data path.  File data goes straight to the device (rlfs_dev_data_pread /
 * rlfs_dev_data_pwrite: pread/pwrite, or memcpy to the mapping of -o dax,
 * lib/dax.c), never through the metadata buffer cache.  Reads need
 * only the shared iolock: the in-core extent list says where the blocks
 * are.  A write that only overwrites written blocks writes the data
 * without the metadata lock, then updates size/times in one short
 * transaction.  A write that needs blocks (holes) or converts unwritten
 * extents does everything in ONE transaction: allocate, zero the parts of
 * new/unwritten edge blocks the write does not cover, write the data,
 * convert unwritten extents, update the inode, commit.  The data write
 * happens while the transaction holds meta_lock, and metadata is written
 * to the device only by rlfs_buf_flush_all (which needs meta_lock and
 * flushes data first), so metadata that points at new blocks never
 * reaches the device before the data in them.
 *
 * Copy-on-write (REFLINK feature).  A block whose refcount is >= 2 is
 * never changed in place: rlfs_write finds the first shared run in its
 * range (rlfs_reflink_find_shared); blocks before it take the paths above,
 * the shared run, and every block the CoW fork covers, goes through
 * cow_write: staged blocks of the CoW fork (cowfork.h: a region rounded
 * to the CoW extent size hint, staged in a transaction of its own), old
 * contents of partially covered edge blocks copied, the new data written,
 * then one remap transaction; whole regions (or region-sized writes) the
 * fork does not touch keep the one-transaction form (cow_write_direct,
 * helpers in reflink.c).  Partial-block zeroing
 * (truncate, punch and zero-range edges) of a shared written block uses the
 * same path with zeros; whole shared blocks are simply unmapped (the
 * release drops a reference).  FALLOC_FL_UNSHARE_RANGE copies every
 * shared block inside EOF (rlfs_reflink_unshare), then preallocates like
 * mode 0.  Without the feature none of this runs.
 *
 * Invariant: bytes past EOF inside the last block, and every written
 * block past EOF, read as zeros on the device.  Truncate down zeroes the
 * tail of the new last block; extending writes zero the uncovered parts of
 * new blocks; so truncate up only sets the size.
 *
 * Model: xfs_file.c / xfs_iops.c (xfs_setattr_size) / xfs_bmap_util.c
 * (xfs_free_file_space, xfs_alloc_file_space) / iomap seek.
 */
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "rlfs.h"
#include "dev.h"
#include "log.h"
#include "bmap.h"
#include "cowfork.h"
#include "inode.h"
#include "refcount.h"
#include "reflink.h"
#include "shift.h"
#include "xattr.h"

/* per-transaction work bounds: the log reservations count on them
 * (trans_resv.h) */
#define ALLOC_BUDGET RLFS_TX_ALLOC_BUDGET /* allocator calls (new extents) per transaction */
#define HOLES_PER_TX RLFS_TX_HOLES        /* holes filled per transaction */
#define UNMAP_PER_TX RLFS_TX_UNMAP_EXTENTS /* extents removed per rolled transaction */
#define FALLOC_CHUNK_BLOCKS ((uint64_t)RLFS_MAX_EXTLEN)
#define COW_CHUNK_BLOCKS RLFS_TX_COW_BLOCKS /* blocks copied-on-write per transaction */
#define APPEND_CHECK_MAX (8u << 20)     /* bytes an append-only rewrite may compare */


static inline uint64_t bmask(const struct rlfs_mount *mp)
{
	return (uint64_t)mp->blocksize - 1;
}

static inline uint64_t irec_endoff(const struct rlfs_irec *r)
{
	return r->startoff + r->blockcount;
}

/* Write zeros to [dev_off, dev_off+len) of the device (memset in the
 * mapping under -o dax, else pwrite of zeros: rlfs_dev_data_zero). */
static int dev_zero(struct rlfs_mount *mp, uint64_t dev_off, uint64_t len)
{
	return rlfs_dev_data_zero(mp->dev, dev_off, len);
}

/*
 * Zero the file bytes [from, to) (inside one block) on the device if that
 * block is mapped and written (holes and unwritten blocks already read as
 * zeros); with even_unwritten also if it is unwritten (it is about to be
 * converted).  Returns 1 if it wrote, 0 if nothing to do, or -errno.
 */
static int zero_block_range(struct rlfs_inode *ip, uint64_t from, uint64_t to,
			    bool even_unwritten)
{
	struct rlfs_mount *mp = ip->mp;
	struct rlfs_irec got;
	bool found;
	if (from >= to)
		return 0;
	uint64_t fb = from >> mp->blocklog;
	rlfs_bmap_lookup(ip, fb, &got, &found);
	if (!found || ((got.state & RLFS_EXT_UNWRITTEN) && !even_unwritten))
		return 0;
	uint64_t dev_off = ((got.startblock + (fb - got.startoff)) << mp->blocklog) +
			   (from & bmask(mp));
	int error = dev_zero(mp, dev_off, to - from);
	return error ? error : 1;
}

/*
 * First run of shared blocks in file blocks [fb, fb+len) (see
 * rlfs_reflink_find_shared), in a read-only transaction of its own.  The
 * answer stays true while the caller holds ip->iolock exclusively: only a
 * clone involving ip makes its blocks shared, and that takes the iolock;
 * others can only make them unshared (which costs a needless CoW at most).
 */
static int find_shared(struct rlfs_inode *ip, uint64_t fb, uint64_t len, uint64_t *sfb,
		       uint64_t *slen)
{
	struct rlfs_trans *tp;
	*sfb = fb + len;
	*slen = 0;
	if (!rlfs_has_reflink(ip->mp) || len == 0)
		return 0;
	int error = rlfs_trans_alloc(ip->mp, &ip->mp->resv.tr_rdonly, 0, 0, &tp);
	if (error)
		return error;
	error = rlfs_reflink_find_shared(tp, ip, fb, len, sfb, slen);
	rlfs_trans_cancel(tp);
	return error;
}

/* After a write of [.., wend): size, times, privileges. */
static void write_update_inode(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t wend,
			       unsigned wflags);

/*
 * Copy-on-write of file bytes [pos, end) through the CoW fork (cowfork.h):
 * the blocks are staged (allocated as a region rounded to the CoW extent
 * size hint, in transactions of their own, unless the fork covers them
 * already), the old contents of partially covered edge blocks copied
 * into the staged ones, buf (NULL: zeros) written there, then ONE remap
 * transaction switches the data fork to the staged blocks (old blocks
 * lose a reference).  The data reaches the device before the remap
 * commits.  is_write: a write (size, times and privileges as
 * rlfs_write_flags with wflags), otherwise a zeroing of a partial block
 * (truncate, punch, zero range).  With gap fill (fill_range) a few
 * not-rewritten blocks next to the range are copied and remapped too.
 * At most COW_CHUNK_BLOCKS blocks and
 * RLFS_TX_COW_EXTENTS remap pieces per call: *done_end gets the end of
 * what was done.  Caller holds ip->iolock exclusively.
 */
/*
 * Before a write reports ENOSPC: give back staged CoW blocks, other
 * files' that are not busy (rlfs_cowfork_gc) and ip's own (the caller
 * holds its iolock; the fork is only a reservation between steps).  True
 * if any were freed: try again.  XFS: xfs_blockgc_free_space on ENOSPC.
 */
static bool enospc_reclaim(struct rlfs_inode *ip)
{
	int64_t n = rlfs_cowfork_gc(ip->mp, 0, ip, false);
	uint64_t own = rlfs_cowfork_inode_blocks(ip);
	if (own && rlfs_cowfork_cancel(ip, 0, UINT64_MAX) == 0)
		n = RLFS_MAX(n, 0) + (int64_t)own;
	return n > 0;
}

/* Every block of [fb0, fb1) is mapped in the data fork. */
static bool all_mapped(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1)
{
	for (uint64_t b = fb0; b < fb1;) {
		struct rlfs_irec got;
		bool found;
		rlfs_bmap_lookup(ip, b, &got, &found);
		if (!found)
			return false;
		b = irec_endoff(&got);
	}
	return true;
}

/* Copy file block fb's contents as the data fork has them (zeros for a
 * hole or an unwritten block) into its staged block in the CoW fork. */
static int copy_old_block(struct rlfs_inode *ip, uint64_t fb)
{
	struct rlfs_mount *mp = ip->mp;
	uint8_t *b = malloc(mp->blocksize);
	uint64_t contig;
	if (!b)
		return -ENOMEM;
	uint64_t dst = rlfs_cowfork_dev_offset(ip, fb << mp->blocklog, &contig);
	int error = rlfs_read_mapped(ip, b, fb << mp->blocklog, (fb + 1) << mp->blocklog);
	if (!error)
		error = rlfs_dev_data_pwrite(mp->dev, b, mp->blocksize, dst);
	if (!error)
		__atomic_fetch_add(&mp->cow_copied_bytes, mp->blocksize, __ATOMIC_RELAXED);
	free(b);
	return error;
}

static uint64_t written_block(struct rlfs_inode *ip, uint64_t fb);

/* Copy the old contents of file bytes [from, to) (inside one block) into
 * the CoW fork's staged block, in the mapping (rlfs_dev_map).  0, -EIO. */
static int copy_old_bytes(struct rlfs_inode *ip, uint64_t from, uint64_t to)
{
	struct rlfs_mount *mp = ip->mp;
	uint64_t contig;
	if (from >= to)
		return 0;
	uint64_t dst = rlfs_cowfork_dev_offset(ip, from, &contig);
	if (dst == UINT64_MAX || contig < to - from)
		return -EIO;
	uint64_t src = written_block(ip, from >> mp->blocklog);
	int error = src ? rlfs_dev_data_copy(mp->dev, dst, (src << mp->blocklog) + (from & bmask(mp)),
					     to - from, NULL, 0)
			: rlfs_dev_data_zero(mp->dev, dst, to - from);
	if (!error)
		__atomic_fetch_add(&mp->cow_copied_bytes, to - from, __ATOMIC_RELAXED);
	return error;
}

/*
 * The old contents of edge block fb of a CoW write of file bytes
 * [pos, end) into its staged block: with direct access copy-around (fsdax
 * "copy range in which data won't be changed"): only the parts of the
 * block outside [pos, end); else the whole block (one aligned write).
 * 0, -ENOMEM, -EIO.
 */
static int copy_old_around(struct rlfs_inode *ip, uint64_t fb, uint64_t pos, uint64_t end)
{
	struct rlfs_mount *mp = ip->mp;
	if (!mp->dev->map)
		return copy_old_block(ip, fb);
	uint64_t b0 = fb << mp->blocklog, b1 = b0 + mp->blocksize;
	int error = copy_old_bytes(ip, b0, RLFS_MIN(RLFS_MAX(pos, b0), b1));
	if (!error)
		error = copy_old_bytes(ip, RLFS_MAX(RLFS_MIN(end, b1), b0), b1);
	return error;
}

/* The same for the new blocks of cow_write_direct's cow. */
static int cow_copy_around(struct rlfs_inode *ip, const struct rlfs_cow *cow, uint64_t fb,
			   uint64_t pos, uint64_t end)
{
	struct rlfs_mount *mp = ip->mp;
	if (!mp->dev->map)
		return rlfs_cow_copy_old(ip, cow, fb, 1);
	uint64_t b0 = fb << mp->blocklog, b1 = b0 + mp->blocksize;
	int error = rlfs_cow_copy_old_bytes(ip, cow, b0, RLFS_MIN(RLFS_MAX(pos, b0), b1));
	if (!error)
		error = rlfs_cow_copy_old_bytes(ip, cow, RLFS_MAX(RLFS_MIN(end, b1), b0), b1);
	return error;
}

/* The data fork's written block at fb, or 0 (hole, unwritten). */
static uint64_t written_block(struct rlfs_inode *ip, uint64_t fb)
{
	struct rlfs_irec got;
	bool found;
	rlfs_bmap_lookup(ip, fb, &got, &found);
	if (!found || (got.state & RLFS_EXT_UNWRITTEN))
		return 0;
	return got.startblock + (fb - got.startoff);
}

/* The CoW fork's staged block at fb, or 0. */
static uint64_t staged_block(struct rlfs_inode *ip, uint64_t fb)
{
	struct rlfs_irec got;
	bool found;
	rlfs_cowfork_lookup(ip, fb, &got, &found);
	return found ? got.startblock + (fb - got.startoff) : 0;
}

/*
 * Gap fill (rlfs_set_cow_fill): the remap range [fb0, fb1) grows over at
 * most mp->cow_fill_blocks not-rewritten blocks on each side when the
 * block beyond them was rewritten out of the same staged run: the staged
 * blocks of the gap continue the run, the data fork maps old written
 * blocks there, and the block just past the gap is the run's next (or
 * previous) physical block.  Returns the grown range in *rb0, *rb1;
 * nothing is changed.  Only inside EOF (ip->size).
 */
static void fill_range(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1, uint64_t *rb0,
		       uint64_t *rb1)
{
	struct rlfs_mount *mp = ip->mp;
	uint64_t k = mp->cow_fill_blocks, eofb = ip->size >> mp->blocklog;
	*rb0 = fb0;
	*rb1 = fb1;
	uint64_t p0 = staged_block(ip, fb0), p1 = staged_block(ip, fb1 - 1);
	for (uint64_t g = 1; p0 && g <= k && g < fb0 && g <= p0; g++) {
		uint64_t b = fb0 - g;
		if (staged_block(ip, b) != p0 - g || !written_block(ip, b))
			break;
		if (written_block(ip, b - 1) == p0 - g - 1) {
			*rb0 = b;
			break;
		}
	}
	for (uint64_t g = 1; p1 && g <= k && fb1 - 1 + g + 1 <= eofb; g++) {
		uint64_t b = fb1 - 1 + g;
		if (staged_block(ip, b) != p1 + g || !written_block(ip, b))
			break;
		if (b + 1 < eofb && written_block(ip, b + 1) == p1 + g + 1) {
			*rb1 = b + 1;
			break;
		}
	}
}

/* The end of a copy-on-write's remap transaction tp: cancelled if error
 * (the remap could not be queued), else the inode updated (a write: size,
 * times, privileges up to end; a zeroing: the data-written mark) and
 * committed.  0 or -errno. */
static int cow_commit(struct rlfs_trans *tp, struct rlfs_inode *ip, int error, uint64_t end,
		      bool is_write, unsigned wflags)
{
	if (error) {
		rlfs_trans_cancel(tp);
		return error;
	}
	if (is_write) {
		write_update_inode(tp, ip, end, wflags);
	} else {
		rlfs_data_written(ip->mp);
		rlfs_trans_log_inode(tp, ip);
	}
	return rlfs_trans_commit(tp);
}

/*
 * Copy-on-write of [pos, end) without the CoW fork, for a range that is
 * whole CoW regions (aligned to the hint at both ends, or ending at EOF)
 * the fork does not touch: nothing would be left staged, so the staging
 * records are skipped and the new blocks are allocated, written and
 * remapped in ONE transaction (rlfs_cow_prepare, rlfs_cow_remap; the new
 * blocks belong to the map intents until mapped, so a crash leaves old or
 * new).  Every block of the range is mapped.  Same contract as
 * cow_write.  A sequential overwrite of a cloned file takes this path.
 */
static int cow_write_direct(struct rlfs_inode *ip, const uint8_t *buf, uint64_t pos,
			    uint64_t end, bool is_write, unsigned wflags, uint64_t *done_end)
{
	struct rlfs_mount *mp = ip->mp;
	struct rlfs_trans *tp;
	struct rlfs_cow cow;
	uint64_t fb0 = pos >> mp->blocklog;
	if (rlfs_b_to_fsb(mp, end) - fb0 > COW_CHUNK_BLOCKS)
		end = (fb0 + COW_CHUNK_BLOCKS) << mp->blocklog;
	uint64_t fb1 = rlfs_b_to_fsb(mp, end);
	uint64_t n = fb1 - fb0;
	uint32_t ne = 0;

	for (uint64_t b = fb0; b < fb1;) {
		struct rlfs_irec got;
		bool found;
		rlfs_bmap_lookup(ip, b, &got, &found);
		if (!found)
			return -EIO; /* caller passed an unmapped range */
		b = irec_endoff(&got);
		if (++ne == RLFS_TX_COW_EXTENTS && b < fb1) {
			/* bounded work (and log) per transaction: the caller
			 * comes back for the rest */
			fb1 = b;
			end = fb1 << mp->blocklog;
			n = fb1 - fb0;
		}
	}
	int error = rlfs_trans_alloc(mp, &mp->resv.tr_cow, (uint32_t)n + rlfs_cow_res(ip, ne), 0, &tp);
	if (error == -ENOSPC) {
		/* nearly full: the estimate does not fit; try with the data
		 * blocks and a little more (a real shortage inside the
		 * transaction cancels it whole, nothing half done) */
		error = rlfs_trans_alloc(mp, &mp->resv.tr_cow, (uint32_t)n + 8, 0, &tp);
	}
	if (error)
		return error;
	rlfs_trans_ijoin(tp, ip);
	error = rlfs_cow_prepare(tp, ip, fb0, n, &cow);
	if (!error && cow.len < n) {
		/* the allocator gave RLFS_TX_COW_EXTENTS pieces first: this
		 * transaction does that much */
		fb1 = fb0 + cow.len;
		end = RLFS_MIN(end, fb1 << mp->blocklog);
		n = cow.len;
	}
	if (!error && (pos & bmask(mp)))
		error = cow_copy_around(ip, &cow, fb0, pos, end);
	if (!error && (end & bmask(mp)) && !(fb1 - 1 == fb0 && (pos & bmask(mp))))
		error = cow_copy_around(ip, &cow, fb1 - 1, pos, end);
	for (uint64_t p = pos; !error && p < end;) {
		uint64_t contig;
		uint64_t dev_off = rlfs_cow_dev_offset(&cow, mp, p, &contig);
		uint64_t chunk = RLFS_MIN(end - p, contig);
		if (buf) {
			error = rlfs_dev_data_pwrite(mp->dev, buf + (p - pos), (size_t)chunk, dev_off);
		} else {
			error = dev_zero(mp, dev_off, chunk);
		}
		p += chunk;
	}
	if (!error)
		error = rlfs_cow_remap(tp, ip, &cow, true);
	rlfs_cow_release(&cow);
	error = cow_commit(tp, ip, error, end, is_write, wflags);
	if (!error)
		*done_end = end;
	return error;
}

static int cow_write(struct rlfs_inode *ip, const uint8_t *buf, uint64_t pos, uint64_t end,
		     bool is_write, unsigned wflags, uint64_t *done_end)
{
	struct rlfs_mount *mp = ip->mp;
	struct rlfs_trans *tp;
	uint64_t fb0 = pos >> mp->blocklog;
	if (rlfs_b_to_fsb(mp, end) - fb0 > COW_CHUNK_BLOCKS)
		end = (fb0 + COW_CHUNK_BLOCKS) << mp->blocklog;
	uint64_t fb1 = rlfs_b_to_fsb(mp, end), covered;
	uint64_t hint = RLFS_MAX(rlfs_cowextsize_hint_blocks(ip), 1u);
	struct rlfs_irec cgot;
	bool cfound;
	rlfs_cowfork_lookup(ip, fb0, &cgot, &cfound);
	uint64_t eofb = rlfs_b_to_fsb(mp, ip->size);
	bool touched = cfound || (cgot.blockcount && cgot.startoff < fb1);
	bool whole = fb0 % hint == 0 && (fb1 % hint == 0 || fb1 >= eofb);
	if (!touched && (whole || fb1 - fb0 >= hint) && all_mapped(ip, fb0, fb1))
		/* whole regions, or a write as large as a region: staging
		 * would leave little or nothing for later writes */
		return cow_write_direct(ip, buf, pos, end, is_write, wflags, done_end);
	/* through the fork: the blocks it covers from fb0 on, or up to the
	 * next region boundary; the caller comes back for the rest, which
	 * may be whole regions again */
	uint64_t run = cfound ? cgot.startoff + cgot.blockcount : fb0;
	uint64_t lim = RLFS_MAX(run, (fb0 / hint + 1) * hint);
	if (fb1 > lim) {
		fb1 = lim;
		end = fb1 << mp->blocklog;
	}

	int error = rlfs_cowfork_stage(ip, fb0, fb1, &covered);
	if (error)
		return error;
	if (covered < fb1) {
		fb1 = covered;
		end = fb1 << mp->blocklog;
	}
	/* bounded work (and log) per remap transaction: the caller comes
	 * back for the rest */
	uint32_t nstaged, nmapped;
	uint64_t rb0, rb1;  /* the remap range: [fb0, fb1) and the gap fill */
	for (;;) {
		fill_range(ip, fb0, fb1, &rb0, &rb1);
		rlfs_cowfork_remap_pieces(ip, rb0, rb1, &nstaged, &nmapped);
		if (fb1 - fb0 == 1 ||
		    (nstaged <= RLFS_TX_COWFORK_EXTENTS && nmapped <= RLFS_TX_COW_EXTENTS))
			break;
		fb1 = fb0 + (fb1 - fb0) / 2;
		end = fb1 << mp->blocklog;
	}
	if (pos & bmask(mp))
		error = copy_old_around(ip, fb0, pos, end);
	if (!error && (end & bmask(mp)) && !(fb1 - 1 == fb0 && (pos & bmask(mp))))
		error = copy_old_around(ip, fb1 - 1, pos, end);
	for (uint64_t b = rb0; !error && b < fb0; b++)
		error = copy_old_block(ip, b);
	for (uint64_t b = fb1; !error && b < rb1; b++)
		error = copy_old_block(ip, b);
	for (uint64_t p = pos; !error && p < end;) {
		uint64_t contig;
		uint64_t dev_off = rlfs_cowfork_dev_offset(ip, p, &contig);
		uint64_t chunk = RLFS_MIN(end - p, contig);
		if (buf)
			error = rlfs_dev_data_pwrite(mp->dev, buf + (p - pos), (size_t)chunk, dev_off);
		else
			error = dev_zero(mp, dev_off, chunk);
		p += chunk;
	}
	if (error)
		return error;  /* the staged blocks stay staged: nothing changed */
	error = rlfs_trans_alloc(mp, &mp->resv.tr_cowfork, rlfs_cow_res(ip, nmapped + nstaged), 0,
				 &tp);
	if (error == -ENOSPC)
		error = rlfs_trans_alloc(mp, &mp->resv.tr_cowfork, 8, RLFS_TRANS_RESERVE, &tp);
	if (error)
		return error;
	error = cow_commit(tp, ip, rlfs_cowfork_remap(tp, ip, rb0, rb1), end, is_write, wflags);
	if (error)
		return error;
	rlfs_cowfork_remapped(ip, rb0, rb1);
	*done_end = end;
	return 0;
}

/*
 * Zero file bytes [from, to) inside one block (truncate's new last block,
 * punch/zero edges): in place, or copy-on-write when the block is written
 * and shared.  1 if it wrote, 0 if nothing to do, or -errno.
 */
static int zero_partial(struct rlfs_inode *ip, uint64_t from, uint64_t to)
{
	struct rlfs_mount *mp = ip->mp;
	if (from >= to)
		return 0;
	if (rlfs_has_reflink(mp)) {
		struct rlfs_irec got;
		bool found;
		uint64_t fb = from >> mp->blocklog, sfb, slen, done;
		rlfs_bmap_lookup(ip, fb, &got, &found);
		if (!found || (got.state & RLFS_EXT_UNWRITTEN))
			return 0;
		int error = find_shared(ip, fb, 1, &sfb, &slen);
		if (error)
			return error;
		if (slen) {
			error = cow_write(ip, NULL, from, to, false, 0, &done);
			return error ? error : 1;
		}
	}
	return zero_block_range(ip, from, to, false);
}

/* Block fb needs its uncovered bytes zeroed when written partially: it is
 * a hole (will be newly allocated) or unwritten. */
static bool block_is_new(struct rlfs_inode *ip, uint64_t fb)
{
	struct rlfs_irec got;
	bool found;
	rlfs_bmap_lookup(ip, fb, &got, &found);
	return !found || (got.state & RLFS_EXT_UNWRITTEN);
}

/*
 * Scan [fb0, fb1): stop after max_holes holes (0 = no limit).  *scan_end is
 * where the scan stopped (fb1, or the end of the last hole counted).
 */
static void scan_range(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1, uint32_t max_holes,
		       uint64_t *hole_blocks, uint32_t *nholes, uint32_t *nunwritten,
		       uint64_t *scan_end)
{
	uint64_t pos = fb0;
	*hole_blocks = 0;
	*nholes = 0;
	*nunwritten = 0;
	while (pos < fb1) {
		struct rlfs_irec got;
		bool found;
		rlfs_bmap_lookup(ip, pos, &got, &found);
		if (found) {
			if (got.state & RLFS_EXT_UNWRITTEN)
				(*nunwritten)++;
			pos = irec_endoff(&got);
			continue;
		}
		uint64_t hend = got.blockcount ? RLFS_MIN(fb1, got.startoff) : fb1;
		*hole_blocks += hend - pos;
		(*nholes)++;
		pos = hend;
		if (max_holes && *nholes >= max_holes)
			break;
	}
	*scan_end = RLFS_MIN(pos, fb1);
}

/*
 * Allocate the holes of [fb0, fb1) in order within tp, at most *budget
 * allocator calls.  *stop = first block of the range left unmapped (fb1
 * when all of it is mapped).
 */
static int alloc_holes(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t fb0,
		       uint64_t fb1, bool unwritten, uint32_t *budget, uint64_t *stop)
{
	uint64_t pos = fb0;
	while (pos < fb1) {
		struct rlfs_irec got;
		bool found;
		rlfs_bmap_lookup(ip, pos, &got, &found);
		if (found) {
			pos = irec_endoff(&got);
			continue;
		}
		uint64_t hend = got.blockcount ? RLFS_MIN(fb1, got.startoff) : fb1;
		uint64_t mapped = 0;
		int error = rlfs_bmap_alloc_range(tp, ip, pos, hend - pos, unwritten, budget,
						  &mapped);
		if (error)
			return error;
		if (mapped < hend - pos) {
			*stop = pos + mapped;
			return 0;
		}
		pos = hend;
	}
	*stop = fb1;
	return 0;
}

/* pwrite/pread the file range [pos, end) through the mapping: every block
 * must be mapped (write) / holes and unwritten read as zeros (read). */
static int write_mapped(struct rlfs_inode *ip, const uint8_t *buf, uint64_t pos, uint64_t end)
{
	struct rlfs_mount *mp = ip->mp;
	while (pos < end) {
		struct rlfs_irec got;
		bool found;
		uint64_t fb = pos >> mp->blocklog;
		rlfs_bmap_lookup(ip, fb, &got, &found);
		if (!found) {
			rlfs_warn("inode %llu: write to unmapped block %llu",
				  (unsigned long long)ip->ino, (unsigned long long)fb);
			return -EIO;
		}
		uint64_t pend = RLFS_MIN(end, irec_endoff(&got) << mp->blocklog);
		uint64_t dev_off = ((got.startblock + (fb - got.startoff)) << mp->blocklog) +
				   (pos & bmask(mp));
		int error = rlfs_dev_data_pwrite(mp->dev, buf, (size_t)(pend - pos), dev_off);
		if (error)
			return error;
		buf += pend - pos;
		pos = pend;
	}
	return 0;
}

/* Pieces of a read mapped (and announced to the device) at once. */
#define READ_PIECES 256

/* One piece of rlfs_read_mapped: file bytes [pos, pend), on the device
 * at dev_off when data (a written extent), else zeros. */
struct read_piece {
	uint64_t pos, pend, dev_off;
	bool data;
};

/*
 * rlfs_read_mapped (reflink.h): map up to READ_PIECES pieces (one extent
 * lookup each), then, when more than one is data, announce them all to
 * the device (rlfs_dev_data_prefetch) so that their reads are in flight
 * together rather than one pread waiting for the disk after another, then
 * read them.  A randomly rewritten clone reads a 1 MiB request as about
 * 75 pieces of 4-8 KiB alternating between two distant areas, a pattern
 * the page cache's own readahead does not follow.
 */
int rlfs_read_mapped(struct rlfs_inode *ip, uint8_t *buf, uint64_t pos, uint64_t end)
{
	struct rlfs_mount *mp = ip->mp;
	struct read_piece p[READ_PIECES];
	const uint64_t start = pos;
	while (pos < end) {
		unsigned n = 0, ndata = 0;
		while (pos < end && n < READ_PIECES) {
			struct rlfs_irec got;
			bool found;
			uint64_t fb = pos >> mp->blocklog;
			struct read_piece *q = &p[n++];
			rlfs_bmap_lookup(ip, fb, &got, &found);
			q->pos = pos;
			q->data = found && !(got.state & RLFS_EXT_UNWRITTEN);
			if (!found)
				q->pend = got.blockcount ? RLFS_MIN(end, got.startoff << mp->blocklog)
							 : end;
			else
				q->pend = RLFS_MIN(end, irec_endoff(&got) << mp->blocklog);
			if (q->data) {
				q->dev_off = ((got.startblock + (fb - got.startoff)) << mp->blocklog) +
					     (pos & bmask(mp));
				ndata++;
			}
			pos = q->pend;
		}
		for (unsigned i = 0; ndata > 1 && i < n; i++)
			if (p[i].data)
				rlfs_dev_data_prefetch(mp->dev, p[i].dev_off, p[i].pend - p[i].pos);
		for (unsigned i = 0; i < n; i++) {
			uint8_t *dst = buf + (p[i].pos - start);
			size_t len = (size_t)(p[i].pend - p[i].pos);
			if (!p[i].data) {
				memset(dst, 0, len);
				continue;
			}
			int error = rlfs_dev_data_pread(mp->dev, dst, len, p[i].dev_off);
			if (error)
				return error;
		}
	}
	return 0;
}

/* How drop_privs clears setuid/setgid. */
#define KILL_SUID       (1u << 0)       /* S_ISUID */
#define KILL_SGID       (1u << 1)       /* S_ISGID, whatever the group bits */
#define KILL_SGID_GX    (1u << 2)       /* S_ISGID if group-executable */

/* Clear the bits kill asks for on a non-directory.  Without group exec,
 * setgid marks mandatory locking and survives KILL_SGID_GX (the kernel's
 * setattr_should_drop_sgid, fs/attr.c; which bits a data change must
 * clear depends on the caller's CAP_FSETID and groups, which only the
 * caller of the library knows). */
static void drop_privs(struct rlfs_inode *ip, unsigned kill)
{
	if (S_ISDIR(ip->mode))
		return;
	uint32_t mode = ip->mode;
	if (kill & KILL_SUID)
		mode &= ~(uint32_t)S_ISUID;
	if ((kill & KILL_SGID) ||
	    ((kill & KILL_SGID_GX) && (mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)))
		mode &= ~(uint32_t)S_ISGID;
	/* store only on a change: the file type is read without the iolock
	 * (iget_reg, fallocate), so do not rewrite the word needlessly */
	if (mode != ip->mode)
		ip->mode = mode;
}

/* Get a regular file for data ops: -EISDIR for directories, -EINVAL for
 * other non-regular files. */
static int iget_reg(struct rlfs_mount *mp, uint64_t ino, struct rlfs_inode **ipp)
{
	int error = rlfs_iget(mp, ino, ipp);
	if (error)
		return error;
	if (!S_ISREG((*ipp)->mode)) {
		error = S_ISDIR((*ipp)->mode) ? -EISDIR : -EINVAL;
		rlfs_irele(*ipp);
		*ipp = NULL;
		return error;
	}
	if (!(*ipp)->ext_loaded) {
		rlfs_irele(*ipp);
		*ipp = NULL;
		return -EUCLEAN;
	}
	return 0;
}

/*
 * Unmap [fb0, fb0+len) freeing the blocks, inside *tpp, rolling the
 * transaction every UNMAP_PER_TX extents (ip is joined again after each
 * roll).  On error the current transaction is cancelled and *tpp is NULL.
 */
static int unmap_rolled(struct rlfs_trans **tpp, struct rlfs_inode *ip, uint64_t fb0,
			uint64_t len)
{
	bool done = false;
	uint32_t res = rlfs_bmap_res(ip, UNMAP_PER_TX + 1);
	while (!done) {
		int error = rlfs_bmap_unmap(*tpp, ip, fb0, len, RLFS_BUNMAP_DEFER, UNMAP_PER_TX, &done);
		if (error) {
			rlfs_trans_cancel(*tpp);
			*tpp = NULL;
			return error;
		}
		rlfs_trans_log_inode(*tpp, ip);
		if (!done) {
			error = rlfs_trans_roll(tpp, res);
			if (error) {
				*tpp = NULL;
				return error;
			}
			rlfs_trans_ijoin(*tpp, ip);
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* getattr / setattr                                                    */
/* ------------------------------------------------------------------ */

int rlfs_getattr(struct rlfs_mount *mp, uint64_t ino, struct stat *st)
{
	struct rlfs_inode *ip;
	int error = rlfs_iget(mp, ino, &ip);
	if (error)
		return error;
	pthread_rwlock_rdlock(&ip->iolock);
	rlfs_inode_stat(ip, st);
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return 0;
}

int rlfs_setattr(struct rlfs_mount *mp, uint64_t ino, const struct stat *st,
		 unsigned valid, struct stat *out)
{
	struct rlfs_inode *ip;
	struct rlfs_trans *tp = NULL;
	struct timespec now;
	bool zeroed = false;
	int error;

	if (mp->flags & RLFS_MOUNT_RDONLY)
		return -EROFS;
	error = rlfs_iget(mp, ino, &ip);
	if (error)
		return error;
	pthread_rwlock_wrlock(&ip->iolock);

	uint64_t newsize = ip->size;
	if (valid & RLFS_SET_SIZE) {
		if (S_ISDIR(ip->mode)) {
			error = -EISDIR;
			goto out;
		}
		if (!S_ISREG(ip->mode)) {
			error = -EINVAL;
			goto out;
		}
		if (st->st_size < 0) {
			error = -EINVAL;
			goto out;
		}
		if ((uint64_t)st->st_size > mp->maxbytes) {
			error = -EFBIG;
			goto out;
		}
		newsize = (uint64_t)st->st_size;
	}
	/* notify_change: immutable or append-only inodes refuse attribute
	 * changes; append-only still allows setting times to "now" (which a
	 * FUSE kernel sends with an explicit ctime: it alone is no change
	 * the kernel would refuse). */
	unsigned strict = RLFS_SET_MODE | RLFS_SET_UID | RLFS_SET_GID | RLFS_SET_SIZE |
			  RLFS_SET_ATIME | RLFS_SET_MTIME;
	if ((ip->flags & RLFS_DIFLAG_IMMUTABLE) && valid) {
		error = -EPERM;
		goto out;
	}
	if ((ip->flags & RLFS_DIFLAG_APPEND) && (valid & strict)) {
		error = -EPERM;
		goto out;
	}

	bool shrink = (valid & RLFS_SET_SIZE) &&
		      (newsize <= ip->size || (valid & RLFS_SET_TRIM_EOF));
	if ((valid & RLFS_SET_SIZE) && newsize < ip->size && (newsize & bmask(mp))) {
		/* zero the tail of the new last block (truncate_pagecache_range) */
		error = zero_partial(ip, newsize, (newsize | bmask(mp)) + 1);
		if (error < 0)
			goto out;
		zeroed = error > 0;
	}
	error = rlfs_trans_alloc(mp, shrink ? &mp->resv.tr_itruncate : &mp->resv.tr_setattr, shrink ? rlfs_bmap_res(ip, UNMAP_PER_TX + 1) : 0,
				 shrink ? RLFS_TRANS_RESERVE : 0, &tp);
	if (error)
		goto out;
	rlfs_trans_ijoin(tp, ip);
	rlfs_now(&now);
	if (valid & RLFS_SET_MODE) {
		ip->mode = (ip->mode & S_IFMT) | ((uint32_t)st->st_mode & 07777);
		/* posix_acl_chmod: the access ACL follows (in place) */
		error = rlfs_acl_chmod(tp, ip);
		if (error) {
			rlfs_trans_cancel(tp);
			goto out;
		}
	}
	if (valid & RLFS_SET_UID)
		ip->uid = st->st_uid;
	if (valid & RLFS_SET_GID)
		ip->gid = st->st_gid;
	if (!(valid & RLFS_SET_MODE)) {
		unsigned kill = 0;
		if (valid & (RLFS_SET_UID | RLFS_SET_GID | RLFS_SET_KILL_SUIDGID))
			kill |= KILL_SUID | KILL_SGID_GX;
		if (valid & RLFS_SET_KILL_SUID)
			kill |= KILL_SUID;
		if (valid & RLFS_SET_KILL_SGID)
			kill |= KILL_SGID;
		drop_privs(ip, kill);
	}
	if (valid & RLFS_SET_ATIME_NOW)
		ip->atime = now;
	else if (valid & RLFS_SET_ATIME)
		ip->atime = st->st_atim;
	if (valid & RLFS_SET_MTIME_NOW)
		ip->mtime = now;
	else if (valid & RLFS_SET_MTIME)
		ip->mtime = st->st_mtim;
	if (valid & RLFS_SET_SIZE) {
		uint64_t oldsize = ip->size;
		if (newsize != oldsize) {
			if (!(valid & (RLFS_SET_MTIME | RLFS_SET_MTIME_NOW)))
				ip->mtime = now;
			ip->size = newsize;
			rlfs_trans_log_inode(tp, ip);
		}
		/* xfs_setattr_size: a truncate that does not grow the file
		 * frees every block past the new EOF, preallocations too */
		if (newsize <= oldsize || (valid & RLFS_SET_TRIM_EOF)) {
			uint64_t fb = rlfs_b_to_fsb(mp, newsize);
			error = unmap_rolled(&tp, ip, fb, UINT64_MAX - fb);
			if (error)
				goto out;
		}
	}
	ip->ctime = (valid & RLFS_SET_CTIME) ? st->st_ctim : now;
	if (zeroed)
		rlfs_data_written(mp);
	rlfs_trans_log_inode(tp, ip);
	error = rlfs_trans_commit(tp);
	tp = NULL;
	if (!error && (valid & RLFS_SET_SIZE) && rlfs_cowfork_inode_blocks(ip)) {
		/* staged CoW blocks past the new EOF are not needed
		 * (xfs_itruncate_extents: xfs_reflink_cancel_cow_blocks) */
		int cerr = rlfs_cowfork_cancel(ip, rlfs_b_to_fsb(mp, ip->size), UINT64_MAX);
		if (cerr)
			rlfs_warn("ino %llu: giving back staged CoW blocks past EOF failed (%s)",
				  (unsigned long long)ip->ino, strerror(-cerr));
	}
	if (!error && out)
		rlfs_inode_stat(ip, out);
out:
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return error;
}

/* ------------------------------------------------------------------ */
/* read / write                                                         */
/* ------------------------------------------------------------------ */

/*
 * An append-only file takes writes at its end only.  The FUSE writeback
 * cache writes whole pages, so data appended to a partial last page comes
 * back with the bytes before the old end again: such a write is an append
 * when every byte it has below the end equals what the file holds
 * (read and compared here).  0, or -EPERM (a real overwrite, or a write
 * starting past the end), -ENOMEM, -EIO.  Under ip's iolock.
 */
static int append_rewrite_ok(struct rlfs_inode *ip, const void *buf, uint64_t off, size_t size)
{
	if (off > ip->size || size == 0)
		return -EPERM;
	uint64_t n = RLFS_MIN((uint64_t)size, ip->size - off);
	if (n > APPEND_CHECK_MAX)
		return -EPERM;
	uint8_t *old = malloc(n);
	if (!old)
		return -ENOMEM;
	int error = rlfs_read_mapped(ip, old, off, off + n);
	if (!error && memcmp(old, buf, n) != 0)
		error = -EPERM;
	free(old);
	return error;
}

ssize_t rlfs_read(struct rlfs_mount *mp, uint64_t ino, void *buf, size_t size, off_t off)
{
	struct rlfs_inode *ip;
	ssize_t ret;

	if (off < 0)
		return -EINVAL;
	int error = iget_reg(mp, ino, &ip);
	if (error)
		return error;
	pthread_rwlock_rdlock(&ip->iolock);
	if ((uint64_t)off >= ip->size || size == 0) {
		ret = 0;
	} else {
		uint64_t n = RLFS_MIN((uint64_t)size, ip->size - (uint64_t)off);
		if (n > SSIZE_MAX)
			n = SSIZE_MAX;
		error = rlfs_read_mapped(ip, buf, (uint64_t)off, (uint64_t)off + n);
		ret = error ? error : (ssize_t)n;
	}
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return ret;
}

/* After a write of [.., wend): size; unless wflags has RLFS_WRITE_CACHED,
 * times; setuid/setgid as the RLFS_WRITE_KILL_* bits say.  The inode is
 * logged only if one of them changed: a cached overwrite inside EOF (FUSE
 * writeback of a rewritten page) leaves the inode core alone. */
static void write_update_inode(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t wend,
			       unsigned wflags)
{
	bool changed = false;
	if (wend > ip->size) {
		ip->size = wend;
		changed = true;
	}
	if (!(wflags & RLFS_WRITE_CACHED)) {
		struct timespec now;
		rlfs_now(&now);
		ip->mtime = ip->ctime = now;
		changed = true;
	}
	unsigned kill = 0;
	if (wflags & RLFS_WRITE_KILL_SUIDGID)
		kill |= KILL_SUID | KILL_SGID_GX;
	if (wflags & RLFS_WRITE_KILL_SUID)
		kill |= KILL_SUID;
	if (wflags & RLFS_WRITE_KILL_SGID)
		kill |= KILL_SGID;
	if (kill) {
		uint32_t before = ip->mode;
		drop_privs(ip, kill);
		changed |= ip->mode != before;
	}
	rlfs_data_written(tp->mp);
	ip->data_dirty = true;
	if (changed)
		rlfs_trans_log_inode(tp, ip);
}

ssize_t rlfs_write(struct rlfs_mount *mp, uint64_t ino, const void *buf, size_t size,
		   off_t off)
{
	return rlfs_write_flags(mp, ino, buf, size, off, RLFS_WRITE_KILL_SUIDGID);
}

static ssize_t write_flags(struct rlfs_mount *mp, uint64_t ino, const void *buf, size_t size,
			   off_t off, unsigned wflags)
{
	struct rlfs_inode *ip;
	struct rlfs_trans *tp;
	const uint8_t *src = buf;
	uint64_t pos, end, written_end = 0;
	bool need_update = false;
	int error;

	if (off < 0)
		return -EINVAL;
	if (mp->flags & RLFS_MOUNT_RDONLY)
		return -EROFS;
	error = iget_reg(mp, ino, &ip);
	if (error)
		return error;
	pthread_rwlock_wrlock(&ip->iolock);
	if (ip->flags & RLFS_DIFLAG_IMMUTABLE) {
		error = -EPERM;
		goto out;
	}
	if ((ip->flags & RLFS_DIFLAG_APPEND) && (uint64_t)off != ip->size) {
		error = append_rewrite_ok(ip, buf, (uint64_t)off, size);
		if (error)
			goto out;
	}
	if (size == 0)
		goto out;
	if ((uint64_t)off >= mp->maxbytes) {
		error = -EFBIG;
		goto out;
	}
	if (size > SSIZE_MAX)
		size = SSIZE_MAX;
	if ((uint64_t)size > mp->maxbytes - (uint64_t)off)
		size = (size_t)(mp->maxbytes - (uint64_t)off);

	pos = (uint64_t)off;
	end = pos + size;
	unsigned reclaims = 0;  /* CoW GC passes before ENOSPC is final */
	while (pos < end) {
		uint64_t fb0 = pos >> mp->blocklog;
		uint64_t fb1 = rlfs_b_to_fsb(mp, end);
		uint64_t iend = end; /* end of this iteration's part */
		uint64_t hole_blocks, scan_end;
		uint32_t nholes, nunwritten;

		if (rlfs_has_reflink(mp)) {
			/* shared blocks, and every block the CoW fork covers
			 * (promotion: the staged region stays contiguous), are
			 * copied on write; the rest in place */
			uint64_t sfb, slen;
			struct rlfs_irec cgot;
			bool cfound;
			rlfs_cowfork_lookup(ip, fb0, &cgot, &cfound);
			if (cfound) {
				sfb = fb0;
				slen = cgot.startoff + cgot.blockcount - fb0;
			} else {
				error = find_shared(ip, fb0, fb1 - fb0, &sfb, &slen);
				if (error)
					break;
				if (cgot.blockcount && cgot.startoff < fb1 &&
				    (!slen || cgot.startoff < sfb)) {
					/* in place up to the fork's next extent */
					sfb = cgot.startoff;
					slen = 0;
					iend = RLFS_MIN(iend, sfb << mp->blocklog);
					fb1 = sfb;
				}
			}
			if (slen && sfb == fb0) {
				uint64_t cend = RLFS_MIN(end, (sfb + slen) << mp->blocklog), done;
				error = cow_write(ip, src + (pos - (uint64_t)off), pos, cend, true,
						  wflags, &done);
				if (error)
					break;
				pos = done;
				written_end = done;
				need_update = false;
				continue;
			}
			if (slen) {
				iend = sfb << mp->blocklog;
				fb1 = sfb;
			}
		}

		scan_range(ip, fb0, fb1, HOLES_PER_TX, &hole_blocks, &nholes, &nunwritten,
			   &scan_end);
		if (hole_blocks == 0 && nunwritten == 0 && scan_end == fb1) {
			/* pure overwrite: no metadata lock for the data */
			error = write_mapped(ip, src + (pos - (uint64_t)off), pos, iend);
			if (error)
				break;
			pos = iend;
			written_end = iend;
			need_update = true;
			continue;
		}

		/*
		 * Holes or unwritten extents in the range.  Three steps, so
		 * that the metadata lock (every transaction holds it) is not
		 * held while the data goes to the device: other files'
		 * metadata and allocating writes go on meanwhile.
		 *  1. allocate the holes as unwritten extents (a crash, or a
		 *     metadata flush, before step 3 shows zeros there, never
		 *     another file's old blocks);
		 *  2. write the data (and zero the new parts of partially
		 *     written edge blocks) under the iolock only;
		 *  3. convert the range to written and update size and times,
		 *     in a transaction that may use the reserve pool, as
		 *     XFS's unwritten conversion does (xfs_iomap_write_unwritten),
		 *     so that data already on the device does not fail ENOSPC.
		 * If step 2 or 3 fails the blocks stay allocated and unwritten
		 * (they read as zeros, like fallocate's), as after a failed
		 * direct write on XFS.
		 */
		uint64_t sub_fb1 = scan_end;
		bool head_new = (pos & bmask(mp)) && block_is_new(ip, fb0);
		bool tail_new = (iend & bmask(mp)) && block_is_new(ip, fb1 - 1);
		uint64_t stop = sub_fb1;
		if (hole_blocks) {
			uint32_t budget = ALLOC_BUDGET + nholes;
			uint64_t res = hole_blocks + rlfs_bmap_res(ip, budget + 2);
			if (res > UINT32_MAX) {
				error = -ENOSPC;
				break;
			}
			error = rlfs_trans_alloc(mp, &mp->resv.tr_write, (uint32_t)res, 0, &tp);
			if (error == -ENOSPC && reclaims < 3 && enospc_reclaim(ip)) {
				reclaims++;
				error = 0;
				continue;
			}
			if (error)
				break;
			rlfs_trans_ijoin(tp, ip);
			error = alloc_holes(tp, ip, fb0, sub_fb1, true, &budget, &stop);
			if (!error && stop <= fb0)
				error = -ENOSPC;
			if (error) {
				rlfs_trans_cancel(tp);
				if (error == -ENOSPC && reclaims < 3 && enospc_reclaim(ip)) {
					reclaims++;
					error = 0;
					continue;
				}
				break;
			}
			error = rlfs_trans_commit(tp);
			if (error)
				break;
		}
		uint64_t wend = stop >= fb1 ? iend : RLFS_MIN(iend, stop << mp->blocklog);
		if (head_new) {
			error = zero_block_range(ip, pos & ~bmask(mp), pos, true);
			if (error < 0)
				break;
		}
		if (tail_new && wend == iend) {
			error = zero_block_range(ip, iend, (iend | bmask(mp)) + 1, true);
			if (error < 0)
				break;
		}
		error = write_mapped(ip, src + (pos - (uint64_t)off), pos, wend);
		if (error)
			break;
		uint64_t cb1 = rlfs_b_to_fsb(mp, wend);
		/* every extent of [fb0, cb1) may be unwritten and split in two */
		error = rlfs_trans_alloc(mp, &mp->resv.tr_write, rlfs_bmap_res(ip, 2 * (nholes + nunwritten) + 2),
					 RLFS_TRANS_RESERVE, &tp);
		if (error)
			break;
		rlfs_trans_ijoin(tp, ip);
		error = rlfs_bmap_convert_written(tp, ip, fb0, cb1 - fb0);
		if (error) {
			rlfs_trans_cancel(tp);
			break;
		}
		write_update_inode(tp, ip, wend, wflags);
		error = rlfs_trans_commit(tp);
		if (error)
			break;
		pos = wend;
		written_end = wend;
		need_update = false;
	}
	if (need_update) {
		int e2 = rlfs_trans_alloc(mp, &mp->resv.tr_ichange, 0, 0, &tp);
		if (!e2) {
			rlfs_trans_ijoin(tp, ip);
			write_update_inode(tp, ip, written_end, wflags);
			e2 = rlfs_trans_commit(tp);
		}
		if (e2 && !error)
			error = e2;
	}
out:
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	if (written_end > (uint64_t)off)
		return (ssize_t)(written_end - (uint64_t)off);
	return error;
}

/* Fewer than need_blocks left outside the writeback reserve: give idle
 * staged CoW blocks back (rlfs_cowfork_gc: every file whose iolock is
 * free; a file being written is skipped, so no staged block a write is
 * using goes). */
static void writeback_reclaim(struct rlfs_mount *mp, uint64_t need_blocks)
{
	if (rlfs_avail_blocks_hint(mp) < (int64_t)need_blocks && rlfs_cowfork_staged_blocks(mp) > 0 &&
	    !rlfs_mount_is_rdonly(mp))
		(void)rlfs_cowfork_gc(mp, 0, NULL, false);
}

ssize_t rlfs_write_flags(struct rlfs_mount *mp, uint64_t ino, const void *buf, size_t size,
			 off_t off, unsigned wflags)
{
	/* writeback of accepted pages may use the writeback reserve; before
	 * it dips into it, idle staged CoW blocks (of any file not being
	 * written at that moment) go back (what ENOSPC makes an uncached
	 * write do: enospc_reclaim, gc_for; XFS's xfs_blockgc_free_space),
	 * so the reserve is not spent while staged space nobody writes into
	 * could be had */
	if (wflags & RLFS_WRITE_CACHED) {
		writeback_reclaim(mp, ((uint64_t)size >> mp->blocklog) + 2);
		rlfs_trans_writeback_begin();
	}
	ssize_t n = write_flags(mp, ino, buf, size, off, wflags);
	if (wflags & RLFS_WRITE_CACHED) {
		rlfs_trans_writeback_end();
		/* and after it, for what its CoW staging (rounded out to the
		 * cowextsize hint) took beyond its size: the caller (the
		 * daemon) stops cached writers when only the reserve is left */
		writeback_reclaim(mp, 1);
	}
	return n;
}

void rlfs_set_writeback_reserve(struct rlfs_mount *mp, uint64_t bytes)
{
	uint64_t blocks = (bytes + mp->blocksize - 1) / mp->blocksize;
	/* never more than half the filesystem: a reserve that size would
	 * leave nothing for anything but writeback */
	blocks = RLFS_MIN(blocks, mp->dblocks / 2);
	__atomic_store_n(&mp->wb_resv_blocks, blocks, __ATOMIC_RELAXED);
}

int64_t rlfs_avail_blocks_hint(struct rlfs_mount *mp)
{
	return __atomic_load_n(&mp->fdblocks, __ATOMIC_RELAXED) - (int64_t)mp->resblks -
	       (int64_t)__atomic_load_n(&mp->wb_resv_blocks, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ */
/* fsync                                                                */
/* ------------------------------------------------------------------ */

/*
 * xfs_file_fsync: force the log only up to the CIL context that last
 * changed the inode (ili_commit_seq), or for fdatasync of a file the last
 * change fdatasync needs (ili_datasync_seq: size, block map, not
 * timestamps alone); a directory's sequence covers its entries.  If that is
 * durable already, no log write: only a device flush when file data was
 * written since the last one.  File data always reaches the device before
 * the checkpoint.  The device flushes run without meta_lock: file data
 * written so far is flushed before the lock is taken, the checkpoint is
 * written under it and flushed after it is dropped
 * (rlfs_log_force_seq_begin / _end), so other threads' transactions do
 * not wait for this fsync's flushes.  Without a log (v1), for an inode
 * that cannot be loaded, or when the superblock's error record changed
 * (every metadata flush writes it), everything is flushed, as sync.
 */
int rlfs_fsync(struct rlfs_mount *mp, uint64_t ino, int datasync)
{
	struct rlfs_trans *tp;
	struct rlfs_inode *ip = NULL;
	int error;

	if (mp->flags & RLFS_MOUNT_RDONLY)
		return 0;
	if (rlfs_iget(mp, ino, &ip) == 0 && ip)
		ip->data_dirty = false;
	/* a changed error record goes out with any metadata flush
	 * (rlfs_errrec_stage): that one takes the full path */
	pthread_mutex_lock(&mp->err_lock);
	bool err_pending = mp->err_track && mp->err_seq != mp->err_staged_seq;
	pthread_mutex_unlock(&mp->err_lock);
	if (mp->log && ip && !err_pending) {
		/* every data write that returned before this fsync is counted
		 * here; flushed before meta_lock is taken */
		uint64_t dsnap = __atomic_load_n(&mp->data_dirty, __ATOMIC_ACQUIRE);
		bool pre = false;
		error = 0;
		if (__atomic_load_n(&mp->data_flushed, __ATOMIC_ACQUIRE) < dsnap) {
			error = rlfs_dev_flush(mp->dev);
			pre = !error;
		}
		struct rlfs_log_ticket ticket = { 0 };
		if (!error) {
			/* concurrent fsyncs queue on meta_lock; those behind
			 * one that wrote the CIL find their sequence written
			 * and share its flush (group commit) */
			rlfs_meta_lock(mp);
			if (pre)
				rlfs_data_flushed(mp, dsnap);
			bool dsync = datasync && !S_ISDIR(ip->mode);
			error = rlfs_log_force_seq_begin(mp, dsync ? ip->li.datasync_seq :
								     ip->li.commit_seq, dsnap, &ticket);
			pthread_mutex_unlock(&mp->meta_lock);
		}
		if (!error)
			error = rlfs_log_force_seq_end(mp, &ticket);
	} else {
		error = rlfs_trans_alloc(mp, &mp->resv.tr_sb, 0, 0, &tp);
		if (!error) {
			error = rlfs_buf_flush_all(mp);
			rlfs_trans_cancel(tp);
		}
	}
	if (ip)
		rlfs_irele(ip);
	return error;
}

/* ------------------------------------------------------------------ */
/* fallocate                                                            */
/* ------------------------------------------------------------------ */

/* Allocate unwritten extents for the holes of [fb0, fb1), several
 * transactions.  Partial progress stays on error (as XFS). */
static int falloc_range(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1)
{
	struct rlfs_mount *mp = ip->mp;
	uint64_t pos = fb0;
	while (pos < fb1) {
		uint64_t hole_blocks, scan_end, q = RLFS_MIN(fb1, pos + FALLOC_CHUNK_BLOCKS);
		uint32_t nholes, nunw;
		scan_range(ip, pos, q, HOLES_PER_TX, &hole_blocks, &nholes, &nunw, &scan_end);
		if (hole_blocks == 0) {
			pos = scan_end;
			continue;
		}
		uint32_t budget = ALLOC_BUDGET + nholes;
		struct rlfs_trans *tp;
		int error = rlfs_trans_alloc(mp, &mp->resv.tr_falloc, (uint32_t)(hole_blocks +
							   rlfs_bmap_res(ip, budget + 2)), 0, &tp);
		if (error)
			return error;
		rlfs_trans_ijoin(tp, ip);
		uint64_t stop;
		error = alloc_holes(tp, ip, pos, scan_end, true, &budget, &stop);
		if (!error && stop <= pos)
			error = -ENOSPC;
		if (error) {
			rlfs_trans_cancel(tp);
			return error;
		}
		rlfs_trans_log_inode(tp, ip);
		error = rlfs_trans_commit(tp);
		if (error)
			return error;
		pos = stop;
	}
	return 0;
}

/* Punch whole blocks [fb0, fb1) in rolled transactions. */
static int punch_blocks(struct rlfs_inode *ip, uint64_t fb0, uint64_t fb1)
{
	struct rlfs_trans *tp;
	if (fb0 >= fb1)
		return 0;
	int error = rlfs_trans_alloc(ip->mp, &ip->mp->resv.tr_punch, rlfs_bmap_res(ip, UNMAP_PER_TX + 1),
				     RLFS_TRANS_RESERVE, &tp);
	if (error)
		return error;
	rlfs_trans_ijoin(tp, ip);
	error = unmap_rolled(&tp, ip, fb0, fb1 - fb0);
	if (error)
		return error;
	return rlfs_trans_commit(tp);
}

/* Zero the partial blocks at the edges of [off, end) on the device. */
static int zero_edges(struct rlfs_inode *ip, uint64_t off, uint64_t end, bool *wrote)
{
	struct rlfs_mount *mp = ip->mp;
	int r;
	uint64_t head_end = (off | bmask(mp)) + 1; /* end of off's block */
	if (off & bmask(mp)) {
		r = zero_partial(ip, off, RLFS_MIN(end, head_end));
		if (r < 0)
			return r;
		*wrote |= r > 0;
		if (end <= head_end)
			return 0;
	}
	if (end & bmask(mp)) {
		uint64_t tstart = end & ~bmask(mp);
		if (tstart >= off) {
			r = zero_partial(ip, RLFS_MAX(tstart, off), end);
			if (r < 0)
				return r;
			*wrote |= r > 0;
		}
	}
	return 0;
}

/*
 * FALLOC_FL_COLLAPSE_RANGE / FALLOC_FL_INSERT_RANGE on [off, off+len)
 * (bytes), iolock held exclusively: xfs_file_fallocate's checks, in its
 * order, then the crash-atomic shift (shift.h).  -EINVAL: off or len not
 * a multiple of the block size; a collapse reaching EOF (off + len >=
 * size: that is a truncate); an insert at or past EOF.  -EFBIG: the
 * inserted size past the largest file size.
 */
static int falloc_shift(struct rlfs_inode *ip, int mode, uint64_t off, uint64_t len)
{
	struct rlfs_mount *mp = ip->mp;
	uint64_t size = ip->size;
	if ((off | len) & bmask(mp))
		return -EINVAL;
	if (mode & FALLOC_FL_COLLAPSE_RANGE) {
		if (off + len >= size)
			return -EINVAL;
		return rlfs_shift_range(ip, true, off >> mp->blocklog, len >> mp->blocklog,
					size - len);
	}
	if (mp->maxbytes - size < len)
		return -EFBIG;
	if (off >= size)
		return -EINVAL;
	return rlfs_shift_range(ip, false, off >> mp->blocklog, len >> mp->blocklog, size + len);
}

int rlfs_fallocate(struct rlfs_mount *mp, uint64_t ino, int mode, off_t off, off_t len)
{
	struct rlfs_inode *ip;
	struct rlfs_trans *tp;
	bool wrote = false;
	int error;

	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE |
		     FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE))
		return -EOPNOTSUPP;
	/* vfs_fallocate (Linux 6.15 on, where the modes are exclusive):
	 * collapse and insert combine with nothing, KEEP_SIZE included
	 * (-EOPNOTSUPP; earlier kernels said -EINVAL) */
	if (((mode & FALLOC_FL_COLLAPSE_RANGE) && (mode & ~FALLOC_FL_COLLAPSE_RANGE)) ||
	    ((mode & FALLOC_FL_INSERT_RANGE) && (mode & ~FALLOC_FL_INSERT_RANGE)))
		return -EOPNOTSUPP;
	/* vfs_fallocate: unshare combines only with KEEP_SIZE */
	if ((mode & FALLOC_FL_UNSHARE_RANGE) &&
	    (mode & ~(FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE)))
		return -EINVAL;
	if ((mode & FALLOC_FL_PUNCH_HOLE) &&
	    ((mode & FALLOC_FL_ZERO_RANGE) || !(mode & FALLOC_FL_KEEP_SIZE)))
		return -EOPNOTSUPP;
	if (off < 0 || len <= 0)
		return -EINVAL;
	if (mp->flags & RLFS_MOUNT_RDONLY)
		return -EROFS;
	error = rlfs_iget(mp, ino, &ip);
	if (error)
		return error;
	if (!S_ISREG(ip->mode)) {
		error = S_ISDIR(ip->mode) ? -EISDIR : -ENODEV;
		rlfs_irele(ip);
		return error;
	}
	if ((uint64_t)off > mp->maxbytes || (uint64_t)len > mp->maxbytes - (uint64_t)off) {
		rlfs_irele(ip);
		return -EFBIG;
	}
	pthread_rwlock_wrlock(&ip->iolock);
	if ((ip->flags & RLFS_DIFLAG_IMMUTABLE) ||
	    ((ip->flags & RLFS_DIFLAG_APPEND) && (mode & ~FALLOC_FL_KEEP_SIZE))) {
		error = -EPERM;
		goto out;
	}
	if (!ip->ext_loaded) {
		error = -EUCLEAN;
		goto out;
	}
	uint64_t start = (uint64_t)off, end = start + (uint64_t)len;
	if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) {
		error = falloc_shift(ip, mode, start, (uint64_t)len);
		goto out;
	}
	uint64_t fb_in0 = rlfs_b_to_fsb(mp, start);          /* first whole block */
	uint64_t fb_in1 = end >> mp->blocklog;               /* end of whole blocks */

	if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		error = zero_edges(ip, start, end, &wrote);
		if (!error && fb_in0 < fb_in1)
			error = punch_blocks(ip, fb_in0, fb_in1);
		if (!error && (mode & FALLOC_FL_ZERO_RANGE) && fb_in0 < fb_in1)
			error = falloc_range(ip, fb_in0, fb_in1);
	} else if (mode & FALLOC_FL_UNSHARE_RANGE) {
		/* xfs_reflink_unshare (within EOF), then preallocate like mode 0 */
		uint64_t uend = RLFS_MIN(end, ip->size);
		if (start < uend) {
			error = rlfs_reflink_unshare(ip, start >> mp->blocklog,
						     rlfs_b_to_fsb(mp, uend));
			wrote = true;
		}
		if (!error)
			error = falloc_range(ip, start >> mp->blocklog, rlfs_b_to_fsb(mp, end));
	} else {
		error = falloc_range(ip, start >> mp->blocklog, rlfs_b_to_fsb(mp, end));
	}
	if (error && !wrote)
		goto out;
	/* size, times (file_modified), dirty data */
	int e2 = rlfs_trans_alloc(mp, &mp->resv.tr_ichange, 0, 0, &tp);
	if (!e2) {
		struct timespec now;
		rlfs_trans_ijoin(tp, ip);
		rlfs_now(&now);
		if (!error && !(mode & FALLOC_FL_KEEP_SIZE) && end > ip->size)
			ip->size = end;
		ip->mtime = ip->ctime = now;
		if (wrote)
			rlfs_data_written(mp);
		rlfs_trans_log_inode(tp, ip);
		e2 = rlfs_trans_commit(tp);
	}
	if (!error)
		error = e2;
out:
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return error;
}

/* ------------------------------------------------------------------ */
/* lseek                                                                */
/* ------------------------------------------------------------------ */

off_t rlfs_lseek(struct rlfs_mount *mp, uint64_t ino, off_t off, int whence)
{
	struct rlfs_inode *ip;
	off_t ret;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	int error = iget_reg(mp, ino, &ip);
	if (error)
		return error;
	pthread_rwlock_rdlock(&ip->iolock);
	uint64_t size = ip->size;
	if (off < 0 || (uint64_t)off >= size) {
		ret = -ENXIO;
		goto out;
	}
	uint64_t fb = (uint64_t)off >> mp->blocklog;
	struct rlfs_irec got;
	bool found;
	rlfs_bmap_lookup(ip, fb, &got, &found);
	if (whence == SEEK_DATA) {
		if (found) {
			ret = off;
		} else if (got.blockcount && (got.startoff << mp->blocklog) < size) {
			ret = (off_t)(got.startoff << mp->blocklog);
		} else {
			ret = -ENXIO;
		}
		goto out;
	}
	/* SEEK_HOLE: end of the run of mapped blocks that contains off */
	uint64_t pos = fb;
	while (found) {
		pos = irec_endoff(&got);
		if ((pos << mp->blocklog) >= size)
			break;
		rlfs_bmap_lookup(ip, pos, &got, &found);
	}
	uint64_t hole = RLFS_MIN(pos << mp->blocklog, size);
	ret = (off_t)RLFS_MAX(hole, (uint64_t)off);
out:
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return ret;
}

void rlfs_set_cow_fill(struct rlfs_mount *mp, uint32_t max_blocks)
{
	mp->cow_fill_blocks = RLFS_MIN(max_blocks, RLFS_COW_FILL_MAX);
}

/*
 * exchange.h: exchange range's deferred work, the exchange-mapping intent
 * (XMI/XMD) (internal; the public entry point rlfs_exchange_range is in
 * reflinkfs/fs.h).  Model: xfs_exchmaps.c / xfs_exchmaps_item.c (Linux
 * 6.10).
 *
 * One XMI item describes what is left of an exchange: file blocks
 * [startoff1, +blockcount) of ino1 and [startoff2, +blockcount) of ino2
 * (struct rlfs_xmi_item in format.h, docs/SPEC.md).  Its finish_item is
 * one step: it walks both ranges from their starts to the first piece
 * that needs a change (the longest run in which neither file crosses an
 * extent boundary; pieces that are holes in both files, or map the same
 * blocks in the same state, or, with FILE1_WRITTEN, where file1 has no
 * written data, are passed over), and in the step's transaction unmaps
 * the piece from both data forks and maps each file's old blocks into
 * the other (bmap.c queues the RUIs that move the rmap owners and
 * offsets), then returns -EAGAIN with the item advanced past the piece.
 * The defer framework logs the item's done, the fork changes, the RUIs
 * and a new XMI carrying the rest in ONE transaction, so a crash leaves
 * the log with exactly one live XMI naming the next piece, and recovery
 * goes on from there until the range is done.  The step that finishes
 * the range sets both sizes (RLFS_XMI_SET_SIZES).
 *
 * Unlike XFS, a step changes both forks itself instead of queueing BUIs:
 * a BUI unmap here releases the blocks it unmaps (a CUI decrease, bmap.h)
 * while an exchange keeps every block's owner count; doing the four fork
 * changes in the step keeps the refcounts untouched and the step atomic.
 *
 * The caller holds both inodes (a reference, iolock exclusive) and
 * rlfs_defer_hold_inode's them until the chain is finished; log recovery
 * reads them in.
 */
#ifndef RLFS_EXCHANGE_H
#define RLFS_EXCHANGE_H
#include "defer.h"

extern const struct rlfs_defer_type rlfs_xmi_type;

/*
 * Queue the exchange of [startoff1, +blockcount) of ino1 with [startoff2,
 * +blockcount) of ino2 (file blocks) on tp.  flags RLFS_XMI_*; new_size1
 * / new_size2 (bytes) with RLFS_XMI_SET_SIZES.  0, -EINVAL (blockcount 0,
 * unknown flags), -ENOMEM.
 */
int rlfs_xmi_add(struct rlfs_trans *tp, uint64_t ino1, uint64_t startoff1, uint64_t ino2,
		 uint64_t startoff2, uint64_t blockcount, unsigned flags, uint64_t new_size1,
		 uint64_t new_size2);

#endif

/*
 * shift.h: fallocate FALLOC_FL_COLLAPSE_RANGE and FALLOC_FL_INSERT_RANGE
 * (fallocate(2)): move every data-fork mapping past a point left or right
 * by a whole number of blocks, as one crash-atomic operation.
 *
 * XFS (xfs_collapse_file_space / xfs_insert_file_space) shifts one extent
 * per transaction, so a crash can leave a file half shifted.  Here the
 * decision is one logged intent, the SXI ("shift extents intent",
 * struct rlfs_sxi_item, docs/SPEC.md section 16), carrying the whole
 * operation and a cursor; each deferred step (at most
 * RLFS_SXI_STEP_EXTENTS mappings moved, or RLFS_SXI_PUNCH_EXTENTS
 * unmapped by a collapse's punch) commits its fork changes together with
 * the done of the SXI it finished and a new SXI with the advanced cursor;
 * the last step sets the size.  Log recovery finishes a pending SXI: after
 * a crash the file is either untouched (the first intent not durable) or
 * wholly shifted.  Refcounts never change (a mapping moves in the file,
 * not on disk); the rmap follows through the RUIs that the bmap
 * primitives queue for exactly the moved blocks (unmap at the old file
 * offset, map at the new).
 */
#ifndef RLFS_SHIFT_H
#define RLFS_SHIFT_H
#include "defer.h"
#include "inode.h"

#define RLFS_SXI_STEP_EXTENTS 16u   /* mappings moved per step (tr_punch) */
#define RLFS_SXI_PUNCH_EXTENTS 32u  /* mappings unmapped per collapse punch step */

/* The SXI/SXD deferred type (defer.h; recovery finds it by RLFS_LOG_SXI). */
extern const struct rlfs_defer_type rlfs_sxi_type;

/*
 * Shift ip's data fork.  collapse: remove file blocks [startoff,
 * startoff+shift) (their blocks released) and move every mapping after
 * them left by shift; else insert a hole of shift blocks at startoff,
 * moving every mapping at or after it right.  ip's size becomes
 * new_size_bytes and mtime/ctime now, with the last step.  The caller
 * holds a reference and ip->iolock exclusively and has checked the
 * fallocate rules (rlfs_fallocate: alignment, EOF, EFBIG); the CoW fork
 * from startoff on is cancelled first (its staged blocks sit at file
 * offsets that are about to change).  0, or -ENOSPC / -EIO / -EUCLEAN /
 * -ENOMEM: before the intent commits nothing changed; after it a failing
 * step shuts the mount down (defer.c) and the next mount's recovery
 * finishes the shift.  -EFBIG for an insert that would move a mapping
 * past the largest file offset.
 */
int rlfs_shift_range(struct rlfs_inode *ip, bool collapse, uint64_t startoff, uint64_t shift,
		     uint64_t new_size_bytes);
#endif

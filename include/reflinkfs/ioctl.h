/*
 * reflinkfs/ioctl.h: private ioctls of a reflinkfs FUSE mount.  Installed
 * header; a versioned ABI (RLFS_IOC_ABI_VERSION): structures only grow by
 * new ioctl numbers, never by changing these.
 *
 * Why private ioctls: the kernel answers FICLONE, FICLONERANGE,
 * FIDEDUPERANGE, FS_IOC_FIEMAP and FS_IOC_GETFSMAP itself and never
 * forwards them to a FUSE daemon.  FUSE forwards other ioctls whose
 * argument size and direction are encoded in the number (restricted
 * ioctls), so every ioctl here is _IOWR with a fixed-size argument.  The
 * LD_PRELOAD shim (libreflinkfs-preload.so) translates the standard ioctls
 * into these on reflinkfs files, so unmodified programs work.
 *
 * File descriptors inside arguments (src_fd) are the caller's: the daemon
 * takes the caller's open file itself (pidfd_getfd(2)), accepts it only if
 * its device number is this mount's (else EXDEV), and demands the open
 * modes the kernel ioctls demand (fuse/callerfd.c).
 *
 * Errors (negative of errno as returned by ioctl(2), in errno):
 *   EINVAL  malformed argument (reserved fields not zero, bad alignment,
 *           overlapping same-file ranges, count out of range)
 *   EBADF   src_fd not open for reading, or the target not open for writing
 *   EXDEV   src_fd is on another filesystem (or another reflinkfs mount)
 *   EISDIR  a directory;  EPERM  immutable/append-only destination
 *   EFBIG   the result would exceed the maximum file size
 *   ENOSPC, EIO, EUCLEAN as usual.  A rejected call changes nothing.
 */
#ifndef REFLINKFS_IOCTL_H
#define REFLINKFS_IOCTL_H
#include <linux/fsmap.h>
#include <linux/ioctl.h>
#include <linux/types.h>

/* 1: first version.  2: RLFS_IOC_GET_EXTENTS takes RLFS_IOC_EXT_XATTR and
 * checks its range and flags as FS_IOC_FIEMAP does (EINVAL, EFBIG, EBADR).
 * RLFS_IOC_DEDUPE_RANGE came later without a new version (no structure
 * changed): an older daemon answers it ENOTTY.  Where an argument carries
 * a version (GETFSMAP, FSMAP_GEOM) the daemon takes any from 1 on: the
 * structure under an ioctl number never changes, so a caller built with
 * an older or newer header means the same bytes (0: EINVAL). */
#define RLFS_IOC_ABI_VERSION 2
#define RLFS_IOC_TYPE 0xb7 /* unused in Documentation/userspace-api/ioctl/ioctl-number.rst */

/* RLFS_IOC_CLONE: like FICLONE (ioctl_ficlone(2)): clone src_fd from
 * offset 0 to its EOF onto the target at offset 0.  A larger target keeps
 * its size (and a partial last source block landing inside it is EINVAL,
 * as on XFS); a smaller one grows to the source's size. */
struct rlfs_ioc_clone {
	__s64 src_fd;
	__u64 reserved[3];          /* must be zero */
};

/* RLFS_IOC_CLONE_RANGE: same fields and semantics as struct
 * file_clone_range / FICLONERANGE (ioctl_ficlonerange(2)): offsets in
 * bytes, block-aligned; src_length 0 means "to the end of the source";
 * the length must be block-aligned unless the range ends at source EOF. */
struct rlfs_ioc_clone_range {
	__s64 src_fd;
	__u64 src_offset;
	__u64 src_length;
	__u64 dest_offset;
};

/* RLFS_IOC_GET_EXTENTS: FIEMAP-like mapping of the target file in batches.
 * In: start and length (bytes) of the range to map, flags 0 or a mask of
 * RLFS_IOC_EXT_SYNC (flush the file's dirty data first, FIEMAP_FLAG_SYNC)
 * and RLFS_IOC_EXT_XATTR (map the blocks holding the file's extended
 * attributes instead of its data, FIEMAP_FLAG_XATTR: logical offsets
 * number those blocks from 0 in device order; in-inode attributes have no
 * blocks and give no extent, as XFS's local attribute format).  Out: count
 * extents in ext[] (at most RLFS_IOC_EXTENTS_BATCH), in file order; the
 * last extent of the file has RLFS_IOC_EXT_LAST.  To continue, call again
 * with start = the end of the last extent returned.  Holes are not
 * reported.  The checks are FS_IOC_FIEMAP's (fs/ioctl.c fiemap_prep), in
 * its order: length 0 EINVAL, start at or past the maximum file size
 * (2^63 - 1) EFBIG (a range past it is shortened), unknown flags EBADR
 * (an error reply carries no data, so unlike FIEMAP the unknown flags are
 * not written back); a non-zero reserved field EINVAL first.  Mirrors
 * Documentation/filesystems/fiemap.rst. */
#define RLFS_IOC_EXTENTS_BATCH 128
#define RLFS_IOC_EXT_SYNC      (1u << 0)   /* in: flags (FIEMAP_FLAG_SYNC) */
#define RLFS_IOC_EXT_XATTR     (1u << 1)   /* in: flags (FIEMAP_FLAG_XATTR), ABI 2 */
#define RLFS_IOC_EXT_LAST      (1u << 0)   /* out: ext[].flags (FIEMAP_EXTENT_LAST) */
#define RLFS_IOC_EXT_UNWRITTEN (1u << 11)  /* FIEMAP_EXTENT_UNWRITTEN */
#define RLFS_IOC_EXT_SHARED    (1u << 13)  /* FIEMAP_EXTENT_SHARED */
struct rlfs_ioc_extent {
	__u64 logical;              /* bytes */
	__u64 physical;             /* bytes from the start of the device */
	__u64 length;               /* bytes */
	__u32 flags;                /* RLFS_IOC_EXT_* (FIEMAP_EXTENT_* values) */
	__u32 reserved;
};
struct rlfs_ioc_extents {
	__u64 start;                /* in: bytes */
	__u64 length;               /* in: bytes (~0ULL = to EOF and beyond) */
	__u32 flags;                /* in: RLFS_IOC_EXT_SYNC */
	__u32 count;                /* out */
	__u32 abi_version;          /* out: RLFS_IOC_ABI_VERSION */
	__u32 reserved;             /* must be zero */
	struct rlfs_ioc_extent ext[RLFS_IOC_EXTENTS_BATCH];
};

/* RLFS_IOC_UNSHARE_RANGE: fallocate(fd, FALLOC_FL_UNSHARE_RANGE [|
 * FALLOC_FL_KEEP_SIZE], offset, length) (the kernel's FUSE fallocate
 * passes only KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE to the daemon).  Gives
 * [offset, offset+length) private copies of shared blocks; the target must
 * be open for writing (EBADF), flags RLFS_IOC_UNSHARE_KEEP_SIZE or 0. */
#define RLFS_IOC_UNSHARE_KEEP_SIZE (1u << 0)
struct rlfs_ioc_unshare {
	__u64 offset;               /* bytes */
	__u64 length;               /* bytes, > 0 */
	__u32 flags;                /* RLFS_IOC_UNSHARE_KEEP_SIZE */
	__u32 reserved;             /* must be zero */
	__u64 reserved2[2];         /* must be zero */
};

#define RLFS_IOC_CLONE       _IOWR(RLFS_IOC_TYPE, 1, struct rlfs_ioc_clone)
#define RLFS_IOC_CLONE_RANGE _IOWR(RLFS_IOC_TYPE, 2, struct rlfs_ioc_clone_range)
#define RLFS_IOC_GET_EXTENTS _IOWR(RLFS_IOC_TYPE, 3, struct rlfs_ioc_extents)
/* 5..7: reserved for getfsmap, exchange range (later issues) */

/* RLFS_IOC_DEDUPE_RANGE (on the source file, which must be open
 * for reading, else EINVAL): FIDEDUPERANGE (ioctl_fideduperange(2),
 * struct file_dedupe_range) with its destinations in a fixed array:
 * for each of info[0 .. dest_count), compare [src_offset, +src_length) of
 * the source with [dest_offset, +src_length) of dest_fd and share the
 * blocks if the bytes are identical.  Same fields, semantics and order of
 * checks as the kernel's vfs_dedupe_file_range (fs/remap_range.c):
 * whole-call errors (the ioctl fails; nothing is written back): reserved
 * fields not zero, dest_count over RLFS_IOC_DEDUPE_MAX, a source that is
 * a directory (EISDIR) or not regular, or not open for reading, offsets
 * that wrap, or src_offset + src_length past the source's EOF: EINVAL.
 * src_length is then capped at RLFS_IOC_DEDUPE_MAX_LEN (the kernel's
 * "arbitrary 1G limit").  Per destination (the others go on): status 0
 * (FILE_DEDUPE_RANGE_SAME) with bytes_deduped = the capped src_length as
 * the kernel reports it (even where the share was shortened to whole
 * blocks), 1 (FILE_DEDUPE_RANGE_DIFFERS: nothing changed), or -errno:
 * EBADF (dest_fd not open), EINVAL (reserved, alignment, a range past an
 * EOF, overlap in one file), EPERM (allow_file_dedupe: the destination
 * is not open for writing, not owned by nor writable by the caller, who
 * lacks CAP_SYS_ADMIN; or immutable), EXDEV (another filesystem), EISDIR,
 * EROFS, ENOSPC, EIO.  dest_fds are the caller's (fuse/callerfd.c).
 * Size: 24 + 32 * RLFS_IOC_DEDUPE_MAX = 16,376 bytes, the most
 * destinations below the 16,383 bytes an ioctl number encodes (the
 * kernel's own FIDEDUPERANGE takes at most a page: 127 destinations with
 * 4 KiB pages; the shim sends a larger caller array in batches). */
#define RLFS_IOC_DEDUPE_MAX 511
#define RLFS_IOC_DEDUPE_MAX_LEN (1ULL << 30)
struct rlfs_ioc_dedupe_info {
	__s64 dest_fd;              /* in: the caller's descriptor */
	__u64 dest_offset;          /* in: bytes */
	__u64 bytes_deduped;        /* out */
	__s32 status;               /* out: 0, 1 (differs) or -errno */
	__u32 reserved;             /* must be zero (else status -EINVAL) */
};
struct rlfs_ioc_dedupe_range {
	__u64 src_offset;           /* bytes */
	__u64 src_length;           /* bytes */
	__u16 dest_count;           /* 0 .. RLFS_IOC_DEDUPE_MAX */
	__u16 reserved1;            /* must be zero */
	__u32 reserved2;            /* must be zero */
	struct rlfs_ioc_dedupe_info info[RLFS_IOC_DEDUPE_MAX];
};
#define RLFS_IOC_DEDUPE_RANGE _IOWR(RLFS_IOC_TYPE, 4, struct rlfs_ioc_dedupe_range)
#define RLFS_IOC_UNSHARE_RANGE _IOWR(RLFS_IOC_TYPE, 8, struct rlfs_ioc_unshare)

/* RLFS_IOC_MOUNT_STATE (on any file or directory of the mount): the
 * remount protocol of mount.reflinkfs.  The FUSE kernel does not tell the
 * daemon about a remount, so the helper does, around its mount(2)
 * MS_REMOUNT:
 *   RLFS_MS_PREPARE_RW  before remounting read-write: the daemon reopens
 *                       the image for writing and marks it dirty, so that
 *                       it is writable before the kernel lets writes in
 *                       (caller: root or the daemon's user, else EPERM);
 *   RLFS_MS_SYNC        after mount(2), whatever it returned: the daemon
 *                       adopts the kernel's state (read-only: writes every
 *                       dirty block and marks the image clean before it
 *                       answers; atime policy from the mount's flags).
 * Out: flags RLFS_MS_RDONLY if the daemon now serves read-only, atime the
 * policy in force (RLFS_ATIME_* of reflinkfs/fs.h | RLFS_MS_NODIRATIME).
 * Errors: EINVAL (unknown op, reserved fields), EPERM, and those of the
 * flush or of reopening the image (EIO, EACCES, EROFS). */
#define RLFS_MS_SYNC        0u
#define RLFS_MS_PREPARE_RW  1u
#define RLFS_MS_RDONLY      (1u << 0)  /* out: flags */
#define RLFS_MS_NODIRATIME  (1u << 8)  /* out: atime */
struct rlfs_ioc_mount_state {
	__u32 op;                   /* in: RLFS_MS_SYNC, RLFS_MS_PREPARE_RW */
	__u32 flags;                /* in: 0; out: RLFS_MS_RDONLY */
	__u32 atime;                /* in: 0; out: policy */
	__u32 reserved;             /* must be zero */
	__u64 reserved2[2];         /* must be zero */
};
#define RLFS_IOC_MOUNT_STATE _IOWR(RLFS_IOC_TYPE, 9, struct rlfs_ioc_mount_state)
/* RLFS_IOC_GETFSMAP (on any file or directory of the mount): one batch of
 * FS_IOC_GETFSMAP (ioctl_getfsmap(2); reflinkfs/fsmap.h).  In: version
 * (RLFS_IOC_ABI_VERSION), iflags (fmh_iflags, 0), keys (fmh_keys: low and
 * high; the low key may be the last record of the previous batch), count
 * (fmh_count: 0 counts the records, else at most RLFS_IOC_FSMAP_BATCH).
 * Out: oflags (FMH_OF_DEV_T), entries, recs[0 .. entries), FMR_OF_LAST on
 * the last record of the whole query; records carry dev (the caller's
 * st_dev of the mount: the daemon cannot stat its own mount point).
 * The shim loops batches to fill a caller's larger fmh_count.  Caller:
 * CAP_SYS_ADMIN (as XFS demands), else EPERM.  Errors: EINVAL (version 0,
 * reserved fields, the keys as ioctl_getfsmap(2)), EOPNOTSUPP (no rmap
 * btree), EIO, EUCLEAN.  250 records of 64 bytes keep the argument below
 * the 16,383 bytes an ioctl number can encode. */
#define RLFS_IOC_FSMAP_BATCH 250
struct rlfs_ioc_fsmap {
	__u32 version;              /* in: RLFS_IOC_ABI_VERSION */
	__u32 iflags;               /* in: fmh_iflags */
	__u32 oflags;               /* out: fmh_oflags */
	__u32 count;                /* in: records wanted (0: count only) */
	__u32 entries;              /* out: records returned (or counted) */
	__u32 dev;                  /* in: the mount's st_dev as the caller sees
				     * it (glibc/new_encode_dev encoding): put in
				     * fmr_device, valid in the keys */
	struct fsmap keys[2];       /* in: low, high */
	struct fsmap recs[RLFS_IOC_FSMAP_BATCH];
};
#define RLFS_IOC_GETFSMAP _IOWR(RLFS_IOC_TYPE, 10, struct rlfs_ioc_fsmap)

/* RLFS_IOC_FSMAP_GEOM (any file of the mount, anyone): the geometry fsmap
 * readers need to name AGs (xfs_io's XFS_IOC_FSGEOMETRY use).  In:
 * version (>= 1); out: the rest.  EINVAL for version 0 or nonzero
 * reserved. */
struct rlfs_ioc_fsmap_geom {
	__u32 version;              /* in: RLFS_IOC_ABI_VERSION */
	__u32 blocksize;            /* bytes */
	__u32 agblocks;             /* blocks per AG (the last may be shorter) */
	__u32 agcount;
	__u64 dblocks;              /* blocks in the filesystem */
	__u64 reserved[2];          /* must be zero */
};
#define RLFS_IOC_FSMAP_GEOM _IOWR(RLFS_IOC_TYPE, 11, struct rlfs_ioc_fsmap_geom)

/* RLFS_IOC_SHIFT_RANGE: fallocate(fd, FALLOC_FL_COLLAPSE_RANGE or
 * FALLOC_FL_INSERT_RANGE, offset, length) (fallocate(2)), which the
 * kernel's FUSE fallocate fails with EOPNOTSUPP before the daemon sees it.
 * flags: exactly one of RLFS_IOC_SHIFT_COLLAPSE / _INSERT (else EINVAL).
 * Errors as fallocate(2) on XFS: EBADF (not open for writing), EINVAL
 * (offset or length not a multiple of the block size, a collapse reaching
 * EOF, an insert at or past EOF, length 0), EFBIG, EPERM (immutable,
 * append-only), EISDIR / ENODEV.  Out: new_size, the file's size after the
 * shift.  The daemon drops the kernel's cached pages of the file; under
 * the writeback cache the kernel keeps its own idea of the size, so the
 * caller then calls ftruncate(fd, new_size) (a no-op for the file, which
 * already has that size; the LD_PRELOAD shim and `reflinkfs io` do). */
#define RLFS_IOC_SHIFT_COLLAPSE (1u << 0)
#define RLFS_IOC_SHIFT_INSERT   (1u << 1)
struct rlfs_ioc_shift {
	__u64 offset;               /* in: bytes */
	__u64 length;               /* in: bytes, > 0 */
	__u32 flags;                /* in: RLFS_IOC_SHIFT_* */
	__u32 reserved;             /* must be zero */
	__u64 new_size;             /* out: bytes */
	__u64 reserved2[2];         /* must be zero */
};
#define RLFS_IOC_SHIFT_RANGE _IOWR(RLFS_IOC_TYPE, 12, struct rlfs_ioc_shift)

/* RLFS_IOC_EXCHANGE_RANGE: XFS_IOC_EXCHANGE_RANGE (ioctl_xfs_exchange_range(2),
 * Linux 6.10) issued on file2: exchange bytes [file1_offset, +length) of
 * file1_fd with [file2_offset, +length) of the target, atomically, also
 * across a crash.  flags: XFS_EXCHANGE_RANGE_TO_EOF (1), _DSYNC (2),
 * _DRY_RUN (4), _FILE1_WRITTEN (8); the same values as RLFS_EXCHANGE_* of
 * reflinkfs/fs.h.  struct xfs_exchange_range's fields (its __s32 fd and
 * pad widened to one __s64), plus reserved words that must be zero.
 * Errors as the man page: EBADF (file1_fd not open; either file not open
 * read-write, or O_APPEND), EXDEV (file1 on another filesystem), EINVAL
 * (flags, alignment, ranges, overlap in one file, non-regular files),
 * EISDIR, EPERM (immutable, append-only), EFBIG, ENOSPC, EROFS, EIO. */
struct rlfs_ioc_exchange_range {
	__s64 file1_fd;
	__u64 file1_offset;
	__u64 file2_offset;
	__u64 length;
	__u64 flags;
	__u64 reserved[3];          /* must be zero */
};
#define RLFS_IOC_EXCHANGE_RANGE _IOWR(RLFS_IOC_TYPE, 13, struct rlfs_ioc_exchange_range)

/* RLFS_IOC_START_COMMIT / RLFS_IOC_COMMIT_RANGE: XFS_IOC_START_COMMIT /
 * XFS_IOC_COMMIT_RANGE (ioctl_xfs_commit_range(2), Linux 6.12), issued on
 * file2.  START_COMMIT fills file2_freshness with file2's freshness now
 * (its dirty pages written back first; the other fields are zeroed) and
 * reads nothing else.  COMMIT_RANGE is RLFS_IOC_EXCHANGE_RANGE that first
 * checks, under both files' locks, that file2 is still the inode sampled
 * with the same generation, mtime and ctime: EBUSY (nothing changed)
 * otherwise.  file2_freshness is opaque to callers: [0] inode number,
 * [1] generation, [2]/[3] mtime seconds/nanoseconds, [4]/[5] ctime. */
struct rlfs_ioc_commit_range {
	__s64 file1_fd;
	__u64 file1_offset;
	__u64 file2_offset;
	__u64 length;
	__u64 flags;
	__u64 file2_freshness[6];
	__u64 reserved[2];          /* must be zero */
};
#define RLFS_IOC_START_COMMIT _IOWR(RLFS_IOC_TYPE, 14, struct rlfs_ioc_commit_range)
#define RLFS_IOC_COMMIT_RANGE _IOWR(RLFS_IOC_TYPE, 15, struct rlfs_ioc_commit_range)
#endif

/*
 * reflinkfs/fsmap.h: GETFSMAP, the physical space map (issue 11 section 2;
 * ioctl_getfsmap(2)).  Part of the library's public API next to fs.h.
 *
 * Records are struct fsmap (linux/fsmap.h): fmr_physical, fmr_offset and
 * fmr_length in bytes, fmr_physical the byte address on the data device
 * (the only device: the log lives inside it and is reported with owner
 * RLFS_FMR_OWN_LOG).  Every block appears: blocks in the rmap btree once
 * per owner (shared data blocks once per file mapping them, each record
 * with FMR_OF_SHARED), free space as FMR_OWN_FREE records for the gaps
 * between them (AGFL blocks are in the rmap as RLFS_FMR_OWN_AG, as in
 * XFS).  Special owners carry FMR_OF_SPECIAL_OWNER and the XFS values
 * (XFS_FMR_OWN_*, xfs_fs.h), so xfs_io prints them by name.
 *
 * Needs the RMAP feature (-EOPNOTSUPP without it).  Model: the kernel's
 * fs/xfs/xfs_fsmap.c (its data-device rmapbt backend); lib/fsmap.c.
 */
#ifndef REFLINKFS_FSMAP_H
#define REFLINKFS_FSMAP_H
#include <stdint.h>
#include <linux/fsmap.h>

struct rlfs_mount;

/* Special owners as XFS reports them (xfs_fs.h XFS_FMR_OWN_*). */
#define RLFS_FMR_OWN_FREE      FMR_OWN_FREE           /* free space */
#define RLFS_FMR_OWN_UNKNOWN   FMR_OWN_UNKNOWN        /* owner not known */
#define RLFS_FMR_OWN_FS        FMR_OWNER('X', 1)      /* superblock, AG headers */
#define RLFS_FMR_OWN_LOG       FMR_OWNER('X', 2)      /* the log */
#define RLFS_FMR_OWN_AG        FMR_OWNER('X', 3)      /* AGFL, free-space and rmap trees */
#define RLFS_FMR_OWN_INOBT     FMR_OWNER('X', 4)      /* inode btree */
#define RLFS_FMR_OWN_INODES    FMR_OWNER('X', 5)      /* inode chunks */
#define RLFS_FMR_OWN_REFC      FMR_OWNER('X', 6)      /* refcount btree */
#define RLFS_FMR_OWN_COW       FMR_OWNER('X', 7)      /* CoW staging */
#define RLFS_FMR_OWN_DEFECTIVE FMR_OWNER('X', 8)      /* bad blocks (never reported) */

/*
 * Call fn for every record overlapping the key range [low, high], in the
 * order of (physical, owner, offset), as ioctl_getfsmap(2) would return
 * them.  dev: the device number the records carry in fmr_device (the
 * caller's choice: the FUSE mount's st_dev, or 0 offline); a key's
 * fmr_device must be 0, UINT32_MAX or dev.  iflags: fmh_iflags (must be
 * 0, FMH_IF_VALID).
 *
 * Keys: low's fmr_length 0 starts a fresh query at low's (physical,
 * owner, offset); a low key that is the last record of a previous call
 * (fmr_length != 0) continues exactly after it: after a special-owner or
 * extent-map record at physical + length, after a file data record at
 * the next record in key order (offset + length), which may lie inside
 * blocks already reported (other owners of shared blocks).  A fresh low
 * key with an owner leaves out the records of its block wholly below it
 * (but never reports their blocks as free).  Records that merely overlap
 * the range are returned whole; free-space records are
 * clipped to it: they start at low's physical + length at the earliest
 * and end with the block holding high's physical at the latest.  high's
 * fmr_length must be 0 or ~0 (the man page's "all ones" high key works).
 *
 * -EINVAL (nothing called): iflags unknown, a key's fmr_reserved nonzero,
 * an unknown device, low >= high comparing (device, physical, owner,
 * offset), a special-owner or extent-map low key with nonzero offset (same
 * for high unless ~0), high's fmr_length not 0 or ~0, an unknown special
 * owner in a key.  -EOPNOTSUPP without the RMAP feature.
 *
 * fn returns 0 to go on, > 0 to stop (returned: the caller's array is
 * full), < 0 an errno (returned).  Otherwise 0 when every record was
 * given, or -EIO / -EUCLEAN / -ENOMEM from reading the trees (records
 * already given stay given).  Takes the metadata lock per AG.
 */
typedef int (*rlfs_fsmap_fn)(const struct fsmap *rec, void *priv);
int rlfs_getfsmap(struct rlfs_mount *mp, uint32_t dev, const struct fsmap *low,
		  const struct fsmap *high, unsigned iflags, rlfs_fsmap_fn fn, void *priv);

/*
 * FS_IOC_GETFSMAP on head as the kernel does it: head->fmh_keys, fmh_iflags
 * and fmh_count in; fmh_oflags (FMH_OF_DEV_T), fmh_entries and
 * fmh_recs[0 .. fmh_entries) out, FMR_OF_LAST on the last record when it
 * is the last of the whole query.  fmh_count 0 counts the records
 * (fmh_entries) without storing any.  -EINVAL also for nonzero
 * fmh_reserved; otherwise the errors of rlfs_getfsmap (a full array is
 * not an error).
 */
int rlfs_getfsmap_head(struct rlfs_mount *mp, uint32_t dev, struct fsmap_head *head);

/* The geometry an fsmap reader needs to name AGs: block size (bytes),
 * blocks per AG, AG count, blocks in the filesystem. */
void rlfs_fsmap_geometry(struct rlfs_mount *mp, uint32_t *blocksize, uint32_t *agblocks,
			 uint32_t *agcount, uint64_t *dblocks);
#endif

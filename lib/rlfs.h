/*
 * rlfs.h: the in-core mount and the helpers every library file uses.
 *
 * Layering (dependencies point down only; see docs/DESIGN.md):
 *   vfs ops (namei.c, file.c, xattr.c)  ->  inode layer (inode.c, bmap.c,
 *   dir.c)  ->  space layer (alloc.c, ialloc.c)  ->  tx layer (trans.c)  ->
 *   btree.c  ->  buf.c  ->  dev.c  ->  format.h
 *
 * Errors are 0 or a negative errno everywhere.  Metadata found to be corrupt
 * gives -EUCLEAN (EFSCORRUPTED in XFS terms) after rlfs_corrupt() has logged
 * what and where.
 *
 * Locking (order: outer first):
 *   1. inode iolock (struct rlfs_inode.iolock, rwlock), several inodes are
 *      taken in ascending ino order;
 *   2. mp->meta_lock: taken by rlfs_trans_alloc() and dropped by commit or
 *      cancel.  Every buffer-cache access happens inside a transaction, so
 *      this one lock serialises all metadata (all AGs) in v1;
 *   3. mp->icache_lock: the inode cache hash (leaf lock, held briefly).
 * File data I/O on already-mapped blocks needs only the iolock.
 */
#ifndef RLFS_RLFS_H
#define RLFS_RLFS_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "reflinkfs/format.h"

#ifndef EUCLEAN
#define EUCLEAN 117
#endif
#define EFSCORRUPTED EUCLEAN

struct rlfs_dev;
struct rlfs_bcache;
struct rlfs_icache;
struct rlfs_trans;
struct rlfs_buf;
struct rlfs_inode;

/* Mount flags for rlfs_mount_open(). */
#define RLFS_MOUNT_RDONLY   (1u << 0)
#define RLFS_MOUNT_NOLOCK   (1u << 1) /* do not take the image lock (tests) */

/* The in-core mount: geometry decoded from the superblock plus caches. */
struct rlfs_mount {
	struct rlfs_dev *dev;
	/* geometry (native copies of superblock fields) */
	uint32_t blocksize;         /* bytes */
	uint32_t blocklog;          /* log2(blocksize) */
	uint64_t dblocks;           /* blocks in the filesystem */
	uint32_t agblocks;          /* blocks per AG */
	uint32_t agcount;
	uint32_t inodesize;         /* bytes */
	uint32_t inopblock;         /* inodes per block */
	uint32_t chunk_blocks;      /* blocks per inode chunk (64 inodes) */
	uint64_t rootino;
	uint64_t features_incompat;
	uint64_t maxbytes;          /* largest file size, bytes */
	uint8_t uuid[RLFS_UUID_SIZE];
	unsigned flags;             /* RLFS_MOUNT_* */

	pthread_mutex_t meta_lock;  /* see the locking note above */
	struct rlfs_bcache *bcache;
	struct rlfs_icache *icache;
	pthread_mutex_t icache_lock;

	/*
	 * Free-space counters, under meta_lock.  fdblocks counts blocks free in
	 * the free-space btrees plus AGFL blocks, minus blocks reserved by open
	 * transactions.  resblks is a pool held back so that unlink, rmdir and
	 * truncate (which can need btree splits) work on a full filesystem.
	 */
	int64_t fdblocks;
	uint64_t resblks;
	uint64_t setaside;          /* per AG, the AGFL minimum plus the refcount
				     * headroom: counted free on disk, never
				     * available to files (XFS's
				     * xfs_alloc_set_aside + xfs_ag_resv) */
	uint64_t icount;            /* inodes in allocated chunks */
	uint64_t ifree;             /* of those, free */
	uint64_t data_dirty;        /* data written since the last device flush */
	/* rlfs_set_progress (fs.h); rlfs_progress() calls it if set */
	void (*progress_fn)(void *arg, int phase, uint64_t done, uint64_t total);
	void *progress_arg;
};

static inline void rlfs_progress(struct rlfs_mount *mp, int phase, uint64_t done,
				 uint64_t total)
{
	if (mp->progress_fn)
		mp->progress_fn(mp->progress_arg, phase, done, total);
}

/* Geometry helpers. */
static inline uint32_t rlfs_fsb_to_agno(const struct rlfs_mount *mp, uint64_t fsbno)
{ return (uint32_t)(fsbno / mp->agblocks); }
static inline uint32_t rlfs_fsb_to_agbno(const struct rlfs_mount *mp, uint64_t fsbno)
{ return (uint32_t)(fsbno % mp->agblocks); }
static inline uint64_t rlfs_agb_to_fsb(const struct rlfs_mount *mp, uint32_t agno, uint32_t agbno)
{ return (uint64_t)agno * mp->agblocks + agbno; }
/* Blocks in AG agno (the last AG may be shorter). */
static inline uint32_t rlfs_ag_blocks(const struct rlfs_mount *mp, uint32_t agno)
{
	uint64_t start = (uint64_t)agno * mp->agblocks;
	uint64_t left = mp->dblocks - start;
	return left < mp->agblocks ? (uint32_t)left : mp->agblocks;
}
static inline uint64_t rlfs_ino_to_fsb(const struct rlfs_mount *mp, uint64_t ino)
{ return ino / mp->inopblock; }
static inline uint32_t rlfs_ino_to_slot(const struct rlfs_mount *mp, uint64_t ino)
{ return (uint32_t)(ino % mp->inopblock); }
static inline uint64_t rlfs_fsb_to_ino(const struct rlfs_mount *mp, uint64_t fsbno, uint32_t slot)
{ return fsbno * mp->inopblock + slot; }
static inline uint64_t rlfs_b_to_fsbt(const struct rlfs_mount *mp, uint64_t bytes) /* floor */
{ return bytes >> mp->blocklog; }
static inline uint64_t rlfs_b_to_fsb(const struct rlfs_mount *mp, uint64_t bytes) /* ceil */
{ return (bytes + mp->blocksize - 1) >> mp->blocklog; }

/* crc32c (Castagnoli) of buf, via isa-l; standard init/final xor. */
uint32_t rlfs_crc32c(const void *buf, size_t len);
/* Compute and store the crc of a block whose crc field is at crc_off. */
void rlfs_cksum_update(void *buf, size_t len, size_t crc_off);
/* True if the stored crc at crc_off matches the block. */
bool rlfs_cksum_verify(const void *buf, size_t len, size_t crc_off);

/*
 * Report corruption: one line on stderr naming the structure, AG, block and
 * the check that failed.  Returns -EUCLEAN so callers can
 * `return rlfs_corrupt(mp, fsbno, "bnobt", "bad magic 0x%x", m);`
 */
int rlfs_corrupt(struct rlfs_mount *mp, uint64_t fsbno, const char *what,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Debug/warning log line to stderr, prefixed with "reflinkfs: ". */
void rlfs_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * A bare mount over dev: geometry from the arguments, a buffer cache, the
 * locks; no superblock is read and no inode cache is set up.  For mkfs
 * (which then writes the initial structures) and for unit tests of the
 * lower layers (btree over a memory device).  agblocks 0 = one AG.
 * 0, -ENOMEM, -EINVAL (blocksize not a power of two in range).  core.c.
 */
int rlfs_mount_alloc_bare(struct rlfs_dev *dev, uint32_t blocksize, uint64_t dblocks,
			  uint32_t agblocks, struct rlfs_mount **mpp);
/* Free a bare mount (drops the buffer cache without writing; flush first). */
void rlfs_mount_free_bare(struct rlfs_mount *mp);

#define RLFS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RLFS_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif

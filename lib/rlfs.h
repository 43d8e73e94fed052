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
#include "trans_resv.h"

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
struct rlfs_defer_log_ops;
struct rlfs_log;
struct rlfs_iunlink;

/* Mount flags for rlfs_mount_open(). */
#define RLFS_MOUNT_RDONLY   (1u << 0)
#define RLFS_MOUNT_NOLOCK   (1u << 1) /* do not take the image lock (tests) */

/*
 * rlfs_mount_open (reflinkfs/fs.h) on a device already open: everything
 * after the open (superblock, log recovery, AG headers, root, recovery of
 * intents and unlinked inodes).  The mount takes dev: on failure it is
 * closed, on success rlfs_mount_close closes it.  image names the
 * filesystem in messages; a read-only mount whose log needs replay
 * reopens it writable (as rlfs_mount_open).  The crash tester mounts a
 * crash image through a recording device (lib/dev_crash.h) with it, to
 * record what recovery writes.  Errors as rlfs_mount_open.  (XFS:
 * xfs_fs_fill_super after the block device is opened.)
 */
struct rlfs_mount;
int rlfs_mount_open_dev(struct rlfs_dev *dev, const char *image, unsigned flags,
			struct rlfs_mount **mpp);

/* In-core copy of the superblock's error record (struct rlfs_sb fields
 * errors .. first_error_what; units as there). */
struct rlfs_errrec {
	uint32_t flags;             /* RLFS_SB_ERR_* */
	uint32_t count;             /* corruption reports while mounted */
	uint64_t first_time, first_fsbno;   /* seconds since the epoch; block */
	uint64_t last_time, last_fsbno;
	char first_what[16];        /* NUL-padded, not always NUL-terminated */
	uint64_t fsck_time;         /* seconds since the epoch */
	uint32_t fsck_errors;       /* findings that fsck left */
};

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
	uint64_t features_ro_compat; /* RLFS_FEAT_RO_COMPAT_* (SPEC section 4) */
	uint64_t maxbytes;          /* largest file size, bytes */
	uint8_t uuid[RLFS_UUID_SIZE];
	/* Shut down (rlfs_force_shutdown): a deferred chain failed after its
	 * intent was logged.  No more metadata changes or log writes in this
	 * mount; the next mount's recovery finishes the work. */
	_Atomic bool shutdown;
	_Atomic unsigned flags;     /* RLFS_MOUNT_*; RDONLY changes on remount
				     * (rlfs_mount_set_rdonly) */

	pthread_mutex_t meta_lock;  /* see the locking note above */
	/* Taking meta_lock goes through rlfs_meta_lock, which counts waiters
	 * and turns (atomic builtins), so that long operations can let a
	 * waiter in between their transactions (rlfs_trans_yield). */
	unsigned meta_waiters;
	uint64_t meta_turns;
	struct rlfs_bcache *bcache;
	/* write-ahead log (log.h), under meta_lock; NULL for an image
	 * without RLFS_FEAT_INCOMPAT_LOG and for bare mounts */
	struct rlfs_log *log;
	struct rlfs_icache *icache;
	pthread_mutex_t icache_lock;
	/* unlinked inodes being freed, plus FORGETs the daemon has read and
	 * not yet processed (rlfs_inactive_begin/end): their tickets, oldest
	 * first, under icache_lock; statfs waits on inactive_cv until those
	 * taken before it have ended (XFS's statfs flushes inodegc the same
	 * way), so df after rm is exact */
	struct rlfs_inactive_ticket *inactive_head, *inactive_tail;
	uint64_t inactive_seq;          /* the next ticket's seq */
	pthread_cond_t inactive_cv;
	/* inodes whose CoW fork holds staged blocks (cowfork.h), a list
	 * under cow_lock, and the blocks staged in all of them */
	pthread_mutex_t cow_lock;
	struct rlfs_cowfork *cow_forks;
	uint64_t cow_staged_blocks;
	/* a CoW write also remaps up to this many unwritten blocks between
	 * it and a neighbour rewritten from the same staged extent
	 * (rlfs_set_cow_fill; RLFS_COW_FILL_DEFAULT) */
	uint32_t cow_fill_blocks;
	/* bytes of old contents copied into new blocks by copy-on-write
	 * (edge blocks, gap fill, unshare), an atomic counter read by
	 * rlfs_cow_copied_bytes: with direct access (rlfs_set_dax) only the
	 * parts of edge blocks a write does not cover are copied */
	uint64_t cow_copied_bytes;
	/* in-core index of the AGs' unlinked lists (iunlink.h), under
	 * meta_lock; allocated on first use */
	struct rlfs_iunlink *iunlink;

	/*
	 * Free-space counters, under meta_lock.  fdblocks counts blocks free in
	 * the free-space btrees plus AGFL blocks, minus blocks reserved by open
	 * transactions.  resblks is a pool held back so that unlink, rmdir and
	 * truncate (which can need btree splits) work on a full filesystem.
	 */
	int64_t fdblocks;
	uint64_t resblks;
	/* the writeback reserve (rlfs_set_writeback_reserve): blocks only
	 * writeback transactions (RLFS_TRANS_WRITEBACK) and RESERVE ones may
	 * take; statfs leaves them out of f_bavail.  Set any time, read
	 * without meta_lock (atomic loads). */
	uint64_t wb_resv_blocks;
	uint64_t setaside;          /* per AG, the AGFL minimum plus the AG
				     * reserve: counted free on disk, never
				     * available to files (XFS's
				     * xfs_alloc_set_aside + xfs_ag_resv) */
	uint32_t ag_resv_ask_blocks; /* per AG, what the refcount and rmap
				     * btrees may need in all (ag_resv.h);
				     * the AG's reserve is this less the
				     * blocks they use (AGBTCOUNT feature).
				     * Set at mount, 0 before (bare mounts:
				     * no reserve) */
	uint64_t log_clean_lsn;     /* the superblock's log_clean_lsn when its
				     * state is CLEAN, else 0: lets
				     * rlfs_log_recover skip reading the whole
				     * log (recover.c clean_head); log.c
				     * clears it once the log is mounted */
	unsigned agfl_worst_blocks; /* alloc.c: worst-case AGFL use of one
				     * operation (a function of the geometry
				     * and features), cached on first use
				     * (a racing first use stores the same
				     * value); 0 = not computed yet */
	uint64_t icount;            /* inodes in allocated chunks */
	uint64_t ifree;             /* of those, free */
	/* file data writes, counted after each reaches the device (under
	 * meta_lock, in the transaction that makes metadata point at it;
	 * rlfs_data_written), and the count as of the start of the last
	 * device flush: data is unflushed while they differ.  Monotonic,
	 * so a flush made without meta_lock (fsync's) can say what it
	 * covered (rlfs_data_flushed). */
	uint64_t data_dirty;
	uint64_t data_flushed;
	uint64_t trans_seq;         /* committed transactions (busy.h sequences) */
	struct rlfs_busy *busy;     /* busy extents and inodes (busy.c), or NULL */

	/*
	 * The superblock's error record (format.h, SPEC.md section 4): loaded
	 * at mount, added to by rlfs_corrupt(), staged into the superblock
	 * buffer by the next metadata flush (rlfs_errrec_stage) and written at
	 * unmount even when the rest of the unmount flush fails.  err and the
	 * sequence numbers are under err_lock, a leaf lock (rlfs_corrupt runs
	 * with or without meta_lock held).
	 */
	pthread_mutex_t err_lock;
	struct rlfs_errrec err;
	uint64_t err_seq;           /* bumped by every change to err */
	uint64_t err_staged_seq;    /* err_seq last copied into the sb buffer */
	bool err_track;             /* a mount by rlfs_mount_open: record errors
				     * (bare mounts of mkfs, fsck and unit tests
				     * do not) */
	bool err_said;              /* the one-line notice has been logged */
	char *image;                /* path given to rlfs_mount_open, or NULL */

	/* deferred operations (defer.h): where intents and dones are logged
	 * (NULL without a log), and the last intent id given out */
	const struct rlfs_defer_log_ops *defer_log;
	uint64_t defer_intent_seq;

	/* log reservations per transaction type and their use (trans_resv.h),
	 * computed from the geometry by rlfs_trans_resv_init; under meta_lock */
	struct rlfs_trans_resv resv;

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

/*
 * The range checks of an extent-map request, as fs/ioctl.c fiemap_prep
 * makes them for FS_IOC_FIEMAP: -EINVAL for len 0, -EFBIG for a start at
 * or past maxbytes; otherwise 0 with *len shortened so that the range ends
 * at maxbytes at most.  (rlfs_get_extents, rlfs_get_xattr_extents.)
 */
static inline int rlfs_fiemap_prep(const struct rlfs_mount *mp, uint64_t start, uint64_t *len)
{
	if (*len == 0)
		return -EINVAL;
	if (start >= mp->maxbytes)
		return -EFBIG;
	if (*len > mp->maxbytes || mp->maxbytes - *len < start)
		*len = mp->maxbytes - start;
	return 0;
}

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

/*
 * The superblock's error record (format.h; model: ext4's s_state
 * EXT4_ERROR_FS with s_error_count, s_first_error_time and the like).
 * core.c:
 * - rlfs_errrec_load/store copy it between a superblock and its in-core form;
 * - rlfs_errrec_describe writes one line (no newline) saying what it
 *   records, e.g. "found by fsck (3 findings left uncorrected, 2025-01-02
 *   03:04:05 UTC)"; returns buf;
 * - rlfs_mark_error adds flag (RLFS_SB_ERR_*) to mp->err, and for
 *   RLFS_SB_ERR_CORRUPT one report naming fsbno and the structure; logs one
 *   line the first time in a mount; a no-op on bare mounts.  rlfs_corrupt
 *   calls it.
 * mount.c:
 * - rlfs_errrec_stage copies a changed record into the cached superblock
 *   and marks it dirty, under meta_lock; rlfs_buf_flush_all calls it first,
 *   so every metadata flush (sync, fsync, unmount) writes it.  0, or the
 *   error reading the superblock (the record then stays pending).
 */
void rlfs_errrec_load(struct rlfs_errrec *e, const struct rlfs_sb *sb);
void rlfs_errrec_store(const struct rlfs_errrec *e, struct rlfs_sb *sb);
char *rlfs_errrec_describe(const struct rlfs_errrec *e, char *buf, size_t len);
void rlfs_mark_error(struct rlfs_mount *mp, uint32_t flag, uint64_t fsbno, const char *what);
int rlfs_errrec_stage(struct rlfs_mount *mp);

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

/* A file data write reached the device (see mp->data_dirty). */
static inline void rlfs_data_written(struct rlfs_mount *mp)
{
	__atomic_add_fetch(&mp->data_dirty, 1, __ATOMIC_RELEASE);
}

/* Whether data was written since the start of the last device flush
 * (may be read without meta_lock). */
static inline bool rlfs_data_unflushed(struct rlfs_mount *mp)
{
	return __atomic_load_n(&mp->data_dirty, __ATOMIC_ACQUIRE) !=
	       __atomic_load_n(&mp->data_flushed, __ATOMIC_ACQUIRE);
}

/* A device flush that started when mp->data_dirty was snap completed:
 * every data write counted by then is durable.  Under meta_lock. */
static inline void rlfs_data_flushed(struct rlfs_mount *mp, uint64_t snap)
{
	if (snap > mp->data_flushed)
		__atomic_store_n(&mp->data_flushed, snap, __ATOMIC_RELEASE);
}

#endif

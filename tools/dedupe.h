/*
 * dedupe.h: the parts of `reflinkfs dedupe` (issue 12 part 2), an offline
 * block-level dedupe driver for reflinkfs, XFS and btrfs:
 *
 *   tools/dedupe.c        CLI, the scan loop, progress, summary
 *   tools/dedupe_hash.c   block hashes (XXH3-128), the bounded in-memory
 *                         block-hash table and run growing (bees' approach)
 *   tools/dedupe_db.c     the SQLite hash store (--hashfile, or a private
 *                         temporary database when none is given)
 *   tools/dedupe_walk.c   the tree walk, several directories at once
 *   tools/dedupe_share.c  FIDEDUPERANGE / RLFS_IOC_DEDUPE_RANGE calls and
 *                         the already-shared checks (FIEMAP /
 *                         RLFS_IOC_GET_EXTENTS physical offsets)
 *
 * Units: offsets and lengths in bytes end in _bytes or are byte offsets
 * (off, len); block numbers are file block indexes (blk) in units of the
 * file's filesystem block size (statfs f_bsize).
 */
#ifndef RLFS_TOOLS_DEDUPE_H
#define RLFS_TOOLS_DEDUPE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A block hash: XXH3-128 of the block's bytes (the tail block of a file
 * hashes only the bytes before EOF, so a partial tail equals only another
 * partial tail of the same length and bytes).  The all-zero value marks a
 * block lying wholly in a hole (SEEK_HOLE): holes match nothing. */
struct dd_hash {
	uint64_t lo, hi;
};

static inline bool dd_hash_eq(const struct dd_hash *a, const struct dd_hash *b)
{
	return a->lo == b->lo && a->hi == b->hi;
}
static inline bool dd_hash_is_hole(const struct dd_hash *h)
{
	return h->lo == 0 && h->hi == 0;
}

/* Hash len bytes (1 .. block size) of one block; never returns the hole
 * marker (a zero result, probability 2^-128, is nudged to lo = 1). */
struct dd_hash dd_hash_block(const void *data, size_t len);

/* ---- the bounded block-hash table (dedupe_hash.c) ---- */

/*
 * One entry: 16-byte hash + 4-byte file index + 4-byte block index = 24
 * bytes per block (DD_TABLE_ENTRY_BYTES); the table is one array of
 * capacity entries (a power of two) allocated once, open addressing with
 * linear probing, at most 3/4 full.  The key is the block hash mixed
 * with the device number (blocks on different filesystems never match).
 * A block index above DD_MAX_BLK (2^32 - 2) is not entered (files over 16 TiB with
 * 4 KiB blocks: their later blocks are found only as parts of runs).
 *
 * Degrading when full: the table then keeps a sample, the entries whose
 * key satisfies key.lo % k == 0, k = 2, 4, 8, ... (k doubles and the
 * entries that fail the test are dropped in place, no new memory); keys
 * that fail it are neither looked up nor entered.  The sample is by
 * content, so a duplicate run of n blocks still meets the table with
 * probability 1 - (1 - 1/k)^n (0.63 for n = k, 0.98 for n = 4k), at any
 * offset; whole duplicate files are found regardless (the whole-file
 * fast path in dedupe.c needs no table).
 */
#define DD_TABLE_ENTRY_BYTES 24
struct dd_table_entry {
	uint64_t key_lo, key_hi;
	uint32_t file;              /* index into the scan's file list */
	uint32_t blk1;              /* block index + 1; 0: an empty slot (so a
				     * calloc'd table costs no memory until used) */
};
#define DD_MAX_BLK (UINT32_MAX - 1)
_Static_assert(sizeof(struct dd_table_entry) == DD_TABLE_ENTRY_BYTES, "entry size");

struct dd_table {
	struct dd_table_entry *slot;
	uint64_t capacity;          /* entries, a power of two */
	uint64_t max_capacity;      /* entries the memory cap allows: the
				     * table doubles up to it, then samples */
	uint64_t used;              /* entries in use */
	uint64_t sample_k;          /* 1: every block; else the sampling modulus */
	uint64_t degrades;          /* times k doubled */
};

/* Make a table using at most mem_bytes (rounded down to a power of two of
 * entries, at least 1024 entries), and no more than needed to hold
 * need_entries at 3/4 full (0: no limit): the number of blocks to scan
 * bounds the entries a run can make.  It starts at DD_TABLE_START entries
 * (or that bound, if smaller) and doubles when 3/4 full, so its memory
 * follows the distinct blocks actually seen (keys spread over every page:
 * a table sized for all blocks up front is resident whole); at the cap
 * it samples instead (dd_table_insert).  0, or -ENOMEM. */
#define DD_TABLE_START 65536
int dd_table_init(struct dd_table *t, uint64_t mem_bytes, uint64_t need_entries);
void dd_table_free(struct dd_table *t);
/* The key of a block hash on device dev. */
struct dd_hash dd_table_key(const struct dd_hash *h, dev_t dev);
/* Whether the key is in the current sample (lookups and inserts of other
 * keys are skipped). */
bool dd_table_sampled(const struct dd_table *t, const struct dd_hash *key);
/* Find key: the entry, or NULL (also for keys outside the sample). */
struct dd_table_entry *dd_table_lookup(struct dd_table *t, const struct dd_hash *key);
/* Enter key -> (file, blk), replacing the value of an equal key; when the
 * table is 3/4 full it first doubles (up to max_capacity; a failed
 * allocation counts as the cap), else degrades.  0 entered, 1 skipped
 * (outside the sample or blk too large). */
int dd_table_insert(struct dd_table *t, const struct dd_hash *key, uint32_t file, uint64_t blk);

/*
 * Hashes of shared device blocks already read in this run, so that data
 * shared by several files (clones, earlier dedupes) is read once: keyed by
 * (device, physical byte address) of a whole block whose extent is flagged
 * shared (dd_phys_map's DD_PHYS_SHARED).  The same device block holds the
 * same bytes for every file that maps it, as long as nobody writes it
 * during the run; a stale entry can only make the share step's own
 * byte compare (FIDEDUPERANGE) answer "differs", never share unequal data.
 * Open addressing, a fixed capacity chosen at the first put (a quarter of
 * the table's memory cap, 32 bytes per entry); once 3/4 full, puts are
 * dropped (the blocks are then read again).
 */
struct dd_pcache_entry {
	uint64_t dev, phys;         /* phys 0: empty slot */
	struct dd_hash h;
};
struct dd_pcache {
	struct dd_pcache_entry *slots;
	uint64_t capacity, used, max_bytes;
	bool failed;                /* allocation failed: stays empty */
};
/* Set up an empty cache that may use up to max_bytes.  No allocation yet. */
void dd_pcache_init(struct dd_pcache *pc, uint64_t max_bytes);
void dd_pcache_free(struct dd_pcache *pc);
/* The hash of device dev's block at phys (without DD_PHYS_SHARED) into
 * *h: true if cached. */
bool dd_pcache_get(const struct dd_pcache *pc, uint64_t dev, uint64_t phys, struct dd_hash *h);
/* Remember it (dropped when full or out of memory). */
void dd_pcache_put(struct dd_pcache *pc, uint64_t dev, uint64_t phys, const struct dd_hash *h);

/* ---- run growing (dedupe_hash.c) ---- */

/* Hash of block blk of file side (0: the destination being scanned, 1:
 * the source it matched); 0 or negative errno. */
typedef int (*dd_hash_get_fn)(void *priv, int side, uint64_t blk, struct dd_hash *out);

/*
 * A matching pair of block runs: [dst_blk, +nblocks) of the scanned file
 * and [src_blk, +nblocks) of the earlier file.
 */
struct dd_run {
	uint64_t dst_blk, src_blk, nblocks;
};

/*
 * Grow the seed dst block dst_seed == src block src_seed (equal hashes)
 * into the longest run of equal, non-hole block hashes backwards (not
 * below dst block dst_floor) and forwards (not past either file's last
 * block, dst_nblocks / src_nblocks).  same_file: source and destination
 * are one file, and the run keeps the source wholly before the
 * destination (src_blk + nblocks <= dst_blk, the kernel's no-overlap
 * rule), which needs src_seed < dst_seed.  Returns 0 with *run, -EINVAL
 * for a seed that does not match or breaks the rules, or the getter's
 * error.
 */
int dd_grow_run(dd_hash_get_fn get, void *priv, uint64_t dst_seed, uint64_t src_seed,
		uint64_t dst_floor, uint64_t dst_nblocks, uint64_t src_nblocks, bool same_file,
		struct dd_run *run);

/* ---- the hash store (dedupe_db.c) ---- */

#define DD_CHUNK_BLOCKS 1024    /* blocks per stored hash row */

struct dd_db;
/* The identity a stored file is valid for (the stat fields compared). */
struct dd_file_key {
	uint64_t dev, ino, size_bytes;
	int64_t mtime_ns, ctime_ns;
	uint32_t blksize;
};
/* Open (creating) the hash store at path, or a private temporary one
 * deleted at close when path is NULL.  0, or -EIO with a message in err
 * (a file that is not a hash store of this version: -EINVAL). */
int dd_db_open(struct dd_db **out, const char *path, char *err, size_t errlen);
/* Commit and close; 0 or -EIO. */
int dd_db_close(struct dd_db *db);
/* Look path up: *db_id and 1 when a complete record with the same key
 * exists (its hashes are reusable), 0 when not (old rows for path are
 * deleted and a new incomplete record made, *db_id set), -EIO. */
int dd_db_begin_file(struct dd_db *db, const char *path, const struct dd_file_key *key,
		     int64_t *db_id);
/* Mark a record complete (all its chunks stored) or drop it (the file
 * changed while it was read).  0 or -EIO. */
int dd_db_end_file(struct dd_db *db, int64_t db_id, bool complete);
/* Forget the records of files at or below root (an absolute path as the
 * records hold them: the file root itself, or paths under the directory
 * root) that this run did not look up with dd_db_begin_file (deleted,
 * renamed, now excluded or unreadable): their hashes and the settled runs
 * they are part of.  Without it the store keeps every file it ever saw.
 * *dropped grows by the records dropped.  0, -ENOMEM, -EIO.  (duperemove
 * likewise removes vanished files from its hash file on a rescan.) */
int dd_db_prune(struct dd_db *db, const char *root, uint64_t *dropped);
/* Store / load the hashes of chunk (blocks chunk * DD_CHUNK_BLOCKS ..),
 * n hashes.  Load: the number loaded (0: not stored), or -EIO. */
int dd_db_put_chunk(struct dd_db *db, int64_t db_id, uint64_t chunk, const struct dd_hash *h,
		    unsigned n);
int dd_db_get_chunk(struct dd_db *db, int64_t db_id, uint64_t chunk, struct dd_hash *h,
		    unsigned max);
/* Settled runs: record that every block of run r of file dst_id is
 * shared with file src_id (0 or -EIO); ask whether it was recorded (1
 * yes, 0 no, -EIO).  A record lives as long as both file records do, so a
 * rerun trusts it only while both files are unchanged. */
int dd_db_put_run(struct dd_db *db, int64_t dst_id, int64_t src_id, const struct dd_run *r);
int dd_db_get_run(struct dd_db *db, int64_t dst_id, int64_t src_id, const struct dd_run *r);
/* Commit the open transaction and start another (bounds lost work).
 * 0 or -EIO. */
int dd_db_commit(struct dd_db *db);
/* The store's meta table: key's text value into buf (len bytes, NUL
 * terminated): 0, -ENOENT (no such key), -EIO.  Set (value NULL: delete):
 * 0 or -EIO. */
int dd_db_meta_get(struct dd_db *db, const char *key, char *buf, size_t len);
/* Number of file records in the store into *n: 0 or -EIO. */
int dd_db_nfiles(struct dd_db *db, int64_t *n);
int dd_db_meta_set(struct dd_db *db, const char *key, const char *value);

/* ---- sharing (dedupe_share.c) ---- */

enum dd_fs_kind { DD_FS_KERNEL = 0, DD_FS_REFLINKFS = 1 };

/* The kind of filesystem fd is on: reflinkfs when fstatfs says FUSE and
 * RLFS_IOC_GET_EXTENTS answers, else kernel (FIEMAP / FIDEDUPERANGE). */
enum dd_fs_kind dd_fs_kind_of(int fd);

/*
 * Physical byte address of each block of [off, off + nblocks * blksize)
 * of fd into phys[] (0: hole, delayed allocation or unknown; such blocks
 * are never "already shared"), with bit 0 (DD_PHYS_SHARED; addresses are
 * block-aligned) set when the extent is shared with any other file
 * (FIEMAP_EXTENT_SHARED).  Through FS_IOC_FIEMAP on kernel filesystems,
 * RLFS_IOC_GET_EXTENTS on reflinkfs.  0 or negative errno.
 */
#define DD_PHYS_SHARED 1ull
int dd_phys_map(int fd, enum dd_fs_kind kind, uint64_t off, uint64_t nblocks, uint32_t blksize,
		uint64_t *phys);

/* Outcome of one dedupe of [src_off, +len) of src onto [dst_off, +len) of
 * dst, looped over the filesystem's per-call cap and short results. */
struct dd_share_result {
	uint64_t deduped_bytes;     /* status 0 bytes */
	bool differs;               /* FILE_DEDUPE_RANGE_DIFFERS seen */
	int error;                  /* 0, or the negative errno of the failure */
};
/* Per call at most DD_SHARE_MAX_CALL_BYTES (btrfs' BTRFS_MAX_DEDUPE_LEN;
 * XFS and reflinkfs take up to 1 GiB). */
#define DD_SHARE_MAX_CALL_BYTES (16ULL << 20)
void dd_share(int src_fd, int dst_fd, enum dd_fs_kind kind, uint64_t src_off, uint64_t dst_off,
	      uint64_t len, struct dd_share_result *r);

/* reflinkfs dedupe ... (tools/dedupe.c) */
int rlfs_dedupe_main(int argc, char **argv);
/* ---- the tree walk (dedupe_walk.c) ---- */

struct stat;
/* What dd_walk_tree calls, one call at a time (under its lock), in no
 * defined order; excluded is the exception: called by several walker
 * threads at once, before the entry is stat'ed or opened, so it must only
 * read shared state.  path: root + "/" + ... (malloc'd by the walk, valid
 * during the call only). */
struct dd_walk_ops {
	/* true: leave path (and, for a directory, all below it) out, not
	 * even stat'ed */
	bool (*excluded)(void *arg, const char *path);
	/* every entry that is not a directory (lstat: symlinks, devices and
	 * so on too); 0, or a negative errno that stops the walk */
	int (*file)(void *arg, const char *path, const struct stat *st);
	/* path could not be read ("read directory") or lstat'ed ("stat"),
	 * err the errno; the walk goes on without it */
	void (*error)(void *arg, const char *path, const char *what, int err);
};

/*
 * Walk the tree below the directory root (root_st: its lstat) with
 * several threads, as nftw(FTW_PHYS [| FTW_MOUNT with one_fs]) would
 * visit it: symlinks never followed, with one_fs nothing on another
 * device than root's.  root itself is not passed to the callbacks.
 * 0, or the first negative errno a callback returned, or -ENOMEM.
 */
int dd_walk_tree(const char *root, const struct stat *root_st, bool one_fs,
		 const struct dd_walk_ops *ops, void *arg);

/* Descriptors the process may still open: RLIMIT_NOFILE's soft limit
 * (UINT64_MAX when unlimited, 1024 if it cannot be read) minus those open
 * now (entries of /proc/self/fd, inherited ones too; 16 assumed without
 * /proc), 0 at or past the limit.  Sizes the walk's stack of directory
 * descriptors, the source cache and the read-ahead window (getrlimit(2),
 * proc(5)). */
uint64_t dd_fds_left(void);

/* ---- opening and reading ahead of the scan (dedupe_prefetch.c) ---- */

struct dd_prefetch;
/* File i of the scan's order: its path and size in bytes; false to leave
 * it alone.  Called from the prefetch threads: must only read what does
 * not change during the scan. */
typedef bool (*dd_prefetch_get_fn)(void *arg, size_t i, const char **path, uint64_t *size_bytes);
/*
 * Start the threads that open files 0 .. nfiles-1 (in that order, at most
 * max_files files and 64 MiB ahead of the scan, and one more per thread
 * in passing) with O_RDONLY | O_NOFOLLOW and start reading them into the
 * page cache (posix_fadvise WILLNEED).  0 (*out NULL when max_files is 0:
 * nothing to do), or -ENOMEM.  Threads that cannot be created are done
 * without.
 */
int dd_prefetch_start(struct dd_prefetch **out, size_t nfiles, size_t max_files,
		      dd_prefetch_get_fn get, void *arg);
/* The scan is at file i (never goes back): moves the window, closes the
 * descriptors of files before i it did not take.  p may be NULL. */
void dd_prefetch_at(struct dd_prefetch *p, size_t i);
/* The descriptor opened for file i, now the caller's (it must check that
 * it is the file it expects, as after its own open), or -1 (not opened:
 * open it yourself).  p may be NULL. */
int dd_prefetch_take(struct dd_prefetch *p, size_t i);
/* Stop and join the threads, close every descriptor not taken, free p
 * (NULL: no-op). */
void dd_prefetch_stop(struct dd_prefetch *p);

#endif

/*
 * inode.h: in-core inodes and the inode cache.
 *
 * struct rlfs_inode holds the decoded core of the on-disk inode, the
 * literal-area bytes (inline symlink target, inline xattrs) and, for
 * regular files, the whole data fork extent list in memory (the "incore
 * extent list" of XFS, iext): reads and block mapping never touch
 * metadata buffers.  The on-disk data fork is either inline extents
 * (format EXTENTS) or a bmbt rooted at ip->root (format BTREE).
 *
 * References: rlfs_iget takes one, rlfs_irele drops it.  ip->nlookup counts
 * references held by the FUSE kernel (lookup counts); an inode with nlink 0
 * is freed (blocks, xattrs, inode) when its last reference goes; until
 * then it is on its AG's unlinked list (iunlink.h), which a mount after a
 * crash empties.
 * Model: xfs_inode.c, xfs_icache.c, xfs_iext_tree.c (as a sorted array).
 */
#ifndef RLFS_INODE_H
#define RLFS_INODE_H
#include <sys/stat.h>
#include <time.h>
#include "iext.h"
#include "trans.h"

struct rlfs_inode {
	struct rlfs_mount *mp;
	uint64_t ino;
	/* core (native) */
	uint32_t mode, uid, gid, nlink;
	uint64_t size;              /* bytes */
	uint64_t nblocks;           /* blocks owned */
	struct timespec atime, mtime, ctime, crtime;
	uint64_t rdev, generation, parent;
	uint32_t flags;             /* RLFS_DIFLAG_* */
	uint32_t cowextsize_blocks;   /* RLFS_DIFLAG_COWEXTSIZE: CoW hint */
	uint32_t extsize_blocks;      /* RLFS_DIFLAG_EXTSIZE/EXTSZINHERIT hint */
	uint8_t format, aformat;
	uint16_t forkoff;
	uint64_t root;              /* BTREE: data fork / dir tree root fsbno */
	uint16_t root_level;
	uint64_t aroot;             /* xattr tree root fsbno */
	uint16_t aroot_level;
	uint32_t acount;
	uint8_t *literal;           /* inodesize - RLFS_DINODE_CORE bytes */
	/* in-core data fork extent list, sorted by startoff, no overlaps */
	struct rlfs_iext iext;
	bool ext_loaded;
	/* the CoW fork (cowfork.h): staged blocks; NULL until first used */
	struct rlfs_cowfork *cow;
	uint32_t nopen;             /* rlfs_file_opened - released (atomic) */
	/* cache state, under mp->icache_lock */
	unsigned refcount;
	uint64_t nlookup;           /* FUSE lookup count */
	struct rlfs_inode *hnext;
	bool freeing;
	/* outer lock: see rlfs.h */
	pthread_rwlock_t iolock;
	bool data_dirty;            /* written since last fsync */
	bool linkable;              /* O_TMPFILE, not linked yet (under iolock) */
	/* transaction membership (the inode's log item) */
	struct rlfs_log_item li;
	struct rlfs_trans *li_tp;   /* transaction it is joined to, or NULL */
	bool li_logged;
	void *li_snap;              /* snapshot for cancel */
};

/* Join ip to tp (caller holds its iolock exclusively): takes a snapshot of
 * the core and extent list for cancel.  Idempotent within one tp. */
void rlfs_trans_ijoin(struct rlfs_trans *tp, struct rlfs_inode *ip);
/* The core changed: copied into its cluster buffer at commit. Implies ijoin. */
void rlfs_trans_log_inode(struct rlfs_trans *tp, struct rlfs_inode *ip);

/* Inode cluster blocks: every inodesize slot carries its own magic, ino,
 * uuid and crc.  The buffer verifier checks magic, ino and uuid of every
 * slot (the block is an inode cluster of this fs); a slot's crc is checked
 * when that inode is loaded (rlfs_iget_tp) and recomputed by whoever
 * changes the slot (rlfs_inode_flush_to_buf, ialloc, mkfs), so one damaged
 * inode does not hide its neighbours (XFS: xfs_iread checks the crc).
 * inode.c. */
extern const struct rlfs_buf_ops rlfs_inode_buf_ops;

/* Look up / load an inode; takes a reference.  0, -ENOENT (free inode or
 * out-of-range number or not marked in use in the inobt: it is not
 * allocated), -EUCLEAN (bad crc, magic or number mismatch, fields that do
 * not fit the file type: format, forkoff, nextents, fork root, extents),
 * -ENOMEM.  Regular files and symlinks come with their data fork extent
 * list loaded.  Must not be called inside a transaction (it uses one of
 * its own); use rlfs_iget_tp inside one. */
int rlfs_iget(struct rlfs_mount *mp, uint64_t ino, struct rlfs_inode **ipp);
/* rlfs_iget for a number from outside (a file handle): an inode not cached
 * whose nlink is 0 on disk (an orphan a crash left: unlinked while open)
 * is -ENOENT, not corruption (no report, no error record). */
int rlfs_iget_linked(struct rlfs_mount *mp, uint64_t ino, struct rlfs_inode **ipp);
int rlfs_iget_tp(struct rlfs_trans *tp, uint64_t ino, struct rlfs_inode **ipp);
/*
 * Repair (fsck rebuilding a data fork from the rmap, or a directory whose
 * tree root is lost): load regular file or directory ino in tp without
 * reading its data fork.  The in-core inode gets an empty fork (a file:
 * format extents, no extents; a directory: no tree) and the rest of the
 * core is checked as rlfs_iget does; rlfs_bmap_repair_fork then installs
 * a file's recovered extents, fsck's directory rebuild adds the salvaged
 * entries.  0, -EBUSY (already cached: the fork would be read by
 * someone), -EINVAL (neither a regular file nor a directory), and
 * rlfs_iget's errors.  Only for a mount nothing else uses (fsck's).
 */
int rlfs_iget_fork_lost(struct rlfs_trans *tp, uint64_t ino, struct rlfs_inode **ipp);
/* Take another reference. */
void rlfs_ihold(struct rlfs_inode *ip);
/* Take a reference to an inode found outside the cache's hash (the CoW
 * GC's list) unless it is on its way out: being freed (unlinked, last
 * reference gone) or evicted (no reference, the kernel forgot it).
 * true with the reference taken.  Source: xfs_iget's igrab checks. */
bool rlfs_igrab(struct rlfs_inode *ip);
/* Drop a reference; the last one of an unlinked inode (nlink 0, nlookup 0)
 * frees it on disk (own transactions).  Never inside a transaction. */
void rlfs_irele(struct rlfs_inode *ip);
/* FUSE lookup count: +1 for each reply entry, -n on forget. */
void rlfs_inode_lookup_add(struct rlfs_inode *ip, uint64_t n);
void rlfs_inode_forget(struct rlfs_mount *mp, uint64_t ino, uint64_t n);

/*
 * Extent size hints and inode flags (lib/fileattr.c).
 *
 * rlfs_extsize_valid / rlfs_cowextsize_valid: XFS's inode verifiers
 * (libxfs/xfs_inode_buf.c xfs_inode_validate_extsize/_cowextsize) for a
 * hint in blocks with diflags (RLFS_DIFLAG_*) on an inode of mode: the
 * flag only on the file types it fits (EXTSIZE regular files,
 * EXTSZINHERIT directories, COWEXTSIZE both), non-zero with the flag and
 * zero without, at most 2^21 - 1 blocks and half an AG.  0 or -EINVAL.
 */
int rlfs_extsize_valid(const struct rlfs_mount *mp, uint32_t mode, uint32_t diflags,
		       uint32_t extsize_blocks);
int rlfs_cowextsize_valid(const struct rlfs_mount *mp, uint32_t mode, uint32_t diflags,
			  uint32_t cowextsize_blocks);
/* A new inode ip created in directory dp takes dp's inheritable flags and
 * hints (xfs_inode_inherit_flags/_flags2): EXTSZINHERIT becomes EXTSIZE on
 * a regular file and stays EXTSZINHERIT on a directory, COWEXTSIZE,
 * NOATIME and NODUMP pass on; hints the verifier refuses are dropped.
 * Regular files and directories only; the caller logs ip. */
void rlfs_inherit_flags(struct rlfs_inode *ip, const struct rlfs_inode *dp);
/* The CoW extent size hint in force for ip, in blocks: its own with
 * RLFS_DIFLAG_COWEXTSIZE, else the filesystem default (XFS: 32 blocks,
 * XFS_DEFAULT_COWEXTSZ_HINT).  For the CoW fork (issue 13 part 1). */
#define RLFS_DEFAULT_COWEXTSIZE_BLOCKS 32u
uint32_t rlfs_cowextsize_hint_blocks(const struct rlfs_inode *ip);

/* Initialise a newly allocated inode (after rlfs_ialloc) as an empty file
 * of the given mode; logs it. Returns it referenced.  nlink starts at 1
 * (2 for directories), forkoff at rlfs_inode_default_forkoff, the data
 * fork as empty inline extents (regular files, symlinks) or NONE; all four
 * timestamps now; generation = the slot's previous generation + 1.  If tp
 * is cancelled the in-core inode is unhashed and freed by the last irele.
 * -EUCLEAN if the slot is not free on disk. */
int rlfs_inode_init(struct rlfs_trans *tp, uint64_t ino, uint32_t mode,
		    uint32_t uid, uint32_t gid, uint64_t rdev, uint64_t parent,
		    struct rlfs_inode **ipp);
/* Copy the in-core core into the on-disk inode in its cluster buffer (joined
 * to tp, logged).  The log item's precommit calls it. */
int rlfs_inode_flush_to_buf(struct rlfs_trans *tp, struct rlfs_inode *ip);
/* Free an unlinked inode on disk: data fork blocks, xattrs, dir tree,
 * then the inode itself; the transaction that marks it free also takes it
 * off its AG's unlinked list (rlfs_iunlink_remove) if it is on it.  Own
 * transactions.  Caller holds the last ref. */
int rlfs_inode_inactivate(struct rlfs_inode *ip);
/*
 * Repair (fsck): free an allocated inode that has link count 0 and that no
 * directory names: a file unlinked while open when the filesystem stopped
 * (XFS frees these from its unlinked lists at log recovery, ext4 from its
 * orphan list; e2fsck pass 4 for the ones it finds).  Blocks are released
 * as by unlink (refcount -1, freed at 0), then the inode.  The caller has
 * checked that nothing names it.  Also what mount recovery calls for each
 * inode on an AG's unlinked list (rlfs_iunlink_recover): the freeing
 * transaction takes it off the list.  0; -ENOENT not in use; -EINVAL nlink
 * is not 0; -EBUSY cached and referenced; errors of iget and inactivate.
 */
int rlfs_inode_free_orphan(struct rlfs_mount *mp, uint64_t ino);

/* Fill a struct stat from the in-core inode (st_ino = ip->ino, st_blocks in
 * 512-byte units from nblocks). */
void rlfs_inode_stat(struct rlfs_inode *ip, struct stat *st);
/* current time for timestamps */
void rlfs_now(struct timespec *ts);
/* Unmount: free on disk every cached inode with nlink 0 (unlinked while
 * open; FUSE sends no forgets at unmount).  0 or the first error. */
int rlfs_icache_reclaim(struct rlfs_mount *mp);
/* Remount read-write: free the unlinked inodes whose last reference (and
 * the kernel's forget) went while the mount was read-only; inode_last_ref
 * keeps them cached meanwhile.  Inodes the kernel still holds stay.  0 or
 * the first error.  rlfs_icache_has_forgotten: whether there are any. */
int rlfs_icache_reclaim_forgotten(struct rlfs_mount *mp);
bool rlfs_icache_has_forgotten(struct rlfs_mount *mp);
/*
 * Default forkoff (bytes of the literal area given to the data fork) for a
 * new inode: half the literal area, rounded down to 8 bytes; the rest is
 * for inline xattrs.  With 512-byte inodes: 128 bytes = 5 inline extents
 * or a 128-byte inline symlink target.
 */
uint16_t rlfs_inode_default_forkoff(const struct rlfs_mount *mp);
/*
 * Undo log of the in-core extent list (ip->iext), so that a cancel restores
 * it without copying the whole list in every transaction (a file with
 * 40,000 extents took a megabyte of copying per copy-on-write).  The
 * caller (bmap.c), with ip joined: rlfs_inode_ext_reserve before a change
 * (0 or -ENOMEM: nothing changed yet), then, once ip->iext holds the
 * change, rlfs_inode_ext_logged(ip, op, idx, old): RLFS_EXT_INSERT (a
 * record now at idx), RLFS_EXT_DELETE (old was at idx) or RLFS_EXT_UPDATE
 * (old was the record at idx).  The cancel undoes them newest first.
 */
#define RLFS_EXT_INSERT 1u
#define RLFS_EXT_DELETE 2u
#define RLFS_EXT_UPDATE 3u
int rlfs_inode_ext_reserve(struct rlfs_inode *ip);
void rlfs_inode_ext_logged(struct rlfs_inode *ip, unsigned op, uint32_t idx,
			   const struct rlfs_irec *old);
/* Drop every cached inode (unmount, after rlfs_icache_reclaim); refcounts
 * must be 0.  Writes nothing. */
void rlfs_icache_destroy(struct rlfs_mount *mp);
int rlfs_icache_init(struct rlfs_mount *mp);
#endif

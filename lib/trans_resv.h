/*
 * trans_resv.h: log reservations, one per transaction type.
 * Source: xfs_trans_resv.c / xfs_trans_resv.h (our own formulas).
 *
 * A log reservation is the worst-case number of bytes one transaction of
 * a type can add to the log: every buffer it may dirty counted as a whole
 * block image plus its descriptor, intents (a payload block plus a
 * descriptor), dones and cancels (a descriptor each), plus the record
 * header blocks that hold the descriptors.  This is an upper bound of the
 * physical whole-block log format of docs/SPEC.md section 16 and stays one
 * if the log ever logs byte ranges instead.  The numbers are computed from
 * the geometry (block size, AG size, the most levels of every btree, the
 * inode chunk, the intent sizes) by rlfs_trans_resv_init, at mount and
 * whenever the geometry changes (mkfs and bare mounts set it by hand).
 *
 * rlfs_trans_alloc takes one (rlfs_trans_alloc(mp, &mp->resv.tr_create,
 * resblks, flags, &tp)); a transaction that rolls (rlfs_trans_roll,
 * deferred work) keeps it, and each transaction of the chain gets the
 * whole log_bytes again (log_count says how many rolls a permanent
 * reservation expects: the XFS tr_logcount; informational).
 * rlfs_trans_commit counts what the transaction logged, with the same
 * measure (rlfs_trans_resv_bytes), records the most each type used, and
 * on overrun prints one line to stderr and appends it to the file named
 * by $RLFS_RESV_REPORT.  tests/run.sh sets that variable for every test
 * and fails the run if any overrun line appears (docs/DESIGN.md, "Log
 * reservations").
 */
#ifndef RLFS_TRANS_RESV_H
#define RLFS_TRANS_RESV_H
#include <stdint.h>
#include <stdbool.h>

struct rlfs_mount;

/*
 * Per-transaction work bounds that the reservations count on.  The
 * callers that batch work (lib/file.c, reflink.c, inode.c) use these.
 */
#define RLFS_TX_ALLOC_BUDGET 8u       /* allocator calls beyond the holes, per write tx */
#define RLFS_TX_HOLES 32u             /* holes filled per write/falloc transaction */
#define RLFS_TX_UNMAP_EXTENTS 64u     /* extents unmapped per truncate/punch tx */
#define RLFS_TX_INACT_EXTENTS 64u     /* extents unmapped per inactivation tx */
#define RLFS_TX_COW_BLOCKS 8192u      /* blocks copied-on-write per transaction */
#define RLFS_TX_COW_EXTENTS 64u       /* old extents, and new ones allocated, per CoW tx */
#define RLFS_TX_COWFORK_EXTENTS 16u   /* staged extents staged, remapped or cancelled per
				       * CoW-fork transaction (cowfork.c) */
#define RLFS_TX_UNSHARE_BLOCKS 4096u  /* blocks unshared per transaction */
#define RLFS_TX_CLONE_PIECES 1024u    /* pieces remapped per clone transaction */

/*
 * One transaction type's reservation.
 *   log_bytes  worst-case bytes one transaction of the type (each one of
 *              a rolled chain) adds to the log; 0 for transactions that
 *              log nothing (lookups, lock holders)
 *   log_count  transactions of a permanent (rolling) reservation: 1 for
 *              a single commit, more when the type rolls (defer steps,
 *              truncate batches); informational, as XFS's tr_logcount
 *   name       "tr_create" etc., for reports
 *   max_used_bytes, commits  what commits of this type used so far in
 *              this mount (the most, and how many): headroom reports
 *   overruns   commits that went over log_bytes
 */
struct rlfs_trans_res {
	uint32_t log_bytes;
	uint32_t log_count;
	const char *name;
	uint32_t max_used_bytes;
	uint64_t commits;
	uint64_t overruns;
};

/* X-macro of every transaction type, in report order: X(field, what). */
#define RLFS_TRANS_RESV_TYPES(X)                                              \
	X(tr_rdonly,    "logs nothing: lookups, readdir, lock holders")        \
	X(tr_ichange,   "one inode core: times, size, mode")                  \
	X(tr_sb,        "superblock (error record, clean/dirty state)")       \
	X(tr_create,    "create a file or tmpfile: inode chunk, dir entry, ACLs") \
	X(tr_mkdir,     "mkdir: as create, the parent's link count")          \
	X(tr_symlink,   "symlink: create plus remote target blocks")         \
	X(tr_link,      "link: dir entry, inode core, unlinked list")        \
	X(tr_remove,    "unlink/rmdir: dir entry, unlinked list")            \
	X(tr_rename,    "rename: two dirs, up to four inodes, whiteout")     \
	X(tr_setattr,   "setattr/extend: inode core and size change")         \
	X(tr_itruncate, "truncate batch of extents (rolls, defer steps)")    \
	X(tr_punch,     "punch hole / collapse batch (rolls, defer steps)")  \
	X(tr_write,     "write: allocate holes unwritten, or convert")        \
	X(tr_falloc,    "fallocate: allocate holes unwritten")                \
	X(tr_cow,       "copy-on-write / unshare remap of one chunk")       \
	X(tr_cowfork,   "CoW fork: stage, remap or cancel a batch of extents") \
	X(tr_clone,     "one clone (reflink) batch")                          \
	X(tr_xattr_set, "set an xattr / ACL")                                 \
	X(tr_xattr_rm,  "remove an xattr / ACL")                              \
	X(tr_inactive,  "free an unlinked inode: extents batch, ifree")       \
	X(tr_efi,       "defer step: free up to RLFS_EFI_MAX_ITEMS extents")  \
	X(tr_cui,       "defer step: up to RLFS_CUI_MAX_ITEMS refcount updates") \
	X(tr_recover,   "log recovery: one recovered intent and its chain")   \
	X(tr_mkfs,      "mkfs: every AG's headers and btree roots")           \
	X(tr_fsck,      "fsck repair transaction (bounded by the log only)")

/* The reservations of a mount (mp->resv).  geometry_key is what they were
 * computed for (rlfs_trans_resv_init recomputes when it changes). */
struct rlfs_trans_resv {
#define RLFS_TRANS_RESV_FIELD(f, what) struct rlfs_trans_res f;
	RLFS_TRANS_RESV_TYPES(RLFS_TRANS_RESV_FIELD)
#undef RLFS_TRANS_RESV_FIELD
	uint64_t geometry_key;
};
enum {
#define RLFS_TRANS_RESV_ENUM(f, what) RLFS_TRANS_RESV_IDX_##f,
	RLFS_TRANS_RESV_TYPES(RLFS_TRANS_RESV_ENUM)
#undef RLFS_TRANS_RESV_ENUM
	RLFS_TRANS_RESV_NTYPES
};

/*
 * Compute mp->resv from mp's geometry (blocksize, agblocks, agcount,
 * dblocks, inopblock, chunk_blocks, features) if it changed since the
 * last call (cheap otherwise); keeps the per-type usage counters when
 * nothing changed.  No errors.
 */
void rlfs_trans_resv_init(struct rlfs_mount *mp);

/*
 * Bytes a transaction adds to the log for nimages whole-block items (block
 * images, intent payload blocks) and ndescs descriptors in all (images,
 * intents, dones, cancels): nimages blocks plus the header blocks that
 * hold ndescs descriptors (rlfs_log_items_per_rec per header).  The
 * measure both the reservations and the commit-time check use.
 */
uint64_t rlfs_trans_resv_bytes(const struct rlfs_mount *mp, uint64_t nimages,
			       uint64_t ndescs);

/* The i-th reservation of mp->resv (0 <= i < RLFS_TRANS_RESV_NTYPES), and
 * what it covers (the X-macro text). */
struct rlfs_trans_res *rlfs_trans_resv_nth(struct rlfs_mount *mp, unsigned i);
const char *rlfs_trans_resv_what(unsigned i);

/*
 * A commit of a transaction of type res logged used_bytes (measured with
 * rlfs_trans_resv_bytes): count it, and if used_bytes > res->log_bytes
 * print "reflinkfs: log reservation overrun: tr_NAME used N bytes >
 * reserved M" to stderr and append that line to $RLFS_RESV_REPORT (if
 * set).  Under meta_lock.
 */
void rlfs_trans_resv_account(struct rlfs_mount *mp, struct rlfs_trans_res *res,
			     uint64_t used_bytes);

/*
 * At unmount / mount teardown: if $RLFS_RESV_REPORT is set, append one line
 * per type that committed in this mount: "resv tr_NAME reserved M max N
 * commits C".  No errors (a file that cannot be opened is skipped).
 */
void rlfs_trans_resv_report(struct rlfs_mount *mp);
#endif

/*
 * fsck_int.h: what the parts of `reflinkfs fsck` share (tools/fsck*.c):
 * the checker state (struct fsck), the claim and inode tables, and the
 * functions one phase calls in another.  The phases are described in
 * fsck.c; each file holds one or two of them:
 *   fsck.c         reporting, tables, opening and locking, the driver
 *   fsck_ag.c      phases 1-2: superblocks, allocation groups
 *   fsck_inode.c   phase 3: inodes and everything they own
 *   fsck_xref.c    phases 4-5: directory graph, block ownership, refcounts
 *   fsck_rmap.c    phase 5, RMAP feature: rmap btree against everything else
 *   fsck_repair.c  phase 6: summary counters and the repairs
 *   fsck_fork.c    phase 3b, RMAP feature: data forks recovered from the
 *                  rmap btree, and their repair
 *   fsck_rebuild.c phase 6: rebuild of the AG trees (free space, inode,
 *                  refcount and rmap btrees, AGFL, AG header counters)
 *   fsck_claims.c  the claim stores: claims by AG, spilled to a temporary
 *                  file past a memory cap, loaded one AG at a time
 *   fsck_dir.c     phase 3c: entries of directories whose b+tree is
 *                  damaged, salvaged from the blocks that can be read;
 *                  phase 4 repairs: such directories rebuilt, directory
 *                  entries naming no inode removed, a /lost+found that is
 *                  not a directory moved aside, lost inodes linked into
 *                  /lost+found
 */
#ifndef RLFS_FSCK_INT_H
#define RLFS_FSCK_INT_H
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "rlfs.h"
#include "dev.h"
#include "buf.h"
#include "trans.h"
#include "btree.h"
#include "alloc.h"
#include "ialloc.h"
#include "inode.h"
#include "bmap.h"
#include "dir.h"
#include "xattr.h"
#include "refcount.h"
#include "rmap.h"
#include "log.h"
#include "iunlink.h"
#include "fsck_claims.h"

#if defined(__has_include)
#if __has_include("cli.h")
#include "cli.h"
#define RLFS_HAVE_CLI_H 1
#endif
#endif
#ifndef RLFS_HAVE_CLI_H
int rlfs_fsck_main(int argc, char **argv);
#endif

#define FSCK_EXIT_OK 0
#define FSCK_EXIT_FIXED 1
#define FSCK_EXIT_UNCORRECTED 4
#define FSCK_EXIT_OPERR 8

#define FSCK_MAX_REPORTS 1000
#define FSCK_LOCK_WAIT_SEC 30
#define FSCK_SYMLINK_MAX 4095
/* Clean buffers fsck's bare mount keeps cached, in bytes (a mount keeps
 * 256 MiB, lib/core.c): part of fsck's fixed memory. */
#define FSCK_BCACHE_CLEAN_BYTES ((size_t)16 << 20)

/* What claims a run of blocks. */
enum claim_kind {
	CL_SB, CL_AGH, CL_AGFLBLK, CL_BNOBT, CL_CNTBT, CL_INOBT, CL_REFCBT, CL_RMAPBT, CL_STAGING,
	CL_AGFL, CL_FREE, CL_ICHUNK, CL_LOG, CL_DATA, CL_BMBT, CL_DIRBT, CL_ATTRBT, CL_ATTRV, CL_SYMLINK,
};

struct claim {
	uint64_t start;             /* fsbno */
	uint64_t owner;             /* agno, or ino for inode-owned kinds */
	uint64_t aux;               /* CL_DATA: file block; CL_ICHUNK: startino */
	uint32_t len;               /* blocks */
	uint8_t kind;
	uint8_t flags;              /* CLF_* */
};
#define CLF_UNWRITTEN 1u            /* CL_DATA: an unwritten extent */

/* A refcount btree record (REFLINK feature). */
struct refc {
	uint64_t start;             /* fsbno */
	uint32_t len;
	uint32_t rc;
	bool cow;                   /* CoW staging domain */
};

/* An inobt record (all AGs, sorted by startino). */
struct chunk {
	uint64_t startino;
	uint64_t free;
	bool recovered;             /* not in the inobt, found from an
				     * OWN_INODES rmap: phase 3 sets free
				     * from the inodes' modes */
};

/* An in-use inode, as far as the directory pass needs it. */
#define IE_BAD     (1u << 0)    /* failed verification: skip link checks */
#define IE_REACHED (1u << 1)
#define IE_LISTED  (1u << 2)    /* on its AG's unlinked list (a good list) */
struct ientry {
	uint64_t ino;
	uint64_t parent;            /* di_parent */
	uint64_t found_parent;      /* directory whose entry names it (dirs) */
	uint32_t mode;
	uint32_t nlink;
	uint32_t nref;              /* directory entries pointing at it */
	uint32_t nsubdirs;          /* entries of this dir naming directories */
	uint32_t flags;
	uint64_t next_unlinked;     /* dinode next_unlinked */
};
#define IE_LOST    (1u << 3)    /* named by no directory: repair links it
				 * into /lost+found (struct fsck.lost_inos) */

/* A directory entry repair removes: it names a free inode or one outside
 * every inode chunk (phase 4, fsck_dir.c). */
struct dfix {
	uint64_t dir;               /* directory inode */
	uint64_t child;             /* the inode number the entry holds */
	uint64_t name_off;          /* into fsck.names */
	uint8_t namelen;
};

/* A directory whose b+tree could not be read whole (or held entries that
 * failed their checks): phase 3c takes the entries of every leaf it can
 * still read, and repair rebuilds the tree from them (fsck_dir.c). */
struct dirrebuild {
	uint64_t ino;
	uint64_t root;              /* old tree root fsbno (may be damaged) */
	uint64_t other_blocks;      /* blocks it owns outside the tree (xattrs):
				     * its nblocks once the old tree is gone */
	uint64_t nentries;          /* entries salvaged (phase 3c) */
	uint64_t *old_blocks;       /* blocks of the old tree known to be its
				     * own (read and verified, or named by the
				     * rmapbt): claimed, and freed by repair */
	size_t nold, old_cap;
};

/* A lost inode repair links into /lost+found (fsck_dir.c). */
struct lostino {
	uint64_t ino;
	uint32_t mode;
	uint32_t nlink;             /* the link count it gets (1, or 2 + its
				     * subdirectories for a directory) */
};

/* A directory entry, kept for the graph pass. */
struct edge {
	uint64_t dir;
	uint64_t child;
	uint64_t name_off;          /* into fsck.names */
	uint8_t namelen;
	uint8_t ftype;
};

struct ag_info {
	bool hdr_ok;                /* header verified: counters comparable */
	bool trees_ok;              /* bnobt/cntbt/inobt(/refcountbt) walked without error */
	bool refc_ok;               /* refcount btree fully walked (REFLINK) */
	bool rmap_ok;               /* rmap btree walked, records sane (RMAP) */
	struct rlfs_agh agh;        /* copy of the on-disk header */
	uint64_t freeblks;          /* computed from bnobt */
	uint32_t longest;           /* computed from cntbt */
	uint64_t btreeblks;         /* bnobt + cntbt blocks beyond the roots */
	/* refcount / rmap btree blocks, roots included, counted by the walk
	 * (AGBTCOUNT feature: agh.refc_blocks / rmap_blocks; SPEC section 5);
	 * refc_counted / rmap_counted: the walk finished, so they can be
	 * compared and written */
	uint64_t refc_blocks, rmap_blocks;
	bool refc_counted, rmap_counted;
	uint64_t icount, ifree;     /* computed from inobt */
	uint32_t flcount;           /* valid AGFL entries */
	bool fix;                   /* counters differ */
	bool fix_unlinked;          /* unlinked list broken: repair empties it */
	bool leak_noted;            /* "leak check skipped" said once */
	bool ino_ok;                /* inobt walked without error: chunks known
				     * (or all taken from the rmapbt: ino_rmap) */
	bool trees_ok_but_ino;      /* trees_ok, the inobt aside */
	uint64_t ino_nerrors;       /* findings made walking the inobt */
	bool ino_rmap;              /* inobt damaged: its chunks are the
				     * rmapbt's OWN_INODES records, and
				     * icount/ifree are counted after phase 3 */
	bool bno_ok;                /* bnobt walked without error: its free
				     * extents (CL_FREE) are the old free view */
};

/* An inode core repair: link count and/or directory parent (phase 4). */
struct ifix {
	uint64_t ino;
	uint64_t parent;            /* new parent pointer; 0 = leave */
	uint32_t nlink;             /* new link count, if set_nlink */
	bool set_nlink;
	bool clear_next;            /* set next_unlinked to 0 (broken list) */
	uint32_t clear_diflags;     /* RLFS_DIFLAG_* bits to clear (bad hints,
				     * unknown bits) */
	bool zero_extsize, zero_cowextsize; /* hint fields to set to 0 */
};

struct fsck {
	const char *prog;           /* argv[0], for messages */
	const char *image;
	bool dry_run, verbose;
	bool zero_log;              /* -L: zero the log instead of replaying it */
	bool log_zeroed;            /* -L did (the fs changed: exit 1 if clean) */
	bool log_pending;           /* -n met a log that needs replay: stopped */
	bool quiet;                 /* the re-check after a repair: count only */
	bool readonly;              /* image could only be opened read-only
				     * (nothing written) */
	int lock_fd;
	bool own_lock_fd;           /* close lock_fd at the end (not in a re-check) */
	struct rlfs_dev *dev;
	struct rlfs_mount *mp;
	struct rlfs_sb sb;          /* primary superblock (first 320 bytes) */
	bool sb_fix;                /* superblock counters or state to rewrite */
	bool sb_block_ok;           /* primary superblock block verified (crc,
				     * blkno, owner): safe to rewrite in place */
	struct rlfs_errrec rec;     /* the superblock's error record, as found */
	bool sb_marked_rebuild;     /* record marked before an AG rebuild that
				     * reuses old tree blocks (fsck_rebuild.c) */

	/* what repair would do, by kind (each also counted in ncounter) */
	uint64_t nfix_counters, nfix_links, nfix_parents;
	uint64_t nfix_hints;        /* inodes whose flags/hints repair resets */
	bool fix_state;             /* the unclean-unmount flag */
	struct ifix *ifixes;
	size_t nifixes, ifixes_cap;
	uint64_t nfix_unlinked;     /* broken unlinked lists to empty */
	uint64_t nlisted;           /* inodes on good unlinked lists: the next
				     * read-write mount frees them (not findings) */
	uint64_t *orphans;          /* inodes to free: nlink 0, named nowhere */
	size_t norphans, orphans_cap;
	struct lost_fork *lost;     /* data forks to rebuild from the rmap */
	size_t nlost, lost_cap;
	uint64_t nfix_forks;
	uint64_t *cleared;          /* damaged inodes repair writes anew as
				     * free inodes (fsck_clear_inodes) */
	size_t ncleared, cleared_cap;
	struct dfix *dfixes;        /* directory entries to remove */
	size_t ndfixes, dfixes_cap;
	struct lostino *lostinos;   /* lost inodes for /lost+found */
	size_t nlostinos, lostinos_cap;
	uint64_t lpf_ino;           /* /lost+found, if the root names a good
				     * directory so; 0: repair creates it */
	struct dirrebuild *dirrebuilds; /* directories repair rebuilds */
	size_t ndirrebuilds, dirrebuilds_cap;
	bool lpf_aside;             /* the root's "lost+found" names a
				     * non-directory: repair removes that
				     * entry (lpf_aside_entry) and makes a new
				     * /lost+found; the inode, if named
				     * nowhere else, goes into it */
	struct dfix lpf_aside_entry;

	bool incomplete;            /* some inode metadata unreadable: owners unknown */
	bool dirs_incomplete;       /* some directory unreadable: links unknown */
	uint64_t nlink_suppressed;
	uint64_t leaked_blocks, leaked_runs;
	uint64_t nerrors;           /* findings left uncorrected */
	uint64_t nrebuild;          /* findings a rebuild of the AG trees
				     * corrects (fsck_rebuild.c) */
	int rb_depth;               /* > 0: ERR counts into nrebuild (RB_BEGIN) */
	uint64_t ncounter;          /* counter findings (fixable) */
	uint64_t nprinted;
	bool oom;

	/* claim stores (fsck_claims.c): struct claim records in one bucket
	 * per AG, a claim never crossing an AG's end (fsck_add_claim splits
	 * it); phases 5-6 load one AG's bucket at a time */
	struct fsck_claims claims;  /* every claim (with REFLINK, data-fork
				     * mappings only as their union, added by
				     * fsck_check_refcounts) */
	bool reflink;               /* REFLINK feature: data blocks may be shared */
	struct fsck_claims dclaims; /* REFLINK: data-fork mappings (may overlap) */
	size_t mem_cap_bytes;       /* each store's in-memory cap (0: not set up) */
	const struct fsck_claims *store_failed; /* the store whose spill file
				     * failed (f->oom is set too): exit 8 */
	struct fsck_claims refcs;   /* REFLINK: refcount btree records (struct
				     * refc), a bucket per AG */
	struct chunk *chunks;
	size_t nchunks, chunks_cap;
	struct fsck_claims irmaps;  /* RMAP: OWN_INODES records (owner = agno),
				     * a bucket per AG */
	struct ientry *inodes;
	size_t ninodes, inodes_cap;
	struct edge *edges;
	size_t nedges, edges_cap;
	char *names;
	size_t names_len, names_cap;
	struct ag_info *ags;

	/* statistics for -v and the summary line */
	uint64_t n_files, n_dirs, n_symlinks, n_special, used_blocks;
};

/* "AG a agbno b (fsbno x)" for a block (fsck_loc). */
struct locbuf { char s[96]; };

/*
 * Block walk that also hands every leaf record to a record callback.  The
 * records are taken straight from the verified leaf blocks rather than
 * through rlfs_btree_query_all, whose per-record verifier stops at the
 * first bad record: fsck wants to see (and judge) all of them.  Leaves are
 * visited left to right, so records come in key order.
 */
struct visit_ctx {
	rlfs_btree_blk_fn blk;
	void *blk_priv;
	rlfs_btree_rec_fn rec;
	void *rec_priv;
	uint16_t rec_len;
	uint32_t blocksize;
};

/* One finding: an error left alone, one repair can fix, a counter to fix. */
#define ERR(f, ...) fsck_report((f), false, __VA_ARGS__)
#define FIXABLE(f, ...) fsck_report((f), true, __VA_ARGS__)
#define FIXCOUNTER(f, ...) ((f)->nfix_counters++, fsck_report((f), true, __VA_ARGS__))
/* Between RB_BEGIN and RB_END, ERR findings are ones the AG tree rebuild
 * corrects (damaged free-space, refcount or rmap btrees and their
 * records, the AGFL, free space disagreeing with ownership, refcount
 * mismatches): counted in f->nrebuild instead of f->nerrors. */
#define RB_BEGIN(f) ((f)->rb_depth++)
#define RB_END(f) ((f)->rb_depth--)

/*
 * A tentative stretch of the check: its claims and findings are dropped
 * when it turns out another source will supply them (phase 3 walking a
 * data fork that phase 3b then takes from the rmap).  FSCK_MARK saves
 * the counts and marks both claim stores, fsck_rewind restores them (the
 * lines printed stay printed).  One stretch at a time: only the newest
 * mark can be rewound to (fsck_claims_mark).
 */
struct fsck_mark {
	struct fsck_claims_mark claims, dclaims;
	uint64_t nerrors, nrebuild, ncounter;
};
static inline struct fsck_mark fsck_mark_now(struct fsck *f)
{
	struct fsck_mark m = { .nerrors = f->nerrors, .nrebuild = f->nrebuild,
			       .ncounter = f->ncounter };

	fsck_claims_mark(&f->claims, &m.claims);
	fsck_claims_mark(&f->dclaims, &m.dclaims);
	return m;
}
#define FSCK_MARK(f) fsck_mark_now(f)
static inline void fsck_rewind(struct fsck *f, const struct fsck_mark *m)
{
	/* (cannot fail: m is the newest mark, phase 3 marks once an inode) */
	(void)fsck_claims_rewind(&f->claims, &m->claims);
	(void)fsck_claims_rewind(&f->dclaims, &m->dclaims);
	f->nerrors = m->nerrors;
	f->nrebuild = m->nrebuild;
	f->ncounter = m->ncounter;
}

/*
 * The functions below are described in full where they are defined; in
 * short (none of them fails hard: findings are reported and counted in
 * struct fsck, and only the repair functions return 0 or -errno):
 *   fsck_report/verbose    one finding / one -v line (printf format)
 *   fsck_loc               "AG a agbno b (fsbno x)" for a block number
 *   fsck_grow              grow array p (*cap elements of sz bytes) to hold
 *                          n; NULL and f->oom set when out of memory
 *   fsck_add_claim         [start, start+len) blocks claimed by kind/owner;
 *                          runs leaving the filesystem are clipped and reported
 *                          (_flags: with CLF_* flags)
 *   fsck_nowrite_reason    why nothing is written: "-n" or "read-only image"
 *   fsck_find_inode/chunk  binary search of the sorted tables; NULL if absent
 *   fsck_check_*           phases 1-6 (model: xfs_repair phases)
 *   fsck_fix_*, fsck_write_primary_sb, fsck_free_orphans
 *                          the repairs: 0 or -errno (-EUCLEAN if a block
 *                          changed under us, -EIO, -ENOMEM)
 */

/* fsck.c */
__attribute__((format(printf, 3, 4)))
void fsck_report(struct fsck *f, bool fixable, const char *fmt, ...);
__attribute__((format(printf, 2, 3)))
void fsck_verbose(struct fsck *f, const char *fmt, ...);
struct locbuf fsck_loc(const struct fsck *f, uint64_t fsbno);
const char *fsck_errstr(int err);
void *fsck_grow(struct fsck *f, void *p, size_t *cap, size_t n, size_t sz);
const char *fsck_claim_kind_name(uint8_t kind);
void fsck_claim_desc(const struct claim *c, char *buf, size_t len);
void fsck_add_claim(struct fsck *f, uint8_t kind, uint64_t owner, uint64_t aux,
		      uint64_t start, uint64_t len);
void fsck_add_claim_flags(struct fsck *f, uint8_t kind, uint8_t flags, uint64_t owner,
			  uint64_t aux, uint64_t start, uint64_t len);
/* Set up the claim stores for f->mp->agcount AGs, the cap from the
 * environment (RLFS_FSCK_MEM_CAP_BYTES, bytes; default
 * FSCK_CLAIMS_DEFAULT_CAP_BYTES).  0, or FSCK_EXIT_OPERR with a message
 * on stderr (a bad value, out of memory). */
int fsck_claims_setup(struct fsck *f);
/* Append record rec (a struct claim; a struct refc for f->refcs) to store
 * s's bucket agno; on a store error set f->oom and f->store_failed (fsck
 * stops with exit 8).  0 or -errno. */
int fsck_store_add(struct fsck *f, struct fsck_claims *s, uint32_t agno, const void *rec);
/* Load store s's bucket agno (*n records in append order, malloc'd, the
 * caller frees).  0, or -errno with f->oom and, for a spill file error,
 * f->store_failed set. */
int fsck_store_load_raw(struct fsck *f, struct fsck_claims *s, uint32_t agno, void **out,
			size_t *n);
/* The same for a store of claims, sorted by fsck_cmp_claim when sort. */
int fsck_store_load(struct fsck *f, struct fsck_claims *s, uint32_t agno, bool sort,
		    struct claim **out, size_t *n);
const char *fsck_nowrite_reason(const struct fsck *f);
struct ientry *fsck_find_inode(struct fsck *f, uint64_t ino);
struct chunk *fsck_find_chunk(struct fsck *f, uint64_t ino);
void fsck_xsort(void *base, size_t n, size_t sz, int (*cmp)(const void *, const void *));
int fsck_cmp_u64(uint64_t a, uint64_t b);
int fsck_cmp_chunk(const void *a, const void *b);
int fsck_cmp_claim(const void *a, const void *b);
int fsck_cmp_edge_dir(const void *a, const void *b);

/* fsck_ag.c */
int fsck_check_primary_sb(struct fsck *f);
void fsck_check_backup_sbs(struct fsck *f);
int fsck_check_and_walk(struct fsck *f, struct rlfs_trans *tp, const struct rlfs_btree_ops *ops,
			  uint32_t agno, struct rlfs_inode *ip, void *agbp, struct visit_ctx *v,
			  const char *where);
void fsck_check_ag(struct fsck *f, uint32_t agno);
const struct rlfs_btree_ops *fsck_rmapbt_ops(void);

/* fsck_rmap.c */
void fsck_check_rmaps(struct fsck *f);
/* Call fn for every record of AG agno's rmap btree, decoded, in key order
 * (the header as phase 2 copied it: only for an AG whose rmap_ok is set).
 * fn returns 0 to go on, > 0 to stop, < 0 an errno.  0 or -errno. */
int fsck_rmap_walk(struct fsck *f, uint32_t agno,
		   int (*fn)(const struct rlfs_rmap_irec *ir, void *priv), void *priv);

/* fsck_inode.c */
void fsck_check_inodes(struct fsck *f);

/* fsck_fork.c */
/* May a regular file's unreadable data fork be recovered from the rmap
 * (RMAP feature, every AG's header and rmap btree checked clean)? */
bool fsck_fork_recoverable(const struct fsck *f);
/* Queue ino (its data fork could not be walked; other_blocks: blocks it
 * owns outside the data fork) for phase 3b.  0 or -ENOMEM. */
int fsck_fork_lost(struct fsck *f, uint64_t ino, uint64_t other_blocks);
/* Phase 3b: claims and one fixable finding per queued inode, from every
 * AG's rmap btree. */
void fsck_recover_forks(struct fsck *f);
/* Repair: rebuild the queued forks through a library mount.  0 or -errno. */
int fsck_fix_forks(struct fsck *f);
void fsck_free_lost(struct fsck *f);

/* fsck_xref.c */
void fsck_check_graph(struct fsck *f);
void fsck_check_refcounts(struct fsck *f);
void fsck_check_claims(struct fsck *f);

/* fsck_rmap.c (for the rebuild) */
/* qsort order of struct rlfs_rmap_irec: the rmapbt key
 * (rlfs_rmap_irec_cmp_key), then length and flags (equal records compare
 * equal): the order of fsck_rmap_expected's output. */
int fsck_cmp_rmap(const void *a, const void *b);
int fsck_rmap_expected(struct fsck *f, uint32_t agno, const struct claim *cl, size_t n,
		       const struct claim *dcl, size_t nd, bool skip_data,
		       struct rlfs_rmap_irec **out, size_t *nout);

/* fsck_rebuild.c */
void fsck_recover_chunks(struct fsck *f);
bool fsck_rebuild_possible(struct fsck *f, const char **why);
int fsck_rebuild_ags(struct fsck *f, uint64_t *icount, uint64_t *ifree, uint64_t *fdblocks);

/* fsck_dir.c */
/* Phase 3 found the b+tree of directory ino (root fsbno root) damaged:
 * queue it for phase 3c and repair (other_blocks: blocks it owns outside
 * the tree).  0 or -ENOMEM. */
int fsck_dir_rebuild_queue(struct fsck *f, uint64_t ino, uint64_t root,
			   uint64_t other_blocks);
/* Phase 3c: the entries of every queued directory, from each of its tree
 * leaves that still verifies (found from the root down, through sibling
 * pointers, and with the RMAP feature from the rmap btree's records of
 * the directory's tree blocks), added as edges; the old tree's blocks
 * known to be its own claimed (CL_DIRBT); one fixable finding per
 * directory. */
void fsck_salvage_dirs(struct fsck *f);
/* Is ino a directory repair rebuilds? */
bool fsck_dir_rebuilt(const struct fsck *f, uint64_t ino);
/* Repair: rebuild the queued directories from their salvaged entries,
 * remove the directory entries in f->dfixes, move a /lost+found that is
 * not a directory aside, and link the inodes in f->lostinos into
 * /lost+found (made if missing), through a library mount, one logged
 * transaction each.  0 or -errno (-EUCLEAN: something changed since the
 * check). */
int fsck_fix_dirs(struct fsck *f);

/* fsck_repair.c */
int fsck_get_raw_buf(struct fsck *f, struct rlfs_trans *tp, uint64_t fsbno,
		     const struct rlfs_buf_ops *ops, uint64_t owner, struct rlfs_buf **bpp);
void fsck_check_counters(struct fsck *f, uint64_t *icount, uint64_t *ifree,
			   uint64_t *fdblocks, bool *all_ok);
/* Store an AG header's summary counters (freeblks and longest in blocks,
 * btreeblks: bnobt + cntbt blocks beyond their roots, icount and ifree in
 * inodes; SPEC section 5) into agh, and empty its unlinked list when
 * clear_unlinked.  The caller logs the buffer. */
void fsck_put_agh_counters(struct rlfs_agh *agh, uint64_t freeblks, uint32_t longest,
			   uint64_t btreeblks, uint64_t icount, uint64_t ifree,
			   bool clear_unlinked);
int fsck_fix_ag_counters(struct fsck *f);
int fsck_fix_inodes(struct fsck *f);
/* Write each inode in f->cleared anew as a free inode (zeroed core: magic,
 * number, uuid, a new generation, crc; as a new inode chunk's), raw.
 * After the AG tree rebuild, whose inobt marks them free.  0 or -errno. */
int fsck_clear_inodes(struct fsck *f);
int fsck_write_primary_sb(struct fsck *f, bool clean, uint64_t icount, uint64_t ifree,
			    uint64_t fdblocks, uint64_t left);
int fsck_free_orphans(struct fsck *f);

#endif

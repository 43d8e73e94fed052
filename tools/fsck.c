/*
 * fsck.c: `reflinkfs fsck [-n] [-v] IMAGE`, the offline checker.
 *
 * Exit codes as fsck(8): 0 clean, 1 errors corrected, 4 errors left
 * uncorrected, 8 operational error (cannot open, not a reflinkfs image,
 * image busy, out of memory).  -n: check only, never write.  Repair in v1
 * fixes only what follows from structures just verified: summary counters
 * (superblock icount/ifree/fdblocks, AG header freeblks/longest/btreeblks/
 * icount/ifree), link counts and directory parent pointers (from the
 * directory entries), orphan inodes (nlink 0, named nowhere: freed through
 * the library), the state flag and the superblock's error record; and only
 * when every finding is one of these (counters computed from damaged trees
 * would be wrong too).  After repairing it checks again, quietly, and says
 * "corrected" (exit 1) only if that check is clean.  Anything else is
 * reported and left alone (exit 4, one line saying what the user can do),
 * and the superblock's error record is marked (RLFS_SB_ERR_FSCK) so that
 * every mount warns; an fsck that finds the filesystem clean clears it.
 *
 * Every finding is one line on stdout naming the AG and block (agbno and
 * fsbno) or the inode and the structure.  The first FSCK_MAX_REPORTS are
 * printed, then only counted.  Lines from the library's own verifiers
 * (rlfs_corrupt) go to stderr and give extra detail.
 *
 * Phases (model: xfs_repair phases 1-7, read-only):
 *   1. superblock (primary via pread, then backups in every AG);
 *   2. per AG: header, AGFL, bnobt/cntbt/inobt structure (rlfs_btree_check),
 *      free extents (order, merge, bnobt == cntbt), counters;
 *   3. inodes: every slot of every inobt chunk: crc/magic/ino, free mask
 *      against mode, format, forks (data extents or bmbt, directory tree,
 *      xattrs, symlink target), nblocks;
 *   4. directory graph from the root: entries, ftype, "..", link counts,
 *      reachability;
 *   5. block ownership: every claim (AG headers, btree blocks, AGFL, free
 *      extents, inode chunks, inode-owned blocks) sorted and swept: blocks
 *      claimed twice, free and used at once, or not claimed at all (leaked);
 *      with the REFLINK feature, data-fork blocks may be mapped many times:
 *      they enter the sweep once (the union of all mappings), and for every
 *      block the number of data-fork mappings must equal the refcount btree's
 *      count (1 without a record).  Metadata blocks must still have exactly
 *      one owner.  CoW staging records are reported as leaked staging
 *      extents (no CoW fork exists on an unmounted image);
 *   6. summary counters; then repair, or marking the error record.
 *
 * Locking: the FUSE daemon holds an exclusive flock on the image until it
 * has flushed after umount.  We take the same lock on our own descriptor,
 * waiting up to FSCK_LOCK_WAIT_SEC seconds (env RLFS_FSCK_LOCK_WAIT
 * overrides, for tests), and keep it for the whole run.
 *
 * All metadata reads (except superblocks and inode clusters, which are
 * read raw so that one bad inode does not hide its neighbours) go through
 * the buffer cache verifiers inside read-only transactions on a bare
 * mount built from the primary superblock.
 */
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

#if defined(__has_include)
#if __has_include("cli.h")
#include "cli.h"
#include "log.h"
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

/* What claims a run of blocks. */
enum claim_kind {
	CL_SB, CL_AGH, CL_AGFLBLK, CL_BNOBT, CL_CNTBT, CL_INOBT, CL_REFCBT, CL_STAGING,
	CL_AGFL, CL_FREE, CL_ICHUNK, CL_LOG, CL_DATA, CL_BMBT, CL_DIRBT, CL_ATTRBT, CL_ATTRV, CL_SYMLINK,
};

struct claim {
	uint64_t start;             /* fsbno */
	uint64_t owner;             /* agno, or ino for inode-owned kinds */
	uint64_t aux;               /* CL_DATA: file block; CL_ICHUNK: startino */
	uint32_t len;               /* blocks */
	uint8_t kind;
};

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
};

/* An in-use inode, as far as the directory pass needs it. */
#define IE_BAD     (1u << 0)    /* failed verification: skip link checks */
#define IE_REACHED (1u << 1)
struct ientry {
	uint64_t ino;
	uint64_t parent;            /* di_parent */
	uint64_t found_parent;      /* directory whose entry names it (dirs) */
	uint32_t mode;
	uint32_t nlink;
	uint32_t nref;              /* directory entries pointing at it */
	uint32_t nsubdirs;          /* entries of this dir naming directories */
	uint32_t flags;
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
	struct rlfs_agh agh;        /* copy of the on-disk header */
	uint64_t freeblks;          /* computed from bnobt */
	uint32_t longest;           /* computed from cntbt */
	uint64_t btreeblks;         /* bnobt + cntbt blocks beyond the roots */
	uint64_t icount, ifree;     /* computed from inobt */
	uint32_t flcount;           /* valid AGFL entries */
	bool fix;                   /* counters differ */
	bool leak_noted;            /* "leak check skipped" said once */
};

/* An inode core repair: link count and/or directory parent (phase 4). */
struct ifix {
	uint64_t ino;
	uint64_t parent;            /* new parent pointer; 0 = leave */
	uint32_t nlink;             /* new link count, if set_nlink */
	bool set_nlink;
};

struct fsck {
	const char *prog;           /* argv[0], for messages */
	const char *image;
	bool dry_run, verbose;
	bool quiet;                 /* the re-check after a repair: count only */
	bool readonly;              /* image could only be opened read-only */
	int lock_fd;
	bool own_lock_fd;           /* close lock_fd at the end (not in a re-check) */
	struct rlfs_dev *dev;
	struct rlfs_mount *mp;
	struct rlfs_sb sb;          /* primary superblock (first 320 bytes) */
	bool sb_fix;                /* superblock counters or state to rewrite */
	bool sb_block_ok;           /* primary superblock block verified (crc,
				     * blkno, owner): safe to rewrite in place */
	struct rlfs_errrec rec;     /* the superblock's error record, as found */

	/* what repair would do, by kind (each also counted in ncounter) */
	uint64_t nfix_counters, nfix_links, nfix_parents;
	bool fix_state;             /* the unclean-unmount flag */
	struct ifix *ifixes;
	size_t nifixes, ifixes_cap;
	uint64_t *orphans;          /* inodes to free: nlink 0, named nowhere */
	size_t norphans, orphans_cap;

	bool incomplete;            /* some inode metadata unreadable: owners unknown */
	bool dirs_incomplete;       /* some directory unreadable: links unknown */
	uint64_t nlink_suppressed;
	uint64_t leaked_blocks, leaked_runs;
	uint64_t nerrors;           /* findings left uncorrected */
	uint64_t ncounter;          /* counter findings (fixable) */
	uint64_t nprinted;
	bool oom;

	struct claim *claims;
	size_t nclaims, claims_cap;
	bool reflink;               /* REFLINK feature: data blocks may be shared */
	struct claim *dclaims;      /* REFLINK: data-fork mappings (may overlap) */
	size_t ndclaims, dclaims_cap;
	struct refc *refcs;         /* REFLINK: refcount btree records, all AGs */
	size_t nrefcs, refcs_cap;
	struct chunk *chunks;
	size_t nchunks, chunks_cap;
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

/* ------------------------------------------------------------------ */
/* Reporting                                                           */

__attribute__((format(printf, 3, 4)))
static void report(struct fsck *f, bool fixable, const char *fmt, ...)
{
	va_list ap;

	if (fixable)
		f->ncounter++;
	else
		f->nerrors++;
	if (f->quiet || f->nprinted >= FSCK_MAX_REPORTS)
		return;
	f->nprinted++;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	if (f->nprinted == FSCK_MAX_REPORTS)
		printf("(further findings are counted, not printed)\n");
}

#define ERR(f, ...) report((f), false, __VA_ARGS__)
#define FIXABLE(f, ...) report((f), true, __VA_ARGS__)
#define FIXCOUNTER(f, ...) ((f)->nfix_counters++, report((f), true, __VA_ARGS__))

__attribute__((format(printf, 2, 3)))
static void verbose(struct fsck *f, const char *fmt, ...)
{
	va_list ap;

	if (!f->verbose || f->quiet)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* "AG a agbno b (fsbno x)" for a block. */
struct locbuf { char s[96]; };
static struct locbuf loc(const struct fsck *f, uint64_t fsbno)
{
	struct locbuf l;
	uint32_t agb = f->mp ? f->mp->agblocks : rlfs_get32(f->sb.agblocks);

	if (agb == 0)
		agb = 1;
	snprintf(l.s, sizeof(l.s), "AG %" PRIu64 " agbno %" PRIu64 " (fsbno %" PRIu64 ")",
		 fsbno / agb, fsbno % agb, fsbno);
	return l;
}

static const char *errstr(int err)
{
	if (err == -EUCLEAN)
		return "corrupt (failed verification)";
	return strerror(err < 0 ? -err : err);
}

/* ------------------------------------------------------------------ */
/* Growable arrays                                                     */

static void *grow(struct fsck *f, void *p, size_t *cap, size_t n, size_t sz)
{
	size_t ncap;
	void *np;

	if (n < *cap)
		return p;
	ncap = *cap ? *cap * 2 : 1024;
	np = realloc(p, ncap * sz);
	if (!np) {
		f->oom = true;
		return NULL;
	}
	*cap = ncap;
	return np;
}

static const char *claim_kind_name(uint8_t kind)
{
	switch (kind) {
	case CL_SB: return "superblock";
	case CL_AGH: return "AG header";
	case CL_AGFLBLK: return "AGFL block";
	case CL_BNOBT: return "bnobt block";
	case CL_CNTBT: return "cntbt block";
	case CL_INOBT: return "inobt block";
	case CL_REFCBT: return "refcountbt block";
	case CL_STAGING: return "CoW staging extent";
	case CL_AGFL: return "AGFL entry";
	case CL_FREE: return "free space";
	case CL_ICHUNK: return "inode chunk";
	case CL_LOG: return "log";
	case CL_DATA: return "data";
	case CL_BMBT: return "bmbt block";
	case CL_DIRBT: return "directory block";
	case CL_ATTRBT: return "xattr block";
	case CL_ATTRV: return "remote xattr value";
	case CL_SYMLINK: return "symlink block";
	}
	return "?";
}

static bool claim_is_inode(uint8_t kind)
{
	return kind >= CL_DATA;
}

static void claim_desc(const struct claim *c, char *buf, size_t len)
{
	if (claim_is_inode(c->kind)) {
		if (c->kind == CL_DATA)
			snprintf(buf, len, "inode %" PRIu64 " data at file block %" PRIu64,
				 c->owner, c->aux);
		else
			snprintf(buf, len, "inode %" PRIu64 " %s", c->owner,
				 claim_kind_name(c->kind));
	} else if (c->kind == CL_ICHUNK) {
		snprintf(buf, len, "AG %" PRIu64 " inode chunk %" PRIu64, c->owner, c->aux);
	} else {
		snprintf(buf, len, "AG %" PRIu64 " %s", c->owner, claim_kind_name(c->kind));
	}
}

/* Record that [start, start+len) is claimed; clips (and reports) runs that
 * leave the filesystem. */
static void add_claim(struct fsck *f, uint8_t kind, uint64_t owner, uint64_t aux,
		      uint64_t start, uint64_t len)
{
	struct claim c = { .start = start, .owner = owner, .aux = aux, .kind = kind };
	uint64_t dblocks = f->mp->dblocks;
	char d[128];

	if (len == 0)
		return;
	if (start >= dblocks || len > dblocks - start) {
		c.len = (uint32_t)RLFS_MIN(len, UINT32_MAX);
		claim_desc(&c, d, sizeof(d));
		ERR(f, "%s: fsbno %" PRIu64 " + %" PRIu64 " blocks lies beyond the end of the "
		    "filesystem (%" PRIu64 " blocks)", d, start, len, dblocks);
		if (start >= dblocks)
			return;
		len = dblocks - start;
	}
	/* with REFLINK, data-fork mappings are collected apart: they may
	 * overlap each other (check_refcounts judges them) */
	bool data = kind == CL_DATA && f->reflink;
	struct claim **arr = data ? &f->dclaims : &f->claims;
	size_t *n_arr = data ? &f->ndclaims : &f->nclaims;
	size_t *cap = data ? &f->dclaims_cap : &f->claims_cap;

	while (len) {
		uint32_t n = (uint32_t)RLFS_MIN(len, (uint64_t)UINT32_MAX);
		struct claim *nc = grow(f, *arr, cap, *n_arr, sizeof(*nc));

		if (!nc)
			return;
		*arr = nc;
		c.len = n;
		(*arr)[(*n_arr)++] = c;
		c.start += n;
		len -= n;
	}
}

static struct ientry *find_inode(struct fsck *f, uint64_t ino)
{
	size_t lo = 0, hi = f->ninodes;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->inodes[mid].ino == ino)
			return &f->inodes[mid];
		if (f->inodes[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The chunk containing ino, or NULL. */
static struct chunk *find_chunk(struct fsck *f, uint64_t ino)
{
	size_t lo = 0, hi = f->nchunks;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct chunk *c = &f->chunks[mid];

		if (ino >= c->startino && ino - c->startino < RLFS_INODES_PER_CHUNK)
			return c;
		if (c->startino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* qsort that accepts an empty (NULL) array */
static void xsort(void *base, size_t n, size_t sz, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(base, n, sz, cmp);
}

static int cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

static int cmp_ientry(const void *a, const void *b)
{
	return cmp_u64(((const struct ientry *)a)->ino, ((const struct ientry *)b)->ino);
}

static int cmp_chunk(const void *a, const void *b)
{
	return cmp_u64(((const struct chunk *)a)->startino, ((const struct chunk *)b)->startino);
}

static int cmp_claim(const void *a, const void *b)
{
	const struct claim *x = a, *y = b;
	int c = cmp_u64(x->start, y->start);

	if (c)
		return c;
	return -cmp_u64(x->len, y->len); /* longer first */
}

static int cmp_edge_dir(const void *a, const void *b)
{
	const struct edge *x = a, *y = b;
	int c = cmp_u64(x->dir, y->dir);

	return c ? c : cmp_u64(x->name_off, y->name_off);
}

/* ------------------------------------------------------------------ */
/* Opening and locking                                                 */

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Open the image and take the exclusive lock, waiting for a daemon that is
 * still flushing.  Returns 0 or an exit code. */
static int open_and_lock(struct fsck *f)
{
	double start = now_sec(), limit = FSCK_LOCK_WAIT_SEC;
	const char *env = getenv("RLFS_FSCK_LOCK_WAIT");
	bool said = false;

	if (env && *env)
		limit = atof(env);
	f->lock_fd = open(f->image, (f->dry_run ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (f->lock_fd < 0 && !f->dry_run && (errno == EACCES || errno == EROFS)) {
		/* read-only image: check anyway, repairs will be refused */
		f->lock_fd = open(f->image, O_RDONLY | O_CLOEXEC);
		f->readonly = f->lock_fd >= 0;
	}
	if (f->lock_fd < 0) {
		fprintf(stderr, "%s: cannot open %s: %s\n", f->prog, f->image, strerror(errno));
		return FSCK_EXIT_OPERR;
	}
	for (;;) {
		if (flock(f->lock_fd, LOCK_EX | LOCK_NB) == 0)
			break;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			fprintf(stderr, "%s: cannot lock %s: %s\n", f->prog, f->image,
				strerror(errno));
			return FSCK_EXIT_OPERR;
		}
		if (now_sec() - start >= limit) {
			fprintf(stderr, "%s: %s is in use (mounted?)\n", f->prog, f->image);
			return FSCK_EXIT_OPERR;
		}
		if (!said) {
			fprintf(stderr, "%s: waiting for %s to be released\n", f->prog, f->image);
			said = true;
		}
		usleep(100 * 1000);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Phase 1: superblocks                                                */

static bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static uint32_t ilog2_u32(uint32_t x)
{
	uint32_t l = 0;

	while (x > 1) {
		x >>= 1;
		l++;
	}
	return l;
}

/*
 * The write-ahead log (LOG feature), before anything else is read: a log
 * that needs replay stops -n (exit 4, "log needs replay", nothing
 * changed); repair replays it first (as xfs_repair asks for a mount, we
 * replay ourselves: recover.c) and writes a clean record.  Returns 0 (log
 * clean), -1 (replayed: read the superblock again), or an exit code.
 */
static int check_log(struct fsck *f, uint32_t bs, uint64_t dblocks, uint32_t agblocks,
		     uint32_t isz)
{
	const struct rlfs_sb *sb = &f->sb;
	uint64_t ls = rlfs_get64(sb->log_start);
	uint32_t lb = rlfs_get32(sb->log_blocks);
	if (ls == 0 || lb < RLFS_LOG_MIN_REC_BLOCKS || ls >= dblocks || lb > dblocks - ls ||
	    ls / agblocks != (ls + lb - 1) / agblocks || ls % agblocks <= RLFS_AGFL_AGBNO) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): log of %u blocks at fsbno %" PRIu64
		    " does not fit the filesystem", lb, ls);
		return FSCK_EXIT_UNCORRECTED;
	}
	struct rlfs_mount *mp;
	int err = rlfs_mount_alloc_bare(f->dev, bs, dblocks, agblocks, &mp);
	if (err) {
		fprintf(stderr, "%s: cannot set up: %s\n", f->prog, strerror(-err));
		return FSCK_EXIT_OPERR;
	}
	mp->blocklog = ilog2_u32(bs);
	mp->inodesize = isz;
	mp->inopblock = bs / isz;
	memcpy(mp->uuid, sb->hdr.uuid, RLFS_UUID_SIZE);
	struct rlfs_log_scan scan;
	struct rlfs_log_stats stats;
	memset(&stats, 0, sizeof(stats));
	bool replay = !f->dry_run && !f->readonly;
	err = rlfs_log_recover(mp, ls, lb, false, &scan, NULL);
	if (!err && scan.needs_replay && replay) {
		/* replays, flushes, writes the clean record */
		err = rlfs_log_mount(mp, ls, lb, false);
		if (!err)
			stats = mp->log->stats;
		rlfs_log_free(mp);
	}
	rlfs_mount_free_bare(mp);
	if (err) {
		ERR(f, "log (%u blocks at fsbno %" PRIu64 "): %s; the log cannot be replayed",
		    lb, ls, strerror(-err));
		return FSCK_EXIT_UNCORRECTED;
	}
	if (!scan.needs_replay)
		return 0;
	if (!replay) {
		printf("%s: log needs replay (%" PRIu64 " checkpoint(s), %" PRIu64 " item(s)); "
		       "nothing was checked or changed: mount the image or run `%s %s` "
		       "(without -n) to replay it\n", f->image, scan.ckpts, scan.items,
		       f->prog, f->image);
		f->nerrors++;
		return FSCK_EXIT_UNCORRECTED;
	}
	printf("%s: log replayed: %" PRIu64 " checkpoint(s), %" PRIu64 " block(s) written, %"
	       PRIu64 " skipped\n", f->image, stats.replayed_ckpts, stats.replayed_blocks,
	       stats.skipped_blocks);
	return -1;
}

/*
 * Read and check the primary superblock, then build the bare mount.
 * Returns 0 to go on, or an exit code (8: not ours / cannot read; 4: too
 * broken to go on, finding printed).
 */
static int check_primary_sb(struct fsck *f)
{
	struct rlfs_sb *sb = &f->sb;
	struct stat st;
	uint8_t *blk = NULL;
	uint32_t bs, agblocks, agcount, isz;
	uint64_t dblocks, size_bytes, incompat;
	int err, rc;

	if (fstat(f->lock_fd, &st) < 0) {
		fprintf(stderr, "%s: %s: %s\n", f->prog, f->image, strerror(errno));
		return FSCK_EXIT_OPERR;
	}
	err = rlfs_dev_open(f->image, !f->dry_run && !f->readonly, 0, &f->dev);
	if (err) {
		fprintf(stderr, "%s: cannot open %s: %s\n", f->prog, f->image, strerror(-err));
		return FSCK_EXIT_OPERR;
	}
	size_bytes = f->dev->size_bytes;
	if (size_bytes < sizeof(*sb) ||
	    rlfs_dev_pread(f->dev, sb, sizeof(*sb), 0) != 0) {
		fprintf(stderr, "%s: %s: not a reflinkfs image (too small)\n", f->prog, f->image);
		return FSCK_EXIT_OPERR;
	}
	if (rlfs_get32(sb->hdr.magic) != RLFS_SB_MAGIC) {
		fprintf(stderr, "%s: %s: not a reflinkfs image (bad superblock magic "
			"0x%08x)\n", f->prog, f->image, rlfs_get32(sb->hdr.magic));
		return FSCK_EXIT_OPERR;
	}
	if (rlfs_get32(sb->version) != RLFS_VERSION) {
		fprintf(stderr, "%s: %s: unsupported format version %u\n", f->prog, f->image,
			rlfs_get32(sb->version));
		return FSCK_EXIT_OPERR;
	}
	incompat = rlfs_get64(sb->features_incompat);
	if (incompat & ~RLFS_FEAT_INCOMPAT_KNOWN) {
		fprintf(stderr, "%s: %s: unknown incompatible features 0x%" PRIx64 "\n", f->prog,
			f->image, (uint64_t)(incompat & ~RLFS_FEAT_INCOMPAT_KNOWN));
		return FSCK_EXIT_OPERR;
	}
	if (rlfs_get64(sb->features_ro_compat) & ~RLFS_FEAT_RO_COMPAT_KNOWN)
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): unknown ro-compat features 0x%" PRIx64,
		    (uint64_t)(rlfs_get64(sb->features_ro_compat) & ~RLFS_FEAT_RO_COMPAT_KNOWN));

	bs = rlfs_get32(sb->blocksize);
	dblocks = rlfs_get64(sb->dblocks);
	agblocks = rlfs_get32(sb->agblocks);
	agcount = rlfs_get32(sb->agcount);
	isz = rlfs_get16(sb->inodesize);
	if (!is_pow2(bs) || bs < RLFS_MIN_BLOCKSIZE || bs > RLFS_MAX_BLOCKSIZE) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): bad block size %u", bs);
		return FSCK_EXIT_UNCORRECTED;
	}
	if (agblocks < 16 || agblocks > RLFS_MAX_AGBLOCKS || agcount == 0 || dblocks == 0 ||
	    (uint64_t)(agcount - 1) * agblocks >= dblocks ||
	    (uint64_t)agcount * agblocks < dblocks) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): inconsistent geometry: dblocks %" PRIu64
		    " agblocks %u agcount %u", dblocks, agblocks, agcount);
		return FSCK_EXIT_UNCORRECTED;
	}
	if (!is_pow2(isz) || isz < RLFS_DINODE_CORE || isz > bs ||
	    rlfs_get16(sb->inopblock) != bs / isz ||
	    bs / isz > RLFS_INODES_PER_CHUNK) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): bad inode size %u / inodes per block %u",
		    isz, rlfs_get16(sb->inopblock));
		return FSCK_EXIT_UNCORRECTED;
	}

	if (incompat & RLFS_FEAT_INCOMPAT_LOG) {
		rc = check_log(f, bs, dblocks, agblocks, isz);
		if (rc < 0) {
			/* replayed: the superblock itself may have changed */
			rlfs_dev_close(f->dev);
			f->dev = NULL;
			return check_primary_sb(f);
		}
		if (rc)
			return rc;
	}

	blk = aligned_alloc(64, bs);
	if (!blk) {
		f->oom = true;
		return FSCK_EXIT_OPERR;
	}
	if (size_bytes < bs || rlfs_dev_pread(f->dev, blk, bs, 0) != 0) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): cannot read the whole block");
		free(blk);
		return FSCK_EXIT_UNCORRECTED;
	}
	f->sb_block_ok = true;
	if (!rlfs_cksum_verify(blk, bs, RLFS_CRC_OFF)) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): bad crc");
		f->sb_block_ok = false;
	}
	free(blk);
	if (rlfs_get64(sb->hdr.blkno) != 0) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): blkno %" PRIu64 ", expected 0",
		    rlfs_get64(sb->hdr.blkno));
		f->sb_block_ok = false;
	}
	if (rlfs_get64(sb->hdr.owner) != 0) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): owner %" PRIu64 ", expected AG 0",
		    rlfs_get64(sb->hdr.owner));
		f->sb_block_ok = false;
	}
	rlfs_errrec_load(&f->rec, sb);
	if (f->rec.flags && !f->quiet) {
		char desc[320];

		/* what earlier runs recorded: not a finding of this run */
		printf("%s: the superblock records errors: %s\n", f->image,
		       rlfs_errrec_describe(&f->rec, desc, sizeof(desc)));
	}
	if (dblocks > size_bytes / bs) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): filesystem has %" PRIu64
		    " blocks but the image holds only %" PRIu64 " (truncated image)",
		    dblocks, size_bytes / bs);
		/* most of it missing (or a wild dblocks): nothing useful to walk */
		if (dblocks / 2 > size_bytes / bs)
			return FSCK_EXIT_UNCORRECTED;
	}
	if (rlfs_get32(sb->state) != RLFS_STATE_CLEAN) {
		if (rlfs_get32(sb->state) == RLFS_STATE_DIRTY)
			FIXABLE(f, "AG 0 agbno 0 (fsbno 0) (superblock): filesystem was not cleanly "
				"unmounted (state dirty)");
		else
			FIXABLE(f, "AG 0 agbno 0 (fsbno 0) (superblock): bad state %u",
				rlfs_get32(sb->state));
		f->sb_fix = true;
		f->fix_state = true;
	}

	err = rlfs_mount_alloc_bare(f->dev, bs, dblocks, agblocks, &f->mp);
	if (err) {
		fprintf(stderr, "%s: cannot set up: %s\n", f->prog, strerror(-err));
		return FSCK_EXIT_OPERR;
	}
	f->mp->blocklog = ilog2_u32(bs);
	f->mp->agcount = agcount;
	f->mp->agblocks = agblocks;
	f->mp->dblocks = dblocks;
	f->mp->inodesize = isz;
	f->mp->inopblock = bs / isz;
	f->mp->chunk_blocks = RLFS_MAX(1u, RLFS_INODES_PER_CHUNK / f->mp->inopblock);
	f->mp->rootino = rlfs_get64(sb->rootino);
	f->mp->features_incompat = incompat;
	f->reflink = incompat & RLFS_FEAT_INCOMPAT_REFLINK;
	f->mp->maxbytes = rlfs_get64(sb->maxbytes);
	memcpy(f->mp->uuid, sb->hdr.uuid, RLFS_UUID_SIZE);
	f->mp->flags = RLFS_MOUNT_RDONLY | RLFS_MOUNT_NOLOCK;

	if (rlfs_ag_blocks(f->mp, agcount - 1) < 8)
		ERR(f, "AG %u (superblock geometry): last AG has only %u blocks", agcount - 1,
		    rlfs_ag_blocks(f->mp, agcount - 1));
	if (f->mp->rootino == 0 || rlfs_ino_to_fsb(f->mp, f->mp->rootino) >= dblocks)
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): root inode %" PRIu64 " out of range",
		    f->mp->rootino);
	if (f->mp->maxbytes == 0)
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): maxbytes is 0");
	f->ags = calloc(agcount, sizeof(*f->ags));
	if (!f->ags) {
		f->oom = true;
		return FSCK_EXIT_OPERR;
	}
	return 0;
}

/* Backup superblocks: magic, crc, self-description and geometry equal to
 * the primary's.  Raw reads. */
static void check_backup_sbs(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	const struct rlfs_sb *p = &f->sb;

	if (!blk) {
		f->oom = true;
		return;
	}
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		uint64_t fsbno = rlfs_agb_to_fsb(mp, agno, RLFS_SB_AGBNO);
		const struct rlfs_sb *b = (const void *)blk;

		add_claim(f, CL_SB, agno, 0, fsbno, 1);
		if (agno == 0 && (mp->features_incompat & RLFS_FEAT_INCOMPAT_LOG)) {
			uint64_t ls = rlfs_get64(p->log_start);
			add_claim(f, CL_LOG, rlfs_fsb_to_agno(mp, ls), 0, ls,
				  rlfs_get32(p->log_blocks));
		}
		if (agno == 0)
			continue;
		if (rlfs_dev_pread(f->dev, blk, mp->blocksize, fsbno << mp->blocklog) != 0) {
			ERR(f, "%s (backup superblock): cannot read", loc(f, fsbno).s);
			continue;
		}
		if (rlfs_get32(b->hdr.magic) != RLFS_SB_MAGIC) {
			ERR(f, "%s (backup superblock): bad magic 0x%08x", loc(f, fsbno).s,
			    rlfs_get32(b->hdr.magic));
			continue;
		}
		if (!rlfs_cksum_verify(blk, mp->blocksize, RLFS_CRC_OFF))
			ERR(f, "%s (backup superblock): bad crc", loc(f, fsbno).s);
		if (rlfs_get64(b->hdr.blkno) != fsbno)
			ERR(f, "%s (backup superblock): blkno %" PRIu64 " is not its own",
			    loc(f, fsbno).s, rlfs_get64(b->hdr.blkno));
		if (rlfs_get64(b->hdr.owner) != agno)
			ERR(f, "%s (backup superblock): owner %" PRIu64 ", expected AG %u",
			    loc(f, fsbno).s, rlfs_get64(b->hdr.owner), agno);
		if (memcmp(b->hdr.uuid, p->hdr.uuid, RLFS_UUID_SIZE) != 0)
			ERR(f, "%s (backup superblock): uuid differs from the primary",
			    loc(f, fsbno).s);
		if (rlfs_get32(b->version) != rlfs_get32(p->version) ||
		    rlfs_get32(b->blocksize) != rlfs_get32(p->blocksize) ||
		    rlfs_get64(b->dblocks) != rlfs_get64(p->dblocks) ||
		    rlfs_get32(b->agblocks) != rlfs_get32(p->agblocks) ||
		    rlfs_get32(b->agcount) != rlfs_get32(p->agcount) ||
		    rlfs_get16(b->inodesize) != rlfs_get16(p->inodesize) ||
		    rlfs_get16(b->inopblock) != rlfs_get16(p->inopblock) ||
		    rlfs_get64(b->rootino) != rlfs_get64(p->rootino) ||
		    rlfs_get64(b->features_compat) != rlfs_get64(p->features_compat) ||
		    rlfs_get64(b->features_ro_compat) != rlfs_get64(p->features_ro_compat) ||
		    rlfs_get64(b->features_incompat) != rlfs_get64(p->features_incompat) ||
		    rlfs_get64(b->maxbytes) != rlfs_get64(p->maxbytes))
			ERR(f, "%s (backup superblock): geometry differs from the primary",
			    loc(f, fsbno).s);
	}
	free(blk);
}

/* ------------------------------------------------------------------ */
/* Phase 2: allocation groups                                          */

/* Context of one AG tree walk. */
struct agwalk {
	struct fsck *f;
	uint32_t agno;
	uint32_t length;            /* blocks in the AG */
	uint8_t kind;               /* CL_BNOBT ... */
	uint64_t nblocks;           /* tree blocks visited */
	uint64_t nrecs;
	uint64_t limit;             /* stop runaway walks */
	struct rlfs_alloc_rec *recs;/* valid records seen */
	size_t nstored, nrecs_cap;
	bool have_prev;
	uint32_t prev_start, prev_len;
	uint64_t last_chunk_fsbno;  /* inobt: chunk block dedupe */
	struct ag_info *ai;
};

static int ag_visit_block(struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned level,
			  void *priv)
{
	struct agwalk *w = priv;

	(void)cur;
	(void)level;
	if (++w->nblocks > w->limit) {
		ERR(w->f, "AG %u (%s): more tree blocks than the AG holds; stopped walking",
		    w->agno, claim_kind_name(w->kind));
		return 1;
	}
	if (rlfs_fsb_to_agno(w->f->mp, bp->fsbno) != w->agno)
		ERR(w->f, "%s (%s): block belongs to another AG than its tree (AG %u)",
		    loc(w->f, bp->fsbno).s, claim_kind_name(w->kind), w->agno);
	add_claim(w->f, w->kind, w->agno, 0, bp->fsbno, 1);
	return 0;
}

static int alloc_rec_cb(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct agwalk *w = priv;
	const struct rlfs_alloc_rec *r = rec;
	uint32_t start = rlfs_get32(r->startblock), len = rlfs_get32(r->blockcount);
	const char *name = w->kind == CL_BNOBT ? "bnobt" : "cntbt";
	struct fsck *f = w->f;
	uint64_t fsbno = rlfs_agb_to_fsb(f->mp, w->agno, start);
	struct rlfs_alloc_rec *nr;

	(void)cur;
	if (++w->nrecs > w->limit) {
		ERR(f, "AG %u (%s): more records than the AG has blocks; stopped walking",
		    w->agno, name);
		return 1;
	}
	if (len == 0 || start < 3 || start >= w->length || len > w->length - start) {
		ERR(f, "%s (%s): free extent [%u, +%u) outside the AG's free area (AG has %u "
		    "blocks)", loc(f, fsbno).s, name, start, len, w->length);
		return 0;
	}
	if (w->kind == CL_BNOBT) {
		if (w->have_prev) {
			uint64_t pend = (uint64_t)w->prev_start + w->prev_len;

			if (start < pend)
				ERR(f, "%s (bnobt): free extent [%u, +%u) overlaps the previous one "
				    "[%u, +%u)", loc(f, fsbno).s, start, len, w->prev_start,
				    w->prev_len);
			else if (start == pend)
				ERR(f, "%s (bnobt): free extent [%u, +%u) touches the previous one "
				    "[%u, +%u) (not merged)", loc(f, fsbno).s, start, len,
				    w->prev_start, w->prev_len);
		}
		w->have_prev = true;
		w->prev_start = start;
		w->prev_len = len;
		w->ai->freeblks += len;
		add_claim(f, CL_FREE, w->agno, 0, fsbno, len);
	} else {
		if (len > w->ai->longest)
			w->ai->longest = len;
	}
	nr = grow(f, w->recs, &w->nrecs_cap, w->nstored, sizeof(*nr));
	if (!nr)
		return -ENOMEM;
	w->recs = nr;
	w->recs[w->nstored].startblock = rlfs_le32_of(start);
	w->recs[w->nstored].blockcount = rlfs_le32_of(len);
	w->nstored++;
	return 0;
}

static int inobt_rec_cb(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct agwalk *w = priv;
	struct fsck *f = w->f;
	struct rlfs_mount *mp = f->mp;
	const struct rlfs_inobt_rec *r = rec;
	uint64_t startino = rlfs_get64(r->startino), freemask = rlfs_get64(r->free);
	uint32_t freecount = rlfs_get32(r->freecount);
	uint64_t fsbno = rlfs_ino_to_fsb(mp, startino);
	uint64_t lastfsb = rlfs_ino_to_fsb(mp, startino + RLFS_INODES_PER_CHUNK - 1);
	struct chunk *nc;

	(void)cur;
	if (++w->nrecs > w->limit) {
		ERR(f, "AG %u (inobt): more records than the AG can hold; stopped walking", w->agno);
		return 1;
	}
	if (startino % RLFS_INODES_PER_CHUNK != 0 || fsbno % mp->chunk_blocks != 0) {
		ERR(f, "AG %u (inobt): chunk startino %" PRIu64 " is not chunk aligned", w->agno,
		    startino);
		return 0;
	}
	if (lastfsb >= mp->dblocks || rlfs_fsb_to_agno(mp, fsbno) != w->agno ||
	    rlfs_fsb_to_agno(mp, lastfsb) != w->agno ||
	    rlfs_fsb_to_agbno(mp, fsbno) < 3 || rlfs_fsb_to_agbno(mp, lastfsb) >= w->length) {
		ERR(f, "AG %u (inobt): chunk startino %" PRIu64 " (fsbno %" PRIu64
		    ") lies outside the AG", w->agno, startino, fsbno);
		return 0;
	}
	if ((uint32_t)__builtin_popcountll(freemask) != freecount)
		ERR(f, "%s (inobt): chunk %" PRIu64 ": freecount %u but %d inodes marked free",
		    loc(f, fsbno).s, startino, freecount, __builtin_popcountll(freemask));
	w->ai->icount += RLFS_INODES_PER_CHUNK;
	w->ai->ifree += (uint64_t)__builtin_popcountll(freemask);
	if (fsbno == w->last_chunk_fsbno) /* chunks sharing a block (inopblock > 64) */
		fsbno++;
	if (lastfsb >= fsbno)
		add_claim(f, CL_ICHUNK, w->agno, startino, fsbno, lastfsb - fsbno + 1);
	w->last_chunk_fsbno = lastfsb;
	nc = grow(f, f->chunks, &f->chunks_cap, f->nchunks, sizeof(*nc));
	if (!nc)
		return -ENOMEM;
	f->chunks = nc;
	f->chunks[f->nchunks].startino = startino;
	f->chunks[f->nchunks].free = freemask;
	f->nchunks++;
	return 0;
}

/* One refcount btree record: sane, in order, no overlap; kept for the
 * per-block count check; staging extents claimed and reported. */
static int refc_rec_cb(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct agwalk *w = priv;
	struct fsck *f = w->f;
	struct rlfs_refcount_rec r;
	struct refc *nr;

	(void)cur;
	memcpy(&r, rec, sizeof(r));
	uint32_t key = rlfs_get32(r.startblock), len = rlfs_get32(r.blockcount);
	uint32_t rc = rlfs_get32(r.refcount);
	bool cow = key & RLFS_REFC_COWFLAG;
	uint32_t start = key & ~RLFS_REFC_COWFLAG;
	uint64_t fsbno = rlfs_agb_to_fsb(f->mp, w->agno, RLFS_MIN(start, w->length - 1));

	if (++w->nrecs > w->limit) {
		ERR(f, "AG %u (refcountbt): more records than the AG has blocks; stopped walking",
		    w->agno);
		return 1;
	}
	if (len == 0 || start < 3 || start >= w->length || len > w->length - start) {
		ERR(f, "%s (refcountbt): record [%u, +%u) outside the AG's data area (AG has %u "
		    "blocks)", loc(f, fsbno).s, start, len, w->length);
		return 0;
	}
	if (!cow && rc < 2)
		ERR(f, "%s (refcountbt): shared record [%u, +%u) with refcount %u < 2 (outside "
		    "the staging domain)", loc(f, fsbno).s, start, len, rc);
	if (cow && rc != 1)
		ERR(f, "%s (refcountbt): CoW staging record [%u, +%u) with refcount %u (must be "
		    "1)", loc(f, fsbno).s, start, len, rc);
	if (w->have_prev && (uint64_t)key < (uint64_t)w->prev_start + w->prev_len)
		ERR(f, "%s (refcountbt): record [%u, +%u) overlaps or is out of order with the "
		    "previous one [%u, +%u)", loc(f, fsbno).s, start, len,
		    w->prev_start & ~RLFS_REFC_COWFLAG, w->prev_len);
	w->have_prev = true;
	w->prev_start = key;
	w->prev_len = len;
	if (cow) {
		ERR(f, "%s (refcountbt): leaked CoW staging extent [%u, +%u) (no CoW fork owns "
		    "it on an unmounted filesystem)", loc(f, fsbno).s, start, len);
		add_claim(f, CL_STAGING, w->agno, 0, fsbno, len);
	}
	nr = grow(f, f->refcs, &f->refcs_cap, f->nrefcs, sizeof(*nr));
	if (!nr)
		return -ENOMEM;
	f->refcs = nr;
	f->refcs[f->nrefcs++] = (struct refc){ .start = fsbno, .len = len, .rc = rc, .cow = cow };
	return 0;
}

/*
 * The refcount btree is walked with a lenient copy of its ops: block
 * header and structure checks only, no record verifier, so that one bad
 * record gets its own finding (refc_rec_cb judges every record: the same
 * rules as the library's verifier, plus order across leaves) instead of
 * hiding its whole leaf.  The library's strict verifier then re-checks a
 * tree the walk found clean.
 */
static int fsck_refcbt_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	return rlfs_btree_verify_block(mp, bp, sizeof(struct rlfs_refcount_rec), 4, false);
}

static const struct rlfs_buf_ops fsck_refcbt_buf_ops = {
	.name = "refcountbt", .magic = RLFS_REFCBT_MAGIC, .has_hdr = true,
	.verify = fsck_refcbt_verify,
};

static const struct rlfs_btree_ops *fsck_refcbt_ops(void)
{
	static struct rlfs_btree_ops ops;

	if (!ops.name) {
		ops = rlfs_refcountbt_ops;
		ops.buf_ops = &fsck_refcbt_buf_ops;
		ops.verify_rec = NULL;
	}
	return &ops;
}

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

static int visit_with_recs(struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned level,
			   void *priv)
{
	struct visit_ctx *v = priv;
	const struct rlfs_btree_block *bb = bp->data;
	unsigned n, max;
	int r = v->blk(cur, bp, level, v->blk_priv);

	if (r || level != 0 || !v->rec)
		return r;
	n = rlfs_get16(bb->numrecs);
	max = (v->blocksize - (unsigned)sizeof(*bb)) / v->rec_len;
	for (unsigned i = 0; i < n && i < max; i++) {
		r = v->rec(cur, (const uint8_t *)bp->data + sizeof(*bb) + (size_t)i * v->rec_len,
			   v->rec_priv);
		if (r)
			return r;
	}
	return 0;
}

/* rlfs_btree_check (problems reported, walk goes on), then the block and
 * record walk.  Returns 0 if every block and record was visited, else the
 * walk's error (reported here) or its positive stop value. */
static int check_and_walk(struct fsck *f, struct rlfs_trans *tp, const struct rlfs_btree_ops *ops,
			  uint32_t agno, struct rlfs_inode *ip, void *agbp, struct visit_ctx *v,
			  const char *where)
{
	struct rlfs_btree_cur cur;
	int err;

	v->rec_len = ops->rec_len;
	v->blocksize = f->mp->blocksize;
	rlfs_btree_cur_init(&cur, tp, ops, agno, ip, agbp);
	err = rlfs_btree_check(&cur);
	rlfs_btree_cur_del(&cur);
	if (err)
		ERR(f, "%s (%s): tree check failed: %s", where, ops->name, errstr(err));
	rlfs_btree_cur_init(&cur, tp, ops, agno, ip, agbp);
	err = rlfs_btree_visit_blocks(&cur, visit_with_recs, v);
	rlfs_btree_cur_del(&cur);
	if (err == -ENOMEM)
		f->oom = true;
	else if (err < 0)
		ERR(f, "%s (%s): cannot walk the whole tree: %s", where, ops->name, errstr(err));
	return err;
}

/* Structure check, block walk and record walk of one AG tree.  Returns true
 * if all three succeeded. */
static bool walk_ag_tree(struct fsck *f, struct rlfs_trans *tp, const struct rlfs_btree_ops *ops,
			 struct agwalk *w, rlfs_btree_rec_fn fn, uint32_t root_agbno,
			 struct rlfs_buf *agbp)
{
	struct visit_ctx v = { .blk = ag_visit_block, .blk_priv = w, .rec = fn, .rec_priv = w };
	char where[128];

	snprintf(where, sizeof(where), "%s root",
		 loc(f, rlfs_agb_to_fsb(f->mp, w->agno, root_agbno)).s);
	return check_and_walk(f, tp, ops, w->agno, NULL, agbp, &v, where) == 0;
}

static int cmp_alloc_rec_bno(const void *a, const void *b)
{
	const struct rlfs_alloc_rec *x = a, *y = b;

	return cmp_u64(rlfs_get32(x->startblock), rlfs_get32(y->startblock));
}

/* bnobt and cntbt must hold the same extents. */
static void compare_free_trees(struct fsck *f, uint32_t agno, struct agwalk *bno,
			       struct agwalk *cnt)
{
	size_t i = 0, j = 0;

	xsort(cnt->recs, cnt->nstored, sizeof(*cnt->recs), cmp_alloc_rec_bno);
	while (i < bno->nstored || j < cnt->nstored) {
		uint32_t bs = i < bno->nstored ? rlfs_get32(bno->recs[i].startblock) : UINT32_MAX;
		uint32_t cs = j < cnt->nstored ? rlfs_get32(cnt->recs[j].startblock) : UINT32_MAX;

		if (bs == cs) {
			uint32_t bl = rlfs_get32(bno->recs[i].blockcount);
			uint32_t cl = rlfs_get32(cnt->recs[j].blockcount);

			if (bl != cl)
				ERR(f, "%s (cntbt): free extent at agbno %u has %u blocks in cntbt "
				    "but %u in bnobt", loc(f, rlfs_agb_to_fsb(f->mp, agno, bs)).s,
				    bs, cl, bl);
			i++;
			j++;
		} else if (bs < cs) {
			ERR(f, "%s (cntbt): free extent [%u, +%u) is in bnobt but not in cntbt",
			    loc(f, rlfs_agb_to_fsb(f->mp, agno, bs)).s, bs,
			    rlfs_get32(bno->recs[i].blockcount));
			i++;
		} else {
			ERR(f, "%s (bnobt): free extent [%u, +%u) is in cntbt but not in bnobt",
			    loc(f, rlfs_agb_to_fsb(f->mp, agno, cs)).s, cs,
			    rlfs_get32(cnt->recs[j].blockcount));
			j++;
		}
	}
}

static int cmp_u32p(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void check_agfl(struct fsck *f, struct rlfs_trans *tp, uint32_t agno,
		       struct ag_info *ai)
{
	struct rlfs_mount *mp = f->mp;
	uint64_t fsbno = rlfs_agb_to_fsb(mp, agno, RLFS_AGFL_AGBNO);
	uint32_t size = (mp->blocksize - sizeof(struct rlfs_agfl)) / 4;
	uint32_t first = rlfs_get32(ai->agh.flfirst), last = rlfs_get32(ai->agh.fllast);
	uint32_t count = rlfs_get32(ai->agh.flcount), length = rlfs_ag_blocks(mp, agno);
	struct rlfs_buf *bp;
	uint32_t *seen;
	uint32_t nseen = 0;
	int err;

	err = rlfs_trans_read_buf(tp, fsbno, &rlfs_agfl_buf_ops, agno, &bp);
	if (err) {
		ERR(f, "%s (AGFL): %s", loc(f, fsbno).s, errstr(err));
		return;
	}
	if (rlfs_get32(((struct rlfs_agfl *)bp->data)->agno) != agno)
		ERR(f, "%s (AGFL): agno field %u, expected %u", loc(f, fsbno).s,
		    rlfs_get32(((struct rlfs_agfl *)bp->data)->agno), agno);
	if (count > size || first >= size || last >= size ||
	    (count && (last + size - first) % size + 1 != count) ||
	    (!count && (last + 1) % size != first)) {
		ERR(f, "%s (AG header): AGFL ring first %u last %u count %u inconsistent (%u "
		    "slots)", loc(f, rlfs_agb_to_fsb(mp, agno, RLFS_AGH_AGBNO)).s, first, last,
		    count, size);
		rlfs_trans_brelse(tp, bp);
		return;
	}
	seen = calloc(count ? count : 1, sizeof(*seen));
	if (!seen) {
		f->oom = true;
		rlfs_trans_brelse(tp, bp);
		return;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint32_t slot = (first + i) % size;
		const rlfs_le32 *arr = (const rlfs_le32 *)((const uint8_t *)bp->data +
							   sizeof(struct rlfs_agfl));
		uint32_t agbno = rlfs_get32(arr[slot]);

		if (agbno < 3 || agbno >= length) {
			ERR(f, "%s (AGFL): slot %u holds agbno %u outside the AG", loc(f, fsbno).s,
			    slot, agbno);
			continue;
		}
		seen[nseen++] = agbno;
	}
	xsort(seen, nseen, sizeof(*seen), cmp_u32p);
	for (uint32_t i = 0; i < nseen; i++) {
		if (i && seen[i] == seen[i - 1]) {
			ERR(f, "%s (AGFL): agbno %u listed twice", loc(f, fsbno).s, seen[i]);
			continue;
		}
		add_claim(f, CL_AGFL, agno, 0, rlfs_agb_to_fsb(mp, agno, seen[i]), 1);
	}
	ai->flcount = count;
	free(seen);
	rlfs_trans_brelse(tp, bp);
}

/* Read AG agno's header block raw and check everything but the summary
 * counters; copies it to ai->agh.  false (finding printed) if unusable. */
static bool read_agh_raw(struct fsck *f, uint32_t agno, uint64_t hfsb, struct ag_info *ai)
{
	struct rlfs_mount *mp = f->mp;
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	const struct rlfs_agh *agh = (const void *)blk;
	bool ok = false;

	if (!blk) {
		f->oom = true;
		return false;
	}
	if (rlfs_dev_pread(f->dev, blk, mp->blocksize, hfsb << mp->blocklog) != 0)
		ERR(f, "%s (AG header): cannot read", loc(f, hfsb).s);
	else if (rlfs_get32(agh->hdr.magic) != RLFS_AGH_MAGIC)
		ERR(f, "%s (AG header): bad magic 0x%08x", loc(f, hfsb).s,
		    rlfs_get32(agh->hdr.magic));
	else if (!rlfs_cksum_verify(blk, mp->blocksize, RLFS_CRC_OFF))
		ERR(f, "%s (AG header): bad crc", loc(f, hfsb).s);
	else if (rlfs_get64(agh->hdr.blkno) != hfsb)
		ERR(f, "%s (AG header): blkno %" PRIu64 " is not its own", loc(f, hfsb).s,
		    rlfs_get64(agh->hdr.blkno));
	else if (rlfs_get64(agh->hdr.owner) != agno)
		ERR(f, "%s (AG header): owner %" PRIu64 ", expected AG %u", loc(f, hfsb).s,
		    rlfs_get64(agh->hdr.owner), agno);
	else if (memcmp(agh->hdr.uuid, mp->uuid, RLFS_UUID_SIZE) != 0)
		ERR(f, "%s (AG header): uuid is not this filesystem's", loc(f, hfsb).s);
	else
		ok = true;
	if (ok)
		memcpy(&ai->agh, blk, sizeof(ai->agh));
	free(blk);
	return ok;
}

static void check_ag(struct fsck *f, uint32_t agno)
{
	struct rlfs_mount *mp = f->mp;
	struct ag_info *ai = &f->ags[agno];
	uint64_t hfsb = rlfs_agb_to_fsb(mp, agno, RLFS_AGH_AGBNO);
	uint32_t length = rlfs_ag_blocks(mp, agno);
	struct agwalk bno = { 0 }, cnt = { 0 }, ino = { 0 }, refc = { 0 };
	struct rlfs_buf fake = { 0 };
	struct rlfs_trans *tp;
	bool ok = true, roots_ok = true;
	int err;

	add_claim(f, CL_AGH, agno, 0, hfsb, 1);
	add_claim(f, CL_AGFLBLK, agno, 0, rlfs_agb_to_fsb(mp, agno, RLFS_AGFL_AGBNO), 1);
	err = rlfs_trans_alloc(mp, 0, 0, &tp);
	if (err) {
		ERR(f, "AG %u: cannot start a transaction: %s", agno, errstr(err));
		return;
	}
	/*
	 * The header is read raw and checked here: the library's verifier also
	 * rejects inconsistent summary counters, which fsck wants to compare and
	 * rewrite rather than give up on.  The tree cursors get it as their AG
	 * header buffer (cur->priv) so they never re-read it.
	 */
	if (!read_agh_raw(f, agno, hfsb, ai)) {
		rlfs_trans_cancel(tp);
		return;
	}
	ai->hdr_ok = true;
	fake.fsbno = hfsb;
	fake.data = &ai->agh;
	if (rlfs_get32(ai->agh.agno) != agno) {
		ERR(f, "%s (AG header): agno field %u, expected %u", loc(f, hfsb).s,
		    rlfs_get32(ai->agh.agno), agno);
		ai->hdr_ok = false;
	}
	if (rlfs_get32(ai->agh.length) != length) {
		ERR(f, "%s (AG header): length %u, expected %u", loc(f, hfsb).s,
		    rlfs_get32(ai->agh.length), length);
		ai->hdr_ok = false;
	}
	{
		static const char *const names[3] = { "bnobt", "cntbt", "inobt" };
		uint32_t roots[3] = { rlfs_get32(ai->agh.bno_root), rlfs_get32(ai->agh.cnt_root),
				      rlfs_get32(ai->agh.ino_root) };
		uint16_t levels[3] = { rlfs_get16(ai->agh.bno_level), rlfs_get16(ai->agh.cnt_level),
				       rlfs_get16(ai->agh.ino_level) };

		for (int i = 0; i < 3; i++) {
			if (roots[i] < 3 || roots[i] >= length) {
				ERR(f, "%s (AG header): %s root agbno %u outside the AG",
				    loc(f, hfsb).s, names[i], roots[i]);
				roots_ok = false;
			}
			if (levels[i] < 1 || levels[i] > RLFS_BTREE_MAXLEVELS) {
				ERR(f, "%s (AG header): %s level %u out of range", loc(f, hfsb).s,
				    names[i], levels[i]);
				roots_ok = false;
			}
		}
	}
	bool refc_roots_ok = f->reflink;
	if (!(mp->features_incompat & RLFS_FEAT_INCOMPAT_REFLINK) &&
	    (rlfs_get32(ai->agh.refc_root) || rlfs_get16(ai->agh.refc_level)))
		ERR(f, "%s (AG header): refcount btree root set without the reflink feature",
		    loc(f, hfsb).s);
	if (f->reflink) {
		uint32_t rr = rlfs_get32(ai->agh.refc_root);
		uint16_t rl = rlfs_get16(ai->agh.refc_level);

		if (rr < 3 || rr >= length) {
			ERR(f, "%s (AG header): refcountbt root agbno %u outside the AG",
			    loc(f, hfsb).s, rr);
			refc_roots_ok = false;
		}
		if (rl < 1 || rl > RLFS_BTREE_MAXLEVELS) {
			ERR(f, "%s (AG header): refcountbt level %u out of range", loc(f, hfsb).s,
			    rl);
			refc_roots_ok = false;
		}
		if (!refc_roots_ok)
			roots_ok = false;
	}
	if (!(mp->features_incompat & RLFS_FEAT_INCOMPAT_RMAP) &&
	    (rlfs_get32(ai->agh.rmap_root) || rlfs_get16(ai->agh.rmap_level)))
		ERR(f, "%s (AG header): rmap btree root set without the rmap feature",
		    loc(f, hfsb).s);
	check_agfl(f, tp, agno, ai);

	if (roots_ok) {
		bno = (struct agwalk){ .f = f, .agno = agno, .length = length, .kind = CL_BNOBT,
				       .limit = length, .ai = ai };
		cnt = bno;
		cnt.kind = CL_CNTBT;
		ino = bno;
		ino.kind = CL_INOBT;
		ino.last_chunk_fsbno = UINT64_MAX;
		bool bno_ok = walk_ag_tree(f, tp, &rlfs_bnobt_ops, &bno, alloc_rec_cb,
					   rlfs_get32(ai->agh.bno_root), &fake);
		bool cnt_ok = walk_ag_tree(f, tp, &rlfs_cntbt_ops, &cnt, alloc_rec_cb,
					   rlfs_get32(ai->agh.cnt_root), &fake);

		ok &= walk_ag_tree(f, tp, &rlfs_inobt_ops, &ino, inobt_rec_cb,
				   rlfs_get32(ai->agh.ino_root), &fake);
		ok &= bno_ok && cnt_ok;
		if (refc_roots_ok) {
			refc = (struct agwalk){ .f = f, .agno = agno, .length = length,
						.kind = CL_REFCBT, .limit = length, .ai = ai };
			uint64_t nerr0 = f->nerrors;

			ai->refc_ok = walk_ag_tree(f, tp, fsck_refcbt_ops(), &refc, refc_rec_cb,
						   rlfs_get32(ai->agh.refc_root), &fake);
			if (ai->refc_ok && f->nerrors == nerr0) {
				/* the library's own verifiers must agree */
				struct rlfs_btree_cur cur;

				rlfs_refcount_cur_init(&cur, tp, agno, &fake);
				err = rlfs_btree_check(&cur);
				rlfs_btree_cur_del(&cur);
				if (err)
					ERR(f, "%s (refcountbt): library verifier rejects the tree: %s",
					    loc(f, rlfs_agb_to_fsb(mp, agno,
							     rlfs_get32(ai->agh.refc_root))).s,
					    errstr(err));
			}
			ok &= ai->refc_ok;
		}
		/* comparing with a tree that could not be read only makes noise */
		if (bno_ok && cnt_ok)
			compare_free_trees(f, agno, &bno, &cnt);
		ai->btreeblks = bno.nblocks + cnt.nblocks - RLFS_MIN(bno.nblocks + cnt.nblocks, 2);
		ai->trees_ok = ok && !f->oom;
	}
	rlfs_trans_cancel(tp);
	free(bno.recs);
	free(cnt.recs);

	if (!ai->hdr_ok || !ai->trees_ok)
		return;
	if (rlfs_get32(ai->agh.freeblks) != ai->freeblks) {
		FIXCOUNTER(f, "%s (AG header): freeblks %u, free space trees hold %" PRIu64,
			loc(f, hfsb).s, rlfs_get32(ai->agh.freeblks), ai->freeblks);
		ai->fix = true;
	}
	if (rlfs_get32(ai->agh.longest) != ai->longest) {
		FIXCOUNTER(f, "%s (AG header): longest %u, longest free extent is %u",
			loc(f, hfsb).s, rlfs_get32(ai->agh.longest), ai->longest);
		ai->fix = true;
	}
	if (rlfs_get32(ai->agh.btreeblks) != ai->btreeblks) {
		FIXCOUNTER(f, "%s (AG header): btreeblks %u, bnobt+cntbt have %" PRIu64
			" blocks beyond their roots", loc(f, hfsb).s,
			rlfs_get32(ai->agh.btreeblks), ai->btreeblks);
		ai->fix = true;
	}
	if (rlfs_get64(ai->agh.icount) != ai->icount) {
		FIXCOUNTER(f, "%s (AG header): icount %" PRIu64 ", inobt chunks hold %" PRIu64,
			loc(f, hfsb).s, rlfs_get64(ai->agh.icount), ai->icount);
		ai->fix = true;
	}
	if (rlfs_get64(ai->agh.ifree) != ai->ifree) {
		FIXCOUNTER(f, "%s (AG header): ifree %" PRIu64 ", inobt marks %" PRIu64 " free",
			loc(f, hfsb).s, rlfs_get64(ai->agh.ifree), ai->ifree);
		ai->fix = true;
	}
}

/* ------------------------------------------------------------------ */
/* Phase 3: inodes                                                     */

/* Per-inode walk context. */
struct iwalk {
	struct fsck *f;
	struct rlfs_inode *ip;
	uint64_t owned;             /* blocks owned, for nblocks */
	uint64_t nrecs;
	uint64_t limit;
	uint8_t kind;               /* CL_BMBT / CL_DIRBT / CL_ATTRBT for visits */
	/* data fork */
	bool have_prev;
	uint64_t prev_end;          /* file block after the previous extent */
	uint64_t last_end;          /* end of the last extent (file blocks) */
	/* directories */
	bool have_run;
	uint32_t hash_run;          /* hash of the current run of records */
	size_t run_start;           /* first edge of the run */
	uint64_t nsubdirs;
	bool bad;
	/* symlinks: the (few) extents of the remote target */
	bool collect;
	unsigned ncollected;
	struct rlfs_irec collected[8];
};

static const char *fmt_name(uint8_t fmt)
{
	switch (fmt) {
	case RLFS_FMT_NONE: return "none";
	case RLFS_FMT_LOCAL: return "local";
	case RLFS_FMT_EXTENTS: return "extents";
	case RLFS_FMT_BTREE: return "btree";
	}
	return "?";
}

static int inode_visit_block(struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned level,
			     void *priv)
{
	struct iwalk *w = priv;

	(void)cur;
	(void)level;
	if (++w->owned > w->limit) {
		ERR(w->f, "inode %" PRIu64 " (%s): more tree blocks than the filesystem has; "
		    "stopped walking", w->ip->ino, claim_kind_name(w->kind));
		return 1;
	}
	add_claim(w->f, w->kind, w->ip->ino, 0, bp->fsbno, 1);
	return 0;
}

/* One data fork mapping (inline or bmbt leaf). */
static void check_extent(struct iwalk *w, const struct rlfs_bmbt_rec *r, uint8_t kind)
{
	struct fsck *f = w->f;
	struct rlfs_mount *mp = f->mp;
	uint64_t ino = w->ip->ino;
	uint64_t off = rlfs_get64(r->startoff), fsb = rlfs_get64(r->startblock);
	uint32_t len = rlfs_get32(r->blockcount), state = rlfs_get32(r->state);
	uint64_t maxoff = rlfs_b_to_fsb(mp, mp->maxbytes);

	w->nrecs++;
	if (len == 0 || len > RLFS_MAX_EXTLEN) {
		ERR(f, "inode %" PRIu64 ": extent at file block %" PRIu64 " has bad length %u",
		    ino, off, len);
		return;
	}
	if (state & ~RLFS_EXT_UNWRITTEN)
		ERR(f, "inode %" PRIu64 ": extent at file block %" PRIu64 " has bad state 0x%x",
		    ino, off, state);
	if (w->have_prev && off < w->prev_end)
		ERR(f, "inode %" PRIu64 ": extent at file block %" PRIu64 " overlaps or is out "
		    "of order with the previous one (ends at %" PRIu64 ")", ino, off, w->prev_end);
	w->have_prev = true;
	w->prev_end = off + len;
	if (off + len > w->last_end)
		w->last_end = off + len;
	if (off > maxoff || len > maxoff - off)
		ERR(f, "inode %" PRIu64 ": extent at file block %" PRIu64 " + %u lies past the "
		    "largest file size", ino, off, len);
	if (fsb == 0 || fsb >= mp->dblocks || len > mp->dblocks - fsb) {
		ERR(f, "inode %" PRIu64 ": extent at file block %" PRIu64 " maps fsbno %" PRIu64
		    " + %u outside the device", ino, off, fsb, len);
		return;
	}
	if (rlfs_fsb_to_agno(mp, fsb) != rlfs_fsb_to_agno(mp, fsb + len - 1))
		ERR(f, "inode %" PRIu64 ": extent at file block %" PRIu64 " (fsbno %" PRIu64
		    " + %u) crosses an AG boundary", ino, off, fsb, len);
	for (uint64_t b = fsb; b < fsb + len; b = (b / mp->agblocks + 1) * mp->agblocks)
		if (rlfs_fsb_to_agbno(mp, b) < 3) {
			ERR(f, "inode %" PRIu64 ": extent at file block %" PRIu64 " maps %s, an AG "
			    "header block", ino, off, loc(f, b).s);
			break;
		}
	w->owned += len;
	/* symlink target blocks are metadata: one owner, never shared */
	add_claim(f, kind == CL_DATA && w->collect ? CL_SYMLINK : kind, ino, off, fsb, len);
	if (w->collect && w->ncollected < 8)
		w->collected[w->ncollected++] = (struct rlfs_irec){ .startoff = off,
			.startblock = fsb, .blockcount = len, .state = state };
}

static int bmbt_rec_cb(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct iwalk *w = priv;

	(void)cur;
	if (w->nrecs >= w->limit) {
		ERR(w->f, "inode %" PRIu64 ": more extents than the filesystem has blocks; "
		    "stopped", w->ip->ino);
		return 1;
	}
	check_extent(w, rec, CL_DATA);
	return 0;
}

/* Walk an inode-rooted tree: check, visit blocks, all records. */
static bool walk_inode_tree(struct iwalk *w, struct rlfs_trans *tp,
			    const struct rlfs_btree_ops *ops, uint8_t kind, rlfs_btree_rec_fn fn,
			    void *rec_priv)
{
	struct visit_ctx v = { .blk = inode_visit_block, .blk_priv = w, .rec = fn,
			       .rec_priv = rec_priv ? rec_priv : w };
	char where[64];
	int err;

	w->kind = kind;
	snprintf(where, sizeof(where), "inode %" PRIu64, w->ip->ino);
	err = check_and_walk(w->f, tp, ops, 0, w->ip, NULL, &v, where);
	if (err)
		w->bad = true;
	return err == 0;
}

static int dir_rec_cb(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct iwalk *w = priv;
	struct fsck *f = w->f;
	const struct rlfs_dir_rec *r = rec;
	uint64_t dino = w->ip->ino, child = rlfs_get64(r->ino);
	uint32_t hash = rlfs_get32(r->hash);
	uint8_t nl = r->namelen;
	char name[RLFS_NAME_MAX + 1];
	struct edge *ne;
	char *nn;

	(void)cur;
	if (w->nrecs++ >= w->limit) {
		ERR(f, "inode %" PRIu64 " (directory): more entries than the filesystem can "
		    "hold; stopped", dino);
		return 1;
	}
	/* printable copy of the name for messages */
	for (unsigned i = 0; i < nl; i++)
		name[i] = (r->name[i] >= 0x20 && r->name[i] < 0x7f) ? (char)r->name[i] : '?';
	name[nl] = '\0';
	if (nl == 0) {
		ERR(f, "inode %" PRIu64 " (directory): entry with hash 0x%08x has an empty name",
		    dino, hash);
		return 0;
	}
	if (memchr(r->name, '/', nl) || memchr(r->name, '\0', nl)) {
		ERR(f, "inode %" PRIu64 " (directory): entry '%s' contains '/' or NUL", dino, name);
		return 0;
	}
	if ((nl == 1 && r->name[0] == '.') || (nl == 2 && r->name[0] == '.' && r->name[1] == '.')) {
		ERR(f, "inode %" PRIu64 " (directory): '%s' stored as an entry", dino, name);
		return 0;
	}
	if (rlfs_dirhash((const char *)r->name, nl) != hash)
		ERR(f, "inode %" PRIu64 " (directory): entry '%s' has hash 0x%08x, name hashes "
		    "to 0x%08x", dino, name, hash, rlfs_dirhash((const char *)r->name, nl));
	if (r->ftype == RLFS_FT_UNKNOWN || r->ftype > RLFS_FT_LNK)
		ERR(f, "inode %" PRIu64 " (directory): entry '%s' has bad file type %u", dino,
		    name, r->ftype);
	/* duplicate names: only among entries with the same hash */
	if (!w->have_run || hash != w->hash_run) {
		w->have_run = true;
		w->hash_run = hash;
		w->run_start = f->nedges;
	} else {
		for (size_t i = w->run_start; i < f->nedges; i++)
			if (f->edges[i].namelen == nl &&
			    memcmp(f->names + f->edges[i].name_off, r->name, nl) == 0)
				ERR(f, "inode %" PRIu64 " (directory): name '%s' appears twice",
				    dino, name);
	}
	ne = grow(f, f->edges, &f->edges_cap, f->nedges, sizeof(*ne));
	if (!ne)
		return -ENOMEM;
	f->edges = ne;
	while (f->names_len + nl > f->names_cap) {
		size_t ncap = f->names_cap ? f->names_cap * 2 : 65536;

		nn = realloc(f->names, ncap);
		if (!nn)
			return -ENOMEM;
		f->names = nn;
		f->names_cap = ncap;
	}
	memcpy(f->names + f->names_len, r->name, nl);
	f->edges[f->nedges++] = (struct edge){ .dir = dino, .child = child,
		.name_off = f->names_len, .namelen = nl, .ftype = r->ftype };
	f->names_len += nl;
	return 0;
}

/* Remote block run (xattr value or symlink target): n blocks of payload
 * blocksize - 64 each, headers carrying offset/bytes. */
static void check_remote_run(struct iwalk *w, struct rlfs_trans *tp, uint64_t fsbno,
			     uint64_t bytes, uint8_t kind, const char *what)
{
	struct fsck *f = w->f;
	struct rlfs_mount *mp = f->mp;
	uint32_t per = mp->blocksize - sizeof(struct rlfs_remote_hdr);
	uint64_t nblk = bytes ? (bytes + per - 1) / per : 1;
	uint64_t ino = w->ip->ino;

	if (fsbno == 0 || fsbno >= mp->dblocks || nblk > mp->dblocks - fsbno) {
		ERR(f, "inode %" PRIu64 " (%s): run at fsbno %" PRIu64 " of %" PRIu64
		    " blocks lies outside the device", ino, what, fsbno, nblk);
		return;
	}
	add_claim(f, kind, ino, 0, fsbno, nblk);
	w->owned += nblk;
	for (uint64_t i = 0; i < nblk; i++) {
		struct rlfs_buf *bp;
		const struct rlfs_remote_hdr *h;
		uint64_t want = RLFS_MIN((uint64_t)per, bytes - RLFS_MIN(bytes, i * per));
		int err = rlfs_trans_read_buf(tp, fsbno + i, &rlfs_remote_buf_ops, ino, &bp);

		if (err) {
			ERR(f, "inode %" PRIu64 " (%s): %s: %s", ino, what, loc(f, fsbno + i).s,
			    errstr(err));
			w->bad = true;
			continue;
		}
		h = bp->data;
		if (rlfs_get32(h->offset) != i * per || rlfs_get32(h->bytes) != want) {
			ERR(f, "inode %" PRIu64 " (%s): %s: header says offset %u bytes %u, "
			    "expected %" PRIu64 " and %" PRIu64, ino, what, loc(f, fsbno + i).s,
			    rlfs_get32(h->offset), rlfs_get32(h->bytes), i * per, want);
			w->bad = true;
		}
		rlfs_trans_brelse(tp, bp);
	}
}

struct attrwalk {
	struct iwalk *w;
	struct rlfs_trans *tp;
	uint64_t n;
};

static int attr_rec_cb(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct attrwalk *aw = priv;
	struct iwalk *w = aw->w;
	struct fsck *f = w->f;
	const struct rlfs_attr_rec *r = rec;
	uint32_t vlen = rlfs_get32(r->valuelen);
	uint64_t vfsb = rlfs_get64(r->value_fsbno);

	(void)cur;
	if (aw->n++ >= w->limit)
		return 1;
	if (r->namelen == 0 || memchr(r->name, '\0', r->namelen)) {
		ERR(f, "inode %" PRIu64 " (xattr tree): entry with hash 0x%08x has a bad name",
		    w->ip->ino, rlfs_get32(r->hash));
		return 0;
	}
	if (vlen > RLFS_XATTR_SIZE_MAX) {
		ERR(f, "inode %" PRIu64 " (xattr tree): entry '%.*s' value length %u too large",
		    w->ip->ino, r->namelen, r->name, vlen);
		return 0;
	}
	if (vfsb)
		check_remote_run(w, aw->tp, vfsb, vlen, CL_ATTRV, "remote xattr value");
	else if (vlen > sizeof(r->value))
		ERR(f, "inode %" PRIu64 " (xattr tree): entry '%.*s' value of %u bytes has no "
		    "remote blocks", w->ip->ino, r->namelen, r->name, vlen);
	return 0;
}

/* Inline xattrs after forkoff. */
static void check_attr_local(struct iwalk *w)
{
	struct fsck *f = w->f;
	struct rlfs_inode *ip = w->ip;
	uint32_t litsz = f->mp->inodesize - RLFS_DINODE_CORE;
	uint32_t pos = ip->forkoff, n = 0;

	while (pos + sizeof(struct rlfs_attr_sf_entry) <= litsz) {
		const struct rlfs_attr_sf_entry *e = (const void *)(ip->literal + pos);
		uint32_t nl = e->namelen, vl = rlfs_get16(e->valuelen);
		uint32_t sz = (uint32_t)((sizeof(*e) + nl + vl + 3) & ~3u);

		if (nl == 0)
			break;
		if (pos + sz > litsz) {
			ERR(f, "inode %" PRIu64 " (inline xattrs): entry at byte %u runs past the "
			    "inode", ip->ino, pos);
			return;
		}
		if (memchr(ip->literal + pos + sizeof(*e), '\0', nl))
			ERR(f, "inode %" PRIu64 " (inline xattrs): entry at byte %u has a NUL in "
			    "its name", ip->ino, pos);
		n++;
		pos += sz;
	}
	if (n != ip->acount)
		ERR(f, "inode %" PRIu64 " (inline xattrs): acount %u but %u entries found",
		    ip->ino, ip->acount, n);
}

static bool root_ok(struct fsck *f, uint64_t ino, uint64_t root, uint16_t level,
		    const char *what)
{
	if (root == 0 || root >= f->mp->dblocks || level < 1 || level > RLFS_BTREE_MAXLEVELS) {
		ERR(f, "inode %" PRIu64 " (%s): bad root fsbno %" PRIu64 " level %u", ino, what,
		    root, level);
		return false;
	}
	return true;
}

/* Remote symlink blocks carry struct rlfs_remote_hdr; the library keeps
 * their verifier private, so fsck has its own (header checks only). */
static const struct rlfs_buf_ops fsck_symlink_buf_ops = {
	.name = "symlink", .magic = RLFS_SYMLNK_MAGIC, .has_hdr = true,
};

/* Data fork of a regular file or remote symlink: inline extents or bmbt.
 * Returns false if the fork could not be read as a whole. */
static bool walk_data_fork(struct iwalk *w, struct rlfs_trans *tp, uint32_t nextents)
{
	struct fsck *f = w->f;
	struct rlfs_inode *ip = w->ip;
	uint64_t ino = ip->ino;

	if (ip->format == RLFS_FMT_EXTENTS || ip->format == RLFS_FMT_NONE) {
		uint32_t cap = ip->forkoff / sizeof(struct rlfs_bmbt_rec);

		if (ip->format == RLFS_FMT_NONE && nextents) {
			ERR(f, "inode %" PRIu64 ": data fork format none but nextents %u", ino,
			    nextents);
			return false;
		}
		if (nextents > cap) {
			ERR(f, "inode %" PRIu64 ": %u inline extents do not fit in the data fork "
			    "(%u bytes)", ino, nextents, ip->forkoff);
			return false;
		}
		for (uint32_t i = 0; i < nextents; i++) {
			struct rlfs_bmbt_rec r;

			memcpy(&r, ip->literal + i * sizeof(r), sizeof(r));
			check_extent(w, &r, CL_DATA);
		}
		return true;
	}
	if (ip->format == RLFS_FMT_BTREE) {
		bool ok;

		if (!root_ok(f, ino, ip->root, ip->root_level, "bmbt"))
			return false;
		ok = walk_inode_tree(w, tp, &rlfs_bmbt_ops, CL_BMBT, bmbt_rec_cb, NULL);
		if (ok && w->nrecs != nextents)
			ERR(f, "inode %" PRIu64 ": nextents %u but the bmbt holds %" PRIu64
			    " extents", ino, nextents, w->nrecs);
		return ok;
	}
	ERR(f, "inode %" PRIu64 ": data fork format %s (%u) invalid for mode 0%o", ino,
	    fmt_name(ip->format), ip->format, ip->mode);
	return false;
}

/* Load the fork the way the library does (rlfs_bmap_load, rlfs_bmap_check)
 * and compare with what the walk found. */
static void check_bmap_load(struct iwalk *w, struct rlfs_trans *tp, uint32_t nextents)
{
	struct fsck *f = w->f;
	struct rlfs_inode *ip = w->ip;
	int err;

	err = rlfs_bmap_load(tp, ip);
	if (err) {
		ERR(f, "inode %" PRIu64 " (data fork): the library cannot load it: %s", ip->ino,
		    errstr(err));
	} else if (ip->next != w->nrecs) {
		ERR(f, "inode %" PRIu64 " (data fork): nextents %u but the library loads %u "
		    "extents (the inline list must end with a zero record)", ip->ino, nextents,
		    ip->next);
	} else if (ip->format == RLFS_FMT_BTREE) {
		err = rlfs_bmap_check(tp, ip);
		if (err)
			ERR(f, "inode %" PRIu64 " (bmbt): rlfs_bmap_check failed: %s", ip->ino,
			    errstr(err));
	}
	free(ip->ext);
	ip->ext = NULL;
	ip->next = ip->ext_cap = 0;
	ip->ext_loaded = false;
}

/* Remote symlink: blocks 0..n-1 of the data fork hold the target. */
static void check_symlink_blocks(struct iwalk *w, struct rlfs_trans *tp)
{
	struct fsck *f = w->f;
	struct rlfs_inode *ip = w->ip;
	uint32_t per = f->mp->blocksize - sizeof(struct rlfs_remote_hdr);
	uint64_t nblk = (ip->size + per - 1) / per;

	for (uint64_t off = 0; off < nblk; off++) {
		const struct rlfs_irec *e = NULL;
		const struct rlfs_remote_hdr *h;
		struct rlfs_buf *bp;
		uint64_t fsbno, want = RLFS_MIN((uint64_t)per, ip->size - off * per);
		int err;

		for (unsigned i = 0; i < w->ncollected; i++)
			if (off >= w->collected[i].startoff &&
			    off - w->collected[i].startoff < w->collected[i].blockcount)
				e = &w->collected[i];
		if (!e) {
			ERR(f, "inode %" PRIu64 " (symlink): block %" PRIu64 " of the target is "
			    "not mapped", ip->ino, off);
			return;
		}
		fsbno = e->startblock + (off - e->startoff);
		err = rlfs_trans_read_buf(tp, fsbno, &fsck_symlink_buf_ops, ip->ino, &bp);
		if (err) {
			ERR(f, "inode %" PRIu64 " (symlink block): %s: %s", ip->ino, loc(f, fsbno).s,
			    errstr(err));
			continue;
		}
		h = bp->data;
		if (rlfs_get32(h->offset) != off * per || rlfs_get32(h->bytes) != want)
			ERR(f, "inode %" PRIu64 " (symlink block): %s: header says offset %u bytes "
			    "%u, expected %" PRIu64 " and %" PRIu64, ip->ino, loc(f, fsbno).s,
			    rlfs_get32(h->offset), rlfs_get32(h->bytes), off * per, want);
		else if (memchr((const uint8_t *)bp->data + sizeof(*h), '\0', want))
			ERR(f, "inode %" PRIu64 " (symlink block): %s: target contains a NUL byte",
			    ip->ino, loc(f, fsbno).s);
		rlfs_trans_brelse(tp, bp);
	}
}

static void decode_inode(struct fsck *f, const struct rlfs_dinode *di, uint64_t ino,
			 struct rlfs_inode *ip, uint8_t *literal)
{
	memset(ip, 0, sizeof(*ip));
	ip->mp = f->mp;
	ip->ino = ino;
	ip->mode = rlfs_get32(di->mode);
	ip->uid = rlfs_get32(di->uid);
	ip->gid = rlfs_get32(di->gid);
	ip->nlink = rlfs_get32(di->nlink);
	ip->size = rlfs_get64(di->size);
	ip->nblocks = rlfs_get64(di->nblocks);
	ip->rdev = rlfs_get64(di->rdev);
	ip->generation = rlfs_get64(di->generation);
	ip->parent = rlfs_get64(di->parent);
	ip->flags = rlfs_get32(di->flags);
	ip->cowextsize_blocks = rlfs_get32(di->cowextsize_blocks);
	ip->format = di->format;
	ip->aformat = di->aformat;
	ip->forkoff = rlfs_get16(di->forkoff);
	ip->root = rlfs_get64(di->root);
	ip->root_level = rlfs_get16(di->root_level);
	ip->aroot = rlfs_get64(di->aroot);
	ip->aroot_level = rlfs_get16(di->aroot_level);
	ip->acount = rlfs_get32(di->acount);
	memcpy(literal, (const uint8_t *)di + RLFS_DINODE_CORE, f->mp->inodesize - RLFS_DINODE_CORE);
	ip->literal = literal;
	ip->refcount = 1;
	pthread_rwlock_init(&ip->iolock, NULL);
}

/* Check one in-use inode (already verified magic/ino) and walk its forks. */
static void check_inode_forks(struct fsck *f, const struct rlfs_dinode *di, uint64_t ino,
			      struct ientry *ie)
{
	struct rlfs_mount *mp = f->mp;
	uint32_t litsz = mp->inodesize - RLFS_DINODE_CORE;
	uint8_t *literal = malloc(litsz ? litsz : 1);
	uint32_t nextents = rlfs_get32(di->nextents);
	struct rlfs_inode ip;
	struct rlfs_trans *tp;
	struct iwalk w;
	uint32_t type;
	int err;

	if (!literal) {
		f->oom = true;
		return;
	}
	decode_inode(f, di, ino, &ip, literal);
	type = ip.mode & S_IFMT;
	w = (struct iwalk){ .f = f, .ip = &ip, .limit = mp->dblocks };

	{
		const struct rlfs_timestamp *ts[4] = { &di->atime, &di->mtime, &di->ctime,
						       &di->crtime };
		static const char *const tsn[4] = { "atime", "mtime", "ctime", "crtime" };

		for (int i = 0; i < 4; i++)
			if (rlfs_get32(ts[i]->nsec) >= 1000000000u)
				ERR(f, "inode %" PRIu64 ": %s nanoseconds %u out of range", ino,
				    tsn[i], rlfs_get32(ts[i]->nsec));
	}
	if (ip.flags & ~(uint32_t)(RLFS_DIFLAG_IMMUTABLE | RLFS_DIFLAG_APPEND |
				   RLFS_DIFLAG_NODUMP | RLFS_DIFLAG_NOATIME))
		ERR(f, "inode %" PRIu64 ": unknown flags 0x%x", ino, ip.flags);
	if (ip.forkoff > litsz) {
		ERR(f, "inode %" PRIu64 ": forkoff %u beyond the literal area (%u bytes)", ino,
		    ip.forkoff, litsz);
		ie->flags |= IE_BAD;
		goto out_free;
	}
	err = rlfs_trans_alloc(mp, 0, 0, &tp);
	if (err) {
		ERR(f, "inode %" PRIu64 ": cannot start a transaction: %s", ino, errstr(err));
		goto out_free;
	}

	switch (type) {
	case S_IFREG:
		f->n_files++;
		if (!walk_data_fork(&w, tp, nextents)) {
			ie->flags |= IE_BAD;
			w.bad = true;
		}
		else
			check_bmap_load(&w, tp, nextents);
		if (ip.size > mp->maxbytes)
			ERR(f, "inode %" PRIu64 ": size %" PRIu64 " beyond the largest file size %"
			    PRIu64, ino, ip.size, mp->maxbytes);
		break;
	case S_IFDIR:
		f->n_dirs++;
		if (ip.format == RLFS_FMT_BTREE) {
			if (!root_ok(f, ino, ip.root, ip.root_level, "directory"))
				w.bad = true;
			else
				walk_inode_tree(&w, tp, &rlfs_dirbt_ops, CL_DIRBT, dir_rec_cb,
						NULL);
		} else if (ip.format != RLFS_FMT_NONE) {
			ERR(f, "inode %" PRIu64 ": directory with data fork format %s (%u)", ino,
			    fmt_name(ip.format), ip.format);
			ie->flags |= IE_BAD;
			w.bad = true;
		}
		if (w.bad)
			f->dirs_incomplete = true;
		break;
	case S_IFLNK:
		f->n_symlinks++;
		if (ip.size == 0 || ip.size > FSCK_SYMLINK_MAX) {
			ERR(f, "inode %" PRIu64 ": symlink target length %" PRIu64 " out of range",
			    ino, ip.size);
			break;
		}
		if (ip.format == RLFS_FMT_LOCAL) {
			uint32_t cap = ip.forkoff ? ip.forkoff : litsz;

			if (ip.size > cap)
				ERR(f, "inode %" PRIu64 ": inline symlink of %" PRIu64 " bytes does "
				    "not fit in the data fork (%u bytes)", ino, ip.size, cap);
			else if (memchr(literal, '\0', ip.size))
				ERR(f, "inode %" PRIu64 ": symlink target contains a NUL byte", ino);
			if (nextents)
				ERR(f, "inode %" PRIu64 ": inline symlink with nextents %u", ino,
				    nextents);
		} else if (ip.format == RLFS_FMT_EXTENTS || ip.format == RLFS_FMT_BTREE) {
			w.collect = true;
			if (walk_data_fork(&w, tp, nextents))
				check_symlink_blocks(&w, tp);
			else
				w.bad = true;
		} else {
			ERR(f, "inode %" PRIu64 ": symlink with data fork format %s (%u)", ino,
			    fmt_name(ip.format), ip.format);
		}
		break;
	case S_IFCHR: case S_IFBLK: case S_IFIFO: case S_IFSOCK:
		f->n_special++;
		if (ip.format != RLFS_FMT_NONE || nextents)
			ERR(f, "inode %" PRIu64 ": special file with data fork format %s (%u), "
			    "%u extents", ino, fmt_name(ip.format), ip.format, nextents);
		if (ip.size != 0)
			ERR(f, "inode %" PRIu64 ": special file with size %" PRIu64, ino, ip.size);
		break;
	default:
		ERR(f, "inode %" PRIu64 ": bad file type in mode 0%o", ino, ip.mode);
		ie->flags |= IE_BAD;
		break;
	}

	/* xattrs */
	switch (ip.aformat) {
	case RLFS_FMT_NONE:
		if (ip.acount)
			ERR(f, "inode %" PRIu64 ": no xattr fork but acount %u", ino, ip.acount);
		break;
	case RLFS_FMT_LOCAL:
		check_attr_local(&w);
		break;
	case RLFS_FMT_BTREE:
		if (!root_ok(f, ino, ip.aroot, ip.aroot_level, "xattr tree")) {
			w.bad = true;
		} else {
			struct attrwalk aw = { .w = &w, .tp = tp };

			if (walk_inode_tree(&w, tp, &rlfs_attrbt_ops, CL_ATTRBT, attr_rec_cb, &aw) &&
			    aw.n != ip.acount)
				ERR(f, "inode %" PRIu64 " (xattr tree): acount %u but the tree "
				    "holds %" PRIu64 " entries", ino, ip.acount, aw.n);
		}
		break;
	default:
		ERR(f, "inode %" PRIu64 ": bad xattr fork format %u", ino, ip.aformat);
		break;
	}
	rlfs_trans_cancel(tp);

	if (w.bad)
		f->incomplete = true;
	if (w.owned != ip.nblocks && !w.bad)
		ERR(f, "inode %" PRIu64 ": nblocks %" PRIu64 " but it owns %" PRIu64 " blocks",
		    ino, ip.nblocks, w.owned);
	f->used_blocks += w.owned;
out_free:
	pthread_rwlock_destroy(&ip.iolock);
	free(literal);
}

static bool mode_type_ok(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR: case S_IFBLK:
	case S_IFIFO: case S_IFSOCK:
		return true;
	}
	return false;
}

/* Every inode of every chunk, read raw so that each is judged alone. */
static void check_inodes(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	uint64_t cached = UINT64_MAX;
	bool cached_ok = false;

	if (!blk) {
		f->oom = true;
		return;
	}
	xsort(f->chunks, f->nchunks, sizeof(*f->chunks), cmp_chunk);
	for (size_t c = 0; c < f->nchunks && !f->oom; c++) {
		const struct chunk *ch = &f->chunks[c];

		if (c && ch->startino < f->chunks[c - 1].startino + RLFS_INODES_PER_CHUNK) {
			ERR(f, "inode chunk %" PRIu64 " overlaps chunk %" PRIu64 " (inobt)",
			    ch->startino, f->chunks[c - 1].startino);
			continue;
		}
		for (uint32_t i = 0; i < RLFS_INODES_PER_CHUNK; i++) {
			uint64_t ino = ch->startino + i;
			uint64_t fsbno = rlfs_ino_to_fsb(mp, ino);
			uint32_t slot = rlfs_ino_to_slot(mp, ino);
			const struct rlfs_dinode *di;
			bool isfree = (ch->free >> i) & 1;
			uint32_t mode;
			bool bad = false;

			if (fsbno != cached) {
				cached = fsbno;
				cached_ok = rlfs_dev_pread(f->dev, blk, mp->blocksize,
							   fsbno << mp->blocklog) == 0;
				if (!cached_ok)
					ERR(f, "%s (inode cluster): cannot read", loc(f, fsbno).s);
			}
			if (!cached_ok)
				continue;
			di = (const void *)(blk + (size_t)slot * mp->inodesize);
			if (rlfs_get32(di->magic) != RLFS_DINODE_MAGIC) {
				ERR(f, "inode %" PRIu64 " (%s slot %u): bad magic 0x%08x", ino,
				    loc(f, fsbno).s, slot, rlfs_get32(di->magic));
				bad = true;
			} else if (rlfs_get64(di->ino) != ino) {
				ERR(f, "inode %" PRIu64 " (%s slot %u): records inode number %" PRIu64,
				    ino, loc(f, fsbno).s, slot, rlfs_get64(di->ino));
				bad = true;
			}
			if (!bad && !rlfs_cksum_verify(di, mp->inodesize,
						       offsetof(struct rlfs_dinode, crc))) {
				ERR(f, "inode %" PRIu64 " (%s slot %u): bad crc", ino, loc(f, fsbno).s,
				    slot);
				bad = true;
			}
			if (!bad && memcmp(di->uuid, mp->uuid, RLFS_UUID_SIZE) != 0) {
				ERR(f, "inode %" PRIu64 " (%s slot %u): uuid is not this filesystem's",
				    ino, loc(f, fsbno).s, slot);
				bad = true;
			}
			mode = rlfs_get32(di->mode);
			if (isfree) {
				if (!bad && mode != 0)
					ERR(f, "inode %" PRIu64 ": marked free in the inobt but mode is "
					    "0%o", ino, mode);
				continue;
			}
			if (!bad && mode == 0) {
				ERR(f, "inode %" PRIu64 ": marked in use in the inobt but mode is 0",
				    ino);
				continue;
			}
			{
				struct ientry *ne = grow(f, f->inodes, &f->inodes_cap, f->ninodes,
							 sizeof(*ne));
				struct ientry *ie;

				if (!ne)
					break;
				f->inodes = ne;
				ie = &f->inodes[f->ninodes++];
				memset(ie, 0, sizeof(*ie));
				ie->ino = ino;
				if (bad) {
					/* its blocks and (if a directory) entries are unknown */
					ie->flags = IE_BAD;
					f->incomplete = true;
					f->dirs_incomplete = true;
					continue;
				}
				ie->mode = mode;
				ie->nlink = rlfs_get32(di->nlink);
				ie->parent = rlfs_get64(di->parent);
				if (!mode_type_ok(mode)) {
					ERR(f, "inode %" PRIu64 ": bad file type in mode 0%o", ino, mode);
					ie->flags = IE_BAD;
					continue;
				}
				check_inode_forks(f, di, ino, ie);
			}
		}
	}
	free(blk);
}

/* ------------------------------------------------------------------ */
/* Phase 4: the directory graph                                        */

/* Note an inode core repair (nlink if set_nlink, parent if nonzero). */
static void add_ifix(struct fsck *f, uint64_t ino, bool set_nlink, uint32_t nlink,
		     uint64_t parent)
{
	struct ifix *n = grow(f, f->ifixes, &f->ifixes_cap, f->nifixes, sizeof(*n));

	if (!n)
		return;
	f->ifixes = n;
	f->ifixes[f->nifixes++] = (struct ifix){ .ino = ino, .parent = parent, .nlink = nlink,
						 .set_nlink = set_nlink };
	if (set_nlink)
		f->nfix_links++;
	else
		f->nfix_parents++;
}

static void check_graph(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	struct ientry *root = find_inode(f, mp->rootino);
	uint64_t *queue;
	size_t qh = 0, qt = 0;

	/* entries: target exists, type, counts */
	for (size_t i = 0; i < f->nedges; i++) {
		struct edge *e = &f->edges[i];
		struct ientry *c = find_inode(f, e->child);
		struct ientry *d = find_inode(f, e->dir);
		char name[RLFS_NAME_MAX + 1];

		for (unsigned k = 0; k < e->namelen; k++) {
			char ch = f->names[e->name_off + k];

			name[k] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
		}
		name[e->namelen] = '\0';
		if (!c) {
			struct chunk *ch = find_chunk(f, e->child);

			if (ch && ((ch->free >> (e->child - ch->startino)) & 1))
				ERR(f, "inode %" PRIu64 " (directory): entry '%s' points at free "
				    "inode %" PRIu64, e->dir, name, e->child);
			else if (ch)
				ERR(f, "inode %" PRIu64 " (directory): entry '%s' points at inode %"
				    PRIu64 " which failed its checks", e->dir, name, e->child);
			else
				ERR(f, "inode %" PRIu64 " (directory): entry '%s' points at inode %"
				    PRIu64 " which lies in no inode chunk", e->dir, name, e->child);
			continue;
		}
		if (c->mode && rlfs_mode_to_ftype(c->mode) != e->ftype)
			ERR(f, "inode %" PRIu64 " (directory): entry '%s' has file type %u but "
			    "inode %" PRIu64 " has mode 0%o", e->dir, name, e->ftype, e->child,
			    c->mode);
		if (c->flags & IE_BAD)
			continue;
		c->nref++;
		if (S_ISDIR(c->mode)) {
			if (d)
				d->nsubdirs++;
			if (c->ino == mp->rootino)
				ERR(f, "inode %" PRIu64 " (directory): entry '%s' points at the root "
				    "directory", e->dir, name);
			else if (c->found_parent)
				ERR(f, "directory %" PRIu64 " is reachable twice: from %" PRIu64
				    " and from %" PRIu64 " ('%s')", e->child, c->found_parent,
				    e->dir, name);
			else
				c->found_parent = e->dir;
		}
	}

	/* reachability from the root */
	if (!root || (root->flags & IE_BAD) || !S_ISDIR(root->mode)) {
		ERR(f, "inode %" PRIu64 ": root directory missing or damaged; connectivity "
		    "not checked", mp->rootino);
		return;
	}
	if (root->parent != root->ino)
		ERR(f, "inode %" PRIu64 " (root directory): parent %" PRIu64 ", expected itself",
		    root->ino, root->parent);
	root->found_parent = root->ino;
	xsort(f->edges, f->nedges, sizeof(*f->edges), cmp_edge_dir);
	queue = malloc((f->ninodes + 1) * sizeof(*queue));
	if (!queue) {
		f->oom = true;
		return;
	}
	root->flags |= IE_REACHED;
	queue[qt++] = root->ino;
	while (qh < qt) {
		uint64_t dir = queue[qh++];
		size_t lo = 0, hi = f->nedges;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (f->edges[mid].dir < dir)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (size_t i = lo; i < f->nedges && f->edges[i].dir == dir; i++) {
			struct ientry *c = find_inode(f, f->edges[i].child);

			if (!c || (c->flags & IE_REACHED))
				continue;
			c->flags |= IE_REACHED;
			if (S_ISDIR(c->mode) && !(c->flags & IE_BAD) && qt <= f->ninodes)
				queue[qt++] = c->ino;
		}
	}
	free(queue);

	/* link counts, parents, orphans */
	for (size_t i = 0; i < f->ninodes; i++) {
		struct ientry *ie = &f->inodes[i];

		if (ie->flags & IE_BAD)
			continue;
		if (f->dirs_incomplete && (!(ie->flags & IE_REACHED) ||
		    (!S_ISDIR(ie->mode) && ie->nlink != ie->nref))) {
			f->nlink_suppressed++;
			continue;
		}
		if (!(ie->flags & IE_REACHED)) {
			if (ie->nlink == 0 && ie->nref == 0) {
				/* unlinked while open when the filesystem stopped:
				 * repair frees it (as log recovery would) */
				uint64_t *n = grow(f, f->orphans, &f->orphans_cap, f->norphans,
						   sizeof(*n));

				FIXABLE(f, "inode %" PRIu64 ": unlinked (nlink 0) but still "
					"allocated (orphan)", ie->ino);
				if (n) {
					f->orphans = n;
					f->orphans[f->norphans++] = ie->ino;
				}
			} else if (ie->nlink == 0)
				ERR(f, "inode %" PRIu64 ": unlinked (nlink 0) but still allocated "
				    "(orphan) and named in an unreachable directory", ie->ino);
			else
				ERR(f, "inode %" PRIu64 ": in use (mode 0%o, nlink %u) but not "
				    "reachable from the root", ie->ino, ie->mode, ie->nlink);
			continue;
		}
		/*
		 * A reachable inode's link count and a directory's parent
		 * pointer are fixable when every directory could be read: the
		 * entries counted are then all there are (e2fsck pass 4).
		 */
		if (S_ISDIR(ie->mode)) {
			if (ie->nlink != 2 + ie->nsubdirs) {
				report(f, !f->dirs_incomplete, "inode %" PRIu64 " (directory): nlink "
				       "%u, expected %u (2 + %u subdirectories)", ie->ino, ie->nlink,
				       2 + ie->nsubdirs, ie->nsubdirs);
				if (!f->dirs_incomplete)
					add_ifix(f, ie->ino, true, 2 + ie->nsubdirs, 0);
			}
			if (ie->parent != ie->found_parent) {
				report(f, !f->dirs_incomplete, "inode %" PRIu64 " (directory): parent "
				       "(\"..\") is %" PRIu64 " but it is named in directory %"
				       PRIu64, ie->ino, ie->parent, ie->found_parent);
				if (!f->dirs_incomplete)
					add_ifix(f, ie->ino, false, 0, ie->found_parent);
			}
		} else if (ie->nlink != ie->nref) {
			report(f, !f->dirs_incomplete, "inode %" PRIu64 ": nlink %u but %u directory "
			       "entries point at it", ie->ino, ie->nlink, ie->nref);
			if (!f->dirs_incomplete)
				add_ifix(f, ie->ino, true, ie->nref, 0);
		}
	}
	if (f->nlink_suppressed)
		ERR(f, "directory tree: %" PRIu64 " inodes unreachable or with link counts that "
		    "do not match; not listed, as some directories could not be read",
		    f->nlink_suppressed);
}

/* ------------------------------------------------------------------ */
/* Phase 5: block ownership                                            */

static void report_run(struct fsck *f, uint64_t start, uint64_t end, const char *what,
		       const char *who)
{
	struct rlfs_mount *mp = f->mp;

	if (end - start == 1)
		ERR(f, "%s: %s %s", who, loc(f, start).s, what);
	else
		ERR(f, "%s: AG %u agbno %u-%u (fsbno %" PRIu64 "-%" PRIu64 ", %" PRIu64
		    " blocks) %s", who, rlfs_fsb_to_agno(mp, start), rlfs_fsb_to_agbno(mp, start),
		    rlfs_fsb_to_agbno(mp, end - 1), start, end - 1, end - start, what);
}

static void report_leak(struct fsck *f, uint64_t start, uint64_t end)
{
	struct rlfs_mount *mp = f->mp;

	while (start < end) {
		uint64_t agend = ((uint64_t)rlfs_fsb_to_agno(mp, start) + 1) * mp->agblocks;
		uint64_t e = RLFS_MIN(end, agend);
		struct ag_info *ai = &f->ags[rlfs_fsb_to_agno(mp, start)];

		if (!ai->hdr_ok || !ai->trees_ok) {
			/* free space of this AG is not fully known: no leak reports */
			if (!ai->leak_noted)
				ERR(f, "AG %u (space map): AG header or trees damaged; unclaimed "
				    "blocks in this AG not reported", rlfs_fsb_to_agno(mp, start));
			ai->leak_noted = true;
			start = e;
			continue;
		}
		if (f->incomplete) {
			/* owners of some blocks are unknown: count, do not list */
			f->leaked_blocks += e - start;
			f->leaked_runs++;
			start = e;
			continue;
		}
		report_run(f, start, e, "leaked: neither free nor in use", "space map");
		start = e;
	}
}

/* Append a claim to the main list directly (no REFLINK diversion). */
static void push_claim(struct fsck *f, struct claim c)
{
	struct claim *nc = grow(f, f->claims, &f->claims_cap, f->nclaims, sizeof(*nc));

	if (!nc)
		return;
	f->claims = nc;
	f->claims[f->nclaims++] = c;
}

struct event {
	uint64_t pos;
	int delta;
};

static int cmp_event(const void *a, const void *b)
{
	const struct event *x = a, *y = b;

	return cmp_u64(x->pos, y->pos);
}

static int cmp_refc(const void *a, const void *b)
{
	const struct refc *x = a, *y = b;

	return cmp_u64(x->start, y->start);
}

/* A mismatch run being accumulated for one report line. */
struct mism {
	bool open;
	uint64_t start, end;
	uint64_t dc;                /* data-fork mappings */
	uint32_t rc;                /* refcount btree count, 0 = no record */
};

static void mism_flush(struct fsck *f, struct mism *m)
{
	char what[160];

	if (!m->open)
		return;
	m->open = false;
	if (m->rc == 0)
		snprintf(what, sizeof(what), "mapped by %" PRIu64 " data forks but the refcount "
			 "btree has no record (refcount 1)", m->dc);
	else if (m->dc == 0)
		snprintf(what, sizeof(what), "refcount btree record says refcount %u but no "
			 "file maps these blocks", m->rc);
	else
		snprintf(what, sizeof(what), "refcount btree says refcount %u but %" PRIu64
			 " data-fork mappings exist", m->rc, m->dc);
	report_run(f, m->start, m->end, what, "refcount btree");
}

static void mism_add(struct fsck *f, struct mism *m, uint64_t a, uint64_t b, uint64_t dc,
		     uint32_t rc)
{
	if (m->open && m->end == a && m->dc == dc && m->rc == rc &&
	    rlfs_fsb_to_agno(f->mp, a) == rlfs_fsb_to_agno(f->mp, m->start))
		m->end = b;
	else {
		mism_flush(f, m);
		*m = (struct mism){ .open = true, .start = a, .end = b, .dc = dc, .rc = rc };
	}
}

/*
 * REFLINK: data-fork mappings enter the ownership sweep once (their union,
 * so a data block that is also metadata, free or staging is still caught
 * there), and for every block the number of mappings must equal the
 * refcount btree's count: no record means 1; a record at
 * RLFS_REFC_REFCOUNT_MAX may have fewer (it sticks there).
 */
static void check_refcounts(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	size_t nd = f->ndclaims, nev = 0, nshared = 0;
	struct event *ev;
	uint64_t *segs; /* triples: start, end, count */
	size_t nsegs = 0;

	if (!f->reflink)
		return;
	xsort(f->dclaims, nd, sizeof(*f->dclaims), cmp_claim);
	/* union into the main sweep */
	for (size_t i = 0; i < nd;) {
		struct claim u = f->dclaims[i];
		uint64_t end = u.start + u.len;
		size_t j = i + 1;

		while (j < nd && f->dclaims[j].start <= end) {
			uint64_t e = f->dclaims[j].start + f->dclaims[j].len;
			if (e > end)
				end = e;
			j++;
		}
		while (end > u.start) {
			uint64_t n = RLFS_MIN(end - u.start, (uint64_t)UINT32_MAX);
			u.len = (uint32_t)n;
			push_claim(f, u);
			u.start += n;
		}
		i = j;
	}
	/* per-block mapping counts as runs */
	ev = malloc((2 * nd + 1) * sizeof(*ev));
	segs = malloc((2 * nd + 1) * 3 * sizeof(*segs));
	if (!ev || !segs) {
		free(ev);
		free(segs);
		f->oom = true;
		return;
	}
	for (size_t i = 0; i < nd; i++) {
		ev[nev++] = (struct event){ f->dclaims[i].start, 1 };
		ev[nev++] = (struct event){ f->dclaims[i].start + f->dclaims[i].len, -1 };
	}
	xsort(ev, nev, sizeof(*ev), cmp_event);
	int64_t depth = 0;
	for (size_t i = 0; i < nev;) {
		uint64_t pos = ev[i].pos;
		while (i < nev && ev[i].pos == pos)
			depth += ev[i++].delta;
		if (depth > 0 && i < nev) {
			segs[3 * nsegs] = pos;
			segs[3 * nsegs + 1] = ev[i].pos;
			segs[3 * nsegs + 2] = (uint64_t)depth;
			nsegs++;
		}
	}
	free(ev);
	/* shared records only, in fsbno order */
	xsort(f->refcs, f->nrefcs, sizeof(*f->refcs), cmp_refc);
	struct refc *sh = malloc((f->nrefcs + 1) * sizeof(*sh));
	if (!sh) {
		free(segs);
		f->oom = true;
		return;
	}
	for (size_t i = 0; i < f->nrefcs; i++)
		if (!f->refcs[i].cow)
			sh[nshared++] = f->refcs[i];
	/* sweep both sorted, non-overlapping lists */
	struct mism m = { 0 };
	size_t si = 0, ri = 0;
	uint64_t pos = 0;
	while (si < nsegs || ri < nshared) {
		uint64_t ss = si < nsegs ? RLFS_MAX(segs[3 * si], pos) : UINT64_MAX;
		uint64_t rs = ri < nshared ? RLFS_MAX(sh[ri].start, pos) : UINT64_MAX;
		uint64_t a = RLFS_MIN(ss, rs);
		uint64_t b = UINT64_MAX;
		uint64_t dc = 0;
		uint32_t rc = 0;

		if (si < nsegs && segs[3 * si] <= a) {
			dc = segs[3 * si + 2];
			b = RLFS_MIN(b, segs[3 * si + 1]);
		} else if (si < nsegs) {
			b = RLFS_MIN(b, segs[3 * si]);
		}
		if (ri < nshared && sh[ri].start <= a) {
			rc = sh[ri].rc;
			b = RLFS_MIN(b, sh[ri].start + sh[ri].len);
		} else if (ri < nshared) {
			b = RLFS_MIN(b, sh[ri].start);
		}
		/* never across an AG end (reports name one AG) */
		b = RLFS_MIN(b, ((uint64_t)rlfs_fsb_to_agno(mp, a) + 1) * mp->agblocks);
		if (b <= a)
			b = a + 1;
		struct ag_info *ai = &f->ags[rlfs_fsb_to_agno(mp, a)];
		bool bad = rc ? (dc != rc && !(rc == RLFS_REFC_REFCOUNT_MAX && dc >= 1)) : dc >= 2;
		if (bad && ai->refc_ok)
			mism_add(f, &m, a, b, dc, rc);
		pos = b;
		if (si < nsegs && segs[3 * si + 1] <= pos)
			si++;
		if (ri < nshared && sh[ri].start + sh[ri].len <= pos)
			ri++;
	}
	mism_flush(f, &m);
	free(sh);
	free(segs);
}

static void check_claims(struct fsck *f)
{
	struct claim *top = NULL;
	uint64_t maxend = 0;

	xsort(f->claims, f->nclaims, sizeof(*f->claims), cmp_claim);
	for (size_t i = 0; i < f->nclaims; i++) {
		struct claim *c = &f->claims[i];
		uint64_t end = c->start + c->len;

		if (c->start > maxend)
			report_leak(f, maxend, c->start);
		if (top && c->start < maxend) {
			char d1[128], d2[160], what[200];
			bool free1 = c->kind == CL_FREE || c->kind == CL_AGFL;
			bool free2 = top->kind == CL_FREE || top->kind == CL_AGFL;

			claim_desc(c, d1, sizeof(d1));
			claim_desc(top, d2, sizeof(d2));
			if (free1 != free2)
				snprintf(what, sizeof(what), "free and used at once (also %s)", d2);
			else
				snprintf(what, sizeof(what), "claimed twice (also %s)", d2);
			report_run(f, c->start, RLFS_MIN(end, maxend), what, d1);
		}
		if (end > maxend) {
			maxend = end;
			top = c;
		}
	}
	if (maxend < f->mp->dblocks)
		report_leak(f, maxend, f->mp->dblocks);
	if (f->leaked_runs)
		ERR(f, "space map: %" PRIu64 " blocks in %" PRIu64 " runs are neither free nor "
		    "in use; not listed, as some inode metadata could not be read",
		    f->leaked_blocks, f->leaked_runs);
}

/* ------------------------------------------------------------------ */
/* Phase 6: summary counters and their repair                          */

static void check_counters(struct fsck *f, uint64_t *icount, uint64_t *ifree,
			   uint64_t *fdblocks, bool *all_ok)
{
	*icount = *ifree = *fdblocks = 0;
	*all_ok = true;
	for (uint32_t agno = 0; agno < f->mp->agcount; agno++) {
		struct ag_info *ai = &f->ags[agno];

		if (!ai->hdr_ok || !ai->trees_ok) {
			*all_ok = false;
			continue;
		}
		*icount += ai->icount;
		*ifree += ai->ifree;
		*fdblocks += ai->freeblks + ai->flcount;
	}
	if (!*all_ok)
		return;
	if (rlfs_get64(f->sb.icount) != *icount) {
		FIXCOUNTER(f, "AG 0 agbno 0 (fsbno 0) (superblock): icount %" PRIu64 ", counted %"
			PRIu64, rlfs_get64(f->sb.icount), *icount);
		f->sb_fix = true;
	}
	if (rlfs_get64(f->sb.ifree) != *ifree) {
		FIXCOUNTER(f, "AG 0 agbno 0 (fsbno 0) (superblock): ifree %" PRIu64 ", counted %"
			PRIu64, rlfs_get64(f->sb.ifree), *ifree);
		f->sb_fix = true;
	}
	if (rlfs_get64(f->sb.fdblocks) != *fdblocks) {
		FIXCOUNTER(f, "AG 0 agbno 0 (fsbno 0) (superblock): fdblocks %" PRIu64 ", counted %"
			PRIu64, rlfs_get64(f->sb.fdblocks), *fdblocks);
		f->sb_fix = true;
	}
}

/*
 * Get a joined buffer for fsbno holding the block's current on-disk bytes,
 * without the read verifier (which would refuse the very counters being
 * fixed); the pre-write verifier still checks the result at flush.
 */
static int get_raw_buf(struct fsck *f, struct rlfs_trans *tp, uint64_t fsbno,
		       const struct rlfs_buf_ops *ops, uint64_t owner, struct rlfs_buf **bpp)
{
	struct rlfs_mount *mp = f->mp;
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	int err;

	if (!blk)
		return -ENOMEM;
	err = rlfs_dev_pread(f->dev, blk, mp->blocksize, fsbno << mp->blocklog);
	if (!err)
		err = rlfs_trans_get_buf(tp, fsbno, ops, owner, bpp);
	if (!err)
		memcpy((*bpp)->data, blk, mp->blocksize);
	free(blk);
	return err;
}

/* Rewrite the AG header counters found wrong (one transaction, then a
 * flush).  0 or negative errno. */
static int fix_ag_counters(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	int err;

	err = rlfs_trans_alloc(mp, 0, 0, &tp);
	if (err)
		return err;
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		struct ag_info *ai = &f->ags[agno];
		struct rlfs_agh *agh;

		if (!ai->fix)
			continue;
		err = get_raw_buf(f, tp, rlfs_agb_to_fsb(mp, agno, RLFS_AGH_AGBNO),
				  &rlfs_agh_buf_ops, agno, &bp);
		if (err)
			goto fail;
		agh = rlfs_agh(bp);
		rlfs_put32(agh->freeblks, (uint32_t)ai->freeblks);
		rlfs_put32(agh->longest, ai->longest);
		rlfs_put32(agh->btreeblks, (uint32_t)ai->btreeblks);
		rlfs_put64(agh->icount, ai->icount);
		rlfs_put64(agh->ifree, ai->ifree);
		rlfs_trans_log_buf(tp, bp);
		rlfs_trans_brelse(tp, bp);
	}
	err = rlfs_trans_commit(tp);
	if (!err)
		err = rlfs_buf_flush_all(mp);
	return err;
fail:
	rlfs_trans_cancel(tp);
	return err;
}

/*
 * Rewrite inode link counts and directory parent pointers (f->ifixes),
 * read-modify-write of each inode cluster block, raw like the reads of
 * phase 3.  An inode that no longer verifies (changed under us) stops the
 * repair with -EUCLEAN.  0 or negative errno.
 */
static int fix_inodes(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	int err = 0;

	if (!blk)
		return -ENOMEM;
	for (size_t i = 0; i < f->nifixes && !err; i++) {
		const struct ifix *x = &f->ifixes[i];
		uint64_t fsbno = rlfs_ino_to_fsb(mp, x->ino);
		struct rlfs_dinode *di = (void *)(blk + (size_t)rlfs_ino_to_slot(mp, x->ino) *
						   mp->inodesize);

		err = rlfs_dev_pread(f->dev, blk, mp->blocksize, fsbno << mp->blocklog);
		if (err)
			break;
		if (rlfs_get32(di->magic) != RLFS_DINODE_MAGIC || rlfs_get64(di->ino) != x->ino ||
		    !rlfs_cksum_verify(di, mp->inodesize, offsetof(struct rlfs_dinode, crc))) {
			err = -EUCLEAN;
			break;
		}
		if (x->set_nlink)
			rlfs_put32(di->nlink, x->nlink);
		if (x->parent)
			rlfs_put64(di->parent, x->parent);
		rlfs_cksum_update(di, mp->inodesize, offsetof(struct rlfs_dinode, crc));
		err = rlfs_dev_pwrite(f->dev, blk, mp->blocksize, fsbno << mp->blocklog);
	}
	if (!err)
		err = rlfs_dev_flush(f->dev);
	free(blk);
	return err;
}

/*
 * Read-modify-write the primary superblock in place, raw: the buffer cache
 * does not hand out fsbno 0 without its verifier, which refuses insane
 * counters; we hold the image lock.  clean: the filesystem checks clean
 * now: write the counted summary counters, state clean, and clear the
 * error record.  Otherwise mark the record: RLFS_SB_ERR_FSCK, `left`
 * findings, now; counters, state and the rest of the record are kept.
 * 0 or negative errno.
 */
static int write_primary_sb(struct fsck *f, bool clean, uint64_t icount, uint64_t ifree,
			    uint64_t fdblocks, uint64_t left)
{
	struct rlfs_mount *mp = f->mp;
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	struct rlfs_sb *sb = (struct rlfs_sb *)blk;
	struct rlfs_errrec rec;
	int err;

	if (!blk)
		return -ENOMEM;
	err = rlfs_dev_pread(f->dev, blk, mp->blocksize, 0);
	if (!err && (rlfs_get32(sb->hdr.magic) != RLFS_SB_MAGIC ||
		     !rlfs_cksum_verify(blk, mp->blocksize, RLFS_CRC_OFF)))
		err = -EUCLEAN;     /* changed under us: leave it */
	if (!err) {
		if (clean) {
			rlfs_put64(sb->icount, icount);
			rlfs_put64(sb->ifree, ifree);
			rlfs_put64(sb->fdblocks, fdblocks);
			rlfs_put32(sb->state, RLFS_STATE_CLEAN);
			memset(&rec, 0, sizeof(rec));
		} else {
			rlfs_errrec_load(&rec, sb);
			rec.flags |= RLFS_SB_ERR_FSCK;
			rec.fsck_time = (uint64_t)time(NULL);
			rec.fsck_errors = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
		}
		rlfs_errrec_store(&rec, sb);
		rlfs_cksum_update(blk, mp->blocksize, RLFS_CRC_OFF);
		err = rlfs_dev_pwrite(f->dev, blk, mp->blocksize, 0);
	}
	if (!err)
		err = rlfs_dev_flush(f->dev);
	free(blk);
	return err;
}

/*
 * Free the orphan inodes through a library mount (the unlink path: blocks
 * released with their refcounts, the inode chunk updated, counters kept
 * exact; its unmount writes the superblock).  Runs after the superblock
 * and AG headers have been made consistent, so that the mount accepts
 * them.  We hold the image lock: the mount does not take it.
 */
static int free_orphans(struct fsck *f)
{
	struct rlfs_mount *lm;
	int err, err2;

	err = rlfs_mount_open(f->image, RLFS_MOUNT_NOLOCK, &lm);
	if (err)
		return err;
	for (size_t i = 0; i < f->norphans && !err; i++) {
		err = rlfs_inode_free_orphan(lm, f->orphans[i]);
		if (!err)
			verbose(f, "inode %" PRIu64 ": orphan freed", f->orphans[i]);
	}
	err2 = rlfs_mount_close(lm);
	return err ? err : err2;
}

/* ------------------------------------------------------------------ */
/* Driver                                                              */

/* What repair mode fixes: --help, the README and the messages say the same. */
#define FSCK_NO_REBUILD "no tool rebuilds damaged metadata yet: to save the files, mount " \
	"the image read-only (reflinkfs mount -o ro %s DIR), copy them out and make a new " \
	"filesystem"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: reflinkfs fsck [-n] [-v] IMAGE\n"
		"Check a reflinkfs image (it must not be mounted) and repair what it can.\n"
		"  -n   check only, write nothing\n"
		"  -v   verbose: print phases and statistics\n"
		"  -y, -p, -a, -f   accepted for fsck(8) compatibility (they change nothing)\n"
		"Repair (the default) fixes only: summary counters (superblock and AG headers),\n"
		"link counts, directory parent pointers, orphan inodes (unlinked files still\n"
		"open when the filesystem stopped: freed), the unclean-unmount flag and the\n"
		"superblock's error record; and only when every finding is one of these.\n"
		"Everything else (damaged btrees, inodes or directories, blocks used twice or\n"
		"leaked, refcount mismatches) is reported and left as it is, and the\n"
		"superblock is marked as having errors: every mount warns until fsck finds the\n"
		"filesystem clean. No tool rebuilds damaged metadata yet: to save the files,\n"
		"mount the image read-only (reflinkfs mount -o ro IMAGE DIR), copy them out\n"
		"and make a new filesystem.\n"
		"Exit: 0 clean (also when only a stale error record was cleared, as e2fsck),\n"
		"1 errors corrected (and now clean), 4 errors left uncorrected, 8 operational\n"
		"error.\n");
}

static void fsck_free(struct fsck *f)
{
	if (f->mp)
		rlfs_mount_free_bare(f->mp);
	if (f->dev)
		rlfs_dev_close(f->dev);
	if (f->lock_fd >= 0 && f->own_lock_fd)
		close(f->lock_fd);
	free(f->claims);
	free(f->dclaims);
	free(f->refcs);
	free(f->chunks);
	free(f->inodes);
	free(f->edges);
	free(f->names);
	free(f->ags);
	free(f->ifixes);
	free(f->orphans);
}

/* Phases 1-6 (the image is open and locked).  0 when they all ran (counts
 * in *icount etc.), or an exit code: 8, or 4 when the primary superblock
 * stops the check (finding printed). */
static int check_all(struct fsck *f, uint64_t *icount, uint64_t *ifree, uint64_t *fdblocks,
		     bool *counters_ok)
{
	int rc;

	verbose(f, "Phase 1: superblocks");
	rc = check_primary_sb(f);
	if (rc)
		return rc;
	check_backup_sbs(f);
	verbose(f, "Phase 2: allocation groups (%u)", f->mp->agcount);
	for (uint32_t agno = 0; agno < f->mp->agcount && !f->oom; agno++)
		check_ag(f, agno);
	verbose(f, "Phase 3: inodes (%zu chunks)", f->nchunks);
	if (!f->oom)
		check_inodes(f);
	xsort(f->inodes, f->ninodes, sizeof(*f->inodes), cmp_ientry);
	verbose(f, "Phase 4: directory tree (%zu inodes, %zu entries)", f->ninodes, f->nedges);
	if (!f->oom)
		check_graph(f);
	verbose(f, "Phase 5: block ownership (%zu claims)", f->nclaims + f->ndclaims);
	if (!f->oom)
		check_refcounts(f);
	if (!f->oom)
		check_claims(f);
	if (f->oom) {
		fprintf(stderr, "%s: out of memory\n", f->prog);
		return FSCK_EXIT_OPERR;
	}
	verbose(f, "Phase 6: summary counters");
	check_counters(f, icount, ifree, fdblocks, counters_ok);
	verbose(f, "%" PRIu64 " files, %" PRIu64 " directories, %" PRIu64 " symlinks, %"
		PRIu64 " special; %" PRIu64 " inodes in chunks (%" PRIu64 " free); %" PRIu64
		" of %" PRIu64 " blocks free", f->n_files, f->n_dirs, f->n_symlinks, f->n_special,
		*icount, *ifree, *fdblocks, f->mp->dblocks);
	return 0;
}

/* Append ", item" (or "item" first) to buf; output is cut at len. */
__attribute__((format(printf, 4, 5)))
static void list_add(char *buf, size_t len, size_t *n, const char *fmt, ...)
{
	va_list ap;

	if (*n + 3 >= len)
		return;
	if (*n)
		*n += (size_t)snprintf(buf + *n, len - *n, ", ");
	va_start(ap, fmt);
	*n += (size_t)vsnprintf(buf + *n, len - *n, fmt, ap);
	va_end(ap);
	if (*n >= len)
		*n = len - 1;
}

/* "3 summary counters, 1 link count, ...": what repair fixes (or would). */
static void fix_list(const struct fsck *f, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	if (f->nfix_counters)
		list_add(buf, len, &n, "%" PRIu64 " summary counter%s", f->nfix_counters,
			 f->nfix_counters == 1 ? "" : "s");
	if (f->nfix_links)
		list_add(buf, len, &n, "%" PRIu64 " link count%s", f->nfix_links,
			 f->nfix_links == 1 ? "" : "s");
	if (f->nfix_parents)
		list_add(buf, len, &n, "%" PRIu64 " directory parent pointer%s", f->nfix_parents,
			 f->nfix_parents == 1 ? "" : "s");
	if (f->norphans)
		list_add(buf, len, &n, "%zu orphan inode%s freed", f->norphans,
			 f->norphans == 1 ? "" : "s");
	if (f->fix_state)
		list_add(buf, len, &n, "the unclean-unmount flag");
}

/* Errors are left: say so, what to do, and mark the superblock.  Returns 4. */
static int left_uncorrected(struct fsck *f, uint64_t left, const char *why)
{
	const char *nomark = NULL;
	int err;

	printf("%s: %" PRIu64 " error%s left uncorrected (%s); " FSCK_NO_REBUILD "\n", f->image,
	       left, left == 1 ? "" : "s", why, f->image);
	if (f->dry_run)
		nomark = "-n";
	else if (f->readonly)
		nomark = "read-only image";
	else if (!f->sb_block_ok)
		nomark = "the superblock itself is damaged";
	if (nomark) {
		printf("%s: superblock not marked as having errors (%s)\n", f->image, nomark);
		return FSCK_EXIT_UNCORRECTED;
	}
	err = write_primary_sb(f, false, 0, 0, 0, left);
	if (err)
		printf("%s: marking the superblock as having errors failed: %s\n", f->image,
		       errstr(err));
	else
		printf("%s: superblock marked as having errors: every mount warns until fsck "
		       "finds the filesystem clean\n", f->image);
	return FSCK_EXIT_UNCORRECTED;
}

static int run(struct fsck *f)
{
	uint64_t icount = 0, ifree = 0, fdblocks = 0;
	bool counters_ok;
	char what[512];
	int rc, err;

	rc = open_and_lock(f);
	if (rc)
		return rc;
	rc = check_all(f, &icount, &ifree, &fdblocks, &counters_ok);
	if (rc == FSCK_EXIT_UNCORRECTED)
		printf("%s: %" PRIu64 " error%s found, left uncorrected (cannot go on past the "
		       "superblock: nothing else was checked, and no tool repairs a superblock "
		       "yet)\n", f->image, f->nerrors, f->nerrors == 1 ? "" : "s");
	if (rc)
		return rc;

	if (f->nerrors) {
		char why[256];

		if (f->ncounter)
			snprintf(why, sizeof(why), "listed above; nothing was changed: repair "
				 "fixes only %" PRIu64 " of them, and only when nothing else is "
				 "wrong", f->ncounter);
		else
			snprintf(why, sizeof(why), "listed above; nothing was changed: repair "
				 "fixes none of them");
		return left_uncorrected(f, f->nerrors + f->ncounter, why);
	}
	if (!f->ncounter) {
		/*
		 * Clean.  A record that says otherwise is stale (its cause was
		 * in memory only, or went away with a file): repair clears it.
		 * As e2fsck with EXT2_ERROR_FS set, that alone is exit 0.
		 */
		const char *note = "";

		if (f->rec.flags && (f->dry_run || f->readonly)) {
			note = "; the superblock still records errors (not cleared: run fsck "
			       "without -n)";
		} else if (f->rec.flags) {
			err = write_primary_sb(f, true, icount, ifree, fdblocks, 0);
			if (err) {
				printf("%s: clean, but clearing the superblock's error record "
				       "failed: %s\n", f->image, errstr(err));
				return FSCK_EXIT_OPERR;
			}
			note = "; the superblock's error record was cleared";
		}
		printf("%s: clean, %" PRIu64 "/%" PRIu64 " inodes, %" PRIu64 "/%" PRIu64
		       " blocks%s\n", f->image, icount - ifree, icount, f->mp->dblocks - fdblocks,
		       f->mp->dblocks, note);
		return FSCK_EXIT_OK;
	}
	fix_list(f, what, sizeof(what));
	if (f->dry_run || f->readonly) {
		printf("%s: %" PRIu64 " error%s found that repair corrects (%s); %s: nothing "
		       "written\n", f->image, f->ncounter, f->ncounter == 1 ? "" : "s", what,
		       f->dry_run ? "-n" : "read-only image");
		return FSCK_EXIT_UNCORRECTED;
	}

	/* repair: inodes, AG headers, then the superblock (clean) last */
	err = fix_inodes(f);
	if (!err)
		err = fix_ag_counters(f);
	if (!err)
		err = write_primary_sb(f, true, icount, ifree, fdblocks, 0);
	if (!err && f->norphans)
		err = free_orphans(f);
	if (err) {
		printf("%s: repair failed: %s (%s may be partly written)\n", f->image,
		       errstr(err), what);
		return left_uncorrected(f, f->ncounter, "the repair did not complete");
	}

	/* trust but verify: check again, quietly, before saying "corrected" */
	{
		struct fsck v = { .prog = f->prog, .image = f->image, .dry_run = true,
				  .quiet = true, .lock_fd = f->lock_fd, .own_lock_fd = false };
		uint64_t ic, ifr, fdb, left;
		bool cok;

		rc = check_all(&v, &ic, &ifr, &fdb, &cok);
		/* a record now means the orphan frees met corruption */
		left = v.nerrors + v.ncounter + (v.rec.flags != 0);
		fsck_free(&v);
		if (rc == FSCK_EXIT_OPERR)
			return rc;
		if (rc || left) {
			char why[256];

			snprintf(why, sizeof(why), "repair wrote %s, but a second check still "
				 "finds these; run fsck -n to list them", what);
			return left_uncorrected(f, left ? left : 1, why);
		}
	}
	printf("%s: %" PRIu64 " error%s corrected (%s); the filesystem now checks clean%s\n",
	       f->image, f->ncounter, f->ncounter == 1 ? "" : "s", what,
	       f->rec.flags ? "; the superblock's error record was cleared" : "");
	return FSCK_EXIT_FIXED;
}

/*
 * reflinkfs fsck [-n] [-v] IMAGE.  argv[0] is "fsck".  Returns the fsck(8)
 * exit code (0, 1, 4 or 8).
 */
int rlfs_fsck_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct fsck f = { .lock_fd = -1, .own_lock_fd = true };
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "nvypafh", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			f.dry_run = true;
			break;
		case 'v':
			f.verbose = true;
			break;
		case 'y': case 'p': case 'a': case 'f':
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return FSCK_EXIT_OPERR;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return FSCK_EXIT_OPERR;
	}
	f.image = argv[optind];
	f.prog = argv[0];
	setvbuf(stdout, NULL, _IOLBF, 0);
	rc = run(&f);
	fflush(stdout);
	fsck_free(&f);
	return rc;
}

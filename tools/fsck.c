/*
 * fsck.c: `reflinkfs fsck [-n] [-v] [-L] IMAGE`, the offline checker.
 *
 * Exit codes as fsck(8): 0 clean, 1 errors corrected, 4 errors left
 * uncorrected, 8 operational error (cannot open, not a reflinkfs image,
 * image busy, out of memory).  -n: check only, never write.  -L: zero the
 * log (fsck_ag.c check_log), then check and repair.  Repair in v1
 * fixes only what follows from structures just verified: summary counters
 * (superblock icount/ifree/fdblocks, AG header freeblks/longest/btreeblks/
 * icount/ifree), link counts and directory parent pointers (from the
 * directory entries), orphan inodes (nlink 0, named nowhere: freed through
 * the library), the state flag and the superblock's error record; and the
 * AG trees (free-space, inode, refcount and rmap btrees, AGFL, AG header
 * counters), rebuilt from the block maps when the findings are theirs
 * (fsck_rebuild.c; counted in nrebuild between RB_BEGIN and RB_END);
 * directories whose b+tree is damaged (rebuilt from the entries still
 * readable, phase 3c), directory entries naming no inode (removed), a
 * /lost+found that is not a directory (moved aside), lost inodes (linked
 * into /lost+found, fsck_dir.c) and inodes damaged beyond use (cleared,
 * fsck_inode.c clear_bad_inode); and
 * only when every finding is one of these (counters computed from damaged
 * trees would be wrong too).  After repairing it checks again, quietly, and says
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
 * Phases (model: xfs_repair phases 1-7, read-only; the files that hold them
 * are listed in fsck_int.h):
 *   1. superblock (primary via pread, then backups in every AG);
 *   2. per AG: header, AGFL, bnobt/cntbt/inobt structure (rlfs_btree_check),
 *      free extents (order, merge, bnobt == cntbt), counters;
 *   3. inodes: every slot of every inobt chunk: crc/magic/ino, free mask
 *      against mode, format, forks (data extents or bmbt, directory tree,
 *      xattrs, symlink target), nblocks; 3b: data forks from the rmap;
 *      3c: entries of damaged directories salvaged (fsck_dir.c);
 *   4. directory graph from the root: entries, ftype, "..", link counts,
 *      reachability;
 *   5. block ownership, one AG at a time (the claims of phases 1-3 are kept
 *      by AG in the claim stores, fsck_claims.c, spilled to a temporary
 *      file past a cap): every claim (AG headers, btree blocks, AGFL, free
 *      extents, inode chunks, inode-owned blocks) sorted and swept: blocks
 *      claimed twice, free and used at once, or not claimed at all (leaked);
 *      with the REFLINK feature, data-fork blocks may be mapped many times:
 *      they enter the sweep once (the union of all mappings), and for every
 *      block the number of data-fork mappings must equal the refcount btree's
 *      count (1 without a record).  Metadata blocks must still have exactly
 *      one owner.  CoW staging records are reported as leaked staging
 *      extents (no CoW fork exists on an unmounted image);
 *      with the RMAP feature (fsck_rmap.c), per AG the rmap btree's records
 *      must equal the ones every claim above implies (both sides merged
 *      where XFS merges, then compared in key order);
 *   6. summary counters; then repair (inodes, then the AG tree rebuild or
 *      the AG header counters, then the superblock), or marking the error
 *      record.
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
#include "fsck_int.h"

/* ------------------------------------------------------------------ */
/* Reporting                                                           */

__attribute__((format(printf, 3, 4)))
void fsck_report(struct fsck *f, bool fixable, const char *fmt, ...)
{
	va_list ap;

	if (fixable)
		f->ncounter++;
	else if (f->rb_depth > 0)
		f->nrebuild++;
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


__attribute__((format(printf, 2, 3)))
void fsck_verbose(struct fsck *f, const char *fmt, ...)
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
struct locbuf fsck_loc(const struct fsck *f, uint64_t fsbno)
{
	struct locbuf l;
	uint32_t agb = f->mp ? f->mp->agblocks : rlfs_get32(f->sb.agblocks);

	if (agb == 0)
		agb = 1;
	snprintf(l.s, sizeof(l.s), "AG %" PRIu64 " agbno %" PRIu64 " (fsbno %" PRIu64 ")",
		 fsbno / agb, fsbno % agb, fsbno);
	return l;
}

const char *fsck_errstr(int err)
{
	if (err == -EUCLEAN)
		return "corrupt (failed verification)";
	return strerror(err < 0 ? -err : err);
}

/* ------------------------------------------------------------------ */
/* Growable arrays                                                     */

void *fsck_grow(struct fsck *f, void *p, size_t *cap, size_t n, size_t sz)
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

const char *fsck_claim_kind_name(uint8_t kind)
{
	switch (kind) {
	case CL_SB: return "superblock";
	case CL_AGH: return "AG header";
	case CL_AGFLBLK: return "AGFL block";
	case CL_BNOBT: return "bnobt block";
	case CL_CNTBT: return "cntbt block";
	case CL_INOBT: return "inobt block";
	case CL_REFCBT: return "refcountbt block";
	case CL_RMAPBT: return "rmapbt block";
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

void fsck_claim_desc(const struct claim *c, char *buf, size_t len)
{
	if (claim_is_inode(c->kind)) {
		if (c->kind == CL_DATA)
			snprintf(buf, len, "inode %" PRIu64 " data at file block %" PRIu64,
				 c->owner, c->aux);
		else
			snprintf(buf, len, "inode %" PRIu64 " %s", c->owner,
				 fsck_claim_kind_name(c->kind));
	} else if (c->kind == CL_ICHUNK) {
		snprintf(buf, len, "AG %" PRIu64 " inode chunk %" PRIu64, c->owner, c->aux);
	} else {
		snprintf(buf, len, "AG %" PRIu64 " %s", c->owner, fsck_claim_kind_name(c->kind));
	}
}

/* Record that [start, start+len) is claimed; clips (and reports) runs that
 * leave the filesystem. */
void fsck_add_claim(struct fsck *f, uint8_t kind, uint64_t owner, uint64_t aux,
		      uint64_t start, uint64_t len)
{
	fsck_add_claim_flags(f, kind, 0, owner, aux, start, len);
}

void fsck_add_claim_flags(struct fsck *f, uint8_t kind, uint8_t flags, uint64_t owner,
			  uint64_t aux, uint64_t start, uint64_t len)
{
	struct claim c = { .start = start, .owner = owner, .aux = aux, .kind = kind,
			   .flags = flags };
	uint64_t dblocks = f->mp->dblocks;
	char d[128];

	if (len == 0)
		return;
	if (start >= dblocks || len > dblocks - start) {
		c.len = (uint32_t)RLFS_MIN(len, UINT32_MAX);
		fsck_claim_desc(&c, d, sizeof(d));
		ERR(f, "%s: fsbno %" PRIu64 " + %" PRIu64 " blocks lies beyond the end of the "
		    "filesystem (%" PRIu64 " blocks)", d, start, len, dblocks);
		if (start >= dblocks)
			return;
		len = dblocks - start;
	}
	/* with REFLINK, data-fork mappings are collected apart: they may
	 * overlap each other (check_refcounts judges them) */
	struct fsck_claims *st = kind == CL_DATA && f->reflink ? &f->dclaims : &f->claims;

	/* one record per AG the run lies in (phases 5-6 judge an AG at a
	 * time); a data extent's file block advances with it */
	while (len) {
		uint32_t agno = rlfs_fsb_to_agno(f->mp, c.start);
		uint64_t agend = (uint64_t)rlfs_agb_to_fsb(f->mp, agno, 0) +
				 rlfs_ag_blocks(f->mp, agno);
		uint64_t n = RLFS_MIN(len, agend - c.start);

		c.len = (uint32_t)n;
		if (fsck_store_add(f, st, agno, &c))
			return;
		c.start += n;
		if (kind == CL_DATA)
			c.aux += n;
		len -= n;
	}
}

int fsck_store_add(struct fsck *f, struct fsck_claims *s, uint32_t agno, const void *rec)
{
	int err = fsck_claims_add(s, agno, rec);

	if (err) {
		f->oom = true;
		if (err != -ENOMEM && !f->store_failed)
			f->store_failed = s;
	}
	return err;
}

int fsck_store_load_raw(struct fsck *f, struct fsck_claims *s, uint32_t agno, void **out,
			size_t *n)
{
	int err = fsck_claims_load(s, agno, out, n);

	if (err) {
		f->oom = true;
		if (err != -ENOMEM && !f->store_failed)
			f->store_failed = s;
	}
	return err;
}

int fsck_store_load(struct fsck *f, struct fsck_claims *s, uint32_t agno, bool sort,
		    struct claim **out, size_t *n)
{
	void *recs;
	int err = fsck_store_load_raw(f, s, agno, &recs, n);

	*out = recs;
	if (!err && sort)
		fsck_xsort(*out, *n, sizeof(**out), fsck_cmp_claim);
	return err;
}

int fsck_claims_setup(struct fsck *f)
{
	const char *env = getenv("RLFS_FSCK_MEM_CAP_BYTES");
	uint32_t agcount = f->mp->agcount;
	size_t cap = FSCK_CLAIMS_DEFAULT_CAP_BYTES;

	if (env && *env) {
		char *end;
		unsigned long long v;

		errno = 0;
		v = strtoull(env, &end, 10);
		if (errno || *end || end == env || env[0] == '-' || v > SIZE_MAX) {
			fprintf(stderr, "%s: RLFS_FSCK_MEM_CAP_BYTES=%s: not a number of bytes\n",
				f->prog, env);
			return FSCK_EXIT_OPERR;
		}
		cap = (size_t)v;
	}
	f->mem_cap_bytes = cap;
	if (fsck_claims_init(&f->claims, "claims", sizeof(struct claim), agcount, cap) ||
	    fsck_claims_init(&f->dclaims, "data-fork mappings", sizeof(struct claim), agcount,
			     cap) ||
	    fsck_claims_init(&f->irmaps, "inode chunk rmaps", sizeof(struct claim), agcount,
			     cap) ||
	    fsck_claims_init(&f->refcs, "refcount records", sizeof(struct refc), agcount, cap)) {
		fprintf(stderr, "%s: out of memory\n", f->prog);
		f->oom = true;
		return FSCK_EXIT_OPERR;
	}
	return 0;
}

const char *fsck_nowrite_reason(const struct fsck *f)
{
	if (f->dry_run)
		return "-n";
	return "read-only image";
}

struct ientry *fsck_find_inode(struct fsck *f, uint64_t ino)
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
struct chunk *fsck_find_chunk(struct fsck *f, uint64_t ino)
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
void fsck_xsort(void *base, size_t n, size_t sz, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(base, n, sz, cmp);
}

int fsck_cmp_u64(uint64_t a, uint64_t b)
{
	return a < b ? -1 : a > b;
}

static int cmp_ientry(const void *a, const void *b)
{
	return fsck_cmp_u64(((const struct ientry *)a)->ino, ((const struct ientry *)b)->ino);
}

int fsck_cmp_chunk(const void *a, const void *b)
{
	return fsck_cmp_u64(((const struct chunk *)a)->startino, ((const struct chunk *)b)->startino);
}

int fsck_cmp_claim(const void *a, const void *b)
{
	const struct claim *x = a, *y = b;
	int c = fsck_cmp_u64(x->start, y->start);

	if (c)
		return c;
	return -fsck_cmp_u64(x->len, y->len); /* longer first */
}

int fsck_cmp_edge_dir(const void *a, const void *b)
{
	const struct edge *x = a, *y = b;
	int c = fsck_cmp_u64(x->dir, y->dir);

	return c ? c : fsck_cmp_u64(x->name_off, y->name_off);
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
/* Driver                                                              */

/* What repair mode fixes: --help, the README and the messages say the same. */
#define FSCK_NO_REBUILD "repair cannot rebuild this damage yet: to save the files, mount " \
	"the image read-only (reflinkfs mount -o ro %s DIR), copy them out and make a new " \
	"filesystem"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: reflinkfs fsck [-n] [-v] [-L] IMAGE\n"
		"Check a reflinkfs image (it must not be mounted) and repair what it can.\n"
		"A log that needs replay is replayed first (-n: reported, exit 4).\n"
		"  -n   check only, write nothing\n"
		"  -v   verbose: print phases and statistics\n"
		"  -L   zero the log (as xfs_repair -L), then check and repair: for a log\n"
		"       that is corrupt or cannot be replayed.  The log is not replayed:\n"
		"       fsck says how many checkpoints past the tail it discards (when the\n"
		"       log can still be read), writes a fresh empty log and goes on; the\n"
		"       changes the log held are lost.  Not with -n.\n"
		"  -y, -p, -a, -f   accepted for fsck(8) compatibility (they change nothing)\n"
		"With the rmap feature (mkfs -m rmapbt=1) the rmap btree is cross-checked against\n"
		"every other owner of blocks.\n"
		"Repair (the default) fixes: summary counters (superblock and AG headers),\n"
		"link counts, directory parent pointers, orphan inodes (unlinked files still\n"
		"open when the filesystem stopped: freed), the unclean-unmount flag and the\n"
		"superblock's error record; it rebuilds every AG's free-space, inode,\n"
		"refcount and rmap btrees and AGFL from the block maps when those are what is\n"
		"damaged (damaged or wrong records, leaked blocks, free space overlapping used\n"
		"blocks, refcount mismatches, a block two files map without a refcount: it\n"
		"becomes shared; an inode chunk the inode btree lost, or a damaged inode btree,\n"
		"when the rmap btree has the chunks), and (rmap feature) a regular file's data\n"
		"fork whose block map is damaged, from the file's rmap records; it rebuilds\n"
		"a directory whose b+tree is damaged from the entries it can still read,\n"
		"removes directory entries naming a free inode or no inode, moves a\n"
		"/lost+found that is not a directory aside, and links lost inodes (in use,\n"
		"named by no directory) into /lost+found (made if missing) under their\n"
		"inode number, and clears inodes damaged beyond use (rmap feature: their\n"
		"blocks are freed, their contents lost); and only when every finding is one\n"
		"of these.\n"
		"Everything else (other damaged inodes, xattr trees or AG\n"
		"headers, a block used by a file and by metadata) is reported and\n"
		"left as it is, and the superblock is marked as having errors: every mount\n"
		"warns until fsck finds the filesystem clean. To save the files, mount the\n"
		"image read-only (reflinkfs mount -o ro IMAGE DIR), copy them out and make a\n"
		"new filesystem.\n"
		"Exit: 0 clean (also when only a stale error record was cleared, as e2fsck),\n"
		"1 errors corrected (and now clean), 4 errors left uncorrected, 8 operational\n"
		"error.\n"
		"Memory: block claims are kept by AG; past RLFS_FSCK_MEM_CAP_BYTES of them in\n"
		"memory (default 8 MiB a table) they go to an unlinked temporary file in\n"
		"$TMPDIR (default /tmp), and each AG is checked from its own claims.\n");
}

static void fsck_free(struct fsck *f)
{
	if (f->mp)
		rlfs_mount_free_bare(f->mp);
	if (f->dev)
		rlfs_dev_close(f->dev);
	if (f->lock_fd >= 0 && f->own_lock_fd)
		close(f->lock_fd);
	fsck_claims_destroy(&f->claims);
	fsck_claims_destroy(&f->dclaims);
	fsck_claims_destroy(&f->refcs);
	free(f->chunks);
	fsck_claims_destroy(&f->irmaps);
	free(f->inodes);
	free(f->edges);
	free(f->names);
	free(f->ags);
	free(f->ifixes);
	free(f->orphans);
	free(f->cleared);
	free(f->dfixes);
	free(f->lostinos);
	for (size_t i = 0; i < f->ndirrebuilds; i++)
		free(f->dirrebuilds[i].old_blocks);
	free(f->dirrebuilds);
	fsck_free_lost(f);
}

/* Phases 1-6 (the image is open and locked).  0 when they all ran (counts
 * in *icount etc.), or an exit code: 8, or 4 when the primary superblock
 * stops the check (finding printed). */
static int check_all(struct fsck *f, uint64_t *icount, uint64_t *ifree, uint64_t *fdblocks,
		     bool *counters_ok)
{
	int rc;

	fsck_verbose(f, "Phase 1: superblocks");
	rc = fsck_check_primary_sb(f);
	if (rc)
		return rc;
	fsck_check_backup_sbs(f);
	fsck_verbose(f, "Phase 2: allocation groups (%u)", f->mp->agcount);
	for (uint32_t agno = 0; agno < f->mp->agcount && !f->oom; agno++)
		fsck_check_ag(f, agno);
	if (!f->oom)
		fsck_recover_chunks(f);
	fsck_verbose(f, "Phase 3: inodes (%zu chunks)", f->nchunks);
	if (!f->oom)
		fsck_check_inodes(f);
	if (!f->oom && f->nlost) {
		fsck_verbose(f, "Phase 3b: %zu data fork%s from the rmap", f->nlost,
			     f->nlost == 1 ? "" : "s");
		fsck_recover_forks(f);
	}
	if (!f->oom && f->ndirrebuilds) {
		fsck_verbose(f, "Phase 3c: %zu damaged director%s salvaged", f->ndirrebuilds,
			     f->ndirrebuilds == 1 ? "y" : "ies");
		fsck_salvage_dirs(f);
	}
	fsck_xsort(f->inodes, f->ninodes, sizeof(*f->inodes), cmp_ientry);
	fsck_verbose(f, "Phase 4: directory tree (%zu inodes, %zu entries)", f->ninodes, f->nedges);
	if (!f->oom)
		fsck_check_graph(f);
	fsck_verbose(f, "Phase 5: block ownership (%zu claims)", f->claims.total + f->dclaims.total);
	if (!f->oom)
		fsck_check_refcounts(f);
	if (!f->oom)
		fsck_check_claims(f);
	if (!f->oom)
		fsck_check_rmaps(f);
	if (f->oom) {
		char msg[512];

		if (f->store_failed)
			fprintf(stderr, "%s: %s\n", f->prog,
				fsck_claims_strerror(f->store_failed, msg, sizeof(msg)));
		else
			fprintf(stderr, "%s: out of memory\n", f->prog);
		return FSCK_EXIT_OPERR;
	}
	uint64_t spilled = f->claims.spilled_bytes + f->dclaims.spilled_bytes +
			   f->irmaps.spilled_bytes + f->refcs.spilled_bytes;
	if (spilled)
		fsck_verbose(f, "claims spilled to a temporary file: %" PRIu64 " bytes (cap %zu "
			     "bytes a store)", spilled, f->mem_cap_bytes);
	fsck_verbose(f, "Phase 6: summary counters");
	fsck_check_counters(f, icount, ifree, fdblocks, counters_ok);
	fsck_verbose(f, "%" PRIu64 " files, %" PRIu64 " directories, %" PRIu64 " symlinks, %"
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
	if (f->nfix_hints)
		list_add(buf, len, &n, "%" PRIu64 " inode flag%s or extent size hint%s reset",
			 f->nfix_hints, f->nfix_hints == 1 ? "" : "s",
			 f->nfix_hints == 1 ? "" : "s");
	if (f->nfix_parents)
		list_add(buf, len, &n, "%" PRIu64 " directory parent pointer%s", f->nfix_parents,
			 f->nfix_parents == 1 ? "" : "s");
	if (f->nfix_unlinked)
		list_add(buf, len, &n, "%" PRIu64 " unlinked list%s emptied", f->nfix_unlinked,
			 f->nfix_unlinked == 1 ? "" : "s");
	if (f->nlisted)
		list_add(buf, len, &n, "%" PRIu64 " unlinked inode%s freed (as the next mount "
			 "would)", f->nlisted, f->nlisted == 1 ? "" : "s");
	if (f->norphans)
		list_add(buf, len, &n, "%zu orphan inode%s freed", f->norphans,
			 f->norphans == 1 ? "" : "s");
	if (f->nfix_forks)
		list_add(buf, len, &n, "%" PRIu64 " data fork%s rebuilt from the rmap",
			 f->nfix_forks, f->nfix_forks == 1 ? "" : "s");
	if (f->ncleared)
		list_add(buf, len, &n, "%zu damaged inode%s cleared", f->ncleared,
			 f->ncleared == 1 ? "" : "s");
	if (f->ndirrebuilds)
		list_add(buf, len, &n, "%zu director%s rebuilt from %s readable entries",
			 f->ndirrebuilds, f->ndirrebuilds == 1 ? "y" : "ies",
			 f->ndirrebuilds == 1 ? "its" : "their");
	if (f->lpf_aside)
		list_add(buf, len, &n, "/lost+found (not a directory) moved aside");
	if (f->ndfixes)
		list_add(buf, len, &n, "%zu directory entr%s naming no inode removed", f->ndfixes,
			 f->ndfixes == 1 ? "y" : "ies");
	if (f->nlostinos)
		list_add(buf, len, &n, "%zu lost inode%s linked into /lost+found", f->nlostinos,
			 f->nlostinos == 1 ? "" : "s");
	if (f->fix_state)
		list_add(buf, len, &n, "the unclean-unmount flag");
	if (f->nrebuild)
		list_add(buf, len, &n, "%" PRIu64 " finding%s in the AG trees (rebuilt from the "
			 "block maps)", f->nrebuild, f->nrebuild == 1 ? "" : "s");
}

/* Errors are left: say so, what to do, and mark the superblock.  Returns 4. */
static int left_uncorrected(struct fsck *f, uint64_t left, const char *why)
{
	const char *nomark = NULL;
	int err;

	printf("%s: %" PRIu64 " error%s left uncorrected (%s); " FSCK_NO_REBUILD "\n", f->image,
	       left, left == 1 ? "" : "s", why, f->image);
	if (f->dry_run || f->readonly)
		nomark = fsck_nowrite_reason(f);
	else if (!f->sb_block_ok)
		nomark = "the superblock itself is damaged";
	if (nomark) {
		printf("%s: superblock not marked as having errors (%s)\n", f->image, nomark);
		return FSCK_EXIT_UNCORRECTED;
	}
	err = fsck_write_primary_sb(f, false, 0, 0, 0, left);
	if (err)
		printf("%s: marking the superblock as having errors failed: %s\n", f->image,
		       fsck_errstr(err));
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
	if (rc == FSCK_EXIT_UNCORRECTED && f->log_pending)
		printf("%s: not checked: the log must be replayed first (exit 4)\n", f->image);
	else if (rc == FSCK_EXIT_UNCORRECTED)
		printf("%s: %" PRIu64 " error%s found, left uncorrected (cannot go on past the "
		       "superblock: nothing else was checked, and no tool repairs a superblock "
		       "yet)\n", f->image, f->nerrors, f->nerrors == 1 ? "" : "s");
	if (rc)
		return rc;
	const char *rbwhy = NULL;
	bool rb_refused = f->nrebuild && !f->nerrors && !fsck_rebuild_possible(f, &rbwhy);

	if (f->nlisted)
		printf("%s: %" PRIu64 " unlinked inode%s left by a crash %s on the unlinked lists "
		       "(not an error): %s\n", f->image, f->nlisted, f->nlisted == 1 ? "" : "s",
		       f->nlisted == 1 ? "is" : "are",
		       f->dry_run || f->readonly || f->nerrors || rb_refused ?
		       "the next read-write mount frees them" :
		       "freed now, as the next read-write mount would");

	if (rb_refused) {
		char why[256];

		snprintf(why, sizeof(why), "listed above; nothing was changed: the AG trees are "
			 "rebuilt only when the block maps are complete, and %s", rbwhy);
		return left_uncorrected(f, f->nrebuild + f->ncounter, why);
	}
	if (f->nerrors) {
		char why[256];

		if (f->ncounter + f->nrebuild)
			snprintf(why, sizeof(why), "listed above; nothing was changed: repair "
				 "fixes only %" PRIu64 " of them, and only when nothing else is "
				 "wrong", f->ncounter + f->nrebuild);
		else
			snprintf(why, sizeof(why), "listed above; nothing was changed: repair "
				 "fixes none of them");
		return left_uncorrected(f, f->nerrors + f->ncounter + f->nrebuild, why);
	}
	if (!f->ncounter && !f->nrebuild) {
		/*
		 * Clean.  A record that says otherwise is stale (its cause was
		 * in memory only, or went away with a file): repair clears it.
		 * As e2fsck with EXT2_ERROR_FS set, that alone is exit 0.
		 */
		const char *note = "";

		if (f->nlisted && !f->dry_run && !f->readonly) {
			/* inodes a crash left on the unlinked lists: free them
			 * as the next read-write mount would (a library mount
			 * does it; its unmount writes the superblock clean) */
			err = fsck_free_orphans(f);
			if (err) {
				printf("%s: freeing the %" PRIu64 " inode%s on the unlinked lists "
				       "failed: %s\n", f->image, f->nlisted,
				       f->nlisted == 1 ? "" : "s", fsck_errstr(err));
				return left_uncorrected(f, 1, "the unlinked inodes were not freed");
			}
			/* the counters above predate the frees: the error
			 * record (written with them) is left for the next run */
			printf("%s: clean; freed %" PRIu64 " unlinked inode%s left by a crash (as "
			       "the next mount would)%s%s\n", f->image, f->nlisted,
			       f->nlisted == 1 ? "" : "s",
			       f->rec.flags ? "; the superblock's error record stays until the "
					      "next fsck run" : "",
			       f->log_zeroed ? "; the log was zeroed (-L)" : "");
			return FSCK_EXIT_FIXED;
		}
		if (f->rec.flags && (f->dry_run || f->readonly)) {
			note = "; the superblock still records errors (not cleared: run fsck "
			       "without -n)";
		} else if (f->rec.flags) {
			err = fsck_write_primary_sb(f, true, icount, ifree, fdblocks, 0);
			if (err) {
				printf("%s: clean, but clearing the superblock's error record "
				       "failed: %s\n", f->image, fsck_errstr(err));
				return FSCK_EXIT_OPERR;
			}
			note = "; the superblock's error record was cleared";
		}
		printf("%s: clean, %" PRIu64 "/%" PRIu64 " inodes, %" PRIu64 "/%" PRIu64
		       " blocks%s%s\n", f->image, icount - ifree, icount,
		       f->mp->dblocks - fdblocks, f->mp->dblocks, note,
		       f->log_zeroed ? "; the log was zeroed (-L)" : "");
		/* -L changed the filesystem: "corrected" (fsck(8) exit 1) */
		return f->log_zeroed ? FSCK_EXIT_FIXED : FSCK_EXIT_OK;
	}
	fix_list(f, what, sizeof(what));
	if (f->dry_run || f->readonly) {
		printf("%s: %" PRIu64 " error%s found that repair corrects (%s); %s: nothing "
		       "written\n", f->image, f->ncounter + f->nrebuild,
		       f->ncounter + f->nrebuild == 1 ? "" : "s", what, fsck_nowrite_reason(f));
		return FSCK_EXIT_UNCORRECTED;
	}

	/* repair: inodes, AG headers, then the superblock (clean) last */
	err = fsck_fix_inodes(f);
	if (!err && f->nrebuild)   /* writes every AG header, counters included */
		err = fsck_rebuild_ags(f, &icount, &ifree, &fdblocks);
	else if (!err)
		err = fsck_fix_ag_counters(f);
	if (!err)   /* after the inobt marks them free; before any mount */
		err = fsck_clear_inodes(f);
	if (!err)
		err = fsck_write_primary_sb(f, true, icount, ifree, fdblocks, 0);
	if (!err && (f->norphans || f->nlisted))
		err = fsck_free_orphans(f); /* its mount frees the listed ones too */
	if (!err)
		err = fsck_fix_forks(f);
	if (!err)
		err = fsck_fix_dirs(f);
	if (err) {
		printf("%s: repair failed: %s (%s may be partly written)\n", f->image,
		       fsck_errstr(err), what);
		return left_uncorrected(f, f->ncounter + f->nrebuild, "the repair did not complete");
	}

	/* trust but verify: check again, quietly, before saying "corrected" */
	{
		struct fsck v = { .prog = f->prog, .image = f->image, .dry_run = true,
				  .quiet = true, .lock_fd = f->lock_fd, .own_lock_fd = false };
		uint64_t ic, ifr, fdb, left;
		bool cok;

		rc = check_all(&v, &ic, &ifr, &fdb, &cok);
		/* a record now means the orphan frees met corruption */
		left = v.nerrors + v.ncounter + v.nrebuild + (v.rec.flags != 0);
		fsck_free(&v);
		if (rc == FSCK_EXIT_OPERR)
			return rc;
		if (rc || left) {
			char why[640];

			snprintf(why, sizeof(why), "repair wrote %s, but a second check still "
				 "finds these; run fsck -n to list them", what);
			return left_uncorrected(f, left ? left : 1, why);
		}
	}
	printf("%s: %" PRIu64 " error%s corrected (%s); the filesystem now checks clean%s\n",
	       f->image, f->ncounter + f->nrebuild, f->ncounter + f->nrebuild == 1 ? "" : "s", what,
	       f->rec.flags ? "; the superblock's error record was cleared" : "");
	return FSCK_EXIT_FIXED;
}

/*
 * reflinkfs fsck [-n] [-v] [-L] IMAGE.  argv[0] is "fsck".  Returns the fsck(8)
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
	while ((c = getopt_long(argc, argv, "nvLypafh", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			f.dry_run = true;
			break;
		case 'v':
			f.verbose = true;
			break;
		case 'L':
			f.zero_log = true;
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
	if (f.zero_log && f.dry_run) {
		fprintf(stderr, "%s: -L writes a new log: not with -n\n", argv[0]);
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

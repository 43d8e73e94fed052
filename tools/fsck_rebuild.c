/*
 * fsck_rebuild.c: fsck phase 6 repair of the per-AG trees, the way
 * xfs_repair's phase 5 works (xfsprogs repair/phase5.c, agbtree.c): every
 * AG's free-space btrees (bnobt, cntbt), inode btree, refcount btree
 * (REFLINK) and rmap btree (RMAP) are made anew from what the check
 * observed, bulk-loaded bottom-up (lib/btree_bload.c), with a fresh AGFL
 * and recomputed AG header counters; then the superblock counters.
 *
 * Sources (struct fsck, filled by phases 1-5):
 *   kept claims   every claim that is not free space, the AGFL, a leaked
 *                 CoW staging extent or a block of one of the rebuilt
 *                 trees: superblock, AG header, AGFL block, inode chunks,
 *                 the log, everything inodes own (data, bmbt, directory
 *                 and xattr blocks, symlink targets)
 *   bnobt/cntbt   the complement of the kept claims and the new trees'
 *                 own blocks (and the new AGFL's)
 *   inobt         the chunks of the old inobt (f->chunks, free masks as
 *                 read; phase 3 checked them against every inode's mode),
 *                 which is why a damaged inobt is not ours to fix
 *   refcountbt    per block, the number of data-fork mappings (f->dclaims);
 *                 runs mapped 2 or more times, merged when the count is
 *                 equal.  Leaked CoW staging extents are dropped (freed): no
 *                 CoW fork exists on an unmounted image
 *   rmapbt        every kept claim plus the new blocks, with the special
 *                 owners of SPEC §17, merged as the library merges
 *                 (fsck_rmap_expected, the same list the check compares)
 *
 * Which AGs: all of them, as xfs_repair (simpler, and the result does not
 * depend on which AG a finding was reported in; a second run rebuilds the
 * same trees, and the check before it finds nothing).  When: only if every
 * finding is either a counter or a rebuild finding (RB_BEGIN in the
 * checkers), and the claims are complete: no inode metadata unreadable,
 * every AG header and inobt read cleanly (fsck_rebuild_possible).
 * Otherwise nothing is rebuilt: a block no one was seen to own might
 * belong to a file whose bmbt is damaged, and would be given away.
 *
 * Where the new blocks come from: blocks free in the new view (not kept)
 * and in the old one: inside a free extent of the old bnobt when that was
 * read cleanly, else merely claimed by nothing that is being replaced (no
 * old tree block, AGFL entry or staging extent).  So until the AG header
 * switches to the new roots, the old trees are intact.  An AG too full for
 * that (its old trees take about as many blocks as the new ones, and the
 * free space left may be less) puts its new AGFL on old tree blocks (the
 * AGFL's entries are not written) and, if the trees still need more,
 * writes them over blocks of its old bnobt, cntbt, refcountbt, AGFL and
 * staging extents (CAND_OLD_TREE), then of its old rmapbt if no other
 * repair reads it (CAND_OLD_RMAP; never the old inobt), marks the
 * superblock's error record first and says so: a crash in its window
 * leaves damage the next fsck rebuilds rather than an AG that cannot be
 * repaired.
 *
 * How it is written: fsck's bare mount has no log (the log was replayed or
 * found clean before the check, so nothing in it is newer than the disk),
 * so the blocks go in place.  Per AG: the new tree blocks in one
 * transaction, committed and flushed; then the AGFL, its new entries in
 * ring slots the old header does not use (the old ring's slots kept),
 * flushed; then the AG header, flushed: that one-block write is the
 * switch, as XFS's repair writes the AGFL before the AGF.  The superblock
 * last (by the caller).  New blocks get LSN 0 as mkfs's do: the next
 * mount finds a clean log, and any later checkpoint has a larger LSN, so
 * recovery never puts older contents over them.  A crash before a header
 * is written leaves that AG as it was, old trees, old AGFL ring (the next
 * fsck rebuilds again); after it the AG is whole and new.  rlfs-crashtest
 * --mode repair cuts the rebuild at every write and tears each flush
 * window (docs/DESIGN.md "Crashes during fsck repair").
 */
#include "fsck_int.h"
#include "btree_bload.h"

/* Claims the rebuild replaces (not kept). */
static bool replaced_kind(uint8_t kind)
{
	switch (kind) {
	case CL_FREE: case CL_AGFL: case CL_BNOBT: case CL_CNTBT: case CL_INOBT:
	case CL_REFCBT: case CL_RMAPBT: case CL_STAGING:
		return true;
	}
	return false;
}

/*
 * RMAP: inode chunks the rmapbt records (OWN_INODES) but the inobt does
 * not (a lost inobt record): added to f->chunks as recovered (phase 3 reads
 * their inodes and sets the free mask from the modes) and claimed, so the
 * rebuild puts them back in the inobt.  Only from AGs whose header, inobt
 * and rmapbt walked cleanly, and only with at most 64 inodes a block (a
 * chunk is then whole blocks).  Each is a rebuild finding.  Issue 11 §4
 * ("inode btree from chunk rmaps").
 */
/*
 * An AG whose inobt could not be walked (a damaged block, a bad record)
 * but whose header and rmapbt checked clean: forget what the walk found
 * (its chunks and their claims), turn its findings into rebuild findings,
 * and let the loop below take every chunk from the OWN_INODES records.
 * Model: xfs_repair, which finds inode chunks by the rmap when the inobt
 * is damaged (and by a scan without one).  Issue 11 section 4.
 */
static void inobt_from_rmap(struct fsck *f, uint32_t agno)
{
	struct rlfs_mount *mp = f->mp;
	struct ag_info *ai = &f->ags[agno];
	size_t n = 0;

	for (size_t i = 0; i < f->nchunks; i++)
		if (rlfs_fsb_to_agno(mp, rlfs_ino_to_fsb(mp, f->chunks[i].startino)) != agno)
			f->chunks[n++] = f->chunks[i];
	f->nchunks = n;
	/* the AG's claims without its inode chunks (phase 2: only this AG's
	 * bucket is touched, and no mark is held) */
	struct claim *cl;
	size_t ncl;

	if (fsck_store_load(f, &f->claims, agno, false, &cl, &ncl))
		return;
	fsck_claims_clear(&f->claims, agno);
	for (size_t i = 0; i < ncl; i++)
		if ((cl[i].kind != CL_ICHUNK || cl[i].owner != agno) &&
		    fsck_store_add(f, &f->claims, agno, &cl[i]))
			break;
	free(cl);
	if (f->oom)
		return;
	f->nerrors -= ai->ino_nerrors;
	f->nrebuild += ai->ino_nerrors;
	ai->icount = ai->ifree = 0;
	ai->ino_ok = true;
	ai->ino_rmap = true;
	ai->trees_ok = ai->trees_ok_but_ino;
	RB_BEGIN(f);
	ERR(f, "AG %u (inobt): damaged; its inode chunks are taken from the rmapbt's "
	    "OWN_INODES records (the inodes say which are in use) and the rebuild makes "
	    "it anew", agno);
	RB_END(f);
}

static void recover_ag_chunks(struct fsck *f, const struct claim *irm, size_t nirm,
			      size_t n0);

void fsck_recover_chunks(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	size_t n0;

	if (!f->irmaps.total || mp->inopblock > RLFS_INODES_PER_CHUNK)
		return;
	for (uint32_t agno = 0; agno < mp->agcount && !f->oom; agno++) {
		struct ag_info *ai = &f->ags[agno];

		if (ai->hdr_ok && ai->rmap_ok && !ai->ino_ok && ai->ino_nerrors &&
		    ai->ino_nerrors <= f->nerrors)
			inobt_from_rmap(f, agno);
	}
	n0 = f->nchunks;
	fsck_xsort(f->chunks, f->nchunks, sizeof(*f->chunks), fsck_cmp_chunk);
	/* one AG's OWN_INODES records at a time, in the rmapbt's order */
	for (uint32_t agno = 0; agno < mp->agcount && !f->oom; agno++) {
		struct ag_info *ai = &f->ags[agno];
		struct claim *irm;
		size_t nirm;

		if (!ai->hdr_ok || !ai->ino_ok || !ai->rmap_ok)
			continue;
		if (fsck_store_load(f, &f->irmaps, agno, false, &irm, &nirm))
			return;
		recover_ag_chunks(f, irm, nirm, n0);
		free(irm);
	}
	fsck_xsort(f->chunks, f->nchunks, sizeof(*f->chunks), fsck_cmp_chunk);
}

/* Chunks of the OWN_INODES records irm[0..nirm) of one AG that the
 * inobt's chunks f->chunks[0..n0) (sorted) lack: added as recovered and
 * claimed. */
static void recover_ag_chunks(struct fsck *f, const struct claim *irm, size_t nirm, size_t n0)
{
	struct rlfs_mount *mp = f->mp;

	for (size_t i = 0; i < nirm && !f->oom; i++) {
		const struct claim *r = &irm[i];
		const struct ag_info *ai = &f->ags[r->owner];
		uint64_t end = r->start + r->len;

		for (uint64_t fsb = r->start; fsb + mp->chunk_blocks <= end; fsb++) {
			uint64_t startino;
			size_t lo = 0, hi = n0;
			bool found = false;

			if (fsb % mp->chunk_blocks)
				continue;
			startino = rlfs_fsb_to_ino(mp, fsb, 0);
			while (lo < hi && !found) {   /* the inobt's chunks only */
				size_t mid = lo + (hi - lo) / 2;

				if (f->chunks[mid].startino == startino)
					found = true;
				else if (f->chunks[mid].startino < startino)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (found)
				continue;
			if (ai->ino_rmap) {
				fsck_verbose(f, "%s (inobt): inode chunk %" PRIu64 " from the rmapbt",
					     fsck_loc(f, fsb).s, startino);
			} else {
				RB_BEGIN(f);
				ERR(f, "%s (inobt): inode chunk %" PRIu64 " is in the rmapbt "
				    "(OWN_INODES) but not in the inobt: its inodes are checked, the "
				    "rebuild adds it back", fsck_loc(f, fsb).s, startino);
				RB_END(f);
			}
			struct chunk *nc = fsck_grow(f, f->chunks, &f->chunks_cap, f->nchunks,
						     sizeof(*nc));
			if (!nc)
				return;
			f->chunks = nc;
			f->chunks[f->nchunks++] = (struct chunk){ .startino = startino,
								  .recovered = true };
			fsck_add_claim(f, CL_ICHUNK, r->owner, startino, fsb, mp->chunk_blocks);
		}
	}
}

/*
 * May the AG trees be rebuilt?  Only when every finding other than the
 * counter kind is one the rebuild corrects (f->nerrors == 0), no inode
 * metadata was unreadable, and every AG header and inobt walked cleanly:
 * otherwise the claims may be incomplete and a rebuild could hand a file's
 * blocks out as free space.  false with *why a short reason (for the
 * "left uncorrected" line); true with *why NULL.
 */
bool fsck_rebuild_possible(struct fsck *f, const char **why)
{
	*why = NULL;
	if (f->nerrors)
		*why = "other damage (listed above) is not the AG trees'";
	else if (f->incomplete || f->dirs_incomplete)
		*why = "some inode metadata could not be read: owners of blocks unknown";
	for (uint32_t a = 0; !*why && a < f->mp->agcount; a++)
		if (!f->ags[a].hdr_ok || !f->ags[a].ino_ok)
			*why = "an AG header or inode btree is damaged";
	return *why == NULL;
}

struct ext {
	uint32_t start, len;
};

struct refcrec {
	uint32_t start, len, rc;
};

/* One AG's rebuild state. */
struct rb {
	struct fsck *f;
	struct rlfs_mount *mp;
	uint32_t agno, len;
	uint64_t ag0;
	uint8_t *used;              /* per agbno: kept claim */
	uint8_t *cand;              /* per agbno: may take a new block (CAND_*) */
	bool reused_old;            /* some new tree blocks are old tree blocks */
	size_t nreused;             /* how many (tree_blocks_ok) */
	struct claim *kept;         /* kept claims in the AG (+ new blocks) */
	size_t nkept, kept_cap;
	struct claim *dcl;          /* data-fork mappings in the AG */
	size_t ndcl, dcl_cap;
	struct rlfs_inobt_rec *ino;
	size_t nino;
	struct refcrec *refc;
	size_t nrefc, refc_cap;
	struct ext *fr;             /* free extents, by start */
	size_t nfr, fr_cap;
	struct ext *frc;            /* the same by (len, start) */
	struct rlfs_rmap_irec *rm;
	size_t nrm;
	struct rlfs_rmap_irec *rm_base; /* the kept claims' records (have_base) */
	size_t nrm_base;
	bool have_base;
	uint32_t *newb;             /* reserved blocks, best kind first (reserve):
				     * the trees take newb[0..ntree), the AGFL
				     * the rest */
	size_t nnew;
	/* geometry */
	struct rlfs_bload bl[5];    /* ino, refc, bno, cnt, rmap */
	bool have[5];
	uint64_t ntree;             /* blocks of all trees */
	uint32_t flcount;
	/* loading */
	size_t next_blk, next_rec;
	int tree;
	uint64_t icount, ifree, freeblks;
	uint32_t longest;
};

enum { T_INO, T_REFC, T_BNO, T_CNT, T_RMAP, T_NR };

/*
 * Where a new block may come from, best first (reserve); the trees take the
 * best ones, the new AGFL the rest.  The AGFL is written before the header
 * switches, but only in ring slots the old header does not use, and its
 * entries' blocks are not written at all: any block no kept claim uses can
 * be an AGFL entry.  Tree blocks are written before the switch, so:
 *   CAND_FREE      free in the new view and in the old bnobt (or the old
 *                  bnobt was not read cleanly): the old trees stay intact
 *   CAND_LOST      free in the new view, claimed by nothing the rebuild
 *                  replaces (leaked blocks, free space the old bnobt lost)
 *   CAND_OLD_TREE  a block of an old bnobt, cntbt or refcountbt, the old
 *                  AGFL or a leaked staging extent: a tree block only when
 *                  an AG is too full for its new trees otherwise (the old
 *                  trees take about as many blocks as the new ones).  A
 *                  crash before the AG header switches then leaves an old
 *                  tree with foreign blocks; the next check reports it as
 *                  damage the rebuild corrects, and rebuilds again (the
 *                  superblock's error record is marked first, so that a
 *                  mount in between warns).
 *   CAND_OLD_RMAP  a block of the old rmapbt: a tree block only when no
 *                  other repair of this run reads the rmapbt
 *                  (rmap_reusable): after a cut the next check would need
 *                  it to rebuild forks, inode chunks or directories.
 *   CAND_OLD_INOBT a block of the old inobt: never a tree block (the next
 *                  check needs its chunks).
 * plan() checks which kinds the trees got (tree_blocks_ok).
 */
enum { CAND_NO, CAND_OLD_INOBT, CAND_OLD_RMAP, CAND_OLD_TREE, CAND_LOST, CAND_FREE };

/*
 * May the old rmapbt's blocks be reused (CAND_OLD_RMAP)?  Only when no
 * repair of this run takes anything from the rmapbt: no data fork rebuilt
 * from it, no directory rebuilt (its blocks are found through it), no
 * inode cleared or lost file linked (their blocks and names are checked
 * against it), no AG's chunks taken from it (ino_rmap) and no chunk the
 * inobt lost found again in it (recovered).  A cut would leave the next
 * run the same work without its source.
 */
static bool rmap_reusable(const struct fsck *f)
{
	if (f->nlost || f->ndirrebuilds || f->ncleared || f->nlostinos || f->ndfixes)
		return false;
	for (uint32_t a = 0; a < f->mp->agcount; a++)
		if (f->ags[a].ino_rmap)
			return false;
	for (size_t i = 0; i < f->nchunks; i++)
		if (f->chunks[i].recovered)   /* from an OWN_INODES record */
			return false;
	return true;
}

static void *grow(struct rb *r, void *p, size_t *cap, size_t n, size_t sz)
{
	return fsck_grow(r->f, p, cap, n, sz);
}

static int push_claim(struct rb *r, struct claim **arr, size_t *n, size_t *cap,
		      const struct claim *c)
{
	struct claim *nc = grow(r, *arr, cap, *n, sizeof(*nc));

	if (!nc)
		return -ENOMEM;
	*arr = nc;
	(*arr)[(*n)++] = *c;
	return 0;
}

/* Clip claim c to the AG: false if it lies outside. */
static bool clip(const struct rb *r, const struct claim *c, uint32_t *s, uint32_t *e)
{
	uint64_t cs = c->start, ce = c->start + c->len, agend = r->ag0 + r->len;

	if (ce <= r->ag0 || cs >= agend)
		return false;
	*s = (uint32_t)(RLFS_MAX(cs, r->ag0) - r->ag0);
	*e = (uint32_t)(RLFS_MIN(ce, agend) - r->ag0);
	return true;
}

/* Kept claims, data mappings, the used and candidate maps, from the AG's
 * buckets of the claim stores (claims never cross an AG's end), sorted by
 * start as the check sorted them. */
static int gather(struct rb *r)
{
	struct fsck *f = r->f;
	struct ag_info *ai = &f->ags[r->agno];
	uint8_t *oldfree, *oldrepl;
	struct claim *cl = NULL;
	size_t ncl = 0;
	uint32_t s, e;
	int err = 0;

	r->used = calloc(r->len, 1);
	r->cand = calloc(r->len, 1);
	oldfree = calloc(r->len, 1);
	oldrepl = calloc(r->len, 1);
	if (!r->used || !r->cand || !oldfree || !oldrepl) {
		err = -ENOMEM;
		goto out;
	}
	err = fsck_store_load(f, &f->claims, r->agno, true, &cl, &ncl);
	for (size_t i = 0; i < ncl && !err; i++) {
		const struct claim *c = &cl[i];

		if (!clip(r, c, &s, &e))
			continue;
		if (c->kind == CL_FREE) {
			memset(oldfree + s, 1, e - s);
		} else if (replaced_kind(c->kind)) {
			/* 3: the old inobt, 2: the old rmapbt, 1: another
			 * old tree (CAND_*) */
			uint8_t v = c->kind == CL_INOBT ? 3 : c->kind == CL_RMAPBT ? 2 : 1;
			for (uint32_t b = s; b < e; b++)
				oldrepl[b] = RLFS_MAX(oldrepl[b], v);
		} else {
			struct claim k = *c;

			memset(r->used + s, 1, e - s);
			k.start = r->ag0 + s;
			k.len = e - s;
			err = push_claim(r, &r->kept, &r->nkept, &r->kept_cap, &k);
		}
	}
	free(cl);
	if (!err) {
		/* the AG's data-fork mappings, as they are */
		err = fsck_store_load(f, &f->dclaims, r->agno, true, &r->dcl, &r->ndcl);
		r->dcl_cap = r->ndcl;
	}
	if (err)
		goto out;
	for (uint32_t b = 0; b < r->len; b++) {
		if (r->used[b])
			r->cand[b] = CAND_NO;
		else if (oldrepl[b] == 3)
			r->cand[b] = CAND_OLD_INOBT;
		else if (oldrepl[b] == 2)
			r->cand[b] = CAND_OLD_RMAP;
		else if (oldrepl[b])
			r->cand[b] = CAND_OLD_TREE;
		else
			r->cand[b] = !ai->bno_ok || oldfree[b] ? CAND_FREE : CAND_LOST;
	}
out:
	free(oldfree);
	free(oldrepl);
	return err;
}

/* inobt records of the AG's chunks, by startino. */
static int gather_inodes(struct rb *r)
{
	struct fsck *f = r->f;
	struct rlfs_mount *mp = r->mp;
	size_t n = 0;

	r->ino = calloc(f->nchunks ? f->nchunks : 1, sizeof(*r->ino));
	if (!r->ino)
		return -ENOMEM;
	fsck_xsort(f->chunks, f->nchunks, sizeof(*f->chunks), fsck_cmp_chunk);
	for (size_t i = 0; i < f->nchunks; i++) {
		const struct chunk *c = &f->chunks[i];
		uint64_t fsb = rlfs_ino_to_fsb(mp, c->startino);
		unsigned nfree = (unsigned)__builtin_popcountll(c->free);

		if (rlfs_fsb_to_agno(mp, fsb) != r->agno)
			continue;
		if (n && rlfs_get64(r->ino[n - 1].startino) == c->startino)
			continue;
		memset(&r->ino[n], 0, sizeof(r->ino[n]));
		rlfs_put64(r->ino[n].startino, c->startino);
		rlfs_put32(r->ino[n].freecount, nfree);
		rlfs_put64(r->ino[n].free, c->free);
		r->icount += RLFS_INODES_PER_CHUNK;
		r->ifree += nfree;
		n++;
	}
	r->nino = n;
	return 0;
}

struct ev {
	uint32_t pos;
	int delta;
};

static int cmp_ev(const void *a, const void *b)
{
	const struct ev *x = a, *y = b;

	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* refcount records: blocks mapped by 2 or more data forks. */
static int gather_refc(struct rb *r)
{
	struct ev *ev = malloc((2 * r->ndcl + 1) * sizeof(*ev));
	size_t nev = 0;
	int64_t depth = 0;

	if (!ev)
		return -ENOMEM;
	for (size_t i = 0; i < r->ndcl; i++) {
		uint32_t s = (uint32_t)(r->dcl[i].start - r->ag0);

		ev[nev++] = (struct ev){ s, 1 };
		ev[nev++] = (struct ev){ s + r->dcl[i].len, -1 };
	}
	fsck_xsort(ev, nev, sizeof(*ev), cmp_ev);
	for (size_t i = 0; i < nev;) {
		uint32_t pos = ev[i].pos;

		while (i < nev && ev[i].pos == pos)
			depth += ev[i++].delta;
		if (depth >= 2 && i < nev) {
			uint32_t rc = depth > (int64_t)RLFS_REFC_REFCOUNT_MAX ?
				      RLFS_REFC_REFCOUNT_MAX : (uint32_t)depth;
			uint32_t end = ev[i].pos;
			struct refcrec *last = r->nrefc ? &r->refc[r->nrefc - 1] : NULL;

			if (last && last->start + last->len == pos && last->rc == rc) {
				last->len += end - pos;
				continue;
			}
			struct refcrec *nr = grow(r, r->refc, &r->refc_cap, r->nrefc, sizeof(*nr));
			if (!nr) {
				free(ev);
				return -ENOMEM;
			}
			r->refc = nr;
			r->refc[r->nrefc++] = (struct refcrec){ pos, end - pos, rc };
		}
	}
	free(ev);
	return 0;
}

/* Free extents: the complement of the kept claims and the reserved blocks. */
static int compute_free(struct rb *r)
{
	uint8_t *u = malloc(r->len);

	if (!u)
		return -ENOMEM;
	memcpy(u, r->used, r->len);
	for (size_t i = 0; i < r->nnew; i++)
		u[r->newb[i]] = 1;
	r->nfr = 0;
	r->freeblks = 0;
	r->longest = 0;
	for (uint32_t b = 0; b < r->len;) {
		uint32_t e = b;

		if (u[b]) {
			b++;
			continue;
		}
		while (e < r->len && !u[e])
			e++;
		struct ext *ne = grow(r, r->fr, &r->fr_cap, r->nfr, sizeof(*ne));
		if (!ne) {
			free(u);
			return -ENOMEM;
		}
		r->fr = ne;
		r->fr[r->nfr++] = (struct ext){ b, e - b };
		r->freeblks += e - b;
		if (e - b > r->longest)
			r->longest = e - b;
		b = e;
	}
	free(u);
	return 0;
}

/* Block counts of the trees for the current record counts. */
static int geometry(struct rb *r)
{
	static const struct rlfs_btree_ops *const ops[T_NR] = {
		&rlfs_inobt_ops, &rlfs_refcountbt_ops, &rlfs_bnobt_ops, &rlfs_cntbt_ops,
		&rlfs_rmapbt_ops,
	};
	uint64_t n[T_NR] = { r->nino, r->nrefc, r->nfr, r->nfr, r->nrm };
	int err;

	r->ntree = 0;
	for (int t = 0; t < T_NR; t++) {
		if (!r->have[t])
			continue;
		memset(&r->bl[t], 0, sizeof(r->bl[t]));
		r->bl[t].ops = ops[t];
		r->bl[t].agno = r->agno;
		/* full blocks, as xfs_repair's phase 5, less two slots
		 * for the first inserts after mount */
		r->bl[t].leaf_slack = r->bl[t].node_slack = -1;
		err = rlfs_btree_bload_compute_geometry(r->mp, &r->bl[t], n[t]);
		if (err)
			return err;
		r->ntree += r->bl[t].nblocks;
	}
	return 0;
}

/*
 * rmap records for the kept claims plus the reserved blocks (inobt blocks
 * first, then refcountbt, then OWN_AG: bnobt, cntbt, rmapbt and AGFL).
 * The kept claims and data-fork mappings do not change while plan()
 * iterates: their records (nearly all of them) are computed once, in
 * r->rm_base; each call computes only the reserved blocks' records and
 * merges the two sorted lists.  No record of one list can merge with one
 * of the other: the reserved blocks' owners (OWN_INOBT, OWN_REFC, OWN_AG)
 * own nothing among the kept claims (their trees and the AGFL are
 * replaced), and a reserved block overlaps no kept claim.
 */
static int compute_rmaps(struct rb *r)
{
	uint64_t nino = r->have[T_INO] ? r->bl[T_INO].nblocks : 0;
	uint64_t nrefc = r->have[T_REFC] ? r->bl[T_REFC].nblocks : 0;
	struct rlfs_rmap_irec *nw = NULL;
	struct claim *all;
	size_t nnw = 0, i = 0, j = 0, k = 0;
	int err;

	if (!r->have[T_RMAP])
		return 0;
	if (!r->have_base) {
		fsck_xsort(r->kept, r->nkept, sizeof(*r->kept), fsck_cmp_claim);
		fsck_xsort(r->dcl, r->ndcl, sizeof(*r->dcl), fsck_cmp_claim);
		err = fsck_rmap_expected(r->f, r->agno, r->kept, r->nkept, r->dcl, r->ndcl,
					 r->f->reflink, &r->rm_base, &r->nrm_base);
		if (err)
			return err;
		r->have_base = true;
	}
	all = malloc((r->nnew + 1) * sizeof(*all));
	if (!all)
		return -ENOMEM;
	for (size_t b = 0; b < r->nnew; b++) {
		struct claim c = { .start = r->ag0 + r->newb[b], .owner = r->agno, .len = 1 };

		c.kind = b < nino ? CL_INOBT : b < nino + nrefc ? CL_REFCBT : CL_BNOBT;
		all[b] = c;
	}
	fsck_xsort(all, r->nnew, sizeof(*all), fsck_cmp_claim);
	err = fsck_rmap_expected(r->f, r->agno, all, r->nnew, NULL, 0, r->f->reflink, &nw, &nnw);
	free(all);
	if (err)
		return err;
	free(r->rm);
	r->nrm = r->nrm_base + nnw;
	r->rm = malloc((r->nrm + 1) * sizeof(*r->rm));
	if (!r->rm) {
		free(nw);
		return -ENOMEM;
	}
	while (i < r->nrm_base || j < nnw) {
		if (j >= nnw || (i < r->nrm_base && fsck_cmp_rmap(&r->rm_base[i], &nw[j]) <= 0))
			r->rm[k++] = r->rm_base[i++];
		else
			r->rm[k++] = nw[j++];
	}
	free(nw);
	return 0;
}

/* Take the first n candidate blocks, best kind (CAND_*) first and in
 * that order (not sorted by agbno): the trees are loaded into the first
 * ones, and the AGFL, which is not written before the header switches,
 * gets the worst. */
static int reserve(struct rb *r, size_t n)
{
	free(r->newb);
	r->newb = malloc((n ? n : 1) * sizeof(*r->newb));
	r->nnew = 0;
	if (!r->newb)
		return -ENOMEM;
	/* testing (rlfs-crashtest --damage agrmap): the old rmapbt's blocks
	 * first where they may be written over, to cut that case too */
	const char *e = getenv("RLFS_FSCK_REBUILD_OLD_RMAP_FIRST");
	bool rmap_first = e && *e == '1' && rmap_reusable(r->f);
	for (uint32_t b = 0; rmap_first && b < r->len && r->nnew < n; b++)
		if (r->cand[b] == CAND_OLD_RMAP)
			r->newb[r->nnew++] = b;
	for (uint8_t want = CAND_FREE; want >= CAND_OLD_INOBT && r->nnew < n; want--)
		for (uint32_t b = 0; b < r->len && r->nnew < n; b++)
			if (r->cand[b] == want && !(rmap_first && want == CAND_OLD_RMAP))
				r->newb[r->nnew++] = b;
	return r->nnew == n ? 0 : -ENOSPC;
}

/*
 * May the trees be written into newb[0..ntree)?  Not over the old inobt,
 * nor over the old rmapbt while another repair reads it (CAND_*); notes in
 * r->reused_old whether old tree blocks are written over.  0 or -ENOSPC.
 */
static int tree_blocks_ok(struct rb *r)
{
	bool rmap_ok = rmap_reusable(r->f);

	r->nreused = 0;
	for (size_t i = 0; i < r->ntree; i++) {
		uint8_t c = r->cand[r->newb[i]];

		if (c == CAND_OLD_INOBT || (c == CAND_OLD_RMAP && !rmap_ok))
			return -ENOSPC;
		r->nreused += c <= CAND_OLD_TREE;
	}
	r->reused_old = r->nreused > 0;
	return 0;
}

/*
 * Find a block count that is stable: reserve R blocks, compute the free
 * extents and rmap records that leaves, the trees' geometry, and again
 * until the trees and the AGFL minimum fit in R.  Blocks reserved beyond
 * the trees' need go on the AGFL (up to its size).
 */
static int plan(struct rb *r)
{
	unsigned flmin = rlfs_agfl_min(r->mp), flmax = rlfs_agfl_size(r->mp);
	size_t R;
	int err;

	r->nnew = 0;
	err = compute_free(r);
	if (!err)
		err = geometry(r);
	if (!err)
		err = compute_rmaps(r);
	if (!err)
		err = geometry(r);
	if (err)
		return err;
	R = r->ntree + flmin;
	for (int iter = 0; iter < 32; iter++) {
		err = reserve(r, R);
		if (!err)
			err = compute_free(r);
		if (!err)
			err = compute_rmaps(r);
		if (!err)
			err = geometry(r);
		if (err)
			return err;
		size_t need = r->ntree + flmin;
		if (need <= R && R - r->ntree <= flmax) {
			r->flcount = (uint32_t)(R - r->ntree);
			return tree_blocks_ok(r);
		}
		R = need > R ? need : R - 1;
	}
	return -EAGAIN;
}

/* ---- loading ---- */

static int claim_fn(void *priv, uint64_t *fsbno)
{
	struct rb *r = priv;

	if (r->next_blk >= r->nnew)
		return -ENOSPC;
	*fsbno = r->ag0 + r->newb[r->next_blk++];
	return 0;
}

static int cmp_ext_cnt(const void *a, const void *b)
{
	const struct ext *x = a, *y = b;

	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->start < y->start ? -1 : x->start > y->start;
}

static int rec_fn(void *priv, void *rec)
{
	struct rb *r = priv;
	size_t i = r->next_rec++;

	switch (r->tree) {
	case T_INO:
		if (i >= r->nino)
			return -ERANGE;
		memcpy(rec, &r->ino[i], sizeof(r->ino[i]));
		return 0;
	case T_REFC: {
		struct rlfs_refcount_rec x;

		if (i >= r->nrefc)
			return -ERANGE;
		rlfs_put32(x.startblock, r->refc[i].start);
		rlfs_put32(x.blockcount, r->refc[i].len);
		rlfs_put32(x.refcount, r->refc[i].rc);
		memcpy(rec, &x, sizeof(x));
		return 0;
	}
	case T_BNO: case T_CNT: {
		struct rlfs_alloc_rec x;
		const struct ext *e = r->tree == T_BNO ? r->fr : r->frc;

		if (i >= r->nfr)
			return -ERANGE;
		rlfs_put32(x.startblock, e[i].start);
		rlfs_put32(x.blockcount, e[i].len);
		memcpy(rec, &x, sizeof(x));
		return 0;
	}
	default: {
		struct rlfs_rmap_rec x;

		if (i >= r->nrm)
			return -ERANGE;
		rlfs_rmap_rec_encode(&r->rm[i], &x);
		memcpy(rec, &x, sizeof(x));
		return 0;
	}
	}
}

/* Whether slot i of an AGFL of size slots is in the ring of header h. */
static bool agfl_old_slot(const struct rlfs_agh *h, unsigned size, unsigned i)
{
	uint32_t first = rlfs_get32(h->flfirst), count = rlfs_get32(h->flcount);

	return count && (i + size - first) % size < count;
}

/*
 * Where the new AGFL ring starts: right after the old header's ring, so
 * that the two rings share no slot, when the old AGFL block (old, its
 * on-disk bytes) is whole (magic, crc, agno), the old ring sane and both
 * rings fit; *keep then says to leave the old ring's slots as they are.
 * Otherwise slot 0 and *keep false: the old view's AGFL is broken already.
 */
static uint32_t agfl_new_ring(const struct rb *r, const void *old, bool *keep)
{
	const struct rlfs_agh *h = &r->f->ags[r->agno].agh;
	const struct rlfs_agfl *agfl = old;
	unsigned size = rlfs_agfl_size(r->mp);
	uint32_t first = rlfs_get32(h->flfirst), last = rlfs_get32(h->fllast);
	uint32_t count = rlfs_get32(h->flcount);
	const rlfs_le32 *slots = (const rlfs_le32 *)((const char *)old + sizeof(*agfl));

	*keep = rlfs_get32(agfl->hdr.magic) == RLFS_AGFL_MAGIC &&
		rlfs_cksum_verify(old, r->mp->blocksize, RLFS_CRC_OFF) &&
		rlfs_get32(agfl->agno) == r->agno && first < size && last < size &&
		count <= size && (last + size - first) % size + 1 == (count ? count : size) &&
		count + r->flcount <= size;
	/* entries kept must pass the AGFL verifier (lib/alloc.c) at the write */
	for (uint32_t i = 0; *keep && i < count; i++) {
		uint32_t b = rlfs_get32(slots[(first + i) % size]);

		*keep = b > RLFS_AGFL_AGBNO && b < r->len;
	}
	return *keep ? (last + 1) % size : 0;
}

/* A new fsck transaction (*tpp) holding AG agno's header block agbno
 * (AGFL, AG header) as it is on disk (fsck_get_raw_buf): the next step of
 * write_ag's ordered writes, on mp (the rebuild's mount).  0 or -errno,
 * nothing held on error. */
static int raw_header(struct fsck *f, struct rlfs_mount *mp, uint32_t agno, uint32_t agbno,
		      const struct rlfs_buf_ops *ops, struct rlfs_trans **tpp,
		      struct rlfs_buf **bpp)
{
	int err = rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, tpp);
	if (err)
		return err;
	err = fsck_get_raw_buf(f, *tpp, rlfs_agb_to_fsb(mp, agno, agbno), ops, agno, bpp);
	if (err)
		rlfs_trans_cancel(*tpp);
	return err;
}

/* Commit tp and write every dirty buffer in place, flushed: one step of
 * write_ag's ordered writes.  0 or the first -errno. */
static int commit_flush(struct rlfs_mount *mp, struct rlfs_trans *tp)
{
	int err = rlfs_trans_commit(tp);
	return err ? err : rlfs_buf_flush_all(mp);
}

/* Write the new trees (one transaction), then the AGFL, then the AG
 * header (the switch), each flushed before the next. */
static int write_ag(struct rb *r)
{
	struct fsck *f = r->f;
	struct rlfs_mount *mp = r->mp;
	struct ag_info *ai = &f->ags[r->agno];
	uint64_t root[T_NR] = { 0 };
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	uint32_t flfirst;
	int err;

	r->frc = malloc((r->nfr ? r->nfr : 1) * sizeof(*r->frc));
	if (!r->frc)
		return -ENOMEM;
	memcpy(r->frc, r->fr, r->nfr * sizeof(*r->fr));
	fsck_xsort(r->frc, r->nfr, sizeof(*r->frc), cmp_ext_cnt);

	err = rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp);
	if (err)
		return err;
	r->next_blk = 0;
	for (int t = 0; t < T_NR && !err; t++) {
		if (!r->have[t])
			continue;
		r->tree = t;
		r->next_rec = 0;
		r->bl[t].get_rec = rec_fn;
		r->bl[t].claim_block = claim_fn;
		r->bl[t].priv = r;
		err = rlfs_btree_bload(tp, &r->bl[t]);
		root[t] = r->bl[t].root_fsbno;
	}
	if (err) {
		rlfs_trans_cancel(tp);
		return err;
	}
	err = commit_flush(mp, tp);
	if (err)
		return err;

	/*
	 * The AGFL: the remaining reserved blocks, in ring slots the old
	 * header does not use (agfl_new_ring), written and flushed before
	 * the header, so that until the header switches the old view is
	 * whole (old ring, old entries) and after it the new one; the
	 * header alone (one block, one sector) is the switch, as XFS's
	 * repair writes the AGFL before the AGF.  A torn pair (a new header
	 * over the old AGFL or the reverse) left a healthy AG with AGFL
	 * entries the free-space trees also list (rlfs-crashtest --mode
	 * repair --damage lastag).
	 */
	err = raw_header(f, mp, r->agno, RLFS_AGFL_AGBNO, &rlfs_agfl_buf_ops, &tp, &bp);
	if (err)
		return err;
	{
		struct rlfs_agfl *agfl = bp->data;
		rlfs_le32 *slots = (rlfs_le32 *)((char *)bp->data + sizeof(struct rlfs_agfl));
		unsigned size = rlfs_agfl_size(mp);
		bool keep;

		flfirst = agfl_new_ring(r, bp->data, &keep);
		if (!keep) {    /* the old ring is unusable anyway: a fresh block */
			memset(bp->data, 0, mp->blocksize);
			rlfs_blkhdr_init(mp, bp->data, RLFS_AGFL_MAGIC, bp->fsbno, r->agno);
		}
		rlfs_put32(agfl->agno, r->agno);
		for (unsigned i = 0; i < size; i++) {
			unsigned k = (i + size - flfirst) % size;   /* new ring index */

			if (k < r->flcount)
				rlfs_put32(slots[i], r->newb[r->next_blk + k]);
			else if (!keep || !agfl_old_slot(&ai->agh, size, i))
				rlfs_put32(slots[i], 0xffffffffu);
		}
		rlfs_trans_log_buf(tp, bp);
		rlfs_trans_brelse(tp, bp);
	}
	err = commit_flush(mp, tp);
	if (err)
		return err;
	err = raw_header(f, mp, r->agno, RLFS_AGH_AGBNO, &rlfs_agh_buf_ops, &tp, &bp);
	if (err)
		return err;
	{
		struct rlfs_agh *agh = rlfs_agh(bp);
		unsigned size = rlfs_agfl_size(mp);
		uint64_t bt = r->bl[T_BNO].nblocks + r->bl[T_CNT].nblocks;

		rlfs_put32(agh->bno_root, rlfs_fsb_to_agbno(mp, root[T_BNO]));
		rlfs_put16(agh->bno_level, (uint16_t)r->bl[T_BNO].nlevels);
		rlfs_put32(agh->cnt_root, rlfs_fsb_to_agbno(mp, root[T_CNT]));
		rlfs_put16(agh->cnt_level, (uint16_t)r->bl[T_CNT].nlevels);
		rlfs_put32(agh->ino_root, rlfs_fsb_to_agbno(mp, root[T_INO]));
		rlfs_put16(agh->ino_level, (uint16_t)r->bl[T_INO].nlevels);
		if (r->have[T_REFC]) {
			rlfs_put32(agh->refc_root, rlfs_fsb_to_agbno(mp, root[T_REFC]));
			rlfs_put16(agh->refc_level, (uint16_t)r->bl[T_REFC].nlevels);
		}
		if (r->have[T_RMAP]) {
			rlfs_put32(agh->rmap_root, rlfs_fsb_to_agbno(mp, root[T_RMAP]));
			rlfs_put16(agh->rmap_level, (uint16_t)r->bl[T_RMAP].nlevels);
		}
		/* the bulk-loaded trees' sizes, roots included (AGBTCOUNT;
		 * the AG reservation is taken from them: ag_resv.h) */
		bool counts = mp->features_ro_compat & RLFS_FEAT_RO_COMPAT_AGBTCOUNT;
		rlfs_put32(agh->refc_blocks,
			   counts && r->have[T_REFC] ? (uint32_t)r->bl[T_REFC].nblocks : 0);
		rlfs_put32(agh->rmap_blocks,
			   counts && r->have[T_RMAP] ? (uint32_t)r->bl[T_RMAP].nblocks : 0);
		rlfs_put32(agh->flfirst, flfirst);
		rlfs_put32(agh->fllast, (flfirst + (r->flcount ? r->flcount : size) - 1) % size);
		rlfs_put32(agh->flcount, r->flcount);
		fsck_put_agh_counters(agh, r->freeblks, r->longest, bt - RLFS_MIN(bt, 2),
				      r->icount, r->ifree, ai->fix_unlinked);
		rlfs_trans_log_buf(tp, bp);
		rlfs_trans_brelse(tp, bp);
	}
	return commit_flush(mp, tp);
}

static void rb_free(struct rb *r)
{
	free(r->used);
	free(r->cand);
	free(r->kept);
	free(r->dcl);
	free(r->ino);
	free(r->refc);
	free(r->fr);
	free(r->frc);
	free(r->rm);
	free(r->rm_base);
	free(r->newb);
}

/* Rebuild AG agno; adds its counters to the totals.  0 or -errno. */
static int rebuild_ag(struct fsck *f, uint32_t agno, uint64_t *icount, uint64_t *ifree,
		      uint64_t *fdblocks)
{
	struct rlfs_mount *mp = f->mp;
	struct rb r = { .f = f, .mp = mp, .agno = agno, .len = rlfs_ag_blocks(mp, agno),
			.ag0 = rlfs_agb_to_fsb(mp, agno, 0) };
	char line[512];
	size_t n = 0;
	int err;

	r.have[T_INO] = r.have[T_BNO] = r.have[T_CNT] = true;
	r.have[T_REFC] = f->reflink;
	r.have[T_RMAP] = mp->features_incompat & RLFS_FEAT_INCOMPAT_RMAP;
	err = gather(&r);
	if (!err)
		err = gather_inodes(&r);
	if (!err && r.have[T_REFC])
		err = gather_refc(&r);
	if (!err)
		err = plan(&r);
	if (!err && r.reused_old && !f->sb_block_ok) {
		/* no mark possible: a cut would leave damage no mount warns of */
		printf("AG %u: too full for its new trees beside the old ones, and the "
		       "superblock cannot be marked first\n", agno);
		err = -ENOSPC;
	}
	if (!err && r.reused_old && !f->sb_marked_rebuild) {
		/* a cut in this AG's window leaves damage: mounts warn */
		err = fsck_write_primary_sb(f, false, 0, 0, 0, f->nrebuild + f->ncounter);
		f->sb_marked_rebuild = !err;
	}
	if (!err)
		err = write_ag(&r);
	if (!err) {
		*icount += r.icount;
		*ifree += r.ifree;
		*fdblocks += r.freeblks + r.flcount;
		n = (size_t)snprintf(line, sizeof(line), "AG %u: rebuilt bnobt (%zu records), cntbt, "
				     "inobt (%zu records)", agno, r.nfr, r.nino);
		if (r.have[T_REFC])
			n += (size_t)snprintf(line + n, sizeof(line) - n, ", refcountbt (%zu records)",
					      r.nrefc);
		if (r.have[T_RMAP])
			n += (size_t)snprintf(line + n, sizeof(line) - n, ", rmapbt (%zu records)",
					      r.nrm);
		printf("%s, AGFL (%u blocks) from the block maps\n", line, r.flcount);
		if (r.reused_old)
			printf("AG %u: too full to keep the old trees until the switch: %zu of "
			       "the %" PRIu64 " new tree blocks went over old ones (a crash "
			       "before this AG's header was written would have left damage the "
			       "next fsck rebuilds)\n", agno, r.nreused, r.ntree);
	} else {
		printf("AG %u: rebuilding the AG trees failed: %s%s\n", agno, fsck_errstr(err),
		       err == -ENOSPC && r.have[T_RMAP] && !rmap_reusable(f) ?
		       " (too full: the old rmap btree's blocks are kept for the repairs "
		       "that read it)" : "");
	}
	rb_free(&r);
	return err;
}

/*
 * Rebuild the trees of every AG (see the top of this file).  The new
 * totals (inodes, free inodes, free blocks including the AGFLs) go to
 * *icount, *ifree, *fdblocks for the superblock.  0 or negative errno
 * (-ENOSPC: an AG has too few free blocks for its new trees; -EAGAIN: no
 * stable block count; -ENOMEM, -EIO, -EUCLEAN); AGs before the failing
 * one are rebuilt, the rest are as they were.
 */
int fsck_rebuild_ags(struct fsck *f, uint64_t *icount, uint64_t *ifree, uint64_t *fdblocks)
{
	int err = 0;

	*icount = *ifree = *fdblocks = 0;
	for (uint32_t agno = 0; agno < f->mp->agcount && !err; agno++)
		err = rebuild_ag(f, agno, icount, ifree, fdblocks);
	return err;
}

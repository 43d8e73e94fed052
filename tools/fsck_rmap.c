/*
 * fsck_rmap.c: fsck phase 5, RMAP feature: the rmap btree against
 * everything else fsck learned (model: xfs_repair phase 4/5's rmap
 * cross-check, xfs_scrub's rmapbt xref).
 *
 * Per AG, after the block ownership sweep: the expected records are made
 * from the claims of phases 1-3 that lie in the AG (struct claim, one per
 * block run with its kind and owner; with REFLINK the per-owner data-fork
 * mappings in f->dclaims, the claims table holding only their union):
 *   superblock, AG header                    RLFS_RMAP_OWN_FS
 *   AGFL block, blocks on the AGFL, bnobt,
 *   cntbt and rmapbt blocks                  RLFS_RMAP_OWN_AG
 *   inobt blocks                             RLFS_RMAP_OWN_INOBT
 *   inode chunks                             RLFS_RMAP_OWN_INODES
 *   refcountbt blocks                        RLFS_RMAP_OWN_REFC
 *   CoW staging extents                      RLFS_RMAP_OWN_COW
 *   the log                                  RLFS_RMAP_OWN_LOG
 *   data-fork extents (files, symlink
 *   targets)                                 ino, file offset, unwritten flag
 *   bmbt and directory tree blocks           ino, RLFS_RMAP_OFF_BMBT_BLOCK
 *   xattr tree and remote value blocks       ino, ATTR_FORK | BMBT_BLOCK
 *   free space                               no record
 * Both the expected records and the tree's (read again here, one AG at a
 * time) are normalized: adjacent records of the same owner and flags whose
 * blocks touch are merged (inode extents only when their file offsets are
 * contiguous too; the offset does not count for special owners and
 * bmbt-type blocks), as XFS merges; then both lists are sorted by key
 * (startblock, owner, offset) and compared in one merge walk.  A record
 * only on the expected side is "missing from rmapbt"; one only in the tree
 * is an "rmapbt record with no owner".  When some inode metadata could not
 * be read (f->incomplete) owners are missing from the expected side, so
 * only the first kind is reported.
 *
 * Memory: bounded by one AG: the AG's claims and data-fork mappings
 * loaded from the claim stores (fsck_claims.c), its expected records and
 * its tree's records, freed before the next AG.
 */
#include "fsck_int.h"

struct rmaps {
	struct rlfs_rmap_irec *r;
	size_t n, cap;
};

static void rmaps_push(struct fsck *f, struct rmaps *a, const struct rlfs_rmap_irec *ir)
{
	struct rlfs_rmap_irec *nr = fsck_grow(f, a->r, &a->cap, a->n, sizeof(*nr));

	if (!nr)
		return;
	a->r = nr;
	a->r[a->n++] = *ir;
}

/* The rmap owner and offset (flags included) a claim implies; false for a
 * claim that is not a use of the blocks (free space). */
static bool claim_rmap(const struct claim *c, uint64_t *owner, uint64_t *offset)
{
	*offset = 0;
	*owner = c->owner;
	switch (c->kind) {
	case CL_SB: case CL_AGH:
		*owner = RLFS_RMAP_OWN_FS;
		return true;
	case CL_AGFLBLK: case CL_AGFL: case CL_BNOBT: case CL_CNTBT: case CL_RMAPBT:
		*owner = RLFS_RMAP_OWN_AG;
		return true;
	case CL_INOBT:
		*owner = RLFS_RMAP_OWN_INOBT;
		return true;
	case CL_REFCBT:
		*owner = RLFS_RMAP_OWN_REFC;
		return true;
	case CL_STAGING:
		*owner = RLFS_RMAP_OWN_COW;
		return true;
	case CL_ICHUNK:
		*owner = RLFS_RMAP_OWN_INODES;
		return true;
	case CL_LOG:
		*owner = RLFS_RMAP_OWN_LOG;
		return true;
	case CL_DATA: case CL_SYMLINK:
		*offset = RLFS_RMAP_OFF(c->aux) |
			  ((c->flags & CLF_UNWRITTEN) ? RLFS_RMAP_OFF_UNWRITTEN : 0);
		return true;
	case CL_BMBT: case CL_DIRBT:
		*offset = RLFS_RMAP_OFF_BMBT_BLOCK;
		return true;
	case CL_ATTRBT: case CL_ATTRV:
		*offset = RLFS_RMAP_OFF_ATTR_FORK | RLFS_RMAP_OFF_BMBT_BLOCK;
		return true;
	}
	return false;
}

/* Records whose offset is not a file position. */
static bool no_file_offset(const struct rlfs_rmap_irec *r)
{
	return RLFS_RMAP_NON_INODE_OWNER(r->owner) || (r->offset & RLFS_RMAP_OFF_BMBT_BLOCK);
}

/* Normalization order: owner, flags, then along a "diagonal" (startblock -
 * file offset, constant over a mergeable run) by startblock, so that every
 * record's merge partner is its neighbour. */
static int cmp_owner_run(const void *pa, const void *pb)
{
	const struct rlfs_rmap_irec *a = pa, *b = pb;
	int c = fsck_cmp_u64(a->owner, b->owner);

	if (!c)
		c = fsck_cmp_u64(a->offset & RLFS_RMAP_OFF_FLAGS, b->offset & RLFS_RMAP_OFF_FLAGS);
	if (!c) {
		int64_t da = no_file_offset(a) ? 0 : (int64_t)a->startblock -
						     (int64_t)RLFS_RMAP_OFF(a->offset);
		int64_t db = no_file_offset(b) ? 0 : (int64_t)b->startblock -
						     (int64_t)RLFS_RMAP_OFF(b->offset);
		c = da < db ? -1 : da > db;
	}
	if (!c)
		c = fsck_cmp_u64(a->startblock, b->startblock);
	return c;
}

/* Key order (rlfs_rmap_irec_cmp_key), then length and the unwritten flag: equal records compare
 * equal. */
int fsck_cmp_rmap(const void *pa, const void *pb)
{
	const struct rlfs_rmap_irec *a = pa, *b = pb;
	int c = rlfs_rmap_irec_cmp_key(a, b);

	if (!c)
		c = fsck_cmp_u64(a->blockcount, b->blockcount);
	if (!c)
		c = fsck_cmp_u64(a->offset, b->offset);
	return c;
}

/* Merge what XFS would have merged (the library's rule, which keeps the
 * tree canonical), then sort by key. */
static void normalize(struct rmaps *a)
{
	size_t out = 0;

	fsck_xsort(a->r, a->n, sizeof(*a->r), cmp_owner_run);
	for (size_t i = 0; i < a->n; i++) {
		if (out && rlfs_rmap_is_mergeable(&a->r[out - 1], &a->r[i]))
			a->r[out - 1].blockcount += a->r[i].blockcount;
		else
			a->r[out++] = a->r[i];
	}
	a->n = out;
	fsck_xsort(a->r, a->n, sizeof(*a->r), fsck_cmp_rmap);
}

/* "inode 131 data offset 4 unwritten", "OWN_AG (AGFL, free-space and rmap
 * btrees)", ... */
static void owner_desc(const struct rlfs_rmap_irec *r, char *buf, size_t len)
{
	static const char *const special[] = {
		"OWN_NULL", "OWN_UNKNOWN", "OWN_FS (superblock, AG header)", "OWN_LOG (log)",
		"OWN_AG (AGFL, free-space and rmap btrees)", "OWN_INOBT (inode btree)",
		"OWN_INODES (inode chunk)", "OWN_REFC (refcount btree)",
		"OWN_COW (CoW staging)",
	};
	uint64_t off = r->offset;

	if (RLFS_RMAP_NON_INODE_OWNER(r->owner)) {
		uint64_t i = ~r->owner;

		if (i < sizeof(special) / sizeof(special[0]))
			snprintf(buf, len, "owner %s", special[i]);
		else
			snprintf(buf, len, "owner 0x%" PRIx64 " (unknown special owner)", r->owner);
		return;
	}
	snprintf(buf, len, "owner inode %" PRIu64 " %s%s%s", r->owner,
		 (off & RLFS_RMAP_OFF_ATTR_FORK) ? "attr fork " : "",
		 (off & RLFS_RMAP_OFF_BMBT_BLOCK) ? "tree block" : "data",
		 (off & RLFS_RMAP_OFF_UNWRITTEN) ? " unwritten" : "");
	if (!(off & RLFS_RMAP_OFF_BMBT_BLOCK)) {
		size_t n = strlen(buf);

		snprintf(buf + n, len - n, " at file block %" PRIu64, (uint64_t)RLFS_RMAP_OFF(off));
	}
}

static void report(struct fsck *f, uint32_t agno, const struct rlfs_rmap_irec *r,
		   const char *what)
{
	char d[160];

	owner_desc(r, d, sizeof(d));
	RB_BEGIN(f);                /* the rebuild makes the rmapbt from the claims */
	ERR(f, "%s (rmapbt): agbno %u-%u (%u block%s) %s: %s",
	    fsck_loc(f, rlfs_agb_to_fsb(f->mp, agno, r->startblock)).s, r->startblock,
	    r->startblock + r->blockcount - 1, r->blockcount, r->blockcount == 1 ? "" : "s", d,
	    what);
	RB_END(f);
}

/* Expected records of AG agno from the claims in [*pos, n) that start in
 * it (sorted by start; *pos advances past them). */
static void expect_from(struct fsck *f, uint32_t agno, const struct claim *cl, size_t n,
			size_t *pos, bool skip_data, struct rmaps *out)
{
	struct rlfs_mount *mp = f->mp;
	uint64_t ag0 = (uint64_t)agno * mp->agblocks, agend = ag0 + rlfs_ag_blocks(mp, agno);

	for (; *pos < n && cl[*pos].start < agend; (*pos)++) {
		const struct claim *c = &cl[*pos];
		struct rlfs_rmap_irec ir;

		if (c->start < ag0 || (skip_data && c->kind == CL_DATA) ||
		    !claim_rmap(c, &ir.owner, &ir.offset))
			continue;
		ir.startblock = (uint32_t)(c->start - ag0);
		ir.blockcount = (uint32_t)RLFS_MIN((uint64_t)c->len, agend - c->start);
		rmaps_push(f, out, &ir);
	}
}

/*
 * The rmap records of AG agno that the claims cl[0..n) (sorted by start)
 * and the data-fork mappings dcl[0..nd) (sorted by start; skip_data: take
 * data extents from dcl only, as with REFLINK) imply, merged as the
 * library merges and sorted by key: what fsck_check_rmaps expects, and
 * what the rebuild loads.  *out is malloc'd (free it); 0 or -ENOMEM.
 */
int fsck_rmap_expected(struct fsck *f, uint32_t agno, const struct claim *cl, size_t n,
		       const struct claim *dcl, size_t nd, bool skip_data,
		       struct rlfs_rmap_irec **out, size_t *nout)
{
	struct rmaps exp = { 0 };
	size_t ci = 0, di = 0;
	bool oom0 = f->oom;

	expect_from(f, agno, cl, n, &ci, skip_data, &exp);
	expect_from(f, agno, dcl, nd, &di, false, &exp);
	if (f->oom && !oom0) {
		free(exp.r);
		return -ENOMEM;
	}
	normalize(&exp);
	*out = exp.r;
	*nout = exp.n;
	return 0;
}

struct rmap_walk {
	int (*fn)(const struct rlfs_rmap_irec *ir, void *priv);
	void *priv;
};

static int rmap_walk_rec(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct rmap_walk *w = priv;
	struct rlfs_rmap_rec r;
	struct rlfs_rmap_irec ir;

	(void)cur;
	memcpy(&r, rec, sizeof(r));
	rlfs_rmap_rec_decode(&r, &ir);
	return w->fn(&ir, w->priv);
}

int fsck_rmap_walk(struct fsck *f, uint32_t agno,
		   int (*fn)(const struct rlfs_rmap_irec *ir, void *priv), void *priv)
{
	struct rlfs_mount *mp = f->mp;
	struct ag_info *ai = &f->ags[agno];
	struct rlfs_buf fake = { .fsbno = rlfs_agb_to_fsb(mp, agno, RLFS_AGH_AGBNO),
				 .data = &ai->agh };
	struct rlfs_btree_cur cur;
	struct rlfs_trans *tp;
	struct rmap_walk w = { fn, priv };
	int err = rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp);

	if (err)
		return err;
	rlfs_btree_cur_init(&cur, tp, fsck_rmapbt_ops(), agno, NULL, &fake);
	err = rlfs_btree_query_all(&cur, rmap_walk_rec, &w);
	rlfs_btree_cur_del(&cur);
	rlfs_trans_cancel(tp);
	return err;
}

struct collect {
	struct fsck *f;
	struct rmaps *out;
};

static int collect_rec(const struct rlfs_rmap_irec *ir, void *priv)
{
	struct collect *c = priv;

	rmaps_push(c->f, c->out, ir);
	return c->f->oom ? -ENOMEM : 0;
}

/* AG agno's rmap btree records.  0 or -errno. */
static int read_tree(struct fsck *f, uint32_t agno, struct rmaps *out)
{
	struct collect c = { f, out };

	return fsck_rmap_walk(f, agno, collect_rec, &c);
}

void fsck_check_rmaps(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	bool said_incomplete = false;

	if (!(mp->features_incompat & RLFS_FEAT_INCOMPAT_RMAP))
		return;
	for (uint32_t agno = 0; agno < mp->agcount && !f->oom; agno++) {
		struct ag_info *ai = &f->ags[agno];
		struct rmaps exp = { 0 }, act = { 0 };
		struct claim *cl = NULL, *dcl = NULL;
		size_t ncl = 0, ndcl = 0, ci = 0, di = 0;

		/* this AG's claims and data-fork mappings, sorted by start */
		if (fsck_store_load(f, &f->claims, agno, true, &cl, &ncl) ||
		    fsck_store_load(f, &f->dclaims, agno, true, &dcl, &ndcl)) {
			free(cl);
			break;
		}
		expect_from(f, agno, cl, ncl, &ci, f->reflink, &exp);
		expect_from(f, agno, dcl, ndcl, &di, false, &exp);
		free(cl);
		free(dcl);
		if (!ai->hdr_ok || !ai->trees_ok || !ai->rmap_ok) {
			fsck_verbose(f, "AG %u: rmap cross-check skipped (AG trees or rmap btree "
				     "damaged, reported above)", agno);
			free(exp.r);
			continue;
		}
		int err = read_tree(f, agno, &act);
		if (err) {
			if (err == -ENOMEM)
				f->oom = true;
			else {
				RB_BEGIN(f);
				ERR(f, "AG %u (rmapbt): cannot read the records: %s", agno,
				    fsck_errstr(err));
				RB_END(f);
			}
			free(exp.r);
			free(act.r);
			continue;
		}
		normalize(&exp);
		normalize(&act);
		if (f->incomplete && !said_incomplete) {
			ERR(f, "rmapbt: some inode metadata could not be read: rmap records of "
			    "unknown owner are not reported");
			said_incomplete = true;
		}
		size_t i = 0, j = 0;
		while (i < exp.n || j < act.n) {
			int c = i == exp.n ? 1 : j == act.n ? -1 :
				fsck_cmp_rmap(&exp.r[i], &act.r[j]);

			if (c == 0) {
				i++;
				j++;
			} else if (c < 0) {
				report(f, agno, &exp.r[i++], "missing from rmapbt");
			} else {
				if (!f->incomplete)
					report(f, agno, &act.r[j], "rmapbt record with no owner");
				j++;
			}
		}
		fsck_verbose(f, "AG %u: %zu rmap records (merged) checked against %zu expected",
			     agno, act.n, exp.n);
		free(exp.r);
		free(act.r);
	}
}

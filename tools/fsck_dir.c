/*
 * fsck_dir.c: directories (model: e2fsck passes 2-4, xfs_repair phase 6).
 *
 * Phase 3c, salvage: a directory whose b+tree phase 3 could not walk whole
 * (a block that fails verification, a bad pointer) or whose entries failed
 * their checks is not trusted block by block: every leaf of it that still
 * verifies (magic, crc, owner = the directory, level 0) is read, found
 * from the root down (subtrees under a bad node skipped), through the
 * sibling pointers of the good blocks, and with the RMAP feature from the
 * rmap btree's records of the directory's tree blocks (which also finds
 * the leaves under a damaged node or root), and their entries become the
 * directory's (xfs_repair longform_dir2_rebuild's "rebuild from the
 * entries that can be read").  Entries that cannot be kept (empty name,
 * '/', ".", "..", a second copy of a name) are dropped; a wrong hash or
 * file type is corrected by the rebuild.  The old tree's blocks known to
 * be its own (verified, or named by the rmap btree) are claimed as its
 * tree blocks (repair frees them); a damaged block nothing vouches for is
 * owned by nobody, and the AG tree rebuild frees it.  Phase 4 then judges
 * the salvaged entries as any others: what only the unreadable blocks
 * named is lost and goes to /lost+found.
 *
 * Phase 4 repairs: directory entries that name a free inode or an inode
 * number in no inode chunk are removed; lost inodes (in use, named by no
 * directory) are linked into /lost+found, made first if missing; a root
 * entry "lost+found" naming something that is not a directory is removed
 * (xfs_repair: "lost+found (ino N) in root is not a directory", the entry
 * junked) and a new /lost+found made, into which the old inode goes under
 * its number when nothing else names it.  The findings are made by
 * fsck_check_graph (fsck_xref.c), which also leaves out of its link-count
 * fixes the inodes handled here.
 *
 * The rebuild of a directory (rebuild_dir) is one logged transaction:
 * the old tree's claimed blocks freed, the data fork emptied, every
 * salvaged entry naming a good inode put back with rlfs_dir_add (under
 * the name's own hash, the inode's file type); batches of one log
 * checkpoint each only for a directory too large for one.
 *
 * Everything here is written through a library mount and its own
 * directory operations (rlfs_dir_add, rlfs_dir_remove, rlfs_mkdir), one
 * logged transaction per entry, inode or rebuilt directory, as
 * fsck_free_orphans and fsck_fix_forks do: a crash between two of them
 * leaves a consistent filesystem with the rest still to do, which the
 * next fsck finds and does.  Runs last, after the raw repairs (link counts, AG trees,
 * superblock) made the image one the library mounts.
 *
 * Counts kept by the transaction itself: a lost file gets nlink 1 (its one
 * name, in /lost+found); a lost directory 2 + its subdirectories, its
 * parent pointer ("..") becomes /lost+found, and /lost+found's link count
 * goes up by one.  A rebuilt directory's link count (2 + the
 * subdirectories salvaged) is written raw with the other link counts.  A
 * directory's size is not kept by reflinkfs (its entries live in a
 * b+tree; st_size is derived), so there is none to fix.
 * See fsck.c for the whole picture.
 */
#include <pthread.h>

#include "fsck_int.h"

#define FSCK_LPF_NAME "lost+found"
#define FSCK_LPF_MODE 0700

/* ------------------------------------------------------------------ */
/* Phase 3c: salvage of damaged directories                            */

int fsck_dir_rebuild_queue(struct fsck *f, uint64_t ino, uint64_t root, uint64_t other_blocks)
{
	struct dirrebuild *n = fsck_grow(f, f->dirrebuilds, &f->dirrebuilds_cap,
					 f->ndirrebuilds, sizeof(*n));

	if (!n)
		return -ENOMEM;
	f->dirrebuilds = n;
	f->dirrebuilds[f->ndirrebuilds++] = (struct dirrebuild){ .ino = ino, .root = root,
		.other_blocks = other_blocks };
	return 0;
}

bool fsck_dir_rebuilt(const struct fsck *f, uint64_t ino)
{
	size_t lo = 0, hi = f->ndirrebuilds;

	/* queued in inode order (phase 3 goes through the chunks in order) */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->dirrebuilds[mid].ino == ino)
			return true;
		if (f->dirrebuilds[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* A set of block numbers (open addressing; 0 is never a tree block). */
struct blkset {
	uint64_t *slot;
	size_t n, cap;              /* cap: a power of two */
};

/* Add fsbno: 1 if new, 0 if there, -ENOMEM. */
static int blkset_add(struct blkset *s, uint64_t fsbno)
{
	if (2 * (s->n + 1) > s->cap) {
		size_t ncap = s->cap ? 2 * s->cap : 64;
		uint64_t *ns = calloc(ncap, sizeof(*ns));

		if (!ns)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++) {
			size_t h;

			if (!s->slot[i])
				continue;
			for (h = (s->slot[i] * 0x9e3779b97f4a7c15ull) & (ncap - 1); ns[h];
			     h = (h + 1) & (ncap - 1))
				;
			ns[h] = s->slot[i];
		}
		free(s->slot);
		s->slot = ns;
		s->cap = ncap;
	}
	for (size_t h = (fsbno * 0x9e3779b97f4a7c15ull) & (s->cap - 1);;
	     h = (h + 1) & (s->cap - 1)) {
		if (s->slot[h] == fsbno)
			return 0;
		if (!s->slot[h]) {
			s->slot[h] = fsbno;
			s->n++;
			return 1;
		}
	}
}

/* Tree blocks the rmap btree gives the queued directories. */
struct ownblk {
	uint64_t ino;
	uint64_t fsbno;
};

struct rmap_dirs {
	struct fsck *f;
	uint32_t agno;
	struct ownblk *v;
	size_t n, cap;
};

static int rmap_dir_rec(const struct rlfs_rmap_irec *ir, void *priv)
{
	struct rmap_dirs *rd = priv;
	struct fsck *f = rd->f;

	if (!(ir->offset & RLFS_RMAP_OFF_BMBT_BLOCK) || (ir->offset & RLFS_RMAP_OFF_ATTR_FORK) ||
	    !fsck_dir_rebuilt(f, ir->owner))
		return 0;
	for (uint32_t i = 0; i < ir->blockcount && i < f->mp->agblocks; i++) {
		struct ownblk *n = fsck_grow(f, rd->v, &rd->cap, rd->n, sizeof(*n));

		if (!n)
			return -ENOMEM;
		rd->v = n;
		rd->v[rd->n++] = (struct ownblk){ .ino = ir->owner,
			.fsbno = rlfs_agb_to_fsb(f->mp, rd->agno, ir->startblock + i) };
	}
	return 0;
}

static int cmp_ownblk(const void *a, const void *b)
{
	const struct ownblk *x = a, *y = b;
	int c = fsck_cmp_u64(x->ino, y->ino);

	return c ? c : fsck_cmp_u64(x->fsbno, y->fsbno);
}

/* A leaf read: where, and its first key (hash << 32 | seq) for the order. */
struct leaf {
	uint64_t fsbno;
	uint64_t key;
};

static int cmp_leaf(const void *a, const void *b)
{
	const struct leaf *x = a, *y = b;
	int c = fsck_cmp_u64(x->key, y->key);

	return c ? c : fsck_cmp_u64(x->fsbno, y->fsbno);
}

/* A salvaged entry, for the duplicate check: its edge and the name's hash. */
struct sent {
	uint32_t hash;              /* rlfs_dirhash of the name */
	size_t edge;                /* index in f->edges */
};

static const char *sent_names;     /* f->names, for cmp_sent (one fsck at a time) */
static const struct edge *sent_edges;

static int cmp_sent(const void *a, const void *b)
{
	const struct sent *x = a, *y = b;
	const struct edge *ex = &sent_edges[x->edge], *ey = &sent_edges[y->edge];
	int c = fsck_cmp_u64(x->hash, y->hash);

	if (c)
		return c;
	if (ex->namelen != ey->namelen)
		return ex->namelen < ey->namelen ? -1 : 1;
	c = memcmp(sent_names + ex->name_off, sent_names + ey->name_off, ex->namelen);
	return c ? c : fsck_cmp_u64(x->edge, y->edge);   /* first read first */
}

/* Printable copy of a name (for messages). */
static void print_name(char *out, const uint8_t *name, unsigned nl)
{
	for (unsigned i = 0; i < nl; i++)
		out[i] = (name[i] >= 0x20 && name[i] < 0x7f) ? (char)name[i] : '?';
	out[nl] = '\0';
}

/* Append one entry as an edge.  0 or -ENOMEM. */
static int add_edge(struct fsck *f, uint64_t dir, const struct rlfs_dir_rec *r)
{
	struct edge *ne = fsck_grow(f, f->edges, &f->edges_cap, f->nedges, sizeof(*ne));

	if (!ne)
		return -ENOMEM;
	f->edges = ne;
	while (f->names_len + r->namelen > f->names_cap) {
		size_t ncap = f->names_cap ? f->names_cap * 2 : 65536;
		char *nn = realloc(f->names, ncap);

		if (!nn)
			return -ENOMEM;
		f->names = nn;
		f->names_cap = ncap;
	}
	memcpy(f->names + f->names_len, r->name, r->namelen);
	f->edges[f->nedges++] = (struct edge){ .dir = dir, .child = rlfs_get64(r->ino),
		.name_off = f->names_len, .namelen = r->namelen, .ftype = r->ftype };
	f->names_len += r->namelen;
	return 0;
}

/* One record of a salvaged leaf: kept as an edge, or dropped (fixable
 * finding).  0 or -ENOMEM. */
static int salvage_rec(struct fsck *f, uint64_t dino, const struct rlfs_dir_rec *r)
{
	char name[RLFS_NAME_MAX + 1];
	uint8_t nl = r->namelen;
	const char *why = NULL;

	print_name(name, r->name, nl);
	if (nl == 0)
		why = "an empty name";
	else if (memchr(r->name, '/', nl) || memchr(r->name, '\0', nl))
		why = "a name containing '/' or NUL";
	else if ((nl == 1 && r->name[0] == '.') ||
		 (nl == 2 && r->name[0] == '.' && r->name[1] == '.'))
		why = "a name \".\" or \"..\" (never stored)";
	else if (rlfs_get64(r->ino) == 0)
		why = "inode number 0";
	if (why) {
		FIXABLE(f, "inode %" PRIu64 " (directory): entry '%s' has %s; the rebuild drops it",
			dino, name, why);
		return 0;
	}
	if (rlfs_dirhash((const char *)r->name, nl) != rlfs_get32(r->hash))
		FIXABLE(f, "inode %" PRIu64 " (directory): entry '%s' has hash 0x%08x, the name "
			"hashes to 0x%08x; the rebuild stores it under its own hash", dino, name,
			rlfs_get32(r->hash), rlfs_dirhash((const char *)r->name, nl));
	return add_edge(f, dino, r);
}

/* Is fsbno among the rmapbt's blocks of the directory (sorted)? */
static bool from_rmap(const struct ownblk *v, size_t n, uint64_t fsbno)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid].fsbno == fsbno)
			return true;
		if (v[mid].fsbno < fsbno)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Note fsbno as a block of dr's old tree: claimed now, freed by repair.
 * 0 or -ENOMEM. */
static int old_add(struct fsck *f, struct dirrebuild *dr, uint64_t fsbno)
{
	uint64_t *n = fsck_grow(f, dr->old_blocks, &dr->old_cap, dr->nold, sizeof(*n));

	if (!n)
		return -ENOMEM;
	dr->old_blocks = n;
	dr->old_blocks[dr->nold++] = fsbno;
	fsck_add_claim(f, CL_DIRBT, dr->ino, 0, fsbno, 1);
	f->used_blocks++;
	return 0;
}

/*
 * Salvage one directory: find its leaves, read their entries in key
 * order (edges from f->nedges on), drop second copies of a name, report.
 * 0 or -ENOMEM.
 */
static int salvage_dir(struct fsck *f, struct rlfs_trans *tp, struct dirrebuild *dr,
		       const struct ownblk *rmapblks, size_t nrmapblks)
{
	struct rlfs_mount *mp = f->mp;
	unsigned leaf_max = rlfs_btree_maxrecs(mp, &rlfs_dirbt_ops, true);
	unsigned node_max = rlfs_btree_maxrecs(mp, &rlfs_dirbt_ops, false);
	struct blkset seen = { 0 };
	uint64_t *todo = NULL;
	size_t ntodo = 0, todo_cap = 0, nleaves = 0, leaves_cap = 0, first = f->nedges;
	struct leaf *leaves = NULL;
	struct sent *sents = NULL;
	uint64_t nbad = 0;
	int err = 0;

#define PUSH(b) do {                                                            \
		uint64_t *nt_ = fsck_grow(f, todo, &todo_cap, ntodo, sizeof(*todo));  \
		if (!nt_) { err = -ENOMEM; goto out; }                                  \
		todo = nt_;                                                             \
		todo[ntodo++] = (b);                                                    \
	} while (0)

	if (dr->root)
		PUSH(dr->root);
	for (size_t i = 0; i < nrmapblks; i++)
		PUSH(rmapblks[i].fsbno);
	while (ntodo) {
		uint64_t fsbno = todo[--ntodo];
		const struct rlfs_btree_block *bb;
		struct rlfs_buf *bp;
		unsigned level, n;
		int r;

		if (fsbno == 0 || fsbno >= mp->dblocks)
			continue;
		r = blkset_add(&seen, fsbno);
		if (r < 0) {
			err = r;
			goto out;
		}
		if (r == 0 || seen.n > mp->dblocks)
			continue;
		if (rlfs_trans_read_buf(tp, fsbno, &rlfs_dirbt_buf_ops, dr->ino, &bp)) {
			nbad++;
			if (from_rmap(rmapblks, nrmapblks, fsbno) && old_add(f, dr, fsbno)) {
				err = -ENOMEM;
				goto out;
			}
			continue;
		}
		bb = bp->data;
		level = rlfs_get16(bb->level);
		n = rlfs_get16(bb->numrecs);
		if (rlfs_get32(bb->hdr.magic) != RLFS_DIRBT_MAGIC ||
		    rlfs_get64(bb->hdr.owner) != dr->ino ||
		    n > (level ? node_max : leaf_max)) {
			rlfs_trans_brelse(tp, bp);
			nbad++;
			if (from_rmap(rmapblks, nrmapblks, fsbno) && old_add(f, dr, fsbno)) {
				err = -ENOMEM;
				goto out;
			}
			continue;
		}
		if (old_add(f, dr, fsbno)) {
			rlfs_trans_brelse(tp, bp);
			err = -ENOMEM;
			goto out;
		}
		if (rlfs_get64(bb->leftsib))
			PUSH(rlfs_get64(bb->leftsib));
		if (rlfs_get64(bb->rightsib))
			PUSH(rlfs_get64(bb->rightsib));
		if (level) {
			const uint8_t *ptrs = (const uint8_t *)bp->data + sizeof(*bb) +
					      (size_t)node_max * rlfs_dirbt_ops.key_len;

			for (unsigned i = 0; i < n; i++) {
				rlfs_le64 v;

				memcpy(&v, ptrs + (size_t)i * 8, sizeof(v));
				PUSH(rlfs_get64(v));
			}
		} else if (n) {
			const struct rlfs_dir_rec *rec = (const void *)(bb + 1);
			struct leaf *nl = fsck_grow(f, leaves, &leaves_cap, nleaves,
						    sizeof(*nl));

			if (!nl) {
				rlfs_trans_brelse(tp, bp);
				err = -ENOMEM;
				goto out;
			}
			leaves = nl;
			leaves[nleaves++] = (struct leaf){ .fsbno = fsbno,
				.key = (uint64_t)rlfs_get32(rec->hash) << 32 | rlfs_get32(rec->seq) };
		}
		rlfs_trans_brelse(tp, bp);
	}
	fsck_xsort(leaves, nleaves, sizeof(*leaves), cmp_leaf);
	for (size_t l = 0; l < nleaves && !err; l++) {
		const struct rlfs_btree_block *bb;
		struct rlfs_buf *bp;

		if (rlfs_trans_read_buf(tp, leaves[l].fsbno, &rlfs_dirbt_buf_ops, dr->ino, &bp))
			continue;   /* read a moment ago */
		bb = bp->data;
		for (unsigned i = 0; i < rlfs_get16(bb->numrecs) && !err; i++)
			err = salvage_rec(f, dr->ino, (const struct rlfs_dir_rec *)(bb + 1) + i);
		rlfs_trans_brelse(tp, bp);
	}
	if (err)
		goto out;

	/* a name twice (in two leaves, say): the first read stays */
	sents = malloc((f->nedges - first + 1) * sizeof(*sents));
	if (!sents) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = first; i < f->nedges; i++)
		sents[i - first] = (struct sent){ .edge = i, .hash = rlfs_dirhash(
			f->names + f->edges[i].name_off, f->edges[i].namelen) };
	sent_names = f->names;
	sent_edges = f->edges;
	fsck_xsort(sents, f->nedges - first, sizeof(*sents), cmp_sent);
	for (size_t i = 1; i < f->nedges - first; i++) {
		struct edge *a = &f->edges[sents[i - 1].edge], *b = &f->edges[sents[i].edge];
		char name[RLFS_NAME_MAX + 1];

		if (sents[i - 1].hash != sents[i].hash || a->namelen != b->namelen ||
		    memcmp(f->names + a->name_off, f->names + b->name_off, a->namelen) != 0)
			continue;
		print_name(name, (const uint8_t *)f->names + b->name_off, b->namelen);
		FIXABLE(f, "inode %" PRIu64 " (directory): name '%s' appears twice (inodes %"
			PRIu64 " and %" PRIu64 "); the rebuild keeps the first", dr->ino, name,
			a->child, b->child);
		b->dir = 0;             /* dropped (no directory is inode 0) */
		sents[i] = sents[i - 1];  /* compare the next one with the kept one */
	}
	{
		size_t k = first;

		for (size_t i = first; i < f->nedges; i++)
			if (f->edges[i].dir)
				f->edges[k++] = f->edges[i];
		f->nedges = k;
	}
	dr->nentries = f->nedges - first;
	FIXABLE(f, "inode %" PRIu64 " (directory): b+tree damaged (%" PRIu64 " block%s unreadable"
		" or not its own); repair rebuilds it from the %" PRIu64 " entr%s in its %zu "
		"readable lea%s (inodes only the damaged blocks named go to /lost+found)",
		dr->ino, nbad, nbad == 1 ? "" : "s", dr->nentries, dr->nentries == 1 ? "y" : "ies",
		nleaves, nleaves == 1 ? "f" : "ves");
out:
#undef PUSH
	free(seen.slot);
	free(todo);
	free(leaves);
	free(sents);
	return err;
}

void fsck_salvage_dirs(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	struct rmap_dirs rd = { .f = f };
	struct rlfs_trans *tp;
	size_t j = 0;
	int err;

	if (!f->ndirrebuilds)
		return;
	/* with the rmap: every tree block of these directories, also those a
	 * damaged node hides (AGs whose rmap btree checked clean) */
	if (mp->features_incompat & RLFS_FEAT_INCOMPAT_RMAP)
		for (uint32_t agno = 0; agno < mp->agcount && !f->oom; agno++) {
			if (!f->ags[agno].hdr_ok || !f->ags[agno].rmap_ok)
				continue;
			rd.agno = agno;
			if (fsck_rmap_walk(f, agno, rmap_dir_rec, &rd) == -ENOMEM)
				f->oom = true;
		}
	fsck_xsort(rd.v, rd.n, sizeof(*rd.v), cmp_ownblk);
	err = rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp);
	if (err) {
		ERR(f, "directories: cannot start a transaction: %s", fsck_errstr(err));
		free(rd.v);
		return;
	}
	for (size_t i = 0; i < f->ndirrebuilds && !f->oom; i++) {
		struct dirrebuild *dr = &f->dirrebuilds[i];
		size_t k;

		while (j < rd.n && rd.v[j].ino < dr->ino)
			j++;
		for (k = j; k < rd.n && rd.v[k].ino == dr->ino; k++)
			;
		if (salvage_dir(f, tp, dr, rd.v + j, k - j))
			f->oom = true;
		j = k;
	}
	rlfs_trans_cancel(tp);
	free(rd.v);
}

/* ------------------------------------------------------------------ */
/* Phase 4 repairs                                                     */

/* Remove one entry (one transaction).  0, -EUCLEAN if the name no longer
 * holds the inode number phase 4 saw, or the library's errors. */
static int remove_entry(struct fsck *f, struct rlfs_mount *lm, const struct dfix *x)
{
	const char *name = f->names + x->name_off;
	struct rlfs_inode *dp;
	struct rlfs_trans *tp;
	uint64_t ino = 0;
	int err;

	err = rlfs_iget(lm, x->dir, &dp);
	if (err)
		return err;
	if (!S_ISDIR(dp->mode)) {
		rlfs_irele(dp);
		return -EUCLEAN;
	}
	pthread_rwlock_wrlock(&dp->iolock);
	err = rlfs_trans_alloc(lm, &lm->resv.tr_remove, rlfs_dir_res(dp), RLFS_TRANS_RESERVE,
			       &tp);
	if (err)
		goto out;
	rlfs_trans_ijoin(tp, dp);
	err = rlfs_dir_remove(tp, dp, name, x->namelen, &ino);
	if (!err && ino != x->child)
		err = -EUCLEAN;     /* changed since the check */
	if (err) {
		rlfs_trans_cancel(tp);
		goto out;
	}
	rlfs_now(&dp->mtime);
	dp->ctime = dp->mtime;
	rlfs_trans_log_inode(tp, dp);
	err = rlfs_trans_commit(tp);
	if (!err)
		fsck_verbose(f, "inode %" PRIu64 " (directory): entry '%.*s' to inode %" PRIu64
			     " removed", x->dir, (int)x->namelen, name, x->child);
out:
	pthread_rwlock_unlock(&dp->iolock);
	rlfs_irele(dp);
	return err;
}

/* The edges of directory dir: [*lo, *hi) (f->edges sorted by directory,
 * phase 4). */
static void dir_edges(const struct fsck *f, uint64_t dir, size_t *lo, size_t *hi)
{
	size_t l = 0, h = f->nedges;

	while (l < h) {
		size_t mid = l + (h - l) / 2;

		if (f->edges[mid].dir < dir)
			l = mid + 1;
		else
			h = mid;
	}
	*lo = l;
	for (h = l; h < f->nedges && f->edges[h].dir == dir; h++)
		;
	*hi = h;
}

/*
 * Entries one transaction of a directory rebuild may put in: as many as
 * one log checkpoint holds (the estimate of rlfs_bmap_repair_fits, for
 * directory records: half-full leaves as inserts leave them, their
 * nodes, 48 blocks of free-space, rmap and header changes, the inode,
 * against three quarters of the log).  At least one; no limit without a
 * log.
 */
static size_t rebuild_batch(const struct rlfs_mount *lm)
{
	uint64_t half = RLFS_MAX(rlfs_btree_maxrecs((struct rlfs_mount *)lm, &rlfs_dirbt_ops,
						    true) / 2, 1u);
	uint64_t nhalf = RLFS_MAX(rlfs_btree_maxrecs((struct rlfs_mount *)lm, &rlfs_dirbt_ops,
						     false) / 2, 1u);
	uint64_t budget, leaves;

	if (!lm->log)
		return SIZE_MAX;
	budget = (uint64_t)lm->log->size_blocks * 3 / 4;
	if (budget <= 49 + 2)
		return 1;
	leaves = (budget - 49) * nhalf / (nhalf + 1);
	return leaves > 1 ? (size_t)((leaves - 1) * half) : 1;
}

/*
 * Rebuild one directory: in one transaction, the old tree's blocks
 * (dr->old_blocks: claimed by phase 3c, so in use in the AG trees) leave
 * its rmap and are freed, its data fork becomes empty (format none,
 * nblocks = its other blocks) and every salvaged entry naming a good
 * inode goes back in (rlfs_dir_add: under the name's own hash, the
 * inode's file type).  A cut before the commit leaves the damaged
 * directory as it was (the next fsck does it all again); after it, the
 * directory is whole.  A directory whose entries do not fit one log
 * checkpoint (rebuild_batch) goes in batches, one transaction each: a cut
 * between two leaves the entries not yet put back named nowhere, and the
 * next fsck links their inodes into /lost+found (names lost, no data).
 * 0, -EUCLEAN if the directory changed since the check, or the library's
 * errors.
 */
static int rebuild_dir(struct fsck *f, struct rlfs_mount *lm, const struct dirrebuild *dr)
{
	size_t batch = rebuild_batch(lm), lo, hi, i, n = 0, ntrans = 0;
	struct rlfs_inode *dp;
	int err;

	if (dr->root) {
		err = rlfs_iget(lm, dr->ino, &dp);
	} else {
		/* its root pointer was out of the filesystem: the library
		 * would refuse the inode; load it with an empty fork */
		struct rlfs_trans *tp;
		err = rlfs_trans_alloc(lm, &lm->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
		if (!err) {
			err = rlfs_iget_fork_lost(tp, dr->ino, &dp);
			rlfs_trans_cancel(tp);
		}
	}
	if (err)
		return err;
	if (!S_ISDIR(dp->mode) ||
	    (dr->root && (dp->format != RLFS_FMT_BTREE || dp->root != dr->root))) {
		rlfs_irele(dp);
		return -EUCLEAN;    /* changed since the check */
	}
	pthread_rwlock_wrlock(&dp->iolock);
	dir_edges(f, dr->ino, &lo, &hi);
	i = lo;
	do {
		struct rlfs_trans *tp;
		size_t k = 0;

		err = rlfs_trans_alloc(lm, &lm->resv.tr_fsck,
				       (uint32_t)RLFS_MIN(hi - lo, batch) / 4 + 16, 0, &tp);
		if (err)
			break;
		rlfs_trans_ijoin(tp, dp);
		if (ntrans == 0) {
			/* the old tree goes */
			for (size_t b = 0; b < dr->nold && !err; b++) {
				err = rlfs_rmap_update(tp, RLFS_RUI_UNMAP, dr->old_blocks[b], 1,
						       dr->ino, RLFS_RMAP_DATA_META);
				if (!err)
					err = rlfs_free_extent(tp, dr->old_blocks[b], 1);
			}
			dp->format = RLFS_FMT_NONE;
			dp->root = 0;
			dp->root_level = 0;
			dp->nblocks = dr->other_blocks;
		}
		for (; i < hi && k < batch && !err; i++) {
			const struct edge *e = &f->edges[i];
			const struct ientry *c = e->child ? fsck_find_inode(f, e->child) : NULL;

			/* entries naming no inode are not put back (counted
			 * as removed: struct dfix); the moved-aside
			 * lost+found has child 0 */
			if (!c || (c->flags & IE_BAD))
				continue;
			err = rlfs_dir_add(tp, dp, f->names + e->name_off, e->namelen, e->child,
					   rlfs_mode_to_ftype(c->mode));
			if (err)
				printf("%s: inode %" PRIu64 " (directory): putting entry '%.*s' "
				       "back failed: %s\n", f->image, dr->ino, (int)e->namelen,
				       f->names + e->name_off, fsck_errstr(err));
			k++;
		}
		if (err) {
			rlfs_trans_cancel(tp);
			break;
		}
		rlfs_now(&dp->mtime);
		dp->ctime = dp->mtime;
		rlfs_trans_log_inode(tp, dp);
		err = rlfs_trans_commit(tp);
		n += k;
		ntrans++;
	} while (!err && i < hi);
	pthread_rwlock_unlock(&dp->iolock);
	rlfs_irele(dp);
	if (!err)
		printf("%s: inode %" PRIu64 " (directory): rebuilt with %zu entr%s (%zu old tree "
		       "block%s freed%s)\n", f->image, dr->ino, n, n == 1 ? "y" : "ies", dr->nold,
		       dr->nold == 1 ? "" : "s", ntrans > 1 ? ", in more than one transaction" : "");
	return err;
}

/* /lost+found's inode number: the one phase 4 found, else a new directory
 * made in the root (mode 0700, uid and gid 0, as e2fsck and xfs_repair
 * make it).  0 or -errno. */
static int get_lpf(struct fsck *f, struct rlfs_mount *lm, uint64_t *lpf)
{
	struct stat st;
	int err;

	if (f->lpf_ino) {
		*lpf = f->lpf_ino;
		return 0;
	}
	err = rlfs_mkdir(lm, lm->rootino, FSCK_LPF_NAME, FSCK_LPF_MODE, 0, 0, &st);
	if (err)
		return err;
	printf("%s: created /%s (inode %" PRIu64 ")\n", f->image, FSCK_LPF_NAME,
	       (uint64_t)st.st_ino);
	f->lpf_ino = st.st_ino;
	*lpf = st.st_ino;
	return 0;
}

/* Link one lost inode into /lost+found as "<ino>" (".1", ".2", ... added
 * while the name is taken), with its counts set, in one transaction.
 * 0 or -errno. */
static int link_lost(struct fsck *f, struct rlfs_mount *lm, struct rlfs_inode *lp,
		     const struct lostino *li)
{
	struct rlfs_inode *ip;
	struct rlfs_trans *tp;
	char name[40];
	uint64_t other;
	int err, len = 0;

	err = rlfs_iget(lm, li->ino, &ip);
	if (err)
		return err;
	if ((ip->mode & S_IFMT) != (li->mode & S_IFMT)) {
		rlfs_irele(ip);
		return -EUCLEAN;    /* changed since the check */
	}
	/* the two locks in inode order, as the library takes them */
	pthread_rwlock_wrlock(ip->ino < lp->ino ? &ip->iolock : &lp->iolock);
	pthread_rwlock_wrlock(ip->ino < lp->ino ? &lp->iolock : &ip->iolock);
	err = rlfs_trans_alloc(lm, &lm->resv.tr_link, rlfs_dir_res(lp), 0, &tp);
	if (err)
		goto out;
	rlfs_trans_ijoin(tp, lp);
	rlfs_trans_ijoin(tp, ip);
	for (unsigned k = 0; k < 1000; k++) {
		if (k)
			len = snprintf(name, sizeof(name), "%" PRIu64 ".%u", li->ino, k);
		else
			len = snprintf(name, sizeof(name), "%" PRIu64, li->ino);
		err = rlfs_dir_lookup(tp, lp, name, (size_t)len, &other, NULL);
		if (err != 0)
			break;
	}
	if (err == -ENOENT)
		err = rlfs_dir_add(tp, lp, name, (size_t)len, ip->ino, rlfs_mode_to_ftype(ip->mode));
	else if (!err)
		err = -EEXIST;
	if (err) {
		rlfs_trans_cancel(tp);
		goto out;
	}
	ip->nlink = li->nlink;
	if (S_ISDIR(ip->mode)) {
		ip->parent = lp->ino;
		lp->nlink++;
	}
	rlfs_now(&ip->ctime);
	rlfs_now(&lp->mtime);
	lp->ctime = lp->mtime;
	rlfs_trans_log_inode(tp, ip);
	rlfs_trans_log_inode(tp, lp);
	err = rlfs_trans_commit(tp);
	if (!err)
		printf("%s: inode %" PRIu64 " linked into /%s as '%s'\n", f->image, li->ino,
		       FSCK_LPF_NAME, name);
out:
	pthread_rwlock_unlock(&ip->iolock);
	pthread_rwlock_unlock(&lp->iolock);
	rlfs_irele(ip);
	return err;
}

int fsck_fix_dirs(struct fsck *f)
{
	struct rlfs_mount *lm;
	struct rlfs_inode *lp = NULL;
	uint64_t lpf;
	int err = 0, err2;

	if (!f->ndfixes && !f->nlostinos && !f->ndirrebuilds && !f->lpf_aside)
		return 0;
	err = rlfs_mount_open(f->image, RLFS_MOUNT_NOLOCK, &lm);
	if (err)
		return err;
	for (size_t i = 0; i < f->ndirrebuilds && !err; i++)
		err = rebuild_dir(f, lm, &f->dirrebuilds[i]);
	if (!err && f->lpf_aside && !fsck_dir_rebuilt(f, f->lpf_aside_entry.dir)) {
		/* (a rebuilt root did not get the entry back) */
		err = remove_entry(f, lm, &f->lpf_aside_entry);
		if (err)
			printf("%s: removing the root's entry 'lost+found' (inode %" PRIu64
			       ", not a directory) failed: %s\n", f->image,
			       f->lpf_aside_entry.child, fsck_errstr(err));
	}
	if (!err && f->lpf_aside)
		printf("%s: inode %" PRIu64 " was /lost+found but is not a directory: moved "
		       "aside\n", f->image, f->lpf_aside_entry.child);
	for (size_t i = 0; i < f->ndfixes && !err; i++) {
		if (fsck_dir_rebuilt(f, f->dfixes[i].dir))
			continue;   /* not put back by the rebuild */
		err = remove_entry(f, lm, &f->dfixes[i]);
		if (err)
			printf("%s: inode %" PRIu64 " (directory): removing the entry to inode %"
			       PRIu64 " failed: %s\n", f->image, f->dfixes[i].dir,
			       f->dfixes[i].child, fsck_errstr(err));
	}
	if (!err && (f->nlostinos || f->lpf_aside)) {
		err = get_lpf(f, lm, &lpf);
		if (!err)
			err = rlfs_iget(lm, lpf, &lp);
		if (!err && !S_ISDIR(lp->mode))
			err = -ENOTDIR;
		if (err)
			printf("%s: /%s: %s\n", f->image, FSCK_LPF_NAME, fsck_errstr(err));
	}
	for (size_t i = 0; i < f->nlostinos && !err; i++) {
		err = link_lost(f, lm, lp, &f->lostinos[i]);
		if (err)
			printf("%s: inode %" PRIu64 ": linking it into /%s failed: %s\n", f->image,
			       f->lostinos[i].ino, FSCK_LPF_NAME, fsck_errstr(err));
	}
	if (lp)
		rlfs_irele(lp);
	err2 = rlfs_mount_close(lm);
	return err ? err : err2;
}

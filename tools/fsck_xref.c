/*
 * fsck_xref.c: fsck phases 4 and 5, the cross-checks: the directory graph
 * from the root (entries, "..", link counts, reachability) and block
 * ownership (every claim swept: blocks claimed twice, free and used at
 * once, leaked; data-fork mappings against the refcount btree).
 * See fsck.c for the whole picture.
 */
#include "fsck_int.h"

/* ------------------------------------------------------------------ */
/* Phase 4: the directory graph                                        */

/* Note an inode core repair (nlink if set_nlink, parent if nonzero). */
static void add_ifix(struct fsck *f, uint64_t ino, bool set_nlink, uint32_t nlink,
		     uint64_t parent)
{
	struct ifix *n = fsck_grow(f, f->ifixes, &f->ifixes_cap, f->nifixes, sizeof(*n));

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

/*
 * The AGs' unlinked lists (SPEC section 5): each member an allocated inode
 * of that AG, nlink 0, named in no directory, listed once (no loop).  The
 * members of a good list are marked IE_LISTED: they are not orphans (the
 * next read-write mount frees them).  A broken list is a fixable finding:
 * repair empties it (head 0, the members' next pointers 0), and its
 * members are then ordinary orphans, freed as such.  Model: xfs_repair
 * phase 3 check of agi_unlinked (which also clears the buckets).
 */
static void check_unlinked(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	struct ientry **members = NULL;
	size_t cap = 0;

	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		struct ag_info *ai = &f->ags[agno];
		uint64_t cur, prev = 0;
		const char *why = NULL;
		size_t n = 0;

		if (!ai->hdr_ok)
			continue;
		for (cur = rlfs_get64(ai->agh.unlinked); cur; ) {
			struct ientry *ie = rlfs_iunlink_ino_ok(mp, agno, cur) ?
					    fsck_find_inode(f, cur) : NULL;

			if (!rlfs_iunlink_ino_ok(mp, agno, cur))
				why = "not an inode of this AG";
			else if (!ie)
				why = "not an allocated inode";
			else if (ie->flags & IE_BAD)
				why = "an inode that failed its checks";
			else if (ie->flags & IE_LISTED)
				why = "listed twice (the list loops)";
			else if (ie->nlink)
				why = "an inode with links";
			else if (ie->nref)
				why = "an inode named in a directory";
			if (why)
				break;
			struct ientry **nm = fsck_grow(f, members, &cap, n, sizeof(*nm));

			if (!nm)
				break;
			members = nm;
			members[n++] = ie;
			ie->flags |= IE_LISTED;
			prev = cur;
			cur = ie->next_unlinked;
		}
		if (!why) {
			f->nlisted += n;
			if (n)
				fsck_verbose(f, "AG %u: %zu inode%s on the unlinked list (freed at the "
					     "next read-write mount)", agno, n, n == 1 ? "" : "s");
			continue;
		}
		if (prev)
			FIXABLE(f, "AG %u: unlinked list broken: inode %" PRIu64 " is followed by %"
				PRIu64 ", %s", agno, prev, cur, why);
		else
			FIXABLE(f, "AG %u: unlinked list head %" PRIu64 " is %s", agno, cur, why);
		ai->fix_unlinked = true;
		f->nfix_unlinked++;
		for (size_t i = 0; i < n; i++) {
			members[i]->flags &= ~IE_LISTED;
			if (!members[i]->next_unlinked)
				continue;
			struct ifix *x = fsck_grow(f, f->ifixes, &f->ifixes_cap, f->nifixes,
						   sizeof(*x));

			if (!x)
				break;
			f->ifixes = x;
			f->ifixes[f->nifixes++] = (struct ifix){ .ino = members[i]->ino,
								 .clear_next = true };
		}
	}
	free(members);
}

/* Note a directory entry for repair to remove (fsck_dir.c). */
static void add_dfix(struct fsck *f, const struct edge *e)
{
	struct dfix *n = fsck_grow(f, f->dfixes, &f->dfixes_cap, f->ndfixes, sizeof(*n));

	if (!n)
		return;
	f->dfixes = n;
	f->dfixes[f->ndfixes++] = (struct dfix){ .dir = e->dir, .child = e->child,
						 .name_off = e->name_off, .namelen = e->namelen };
}

/* Mark start and everything below it IE_REACHED, breadth first (f->edges
 * sorted by directory; queue holds f->ninodes + 1 numbers). */
static void reach_from(struct fsck *f, struct ientry *start, uint64_t *queue)
{
	size_t qh = 0, qt = 0;

	start->flags |= IE_REACHED;
	queue[qt++] = start->ino;
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
			struct ientry *c = fsck_find_inode(f, f->edges[i].child);

			if (!c || (c->flags & IE_REACHED))
				continue;
			c->flags |= IE_REACHED;
			if (S_ISDIR(c->mode) && !(c->flags & IE_BAD) && qt <= f->ninodes)
				queue[qt++] = c->ino;
		}
	}
}

/*
 * /lost+found: the root's entry of that name.  A good directory: the one
 * lost inodes go into.  Absent, or an entry naming a free inode or none
 * (which phase 4 removes): repair makes it.  Something that is not a
 * directory (a file, a symlink, ...): moved aside as xfs_repair does
 * (phase 6 junks the root's entry "lost+found" that is not a directory
 * and makes a new one): the entry is removed and its inode loses that
 * name; named nowhere else, it is lost like any other inode and goes into
 * the new /lost+found under its number.  Runs before reachability, so
 * that the removed entry reaches nothing.  Returns why lost inodes cannot
 * be linked (an inode that failed its checks), or NULL.
 */
static const char *find_lpf(struct fsck *f, struct ientry *root)
{
	const char *lpf_bad = NULL;
	size_t lo = 0, hi = f->nedges;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->edges[mid].dir < root->ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < f->nedges && f->edges[i].dir == root->ino; i++) {
		struct edge *e = &f->edges[i];
		struct ientry *c;

		if (e->namelen != 10 || memcmp(f->names + e->name_off, "lost+found", 10) != 0)
			continue;
		c = fsck_find_inode(f, e->child);
		if (!c)
			continue;   /* the entry goes (a dfix), repair makes a new one */
		if (c->flags & IE_BAD) {
			lpf_bad = "/lost+found is an inode that failed its checks";
		} else if (S_ISDIR(c->mode)) {
			f->lpf_ino = c->ino;
		} else if (c->nlink == 0) {
			/* (its link count is fixed first; moved aside, it
			 * would be freed as an orphan) */
			lpf_bad = "/lost+found is not a directory (and has link count 0)";
		} else if (!f->dirs_incomplete && !f->lpf_aside) {
			FIXABLE(f, "inode %" PRIu64 " (root directory): 'lost+found' names inode %"
				PRIu64 " (mode 0%o), not a directory; repair moves it aside and "
				"makes a new /lost+found%s", root->ino, c->ino, c->mode,
				c->nref > 1 ? "" : " (the old one goes into it, as a lost inode)");
			f->lpf_aside = true;
			f->lpf_aside_entry = (struct dfix){ .dir = e->dir, .child = e->child,
				.name_off = e->name_off, .namelen = e->namelen };
			c->nref--;
			e->child = 0;   /* reaches nothing now */
		}
	}
	return lpf_bad;
}

/*
 * Lost inodes (e2fsck pass 3/4, xfs_repair phase 6): in use (nlink > 0),
 * not reached from the root and named by no directory at all.  Each such
 * inode is the top of what was cut off (a file, or a directory with its
 * subtree); repair links it into /lost+found under its inode number in
 * decimal (xfs_repair's naming; e2fsck says "#ino"), a directory's ".."
 * then names /lost+found.  Everything below a lost directory is reached
 * through it and judged as usual.  Only when every directory was read
 * (otherwise a name may sit in a block we could not read; a directory
 * whose tree is damaged has its readable entries salvaged, phase 3c, and
 * counts as read: what was only in the rest is lost), and when
 * /lost+found is a usable directory or can be made (find_lpf).  An
 * unreached inode that only unreached directories name (a cycle of
 * directories) is left as an error.
 */
static void find_lost(struct fsck *f, const char *lpf_bad, uint64_t *queue)
{
	if (f->dirs_incomplete)
		return;
	for (size_t i = 0; i < f->ninodes; i++) {
		struct ientry *ie = &f->inodes[i];
		struct lostino *n;

		if ((ie->flags & (IE_BAD | IE_REACHED)) || ie->nlink == 0 || ie->nref)
			continue;
		if (lpf_bad) {
			ERR(f, "inode %" PRIu64 ": in use (mode 0%o, nlink %u) but named by no "
			    "directory; not linked into /lost+found: %s", ie->ino, ie->mode,
			    ie->nlink, lpf_bad);
			ie->flags |= IE_REACHED | IE_LOST;  /* said once */
			continue;
		}
		n = fsck_grow(f, f->lostinos, &f->lostinos_cap, f->nlostinos, sizeof(*n));
		if (!n)
			return;
		f->lostinos = n;
		reach_from(f, ie, queue);
		ie->flags |= IE_LOST;
		f->lostinos[f->nlostinos++] = (struct lostino){ .ino = ie->ino, .mode = ie->mode,
			.nlink = S_ISDIR(ie->mode) ? 2 + ie->nsubdirs : 1 };
		FIXABLE(f, "inode %" PRIu64 ": in use (mode 0%o, nlink %u) but named by no "
			"directory; repair links it into /lost+found as '%" PRIu64 "'%s", ie->ino,
			ie->mode, ie->nlink, ie->ino,
			S_ISDIR(ie->mode) ? " (its \"..\" then names /lost+found)" : "");
	}
}

void fsck_check_graph(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	struct ientry *root = fsck_find_inode(f, mp->rootino);
	uint64_t *queue;

	/* entries: target exists, type, counts */
	for (size_t i = 0; i < f->nedges; i++) {
		struct edge *e = &f->edges[i];
		struct ientry *c = fsck_find_inode(f, e->child);
		struct ientry *d = fsck_find_inode(f, e->dir);
		char name[RLFS_NAME_MAX + 1];

		for (unsigned k = 0; k < e->namelen; k++) {
			char ch = f->names[e->name_off + k];

			name[k] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
		}
		name[e->namelen] = '\0';
		if (!c) {
			struct chunk *ch = fsck_find_chunk(f, e->child);
			/* an entry naming no inode at all goes, when every
			 * directory was read (e2fsck pass 2, xfs_repair
			 * phase 6): the directory is whole, and nothing it
			 * names loses a link */
			bool fix = !f->dirs_incomplete && d && !(d->flags & IE_BAD);
			const char *how = fix ? "; repair removes the entry" : "";

			if (ch && ((ch->free >> (e->child - ch->startino)) & 1))
				fsck_report(f, fix, "inode %" PRIu64 " (directory): entry '%s' "
					    "points at free inode %" PRIu64 "%s", e->dir, name,
					    e->child, how);
			else if (ch)
				ERR(f, "inode %" PRIu64 " (directory): entry '%s' points at inode %"
				    PRIu64 " which failed its checks", e->dir, name, e->child);
			else
				fsck_report(f, fix, "inode %" PRIu64 " (directory): entry '%s' "
					    "points at inode %" PRIu64 " which lies in no inode "
					    "chunk%s", e->dir, name, e->child, how);
			if (fix && (!ch || ((ch->free >> (e->child - ch->startino)) & 1)))
				add_dfix(f, e);
			continue;
		}
		if (c->mode && rlfs_mode_to_ftype(c->mode) != e->ftype)
			/* a rebuilt directory takes the type from the inode */
			fsck_report(f, fsck_dir_rebuilt(f, e->dir), "inode %" PRIu64 " (directory): "
				    "entry '%s' has file type %u but inode %" PRIu64 " has mode 0%o%s",
				    e->dir, name, e->ftype, e->child, c->mode,
				    fsck_dir_rebuilt(f, e->dir) ? "; the rebuild stores the inode's" : "");
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
	fsck_xsort(f->edges, f->nedges, sizeof(*f->edges), fsck_cmp_edge_dir);
	queue = malloc((f->ninodes + 1) * sizeof(*queue));
	if (!queue) {
		f->oom = true;
		return;
	}
	{
		const char *lpf_bad = find_lpf(f, root);

		reach_from(f, root, queue);
		find_lost(f, lpf_bad, queue);
	}
	free(queue);
	check_unlinked(f);

	/* link counts, parents, orphans */
	for (size_t i = 0; i < f->ninodes; i++) {
		struct ientry *ie = &f->inodes[i];

		if (ie->flags & (IE_BAD | IE_LOST))
			continue;   /* (a lost inode's counts: fsck_dir.c) */
		if (f->dirs_incomplete && (!(ie->flags & IE_REACHED) ||
		    (!S_ISDIR(ie->mode) && ie->nlink != ie->nref))) {
			f->nlink_suppressed++;
			continue;
		}
		if (!(ie->flags & IE_REACHED)) {
			if (ie->nlink == 0 && ie->nref == 0 && (ie->flags & IE_LISTED)) {
				/* on its AG's unlinked list: the mount frees it */
				continue;
			} else if (ie->nlink == 0 && ie->nref == 0) {
				/* unlinked while open when the filesystem stopped:
				 * repair frees it (as log recovery would) */
				uint64_t *n = fsck_grow(f, f->orphans, &f->orphans_cap, f->norphans,
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
				fsck_report(f, !f->dirs_incomplete, "inode %" PRIu64 " (directory): nlink "
				       "%u, expected %u (2 + %u subdirectories)", ie->ino, ie->nlink,
				       2 + ie->nsubdirs, ie->nsubdirs);
				if (!f->dirs_incomplete)
					add_ifix(f, ie->ino, true, 2 + ie->nsubdirs, 0);
			}
			if (ie->parent != ie->found_parent) {
				fsck_report(f, !f->dirs_incomplete, "inode %" PRIu64 " (directory): parent "
				       "(\"..\") is %" PRIu64 " but it is named in directory %"
				       PRIu64, ie->ino, ie->parent, ie->found_parent);
				if (!f->dirs_incomplete)
					add_ifix(f, ie->ino, false, 0, ie->found_parent);
			}
		} else if (ie->nlink != ie->nref) {
			fsck_report(f, !f->dirs_incomplete, "inode %" PRIu64 ": nlink %u but %u directory "
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
		ERR(f, "%s: %s %s", who, fsck_loc(f, start).s, what);
	else
		ERR(f, "%s: AG %u agbno %u-%u (fsbno %" PRIu64 "-%" PRIu64 ", %" PRIu64
		    " blocks) %s", who, rlfs_fsb_to_agno(mp, start), rlfs_fsb_to_agbno(mp, start),
		    rlfs_fsb_to_agbno(mp, end - 1), start, end - 1, end - start, what);
}

/* Leaks (and "not reported" notes) are the rebuild's: blocks no one owns
 * become free space. */
static void report_leak(struct fsck *f, uint64_t start, uint64_t end)
{
	struct rlfs_mount *mp = f->mp;

	RB_BEGIN(f);
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
	RB_END(f);
}

/* Claims the AG tree rebuild replaces (fsck_rebuild.c): free space, the
 * AGFL and the trees made anew; the rest (inode chunks, inobt blocks,
 * headers, the log and everything inodes own) it keeps as found. */
static bool rebuilt_kind(uint8_t kind)
{
	switch (kind) {
	case CL_FREE: case CL_AGFL: case CL_BNOBT: case CL_CNTBT: case CL_REFCBT:
	case CL_RMAPBT: case CL_STAGING:
		return true;
	}
	return false;
}

struct event {
	uint64_t pos;
	int delta;
};

static int cmp_event(const void *a, const void *b)
{
	const struct event *x = a, *y = b;

	return fsck_cmp_u64(x->pos, y->pos);
}

static int cmp_refc(const void *a, const void *b)
{
	const struct refc *x = a, *y = b;

	return fsck_cmp_u64(x->start, y->start);
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
	RB_BEGIN(f);                /* the rebuilt refcountbt counts the mappings */
	report_run(f, m->start, m->end, what, "refcount btree");
	RB_END(f);
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
 * RLFS_REFC_REFCOUNT_MAX may have fewer (it sticks there).  One AG at a
 * time: its data-fork mappings loaded from the store (never crossing the
 * AG's end), sorted, swept against its refcount records, freed.
 */
static void check_refcounts_ag(struct fsck *f, uint32_t agno, const struct refc *sh,
			       size_t nshared, struct mism *m)
{
	struct rlfs_mount *mp = f->mp;
	uint64_t ag0 = rlfs_agb_to_fsb(mp, agno, 0);
	struct claim *dcl;
	size_t nd, nev = 0;
	struct event *ev;
	uint64_t *segs; /* triples: start, end, count */
	size_t nsegs = 0;

	if (fsck_store_load(f, &f->dclaims, agno, true, &dcl, &nd))
		return;
	/* union into the main sweep */
	for (size_t i = 0; i < nd;) {
		struct claim u = dcl[i];
		uint64_t end = u.start + u.len;
		size_t j = i + 1;

		while (j < nd && dcl[j].start <= end) {
			uint64_t e = dcl[j].start + dcl[j].len;
			if (e > end)
				end = e;
			j++;
		}
		u.len = (uint32_t)(end - u.start);   /* within the AG */
		if (fsck_store_add(f, &f->claims, agno, &u)) {
			free(dcl);
			return;
		}
		i = j;
	}
	/* per-block mapping counts as runs */
	ev = malloc((2 * nd + 1) * sizeof(*ev));
	segs = malloc((2 * nd + 1) * 3 * sizeof(*segs));
	if (!ev || !segs) {
		free(ev);
		free(segs);
		free(dcl);
		f->oom = true;
		return;
	}
	for (size_t i = 0; i < nd; i++) {
		ev[nev++] = (struct event){ dcl[i].start, 1 };
		ev[nev++] = (struct event){ dcl[i].start + dcl[i].len, -1 };
	}
	free(dcl);
	fsck_xsort(ev, nev, sizeof(*ev), cmp_event);
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
	/* sweep both sorted, non-overlapping lists */
	size_t si = 0, ri = 0;
	uint64_t pos = ag0;
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
			mism_add(f, m, a, b, dc, rc);
		pos = b;
		if (si < nsegs && segs[3 * si + 1] <= pos)
			si++;
		if (ri < nshared && sh[ri].start + sh[ri].len <= pos)
			ri++;
	}
	free(segs);
}

void fsck_check_refcounts(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	struct mism m = { 0 };

	if (!f->reflink)
		return;
	/* each AG's data-fork mappings against its shared refcount records
	 * (a record lies inside its AG: phase 2 checked it) */
	for (uint32_t agno = 0; agno < mp->agcount && !f->oom; agno++) {
		void *recs;
		struct refc *sh;
		size_t n, nshared = 0;

		if (fsck_store_load_raw(f, &f->refcs, agno, &recs, &n))
			break;
		sh = recs;
		fsck_xsort(sh, n, sizeof(*sh), cmp_refc);
		for (size_t i = 0; i < n; i++)     /* shared records only */
			if (!sh[i].cow)
				sh[nshared++] = sh[i];
		check_refcounts_ag(f, agno, sh, nshared, &m);
		free(recs);
	}
	mism_flush(f, &m);
}

/* The ownership sweep of one AG: its claims (never crossing its end)
 * sorted by start; overlaps and unclaimed runs reported. */
static void check_claims_ag(struct fsck *f, uint32_t agno)
{
	struct rlfs_mount *mp = f->mp;
	uint64_t ag0 = rlfs_agb_to_fsb(mp, agno, 0), agend = ag0 + rlfs_ag_blocks(mp, agno);
	struct claim *cl, *top = NULL;
	uint64_t maxend = ag0;
	size_t n;

	if (fsck_store_load(f, &f->claims, agno, true, &cl, &n))
		return;
	for (size_t i = 0; i < n; i++) {
		struct claim *c = &cl[i];
		uint64_t end = c->start + c->len;

		if (c->start > maxend)
			report_leak(f, maxend, c->start);
		if (top && c->start < maxend) {
			char d1[128], d2[160], what[200];
			bool free1 = c->kind == CL_FREE || c->kind == CL_AGFL;
			bool free2 = top->kind == CL_FREE || top->kind == CL_AGFL;

			fsck_claim_desc(c, d1, sizeof(d1));
			fsck_claim_desc(top, d2, sizeof(d2));
			if (free1 != free2)
				snprintf(what, sizeof(what), "free and used at once (also %s)", d2);
			else
				snprintf(what, sizeof(what), "claimed twice (also %s)", d2);
			/* free space (or a leaked CoW staging extent) against
			 * anything, or two trees the rebuild replaces: it keeps
			 * the other owner.  A kept owner against a rebuilt tree
			 * (a file's data in a bnobt block: which content is
			 * there?) or two kept owners: left alone */
			bool rb = free1 || free2 || c->kind == CL_STAGING || top->kind == CL_STAGING ||
				  (rebuilt_kind(c->kind) && rebuilt_kind(top->kind));
			if (rb)
				RB_BEGIN(f);
			report_run(f, c->start, RLFS_MIN(end, maxend), what, d1);
			if (rb)
				RB_END(f);
		}
		if (end > maxend) {
			maxend = end;
			top = c;
		}
	}
	if (maxend < agend)
		report_leak(f, maxend, agend);
	free(cl);
}

void fsck_check_claims(struct fsck *f)
{
	for (uint32_t agno = 0; agno < f->mp->agcount && !f->oom; agno++)
		check_claims_ag(f, agno);
	if (f->leaked_runs)
		ERR(f, "space map: %" PRIu64 " blocks in %" PRIu64 " runs are neither free nor "
		    "in use; not listed, as some inode metadata could not be read",
		    f->leaked_blocks, f->leaked_runs);
}

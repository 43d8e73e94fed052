/*
 * fsck_inode.c: fsck phase 3: every inode slot of every inobt chunk (crc,
 * magic, free mask against mode, format) and what an inode owns: data
 * extents or bmbt, directory tree, xattrs, symlink target, block counts.
 * See fsck.c for the whole picture.
 */
#include "fsck_int.h"

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
		    "stopped walking", w->ip->ino, fsck_claim_kind_name(w->kind));
		return 1;
	}
	fsck_add_claim(w->f, w->kind, w->ip->ino, 0, bp->fsbno, 1);
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
			    "header block", ino, off, fsck_loc(f, b).s);
			break;
		}
	w->owned += len;
	/* symlink target blocks are metadata: one owner, never shared */
	fsck_add_claim_flags(f, kind == CL_DATA && w->collect ? CL_SYMLINK : kind,
			     (state & RLFS_EXT_UNWRITTEN) ? CLF_UNWRITTEN : 0, ino, off, fsb, len);
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
	err = fsck_check_and_walk(w->f, tp, ops, 0, w->ip, NULL, &v, where);
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
	ne = fsck_grow(f, f->edges, &f->edges_cap, f->nedges, sizeof(*ne));
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
	fsck_add_claim(f, kind, ino, 0, fsbno, nblk);
	w->owned += nblk;
	for (uint64_t i = 0; i < nblk; i++) {
		struct rlfs_buf *bp;
		const struct rlfs_remote_hdr *h;
		uint64_t want = RLFS_MIN((uint64_t)per, bytes - RLFS_MIN(bytes, i * per));
		int err = rlfs_trans_read_buf(tp, fsbno + i, &rlfs_remote_buf_ops, ino, &bp);

		if (err) {
			ERR(f, "inode %" PRIu64 " (%s): %s: %s", ino, what, fsck_loc(f, fsbno + i).s,
			    fsck_errstr(err));
			w->bad = true;
			continue;
		}
		h = bp->data;
		if (rlfs_get32(h->offset) != i * per || rlfs_get32(h->bytes) != want) {
			ERR(f, "inode %" PRIu64 " (%s): %s: header says offset %u bytes %u, "
			    "expected %" PRIu64 " and %" PRIu64, ino, what, fsck_loc(f, fsbno + i).s,
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
		    fsck_errstr(err));
	} else if (rlfs_iext_count(&ip->iext) != w->nrecs) {
		ERR(f, "inode %" PRIu64 " (data fork): nextents %u but the library loads %u "
		    "extents (the inline list must end with a zero record)", ip->ino, nextents,
		    rlfs_iext_count(&ip->iext));
	} else if (ip->format == RLFS_FMT_BTREE) {
		err = rlfs_bmap_check(tp, ip);
		if (err)
			ERR(f, "inode %" PRIu64 " (bmbt): rlfs_bmap_check failed: %s", ip->ino,
			    fsck_errstr(err));
	}
	rlfs_iext_destroy(&ip->iext);
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
			ERR(f, "inode %" PRIu64 " (symlink block): %s: %s", ip->ino, fsck_loc(f, fsbno).s,
			    fsck_errstr(err));
			continue;
		}
		h = bp->data;
		if (rlfs_get32(h->offset) != off * per || rlfs_get32(h->bytes) != want)
			ERR(f, "inode %" PRIu64 " (symlink block): %s: header says offset %u bytes "
			    "%u, expected %" PRIu64 " and %" PRIu64, ip->ino, fsck_loc(f, fsbno).s,
			    rlfs_get32(h->offset), rlfs_get32(h->bytes), off * per, want);
		else if (memchr((const uint8_t *)bp->data + sizeof(*h), '\0', want))
			ERR(f, "inode %" PRIu64 " (symlink block): %s: target contains a NUL byte",
			    ip->ino, fsck_loc(f, fsbno).s);
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
	ip->extsize_blocks = rlfs_get32(di->extsize_blocks);
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

/*
 * The flags and extent size hints as XFS's verifier
 * (xfs_inode_validate_extsize and _cowextsize): known bits only, each hint
 * flag on the file types it fits, a hint non-zero with its flag and zero
 * without, at most 2^21 - 1 blocks and half an AG.  Repair clears unknown
 * bits and resets a bad hint (its flags and field to 0), as xfs_repair
 * resets a bad extent size hint: fixable findings.
 */
static void check_flags(struct fsck *f, const struct rlfs_inode *ip, uint64_t ino)
{
	struct rlfs_mount *mp = f->mp;
	struct ifix x = { .ino = ino };
	const uint32_t ext = RLFS_DIFLAG_EXTSIZE | RLFS_DIFLAG_EXTSZINHERIT;

	if (ip->flags & ~(uint32_t)RLFS_DIFLAG_ALL) {
		FIXABLE(f, "inode %" PRIu64 ": unknown flags 0x%x; repair clears them", ino,
			ip->flags & ~(uint32_t)RLFS_DIFLAG_ALL);
		x.clear_diflags |= ~(uint32_t)RLFS_DIFLAG_ALL;
	}
	if (rlfs_extsize_valid(mp, ip->mode, ip->flags, ip->extsize_blocks)) {
		FIXABLE(f, "inode %" PRIu64 ": extent size hint %u blocks invalid for mode 0%o "
			"flags 0x%x; repair resets it", ino, ip->extsize_blocks, ip->mode,
			ip->flags);
		x.clear_diflags |= ext;
		x.zero_extsize = true;
	}
	if (rlfs_cowextsize_valid(mp, ip->mode, ip->flags, ip->cowextsize_blocks)) {
		FIXABLE(f, "inode %" PRIu64 ": CoW extent size hint %u blocks invalid for mode "
			"0%o flags 0x%x; repair resets it", ino, ip->cowextsize_blocks, ip->mode,
			ip->flags);
		x.clear_diflags |= RLFS_DIFLAG_COWEXTSIZE;
		x.zero_cowextsize = true;
	}
	if (!x.clear_diflags)
		return;
	struct ifix *n = fsck_grow(f, f->ifixes, &f->ifixes_cap, f->nifixes, sizeof(*n));
	if (!n)
		return;
	f->ifixes = n;
	f->ifixes[f->nifixes++] = x;
	f->nfix_hints++;
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
	bool fork_lost = false;
	bool dir_rebuild = false;   /* directory tree damaged: phase 3c, rebuilt */
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
	check_flags(f, &ip, ino);
	if (ip.forkoff > litsz) {
		ERR(f, "inode %" PRIu64 ": forkoff %u beyond the literal area (%u bytes)", ino,
		    ip.forkoff, litsz);
		ie->flags |= IE_BAD;
		goto out_free;
	}
	err = rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp);
	if (err) {
		ERR(f, "inode %" PRIu64 ": cannot start a transaction: %s", ino, fsck_errstr(err));
		goto out_free;
	}

	switch (type) {
	case S_IFREG: {
		struct fsck_mark mark = FSCK_MARK(f);

		f->n_files++;
		if (walk_data_fork(&w, tp, nextents)) {
			check_bmap_load(&w, tp, nextents);
		} else if (ip.nlink && fsck_fork_recoverable(f)) {
			/* (an orphan, nlink 0, is freed by repair instead, which
			 * needs its fork: it stays damaged) */
			/* phase 3b takes the mappings from the rmap: forget what
			 * the broken walk claimed (the findings stay printed) */
			fsck_rewind(f, &mark);
			w.owned = 0;
			w.nrecs = 0;
			w.bad = false;
			fork_lost = true;
		} else {
			ie->flags |= IE_BAD;
			w.bad = true;
		}
		if (ip.size > mp->maxbytes)
			ERR(f, "inode %" PRIu64 ": size %" PRIu64 " beyond the largest file size %"
			    PRIu64, ino, ip.size, mp->maxbytes);
		break;
	}
	case S_IFDIR:
		f->n_dirs++;
		if (ip.format == RLFS_FMT_BTREE) {
			struct fsck_mark mark = FSCK_MARK(f);
			size_t nedges = f->nedges, names_len = f->names_len;

			bool rootok = root_ok(f, ino, ip.root, ip.root_level, "directory");

			if (rootok)
				walk_inode_tree(&w, tp, &rlfs_dirbt_ops, CL_DIRBT, dir_rec_cb,
						NULL);
			if (!rootok && !f->oom) {
				/* a root pointer out of the filesystem: nothing to
				 * walk from it; phase 3c finds the leaves through
				 * the rmap (none without it: every entry is lost)
				 * and repair rebuilds the tree (root 0: the
				 * library loads it without its fork); the
				 * finding printed stays, the salvage's line
				 * counts it */
				fsck_rewind(f, &mark);
				ip.root = 0;
				dir_rebuild = true;
			} else if (!rootok) {
				w.bad = true;
			} else if ((w.bad || f->nerrors != mark.nerrors) && !f->oom) {
				/* damaged tree or entries: phase 3c takes what
				 * can be read (and claims the old blocks known to
				 * be the directory's), repair rebuilds the tree
				 * from it (the findings stay printed) */
				fsck_rewind(f, &mark);
				f->nedges = nedges;
				f->names_len = names_len;
				w.owned = 0;
				w.nrecs = 0;
				w.bad = false;
				dir_rebuild = true;
			}
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
	if (dir_rebuild && !w.bad) {
		/* nblocks is rewritten by the rebuild (w.owned: the blocks
		 * outside the tree, then counted by the library as entries go
		 * back in) */
		if (fsck_dir_rebuild_queue(f, ino, ip.root, w.owned))
			f->oom = true;
		f->used_blocks += w.owned;
		goto out_free;
	}
	if (dir_rebuild)
		f->dirs_incomplete = true;  /* its xattrs unread: not rebuilt */
	if (fork_lost) {
		/* nblocks is rewritten by the rebuild; the data fork's blocks
		 * are counted in phase 3b */
		if (fsck_fork_lost(f, ino, w.owned))
			f->oom = true;
		f->used_blocks += w.owned;
		goto out_free;
	}
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

/*
 * An inode whose core failed verification (the one finding just made):
 * may repair clear it (e2fsck's "clear inode", xfs_repair's clearing of
 * a bad inode)?  A slot the inobt marks free: always (its core only has
 * to be a valid free inode again; a fixable finding).  An inode in use:
 * with the rmapbt, when every AG's header and rmapbt checked clean and it
 * is not the root: the rmapbt still names its blocks, which the AG tree
 * rebuild then frees (nothing claims them), the entries naming it are
 * removed (it is free now) and, if it was a directory, what it named goes
 * to /lost+found.  Its contents are lost, as with e2fsck.  A rebuild
 * finding (the rebuilt inobt marks it free).  true: handled (marked free
 * in ch, queued for fsck_clear_inodes), the caller skips the inode.
 */
static bool clear_bad_inode(struct fsck *f, struct chunk *ch, uint32_t i, bool isfree)
{
	uint64_t ino = ch->startino + i;
	uint64_t *n;

	if (!isfree && (ino == f->mp->rootino || !fsck_fork_recoverable(f)))
		return false;
	n = fsck_grow(f, f->cleared, &f->cleared_cap, f->ncleared, sizeof(*n));
	if (!n)
		return false;
	f->cleared = n;
	f->cleared[f->ncleared++] = ino;
	f->nerrors--;               /* the finding just made: counted below */
	ch->free |= 1ull << i;
	if (isfree) {
		FIXABLE(f, "inode %" PRIu64 ": a free inode whose core is damaged; repair writes "
			"it anew as a free inode", ino);
		return true;
	}
	RB_BEGIN(f);
	ERR(f, "inode %" PRIu64 ": in use but damaged beyond use; repair clears it: the blocks "
	    "the rmapbt gives it are freed and directory entries naming it removed", ino);
	RB_END(f);
	return true;
}

/* Every inode of every chunk, read raw so that each is judged alone. */
void fsck_check_inodes(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	uint64_t cached = UINT64_MAX;
	bool cached_ok = false;

	if (!blk) {
		f->oom = true;
		return;
	}
	fsck_xsort(f->chunks, f->nchunks, sizeof(*f->chunks), fsck_cmp_chunk);
	for (size_t c = 0; c < f->nchunks && !f->oom; c++) {
		struct chunk *ch = &f->chunks[c];

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
					ERR(f, "%s (inode cluster): cannot read", fsck_loc(f, fsbno).s);
			}
			if (!cached_ok)
				continue;
			di = (const void *)(blk + (size_t)slot * mp->inodesize);
			if (rlfs_get32(di->magic) != RLFS_DINODE_MAGIC) {
				ERR(f, "inode %" PRIu64 " (%s slot %u): bad magic 0x%08x", ino,
				    fsck_loc(f, fsbno).s, slot, rlfs_get32(di->magic));
				bad = true;
			} else if (rlfs_get64(di->ino) != ino) {
				ERR(f, "inode %" PRIu64 " (%s slot %u): records inode number %" PRIu64,
				    ino, fsck_loc(f, fsbno).s, slot, rlfs_get64(di->ino));
				bad = true;
			}
			if (!bad && !rlfs_cksum_verify(di, mp->inodesize,
						       offsetof(struct rlfs_dinode, crc))) {
				ERR(f, "inode %" PRIu64 " (%s slot %u): bad crc", ino, fsck_loc(f, fsbno).s,
				    slot);
				bad = true;
			}
			if (!bad && memcmp(di->uuid, mp->uuid, RLFS_UUID_SIZE) != 0) {
				ERR(f, "inode %" PRIu64 " (%s slot %u): uuid is not this filesystem's",
				    ino, fsck_loc(f, fsbno).s, slot);
				bad = true;
			}
			if (bad && clear_bad_inode(f, ch, i, isfree))
				continue;
			mode = rlfs_get32(di->mode);
			if (ch->recovered) {
				/* no inobt record: the mode says (a bad inode
				 * counts as in use, and stops any rebuild) */
				isfree = !bad && mode == 0;
				if (isfree)
					ch->free |= 1ull << i;
			}
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
				struct ientry *ne = fsck_grow(f, f->inodes, &f->inodes_cap, f->ninodes,
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
				ie->next_unlinked = rlfs_get64(di->next_unlinked);
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

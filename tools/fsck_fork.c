/*
 * fsck_fork.c: a regular file's data fork recovered from the rmap btree
 * (RMAP feature): fsck phase 3b and its repair.  Seed 001's promise: "the
 * large record size will enable us to reconstruct corrupt block mapping
 * btrees".
 *
 * Phase 3 (fsck_inode.c) walks every data fork.  When a regular file's
 * fork cannot be walked (a damaged bmbt block, a bad root) and every AG's
 * rmap btree checked clean in phase 2, the walk's partial claims and
 * findings are dropped and the inode is queued here (fsck_fork_lost)
 * instead of being marked bad.  Phase 3b (fsck_recover_forks) reads every
 * AG's rmap btree once and takes, for each queued inode, its data-fork
 * records (the file's mappings: file offset, blocks, unwritten flag) and
 * its bmbt-block records (the old bmbt's blocks, damaged one included).
 * Those become the inode's claims, so phases 4-5 judge the file as if its
 * fork had been read: refcounts of shared blocks, ownership, the rmap
 * cross-check.  Each queued inode is one fixable finding.
 *
 * Repair (fsck_fix_forks, after the raw repairs of fsck_repair.c) opens a
 * library mount, as the orphan frees do, and per inode in one transaction:
 * loads the inode without its fork (rlfs_iget_fork_lost), frees the old
 * bmbt blocks and installs the recovered extents, with a new bmbt when
 * they do not fit inline (rlfs_bmap_repair_fork).  Data blocks, their
 * refcounts and their rmap records are not touched: they already say what
 * the new fork says.  The re-check after repair then proves it.
 *
 * Not recovered this way: directories, symlinks and xattr trees (their
 * contents are not in the rmap), a file whose rmap records overlap in file
 * offset (the rmap is then as suspect as the fork), and a fork whose new
 * bmbt would not fit one log checkpoint (rlfs_bmap_repair_fits: reported
 * as an error, its claims still taken from the rmap).
 *
 * Model: xfs_repair's phase 4 rebuilding a data fork from reverse mappings
 * (xfsprogs repair/rmap.c, repair/bmap_repair.c) and online repair's
 * xrep_bmap (fs/xfs/scrub/bmap_repair.c).
 */
#include "fsck_int.h"

/* One file whose data fork is rebuilt from the rmap. */
struct lost_fork {
	uint64_t ino;
	uint64_t other_blocks;      /* blocks owned outside the data fork (xattrs) */
	struct rlfs_irec *ext;      /* data mappings from the rmap (fsbno) */
	uint32_t next, ext_cap;
	struct rlfs_irec *bmbt;     /* old bmbt block runs (startblock, blockcount) */
	uint32_t nbmbt, bmbt_cap;
	bool too_big;               /* its new bmbt would not fit one checkpoint */
};

bool fsck_fork_recoverable(const struct fsck *f)
{
	const struct rlfs_mount *mp = f->mp;

	if (!(mp->features_incompat & RLFS_FEAT_INCOMPAT_RMAP))
		return false;
	for (uint32_t agno = 0; agno < mp->agcount; agno++)
		if (!f->ags[agno].hdr_ok || !f->ags[agno].rmap_ok)
			return false;
	return true;
}

int fsck_fork_lost(struct fsck *f, uint64_t ino, uint64_t other_blocks)
{
	struct lost_fork *nl = fsck_grow(f, f->lost, &f->lost_cap, f->nlost, sizeof(*nl));

	if (!nl)
		return -ENOMEM;
	f->lost = nl;
	f->lost[f->nlost++] = (struct lost_fork){ .ino = ino, .other_blocks = other_blocks };
	return 0;
}

static int cmp_lost(const void *a, const void *b)
{
	return fsck_cmp_u64(((const struct lost_fork *)a)->ino,
			    ((const struct lost_fork *)b)->ino);
}

static int cmp_irec_off(const void *a, const void *b)
{
	return fsck_cmp_u64(((const struct rlfs_irec *)a)->startoff,
			    ((const struct rlfs_irec *)b)->startoff);
}

static struct lost_fork *find_lost(struct fsck *f, uint64_t ino)
{
	size_t lo = 0, hi = f->nlost;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (f->lost[mid].ino == ino)
			return &f->lost[mid];
		if (f->lost[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static bool push_irec(struct fsck *f, struct rlfs_irec **a, uint32_t *n, uint32_t *cap,
		      const struct rlfs_irec *r)
{
	size_t c = *cap;
	struct rlfs_irec *na;

	if (*n == UINT32_MAX)
		return false;
	na = fsck_grow(f, *a, &c, *n, sizeof(*na));
	if (!na)
		return false;
	*a = na;
	*cap = (uint32_t)RLFS_MIN(c, (size_t)UINT32_MAX);
	(*a)[(*n)++] = *r;
	return true;
}

struct scan {
	struct fsck *f;
	uint32_t agno;
};

static int scan_rec(const struct rlfs_rmap_irec *ir, void *priv)
{
	struct scan *s = priv;
	struct fsck *f = s->f;
	struct lost_fork *lf;
	struct rlfs_irec r;

	if (ir->owner >= RLFS_RMAP_OWN_MIN || (ir->offset & RLFS_RMAP_OFF_ATTR_FORK))
		return 0;
	lf = find_lost(f, ir->owner);
	if (!lf)
		return 0;
	r = (struct rlfs_irec){
		.startoff = RLFS_RMAP_OFF(ir->offset),
		.startblock = rlfs_agb_to_fsb(f->mp, s->agno, ir->startblock),
		.blockcount = ir->blockcount,
		.state = (ir->offset & RLFS_RMAP_OFF_UNWRITTEN) ? RLFS_EXT_UNWRITTEN : 0,
	};
	if (ir->offset & RLFS_RMAP_OFF_BMBT_BLOCK) {
		r.startoff = 0;
		if (!push_irec(f, &lf->bmbt, &lf->nbmbt, &lf->bmbt_cap, &r))
			return -ENOMEM;
	} else if (!push_irec(f, &lf->ext, &lf->next, &lf->ext_cap, &r)) {
		return -ENOMEM;
	}
	return 0;
}

/* Split rmap records longer than a bmbt extent may be (the rmap's length
 * limit is larger); the library merges what it can. */
static bool split_long(struct fsck *f, struct lost_fork *lf)
{
	for (uint32_t i = 0; i < lf->next; i++) {
		struct rlfs_irec *r = &lf->ext[i];

		if (r->blockcount > RLFS_MAX_EXTLEN) {
			struct rlfs_irec tail = *r;

			tail.startoff += RLFS_MAX_EXTLEN;
			tail.startblock += RLFS_MAX_EXTLEN;
			tail.blockcount -= RLFS_MAX_EXTLEN;
			r->blockcount = RLFS_MAX_EXTLEN;
			if (!push_irec(f, &lf->ext, &lf->next, &lf->ext_cap, &tail))
				return false;
		}
	}
	fsck_xsort(lf->ext, lf->next, sizeof(*lf->ext), cmp_irec_off);
	return true;
}

void fsck_recover_forks(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;

	if (!f->nlost)
		return;
	fsck_xsort(f->lost, f->nlost, sizeof(*f->lost), cmp_lost);
	for (uint32_t agno = 0; agno < mp->agcount && !f->oom; agno++) {
		struct scan s = { f, agno };
		int err = fsck_rmap_walk(f, agno, scan_rec, &s);

		if (err == -ENOMEM) {
			f->oom = true;
		} else if (err) {
			/* phase 2 read this tree: it changed under us, or ENOMEM */
			ERR(f, "AG %u (rmapbt): cannot read the records again: %s", agno,
			    fsck_errstr(err));
			f->incomplete = true;
			return;
		}
	}
	if (f->oom)
		return;
	for (size_t i = 0; i < f->nlost; i++) {
		struct lost_fork *lf = &f->lost[i];
		uint64_t data = 0, old = 0;
		bool overlap = false;

		if (!split_long(f, lf))
			return;
		for (uint32_t k = 0; k < lf->next; k++) {
			const struct rlfs_irec *r = &lf->ext[k];

			if (k && lf->ext[k - 1].startoff + lf->ext[k - 1].blockcount > r->startoff)
				overlap = true;
			data += r->blockcount;
		}
		for (uint32_t k = 0; k < lf->nbmbt; k++)
			old += lf->bmbt[k].blockcount;
		if (overlap) {
			/* two records claim one file block: the rmap cannot say
			 * which is right, so the file stays damaged */
			ERR(f, "inode %" PRIu64 ": data fork unreadable, and its rmap records "
			    "overlap in file offset: not rebuilt", lf->ino);
			f->incomplete = true;
			lf->next = 0;
			lf->nbmbt = 0;
			lf->ino = 0;
			continue;
		}
		if (!overlap && rlfs_get32(f->sb.log_blocks) &&
		    !rlfs_bmap_repair_fits(mp, lf->next, rlfs_get32(f->sb.log_blocks))) {
			/* the claims still come from the rmap: the rest of the
			 * check stays meaningful */
			ERR(f, "inode %" PRIu64 ": data fork unreadable; the rmap holds its %u "
			    "extents, but a bmbt that large does not fit one checkpoint of "
			    "the %u-block log: not rebuilt", lf->ino, lf->next,
			    rlfs_get32(f->sb.log_blocks));
			lf->too_big = true;
		}
		for (uint32_t k = 0; k < lf->next; k++) {
			const struct rlfs_irec *r = &lf->ext[k];

			fsck_add_claim_flags(f, CL_DATA, r->state ? CLF_UNWRITTEN : 0, lf->ino,
					     r->startoff, r->startblock, r->blockcount);
		}
		for (uint32_t k = 0; k < lf->nbmbt; k++)
			fsck_add_claim(f, CL_BMBT, lf->ino, 0, lf->bmbt[k].startblock,
				       lf->bmbt[k].blockcount);
		f->used_blocks += data + old;
		if (lf->too_big)
			continue;
		f->nfix_forks++;
		FIXABLE(f, "inode %" PRIu64 ": data fork unreadable; the rmap holds its %u "
			"extent%s (%" PRIu64 " block%s): repair rebuilds the fork from them "
			"and frees the old bmbt (%" PRIu64 " block%s)", lf->ino, lf->next,
			lf->next == 1 ? "" : "s", data, data == 1 ? "" : "s", old,
			old == 1 ? "" : "s");
	}
}

/* One inode, one transaction. */
static int fix_fork(struct fsck *f, struct rlfs_mount *lm, const struct lost_fork *lf)
{
	uint64_t data = 0;
	struct rlfs_trans *tp;
	struct rlfs_inode *ip;
	int err;

	for (uint32_t k = 0; k < lf->next; k++)
		data += lf->ext[k].blockcount;
	err = rlfs_trans_alloc(lm, &lm->resv.tr_fsck, lf->next / 32 + 8, 0, &tp);
	if (err)
		return err;
	err = rlfs_iget_fork_lost(tp, lf->ino, &ip);
	if (err) {
		rlfs_trans_cancel(tp);
		return err;
	}
	pthread_rwlock_wrlock(&ip->iolock);
	rlfs_trans_ijoin(tp, ip);
	ip->nblocks = lf->other_blocks + data;
	err = rlfs_bmap_repair_fork(tp, ip, lf->ext, lf->next, lf->bmbt, lf->nbmbt);
	if (err)
		rlfs_trans_cancel(tp);
	else
		err = rlfs_trans_commit(tp);
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	if (!err)
		fsck_verbose(f, "inode %" PRIu64 ": data fork rebuilt (%u extents)", lf->ino,
			     lf->next);
	return err;
}

int fsck_fix_forks(struct fsck *f)
{
	struct rlfs_mount *lm;
	int err = 0, err2;

	if (!f->nfix_forks)
		return 0;
	err = rlfs_mount_open(f->image, RLFS_MOUNT_NOLOCK, &lm);
	if (err)
		return err;
	for (size_t i = 0; i < f->nlost && !err; i++) {
		if (!f->lost[i].ino || f->lost[i].too_big)
			continue;
		err = fix_fork(f, lm, &f->lost[i]);
		if (err)
			printf("%s: inode %" PRIu64 ": rebuilding the data fork failed: %s%s\n",
			       f->image, f->lost[i].ino, fsck_errstr(err),
			       err == -EFBIG ? " (its bmbt would not fit one log checkpoint)" : "");
	}
	err2 = rlfs_mount_close(lm);
	return err ? err : err2;
}

void fsck_free_lost(struct fsck *f)
{
	for (size_t i = 0; i < f->nlost; i++) {
		free(f->lost[i].ext);
		free(f->lost[i].bmbt);
	}
	free(f->lost);
	f->lost = NULL;
	f->nlost = f->lost_cap = 0;
}

/*
 * fsmap.c: GETFSMAP over the rmap btree; see reflinkfs/fsmap.h for the
 * contract.
 *
 * One pass over the AGs the key range touches, each under its own
 * read-only transaction: an rmap range query from the low key (in the
 * first AG) to the high key (in the last), every record converted to a
 * struct fsmap (bytes, XFS special-owner values, FMR_OF_* flags; written
 * file data asks the refcount tree whether any of its blocks is shared,
 * as XFS does), and the holes between records reported as free space.
 * next (bytes) is the end of the highest record seen so far: a record
 * starting beyond it leaves a gap, which is free space (the rmap covers
 * every used block); overlapping (shared) records move it forward only
 * as far as the furthest end.  The trailing gap of the range is reported
 * after the last AG's query.
 *
 * A fresh query (low's fmr_length 0) reads the low block from owner 0:
 * records there that lie wholly below the low key (one block, lower
 * owner) are not reported but move next, so their block is not taken for
 * free space; records the key range overlaps are reported, as in XFS.
 *
 * Continuing from the last record of a previous call (low's fmr_length
 * nonzero): a record that cannot be shared (special owner, extent-map
 * block) moves the start to its end, owner 0; a file data record keeps
 * its start and owner and moves the offset past it, and records that
 * the query returns but that sort before that key (the ones already
 * reported, or that start before it and overlap it) only move next
 * forward.  So a call resumes exactly after the last record even among
 * overlapping shared records, and never reports a free gap twice.
 *
 * Model: the kernel's fs/xfs/xfs_fsmap.c (xfs_getfsmap, the datadev
 * rmapbt backend, xfs_getfsmap_helper, xfs_getfsmap_check_keys,
 * xfs_fsmap_owner_{to,from}_rmap); own code.
 */
#include "reflinkfs/fsmap.h"

#include <errno.h>
#include <string.h>

#include "refcount.h"
#include "rlfs.h"
#include "rmap.h"
#include "trans.h"

/* Special owners: rmap value <-> fsmap value. */
static const struct {
	uint64_t rmap, fmr;
} owners[] = {
	{ RLFS_RMAP_OWN_NULL, RLFS_FMR_OWN_FREE },
	{ RLFS_RMAP_OWN_UNKNOWN, RLFS_FMR_OWN_UNKNOWN },
	{ RLFS_RMAP_OWN_FS, RLFS_FMR_OWN_FS },
	{ RLFS_RMAP_OWN_LOG, RLFS_FMR_OWN_LOG },
	{ RLFS_RMAP_OWN_AG, RLFS_FMR_OWN_AG },
	{ RLFS_RMAP_OWN_INOBT, RLFS_FMR_OWN_INOBT },
	{ RLFS_RMAP_OWN_INODES, RLFS_FMR_OWN_INODES },
	{ RLFS_RMAP_OWN_REFC, RLFS_FMR_OWN_REFC },
	{ RLFS_RMAP_OWN_COW, RLFS_FMR_OWN_COW },
};
#define NOWNERS (sizeof(owners) / sizeof(owners[0]))

/* A key's owner as an rmap owner (xfs_fsmap_owner_to_rmap): 0 and ~0 are
 * "lowest" and "highest", DEFECTIVE and unknown values are -EINVAL. */
static int owner_to_rmap(const struct fsmap *k, uint64_t *owner)
{
	if (!(k->fmr_flags & FMR_OF_SPECIAL_OWNER) || k->fmr_owner == 0 ||
	    k->fmr_owner == UINT64_MAX) {
		*owner = k->fmr_owner;
		return 0;
	}
	for (size_t i = 0; i < NOWNERS; i++)
		if (owners[i].fmr == k->fmr_owner) {
			*owner = owners[i].rmap;
			return 0;
		}
	return -EINVAL;
}

/* The rmap offset field of a key: file block | fork and bmbt flags. */
static uint64_t key_offset(const struct rlfs_mount *mp, const struct fsmap *k)
{
	if (k->fmr_offset == UINT64_MAX)
		return UINT64_MAX;
	uint64_t off = RLFS_RMAP_OFF(k->fmr_offset >> mp->blocklog);
	if (k->fmr_flags & FMR_OF_ATTR_FORK)
		off |= RLFS_RMAP_OFF_ATTR_FORK;
	if (k->fmr_flags & FMR_OF_EXTENT_MAP)
		off |= RLFS_RMAP_OFF_BMBT_BLOCK;
	return off;
}

static bool valid_device(uint32_t d, uint32_t dev)
{
	return d == 0 || d == UINT32_MAX || d == dev;
}

/* low < high, and the offsets and lengths allowed (xfs_getfsmap_check_keys). */
static bool check_keys(const struct fsmap *lo, const struct fsmap *hi)
{
	if ((lo->fmr_flags & (FMR_OF_SPECIAL_OWNER | FMR_OF_EXTENT_MAP)) && lo->fmr_offset)
		return false;
	if (hi->fmr_flags != UINT32_MAX && (hi->fmr_flags & (FMR_OF_SPECIAL_OWNER | FMR_OF_EXTENT_MAP)) &&
	    hi->fmr_offset && hi->fmr_offset != UINT64_MAX)
		return false;
	if (hi->fmr_length && hi->fmr_length != UINT64_MAX)
		return false;
#define CMP(f)                      \
	if (lo->f != hi->f)         \
		return lo->f < hi->f;
	CMP(fmr_device)
	CMP(fmr_physical)
	CMP(fmr_owner)
	CMP(fmr_offset)
#undef CMP
	return false;
}

static bool reserved_zero(const struct fsmap *k)
{
	for (size_t i = 0; i < sizeof(k->fmr_reserved) / sizeof(k->fmr_reserved[0]); i++)
		if (k->fmr_reserved[i])
			return false;
	return true;
}

struct fsmap_info {
	struct rlfs_mount *mp;
	struct rlfs_trans *tp;
	uint32_t dev;
	uint32_t agno;
	uint64_t next;               /* bytes: end of the furthest record so far */
	bool filter;                 /* drop records sorting before low */
	bool resume;                 /* low is a previous call's last record */
	struct rlfs_rmap_irec low;   /* in AG agno, when filter */
	rlfs_fsmap_fn fn;
	void *priv;
};

/* Free space [info->next, end) if end is beyond it. */
static int emit_gap(struct fsmap_info *info, uint64_t end)
{
	if (end <= info->next)
		return 0;
	struct fsmap f = { .fmr_device = info->dev, .fmr_flags = FMR_OF_SPECIAL_OWNER,
			   .fmr_physical = info->next, .fmr_owner = RLFS_FMR_OWN_FREE,
			   .fmr_length = end - info->next };
	int ret = info->fn(&f, info->priv);
	if (ret == 0)
		info->next = end;
	return ret;
}

static int rec_to_fsmap(struct fsmap_info *info, const struct rlfs_rmap_irec *r,
			struct fsmap *f)
{
	struct rlfs_mount *mp = info->mp;
	uint64_t fsbno = rlfs_agb_to_fsb(mp, info->agno, r->startblock);
	memset(f, 0, sizeof(*f));
	f->fmr_device = info->dev;
	f->fmr_physical = fsbno << mp->blocklog;
	f->fmr_length = (uint64_t)r->blockcount << mp->blocklog;
	if (RLFS_RMAP_NON_INODE_OWNER(r->owner)) {
		size_t i;
		for (i = 0; i < NOWNERS && owners[i].rmap != r->owner; i++)
			;
		if (i == NOWNERS) {
			return rlfs_corrupt(mp, fsbno, "rmapbt", "fsmap: unknown special owner 0x%llx",
					    (unsigned long long)r->owner);
		}
		f->fmr_flags = FMR_OF_SPECIAL_OWNER;
		f->fmr_owner = owners[i].fmr;
		return 0;
	}
	f->fmr_owner = r->owner;
	f->fmr_offset = RLFS_RMAP_OFF(r->offset) << mp->blocklog;
	if (r->offset & RLFS_RMAP_OFF_UNWRITTEN)
		f->fmr_flags |= FMR_OF_PREALLOC;
	if (r->offset & RLFS_RMAP_OFF_ATTR_FORK)
		f->fmr_flags |= FMR_OF_ATTR_FORK;
	if (r->offset & RLFS_RMAP_OFF_BMBT_BLOCK) {
		f->fmr_flags |= FMR_OF_EXTENT_MAP;
		f->fmr_offset = 0;
	}
	if (f->fmr_flags == 0 && rlfs_has_reflink(mp)) {
		uint64_t sf;
		uint32_t sl;
		int err = rlfs_refcount_find_shared(info->tp, fsbno, r->blockcount, &sf, &sl);
		if (err)
			return err;
		if (sl)
			f->fmr_flags |= FMR_OF_SHARED;
	}
	return 0;
}

static int rmap_helper(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *r, void *priv)
{
	struct fsmap_info *info = priv;
	struct rlfs_mount *mp = info->mp;
	uint64_t start = rlfs_agb_to_fsb(mp, info->agno, r->startblock) << mp->blocklog;
	uint64_t end = start + ((uint64_t)r->blockcount << mp->blocklog);
	(void)cur;
	struct rlfs_rmap_irec rh = rlfs_rmap_irec_high_key(r);
	if (info->filter && rlfs_rmap_irec_cmp_key(r, &info->low) < 0 &&
	    (info->resume || rlfs_rmap_irec_cmp_key(&rh, &info->low) < 0)) {
		if (end > info->next)
			info->next = end;
		return 0;
	}
	struct fsmap f;
	int ret = rec_to_fsmap(info, r, &f);
	if (ret == 0)
		ret = emit_gap(info, start);
	if (ret == 0)
		ret = info->fn(&f, info->priv);
	if (ret == 0 && end > info->next)
		info->next = end;
	return ret;
}

int rlfs_getfsmap(struct rlfs_mount *mp, uint32_t dev, const struct fsmap *low,
		  const struct fsmap *high, unsigned iflags, rlfs_fsmap_fn fn, void *priv)
{
	if (iflags & ~(unsigned)FMH_IF_VALID)
		return -EINVAL;
	if (!reserved_zero(low) || !reserved_zero(high) || !valid_device(low->fmr_device, dev) ||
	    !valid_device(high->fmr_device, dev) || !check_keys(low, high))
		return -EINVAL;
	struct rlfs_rmap_irec lk = { 0 }, hk = { 0 };
	int err = owner_to_rmap(low, &lk.owner);
	if (!err)
		err = owner_to_rmap(high, &hk.owner);
	if (err)
		return err;
	if (!rlfs_has_rmap(mp))
		return -EOPNOTSUPP;

	uint64_t devbytes = mp->dblocks << mp->blocklog;
	struct fsmap_info info = { .mp = mp, .dev = dev, .fn = fn, .priv = priv };
	uint64_t start = low->fmr_physical;
	info.next = low->fmr_physical + low->fmr_length;
	if (info.next < low->fmr_physical)
		return 0;     /* overflow: nothing can follow */
	lk.offset = key_offset(mp, low);
	/* a fresh query still reads the low block from owner 0: records there
	 * that end before the low key are not reported, but they are not free
	 * space either (they move next) */
	info.filter = true;
	info.resume = low->fmr_length != 0;
	if (low->fmr_length) {
		if ((low->fmr_flags & (FMR_OF_SPECIAL_OWNER | FMR_OF_EXTENT_MAP)) ||
		    RLFS_RMAP_NON_INODE_OWNER(lk.owner)) {
			start = info.next;
			lk.owner = 0;
			lk.offset = 0;
		} else {
			lk.offset += low->fmr_length >> mp->blocklog;
		}
	}
	if (start >= devbytes)
		return 0;
	uint64_t start_fsb = start >> mp->blocklog;
	uint64_t end_fsb = (high->fmr_physical < devbytes ? high->fmr_physical : devbytes - 1) >>
			   mp->blocklog;
	if (start_fsb > end_fsb)
		return 0;
	hk.offset = key_offset(mp, high);
	uint32_t start_ag = rlfs_fsb_to_agno(mp, start_fsb), end_ag = rlfs_fsb_to_agno(mp, end_fsb);
	lk.startblock = rlfs_fsb_to_agbno(mp, start_fsb);
	hk.startblock = rlfs_fsb_to_agbno(mp, end_fsb);

	for (uint32_t agno = start_ag; agno <= end_ag; agno++) {
		struct rlfs_rmap_irec lo = { 0 }, hi = { .startblock = UINT32_MAX,
						       .owner = UINT64_MAX, .offset = UINT64_MAX };
		if (agno == start_ag) {
			lo = lk;
			info.low = lk;
			if (!info.resume)
				lo.owner = lo.offset = 0;
		}
		if (agno == end_ag)
			hi = hk;
		info.agno = agno;
		info.filter = info.filter && agno == start_ag;
		struct rlfs_trans *tp;
		err = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
		if (err)
			return err;
		info.tp = tp;
		struct rlfs_btree_cur cur;
		rlfs_rmap_cur_init(&cur, tp, agno, NULL);
		err = rlfs_rmap_query_range(&cur, &lo, &hi, rmap_helper, &info);
		rlfs_btree_cur_del(&cur);
		rlfs_trans_cancel(tp);
		if (err)
			return err;
	}
	/* the free space after the last record, to the end of the range: the
	 * block holding high's physical only if every owner there was asked
	 * for (else a record past the high key may use it) */
	return emit_gap(&info, (end_fsb + (hk.owner == UINT64_MAX)) << mp->blocklog);
}

static int head_fn(const struct fsmap *rec, void *priv)
{
	struct fsmap_head *head = priv;
	if (head->fmh_count == 0) {
		if (head->fmh_entries == UINT32_MAX)
			return 1;
		head->fmh_entries++;
		return 0;
	}
	if (head->fmh_entries >= head->fmh_count)
		return 1;
	head->fmh_recs[head->fmh_entries++] = *rec;
	return 0;
}

int rlfs_getfsmap_head(struct rlfs_mount *mp, uint32_t dev, struct fsmap_head *head)
{
	for (size_t i = 0; i < sizeof(head->fmh_reserved) / sizeof(head->fmh_reserved[0]); i++)
		if (head->fmh_reserved[i])
			return -EINVAL;
	head->fmh_entries = 0;
	head->fmh_oflags = FMH_OF_DEV_T;
	int err = rlfs_getfsmap(mp, dev, &head->fmh_keys[0], &head->fmh_keys[1], head->fmh_iflags,
				head_fn, head);
	if (err < 0)
		return err;
	if (err == 0 && head->fmh_count && head->fmh_entries)
		head->fmh_recs[head->fmh_entries - 1].fmr_flags |= FMR_OF_LAST;
	return 0;
}

void rlfs_fsmap_geometry(struct rlfs_mount *mp, uint32_t *blocksize, uint32_t *agblocks,
			 uint32_t *agcount, uint64_t *dblocks)
{
	*blocksize = mp->blocksize;
	*agblocks = mp->agblocks;
	*agcount = mp->agcount;
	*dblocks = mp->dblocks;
}

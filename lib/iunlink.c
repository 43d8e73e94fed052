/*
 * iunlink.c: the per-AG unlinked lists and their in-core predecessor index
 * (see iunlink.h).  Model: xfs_inode.c xfs_iunlink / xfs_iunlink_remove.
 */
#include "iunlink.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "inode.h"

/* one member of a list: its predecessor (0 = it is the head) */
struct iul_ent {
	uint64_t ino;               /* 0 = empty slot */
	uint64_t prev;
};

struct iul_ag {
	bool valid;                 /* tab mirrors the list on disk */
	size_t cap, count;          /* cap: power of two or 0 */
	struct iul_ent *tab;        /* open addressing, linear probing */
};

struct rlfs_iunlink {
	/* joined to a transaction that changes a list: a cancel drops the
	 * index (abort), to be rebuilt from the restored buffers */
	struct rlfs_log_item li;
	struct rlfs_trans *li_tp;
	bool recovered;             /* rlfs_iunlink_recover has run */
	uint32_t agcount;
	struct iul_ag ag[];
};

bool rlfs_iunlink_ino_ok(const struct rlfs_mount *mp, uint32_t agno, uint64_t ino)
{
	uint64_t fsb = rlfs_ino_to_fsb(mp, ino);
	return ino != 0 && fsb != 0 && fsb < mp->dblocks &&
	       rlfs_fsb_to_agno(mp, fsb) == agno &&
	       rlfs_fsb_to_agbno(mp, fsb) > RLFS_AGFL_AGBNO;
}

/* ------------------------------------------------------------------ */
/* The index: ino -> predecessor                                       */
/* ------------------------------------------------------------------ */

static size_t slot_of(const struct iul_ag *ag, uint64_t ino)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 17) & (ag->cap - 1);
}

static struct iul_ent *map_find(struct iul_ag *ag, uint64_t ino)
{
	if (!ag->cap)
		return NULL;
	for (size_t i = slot_of(ag, ino);; i = (i + 1) & (ag->cap - 1)) {
		if (ag->tab[i].ino == ino)
			return &ag->tab[i];
		if (ag->tab[i].ino == 0)
			return NULL;
	}
}

/* Room for one more entry (load stays under 1/2).  0 or -ENOMEM. */
static int map_reserve(struct iul_ag *ag)
{
	if ((ag->count + 1) * 2 <= ag->cap)
		return 0;
	size_t ncap = ag->cap ? ag->cap * 2 : 64;
	struct iul_ent *nt = calloc(ncap, sizeof(*nt)), *ot = ag->tab;
	if (!nt)
		return -ENOMEM;
	size_t ocap = ag->cap;
	ag->tab = nt;
	ag->cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		if (!ot[i].ino)
			continue;
		size_t j = slot_of(ag, ot[i].ino);
		while (nt[j].ino)
			j = (j + 1) & (ncap - 1);
		nt[j] = ot[i];
	}
	free(ot);
	return 0;
}

/* Insert (after map_reserve) or update. */
static void map_set(struct iul_ag *ag, uint64_t ino, uint64_t prev)
{
	size_t i = slot_of(ag, ino);
	while (ag->tab[i].ino && ag->tab[i].ino != ino)
		i = (i + 1) & (ag->cap - 1);
	if (!ag->tab[i].ino)
		ag->count++;
	ag->tab[i].ino = ino;
	ag->tab[i].prev = prev;
}

/* Delete with backward shift (no tombstones). */
static void map_del(struct iul_ag *ag, struct iul_ent *e)
{
	size_t mask = ag->cap - 1, i = (size_t)(e - ag->tab), j = i;
	ag->tab[i].ino = 0;
	ag->count--;
	for (;;) {
		j = (j + 1) & mask;
		if (!ag->tab[j].ino)
			return;
		size_t k = slot_of(ag, ag->tab[j].ino);
		/* move j to i unless its home k lies cyclically in (i, j] */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		ag->tab[i] = ag->tab[j];
		ag->tab[j].ino = 0;
		i = j;
	}
}

static void map_clear(struct iul_ag *ag)
{
	if (ag->cap)
		memset(ag->tab, 0, ag->cap * sizeof(*ag->tab));
	ag->count = 0;
	ag->valid = false;
}

/* ------------------------------------------------------------------ */
/* The log item: a cancel invalidates the index                         */
/* ------------------------------------------------------------------ */

static struct rlfs_iunlink *li_to_iul(struct rlfs_log_item *lip)
{
	return (struct rlfs_iunlink *)((char *)lip - offsetof(struct rlfs_iunlink, li));
}

static void iul_item_abort(struct rlfs_trans *tp, struct rlfs_log_item *lip)
{
	(void)tp;
	struct rlfs_iunlink *iul = li_to_iul(lip);
	for (uint32_t a = 0; a < iul->agcount; a++)
		map_clear(&iul->ag[a]);
}

static void iul_item_release(struct rlfs_trans *tp, struct rlfs_log_item *lip)
{
	(void)tp;
	li_to_iul(lip)->li_tp = NULL;
}

static const struct rlfs_log_item_ops iul_item_ops = {
	.abort = iul_item_abort,
	.release = iul_item_release,
};

static struct rlfs_iunlink *iul_get(struct rlfs_mount *mp)
{
	if (!mp->iunlink) {
		struct rlfs_iunlink *iul = calloc(1, sizeof(*iul) +
						  (size_t)mp->agcount * sizeof(iul->ag[0]));
		if (!iul)
			return NULL;
		iul->agcount = mp->agcount;
		iul->li.ops = &iul_item_ops;
		mp->iunlink = iul;
	}
	return mp->iunlink;
}

void rlfs_iunlink_destroy(struct rlfs_mount *mp)
{
	struct rlfs_iunlink *iul = mp->iunlink;
	if (!iul)
		return;
	for (uint32_t a = 0; a < iul->agcount; a++)
		free(iul->ag[a].tab);
	free(iul);
	mp->iunlink = NULL;
}

/* ------------------------------------------------------------------ */
/* On-disk pointers                                                     */
/* ------------------------------------------------------------------ */

/* The AG header's unlinked list head changed (xfs_iunlink_update_bucket
 * logs the bucket's bytes of the AGI). */
static void log_unlinked(struct rlfs_trans *tp, struct rlfs_buf *agbp)
{
	uint32_t off = (uint32_t)offsetof(struct rlfs_agh, unlinked);
	rlfs_trans_log_buf_range(tp, agbp, off, off + (uint32_t)sizeof(rlfs_le64) - 1);
}

/* The cluster buffer of ino (joined) and its dinode; the slot's crc must
 * be good (the change recomputes it). */
static int dinode_get(struct rlfs_trans *tp, uint64_t ino, struct rlfs_buf **bpp,
		      struct rlfs_dinode **dipp)
{
	struct rlfs_mount *mp = tp->mp;
	int error = rlfs_trans_read_buf(tp, rlfs_ino_to_fsb(mp, ino), &rlfs_inode_buf_ops,
					RLFS_OWNER_ANY, bpp);
	if (error)
		return error;
	*dipp = (struct rlfs_dinode *)((uint8_t *)(*bpp)->data +
				       (size_t)rlfs_ino_to_slot(mp, ino) * mp->inodesize);
	if (!rlfs_cksum_verify(*dipp, mp->inodesize, offsetof(struct rlfs_dinode, crc))) {
		rlfs_trans_brelse(tp, *bpp);
		return rlfs_corrupt(mp, (*bpp)->fsbno, "inode", "ino %llu: bad crc",
				    (unsigned long long)ino);
	}
	return 0;
}

static int next_get(struct rlfs_trans *tp, uint64_t ino, uint64_t *next)
{
	struct rlfs_buf *bp;
	struct rlfs_dinode *dip;
	int error = dinode_get(tp, ino, &bp, &dip);
	if (error)
		return error;
	*next = rlfs_get64(dip->next_unlinked);
	rlfs_trans_brelse(tp, bp);
	return 0;
}

static int next_set(struct rlfs_trans *tp, uint64_t ino, uint64_t next)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_buf *bp;
	struct rlfs_dinode *dip;
	int error = dinode_get(tp, ino, &bp, &dip);
	if (error)
		return error;
	rlfs_put64(dip->next_unlinked, next);
	rlfs_cksum_update(dip, mp->inodesize, offsetof(struct rlfs_dinode, crc));
	/* the slot only (xfs_iunlink_log_dinode logs next_unlinked) */
	uint32_t first = (uint32_t)((uint8_t *)dip - (uint8_t *)bp->data);
	rlfs_trans_log_buf_range(tp, bp, first, first + mp->inodesize - 1);
	rlfs_trans_brelse(tp, bp);
	return 0;
}

/* Rebuild AG agno's index from disk: walk the list from the head. */
static int rebuild(struct rlfs_trans *tp, uint32_t agno, struct iul_ag *ag)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_buf *agbp;
	int error = rlfs_ag_read_header(tp, agno, &agbp);
	if (error)
		return error;
	const struct rlfs_agh *agh = agbp->data;
	uint64_t cur = rlfs_get64(agh->unlinked), prev = 0, n = 0;
	uint64_t icount = rlfs_get64(agh->icount);
	uint64_t fsbno = agbp->fsbno;
	rlfs_trans_brelse(tp, agbp);

	map_clear(ag);
	while (cur) {
		if (map_find(ag, cur) || ++n > icount) {
			map_clear(ag);
			return rlfs_corrupt(mp, fsbno, "AG header",
					    "AG %u: unlinked list loops (inode %llu again)", agno,
					    (unsigned long long)cur);
		}
		error = map_reserve(ag);
		if (error)
			goto fail;
		map_set(ag, cur, prev);
		prev = cur;
		error = next_get(tp, prev, &cur);
		if (error)
			goto fail;
	}
	ag->valid = true;
	return 0;
fail:
	map_clear(ag);
	return error;
}

/* The index of agno, valid, with the item joined to tp. */
static int ag_index(struct rlfs_trans *tp, uint32_t agno, struct iul_ag **agp)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_iunlink *iul = iul_get(mp);
	if (!iul)
		return -ENOMEM;
	if (agno >= iul->agcount)
		return rlfs_corrupt(mp, 0, "inode", "AG %u out of range", agno);
	if (iul->li_tp != tp) {
		if (iul->li_tp)
			rlfs_warn("unlinked list index joined to two transactions");
		iul->li_tp = tp;
		iul->li.next = NULL;
		rlfs_trans_add_item(tp, &iul->li);
	}
	struct iul_ag *ag = &iul->ag[agno];
	if (!ag->valid) {
		int error = rebuild(tp, agno, ag);
		if (error)
			return error;
	}
	*agp = ag;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Insert / remove                                                      */
/* ------------------------------------------------------------------ */

int rlfs_iunlink(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	struct rlfs_mount *mp = tp->mp;
	uint32_t agno = rlfs_fsb_to_agno(mp, rlfs_ino_to_fsb(mp, ip->ino));
	struct iul_ag *ag;
	struct rlfs_buf *agbp;
	int error = ag_index(tp, agno, &ag);
	if (error)
		return error;
	if (map_find(ag, ip->ino))
		return rlfs_corrupt(mp, rlfs_ino_to_fsb(mp, ip->ino), "inode",
				    "ino %llu: on the unlinked list already",
				    (unsigned long long)ip->ino);
	error = map_reserve(ag);
	if (error)
		return error;
	error = rlfs_ag_read_header(tp, agno, &agbp);
	if (error)
		return error;
	struct rlfs_agh *agh = agbp->data;
	uint64_t head = rlfs_get64(agh->unlinked);
	error = next_set(tp, ip->ino, head);
	if (error) {
		rlfs_trans_brelse(tp, agbp);
		return error;
	}
	rlfs_put64(agh->unlinked, ip->ino);
	log_unlinked(tp, agbp);
	rlfs_trans_brelse(tp, agbp);
	map_set(ag, ip->ino, 0);
	if (head)
		map_set(ag, head, ip->ino);
	return 0;
}

int rlfs_iunlink_remove(struct rlfs_trans *tp, uint64_t ino, bool *listed)
{
	struct rlfs_mount *mp = tp->mp;
	uint32_t agno = rlfs_fsb_to_agno(mp, rlfs_ino_to_fsb(mp, ino));
	struct iul_ag *ag;
	uint64_t next;
	if (listed)
		*listed = false;
	int error = ag_index(tp, agno, &ag);
	if (error)
		return error;
	struct iul_ent *e = map_find(ag, ino);
	if (!e)
		return 0;
	uint64_t prev = e->prev;
	error = next_get(tp, ino, &next);
	if (error)
		return error;
	struct iul_ent *ne = next ? map_find(ag, next) : NULL;
	if (next && (!ne || ne->prev != ino))
		return rlfs_corrupt(mp, rlfs_ino_to_fsb(mp, ino), "inode",
				    "ino %llu: unlinked list successor %llu not indexed",
				    (unsigned long long)ino, (unsigned long long)next);
	if (prev == 0) {
		struct rlfs_buf *agbp;
		error = rlfs_ag_read_header(tp, agno, &agbp);
		if (error)
			return error;
		struct rlfs_agh *agh = agbp->data;
		if (rlfs_get64(agh->unlinked) != ino) {
			rlfs_trans_brelse(tp, agbp);
			return rlfs_corrupt(mp, agbp->fsbno, "AG header",
					    "AG %u: unlinked list head %llu, expected %llu", agno,
					    (unsigned long long)rlfs_get64(agh->unlinked),
					    (unsigned long long)ino);
		}
		rlfs_put64(agh->unlinked, next);
		log_unlinked(tp, agbp);
		rlfs_trans_brelse(tp, agbp);
	} else {
		uint64_t pnext;
		error = next_get(tp, prev, &pnext);
		if (error)
			return error;
		if (pnext != ino)
			return rlfs_corrupt(mp, rlfs_ino_to_fsb(mp, prev), "inode",
					    "ino %llu: next unlinked %llu, expected %llu",
					    (unsigned long long)prev, (unsigned long long)pnext,
					    (unsigned long long)ino);
		error = next_set(tp, prev, next);
		if (error)
			return error;
	}
	error = next_set(tp, ino, 0);
	if (error)
		return error;
	if (ne)
		ne->prev = prev;
	map_del(ag, map_find(ag, ino));
	if (listed)
		*listed = true;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Recovery                                                             */
/* ------------------------------------------------------------------ */

static int ag_head(struct rlfs_mount *mp, uint32_t agno, uint64_t *head)
{
	struct rlfs_trans *tp;
	struct rlfs_buf *agbp;
	int error = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
	if (error)
		return error;
	error = rlfs_ag_read_header(tp, agno, &agbp);
	if (!error) {
		*head = rlfs_get64(((struct rlfs_agh *)agbp->data)->unlinked);
		rlfs_trans_brelse(tp, agbp);
	}
	rlfs_trans_cancel(tp);
	return error;
}

int rlfs_iunlink_recover(struct rlfs_mount *mp, uint64_t *freed)
{
	uint64_t n = 0;
	int first = 0;
	if (freed)
		*freed = 0;
	if (mp->flags & RLFS_MOUNT_RDONLY)
		return 0;
	struct rlfs_iunlink *iul = iul_get(mp);
	if (!iul)
		return -ENOMEM;
	if (iul->recovered)
		return 0;
	iul->recovered = true;
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		uint64_t head = 0, last = 0;
		for (;;) {
			int error = ag_head(mp, agno, &head);
			if (!error && head && head == last)
				error = rlfs_corrupt(mp, rlfs_agb_to_fsb(mp, agno, RLFS_AGH_AGBNO),
						     "AG header",
						     "AG %u: inode %llu stays on the unlinked list",
						     agno, (unsigned long long)head);
			if (!error && head)
				error = rlfs_inode_free_orphan(mp, head);
			if (error) {
				rlfs_warn("AG %u: cannot free unlinked inode %llu (%s); the rest of "
					  "its unlinked list is left for fsck", agno,
					  (unsigned long long)head, strerror(-error));
				if (!first)
					first = error;
				break;
			}
			if (!head)
				break;
			last = head;
			n++;
		}
	}
	if (freed)
		*freed = n;
	return first;
}

/*
 * defer_item.c: the built-in deferred operation types (defer.h):
 *   EFI/EFD  free an extent                      (xfs_extfree_item.c)
 *   CUI/CUD  refcount increase/decrease of one   (xfs_refcount_item.c)
 *   BUI/BUD  map/unmap a data-fork range          (xfs_bmap_item.c)
 *   RUI/RUD  one rmap btree change of a mapping   (xfs_rmap_item.c)
 * Items are 16 bytes in the log (struct rlfs_efi_item / rlfs_cui_item;
 * 32 for struct rlfs_bui_item and rlfs_rui_item), docs/SPEC.md section 16.  Each finish_item is one bounded step done in
 * the transaction that also logs the intent's done, so a step is either
 * wholly in the log with its done or not at all: recovery redoes exactly
 * the steps whose done is missing.
 */
#include "defer.h"

#include <errno.h>
#include <stdlib.h>

#include "alloc.h"
#include "bmap.h"
#include "inode.h"
#include "refcount.h"
#include "reflinkfs/fs.h"
#include "rmap.h"

/* A range is plausible for a data extent: inside the device, not block 0,
 * 1 .. RLFS_MAX_EXTLEN blocks. */
static bool range_ok(struct rlfs_mount *mp, uint64_t fsbno, uint32_t len)
{
	return fsbno != 0 && len != 0 && len <= RLFS_MAX_EXTLEN && fsbno < mp->dblocks &&
	       len <= mp->dblocks - fsbno;
}

/* ---- EFI ---- */

struct efi_work {
	struct rlfs_defer_item di;
	uint64_t fsbno;
	uint32_t len;
};

static void efi_encode(const struct rlfs_defer_item *item, void *buf)
{
	const struct efi_work *w = (const struct efi_work *)item;
	struct rlfs_efi_item *e = buf;
	rlfs_put64(e->fsbno, w->fsbno);
	rlfs_put32(e->len, w->len);
	rlfs_put32(e->pad, 0);
}

static int efi_finish(struct rlfs_trans *tp, struct rlfs_defer_item *item)
{
	const struct efi_work *w = (const struct efi_work *)item;
	return rlfs_free_extent(tp, w->fsbno, w->len);
}

static void work_free(struct rlfs_defer_item *item)
{
	free(item);
}

static int efi_recover(struct rlfs_trans *tp, const void *buf, size_t bytes)
{
	const struct rlfs_efi_item *e = buf;
	uint64_t fsbno = rlfs_get64(e->fsbno);
	uint32_t len = rlfs_get32(e->len);
	if (bytes != sizeof(*e) || !range_ok(tp->mp, fsbno, len))
		return rlfs_corrupt(tp->mp, fsbno, "log", "EFI item [%llu, +%u) is not a valid extent",
				    (unsigned long long)fsbno, len);
	return rlfs_efi_add(tp, fsbno, len);
}

const struct rlfs_defer_type rlfs_efi_type = {
	.name = "extent free",
	.intent_code = RLFS_LOG_EFI,
	.done_code = RLFS_LOG_EFD,
	.max_items = RLFS_EFI_MAX_ITEMS,
	.item_bytes = sizeof(struct rlfs_efi_item),
	.encode = efi_encode,
	.finish_item = efi_finish,
	.cancel_item = work_free,
	.recover_item = efi_recover,
};

int rlfs_efi_add(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len)
{
	struct efi_work *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fsbno = fsbno;
	w->len = len;
	int err = rlfs_defer_add(tp, &rlfs_efi_type, &w->di);
	if (err)
		free(w);
	return err;
}

/* ---- CUI ---- */

struct cui_work {
	struct rlfs_defer_item di;
	uint64_t fsbno;
	uint32_t len;
	uint32_t op;
};

static void cui_encode(const struct rlfs_defer_item *item, void *buf)
{
	const struct cui_work *w = (const struct cui_work *)item;
	struct rlfs_cui_item *c = buf;
	rlfs_put64(c->fsbno, w->fsbno);
	rlfs_put32(c->len, w->len);
	rlfs_put32(c->op, w->op);
}

static int cui_finish(struct rlfs_trans *tp, struct rlfs_defer_item *item)
{
	const struct cui_work *w = (const struct cui_work *)item;
	if (w->op == RLFS_CUI_INCREASE)
		return rlfs_refcount_increase(tp, w->fsbno, w->len);
	/* blocks that reach 0 are queued as an EFI (finished next) */
	return rlfs_refcount_decrease_deferred(tp, w->fsbno, w->len);
}

static int cui_recover(struct rlfs_trans *tp, const void *buf, size_t bytes)
{
	const struct rlfs_cui_item *c = buf;
	uint64_t fsbno = rlfs_get64(c->fsbno);
	uint32_t len = rlfs_get32(c->len), op = rlfs_get32(c->op);
	if (bytes != sizeof(*c) || !range_ok(tp->mp, fsbno, len) ||
	    (op != RLFS_CUI_INCREASE && op != RLFS_CUI_DECREASE) || !rlfs_has_reflink(tp->mp))
		return rlfs_corrupt(tp->mp, fsbno, "log", "CUI item [%llu, +%u) op %u is not valid",
				    (unsigned long long)fsbno, len, op);
	return rlfs_cui_add(tp, op, fsbno, len);
}

const struct rlfs_defer_type rlfs_cui_type = {
	.name = "refcount update",
	.intent_code = RLFS_LOG_CUI,
	.done_code = RLFS_LOG_CUD,
	.max_items = RLFS_CUI_MAX_ITEMS,
	.item_bytes = sizeof(struct rlfs_cui_item),
	.encode = cui_encode,
	.finish_item = cui_finish,
	.cancel_item = work_free,
	.recover_item = cui_recover,
};

int rlfs_cui_add(struct rlfs_trans *tp, unsigned op, uint64_t fsbno, uint32_t len)
{
	struct cui_work *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fsbno = fsbno;
	w->len = len;
	w->op = op;
	int err = rlfs_defer_add(tp, &rlfs_cui_type, &w->di);
	if (err)
		free(w);
	return err;
}

int rlfs_defer_extent_release(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len)
{
	if (rlfs_has_reflink(tp->mp))
		return rlfs_cui_add(tp, RLFS_CUI_DECREASE, fsbno, len);
	return rlfs_efi_add(tp, fsbno, len);
}

/* ---- BUI ---- */

struct bui_work {
	struct rlfs_defer_item di;
	uint64_t ino;
	uint64_t startoff;
	uint64_t startblock;
	uint32_t len;
	uint32_t flags;             /* RLFS_BUI_* */
};

static void bui_encode(const struct rlfs_defer_item *item, void *buf)
{
	const struct bui_work *w = (const struct bui_work *)item;
	struct rlfs_bui_item *b = buf;
	rlfs_put64(b->ino, w->ino);
	rlfs_put64(b->startoff, w->startoff);
	rlfs_put64(b->startblock, w->startblock);
	rlfs_put32(b->len, w->len);
	rlfs_put32(b->flags, w->flags);
}

/*
 * The inode of a BUI, joined to tp.  In normal operation the caller of
 * the chain holds it (referenced, iolock exclusive) so this finds it in
 * the cache; in log recovery nothing else runs and it is read in.  The
 * reference taken here is dropped at once: an inode joined to a
 * transaction is never freed by its last irele (inode.c), and the
 * caller's own reference (or recovery's unlinked-list pass) keeps it.
 */
int rlfs_defer_item_inode(struct rlfs_trans *tp, const char *what, uint64_t ino,
			  struct rlfs_inode **ipp)
{
	struct rlfs_inode *ip;
	int err = rlfs_iget_tp(tp, ino, &ip);
	if (err == -ENOENT)
		err = rlfs_corrupt(tp->mp, rlfs_ino_to_fsb(tp->mp, ino), "log",
				   "%s for inode %llu, which is not in use", what,
				   (unsigned long long)ino);
	if (err)
		return err;
	if (!S_ISREG(ip->mode) || !ip->ext_loaded) {
		rlfs_irele(ip);
		return rlfs_corrupt(tp->mp, rlfs_ino_to_fsb(tp->mp, ino), "log",
				    "%s for inode %llu, which is not a regular file", what,
				    (unsigned long long)ino);
	}
	rlfs_trans_ijoin(tp, ip);
	rlfs_irele(ip);
	*ipp = ip;
	return 0;
}

static int bui_inode(struct rlfs_trans *tp, const struct bui_work *w, struct rlfs_inode **ipp)
{
	return rlfs_defer_item_inode(tp, "BUI", w->ino, ipp);
}

static int bui_finish(struct rlfs_trans *tp, struct rlfs_defer_item *item)
{
	const struct bui_work *w = (const struct bui_work *)item;
	struct rlfs_inode *ip;
	int err = bui_inode(tp, w, &ip);
	if (err)
		return err;
	if ((w->flags & RLFS_BUI_OP_MASK) == RLFS_BUI_MAP) {
		struct rlfs_irec m = {
			.startoff = w->startoff,
			.startblock = w->startblock,
			.blockcount = w->len,
			.state = (w->flags & RLFS_BUI_UNWRITTEN) ? RLFS_EXT_UNWRITTEN : 0,
		};
		err = rlfs_bmap_map_extent(tp, ip, &m);
		if (err == -EEXIST)
			err = rlfs_corrupt(tp->mp, w->startblock, "bmap",
					   "BUI map of inode %llu file block %llu (+%u): the range is "
					   "not a hole", (unsigned long long)w->ino,
					   (unsigned long long)w->startoff, w->len);
	} else {
		bool done;
		err = rlfs_bmap_unmap(tp, ip, w->startoff, w->len, RLFS_BUNMAP_DEFER, 0, &done);
	}
	if (!err)
		rlfs_trans_log_inode(tp, ip);
	return err;
}

/* An UNMAP item of a recovered intent still finds the blocks it named:
 * one extent maps all of [startoff, +len) starting at startblock
 * (anything else means the log and the data fork disagree).
 * A MAP item's range may still be mapped here: an UNMAP before it in the
 * same intent (a CoW remap) makes it a hole; the map itself refuses an
 * overlap (bui_finish). */
static int bui_check_fork(struct rlfs_trans *tp, const struct bui_work *w)
{
	if ((w->flags & RLFS_BUI_OP_MASK) != RLFS_BUI_UNMAP)
		return 0;
	struct rlfs_inode *ip;
	int err = bui_inode(tp, w, &ip);
	if (err)
		return err;
	struct rlfs_irec got;
	bool found;
	rlfs_bmap_lookup(ip, w->startoff, &got, &found);
	/* the whole range inside the extent that maps its first block, as
	 * logged: an unmap never releases blocks its intent did not name */
	if (found && got.startblock + (w->startoff - got.startoff) == w->startblock &&
	    got.startoff + got.blockcount >= w->startoff + w->len)
		return 0;
	return rlfs_corrupt(tp->mp, w->startblock, "log",
			    "BUI unmap of inode %llu file block %llu (+%u, fsbno %llu) does not "
			    "match its data fork", (unsigned long long)w->ino,
			    (unsigned long long)w->startoff, w->len,
			    (unsigned long long)w->startblock);
}

static int bui_recover(struct rlfs_trans *tp, const void *buf, size_t bytes)
{
	const struct rlfs_bui_item *b = buf;
	struct bui_work w = {
		.ino = rlfs_get64(b->ino),
		.startoff = rlfs_get64(b->startoff),
		.startblock = rlfs_get64(b->startblock),
		.len = rlfs_get32(b->len),
		.flags = rlfs_get32(b->flags),
	};
	unsigned op = w.flags & RLFS_BUI_OP_MASK;
	if (bytes != sizeof(*b) || !range_ok(tp->mp, w.startblock, w.len) ||
	    (op != RLFS_BUI_MAP && op != RLFS_BUI_UNMAP) ||
	    (w.flags & ~(RLFS_BUI_OP_MASK | RLFS_BUI_UNWRITTEN)) ||
	    w.startoff > (tp->mp->maxbytes >> tp->mp->blocklog) ||
	    w.len > (tp->mp->maxbytes >> tp->mp->blocklog) - w.startoff)
		return rlfs_corrupt(tp->mp, w.startblock, "log",
				    "BUI item (inode %llu, file block %llu, fsbno %llu, +%u, "
				    "flags 0x%x) is not valid",
				    (unsigned long long)w.ino, (unsigned long long)w.startoff,
				    (unsigned long long)w.startblock, w.len, w.flags);
	int err = bui_check_fork(tp, &w);
	if (err)
		return err;
	return rlfs_bui_add(tp, w.flags, w.ino, w.startoff, w.startblock, w.len);
}

const struct rlfs_defer_type rlfs_bui_type = {
	.name = "data fork map/unmap",
	.intent_code = RLFS_LOG_BUI,
	.done_code = RLFS_LOG_BUD,
	.max_items = RLFS_BUI_MAX_ITEMS,
	.item_bytes = sizeof(struct rlfs_bui_item),
	.encode = bui_encode,
	.finish_item = bui_finish,
	.cancel_item = work_free,
	.recover_item = bui_recover,
};

int rlfs_bui_add(struct rlfs_trans *tp, unsigned flags, uint64_t ino, uint64_t startoff,
		 uint64_t startblock, uint32_t len)
{
	struct bui_work *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->ino = ino;
	w->startoff = startoff;
	w->startblock = startblock;
	w->len = len;
	w->flags = flags;
	int err = rlfs_defer_add(tp, &rlfs_bui_type, &w->di);
	if (err)
		free(w);
	return err;
}

/* ---- RUI ---- */

struct rui_work {
	struct rlfs_defer_item di;
	uint64_t owner;
	uint64_t offset;            /* RLFS_RMAP_OFF_* flags | file block */
	uint64_t fsbno;
	uint32_t len;
	uint32_t op;                /* RLFS_RUI_* */
};

static void rui_encode(const struct rlfs_defer_item *item, void *buf)
{
	const struct rui_work *w = (const struct rui_work *)item;
	struct rlfs_rui_item *r = buf;
	rlfs_put64(r->owner, w->owner);
	rlfs_put64(r->offset, w->offset);
	rlfs_put64(r->fsbno, w->fsbno);
	rlfs_put32(r->len, w->len);
	rlfs_put32(r->op, w->op);
}

static int rui_finish(struct rlfs_trans *tp, struct rlfs_defer_item *item)
{
	const struct rui_work *w = (const struct rui_work *)item;
	/* the rmapbt's splits take AGFL blocks: top it up first, as every
	 * allocation does (the direct updates run inside one) */
	int err = rlfs_alloc_fix_freelist(tp, rlfs_fsb_to_agno(tp->mp, w->fsbno));
	if (err)
		return err;
	return rlfs_rmap_update(tp, w->op, w->fsbno, w->len, w->owner, w->offset);
}

static int rui_recover(struct rlfs_trans *tp, const void *buf, size_t bytes)
{
	const struct rlfs_rui_item *r = buf;
	struct rlfs_mount *mp = tp->mp;
	uint64_t fsbno = rlfs_get64(r->fsbno), owner = rlfs_get64(r->owner);
	uint64_t offset = rlfs_get64(r->offset);
	uint32_t len = rlfs_get32(r->len), op = rlfs_get32(r->op);
	uint32_t agno = rlfs_fsb_to_agno(mp, fsbno);
	bool ok = bytes == sizeof(*r) && range_ok(mp, fsbno, len) && rlfs_has_rmap(mp) &&
		  op >= RLFS_RUI_MAP && op <= RLFS_RUI_CONVERT && owner != 0 &&
		  !RLFS_RMAP_NON_INODE_OWNER(owner) && (offset & ~(RLFS_RMAP_OFF_FLAGS |
								 RLFS_RMAP_OFF_MASK)) == 0 &&
		  agno < mp->agcount &&
		  (uint64_t)rlfs_fsb_to_agbno(mp, fsbno) + len <= rlfs_ag_blocks(mp, agno);
	if (!ok)
		return rlfs_corrupt(mp, fsbno, "log",
				    "RUI item [%llu, +%u) owner %llu offset 0x%llx op %u is not valid",
				    (unsigned long long)fsbno, len, (unsigned long long)owner,
				    (unsigned long long)offset, op);
	return rlfs_rui_add(tp, op, fsbno, len, owner, offset);
}

const struct rlfs_defer_type rlfs_rui_type = {
	.name = "rmap update",
	.intent_code = RLFS_LOG_RUI,
	.done_code = RLFS_LOG_RUD,
	.max_items = RLFS_RUI_MAX_ITEMS,
	.item_bytes = sizeof(struct rlfs_rui_item),
	.encode = rui_encode,
	.finish_item = rui_finish,
	.cancel_item = work_free,
	.recover_item = rui_recover,
};

int rlfs_rui_add(struct rlfs_trans *tp, unsigned op, uint64_t fsbno, uint32_t len,
		 uint64_t owner, uint64_t offset)
{
	if (!rlfs_has_rmap(tp->mp))
		return 0;
	struct rui_work *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->owner = owner;
	w->offset = offset;
	w->fsbno = fsbno;
	w->len = len;
	w->op = op;
	int err = rlfs_defer_add(tp, &rlfs_rui_type, &w->di);
	if (err)
		free(w);
	return err;
}

/*
 * defer_item.c: the built-in deferred operation types (defer.h):
 *   EFI/EFD  free an extent                      (xfs_extfree_item.c)
 *   CUI/CUD  refcount increase/decrease of one   (xfs_refcount_item.c)
 * Items are 16 bytes in the log (struct rlfs_efi_item / rlfs_cui_item,
 * docs/SPEC.md section 16).  Each finish_item is one bounded step done in
 * the transaction that also logs the intent's done, so a step is either
 * wholly in the log with its done or not at all: recovery redoes exactly
 * the steps whose done is missing.
 */
#include "defer.h"

#include <errno.h>
#include <stdlib.h>

#include "alloc.h"
#include "refcount.h"
#include "reflinkfs/fs.h"

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

/*
 * ag_resv.c: how many blocks each AG keeps for its AGFL-fed btrees, and
 * the accounting when those trees grow or shrink (ag_resv.h has the whole
 * picture).  The allocator honours the per-AG number
 * (rlfs_ag_resv_left_blocks); mount sums it into mp->setaside.
 */
#include "ag_resv.h"
#include "alloc.h"
#include "refcount.h"
#include "rmap.h"

#include <string.h>

uint32_t rlfs_ag_resv_ask_blocks(struct rlfs_mount *mp)
{
	uint32_t room = 0;

	if (rlfs_has_reflink(mp)) {
		uint32_t per_leaf = RLFS_MAX((mp->blocksize - 64) / 12, 2u);

		room += mp->agblocks / per_leaf + 4 * rlfs_refcount_maxlevels(mp) + 8;
	}
	if (rlfs_has_rmap(mp)) {
		uint32_t per_leaf = RLFS_MAX((mp->blocksize - 64) / 24, 2u);

		room += mp->agblocks / per_leaf + 4 * rlfs_rmap_maxlevels(mp) + 8;
	}
	return room;
}

/* Blocks the AGFL-fed trees under the reservation hold (AGBTCOUNT). */
static uint64_t tree_blocks(const struct rlfs_agh *agh)
{
	return (uint64_t)rlfs_get32(agh->refc_blocks) + rlfs_get32(agh->rmap_blocks);
}

uint32_t rlfs_ag_resv_left_blocks(const struct rlfs_mount *mp, const struct rlfs_agh *agh)
{
	uint64_t ask = mp->ag_resv_ask_blocks;

	if (!rlfs_has_agbtcount(mp))
		return (uint32_t)ask;
	uint64_t used = tree_blocks(agh);
	return used >= ask ? 0 : (uint32_t)(ask - used);
}

void rlfs_ag_resv_tree_block(struct rlfs_trans *tp, struct rlfs_buf *agbp, size_t count_off,
			     int delta)
{
	struct rlfs_mount *mp = tp->mp;

	if (!agbp || !rlfs_has_agbtcount(mp)) {
		if (delta > 0)
			rlfs_trans_mod_used(tp, 1);
		else
			rlfs_trans_mod_freed(tp, 1);
		return;
	}
	struct rlfs_agh *agh = rlfs_agh(agbp);
	rlfs_le32 raw;
	memcpy(&raw, (char *)agh + count_off, sizeof(raw));
	uint32_t n = rlfs_get32(raw);
	if (delta < 0 && n == 0) {
		/* a stale count (fsck's to fix) stays 0: an ordinary free */
		rlfs_trans_mod_freed(tp, 1);
		return;
	}
	n = delta > 0 ? n + 1 : n - 1;
	raw = rlfs_le32_of(n);
	memcpy((char *)agh + count_off, &raw, sizeof(raw));
	rlfs_ag_log_header(tp, agbp);
	/* held after the take / after the give-back: below ask, the block
	 * is the reserve's */
	uint64_t held = tree_blocks(agh);
	bool resv = delta > 0 ? held - 1 < mp->ag_resv_ask_blocks : held < mp->ag_resv_ask_blocks;
	if (resv)
		tp->ag_resv_used += delta > 0 ? 1 : -1;
	else if (delta > 0)
		rlfs_trans_mod_used(tp, 1);
	else
		rlfs_trans_mod_freed(tp, 1);
}

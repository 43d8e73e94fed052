/*
 * ag_resv.c: how many blocks each AG keeps for its AGFL-fed btrees
 * (ag_resv.h has the whole picture).  The allocator honours the number
 * (mp->ag_resv_blocks, set at mount); this file only computes it.
 */
#include "ag_resv.h"
#include "refcount.h"
#include "rmap.h"

uint32_t rlfs_ag_resv_blocks(struct rlfs_mount *mp)
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

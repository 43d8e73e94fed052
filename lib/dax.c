/*
 * dax.c: the direct-access data path (-o dax), after fsdax
 * (Documentation/filesystems/dax.rst; the fsdax reflink patchset's
 * copy-around and in-place dedupe compare).  The mechanism itself is the
 * device's mapping (dev.h: rlfs_dev_map, rlfs_dev_data_*); file.c and
 * reflink.c copy through it when mp->dev->map is set.  This file is the
 * mount-level switch and its statistic (reflinkfs/fs.h).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "reflinkfs/fs.h"
#include "dev.h"
#include "rlfs.h"

int rlfs_set_dax(struct rlfs_mount *mp)
{
	int err = rlfs_dev_map(mp->dev);
	if (err)
		rlfs_warn("dax: cannot map the image (%s): file data stays on pread/pwrite",
			  strerror(-err));
	return err;
}

bool rlfs_dax_enabled(const struct rlfs_mount *mp)
{
	return mp->dev->map != NULL;
}

uint64_t rlfs_dax_map_faults(const struct rlfs_mount *mp)
{
	return atomic_load(&mp->dev->map_faults);
}

uint64_t rlfs_cow_copied_bytes(const struct rlfs_mount *mp)
{
	return __atomic_load_n(&mp->cow_copied_bytes, __ATOMIC_RELAXED);
}

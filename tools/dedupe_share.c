/*
 * dedupe_share.c: the filesystem calls of `reflinkfs dedupe`
 * (tools/dedupe.h has the contracts):
 *
 *   sharing       FIDEDUPERANGE (ioctl_fideduperange(2), struct
 *                 file_dedupe_range of linux/fs.h) on kernel filesystems;
 *                 on reflinkfs RLFS_IOC_DEDUPE_RANGE (reflinkfs/ioctl.h),
 *                 which has the same semantics, so the tool needs no
 *                 LD_PRELOAD shim (the kernel never forwards FIDEDUPERANGE
 *                 to a FUSE daemon);
 *   already shared FS_IOC_FIEMAP (Documentation/filesystems/fiemap.rst)
 *                 physical offsets; on reflinkfs RLFS_IOC_GET_EXTENTS, its
 *                 FIEMAP equivalent (FUSE never forwards FS_IOC_FIEMAP).
 *
 * The kernel compares the two ranges under lock before it shares them
 * (fs/remap_range.c vfs_dedupe_file_range_compare), so a range that
 * changed since it was hashed is reported as differing and nothing is
 * written: this file never writes file data.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>

#include <linux/fiemap.h>
#include <linux/fs.h>

#include <reflinkfs/ioctl.h>

#include "dedupe.h"

#define FUSE_SUPER_MAGIC_ 0x65735546

enum dd_fs_kind dd_fs_kind_of(int fd)
{
	struct statfs sfs;
	if (fstatfs(fd, &sfs) != 0 || (unsigned long)sfs.f_type != FUSE_SUPER_MAGIC_)
		return DD_FS_KERNEL;
	struct rlfs_ioc_extents *x = calloc(1, sizeof(*x));
	if (!x)
		return DD_FS_KERNEL;
	x->start = 0;
	x->length = 1;
	int r = ioctl(fd, RLFS_IOC_GET_EXTENTS, x);
	bool rlfs = r == 0 && x->abi_version >= 1;
	free(x);
	return rlfs ? DD_FS_REFLINKFS : DD_FS_KERNEL;
}

/* Fill phys[] from one extent (bytes). */
static void fill(uint64_t off, uint64_t nblocks, uint32_t bs, uint64_t *phys, uint64_t logical,
		 uint64_t physical, uint64_t length, bool shared)
{
	uint64_t end = off + nblocks * bs;
	uint64_t a = logical > off ? logical : off;
	uint64_t b = logical + length < end ? logical + length : end;
	for (uint64_t p = a; p < b; p += bs) {
		uint64_t i = (p - off) / bs;
		/* a block that starts before the extent is not mapped whole */
		if (p < logical || (p - off) % bs)
			continue;
		phys[i] = (physical + (p - logical)) | (shared ? DD_PHYS_SHARED : 0);
	}
}

static int phys_map_fiemap(int fd, uint64_t off, uint64_t nblocks, uint32_t bs, uint64_t *phys)
{
	enum { N = 256 };
	struct fiemap *fm = calloc(1, sizeof(*fm) + N * sizeof(struct fiemap_extent));
	if (!fm)
		return -ENOMEM;
	uint64_t end = off + nblocks * bs, pos = off;
	int ret = 0;
	while (pos < end) {
		memset(fm, 0, sizeof(*fm));
		fm->fm_start = pos;
		fm->fm_length = end - pos;
		fm->fm_extent_count = N;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) {
			ret = -errno;
			break;
		}
		if (fm->fm_mapped_extents == 0)
			break;
		bool last = false;
		for (uint32_t i = 0; i < fm->fm_mapped_extents; i++) {
			const struct fiemap_extent *e = &fm->fm_extents[i];
			if (!(e->fe_flags & (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC |
					     FIEMAP_EXTENT_ENCODED | FIEMAP_EXTENT_NOT_ALIGNED |
					     FIEMAP_EXTENT_DATA_INLINE)))
				fill(off, nblocks, bs, phys, e->fe_logical, e->fe_physical,
				     e->fe_length, e->fe_flags & FIEMAP_EXTENT_SHARED);
			if (e->fe_logical + e->fe_length > pos)
				pos = e->fe_logical + e->fe_length;
			if (e->fe_flags & FIEMAP_EXTENT_LAST)
				last = true;
		}
		if (last || fm->fm_mapped_extents < N)
			break;
	}
	free(fm);
	return ret;
}

static int phys_map_rlfs(int fd, uint64_t off, uint64_t nblocks, uint32_t bs, uint64_t *phys)
{
	struct rlfs_ioc_extents *x = malloc(sizeof(*x));
	if (!x)
		return -ENOMEM;
	uint64_t end = off + nblocks * bs, pos = off;
	int ret = 0;
	while (pos < end) {
		memset(x, 0, sizeof(*x));
		x->start = pos;
		x->length = end - pos;
		if (ioctl(fd, RLFS_IOC_GET_EXTENTS, x) != 0) {
			ret = -errno;
			break;
		}
		if (x->count == 0)
			break;
		bool last = false;
		for (uint32_t i = 0; i < x->count && i < RLFS_IOC_EXTENTS_BATCH; i++) {
			const struct rlfs_ioc_extent *e = &x->ext[i];
			fill(off, nblocks, bs, phys, e->logical, e->physical, e->length,
			     e->flags & RLFS_IOC_EXT_SHARED);
			if (e->logical + e->length > pos)
				pos = e->logical + e->length;
			if (e->flags & RLFS_IOC_EXT_LAST)
				last = true;
		}
		if (last || x->count < RLFS_IOC_EXTENTS_BATCH)
			break;
	}
	free(x);
	return ret;
}

int dd_phys_map(int fd, enum dd_fs_kind kind, uint64_t off, uint64_t nblocks, uint32_t blksize,
		uint64_t *phys)
{
	if (blksize == 0 || off % blksize)
		return -EINVAL;
	memset(phys, 0, nblocks * sizeof(*phys));
	if (nblocks == 0)
		return 0;
	return kind == DD_FS_REFLINKFS ? phys_map_rlfs(fd, off, nblocks, blksize, phys)
				       : phys_map_fiemap(fd, off, nblocks, blksize, phys);
}

/* One call of at most DD_SHARE_MAX_CALL_BYTES: the status (0, 1 differs,
 * -errno) and *done. */
static int share_once(int src_fd, int dst_fd, enum dd_fs_kind kind, uint64_t soff, uint64_t doff,
		      uint64_t len, void *buf, uint64_t *done)
{
	*done = 0;
	if (kind == DD_FS_REFLINKFS) {
		struct rlfs_ioc_dedupe_range *a = buf;
		memset(a, 0, offsetof(struct rlfs_ioc_dedupe_range, info) + sizeof(a->info[0]));
		a->src_offset = soff;
		a->src_length = len;
		a->dest_count = 1;
		a->info[0].dest_fd = dst_fd;
		a->info[0].dest_offset = doff;
		if (ioctl(src_fd, RLFS_IOC_DEDUPE_RANGE, a) != 0)
			return -errno;
		*done = a->info[0].bytes_deduped;
		return a->info[0].status;
	}
	struct file_dedupe_range *a = buf;
	memset(a, 0, sizeof(*a) + sizeof(a->info[0]));
	a->src_offset = soff;
	a->src_length = len;
	a->dest_count = 1;
	a->info[0].dest_fd = dst_fd;
	a->info[0].dest_offset = doff;
	if (ioctl(src_fd, FIDEDUPERANGE, a) != 0)
		return -errno;
	*done = a->info[0].bytes_deduped;
	return a->info[0].status;
}

void dd_share(int src_fd, int dst_fd, enum dd_fs_kind kind, uint64_t src_off, uint64_t dst_off,
	      uint64_t len, struct dd_share_result *r)
{
	memset(r, 0, sizeof(*r));
	size_t bufsz = kind == DD_FS_REFLINKFS ? sizeof(struct rlfs_ioc_dedupe_range)
					       : sizeof(struct file_dedupe_range) +
							 sizeof(struct file_dedupe_range_info);
	void *buf = malloc(bufsz);
	if (!buf) {
		r->error = -ENOMEM;
		return;
	}
	while (len > 0) {
		uint64_t n = len < DD_SHARE_MAX_CALL_BYTES ? len : DD_SHARE_MAX_CALL_BYTES, done;
		int st = share_once(src_fd, dst_fd, kind, src_off, dst_off, n, buf, &done);
		if (st == FILE_DEDUPE_RANGE_DIFFERS) {
			r->differs = true;
			break;
		}
		if (st < 0) {
			r->error = st;
			break;
		}
		if (st != FILE_DEDUPE_RANGE_SAME || done == 0 || done > n) {
			r->error = -EIO;    /* no progress or a nonsense answer */
			break;
		}
		r->deduped_bytes += done;
		src_off += done;
		dst_off += done;
		len -= done;
	}
	free(buf);
}

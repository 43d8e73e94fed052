/*
 * exchange.c: exchange range (rlfs_exchange_range, reflinkfs/fs.h) and
 * its deferred work, the exchange-mapping intent XMI/XMD (exchange.h has
 * the design).  Model: fs/xfs/xfs_exchrange.c (checks, locking, sizes),
 * fs/xfs/libxfs/xfs_exchmaps.c and xfs_exchmaps_item.c (the step and its
 * log item), Linux 6.10.
 */
#include "exchange.h"

#include <errno.h>
#include <stdlib.h>

#include "bmap.h"
#include "cowfork.h"
#include "inode.h"
#include "reflinkfs/fs.h"
#include "trans_resv.h"

static inline uint64_t irec_end(const struct rlfs_irec *r)
{
	return r->startoff + r->blockcount;
}

/* ---- the XMI type ---- */

struct xmi_work {
	struct rlfs_defer_item di;
	uint64_t ino1, ino2;
	uint64_t off1, off2;        /* file blocks */
	uint64_t count;             /* blocks left */
	uint32_t flags;             /* RLFS_XMI_* */
	uint64_t size1, size2;      /* bytes, with RLFS_XMI_SET_SIZES */
};

static void xmi_encode(const struct rlfs_defer_item *item, void *buf)
{
	const struct xmi_work *w = (const struct xmi_work *)item;
	struct rlfs_xmi_item *x = buf;
	rlfs_put64(x->ino1, w->ino1);
	rlfs_put64(x->ino2, w->ino2);
	rlfs_put64(x->startoff1, w->off1);
	rlfs_put64(x->startoff2, w->off2);
	rlfs_put64(x->blockcount, w->count);
	rlfs_put64(x->flags, w->flags);
	rlfs_put64(x->new_size1, w->size1);
	rlfs_put64(x->new_size2, w->size2);
}

static void xmi_free(struct rlfs_defer_item *item)
{
	free(item);
}

/* The inode ino of an XMI, joined to tp: in normal operation the caller
 * holds it (found in the cache); in log recovery it is read in.  The
 * reference taken here is dropped at once (as bui_inode: a joined inode
 * is not freed by its last irele). */
static int xmi_inode(struct rlfs_trans *tp, uint64_t ino, struct rlfs_inode **ipp)
{
	return rlfs_defer_item_inode(tp, "XMI", ino, ipp);
}

/* The mapping of file block off of ip for at most *n blocks: *n is
 * shortened to where ip's extent (or hole) ends; *fsbno 0 for a hole,
 * *state the extent's state. */
static void piece_at(struct rlfs_inode *ip, uint64_t off, uint64_t *n, uint64_t *fsbno,
		     uint32_t *state)
{
	struct rlfs_irec got;
	bool found;
	rlfs_bmap_lookup(ip, off, &got, &found);
	if (found) {
		*n = RLFS_MIN(*n, irec_end(&got) - off);
		*fsbno = got.startblock + (off - got.startoff);
		*state = got.state;
	} else {
		if (got.blockcount)
			*n = RLFS_MIN(*n, got.startoff - off);
		*fsbno = 0;
		*state = 0;
	}
}

/*
 * One step (exchange.h): pass over the pieces that need no change, then
 * exchange the first one that does, in tp.  -EAGAIN with w advanced while
 * blocks are left; 0 when the range is done (sizes set then).
 * Source: xfs_exchmaps_finish_one / xfs_exchmaps_one_step.
 */
static int xmi_finish(struct rlfs_trans *tp, struct rlfs_defer_item *item)
{
	struct xmi_work *w = (struct xmi_work *)item;
	struct rlfs_inode *ip1, *ip2;
	int err = xmi_inode(tp, w->ino1, &ip1);
	if (!err)
		err = xmi_inode(tp, w->ino2, &ip2);
	if (err)
		return err;
	while (w->count) {
		uint64_t n = RLFS_MIN(w->count, (uint64_t)RLFS_MAX_EXTLEN), fsb1, fsb2;
		uint32_t st1, st2;
		piece_at(ip1, w->off1, &n, &fsb1, &st1);
		piece_at(ip2, w->off2, &n, &fsb2, &st2);
		bool skip = (!fsb1 && !fsb2) || (fsb1 == fsb2 && st1 == st2) ||
			    ((w->flags & RLFS_XMI_FILE1_WRITTEN) &&
			     (!fsb1 || (st1 & RLFS_EXT_UNWRITTEN)));
		if (!skip) {
			bool done;
			err = rlfs_bmap_unmap(tp, ip1, w->off1, n, RLFS_BUNMAP_KEEP, 0, &done);
			if (!err)
				err = rlfs_bmap_unmap(tp, ip2, w->off2, n, RLFS_BUNMAP_KEEP, 0, &done);
			if (!err && fsb2) {
				struct rlfs_irec m = { .startoff = w->off1, .startblock = fsb2,
						       .blockcount = (uint32_t)n, .state = st2 };
				err = rlfs_bmap_map_extent(tp, ip1, &m);
			}
			if (!err && fsb1) {
				struct rlfs_irec m = { .startoff = w->off2, .startblock = fsb1,
						       .blockcount = (uint32_t)n, .state = st1 };
				err = rlfs_bmap_map_extent(tp, ip2, &m);
			}
			if (err == -EEXIST)
				err = rlfs_corrupt(tp->mp, fsb1 ? fsb1 : fsb2, "bmap",
						   "XMI of inodes %llu and %llu: a range to map is "
						   "not a hole", (unsigned long long)w->ino1,
						   (unsigned long long)w->ino2);
			if (err)
				return err;
		}
		w->off1 += n;
		w->off2 += n;
		w->count -= n;
		if (!skip)
			break;  /* one exchanged piece per step */
	}
	if (!w->count && (w->flags & RLFS_XMI_SET_SIZES)) {
		ip1->size = w->size1;
		ip2->size = w->size2;
	}
	rlfs_trans_log_inode(tp, ip1);
	rlfs_trans_log_inode(tp, ip2);
	return w->count ? -EAGAIN : 0;
}

static int xmi_recover(struct rlfs_trans *tp, const void *buf, size_t bytes)
{
	const struct rlfs_xmi_item *x = buf;
	struct rlfs_mount *mp = tp->mp;
	uint64_t maxfb = mp->maxbytes >> mp->blocklog;
	struct xmi_work w = {
		.ino1 = rlfs_get64(x->ino1),
		.ino2 = rlfs_get64(x->ino2),
		.off1 = rlfs_get64(x->startoff1),
		.off2 = rlfs_get64(x->startoff2),
		.count = rlfs_get64(x->blockcount),
		.size1 = rlfs_get64(x->new_size1),
		.size2 = rlfs_get64(x->new_size2),
	};
	uint64_t flags = rlfs_get64(x->flags);
	bool sizes = flags & RLFS_XMI_SET_SIZES;
	if (bytes != sizeof(*x) || (flags & ~(uint64_t)RLFS_XMI_FLAGS) || w.count == 0 ||
	    w.off1 > maxfb || w.count > maxfb - w.off1 || w.off2 > maxfb ||
	    w.count > maxfb - w.off2 ||
	    (sizes ? (w.size1 > mp->maxbytes || w.size2 > mp->maxbytes) : (w.size1 || w.size2)) ||
	    (w.ino1 == w.ino2 && w.off1 < w.off2 + w.count && w.off2 < w.off1 + w.count))
		return rlfs_corrupt(mp, 0, "log",
				    "XMI item (inodes %llu, %llu, file blocks %llu, %llu, +%llu, "
				    "flags 0x%llx) is not valid",
				    (unsigned long long)w.ino1, (unsigned long long)w.ino2,
				    (unsigned long long)w.off1, (unsigned long long)w.off2,
				    (unsigned long long)w.count, (unsigned long long)flags);
	/* both inodes must be regular files in use (read in and checked) */
	struct rlfs_inode *ip;
	int err = xmi_inode(tp, w.ino1, &ip);
	if (!err)
		err = xmi_inode(tp, w.ino2, &ip);
	if (err)
		return err;
	return rlfs_xmi_add(tp, w.ino1, w.off1, w.ino2, w.off2, w.count, (unsigned)flags,
			    w.size1, w.size2);
}

const struct rlfs_defer_type rlfs_xmi_type = {
	.name = "exchange mappings",
	.intent_code = RLFS_LOG_XMI,
	.done_code = RLFS_LOG_XMD,
	.max_items = 1,
	.item_bytes = sizeof(struct rlfs_xmi_item),
	.encode = xmi_encode,
	.finish_item = xmi_finish,
	.cancel_item = xmi_free,
	.recover_item = xmi_recover,
};

int rlfs_xmi_add(struct rlfs_trans *tp, uint64_t ino1, uint64_t startoff1, uint64_t ino2,
		 uint64_t startoff2, uint64_t blockcount, unsigned flags, uint64_t new_size1,
		 uint64_t new_size2)
{
	if (blockcount == 0 || (flags & ~RLFS_XMI_FLAGS))
		return -EINVAL;
	struct xmi_work *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct xmi_work){
		.ino1 = ino1, .ino2 = ino2, .off1 = startoff1, .off2 = startoff2,
		.count = blockcount, .flags = flags,
		.size1 = (flags & RLFS_XMI_SET_SIZES) ? new_size1 : 0,
		.size2 = (flags & RLFS_XMI_SET_SIZES) ? new_size2 : 0,
	};
	int err = rlfs_defer_add(tp, &rlfs_xmi_type, &w->di);
	if (err)
		free(w);
	return err;
}

/* ---- rlfs_exchange_range ---- */

/* Both iolocks exclusive, in ascending inode number (one lock for one
 * file), as xfs_exchrange_ilock / lock_two_nondirectories. */
static void lock_pair(struct rlfs_inode *a, struct rlfs_inode *b)
{
	if (a == b) {
		pthread_rwlock_wrlock(&a->iolock);
		return;
	}
	if (a->ino > b->ino) {
		struct rlfs_inode *t = a;
		a = b;
		b = t;
	}
	pthread_rwlock_wrlock(&a->iolock);
	pthread_rwlock_wrlock(&b->iolock);
}

static void unlock_pair(struct rlfs_inode *a, struct rlfs_inode *b)
{
	pthread_rwlock_unlock(&a->iolock);
	if (a != b)
		pthread_rwlock_unlock(&b->iolock);
}

/* Extents of ip overlapping file blocks [fb, fb + n). */
static uint64_t extents_in(struct rlfs_inode *ip, uint64_t fb, uint64_t n)
{
	uint64_t count = 0, end = fb + n;
	while (fb < end) {
		struct rlfs_irec got;
		bool found;
		rlfs_bmap_lookup(ip, fb, &got, &found);
		if (found) {
			count++;
			fb = irec_end(&got);
		} else if (got.blockcount) {
			fb = got.startoff;
		} else {
			break;
		}
	}
	return count;
}

/* setuid/setgid as clone_kill_suid does for a clone (file_remove_privs). */
static void kill_suid(struct rlfs_inode *ip, bool suid, bool sgid)
{
	if (!suid && !sgid)
		return;
	uint32_t mode = ip->mode & ~(uint32_t)S_ISUID;
	if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP) || sgid)
		mode &= ~(uint32_t)S_ISGID;
	if (mode != ip->mode)
		ip->mode = mode;
}

/*
 * The checks of xfs_exchange_range_checks (after the fd checks, which are
 * the caller's) on the locked inodes.  *len may be set (TO_EOF); *blen
 * gets the bytes of whole blocks the exchange covers (the range rounded
 * up to the block at an EOF).  0 or -errno.
 */
static int exchange_checks(struct rlfs_inode *ip1, uint64_t off1, struct rlfs_inode *ip2,
			   uint64_t off2, uint64_t *lenp, uint64_t flags, uint64_t *blen)
{
	struct rlfs_mount *mp = ip1->mp;
	const uint64_t mask = mp->blocksize - 1;
	if (S_ISDIR(ip1->mode) || S_ISDIR(ip2->mode))
		return -EISDIR;
	if (!S_ISREG(ip1->mode) || !S_ISREG(ip2->mode))
		return -EINVAL;
	if (mp->flags & RLFS_MOUNT_RDONLY)
		return -EROFS;
	if ((ip1->flags | ip2->flags) & (RLFS_DIFLAG_IMMUTABLE | RLFS_DIFLAG_APPEND))
		return -EPERM;
	if (!ip1->ext_loaded || !ip2->ext_loaded)
		return -EUCLEAN;
	uint64_t size1 = ip1->size, size2 = ip2->size, len = *lenp;
	/* ranges cannot start after EOF */
	if (off1 > size1 || off2 > size2)
		return -EINVAL;
	if (flags & RLFS_EXCHANGE_TO_EOF)
		len = RLFS_MAX(size1 - off1, size2 - off2);
	/* the starts must be block-aligned */
	if ((off1 & mask) || (off2 & mask))
		return -EINVAL;
	/* file size limits (generic_write_check_limits): not shortened */
	if (off1 >= mp->maxbytes || off2 >= mp->maxbytes || len > mp->maxbytes - off1 ||
	    len > mp->maxbytes - off2)
		return len ? -EFBIG : 0;
	/* ranges cannot reach past EOF (TO_EOF: the shorter file's range
	 * runs past its EOF, into the blocks after it) */
	if (!(flags & RLFS_EXCHANGE_TO_EOF) && (off1 + len > size1 || off2 + len > size2))
		return -EINVAL;
	/* at an EOF the range is rounded up to its block; elsewhere the
	 * length must be whole blocks */
	uint64_t b;
	if (off1 + len == size1)
		b = ((size1 + mask) & ~mask) - off1;
	else if (off2 + len == size2)
		b = ((size2 + mask) & ~mask) - off2;
	else if (len & mask)
		return -EINVAL;
	else
		b = len;
	/* no overlapping exchange within one file */
	if (ip1 == ip2 && off2 + b > off1 && off1 + b > off2)
		return -EINVAL;
	/* no partial EOF block into the middle of the other file */
	if (len & mask) {
		uint64_t l = len;
		if (off2 + l < size2)
			l &= ~mask;
		if (off1 + l < size1)
			l &= ~mask;
		if (l != len)
			return -EINVAL;
	}
	*lenp = len;
	*blen = len ? b : 0;
	return 0;
}

int rlfs_exchange_fresh_sample(struct rlfs_mount *mp, uint64_t ino2,
			       struct rlfs_exchange_fresh *fresh)
{
	struct rlfs_inode *ip;
	int err = rlfs_iget(mp, ino2, &ip);
	if (err)
		return err;
	pthread_rwlock_rdlock(&ip->iolock);
	*fresh = (struct rlfs_exchange_fresh){
		.ino = ip->ino, .generation = ip->generation, .mtime = ip->mtime,
		.ctime = ip->ctime,
	};
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return 0;
}

/* file2 (ip, locked) is as fresh was sampled: same inode, mtime, ctime. */
static bool still_fresh(const struct rlfs_inode *ip, const struct rlfs_exchange_fresh *f)
{
	return f->ino == ip->ino && f->generation == ip->generation &&
	       f->mtime.tv_sec == ip->mtime.tv_sec && f->mtime.tv_nsec == ip->mtime.tv_nsec &&
	       f->ctime.tv_sec == ip->ctime.tv_sec && f->ctime.tv_nsec == ip->ctime.tv_nsec;
}

int rlfs_exchange_range(struct rlfs_mount *mp, uint64_t ino1, uint64_t off1, uint64_t ino2,
			uint64_t off2, uint64_t len, uint64_t flags)
{
	return rlfs_commit_range(mp, ino1, off1, ino2, off2, len, flags, NULL);
}

int rlfs_commit_range(struct rlfs_mount *mp, uint64_t ino1, uint64_t off1, uint64_t ino2,
		      uint64_t off2, uint64_t len, uint64_t flags,
		      const struct rlfs_exchange_fresh *fresh)
{
	const uint64_t kill = RLFS_EXCHANGE_KILL_SUID1 | RLFS_EXCHANGE_KILL_SGID1 |
			      RLFS_EXCHANGE_KILL_SUID2 | RLFS_EXCHANGE_KILL_SGID2;
	struct rlfs_inode *ip1 = NULL, *ip2 = NULL;
	int err;

	if (flags & ~(RLFS_EXCHANGE_ALL_FLAGS | kill))
		return -EINVAL;
	/* loff_t offsets and lengths that do not wrap (remap_verify_area) */
	if (off1 > INT64_MAX || off2 > INT64_MAX || len > INT64_MAX ||
	    len > (uint64_t)INT64_MAX - off1 || len > (uint64_t)INT64_MAX - off2)
		return -EINVAL;
	err = rlfs_iget(mp, ino1, &ip1);
	if (err)
		return err;
	err = rlfs_iget(mp, ino2, &ip2);
	if (err) {
		rlfs_irele(ip1);
		return err;
	}
	lock_pair(ip1, ip2);
	uint64_t blen = 0, size1 = ip1->size, size2 = ip2->size;
	err = exchange_checks(ip1, off1, ip2, off2, &len, flags, &blen);
	/* the freshness check after the others (xfs_exchange_range_checks),
	 * under the iolocks, so nothing changes file2 between it and the
	 * exchange */
	if (!err && fresh && !still_fresh(ip2, fresh))
		err = -EBUSY;
	if (err || blen == 0 || (flags & RLFS_EXCHANGE_DRY_RUN))
		goto out;
	uint64_t fb1 = off1 >> mp->blocklog, fb2 = off2 >> mp->blocklog;
	uint64_t nb = blen >> mp->blocklog;
	/* staged CoW blocks of both ranges go back first: the fork holds no
	 * data between writes (cowfork.h), and it must not be remapped over
	 * the exchanged mappings later */
	err = rlfs_cowfork_cancel(ip1, fb1, fb1 + nb);
	if (!err)
		err = rlfs_cowfork_cancel(ip2, fb2, fb2 + nb);
	if (err)
		goto out;
	/* every piece changes at most two extents of each fork; reserve
	 * their bmbt growth for the whole chain (xfs_exchrange_estimate) */
	uint64_t pieces = extents_in(ip1, fb1, nb) + extents_in(ip2, fb2, nb) + 1;
	uint32_t p32 = pieces > UINT32_MAX / 8 ? UINT32_MAX / 8 : (uint32_t)pieces;
	uint32_t resblks = rlfs_bmap_res(ip1, 2 * p32 + 2) + rlfs_bmap_res(ip2, 2 * p32 + 2);
	struct rlfs_trans *tp;
	err = rlfs_trans_alloc(mp, &mp->resv.tr_clone, resblks, 0, &tp);
	if (err)
		goto out;
	err = rlfs_defer_hold_inode(tp, ip1);
	if (!err)
		err = rlfs_defer_hold_inode(tp, ip2);
	if (err) {
		rlfs_trans_cancel(tp);
		goto out;
	}
	/* both files' contents change: times and privileges, in the
	 * transaction that logs the first intent (xfs_exchange_range_finish) */
	struct timespec now;
	rlfs_now(&now);
	ip1->mtime = ip1->ctime = now;
	ip2->mtime = ip2->ctime = now;
	kill_suid(ip1, flags & RLFS_EXCHANGE_KILL_SUID1, flags & RLFS_EXCHANGE_KILL_SGID1);
	kill_suid(ip2, flags & RLFS_EXCHANGE_KILL_SUID2, flags & RLFS_EXCHANGE_KILL_SGID2);
	rlfs_trans_log_inode(tp, ip1);
	rlfs_trans_log_inode(tp, ip2);
	unsigned xflags = 0;
	if (flags & RLFS_EXCHANGE_TO_EOF)
		xflags |= RLFS_XMI_SET_SIZES;
	if (flags & RLFS_EXCHANGE_FILE1_WRITTEN)
		xflags |= RLFS_XMI_FILE1_WRITTEN;
	err = rlfs_xmi_add(tp, ino1, fb1, ino2, fb2, nb, xflags, off1 + (size2 - off2),
			   off2 + (size1 - off1));
	if (err) {
		rlfs_trans_cancel(tp);
		goto out;
	}
	/* logs the XMI, then one step per rolled transaction */
	err = rlfs_trans_commit(tp);
out:
	unlock_pair(ip1, ip2);
	rlfs_irele(ip2);
	rlfs_irele(ip1);
	if (!err && blen && (flags & RLFS_EXCHANGE_DSYNC) && !(flags & RLFS_EXCHANGE_DRY_RUN)) {
		err = rlfs_fsync(mp, ino1, 1);
		if (!err && ino2 != ino1)
			err = rlfs_fsync(mp, ino2, 1);
	}
	return err;
}

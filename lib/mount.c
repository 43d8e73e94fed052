/*
 * mount.c: opening and closing a filesystem, sync and statfs.
 *
 * Mount: read the first RLFS_MIN_BLOCKSIZE bytes raw to learn the block
 * size, then read the superblock through the buffer cache (full verifier:
 * crc, magic, geometry), check it against the device, read every AG header
 * (their verifiers run) to initialise the free-block and inode counters,
 * load the root inode, and mark the superblock dirty on disk so that a
 * crash before a clean unmount is visible to fsck.
 * Unmount: free unlinked inodes still held, flush everything, write the
 * superblock with state clean and exact summary counters, flush again.
 */
#include "reflinkfs/fs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "bmap.h"
#include "dev.h"
#include "inode.h"
#include "rlfs.h"
#include "trans.h"

uint64_t rlfs_root_ino(struct rlfs_mount *mp)
{
	return mp->rootino;
}

static int check_sb(const struct rlfs_sb *sb, uint64_t dev_bytes, const char *image)
{
	uint32_t bs = rlfs_get32(sb->blocksize);
	uint64_t dblocks = rlfs_get64(sb->dblocks);
	uint32_t agblocks = rlfs_get32(sb->agblocks);
	uint32_t agcount = rlfs_get32(sb->agcount);
	uint32_t isize = rlfs_get16(sb->inodesize);

	if (rlfs_get32(sb->hdr.magic) != RLFS_SB_MAGIC) {
		rlfs_warn("%s: not a reflinkfs filesystem (no superblock magic)", image);
		return -EUCLEAN;
	}
	if (rlfs_get32(sb->version) != RLFS_VERSION) {
		rlfs_warn("%s: unsupported format version %u", image, rlfs_get32(sb->version));
		return -EOPNOTSUPP;
	}
	if (rlfs_get64(sb->features_incompat) & ~RLFS_FEAT_INCOMPAT_KNOWN) {
		rlfs_warn("%s: unknown incompatible features 0x%llx", image,
			  (unsigned long long)(rlfs_get64(sb->features_incompat) &
					       ~RLFS_FEAT_INCOMPAT_KNOWN));
		return -EOPNOTSUPP;
	}
	if (bs < RLFS_MIN_BLOCKSIZE || bs > RLFS_MAX_BLOCKSIZE || (bs & (bs - 1)) ||
	    isize < 256 || isize > bs || (isize & (isize - 1)) ||
	    agblocks < 64 || agblocks > RLFS_MAX_AGBLOCKS || agcount == 0 ||
	    dblocks == 0 || (uint64_t)(agcount - 1) * agblocks >= dblocks ||
	    (uint64_t)agcount * agblocks < dblocks ||
	    rlfs_get16(sb->inopblock) != bs / isize) {
		rlfs_warn("%s: superblock geometry is corrupt (blocksize %u, %llu blocks, "
			  "%u AGs of %u blocks, inode size %u)", image, bs,
			  (unsigned long long)dblocks, agcount, agblocks, isize);
		return -EUCLEAN;
	}
	if (dblocks > dev_bytes / bs) {
		rlfs_warn("%s: image is truncated: %llu bytes, filesystem needs %llu", image,
			  (unsigned long long)dev_bytes, (unsigned long long)(dblocks * bs));
		return -EUCLEAN;
	}
	return 0;
}

/* Sum the per-AG counters (verifies every AG header on the way). */
static int init_counters(struct rlfs_mount *mp)
{
	struct rlfs_trans *tp;
	int err = rlfs_trans_alloc(mp, 0, RLFS_TRANS_RDONLY, &tp);
	if (err)
		return err;
	uint64_t free_blocks = 0, icount = 0, ifree = 0;
	for (uint32_t agno = 0; agno < mp->agcount && !err; agno++) {
		struct rlfs_buf *bp;
		err = rlfs_ag_read_header(tp, agno, &bp);
		if (err)
			break;
		struct rlfs_agh *agh = rlfs_agh(bp);
		free_blocks += rlfs_get32(agh->freeblks) + rlfs_get32(agh->flcount);
		icount += rlfs_get64(agh->icount);
		ifree += rlfs_get64(agh->ifree);
		rlfs_trans_brelse(tp, bp);
	}
	rlfs_trans_cancel(tp);
	if (err)
		return err;
	/* Per AG: the AGFL minimum, and the headroom data allocations leave so
	 * that the refcount btree can always grow (bmap.c); neither is space
	 * a file can get, so statfs and reservations leave both out. */
	mp->setaside = (uint64_t)mp->agcount * (rlfs_agfl_min(mp) + rlfs_bmap_ag_headroom(mp));
	mp->fdblocks = (int64_t)free_blocks - (int64_t)mp->setaside;
	mp->icount = icount;
	mp->ifree = ifree;
	/* Reserve pool: 5% of the filesystem, at most 8192 blocks (XFS's
	 * default reserve), so that deletes work on a full filesystem. */
	mp->resblks = RLFS_MIN(mp->dblocks / 20, 8192);
	return 0;
}

/* Write the superblock's state and summary counters (under a transaction). */
static int write_sb(struct rlfs_mount *mp, uint32_t state)
{
	struct rlfs_trans *tp;
	int err = rlfs_trans_alloc(mp, 0, 0, &tp);
	if (err)
		return err;
	struct rlfs_buf *bp;
	err = rlfs_trans_read_buf(tp, 0, &rlfs_sb_buf_ops, 0, &bp);
	if (err) {
		rlfs_trans_cancel(tp);
		return err;
	}
	struct rlfs_sb *sb = bp->data;
	rlfs_put32(sb->state, state);
	int64_t fdb = mp->fdblocks + (int64_t)mp->setaside;
	rlfs_put64(sb->fdblocks, fdb > 0 ? (uint64_t)fdb : 0);
	rlfs_put64(sb->icount, mp->icount);
	rlfs_put64(sb->ifree, mp->ifree);
	rlfs_trans_log_buf(tp, bp);
	err = rlfs_trans_commit(tp);
	if (err)
		return err;
	return rlfs_sync(mp);
}

int rlfs_mount_open(const char *image, unsigned flags, struct rlfs_mount **mpp)
{
	struct rlfs_dev *dev;
	bool rdonly = flags & RLFS_MOUNT_RDONLY;
	int err = rlfs_dev_open(image, !rdonly, !(flags & RLFS_MOUNT_NOLOCK), &dev);
	if (err) {
		if (err == -EBUSY)
			rlfs_warn("%s: image is in use (already mounted?)", image);
		return err;
	}
	uint8_t raw[RLFS_MIN_BLOCKSIZE];
	if (dev->size_bytes < RLFS_MIN_BLOCKSIZE ||
	    rlfs_dev_pread(dev, raw, sizeof(raw), 0)) {
		rlfs_warn("%s: too small or unreadable to hold a reflinkfs filesystem", image);
		rlfs_dev_close(dev);
		return -EUCLEAN;
	}
	struct rlfs_sb sbcopy;
	memcpy(&sbcopy, raw, sizeof(sbcopy));
	err = check_sb(&sbcopy, dev->size_bytes, image);
	if (err) {
		rlfs_dev_close(dev);
		return err;
	}
	struct rlfs_mount *mp;
	err = rlfs_mount_alloc_bare(dev, rlfs_get32(sbcopy.blocksize),
				    rlfs_get64(sbcopy.dblocks), rlfs_get32(sbcopy.agblocks), &mp);
	if (err) {
		rlfs_dev_close(dev);
		return err;
	}
	mp->flags = flags;
	memcpy(mp->uuid, sbcopy.hdr.uuid, RLFS_UUID_SIZE);
	mp->inodesize = rlfs_get16(sbcopy.inodesize);
	mp->inopblock = rlfs_get16(sbcopy.inopblock);
	mp->chunk_blocks = RLFS_MAX(1u, RLFS_INODES_PER_CHUNK / mp->inopblock);
	mp->rootino = rlfs_get64(sbcopy.rootino);
	mp->features_incompat = rlfs_get64(sbcopy.features_incompat);
	mp->maxbytes = rlfs_get64(sbcopy.maxbytes);
	if (mp->agcount != rlfs_get32(sbcopy.agcount)) {
		rlfs_warn("%s: superblock AG count does not match its geometry", image);
		err = -EUCLEAN;
		goto fail;
	}

	/* Now the full verifier (crc, every field) through the cache. */
	struct rlfs_trans *tp;
	err = rlfs_trans_alloc(mp, 0, RLFS_TRANS_RDONLY, &tp);
	if (err)
		goto fail;
	struct rlfs_buf *bp;
	err = rlfs_trans_read_buf(tp, 0, &rlfs_sb_buf_ops, 0, &bp);
	rlfs_trans_cancel(tp);
	if (err) {
		rlfs_warn("%s: superblock failed verification", image);
		goto fail;
	}
	err = init_counters(mp);
	if (err) {
		rlfs_warn("%s: an AG header failed verification; run fsck", image);
		goto fail;
	}
	err = rlfs_icache_init(mp);
	if (err)
		goto fail;
	struct rlfs_inode *root;
	err = rlfs_iget(mp, mp->rootino, &root);
	if (err) {
		rlfs_warn("%s: cannot read the root directory inode %llu (%s); run fsck", image,
			  (unsigned long long)mp->rootino, strerror(-err));
		rlfs_icache_destroy(mp);
		err = err == -ENOENT ? -EUCLEAN : err;
		goto fail;
	}
	if (!S_ISDIR(root->mode)) {
		rlfs_warn("%s: root inode %llu is not a directory; run fsck", image,
			  (unsigned long long)mp->rootino);
		rlfs_irele(root);
		rlfs_icache_destroy(mp);
		err = -EUCLEAN;
		goto fail;
	}
	rlfs_irele(root);
	if (!rdonly) {
		err = write_sb(mp, RLFS_STATE_DIRTY);
		if (err) {
			rlfs_icache_destroy(mp);
			goto fail;
		}
	}
	*mpp = mp;
	return 0;
fail:
	rlfs_mount_free_bare(mp);
	rlfs_dev_close(dev);
	return err;
}

int rlfs_sync(struct rlfs_mount *mp)
{
	struct rlfs_trans *tp;
	int err = rlfs_trans_alloc(mp, 0, RLFS_TRANS_RDONLY, &tp);
	if (err)
		return err;
	err = rlfs_buf_flush_all(mp);
	rlfs_trans_cancel(tp);
	return err;
}

int rlfs_mount_close(struct rlfs_mount *mp)
{
	int err = 0, err2;
	if (!mp)
		return 0;
	/* unlinked-but-open inodes still cached are freed now */
	err = rlfs_icache_reclaim(mp);
	if (!(mp->flags & RLFS_MOUNT_RDONLY)) {
		err2 = write_sb(mp, RLFS_STATE_CLEAN);
		if (!err)
			err = err2;
	}
	/* Release the image (its lock goes with the descriptor) before
	 * freeing the caches: freeing tens of thousands of buffers and inodes
	 * one by one takes seconds under a sanitizer or on a loaded machine,
	 * and whoever waits for the image (umount, fsck) need not wait for it. */
	rlfs_dev_close(mp->dev);
	mp->dev = NULL;
	rlfs_progress(mp, RLFS_PROGRESS_RELEASED, 0, 0);
	rlfs_icache_destroy(mp);
	rlfs_mount_free_bare(mp);
	return err;
}

int rlfs_statfs(struct rlfs_mount *mp, struct statvfs *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&mp->meta_lock);
	int64_t fdb = mp->fdblocks;
	int64_t avail = fdb - (int64_t)mp->resblks;
	uint64_t icount = mp->icount, ifree = mp->ifree;
	pthread_mutex_unlock(&mp->meta_lock);
	if (fdb < 0)
		fdb = 0;
	if (avail < 0)
		avail = 0;
	st->f_bsize = mp->blocksize;
	st->f_frsize = mp->blocksize;
	st->f_blocks = mp->dblocks;
	st->f_bfree = (fsblkcnt_t)fdb;
	st->f_bavail = (fsblkcnt_t)avail;
	/* inodes: those in chunks plus as many as free space could hold */
	uint64_t possible = (uint64_t)avail / mp->chunk_blocks * RLFS_INODES_PER_CHUNK;
	st->f_files = icount + possible;
	st->f_ffree = ifree + possible;
	st->f_favail = st->f_ffree;
	st->f_fsid = 0;
	memcpy(&st->f_fsid, mp->uuid, sizeof(st->f_fsid) < 8 ? sizeof(st->f_fsid) : 8);
	st->f_namemax = RLFS_NAME_MAX;
	return 0;
}

/*
 * mount.c: opening and closing a filesystem, sync and statfs.
 *
 * Mount: read the first RLFS_MIN_BLOCKSIZE bytes raw to learn the block
 * size, then read the superblock through the buffer cache (full verifier:
 * crc, magic, geometry), check it against the device, read every AG header
 * (their verifiers run) to initialise the free-block and inode counters,
 * load the root inode, warn if the superblock's error record is set, and
 * mark the superblock dirty on disk so that a crash before a clean unmount
 * is visible to fsck.
 * Unmount: free unlinked inodes still held, flush everything, write the
 * superblock with state clean, exact summary counters and the error record,
 * flush again; if that fails, write the superblock alone, state dirty, with
 * the record.  The record is also staged by every metadata flush
 * (rlfs_errrec_stage, called from rlfs_buf_flush_all).
 */
#include "reflinkfs/fs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "ag_resv.h"
#include "bmap.h"
#include "buf.h"
#include "cowfork.h"
#include "dev.h"
#include "inode.h"
#include "iunlink.h"
#include "log.h"
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
	if (rlfs_get64(sb->features_incompat) & RLFS_FEAT_INCOMPAT_LOG) {
		uint64_t ls = rlfs_get64(sb->log_start);
		uint32_t lb = rlfs_get32(sb->log_blocks);
		if (ls == 0 || lb < RLFS_LOG_MIN_REC_BLOCKS || ls >= dblocks ||
		    lb > dblocks - ls || ls / agblocks != (ls + lb - 1) / agblocks ||
		    ls % agblocks <= RLFS_AGFL_AGBNO) {
			rlfs_warn("%s: superblock log location is corrupt (%u blocks at "
				  "fsbno %llu)", image, lb, (unsigned long long)ls);
			return -EUCLEAN;
		}
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
	int err = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
	if (err)
		return err;
	/* Per AG: the AGFL minimum, and the reserve every allocation but the
	 * AGFL refill leaves so that the refcount and rmap btrees can always
	 * grow: what they may need less what they already use (ag_resv.h);
	 * neither is space a file can get, so statfs and reservations leave
	 * both out.  The transactions that grow or shrink those trees move
	 * blocks between the reserve and the trees (mp->setaside follows at
	 * their commit). */
	mp->ag_resv_ask_blocks = rlfs_ag_resv_ask_blocks(mp);
	uint64_t free_blocks = 0, icount = 0, ifree = 0, resv = 0;
	for (uint32_t agno = 0; agno < mp->agcount && !err; agno++) {
		struct rlfs_buf *bp;
		err = rlfs_ag_read_header(tp, agno, &bp);
		if (err)
			break;
		struct rlfs_agh *agh = rlfs_agh(bp);
		free_blocks += rlfs_get32(agh->freeblks) + rlfs_get32(agh->flcount);
		icount += rlfs_get64(agh->icount);
		ifree += rlfs_get64(agh->ifree);
		resv += rlfs_ag_resv_left_blocks(mp, agh);
		rlfs_trans_brelse(tp, bp);
	}
	rlfs_trans_cancel(tp);
	if (err)
		return err;
	mp->setaside = (uint64_t)mp->agcount * rlfs_agfl_min(mp) + resv;
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
	int err;
	/* CLEAN: everything else first, and durable; only then the superblock
	 * may say CLEAN (the flush below writes the superblock alone).  A
	 * flush writes blocks in block order, the superblock first: when
	 * CLEAN went out in the same flush as the rest, a daemon stopped
	 * during that flush (killed, crashed, power cut) left an image that
	 * claimed to be clean over torn trees.  A flush that failed leaves
	 * the state on disk DIRTY. */
	if (state == RLFS_STATE_CLEAN) {
		err = rlfs_sync(mp);
		if (!err && mp->log) {
			/* with a log: everything in place and the unmount
			 * record first; the CLEAN superblock goes in place
			 * after it, outside the log (below) */
			rlfs_meta_lock(mp);
			err = rlfs_log_quiesce(mp);
			pthread_mutex_unlock(&mp->meta_lock);
		}
		if (err)
			return err;
	}
	err = rlfs_trans_alloc(mp, &mp->resv.tr_sb, 0, 0, &tp);
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
	/* where the clean log's head is (the unmount record just written),
	 * so that the next mount need not read the whole log to find it */
	rlfs_put64(sb->log_clean_lsn,
		   state == RLFS_STATE_CLEAN && mp->log ? mp->log->clean_lsn : 0);
	int64_t fdb = mp->fdblocks + (int64_t)mp->setaside;
	rlfs_put64(sb->fdblocks, fdb > 0 ? (uint64_t)fdb : 0);
	rlfs_put64(sb->icount, mp->icount);
	rlfs_put64(sb->ifree, mp->ifree);
	pthread_mutex_lock(&mp->err_lock);
	rlfs_errrec_store(&mp->err, sb);
	mp->err_staged_seq = mp->err_seq;
	pthread_mutex_unlock(&mp->err_lock);
	rlfs_trans_log_buf(tp, bp);
	err = rlfs_trans_commit(tp);
	if (err)
		return err;
	if (mp->log && state == RLFS_STATE_CLEAN) {
		/* the log is clean (quiesced above; only this superblock
		 * change is in the CIL): write it in place, alone, last */
		rlfs_meta_lock(mp);
		err = rlfs_log_write_unlogged(mp, 0);
		pthread_mutex_unlock(&mp->meta_lock);
		return err;
	}
	err = rlfs_sync(mp);
	if (!err && mp->log) {
		/* DIRTY: the superblock in place too, so that the image says
		 * "not cleanly unmounted" to fsck and older tools */
		rlfs_meta_lock(mp);
		err = rlfs_log_ail_push(mp->log, UINT64_MAX);
		pthread_mutex_unlock(&mp->meta_lock);
	}
	return err;
}

/* Called by rlfs_buf_flush_all under meta_lock: see rlfs.h. */
int rlfs_errrec_stage(struct rlfs_mount *mp)
{
	if (!mp->err_track || (mp->flags & RLFS_MOUNT_RDONLY))
		return 0;
	pthread_mutex_lock(&mp->err_lock);
	bool changed = mp->err_seq != mp->err_staged_seq;
	pthread_mutex_unlock(&mp->err_lock);
	if (!changed)
		return 0;
	struct rlfs_buf *bp;
	int err = rlfs_buf_read(mp, 0, &rlfs_sb_buf_ops, 0, &bp);
	if (err)
		return err;
	if (bp->tp) {
		/* joined to a transaction: it writes the record itself */
		rlfs_buf_relse(bp);
		return 0;
	}
	if (mp->log && (err = rlfs_log_buf_unborrow(mp, bp))) {
		rlfs_buf_relse(bp);
		return err;
	}
	pthread_mutex_lock(&mp->err_lock);
	rlfs_errrec_store(&mp->err, bp->data);
	mp->err_staged_seq = mp->err_seq;
	pthread_mutex_unlock(&mp->err_lock);
	rlfs_buf_mark_dirty(mp, bp);
	rlfs_buf_relse(bp);
	return 0;
}

/*
 * The unmount flush failed: metadata on disk may be half written.  Write
 * the primary superblock alone, straight to the device, with state dirty
 * and the error record (RLFS_SB_ERR_WRITE added), so that the next mount
 * warns and fsck checks.  The cached superblock is not used: its write may
 * be what failed.  0 or negative errno from reading or writing it;
 * *flush_err gets the device flush's result after a successful write.
 */
static int write_sb_errors_raw(struct rlfs_mount *mp, int *flush_err)
{
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	if (!blk)
		return -ENOMEM;
	struct rlfs_sb *sb = (struct rlfs_sb *)blk;
	int err = rlfs_dev_pread(mp->dev, blk, mp->blocksize, 0);
	if (!err && (rlfs_get32(sb->hdr.magic) != RLFS_SB_MAGIC ||
		     rlfs_get32(sb->blocksize) != mp->blocksize ||
		     memcmp(sb->hdr.uuid, mp->uuid, RLFS_UUID_SIZE) != 0))
		err = -EUCLEAN;
	if (!err) {
		pthread_mutex_lock(&mp->err_lock);
		rlfs_errrec_store(&mp->err, sb);
		pthread_mutex_unlock(&mp->err_lock);
		rlfs_put32(sb->state, RLFS_STATE_DIRTY);
		/* as new as anything in the log: replay must not put an older
		 * logged superblock over this one */
		if (mp->log)
			rlfs_put64(sb->hdr.lsn, rlfs_log_head_lsn(mp->log));
		rlfs_cksum_update(blk, mp->blocksize, RLFS_CRC_OFF);
		err = rlfs_dev_pwrite(mp->dev, blk, mp->blocksize, 0);
	}
	*flush_err = err ? 0 : rlfs_dev_flush(mp->dev);
	free(blk);
	return err;
}

/*
 * Free the inodes a crash left on the AGs' unlinked lists (after log
 * recovery, before anything else changes the filesystem; a read-only
 * mount leaves them to the next read-write mount or remount).  A failure
 * is reported and the mount goes on: the rest is left for fsck.
 * Model: xlog_recover_process_iunlinks.
 */
static void unlinked_recover(struct rlfs_mount *mp)
{
	uint64_t freed = 0;
	int err = rlfs_iunlink_recover(mp, &freed);
	const char *img = mp->image ? mp->image : "the image";
	if (freed)
		rlfs_warn("%s: freed %llu unlinked inode(s) left by a crash", img,
			  (unsigned long long)freed);
	if (err)
		rlfs_warn("%s: freeing unlinked inodes left by a crash failed (%s); run "
			  "`reflinkfs fsck %s`", img, strerror(-err), img);
}

/* Free the CoW staging extents a crash left (rlfs_cowfork_recover) and
 * say so; a failure is reported and the mount goes on (the blocks stay
 * used, fsck frees them). */
static void cow_recover(struct rlfs_mount *mp)
{
	uint64_t freed = 0;
	int err = rlfs_cowfork_recover(mp, &freed);
	const char *img = mp->image ? mp->image : "the image";
	if (freed)
		rlfs_warn("%s: freed %llu CoW staging block(s) no CoW fork owned (left by a "
			  "crash or a failed cancel)", img, (unsigned long long)freed);
	if (err && err != -EBUSY)  /* EBUSY: in-core forks own them */
		rlfs_warn("%s: freeing leftover CoW staging extents failed (%s); run "
			  "`reflinkfs fsck %s`", img, strerror(-err), img);
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
	return rlfs_mount_open_dev(dev, image, flags, mpp);
}

int rlfs_mount_open_dev(struct rlfs_dev *dev, const char *image, unsigned flags,
			struct rlfs_mount **mpp)
{
	bool rdonly = flags & RLFS_MOUNT_RDONLY;
	int err;
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
	if ((rlfs_get64(sbcopy.features_ro_compat) & ~RLFS_FEAT_RO_COMPAT_KNOWN) && !rdonly) {
		/* a binary that does not know a read-only compatible feature
		 * could write what that feature keeps wrong (SPEC section 4) */
		rlfs_warn("%s: unknown read-only compatible features 0x%llx: mount it "
			  "read-only (-o ro)", image,
			  (unsigned long long)(rlfs_get64(sbcopy.features_ro_compat) &
					       ~RLFS_FEAT_RO_COMPAT_KNOWN));
		rlfs_dev_close(dev);
		return -EROFS;
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
	mp->features_ro_compat = rlfs_get64(sbcopy.features_ro_compat);
	mp->maxbytes = rlfs_get64(sbcopy.maxbytes);
	mp->log_clean_lsn = rlfs_get32(sbcopy.state) == RLFS_STATE_CLEAN
				    ? rlfs_get64(sbcopy.log_clean_lsn) : 0;
	rlfs_errrec_load(&mp->err, &sbcopy);
	mp->image = strdup(image);
	if (!mp->image) {
		err = -ENOMEM;
		goto fail;
	}
	if (mp->agcount != rlfs_get32(sbcopy.agcount)) {
		rlfs_warn("%s: superblock AG count does not match its geometry", image);
		err = -EUCLEAN;
		goto fail;
	}
	if (mp->features_incompat & RLFS_FEAT_INCOMPAT_LOG) {
		/* find head and tail; replay a dirty log before anything reads
		 * metadata (the superblock itself may be in it) */
		struct rlfs_dev *wdev = NULL;
		if (rdonly) {
			/* a read-only mount replays a dirty log too if the image
			 * can be written (as XFS does unless the device is
			 * read-only): through a second, writable descriptor */
			struct rlfs_log_scan scan;
			err = rlfs_log_recover(mp, rlfs_get64(sbcopy.log_start),
					       rlfs_get32(sbcopy.log_blocks), false, &scan, NULL);
			if (!err && scan.needs_replay && rlfs_dev_open(image, 1, 0, &wdev) == 0)
				mp->dev = wdev;
		}
		if (!err)
			err = rlfs_log_mount(mp, rlfs_get64(sbcopy.log_start),
					     rlfs_get32(sbcopy.log_blocks), rdonly && !wdev);
		if (wdev) {
			mp->dev = dev;
			rlfs_dev_close(wdev);
		}
		if (err) {
			if (err == -EUCLEAN)
				rlfs_warn("%s: the log is corrupt and cannot be replayed; `reflinkfs "
					  "fsck -L %s` zeroes it (the changes it holds are lost) and "
					  "then checks the filesystem", image, image);
			else if (err != -EROFS)
				rlfs_warn("%s: log recovery failed (%s); run `reflinkfs fsck %s` "
					  "(if it cannot replay the log either, `reflinkfs fsck -L %s` "
					  "zeroes it, losing the changes it holds)",
					  image, strerror(-err), image, image);
			goto fail;
		}
		if (mp->log->stats.replayed_ckpts) {
			rlfs_warn("%s: log recovery: replayed %llu checkpoint(s), %llu block(s) "
				  "written, %llu skipped", image,
				  (unsigned long long)mp->log->stats.replayed_ckpts,
				  (unsigned long long)mp->log->stats.replayed_blocks,
				  (unsigned long long)mp->log->stats.skipped_blocks);
			if (rlfs_dev_pread(dev, raw, sizeof(raw), 0)) {
				err = -EIO;
				goto fail;
			}
			memcpy(&sbcopy, raw, sizeof(sbcopy));
			err = check_sb(&sbcopy, dev->size_bytes, image);
			if (err)
				goto fail;
			mp->rootino = rlfs_get64(sbcopy.rootino);
			rlfs_errrec_load(&mp->err, &sbcopy);
		}
	} else if (!rdonly) {
		rlfs_warn("%s has no write-ahead log: it is not crash-safe (a crash while "
			  "metadata is written can damage it); `reflinkfs mkfs` makes "
			  "images with a log", image);
	}

	/* Now the full verifier (crc, every field) through the cache. */
	struct rlfs_trans *tp;
	err = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
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
	if (mp->err.flags) {
		/* as ext4's "mounting fs with errors, running e2fsck is
		 * recommended": say so, and go on (see DESIGN.md) */
		char desc[320];
		rlfs_warn("%s has errors: %s; run `reflinkfs fsck %s`", image,
			  rlfs_errrec_describe(&mp->err, desc, sizeof(desc)), image);
	}
	if (!rdonly) {
		err = write_sb(mp, RLFS_STATE_DIRTY);
		if (err) {
			rlfs_icache_destroy(mp);
			goto fail;
		}
	}
	if (rlfs_log_recovered_pending(mp)) {
		/* recovery, second half: the intents without a done */
		size_t n = rlfs_log_recovered_pending(mp);
		if (rdonly) {
			rlfs_warn("%s: %zu unfinished intent(s) in the log are left for a "
				  "read-write mount (space may look used until then)", image, n);
		} else {
			err = rlfs_log_recover_intents(mp);
			if (err) {
				rlfs_warn("%s: log recovery could not finish %zu intent(s) (%s); "
					  "run `reflinkfs fsck %s`", image, n, strerror(-err), image);
				rlfs_icache_destroy(mp);
				goto fail;
			}
			rlfs_warn("%s: log recovery: finished %zu intent(s)", image, n);
		}
	}
	/* CoW staging extents a crash left between stage and remap: no
	 * file maps them (cowfork.h) */
	if (!rdonly)
		cow_recover(mp);
	/* last, as XFS's xlog_recover_process_iunlinks: free the inodes a
	 * crash left on the unlinked lists (the intents may have been
	 * freeing their blocks) */
	if (!rdonly)
		unlinked_recover(mp);
	mp->err_track = true;
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
	int err = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
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
	/* Remounted read-only with unlinked inodes forgotten since: free
	 * them now (as a read-write unmount would) rather than leak them. */
	if ((mp->flags & RLFS_MOUNT_RDONLY) && mp->dev->writable && rlfs_icache_has_forgotten(mp))
		err = rlfs_mount_set_rdonly(mp, false);
	if (mp->shutdown) {
		/* nothing more is written (rlfs_force_shutdown): the image
		 * stays as the log left it, DIRTY, and the next mount's
		 * recovery finishes the stranded work */
		rlfs_warn("%s: unmounting a shut down filesystem: nothing written; the next "
			  "mount replays the log", mp->image ? mp->image : "reflinkfs");
		rlfs_dev_close(mp->dev);
		mp->dev = NULL;
		rlfs_progress(mp, RLFS_PROGRESS_RELEASED, 0, 0);
		rlfs_icache_destroy(mp);
		rlfs_mount_free_bare(mp);
		return -EIO;
	}
	/* staged CoW blocks no write used go back to free space (they
	 * would be the next mount's recovery's otherwise) */
	if (!(mp->flags & RLFS_MOUNT_RDONLY)) {
		int64_t g = rlfs_cowfork_gc(mp, 0, NULL, true);
		if (g < 0 && !err)
			err = (int)g;
		/* and staging records whose in-core fork was dropped (a
		 * cancel failed, an inode freed from memory with them): a
		 * clean image has none, as fsck checks */
		cow_recover(mp);
	}
	/* unlinked-but-open inodes still cached are freed now */
	err2 = rlfs_icache_reclaim(mp);
	if (!err)
		err = err2;
	/* Remounted read-only (the device was writable): the remount wrote
	 * the clean superblock, but a transaction that had checked the
	 * read-only flag just before it flipped (an unlinked inode freed at
	 * the kernel's forget, an atime update) may have committed after;
	 * write and flush once more so that nothing is left behind and the
	 * summary counters are exact. */
	if (!(mp->flags & RLFS_MOUNT_RDONLY) || mp->dev->writable) {
		err2 = write_sb(mp, RLFS_STATE_CLEAN);
		if (!err)
			err = err2;
		if (err2) {
			/* the error record must reach the disk even so */
			rlfs_mark_error(mp, RLFS_SB_ERR_WRITE, 0, NULL);
			int ferr = 0, err3 = write_sb_errors_raw(mp, &ferr);
			const char *img = mp->image ? mp->image : "the image";
			if (err3)
				rlfs_warn("%s: the unmount flush failed (%s) and the superblock "
					  "could not record it (%s): run `reflinkfs fsck %s`", img,
					  strerror(-err2), strerror(-err3), img);
			else
				rlfs_warn("%s: the unmount flush failed (%s); superblock marked "
					  "as having errors%s: run `reflinkfs fsck %s`", img,
					  strerror(-err2), ferr ? " (but the device flush failed: "
					  "it may not survive a crash)" : "", img);
		}
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
	rlfs_meta_lock(mp);
	int64_t fdb = mp->fdblocks;
	int64_t avail = fdb - (int64_t)mp->resblks -
			(int64_t)__atomic_load_n(&mp->wb_resv_blocks, __ATOMIC_RELAXED);
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

/*
 * Remount (the kernel's reconfigure; XFS xfs_remount_ro / xfs_remount_rw).
 * Read-only: new writes get -EROFS, every dirty block and the superblock
 * (state clean, exact counters) go to the device and are flushed, so the
 * image is consistent and clean while the mount stays read-only.  The
 * caller (the FUSE daemon) goes read-only after the kernel did: the kernel
 * has written its dirty pages back and refuses new writes, so nothing is
 * in flight.  Read-write: the device is reopened for writing if it was
 * opened read-only (rlfs_dev_make_writable), the superblock is marked
 * dirty before anything can change, intents that log recovery left for a
 * read-write mount are finished (before the mount stops saying read-only:
 * no user write interleaves with them), and unlinked inodes forgotten while
 * read-only are freed.  0, or -errno: -EACCES/-EROFS (the image cannot be
 * written; the mount stays read-only), I/O errors from the flush (going
 * read-only: the mount is read-only anyway, the error says the image may
 * not be clean).
 */
int rlfs_mount_set_rdonly(struct rlfs_mount *mp, bool rdonly)
{
	int err;
	if (rdonly) {
		if (mp->flags & RLFS_MOUNT_RDONLY)
			return 0;
		/* staged CoW blocks are given back while writes still can */
		int64_t g = rlfs_cowfork_gc(mp, 0, NULL, true);
		if (g < 0)
			rlfs_warn("remount read-only: giving back staged CoW blocks failed (%s); "
				  "the next read-write mount frees them", strerror((int)-g));
		mp->flags |= RLFS_MOUNT_RDONLY;
		return write_sb(mp, RLFS_STATE_CLEAN);
	}
	if (!(mp->flags & RLFS_MOUNT_RDONLY))
		return 0;
	if (mp->features_ro_compat & ~RLFS_FEAT_RO_COMPAT_KNOWN) {
		rlfs_warn("remount read-write refused: unknown read-only compatible features "
			  "0x%llx", (unsigned long long)(mp->features_ro_compat &
							 ~RLFS_FEAT_RO_COMPAT_KNOWN));
		return -EROFS;
	}
	err = rlfs_dev_make_writable(mp->dev);
	if (err)
		return err;
	err = write_sb(mp, RLFS_STATE_DIRTY);
	if (err)
		return err;
	if (rlfs_log_recovered_pending(mp)) {
		/* a read-only mount left the log's unfinished intents: they
		 * are finished while the mount still says read-only, so no
		 * user write (the daemon keeps serving) can change a file
		 * between an intent's steps (recovery's own transactions do
		 * not look at the flag) */
		err = rlfs_log_recover_intents(mp);
		if (err)
			rlfs_warn("finishing the log's intents after remount read-write failed "
				  "(%s); run `reflinkfs fsck`", strerror(-err));
	}
	mp->flags &= ~RLFS_MOUNT_RDONLY;
	/* mounted read-only from the start: what a crash left on the unlinked
	 * lists and as CoW staging is freed now (once per mount; a read-only
	 * mount stages nothing, so every staging record is a leftover) */
	cow_recover(mp);
	unlinked_recover(mp);
	err = rlfs_icache_reclaim_forgotten(mp);
	if (err)
		rlfs_warn("freeing unlinked inodes after remount read-write failed (%s)",
			  strerror(-err));
	return 0;
}

bool rlfs_mount_is_rdonly(struct rlfs_mount *mp)
{
	return mp->flags & RLFS_MOUNT_RDONLY;
}

/*
 * fsck_repair.c: fsck phase 6: summary counters computed from the trees,
 * and the repairs fsck makes (counters, link counts and parents, orphan
 * inodes, the superblock state and error record).
 * See fsck.c for the whole picture.
 */
#include "fsck_int.h"

/* ------------------------------------------------------------------ */
/* Phase 6: summary counters and their repair                          */

void fsck_check_counters(struct fsck *f, uint64_t *icount, uint64_t *ifree,
			   uint64_t *fdblocks, bool *all_ok)
{
	*icount = *ifree = *fdblocks = 0;
	*all_ok = true;
	/* AGs whose chunks came from the rmapbt: counted now that phase 3
	 * has set their free masks */
	for (size_t i = 0; i < f->nchunks; i++) {
		uint64_t fsbno = rlfs_ino_to_fsb(f->mp, f->chunks[i].startino);
		struct ag_info *ai = &f->ags[rlfs_fsb_to_agno(f->mp, fsbno)];

		if (!ai->ino_rmap)
			continue;
		ai->icount += RLFS_INODES_PER_CHUNK;
		ai->ifree += (uint64_t)__builtin_popcountll(f->chunks[i].free);
	}
	for (uint32_t agno = 0; agno < f->mp->agcount; agno++) {
		struct ag_info *ai = &f->ags[agno];

		if (!ai->hdr_ok || !ai->trees_ok) {
			*all_ok = false;
			continue;
		}
		*icount += ai->icount;
		*ifree += ai->ifree;
		*fdblocks += ai->freeblks + ai->flcount;
	}
	if (!*all_ok)
		return;
	if (rlfs_get64(f->sb.icount) != *icount) {
		FIXCOUNTER(f, "AG 0 agbno 0 (fsbno 0) (superblock): icount %" PRIu64 ", counted %"
			PRIu64, rlfs_get64(f->sb.icount), *icount);
		f->sb_fix = true;
	}
	if (rlfs_get64(f->sb.ifree) != *ifree) {
		FIXCOUNTER(f, "AG 0 agbno 0 (fsbno 0) (superblock): ifree %" PRIu64 ", counted %"
			PRIu64, rlfs_get64(f->sb.ifree), *ifree);
		f->sb_fix = true;
	}
	if (rlfs_get64(f->sb.fdblocks) != *fdblocks) {
		FIXCOUNTER(f, "AG 0 agbno 0 (fsbno 0) (superblock): fdblocks %" PRIu64 ", counted %"
			PRIu64, rlfs_get64(f->sb.fdblocks), *fdblocks);
		f->sb_fix = true;
	}
}

/*
 * Get a joined buffer for fsbno holding the block's current on-disk bytes,
 * without the read verifier (which would refuse the very counters being
 * fixed); the pre-write verifier still checks the result at flush.
 */
int fsck_get_raw_buf(struct fsck *f, struct rlfs_trans *tp, uint64_t fsbno,
		     const struct rlfs_buf_ops *ops, uint64_t owner, struct rlfs_buf **bpp)
{
	struct rlfs_mount *mp = f->mp;
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	int err;

	if (!blk)
		return -ENOMEM;
	err = rlfs_dev_pread(f->dev, blk, mp->blocksize, fsbno << mp->blocklog);
	if (!err)
		err = rlfs_trans_get_buf(tp, fsbno, ops, owner, bpp);
	if (!err)
		memcpy((*bpp)->data, blk, mp->blocksize);
	free(blk);
	return err;
}

void fsck_put_agh_counters(struct rlfs_agh *agh, uint64_t freeblks, uint32_t longest,
			   uint64_t btreeblks, uint64_t icount, uint64_t ifree, bool clear_unlinked)
{
	rlfs_put32(agh->freeblks, (uint32_t)freeblks);
	rlfs_put32(agh->longest, longest);
	rlfs_put32(agh->btreeblks, (uint32_t)btreeblks);
	rlfs_put64(agh->icount, icount);
	rlfs_put64(agh->ifree, ifree);
	if (clear_unlinked)
		rlfs_put64(agh->unlinked, 0);
}

/* Rewrite the AG header counters found wrong (one transaction, then a
 * flush).  0 or negative errno. */
int fsck_fix_ag_counters(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	int err;

	err = rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp);
	if (err)
		return err;
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		struct ag_info *ai = &f->ags[agno];
		struct rlfs_agh *agh;

		if (!ai->fix && !ai->fix_unlinked)
			continue;
		err = fsck_get_raw_buf(f, tp, rlfs_agb_to_fsb(mp, agno, RLFS_AGH_AGBNO),
				  &rlfs_agh_buf_ops, agno, &bp);
		if (err)
			goto fail;
		agh = rlfs_agh(bp);
		/* a broken unlinked list: its members are orphans now */
		if (ai->fix) {
			fsck_put_agh_counters(agh, ai->freeblks, ai->longest, ai->btreeblks,
					      ai->icount, ai->ifree, ai->fix_unlinked);
			if (ai->refc_counted)
				rlfs_put32(agh->refc_blocks, (uint32_t)ai->refc_blocks);
			if (ai->rmap_counted)
				rlfs_put32(agh->rmap_blocks, (uint32_t)ai->rmap_blocks);
		}
		else if (ai->fix_unlinked)
			rlfs_put64(agh->unlinked, 0);
		rlfs_trans_log_buf(tp, bp);
		rlfs_trans_brelse(tp, bp);
	}
	err = rlfs_trans_commit(tp);
	if (!err)
		err = rlfs_buf_flush_all(mp);
	return err;
fail:
	rlfs_trans_cancel(tp);
	return err;
}

/*
 * Rewrite inode link counts and directory parent pointers (f->ifixes),
 * flags and hints,
 * read-modify-write of each inode cluster block, raw like the reads of
 * phase 3.  An inode that no longer verifies (changed under us) stops the
 * repair with -EUCLEAN.  0 or negative errno.
 */
int fsck_fix_inodes(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	int err = 0;

	if (!blk)
		return -ENOMEM;
	for (size_t i = 0; i < f->nifixes && !err; i++) {
		const struct ifix *x = &f->ifixes[i];
		uint64_t fsbno = rlfs_ino_to_fsb(mp, x->ino);
		struct rlfs_dinode *di = (void *)(blk + (size_t)rlfs_ino_to_slot(mp, x->ino) *
						   mp->inodesize);

		err = rlfs_dev_pread(f->dev, blk, mp->blocksize, fsbno << mp->blocklog);
		if (err)
			break;
		if (rlfs_get32(di->magic) != RLFS_DINODE_MAGIC || rlfs_get64(di->ino) != x->ino ||
		    !rlfs_cksum_verify(di, mp->inodesize, offsetof(struct rlfs_dinode, crc))) {
			err = -EUCLEAN;
			break;
		}
		if (x->set_nlink)
			rlfs_put32(di->nlink, x->nlink);
		if (x->parent)
			rlfs_put64(di->parent, x->parent);
		if (x->clear_next)
			rlfs_put64(di->next_unlinked, 0);
		if (x->clear_diflags)
			rlfs_put32(di->flags, rlfs_get32(di->flags) & ~x->clear_diflags);
		if (x->zero_extsize)
			rlfs_put32(di->extsize_blocks, 0);
		if (x->zero_cowextsize)
			rlfs_put32(di->cowextsize_blocks, 0);
		rlfs_cksum_update(di, mp->inodesize, offsetof(struct rlfs_dinode, crc));
		err = rlfs_dev_pwrite(f->dev, blk, mp->blocksize, fsbno << mp->blocklog);
	}
	if (!err)
		err = rlfs_dev_flush(f->dev);
	free(blk);
	return err;
}

int fsck_clear_inodes(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	int err = 0;

	if (!blk)
		return -ENOMEM;
	for (size_t i = 0; i < f->ncleared && !err; i++) {
		uint64_t ino = f->cleared[i];
		uint64_t fsbno = rlfs_ino_to_fsb(mp, ino);
		uint8_t *p = blk + (size_t)rlfs_ino_to_slot(mp, ino) * mp->inodesize;
		struct rlfs_dinode *di = (struct rlfs_dinode *)p;
		struct timespec now;

		err = rlfs_dev_pread(f->dev, blk, mp->blocksize, fsbno << mp->blocklog);
		if (err)
			break;
		clock_gettime(CLOCK_REALTIME, &now);
		memset(p, 0, mp->inodesize);
		rlfs_put32(di->magic, RLFS_DINODE_MAGIC);
		rlfs_put64(di->ino, ino);
		memcpy(di->uuid, mp->uuid, RLFS_UUID_SIZE);
		rlfs_put64(di->generation, (uint32_t)now.tv_nsec ^ (uint32_t)now.tv_sec);
		rlfs_cksum_update(p, mp->inodesize, offsetof(struct rlfs_dinode, crc));
		err = rlfs_dev_pwrite(f->dev, blk, mp->blocksize, fsbno << mp->blocklog);
		if (!err)
			fsck_verbose(f, "inode %" PRIu64 ": written anew as a free inode", ino);
	}
	if (!err)
		err = rlfs_dev_flush(f->dev);
	free(blk);
	return err;
}

/*
 * Read-modify-write the primary superblock in place, raw: the buffer cache
 * does not hand out fsbno 0 without its verifier, which refuses insane
 * counters; we hold the image lock.  clean: the filesystem checks clean
 * now: write the counted summary counters, state clean, and clear the
 * error record.  Otherwise mark the record: RLFS_SB_ERR_FSCK, `left`
 * findings, now; counters, state and the rest of the record are kept.
 * 0 or negative errno.
 */
int fsck_write_primary_sb(struct fsck *f, bool clean, uint64_t icount, uint64_t ifree,
			    uint64_t fdblocks, uint64_t left)
{
	struct rlfs_mount *mp = f->mp;
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	struct rlfs_sb *sb = (struct rlfs_sb *)blk;
	struct rlfs_errrec rec;
	int err;

	if (!blk)
		return -ENOMEM;
	err = rlfs_dev_pread(f->dev, blk, mp->blocksize, 0);
	if (!err && (rlfs_get32(sb->hdr.magic) != RLFS_SB_MAGIC ||
		     !rlfs_cksum_verify(blk, mp->blocksize, RLFS_CRC_OFF)))
		err = -EUCLEAN;     /* changed under us: leave it */
	if (!err) {
		if (clean) {
			rlfs_put64(sb->icount, icount);
			rlfs_put64(sb->ifree, ifree);
			rlfs_put64(sb->fdblocks, fdblocks);
			rlfs_put32(sb->state, RLFS_STATE_CLEAN);
			memset(&rec, 0, sizeof(rec));
		} else {
			rlfs_errrec_load(&rec, sb);
			rec.flags |= RLFS_SB_ERR_FSCK;
			rec.fsck_time = (uint64_t)time(NULL);
			rec.fsck_errors = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
		}
		rlfs_errrec_store(&rec, sb);
		rlfs_cksum_update(blk, mp->blocksize, RLFS_CRC_OFF);
		err = rlfs_dev_pwrite(f->dev, blk, mp->blocksize, 0);
	}
	if (!err)
		err = rlfs_dev_flush(f->dev);
	free(blk);
	return err;
}

/*
 * Free the orphan inodes through a library mount (the unlink path: blocks
 * released with their refcounts; the mount itself frees the inodes on the
 * unlinked lists first, rlfs_iunlink_recover), the inode chunk updated,
 * counters kept
 * exact; its unmount writes the superblock).  Runs after the superblock
 * and AG headers have been made consistent, so that the mount accepts
 * them.  We hold the image lock: the mount does not take it.
 */
int fsck_free_orphans(struct fsck *f)
{
	struct rlfs_mount *lm;
	int err, err2;

	err = rlfs_mount_open(f->image, RLFS_MOUNT_NOLOCK, &lm);
	if (err)
		return err;
	for (size_t i = 0; i < f->norphans && !err; i++) {
		err = rlfs_inode_free_orphan(lm, f->orphans[i]);
		if (!err)
			fsck_verbose(f, "inode %" PRIu64 ": orphan freed", f->orphans[i]);
	}
	err2 = rlfs_mount_close(lm);
	return err ? err : err2;
}

/*
 * fsck_ag.c: fsck phases 1 and 2: the superblocks (primary, then the backup
 * in every AG) and each allocation group: header, AGFL, the free-space,
 * inode and refcount btrees, free extents and AG counters.
 * See fsck.c for the whole picture.
 */
#include "fsck_int.h"

/* ------------------------------------------------------------------ */
/* Phase 1: superblocks                                                */

static bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static uint32_t ilog2_u32(uint32_t x)
{
	uint32_t l = 0;

	while (x > 1) {
		x >>= 1;
		l++;
	}
	return l;
}

/*
 * The highest LSN cycle anywhere on the device: valid record headers of
 * the log ring, and every block whose header checksum verifies with this
 * filesystem's uuid (metadata blocks, superblocks) or whose inode slots
 * do (inode clusters).  A raw sweep of the whole device: only for -L.
 * 0 if nothing carries an LSN; -errno on a read error.
 */
static int64_t max_lsn_cycle(struct fsck *f, struct rlfs_mount *mp, uint64_t ls, uint32_t lb)
{
	uint32_t bs = mp->blocksize, isz = mp->inodesize;
	enum { CHUNK = 1 << 20 };
	uint8_t *buf = NULL;
	uint32_t maxc = 0;
	if (posix_memalign((void **)&buf, 4096, CHUNK))
		return -ENOMEM;
	uint64_t total = f->dev->size_bytes >> mp->blocklog;
	if (total > mp->dblocks)
		total = mp->dblocks;
	for (uint64_t b0 = 0; b0 < total; b0 += CHUNK / bs) {
		uint64_t n = RLFS_MIN((uint64_t)(CHUNK / bs), total - b0);
		int err = rlfs_dev_pread(f->dev, buf, n * bs, b0 << mp->blocklog);
		if (err) {
			free(buf);
			return err;
		}
		for (uint64_t i = 0; i < n; i++) {
			const uint8_t *p = buf + i * bs;
			uint64_t fsbno = b0 + i;
			const struct rlfs_blkhdr *h = (const void *)p;
			if (fsbno >= ls && fsbno < ls + lb) {
				const struct rlfs_log_rec *rec = (const void *)p;
				uint32_t lblk = (uint32_t)(fsbno - ls);
				if (rlfs_get32(rec->magic) == RLFS_LOG_MAGIC &&
				    rlfs_log_rec_valid(mp, p, lblk, lb))
					maxc = RLFS_MAX(maxc, RLFS_LSN_CYCLE(rlfs_get64(rec->lsn)));
				continue;
			}
			if (memcmp(h->uuid, mp->uuid, RLFS_UUID_SIZE) == 0 &&
			    rlfs_cksum_verify(p, bs, RLFS_CRC_OFF)) {
				maxc = RLFS_MAX(maxc, RLFS_LSN_CYCLE(rlfs_get64(h->lsn)));
				continue;
			}
			for (uint32_t s = 0; isz && s < bs / isz; s++) {
				const uint8_t *q = p + (size_t)s * isz;
				const struct rlfs_dinode *d = (const void *)q;
				if (rlfs_get32(d->magic) == RLFS_DINODE_MAGIC &&
				    memcmp(d->uuid, mp->uuid, RLFS_UUID_SIZE) == 0 &&
				    rlfs_cksum_verify(q, isz, offsetof(struct rlfs_dinode, crc)))
					maxc = RLFS_MAX(maxc, RLFS_LSN_CYCLE(rlfs_get64(d->lsn)));
			}
		}
	}
	free(buf);
	return maxc;
}

/*
 * -L (xfs_repair -L): say what is discarded, then write a fresh, empty log
 * at a cycle above every LSN on the device.  scan_err/scan: the result of
 * the scan of the old log.  0 or an exit code.
 */
static int zero_log(struct fsck *f, struct rlfs_mount *mp, uint64_t ls, uint32_t lb,
		    int scan_err, const struct rlfs_log_scan *scan)
{
	if (f->readonly) {
		ERR(f, "log: -L cannot zero the log of a read-only image");
		return FSCK_EXIT_UNCORRECTED;
	}
	if (scan_err)
		printf("%s: -L: the log is %s%s: how many checkpoints it held past its tail "
		       "cannot be told; they are lost\n", f->image,
		       scan_err == -EUCLEAN ? "corrupt" : "unreadable: ",
		       scan_err == -EUCLEAN ? "" : fsck_errstr(scan_err));
	else if (scan->needs_replay)
		printf("%s: -L: discarding the log: %" PRIu64 " checkpoint(s) with %" PRIu64
		       " block image(s)/cancel(s) past the tail are lost, not replayed\n",
		       f->image, scan->ckpts, scan->items);
	else
		printf("%s: -L: the log is clean (nothing past its tail): nothing is lost\n",
		       f->image);
	int64_t c = max_lsn_cycle(f, mp, ls, lb);
	if (c < 0) {
		fprintf(stderr, "%s: -L: reading the device: %s\n", f->prog, strerror((int)-c));
		return FSCK_EXIT_OPERR;
	}
	uint32_t cycle = c >= UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)c + 1;
	int err = rlfs_log_zero(mp, ls, lb, cycle);
	if (err) {
		fprintf(stderr, "%s: -L: writing a fresh log failed: %s\n", f->prog,
			strerror(-err));
		return FSCK_EXIT_OPERR;
	}
	printf("%s: -L: wrote a fresh empty log (%u blocks at fsbno %" PRIu64 ", cycle %u); "
	       "checking the filesystem\n", f->image, lb, ls, cycle);
	f->zero_log = false;
	f->log_zeroed = true;
	return 0;
}

/*
 * The write-ahead log (LOG feature), before anything else is read: a log
 * that needs replay stops -n (exit 4, "log needs replay", nothing
 * changed); repair replays it first (as xfs_repair asks for a mount, we
 * replay ourselves: recover.c) and writes a clean record.  A log that
 * cannot be replayed (corrupt) is an uncorrected error naming -L; with -L
 * the log is zeroed instead, replayable or not (zero_log).  Returns 0
 * (log clean), -1 (replayed or zeroed: read the superblock again), or an
 * exit code.
 */
static int check_log(struct fsck *f, uint32_t bs, uint64_t dblocks, uint32_t agblocks,
		     uint32_t isz)
{
	const struct rlfs_sb *sb = &f->sb;
	uint64_t ls = rlfs_get64(sb->log_start);
	uint32_t lb = rlfs_get32(sb->log_blocks);
	if (ls == 0 || lb < RLFS_LOG_MIN_REC_BLOCKS || ls >= dblocks || lb > dblocks - ls ||
	    ls / agblocks != (ls + lb - 1) / agblocks || ls % agblocks <= RLFS_AGFL_AGBNO) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): log of %u blocks at fsbno %" PRIu64
		    " does not fit the filesystem", lb, ls);
		return FSCK_EXIT_UNCORRECTED;
	}
	struct rlfs_mount *mp;
	int err = rlfs_mount_alloc_bare(f->dev, bs, dblocks, agblocks, &mp);
	if (err) {
		fprintf(stderr, "%s: cannot set up: %s\n", f->prog, strerror(-err));
		return FSCK_EXIT_OPERR;
	}
	mp->blocklog = ilog2_u32(bs);
	mp->inodesize = isz;
	mp->inopblock = bs / isz;
	memcpy(mp->uuid, sb->hdr.uuid, RLFS_UUID_SIZE);
	/* a clean log is found from the superblock's hint (two block reads,
	 * recover.c clean_head); -L picks its cycle from every record, so it
	 * reads them all */
	if (!f->zero_log && rlfs_get32(sb->state) == RLFS_STATE_CLEAN)
		mp->log_clean_lsn = rlfs_get64(sb->log_clean_lsn);
	struct rlfs_log_scan scan;
	struct rlfs_log_stats stats;
	memset(&stats, 0, sizeof(stats));
	bool replay = !f->dry_run && !f->readonly;
	size_t intents = 0;
	err = rlfs_log_recover(mp, ls, lb, false, &scan, NULL);
	if (f->zero_log) {
		int rc = zero_log(f, mp, ls, lb, err, &scan);
		rlfs_mount_free_bare(mp);
		return rc ? rc : -1;
	}
	if (!err && scan.needs_replay && replay) {
		/* replays, flushes, writes the clean record */
		err = rlfs_log_mount(mp, ls, lb, false);
		if (!err) {
			stats = mp->log->stats;
			intents = rlfs_log_recovered_pending(mp);
		}
		rlfs_log_free(mp);
	}
	bool staging = rlfs_has_reflink(mp) && scan.needs_replay && replay;
	rlfs_mount_free_bare(mp);
	if (!err && (intents || staging)) {
		/* intents without a done: the work they describe needs the
		 * whole filesystem; a mount finishes them (recovery's second
		 * half, as xfs_repair asks for a mount) before the check.
		 * The mount also frees the CoW staging extents a crash left
		 * (rlfs_cowfork_recover): leftovers of a replayed log, not
		 * damage */
		struct rlfs_mount *fm;
		err = rlfs_mount_open(f->image, RLFS_MOUNT_NOLOCK, &fm);
		if (!err)
			err = rlfs_mount_close(fm);
		if (!err && intents)
			printf("%s: log recovery finished %zu intent(s)\n", f->image, intents);
	}
	if (err) {
		ERR(f, "log (%u blocks at fsbno %" PRIu64 "): %s; the log cannot be replayed: "
		    "`reflinkfs fsck -L %s` zeroes it (the changes it holds are lost) and then "
		    "checks the filesystem", lb, ls, fsck_errstr(err), f->image);
		return FSCK_EXIT_UNCORRECTED;
	}
	if (!scan.needs_replay)
		return 0;
	if (!replay) {
		printf("%s: log needs replay (%" PRIu64 " checkpoint(s), %" PRIu64 " item(s)); "
		       "nothing was checked or changed: mount the image or run `%s %s` "
		       "(without -n) to replay it\n", f->image, scan.ckpts, scan.items,
		       f->prog, f->image);
		f->nerrors++;
		f->log_pending = true;
		return FSCK_EXIT_UNCORRECTED;
	}
	printf("%s: log replayed: %" PRIu64 " checkpoint(s), %" PRIu64 " block(s) written, %"
	       PRIu64 " skipped\n", f->image, stats.replayed_ckpts, stats.replayed_blocks,
	       stats.skipped_blocks);
	return -1;
}

/*
 * Read and check the primary superblock, then build the bare mount.
 * Returns 0 to go on, or an exit code (8: not ours / cannot read; 4: too
 * broken to go on, finding printed).
 */
int fsck_check_primary_sb(struct fsck *f)
{
	struct rlfs_sb *sb = &f->sb;
	struct stat st;
	uint8_t *blk = NULL;
	uint32_t bs, agblocks, agcount, isz;
	uint64_t dblocks, size_bytes, incompat;
	int err, rc;

	if (fstat(f->lock_fd, &st) < 0) {
		fprintf(stderr, "%s: %s: %s\n", f->prog, f->image, strerror(errno));
		return FSCK_EXIT_OPERR;
	}
	err = rlfs_dev_open(f->image, !f->dry_run && !f->readonly, 0, &f->dev);
	if (err) {
		fprintf(stderr, "%s: cannot open %s: %s\n", f->prog, f->image, strerror(-err));
		return FSCK_EXIT_OPERR;
	}
	size_bytes = f->dev->size_bytes;
	if (size_bytes < sizeof(*sb) ||
	    rlfs_dev_pread(f->dev, sb, sizeof(*sb), 0) != 0) {
		fprintf(stderr, "%s: %s: not a reflinkfs image (too small)\n", f->prog, f->image);
		return FSCK_EXIT_OPERR;
	}
	if (rlfs_get32(sb->hdr.magic) != RLFS_SB_MAGIC) {
		fprintf(stderr, "%s: %s: not a reflinkfs image (bad superblock magic "
			"0x%08x)\n", f->prog, f->image, rlfs_get32(sb->hdr.magic));
		return FSCK_EXIT_OPERR;
	}
	if (rlfs_get32(sb->version) != RLFS_VERSION) {
		fprintf(stderr, "%s: %s: unsupported format version %u\n", f->prog, f->image,
			rlfs_get32(sb->version));
		return FSCK_EXIT_OPERR;
	}
	incompat = rlfs_get64(sb->features_incompat);
	if (incompat & ~RLFS_FEAT_INCOMPAT_KNOWN) {
		fprintf(stderr, "%s: %s: unknown incompatible features 0x%" PRIx64 "\n", f->prog,
			f->image, (uint64_t)(incompat & ~RLFS_FEAT_INCOMPAT_KNOWN));
		return FSCK_EXIT_OPERR;
	}
	if (rlfs_get64(sb->features_ro_compat) & ~RLFS_FEAT_RO_COMPAT_KNOWN)
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): unknown ro-compat features 0x%" PRIx64,
		    (uint64_t)(rlfs_get64(sb->features_ro_compat) & ~RLFS_FEAT_RO_COMPAT_KNOWN));

	bs = rlfs_get32(sb->blocksize);
	dblocks = rlfs_get64(sb->dblocks);
	agblocks = rlfs_get32(sb->agblocks);
	agcount = rlfs_get32(sb->agcount);
	isz = rlfs_get16(sb->inodesize);
	if (!is_pow2(bs) || bs < RLFS_MIN_BLOCKSIZE || bs > RLFS_MAX_BLOCKSIZE) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): bad block size %u", bs);
		return FSCK_EXIT_UNCORRECTED;
	}
	if (agblocks < 16 || agblocks > RLFS_MAX_AGBLOCKS || agcount == 0 || dblocks == 0 ||
	    (uint64_t)(agcount - 1) * agblocks >= dblocks ||
	    (uint64_t)agcount * agblocks < dblocks) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): inconsistent geometry: dblocks %" PRIu64
		    " agblocks %u agcount %u", dblocks, agblocks, agcount);
		return FSCK_EXIT_UNCORRECTED;
	}
	if (!is_pow2(isz) || isz < RLFS_DINODE_CORE || isz > bs ||
	    rlfs_get16(sb->inopblock) != bs / isz ||
	    bs / isz > RLFS_INODES_PER_CHUNK) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): bad inode size %u / inodes per block %u",
		    isz, rlfs_get16(sb->inopblock));
		return FSCK_EXIT_UNCORRECTED;
	}

	if (incompat & RLFS_FEAT_INCOMPAT_LOG) {
		rc = check_log(f, bs, dblocks, agblocks, isz);
		if (rc < 0) {
			/* replayed: the superblock itself may have changed */
			rlfs_dev_close(f->dev);
			f->dev = NULL;
			return fsck_check_primary_sb(f);
		}
		if (rc)
			return rc;
	}

	blk = aligned_alloc(64, bs);
	if (!blk) {
		f->oom = true;
		return FSCK_EXIT_OPERR;
	}
	if (size_bytes < bs || rlfs_dev_pread(f->dev, blk, bs, 0) != 0) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): cannot read the whole block");
		free(blk);
		return FSCK_EXIT_UNCORRECTED;
	}
	f->sb_block_ok = true;
	if (!rlfs_cksum_verify(blk, bs, RLFS_CRC_OFF)) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): bad crc");
		f->sb_block_ok = false;
	}
	free(blk);
	if (rlfs_get64(sb->hdr.blkno) != 0) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): blkno %" PRIu64 ", expected 0",
		    rlfs_get64(sb->hdr.blkno));
		f->sb_block_ok = false;
	}
	if (rlfs_get64(sb->hdr.owner) != 0) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): owner %" PRIu64 ", expected AG 0",
		    rlfs_get64(sb->hdr.owner));
		f->sb_block_ok = false;
	}
	rlfs_errrec_load(&f->rec, sb);
	if (f->rec.flags && !f->quiet) {
		char desc[320];

		/* what earlier runs recorded: not a finding of this run */
		printf("%s: the superblock records errors: %s\n", f->image,
		       rlfs_errrec_describe(&f->rec, desc, sizeof(desc)));
	}
	if (dblocks > size_bytes / bs) {
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): filesystem has %" PRIu64
		    " blocks but the image holds only %" PRIu64 " (truncated image)",
		    dblocks, size_bytes / bs);
		/* most of it missing (or a wild dblocks): nothing useful to walk */
		if (dblocks / 2 > size_bytes / bs)
			return FSCK_EXIT_UNCORRECTED;
	}
	if (rlfs_get32(sb->state) != RLFS_STATE_CLEAN) {
		if (rlfs_get32(sb->state) == RLFS_STATE_DIRTY)
			FIXABLE(f, "AG 0 agbno 0 (fsbno 0) (superblock): filesystem was not cleanly "
				"unmounted (state dirty)");
		else
			FIXABLE(f, "AG 0 agbno 0 (fsbno 0) (superblock): bad state %u",
				rlfs_get32(sb->state));
		f->sb_fix = true;
		f->fix_state = true;
	}

	err = rlfs_mount_alloc_bare(f->dev, bs, dblocks, agblocks, &f->mp);
	if (!err) {
		/* a smaller clean-buffer cache than a mount's: the walks read
		 * each metadata block about twice (phases 2-3, then the rmapbt
		 * in phase 5), and the kernel's page cache holds the image */
		rlfs_bcache_destroy(f->mp);
		err = rlfs_bcache_init(f->mp, FSCK_BCACHE_CLEAN_BYTES);
		if (err) {
			rlfs_mount_free_bare(f->mp);
			f->mp = NULL;
		}
	}
	if (err) {
		fprintf(stderr, "%s: cannot set up: %s\n", f->prog, strerror(-err));
		return FSCK_EXIT_OPERR;
	}
	f->mp->blocklog = ilog2_u32(bs);
	f->mp->agcount = agcount;
	f->mp->agblocks = agblocks;
	f->mp->dblocks = dblocks;
	f->mp->inodesize = isz;
	f->mp->inopblock = bs / isz;
	f->mp->chunk_blocks = RLFS_MAX(1u, RLFS_INODES_PER_CHUNK / f->mp->inopblock);
	f->mp->rootino = rlfs_get64(sb->rootino);
	f->mp->features_incompat = incompat;
	f->mp->features_ro_compat = rlfs_get64(sb->features_ro_compat);
	f->reflink = incompat & RLFS_FEAT_INCOMPAT_REFLINK;
	f->mp->maxbytes = rlfs_get64(sb->maxbytes);
	memcpy(f->mp->uuid, sb->hdr.uuid, RLFS_UUID_SIZE);
	f->mp->flags = RLFS_MOUNT_RDONLY | RLFS_MOUNT_NOLOCK;

	if (rlfs_ag_blocks(f->mp, agcount - 1) < 8)
		ERR(f, "AG %u (superblock geometry): last AG has only %u blocks", agcount - 1,
		    rlfs_ag_blocks(f->mp, agcount - 1));
	if (f->mp->rootino == 0 || rlfs_ino_to_fsb(f->mp, f->mp->rootino) >= dblocks)
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): root inode %" PRIu64 " out of range",
		    f->mp->rootino);
	if (f->mp->maxbytes == 0)
		ERR(f, "AG 0 agbno 0 (fsbno 0) (superblock): maxbytes is 0");
	f->ags = calloc(agcount, sizeof(*f->ags));
	if (!f->ags) {
		f->oom = true;
		return FSCK_EXIT_OPERR;
	}
	if (fsck_claims_setup(f))
		return FSCK_EXIT_OPERR;
	return 0;
}

/* Backup superblocks: magic, crc, self-description and geometry equal to
 * the primary's.  Raw reads. */
void fsck_check_backup_sbs(struct fsck *f)
{
	struct rlfs_mount *mp = f->mp;
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	const struct rlfs_sb *p = &f->sb;

	if (!blk) {
		f->oom = true;
		return;
	}
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		uint64_t fsbno = rlfs_agb_to_fsb(mp, agno, RLFS_SB_AGBNO);
		const struct rlfs_sb *b = (const void *)blk;

		fsck_add_claim(f, CL_SB, agno, 0, fsbno, 1);
		if (agno == 0 && (mp->features_incompat & RLFS_FEAT_INCOMPAT_LOG)) {
			uint64_t ls = rlfs_get64(p->log_start);
			fsck_add_claim(f, CL_LOG, rlfs_fsb_to_agno(mp, ls), 0, ls,
				       rlfs_get32(p->log_blocks));
		}
		if (agno == 0)
			continue;
		if (rlfs_dev_pread(f->dev, blk, mp->blocksize, fsbno << mp->blocklog) != 0) {
			ERR(f, "%s (backup superblock): cannot read", fsck_loc(f, fsbno).s);
			continue;
		}
		if (rlfs_get32(b->hdr.magic) != RLFS_SB_MAGIC) {
			ERR(f, "%s (backup superblock): bad magic 0x%08x", fsck_loc(f, fsbno).s,
			    rlfs_get32(b->hdr.magic));
			continue;
		}
		if (!rlfs_cksum_verify(blk, mp->blocksize, RLFS_CRC_OFF))
			ERR(f, "%s (backup superblock): bad crc", fsck_loc(f, fsbno).s);
		if (rlfs_get64(b->hdr.blkno) != fsbno)
			ERR(f, "%s (backup superblock): blkno %" PRIu64 " is not its own",
			    fsck_loc(f, fsbno).s, rlfs_get64(b->hdr.blkno));
		if (rlfs_get64(b->hdr.owner) != agno)
			ERR(f, "%s (backup superblock): owner %" PRIu64 ", expected AG %u",
			    fsck_loc(f, fsbno).s, rlfs_get64(b->hdr.owner), agno);
		if (memcmp(b->hdr.uuid, p->hdr.uuid, RLFS_UUID_SIZE) != 0)
			ERR(f, "%s (backup superblock): uuid differs from the primary",
			    fsck_loc(f, fsbno).s);
		if (rlfs_get32(b->version) != rlfs_get32(p->version) ||
		    rlfs_get32(b->blocksize) != rlfs_get32(p->blocksize) ||
		    rlfs_get64(b->dblocks) != rlfs_get64(p->dblocks) ||
		    rlfs_get32(b->agblocks) != rlfs_get32(p->agblocks) ||
		    rlfs_get32(b->agcount) != rlfs_get32(p->agcount) ||
		    rlfs_get16(b->inodesize) != rlfs_get16(p->inodesize) ||
		    rlfs_get16(b->inopblock) != rlfs_get16(p->inopblock) ||
		    rlfs_get64(b->rootino) != rlfs_get64(p->rootino) ||
		    rlfs_get64(b->features_compat) != rlfs_get64(p->features_compat) ||
		    rlfs_get64(b->features_ro_compat) != rlfs_get64(p->features_ro_compat) ||
		    rlfs_get64(b->features_incompat) != rlfs_get64(p->features_incompat) ||
		    rlfs_get64(b->maxbytes) != rlfs_get64(p->maxbytes))
			ERR(f, "%s (backup superblock): geometry differs from the primary",
			    fsck_loc(f, fsbno).s);
	}
	free(blk);
}

/* ------------------------------------------------------------------ */
/* Phase 2: allocation groups                                          */

/* Context of one AG tree walk. */
struct agwalk {
	struct fsck *f;
	uint32_t agno;
	uint32_t length;            /* blocks in the AG */
	uint8_t kind;               /* CL_BNOBT ... */
	uint64_t nblocks;           /* tree blocks visited */
	uint64_t nrecs;
	uint64_t limit;             /* stop runaway walks */
	struct rlfs_alloc_rec *recs;/* valid records seen */
	size_t nstored, nrecs_cap;
	bool have_prev;
	uint32_t prev_start, prev_len;
	uint64_t last_chunk_fsbno;  /* inobt: chunk block dedupe */
	struct rlfs_rmap_irec prev_rmap; /* rmapbt: previous record (have_prev) */
	struct ag_info *ai;
};

static int ag_visit_block(struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned level,
			  void *priv)
{
	struct agwalk *w = priv;

	(void)cur;
	(void)level;
	if (++w->nblocks > w->limit) {
		ERR(w->f, "AG %u (%s): more tree blocks than the AG holds; stopped walking",
		    w->agno, fsck_claim_kind_name(w->kind));
		return 1;
	}
	if (rlfs_fsb_to_agno(w->f->mp, bp->fsbno) != w->agno)
		ERR(w->f, "%s (%s): block belongs to another AG than its tree (AG %u)",
		    fsck_loc(w->f, bp->fsbno).s, fsck_claim_kind_name(w->kind), w->agno);
	fsck_add_claim(w->f, w->kind, w->agno, 0, bp->fsbno, 1);
	return 0;
}

static int alloc_rec_cb(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct agwalk *w = priv;
	const struct rlfs_alloc_rec *r = rec;
	uint32_t start = rlfs_get32(r->startblock), len = rlfs_get32(r->blockcount);
	const char *name = w->kind == CL_BNOBT ? "bnobt" : "cntbt";
	struct fsck *f = w->f;
	uint64_t fsbno = rlfs_agb_to_fsb(f->mp, w->agno, start);
	struct rlfs_alloc_rec *nr;

	(void)cur;
	if (++w->nrecs > w->limit) {
		ERR(f, "AG %u (%s): more records than the AG has blocks; stopped walking",
		    w->agno, name);
		return 1;
	}
	if (len == 0 || start < 3 || start >= w->length || len > w->length - start) {
		ERR(f, "%s (%s): free extent [%u, +%u) outside the AG's free area (AG has %u "
		    "blocks)", fsck_loc(f, fsbno).s, name, start, len, w->length);
		return 0;
	}
	if (w->kind == CL_BNOBT) {
		if (w->have_prev) {
			uint64_t pend = (uint64_t)w->prev_start + w->prev_len;

			if (start < pend)
				ERR(f, "%s (bnobt): free extent [%u, +%u) overlaps the previous one "
				    "[%u, +%u)", fsck_loc(f, fsbno).s, start, len, w->prev_start,
				    w->prev_len);
			else if (start == pend)
				ERR(f, "%s (bnobt): free extent [%u, +%u) touches the previous one "
				    "[%u, +%u) (not merged)", fsck_loc(f, fsbno).s, start, len,
				    w->prev_start, w->prev_len);
		}
		w->have_prev = true;
		w->prev_start = start;
		w->prev_len = len;
		w->ai->freeblks += len;
		fsck_add_claim(f, CL_FREE, w->agno, 0, fsbno, len);
	} else {
		if (len > w->ai->longest)
			w->ai->longest = len;
	}
	nr = fsck_grow(f, w->recs, &w->nrecs_cap, w->nstored, sizeof(*nr));
	if (!nr)
		return -ENOMEM;
	w->recs = nr;
	w->recs[w->nstored].startblock = rlfs_le32_of(start);
	w->recs[w->nstored].blockcount = rlfs_le32_of(len);
	w->nstored++;
	return 0;
}

static int inobt_rec_cb(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct agwalk *w = priv;
	struct fsck *f = w->f;
	struct rlfs_mount *mp = f->mp;
	const struct rlfs_inobt_rec *r = rec;
	uint64_t startino = rlfs_get64(r->startino), freemask = rlfs_get64(r->free);
	uint32_t freecount = rlfs_get32(r->freecount);
	uint64_t fsbno = rlfs_ino_to_fsb(mp, startino);
	uint64_t lastfsb = rlfs_ino_to_fsb(mp, startino + RLFS_INODES_PER_CHUNK - 1);
	struct chunk *nc;

	(void)cur;
	if (++w->nrecs > w->limit) {
		ERR(f, "AG %u (inobt): more records than the AG can hold; stopped walking", w->agno);
		return 1;
	}
	if (startino % RLFS_INODES_PER_CHUNK != 0 || fsbno % mp->chunk_blocks != 0) {
		ERR(f, "AG %u (inobt): chunk startino %" PRIu64 " is not chunk aligned", w->agno,
		    startino);
		return 0;
	}
	if (lastfsb >= mp->dblocks || rlfs_fsb_to_agno(mp, fsbno) != w->agno ||
	    rlfs_fsb_to_agno(mp, lastfsb) != w->agno ||
	    rlfs_fsb_to_agbno(mp, fsbno) < 3 || rlfs_fsb_to_agbno(mp, lastfsb) >= w->length) {
		ERR(f, "AG %u (inobt): chunk startino %" PRIu64 " (fsbno %" PRIu64
		    ") lies outside the AG", w->agno, startino, fsbno);
		return 0;
	}
	if ((uint32_t)__builtin_popcountll(freemask) != freecount)
		ERR(f, "%s (inobt): chunk %" PRIu64 ": freecount %u but %d inodes marked free",
		    fsck_loc(f, fsbno).s, startino, freecount, __builtin_popcountll(freemask));
	w->ai->icount += RLFS_INODES_PER_CHUNK;
	w->ai->ifree += (uint64_t)__builtin_popcountll(freemask);
	if (fsbno == w->last_chunk_fsbno) /* chunks sharing a block (inopblock > 64) */
		fsbno++;
	if (lastfsb >= fsbno)
		fsck_add_claim(f, CL_ICHUNK, w->agno, startino, fsbno, lastfsb - fsbno + 1);
	w->last_chunk_fsbno = lastfsb;
	nc = fsck_grow(f, f->chunks, &f->chunks_cap, f->nchunks, sizeof(*nc));
	if (!nc)
		return -ENOMEM;
	f->chunks = nc;
	f->chunks[f->nchunks] = (struct chunk){ .startino = startino, .free = freemask };
	f->nchunks++;
	return 0;
}

/* One refcount btree record: sane, in order, no overlap; kept for the
 * per-block count check; staging extents claimed and reported. */
static int refc_rec_cb(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct agwalk *w = priv;
	struct fsck *f = w->f;
	struct rlfs_refcount_rec r;
	struct refc *nr;

	(void)cur;
	memcpy(&r, rec, sizeof(r));
	uint32_t key = rlfs_get32(r.startblock), len = rlfs_get32(r.blockcount);
	uint32_t rc = rlfs_get32(r.refcount);
	bool cow = key & RLFS_REFC_COWFLAG;
	uint32_t start = key & ~RLFS_REFC_COWFLAG;
	uint64_t fsbno = rlfs_agb_to_fsb(f->mp, w->agno, RLFS_MIN(start, w->length - 1));

	if (++w->nrecs > w->limit) {
		ERR(f, "AG %u (refcountbt): more records than the AG has blocks; stopped walking",
		    w->agno);
		return 1;
	}
	if (len == 0 || start < 3 || start >= w->length || len > w->length - start) {
		ERR(f, "%s (refcountbt): record [%u, +%u) outside the AG's data area (AG has %u "
		    "blocks)", fsck_loc(f, fsbno).s, start, len, w->length);
		return 0;
	}
	if (!cow && rc < 2)
		ERR(f, "%s (refcountbt): shared record [%u, +%u) with refcount %u < 2 (outside "
		    "the staging domain)", fsck_loc(f, fsbno).s, start, len, rc);
	if (cow && rc != 1)
		ERR(f, "%s (refcountbt): CoW staging record [%u, +%u) with refcount %u (must be "
		    "1)", fsck_loc(f, fsbno).s, start, len, rc);
	if (w->have_prev && (uint64_t)key < (uint64_t)w->prev_start + w->prev_len)
		ERR(f, "%s (refcountbt): record [%u, +%u) overlaps or is out of order with the "
		    "previous one [%u, +%u)", fsck_loc(f, fsbno).s, start, len,
		    w->prev_start & ~RLFS_REFC_COWFLAG, w->prev_len);
	w->have_prev = true;
	w->prev_start = key;
	w->prev_len = len;
	if (cow) {
		ERR(f, "%s (refcountbt): leaked CoW staging extent [%u, +%u) (no CoW fork owns "
		    "it on an unmounted filesystem)", fsck_loc(f, fsbno).s, start, len);
		fsck_add_claim(f, CL_STAGING, w->agno, 0, fsbno, len);
	}
	nr = &(struct refc){ .start = fsbno, .len = len, .rc = rc, .cow = cow };
	return fsck_store_add(f, &f->refcs, w->agno, nr);
}

/* One rmap btree record: well formed (the library's rule) and in key
 * order across leaves.  Records are not kept: fsck_check_rmaps reads
 * them again one AG at a time. */
static int rmap_rec_cb(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct agwalk *w = priv;
	struct fsck *f = w->f;
	struct rlfs_rmap_rec r;
	struct rlfs_rmap_irec ir;

	(void)cur;
	memcpy(&r, rec, sizeof(r));
	rlfs_rmap_rec_decode(&r, &ir);
	uint64_t fsbno = rlfs_agb_to_fsb(f->mp, w->agno, RLFS_MIN(ir.startblock, w->length - 1));
	if (++w->nrecs > w->limit * 64) {
		ERR(f, "AG %u (rmapbt): more records than the AG can hold; stopped walking", w->agno);
		return 1;
	}
	const char *why = rlfs_rmap_check_irec(&ir, w->length);
	if (why) {
		ERR(f, "%s (rmapbt): record [%u, +%u) owner %" PRIu64 " offset 0x%" PRIx64 ": %s",
		    fsck_loc(f, fsbno).s, ir.startblock, ir.blockcount, ir.owner, ir.offset, why);
		w->ai->rmap_ok = false;
	}
	if (w->have_prev && rlfs_rmap_irec_cmp_key(&w->prev_rmap, &ir) >= 0) {
		ERR(f, "%s (rmapbt): record [%u, +%u) owner %" PRIu64 " is not after the previous "
		    "one [%u, +%u) owner %" PRIu64 " in key order", fsck_loc(f, fsbno).s,
		    ir.startblock, ir.blockcount, ir.owner, w->prev_rmap.startblock,
		    w->prev_rmap.blockcount, w->prev_rmap.owner);
		w->ai->rmap_ok = false;
	}
	w->have_prev = true;
	w->prev_rmap = ir;
	if (!why && ir.owner == RLFS_RMAP_OWN_INODES) {
		/* kept for fsck_recover_chunks (chunks the inobt lost) */
		struct claim c = { .start = rlfs_agb_to_fsb(f->mp, w->agno, ir.startblock),
				   .owner = w->agno, .len = ir.blockcount, .kind = CL_ICHUNK };
		int err = fsck_store_add(f, &f->irmaps, w->agno, &c);

		if (err)
			return err;
	}
	return 0;
}

/*
 * The refcount and rmap btrees are walked with a lenient copy of their
 * ops: block header and structure checks only, no record verifier, so
 * that one bad record gets its own finding (refc_rec_cb / rmap_rec_cb
 * judge every record: the same rules as the library's verifier, plus
 * order across leaves) instead of hiding its whole leaf.  The library's
 * strict verifier then re-checks a tree the walk found clean
 * (library_check).
 */
static const struct rlfs_btree_ops *lenient_ops(struct rlfs_btree_ops *ops,
						const struct rlfs_btree_ops *base,
						const struct rlfs_buf_ops *buf_ops)
{
	if (!ops->name) {
		*ops = *base;
		ops->buf_ops = buf_ops;
		ops->verify_rec = NULL;
	}
	return ops;
}

static int fsck_refcbt_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	return rlfs_btree_verify_block(mp, bp, sizeof(struct rlfs_refcount_rec), 4, false);
}

static const struct rlfs_buf_ops fsck_refcbt_buf_ops = {
	.name = "refcountbt", .magic = RLFS_REFCBT_MAGIC, .has_hdr = true,
	.verify = fsck_refcbt_verify,
};

static const struct rlfs_btree_ops *fsck_refcbt_ops(void)
{
	static struct rlfs_btree_ops ops;

	return lenient_ops(&ops, &rlfs_refcountbt_ops, &fsck_refcbt_buf_ops);
}

static int fsck_rmapbt_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	return rlfs_btree_verify_block(mp, bp, sizeof(struct rlfs_rmap_rec),
				       sizeof(struct rlfs_rmap_key), true);
}

static const struct rlfs_buf_ops fsck_rmapbt_buf_ops = {
	.name = "rmapbt", .magic = RLFS_RMAPBT_MAGIC, .has_hdr = true,
	.verify = fsck_rmapbt_verify,
};

/* The rmapbt ops without record verification (fsck_rmap.c reads the
 * records with them too). */
const struct rlfs_btree_ops *fsck_rmapbt_ops(void)
{
	static struct rlfs_btree_ops ops;

	return lenient_ops(&ops, &rlfs_rmapbt_ops, &fsck_rmapbt_buf_ops);
}

/* Block walk that also hands every leaf record to a record callback
 * (struct visit_ctx, fsck_int.h). */

static int visit_with_recs(struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned level,
			   void *priv)
{
	struct visit_ctx *v = priv;
	const struct rlfs_btree_block *bb = bp->data;
	unsigned n, max;
	int r = v->blk(cur, bp, level, v->blk_priv);

	if (r || level != 0 || !v->rec)
		return r;
	n = rlfs_get16(bb->numrecs);
	max = (v->blocksize - (unsigned)sizeof(*bb)) / v->rec_len;
	for (unsigned i = 0; i < n && i < max; i++) {
		r = v->rec(cur, (const uint8_t *)bp->data + sizeof(*bb) + (size_t)i * v->rec_len,
			   v->rec_priv);
		if (r)
			return r;
	}
	return 0;
}

/* rlfs_btree_check (problems reported, walk goes on), then the block and
 * record walk.  Returns 0 if every block and record was visited, else the
 * walk's error (reported here) or its positive stop value. */
int fsck_check_and_walk(struct fsck *f, struct rlfs_trans *tp, const struct rlfs_btree_ops *ops,
			  uint32_t agno, struct rlfs_inode *ip, void *agbp, struct visit_ctx *v,
			  const char *where)
{
	struct rlfs_btree_cur cur;
	int err;

	v->rec_len = ops->rec_len;
	v->blocksize = f->mp->blocksize;
	rlfs_btree_cur_init(&cur, tp, ops, agno, ip, agbp);
	err = rlfs_btree_check(&cur);
	rlfs_btree_cur_del(&cur);
	if (err)
		ERR(f, "%s (%s): tree check failed: %s", where, ops->name, fsck_errstr(err));
	rlfs_btree_cur_init(&cur, tp, ops, agno, ip, agbp);
	err = rlfs_btree_visit_blocks(&cur, visit_with_recs, v);
	rlfs_btree_cur_del(&cur);
	if (err == -ENOMEM)
		f->oom = true;
	else if (err < 0)
		ERR(f, "%s (%s): cannot walk the whole tree: %s", where, ops->name, fsck_errstr(err));
	return err;
}

/* After a clean lenient walk: the library's own verifiers must agree. */
static void library_check(struct fsck *f, struct rlfs_trans *tp,
			  const struct rlfs_btree_ops *ops, uint32_t agno, struct rlfs_buf *agbp,
			  uint32_t root)
{
	struct rlfs_btree_cur cur;

	rlfs_btree_cur_init(&cur, tp, ops, agno, NULL, agbp);
	int err = rlfs_btree_check(&cur);
	rlfs_btree_cur_del(&cur);
	if (err)
		ERR(f, "%s (%s): library verifier rejects the tree: %s",
		    fsck_loc(f, rlfs_agb_to_fsb(f->mp, agno, root)).s, ops->name, fsck_errstr(err));
}

/* Structure check, block walk and record walk of one AG tree.  Returns true
 * if all three succeeded. */
static bool walk_ag_tree(struct fsck *f, struct rlfs_trans *tp, const struct rlfs_btree_ops *ops,
			 struct agwalk *w, rlfs_btree_rec_fn fn, uint32_t root_agbno,
			 struct rlfs_buf *agbp)
{
	struct visit_ctx v = { .blk = ag_visit_block, .blk_priv = w, .rec = fn, .rec_priv = w };
	char where[128];

	snprintf(where, sizeof(where), "%s root",
		 fsck_loc(f, rlfs_agb_to_fsb(f->mp, w->agno, root_agbno)).s);
	return fsck_check_and_walk(f, tp, ops, w->agno, NULL, agbp, &v, where) == 0;
}

static int cmp_alloc_rec_bno(const void *a, const void *b)
{
	const struct rlfs_alloc_rec *x = a, *y = b;

	return fsck_cmp_u64(rlfs_get32(x->startblock), rlfs_get32(y->startblock));
}

/* bnobt and cntbt must hold the same extents. */
static void compare_free_trees(struct fsck *f, uint32_t agno, struct agwalk *bno,
			       struct agwalk *cnt)
{
	size_t i = 0, j = 0;

	fsck_xsort(cnt->recs, cnt->nstored, sizeof(*cnt->recs), cmp_alloc_rec_bno);
	while (i < bno->nstored || j < cnt->nstored) {
		uint32_t bs = i < bno->nstored ? rlfs_get32(bno->recs[i].startblock) : UINT32_MAX;
		uint32_t cs = j < cnt->nstored ? rlfs_get32(cnt->recs[j].startblock) : UINT32_MAX;

		if (bs == cs) {
			uint32_t bl = rlfs_get32(bno->recs[i].blockcount);
			uint32_t cl = rlfs_get32(cnt->recs[j].blockcount);

			if (bl != cl)
				ERR(f, "%s (cntbt): free extent at agbno %u has %u blocks in cntbt "
				    "but %u in bnobt", fsck_loc(f, rlfs_agb_to_fsb(f->mp, agno, bs)).s,
				    bs, cl, bl);
			i++;
			j++;
		} else if (bs < cs) {
			ERR(f, "%s (cntbt): free extent [%u, +%u) is in bnobt but not in cntbt",
			    fsck_loc(f, rlfs_agb_to_fsb(f->mp, agno, bs)).s, bs,
			    rlfs_get32(bno->recs[i].blockcount));
			i++;
		} else {
			ERR(f, "%s (bnobt): free extent [%u, +%u) is in cntbt but not in bnobt",
			    fsck_loc(f, rlfs_agb_to_fsb(f->mp, agno, cs)).s, cs,
			    rlfs_get32(cnt->recs[j].blockcount));
			j++;
		}
	}
}

static int cmp_u32p(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void check_agfl(struct fsck *f, struct rlfs_trans *tp, uint32_t agno,
		       struct ag_info *ai)
{
	struct rlfs_mount *mp = f->mp;
	uint64_t fsbno = rlfs_agb_to_fsb(mp, agno, RLFS_AGFL_AGBNO);
	uint32_t size = (mp->blocksize - sizeof(struct rlfs_agfl)) / 4;
	uint32_t first = rlfs_get32(ai->agh.flfirst), last = rlfs_get32(ai->agh.fllast);
	uint32_t count = rlfs_get32(ai->agh.flcount), length = rlfs_ag_blocks(mp, agno);
	struct rlfs_buf *bp;
	uint32_t *seen;
	uint32_t nseen = 0;
	int err;

	err = rlfs_trans_read_buf(tp, fsbno, &rlfs_agfl_buf_ops, agno, &bp);
	if (err) {
		ERR(f, "%s (AGFL): %s", fsck_loc(f, fsbno).s, fsck_errstr(err));
		return;
	}
	if (rlfs_get32(((struct rlfs_agfl *)bp->data)->agno) != agno)
		ERR(f, "%s (AGFL): agno field %u, expected %u", fsck_loc(f, fsbno).s,
		    rlfs_get32(((struct rlfs_agfl *)bp->data)->agno), agno);
	if (count > size || first >= size || last >= size ||
	    (count && (last + size - first) % size + 1 != count) ||
	    (!count && (last + 1) % size != first)) {
		ERR(f, "%s (AG header): AGFL ring first %u last %u count %u inconsistent (%u "
		    "slots)", fsck_loc(f, rlfs_agb_to_fsb(mp, agno, RLFS_AGH_AGBNO)).s, first, last,
		    count, size);
		rlfs_trans_brelse(tp, bp);
		return;
	}
	seen = calloc(count ? count : 1, sizeof(*seen));
	if (!seen) {
		f->oom = true;
		rlfs_trans_brelse(tp, bp);
		return;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint32_t slot = (first + i) % size;
		const rlfs_le32 *arr = (const rlfs_le32 *)((const uint8_t *)bp->data +
							   sizeof(struct rlfs_agfl));
		uint32_t agbno = rlfs_get32(arr[slot]);

		if (agbno < 3 || agbno >= length) {
			ERR(f, "%s (AGFL): slot %u holds agbno %u outside the AG", fsck_loc(f, fsbno).s,
			    slot, agbno);
			continue;
		}
		seen[nseen++] = agbno;
	}
	fsck_xsort(seen, nseen, sizeof(*seen), cmp_u32p);
	for (uint32_t i = 0; i < nseen; i++) {
		if (i && seen[i] == seen[i - 1]) {
			ERR(f, "%s (AGFL): agbno %u listed twice", fsck_loc(f, fsbno).s, seen[i]);
			continue;
		}
		fsck_add_claim(f, CL_AGFL, agno, 0, rlfs_agb_to_fsb(mp, agno, seen[i]), 1);
	}
	ai->flcount = count;
	free(seen);
	rlfs_trans_brelse(tp, bp);
}

/* Read AG agno's header block raw and check everything but the summary
 * counters; copies it to ai->agh.  false (finding printed) if unusable. */
static bool read_agh_raw(struct fsck *f, uint32_t agno, uint64_t hfsb, struct ag_info *ai)
{
	struct rlfs_mount *mp = f->mp;
	uint8_t *blk = aligned_alloc(64, mp->blocksize);
	const struct rlfs_agh *agh = (const void *)blk;
	bool ok = false;

	if (!blk) {
		f->oom = true;
		return false;
	}
	if (rlfs_dev_pread(f->dev, blk, mp->blocksize, hfsb << mp->blocklog) != 0)
		ERR(f, "%s (AG header): cannot read", fsck_loc(f, hfsb).s);
	else if (rlfs_get32(agh->hdr.magic) != RLFS_AGH_MAGIC)
		ERR(f, "%s (AG header): bad magic 0x%08x", fsck_loc(f, hfsb).s,
		    rlfs_get32(agh->hdr.magic));
	else if (!rlfs_cksum_verify(blk, mp->blocksize, RLFS_CRC_OFF))
		ERR(f, "%s (AG header): bad crc", fsck_loc(f, hfsb).s);
	else if (rlfs_get64(agh->hdr.blkno) != hfsb)
		ERR(f, "%s (AG header): blkno %" PRIu64 " is not its own", fsck_loc(f, hfsb).s,
		    rlfs_get64(agh->hdr.blkno));
	else if (rlfs_get64(agh->hdr.owner) != agno)
		ERR(f, "%s (AG header): owner %" PRIu64 ", expected AG %u", fsck_loc(f, hfsb).s,
		    rlfs_get64(agh->hdr.owner), agno);
	else if (memcmp(agh->hdr.uuid, mp->uuid, RLFS_UUID_SIZE) != 0)
		ERR(f, "%s (AG header): uuid is not this filesystem's", fsck_loc(f, hfsb).s);
	else
		ok = true;
	if (ok)
		memcpy(&ai->agh, blk, sizeof(ai->agh));
	free(blk);
	return ok;
}

void fsck_check_ag(struct fsck *f, uint32_t agno)
{
	struct rlfs_mount *mp = f->mp;
	struct ag_info *ai = &f->ags[agno];
	uint64_t hfsb = rlfs_agb_to_fsb(mp, agno, RLFS_AGH_AGBNO);
	uint32_t length = rlfs_ag_blocks(mp, agno);
	struct agwalk bno = { 0 }, cnt = { 0 }, ino = { 0 }, refc = { 0 }, rmap = { 0 };
	struct rlfs_buf fake = { 0 };
	struct rlfs_trans *tp;
	bool ok = true, roots_ok = true;
	int err;

	fsck_add_claim(f, CL_AGH, agno, 0, hfsb, 1);
	fsck_add_claim(f, CL_AGFLBLK, agno, 0, rlfs_agb_to_fsb(mp, agno, RLFS_AGFL_AGBNO), 1);
	err = rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp);
	if (err) {
		ERR(f, "AG %u: cannot start a transaction: %s", agno, fsck_errstr(err));
		return;
	}
	/*
	 * The header is read raw and checked here: the library's verifier also
	 * rejects inconsistent summary counters, which fsck wants to compare and
	 * rewrite rather than give up on.  The tree cursors get it as their AG
	 * header buffer (cur->priv) so they never re-read it.
	 */
	if (!read_agh_raw(f, agno, hfsb, ai)) {
		rlfs_trans_cancel(tp);
		return;
	}
	ai->hdr_ok = true;
	fake.fsbno = hfsb;
	fake.data = &ai->agh;
	if (rlfs_get32(ai->agh.agno) != agno) {
		ERR(f, "%s (AG header): agno field %u, expected %u", fsck_loc(f, hfsb).s,
		    rlfs_get32(ai->agh.agno), agno);
		ai->hdr_ok = false;
	}
	if (rlfs_get32(ai->agh.length) != length) {
		ERR(f, "%s (AG header): length %u, expected %u", fsck_loc(f, hfsb).s,
		    rlfs_get32(ai->agh.length), length);
		ai->hdr_ok = false;
	}
	{
		static const char *const names[3] = { "bnobt", "cntbt", "inobt" };
		uint32_t roots[3] = { rlfs_get32(ai->agh.bno_root), rlfs_get32(ai->agh.cnt_root),
				      rlfs_get32(ai->agh.ino_root) };
		uint16_t levels[3] = { rlfs_get16(ai->agh.bno_level), rlfs_get16(ai->agh.cnt_level),
				       rlfs_get16(ai->agh.ino_level) };

		for (int i = 0; i < 3; i++) {
			if (roots[i] < 3 || roots[i] >= length) {
				ERR(f, "%s (AG header): %s root agbno %u outside the AG",
				    fsck_loc(f, hfsb).s, names[i], roots[i]);
				roots_ok = false;
			}
			if (levels[i] < 1 || levels[i] > RLFS_BTREE_MAXLEVELS) {
				ERR(f, "%s (AG header): %s level %u out of range", fsck_loc(f, hfsb).s,
				    names[i], levels[i]);
				roots_ok = false;
			}
		}
	}
	bool refc_roots_ok = f->reflink;
	if (!(mp->features_incompat & RLFS_FEAT_INCOMPAT_REFLINK) &&
	    (rlfs_get32(ai->agh.refc_root) || rlfs_get16(ai->agh.refc_level)))
		ERR(f, "%s (AG header): refcount btree root set without the reflink feature",
		    fsck_loc(f, hfsb).s);
	if (f->reflink) {
		uint32_t rr = rlfs_get32(ai->agh.refc_root);
		uint16_t rl = rlfs_get16(ai->agh.refc_level);

		if (rr < 3 || rr >= length) {
			ERR(f, "%s (AG header): refcountbt root agbno %u outside the AG",
			    fsck_loc(f, hfsb).s, rr);
			refc_roots_ok = false;
		}
		if (rl < 1 || rl > RLFS_BTREE_MAXLEVELS) {
			ERR(f, "%s (AG header): refcountbt level %u out of range", fsck_loc(f, hfsb).s,
			    rl);
			refc_roots_ok = false;
		}
		if (!refc_roots_ok)
			roots_ok = false;
	}
	bool has_rmap = mp->features_incompat & RLFS_FEAT_INCOMPAT_RMAP;
	bool rmap_roots_ok = has_rmap;
	uint32_t mr = rlfs_get32(ai->agh.rmap_root);
	uint16_t ml = rlfs_get16(ai->agh.rmap_level);
	if (!has_rmap && (mr || ml))
		ERR(f, "%s (AG header): rmap btree root set without the rmap feature",
		    fsck_loc(f, hfsb).s);
	if (has_rmap && (mr < 3 || mr >= length)) {
		ERR(f, "%s (AG header): rmapbt root agbno %u outside the AG", fsck_loc(f, hfsb).s,
		    mr);
		rmap_roots_ok = false;
	}
	if (has_rmap && (ml < 1 || ml > RLFS_BTREE_MAXLEVELS)) {
		ERR(f, "%s (AG header): rmapbt level %u out of range", fsck_loc(f, hfsb).s, ml);
		rmap_roots_ok = false;
	}
	if (has_rmap && !rmap_roots_ok)
		roots_ok = false;
	RB_BEGIN(f);                /* the rebuild writes a fresh AGFL */
	check_agfl(f, tp, agno, ai);
	RB_END(f);

	if (roots_ok) {
		bno = (struct agwalk){ .f = f, .agno = agno, .length = length, .kind = CL_BNOBT,
				       .limit = length, .ai = ai };
		cnt = bno;
		cnt.kind = CL_CNTBT;
		ino = bno;
		ino.kind = CL_INOBT;
		ino.last_chunk_fsbno = UINT64_MAX;
		/* free-space, refcount and rmap btree findings: the rebuild
		 * (fsck_rebuild.c) makes these trees anew; the inobt's are not
		 * (its chunks are what the rebuild starts from) */
		RB_BEGIN(f);
		uint64_t nrb0 = f->nrebuild;
		bool bno_ok = walk_ag_tree(f, tp, &rlfs_bnobt_ops, &bno, alloc_rec_cb,
					   rlfs_get32(ai->agh.bno_root), &fake);
		ai->bno_ok = bno_ok && f->nrebuild == nrb0;
		bool cnt_ok = walk_ag_tree(f, tp, &rlfs_cntbt_ops, &cnt, alloc_rec_cb,
					   rlfs_get32(ai->agh.cnt_root), &fake);
		RB_END(f);

		uint64_t nerr_ino = f->nerrors;
		ai->ino_ok = walk_ag_tree(f, tp, &rlfs_inobt_ops, &ino, inobt_rec_cb,
					  rlfs_get32(ai->agh.ino_root), &fake);
		ai->ino_ok &= f->nerrors == nerr_ino;
		/* a damaged inobt may yet be rebuilt from the rmapbt's
		 * OWN_INODES records (fsck_recover_chunks, after phase 2) */
		ai->ino_nerrors = f->nerrors - nerr_ino;
		ok &= bno_ok && cnt_ok;
		RB_BEGIN(f);
		if (refc_roots_ok) {
			refc = (struct agwalk){ .f = f, .agno = agno, .length = length,
						.kind = CL_REFCBT, .limit = length, .ai = ai };
			uint64_t nerr0 = f->nerrors + f->nrebuild; /* findings here are rebuild ones */

			ai->refc_ok = walk_ag_tree(f, tp, fsck_refcbt_ops(), &refc, refc_rec_cb,
						   rlfs_get32(ai->agh.refc_root), &fake);
			ai->refc_blocks = refc.nblocks;
			ai->refc_counted = ai->refc_ok;
			if (ai->refc_ok && f->nerrors + f->nrebuild == nerr0)
				library_check(f, tp, &rlfs_refcountbt_ops, agno, &fake,
					      rlfs_get32(ai->agh.refc_root));
			ok &= ai->refc_ok;
		}
		if (rmap_roots_ok) {
			/* blocks claimed as CL_RMAPBT (rmap owner OWN_AG) */
			rmap = (struct agwalk){ .f = f, .agno = agno, .length = length,
						.kind = CL_RMAPBT, .limit = length, .ai = ai };
			uint64_t nerr0 = f->nerrors + f->nrebuild;

			ai->rmap_ok = true;
			ai->rmap_ok &= walk_ag_tree(f, tp, fsck_rmapbt_ops(), &rmap, rmap_rec_cb, mr,
						    &fake);
			ai->rmap_ok &= f->nerrors + f->nrebuild == nerr0;
			ai->rmap_blocks = rmap.nblocks;
			ai->rmap_counted = ai->rmap_ok;
			if (ai->rmap_ok)
				library_check(f, tp, &rlfs_rmapbt_ops, agno, &fake, mr);
			/* not in ok: the rmap btree does not feed the counters */
		}
		/* comparing with a tree that could not be read only makes noise */
		if (bno_ok && cnt_ok)
			compare_free_trees(f, agno, &bno, &cnt);
		RB_END(f);
		ai->btreeblks = bno.nblocks + cnt.nblocks - RLFS_MIN(bno.nblocks + cnt.nblocks, 2);
		ai->trees_ok_but_ino = ok && !f->oom;
		ai->trees_ok = ai->trees_ok_but_ino && ai->ino_ok;
	}
	rlfs_trans_cancel(tp);
	free(bno.recs);
	free(cnt.recs);

	if (!ai->hdr_ok || !ai->trees_ok)
		return;
	if (rlfs_get32(ai->agh.freeblks) != ai->freeblks) {
		FIXCOUNTER(f, "%s (AG header): freeblks %u, free space trees hold %" PRIu64,
			fsck_loc(f, hfsb).s, rlfs_get32(ai->agh.freeblks), ai->freeblks);
		ai->fix = true;
	}
	if (rlfs_get32(ai->agh.longest) != ai->longest) {
		FIXCOUNTER(f, "%s (AG header): longest %u, longest free extent is %u",
			fsck_loc(f, hfsb).s, rlfs_get32(ai->agh.longest), ai->longest);
		ai->fix = true;
	}
	if (rlfs_get32(ai->agh.btreeblks) != ai->btreeblks) {
		FIXCOUNTER(f, "%s (AG header): btreeblks %u, bnobt+cntbt have %" PRIu64
			" blocks beyond their roots", fsck_loc(f, hfsb).s,
			rlfs_get32(ai->agh.btreeblks), ai->btreeblks);
		ai->fix = true;
	}
	if (f->mp->features_ro_compat & RLFS_FEAT_RO_COMPAT_AGBTCOUNT) {
		/* the counts the AG reservation is taken from (ag_resv.h) */
		if (ai->refc_counted && rlfs_get32(ai->agh.refc_blocks) != ai->refc_blocks) {
			FIXCOUNTER(f, "%s (AG header): refc_blocks %u, refcount btree has %" PRIu64
				   " blocks", fsck_loc(f, hfsb).s, rlfs_get32(ai->agh.refc_blocks),
				   ai->refc_blocks);
			ai->fix = true;
		}
		if (ai->rmap_counted && rlfs_get32(ai->agh.rmap_blocks) != ai->rmap_blocks) {
			FIXCOUNTER(f, "%s (AG header): rmap_blocks %u, rmap btree has %" PRIu64
				   " blocks", fsck_loc(f, hfsb).s, rlfs_get32(ai->agh.rmap_blocks),
				   ai->rmap_blocks);
			ai->fix = true;
		}
	} else if (rlfs_get32(ai->agh.refc_blocks) || rlfs_get32(ai->agh.rmap_blocks)) {
		/* without the feature those bytes are pad (zero) */
		FIXCOUNTER(f, "%s (AG header): refc_blocks %u, rmap_blocks %u without the "
			   "AGBTCOUNT feature (must be 0)", fsck_loc(f, hfsb).s,
			   rlfs_get32(ai->agh.refc_blocks), rlfs_get32(ai->agh.rmap_blocks));
		ai->refc_blocks = ai->rmap_blocks = 0;
		ai->refc_counted = ai->rmap_counted = true;
		ai->fix = true;
	}
	if (rlfs_get64(ai->agh.icount) != ai->icount) {
		FIXCOUNTER(f, "%s (AG header): icount %" PRIu64 ", inobt chunks hold %" PRIu64,
			fsck_loc(f, hfsb).s, rlfs_get64(ai->agh.icount), ai->icount);
		ai->fix = true;
	}
	if (rlfs_get64(ai->agh.ifree) != ai->ifree) {
		FIXCOUNTER(f, "%s (AG header): ifree %" PRIu64 ", inobt marks %" PRIu64 " free",
			fsck_loc(f, hfsb).s, rlfs_get64(ai->agh.ifree), ai->ifree);
		ai->fix = true;
	}
}

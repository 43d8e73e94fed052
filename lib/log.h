/*
 * log.h: the write-ahead log (RLFS_FEAT_INCOMPAT_LOG).  On-disk format in
 * reflinkfs/format.h and docs/SPEC.md ("Log"); design in docs/DESIGN.md
 * ("Log").
 *
 * Pieces, one file each:
 *   log.c      the writer: records at the head of the ring, cycles, space,
 *              the tail written into every record header, the unmount
 *              record; mount/unmount of the log.      (xfs_log.c)
 *   log_cil.c  the committed item list: rlfs_trans_commit copies every
 *              logged buffer's image into it (latest wins per block);
 *              rlfs_log_force writes it as one checkpoint.  (xfs_log_cil.c)
 *   log_ail.c  the active item list: images whose checkpoint is durable but
 *              which are not yet written in place, ordered by LSN; pushing
 *              it writes them in place and moves the tail.  (xfs_trans_ail.c)
 *   recover.c  finding head and tail, replaying complete checkpoints.
 *                                                      (xfs_log_recover.c)
 *
 * The write-ahead rule: a block changed by a transaction is written in
 * place only from the AIL, i.e. from an image that is already durable in
 * the log; the live buffer stays pinned in the cache (never evicted, never
 * written by the buffer cache) while the block has an image in the CIL or
 * the AIL.
 *
 * Locking: everything here runs under mp->meta_lock (commit, sync, fsync
 * and unmount hold it), so the log has no lock of its own.
 */
#ifndef RLFS_LOG_H
#define RLFS_LOG_H
#include "rlfs.h"
#include "reflinkfs/fs.h"

struct rlfs_buf;

/*
 * One block's image in the CIL or the AIL.  bp is the live buffer, pinned
 * (bp->log_cil / bp->log_ail point back here) so the cache keeps it;
 * data is blocksize bytes (the whole block: the AIL writes it in place),
 * or NULL for a cancel item and for a borrowed AIL image.
 *
 * Borrowed (AIL only): when a checkpoint moves an image to the AIL and the
 * buffer holds exactly that content (no transaction has it, and after the
 * same LSN stamp the bytes are equal), the image gives its copy back and
 * the AIL writes bp->data in place; most blocks are not changed again
 * before that, so their second copy costs neither memory nor a copy.
 * Before anything changes bp->data again (a transaction joins it, or the
 * superblock's error record is stored), rlfs_log_buf_unborrow gives the
 * image its own copy of the checkpointed content.  XFS needs no copies at
 * all: a transaction locks the buffer that the AIL would write.
 *
 * map is the block's dirty-chunk bitmap (bit i = byte i/8, bit i%8 =
 * bytes [i*RLFS_LOG_CHUNK, +RLFS_LOG_CHUNK) of the block; blocksize /
 * RLFS_LOG_CHUNK bits used): every chunk changed since the block was last
 * written in place.  rlfs_log_cil_insert ORs in what each commit changed
 * (the buffer against its before-image, rlfs_log_map_diff, or against the
 * CIL image when the block is relogged in the same checkpoint; only the
 * chunks of the logged ranges when the transaction logged ranges,
 * rlfs_trans_log_buf_range), and the AIL
 * image's map of the same block (a relogged block keeps the chunks of its
 * earlier, not yet written checkpoints); the push ORs in the chunks its
 * LSN/crc stamp changes.  Only the mapped chunks go to the log.
 * Mirrors xfs_buf_log_format.blf_data_map (xfs_buf_item.c).
 */
struct rlfs_log_img {
	uint64_t fsbno;
	struct rlfs_buf *bp;
	uint8_t *data;
	uint16_t type;              /* RLFS_LOG_ITEM_* */
	bool borrowed;              /* AIL: content is bp->data (see above) */
	uint64_t lsn;               /* AIL: LSN of the checkpoint it came in */
	struct rlfs_log_img *prev, *next;
	uint8_t map[RLFS_LOG_MAP_MAX];
};

/* Images (with their data) kept for reuse once in place or dropped, so
 * that the commits of the next checkpoint do not allocate: up to this
 * many (4 MiB of 4 KiB blocks).  posix_memalign of a block per image
 * was a quarter of an in-process create. */
#define RLFS_LOG_SPARE_MAX 1024u
struct rlfs_log;
/* Give img back: onto the spare list (log->spare) if it has data and
 * the list is not full, else freed. */
void rlfs_log_img_put(struct rlfs_log *log, struct rlfs_log_img *img);

/*
 * An intent or done item of deferred work (defer.h) on its way into the
 * log, or an intent whose done is not yet durable (log_intent.c).
 *   type      RLFS_LOG_ITEM_INTENT / _DONE
 *   id        the intent id (mp->defer_intent_seq; from the log for a
 *             recovered intent)
 *   code      the intent (INTENT) or done (DONE) code, RLFS_LOG_*
 *   data      INTENT: the payload block (struct rlfs_log_intent + items),
 *             blocksize bytes; NULL for DONE
 *   lsn       live intent: the LSN of the checkpoint it is in
 *   done      live intent: its done is in a written checkpoint, that of
 *             CIL context done_seq (durable once
 *             rlfs_log_seq_durable(done_seq): the intent is then dropped)
 *   recovered live intent found by recovery without a done, still to be
 *             finished (rlfs_log_recover_intents)
 *   in_cil    an intent in log->cil_intents (else live)
 *   next, prev  the list it is on (struct rlfs_log_ilist); hnext: the
 *             chain of its slot in log->ihash (intents only)
 */
struct rlfs_log_ilog {
	uint16_t type;
	uint16_t code;
	uint32_t count;
	uint16_t item_bytes;
	bool done;
	bool recovered;
	bool in_cil;
	bool capture;               /* logged by recovery for follow-up work:
	                               keeps data and becomes recovered once
	                               its checkpoint is written */
	uint64_t id;
	uint8_t *data;
	uint64_t lsn;
	uint64_t done_seq;
	struct rlfs_log_ilog *next, *prev, *hnext;
};

/* A list of struct rlfs_log_ilog in order (appended at last). */
struct rlfs_log_ilist {
	struct rlfs_log_ilog *first, *last;
};

/* What a scan of the log found (recover.c). */
struct rlfs_log_scan {
	uint64_t tail_lsn;          /* where replay starts */
	uint64_t head_lsn;          /* where the next record goes */
	uint64_t next_seq;          /* next checkpoint sequence number */
	uint64_t ckpts;             /* complete checkpoints with items past the tail */
	uint64_t items;             /* block images and cancels in them */
	bool needs_replay;          /* ckpts > 0 */
	/* replay only: intents of the replayed checkpoints that have no done
	 * in them (LSN order; each data is a copy of its payload block);
	 * the caller takes the list (rlfs_log_ilog_free_list) */
	struct rlfs_log_ilog *intents;
	uint64_t max_intent_id;     /* largest intent or done id seen */
	bool from_hint;             /* found from mp->log_clean_lsn with two
				     * block reads, the ring not read */
};

struct rlfs_log {
	struct rlfs_mount *mp;
	uint64_t start_fsbno;       /* first block of the log */
	uint32_t size_blocks;       /* blocks in the ring */
	uint32_t head_cycle;        /* next record goes to (head_cycle, head_block) */
	uint32_t head_block;
	uint64_t tail_lsn;          /* tail in the last record written (durable) */
	uint64_t clean_lsn;         /* LSN of the last record written if it is
				     * an unmount record needing nothing before
				     * it (tail = its own LSN), else 0: what a
				     * clean unmount stores in the superblock */
	uint64_t seq;               /* next record sequence number (on disk) */
	/* CIL context sequence (xfs_cil's xc_current_sequence): what every
	 * commit now tags its items with (rlfs_log_item.commit_seq); a push
	 * of the CIL moves it on.  Separate from seq, which the tail records
	 * of AIL pushes also use up.  Every context < durable_seq is durable
	 * (written to the log and flushed).  Both start at 1. */
	uint64_t cil_seq;
	uint64_t commits;           /* transactions committed (rlfs_log_commit_done) */
	uint64_t idle_commits;      /* commits at the last rlfs_log_push_idle */
	uint64_t durable_seq;
	uint32_t items_per_rec;     /* descriptors that fit in a header block */
	/* CIL: images committed since the last force, in commit order */
	struct rlfs_log_img *cil_first, *cil_last;
	size_t cil_count;
	size_t cil_max;             /* commit forces the CIL past this many items */
	/* images (with data) allocated ahead by rlfs_log_cil_reserve, so
	 * that the commit that uses them cannot fail half way */
	struct rlfs_log_img *spare;
	size_t nspare;
	/* AIL: images of written checkpoints (durable unless log->unflushed),
	 * not yet in place, by LSN */
	struct rlfs_log_img *ail_first, *ail_last;
	size_t ail_count;
	/* intents and dones committed since the last force (part of the CIL's
	 * checkpoint; an intent whose done commits while both are here is
	 * dropped with it, as XFS's intent whiteouts), and the intents already
	 * in the log whose done is not durable: they hold the tail back */
	struct rlfs_log_ilist cil_intents, cil_dones, live_intents;
	size_t cil_nintents, cil_ndones;
	/* every intent of cil_intents and live_intents by id (log_intent.c:
	 * a relog check or a done looks its intent up once per step, and a
	 * long chain keeps thousands in flight); 1 << ihash_bits slots */
	struct rlfs_log_ilog **ihash;
	unsigned ihash_bits;
	size_t ihash_count;
	uint8_t *wbuf;              /* one record: header + payload */
	bool failed;                /* a log write failed: no more writes */
	bool force_intents;         /* testing: every commit that logs an
				     * intent forces the log, so intents and
				     * their dones land in different
				     * checkpoints (no whiteouts) and crash
				     * cuts fall between them; set from the
				     * environment (RLFS_LOG_FORCE_INTENTS=1)
				     * at mount, or by a test */
	/* relogging of long-lived intents (defer.h): an intent a chain
	 * still holds is logged again once it is relog_blocks or more
	 * behind the head (log_intent.c, log_relog_due); no_relog turns it
	 * off (testing: RLFS_LOG_NO_RELOG=1 at mount, or a test) */
	uint32_t relog_blocks;
	bool no_relog;
	/* while log recovery captures an intent's follow-up work
	 * (log_intent.c recover_one): intents logged are marked capture */
	bool capturing;
	uint32_t capture_pending;   /* such intents still in the CIL */
	bool recovering;            /* rlfs_log_recover_intents runs (it walks
				     * the intent lists without meta_lock):
				     * no idle push meanwhile */
	bool idle_push_failed;      /* an idle push failed: no more of them */
	/* checking: every commit of a buffer with logged ranges
	 * (rlfs_trans_log_buf_range) compares the whole block too and aborts
	 * on a change outside the ranges.  On in builds with AddressSanitizer;
	 * RLFS_LOG_CHECK_RANGES=0/1 at mount overrides. */
	bool check_ranges;
	/* while unflushed: the oldest tail written into an unflushed
	 * checkpoint record.  Such a checkpoint has already moved its
	 * relogged blocks to its own LSN in the AIL, but until it is durable
	 * a crash may lose it: no record may carry a tail past the tail it
	 * was written with (XFS inserts into the AIL only at checkpoint I/O
	 * completion, xlog_cil_committed).  UINT64_MAX when flushed. */
	uint64_t unflushed_tail;
	bool unflushed;             /* records written since the last device
				     * flush: the AIL must flush before it
				     * writes anything in place */
	/* The oldest LSN an AIL image had when a checkpoint not yet flushed
	 * (a background push) replaced it with a newer image of the same
	 * block, 0 if none since the last flush.  The tail may not pass it
	 * until that flush: the older checkpoint is the only durable copy
	 * of the block's change (XFS moves a relogged item in the AIL only
	 * when the checkpoint's I/O completes, xlog_cil_committed). */
	uint64_t relog_hold_lsn;
	/* fsync's device flush runs without meta_lock
	 * (rlfs_log_force_seq_end): one at a time; the others wait on
	 * flush_cv (with meta_lock) */
	bool flushing;
	pthread_cond_t flush_cv;
	/* mp->trans_seq when the last checkpoint was written: the
	 * transactions a flush after it makes durable */
	uint64_t pushed_trans_seq;
	/* cil_seq after the last checkpoint an fsync wrote (and counted in
	 * stats.forces): a flush that ends there is part of that force */
	uint64_t forced_push_seq;
	struct rlfs_log_stats stats;
};

static inline uint64_t rlfs_log_head_lsn(const struct rlfs_log *log)
{
	return RLFS_LSN(log->head_cycle, log->head_block);
}

/*
 * Mount the log of mp (mp->blocksize, mp->uuid, mp->dev set): scan it
 * (recover.c), replay it if it needs replay and rdonly is false, and set
 * up mp->log with the head after the last complete checkpoint.  A log
 * that needs replay with rdonly true gives -EROFS (nothing written).
 * 0, -ENOMEM, -EIO, -EUCLEAN (no valid record at all, or a corrupt
 * record with later ones after it: rlfs_corrupt, see rlfs_log_recover).
 * Mirrors xfs_log_mount + xlog_recover.
 */
int rlfs_log_mount(struct rlfs_mount *mp, uint64_t start_fsbno, uint32_t size_blocks,
		   bool rdonly);
/* Free mp->log and every CIL/AIL image (unpinning nothing: the buffer
 * cache goes right after).  No I/O.  NULL-safe. */
void rlfs_log_free(struct rlfs_mount *mp);

/*
 * Clean unmount (xfs_log_unmount_write): force the CIL, push the whole AIL
 * in place, flush, write an unmount record (tail = its own LSN), flush.
 * 0 or the first -errno.  Under meta_lock.
 */
int rlfs_log_quiesce(struct rlfs_mount *mp);

/* mkfs: write a clean log of size_blocks at start_fsbno (every block
 * zeroed, then an unmount record at block 0, cycle 1, seq 1) and flush:
 * rlfs_log_zero with cycle 1.  0 or -errno. */
int rlfs_log_format(struct rlfs_mount *mp, uint64_t start_fsbno, uint32_t size_blocks);

/*
 * fsck -L (xfs_repair -L: libxfs_log_clear): replace the log at
 * [start_fsbno, +size_blocks) of mp->dev (mp->blocksize, blocklog, uuid
 * set) by a fresh empty one, discarding whatever it held: every block of
 * the ring is zeroed, then an unmount record (seq 1, tail = its own LSN)
 * goes to block 0 of cycle `cycle`, and the device is flushed.  The caller
 * picks cycle above every LSN on disk (metadata block headers, dinodes,
 * old records), so that recovery never takes a newer change for an older
 * one.  cycle >= 1.  0, -ENOMEM, -EINVAL (cycle 0), -EIO etc.
 */
int rlfs_log_zero(struct rlfs_mount *mp, uint64_t start_fsbno, uint32_t size_blocks,
		  uint32_t cycle);

/* ---- log.c: the record writer ---- */

/*
 * Write one record at the head: hdr fields from the arguments, items
 * descriptors (nitems) and payload_bytes of packed item segments
 * (reflinkfs/format.h; NULL/0 for none), which start right after the
 * descriptors in the header block and run on into len_blocks more blocks,
 * padded with zeros.  payload may already be in place in log->wbuf (at
 * sizeof(struct rlfs_log_rec) + nitems descriptors: not copied then).
 * Advances the head (and wraps: RLFS_LOG_MIN_REC_BLOCKS).  The caller has
 * made sure there is room (rlfs_log_space_blocks) and that the payload
 * fits before the end of the ring and in items_per_rec blocks.  No device
 * flush after it; but the first record of a checkpoint (ckpt_lsn == the
 * head) while log->unflushed flushes the device before it, so that at
 * most one checkpoint is ever in flight: the bound recovery's head check
 * relies on (recover.c, later_record; XFS bounds it by XLOG_MAX_ICLOGS).
 * 0, -EINVAL (too large: a caller bug), or the -errno of the flush or
 * write (-EIO etc.).  Mirrors xlog_write / xlog_sync.
 */
int rlfs_log_write_rec(struct rlfs_log *log, uint64_t seq, uint32_t flags,
		       uint64_t ckpt_lsn, uint64_t tail_lsn,
		       const struct rlfs_log_desc *items, uint32_t nitems,
		       const uint8_t *payload, size_t payload_bytes);
/* Blocks free for new records: the ring minus [durable tail, head), minus
 * one block kept so a full ring never looks empty. */
uint32_t rlfs_log_space_blocks(const struct rlfs_log *log);
/* Move the head to block 0 of the next cycle if fewer than
 * RLFS_LOG_MIN_REC_BLOCKS blocks are left before the end of the ring. */
void rlfs_log_head_wrap(struct rlfs_log *log);
/* Write an empty committed checkpoint (flags |= RLFS_LREC_COMMIT) carrying
 * tail_lsn, and flush: makes a moved tail durable.  0 or -errno. */
int rlfs_log_write_tail(struct rlfs_log *log, uint32_t flags, uint64_t tail_lsn);

/* ---- log_cil.c: the committed item list ---- */

/* The CIL context sequence a commit now records in its items' commit_seq
 * (log->cil_seq); 0 without a log. */
static inline uint64_t rlfs_log_cil_seq(const struct rlfs_mount *mp)
{
	return mp->log ? mp->log->cil_seq : 0;
}
/* True if the CIL context seq (an item's commit_seq) is durable: pushed
 * and flushed.  Under meta_lock. */
static inline bool rlfs_log_seq_durable(const struct rlfs_mount *mp, uint64_t seq)
{
	const struct rlfs_log *log = mp->log;
	return log && seq < log->durable_seq;
}
/* The device was flushed with nothing of the log written after it: every
 * record written so far is durable (every pushed CIL context).  Whoever
 * flushes the device under meta_lock may call it. */
static inline void rlfs_log_flushed(struct rlfs_log *log)
{
	log->unflushed = false;
	log->unflushed_tail = UINT64_MAX;
	log->durable_seq = log->cil_seq;
	log->relog_hold_lsn = 0;
}

/*
 * A buffer's current image joins the CIL (called for every logged buffer
 * at rlfs_trans_commit, through rlfs_buf_mark_dirty): a copy of bp->data
 * replaces any image of the same block already in the CIL.  The buffer is
 * pinned.  0 or -ENOMEM (then the change is not logged: reported; cannot
 * happen after a successful rlfs_log_cil_reserve for this commit).
 * Mirrors xfs_cil_insert_items / xlog_cil_insert_format_items.
 */
int rlfs_log_cil_insert(struct rlfs_mount *mp, struct rlfs_buf *bp);
/*
 * Before tp's commit changes anything: allocate the CIL images its
 * buffers will need (a buffer logged in tp without a CIL image with data,
 * a freed one with a durable image but no CIL item), so the inserts and
 * cancels of the commit itself cannot fail for memory (XFS allocates its
 * shadow buffers the same way, xlog_cil_alloc_shadow_bufs).  0 or -ENOMEM
 * (then the commit must fail and tp be cancelled).  A no-op without a log.
 */
int rlfs_log_cil_reserve(struct rlfs_trans *tp);
/* bp's block was freed (rlfs_buf_stale): if the block has an image in the
 * CIL or AIL, the CIL gets a cancel item for it instead of an image, so
 * recovery never writes an older image over the block's next owner. */
void rlfs_log_cil_cancel(struct rlfs_mount *mp, struct rlfs_buf *bp);
/*
 * Force the log (xfs_log_force / xlog_cil_push_work): write the whole CIL
 * as one checkpoint at the head (several records if it does not fit in
 * one), flush the device, move the images to the AIL at the checkpoint's
 * LSN.  Pushes the AIL first when the ring lacks room.  A no-op when the
 * CIL is empty.  0, or -errno (the CIL is kept and the head rewound, so a
 * later force writes the same checkpoint again), -ENOSPC if one
 * checkpoint is larger than the whole log (cannot happen with the size
 * checks: reported).
 */
int rlfs_log_force(struct rlfs_mount *mp);
/*
 * Make CIL context seq durable, with the file data written before it
 * (xfs_log_force_seq, as xfs_file_fsync calls it with an inode's
 * ili_commit_seq or ili_datasync_seq), in two halves so that the device
 * flush, the slow part, runs without meta_lock: other transactions (the
 * creates and writes of other threads) go on while it runs, as XFS's
 * log I/O runs without the inode and AGI locks.
 *
 * rlfs_log_force_seq_begin, under meta_lock:
 *   seq >= cil_seq (still in the CIL): flush the data (unless clean: the
 *       caller may have flushed it before taking the lock), write the CIL
 *       as one checkpoint, unflushed; a context with nothing in it is
 *       closed as durable when nothing unflushed precedes it;
 *   durable_seq <= seq < cil_seq (written, not yet flushed): nothing;
 *   seq < durable_seq: nothing; a flush only if the file data counted
 *       by data_target (mp->data_dirty when the fsync started: every write
 *       that returned before it) is not yet flushed.
 *   *t says whether a flush is needed and which contexts it must make
 *   durable.  0 or -errno (-EIO after a shutdown or a failed log write).
 * rlfs_log_force_seq_end, without meta_lock (it takes it): one device
 *   flush, unless a flush that started after the checkpoint was written
 *   covered it; a flush in flight is waited for (concurrent fsyncs share
 *   it: group commit).  Then every context written before the flush
 *   started is durable (durable_seq), and what those transactions freed
 *   may be reused (rlfs_busy_clear_durable).  0 or -errno.
 * Only one such flush is in flight at a time (log->flushing), which keeps
 * the writer's rule that at most one checkpoint is unflushed
 * (rlfs_log_write_rec).
 */
struct rlfs_log_ticket {
	bool flush;                 /* the end half must flush */
	uint64_t log_seq;           /* contexts < log_seq must be durable; 0:
				     * file data only */
	bool counted;               /* the begin half counted the force
				     * (stats.forces: one per force) */
	uint64_t data_target;       /* file data counted up to here must be
				     * flushed (log_seq 0) */
};
int rlfs_log_force_seq_begin(struct rlfs_mount *mp, uint64_t seq, uint64_t data_target,
			     struct rlfs_log_ticket *t);
int rlfs_log_force_seq_end(struct rlfs_mount *mp, const struct rlfs_log_ticket *t);
/* After a commit: force if the CIL has grown past log->cil_max items (a
 * bounded checkpoint keeps the ring from having to hold it whole). */
void rlfs_log_commit_done(struct rlfs_mount *mp);
/* The image stamped with lsn as it goes to the log/in place: blkhdr lsn +
 * crc (BUF), every valid dinode's lsn + crc (INODE), nothing (RAW). */
void rlfs_log_stamp_lsn(struct rlfs_mount *mp, uint16_t type, void *data, uint64_t lsn);

/*
 * Write the superblock at fsbno (0) in place now, outside the log, and
 * drop its image from the CIL: the CLEAN superblock of an unmount, which
 * must reach the disk after the unmount record (so an image that says
 * CLEAN never needs replay).  Only right after rlfs_log_quiesce (nothing
 * else in the CIL or AIL).  0 or -errno.  Under meta_lock.
 */
int rlfs_log_write_unlogged(struct rlfs_mount *mp, uint64_t fsbno);

/* ---- log_ail.c: the active item list ---- */

/* The content an image stands for: its data, the buffer's for a borrowed
 * AIL image, NULL for a cancel item. */
const void *rlfs_log_img_content(const struct rlfs_log_img *img);
/*
 * bp->data is about to change (a transaction joins bp, or a change made
 * outside one): if its AIL image is borrowed, give the image its own copy
 * first.  0, or -ENOMEM (then bp must not be changed).  Under meta_lock.
 */
int rlfs_log_buf_unborrow(struct rlfs_mount *mp, struct rlfs_buf *bp);

/* A checkpoint's images (the pushed CIL list, first..) join the AIL at
 * ckpt_lsn; an image of the same block already there is replaced.  If the
 * checkpoint is not flushed yet (log->unflushed: a background push), the
 * replaced image's LSN holds the tail (log->relog_hold_lsn) until the next
 * flush.  Mirrors xfs_trans_ail_update_bulk. */
void rlfs_log_ail_insert(struct rlfs_log *log, struct rlfs_log_img *first, uint64_t ckpt_lsn);
/*
 * Push the AIL (xfsaild_push): write in place every image with LSN <
 * target_lsn (all with UINT64_MAX), in block order, flush, make the new
 * tail durable (rlfs_log_write_tail), then unpin the buffers.  0 or -errno
 * (the images stay in the AIL).
 */
int rlfs_log_ail_push(struct rlfs_log *log, uint64_t target_lsn);
/*
 * Push the AIL far enough that want_blocks of the ring are free (images
 * older than the LSN want_blocks behind the ring's end), as XFS pushes to
 * a target (xfs_ail_push_target) rather than everything: a checkpoint
 * that does not fit waits for only part of the dirty metadata.  Nothing if
 * that much is free already.  The tail may still be held by live intents:
 * the caller checks the space after.  0 or -errno as rlfs_log_ail_push.
 * Under meta_lock.
 */
int rlfs_log_ail_push_free(struct rlfs_log *log, uint32_t want_blocks);
/* The tail to write into the next record: the oldest of the AIL's LSNs,
 * the live intents' LSNs (an intent stays in the log until its done is
 * durable: the write-ahead rule of deferred work) and log->relog_hold_lsn
 * (a block logged again in a checkpoint that is not flushed yet), or
 * if_empty when there are none; never past log->unflushed_tail while a
 * pushed checkpoint is not flushed.  A tail is a true statement when
 * written: every checkpoint before it is in place and flushed (recovery
 * takes the newest tail of any valid header).  Mirrors
 * xlog_assign_tail_lsn. */
uint64_t rlfs_log_ail_tail(struct rlfs_log *log, uint64_t if_empty);

/* ---- log_intent.c: intent and done items (defer.h's mp->defer_log) ---- */

/* The defer_log ops the log installs in mp->defer_log at mount. */
extern const struct rlfs_defer_log_ops rlfs_log_defer_ops;
/* True if the CIL holds nothing (no images, intents or dones). */
static inline bool rlfs_log_cil_empty(const struct rlfs_log *log)
{
	return !log->cil_count && !log->cil_nintents && !log->cil_ndones;
}
/* The CIL's intents and dones were written as the checkpoint of CIL
 * context log->cil_seq - 1 at ckpt_lsn (the caller has advanced cil_seq,
 * and called rlfs_log_flushed if the push flushed): intents become live
 * at ckpt_lsn, dones mark their live intent done in that context. */
void rlfs_log_intents_pushed(struct rlfs_log *log, uint64_t ckpt_lsn);
/* The oldest LSN a live intent holds the tail at (UINT64_MAX: none);
 * frees the live intents whose done is durable first. */
uint64_t rlfs_log_intent_tail(struct rlfs_log *log);
/* Mount: the intents recovery found without a done (a list on next)
 * become live, marked recovered.  0 or -ENOMEM (the index of intents by
 * id; the list is freed then). */
int rlfs_log_intents_adopt(struct rlfs_log *log, struct rlfs_log_ilog *list);
/* Free every intent and done the log holds, and the index. */
void rlfs_log_intents_free(struct rlfs_log *log);
/* Free a list of rlfs_log_ilog chained on next (and their data). */
void rlfs_log_ilog_free_list(struct rlfs_log_ilog *l);
/*
 * After a mount replayed the log (the mount is complete: AG headers,
 * inode cache, transactions): finish every intent recovery found without
 * a done, oldest first, each in its own recovery transaction: a done for
 * the old intent, then the type's recover_item for each of its items
 * (which queues the work again), then commit (rlfs_defer_finish: a new
 * intent, rolls, done items).  Then force the log.  0, -EUCLEAN (an
 * intent of an unknown type, or a bad item), or the -errno of a step.
 * Mirrors xlog_recover_process_intents / xlog_recover_finish_intents.
 */
int rlfs_log_recover_intents(struct rlfs_mount *mp);
/* Intents recovery found that are still to be finished (0 once done). */
size_t rlfs_log_recovered_pending(const struct rlfs_mount *mp);

/* ---- recover.c ---- */

/*
 * Scan the log at [start_fsbno, +size_blocks) of mp->dev: find every valid
 * record header, take the newest tail, walk the records from the tail,
 * collect the complete checkpoints.  Fills *scan; when replay is true and
 * the log needs replay, writes the images in place (skipping cancelled
 * ones and those older than the block on disk), flushes, and fills
 * *stats.  Does not write a clean record (rlfs_log_mount does).
 * Where the walk stops (a record missing, torn, stale or out of
 * sequence) is the head if nothing written later survives (a torn write
 * of the last checkpoint: dropped); a valid record of a later checkpoint
 * after it (larger LSN and seq) means corruption: -EUCLEAN with "log
 * corrupt at block N (cycle C): ...; later records exist ...; run
 * `reflinkfs fsck -L` ..." on stderr (rlfs_corrupt).
 * 0, -ENOMEM, -EIO, -EUCLEAN (no valid record, corruption before later
 * records, a bad item: reported).
 * Mirrors xlog_find_head / xlog_verify_head / xlog_find_tail /
 * xlog_do_recovery_pass.
 */
int rlfs_log_recover(struct rlfs_mount *mp, uint64_t start_fsbno, uint32_t size_blocks,
		     bool replay, struct rlfs_log_scan *scan, struct rlfs_log_stats *stats);
/*
 * One item's segment in a record's payload (rlfs_log_rec_segs):
 *   map    BUF/INODE/RAW: the dirty-chunk bitmap (RLFS_LOG_MAP_BYTES), or
 *          NULL for a version 1 whole-block image (every chunk);
 *   data   the logged chunks, packed in block order (BUF/INODE/RAW), or
 *          the intent head + items (INTENT); NULL for CANCEL / DONE;
 *   bytes  bytes at data.
 */
struct rlfs_log_seg {
	const uint8_t *map;
	const uint8_t *data;
	uint32_t bytes;
};
/*
 * Split the payload of a record into its items' segments: rec is the
 * header block followed by its len_blocks payload blocks, contiguous
 * (version 2: the payload starts after the descriptors; version 1: at the
 * second block);
 * segs has room for the record's nitems.  Checks that every segment is
 * well formed (a bitmap with exactly the descriptor's count of bits, all
 * within the block; an intent head matching its descriptor and fitting)
 * and that the segments end within the record's last block.  Version 1 and 2 records.  0, or -EUCLEAN (not reported: the
 * caller says where).  XFS's counterpart is the op-header walk of
 * xlog_recover_process_data.
 */
int rlfs_log_rec_segs(struct rlfs_mount *mp, const uint8_t *rec, struct rlfs_log_seg *segs);
/*
 * Recovery of one logged block (xlog_recover_do_reg_buffer): copy the
 * chunks of seg (map + packed data, or a whole block when map is NULL)
 * over block (blocksize bs bytes), leaving the unlogged chunks as they
 * are.  seg was checked by rlfs_log_rec_segs.
 */
void rlfs_log_apply_seg(uint32_t bs, uint8_t *block, const struct rlfs_log_seg *seg);
/* Set in map the bit of every RLFS_LOG_CHUNK-byte chunk of the bs-byte
 * blocks a and b that differs (xfs_buf_item_log's dirty bits, found by
 * comparing with the before-image instead of recorded by the callers). */
void rlfs_log_map_diff(uint8_t *map, const uint8_t *a, const uint8_t *b, uint32_t bs);
/* Chunks set in map for a block of bs bytes. */
uint32_t rlfs_log_map_count(const uint8_t *map, uint32_t bs);

/* Check a record header block at log block `block`: magic, version,
 * uuid, crc, own LSN at that block, sizes within the ring. */
bool rlfs_log_rec_valid(struct rlfs_mount *mp, const void *blk, uint32_t block,
			uint32_t size_blocks);
/* Descriptors that fit in one header block of blocksize bytes. */
static inline uint32_t rlfs_log_items_per_rec(uint32_t blocksize)
{
	return (blocksize - (uint32_t)sizeof(struct rlfs_log_rec)) /
	       (uint32_t)sizeof(struct rlfs_log_desc);
}
#endif

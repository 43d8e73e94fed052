/*
 * log.c: the log writer (see log.h).  Records go to the head of the ring,
 * one pwrite each (a record never wraps); the head moves on and wraps to
 * block 0 of the next cycle.  Space between the durable tail (the tail_lsn
 * of the last record written) and the head is in use; a writer that needs
 * more pushes the AIL (log_cil.c).  Mount scans and, if needed, replays
 * the log (recover.c) and writes a clean record; unmount writes everything
 * in place and an unmount record.  Model: xfs_log.c.
 */
#include "log.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dev.h"
#include "trans.h"

static uint64_t log_off_bytes(const struct rlfs_log *log, uint32_t block)
{
	return (log->start_fsbno + block) << log->mp->blocklog;
}

void rlfs_log_head_wrap(struct rlfs_log *log)
{
	if (log->head_block + RLFS_LOG_MIN_REC_BLOCKS > log->size_blocks) {
		log->head_cycle++;
		log->head_block = 0;
	}
}

uint32_t rlfs_log_space_blocks(const struct rlfs_log *log)
{
	uint64_t tail = log->tail_lsn, head = rlfs_log_head_lsn(log);
	uint64_t used;
	if (RLFS_LSN_CYCLE(tail) == RLFS_LSN_CYCLE(head))
		used = RLFS_LSN_BLOCK(head) - RLFS_LSN_BLOCK(tail);
	else
		used = (uint64_t)log->size_blocks - RLFS_LSN_BLOCK(tail) + RLFS_LSN_BLOCK(head);
	if (used + 1 >= log->size_blocks)
		return 0;
	return (uint32_t)(log->size_blocks - used - 1);
}

int rlfs_log_write_rec(struct rlfs_log *log, uint64_t seq, uint32_t flags,
		       uint64_t ckpt_lsn, uint64_t tail_lsn,
		       const struct rlfs_log_desc *items, uint32_t nitems,
		       const uint8_t *payload, size_t payload_bytes)
{
	struct rlfs_mount *mp = log->mp;
	log->clean_lsn = 0; /* rlfs_log_write_tail sets it after an unmount record */
	uint32_t bs = mp->blocksize;
	if (log->failed)
		return -EIO;
	rlfs_log_head_wrap(log);
	/* the payload starts right after the descriptors, in the header
	 * block, and runs on into whole blocks */
	if (nitems > log->items_per_rec)
		return -EINVAL;
	size_t hdr = sizeof(struct rlfs_log_rec) + (size_t)nitems * sizeof(*items);
	size_t inl = bs - hdr;
	uint32_t npayload = payload_bytes > inl ?
		(uint32_t)((payload_bytes - inl + bs - 1) >> mp->blocklog) : 0;
	if (npayload > log->items_per_rec || log->head_block + 1 + npayload > log->size_blocks)
		return -EINVAL; /* caller bug: sized against the ring */
	if (log->unflushed && ckpt_lsn == rlfs_log_head_lsn(log)) {
		/* a new checkpoint while an earlier one is unflushed (a
		 * background push): flush first, so that at most one
		 * checkpoint is ever in flight and recovery can tell a torn
		 * write from corruption (recover.c, later_record) */
		int ferr = rlfs_dev_flush(mp->dev);
		if (ferr)
			return ferr;
		rlfs_log_flushed(log);
	}
	uint8_t *w = log->wbuf;
	size_t total = (size_t)(npayload + 1) * bs;
	if (payload_bytes && payload != w + hdr)
		memcpy(w + hdr, payload, payload_bytes);
	else if (!payload)
		payload_bytes = 0;
	memset(w + hdr + payload_bytes, 0, total - hdr - payload_bytes);
	memset(w, 0, hdr);
	struct rlfs_log_rec *rec = (struct rlfs_log_rec *)w;
	uint64_t lsn = rlfs_log_head_lsn(log);
	rlfs_put32(rec->magic, RLFS_LOG_MAGIC);
	rlfs_put64(rec->lsn, lsn);
	rlfs_put64(rec->tail_lsn, tail_lsn);
	rlfs_put64(rec->seq, seq);
	memcpy(rec->uuid, mp->uuid, RLFS_UUID_SIZE);
	rlfs_put32(rec->version, RLFS_LOG_VERSION);
	rlfs_put32(rec->flags, flags);
	rlfs_put32(rec->len_blocks, npayload);
	rlfs_put32(rec->nitems, nitems);
	rlfs_put64(rec->ckpt_lsn, ckpt_lsn);
	if (nitems)
		memcpy(w + sizeof(*rec), items, (size_t)nitems * sizeof(*items));
	rlfs_put32(rec->payload_crc, rlfs_crc32c(w + bs, (size_t)npayload * bs));
	rlfs_cksum_update(w, bs, offsetof(struct rlfs_log_rec, crc));
	size_t len = total;
	int err = rlfs_dev_pwrite(mp->dev, w, len, log_off_bytes(log, log->head_block));
	if (err)
		return err;
	log->head_block += 1 + npayload;
	if (log->head_block >= log->size_blocks) {
		log->head_cycle++;
		log->head_block = 0;
	}
	log->tail_lsn = tail_lsn;
	log->stats.bytes_written += len;
	log->stats.records_written++;
	return 0;
}

int rlfs_log_write_tail(struct rlfs_log *log, uint32_t flags, uint64_t tail_lsn)
{
	rlfs_log_head_wrap(log);
	uint64_t lsn = rlfs_log_head_lsn(log);
	int err = rlfs_log_write_rec(log, log->seq, flags | RLFS_LREC_COMMIT, lsn, tail_lsn,
				     NULL, 0, NULL, 0);
	if (!err)
		err = rlfs_dev_flush(log->mp->dev);
	if (!err) {
		log->seq++;
		rlfs_log_flushed(log);
		if ((flags & RLFS_LREC_UNMOUNT) && tail_lsn == lsn)
			log->clean_lsn = lsn;
	} else {
		log->failed = true; /* the durable tail is unknown: stop */
	}
	return err;
}

/* The tail for a record about to be written at the head when nothing
 * older is needed: the head itself (after a wrap, if one is due). */
static uint64_t head_after_wrap(struct rlfs_log *log)
{
	rlfs_log_head_wrap(log);
	return rlfs_log_head_lsn(log);
}

int rlfs_log_mount(struct rlfs_mount *mp, uint64_t start_fsbno, uint32_t size_blocks,
		   bool rdonly)
{
	struct rlfs_log_scan scan;
	struct rlfs_log_stats stats;
	memset(&stats, 0, sizeof(stats));
	int err = rlfs_log_recover(mp, start_fsbno, size_blocks, false, &scan, NULL);
	if (err)
		return err;
	if (scan.needs_replay && rdonly) {
		rlfs_warn("%s: the log holds %llu checkpoint(s) that need replay; mount "
			  "read-write once (or run `reflinkfs fsck`) to replay them",
			  mp->image ? mp->image : "image", (unsigned long long)scan.ckpts);
		return -EROFS;
	}
	if (scan.needs_replay) {
		err = rlfs_log_recover(mp, start_fsbno, size_blocks, true, &scan, &stats);
		if (err)
			return err;
	}
	struct rlfs_log *log = calloc(1, sizeof(*log));
	if (!log) {
		rlfs_log_ilog_free_list(scan.intents);
		return -ENOMEM;
	}
	log->mp = mp;
	log->start_fsbno = start_fsbno;
	log->size_blocks = size_blocks;
	log->head_cycle = RLFS_LSN_CYCLE(scan.head_lsn);
	log->head_block = RLFS_LSN_BLOCK(scan.head_lsn);
	log->tail_lsn = scan.tail_lsn;
	log->seq = scan.next_seq;
	log->cil_seq = log->durable_seq = 1;
	pthread_cond_init(&log->flush_cv, NULL);
	log->unflushed_tail = UINT64_MAX;
	log->items_per_rec = rlfs_log_items_per_rec(mp->blocksize);
	/* a checkpoint is pushed once it holds a quarter of the ring */
	log->cil_max = RLFS_MAX(16u, size_blocks / 4);
	log->stats = stats;
	/* one record: header + up to items_per_rec images */
	size_t wblocks = (size_t)log->items_per_rec + 1;
	if (posix_memalign((void **)&log->wbuf, RLFS_DIO_ALIGN, wblocks << mp->blocklog)) {
		rlfs_log_ilog_free_list(scan.intents);
		pthread_cond_destroy(&log->flush_cv);
		free(log);
		return -ENOMEM;
	}
	const char *fi = getenv("RLFS_LOG_FORCE_INTENTS");
	log->force_intents = fi && *fi && *fi != '0';
#ifdef __SANITIZE_ADDRESS__
	log->check_ranges = true;
#endif
	const char *cr = getenv("RLFS_LOG_CHECK_RANGES");
	if (cr && *cr)
		log->check_ranges = *cr != '0';
	const char *nr = getenv("RLFS_LOG_NO_RELOG");
	log->no_relog = nr && *nr && *nr != '0';
	log->relog_blocks = RLFS_MAX(1u, size_blocks / 4);
	const char *rb = getenv("RLFS_LOG_RELOG_BLOCKS");
	if (rb && *rb)
		log->relog_blocks = (uint32_t)RLFS_MAX(1, atoi(rb));
	mp->log = log;
	mp->defer_log = &rlfs_log_defer_ops;
	mp->log_clean_lsn = 0; /* used: the log moves on from here */
	/* intent ids of this mount are larger than any in the log (a crash
	 * during intent recovery leaves two mounts' intents in the range) */
	uint64_t id0 = scan.next_seq << 32;
	mp->defer_intent_seq = RLFS_MAX(RLFS_MAX(mp->defer_intent_seq, id0), scan.max_intent_id);
	/* intents without a done: they hold the tail where it is until
	 * rlfs_log_recover_intents has finished them and their dones are
	 * durable; no clean tail then (a crash before that replays the same
	 * log again) */
	bool recovered = scan.intents != NULL;
	err = rlfs_log_intents_adopt(log, scan.intents);
	scan.intents = NULL;
	if (err) {
		rlfs_log_free(mp);
		return err;
	}
	if (recovered)
		return 0;
	if (scan.needs_replay && !rdonly) {
		/* everything replayed is in place and flushed: a clean tail */
		err = rlfs_log_write_tail(log, RLFS_LREC_UNMOUNT, head_after_wrap(log));
		if (err) {
			rlfs_log_free(mp);
			return err;
		}
	}
	return 0;
}

void rlfs_log_free(struct rlfs_mount *mp)
{
	struct rlfs_log *log = mp->log;
	if (!log)
		return;
	struct rlfs_log_img *lists[2] = { log->cil_first, log->ail_first };
	for (int i = 0; i < 2; i++) {
		struct rlfs_log_img *img = lists[i];
		while (img) {
			struct rlfs_log_img *next = img->next;
			if (img->bp) {
				img->bp->log_cil = NULL;
				img->bp->log_ail = NULL;
			}
			free(img->data);
			free(img);
			img = next;
		}
	}
	while (log->spare) {
		struct rlfs_log_img *next = log->spare->next;
		free(log->spare->data);
		free(log->spare);
		log->spare = next;
	}
	rlfs_log_intents_free(log);
	free(log->wbuf);
	pthread_cond_destroy(&log->flush_cv);
	free(log);
	mp->log = NULL;
	mp->defer_log = NULL;
}

int rlfs_log_quiesce(struct rlfs_mount *mp)
{
	struct rlfs_log *log = mp->log;
	if (!log)
		return 0;
	int err = rlfs_log_force(mp);
	if (err)
		return err;
	err = rlfs_log_ail_push(log, UINT64_MAX);
	if (err)
		return err;
	/* intents whose work was never finished (a failed step) stay in the
	 * log: the next mount's recovery finishes them */
	uint64_t head = head_after_wrap(log);
	return rlfs_log_write_tail(log, RLFS_LREC_UNMOUNT, rlfs_log_ail_tail(log, head));
}

bool rlfs_has_log(struct rlfs_mount *mp)
{
	return mp->log != NULL;
}

void rlfs_log_get_stats(struct rlfs_mount *mp, struct rlfs_log_stats *st)
{
	rlfs_meta_lock(mp);
	if (mp->log)
		*st = mp->log->stats;
	else
		memset(st, 0, sizeof(*st));
	pthread_mutex_unlock(&mp->meta_lock);
}

int rlfs_log_format(struct rlfs_mount *mp, uint64_t start_fsbno, uint32_t size_blocks)
{
	/* every block written, as mkfs.xfs clears its log: on an image file
	 * the ring is then allocated in the file underneath, so a log write
	 * is never also an allocation that the host filesystem's fdatasync
	 * has to commit (measured: ~20% more fdatasyncs per second on ext4) */
	return rlfs_log_zero(mp, start_fsbno, size_blocks, 1);
}

int rlfs_log_zero(struct rlfs_mount *mp, uint64_t start_fsbno, uint32_t size_blocks,
		  uint32_t cycle)
{
	if (cycle == 0 || size_blocks < RLFS_LOG_MIN_REC_BLOCKS)
		return -EINVAL;
	enum { CHUNK = 1 << 20 };
	uint8_t *zero = NULL;
	if (posix_memalign((void **)&zero, RLFS_DIO_ALIGN, CHUNK))
		return -ENOMEM;
	memset(zero, 0, CHUNK);
	uint64_t off = start_fsbno << mp->blocklog;
	uint64_t left = (uint64_t)size_blocks << mp->blocklog;
	int err = 0;
	while (left && !err) {
		size_t n = left < CHUNK ? (size_t)left : CHUNK;
		err = rlfs_dev_pwrite(mp->dev, zero, n, off);
		off += n;
		left -= n;
	}
	free(zero);
	if (err)
		return err;
	struct rlfs_log log;
	memset(&log, 0, sizeof(log));
	log.mp = mp;
	log.start_fsbno = start_fsbno;
	log.size_blocks = size_blocks;
	log.head_cycle = cycle;
	log.seq = 1;
	log.items_per_rec = rlfs_log_items_per_rec(mp->blocksize);
	if (posix_memalign((void **)&log.wbuf, RLFS_DIO_ALIGN, mp->blocksize))
		return -ENOMEM;
	log.tail_lsn = RLFS_LSN(cycle, 0);
	err = rlfs_log_write_tail(&log, RLFS_LREC_UNMOUNT, RLFS_LSN(cycle, 0));
	free(log.wbuf);
	return err;
}

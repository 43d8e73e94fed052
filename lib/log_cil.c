/*
 * log_cil.c: the committed item list (see log.h).
 *
 * rlfs_trans_commit hands every logged buffer to rlfs_log_cil_insert
 * (through rlfs_buf_mark_dirty), which copies the block's current image
 * into the CIL: one image per block, the latest commit wins, so a block
 * changed by a thousand transactions between two forces is logged once
 * (group commit: many transactions, one log write and one device flush).
 * With the image goes a dirty-chunk bitmap (struct rlfs_log_img.map): the
 * 128-byte chunks the commits changed, found by comparing the buffer with
 * its before-image (or, relogged in the same checkpoint, with the CIL
 * image), only inside the ranges the transaction logged when it logged
 * ranges (rlfs_trans_log_buf_range, xfs_trans_log_buf's first/last),
 * accumulated until the block is written in place.
 * rlfs_log_force writes the CIL as one checkpoint -- per block only the
 * bitmap and the dirty chunks -- and moves its images to the AIL.
 * Model: xfs_log_cil.c, xfs_buf_item.c (xfs_buf_item_format's dirty
 * regions of blf_data_map).
 */
#include "log.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dev.h"
#include "reflinkfs/fs.h"
#include "alloc.h"
#include "busy.h"

static uint16_t img_type(const struct rlfs_buf *bp)
{
	if (bp->ops && bp->ops->has_hdr)
		return RLFS_LOG_ITEM_BUF;
	if (bp->ops && bp->ops->magic == RLFS_DINODE_MAGIC)
		return RLFS_LOG_ITEM_INODE;
	return RLFS_LOG_ITEM_RAW;
}

void rlfs_log_stamp_lsn(struct rlfs_mount *mp, uint16_t type, void *data, uint64_t lsn)
{
	if (type == RLFS_LOG_ITEM_BUF) {
		struct rlfs_blkhdr *h = data;
		rlfs_put64(h->lsn, lsn);
		rlfs_cksum_update(data, mp->blocksize, RLFS_CRC_OFF);
	} else if (type == RLFS_LOG_ITEM_INODE) {
		/* only slots whose crc is good: never launder a damaged one */
		for (uint32_t i = 0; i < mp->inopblock; i++) {
			uint8_t *p = (uint8_t *)data + (size_t)i * mp->inodesize;
			size_t crc_off = offsetof(struct rlfs_dinode, crc);
			if (!rlfs_cksum_verify(p, mp->inodesize, crc_off))
				continue;
			rlfs_put64(((struct rlfs_dinode *)p)->lsn, lsn);
			rlfs_cksum_update(p, mp->inodesize, crc_off);
		}
	}
}

/* Bytes compared at once before looking at single chunks: most commits
 * change one or two places in a block (a record, an inode slot, a
 * header), so one memcmp per span finds the unchanged ones with an eighth
 * of the calls and loop steps of a chunk-by-chunk compare.  A power of
 * two, a multiple of RLFS_LOG_CHUNK, at most RLFS_MIN_BLOCKSIZE. */
#define DIFF_SPAN (4u * RLFS_LOG_CHUNK)

void rlfs_log_map_diff(uint8_t *map, const uint8_t *a, const uint8_t *b, uint32_t bs)
{
	for (uint32_t s = 0; s < bs; s += DIFF_SPAN) {
		if (!memcmp(a + s, b + s, DIFF_SPAN))
			continue;
		for (uint32_t off = s; off < s + DIFF_SPAN; off += RLFS_LOG_CHUNK) {
			uint32_t i = off / RLFS_LOG_CHUNK;
			if (!(map[i >> 3] & (1u << (i & 7))) && memcmp(a + off, b + off, RLFS_LOG_CHUNK))
				map[i >> 3] |= (uint8_t)(1u << (i & 7));
		}
	}
}

uint32_t rlfs_log_map_count(const uint8_t *map, uint32_t bs)
{
	/* whole bytes, then the bits of a last partial byte */
	uint32_t n = bs / RLFS_LOG_CHUNK, c = 0, i;
	for (i = 0; i + 8 <= n; i += 8)
		c += (uint32_t)__builtin_popcount(map[i >> 3]);
	for (; i < n; i++)
		c += (map[i >> 3] >> (i & 7)) & 1u;
	return c;
}

static void map_set(uint8_t *map, uint32_t chunk)
{
	map[chunk >> 3] |= (uint8_t)(1u << (chunk & 7));
}

/* For an image (img_data) of the block's last commit that differs from
 * the block's durable content only in the chunks set in map (so that it
 * equals the before-image of this commit wherever map is clear): copy into
 * img_data every chunk where the buffer b now differs from it, and mark
 * those chunks in map.  Afterwards img_data equals b, and map holds every
 * chunk where b differs from the before-image.  Comparing with the image
 * rather than with the before-image also skips the copy of chunks that
 * earlier commits changed and this one did not. */
static void copy_changed(uint8_t *map, uint8_t *img_data, const uint8_t *b, uint32_t bs)
{
	for (uint32_t s = 0; s < bs; s += DIFF_SPAN) {
		if (!memcmp(img_data + s, b + s, DIFF_SPAN))
			continue;
		for (uint32_t off = s; off < s + DIFF_SPAN; off += RLFS_LOG_CHUNK) {
			if (!memcmp(img_data + off, b + off, RLFS_LOG_CHUNK))
				continue;
			map_set(map, off / RLFS_LOG_CHUNK);
			memcpy(img_data + off, b + off, RLFS_LOG_CHUNK);
		}
	}
}

/* A commit changed bp outside the ranges it logged: a bug in the caller
 * that would leave the change out of the log. */
static void range_bug(const struct rlfs_buf *bp, uint32_t chunk)
{
	rlfs_warn("bug: fsbno %llu (%s) changed in chunk %u, outside the ranges its "
		  "transaction logged (rlfs_trans_log_buf_range)",
		  (unsigned long long)bp->fsbno, bp->ops && bp->ops->name ? bp->ops->name : "?",
		  chunk);
	abort();
}

/* copy_changed for a buffer whose transaction logged ranges: only the
 * chunks in bp->log_hint can differ from the image.  With
 * log->check_ranges, the rest of the block is compared too. */
static void copy_ranges(const struct rlfs_log *log, const struct rlfs_buf *bp, uint8_t *map,
			uint8_t *img_data)
{
	const uint8_t *b = bp->data;
	for (uint64_t h = bp->log_hint; h; h &= h - 1) {
		uint32_t i = (uint32_t)__builtin_ctzll(h);
		size_t off = (size_t)i * RLFS_LOG_CHUNK;
		if (!memcmp(img_data + off, b + off, RLFS_LOG_CHUNK))
			continue;
		map_set(map, i);
		memcpy(img_data + off, b + off, RLFS_LOG_CHUNK);
	}
	if (log->check_ranges)
		for (uint32_t i = 0; i < log->mp->blocksize / RLFS_LOG_CHUNK; i++) {
			size_t off = (size_t)i * RLFS_LOG_CHUNK;
			if (memcmp(img_data + off, b + off, RLFS_LOG_CHUNK))
				range_bug(bp, i);
		}
}

/* rlfs_log_map_diff (bp->undo against bp->data) for a buffer whose
 * transaction logged ranges: only the chunks in bp->log_hint. */
static void diff_ranges(const struct rlfs_log *log, const struct rlfs_buf *bp, uint8_t *map)
{
	const uint8_t *a = bp->undo, *b = bp->data;
	for (uint64_t h = bp->log_hint; h; h &= h - 1) {
		uint32_t i = (uint32_t)__builtin_ctzll(h);
		size_t off = (size_t)i * RLFS_LOG_CHUNK;
		if (memcmp(a + off, b + off, RLFS_LOG_CHUNK))
			map_set(map, i);
	}
	if (log->check_ranges)
		for (uint32_t i = 0; i < log->mp->blocksize / RLFS_LOG_CHUNK; i++) {
			size_t off = (size_t)i * RLFS_LOG_CHUNK;
			bool hinted = i < 64 && (bp->log_hint >> i & 1);
			if (!hinted && memcmp(a + off, b + off, RLFS_LOG_CHUNK))
				range_bug(bp, i);
		}
}

static void map_set_all(uint8_t *map, uint32_t bs)
{
	memset(map, 0, RLFS_LOG_MAP_MAX);
	for (uint32_t i = 0; i < bs / RLFS_LOG_CHUNK; i++)
		map_set(map, i);
}

int rlfs_log_cil_reserve(struct rlfs_trans *tp)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_log *log = mp->log;
	if (!log)
		return 0;
	size_t images = 0;
	for (struct rlfs_buf *bp = tp->bufs; bp; bp = bp->tnext) {
		if (bp->flags & RLFS_BUF_INVAL_IN_TP)
			images += bp->log_ail && !bp->log_cil;
		else if (bp->logged)
			images += !bp->log_cil || !bp->log_cil->data;
	}
	while (log->nspare < images) {
		struct rlfs_log_img *img = calloc(1, sizeof(*img));
		if (!img || !(img->data = rlfs_blk_get(mp))) {
			free(img);
			return -ENOMEM;
		}
		img->next = log->spare;
		log->spare = img;
		log->nspare++;
	}
	return 0;
}

void rlfs_log_img_put(struct rlfs_log *log, struct rlfs_log_img *img)
{
	if (img->data && log->nspare < RLFS_LOG_SPARE_MAX) {
		uint8_t *data = img->data;
		memset(img, 0, sizeof(*img));
		img->data = data;
		img->next = log->spare;
		log->spare = img;
		log->nspare++;
		return;
	}
	rlfs_blk_put(log->mp, img->data);
	free(img);
}

/* A spare image (with data) if one was reserved, else a new one without
 * data; NULL without memory. */
static struct rlfs_log_img *img_get(struct rlfs_log *log)
{
	struct rlfs_log_img *img = log->spare;
	if (!img)
		return calloc(1, sizeof(*img));
	log->spare = img->next;
	log->nspare--;
	img->next = NULL;
	return img;
}

static struct rlfs_log_img *cil_add(struct rlfs_log *log, struct rlfs_buf *bp)
{
	struct rlfs_log_img *img = img_get(log);
	if (!img)
		return NULL;
	img->fsbno = bp->fsbno;
	img->bp = bp;
	img->prev = log->cil_last;
	if (log->cil_last)
		log->cil_last->next = img;
	else
		log->cil_first = img;
	log->cil_last = img;
	log->cil_count++;
	bp->log_cil = img;
	return img;
}

static void cil_del(struct rlfs_log *log, struct rlfs_log_img *img)
{
	if (img->prev)
		img->prev->next = img->next;
	else
		log->cil_first = img->next;
	if (img->next)
		img->next->prev = img->prev;
	else
		log->cil_last = img->prev;
	log->cil_count--;
	img->bp->log_cil = NULL;
	rlfs_log_img_put(log, img);
}

int rlfs_log_cil_insert(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	struct rlfs_log *log = mp->log;
	struct rlfs_log_img *img = bp->log_cil;
	bool fresh = !img;
	if (!img) {
		img = cil_add(log, bp);
		if (!img)
			goto nomem;
		memset(img->map, 0, sizeof(img->map));
	}
	/* the chunks this commit changed: all of them for a block new in
	 * the transaction or without a before-image (a buffer marked dirty
	 * outside a transaction), for a block whose older image was a
	 * cancel (freed and reused: nothing on disk is its content), or
	 * whose durable image was */
	bool whole = !bp->tp || !bp->undo || (bp->flags & RLFS_BUF_NEW_IN_TP) ||
		     (!fresh && !img->data) || (bp->log_ail && !rlfs_log_img_content(bp->log_ail));
	/* relogged in the same checkpoint: the image already holds the
	 * committed block, so only this commit's changed chunks are copied */
	bool in_place = !whole && !fresh;
	/* the transaction said which chunks it may have changed */
	bool ranged = !whole && !bp->log_whole;
	if (whole)
		map_set_all(img->map, mp->blocksize);
	else if (in_place && ranged)
		copy_ranges(log, bp, img->map, img->data);
	else if (in_place)
		copy_changed(img->map, img->data, bp->data, mp->blocksize);
	else if (ranged)
		diff_ranges(log, bp, img->map);
	else
		rlfs_log_map_diff(img->map, bp->undo, bp->data, mp->blocksize);
	/* relogged: the chunks of the durable image not yet in place too, so
	 * that the newest record alone brings the block on disk up to date */
	if (bp->log_ail && rlfs_log_img_content(bp->log_ail))
		for (size_t i = 0; i < RLFS_LOG_MAP_BYTES(mp->blocksize); i++)
			img->map[i] |= bp->log_ail->map[i];
	if (in_place) {
		img->type = img_type(bp);
		return 0;
	}
	if (!img->data && log->spare) {
		/* a cancel item turned back into an image: a spare's data */
		struct rlfs_log_img *sp = img_get(log);
		img->data = sp->data;
		free(sp);
	}
	if (!img->data) {
		if (!(img->data = rlfs_blk_get(mp))) {
			img->data = NULL;
			if (img->type != RLFS_LOG_ITEM_CANCEL)
				cil_del(log, img);
			goto nomem;
		}
	}
	memcpy(img->data, bp->data, mp->blocksize);
	img->type = img_type(bp);
	return 0;
nomem:
	rlfs_warn("out of memory logging fsbno %llu: the change is not crash-safe",
		  (unsigned long long)bp->fsbno);
	return -ENOMEM;
}

void rlfs_log_cil_cancel(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	struct rlfs_log *log = mp->log;
	struct rlfs_log_img *img = bp->log_cil;
	if (!bp->log_ail) {
		/* no image of it is durable: forgetting the CIL one is enough */
		if (img)
			cil_del(log, img);
		return;
	}
	/* The durable image stays in the AIL, and may still be written in
	 * place, until the cancel's checkpoint replaces it
	 * (rlfs_log_ail_insert): until then the on-disk trees may still
	 * point at this block, and busy extents keep the block from being
	 * reused before the cancel is durable.  Dropping the image here
	 * let an AIL push move the tail past the image's checkpoint without
	 * ever writing it, while the cancel was not yet durable: a crash
	 * then left the durable trees pointing at a never-written block. */
	if (!img) {
		img = cil_add(log, bp);
		if (!img) {
			rlfs_warn("out of memory cancelling fsbno %llu in the log",
				  (unsigned long long)bp->fsbno);
			return;
		}
	}
	rlfs_blk_put(mp, img->data);
	img->data = NULL;
	img->type = RLFS_LOG_ITEM_CANCEL;
}

static int cil_push(struct rlfs_mount *mp, bool flush);

/* File data written since the last device flush goes to stable storage
 * (before a checkpoint that may point at it, or for an fsync that needs
 * nothing from the log). */
static int flush_data(struct rlfs_mount *mp)
{
	if (!rlfs_data_unflushed(mp))
		return 0;
	uint64_t dsnap = mp->data_dirty;
	int err = rlfs_dev_flush(mp->dev);
	if (err)
		return err;
	rlfs_data_flushed(mp, dsnap);
	if (mp->log)
		rlfs_log_flushed(mp->log); /* the flush covered the log too */
	return 0;
}

void rlfs_log_commit_done(struct rlfs_mount *mp)
{
	struct rlfs_log *log = mp->log;
	if (!log)
		return;
	log->commits++;
	if (log->force_intents && log->cil_nintents) {
		/* testing: the intent durable now, its done later */
		int ferr = flush_data(mp);
		if (!ferr)
			ferr = cil_push(mp, true);
		if (ferr)
			rlfs_warn("log force of an intent failed (%s)", strerror(-ferr));
		return;
	}
	if (log->cil_count + log->cil_nintents + log->cil_ndones < log->cil_max)
		return;
	/* a background-style push: the checkpoint is written but not
	 * flushed (the next force or AIL push flushes it).  File data the
	 * checkpoint may point at goes first, as in rlfs_buf_flush_all. */
	int err = 0;
	err = flush_data(mp);
	if (!err)
		err = cil_push(mp, false);
	if (err)
		rlfs_warn("log push after commit failed (%s); will retry at the next sync",
			  strerror(-err));
}

int rlfs_log_push_idle(struct rlfs_mount *mp)
{
	struct rlfs_log *log = mp->log;
	if (!log || __atomic_load_n(&log->recovering, __ATOMIC_ACQUIRE))
		return 0;
	if (pthread_mutex_trylock(&mp->meta_lock) != 0)
		return 0;   /* busy: not idle */
	if (mp->shutdown || (mp->flags & RLFS_MOUNT_RDONLY) || log->idle_push_failed ||
	    __atomic_load_n(&log->recovering, __ATOMIC_ACQUIRE)) {
		pthread_mutex_unlock(&mp->meta_lock);
		return 0;
	}
	int err = 0;
	bool idle = log->commits == log->idle_commits;
	log->idle_commits = log->commits;
	uint32_t space = rlfs_log_space_blocks(log);
	if (idle && log->ail_first && space < log->size_blocks / 2) {
		uint32_t want = space + log->size_blocks / 8;
		if (want > log->size_blocks / 4 * 3)
			want = log->size_blocks / 4 * 3;
		err = rlfs_log_ail_push_free(log, want);
		if (!err)
			err = 1;
		else
			log->idle_push_failed = true;  /* once: the foreground sees it too */
	}
	pthread_mutex_unlock(&mp->meta_lock);
	return err;
}

int rlfs_log_force(struct rlfs_mount *mp)
{
	if (mp->shutdown)
		return -EIO;   /* nothing more goes to the log (rlfs_force_shutdown) */
	struct rlfs_log *log = mp->log;
	if (!log)
		return 0;
	if (!rlfs_log_cil_empty(log)) {
		log->stats.forces++;
		return cil_push(mp, true);
	}
	if (log->unflushed) {
		log->stats.forces++;
		int err = rlfs_dev_flush(mp->dev);
		if (err)
			return err;
		rlfs_log_flushed(log);
	}
	return 0;
}

/* One device flush with meta_lock dropped (held on entry and on return),
 * as the only such flush in flight (log->flushing; the others wait on
 * flush_cv).  0 or the flush's error. */
static int flush_unlocked(struct rlfs_mount *mp)
{
	struct rlfs_log *log = mp->log;
	log->flushing = true;
	pthread_mutex_unlock(&mp->meta_lock);
	int err = rlfs_dev_flush(mp->dev);
	rlfs_meta_lock(mp);
	log->flushing = false;
	pthread_cond_broadcast(&log->flush_cv);
	return err;
}

int rlfs_log_force_seq_begin(struct rlfs_mount *mp, uint64_t seq, uint64_t data_target,
			     struct rlfs_log_ticket *t)
{
	struct rlfs_log *log = mp->log;
	*t = (struct rlfs_log_ticket){ .data_target = data_target };
	if (mp->shutdown)
		return -EIO;
	if (!log)
		return -EINVAL;
	if (log->failed)
		return -EIO;
	if (seq >= log->durable_seq && seq >= log->cil_seq) {
		/* in the current CIL context: data first, then the
		 * checkpoint, written now and flushed by the end half.  A
		 * flush of an earlier checkpoint still in flight ends first
		 * (the writer would otherwise flush under meta_lock to keep
		 * one checkpoint in flight: rlfs_log_write_rec) */
		while (log->flushing)
			pthread_cond_wait(&log->flush_cv, &mp->meta_lock);
		if (mp->shutdown)
			return -EIO;
		int err = 0;
		if (rlfs_data_unflushed(mp)) {
			/* data other threads wrote since the caller's flush:
			 * flushed once more without meta_lock (as the end
			 * half's flush; the CIL may grow meanwhile, and what
			 * that adds is flushed below, under the lock) */
			uint64_t dsnap = mp->data_dirty;
			err = flush_unlocked(mp);
			if (err)
				return err;
			rlfs_data_flushed(mp, dsnap);
			if (mp->shutdown || log->failed)
				return -EIO;
		}
		err = flush_data(mp);
		if (err)
			return err;
		if (!rlfs_log_cil_empty(log)) {
			log->stats.forces++;
			t->counted = true;
			err = cil_push(mp, false);
			if (err)
				return err;
			/* its flush, whoever makes it, is part of this force */
			log->forced_push_seq = log->cil_seq;
		} else if (!log->unflushed) {
			/* The context had no image (the item was joined, not
			 * logged): nothing to write, and everything before it
			 * is durable; close the empty context so it counts as
			 * durable, and let freed extents be reused */
			if (log->durable_seq <= seq) {
				log->cil_seq++;
				rlfs_log_flushed(log);
			}
			rlfs_busy_clear_durable(mp, mp->trans_seq);
			return 0;
		}
	}
	if (seq >= log->durable_seq) {
		t->flush = true;
		t->log_seq = log->cil_seq;   /* every pushed context */
	} else {
		/* durable: the file data written before the fsync only */
		t->flush = mp->data_flushed < data_target;
	}
	return 0;
}

int rlfs_log_force_seq_end(struct rlfs_mount *mp, const struct rlfs_log_ticket *t)
{
	struct rlfs_log *log = mp->log;
	if (!t->flush)
		return 0;
	int err = 0;
	rlfs_meta_lock(mp);
	for (;;) {
		if (t->log_seq ? log->durable_seq >= t->log_seq :
				 mp->data_flushed >= t->data_target) {
			/* covered (maybe by another flush, or by a path that
			 * flushed under meta_lock and left busy extents) */
			if (log->durable_seq >= log->cil_seq)
				rlfs_busy_clear_durable(mp, log->pushed_trans_seq);
			break;
		}
		if (mp->shutdown || log->failed) {
			err = -EIO;
			break;
		}
		if (log->flushing) {
			/* group commit: wait for the flush in flight, then see
			 * whether it covered this one */
			pthread_cond_wait(&log->flush_cv, &mp->meta_lock);
			continue;
		}
		/* what this flush covers: every checkpoint written and every
		 * data write counted so far, and the transactions in them */
		uint64_t cover = log->cil_seq, tseq = log->pushed_trans_seq;
		uint64_t dsnap = mp->data_dirty;
		err = flush_unlocked(mp);
		if (err)
			break;
		if (!t->counted && log->forced_push_seq != cover)
			log->stats.forces++;
		rlfs_data_flushed(mp, dsnap);
		if (log->durable_seq < cover) {
			if (log->cil_seq == cover)
				rlfs_log_flushed(log); /* nothing written since */
			else
				/* a checkpoint written meanwhile (after a flush
				 * of its own that made ours durable, or after
				 * another path flushed): it is not covered */
				log->durable_seq = cover;
			/* what the covered checkpoints freed may be reused */
			rlfs_busy_clear_durable(mp, tseq);
		}
	}
	pthread_mutex_unlock(&mp->meta_lock);
	return err;
}

/* One descriptor of a checkpoint being written, with what its segment is
 * made of (reflinkfs/format.h): an image's map + data, an intent's data;
 * bytes = 0 for CANCEL and DONE. */
struct ckpt_ent {
	struct rlfs_log_desc d;
	const uint8_t *map;         /* images: the dirty-chunk bitmap */
	const uint8_t *data;        /* images: the whole block; intents: payload */
	size_t bytes;               /* segment bytes */
};

static size_t intent_seg_bytes(const struct rlfs_log_ilog *il)
{
	return ((sizeof(struct rlfs_log_intent) + (size_t)il->count * il->item_bytes) + 7) & ~(size_t)7;
}

/* Write ent's segment at out (ent->bytes bytes). */
static void seg_format(uint32_t bs, const struct ckpt_ent *ent, uint8_t *out)
{
	if (!ent->map) {
		memcpy(out, ent->data, ent->bytes);
		return;
	}
	uint32_t mb = RLFS_LOG_MAP_BYTES(bs);
	memcpy(out, ent->map, mb);
	out += mb;
	for (uint32_t i = 0; i < bs / RLFS_LOG_CHUNK; i++)
		if (ent->map[i >> 3] & (1u << (i & 7))) {
			memcpy(out, ent->data + (size_t)i * RLFS_LOG_CHUNK, RLFS_LOG_CHUNK);
			out += RLFS_LOG_CHUNK;
		}
}

/* The chunks the LSN/crc stamp of the push changes join the image's map:
 * the block header's (chunk 0) of a BUF block; the first chunk of every
 * dinode slot that has a logged chunk (the slot's lsn and crc: an
 * unlogged slot keeps the disk's own lsn and crc, which match its
 * unchanged bytes). */
static void stamp_map(struct rlfs_mount *mp, struct rlfs_log_img *img)
{
	if (img->type == RLFS_LOG_ITEM_BUF) {
		map_set(img->map, 0);
	} else if (img->type == RLFS_LOG_ITEM_INODE) {
		uint32_t per = mp->inodesize / RLFS_LOG_CHUNK;
		for (uint32_t s = 0; per && s < mp->inopblock; s++) {
			bool dirty = false;
			for (uint32_t c = s * per; c < (s + 1) * per && !dirty; c++)
				dirty = img->map[c >> 3] & (1u << (c & 7));
			if (dirty)
				map_set(img->map, s * per);
		}
	}
}

/* Write the CIL as one checkpoint; flush unless !flush (then
 * log->unflushed says a flush is owed before anything relies on it).
 * Block images first, then intents, then dones: the order inside a
 * checkpoint does not matter (it is replayed whole or not at all). */
static int cil_push(struct rlfs_mount *mp, bool flush)
{
	struct rlfs_log *log = mp->log;
	if (!log || rlfs_log_cil_empty(log))
		return 0;
	if (log->failed)
		return -EIO;
	uint32_t ipr = log->items_per_rec, bs = mp->blocksize;
	uint64_t n = log->cil_count + log->cil_nintents + log->cil_ndones;
	struct ckpt_ent *ents = calloc(n, sizeof(*ents));
	struct rlfs_log_desc *items = calloc(ipr, sizeof(*items));
	if (!items || !ents) {
		free(items);
		free(ents);
		return -ENOMEM;
	}
	size_t ne = 0;
	uint64_t pbytes = 0;
	for (struct rlfs_log_img *img = log->cil_first; img; img = img->next) {
		if (img->data) {
			stamp_map(mp, img);
			/* an inode cluster joined and logged with no byte
			 * changed (nothing pending from earlier records
			 * either: their chunks join the map) has nothing to
			 * replay; recovery refuses an empty image item */
			if (rlfs_log_map_count(img->map, bs) == 0)
				continue;
		}
		rlfs_put64(ents[ne].d.fsbno, img->fsbno);
		rlfs_put16(ents[ne].d.type, img->type);
		if (!img->data) {
			ne++;
			continue;
		}
		uint32_t c = rlfs_log_map_count(img->map, bs);
		rlfs_put32(ents[ne].d.count, c);
		ents[ne].map = img->map;
		ents[ne].data = img->data;
		ents[ne].bytes = RLFS_LOG_MAP_BYTES(bs) + (size_t)c * RLFS_LOG_CHUNK;
		pbytes += ents[ne].bytes;
		ne++;
	}
	for (struct rlfs_log_ilog *il = log->cil_intents.first; il; il = il->next, ne++) {
		rlfs_put64(ents[ne].d.fsbno, il->id);
		rlfs_put16(ents[ne].d.type, RLFS_LOG_ITEM_INTENT);
		rlfs_put16(ents[ne].d.code, il->code);
		rlfs_put32(ents[ne].d.count, il->count);
		ents[ne].data = il->data;
		ents[ne].bytes = intent_seg_bytes(il);
		pbytes += ents[ne].bytes;
	}
	for (struct rlfs_log_ilog *il = log->cil_dones.first; il; il = il->next, ne++) {
		rlfs_put64(ents[ne].d.fsbno, il->id);
		rlfs_put16(ents[ne].d.type, RLFS_LOG_ITEM_DONE);
		rlfs_put16(ents[ne].d.code, il->code);
	}
	/* payload + headers (a record closes at ipr items or when the next
	 * segment does not fit in ipr blocks or before the end of the ring)
	 * + a block lost at a wrap + room for a tail record */
	uint64_t pblocks = (pbytes + bs - 1) / bs;
	uint64_t nrec = (n + ipr - 1) / ipr + pblocks / (ipr > 2 ? ipr - 2 : 1) + 2;
	uint64_t need = pblocks + 2 * nrec + 4;
	if (need > rlfs_log_space_blocks(log)) {
		/* a quarter of the ring free beyond this checkpoint, then
		 * everything if intents or relogs keep the tail back */
		uint64_t want = need + log->size_blocks / 4;
		int err = want < log->size_blocks ?
			  rlfs_log_ail_push_free(log, (uint32_t)want) : 0;
		if (!err && need > rlfs_log_space_blocks(log))
			err = rlfs_log_ail_push(log, UINT64_MAX);
		if (err) {
			free(items);
			free(ents);
			return err;
		}
	}
	if (need > rlfs_log_space_blocks(log)) {
		rlfs_warn("a checkpoint of %llu blocks does not fit in the log (%u blocks%s)",
			  (unsigned long long)need, log->size_blocks,
			  log->live_intents.first ? "; intents hold the tail" : "");
		free(items);
		free(ents);
		return -ENOSPC;
	}
	uint32_t save_cycle = log->head_cycle, save_block = log->head_block;
	uint64_t save_tail = log->tail_lsn;
	rlfs_log_head_wrap(log);
	uint64_t ckpt_lsn = rlfs_log_head_lsn(log);
	uint64_t tail = rlfs_log_ail_tail(log, ckpt_lsn);
	for (struct rlfs_log_img *img = log->cil_first; img; img = img->next)
		if (img->data)
			rlfs_log_stamp_lsn(mp, img->type, img->data, ckpt_lsn);
	int err = 0;
	size_t e = 0;
	if (flush)
		rlfs_progress(mp, RLFS_PROGRESS_META, 0, n);
	while (e < ne && !err) {
		rlfs_log_head_wrap(log);
		/* a record: the header block (header, descriptors, then the
		 * first segments) and up to min(room, ipr) more blocks */
		uint32_t room = log->size_blocks - log->head_block - 1;
		size_t blocks = 1 + (size_t)RLFS_MIN(room, ipr), pb = 0;
		size_t e0 = e;
		uint32_t ni = 0;
		while (e < ne && ni < ipr &&
		       sizeof(struct rlfs_log_rec) + (ni + 1) * sizeof(struct rlfs_log_desc) +
		       pb + ents[e].bytes <= blocks * bs) {
			pb += ents[e].bytes;
			ni++;
			e++;
		}
		if (ni == 0) {
			/* cannot happen: a segment is at most a block plus its
			 * bitmap, and a record has room for two blocks */
			err = -EINVAL;
			break;
		}
		/* the segments go straight into the record buffer */
		uint8_t *pay = log->wbuf + sizeof(struct rlfs_log_rec) +
			       (size_t)ni * sizeof(struct rlfs_log_desc), *out = pay;
		for (size_t k = e0; k < e; k++) {
			items[k - e0] = ents[k].d;
			if (ents[k].bytes)
				seg_format(bs, &ents[k], out);
			out += ents[k].bytes;
		}
		err = rlfs_log_write_rec(log, log->seq, e < ne ? 0 : RLFS_LREC_COMMIT, ckpt_lsn,
					 tail, items, ni, pay, pb);
	}
	free(items);
	free(ents);
	if (!err && flush) {
		rlfs_progress(mp, RLFS_PROGRESS_SYNC, 0, 1);
		err = rlfs_dev_flush(mp->dev);
	}
	if (err) {
		/* the same checkpoint goes again at the next force */
		log->head_cycle = save_cycle;
		log->head_block = save_block;
		log->tail_lsn = save_tail;
		return err;
	}
	log->seq++;
	log->cil_seq++;
	log->pushed_trans_seq = mp->trans_seq;
	if (flush)
		rlfs_log_flushed(log);
	else {
		if (!log->unflushed)
			log->unflushed_tail = UINT64_MAX;
		log->unflushed = true;
		log->unflushed_tail = RLFS_MIN(log->unflushed_tail, tail);
	}
	log->stats.ckpts_written++;
	/* flushed, the whole CIL was every committed change: what they
	 * freed may be reused (busy.h), whoever forced (fsync, sync, an
	 * intent in testing, recovery, quiesce) */
	if (flush)
		rlfs_busy_clear_durable(mp, mp->trans_seq);
	struct rlfs_log_img *first = log->cil_first;
	for (struct rlfs_log_img *img = first; img; img = img->next)
		img->bp->log_cil = NULL;
	log->cil_first = log->cil_last = NULL;
	log->cil_count = 0;
	rlfs_log_ail_insert(log, first, ckpt_lsn);
	rlfs_log_intents_pushed(log, ckpt_lsn);
	return 0;
}

int rlfs_log_write_unlogged(struct rlfs_mount *mp, uint64_t fsbno)
{
	struct rlfs_log *log = mp->log;
	struct rlfs_buf *bp;
	int err = rlfs_buf_read(mp, fsbno, &rlfs_sb_buf_ops, RLFS_OWNER_ANY, &bp);
	if (err)
		return err;
	uint8_t *copy = NULL;
	if (posix_memalign((void **)&copy, 64, mp->blocksize)) {
		rlfs_buf_relse(bp);
		rlfs_buf_settle(mp, bp);
		return -ENOMEM;
	}
	memcpy(copy, bp->data, mp->blocksize);
	rlfs_cksum_update(copy, mp->blocksize, RLFS_CRC_OFF);
	err = rlfs_dev_pwrite(mp->dev, copy, mp->blocksize, fsbno << mp->blocklog);
	if (!err)
		err = rlfs_dev_flush(mp->dev);
	free(copy);
	if (!err && bp->log_cil && !bp->log_ail)
		cil_del(log, bp->log_cil);
	rlfs_buf_relse(bp);
	rlfs_buf_settle(mp, bp);
	return err;
}

/*
 * log_ail.c: the active item list (see log.h).
 *
 * Images of checkpoints that are not yet written in place, one per
 * block, ordered by the LSN of their checkpoint (a block logged again
 * moves to the end with its newer image).  The oldest LSN in the AIL is
 * the log's tail: every checkpoint before it is entirely in place.  A
 * checkpoint written without a flush (a background push) joins at once,
 * but an image it replaced holds the tail at the replaced image's LSN
 * until the next flush (log->relog_hold_lsn): until then the older
 * checkpoint is the only durable copy of that block's change.  A push
 * writes images in place (the durable image, never the live buffer, which
 * may hold changes not yet in the log), flushes, then writes a small
 * record carrying the new tail so the space behind it can be reused, and
 * unpins the buffers.  Model: xfs_trans_ail.c (xfsaild_push), without a
 * thread: pushes run when the ring is short of space and at unmount.
 */
#include "log.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dev.h"
#include "reflinkfs/fs.h"

static void ail_unlink(struct rlfs_log *log, struct rlfs_log_img *img)
{
	if (img->prev)
		img->prev->next = img->next;
	else
		log->ail_first = img->next;
	if (img->next)
		img->next->prev = img->prev;
	else
		log->ail_last = img->prev;
	img->prev = img->next = NULL;
	log->ail_count--;
}

/* An image just checkpointed: if the buffer holds the same content (no
 * transaction has it; compared after giving it the same LSN stamp), the
 * image gives its copy back and borrows the buffer's (log.h). */
static void try_borrow(struct rlfs_log *log, struct rlfs_log_img *img)
{
	struct rlfs_mount *mp = log->mp;
	struct rlfs_buf *bp = img->bp;
	if (!img->data || bp->tp)
		return;
	rlfs_log_stamp_lsn(mp, img->type, bp->data, img->lsn);
	if (memcmp(bp->data, img->data, mp->blocksize))
		return;
	rlfs_blk_put(mp, img->data);
	img->data = NULL;
	img->borrowed = true;
	log->stats.ail_borrowed++;
}

const void *rlfs_log_img_content(const struct rlfs_log_img *img)
{
	return img->borrowed ? img->bp->data : img->data;
}

int rlfs_log_buf_unborrow(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	struct rlfs_log_img *img = bp->log_ail;
	if (!img || !img->borrowed)
		return 0;
	uint8_t *data = rlfs_blk_get(mp);
	if (!data)
		return -ENOMEM;
	memcpy(data, bp->data, mp->blocksize);
	img->data = data;
	img->borrowed = false;
	mp->log->stats.ail_unborrowed++;
	return 0;
}

void rlfs_log_ail_insert(struct rlfs_log *log, struct rlfs_log_img *first, uint64_t ckpt_lsn)
{
	struct rlfs_log_img *img = first, *next;
	for (; img; img = next) {
		next = img->next;
		struct rlfs_log_img *old = img->bp->log_ail;
		if (old) {
			/* not flushed: the old checkpoint stays the block's
			 * durable copy, and the tail must not pass it */
			if (log->unflushed && (!log->relog_hold_lsn || old->lsn < log->relog_hold_lsn))
				log->relog_hold_lsn = old->lsn;
			ail_unlink(log, old);
			rlfs_log_img_put(log, old);
		}
		img->lsn = ckpt_lsn;
		img->next = NULL;
		img->prev = log->ail_last;
		if (log->ail_last)
			log->ail_last->next = img;
		else
			log->ail_first = img;
		log->ail_last = img;
		log->ail_count++;
		img->bp->log_ail = img;
		try_borrow(log, img);
	}
}

uint64_t rlfs_log_ail_tail(struct rlfs_log *log, uint64_t if_empty)
{
	uint64_t t = rlfs_log_intent_tail(log);
	if (log->ail_first && log->ail_first->lsn < t)
		t = log->ail_first->lsn;
	if (log->relog_hold_lsn && log->relog_hold_lsn < t)
		t = log->relog_hold_lsn;
	t = t == UINT64_MAX ? if_empty : t;
	if (log->unflushed && log->unflushed_tail < t)
		t = log->unflushed_tail;
	return t;
}

static int cmp_img_fsbno(const void *a, const void *b)
{
	const struct rlfs_log_img *x = *(struct rlfs_log_img *const *)a;
	const struct rlfs_log_img *y = *(struct rlfs_log_img *const *)b;
	return x->fsbno < y->fsbno ? -1 : x->fsbno > y->fsbno;
}

/* The LSN d blocks behind the head (d < the ring's size). */
static uint64_t lsn_behind_head(const struct rlfs_log *log, uint32_t d)
{
	if (d <= log->head_block)
		return RLFS_LSN(log->head_cycle, log->head_block - d);
	if (log->head_cycle <= 1)
		return RLFS_LSN(log->head_cycle, 0);  /* before the first record */
	return RLFS_LSN(log->head_cycle - 1, log->size_blocks - (d - log->head_block));
}

int rlfs_log_ail_push_free(struct rlfs_log *log, uint32_t want_blocks)
{
	if (rlfs_log_space_blocks(log) >= want_blocks)
		return 0;
	if ((uint64_t)want_blocks + 2 >= log->size_blocks)
		return rlfs_log_ail_push(log, UINT64_MAX);
	/* the tail may stay up to keep blocks behind the head */
	uint32_t keep = log->size_blocks - 1 - want_blocks;
	return rlfs_log_ail_push(log, lsn_behind_head(log, keep));
}

int rlfs_log_ail_push(struct rlfs_log *log, uint64_t target_lsn)
{
	struct rlfs_mount *mp = log->mp;
	size_t n = 0;
	for (struct rlfs_log_img *img = log->ail_first; img && img->lsn < target_lsn;
	     img = img->next)
		n++;
	if (n == 0) {
		/* nothing to write in place; live intents whose done has
		 * become durable may still let the tail move (a full log
		 * waits for that, never for ever: the dones are written) */
		uint64_t head = rlfs_log_head_lsn(log);
		if (target_lsn != UINT64_MAX || !log->live_intents.first)
			return 0;
		if (log->unflushed) {
			int ferr = rlfs_dev_flush(mp->dev);
			if (ferr)
				return ferr;
			rlfs_log_flushed(log);
		}
		uint64_t t = rlfs_log_ail_tail(log, head);
		if (t <= log->tail_lsn)
			return 0;
		rlfs_log_head_wrap(log);
		return rlfs_log_write_tail(log, 0, rlfs_log_ail_tail(log, rlfs_log_head_lsn(log)));
	}
	if (log->unflushed) {
		/* write-ahead: the checkpoints these images came in first */
		int ferr = rlfs_dev_flush(mp->dev);
		if (ferr)
			return ferr;
		rlfs_log_flushed(log);
	}
	struct rlfs_log_img **list = malloc(n * sizeof(*list));
	if (!list)
		return -ENOMEM;
	size_t i = 0;
	for (struct rlfs_log_img *img = log->ail_first; i < n; img = img->next)
		list[i++] = img;
	qsort(list, n, sizeof(*list), cmp_img_fsbno);
	uint64_t *fsbnos = malloc(n * sizeof(*fsbnos));
	const void **datas = malloc(n * sizeof(*datas));
	if (!fsbnos || !datas) {
		free(fsbnos);
		free(datas);
		free(list);
		return -ENOMEM;
	}
	uint64_t written = 0;
	for (i = 0; i < n; i++) {
		fsbnos[i] = list[i]->fsbno;
		/* NULL: cancelled, the block was freed */
		datas[i] = rlfs_log_img_content(list[i]);
		written += datas[i] != NULL;
	}
	int err = rlfs_buf_write_blocks(mp, n, fsbnos, datas, NULL, NULL);
	free(fsbnos);
	free(datas);
	rlfs_progress(mp, RLFS_PROGRESS_SYNC, 0, 1);
	if (!err)
		err = rlfs_dev_flush(mp->dev);
	rlfs_progress(mp, RLFS_PROGRESS_IDLE, 0, 0);
	if (err) {
		free(list);
		return err;
	}
	for (i = 0; i < n; i++)
		ail_unlink(log, list[i]);
	/* the new tail must be durable before the space behind it is reused
	 * (and before a cancelled block's buffer can go) */
	rlfs_log_head_wrap(log);
	err = rlfs_log_write_tail(log, 0, rlfs_log_ail_tail(log, rlfs_log_head_lsn(log)));
	for (i = 0; i < n; i++) {
		struct rlfs_log_img *img = list[i];
		struct rlfs_buf *bp = img->bp;
		bp->log_ail = NULL;
		rlfs_log_img_put(log, img);
		rlfs_buf_settle(mp, bp);
	}
	free(list);
	log->stats.ail_pushes++;
	log->stats.inplace_blocks += written;
	return err;
}

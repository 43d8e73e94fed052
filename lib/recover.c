/*
 * recover.c: log recovery (see log.h, docs/DESIGN.md "Log").
 *
 * 1. Read the whole ring and find every valid record header (magic,
 *    version, uuid, crc, own LSN at its block).  The newest tail_lsn among
 *    them is where replay starts: a record's tail is a true statement when
 *    written (every checkpoint before it is in place and flushed), and
 *    tails only grow.  The largest seq gives the next sequence number.
 * 2. Walk the records from the tail: each must sit at the LSN the previous
 *    one ends at (wrapping as the writer does), have a good payload crc,
 *    and continue the open checkpoint's seq or start a newer one.  The walk
 *    stops at the first record that does not; an open (uncommitted)
 *    checkpoint at the end is torn and dropped.  The head is the end of
 *    the last complete checkpoint - unless a valid record of a later
 *    checkpoint exists past the stop (later_record): then the stop is
 *    corruption, not a torn write, and recovery fails (-EUCLEAN, "log
 *    corrupt at block N ..."; fsck -L is the way out).
 * 3. Replay the complete checkpoints in LSN order: an image item (the
 *    block's dirty 128-byte chunks, format version 2; the whole block in
 *    version 1) is copied over the block read from the device and written
 *    back (xlog_recover_do_reg_buffer); it is skipped if a cancel of its
 *    block comes in a later checkpoint (the block was freed and may hold
 *    another owner's data now), or if the block on disk carries an LSN at
 *    least as new (same type, block and uuid, good crc).  A record of a
 *    block carries every chunk changed since the block was last written
 *    in place, so later records still apply over a disk copy newer than
 *    earlier ones.
 *    Then flush.  Replay is idempotent: a crash during it replays again.
 *    The same pass collects the INTENT items of those checkpoints and
 *    drops every one that has a DONE in them: what is left (scan->intents,
 *    in LSN order) is work that may not have happened; the mount finishes
 *    it once it is up (rlfs_log_recover_intents, log_intent.c) before the
 *    tail may move past it.
 * Model: xfs_log_recover.c (xlog_find_tail, xlog_verify_head,
 * xlog_do_recovery_pass, the cancelled-buffer table of
 * xlog_recover_buf_pass1, the intent items of
 * xlog_recover_intent_item and xlog_recover_process_intents).
 */
#include "log.h"

#include <stdlib.h>
#include <string.h>

#include "dev.h"

bool rlfs_log_rec_valid(struct rlfs_mount *mp, const void *blk, uint32_t block,
			uint32_t size_blocks)
{
	const struct rlfs_log_rec *rec = blk;
	uint32_t v = rlfs_get32(rec->version);
	if (rlfs_get32(rec->magic) != RLFS_LOG_MAGIC ||
	    (v != RLFS_LOG_VERSION && v != RLFS_LOG_VERSION_WHOLE) ||
	    memcmp(rec->uuid, mp->uuid, RLFS_UUID_SIZE) != 0)
		return false;
	uint64_t lsn = rlfs_get64(rec->lsn);
	if (RLFS_LSN_BLOCK(lsn) != block || RLFS_LSN_CYCLE(lsn) == 0)
		return false;
	if ((uint64_t)block + 1 + rlfs_get32(rec->len_blocks) > size_blocks ||
	    rlfs_get32(rec->nitems) > rlfs_log_items_per_rec(mp->blocksize))
		return false;
	return rlfs_cksum_verify(blk, mp->blocksize, offsetof(struct rlfs_log_rec, crc));
}

static bool is_image(uint16_t type)
{
	return type == RLFS_LOG_ITEM_BUF || type == RLFS_LOG_ITEM_INODE ||
	       type == RLFS_LOG_ITEM_RAW;
}

/* Items that own a payload segment: images and intents. */
static bool has_payload(uint16_t type)
{
	return is_image(type) || type == RLFS_LOG_ITEM_INTENT;
}

int rlfs_log_rec_segs(struct rlfs_mount *mp, const uint8_t *blk, struct rlfs_log_seg *segs)
{
	const struct rlfs_log_rec *rec = (const void *)blk;
	uint32_t bs = mp->blocksize, mb = RLFS_LOG_MAP_BYTES(bs), nchunks = bs / RLFS_LOG_CHUNK;
	uint32_t len = rlfs_get32(rec->len_blocks), n = rlfs_get32(rec->nitems);
	bool whole = rlfs_get32(rec->version) == RLFS_LOG_VERSION_WHOLE;
	const struct rlfs_log_desc *it = (const void *)(blk + sizeof(*rec));
	/* version 2: the payload follows the descriptors in the header
	 * block; version 1: whole blocks after the header block */
	size_t hdr = sizeof(*rec) + (size_t)n * sizeof(*it);
	const uint8_t *pay = whole ? blk + bs : blk + hdr;
	size_t plen = (size_t)len * bs + (whole ? 0 : bs - hdr), off = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint16_t t = rlfs_get16(it[i].type);
		memset(&segs[i], 0, sizeof(segs[i]));
		if (!has_payload(t)) {
			if (t != RLFS_LOG_ITEM_CANCEL && t != RLFS_LOG_ITEM_DONE)
				return -EUCLEAN;
			continue;
		}
		size_t bytes;
		if (whole) {
			/* version 1: one whole block per item */
			bytes = bs;
		} else if (is_image(t)) {
			if (off + mb > plen)
				return -EUCLEAN;
			const uint8_t *map = pay + off;
			uint32_t c = rlfs_log_map_count(map, bs);
			for (uint32_t b = nchunks; b < mb * 8; b++)
				if (map[b >> 3] & (1u << (b & 7)))
					return -EUCLEAN; /* a chunk past the block */
			if (c == 0 || c != rlfs_get32(it[i].count))
				return -EUCLEAN;
			segs[i].map = map;
			off += mb;
			bytes = (size_t)c * RLFS_LOG_CHUNK;
		} else {
			const struct rlfs_log_intent *h = (const void *)(pay + off);
			if (off + sizeof(*h) > plen)
				return -EUCLEAN;
			bytes = sizeof(*h) + (size_t)rlfs_get32(h->count) * rlfs_get16(h->item_bytes);
			if (bytes > bs)
				return -EUCLEAN;
			bytes = (bytes + 7) & ~(size_t)7;
		}
		if (off + bytes > plen)
			return -EUCLEAN;
		segs[i].data = pay + off;
		segs[i].bytes = (uint32_t)bytes;
		off += bytes;
	}
	/* the segments end in the last block of the record */
	if (len && off + bs <= plen)
		return -EUCLEAN;
	return 0;
}

void rlfs_log_apply_seg(uint32_t bs, uint8_t *block, const struct rlfs_log_seg *seg)
{
	if (!seg->map) {
		memcpy(block, seg->data, bs);
		return;
	}
	const uint8_t *src = seg->data;
	for (uint32_t i = 0; i < bs / RLFS_LOG_CHUNK; i++)
		if (seg->map[i >> 3] & (1u << (i & 7))) {
			memcpy(block + (size_t)i * RLFS_LOG_CHUNK, src, RLFS_LOG_CHUNK);
			src += RLFS_LOG_CHUNK;
		}
}

/* Payload crc good and the descriptors consistent with the payload. */
static bool rec_body_ok(struct rlfs_mount *mp, const uint8_t *blk, struct rlfs_log_seg *segs)
{
	const struct rlfs_log_rec *rec = (const void *)blk;
	uint32_t len = rlfs_get32(rec->len_blocks);
	if (rlfs_crc32c(blk + mp->blocksize, (size_t)len * mp->blocksize) !=
	    rlfs_get32(rec->payload_crc))
		return false;
	return rlfs_log_rec_segs(mp, blk, segs) == 0;
}

/* LSN of the block on disk if it is the same structure as the image (same
 * magic, block/inode number, uuid, good crc), else 0. */
static uint64_t disk_lsn(struct rlfs_mount *mp, uint16_t type, const uint8_t *disk,
			 const uint8_t *img)
{
	if (type == RLFS_LOG_ITEM_BUF) {
		const struct rlfs_blkhdr *d = (const void *)disk, *i = (const void *)img;
		if (rlfs_get32(d->magic) != rlfs_get32(i->magic) ||
		    rlfs_get64(d->blkno) != rlfs_get64(i->blkno) ||
		    memcmp(d->uuid, i->uuid, RLFS_UUID_SIZE) != 0 ||
		    !rlfs_cksum_verify(disk, mp->blocksize, RLFS_CRC_OFF))
			return 0;
		return rlfs_get64(d->lsn);
	}
	if (type == RLFS_LOG_ITEM_INODE) {
		const struct rlfs_dinode *d = (const void *)disk, *i = (const void *)img;
		if (rlfs_get32(d->magic) != RLFS_DINODE_MAGIC ||
		    rlfs_get64(d->ino) != rlfs_get64(i->ino) ||
		    memcmp(d->uuid, i->uuid, RLFS_UUID_SIZE) != 0 ||
		    !rlfs_cksum_verify(disk, mp->inodesize, offsetof(struct rlfs_dinode, crc)))
			return 0;
		return rlfs_get64(d->lsn);
	}
	return 0;
}

struct cancel {
	uint64_t fsbno, lsn;
};

static int cmp_cancel(const void *a, const void *b)
{
	const struct cancel *x = a, *y = b;
	if (x->fsbno != y->fsbno)
		return x->fsbno < y->fsbno ? -1 : 1;
	return x->lsn < y->lsn ? -1 : x->lsn > y->lsn;
}

/* Newest cancel LSN of fsbno, or 0. */
static uint64_t cancel_lsn(const struct cancel *c, size_t n, uint64_t fsbno)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (c[mid].fsbno <= fsbno)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 && c[lo - 1].fsbno == fsbno ? c[lo - 1].lsn : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* An INTENT item of a replayed checkpoint: check its payload head against
 * the descriptor and append a copy to *tailp.  0, -EUCLEAN, -ENOMEM. */
static int collect_intent(struct rlfs_mount *mp, const struct rlfs_log_desc *d,
			  const struct rlfs_log_seg *seg, uint64_t ckpt_lsn,
			  struct rlfs_log_ilog ***tailp)
{
	const uint8_t *payload = seg->data;
	const struct rlfs_log_intent *h = (const void *)payload;
	uint64_t id = rlfs_get64(d->fsbno);
	uint32_t count = rlfs_get32(d->count);
	uint16_t ib = rlfs_get16(h->item_bytes);
	if (id == 0 || rlfs_get64(h->intent_id) != id || rlfs_get16(h->code) != rlfs_get16(d->code) ||
	    rlfs_get32(h->count) != count ||
	    (uint64_t)count * ib + sizeof(*h) > mp->blocksize)
		return -EUCLEAN;
	struct rlfs_log_ilog *il = calloc(1, sizeof(*il));
	if (!il)
		return -ENOMEM;
	il->data = calloc(1, mp->blocksize);
	if (!il->data) {
		free(il);
		return -ENOMEM;
	}
	memcpy(il->data, payload, RLFS_MIN(seg->bytes, mp->blocksize));
	il->type = RLFS_LOG_ITEM_INTENT;
	il->code = rlfs_get16(d->code);
	il->count = count;
	il->item_bytes = ib;
	il->id = id;
	il->lsn = ckpt_lsn;
	**tailp = il;
	*tailp = &il->next;
	return 0;
}

/* Why the record expected at a walk position is not there (header
 * checks of rlfs_log_rec_valid, in its order). */
static const char *rec_stop_reason(struct rlfs_mount *mp, const uint8_t *blk)
{
	const struct rlfs_log_rec *rec = (const void *)blk;
	if (rlfs_get32(rec->magic) != RLFS_LOG_MAGIC)
		return "no record header (bad magic)";
	if (rlfs_get32(rec->version) != RLFS_LOG_VERSION ||
	    memcmp(rec->uuid, mp->uuid, RLFS_UUID_SIZE) != 0)
		return "bad record header (version or uuid)";
	if (!rlfs_cksum_verify(blk, mp->blocksize, offsetof(struct rlfs_log_rec, crc)))
		return "checksum mismatch";
	return "record of another position or cycle (stale)";
}

/* The record header in ring block b, or NULL if that block holds no
 * valid header (magic, version, uuid, own position, crc). */
static const struct rlfs_log_rec *ring_rec(struct rlfs_mount *mp, const uint8_t *ring,
					   uint32_t b, uint32_t size_blocks)
{
	const uint8_t *p = ring + ((size_t)b << mp->blocklog);
	const struct rlfs_log_rec *rec = (const void *)p;
	if (rlfs_get32(rec->magic) != RLFS_LOG_MAGIC ||
	    !rlfs_log_rec_valid(mp, p, b, size_blocks))
		return NULL;
	return rec;
}

/*
 * The head check (xlog_verify_head): the walk from the tail stopped at
 * LSN cur, with the records up to it accepted (seen: the seq of the open
 * checkpoint, or of the last complete one).  The writer never has more
 * than one checkpoint in flight: it flushes before it starts a checkpoint
 * while an earlier one is unflushed (rlfs_log_write_rec), so a record
 * written after the one at cur was written after a flush that made the
 * record at cur durable.  Returns the LSN of a valid record header that
 * proves such a later write - LSN above cur, seq above seen (records of an
 * older pass or left beyond an earlier recovered head have smaller seqs)
 * and a checkpoint other than inflight_lsn, the one the record at cur
 * belongs to (its other records may survive a torn write) - or 0: the
 * stop is a torn write of the last checkpoint, and the head moves back
 * before it.  XFS bounds the torn region by the iclogs that can be in
 * flight (XLOG_MAX_ICLOGS); ours is one checkpoint.
 */
static uint64_t later_record(struct rlfs_mount *mp, const uint8_t *ring, uint32_t size_blocks,
			     uint64_t cur, uint64_t seen, uint64_t inflight_lsn)
{
	for (uint32_t b = 0; b < size_blocks; b++) {
		const struct rlfs_log_rec *rec = ring_rec(mp, ring, b, size_blocks);
		if (!rec)
			continue;
		if (rlfs_get64(rec->lsn) > cur && rlfs_get64(rec->seq) > seen &&
		    rlfs_get64(rec->ckpt_lsn) != inflight_lsn)
			return rlfs_get64(rec->lsn);
	}
	return 0;
}

/*
 * The clean-log shortcut (XFS finds its head by a binary search over the
 * cycle numbers it stamps in every sector; our payload blocks carry none,
 * so the whole ring is read instead, 64 MiB for a large filesystem).  A
 * clean unmount stores its unmount record's LSN in the superblock
 * (sb.log_clean_lsn, mp->log_clean_lsn while the state is CLEAN).  That
 * record must be valid where the hint says, of this version, needing
 * nothing before it (tail = its own LSN, no items), and the block where
 * the next record would go must not hold the next record (a later writer
 * -- e.g. an older binary that kept the hint -- starts exactly there).
 * Then the scan is what the full walk would find: tail and the start of
 * replay at the record, the head after it, nothing to replay.  Two block
 * reads; false (read the whole ring) if anything disagrees.
 */
static bool clean_head(struct rlfs_mount *mp, uint64_t start_fsbno, uint32_t size_blocks,
		       uint64_t hint, struct rlfs_log_scan *scan)
{
	uint32_t b = RLFS_LSN_BLOCK(hint), c = RLFS_LSN_CYCLE(hint);
	if (c == 0 || (uint64_t)b + RLFS_LOG_MIN_REC_BLOCKS > size_blocks)
		return false;
	uint8_t *blk = NULL;
	if (posix_memalign((void **)&blk, 4096, mp->blocksize))
		return false;
	bool ok = false;
	const struct rlfs_log_rec *rec = (const void *)blk;
	if (rlfs_dev_pread(mp->dev, blk, mp->blocksize, (start_fsbno + b) << mp->blocklog) ||
	    !rlfs_log_rec_valid(mp, blk, b, size_blocks) ||
	    rlfs_get32(rec->version) != RLFS_LOG_VERSION || rlfs_get64(rec->lsn) != hint ||
	    rlfs_get64(rec->tail_lsn) != hint || rlfs_get32(rec->nitems) != 0 ||
	    (rlfs_get32(rec->flags) & (RLFS_LREC_UNMOUNT | RLFS_LREC_COMMIT)) !=
		    (RLFS_LREC_UNMOUNT | RLFS_LREC_COMMIT))
		goto out;
	uint64_t seq = rlfs_get64(rec->seq);
	uint32_t nb = b + 1 + rlfs_get32(rec->len_blocks);
	uint64_t next = nb >= size_blocks ? RLFS_LSN(c + 1, 0) : RLFS_LSN(c, nb);
	if ((uint64_t)RLFS_LSN_BLOCK(next) + RLFS_LOG_MIN_REC_BLOCKS > size_blocks)
		next = RLFS_LSN(RLFS_LSN_CYCLE(next) + 1, 0);
	uint32_t n = RLFS_LSN_BLOCK(next);
	if (rlfs_dev_pread(mp->dev, blk, mp->blocksize, (start_fsbno + n) << mp->blocklog))
		goto out;
	/* (rec now points at block n) */
	if (rlfs_log_rec_valid(mp, blk, n, size_blocks) && rlfs_get64(rec->lsn) == next)
		goto out; /* written after the clean unmount: read everything */
	memset(scan, 0, sizeof(*scan));
	scan->tail_lsn = hint;
	scan->head_lsn = next;
	scan->next_seq = seq + 1;
	scan->from_hint = true;
	ok = true;
out:
	free(blk);
	return ok;
}

/* One record of a complete checkpoint, for the replay. */
struct walked {
	uint32_t block;
	uint64_t ckpt_lsn;
};

int rlfs_log_recover(struct rlfs_mount *mp, uint64_t start_fsbno, uint32_t size_blocks,
		     bool replay, struct rlfs_log_scan *scan, struct rlfs_log_stats *stats)
{
	uint32_t bs = mp->blocksize;
	size_t log_bytes = (size_t)size_blocks << mp->blocklog;
	uint8_t *ring = NULL, *disk = NULL;
	struct walked *recs = NULL;
	struct cancel *cancels = NULL;
	uint64_t *dones = NULL;
	size_t ndones = 0;
	struct rlfs_log_ilog **itail = &scan->intents;
	uint8_t *nblk = NULL;
	struct rlfs_log_seg *segs = NULL;
	int err = 0;

	memset(scan, 0, sizeof(*scan));
	if (size_blocks < RLFS_LOG_MIN_REC_BLOCKS || start_fsbno == 0 ||
	    start_fsbno + size_blocks > mp->dblocks)
		return rlfs_corrupt(mp, start_fsbno, "log", "log of %u blocks at fsbno %llu "
				    "does not fit the filesystem", size_blocks,
				    (unsigned long long)start_fsbno);
	if (mp->log_clean_lsn && clean_head(mp, start_fsbno, size_blocks, mp->log_clean_lsn, scan))
		return 0;
	if (posix_memalign((void **)&ring, 4096, log_bytes))
		return -ENOMEM;
	segs = calloc(rlfs_log_items_per_rec(bs) + 1, sizeof(*segs));
	if (!segs) {
		err = -ENOMEM;
		goto out;
	}
	err = rlfs_dev_pread(mp->dev, ring, log_bytes, start_fsbno << mp->blocklog);
	if (err)
		goto out;

	/* 1. every valid header: newest tail, largest seq */
	uint64_t max_tail = 0, max_seq = 0;
	bool found = false;
	for (uint32_t b = 0; b < size_blocks; b++) {
		const struct rlfs_log_rec *rec = ring_rec(mp, ring, b, size_blocks);
		if (!rec)
			continue;
		uint64_t t = rlfs_get64(rec->tail_lsn);
		if (RLFS_LSN_CYCLE(t) == 0 || RLFS_LSN_BLOCK(t) >= size_blocks ||
		    t > rlfs_get64(rec->lsn))
			continue;
		found = true;
		max_tail = RLFS_MAX(max_tail, t);
		max_seq = RLFS_MAX(max_seq, rlfs_get64(rec->seq));
	}
	if (!found) {
		err = rlfs_corrupt(mp, start_fsbno, "log", "no valid log record in the %u-block "
				   "log", size_blocks);
		goto out;
	}

	/* 2. walk from the tail */
	/* a record can be one block (a small checkpoint: payload in the
	 * header block), so up to one per block of the ring */
	recs = malloc(sizeof(*recs) * ((size_t)size_blocks + 2));
	if (!recs) {
		err = -ENOMEM;
		goto out;
	}
	size_t nrecs = 0, ncommitted = 0, ncancels = 0;
	uint64_t cur = max_tail, head = max_tail, walked = 0, last_seq = 0;
	uint64_t open_seq = 0, open_lsn = 0, open_items = 0;
	bool open = false, any_committed = false;
	const char *stop = NULL;    /* why the walk stopped before the ring's end */
	while (walked < size_blocks) {
		uint32_t b = RLFS_LSN_BLOCK(cur), c = RLFS_LSN_CYCLE(cur);
		if (b + RLFS_LOG_MIN_REC_BLOCKS > size_blocks) {
			walked += size_blocks - b;
			cur = RLFS_LSN(c + 1, 0);
			continue;
		}
		const uint8_t *p = ring + ((size_t)b << mp->blocklog);
		const struct rlfs_log_rec *rec = (const void *)p;
		if (!rlfs_log_rec_valid(mp, p, b, size_blocks) || rlfs_get64(rec->lsn) != cur) {
			stop = rec_stop_reason(mp, p);
			break;
		}
		if (!rec_body_ok(mp, p, segs)) {
			stop = "payload checksum mismatch or malformed ranges";
			break;
		}
		uint64_t seq = rlfs_get64(rec->seq);
		if (open ? seq != open_seq : (any_committed && seq <= last_seq)) {
			stop = "sequence out of order";
			break;
		}
		if (!open) {
			open = true;
			open_seq = seq;
			open_lsn = cur;
			open_items = 0;
		}
		recs[nrecs].block = b;
		recs[nrecs].ckpt_lsn = open_lsn;
		nrecs++;
		uint32_t nitems = rlfs_get32(rec->nitems);
		open_items += nitems;
		uint32_t len = rlfs_get32(rec->len_blocks);
		walked += 1 + len;
		cur = b + 1 + len >= size_blocks ? RLFS_LSN(c + 1, 0) : RLFS_LSN(c, b + 1 + len);
		if (rlfs_get32(rec->flags) & RLFS_LREC_COMMIT) {
			open = false;
			any_committed = true;
			last_seq = seq;
			head = cur;
			ncommitted = nrecs;
			if (open_items) {
				scan->ckpts++;
				scan->items += open_items;
			}
		}
	}
	if (stop) {
		/* the walk ended at cur: a torn write of the last checkpoint, or
		 * corruption if a later checkpoint was written after it */
		uint64_t seen = open ? open_seq : last_seq;
		uint64_t later = later_record(mp, ring, size_blocks, cur, seen,
					      open ? open_lsn : cur);
		if (later) {
			const struct rlfs_log_rec *lr = (const void *)(ring +
				((size_t)RLFS_LSN_BLOCK(later) << mp->blocklog));
			err = rlfs_corrupt(mp, start_fsbno + RLFS_LSN_BLOCK(cur), "log",
					   "log corrupt at block %u (cycle %u): %s; later records "
					   "exist (block %u, cycle %u, seq %llu); run `reflinkfs "
					   "fsck -L` to zero the log, losing the changes in it",
					   RLFS_LSN_BLOCK(cur), RLFS_LSN_CYCLE(cur), stop,
					   RLFS_LSN_BLOCK(later), RLFS_LSN_CYCLE(later),
					   (unsigned long long)rlfs_get64(lr->seq));
			goto out;
		}
	}
	scan->tail_lsn = max_tail;
	scan->head_lsn = head;
	scan->next_seq = max_seq + 1;
	scan->needs_replay = scan->ckpts > 0;
	if (!replay || !scan->needs_replay)
		goto out;

	/* 3. replay: cancels first, then the images in LSN order */
	cancels = malloc(sizeof(*cancels) * (scan->items + 1));
	dones = malloc(sizeof(*dones) * (scan->items + 1));
	if (!dones) {
		err = -ENOMEM;
		goto out;
	}
	if (posix_memalign((void **)&disk, 4096, bs))
		disk = NULL;
	if (posix_memalign((void **)&nblk, 4096, bs))
		nblk = NULL;
	if (!cancels || !disk || !nblk) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t r = 0; r < ncommitted; r++) {
		const uint8_t *p = ring + ((size_t)recs[r].block << mp->blocklog);
		const struct rlfs_log_rec *rec = (const void *)p;
		const struct rlfs_log_desc *it = (const void *)(p + sizeof(*rec));
		for (uint32_t i = 0; i < rlfs_get32(rec->nitems); i++)
			if (rlfs_get16(it[i].type) == RLFS_LOG_ITEM_CANCEL) {
				cancels[ncancels].fsbno = rlfs_get64(it[i].fsbno);
				cancels[ncancels].lsn = recs[r].ckpt_lsn;
				ncancels++;
			}
	}
	qsort(cancels, ncancels, sizeof(*cancels), cmp_cancel);
	uint64_t last_ckpt = 0;
	for (size_t r = 0; r < ncommitted && !err; r++) {
		const uint8_t *p = ring + ((size_t)recs[r].block << mp->blocklog);
		const struct rlfs_log_rec *rec = (const void *)p;
		const struct rlfs_log_desc *it = (const void *)(p + sizeof(*rec));
		uint64_t ckpt_lsn = recs[r].ckpt_lsn;
		if (rlfs_log_rec_segs(mp, p, segs)) { /* checked by the walk */
			err = -EUCLEAN;
			break;
		}
		if (ckpt_lsn != last_ckpt && rlfs_get32(rec->nitems)) {
			stats->replayed_ckpts++;
			last_ckpt = ckpt_lsn;
		}
		for (uint32_t i = 0; i < rlfs_get32(rec->nitems) && !err; i++) {
			uint16_t type = rlfs_get16(it[i].type);
			if (type == RLFS_LOG_ITEM_DONE || type == RLFS_LOG_ITEM_INTENT)
				scan->max_intent_id = RLFS_MAX(scan->max_intent_id,
							       rlfs_get64(it[i].fsbno));
			if (type == RLFS_LOG_ITEM_DONE) {
				dones[ndones++] = rlfs_get64(it[i].fsbno);
				continue;
			}
			if (!has_payload(type))
				continue;
			if (type == RLFS_LOG_ITEM_INTENT) {
				err = collect_intent(mp, &it[i], &segs[i], ckpt_lsn, &itail);
				if (err == -EUCLEAN)
					err = rlfs_corrupt(mp, start_fsbno, "log", "record at log "
							   "block %u: bad intent item %u",
							   recs[r].block, i);
				continue;
			}
			uint64_t fsbno = rlfs_get64(it[i].fsbno);
			if (fsbno == 0 && type != RLFS_LOG_ITEM_BUF)
				goto bad;
			if (fsbno >= mp->dblocks ||
			    (fsbno >= start_fsbno && fsbno < start_fsbno + size_blocks))
				goto bad;
			if (cancel_lsn(cancels, ncancels, fsbno) > ckpt_lsn) {
				stats->skipped_blocks++;
				continue;
			}
			/* the logged chunks over the block as it is on disk
			 * (whatever it holds: a block first logged in this
			 * log range is logged whole, so unlogged chunks are
			 * the disk's), unless the disk's copy is at least as
			 * new as this checkpoint (its header -- as the logged
			 * chunks leave it -- names the same structure and
			 * carries an LSN >= ckpt_lsn).  A newer record of the
			 * block carries every chunk changed since the disk's
			 * copy was written (log.h: rlfs_log_img.map), so a
			 * block newer than this record but older than a
			 * later one still gets the later one. */
			err = rlfs_dev_pread(mp->dev, disk, bs, fsbno << mp->blocklog);
			if (err)
				break;
			memcpy(nblk, disk, bs);
			rlfs_log_apply_seg(bs, nblk, &segs[i]);
			if (disk_lsn(mp, type, disk, nblk) >= ckpt_lsn) {
				stats->skipped_blocks++;
				continue;
			}
			err = rlfs_dev_pwrite(mp->dev, nblk, bs, fsbno << mp->blocklog);
			stats->replayed_blocks++;
			continue;
bad:
			err = rlfs_corrupt(mp, start_fsbno, "log", "record at log block %u logs "
					   "fsbno %llu, outside the filesystem or inside the log",
					   recs[r].block, (unsigned long long)fsbno);
		}
	}
	if (!err)
		err = rlfs_dev_flush(mp->dev);
	/* intents with a done in the replayed range are complete */
	if (!err && ndones) {
		qsort(dones, ndones, sizeof(*dones), cmp_u64);
		struct rlfs_log_ilog **pp = &scan->intents;
		while (*pp) {
			struct rlfs_log_ilog *il = *pp;
			if (bsearch(&il->id, dones, ndones, sizeof(*dones), cmp_u64)) {
				*pp = il->next;
				il->next = NULL;
				rlfs_log_ilog_free_list(il);
			} else {
				pp = &il->next;
			}
		}
	}
	if (err) {
		rlfs_log_ilog_free_list(scan->intents);
		scan->intents = NULL;
	}
out:
	free(dones);
	free(ring);
	free(disk);
	free(nblk);
	free(segs);
	free(recs);
	free(cancels);
	return err;
}

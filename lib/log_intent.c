/*
 * log_intent.c: intent and done items in the log (see log.h, defer.h,
 * docs/DESIGN.md "Intents").
 *
 * The deferred-operations framework (defer.c) calls mp->defer_log->intent
 * and ->done inside a transaction; here they become log items of that
 * transaction (struct ilog_item), which join the CIL only when the
 * transaction commits (rlfs_log_item_ops.committed): a cancelled
 * transaction logs nothing.  In the CIL:
 *   - an intent waits in log->cil_intents; if its done commits before the
 *     CIL is pushed, both vanish (the checkpoint is all-or-nothing, so the
 *     work is in it together with its completion: XFS's intent whiteouts);
 *   - a done of an intent already in the log waits in log->cil_dones.
 * A push writes them into the checkpoint (INTENT with a payload block,
 * DONE without; SPEC.md section 16) and the intents become *live*: each
 * holds the log tail at its checkpoint's LSN until its done is durable
 * (rlfs_log_intent_tail, used by rlfs_log_ail_tail), so recovery always
 * sees an intent whose work may not be complete.  Model: xfs_extfree_item.c
 * and xfs_refcount_item.c (the log-item half), xfs_log_cil.c (whiteouts),
 * xlog_recover_process_intents (recovery).
 */
#include "log.h"

#include <stdlib.h>
#include <string.h>

#include "defer.h"
#include "dev.h"
#include "trans.h"
#include "trans_resv.h"

/* An intent or done joined to a transaction. */
struct ilog_item {
	struct rlfs_log_item lip;
	struct rlfs_log_ilog *il;   /* handed to the CIL at commit */
	bool relog;                 /* an intent logged again (log_relog) */
};

void rlfs_log_ilog_free_list(struct rlfs_log_ilog *l)
{
	while (l) {
		struct rlfs_log_ilog *n = l->next;
		free(l->data);
		free(l);
		l = n;
	}
}

/* ---- the lists, and the index of intents by id ---- */

static void ilist_append(struct rlfs_log_ilist *l, struct rlfs_log_ilog *il)
{
	il->next = NULL;
	il->prev = l->last;
	if (l->last)
		l->last->next = il;
	else
		l->first = il;
	l->last = il;
}

static void ilist_remove(struct rlfs_log_ilist *l, struct rlfs_log_ilog *il)
{
	if (il->prev)
		il->prev->next = il->next;
	else
		l->first = il->next;
	if (il->next)
		il->next->prev = il->prev;
	else
		l->last = il->prev;
	il->next = il->prev = NULL;
}

#define IHASH_MIN_BITS 10

static size_t ihash_slot(uint64_t id, unsigned bits)
{
	return (size_t)((id * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

/* Twice the slots, or none more when memory is short (longer chains). */
static void ihash_grow(struct rlfs_log *log)
{
	unsigned bits = log->ihash_bits + 1;
	struct rlfs_log_ilog **t = calloc((size_t)1 << bits, sizeof(*t));
	if (!t)
		return;
	for (size_t i = 0; i < ((size_t)1 << log->ihash_bits); i++) {
		struct rlfs_log_ilog *il = log->ihash[i], *n;
		for (; il; il = n) {
			n = il->hnext;
			size_t slot = ihash_slot(il->id, bits);
			il->hnext = t[slot];
			t[slot] = il;
		}
	}
	free(log->ihash);
	log->ihash = t;
	log->ihash_bits = bits;
}

static void ihash_add(struct rlfs_log *log, struct rlfs_log_ilog *il)
{
	if (log->ihash_count >= ((size_t)1 << log->ihash_bits))
		ihash_grow(log);
	size_t slot = ihash_slot(il->id, log->ihash_bits);
	il->hnext = log->ihash[slot];
	log->ihash[slot] = il;
	log->ihash_count++;
}

static struct rlfs_log_ilog *ihash_find(const struct rlfs_log *log, uint64_t id)
{
	struct rlfs_log_ilog *il = log->ihash[ihash_slot(id, log->ihash_bits)];
	while (il && il->id != id)
		il = il->hnext;
	return il;
}

static void ihash_del(struct rlfs_log *log, struct rlfs_log_ilog *il)
{
	struct rlfs_log_ilog **pp = &log->ihash[ihash_slot(il->id, log->ihash_bits)];
	while (*pp && *pp != il)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = il->hnext;
		log->ihash_count--;
	}
	il->hnext = NULL;
}

int rlfs_log_intents_adopt(struct rlfs_log *log, struct rlfs_log_ilog *list)
{
	log->ihash = calloc((size_t)1 << IHASH_MIN_BITS, sizeof(*log->ihash));
	if (!log->ihash) {
		rlfs_log_ilog_free_list(list);
		return -ENOMEM;
	}
	log->ihash_bits = IHASH_MIN_BITS;
	struct rlfs_log_ilog *n;
	for (struct rlfs_log_ilog *il = list; il; il = n) {
		n = il->next;
		il->recovered = true;
		ilist_append(&log->live_intents, il);
		ihash_add(log, il);
	}
	return 0;
}

void rlfs_log_intents_free(struct rlfs_log *log)
{
	rlfs_log_ilog_free_list(log->cil_intents.first);
	rlfs_log_ilog_free_list(log->cil_dones.first);
	rlfs_log_ilog_free_list(log->live_intents.first);
	log->cil_intents = log->cil_dones = log->live_intents = (struct rlfs_log_ilist){ 0 };
	free(log->ihash);
	log->ihash = NULL;
	log->ihash_count = 0;
}

/* The transaction committed: the item joins the CIL. */
static void ilog_committed(struct rlfs_trans *tp, struct rlfs_log_item *lip)
{
	struct ilog_item *it = (struct ilog_item *)lip;
	struct rlfs_log *log = tp->mp->log;
	struct rlfs_log_ilog *il = it->il;
	it->il = NULL;
	if (!log) {
		rlfs_log_ilog_free_list(il);
		return;
	}
	if (il->type == RLFS_LOG_ITEM_INTENT) {
		il->in_cil = true;
		ilist_append(&log->cil_intents, il);
		ihash_add(log, il);
		log->cil_nintents++;
		log->capture_pending += il->capture;
		log->stats.intents_logged++;
		log->stats.intents_relogged += it->relog;
		return;
	}
	/* a done: whiteout if its intent has not reached the log yet */
	struct rlfs_log_ilog *intent = ihash_find(log, il->id);
	if (intent && intent->in_cil) {
		ilist_remove(&log->cil_intents, intent);
		ihash_del(log, intent);
		log->cil_nintents--;
		log->capture_pending -= intent->capture;
		log->stats.intents_whiteout++;
		rlfs_log_ilog_free_list(intent);
		rlfs_log_ilog_free_list(il);
		return;
	}
	ilist_append(&log->cil_dones, il);
	log->cil_ndones++;
}

static void ilog_release(struct rlfs_trans *tp, struct rlfs_log_item *lip)
{
	struct ilog_item *it = (struct ilog_item *)lip;
	rlfs_log_ilog_free_list(it->il);   /* cancelled: never logged */
	free(it);
}

static const struct rlfs_log_item_ops ilog_item_ops = {
	.release = ilog_release,
	.committed = ilog_committed,
};

static int ilog_join(struct rlfs_trans *tp, struct rlfs_log_ilog *il, bool relog)
{
	struct ilog_item *it = calloc(1, sizeof(*it));
	if (!it) {
		rlfs_log_ilog_free_list(il);
		return -ENOMEM;
	}
	it->lip.ops = &ilog_item_ops;
	it->il = il;
	it->relog = relog;
	rlfs_trans_add_item(tp, &it->lip);
	return 0;
}

/* mp->defer_log->intent: an INTENT item in tp.  -E2BIG if the items do not
 * fit one payload block (a type's max_items is too large). */
static int intent_join(struct rlfs_trans *tp, const struct rlfs_defer_type *type,
		       uint64_t intent_id, const void *items, unsigned count, size_t bytes,
		       bool relog)
{
	struct rlfs_mount *mp = tp->mp;
	if (!mp->log)
		return 0;
	if (bytes + sizeof(struct rlfs_log_intent) > mp->blocksize || type->item_bytes > 0xffff ||
	    bytes != type->item_bytes * count)
		return -E2BIG;
	struct rlfs_log_ilog *il = calloc(1, sizeof(*il));
	if (!il)
		return -ENOMEM;
	/* the segment's bytes only (a multiple of 8, as the CIL writes it):
	 * one small allocation per intent, not a block */
	size_t seg = (sizeof(struct rlfs_log_intent) + bytes + 7) & ~(size_t)7;
	il->data = calloc(1, seg);
	if (!il->data) {
		free(il);
		return -ENOMEM;
	}
	struct rlfs_log_intent *h = (struct rlfs_log_intent *)il->data;
	rlfs_put64(h->intent_id, intent_id);
	rlfs_put16(h->code, type->intent_code);
	rlfs_put16(h->item_bytes, (uint16_t)type->item_bytes);
	rlfs_put32(h->count, count);
	memcpy(il->data + sizeof(*h), items, bytes);
	il->type = RLFS_LOG_ITEM_INTENT;
	il->code = type->intent_code;
	il->count = count;
	il->item_bytes = (uint16_t)type->item_bytes;
	il->id = intent_id;
	il->capture = mp->log->capturing;
	return ilog_join(tp, il, relog);
}

static int log_intent(struct rlfs_trans *tp, const struct rlfs_defer_type *type,
		      uint64_t intent_id, const void *items, unsigned count, size_t bytes)
{
	return intent_join(tp, type, intent_id, items, count, bytes, false);
}

/* mp->defer_log->done: a DONE item in tp. */
static int log_done(struct rlfs_trans *tp, const struct rlfs_defer_type *type,
		    uint64_t intent_id)
{
	if (!tp->mp->log)
		return 0;
	struct rlfs_log_ilog *il = calloc(1, sizeof(*il));
	if (!il)
		return -ENOMEM;
	il->type = RLFS_LOG_ITEM_DONE;
	il->code = type->done_code;
	il->id = intent_id;
	return ilog_join(tp, il, false);
}

/* Blocks of log written from the start of the checkpoint at lsn to the
 * head (lsn not after the head). */
static uint64_t behind_head(const struct rlfs_log *log, uint64_t lsn)
{
	uint64_t c = log->head_cycle - (uint64_t)RLFS_LSN_CYCLE(lsn);
	return c * log->size_blocks + log->head_block - RLFS_LSN_BLOCK(lsn);
}

/*
 * mp->defer_log->relog_due: the intent is live (in a written checkpoint,
 * its done not logged) and log->relog_blocks or more blocks behind the
 * head.  XFS relogs an intent that is not in the current checkpoint and
 * lies before the AIL's push target (tail + a quarter of the log when
 * less than that is free, xfs_ail_push_target): the part of the log the
 * AIL is about to need.  Here the AIL is pushed only when a checkpoint
 * does not fit, so nearly all of the ring is in use between pushes and
 * the free-space condition would hold nearly always; what matters is how
 * much of the ring an intent pins, its distance from the head.
 */
static bool log_relog_due(struct rlfs_trans *tp, uint64_t intent_id)
{
	struct rlfs_log *log = tp->mp->log;
	if (!log || log->no_relog)
		return false;
	const struct rlfs_log_ilog *il = ihash_find(log, intent_id);
	if (!il || il->in_cil || il->done)
		return false;   /* in the checkpoint being built: nothing gained */
	return behind_head(log, il->lsn) >= log->relog_blocks;
}

/* mp->defer_log->relog: the old intent's done and the new intent in tp. */
static int log_relog(struct rlfs_trans *tp, const struct rlfs_defer_type *type, uint64_t old_id,
		     uint64_t new_id, const void *items, unsigned count, size_t bytes)
{
	int err = log_done(tp, type, old_id);
	if (!err)
		err = intent_join(tp, type, new_id, items, count, bytes, true);
	return err;
}

const struct rlfs_defer_log_ops rlfs_log_defer_ops = { log_intent, log_done, log_relog_due,
						       log_relog };

void rlfs_log_intents_pushed(struct rlfs_log *log, uint64_t ckpt_lsn)
{
	uint64_t ctx = log->cil_seq - 1;
	struct rlfs_log_ilog *il = log->cil_intents.first, *n;
	for (; il; il = n) {
		n = il->next;
		il->lsn = ckpt_lsn;
		il->in_cil = false;
		if (il->capture) {
			/* recovery's captured follow-up work: recovered from
			 * this payload like the intents found in the log */
			il->capture = false;
			log->capture_pending--;
			il->recovered = true;
		} else {
			/* the payload is in the log: only the id is needed now */
			free(il->data);
			il->data = NULL;
		}
		ilist_append(&log->live_intents, il);
	}
	for (il = log->cil_dones.first; il; il = n) {
		n = il->next;
		struct rlfs_log_ilog *intent = ihash_find(log, il->id);
		if (intent && !intent->in_cil && !intent->done) {
			intent->done = true;
			intent->done_seq = ctx;
		}
		free(il);
	}
	log->cil_intents = log->cil_dones = (struct rlfs_log_ilist){ 0 };
	log->cil_nintents = log->cil_ndones = 0;
}

uint64_t rlfs_log_intent_tail(struct rlfs_log *log)
{
	uint64_t tail = UINT64_MAX;
	struct rlfs_log_ilog *il = log->live_intents.first, *n;
	for (; il; il = n) {
		n = il->next;
		if (il->done && rlfs_log_seq_durable(log->mp, il->done_seq)) {
			ilist_remove(&log->live_intents, il);
			ihash_del(log, il);
			free(il->data);
			free(il);
			continue;
		}
		if (il->lsn < tail)
			tail = il->lsn;
	}
	return tail;
}

size_t rlfs_log_recovered_pending(const struct rlfs_mount *mp)
{
	size_t n = 0;
	if (!mp->log)
		return 0;
	for (const struct rlfs_log_ilog *il = mp->log->live_intents.first; il; il = il->next)
		n += il->recovered;
	return n;
}

/* Finish one recovered intent in a recovery transaction. */
static int recover_one(struct rlfs_mount *mp, struct rlfs_log_ilog *il)
{
	const struct rlfs_defer_type *type = rlfs_defer_type_find(il->code);
	if (!type || type->item_bytes != il->item_bytes || il->count == 0 ||
	    il->count > (type->max_items ? type->max_items : 1) ||
	    (size_t)il->count * il->item_bytes + sizeof(struct rlfs_log_intent) > mp->blocksize)
		return rlfs_corrupt(mp, mp->log->start_fsbno, "log", "intent %llu: unknown intent code 0x%x, bad "
				    "item size %u or item count %u", (unsigned long long)il->id, il->code,
				    il->item_bytes, il->count);
	struct rlfs_trans *tp;
	int err = rlfs_trans_alloc(mp, &mp->resv.tr_recover, 0, RLFS_TRANS_RESERVE, &tp);
	if (err)
		return err;
	/* the items are checked and queued, then done in this transaction
	 * with the old intent's done; what they queue in turn is logged and
	 * finished by the commit */
	const uint8_t *p = il->data + sizeof(struct rlfs_log_intent);
	for (uint32_t i = 0; i < il->count && !err; i++)
		err = type->recover_item(tp, p + (size_t)i * il->item_bytes, il->item_bytes);
	if (!err)
		err = rlfs_defer_finish_recovered(tp, il->id);
	/* the follow-up work is logged as new intents, not finished: see
	 * rlfs_log_recover_intents */
	if (!err) {
		mp->log->capturing = true;
		err = rlfs_defer_capture(tp);
		mp->log->capturing = false;
	}
	if (err) {
		rlfs_trans_cancel(tp);
		return err;
	}
	return rlfs_trans_commit(tp);
}

static int cmp_ilog_order(const void *a, const void *b)
{
	const struct rlfs_log_ilog *x = *(const struct rlfs_log_ilog *const *)a;
	const struct rlfs_log_ilog *y = *(const struct rlfs_log_ilog *const *)b;
	if (x->lsn != y->lsn)
		return x->lsn < y->lsn ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Relog v[0..n) (recovered intents, in recovery order) in as few
 * transactions as tr_recover allows: each gets a done and a new intent with
 * the same items (new_ids[i]).  0 or -errno. */
static int relog_recovered_trans(struct rlfs_mount *mp, struct rlfs_log_ilog **v, size_t n,
				 const uint64_t *new_ids)
{
	struct rlfs_trans_res *res = &mp->resv.tr_recover;
	uint64_t per = rlfs_trans_resv_bytes(mp, 1, 2);
	size_t batch = per && res->log_bytes >= per ? res->log_bytes / per : 1;
	for (size_t i = 0; i < n;) {
		struct rlfs_trans *tp;
		int err = rlfs_trans_alloc(mp, res, 0, RLFS_TRANS_RESERVE, &tp);
		if (err)
			return err;
		/* the whole batch must fit: the counts go up together */
		while (i < n && (size_t)tp->log_nintents < batch && !err) {
			struct rlfs_log_ilog *il = v[i];
			const struct rlfs_defer_type *type = rlfs_defer_type_find(il->code);
			err = log_done(tp, type, il->id);
			if (!err)
				err = intent_join(tp, type, new_ids[i],
						  il->data + sizeof(struct rlfs_log_intent), il->count,
						  (size_t)il->count * il->item_bytes, true);
			tp->log_nintents++;
			tp->log_ndones++;
			i++;
		}
		if (err) {
			rlfs_trans_cancel(tp);
			return err;
		}
		err = rlfs_trans_commit(tp);
		if (err)
			return err;
	}
	return 0;
}

/*
 * Recovery finishes the recovered intents one at a time, oldest first
 * (LSN, then id); the follow-up work of each (the RUIs and CUIs of a BUI's
 * unmap) is not finished with it but logged as new intents
 * (rlfs_defer_capture), which come after every intent that was in the log
 * before, as XFS captures recovered intents' chains and finishes them only
 * after all recovered intents had their step.  A running chain goes depth
 * first: the children of an unmap run before the map logged ahead of
 * them.  Recovery cannot run them in that order (it does not know which
 * intent was whose child), so each intent's step must hold whichever of
 * the pending intents ran first: the types keep their items to exactly the
 * blocks they change (bmap.c's RUIs), and a child done later still finds
 * what it changes.  Those still waiting keep their old LSNs and hold the
 * tail meanwhile.  When one of them (not next, finished now) is
 * log->relog_blocks behind the head, all of them are relogged, in their
 * recovery order, before next is finished: a done for each and a new
 * intent with the same items, then a log force, after which the new
 * intents are the recovered ones (they carry the payload).  A second
 * crash then recovers them in the same order, before next's follow-up
 * work, as it would have recovered the old ones.  Only the payload bytes
 * are copied: nothing type-specific.  0 or -errno (then the recovery
 * fails: the old intents are still in the log, or their dones and the
 * new intents are).  Source: the relogging of xfs_defer_relog, applied to
 * XFS's recovered intents (xlog_recover_process_intents).
 */
static int relog_recovered(struct rlfs_mount *mp, const struct rlfs_log_ilog *next)
{
	struct rlfs_log *log = mp->log;
	if (log->no_relog)
		return 0;
	size_t n = 0;
	bool due = false;
	for (struct rlfs_log_ilog *l = log->live_intents.first; l; l = l->next) {
		if (!l->recovered || l == next)
			continue;
		if (!l->data || !rlfs_defer_type_find(l->code))
			return 0;   /* recover_one reports it */
		n++;
		due = due || behind_head(log, l->lsn) >= log->relog_blocks;
	}
	if (!due)
		return 0;
	if (log->capture_pending) {
		/* captured follow-up work still in the CIL: written first,
		 * so it keeps its place after the intents relogged now (the
		 * relog gives them new, larger ids in a later checkpoint) */
		rlfs_meta_lock(mp);
		int ferr = rlfs_log_force(mp);
		pthread_mutex_unlock(&mp->meta_lock);
		if (ferr)
			return ferr;
		n = 0;
		for (struct rlfs_log_ilog *l = log->live_intents.first; l; l = l->next)
			n += l->recovered && l != next;
	}
	struct rlfs_log_ilog **v = calloc(n, sizeof(*v));
	uint64_t *ids = calloc(n, sizeof(*ids));
	uint8_t **data = calloc(n, sizeof(*data));
	if (!v || !ids || !data) {
		free(v);
		free(ids);
		free(data);
		return -ENOMEM;
	}
	n = 0;
	for (struct rlfs_log_ilog *l = log->live_intents.first; l; l = l->next)
		if (l->recovered && l != next)
			v[n++] = l;
	qsort(v, n, sizeof(*v), cmp_ilog_order);
	for (size_t i = 0; i < n; i++)
		ids[i] = ++mp->defer_intent_seq;
	int err = relog_recovered_trans(mp, v, n, ids);
	if (err) {
		free(v);
		free(ids);
		free(data);
		return err;
	}
	/* the old entries go once their dones are durable (the force below
	 * may free them): take their payloads now */
	for (size_t i = 0; i < n; i++) {
		data[i] = v[i]->data;
		v[i]->data = NULL;
		v[i]->recovered = false;
	}
	rlfs_meta_lock(mp);
	err = rlfs_log_force(mp);
	pthread_mutex_unlock(&mp->meta_lock);
	for (size_t i = 0; i < n; i++) {
		struct rlfs_log_ilog *nw = err ? NULL : ihash_find(log, ids[i]);
		if (!nw || nw->in_cil) {
			free(data[i]);
			if (!err)
				err = -EIO;   /* cannot happen: the force made it live */
			continue;
		}
		free(nw->data);
		nw->data = data[i];
		nw->recovered = true;
	}
	free(v);
	free(ids);
	free(data);
	return err;
}

int rlfs_log_recover_intents(struct rlfs_mount *mp)
{
	struct rlfs_log *log = mp->log;
	if (!log)
		return 0;
	int err = 0;
	__atomic_store_n(&log->recovering, true, __ATOMIC_RELEASE);
	for (;;) {
		/* the oldest recovered intent not yet finished */
		struct rlfs_log_ilog *il = NULL;
		for (struct rlfs_log_ilog *l = log->live_intents.first; l; l = l->next)
			if (l->recovered && (!il || l->lsn < il->lsn ||
					     (l->lsn == il->lsn && l->id < il->id)))
				il = l;
		if (!il && log->capture_pending) {
			/* captured work still in the CIL: written now, it is
			 * live and recovered, after everything before it */
			rlfs_meta_lock(mp);
			err = rlfs_log_force(mp);
			pthread_mutex_unlock(&mp->meta_lock);
			if (err)
				break;
			if (log->capture_pending) {
				err = -EIO;   /* cannot happen: the force pushed the CIL */
				break;
			}
			continue;
		}
		if (!il)
			break;
		err = relog_recovered(mp, il);
		if (err) {
			rlfs_warn("log recovery: relogging the intents still to finish failed: %s",
				  strerror(-err));
			break;
		}
		il->recovered = false;
		uint64_t id = il->id;   /* il goes once its done is durable */
		unsigned code = il->code, count = il->count;
		err = recover_one(mp, il);
		if (err) {
			rlfs_warn("log recovery: intent %llu (code 0x%x, %u item(s)) could not be "
				  "finished: %s", (unsigned long long)id, code, count,
				  strerror(-err));
			break;
		}
		log->stats.intents_recovered++;
	}
	rlfs_meta_lock(mp);
	int ferr = rlfs_log_force(mp);
	pthread_mutex_unlock(&mp->meta_lock);
	__atomic_store_n(&log->recovering, false, __ATOMIC_RELEASE);
	return err ? err : ferr;
}

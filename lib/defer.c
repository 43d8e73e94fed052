/*
 * defer.c: deferred operations, the intent/done machinery (defer.h has the
 * design and a worked example).  Model: xfs_defer.c.
 *
 * tp->dfops is the list of batches still to do, in order.  A batch whose
 * intent_id is 0 has no intent yet: its intent is logged in the
 * transaction that is about to roll, so the intent commits together with
 * the change that created the work.
 */
#include "defer.h"
#include "shift.h"
#include "exchange.h"
#include "inode.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rlfs_defer_add(struct rlfs_trans *tp, const struct rlfs_defer_type *type,
		   struct rlfs_defer_item *item)
{
	struct rlfs_defer_pending *last = tp->dfops;
	while (last && last->next)
		last = last->next;
	item->next = NULL;
	unsigned max = type->max_items ? type->max_items : 1;
	if (!last || last->type != type || last->intent_id || last->count >= max) {
		struct rlfs_defer_pending *p = calloc(1, sizeof(*p));
		if (!p)
			return -ENOMEM;
		p->type = type;
		if (last)
			last->next = p;
		else
			tp->dfops = p;
		last = p;
	}
	if (last->tail)
		last->tail->next = item;
	else
		last->head = item;
	last->tail = item;
	last->count++;
	return 0;
}

int rlfs_defer_hold_inode(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	for (unsigned i = 0; i < tp->ndheld; i++)
		if (tp->dheld[i] == ip)
			return 0;
	if (tp->ndheld >= RLFS_DEFER_MAX_HELD)
		return -E2BIG;
	tp->dheld[tp->ndheld++] = ip;
	rlfs_trans_ijoin(tp, ip);
	return 0;
}

static void cancel_pending(struct rlfs_defer_pending *p)
{
	while (p) {
		struct rlfs_defer_pending *next = p->next;
		struct rlfs_defer_item *it = p->head;
		while (it) {
			struct rlfs_defer_item *n = it->next;
			p->type->cancel_item(it);
			it = n;
		}
		free(p);
		p = next;
	}
}

void rlfs_defer_cancel(struct rlfs_trans *tp)
{
	cancel_pending(tp->dfops);
	tp->dfops = NULL;
}

/* Encode p's items into a new buffer (*bytes bytes); NULL on -ENOMEM. */
static unsigned char *encode_items(const struct rlfs_defer_pending *p, size_t *bytes)
{
	*bytes = p->type->item_bytes * p->count;
	unsigned char *buf = calloc(1, *bytes ? *bytes : 1);
	if (!buf)
		return NULL;
	size_t off = 0;
	for (const struct rlfs_defer_item *it = p->head; it; it = it->next) {
		p->type->encode(it, buf + off);
		off += p->type->item_bytes;
	}
	return buf;
}

/* Log the intents of every batch of tp that has none yet (creating the
 * work is part of the same change as logging it).  Source:
 * xfs_defer_create_intents. */
static int log_intents(struct rlfs_trans *tp)
{
	struct rlfs_mount *mp = tp->mp;
	for (struct rlfs_defer_pending *p = tp->dfops; p; p = p->next) {
		if (p->intent_id)
			continue;
		p->intent_id = ++mp->defer_intent_seq;
		tp->log_nintents++; /* counted with or without a log */
		if (!mp->defer_log)
			continue;
		size_t bytes;
		unsigned char *buf = encode_items(p, &bytes);
		if (!buf)
			return -ENOMEM;
		int err = mp->defer_log->intent(tp, p->type, p->intent_id, buf, p->count, bytes);
		free(buf);
		if (err)
			return err;
	}
	return 0;
}

static int cmp_pending_id(const void *a, const void *b)
{
	const struct rlfs_defer_pending *x = *(const struct rlfs_defer_pending *const *)a;
	const struct rlfs_defer_pending *y = *(const struct rlfs_defer_pending *const *)b;
	return x->intent_id < y->intent_id ? -1 : x->intent_id > y->intent_id;
}

/* Relog the intents of the batches at list (defer.h): if any of them is
 * due (mp->defer_log->relog_due), each logged one gets a done and a new
 * intent with what is left of its items, in tp, in the order they were
 * logged (intent id order), so that recovery still takes them in the
 * chain's order; *relogged is set then.  0 or -errno (tp holds part of
 * the relog: the caller cancels it).  Source: xfs_defer_relog,
 * xfs_defer_relog_intent. */
static int relog_intents(struct rlfs_trans *tp, struct rlfs_defer_pending *list, bool *relogged)
{
	struct rlfs_mount *mp = tp->mp;
	const struct rlfs_defer_log_ops *ops = mp->defer_log;
	if (!ops || !ops->relog_due || !ops->relog)
		return 0;
	size_t n = 0;
	bool due = false;
	for (struct rlfs_defer_pending *p = list; p; p = p->next) {
		if (!p->intent_id)
			continue;
		n++;
		due = due || ops->relog_due(tp, p->intent_id);
	}
	if (!due)
		return 0;
	*relogged = true;
	struct rlfs_defer_pending **v = calloc(n, sizeof(*v));
	if (!v)
		return -ENOMEM;
	n = 0;
	for (struct rlfs_defer_pending *p = list; p; p = p->next)
		if (p->intent_id)
			v[n++] = p;
	qsort(v, n, sizeof(*v), cmp_pending_id);
	int err = 0;
	for (size_t i = 0; i < n && !err; i++) {
		struct rlfs_defer_pending *p = v[i];
		size_t bytes;
		unsigned char *buf = encode_items(p, &bytes);
		if (!buf) {
			err = -ENOMEM;
			break;
		}
		uint64_t new_id = ++mp->defer_intent_seq;
		err = ops->relog(tp, p->type, p->intent_id, new_id, buf, p->count, bytes);
		free(buf);
		if (!err) {
			p->intent_id = new_id;
			tp->log_nintents++;
			tp->log_ndones++;
		}
	}
	free(v);
	return err;
}

/* Commit tp and open the next transaction of the chain: same flags, the
 * unused block reservation, held inodes joined again, queued work carried
 * over.
 * On error *tpp is NULL and the work list is returned in *work for the
 * caller to cancel. */
static int roll(struct rlfs_trans **tpp, struct rlfs_defer_pending **work, bool *committed)
{
	struct rlfs_trans *tp = *tpp;
	struct rlfs_inode *held[RLFS_DEFER_MAX_HELD];
	unsigned nheld = tp->ndheld;
	for (unsigned i = 0; i < nheld; i++)
		held[i] = tp->dheld[i];
	*work = tp->dfops;
	tp->dfops = NULL;
	/* the unused block reservation goes on to the next step (XFS's
	 * permanent reservation) */
	int err = rlfs_trans_roll_carry(tpp, committed);
	if (err)
		return err;
	tp = *tpp;
	tp->ndheld = nheld;
	for (unsigned i = 0; i < nheld; i++) {
		tp->dheld[i] = held[i];
		rlfs_trans_ijoin(tp, held[i]);
	}
	tp->dfops = *work;
	*work = NULL;
	return 0;
}

/* Finish the first batch p (already unlinked from the list) in tp: its
 * done, then each item.  On -EAGAIN the unfinished items stay in p, which
 * the caller queues again for a new intent.  Source: xfs_defer_finish_one. */
static int finish_one(struct rlfs_trans *tp, struct rlfs_defer_pending *p)
{
	struct rlfs_mount *mp = tp->mp;
	tp->log_ndones++;
	if (mp->defer_log) {
		int err = mp->defer_log->done(tp, p->type, p->intent_id);
		if (err)
			return err;
	}
	p->intent_id = 0;
	while (p->head) {
		struct rlfs_defer_item *it = p->head;
		int err = p->type->finish_item(tp, it);
		if (err == -EAGAIN)
			return -EAGAIN;   /* it (updated) and the rest go into a new intent */
		if (err)
			return err;
		p->head = it->next;
		if (!p->head)
			p->tail = NULL;
		p->count--;
		p->type->cancel_item(it);
	}
	return 0;
}

int rlfs_defer_capture(struct rlfs_trans *tp)
{
	int err = log_intents(tp);
	if (err)
		return err;
	/* in the log now: recovery decodes them from there */
	cancel_pending(tp->dfops);
	tp->dfops = NULL;
	return 0;
}

int rlfs_defer_finish_recovered(struct rlfs_trans *tp, uint64_t intent_id)
{
	struct rlfs_defer_pending *p = tp->dfops;
	if (!p || p->next || p->intent_id)
		return -EINVAL; /* recover_item queues one batch on a fresh tp */
	tp->dfops = NULL;
	p->intent_id = intent_id;
	int err = finish_one(tp, p);
	/* what the items queued comes first, then what is left of p */
	struct rlfs_defer_pending **tailp = &tp->dfops;
	while (*tailp)
		tailp = &(*tailp)->next;
	if (err == -EAGAIN || (err && p->head)) {
		/* cancelled with tp on error.  -EAGAIN: the rest gets a new
		 * intent, which sorts after the old intents behind this one:
		 * a type whose items may be partly done must keep each item
		 * independent of the later intents of its chain.  The two
		 * that do, the SXI (shift.c) and the XMI (exchange.c), are:
		 * their chains log nothing after them but what their own
		 * steps queue (RUIs naming exactly the piece a step changed),
		 * and those are finished in this transaction's chain before
		 * the next step */
		*tailp = p;
		return err == -EAGAIN ? 0 : err;
	}
	free(p);
	return err;
}

/* A chain failed after an intent of it was committed: the work stays
 * undone in this mount and the intent stays in the log (holding its
 * tail) until the next mount's recovery finishes it.  The in-core state
 * is half done (a clone's destination unmapped, not yet mapped again), so
 * the mount shuts down, as XFS does. */
static void stranded(struct rlfs_mount *mp, int err)
{
	char why[160];
	snprintf(why, sizeof(why), "deferred work failed after its intent was logged: %s",
		 strerror(-err));
	rlfs_force_shutdown(mp, why);
}

int rlfs_defer_finish(struct rlfs_trans **tpp)
{
	struct rlfs_defer_pending *work = NULL;
	struct rlfs_mount *mp = (*tpp)->mp;
	bool rolled = false;
	int err = 0;
	while ((*tpp)->dfops) {
		struct rlfs_trans *tp = *tpp;
		err = log_intents(tp);
		if (err)
			goto fail;
		bool committed = false;
		err = roll(tpp, &work, &committed);
		if (err) {
			/* a failed first commit logged nothing */
			rolled |= committed;
			goto fail_rolled;
		}
		rolled = true;
		tp = *tpp;
		/* the intents still held after the next step (not the first
		 * batch's: its done is in the next step) must not hold the
		 * log's tail back: relogged in a transaction of their own, as
		 * xfs_defer_relog, so that the step's log reservation is not
		 * exceeded */
		bool relogged = false;
		err = relog_intents(tp, tp->dfops->next, &relogged);
		if (err)
			goto fail;
		if (relogged) {
			err = roll(tpp, &work, &committed);
			if (err)
				goto fail_rolled;
			tp = *tpp;
		}
		/* take the first batch; what finishing it queues lands on an
		 * empty tp->dfops and goes ahead of the batches after it */
		struct rlfs_defer_pending *p = tp->dfops;
		struct rlfs_defer_pending *rest = p->next;
		p->next = NULL;
		tp->dfops = NULL;
		err = finish_one(tp, p);
		if (err && err != -EAGAIN) {
			p->next = rest;
			/* queued by the failed step, then p and the rest: all
			 * cancelled with tp */
			struct rlfs_defer_pending *last = tp->dfops;
			while (last && last->next)
				last = last->next;
			if (last)
				last->next = p;
			else
				tp->dfops = p;
			goto fail;
		}
		/* new work first, then what is left of p (-EAGAIN), then the rest */
		struct rlfs_defer_pending **tailp = &tp->dfops;
		while (*tailp)
			tailp = &(*tailp)->next;
		if (err == -EAGAIN) {
			*tailp = p;
			tailp = &p->next;
		} else {
			free(p);
		}
		*tailp = rest;
		err = 0;
	}
	return 0;
fail:
	if ((*tpp)->mp->defer_log && rolled)
		stranded((*tpp)->mp, err);
	rlfs_trans_cancel(*tpp);   /* also cancels (*tpp)->dfops */
	*tpp = NULL;
	return err;
fail_rolled:
	if (mp->defer_log && rolled)
		stranded(mp, err);
	cancel_pending(work);
	*tpp = NULL;
	return err;
}

/* ---- types for recovery ---- */

static const struct rlfs_defer_type *registered[8];
static unsigned nregistered;

const struct rlfs_defer_type *rlfs_defer_type_find(uint16_t intent_code)
{
	static const struct rlfs_defer_type *const builtin[] = { &rlfs_efi_type, &rlfs_cui_type,
								     &rlfs_bui_type, &rlfs_rui_type,
								     &rlfs_sxi_type,
								     &rlfs_xmi_type };
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		if (builtin[i]->intent_code == intent_code)
			return builtin[i];
	for (unsigned i = 0; i < nregistered; i++)
		if (registered[i]->intent_code == intent_code)
			return registered[i];
	return NULL;
}

int rlfs_defer_type_register(const struct rlfs_defer_type *type)
{
	for (unsigned i = 0; i < nregistered; i++)
		if (registered[i] == type)
			return 0;
	if (nregistered >= sizeof(registered) / sizeof(registered[0]))
		return -E2BIG;
	registered[nregistered++] = type;
	return 0;
}

/*
 * defer.h: deferred operations (intent/done), as xfs_defer.c.
 *
 * A change that touches several structures (free a file's extent: bmbt,
 * refcount, free space; later rmap) cannot fit in one bounded
 * transaction, and must not be half done after a crash.  The caller does
 * the first part in its transaction and queues the rest as work items of
 * a registered type.  At commit the framework
 *
 *   1. logs an *intent* for every queued batch (what will be done: the
 *      type's encoded items) in the caller's transaction,
 *   2. rolls: commits that transaction and starts a new one that carries
 *      the unused block reservation (rlfs_trans_roll_carry, XFS's
 *      permanent reservation), re-joining held inodes,
 *   3. finishes the first batch in the new transaction: a *done* item
 *      naming the intent, then finish_item for each item.  Work that a
 *      step queues (freeing a refcount block queues an extent free) gets
 *      its intents logged and is finished before the batches queued
 *      earlier (depth first, as XFS: a chain of dependent steps completes
 *      before unrelated work starts),
 *   4. repeats until nothing is queued, then commits the last transaction.
 *
 * An intent holds the log's tail until its done is durable, and a long
 * chain rolls many times: its older intents would pin the tail while the
 * head goes round the ring (-ENOSPC on a small log).  So after each roll
 * the chain *relogs* (xfs_defer_relog): if an intent it still holds (not
 * the batch about to be finished) is far enough behind the log's head
 * (mp->defer_log->relog_due), every intent the chain holds gets, in the
 * new transaction, a done for the old intent and a fresh intent (a new
 * id) carrying exactly the items still to do, encoded by the type's own
 * encode: nothing type-specific.  All of them, in the order they were
 * logged, not only the old ones: recovery finishes intents in log order
 * (LSN, then id), and a clone's map must not be replayed before the
 * unmap of the same range that was logged ahead of it.  After a crash
 * recovery sees either the old intent without its done or the new one:
 * the same remaining work, exactly once.
 *
 * After a crash, log recovery finds intents without a done item and hands
 * their items back to the type (recover_item, the type found by its
 * intent code with rlfs_defer_type_find), which queues them on a recovery
 * transaction; rlfs_defer_finish_recovered does their work in that
 * transaction, with the old intent's done: every step is redone from the
 * last durable point, in the order the chain logged it.  A step (finish_item) commits
 * together with its done, so it is never half in the log.  The log side
 * is lib/log_intent.c (mp->defer_log = rlfs_log_defer_ops: intents and
 * dones join the transaction's checkpoint; an intent holds the log tail
 * until its done is durable).  Without a log (v1 images) steps 1 and 3's
 * intent/done records go nowhere (mp->defer_log is NULL) and the
 * framework only bounds transactions.
 *
 * Worked example: unlink of the last name of a file whose one extent
 * (fsbno 1000, 8 blocks) is shared with a clone.
 *
 *     tp = alloc(res)                 unmap the extent from the bmbt;
 *                                     rlfs_defer_add(tp, &refcount_type,
 *                                             {decrement 1000+8})
 *     commit(tp)
 *       intent CUI#1 {dec 1000+8}     logged in tp; tp committed
 *       roll -> tp2                   CUD#1 logged in tp2;
 *       finish_item(dec 1000+8)       refcount 2 -> 1: nothing more
 *       commit(tp2)                   done
 *
 * Had the refcount gone to 0, finish_item would have queued an extent
 * free {1000+8} (EFI#2) in tp2; it is logged in tp2, tp2 rolls to tp3, and
 * tp3 logs EFD#2 and frees the blocks.  A crash after tp's commit replays
 * CUI#1 (no CUD); a crash after tp2's replays EFI#2.
 *
 * Adding a type: define a struct embedding struct rlfs_defer_item, fill a
 * static const struct rlfs_defer_type (name, log codes from SPEC.md, the
 * most items per intent and their encoded size: 16 + max_items *
 * item_bytes must fit one block, encode, finish_item, cancel_item,
 * recover_item), add it to the table in rlfs_defer_type_find (defer.c) so
 * recovery knows its code, call rlfs_defer_add.  Nothing else changes.
 * Built-in types (defer_item.c): rlfs_efi_type, rlfs_cui_type, rlfs_bui_type,
 * rlfs_rui_type; shift.c: rlfs_sxi_type (collapse/insert range) and
 * exchange.c: rlfs_xmi_type (exchange range), the two types whose
 * finish_item returns -EAGAIN.
 *
 * Locking: everything runs in transactions, under meta_lock.
 */
#ifndef RLFS_DEFER_H
#define RLFS_DEFER_H
#include "trans.h"

struct rlfs_inode;

/* One unit of deferred work; types embed it (container_of). */
struct rlfs_defer_item {
	struct rlfs_defer_item *next;
};

/*
 * An operation type.  Source: struct xfs_defer_op_type.
 *   intent_code, done_code  the log item types of its records (SPEC.md)
 *   max_items               most items one intent carries: bounds the
 *                           work (and log space) of one finishing
 *                           transaction; at least 1
 *   item_bytes              encoded size of one item in an intent record
 *   encode(item, buf)       write item_bytes bytes (little-endian)
 *   finish_item(tp, item)   do the item's work in tp: 0 (done: the
 *                           framework calls cancel_item to free it),
 *                           -EAGAIN (partly done, item updated to what
 *                           is left: it goes into a new intent and is
 *                           finished in a later transaction), or -errno
 *                           (the framework cancels tp and all queued work)
 *   cancel_item(item)       free an item (done, or never to be finished)
 *   recover_item(tp, buf, bytes)
 *                           log recovery: decode one item of an intent
 *                           that has no done and queue it on tp with
 *                           rlfs_defer_add; 0 or -EUCLEAN (bad item)
 */
struct rlfs_defer_type {
	const char *name;
	uint16_t intent_code;
	uint16_t done_code;
	unsigned max_items;
	size_t item_bytes;
	void (*encode)(const struct rlfs_defer_item *item, void *buf);
	int (*finish_item)(struct rlfs_trans *tp, struct rlfs_defer_item *item);
	void (*cancel_item)(struct rlfs_defer_item *item);
	int (*recover_item)(struct rlfs_trans *tp, const void *buf, size_t bytes);
};

/*
 * Where intents and dones go: the log sets mp->defer_log; NULL (no log)
 * makes both no-ops.
 *   intent(tp, type, intent_id, items, count, bytes)
 *       log an intent record in tp: intent_id (unique in the mount, never
 *       0) and count items of type->item_bytes each in items (bytes in
 *       all).  0 or -errno (the framework cancels tp and the work).
 *   done(tp, type, intent_id)
 *       log the done record of intent_id in tp.  0 or -errno.
 *   relog_due(tp, intent_id)
 *       true if intent_id is in the log (not in the checkpoint being
 *       built) and so far behind the log's head that it holds the tail
 *       back (log_intent.c has the rule); false otherwise, and always
 *       when relogging is off (a test hook).  May be NULL (never due).
 *   relog(tp, type, old_id, new_id, items, count, bytes)
 *       log the done of old_id and a new intent new_id carrying items
 *       (as intent) in tp: the old intent stops holding the tail once
 *       tp's checkpoint is durable.  0 or -errno.  Counted in the log's
 *       stats (intents_relogged) when tp commits.
 */
struct rlfs_defer_log_ops {
	int (*intent)(struct rlfs_trans *tp, const struct rlfs_defer_type *type,
		      uint64_t intent_id, const void *items, unsigned count, size_t bytes);
	int (*done)(struct rlfs_trans *tp, const struct rlfs_defer_type *type, uint64_t intent_id);
	bool (*relog_due)(struct rlfs_trans *tp, uint64_t intent_id);
	int (*relog)(struct rlfs_trans *tp, const struct rlfs_defer_type *type, uint64_t old_id,
		     uint64_t new_id, const void *items, unsigned count, size_t bytes);
};

/* A batch of queued items of one type: one intent, one done. */
struct rlfs_defer_pending {
	const struct rlfs_defer_type *type;
	struct rlfs_defer_item *head, *tail;
	unsigned count;
	uint64_t intent_id;         /* 0 until its intent is logged */
	struct rlfs_defer_pending *next;
};

/* Queue item of type on tp (the caller's transaction).  Items of one type
 * queued one after another share a batch of up to type->max_items.
 * -ENOMEM (item not queued: the caller still owns it). */
int rlfs_defer_add(struct rlfs_trans *tp, const struct rlfs_defer_type *type,
		   struct rlfs_defer_item *item);
/* Keep ip joined across the rolls (at most RLFS_DEFER_MAX_HELD; the
 * operation's own inodes, as xfs_defer_ops_capture's held inodes).
 * -E2BIG when full. */
#define RLFS_DEFER_MAX_HELD 2
int rlfs_defer_hold_inode(struct rlfs_trans *tp, struct rlfs_inode *ip);
/*
 * Finish all queued work, rolling as described above; *tpp is the last
 * transaction, still open (commit it).  0, or -errno from a step, a log
 * hook or a roll (-ENOSPC, -EIO, -EUCLEAN, -ENOMEM): then the transaction
 * being finished is cancelled, every item not finished is cancelled
 * (cancel_item), *tpp is NULL, and what earlier rolls committed stays.
 * Source: xfs_defer_finish_noroll.  rlfs_trans_commit calls it when work
 * is queued, so most callers just commit.
 */
int rlfs_defer_finish(struct rlfs_trans **tpp);
/*
 * Log recovery: finish, in tp itself, the one batch that the type's
 * recover_item queued on the fresh tp for the recovered intent intent_id:
 * its done (naming the old intent) and the items' work commit together,
 * so the work is never logged as a new intent.  A new intent would sort
 * after the old intents that follow it in the chain (recovery takes
 * intents in log order): a crash during recovery would then replay a
 * clone's BUI map before the unmap of the same range.  Work the items
 * queue (an unmap's CUI decrease) and the rest of a -EAGAIN item stay on
 * tp, for rlfs_defer_capture to log as new intents that recovery finishes
 * after every intent logged before them.  0, -EINVAL (tp does not hold
 * exactly one new batch), or finish_item's error (tp keeps the work for
 * the caller's cancel).  Source: xlog_recover_finish_intent,
 * xfs_defer_finish_recovery.
 */
int rlfs_defer_finish_recovered(struct rlfs_trans *tp, uint64_t intent_id);
/*
 * Log recovery: log an intent for every batch queued on tp and drop the
 * in-core work without doing it; tp's commit then writes the intents, and
 * recovery finishes them later from their logged payload, after every
 * intent that was in the log before (XFS captures a recovered intent's
 * follow-up work the same way and finishes it only once all recovered
 * intents had their step, xfs_defer_ops_capture / xlog_finish_defer_ops).
 * 0 or -ENOMEM / the log's error (tp keeps what was not logged for the
 * caller's cancel).
 */
int rlfs_defer_capture(struct rlfs_trans *tp);
/* Drop all queued work of tp without doing it (transaction cancel). */
void rlfs_defer_cancel(struct rlfs_trans *tp);

/*
 * The types log recovery knows, by intent code: the built-in ones
 * (defer_item.c: EFI, CUI) and any added with rlfs_defer_type_register
 * (tests; a new type is simply added to the built-in table).  NULL if
 * none.  Source: xlog_recover_item_ops / the intent item ops table.
 */
const struct rlfs_defer_type *rlfs_defer_type_find(uint16_t intent_code);
/* Add a type for recovery (process-wide, at most 8; not thread-safe:
 * call before mounting).  0 or -E2BIG. */
int rlfs_defer_type_register(const struct rlfs_defer_type *type);

/* ---- defer_item.c: the built-in intent types ---- */

/* EFI/EFD: free an extent (rlfs_free_extent) in a later transaction; the
 * blocks are busy from that transaction on (busy.h).  Up to
 * RLFS_EFI_MAX_ITEMS extents per intent.  Source: xfs_extfree_item.c. */
#define RLFS_EFI_MAX_ITEMS 16u
extern const struct rlfs_defer_type rlfs_efi_type;
/* Queue the free of [fsbno, fsbno+len) on tp.  0 or -ENOMEM. */
int rlfs_efi_add(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len);
/* CUI/CUD: refcount +1 / -1 of an extent (rlfs_refcount_increase /
 * decrease) in a later transaction; a decrease that drops blocks to 0
 * queues their free as an EFI.  Up to RLFS_CUI_MAX_ITEMS per intent.
 * Source: xfs_refcount_item.c. */
#define RLFS_CUI_MAX_ITEMS 16u
extern const struct rlfs_defer_type rlfs_cui_type;
/* Queue op (RLFS_CUI_INCREASE / _DECREASE) of [fsbno, fsbno+len) on tp.
 * 0 or -ENOMEM. */
int rlfs_cui_add(struct rlfs_trans *tp, unsigned op, uint64_t fsbno, uint32_t len);
/* Release a data-fork mapping of [fsbno, fsbno+len) in a later
 * transaction: a CUI decrease on a reflink filesystem, else an EFI (the
 * deferred form of rlfs_extent_release).  0 or -ENOMEM. */
int rlfs_defer_extent_release(struct rlfs_trans *tp, uint64_t fsbno, uint32_t len);
/*
 * BUI/BUD: map or unmap one range of an inode's data fork in a later
 * transaction.  flags: RLFS_BUI_MAP (| RLFS_BUI_UNWRITTEN) maps file
 * blocks [startoff, startoff+len) to [startblock, ..) -- the range must
 * be a hole then, and refcounts are the caller's (queue a CUI increase
 * for a shared block); RLFS_BUI_UNMAP makes the range a hole and releases
 * the blocks through a deferred CUI decrease (EFI without REFLINK),
 * startblock naming the block mapped at startoff now.  The caller holds
 * the inode (a reference and its iolock exclusive) until the chain is
 * finished (rlfs_trans_commit returns); log recovery reads it in and
 * checks the range against the data fork first (-EUCLEAN if they
 * disagree).  Up to RLFS_BUI_MAX_ITEMS per intent (XFS logs one; a clone
 * batch queues many).  0 or -ENOMEM.  Source: xfs_bmap_item.c,
 * xfs_bmap_map_extent / xfs_bmap_unmap_extent.
 */
#define RLFS_BUI_MAX_ITEMS 16u
extern const struct rlfs_defer_type rlfs_bui_type;
int rlfs_bui_add(struct rlfs_trans *tp, unsigned flags, uint64_t ino, uint64_t startoff,
		 uint64_t startblock, uint32_t len);
/*
 * RUI/RUD: one change of the rmap btree for a data- or attr-fork mapping
 * of an inode, in a later transaction (rlfs_rmap_update): op RLFS_RUI_MAP
 * / _UNMAP / _CONVERT (format.h) of [fsbno, fsbno+len) owned by owner at
 * offset (RLFS_RMAP_OFF_* flags | file block).  bmap.c queues them as the
 * data fork changes, so the rmap follows every map, unmap and unwritten
 * conversion (clone, CoW, truncate, punch included) in the same chain.
 * Up to RLFS_RUI_MAX_ITEMS per intent.  Does nothing (0) without the
 * RMAP feature.  0 or -ENOMEM.  Source: xfs_rmap_item.c,
 * xfs_rmap_map_extent / xfs_rmap_unmap_extent / xfs_rmap_convert_extent.
 */
/*
 * The regular file ino an intent item names, joined to tp, for a type's
 * finish_item or recovery: in normal operation the caller holds it (found
 * in the cache), in log recovery it is read in.  The reference taken here
 * is dropped at once: a joined inode is not freed by its last irele.
 * what names the intent in the corruption report ("BUI", "SXI", "XMI").
 * 0, -EUCLEAN (not in use, not a regular file, or its fork not loaded:
 * reported as log corruption), or rlfs_iget_tp's errors.
 */
int rlfs_defer_item_inode(struct rlfs_trans *tp, const char *what, uint64_t ino,
			  struct rlfs_inode **ipp);
#define RLFS_RUI_MAX_ITEMS 8u
extern const struct rlfs_defer_type rlfs_rui_type;
int rlfs_rui_add(struct rlfs_trans *tp, unsigned op, uint64_t fsbno, uint32_t len,
		 uint64_t owner, uint64_t offset);
#endif

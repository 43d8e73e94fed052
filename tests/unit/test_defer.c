/*
 * test_defer.c: the deferred-operations framework (lib/defer.c) with a
 * test operation type over a bare memory mount: every batch gets an
 * intent logged before its transaction rolls and a done in the next one;
 * work a step queues is finished before earlier batches (depth first);
 * max_items bounds a batch; -EAGAIN relogs what is left in a new intent;
 * a failing step undoes its own transaction, keeps what earlier rolls
 * committed and frees every unfinished item; held inodes stay joined
 * across rolls; without a log hook the same work is done.
 */
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "defer.h"
#include "dev.h"
#include "inode.h"
#include "reflinkfs/fs.h"
#include "trans.h"

#define TEST_MAGIC 0x54534554u
static const struct rlfs_buf_ops test_ops = { .name = "test", .magic = TEST_MAGIC,
					      .has_hdr = true };

/* A test item: finishing writes id into byte id of block 10 and records
 * the order; children are queued as new items; steps > 1 means -EAGAIN
 * until it reaches 1; fail makes the step fail with -EIO after writing. */
struct note_item {
	struct rlfs_defer_item di;
	unsigned id;
	unsigned nchildren;
	unsigned steps;
	bool fail;
};

static unsigned order[64], norder;
static unsigned nfreed, nalloced;
static struct rlfs_inode *expect_held;

static struct note_item *note(unsigned id)
{
	struct note_item *n = calloc(1, sizeof(*n));
	assert_non_null(n);
	n->id = id;
	n->steps = 1;
	nalloced++;
	return n;
}

static void note_encode(const struct rlfs_defer_item *item, void *buf)
{
	const struct note_item *n = (const struct note_item *)item;
	uint8_t *b = buf;
	b[0] = (uint8_t)n->id;
	b[1] = (uint8_t)n->steps;
}

static const struct rlfs_defer_type note_type;

static int note_finish(struct rlfs_trans *tp, struct rlfs_defer_item *item)
{
	struct note_item *n = (struct note_item *)item;
	struct rlfs_buf *bp;
	if (expect_held)
		assert_ptr_equal(expect_held->li_tp, tp);
	int err = rlfs_trans_read_buf(tp, 10, &test_ops, RLFS_OWNER_ANY, &bp);
	if (err)
		return err;
	((uint8_t *)bp->data)[64 + n->id] = (uint8_t)n->id;
	rlfs_trans_log_buf(tp, bp);
	rlfs_trans_brelse(tp, bp);
	if (n->fail)
		return -EIO;
	order[norder++] = n->id;
	if (n->steps > 1) {
		n->steps--;
		return -EAGAIN;
	}
	for (unsigned c = 1; c <= n->nchildren; c++) {
		err = rlfs_defer_add(tp, &note_type, &note(n->id * 10 + c)->di);
		if (err)
			return err;
	}
	return 0;
}

static void note_cancel(struct rlfs_defer_item *item)
{
	nfreed++;
	free(item);
}

static const struct rlfs_defer_type note_type = {
	.name = "note", .intent_code = 0x7e01, .done_code = 0x7e02,
	.max_items = 1, .item_bytes = 2,
	.encode = note_encode, .finish_item = note_finish, .cancel_item = note_cancel,
};
static const struct rlfs_defer_type note2_type = {
	.name = "note2", .intent_code = 0x7e03, .done_code = 0x7e04,
	.max_items = 2, .item_bytes = 2,
	.encode = note_encode, .finish_item = note_finish, .cancel_item = note_cancel,
};

/* A fake log: records intents and dones with the transaction they were
 * logged in (mp->meta_turns: a new value for each transaction). */
struct ev {
	bool done;
	uint64_t id, turn;
	unsigned count;
	uint8_t items[8];
};
static struct ev evs[128];
static unsigned nevs;

static int log_intent(struct rlfs_trans *tp, const struct rlfs_defer_type *type,
		      uint64_t intent_id, const void *items, unsigned count, size_t bytes)
{
	assert_int_equal(bytes, count * type->item_bytes);
	struct ev *e = &evs[nevs++];
	*e = (struct ev){ .done = false, .id = intent_id, .turn = tp->mp->meta_turns,
			  .count = count };
	memcpy(e->items, items, bytes < sizeof(e->items) ? bytes : sizeof(e->items));
	return 0;
}

static int log_done(struct rlfs_trans *tp, const struct rlfs_defer_type *type, uint64_t intent_id)
{
	evs[nevs++] = (struct ev){ .done = true, .id = intent_id, .turn = tp->mp->meta_turns };
	return 0;
}

static const struct rlfs_defer_log_ops fake_log = { log_intent, log_done };

static struct rlfs_mount *bare(void)
{
	struct rlfs_dev *dev;
	struct rlfs_mount *mp;
	assert_int_equal(rlfs_dev_open_mem(4096ull * 64, &dev), 0);
	assert_int_equal(rlfs_mount_alloc_bare(dev, 4096, 64, 0, &mp), 0);
	memset(mp->uuid, 0xab, sizeof(mp->uuid));
	mp->fdblocks = 100;
	/* block 10: the test block the steps write into */
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_trans_get_buf(tp, 10, &test_ops, 0, &bp), 0);
	rlfs_trans_log_buf(tp, bp);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	norder = nfreed = nalloced = nevs = 0;
	expect_held = NULL;
	return mp;
}

static void unbare(struct rlfs_mount *mp)
{
	struct rlfs_dev *dev = mp->dev;
	rlfs_mount_free_bare(mp);
	rlfs_dev_close(dev);
}

static uint8_t block10(struct rlfs_mount *mp, unsigned id)
{
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, RLFS_TRANS_RDONLY, &tp), 0);
	assert_int_equal(rlfs_trans_read_buf(tp, 10, &test_ops, RLFS_OWNER_ANY, &bp), 0);
	uint8_t v = ((uint8_t *)bp->data)[64 + id];
	rlfs_trans_cancel(tp);
	return v;
}

/* Every intent has exactly one done, logged in a later transaction. */
static void check_pairs(void)
{
	for (unsigned i = 0; i < nevs; i++) {
		if (evs[i].done)
			continue;
		unsigned dones = 0;
		for (unsigned j = 0; j < nevs; j++)
			if (evs[j].done && evs[j].id == evs[i].id) {
				dones++;
				assert_true(j > i);
				assert_true(evs[j].turn > evs[i].turn);
			}
		assert_int_equal(dones, 1);
	}
}

static void test_defer_depth_first(void **state)
{
	(void)state;
	struct rlfs_mount *mp = bare();
	mp->defer_log = &fake_log;
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	struct note_item *a = note(1), *b = note(2);
	a->nchildren = 2;
	assert_int_equal(rlfs_defer_add(tp, &note_type, &a->di), 0);
	assert_int_equal(rlfs_defer_add(tp, &note_type, &b->di), 0);
	uint64_t turn0 = mp->meta_turns;
	assert_int_equal(rlfs_trans_commit(tp), 0);
	/* 1's children before 2 */
	unsigned want[] = { 1, 11, 12, 2 };
	assert_int_equal(norder, 4);
	assert_memory_equal(order, want, sizeof(want));
	assert_int_equal(nfreed, nalloced);
	/* intents of 1 and 2 logged in the caller's transaction */
	assert_false(evs[0].done);
	assert_false(evs[1].done);
	assert_int_equal(evs[0].turn, turn0);
	assert_int_equal(evs[1].turn, turn0);
	assert_int_equal(evs[0].items[0], 1);
	assert_int_equal(evs[1].items[0], 2);
	check_pairs();
	assert_int_equal(nevs, 8);   /* 4 intents, 4 dones */
	for (unsigned id = 1; id <= 2; id++)
		assert_int_equal(block10(mp, id), id);
	assert_int_equal(block10(mp, 11), 11);
	unbare(mp);
}

static void test_defer_batches(void **state)
{
	(void)state;
	struct rlfs_mount *mp = bare();
	mp->defer_log = &fake_log;
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	for (unsigned id = 1; id <= 5; id++)
		assert_int_equal(rlfs_defer_add(tp, &note2_type, &note(id)->di), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(norder, 5);
	/* three intents of 2, 2 and 1 items, encoded in order */
	unsigned counts[3], k = 0;
	for (unsigned i = 0; i < nevs; i++)
		if (!evs[i].done) {
			assert_true(k < 3);
			counts[k++] = evs[i].count;
		}
	assert_int_equal(k, 3);
	assert_int_equal(counts[0], 2);
	assert_int_equal(counts[1], 2);
	assert_int_equal(counts[2], 1);
	assert_int_equal(evs[0].items[0], 1);
	assert_int_equal(evs[0].items[2], 2);
	check_pairs();
	assert_int_equal(nfreed, 5);
	unbare(mp);
}

static void test_defer_eagain_relogs(void **state)
{
	(void)state;
	struct rlfs_mount *mp = bare();
	mp->defer_log = &fake_log;
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	struct note_item *a = note(3);
	a->steps = 3;
	assert_int_equal(rlfs_defer_add(tp, &note_type, &a->di), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(norder, 3);   /* finished in three transactions */
	unsigned intents = 0;
	uint8_t steps_seen[3];
	for (unsigned i = 0; i < nevs; i++)
		if (!evs[i].done)
			steps_seen[intents++] = evs[i].items[1];
	assert_int_equal(intents, 3);
	/* each new intent carries what was left */
	assert_int_equal(steps_seen[0], 3);
	assert_int_equal(steps_seen[1], 2);
	assert_int_equal(steps_seen[2], 1);
	check_pairs();
	assert_int_equal(nfreed, 1);
	unbare(mp);
}

static void test_defer_failure(void **state)
{
	(void)state;
	struct rlfs_mount *mp = bare();
	mp->defer_log = &fake_log;
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	struct note_item *a = note(1), *b = note(2), *c = note(3);
	b->fail = true;
	assert_int_equal(rlfs_defer_add(tp, &note_type, &a->di), 0);
	assert_int_equal(rlfs_defer_add(tp, &note_type, &b->di), 0);
	assert_int_equal(rlfs_defer_add(tp, &note_type, &c->di), 0);
	assert_int_equal(rlfs_trans_commit(tp), -EIO);
	/* 1 committed in its roll; 2's write undone with its transaction; 3
	 * never ran; every item freed */
	assert_int_equal(block10(mp, 1), 1);
	assert_int_equal(block10(mp, 2), 0);
	assert_int_equal(block10(mp, 3), 0);
	assert_int_equal(norder, 1);
	assert_int_equal(nfreed, 3);
	/* the chain failed after its first intent was logged: the mount is
	 * shut down (changes refused with EIO, the log forces nothing);
	 * the lock was dropped: a read-only transaction still starts */
	assert_true(mp->shutdown);
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), -EIO);
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, RLFS_TRANS_RDONLY, &tp), 0);
	rlfs_trans_cancel(tp);
	unbare(mp);
}

static void test_defer_cancel_frees(void **state)
{
	(void)state;
	struct rlfs_mount *mp = bare();
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	for (unsigned id = 1; id <= 4; id++)
		assert_int_equal(rlfs_defer_add(tp, &note2_type, &note(id)->di), 0);
	rlfs_trans_cancel(tp);
	assert_int_equal(norder, 0);
	assert_int_equal(nfreed, 4);
	unbare(mp);
}

static void test_defer_no_log(void **state)
{
	(void)state;
	struct rlfs_mount *mp = bare();
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	struct note_item *a = note(4);
	a->nchildren = 1;
	a->steps = 2;
	assert_int_equal(rlfs_defer_add(tp, &note_type, &a->di), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	unsigned want[] = { 4, 4, 41 };
	assert_int_equal(norder, 3);
	assert_memory_equal(order, want, sizeof(want));
	assert_int_equal(nevs, 0);
	assert_int_equal(nfreed, 2);
	assert_int_equal(block10(mp, 41), 41);
	unbare(mp);
}

/* A type that only checks that the held inode is joined to the
 * transaction finishing it, taking `steps` transactions. */
static unsigned held_checks;
static int hold_finish(struct rlfs_trans *tp, struct rlfs_defer_item *item)
{
	struct note_item *n = (struct note_item *)item;
	assert_ptr_equal(expect_held->li_tp, tp);
	held_checks++;
	if (n->steps > 1) {
		n->steps--;
		return -EAGAIN;
	}
	return 0;
}

static const struct rlfs_defer_type hold_type = {
	.name = "hold", .intent_code = 0x7e05, .done_code = 0x7e06,
	.max_items = 1, .item_bytes = 2,
	.encode = note_encode, .finish_item = hold_finish, .cancel_item = note_cancel,
};

static void test_defer_held_inode(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64ull << 20, 0, 0);
	struct rlfs_mount *mp = fs.mp;
	norder = nfreed = nalloced = nevs = held_checks = 0;
	struct rlfs_inode *ip;
	assert_int_equal(rlfs_iget(mp, rlfs_root_ino(mp), &ip), 0);
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_defer_hold_inode(tp, ip), 0);
	assert_int_equal(rlfs_defer_hold_inode(tp, ip), 0);   /* once is enough */
	assert_int_equal(tp->ndheld, 1);
	expect_held = ip;
	struct note_item *a = note(5);
	a->steps = 3;
	assert_int_equal(rlfs_defer_add(tp, &hold_type, &a->di), 0);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	assert_int_equal(held_checks, 3);
	assert_null(ip->li_tp);   /* released with the last transaction */
	assert_int_equal(nfreed, 1);
	expect_held = NULL;
	rlfs_irele(ip);
	tu_unmount(&fs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defer_depth_first),
		cmocka_unit_test(test_defer_batches),
		cmocka_unit_test(test_defer_eagain_relogs),
		cmocka_unit_test(test_defer_failure),
		cmocka_unit_test(test_defer_cancel_frees),
		cmocka_unit_test(test_defer_no_log),
		cmocka_unit_test(test_defer_held_inode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

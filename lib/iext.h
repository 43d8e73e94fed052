/*
 * iext.h: the in-core extent list of an inode fork.
 *
 * The records of a fork (struct rlfs_irec), sorted by file offset, are
 * addressed by index as if they were one array, but are kept in leaves of
 * at most RLFS_IEXT_LEAF_RECS records.  Inserting or removing a record
 * moves at most one leaf's records and adjusts one index per leaf, not
 * the whole list: a file rewritten at random after a clone holds tens of
 * thousands of extents, and with one flat array every copy-on-write moved
 * half of them twice (the map and the unmap; a fifth of the daemon's time
 * at 76,000 extents).  XFS keeps its in-core extents in a b+tree for the
 * same reason (libxfs/xfs_iext_tree.c); two levels are enough here.
 *
 * Transactions and cancel.  A cancelled transaction puts the records back
 * through the inode's undo log (inode.c): a removed record returns with
 * rlfs_iext_reinsert, which never allocates memory.  That holds because
 * no leaf is freed and no leaf shrinks until rlfs_iext_trim, which the
 * inode calls when its transaction ends: the room a removal left stays
 * (in its leaf, or as a spare leaf) until then.
 *
 * Locking: the caller's (the inode's iolock: shared to read, exclusive to
 * change).  Pointers from rlfs_iext_at stay valid until the next insert,
 * remove or trim.
 */
#ifndef RLFS_IEXT_H
#define RLFS_IEXT_H

#include <stdbool.h>
#include <stdint.h>

/* One mapping of a fork in core: file blocks [startoff, startoff +
 * blockcount) at device blocks [startblock, ...). */
struct rlfs_irec {
	uint64_t startoff;          /* file block */
	uint64_t startblock;        /* fsbno */
	uint32_t blockcount;        /* blocks */
	uint32_t state;             /* RLFS_EXT_UNWRITTEN or 0 */
};

/* Records per leaf before it splits (24 bytes each: 3 KiB).  The first
 * leaf of a list starts with room for 4 and grows to this. */
#define RLFS_IEXT_LEAF_RECS 128u

struct rlfs_iext_leaf {
	uint32_t n;                   /* records held */
	uint32_t cap;                 /* records it has room for */
	struct rlfs_iext_leaf *next;  /* spare list link */
	struct rlfs_irec rec[];
};

/* Zero-initialised = empty. */
struct rlfs_iext {
	struct rlfs_iext_leaf **leaf; /* leaves in file order, each with >= 1 record */
	uint32_t *first;              /* first[k]: index of leaf[k]'s first record */
	uint32_t nleaves;
	uint32_t leaves_cap;          /* room in leaf[] and first[]: >= nleaves + nspare */
	struct rlfs_iext_leaf *spare; /* emptied leaves, kept until rlfs_iext_trim */
	uint32_t nspare;
	uint32_t count;               /* records in all leaves */
	uint32_t thin_leaf;           /* a leaf a removal left at most a quarter
				       * full (valid while thin), for trim */
	bool thin;
};

/* Leaf holding record idx (< count). */
static inline uint32_t rlfs_iext_leaf_of(const struct rlfs_iext *x, uint32_t idx)
{
	uint32_t lo = 0, hi = x->nleaves;   /* last k with first[k] <= idx */
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (x->first[mid] <= idx)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* Record idx (< rlfs_iext_count), as an lvalue: the caller may change
 * its fields in place as long as the order stays. */
static inline struct rlfs_irec *rlfs_iext_at(const struct rlfs_iext *x, uint32_t idx)
{
	if (x->nleaves == 1)
		return &x->leaf[0]->rec[idx];
	uint32_t k = rlfs_iext_leaf_of(x, idx);
	return &x->leaf[k]->rec[idx - x->first[k]];
}

static inline uint32_t rlfs_iext_count(const struct rlfs_iext *x)
{
	return x->count;
}

/* Index of the last record with startoff <= off, or -1 (none, or the list
 * is empty). */
int64_t rlfs_iext_search(const struct rlfs_iext *x, uint64_t off);

/* Put r at index idx (0..count; the records from idx on move up one).
 * The caller keeps the order.  0, or -ENOMEM with nothing changed. */
int rlfs_iext_insert(struct rlfs_iext *x, uint32_t idx, const struct rlfs_irec *r);

/* Make sure the next `more` rlfs_iext_insert calls allocate nothing (and
 * so cannot fail) until rlfs_iext_trim: for changes made after a commit,
 * which must not fail (the CoW fork).  0 or -ENOMEM. */
int rlfs_iext_reserve(struct rlfs_iext *x, uint32_t more);

/* rlfs_iext_insert without allocating: for putting back a record that
 * rlfs_iext_remove took out since the last rlfs_iext_trim (a cancel's
 * undo, newest change first).  Always succeeds then. */
void rlfs_iext_reinsert(struct rlfs_iext *x, uint32_t idx, const struct rlfs_irec *r);

/* Take record idx (< count) out; the records after it move down one.
 * Never fails, frees nothing (an emptied leaf waits as a spare). */
void rlfs_iext_remove(struct rlfs_iext *x, uint32_t idx);

/* Give back what removals left: free the spare leaves, and merge the
 * leaf the last removal left thin with a neighbour when together they
 * fill at most half a leaf (every neighbouring pair, when the leaves
 * hold fewer than an eighth of their room on average).  O(1) but for
 * that rare whole pass, so it can run after every transaction.  Not
 * while a cancel may still need rlfs_iext_reinsert. */
void rlfs_iext_trim(struct rlfs_iext *x);

/* Free everything; x is empty (and zeroed) after. */
void rlfs_iext_destroy(struct rlfs_iext *x);

#endif

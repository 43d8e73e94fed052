/*
 * iext.c: the in-core extent list of an inode fork, in leaves (iext.h).
 *
 * Shape: leaf[0..nleaves) in file order, each holding 1..cap records;
 * first[k] is the list index of leaf[k]'s first record, so record idx is
 * found by a binary search over first[] and an insert or remove adjusts
 * first[] of the leaves after it (a few hundred integers at 50,000
 * records) and moves records inside one leaf only.
 *
 * A full leaf splits (its upper half goes to a new leaf).  A leaf that
 * empties leaves the list but stays allocated as a spare, and no leaf
 * shrinks, until rlfs_iext_trim: so between two trims the room the list
 * has never decreases, and putting back a removed record
 * (rlfs_iext_reinsert) always finds room without malloc: in the leaf
 * where it goes, in a spare leaf, or by moving one record along the
 * leaves towards one with room.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "iext.h"

#define FIRST_LEAF_RECS 4u

static struct rlfs_iext_leaf *leaf_alloc(uint32_t cap)
{
	struct rlfs_iext_leaf *l = malloc(sizeof(*l) + (size_t)cap * sizeof(struct rlfs_irec));
	if (l) {
		l->n = 0;
		l->cap = cap;
		l->next = NULL;
	}
	return l;
}

/* Room for one more leaf in leaf[] and first[] (active + spare). */
static int leaves_reserve(struct rlfs_iext *x)
{
	uint32_t need = x->nleaves + x->nspare + 1;
	if (need <= x->leaves_cap)
		return 0;
	uint32_t cap = x->leaves_cap ? x->leaves_cap * 2 : 4;
	struct rlfs_iext_leaf **l = realloc(x->leaf, (size_t)cap * sizeof(*l));
	if (!l)
		return -ENOMEM;
	x->leaf = l;
	uint32_t *f = realloc(x->first, (size_t)cap * sizeof(*f));
	if (!f)
		return -ENOMEM;     /* leaf[] is larger: harmless */
	x->first = f;
	x->leaves_cap = cap;
	return 0;
}

/* Put leaf l into the list at position k (leaf[] has room: leaves_cap
 * counts spares), starting at record index start. */
static void leaf_link(struct rlfs_iext *x, uint32_t k, struct rlfs_iext_leaf *l, uint32_t start)
{
	memmove(&x->leaf[k + 1], &x->leaf[k], (size_t)(x->nleaves - k) * sizeof(*x->leaf));
	memmove(&x->first[k + 1], &x->first[k], (size_t)(x->nleaves - k) * sizeof(*x->first));
	x->leaf[k] = l;
	x->first[k] = start;
	x->nleaves++;
}

static void leaf_unlink(struct rlfs_iext *x, uint32_t k)
{
	memmove(&x->leaf[k], &x->leaf[k + 1], (size_t)(x->nleaves - k - 1) * sizeof(*x->leaf));
	memmove(&x->first[k], &x->first[k + 1], (size_t)(x->nleaves - k - 1) * sizeof(*x->first));
	x->nleaves--;
}

static struct rlfs_iext_leaf *spare_take(struct rlfs_iext *x)
{
	struct rlfs_iext_leaf *l = x->spare;
	if (l) {
		x->spare = l->next;
		x->nspare--;
		l->next = NULL;
		l->n = 0;
	}
	return l;
}

static void spare_put(struct rlfs_iext *x, struct rlfs_iext_leaf *l)
{
	l->n = 0;
	l->next = x->spare;
	x->spare = l;
	x->nspare++;
}

int64_t rlfs_iext_search(const struct rlfs_iext *x, uint64_t off)
{
	if (x->count == 0)
		return -1;
	/* last leaf whose first record starts at or before off */
	uint32_t lo = 0, hi = x->nleaves;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (x->leaf[mid]->rec[0].startoff <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return -1;
	const struct rlfs_iext_leaf *l = x->leaf[lo - 1];
	uint32_t a = 0, b = l->n;
	while (a < b) {
		uint32_t mid = a + (b - a) / 2;
		if (l->rec[mid].startoff <= off)
			a = mid + 1;
		else
			b = mid;
	}
	return (int64_t)x->first[lo - 1] + a - 1;
}

/* Records of leaves after k moved by delta (+1 insert, -1 remove). */
static void first_adjust(struct rlfs_iext *x, uint32_t k, int delta)
{
	for (uint32_t j = k + 1; j < x->nleaves; j++)
		x->first[j] += (uint32_t)delta;
}

/* Insert r at position pos of leaf k, which has room. */
static void leaf_insert(struct rlfs_iext *x, uint32_t k, uint32_t pos, const struct rlfs_irec *r)
{
	struct rlfs_iext_leaf *l = x->leaf[k];
	memmove(&l->rec[pos + 1], &l->rec[pos], (size_t)(l->n - pos) * sizeof(*l->rec));
	l->rec[pos] = *r;
	l->n++;
	x->count++;
	first_adjust(x, k, 1);
}

/* Move the last m records of full leaf k into the empty leaf nl, linked
 * after it. */
static void leaf_split(struct rlfs_iext *x, uint32_t k, struct rlfs_iext_leaf *nl, uint32_t m)
{
	struct rlfs_iext_leaf *l = x->leaf[k];
	memcpy(nl->rec, &l->rec[l->n - m], (size_t)m * sizeof(*l->rec));
	nl->n = m;
	l->n -= m;
	leaf_link(x, k + 1, nl, x->first[k] + l->n);
}

/* Last record of leaf k to the front of leaf k + 1 (which has room). */
static void shift_right(struct rlfs_iext *x, uint32_t k)
{
	struct rlfs_iext_leaf *a = x->leaf[k], *b = x->leaf[k + 1];
	memmove(&b->rec[1], &b->rec[0], (size_t)b->n * sizeof(*b->rec));
	b->rec[0] = a->rec[--a->n];
	b->n++;
	x->first[k + 1]--;
}

/* First record of leaf k to the end of leaf k - 1 (which has room). */
static void shift_left(struct rlfs_iext *x, uint32_t k)
{
	struct rlfs_iext_leaf *a = x->leaf[k - 1], *b = x->leaf[k];
	a->rec[a->n++] = b->rec[0];
	memmove(&b->rec[0], &b->rec[1], (size_t)(b->n - 1) * sizeof(*b->rec));
	b->n--;
	x->first[k]++;
}

/*
 * Where record idx goes: leaf *k at position *pos.  The leaf holding idx
 * (the last leaf for idx == count), or the end of the leaf before when idx
 * would be the first record of its leaf and the one before has room.
 */
static void place(const struct rlfs_iext *x, uint32_t idx, uint32_t *k, uint32_t *pos)
{
	if (idx == x->count) {
		*k = x->nleaves - 1;
		*pos = x->leaf[*k]->n;
		return;
	}
	*k = rlfs_iext_leaf_of(x, idx);
	*pos = idx - x->first[*k];
	if (*pos == 0 && *k > 0 && x->leaf[*k - 1]->n < x->leaf[*k - 1]->cap) {
		(*k)--;
		*pos = x->leaf[*k]->n;
	}
}

/* The full leaf k (record r at pos) splits into the empty leaf nl: its
 * upper half (at most what nl can take but one) moves there, then r goes
 * where it belongs.  An append at the very end moves nothing: the new
 * leaf starts with r (loading a list, or adding past EOF, leaves full
 * leaves behind, not half-full ones). */
static void split_insert(struct rlfs_iext *x, uint32_t k, uint32_t pos, struct rlfs_iext_leaf *nl,
			 const struct rlfs_irec *r)
{
	uint32_t n = x->leaf[k]->n;
	if (k == x->nleaves - 1 && pos == n) {
		leaf_split(x, k, nl, 0);
		leaf_insert(x, k + 1, 0, r);
		return;
	}
	uint32_t m = n / 2;
	if (m > nl->cap - 1)
		m = nl->cap - 1;
	if (m == 0)
		m = 1;
	leaf_split(x, k, nl, m);
	if (pos <= n - m)
		leaf_insert(x, k, pos, r);
	else
		leaf_insert(x, k + 1, pos - (n - m), r);
}

/* Make the first leaf of an empty list. */
static void first_leaf(struct rlfs_iext *x, struct rlfs_iext_leaf *l, const struct rlfs_irec *r)
{
	l->rec[0] = *r;
	l->n = 1;
	x->leaf[0] = l;
	x->first[0] = 0;
	x->nleaves = 1;
	x->count = 1;
}

int rlfs_iext_insert(struct rlfs_iext *x, uint32_t idx, const struct rlfs_irec *r)
{
	if (x->nleaves == 0) {
		struct rlfs_iext_leaf *l;
		if (x->spare) {
			l = spare_take(x);
		} else {
			if (leaves_reserve(x) || !(l = leaf_alloc(FIRST_LEAF_RECS)))
				return -ENOMEM;
		}
		first_leaf(x, l, r);
		return 0;
	}
	uint32_t k, pos;
	place(x, idx, &k, &pos);
	struct rlfs_iext_leaf *l = x->leaf[k];
	if (l->n < l->cap) {
		leaf_insert(x, k, pos, r);
		return 0;
	}
	if (x->spare) {
		/* room kept by a removal or rlfs_iext_reserve: no malloc */
		split_insert(x, k, pos, spare_take(x), r);
		return 0;
	}
	if (l->cap < RLFS_IEXT_LEAF_RECS) {
		/* a small leaf grows before anything splits */
		uint32_t cap = l->cap * 2 < RLFS_IEXT_LEAF_RECS ? l->cap * 2 : RLFS_IEXT_LEAF_RECS;
		struct rlfs_iext_leaf *g = realloc(l, sizeof(*g) + (size_t)cap * sizeof(*g->rec));
		if (!g)
			return -ENOMEM;
		g->cap = cap;
		x->leaf[k] = g;
		leaf_insert(x, k, pos, r);
		return 0;
	}
	struct rlfs_iext_leaf *nl;
	if (leaves_reserve(x) || !(nl = leaf_alloc(RLFS_IEXT_LEAF_RECS)))
		return -ENOMEM;
	split_insert(x, k, pos, nl, r);
	return 0;
}

int rlfs_iext_reserve(struct rlfs_iext *x, uint32_t more)
{
	while (x->nspare < more) {
		struct rlfs_iext_leaf *l;
		if (leaves_reserve(x) || !(l = leaf_alloc(RLFS_IEXT_LEAF_RECS)))
			return -ENOMEM;
		spare_put(x, l);
	}
	return 0;
}

void rlfs_iext_reinsert(struct rlfs_iext *x, uint32_t idx, const struct rlfs_irec *r)
{
	if (x->nleaves == 0) {
		/* the record came out of a leaf that is a spare now */
		first_leaf(x, spare_take(x), r);
		return;
	}
	uint32_t k, pos;
	place(x, idx, &k, &pos);
	if (x->leaf[k]->n < x->leaf[k]->cap) {
		leaf_insert(x, k, pos, r);
		return;
	}
	if (x->spare) {
		/* leaf[] has room for every spare (leaves_cap) */
		split_insert(x, k, pos, spare_take(x), r);
		return;
	}
	/* no spare: some leaf has room (between trims the room never
	 * shrinks, and this record had some); move one record per leaf
	 * towards it */
	for (uint32_t j = k + 1; j < x->nleaves; j++) {
		if (x->leaf[j]->n < x->leaf[j]->cap) {
			for (uint32_t t = j; t-- > k;)
				shift_right(x, t);
			/* leaf k lost its last record: record idx is at pos
			 * still, or (pos == old n - 1) first of k + 1, and
			 * pos is then leaf k's new end */
			leaf_insert(x, k, pos, r);
			return;
		}
	}
	/* room only before leaf k: r goes after record idx - 1, which stays
	 * in the leaf that held it */
	uint32_t kk = pos ? k : k - 1;
	for (uint32_t j = kk; j-- > 0;) {
		if (x->leaf[j]->n < x->leaf[j]->cap) {
			for (uint32_t t = j + 1; t <= kk; t++)
				shift_left(x, t);
			leaf_insert(x, kk, pos ? pos - 1 : x->leaf[kk]->n, r);
			return;
		}
	}
	abort();    /* the room reinsert relies on is gone: a bug */
}

void rlfs_iext_remove(struct rlfs_iext *x, uint32_t idx)
{
	uint32_t k = rlfs_iext_leaf_of(x, idx);
	struct rlfs_iext_leaf *l = x->leaf[k];
	uint32_t pos = idx - x->first[k];
	memmove(&l->rec[pos], &l->rec[pos + 1], (size_t)(l->n - pos - 1) * sizeof(*l->rec));
	l->n--;
	x->count--;
	first_adjust(x, k, -1);
	if (l->n == 0) {
		leaf_unlink(x, k);
		spare_put(x, l);
	} else if (l->n <= RLFS_IEXT_LEAF_RECS / 4) {
		x->thin = true;
		x->thin_leaf = k;
	}
}

/* Leaf k + 1 into leaf k if together they fill at most half a leaf.
 * True if merged. */
static bool try_merge(struct rlfs_iext *x, uint32_t k)
{
	struct rlfs_iext_leaf *a = x->leaf[k], *b = x->leaf[k + 1];
	if (a->n + b->n > RLFS_IEXT_LEAF_RECS / 2 || a->n + b->n > a->cap)
		return false;
	memcpy(&a->rec[a->n], b->rec, (size_t)b->n * sizeof(*b->rec));
	a->n += b->n;
	leaf_unlink(x, k + 1);
	free(b);
	return true;
}

void rlfs_iext_trim(struct rlfs_iext *x)
{
	while (x->spare)
		free(spare_take(x));
	bool thin = x->thin;
	x->thin = false;
	if (x->nleaves < 2)
		return;
	if ((uint64_t)x->nleaves * (RLFS_IEXT_LEAF_RECS / 8) > (uint64_t)x->count + RLFS_IEXT_LEAF_RECS) {
		/* thin on average: a whole pass */
		uint32_t k = 0;
		while (k + 1 < x->nleaves)
			if (!try_merge(x, k))
				k++;
		return;
	}
	if (!thin)
		return;
	/* the leaf the last removal thinned (indices may have moved since:
	 * any leaf there will do) with its right, then its left neighbour */
	uint32_t k = x->thin_leaf < x->nleaves ? x->thin_leaf : x->nleaves - 1;
	if (k + 1 < x->nleaves)
		try_merge(x, k);
	if (k > 0)
		try_merge(x, k - 1);
}

void rlfs_iext_destroy(struct rlfs_iext *x)
{
	for (uint32_t k = 0; k < x->nleaves; k++)
		free(x->leaf[k]);
	while (x->spare)
		free(spare_take(x));
	free(x->leaf);
	free(x->first);
	memset(x, 0, sizeof(*x));
}

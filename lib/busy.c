/*
 * busy.c: busy extents and busy inodes (see busy.h for the rules).
 * Model: xfs_extent_busy.c; the structures are our own:
 *
 *   - per AG, a treap (a binary search tree kept balanced by random
 *     priorities) of non-overlapping, non-touching busy ranges keyed by
 *     agbno, each with the sequence that must be durable before it is free;
 *     insert merges, lookups find the range at or before a block;
 *   - busy inodes: an open-addressing hash of inode chunks (startino) with
 *     a 64-bit mask of busy inodes and the largest sequence among them.
 *
 * Everything runs under mp->meta_lock.  The state is allocated on the
 * first free (a mount that frees nothing pays nothing) and hangs off
 * mp->busy.
 */
#include "busy.h"

#include <stdlib.h>
#include <string.h>

struct bnode {
	uint32_t agbno, len;        /* busy [agbno, agbno+len) */
	uint64_t seq;               /* free once this sequence is durable */
	uint32_t prio;
	struct bnode *l, *r;
};

struct ichunk {
	uint64_t startino;          /* UINT64_MAX = empty slot */
	uint64_t mask;
	uint64_t seq;
};

struct rlfs_busy {
	uint32_t agcount;
	struct bnode **root;        /* per AG */
	uint64_t *ag_blocks;        /* busy blocks per AG */
	uint64_t nblocks;           /* all AGs */
	struct bnode **uroot;       /* per AG: unshare-busy ranges */
	uint64_t *ag_ublocks;       /* unshare-busy blocks per AG */
	uint64_t nublocks;          /* all AGs */
	uint64_t prng;
	uint64_t durable_seq;
	uint64_t forces;
	uint64_t blocked;           /* rlfs_busy_note_blocked calls */
	bool heavy;                 /* rlfs_busy_note_heavy since the last take */
	uint64_t min_seq;           /* smallest seq of any entry (UINT64_MAX: none) */
	struct ichunk *ino;         /* hash of chunks, ino_cap slots */
	size_t ino_cap, ino_used;
	uint64_t ninodes;
};

static struct rlfs_busy *busy_get(struct rlfs_mount *mp)
{
	if (mp->busy)
		return mp->busy;
	struct rlfs_busy *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->agcount = mp->agcount;
	b->root = calloc(mp->agcount, sizeof(*b->root));
	b->ag_blocks = calloc(mp->agcount, sizeof(*b->ag_blocks));
	b->uroot = calloc(mp->agcount, sizeof(*b->uroot));
	b->ag_ublocks = calloc(mp->agcount, sizeof(*b->ag_ublocks));
	if (!b->root || !b->ag_blocks || !b->uroot || !b->ag_ublocks) {
		free(b->root);
		free(b->ag_blocks);
		free(b->uroot);
		free(b->ag_ublocks);
		free(b);
		return NULL;
	}
	b->prng = 0x9E3779B97F4A7C15ull ^ (uintptr_t)b;
	b->min_seq = UINT64_MAX;
	mp->busy = b;
	return b;
}

static uint32_t rnd(struct rlfs_busy *b)
{
	uint64_t x = b->prng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	b->prng = x;
	return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

/* ------------------------------------------------------------------ */
/* Treap                                                               */

/* Split t into keys < key (*a) and keys >= key (*bb). */
static void split(struct bnode *t, uint32_t key, struct bnode **a, struct bnode **bb)
{
	if (!t) {
		*a = *bb = NULL;
	} else if (t->agbno < key) {
		split(t->r, key, &t->r, bb);
		*a = t;
	} else {
		split(t->l, key, a, &t->l);
		*bb = t;
	}
}

/* Join a and bb (every key of a below every key of bb). */
static struct bnode *join(struct bnode *a, struct bnode *bb)
{
	if (!a)
		return bb;
	if (!bb)
		return a;
	if (a->prio > bb->prio) {
		a->r = join(a->r, bb);
		return a;
	}
	bb->l = join(a, bb->l);
	return bb;
}

/* Remove and return the node with the largest key of *t (NULL if empty). */
static struct bnode *pop_max(struct bnode **t)
{
	if (!*t)
		return NULL;
	if ((*t)->r)
		return pop_max(&(*t)->r);
	struct bnode *n = *t;
	*t = n->l;
	n->l = NULL;
	return n;
}

/* Free every node of t, adding their lengths to *blocks. */
static void free_all(struct bnode *t, uint64_t *blocks)
{
	while (t) {
		free_all(t->l, blocks);
		struct bnode *r = t->r;
		*blocks += t->len;
		free(t);
		t = r;
	}
}

/* The node with the largest agbno <= key, or NULL. */
static struct bnode *floor_node(struct bnode *t, uint32_t key)
{
	struct bnode *best = NULL;
	while (t) {
		if (t->agbno <= key) {
			best = t;
			t = t->r;
		} else {
			t = t->l;
		}
	}
	return best;
}

/* The node with the smallest agbno > key, or NULL. */
static struct bnode *above_node(struct bnode *t, uint32_t key)
{
	struct bnode *best = NULL;
	while (t) {
		if (t->agbno > key) {
			best = t;
			t = t->l;
		} else {
			t = t->r;
		}
	}
	return best;
}

/* Drop every node tagged <= seq; returns the new tree, counts blocks
 * dropped into *dropped and tracks the smallest surviving seq. */
static struct bnode *prune(struct bnode *t, uint64_t seq, uint64_t *dropped, uint64_t *min_seq)
{
	if (!t)
		return NULL;
	t->l = prune(t->l, seq, dropped, min_seq);
	t->r = prune(t->r, seq, dropped, min_seq);
	if (t->seq > seq) {
		if (t->seq < *min_seq)
			*min_seq = t->seq;
		return t;
	}
	struct bnode *n = join(t->l, t->r);
	*dropped += t->len;
	free(t);
	return n;
}

/* Insert [agbno, agbno+len) tagged seq into *root, merging; adds the
 * blocks newly covered to *ag_blocks and *nblocks. */
static int range_insert(struct rlfs_busy *b, struct bnode **root, uint64_t *ag_blocks,
			uint64_t *nblocks, uint32_t agbno, uint32_t len, uint64_t seq)
{
	struct bnode *nn = calloc(1, sizeof(*nn));
	if (!nn)
		return -ENOMEM;
	uint64_t s = agbno, e = (uint64_t)agbno + len, oldblocks = 0;
	struct bnode *lo, *mid, *hi;
	/* lo: ranges starting before agbno; the last may overlap or touch */
	split(*root, agbno, &lo, &hi);
	struct bnode *last = pop_max(&lo);
	if (last && (uint64_t)last->agbno + last->len >= s) {
		s = last->agbno;
		if ((uint64_t)last->agbno + last->len > e)
			e = (uint64_t)last->agbno + last->len;
		if (last->seq > seq)
			seq = last->seq;
		oldblocks += last->len;
		free(last);
	} else if (last) {
		lo = join(lo, last);
	}
	/* mid: ranges starting inside [agbno, e]: all merge */
	split(hi, e > UINT32_MAX ? UINT32_MAX : (uint32_t)e + 1, &mid, &hi);
	struct bnode *m;
	while ((m = pop_max(&mid))) {
		if ((uint64_t)m->agbno + m->len > e)
			e = (uint64_t)m->agbno + m->len;
		if (m->seq > seq)
			seq = m->seq;
		oldblocks += m->len;
		free(m);
	}
	nn->agbno = (uint32_t)s;
	nn->len = (uint32_t)(e - s);
	nn->seq = seq;
	nn->prio = rnd(b);
	*root = join(join(lo, nn), hi);
	*ag_blocks += nn->len - oldblocks;
	*nblocks += nn->len - oldblocks;
	if (seq < b->min_seq)
		b->min_seq = seq;
	return 0;
}

int rlfs_busy_insert(struct rlfs_mount *mp, uint32_t agno, uint32_t agbno, uint32_t len,
		     uint64_t seq)
{
	if (len == 0)
		return 0;
	struct rlfs_busy *b = busy_get(mp);
	if (!b || agno >= b->agcount)
		return b ? -EINVAL : -ENOMEM;
	return range_insert(b, &b->root[agno], &b->ag_blocks[agno], &b->nblocks, agbno, len, seq);
}

int rlfs_busy_insert_unshared(struct rlfs_mount *mp, uint32_t agno, uint32_t agbno,
			      uint32_t len, uint64_t seq)
{
	if (len == 0)
		return 0;
	struct rlfs_busy *b = busy_get(mp);
	if (!b || agno >= b->agcount)
		return b ? -EINVAL : -ENOMEM;
	return range_insert(b, &b->uroot[agno], &b->ag_ublocks[agno], &b->nublocks, agbno, len,
			    seq);
}

bool rlfs_busy_next_unshared(const struct rlfs_mount *mp, uint32_t agno, uint32_t agbno,
			     uint32_t end, uint32_t *pstart, uint32_t *pend)
{
	const struct rlfs_busy *b = mp->busy;
	if (agbno >= end || !b || agno >= b->agcount || !b->ag_ublocks[agno])
		return false;
	struct bnode *t = b->uroot[agno];
	struct bnode *f = floor_node(t, agbno);
	if (!f || (uint64_t)f->agbno + f->len <= agbno)
		f = above_node(t, agbno);
	if (!f || f->agbno >= end)
		return false;
	*pstart = RLFS_MAX(f->agbno, agbno);
	*pend = (uint32_t)RLFS_MIN((uint64_t)f->agbno + f->len, (uint64_t)end);
	return true;
}

bool rlfs_busy_next_free(struct rlfs_mount *mp, uint32_t agno, uint32_t agbno, uint32_t end,
			 uint32_t *pstart, uint32_t *pend)
{
	struct rlfs_busy *b = mp->busy;
	uint32_t s = agbno;
	if (s >= end)
		return false;
	if (!b || agno >= b->agcount || !b->ag_blocks[agno]) {
		*pstart = s;
		*pend = end;
		return true;
	}
	struct bnode *t = b->root[agno];
	/* a busy range covering s moves s past it (ranges never touch, so
	 * the block after it is not busy) */
	struct bnode *f = floor_node(t, s);
	if (f && (uint64_t)f->agbno + f->len > s) {
		if ((uint64_t)f->agbno + f->len >= end)
			return false;
		s = f->agbno + f->len;
	}
	struct bnode *nx = above_node(t, s);
	*pstart = s;
	*pend = nx && nx->agbno < end ? nx->agbno : end;
	return true;
}

/* ------------------------------------------------------------------ */
/* Busy inodes                                                         */

static size_t ihash(uint64_t startino, size_t cap)
{
	return (size_t)((startino / RLFS_INODES_PER_CHUNK) * 0x9E3779B97F4A7C15ull >> 7) &
	       (cap - 1);
}

static struct ichunk *ino_find(const struct rlfs_busy *b, uint64_t startino)
{
	if (!b || !b->ino_cap)
		return NULL;
	for (size_t i = ihash(startino, b->ino_cap);; i = (i + 1) & (b->ino_cap - 1)) {
		if (b->ino[i].startino == startino)
			return &b->ino[i];
		if (b->ino[i].startino == UINT64_MAX)
			return NULL;
	}
}

/* Put e into table (cap slots, a power of two, never full). */
static void ino_place(struct ichunk *table, size_t cap, const struct ichunk *e)
{
	size_t i = ihash(e->startino, cap);
	while (table[i].startino != UINT64_MAX)
		i = (i + 1) & (cap - 1);
	table[i] = *e;
}

/* Rebuild the table with cap slots, keeping entries tagged > keep_above. */
static int ino_rehash(struct rlfs_busy *b, size_t cap, uint64_t keep_above, uint64_t *min_seq)
{
	struct ichunk *t = malloc(cap * sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < cap; i++)
		t[i].startino = UINT64_MAX;
	size_t used = 0;
	uint64_t ninodes = 0;
	for (size_t i = 0; i < b->ino_cap; i++) {
		const struct ichunk *e = &b->ino[i];
		if (e->startino == UINT64_MAX || e->seq <= keep_above)
			continue;
		ino_place(t, cap, e);
		used++;
		ninodes += (uint64_t)__builtin_popcountll(e->mask);
		if (e->seq < *min_seq)
			*min_seq = e->seq;
	}
	free(b->ino);
	b->ino = t;
	b->ino_cap = cap;
	b->ino_used = used;
	b->ninodes = ninodes;
	return 0;
}

int rlfs_busy_insert_ino(struct rlfs_mount *mp, uint64_t ino, uint64_t seq)
{
	struct rlfs_busy *b = busy_get(mp);
	if (!b)
		return -ENOMEM;
	uint64_t start = ino - ino % RLFS_INODES_PER_CHUNK, bit = 1ull << (ino - start);
	struct ichunk *e = ino_find(b, start);
	if (!e) {
		if ((b->ino_used + 1) * 2 > b->ino_cap) {
			uint64_t unused = UINT64_MAX;
			int err = ino_rehash(b, b->ino_cap ? b->ino_cap * 2 : 64, 0, &unused);
			if (err)
				return err;
		}
		struct ichunk ne = { .startino = start, .mask = 0, .seq = 0 };
		ino_place(b->ino, b->ino_cap, &ne);
		b->ino_used++;
		e = ino_find(b, start);
	}
	if (!(e->mask & bit))
		b->ninodes++;
	e->mask |= bit;
	if (seq > e->seq)
		e->seq = seq;
	if (seq < b->min_seq)
		b->min_seq = seq;
	return 0;
}

uint64_t rlfs_busy_ino_mask(const struct rlfs_mount *mp, uint64_t startino)
{
	const struct rlfs_busy *b = mp->busy;
	if (!b || !b->ninodes)
		return 0;
	const struct ichunk *e = ino_find(b, startino);
	return e ? e->mask : 0;
}

/* ------------------------------------------------------------------ */
/* Durability                                                          */

void rlfs_busy_clear_durable(struct rlfs_mount *mp, uint64_t seq)
{
	struct rlfs_busy *b = mp->busy;
	if (!b)
		return;
	if (seq > b->durable_seq)
		b->durable_seq = seq;
	if (b->min_seq > seq)
		return; /* nothing that old */
	uint64_t min_seq = UINT64_MAX;
	for (uint32_t agno = 0; agno < b->agcount; agno++) {
		if (!b->root[agno])
			continue;
		uint64_t dropped = 0;
		b->root[agno] = prune(b->root[agno], seq, &dropped, &min_seq);
		b->ag_blocks[agno] -= dropped;
		b->nblocks -= dropped;
	}
	for (uint32_t agno = 0; agno < b->agcount; agno++) {
		if (!b->uroot[agno])
			continue;
		uint64_t dropped = 0;
		b->uroot[agno] = prune(b->uroot[agno], seq, &dropped, &min_seq);
		b->ag_ublocks[agno] -= dropped;
		b->nublocks -= dropped;
	}
	if (b->ino_used && ino_rehash(b, b->ino_cap, seq, &min_seq)) {
		/* no memory for the new table: every entry stays busy (safe),
		 * to be cleared by a later call */
		for (size_t i = 0; i < b->ino_cap; i++)
			if (b->ino[i].startino != UINT64_MAX && b->ino[i].seq < min_seq)
				min_seq = b->ino[i].seq;
	}
	b->min_seq = min_seq;
}

uint64_t rlfs_busy_durable_seq(const struct rlfs_mount *mp)
{
	return mp->busy ? mp->busy->durable_seq : 0;
}

bool rlfs_busy_forceable(const struct rlfs_mount *mp)
{
	const struct rlfs_busy *b = mp->busy;
	return b && (b->nblocks || b->ninodes) && b->min_seq <= mp->trans_seq;
}

void rlfs_busy_note_heavy(struct rlfs_mount *mp)
{
	if (mp->busy)
		mp->busy->heavy = true;
}

bool rlfs_busy_take_heavy(struct rlfs_mount *mp)
{
	if (!mp->busy || !mp->busy->heavy)
		return false;
	mp->busy->heavy = false;
	return true;
}

int rlfs_busy_force_retry(struct rlfs_trans *tp, bool blocked)
{
	if (!blocked || !rlfs_busy_forceable(tp->mp))
		return -ENOSPC;
	int err = rlfs_busy_force(tp);
	return err == -EAGAIN ? -ENOSPC : err;
}

int rlfs_busy_force(struct rlfs_trans *tp)
{
	struct rlfs_mount *mp = tp->mp;
	size_t n = 0, cap = 0;
	struct rlfs_buf **sw = NULL;
	bool *was_logged = NULL;
	int err = 0;

	/* Buffers of tp that carry committed changes not yet on disk (dirty)
	 * must go out as they were before tp touched them: swap their
	 * before-images in for the flush.  rlfs_buf_flush_all skips buffers
	 * logged in an open transaction, so clear logged while swapped. */
	for (struct rlfs_buf *bp = tp->bufs; bp; bp = bp->tnext) {
		if (!(bp->flags & RLFS_BUF_DIRTY))
			continue;
		if (!bp->undo) {
			err = -EAGAIN;
			break;
		}
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct rlfs_buf **s2 = realloc(sw, nc * sizeof(*s2));
			bool *w2 = s2 ? realloc(was_logged, nc * sizeof(*w2)) : NULL;
			if (s2)
				sw = s2;
			if (!s2 || !w2) {
				err = -ENOMEM;
				break;
			}
			was_logged = w2;
			cap = nc;
		}
		sw[n] = bp;
		was_logged[n] = bp->logged;
		n++;
	}
	if (!err) {
		for (size_t i = 0; i < n; i++) {
			void *d = sw[i]->data;
			sw[i]->data = sw[i]->undo;
			sw[i]->undo = d;
			sw[i]->logged = false;
		}
		err = rlfs_buf_flush_all(mp);
		for (size_t i = 0; i < n; i++) {
			void *d = sw[i]->data;
			sw[i]->data = sw[i]->undo;
			sw[i]->undo = d;
			sw[i]->logged = was_logged[i];
		}
		if (mp->busy)
			mp->busy->forces++;
	}
	free(sw);
	free(was_logged);
	return err;
}

/* ------------------------------------------------------------------ */

void rlfs_busy_note_blocked(struct rlfs_mount *mp)
{
	if (mp->busy)
		mp->busy->blocked++;
}

uint64_t rlfs_busy_blocked(const struct rlfs_mount *mp)
{
	return mp->busy ? mp->busy->blocked : 0;
}

uint64_t rlfs_busy_blocks(const struct rlfs_mount *mp)
{
	return mp->busy ? mp->busy->nblocks : 0;
}

uint64_t rlfs_busy_unshared_blocks(const struct rlfs_mount *mp)
{
	return mp->busy ? mp->busy->nublocks : 0;
}

uint64_t rlfs_busy_inodes(const struct rlfs_mount *mp)
{
	return mp->busy ? mp->busy->ninodes : 0;
}

uint64_t rlfs_busy_forces(const struct rlfs_mount *mp)
{
	return mp->busy ? mp->busy->forces : 0;
}

void rlfs_busy_destroy(struct rlfs_mount *mp)
{
	struct rlfs_busy *b = mp->busy;
	if (!b)
		return;
	for (uint32_t agno = 0; agno < b->agcount; agno++) {
		uint64_t blocks = 0;
		free_all(b->root[agno], &blocks);
		free_all(b->uroot[agno], &blocks);
	}
	free(b->root);
	free(b->ag_blocks);
	free(b->uroot);
	free(b->ag_ublocks);
	free(b->ino);
	free(b);
	mp->busy = NULL;
}

/*
 * dedupe_hash.c: block hashes, the bounded in-memory block-hash table and
 * run growing of `reflinkfs dedupe` (tools/dedupe.h has the contracts).
 *
 * The table holds one entry per distinct block content seen so far (the
 * first place it was seen): 24 bytes per block (16-byte key, 4-byte file
 * index, 4-byte block index), in one array that doubles as it fills up
 * to the memory cap, open addressing with linear probing.  A matching block found in it is a
 * seed; dd_grow_run grows the seed into the longest run of equal block
 * hashes backwards and forwards, as bees does (bees' "extend match"), so
 * the tool finds runs at any block offset in either file without the
 * table holding every block of the run.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "dedupe.h"

struct dd_hash dd_hash_block(const void *data, size_t len)
{
	XXH128_hash_t x = XXH3_128bits(data, len);
	struct dd_hash h = { x.low64, x.high64 };
	if (h.lo == 0 && h.hi == 0)
		h.lo = 1;
	return h;
}

int dd_table_init(struct dd_table *t, uint64_t mem_bytes, uint64_t need_entries)
{
	uint64_t cap = 1024;
	while (cap * 2 * sizeof(struct dd_table_entry) <= mem_bytes && cap < (1ULL << 40) &&
	       (need_entries == 0 || cap * 3 / 4 < need_entries))
		cap *= 2;
	memset(t, 0, sizeof(*t));
	t->max_capacity = cap;
	if (cap > DD_TABLE_START)
		cap = DD_TABLE_START;
	t->slot = calloc(cap, sizeof(struct dd_table_entry));
	if (!t->slot)
		return -ENOMEM;
	t->capacity = cap;
	t->sample_k = 1;
	return 0;
}

void dd_table_free(struct dd_table *t)
{
	free(t->slot);
	memset(t, 0, sizeof(*t));
}

struct dd_hash dd_table_key(const struct dd_hash *h, dev_t dev)
{
	/* the slot comes from lo, the sample test from hi: independent bits,
	 * so the sampled keys still spread over all slots */
	struct dd_hash k = { h->lo ^ ((uint64_t)dev * 0x9e3779b97f4a7c15ULL), h->hi };
	return k;
}

bool dd_table_sampled(const struct dd_table *t, const struct dd_hash *key)
{
	return (key->hi & (t->sample_k - 1)) == 0;
}

struct dd_table_entry *dd_table_lookup(struct dd_table *t, const struct dd_hash *key)
{
	if (!dd_table_sampled(t, key))
		return NULL;
	uint64_t mask = t->capacity - 1;
	for (uint64_t i = key->lo & mask;; i = (i + 1) & mask) {
		struct dd_table_entry *e = &t->slot[i];
		if (e->blk1 == 0)
			return NULL;
		if (e->key_lo == key->lo && e->key_hi == key->hi)
			return e;
	}
}

/* Put e into its first free slot from its home (e's key is not present). */
static void place(struct dd_table *t, const struct dd_table_entry *e)
{
	uint64_t mask = t->capacity - 1;
	uint64_t i = e->key_lo & mask;
	while (t->slot[i].blk1 != 0)
		i = (i + 1) & mask;
	t->slot[i] = *e;
}

/* Double the sampling modulus: drop the entries outside the new sample,
 * then re-place the rest in place (starting just after an empty slot, so
 * that no probe chain wraps into one not yet re-placed). */
static void degrade(struct dd_table *t)
{
	t->sample_k *= 2;
	t->degrades++;
	uint64_t mask = t->capacity - 1, empty = UINT64_MAX;
	for (uint64_t i = 0; i < t->capacity; i++) {
		struct dd_table_entry *e = &t->slot[i];
		if (e->blk1 != 0 && (e->key_hi & (t->sample_k - 1)) != 0) {
			e->blk1 = 0;
			t->used--;
		}
		if (e->blk1 == 0 && empty == UINT64_MAX)
			empty = i;
	}
	if (empty == UINT64_MAX)
		return;             /* cannot happen: the table is at most 3/4 full */
	for (uint64_t n = 1; n <= t->capacity; n++) {
		uint64_t i = (empty + n) & mask;
		if (t->slot[i].blk1 == 0)
			continue;
		struct dd_table_entry e = t->slot[i];
		t->slot[i].blk1 = 0;
		place(t, &e);
	}
}

/* Double the table (entries re-placed in the new array); false if it is
 * at its cap or the allocation fails. */
static bool grow(struct dd_table *t)
{
	if (t->capacity >= t->max_capacity)
		return false;
	struct dd_table_entry *old = t->slot;
	uint64_t n = t->capacity;
	struct dd_table_entry *slot = calloc(n * 2, sizeof(*slot));
	if (!slot) {
		t->max_capacity = n;
		return false;
	}
	t->slot = slot;
	t->capacity = n * 2;
	for (uint64_t i = 0; i < n; i++)
		if (old[i].blk1 != 0)
			place(t, &old[i]);
	free(old);
	return true;
}

int dd_table_insert(struct dd_table *t, const struct dd_hash *key, uint32_t file, uint64_t blk)
{
	if (blk > DD_MAX_BLK || !dd_table_sampled(t, key))
		return 1;
	struct dd_table_entry *e = dd_table_lookup(t, key);
	if (e) {
		e->file = file;
		e->blk1 = (uint32_t)blk + 1;
		return 0;
	}
	while ((t->used + 1) * 4 > t->capacity * 3) {
		if (grow(t))
			continue;
		degrade(t);
		if (!dd_table_sampled(t, key))
			return 1;
	}
	struct dd_table_entry n = { key->lo, key->hi, file, (uint32_t)blk + 1 };
	place(t, &n);
	t->used++;
	return 0;
}

/* Equal and not holes. */
static int same_block(dd_hash_get_fn get, void *priv, uint64_t dblk, uint64_t sblk, bool *eq)
{
	struct dd_hash a, b;
	int r = get(priv, 0, dblk, &a);
	if (r == 0)
		r = get(priv, 1, sblk, &b);
	if (r)
		return r;
	*eq = !dd_hash_is_hole(&a) && dd_hash_eq(&a, &b);
	return 0;
}

int dd_grow_run(dd_hash_get_fn get, void *priv, uint64_t dst_seed, uint64_t src_seed,
		uint64_t dst_floor, uint64_t dst_nblocks, uint64_t src_nblocks, bool same_file,
		struct dd_run *run)
{
	if (dst_seed >= dst_nblocks || src_seed >= src_nblocks || dst_seed < dst_floor ||
	    (same_file && src_seed >= dst_seed))
		return -EINVAL;
	bool eq;
	int r = same_block(get, priv, dst_seed, src_seed, &eq);
	if (r)
		return r;
	if (!eq)
		return -EINVAL;
	uint64_t d0 = dst_seed, s0 = src_seed, d1 = dst_seed + 1, s1 = src_seed + 1;
	/* backwards: same file keeps s1 <= d0 */
	while (d0 > dst_floor && s0 > 0 && (!same_file || s1 <= d0 - 1)) {
		if ((r = same_block(get, priv, d0 - 1, s0 - 1, &eq)) != 0)
			return r;
		if (!eq)
			break;
		d0--;
		s0--;
	}
	/* forwards: same file keeps s1 <= d0 */
	while (d1 < dst_nblocks && s1 < src_nblocks && (!same_file || s1 + 1 <= d0)) {
		if ((r = same_block(get, priv, d1, s1, &eq)) != 0)
			return r;
		if (!eq)
			break;
		d1++;
		s1++;
	}
	run->dst_blk = d0;
	run->src_blk = s0;
	run->nblocks = d1 - d0;
	return 0;
}

/* ---- hashes of shared device blocks (struct dd_pcache) ---- */

void dd_pcache_init(struct dd_pcache *pc, uint64_t max_bytes)
{
	memset(pc, 0, sizeof(*pc));
	pc->max_bytes = max_bytes;
}

void dd_pcache_free(struct dd_pcache *pc)
{
	free(pc->slots);
	pc->slots = NULL;
	pc->capacity = pc->used = 0;
}

static uint64_t pcache_slot(const struct dd_pcache *pc, uint64_t dev, uint64_t phys)
{
	uint64_t x = (phys ^ (dev * 0x9E3779B97F4A7C15ull)) * 0xBF58476D1CE4E5B9ull;
	return (x ^ (x >> 31)) & (pc->capacity - 1);
}

bool dd_pcache_get(const struct dd_pcache *pc, uint64_t dev, uint64_t phys, struct dd_hash *h)
{
	if (!pc->capacity || !phys)
		return false;
	for (uint64_t i = pcache_slot(pc, dev, phys);; i = (i + 1) & (pc->capacity - 1)) {
		const struct dd_pcache_entry *e = &pc->slots[i];
		if (!e->phys)
			return false;
		if (e->phys == phys && e->dev == dev) {
			*h = e->h;
			return true;
		}
	}
}

void dd_pcache_put(struct dd_pcache *pc, uint64_t dev, uint64_t phys, const struct dd_hash *h)
{
	if (!phys || pc->failed)
		return;
	if (!pc->capacity) {
		uint64_t cap = 1024;
		while (cap * 2 * sizeof(struct dd_pcache_entry) <= pc->max_bytes && cap < (1ull << 30))
			cap *= 2;
		pc->slots = calloc(cap, sizeof(*pc->slots));
		if (!pc->slots) {
			pc->failed = true;
			return;
		}
		pc->capacity = cap;
	}
	if (pc->used >= pc->capacity / 4 * 3)
		return;
	for (uint64_t i = pcache_slot(pc, dev, phys);; i = (i + 1) & (pc->capacity - 1)) {
		struct dd_pcache_entry *e = &pc->slots[i];
		if (!e->phys) {
			e->dev = dev;
			e->phys = phys;
			e->h = *h;
			pc->used++;
			return;
		}
		if (e->phys == phys && e->dev == dev) {
			e->h = *h;
			return;
		}
	}
}

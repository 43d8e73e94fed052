/*
 * buf.c: the metadata buffer cache.
 *
 * A buffer caches one metadata block.  Buffers live in a hash table keyed
 * by fsbno.  A buffer is in exactly one of these states:
 *   held     refcount > 0 (a transaction or a caller has it);
 *   dirty    refcount == 0 but changed since last written: stays in memory
 *            until rlfs_buf_flush_all() writes it;
 *   clean    refcount == 0, not dirty: on the LRU list, evicted (oldest
 *            first) once the clean buffers exceed the cache budget.
 * Verification: the type's verifier runs when a block is read from the
 * device, and again (after the crc is stamped) right before it is written,
 * so neither a corrupt disk block nor an in-memory bug reaches the other
 * side silently.  Model: xfs_buf.c (verifiers), SQLite pager.c (LRU of clean
 * pages, dirty pages written in page order at commit).
 *
 * Locking: every function runs under mp->meta_lock (see rlfs.h).
 */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "busy.h"
#include "dev.h"
#include "log.h"
#include "reflinkfs/fs.h"

#define HASH_BITS 16
#define HASH_SIZE (1u << HASH_BITS)

struct rlfs_bcache {
	struct rlfs_buf *hash[HASH_SIZE];  /* by block: chains of bp->hnext */
	struct rlfs_buf *ghash[HASH_SIZE]; /* by group of blocks: bp->gnext */
	struct rlfs_buf lru;        /* dummy head of the clean LRU list */
	struct rlfs_buf dirty;      /* dummy head of the list of dirty buffers */
	size_t clean_bytes;
	size_t max_clean_bytes;
	size_t nbufs;
	size_t ndirty;
	/* free block-sized memory (rlfs_blk_get/put): a stack linked through
	 * the first bytes of each block */
	void *blk_free;
	size_t nblk_free;
};

/* Every buffer is on two chains: hash, by its block (lookups walk about
 * one buffer), and ghash, by its run of 16 consecutive blocks, so that
 * the buffers of a block range are found with one probe per group
 * (rlfs_buf_find_range, called for every extent freed).  One table keyed
 * by group made each lookup walk the other buffers of its group: the
 * blocks of an inode chunk or a growing directory are neighbours. */
#define HASH_GROUP_SHIFT 4
static unsigned hash_mix(uint64_t key)
{
	return (unsigned)((key * 0x9E3779B97F4A7C15ull) >> (64 - HASH_BITS));
}

static unsigned hash_of_group(uint64_t group)
{
	return hash_mix(group);
}

static unsigned hash_of(uint64_t fsbno)
{
	return hash_mix(fsbno);
}

int rlfs_bcache_init(struct rlfs_mount *mp, size_t max_clean_bytes)
{
	struct rlfs_bcache *bc = calloc(1, sizeof(*bc));
	if (!bc)
		return -ENOMEM;
	bc->lru.lru_next = bc->lru.lru_prev = &bc->lru;
	bc->dirty.dirty_next = bc->dirty.dirty_prev = &bc->dirty;
	bc->max_clean_bytes = max_clean_bytes;
	mp->bcache = bc;
	return 0;
}

static void lru_del(struct rlfs_bcache *bc, struct rlfs_buf *bp, uint32_t bsize)
{
	if (!bp->lru_next)
		return;
	bp->lru_prev->lru_next = bp->lru_next;
	bp->lru_next->lru_prev = bp->lru_prev;
	bp->lru_next = bp->lru_prev = NULL;
	bc->clean_bytes -= bsize;
}

static void lru_add(struct rlfs_bcache *bc, struct rlfs_buf *bp, uint32_t bsize)
{
	bp->lru_prev = bc->lru.lru_prev;
	bp->lru_next = &bc->lru;
	bc->lru.lru_prev->lru_next = bp;
	bc->lru.lru_prev = bp;
	bc->clean_bytes += bsize;
}

/* DIRTY set/cleared together with the dirty list and ndirty */
static void dirty_add(struct rlfs_bcache *bc, struct rlfs_buf *bp)
{
	bp->flags |= RLFS_BUF_DIRTY;
	bp->dirty_prev = bc->dirty.dirty_prev;
	bp->dirty_next = &bc->dirty;
	bc->dirty.dirty_prev->dirty_next = bp;
	bc->dirty.dirty_prev = bp;
	bc->ndirty++;
}

static void dirty_del(struct rlfs_bcache *bc, struct rlfs_buf *bp)
{
	bp->flags &= ~RLFS_BUF_DIRTY;
	bp->dirty_prev->dirty_next = bp->dirty_next;
	bp->dirty_next->dirty_prev = bp->dirty_prev;
	bp->dirty_next = bp->dirty_prev = NULL;
	bc->ndirty--;
}

static struct rlfs_buf *hash_find(struct rlfs_bcache *bc, uint64_t fsbno)
{
	for (struct rlfs_buf *bp = bc->hash[hash_of(fsbno)]; bp; bp = bp->hnext)
		if (bp->fsbno == fsbno)
			return bp;
	return NULL;
}

static void hash_del(struct rlfs_bcache *bc, struct rlfs_buf *bp)
{
	struct rlfs_buf **pp = &bc->hash[hash_of(bp->fsbno)];
	while (*pp && *pp != bp)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = bp->hnext;
	pp = &bc->ghash[hash_of_group(bp->fsbno >> HASH_GROUP_SHIFT)];
	while (*pp && *pp != bp)
		pp = &(*pp)->gnext;
	if (*pp)
		*pp = bp->gnext;
}

static void buf_free(struct rlfs_buf *bp)
{
	free(bp->data);
	free(bp->undo);
	free(bp);
}

/* Drop a buffer from the cache entirely (must be unheld). */
static void buf_evict(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	struct rlfs_bcache *bc = mp->bcache;
	lru_del(bc, bp, mp->blocksize);
	if (bp->flags & RLFS_BUF_DIRTY)
		dirty_del(bc, bp);
	hash_del(bc, bp);
	bc->nbufs--;
	buf_free(bp);
}

static void shrink(struct rlfs_mount *mp)
{
	struct rlfs_bcache *bc = mp->bcache;
	while (bc->clean_bytes > bc->max_clean_bytes && bc->lru.lru_next != &bc->lru)
		buf_evict(mp, bc->lru.lru_next);
}

void rlfs_bcache_destroy(struct rlfs_mount *mp)
{
	struct rlfs_bcache *bc = mp->bcache;
	if (!bc)
		return;
	for (unsigned i = 0; i < HASH_SIZE; i++) {
		struct rlfs_buf *bp = bc->hash[i];
		while (bp) {
			struct rlfs_buf *next = bp->hnext;
			buf_free(bp);
			bp = next;
		}
	}
	while (bc->blk_free) {
		void *next = *(void **)bc->blk_free;
		free(bc->blk_free);
		bc->blk_free = next;
	}
	free(bc);
	mp->bcache = NULL;
}

void *rlfs_blk_get(struct rlfs_mount *mp)
{
	struct rlfs_bcache *bc = mp->bcache;
	if (!bc || !bc->blk_free)
		return malloc(mp->blocksize);
	void *p = bc->blk_free;
	bc->blk_free = *(void **)p;
	bc->nblk_free--;
	return p;
}

void rlfs_blk_put(struct rlfs_mount *mp, void *p)
{
	struct rlfs_bcache *bc = mp->bcache;
	if (!p)
		return;
	if (!bc || bc->nblk_free >= RLFS_BLK_FREE_MAX) {
		free(p);
		return;
	}
	*(void **)p = bc->blk_free;
	bc->blk_free = p;
	bc->nblk_free++;
}

static struct rlfs_buf *buf_alloc(struct rlfs_mount *mp, uint64_t fsbno)
{
	struct rlfs_buf *bp = calloc(1, sizeof(*bp));
	if (!bp)
		return NULL;
	/* malloc: posix_memalign's aligned path is slow on a fragmented
	 * heap, and no block buffer is written with O_DIRECT (single
	 * blocks are below RLFS_DIO_MIN_BYTES; runs are copied) */
	bp->data = malloc(mp->blocksize);
	if (!bp->data) {
		free(bp);
		return NULL;
	}
	bp->fsbno = fsbno;
	return bp;
}

static void hash_add(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	struct rlfs_bcache *bc = mp->bcache;
	unsigned h = hash_of(bp->fsbno);
	bp->hnext = bc->hash[h];
	bc->hash[h] = bp;
	h = hash_of_group(bp->fsbno >> HASH_GROUP_SHIFT);
	bp->gnext = bc->ghash[h];
	bc->ghash[h] = bp;
	bc->nbufs++;
}

void rlfs_blkhdr_init(struct rlfs_mount *mp, void *block, uint32_t magic,
		      uint64_t fsbno, uint64_t owner)
{
	struct rlfs_blkhdr *h = block;
	rlfs_put32(h->magic, magic);
	rlfs_put32(h->crc, 0);
	rlfs_put64(h->blkno, fsbno);
	rlfs_put64(h->owner, owner);
	memcpy(h->uuid, mp->uuid, RLFS_UUID_SIZE);
	rlfs_put64(h->lsn, 0);
}

int rlfs_blkhdr_verify(struct rlfs_mount *mp, struct rlfs_buf *bp, uint64_t owner)
{
	const struct rlfs_blkhdr *h = bp->data;
	const char *what = bp->ops ? bp->ops->name : "block";
	if (rlfs_get32(h->magic) != bp->ops->magic)
		return rlfs_corrupt(mp, bp->fsbno, what, "bad magic 0x%08x (want 0x%08x)",
				    rlfs_get32(h->magic), bp->ops->magic);
	if (rlfs_get64(h->blkno) != bp->fsbno)
		return rlfs_corrupt(mp, bp->fsbno, what, "block claims to be fsbno %llu",
				    (unsigned long long)rlfs_get64(h->blkno));
	if (memcmp(h->uuid, mp->uuid, RLFS_UUID_SIZE))
		return rlfs_corrupt(mp, bp->fsbno, what, "uuid does not match the filesystem");
	if (owner != RLFS_OWNER_ANY && rlfs_get64(h->owner) != owner)
		return rlfs_corrupt(mp, bp->fsbno, what, "owner %llu, expected %llu",
				    (unsigned long long)rlfs_get64(h->owner),
				    (unsigned long long)owner);
	return 0;
}

/* Full verification of bp's contents as type ops (crc included). */
static int verify_as(struct rlfs_mount *mp, struct rlfs_buf *bp,
		     const struct rlfs_buf_ops *ops, uint64_t owner, bool check_crc)
{
	const struct rlfs_buf_ops *saved = bp->ops;
	int err = 0;
	bp->ops = ops;
	if (ops->has_hdr) {
		if (check_crc && !rlfs_cksum_verify(bp->data, mp->blocksize, RLFS_CRC_OFF)) {
			/* report magic problems first: they say more */
			const struct rlfs_blkhdr *h = bp->data;
			if (rlfs_get32(h->magic) != ops->magic)
				err = rlfs_blkhdr_verify(mp, bp, owner);
			else
				err = rlfs_corrupt(mp, bp->fsbno, ops->name, "bad crc32c");
		} else {
			err = rlfs_blkhdr_verify(mp, bp, owner);
		}
	}
	if (!err && ops->verify)
		err = ops->verify(mp, bp);
	bp->ops = saved;
	return err;
}

int rlfs_buf_read(struct rlfs_mount *mp, uint64_t fsbno,
		  const struct rlfs_buf_ops *ops, uint64_t owner,
		  struct rlfs_buf **bpp)
{
	struct rlfs_bcache *bc = mp->bcache;
	if (fsbno >= mp->dblocks)
		return rlfs_corrupt(mp, fsbno, ops->name, "block number beyond the device (%llu blocks)",
				    (unsigned long long)mp->dblocks);
	struct rlfs_buf *bp = hash_find(bc, fsbno);
	if (bp) {
		if (bp->flags & RLFS_BUF_STALE)
			return rlfs_corrupt(mp, fsbno, ops->name, "pointer to a freed block");
		if (bp->ops != ops) {
			/* the same block read as another type: a bad pointer */
			int err = verify_as(mp, bp, ops, owner, true);
			if (err)
				return err;
			bp->ops = ops;
		} else if (ops->has_hdr && owner != RLFS_OWNER_ANY) {
			int err = rlfs_blkhdr_verify(mp, bp, owner);
			if (err)
				return err;
		}
		if (bp->refcount++ == 0)
			lru_del(bc, bp, mp->blocksize);
		*bpp = bp;
		return 0;
	}
	bp = buf_alloc(mp, fsbno);
	if (!bp)
		return -ENOMEM;
	int err = rlfs_dev_pread(mp->dev, bp->data, mp->blocksize, fsbno << mp->blocklog);
	if (!err)
		err = verify_as(mp, bp, ops, owner, true);
	if (err) {
		buf_free(bp);
		return err;
	}
	bp->ops = ops;
	bp->refcount = 1;
	hash_add(mp, bp);
	shrink(mp);
	*bpp = bp;
	return 0;
}

int rlfs_buf_get(struct rlfs_mount *mp, uint64_t fsbno,
		 const struct rlfs_buf_ops *ops, uint64_t owner,
		 struct rlfs_buf **bpp)
{
	struct rlfs_bcache *bc = mp->bcache;
	if (fsbno >= mp->dblocks || fsbno == 0)
		return -EINVAL;
	struct rlfs_buf *bp = hash_find(bc, fsbno);
	if (bp) {
		if (bp->refcount++ == 0)
			lru_del(bc, bp, mp->blocksize);
		bp->flags &= ~RLFS_BUF_STALE;
	} else {
		bp = buf_alloc(mp, fsbno);
		if (!bp)
			return -ENOMEM;
		bp->refcount = 1;
		hash_add(mp, bp);
	}
	bp->ops = ops;
	memset(bp->data, 0, mp->blocksize);
	if (ops && ops->has_hdr)
		rlfs_blkhdr_init(mp, bp->data, ops->magic, fsbno, owner);
	*bpp = bp;
	return 0;
}

void rlfs_buf_hold(struct rlfs_buf *bp)
{
	bp->refcount++;
}

/*
 * Drop a reference.  Buffers do not point at their mount, so putting an
 * unheld clean buffer back on the LRU is left to rlfs_buf_settle(), which
 * the transaction code calls when it lets go of its buffers; until then an
 * unheld buffer is still found by hash lookups.
 */
void rlfs_buf_relse(struct rlfs_buf *bp)
{
	if (bp->refcount > 0)
		bp->refcount--;
}

void rlfs_buf_mark_dirty(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	if (mp->log) {
		/* write-ahead: the image goes to the CIL, the buffer is
		 * pinned; only the AIL writes it in place (log.h) */
		(void)rlfs_log_cil_insert(mp, bp);
		return;
	}
	if (!(bp->flags & RLFS_BUF_DIRTY))
		dirty_add(mp->bcache, bp);
}

void rlfs_buf_stale(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	if (mp->log && (bp->log_cil || bp->log_ail))
		rlfs_log_cil_cancel(mp, bp);
	if (bp->flags & RLFS_BUF_DIRTY)
		dirty_del(mp->bcache, bp);
	bp->flags |= RLFS_BUF_STALE;
}

void rlfs_buf_forget(struct rlfs_mount *mp, uint64_t fsbno)
{
	struct rlfs_buf *bp = hash_find(mp->bcache, fsbno);
	if (bp && bp->refcount == 0 && !bp->log_cil && !bp->log_ail)
		buf_evict(mp, bp);
	else if (bp)
		rlfs_buf_stale(mp, bp);
}

void rlfs_buf_settle(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	if (bp->refcount || bp->lru_next || bp->tp || bp->log_cil || bp->log_ail)
		return;
	if (bp->flags & RLFS_BUF_STALE) {
		buf_evict(mp, bp);
		return;
	}
	if (!(bp->flags & RLFS_BUF_DIRTY)) {
		lru_add(mp->bcache, bp, mp->blocksize);
		shrink(mp);
	}
}

void rlfs_buf_find_range(struct rlfs_mount *mp, uint64_t fsbno, uint64_t len,
			 void (*fn)(struct rlfs_buf *bp, void *priv), void *priv)
{
	struct rlfs_bcache *bc = mp->bcache;
	if (len == 0 || bc->nbufs == 0)
		return;
	uint64_t end = fsbno + len;
	uint64_t g0 = fsbno >> HASH_GROUP_SHIFT, g1 = (end - 1) >> HASH_GROUP_SHIFT;
	/* one probe per group; past HASH_SIZE groups, each chain once */
	uint64_t nprobe = RLFS_MIN(g1 - g0 + 1, (uint64_t)HASH_SIZE);
	for (uint64_t i = 0; i < nprobe; i++) {
		unsigned h = nprobe == HASH_SIZE ? (unsigned)i : hash_of_group(g0 + i);
		struct rlfs_buf *bp = bc->ghash[h];
		while (bp) {
			struct rlfs_buf *next = bp->gnext; /* fn may evict bp */
			/* a chain holds other groups too: visit each buffer once */
			bool mine = nprobe == HASH_SIZE || (bp->fsbno >> HASH_GROUP_SHIFT) == g0 + i;
			if (mine && bp->fsbno >= fsbno && bp->fsbno < end) {
				if (bp->refcount++ == 0)
					lru_del(bc, bp, mp->blocksize);
				fn(bp, priv);
			}
			bp = next;
		}
	}
}

size_t rlfs_buf_ndirty(struct rlfs_mount *mp)
{
	return mp->bcache->ndirty;
}

void rlfs_set_progress(struct rlfs_mount *mp, rlfs_progress_fn fn, void *arg)
{
	mp->progress_fn = fn;
	mp->progress_arg = arg;
}

static int cmp_fsbno(const void *a, const void *b)
{
	const struct rlfs_buf *x = *(struct rlfs_buf *const *)a;
	const struct rlfs_buf *y = *(struct rlfs_buf *const *)b;
	return x->fsbno < y->fsbno ? -1 : x->fsbno > y->fsbno;
}

/* Stamp the crc and run the verifier before a write: 0, or -EUCLEAN
 * (reported; the buffer must not be written). */
static int prepare_write(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	if (bp->ops && bp->ops->stamp)
		bp->ops->stamp(mp, bp);
	else if (bp->ops && bp->ops->has_hdr)
		rlfs_cksum_update(bp->data, mp->blocksize, RLFS_CRC_OFF);
	int err = bp->ops ? verify_as(mp, bp, bp->ops, RLFS_OWNER_ANY, true) : 0;
	if (err)
		rlfs_warn("not writing fsbno %llu (%s): failed its pre-write check",
			  (unsigned long long)bp->fsbno, bp->ops->name);
	return err;
}

/* Written: clean, back on the LRU if unheld. */
static void written(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	dirty_del(mp->bcache, bp);
	rlfs_buf_settle(mp, bp);
}

struct written_ctx {
	struct rlfs_mount *mp;
	struct rlfs_buf **list;
};

static void written_cb(void *arg, size_t i)
{
	struct written_ctx *wc = arg;
	written(wc->mp, wc->list[i]);
}

int rlfs_buf_write_blocks(struct rlfs_mount *mp, size_t n, const uint64_t *fsbno,
			  const void *const *data, void (*done)(void *arg, size_t i), void *arg)
{
	int first_err = 0;
	size_t run_max = RLFS_MAX(1u, RLFS_FLUSH_RUN_BYTES >> mp->blocklog);
	uint8_t *run = NULL;
	if (n > 1 && posix_memalign((void **)&run, RLFS_DIO_ALIGN, run_max << mp->blocklog))
		run = NULL;     /* no memory: one write per block */
	rlfs_progress(mp, RLFS_PROGRESS_META, 0, n);
	size_t i = 0, reported = 0;
	while (i < n) {
		if (!data[i]) {
			i++;
			continue;
		}
		size_t j = i + 1;
		while (run && j < n && j - i < run_max && data[j] && fsbno[j] == fsbno[j - 1] + 1)
			j++;
		const void *src = data[i];
		size_t run_bytes = (j - i) << mp->blocklog;
		int err;
		if (j - i > 1 && run_bytes < RLFS_DIO_MIN_BYTES && mp->dev->ops->pwritev) {
			/* too short for a direct write: gather without a copy */
			struct iovec iov[RLFS_DIO_MIN_BYTES / 512];
			for (size_t k = i; k < j; k++)
				iov[k - i] = (struct iovec){ (void *)data[k], mp->blocksize };
			err = mp->dev->ops->pwritev(mp->dev, iov, (int)(j - i),
						    fsbno[i] << mp->blocklog);
		} else {
			if (j - i > 1) {
				for (size_t k = i; k < j; k++)
					memcpy(run + ((k - i) << mp->blocklog), data[k],
					       mp->blocksize);
				src = run;
			}
			err = rlfs_dev_pwrite(mp->dev, src, run_bytes, fsbno[i] << mp->blocklog);
		}
		if (err) {
			if (!first_err)
				first_err = err;
		} else if (done) {
			for (size_t k = i; k < j; k++)
				done(arg, k);
		}
		i = j;
		if (i - reported >= 256) {
			rlfs_progress(mp, RLFS_PROGRESS_META, i, n);
			reported = i;
		}
	}
	free(run);
	return first_err;
}

int rlfs_buf_flush_all(struct rlfs_mount *mp)
{
	struct rlfs_bcache *bc = mp->bcache;
	int first_err = 0;

	/* 0. an error record changed since the last flush goes out with this
	 * one (mount.c); if the superblock cannot be read it stays pending */
	uint64_t staged_seq = mp->err_staged_seq;
	(void)rlfs_errrec_stage(mp);
	bool err_staged = staged_seq != mp->err_staged_seq;

	/* 1. file data first: metadata must never point at unwritten data */
	rlfs_progress(mp, RLFS_PROGRESS_DATA, 0, 1);
	uint64_t dsnap = mp->data_dirty;
	int err = rlfs_dev_flush(mp->dev);
	if (err) {
		rlfs_progress(mp, RLFS_PROGRESS_IDLE, 0, 0);
		return err;
	}
	rlfs_data_flushed(mp, dsnap);
	if (mp->log) {
		/* log mode: the CIL goes to the log as one checkpoint (one
		 * write, one flush); blocks go in place later from the AIL */
		err = rlfs_log_force(mp);
		/* a new error record goes in place at once: tools that read
		 * the superblock raw (fsck -n, mount warnings) see it */
		if (!err && err_staged)
			err = rlfs_log_ail_push(mp->log, UINT64_MAX);
		if (err) {
			rlfs_progress(mp, RLFS_PROGRESS_IDLE, 0, 0);
			return err;
		}
	}
	if (bc->ndirty == 0) {
		rlfs_busy_clear_durable(mp, mp->trans_seq); /* all committed is on disk */
		rlfs_progress(mp, RLFS_PROGRESS_IDLE, 0, 0);
		return 0;
	}

	/* Buffers logged in a transaction still open (a flush from inside
	 * one) stay dirty for its commit. */
	struct rlfs_buf **list = malloc(bc->ndirty * sizeof(*list));
	if (!list) {
		rlfs_progress(mp, RLFS_PROGRESS_IDLE, 0, 0);
		return -ENOMEM;
	}
	size_t n = 0;
	for (struct rlfs_buf *bp = bc->dirty.dirty_next; bp != &bc->dirty; bp = bp->dirty_next)
		if (!(bp->tp && bp->logged))
			list[n++] = bp;
	qsort(list, n, sizeof(*list), cmp_fsbno);
	bool all_dirty = n == bc->ndirty; /* none skipped: the flush covers every commit */

	/* 2. metadata, in block order: stamp crcs and verify every buffer
	 * (one that fails is not written), then write runs of consecutive
	 * blocks, each copied into one buffer and written at once */
	for (size_t i = 0; i < n; i++) {
		err = prepare_write(mp, list[i]);
		if (err) {
			if (!first_err)
				first_err = err;
			list[i] = NULL;
		}
	}
	uint64_t *fsbnos = malloc(n * sizeof(*fsbnos) + 1);
	const void **datas = malloc(n * sizeof(*datas) + 1);
	if (!fsbnos || !datas) {
		free(fsbnos);
		free(datas);
		free(list);
		rlfs_progress(mp, RLFS_PROGRESS_IDLE, 0, 0);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		fsbnos[i] = list[i] ? list[i]->fsbno : 0;
		datas[i] = list[i] ? list[i]->data : NULL;
	}
	struct written_ctx wc = { mp, list };
	err = rlfs_buf_write_blocks(mp, n, fsbnos, datas, written_cb, &wc);
	if (err && !first_err)
		first_err = err;
	free(fsbnos);
	free(datas);
	free(list);

	/* 3. make it durable */
	rlfs_progress(mp, RLFS_PROGRESS_SYNC, 0, 1);
	err = rlfs_dev_flush(mp->dev);
	rlfs_progress(mp, RLFS_PROGRESS_IDLE, 0, 0);
	if (!first_err && !err && all_dirty)
		rlfs_busy_clear_durable(mp, mp->trans_seq); /* busy.h */
	return first_err ? first_err : err;
}

/*
 * inode.c: in-core inodes, the inode cache, the inode log item, inode
 * cluster buffer verification and freeing of unlinked inodes.
 *
 * Model: xfs_inode.c / xfs_icache.c / xfs_inode_item.c, much simplified:
 * one hash table under mp->icache_lock; an inode joined to a transaction
 * carries a snapshot of its core (and, lazily, of its extent list) so that
 * a cancelled transaction restores the in-core state exactly.
 */
#include "inode.h"

#include <errno.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bmap.h"
#include "cowfork.h"
#include "btree.h"
#include "dir.h"
#include "ialloc.h"
#include "iunlink.h"
#include "xattr.h"
#include "reflinkfs/fs.h"

#define ICACHE_MIN_BUCKETS 1024u

struct rlfs_icache {
	struct rlfs_inode **hash;
	size_t nbuckets;            /* power of two */
	size_t count;
	/* the largest commit_seq of an inode that left the cache: a reloaded
	 * inode takes it as its commit_seq/datasync_seq (every change made to
	 * it before is in that CIL context or an older one) */
	uint64_t evicted_seq;
};

/* ------------------------------------------------------------------ */
/* Inode cluster buffers                                               */
/* ------------------------------------------------------------------ */

/*
 * The buffer verifier checks that the block IS an inode cluster of this
 * filesystem (every slot: magic, own inode number, uuid).  The crc of a
 * slot is checked when that inode is loaded (rlfs_iget_tp), as XFS checks
 * it in xfs_iread rather than in the buffer verifier: one damaged inode
 * must not make its seven neighbours (possibly the root directory)
 * unreadable.  Every writer keeps the crc of the slots it changes up to
 * date at once (rlfs_inode_flush_to_buf, ialloc, mkfs), so there is no
 * stamp hook: recomputing every slot's crc before a write would launder a
 * slot damaged on disk into a "valid" one.
 */
static int inode_buf_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	for (uint32_t i = 0; i < mp->inopblock; i++) {
		uint8_t *p = (uint8_t *)bp->data + (size_t)i * mp->inodesize;
		struct rlfs_dinode *dip = (struct rlfs_dinode *)p;
		uint64_t want = rlfs_fsb_to_ino(mp, bp->fsbno, i);

		if (rlfs_get32(dip->magic) != RLFS_DINODE_MAGIC)
			return rlfs_corrupt(mp, bp->fsbno, "inode",
					    "slot %u: bad magic 0x%x", i,
					    rlfs_get32(dip->magic));
		if (rlfs_get64(dip->ino) != want)
			return rlfs_corrupt(mp, bp->fsbno, "inode",
					    "slot %u: ino %llu, expected %llu", i,
					    (unsigned long long)rlfs_get64(dip->ino),
					    (unsigned long long)want);
		if (memcmp(dip->uuid, mp->uuid, RLFS_UUID_SIZE) != 0)
			return rlfs_corrupt(mp, bp->fsbno, "inode",
					    "slot %u (ino %llu): uuid mismatch", i,
					    (unsigned long long)want);
		uint64_t nu = rlfs_get64(dip->next_unlinked);
		if (nu && !rlfs_iunlink_ino_ok(mp, rlfs_fsb_to_agno(mp, bp->fsbno), nu))
			return rlfs_corrupt(mp, bp->fsbno, "inode",
					    "slot %u (ino %llu): next unlinked %llu not an inode "
					    "of this AG", i, (unsigned long long)want,
					    (unsigned long long)nu);
	}
	return 0;
}

const struct rlfs_buf_ops rlfs_inode_buf_ops = {
	.name = "inode",
	.magic = RLFS_DINODE_MAGIC,
	.has_hdr = false,
	.verify = inode_buf_verify,
};

/* The crc of one slot (checked at load time, see above). */
static int dinode_verify_crc(struct rlfs_mount *mp, struct rlfs_buf *bp, uint64_t ino)
{
	const uint8_t *p = (const uint8_t *)bp->data +
			   (size_t)rlfs_ino_to_slot(mp, ino) * mp->inodesize;
	if (!rlfs_cksum_verify(p, mp->inodesize, offsetof(struct rlfs_dinode, crc)))
		return rlfs_corrupt(mp, bp->fsbno, "inode", "slot %u (ino %llu): bad crc",
				    rlfs_ino_to_slot(mp, ino), (unsigned long long)ino);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

void rlfs_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

static uint32_t lit_size(const struct rlfs_mount *mp)
{
	return mp->inodesize > RLFS_DINODE_CORE ? mp->inodesize - RLFS_DINODE_CORE : 0;
}

static void ts_get(struct timespec *ts, const struct rlfs_timestamp *d)
{
	ts->tv_sec = (time_t)(int64_t)rlfs_get64(d->sec);
	ts->tv_nsec = (long)rlfs_get32(d->nsec);
	if (ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L)
		ts->tv_nsec = 0;
}

static void ts_put(struct rlfs_timestamp *d, const struct timespec *ts)
{
	rlfs_put64(d->sec, (uint64_t)(int64_t)ts->tv_sec);
	rlfs_put32(d->nsec, (uint32_t)ts->tv_nsec);
	rlfs_put32(d->pad, 0);
}

/* Default split of the literal area: half for the data fork (inline
 * extents or an inline symlink target), half for inline xattrs.  Kept a
 * multiple of 8 bytes. */
uint16_t rlfs_inode_default_forkoff(const struct rlfs_mount *mp)
{
	return (uint16_t)((lit_size(mp) / 2) & ~7u);
}

static struct rlfs_inode *inode_alloc(struct rlfs_mount *mp, uint64_t ino)
{
	struct rlfs_inode *ip = calloc(1, sizeof(*ip));
	if (!ip)
		return NULL;
	ip->literal = calloc(1, lit_size(mp) ? lit_size(mp) : 1);
	if (!ip->literal) {
		free(ip);
		return NULL;
	}
	if (pthread_rwlock_init(&ip->iolock, NULL) != 0) {
		free(ip->literal);
		free(ip);
		return NULL;
	}
	ip->mp = mp;
	ip->ino = ino;
	return ip;
}

static void inode_free(struct rlfs_inode *ip)
{
	if (!ip)
		return;
	rlfs_cowfork_destroy(ip);
	pthread_rwlock_destroy(&ip->iolock);
	free(ip->literal);
	rlfs_iext_destroy(&ip->iext);
	free(ip->li_snap);
	free(ip);
}

/* ------------------------------------------------------------------ */
/* Inode cache                                                          */
/* ------------------------------------------------------------------ */

static size_t ihash(const struct rlfs_icache *ic, uint64_t ino)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 20) & (ic->nbuckets - 1);
}

int rlfs_icache_init(struct rlfs_mount *mp)
{
	struct rlfs_icache *ic = calloc(1, sizeof(*ic));
	if (!ic)
		return -ENOMEM;
	ic->nbuckets = ICACHE_MIN_BUCKETS;
	ic->hash = calloc(ic->nbuckets, sizeof(*ic->hash));
	if (!ic->hash) {
		free(ic);
		return -ENOMEM;
	}
	mp->icache = ic;
	return 0;
}

/* under icache_lock */
static struct rlfs_inode *icache_find(struct rlfs_icache *ic, uint64_t ino)
{
	for (struct rlfs_inode *ip = ic->hash[ihash(ic, ino)]; ip; ip = ip->hnext)
		if (ip->ino == ino)
			return ip;
	return NULL;
}

/* under icache_lock */
static void icache_grow(struct rlfs_icache *ic)
{
	size_t nb = ic->nbuckets * 2;
	struct rlfs_inode **nh = calloc(nb, sizeof(*nh));
	if (!nh)
		return; /* keep the old table: longer chains only */
	struct rlfs_inode **oh = ic->hash;
	size_t ob = ic->nbuckets;
	ic->hash = nh;
	ic->nbuckets = nb;
	for (size_t b = 0; b < ob; b++) {
		struct rlfs_inode *ip = oh[b], *next;
		for (; ip; ip = next) {
			next = ip->hnext;
			size_t h = ihash(ic, ip->ino);
			ip->hnext = nh[h];
			nh[h] = ip;
		}
	}
	free(oh);
}

/* under icache_lock */
static void icache_insert(struct rlfs_icache *ic, struct rlfs_inode *ip)
{
	if (ic->count >= ic->nbuckets * 2)
		icache_grow(ic);
	size_t h = ihash(ic, ip->ino);
	ip->hnext = ic->hash[h];
	ic->hash[h] = ip;
	ic->count++;
}

/* under icache_lock; true if it was there */
static bool icache_remove(struct rlfs_icache *ic, struct rlfs_inode *ip)
{
	struct rlfs_inode **pp = &ic->hash[ihash(ic, ip->ino)];
	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == ip) {
			ic->evicted_seq = RLFS_MAX(ic->evicted_seq, ip->li.commit_seq);
			*pp = ip->hnext;
			ip->hnext = NULL;
			ic->count--;
			return true;
		}
	}
	return false;
}

static void icache_unhash(struct rlfs_inode *ip)
{
	struct rlfs_mount *mp = ip->mp;
	pthread_mutex_lock(&mp->icache_lock);
	icache_remove(mp->icache, ip);
	pthread_mutex_unlock(&mp->icache_lock);
}

/* An unlinked inode nobody in the library refers to; forgotten_only: and
 * that the kernel has forgotten too (nlookup 0).  Under icache_lock. */
static bool reclaimable(const struct rlfs_inode *ip, bool forgotten_only)
{
	return ip->nlink == 0 && !ip->freeing && ip->refcount == 0 && ip->mode != 0 &&
	       (!forgotten_only || ip->nlookup == 0);
}

static int reclaim(struct rlfs_mount *mp, bool forgotten_only)
{
	struct rlfs_icache *ic = mp->icache;
	int first = 0;
	if (!ic || (mp->flags & RLFS_MOUNT_RDONLY))
		return 0;
	/* Each pass
	 * over the cache picks up to RECLAIM_BATCH of them (marked freeing, so
	 * nobody else frees them), then each is freed in its own transaction:
	 * passes, not one pass per inode (that was quadratic). */
	enum { RECLAIM_BATCH = 1024 };
	struct rlfs_inode *victims[RECLAIM_BATCH];
	uint64_t total = 0, done = 0;
	pthread_mutex_lock(&mp->icache_lock);
	for (size_t b = 0; b < ic->nbuckets; b++)
		for (struct rlfs_inode *ip = ic->hash[b]; ip; ip = ip->hnext)
			total += reclaimable(ip, forgotten_only);
	pthread_mutex_unlock(&mp->icache_lock);
	if (total)
		rlfs_progress(mp, RLFS_PROGRESS_RECLAIM, 0, total);
	for (;;) {
		size_t n = 0;
		pthread_mutex_lock(&mp->icache_lock);
		for (size_t b = 0; b < ic->nbuckets && n < RECLAIM_BATCH; b++)
			for (struct rlfs_inode *ip = ic->hash[b]; ip && n < RECLAIM_BATCH;
			     ip = ip->hnext)
				if (reclaimable(ip, forgotten_only)) {
					ip->freeing = true;
					victims[n++] = ip;
				}
		pthread_mutex_unlock(&mp->icache_lock);
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			struct rlfs_inode *victim = victims[i];
			int error = rlfs_inode_inactivate(victim);
			if (error) {
				rlfs_warn("inode %llu: could not free unlinked inode at unmount",
					  (unsigned long long)victim->ino);
				if (!first)
					first = error;
			}
			icache_unhash(victim);
			inode_free(victim);
			if (++done % 256 == 0)
				rlfs_progress(mp, RLFS_PROGRESS_RECLAIM, done, RLFS_MAX(done, total));
		}
	}
	return first;
}

int rlfs_icache_reclaim(struct rlfs_mount *mp)
{
	/* Free unlinked inodes that the kernel still held (open-unlinked files
	 * at unmount): their blocks go back now instead of leaking. */
	return reclaim(mp, false);
}

int rlfs_icache_reclaim_forgotten(struct rlfs_mount *mp)
{
	return reclaim(mp, true);
}

bool rlfs_icache_has_forgotten(struct rlfs_mount *mp)
{
	struct rlfs_icache *ic = mp->icache;
	bool found = false;
	if (!ic)
		return false;
	pthread_mutex_lock(&mp->icache_lock);
	for (size_t b = 0; b < ic->nbuckets && !found; b++)
		for (struct rlfs_inode *ip = ic->hash[b]; ip && !found; ip = ip->hnext)
			found = reclaimable(ip, true);
	pthread_mutex_unlock(&mp->icache_lock);
	return found;
}

void rlfs_icache_destroy(struct rlfs_mount *mp)
{
	struct rlfs_icache *ic = mp->icache;
	if (!ic)
		return;
	for (size_t b = 0; b < ic->nbuckets; b++) {
		struct rlfs_inode *ip = ic->hash[b], *next;
		for (; ip; ip = next) {
			next = ip->hnext;
			if (ip->refcount)
				rlfs_warn("inode %llu still referenced (%u) at unmount",
					  (unsigned long long)ip->ino, ip->refcount);
			inode_free(ip);
		}
	}
	free(ic->hash);
	free(ic);
	mp->icache = NULL;
}

/* ------------------------------------------------------------------ */
/* Decoding / encoding the on-disk inode                                */
/* ------------------------------------------------------------------ */

static struct rlfs_dinode *buf_dinode(struct rlfs_mount *mp, struct rlfs_buf *bp, uint64_t ino)
{
	return (struct rlfs_dinode *)((uint8_t *)bp->data +
				      (size_t)rlfs_ino_to_slot(mp, ino) * mp->inodesize);
}

static void dinode_decode(struct rlfs_inode *ip, const struct rlfs_dinode *dip)
{
	struct rlfs_mount *mp = ip->mp;
	ip->mode = rlfs_get32(dip->mode);
	ip->uid = rlfs_get32(dip->uid);
	ip->gid = rlfs_get32(dip->gid);
	ip->nlink = rlfs_get32(dip->nlink);
	ip->size = rlfs_get64(dip->size);
	ip->nblocks = rlfs_get64(dip->nblocks);
	ts_get(&ip->atime, &dip->atime);
	ts_get(&ip->mtime, &dip->mtime);
	ts_get(&ip->ctime, &dip->ctime);
	ts_get(&ip->crtime, &dip->crtime);
	ip->rdev = rlfs_get64(dip->rdev);
	ip->generation = rlfs_get64(dip->generation);
	ip->parent = rlfs_get64(dip->parent);
	ip->flags = rlfs_get32(dip->flags);
	ip->cowextsize_blocks = rlfs_get32(dip->cowextsize_blocks);
	ip->extsize_blocks = rlfs_get32(dip->extsize_blocks);
	ip->format = dip->format;
	ip->aformat = dip->aformat;
	ip->forkoff = rlfs_get16(dip->forkoff);
	ip->root = rlfs_get64(dip->root);
	ip->root_level = rlfs_get16(dip->root_level);
	ip->aroot = rlfs_get64(dip->aroot);
	ip->aroot_level = rlfs_get16(dip->aroot_level);
	ip->acount = rlfs_get32(dip->acount);
	if (lit_size(mp))
		memcpy(ip->literal, (const uint8_t *)dip + RLFS_DINODE_CORE, lit_size(mp));
}

static bool fork_has_extents(const struct rlfs_inode *ip)
{
	uint32_t t = ip->mode & S_IFMT;
	return (t == S_IFREG || t == S_IFLNK) &&
	       (ip->format == RLFS_FMT_EXTENTS || ip->format == RLFS_FMT_BTREE);
}

/* Validate the decoded core against the file type.  0 or -EUCLEAN.
 * orphan_ok: nlink 0 is accepted (rlfs_inode_free_orphan). */
static int inode_validate(struct rlfs_inode *ip, uint32_t nextents, bool orphan_ok)
{
	struct rlfs_mount *mp = ip->mp;
	uint64_t fsb = rlfs_ino_to_fsb(mp, ip->ino);
	unsigned long long ino = (unsigned long long)ip->ino;
	uint32_t t = ip->mode & S_IFMT;
	uint8_t f = ip->format;
	bool ok;

	switch (t) {
	case S_IFREG:
		ok = f == RLFS_FMT_EXTENTS || f == RLFS_FMT_BTREE || f == RLFS_FMT_NONE;
		break;
	case S_IFLNK:
		ok = f == RLFS_FMT_LOCAL || f == RLFS_FMT_EXTENTS || f == RLFS_FMT_BTREE;
		break;
	case S_IFDIR:
		ok = f == RLFS_FMT_NONE || f == RLFS_FMT_BTREE;
		break;
	case S_IFCHR: case S_IFBLK: case S_IFIFO: case S_IFSOCK:
		ok = f == RLFS_FMT_NONE;
		break;
	default:
		return rlfs_corrupt(mp, fsb, "inode", "ino %llu: bad file type in mode 0%o",
				    ino, ip->mode);
	}
	if (!ok)
		return rlfs_corrupt(mp, fsb, "inode", "ino %llu: format %u invalid for mode 0%o",
				    ino, f, ip->mode);
	if (ip->forkoff > lit_size(mp))
		return rlfs_corrupt(mp, fsb, "inode", "ino %llu: forkoff %u > literal area %u",
				    ino, ip->forkoff, lit_size(mp));
	if (f == RLFS_FMT_EXTENTS && nextents > ip->forkoff / sizeof(struct rlfs_bmbt_rec))
		return rlfs_corrupt(mp, fsb, "inode",
				    "ino %llu: %u inline extents exceed capacity %zu",
				    ino, nextents, ip->forkoff / sizeof(struct rlfs_bmbt_rec));
	if (f == RLFS_FMT_NONE && t == S_IFREG && nextents != 0)
		return rlfs_corrupt(mp, fsb, "inode", "ino %llu: format none with %u extents",
				    ino, nextents);
	if (f == RLFS_FMT_LOCAL && ip->size > ip->forkoff)
		return rlfs_corrupt(mp, fsb, "inode", "ino %llu: local size %llu > forkoff %u",
				    ino, (unsigned long long)ip->size, ip->forkoff);
	if (f == RLFS_FMT_BTREE &&
	    (ip->root == 0 || ip->root >= mp->dblocks || ip->root_level == 0 ||
	     ip->root_level > RLFS_BTREE_MAXLEVELS))
		return rlfs_corrupt(mp, fsb, "inode", "ino %llu: bad fork root %llu level %u",
				    ino, (unsigned long long)ip->root, ip->root_level);
	if (ip->aformat > RLFS_FMT_BTREE || ip->aformat == RLFS_FMT_EXTENTS)
		return rlfs_corrupt(mp, fsb, "inode", "ino %llu: bad xattr format %u",
				    ino, ip->aformat);
	if (ip->aformat == RLFS_FMT_BTREE &&
	    (ip->aroot == 0 || ip->aroot >= mp->dblocks || ip->aroot_level == 0 ||
	     ip->aroot_level > RLFS_BTREE_MAXLEVELS))
		return rlfs_corrupt(mp, fsb, "inode", "ino %llu: bad xattr root %llu level %u",
				    ino, (unsigned long long)ip->aroot, ip->aroot_level);
	if (t == S_IFREG && ip->size > mp->maxbytes)
		return rlfs_corrupt(mp, fsb, "inode", "ino %llu: size %llu > max %llu", ino,
				    (unsigned long long)ip->size, (unsigned long long)mp->maxbytes);
	if (ip->nlink == 0 && !orphan_ok)
		return rlfs_corrupt(mp, fsb, "inode", "ino %llu: in use with nlink 0", ino);
	return 0;
}

int rlfs_inode_flush_to_buf(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_buf *bp;
	int error = rlfs_trans_read_buf(tp, rlfs_ino_to_fsb(mp, ip->ino), &rlfs_inode_buf_ops,
					RLFS_OWNER_ANY, &bp);
	if (error)
		return error;
	struct rlfs_dinode *dip = buf_dinode(mp, bp, ip->ino);
	uint32_t nextents = ip->ext_loaded ? rlfs_iext_count(&ip->iext) : 0;

	rlfs_put32(dip->mode, ip->mode);
	rlfs_put32(dip->uid, ip->uid);
	rlfs_put32(dip->gid, ip->gid);
	rlfs_put32(dip->nlink, ip->nlink);
	rlfs_put64(dip->size, ip->size);
	rlfs_put64(dip->nblocks, ip->nblocks);
	ts_put(&dip->atime, &ip->atime);
	ts_put(&dip->mtime, &ip->mtime);
	ts_put(&dip->ctime, &ip->ctime);
	ts_put(&dip->crtime, &ip->crtime);
	rlfs_put64(dip->rdev, ip->rdev);
	rlfs_put64(dip->generation, ip->generation);
	rlfs_put64(dip->parent, ip->parent);
	rlfs_put32(dip->flags, ip->flags);
	rlfs_put32(dip->cowextsize_blocks, ip->cowextsize_blocks);
	dip->format = ip->format;
	dip->aformat = ip->aformat;
	rlfs_put16(dip->forkoff, ip->forkoff);
	rlfs_put32(dip->nextents, nextents);
	rlfs_put64(dip->root, ip->root);
	rlfs_put16(dip->root_level, ip->root_level);
	rlfs_put16(dip->aroot_level, ip->aroot_level);
	rlfs_put32(dip->extsize_blocks, ip->extsize_blocks);
	rlfs_put64(dip->aroot, ip->aroot);
	rlfs_put32(dip->acount, ip->acount);

	uint32_t lsz = lit_size(mp);
	uint8_t *lit = (uint8_t *)dip + RLFS_DINODE_CORE;
	if (lsz)
		memcpy(lit, ip->literal, lsz);
	if (ip->format == RLFS_FMT_EXTENTS && ip->ext_loaded) {
		/* The inline data fork is the in-core extent list. */
		uint32_t cap = ip->forkoff / sizeof(struct rlfs_bmbt_rec);
		if (rlfs_iext_count(&ip->iext) > cap) {
			rlfs_trans_brelse(tp, bp);
			return rlfs_corrupt(mp, bp->fsbno, "inode",
					    "ino %llu: %u extents do not fit inline (%u)",
					    (unsigned long long)ip->ino, rlfs_iext_count(&ip->iext), cap);
		}
		memset(lit, 0, ip->forkoff);
		struct rlfs_bmbt_rec *r = (struct rlfs_bmbt_rec *)lit;
		for (uint32_t i = 0; i < rlfs_iext_count(&ip->iext); i++) {
			const struct rlfs_irec *e = rlfs_iext_at(&ip->iext, i);
			rlfs_put64(r[i].startoff, e->startoff);
			rlfs_put64(r[i].startblock, e->startblock);
			rlfs_put32(r[i].blockcount, e->blockcount);
			rlfs_put32(r[i].state, e->state);
		}
		/* keep the in-core literal copy identical to the disk */
		memcpy(ip->literal, lit, ip->forkoff);
	} else if (ip->format == RLFS_FMT_BTREE && lsz && ip->forkoff && fork_has_extents(ip)) {
		memset(lit, 0, ip->forkoff);
		memset(ip->literal, 0, ip->forkoff);
	}
	rlfs_cksum_update(dip, mp->inodesize, offsetof(struct rlfs_dinode, crc));
	/* only this inode's slot changed (xfs_trans_log_inode's range) */
	uint32_t first = (uint32_t)((uint8_t *)dip - (uint8_t *)bp->data);
	rlfs_trans_log_buf_range(tp, bp, first, first + mp->inodesize - 1);
	rlfs_trans_brelse(tp, bp);
	return 0;
}

/* ------------------------------------------------------------------ */
/* The inode log item                                                   */
/* ------------------------------------------------------------------ */

/* One change of ip->iext: what undoes it. */
struct ext_undo {
	uint32_t op;                /* RLFS_EXT_INSERT / _DELETE / _UPDATE */
	uint32_t idx;
	struct rlfs_irec old;       /* DELETE, UPDATE: the record before */
};

struct inode_snap {
	uint32_t mode, uid, gid, nlink;
	uint64_t size, nblocks;
	struct timespec atime, mtime, ctime, crtime;
	uint64_t rdev, generation, parent;
	uint32_t flags, cowextsize_blocks, extsize_blocks;
	uint8_t format, aformat;
	uint16_t forkoff;
	uint64_t root;
	uint16_t root_level;
	uint64_t aroot;
	uint16_t aroot_level;
	uint32_t acount;
	bool ext_loaded;
	/* extent list changes of this transaction, oldest first, for a
	 * cancel to undo in reverse (rlfs_inode_ext_reserve/_logged) */
	bool ext_changed;
	struct ext_undo *undo;
	uint32_t nundo, undo_cap;
	uint8_t literal[];
};

#define COPY_CORE(d, s) do { \
	(d)->mode = (s)->mode; (d)->uid = (s)->uid; (d)->gid = (s)->gid; \
	(d)->nlink = (s)->nlink; (d)->size = (s)->size; (d)->nblocks = (s)->nblocks; \
	(d)->atime = (s)->atime; (d)->mtime = (s)->mtime; (d)->ctime = (s)->ctime; \
	(d)->crtime = (s)->crtime; (d)->rdev = (s)->rdev; \
	(d)->generation = (s)->generation; (d)->parent = (s)->parent; \
	(d)->flags = (s)->flags; (d)->cowextsize_blocks = (s)->cowextsize_blocks; \
	(d)->extsize_blocks = (s)->extsize_blocks; \
	(d)->format = (s)->format; (d)->aformat = (s)->aformat; \
	(d)->forkoff = (s)->forkoff; (d)->root = (s)->root; \
	(d)->root_level = (s)->root_level; (d)->aroot = (s)->aroot; \
	(d)->aroot_level = (s)->aroot_level; (d)->acount = (s)->acount; \
	(d)->ext_loaded = (s)->ext_loaded; \
} while (0)

static struct rlfs_inode *li_to_inode(struct rlfs_log_item *lip)
{
	return (struct rlfs_inode *)((char *)lip - offsetof(struct rlfs_inode, li));
}

/* Did this transaction change anything of ip that fdatasync must make
 * durable: anything but the timestamps (XFS: ili_fsync_fields other than
 * XFS_ILOG_TIMESTAMP).  The extent list counts when it was touched at all
 * (rlfs_inode_ext_logged recorded a change); without a snapshot, yes. */
static bool datasync_changed(const struct rlfs_inode *ip, const struct inode_snap *s)
{
	if (!s || s->ext_changed)
		return true;
	if (ip->mode != s->mode || ip->uid != s->uid || ip->gid != s->gid ||
	    ip->nlink != s->nlink || ip->size != s->size || ip->nblocks != s->nblocks ||
	    ip->rdev != s->rdev || ip->generation != s->generation ||
	    ip->parent != s->parent || ip->flags != s->flags ||
	    ip->cowextsize_blocks != s->cowextsize_blocks ||
	    ip->extsize_blocks != s->extsize_blocks || ip->format != s->format ||
	    ip->aformat != s->aformat || ip->forkoff != s->forkoff || ip->root != s->root ||
	    ip->root_level != s->root_level || ip->aroot != s->aroot ||
	    ip->aroot_level != s->aroot_level || ip->acount != s->acount)
		return true;
	return lit_size(ip->mp) && memcmp(ip->literal, s->literal, lit_size(ip->mp)) != 0;
}

static int inode_item_precommit(struct rlfs_trans *tp, struct rlfs_log_item *lip)
{
	struct rlfs_inode *ip = li_to_inode(lip);
	if (datasync_changed(ip, ip->li_snap))
		lip->datasync_dirty = true;
	if (!ip->li_logged)
		return 0;
	return rlfs_inode_flush_to_buf(tp, ip);
}

static void inode_item_abort(struct rlfs_trans *tp, struct rlfs_log_item *lip)
{
	struct rlfs_inode *ip = li_to_inode(lip);
	struct inode_snap *s = ip->li_snap;
	if (!s)
		return;
	COPY_CORE(ip, s);
	if (ip->mode == 0) {
		/* a new inode (rlfs_inode_init) whose creation was cancelled:
		 * nobody may find it; the creator's irele frees the memory. */
		icache_unhash(ip);
	}
	if (lit_size(ip->mp))
		memcpy(ip->literal, s->literal, lit_size(ip->mp));
	/* undo the extent list changes, newest first; putting a deleted
	 * record back allocates nothing: the list keeps the room its
	 * removals left until the transaction ends (iext.h) */
	for (uint32_t k = s->nundo; k-- > 0;) {
		const struct ext_undo *u = &s->undo[k];
		switch (u->op) {
		case RLFS_EXT_INSERT:
			rlfs_iext_remove(&ip->iext, u->idx);
			break;
		case RLFS_EXT_DELETE:
			rlfs_iext_reinsert(&ip->iext, u->idx, &u->old);
			break;
		default:
			*rlfs_iext_at(&ip->iext, u->idx) = u->old;
			break;
		}
	}
	s->nundo = 0;
	s->ext_changed = false;
}

static void inode_item_release(struct rlfs_trans *tp, struct rlfs_log_item *lip)
{
	struct rlfs_inode *ip = li_to_inode(lip);
	struct inode_snap *s = ip->li_snap;
	/* committed or undone: no cancel needs the room that removals left
	 * any more (with or without a snapshot: a join whose snapshot could
	 * not be allocated still changes the list) */
	rlfs_iext_trim(&ip->iext);
	if (s) {
		free(s->undo);
		free(s);
	}
	ip->li_snap = NULL;
	ip->li_tp = NULL;
	ip->li_logged = false;
	ip->li.datasync_dirty = false;
}

static const struct rlfs_log_item_ops inode_item_ops = {
	.precommit = inode_item_precommit,
	.abort = inode_item_abort,
	.release = inode_item_release,
};

void rlfs_trans_ijoin(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	if (ip->li_tp == tp)
		return;
	if (ip->li_tp)
		rlfs_warn("inode %llu joined to two transactions",
			  (unsigned long long)ip->ino);
	struct inode_snap *s = calloc(1, sizeof(*s) + lit_size(ip->mp));
	if (s) {
		COPY_CORE(s, ip);
		if (lit_size(ip->mp))
			memcpy(s->literal, ip->literal, lit_size(ip->mp));
	} else {
		rlfs_warn("inode %llu: no memory for cancel snapshot",
			  (unsigned long long)ip->ino);
	}
	ip->li_snap = s;
	ip->li_tp = tp;
	ip->li_logged = false;
	ip->li.ops = &inode_item_ops;
	ip->li.next = NULL;
	rlfs_trans_add_item(tp, &ip->li);
}

void rlfs_trans_log_inode(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	rlfs_trans_ijoin(tp, ip);
	ip->li_logged = true;
}

int rlfs_inode_ext_reserve(struct rlfs_inode *ip)
{
	struct inode_snap *s = ip->li_snap;
	if (!s || s->nundo < s->undo_cap)
		return 0;
	uint32_t cap = s->undo_cap ? 2 * s->undo_cap : 8;
	struct ext_undo *n = realloc(s->undo, (size_t)cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	s->undo = n;
	s->undo_cap = cap;
	return 0;
}

void rlfs_inode_ext_logged(struct rlfs_inode *ip, unsigned op, uint32_t idx,
			   const struct rlfs_irec *old)
{
	struct inode_snap *s = ip->li_snap;
	if (!s)
		return;
	s->ext_changed = true;
	if (s->nundo >= s->undo_cap) {
		/* the caller did not reserve: a bug; the cancel cannot undo */
		rlfs_warn("inode %llu: extent change without an undo slot",
			  (unsigned long long)ip->ino);
		return;
	}
	s->undo[s->nundo++] = (struct ext_undo){
		.op = op, .idx = idx, .old = old ? *old : (struct rlfs_irec){ 0 },
	};
}

/* ------------------------------------------------------------------ */
/* iget / irele                                                         */
/* ------------------------------------------------------------------ */

static int ino_in_range(struct rlfs_mount *mp, uint64_t ino)
{
	uint64_t fsb = rlfs_ino_to_fsb(mp, ino);
	if (ino == 0 || fsb == 0 || fsb >= mp->dblocks)
		return 0;
	return rlfs_fsb_to_agbno(mp, fsb) > RLFS_AGFL_AGBNO;
}

/* Fast path: cached and not being freed.  1 = found (ref taken), 0 = not
 * cached, -ENOENT = being freed. */
static int icache_get(struct rlfs_mount *mp, uint64_t ino, struct rlfs_inode **ipp)
{
	int ret = 0;
	pthread_mutex_lock(&mp->icache_lock);
	struct rlfs_inode *ip = icache_find(mp->icache, ino);
	if (ip) {
		if (ip->freeing) {
			ret = -ENOENT;
		} else {
			ip->refcount++;
			*ipp = ip;
			ret = 1;
		}
	}
	pthread_mutex_unlock(&mp->icache_lock);
	return ret;
}

/* orphan: 0 nlink 0 on disk is corruption, 1 accepted
 * (rlfs_inode_free_orphan), -1 -ENOENT (rlfs_iget_linked).  fork_lost:
 * rlfs_iget_fork_lost (a regular file whose data fork is not read). */
static int iget_tp(struct rlfs_trans *tp, uint64_t ino, int orphan, bool fork_lost,
		   struct rlfs_inode **ipp)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_inode *ip;
	struct rlfs_buf *bp;
	bool inuse = false;
	int error;

	*ipp = NULL;
	if (!ino_in_range(mp, ino))
		return -ENOENT;
	error = icache_get(mp, ino, ipp);
	if (error)
		return error < 0 ? error : 0;

	/* Not cached.  Loads happen under meta_lock (we are in a
	 * transaction), so no other thread can insert it meanwhile. */
	error = rlfs_ialloc_check(tp, ino, &inuse);
	if (error == -EINVAL)
		return -ENOENT;
	if (error)
		return error;
	if (!inuse)
		return -ENOENT;
	error = rlfs_trans_read_buf(tp, rlfs_ino_to_fsb(mp, ino), &rlfs_inode_buf_ops,
				    RLFS_OWNER_ANY, &bp);
	if (error)
		return error;
	struct rlfs_dinode *dip = buf_dinode(mp, bp, ino);
	error = dinode_verify_crc(mp, bp, ino);
	if (error) {
		rlfs_trans_brelse(tp, bp);
		return error;
	}
	if (rlfs_get32(dip->mode) == 0) {
		rlfs_trans_brelse(tp, bp);
		return -ENOENT;
	}
	ip = inode_alloc(mp, ino);
	if (!ip) {
		rlfs_trans_brelse(tp, bp);
		return -ENOMEM;
	}
	dinode_decode(ip, dip);
	uint32_t nextents = rlfs_get32(dip->nextents);
	rlfs_trans_brelse(tp, bp);
	if (fork_lost) {
		if ((ip->mode & S_IFMT) != S_IFREG && (ip->mode & S_IFMT) != S_IFDIR) {
			inode_free(ip);
			return -EINVAL;
		}
		/* judge the rest of the core against an empty fork (a
		 * directory's: none, an empty tree) */
		ip->format = S_ISDIR(ip->mode) ? RLFS_FMT_NONE : RLFS_FMT_EXTENTS;
		ip->root = 0;
		ip->root_level = 0;
		nextents = 0;
	}

	if (ip->nlink == 0 && orphan < 0) {
		inode_free(ip);
		return -ENOENT;
	}
	error = inode_validate(ip, nextents, orphan > 0);
	if (error)
		goto fail;
	if ((ip->mode & S_IFMT) == S_IFREG && ip->format == RLFS_FMT_NONE)
		ip->format = RLFS_FMT_EXTENTS;
	if (fork_lost) {
		rlfs_iext_destroy(&ip->iext);
		ip->ext_loaded = true;
	} else if (fork_has_extents(ip)) {
		error = rlfs_bmap_load(tp, ip);
		if (error)
			goto fail;
		if (rlfs_iext_count(&ip->iext) != nextents) {
			error = rlfs_corrupt(mp, rlfs_ino_to_fsb(mp, ino), "inode",
					     "ino %llu: nextents %u but fork has %u",
					     (unsigned long long)ino, nextents, rlfs_iext_count(&ip->iext));
			goto fail;
		}
	}
	ip->refcount = 1;
	pthread_mutex_lock(&mp->icache_lock);
	/* changes made while it was out of the cache (fsync: log.h) */
	ip->li.commit_seq = ip->li.datasync_seq = mp->icache->evicted_seq;
	icache_insert(mp->icache, ip);
	pthread_mutex_unlock(&mp->icache_lock);
	*ipp = ip;
	return 0;
fail:
	inode_free(ip);
	return error;
}

int rlfs_iget_tp(struct rlfs_trans *tp, uint64_t ino, struct rlfs_inode **ipp)
{
	return iget_tp(tp, ino, 0, false, ipp);
}

int rlfs_iget_fork_lost(struct rlfs_trans *tp, uint64_t ino, struct rlfs_inode **ipp)
{
	struct rlfs_inode *ip;
	int error = icache_get(tp->mp, ino, &ip);

	*ipp = NULL;
	if (error > 0) {
		rlfs_irele(ip);
		return -EBUSY;
	}
	if (error < 0)
		return error;
	return iget_tp(tp, ino, 0, true, ipp);
}

static int iget(struct rlfs_mount *mp, uint64_t ino, int orphan, struct rlfs_inode **ipp)
{
	struct rlfs_trans *tp;
	int error;

	*ipp = NULL;
	if (!ino_in_range(mp, ino))
		return -ENOENT;
	error = icache_get(mp, ino, ipp);
	if (error)
		return error < 0 ? error : 0;
	error = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
	if (error)
		return error;
	error = iget_tp(tp, ino, orphan, false, ipp);
	rlfs_trans_cancel(tp);
	return error;
}

int rlfs_iget(struct rlfs_mount *mp, uint64_t ino, struct rlfs_inode **ipp)
{
	return iget(mp, ino, 0, ipp);
}

int rlfs_iget_linked(struct rlfs_mount *mp, uint64_t ino, struct rlfs_inode **ipp)
{
	return iget(mp, ino, -1, ipp);
}

void rlfs_ihold(struct rlfs_inode *ip)
{
	pthread_mutex_lock(&ip->mp->icache_lock);
	ip->refcount++;
	pthread_mutex_unlock(&ip->mp->icache_lock);
}

bool rlfs_igrab(struct rlfs_inode *ip)
{
	pthread_mutex_lock(&ip->mp->icache_lock);
	/* refcount and nlookup both 0: inode_last_ref is evicting it */
	bool ok = !ip->freeing && ip->mode != 0 && (ip->refcount > 0 || ip->nlookup > 0);
	if (ok)
		ip->refcount++;
	pthread_mutex_unlock(&ip->mp->icache_lock);
	return ok;
}

/* Called with icache_lock held and ip->refcount just dropped to 0.
 * Returns with the lock dropped. */
static void inactive_add(struct rlfs_mount *mp, struct rlfs_inactive_ticket *t);

static void inode_last_ref(struct rlfs_inode *ip)
{
	struct rlfs_mount *mp = ip->mp;
	if (ip->nlookup || ip->freeing || ip->li_tp) {
		pthread_mutex_unlock(&mp->icache_lock);
		return;
	}
	if (ip->mode == 0) {
		/* cancelled creation (already unhashed by the abort handler) */
		icache_remove(mp->icache, ip);
		pthread_mutex_unlock(&mp->icache_lock);
		inode_free(ip);
		return;
	}
	if (ip->nlink == 0 && (mp->flags & RLFS_MOUNT_RDONLY)) {
		/* Remounted read-only while the kernel still held it (its
		 * FORGET arrived late): keep it cached, unlinked, so that the
		 * next remount read-write or the unmount frees it
		 * (rlfs_icache_reclaim_forgotten) instead of leaking it. */
		pthread_mutex_unlock(&mp->icache_lock);
		return;
	}
	if (ip->nlink == 0) {
		struct rlfs_inactive_ticket t;
		ip->freeing = true;
		inactive_add(mp, &t);
		pthread_mutex_unlock(&mp->icache_lock);
		int error = rlfs_inode_inactivate(ip);
		if (error)
			rlfs_warn("inode %llu: freeing unlinked inode failed (%d)",
				  (unsigned long long)ip->ino, error);
		icache_unhash(ip);
		inode_free(ip);
		rlfs_inactive_end(mp, &t);
		return;
	}
	if (ip->cow && rlfs_iext_count(&ip->cow->iext) && !(mp->flags & RLFS_MOUNT_RDONLY) && !mp->shutdown) {
		/* staged CoW blocks go back to free space before the inode
		 * leaves memory (XFS cancels them at inactivation): keep it
		 * alive meanwhile, then drop that reference again */
		ip->refcount++;
		pthread_mutex_unlock(&mp->icache_lock);
		pthread_rwlock_wrlock(&ip->iolock);
		int error = rlfs_cowfork_cancel(ip, 0, UINT64_MAX);
		pthread_rwlock_unlock(&ip->iolock);
		if (error) {
			rlfs_warn("inode %llu: giving back staged CoW blocks failed (%s); the next "
				  "mount frees them", (unsigned long long)ip->ino, strerror(-error));
			pthread_rwlock_wrlock(&ip->iolock);
			rlfs_cowfork_destroy(ip);
			pthread_rwlock_unlock(&ip->iolock);
		}
		rlfs_irele(ip);
		return;
	}
	/* Nobody (library or kernel) refers to it: evict.  Its state is all in
	 * the cluster buffer (committed), so iget can load it again. */
	icache_remove(mp->icache, ip);
	pthread_mutex_unlock(&mp->icache_lock);
	inode_free(ip);
}

void rlfs_irele(struct rlfs_inode *ip)
{
	if (!ip)
		return;
	struct rlfs_mount *mp = ip->mp;
	pthread_mutex_lock(&mp->icache_lock);
	if (ip->refcount == 0) {
		pthread_mutex_unlock(&mp->icache_lock);
		rlfs_warn("inode %llu: reference count underflow", (unsigned long long)ip->ino);
		return;
	}
	if (--ip->refcount > 0) {
		pthread_mutex_unlock(&mp->icache_lock);
		return;
	}
	inode_last_ref(ip);
}

void rlfs_inode_lookup_add(struct rlfs_inode *ip, uint64_t n)
{
	pthread_mutex_lock(&ip->mp->icache_lock);
	ip->nlookup += n;
	pthread_mutex_unlock(&ip->mp->icache_lock);
}

/* Append t to the pending tickets (icache_lock held). */
static void inactive_add(struct rlfs_mount *mp, struct rlfs_inactive_ticket *t)
{
	t->seq = mp->inactive_seq++;
	t->next = NULL;
	t->prev = mp->inactive_tail;
	if (t->prev)
		t->prev->next = t;
	else
		mp->inactive_head = t;
	mp->inactive_tail = t;
}

void rlfs_inactive_begin(struct rlfs_mount *mp, struct rlfs_inactive_ticket *t)
{
	pthread_mutex_lock(&mp->icache_lock);
	inactive_add(mp, t);
	pthread_mutex_unlock(&mp->icache_lock);
}

void rlfs_inactive_end(struct rlfs_mount *mp, struct rlfs_inactive_ticket *t)
{
	pthread_mutex_lock(&mp->icache_lock);
	bool oldest = t == mp->inactive_head;
	if (t->prev)
		t->prev->next = t->next;
	else
		mp->inactive_head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	else
		mp->inactive_tail = t->prev;
	if (oldest)     /* waiters wait for the oldest ticket to move past theirs */
		pthread_cond_broadcast(&mp->inactive_cv);
	pthread_mutex_unlock(&mp->icache_lock);
}

bool rlfs_inactive_wait(struct rlfs_mount *mp, unsigned max_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += max_ms / 1000;
	until.tv_nsec += (long)(max_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&mp->icache_lock);
	uint64_t mine = mp->inactive_seq;       /* tickets below it were taken before */
	while (mp->inactive_head && mp->inactive_head->seq < mine &&
	       pthread_cond_timedwait(&mp->inactive_cv, &mp->icache_lock, &until) != ETIMEDOUT)
		;
	bool settled = !mp->inactive_head || mp->inactive_head->seq >= mine;
	pthread_mutex_unlock(&mp->icache_lock);
	return settled;
}

void rlfs_inode_forget(struct rlfs_mount *mp, uint64_t ino, uint64_t n)
{
	pthread_mutex_lock(&mp->icache_lock);
	struct rlfs_inode *ip = icache_find(mp->icache, ino);
	if (!ip) {
		pthread_mutex_unlock(&mp->icache_lock);
		return;
	}
	ip->nlookup -= RLFS_MIN(n, ip->nlookup);
	if (ip->nlookup == 0 && ip->refcount == 0)
		inode_last_ref(ip);
	else
		pthread_mutex_unlock(&mp->icache_lock);
}

/* ------------------------------------------------------------------ */
/* New inodes                                                           */
/* ------------------------------------------------------------------ */

int rlfs_inode_init(struct rlfs_trans *tp, uint64_t ino, uint32_t mode,
		    uint32_t uid, uint32_t gid, uint64_t rdev, uint64_t parent,
		    struct rlfs_inode **ipp)
{
	struct rlfs_mount *mp = tp->mp;
	struct rlfs_buf *bp;
	struct rlfs_inode *ip, *old;
	int error;

	*ipp = NULL;
	if (!ino_in_range(mp, ino))
		return -EINVAL;
	error = rlfs_trans_read_buf(tp, rlfs_ino_to_fsb(mp, ino), &rlfs_inode_buf_ops,
				    RLFS_OWNER_ANY, &bp);
	if (error)
		return error;
	struct rlfs_dinode *dip = buf_dinode(mp, bp, ino);
	if (rlfs_get32(dip->mode) != 0) {
		rlfs_trans_brelse(tp, bp);
		return rlfs_corrupt(mp, bp->fsbno, "inode",
				    "ino %llu: newly allocated inode is in use (mode 0%o)",
				    (unsigned long long)ino, rlfs_get32(dip->mode));
	}
	uint64_t gen = rlfs_get64(dip->generation) + 1;
	rlfs_trans_brelse(tp, bp);

	pthread_mutex_lock(&mp->icache_lock);
	old = icache_find(mp->icache, ino);
	pthread_mutex_unlock(&mp->icache_lock);
	if (old)
		return rlfs_corrupt(mp, rlfs_ino_to_fsb(mp, ino), "inode",
				    "ino %llu: free inode still cached", (unsigned long long)ino);

	ip = inode_alloc(mp, ino);
	if (!ip)
		return -ENOMEM;
	/* Join while the core still reads as free (mode 0): a cancel then
	 * restores mode 0 and the abort handler unhashes the dead inode. */
	ip->refcount = 1;
	pthread_mutex_lock(&mp->icache_lock);
	icache_insert(mp->icache, ip);
	pthread_mutex_unlock(&mp->icache_lock);
	rlfs_trans_log_inode(tp, ip);

	ip->mode = mode;
	ip->uid = uid;
	ip->gid = gid;
	ip->nlink = S_ISDIR(mode) ? 2 : 1;
	ip->rdev = (S_ISCHR(mode) || S_ISBLK(mode)) ? rdev : 0;
	ip->parent = parent;
	ip->generation = gen;
	rlfs_now(&ip->crtime);
	ip->atime = ip->mtime = ip->ctime = ip->crtime;
	ip->forkoff = rlfs_inode_default_forkoff(mp);
	ip->aformat = RLFS_FMT_NONE;
	if (S_ISREG(mode) || S_ISLNK(mode)) {
		ip->format = RLFS_FMT_EXTENTS;
		ip->ext_loaded = true;
	} else {
		ip->format = RLFS_FMT_NONE;
	}
	*ipp = ip;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Freeing unlinked inodes                                              */
/* ------------------------------------------------------------------ */

#define INACT_EXTENTS_PER_TX RLFS_TX_INACT_EXTENTS /* trans_resv.h */

int rlfs_inode_inactivate(struct rlfs_inode *ip)
{
	struct rlfs_mount *mp = ip->mp;
	struct rlfs_trans *tp;
	uint32_t res = rlfs_bmap_res(ip, INACT_EXTENTS_PER_TX);
	int error;

	pthread_rwlock_wrlock(&ip->iolock);
	/* staged CoW blocks first (xfs_inactive: xfs_reflink_cancel_cow_range) */
	error = rlfs_cowfork_cancel(ip, 0, UINT64_MAX);
	if (error)
		goto out_unlock;
	error = rlfs_trans_alloc(mp, &mp->resv.tr_inactive, res, RLFS_TRANS_RESERVE, &tp);
	if (error)
		goto out_unlock;
	rlfs_trans_ijoin(tp, ip);

	if (fork_has_extents(ip) && ip->ext_loaded) {
		bool done = false;
		while (!done) {
			/* the unmap here, the refcount drops and frees as
			 * deferred work (CUI/EFI) when tp rolls */
			error = rlfs_bmap_unmap(tp, ip, 0, UINT64_MAX >> 1, RLFS_BUNMAP_DEFER,
						INACT_EXTENTS_PER_TX, &done);
			if (error)
				goto out_cancel;
			rlfs_trans_log_inode(tp, ip);
			if (!done) {
				error = rlfs_trans_roll(&tp, res);
				if (error)
					goto out_unlock;
				rlfs_trans_ijoin(tp, ip);
			}
		}
	}
	if (S_ISDIR(ip->mode) && ip->format == RLFS_FMT_BTREE) {
		error = rlfs_dir_destroy(tp, ip);
		if (error)
			goto out_cancel;
		rlfs_trans_log_inode(tp, ip);
	}
	if (ip->aformat != RLFS_FMT_NONE || ip->acount) {
		error = rlfs_xattr_destroy(tp, ip);
		if (error)
			goto out_cancel;
		rlfs_trans_log_inode(tp, ip);
	}
	/* Everything queued for the inode's blocks (the last unmap's
	 * refcount, rmap and free steps; the directory's and the attr fork's
	 * frees) finishes before its number is freed.  Once the ifree step
	 * commits, the chain's next roll lets other transactions in, and a
	 * create may take the number: an rmap step still queued for the old
	 * owner would then meet the new file's records ("map ... already
	 * maps it" in 29-clone-kill, a clone into a new snapshot that reused
	 * the number).  XFS likewise frees the inode in a transaction of its
	 * own after xfs_itruncate_extents has finished its chain
	 * (xfs_inactive_ifree). */
	if (tp->dfops) {
		error = rlfs_trans_roll(&tp, res);
		if (error)
			goto out_unlock;
		rlfs_trans_ijoin(tp, ip);
	}
	/* Write the inode out as free (mode 0) before ifree, which may give
	 * the whole chunk back to free space. */
	ip->mode = 0;
	ip->size = 0;
	ip->nlink = 0;
	ip->format = RLFS_FMT_NONE;
	ip->aformat = RLFS_FMT_NONE;
	ip->root = 0;
	ip->root_level = 0;
	ip->aroot = 0;
	ip->aroot_level = 0;
	ip->acount = 0;
	ip->ext_loaded = false;
	rlfs_iext_destroy(&ip->iext);
	if (ip->nblocks)
		rlfs_warn("inode %llu: %llu blocks still counted when freed",
			  (unsigned long long)ip->ino, (unsigned long long)ip->nblocks);
	ip->nblocks = 0;
	if (lit_size(mp))
		memset(ip->literal, 0, lit_size(mp));
	error = rlfs_inode_flush_to_buf(tp, ip);
	if (error)
		goto out_cancel;
	ip->li_logged = false;
	/* off its AG's unlinked list, in the transaction that frees it */
	error = rlfs_iunlink_remove(tp, ip->ino, NULL);
	if (error)
		goto out_cancel;
	error = rlfs_ifree(tp, ip->ino);
	if (error)
		goto out_cancel;
	/* Unhash under meta_lock so that the number can be reused at once. */
	icache_unhash(ip);
	error = rlfs_trans_commit(tp);
	goto out_unlock;
out_cancel:
	rlfs_trans_cancel(tp);
out_unlock:
	pthread_rwlock_unlock(&ip->iolock);
	return error;
}

int rlfs_inode_free_orphan(struct rlfs_mount *mp, uint64_t ino)
{
	struct rlfs_trans *tp;
	struct rlfs_inode *ip = NULL;
	int error = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
	if (error)
		return error;
	error = iget_tp(tp, ino, 1, false, &ip);
	rlfs_trans_cancel(tp);
	if (error)
		return error;
	if (!ip)
		return -ENOENT;
	pthread_mutex_lock(&mp->icache_lock);
	if (ip->nlink != 0 || ip->refcount != 1 || ip->nlookup || ip->freeing) {
		error = ip->nlink ? -EINVAL : -EBUSY;
		pthread_mutex_unlock(&mp->icache_lock);
		rlfs_irele(ip);
		return error;
	}
	/* as rlfs_icache_reclaim: the last reference, freed here */
	ip->refcount = 0;
	ip->freeing = true;
	pthread_mutex_unlock(&mp->icache_lock);
	error = rlfs_inode_inactivate(ip);
	icache_unhash(ip);
	inode_free(ip);
	return error;
}

/* ------------------------------------------------------------------ */

void rlfs_inode_stat(struct rlfs_inode *ip, struct stat *st)
{
	struct rlfs_mount *mp = ip->mp;
	memset(st, 0, sizeof(*st));
	st->st_ino = ip->ino;
	st->st_mode = ip->mode;
	st->st_nlink = ip->nlink;
	st->st_uid = ip->uid;
	st->st_gid = ip->gid;
	st->st_rdev = ip->rdev;
	st->st_size = (off_t)ip->size;
	st->st_blksize = mp->blocksize;
	st->st_blocks = (blkcnt_t)(ip->nblocks << (mp->blocklog - 9));
	st->st_atim = ip->atime;
	st->st_mtim = ip->mtime;
	st->st_ctim = ip->ctime;
}

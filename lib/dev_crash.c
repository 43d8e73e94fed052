/*
 * dev_crash.c: the crash-recording device (dev_crash.h).  The record is an
 * array of events plus one growing arena holding the bytes of every write;
 * the base image is kept as a sorted list of its non-zero sectors.
 */
#include "dev_crash.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct rlfs_crash_rec {
	pthread_mutex_t lock;
	uint64_t size_bytes;
	/* base image: nbase sectors, base_idx[i] is the sector number of the
	 * RLFS_CRASH_SECTOR_BYTES bytes at base_data + i * sector */
	uint64_t *base_idx;
	uint8_t *base_data;
	size_t nbase;
	struct rlfs_crash_event *ev;
	size_t nev, ev_cap;
	uint8_t *arena;
	uint64_t arena_len, arena_cap;
};

struct crash_dev_priv {
	struct rlfs_crash_rec *rec;
	struct rlfs_dev *inner;
};

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

int rlfs_crash_rec_new(struct rlfs_dev *inner, struct rlfs_crash_rec **recp)
{
	const uint32_t sec = RLFS_CRASH_SECTOR_BYTES;
	struct rlfs_crash_rec *rec = calloc(1, sizeof(*rec));
	uint8_t *buf = malloc(sec);
	if (!rec || !buf) {
		free(rec);
		free(buf);
		return -ENOMEM;
	}
	pthread_mutex_init(&rec->lock, NULL);
	rec->size_bytes = inner->size_bytes;
	size_t cap = 0;
	int err = 0;
	for (uint64_t off = 0; off + sec <= rec->size_bytes; off += sec) {
		err = rlfs_dev_pread(inner, buf, sec, off);
		if (err)
			break;
		if (all_zero(buf, sec))
			continue;
		if (rec->nbase == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			uint64_t *ni = realloc(rec->base_idx, ncap * sizeof(*ni));
			if (ni)
				rec->base_idx = ni;
			uint8_t *nd = ni ? realloc(rec->base_data, ncap * sec) : NULL;
			if (!nd) {
				err = -ENOMEM;
				break;
			}
			rec->base_data = nd;
			cap = ncap;
		}
		rec->base_idx[rec->nbase] = off / sec;
		memcpy(rec->base_data + rec->nbase * sec, buf, sec);
		rec->nbase++;
	}
	free(buf);
	if (err) {
		rlfs_crash_rec_free(rec);
		return err;
	}
	*recp = rec;
	return 0;
}

void rlfs_crash_rec_free(struct rlfs_crash_rec *rec)
{
	if (!rec)
		return;
	pthread_mutex_destroy(&rec->lock);
	free(rec->base_idx);
	free(rec->base_data);
	free(rec->ev);
	free(rec->arena);
	free(rec);
}

/* Append an event (and its bytes) under rec->lock. */
static int rec_append(struct rlfs_crash_rec *rec, enum rlfs_crash_kind kind, const void *buf,
		      uint64_t len, uint64_t off)
{
	if (rec->nev == rec->ev_cap) {
		size_t ncap = rec->ev_cap ? rec->ev_cap * 2 : 1024;
		struct rlfs_crash_event *n = realloc(rec->ev, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		rec->ev = n;
		rec->ev_cap = ncap;
	}
	if (rec->arena_len + len > rec->arena_cap) {
		uint64_t ncap = rec->arena_cap ? rec->arena_cap : (1u << 20);
		while (ncap < rec->arena_len + len)
			ncap *= 2;
		uint8_t *n = realloc(rec->arena, ncap);
		if (!n)
			return -ENOMEM;
		rec->arena = n;
		rec->arena_cap = ncap;
	}
	struct rlfs_crash_event *e = &rec->ev[rec->nev++];
	e->kind = kind;
	e->off_bytes = off;
	e->len_bytes = len;
	e->data_off = rec->arena_len;
	if (len)
		memcpy(rec->arena + rec->arena_len, buf, len);
	rec->arena_len += len;
	return 0;
}

static int crash_pread(struct rlfs_dev *dev, void *buf, size_t len, uint64_t off)
{
	struct crash_dev_priv *p = dev->priv;
	return rlfs_dev_pread(p->inner, buf, len, off);
}

static int crash_pwrite(struct rlfs_dev *dev, const void *buf, size_t len, uint64_t off)
{
	struct crash_dev_priv *p = dev->priv;
	/* the lock spans the inner write so that the record's order is the
	 * order the writes reached the device */
	pthread_mutex_lock(&p->rec->lock);
	int err = rlfs_dev_pwrite(p->inner, buf, len, off);
	if (!err)
		err = rec_append(p->rec, RLFS_CRASH_WRITE, buf, len, off);
	pthread_mutex_unlock(&p->rec->lock);
	return err;
}

static int crash_flush(struct rlfs_dev *dev)
{
	struct crash_dev_priv *p = dev->priv;
	pthread_mutex_lock(&p->rec->lock);
	int err = rlfs_dev_flush(p->inner);
	if (!err)
		err = rec_append(p->rec, RLFS_CRASH_FLUSH, NULL, 0, 0);
	pthread_mutex_unlock(&p->rec->lock);
	return err;
}

static void crash_close(struct rlfs_dev *dev)
{
	struct crash_dev_priv *p = dev->priv;
	rlfs_dev_close(p->inner);
	free(p);
	free(dev);
}

static const struct rlfs_dev_ops crash_ops = {
	.pread = crash_pread, .pwrite = crash_pwrite, .flush = crash_flush, .close = crash_close,
};

int rlfs_crash_dev_open(struct rlfs_crash_rec *rec, struct rlfs_dev *inner,
			struct rlfs_dev **devp)
{
	struct rlfs_dev *dev = calloc(1, sizeof(*dev));
	struct crash_dev_priv *p = calloc(1, sizeof(*p));
	if (!dev || !p) {
		free(dev);
		free(p);
		return -ENOMEM;
	}
	p->rec = rec;
	p->inner = inner;
	dev->ops = &crash_ops;
	dev->size_bytes = inner->size_bytes;
	dev->fd = -1;
	dev->writable = true;
	dev->lock_fd = -1;
	dev->dio_fd = -1;
	dev->priv = p;
	*devp = dev;
	return 0;
}

uint64_t rlfs_crash_rec_pos(struct rlfs_crash_rec *rec)
{
	pthread_mutex_lock(&rec->lock);
	uint64_t n = rec->nev;
	pthread_mutex_unlock(&rec->lock);
	return n;
}

int rlfs_crash_rec_event(struct rlfs_crash_rec *rec, uint64_t i, struct rlfs_crash_event *ev)
{
	pthread_mutex_lock(&rec->lock);
	int err = i < rec->nev ? 0 : -EINVAL;
	if (!err)
		*ev = rec->ev[i];
	pthread_mutex_unlock(&rec->lock);
	return err;
}

uint64_t rlfs_crash_rec_bytes(struct rlfs_crash_rec *rec)
{
	return rec->arena_len;
}

uint64_t rlfs_crash_rec_size_bytes(struct rlfs_crash_rec *rec)
{
	return rec->size_bytes;
}

static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }
static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* splitmix64: the cut's random choices */
static uint64_t mix_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static int put_all(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int rlfs_crash_rec_build(struct rlfs_crash_rec *rec, const struct rlfs_crash_cut *cut, int fd,
			 struct rlfs_crash_stats *stats)
{
	const uint32_t sec = RLFS_CRASH_SECTOR_BYTES;
	struct rlfs_crash_stats st = { 0 };
	if (cut->torn_pct > 100)
		return -EINVAL;
	pthread_mutex_lock(&rec->lock);
	int err = cut->pos <= rec->nev ? 0 : -EINVAL;
	if (err)
		goto out;
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)rec->size_bytes) < 0) {
		err = -errno;
		goto out;
	}
	for (size_t i = 0; i < rec->nbase && !err; i++)
		err = put_all(fd, rec->base_data + i * sec, sec, rec->base_idx[i] * sec);
	/* the last flush before the cut */
	uint64_t durable = 0;
	unsigned skip = cut->lost_flushes;
	for (uint64_t i = cut->pos; i > 0; i--) {
		if (rec->ev[i - 1].kind == RLFS_CRASH_FLUSH && skip-- == 0) {
			durable = i;
			break;
		}
	}
	uint64_t rs = cut->seed ^ 0x5DEECE66Dull;
	for (uint64_t i = 0; i < cut->pos && !err; i++) {
		const struct rlfs_crash_event *e = &rec->ev[i];
		if (e->kind != RLFS_CRASH_WRITE)
			continue;
		const uint8_t *data = rec->arena + e->data_off;
		if (i < durable || cut->keep_all) {
			if (i < durable)
				st.durable_writes++;
			else {
				st.window_writes++;
				st.kept++;
			}
			err = put_all(fd, data, e->len_bytes, e->off_bytes);
			continue;
		}
		st.window_writes++;
		/* sectors the write touches (device-aligned) */
		uint64_t s0 = e->off_bytes / sec;
		uint64_t s1 = (e->off_bytes + e->len_bytes + sec - 1) / sec;
		uint64_t r = mix_next(&rs);
		if (s1 - s0 > 1 && r % 100 < cut->torn_pct) {
			st.torn++;
			for (uint64_t s = s0; s < s1 && !err; s++) {
				if (!(mix_next(&rs) & 1))
					continue;
				uint64_t a = max_u64(s * sec, e->off_bytes);
				uint64_t b = min_u64((s + 1) * sec, e->off_bytes + e->len_bytes);
				err = put_all(fd, data + (a - e->off_bytes), b - a, a);
			}
		} else if ((r >> 32) & 1) {
			st.kept++;
			err = put_all(fd, data, e->len_bytes, e->off_bytes);
		} else {
			st.lost++;
		}
	}
out:
	pthread_mutex_unlock(&rec->lock);
	if (stats)
		*stats = st;
	return err;
}

/*
 * filemodel.c: files of a unit-test filesystem and their models (see
 * filemodel.h), shared by test_reflink and test_exchange.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filemodel.h"

#include "alloc.h"
#include "bmap.h"
#include "inode.h"
#include "refcount.h"
#include "rmap.h"
#include "reflinkfs/fs.h"

void mf_reserve(struct mfile *m, uint64_t size)
{
	if (size <= m->cap)
		return;
	uint64_t cap = m->cap ? m->cap : 4096;
	while (cap < size)
		cap *= 2;
	m->data = realloc(m->data, cap);
	assert_non_null(m->data);
	memset(m->data + m->cap, 0, cap - m->cap);
	m->cap = cap;
}

void mf_setsize(struct mfile *m, uint64_t size)
{
	mf_reserve(m, size);
	if (size < m->size)
		memset(m->data + size, 0, m->size - size);
	m->size = size;
}

int mkfile(struct ctx *c, const char *name)
{
	struct stat st;
	assert_true(c->nf < MAXF);
	struct mfile *m = &c->f[c->nf];
	memset(m, 0, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "%s", name);
	assert_int_equal(rlfs_mknod(MP(c), rlfs_root_ino(MP(c)), name, S_IFREG | 0644, 0, 0, 0,
				    &st), 0);
	rlfs_forget(MP(c), st.st_ino, 1);
	m->ino = st.st_ino;
	return c->nf++;
}

void fill_pattern(uint8_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((seed * 131 + i * 7 + (i >> 9)) ^ (seed >> 3));
}

/* pwrite through the library and the model */
void do_write(struct ctx *c, int i, uint64_t off, uint64_t len, uint64_t seed)
{
	struct mfile *m = &c->f[i];
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	fill_pattern(buf, len, seed);
	ssize_t r = rlfs_write(MP(c), m->ino, buf, len, (off_t)off);
	assert_int_equal(r, (ssize_t)len);
	mf_reserve(m, off + len);
	memcpy(m->data + off, buf, len);
	if (off + len > m->size)
		m->size = off + len;
	free(buf);
}

void verify_file(struct ctx *c, int i)
{
	struct mfile *m = &c->f[i];
	struct stat st;
	assert_int_equal(rlfs_getattr(MP(c), m->ino, &st), 0);
	if ((uint64_t)st.st_size != m->size)
		fail_msg("%s: size %llu, model %llu", m->name, (unsigned long long)st.st_size,
			 (unsigned long long)m->size);
	uint8_t *buf = malloc(m->size + 1);
	assert_non_null(buf);
	ssize_t r = rlfs_read(MP(c), m->ino, buf, m->size + 1, 0);
	assert_int_equal(r, (ssize_t)m->size);
	if (m->size && memcmp(buf, m->data, m->size) != 0) {
		uint64_t k = 0;
		while (buf[k] == m->data[k])
			k++;
		fail_msg("%s: contents differ from the model at byte %llu (block %llu)", m->name,
			 (unsigned long long)k, (unsigned long long)(k / c->bs));
	}
	free(buf);
}

/* clone through the library and the model (expects success) */
void do_clone(struct ctx *c, int s, uint64_t soff, int d, uint64_t doff, uint64_t len)
{
	struct mfile *ms = &c->f[s], *md = &c->f[d];
	uint64_t count = len ? len : ms->size - soff;
	int64_t r = rlfs_clone_range(MP(c), ms->ino, soff, md->ino, doff, len, 0);
	if (r != (int64_t)count)
		fail_msg("clone %s+%llu -> %s+%llu len %llu: %lld", ms->name,
			 (unsigned long long)soff, md->name, (unsigned long long)doff,
			 (unsigned long long)len, (long long)r);
	uint8_t *tmp = malloc(count ? count : 1);
	assert_non_null(tmp);
	memcpy(tmp, ms->data + soff, count);
	mf_reserve(md, doff + count);
	memcpy(md->data + doff, tmp, count);
	if (doff + count > md->size)
		md->size = doff + count;
	free(tmp);
}

/* ------------------------------------------------------------------ */
/* Consistency checker                                                  */


void rl_push(struct rlist *l, uint32_t key, uint32_t len, uint32_t rc)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 256;
		l->r = realloc(l->r, l->cap * sizeof(*l->r));
		assert_non_null(l->r);
	}
	l->r[l->n++] = (struct rrec){ key, len, rc };
}

int collect_refc(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct rlfs_refcount_rec r;
	memcpy(&r, rec, sizeof(r));
	rl_push(priv, rlfs_get32(r.startblock), rlfs_get32(r.blockcount), rlfs_get32(r.refcount));
	return 0;
}

struct freechk { const uint32_t *cnt; uint64_t bad; };

static int check_free(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct freechk *f = priv;
	struct rlfs_alloc_rec r;
	memcpy(&r, rec, sizeof(r));
	uint64_t s = rlfs_agb_to_fsb(cur->mp, cur->agno, rlfs_get32(r.startblock));
	for (uint32_t i = 0; i < rlfs_get32(r.blockcount); i++)
		if (f->cnt[s + i] && !f->bad)
			f->bad = s + i;
	return 0;
}

/* Refcount tree == mapping counts over all model files; see the top. */
void check_refcounts(struct ctx *c)
{
	struct rlfs_mount *mp = MP(c);
	uint32_t *cnt = calloc(mp->dblocks, sizeof(*cnt));
	assert_non_null(cnt);
	for (int i = 0; i < c->nf; i++) {
		struct rlfs_inode *ip;
		assert_int_equal(rlfs_iget(mp, c->f[i].ino, &ip), 0);
		pthread_rwlock_rdlock(&ip->iolock);
		for (uint32_t k = 0; k < rlfs_iext_count(&ip->iext); k++) {
			const struct rlfs_irec *r = rlfs_iext_at(&ip->iext, k);
			assert_true(r->startblock + r->blockcount <= mp->dblocks);
			/* extents stay inside one AG */
			assert_int_equal(rlfs_fsb_to_agno(mp, r->startblock),
					 rlfs_fsb_to_agno(mp, r->startblock + r->blockcount - 1));
			for (uint32_t b = 0; b < r->blockcount; b++)
				cnt[r->startblock + b]++;
		}
		struct rlfs_trans *tp;
		assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
		assert_int_equal(rlfs_bmap_check(tp, ip), 0);
		rlfs_trans_cancel(tp);
		pthread_rwlock_unlock(&ip->iolock);
		rlfs_irele(ip);
	}
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		struct rlfs_btree_cur cur;
		struct rlist got = { 0 }, want = { 0 };
		uint64_t start = rlfs_agb_to_fsb(mp, agno, 0);
		uint32_t len = rlfs_ag_blocks(mp, agno);
		if (rlfs_has_reflink(mp)) {
			rlfs_refcount_cur_init(&cur, tp, agno, NULL);
			assert_int_equal(rlfs_btree_check(&cur), 0);
			assert_int_equal(rlfs_btree_query_all(&cur, collect_refc, &got), 0);
			rlfs_btree_cur_del(&cur);
		}
		for (uint32_t b = 0; b < len;) {
			uint32_t n = cnt[start + b];
			if (n < 2) {
				b++;
				continue;
			}
			if (!rlfs_has_reflink(mp))
				fail_msg("block %llu mapped %u times without reflink",
					 (unsigned long long)(start + b), n);
			uint32_t e = b + 1;
			while (e < len && cnt[start + e] == n)
				e++;
			rl_push(&want, b, e - b, n);
			b = e;
		}
		for (size_t i = 0; i < got.n || i < want.n; i++) {
			if (i >= got.n || i >= want.n || got.r[i].key != want.r[i].key ||
			    got.r[i].len != want.r[i].len || got.r[i].rc != want.r[i].rc) {
				if (i < got.n)
					fprintf(stderr, "tree     rec %zu: %#x +%u rc %u\n", i,
						got.r[i].key, got.r[i].len, got.r[i].rc);
				if (i < want.n)
					fprintf(stderr, "mappings rec %zu: %#x +%u rc %u\n", i,
						want.r[i].key, want.r[i].len, want.r[i].rc);
				fail_msg("AG %u: refcount records differ from the mappings at %zu", agno,
					 i);
			}
		}
		free(got.r);
		free(want.r);
		struct freechk fc = { cnt, 0 };
		rlfs_alloc_cur_init(&cur, tp, &rlfs_bnobt_ops, agno, NULL);
		assert_int_equal(rlfs_btree_check(&cur), 0);
		assert_int_equal(rlfs_btree_query_all(&cur, check_free, &fc), 0);
		rlfs_btree_cur_del(&cur);
		if (fc.bad)
			fail_msg("block %llu is mapped and free", (unsigned long long)fc.bad);
	}
	rlfs_trans_cancel(tp);
	free(cnt);
}

void check_fs(struct ctx *c)
{
	for (int i = 0; i < c->nf; i++)
		verify_file(c, i);
	check_refcounts(c);
}

/* `reflinkfs fsck -n` on the image must be clean (tu_fsck_bin: a missing
 * fsck binary fails the test); the image is mounted again afterwards. */
void run_fsck(struct ctx *c)
{
	assert_int_equal(rlfs_mount_close(c->fs.mp), 0);
	c->fs.mp = NULL;
	int st = tu_fsck(c->fs.path, 0);
	if (st != 0)
		fail_msg("fsck failed on %s (exit %d)", c->fs.path, st);
	assert_int_equal(rlfs_mount_open(c->fs.path, RLFS_MOUNT_NOLOCK, &c->fs.mp), 0);
}

void ctx_init(struct ctx *c, uint64_t size, uint32_t bs, uint32_t agcount)
{
	memset(c, 0, sizeof(*c));
	tu_mkfs_mount(&c->fs, size, bs, agcount);
	c->bs = MP(c)->blocksize;
}

void ctx_fini(struct ctx *c)
{
	if (c->fs.mp)
		run_fsck(c);
	for (int i = 0; i < c->nf; i++)
		free(c->f[i].data);
	tu_unmount(&c->fs);
}

/*
 * test_shift.c: fallocate FALLOC_FL_COLLAPSE_RANGE and FALLOC_FL_INSERT_RANGE
 * (lib/shift.c, the checks in lib/file.c), in process.
 *
 *   test_many_extents  a 300-extent file (a bmbt): collapse and insert at
 *                      several places; after each, every file block maps
 *                      exactly the fsbno (and state) the model predicts
 *                      from the mapping before, contents and size follow
 *   test_shared        a file cloned into another: collapse one, insert
 *                      into the other; both read back right and every
 *                      shared block keeps refcount 2 (shifts move
 *                      mappings, never references)
 *   test_unwritten     holes and unwritten extents move with their state
 *                      (still unwritten, still reading zeros); an insert
 *                      splits an unwritten extent
 *   test_errors        the errnos of fallocate(2) / xfs_file_fallocate:
 *                      EINVAL (unaligned, collapse reaching EOF, insert at
 *                      EOF, len 0), EOPNOTSUPP (combined with another flag,
 *                      as vfs_fallocate of Linux 6.15 on), EISDIR,
 *                      ENODEV, EPERM (immutable, append-only), EFBIG;
 *                      nothing changes
 *   test_random        random writes, clones, punches, collapses and
 *                      inserts over five files against a model, remounts
 *                      between
 *   test_bad_item      log recovery refuses malformed SXI items (bad op,
 *                      flags, pad, zero shift, cursor out of range, an inode
 *                      not in use or not a regular file) with -EUCLEAN
 *   test_crash         every cut of the device writes of a many-step
 *                      collapse and of an insert (intents forced to the
 *                      log one by one): after recovery the file is wholly
 *                      before or wholly after, never between
 * fsck -n is clean at the end of every test.  Seed: RLFS_TEST_SEED.
 */
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "bmap.h"
#include "dev.h"
#include "dev_crash.h"
#include "inode.h"
#include "refcount.h"
#include "reflinkfs/fs.h"
#include "shift.h"

#define MB (1024ull * 1024)
#define BS 4096u
#define COLLAPSE FALLOC_FL_COLLAPSE_RANGE
#define INSERT FALLOC_FL_INSERT_RANGE

static uint64_t rnd(uint64_t n)
{
	return n ? tu_rand() % n : 0;
}

/* ---- a file and its model ---- */

struct mfile {
	uint64_t ino;
	uint8_t *data;
	uint64_t size;
};

static uint64_t mkfile(struct rlfs_mount *mp, const char *name)
{
	struct stat st;
	assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), name, S_IFREG | 0644, 0, 0, 0, &st), 0);
	rlfs_forget(mp, st.st_ino, 1);
	return st.st_ino;
}

static void mf_resize(struct mfile *m, uint64_t size)
{
	m->data = realloc(m->data, size ? size : 1);
	assert_non_null(m->data);
	if (size > m->size)
		memset(m->data + m->size, 0, size - m->size);
	m->size = size;
}

static void mf_write(struct rlfs_mount *mp, struct mfile *m, uint64_t off, uint64_t len,
		     unsigned seed)
{
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	for (uint64_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed * 37 + (off + i) * 13 + ((off + i) >> 12));
	assert_int_equal(rlfs_write(mp, m->ino, buf, len, (off_t)off), (ssize_t)len);
	if (off + len > m->size)
		mf_resize(m, off + len);
	memcpy(m->data + off, buf, len);
	free(buf);
}

/* the model side of a collapse / insert of [off, off+len) */
static void mf_shift(struct mfile *m, int mode, uint64_t off, uint64_t len)
{
	if (mode == COLLAPSE) {
		memmove(m->data + off, m->data + off + len, m->size - off - len);
		m->size -= len;
	} else {
		uint64_t old = m->size;
		mf_resize(m, old + len);
		memmove(m->data + off + len, m->data + off, old - off);
		memset(m->data + off, 0, len);
	}
}

static void mf_verify(struct rlfs_mount *mp, const struct mfile *m, const char *what)
{
	struct stat st;
	assert_int_equal(rlfs_getattr(mp, m->ino, &st), 0);
	if ((uint64_t)st.st_size != m->size)
		fail_msg("%s: size %llu, model %llu", what, (unsigned long long)st.st_size,
			 (unsigned long long)m->size);
	uint8_t *buf = malloc(m->size + 1);
	assert_non_null(buf);
	assert_int_equal(rlfs_read(mp, m->ino, buf, m->size + 1, 0), (ssize_t)m->size);
	if (m->size && memcmp(buf, m->data, m->size) != 0) {
		uint64_t k = 0;
		while (buf[k] == m->data[k])
			k++;
		fail_msg("%s: contents differ at byte %llu", what, (unsigned long long)k);
	}
	free(buf);
}

/* ---- block maps ---- */

/* per file block: fsbno (0 = hole) and state, for blocks [0, n) */
struct bmap_snap {
	uint64_t *fsb;
	uint8_t *unw;
	uint64_t n;
};

static void snap_take(struct rlfs_mount *mp, uint64_t ino, uint64_t n, struct bmap_snap *s)
{
	struct rlfs_inode *ip;
	s->n = n;
	s->fsb = calloc(n ? n : 1, sizeof(*s->fsb));
	s->unw = calloc(n ? n : 1, 1);
	assert_non_null(s->fsb);
	assert_non_null(s->unw);
	assert_int_equal(rlfs_iget(mp, ino, &ip), 0);
	pthread_rwlock_rdlock(&ip->iolock);
	for (uint32_t k = 0; k < rlfs_iext_count(&ip->iext); k++) {
		const struct rlfs_irec *r = rlfs_iext_at(&ip->iext, k);
		for (uint32_t b = 0; b < r->blockcount; b++) {
			uint64_t fb = r->startoff + b;
			if (fb >= n)
				fail_msg("inode %llu maps block %llu past %llu",
					 (unsigned long long)ino, (unsigned long long)fb,
					 (unsigned long long)n);
			s->fsb[fb] = r->startblock + b;
			s->unw[fb] = (r->state & RLFS_EXT_UNWRITTEN) != 0;
		}
	}
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_bmap_check(tp, ip), 0);
	rlfs_trans_cancel(tp);
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
}

static void snap_free(struct bmap_snap *s)
{
	free(s->fsb);
	free(s->unw);
}

/* The map after a shift of [off, off+len) blocks is the map before with
 * that range removed (collapse) or a hole of len inserted (insert). */
static void snap_check_shift(const struct bmap_snap *before, const struct bmap_snap *after,
			     int mode, uint64_t off, uint64_t len)
{
	for (uint64_t fb = 0; fb < after->n; fb++) {
		uint64_t want = 0;
		uint8_t wunw = 0;
		uint64_t src = UINT64_MAX;
		if (fb < off)
			src = fb;
		else if (mode == COLLAPSE)
			src = fb + len;
		else if (fb >= off + len)
			src = fb - len;
		if (src < before->n) {
			want = before->fsb[src];
			wunw = before->unw[src];
		}
		if (after->fsb[fb] != want || (want && after->unw[fb] != wunw))
			fail_msg("file block %llu maps %llu (unwritten %d), expected %llu (%d)",
				 (unsigned long long)fb, (unsigned long long)after->fsb[fb],
				 after->unw[fb], (unsigned long long)want, wunw);
	}
}

static int do_shift(struct rlfs_mount *mp, struct mfile *m, int mode, uint64_t off,
		    uint64_t len)
{
	uint64_t nb = (m->size + RLFS_MIN(len, 4096ull * BS)) / BS + 64;
	struct bmap_snap a, b;
	snap_take(mp, m->ino, nb, &a);
	int r = rlfs_fallocate(mp, m->ino, mode, (off_t)off, (off_t)len);
	if (r == 0)
		mf_shift(m, mode, off, len);
	snap_take(mp, m->ino, nb, &b);
	if (r == 0)
		snap_check_shift(&a, &b, mode, off / BS, len / BS);
	else
		snap_check_shift(&a, &b, COLLAPSE, 0, 0);   /* unchanged */
	snap_free(&a);
	snap_free(&b);
	return r;
}

static void fsck_clean(struct tu_fs *fs)
{
	assert_int_equal(rlfs_mount_close(fs->mp), 0);
	fs->mp = NULL;
	int st = tu_fsck(fs->path, 0);
	if (st != 0)
		fail_msg("fsck failed on %s (exit %d)", fs->path, st);
	assert_int_equal(rlfs_mount_open(fs->path, RLFS_MOUNT_NOLOCK, &fs->mp), 0);
}

static uint32_t refcount_of(struct rlfs_mount *mp, uint64_t fsbno)
{
	struct rlfs_trans *tp;
	uint32_t rc = 0;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_refcount_get(tp, fsbno, &rc), 0);
	rlfs_trans_cancel(tp);
	return rc;
}

/* ---- tests ---- */

static void test_many_extents(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MB, BS, 2);
	struct rlfs_mount *mp = fs.mp;
	struct mfile m = { 0 };
	m.ino = mkfile(mp, "frag");
	/* 300 one-block extents with holes between, then a partial block */
	for (uint64_t i = 0; i < 300; i++)
		mf_write(mp, &m, 2 * i * BS, BS, (unsigned)i);
	mf_write(mp, &m, 600 * BS, 100, 7);
	assert_int_equal(do_shift(mp, &m, COLLAPSE, 10 * BS, 20 * BS), 0);
	mf_verify(mp, &m, "collapse 10+20");
	assert_int_equal(do_shift(mp, &m, INSERT, 5 * BS, 7 * BS), 0);
	mf_verify(mp, &m, "insert 5+7");
	/* odd offsets: the hole/extent pattern moves by an odd amount */
	assert_int_equal(do_shift(mp, &m, COLLAPSE, 1 * BS, 3 * BS), 0);
	assert_int_equal(do_shift(mp, &m, INSERT, 0, 1 * BS), 0);
	assert_int_equal(do_shift(mp, &m, INSERT, 401 * BS, 1000 * BS), 0);
	mf_verify(mp, &m, "insert 401+1000");
	/* a collapse whose range holds most of the file */
	uint64_t last = (m.size - 1) / BS;
	assert_int_equal(do_shift(mp, &m, COLLAPSE, 3 * BS, (last - 3) * BS), 0);
	mf_verify(mp, &m, "big collapse");
	tu_remount(&fs);
	mp = fs.mp;
	mf_verify(mp, &m, "after remount");
	fsck_clean(&fs);
	free(m.data);
	tu_unmount(&fs);
}

static void test_shared(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MB, BS, 2);
	struct rlfs_mount *mp = fs.mp;
	struct mfile a = { 0 }, b = { 0 };
	a.ino = mkfile(mp, "a");
	b.ino = mkfile(mp, "b");
	for (uint64_t i = 0; i < 40; i++)
		mf_write(mp, &a, 3 * i * BS, 2 * BS, (unsigned)i + 1);
	assert_int_equal(rlfs_clone_range(mp, a.ino, 0, b.ino, 0, 0, 0), (int64_t)a.size);
	mf_resize(&b, a.size);
	memcpy(b.data, a.data, a.size);
	struct bmap_snap s0;
	snap_take(mp, a.ino, a.size / BS + 1, &s0);
	assert_int_equal(do_shift(mp, &b, COLLAPSE, 6 * BS, 9 * BS), 0);
	assert_int_equal(do_shift(mp, &a, INSERT, 4 * BS, 5 * BS), 0);
	assert_int_equal(do_shift(mp, &b, INSERT, 0, 2 * BS), 0);
	mf_verify(mp, &a, "a");
	mf_verify(mp, &b, "b");
	/* shifts move mappings, not references: blocks both files still map
	 * keep refcount 2; those the collapse dropped from b are back to 1 */
	for (uint64_t fb = 0; fb < s0.n; fb++) {
		if (!s0.fsb[fb])
			continue;
		uint32_t want = (fb >= 6 && fb < 15) ? 1 : 2;
		uint32_t rc = refcount_of(mp, s0.fsb[fb]);
		if (rc != want && !(want == 1 && rc == 0))
			fail_msg("fsbno %llu (a's block %llu): refcount %u, expected %u",
				 (unsigned long long)s0.fsb[fb], (unsigned long long)fb, rc, want);
	}
	snap_free(&s0);
	/* a write to the shared, shifted range copies on write */
	mf_write(mp, &b, 3 * BS + 100, 5000, 99);
	mf_verify(mp, &a, "a after CoW");
	mf_verify(mp, &b, "b after CoW");
	fsck_clean(&fs);
	free(a.data);
	free(b.data);
	tu_unmount(&fs);
}

static void test_unwritten(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MB, BS, 2);
	struct rlfs_mount *mp = fs.mp;
	struct mfile m = { 0 };
	m.ino = mkfile(mp, "u");
	mf_write(mp, &m, 0, 4 * BS, 1);
	assert_int_equal(rlfs_fallocate(mp, m.ino, 0, 4 * BS, 12 * BS), 0);   /* unwritten */
	mf_resize(&m, 16 * BS);
	mf_write(mp, &m, 20 * BS, 3 * BS, 2);                                 /* hole 16..20 */
	assert_int_equal(rlfs_fallocate(mp, m.ino, FALLOC_FL_KEEP_SIZE, 30 * BS, 8 * BS), 0);
	/* insert inside the unwritten extent: split, both parts unwritten */
	assert_int_equal(do_shift(mp, &m, INSERT, 8 * BS, 2 * BS), 0);
	mf_verify(mp, &m, "insert in unwritten");
	/* collapse across a written/unwritten boundary and the hole */
	assert_int_equal(do_shift(mp, &m, COLLAPSE, 2 * BS, 5 * BS), 0);
	assert_int_equal(do_shift(mp, &m, COLLAPSE, 12 * BS, 3 * BS), 0);
	mf_verify(mp, &m, "collapse");
	/* the preallocation past EOF moved too (the map check above) */
	mf_write(mp, &m, 4 * BS, 10, 3);
	mf_verify(mp, &m, "write into unwritten");
	fsck_clean(&fs);
	free(m.data);
	tu_unmount(&fs);
}

static void test_errors(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MB, BS, 2);
	struct rlfs_mount *mp = fs.mp;
	struct mfile m = { 0 };
	m.ino = mkfile(mp, "e");
	mf_write(mp, &m, 0, 10 * BS + 100, 1);
	struct { int mode; off_t off, len; int err; } cases[] = {
		{ COLLAPSE, 1, BS, -EINVAL },
		{ COLLAPSE, BS, BS + 1, -EINVAL },
		{ COLLAPSE, BS, 10 * BS, -EINVAL },         /* reaches EOF */
		{ COLLAPSE, 10 * BS, BS, -EINVAL },         /* past EOF */
		{ COLLAPSE, 0, 0, -EINVAL },
		{ COLLAPSE, -BS, BS, -EINVAL },
		{ COLLAPSE | FALLOC_FL_KEEP_SIZE, 0, BS, -EOPNOTSUPP },
		{ INSERT, 512, BS, -EINVAL },
		{ INSERT, 11 * BS, BS, -EINVAL },           /* at or past EOF */
		{ INSERT | FALLOC_FL_KEEP_SIZE, 0, BS, -EOPNOTSUPP },
		{ INSERT | COLLAPSE, 0, BS, -EOPNOTSUPP },
		{ INSERT | FALLOC_FL_PUNCH_HOLE, 0, BS, -EOPNOTSUPP },
		{ INSERT, 0, (off_t)(mp->maxbytes & ~(uint64_t)(BS - 1)), -EFBIG },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = do_shift(mp, &m, cases[i].mode, (uint64_t)cases[i].off,
				 (uint64_t)cases[i].len);
		if (r != cases[i].err)
			fail_msg("case %zu (mode %#x off %lld len %lld): %d, expected %d", i,
				 cases[i].mode, (long long)cases[i].off, (long long)cases[i].len, r,
				 cases[i].err);
	}
	mf_verify(mp, &m, "after errors");
	struct stat st;
	assert_int_equal(rlfs_mkdir(mp, rlfs_root_ino(mp), "dir", 0755, 0, 0, &st), 0);
	rlfs_forget(mp, st.st_ino, 1);
	assert_int_equal(rlfs_fallocate(mp, st.st_ino, COLLAPSE, 0, BS), -EISDIR);
	assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), "fifo", S_IFIFO | 0644, 0, 0, 0, &st),
			 0);
	rlfs_forget(mp, st.st_ino, 1);
	assert_int_equal(rlfs_fallocate(mp, st.st_ino, INSERT, 0, BS), -ENODEV);
	/* immutable, append-only: EPERM */
	struct rlfs_fileattr fa = { .xflags = FS_XFLAG_APPEND };
	assert_int_equal(rlfs_fileattr_set(mp, m.ino, &fa, RLFS_FA_CAP_LINUX_IMMUTABLE), 0);
	assert_int_equal(rlfs_fallocate(mp, m.ino, COLLAPSE, 0, BS), -EPERM);
	assert_int_equal(rlfs_fallocate(mp, m.ino, INSERT, 0, BS), -EPERM);
	fa.xflags = FS_XFLAG_IMMUTABLE;
	assert_int_equal(rlfs_fileattr_set(mp, m.ino, &fa, RLFS_FA_CAP_LINUX_IMMUTABLE), 0);
	assert_int_equal(rlfs_fallocate(mp, m.ino, INSERT, 0, BS), -EPERM);
	fa.xflags = 0;
	assert_int_equal(rlfs_fileattr_set(mp, m.ino, &fa, RLFS_FA_CAP_LINUX_IMMUTABLE), 0);
	mf_verify(mp, &m, "after EPERM");
	fsck_clean(&fs);
	free(m.data);
	tu_unmount(&fs);
}

static void test_random(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MB, BS, 2);
	struct rlfs_mount *mp = fs.mp;
	enum { NF = 5 };
	struct mfile f[NF];
	memset(f, 0, sizeof(f));
	for (int i = 0; i < NF; i++) {
		char name[8];
		snprintf(name, sizeof(name), "r%d", i);
		f[i].ino = mkfile(mp, name);
	}
	const uint64_t maxsz = 128ull * BS;
	int nshift = 0;
	for (int op = 0; op < 1500; op++) {
		struct mfile *m = &f[rnd(NF)], *n = &f[rnd(NF)];
		switch (rnd(6)) {
		case 0: case 1: {
			uint64_t o = rnd(maxsz), l = 1 + rnd(6 * BS);
			if (o + l <= maxsz)
				mf_write(mp, m, o, l, (unsigned)op);
			break;
		}
		case 2: {   /* clone whole blocks of n into m */
			uint64_t nb = n->size / BS;
			if (!nb || m == n)
				break;
			uint64_t so = rnd(nb), cnt = 1 + rnd(nb - so), dO = rnd(maxsz / BS - cnt);
			assert_int_equal(rlfs_clone_range(mp, n->ino, so * BS, m->ino, dO * BS,
							  cnt * BS, 0), (int64_t)(cnt * BS));
			if ((dO + cnt) * BS > m->size)
				mf_resize(m, (dO + cnt) * BS);
			memcpy(m->data + dO * BS, n->data + so * BS, cnt * BS);
			break;
		}
		case 3: {   /* punch */
			uint64_t o = rnd(maxsz), l = 1 + rnd(4 * BS);
			assert_int_equal(rlfs_fallocate(mp, m->ino, FALLOC_FL_PUNCH_HOLE |
							FALLOC_FL_KEEP_SIZE, (off_t)o, (off_t)l), 0);
			if (o < m->size)
				memset(m->data + o, 0, (size_t)RLFS_MIN(l, m->size - o));
			break;
		}
		case 4: case 5: {
			uint64_t nb = (m->size + BS - 1) / BS;
			if (nb < 2)
				break;
			int mode = rnd(2) ? COLLAPSE : INSERT;
			uint64_t o = rnd(nb - 1), l = 1 + rnd(mode == COLLAPSE ? nb - 1 - o : 8);
			if (mode == COLLAPSE && (o + l) * BS >= m->size)
				break;
			if (mode == INSERT && m->size + l * BS > maxsz)
				break;
			assert_int_equal(do_shift(mp, m, mode, o * BS, l * BS), 0);
			nshift++;
			break;
		}
		}
		if (op % 100 == 99) {
			for (int i = 0; i < NF; i++)
				mf_verify(mp, &f[i], "random");
		}
		if (op % 500 == 499) {
			tu_remount(&fs);
			mp = fs.mp;
		}
	}
	print_message("%d collapses/inserts\n", nshift);
	assert_true(nshift > 100);
	for (int i = 0; i < NF; i++) {
		mf_verify(mp, &f[i], "random end");
		free(f[i].data);
	}
	fsck_clean(&fs);
	tu_unmount(&fs);
}

static void put_sxi(struct rlfs_sxi_item *x, uint64_t ino, uint64_t startoff, uint64_t shift,
		    uint64_t cursor, uint64_t size, uint32_t flags, uint32_t pad)
{
	rlfs_put64(x->ino, ino);
	rlfs_put64(x->startoff, startoff);
	rlfs_put64(x->shift, shift);
	rlfs_put64(x->cursor, cursor);
	rlfs_put64(x->new_size, size);
	rlfs_put32(x->flags, flags);
	rlfs_put32(x->pad, pad);
}

static void test_bad_item(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MB, BS, 2);
	struct rlfs_mount *mp = fs.mp;
	struct mfile m = { 0 };
	m.ino = mkfile(mp, "b");
	mf_write(mp, &m, 0, 8 * BS, 1);
	struct stat st;
	assert_int_equal(rlfs_mkdir(mp, rlfs_root_ino(mp), "d", 0755, 0, 0, &st), 0);
	rlfs_forget(mp, st.st_ino, 1);
	uint64_t C = RLFS_SXI_COLLAPSE, I = RLFS_SXI_INSERT, P = RLFS_SXI_PUNCHING;
	struct { uint64_t ino, so, sh, cur, size; uint32_t flags, pad; int want; } c[] = {
		{ m.ino, 1, 2, 3, 100, C, 0, 0 },               /* good: collapse, shifting */
		{ m.ino, 1, 2, 1, 100, C | P, 0, 0 },           /* good: punching */
		{ m.ino, 1, 2, 8, 100, I, 0, 0 },               /* good: insert */
		{ m.ino, 1, 2, 3, 100, 3, 0, -EUCLEAN },        /* no such op */
		{ m.ino, 1, 2, 3, 100, I | P, 0, -EUCLEAN },    /* insert never punches */
		{ m.ino, 1, 2, 3, 100, C | (1u << 9), 0, -EUCLEAN },
		{ m.ino, 1, 2, 3, 100, C, 7, -EUCLEAN },        /* pad */
		{ m.ino, 1, 0, 3, 100, C, 0, -EUCLEAN },        /* shift 0 */
		{ m.ino, 1, 2, 2, 100, C, 0, -EUCLEAN },        /* cursor inside the range */
		{ m.ino, 5, 2, 4, 100, I, 0, -EUCLEAN },        /* cursor below startoff */
		{ m.ino, UINT64_MAX - 1, 2, 3, 100, C, 0, -EUCLEAN },
		{ m.ino, 1, 2, 3, UINT64_MAX, C, 0, -EUCLEAN }, /* size past the largest */
		{ 0, 1, 2, 3, 100, C, 0, -EUCLEAN },
		{ st.st_ino, 1, 2, 3, 100, C, 0, -EUCLEAN },    /* a directory */
		{ m.ino + 1000, 1, 2, 3, 100, C, 0, -EUCLEAN }, /* not in use */
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct rlfs_sxi_item x;
		put_sxi(&x, c[i].ino, c[i].so, c[i].sh, c[i].cur, c[i].size, c[i].flags, c[i].pad);
		struct rlfs_trans *tp;
		assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_recover, 0, 0, &tp), 0);
		int r = rlfs_sxi_type.recover_item(tp, &x, sizeof(x));
		if (r != c[i].want)
			fail_msg("item %zu: %d, expected %d", i, r, c[i].want);
		if (r == 0)
			assert_non_null(tp->dfops);
		rlfs_trans_cancel(tp);   /* drops the queued work */
	}
	/* a short item */
	struct rlfs_sxi_item x;
	put_sxi(&x, m.ino, 1, 2, 3, 100, RLFS_SXI_COLLAPSE, 0);
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_recover, 0, 0, &tp), 0);
	assert_int_equal(rlfs_sxi_type.recover_item(tp, &x, sizeof(x) - 8), -EUCLEAN);
	rlfs_trans_cancel(tp);
	mf_verify(mp, &m, "untouched");
	free(m.data);
	tu_unmount(&fs);
}

/* Cut the device record of one shift at every event; each crash image,
 * mounted (log recovery), shows the file before or after, and fsck -n is
 * clean. */
static void crash_one(int mode, uint64_t off_blocks, uint64_t len_blocks)
{
	struct tu_fs fs;
	setenv("RLFS_LOG_FORCE_INTENTS", "1", 1);
	tu_mkfs_mount(&fs, 32 * MB, BS, 2);
	struct rlfs_mount *mp = fs.mp;
	struct mfile before = { 0 };
	before.ino = mkfile(mp, "c");
	/* 120 extents: a many-step shift (16 mappings per step) */
	for (uint64_t i = 0; i < 120; i++)
		mf_write(mp, &before, 2 * i * BS, BS, (unsigned)i + 3);
	assert_int_equal(rlfs_fsync(mp, before.ino, 0), 0);
	struct mfile after = { .ino = before.ino, .size = before.size };
	after.data = malloc(before.size);
	assert_non_null(after.data);
	memcpy(after.data, before.data, before.size);
	mf_shift(&after, mode, off_blocks * BS, len_blocks * BS);

	struct rlfs_crash_rec *rec = tu_crash_record(mp);
	assert_int_equal(rlfs_fallocate(mp, before.ino, mode, (off_t)(off_blocks * BS),
					(off_t)(len_blocks * BS)), 0);
	assert_int_equal(rlfs_fsync(mp, before.ino, 0), 0);
	uint64_t npos = rlfs_crash_rec_pos(rec);
	tu_unmount(&fs);   /* keeps nothing of the record: built below */

	char img[96];
	snprintf(img, sizeof(img), "/tmp/rlfs-shift-crash-%d.img", (int)getpid());
	unsigned nbefore = 0, nafter = 0;
	for (uint64_t pos = 0; pos <= npos; pos++) {
		int fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		struct rlfs_crash_cut cut = { .pos = pos, .keep_all = true };
		assert_int_equal(rlfs_crash_rec_build(rec, &cut, fd, NULL), 0);
		close(fd);
		struct rlfs_mount *cm;
		assert_int_equal(rlfs_mount_open(img, RLFS_MOUNT_NOLOCK, &cm), 0);
		struct stat st;
		assert_int_equal(rlfs_getattr(cm, before.ino, &st), 0);
		uint8_t *buf = malloc(before.size + after.size + 1);
		assert_non_null(buf);
		ssize_t got = rlfs_read(cm, before.ino, buf, before.size + after.size, 0);
		if (got == (ssize_t)before.size && (uint64_t)st.st_size == before.size &&
		    memcmp(buf, before.data, before.size) == 0)
			nbefore++;
		else if (got == (ssize_t)after.size && (uint64_t)st.st_size == after.size &&
			 memcmp(buf, after.data, after.size) == 0)
			nafter++;
		else
			fail_msg("cut %llu of %llu: the file is neither before nor after the shift "
				 "(size %lld)", (unsigned long long)pos, (unsigned long long)npos,
				 (long long)st.st_size);
		free(buf);
		assert_int_equal(rlfs_mount_close(cm), 0);
		int fst = tu_fsck(img, 0);
		if (fst != 0)
			fail_msg("cut %llu: fsck exit %d", (unsigned long long)pos, fst);
	}
	print_message("%llu cuts: %u before, %u after\n", (unsigned long long)npos + 1, nbefore,
		      nafter);
	assert_true(nbefore > 0 && nafter > 0);
	unlink(img);
	rlfs_crash_rec_free(rec);
	unsetenv("RLFS_LOG_FORCE_INTENTS");
	free(before.data);
	free(after.data);
}

static void test_crash(void **state)
{
	(void)state;
	crash_one(COLLAPSE, 7, 31);
	crash_one(INSERT, 9, 5);
}

int main(void)
{
	const char *s = getenv("RLFS_TEST_SEED");
	tu_seed(s ? strtoull(s, NULL, 0) : 4242);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_extents),
		cmocka_unit_test(test_shared),
		cmocka_unit_test(test_unwritten),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_bad_item),
		cmocka_unit_test(test_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

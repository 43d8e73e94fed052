/*
 * test_cowfork.c: the CoW fork (lib/cowfork.c and the write path of
 * lib/file.c that uses it), in process.
 *
 *   test_region        a one-block write into a clone stages the whole
 *                      region of the CoW extent size hint; the next write
 *                      in the region lands next to the first (one extent)
 *   test_fill          the gap fill (-o cowfill): one not-rewritten block
 *                      between two rewrites of one staged run is copied
 *                      too (one extent), not at 0, not a gap of two
 *   test_hint          a file's own cowextsize (FS_XFLAG_COWEXTSIZE) sets
 *                      the region
 *   test_promotion     an unshared block inside a staged region is written
 *                      through the fork too (XFS's promotion), so the
 *                      rewritten region stays contiguous
 *   test_model         random writes, clones, truncates and punches over
 *                      clones of each other against a model; after every
 *                      step: contents, refcounts of the data mappings,
 *                      CoW-domain records == the blocks the forks stage,
 *                      staged blocks mapped by no file, no block staged
 *                      twice; remounts between (unmount gives every staged
 *                      block back); fsck clean and free space back at the
 *                      end
 *   test_recover       a crash with staged blocks: the next mount frees
 *                      them, fsck is clean, the file shows its old data
 *   test_enospc_gc     a write that needs the space other files hold
 *                      staged gets it (the write path cancels them before
 *                      reporting ENOSPC)
 *   test_close_gc      unmount, inode eviction and truncate give staged
 *                      blocks back
 *   test_gc_dying      the GC running while files with staged blocks are
 *                      freed (a stress test of that race)
 *
 * Seed: RLFS_TEST_SEED.
 */
#include <fcntl.h>
#include <pthread.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "bmap.h"
#include "cowfork.h"
#include "inode.h"
#include "refcount.h"
#include "reflinkfs/fs.h"

#define MB (1024ull * 1024)
#define BS 4096u
#define MAXF 6

static uint64_t rnd(uint64_t n)
{
	return n ? tu_rand() % n : 0;
}

struct mfile {
	uint64_t ino;
	struct rlfs_inode *ip;   /* held: the fork lives while referenced */
	uint8_t *data;
	uint64_t size;
};

struct ctx {
	struct tu_fs fs;
	struct mfile f[MAXF];
	int nf;
	uint64_t maxsz;
};

static struct rlfs_mount *MP(struct ctx *c) { return c->fs.mp; }

static void hold_all(struct ctx *c)
{
	for (int i = 0; i < c->nf; i++)
		assert_int_equal(rlfs_iget(MP(c), c->f[i].ino, &c->f[i].ip), 0);
}

static void release_all(struct ctx *c)
{
	for (int i = 0; i < c->nf; i++) {
		rlfs_irele(c->f[i].ip);
		c->f[i].ip = NULL;
	}
}

static int mkfile(struct ctx *c, const char *name)
{
	struct stat st;
	struct mfile *m = &c->f[c->nf];
	memset(m, 0, sizeof(*m));
	assert_int_equal(rlfs_mknod(MP(c), rlfs_root_ino(MP(c)), name, S_IFREG | 0644, 0, 0, 0,
				    &st), 0);
	rlfs_forget(MP(c), st.st_ino, 1);
	m->ino = st.st_ino;
	m->data = calloc(1, c->maxsz + BS);
	assert_non_null(m->data);
	assert_int_equal(rlfs_iget(MP(c), m->ino, &m->ip), 0);
	return c->nf++;
}

static void do_write(struct ctx *c, int i, uint64_t off, uint64_t len)
{
	struct mfile *m = &c->f[i];
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	for (uint64_t k = 0; k < len; k++)
		buf[k] = (uint8_t)tu_rand();
	assert_int_equal(rlfs_write(MP(c), m->ino, buf, len, (off_t)off), (ssize_t)len);
	memcpy(m->data + off, buf, len);
	if (off + len > m->size)
		m->size = off + len;
	free(buf);
}

static void do_clone(struct ctx *c, int s, int d, uint64_t soff, uint64_t doff, uint64_t len)
{
	struct mfile *ms = &c->f[s], *md = &c->f[d];
	assert_int_equal(rlfs_clone_range(MP(c), ms->ino, soff, md->ino, doff, len, 0),
			 (int64_t)len);
	memmove(md->data + doff, ms->data + soff, len);
	if (doff + len > md->size)
		md->size = doff + len;
}

static void verify(struct ctx *c)
{
	uint8_t *buf = malloc(c->maxsz + BS);
	assert_non_null(buf);
	for (int i = 0; i < c->nf; i++) {
		struct mfile *m = &c->f[i];
		ssize_t r = rlfs_read(MP(c), m->ino, buf, c->maxsz + BS, 0);
		assert_int_equal(r, (ssize_t)m->size);
		if (m->size && memcmp(buf, m->data, m->size) != 0)
			fail_msg("file %d: contents differ from the model", i);
	}
	free(buf);
}

/* The data fork's block at file block fb (0: hole). */
static uint64_t data_block(struct rlfs_inode *ip, uint64_t fb)
{
	struct rlfs_irec got;
	bool found;
	rlfs_bmap_lookup(ip, fb, &got, &found);
	return found ? got.startblock + (fb - got.startoff) : 0;
}

static uint64_t fork_block(struct rlfs_inode *ip, uint64_t fb)
{
	struct rlfs_irec got;
	bool found;
	rlfs_cowfork_lookup(ip, fb, &got, &found);
	return found ? got.startblock + (fb - got.startoff) : 0;
}

static uint32_t data_extents(struct rlfs_inode *ip)
{
	return rlfs_iext_count(&ip->iext);
}

static int collect_cow(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	uint8_t *cow = priv;
	struct rlfs_refcount_rec r;
	memcpy(&r, rec, sizeof(r));
	uint32_t key = rlfs_get32(r.startblock);
	if (!(key & RLFS_REFC_COWFLAG))
		return 0;
	uint64_t s = rlfs_agb_to_fsb(cur->mp, cur->agno, key & ~RLFS_REFC_COWFLAG);
	for (uint32_t b = 0; b < rlfs_get32(r.blockcount); b++)
		cow[s + b]++;
	return 0;
}

/*
 * The invariants: every staged block is recorded once in the CoW domain
 * and nothing else is; no staged block is mapped by a file or staged
 * twice; data mappings' counts equal the refcount tree (shared records)
 * where a block is mapped more than once.
 */
static void check_invariants(struct ctx *c)
{
	struct rlfs_mount *mp = MP(c);
	uint32_t *cnt = calloc(mp->dblocks, sizeof(*cnt));
	uint8_t *staged = calloc(mp->dblocks, 1), *rec = calloc(mp->dblocks, 1);
	assert_true(cnt && staged && rec);
	uint64_t nstaged = 0;
	for (int i = 0; i < c->nf; i++) {
		struct rlfs_inode *ip = c->f[i].ip;
		for (uint32_t k = 0; k < rlfs_iext_count(&ip->iext); k++)
			for (uint32_t b = 0; b < rlfs_iext_at(&ip->iext, k)->blockcount; b++)
				cnt[rlfs_iext_at(&ip->iext, k)->startblock + b]++;
		if (!ip->cow)
			continue;
		for (uint32_t k = 0; k < rlfs_iext_count(&ip->cow->iext); k++) {
			const struct rlfs_irec *r = rlfs_iext_at(&ip->cow->iext, k);
			if (k)
				assert_true(rlfs_iext_at(&ip->cow->iext, k - 1)->startoff + rlfs_iext_at(&ip->cow->iext, k - 1)->blockcount <=
					    r->startoff);
			for (uint32_t b = 0; b < r->blockcount; b++) {
				if (staged[r->startblock + b]++)
					fail_msg("block %llu staged twice",
						 (unsigned long long)(r->startblock + b));
				nstaged++;
			}
		}
	}
	assert_int_equal(rlfs_cowfork_staged_blocks(mp), nstaged);
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		struct rlfs_btree_cur cur;
		rlfs_refcount_cur_init(&cur, tp, agno, NULL);
		assert_int_equal(rlfs_btree_query_all(&cur, collect_cow, rec), 0);
		rlfs_btree_cur_del(&cur);
	}
	for (uint64_t b = 0; b < mp->dblocks; b++) {
		if (staged[b] != rec[b])
			fail_msg("block %llu: staged %u times, %u CoW-domain record(s)",
				 (unsigned long long)b, staged[b], rec[b]);
		if (staged[b] && cnt[b])
			fail_msg("block %llu staged and mapped %u time(s)", (unsigned long long)b,
				 cnt[b]);
		if (cnt[b] >= 2) {
			uint32_t rc;
			assert_int_equal(rlfs_refcount_get(tp, b, &rc), 0);
			if (rc != cnt[b])
				fail_msg("block %llu mapped %u times, refcount %u",
					 (unsigned long long)b, cnt[b], rc);
		}
	}
	rlfs_trans_cancel(tp);
	free(cnt);
	free(staged);
	free(rec);
}

static void ctx_init(struct ctx *c, uint64_t fs_bytes, uint64_t maxsz)
{
	memset(c, 0, sizeof(*c));
	tu_mkfs_mount(&c->fs, fs_bytes, BS, 0);
	c->maxsz = maxsz;
}

static void remount(struct ctx *c)
{
	release_all(c);
	tu_remount(&c->fs);
	hold_all(c);
}

static void ctx_fini(struct ctx *c)
{
	release_all(c);
	assert_int_equal(rlfs_mount_close(c->fs.mp), 0);
	c->fs.mp = NULL;
	assert_int_equal(tu_fsck(c->fs.path, 0), 0);
	for (int i = 0; i < c->nf; i++)
		free(c->f[i].data);
	tu_unmount(&c->fs);
}

/* A 256-block file and a clone of it. */
static void base_pair(struct ctx *c)
{
	mkfile(c, "a");
	mkfile(c, "b");
	do_write(c, 0, 0, 256 * BS);
	do_clone(c, 0, 1, 0, 0, 256 * BS);
}

static void test_region(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 64 * MB, 256 * BS);
	base_pair(&c);
	struct rlfs_inode *ip = c.f[1].ip;
	uint32_t ext0 = data_extents(ip);
	do_write(&c, 1, 37 * BS, BS);
	/* the region [32, 64) is staged; block 37 left it for the data fork */
	assert_int_equal(rlfs_cowfork_inode_blocks(ip), 31);
	uint64_t s32 = fork_block(ip, 32);
	assert_true(s32 != 0);
	assert_int_equal(data_block(ip, 37), s32 + 5);
	assert_int_equal(fork_block(ip, 37), 0);
	assert_int_equal(fork_block(ip, 63), s32 + 31);
	assert_int_equal(fork_block(ip, 64), 0);
	check_invariants(&c);
	/* the neighbour lands next to it: still three extents (old, new,
	 * old), not four */
	do_write(&c, 1, 38 * BS + 100, 200);
	assert_int_equal(data_block(ip, 38), s32 + 6);
	assert_int_equal(data_extents(ip), ext0 + 2);
	assert_int_equal(rlfs_cowfork_inode_blocks(ip), 30);
	/* a write of whole regions stages nothing: one transaction */
	uint64_t old96 = data_block(ip, 96);
	uint64_t forktx = MP(&c)->resv.tr_cowfork.commits, cowtx = MP(&c)->resv.tr_cow.commits;
	do_write(&c, 1, 96 * BS, 64 * BS);
	assert_int_equal(MP(&c)->resv.tr_cowfork.commits, forktx);
	assert_true(MP(&c)->resv.tr_cow.commits > cowtx);
	assert_int_equal(rlfs_cowfork_inode_blocks(ip), 30);
	assert_true(data_block(ip, 96) != old96);
	assert_int_equal(data_block(ip, 159), data_block(ip, 96) + 63);
	verify(&c);
	check_invariants(&c);
	ctx_fini(&c);
}

/* Gap fill: blocks 37 and 39 rewritten; block 38 (not rewritten) is
 * copied with 39 (fill 1) so the data fork has one new extent [37, 40);
 * with fill 0 it stays shared between two new extents. */
static void test_fill(void **state)
{
	(void)state;
	for (uint32_t fill = 0; fill <= 1; fill++) {
		struct ctx c;
		ctx_init(&c, 64 * MB, 256 * BS);
		rlfs_set_cow_fill(MP(&c), fill);
		base_pair(&c);
		struct rlfs_inode *ip = c.f[1].ip;
		uint32_t ext0 = data_extents(ip);
		uint64_t old38 = data_block(ip, 38);
		do_write(&c, 1, 37 * BS, BS);
		do_write(&c, 1, 39 * BS, BS);
		uint64_t s32 = data_block(ip, 37) - 5;
		assert_int_equal(data_block(ip, 39), s32 + 7);
		if (fill) {
			assert_int_equal(data_block(ip, 38), s32 + 6);
			assert_int_equal(data_extents(ip), ext0 + 2);
			assert_int_equal(rlfs_cowfork_inode_blocks(ip), 29);
		} else {
			assert_int_equal(data_block(ip, 38), old38);
			assert_int_equal(data_extents(ip), ext0 + 4);
			assert_int_equal(rlfs_cowfork_inode_blocks(ip), 30);
		}
		/* a gap of two is not filled at fill 1 */
		do_write(&c, 1, 41 * BS, BS);
		do_write(&c, 1, 44 * BS, BS);
		assert_int_equal(fork_block(ip, 42), s32 + 10);
		assert_int_equal(fork_block(ip, 43), s32 + 11);
		verify(&c);
		check_invariants(&c);
		ctx_fini(&c);
	}
}

static void test_hint(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 64 * MB, 256 * BS);
	base_pair(&c);
	struct rlfs_fileattr fa = { .xflags = FS_XFLAG_COWEXTSIZE, .cowextsize_bytes = 64 * BS };
	assert_int_equal(rlfs_fileattr_set(MP(&c), c.f[1].ino, &fa, 0), 0);
	do_write(&c, 1, 70 * BS, 10);
	assert_int_equal(rlfs_cowfork_inode_blocks(c.f[1].ip), 63);
	assert_true(fork_block(c.f[1].ip, 64) != 0);
	assert_true(fork_block(c.f[1].ip, 127) != 0);
	assert_int_equal(fork_block(c.f[1].ip, 128), 0);
	verify(&c);
	check_invariants(&c);
	ctx_fini(&c);
}

static void test_promotion(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 64 * MB, 256 * BS);
	base_pair(&c);
	struct rlfs_inode *ip = c.f[1].ip;
	do_write(&c, 1, 40 * BS, BS);               /* stages [32, 64) */
	uint64_t s32 = fork_block(ip, 32);
	/* unshare block 50 outside the fork: a block of its own */
	assert_int_equal(rlfs_fallocate(MP(&c), c.f[1].ino,
					FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE,
					50 * BS, BS), 0);
	uint64_t u = data_block(ip, 50);
	assert_true(u != s32 + 18);
	/* written again: through the fork (it covers block 50) */
	do_write(&c, 1, 50 * BS, BS);
	assert_int_equal(data_block(ip, 50), s32 + 18);
	verify(&c);
	check_invariants(&c);
	ctx_fini(&c);
}

static void test_model(void **state)
{
	(void)state;
	struct ctx c;
	const uint64_t maxb = 512;
	ctx_init(&c, 128 * MB, maxb * BS);
	mkfile(&c, "f0");
	do_write(&c, 0, 0, maxb * BS);
	char name[16];
	for (int i = 1; i < 4; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		mkfile(&c, name);
		do_clone(&c, 0, i, 0, 0, maxb * BS);
	}
	int nops = getenv("RLFS_TEST_QUICK") ? 300 : 1500;
	unsigned counts[5] = { 0 };
	for (int op = 0; op < nops; op++) {
		int i = (int)rnd((uint64_t)c.nf);
		uint64_t r = rnd(100);
		if (r < 7) {
			/* whole regions: the path without staging records */
			uint64_t rb = rnd(maxb / 32), n = 1 + rnd(RLFS_MIN(maxb / 32 - rb, 3));
			do_write(&c, i, rb * 32 * BS, n * 32 * BS);
			counts[0]++;
		} else if (r < 70) {
			uint64_t off = rnd(maxb * BS - 1), len = 1 + rnd(r < 50 ? BS : 24 * BS);
			len = RLFS_MIN(len, maxb * BS - off);
			do_write(&c, i, off, len);
			counts[0]++;
		} else if (r < 80) {
			int j = (int)rnd((uint64_t)c.nf);
			uint64_t sb = rnd(maxb), db = rnd(maxb);
			uint64_t n = 1 + rnd(RLFS_MIN(maxb - sb, maxb - db));
			if (i == j || c.f[j].size < (sb + n) * BS || c.f[i].size < db * BS)
				continue;
			do_clone(&c, j, i, sb * BS, db * BS, n * BS);
			counts[1]++;
		} else if (r < 88) {
			uint64_t o = rnd(maxb * BS), l = 1 + rnd(16 * BS);
			l = RLFS_MIN(l, maxb * BS - o);
			assert_int_equal(rlfs_fallocate(MP(&c), c.f[i].ino,
							FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
							(off_t)o, (off_t)l), 0);
			if (o < c.f[i].size)
				memset(c.f[i].data + o, 0, RLFS_MIN(l, c.f[i].size - o));
			counts[2]++;
		} else if (r < 93) {
			uint64_t s = rnd(maxb * BS);
			struct stat st = { .st_size = (off_t)s };
			assert_int_equal(rlfs_setattr(MP(&c), c.f[i].ino, &st, RLFS_SET_SIZE, NULL),
					 0);
			if (s < c.f[i].size)
				memset(c.f[i].data + s, 0, c.f[i].size - s);
			c.f[i].size = s;
			counts[3]++;
		} else {
			remount(&c);
			assert_int_equal(rlfs_cowfork_staged_blocks(MP(&c)), 0);
			counts[4]++;
		}
		check_invariants(&c);
		if (op % 25 == 24)
			verify(&c);
	}
	print_message("ops: write %u clone %u punch %u truncate %u remount %u\n", counts[0],
		      counts[1], counts[2], counts[3], counts[4]);
	verify(&c);
	ctx_fini(&c);
}

static void test_recover(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 64 * MB, 256 * BS);
	base_pair(&c);
	struct statvfs sv0;
	assert_int_equal(rlfs_statfs(MP(&c), &sv0), 0);
	do_write(&c, 1, 5 * BS, BS);
	assert_int_equal(rlfs_cowfork_inode_blocks(c.f[1].ip), 31);
	assert_int_equal(rlfs_fsync(MP(&c), c.f[1].ino, 0), 0);
	char copy[96];
	tu_crash_copy(&c.fs, ".crash", copy, sizeof(copy));
	struct rlfs_mount *mp2;
	char out[2048];
	assert_int_equal(tu_mount_capture(copy, RLFS_MOUNT_NOLOCK, &mp2, out, sizeof(out)), 0);
	if (!strstr(out, "freed 31 CoW staging block(s)"))
		fail_msg("mount after the crash said: %s", out);
	struct statvfs sv;
	assert_int_equal(rlfs_statfs(mp2, &sv), 0);
	/* what the write took for good: its one block (plus tree blocks) */
	assert_true(sv0.f_bfree - sv.f_bfree < 8);
	uint8_t buf[BS];
	assert_int_equal(rlfs_read(mp2, c.f[1].ino, buf, BS, 5 * BS), BS);
	assert_memory_equal(buf, c.f[1].data + 5 * BS, BS);
	assert_int_equal(rlfs_mount_close(mp2), 0);
	assert_int_equal(tu_fsck(copy, 0), 0);
	unlink(copy);
	ctx_fini(&c);
}

static void test_enospc_gc(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 32 * MB, 1024 * BS);
	mkfile(&c, "a");
	mkfile(&c, "b");
	do_write(&c, 0, 0, 1024 * BS);
	do_clone(&c, 0, 1, 0, 0, 1024 * BS);
	/* b stages 1,024 blocks for a one-block write */
	struct rlfs_fileattr fa = { .xflags = FS_XFLAG_COWEXTSIZE, .cowextsize_bytes = 1024 * BS };
	assert_int_equal(rlfs_fileattr_set(MP(&c), c.f[1].ino, &fa, 0), 0);
	do_write(&c, 1, 0, BS);
	assert_int_equal(rlfs_cowfork_inode_blocks(c.f[1].ip), 1023);
	/* a third file takes everything that is free, then what b staged */
	struct statvfs sv;
	assert_int_equal(rlfs_statfs(MP(&c), &sv), 0);
	uint64_t want = (sv.f_bavail + 512) * BS;
	mkfile(&c, "c");
	c.f[2].data = realloc(c.f[2].data, want);
	uint8_t *buf = malloc(want);
	assert_non_null(buf);
	memset(buf, 0x5a, want);
	ssize_t r = rlfs_write(MP(&c), c.f[2].ino, buf, want, 0);
	if (r != (ssize_t)want)
		fail_msg("write of %llu bytes with %llu staged elsewhere: %zd",
			 (unsigned long long)want, (unsigned long long)1023 * BS, r);
	memcpy(c.f[2].data, buf, want);
	c.f[2].size = want;
	free(buf);
	assert_true(rlfs_cowfork_inode_blocks(c.f[1].ip) < 1023 - 500);
	check_invariants(&c);
	ctx_fini(&c);
}

static void test_close_gc(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 64 * MB, 256 * BS);
	base_pair(&c);
	struct statvfs sv0, sv;
	do_write(&c, 1, 100 * BS, BS);
	assert_int_equal(rlfs_cowfork_inode_blocks(c.f[1].ip), 31);
	assert_int_equal(rlfs_statfs(MP(&c), &sv0), 0);
	/* truncate: the staged blocks past the new EOF go */
	struct stat st = { .st_size = 97 * BS };
	assert_int_equal(rlfs_setattr(MP(&c), c.f[1].ino, &st, RLFS_SET_SIZE, NULL), 0);
	c.f[1].size = 97 * BS;
	assert_int_equal(rlfs_cowfork_inode_blocks(c.f[1].ip), 1);  /* block 96 */
	assert_int_equal(rlfs_statfs(MP(&c), &sv), 0);
	assert_true(sv.f_bfree >= sv0.f_bfree + 30);
	check_invariants(&c);
	/* eviction (last reference, the kernel forgot it) gives the rest */
	do_write(&c, 1, 10 * BS, BS);
	assert_int_equal(rlfs_cowfork_inode_blocks(c.f[1].ip), 32);
	rlfs_irele(c.f[1].ip);
	assert_int_equal(rlfs_cowfork_staged_blocks(MP(&c)), 0);
	assert_int_equal(rlfs_iget(MP(&c), c.f[1].ino, &c.f[1].ip), 0);
	check_invariants(&c);
	verify(&c);
	ctx_fini(&c);
}

static int irele_done;
struct irele_set { struct rlfs_inode **ip; int n; };

static void *irele_thread(void *arg)
{
	struct irele_set *set = arg;
	for (int i = 0; i < set->n; i++)
		rlfs_irele(set->ip[i]);
	__atomic_store_n(&irele_done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* The GC walks the mount's forks while unlinked files with staged blocks
 * are being freed (their last references dropped in another thread): it
 * must not take references to the dying inodes (with rlfs_ihold instead
 * of rlfs_igrab: a use-after-free under ASan; found by review).  A race,
 * so a stress test: 24 dying inodes against GC passes until they are
 * gone.  It does not reliably catch that bug (0 of 6 ASan runs with the
 * plain ihold put back; the window is one transaction); it does check
 * that GC and inode freeing together leave nothing staged and fsck
 * clean.  A deterministic version needs a pause hook in the GC. */
static void test_gc_dying(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 128 * MB, 64 * BS);
	struct rlfs_mount *mp = MP(&c);
	enum { N = 48, DYING = 24 };
	int a = mkfile(&c, "a");
	do_write(&c, a, 0, 64 * BS);
	struct rlfs_inode *ip[N];
	char name[32];
	uint8_t buf[BS];
	memset(buf, 0x11, BS);
	for (int i = 0; i < N; i++) {
		struct stat st;
		snprintf(name, sizeof(name), "f%d", i);
		assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), name, S_IFREG | 0644, 0, 0, 0,
					    &st), 0);
		rlfs_forget(mp, st.st_ino, 1);
		assert_int_equal(rlfs_clone_range(mp, c.f[a].ino, 0, st.st_ino, 0, 64 * BS, 0),
				 (int64_t)(64 * BS));
		assert_int_equal(rlfs_iget(mp, st.st_ino, &ip[i]), 0);
		assert_int_equal(rlfs_write(mp, st.st_ino, buf, BS, 5 * BS), BS);
		assert_true(rlfs_cowfork_inode_blocks(ip[i]) > 0);
		if (i < DYING)
			assert_int_equal(rlfs_unlink(mp, rlfs_root_ino(mp), name), 0);
	}
	/* the dying ones are dropped from the other end of the list than
	 * the GC starts at (it walks newest first) */
	struct irele_set set = { ip, DYING };
	pthread_t t;
	__atomic_store_n(&irele_done, 0, __ATOMIC_SEQ_CST);
	assert_int_equal(pthread_create(&t, NULL, irele_thread, &set), 0);
	do
		assert_true(rlfs_cow_gc(mp, 0) >= 0);
	while (!__atomic_load_n(&irele_done, __ATOMIC_SEQ_CST));
	pthread_join(t, NULL);
	for (int i = DYING; i < N; i++)
		rlfs_irele(ip[i]);
	assert_int_equal(rlfs_cowfork_staged_blocks(mp), 0);
	ctx_fini(&c);
}

int main(void)
{
	const char *s = getenv("RLFS_TEST_SEED");
	tu_seed(s ? strtoull(s, NULL, 0) : 4242);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_region),
		cmocka_unit_test(test_fill),
		cmocka_unit_test(test_hint),
		cmocka_unit_test(test_promotion),
		cmocka_unit_test(test_model),
		cmocka_unit_test(test_recover),
		cmocka_unit_test(test_enospc_gc),
		cmocka_unit_test(test_close_gc),
		cmocka_unit_test(test_gc_dying),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

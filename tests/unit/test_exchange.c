/*
 * test_exchange.c: exchange range (rlfs_exchange_range, lib/exchange.c:
 * ioctl_xfs_exchange_range(2) semantics through XMI/XMD intents), in
 * process.
 *
 * Exchanges across files with holes, unwritten and shared extents,
 * partial ranges, one file with itself, TO_EOF (sizes exchanged),
 * FILE1_WRITTEN, DRY_RUN (nothing changes), a many-extent (bmbt)
 * exchange, recovery of an exchange cut between its steps (a crash
 * image), and the man page's errors.  After each step the model check
 * (helpers shared with test_reflink.c, copied): every file's contents and
 * size equal the model; the refcount btree equals the mapping counts over
 * all files; no mapped block is free; rlfs_bmap_check of every file; free
 * block counts are unchanged by an exchange (refcounts do not move); and
 * `reflinkfs fsck -n` (rmap owners and offsets cross-checked against the
 * forks) is clean at the end of each test.  Seed: RLFS_TEST_SEED.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "alloc.h"
#include "bmap.h"
#include "dev.h"
#include "inode.h"
#include "refcount.h"
#include "rmap.h"
#include "reflinkfs/fs.h"
#include "reflinkfs/ioctl.h"

#define MB (1024ull * 1024)

static void seed_from_env(void)
{
	const char *s = getenv("RLFS_TEST_SEED");
	tu_seed(s ? strtoull(s, NULL, 0) : 1337);
}

/* ------------------------------------------------------------------ */
/* Files and their model                                               */

#include "filemodel.h"

/* Every refcount record of every AG, in order. */
static void refc_snapshot(struct ctx *c, struct rlist *l)
{
	struct rlfs_mount *mp = MP(c);
	struct rlfs_trans *tp;
	memset(l, 0, sizeof(*l));
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_fsck, 0, 0, &tp), 0);
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		struct rlfs_btree_cur cur;
		rlfs_refcount_cur_init(&cur, tp, agno, NULL);
		assert_int_equal(rlfs_btree_query_all(&cur, collect_refc, l), 0);
		rlfs_btree_cur_del(&cur);
		rl_push(l, UINT32_MAX, agno, 0);   /* AG separator */
	}
	rlfs_trans_cancel(tp);
}

static void refc_same(struct ctx *c, struct rlist *before)
{
	struct rlist after;
	refc_snapshot(c, &after);
	assert_int_equal(after.n, before->n);
	assert_memory_equal(after.r, before->r, after.n * sizeof(*after.r));
	free(after.r);
	free(before->r);
}

/* The mapping of file blocks [fb, fb + n) of file i, one entry per
 * block: fsbno (0: a hole) << 1 | unwritten. */
static uint64_t *map_of(struct ctx *c, int i, uint64_t fb, uint64_t n)
{
	struct rlfs_inode *ip;
	uint64_t *m = calloc(n ? n : 1, sizeof(*m));
	assert_non_null(m);
	assert_int_equal(rlfs_iget(MP(c), c->f[i].ino, &ip), 0);
	pthread_rwlock_rdlock(&ip->iolock);
	for (uint64_t k = 0; k < n; k++) {
		struct rlfs_irec got;
		bool found;
		rlfs_bmap_lookup(ip, fb + k, &got, &found);
		if (found)
			m[k] = (got.startblock + (fb + k - got.startoff)) << 1 |
			       ((got.state & RLFS_EXT_UNWRITTEN) ? 1 : 0);
	}
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return m;
}

/* exchange through the library and the model (expects success) */
static void do_xchg(struct ctx *c, int a, uint64_t off1, int b, uint64_t off2, uint64_t len,
		    uint64_t flags)
{
	struct mfile *m1 = &c->f[a], *m2 = &c->f[b];
	struct rlist refc0;
	refc_snapshot(c, &refc0);
	uint64_t s1 = m1->size, s2 = m2->size, bs = c->bs;
	uint64_t xl = (flags & RLFS_EXCHANGE_TO_EOF) ?
		      (s1 - off1 > s2 - off2 ? s1 - off1 : s2 - off2) : len;
	uint64_t nb = (xl + bs - 1) / bs;
	uint64_t *old1 = map_of(c, a, off1 / bs, nb), *old2 = map_of(c, b, off2 / bs, nb);
	int r = rlfs_exchange_range(MP(c), m1->ino, off1, m2->ino, off2, len, flags);
	if (r)
		fail_msg("exchange %s+%llu <-> %s+%llu len %llu flags %#llx: %d", m1->name,
			 (unsigned long long)off1, m2->name, (unsigned long long)off2,
			 (unsigned long long)len, (unsigned long long)flags, r);
	/* the mappings, block by block: exchanged (DRY_RUN: unchanged) */
	uint64_t *new1 = map_of(c, a, off1 / bs, nb), *new2 = map_of(c, b, off2 / bs, nb);
	bool dry = flags & RLFS_EXCHANGE_DRY_RUN;
	for (uint64_t k = 0; k < nb; k++)
		if (new1[k] != (dry ? old1[k] : old2[k]) || new2[k] != (dry ? old2[k] : old1[k]))
			fail_msg("block %llu of the range: mappings %#llx/%#llx were %#llx/%#llx",
				 (unsigned long long)k, (unsigned long long)new1[k],
				 (unsigned long long)new2[k], (unsigned long long)old1[k],
				 (unsigned long long)old2[k]);
	free(old1);
	free(old2);
	free(new1);
	free(new2);
	if (dry) {
		refc_same(c, &refc0);
		return;
	}
	len = xl;
	mf_reserve(m1, off1 + len);
	mf_reserve(m2, off2 + len);
	uint8_t *t = malloc(len ? len : 1);
	assert_non_null(t);
	memcpy(t, m1->data + off1, len);
	memmove(m1->data + off1, m2->data + off2, len);
	memcpy(m2->data + off2, t, len);
	free(t);
	if (flags & RLFS_EXCHANGE_TO_EOF) {
		mf_setsize(m1, off1 + (s2 - off2));
		mf_setsize(m2, off2 + (s1 - off1));
	}
	/* every block keeps its number of owners: the refcount btree is
	 * exactly as before */
	refc_same(c, &refc0);
}

static void punch(struct ctx *c, int i, uint64_t off, uint64_t len)
{
	assert_int_equal(rlfs_fallocate(MP(c), c->f[i].ino, FALLOC_FL_PUNCH_HOLE |
					FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len), 0);
	memset(c->f[i].data + off, 0, len);
}

/* holes, unwritten, shared and written extents on both sides; partial
 * ranges at different offsets; exchanged back gives the start again */
static void test_mixed(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b"), s = mkfile(&c, "s");
	do_write(&c, a, 0, 32 * 4096, 1);
	do_write(&c, b, 0, 40 * 4096, 2);
	do_write(&c, s, 0, 8 * 4096, 3);
	punch(&c, a, 4 * 4096, 3 * 4096);
	punch(&c, b, 10 * 4096, 5 * 4096);
	/* unwritten blocks in b (read as zeros) */
	assert_int_equal(rlfs_fallocate(MP(&c), c.f[b].ino, FALLOC_FL_KEEP_SIZE, 11 * 4096,
					2 * 4096), 0);
	/* shared blocks: s's blocks cloned into a and b */
	do_clone(&c, s, 0, a, 12 * 4096, 4 * 4096);
	do_clone(&c, s, 4 * 4096, b, 20 * 4096, 4 * 4096);
	check_fs(&c);
	do_xchg(&c, a, 2 * 4096, b, 8 * 4096, 20 * 4096, 0);
	check_fs(&c);
	do_xchg(&c, a, 0, b, 0, 32 * 4096, 0);
	check_fs(&c);
	/* unaligned length ending at both EOFs (partial EOF blocks) */
	do_write(&c, b, 40 * 4096, 100, 5);
	do_write(&c, a, 32 * 4096, 100, 6);
	do_xchg(&c, a, 30 * 4096, b, 38 * 4096, 2 * 4096 + 100, 0);
	/* but not into the middle of the other file */
	assert_int_equal(rlfs_exchange_range(MP(&c), c.f[a].ino, 30 * 4096, c.f[b].ino, 30 * 4096,
					     2 * 4096 + 100, 0), -EINVAL);
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	ctx_fini(&c);
}

/* TO_EOF: sizes exchanged as the man page says; DRY_RUN changes nothing */
static void test_to_eof_dry_run(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b");
	do_write(&c, a, 0, 5 * 4096 + 100, 1);
	do_write(&c, b, 0, 9 * 4096 + 7, 2);
	struct stat sa0, sb0, sa1, sb1;
	assert_int_equal(rlfs_getattr(MP(&c), c.f[a].ino, &sa0), 0);
	assert_int_equal(rlfs_getattr(MP(&c), c.f[b].ino, &sb0), 0);
	usleep(20000);
	do_xchg(&c, a, 4096, b, 2 * 4096, 12345, RLFS_EXCHANGE_DRY_RUN | RLFS_EXCHANGE_TO_EOF);
	do_xchg(&c, a, 0, b, 0, 4096, RLFS_EXCHANGE_DRY_RUN);
	check_fs(&c);
	assert_int_equal(rlfs_getattr(MP(&c), c.f[a].ino, &sa1), 0);
	assert_int_equal(rlfs_getattr(MP(&c), c.f[b].ino, &sb1), 0);
	assert_true(sa1.st_mtim.tv_sec == sa0.st_mtim.tv_sec &&
		    sa1.st_mtim.tv_nsec == sa0.st_mtim.tv_nsec);
	assert_true(sb1.st_ctim.tv_sec == sb0.st_ctim.tv_sec &&
		    sb1.st_ctim.tv_nsec == sb0.st_ctim.tv_nsec);
	/* the real one: a = 4096 + (b's size - 8192), b = 8192 + (a's - 4096) */
	do_xchg(&c, a, 4096, b, 2 * 4096, 12345, RLFS_EXCHANGE_TO_EOF);
	assert_int_equal(c.f[a].size, 4096 + 9 * 4096 + 7 - 2 * 4096);
	assert_int_equal(c.f[b].size, 2 * 4096 + 5 * 4096 + 100 - 4096);
	check_fs(&c);
	assert_int_equal(rlfs_getattr(MP(&c), c.f[a].ino, &sa1), 0);
	assert_true(sa1.st_mtim.tv_sec != sa0.st_mtim.tv_sec ||
		    sa1.st_mtim.tv_nsec != sa0.st_mtim.tv_nsec);
	/* and back */
	do_xchg(&c, a, 4096, b, 2 * 4096, 0, RLFS_EXCHANGE_TO_EOF);
	assert_int_equal(c.f[a].size, 5 * 4096 + 100);
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	ctx_fini(&c);
}

/* FILE1_WRITTEN: only where file1 has written blocks; one file with
 * itself (ranges apart) */
static void test_written_self(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b");
	do_write(&c, a, 0, 16 * 4096, 1);
	do_write(&c, b, 0, 16 * 4096, 2);
	punch(&c, a, 2 * 4096, 4 * 4096);
	assert_int_equal(rlfs_fallocate(MP(&c), c.f[a].ino, FALLOC_FL_KEEP_SIZE, 3 * 4096,
					2 * 4096), 0);
	struct rlist refc0;
	refc_snapshot(&c, &refc0);
	assert_int_equal(rlfs_exchange_range(MP(&c), c.f[a].ino, 0, c.f[b].ino, 0, 16 * 4096,
					     RLFS_EXCHANGE_FILE1_WRITTEN), 0);
	refc_same(&c, &refc0);
	/* model: blocks 0-1 and 6-15 exchanged, 2-5 (hole, unwritten) not */
	uint8_t t[4096];
	for (int blk = 0; blk < 16; blk++) {
		if (blk >= 2 && blk < 6)
			continue;
		memcpy(t, c.f[a].data + blk * 4096, 4096);
		memcpy(c.f[a].data + blk * 4096, c.f[b].data + blk * 4096, 4096);
		memcpy(c.f[b].data + blk * 4096, t, 4096);
	}
	check_fs(&c);
	/* one file: blocks [0, 4) with [8, 12); overlapping ranges refused */
	do_xchg(&c, b, 0, b, 8 * 4096, 4 * 4096, 0);
	check_fs(&c);
	assert_int_equal(rlfs_exchange_range(MP(&c), c.f[b].ino, 0, c.f[b].ino, 2 * 4096,
					     4 * 4096, 0), -EINVAL);
	check_fs(&c);
	ctx_fini(&c);
}

/* a fragmented file (a bmbt of 300 extents) against a contiguous one:
 * many steps, each its own transaction; survives a remount */
static void test_many_extents(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	uint64_t fino = tu_frag_file(MP(&c), "frag", 300);
	int f = c.nf++;
	snprintf(c.f[f].name, sizeof(c.f[f].name), "frag");
	c.f[f].ino = fino;
	struct stat st;
	assert_int_equal(rlfs_getattr(MP(&c), fino, &st), 0);
	mf_setsize(&c.f[f], (uint64_t)st.st_size);
	assert_int_equal(rlfs_read(MP(&c), fino, c.f[f].data, st.st_size, 0), st.st_size);
	int b = mkfile(&c, "b");
	do_write(&c, b, 0, (uint64_t)st.st_size, 9);
	check_fs(&c);
	uint64_t len = ((uint64_t)st.st_size / 4096 - 4) * 4096;
	assert_int_equal(rlfs_exchange_range(MP(&c), fino, 4096, c.f[b].ino, 3 * 4096, len, 0), 0);
	uint8_t *t = malloc(len);
	assert_non_null(t);
	memcpy(t, c.f[f].data + 4096, len);
	memmove(c.f[f].data + 4096, c.f[b].data + 3 * 4096, len);
	memcpy(c.f[b].data + 3 * 4096, t, len);
	free(t);
	check_fs(&c);
	tu_remount(&c.fs);
	check_fs(&c);
	ctx_fini(&c);
}

/* DSYNC: the exchange is durable when the call returns: the image a
 * kill -9 right after leaves (nothing written back) mounts, log recovery
 * replays the chain, and shows the new contents; fsck clean.  With every
 * intent in its own checkpoint the log holds the chain's XMIs and XMDs,
 * which `reflinkfs logprint -v` names and decodes. */
static void test_recovery(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b");
	for (int k = 0; k < 40; k++) {
		do_write(&c, a, (uint64_t)k * 2 * 4096, 4096, 10 + k);
		do_write(&c, b, (uint64_t)k * 2 * 4096 + 4096, 4096, 100 + k);
	}
	assert_int_equal(rlfs_fsync(MP(&c), c.f[a].ino, 0), 0);
	assert_int_equal(rlfs_fsync(MP(&c), c.f[b].ino, 0), 0);
	/* every intent in a checkpoint of its own (else an XMI and its XMD
	 * in one checkpoint never reach the log: intent whiteouts) */
	setenv("RLFS_LOG_FORCE_INTENTS", "1", 1);
	tu_remount(&c.fs);
	unsetenv("RLFS_LOG_FORCE_INTENTS");
	do_xchg(&c, a, 0, b, 0, 79 * 4096, RLFS_EXCHANGE_DSYNC);
	char copy[128];
	tu_crash_copy(&c.fs, ".crash", copy, sizeof(copy));
	/* the log holds the exchange's intents and dones, which logprint
	 * decodes */
	char cmd[512], line[512];
	snprintf(cmd, sizeof(cmd), "%s logprint -v %s 2>&1", tu_fsck_bin(), copy);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	int nxmi = 0, nxmd = 0, ndecoded = 0;
	while (fgets(line, sizeof(line), p)) {
		nxmi += strstr(line, "intent XMI") != NULL;
		nxmd += strstr(line, "done   XMD") != NULL;
		ndecoded += strstr(line, " exchange ino ") != NULL;
	}
	pclose(p);
	if (nxmi < 2 || nxmd < 2 || ndecoded != nxmi)
		fail_msg("logprint: %d XMI, %d XMD, %d decoded", nxmi, nxmd, ndecoded);
	struct rlfs_mount *mp2;
	assert_int_equal(rlfs_mount_open(copy, RLFS_MOUNT_NOLOCK, &mp2), 0);
	uint8_t *buf = malloc(c.f[a].size);
	assert_non_null(buf);
	assert_int_equal(rlfs_read(mp2, c.f[a].ino, buf, c.f[a].size, 0), (ssize_t)c.f[a].size);
	assert_memory_equal(buf, c.f[a].data, c.f[a].size);
	free(buf);
	assert_int_equal(rlfs_mount_close(mp2), 0);
	assert_int_equal(tu_fsck(copy, 0), 0);
	unlink(copy);
	ctx_fini(&c);
}

/* the man page's errors (ioctl_xfs_exchange_range(2), ERRORS), with the
 * kernel's order of checks (xfs_exchange_range_checks); nothing changes */
static void test_errors(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	int a = mkfile(&c, "a"), b = mkfile(&c, "b");
	do_write(&c, a, 0, 8 * 4096, 1);
	do_write(&c, b, 0, 8 * 4096 + 10, 2);
	struct rlfs_mount *mp = MP(&c);
	uint64_t ia = c.f[a].ino, ib = c.f[b].ino;
	/* unknown flags */
	assert_int_equal(rlfs_exchange_range(mp, ia, 0, ib, 0, 4096, 1ULL << 4), -EINVAL);
	/* unaligned starts */
	assert_int_equal(rlfs_exchange_range(mp, ia, 1, ib, 0, 4096, 0), -EINVAL);
	assert_int_equal(rlfs_exchange_range(mp, ia, 0, ib, 512, 4096, 0), -EINVAL);
	/* unaligned length in the middle of both files */
	assert_int_equal(rlfs_exchange_range(mp, ia, 0, ib, 0, 4095, 0), -EINVAL);
	/* a partial EOF block of b into the middle of a */
	assert_int_equal(rlfs_exchange_range(mp, ia, 0, ib, 4096, 7 * 4096 + 10, 0), -EINVAL);
	/* a start past EOF; a range past EOF */
	assert_int_equal(rlfs_exchange_range(mp, ia, 9 * 4096, ib, 0, 4096, 0), -EINVAL);
	assert_int_equal(rlfs_exchange_range(mp, ia, 4 * 4096, ib, 0, 8 * 4096, 0), -EINVAL);
	/* offsets that wrap loff_t */
	assert_int_equal(rlfs_exchange_range(mp, ia, (uint64_t)INT64_MAX - 4095, ib, 0, 8192, 0),
			 -EINVAL);
	/* a directory; not a regular file */
	struct stat st;
	assert_int_equal(rlfs_mkdir(mp, rlfs_root_ino(mp), "d", 0755, 0, 0, &st), 0);
	assert_int_equal(rlfs_exchange_range(mp, st.st_ino, 0, ib, 0, 4096, 0), -EISDIR);
	assert_int_equal(rlfs_exchange_range(mp, ia, 0, st.st_ino, 0, 4096, 0), -EISDIR);
	struct stat fst;
	assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), "fifo", S_IFIFO | 0644, 0, 0, 0, &fst),
			 0);
	assert_int_equal(rlfs_exchange_range(mp, fst.st_ino, 0, ib, 0, 4096, 0), -EINVAL);
	/* immutable / append-only file */
	struct rlfs_fileattr fa = { .xflags = FS_XFLAG_IMMUTABLE };
	assert_int_equal(rlfs_fileattr_set(mp, ia, &fa, RLFS_FA_FLAGS_ONLY |
					   RLFS_FA_CAP_LINUX_IMMUTABLE), 0);
	assert_int_equal(rlfs_exchange_range(mp, ia, 0, ib, 0, 4096, 0), -EPERM);
	assert_int_equal(rlfs_exchange_range(mp, ib, 0, ia, 0, 4096, 0), -EPERM);
	fa.xflags = FS_XFLAG_APPEND;
	assert_int_equal(rlfs_fileattr_set(mp, ia, &fa, RLFS_FA_FLAGS_ONLY |
					   RLFS_FA_CAP_LINUX_IMMUTABLE), 0);
	assert_int_equal(rlfs_exchange_range(mp, ib, 0, ia, 0, 4096, 0), -EPERM);
	fa.xflags = 0;
	assert_int_equal(rlfs_fileattr_set(mp, ia, &fa, RLFS_FA_FLAGS_ONLY |
					   RLFS_FA_CAP_LINUX_IMMUTABLE), 0);
	/* no such inode */
	assert_int_equal(rlfs_exchange_range(mp, ia, 0, 999999, 0, 4096, 0) < 0, 1);
	/* length 0 does nothing and succeeds; TO_EOF from both EOFs too, but
	 * the starts are checked for alignment first */
	assert_int_equal(rlfs_exchange_range(mp, ia, 0, ib, 0, 0, 0), 0);
	assert_int_equal(rlfs_exchange_range(mp, ia, 8 * 4096, ib, 8 * 4096 + 10, 0,
					     RLFS_EXCHANGE_TO_EOF), -EINVAL);
	check_fs(&c);
	/* TO_EOF from a's EOF: b's 10-byte tail block moves to a */
	do_xchg(&c, a, 8 * 4096, b, 8 * 4096, 0, RLFS_EXCHANGE_TO_EOF);
	assert_int_equal(c.f[a].size, 8 * 4096 + 10);
	assert_int_equal(c.f[b].size, 8 * 4096);
	check_fs(&c);
	ctx_fini(&c);
}

/* atomic file update (rlfs_commit_range): the exchange happens only while
 * file2 is as sampled; a write, a chmod or a utimes in between is EBUSY
 * and nothing changes */
static void test_commit_range(void **state)
{
	(void)state;
	struct ctx c;
	ctx_init(&c, 64 * MB, 4096, 0);
	int a = mkfile(&c, "orig"), t = mkfile(&c, "tmp");
	struct rlfs_mount *mp = MP(&c);
	do_write(&c, a, 0, 8 * 4096, 1);
	/* the update: a clone of the file, changed, committed */
	do_clone(&c, a, 0, t, 0, 0);
	do_write(&c, t, 4096, 100, 2);
	struct rlfs_exchange_fresh fr;
	assert_int_equal(rlfs_exchange_fresh_sample(mp, c.f[a].ino, &fr), 0);
	assert_int_equal(rlfs_commit_range(mp, c.f[t].ino, 0, c.f[a].ino, 0, 0,
					   RLFS_EXCHANGE_TO_EOF | RLFS_EXCHANGE_DRY_RUN, &fr), 0);
	check_fs(&c);
	struct rlist refc0;
	refc_snapshot(&c, &refc0);
	assert_int_equal(rlfs_commit_range(mp, c.f[t].ino, 0, c.f[a].ino, 0, 0,
					   RLFS_EXCHANGE_TO_EOF, &fr), 0);
	refc_same(&c, &refc0);
	struct mfile tmp = c.f[a];
	c.f[a].data = c.f[t].data;
	c.f[a].size = c.f[t].size;
	c.f[a].cap = c.f[t].cap;
	c.f[t].data = tmp.data;
	c.f[t].size = tmp.size;
	c.f[t].cap = tmp.cap;
	check_fs(&c);
	/* stale samples: a write, a chmod, utimes of file2 since */
	for (int k = 0; k < 3; k++) {
		assert_int_equal(rlfs_exchange_fresh_sample(mp, c.f[a].ino, &fr), 0);
		usleep(2000);
		if (k == 0) {
			do_write(&c, a, 0, 10, 3 + k);
		} else {
			struct stat st;
			assert_int_equal(rlfs_getattr(mp, c.f[a].ino, &st), 0);
			st.st_mode = S_IFREG | 0600;
			clock_gettime(CLOCK_REALTIME, &st.st_mtim);
			assert_int_equal(rlfs_setattr(mp, c.f[a].ino, &st,
						      k == 1 ? RLFS_SET_MODE : RLFS_SET_MTIME,
						      NULL), 0);
		}
		assert_int_equal(rlfs_commit_range(mp, c.f[t].ino, 0, c.f[a].ino, 0, 0,
						   RLFS_EXCHANGE_TO_EOF, &fr), -EBUSY);
		check_fs(&c);
	}
	/* another inode than the one sampled */
	assert_int_equal(rlfs_exchange_fresh_sample(mp, c.f[t].ino, &fr), 0);
	assert_int_equal(rlfs_commit_range(mp, c.f[t].ino, 0, c.f[a].ino, 0, 0,
					   RLFS_EXCHANGE_TO_EOF, &fr), -EBUSY);
	check_fs(&c);
	ctx_fini(&c);
}

int main(void)
{
	seed_from_env();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mixed),
		cmocka_unit_test(test_to_eof_dry_run),
		cmocka_unit_test(test_written_self),
		cmocka_unit_test(test_many_extents),
		cmocka_unit_test(test_recovery),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_commit_range),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

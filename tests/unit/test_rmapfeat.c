/*
 * test_rmapfeat.c: the RMAP feature switched on in the format (issue 11,
 * step 1b): mkfs -m rmapbt=1 on several geometries writes an rmap btree
 * that fsck -n finds clean (its cross-check against everything else) and
 * that, read through the library, tiles every AG exactly with the free
 * space and holds no two mergeable records (an independent check of
 * mkfs's records); records deleted,
 * given another owner, added or shortened in the image are reported by
 * fsck naming the AG, the blocks and the owner, and fsck without -n
 * rebuilds the tree (the log's record whole again); read-only and read-write mounts and
 * remounts work; and the hooks (step 3) keep the tree in step through
 * creates, writes, fallocate, xattrs, clone, CoW, punch, truncate,
 * unlink and 11,000 inodes made and removed (test_hooks).
 */
#include "testutil.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "rmap.h"
#include "trans.h"
#include "reflinkfs/fs.h"

#define MiB (1024ull * 1024)

static void image_path(char *path, size_t len, const char *tag)
{
	snprintf(path, len, "/tmp/rlfs-rmapfeat-%d-%s.img", (int)getpid(), tag);
}

static void make(const char *path, uint64_t size, uint32_t bs, uint32_t agcount, int reflink,
		 int log)
{
	struct rlfs_mkfs_opts o = { .size_bytes = size, .blocksize = bs, .agcount = agcount,
				    .force = 1, .reflink = reflink, .log = log, .rmapbt = 1 };
	unlink(path);
	assert_int_equal(rlfs_mkfs(path, &o), 0);
}

/* fsck [-n] IMAGE: exit status, output (stdout + stderr) into out. */
static int fsck_out(const char *image, bool dry, char *out, size_t len)
{
	char cmd[2 * PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "%s fsck %s %s 2>&1", tu_fsck_bin(), dry ? "-n" : "", image);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, len - 1, p);
	out[n] = '\0';
	int rc = pclose(p);
	assert_true(WIFEXITED(rc));
	return WEXITSTATUS(rc);
}

/* Does out hold a line containing every one of the (NULL-terminated)
 * strings? */
static bool has_line(const char *out, ...)
{
	const char *line = out;
	while (*line) {
		const char *eol = strchr(line, '\n');
		size_t n = eol ? (size_t)(eol - line) : strlen(line);
		char buf[1024];
		snprintf(buf, sizeof(buf), "%.*s", (int)n, line);
		va_list ap;
		va_start(ap, out);
		bool all = true;
		for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
			if (!strstr(buf, s))
				all = false;
		va_end(ap);
		if (all)
			return true;
		line += n + (eol ? 1 : 0);
	}
	return false;
}

struct tile {
	uint32_t next;      /* agbno after the last record so far */
	uint64_t covered;
	bool overlap;
	unsigned n;
	struct rlfs_rmap_irec recs[32];
};

static int tile_fn(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *r, void *priv)
{
	struct tile *t = priv;
	(void)cur;
	if (r->startblock < t->next)
		t->overlap = true;
	t->next = r->startblock + r->blockcount;
	t->covered += r->blockcount;
	assert_true(t->n < 32);
	t->recs[t->n++] = *r;
	return 0;
}

/*
 * Independent of fsck: read-only mount, every AG's rmap records (a fresh
 * image shares nothing: no overlaps) plus its free blocks (bnobt) and the
 * AGFL count as free in the header but as OWN_AG in the rmap, so:
 * rmap-covered + freeblks == AG length.  Also the first record is the
 * headers' (OWN_FS at 0, 2 blocks) and AG 0 holds an OWN_INODES record.
 */
static void check_tiling(const char *path)
{
	struct rlfs_mount *mp;
	assert_int_equal(rlfs_mount_open(path, RLFS_MOUNT_RDONLY | RLFS_MOUNT_NOLOCK, &mp), 0);
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp), 0);
	for (uint32_t agno = 0; agno < mp->agcount; agno++) {
		struct rlfs_buf *agbp;
		assert_int_equal(rlfs_ag_read_header(tp, agno, &agbp), 0);
		struct rlfs_agh *agh = rlfs_agh(agbp);
		assert_int_equal(rlfs_get16(agh->rmap_level), 1);
		struct rlfs_btree_cur cur;
		struct tile t = { 0 };
		struct rlfs_rmap_irec lo = { 0 }, hi = { .startblock = UINT32_MAX,
						       .owner = UINT64_MAX, .offset = 0 };
		rlfs_rmap_cur_init(&cur, tp, agno, agbp);
		assert_int_equal(rlfs_rmap_query_range(&cur, &lo, &hi, tile_fn, &t), 0);
		rlfs_btree_cur_del(&cur);
		assert_false(t.overlap);
		assert_int_equal(t.covered + rlfs_get32(agh->freeblks), rlfs_get32(agh->length));
		/* canonical: mkfs merged whatever could be merged */
		for (unsigned i = 0; i < t.n; i++)
			for (unsigned j = 0; j < t.n; j++)
				assert_false(rlfs_rmap_is_mergeable(&t.recs[i], &t.recs[j]));
		/* the headers' record and, in AG 0, the root directory's chunk */
		struct rlfs_rmap_irec hl = { 0 }, hh = { .startblock = 0, .owner = UINT64_MAX };
		struct tile h = { 0 };
		rlfs_rmap_cur_init(&cur, tp, agno, agbp);
		assert_int_equal(rlfs_rmap_query_range(&cur, &hl, &hh, tile_fn, &h), 0);
		rlfs_btree_cur_del(&cur);
		assert_int_equal(h.covered, 2);
		rlfs_trans_brelse(tp, agbp);
	}
	rlfs_trans_cancel(tp);
	assert_int_equal(rlfs_mount_close(mp), 0);
}

/* (a) several geometries: fsck -n clean, records tile the AGs */
static void test_geometries(void **state)
{
	(void)state;
	static const struct {
		uint64_t size;
		uint32_t bs, agcount;
		int reflink, log;
	} g[] = {
		{ 16 * MiB, 0, 0, 0, 0 },           /* smallest image, 4 AGs, reflink */
		{ 16 * MiB, 1024, 0, -1, 0 },       /* 1 KiB blocks, no reflink */
		{ 64 * MiB, 0, 7, 0, 0 },           /* 7 AGs, log in AG 3 */
		{ 64 * MiB, 0, 1, -1, 0 },          /* one AG: log and chunk in AG 0 */
		{ 128 * MiB, 65536, 0, 0, 0 },      /* 64 KiB blocks */
		{ 32 * MiB, 0, 2, 0, -1 },          /* no log */
	};
	char path[96], out[8192];
	image_path(path, sizeof(path), "geom");
	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
		make(path, g[i].size, g[i].bs, g[i].agcount, g[i].reflink, g[i].log);
		int rc = fsck_out(path, true, out, sizeof(out));
		if (rc != 0)
			fail_msg("geometry %zu: fsck -n exit %d:\n%s", i, rc, out);
		check_tiling(path);
	}
	unlink(path);
}

/* The rmap root leaf of AG agno: fsbno and a copy of the block. */
static uint64_t read_leaf(const char *path, uint32_t agno, uint8_t *blk, uint32_t *bs_out,
			  uint32_t *agblocks_out)
{
	struct rlfs_sb sb;
	struct rlfs_agh agh;
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &sb, sizeof(sb), 0), (ssize_t)sizeof(sb));
	uint32_t bs = rlfs_get32(sb.blocksize), agb = rlfs_get32(sb.agblocks);
	uint64_t hdr = ((uint64_t)agno * agb + RLFS_AGH_AGBNO) * bs;
	assert_int_equal(pread(fd, &agh, sizeof(agh), (off_t)hdr), (ssize_t)sizeof(agh));
	uint64_t fsbno = (uint64_t)agno * agb + rlfs_get32(agh.rmap_root);
	assert_int_equal(pread(fd, blk, bs, (off_t)(fsbno * bs)), (ssize_t)bs);
	close(fd);
	*bs_out = bs;
	*agblocks_out = agb;
	return fsbno;
}

static void write_leaf(const char *path, uint64_t fsbno, uint8_t *blk, uint32_t bs)
{
	rlfs_cksum_update(blk, bs, RLFS_CRC_OFF);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, blk, bs, (off_t)(fsbno * bs)), (ssize_t)bs);
	close(fd);
}

static struct rlfs_rmap_rec *leaf_recs(uint8_t *blk)
{
	return (struct rlfs_rmap_rec *)(blk + sizeof(struct rlfs_btree_block));
}

/* Index of the record of owner in the leaf (asserts there is one). */
static unsigned find_owner(uint8_t *blk, uint64_t owner)
{
	struct rlfs_btree_block *b = (void *)blk;
	for (unsigned i = 0; i < rlfs_get16(b->numrecs); i++)
		if (rlfs_get64(leaf_recs(blk)[i].owner) == owner)
			return i;
	fail_msg("no record of owner %llx", (unsigned long long)owner);
	return 0;
}

/* (b) damage that fsck must report, naming AG, blocks and owner */
static void test_damage(void **state)
{
	(void)state;
	char path[96], out[16384];
	uint8_t blk[4096];
	uint32_t bs, agb;
	image_path(path, sizeof(path), "dmg");

	/* one record deleted: the inobt root of AG 1 (agbno 5) */
	make(path, 64 * MiB, 0, 4, 0, 0);
	uint64_t fsbno = read_leaf(path, 1, blk, &bs, &agb);
	struct rlfs_btree_block *b = (void *)blk;
	unsigned n = rlfs_get16(b->numrecs), i = find_owner(blk, RLFS_RMAP_OWN_INOBT);
	assert_int_equal(rlfs_get32(leaf_recs(blk)[i].startblock), 5);
	memmove(&leaf_recs(blk)[i], &leaf_recs(blk)[i + 1], (n - i - 1) * sizeof(struct rlfs_rmap_rec));
	rlfs_put16(b->numrecs, (uint16_t)(n - 1));
	write_leaf(path, fsbno, blk, bs);
	assert_int_equal(fsck_out(path, true, out, sizeof(out)), 4);
	if (!has_line(out, "AG 1 agbno 5 ", "agbno 5-5 (1 block)", "OWN_INOBT", "missing from rmapbt",
		      NULL))
		fail_msg("deleted record not reported:\n%s", out);
	assert_false(has_line(out, "no owner", NULL));

	/* one record given another owner: AG 2's refcountbt root (agbno 6)
	 * now said to belong to inode 4242 */
	make(path, 64 * MiB, 0, 4, 0, 0);
	fsbno = read_leaf(path, 2, blk, &bs, &agb);
	i = find_owner(blk, RLFS_RMAP_OWN_REFC);
	assert_int_equal(rlfs_get32(leaf_recs(blk)[i].startblock), 6);
	rlfs_put64(leaf_recs(blk)[i].owner, 4242);
	write_leaf(path, fsbno, blk, bs);
	assert_int_equal(fsck_out(path, true, out, sizeof(out)), 4);
	if (!has_line(out, "AG 2 agbno 6 ", "agbno 6-6", "OWN_REFC", "missing from rmapbt", NULL) ||
	    !has_line(out, "AG 2 agbno 6 ", "agbno 6-6", "inode 4242", "rmapbt record with no owner",
		      NULL))
		fail_msg("changed owner not reported:\n%s", out);

	/* a bogus record in free space: AG 3 agbno 1000..1009, inode 777,
	 * file block 3 (appended: it sorts last) */
	make(path, 64 * MiB, 0, 4, 0, 0);
	fsbno = read_leaf(path, 3, blk, &bs, &agb);
	n = rlfs_get16(b->numrecs);
	struct rlfs_rmap_irec bogus = { .startblock = 1000, .blockcount = 10, .owner = 777,
					.offset = 3 };
	rlfs_rmap_rec_encode(&bogus, &leaf_recs(blk)[n]);
	rlfs_put16(b->numrecs, (uint16_t)(n + 1));
	write_leaf(path, fsbno, blk, bs);
	assert_int_equal(fsck_out(path, true, out, sizeof(out)), 4);
	if (!has_line(out, "AG 3 agbno 1000 ", "agbno 1000-1009", "inode 777 data at file block 3",
		      "rmapbt record with no owner", NULL))
		fail_msg("bogus record not reported:\n%s", out);
	assert_false(has_line(out, "missing from rmapbt", NULL));

	/* the log's record one block short (AG 2 of 4 holds the log) */
	make(path, 64 * MiB, 0, 4, 0, 0);
	fsbno = read_leaf(path, 2, blk, &bs, &agb);
	i = find_owner(blk, RLFS_RMAP_OWN_LOG);
	uint32_t ls = rlfs_get32(leaf_recs(blk)[i].startblock);
	uint32_t ll = rlfs_get32(leaf_recs(blk)[i].blockcount);
	rlfs_put32(leaf_recs(blk)[i].blockcount, ll - 1);
	write_leaf(path, fsbno, blk, bs);
	assert_int_equal(fsck_out(path, true, out, sizeof(out)), 4);
	char want[64], got[64];
	snprintf(want, sizeof(want), "agbno %u-%u (%u blocks) owner OWN_LOG", ls, ls + ll - 1, ll);
	snprintf(got, sizeof(got), "agbno %u-%u (%u blocks) owner OWN_LOG", ls, ls + ll - 2, ll - 1);
	if (!has_line(out, "AG 2 ", want, "missing from rmapbt", NULL) ||
	    !has_line(out, "AG 2 ", got, "rmapbt record with no owner", NULL))
		fail_msg("short log record not reported (%s / %s):\n%s", want, got, out);

	/* fsck without -n rebuilds the rmap btree (with the other AG trees,
	 * tools/fsck_rebuild.c): corrected, then clean, the log's record
	 * whole again */
	assert_int_equal(fsck_out(path, false, out, sizeof(out)), 1);
	if (!has_line(out, "AG 2: rebuilt bnobt", "rmapbt (", NULL))
		fail_msg("no rebuild line for AG 2:\n%s", out);
	assert_int_equal(fsck_out(path, true, out, sizeof(out)), 0);
	fsbno = read_leaf(path, 2, blk, &bs, &agb);
	i = find_owner(blk, RLFS_RMAP_OWN_LOG);
	assert_int_equal(rlfs_get32(leaf_recs(blk)[i].startblock), ls);
	assert_int_equal(rlfs_get32(leaf_recs(blk)[i].blockcount), ll);
	unlink(path);
}

/*
 * Switch the RMAP feature off (on = false: the feature bit cleared in
 * every superblock copy, every AG's rmap root and level saved in roots[]
 * and zeroed) or back on (restored), raw, with fresh checksums.  With it
 * off the library mounts the image read-write and leaves the rmap root
 * blocks alone (they are neither free nor on an AGFL).
 */
static void set_rmap_raw(const char *path, bool on, uint32_t *roots)
{
	struct rlfs_sb sb;
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &sb, sizeof(sb), 0), (ssize_t)sizeof(sb));
	uint32_t bs = rlfs_get32(sb.blocksize), agb = rlfs_get32(sb.agblocks);
	uint8_t *blk = malloc(bs);
	assert_non_null(blk);
	for (uint32_t agno = 0; agno < rlfs_get32(sb.agcount); agno++) {
		off_t sbo = (off_t)agno * agb * bs, aho = sbo + (off_t)RLFS_AGH_AGBNO * bs;
		assert_int_equal(pread(fd, blk, bs, sbo), (ssize_t)bs);
		struct rlfs_sb *s = (void *)blk;
		uint64_t f = rlfs_get64(s->features_incompat);
		rlfs_put64(s->features_incompat,
			   on ? f | RLFS_FEAT_INCOMPAT_RMAP : f & ~RLFS_FEAT_INCOMPAT_RMAP);
		rlfs_cksum_update(blk, bs, RLFS_CRC_OFF);
		assert_int_equal(pwrite(fd, blk, bs, sbo), (ssize_t)bs);
		assert_int_equal(pread(fd, blk, bs, aho), (ssize_t)bs);
		struct rlfs_agh *agh = (void *)blk;
		if (!on)
			roots[agno] = rlfs_get32(agh->rmap_root);
		rlfs_put32(agh->rmap_root, on ? roots[agno] : 0);
		rlfs_put16(agh->rmap_level, on ? 1 : 0);
		rlfs_cksum_update(blk, bs, RLFS_CRC_OFF);
		assert_int_equal(pwrite(fd, blk, bs, aho), (ssize_t)bs);
	}
	free(blk);
	close(fd);
}

/*
 * (b) inode-owned records: files made while the feature was switched off
 * (so the tree knows nothing of them) must each be reported missing with
 * the owner, fork, flags and file offset fsck derives from their maps:
 * an unwritten extent, a written one at file block 10, bmbt blocks,
 * directory tree blocks, xattr tree and remote value blocks, a remote
 * symlink target.
 */
struct owned {
	uint64_t u, w, frag, d, sl;
};

/* The files test_inode_owned and test_hooks make: an unwritten extent
 * (u), a written block at file block 10 and 8 remote xattr values (w), a
 * 300-extent file with a bmbt (frag), a 100-entry directory (d), a
 * remote symlink (sl). */
static void populate(struct rlfs_mount *mp, struct owned *o)
{
	char name[64];
	struct stat st;
	uint64_t root = rlfs_root_ino(mp);
	assert_int_equal(rlfs_mknod(mp, root, "u", S_IFREG | 0644, 0, 0, 0, &st), 0);
	uint64_t u = st.st_ino;
	assert_int_equal(rlfs_fallocate(mp, u, 0, 0, 4 * 4096), 0);
	assert_int_equal(rlfs_mknod(mp, root, "w", S_IFREG | 0644, 0, 0, 0, &st), 0);
	uint64_t w = st.st_ino;
	char blk[4096];
	memset(blk, 'w', sizeof(blk));
	assert_int_equal(rlfs_write(mp, w, blk, sizeof(blk), 10 * 4096), (ssize_t)sizeof(blk));
	tu_big_xattrs(mp, w, 8, 3000);
	uint64_t frag = tu_frag_file(mp, "frag", 300);
	assert_int_equal(rlfs_mkdir(mp, root, "d", 0755, 0, 0, &st), 0);
	uint64_t d = st.st_ino;
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "entry-with-a-long-name-%04d", i);
		assert_int_equal(rlfs_mknod(mp, d, name, S_IFREG | 0644, 0, 0, 0, &st), 0);
	}
	char target[300];
	memset(target, 'x', sizeof(target) - 1);
	target[sizeof(target) - 1] = '\0';
	assert_int_equal(rlfs_symlink(mp, root, "s", target, 0, 0, &st), 0);
	uint64_t sl = st.st_ino;
	*o = (struct owned){ .u = u, .w = w, .frag = frag, .d = d, .sl = sl };
}

static void test_inode_owned(void **state)
{
	(void)state;
	char path[96];
	uint32_t roots[4];
	struct rlfs_mount *mp;
	struct owned o;
	image_path(path, sizeof(path), "ino");
	make(path, 64 * MiB, 0, 4, 0, 0);
	set_rmap_raw(path, false, roots);
	assert_int_equal(rlfs_mount_open(path, RLFS_MOUNT_NOLOCK, &mp), 0);
	populate(mp, &o);
	uint64_t u = o.u, w = o.w, frag = o.frag, d = o.d, sl = o.sl;
	assert_int_equal(rlfs_mount_close(mp), 0);
	set_rmap_raw(path, true, roots);

	size_t len = 1 << 20;
	char *out = malloc(len);
	assert_non_null(out);
	assert_int_equal(fsck_out(path, true, out, len), 4);
	char want[128];
#define WANT(...)                                                                          \
	do {                                                                               \
		snprintf(want, sizeof(want), __VA_ARGS__);                                 \
		if (!has_line(out, want, "missing from rmapbt", NULL))                     \
			fail_msg("no \"%s ... missing from rmapbt\" in:\n%.4000s", want, out); \
	} while (0)
	WANT("(4 blocks) owner inode %llu data unwritten at file block 0", (unsigned long long)u);
	WANT("(1 block) owner inode %llu data at file block 10:", (unsigned long long)w);
	WANT("owner inode %llu attr fork tree block:", (unsigned long long)w);
	WANT("owner inode %llu data at file block 0:", (unsigned long long)frag);
	WANT("owner inode %llu data at file block 598:", (unsigned long long)frag);
	WANT("owner inode %llu tree block:", (unsigned long long)frag);
	WANT("owner inode %llu tree block:", (unsigned long long)d);
	WANT("owner inode %llu data at file block 0:", (unsigned long long)sl);
#undef WANT
	/* the attr fork of w: its xattr tree block(s) and the 8 one-block
	 * remote values, in however many merged records */
	unsigned long attr_blocks = 0;
	snprintf(want, sizeof(want), "owner inode %llu attr fork tree block:", (unsigned long long)w);
	for (const char *p = strstr(out, want); p; p = strstr(p + 1, want)) {
		const char *q = p;
		while (q > out && *q != '(')
			q--;
		attr_blocks += strtoul(q + 1, NULL, 10);
	}
	assert_true(attr_blocks >= 9);
	free(out);
	unlink(path);
}

/*
 * (d) the hooks (issue 11 step 3): the same files made on a live RMAP
 * image, then cloned, overwritten (CoW), punched, truncated, converted
 * (writes into the unwritten extent), xattrs and entries removed, files
 * unlinked, 11,000 inodes made and removed: after each stage fsck's
 * cross-check finds the rmap btree in step with every owner.  (Disabling
 * the data-fork hook or the inobt blocks' owner change makes it fail:
 * checked.)
 */
static void test_hooks(void **state)
{
	(void)state;
	char path[96], name[64], blk[4096];
	struct rlfs_mount *mp;
	struct owned o;
	struct stat st;
	image_path(path, sizeof(path), "hooks");
	make(path, 64 * MiB, 0, 4, 0, 0);
	assert_int_equal(rlfs_mount_open(path, RLFS_MOUNT_NOLOCK, &mp), 0);
	populate(mp, &o);
	assert_int_equal(rlfs_mount_close(mp), 0);
	assert_int_equal(tu_fsck(path, 0), 0);

	assert_int_equal(rlfs_mount_open(path, RLFS_MOUNT_NOLOCK, &mp), 0);
	uint64_t root = rlfs_root_ino(mp);
	assert_int_equal(rlfs_mknod(mp, root, "clone", S_IFREG | 0644, 0, 0, 0, &st), 0);
	uint64_t cl = st.st_ino;
	int64_t cloned = rlfs_clone_range(mp, o.frag, 0, cl, 0, 599 * 4096, 0);
	if (cloned != 599 * 4096)
		fail_msg("clone: %lld", (long long)cloned);
	memset(blk, 'c', sizeof(blk));
	for (int i = 0; i < 599; i += 7)       /* CoW of shared blocks */
		assert_int_equal(rlfs_write(mp, cl, blk, sizeof(blk), (off_t)i * 4096),
				 (ssize_t)sizeof(blk));
	assert_int_equal(rlfs_write(mp, o.u, blk, 2048, 4096), 2048); /* convert part */
	assert_int_equal(rlfs_mknod(mp, root, "whole", S_IFREG | 0644, 0, 0, 0, &st), 0);
	assert_int_equal(rlfs_fallocate(mp, st.st_ino, 0, 0, 4 * 4096), 0);
	for (int i = 0; i < 4; i++)     /* the whole extent converted in place */
		assert_int_equal(rlfs_write(mp, st.st_ino, blk, 4096, (off_t)i * 4096), 4096);
	assert_int_equal(rlfs_fallocate(mp, o.frag, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					100 * 4096, 200 * 4096), 0);
	struct stat sz = { .st_size = 5 * 4096 };
	assert_int_equal(rlfs_setattr(mp, o.w, &sz, RLFS_SET_SIZE, NULL), 0);
	for (int i = 0; i < 8; i += 2) {
		snprintf(name, sizeof(name), "user.big%d", i);
		assert_int_equal(rlfs_removexattr(mp, o.w, name), 0);
	}
	for (int i = 0; i < 100; i += 3) {
		snprintf(name, sizeof(name), "entry-with-a-long-name-%04d", i);
		assert_int_equal(rlfs_unlink(mp, o.d, name), 0);
	}
	assert_int_equal(rlfs_unlink(mp, root, "s"), 0);
	assert_int_equal(rlfs_mount_close(mp), 0);
	assert_int_equal(tu_fsck(path, 0), 0);

	/* 11,000 inodes: 172 chunks split the inobt (its blocks change owner
	 * from OWN_AG, and back when the chunks are freed) */
	assert_int_equal(rlfs_mount_open(path, RLFS_MOUNT_NOLOCK, &mp), 0);
	assert_int_equal(rlfs_mkdir(mp, rlfs_root_ino(mp), "many", 0755, 0, 0, &st), 0);
	uint64_t many = st.st_ino;
	for (int i = 0; i < 11000; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		assert_int_equal(rlfs_mknod(mp, many, name, S_IFREG | 0644, 0, 0, 0, &st), 0);
		rlfs_forget(mp, st.st_ino, 1);
	}
	assert_int_equal(rlfs_mount_close(mp), 0);
	assert_int_equal(tu_fsck(path, 0), 0);
	assert_int_equal(rlfs_mount_open(path, RLFS_MOUNT_NOLOCK, &mp), 0);
	for (int i = 0; i < 11000; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		assert_int_equal(rlfs_unlink(mp, many, name), 0);
	}
	assert_int_equal(rlfs_rmdir(mp, rlfs_root_ino(mp), "many"), 0);
	assert_int_equal(rlfs_mount_close(mp), 0);
	assert_int_equal(tu_fsck(path, 0), 0);

	/* the rest goes: every inode-owned record with it */
	assert_int_equal(rlfs_mount_open(path, RLFS_MOUNT_NOLOCK, &mp), 0);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "entry-with-a-long-name-%04d", i);
		int err = rlfs_unlink(mp, o.d, name);
		assert_true(err == 0 || (i % 3 == 0 && err == -ENOENT));
	}
	assert_int_equal(rlfs_rmdir(mp, root, "d"), 0);
	assert_int_equal(rlfs_unlink(mp, root, "frag"), 0);
	assert_int_equal(rlfs_unlink(mp, root, "w"), 0);
	assert_int_equal(rlfs_mount_close(mp), 0);
	assert_int_equal(tu_fsck(path, 0), 0);
	unlink(path);
}

/* (c) read-write mount and remount work (the hooks keep the tree in
 * step), a read-only one too */
static void test_mount(void **state)
{
	(void)state;
	char path[96];
	struct rlfs_mount *mp = NULL;
	image_path(path, sizeof(path), "mnt");
	make(path, 32 * MiB, 0, 0, 0, 0);
	assert_int_equal(rlfs_mount_open(path, RLFS_MOUNT_RDONLY, &mp), 0);
	struct stat st;
	assert_int_equal(rlfs_getattr(mp, rlfs_root_ino(mp), &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(rlfs_mount_set_rdonly(mp, false), 0);
	assert_false(rlfs_mount_is_rdonly(mp));
	assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), "f", S_IFREG | 0644, 0, 0, 0, &st), 0);
	assert_int_equal(rlfs_mount_close(mp), 0);
	assert_int_equal(tu_fsck(path, 0), 0);

	/* the default has the feature; rmapbt = -1 leaves it off: no rmap
	 * root anywhere */
	struct rlfs_mkfs_opts o = { .size_bytes = 32 * MiB, .force = 1 };
	assert_int_equal(rlfs_mkfs(path, &o), 0);
	struct rlfs_sb sb;
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &sb, sizeof(sb), 0), (ssize_t)sizeof(sb));
	assert_true(rlfs_get64(sb.features_incompat) & RLFS_FEAT_INCOMPAT_RMAP);
	close(fd);
	o.rmapbt = -1;
	assert_int_equal(rlfs_mkfs(path, &o), 0);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &sb, sizeof(sb), 0), (ssize_t)sizeof(sb));
	assert_int_equal(rlfs_get64(sb.features_incompat) & RLFS_FEAT_INCOMPAT_RMAP, 0);
	close(fd);
	assert_int_equal(rlfs_mount_open(path, 0, &mp), 0);
	assert_int_equal(rlfs_mount_close(mp), 0);
	o.rmapbt = 2;
	assert_int_equal(rlfs_mkfs(path, &o), -EINVAL);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_geometries),
		cmocka_unit_test(test_damage),
		cmocka_unit_test(test_inode_owned),
		cmocka_unit_test(test_mount),
		cmocka_unit_test(test_hooks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_dir.c: directories, name operations, symlinks and xattrs through the
 * public API (include/reflinkfs/fs.h), in-process on a fresh image.
 *
 * Covers: 20,000 entries in one directory (remount, lookups, readdir sees
 * each once), readdir cookie stability while the directory changes, forced
 * hash collisions (rlfs_namehash_mask), the rename matrix, hard links and
 * link counts, unlink of a file still looked up, inline and remote
 * symlinks, inline/btree xattrs and 64 KiB values, and that deleting
 * everything gives back every block and inode (statfs before/after).
 */
#include "testutil.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <time.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/ioctl.h"
#include "btree.h"
#include "dir.h"
#include "inode.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define MiB (1024ull * 1024)

/* ---- helpers ---- */

static uint64_t root(struct tu_fs *fs)
{
	return rlfs_root_ino(fs->mp);
}

/* lookup + forget: the attributes of dir/name, or a negative errno */
static int st_of(struct tu_fs *fs, uint64_t dir, const char *name, struct stat *st)
{
	struct stat tmp;
	int error = rlfs_lookup(fs->mp, dir, name, st ? st : &tmp);
	if (!error)
		rlfs_forget(fs->mp, (st ? st : &tmp)->st_ino, 1);
	return error;
}

static uint64_t mkfile(struct tu_fs *fs, uint64_t dir, const char *name)
{
	struct stat st;
	assert_int_equal(rlfs_mknod(fs->mp, dir, name, S_IFREG | 0644, 0, 0, 0, &st), 0);
	rlfs_forget(fs->mp, st.st_ino, 1);
	return st.st_ino;
}

static uint64_t mkdir_(struct tu_fs *fs, uint64_t dir, const char *name)
{
	struct stat st;
	assert_int_equal(rlfs_mkdir(fs->mp, dir, name, 0755, 0, 0, &st), 0);
	rlfs_forget(fs->mp, st.st_ino, 1);
	return st.st_ino;
}

static nlink_t nlink_of(struct tu_fs *fs, uint64_t dir, const char *name)
{
	struct stat st;
	assert_int_equal(st_of(fs, dir, name, &st), 0);
	return st.st_nlink;
}

struct space {
	fsblkcnt_t bfree;
	fsfilcnt_t ffree, files;
};

static struct space space_of(struct tu_fs *fs)
{
	struct statvfs sv;
	assert_int_equal(rlfs_statfs(fs->mp, &sv), 0);
	struct space s = { sv.f_bfree, sv.f_ffree, sv.f_files };
	return s;
}

static void assert_space_equal(struct space a, struct space b)
{
	if (a.bfree != b.bfree || a.ffree != b.ffree || a.files != b.files)
		fprintf(stderr, "space: bfree %llu vs %llu, ffree %llu vs %llu, files %llu vs %llu\n",
			(unsigned long long)a.bfree, (unsigned long long)b.bfree,
			(unsigned long long)a.ffree, (unsigned long long)b.ffree,
			(unsigned long long)a.files, (unsigned long long)b.files);
	assert_true(a.bfree == b.bfree);
	assert_true(a.files - a.ffree == b.files - b.ffree);
}

/* readdir collector */
struct entry {
	char name[RLFS_NAME_MAX + 1];
	uint64_t ino;
	mode_t type;
};

struct collect {
	struct entry *ents;
	size_t n, cap;
	size_t limit;               /* stop after this many per call (0 = none) */
	size_t this_call;
	uint64_t next;              /* cookie to resume */
	bool skip_dots;
};

static int collect_fn(void *priv, const char *name, const struct stat *st, uint64_t next)
{
	struct collect *c = priv;
	if (c->limit && c->this_call >= c->limit)
		return 1;
	c->this_call++;
	c->next = next;
	if (c->skip_dots && (!strcmp(name, ".") || !strcmp(name, "..")))
		return 0;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 256;
		c->ents = realloc(c->ents, c->cap * sizeof(*c->ents));
		assert_non_null(c->ents);
	}
	snprintf(c->ents[c->n].name, sizeof(c->ents[c->n].name), "%s", name);
	c->ents[c->n].ino = st->st_ino;
	c->ents[c->n].type = st->st_mode & S_IFMT;
	c->n++;
	return 0;
}

/* Whole directory in one go (several calls if the collector limits). */
static void readdir_all(struct tu_fs *fs, uint64_t dir, struct collect *c)
{
	uint64_t cookie = 0;
	for (;;) {
		c->this_call = 0;
		c->next = cookie;
		assert_int_equal(rlfs_readdir(fs->mp, dir, cookie, 0, collect_fn, c), 0);
		if (c->this_call == 0)
			break;
		cookie = c->next;
	}
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}


/*
 * Unmount and run "reflinkfs fsck -n" on the image, which must be clean
 * (tu_fsck_bin: a missing fsck binary fails the test).
 */
static void finish(struct tu_fs *fs)
{
	assert_int_equal(rlfs_mount_close(fs->mp), 0);
	fs->mp = NULL;
	assert_int_equal(tu_fsck(fs->path, 0), 0);
	tu_unmount(fs);
}

/* ---- tests ---- */

static void test_basic_errors(void **state)
{
	struct tu_fs fs;
	struct stat st;
	char longname[300];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t r = root(&fs);

	memset(longname, 'a', 256);
	longname[256] = 0;
	assert_int_equal(rlfs_mknod(fs.mp, r, longname, S_IFREG | 0644, 0, 0, 0, &st),
			 -ENAMETOOLONG);
	assert_int_equal(rlfs_lookup(fs.mp, r, longname, &st), -ENAMETOOLONG);
	longname[255] = 0;
	uint64_t ino = mkfile(&fs, r, longname);
	assert_int_equal(st_of(&fs, r, longname, &st), 0);
	assert_int_equal(st.st_ino, ino);

	assert_int_equal(rlfs_lookup(fs.mp, r, "nope", &st), -ENOENT);
	mkfile(&fs, r, "f");
	assert_int_equal(rlfs_mknod(fs.mp, r, "f", S_IFREG | 0644, 0, 0, 0, &st), -EEXIST);
	assert_int_equal(rlfs_mkdir(fs.mp, r, "f", 0755, 0, 0, &st), -EEXIST);
	uint64_t fino = mkfile(&fs, r, "g");
	assert_int_equal(rlfs_lookup(fs.mp, fino, "x", &st), -ENOTDIR);
	assert_int_equal(rlfs_mknod(fs.mp, fino, "x", S_IFREG | 0644, 0, 0, 0, &st), -ENOTDIR);
	uint64_t d = mkdir_(&fs, r, "d");
	assert_int_equal(rlfs_unlink(fs.mp, r, "d"), -EISDIR);
	assert_int_equal(rlfs_rmdir(fs.mp, r, "f"), -ENOTDIR);
	assert_int_equal(rlfs_unlink(fs.mp, r, "nope"), -ENOENT);
	assert_int_equal(rlfs_rmdir(fs.mp, r, "nope"), -ENOENT);
	mkfile(&fs, d, "inner");
	assert_int_equal(rlfs_rmdir(fs.mp, r, "d"), -ENOTEMPTY);
	assert_int_equal(rlfs_readlink(fs.mp, fino, (char[8]){0}, 8), -EINVAL);

	/* "." and ".." */
	assert_int_equal(rlfs_lookup(fs.mp, d, "..", &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_int_equal(st.st_ino, r);
	assert_int_equal(rlfs_lookup(fs.mp, d, ".", &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_int_equal(st.st_ino, d);

	/* special files */
	assert_int_equal(rlfs_mknod(fs.mp, r, "fifo", S_IFIFO | 0600, 0, 0, 0, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_true(S_ISFIFO(st.st_mode));
	assert_int_equal(rlfs_mknod(fs.mp, r, "chr", S_IFCHR | 0600, makedev(1, 3), 0, 0, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(st.st_rdev, makedev(1, 3));
	assert_int_equal(rlfs_mknod(fs.mp, r, "sock", S_IFSOCK | 0600, 0, 0, 0, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);

	/* readdir types */
	struct collect c = { .skip_dots = false };
	readdir_all(&fs, r, &c);
	qsort(c.ents, c.n, sizeof(*c.ents), cmp_entry);
	size_t nf = 0;
	for (size_t i = 0; i < c.n; i++) {
		if (!strcmp(c.ents[i].name, "chr")) {
			assert_int_equal(c.ents[i].type, S_IFCHR);
			nf++;
		}
		if (!strcmp(c.ents[i].name, "d")) {
			assert_int_equal(c.ents[i].type, S_IFDIR);
			assert_int_equal(c.ents[i].ino, d);
			nf++;
		}
		if (!strcmp(c.ents[i].name, "..") || !strcmp(c.ents[i].name, "."))
			nf++;
	}
	assert_int_equal(nf, 4);
	assert_int_equal(c.n, 9); /* . .. long f g d fifo chr sock */
	free(c.ents);

	tu_remount(&fs);
	assert_int_equal(st_of(&fs, r, "fifo", &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	assert_int_equal(st_of(&fs, d, "inner", &st), 0);
	finish(&fs);
}

static void test_many_entries(void **state)
{
	struct tu_fs fs;
	const unsigned N = 20000;
	char name[64];
	tu_mkfs_mount(&fs, 512 * MiB, 0, 0);
	uint64_t r = root(&fs);
	struct space before = space_of(&fs);
	uint64_t d = mkdir_(&fs, r, "big");
	uint64_t *inos = calloc(N, sizeof(*inos));
	assert_non_null(inos);

	for (unsigned i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "file-%05u-%s", i, (i & 1) ? "odd" : "even-longer-name");
		inos[i] = mkfile(&fs, d, name);
	}
	tu_remount(&fs);
	for (unsigned i = 0; i < N; i++) {
		struct stat st;
		snprintf(name, sizeof(name), "file-%05u-%s", i, (i & 1) ? "odd" : "even-longer-name");
		assert_int_equal(st_of(&fs, d, name, &st), 0);
		assert_int_equal(st.st_ino, inos[i]);
	}
	/* readdir: every entry exactly once, in small batches */
	struct collect c = { .limit = 97, .skip_dots = true };
	readdir_all(&fs, d, &c);
	assert_int_equal(c.n, N);
	unsigned char *seen = calloc(N, 1);
	for (size_t i = 0; i < c.n; i++) {
		unsigned k;
		assert_int_equal(sscanf(c.ents[i].name, "file-%05u-", &k), 1);
		assert_true(k < N);
		assert_int_equal(seen[k], 0);
		seen[k] = 1;
		assert_int_equal(c.ents[i].ino, inos[k]);
	}
	free(seen);
	free(c.ents);

	/* directory link counts: 2 + subdirs */
	assert_int_equal(nlink_of(&fs, r, "big"), 2);

	/* delete half, remount, check, delete the rest */
	for (unsigned i = 0; i < N; i += 2) {
		snprintf(name, sizeof(name), "file-%05u-%s", i, (i & 1) ? "odd" : "even-longer-name");
		assert_int_equal(rlfs_unlink(fs.mp, d, name), 0);
	}
	tu_remount(&fs);
	for (unsigned i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "file-%05u-%s", i, (i & 1) ? "odd" : "even-longer-name");
		assert_int_equal(st_of(&fs, d, name, NULL), (i & 1) ? 0 : -ENOENT);
	}
	assert_int_equal(rlfs_rmdir(fs.mp, r, "big"), -ENOTEMPTY);
	for (unsigned i = 1; i < N; i += 2) {
		snprintf(name, sizeof(name), "file-%05u-%s", i, (i & 1) ? "odd" : "even-longer-name");
		assert_int_equal(rlfs_unlink(fs.mp, d, name), 0);
	}
	assert_int_equal(rlfs_rmdir(fs.mp, r, "big"), 0);
	assert_space_equal(space_of(&fs), before);
	tu_remount(&fs);
	assert_space_equal(space_of(&fs), before);
	free(inos);
	finish(&fs);
}

/* Readdir in small batches while entries come and go between the calls. */
static void test_cookie_stability(void **state)
{
	struct tu_fs fs;
	char name[64];
	const unsigned N = 3000;
	tu_mkfs_mount(&fs, 128 * MiB, 0, 0);
	uint64_t d = mkdir_(&fs, root(&fs), "d");
	unsigned char *state_ = calloc(2 * N + 10000, 1); /* 1 = present, 2 = removed */
	unsigned next_new = N;
	for (unsigned i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "e%u", i);
		mkfile(&fs, d, name);
		state_[i] = 1;
	}
	unsigned *count = calloc(2 * N + 10000, sizeof(unsigned));
	struct collect c = { .limit = 37, .skip_dots = true };
	uint64_t cookie = 0;
	unsigned round = 0;
	for (;;) {
		c.this_call = 0;
		c.next = cookie;
		size_t before = c.n;
		assert_int_equal(rlfs_readdir(fs.mp, d, cookie, 0, collect_fn, &c), 0);
		if (c.this_call == 0)
			break;
		cookie = c.next;
		for (size_t i = before; i < c.n; i++) {
			unsigned k;
			assert_int_equal(sscanf(c.ents[i].name, "e%u", &k), 1);
			count[k]++;
		}
		c.n = before + (c.n - before); /* keep */
		/* change the directory: remove some old ones, add new ones */
		for (unsigned j = 0; j < 7; j++) {
			unsigned k = (unsigned)(tu_rand() % N);
			if (state_[k] == 1) {
				snprintf(name, sizeof(name), "e%u", k);
				assert_int_equal(rlfs_unlink(fs.mp, d, name), 0);
				state_[k] = 2;
			}
			snprintf(name, sizeof(name), "e%u", next_new);
			mkfile(&fs, d, name);
			state_[next_new++] = 1;
		}
		round++;
		assert_true(round < 100000);
	}
	for (unsigned k = 0; k < next_new; k++) {
		assert_true(count[k] <= 1);             /* never twice */
		if (k < N && state_[k] == 1)
			assert_int_equal(count[k], 1);  /* present throughout: seen */
	}
	free(c.ents);
	free(count);
	free(state_);
	finish(&fs);
}

/* Few hash values: long collision chains across many leaves, seq reuse. */
static void test_hash_collisions(void **state)
{
	struct tu_fs fs;
	char name[64];
	const unsigned N = 400;
	uint32_t saved = rlfs_namehash_mask;
	tu_mkfs_mount(&fs, 64 * MiB, 1024, 0);
	struct space before = space_of(&fs);
	rlfs_namehash_mask = 0x3; /* hashes 1..3 only */
	uint64_t d = mkdir_(&fs, root(&fs), "c");
	uint64_t *inos = calloc(2 * N, sizeof(*inos));
	for (unsigned i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "n%u", i);
		inos[i] = mkfile(&fs, d, name);
	}
	for (unsigned i = 0; i < N; i++) {
		struct stat st;
		snprintf(name, sizeof(name), "n%u", i);
		assert_int_equal(st_of(&fs, d, name, &st), 0);
		assert_int_equal(st.st_ino, inos[i]);
	}
	/* punch holes into the seq ranges, then refill them */
	for (unsigned i = 0; i < N; i += 3) {
		snprintf(name, sizeof(name), "n%u", i);
		assert_int_equal(rlfs_unlink(fs.mp, d, name), 0);
	}
	for (unsigned i = N; i < N + N / 3; i++) {
		snprintf(name, sizeof(name), "n%u", i);
		inos[i] = mkfile(&fs, d, name);
	}
	tu_remount(&fs);
	for (unsigned i = 0; i < N + N / 3; i++) {
		struct stat st;
		snprintf(name, sizeof(name), "n%u", i);
		int want = (i < N && i % 3 == 0) ? -ENOENT : 0;
		assert_int_equal(st_of(&fs, d, name, &st), want);
		if (!want)
			assert_int_equal(st.st_ino, inos[i]);
		/* duplicate adds are refused even deep in a chain */
		if (!want)
			assert_int_equal(rlfs_mknod(fs.mp, d, name, S_IFREG | 0644, 0, 0, 0, &st),
					 -EEXIST);
	}
	struct collect c = { .limit = 11, .skip_dots = true };
	readdir_all(&fs, d, &c);
	unsigned expect = N - (N + 2) / 3 + N / 3;
	assert_int_equal(c.n, expect);
	qsort(c.ents, c.n, sizeof(*c.ents), cmp_entry);
	for (size_t i = 1; i < c.n; i++)
		assert_true(strcmp(c.ents[i - 1].name, c.ents[i].name) != 0);
	free(c.ents);

	/* xattr names collide too */
	uint64_t f = inos[1];
	for (unsigned i = 0; i < 60; i++) {
		char v[16];
		snprintf(name, sizeof(name), "user.a%u", i);
		snprintf(v, sizeof(v), "v%u", i);
		assert_int_equal(rlfs_setxattr(fs.mp, f, name, v, strlen(v), XATTR_CREATE), 0);
	}
	for (unsigned i = 0; i < 60; i += 2) {
		snprintf(name, sizeof(name), "user.a%u", i);
		assert_int_equal(rlfs_removexattr(fs.mp, f, name), 0);
	}
	for (unsigned i = 0; i < 60; i++) {
		char v[16], buf[16];
		snprintf(name, sizeof(name), "user.a%u", i);
		snprintf(v, sizeof(v), "v%u", i);
		int n = rlfs_getxattr(fs.mp, f, name, buf, sizeof(buf));
		if (i % 2 == 0) {
			assert_int_equal(n, -ENODATA);
		} else {
			assert_int_equal(n, (int)strlen(v));
			assert_memory_equal(buf, v, n);
		}
	}

	for (unsigned i = 0; i < N + N / 3; i++) {
		snprintf(name, sizeof(name), "n%u", i);
		int want = (i < N && i % 3 == 0) ? -ENOENT : 0;
		assert_int_equal(rlfs_unlink(fs.mp, d, name), want);
	}
	assert_int_equal(rlfs_rmdir(fs.mp, root(&fs), "c"), 0);
	assert_space_equal(space_of(&fs), before);
	free(inos);
	finish(&fs);
	rlfs_namehash_mask = saved;
}

static void test_rename(void **state)
{
	struct tu_fs fs;
	struct stat st;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t r = root(&fs);
	struct space before = space_of(&fs);
	uint64_t a = mkdir_(&fs, r, "a");
	uint64_t b = mkdir_(&fs, r, "b");
	uint64_t f1 = mkfile(&fs, a, "f1");
	uint64_t f2 = mkfile(&fs, b, "f2");
	assert_int_equal(nlink_of(&fs, r, "."), 4);

	/* plain file rename within and across dirs */
	assert_int_equal(rlfs_rename(fs.mp, a, "f1", a, "g1", 0), 0);
	assert_int_equal(st_of(&fs, a, "f1", NULL), -ENOENT);
	assert_int_equal(st_of(&fs, a, "g1", &st), 0);
	assert_int_equal(st.st_ino, f1);
	assert_int_equal(rlfs_rename(fs.mp, a, "g1", b, "g1", 0), 0);
	assert_int_equal(st_of(&fs, b, "g1", &st), 0);
	assert_int_equal(st.st_ino, f1);
	assert_int_equal(rlfs_rename(fs.mp, a, "nope", b, "x", 0), -ENOENT);

	/* over an existing file: the old target loses its link and goes */
	struct space mid = space_of(&fs);
	assert_int_equal(rlfs_rename(fs.mp, b, "g1", b, "f2", 0), 0);
	assert_int_equal(st_of(&fs, b, "f2", &st), 0);
	assert_int_equal(st.st_ino, f1);
	assert_int_equal(st_of(&fs, b, "g1", NULL), -ENOENT);
	(void)f2;
	/* exactly one inode (f2) is freed; ffree = free inodes in chunks +
	 * what free space could hold, so it grows by at least one (a chunk
	 * freed with it gives back as many as its blocks could hold) */
	struct space aft = space_of(&fs);
	assert_int_equal(aft.files - aft.ffree, mid.files - mid.ffree - 1);
	assert_true(aft.ffree >= mid.ffree + 1);

	/* NOREPLACE */
	mkfile(&fs, b, "h");
	assert_int_equal(rlfs_rename(fs.mp, b, "h", b, "f2", RENAME_NOREPLACE), -EEXIST);
	assert_int_equal(rlfs_rename(fs.mp, b, "h", b, "h2", RENAME_NOREPLACE), 0);
	assert_int_equal(rlfs_rename(fs.mp, b, "h2", b, "f2", RENAME_NOREPLACE | RENAME_EXCHANGE),
			 -EINVAL);

	/* EXCHANGE file <-> dir across dirs */
	uint64_t sub = mkdir_(&fs, a, "sub");
	uint64_t h2;
	assert_int_equal(st_of(&fs, b, "h2", &st), 0);
	h2 = st.st_ino;
	assert_int_equal(nlink_of(&fs, r, "a"), 3);
	assert_int_equal(nlink_of(&fs, r, "b"), 2);
	assert_int_equal(rlfs_rename(fs.mp, a, "sub", b, "h2", RENAME_EXCHANGE), 0);
	assert_int_equal(st_of(&fs, a, "sub", &st), 0);
	assert_int_equal(st.st_ino, h2);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st_of(&fs, b, "h2", &st), 0);
	assert_int_equal(st.st_ino, sub);
	assert_int_equal(nlink_of(&fs, r, "a"), 2);
	assert_int_equal(nlink_of(&fs, r, "b"), 3);
	assert_int_equal(st_of(&fs, sub, "..", &st), 0);
	assert_int_equal(st.st_ino, b);
	assert_int_equal(rlfs_rename(fs.mp, a, "sub", b, "nothere", RENAME_EXCHANGE), -ENOENT);

	/* dir into its own subtree */
	uint64_t deep = mkdir_(&fs, sub, "deep");
	assert_int_equal(rlfs_rename(fs.mp, b, "h2", deep, "x", 0), -EINVAL);
	assert_int_equal(rlfs_rename(fs.mp, r, "b", sub, "x", 0), -EINVAL);
	assert_int_equal(rlfs_rename(fs.mp, r, "b", b, "x", 0), -EINVAL);
	/* target is an ancestor of the source: not empty */
	assert_int_equal(rlfs_rename(fs.mp, sub, "deep", r, "b", 0), -ENOTEMPTY);
	/* exchange with an ancestor */
	assert_int_equal(rlfs_rename(fs.mp, sub, "deep", r, "b", RENAME_EXCHANGE), -EINVAL);

	/* type mismatches and non-empty targets */
	mkfile(&fs, r, "file");
	assert_int_equal(rlfs_rename(fs.mp, r, "a", r, "file", 0), -ENOTDIR);
	assert_int_equal(rlfs_rename(fs.mp, r, "file", r, "a", 0), -EISDIR);
	assert_int_equal(rlfs_rename(fs.mp, r, "a", r, "b", 0), -ENOTEMPTY);

	/* dir over an empty dir, across parents */
	uint64_t e = mkdir_(&fs, a, "empty");
	uint64_t m = mkdir_(&fs, r, "mover");
	mkfile(&fs, m, "inside");
	assert_int_equal(nlink_of(&fs, r, "."), 5); /* a b mover + 2 */
	assert_int_equal(nlink_of(&fs, r, "a"), 3);  /* empty */
	assert_int_equal(rlfs_rename(fs.mp, r, "mover", a, "empty", 0), 0);
	assert_int_equal(st_of(&fs, a, "empty", &st), 0);
	assert_int_equal(st.st_ino, m);
	assert_int_equal(nlink_of(&fs, r, "."), 4);
	assert_int_equal(nlink_of(&fs, r, "a"), 3);
	assert_int_equal(st_of(&fs, m, "..", &st), 0);
	assert_int_equal(st.st_ino, a);
	(void)e;

	/* same inode: rename onto another hard link does nothing */
	assert_int_equal(rlfs_link(fs.mp, f1, r, "f1link", &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_int_equal(rlfs_rename(fs.mp, r, "f1link", b, "f2", 0), 0);
	assert_int_equal(st_of(&fs, r, "f1link", NULL), 0);
	assert_int_equal(nlink_of(&fs, b, "f2"), 2);

	/* persists */
	tu_remount(&fs);
	assert_int_equal(st_of(&fs, b, "h2", &st), 0);
	assert_int_equal(st.st_ino, sub);
	assert_int_equal(st_of(&fs, a, "empty", &st), 0);
	assert_int_equal(st_of(&fs, m, "inside", NULL), 0);

	/* clean everything up */
	assert_int_equal(rlfs_unlink(fs.mp, m, "inside"), 0);
	assert_int_equal(rlfs_rmdir(fs.mp, a, "empty"), 0);
	assert_int_equal(rlfs_unlink(fs.mp, a, "sub"), 0);
	assert_int_equal(rlfs_rmdir(fs.mp, sub, "deep"), 0);
	assert_int_equal(rlfs_rmdir(fs.mp, b, "h2"), 0);
	assert_int_equal(rlfs_unlink(fs.mp, b, "f2"), 0);
	assert_int_equal(rlfs_unlink(fs.mp, b, "h"), -ENOENT);
	assert_int_equal(rlfs_unlink(fs.mp, r, "f1link"), 0);
	assert_int_equal(rlfs_unlink(fs.mp, r, "file"), 0);
	assert_int_equal(rlfs_rmdir(fs.mp, r, "a"), 0);
	assert_int_equal(rlfs_rmdir(fs.mp, r, "b"), 0);
	assert_int_equal(nlink_of(&fs, r, "."), 2);
	assert_space_equal(space_of(&fs), before);
	finish(&fs);
}

static void test_links(void **state)
{
	struct tu_fs fs;
	struct stat st;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t r = root(&fs);
	struct space before = space_of(&fs);
	uint64_t d = mkdir_(&fs, r, "d");
	uint64_t f = mkfile(&fs, r, "f");
	assert_int_equal(rlfs_link(fs.mp, f, d, "l1", &st), 0);
	rlfs_forget(fs.mp, f, 1);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(rlfs_link(fs.mp, f, d, "l2", &st), 0);
	rlfs_forget(fs.mp, f, 1);
	assert_int_equal(st.st_nlink, 3);
	assert_int_equal(rlfs_link(fs.mp, f, d, "l2", &st), -EEXIST);
	assert_int_equal(rlfs_link(fs.mp, d, r, "dirlink", &st), -EPERM);
	assert_int_equal(rlfs_link(fs.mp, f, f, "x", &st), -ENOTDIR);
	tu_remount(&fs);
	assert_int_equal(nlink_of(&fs, d, "l1"), 3);
	assert_int_equal(rlfs_unlink(fs.mp, r, "f"), 0);
	assert_int_equal(nlink_of(&fs, d, "l2"), 2);
	assert_int_equal(rlfs_unlink(fs.mp, d, "l2"), 0);
	assert_int_equal(nlink_of(&fs, d, "l1"), 1);
	assert_int_equal(rlfs_unlink(fs.mp, d, "l1"), 0);
	assert_int_equal(rlfs_rmdir(fs.mp, r, "d"), 0);
	assert_space_equal(space_of(&fs), before);

	/* a file unlinked while looked up stays until forget */
	struct space before2 = space_of(&fs);
	assert_int_equal(rlfs_mknod(fs.mp, r, "open", S_IFREG | 0644, 0, 0, 0, &st), 0);
	uint64_t ino = st.st_ino;
	static char big[65536];
	memset(big, 'x', sizeof(big));
	assert_int_equal(rlfs_setxattr(fs.mp, ino, "user.big", big, sizeof(big), 0), 0);
	struct space used = space_of(&fs);
	assert_true(used.bfree < before2.bfree);
	assert_int_equal(rlfs_unlink(fs.mp, r, "open"), 0);
	assert_int_equal(rlfs_lookup(fs.mp, r, "open", &st), -ENOENT);
	/* still there: the kernel holds a lookup */
	assert_int_equal(rlfs_getxattr(fs.mp, ino, "user.big", NULL, 0), 65536);
	assert_int_equal(rlfs_link(fs.mp, ino, r, "relink", &st), -ENOENT);
	assert_true(space_of(&fs).bfree + 17 <= before2.bfree); /* value blocks kept */
	rlfs_forget(fs.mp, ino, 1);
	assert_space_equal(space_of(&fs), before2);
	finish(&fs);
}

static void test_symlinks(void **state)
{
	struct tu_fs fs;
	struct stat st;
	char buf[8192];
	char target[4200];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t r = root(&fs);
	struct space before = space_of(&fs);

	assert_int_equal(rlfs_symlink(fs.mp, r, "short", "some/where", 0, 0, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(st.st_size, 10);
	uint64_t s1 = st.st_ino;

	for (int i = 0; i < 3000; i++)
		target[i] = (char)('a' + i % 26);
	target[3000] = 0;
	assert_int_equal(rlfs_symlink(fs.mp, r, "long", target, 0, 0, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_int_equal(st.st_size, 3000);
	uint64_t s2 = st.st_ino;

	memset(target, 'z', 4095);
	target[4095] = 0;
	assert_int_equal(rlfs_symlink(fs.mp, r, "max", target, 0, 0, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	uint64_t s3 = st.st_ino;
	target[4095] = 'z';
	target[4096] = 0;
	assert_int_equal(rlfs_symlink(fs.mp, r, "toolong", target, 0, 0, &st), -ENAMETOOLONG);
	assert_int_equal(rlfs_symlink(fs.mp, r, "short", "x", 0, 0, &st), -EEXIST);

	tu_remount(&fs);
	assert_int_equal(rlfs_readlink(fs.mp, s1, buf, sizeof(buf)), 10);
	assert_string_equal(buf, "some/where");
	assert_int_equal(rlfs_readlink(fs.mp, s2, buf, sizeof(buf)), 3000);
	for (int i = 0; i < 3000; i++)
		assert_int_equal(buf[i], (char)('a' + i % 26));
	assert_int_equal(buf[3000], 0);
	assert_int_equal(rlfs_readlink(fs.mp, s3, buf, sizeof(buf)), 4095);
	for (int i = 0; i < 4095; i++)
		assert_int_equal(buf[i], 'z');
	/* short buffer: truncated, not terminated */
	assert_int_equal(rlfs_readlink(fs.mp, s2, buf, 5), 5);
	assert_memory_equal(buf, "abcde", 5);

	assert_int_equal(rlfs_unlink(fs.mp, r, "short"), 0);
	assert_int_equal(rlfs_unlink(fs.mp, r, "long"), 0);
	assert_int_equal(rlfs_unlink(fs.mp, r, "max"), 0);
	assert_space_equal(space_of(&fs), before);
	tu_remount(&fs);
	assert_space_equal(space_of(&fs), before);

	/* Remote target blocks freed while their buffers were still dirty
	 * must never be written over file data that reuses them. */
	static char data[1 << 20], back[1 << 20];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 13 + 5);
	target[4095] = 0;
	for (int round = 0; round < 3; round++) {
		char nm[16];
		for (int i = 0; i < 20; i++) {
			snprintf(nm, sizeof(nm), "s%d", i);
			assert_int_equal(rlfs_symlink(fs.mp, r, nm, target, 0, 0, &st), 0);
			rlfs_forget(fs.mp, st.st_ino, 1);
		}
		for (int i = 0; i < 20; i++) {
			snprintf(nm, sizeof(nm), "s%d", i);
			assert_int_equal(rlfs_unlink(fs.mp, r, nm), 0);
		}
		snprintf(nm, sizeof(nm), "data%d", round);
		uint64_t fino = mkfile(&fs, r, nm);
		assert_int_equal(rlfs_write(fs.mp, fino, data, sizeof(data), 0), (ssize_t)sizeof(data));
	}
	tu_remount(&fs);
	for (int round = 0; round < 3; round++) {
		char nm[16];
		snprintf(nm, sizeof(nm), "data%d", round);
		assert_int_equal(st_of(&fs, r, nm, &st), 0);
		assert_int_equal(rlfs_read(fs.mp, st.st_ino, back, sizeof(back), 0),
				 (ssize_t)sizeof(back));
		assert_memory_equal(back, data, sizeof(data));
		assert_int_equal(rlfs_unlink(fs.mp, r, nm), 0);
	}
	assert_space_equal(space_of(&fs), before);
	finish(&fs);
}

static void test_symlinks_1k(void **state)
{
	struct tu_fs fs;
	struct stat st;
	char target[4096], buf[4096];
	tu_mkfs_mount(&fs, 32 * MiB, 1024, 0);
	uint64_t r = root(&fs);
	struct space before = space_of(&fs);
	for (int i = 0; i < 4095; i++)
		target[i] = (char)('0' + i % 10);
	target[4095] = 0;
	assert_int_equal(rlfs_symlink(fs.mp, r, "l", target, 0, 0, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	tu_remount(&fs);
	assert_int_equal(rlfs_readlink(fs.mp, st.st_ino, buf, sizeof(buf)), 4095);
	assert_memory_equal(buf, target, 4095);
	assert_int_equal(rlfs_unlink(fs.mp, r, "l"), 0);
	assert_space_equal(space_of(&fs), before);
	finish(&fs);
}

static void xattr_suite(uint32_t blocksize)
{
	struct tu_fs fs;
	char name[300], list[65536];
	static char val[65536 + 10], buf[65536 + 10];
	tu_mkfs_mount(&fs, 64 * MiB, blocksize, 0);
	uint64_t r = root(&fs);
	struct space before = space_of(&fs);
	uint64_t f = mkfile(&fs, r, "f");
	uint64_t d = mkdir_(&fs, r, "d");

	/* inline */
	assert_int_equal(rlfs_getxattr(fs.mp, f, "user.a", buf, sizeof(buf)), -ENODATA);
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.a", "1", 1, 0), 0);
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.a", "2", 1, XATTR_CREATE), -EEXIST);
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.b", "2", 1, XATTR_REPLACE), -ENODATA);
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.a", "22", 2, XATTR_REPLACE), 0);
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.empty", "", 0, 0), 0);
	assert_int_equal(rlfs_getxattr(fs.mp, f, "user.a", NULL, 0), 2);
	assert_int_equal(rlfs_getxattr(fs.mp, f, "user.a", buf, 1), -ERANGE);
	assert_int_equal(rlfs_getxattr(fs.mp, f, "user.a", buf, sizeof(buf)), 2);
	assert_memory_equal(buf, "22", 2);
	assert_int_equal(rlfs_getxattr(fs.mp, f, "user.empty", buf, sizeof(buf)), 0);
	assert_int_equal(rlfs_listxattr(fs.mp, f, NULL, 0), 7 + 11);
	assert_int_equal(rlfs_listxattr(fs.mp, f, list, 3), -ERANGE);
	assert_int_equal(rlfs_listxattr(fs.mp, f, list, sizeof(list)), 18);
	assert_true(memmem(list, 18, "user.a\0", 7) != NULL);
	assert_true(memmem(list, 18, "user.empty\0", 11) != NULL);
	/* limits */
	memset(name, 'n', 299);
	memcpy(name, "user.", 5);
	name[256] = 0;
	assert_int_equal(rlfs_setxattr(fs.mp, f, name, "x", 1, 0), -ERANGE);
	name[255] = 0;
	assert_int_equal(rlfs_setxattr(fs.mp, f, name, "x", 1, 0), 0);
	assert_int_equal(rlfs_getxattr(fs.mp, f, name, buf, sizeof(buf)), 1);
	assert_int_equal(rlfs_removexattr(fs.mp, f, name), 0);
	assert_int_equal(rlfs_setxattr(fs.mp, f, "", "x", 1, 0), -ERANGE);
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.huge", val, 65537, 0), -E2BIG);
	/* namespaces as XFS: unknown ones are not supported */
	assert_int_equal(rlfs_setxattr(fs.mp, f, "bogus.x", "x", 1, 0), -EOPNOTSUPP);
	assert_int_equal(rlfs_getxattr(fs.mp, f, "bogus.x", buf, 4), -EOPNOTSUPP);
	assert_int_equal(rlfs_removexattr(fs.mp, f, "bogus.x"), -EOPNOTSUPP);
	assert_int_equal(rlfs_setxattr(fs.mp, f, "system.foo", "x", 1, 0), -EOPNOTSUPP);
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.", "x", 1, 0), -EINVAL);
	/* ACLs are checked (test_posix_acl); one without entries removes */
	static const uint8_t acl3[28] = { 2, 0, 0, 0, 1, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,
					  4, 0, 5, 0, 0xff, 0xff, 0xff, 0xff,
					  0x20, 0, 5, 0, 0xff, 0xff, 0xff, 0xff };
	assert_int_equal(rlfs_setxattr(fs.mp, d, "system.posix_acl_default", acl3, 28, 0), 0);
	assert_int_equal(rlfs_getxattr(fs.mp, d, "system.posix_acl_default", buf, 32), 28);
	assert_int_equal(rlfs_setxattr(fs.mp, d, "system.posix_acl_default", "\2\0\0\0", 4, 0),
			 0);
	assert_int_equal(rlfs_getxattr(fs.mp, d, "system.posix_acl_default", buf, 32), -ENODATA);
	assert_int_equal(rlfs_setxattr(fs.mp, d, "system.posix_acl_default", "\3\0\0\0", 4, 0),
			 -EINVAL);
	assert_int_equal(rlfs_setxattr(fs.mp, d, "system.posix_acl_default", acl3, 28, 0), 0);

	/* a directory lends the unused data-fork part of its inode to xattrs
	 * (512-byte inodes: 256 literal bytes, 128 by default for xattrs) */
	uint64_t d2 = mkdir_(&fs, r, "d2");
	struct space s2 = space_of(&fs);
	memset(val, 'v', 180);
	assert_int_equal(rlfs_setxattr(fs.mp, d2, "user.v", val, 180, 0), 0);
	assert_int_equal(rlfs_setxattr(fs.mp, d2, "user.w", "w", 1, 0), 0);
	assert_true(space_of(&fs).bfree == s2.bfree);   /* still inline */
	mkfile(&fs, d2, "child");                        /* dir tree + xattrs */
	tu_remount(&fs);
	assert_int_equal(rlfs_getxattr(fs.mp, d2, "user.v", buf, sizeof(buf)), 180);
	assert_memory_equal(buf, val, 180);
	assert_int_equal(st_of(&fs, d2, "child", NULL), 0);
	assert_int_equal(rlfs_unlink(fs.mp, d2, "child"), 0);
	assert_int_equal(rlfs_rmdir(fs.mp, r, "d2"), 0);

	/* spill into the btree: many attributes, values of every size class */
	for (unsigned i = 0; i < 200; i++) {
		size_t vl = (i * 37) % 300;
		snprintf(name, sizeof(name), "user.attr.%u", i);
		for (size_t k = 0; k < vl; k++)
			val[k] = (char)(i + k);
		assert_int_equal(rlfs_setxattr(fs.mp, f, name, val, vl, XATTR_CREATE), 0);
	}
	/* big values */
	for (unsigned i = 0; i < 65536; i++)
		val[i] = (char)(i * 7 + 1);
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.big", val, 65536, 0), 0);
	assert_int_equal(rlfs_setxattr(fs.mp, d, "user.big", val, 65536, 0), 0); /* inline -> btree */
	tu_remount(&fs);
	assert_int_equal(rlfs_getxattr(fs.mp, f, "user.big", buf, sizeof(buf)), 65536);
	assert_memory_equal(buf, val, 65536);
	assert_int_equal(rlfs_getxattr(fs.mp, d, "user.big", buf, sizeof(buf)), 65536);
	assert_memory_equal(buf, val, 65536);
	assert_int_equal(rlfs_getxattr(fs.mp, d, "system.posix_acl_default", buf, 32), 28);
	for (unsigned i = 0; i < 200; i++) {
		size_t vl = (i * 37) % 300;
		snprintf(name, sizeof(name), "user.attr.%u", i);
		assert_int_equal(rlfs_getxattr(fs.mp, f, name, buf, sizeof(buf)), (int)vl);
		for (size_t k = 0; k < vl; k++)
			assert_int_equal(buf[k], (char)(i + k));
	}
	assert_int_equal(rlfs_getxattr(fs.mp, f, "user.a", buf, sizeof(buf)), 2);
	/* replace big with small and small with big */
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.big", "tiny", 4, XATTR_REPLACE), 0);
	assert_int_equal(rlfs_getxattr(fs.mp, f, "user.big", buf, sizeof(buf)), 4);
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.a", val, 5000, XATTR_REPLACE), 0);
	assert_int_equal(rlfs_getxattr(fs.mp, f, "user.a", buf, sizeof(buf)), 5000);
	assert_memory_equal(buf, val, 5000);
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.a", val, 5000, XATTR_CREATE), -EEXIST);
	/* list */
	int total = rlfs_listxattr(fs.mp, f, NULL, 0);
	assert_true(total > 0);
	assert_int_equal(rlfs_listxattr(fs.mp, f, list, sizeof(list)), total);
	unsigned count = 0;
	for (int p = 0; p < total; p += (int)strlen(list + p) + 1)
		count++;
	assert_int_equal(count, 200 + 3);
	/* remove everything */
	for (unsigned i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "user.attr.%u", i);
		assert_int_equal(rlfs_removexattr(fs.mp, f, name), 0);
		assert_int_equal(rlfs_removexattr(fs.mp, f, name), -ENODATA);
	}
	assert_int_equal(rlfs_removexattr(fs.mp, f, "user.a"), 0);
	assert_int_equal(rlfs_removexattr(fs.mp, f, "user.big"), 0);
	assert_int_equal(rlfs_removexattr(fs.mp, f, "user.empty"), 0);
	assert_int_equal(rlfs_listxattr(fs.mp, f, list, sizeof(list)), 0);
	assert_int_equal(rlfs_removexattr(fs.mp, d, "user.big"), 0);
	/* files with xattrs freed by unlink/rmdir give the blocks back */
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.big2", val, 30000, 0), 0);
	for (unsigned i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "trusted.x%u", i);
		assert_int_equal(rlfs_setxattr(fs.mp, f, name, val, 100, 0), 0);
	}
	assert_int_equal(rlfs_unlink(fs.mp, r, "f"), 0);
	assert_int_equal(rlfs_rmdir(fs.mp, r, "d"), 0);
	assert_space_equal(space_of(&fs), before);
	tu_remount(&fs);
	assert_space_equal(space_of(&fs), before);
	finish(&fs);
}

static void test_xattr(void **state)
{
	xattr_suite(4096);
}

static void test_xattr_1k(void **state)
{
	xattr_suite(1024);
}

static void test_readdirplus(void **state)
{
	struct tu_fs fs;
	char name[32];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t d = mkdir_(&fs, root(&fs), "d");
	uint64_t inos[50];
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		inos[i] = mkfile(&fs, d, name);
	}
	struct collect c = { .limit = 7, .skip_dots = false };
	uint64_t cookie = 0;
	for (;;) {
		c.this_call = 0;
		assert_int_equal(rlfs_readdir(fs.mp, d, cookie, 1, collect_fn, &c), 0);
		if (!c.this_call)
			break;
		cookie = c.next;
	}
	assert_int_equal(c.n, 52);
	/* every entry got one lookup: forgetting it must be balanced */
	for (size_t i = 0; i < c.n; i++) {
		if (!strcmp(c.ents[i].name, "."))
			assert_int_equal(c.ents[i].ino, d);
		rlfs_forget(fs.mp, c.ents[i].ino, 1);
	}
	/* the entries can be removed and are freed right away */
	struct space s0 = space_of(&fs);
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		assert_int_equal(rlfs_unlink(fs.mp, d, name), 0);
	}
	/* exactly 50 inodes in use fewer; ffree grows by at least 50 (the
	 * directory blocks freed can only add to the inodes free space could
	 * hold, and a chunk freed gives back as many as it held) */
	struct space s1 = space_of(&fs);
	assert_int_equal(s1.files - s1.ffree, s0.files - s0.ffree - 50);
	assert_true(s1.ffree >= s0.ffree + 50);
	(void)inos;
	free(c.ents);
	finish(&fs);
}

static void test_flags(void **state)
{
	/* immutable/append flags are set through setattr in later issues; here
	 * we only check that a removed directory refuses new entries */
	struct tu_fs fs;
	struct stat st;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t r = root(&fs);
	assert_int_equal(rlfs_mkdir(fs.mp, r, "gone", 0755, 0, 0, &st), 0);
	uint64_t g = st.st_ino;
	assert_int_equal(rlfs_rmdir(fs.mp, r, "gone"), 0);
	assert_int_equal(rlfs_mknod(fs.mp, g, "x", S_IFREG | 0644, 0, 0, 0, &st), -ENOENT);
	struct collect c = { 0 };
	readdir_all(&fs, g, &c);
	assert_int_equal(c.n, 2);
	free(c.ents);
	rlfs_forget(fs.mp, g, 1);
	assert_int_equal(rlfs_lookup(fs.mp, g, ".", &st), -ENOENT);
	/* setgid directories pass their group on */
	assert_int_equal(rlfs_mkdir(fs.mp, r, "sg", 02775, 0, 1234, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	uint64_t sg = st.st_ino;
	assert_int_equal(rlfs_mkdir(fs.mp, sg, "child", 0755, 0, 99, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_int_equal(st.st_gid, 1234);
	assert_true(st.st_mode & S_ISGID);
	finish(&fs);
}


/*
 * Random namespace operations against an in-memory model: create, mkdir,
 * unlink, rmdir, link and rename (plain, NOREPLACE, EXCHANGE) among a few
 * directories and names; every result (errno included) and, regularly,
 * every directory listing and link count must match the model.
 */
#define M_MAXN 600
#define M_NAMES 6
struct mnode {
	bool used, dir;
	uint64_t ino;
	int parent;                 /* dirs */
	unsigned nlink;
	int ent[M_NAMES];           /* dirs: child node per name, -1 = none */
};
static struct mnode mn[M_MAXN];

static int m_new(bool dir, uint64_t ino, int parent)
{
	for (int i = 0; i < M_MAXN; i++) {
		if (mn[i].used)
			continue;
		memset(&mn[i], 0, sizeof(mn[i]));
		mn[i].used = true;
		mn[i].dir = dir;
		mn[i].ino = ino;
		mn[i].parent = parent;
		mn[i].nlink = dir ? 2 : 1;
		for (int k = 0; k < M_NAMES; k++)
			mn[i].ent[k] = -1;
		return i;
	}
	fail_msg("model full");
	return -1;
}

static bool m_empty(int d)
{
	for (int k = 0; k < M_NAMES; k++)
		if (mn[d].ent[k] >= 0)
			return false;
	return true;
}

/* is a equal to d or an ancestor of d */
static bool m_ancestor(int a, int d)
{
	for (int steps = 0; steps < M_MAXN; steps++) {
		if (d == a)
			return true;
		if (mn[d].parent == d)
			return false;
		d = mn[d].parent;
	}
	return false;
}

static int m_pick_dir(void)
{
	for (;;) {
		int i = (int)(tu_rand() % M_MAXN);
		if (mn[i].used && mn[i].dir)
			return i;
	}
}

static void m_drop(int n)
{
	if (--mn[n].nlink == 0 || (mn[n].dir && mn[n].nlink <= 1))
		mn[n].used = false;
}

static void m_verify(struct tu_fs *fs)
{
	for (int d = 0; d < M_MAXN; d++) {
		if (!mn[d].used || !mn[d].dir)
			continue;
		struct collect c = { .skip_dots = true };
		readdir_all(fs, mn[d].ino, &c);
		unsigned want = 0;
		for (int k = 0; k < M_NAMES; k++) {
			if (mn[d].ent[k] < 0)
				continue;
			want++;
			char name[16];
			struct stat st;
			snprintf(name, sizeof(name), "n%d", k);
			int ch = mn[d].ent[k];
			assert_int_equal(st_of(fs, mn[d].ino, name, &st), 0);
			assert_int_equal(st.st_ino, mn[ch].ino);
			assert_int_equal(st.st_nlink, mn[ch].nlink);
			assert_int_equal(S_ISDIR(st.st_mode), mn[ch].dir);
			bool found = false;
			for (size_t i = 0; i < c.n; i++)
				if (!strcmp(c.ents[i].name, name)) {
					assert_false(found);
					found = true;
					assert_int_equal(c.ents[i].ino, mn[ch].ino);
				}
			assert_true(found);
			if (mn[ch].dir) {
				assert_int_equal(st_of(fs, mn[ch].ino, "..", &st), 0);
				assert_int_equal(st.st_ino, mn[d].ino);
			}
		}
		assert_int_equal(c.n, want);
		free(c.ents);
	}
}

static void m_op(struct tu_fs *fs)
{
	struct stat st;
	int d = m_pick_dir(), k = (int)(tu_rand() % M_NAMES);
	char name[16], name2[16];
	snprintf(name, sizeof(name), "n%d", k);
	int ch = mn[d].ent[k];
	unsigned op = (unsigned)(tu_rand() % 100);
	int err, want, used = 0;
	for (int i = 0; i < M_MAXN; i++)
		used += mn[i].used;
	if (used > 250 && op < 35)
		op = 35 + op % 30; /* keep the tree small: no creates */

	if (op < 20) {                  /* create */
		err = rlfs_mknod(fs->mp, mn[d].ino, name, S_IFREG | 0600, 0, 0, 0, &st);
		assert_int_equal(err, ch >= 0 ? -EEXIST : 0);
		if (!err) {
			rlfs_forget(fs->mp, st.st_ino, 1);
			mn[d].ent[k] = m_new(false, st.st_ino, -1);
		}
	} else if (op < 35) {           /* mkdir */
		err = rlfs_mkdir(fs->mp, mn[d].ino, name, 0700, 0, 0, &st);
		assert_int_equal(err, ch >= 0 ? -EEXIST : 0);
		if (!err) {
			rlfs_forget(fs->mp, st.st_ino, 1);
			mn[d].ent[k] = m_new(true, st.st_ino, d);
			mn[d].nlink++;
		}
	} else if (op < 45) {           /* unlink */
		want = ch < 0 ? -ENOENT : mn[ch].dir ? -EISDIR : 0;
		assert_int_equal(rlfs_unlink(fs->mp, mn[d].ino, name), want);
		if (!want) {
			mn[d].ent[k] = -1;
			m_drop(ch);
		}
	} else if (op < 55) {           /* rmdir */
		want = ch < 0 ? -ENOENT : !mn[ch].dir ? -ENOTDIR : !m_empty(ch) ? -ENOTEMPTY : 0;
		assert_int_equal(rlfs_rmdir(fs->mp, mn[d].ino, name), want);
		if (!want) {
			mn[d].ent[k] = -1;
			mn[ch].used = false;
			mn[d].nlink--;
		}
	} else if (op < 65) {           /* link */
		int d2 = m_pick_dir(), k2 = (int)(tu_rand() % M_NAMES);
		snprintf(name2, sizeof(name2), "n%d", k2);
		if (ch < 0)
			return;
		want = mn[ch].dir ? -EPERM : mn[d2].ent[k2] >= 0 ? -EEXIST : 0;
		err = rlfs_link(fs->mp, mn[ch].ino, mn[d2].ino, name2, &st);
		assert_int_equal(err, want);
		if (!err) {
			rlfs_forget(fs->mp, st.st_ino, 1);
			mn[d2].ent[k2] = ch;
			mn[ch].nlink++;
		}
	} else {                        /* rename */
		int d2 = m_pick_dir(), k2 = (int)(tu_rand() % M_NAMES);
		snprintf(name2, sizeof(name2), "n%d", k2);
		int t = mn[d2].ent[k2];
		unsigned r = (unsigned)(tu_rand() % 4);
		unsigned flags = r == 1 ? RENAME_NOREPLACE : r == 2 ? RENAME_EXCHANGE : 0;
		bool xchg = flags == RENAME_EXCHANGE;
		if (ch < 0)
			want = -ENOENT;
		else if ((flags & RENAME_NOREPLACE) && t >= 0)
			want = -EEXIST;
		else if (xchg && t < 0)
			want = -ENOENT;
		else if (ch == t)
			want = 0;
		else if (d != d2 && mn[ch].dir && m_ancestor(ch, d2))
			want = -EINVAL;
		else if (d != d2 && t >= 0 && mn[t].dir && m_ancestor(t, d))
			want = xchg ? -EINVAL : -ENOTEMPTY;
		else if (t >= 0 && !xchg && mn[ch].dir && !mn[t].dir)
			want = -ENOTDIR;
		else if (t >= 0 && !xchg && !mn[ch].dir && mn[t].dir)
			want = -EISDIR;
		else if (t >= 0 && !xchg && mn[t].dir && !m_empty(t))
			want = -ENOTEMPTY;
		else
			want = 0;
		err = rlfs_rename(fs->mp, mn[d].ino, name, mn[d2].ino, name2, flags);
		if (err != want)
			fail_msg("rename d%d/%s -> d%d/%s flags %u: got %d want %d", d, name, d2,
				 name2, flags, err, want);
		if (err || ch == t)
			return;
		if (xchg) {
			mn[d].ent[k] = t;
			mn[d2].ent[k2] = ch;
			if (d != d2) {
				if (mn[ch].dir) {
					mn[ch].parent = d2;
					mn[d].nlink--;
					mn[d2].nlink++;
				}
				if (mn[t].dir) {
					mn[t].parent = d;
					mn[d2].nlink--;
					mn[d].nlink++;
				}
			}
			return;
		}
		mn[d].ent[k] = -1;
		mn[d2].ent[k2] = ch;
		if (t >= 0) {
			if (mn[t].dir) {
				mn[t].used = false;
				mn[d2].nlink--;
			} else {
				m_drop(t);
			}
		}
		if (mn[ch].dir) {
			mn[ch].parent = d2;
			mn[d].nlink--;
			mn[d2].nlink++;
		}
	}
}

static void m_rm_tree(struct tu_fs *fs, int d)
{
	for (int k = 0; k < M_NAMES; k++) {
		int ch = mn[d].ent[k];
		char name[16];
		if (ch < 0)
			continue;
		snprintf(name, sizeof(name), "n%d", k);
		if (mn[ch].dir) {
			m_rm_tree(fs, ch);
			assert_int_equal(rlfs_rmdir(fs->mp, mn[d].ino, name), 0);
		} else {
			assert_int_equal(rlfs_unlink(fs->mp, mn[d].ino, name), 0);
		}
		mn[d].ent[k] = -1;
	}
}

static void test_random_namespace(void **state)
{
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	struct space before = space_of(&fs);
	memset(mn, 0, sizeof(mn));
	int r = m_new(true, root(&fs), 0);
	mn[r].parent = r;
	/* a few fixed subdirectories so that cross-directory ops are common */
	for (int i = 0; i < 3; i++) {
		char name[16];
		struct stat st;
		snprintf(name, sizeof(name), "n%d", i);
		assert_int_equal(rlfs_mkdir(fs.mp, root(&fs), name, 0755, 0, 0, &st), 0);
		rlfs_forget(fs.mp, st.st_ino, 1);
		mn[r].ent[i] = m_new(true, st.st_ino, r);
		mn[r].nlink++;
	}
	for (int i = 0; i < 6000; i++) {
		m_op(&fs);
		if (i % 500 == 499)
			m_verify(&fs);
		if (i % 2000 == 1999) {
			tu_remount(&fs);
			m_verify(&fs);
		}
	}
	m_verify(&fs);
	m_rm_tree(&fs, r);
	struct stat st;
	assert_int_equal(st_of(&fs, root(&fs), ".", &st), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_space_equal(space_of(&fs), before);
	finish(&fs);
}

/* Threads doing creates, renames and unlinks across shared directories:
 * no deadlock, no corruption (fsck), every name accounted for. */
struct thr_arg {
	struct tu_fs *fs;
	uint64_t dirs[3];
	int id;
	uint64_t seed;
};

static void *thr_main(void *p)
{
	struct thr_arg *a = p;
	uint64_t x = a->seed;
	char n1[32], n2[32];
	struct stat st;
	for (int i = 0; i < 1500; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t d1 = a->dirs[x % 3], d2 = a->dirs[(x >> 8) % 3];
		snprintf(n1, sizeof(n1), "t%d-%u", a->id, (unsigned)((x >> 16) % 20));
		snprintf(n2, sizeof(n2), "t%d-%u", (int)((x >> 24) % 4), (unsigned)((x >> 32) % 20));
		switch ((x >> 40) % 6) {
		case 0:
		case 1:
			if (rlfs_mknod(a->fs->mp, d1, n1, S_IFREG | 0600, 0, 0, 0, &st) == 0)
				rlfs_forget(a->fs->mp, st.st_ino, 1);
			break;
		case 2:
			rlfs_unlink(a->fs->mp, d1, n1);
			break;
		case 3:
			rlfs_rename(a->fs->mp, d1, n1, d2, n2, 0);
			break;
		case 4:
			rlfs_rename(a->fs->mp, d2, n2, d1, n1, RENAME_EXCHANGE);
			break;
		case 5: {
			struct collect c = { .skip_dots = true };
			readdir_all(a->fs, d1, &c);
			free(c.ents);
			break;
		}
		}
	}
	return NULL;
}

static void test_parallel(void **state)
{
	struct tu_fs fs;
	pthread_t th[4];
	struct thr_arg args[4];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	struct space before = space_of(&fs);
	uint64_t dirs[3];
	dirs[0] = mkdir_(&fs, root(&fs), "p0");
	dirs[1] = mkdir_(&fs, root(&fs), "p1");
	dirs[2] = mkdir_(&fs, dirs[0], "p2");
	for (int i = 0; i < 4; i++) {
		args[i].fs = &fs;
		memcpy(args[i].dirs, dirs, sizeof(dirs));
		args[i].id = i;
		args[i].seed = 0x1234567ull * (uint64_t)(i + 1);
		assert_int_equal(pthread_create(&th[i], NULL, thr_main, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	/* empty every directory (entries are files only) */
	for (int i = 2; i >= 0; i--) {
		struct collect c = { .skip_dots = true };
		readdir_all(&fs, dirs[i], &c);
		for (size_t k = 0; k < c.n; k++) {
			if (c.ents[k].type == S_IFDIR)
				continue;
			assert_int_equal(rlfs_unlink(fs.mp, dirs[i], c.ents[k].name), 0);
		}
		free(c.ents);
	}
	assert_int_equal(rlfs_rmdir(fs.mp, dirs[0], "p2"), 0);
	assert_int_equal(rlfs_rmdir(fs.mp, root(&fs), "p1"), 0);
	assert_int_equal(rlfs_rmdir(fs.mp, root(&fs), "p0"), 0);
	assert_space_equal(space_of(&fs), before);
	finish(&fs);
}

/* Set RLFS_DIFLAG_* directly (chattr has no public API yet). */
static void set_diflags(struct tu_fs *fs, uint64_t ino, uint32_t flags)
{
	struct rlfs_inode *ip;
	struct rlfs_trans *tp;
	assert_int_equal(rlfs_iget(fs->mp, ino, &ip), 0);
	pthread_rwlock_wrlock(&ip->iolock);
	assert_int_equal(rlfs_trans_alloc(fs->mp, &fs->mp->resv.tr_fsck, 0, 0, &tp), 0);
	rlfs_trans_log_inode(tp, ip);
	ip->flags = flags;
	assert_int_equal(rlfs_trans_commit(tp), 0);
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
}

static void test_immutable_append(void **state)
{
	struct tu_fs fs;
	struct stat st;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t r = root(&fs);
	uint64_t d = mkdir_(&fs, r, "d");
	uint64_t f = mkfile(&fs, d, "f");
	mkfile(&fs, r, "other");

	set_diflags(&fs, d, RLFS_DIFLAG_IMMUTABLE);
	assert_int_equal(rlfs_mknod(fs.mp, d, "new", S_IFREG | 0644, 0, 0, 0, &st), -EPERM);
	assert_int_equal(rlfs_unlink(fs.mp, d, "f"), -EPERM);
	assert_int_equal(rlfs_rename(fs.mp, d, "f", r, "moved", 0), -EPERM);
	assert_int_equal(rlfs_rename(fs.mp, r, "other", d, "in", 0), -EPERM);
	assert_int_equal(rlfs_link(fs.mp, f, d, "l", &st), -EPERM);
	assert_int_equal(rlfs_setxattr(fs.mp, d, "user.x", "1", 1, 0), -EPERM);

	set_diflags(&fs, d, RLFS_DIFLAG_APPEND);
	assert_int_equal(rlfs_mknod(fs.mp, d, "new", S_IFREG | 0644, 0, 0, 0, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_int_equal(rlfs_unlink(fs.mp, d, "new"), -EPERM);
	assert_int_equal(rlfs_rename(fs.mp, d, "new", d, "new2", 0), -EPERM);
	assert_int_equal(rlfs_rename(fs.mp, r, "other", d, "in", 0), 0);
	/* the victim of may_delete() may not be append-only either */
	assert_int_equal(rlfs_rename(fs.mp, r, "d", r, "d2", 0), -EPERM);
	assert_int_equal(rlfs_rmdir(fs.mp, r, "d"), -EPERM);
	set_diflags(&fs, d, 0);

	set_diflags(&fs, f, RLFS_DIFLAG_IMMUTABLE);
	assert_int_equal(rlfs_unlink(fs.mp, d, "f"), -EPERM);
	assert_int_equal(rlfs_link(fs.mp, f, r, "l", &st), -EPERM);
	assert_int_equal(rlfs_rename(fs.mp, d, "f", d, "g", 0), -EPERM);
	assert_int_equal(rlfs_rename(fs.mp, d, "new", d, "f", 0), -EPERM);
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.x", "1", 1, 0), -EPERM);
	assert_int_equal(rlfs_removexattr(fs.mp, f, "user.x"), -EPERM);
	set_diflags(&fs, f, RLFS_DIFLAG_APPEND);
	assert_int_equal(rlfs_unlink(fs.mp, d, "f"), -EPERM);
	set_diflags(&fs, f, 0);
	assert_int_equal(rlfs_unlink(fs.mp, d, "f"), 0);
	assert_int_equal(rlfs_unlink(fs.mp, d, "new"), 0);
	assert_int_equal(rlfs_unlink(fs.mp, d, "in"), 0);
	assert_int_equal(rlfs_rmdir(fs.mp, r, "d"), 0);
	finish(&fs);
}

/* Inode flags and hints (lib/fileattr.c): the rules the library applies
 * itself, which on a mount the kernel checks first as well (so only here
 * can they be seen to fail). */
static void test_fileattr(void **state)
{
	struct tu_fs fs;
	struct rlfs_fileattr fa, got;
	char buf[16];
	(void)state;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t r = root(&fs);
	uint64_t d = mkdir_(&fs, r, "d");
	uint64_t f = mkfile(&fs, r, "f");
	const unsigned cap = RLFS_FA_CAP_LINUX_IMMUTABLE;

	/* IMMUTABLE and APPEND change only with CAP_LINUX_IMMUTABLE */
	fa = (struct rlfs_fileattr){ .xflags = FS_XFLAG_IMMUTABLE };
	assert_int_equal(rlfs_fileattr_set(fs.mp, f, &fa, RLFS_FA_FLAGS_ONLY), -EPERM);
	fa.xflags = FS_XFLAG_APPEND;
	assert_int_equal(rlfs_fileattr_set(fs.mp, f, &fa, RLFS_FA_FLAGS_ONLY), -EPERM);
	fa.xflags = FS_XFLAG_NODUMP;
	assert_int_equal(rlfs_fileattr_set(fs.mp, f, &fa, RLFS_FA_FLAGS_ONLY), 0);
	fa.xflags = FS_XFLAG_IMMUTABLE | FS_XFLAG_NODUMP;
	assert_int_equal(rlfs_fileattr_set(fs.mp, f, &fa, RLFS_FA_FLAGS_ONLY | cap), 0);
	assert_int_equal(rlfs_fileattr_get(fs.mp, f, &got), 0);
	assert_int_equal(got.xflags, FS_XFLAG_IMMUTABLE | FS_XFLAG_NODUMP);
	/* immutable: no writes; others flags still change without the cap */
	assert_int_equal(rlfs_write(fs.mp, f, "x", 1, 0), -EPERM);
	fa.xflags = FS_XFLAG_IMMUTABLE;
	assert_int_equal(rlfs_fileattr_set(fs.mp, f, &fa, RLFS_FA_FLAGS_ONLY), 0);
	fa.xflags = 0;
	assert_int_equal(rlfs_fileattr_set(fs.mp, f, &fa, RLFS_FA_FLAGS_ONLY), -EPERM);
	assert_int_equal(rlfs_fileattr_set(fs.mp, f, &fa, RLFS_FA_FLAGS_ONLY | cap), 0);
	/* flags not stored */
	fa.xflags = FS_XFLAG_SYNC;
	assert_int_equal(rlfs_fileattr_set(fs.mp, f, &fa, 0), -EOPNOTSUPP);
	fa = (struct rlfs_fileattr){ .projid = 1 };
	assert_int_equal(rlfs_fileattr_set(fs.mp, f, &fa, 0), -EOPNOTSUPP);

	/* append-only: writes at the end, and a rewrite of unchanged bytes
	 * below it (the writeback cache's whole pages); nothing else */
	assert_int_equal(rlfs_write(fs.mp, f, "0123456789", 10, 0), 10);
	fa = (struct rlfs_fileattr){ .xflags = FS_XFLAG_APPEND };
	assert_int_equal(rlfs_fileattr_set(fs.mp, f, &fa, cap), 0);
	assert_int_equal(rlfs_write(fs.mp, f, "X", 1, 0), -EPERM);
	assert_int_equal(rlfs_write(fs.mp, f, "ab", 2, 11), -EPERM);
	assert_int_equal(rlfs_write(fs.mp, f, "ab", 2, 10), 2);
	assert_int_equal(rlfs_write(fs.mp, f, "89abcd", 6, 8), 6);
	assert_int_equal(rlfs_write(fs.mp, f, "89abXY", 6, 8), -EPERM);
	assert_int_equal(rlfs_read(fs.mp, f, buf, sizeof(buf), 0), 14);
	assert_memory_equal(buf, "0123456789abcd", 14);
	fa.xflags = 0;
	assert_int_equal(rlfs_fileattr_set(fs.mp, f, &fa, cap), 0);

	/* hints: XFS's validation */
	const uint32_t bs = fs.mp->blocksize;
	fa = (struct rlfs_fileattr){ .xflags = FS_XFLAG_EXTSIZE, .extsize_bytes = 4 * bs };
	assert_int_equal(rlfs_fileattr_set(fs.mp, f, &fa, 0), -EINVAL);    /* has extents */
	uint64_t g = mkfile(&fs, r, "g");
	fa.extsize_bytes = 4 * bs + 1;
	assert_int_equal(rlfs_fileattr_set(fs.mp, g, &fa, 0), -EINVAL);
	fa.extsize_bytes = (fs.mp->agblocks / 2 + 1) * bs;
	assert_int_equal(rlfs_fileattr_set(fs.mp, g, &fa, 0), -EINVAL);
	fa = (struct rlfs_fileattr){ .extsize_bytes = 4 * bs };            /* no flag */
	assert_int_equal(rlfs_fileattr_set(fs.mp, g, &fa, 0), -EINVAL);
	fa.xflags = FS_XFLAG_EXTSZINHERIT;
	assert_int_equal(rlfs_fileattr_set(fs.mp, g, &fa, 0), -EINVAL);
	assert_int_equal(rlfs_fileattr_set(fs.mp, d, &fa, 0), 0);
	fa.xflags = FS_XFLAG_EXTSIZE;
	assert_int_equal(rlfs_fileattr_set(fs.mp, d, &fa, 0), -EINVAL);
	assert_int_equal(rlfs_fileattr_set(fs.mp, g, &fa, 0), 0);
	fa = (struct rlfs_fileattr){ .xflags = FS_XFLAG_COWEXTSIZE, .cowextsize_bytes = bs / 2 };
	assert_int_equal(rlfs_fileattr_set(fs.mp, d, &fa, 0), -EINVAL);
	fa = (struct rlfs_fileattr){ .xflags = FS_XFLAG_COWEXTSIZE | FS_XFLAG_EXTSZINHERIT |
					       FS_XFLAG_NOATIME,
				     .extsize_bytes = 4 * bs, .cowextsize_bytes = 64 * bs };
	assert_int_equal(rlfs_fileattr_set(fs.mp, d, &fa, 0), 0);
	/* a zero hint clears its flag */
	fa = (struct rlfs_fileattr){ .xflags = FS_XFLAG_COWEXTSIZE };
	assert_int_equal(rlfs_fileattr_set(fs.mp, g, &fa, 0), 0);
	assert_int_equal(rlfs_fileattr_get(fs.mp, g, &got), 0);
	assert_int_equal(got.xflags, 0);
	assert_int_equal(got.cowextsize_bytes, 0);

	/* inheritance: EXTSIZE to files, EXTSZINHERIT to directories, the
	 * CoW hint and NOATIME to both; then it all persists */
	uint64_t c = mkfile(&fs, d, "c");
	uint64_t sd = mkdir_(&fs, d, "sd");
	tu_remount(&fs);
	assert_int_equal(rlfs_fileattr_get(fs.mp, c, &got), 0);
	assert_int_equal(got.xflags, FS_XFLAG_EXTSIZE | FS_XFLAG_COWEXTSIZE | FS_XFLAG_NOATIME);
	assert_int_equal(got.extsize_bytes, 4 * bs);
	assert_int_equal(got.cowextsize_bytes, 64 * bs);
	assert_int_equal(rlfs_fileattr_get(fs.mp, sd, &got), 0);
	assert_int_equal(got.xflags, FS_XFLAG_EXTSZINHERIT | FS_XFLAG_COWEXTSIZE |
					     FS_XFLAG_NOATIME);
	assert_int_equal(got.extsize_bytes, 4 * bs);
	struct rlfs_inode *ip;
	assert_int_equal(rlfs_iget(fs.mp, c, &ip), 0);
	assert_int_equal(rlfs_cowextsize_hint_blocks(ip), 64);
	rlfs_irele(ip);
	assert_int_equal(rlfs_iget(fs.mp, g, &ip), 0);
	assert_int_equal(rlfs_cowextsize_hint_blocks(ip), RLFS_DEFAULT_COWEXTSIZE_BLOCKS);
	rlfs_irele(ip);
	finish(&fs);
}

static bool ts_after(struct timespec a, struct timespec b)
{
	return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

static void pause_ms(void)
{
	struct timespec t = { 0, 2 * 1000 * 1000 };
	nanosleep(&t, NULL);
}

static void test_timestamps(void **state)
{
	struct tu_fs fs;
	struct stat d0, d1, f0, f1, e0;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t r = root(&fs);
	uint64_t d = mkdir_(&fs, r, "d");
	uint64_t e = mkdir_(&fs, r, "e");
	(void)e;
	assert_int_equal(st_of(&fs, d, ".", &d0), 0);
	pause_ms();
	uint64_t f = mkfile(&fs, d, "f");
	assert_int_equal(st_of(&fs, d, ".", &d1), 0);
	assert_true(ts_after(d1.st_mtim, d0.st_mtim));
	assert_true(ts_after(d1.st_ctim, d0.st_ctim));
	assert_int_equal(st_of(&fs, d, "f", &f0), 0);
	pause_ms();
	struct stat st;
	assert_int_equal(rlfs_link(fs.mp, f, r, "fl", &st), 0);
	rlfs_forget(fs.mp, f, 1);
	assert_true(ts_after(st.st_ctim, f0.st_ctim));          /* link: ctime */
	assert_true(st.st_mtim.tv_sec == f0.st_mtim.tv_sec &&
		    st.st_mtim.tv_nsec == f0.st_mtim.tv_nsec);     /* not mtime */
	assert_int_equal(st_of(&fs, e, ".", &e0), 0);
	struct stat fpre;                                       /* f just before the rename */
	assert_int_equal(st_of(&fs, d, "f", &fpre), 0);
	pause_ms();
	assert_int_equal(rlfs_rename(fs.mp, d, "f", e, "g", 0), 0);
	assert_int_equal(st_of(&fs, e, ".", &st), 0);
	assert_true(ts_after(st.st_mtim, e0.st_mtim));
	assert_int_equal(st_of(&fs, e, "g", &f1), 0);
	assert_true(ts_after(f1.st_ctim, fpre.st_ctim));        /* rename: the file's ctime */
	pause_ms();
	assert_int_equal(rlfs_unlink(fs.mp, r, "fl"), 0);
	assert_int_equal(st_of(&fs, e, "g", &st), 0);
	assert_true(ts_after(st.st_ctim, f1.st_ctim));           /* lost a link */
	assert_int_equal(st.st_nlink, 1);
	finish(&fs);
}

/* A directory entry pointing at a free inode: -EUCLEAN, never a crash or
 * a hang; the rest of the directory stays usable. */
static void test_bad_entry(void **state)
{
	struct tu_fs fs;
	struct stat st;
	struct rlfs_inode *dp;
	struct rlfs_trans *tp;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t r = root(&fs);
	uint64_t d = mkdir_(&fs, r, "d");
	uint64_t f = mkfile(&fs, d, "good");
	uint64_t bogus = f + 7; /* same chunk, never allocated */
	assert_int_equal(rlfs_iget(fs.mp, d, &dp), 0);
	pthread_rwlock_wrlock(&dp->iolock);
	assert_int_equal(rlfs_trans_alloc(fs.mp, &fs.mp->resv.tr_fsck, rlfs_dir_res(dp), 0, &tp), 0);
	assert_int_equal(rlfs_dir_add(tp, dp, "bad", 3, bogus, RLFS_FT_REG), 0);
	assert_int_equal(rlfs_dir_add(tp, dp, "bad", 3, bogus, RLFS_FT_REG), -EEXIST);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	pthread_rwlock_unlock(&dp->iolock);

	assert_int_equal(rlfs_lookup(fs.mp, d, "bad", &st), -EUCLEAN);
	assert_int_equal(rlfs_unlink(fs.mp, d, "bad"), -EUCLEAN);
	assert_int_equal(rlfs_rename(fs.mp, d, "bad", d, "x", 0), -EUCLEAN);
	assert_int_equal(rlfs_rename(fs.mp, d, "good", d, "bad", 0), -EUCLEAN);
	struct collect c = { .skip_dots = true };
	readdir_all(&fs, d, &c);
	assert_int_equal(c.n, 2);
	free(c.ents);
	c = (struct collect){ .skip_dots = true };
	assert_int_equal(rlfs_readdir(fs.mp, d, 2, 1, collect_fn, &c), -EUCLEAN);
	free(c.ents);
	assert_int_equal(st_of(&fs, d, "good", &st), 0);
	assert_int_equal(st.st_ino, f);

	/* take the bad entry out again (what repair would do) */
	pthread_rwlock_wrlock(&dp->iolock);
	assert_int_equal(rlfs_trans_alloc(fs.mp, &fs.mp->resv.tr_fsck, rlfs_dir_res(dp), 0, &tp), 0);
	uint64_t got;
	assert_int_equal(rlfs_dir_remove(tp, dp, "bad", 3, &got), 0);
	assert_int_equal(got, bogus);
	assert_int_equal(rlfs_dir_remove(tp, dp, "bad", 3, &got), -ENOENT);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	pthread_rwlock_unlock(&dp->iolock);
	rlfs_irele(dp);
	assert_int_equal(rlfs_unlink(fs.mp, d, "good"), 0);
	assert_int_equal(rlfs_rmdir(fs.mp, r, "d"), 0);
	/* the superblock records the corruption met above (until an fsck
	 * clears it); the filesystem itself checks clean again */
	assert_true(fs.mp->err.flags & RLFS_SB_ERR_CORRUPT);
	finish(&fs);
}

/* Random xattr set/replace/remove with sizes across every form (inline,
 * btree record, remote runs) on a file and a directory, against a model;
 * remounts in between; finally all removed and every block back. */
#define X_NAMES 40
struct xmodel {
	bool present;
	size_t len;
	uint8_t seed;
};

static size_t x_len(void)
{
	switch (tu_rand() % 6) {
	case 0: return 0;
	case 1: return tu_rand() % 16;
	case 2: return 16 + tu_rand() % 80;
	case 3: return 60 + tu_rand() % 10;          /* around the 64-byte edge */
	case 4: return 100 + tu_rand() % 5000;
	default: return tu_rand() % 65537;
	}
}

static void x_fill(uint8_t *v, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		v[i] = (uint8_t)(seed + i * 31 + (i >> 8));
}

static void x_verify(struct tu_fs *fs, uint64_t ino, struct xmodel *m)
{
	static uint8_t buf[65536], want[65536];
	char name[64], list[X_NAMES * 64];
	int total = rlfs_listxattr(fs->mp, ino, list, sizeof(list));
	assert_true(total >= 0);
	unsigned listed = 0;
	for (int p = 0; p < total; p += (int)strlen(list + p) + 1)
		listed++;
	unsigned present = 0;
	for (int i = 0; i < X_NAMES; i++) {
		snprintf(name, sizeof(name), "user.x%d%s", i, i % 3 ? "" : ".with-a-longer-name");
		int n = rlfs_getxattr(fs->mp, ino, name, buf, sizeof(buf));
		if (!m[i].present) {
			assert_int_equal(n, -ENODATA);
			continue;
		}
		present++;
		assert_int_equal(n, (int)m[i].len);
		x_fill(want, m[i].len, m[i].seed);
		assert_memory_equal(buf, want, m[i].len);
	}
	assert_int_equal(listed, present);
}

static void x_run(struct tu_fs *fs, uint64_t ino, struct xmodel *m, int ops)
{
	static uint8_t val[65536];
	char name[64];
	for (int k = 0; k < ops; k++) {
		int i = (int)(tu_rand() % X_NAMES);
		snprintf(name, sizeof(name), "user.x%d%s", i, i % 3 ? "" : ".with-a-longer-name");
		unsigned op = (unsigned)(tu_rand() % 10);
		if (op < 3) {
			int want = m[i].present ? 0 : -ENODATA;
			assert_int_equal(rlfs_removexattr(fs->mp, ino, name), want);
			m[i].present = false;
			continue;
		}
		size_t len = x_len();
		uint8_t seed = (uint8_t)tu_rand();
		int flags = op == 3 ? XATTR_CREATE : op == 4 ? XATTR_REPLACE : 0;
		int want = (flags == XATTR_CREATE && m[i].present) ? -EEXIST :
			   (flags == XATTR_REPLACE && !m[i].present) ? -ENODATA : 0;
		x_fill(val, len, seed);
		assert_int_equal(rlfs_setxattr(fs->mp, ino, name, val, len, flags), want);
		if (!want) {
			m[i].present = true;
			m[i].len = len;
			m[i].seed = seed;
		}
	}
}

static void test_xattr_random(void **state)
{
	struct tu_fs fs;
	static struct xmodel mf[X_NAMES], md[X_NAMES];
	char name[64];
	tu_mkfs_mount(&fs, 128 * MiB, 0, 0);
	uint64_t r = root(&fs);
	struct space before = space_of(&fs);
	uint64_t f = mkfile(&fs, r, "f");
	uint64_t d = mkdir_(&fs, r, "d");
	memset(mf, 0, sizeof(mf));
	memset(md, 0, sizeof(md));
	for (int round = 0; round < 6; round++) {
		x_run(&fs, f, mf, 150);
		x_run(&fs, d, md, 150);
		x_verify(&fs, f, mf);
		x_verify(&fs, d, md);
		if (round % 2)
			tu_remount(&fs);
	}
	for (int i = 0; i < X_NAMES; i++) {
		snprintf(name, sizeof(name), "user.x%d%s", i, i % 3 ? "" : ".with-a-longer-name");
		if (mf[i].present)
			assert_int_equal(rlfs_removexattr(fs.mp, f, name), 0);
		if (md[i].present)
			assert_int_equal(rlfs_removexattr(fs.mp, d, name), 0);
		mf[i].present = md[i].present = false;
	}
	assert_int_equal(rlfs_listxattr(fs.mp, f, NULL, 0), 0);
	assert_int_equal(rlfs_listxattr(fs.mp, d, NULL, 0), 0);
	struct stat st;
	assert_int_equal(st_of(&fs, r, "f", &st), 0);
	assert_int_equal(st.st_blocks, 0);
	assert_int_equal(st_of(&fs, r, "d", &st), 0);
	assert_int_equal(st.st_blocks, 0);
	/* and once more with attributes left for unlink/rmdir to free */
	x_run(&fs, f, mf, 100);
	x_run(&fs, d, md, 100);
	assert_int_equal(rlfs_unlink(fs.mp, r, "f"), 0);
	assert_int_equal(rlfs_rmdir(fs.mp, r, "d"), 0);
	assert_space_equal(space_of(&fs), before);
	finish(&fs);
}

/* Overwrite one byte of the first record of a dir's root leaf through the
 * buffer cache (so the block crc stays valid: only the record checks can
 * notice). */
static void poke_dir_rec(struct tu_fs *fs, uint64_t d, size_t off, uint8_t val)
{
	struct rlfs_inode *dp;
	struct rlfs_trans *tp;
	struct rlfs_buf *bp;
	assert_int_equal(rlfs_iget(fs->mp, d, &dp), 0);
	pthread_rwlock_wrlock(&dp->iolock);
	assert_int_equal(dp->root_level, 1);
	assert_int_equal(rlfs_trans_alloc(fs->mp, &fs->mp->resv.tr_fsck, 0, 0, &tp), 0);
	assert_int_equal(rlfs_trans_read_buf(tp, dp->root, &rlfs_dirbt_buf_ops, d, &bp), 0);
	((uint8_t *)bp->data)[sizeof(struct rlfs_btree_block) + off] = val;
	rlfs_trans_log_buf(tp, bp);
	rlfs_trans_brelse(tp, bp);
	assert_int_equal(rlfs_trans_commit(tp), 0);
	pthread_rwlock_unlock(&dp->iolock);
	rlfs_irele(dp);
}

static void test_corrupt_records(void **state)
{
	struct tu_fs fs;
	struct stat st;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t r = root(&fs);
	uint64_t d1 = mkdir_(&fs, r, "d1");
	uint64_t d2 = mkdir_(&fs, r, "d2");
	mkfile(&fs, d1, "victim");
	mkfile(&fs, d2, "victim");
	poke_dir_rec(&fs, d1, offsetof(struct rlfs_dir_rec, ftype), 99);
	poke_dir_rec(&fs, d2, offsetof(struct rlfs_dir_rec, name), 'V'); /* hash mismatch */
	for (int pass = 0; pass < 2; pass++) {
		uint64_t ds[2] = { d1, d2 };
		for (int i = 0; i < 2; i++) {
			struct collect c = { .skip_dots = true };
			assert_int_equal(rlfs_lookup(fs.mp, ds[i], i ? "Victim" : "victim", &st),
					 -EUCLEAN);
			assert_int_equal(rlfs_unlink(fs.mp, ds[i], i ? "Victim" : "victim"),
					 -EUCLEAN);
			assert_int_equal(rlfs_mknod(fs.mp, ds[i], "victim", S_IFREG | 0644, 0, 0, 0,
						    &st), -EUCLEAN);
			assert_int_equal(rlfs_readdir(fs.mp, ds[i], 2, 0, collect_fn, &c), -EUCLEAN);
			free(c.ents);
			assert_int_equal(rlfs_rmdir(fs.mp, r, i ? "d2" : "d1"), -EUCLEAN);
		}
		tu_remount(&fs);    /* and again from the device */
	}
	/* fsck -n must find the damage and leave it (exit 4: errors left) */
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	assert_int_equal(tu_fsck(fs.path, 4), 4);
	tu_unmount(&fs);
}


/* ---- RENAME_WHITEOUT, O_TMPFILE, POSIX ACLs, extent-map checks ---- */

#ifndef RENAME_WHITEOUT
#define RENAME_WHITEOUT (1 << 2)
#endif

static void test_whiteout(void **state)
{
	struct tu_fs fs;
	struct stat st;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t r = root(&fs);
	uint64_t d = mkdir_(&fs, r, "d");
	uint64_t f = mkfile(&fs, d, "f");
	mkfile(&fs, d, "g");
	assert_int_equal(rlfs_rename2(fs.mp, d, "f", d, "g", RENAME_WHITEOUT | RENAME_EXCHANGE,
				      1000, 1000), -EINVAL);
	/* over an existing name: g is f now, f a whiteout of the caller */
	assert_int_equal(rlfs_rename2(fs.mp, d, "f", d, "g", RENAME_WHITEOUT, 1000, 1001), 0);
	assert_int_equal(st_of(&fs, d, "g", &st), 0);
	assert_int_equal(st.st_ino, f);
	assert_int_equal(st_of(&fs, d, "f", &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0);
	assert_int_equal(st.st_rdev, 0);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_gid, 1001);
	/* a directory across directories; a setgid source dir gives its group */
	uint64_t sub = mkdir_(&fs, d, "sub");
	struct stat sg = { .st_mode = S_ISGID | 0777, .st_gid = 55 };
	assert_int_equal(rlfs_setattr(fs.mp, d, &sg, RLFS_SET_MODE | RLFS_SET_GID, NULL), 0);
	assert_int_equal(nlink_of(&fs, r, "d"), 3);
	assert_int_equal(rlfs_rename2(fs.mp, d, "sub", r, "moved", RENAME_WHITEOUT, 7, 8), 0);
	assert_int_equal(st_of(&fs, r, "moved", &st), 0);
	assert_int_equal(st.st_ino, sub);
	assert_int_equal(st_of(&fs, d, "sub", &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(st.st_uid, 7);
	assert_int_equal(st.st_gid, 55);
	assert_int_equal(nlink_of(&fs, r, "d"), 2);
	/* the whiteout can be removed like any device node */
	assert_int_equal(rlfs_unlink(fs.mp, d, "sub"), 0);
	assert_int_equal(rlfs_unlink(fs.mp, d, "f"), 0);
	tu_remount(&fs);
	finish(&fs);
}

static void test_tmpfile(void **state)
{
	struct tu_fs fs;
	struct stat st, st2;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t r = root(&fs);
	struct space before = space_of(&fs);
	uint64_t d = mkdir_(&fs, r, "d");
	assert_int_equal(rlfs_getattr(fs.mp, d, &st2), 0);
	assert_int_equal(rlfs_tmpfile(fs.mp, d, 0666, 3, 4, 022, &st), 0);
	assert_int_equal(st.st_nlink, 0);
	assert_int_equal(st.st_mode, S_IFREG | 0644);
	assert_int_equal(st.st_uid, 3);
	uint64_t t = st.st_ino;
	char buf[8192];
	memset(buf, 't', sizeof(buf));
	assert_int_equal(rlfs_write(fs.mp, t, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	/* no entry, directory unchanged */
	struct collect c = { .skip_dots = true };
	readdir_all(&fs, d, &c);
	assert_int_equal(c.n, 0);
	free(c.ents);
	assert_int_equal(rlfs_getattr(fs.mp, d, &st), 0);
	assert_int_equal(st.st_mtim.tv_nsec, st2.st_mtim.tv_nsec);
	assert_int_equal(st.st_mtim.tv_sec, st2.st_mtim.tv_sec);
	/* linked once: a normal file, which then cannot come back once unlinked */
	assert_int_equal(rlfs_link(fs.mp, t, d, "named", &st), 0);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(rlfs_unlink(fs.mp, d, "named"), 0);
	assert_int_equal(rlfs_link(fs.mp, t, d, "again", &st), -ENOENT);
	rlfs_forget(fs.mp, t, 2);
	assert_int_equal(rlfs_getattr(fs.mp, t, &st), -ENOENT);
	/* an unlinked regular file cannot be linked either */
	uint64_t u;
	assert_int_equal(rlfs_mknod(fs.mp, d, "u", S_IFREG | 0600, 0, 0, 0, &st), 0);
	u = st.st_ino;
	assert_int_equal(rlfs_unlink(fs.mp, d, "u"), 0);
	assert_int_equal(rlfs_link(fs.mp, u, d, "u2", &st), -ENOENT);
	rlfs_forget(fs.mp, u, 1);
	/* forgotten without a name: freed; still held at unmount: freed too */
	assert_int_equal(rlfs_tmpfile(fs.mp, d, 0600, 0, 0, 0, &st), 0);
	assert_int_equal(rlfs_write(fs.mp, st.st_ino, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_int_equal(rlfs_getattr(fs.mp, st.st_ino, &st), -ENOENT);
	assert_int_equal(rlfs_tmpfile(fs.mp, d, 0600, 0, 0, 0, &st), 0);
	assert_int_equal(rlfs_write(fs.mp, st.st_ino, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(rlfs_tmpfile(fs.mp, r + 12345, 0600, 0, 0, 0, &st), -ENOENT);
	tu_remount(&fs);
	assert_int_equal(rlfs_rmdir(fs.mp, r, "d"), 0);
	assert_space_equal(space_of(&fs), before);
	finish(&fs);
}

/* an ACL in the kernel's xattr form: (tag, perm, id) triples */
static size_t acl_make(uint8_t *v, const unsigned *ent, unsigned n)
{
	v[0] = 2;
	v[1] = v[2] = v[3] = 0;
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = v + 4 + 8 * i;
		e[0] = (uint8_t)ent[3 * i];
		e[1] = (uint8_t)(ent[3 * i] >> 8);
		e[2] = (uint8_t)ent[3 * i + 1];
		e[3] = 0;
		uint32_t id = ent[3 * i + 2];
		memcpy(e + 4, &id, 4);
	}
	return 4 + 8 * n;
}

#define UO 0x01
#define US 0x02
#define GO 0x04
#define GR 0x08
#define MK 0x10
#define OT 0x20
#define NOID 0xffffffffu
#define ACC "system.posix_acl_access"
#define DEF "system.posix_acl_default"

static mode_t mode_of(struct tu_fs *fs, uint64_t ino)
{
	struct stat st;
	assert_int_equal(rlfs_getattr(fs->mp, ino, &st), 0);
	return st.st_mode;
}

static void test_posix_acl(void **state)
{
	struct tu_fs fs;
	struct stat st;
	uint8_t v[256], got[256];
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t r = root(&fs);
	uint64_t f = mkfile(&fs, r, "f");

	/* named entry: stored, group bits = mask */
	const unsigned a1[] = { UO, 6, NOID, US, 6, 1000, GO, 4, NOID, MK, 7, NOID, OT, 0, NOID };
	size_t n1 = acl_make(v, a1, 5);
	assert_int_equal(rlfs_setxattr(fs.mp, f, ACC, v, n1, 0), 0);
	assert_int_equal(mode_of(&fs, f), S_IFREG | 0670);
	assert_int_equal(rlfs_getxattr(fs.mp, f, ACC, got, sizeof(got)), (int)n1);
	assert_memory_equal(got, v, n1);
	/* chmod rewrites owner, mask, other in the stored ACL */
	struct stat m = { .st_mode = 0604 };
	assert_int_equal(rlfs_setattr(fs.mp, f, &m, RLFS_SET_MODE, NULL), 0);
	assert_int_equal(rlfs_getxattr(fs.mp, f, ACC, got, sizeof(got)), (int)n1);
	assert_int_equal(got[4 + 2], 6);            /* user:: rw */
	assert_int_equal(got[4 + 8 + 2], 6);        /* user:1000 unchanged */
	assert_int_equal(got[4 + 16 + 2], 4);       /* group:: unchanged */
	assert_int_equal(got[4 + 24 + 2], 0);       /* mask from the group bits */
	assert_int_equal(got[4 + 32 + 2], 4);       /* other */
	/* an ACL equal to a mode: only the mode, nothing stored */
	const unsigned a2[] = { UO, 7, NOID, GO, 5, NOID, OT, 1, NOID };
	size_t n2 = acl_make(v, a2, 3);
	assert_int_equal(rlfs_setxattr(fs.mp, f, ACC, v, n2, 0), 0);
	assert_int_equal(mode_of(&fs, f), S_IFREG | 0751);
	assert_int_equal(rlfs_getxattr(fs.mp, f, ACC, got, sizeof(got)), -ENODATA);
	/* malformed: EINVAL, nothing changes */
	const unsigned bad1[] = { GO, 5, NOID, UO, 7, NOID, OT, 1, NOID };   /* order */
	const unsigned bad2[] = { UO, 7, NOID, US, 7, 5, GO, 5, NOID, OT, 1, NOID }; /* no mask */
	const unsigned bad3[] = { UO, 8, NOID, GO, 5, NOID, OT, 1, NOID };   /* perm */
	assert_int_equal(rlfs_setxattr(fs.mp, f, ACC, v, acl_make(v, bad1, 3), 0), -EINVAL);
	assert_int_equal(rlfs_setxattr(fs.mp, f, ACC, v, acl_make(v, bad2, 4), 0), -EINVAL);
	assert_int_equal(rlfs_setxattr(fs.mp, f, ACC, v, acl_make(v, bad3, 3), 0), -EINVAL);
	assert_int_equal(rlfs_setxattr(fs.mp, f, ACC, v, 5, 0), -EINVAL);
	assert_int_equal(mode_of(&fs, f), S_IFREG | 0751);
	/* a default ACL only on directories */
	assert_int_equal(rlfs_setxattr(fs.mp, f, DEF, v, acl_make(v, a1, 5), 0), -EACCES);
	/* setgid: kept for a caller in the group, cleared on KILL_SGID */
	struct stat sg = { .st_mode = S_ISGID | 0770 };
	assert_int_equal(rlfs_setattr(fs.mp, f, &sg, RLFS_SET_MODE, NULL), 0);
	assert_int_equal(rlfs_setxattr(fs.mp, f, ACC, v, acl_make(v, a1, 5), 0), 0);
	assert_int_equal(mode_of(&fs, f), S_IFREG | S_ISGID | 0670);
	assert_int_equal(rlfs_setxattr(fs.mp, f, ACC, v, acl_make(v, a1, 5),
				       RLFS_XATTR_ACL_KILL_SGID), 0);
	assert_int_equal(mode_of(&fs, f), S_IFREG | 0670);

	/* inheritance: umask ignored under a default ACL, applied without one */
	uint64_t d = mkdir_(&fs, r, "d");
	const unsigned a3[] = { UO, 7, NOID, US, 7, 1000, GO, 5, NOID, MK, 7, NOID, OT, 5, NOID };
	size_t n3 = acl_make(v, a3, 5);
	assert_int_equal(rlfs_setxattr(fs.mp, d, DEF, v, n3, 0), 0);
	assert_int_equal(rlfs_mknod_umask(fs.mp, d, "x", S_IFREG | 0640, 0, 0, 0, 077, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_int_equal(st.st_mode, S_IFREG | 0640);
	assert_int_equal(rlfs_getxattr(fs.mp, st.st_ino, ACC, got, sizeof(got)), (int)n3);
	assert_int_equal(got[4 + 2], 6);            /* user:: masked by 06 */
	assert_int_equal(got[4 + 24 + 2], 4);       /* mask masked by 04 */
	assert_int_equal(got[4 + 32 + 2], 0);       /* other masked by 0 */
	assert_int_equal(rlfs_getxattr(fs.mp, st.st_ino, DEF, got, sizeof(got)), -ENODATA);
	assert_int_equal(rlfs_mkdir_umask(fs.mp, d, "sd", 0777, 0, 0, 077, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_int_equal(st.st_mode, S_IFDIR | 0775);
	assert_int_equal(rlfs_getxattr(fs.mp, st.st_ino, DEF, got, sizeof(got)), (int)n3);
	assert_int_equal(rlfs_tmpfile(fs.mp, d, 0600, 0, 0, 077, &st), 0);
	assert_int_equal(st.st_mode, S_IFREG | 0600);
	assert_int_equal(rlfs_getxattr(fs.mp, st.st_ino, ACC, got, sizeof(got)), (int)n3);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_int_equal(rlfs_symlink(fs.mp, d, "l", "x", 0, 0, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_int_equal(rlfs_getxattr(fs.mp, st.st_ino, ACC, got, sizeof(got)), -ENODATA);
	assert_int_equal(rlfs_mknod_umask(fs.mp, r, "y", S_IFREG | 0666, 0, 0, 0, 027, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_int_equal(st.st_mode, S_IFREG | 0640);
	assert_int_equal(rlfs_getxattr(fs.mp, st.st_ino, ACC, got, sizeof(got)), -ENODATA);
	/* a default ACL that says no more than the mode: no access ACL */
	uint64_t e = mkdir_(&fs, r, "e");
	assert_int_equal(rlfs_setxattr(fs.mp, e, DEF, v, acl_make(v, a2, 3), 0), 0);
	assert_int_equal(rlfs_mknod_umask(fs.mp, e, "z", S_IFREG | 0666, 0, 0, 0, 0, &st), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	assert_int_equal(st.st_mode, S_IFREG | 0640);
	assert_int_equal(rlfs_getxattr(fs.mp, st.st_ino, ACC, got, sizeof(got)), -ENODATA);
	tu_remount(&fs);
	assert_int_equal(rlfs_getxattr(fs.mp, d, DEF, got, sizeof(got)), (int)n3);
	finish(&fs);
}

/* GET_EXTENTS follows FIEMAP's range checks; the xattr map covers the
 * xattr blocks exactly. */
static void test_extent_map_checks(void **state)
{
	struct tu_fs fs;
	struct rlfs_ioc_extent ext[64];
	uint32_t n;
	tu_mkfs_mount(&fs, 64 * MiB, 0, 0);
	uint64_t f = mkfile(&fs, root(&fs), "f");
	char buf[4096];
	memset(buf, 1, sizeof(buf));
	assert_int_equal(rlfs_write(fs.mp, f, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(rlfs_get_extents(fs.mp, f, 0, 0, ext, 64, &n), -EINVAL);
	assert_int_equal(rlfs_get_extents(fs.mp, f, 1ull << 63, 1, ext, 64, &n), -EFBIG);
	assert_int_equal(rlfs_get_extents(fs.mp, f, INT64_MAX, 1, ext, 64, &n), -EFBIG);
	assert_int_equal(rlfs_get_extents(fs.mp, f, 0, ~0ull, ext, 64, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rlfs_get_xattr_extents(fs.mp, f, 0, 0, ext, 64, &n), -EINVAL);
	assert_int_equal(rlfs_get_xattr_extents(fs.mp, f, ~0ull, 1, ext, 64, &n), -EFBIG);
	/* inline xattrs: no blocks */
	assert_int_equal(rlfs_setxattr(fs.mp, f, "user.a", "1", 1, 0), 0);
	assert_int_equal(rlfs_get_xattr_extents(fs.mp, f, 0, ~0ull, ext, 64, &n), 0);
	assert_int_equal(n, 0);
	/* in blocks: the extents add up to the blocks beyond the data block */
	static char big[20000];
	memset(big, 'b', sizeof(big));
	for (int i = 0; i < 30; i++) {
		char name[32];
		snprintf(name, sizeof(name), "user.k%d", i);
		assert_int_equal(rlfs_setxattr(fs.mp, f, name, big, 100 + i * 600, 0), 0);
	}
	struct stat st;
	assert_int_equal(rlfs_getattr(fs.mp, f, &st), 0);
	assert_int_equal(rlfs_get_xattr_extents(fs.mp, f, 0, ~0ull, ext, 64, &n), 0);
	assert_true(n > 0);
	uint64_t sum = 0, pos = 0;
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(ext[i].logical, pos);
		assert_int_equal(ext[i].flags, i == n - 1 ? RLFS_IOC_EXT_LAST : 0);
		pos += ext[i].length;
		sum += ext[i].length;
	}
	assert_int_equal(sum + 4096, (uint64_t)st.st_blocks * 512);
	/* from the second extent on, and in batches of one */
	if (n > 1) {
		uint32_t m;
		assert_int_equal(rlfs_get_xattr_extents(fs.mp, f, ext[1].logical, ~0ull, ext + 32,
							1, &m), 0);
		assert_int_equal(m, 1);
		assert_int_equal(ext[32].physical, ext[1].physical);
	}
	finish(&fs);
}

int main(void)
{
	const char *seed = getenv("RLFS_TEST_SEED");
	if (seed)
		tu_seed(strtoull(seed, NULL, 0));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic_errors),
		cmocka_unit_test(test_rename),
		cmocka_unit_test(test_links),
		cmocka_unit_test(test_symlinks),
		cmocka_unit_test(test_symlinks_1k),
		cmocka_unit_test(test_xattr),
		cmocka_unit_test(test_xattr_1k),
		cmocka_unit_test(test_xattr_random),
		cmocka_unit_test(test_readdirplus),
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_immutable_append),
		cmocka_unit_test(test_fileattr),
		cmocka_unit_test(test_timestamps),
		cmocka_unit_test(test_bad_entry),
		cmocka_unit_test(test_corrupt_records),
		cmocka_unit_test(test_hash_collisions),
		cmocka_unit_test(test_random_namespace),
		cmocka_unit_test(test_parallel),
		cmocka_unit_test(test_cookie_stability),
		cmocka_unit_test(test_many_entries),
		cmocka_unit_test(test_whiteout),
		cmocka_unit_test(test_tmpfile),
		cmocka_unit_test(test_posix_acl),
		cmocka_unit_test(test_extent_map_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

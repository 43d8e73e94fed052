/*
 * test_dax.c: the direct-access data path (rlfs_set_dax, lib/dax.c; the
 * device mapping of lib/dev.c), in process on an image file.
 *
 *   test_copy_around   a write into shared blocks copies from the old
 *                      blocks exactly the bytes of the new edge blocks it
 *                      does not cover (rlfs_cow_copied_bytes), on the CoW
 *                      fork path and the one-transaction path; a partial
 *                      zeroing (truncate) the same; without dax whole
 *                      blocks are copied; contents right, also after a
 *                      remount without dax; fsck clean
 *   test_dedupe        dedupe compares in the mapping: identical ranges
 *                      (also a hole against written zeros) share, one byte
 *                      different is RLFS_DEDUPE_DIFFERS
 *   test_model         random writes, clones, dedupes, truncates and
 *                      fsyncs of three files under dax against a model;
 *                      remount without dax reads the same; fsck clean
 *   test_bad_input     mapping a device that cannot be mapped (the
 *                      crash-recording device) is -ENODEV and leaves the
 *                      pread/pwrite path working; rlfs_set_dax twice is 0
 *   test_map_faults    an image file truncated under its mapping: a read,
 *                      copy or compare of a page past its end is -EIO
 *                      (counted in map_faults), a write or zeroing there
 *                      goes through pwrite and lands; a SIGBUS outside the
 *                      guarded accesses still kills (a child process)
 *
 * Seed: RLFS_TEST_SEED.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#include "dev.h"
#include "dev_crash.h"
#include "mapguard.h"
#include "reflinkfs/fs.h"

#define MB (1024ull * 1024)
#define BS 4096u
#define NF 3
#define MAXSZ (256u * BS)

static uint64_t mkfile(struct rlfs_mount *mp, const char *name)
{
	struct stat st;
	assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), name, S_IFREG | 0644, 0, 0, 0, &st),
			 0);
	rlfs_forget(mp, st.st_ino, 1);
	return st.st_ino;
}

static void put(struct rlfs_mount *mp, uint64_t ino, const uint8_t *b, size_t len, uint64_t off)
{
	assert_int_equal(rlfs_write(mp, ino, b, len, (off_t)off), (ssize_t)len);
}

static void check(struct rlfs_mount *mp, uint64_t ino, const uint8_t *want, uint64_t size)
{
	struct stat st;
	assert_int_equal(rlfs_getattr(mp, ino, &st), 0);
	assert_int_equal((uint64_t)st.st_size, size);
	uint8_t *got = malloc(size + 1);
	assert_non_null(got);
	assert_int_equal(rlfs_read(mp, ino, got, size + 1, 0), (ssize_t)size);
	assert_memory_equal(got, want, size);
	free(got);
}

static void randfill(uint8_t *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)tu_rand();
}

static void remount_dax(struct tu_fs *fs, bool dax)
{
	tu_remount(fs);
	if (dax)
		assert_int_equal(rlfs_set_dax(fs->mp), 0);
	assert_int_equal(rlfs_dax_enabled(fs->mp), dax);
}

/* clone all of src (size bytes) onto a new file name; its inode */
static uint64_t clone_of(struct rlfs_mount *mp, uint64_t src, uint64_t size, const char *name)
{
	uint64_t ino = mkfile(mp, name);
	assert_int_equal(rlfs_clone_range(mp, src, 0, ino, 0, size, 0), (int64_t)size);
	return ino;
}

/* One write of len bytes at off into a fresh clone of a (contents m,
 * size bytes): the bytes copy-on-write copied, and the data checked. */
static uint64_t cow_copied(struct rlfs_mount *mp, uint64_t a, const uint8_t *m, uint64_t size,
			   const char *name, uint64_t off, uint64_t len)
{
	uint64_t b = clone_of(mp, a, size, name);
	uint8_t *want = malloc(size), *w = malloc(len);
	assert_true(want && w);
	memcpy(want, m, size);
	randfill(w, len);
	memcpy(want + off, w, len);
	uint64_t before = rlfs_cow_copied_bytes(mp);
	put(mp, b, w, len, off);
	uint64_t copied = rlfs_cow_copied_bytes(mp) - before;
	check(mp, b, want, size);
	check(mp, a, m, size);
	free(want);
	free(w);
	return copied;
}

static void test_copy_around(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MB, BS, 0);
	assert_int_equal(rlfs_set_dax(fs.mp), 0);
	assert_true(rlfs_dax_enabled(fs.mp));
	rlfs_set_cow_fill(fs.mp, 0);    /* no gap fill: only edge blocks */
	struct rlfs_mount *mp = fs.mp;
	const uint64_t size = 64 * BS;
	uint8_t *m = malloc(size);
	assert_non_null(m);
	randfill(m, size);
	uint64_t a = mkfile(mp, "a");
	put(mp, a, m, size, 0);

	/* inside one block, both ends partial (CoW fork path) */
	assert_int_equal(cow_copied(mp, a, m, size, "b1", 1000, 100), BS - 100);
	/* over three blocks: 500 bytes before, the middle block whole, 1788
	 * bytes after */
	assert_int_equal(cow_copied(mp, a, m, size, "b2", 10 * BS + 500, 10000),
			 500 + (3 * BS - 500 - 10000));
	/* block aligned: nothing to copy */
	assert_int_equal(cow_copied(mp, a, m, size, "b3", 5 * BS, 2 * BS), 0);
	/* a one-block file, the whole-region path (cow_write_direct) */
	uint64_t one = mkfile(mp, "one");
	put(mp, one, m, BS, 0);
	assert_int_equal(cow_copied(mp, one, m, BS, "b4", 50, 100), BS - 100);
	/* the same with the write reaching past the old EOF */
	assert_int_equal(cow_copied(mp, one, m, BS, "b5", 4000, 96), 4000);

	/* partial zeroing: truncate inside a shared block copies the part
	 * that stays, not the part that becomes zeros */
	uint64_t t = clone_of(mp, a, size, "t");
	uint64_t before = rlfs_cow_copied_bytes(mp);
	struct stat st = { .st_size = 20 * BS + 300 };
	assert_int_equal(rlfs_setattr(mp, t, &st, RLFS_SET_SIZE, NULL), 0);
	assert_int_equal(rlfs_cow_copied_bytes(mp) - before, 300);
	check(mp, t, m, 20 * BS + 300);
	uint8_t tail[BS];
	assert_int_equal(rlfs_read(mp, a, tail, BS, 20 * BS), BS);
	assert_memory_equal(tail, m + 20 * BS, BS);

	/* without dax the edge blocks are copied whole */
	remount_dax(&fs, false);
	mp = fs.mp;
	rlfs_set_cow_fill(mp, 0);
	assert_int_equal(cow_copied(mp, a, m, size, "n1", 1000, 100), BS);
	free(m);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	assert_int_equal(tu_fsck(fs.path, 0), 0);
	tu_unmount(&fs);
}

static void test_dedupe(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MB, BS, 0);
	assert_int_equal(rlfs_set_dax(fs.mp), 0);
	struct rlfs_mount *mp = fs.mp;
	const uint64_t size = 128 * BS;
	uint8_t *m = malloc(size);
	assert_non_null(m);
	randfill(m, size);
	memset(m + 64 * BS, 0, 16 * BS);
	uint64_t a = mkfile(mp, "a"), b = mkfile(mp, "b"), d = mkfile(mp, "d");
	/* a has a hole where b has written zeros */
	put(mp, a, m, 64 * BS, 0);
	put(mp, a, m + 80 * BS, size - 80 * BS, 80 * BS);
	put(mp, b, m, size, 0);
	put(mp, d, m, size, 0);
	uint8_t x = m[100 * BS + 7] ^ 0x5a;
	put(mp, d, &x, 1, 100 * BS + 7);
	uint64_t done = 0;
	assert_int_equal(rlfs_dedupe_range(mp, a, 0, b, 0, size, &done), 0);
	assert_int_equal(done, size);
	assert_int_equal(rlfs_dedupe_range(mp, a, 0, d, 0, size, &done), RLFS_DEDUPE_DIFFERS);
	assert_int_equal(done, 0);
	assert_int_equal(rlfs_dedupe_range(mp, a, 0, d, 0, 100 * BS, &done), 0);
	assert_int_equal(done, 100 * BS);
	/* a written byte against a hole differs */
	uint8_t one = 1;
	put(mp, b, &one, 1, 70 * BS + 9);
	assert_int_equal(rlfs_dedupe_range(mp, a, 64 * BS, b, 64 * BS, 16 * BS, &done),
			 RLFS_DEDUPE_DIFFERS);
	m[70 * BS + 9] = 1;
	check(mp, b, m, size);
	m[70 * BS + 9] = 0;
	check(mp, a, m, size);
	free(m);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	assert_int_equal(tu_fsck(fs.path, 0), 0);
	tu_unmount(&fs);
}

static void test_model(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MB, BS, 0);
	assert_int_equal(rlfs_set_dax(fs.mp), 0);
	struct rlfs_mount *mp = fs.mp;
	uint64_t ino[NF], sz[NF] = { 0 };
	uint8_t *model[NF];
	char name[8];
	for (int i = 0; i < NF; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		ino[i] = mkfile(mp, name);
		model[i] = calloc(1, MAXSZ);
		assert_non_null(model[i]);
	}
	uint8_t *w = malloc(MAXSZ);
	assert_non_null(w);
	for (int op = 0; op < 400; op++) {
		int i = (int)(tu_rand() % NF), j = (int)(tu_rand() % NF);
		uint64_t off, len;
		switch (tu_rand() % 6) {
		case 0: case 1: case 2: /* write */
			off = tu_rand() % (MAXSZ - 1);
			len = 1 + tu_rand() % RLFS_MIN(MAXSZ - off, 5 * BS);
			randfill(w, len);
			put(mp, ino[i], w, len, off);
			memcpy(model[i] + off, w, len);
			sz[i] = RLFS_MAX(sz[i], off + len);
			break;
		case 3: { /* clone whole blocks of i onto j */
			if (i == j || sz[i] < BS)
				break;
			uint64_t sb = tu_rand() % (sz[i] / BS), n = 1 + tu_rand() % (sz[i] / BS - sb);
			uint64_t db = tu_rand() % (MAXSZ / BS - n + 1);
			if (db * BS > sz[j])
				db = sz[j] / BS;
			int64_t r = rlfs_clone_range(mp, ino[i], sb * BS, ino[j], db * BS, n * BS, 0);
			assert_int_equal(r, (int64_t)(n * BS));
			memcpy(model[j] + db * BS, model[i] + sb * BS, n * BS);
			sz[j] = RLFS_MAX(sz[j], db * BS + n * BS);
			break;
		}
		case 4: { /* dedupe: differs or shares, the model does not change */
			uint64_t n = RLFS_MIN(sz[i], sz[j]) / BS;
			if (i == j || n == 0)
				break;
			uint64_t done;
			int r = rlfs_dedupe_range(mp, ino[i], 0, ino[j], 0, n * BS, &done);
			bool same = memcmp(model[i], model[j], n * BS) == 0;
			assert_int_equal(r, same ? 0 : RLFS_DEDUPE_DIFFERS);
			break;
		}
		case 5: /* truncate, or fsync */
			if (tu_rand() % 2) {
				assert_int_equal(rlfs_fsync(mp, ino[i], 0), 0);
				break;
			}
			off = tu_rand() % (sz[i] + 1);
			struct stat st = { .st_size = (off_t)off };
			assert_int_equal(rlfs_setattr(mp, ino[i], &st, RLFS_SET_SIZE, NULL), 0);
			if (off < sz[i])
				memset(model[i] + off, 0, sz[i] - off);
			sz[i] = off;
			break;
		}
		check(mp, ino[i], model[i], sz[i]);
		check(mp, ino[j], model[j], sz[j]);
	}
	/* the image as the pread/pwrite path reads it */
	remount_dax(&fs, false);
	for (int i = 0; i < NF; i++) {
		check(fs.mp, ino[i], model[i], sz[i]);
		free(model[i]);
	}
	free(w);
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	assert_int_equal(tu_fsck(fs.path, 0), 0);
	tu_unmount(&fs);
}

static void test_bad_input(void **state)
{
	(void)state;
	struct tu_fs fs;
	tu_mkfs_mount(&fs, 64 * MB, BS, 0);
	struct rlfs_crash_rec *rec = tu_crash_record(fs.mp);
	assert_int_equal(rlfs_set_dax(fs.mp), -ENODEV);
	assert_false(rlfs_dax_enabled(fs.mp));
	uint64_t a = mkfile(fs.mp, "a");
	uint8_t b[3 * BS];
	randfill(b, sizeof(b));
	put(fs.mp, a, b, sizeof(b), 0);
	check(fs.mp, a, b, sizeof(b));
	assert_int_equal(rlfs_mount_close(fs.mp), 0);
	fs.mp = NULL;
	rlfs_crash_rec_free(rec);
	/* twice: still 0; a memory device is its own mapping */
	assert_int_equal(rlfs_mount_open(fs.path, RLFS_MOUNT_NOLOCK, &fs.mp), 0);
	assert_int_equal(rlfs_set_dax(fs.mp), 0);
	assert_int_equal(rlfs_set_dax(fs.mp), 0);
	struct rlfs_dev *mem;
	assert_int_equal(rlfs_dev_open_mem(1 * MB, &mem), 0);
	assert_int_equal(rlfs_dev_map(mem), 0);
	assert_ptr_equal(mem->map, mem->priv);
	/* past the end: -EIO, no crash */
	assert_int_equal(rlfs_dev_data_pwrite(mem, b, 10, 1 * MB - 5), -EIO);
	assert_int_equal(rlfs_dev_data_pread(mem, b, 10, UINT64_MAX - 3), -EIO);
	assert_int_equal(rlfs_dev_data_copy(mem, 0, 1 * MB, 1, NULL, 0), -EIO);
	assert_null(rlfs_dev_data_at(mem, 1 * MB - 1, 2));
	rlfs_dev_close(mem);
	tu_unmount(&fs);
}

static void test_map_faults(void **state)
{
	(void)state;
	char path[] = "/tmp/rlfs-mapfault-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 * MB), 0);
	struct rlfs_dev *dev;
	assert_int_equal(rlfs_dev_open(path, 1, 0, &dev), 0);
	assert_int_equal(rlfs_dev_map(dev), 0);
	uint8_t b[2 * BS], r[2 * BS];
	randfill(b, sizeof(b));
	assert_int_equal(rlfs_dev_data_pwrite(dev, b, sizeof(b), 512 * 1024), 0);
	assert_int_equal(rlfs_dev_data_pread(dev, r, sizeof(r), 512 * 1024), 0);
	assert_memory_equal(r, b, sizeof(b));
	assert_int_equal(dev->map_faults, 0);

	/* the image shrinks under the mapping: its pages past 256 KiB fault */
	assert_int_equal(ftruncate(fd, 256 * 1024), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) { /* an unguarded access is not swallowed: the process
			 * dies by SIGBUS (cmocka's own handler taken away) */
		signal(SIGBUS, SIG_DFL);
		if (rlfs_map_guard_install())
			_exit(2);
		volatile uint8_t x = dev->map[800 * 1024];
		(void)x;
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGBUS);

	assert_int_equal(rlfs_dev_data_pread(dev, r, sizeof(r), 512 * 1024), -EIO);
	assert_int_equal(dev->map_faults, 1);
	assert_int_equal(rlfs_dev_data_cmp(dev, rlfs_dev_data_at(dev, 600 * 1024, BS), NULL, BS),
			 -EIO);
	assert_int_equal(rlfs_dev_data_cmp(dev, rlfs_dev_data_at(dev, 600 * 1024, BS),
					   rlfs_dev_data_at(dev, 0, BS), BS), -EIO);
	assert_int_equal(rlfs_dev_data_copy(dev, 0, 700 * 1024, BS, NULL, 0), -EIO);
	assert_int_equal(dev->map_faults, 4);
	/* below the end nothing faults */
	assert_int_equal(rlfs_dev_data_cmp(dev, rlfs_dev_data_at(dev, 0, BS), NULL, BS), 0);
	assert_int_equal(rlfs_dev_data_pread(dev, r, BS, 0), 0);
	assert_int_equal(dev->map_faults, 4);
	/* a write there is done by pwrite (which extends the file) */
	assert_int_equal(rlfs_dev_data_pwrite(dev, b, sizeof(b), 512 * 1024), 0);
	assert_int_equal(dev->map_faults, 5);
	assert_int_equal(rlfs_dev_data_pread(dev, r, sizeof(r), 512 * 1024), 0);
	assert_memory_equal(r, b, sizeof(b));
	assert_int_equal(pread(fd, r, sizeof(r), 512 * 1024), (ssize_t)sizeof(r));
	assert_memory_equal(r, b, sizeof(b));
	assert_int_equal(rlfs_dev_data_zero(dev, 512 * 1024 + sizeof(b), BS), 0);
	assert_int_equal(dev->map_faults, 6);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 512 * 1024 + sizeof(b) + BS);
	rlfs_dev_close(dev);
	close(fd);
	unlink(path);
}

/* A SIGBUS sent with kill(2) is no fault of a mapping: the guard neither
 * swallows it (the default action kills, as without the guard) nor, when
 * the old disposition ignored it, gives up its handler. */
static void test_map_guard_sent_sigbus(void **state)
{
	(void)state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGBUS, SIG_DFL);
		if (rlfs_map_guard_install())
			_exit(2);
		kill(getpid(), SIGBUS);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGBUS);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGBUS, SIG_IGN);
		if (rlfs_map_guard_install())
			_exit(2);
		kill(getpid(), SIGBUS);
		struct sigaction cur;
		if (sigaction(SIGBUS, NULL, &cur) || !(cur.sa_flags & SA_SIGINFO) ||
		    cur.sa_handler == SIG_DFL)
			_exit(3);       /* the guard's handler is gone */
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	/* SIG_IGN set with SA_SIGINFO in its flags is still SIG_IGN, not a
	 * function at address 1 to chain to */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sigaction ign;
		signal(SIGSEGV, SIG_DFL);       /* a call to 1 kills this child */
		memset(&ign, 0, sizeof(ign));
		ign.sa_handler = SIG_IGN;
		ign.sa_flags = SA_SIGINFO;
		sigemptyset(&ign.sa_mask);
		if (sigaction(SIGBUS, &ign, NULL) || rlfs_map_guard_install())
			_exit(2);
		kill(getpid(), SIGBUS);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const char *s = getenv("RLFS_TEST_SEED");
	tu_seed(s ? strtoull(s, NULL, 0) : 1414);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copy_around),
		cmocka_unit_test(test_dedupe),
		cmocka_unit_test(test_model),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_map_faults),
		cmocka_unit_test(test_map_guard_sent_sigbus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

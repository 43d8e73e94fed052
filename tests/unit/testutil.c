#include "testutil.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "dev.h"
#include "dev_crash.h"

static uint64_t tu_state = 0x9E3779B97F4A7C15ull;

void tu_seed(uint64_t seed)
{
	tu_state = seed ? seed : 0x9E3779B97F4A7C15ull;
}

uint64_t tu_rand(void)
{
	uint64_t x = tu_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	tu_state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

int tu_mkfs_log;
int tu_mkfs_rmapbt;
uint64_t tu_mkfs_log_bytes;

void tu_mkfs_mount(struct tu_fs *fs, uint64_t size_bytes, uint32_t blocksize,
		   uint32_t agcount)
{
	struct rlfs_mkfs_opts o = { .size_bytes = size_bytes, .blocksize = blocksize,
				    .agcount = agcount, .force = 1, .log = tu_mkfs_log,
				    .rmapbt = tu_mkfs_rmapbt, .log_bytes = tu_mkfs_log_bytes };
	snprintf(fs->path, sizeof(fs->path), "/tmp/rlfs-unit-XXXXXX");
	int fd = mkstemp(fs->path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(rlfs_mkfs(fs->path, &o), 0);
	assert_int_equal(rlfs_mount_open(fs->path, RLFS_MOUNT_NOLOCK, &fs->mp), 0);
}

void tu_remount(struct tu_fs *fs)
{
	assert_int_equal(rlfs_mount_close(fs->mp), 0);
	fs->mp = NULL;
	assert_int_equal(rlfs_mount_open(fs->path, RLFS_MOUNT_NOLOCK, &fs->mp), 0);
}

void tu_unmount(struct tu_fs *fs)
{
	if (fs->mp)
		assert_int_equal(rlfs_mount_close(fs->mp), 0);
	fs->mp = NULL;
	unlink(fs->path);
}

const char *tu_fsck_bin(void)
{
	static char self[PATH_MAX];
	const char *e = getenv("RLFS_TEST_FSCK");
	if (e && *e) {
		if (access(e, X_OK) != 0)
			fail_msg("RLFS_TEST_FSCK=%s is not an executable", e);
		return e;
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 16);
	if (n <= 0)
		fail_msg("fsck binary: cannot read /proc/self/exe");
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (!slash)
		fail_msg("fsck binary: no directory in %s", self);
	strcpy(slash + 1, "reflinkfs");
	if (access(self, X_OK) != 0)
		fail_msg("fsck binary %s missing (build it, or set RLFS_TEST_FSCK)", self);
	return self;
}

int tu_mount_capture(const char *path, unsigned flags, struct rlfs_mount **mpp, char *out,
		     size_t len)
{
	char tmpl[] = "/tmp/rlfs-unit-err-XXXXXX";
	int fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	unlink(tmpl);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	int err = rlfs_mount_open(path, flags, mpp);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	ssize_t n = pread(fd, out, len - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	return err;
}

int tu_fsck(const char *image, int expect)
{
	char cmd[2 * PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "%s fsck -n %s >%s.fsck 2>&1", tu_fsck_bin(), image, image);
	int rc = system(cmd);
	if (rc == -1 || !WIFEXITED(rc))
		fail_msg("fsck of %s: did not exit normally (status %d)", image, rc);
	rc = WEXITSTATUS(rc);
	if (rc != expect) {
		fprintf(stderr, "fsck -n %s: exit %d, expected %d:\n", image, rc, expect);
		snprintf(cmd, sizeof(cmd), "head -20 %s.fsck >&2", image);
		if (system(cmd) != 0)
			fprintf(stderr, "(no fsck output)\n");
	}
	snprintf(cmd, sizeof(cmd), "%s.fsck", image);
	unlink(cmd);
	return rc;
}

int tu_fsck_repair(const char *image)
{
	char cmd[2 * PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "%s fsck %s >%s.fsck 2>&1", tu_fsck_bin(), image, image);
	int rc = system(cmd);
	if (rc == -1 || !WIFEXITED(rc))
		fail_msg("fsck (repair) of %s: did not exit normally (status %d)", image, rc);
	rc = WEXITSTATUS(rc);
	snprintf(cmd, sizeof(cmd), "head -20 %s.fsck >&2", image);
	if (system(cmd) != 0)
		fprintf(stderr, "(no fsck output)\n");
	snprintf(cmd, sizeof(cmd), "%s.fsck", image);
	unlink(cmd);
	return rc;
}

void tu_crash_copy(const struct tu_fs *fs, const char *suffix, char *copy, size_t len)
{
	char cmd[2 * PATH_MAX + 64];
	snprintf(copy, len, "%s%s", fs->path, suffix);
	snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", fs->path, copy);
	assert_int_equal(system(cmd), 0);
}

struct rlfs_crash_rec *tu_crash_record(struct rlfs_mount *mp)
{
	struct rlfs_dev *inner = mp->dev, *cdev;
	struct rlfs_crash_rec *rec;
	assert_int_equal(rlfs_crash_rec_new(inner, &rec), 0);
	assert_int_equal(rlfs_crash_dev_open(rec, inner, &cdev), 0);
	mp->dev = cdev;
	return rec;
}

void tu_big_xattrs(struct rlfs_mount *mp, uint64_t ino, int n, size_t len)
{
	char name[32], *val = malloc(len);
	assert_non_null(val);
	memset(val, 'x', len);
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "user.big%d", i);
		assert_int_equal(rlfs_setxattr(mp, ino, name, val, len, 0), 0);
	}
	free(val);
}

uint64_t tu_frag_file(struct rlfs_mount *mp, const char *name, int extents)
{
	struct stat st;
	char blk[4096];
	memset(blk, 'f', sizeof(blk));
	assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), name, S_IFREG | 0644, 0, 0, 0, &st), 0);
	for (int i = 0; i < 2 * extents; i += 2)
		assert_int_equal(rlfs_write(mp, st.st_ino, blk, sizeof(blk), (off_t)i * 4096),
				 (ssize_t)sizeof(blk));
	return st.st_ino;
}

void tu_fill(struct rlfs_mount *mp, uint64_t ino, uint8_t byte, size_t len)
{
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	memset(buf, byte, len);
	assert_int_equal(rlfs_write(mp, ino, buf, len, 0), (ssize_t)len);
	free(buf);
}

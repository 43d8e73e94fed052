#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "reflinkfs/fs.h"

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

void tu_mkfs_mount(struct tu_fs *fs, uint64_t size_bytes, uint32_t blocksize,
		   uint32_t agcount)
{
	struct rlfs_mkfs_opts o = { .size_bytes = size_bytes, .blocksize = blocksize,
				    .agcount = agcount, .force = 1 };
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

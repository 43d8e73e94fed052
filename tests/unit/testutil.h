/*
 * testutil.h: helpers shared by the unit tests (cmocka).
 * tu_mkfs_mount formats a fresh image file under /tmp and mounts it in-process
 * (no FUSE); tu_unmount closes it, removes the image unless keep is set.
 */
#ifndef RLFS_TESTUTIL_H
#define RLFS_TESTUTIL_H
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "rlfs.h"

struct tu_fs {
	char path[64];
	struct rlfs_mount *mp;
};
/* Format size_bytes with blocksize/agcount (0 = defaults) and mount it. */
void tu_mkfs_mount(struct tu_fs *fs, uint64_t size_bytes, uint32_t blocksize,
		   uint32_t agcount);
/* Unmount and remount the same image (tests persistence). */
void tu_remount(struct tu_fs *fs);
void tu_unmount(struct tu_fs *fs);
/* Deterministic PRNG (xorshift64*), seeded from RLFS_TEST_SEED or a default. */
uint64_t tu_rand(void);
void tu_seed(uint64_t seed);
#endif

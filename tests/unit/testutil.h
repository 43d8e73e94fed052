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
/* mkfs option log for tu_mkfs_mount: 0 = default (a log), -1 = no log. */
extern int tu_mkfs_log;
/* mkfs option rmapbt for tu_mkfs_mount: 0 = default (on), -1 = off. */
extern int tu_mkfs_rmapbt;
/* mkfs option log_bytes for tu_mkfs_mount: 0 = mkfs's default size. */
extern uint64_t tu_mkfs_log_bytes;
/* Format size_bytes with blocksize/agcount (0 = defaults) and mount it. */
void tu_mkfs_mount(struct tu_fs *fs, uint64_t size_bytes, uint32_t blocksize,
		   uint32_t agcount);
/* rlfs_mount_open with its stderr captured into out (len bytes,
 * NUL-terminated); returns what rlfs_mount_open returned. */
int tu_mount_capture(const char *path, unsigned flags, struct rlfs_mount **mpp, char *out,
		     size_t len);
/* Unmount and remount the same image (tests persistence). */
void tu_remount(struct tu_fs *fs);
void tu_unmount(struct tu_fs *fs);
/* The fsck binary: RLFS_TEST_FSCK if set and not empty, else the reflinkfs
 * binary next to this test executable (the build directory, where
 * tests/run.sh and meson run the tests).  A missing or non-executable
 * binary fails the calling test: fsck checks are never skipped. */
const char *tu_fsck_bin(void);
/* "fsck -n IMAGE" on an unmounted image; returns its exit status (0 clean,
 * 1 corrected, 4 errors left, 8 operational error) and shows the first
 * lines of its output on stderr when the status is not `expect`. */
int tu_fsck(const char *image, int expect);
/* "fsck IMAGE" (repair mode); shows its first lines on stderr and returns
 * its exit status. */
int tu_fsck_repair(const char *image);
/* What a kill -9 of the daemon leaves: a copy of fs's image as it is on
 * the device now (nothing flushed first), named fs->path + suffix into
 * copy (len bytes).  The copy is sparse; the caller unlinks it. */
void tu_crash_copy(const struct tu_fs *fs, const char *suffix, char *copy, size_t len);
/* Set n extended attributes user.big0, user.big1, ... of len bytes on ino
 * (len 3000 with 4 KiB blocks: remote values, an attr-fork tree). */
void tu_big_xattrs(struct rlfs_mount *mp, uint64_t ino, int n, size_t len);
/* A regular file `name` in the root directory with `extents` one-block
 * extents (every other 4 KiB block written: 300 give it a bmbt); returns
 * its inode number. */
uint64_t tu_frag_file(struct rlfs_mount *mp, const char *name, int extents);
/* Write len bytes of byte at offset 0 of ino (asserts the whole write). */
void tu_fill(struct rlfs_mount *mp, uint64_t ino, uint8_t byte, size_t len);
/* Put a crash-recording device (lib/dev_crash.h) under mp: a record whose
 * base image is the device's contents now, and from here on every write
 * and flush of the mount appended to it (mp->dev swapped, as
 * rlfs-crashtest does).  Returns the record: cut images come from
 * rlfs_crash_rec_build; the caller frees it with rlfs_crash_rec_free
 * after the unmount (which closes the recording device and the device
 * under it).  Asserts on -ENOMEM or a read error of the snapshot. */
struct rlfs_crash_rec;
struct rlfs_crash_rec *tu_crash_record(struct rlfs_mount *mp);
/* Deterministic PRNG (xorshift64*), seeded from RLFS_TEST_SEED or a default. */
uint64_t tu_rand(void);
void tu_seed(uint64_t seed);
#endif

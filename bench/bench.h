/*
 * bench.h: the little the benchmark programs share (each is one file,
 * compiled on its own by bench/bench.sh or by hand; header-only).
 *
 *   bench_now()          CLOCK_MONOTONIC, seconds
 *
 * With BENCH_LIBRLFS defined before including it (programs linked with a
 * build's librlfs.a: bench/libops.c, bench/logbytes.c):
 *
 *   bench_die(what, rc)  print "PROG: what: rc" and exit 1
 *   bench_mount(img, size_bytes, keep)
 *                        mkfs a size_bytes filesystem (default geometry)
 *                        in img, truncating it first unless keep (then an
 *                        existing file keeps its host blocks), and mount
 *                        it in process (RLFS_MOUNT_NOLOCK); exits on error
 *   bench_mkfile(mp, name)
 *                        create an empty file in the root, drop the lookup
 *                        the library took for it, return its inode number
 */
#ifndef RLFS_BENCH_H
#define RLFS_BENCH_H
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#ifdef BENCH_LIBRLFS
#include <errno.h>
#include <sys/stat.h>
#include "reflinkfs/fs.h"

static inline void bench_die(const char *what, long rc)
{
	fprintf(stderr, "%s: %s: %ld\n", program_invocation_short_name, what, rc);
	exit(1);
}

static inline struct rlfs_mount *bench_mount(const char *img, uint64_t size_bytes, int keep)
{
	struct rlfs_mkfs_opts o = { .size_bytes = size_bytes, .force = 1 };
	/* BENCH_RMAPBT=0: an image without the rmap btree (mkfs -m rmapbt=0) */
	const char *rm = getenv("BENCH_RMAPBT");
	if (rm && !strcmp(rm, "0"))
		o.rmapbt = -1;
	FILE *f = fopen(img, keep ? "a" : "w");
	if (!f)
		bench_die(img, -errno);
	fclose(f);
	int rc = rlfs_mkfs(img, &o);
	if (rc)
		bench_die("mkfs", rc);
	struct rlfs_mount *mp;
	rc = rlfs_mount_open(img, RLFS_MOUNT_NOLOCK, &mp);
	if (rc)
		bench_die("mount", rc);
	return mp;
}

static inline uint64_t bench_mkfile(struct rlfs_mount *mp, const char *name)
{
	struct stat st;
	int rc = rlfs_mknod(mp, rlfs_root_ino(mp), name, S_IFREG | 0644, 0, 0, 0, &st);
	if (rc)
		bench_die(name, rc);
	rlfs_forget(mp, st.st_ino, 1);
	return st.st_ino;
}
#endif
#endif

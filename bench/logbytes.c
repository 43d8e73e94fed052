/*
 * logbytes: log bytes written per metadata operation, through the library
 * in process (the same transactions the FUSE daemon runs, without its
 * extra requests).  Build against a build directory's librlfs.a:
 *
 *   cc -O2 -Iinclude -o logbytes bench/logbytes.c BUILD/librlfs.a -lisal -lpthread
 *   logbytes IMAGE N
 *
 * Makes a 1 GiB filesystem (default geometry, with its log) in IMAGE and
 * runs N of each operation, reading the log's bytes_written counter
 * (rlfs_log_get_stats) around each phase:
 *   create        create an empty file + fsync it (its name is durable too)
 *   create+4k     create, write 4 KiB, fsync
 *   unlink        unlink a file + fsync the directory
 *   clone         create a file, clone a 64 KiB one-extent file into it,
 *                 fsync it
 *   create batch  N creates, then one rlfs_sync (group commit: each block
 *                 is logged once per checkpoint however often it changed)
 * Prints "<phase> <ops> <log bytes> <log bytes per op>".  bench/logbytes.sh
 * runs it and the same system calls on kernel XFS for comparison.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BENCH_LIBRLFS
#include "bench.h"

static uint64_t log_bytes(struct rlfs_mount *mp)
{
	struct rlfs_log_stats st;
	rlfs_log_get_stats(mp, &st);
	return st.bytes_written;
}

static void report(const char *phase, long ops, uint64_t bytes)
{
	printf("%s %ld %llu %.0f\n", phase, ops, (unsigned long long)bytes,
	       ops ? (double)bytes / (double)ops : 0.0);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: logbytes IMAGE N\n");
		return 2;
	}
	const char *img = argv[1];
	long n = atol(argv[2]);
	struct rlfs_mount *mp = bench_mount(img, 1ull << 30, 0);
	int rc;
	if (!rlfs_has_log(mp))
		bench_die("the image has no log", 0);
	uint64_t root = rlfs_root_ino(mp);
	static char buf[64 * 1024];
	memset(buf, 0x5a, sizeof(buf));
	char name[64];
	if ((rc = rlfs_sync(mp)))
		bench_die("sync", rc);

	uint64_t b0 = log_bytes(mp);
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "c-%ld", i);
		if ((rc = rlfs_fsync(mp, bench_mkfile(mp, name), 0)))
			bench_die("fsync", rc);
	}
	report("create", n, log_bytes(mp) - b0);

	b0 = log_bytes(mp);
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "w-%ld", i);
		uint64_t ino = bench_mkfile(mp, name);
		if (rlfs_write(mp, ino, buf, 4096, 0) != 4096)
			bench_die("write", i);
		if ((rc = rlfs_fsync(mp, ino, 0)))
			bench_die("fsync", rc);
	}
	report("create+4k", n, log_bytes(mp) - b0);

	b0 = log_bytes(mp);
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "c-%ld", i);
		if ((rc = rlfs_unlink(mp, root, name)))
			bench_die("unlink", rc);
		if ((rc = rlfs_fsync(mp, root, 0)))
			bench_die("fsync dir", rc);
	}
	report("unlink", n, log_bytes(mp) - b0);

	uint64_t src = bench_mkfile(mp, "clone-src");
	if (rlfs_write(mp, src, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		bench_die("write", 0);
	if ((rc = rlfs_sync(mp)))
		bench_die("sync", rc);
	b0 = log_bytes(mp);
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "k-%ld", i);
		uint64_t dst = bench_mkfile(mp, name);
		int64_t cl = rlfs_clone_range(mp, src, 0, dst, 0, sizeof(buf), 0);
		if (cl != (int64_t)sizeof(buf))
			bench_die("clone", (long)cl);
		if ((rc = rlfs_fsync(mp, dst, 0)))
			bench_die("fsync", rc);
	}
	report("clone", n, log_bytes(mp) - b0);

	b0 = log_bytes(mp);
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "b-%ld", i);
		bench_mkfile(mp, name);
	}
	if ((rc = rlfs_sync(mp)))
		bench_die("sync", rc);
	report("create-batch", n, log_bytes(mp) - b0);

	if ((rc = rlfs_mount_close(mp)))
		bench_die("umount", rc);
	return 0;
}

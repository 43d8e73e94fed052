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

#include "reflinkfs/fs.h"

static void die(const char *what, long rc)
{
	fprintf(stderr, "logbytes: %s: %ld\n", what, rc);
	exit(1);
}

static uint64_t log_bytes(struct rlfs_mount *mp)
{
	struct rlfs_log_stats st;
	rlfs_log_get_stats(mp, &st);
	return st.bytes_written;
}

static uint64_t mkfile(struct rlfs_mount *mp, const char *name)
{
	struct stat st;
	int rc = rlfs_mknod(mp, rlfs_root_ino(mp), name, S_IFREG | 0644, 0, 0, 0, &st);
	if (rc)
		die(name, rc);
	rlfs_forget(mp, st.st_ino, 1);
	return st.st_ino;
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
	struct rlfs_mkfs_opts o = { .size_bytes = 1ull << 30, .force = 1 };
	FILE *f = fopen(img, "w");
	if (!f)
		die(img, -1);
	fclose(f);
	int rc = rlfs_mkfs(img, &o);
	if (rc)
		die("mkfs", rc);
	struct rlfs_mount *mp;
	rc = rlfs_mount_open(img, RLFS_MOUNT_NOLOCK, &mp);
	if (rc)
		die("mount", rc);
	if (!rlfs_has_log(mp))
		die("the image has no log", 0);
	uint64_t root = rlfs_root_ino(mp);
	static char buf[64 * 1024];
	memset(buf, 0x5a, sizeof(buf));
	char name[64];
	if ((rc = rlfs_sync(mp)))
		die("sync", rc);

	uint64_t b0 = log_bytes(mp);
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "c-%ld", i);
		if ((rc = rlfs_fsync(mp, mkfile(mp, name), 0)))
			die("fsync", rc);
	}
	report("create", n, log_bytes(mp) - b0);

	b0 = log_bytes(mp);
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "w-%ld", i);
		uint64_t ino = mkfile(mp, name);
		if (rlfs_write(mp, ino, buf, 4096, 0) != 4096)
			die("write", i);
		if ((rc = rlfs_fsync(mp, ino, 0)))
			die("fsync", rc);
	}
	report("create+4k", n, log_bytes(mp) - b0);

	b0 = log_bytes(mp);
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "c-%ld", i);
		if ((rc = rlfs_unlink(mp, root, name)))
			die("unlink", rc);
		if ((rc = rlfs_fsync(mp, root, 0)))
			die("fsync dir", rc);
	}
	report("unlink", n, log_bytes(mp) - b0);

	uint64_t src = mkfile(mp, "clone-src");
	if (rlfs_write(mp, src, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		die("write", 0);
	if ((rc = rlfs_sync(mp)))
		die("sync", rc);
	b0 = log_bytes(mp);
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "k-%ld", i);
		uint64_t dst = mkfile(mp, name);
		int64_t cl = rlfs_clone_range(mp, src, 0, dst, 0, sizeof(buf), 0);
		if (cl != (int64_t)sizeof(buf))
			die("clone", (long)cl);
		if ((rc = rlfs_fsync(mp, dst, 0)))
			die("fsync", rc);
	}
	report("clone", n, log_bytes(mp) - b0);

	b0 = log_bytes(mp);
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "b-%ld", i);
		mkfile(mp, name);
	}
	if ((rc = rlfs_sync(mp)))
		die("sync", rc);
	report("create-batch", n, log_bytes(mp) - b0);

	if ((rc = rlfs_mount_close(mp)))
		die("umount", rc);
	return 0;
}

/*
 * libops: time free-then-allocate patterns through the library, in process
 * (no FUSE, no kernel): the cost of busy extents and busy inodes, which
 * keep freed blocks and inode numbers from reuse until the next metadata
 * flush.  Build against a build directory's librlfs.a:
 *
 *   cc -O2 -Iinclude -o libops bench/libops.c BUILD/librlfs.a -lisal -lpthread
 *   libops IMAGE N [keep]
 *
 * Makes a 1 GiB filesystem in IMAGE (truncated first, unless "keep": then
 * an existing image file, e.g. 1 GiB of zeros written with dd, keeps its
 * host blocks, and data writes into blocks not written before do not pay
 * the host filesystem's block allocation) and runs, each ended by
 * rlfs_sync inside the timed region:
 *   churn     N x (create a file with 16 KiB, unlink the file made 100 earlier)
 *   rewrite   N / 4 x (truncate one file to 0, write 64 KiB into it)
 *   cow       N random 4 KiB overwrites alternating between a 64 MiB file
 *             and its clone (every CoW of a block shared by both frees
 *             nothing, a second overwrite frees the old block's last owner)
 *   create    N empty files made in one directory (the commit path alone:
 *             no data, no FUSE; docs/BENCHMARKS.md compares it with the
 *             code before the log)
 *   unlink    the same N files removed
 * Prints "<phase> <ops> <seconds> <ops per second> <seconds of the sync>".
 * LIBOPS_PHASES="create,unlink" (environment) runs only the named phases
 * (for profiling one of them); unlink needs create.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BENCH_LIBRLFS
#include "bench.h"


static void put(struct rlfs_mount *mp, uint64_t ino, const void *buf, size_t len, off_t off)
{
	ssize_t n = rlfs_write(mp, ino, buf, len, off);
	if (n != (ssize_t)len)
		bench_die("write", (long)n);
}

static double t_sync; /* when the phase's closing rlfs_sync started */

/* Is phase named in $LIBOPS_PHASES (or is the variable unset)? */
static int want(const char *phase)
{
	const char *list = getenv("LIBOPS_PHASES");
	if (!list)
		return 1;
	size_t n = strlen(phase);
	for (const char *p = list; (p = strstr(p, phase)); p += n)
		if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0))
			return 1;
	return 0;
}

static void report(const char *phase, long ops, double t0)
{
	double secs = bench_now() - t0;
	printf("%s %ld %.3f %.0f %.3f\n", phase, ops, secs, (double)ops / secs, bench_now() - t_sync);
}

int main(int argc, char **argv)
{
	if (argc != 3 && !(argc == 4 && !strcmp(argv[3], "keep"))) {
		fprintf(stderr, "usage: libops IMAGE N [keep]\n");
		return 2;
	}
	const char *img = argv[1];
	long n = atol(argv[2]);
	/* keep: an image file whose blocks the host has already */
	struct rlfs_mount *mp = bench_mount(img, 1ull << 30, argc == 4);
	int rc;
	static char buf[64 * 1024];
	memset(buf, 0x5a, sizeof(buf));
	char name[64];

	double t0;
	if (want("churn")) {
		t0 = bench_now();
		for (long i = 0; i < n; i++) {
			snprintf(name, sizeof(name), "churn-%ld", i);
			put(mp, bench_mkfile(mp, name), buf, 16 * 1024, 0);
			if (i >= 100) {
				snprintf(name, sizeof(name), "churn-%ld", i - 100);
				if ((rc = rlfs_unlink(mp, rlfs_root_ino(mp), name)))
					bench_die("unlink", rc);
			}
		}
		t_sync = bench_now();
		if ((rc = rlfs_sync(mp)))
			bench_die("sync", rc);
		report("churn", n, t0);

	}
	if (want("rewrite")) {
		uint64_t rw = bench_mkfile(mp, "rewrite");
		t0 = bench_now();
		for (long i = 0; i < n / 4; i++) {
			struct stat st = { .st_size = 0 };
			if ((rc = rlfs_setattr(mp, rw, &st, RLFS_SET_SIZE, NULL)))
				bench_die("truncate", rc);
			put(mp, rw, buf, sizeof(buf), 0);
		}
		t_sync = bench_now();
		if ((rc = rlfs_sync(mp)))
			bench_die("sync", rc);
		report("rewrite", n / 4, t0);

	}
	if (want("cow")) {
		uint64_t a = bench_mkfile(mp, "cow-a"), b = bench_mkfile(mp, "cow-b");
		const long file_blocks = 64 * 1024 / 4;
		for (long i = 0; i < file_blocks / 16; i++)
			put(mp, a, buf, sizeof(buf), (off_t)i * (off_t)sizeof(buf));
		int64_t cl = rlfs_clone_range(mp, a, 0, b, 0, (uint64_t)file_blocks * 4096, 0);
		if (cl != file_blocks * 4096)
			bench_die("clone", (long)cl);
		if ((rc = rlfs_sync(mp)))
			bench_die("sync", rc);
		uint64_t x = 88172645463325252ull;
		t0 = bench_now();
		for (long i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			put(mp, i & 1 ? b : a, buf, 4096, (off_t)(x % (uint64_t)file_blocks) * 4096);
		}
		t_sync = bench_now();
		if ((rc = rlfs_sync(mp)))
			bench_die("sync", rc);
		report("cow", n, t0);

	}
	if (!want("create"))
		goto out;
	/* the commit path of a plain create and unlink (no data, no FUSE) */
	if ((rc = rlfs_mkdir(mp, rlfs_root_ino(mp), "many", 0755, 0, 0, NULL)))
		bench_die("mkdir", rc);
	struct stat dst;
	if ((rc = rlfs_lookup(mp, rlfs_root_ino(mp), "many", &dst)))
		bench_die("lookup", rc);
	t0 = bench_now();
	for (long i = 0; i < n; i++) {
		struct stat st;
		snprintf(name, sizeof(name), "f-%ld", i);
		if ((rc = rlfs_mknod(mp, dst.st_ino, name, S_IFREG | 0644, 0, 0, 0, &st)))
			bench_die("create", rc);
		rlfs_forget(mp, st.st_ino, 1);
	}
	t_sync = bench_now();
	if ((rc = rlfs_sync(mp)))
		bench_die("sync", rc);
	report("create", n, t0);
	if (want("unlink")) {
		t0 = bench_now();
		for (long i = 0; i < n; i++) {
			snprintf(name, sizeof(name), "f-%ld", i);
			if ((rc = rlfs_unlink(mp, dst.st_ino, name)))
				bench_die("unlink", rc);
		}
		t_sync = bench_now();
		if ((rc = rlfs_sync(mp)))
			bench_die("sync", rc);
		report("unlink", n, t0);
	}
out:;
	struct rlfs_log_stats ls;
	rlfs_log_get_stats(mp, &ls);
	printf("log ckpts %llu ail_pushes %llu inplace %llu borrowed %llu unborrowed %llu "
	       "intents %llu relogged %llu\n",
	       (unsigned long long)ls.ckpts_written, (unsigned long long)ls.ail_pushes,
	       (unsigned long long)ls.inplace_blocks, (unsigned long long)ls.ail_borrowed,
	       (unsigned long long)ls.ail_unborrowed, (unsigned long long)ls.intents_logged,
	       (unsigned long long)ls.intents_relogged);
	if ((rc = rlfs_mount_close(mp)))
		bench_die("umount", rc);
	return 0;
}

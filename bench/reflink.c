/*
 * reflink: the reflink workloads of bench/bench.sh, with plain system calls
 * so that kernel XFS and reflinkfs run exactly the same code.
 *
 *   reflink clone SRC DST        copy_file_range(2) of all of SRC into a new
 *                                DST, then fsync(DST); on XFS and on
 *                                reflinkfs this is a clone (XFS: the VFS
 *                                tries remap_file_range first on one
 *                                filesystem; reflinkfs: the FUSE
 *                                copy_file_range clones the aligned part)
 *   reflink frag FILE N          FILE with N data extents: N * 8 KiB written,
 *                                then every other 4 KiB block punched out
 *                                (N blocks, holes between), fsync (not timed)
 *   reflink randw FILE N SEED    N random block-aligned 4 KiB pwrites inside
 *                                FILE's size, then fsync
 *   reflink prealloc FILE N      FILE with N unwritten extents: fallocate of
 *                                every other 4 KiB block (N blocks, holes
 *                                between, size kept 0), fsync: N rmap records
 *                                without writing data (bench/rmapscale.sh)
 *
 * clone and randw print "<what> <count> <seconds> <rate per second>" (count:
 * bytes for clone, writes for randw); the timed region includes the fsync.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

static void die(const char *what)
{
	fprintf(stderr, "reflink: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int do_clone(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY);
	if (in < 0)
		die(src);
	struct stat st;
	if (fstat(in, &st) < 0)
		die("fstat");
	int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (out < 0)
		die(dst);
	double t0 = bench_now();
	uint64_t done = 0, size = (uint64_t)st.st_size;
	while (done < size) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, size - done, 0);
		if (n < 0)
			die("copy_file_range");
		if (n == 0) {
			errno = EIO;
			die("copy_file_range returned 0 before EOF");
		}
		done += (uint64_t)n;
	}
	if (fsync(out) < 0)
		die("fsync");
	double s = bench_now() - t0;
	printf("clone %" PRIu64 " %.6f %.1f\n", size, s, (double)size / s);
	close(in);
	close(out);
	return 0;
}

static int do_frag(const char *file, uint64_t n)
{
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die(file);
	/* write it all, then punch every other block: writing only every other
	 * block would let XFS's delayed allocation fill the gaps with unwritten
	 * extents (twice the extents, not the same file) */
	static char buf[1 << 20];
	for (uint64_t off = 0; off < n * 8192; off += sizeof(buf)) {
		uint64_t len = n * 8192 - off < sizeof(buf) ? n * 8192 - off : sizeof(buf);
		memset(buf, (int)((off >> 20) % 251) + 1, sizeof(buf));
		if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len)
			die("pwrite");
	}
	if (fsync(fd) < 0)
		die("fsync");
	for (uint64_t i = 0; i < n; i++)
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(i * 8192 + 4096),
			      4096) < 0)
			die("fallocate(PUNCH_HOLE)");
	if (fsync(fd) < 0)
		die("fsync");
	close(fd);
	return 0;
}

static int do_prealloc(const char *file, uint64_t n)
{
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die(file);
	double t0 = bench_now();
	for (uint64_t i = 0; i < n; i++)
		if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)(i * 8192), 4096) < 0)
			die("fallocate");
	if (fsync(fd) < 0)
		die("fsync");
	double s = bench_now() - t0;
	printf("prealloc %" PRIu64 " %.6f %.1f\n", n, s, (double)n / s);
	close(fd);
	return 0;
}

static uint64_t rng;
static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int do_randw(const char *file, uint64_t n, uint64_t seed)
{
	int fd = open(file, O_WRONLY);
	if (fd < 0)
		die(file);
	struct stat st;
	if (fstat(fd, &st) < 0)
		die("fstat");
	uint64_t blocks = (uint64_t)st.st_size / 4096;
	if (blocks == 0) {
		errno = EINVAL;
		die("file smaller than 4 KiB");
	}
	char buf[4096];
	rng = seed;
	double t0 = bench_now();
	for (uint64_t i = 0; i < n; i++) {
		memset(buf, (int)(i & 0xff), sizeof(buf));
		if (pwrite(fd, buf, sizeof(buf), (off_t)(rnd() % blocks * 4096)) != (ssize_t)sizeof(buf))
			die("pwrite");
	}
	if (fsync(fd) < 0)
		die("fsync");
	double s = bench_now() - t0;
	printf("randw %" PRIu64 " %.6f %.1f\n", n, s, (double)n / s);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "clone"))
		return do_clone(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "frag"))
		return do_frag(argv[2], strtoull(argv[3], NULL, 0));
	if (argc == 4 && !strcmp(argv[1], "prealloc"))
		return do_prealloc(argv[2], strtoull(argv[3], NULL, 0));
	if (argc == 5 && !strcmp(argv[1], "randw"))
		return do_randw(argv[2], strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0));
	fprintf(stderr, "usage: reflink clone SRC DST | frag FILE N | randw FILE N SEED | prealloc FILE N\n");
	return 2;
}

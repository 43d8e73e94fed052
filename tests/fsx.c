/*
 * rlfs-fsx: an fsx-style randomized file exerciser.
 *
 * Runs a seeded random sequence of operations on ONE file in a mounted
 * filesystem (reflinkfs through FUSE, or any kernel filesystem) and checks
 * every read against an in-memory copy of what the file must contain.  Plain
 * POSIX/Linux system calls only (pread, pwrite, ftruncate, fallocate, lseek,
 * fsync, mmap): no reflinkfs headers, so it tests what users see.
 *
 * Operations (letters for -X, which disables them):
 *   r  read a random range and compare with the model
 *   w  write random bytes at a random offset (may extend the file)
 *   t  ftruncate to a random size (shrink or grow)
 *   p  fallocate(PUNCH_HOLE|KEEP_SIZE): the range reads as zeros
 *   z  fallocate(ZERO_RANGE), with or without KEEP_SIZE
 *   f  fallocate(0) or fallocate(KEEP_SIZE): size grows only without KEEP_SIZE
 *   s  lseek SEEK_DATA/SEEK_HOLE: bytes skipped by SEEK_DATA must be zero,
 *      SEEK_HOLE never beyond EOF nor inside data (the model's bytes from
 *      the hole to the end of its 512-byte sector must be zero)
 *   m  mmap read of a range, compared with the model
 *   W  (only with -M) store random bytes into a range inside EOF through a
 *      MAP_SHARED writable mapping, msync(MS_SYNC) half the time, munmap
 *   c  close and reopen the file
 *   y  fsync
 * With -F N (N files: FILE, FILE.1 .. FILE.N-1, each op on a random one):
 *   l  clone a block-aligned range of a random file (possibly the same one)
 *      into this one (FICLONERANGE rules; EINVAL cases are provoked and
 *      checked: overlapping same-file ranges, a partial EOF block landing
 *      before the destination's EOF)
 *   x  copy_file_range(2) from a random file (unaligned, possibly the same
 *      file; overlapping same-file ranges must give EINVAL)
 *   u  unshare a range (FALLOC_FL_UNSHARE_RANGE, +-KEEP_SIZE): contents
 *      unchanged, the file grows without KEEP_SIZE
 *   d  dedupe a range of a random file onto this one (FIDEDUPERANGE; half
 *      the time the bytes are written there first so that they match):
 *      the call's errno, the status (same, differs, EINVAL) and
 *      bytes_deduped predicted from the models; contents never change
 *   Clone and unshare use the private reflinkfs ioctls (RLFS_IOC_CLONE_RANGE,
 *   RLFS_IOC_UNSHARE_RANGE) on a FUSE mount, else FICLONERANGE and
 *   fallocate(UNSHARE_RANGE) (kernel XFS/btrfs; with -t a filesystem without
 *   them just loses the op); -P / -K force one or the other.
 *   Every file is checked against its own model; a clone's source is
 *   verified whenever it is read later, and all files at the end.
 * With -A (off by default, so that earlier seeds keep their sequences):
 *   C  collapse a range (FALLOC_FL_COLLAPSE_RANGE): the bytes after it move
 *      down, the file shrinks; now and then an unaligned range or one
 *      reaching EOF, which must fail with EINVAL (changing nothing)
 *   I  insert a range (FALLOC_FL_INSERT_RANGE): a hole of zeros, the bytes
 *      after it move up, the file grows; EINVAL cases as for C (an insert
 *      at or past EOF)
 *   On a FUSE mount (the -P choice) they go through RLFS_IOC_SHIFT_RANGE and
 *   an ftruncate to the new size, as the LD_PRELOAD shim does (the kernel's
 *   FUSE fallocate refuses both modes).
 With -e (off by default, so that earlier seeds keep their sequences; -X e
 * or fstests fsx's -0 turn it off again):
 *   e  exchange range (XFS_IOC_EXCHANGE_RANGE, ioctl_xfs_exchange_range(2);
 *      fstests fsx's OP_EXCHANGE_RANGE): two block-aligned ranges of whole
 *      blocks inside EOF, of this file (not overlapping) or, with -F, of a
 *      random file and this one, swap their bytes; sizes never change.  One
 *      time in sixteen a DRY_RUN (nothing changes); one time in eight an
 *      invalid request whose EINVAL is predicted: overlapping ranges of one
 *      file, an unaligned offset, a range past EOF.  On a FUSE mount (-P)
 *      through RLFS_IOC_EXCHANGE_RANGE, else XFS_IOC_EXCHANGE_RANGE (kernel
 *      XFS made with -i exchange=1; -t turns an EOPNOTSUPP into a disabled
 *      op).
 *
 * Model file (-m PATH): after a successful run the expected contents are
 * saved to PATH (a plain byte copy).  With -c the file is NOT created fresh:
 * the model is loaded from PATH and the existing file is verified against it
 * first (size and every byte), then the run continues from that state.  This
 * is how the integration test checks data across unmount/remount cycles.
 *
 * Exit status: 0 all operations verified, 1 a mismatch or an unexpected
 * error (the last operations are printed), 2 usage error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <linux/fs.h>            /* FICLONERANGE, struct file_clone_range */

/* the private ioctls, straight from the source tree (no include path) */
#include "../include/reflinkfs/ioctl.h"

#ifndef FALLOC_FL_UNSHARE_RANGE
#define FALLOC_FL_UNSHARE_RANGE 0x40
#endif
#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif
#ifndef FALLOC_FL_COLLAPSE_RANGE
#define FALLOC_FL_COLLAPSE_RANGE 0x08
#endif
#ifndef FALLOC_FL_INSERT_RANGE
#define FALLOC_FL_INSERT_RANGE 0x20
#endif

#define LOGSZ 64

/* One file under test and its model.  files[0] is FILE, files[i] FILE.i;
 * the model of files[i] is saved to MODEL (i == 0) or MODEL.i. */
struct fsxfile {
	char *name;
	char *model;
	int fd;
	unsigned char *good;    /* model contents, capacity maxlen + maxop */
	uint64_t size;          /* model size */
};
#define MAXFILES 16
static struct fsxfile files[MAXFILES];
static unsigned nfiles = 1;
static struct fsxfile *cf = &files[0];  /* the file the current op works on */
static const char *modelpath;
static unsigned char *tmpbuf;
static uint64_t maxlen = 8u << 20;
static uint64_t maxop = 256u << 10;
static uint64_t nops = 10000;
static uint64_t seed = 1;
static uint64_t opno;
static int quiet;
static int tolerant;            /* EOPNOTSUPP disables an op instead of failing */
static char disabled[32];
static int odirect;
static int sync_before_seek;    /* -Y: fsync before SEEK_DATA/HOLE (diagnosis) */
static uint64_t rng_state;

static char oplog[LOGSZ][128];
static uint64_t oplog_n;

static uint64_t rnd(void)
{
	/* splitmix64: deterministic for a given seed on every platform */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static void logop(const char *fmt, ...)
{
	va_list ap;
	char *slot = oplog[oplog_n % LOGSZ];
	int len = nfiles > 1 ? snprintf(slot, 128, "%8" PRIu64 " f%td ", opno, cf - files)
			     : snprintf(slot, 128, "%8" PRIu64 " ", opno);
	va_start(ap, fmt);
	vsnprintf(slot + len, (size_t)(128 - len), fmt, ap);
	va_end(ap);
	oplog_n++;
	if (quiet < 0)
		printf("%s\n", slot);
}

static void dump_log(void)
{
	uint64_t first = oplog_n > LOGSZ ? oplog_n - LOGSZ : 0;
	fprintf(stderr, "fsx: last operations (op number, op, offset, length):\n");
	for (uint64_t i = first; i < oplog_n; i++)
		fprintf(stderr, "  %s\n", oplog[i % LOGSZ]);
}

static void fail(const char *fmt, ...)
{
	va_list ap;
	char msg[1024];
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "fsx: FAILURE at op %" PRIu64 " (seed %" PRIu64 ", file %s): %s\n",
		opno, seed, cf->name, msg);
	dump_log();
	/* again at the end, so that a log tail shows what failed */
	fprintf(stderr, "fsx: FAILURE at op %" PRIu64 " (seed %" PRIu64 "): %s\n", opno, seed, msg);
	exit(1);
}

static int op_enabled(char c)
{
	return strchr(disabled, c) == NULL;
}

static void disable_op(char c, const char *why)
{
	size_t n = strlen(disabled);
	if (n + 1 < sizeof(disabled) && op_enabled(c)) {
		disabled[n] = c;
		disabled[n + 1] = 0;
		if (quiet <= 0)
			printf("fsx: op '%c' not supported here (%s), disabled\n", c, why);
	}
}

static void open_file(int create)
{
	int flags = O_RDWR | (create ? O_CREAT | O_TRUNC : 0) | (odirect ? O_DIRECT : 0);
	cf->fd = open(cf->name, flags, 0644);
	if (cf->fd < 0)
		fail("open: %s", strerror(errno));
}

static void check_range(const unsigned char *got, uint64_t off, uint64_t len, const char *what)
{
	if (memcmp(got, cf->good + off, len) == 0)
		return;
	for (uint64_t i = 0; i < len; i++) {
		if (got[i] != cf->good[off + i]) {
			uint64_t j = i;
			while (j < len && got[j] != cf->good[off + j])
				j++;
			fail("%s mismatch at offset %" PRIu64 " (0x%" PRIx64 "): got 0x%02x expected 0x%02x,"
			     " %" PRIu64 " differing bytes from there (read of %" PRIu64 "+%" PRIu64
			     ", model size %" PRIu64 ")",
			     what, off + i, off + i, got[i], cf->good[off + i], j - i, off, len, cf->size);
		}
	}
}

static void full_pread(unsigned char *buf, uint64_t len, uint64_t off, const char *what)
{
	uint64_t done = 0;
	while (done < len) {
		ssize_t n = pread(cf->fd, buf + done, len - done, (off_t)(off + done));
		if (n < 0)
			fail("%s pread(%" PRIu64 ", %" PRIu64 "): %s", what, off + done, len - done,
			     strerror(errno));
		if (n == 0)
			fail("%s pread(%" PRIu64 ", %" PRIu64 "): short read (EOF), model size %" PRIu64,
			     what, off + done, len - done, cf->size);
		done += (uint64_t)n;
	}
}

static void check_size(const char *what)
{
	struct stat st;
	if (fstat(cf->fd, &st) < 0)
		fail("fstat: %s", strerror(errno));
	if ((uint64_t)st.st_size != cf->size)
		fail("%s: file size %" PRIu64 ", expected %" PRIu64, what, (uint64_t)st.st_size,
		     cf->size);
}

static void verify_all(const char *what)
{
	check_size(what);
	for (uint64_t off = 0; off < cf->size; off += maxop) {
		uint64_t len = cf->size - off < maxop ? cf->size - off : maxop;
		full_pread(tmpbuf, len, off, what);
		check_range(tmpbuf, off, len, what);
	}
	/* reading at EOF returns 0 bytes */
	ssize_t n = pread(cf->fd, tmpbuf, 1, (off_t)cf->size);
	if (n != 0)
		fail("%s: read at EOF %" PRIu64 " returned %zd", what, cf->size, n);
}

static void pick_range(uint64_t *off, uint64_t *len, uint64_t limit)
{
	*off = rnd_below(limit);
	/* mostly small, sometimes block aligned, sometimes big */
	switch (rnd_below(4)) {
	case 0:
		*len = 1 + rnd_below(512);
		break;
	case 1:
		*off &= ~4095ull;
		*len = 4096 * (1 + rnd_below(16));
		break;
	default:
		*len = 1 + rnd_below(maxop);
		break;
	}
	if (*len > maxop)
		*len = maxop;
	if (*off + *len > maxlen)
		*len = maxlen - *off;
}

static void op_read(void)
{
	uint64_t off, len;
	if (cf->size == 0) {
		logop("read skipped (empty)");
		return;
	}
	pick_range(&off, &len, cf->size);
	if (off + len > cf->size)
		len = cf->size - off;
	if (len == 0)
		return;
	logop("read   0x%" PRIx64 " +0x%" PRIx64, off, len);
	full_pread(tmpbuf, len, off, "read");
	check_range(tmpbuf, off, len, "read");
}

/* A range inside EOF for the map ops (a store past EOF is not part of
 * the file; pick_range, cut to the size);
 * false if there is none. */
static int pick_inside(uint64_t *off, uint64_t *len)
{
	if (cf->size == 0)
		return 0;
	pick_range(off, len, cf->size);
	if (*off + *len > cf->size)
		*len = cf->size - *off;
	return *len != 0;
}

/* mmap MAP_SHARED of the pages holding [off, off+len): the address of
 * off in it, *maplen and *base for munmap; NULL if the filesystem
 * refuses such mappings and -t lets op be disabled (else fail). */
static unsigned char *map_range(int prot, uint64_t off, uint64_t len, char op, void **base,
				size_t *maplen)
{
	uint64_t pgoff = off & ~((uint64_t)sysconf(_SC_PAGESIZE) - 1);
	const char *what = prot & PROT_WRITE ? "mmap(PROT_WRITE)" : "mmap";
	*maplen = (size_t)(len + (off - pgoff));
	*base = mmap(NULL, *maplen, prot, MAP_SHARED, cf->fd, (off_t)pgoff);
	if (*base == MAP_FAILED) {
		if (errno == ENODEV || errno == EOPNOTSUPP || errno == EINVAL) {
			if (!tolerant)
				fail("%s: %s", what, strerror(errno));
			disable_op(op, strerror(errno));
			return NULL;
		}
		fail("%s: %s", what, strerror(errno));
	}
	return (unsigned char *)*base + (off - pgoff);
}

static void op_mapread(void)
{
	uint64_t off, len;
	void *base;
	size_t maplen;
	if (!pick_inside(&off, &len))
		return;
	logop("mapread 0x%" PRIx64 " +0x%" PRIx64, off, len);
	unsigned char *p = map_range(PROT_READ, off, len, 'm', &base, &maplen);
	if (!p)
		return;
	check_range(p, off, len, "mapread");
	munmap(base, maplen);
}

static void fill_random(unsigned char *buf, uint64_t len);

static void op_mapwrite(void)
{
	uint64_t off, len;
	void *base;
	size_t maplen;
	if (!pick_inside(&off, &len))
		return;
	int sync = (int)rnd_below(2);
	logop("mapwrite 0x%" PRIx64 " +0x%" PRIx64 "%s", off, len, sync ? " msync" : "");
	unsigned char *p = map_range(PROT_READ | PROT_WRITE, off, len, 'W', &base, &maplen);
	if (!p)
		return;
	fill_random(tmpbuf, len);
	memcpy(p, tmpbuf, len);
	if (sync && msync(base, maplen, MS_SYNC) < 0)
		fail("msync: %s", strerror(errno));
	if (munmap(base, maplen) < 0)
		fail("munmap: %s", strerror(errno));
	memcpy(cf->good + off, tmpbuf, len);
}

static void fill_random(unsigned char *buf, uint64_t len)
{
	/* recognizable data: low byte of the op number mixed with noise,
	 * never all zero so that holes are distinguishable */
	uint64_t r = 0;
	for (uint64_t i = 0; i < len; i++) {
		if ((i & 7) == 0)
			r = rnd();
		buf[i] = (unsigned char)((r >> ((i & 7) * 8)) | 1);
	}
}

static void op_write(void)
{
	uint64_t off, len;
	/* favour writes near or past EOF so the file grows */
	uint64_t limit = cf->size + maxop < maxlen ? cf->size + maxop : maxlen;
	pick_range(&off, &len, limit);
	if (len == 0)
		return;
	logop("write  0x%" PRIx64 " +0x%" PRIx64 " (size 0x%" PRIx64 ")", off, len, cf->size);
	fill_random(tmpbuf, len);
	uint64_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(cf->fd, tmpbuf + done, len - done, (off_t)(off + done));
		if (n <= 0)
			fail("pwrite(%" PRIu64 ", %" PRIu64 "): %s", off + done, len - done,
			     n < 0 ? strerror(errno) : "wrote 0 bytes");
		done += (uint64_t)n;
	}
	if (off > cf->size)
		memset(cf->good + cf->size, 0, off - cf->size);
	memcpy(cf->good + off, tmpbuf, len);
	if (off + len > cf->size)
		cf->size = off + len;
}

static void set_size(uint64_t newsize)
{
	if (newsize > cf->size)
		memset(cf->good + cf->size, 0, newsize - cf->size);
	cf->size = newsize;
}

static void op_truncate(void)
{
	uint64_t newsize;
	switch (rnd_below(4)) {
	case 0:
		newsize = 0;
		break;
	case 1:
		newsize = cf->size ? rnd_below(cf->size) : 0;
		break;
	default:
		newsize = rnd_below(maxlen);
		break;
	}
	logop("trunc  0x%" PRIx64 " -> 0x%" PRIx64, cf->size, newsize);
	if (ftruncate(cf->fd, (off_t)newsize) < 0)
		fail("ftruncate(%" PRIu64 "): %s", newsize, strerror(errno));
	set_size(newsize);
}

/* Returns 0 done, 1 not supported (op disabled), exits on other errors. */
static int do_fallocate(char letter, int mode, uint64_t off, uint64_t len, const char *name)
{
	if (fallocate(cf->fd, mode, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno == EOPNOTSUPP && tolerant) {
		disable_op(letter, name);
		return 1;
	}
	fail("fallocate(%s, %" PRIu64 ", %" PRIu64 "): %s", name, off, len, strerror(errno));
	return 1;
}

static void op_punch(void)
{
	uint64_t off, len;
	if (cf->size == 0)
		return;
	pick_range(&off, &len, cf->size);
	if (len == 0)
		return;
	logop("punch  0x%" PRIx64 " +0x%" PRIx64 " (size 0x%" PRIx64 ")", off, len, cf->size);
	if (do_fallocate('p', FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len, "PUNCH_HOLE"))
		return;
	if (off < cf->size) {
		uint64_t end = off + len < cf->size ? off + len : cf->size;
		memset(cf->good + off, 0, end - off);
	}
}

static void op_zero(void)
{
	uint64_t off, len;
	int keep = (int)rnd_below(2);
	uint64_t limit = cf->size + maxop < maxlen ? cf->size + maxop : maxlen;
	pick_range(&off, &len, limit);
	if (len == 0)
		return;
	logop("zero   0x%" PRIx64 " +0x%" PRIx64 "%s (size 0x%" PRIx64 ")", off, len,
	      keep ? " keep" : "", cf->size);
	if (do_fallocate('z', FALLOC_FL_ZERO_RANGE | (keep ? FALLOC_FL_KEEP_SIZE : 0), off, len,
			 "ZERO_RANGE"))
		return;
	uint64_t end = off + len;
	if (!keep && end > cf->size)
		set_size(end);
	if (off < cf->size) {
		uint64_t e = end < cf->size ? end : cf->size;
		memset(cf->good + off, 0, e - off);
	}
}

static void op_falloc(void)
{
	uint64_t off, len;
	int keep = (int)rnd_below(2);
	uint64_t limit = cf->size + maxop < maxlen ? cf->size + maxop : maxlen;
	pick_range(&off, &len, limit);
	if (len == 0)
		return;
	logop("falloc 0x%" PRIx64 " +0x%" PRIx64 "%s (size 0x%" PRIx64 ")", off, len,
	      keep ? " keep" : "", cf->size);
	if (do_fallocate('f', keep ? FALLOC_FL_KEEP_SIZE : 0, off, len, "ALLOCATE"))
		return;
	if (!keep && off + len > cf->size)
		set_size(off + len);
}

static void op_seek(void)
{
	uint64_t off = rnd_below(cf->size + 1);
	logop("seek   0x%" PRIx64 " (size 0x%" PRIx64 ")%s", off, cf->size,
	      sync_before_seek ? " after fsync" : "");
	if (sync_before_seek && fsync(cf->fd) < 0)
		fail("fsync: %s", strerror(errno));
	off_t d = lseek(cf->fd, (off_t)off, SEEK_DATA);
	if (d < 0) {
		if (errno == ENXIO) {
			/* no data from off to EOF: everything must be zero */
			for (uint64_t i = off; i < cf->size; i++)
				if (cf->good[i])
					fail("SEEK_DATA(0x%" PRIx64 ") = ENXIO but byte 0x%" PRIx64
					     " is 0x%02x", off, i, cf->good[i]);
		} else if (errno == EINVAL && tolerant) {
			disable_op('s', "SEEK_DATA");
			return;
		} else {
			fail("SEEK_DATA(%" PRIu64 "): %s", off, strerror(errno));
		}
	} else {
		if ((uint64_t)d < off || (uint64_t)d >= cf->size)
			fail("SEEK_DATA(0x%" PRIx64 ") = 0x%" PRIx64 ", outside [off, size 0x%" PRIx64 ")",
			     off, (uint64_t)d, cf->size);
		for (uint64_t i = off; i < (uint64_t)d; i++)
			if (cf->good[i])
				fail("SEEK_DATA(0x%" PRIx64 ") = 0x%" PRIx64 " skipped data byte 0x%" PRIx64
				     " = 0x%02x", off, (uint64_t)d, i, cf->good[i]);
	}
	off_t h = lseek(cf->fd, (off_t)off, SEEK_HOLE);
	if (h < 0) {
		if (errno == ENXIO && off >= cf->size)
			return;
		fail("SEEK_HOLE(%" PRIu64 "): %s (size %" PRIu64 ")", off, strerror(errno), cf->size);
	}
	if ((uint64_t)h < off || (uint64_t)h > cf->size)
		fail("SEEK_HOLE(0x%" PRIx64 ") = 0x%" PRIx64 ", outside [off, size 0x%" PRIx64 "]", off,
		     (uint64_t)h, cf->size);
	if (off >= cf->size)
		fail("SEEK_HOLE at EOF 0x%" PRIx64 " returned 0x%" PRIx64 " instead of ENXIO", off,
		     (uint64_t)h);
	/* A hole before EOF starts at h and runs at least to the end of h's
	 * filesystem block, so it reads as zeros there.  The model does not
	 * know the block size; no Linux filesystem has blocks below 512 bytes,
	 * so the bytes from h to the next 512-byte boundary (or EOF) must be
	 * zero: a "hole" reported inside written data fails here (written
	 * bytes are random, so a data block almost surely starts non-zero). */
	uint64_t hend = ((uint64_t)h | 511) + 1;
	if (hend > cf->size)
		hend = cf->size;
	for (uint64_t i = (uint64_t)h; i < hend; i++)
		if (cf->good[i])
			fail("SEEK_HOLE(0x%" PRIx64 ") = 0x%" PRIx64 " but byte 0x%" PRIx64
			     " is data 0x%02x", off, (uint64_t)h, i, cf->good[i]);
}

static void op_reopen(void)
{
	logop("reopen");
	if (close(cf->fd) < 0)
		fail("close: %s", strerror(errno));
	open_file(0);
	check_size("reopen");
}

static void op_fsync(void)
{
	logop("fsync");
	if (fsync(cf->fd) < 0)
		fail("fsync: %s", strerror(errno));
}

/* ---- reflink operations between the files ---------------------------- */

/* How clone and unshare reach the filesystem: the private reflinkfs ioctls
 * (a FUSE mount of reflinkfs; no shim needed), or the kernel's FICLONERANGE
 * and fallocate(FALLOC_FL_UNSHARE_RANGE) (XFS, btrfs, tmpfs: EOPNOTSUPP). */
enum { REFLINK_AUTO, REFLINK_PRIVATE, REFLINK_KERNEL };
static int reflink_api = REFLINK_AUTO;
static uint64_t blksz = 4096;   /* clone alignment (-b) */

static struct fsxfile *pick_file(void)
{
	return nfiles > 1 ? &files[rnd_below(nfiles)] : &files[0];
}

/* Fills the gap between the model's EOF and off with zeros and grows it to
 * cover [off, off+len). */
static void model_grow(struct fsxfile *f, uint64_t off, uint64_t len)
{
	if (off > f->size)
		memset(f->good + f->size, 0, off - f->size);
	if (off + len > f->size)
		f->size = off + len;
}

static int sys_clone_range(struct fsxfile *src, uint64_t soff, uint64_t len, uint64_t doff)
{
	if (reflink_api == REFLINK_PRIVATE) {
		struct rlfs_ioc_clone_range a = {
			.src_fd = src->fd, .src_offset = soff, .src_length = len,
			.dest_offset = doff,
		};
		return ioctl(cf->fd, RLFS_IOC_CLONE_RANGE, &a);
	}
	struct file_clone_range a = {
		.src_fd = src->fd, .src_offset = soff, .src_length = len, .dest_offset = doff,
	};
	return ioctl(cf->fd, FICLONERANGE, &a);
}

static int sys_unshare(uint64_t off, uint64_t len, int keep)
{
	if (reflink_api == REFLINK_PRIVATE) {
		struct rlfs_ioc_unshare u = {
			.offset = off, .length = len, .flags = keep ? RLFS_IOC_UNSHARE_KEEP_SIZE : 0,
		};
		return ioctl(cf->fd, RLFS_IOC_UNSHARE_RANGE, &u);
	}
	return fallocate(cf->fd, FALLOC_FL_UNSHARE_RANGE | (keep ? FALLOC_FL_KEEP_SIZE : 0),
			 (off_t)off, (off_t)len);
}

/* l: FICLONERANGE from a random file (possibly the same one) into cf, with
 * the kernel's rules (fs/remap_range.c generic_remap_checks): offsets
 * block-aligned, length block-aligned unless the range ends at source EOF,
 * length 0 = to source EOF; a partial EOF block landing before the
 * destination's EOF and overlapping same-file ranges are EINVAL (checked). */
static void op_clone(void)
{
	struct fsxfile *src = pick_file();
	if (src->size == 0)
		return;
	uint64_t soff = rnd_below(src->size) & ~(blksz - 1);
	uint64_t len, eff;
	int kind = (int)rnd_below(4);
	if (kind == 0) {
		len = 0;                        /* to EOF */
		eff = src->size - soff;
	} else {
		len = blksz * (1 + rnd_below(maxop / blksz ? maxop / blksz : 1));
		if (kind == 1 || soff + len > src->size)
			len = src->size - soff; /* explicitly to EOF */
		eff = len;
	}
	if (eff > maxlen)
		return;
	uint64_t limit = cf->size + maxop;
	if (limit > maxlen - eff)
		limit = maxlen - eff;
	uint64_t doff = rnd_below(limit + 1) & ~(blksz - 1);
	int to_eof_partial = soff + eff == src->size && (eff & (blksz - 1));
	uint64_t bcount = to_eof_partial ? ((eff + blksz - 1) & ~(blksz - 1)) : eff;
	int want = 0;
	if (src == cf && doff + bcount > soff && doff < soff + bcount)
		want = EINVAL;
	else if (to_eof_partial && doff + eff < cf->size)
		want = EINVAL;
	logop("clone  %s 0x%" PRIx64 " +0x%" PRIx64 "%s -> 0x%" PRIx64 " (sizes 0x%" PRIx64
	      " 0x%" PRIx64 ")%s", src->name, soff, eff, len ? "" : " (len 0)", doff, src->size,
	      cf->size, want ? " expect EINVAL" : "");
	int got = sys_clone_range(src, soff, len, doff) == 0 ? 0 : errno;
	if ((got == EOPNOTSUPP || got == ENOTTY || got == EXDEV) && tolerant) {
		disable_op('l', strerror(got));
		return;
	}
	if (got != want)
		fail("clone %s 0x%" PRIx64 "+0x%" PRIx64 " -> 0x%" PRIx64 ": %s, expected %s",
		     src->name, soff, len, doff, got ? strerror(got) : "success",
		     want ? strerror(want) : "success");
	if (got)
		return;
	memmove(tmpbuf, src->good + soff, eff);  /* src may be cf */
	model_grow(cf, doff, eff);
	memcpy(cf->good + doff, tmpbuf, eff);
}

static int sys_dedupe_range(struct fsxfile *src, uint64_t soff, uint64_t len, uint64_t doff,
			    int *status, uint64_t *bytes)
{
	if (reflink_api == REFLINK_PRIVATE) {
		static struct rlfs_ioc_dedupe_range a;
		memset(&a, 0, sizeof(a));
		a.src_offset = soff;
		a.src_length = len;
		a.dest_count = 1;
		a.info[0].dest_fd = cf->fd;
		a.info[0].dest_offset = doff;
		int r = ioctl(src->fd, RLFS_IOC_DEDUPE_RANGE, &a);
		*status = a.info[0].status;
		*bytes = a.info[0].bytes_deduped;
		return r;
	}
	struct {
		struct file_dedupe_range h;
		struct file_dedupe_range_info i;
	} a;
	memset(&a, 0, sizeof(a));
	a.h.src_offset = soff;
	a.h.src_length = len;
	a.h.dest_count = 1;
	a.i.dest_fd = cf->fd;
	a.i.dest_offset = doff;
	int r = ioctl(src->fd, FIDEDUPERANGE, &a);
	*status = a.i.status;
	*bytes = a.i.bytes_deduped;
	return r;
}

/* d: FIDEDUPERANGE from a random file (possibly the same one) onto cf,
 * half the time after writing the source's bytes there (so that they
 * match).  The result is predicted from the models with the kernel's
 * rules (fs/remap_range.c): a source range past its EOF fails the call
 * (EINVAL); len 0 is "same", 0 bytes; per destination: a range past dst
 * EOF or overlapping in one file EINVAL; the length is cut to whole
 * blocks unless both ranges end at EOF; then the compare (DIFFERS or
 * same, bytes_deduped = the length asked).  Contents never change. */
static void op_dedupe(void)
{
	struct fsxfile *src = pick_file();
	if (src->size == 0 || cf->size == 0)
		return;
	uint64_t soff = rnd_below(src->size) & ~(blksz - 1);
	uint64_t len = rnd_below(4) == 0 ? src->size - soff :
		       blksz * (1 + rnd_below(maxop / blksz ? maxop / blksz : 1));
	if (rnd_below(4) == 0)
		len += rnd_below(blksz);       /* an unaligned tail */
	uint64_t doff = rnd_below(cf->size + blksz) & ~(blksz - 1);
	if (rnd_below(2) && soff + len <= src->size && doff + len <= maxlen &&
	    !(src == cf && doff + len > soff && doff < soff + len)) {
		/* make the destination range equal to the source's */
		memcpy(tmpbuf, src->good + soff, len);
		uint64_t done = 0;
		while (done < len) {
			ssize_t n = pwrite(cf->fd, tmpbuf + done, len - done, (off_t)(doff + done));
			if (n <= 0)
				fail("pwrite: %s", n < 0 ? strerror(errno) : "wrote 0 bytes");
			done += (uint64_t)n;
		}
		model_grow(cf, doff, len);
		memcpy(cf->good + doff, tmpbuf, len);
	}
	int want_call = 0, want_status = 0;
	if (soff + len > src->size) {
		want_call = EINVAL;
	} else if (len) {
		uint64_t count = len, bcount;
		if (soff >= src->size || doff >= cf->size || doff + len > cf->size) {
			want_status = -EINVAL;
		} else {
			if (soff + count == src->size && doff + count == cf->size) {
				bcount = ((src->size + blksz - 1) & ~(blksz - 1)) - soff;
			} else {
				count &= ~(blksz - 1);
				bcount = count;
			}
			if (src == cf && doff + bcount > soff && doff < soff + bcount)
				want_status = -EINVAL;
			else if (count && memcmp(src->good + soff, cf->good + doff, count) != 0)
				want_status = 1;
		}
	}
	logop("dedupe %s 0x%" PRIx64 " +0x%" PRIx64 " -> 0x%" PRIx64 " (sizes 0x%" PRIx64
	      " 0x%" PRIx64 ") expect %d/%d", src->name, soff, len, doff, src->size, cf->size,
	      want_call, want_status);
	int status = 0;
	uint64_t bytes = 0;
	int got = sys_dedupe_range(src, soff, len, doff, &status, &bytes) == 0 ? 0 : errno;
	if ((got == EOPNOTSUPP || got == ENOTTY || (got == 0 && status == -EOPNOTSUPP)) &&
	    tolerant) {
		disable_op('d', strerror(got ? got : EOPNOTSUPP));
		return;
	}
	if (got != want_call || (!got && status != want_status) ||
	    (!got && status == 0 && bytes != len))
		fail("dedupe %s 0x%" PRIx64 "+0x%" PRIx64 " -> 0x%" PRIx64
		     ": call %d status %d bytes %" PRIu64 ", expected call %d status %d",
		     src->name, soff, len, doff, got, status, bytes, want_call, want_status);
}

/* x: copy_file_range(2) from a random file (possibly the same one) into cf:
 * any offsets and lengths; the count is cut at source EOF; overlapping
 * same-file ranges are EINVAL (fs/read_write.c generic_copy_file_checks). */
static void op_copy_range(void)
{
	struct fsxfile *src = pick_file();
	uint64_t soff, len;
	pick_range(&soff, &len, src->size + 1);
	uint64_t eff = soff >= src->size ? 0 : (len < src->size - soff ? len : src->size - soff);
	uint64_t limit = cf->size + maxop;
	if (limit > maxlen - len)
		limit = maxlen - len;
	uint64_t doff = rnd_below(limit + 1);
	int want = 0;
	if (src == cf && eff && doff + eff > soff && doff < soff + eff)
		want = EINVAL;
	logop("copyr  %s 0x%" PRIx64 " +0x%" PRIx64 " -> 0x%" PRIx64 " (sizes 0x%" PRIx64
	      " 0x%" PRIx64 ")%s", src->name, soff, len, doff, src->size, cf->size,
	      want ? " expect EINVAL" : "");
	uint64_t done = 0;
	do {
		loff_t in = (loff_t)(soff + done), out = (loff_t)(doff + done);
		ssize_t n = copy_file_range(src->fd, &in, cf->fd, &out, len - done, 0);
		if (n < 0) {
			if ((errno == EOPNOTSUPP || errno == EXDEV || errno == ENOSYS) && tolerant) {
				disable_op('x', strerror(errno));
				return;
			}
			if (errno == want && done == 0)
				return;
			fail("copy_file_range %s 0x%" PRIx64 " -> 0x%" PRIx64 " +0x%" PRIx64
			     " (done 0x%" PRIx64 "): %s%s", src->name, soff, doff, len, done,
			     strerror(errno), want ? "" : ", expected success");
		}
		if (want)
			fail("copy_file_range of overlapping same-file ranges returned %zd, expected"
			     " EINVAL", n);
		if (n == 0 && eff == 0)
			break;
		if (n == 0)
			fail("copy_file_range %s 0x%" PRIx64 " -> 0x%" PRIx64 ": returned 0 after 0x%"
			     PRIx64 " of 0x%" PRIx64 " bytes", src->name, soff, doff, done, eff);
		done += (uint64_t)n;
	} while (done < eff);
	if (done != eff)
		fail("copy_file_range copied 0x%" PRIx64 " bytes, expected 0x%" PRIx64, done, eff);
	if (eff == 0)
		return;
	memmove(tmpbuf, src->good + soff, eff);
	model_grow(cf, doff, eff);
	memcpy(cf->good + doff, tmpbuf, eff);
}

/* u: unshare a range of cf (FALLOC_FL_UNSHARE_RANGE semantics: contents
 * unchanged; without KEEP_SIZE the file grows to off+len as for mode 0). */
static void op_unshare(void)
{
	uint64_t off, len;
	int keep = (int)rnd_below(2);
	uint64_t limit = cf->size + maxop < maxlen ? cf->size + maxop : maxlen;
	pick_range(&off, &len, limit);
	if (len == 0)
		return;
	logop("unshr  0x%" PRIx64 " +0x%" PRIx64 "%s (size 0x%" PRIx64 ")", off, len,
	      keep ? " keep" : "", cf->size);
	if (sys_unshare(off, len, keep) != 0) {
		if ((errno == EOPNOTSUPP || errno == ENOTTY) && tolerant) {
			disable_op('u', strerror(errno));
			return;
		}
		fail("unshare(0x%" PRIx64 ", 0x%" PRIx64 "%s): %s", off, len, keep ? ", keep" : "",
		     strerror(errno));
	}
	if (!keep && off + len > cf->size)
		set_size(off + len);
}

/* ---- collapse / insert range ---------------------------------------- */

static int sys_shift(int collapse, uint64_t off, uint64_t len)
{
	if (reflink_api == REFLINK_PRIVATE) {
		struct rlfs_ioc_shift a = {
			.offset = off, .length = len,
			.flags = collapse ? RLFS_IOC_SHIFT_COLLAPSE : RLFS_IOC_SHIFT_INSERT,
		};
		if (ioctl(cf->fd, RLFS_IOC_SHIFT_RANGE, &a) != 0)
			return -1;
		return ftruncate(cf->fd, (off_t)a.new_size);
	}
	return fallocate(cf->fd, collapse ? FALLOC_FL_COLLAPSE_RANGE : FALLOC_FL_INSERT_RANGE,
			 (off_t)off, (off_t)len);
}

/* C / I: one collapse or insert of cf; one time in eight a random
 * (usually invalid) range whose EINVAL is predicted: offset or length not
 * a multiple of blksz, a collapse reaching EOF, an insert at or past EOF. */
static void op_shift(int collapse)
{
	char letter = collapse ? 'C' : 'I';
	const char *name = collapse ? "COLLAPSE_RANGE" : "INSERT_RANGE";
	uint64_t nb = cf->size / blksz, off, len;
	uint64_t maxb = maxop / blksz ? maxop / blksz : 1;
	if (rnd_below(8) == 0) {
		off = rnd_below(cf->size + 2 * blksz);
		len = 1 + rnd_below(4 * blksz);
		if (rnd_below(2)) {
			off &= ~(blksz - 1);
			len = (len + blksz - 1) & ~(blksz - 1);
		}
	} else if (collapse) {
		if (nb < 2)
			return;
		off = rnd_below(nb - 1);
		uint64_t room = nb - 1 - off;
		len = (1 + rnd_below(room < maxb ? room : maxb)) * blksz;
		off *= blksz;
	} else {
		if (cf->size == 0)
			return;
		off = rnd_below((cf->size + blksz - 1) / blksz) * blksz;
		len = (1 + rnd_below(maxb)) * blksz;
	}
	int aligned = ((off | len) & (blksz - 1)) == 0;
	int valid = aligned && (collapse ? off + len < cf->size : off < cf->size);
	if (!collapse && cf->size + len > maxlen) {
		if (valid)
			return;         /* the model has no room */
	}
	logop("%s 0x%" PRIx64 " +0x%" PRIx64 " (size 0x%" PRIx64 ")%s",
	      collapse ? "collps" : "insert", off, len, cf->size, valid ? "" : " (EINVAL)");
	if (sys_shift(collapse, off, len) != 0) {
		if ((errno == EOPNOTSUPP || errno == ENOTTY) && tolerant) {
			disable_op(letter, strerror(errno));
			return;
		}
		if (!valid && errno == EINVAL)
			return;
		fail("fallocate(%s, 0x%" PRIx64 ", 0x%" PRIx64 "): %s%s", name, off, len,
		     strerror(errno), valid ? "" : " (expected EINVAL)");
	}
	if (!valid)
		fail("fallocate(%s, 0x%" PRIx64 ", 0x%" PRIx64 ") succeeded, expected EINVAL "
		     "(size 0x%" PRIx64 ")", name, off, len, cf->size);
	if (collapse) {
		memmove(cf->good + off, cf->good + off + len, cf->size - off - len);
		cf->size -= len;
	} else {
		memmove(cf->good + off + len, cf->good + off, cf->size - off);
		memset(cf->good + off, 0, len);
		cf->size += len;
	}
}

/* ---- exchange range -------------------------------------------------- */

/* struct xfs_exchange_range and XFS_IOC_EXCHANGE_RANGE as in the kernel's
 * fs/xfs/libxfs/xfs_fs.h (Linux 6.10): 40 bytes, issued on file2. */
struct fsx_xfs_exchange_range {
	int32_t file1_fd;
	uint32_t pad;
	uint64_t file1_offset;
	uint64_t file2_offset;
	uint64_t length;
	uint64_t flags;
};
#define FSX_XFS_IOC_EXCHANGE_RANGE _IOW('X', 129, struct fsx_xfs_exchange_range)
#define FSX_EXCHANGE_DRY_RUN (1ULL << 2)        /* XFS_EXCHANGE_RANGE_DRY_RUN */

/* Exchanges [off1, +len) of f1 with [off2, +len) of cf (file2): 0 or -1
 * with errno. */
static int sys_exchange_range(struct fsxfile *f1, uint64_t off1, uint64_t off2, uint64_t len,
			      uint64_t flags)
{
	if (reflink_api == REFLINK_PRIVATE) {
		struct rlfs_ioc_exchange_range a = {
			.file1_fd = f1->fd, .file1_offset = off1, .file2_offset = off2,
			.length = len, .flags = flags,
		};
		return ioctl(cf->fd, RLFS_IOC_EXCHANGE_RANGE, &a);
	}
	struct fsx_xfs_exchange_range a = {
		.file1_fd = f1->fd, .file1_offset = off1, .file2_offset = off2, .length = len,
		.flags = flags,
	};
	return ioctl(cf->fd, FSX_XFS_IOC_EXCHANGE_RANGE, &a);
}

/* e: exchange a block-aligned range of a random file f1 (possibly cf) with
 * one of cf, as fstests fsx's OP_EXCHANGE_RANGE (whole blocks inside both
 * EOFs, not overlapping in one file), predicted from the models: the
 * bytes swap.  Sometimes DRY_RUN (no change) or an invalid range whose
 * EINVAL is predicted (the man page's rules: overlap in one file,
 * unaligned offset, a range past EOF). */
static void op_exchange(void)
{
	struct fsxfile *f1 = pick_file();
	uint64_t nb1 = f1->size / blksz, nb2 = cf->size / blksz;
	uint64_t maxb = maxop / blksz ? maxop / blksz : 1;
	uint64_t room = f1 == cf ? nb2 / 2 : (nb1 < nb2 ? nb1 : nb2);
	if (room > maxb)
		room = maxb;
	uint64_t len, off1, off2, flags = 0;
	int invalid = rnd_below(8) == 0;
	if (room == 0) {
		if (!invalid || f1->size == 0 || cf->size == 0)
			return;
		room = 1;
	}
	len = 1 + rnd_below(room);
	if (f1 == cf) {
		/* off2 anywhere [off2, +len) misses [off1, +len) */
		off1 = rnd_below(nb2 >= len ? nb2 - len + 1 : 1);
		uint64_t before = off1 >= len ? off1 - len + 1 : 0;
		uint64_t after = nb2 >= off1 + 2 * len ? nb2 - off1 - 2 * len + 1 : 0;
		if (before + after == 0) {
			if (!invalid)
				return;
			off2 = off1;
		} else {
			uint64_t r = rnd_below(before + after);
			off2 = r < before ? r : off1 + len + (r - before);
		}
	} else {
		off1 = rnd_below(nb1 >= len ? nb1 - len + 1 : 1);
		off2 = rnd_below(nb2 >= len ? nb2 - len + 1 : 1);
	}
	off1 *= blksz;
	off2 *= blksz;
	len *= blksz;
	const char *why = "";
	if (invalid) {
		/* 0 overlap (one file only), 1 unaligned, 2 past file2's EOF */
		uint64_t kind = rnd_below(3);
		if (kind == 0 && f1 == cf) {
			off2 = off1 + rnd_below(len / blksz) * blksz;
			why = " (EINVAL: overlap)";
		} else if (kind <= 1 && blksz > 1) {
			off2 += 1 + rnd_below(blksz - 1);
			why = " (EINVAL: unaligned)";
		} else {
			len = (cf->size - off2) / blksz * blksz + blksz;
			why = " (EINVAL: past EOF)";
		}
	} else if (rnd_below(16) == 0) {
		flags = FSX_EXCHANGE_DRY_RUN;
		why = " (dry run)";
	}
	logop("xchg   %s 0x%" PRIx64 " <-> 0x%" PRIx64 " +0x%" PRIx64 " (sizes 0x%" PRIx64
	      " 0x%" PRIx64 ")%s", f1->name, off1, off2, len, f1->size, cf->size, why);
	int got = sys_exchange_range(f1, off1, off2, len, flags) == 0 ? 0 : errno;
	if ((got == EOPNOTSUPP || got == ENOTTY || got == EXDEV) && tolerant) {
		disable_op('e', strerror(got));
		return;
	}
	int want = invalid ? EINVAL : 0;
	if (got != want)
		fail("exchange range %s 0x%" PRIx64 " <-> 0x%" PRIx64 " +0x%" PRIx64 "%s: %s, "
		     "expected %s", f1->name, off1, off2, len, why,
		     got ? strerror(got) : "success", want ? strerror(want) : "success");
	if (got || flags)
		return;
	/* the model: the two ranges swap their bytes */
	memcpy(tmpbuf, f1->good + off1, len);
	memmove(f1->good + off1, cf->good + off2, len);
	memcpy(cf->good + off2, tmpbuf, len);
}

static void op_collapse(void)
{
	op_shift(1);
}

static void op_insert(void)
{
	op_shift(0);
}

static void load_model(void)
{
	int mfd = open(cf->model, O_RDONLY);
	if (mfd < 0)
		fail("cannot open model %s: %s", cf->model, strerror(errno));
	struct stat st;
	if (fstat(mfd, &st) < 0)
		fail("fstat model: %s", strerror(errno));
	if ((uint64_t)st.st_size > maxlen)
		fail("model %s is %" PRIu64 " bytes, larger than -l %" PRIu64, cf->model,
		     (uint64_t)st.st_size, maxlen);
	cf->size = (uint64_t)st.st_size;
	uint64_t done = 0;
	while (done < cf->size) {
		ssize_t n = read(mfd, cf->good + done, cf->size - done);
		if (n <= 0)
			fail("reading model %s: %s", cf->model, n < 0 ? strerror(errno) : "short");
		done += (uint64_t)n;
	}
	close(mfd);
}

static void save_model(void)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", cf->model);
	int mfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (mfd < 0)
		fail("cannot create model %s: %s", tmp, strerror(errno));
	uint64_t done = 0;
	while (done < cf->size) {
		ssize_t n = write(mfd, cf->good + done, cf->size - done);
		if (n <= 0)
			fail("writing model %s: %s", tmp, n < 0 ? strerror(errno) : "short");
		done += (uint64_t)n;
	}
	if (fsync(mfd) < 0 || close(mfd) < 0 || rename(tmp, cf->model) < 0)
		fail("saving model %s: %s", cf->model, strerror(errno));
}

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
		"usage: rlfs-fsx [-N ops] [-S seed] [-l maxlen] [-o maxoplen] [-m model [-c]]\n"
		"                [-X letters] [-t] [-d] [-Y] [-A] [-e] [-0] [-F nfiles [-b blksz] [-P|-K]]\n"
		"                [-q|-v] FILE\n"
		"  -N ops     number of operations (default 10000)\n"
		"  -S seed    random seed (default 1; 0 = time based)\n"
		"  -l bytes   largest file size (default 8M; K/M/G suffixes)\n"
		"  -o bytes   largest single operation (default 256K)\n"
		"  -m path    save the expected contents to path at the end\n"
		"  -c         continue: load -m model, verify FILE against it, then run\n"
		"  -X letters disable ops: r read, w write, t truncate, p punch, z zero range,\n"
		"             f fallocate, s seek data/hole, m mmap read, c reopen, y fsync,\n"
		"             l clone, x copy_file_range, u unshare, d dedupe (these four\n"
		"             need -F)\n"
		"  -A         also C collapse range and I insert range (off by default)\n"
		"  -e         also e exchange range (off by default; block-aligned ranges\n"
		"             of one file, or of two with -F); -X e or -0 turns it off\n"
		"  -M         also W: stores through a shared writable mmap (off by default)\n"
		"  -F n       n files FILE, FILE.1 .. (models MODEL, MODEL.1 ..) with clone,\n"
		"             copy_file_range and unshare ops between them (n <= 16)\n"
		"  -b bytes   clone/exchange alignment (default 4096, the filesystem block\n"
		"             size)\n"
		"  -P / -K    clone/unshare/exchange through the private reflinkfs ioctls /\n"
		"             the kernel's FICLONERANGE + FALLOC_FL_UNSHARE_RANGE +\n"
		"             XFS_IOC_EXCHANGE_RANGE (default: by statfs type, FUSE ->\n"
		"             private)\n"
		"  -t         tolerate EOPNOTSUPP (disable that op) instead of failing\n"
		"  -d         open with O_DIRECT\n"
		"  -Y         fsync before every SEEK_DATA/SEEK_HOLE check (tells cache\n"
		"             effects from mapping bugs)\n"
		"  -q         quiet; -v print every op\n"
		"exit: 0 verified, 1 failure (with the last ops), 2 usage\n");
	exit(code);
}

static uint64_t parse_size(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s)
		usage(2);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end)
		usage(2);
	return v;
}

static void open_all(int create)
{
	for (unsigned i = 0; i < nfiles; i++) {
		cf = &files[i];
		open_file(create);
	}
	cf = &files[0];
}

int main(int argc, char **argv)
{
	int opt, cont = 0, multi = 0, shift_ops = 0, exchange_ops = 0, map_writes = 0;
	while ((opt = getopt(argc, argv, "N:S:l:o:m:cX:tdYqvhF:b:KPAe0M")) != -1) {
		switch (opt) {
		case 'N': nops = parse_size(optarg); break;
		case 'S': seed = parse_size(optarg); break;
		case 'l': maxlen = parse_size(optarg); break;
		case 'o': maxop = parse_size(optarg); break;
		case 'm': modelpath = optarg; break;
		case 'c': cont = 1; break;
		case 'X': snprintf(disabled + strlen(disabled), sizeof(disabled) - strlen(disabled),
				   "%s", optarg); break;
		case 't': tolerant = 1; break;
		case 'd': odirect = 1; break;
		case 'Y': sync_before_seek = 1; break;
		case 'q': quiet = 1; break;
		case 'v': quiet = -1; break;
		case 'F': nfiles = (unsigned)parse_size(optarg); multi = 1; break;
		case 'b': blksz = parse_size(optarg); break;
		case 'K': reflink_api = REFLINK_KERNEL; break;
		case 'P': reflink_api = REFLINK_PRIVATE; break;
		case 'A': shift_ops = 1; break;
		case 'e': exchange_ops = 1; break;
		case '0': exchange_ops = -1; break;   /* fstests fsx: no exchange */
		case 'M': map_writes = 1; break;
		case 'h': usage(0); break;
		default: usage(2);
		}
	}
	if (optind != argc - 1 || maxlen == 0 || maxop == 0 || (cont && !modelpath) ||
	    nfiles < 1 || nfiles > MAXFILES || blksz == 0 || (blksz & (blksz - 1)))
		usage(2);
	/* the reflink ops run only when asked for with -F (05-fsx keeps its
	 * sequences) */
	if (!multi && strlen(disabled) + 4 < sizeof(disabled))
		strcat(disabled, "lxud");
	if (!shift_ops && strlen(disabled) + 2 < sizeof(disabled))
		strcat(disabled, "CI");
	if (exchange_ops <= 0 && strlen(disabled) + 1 < sizeof(disabled))
		strcat(disabled, "e");
	/* opt-in, and last in the table: without -M the sequences of a seed
	 * stay what they were */
	if (!map_writes && strlen(disabled) + 1 < sizeof(disabled))
		strcat(disabled, "W");
	if (seed == 0)
		seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
	rng_state = seed;
	if (maxop > maxlen)
		maxop = maxlen;
	tmpbuf = NULL;
	if (posix_memalign((void **)&tmpbuf, 4096, maxlen + maxop + 4096))
		fail("out of memory");
	for (unsigned i = 0; i < nfiles; i++) {
		struct fsxfile *f = &files[i];
		size_t n = strlen(argv[optind]) + 16;
		f->name = malloc(n);
		f->good = calloc(1, maxlen + maxop);
		if (!f->name || !f->good)
			fail("out of memory");
		if (i == 0)
			snprintf(f->name, n, "%s", argv[optind]);
		else
			snprintf(f->name, n, "%s.%u", argv[optind], i);
		if (modelpath) {
			n = strlen(modelpath) + 16;
			f->model = malloc(n);
			if (!f->model)
				fail("out of memory");
			if (i == 0)
				snprintf(f->model, n, "%s", modelpath);
			else
				snprintf(f->model, n, "%s.%u", modelpath, i);
		}
		f->fd = -1;
	}
	cf = &files[0];

	if (cont) {
		open_all(0);
		for (unsigned i = 0; i < nfiles; i++) {
			cf = &files[i];
			load_model();
			verify_all("initial verify against model");
			if (quiet <= 0)
				printf("fsx: %s matches model %s (%" PRIu64 " bytes)\n", cf->name,
				       cf->model, cf->size);
		}
	} else {
		open_all(1);
	}
	if (reflink_api == REFLINK_AUTO) {
		struct statfs sfs;
		if (fstatfs(files[0].fd, &sfs) < 0)
			fail("fstatfs: %s", strerror(errno));
		/* FUSE_SUPER_MAGIC: a reflinkfs mount (the private ioctls) */
		reflink_api = (unsigned long)sfs.f_type == 0x65735546ul ? REFLINK_PRIVATE
									: REFLINK_KERNEL;
	}

	static const struct { char letter; unsigned weight; void (*fn)(void); } ops[] = {
		{'r', 20, op_read}, {'w', 30, op_write}, {'t', 5, op_truncate},
		{'p', 8, op_punch}, {'z', 6, op_zero}, {'f', 6, op_falloc},
		{'s', 5, op_seek}, {'m', 3, op_mapread}, {'c', 1, op_reopen},
		{'y', 1, op_fsync}, {'l', 12, op_clone}, {'x', 8, op_copy_range},
		{'u', 4, op_unshare}, {'d', 6, op_dedupe},
		{'C', 4, op_collapse}, {'I', 4, op_insert}, {'e', 6, op_exchange},
		{'W', 4, op_mapwrite},
	};
	const size_t nkinds = sizeof(ops) / sizeof(ops[0]);
	uint64_t counts[24] = {0};

	for (opno = 1; opno <= nops; opno++) {
		unsigned total = 0;
		for (size_t i = 0; i < nkinds; i++)
			if (op_enabled(ops[i].letter))
				total += ops[i].weight;
		if (total == 0)
			fail("every operation is disabled");
		unsigned pick = (unsigned)rnd_below(total);
		cf = pick_file();
		for (size_t i = 0; i < nkinds; i++) {
			if (!op_enabled(ops[i].letter))
				continue;
			if (pick < ops[i].weight) {
				ops[i].fn();
				counts[i]++;
				break;
			}
			pick -= ops[i].weight;
		}
		if (opno % 1000 == 0)
			for (unsigned i = 0; i < nfiles; i++) {
				cf = &files[i];
				check_size("periodic size check");
			}
	}
	opno = nops;
	for (unsigned i = 0; i < nfiles; i++) {
		cf = &files[i];
		verify_all("final verify");
		if (close(cf->fd) < 0)
			fail("close: %s", strerror(errno));
		if (modelpath)
			save_model();
	}
	if (quiet <= 0) {
		printf("fsx: %" PRIu64 " ops OK on %s", nops, files[0].name);
		if (nfiles > 1)
			printf(" and %u more", nfiles - 1);
		printf(" (seed %" PRIu64 ", final size", seed);
		for (unsigned i = 0; i < nfiles; i++)
			printf(" %" PRIu64, files[i].size);
		printf("):");
		for (size_t i = 0; i < nkinds; i++)
			if (counts[i])
				printf(" %c=%" PRIu64, ops[i].letter, counts[i]);
		printf("\n");
	}
	for (unsigned i = 0; i < nfiles; i++) {
		free(files[i].good);
		free(files[i].name);
		free(files[i].model);
	}
	free(tmpbuf);
	return 0;
}

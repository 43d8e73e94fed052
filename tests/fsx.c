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
 *      SEEK_HOLE never beyond EOF
 *   m  mmap read of a range, compared with the model
 *   c  close and reopen the file
 *   y  fsync
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif

#define LOGSZ 64

static const char *fname;
static const char *modelpath;
static int fd = -1;
static unsigned char *good;     /* model contents, capacity maxlen */
static unsigned char *tmpbuf;
static uint64_t filesize;       /* model size */
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
	int len = snprintf(slot, 128, "%8" PRIu64 " ", opno);
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
		opno, seed, fname, msg);
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
	fd = open(fname, flags, 0644);
	if (fd < 0)
		fail("open: %s", strerror(errno));
}

static void check_range(const unsigned char *got, uint64_t off, uint64_t len, const char *what)
{
	if (memcmp(got, good + off, len) == 0)
		return;
	for (uint64_t i = 0; i < len; i++) {
		if (got[i] != good[off + i]) {
			uint64_t j = i;
			while (j < len && got[j] != good[off + j])
				j++;
			fail("%s mismatch at offset %" PRIu64 " (0x%" PRIx64 "): got 0x%02x expected 0x%02x,"
			     " %" PRIu64 " differing bytes from there (read of %" PRIu64 "+%" PRIu64
			     ", model size %" PRIu64 ")",
			     what, off + i, off + i, got[i], good[off + i], j - i, off, len, filesize);
		}
	}
}

static void full_pread(unsigned char *buf, uint64_t len, uint64_t off, const char *what)
{
	uint64_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)(off + done));
		if (n < 0)
			fail("%s pread(%" PRIu64 ", %" PRIu64 "): %s", what, off + done, len - done,
			     strerror(errno));
		if (n == 0)
			fail("%s pread(%" PRIu64 ", %" PRIu64 "): short read (EOF), model size %" PRIu64,
			     what, off + done, len - done, filesize);
		done += (uint64_t)n;
	}
}

static void check_size(const char *what)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		fail("fstat: %s", strerror(errno));
	if ((uint64_t)st.st_size != filesize)
		fail("%s: file size %" PRIu64 ", expected %" PRIu64, what, (uint64_t)st.st_size,
		     filesize);
}

static void verify_all(const char *what)
{
	check_size(what);
	for (uint64_t off = 0; off < filesize; off += maxop) {
		uint64_t len = filesize - off < maxop ? filesize - off : maxop;
		full_pread(tmpbuf, len, off, what);
		check_range(tmpbuf, off, len, what);
	}
	/* reading at EOF returns 0 bytes */
	ssize_t n = pread(fd, tmpbuf, 1, (off_t)filesize);
	if (n != 0)
		fail("%s: read at EOF %" PRIu64 " returned %zd", what, filesize, n);
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
	if (filesize == 0) {
		logop("read skipped (empty)");
		return;
	}
	pick_range(&off, &len, filesize);
	if (off + len > filesize)
		len = filesize - off;
	if (len == 0)
		return;
	logop("read   0x%" PRIx64 " +0x%" PRIx64, off, len);
	full_pread(tmpbuf, len, off, "read");
	check_range(tmpbuf, off, len, "read");
}

static void op_mapread(void)
{
	uint64_t off, len;
	long pg = sysconf(_SC_PAGESIZE);
	if (filesize == 0)
		return;
	pick_range(&off, &len, filesize);
	if (off + len > filesize)
		len = filesize - off;
	if (len == 0)
		return;
	uint64_t pgoff = off & ~((uint64_t)pg - 1);
	logop("mapread 0x%" PRIx64 " +0x%" PRIx64, off, len);
	void *p = mmap(NULL, len + (off - pgoff), PROT_READ, MAP_SHARED, fd, (off_t)pgoff);
	if (p == MAP_FAILED) {
		if (errno == ENODEV || errno == EOPNOTSUPP || errno == EINVAL) {
			if (!tolerant)
				fail("mmap: %s", strerror(errno));
			disable_op('m', strerror(errno));
			return;
		}
		fail("mmap: %s", strerror(errno));
	}
	check_range((unsigned char *)p + (off - pgoff), off, len, "mapread");
	munmap(p, len + (off - pgoff));
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
	uint64_t limit = filesize + maxop < maxlen ? filesize + maxop : maxlen;
	pick_range(&off, &len, limit);
	if (len == 0)
		return;
	logop("write  0x%" PRIx64 " +0x%" PRIx64 " (size 0x%" PRIx64 ")", off, len, filesize);
	fill_random(tmpbuf, len);
	uint64_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, tmpbuf + done, len - done, (off_t)(off + done));
		if (n <= 0)
			fail("pwrite(%" PRIu64 ", %" PRIu64 "): %s", off + done, len - done,
			     n < 0 ? strerror(errno) : "wrote 0 bytes");
		done += (uint64_t)n;
	}
	if (off > filesize)
		memset(good + filesize, 0, off - filesize);
	memcpy(good + off, tmpbuf, len);
	if (off + len > filesize)
		filesize = off + len;
}

static void set_size(uint64_t newsize)
{
	if (newsize > filesize)
		memset(good + filesize, 0, newsize - filesize);
	filesize = newsize;
}

static void op_truncate(void)
{
	uint64_t newsize;
	switch (rnd_below(4)) {
	case 0:
		newsize = 0;
		break;
	case 1:
		newsize = filesize ? rnd_below(filesize) : 0;
		break;
	default:
		newsize = rnd_below(maxlen);
		break;
	}
	logop("trunc  0x%" PRIx64 " -> 0x%" PRIx64, filesize, newsize);
	if (ftruncate(fd, (off_t)newsize) < 0)
		fail("ftruncate(%" PRIu64 "): %s", newsize, strerror(errno));
	set_size(newsize);
}

/* Returns 0 done, 1 not supported (op disabled), exits on other errors. */
static int do_fallocate(char letter, int mode, uint64_t off, uint64_t len, const char *name)
{
	if (fallocate(fd, mode, (off_t)off, (off_t)len) == 0)
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
	if (filesize == 0)
		return;
	pick_range(&off, &len, filesize);
	if (len == 0)
		return;
	logop("punch  0x%" PRIx64 " +0x%" PRIx64 " (size 0x%" PRIx64 ")", off, len, filesize);
	if (do_fallocate('p', FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len, "PUNCH_HOLE"))
		return;
	if (off < filesize) {
		uint64_t end = off + len < filesize ? off + len : filesize;
		memset(good + off, 0, end - off);
	}
}

static void op_zero(void)
{
	uint64_t off, len;
	int keep = (int)rnd_below(2);
	uint64_t limit = filesize + maxop < maxlen ? filesize + maxop : maxlen;
	pick_range(&off, &len, limit);
	if (len == 0)
		return;
	logop("zero   0x%" PRIx64 " +0x%" PRIx64 "%s (size 0x%" PRIx64 ")", off, len,
	      keep ? " keep" : "", filesize);
	if (do_fallocate('z', FALLOC_FL_ZERO_RANGE | (keep ? FALLOC_FL_KEEP_SIZE : 0), off, len,
			 "ZERO_RANGE"))
		return;
	uint64_t end = off + len;
	if (!keep && end > filesize)
		set_size(end);
	if (off < filesize) {
		uint64_t e = end < filesize ? end : filesize;
		memset(good + off, 0, e - off);
	}
}

static void op_falloc(void)
{
	uint64_t off, len;
	int keep = (int)rnd_below(2);
	uint64_t limit = filesize + maxop < maxlen ? filesize + maxop : maxlen;
	pick_range(&off, &len, limit);
	if (len == 0)
		return;
	logop("falloc 0x%" PRIx64 " +0x%" PRIx64 "%s (size 0x%" PRIx64 ")", off, len,
	      keep ? " keep" : "", filesize);
	if (do_fallocate('f', keep ? FALLOC_FL_KEEP_SIZE : 0, off, len, "ALLOCATE"))
		return;
	if (!keep && off + len > filesize)
		set_size(off + len);
}

static void op_seek(void)
{
	uint64_t off = rnd_below(filesize + 1);
	logop("seek   0x%" PRIx64 " (size 0x%" PRIx64 ")%s", off, filesize,
	      sync_before_seek ? " after fsync" : "");
	if (sync_before_seek && fsync(fd) < 0)
		fail("fsync: %s", strerror(errno));
	off_t d = lseek(fd, (off_t)off, SEEK_DATA);
	if (d < 0) {
		if (errno == ENXIO) {
			/* no data from off to EOF: everything must be zero */
			for (uint64_t i = off; i < filesize; i++)
				if (good[i])
					fail("SEEK_DATA(0x%" PRIx64 ") = ENXIO but byte 0x%" PRIx64
					     " is 0x%02x", off, i, good[i]);
		} else if (errno == EINVAL && tolerant) {
			disable_op('s', "SEEK_DATA");
			return;
		} else {
			fail("SEEK_DATA(%" PRIu64 "): %s", off, strerror(errno));
		}
	} else {
		if ((uint64_t)d < off || (uint64_t)d >= filesize)
			fail("SEEK_DATA(0x%" PRIx64 ") = 0x%" PRIx64 ", outside [off, size 0x%" PRIx64 ")",
			     off, (uint64_t)d, filesize);
		for (uint64_t i = off; i < (uint64_t)d; i++)
			if (good[i])
				fail("SEEK_DATA(0x%" PRIx64 ") = 0x%" PRIx64 " skipped data byte 0x%" PRIx64
				     " = 0x%02x", off, (uint64_t)d, i, good[i]);
	}
	off_t h = lseek(fd, (off_t)off, SEEK_HOLE);
	if (h < 0) {
		if (errno == ENXIO && off >= filesize)
			return;
		fail("SEEK_HOLE(%" PRIu64 "): %s (size %" PRIu64 ")", off, strerror(errno), filesize);
	}
	if ((uint64_t)h < off || (uint64_t)h > filesize)
		fail("SEEK_HOLE(0x%" PRIx64 ") = 0x%" PRIx64 ", outside [off, size 0x%" PRIx64 "]", off,
		     (uint64_t)h, filesize);
	if (off >= filesize)
		fail("SEEK_HOLE at EOF 0x%" PRIx64 " returned 0x%" PRIx64 " instead of ENXIO", off,
		     (uint64_t)h);
}

static void op_reopen(void)
{
	logop("reopen");
	if (close(fd) < 0)
		fail("close: %s", strerror(errno));
	open_file(0);
	check_size("reopen");
}

static void op_fsync(void)
{
	logop("fsync");
	if (fsync(fd) < 0)
		fail("fsync: %s", strerror(errno));
}

static void load_model(void)
{
	int mfd = open(modelpath, O_RDONLY);
	if (mfd < 0)
		fail("cannot open model %s: %s", modelpath, strerror(errno));
	struct stat st;
	if (fstat(mfd, &st) < 0)
		fail("fstat model: %s", strerror(errno));
	if ((uint64_t)st.st_size > maxlen)
		fail("model %s is %" PRIu64 " bytes, larger than -l %" PRIu64, modelpath,
		     (uint64_t)st.st_size, maxlen);
	filesize = (uint64_t)st.st_size;
	uint64_t done = 0;
	while (done < filesize) {
		ssize_t n = read(mfd, good + done, filesize - done);
		if (n <= 0)
			fail("reading model %s: %s", modelpath, n < 0 ? strerror(errno) : "short");
		done += (uint64_t)n;
	}
	close(mfd);
}

static void save_model(void)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", modelpath);
	int mfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (mfd < 0)
		fail("cannot create model %s: %s", tmp, strerror(errno));
	uint64_t done = 0;
	while (done < filesize) {
		ssize_t n = write(mfd, good + done, filesize - done);
		if (n <= 0)
			fail("writing model %s: %s", tmp, n < 0 ? strerror(errno) : "short");
		done += (uint64_t)n;
	}
	if (fsync(mfd) < 0 || close(mfd) < 0 || rename(tmp, modelpath) < 0)
		fail("saving model %s: %s", modelpath, strerror(errno));
}

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
		"usage: rlfs-fsx [-N ops] [-S seed] [-l maxlen] [-o maxoplen] [-m model [-c]]\n"
		"                [-X letters] [-t] [-d] [-Y] [-q|-v] FILE\n"
		"  -N ops     number of operations (default 10000)\n"
		"  -S seed    random seed (default 1; 0 = time based)\n"
		"  -l bytes   largest file size (default 8M; K/M/G suffixes)\n"
		"  -o bytes   largest single operation (default 256K)\n"
		"  -m path    save the expected contents to path at the end\n"
		"  -c         continue: load -m model, verify FILE against it, then run\n"
		"  -X letters disable ops: r read, w write, t truncate, p punch, z zero range,\n"
		"             f fallocate, s seek data/hole, m mmap read, c reopen, y fsync\n"
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

int main(int argc, char **argv)
{
	int opt, cont = 0;
	while ((opt = getopt(argc, argv, "N:S:l:o:m:cX:tdYqvh")) != -1) {
		switch (opt) {
		case 'N': nops = parse_size(optarg); break;
		case 'S': seed = parse_size(optarg); break;
		case 'l': maxlen = parse_size(optarg); break;
		case 'o': maxop = parse_size(optarg); break;
		case 'm': modelpath = optarg; break;
		case 'c': cont = 1; break;
		case 'X': snprintf(disabled, sizeof(disabled), "%s", optarg); break;
		case 't': tolerant = 1; break;
		case 'd': odirect = 1; break;
		case 'Y': sync_before_seek = 1; break;
		case 'q': quiet = 1; break;
		case 'v': quiet = -1; break;
		case 'h': usage(0); break;
		default: usage(2);
		}
	}
	if (optind != argc - 1 || maxlen == 0 || maxop == 0 || (cont && !modelpath))
		usage(2);
	fname = argv[optind];
	if (seed == 0)
		seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
	rng_state = seed;
	if (maxop > maxlen)
		maxop = maxlen;
	good = calloc(1, maxlen + maxop);
	tmpbuf = NULL;
	if (!good || posix_memalign((void **)&tmpbuf, 4096, maxop + 4096))
		fail("out of memory");

	if (cont) {
		load_model();
		open_file(0);
		verify_all("initial verify against model");
		if (quiet <= 0)
			printf("fsx: %s matches model %s (%" PRIu64 " bytes)\n", fname, modelpath,
			       filesize);
	} else {
		open_file(1);
		filesize = 0;
	}

	static const struct { char letter; unsigned weight; void (*fn)(void); } ops[] = {
		{'r', 20, op_read}, {'w', 30, op_write}, {'t', 5, op_truncate},
		{'p', 8, op_punch}, {'z', 6, op_zero}, {'f', 6, op_falloc},
		{'s', 5, op_seek}, {'m', 3, op_mapread}, {'c', 1, op_reopen},
		{'y', 1, op_fsync},
	};
	const size_t nkinds = sizeof(ops) / sizeof(ops[0]);
	uint64_t counts[16] = {0};

	for (opno = 1; opno <= nops; opno++) {
		unsigned total = 0;
		for (size_t i = 0; i < nkinds; i++)
			if (op_enabled(ops[i].letter))
				total += ops[i].weight;
		if (total == 0)
			fail("every operation is disabled");
		unsigned pick = (unsigned)rnd_below(total);
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
			check_size("periodic size check");
	}
	opno = nops;
	verify_all("final verify");
	if (close(fd) < 0)
		fail("close: %s", strerror(errno));
	if (modelpath)
		save_model();
	if (quiet <= 0) {
		printf("fsx: %" PRIu64 " ops OK on %s (seed %" PRIu64 ", final size %" PRIu64 "):",
		       nops, fname, seed, filesize);
		for (size_t i = 0; i < nkinds; i++)
			printf(" %c=%" PRIu64, ops[i].letter, counts[i]);
		printf("\n");
	}
	free(good);
	free(tmpbuf);
	return 0;
}

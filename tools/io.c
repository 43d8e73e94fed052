/*
 * io.c: `reflinkfs io [-f] [-r] [-c CMD]... FILE`, an xfs_io(8)-like tool
 * for one file in a mounted reflinkfs.  It talks to the daemon with the
 * private ioctls of reflinkfs/ioctl.h directly (no LD_PRELOAD shim):
 *
 *   pwrite [-S pattern] [-b bsize] off len   write a byte pattern (0xcd)
 *   pread [-v] [-b bsize] off len            read (and dump with -v)
 *   reflink SRC [src_off dst_off len]         share SRC's blocks (FICLONE /
 *                                            FICLONERANGE semantics)
 *   dedupe SRC src_off dst_off len            share them only where identical
 *                                            (FIDEDUPERANGE semantics)
 *   exchangerange [-Ccfntw] [-d dst_off] [-s src_off] [-l len] DONOR
 *                                            exchange contents with DONOR
 *                                            (XFS_IOC_EXCHANGE_RANGE; -c:
 *                                            XFS_IOC_COMMIT_RANGE; xfs_io
 *                                            6.12's options; to EOF
 *                                            without -l)
 *   startupdate [-e], commitupdate [-Chknq], cancelupdate
 *                                            atomic file update (xfs_io
 *                                            6.12: XFS_IOC_START_COMMIT /
 *                                            COMMIT_RANGE, EBUSY if the
 *                                            file changed meanwhile)
 *   fiemap [-v] [off len], bmap [-v]          extent map, shared extents
 *                                            marked (xfs_io fiemap columns,
 *                                            512-byte units)
 *   falloc [-k] off len                       fallocate(2) mode 0 / KEEP_SIZE
 *   fpunch off len                            PUNCH_HOLE|KEEP_SIZE
 *   fzero [-k] off len                        ZERO_RANGE
 *   funshare [-k] off len                     FALLOC_FL_UNSHARE_RANGE
 *   fcollapse off len, finsert off len        FALLOC_FL_COLLAPSE_RANGE /
 *                                            INSERT_RANGE (RLFS_IOC_SHIFT_RANGE;
 *                                            fallocate(2) off reflinkfs)
 *   truncate off                              ftruncate(2)
 *   stat                                      fstat(2) plus extent counts and
 *                                            xfs_io's fsxattr lines
 *   lsattr [-v], chattr +/-FLAGS               inode flags (xfs_io's letters)
 *   extsize [N], cowextsize [N]               extent size hints (FS_IOC_FSGETXATTR
 *                                            / FSSETXATTR, xfs_io's output)
 *   fsync, fdatasync                          fsync(2), fdatasync(2)
 *   help, quit
 *
 * Offsets and lengths take K/M/G/T suffixes (powers of 1024) or 0x hex.
 * Without -c, commands are read from standard input, one per line.  The
 * first failing command prints one line on stderr and ends the run with
 * exit status 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/fs.h>

#include <reflinkfs/fs.h>
#include <reflinkfs/ioctl.h>

#include "cli.h"

struct io_ctx {
	const char *prog;
	const char *path;
	int fd;
	bool rdonly;
	/* startupdate: the original file's descriptor while fd is the
	 * temporary file (-1: no update), its sampled freshness */
	int update_fd;
	struct rlfs_ioc_commit_range update;
};

#define IO_MAX_ARGS 32

static void io_err(const struct io_ctx *c, const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void io_err(const struct io_ctx *c, const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: %s: ", c->prog, cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* errno text, with a hint for ioctls the file's filesystem does not know */
static const char *io_strerror(int e)
{
	if (e == ENOTTY)
		return "not a file on a mounted reflinkfs (ioctl not supported)";
	return strerror(e);
}

/* Decimal or 0x hex, with an optional K/M/G/T/P suffix. */
static int parse_num(const char *s, uint64_t *out)
{
	if (!s || !*s || *s == '-')
		return -EINVAL;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(s + 2, &end, 16);
		if (end == s + 2 || *end)
			return -EINVAL;
		if (errno)
			return -ERANGE;
		*out = v;
		return 0;
	}
	unsigned long long v;
	int err = rlfs_parse_size(s, &v);
	if (err)
		return err;
	*out = v;
	return 0;
}

static bool need_nums(const struct io_ctx *c, const char *cmd, int argc, char **argv,
		      int first, int n, uint64_t *v, const char *usage)
{
	if (argc - first != n) {
		io_err(c, cmd, "usage: %s %s", cmd, usage);
		return false;
	}
	for (int i = 0; i < n; i++) {
		if (parse_num(argv[first + i], &v[i]) != 0 || v[i] > INT64_MAX) {
			io_err(c, cmd, "bad number '%s'", argv[first + i]);
			return false;
		}
	}
	return true;
}

/* Parse the options of one command with getopt (run_line resets it). */
static int cmd_getopt(int argc, char **argv, const char *opts)
{
	return getopt(argc, argv, opts);
}

static int cmd_pwrite(struct io_ctx *c, int argc, char **argv)
{
	unsigned pattern = 0xcd;
	uint64_t bsize = 65536;
	int o;
	while ((o = cmd_getopt(argc, argv, "S:b:")) != -1) {
		uint64_t v;
		switch (o) {
		case 'S':
			if (parse_num(optarg, &v) != 0 || v > 0xff) {
				io_err(c, "pwrite", "bad pattern '%s'", optarg);
				return 1;
			}
			pattern = (unsigned)v;
			break;
		case 'b':
			if (parse_num(optarg, &v) != 0 || v == 0 || v > (64u << 20)) {
				io_err(c, "pwrite", "bad buffer size '%s'", optarg);
				return 1;
			}
			bsize = v;
			break;
		default:
			io_err(c, "pwrite", "usage: pwrite [-S pattern] [-b bsize] off len");
			return 1;
		}
	}
	uint64_t v[2];
	if (!need_nums(c, "pwrite", argc, argv, optind, 2, v, "[-S pattern] [-b bsize] off len"))
		return 1;
	char *buf = malloc(bsize);
	if (!buf) {
		io_err(c, "pwrite", "out of memory");
		return 1;
	}
	memset(buf, (int)pattern, bsize);
	uint64_t done = 0;
	while (done < v[1]) {
		size_t n = (size_t)(v[1] - done < bsize ? v[1] - done : bsize);
		ssize_t w = pwrite(c->fd, buf, n, (off_t)(v[0] + done));
		if (w < 0) {
			io_err(c, "pwrite", "%s", strerror(errno));
			free(buf);
			return 1;
		}
		if (w == 0)
			break;
		done += (uint64_t)w;
	}
	free(buf);
	printf("wrote %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", done, v[1], v[0]);
	return 0;
}

static void dump_line(uint64_t off, const unsigned char *p, size_t n)
{
	printf("%08" PRIx64 ":  ", off);
	for (size_t i = 0; i < 16; i++) {
		if (i < n)
			printf("%02x ", p[i]);
		else
			printf("   ");
	}
	printf(" ");
	for (size_t i = 0; i < n; i++)
		putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.');
	putchar('\n');
}

static int cmd_pread(struct io_ctx *c, int argc, char **argv)
{
	bool verbose = false;
	uint64_t bsize = 65536;
	int o;
	while ((o = cmd_getopt(argc, argv, "vb:")) != -1) {
		switch (o) {
		case 'v':
			verbose = true;
			break;
		case 'b':
			if (parse_num(optarg, &bsize) != 0 || bsize == 0 || bsize > (64u << 20)) {
				io_err(c, "pread", "bad buffer size '%s'", optarg);
				return 1;
			}
			break;
		default:
			io_err(c, "pread", "usage: pread [-v] [-b bsize] off len");
			return 1;
		}
	}
	uint64_t v[2];
	if (!need_nums(c, "pread", argc, argv, optind, 2, v, "[-v] [-b bsize] off len"))
		return 1;
	unsigned char *buf = malloc(bsize);
	if (!buf) {
		io_err(c, "pread", "out of memory");
		return 1;
	}
	uint64_t done = 0;
	while (done < v[1]) {
		size_t n = (size_t)(v[1] - done < bsize ? v[1] - done : bsize);
		ssize_t r = pread(c->fd, buf, n, (off_t)(v[0] + done));
		if (r < 0) {
			io_err(c, "pread", "%s", strerror(errno));
			free(buf);
			return 1;
		}
		if (r == 0)
			break;
		if (verbose) {
			for (size_t i = 0; i < (size_t)r; i += 16)
				dump_line(v[0] + done + i, buf + i,
					  (size_t)r - i < 16 ? (size_t)r - i : 16);
		}
		done += (uint64_t)r;
	}
	free(buf);
	printf("read %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", done, v[1], v[0]);
	return 0;
}

static int cmd_reflink(struct io_ctx *c, int argc, char **argv)
{
	if (argc != 2 && argc != 5) {
		io_err(c, "reflink", "usage: reflink SRC [src_off dst_off len]");
		return 1;
	}
	int sfd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (sfd < 0) {
		io_err(c, "reflink", "%s: %s", argv[1], strerror(errno));
		return 1;
	}
	int r;
	uint64_t len = 0, doff = 0;
	if (argc == 2) {
		struct rlfs_ioc_clone a;
		memset(&a, 0, sizeof(a));
		a.src_fd = sfd;
		r = ioctl(c->fd, RLFS_IOC_CLONE, &a);
		struct stat st;
		if (r == 0 && fstat(sfd, &st) == 0)
			len = (uint64_t)st.st_size;
	} else {
		uint64_t v[3];
		if (!need_nums(c, "reflink", argc, argv, 2, 3, v, "SRC [src_off dst_off len]")) {
			close(sfd);
			return 1;
		}
		struct rlfs_ioc_clone_range a = {
			.src_fd = sfd, .src_offset = v[0], .dest_offset = v[1], .src_length = v[2],
		};
		r = ioctl(c->fd, RLFS_IOC_CLONE_RANGE, &a);
		doff = v[1];
		len = v[2];
		struct stat st;
		if (r == 0 && len == 0 && fstat(sfd, &st) == 0 && (uint64_t)st.st_size > v[0])
			len = (uint64_t)st.st_size - v[0];
	}
	int e = errno;
	close(sfd);
	if (r != 0) {
		io_err(c, "reflink", "%s", io_strerror(e));
		return 1;
	}
	/* the kernel keeps its own mtime of a FUSE file (writeback cache):
	 * set it through the kernel, as the clone did in the filesystem */
	struct timespec ts[2] = { { 0, UTIME_OMIT }, { 0, UTIME_NOW } };
	(void)futimens(c->fd, ts);
	printf("linked %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", len, len, doff);
	return 0;
}

/*
 * exchangerange [-Ccfntw] [-d dst_off] [-s src_off] [-l len] DONOR, as
 * xfs_io 6.12's (xfsprogs io/exchrange.c, getopt "Ccd:fl:ns:tw"): exchange
 * DONOR's bytes from src_off (the ioctl's file1) with this file's from
 * dst_off (file2) through RLFS_IOC_EXCHANGE_RANGE.  Without -l:
 * XFS_EXCHANGE_RANGE_TO_EOF (sizes exchanged too, length = this file's
 * size as xfs_io passes it); -l len: that many bytes.  -c commits instead
 * (XFS_IOC_START_COMMIT on this file, then XFS_IOC_COMMIT_RANGE: EBUSY if
 * it changed in between, xfs_io 6.12's "commit range" test option); -f
 * DSYNC, -n DRY_RUN, -w FILE1_WRITTEN (only DONOR's written ranges); -t
 * prints xfs_io's "exchangerange N/N bytes at offset OFF" line (without
 * its timing line), -C is accepted (condensed timing: nothing to
 * condense).  DONOR is opened read-write.  Errors in xfs_io's words: a
 * bad number "non-numeric open file offset argument -- X" (-d), "non-
 * numeric supplied file offset argument -- X" (-s), "non-numeric length
 * argument -- X" (-l); DONOR not opened "DONOR: strerror" (its
 * perror), each after the "reflinkfs io: exchangerange: " this tool puts
 * before every error; the call failing "reflinkfs io: exchangerange:
 * strerror", xfs_io's "exchangerange: strerror" (xfrog_perror) with the
 * tool's name before it.  The run ends there with exit status 1 (xfs_io
 * goes on to its next command, exit status 1).
 */
static int cmd_exchangerange(struct io_ctx *c, int argc, char **argv)
{
	static const char usage[] = "usage: exchangerange [-Ccfntw] [-d dest_offset] "
				    "[-s src_offset] [-l length] <donorfile>";
	uint64_t flags = RLFS_EXCHANGE_TO_EOF, soff = 0, doff = 0, len = 0;
	bool have_len = false, print = false, commit = false;
	int o;
	while ((o = cmd_getopt(argc, argv, "Ccd:fl:ns:tw")) != -1) {
		uint64_t *dst = o == 'd' ? &doff : o == 's' ? &soff : o == 'l' ? &len : NULL;
		if (dst) {
			if (parse_num(optarg, dst) != 0 || *dst > INT64_MAX) {
				io_err(c, "exchangerange", "non-numeric %s argument -- %s",
				       o == 'd' ? "open file offset" :
				       o == 's' ? "supplied file offset" : "length", optarg);
				return 1;
			}
			if (o == 'l') {
				have_len = true;
				flags &= ~RLFS_EXCHANGE_TO_EOF;
			}
			continue;
		}
		switch (o) {
		case 'C':
			break;
		case 'c':
			commit = true;
			break;
		case 'f':
			flags |= RLFS_EXCHANGE_DSYNC;
			break;
		case 'n':
			flags |= RLFS_EXCHANGE_DRY_RUN;
			break;
		case 't':
			print = true;
			break;
		case 'w':
			flags |= RLFS_EXCHANGE_FILE1_WRITTEN;
			break;
		default:
			io_err(c, "exchangerange", "%s", usage);
			return 1;
		}
	}
	if (optind != argc - 1) {
		io_err(c, "exchangerange", "%s", usage);
		return 1;
	}
	const char *donor = argv[optind];
	int dfd = open(donor, O_RDWR | O_CLOEXEC);
	if (dfd < 0) {
		io_err(c, "exchangerange", "%s: %s", donor, strerror(errno));
		return 1;
	}
	if (!have_len) {
		struct stat st;
		if (fstat(c->fd, &st) == 0)
			len = (uint64_t)st.st_size;   /* as xfs_io (ignored with TO_EOF) */
	}
	struct stat st1, st2;
	bool sizes = (flags & RLFS_EXCHANGE_TO_EOF) && !(flags & RLFS_EXCHANGE_DRY_RUN) &&
		     fstat(dfd, &st1) == 0 && fstat(c->fd, &st2) == 0 &&
		     soff <= (uint64_t)st1.st_size && doff <= (uint64_t)st2.st_size;
	int r;
	if (commit) {
		/* xfrog_commitrange_prep: this file's freshness now, then the
		 * commit with it */
		struct rlfs_ioc_commit_range u;
		memset(&u, 0, sizeof(u));
		r = ioctl(c->fd, RLFS_IOC_START_COMMIT, &u);
		if (r == 0) {
			u.file1_fd = dfd;
			u.file1_offset = soff;
			u.file2_offset = doff;
			u.length = len;
			u.flags = flags;
			r = ioctl(c->fd, RLFS_IOC_COMMIT_RANGE, &u);
		}
	} else {
		struct rlfs_ioc_exchange_range a = {
			.file1_fd = dfd, .file1_offset = soff, .file2_offset = doff, .length = len,
			.flags = flags,
		};
		r = ioctl(c->fd, RLFS_IOC_EXCHANGE_RANGE, &a);
	}
	int e = errno;
	if (r == 0 && sizes) {
		/* sizes exchanged: the kernel keeps its own size of a FUSE file
		 * under the writeback cache; a shrunk file is set through it
		 * (the daemon stores a grown one's last page itself), as the
		 * shim does */
		uint64_t n1 = soff + ((uint64_t)st2.st_size - doff);
		uint64_t n2 = doff + ((uint64_t)st1.st_size - soff);
		struct stat now;
		if (fstat(dfd, &now) == 0 && (uint64_t)now.st_size > n1)
			(void)ftruncate(dfd, (off_t)n1);
		if (fstat(c->fd, &now) == 0 && (uint64_t)now.st_size > n2)
			(void)ftruncate(c->fd, (off_t)n2);
	}
	if (r == 0 && !(flags & RLFS_EXCHANGE_DRY_RUN)) {
		/* the kernel keeps its own mtime of a FUSE file: set both
		 * through the kernel, as the exchange did in the filesystem */
		struct timespec ts[2] = { { 0, UTIME_OMIT }, { 0, UTIME_NOW } };
		(void)futimens(c->fd, ts);
		(void)futimens(dfd, ts);
	}
	close(dfd);
	if (r != 0) {
		io_err(c, "exchangerange", "%s", io_strerror(e));
		return 1;
	}
	if (print)
		printf("exchangerange %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", len,
		       len, doff);
	return 0;
}

/*
 * startupdate [-e], commitupdate [-C] [-h] [-k] [-n] [-q], cancelupdate: an
 * atomic file update as xfs_io 6.12's (io/exchrange.c).  startupdate
 * samples the file's freshness (RLFS_IOC_START_COMMIT), opens an
 * O_TMPFILE in its directory, clones the file into it (not with -e) and
 * makes it the file the next commands work on.  commitupdate exchanges
 * the temporary file's contents with the original's from offset 0, to EOF
 * (sizes too) unless -k (the length sampled at startupdate), only the
 * written parts with -h, checks only with -n, through
 * RLFS_IOC_COMMIT_RANGE: EBUSY if the original changed since startupdate
 * (the update then stays open); on success "Committed updates to 'PATH'."
 * and, unless -q, xfs_io's "commitupdate N/N bytes at offset 0" line
 * (without its timing line).  cancelupdate drops the temporary file.
 * Both go back to the original file.
 */
static int cmd_startupdate(struct io_ctx *c, int argc, char **argv)
{
	bool clone = true;
	int o;
	while ((o = cmd_getopt(argc, argv, "e")) != -1) {
		if (o != 'e') {
			io_err(c, "startupdate", "usage: startupdate [-e]");
			return 1;
		}
		clone = false;
	}
	if (optind != argc) {
		io_err(c, "startupdate", "usage: startupdate [-e]");
		return 1;
	}
	if (c->update_fd >= 0) {
		io_err(c, "startupdate", "an update is already in progress");
		return 1;
	}
	struct stat st;
	if (fstat(c->fd, &st) != 0) {
		io_err(c, "startupdate", "%s", strerror(errno));
		return 1;
	}
	struct rlfs_ioc_commit_range u;
	memset(&u, 0, sizeof(u));
	if (ioctl(c->fd, RLFS_IOC_START_COMMIT, &u) != 0) {
		io_err(c, "startupdate", "%s", io_strerror(errno));
		return 1;
	}
	u.length = (uint64_t)st.st_size;
	char *dir = strdup(c->path);
	if (!dir) {
		io_err(c, "startupdate", "out of memory");
		return 1;
	}
	char *slash = strrchr(dir, '/');
	const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
	int tfd = open(d, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	int e = errno;
	free(dir);
	if (tfd < 0) {
		io_err(c, "startupdate", "temporary file: %s", strerror(e));
		return 1;
	}
	if (clone) {
		struct rlfs_ioc_clone a;
		memset(&a, 0, sizeof(a));
		a.src_fd = c->fd;
		if (ioctl(tfd, RLFS_IOC_CLONE, &a) != 0) {
			io_err(c, "startupdate", "clone: %s", io_strerror(errno));
			close(tfd);
			return 1;
		}
	}
	c->update = u;
	c->update_fd = c->fd;
	c->fd = tfd;
	return 0;
}

static int finish_update(struct io_ctx *c, const char *cmd, bool commit, uint64_t flags,
			 bool quiet)
{
	if (c->update_fd < 0) {
		io_err(c, cmd, "Current file is not the staging file for an atomic update.");
		return 1;
	}
	if (commit) {
		struct rlfs_ioc_commit_range a = c->update;
		a.file1_fd = c->fd;
		a.flags = flags;
		struct stat st1, st2;
		bool sizes = (flags & RLFS_EXCHANGE_TO_EOF) && !(flags & RLFS_EXCHANGE_DRY_RUN) &&
			     fstat(c->fd, &st1) == 0 && fstat(c->update_fd, &st2) == 0;
		if (ioctl(c->update_fd, RLFS_IOC_COMMIT_RANGE, &a) != 0) {
			io_err(c, cmd, "committing update: %s", io_strerror(errno));
			return 1;
		}
		if (!(flags & RLFS_EXCHANGE_DRY_RUN)) {
			/* the original's size and mtime through the kernel (see
			 * exchangerange) */
			struct stat now;
			if (sizes && fstat(c->update_fd, &now) == 0 && now.st_size > st1.st_size)
				(void)ftruncate(c->update_fd, st1.st_size);
			struct timespec ts[2] = { { 0, UTIME_OMIT }, { 0, UTIME_NOW } };
			(void)futimens(c->update_fd, ts);
			(void)st2;
		}
		printf("Committed updates to '%s'.\n", c->path);
		if (!quiet)
			printf("commitupdate %" PRIu64 "/%" PRIu64 " bytes at offset 0\n",
			       (uint64_t)c->update.length, (uint64_t)c->update.length);
	} else {
		printf("Cancelled updates to '%s'.\n", c->path);
	}
	close(c->fd);
	c->fd = c->update_fd;
	c->update_fd = -1;
	return 0;
}

static int cmd_commitupdate(struct io_ctx *c, int argc, char **argv)
{
	uint64_t flags = RLFS_EXCHANGE_TO_EOF;
	bool quiet = false;
	int o;
	while ((o = cmd_getopt(argc, argv, "Chknq")) != -1) {
		switch (o) {
		case 'C':
			break;
		case 'h':
			flags |= RLFS_EXCHANGE_FILE1_WRITTEN;
			break;
		case 'k':
			flags &= ~RLFS_EXCHANGE_TO_EOF;
			break;
		case 'n':
			flags |= RLFS_EXCHANGE_DRY_RUN;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			io_err(c, "commitupdate", "usage: commitupdate [-C] [-h] [-k] [-n] [-q]");
			return 1;
		}
	}
	if (optind != argc) {
		io_err(c, "commitupdate", "usage: commitupdate [-C] [-h] [-k] [-n] [-q]");
		return 1;
	}
	return finish_update(c, "commitupdate", true, flags, quiet);
}

/*
 * dedupe SRC src_off dst_off len: FIDEDUPERANGE semantics through
 * RLFS_IOC_DEDUPE_RANGE, one destination (this file), looped as xfs_io's
 * dedupe_ioctl loops (io/reflink.c): each call does at most the kernel's
 * 1 GiB, the next goes on from bytes_deduped.  Prints what xfs_io prints
 * ("deduped N/N bytes at offset OFF", without its timing line); a
 * destination that differs or fails is an error with xfs_io's message.
 */
static int cmd_dedupe(struct io_ctx *c, int argc, char **argv)
{
	uint64_t v[3];
	if (argc != 5) {
		io_err(c, "dedupe", "usage: dedupe SRC src_off dst_off len");
		return 1;
	}
	if (!need_nums(c, "dedupe", argc, argv, 2, 3, v, "SRC src_off dst_off len"))
		return 1;
	int sfd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (sfd < 0) {
		io_err(c, "dedupe", "%s: %s", argv[1], strerror(errno));
		return 1;
	}
	struct rlfs_ioc_dedupe_range *a = calloc(1, sizeof(*a));
	if (!a) {
		close(sfd);
		io_err(c, "dedupe", "out of memory");
		return 1;
	}
	uint64_t soff = v[0], doff = v[1], len = v[2], deduped = 0;
	int ret = 0;
	while (len > 0) {
		memset(a, 0, sizeof(*a));
		a->src_offset = soff;
		a->src_length = len;
		a->dest_count = 1;
		a->info[0].dest_fd = c->fd;
		a->info[0].dest_offset = doff;
		if (ioctl(sfd, RLFS_IOC_DEDUPE_RANGE, a) != 0) {
			io_err(c, "dedupe", "%s", io_strerror(errno));
			ret = 1;
			break;
		}
		if (a->info[0].status < 0) {
			io_err(c, "dedupe", "%s", strerror(-a->info[0].status));
			ret = 1;
			break;
		}
		if (a->info[0].status == 1) {
			io_err(c, "dedupe", "Extents did not match.");
			ret = 1;
			break;
		}
		uint64_t n = a->info[0].bytes_deduped;
		if (n == 0 || n > len)
			break;
		soff += n;
		doff += n;
		len -= n;
		deduped += n;
	}
	free(a);
	close(sfd);
	if (ret == 0)
		printf("deduped %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", deduped,
		       v[2], v[1]);
	return ret;
}

/* Call fn for each extent of [start, start+len), in batches. */
typedef int (*ext_fn)(void *priv, const struct rlfs_ioc_extent *e);

static int for_each_extent(int fd, uint64_t start, uint64_t len, ext_fn fn, void *priv)
{
	struct rlfs_ioc_extents *x = malloc(sizeof(*x));
	if (!x)
		return -ENOMEM;
	uint64_t end = len > UINT64_MAX - start ? UINT64_MAX : start + len;
	uint64_t pos = start;
	bool first = true;
	int ret = 0;
	while (pos < end) {
		memset(x, 0, sizeof(*x));
		x->start = pos;
		x->length = end - pos;
		x->flags = first ? RLFS_IOC_EXT_SYNC : 0;
		first = false;
		if (ioctl(fd, RLFS_IOC_GET_EXTENTS, x) != 0) {
			ret = -errno;
			break;
		}
		bool stop = x->count < RLFS_IOC_EXTENTS_BATCH;
		for (uint32_t i = 0; i < x->count && i < RLFS_IOC_EXTENTS_BATCH; i++) {
			const struct rlfs_ioc_extent *e = &x->ext[i];
			if (e->length == 0 || e->logical + e->length <= pos) {
				stop = true;
				break;
			}
			ret = fn(priv, e);
			if (ret)
				break;
			pos = e->logical + e->length;
			if (e->flags & RLFS_IOC_EXT_LAST)
				stop = true;
		}
		if (ret || stop)
			break;
	}
	free(x);
	return ret;
}

struct fiemap_print {
	bool verbose;
	uint64_t next;          /* bytes: end of the previous extent */
	uint64_t end;
	unsigned idx;
	uint64_t nshared, shared_bytes, total_bytes;
};

static void flag_words(uint32_t f, char *buf, size_t size)
{
	buf[0] = '\0';
	size_t n = 0;
	if (f & RLFS_IOC_EXT_SHARED)
		n += (size_t)snprintf(buf + n, size - n, "%sshared", n ? "," : "");
	if ((f & RLFS_IOC_EXT_UNWRITTEN) && n < size)
		n += (size_t)snprintf(buf + n, size - n, "%sunwritten", n ? "," : "");
	if ((f & RLFS_IOC_EXT_LAST) && n < size)
		snprintf(buf + n, size - n, "%slast", n ? "," : "");
}

static void print_hole(struct fiemap_print *p, uint64_t from, uint64_t to)
{
	char range[64];
	snprintf(range, sizeof(range), "[%" PRIu64 "..%" PRIu64 "]:", from / 512, to / 512 - 1);
	if (p->verbose)
		printf("%4u: %-18s %-18s %8" PRIu64 "\n", p->idx, range, "hole",
		       (to - from) / 512);
	else
		printf("\t%u: %s hole\n", p->idx, range);
	p->idx++;
}

static int fiemap_one(void *priv, const struct rlfs_ioc_extent *e)
{
	struct fiemap_print *p = priv;
	if (e->logical > p->next)
		print_hole(p, p->next, e->logical);
	char range[64], blocks[64], words[64];
	uint64_t lo = e->logical, ph = e->physical, ln = e->length;
	snprintf(range, sizeof(range), "[%" PRIu64 "..%" PRIu64 "]:", lo / 512,
		 (lo + ln) / 512 - 1);
	snprintf(blocks, sizeof(blocks), "%" PRIu64 "..%" PRIu64, ph / 512, (ph + ln) / 512 - 1);
	if (p->verbose) {
		flag_words(e->flags, words, sizeof(words));
		printf("%4u: %-18s %-18s %8" PRIu64 " 0x%04x %s\n", p->idx, range, blocks,
		       ln / 512, (unsigned)e->flags, words);
	} else {
		printf("\t%u: %s %s%s\n", p->idx, range, blocks,
		       (e->flags & RLFS_IOC_EXT_SHARED) ? " shared" : "");
	}
	p->idx++;
	p->next = e->logical + e->length;
	p->total_bytes += e->length;
	if (e->flags & RLFS_IOC_EXT_SHARED) {
		p->nshared++;
		p->shared_bytes += e->length;
	}
	return 0;
}

static int cmd_fiemap(struct io_ctx *c, int argc, char **argv)
{
	const char *cmd = argv[0];
	struct fiemap_print p = { 0 };
	int o;
	while ((o = cmd_getopt(argc, argv, "v")) != -1) {
		if (o == 'v') {
			p.verbose = true;
		} else {
			io_err(c, cmd, "usage: %s [-v] [off len]", cmd);
			return 1;
		}
	}
	uint64_t start = 0, len = UINT64_MAX;
	if (argc - optind == 2) {
		uint64_t v[2];
		if (!need_nums(c, cmd, argc, argv, optind, 2, v, "[-v] [off len]"))
			return 1;
		start = v[0];
		len = v[1];
	} else if (argc != optind) {
		io_err(c, cmd, "usage: %s [-v] [off len]", cmd);
		return 1;
	}
	struct stat st;
	if (fstat(c->fd, &st) != 0) {
		io_err(c, cmd, "%s", strerror(errno));
		return 1;
	}
	p.next = start;
	printf("%s:\n", c->path);
	if (p.verbose)
		printf(" EXT: %-18s %-18s %8s FLAGS\n", "FILE-OFFSET", "BLOCK-RANGE", "TOTAL");
	int err = for_each_extent(c->fd, start, len, fiemap_one, &p);
	if (err) {
		io_err(c, cmd, "%s", io_strerror(-err));
		return 1;
	}
	/* a hole up to EOF (within the range), like xfs_io */
	uint64_t eof = (uint64_t)st.st_size;
	uint64_t lim = len > UINT64_MAX - start ? UINT64_MAX : start + len;
	uint64_t hole_end = (eof < lim ? eof : lim);
	hole_end = (hole_end + 511) & ~(uint64_t)511;
	if (hole_end > p.next && p.next >= start)
		print_hole(&p, p.next, hole_end);
	return 0;
}

struct stat_count {
	uint64_t n, nshared, shared_bytes, unwritten_bytes, mapped_bytes;
};

static int stat_one(void *priv, const struct rlfs_ioc_extent *e)
{
	struct stat_count *s = priv;
	s->n++;
	s->mapped_bytes += e->length;
	if (e->flags & RLFS_IOC_EXT_SHARED) {
		s->nshared++;
		s->shared_bytes += e->length;
	}
	if (e->flags & RLFS_IOC_EXT_UNWRITTEN)
		s->unwritten_bytes += e->length;
	return 0;
}

static const char *ftype(mode_t m)
{
	if (S_ISREG(m))
		return "regular file";
	if (S_ISDIR(m))
		return "directory";
	if (S_ISLNK(m))
		return "symbolic link";
	if (S_ISCHR(m))
		return "character device";
	if (S_ISBLK(m))
		return "block device";
	if (S_ISFIFO(m))
		return "fifo";
	if (S_ISSOCK(m))
		return "socket";
	return "unknown";
}

/* ------------------------------------------------------------------ */
/* inode flags and extent size hints: xfs_io's chattr, lsattr, extsize,
 * cowextsize and the fsxattr lines of stat (xfsprogs io/attr.c,
 * io/open.c, io/cowextsize.c, io/stat.c), through FS_IOC_FSGETXATTR /
 * FS_IOC_FSSETXATTR, which the kernel forwards to the daemon */

/* xfs_io's flag letters and names, in its order (io/attr.c xflags[]) */
static const struct {
	uint32_t flag;
	char letter;
	const char *name;
} io_xflags[] = {
	{ FS_XFLAG_REALTIME, 'r', "realtime" },
	{ FS_XFLAG_PREALLOC, 'p', "prealloc" },
	{ FS_XFLAG_IMMUTABLE, 'i', "immutable" },
	{ FS_XFLAG_APPEND, 'a', "append-only" },
	{ FS_XFLAG_SYNC, 's', "sync" },
	{ FS_XFLAG_NOATIME, 'A', "no-atime" },
	{ FS_XFLAG_NODUMP, 'd', "no-dump" },
	{ FS_XFLAG_RTINHERIT, 't', "rt-inherit" },
	{ FS_XFLAG_PROJINHERIT, 'P', "proj-inherit" },
	{ FS_XFLAG_NOSYMLINKS, 'n', "nosymlinks" },
	{ FS_XFLAG_EXTSIZE, 'e', "extsize" },
	{ FS_XFLAG_EXTSZINHERIT, 'E', "extsz-inherit" },
	{ FS_XFLAG_NODEFRAG, 'f', "no-defrag" },
	{ FS_XFLAG_FILESTREAM, 'S', "filestream" },
	{ FS_XFLAG_DAX, 'x', "dax" },
	{ FS_XFLAG_COWEXTSIZE, 'C', "cowextsize" },
	{ FS_XFLAG_HASATTR, 'X', "has-xattr" },
};
#define N_IO_XFLAGS (sizeof(io_xflags) / sizeof(io_xflags[0]))

/* printxattr: letters or "-" (verbose: the names, comma separated), in
 * brackets when asked */
static void print_xflags(uint32_t x, bool verbose, bool braces)
{
	bool first = true;
	if (braces)
		fputs("[", stdout);
	for (size_t i = 0; i < N_IO_XFLAGS; i++) {
		if (x & io_xflags[i].flag) {
			if (verbose) {
				fputs(first ? "" : ", ", stdout);
				fputs(io_xflags[i].name, stdout);
				first = false;
			} else {
				fputc(io_xflags[i].letter, stdout);
			}
		} else if (!verbose) {
			fputc('-', stdout);
		}
	}
	if (braces)
		fputs("]", stdout);
}

static int fsx_get(struct io_ctx *c, const char *cmd, struct fsxattr *fsx, const char *what)
{
	if (ioctl(c->fd, FS_IOC_FSGETXATTR, fsx) == 0)
		return 0;
	if (what)
		printf("%s: %s %s: %s\n", c->prog, what, c->path, strerror(errno));
	else
		io_err(c, cmd, "cannot get flags on %s: %s", c->path, io_strerror(errno));
	return 1;
}

/* lsattr [-v]: "LETTERS PATH " (-v: "[names] PATH ") */
static int cmd_lsattr(struct io_ctx *c, int argc, char **argv)
{
	bool verbose = false;
	int o;
	while ((o = cmd_getopt(argc, argv, "v")) != -1) {
		if (o != 'v') {
			io_err(c, "lsattr", "usage: lsattr [-v]");
			return 1;
		}
		verbose = true;
	}
	if (optind != argc) {
		io_err(c, "lsattr", "usage: lsattr [-v]");
		return 1;
	}
	struct fsxattr fsx;
	if (fsx_get(c, "lsattr", &fsx, NULL))
		return 1;
	print_xflags(fsx.fsx_xflags, verbose, verbose);
	printf(" %s \n", c->path);
	return 0;
}

/* chattr [+/-LETTERS]...: the letters of lsattr; read, change, write */
static int cmd_chattr(struct io_ctx *c, int argc, char **argv)
{
	uint32_t set = 0, clear = 0;
	if (argc < 2) {
		io_err(c, "chattr", "usage: chattr [+/-]flags...");
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '+' && a[0] != '-') {
			io_err(c, "chattr", "bad argument '%s' (+flags or -flags)", a);
			return 1;
		}
		for (const char *p = a + 1; *p; p++) {
			size_t k;
			for (k = 0; k < N_IO_XFLAGS && io_xflags[k].letter != *p; k++)
				;
			if (k == N_IO_XFLAGS) {
				fprintf(stderr, "%s: unknown flag\n", c->prog);
				return 1;
			}
			if (a[0] == '+')
				set |= io_xflags[k].flag;
			else
				clear |= io_xflags[k].flag;
		}
	}
	struct fsxattr fsx;
	if (fsx_get(c, "chattr", &fsx, NULL))
		return 1;
	fsx.fsx_xflags = (fsx.fsx_xflags | set) & ~clear;
	if (ioctl(c->fd, FS_IOC_FSSETXATTR, &fsx) != 0) {
		io_err(c, "chattr", "cannot set flags on %s: %s", c->path, io_strerror(errno));
		return 1;
	}
	return 0;
}

/* extsize [N] / cowextsize [N]: "[BYTES] PATH", or set the hint (and its
 * flag: EXTSIZE on a file, EXTSZINHERIT on a directory; COWEXTSIZE) */
static int cmd_hint(struct io_ctx *c, int argc, char **argv, bool cow)
{
	const char *cmd = argv[0];
	/* xfs_io's messages (the cowextsize ones name the old ioctls) */
	const char *get_name = cow ? "XFS_IOC_FSGETXATTR" : "FS_IOC_FSGETXATTR";
	const char *set_name = cow ? "XFS_IOC_FSSETXATTR" : "FS_IOC_FSSETXATTR";
	if (argc > 2) {
		io_err(c, cmd, "usage: %s [size]", cmd);
		return 1;
	}
	struct fsxattr fsx;
	if (fsx_get(c, cmd, &fsx, get_name))
		return 1;
	if (argc == 1) {
		printf("[%u] %s\n", cow ? fsx.fsx_cowextsize : fsx.fsx_extsize, c->path);
		return 0;
	}
	uint64_t v;
	if (parse_num(argv[1], &v) != 0 || v > UINT32_MAX) {
		printf("non-numeric %s argument -- %s\n", cow ? "cowextsize" : "extsize", argv[1]);
		return 1;
	}
	struct stat st;
	if (fstat(c->fd, &st) != 0) {
		io_err(c, cmd, "%s", strerror(errno));
		return 1;
	}
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
		printf("invalid target file type - file %s\n", c->path);
		return 1;
	}
	if (cow) {
		fsx.fsx_xflags |= FS_XFLAG_COWEXTSIZE;
		fsx.fsx_cowextsize = (uint32_t)v;
	} else {
		fsx.fsx_xflags |= S_ISREG(st.st_mode) ? FS_XFLAG_EXTSIZE : FS_XFLAG_EXTSZINHERIT;
		fsx.fsx_extsize = (uint32_t)v;
	}
	if (ioctl(c->fd, FS_IOC_FSSETXATTR, &fsx) != 0) {
		printf("%s: %s %s: %s\n", c->prog, set_name, c->path, strerror(errno));
		return 1;
	}
	return 0;
}

/* the fsxattr lines of xfs_io's stat */
static int stat_fsxattr(struct io_ctx *c)
{
	struct fsxattr fsx;
	if (fsx_get(c, "stat", &fsx, NULL))
		return 1;
	printf("fsxattr.xflags = 0x%x ", fsx.fsx_xflags);
	print_xflags(fsx.fsx_xflags, false, true);
	printf("\nfsxattr.projid = %u\n", fsx.fsx_projid);
	printf("fsxattr.extsize = %u\n", fsx.fsx_extsize);
	printf("fsxattr.cowextsize = %u\n", fsx.fsx_cowextsize);
	printf("fsxattr.nextents = %u\n", fsx.fsx_nextents);
	return 0;
}

static int cmd_stat(struct io_ctx *c, int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		io_err(c, "stat", "usage: stat");
		return 1;
	}
	struct stat st;
	if (fstat(c->fd, &st) != 0) {
		io_err(c, "stat", "%s", strerror(errno));
		return 1;
	}
	printf("fd.path = \"%s\"\n", c->path);
	printf("fd.flags = %s\n", c->rdonly ? "read-only" : "read-write");
	printf("stat.ino = %llu\n", (unsigned long long)st.st_ino);
	printf("stat.type = %s\n", ftype(st.st_mode));
	printf("stat.mode = 0%o\n", (unsigned)(st.st_mode & 07777));
	printf("stat.nlink = %llu\n", (unsigned long long)st.st_nlink);
	printf("stat.uid = %u\nstat.gid = %u\n", (unsigned)st.st_uid, (unsigned)st.st_gid);
	printf("stat.size = %lld\n", (long long)st.st_size);
	printf("stat.blocks = %lld\n", (long long)st.st_blocks);
	printf("stat.blksize = %lld\n", (long long)st.st_blksize);
	printf("stat.atime = %lld.%09ld\n", (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec);
	printf("stat.mtime = %lld.%09ld\n", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	printf("stat.ctime = %lld.%09ld\n", (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
	if (S_ISREG(st.st_mode)) {
		struct stat_count s = { 0 };
		int err = for_each_extent(c->fd, 0, UINT64_MAX, stat_one, &s);
		if (err) {
			io_err(c, "stat", "extent map: %s", io_strerror(-err));
			return 1;
		}
		printf("extents.count = %" PRIu64 "\n", s.n);
		printf("extents.mapped_bytes = %" PRIu64 "\n", s.mapped_bytes);
		printf("extents.shared = %" PRIu64 "\n", s.nshared);
		printf("extents.shared_bytes = %" PRIu64 "\n", s.shared_bytes);
		printf("extents.unwritten_bytes = %" PRIu64 "\n", s.unwritten_bytes);
	}
	if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))
		return stat_fsxattr(c);
	return 0;
}

static int cmd_fallocate(struct io_ctx *c, int argc, char **argv, int base_mode, bool allow_k)
{
	const char *cmd = argv[0];
	int mode = base_mode;
	int o;
	while ((o = cmd_getopt(argc, argv, allow_k ? "k" : "")) != -1) {
		if (o == 'k' && allow_k) {
			mode |= FALLOC_FL_KEEP_SIZE;
		} else {
			io_err(c, cmd, "usage: %s %soff len", cmd, allow_k ? "[-k] " : "");
			return 1;
		}
	}
	uint64_t v[2];
	if (!need_nums(c, cmd, argc, argv, optind, 2, v, allow_k ? "[-k] off len" : "off len"))
		return 1;
	if (base_mode == FALLOC_FL_UNSHARE_RANGE) {
		struct rlfs_ioc_unshare u;
		memset(&u, 0, sizeof(u));
		u.offset = v[0];
		u.length = v[1];
		u.flags = (mode & FALLOC_FL_KEEP_SIZE) ? RLFS_IOC_UNSHARE_KEEP_SIZE : 0;
		if (ioctl(c->fd, RLFS_IOC_UNSHARE_RANGE, &u) != 0) {
			io_err(c, cmd, "%s", io_strerror(errno));
			return 1;
		}
		return 0;
	}
	if (base_mode == FALLOC_FL_COLLAPSE_RANGE || base_mode == FALLOC_FL_INSERT_RANGE) {
		struct rlfs_ioc_shift a;
		memset(&a, 0, sizeof(a));
		a.offset = v[0];
		a.length = v[1];
		a.flags = base_mode == FALLOC_FL_COLLAPSE_RANGE ? RLFS_IOC_SHIFT_COLLAPSE
								: RLFS_IOC_SHIFT_INSERT;
		if (ioctl(c->fd, RLFS_IOC_SHIFT_RANGE, &a) == 0) {
			/* the kernel's size follows (writeback cache): the file
			 * has new_size already */
			if (ftruncate(c->fd, (off_t)a.new_size) != 0) {
				io_err(c, cmd, "%s", strerror(errno));
				return 1;
			}
			return 0;
		}
		if (errno != ENOTTY) {
			io_err(c, cmd, "%s", strerror(errno));
			return 1;
		}
		/* not reflinkfs: the kernel filesystem's own fallocate */
	}
	if (fallocate(c->fd, mode, (off_t)v[0], (off_t)v[1]) != 0) {
		io_err(c, cmd, "%s", strerror(errno));
		return 1;
	}
	return 0;
}

static int cmd_truncate(struct io_ctx *c, int argc, char **argv)
{
	uint64_t v;
	if (!need_nums(c, "truncate", argc, argv, 1, 1, &v, "off"))
		return 1;
	if (ftruncate(c->fd, (off_t)v) != 0) {
		io_err(c, "truncate", "%s", strerror(errno));
		return 1;
	}
	return 0;
}

static int cmd_sync(struct io_ctx *c, int argc, char **argv)
{
	if (argc != 1) {
		io_err(c, argv[0], "usage: %s", argv[0]);
		return 1;
	}
	int r = strcmp(argv[0], "fdatasync") == 0 ? fdatasync(c->fd) : fsync(c->fd);
	if (r != 0) {
		io_err(c, argv[0], "%s", strerror(errno));
		return 1;
	}
	return 0;
}

static void io_help(FILE *f)
{
	fprintf(f,
		"Commands (offsets/lengths in bytes, K/M/G suffixes or 0x hex):\n"
		"  pwrite [-S pattern] [-b bsize] off len  write a byte pattern (default 0xcd)\n"
		"  pread [-v] [-b bsize] off len           read (-v: hex dump)\n"
		"  reflink SRC [src_off dst_off len]       share SRC's blocks into this file\n"
		"                                          (whole file, or a range; len 0 = to SRC EOF)\n"
		"  dedupe SRC src_off dst_off len          share SRC's blocks where the bytes are\n"
		"                                          identical (FIDEDUPERANGE)\n"
		"  exchangerange [-Ccfntw] [-d dst_off] [-s src_off] [-l len] DONOR\n"
		"                                          exchange contents with DONOR atomically\n"
		"                                          (to EOF, sizes too, unless -l; -c commit:\n"
		"                                          EBUSY if this file changed; -f dsync,\n"
		"                                          -n dry run, -w DONOR's written parts,\n"
		"                                          -t print bytes, -C accepted)\n"
		"  startupdate [-e]                        stage an update in a clone (-e: empty)\n"
		"  commitupdate [-C] [-h] [-k] [-n] [-q]   commit it atomically (EBUSY if changed)\n"
		"  cancelupdate                            drop the staged update\n"
		"  fiemap [-v] [off len]                   extent map in 512-byte units, shared marked\n"
		"  bmap [-v] [off len]                     same as fiemap\n"
		"  falloc [-k] off len                     preallocate (-k: keep size)\n"
		"  fpunch off len                          punch a hole\n"
		"  fzero [-k] off len                      zero a range\n"
		"  funshare [-k] off len                   give the range private copies of shared blocks\n"
		"  fcollapse off len                       remove the range, shifting the rest down\n"
		"  finsert off len                         insert a hole, shifting the rest up\n"
		"  truncate off                            set the file size\n"
		"  stat                                    file status, extent counts, fsxattr\n"
		"  lsattr [-v]                             inode flags (xfs_io letters; -v names)\n"
		"  chattr +/-FLAGS...                      set/clear flags (i a A d e E C...)\n"
		"  extsize [size]                          extent size hint (show / set)\n"
		"  cowextsize [size]                       CoW extent size hint (show / set; 0\n"
		"                                          clears it: default 32 blocks)\n"
		"  fsync | fdatasync                       flush to stable storage\n"
		"  help | quit\n");
}

/* Split a command line into words (spaces/tabs; no quoting). */
static int split_words(char *line, char **argv, int max)
{
	int n = 0;
	char *save = NULL;
	for (char *w = strtok_r(line, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save)) {
		if (n == max)
			return -1;
		argv[n++] = w;
	}
	return n;
}

/* Run one command line: 0 ok, 1 failed, 2 quit. */
static int run_command(struct io_ctx *c, const char *line)
{
	char *copy = strdup(line);
	char *argv[IO_MAX_ARGS + 1];
	if (!copy) {
		fprintf(stderr, "%s: out of memory\n", c->prog);
		return 1;
	}
	int argc = split_words(copy, argv, IO_MAX_ARGS);
	int r = 0;
	if (argc < 0) {
		fprintf(stderr, "%s: too many arguments: %s\n", c->prog, line);
		free(copy);
		return 1;
	}
	if (argc == 0 || argv[0][0] == '#') {
		free(copy);
		return 0;
	}
	argv[argc] = NULL;
	/* 0, not 1: glibc then resets all of getopt's state, including its
	 * pointer into the previous command's (freed) words, which otherwise
	 * made a command after "falloc -k" fail to parse now and then */
	optind = 0;
	opterr = 0;
	const char *cmd = argv[0];
	if (strcmp(cmd, "pwrite") == 0)
		r = cmd_pwrite(c, argc, argv);
	else if (strcmp(cmd, "pread") == 0)
		r = cmd_pread(c, argc, argv);
	else if (strcmp(cmd, "reflink") == 0)
		r = cmd_reflink(c, argc, argv);
	else if (strcmp(cmd, "dedupe") == 0)
		r = cmd_dedupe(c, argc, argv);
	else if (strcmp(cmd, "exchangerange") == 0)
		r = cmd_exchangerange(c, argc, argv);
	else if (strcmp(cmd, "startupdate") == 0)
		r = cmd_startupdate(c, argc, argv);
	else if (strcmp(cmd, "commitupdate") == 0)
		r = cmd_commitupdate(c, argc, argv);
	else if (strcmp(cmd, "cancelupdate") == 0)
		r = argc == 1 ? finish_update(c, "cancelupdate", false, 0, false)
			      : (io_err(c, "cancelupdate", "usage: cancelupdate"), 1);
	else if (strcmp(cmd, "fiemap") == 0 || strcmp(cmd, "bmap") == 0)
		r = cmd_fiemap(c, argc, argv);
	else if (strcmp(cmd, "falloc") == 0)
		r = cmd_fallocate(c, argc, argv, 0, true);
	else if (strcmp(cmd, "fpunch") == 0)
		r = cmd_fallocate(c, argc, argv, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, false);
	else if (strcmp(cmd, "fzero") == 0)
		r = cmd_fallocate(c, argc, argv, FALLOC_FL_ZERO_RANGE, true);
	else if (strcmp(cmd, "funshare") == 0)
		r = cmd_fallocate(c, argc, argv, FALLOC_FL_UNSHARE_RANGE, true);
	else if (strcmp(cmd, "fcollapse") == 0)
		r = cmd_fallocate(c, argc, argv, FALLOC_FL_COLLAPSE_RANGE, false);
	else if (strcmp(cmd, "finsert") == 0)
		r = cmd_fallocate(c, argc, argv, FALLOC_FL_INSERT_RANGE, false);
	else if (strcmp(cmd, "truncate") == 0)
		r = cmd_truncate(c, argc, argv);
	else if (strcmp(cmd, "stat") == 0)
		r = cmd_stat(c, argc, argv);
	else if (strcmp(cmd, "lsattr") == 0)
		r = cmd_lsattr(c, argc, argv);
	else if (strcmp(cmd, "chattr") == 0)
		r = cmd_chattr(c, argc, argv);
	else if (strcmp(cmd, "extsize") == 0)
		r = cmd_hint(c, argc, argv, false);
	else if (strcmp(cmd, "cowextsize") == 0)
		r = cmd_hint(c, argc, argv, true);
	else if (strcmp(cmd, "fsync") == 0 || strcmp(cmd, "fdatasync") == 0)
		r = cmd_sync(c, argc, argv);
	else if (strcmp(cmd, "help") == 0)
		io_help(stdout);
	else if (strcmp(cmd, "quit") == 0 || strcmp(cmd, "q") == 0)
		r = 2;
	else {
		fprintf(stderr, "%s: unknown command '%s' (try -c help)\n", c->prog, cmd);
		r = 1;
	}
	fflush(stdout);
	free(copy);
	return r;
}

static void io_usage(FILE *f, const char *prog)
{
	fprintf(f,
		"Usage: %s [-f] [-r] [-c CMD]... FILE\n"
		"\n"
		"xfs_io-like commands on FILE in a mounted reflinkfs, using the reflinkfs\n"
		"ioctls directly.  Without -c, commands are read from standard input.\n"
		"  -c CMD      run CMD (repeatable, in order)\n"
		"  -f          create FILE if it does not exist\n"
		"  -r          open read-only\n"
		"  -h, --help  this text\n"
		"\n",
		prog);
	io_help(f);
}

int rlfs_io_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct io_ctx c = { .prog = argv[0], .fd = -1, .update_fd = -1 };
	char **cmds = calloc((size_t)argc + 1, sizeof(*cmds));
	int ncmds = 0, create = 0, o;
	if (!cmds) {
		fprintf(stderr, "%s: out of memory\n", c.prog);
		return 1;
	}
	while ((o = getopt_long(argc, argv, "+c:frh", longopts, NULL)) != -1) {
		switch (o) {
		case 'c':
			cmds[ncmds++] = optarg;
			break;
		case 'f':
			create = 1;
			break;
		case 'r':
			c.rdonly = true;
			break;
		case 'h':
			io_usage(stdout, c.prog);
			free(cmds);
			return 0;
		default:
			fprintf(stderr, "Try '%s --help'.\n", c.prog);
			free(cmds);
			return 1;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "%s: expected one FILE (try '%s --help')\n", c.prog, c.prog);
		free(cmds);
		return 1;
	}
	c.path = argv[optind];
	int flags = (c.rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (create ? O_CREAT : 0);
	c.fd = open(c.path, flags, 0666);
	if (c.fd < 0 && !c.rdonly && !create && (errno == EISDIR || errno == EACCES ||
						 errno == EROFS || errno == EPERM)) {
		/* xfs_io falls back the same way for directories etc. */
		int e = errno;
		c.fd = open(c.path, O_RDONLY | O_CLOEXEC);
		if (c.fd >= 0)
			c.rdonly = true;
		else
			errno = e;
	}
	if (c.fd < 0) {
		fprintf(stderr, "%s: %s: %s\n", c.prog, c.path, strerror(errno));
		free(cmds);
		return 1;
	}
	int ret = 0;
	if (ncmds) {
		for (int i = 0; i < ncmds; i++) {
			int r = run_command(&c, cmds[i]);
			if (r == 2)
				break;
			if (r) {
				ret = 1;
				break;
			}
		}
	} else {
		char *line = NULL;
		size_t cap = 0;
		while (getline(&line, &cap, stdin) > 0) {
			int r = run_command(&c, line);
			if (r == 2)
				break;
			if (r) {
				ret = 1;
				break;
			}
		}
		free(line);
	}
	if (c.update_fd >= 0) {
		/* an update never committed: the temporary file goes */
		close(c.fd);
		c.fd = c.update_fd;
	}
	if (close(c.fd) != 0 && !ret) {
		fprintf(stderr, "%s: %s: close: %s\n", c.prog, c.path, strerror(errno));
		ret = 1;
	}
	free(cmds);
	return ret;
}

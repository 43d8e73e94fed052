/*
 * dedupe.c: `reflinkfs dedupe [options] PATH...` (issue 12 part 2): the
 * command line, the tree walk, the scan loop, progress and the summary.
 *
 * How it works (docs/DESIGN.md "Offline dedupe" has the why):
 *  1. walk the PATHs (dedupe_walk.c: several directories at once; as
 *     nftw FTW_PHYS, symlinks are never followed; -x as FTW_MOUNT), keep
 *     non-empty regular files of at least --min-size bytes (default 1: a
 *     file smaller than a block still frees a whole block when shared),
 *     one per (dev, ino), largest first;
 *  2. for each file F in that order, take the hash of every block
 *     (XXH3-128 of the block's bytes; blocks in holes, found with
 *     SEEK_DATA/SEEK_HOLE, are holes and match nothing): from the hash
 *     store when F's (dev, ino, size, mtime, ctime) equal a complete
 *     record there (--hashfile), else by reading F once;
 *  3. whole-file fast path: an earlier file G of the same size and device
 *     whose first block hash is F's is compared hash by hash; if all are
 *     equal, all of F is one run onto G;
 *  4. else each block of F is looked up in the bounded table
 *     (dedupe_hash.c); a hit on block s of an earlier file G is grown
 *     backwards and forwards into the longest run of equal block hashes
 *     (dd_grow_run), the run is shared and the scan goes on after it;
 *     blocks that matched nothing are entered into the table;
 *  5. a run is shared in pieces of at most 16 MiB: the physical address of
 *     each block of both ranges (FIEMAP, RLFS_IOC_GET_EXTENTS) splits it
 *     into parts already shared (counted, not passed on) and parts to
 *     dedupe (FIDEDUPERANGE / RLFS_IOC_DEDUPE_RANGE, dedupe_share.c).
 * The kernel compares the bytes under lock before sharing, so a file
 * changed since it was hashed is reported ("changed during the run"),
 * never damaged.  Smaller files are shared onto larger ones (the larger
 * file is the source and keeps its blocks).
 *
 * Memory: the table (--memory, default 256 MiB, 24 bytes per distinct
 * block), the file list (one record and path per file), four windows of
 * 1024 block hashes and one read buffer; block hashes of files already
 * scanned live in the SQLite store, not the heap.  Descriptors: up to
 * DD_FD_CACHE scanned files stay open as sources of later runs, fewer
 * under a low RLIMIT_NOFILE (fdc_capacity), and an open that finds the
 * limit reached (EMFILE, ENFILE) closes half of them and tries again.
 *
 * On reflinkfs every open, stat, lseek, read and ioctl is a FUSE round
 * trip, and their number sets the time (docs/DESIGN.md "Round trips on
 * reflinkfs"): stats ask statx for no atime, sources come from the open
 * descriptors, and a chunk whose extent map has no hole is read without
 * SEEK_DATA/SEEK_HOLE.
 *
 * Test hook (not in --help): RLFS_DEDUPE_TEST_BEFORE_SHARE=CMD runs CMD
 * with system(3) once, just before the first dedupe call, so tests can
 * change a file between hashing and sharing.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <xxhash.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "dedupe.h"

#define DD_DEFAULT_MEMORY (256ULL << 20)
#define DD_NWIN 4
#define DD_READ_BYTES (1u << 20)
/* Descriptors of scanned files kept open for later use as the source of a
 * run (least recently used closed first): a FUSE open, getattr and
 * release each cost a round trip to the daemon, and the source of a run
 * is mostly a file scanned shortly before (the same size sorts together) */
#define DD_FD_CACHE 256

enum { EXIT_OK = 0, EXIT_SOME_FAILED = 1, EXIT_USAGE = 2, EXIT_OPERATIONAL = 4 };

struct dd_file {
	char *path;
	uint64_t dev, ino, size;
	int64_t mtime_ns, ctime_ns;
	uint32_t blksize;           /* bytes; set when scanned */
	uint64_t nblocks;
	int64_t db_id;
	enum dd_fs_kind kind;
	bool scanned;               /* hashes complete in the store */
	bool changed;               /* changed during the run (or cannot be
				     * opened): never a source */
	bool shared_into;           /* named in a dedupe call of this run */
};

struct dd_window {
	bool valid;
	size_t file;
	uint64_t chunk;
	unsigned n;
	uint64_t stamp;
	struct dd_hash h[DD_CHUNK_BLOCKS];
};

struct dd_failure {
	int error;                  /* positive errno */
	uint64_t ranges, bytes;
};

struct dd_fast {                    /* whole-file fast path index */
	uint64_t size;
	struct dd_hash key;         /* first block hash, dev mixed in */
	uint32_t file1;             /* file index + 1; 0 empty */
};

struct dd_ctx {
	/* options */
	bool recursive, dry_run, one_fs, quiet, verbose, json;
	const char *hashfile;
	uint64_t min_size;          /* bytes; files below it are skipped (>= 1) */
	uint64_t memory;
	char **excludes;
	size_t nexcludes;
	const char *prog;
	char *cwd;                  /* for absolute paths in the store */
	/* files */
	struct dd_file *files;
	size_t nfiles, files_cap;
	size_t walk_errors;
	struct {
		dev_t dev;
		ino_t ino;
	} skip[4];                  /* the hash file's files */
	size_t nskip;
	/* state */
	struct dd_table table;
	struct dd_db *db;
	struct dd_window win[DD_NWIN];
	uint64_t win_stamp;
	char *rbuf;
	size_t cur;                 /* file being scanned (side 0) */
	int cur_fd;
	size_t src;                 /* matched earlier file (side 1) */
	struct {
		int fd;             /* -1: empty */
		size_t file;
		uint64_t stamp;
	} fdc[DD_FD_CACHE];         /* open scanned files (DD_FD_CACHE) */
	int fdc_cap;                /* slots of fdc[] used: 1..DD_FD_CACHE */
	struct dd_prefetch *pf;     /* files opened and read ahead (or NULL) */
	uint64_t fdc_stamp;
	struct dd_fast *fast;
	uint64_t fast_cap;
	struct {
		uint64_t dev;
		uint32_t blksize;
		enum dd_fs_kind kind;
		bool kind_known;
	} devs[64];
	size_t ndevs;
	uint64_t *phys_s, *phys_d;
	uint64_t *phys_h;           /* device blocks of the chunk being hashed */
	bool phys_h_valid;          /* phys_h maps blocks [phys_h_blk, +phys_h_n)
				     * of the current file, and no dedupe call
				     * changed it since (share_run reuses it) */
	uint64_t phys_h_blk;
	unsigned phys_h_n;
	struct dd_pcache pcache;    /* hashes of shared device blocks read */
	bool hook_done;
	bool unchanged;             /* --hashfile: the tree is as a complete
				     * run left it (tree_digest): not scanned */
	bool store_failed;          /* a hash store call failed: stop (exit 4) */
	/* statistics */
	uint64_t blocks_bound;      /* blocks of all files (st_blksize units) */
	uint64_t files_scanned, bytes_total, bytes_scanned, bytes_hashed;
	uint64_t dup_bytes, shared_bytes, already_bytes, would_bytes;
	uint64_t runs, whole_files;
	uint64_t failed_ranges, failed_bytes;
	uint64_t store_dropped;     /* hash store records of vanished files */
	uint64_t bytes_reused;      /* shared blocks hashed from pcache, not read */
	struct dd_failure fail[16];
	size_t nfail;
	size_t *changed;
	size_t nchanged;
	/* progress */
	bool tty;
	struct timespec t0, last_progress;
	bool progress_drawn;
};


/*
 * The tree as this run sees it, for --hashfile: the options that choose
 * files and every file's (dev, ino, size, mtime, ctime), combined in an
 * order-independent way (a sum of per-file XXH3-128 hashes), as 32 hex
 * digits.  A complete run with no failures stores it (meta key
 * "clean_tree"); a later run that finds the same value has nothing to
 * do: no file changed, so every duplicate there is was shared (or found
 * already shared) by that run, and the scan is skipped.  The same trust
 * in (mtime, ctime) as the store's own rehash rule.  Paths and roots are
 * left out: the same files reached as "dir", "dir/", "./dir" or
 * "/abs/dir", from any working directory, are the same tree (a rename
 * moves the file's ctime, a new or removed file changes the set).
 */
static void tree_digest(const struct dd_ctx *c, char out[33])
{
	XXH3_state_t *s = XXH3_createState();
	if (!s) {
		out[0] = '\0';
		return;
	}
	XXH3_128bits_reset(s);
	uint64_t opts[4] = { c->recursive, c->one_fs, c->min_size, c->nfiles };
	XXH3_128bits_update(s, opts, sizeof(opts));
	for (size_t i = 0; i < c->nexcludes; i++)
		XXH3_128bits_update(s, c->excludes[i], strlen(c->excludes[i]) + 1);
	uint64_t lo = 0, hi = 0;
	for (size_t i = 0; i < c->nfiles; i++) {
		const struct dd_file *f = &c->files[i];
		struct {
			uint64_t dev, ino, size;
			int64_t mtime_ns, ctime_ns;
		} k = { f->dev, f->ino, f->size, f->mtime_ns, f->ctime_ns };
		XXH128_hash_t fh = XXH3_128bits(&k, sizeof(k));
		lo += fh.low64;
		hi += fh.high64 + (lo < fh.low64);
	}
	uint64_t sum[2] = { lo, hi };
	XXH3_128bits_update(s, sum, sizeof(sum));
	XXH128_hash_t d = XXH3_128bits_digest(s);
	XXH3_freeState(s);
	snprintf(out, 33, "%016llx%016llx", (unsigned long long)d.high64,
		 (unsigned long long)d.low64);
}

/* After a run: the stat again of the files a dedupe call named (it may
 * move ctime on some filesystems, never mtime or size); the others keep
 * the stat their scan saw, so a file someone changed after its scan
 * makes the next run's digest differ.  False if a named file is gone or
 * its size or mtime changed (not the tree this run deduped). */
static bool restat_shared(struct dd_ctx *c)
{
	for (size_t i = 0; i < c->nfiles; i++) {
		struct dd_file *f = &c->files[i];
		struct stat st;
		if (!f->shared_into)
			continue;
		if (lstat(f->path, &st) != 0 || (uint64_t)st.st_size != f->size ||
		    (uint64_t)st.st_ino != f->ino)
			return false;
		int64_t mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
		if (mtime_ns != f->mtime_ns)
			return false;
		f->ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
	}
	return true;
}

static double now_s(const struct timespec *since)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - since->tv_sec) + (double)(t.tv_nsec - since->tv_nsec) / 1e9;
}

static void human(uint64_t b, char *out, size_t n)
{
	const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)b;
	int i = 0;
	while (v >= 1024 && i < 5) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(out, n, "%" PRIu64 " B", b);
	else
		snprintf(out, n, "%.1f %s", v, u[i]);
}

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"Usage: %s [-r] [-n|--dry-run] [-x] [-q] [-v] [--json] [--hashfile FILE]\n"
		"       [--min-size BYTES] [--memory BYTES] [--exclude GLOB] PATH...\n"
		"\n"
		"Find duplicate data in files and share it through the filesystem's dedupe\n"
		"(FIDEDUPERANGE on XFS and btrfs, the private ioctl on reflinkfs: no shim\n"
		"needed).  Block-level: every block is hashed (XXH3-128) and a matching block\n"
		"grows into the longest identical run, so whole files, shifted copies, shared\n"
		"middle parts and EOF tails are all found.  The kernel compares the bytes\n"
		"before sharing: file contents never change.\n"
		"\n"
		"Options:\n"
		"  -r, --recursive     descend into directories (never follows symlinks)\n"
		"  -n, --dry-run       find and report duplicates, share nothing\n"
		"  -x, --one-file-system  do not cross mount points below a PATH\n"
		"  -q, --quiet         no progress, no summary (errors only)\n"
		"  -v, --verbose       progress lines when stderr is not a terminal, and\n"
		"                      each run shared\n"
		"      --json          print the summary as one JSON object on stdout\n"
		"      --hashfile FILE keep block hashes in FILE (SQLite); a rerun reads\n"
		"                      only files whose dev, ino, size, mtime or ctime changed\n"
		"      --min-size BYTES  skip smaller files (default 1: every non-empty file)\n"
		"      --memory BYTES  cap of the block-hash table (default 256M; 24 bytes per\n"
		"                      distinct block; when full it keeps a content-sampled\n"
		"                      subset and the summary says so)\n"
		"      --exclude GLOB  skip paths or names matching GLOB (fnmatch; repeatable)\n"
		"  -h, --help          this text\n"
		"Sizes take K, M, G, T suffixes (powers of 1024).\n"
		"\n"
		"Exit status: 0 done (nothing failed), 1 some ranges failed or files changed\n"
		"during the run, 2 usage error, 4 operational error (a PATH cannot be read,\n"
		"the hash file cannot be opened).\n",
		prog);
}

/* ---- walk ---- */

static bool excluded(struct dd_ctx *c, const char *path)
{
	const char *base = strrchr(path, '/');
	base = base && base[1] ? base + 1 : path;
	for (size_t i = 0; i < c->nexcludes; i++)
		if (fnmatch(c->excludes[i], path, 0) == 0 || fnmatch(c->excludes[i], base, 0) == 0)
			return true;
	return false;
}

static int add_file(struct dd_ctx *c, const char *path, const struct stat *st)
{
	if (!S_ISREG(st->st_mode) || st->st_size == 0)
		return 0;
	for (size_t i = 0; i < c->nskip; i++)
		if (c->skip[i].dev == st->st_dev && c->skip[i].ino == st->st_ino)
			return 0;
	if ((uint64_t)st->st_size < c->min_size)
		return 0;
	if (c->nfiles == c->files_cap) {
		size_t ncap = c->files_cap ? c->files_cap * 2 : 256;
		struct dd_file *n = realloc(c->files, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		c->files = n;
		c->files_cap = ncap;
	}
	struct dd_file *f = &c->files[c->nfiles];
	memset(f, 0, sizeof(*f));
	f->path = strdup(path);
	if (!f->path)
		return -ENOMEM;
	f->dev = st->st_dev;
	f->ino = st->st_ino;
	f->size = (uint64_t)st->st_size;
	f->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	f->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
	f->db_id = -1;
	uint64_t bs = st->st_blksize >= 512 ? (uint64_t)st->st_blksize : 512;
	c->blocks_bound += (f->size + bs - 1) / bs;
	c->nfiles++;
	return 0;
}

static bool walk_excluded(void *arg, const char *path)
{
	return excluded(arg, path);
}

static int walk_file(void *arg, const char *path, const struct stat *st)
{
	return add_file(arg, path, st);
}

static void walk_error(void *arg, const char *path, const char *what, int err)
{
	struct dd_ctx *c = arg;
	(void)err;
	fprintf(stderr, "%s: %s: cannot %s (skipped)\n", c->prog, path, what);
	c->walk_errors++;
}

static const struct dd_walk_ops walk_ops = {
	.excluded = walk_excluded,
	.file = walk_file,
	.error = walk_error,
};

static int cmp_devino(const void *a, const void *b)
{
	const struct dd_file *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return strcmp(x->path, y->path);
}

static int cmp_size_desc(const void *a, const void *b)
{
	const struct dd_file *x = a, *y = b;
	if (x->size != y->size)
		return x->size > y->size ? -1 : 1;
	return strcmp(x->path, y->path);
}

/* Walk every root; 0, or EXIT_OPERATIONAL after a message. */
static int walk(struct dd_ctx *c, int npaths, char **paths)
{
	for (int i = 0; i < npaths; i++) {
		struct stat st;
		if (lstat(paths[i], &st) != 0) {
			fprintf(stderr, "%s: %s: %s\n", c->prog, paths[i], strerror(errno));
			return EXIT_OPERATIONAL;
		}
		if (S_ISLNK(st.st_mode)) {
			fprintf(stderr, "%s: %s: a symbolic link, not followed (skipped)\n", c->prog,
				paths[i]);
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			if (!c->recursive) {
				fprintf(stderr, "%s: %s: a directory (use -r; skipped)\n", c->prog,
					paths[i]);
				continue;
			}
			if (access(paths[i], R_OK | X_OK) != 0) {
				fprintf(stderr, "%s: %s: %s\n", c->prog, paths[i], strerror(errno));
				return EXIT_OPERATIONAL;
			}
			int err = dd_walk_tree(paths[i], &st, c->one_fs, &walk_ops, c);
			if (err) {
				fprintf(stderr, "%s: %s: %s\n", c->prog, paths[i],
					err == -ENOMEM ? "out of memory" : strerror(-err));
				return EXIT_OPERATIONAL;
			}
			continue;
		}
		if (S_ISREG(st.st_mode) && add_file(c, paths[i], &st) != 0) {
			fprintf(stderr, "%s: out of memory\n", c->prog);
			return EXIT_OPERATIONAL;
		}
	}
	/* one record per inode (hard links and a PATH given twice) */
	qsort(c->files, c->nfiles, sizeof(*c->files), cmp_devino);
	size_t n = 0;
	for (size_t i = 0; i < c->nfiles; i++) {
		if (n > 0 && c->files[n - 1].dev == c->files[i].dev &&
		    c->files[n - 1].ino == c->files[i].ino) {
			free(c->files[i].path);
			continue;
		}
		c->files[n++] = c->files[i];
	}
	c->nfiles = n;
	/* largest first: sorted by the caller before the scan (an unchanged
	 * --hashfile rerun does not scan) */
	for (size_t i = 0; i < c->nfiles; i++)
		c->bytes_total += c->files[i].size;
	return 0;
}

/* ---- progress and reports ---- */

static void progress(struct dd_ctx *c, bool final)
{
	if (c->quiet || (!c->tty && !c->verbose))
		return;
	double el = now_s(&c->last_progress);
	if (!final && el < (c->tty ? 0.25 : 2.0))
		return;
	clock_gettime(CLOCK_MONOTONIC, &c->last_progress);
	double t = now_s(&c->t0);
	double rate = t > 0 ? (double)c->bytes_scanned / t : 0;
	double frac = c->bytes_total ? (double)c->bytes_scanned / (double)c->bytes_total : 1;
	double eta = rate > 0 ? (double)(c->bytes_total - c->bytes_scanned) / rate : 0;
	char a[32], b[32], r[32];
	human(c->bytes_scanned, a, sizeof(a));
	human(c->bytes_total, b, sizeof(b));
	human((uint64_t)rate, r, sizeof(r));
	unsigned e = (unsigned)eta;
	char etas[32];
	if (rate > 0)
		snprintf(etas, sizeof(etas), "%u:%02u:%02u", e / 3600, e / 60 % 60, e % 60);
	else
		snprintf(etas, sizeof(etas), "--:--");
	if (c->tty) {
		char bar[31];
		int w = (int)(frac * 30);
		for (int i = 0; i < 30; i++)
			bar[i] = i < w ? '=' : (i == w ? '>' : ' ');
		bar[30] = '\0';
		fprintf(stderr, "\r[%s] %3.0f%% %s / %s  %s/s  ETA %s \033[K", bar, frac * 100, a, b,
			r, etas);
		c->progress_drawn = true;
		if (final)
			fputc('\n', stderr);
	} else {
		fprintf(stderr, "%s: scanned %s of %s (%.0f%%), %s/s, ETA %s\n", c->prog, a, b,
			frac * 100, r, etas);
	}
}

/* Print above the progress bar. */
static void note(struct dd_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct dd_ctx *c, const char *fmt, ...)
{
	if (c->progress_drawn) {
		fputs("\r\033[K", stderr);
		c->progress_drawn = false;
	}
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: ", c->prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void add_failure(struct dd_ctx *c, int err, uint64_t bytes)
{
	c->failed_ranges++;
	c->failed_bytes += bytes;
	for (size_t i = 0; i < c->nfail; i++)
		if (c->fail[i].error == err) {
			c->fail[i].ranges++;
			c->fail[i].bytes += bytes;
			return;
		}
	if (c->nfail < sizeof(c->fail) / sizeof(c->fail[0])) {
		c->fail[c->nfail].error = err;
		c->fail[c->nfail].ranges = 1;
		c->fail[c->nfail].bytes = bytes;
		c->nfail++;
	}
}

static void mark_changed(struct dd_ctx *c, size_t f)
{
	if (c->files[f].changed)
		return;
	c->files[f].changed = true;
	size_t *n = realloc(c->changed, (c->nchanged + 1) * sizeof(*n));
	if (n) {
		c->changed = n;
		c->changed[c->nchanged++] = f;
	}
	if (!c->quiet)
		note(c, "%s: changed during the run", c->files[f].path);
}

/* True when f's stat no longer equals what the walk saw.  statx(2) asks
 * only for what is compared: not the access time, which a FUSE read marks
 * stale in the kernel, so an fstat after reading would cost a GETATTR
 * round trip to the daemon (fs/fuse/dir.c fuse_update_get_attr); size,
 * mtime and ctime are the kernel's own under the writeback cache. */
static bool stat_changed(const struct dd_file *f, int fd)
{
	struct statx sx;
	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW,
		  STATX_INO | STATX_SIZE | STATX_MTIME | STATX_CTIME, &sx) != 0)
		return true;
	const unsigned need = STATX_INO | STATX_SIZE | STATX_MTIME | STATX_CTIME;
	if ((sx.stx_mask & need) != need)
		return true;
	int64_t m = (int64_t)sx.stx_mtime.tv_sec * 1000000000 + sx.stx_mtime.tv_nsec;
	int64_t ct = (int64_t)sx.stx_ctime.tv_sec * 1000000000 + sx.stx_ctime.tv_nsec;
	return makedev(sx.stx_dev_major, sx.stx_dev_minor) != f->dev || sx.stx_ino != f->ino ||
	       sx.stx_size != f->size || m != f->mtime_ns || ct != f->ctime_ns;
}

/* ---- open descriptors of scanned files (DD_FD_CACHE) ---- */

/* The cached descriptor of file, or -1. */
static int fdc_get(struct dd_ctx *c, size_t file)
{
	for (int i = 0; i < c->fdc_cap; i++)
		if (c->fdc[i].fd >= 0 && c->fdc[i].file == file) {
			c->fdc[i].stamp = ++c->fdc_stamp;
			return c->fdc[i].fd;
		}
	return -1;
}

/* Keep fd open as file's (closing the least recently used one). */
static void fdc_put(struct dd_ctx *c, size_t file, int fd)
{
	int v = 0;
	for (int i = 0; i < c->fdc_cap; i++) {
		if (c->fdc[i].fd < 0) {
			v = i;
			break;
		}
		if (c->fdc[i].stamp < c->fdc[v].stamp)
			v = i;
	}
	if (c->fdc[v].fd >= 0)
		close(c->fdc[v].fd);
	c->fdc[v].fd = fd;
	c->fdc[v].file = file;
	c->fdc[v].stamp = ++c->fdc_stamp;
}

/* Close file's cached descriptor, if any. */
static void fdc_drop(struct dd_ctx *c, size_t file)
{
	for (int i = 0; i < c->fdc_cap; i++)
		if (c->fdc[i].fd >= 0 && c->fdc[i].file == file) {
			close(c->fdc[i].fd);
			c->fdc[i].fd = -1;
		}
}

/* The open-file limit was reached: close the least recently used half of
 * the cached descriptors (the only one, when one is cached).  true if any
 * was closed.  None of them is in use: a source descriptor is taken from
 * the cache only after the last open of the call that uses it. */
static bool fdc_shrink(struct dd_ctx *c)
{
	int open_n = 0;
	for (int i = 0; i < c->fdc_cap; i++)
		open_n += c->fdc[i].fd >= 0;
	int drop = open_n > 1 ? open_n / 2 : open_n;
	for (int k = 0; k < drop; k++) {
		int v = -1;
		for (int i = 0; i < c->fdc_cap; i++)
			if (c->fdc[i].fd >= 0 && (v < 0 || c->fdc[i].stamp < c->fdc[v].stamp))
				v = i;
		close(c->fdc[v].fd);
		c->fdc[v].fd = -1;
	}
	return drop > 0;
}

/* open(path) read-only for the scan or as a source; at the open-file
 * limit, once more after fdc_shrink.  The descriptor, or -1 with errno. */
static int open_data(struct dd_ctx *c, const char *path)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && (errno == EMFILE || errno == ENFILE) && fdc_shrink(c))
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	return fd;
}

static void json_str(FILE *o, const char *s)
{
	fputc('"', o);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(o, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(o, "\\u%04x", ch);
		else
			fputc(ch, o);
	}
	fputc('"', o);
}

static void summary(struct dd_ctx *c)
{
	double t = now_s(&c->t0);
	if (c->json) {
		FILE *o = stdout;
		fprintf(o, "{\"dry_run\":%s,\"files\":%" PRIu64 ",\"bytes_scanned\":%" PRIu64
			   ",\"bytes_hashed\":%" PRIu64 ",\"duplicate_bytes\":%" PRIu64
			   ",\"shared_bytes\":%" PRIu64 ",\"already_shared_bytes\":%" PRIu64
			   ",\"would_share_bytes\":%" PRIu64 ",\"runs\":%" PRIu64
			   ",\"whole_files\":%" PRIu64 ",\"failed_ranges\":%" PRIu64
			   ",\"failed_bytes\":%" PRIu64 ",\"store_records_dropped\":%" PRIu64
			   ",\"bytes_reused_shared\":%" PRIu64 ",\"unchanged\":%s,\"failures\":[",
			c->dry_run ? "true" : "false", c->files_scanned, c->bytes_scanned,
			c->bytes_hashed, c->dup_bytes, c->shared_bytes, c->already_bytes,
			c->would_bytes, c->runs, c->whole_files, c->failed_ranges, c->failed_bytes,
			c->store_dropped, c->bytes_reused, c->unchanged ? "true" : "false");
		for (size_t i = 0; i < c->nfail; i++) {
			fprintf(o, "%s{\"error\":", i ? "," : "");
			json_str(o, strerror(c->fail[i].error));
			fprintf(o, ",\"errno\":%d,\"ranges\":%" PRIu64 ",\"bytes\":%" PRIu64 "}",
				c->fail[i].error, c->fail[i].ranges, c->fail[i].bytes);
		}
		fprintf(o, "],\"changed_files\":[");
		for (size_t i = 0; i < c->nchanged; i++) {
			if (i)
				fputc(',', o);
			json_str(o, c->files[c->changed[i]].path);
		}
		fprintf(o, "],\"table\":{\"entry_bytes\":%d,\"capacity_entries\":%" PRIu64
			   ",\"used_entries\":%" PRIu64 ",\"sample_k\":%" PRIu64 "},\"seconds\":%.3f}\n",
			DD_TABLE_ENTRY_BYTES, c->table.capacity, c->table.used, c->table.sample_k, t);
		return;
	}
	if (c->quiet)
		return;
	char s[32], h[32], d[32], sh[32], al[32], w[32], fb[32];
	human(c->bytes_scanned, s, sizeof(s));
	human(c->bytes_hashed, h, sizeof(h));
	human(c->dup_bytes, d, sizeof(d));
	human(c->shared_bytes, sh, sizeof(sh));
	human(c->already_bytes, al, sizeof(al));
	human(c->would_bytes, w, sizeof(w));
	human(c->failed_bytes, fb, sizeof(fb));
	FILE *o = stdout;
	if (c->unchanged)
		fprintf(o, "unchanged:        %zu files as the last complete run left them "
			   "(--hashfile): nothing to scan\n", c->nfiles);
	fprintf(o, "files:            %" PRIu64 "\n", c->files_scanned);
	fprintf(o, "scanned:          %s (%" PRIu64 " bytes), hashed %s (%" PRIu64 " bytes)\n", s,
		c->bytes_scanned, h, c->bytes_hashed);
	if (c->bytes_reused) {
		char ru[32];
		human(c->bytes_reused, ru, sizeof(ru));
		fprintf(o, "shared, not read: %s (%" PRIu64 " bytes: blocks of other files "
			   "already hashed)\n", ru, c->bytes_reused);
	}
	fprintf(o, "duplicate:        %s (%" PRIu64 " bytes) in %" PRIu64 " runs, %" PRIu64
		   " whole files\n", d, c->dup_bytes, c->runs, c->whole_files);
	if (c->dry_run)
		fprintf(o, "would share:      %s (%" PRIu64 " bytes) (dry run: nothing changed)\n",
			w, c->would_bytes);
	else
		fprintf(o, "shared now:       %s (%" PRIu64 " bytes)\n", sh, c->shared_bytes);
	fprintf(o, "already shared:   %s (%" PRIu64 " bytes)\n", al, c->already_bytes);
	fprintf(o, "failed:           %" PRIu64 " ranges, %s (%" PRIu64 " bytes)\n",
		c->failed_ranges, fb, c->failed_bytes);
	for (size_t i = 0; i < c->nfail; i++)
		fprintf(o, "  %s: %" PRIu64 " ranges, %" PRIu64 " bytes\n",
			strerror(c->fail[i].error), c->fail[i].ranges, c->fail[i].bytes);
	fprintf(o, "changed during the run: %zu files\n", c->nchanged);
	for (size_t i = 0; i < c->nchanged; i++)
		fprintf(o, "  %s\n", c->files[c->changed[i]].path);
	if (c->table.sample_k > 1)
		fprintf(o, "hash table full (--memory %" PRIu64 "): kept blocks with hash %% %" PRIu64
			   " == 0: a duplicate run of n blocks is found with probability "
			   "1-(1-1/%" PRIu64 ")^n, whole duplicate files always\n",
			c->memory, c->table.sample_k, c->table.sample_k);
	fprintf(o, "time:             %.2f s\n", t);
}

/* ---- block hashes of the scanned file (side 0) and its match (side 1) ---- */

/* Files below this many blocks are read without asking for their device
 * blocks first (a map call costs about what reading them does). */
#define DD_PCACHE_MIN_BLOCKS 16

/* Block at byte pos of the chunk starting at block b0, if it is a whole
 * block (ends by end) in an extent shared with other files whose device
 * block was hashed before: its hash into *h, true. */
static bool cached_block(const struct dd_ctx *c, const uint64_t *phys, uint64_t b0, uint64_t pos,
			 uint64_t end, struct dd_hash *h)
{
	const struct dd_file *f = &c->files[c->cur];
	if (!phys || pos + f->blksize > end)
		return false;
	uint64_t p = phys[pos / f->blksize - b0];
	return (p & DD_PHYS_SHARED) && dd_pcache_get(&c->pcache, f->dev, p & ~DD_PHYS_SHARED, h);
}

/* Read and hash chunk ch of the current file into w; stores it. */
static int hash_chunk(struct dd_ctx *c, struct dd_window *w, uint64_t ch)
{
	struct dd_file *f = &c->files[c->cur];
	uint32_t bs = f->blksize;
	uint64_t b0 = ch * DD_CHUNK_BLOCKS;
	unsigned n = (unsigned)(f->nblocks - b0 < DD_CHUNK_BLOCKS ? f->nblocks - b0 : DD_CHUNK_BLOCKS);
	uint64_t start = b0 * bs, end = start + (uint64_t)n * bs;
	if (end > f->size)
		end = f->size;
	memset(w->h, 0, n * sizeof(w->h[0]));
	/* where other files share blocks of the chunk, their hashes may be
	 * known already: read each device block once (one map call per
	 * chunk, so not for small files).  On reflinkfs the map is taken for
	 * every chunk: when it maps every block, the chunk has no hole and
	 * the two lseeks (round trips to the daemon) are skipped; share_run
	 * reuses it for the first dedupe of the file. */
	uint64_t *phys = NULL;
	bool all_data = false;
	c->phys_h_valid = false;
	if ((n >= DD_PCACHE_MIN_BLOCKS || f->kind == DD_FS_REFLINKFS) &&
	    dd_phys_map(c->cur_fd, f->kind, start, n, bs, c->phys_h) == 0) {
		if (n >= DD_PCACHE_MIN_BLOCKS)
			phys = c->phys_h;
		c->phys_h_valid = true;
		c->phys_h_blk = b0;
		c->phys_h_n = n;
		/* mapped blocks are data to SEEK_DATA too (lib/file.c
		 * rlfs_lseek: any mapping); dirty pages only add data */
		all_data = f->kind == DD_FS_REFLINKFS;
		for (unsigned i = 0; all_data && i < n; i++)
			all_data = (c->phys_h[i] & ~DD_PHYS_SHARED) != 0;
	}
	uint64_t pos = start;
	while (pos < end) {
		off_t d = all_data ? (off_t)pos : lseek(c->cur_fd, (off_t)pos, SEEK_DATA), hl;
		if (all_data) {
			hl = (off_t)end;
		} else if (d < 0) {
			if (errno == ENXIO)
				break;
			d = (off_t)pos, hl = (off_t)end;   /* no SEEK_DATA: all data */
		} else {
			hl = lseek(c->cur_fd, d, SEEK_HOLE);
			if (hl < 0)
				hl = (off_t)end;
		}
		if ((uint64_t)d >= end)
			break;
		if ((uint64_t)hl > end)
			hl = (off_t)end;
		/* whole blocks touching the data [d, hl) */
		uint64_t rb = (uint64_t)d / bs * bs, re = ((uint64_t)hl + bs - 1) / bs * bs;
		if (re > end)
			re = end;
		while (rb < re) {
			if (cached_block(c, phys, b0, rb, end, &w->h[rb / bs - b0])) {
				c->bytes_reused += bs;
				rb += bs;
				continue;
			}
			uint64_t want = re - rb < DD_READ_BYTES ? re - rb : DD_READ_BYTES;
			struct dd_hash ign;
			for (uint64_t q = rb + bs; phys && q < rb + want; q += bs)
				if (cached_block(c, phys, b0, q, end, &ign)) {
					want = q - rb;   /* read up to the next known block */
					break;
				}
			ssize_t got = pread(c->cur_fd, c->rbuf, want, (off_t)rb);
			if (got < 0)
				return -errno;
			if ((uint64_t)got < want && rb + (uint64_t)got < f->size)
				return -ESTALE;     /* shrank while read */
			if (got == 0)
				return -ESTALE;
			c->bytes_hashed += (uint64_t)got;
			for (uint64_t o = 0; o < (uint64_t)got; o += bs) {
				size_t len = (uint64_t)got - o < bs ? (size_t)((uint64_t)got - o) : bs;
				uint64_t bi = (rb + o) / bs - b0;
				w->h[bi] = dd_hash_block(c->rbuf + o, len);
				if (phys && len == bs && (phys[bi] & DD_PHYS_SHARED))
					dd_pcache_put(&c->pcache, f->dev, phys[bi] & ~DD_PHYS_SHARED,
						      &w->h[bi]);
			}
			rb += (uint64_t)got;
		}
		pos = re > (uint64_t)hl ? re : (uint64_t)hl;
	}
	w->n = n;
	if (dd_db_put_chunk(c->db, f->db_id, ch, w->h, n) != 0) {
		c->store_failed = true;
		return -EIO;
	}
	return 0;
}

static int cur_open(struct dd_ctx *c);
static void fs_kind(struct dd_ctx *c, struct dd_file *f, int fd);

static struct dd_window *window(struct dd_ctx *c, size_t file, uint64_t ch, int *err)
{
	struct dd_window *lru = &c->win[0];
	for (int i = 0; i < DD_NWIN; i++) {
		struct dd_window *w = &c->win[i];
		if (w->valid && w->file == file && w->chunk == ch) {
			w->stamp = ++c->win_stamp;
			return w;
		}
		if (!w->valid || w->stamp < lru->stamp)
			lru = w;
	}
	struct dd_window *w = lru;
	w->valid = false;
	struct dd_file *f = &c->files[file];
	int n = dd_db_get_chunk(c->db, f->db_id, ch, w->h, DD_CHUNK_BLOCKS);
	if (n < 0) {
		c->store_failed = true;
		*err = -EIO;
		return NULL;
	}
	if (n == 0) {
		if (file != c->cur) {
			*err = -ENODATA;
			return NULL;
		}
		int r = cur_open(c);
		if (r == 0)
			r = hash_chunk(c, w, ch);
		if (r) {
			*err = r;
			return NULL;
		}
	} else {
		w->n = (unsigned)n;
	}
	w->valid = true;
	w->file = file;
	w->chunk = ch;
	w->stamp = ++c->win_stamp;
	return w;
}

static int get_hash(void *priv, int side, uint64_t blk, struct dd_hash *out)
{
	struct dd_ctx *c = priv;
	size_t file = side == 0 ? c->cur : c->src;
	int err = 0;
	struct dd_window *w = window(c, file, blk / DD_CHUNK_BLOCKS, &err);
	if (!w)
		return err;
	unsigned i = (unsigned)(blk % DD_CHUNK_BLOCKS);
	if (i >= w->n)
		return -ENODATA;
	*out = w->h[i];
	return 0;
}

/* ---- sharing a run ---- */

static int src_open(struct dd_ctx *c, size_t g)
{
	if (g == c->cur) {
		int r = cur_open(c);
		return r ? r : c->cur_fd;
	}
	int fd = fdc_get(c, g);
	if (fd >= 0) {
		/* checked at each use (a statx the kernel answers): later
		 * changes are the kernel compare's */
		if (stat_changed(&c->files[g], fd)) {
			fdc_drop(c, g);
			return -ESTALE;
		}
		return fd;
	}
	fd = open_data(c, c->files[g].path);
	if (fd < 0)
		return -errno;
	if (stat_changed(&c->files[g], fd)) {
		close(fd);
		return -ESTALE;
	}
	fs_kind(c, &c->files[g], fd);
	fdc_put(c, g, fd);
	return fd;
}

/* Share [run) of the current file F onto file g.  Returns false when F
 * changed (its scan stops). */
static bool share_run(struct dd_ctx *c, size_t g, const struct dd_run *run)
{
	struct dd_file *f = &c->files[c->cur], *gf = &c->files[g];
	uint32_t bs = f->blksize;
	uint64_t doff = run->dst_blk * bs, soff = run->src_blk * bs;
	uint64_t len = run->nblocks * bs, nblk = run->nblocks;
	bool d_eof = run->dst_blk + nblk == f->nblocks, s_eof = run->src_blk + nblk == gf->nblocks;
	if (doff + len > f->size || soff + len > gf->size) {
		/* an unaligned tail: only when both ranges end at their EOF */
		if (d_eof && s_eof && f->size - doff == gf->size - soff) {
			len = f->size - doff;
		} else {
			nblk--;
			len = nblk * bs;
		}
	}
	if (len == 0)
		return true;
	/* settled at an earlier run, both files unchanged since: no calls */
	struct dd_run as_shared = { run->dst_blk, run->src_blk, (len + bs - 1) / bs };
	if (dd_db_get_run(c->db, f->db_id, gf->db_id, &as_shared) == 1) {
		c->runs++;
		c->dup_bytes += len;
		c->already_bytes += len;
		return true;
	}
	/* a file that cannot be opened any more is a failure; one that is no
	 * longer what the walk saw (or is gone) changed during the run */
	int r0 = cur_open(c);
	if (r0) {
		if (r0 == -ESTALE || r0 == -ENOENT)
			mark_changed(c, c->cur);
		else
			add_failure(c, -r0, len);
		return false;
	}
	int sfd = src_open(c, g);
	if (sfd < 0) {
		if (sfd == -ESTALE || sfd == -ENOENT) {
			mark_changed(c, g);
		} else {
			add_failure(c, -sfd, len);
			gf->changed = true;  /* never a source again (not listed) */
		}
		return true;
	}
	bool settled = true, settled_now = false, shared_all = true;
	c->runs++;
	c->dup_bytes += len;
	if (c->verbose && !c->quiet)
		note(c, "%s %s+%" PRIu64 " <- %s+%" PRIu64 " (%" PRIu64 " bytes)",
		     c->dry_run ? "would share" : "share", gf->path, soff, f->path, doff, len);
	uint64_t piece_blocks = DD_SHARE_MAX_CALL_BYTES / bs;
	uint64_t all_blocks = (len + bs - 1) / bs;  /* the unaligned tail included */
	for (uint64_t p = 0; p < all_blocks; p += piece_blocks) {
		uint64_t pblocks = all_blocks - p < piece_blocks ? all_blocks - p : piece_blocks;
		uint64_t pend = (p + pblocks) * bs < len ? (p + pblocks) * bs : len;
		if (dd_phys_map(sfd, gf->kind, soff + p * bs, pblocks, bs, c->phys_s) != 0)
			memset(c->phys_s, 0, pblocks * sizeof(uint64_t));
		uint64_t dblk = run->dst_blk + p;
		if (c->phys_h_valid && dblk >= c->phys_h_blk &&
		    dblk + pblocks <= c->phys_h_blk + c->phys_h_n)
			/* the map hash_chunk took, no dedupe since */
			memcpy(c->phys_d, c->phys_h + (dblk - c->phys_h_blk),
			       pblocks * sizeof(uint64_t));
		else if (dd_phys_map(c->cur_fd, f->kind, doff + p * bs, pblocks, bs, c->phys_d) != 0)
			memset(c->phys_d, 0, pblocks * sizeof(uint64_t));
		uint64_t i = 0;
		while (i < pblocks) {
			bool shared = c->phys_s[i] && c->phys_s[i] == c->phys_d[i];
			uint64_t j = i + 1;
			while (j < pblocks &&
			       (c->phys_s[j] && c->phys_s[j] == c->phys_d[j]) == shared)
				j++;
			uint64_t a = (p + i) * bs, b = (p + j) * bs < pend ? (p + j) * bs : pend;
			uint64_t seg = b - a;
			i = j;
			if (shared) {
				c->already_bytes += seg;
				continue;
			}
			settled = false;
			if (c->dry_run) {
				c->would_bytes += seg;
				continue;
			}
			if (!c->hook_done) {
				c->hook_done = true;
				const char *hook = getenv("RLFS_DEDUPE_TEST_BEFORE_SHARE");
				if (hook && *hook && system(hook) != 0)
					note(c, "test hook failed: %s", hook);
			}
			/* direction: the side whose blocks other files already
			 * share keeps them (they stay in use whatever happens);
			 * sharing the other way would free nothing */
			uint64_t ns = 0, nd = 0;
			for (uint64_t k = a / bs - p; k < (b + bs - 1) / bs - p && k < pblocks; k++) {
				ns += (c->phys_s[k] & DD_PHYS_SHARED) != 0;
				nd += (c->phys_d[k] & DD_PHYS_SHARED) != 0;
			}
			struct dd_share_result r;
			f->shared_into = gf->shared_into = true;
			c->phys_h_valid = false;    /* the current file's map changes */
			if (nd > ns)
				dd_share(c->cur_fd, sfd, f->kind, doff + a, soff + a, seg, &r);
			else
				dd_share(sfd, c->cur_fd, f->kind, soff + a, doff + a, seg, &r);
			c->shared_bytes += r.deduped_bytes;
			if (r.differs) {
				/* report whichever changed; the destination when neither
				 * shows it in its stat */
				bool gch = stat_changed(gf, sfd);
				if (gch)
					mark_changed(c, g);
				if (!gch || stat_changed(f, c->cur_fd)) {
					mark_changed(c, c->cur);
					return false;
				}
				return true;
			}
			if (r.deduped_bytes == seg)
				settled_now = true;
			else
				shared_all = false;
			if (r.error) {
				add_failure(c, -r.error, seg - r.deduped_bytes);
				if (c->verbose && !c->quiet)
					note(c, "%s+%" PRIu64 ": dedupe failed: %s", f->path, doff + a,
					     strerror(-r.error));
			}
		}
	}
	if ((settled || (settled_now && shared_all)) && !c->dry_run)
		(void)dd_db_put_run(c->db, f->db_id, gf->db_id, &as_shared);
	return true;
}

/* ---- the scan ---- */

static struct dd_fast *fast_slot(struct dd_ctx *c, uint64_t size, const struct dd_hash *key)
{
	uint64_t mask = c->fast_cap - 1;
	for (uint64_t i = (key->lo ^ size * 0x9e3779b97f4a7c15ULL) & mask;; i = (i + 1) & mask) {
		struct dd_fast *s = &c->fast[i];
		if (s->file1 == 0 || (s->size == size && dd_hash_eq(&s->key, key)))
			return s;
	}
}

/* All block hashes of the current file equal those of file g (same
 * size).  0 no, 1 yes, negative errno. */
static int whole_equal(struct dd_ctx *c, size_t g)
{
	struct dd_file *f = &c->files[c->cur];
	c->src = g;
	uint64_t nch = (f->nblocks + DD_CHUNK_BLOCKS - 1) / DD_CHUNK_BLOCKS;
	for (uint64_t ch = 0; ch < nch; ch++) {
		int err = 0;
		struct dd_window *a = window(c, c->cur, ch, &err);
		if (!a)
			return err;
		a->stamp = ++c->win_stamp;
		struct dd_window *b = window(c, g, ch, &err);
		if (!b)
			return err;
		if (a->n != b->n || memcmp(a->h, b->h, a->n * sizeof(a->h[0])) != 0)
			return 0;
		for (unsigned i = 0; i < a->n; i++)
			if (dd_hash_is_hole(&a->h[i]))
				return 0;   /* holes match nothing: take the block path */
		c->bytes_scanned += (uint64_t)a->n * f->blksize;
		progress(c, false);
	}
	return 1;
}

/* The device cache entry of dev (made on first use), or NULL when full. */
static int dev_slot(struct dd_ctx *c, uint64_t dev)
{
	for (size_t i = 0; i < c->ndevs; i++)
		if (c->devs[i].dev == dev)
			return (int)i;
	if (c->ndevs == sizeof(c->devs) / sizeof(c->devs[0]))
		return -1;
	memset(&c->devs[c->ndevs], 0, sizeof(c->devs[0]));
	c->devs[c->ndevs].dev = dev;
	return (int)c->ndevs++;
}

/* Block size of f's filesystem (statfs f_bsize of its path, once per
 * device; a file that is unchanged in the store is never opened). */
static void fs_blksize(struct dd_ctx *c, struct dd_file *f)
{
	int i = dev_slot(c, f->dev);
	if (i >= 0 && c->devs[i].blksize) {
		f->blksize = c->devs[i].blksize;
		return;
	}
	struct statfs sfs;
	uint32_t bs = 0;
	if (statfs(f->path, &sfs) == 0 && sfs.f_bsize > 0)
		bs = (uint32_t)sfs.f_bsize;
	if (bs < 512 || bs > (1u << 20) || (bs & (bs - 1)))
		bs = 4096;
	f->blksize = bs;
	if (i >= 0)
		c->devs[i].blksize = bs;
}

/* The kind of f's filesystem, from an open descriptor (once per device). */
static void fs_kind(struct dd_ctx *c, struct dd_file *f, int fd)
{
	int i = dev_slot(c, f->dev);
	if (i >= 0 && c->devs[i].kind_known) {
		f->kind = c->devs[i].kind;
		return;
	}
	f->kind = dd_fs_kind_of(fd);
	if (i >= 0) {
		c->devs[i].kind = f->kind;
		c->devs[i].kind_known = true;
	}
}

/* Open the file being scanned if it is not yet (a file whose hashes come
 * from the store is opened only to share).  0, -errno, or -ESTALE when it
 * is no longer what the walk saw. */
static int cur_open(struct dd_ctx *c)
{
	if (c->cur_fd >= 0)
		return 0;
	struct dd_file *f = &c->files[c->cur];
	int fd = dd_prefetch_take(c->pf, c->cur);
	if (fd < 0)
		fd = open_data(c, f->path);
	if (fd < 0)
		return -errno;
	if (stat_changed(f, fd)) {
		close(fd);
		return -ESTALE;
	}
	fs_kind(c, f, fd);
	c->cur_fd = fd;
	return 0;
}

/* Files the scan may have opened ahead (dedupe_prefetch.c): 128, less
 * where the open-file limit leaves no room beside the descriptors open
 * now (inherited ones too), the source cache and a margin of 72 for the
 * store and the dedupe calls (0: none). */
static size_t prefetch_files(const struct dd_ctx *c)
{
	uint64_t left = dd_fds_left(), keep = (uint64_t)c->fdc_cap + 64 + 8;
	uint64_t spare = left > keep ? left - keep : 0;
	return spare / 2 < 128 ? (size_t)(spare / 2) : 128;
}

/* Descriptors the source cache may keep: half of what RLIMIT_NOFILE leaves
 * beside those open now (stdio, inherited ones, the store) and 32 for
 * SQLite's journal and temporaries and the file being scanned; at least
 * 1, at most DD_FD_CACHE (256 at the usual limit of 1024). */
static int fdc_capacity(void)
{
	uint64_t left = dd_fds_left();
	uint64_t n = left > 32 ? (left - 32) / 2 : 0;
	return n < 1 ? 1 : n > DD_FD_CACHE ? DD_FD_CACHE : (int)n;
}

/* dd_prefetch_get_fn: the walk's path and size of file i (neither
 * changes during the scan). */
static bool prefetch_get(void *arg, size_t i, const char **path, uint64_t *size_bytes)
{
	const struct dd_ctx *c = arg;
	*path = c->files[i].path;
	*size_bytes = c->files[i].size;
	return true;
}

/* Scan file index fi; returns 0, or EXIT_OPERATIONAL for a store error. */
static int scan_file(struct dd_ctx *c, size_t fi)
{
	struct dd_file *f = &c->files[fi];
	uint64_t scanned0 = c->bytes_scanned;
	dd_prefetch_at(c->pf, fi);
	fs_blksize(c, f);
	f->nblocks = (f->size + f->blksize - 1) / f->blksize;
	struct dd_file_key key = { f->dev, f->ino, f->size, f->mtime_ns, f->ctime_ns, f->blksize };
	/* the store is keyed by absolute path: a rerun from another directory
	 * finds the same records */
	char *abs = NULL;
	if (f->path[0] != '/' && c->cwd && asprintf(&abs, "%s/%s", c->cwd, f->path) < 0)
		abs = NULL;
	int cached = dd_db_begin_file(c->db, abs ? abs : f->path, &key, &f->db_id);
	free(abs);
	if (cached < 0) {
		fprintf(stderr, "%s: hash store: cannot record %s\n", c->prog, f->path);
		return EXIT_OPERATIONAL;
	}
	c->cur = fi;
	c->cur_fd = -1;
	c->phys_h_valid = false;
	int err = 0;
	bool ok = true;
	if (cached == 0) {
		/* to be read: open it now (a file unchanged in the store is
		 * opened only if a run of it is to be shared) */
		err = cur_open(c);
		if (err) {
			/* gone or replaced since the walk: changed; cannot be
			 * opened (no permission, no descriptor left...): a
			 * failure with its reason, not a change */
			if (err == -ESTALE || err == -ENOENT) {
				mark_changed(c, fi);
			} else {
				if (!c->quiet)
					note(c, "%s: cannot open: %s (skipped)", f->path,
					     strerror(-err));
				add_failure(c, -err, f->size);
			}
			(void)dd_db_end_file(c->db, f->db_id, false);
			c->bytes_scanned = scanned0 + f->size;
			return 0;
		}
	}
	c->files_scanned++;

	/* whole-file fast path */
	struct dd_hash h0;
	c->src = fi;
	if ((err = get_hash(c, 0, 0, &h0)) != 0)
		goto out;
	if (!dd_hash_is_hole(&h0)) {
		struct dd_hash k0 = dd_table_key(&h0, (dev_t)f->dev);
		struct dd_fast *s = fast_slot(c, f->size, &k0);
		if (s->file1 && !c->files[s->file1 - 1].changed &&
		    c->files[s->file1 - 1].blksize == f->blksize) {
			size_t g = s->file1 - 1;
			int eq = whole_equal(c, g);
			if (eq < 0) {
				err = eq;
				goto out;
			}
			c->bytes_scanned = scanned0;
			if (eq == 1) {
				struct dd_run run = { 0, 0, f->nblocks };
				c->whole_files++;
				ok = share_run(c, g, &run);
				c->bytes_scanned = scanned0 + f->size;
				goto out;
			}
		} else if (!s->file1) {
			s->size = f->size;
			s->key = k0;
			s->file1 = (uint32_t)fi + 1;
		}
	}

	/* block path */
	uint64_t b = 0, floor_blk = 0;
	while (b < f->nblocks && ok) {
		struct dd_hash h;
		if ((err = get_hash(c, 0, b, &h)) != 0)
			goto out;
		if (b % DD_CHUNK_BLOCKS == 0) {
			c->bytes_scanned = scanned0 + b * f->blksize;
			progress(c, false);
		}
		if (dd_hash_is_hole(&h)) {
			b++;
			continue;
		}
		struct dd_hash k = dd_table_key(&h, (dev_t)f->dev);
		struct dd_table_entry *e = dd_table_lookup(&c->table, &k);
		if (e && e->file < c->nfiles && !c->files[e->file].changed &&
		    c->files[e->file].dev == f->dev && c->files[e->file].blksize == f->blksize &&
		    (e->file != fi || e->blk1 - 1 < b)) {
			struct dd_run run;
			c->src = e->file;
			int r = dd_grow_run(get_hash, c, b, e->blk1 - 1, floor_blk, f->nblocks,
					    c->files[e->file].nblocks, e->file == fi, &run);
			if (r == 0) {
				ok = share_run(c, e->file, &run);
				b = run.dst_blk + run.nblocks;
				floor_blk = b;
				continue;
			}
			if (r != -EINVAL) {
				if (r == -ENODATA) {   /* the source's hashes are gone */
					mark_changed(c, e->file);
				} else {
					err = r;
					goto out;
				}
			}
		}
		dd_table_insert(&c->table, &k, (uint32_t)fi, b);
		b++;
	}
out:
	c->bytes_scanned = scanned0 + f->size;
	progress(c, false);
	if (c->store_failed) {
		if (c->cur_fd >= 0)
			close(c->cur_fd);
		c->cur_fd = -1;
		fprintf(stderr, "%s: hash store error while scanning %s\n", c->prog, f->path);
		return EXIT_OPERATIONAL;
	}
	if (err && !c->quiet && err != -ESTALE)
		note(c, "%s: %s", f->path, strerror(-err));
	/* hashes are kept only for a file that did not change while read (a
	 * stored record was not read: a change now shows at the next run) */
	bool complete = err == 0 && !f->changed &&
			(cached == 1 || (c->cur_fd >= 0 && !stat_changed(f, c->cur_fd)));
	if (!complete)
		mark_changed(c, fi);
	/* drop every window of this file when its hashes are not kept */
	for (int i = 0; i < DD_NWIN; i++)
		if (!complete && c->win[i].file == fi)
			c->win[i].valid = false;
	int r = dd_db_end_file(c->db, f->db_id, complete);
	f->scanned = complete;
	/* kept open for the runs of later files that match it */
	if (c->cur_fd >= 0 && complete)
		fdc_put(c, fi, c->cur_fd);
	else if (c->cur_fd >= 0)
		close(c->cur_fd);
	c->cur_fd = -1;
	c->phys_h_valid = false;
	(void)ok;
	if (r != 0) {
		fprintf(stderr, "%s: hash store error after scanning %s\n", c->prog, f->path);
		return EXIT_OPERATIONAL;
	}
	return 0;
}

static int parse_bytes(struct dd_ctx *c, const char *opt, const char *s, uint64_t *out)
{
	unsigned long long v;
	if (rlfs_parse_size(s, &v) != 0) {
		fprintf(stderr, "%s: %s: bad size '%s'\n", c->prog, opt, s);
		return -1;
	}
	*out = v;
	return 0;
}

int rlfs_dedupe_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "recursive", no_argument, NULL, 'r' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "one-file-system", no_argument, NULL, 'x' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "json", no_argument, NULL, 'J' },
		{ "hashfile", required_argument, NULL, 'H' },
		{ "min-size", required_argument, NULL, 'M' },
		{ "memory", required_argument, NULL, 'm' },
		{ "exclude", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct dd_ctx *c = calloc(1, sizeof(*c));
	if (!c) {
		fprintf(stderr, "%s: out of memory\n", argv[0]);
		return EXIT_OPERATIONAL;
	}
	c->prog = argv[0];
	c->memory = DD_DEFAULT_MEMORY;
	c->min_size = 1;
	c->cur_fd = -1;
	for (int i = 0; i < DD_FD_CACHE; i++)
		c->fdc[i].fd = -1;
	c->fdc_cap = fdc_capacity();
	int rc = EXIT_OK, o;
	while ((o = getopt_long(argc, argv, "rnxqvh", lo, NULL)) != -1) {
		switch (o) {
		case 'r': c->recursive = true; break;
		case 'n': c->dry_run = true; break;
		case 'x': c->one_fs = true; break;
		case 'q': c->quiet = true; break;
		case 'v': c->verbose = true; break;
		case 'J': c->json = true; break;
		case 'H': c->hashfile = optarg; break;
		case 'M':
			if (parse_bytes(c, "--min-size", optarg, &c->min_size) != 0) {
				rc = EXIT_USAGE;
				goto done;
			}
			if (c->min_size == 0)
				c->min_size = 1;
			break;
		case 'm':
			if (parse_bytes(c, "--memory", optarg, &c->memory) != 0) {
				rc = EXIT_USAGE;
				goto done;
			}
			if (c->memory < 1024 * DD_TABLE_ENTRY_BYTES) {
				fprintf(stderr, "%s: --memory: at least %d bytes\n", c->prog,
					1024 * DD_TABLE_ENTRY_BYTES);
				rc = EXIT_USAGE;
				goto done;
			}
			break;
		case 'e': {
			char **n = realloc(c->excludes, (c->nexcludes + 1) * sizeof(*n));
			if (!n) {
				rc = EXIT_OPERATIONAL;
				goto done;
			}
			c->excludes = n;
			c->excludes[c->nexcludes++] = optarg;
			break;
		}
		case 'h':
			usage(stdout, c->prog);
			goto done;
		default:
			fprintf(stderr, "Try '%s --help'.\n", c->prog);
			rc = EXIT_USAGE;
			goto done;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "%s: no PATH given (try '%s --help')\n", c->prog, c->prog);
		rc = EXIT_USAGE;
		goto done;
	}
	if (c->quiet && c->verbose)
		c->verbose = false;
	c->tty = isatty(STDERR_FILENO) && !c->quiet;
	clock_gettime(CLOCK_MONOTONIC, &c->t0);
	c->last_progress = c->t0;
	c->last_progress.tv_sec -= 10;

	c->cwd = getcwd(NULL, 0);
	char err[256];
	if (dd_db_open(&c->db, c->hashfile, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s: %s\n", c->prog, c->hashfile ? c->hashfile : "hash store",
			err);
		rc = EXIT_OPERATIONAL;
		goto done;
	}
	/* the hash file and SQLite's files beside it are never scanned */
	for (int i = 0; c->hashfile && i < 4; i++) {
		static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
		char *p = NULL;
		struct stat st;
		if (asprintf(&p, "%s%s", c->hashfile, sfx[i]) >= 0 && stat(p, &st) == 0) {
			c->skip[c->nskip].dev = st.st_dev;
			c->skip[c->nskip].ino = st.st_ino;
			c->nskip++;
		}
		free(p);
	}
	rc = walk(c, argc - optind, argv + optind);
	if (rc)
		goto done;
	if (c->nfiles >= UINT32_MAX) {
		fprintf(stderr, "%s: too many files (%zu)\n", c->prog, c->nfiles);
		rc = EXIT_OPERATIONAL;
		goto done;
	}
	if (dd_table_init(&c->table, c->memory, c->blocks_bound) != 0) {
		fprintf(stderr, "%s: cannot allocate the hash table (--memory)\n", c->prog);
		rc = EXIT_OPERATIONAL;
		goto done;
	}
	c->fast_cap = 16;
	while (c->fast_cap < c->nfiles * 2)
		c->fast_cap *= 2;
	c->fast = calloc(c->fast_cap, sizeof(*c->fast));
	c->rbuf = malloc(DD_READ_BYTES);
	/* per piece: 16 MiB of the smallest block size */
	c->phys_s = malloc((DD_SHARE_MAX_CALL_BYTES / 512) * sizeof(uint64_t));
	c->phys_d = malloc((DD_SHARE_MAX_CALL_BYTES / 512) * sizeof(uint64_t));
	c->phys_h = malloc(DD_CHUNK_BLOCKS * sizeof(uint64_t));
	dd_pcache_init(&c->pcache, c->memory / 4);
	if (!c->fast || !c->rbuf || !c->phys_s || !c->phys_d || !c->phys_h) {
		fprintf(stderr, "%s: out of memory\n", c->prog);
		rc = EXIT_OPERATIONAL;
		goto done;
	}
	/* --hashfile and nothing changed since a complete run: done */
	char digest[33] = "", stored[40] = "";
	if (c->hashfile && !c->dry_run && !c->walk_errors) {
		tree_digest(c, digest);
		if (digest[0] && dd_db_meta_get(c->db, "clean_tree", stored, sizeof(stored)) == 0 &&
		    strcmp(stored, digest) == 0)
			c->unchanged = true;
		/* whatever this run does, the stored tree holds only after it;
		 * an unchanged run changes nothing and writes nothing (no WAL
		 * frames, no checkpoint and its fsyncs at close) */
		else if (dd_db_meta_set(c->db, "clean_tree", NULL) != 0)
			c->store_failed = true;
	}
	if (!c->unchanged)
		qsort(c->files, c->nfiles, sizeof(*c->files), cmp_size_desc);
	/* open and read ahead of the scan, when the scan reads every file:
	 * no store, or an empty one (a store with records skips the files
	 * it holds, and reading them ahead would be wasted) */
	int64_t stored_files = 0;
	if (!c->unchanged && (!c->hashfile || (dd_db_nfiles(c->db, &stored_files) == 0 &&
					       stored_files == 0)) &&
	    dd_prefetch_start(&c->pf, c->nfiles, prefetch_files(c), prefetch_get, c) != 0)
		c->pf = NULL;   /* out of memory: the scan opens every file */
	struct timespec tc = c->t0;
	for (size_t i = 0; i < c->nfiles && !c->unchanged; i++) {
		rc = scan_file(c, i);
		if (rc)
			break;
		if (now_s(&tc) > 2.0) {
			if (dd_db_commit(c->db) != 0) {
				fprintf(stderr, "%s: hash store: commit failed\n", c->prog);
				rc = EXIT_OPERATIONAL;
				break;
			}
			clock_gettime(CLOCK_MONOTONIC, &tc);
		}
	}
	dd_prefetch_stop(c->pf);
	c->pf = NULL;
	for (int i = 0; i < DD_FD_CACHE; i++)
		if (c->fdc[i].fd >= 0) {
			close(c->fdc[i].fd);
			c->fdc[i].fd = -1;
		}
	/* a persistent store forgets the files under the roots this complete
	 * run did not see (deleted, renamed, excluded now) */
	for (int i = optind; rc == 0 && c->hashfile && !c->unchanged && i < argc; i++) {
		char *abs = NULL;
		if (argv[i][0] != '/' && c->cwd && asprintf(&abs, "%s/%s", c->cwd, argv[i]) < 0)
			abs = NULL;
		if (dd_db_prune(c->db, abs ? abs : argv[i], &c->store_dropped) != 0) {
			fprintf(stderr, "%s: hash store: cannot drop the records of vanished files\n",
				c->prog);
			rc = EXIT_OPERATIONAL;
		}
		free(abs);
	}
	/* a clean, complete run: the tree it leaves (the files it deduped
	 * stat'ed again: a dedupe may move ctime) is the one the next run can
	 * skip (an unchanged run found that one stored: it stays) */
	if (rc == 0 && digest[0] && !c->store_failed && !c->unchanged &&
	    !c->failed_ranges && !c->nchanged && restat_shared(c)) {
		tree_digest(c, digest);
		if (dd_db_meta_set(c->db, "clean_tree", digest) != 0)
			c->store_failed = true;
	}
	if (c->verbose && c->store_dropped)
		fprintf(stderr, "%s: hash store: dropped %" PRIu64 " record(s) of files no longer "
			"found\n", c->prog, c->store_dropped);
	if (dd_db_close(c->db) != 0 && rc == 0) {
		fprintf(stderr, "%s: hash store: cannot write %s\n", c->prog,
			c->hashfile ? c->hashfile : "the temporary store");
		rc = EXIT_OPERATIONAL;
	}
	c->db = NULL;
	progress(c, true);
	summary(c);
	if (rc == 0 && (c->failed_ranges || c->nchanged))
		rc = EXIT_SOME_FAILED;
done:
	dd_prefetch_stop(c->pf);
	if (c->db)
		dd_db_close(c->db);
	dd_table_free(&c->table);
	dd_pcache_free(&c->pcache);
	free(c->phys_h);
	for (size_t i = 0; i < c->nfiles; i++)
		free(c->files[i].path);
	free(c->files);
	free(c->excludes);
	free(c->cwd);
	free(c->changed);
	free(c->fast);
	free(c->rbuf);
	free(c->phys_s);
	free(c->phys_d);
	free(c);
	return rc;
}

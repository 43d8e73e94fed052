/*
 * crashtest.c: rlfs-crashtest, the crash tester (issue 10 section 4;
 * docs/DESIGN.md "Crash testing").
 *
 *   rlfs-crashtest [--workload fsx|clone|enospc|dir|falloc|meta|unlinked|remount|cowwide|dedupe|shift|exchange|all]
 *                  [--seed S]
 *                  [--ops N] [--count N] [--images M]
 *                  [--mode all|synced|flush|random|recovery|repair] [--damage KIND]
 *                  [--cut K] [--dir DIR] [--keep]
 *                  [--lying-flush] [--no-rmap] [--log-bytes B] [-v]
 *
 * Model: CrashMonkey (record the block writes of a workload, replay every
 * prefix and subsets of the unflushed writes, check what fsync promised)
 * and SQLite's crash tests (unflushed sectors lost or kept at random, torn
 * multi-sector writes), on the library API directly (no FUSE).
 *
 * 1. mkfs a small image, mount it through the library, and put a
 *    crash-recording device (lib/dev_crash.h) under the mount.
 * 2. Run a workload: every file's contents are modelled in memory as a
 *    list of versions (one per operation that changed it, with the record
 *    position when the operation returned), and every successful fsync,
 *    fdatasync or sync notes which version became durable.  Written bytes
 *    carry a per-file, per-write pattern: byte = file id << 4 | 4 bits
 *    from (write number, offset), never 0, so that zeros, another file's
 *    bytes and stale bytes are told apart.
 * 3. Make a list of cuts: "synced" (right after an fsync/sync returned),
 *    "flush" (every other device flush), "random" (--count per flush
 *    interval: a random position between two flushes, unflushed writes
 *    kept in order, or a random subset with some torn 4 KiB sectors).
 *    Image K of the list is always the same for the same seed, workload,
 *    ops and count, so `--cut K` rebuilds one.
 * 4. For each cut: build the crash image in a file, then (in a checking
 *    child process, one for many images) mount it (log recovery, once
 *    there is a log), verify every file (below), unmount, and run
 *    `fsck -n` (must exit 0).  Every --fsck-every'th image (default 4) is
 *    then built again and replayed by `fsck` (repair) instead of a mount:
 *    exit 0 or 1, the same checks, and the same model files as the mount
 *    gave (check_fsck_replay).
 *    A file fsync'd before the cut must exist, with a size of its fsync'd
 *    version or a later one, and each byte equal to that byte in one of
 *    those versions (old or new, never zeros where data was, never another
 *    file's data).  A file never fsync'd may be missing, but if present
 *    must also hold only bytes of its own versions.  The dir workload
 *    checks names the same way (see "the dir workload" below), the meta
 *    workload names, attributes, link counts, xattrs and the bytes of a
 *    few files as "properties" (see "the meta workload" below).
 *    Workloads: fsx (writes, truncates, punches, zero ranges, clones,
 *    unshares, copy ranges, dedupes, fsync/fdatasync/sync on 4 files), clone (a 2 MiB file
 *    cloned twice, then small CoW overwrites), dedupe (the same start, then
 *    CoW overwrites and ranges deduped back, same or differing), shift (files
 *    of many extents, some shared and some unwritten, then only collapses and
 *    inserts, fsyncs and syncs: each file must equal one allowed version as
 *    a whole, never be half shifted: "torn"), exchange
 *    (fragmented files with holes, unwritten and shared extents whose
 *    ranges are exchanged, rlfs_exchange_range, each exchange between
 *    fsyncs of both files: a cut between them must find each file whole
 *    at its version before or after the exchange, both the same side,
 *    check_exchanges), enospc (a 16 MiB image
 *    filled past full, then writes, clones, truncates, unshares), dir
 *    (create, write, link, unlink, rename, RENAME_EXCHANGE, mkdir, rmdir,
 *    a directory moved; file and directory fsyncs), falloc (fsx without
 *    sharing: preallocation and zero range with and without KEEP_SIZE,
 *    punches, truncates, writes), meta (xattrs of 1 byte to 20 KiB set,
 *    replaced, removed, on files, on directories and on a symlink
 *    (trusted.*), the directory and symlink sometimes fsync'd; POSIX ACLs; chmod, chown, utimes; setuid/setgid
 *    killed by a write; symlinks short and long; fifos, character and
 *    block devices; hard links and link counts; rename plain,
 *    RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT; O_TMPFILE
 *    written, maybe fsync'd nameless, then linkat or not; a file unlinked
 *    while open, written and fsync'd after the unlink; a directory of
 *    hundreds of long names in bursts, fsync'd; clones stopped part-way
 *    by rlfs_clone_range_cancel).  Every model is checked against the
 *    live library after each operation (a mismatch is a workload error).
 *    --lying-flush makes every cut lose the last flush: the checks must
 *    then fail (35-crash uses it to prove that they can).
 *    --mode recovery: crashes during log recovery.  For each image (of
 *    every kind of cut; --images bounds them) the crash image is mounted
 *    through a second recording device (rlfs_mount_open_dev), so the
 *    recovery's writes and flushes (replay, clean tail record, intents
 *    finished, unlinked inodes freed, superblock) are recorded; an image
 *    whose log needed no replay is skipped.  The recovery is then cut at
 *    each of its flushes, at its end, and at --count random points per
 *    flush interval (the even ones: every write since the last flush
 *    issued, a random subset kept, some sectors torn), and each of those
 *    images is checked as in 4 against the workload's model at the first
 *    cut: the second recovery must give what the first promised.  The
 *    mode sets RLFS_LOG_FORCE_INTENTS=1 (every intent in its own
 *    checkpoint) so that crash images hold intents without their done.
 *    check_recovery; findings name the recovery cut in brackets.
 *    --mode repair: crashes during fsck's own repair, damaged images
 *    repaired on a recording device and the repair cut (crash_repair.c;
 *    --workload is not used).
 * 5. Print one line per failed image (kinds and how to reproduce), then
 *    "checked N crash images, M failed", and a RESULT line for scripts.
 *    RLFS_CRASH_TRACE=1 prints the file operations as they run (with the
 *    version each made), RLFS_CRASH_DUMP=1 the record.
 *
 * Exit: 0 no image failed, 1 some failed, 2 usage or workload error (the
 * workload itself went wrong before any crash: a bug in the library or
 * here).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "reflinkfs/fs.h"
#include "rlfs.h"
#include "dev.h"
#include "dev_crash.h"
#include "log.h"
#include "crash_repair.h"

int rlfs_fsck_main(int argc, char **argv); /* tools/fsck.c */

#define CHUNK_BYTES 4096u
#define MAX_FILES 12
#define BLOCK_BYTES 4096u

/* ---------------------------------------------------------------- */
/* options and random numbers                                         */

struct opts {
	const char *workload;
	uint64_t seed;
	unsigned ops;
	unsigned count;             /* random cuts per flush interval */
	unsigned images;            /* at most this many images (0: all) */
	const char *mode;           /* all, synced, flush, random */
	long long cut;              /* only image K, or -1 */
	const char *dir;
	bool keep, verbose;
	bool lying_flush;           /* every cut: the last flush was not done */
	unsigned fsck_every;        /* fsck-replay check on every Nth image (0: none) */
	const char *damage;         /* --mode repair: which damage kinds */
};

static uint64_t mix64(uint64_t z)
{
	z += 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t rng_state;
static uint64_t rnd(void)
{
	rng_state = mix64(rng_state);
	return rng_state;
}
/* uniform in [0, n), n > 0 */
static uint64_t rndn(uint64_t n)
{
	return rnd() % n;
}

/* ---------------------------------------------------------------- */
/* the model: versions of each file                                   */

struct fver {
	uint64_t end_pos;           /* record position when the op returned */
	uint64_t size_bytes;
	uint8_t **chunks;           /* ceil(max_bytes / CHUNK_BYTES); NULL = zeros */
	/* made by a clone or a write that grew the file: a crash may leave
	 * any block-aligned size between the previous version's and this
	 * one's (a clone of many extents commits in batches, each growing the
	 * size over what it mapped, see DESIGN.md "Clone"; a write commits
	 * its copy-on-write part and its new blocks separately) */
	bool grow_prefix;
};

struct fsync_mark {
	uint64_t pos;               /* position when the fsync/sync returned */
	size_t vi;                  /* the version it made durable */
};

struct fmodel {
	int fid;                    /* 1..MAX_FILES: the pattern's high nibble */
	char name[32];
	uint64_t dir_ino;
	uint64_t ino;
	bool created;
	uint64_t created_pos;
	uint64_t max_bytes;         /* model capacity */
	uint8_t *cur;               /* current contents (max_bytes) */
	uint64_t cur_size;
	struct fver *v;
	size_t nv, vcap;
	struct fsync_mark *sy;
	size_t nsy, sycap;
	/* versions from whole_from on change the file only by crash-atomic
	 * metadata operations over durable data (the shift workload's
	 * collapses and inserts): a crash image whose allowed versions all
	 * lie there must equal one of them as a whole (SIZE_MAX: never) */
	size_t whole_from;
};

/* chunk memory: shared between versions, all freed at the end of a
 * workload (chunk_free_all) */
static uint8_t **all_chunks;
static size_t nall_chunks, all_chunks_cap;

static uint8_t *chunk_dup(const uint8_t *p)
{
	uint8_t *c = malloc(CHUNK_BYTES);
	if (!c || (nall_chunks == all_chunks_cap &&
		   !(all_chunks = realloc(all_chunks, (all_chunks_cap = all_chunks_cap * 2 + 1024) *
						      sizeof(*all_chunks))))) {
		fprintf(stderr, "rlfs-crashtest: out of memory\n");
		exit(2);
	}
	memcpy(c, p, CHUNK_BYTES);
	all_chunks[nall_chunks++] = c;
	return c;
}

static void chunk_free_all(void)
{
	for (size_t i = 0; i < nall_chunks; i++)
		free(all_chunks[i]);
	free(all_chunks);
	all_chunks = NULL;
	nall_chunks = all_chunks_cap = 0;
}

static bool zero_chunk(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (!q) {
		fprintf(stderr, "rlfs-crashtest: out of memory\n");
		exit(2);
	}
	return q;
}

/* Snapshot f's current contents as a new version ending at pos; chunks
 * equal to the previous version's are shared. */
static void push_version(struct fmodel *f, uint64_t pos)
{
	size_t nch = (size_t)((f->max_bytes + CHUNK_BYTES - 1) / CHUNK_BYTES);
	if (f->nv == f->vcap) {
		f->vcap = f->vcap ? f->vcap * 2 : 64;
		f->v = xrealloc(f->v, f->vcap * sizeof(*f->v));
	}
	struct fver *prev = f->nv ? &f->v[f->nv - 1] : NULL;
	struct fver *nv = &f->v[f->nv];
	nv->end_pos = pos;
	nv->size_bytes = f->cur_size;
	nv->grow_prefix = false;
	nv->chunks = calloc(nch, sizeof(*nv->chunks));
	if (!nv->chunks) {
		fprintf(stderr, "rlfs-crashtest: out of memory\n");
		exit(2);
	}
	for (size_t c = 0; c < nch; c++) {
		const uint8_t *p = f->cur + c * CHUNK_BYTES;
		if (prev && prev->chunks[c] && memcmp(prev->chunks[c], p, CHUNK_BYTES) == 0)
			nv->chunks[c] = prev->chunks[c];
		else if (zero_chunk(p, CHUNK_BYTES))
			nv->chunks[c] = NULL;
		else
			nv->chunks[c] = chunk_dup(p);
	}
	f->nv++;
}

static void push_sync(struct fmodel *f, uint64_t pos)
{
	if (!f->created || !f->nv)
		return;
	if (f->nsy == f->sycap) {
		f->sycap = f->sycap ? f->sycap * 2 : 64;
		f->sy = xrealloc(f->sy, f->sycap * sizeof(*f->sy));
	}
	f->sy[f->nsy].pos = pos;
	f->sy[f->nsy].vi = f->nv - 1;
	f->nsy++;
}

static uint8_t ver_byte(const struct fver *v, uint64_t off)
{
	const uint8_t *c = v->chunks[off / CHUNK_BYTES];
	return c ? c[off % CHUNK_BYTES] : 0;
}

static uint8_t pattern(int fid, uint64_t wseq, uint64_t off)
{
	return (uint8_t)((fid << 4) | (((off * 31) ^ (wseq * 17) ^ (off >> 7)) & 15));
}

/* ---------------------------------------------------------------- */
/* the workload                                                       */

struct wl {
	const struct opts *o;
	struct rlfs_mount *mp;
	struct rlfs_crash_rec *rec;
	struct fmodel f[MAX_FILES];
	int nf;
	uint64_t wseq;
	uint64_t *synced;           /* positions right after a successful sync */
	size_t nsynced, syncedcap;
	uint64_t nops, nenospc;
	uint64_t ncowgc;            /* staged CoW blocks given back by cow_gc */
	bool hold_lookups;          /* created files keep the kernel's lookup, as on a
				     * mount: their CoW forks live between ops */
	uint8_t *iobuf;             /* max_bytes of the largest file */
	uint64_t image_bytes;
	bool log_feature;
	struct dmodel *dm;          /* the dir workload's namespace model */
	struct mmodel *mm;          /* the meta workload's property model */
	struct rlfs_dev *mem;       /* the memory device under the record */
	bool remounts;              /* fsx: clean unmount + mount now and then */
	uint64_t nremounts;
};

static void dm_mark_all(struct wl *w);
static void mm_mark_all(struct wl *w);

static uint64_t wl_pos(struct wl *w)
{
	return rlfs_crash_rec_pos(w->rec);
}

static char tmpdir[4096];

/* remove the temporary files and directory (on any exit) */
static void clean_tmpdir(void)
{
	static const char *const names[] = { "base.img", "crash.img", "crash.img.fsck",
					     "crash.img.repair", "recovery-crash.img",
					     "recovery-crash.img.fsck" };
	char p[4200];
	if (!tmpdir[0])
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", tmpdir, names[i]);
		unlink(p);
	}
	rmdir(tmpdir);
}

static void wl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void wl_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "rlfs-crashtest: workload error: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	fflush(stdout);
	clean_tmpdir();
	_exit(2);   /* no leak report: the workload's memory is still in use */
}

/* Read f back through the library into cur (after an operation that
 * failed part-way: the library's state is the truth). */
static void resync(struct wl *w, struct fmodel *f)
{
	struct stat st;
	int err = rlfs_getattr(w->mp, f->ino, &st);
	if (err)
		wl_fail("getattr %s: %s", f->name, strerror(-err));
	if ((uint64_t)st.st_size > f->max_bytes)
		wl_fail("%s grew to %lld bytes, past the model's %" PRIu64, f->name,
			(long long)st.st_size, f->max_bytes);
	memset(f->cur, 0, f->max_bytes);
	f->cur_size = (uint64_t)st.st_size;
	uint64_t done = 0;
	while (done < f->cur_size) {
		ssize_t n = rlfs_read(w->mp, f->ino, f->cur + done, f->cur_size - done, (off_t)done);
		if (n <= 0)
			wl_fail("read %s: %s", f->name, n ? strerror((int)-n) : "short");
		done += (uint64_t)n;
	}
}

/* The library's view of f must equal the model (checked after every
 * operation: a model bug must not pass as a crash finding). */
static void verify_live(struct wl *w, struct fmodel *f, const char *op)
{
	struct stat st;
	int err = rlfs_getattr(w->mp, f->ino, &st);
	if (err)
		wl_fail("getattr %s after %s: %s", f->name, op, strerror(-err));
	if ((uint64_t)st.st_size != f->cur_size)
		wl_fail("%s after %s: size %lld, model %" PRIu64, f->name, op,
			(long long)st.st_size, f->cur_size);
	uint64_t done = 0;
	while (done < f->cur_size) {
		ssize_t n = rlfs_read(w->mp, f->ino, w->iobuf + done, f->cur_size - done,
				      (off_t)done);
		if (n <= 0)
			wl_fail("read %s after %s: %s", f->name, op, n ? strerror((int)-n) : "short");
		done += (uint64_t)n;
	}
	if (f->cur_size && memcmp(w->iobuf, f->cur, f->cur_size) != 0)
		wl_fail("%s after %s: contents differ from the model", f->name, op);
}

static void op_done(struct wl *w, struct fmodel *f, const char *op)
{
	verify_live(w, f, op);
	push_version(f, wl_pos(w));
	if (getenv("RLFS_CRASH_TRACE"))
		printf("trace: %s %s -> version %zu at %" PRIu64 ", size %" PRIu64 "\n", op, f->name,
		       f->nv - 1, wl_pos(w), f->cur_size);
	w->nops++;
}

static void note_synced(struct wl *w)
{
	if (w->nsynced == w->syncedcap) {
		w->syncedcap = w->syncedcap ? w->syncedcap * 2 : 64;
		w->synced = xrealloc(w->synced, w->syncedcap * sizeof(*w->synced));
	}
	w->synced[w->nsynced++] = wl_pos(w);
}

static void do_create(struct wl *w, struct fmodel *f)
{
	struct stat st;
	int err = rlfs_mknod(w->mp, f->dir_ino, f->name, S_IFREG | 0644, 0, 0, 0, &st);
	if (err)
		wl_fail("create %s: %s", f->name, strerror(-err));
	if (!w->hold_lookups)
		rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
	f->ino = (uint64_t)st.st_ino;
	f->created = true;
	f->cur_size = 0;
	memset(f->cur, 0, f->max_bytes);
	f->created_pos = wl_pos(w);
	op_done(w, f, "create");
}

/* write len bytes of buf (NULL: a new pattern) at off */
static void do_write_buf(struct wl *w, struct fmodel *f, uint64_t off, uint64_t len,
			 const uint8_t *buf)
{
	if (off >= f->max_bytes)
		return;
	if (off + len > f->max_bytes)
		len = f->max_bytes - off;
	uint64_t seq = ++w->wseq;
	if (buf)
		memmove(w->iobuf, buf, len);
	else
		for (uint64_t i = 0; i < len; i++)
			w->iobuf[i] = pattern(f->fid, seq, off + i);
	ssize_t n = rlfs_write(w->mp, f->ino, w->iobuf, len, (off_t)off);
	if (getenv("RLFS_CRASH_TRACE"))
		printf("trace: write %s %" PRIu64 "+%" PRIu64 "\n", f->name, off, len);
	if (n < 0 && n != -ENOSPC)
		wl_fail("write %s %" PRIu64 "+%" PRIu64 ": %s", f->name, off, len,
			strerror((int)-n));
	if (n < 0 || (uint64_t)n < len) {
		w->nenospc++;
		resync(w, f);
	} else {
		memcpy(f->cur + off, w->iobuf, len);
		if (off + len > f->cur_size)
			f->cur_size = off + len;
	}
	op_done(w, f, "write");
	/* a write that grows the file through copy-on-write blocks and new
	 * ones commits in pieces, each growing the size over what it wrote
	 * (as XFS's size update per ioend): a crash may leave a block-aligned
	 * size in between */
	if (f->nv >= 2 && f->v[f->nv - 1].size_bytes > f->v[f->nv - 2].size_bytes)
		f->v[f->nv - 1].grow_prefix = true;
}

/* Give back the staged copy-on-write blocks no write used (the daemon's
 * last close and idle timer: rlfs_cow_gc), as a step of its own: the
 * cancel transactions (staging records dropped, blocks freed) get cut
 * too.  Nothing changes in the files, so the models stay as they are.
 * Consumes no random numbers: the workloads' op sequences are unchanged. */
static void cow_gc(struct wl *w)
{
	int64_t n = rlfs_cow_gc(w->mp, 0);
	if (n < 0)
		wl_fail("CoW GC: %s", strerror((int)-n));
	w->ncowgc += (uint64_t)n;
}

static void do_write(struct wl *w, struct fmodel *f, uint64_t off, uint64_t len)
{
	do_write_buf(w, f, off, len, NULL);
}

static void do_truncate(struct wl *w, struct fmodel *f, uint64_t size)
{
	struct stat st = { .st_size = (off_t)size }, out;
	int err = rlfs_setattr(w->mp, f->ino, &st, RLFS_SET_SIZE, &out);
	if (err && err != -ENOSPC)
		wl_fail("truncate %s to %" PRIu64 ": %s", f->name, size, strerror(-err));
	if (err) {
		w->nenospc++;
		resync(w, f);
	} else {
		if (size < f->cur_size)
			memset(f->cur + size, 0, f->cur_size - size);
		f->cur_size = size;
	}
	op_done(w, f, "truncate");
}

/* fallocate: punch (FALLOC_FL_PUNCH_HOLE, always with KEEP_SIZE), zero
 * (FALLOC_FL_ZERO_RANGE), unshare or allocate (mode 0), each with or
 * without FALLOC_FL_KEEP_SIZE (without it the size grows to the range's
 * end) */
static void do_falloc(struct wl *w, struct fmodel *f, int mode, uint64_t off, uint64_t len,
		      const char *what)
{
	if (!(mode & FALLOC_FL_KEEP_SIZE)) {
		if (off >= f->max_bytes)
			return;
		len = RLFS_MIN(len, f->max_bytes - off);
	}
	if (!len)
		return;
	int err = rlfs_fallocate(w->mp, f->ino, mode, (off_t)off, (off_t)len);
	if (getenv("RLFS_CRASH_TRACE"))
		printf("trace: fallocate %s mode %#x %" PRIu64 "+%" PRIu64 ": %d\n", f->name, mode, off,
		       len, err);
	if (err && err != -ENOSPC)
		wl_fail("%s %s %" PRIu64 "+%" PRIu64 ": %s", what, f->name, off, len,
			strerror(-err));
	if (err) {
		w->nenospc++;
		resync(w, f);
	} else {
		if ((mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) && off < f->cur_size) {
			uint64_t end = RLFS_MIN(off + len, f->cur_size);
			memset(f->cur + off, 0, end - off);
		}
		if (!(mode & FALLOC_FL_KEEP_SIZE) && off + len > f->cur_size)
			f->cur_size = off + len;
	}
	op_done(w, f, what);
}

/* clone whole blocks: [soff, soff+len) of s to doff of d */
static void do_clone(struct wl *w, struct fmodel *s, struct fmodel *d, uint64_t soff,
		     uint64_t doff, uint64_t len)
{
	soff &= ~(uint64_t)(BLOCK_BYTES - 1);
	doff &= ~(uint64_t)(BLOCK_BYTES - 1);
	uint64_t src_end = s->cur_size & ~(uint64_t)(BLOCK_BYTES - 1);
	if (soff >= src_end)
		return;
	len = RLFS_MIN(len, src_end - soff) & ~(uint64_t)(BLOCK_BYTES - 1);
	if (doff + len > d->max_bytes)
		len = (d->max_bytes - RLFS_MIN(doff, d->max_bytes)) & ~(uint64_t)(BLOCK_BYTES - 1);
	if (!len)
		return;
	if (s == d && soff < doff + len && doff < soff + len)
		return;
	int64_t n = rlfs_clone_range(w->mp, s->ino, soff, d->ino, doff, len, 0);
	if (getenv("RLFS_CRASH_TRACE"))
		printf("trace: clone %s %" PRIu64 " -> %s %" PRIu64 " +%" PRIu64 "\n", s->name, soff,
		       d->name, doff, len);
	if (n < 0 && n != -ENOSPC)
		wl_fail("clone %s %" PRIu64 " -> %s %" PRIu64 " +%" PRIu64 ": %s", s->name, soff,
			d->name, doff, len, strerror((int)-n));
	if (n < 0 || (uint64_t)n != len) {
		w->nenospc++;
		resync(w, d);
	} else {
		memmove(d->cur + doff, s->cur + soff, len);
		if (doff + len > d->cur_size)
			d->cur_size = doff + len;
	}
	op_done(w, d, "clone");
	if (d->nv >= 2 && d->v[d->nv - 1].size_bytes > d->v[d->nv - 2].size_bytes)
		d->v[d->nv - 1].grow_prefix = true;
}

/* dedupe whole blocks: [soff, soff+len) of s onto doff of d, both inside
 * their files' EOF, if identical (rlfs_dedupe_range); the models predict
 * same or differs, and contents never change, so a crash anywhere must
 * leave each file with bytes of its versions only (a share that lost the
 * destination's data would show another file's bytes) */
static void do_dedupe(struct wl *w, struct fmodel *s, struct fmodel *d, uint64_t soff,
		      uint64_t doff, uint64_t len)
{
	soff &= ~(uint64_t)(BLOCK_BYTES - 1);
	doff &= ~(uint64_t)(BLOCK_BYTES - 1);
	uint64_t s_end = s->cur_size & ~(uint64_t)(BLOCK_BYTES - 1);
	uint64_t d_end = d->cur_size & ~(uint64_t)(BLOCK_BYTES - 1);
	if (soff >= s_end || doff >= d_end)
		return;
	len = RLFS_MIN(len, RLFS_MIN(s_end - soff, d_end - doff)) & ~(uint64_t)(BLOCK_BYTES - 1);
	if (!len || (s == d && soff < doff + len && doff < soff + len))
		return;
	int want = memcmp(s->cur + soff, d->cur + doff, len) ? RLFS_DEDUPE_DIFFERS : 0;
	uint64_t done = 0;
	int r = rlfs_dedupe_range(w->mp, s->ino, soff, d->ino, doff, len, &done);
	if (getenv("RLFS_CRASH_TRACE"))
		printf("trace: dedupe %s %" PRIu64 " -> %s %" PRIu64 " +%" PRIu64 ": %d\n", s->name,
		       soff, d->name, doff, len, r);
	if (r == -ENOSPC) {
		w->nenospc++;
	} else if (r != want || (r == 0 && done != len)) {
		wl_fail("dedupe %s %" PRIu64 " -> %s %" PRIu64 " +%" PRIu64 ": %d (%" PRIu64
			" bytes), expected %d", s->name, soff, d->name, doff, len, r, done, want);
	}
	op_done(w, d, "dedupe");
}

/* copy_file_range as the daemon does it (fuse/ioctl.c rl_copy_file_range):
 * source and destination at the same offset within a block, the head up
 * to a block boundary and the tail copied (read + write), the whole
 * blocks between cloned.  Different files only. */
static void do_copy_range(struct wl *w, struct fmodel *s, struct fmodel *d, uint64_t soff,
			  uint64_t len)
{
	if (s == d || soff >= s->cur_size)
		return;
	uint64_t doff = (rndn(d->max_bytes) & ~(uint64_t)(BLOCK_BYTES - 1)) + soff % BLOCK_BYTES;
	len = RLFS_MIN(len, s->cur_size - soff);
	if (doff >= d->max_bytes)
		return;
	len = RLFS_MIN(len, d->max_bytes - doff);
	uint64_t head = RLFS_MIN((BLOCK_BYTES - soff % BLOCK_BYTES) % BLOCK_BYTES, len);
	uint64_t mid = (len - head) & ~(uint64_t)(BLOCK_BYTES - 1);
	uint64_t tail = len - head - mid;
	if (head)
		do_write_buf(w, d, doff, head, s->cur + soff);
	if (mid)
		do_clone(w, s, d, soff + head, doff + head, mid);
	if (tail)
		do_write_buf(w, d, doff + head + mid, tail, s->cur + soff + head + mid);
}

static void do_fsync(struct wl *w, struct fmodel *f, int datasync)
{
	int err = rlfs_fsync(w->mp, f->ino, datasync);
	if (err)
		wl_fail("fsync %s: %s", f->name, strerror(-err));
	push_sync(f, wl_pos(w));
	note_synced(w);
	w->nops++;
}

/* A device over the memory device that does not close it: what each
 * mount of the workload's record owns (the remount workload closes and
 * opens mounts over the same memory device). */
static int nc_pread(struct rlfs_dev *d, void *b, size_t l, uint64_t o)
{
	return rlfs_dev_pread(d->priv, b, l, o);
}
static int nc_pwrite(struct rlfs_dev *d, const void *b, size_t l, uint64_t o)
{
	return rlfs_dev_pwrite(d->priv, b, l, o);
}
static int nc_flush(struct rlfs_dev *d)
{
	return rlfs_dev_flush(d->priv);
}
static void nc_close(struct rlfs_dev *d)
{
	free(d);
}
static const struct rlfs_dev_ops nc_ops = { nc_pread, nc_pwrite, nc_flush, nc_close };

/* A recording device over w->mem for a mount. */
static struct rlfs_dev *wl_recdev(struct wl *w)
{
	struct rlfs_dev *nc = calloc(1, sizeof(*nc)), *cdev;
	if (!nc)
		wl_fail("out of memory");
	nc->ops = &nc_ops;
	nc->size_bytes = w->mem->size_bytes;
	nc->fd = -1;
	nc->lock_fd = -1;
	nc->dio_fd = -1;
	nc->writable = true;
	nc->priv = w->mem;
	int err = rlfs_crash_dev_open(w->rec, nc, &cdev);
	if (err)
		wl_fail("crash device: %s", strerror(-err));
	return cdev;
}

/* Everything so far is durable (a sync, a clean unmount): every model
 * marks its current versions synced. */
static void mark_all_synced(struct wl *w)
{
	for (int i = 0; i < w->nf; i++)
		push_sync(&w->f[i], wl_pos(w));
	if (w->dm)
		dm_mark_all(w);
	if (w->mm)
		mm_mark_all(w);
	note_synced(w);
}

/* Unmount cleanly (everything durable: like a sync for the models) and
 * mount again on the same record: the cuts then include an unmount
 * record, a mount of a clean log and, over many remounts, a log that
 * wrapped while clean. */
static void do_remount(struct wl *w)
{
	int err = rlfs_mount_close(w->mp);
	w->mp = NULL;
	if (err)
		wl_fail("unmount (remount): %s", strerror(-err));
	mark_all_synced(w);
	err = rlfs_mount_open_dev(wl_recdev(w), "remount", RLFS_MOUNT_NOLOCK, &w->mp);
	if (err)
		wl_fail("mount (remount): %s", strerror(-err));
	w->nremounts++;
	w->nops++;
}

static void do_sync(struct wl *w)
{
	int err = rlfs_sync(w->mp);
	if (err)
		wl_fail("sync: %s", strerror(-err));
	mark_all_synced(w);
	w->nops++;
}

static struct fmodel *pick(struct wl *w)
{
	return &w->f[rndn((uint64_t)w->nf)];
}

static uint64_t rnd_len(uint64_t max)
{
	/* mostly small, sometimes large */
	switch (rndn(4)) {
	case 0: return 1 + rndn(512);
	case 1: return 1 + rndn(8192);
	case 2: return 1 + rndn(65536);
	default: return 1 + rndn(max);
	}
}

/* fsx: random writes, truncates, punches, zero ranges, clones, unshares
 * and fsyncs on a few files */
static void wl_fsx(struct wl *w)
{
	for (int i = 0; i < w->nf; i++)
		do_create(w, &w->f[i]);
	do_sync(w);
	for (unsigned n = 0; n < w->o->ops; n++) {
		struct fmodel *f = pick(w);
		uint64_t r = rndn(100);
		uint64_t lim = f->max_bytes;
		if (r < 34) {
			do_write(w, f, rndn(lim), rnd_len(lim / 4));
		} else if (r < 42) {
			do_truncate(w, f, rndn(lim));
		} else if (r < 50) {
			do_falloc(w, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, rndn(lim), rnd_len(lim / 4), "punch");
		} else if (r < 54) {
			do_falloc(w, f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, rndn(lim),
				  rnd_len(lim / 4), "zero");
		} else if (r < 66) {
			struct fmodel *d = pick(w);
			do_clone(w, f, d, rndn(f->cur_size + 1), rndn(d->max_bytes),
				 rnd_len(lim / 2));
		} else if (r < 70) {
			do_falloc(w, f, FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE, rndn(lim), rnd_len(lim / 2),
				  "unshare");
		} else if (r < 74) {
			do_copy_range(w, f, pick(w), rndn(f->cur_size + 1), rnd_len(lim / 2));
		} else if (r < 77) {
			/* same offsets: copies and clones leave equal ranges there */
			uint64_t o = rndn(f->cur_size + 1);
			do_dedupe(w, f, pick(w), o, o, BLOCK_BYTES + rnd_len(lim / 2));
		} else if (r < 89) {
			do_fsync(w, f, 0);
		} else if (r < 94) {
			do_fsync(w, f, 1);
		} else if (w->remounts && r >= 97) {
			do_remount(w);
		} else {
			do_sync(w);
		}
	}
}

/* falloc: writes, truncates and every fallocate mode on a few files, no
 * sharing: allocate (unwritten extents) and zero range each with and
 * without KEEP_SIZE (without it the size grows), punch, fsyncs */
static void wl_falloc(struct wl *w)
{
	for (int i = 0; i < w->nf; i++)
		do_create(w, &w->f[i]);
	do_sync(w);
	for (unsigned n = 0; n < w->o->ops; n++) {
		struct fmodel *f = pick(w);
		uint64_t r = rndn(100);
		uint64_t lim = f->max_bytes;
		int keep = rndn(2) ? FALLOC_FL_KEEP_SIZE : 0;
		if (r < 30)
			do_write(w, f, rndn(lim), rnd_len(lim / 4));
		else if (r < 38)
			do_truncate(w, f, rndn(lim));
		else if (r < 52)
			do_falloc(w, f, keep, rndn(lim), rnd_len(lim / 4), keep ? "alloc" : "alloc+size");
		else if (r < 64)
			do_falloc(w, f, FALLOC_FL_ZERO_RANGE | keep, rndn(lim), rnd_len(lim / 4),
				  keep ? "zero" : "zero+size");
		else if (r < 72)
			do_falloc(w, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, rndn(lim),
				  rnd_len(lim / 4), "punch");
		else if (r < 90)
			do_fsync(w, f, (int)rndn(2));
		else
			do_sync(w);
	}
}

/* collapse (FALLOC_FL_COLLAPSE_RANGE) or insert (FALLOC_FL_INSERT_RANGE)
 * [off, off+len) of f, whole blocks; off and len rounded down to blocks,
 * the range kept inside EOF (collapse: before it) and the model's
 * capacity (insert) */
static void do_shift(struct wl *w, struct fmodel *f, bool collapse, uint64_t off, uint64_t len)
{
	uint64_t nb = f->cur_size / BLOCK_BYTES;
	off = off / BLOCK_BYTES * BLOCK_BYTES;
	len = RLFS_MAX(len / BLOCK_BYTES, 1) * BLOCK_BYTES;
	if (collapse) {
		if (nb < 2 || off / BLOCK_BYTES >= nb - 1)
			return;
		len = RLFS_MIN(len, (nb - 1) * BLOCK_BYTES - off);
		if (off + len >= f->cur_size)
			return;
	} else {
		if (off >= f->cur_size || f->cur_size + len > f->max_bytes)
			return;
	}
	int mode = collapse ? FALLOC_FL_COLLAPSE_RANGE : FALLOC_FL_INSERT_RANGE;
	const char *what = collapse ? "collapse" : "insert";
	int err = rlfs_fallocate(w->mp, f->ino, mode, (off_t)off, (off_t)len);
	if (getenv("RLFS_CRASH_TRACE"))
		printf("trace: %s %s %" PRIu64 "+%" PRIu64 ": %d\n", what, f->name, off, len, err);
	if (err && err != -ENOSPC)
		wl_fail("%s %s %" PRIu64 "+%" PRIu64 ": %s", what, f->name, off, len,
			strerror(-err));
	if (err) {
		w->nenospc++;
		resync(w, f);
	} else if (collapse) {
		memmove(f->cur + off, f->cur + off + len, f->cur_size - off - len);
		memset(f->cur + f->cur_size - len, 0, len);
		f->cur_size -= len;
	} else {
		memmove(f->cur + off + len, f->cur + off, f->cur_size - off);
		memset(f->cur + off, 0, len);
		f->cur_size += len;
	}
	op_done(w, f, what);
}

/* shift: files of many extents (every other block written), some shared
 * (clones between them) and some unwritten (preallocated), made durable
 * by a sync; then only collapses and inserts (each a chain of many
 * steps: more than RLFS_SXI_STEP_EXTENTS mappings move), fsyncs and
 * syncs.  No data changes after the sync, so every crash image must show
 * each file exactly as one of its allowed versions (whole_from): all
 * before a shift or all after it, never a file half shifted. */
static void wl_shift(struct wl *w)
{
	for (int i = 0; i < w->nf; i++) {
		struct fmodel *f = &w->f[i];
		do_create(w, f);
		for (uint64_t b = 0; b < 96; b += 2)
			do_write(w, f, b * BLOCK_BYTES, BLOCK_BYTES);
		do_write(w, f, 100 * BLOCK_BYTES, 5 * BLOCK_BYTES + 100);
	}
	do_clone(w, &w->f[0], &w->f[1], 0, 120 * BLOCK_BYTES, 40 * BLOCK_BYTES);
	do_falloc(w, &w->f[2], 0, 110 * BLOCK_BYTES, 16 * BLOCK_BYTES, "alloc+size");
	do_falloc(w, &w->f[0], FALLOC_FL_KEEP_SIZE, 200 * BLOCK_BYTES, 8 * BLOCK_BYTES, "alloc");
	do_sync(w);
	for (int i = 0; i < w->nf; i++)
		w->f[i].whole_from = w->f[i].nv - 1;
	for (unsigned n = 0; n < w->o->ops; n++) {
		struct fmodel *f = pick(w);
		uint64_t r = rndn(100);
		uint64_t nb = f->cur_size / BLOCK_BYTES + 1;
		if (r < 40)
			do_shift(w, f, true, rndn(nb) * BLOCK_BYTES, (1 + rndn(24)) * BLOCK_BYTES);
		else if (r < 80)
			do_shift(w, f, false, rndn(nb) * BLOCK_BYTES, (1 + rndn(24)) * BLOCK_BYTES);
		else if (r < 92)
			do_fsync(w, f, (int)rndn(2));
		else
			do_sync(w);
	}
}

/* The start of the clone and dedupe workloads: every file created, the
 * first written whole and cloned whole into the others, each fsync'd.
 * Returns the size (bytes). */
static uint64_t clone_start(struct wl *w)
{
	for (int i = 0; i < w->nf; i++)
		do_create(w, &w->f[i]);
	struct fmodel *big = &w->f[0];
	uint64_t size = big->max_bytes;
	for (uint64_t off = 0; off < size; off += 256 * 1024)
		do_write(w, big, off, RLFS_MIN(256 * 1024, size - off));
	do_fsync(w, big, 0);
	for (int i = 1; i < w->nf; i++) {
		do_clone(w, big, &w->f[i], 0, 0, size);
		do_fsync(w, &w->f[i], 0);
	}
	return size;
}

/* clone: one big file, cloned whole into the others, then small random
 * copy-on-write overwrites in all of them, fsyncs, now and then a range
 * cloned back */
static void wl_clone(struct wl *w)
{
	w->hold_lookups = true;  /* staged regions outlive a write, as on a mount */
	uint64_t size = clone_start(w);
	for (unsigned n = 0; n < w->o->ops; n++) {
		struct fmodel *f = pick(w);
		uint64_t r = rndn(100);
		if (r < 65)
			do_write(w, f, rndn(size), 1 + rndn(16384));
		else if (r < 72)
			do_clone(w, pick(w), f, rndn(size), rndn(size), rnd_len(size / 4));
		else if (r < 76)
			do_falloc(w, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, rndn(size), rnd_len(size / 8), "punch");
		else if (r < 94) {
			do_fsync(w, f, (int)rndn(2));
			cow_gc(w);
		} else
			do_sync(w);
	}
}

/* dedupe: the clone workload's start (one big file cloned whole into the
 * others), then CoW overwrites, and ranges of one file deduped onto the
 * same offsets of another: the parts not overwritten since are identical
 * (shared again, the destination's private blocks freed), the others
 * differ (nothing changes).  A separate workload so that the clone
 * workload's sequence (and its fixed recovery cut in 35-crash) stays. */
static void wl_dedupe(struct wl *w)
{
	uint64_t size = clone_start(w);
	for (unsigned n = 0; n < w->o->ops; n++) {
		struct fmodel *f = pick(w);
		uint64_t r = rndn(100);
		if (r < 50) {
			do_write(w, f, rndn(size), 1 + rndn(16384));
		} else if (r < 75) {
			uint64_t o = rndn(size);
			do_dedupe(w, pick(w), f, o, o, BLOCK_BYTES + rnd_len(size / 4));
		} else if (r < 92) {
			do_fsync(w, f, (int)rndn(2));
		} else {
			do_sync(w);
		}
	}
}

/* One exchange of the exchange workload: file a's and b's versions just
 * before (both fsync'd at start_pos) and after it (both fsync'd again at
 * end_pos); nothing else changes either file in between. */
struct xevent {
	int a, b;                   /* w->f indexes (a == b: one file) */
	size_t va_old, vb_old, va_new, vb_new;
	uint64_t start_pos, end_pos;
};
static struct xevent *xevents;
static size_t nxevents, xeventcap;

/* exchange [off1, +len) of a with [off2, +len) of b (rlfs_exchange_range;
 * to_eof: XFS_EXCHANGE_RANGE_TO_EOF, sizes exchanged), between fsyncs of
 * both files, recorded for check_exchanges */
static void do_exchange(struct wl *w, struct fmodel *a, struct fmodel *b, uint64_t off1,
			uint64_t off2, uint64_t len, bool to_eof)
{
	const uint64_t mask = BLOCK_BYTES - 1;
	off1 &= ~mask;
	off2 &= ~mask;
	if (off1 > a->cur_size || off2 > b->cur_size)
		return;
	uint64_t s1 = a->cur_size, s2 = b->cur_size;
	if (to_eof) {
		if (a == b)
			return;
		len = RLFS_MAX(s1 - off1, s2 - off2);
		if (off1 + (s2 - off2) > a->max_bytes || off2 + (s1 - off1) > b->max_bytes)
			return;
	} else {
		len = RLFS_MIN(len, RLFS_MIN(s1 - off1, s2 - off2)) & ~mask;
	}
	if (!len || (a == b && off1 < off2 + len && off2 < off1 + len))
		return;
	do_fsync(w, a, 0);
	if (b != a)
		do_fsync(w, b, 0);
	struct xevent e = { .a = (int)(a - w->f), .b = (int)(b - w->f), .va_old = a->nv - 1,
			    .vb_old = b->nv - 1, .start_pos = wl_pos(w) };
	int r = rlfs_exchange_range(w->mp, a->ino, off1, b->ino, off2, to_eof ? 0 : len,
				    to_eof ? RLFS_EXCHANGE_TO_EOF : 0);
	if (getenv("RLFS_CRASH_TRACE"))
		printf("trace: exchange %s %" PRIu64 " <-> %s %" PRIu64 " +%" PRIu64 "%s: %d\n",
		       a->name, off1, b->name, off2, len, to_eof ? " to EOF" : "", r);
	if (r == -ENOSPC) {
		w->nenospc++;   /* nothing changed */
		return;
	}
	if (r)
		wl_fail("exchange %s %" PRIu64 " <-> %s %" PRIu64 " +%" PRIu64 ": %s", a->name,
			off1, b->name, off2, len, strerror(-r));
	uint8_t *t = malloc(len);
	if (!t)
		wl_fail("out of memory");
	memcpy(t, a->cur + off1, len);
	memmove(a->cur + off1, b->cur + off2, len);
	memcpy(b->cur + off2, t, len);
	free(t);
	if (to_eof) {
		a->cur_size = off1 + (s2 - off2);
		b->cur_size = off2 + (s1 - off1);
		memset(a->cur + a->cur_size, 0, a->max_bytes - a->cur_size);
		memset(b->cur + b->cur_size, 0, b->max_bytes - b->cur_size);
	}
	op_done(w, a, "exchange");
	if (b != a)
		op_done(w, b, "exchange");
	e.va_new = a->nv - 1;
	e.vb_new = b->nv - 1;
	do_fsync(w, a, 0);
	if (b != a)
		do_fsync(w, b, 0);
	e.end_pos = wl_pos(w);
	if (nxevents == xeventcap) {
		xeventcap = xeventcap ? 2 * xeventcap : 64;
		xevents = xrealloc(xevents, xeventcap * sizeof(*xevents));
	}
	xevents[nxevents++] = e;
}

/* exchange: three files written in pieces (fragmented), with holes,
 * unwritten extents and blocks shared between them, whose ranges are
 * exchanged (partial ranges, to EOF with the sizes, within one file),
 * with writes, clones, punches and preallocation between */
static void wl_exchange(struct wl *w)
{
	for (int i = 0; i < w->nf; i++)
		do_create(w, &w->f[i]);
	uint64_t size = w->f[0].max_bytes / 2;
	/* written in turns, 16 KiB each: every file gets many extents, so an
	 * exchange takes many steps and cuts fall between them */
	for (uint64_t off = 0; off < size; off += 16 * 1024)
		for (int i = 0; i < w->nf; i++)
			do_write(w, &w->f[i], off, 16 * 1024);
	for (int i = 0; i < w->nf; i++) {
		struct fmodel *f = &w->f[i];
		for (int k = 0; k < 8; k++)
			do_write(w, f, rndn(size), 1 + rndn(16384));
		do_falloc(w, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, rndn(size),
			  rnd_len(size / 8), "punch");
		do_falloc(w, f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, rndn(size),
			  rnd_len(size / 8), "zero");
		do_fsync(w, f, 0);
	}
	do_clone(w, &w->f[0], &w->f[1], rndn(size), rndn(size), rnd_len(size / 4));
	for (unsigned n = 0; n < w->o->ops; n++) {
		struct fmodel *f = pick(w), *g = pick(w);
		uint64_t r = rndn(100);
		uint64_t fs = RLFS_MAX(f->cur_size, BLOCK_BYTES);
		if (r < 20)
			do_write(w, f, rndn(fs), 1 + rndn(32768));
		else if (r < 28)
			do_clone(w, g, f, rndn(fs), rndn(fs), rnd_len(fs / 4));
		else if (r < 33)
			do_falloc(w, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, rndn(fs),
				  rnd_len(fs / 8), "punch");
		else if (r < 38)
			do_falloc(w, f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, rndn(fs),
				  rnd_len(fs / 8), "zero");
		else if (r < 50)
			do_exchange(w, f, g, rndn(f->cur_size + 1), rndn(g->cur_size + 1), 0, true);
		else if (r < 58)
			do_exchange(w, f, f, rndn(fs), rndn(fs), rnd_len(fs / 4), false);
		else if (r < 95)
			do_exchange(w, f, g, rndn(fs), rndn(fs), BLOCK_BYTES + rnd_len(fs / 2),
				    false);
		else
			do_sync(w);
	}
}

/* cowwide: copy-on-write across more old extents than one CoW transaction
 * takes (RLFS_TX_COW_EXTENTS), so a write is remapped in several bounded
 * transactions and a cut can fall between them.  Files 0 and 1 are
 * written block by block in turn, so each block is an extent of its own
 * with no hole between (a shared run of 256 extents); file 2 is a clone
 * of file 0.  Then wide writes, unshares and zero ranges over the shared
 * runs, with small writes, clones, punches and syncs between. */
static void wl_cowwide(struct wl *w)
{
	w->hold_lookups = true;  /* staged regions outlive a write, as on a mount */
	for (int i = 0; i < w->nf; i++)
		do_create(w, &w->f[i]);
	struct fmodel *frag = &w->f[0];
	uint64_t size = frag->max_bytes;
	for (uint64_t off = 0; off < size; off += BLOCK_BYTES)
		for (int i = 0; i < 2; i++)
			do_write(w, &w->f[i], off, BLOCK_BYTES);
	do_fsync(w, frag, 0);
	do_fsync(w, &w->f[1], 0);
	for (int i = 2; i < w->nf; i++) {
		do_clone(w, frag, &w->f[i], 0, 0, size);
		do_fsync(w, &w->f[i], 0);
	}
	for (unsigned n = 0; n < w->o->ops; n++) {
		struct fmodel *f = pick(w);
		uint64_t r = rndn(100);
		uint64_t off = rndn(size / 2);
		if (r < 30)
			do_write(w, f, off, size / 4 + rndn(size / 2));
		else if (r < 38)
			do_falloc(w, f, FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE, off,
				  size / 4 + rndn(size / 2), "unshare");
		else if (r < 44)
			do_falloc(w, f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off,
				  size / 4 + rndn(size / 2), "zero");
		else if (r < 60)
			do_write(w, f, rndn(size), 1 + rndn(16384));
		else if (r < 68)
			do_clone(w, pick(w), f, rndn(size), rndn(size), rnd_len(size / 2));
		else if (r < 74)
			do_falloc(w, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, rndn(size),
				  rnd_len(size / 8), "punch");
		else if (r < 92) {
			do_fsync(w, f, (int)rndn(2));
			cow_gc(w);
		} else
			do_sync(w);
	}
}

/* enospc: large writes and clones on a small image until they fail with
 * ENOSPC, truncates and punches to free space again */
static void wl_enospc(struct wl *w)
{
	for (int i = 0; i < w->nf; i++)
		do_create(w, &w->f[i]);
	do_sync(w);
	/* fill: the files together are larger than the image */
	for (int i = 0; i < w->nf; i++) {
		struct fmodel *f = &w->f[i];
		uint64_t before = w->nenospc;
		for (uint64_t off = 0; off < f->max_bytes && w->nenospc == before; off += 1u << 20)
			do_write(w, f, off, 1u << 20);
		do_fsync(w, f, 0);
	}
	for (unsigned n = 0; n < w->o->ops; n++) {
		struct fmodel *f = pick(w);
		uint64_t lim = f->max_bytes;
		uint64_t r = rndn(100);
		if (r < 50)
			do_write(w, f, rndn(lim), 256 * 1024 + rndn(2u << 20));
		else if (r < 58)
			do_clone(w, pick(w), f, 0, rndn(lim), lim);
		else if (r < 64)
			do_truncate(w, f, rndn(lim / 2));
		else if (r < 72)
			do_falloc(w, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, rndn(lim), rnd_len(lim), "punch");
		else if (r < 76)
			do_falloc(w, f, FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE, 0, lim, "unshare");
		else if (r < 93)
			do_fsync(w, f, 0);
		else
			do_sync(w);
	}
}

/* unlinked: files unlinked while open (the lookup count kept, as by an
 * open descriptor) and O_TMPFILE inodes (a third of them linked later),
 * with data, closed again in random order (freed: removal anywhere in
 * the AG's unlinked list), between writes and fsyncs of the model files.
 * Every crash image must mount (the mount frees what the lists hold) and
 * then check clean: no orphan, no leaked block, no broken list. */
static void wl_unlinked(struct wl *w)
{
	enum { MAXOPEN = 24 };
	uint64_t open_ino[MAXOPEN];
	int nopen = 0;
	unsigned serial = 0;
	uint64_t root = rlfs_root_ino(w->mp);
	for (int i = 0; i < w->nf; i++)
		do_create(w, &w->f[i]);
	do_sync(w);
	for (unsigned n = 0; n < w->o->ops; n++) {
		struct fmodel *f = pick(w);
		uint64_t lim = f->max_bytes;
		uint64_t r = rndn(100);
		if (r < 25) {
			do_write(w, f, rndn(lim), rnd_len(lim / 4));
		} else if (r < 50 && nopen < MAXOPEN) {
			struct stat st;
			char name[32];
			bool tmp = rndn(2);
			snprintf(name, sizeof(name), "u%u", serial++);
			int err = tmp ? rlfs_tmpfile(w->mp, root, 0644, 0, 0, 0, &st) :
					rlfs_mknod(w->mp, root, name, S_IFREG | 0644, 0, 0, 0, &st);
			if (err == -ENOSPC) {
				w->nenospc++;
				continue;
			}
			if (err)
				wl_fail("create %s%s: %s", name, tmp ? " (tmpfile)" : "", strerror(-err));
			uint64_t len = 1 + rndn(64 * 1024);
			memset(w->iobuf, (int)(0x30 + serial % 64), len);
			ssize_t wn = rlfs_write(w->mp, (uint64_t)st.st_ino, w->iobuf, len, 0);
			if (wn < 0 && wn != -ENOSPC)
				wl_fail("write %s: %s", name, strerror((int)-wn));
			if (!tmp) {
				err = rlfs_unlink(w->mp, root, name);
				if (err)
					wl_fail("unlink %s: %s", name, strerror(-err));
			} else if (rndn(3) == 0) {
				err = rlfs_link(w->mp, (uint64_t)st.st_ino, root, name, NULL);
				if (err && err != -ENOSPC)
					wl_fail("link tmpfile as %s: %s", name, strerror(-err));
				if (!err) {
					/* named now: not an unlinked inode any more */
					rlfs_forget(w->mp, (uint64_t)st.st_ino, 2);
					w->nops++;
					continue;
				}
			}
			open_ino[nopen++] = (uint64_t)st.st_ino;
			w->nops++;
		} else if (r < 70 && nopen) {
			int i = (int)rndn((uint64_t)nopen);
			rlfs_forget(w->mp, open_ino[i], 1);   /* the last close: freed */
			open_ino[i] = open_ino[--nopen];
			w->nops++;
		} else if (r < 90) {
			do_fsync(w, f, (int)rndn(2));
		} else {
			do_sync(w);
		}
	}
}

struct msgs {
	int fd;
	unsigned n;
};

/* Appended to every finding while set (the recovery mode names the cut of
 * the recovery it found it in); after the text, so the "kind:" at the
 * start of a finding still counts it. */
static char say_suffix[200];

static void say(struct msgs *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct msgs *m, const char *fmt, ...)
{
	char line[600];
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (len < 0)
		return;
	if ((size_t)len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	m->n++;
	dprintf(m->fd, "M %.*s%s\n", len - 1, line, say_suffix);
}

/* the first max bytes of v[0..len) in hex ("02 00 00 00 ..."), "..."
 * after them if there are more; into buf (size bytes, always ended) */
static void hexdump(char *buf, size_t size, const uint8_t *v, uint32_t len, uint32_t max)
{
	size_t n = 0;
	buf[0] = 0;
	for (uint32_t i = 0; i < len && i < max && n + 4 < size; i++)
		n += (size_t)snprintf(buf + n, size - n, "%s%02x", i ? " " : "", v[i]);
	if (len > max && n + 4 < size)
		snprintf(buf + n, size - n, " ...");
}

/* ---------------------------------------------------------------- */
/* the dir workload: a namespace model                                */

/*
 * Three directories d1..d3 in the root, made and synced first.  Each has
 * DM_FILE_SLOTS names n0.. for files and DM_DIR_SLOTS names s0.. for
 * empty subdirectories.  A slot holds an entity number (0: no name).
 * Entities are files (their data is one write of entity_text, so the
 * entity is known from the bytes) or subdirectories.  Every operation
 * pushes a version of every directory's slots (end_pos as for files);
 * a directory fsync marks its slots durable at that version, syncfs all
 * of them, a file fsync the slots that name that file (XFS: the fsync
 * forces the log up to the file's last change, which includes the
 * transactions that named it).  After a cut, a slot's name must hold an
 * entity from the versions between its last mark and the cut (or be
 * absent if one of them had it absent); a file's bytes must be empty or
 * exactly its text, and exactly its text if the file was fsync'd after
 * the write.
 */
#define DM_DIRS 3
#define DM_FILE_SLOTS 8
#define DM_DIR_SLOTS 2
#define DM_SLOTS (DM_FILE_SLOTS + DM_DIR_SLOTS)
#define DM_TEXT_BYTES 96u

struct dver {
	uint64_t end_pos;
	uint32_t slot[DM_DIRS][DM_SLOTS];
};
struct dmark {
	uint64_t pos;
	size_t vi;
	int dir, slot;
};
struct dent {
	bool is_dir;
	uint64_t ino;
	uint64_t written_pos;       /* after its text was written, 0 = not yet */
	uint64_t synced_pos;        /* first fsync after the write, 0 = none */
};
struct dmodel {
	uint64_t dir_ino[DM_DIRS];
	uint32_t cur[DM_DIRS][DM_SLOTS];
	struct dver *v;
	size_t nv, vcap;
	struct dmark *mk;
	size_t nmk, mkcap;
	struct dent *ent;           /* entity 1.. */
	size_t nent, entcap;
	uint64_t created_pos;       /* the directories were made here */
	uint64_t synced_pos;        /* ... and are durable from here */
};

static void entity_text(uint32_t u, char *buf)
{
	memset(buf, 0, DM_TEXT_BYTES);
	int n = snprintf(buf, DM_TEXT_BYTES, "rlfs-crashtest entity %u ", u);
	for (unsigned i = (unsigned)n; i < DM_TEXT_BYTES - 1; i++)
		buf[i] = (char)('a' + (u + i) % 26);
	buf[DM_TEXT_BYTES - 1] = '\n';
}

static void slot_name(int slot, char *buf, size_t len)
{
	if (slot < DM_FILE_SLOTS)
		snprintf(buf, len, "n%d", slot);
	else
		snprintf(buf, len, "s%d", slot - DM_FILE_SLOTS);
}

/* The library's namespace must equal the model after every operation (a
 * model bug must not pass as a crash finding). */
static void dm_verify_live(struct wl *w)
{
	struct dmodel *dm = w->dm;
	for (int d = 0; d < DM_DIRS; d++) {
		for (int sl = 0; sl < DM_SLOTS; sl++) {
			char name[16];
			struct stat st;
			slot_name(sl, name, sizeof(name));
			int err = rlfs_lookup(w->mp, dm->dir_ino[d], name, &st);
			uint32_t u = dm->cur[d][sl];
			if (err == -ENOENT && !u)
				continue;
			if (err)
				wl_fail("d%d/%s: lookup %s, model has entity %u", d + 1, name,
					strerror(-err), u);
			rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
			if (!u || (uint64_t)st.st_ino != dm->ent[u].ino)
				wl_fail("d%d/%s: inode %llu, model has entity %u", d + 1, name,
					(unsigned long long)st.st_ino, u);
		}
	}
}

static void dm_push(struct wl *w)
{
	struct dmodel *dm = w->dm;
	dm_verify_live(w);
	if (dm->nv == dm->vcap) {
		dm->vcap = dm->vcap ? dm->vcap * 2 : 128;
		dm->v = xrealloc(dm->v, dm->vcap * sizeof(*dm->v));
	}
	dm->v[dm->nv].end_pos = wl_pos(w);
	memcpy(dm->v[dm->nv].slot, dm->cur, sizeof(dm->cur));
	dm->nv++;
	w->nops++;
}

static void dm_mark(struct wl *w, int d, int slot)
{
	struct dmodel *dm = w->dm;
	if (dm->nmk == dm->mkcap) {
		dm->mkcap = dm->mkcap ? dm->mkcap * 2 : 256;
		dm->mk = xrealloc(dm->mk, dm->mkcap * sizeof(*dm->mk));
	}
	dm->mk[dm->nmk++] = (struct dmark){ .pos = wl_pos(w), .vi = dm->nv - 1, .dir = d,
					    .slot = slot };
}

static void dm_mark_all(struct wl *w)
{
	if (!w->dm->nv)
		return;
	for (int d = 0; d < DM_DIRS; d++)
		for (int sl = 0; sl < DM_SLOTS; sl++)
			dm_mark(w, d, sl);
	for (size_t u = 1; u < w->dm->nent; u++)
		if (w->dm->ent[u].written_pos && !w->dm->ent[u].synced_pos)
			w->dm->ent[u].synced_pos = wl_pos(w);
}

static uint32_t dm_new_entity(struct dmodel *dm, bool is_dir, uint64_t ino)
{
	if (!dm->nent)
		dm->nent = 1;
	if (dm->nent >= dm->entcap) {
		dm->entcap = dm->entcap ? dm->entcap * 2 : 256;
		dm->ent = xrealloc(dm->ent, dm->entcap * sizeof(*dm->ent));
	}
	dm->ent[dm->nent] = (struct dent){ .is_dir = is_dir, .ino = ino };
	return (uint32_t)dm->nent++;
}

static void dm_check_err(int err, const char *op, int d, int slot)
{
	if (err)
		wl_fail("%s d%d/slot %d: %s", op, d + 1, slot, strerror(-err));
}

static void wl_dir(struct wl *w)
{
	struct dmodel *dm = calloc(1, sizeof(*dm));
	if (!dm)
		wl_fail("out of memory");
	w->dm = dm;
	uint64_t root = rlfs_root_ino(w->mp);
	struct stat st;
	char name[16], name2[16], text[DM_TEXT_BYTES];
	for (int d = 0; d < DM_DIRS; d++) {
		snprintf(name, sizeof(name), "d%d", d + 1);
		dm_check_err(rlfs_mkdir(w->mp, root, name, 0755, 0, 0, &st), "mkdir", d, -1);
		rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
		dm->dir_ino[d] = (uint64_t)st.st_ino;
	}
	dm->created_pos = wl_pos(w);
	dm_push(w);
	do_sync(w);
	dm->synced_pos = wl_pos(w);
	for (unsigned n = 0; n < w->o->ops; n++) {
		int d = (int)rndn(DM_DIRS), sl = (int)rndn(DM_FILE_SLOTS);
		int d2 = (int)rndn(DM_DIRS), sl2 = (int)rndn(DM_FILE_SLOTS);
		int ds = DM_FILE_SLOTS + (int)rndn(DM_DIR_SLOTS);
		int ds2 = DM_FILE_SLOTS + (int)rndn(DM_DIR_SLOTS);
		uint32_t u = dm->cur[d][sl], u2 = dm->cur[d2][sl2];
		uint64_t r = rndn(100);
		slot_name(sl, name, sizeof(name));
		slot_name(sl2, name2, sizeof(name2));
		if (r < 22 && !u) {
			/* create, then write its text (two versions) */
			dm_check_err(rlfs_mknod(w->mp, dm->dir_ino[d], name, S_IFREG | 0644, 0, 0, 0,
						&st), "create", d, sl);
			rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
			u = dm_new_entity(dm, false, (uint64_t)st.st_ino);
			dm->cur[d][sl] = u;
			dm_push(w);
			entity_text(u, text);
			ssize_t wr = rlfs_write(w->mp, (uint64_t)st.st_ino, text, DM_TEXT_BYTES, 0);
			if (wr != DM_TEXT_BYTES)
				wl_fail("write entity %u: %s", u, wr < 0 ? strerror((int)-wr) : "short");
			dm->ent[u].written_pos = wl_pos(w);
			dm_push(w);
		} else if (r < 34 && u) {
			dm_check_err(rlfs_unlink(w->mp, dm->dir_ino[d], name), "unlink", d, sl);
			dm->cur[d][sl] = 0;
			dm_push(w);
		} else if (r < 42 && u && !u2) {
			dm_check_err(rlfs_link(w->mp, dm->ent[u].ino, dm->dir_ino[d2], name2, &st),
				     "link", d2, sl2);
			rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
			dm->cur[d2][sl2] = u;
			dm_push(w);
		} else if (r < 54 && u && !(d == d2 && sl == sl2)) {
			/* rename over u2 if any: a hard link of the same file
			 * there makes rename a no-op (rename(2)) */
			dm_check_err(rlfs_rename(w->mp, dm->dir_ino[d], name, dm->dir_ino[d2], name2, 0),
				     "rename", d, sl);
			if (u != u2) {
				dm->cur[d2][sl2] = u;
				dm->cur[d][sl] = 0;
			}
			dm_push(w);
		} else if (r < 60 && u && u2 && u != u2) {
			dm_check_err(rlfs_rename(w->mp, dm->dir_ino[d], name, dm->dir_ino[d2], name2,
						 2 /* RENAME_EXCHANGE */), "exchange", d, sl);
			dm->cur[d][sl] = u2;
			dm->cur[d2][sl2] = u;
			dm_push(w);
		} else if (r < 66) {
			slot_name(ds, name, sizeof(name));
			if (!dm->cur[d][ds]) {
				dm_check_err(rlfs_mkdir(w->mp, dm->dir_ino[d], name, 0755, 0, 0, &st),
					     "mkdir", d, ds);
				rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
				dm->cur[d][ds] = dm_new_entity(dm, true, (uint64_t)st.st_ino);
			} else {
				dm_check_err(rlfs_rmdir(w->mp, dm->dir_ino[d], name), "rmdir", d, ds);
				dm->cur[d][ds] = 0;
			}
			dm_push(w);
		} else if (r < 70 && dm->cur[d][ds] && !dm->cur[d2][ds2]) {
			/* a subdirectory moves (its ".." changes) */
			slot_name(ds, name, sizeof(name));
			slot_name(ds2, name2, sizeof(name2));
			dm_check_err(rlfs_rename(w->mp, dm->dir_ino[d], name, dm->dir_ino[d2], name2, 0),
				     "rename dir", d, ds);
			dm->cur[d2][ds2] = dm->cur[d][ds];
			dm->cur[d][ds] = 0;
			dm_push(w);
		} else if (r < 82 && u) {
			dm_check_err(rlfs_fsync(w->mp, dm->ent[u].ino, (int)rndn(2)), "fsync", d, sl);
			for (int dd = 0; dd < DM_DIRS; dd++)
				for (int ss = 0; ss < DM_FILE_SLOTS; ss++)
					if (dm->cur[dd][ss] == u)
						dm_mark(w, dd, ss);
			if (dm->ent[u].written_pos && !dm->ent[u].synced_pos)
				dm->ent[u].synced_pos = wl_pos(w);
			note_synced(w);
			w->nops++;
		} else if (r < 94) {
			dm_check_err(rlfs_fsync(w->mp, dm->dir_ino[d], 0), "fsync dir", d, -1);
			for (int ss = 0; ss < DM_SLOTS; ss++)
				dm_mark(w, d, ss);
			note_synced(w);
			w->nops++;
		} else if (r >= 94) {
			do_sync(w);
		}
	}
}

/* The check of a crash image: every slot of every directory. */
static void check_dirs(struct wl *w, uint64_t pos, struct msgs *m)
{
	struct dmodel *dm = w->dm;
	if (!dm || pos < dm->created_pos || !dm->nv)
		return;
	size_t hi = dm->nv - 1;
	for (size_t i = 0; i < dm->nv; i++) {
		if (dm->v[i].end_pos >= pos) {
			hi = i;
			break;
		}
	}
	uint64_t root = rlfs_root_ino(w->mp);
	for (int d = 0; d < DM_DIRS; d++) {
		char dname[16];
		struct stat dst;
		snprintf(dname, sizeof(dname), "d%d", d + 1);
		int err = rlfs_lookup(w->mp, root, dname, &dst);
		if (err == -ENOENT && pos < dm->synced_pos)
			continue;   /* made, not yet synced */
		if (err) {
			say(m, "missing: directory %s: %s", dname, strerror(-err));
			continue;
		}
		rlfs_forget(w->mp, (uint64_t)dst.st_ino, 1);
		for (int sl = 0; sl < DM_SLOTS; sl++) {
			size_t lo = 0;
			bool marked = false;
			for (size_t i = 0; i < dm->nmk; i++) {
				if (dm->mk[i].pos <= pos && dm->mk[i].dir == d && dm->mk[i].slot == sl) {
					lo = dm->mk[i].vi;
					marked = true;
				}
			}
			size_t h = hi < lo ? lo : hi;
			bool absent_ok = false;
			for (size_t v = lo; v <= h; v++)
				absent_ok |= dm->v[v].slot[d][sl] == 0;
			char name[16];
			slot_name(sl, name, sizeof(name));
			struct stat st;
			err = rlfs_lookup(w->mp, (uint64_t)dst.st_ino, name, &st);
			if (err == -ENOENT) {
				if (!absent_ok)
					say(m, "missing: %s/%s (%s) is not there", dname, name,
					    marked ? "fsync'd" : "?");
				continue;
			}
			if (err) {
				say(m, "readerr: lookup %s/%s: %s", dname, name, strerror(-err));
				continue;
			}
			rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
			if (S_ISDIR(st.st_mode)) {
				bool ok = false;
				for (size_t v = lo; v <= h && !ok; v++) {
					uint32_t e = dm->v[v].slot[d][sl];
					ok = e && dm->ent[e].is_dir;
				}
				if (!ok)
					say(m, "foreign: %s/%s is a directory, allowed versions %zu..%zu "
					    "never had one there", dname, name, lo, h);
				continue;
			}
			/* a file: which entity, from its bytes */
			char buf[DM_TEXT_BYTES + 1], text[DM_TEXT_BYTES];
			ssize_t n = 0;
			if (st.st_size > DM_TEXT_BYTES) {
				say(m, "size: %s/%s has %lld bytes, at most %u written", dname, name,
				    (long long)st.st_size, DM_TEXT_BYTES);
				continue;
			}
			if (st.st_size) {
				n = rlfs_read(w->mp, (uint64_t)st.st_ino, buf, (size_t)st.st_size, 0);
				if (n < 0) {
					say(m, "readerr: read %s/%s: %s", dname, name, strerror((int)-n));
					continue;
				}
			}
			bool ok = false, need_data = true;
			for (size_t v = lo; v <= h && !ok; v++) {
				uint32_t e = dm->v[v].slot[d][sl];
				if (!e || dm->ent[e].is_dir)
					continue;
				bool synced = dm->ent[e].synced_pos && dm->ent[e].synced_pos <= pos;
				if (n == 0) {
					ok = !synced;
					continue;
				}
				need_data = false;
				entity_text(e, text);
				ok = n == DM_TEXT_BYTES && memcmp(buf, text, DM_TEXT_BYTES) == 0;
			}
			if (ok)
				continue;
			if (n == 0)
				say(m, "zeros: %s/%s is empty, its file's data was fsync'd%s", dname, name,
				    need_data ? "" : " (or it is another file)");
			else if (n >= 22 && memcmp(buf, "rlfs-crashtest entity ", 22) == 0)
				say(m, "foreign: %s/%s holds %.*s, not a file of versions %zu..%zu", dname,
				    name, 30, buf, lo, h);
			else
				say(m, "garbage: %s/%s: %zd bytes that are no file's text", dname, name, n);
		}
	}
}

/* ---------------------------------------------------------------- */
/* the meta workload: a property model                                */

/*
 * Everything a crash must keep besides file bytes and the dir workload's
 * names, as "properties", each with versions (end_pos as for files, or
 * absent) and fsync marks:
 *   ENTRY  a name in a directory: what it names (inode number, type,
 *          rdev, a symlink's target), or absent;
 *   ATTR   an inode's mode, uid, gid, link count and mtime (each field
 *          checked on its own: an operation may change them in more than
 *          one transaction), or absent (not made yet);
 *   XATTR  one extended attribute of an inode (user.* of 1 byte to 20
 *          KiB: inline, in the record, one or several value blocks;
 *          system.posix_acl_access), or absent;
 *   DATA   the bytes of an O_TMPFILE file (written once, before linkat).
 * A file or symlink fsync marks its inode's ATTR/XATTR/DATA and the
 * ENTRY properties that name it (as the dir workload), a directory fsync
 * its ENTRY properties, a sync all.  After a cut, a property must hold a
 * value of the versions between its last mark and the cut.  Inode
 * properties are looked up by inode number (rlfs_lookup_ino: an inode
 * with nlink 0 or not allocated is absent); those of an inode that was
 * freed are not checked after the freeing op (its number may be reused).
 *
 * Objects: files m1/o0..o3 (xattrs, ACLs, chmod/chown/utimes, setuid
 * and setgid killed by a write, hard links), the directories m1 and m2
 * and the symlink m2/sl (xattrs: user.* on the directories, trusted.* on
 * the symlink), the name slots m1/p0..p11
 * and m2/p0..p11 (symlinks short and long, fifos, character and block
 * devices, hard links to the objects, linked O_TMPFILE files, whiteouts;
 * rename with RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT, plain
 * rename over them, unlink), m2/u (a file written, unlinked while open,
 * written and fsync'd after the unlink, then closed), and big/ (hard
 * links with long names to one file, added and removed in bursts of
 * dozens, up to MM_BIG: several directory blocks and btree levels).
 */
enum pkind { PK_ENTRY, PK_ATTR, PK_XATTR, PK_DATA };

struct attrv {
	uint32_t mode, uid, gid, nlink;
	int64_t mtime_s, mtime_ns;
};

struct pver {
	uint64_t end_pos;
	bool absent;
	uint64_t target;            /* ENTRY: the inode named */
	uint8_t *val;
	uint32_t len;
	const char *op;             /* the op that made this version */
	/* DATA made by a clone that grew it: any block-aligned prefix longer
	 * than the version before is allowed too (a clone commits batch by
	 * batch; struct fver's grow_prefix) */
	bool grow_prefix;
};

struct prop {
	enum pkind kind;
	uint64_t ino;               /* ENTRY: the directory; else the inode */
	char name[80];              /* ENTRY: entry name; XATTR: xattr name */
	const char *where;          /* the directory's name, for messages */
	struct pver *v;
	size_t nv, vcap;
	struct fsync_mark *mk;
	size_t nmk, mkcap;
	uint64_t retired_pos;       /* inode freed by the op ending here (0: never) */
	uint64_t gen;               /* not ENTRY: the inode's generation (another
				     * generation of the number is absent) */
};

#define MM_OBJS 4
#define MM_SLOTS 12
#define MM_XNAMES 6
#define MM_BIG 900
#define MM_VAL_MAX (1u << 20)
#define MM_CSRC_BLOCKS 160u   /* the cancelled clones' source, one extent a block */

struct mmodel {
	struct prop **p;
	size_t np, pcap;
	uint64_t m1, m2, big, hub;
	uint64_t sl;                /* m2/sl: a symlink kept all along (xattrs) */
	uint64_t obj[MM_OBJS];
	struct prop *obj_attr[MM_OBJS], *hub_attr;
	struct prop *slot[2][MM_SLOTS];
	struct prop *bigent[MM_BIG];
	struct prop *u_ent;
	uint8_t *buf;               /* MM_VAL_MAX + 1 */
	uint64_t csrc;              /* m1/csrc: many extents, never written again */
	uint8_t *csrc_data;
	unsigned nclone;
	uint64_t nxattr, nacl, nsym, nnode, nlinks, ntmp, ntmplinked, nunl, nbig, nren,
		 nwhite, nexch, nnorep, nsuid, ncancel, ncancel_part, big_max, big_blocks;
	uint64_t nxattr_dir, nxattr_sym; /* of nxattr: on m1/m2, on m2/sl */
};

static void pprop_add_version(struct prop *p, uint64_t pos, bool absent, uint64_t target,
			      const void *val, uint32_t len, const char *op)
{
	if (p->nv == p->vcap) {
		p->vcap = p->vcap ? p->vcap * 2 : 8;
		p->v = xrealloc(p->v, p->vcap * sizeof(*p->v));
	}
	struct pver *v = &p->v[p->nv++];
	v->end_pos = pos;
	v->absent = absent;
	v->target = absent ? 0 : target;
	v->len = absent ? 0 : len;
	v->val = NULL;
	v->op = op;
	v->grow_prefix = false;
	if (!absent && len) {
		v->val = xrealloc(NULL, len);
		memcpy(v->val, val, len);
	}
}

static struct prop *prop_new(struct wl *w, enum pkind kind, uint64_t ino, const char *name,
			     const char *where)
{
	struct mmodel *mm = w->mm;
	struct prop *p = calloc(1, sizeof(*p));
	if (!p)
		wl_fail("out of memory");
	p->kind = kind;
	p->ino = ino;
	snprintf(p->name, sizeof(p->name), "%s", name ? name : "");
	p->where = where;
	if (kind != PK_ENTRY) {
		int err = rlfs_get_generation(w->mp, ino, &p->gen);
		if (err)
			wl_fail("generation of inode %" PRIu64 ": %s", ino, strerror(-err));
	}
	/* absent before the op that makes it */
	pprop_add_version(p, wl_pos(w), true, 0, NULL, 0, "(before)");
	if (mm->np == mm->pcap) {
		mm->pcap = mm->pcap ? mm->pcap * 2 : 64;
		mm->p = xrealloc(mm->p, mm->pcap * sizeof(*mm->p));
	}
	mm->p[mm->np++] = p;
	return p;
}

static const struct pver *pcur(const struct prop *p)
{
	return &p->v[p->nv - 1];
}

static bool pver_eq(const struct pver *v, bool absent, const void *val, uint32_t len)
{
	if (v->absent || absent)
		return v->absent == absent;
	return v->len == len && (!len || memcmp(v->val, val, len) == 0);
}

static void pdesc(const struct prop *p, char *buf, size_t len)
{
	static const char *const kn[] = { "entry", "attr", "xattr", "data" };
	if (p->kind == PK_ENTRY)
		snprintf(buf, len, "entry %s/%s", p->where, p->name);
	else if (p->kind == PK_XATTR)
		snprintf(buf, len, "xattr %s of inode %" PRIu64, p->name, p->ino);
	else
		snprintf(buf, len, "%s of inode %" PRIu64, kn[p->kind], p->ino);
}

/* Read p's value through mp: 0 and *absent/buf/len, or -errno (a read
 * error, not absence). */
static int prop_read(struct rlfs_mount *mp, const struct prop *p, uint8_t *buf, bool *absent,
		     uint32_t *len, uint64_t *target)
{
	struct stat st;
	*absent = false;
	*len = 0;
	*target = 0;
	if (p->kind == PK_ENTRY) {
		int err = rlfs_lookup(mp, p->ino, p->name, &st);
		if (err == -ENOENT) {
			*absent = true;
			return 0;
		}
		if (err)
			return err;
		rlfs_forget(mp, (uint64_t)st.st_ino, 1);
		*target = (uint64_t)st.st_ino;
		int n = snprintf((char *)buf, 200, "ino %llu type 0%o rdev %llx",
				 (unsigned long long)st.st_ino, (unsigned)(st.st_mode & S_IFMT),
				 (unsigned long long)st.st_rdev);
		if (S_ISLNK(st.st_mode)) {
			memcpy(buf + n, " -> ", 4);
			n += 4;
			int l = rlfs_readlink(mp, (uint64_t)st.st_ino, (char *)buf + n, 8192);
			if (l < 0)
				return l;
			n += l;
		}
		*len = (uint32_t)n;
		return 0;
	}
	uint64_t gen;
	int err = rlfs_lookup_ino(mp, p->ino, &st, &gen);
	if (err == -ENOENT) {
		*absent = true;
		return 0;
	}
	if (err)
		return err;
	if (gen != p->gen) {
		/* the number's earlier or later inode */
		rlfs_forget(mp, p->ino, 1);
		*absent = true;
		return 0;
	}
	if (p->kind == PK_ATTR) {
		struct attrv a = { .mode = (uint32_t)st.st_mode, .uid = (uint32_t)st.st_uid,
				   .gid = (uint32_t)st.st_gid, .nlink = (uint32_t)st.st_nlink,
				   .mtime_s = (int64_t)st.st_mtim.tv_sec,
				   .mtime_ns = (int64_t)st.st_mtim.tv_nsec };
		memcpy(buf, &a, sizeof(a));
		*len = sizeof(a);
	} else if (p->kind == PK_XATTR) {
		int n = rlfs_getxattr(mp, p->ino, p->name, buf, MM_VAL_MAX);
		if (n == -ENODATA)
			*absent = true;
		else if (n < 0)
			err = n;
		else
			*len = (uint32_t)n;
	} else {
		uint64_t done = 0, size = (uint64_t)st.st_size;
		if (size > MM_VAL_MAX)
			size = MM_VAL_MAX;
		while (done < size && !err) {
			ssize_t n = rlfs_read(mp, p->ino, buf + done, size - done, (off_t)done);
			if (n <= 0)
				err = n ? (int)n : -EIO;
			else
				done += (uint64_t)n;
		}
		*len = (uint32_t)done;
	}
	rlfs_forget(mp, p->ino, 1);
	return err;
}

/* The op that just returned left p at (absent, val, len): the library must
 * agree (a model bug must not pass as a crash finding); push a version if
 * it changed. */
static void prop_set(struct wl *w, struct prop *p, bool absent, const void *val, uint32_t len,
		     const char *op)
{
	struct mmodel *mm = w->mm;
	bool la;
	uint32_t ll;
	uint64_t target;
	char d[200];
	int err = prop_read(w->mp, p, mm->buf, &la, &ll, &target);
	pdesc(p, d, sizeof(d));
	if (err)
		wl_fail("%s after %s: %s", d, op, strerror(-err));
	struct pver want = { .absent = absent, .val = (uint8_t *)val, .len = len };
	if (!pver_eq(&want, la, mm->buf, ll) && p->kind == PK_ATTR && !la && !absent) {
		const struct attrv *g = (const struct attrv *)mm->buf, *e = val;
		wl_fail("%s after %s: mode 0%o uid %u gid %u nlink %u mtime %lld.%09lld, model "
			"mode 0%o uid %u gid %u nlink %u mtime %lld.%09lld", d, op, g->mode, g->uid,
			g->gid, g->nlink, (long long)g->mtime_s, (long long)g->mtime_ns, e->mode,
			e->uid, e->gid, e->nlink, (long long)e->mtime_s, (long long)e->mtime_ns);
	}
	if (!pver_eq(&want, la, mm->buf, ll))
		wl_fail("%s after %s: %s%u bytes \"%.60s\", model %s%u bytes \"%.60s\"", d, op,
			la ? "absent " : "", ll, p->kind == PK_ATTR ? "" : (char *)mm->buf,
			absent ? "absent " : "", len,
			p->kind == PK_ATTR || !val ? "" : (const char *)val);
	if (!pver_eq(pcur(p), absent, val, len)) {
		pprop_add_version(p, wl_pos(w), absent, target, val, len, op);
		if (getenv("RLFS_CRASH_TRACE"))
			printf("trace: %s %s -> version %zu at %" PRIu64 "%s\n", op, d, p->nv - 1,
			       wl_pos(w), absent ? " (absent)" : "");
	}
}

/* an ENTRY's value as prop_read makes it */
static uint32_t entry_val(char *buf, uint64_t ino, mode_t type, dev_t rdev, const char *target)
{
	int n = snprintf(buf, 8500, "ino %llu type 0%o rdev %llx", (unsigned long long)ino,
			 (unsigned)(type & S_IFMT), (unsigned long long)rdev);
	if (target)
		n += snprintf(buf + n, 8500 - (size_t)n, " -> %s", target);
	return (uint32_t)n;
}

static void prop_set_entry(struct wl *w, struct prop *p, uint64_t ino, mode_t type, dev_t rdev,
			   const char *target, const char *op)
{
	char *buf = xrealloc(NULL, 8500);
	uint32_t n = entry_val(buf, ino, type, rdev, target);
	prop_set(w, p, false, buf, n, op);
	free(buf);
}

/* copy an ENTRY's current value to another (rename) */
static void prop_copy(struct wl *w, struct prop *to, const struct pver *from, const char *op)
{
	uint8_t *tmp = from->absent ? NULL : xrealloc(NULL, from->len + 1);
	if (tmp)
		memcpy(tmp, from->val, from->len);
	prop_set(w, to, from->absent, tmp, from->len, op);
	free(tmp);
}

static void prop_mark(struct wl *w, struct prop *p)
{
	if (p->nmk == p->mkcap) {
		p->mkcap = p->mkcap ? p->mkcap * 2 : 16;
		p->mk = xrealloc(p->mk, p->mkcap * sizeof(*p->mk));
	}
	p->mk[p->nmk++] = (struct fsync_mark){ .pos = wl_pos(w), .vi = p->nv - 1 };
}

static void prop_retire(struct wl *w, struct prop *p)
{
	if (!pcur(p)->absent)
		pprop_add_version(p, wl_pos(w), true, 0, NULL, 0, "freed");
	p->retired_pos = wl_pos(w);
}

static void mm_mark_all(struct wl *w)
{
	struct mmodel *mm = w->mm;
	for (size_t i = 0; i < mm->np; i++)
		if (!mm->p[i]->retired_pos)
			prop_mark(w, mm->p[i]);
}

/* fsync(ino) (a file, symlink or directory) and its marks */
static void mm_fsync(struct wl *w, uint64_t ino)
{
	struct mmodel *mm = w->mm;
	int err = rlfs_fsync(w->mp, ino, 0);
	if (err)
		wl_fail("fsync inode %" PRIu64 ": %s", ino, strerror(-err));
	if (getenv("RLFS_CRASH_TRACE"))
		printf("trace: fsync inode %" PRIu64 " at %" PRIu64 "\n", ino, wl_pos(w));
	for (size_t i = 0; i < mm->np; i++) {
		struct prop *p = mm->p[i];
		if (p->retired_pos)
			continue;
		if (p->kind == PK_ENTRY ? p->ino == ino || pcur(p)->target == ino : p->ino == ino)
			prop_mark(w, p);
	}
	note_synced(w);
	w->nops++;
}

static struct attrv live_attr(struct wl *w, uint64_t ino)
{
	struct stat st;
	int err = rlfs_getattr(w->mp, ino, &st);
	if (err)
		wl_fail("getattr %" PRIu64 ": %s", ino, strerror(-err));
	return (struct attrv){ .mode = (uint32_t)st.st_mode, .uid = (uint32_t)st.st_uid,
			       .gid = (uint32_t)st.st_gid, .nlink = (uint32_t)st.st_nlink,
			       .mtime_s = (int64_t)st.st_mtim.tv_sec,
			       .mtime_ns = (int64_t)st.st_mtim.tv_nsec };
}

/* the model's attributes of obj: mode/uid/gid/nlink from the model, mtime
 * from the library unless want_mtime */
static void attr_set(struct wl *w, struct prop *p, uint32_t mode, uint32_t uid, uint32_t gid,
		     uint32_t nlink, const struct attrv *want_mtime, const char *op)
{
	struct attrv a = live_attr(w, p->ino);
	a.mode = mode;
	a.uid = uid;
	a.gid = gid;
	a.nlink = nlink;
	if (want_mtime) {
		a.mtime_s = want_mtime->mtime_s;
		a.mtime_ns = want_mtime->mtime_ns;
	}
	prop_set(w, p, false, &a, sizeof(a), op);
}

static const struct attrv *attr_cur(const struct prop *p)
{
	return (const struct attrv *)pcur(p)->val;
}

/* an object or the hub (never freed) */
static bool is_obj(struct mmodel *mm, uint64_t ino)
{
	for (int i = 0; i < MM_OBJS; i++)
		if (mm->obj[i] == ino)
			return true;
	return ino == mm->hub;
}

/* the link count an object or the hub has in the model */
static uint32_t mm_nlink(struct mmodel *mm, uint64_t ino)
{
	uint32_t n = is_obj(mm, ino);   /* m1/oN or big/hub */
	for (int d = 0; d < 2; d++)
		for (int s = 0; s < MM_SLOTS; s++)
			n += !pcur(mm->slot[d][s])->absent && pcur(mm->slot[d][s])->target == ino;
	if (ino == mm->hub)
		for (int b = 0; b < MM_BIG; b++)
			n += mm->bigent[b] && !pcur(mm->bigent[b])->absent;
	return n;
}

/* after a name op: the link counts of the objects and the hub */
static void mm_nlinks(struct wl *w, const char *op)
{
	struct mmodel *mm = w->mm;
	for (int i = 0; i <= MM_OBJS; i++) {
		struct prop *p = i < MM_OBJS ? mm->obj_attr[i] : mm->hub_attr;
		const struct attrv *a = attr_cur(p);
		uint32_t n = mm_nlink(mm, p->ino);
		struct attrv live = live_attr(w, p->ino);
		/* a link count change changes ctime only */
		if (n != a->nlink || live.nlink != a->nlink)
			attr_set(w, p, a->mode, a->uid, a->gid, n, a, op);
	}
}

/* A slot's inode loses a name (unlink, rename over it): if that was its
 * last (not an object), its inode-keyed props are retired. */
static void mm_name_gone(struct wl *w, uint64_t ino)
{
	struct mmodel *mm = w->mm;
	if (!ino || is_obj(mm, ino) || mm_nlink(mm, ino))
		return;
	for (size_t i = 0; i < mm->np; i++)
		if (mm->p[i]->kind != PK_ENTRY && mm->p[i]->ino == ino && !mm->p[i]->retired_pos)
			prop_retire(w, mm->p[i]);
}

static void mm_err(int err, int want, const char *op, const char *name)
{
	if (err != want)
		wl_fail("%s %s: %s, expected %s", op, name, err ? strerror(-err) : "success",
			want ? strerror(-want) : "success");
}

static struct prop *xattr_prop(struct wl *w, uint64_t ino, const char *name)
{
	struct mmodel *mm = w->mm;
	for (size_t i = 0; i < mm->np; i++)
		if (mm->p[i]->kind == PK_XATTR && mm->p[i]->ino == ino &&
		    !strcmp(mm->p[i]->name, name) && !mm->p[i]->retired_pos)
			return mm->p[i];
	return prop_new(w, PK_XATTR, ino, name, NULL);
}

static uint32_t xattr_size(void)
{
	switch (rndn(4)) {
	case 0: return 1 + (uint32_t)rndn(40);           /* inline */
	case 1: return 65 + (uint32_t)rndn(400);         /* one value block */
	case 2: return 3000 + (uint32_t)rndn(3000);      /* one or two */
	default: return 9000 + (uint32_t)rndn(12000);    /* several */
	}
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* an access ACL with a named user (so it is kept, not folded into the
 * mode): 5 entries; *perm_bits the mode's permission bits it implies */
static uint32_t make_acl(uint8_t *v, uint32_t *perm_bits)
{
	static const uint16_t tags[5] = { 1, 2, 4, 0x10, 0x20 };
	uint16_t perm[5];
	put_le32(v, 2);
	for (int i = 0; i < 5; i++) {
		perm[i] = (uint16_t)rndn(8);
		put_le16(v + 4 + 8 * i, tags[i]);
		put_le16(v + 6 + 8 * i, perm[i]);
		put_le32(v + 8 + 8 * i, tags[i] == 2 ? 1000 + (uint32_t)rndn(3) : 0xffffffffu);
	}
	*perm_bits = (uint32_t)perm[0] << 6 | (uint32_t)perm[3] << 3 | perm[4];
	return 4 + 5 * 8;
}

struct stopper {
	unsigned polls, after;
};

static int stop_after(void *arg)
{
	struct stopper *st = arg;
	return st->polls++ >= st->after;
}

static void mm_slot_name(int d, int s, char *buf, size_t len)
{
	snprintf(buf, len, "m%d/p%d", d + 1, s);
}

static void wl_meta(struct wl *w)
{
	struct mmodel *mm = calloc(1, sizeof(*mm));
	if (!mm)
		wl_fail("out of memory");
	w->mm = mm;
	mm->buf = xrealloc(NULL, MM_VAL_MAX + 8600);
	uint8_t *val = xrealloc(NULL, MM_VAL_MAX);
	char name[100], target[4200];
	struct stat st;
	uint64_t root = rlfs_root_ino(w->mp);
	static const char *const dname[3] = { "m1", "m2", "big" };
	uint64_t *dino[3] = { &mm->m1, &mm->m2, &mm->big };
	for (int d = 0; d < 3; d++) {
		mm_err(rlfs_mkdir(w->mp, root, dname[d], 0755, 0, 0, &st), 0, "mkdir", dname[d]);
		rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
		*dino[d] = (uint64_t)st.st_ino;
	}
	for (int i = 0; i < MM_OBJS; i++) {
		snprintf(name, sizeof(name), "o%d", i);
		struct prop *e = prop_new(w, PK_ENTRY, mm->m1, name, "m1");
		mm_err(rlfs_mknod(w->mp, mm->m1, name, S_IFREG | 0644, 0, 0, 0, &st), 0, "create",
		       name);
		rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
		mm->obj[i] = (uint64_t)st.st_ino;
		mm->obj_attr[i] = prop_new(w, PK_ATTR, mm->obj[i], NULL, NULL);
		prop_set_entry(w, e, mm->obj[i], S_IFREG, 0, NULL, "create");
		attr_set(w, mm->obj_attr[i], S_IFREG | 0644, 0, 0, 1, NULL, "create");
	}
	mm_err(rlfs_mknod(w->mp, mm->big, "hub", S_IFREG | 0600, 0, 0, 0, &st), 0, "create", "hub");
	rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
	mm->hub = (uint64_t)st.st_ino;
	mm->hub_attr = prop_new(w, PK_ATTR, mm->hub, NULL, NULL);
	struct prop *hubent = prop_new(w, PK_ENTRY, mm->big, "hub", "big");
	prop_set_entry(w, hubent, mm->hub, S_IFREG, 0, NULL, "create");
	attr_set(w, mm->hub_attr, S_IFREG | 0600, 0, 0, 1, NULL, "create");
	for (int d = 0; d < 2; d++)
		for (int s = 0; s < MM_SLOTS; s++) {
			snprintf(name, sizeof(name), "p%d", s);
			mm->slot[d][s] = prop_new(w, PK_ENTRY, d ? mm->m2 : mm->m1, name, dname[d]);
		}
	mm->u_ent = prop_new(w, PK_ENTRY, mm->m2, "u", "m2");
	/* a symlink that stays: xattrs on a symlink (trusted.*: the kernel
	 * allows no user.* there) */
	mm_err(rlfs_symlink(w->mp, mm->m2, "sl", "xattr-target", 0, 0, &st), 0, "symlink", "sl");
	rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
	mm->sl = (uint64_t)st.st_ino;
	struct prop *slent = prop_new(w, PK_ENTRY, mm->m2, "sl", "m2");
	prop_set_entry(w, slent, mm->sl, S_IFLNK, 0, "xattr-target", "symlink");
	/* the cancelled clones' source: blocks written in turn with another
	 * file's, so that each is an extent of its own (a clone polls for a
	 * stop every CLONE_POLL pieces and between transactions) */
	uint64_t pad;
	mm_err(rlfs_mknod(w->mp, mm->m1, "csrc", S_IFREG | 0644, 0, 0, 0, &st), 0, "create", "csrc");
	rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
	mm->csrc = (uint64_t)st.st_ino;
	mm_err(rlfs_mknod(w->mp, mm->m1, "cpad", S_IFREG | 0644, 0, 0, 0, &st), 0, "create", "cpad");
	rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
	pad = (uint64_t)st.st_ino;
	mm->csrc_data = xrealloc(NULL, MM_CSRC_BLOCKS * BLOCK_BYTES);
	for (uint32_t i = 0; i < MM_CSRC_BLOCKS * BLOCK_BYTES; i++)
		mm->csrc_data[i] = (uint8_t)('a' + (i * 7 + i / BLOCK_BYTES) % 26);
	for (uint32_t b = 0; b < MM_CSRC_BLOCKS; b++) {
		if (rlfs_write(w->mp, mm->csrc, mm->csrc_data + b * BLOCK_BYTES, BLOCK_BYTES,
			       (off_t)b * BLOCK_BYTES) != BLOCK_BYTES ||
		    rlfs_write(w->mp, pad, mm->csrc_data, BLOCK_BYTES, (off_t)b * BLOCK_BYTES) !=
		    BLOCK_BYTES)
			wl_fail("write csrc");
		if (b % 16 == 15)
			mm_err(rlfs_fsync(w->mp, mm->csrc, 0), 0, "fsync", "csrc");
	}
	do_sync(w);

	for (unsigned n = 0; n < w->o->ops; n++) {
		int oi = (int)rndn(MM_OBJS);
		uint64_t oino = mm->obj[oi];
		struct prop *oattr = mm->obj_attr[oi];
		const struct attrv *oa = attr_cur(oattr);
		int d = (int)rndn(2), s = (int)rndn(MM_SLOTS);
		int d2 = (int)rndn(2), s2 = (int)rndn(MM_SLOTS);
		struct prop *sp = mm->slot[d][s], *sp2 = mm->slot[d2][s2];
		uint64_t dir = d ? mm->m2 : mm->m1, dir2 = d2 ? mm->m2 : mm->m1;
		char sname[16], sname2[16];
		mm_slot_name(d, s, sname, sizeof(sname));
		mm_slot_name(d2, s2, sname2, sizeof(sname2));
		uint64_t r = rndn(100);
		int err;
		if (r < 12) {
			/* set a user xattr: create, replace or either; on an
			 * object, or (one in two) on directory m1 or m2 or on
			 * the symlink m2/sl (then sometimes fsync'd) */
			uint64_t xino = oino;
			unsigned xt = rndn(2) ? 0 : 1 + (unsigned)rndn(3);
			if (xt)
				xino = xt == 1 ? mm->m1 : xt == 2 ? mm->m2 : mm->sl;
			snprintf(name, sizeof(name), "%s.x%d", xt == 3 ? "trusted" : "user",
				 (int)rndn(MM_XNAMES));
			struct prop *xp = xattr_prop(w, xino, name);
			uint32_t len = xattr_size();
			uint64_t seq = ++w->wseq;
			for (uint32_t i = 0; i < len; i++)
				val[i] = (uint8_t)('A' + (seq * 7 + i * 13 + i / 251) % 58);
			int flags = (int)rndn(3); /* 0, XATTR_CREATE 1, XATTR_REPLACE 2 */
			bool exists = !pcur(xp)->absent;
			int want = flags == XATTR_CREATE && exists ? -EEXIST :
				   flags == XATTR_REPLACE && !exists ? -ENODATA : 0;
			mm_err(rlfs_setxattr(w->mp, xino, name, val, len, flags), want, "setxattr", name);
			if (!want) {
				prop_set(w, xp, false, val, len, "setxattr");
				mm->nxattr++;
				mm->nxattr_dir += xt == 1 || xt == 2;
				mm->nxattr_sym += xt == 3;
			}
			w->nops++;
			if (xt && rndn(3) == 0)
				mm_fsync(w, xino);
		} else if (r < 17) {
			uint64_t xino = oino;
			unsigned xt = rndn(2) ? 0 : 1 + (unsigned)rndn(3);
			if (xt)
				xino = xt == 1 ? mm->m1 : xt == 2 ? mm->m2 : mm->sl;
			snprintf(name, sizeof(name), "%s.x%d", xt == 3 ? "trusted" : "user",
				 (int)rndn(MM_XNAMES));
			struct prop *xp = xattr_prop(w, xino, name);
			bool exists = !pcur(xp)->absent;
			mm_err(rlfs_removexattr(w->mp, xino, name), exists ? 0 : -ENODATA,
			       "removexattr", name);
			prop_set(w, xp, true, NULL, 0, "removexattr");
			w->nops++;
			if (xt && rndn(3) == 0)
				mm_fsync(w, xino);
		} else if (r < 21) {
			/* an access ACL: set (the mode's permission bits follow)
			 * or removed */
			struct prop *xp = xattr_prop(w, oino, "system.posix_acl_access");
			if (rndn(3) == 0) {
				err = rlfs_removexattr(w->mp, oino, "system.posix_acl_access");
				mm_err(err, pcur(xp)->absent ? -ENODATA : 0, "remove acl", "");
				prop_set(w, xp, true, NULL, 0, "remove acl");
			} else {
				uint32_t bits, len = make_acl(val, &bits);
				mm_err(rlfs_setxattr(w->mp, oino, "system.posix_acl_access", val, len, 0), 0,
				       "set acl", "");
				prop_set(w, xp, false, val, len, "set acl");
				attr_set(w, oattr, (oa->mode & ~0777u) | bits, oa->uid, oa->gid, oa->nlink,
					 oa, "set acl");
				mm->nacl++;
			}
			w->nops++;
		} else if (r < 27) {
			/* chmod, chown or utimes */
			struct stat in = { 0 };
			unsigned valid;
			uint32_t mode = oa->mode, uid = oa->uid, gid = oa->gid;
			struct attrv mt = *oa;
			uint64_t k = rndn(3);
			if (k == 0) {
				in.st_mode = (mode_t)(S_IFREG | rndn(07777 + 1));
				valid = RLFS_SET_MODE;
				mode = (uint32_t)in.st_mode;
			} else if (k == 1) {
				in.st_uid = (uid_t)(rndn(2) ? 0 : 1000 + rndn(3));
				in.st_gid = (gid_t)(rndn(2) ? 0 : 1000 + rndn(3));
				valid = RLFS_SET_UID | RLFS_SET_GID;
				uid = (uint32_t)in.st_uid;
				gid = (uint32_t)in.st_gid;
				/* chown clears setuid, and setgid if group-executable */
				mode &= ~(uint32_t)S_ISUID;
				if (mode & S_IXGRP)
					mode &= ~(uint32_t)S_ISGID;
			} else {
				in.st_mtim.tv_sec = (time_t)(1000000000 + rndn(1000000000));
				in.st_mtim.tv_nsec = (long)rndn(1000000000);
				valid = RLFS_SET_MTIME;
				mt.mtime_s = (int64_t)in.st_mtim.tv_sec;
				mt.mtime_ns = (int64_t)in.st_mtim.tv_nsec;
			}
			struct stat out;
			mm_err(rlfs_setattr(w->mp, oino, &in, valid, &out), 0, "setattr", "");
			/* a chmod rewrites an access ACL's entries: read back */
			struct prop *acl = xattr_prop(w, oino, "system.posix_acl_access");
			if (k == 0 && !pcur(acl)->absent) {
				int l = rlfs_getxattr(w->mp, oino, "system.posix_acl_access", val,
						      MM_VAL_MAX);
				if (l < 0)
					wl_fail("getxattr acl after chmod: %s", strerror(-l));
				prop_set(w, acl, false, val, (uint32_t)l, "chmod");
			}
			attr_set(w, oattr, mode, uid, gid, oa->nlink, &mt, "setattr");
			w->nops++;
		} else if (r < 31) {
			/* setuid + setgid, then a write that kills them */
			struct stat in = { .st_mode = (mode_t)(S_IFREG | S_ISUID | S_ISGID | 0644 |
							       (rndn(2) ? S_IXGRP : 0)) }, out;
			mm_err(rlfs_setattr(w->mp, oino, &in, RLFS_SET_MODE, &out), 0, "chmod", "");
			attr_set(w, oattr, (uint32_t)in.st_mode, oa->uid, oa->gid, oa->nlink, oa,
				 "chmod");
			struct prop *acl = xattr_prop(w, oino, "system.posix_acl_access");
			if (!pcur(acl)->absent) {
				int l = rlfs_getxattr(w->mp, oino, "system.posix_acl_access", val,
						      MM_VAL_MAX);
				if (l < 0)
					wl_fail("getxattr acl after chmod: %s", strerror(-l));
				prop_set(w, acl, false, val, (uint32_t)l, "chmod");
			}
			w->nops++;
			if (rndn(2))
				mm_fsync(w, oino);
			memset(val, 'a' + (int)rndn(26), 512);
			ssize_t wr = rlfs_write_flags(w->mp, oino, val, 512, (off_t)rndn(65536),
						      RLFS_WRITE_KILL_SUIDGID);
			if (wr != 512)
				wl_fail("write %d: %s", oi, wr < 0 ? strerror((int)-wr) : "short");
			uint32_t mode = attr_cur(oattr)->mode & ~(uint32_t)S_ISUID;
			if (mode & S_IXGRP)
				mode &= ~(uint32_t)S_ISGID;
			attr_set(w, oattr, mode, oa->uid, oa->gid, oa->nlink, NULL, "killing write");
			mm->nsuid++;
			w->nops++;
		} else if (r < 38) {
			/* a symlink in a free slot (short: inline; long: remote
			 * blocks), else unlink what is there */
			const struct pver *cv = pcur(sp);
			if (cv->absent) {
				size_t tl = rndn(3) ? 1 + rndn(60) : 300 + rndn(3500);
				for (size_t i = 0; i < tl; i++)
					target[i] = (char)('a' + (w->wseq + i * 7) % 26);
				target[tl] = 0;
				w->wseq++;
				mm_err(rlfs_symlink(w->mp, dir, sp->name, target, 0, 0, &st), 0, "symlink",
				       sname);
				rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
				prop_set_entry(w, sp, (uint64_t)st.st_ino, S_IFLNK, 0, target, "symlink");
				mm->nsym++;
			} else {
				uint64_t gone = cv->target;
				mm_err(rlfs_unlink(w->mp, dir, sp->name), 0, "unlink", sname);
				prop_set(w, sp, true, NULL, 0, "unlink");
				mm_name_gone(w, gone);
				mm_nlinks(w, "unlink");
			}
			w->nops++;
		} else if (r < 42 && pcur(sp)->absent) {
			/* mknod: fifo, character or block device */
			static const mode_t types[3] = { S_IFIFO, S_IFCHR, S_IFBLK };
			mode_t t = types[rndn(3)];
			dev_t rdev = t == S_IFIFO ? 0 : makedev(1 + rndn(200), rndn(256));
			mm_err(rlfs_mknod(w->mp, dir, sp->name, t | 0640, rdev, 0, 0, &st), 0, "mknod",
			       sname);
			rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
			prop_set_entry(w, sp, (uint64_t)st.st_ino, t, rdev, NULL, "mknod");
			mm->nnode++;
			w->nops++;
		} else if (r < 48 && pcur(sp)->absent) {
			/* a hard link of an object */
			mm_err(rlfs_link(w->mp, oino, dir, sp->name, &st), 0, "link", sname);
			rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
			prop_set_entry(w, sp, oino, S_IFREG, 0, NULL, "link");
			mm_nlinks(w, "link");
			mm->nlinks++;
			w->nops++;
		} else if (r < 56 && !pcur(sp)->absent && sp != sp2) {
			/* rename: NOREPLACE, WHITEOUT or plain (over sp2 if any) */
			uint64_t k = rndn(3);
			unsigned flags = k == 0 ? 1u /* RENAME_NOREPLACE */ :
					 k == 1 ? 4u /* RENAME_WHITEOUT */ : 0;
			const struct pver *from = pcur(sp), *over = pcur(sp2);
			bool same = !over->absent && over->target == from->target;
			int want = flags == 1 && !over->absent ? -EEXIST : 0;
			err = rlfs_rename(w->mp, dir, sp->name, dir2, sp2->name, flags);
			mm_err(err, want, "rename", sname);
			if (!want && !same) {
				uint64_t gone = over->absent ? 0 : over->target;
				size_t fi = sp->nv - 1;
				if (flags == 4) {
					struct stat wst;
					mm_err(rlfs_lookup(w->mp, dir, sp->name, &wst), 0, "lookup whiteout",
					       sname);
					rlfs_forget(w->mp, (uint64_t)wst.st_ino, 1);
					prop_copy(w, sp2, &sp->v[fi], "rename");
					prop_set_entry(w, sp, (uint64_t)wst.st_ino, S_IFCHR, 0, NULL,
						       "whiteout");
					mm->nwhite++;
				} else {
					prop_copy(w, sp2, &sp->v[fi], "rename");
					prop_set(w, sp, true, NULL, 0, "rename");
				}
				mm_name_gone(w, gone);
				mm_nlinks(w, "rename");
			} else if (!want && same && flags == 4) {
				/* same inode: rename(2) does nothing, not even a whiteout */
			}
			mm->nnorep += flags == 1;
			mm->nren++;
			w->nops++;
		} else if (r < 60 && !pcur(sp)->absent && !pcur(sp2)->absent &&
			   pcur(sp)->target != pcur(sp2)->target) {
			mm_err(rlfs_rename(w->mp, dir, sp->name, dir2, sp2->name, 2), 0, "exchange",
			       sname);
			struct pver a = *pcur(sp), b = *pcur(sp2);
			uint8_t *av = xrealloc(NULL, a.len + 1), *bv = xrealloc(NULL, b.len + 1);
			memcpy(av, a.val, a.len);
			memcpy(bv, b.val, b.len);
			prop_set(w, sp, false, bv, b.len, "exchange");
			prop_set(w, sp2, false, av, a.len, "exchange");
			free(av);
			free(bv);
			mm->nexch++;
			w->nops++;
		} else if (r < 64 && pcur(sp)->absent) {
			/* O_TMPFILE: written (maybe fsync'd, an orphan), then
			 * maybe given a name (linkat), maybe fsync'd */
			mm_err(rlfs_tmpfile(w->mp, dir, S_IFREG | 0600, 0, 0, 0, &st), 0, "tmpfile", "");
			uint64_t t = (uint64_t)st.st_ino;
			struct prop *dp = prop_new(w, PK_DATA, t, NULL, NULL);
			uint32_t len = 1 + (uint32_t)rndn(9000);
			uint64_t seq = ++w->wseq;
			for (uint32_t i = 0; i < len; i++)
				val[i] = (uint8_t)('0' + (seq * 5 + i * 3) % 64);
			ssize_t wr = rlfs_write(w->mp, t, val, len, 0);
			if (wr != (ssize_t)len)
				wl_fail("write tmpfile: %s", wr < 0 ? strerror((int)-wr) : "short");
			/* no name: not there (rlfs_lookup_ino sees nlink 0) */
			prop_set(w, dp, true, NULL, 0, "tmpfile write");
			w->nops++;
			if (rndn(3) == 0)
				mm_fsync(w, t);
			if (rndn(4)) {
				mm_err(rlfs_link(w->mp, t, dir, sp->name, &st), 0, "linkat", sname);
				rlfs_forget(w->mp, t, 1);
				prop_set_entry(w, sp, t, S_IFREG, 0, NULL, "linkat");
				prop_set(w, dp, false, val, len, "linkat");
				mm->ntmplinked++;
				w->nops++;
				if (rndn(2))
					mm_fsync(w, t);
			}
			rlfs_forget(w->mp, t, 1);
			if (pcur(sp)->absent || pcur(sp)->target != t)
				prop_retire(w, dp);
			mm->ntmp++;
		} else if (r < 67) {
			/* a file unlinked while open, written after the unlink */
			mm_err(rlfs_mknod(w->mp, mm->m2, "u", S_IFREG | 0644, 0, 0, 0, &st), 0, "create",
			       "m2/u");
			uint64_t u = (uint64_t)st.st_ino;
			prop_set_entry(w, mm->u_ent, u, S_IFREG, 0, NULL, "create");
			memset(val, 'u', 8192);
			if (rlfs_write(w->mp, u, val, 8192, 0) != 8192)
				wl_fail("write m2/u");
			w->nops++;
			if (rndn(2))
				mm_fsync(w, u);
			mm_err(rlfs_unlink(w->mp, mm->m2, "u"), 0, "unlink", "m2/u");
			prop_set(w, mm->u_ent, true, NULL, 0, "unlink");
			w->nops++;
			if (rlfs_write(w->mp, u, val, 8192, 4096 + (off_t)rndn(65536)) != 8192)
				wl_fail("write m2/u after unlink");
			w->nops++;
			if (rndn(2))
				mm_fsync(w, u);
			if (rndn(2))
				mm_fsync(w, mm->m2);
			rlfs_forget(w->mp, u, 1);
			mm->nunl++;
		} else if (r < 71) {
			/* a clone stopped part-way (rlfs_clone_range_cancel:
			 * the kernel's fatal signal) into a new file m1/cN: it
			 * holds the bytes the clone returned, fsync'd or not;
			 * or m1/cN removed */
			snprintf(name, sizeof(name), "c%u", mm->nclone++ % 6);
			struct prop *ce = NULL;
			for (size_t i = 0; i < mm->np && !ce; i++)
				if (mm->p[i]->kind == PK_ENTRY && mm->p[i]->ino == mm->m1 &&
				    !strcmp(mm->p[i]->name, name))
					ce = mm->p[i];
			if (!ce)
				ce = prop_new(w, PK_ENTRY, mm->m1, name, "m1");
			if (!pcur(ce)->absent) {
				uint64_t gone = pcur(ce)->target;
				mm_err(rlfs_unlink(w->mp, mm->m1, name), 0, "unlink", name);
				prop_set(w, ce, true, NULL, 0, "unlink");
				mm_name_gone(w, gone);
				w->nops++;
			} else {
				mm_err(rlfs_mknod(w->mp, mm->m1, name, S_IFREG | 0644, 0, 0, 0, &st), 0,
				       "create", name);
				uint64_t c = (uint64_t)st.st_ino;
				rlfs_forget(w->mp, c, 1);
				struct prop *dp = prop_new(w, PK_DATA, c, NULL, NULL);
				prop_set_entry(w, ce, c, S_IFREG, 0, NULL, "create");
				prop_set(w, dp, false, "", 0, "create");
				struct stopper stp = { .after = (unsigned)rndn(5) };
				struct rlfs_cancel cc = { .stop = stop_after, .arg = &stp };
				uint64_t len = MM_CSRC_BLOCKS * BLOCK_BYTES;
				int64_t cn = rlfs_clone_range_cancel(w->mp, mm->csrc, 0, c, 0, len, 0, &cc);
				if (cn != -EINTR && (cn < 0 || cn % BLOCK_BYTES || (uint64_t)cn > len))
					wl_fail("cancelled clone to %s: %lld", name, (long long)cn);
				if (cn < 0)
					cn = 0;
				prop_set(w, dp, false, mm->csrc_data, (uint32_t)cn, "cancelled clone");
				if (cn > 0)
					dp->v[dp->nv - 1].grow_prefix = true;
				mm->ncancel++;
				mm->ncancel_part += cn > 0 && (uint64_t)cn < len;
				w->nops++;
				if (rndn(2))
					mm_fsync(w, c);
			}
		} else if (r < 74) {
			/* big directory: a burst of hard links to the hub with
			 * long names, or of removals; fsync of the directory */
			int k = 20 + (int)rndn(60);
			bool add = rndn(3) != 0;
			int b = (int)rndn(MM_BIG);
			for (int i = 0; i < k; i++, b = (b + 7) % MM_BIG) {
				struct prop *bp = mm->bigent[b];
				snprintf(name, sizeof(name),
					 "entry-%04d-with-a-rather-long-name-to-fill-blocks-%04d", b, b * 37);
				if (!bp)
					bp = mm->bigent[b] = prop_new(w, PK_ENTRY, mm->big, name, "big");
				if (add && pcur(bp)->absent) {
					mm_err(rlfs_link(w->mp, mm->hub, mm->big, name, &st), 0, "link", name);
					rlfs_forget(w->mp, mm->hub, 1);
					prop_set_entry(w, bp, mm->hub, S_IFREG, 0, NULL, "link");
				} else if (!add && !pcur(bp)->absent) {
					mm_err(rlfs_unlink(w->mp, mm->big, name), 0, "unlink", name);
					prop_set(w, bp, true, NULL, 0, "unlink");
				} else {
					continue;
				}
				mm_nlinks(w, "big");
				mm->nbig++;
				w->nops++;
			}
			uint32_t nb = mm_nlink(mm, mm->hub) - 1;
			if (nb > mm->big_max) {
				struct stat bst;
				mm->big_max = nb;
				if (rlfs_getattr(w->mp, mm->big, &bst) == 0)
					mm->big_blocks = (uint64_t)bst.st_blocks / (BLOCK_BYTES / 512);
			}
			if (rndn(2))
				mm_fsync(w, rndn(4) ? mm->big : mm->hub);
		} else if (r < 86) {
			/* fsync an object or what a slot names */
			uint64_t k = rndn(3);
			if (k == 0 && !pcur(sp)->absent &&
			    (pcur(sp)->val[pcur(sp)->len - 1] != 0))
				mm_fsync(w, pcur(sp)->target);
			else
				mm_fsync(w, oino);
		} else if (r < 94) {
			mm_fsync(w, rndn(2) ? dir : mm->big);
		} else {
			do_sync(w);
		}
	}
	free(val);
}

/* The check of a crash image: every property. */
static void check_meta(struct wl *w, uint64_t pos, struct msgs *m)
{
	struct mmodel *mm = w->mm;
	if (!mm)
		return;
	for (size_t i = 0; i < mm->np; i++) {
		struct prop *p = mm->p[i];
		if (p->retired_pos && pos > p->retired_pos)
			continue;
		if (pos <= p->v[0].end_pos)
			continue;   /* not made yet */
		size_t lo = 0, hi = p->nv - 1;
		bool marked = false;
		for (size_t k = 0; k < p->nmk; k++)
			if (p->mk[k].pos <= pos) {
				lo = p->mk[k].vi;
				marked = true;
			}
		for (size_t k = 0; k < p->nv; k++)
			if (p->v[k].end_pos >= pos) {
				hi = k;
				break;
			}
		if (hi < lo)
			hi = lo;
		char d[200];
		pdesc(p, d, sizeof(d));
		bool absent;
		uint32_t len;
		uint64_t target;
		int err = prop_read(w->mp, p, mm->buf, &absent, &len, &target);
		if (err) {
			say(m, "readerr: %s: %s", d, strerror(-err));
			continue;
		}
		if (p->kind == PK_ATTR && !absent) {
			/* field by field */
			struct attrv a;
			memcpy(&a, mm->buf, sizeof(a));
			bool ok[5] = { false };
			for (size_t v = lo; v <= hi; v++) {
				if (p->v[v].absent)
					continue;
				const struct attrv *b = (const struct attrv *)p->v[v].val;
				ok[0] |= a.mode == b->mode;
				ok[1] |= a.uid == b->uid;
				ok[2] |= a.gid == b->gid;
				ok[3] |= a.nlink == b->nlink;
				ok[4] |= a.mtime_s == b->mtime_s && a.mtime_ns == b->mtime_ns;
			}
			static const char *const fn[5] = { "mode", "uid", "gid", "nlink", "mtime" };
			const struct attrv *l = (const struct attrv *)p->v[lo].val, *h =
				(const struct attrv *)p->v[hi].val;
			uint64_t got[5] = { a.mode, a.uid, a.gid, a.nlink, (uint64_t)a.mtime_s };
			for (int f = 0; f < 5; f++) {
				if (ok[f])
					continue;
				uint64_t lv[5] = { 0 }, hv[5] = { 0 };
				if (l) {
					uint64_t t[5] = { l->mode, l->uid, l->gid, l->nlink, (uint64_t)l->mtime_s };
					memcpy(lv, t, sizeof(t));
				}
				if (h) {
					uint64_t t[5] = { h->mode, h->uid, h->gid, h->nlink, (uint64_t)h->mtime_s };
					memcpy(hv, t, sizeof(t));
				}
				say(m, "%s: %s: %s %#" PRIx64 ", versions %zu..%zu (%s..%s) have %#"
				    PRIx64 "..%#" PRIx64 "%s", f == 3 ? "nlink" : "attr", d, fn[f],
				    got[f], lo, hi, p->v[lo].op, p->v[hi].op, lv[f], hv[f],
				    marked ? " (fsync'd)" : "");
			}
			continue;
		}
		bool ok = false;
		for (size_t v = lo; v <= hi && !ok; v++)
			ok = pver_eq(&p->v[v], absent, mm->buf, len);
		for (size_t v = lo + 1; v <= hi && !ok; v++) {
			const struct pver *pv = &p->v[v], *pp = &p->v[v - 1];
			ok = pv->grow_prefix && !absent && !pp->absent && len % BLOCK_BYTES == 0 &&
			     len > pp->len && len < pv->len && memcmp(pv->val, mm->buf, len) == 0;
		}
		if (ok)
			continue;
		if (absent)
			say(m, "missing: %s (%s) is not there, versions %zu..%zu (%s..%s)", d,
			    marked ? "fsync'd" : "?", lo, hi, p->v[lo].op, p->v[hi].op);
		else if (p->kind == PK_ENTRY)
			say(m, "name: %s: %u bytes \"%.50s\" not in versions %zu..%zu (%s..%s)%s", d,
			    len, (char *)mm->buf, lo, hi, p->v[lo].op, p->v[hi].op,
			    marked ? " (fsync'd)" : "");
		else {
			/* binary values (ACLs, patterns): hex of the first bytes
			 * found and of the newest allowed version */
			char got[3 * 48 + 8], want[3 * 48 + 8];
			hexdump(got, sizeof(got), mm->buf, len, 48);
			if (p->v[hi].absent)
				snprintf(want, sizeof(want), "absent");
			else
				hexdump(want, sizeof(want), p->v[hi].val, p->v[hi].len, 48);
			say(m, "%s: %s: %u bytes [%s] not in versions %zu..%zu (%s..%s)%s; "
			    "version %zu: %u bytes [%s]",
			    p->kind == PK_XATTR ? "xattr" : "stale", d, len, got, lo, hi,
			    p->v[lo].op, p->v[hi].op, marked ? " (fsync'd)" : "", hi, p->v[hi].len,
			    want);
		}
	}
}

static void mm_free(struct mmodel *mm)
{
	if (!mm)
		return;
	for (size_t i = 0; i < mm->np; i++) {
		for (size_t v = 0; v < mm->p[i]->nv; v++)
			free(mm->p[i]->v[v].val);
		free(mm->p[i]->v);
		free(mm->p[i]->mk);
		free(mm->p[i]);
	}
	free(mm->p);
	free(mm->buf);
	free(mm->csrc_data);
	free(mm);
}

/* fsx with a clean unmount and mount now and then (do_remount) */
static void wl_remount(struct wl *w)
{
	w->remounts = true;
	wl_fsx(w);
}

struct wdef {
	const char *name;
	void (*run)(struct wl *w);
	uint64_t image_bytes;
	int nfiles;
	uint64_t file_bytes;
	unsigned default_ops;
};

static const struct wdef workloads[] = {
	{ "fsx", wl_fsx, 32ull << 20, 4, 256 * 1024, 150 },
	{ "clone", wl_clone, 32ull << 20, 3, 2ull << 20, 100 },
	{ "enospc", wl_enospc, 16ull << 20, 4, 6ull << 20, 60 },
	{ "dir", wl_dir, 32ull << 20, 0, 0, 200 },
	{ "unlinked", wl_unlinked, 32ull << 20, 2, 256 * 1024, 150 },
	{ "falloc", wl_falloc, 32ull << 20, 3, 256 * 1024, 120 },
	{ "meta", wl_meta, 32ull << 20, 0, 0, 200 },
	{ "remount", wl_remount, 32ull << 20, 4, 256 * 1024, 250 },
	{ "cowwide", wl_cowwide, 32ull << 20, 3, 1ull << 20, 40 },
	{ "dedupe", wl_dedupe, 32ull << 20, 3, 1ull << 20, 60 },
	{ "shift", wl_shift, 32ull << 20, 3, 1ull << 20, 60 },
	{ "exchange", wl_exchange, 32ull << 20, 3, 1ull << 20, 40 },
};

/* ---------------------------------------------------------------- */
/* setting up the recorded mount                                      */

/* Images have the rmap btree (mkfs's default), and fsck -n's
 * cross-check judges it in every crash image; --no-rmap: without it
 * (-1) */
static int mkfs_rmapbt;
/* --log-bytes: the log's size (0: mkfs's default for the image) */
static uint64_t mkfs_log_bytes;

static void mkfs_and_mount(struct wl *w, const struct wdef *d)
{
	char img[4200];
	snprintf(img, sizeof(img), "%s/base.img", tmpdir);
	int fd = open(img, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		wl_fail("create %s: %s", img, strerror(errno));
	close(fd);
	struct rlfs_mkfs_opts mo = { .size_bytes = d->image_bytes, .force = 1,
				     .rmapbt = mkfs_rmapbt, .log_bytes = mkfs_log_bytes };
	int err = rlfs_mkfs(img, &mo);
	if (err)
		wl_fail("mkfs %s: %s", img, strerror(-err));
	err = rlfs_mount_open(img, RLFS_MOUNT_NOLOCK, &w->mp);
	if (err)
		wl_fail("mount %s: %s", img, strerror(-err));
	w->log_feature = (w->mp->features_incompat & RLFS_FEAT_INCOMPAT_LOG) != 0;
	/* copy the mounted image into memory and record from here on */
	struct rlfs_dev *old = w->mp->dev, *mem, *cdev;
	err = rlfs_dev_open_mem(old->size_bytes, &mem);
	if (err)
		wl_fail("memory device: %s", strerror(-err));
	uint8_t *buf = xrealloc(NULL, 1u << 20);
	for (uint64_t off = 0; off < old->size_bytes && !err; off += 1u << 20) {
		size_t n = (size_t)RLFS_MIN(1u << 20, old->size_bytes - off);
		err = rlfs_dev_pread(old, buf, n, off);
		if (!err)
			err = rlfs_dev_pwrite(mem, buf, n, off);
	}
	free(buf);
	if (err)
		wl_fail("copy the image to memory: %s", strerror(-err));
	err = rlfs_crash_rec_new(mem, &w->rec);
	if (err)
		wl_fail("crash device: %s", strerror(-err));
	w->mem = mem;
	cdev = wl_recdev(w);
	/* every device access of the library goes through mp->dev and its
	 * vtable (lib/dev.h), so the swap is invisible above it */
	w->mp->dev = cdev;
	rlfs_dev_close(old);
	unlink(img);
	w->image_bytes = d->image_bytes;
}

/* ---------------------------------------------------------------- */
/* the list of cuts                                                   */

enum cut_kind { CUT_SYNCED, CUT_FLUSH, CUT_RANDOM };
static const char *const cut_kind_name[] = { "synced", "flush", "random" };

struct cutdef {
	enum cut_kind kind;
	struct rlfs_crash_cut cut;
};

static struct cutdef *make_cuts(struct wl *w, uint64_t seed, unsigned count, size_t *np)
{
	uint64_t npos = wl_pos(w);
	struct cutdef *c = NULL;
	size_t n = 0, cap = 0;
#define ADD(k, p, ka)                                                                   \
	do {                                                                            \
		if (n == cap) {                                                         \
			cap = cap ? cap * 2 : 256;                                      \
			c = xrealloc(c, cap * sizeof(*c));                              \
		}                                                                       \
		memset(&c[n], 0, sizeof(c[n]));                                         \
		c[n].kind = (k);                                                        \
		c[n].cut.pos = (p);                                                     \
		c[n].cut.keep_all = (ka);                                               \
		c[n].cut.seed = mix64(seed ^ (n * 0x9E3779B97F4A7C15ull));              \
		c[n].cut.torn_pct = 25;                                                 \
		n++;                                                                    \
	} while (0)
	for (size_t i = 0; i < w->nsynced; i++)
		ADD(CUT_SYNCED, w->synced[i], true);
	/* flush points not already a synced point */
	uint64_t *flushpos = NULL;
	size_t nflush = 0;
	for (uint64_t i = 0; i < npos; i++) {
		struct rlfs_crash_event ev;
		rlfs_crash_rec_event(w->rec, i, &ev);
		if (ev.kind != RLFS_CRASH_FLUSH)
			continue;
		flushpos = xrealloc(flushpos, (nflush + 1) * sizeof(*flushpos));
		flushpos[nflush++] = i + 1;
		bool dup = false;
		for (size_t s = 0; s < w->nsynced && !dup; s++)
			dup = w->synced[s] == i + 1;
		if (!dup)
			ADD(CUT_FLUSH, i + 1, true);
	}
	/* random cuts in every interval that has writes: (a, b) where a is a
	 * flush point (or 0) and b the next flush event (or the end) */
	uint64_t rs = seed ^ 0xC0FFEEull;
	for (size_t k = 0; k <= nflush; k++) {
		uint64_t a = k ? flushpos[k - 1] : 0;
		uint64_t b = k < nflush ? flushpos[k] - 1 : npos;
		if (b <= a)
			continue;
		for (unsigned j = 0; j < count; j++) {
			rs = mix64(rs);
			uint64_t p = a + 1 + rs % (b - a);
			rs = mix64(rs);
			ADD(CUT_RANDOM, p, rs % 4 == 0);
		}
	}
#undef ADD
	free(flushpos);
	*np = n;
	return c;
}

/* ---------------------------------------------------------------- */
/* checking one crash image (in a child process)                      */

/* The allowed versions of f at cut position pos: [*lo, *hi].  Returns
 * whether an fsync before the cut covered f. */
static bool allowed_versions(const struct fmodel *f, uint64_t pos, size_t *lo, size_t *hi)
{
	bool synced = false;
	*lo = 0;
	for (size_t i = 0; i < f->nsy; i++) {
		if (f->sy[i].pos <= pos) {
			synced = true;
			*lo = f->sy[i].vi;
		}
	}
	*hi = f->nv - 1;
	for (size_t i = 0; i < f->nv; i++) {
		if (f->v[i].end_pos >= pos) {
			*hi = i;
			break;
		}
	}
	if (*hi < *lo)
		*hi = *lo;
	return synced;
}

static const char *classify(const struct wl *w, const struct fmodel *f, uint8_t b)
{
	if (b == 0)
		return "zeros";
	int fid = b >> 4;
	if (fid == f->fid)
		return "stale";
	for (int i = 0; i < w->nf; i++)
		if (w->f[i].fid == fid)
			return "foreign";
	return "garbage";
}

static void check_file(struct wl *w, const struct fmodel *f, uint64_t pos, struct msgs *m)
{
	if (!f->created || f->created_pos > pos)
		return;
	size_t lo, hi;
	bool synced = allowed_versions(f, pos, &lo, &hi);
	struct stat st;
	int err = rlfs_lookup(w->mp, f->dir_ino, f->name, &st);
	if (err == -ENOENT) {
		if (synced)
			say(m, "missing: %s (fsync'd) is not there", f->name);
		return;
	}
	if (err) {
		say(m, "readerr: lookup %s: %s", f->name, strerror(-err));
		return;
	}
	rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
	uint64_t size = (uint64_t)st.st_size;
	bool size_ok = false;
	for (size_t v = lo; v <= hi; v++)
		size_ok |= f->v[v].size_bytes == size;
	for (size_t v = lo + 1; v <= hi && !size_ok; v++)
		size_ok = f->v[v].grow_prefix && size % BLOCK_BYTES == 0 &&
			  f->v[v - 1].size_bytes < size && size < f->v[v].size_bytes;
	if (!size_ok) {
		say(m, "size: %s has %" PRIu64 " bytes, allowed versions %zu..%zu have %" PRIu64
		    "..%" PRIu64 "%s", f->name, size, lo, hi, f->v[lo].size_bytes,
		    f->v[hi].size_bytes, synced ? " (fsync'd)" : "");
		if (size > f->max_bytes)
			return;
	}
	uint64_t done = 0;
	while (done < size) {
		ssize_t n = rlfs_read(w->mp, (uint64_t)st.st_ino, w->iobuf + done, size - done,
				      (off_t)done);
		if (n <= 0) {
			say(m, "readerr: read %s at %" PRIu64 ": %s", f->name, done,
			    n ? strerror((int)-n) : "short read");
			return;
		}
		done += (uint64_t)n;
	}
	/* chunk by chunk: a version that matches the whole chunk, else byte
	 * by byte; report the first bad byte of each kind */
	uint64_t bad[4] = { 0 }, first[4] = { 0 };
	static const char *const kinds[4] = { "zeros", "stale", "foreign", "garbage" };
	for (uint64_t c0 = 0; c0 < size; c0 += CHUNK_BYTES) {
		uint64_t c1 = RLFS_MIN(c0 + CHUNK_BYTES, size);
		bool whole = false;
		for (size_t v = hi + 1; v-- > lo && !whole;) {
			const struct fver *fv = &f->v[v];
			if (fv->size_bytes < c1)
				continue;
			const uint8_t *ch = fv->chunks[c0 / CHUNK_BYTES];
			whole = ch ? memcmp(ch, w->iobuf + c0, c1 - c0) == 0
				   : zero_chunk(w->iobuf + c0, c1 - c0);
		}
		if (whole)
			continue;
		for (uint64_t p = c0; p < c1; p++) {
			uint8_t b = w->iobuf[p];
			bool ok = false;
			for (size_t v = lo; v <= hi && !ok; v++)
				ok = p < f->v[v].size_bytes && ver_byte(&f->v[v], p) == b;
			/* a truncate below p (an allowed version smaller than p
			 * after one that held p) zeroes the rest of the EOF
			 * block before its size change is durable, as XFS's
			 * setattr does (iomap_truncate_page) */
			for (size_t v = lo + 1; v <= hi && !ok && b == 0; v++)
				ok = f->v[v].size_bytes <= p && p < f->v[v - 1].size_bytes &&
				     p / BLOCK_BYTES == f->v[v].size_bytes / BLOCK_BYTES;
			if (ok)
				continue;
			const char *k = classify(w, f, b);
			for (int i = 0; i < 4; i++) {
				if (strcmp(k, kinds[i]) == 0) {
					if (!bad[i]++)
						first[i] = p;
				}
			}
		}
	}
	for (int i = 0; i < 4; i++) {
		if (bad[i])
			say(m, "%s: %s%s: %" PRIu64 " bytes not in versions %zu..%zu, first at %" PRIu64
			    " (0x%02x)", kinds[i], f->name, synced ? " (fsync'd)" : "", bad[i], lo, hi,
			    first[i], w->iobuf[first[i]]);
	}	/* crash-atomic versions: the file is one of them as a whole */
	if (lo >= f->whole_from) {
		bool one = false;
		for (size_t v = lo; v <= hi && !one; v++) {
			const struct fver *fv = &f->v[v];
			if (fv->size_bytes != size)
				continue;
			one = true;
			for (uint64_t c0 = 0; c0 < size && one; c0 += CHUNK_BYTES) {
				uint64_t c1 = RLFS_MIN(c0 + CHUNK_BYTES, size);
				const uint8_t *ch = fv->chunks[c0 / CHUNK_BYTES];
				one = ch ? memcmp(ch, w->iobuf + c0, c1 - c0) == 0
					 : zero_chunk(w->iobuf + c0, c1 - c0);
			}
		}
		if (!one)
			say(m, "torn: %s%s (%" PRIu64 " bytes) equals none of versions %zu..%zu as a "
			    "whole (a crash-atomic operation half done)", f->name,
			    synced ? " (fsync'd)" : "", size, lo, hi);
	}
}

/* Does file f (inode ino, size bytes, contents in buf) equal version v
 * of its model exactly? */
static bool file_is_version(const struct fmodel *f, size_t v, uint64_t size, const uint8_t *buf)
{
	const struct fver *fv = &f->v[v];
	if (fv->size_bytes != size)
		return false;
	for (uint64_t c0 = 0; c0 < size; c0 += CHUNK_BYTES) {
		uint64_t c1 = RLFS_MIN(c0 + CHUNK_BYTES, size);
		const uint8_t *ch = fv->chunks[c0 / CHUNK_BYTES];
		if (ch ? memcmp(ch, buf + c0, c1 - c0) != 0 : !zero_chunk(buf + c0, c1 - c0))
			return false;
	}
	return true;
}

/* Which side of exchange e file i shows: 0 old, 1 new, -1 neither (or
 * unreadable: said). */
static int xevent_side(struct wl *w, int i, size_t vold, size_t vnew, struct msgs *m)
{
	const struct fmodel *f = &w->f[i];
	struct stat st;
	int err = rlfs_lookup(w->mp, f->dir_ino, f->name, &st);
	if (err) {
		say(m, "readerr: lookup %s: %s", f->name, strerror(-err));
		return -1;
	}
	rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
	uint64_t size = (uint64_t)st.st_size;
	if (size > f->max_bytes)
		return -1;
	ssize_t n = size ? rlfs_read(w->mp, (uint64_t)st.st_ino, w->iobuf, size, 0) : 0;
	if (n != (ssize_t)size) {
		say(m, "readerr: read %s: %s", f->name, n < 0 ? strerror((int)-n) : "short");
		return -1;
	}
	if (file_is_version(f, vold, size, w->iobuf))
		return 0;
	if (file_is_version(f, vnew, size, w->iobuf))
		return 1;
	return -1;
}

/* The exchange workload: a cut between the fsyncs before and after an
 * exchange finds each file whole at its version before the exchange or
 * whole at the one after it (never a range partly exchanged), and both
 * files on the same side. */
static void check_exchanges(struct wl *w, uint64_t pos, struct msgs *m)
{
	for (size_t k = 0; k < nxevents; k++) {
		const struct xevent *e = &xevents[k];
		if (pos < e->start_pos || pos >= e->end_pos)
			continue;
		int sa = xevent_side(w, e->a, e->va_old, e->va_new, m);
		int sb = e->b == e->a ? sa : xevent_side(w, e->b, e->vb_old, e->vb_new, m);
		if (sa < 0 || sb < 0 || sa != sb)
			say(m, "exchange: %s %s, %s %s: not all old or all new (exchange %zu, cut "
			    "between %" PRIu64 " and %" PRIu64 ")", w->f[e->a].name,
			    sa < 0 ? "mixed" : sa ? "new" : "old", w->f[e->b].name,
			    sb < 0 ? "mixed" : sb ? "new" : "old", k, e->start_pos, e->end_pos);
	}
}

/* fsck -n on img: 0 clean, else say the first findings */
static void run_fsck(const char *img, bool mounted_ok, struct msgs *m)
{
	char out[4300];
	snprintf(out, sizeof(out), "%s.fsck", img);
	fflush(stdout);
	int save = dup(1);
	int fd = open(out, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	if (save < 0 || fd < 0) {
		say(m, "fsck: cannot redirect its output: %s", strerror(errno));
		return;
	}
	dup2(fd, 1);
	close(fd);
	char a0[] = "fsck", a1[] = "-n";
	char *img_arg = strdup(img);
	char *argv[] = { a0, a1, img_arg, NULL };
	int rc = rlfs_fsck_main(3, argv);
	free(img_arg);
	fflush(stdout);
	dup2(save, 1);
	close(save);
	if (rc == 0)
		return;
	FILE *fp = fopen(out, "r");
	char line[512];
	int shown = 0, orphans = 0;
	while (fp && shown < 3 && fgets(line, sizeof(line), fp)) {
		line[strcspn(line, "\n")] = 0;
		/* a mount that failed left the unclean flag: not news */
		if (!mounted_ok && strstr(line, "not cleanly unmounted"))
			continue;
		/* findings only, not the summary lines that name the image */
		if (strstr(line, ": ") == NULL || strncmp(line, img, strlen(img)) == 0)
			continue;
		/* an inode left allocated with nlink 0 and on no unlinked
		 * list (the mount frees listed ones): a finding of its own
		 * kind, a failure like any other */
		if (strstr(line, "unlinked (nlink 0) but still allocated (orphan)") &&
		    !strstr(line, "unreachable")) {
			say(m, "orphan: exit %d: %s", rc, line);
			orphans++;
			continue;
		}
		say(m, "fsck: exit %d: %s", rc, line);
		shown++;
	}
	if (!shown && !orphans)
		say(m, "fsck: exit %d", rc);
	if (fp)
		fclose(fp);
}

/* What check_image saw of each model file (w->f[i]) when digest_slot is
 * 0 or 1: present, size, crc32c of the bytes; for the fsck-replay check
 * (both recoveries of one crash image must give the same files). */
struct fdigest {
	bool present;
	uint64_t size;
	uint32_t crc;
};
static struct fdigest digests[2][MAX_FILES];
static int digest_slot = -1;

static void take_digests(struct wl *w, struct fdigest *d)
{
	for (int i = 0; i < w->nf; i++) {
		const struct fmodel *f = &w->f[i];
		struct stat st;
		memset(&d[i], 0, sizeof(d[i]));
		if (rlfs_lookup(w->mp, f->dir_ino, f->name, &st) != 0)
			continue;
		d[i].present = true;
		d[i].size = (uint64_t)st.st_size;
		uint64_t n = RLFS_MIN((uint64_t)st.st_size, f->max_bytes + CHUNK_BYTES);
		ssize_t got = rlfs_read(w->mp, (uint64_t)st.st_ino, w->iobuf, (size_t)n, 0);
		d[i].crc = got < 0 ? 0 : rlfs_crc32c(w->iobuf, (size_t)got);
		rlfs_forget(w->mp, (uint64_t)st.st_ino, 1);
	}
}

/* Mount, verify, unmount and fsck img; the findings go to msgfd as "M"
 * lines.  Returns how many. */
static unsigned check_image(struct wl *w, const char *img, uint64_t pos, int msgfd)
{
	struct msgs m = { .fd = msgfd };
	struct rlfs_mount *mp;
	int err = rlfs_mount_open(img, RLFS_MOUNT_NOLOCK, &mp);
	if (digest_slot >= 0)
		memset(digests[digest_slot], 0, sizeof(digests[digest_slot]));
	if (err) {
		say(&m, "mount: %s", strerror(-err));
	} else {
		w->mp = mp;
		for (int i = 0; i < w->nf; i++)
			check_file(w, &w->f[i], pos, &m);
		check_dirs(w, pos, &m);
		check_meta(w, pos, &m);
		check_exchanges(w, pos, &m);
		if (digest_slot >= 0)
			take_digests(w, digests[digest_slot]);
		err = rlfs_mount_close(mp);
		if (err)
			say(&m, "unmount: %s", strerror(-err));
	}
	run_fsck(img, err == 0, &m);
	return m.n;
}

/*
 * Replay through fsck rather than mount: `fsck` (repair) on img, the raw
 * crash image (as built, nothing mounted it), must exit 0 or 1 (it
 * replays the log, finishes intents through a mount, fixes the unclean
 * flag); then the image is checked as check_image does (mount, the
 * model, fsck -n clean), and every model file must be the same as after
 * the mount's recovery of the same crash image (digests[0], taken by the
 * check_image just before).  Returns the findings.
 */
static unsigned check_fsck_replay(struct wl *w, const char *img, uint64_t pos, int msgfd)
{
	struct msgs m = { .fd = msgfd };
	char out[4300];
	snprintf(out, sizeof(out), "%s.repair", img);
	snprintf(say_suffix, sizeof(say_suffix), " [fsck replay]");
	fflush(stdout);
	int save = dup(1);
	int fd = open(out, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	if (save < 0 || fd < 0) {
		say(&m, "fsck: cannot redirect its output: %s", strerror(errno));
		say_suffix[0] = 0;
		return m.n;
	}
	dup2(fd, 1);
	close(fd);
	char a0[] = "fsck";
	char *img_arg = strdup(img);
	char *argv[] = { a0, img_arg, NULL };
	int rc = rlfs_fsck_main(2, argv);
	free(img_arg);
	fflush(stdout);
	dup2(save, 1);
	close(save);
	if (rc != 0 && rc != 1) {
		FILE *fp = fopen(out, "r");
		char line[512];
		int shown = 0;
		while (fp && shown < 3 && fgets(line, sizeof(line), fp)) {
			line[strcspn(line, "\n")] = 0;
			say(&m, "fsck: repair (replay) exit %d: %s", rc, line);
			shown++;
		}
		if (!shown)
			say(&m, "fsck: repair (replay) exit %d", rc);
		if (fp)
			fclose(fp);
	}
	unlink(out);
	digest_slot = 1;
	m.n += check_image(w, img, pos, msgfd);
	digest_slot = -1;
	for (int i = 0; i < w->nf; i++) {
		const struct fdigest *a = &digests[0][i], *b = &digests[1][i];
		if (a->present != b->present || a->size != b->size || a->crc != b->crc)
			say(&m, "fsck: replay disagrees with mount: %s: %s, %" PRIu64 " bytes, crc "
			    "0x%08x after mount; %s, %" PRIu64 " bytes, crc 0x%08x after fsck",
			    w->f[i].name, a->present ? "present" : "absent", a->size, a->crc,
			    b->present ? "present" : "absent", b->size, b->crc);
	}
	say_suffix[0] = 0;
	return m.n;
}

/* ---------------------------------------------------------------- */
/* --mode recovery: crashes during log recovery                       */

/* Most recovery cuts checked per crash image (spread over its list). */
#define RECOVERY_MAX_CUTS 48

/*
 * The recovery of crash image img (cut at pos of the workload) is itself
 * crash-safe: copy img into memory under a recording device, mount it
 * through that (rlfs_mount_open_dev: log replay, intents finished,
 * unlinked inodes freed, the superblock marked dirty) and record every
 * write and flush until the mount returns.  If it replayed nothing the
 * image is skipped (*nimg = 0).  Else the mounted result is checked as
 * check_image does, and then the recovery is cut at every flush, at its
 * end and at count random points between flushes (the even ones at the
 * flush, with a random subset of the writes since the previous one kept
 * and some sectors torn; the odd ones anywhere between, writes kept in
 * order or a random subset), each cut image
 * mounted (the second recovery), verified against the workload's model
 * at pos (what was fsync'd before the first crash is still there) and
 * fsck'd (check_image).  *nimg: recovery cut images checked, *nbad: those
 * with findings.  Returns the findings (written to msgfd).
 */
static unsigned check_recovery(struct wl *w, const char *img, uint64_t pos, uint64_t seed,
			       unsigned count, int msgfd, uint64_t *nimg, uint64_t *nbad)
{
	struct msgs m = { .fd = msgfd };
	struct rlfs_dev *fdev = NULL, *mem = NULL, *cdev = NULL;
	struct rlfs_crash_rec *rec = NULL;
	*nimg = *nbad = 0;
	int err = rlfs_dev_open(img, 0, 0, &fdev);
	if (!err)
		err = rlfs_dev_open_mem(fdev->size_bytes, &mem);
	uint8_t *buf = xrealloc(NULL, 1u << 20);
	for (uint64_t off = 0; !err && off < fdev->size_bytes; off += 1u << 20) {
		size_t n = (size_t)RLFS_MIN(1u << 20, fdev->size_bytes - off);
		err = rlfs_dev_pread(fdev, buf, n, off);
		if (!err)
			err = rlfs_dev_pwrite(mem, buf, n, off);
	}
	free(buf);
	if (fdev)
		rlfs_dev_close(fdev);
	if (!err)
		err = rlfs_crash_rec_new(mem, &rec);
	if (!err)
		err = rlfs_crash_dev_open(rec, mem, &cdev);
	if (err) {
		say(&m, "build: recording the recovery of %s: %s", img, strerror(-err));
		if (mem && !cdev)
			rlfs_dev_close(mem);
		rlfs_crash_rec_free(rec);
		return m.n;
	}
	struct rlfs_mount *mp;
	snprintf(say_suffix, sizeof(say_suffix), " [first recovery]");
	err = rlfs_mount_open_dev(cdev, img, RLFS_MOUNT_NOLOCK, &mp);
	if (err) {
		/* as check_image would report it */
		say(&m, "mount: %s", strerror(-err));
		say_suffix[0] = 0;
		rlfs_crash_rec_free(rec);
		return m.n;
	}
	uint64_t end = rlfs_crash_rec_pos(rec);
	struct rlfs_log_stats ls;
	rlfs_log_get_stats(mp, &ls);
	if (!ls.replayed_ckpts) {
		say_suffix[0] = 0;
		err = rlfs_mount_close(mp);
		rlfs_crash_rec_free(rec);
		if (err)
			say(&m, "unmount: %s", strerror(-err));
		return m.n;
	}
	w->mp = mp;
	for (int i = 0; i < w->nf; i++)
		check_file(w, &w->f[i], pos, &m);
	check_dirs(w, pos, &m);
	check_meta(w, pos, &m);
	check_exchanges(w, pos, &m);
	err = rlfs_mount_close(mp); /* its writes come after end: not cut */
	if (err)
		say(&m, "unmount: %s", strerror(-err));
	if (getenv("RLFS_CRASH_DUMP") && w->o->verbose)
		for (uint64_t i = 0; i < end; i++) {
			struct rlfs_crash_event ev;
			rlfs_crash_rec_event(rec, i, &ev);
			printf("recovery event %" PRIu64 ": %s %" PRIu64 " +%" PRIu64 "\n", i,
			       ev.kind == RLFS_CRASH_FLUSH ? "flush" : "write", ev.off_bytes,
			       ev.len_bytes);
		}
	/* the cuts of the recovery: every flush, the end, random between */
	struct rlfs_crash_cut *cuts = NULL;
	size_t ncuts = 0;
	uint64_t a = 0, rs = mix64(seed ^ 0x5EC0FE5ull);
	for (uint64_t i = 0; i <= end; i++) {
		struct rlfs_crash_event ev = { .kind = RLFS_CRASH_FLUSH };
		if (i < end)
			rlfs_crash_rec_event(rec, i, &ev);
		if (ev.kind != RLFS_CRASH_FLUSH)
			continue;
		uint64_t b = i; /* (a, b]: writes after the flush at a */
		for (unsigned j = 0; b > a && j < count; j++) {
			cuts = xrealloc(cuts, (ncuts + 1) * sizeof(*cuts));
			rs = mix64(rs);
			/* even j: the whole window, a random subset of it
			 * (what reordering exposes); odd j: a random prefix */
			cuts[ncuts] = (struct rlfs_crash_cut){ .pos = j % 2 == 0 ? b :
								      a + 1 + rs % (b - a),
							       .seed = mix64(rs ^ ncuts),
							       .keep_all = j % 2 && rs % 4 == 0,
							       .torn_pct = 25 };
			ncuts++;
		}
		cuts = xrealloc(cuts, (ncuts + 1) * sizeof(*cuts));
		cuts[ncuts++] = (struct rlfs_crash_cut){ .pos = i < end ? i + 1 : end,
							 .keep_all = true };
		a = i + 1;
	}
	size_t stride = ncuts > RECOVERY_MAX_CUTS ?
			(ncuts + RECOVERY_MAX_CUTS - 1) / RECOVERY_MAX_CUTS : 1;
	char img2[4200];
	snprintf(img2, sizeof(img2), "%s/recovery-crash.img", tmpdir);
	for (size_t k = 0; k < ncuts; k += stride) {
		const struct rlfs_crash_cut *c = &cuts[k];
		int fd = open(img2, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
		struct rlfs_crash_stats cs = { 0 };
		err = fd < 0 ? -errno : rlfs_crash_rec_build(rec, c, fd, &cs);
		if (fd >= 0)
			close(fd);
		snprintf(say_suffix, sizeof(say_suffix),
			 " [recovery cut %zu of %zu at %" PRIu64 "/%" PRIu64 "%s: window %" PRIu64
			 " (kept %" PRIu64 ", lost %" PRIu64 ", torn %" PRIu64 ")]", k, ncuts, c->pos,
			 end, c->keep_all ? " keep-all" : "", cs.window_writes, cs.kept, cs.lost,
			 cs.torn);
		if (err) {
			say(&m, "build: %s", strerror(-err));
			continue;
		}
		unsigned nm = check_image(w, img2, pos, msgfd);
		if (nm && w->o->keep) {
			/* the recovery-crash image as built, before the check */
			char keep[4300];
			snprintf(keep, sizeof(keep), "%s/recovery-crash-%zu.img", w->o->dir, k);
			int kfd = open(keep, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
			if (kfd >= 0 && rlfs_crash_rec_build(rec, c, kfd, NULL) == 0)
				say(&m, "recovery image kept: %s (as built, before the check)", keep);
			if (kfd >= 0)
				close(kfd);
		}
		if (w->o->verbose)
			printf("%s image%s%s\n", nm ? "FAIL" : "ok  ", say_suffix,
			       nm ? "" : "");
		m.n += nm;
		(*nimg)++;
		*nbad += nm != 0;
	}
	say_suffix[0] = 0;
	unlink(img2);
	snprintf(img2, sizeof(img2), "%s/recovery-crash.img.fsck", tmpdir);
	unlink(img2);
	free(cuts);
	rlfs_crash_rec_free(rec);
	return m.n;
}

/* ---------------------------------------------------------------- */
/* main                                                               */

static const char *const kind_names[] = { "mount", "unmount", "fsck", "orphan", "missing",
					  "size", "readerr", "zeros", "stale", "foreign",
					  "garbage", "name", "xattr", "attr", "nlink", "crashed",
					  "torn" };
#define NKINDS (sizeof(kind_names) / sizeof(kind_names[0]))

struct totals {
	uint64_t images, failed;
	/* --mode recovery: crash images whose log needed replay, and the
	 * images of crashes during their recovery checked / failed */
	uint64_t replayed, rec_images, rec_failed;
	uint64_t fsck_replays;      /* images also replayed by fsck (check_fsck_replay) */
	uint64_t by_kind[NKINDS];
	uint64_t by_cut_checked[3], by_cut_failed[3];
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: rlfs-crashtest [--workload fsx|clone|enospc|dir|falloc|meta|unlinked|remount|cowwide|dedupe|shift|exchange|all]\n"
		"                      [--seed S] [--ops N]\n"
		"                      [--count N] [--images M]\n"
		"                      [--mode all|synced|flush|random|recovery|repair]\n"
		"                      [--damage KIND]\n"
		"                      [--cut K] [--dir DIR] [--keep] [--lying-flush] [--no-rmap]\n"
		"                      [--log-bytes B]\n"
		"                      [--fsck-every N]\n"
		"                      [-v]\n"
		"Record a workload on a crash-recording device, then mount, verify and fsck the\n"
		"image after a power cut at every flush point and at random cuts between them.\n"
		"  --workload W  which workload (default fsx; all: each in turn)\n"
		"  --seed S      workload and cut seed (default 1)\n"
		"  --ops N       workload operations (default per workload)\n"
		"  --count N     random cuts per flush interval (default 2)\n"
		"  --images M    check at most M images, spread over the list (default 0: all)\n"
		"  --mode M      synced: only right after fsync/sync returned; flush: the\n"
		"                other flush points; random: the random cuts; all (default);\n"
		"                recovery: for each image (of every kind) whose log needs\n"
		"                replay, record the recovery mount's writes and check a\n"
		"                second recovery after a cut at each of its flushes and\n"
		"                at --count random points between (RLFS_LOG_FORCE_INTENTS=1:\n"
		"                intents and dones in separate checkpoints)\n"
		"                repair: crashes during fsck's own repair: damaged images\n"
		"                (--damage) repaired on a recording device, the repair cut\n"
		"                after every prefix of its writes (--images caps them) and\n"
		"                --count times per flush with a random subset kept; a second\n"
		"                fsck must end clean with every file intact (--workload is\n"
		"                not used)\n"
		"  --damage K    --mode repair: the damage kind, or several separated by commas\n"
		"                (default all: each in turn)\n"
		"  --cut K       only image K of the list (as printed for a failure)\n"
		"  --dir DIR     where crash images are built (default /dev/shm or /tmp)\n"
		"  --keep        keep failed images (DIR/crash-W-S-K.img)\n"
		"  --lying-flush every cut as if the device had not done its last flush\n"
		"                (the writes since the one before lost at random): a check\n"
		"                that the checker sees lost fsync'd data\n"
		"  --no-rmap     make the images without the rmap btree (mkfs -m rmapbt=0)\n"
		"  --log-bytes B make the images with a log of B bytes (mkfs -l size=B;\n"
		"                default: mkfs's size for the image)\n"
		"  --fsck-every N  every Nth image (default 4; 0: none) is also replayed by\n"
		"                `fsck` (repair) from the raw crash image, then checked as\n"
		"                after a mount, and its files compared with the mount's\n"
		"  -v            one line per image; library and fsck messages shown\n"
		"Exit: 0 no failure, 1 some crash image failed, 2 usage or workload error.\n");
}

static int parse_u64(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 0);
	if (errno || end == s || *end || *s == '-')
		return -1;
	*v = x;
	return 0;
}

/* Count and print the outcome of image k; msgs holds its finding lines. */
static void report_image(struct totals *t, const struct wdef *d, const struct opts *o,
			 unsigned ops, size_t k, const struct cutdef *cd, uint64_t npos,
			 const struct rlfs_crash_stats *cs, const char *msgs)
{
	char desc[300];
	snprintf(desc, sizeof(desc), "%s cut at %" PRIu64 "/%" PRIu64 "%s: %" PRIu64
		 " durable writes, window %" PRIu64 " (kept %" PRIu64 ", lost %" PRIu64
		 ", torn %" PRIu64 ")", cut_kind_name[cd->kind], cd->cut.pos, npos,
		 cd->cut.keep_all ? " keep-all" : "", cs->durable_writes, cs->window_writes,
		 cs->kept, cs->lost, cs->torn);
	t->images++;
	t->by_cut_checked[cd->kind]++;
	if (!msgs[0]) {
		if (o->verbose)
			printf("ok   image %zu: %s\n", k, desc);
		return;
	}
	t->failed++;
	t->by_cut_failed[cd->kind]++;
	bool seen[NKINDS] = { false };
	printf("FAIL --workload %s --seed %" PRIu64 " --ops %u --count %u --cut %zu: %s\n",
	       d->name, o->seed, ops, o->count, k, desc);
	for (const char *line = msgs, *nl; *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			nl = line + strlen(line) - 1;
		printf("    %.*s\n", (int)(nl - line), line);
		for (size_t i = 0; i < NKINDS; i++) {
			size_t l = strlen(kind_names[i]);
			if (!strncmp(line, kind_names[i], l) && line[l] == ':')
				seen[i] = true;
		}
		if (!nl[1])
			break;
	}
	for (size_t i = 0; i < NKINDS; i++)
		t->by_kind[i] += seen[i];
	fflush(stdout);
}

static int run_workload(const struct opts *o, const struct wdef *d, struct totals *t)
{
	struct wl w = { .o = o };
	struct opts oo = *o;
	if (!oo.ops)
		oo.ops = d->default_ops;
	w.o = &oo;
	rng_state = mix64(o->seed ^ 0x1234567ull);
	w.nf = d->nfiles;
	uint64_t maxb = 0;
	for (int i = 0; i < w.nf; i++) {
		struct fmodel *f = &w.f[i];
		f->fid = i + 1;
		snprintf(f->name, sizeof(f->name), "f%d", i + 1);
		f->max_bytes = d->file_bytes;
		f->whole_from = SIZE_MAX;
		f->cur = calloc(1, f->max_bytes);
		if (!f->cur)
			wl_fail("out of memory");
		maxb = RLFS_MAX(maxb, f->max_bytes);
	}
	w.iobuf = xrealloc(NULL, maxb + CHUNK_BYTES);
	mkfs_and_mount(&w, d);
	for (int i = 0; i < w.nf; i++)
		w.f[i].dir_ino = rlfs_root_ino(w.mp);
	uint64_t pos0 = wl_pos(&w);
	d->run(&w);
	uint64_t npos = wl_pos(&w);
	uint64_t nflush = 0;
	for (uint64_t i = 0; i < npos; i++) {
		struct rlfs_crash_event ev;
		rlfs_crash_rec_event(w.rec, i, &ev);
		nflush += ev.kind == RLFS_CRASH_FLUSH;
	}
	printf("workload %s seed %" PRIu64 ": %" PRIu64 " ops (%" PRIu64 " hit ENOSPC), %" PRIu64
	       " writes (%" PRIu64 " KiB), %" PRIu64 " flushes, %zu sync points; log feature %s\n",
	       d->name, o->seed, w.nops, w.nenospc, npos - pos0 - nflush,
	       rlfs_crash_rec_bytes(w.rec) >> 10, nflush, w.nsynced, w.log_feature ? "on" : "off");
	if (w.ncowgc)
		printf("workload %s: %" PRIu64 " staged CoW block(s) given back by the GC\n", d->name,
		       w.ncowgc);
	if (w.mp->log) {
		struct rlfs_log_stats ls;
		rlfs_log_get_stats(w.mp, &ls);
		printf("workload log: %u blocks, %" PRIu64 " intents logged, %" PRIu64
		       " relogged (this mount)\n", w.mp->log->size_blocks, ls.intents_logged,
		       ls.intents_relogged);
	}
	if (w.remounts)
		printf("workload remount: %" PRIu64 " clean unmounts and mounts; the log (%u blocks) "
		       "is at cycle %u\n", w.nremounts, w.mp->log ? w.mp->log->size_blocks : 0,
		       w.mp->log ? w.mp->log->head_cycle : 0);
	if (w.mm) {
		struct mmodel *mm = w.mm;
		printf("workload meta ops: %" PRIu64 " xattr sets (%" PRIu64 " on directories, %"
		       PRIu64 " on a symlink), %" PRIu64 " ACLs, %" PRIu64
		       " setuid/setgid killing writes, %" PRIu64 " symlinks, %" PRIu64 " device "
		       "nodes/fifos, %" PRIu64 " hard links, %" PRIu64 " renames (%" PRIu64
		       " NOREPLACE, %" PRIu64 " whiteouts), %" PRIu64 " exchanges, %" PRIu64
		       " O_TMPFILEs (%" PRIu64 " linked), %" PRIu64 " open-unlinked files, %" PRIu64
		       " big-directory links/unlinks (up to %" PRIu64 " entries in %" PRIu64
		       " blocks), %" PRIu64
		       " cancelled clones (%" PRIu64 " part-way)\n", mm->nxattr, mm->nxattr_dir,
		       mm->nxattr_sym, mm->nacl, mm->nsuid,
		       mm->nsym, mm->nnode, mm->nlinks, mm->nren, mm->nnorep, mm->nwhite, mm->nexch,
		       mm->ntmp, mm->ntmplinked, mm->nunl, mm->nbig, mm->big_max, mm->big_blocks, mm->ncancel,
		       mm->ncancel_part);
	}
	if (getenv("RLFS_CRASH_DUMP")) {
		/* debugging: the record, one event a line */
		for (uint64_t i = 0; i < npos; i++) {
			struct rlfs_crash_event ev;
			rlfs_crash_rec_event(w.rec, i, &ev);
			if (ev.kind == RLFS_CRASH_FLUSH)
				printf("event %" PRIu64 ": flush\n", i);
			else
				printf("event %" PRIu64 ": write %" PRIu64 " +%" PRIu64 "\n", i,
				       ev.off_bytes, ev.len_bytes);
		}
	}
	fflush(stdout);
	/* the live mount stays open until the end: unmounting it now would
	 * add its writes to the record (harmless, but the record is done) */
	struct rlfs_mount *live = w.mp;

	size_t ncuts;
	struct cutdef *cuts = make_cuts(&w, o->seed, o->count, &ncuts);
	int want = -1;
	if (strcmp(o->mode, "synced") == 0)
		want = CUT_SYNCED;
	else if (strcmp(o->mode, "flush") == 0)
		want = CUT_FLUSH;
	else if (strcmp(o->mode, "random") == 0)
		want = CUT_RANDOM;
	bool recovery = strcmp(o->mode, "recovery") == 0; /* every kind, then check_recovery */
	size_t nsel = 0;
	for (size_t k = 0; k < ncuts; k++)
		nsel += want < 0 || (int)cuts[k].kind == want;
	size_t stride = o->images && nsel > o->images ? (nsel + o->images - 1) / o->images : 1;
	char img[4200];
	snprintf(img, sizeof(img), "%s/crash.img", tmpdir);
	/* the images to check, by their number in the list */
	size_t *todo = xrealloc(NULL, (ncuts + 1) * sizeof(*todo));
	size_t ntodo = 0, sel = 0;
	for (size_t k = 0; k < ncuts; k++) {
		if (o->cut >= 0) {
			if ((size_t)o->cut == k)
				todo[ntodo++] = k;
			continue;
		}
		if (want >= 0 && (int)cuts[k].kind != want)
			continue;
		if (sel++ % stride == 0)
			todo[ntodo++] = k;
	}
	if (o->cut >= 0 && !ntodo)
		printf("--cut %lld: no such image (the list has %zu)\n", o->cut, ncuts);
	/*
	 * One child process checks the images in turn (a fork per image costs
	 * more than the check): for each it writes "S i" (started), "X ..."
	 * (what the cut kept), "M finding" lines and "E i" (done) to a pipe.
	 * A child that dies (signal, sanitizer) leaves an image started and
	 * not done: it is reported as crashed and a new child goes on with
	 * the next image.
	 */
	uint64_t images0 = t->images, failed0 = t->failed;
	size_t next = 0;
	while (next < ntodo) {
		int pfd[2];
		if (pipe(pfd) < 0)
			wl_fail("pipe: %s", strerror(errno));
		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		if (pid < 0)
			wl_fail("fork: %s", strerror(errno));
		if (pid == 0) {
			close(pfd[0]);
			if (!o->verbose) {
				int nul = open("/dev/null", O_WRONLY);
				if (nul >= 0) {
					dup2(nul, 2);
					dup2(nul, 1);
					close(nul);
				}
			}
			for (size_t i = next; i < ntodo; i++) {
				struct cutdef cdl = cuts[todo[i]];
				const struct cutdef *cd = &cdl;
				if (o->lying_flush) {
					cdl.cut.lost_flushes = 1;
					cdl.cut.keep_all = false;
				}
				dprintf(pfd[1], "S %zu\n", i);
				int fd = open(img, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
				struct rlfs_crash_stats cs = { 0 };
				int err = fd < 0 ? -errno : rlfs_crash_rec_build(w.rec, &cd->cut, fd, &cs);
				if (fd >= 0)
					close(fd);
				if (err) {
					dprintf(pfd[1], "M build: %s\n", strerror(-err));
					_exit(3);
				}
				dprintf(pfd[1], "X %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n",
					cs.durable_writes, cs.window_writes, cs.kept, cs.lost, cs.torn);
				unsigned nm;
				if (recovery) {
					uint64_t ni, nb;
					alarm(600);
					nm = check_recovery(&w, img, cd->cut.pos, cd->cut.seed, o->count,
							    pfd[1], &ni, &nb);
					dprintf(pfd[1], "R %" PRIu64 " %" PRIu64 "\n", ni, nb);
				} else {
					alarm(120);
					bool fr = o->fsck_every && todo[i] % o->fsck_every == 0 &&
						  !o->lying_flush;
					digest_slot = fr ? 0 : -1;
					nm = check_image(&w, img, cd->cut.pos, pfd[1]);
					digest_slot = -1;
					if (fr) {
						/* the raw crash image again, for fsck */
						fd = open(img, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC,
							  0600);
						err = fd < 0 ? -errno :
							  rlfs_crash_rec_build(w.rec, &cd->cut, fd, NULL);
						if (fd >= 0)
							close(fd);
						if (err) {
							dprintf(pfd[1], "M build: %s\n", strerror(-err));
							_exit(3);
						}
						nm += check_fsck_replay(&w, img, cd->cut.pos, pfd[1]);
						dprintf(pfd[1], "F\n");
					}
				}
				if (nm && o->keep) {
					char keep[4300];
					snprintf(keep, sizeof(keep), "%s/crash-%s-%" PRIu64 "-%zu.img",
						 o->dir, d->name, o->seed, todo[i]);
					/* the crash image as built, before the check's
					 * mount and unmount changed it */
					int kfd = open(keep, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
					if (kfd >= 0 && rlfs_crash_rec_build(w.rec, &cd->cut, kfd, NULL) == 0)
						dprintf(pfd[1], "M image kept: %s (as built, before the check)\n",
							keep);
					if (kfd >= 0)
						close(kfd);
				}
				dprintf(pfd[1], "E %zu %u\n", i, nm);
			}
			_exit(0);
		}
		close(pfd[1]);
		FILE *in = fdopen(pfd[0], "r");
		if (!in)
			wl_fail("fdopen: %s", strerror(errno));
		char line[1024];
		char msgs[8192];
		size_t mlen = 0;
		bool open_img = false;
		size_t cur = next;
		struct rlfs_crash_stats cs = { 0 };
		while (fgets(line, sizeof(line), in)) {
			if (line[0] == 'S') {
				cur = (size_t)strtoull(line + 2, NULL, 10);
				open_img = true;
				mlen = 0;
				msgs[0] = 0;
				memset(&cs, 0, sizeof(cs));
			} else if (line[0] == 'F') {
				t->fsck_replays++;
			} else if (line[0] == 'R') {
				uint64_t ni = 0, nb = 0;
				sscanf(line + 2, "%" SCNu64 " %" SCNu64, &ni, &nb);
				t->replayed += ni > 0;
				t->rec_images += ni;
				t->rec_failed += nb;
			} else if (line[0] == 'X') {
				sscanf(line + 2, "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64,
				       &cs.durable_writes, &cs.window_writes, &cs.kept, &cs.lost, &cs.torn);
			} else if (line[0] == 'M') {
				size_t l = strlen(line + 2);
				if (mlen + l < sizeof(msgs)) {
					memcpy(msgs + mlen, line + 2, l + 1);
					mlen += l;
				}
			} else if (line[0] == 'E') {
				report_image(t, d, o, oo.ops, todo[cur], &cuts[todo[cur]], npos, &cs, msgs);
				open_img = false;
				next = cur + 1;
			}
		}
		fclose(in);
		int status;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (open_img) {
			size_t l = strlen(msgs);
			snprintf(msgs + l, sizeof(msgs) - l, "crashed: the check died (%s %d)\n",
				 WIFSIGNALED(status) ? "signal" : "exit",
				 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
			report_image(t, d, o, oo.ops, todo[cur], &cuts[todo[cur]], npos, &cs, msgs);
			next = cur + 1;
		} else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			wl_fail("checking child failed outside an image (status %d)", status);
		}
	}
	free(todo);
	printf("workload %s seed %" PRIu64 ": checked %" PRIu64 " crash images, %" PRIu64 " failed\n",
	       d->name, o->seed, t->images - images0, t->failed - failed0);
	unlink(img);
	snprintf(img, sizeof(img), "%s/crash.img.fsck", tmpdir);
	unlink(img);
	free(cuts);
	int err = rlfs_mount_close(live);
	if (err)
		wl_fail("unmount of the recorded mount: %s", strerror(-err));
	rlfs_dev_close(w.mem);
	rlfs_crash_rec_free(w.rec);
	for (int i = 0; i < w.nf; i++) {
		for (size_t v = 0; v < w.f[i].nv; v++)
			free(w.f[i].v[v].chunks);
		free(w.f[i].v);
		free(w.f[i].sy);
		free(w.f[i].cur);
	}
	chunk_free_all();
	if (w.dm) {
		free(w.dm->v);
		free(w.dm->mk);
		free(w.dm->ent);
		free(w.dm);
	}
	mm_free(w.mm);
	free(w.synced);
	free(w.iobuf);
	return w.log_feature;
}

/* --mode repair (crash_repair.c): crashes during fsck's own repair */
static int run_repair_mode(const struct opts *o)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/rlfs-crash.XXXXXX", o->dir);
	if (!mkdtemp(tmpdir)) {
		fprintf(stderr, "rlfs-crashtest: mkdtemp in %s: %s\n", o->dir, strerror(errno));
		return 2;
	}
	struct crash_repair_opts ro = { .damage = o->damage, .seed = o->seed, .count = o->count,
					.images = o->images, .cut = o->cut, .tmpdir = tmpdir,
					.dir = o->dir, .keep = o->keep, .verbose = o->verbose,
					.rmapbt = mkfs_rmapbt, .log_bytes = mkfs_log_bytes };
	struct crash_repair_totals t;
	time_t t0 = time(NULL);
	int rc = crash_repair_run(&ro, &t);
	clean_tmpdir();
	if (rc)
		return rc;
	printf("checked %" PRIu64 " crash images, %" PRIu64 " failed (%lds)\n", t.images, t.failed,
	       (long)(time(NULL) - t0));
	printf("RESULT workload=repair mode=repair damage=%s images=%" PRIu64 " failed=%" PRIu64
	       " log=1 kinds=%" PRIu64 " repair_writes=%" PRIu64 " repair_flushes=%" PRIu64 "\n",
	       o->damage, t.images, t.failed, t.kinds, t.writes, t.flushes);
	fflush(stdout);
	return t.failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "workload", required_argument, NULL, 'w' },
		{ "seed", required_argument, NULL, 's' },
		{ "ops", required_argument, NULL, 'o' },
		{ "count", required_argument, NULL, 'c' },
		{ "images", required_argument, NULL, 'i' },
		{ "mode", required_argument, NULL, 'm' },
		{ "cut", required_argument, NULL, 'k' },
		{ "dir", required_argument, NULL, 'd' },
		{ "keep", no_argument, NULL, 'K' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "lying-flush", no_argument, NULL, 'L' },
		{ "no-rmap", no_argument, NULL, 'R' },
		{ "log-bytes", required_argument, NULL, 'l' },
		{ "fsck-every", required_argument, NULL, 'f' },
		{ "damage", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .workload = "fsx", .seed = 1, .count = 2, .mode = "all", .cut = -1,
			  .fsck_every = 4, .damage = "all" };
	o.dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	int c;
	uint64_t v;
	while ((c = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
		switch (c) {
		case 'w': o.workload = optarg; break;
		case 'm': o.mode = optarg; break;
		case 'D': o.damage = optarg; break;
		case 'd': o.dir = optarg; break;
		case 'K': o.keep = true; break;
		case 'L': o.lying_flush = true; break;
		case 'R': mkfs_rmapbt = -1; break;
		case 'l':
			if (parse_u64(optarg, &v) || v == 0) {
				fprintf(stderr, "rlfs-crashtest: bad number for --log-bytes: %s\n",
					optarg);
				return 2;
			}
			mkfs_log_bytes = v;
			break;
		case 'v': o.verbose = true; break;
		case 'h': usage(stdout); return 0;
		case 's': case 'o': case 'c': case 'i': case 'k': case 'f':
			if (parse_u64(optarg, &v) || v > (c == 's' ? UINT64_MAX : 100000000u)) {
				fprintf(stderr, "rlfs-crashtest: bad number for --%s: %s\n",
					c == 's' ? "seed" : c == 'o' ? "ops" : c == 'c' ? "count" :
					c == 'i' ? "images" : c == 'f' ? "fsck-every" : "cut", optarg);
				return 2;
			}
			if (c == 's') o.seed = v;
			else if (c == 'o') o.ops = (unsigned)v;
			else if (c == 'c') o.count = (unsigned)v;
			else if (c == 'i') o.images = (unsigned)v;
			else if (c == 'f') o.fsck_every = (unsigned)v;
			else o.cut = (long long)v;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (strcmp(o.mode, "all") && strcmp(o.mode, "synced") && strcmp(o.mode, "flush") &&
	    strcmp(o.mode, "random") && strcmp(o.mode, "recovery") && strcmp(o.mode, "repair")) {
		fprintf(stderr, "rlfs-crashtest: unknown --mode %s (all, synced, flush, random, "
			"recovery, repair)\n", o.mode);
		return 2;
	}
	if (!strcmp(o.mode, "repair"))
		return run_repair_mode(&o);
	if (!strcmp(o.mode, "recovery"))
		/* every intent in its own checkpoint (log.h force_intents), in
		 * the workload and in recovery: crash images with intents
		 * and no done, and recoveries that finish them one by one */
		setenv("RLFS_LOG_FORCE_INTENTS", "1", 1);
	const struct wdef *list[16];
	size_t nlist = 0;
	for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
		if (!strcmp(o.workload, "all") || !strcmp(o.workload, workloads[i].name))
			list[nlist++] = &workloads[i];
	if (!nlist) {
		fprintf(stderr, "rlfs-crashtest: unknown --workload %s (fsx, clone, enospc, dir, falloc, meta, unlinked, remount, cowwide, dedupe, shift, exchange, all)\n",
			o.workload);
		return 2;
	}
	snprintf(tmpdir, sizeof(tmpdir), "%s/rlfs-crash.XXXXXX", o.dir);
	if (!mkdtemp(tmpdir)) {
		fprintf(stderr, "rlfs-crashtest: mkdtemp in %s: %s\n", o.dir, strerror(errno));
		return 2;
	}
	struct totals t = { 0 };
	int log = 0;
	time_t t0 = time(NULL);
	for (size_t i = 0; i < nlist; i++)
		log |= run_workload(&o, list[i], &t);
	clean_tmpdir();
	printf("checked %" PRIu64 " crash images, %" PRIu64 " failed (%lds)\n", t.images, t.failed,
	       (long)(time(NULL) - t0));
	if (t.fsck_replays)
		printf("fsck replay: %" PRIu64 " of the images also replayed by `fsck` (repair) "
		       "from the raw crash image and checked against the mount's result\n",
		       t.fsck_replays);
	printf("by cut: ");
	for (int k = 0; k < 3; k++)
		printf("%s %" PRIu64 "/%" PRIu64 " failed%s", cut_kind_name[k], t.by_cut_failed[k],
		       t.by_cut_checked[k], k < 2 ? ", " : "\n");
	if (t.failed) {
		printf("damage (images): ");
		bool any = false;
		for (size_t i = 0; i < NKINDS; i++) {
			if (t.by_kind[i]) {
				printf("%s%s %" PRIu64, any ? ", " : "", kind_names[i], t.by_kind[i]);
				any = true;
			}
		}
		printf("\n");
	}
	if (!strcmp(o.mode, "recovery"))
		printf("recovery: %" PRIu64 " of the %" PRIu64 " crash images needed replay; "
		       "checked %" PRIu64 " images of crashes during their recovery, %" PRIu64
		       " failed\n", t.replayed, t.images, t.rec_images, t.rec_failed);
	printf("RESULT workload=%s mode=%s images=%" PRIu64 " failed=%" PRIu64 " log=%d",
	       o.workload, o.mode, t.images, t.failed, log);
	if (!strcmp(o.mode, "recovery"))
		printf(" replayed=%" PRIu64 " recovery_images=%" PRIu64 " recovery_failed=%" PRIu64,
		       t.replayed, t.rec_images, t.rec_failed);
	printf("\n");
	fflush(stdout);
	return t.failed ? 1 : 0;
}

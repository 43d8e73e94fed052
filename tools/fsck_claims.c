/*
 * fsck_claims.c: the claim store of `reflinkfs fsck` (issue 11 section 3:
 * cross-checks "for every AG, with memory bounded by one AG's records
 * (sort/merge, not a whole-fs bitmap)").
 *
 * Phases 1-3 learn who claims which blocks in whatever order the
 * filesystem's structures are walked (inode by inode, not AG by AG);
 * phases 5-6 judge the claims one AG at a time.  So records are appended
 * to the bucket of the AG they lie in, and each consumer loads one bucket,
 * sorts it, checks or rebuilds that AG, and frees it.  Model: the way
 * xfs_repair keeps its per-AG in-core trees, and SQLite's external sort
 * (vdbesort.c), which keeps records in memory up to a limit and writes
 * them past it to a temporary file as sorted "PMAs" it reads back.
 *
 * Layout.  A store holds records of one fixed size in nbuckets buckets.
 * A bucket is a list of spilled runs (offset and count in the spill file,
 * oldest first) followed by its in-memory records; its records in append
 * order are the runs' records in order, then the in-memory ones.
 *
 * Memory.  When an append would take the records held in memory (all
 * buckets) past cap_bytes, every bucket's in-memory records are written
 * to the end of the spill file as one run each (a run that continues the
 * bucket's last run in the file extends it) and freed.  So a store holds
 * at most cap_bytes of records plus 16 bytes a run; loading a bucket adds
 * that bucket's records (one AG's).  The spill file is an unlinked
 * temporary file in $TMPDIR (default /tmp): O_TMPFILE, or mkstemp and
 * unlink where the filesystem lacks O_TMPFILE; it goes away when closed
 * or when fsck dies.  It is made on the first spill only.
 *
 * Marks.  Phase 3 sometimes takes back the claims of the inode it is
 * checking (fsck_mark/fsck_rewind in fsck_int.h).  A mark bumps the
 * store's generation; the first append to a bucket after it saves the
 * bucket's count; a rewind cuts every bucket touched since back to its
 * saved count, trimming runs in the file if they were spilled meanwhile
 * (their bytes stay in the file, unused).  O(1) to mark, O(buckets) to
 * rewind; only the newest mark can be rewound to.
 *
 * Errors are sticky: after one, every append and load fails with it, and
 * fsck stops with exit 8 and fsck_claims_strerror's message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsck_claims.h"

int fsck_claims_init(struct fsck_claims *s, const char *name, size_t rec_bytes,
		     uint32_t nbuckets, size_t cap_bytes)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->name = name;
	s->rec_bytes = rec_bytes;
	s->nbuckets = nbuckets;
	s->cap_bytes = cap_bytes;
	s->b = calloc(nbuckets ? nbuckets : 1, sizeof(*s->b));
	if (!s->b) {
		s->err = -ENOMEM;
		s->err_op = "allocate";
		return -ENOMEM;
	}
	return 0;
}

void fsck_claims_destroy(struct fsck_claims *s)
{
	if (s->b) {             /* initialized: fd is -1 or ours */
		if (s->fd >= 0)
			close(s->fd);
		for (uint32_t i = 0; i < s->nbuckets; i++) {
			free(s->b[i].mem);
			free(s->b[i].runs);
		}
		free(s->b);
	}
	memset(s, 0, sizeof(*s));
	s->fd = -1;
}

static int fail(struct fsck_claims *s, const char *op, int err)
{
	if (!s->err) {
		s->err = err;
		s->err_op = op;
	}
	return s->err;
}

static const char *tmpdir(void)
{
	const char *d = getenv("TMPDIR");

	return d && *d ? d : "/tmp";
}

/* The spill file: unlinked, read-write.  0 or -errno. */
static int open_spill(struct fsck_claims *s)
{
	const char *dir = tmpdir();
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		char path[4096];

		if (snprintf(path, sizeof(path), "%s/rlfs-fsck-XXXXXX", dir) >= (int)sizeof(path))
			return -ENAMETOOLONG;
		fd = mkstemp(path);
		if (fd >= 0)
			unlink(path);
	}
	if (fd < 0)
		return -errno;
	s->fd = fd;
	s->file_end = 0;
	return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t w = pwrite(fd, p, len, off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		len -= (size_t)w;
		off += w;
	}
	return 0;
}

static int pread_all(int fd, void *buf, size_t len, off_t off)
{
	char *p = buf;

	while (len) {
		ssize_t r = pread(fd, p, len, off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;    /* the file is shorter than what we wrote */
		p += r;
		len -= (size_t)r;
		off += r;
	}
	return 0;
}

/* Write bucket b's in-memory records as a run at the file's end. */
static int spill_bucket(struct fsck_claims *s, struct fsck_claims_bucket *b)
{
	size_t bytes = b->nmem * s->rec_bytes;
	struct fsck_claims_run *last = b->nruns ? &b->runs[b->nruns - 1] : NULL;
	int err;

	if (!b->nmem)
		return 0;
	err = pwrite_all(s->fd, b->mem, bytes, s->file_end);
	if (err)
		return fail(s, "write", err);
	if (last && last->off + (off_t)(last->n * s->rec_bytes) == s->file_end) {
		last->n += b->nmem;
	} else {
		if (b->nruns == b->runs_cap) {
			size_t ncap = b->runs_cap ? 2 * b->runs_cap : 4;
			struct fsck_claims_run *nr = realloc(b->runs, ncap * sizeof(*nr));

			if (!nr)
				return fail(s, "allocate", -ENOMEM);
			b->runs = nr;
			b->runs_cap = ncap;
		}
		b->runs[b->nruns++] = (struct fsck_claims_run){ s->file_end, b->nmem };
	}
	s->file_end += (off_t)bytes;
	s->spilled_bytes += bytes;
	b->nspilled += b->nmem;
	s->mem_bytes -= bytes;
	b->nmem = 0;
	free(b->mem);
	b->mem = NULL;
	b->memcap = 0;
	return 0;
}

/* Every bucket's in-memory records to the spill file. */
static int spill_all(struct fsck_claims *s)
{
	int err;

	if (s->fd < 0) {
		err = open_spill(s);
		if (err)
			return fail(s, "create", err);
	}
	for (uint32_t i = 0; i < s->nbuckets; i++) {
		err = spill_bucket(s, &s->b[i]);
		if (err)
			return err;
	}
	return 0;
}

int fsck_claims_add(struct fsck_claims *s, uint32_t bucket, const void *rec)
{
	struct fsck_claims_bucket *b;

	if (s->err)
		return s->err;
	if (bucket >= s->nbuckets)
		return -EINVAL;
	if (s->mem_bytes && s->mem_bytes + s->rec_bytes > s->cap_bytes) {
		int err = spill_all(s);

		if (err)
			return err;
	}
	b = &s->b[bucket];
	if (b->mark_gen != s->gen) {
		b->mark_gen = s->gen;
		b->mark_n = b->nspilled + b->nmem;
	}
	if (b->nmem == b->memcap) {
		/* grow by half, at most up to the cap's worth of records */
		size_t ncap = b->memcap ? b->memcap + b->memcap / 2 + 1 : 16;
		size_t capn = s->cap_bytes / s->rec_bytes + 1;
		void *nm;

		if (ncap > capn && capn > b->nmem)
			ncap = capn;
		nm = realloc(b->mem, ncap * s->rec_bytes);
		if (!nm)
			return fail(s, "allocate", -ENOMEM);
		b->mem = nm;
		b->memcap = ncap;
	}
	memcpy((char *)b->mem + b->nmem * s->rec_bytes, rec, s->rec_bytes);
	b->nmem++;
	s->mem_bytes += s->rec_bytes;
	s->total++;
	return 0;
}

size_t fsck_claims_count(const struct fsck_claims *s, uint32_t bucket)
{
	if (bucket >= s->nbuckets)
		return 0;
	return s->b[bucket].nspilled + s->b[bucket].nmem;
}

int fsck_claims_load(struct fsck_claims *s, uint32_t bucket, void **recs, size_t *n)
{
	struct fsck_claims_bucket *b;
	size_t cnt, at = 0;
	char *out;

	*recs = NULL;
	*n = 0;
	if (s->err)
		return s->err;
	if (bucket >= s->nbuckets)
		return -EINVAL;
	b = &s->b[bucket];
	cnt = b->nspilled + b->nmem;
	if (!cnt)
		return 0;
	out = malloc(cnt * s->rec_bytes);
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < b->nruns; i++) {
		int err = pread_all(s->fd, out + at * s->rec_bytes, b->runs[i].n * s->rec_bytes,
				    b->runs[i].off);

		if (err) {
			free(out);
			return fail(s, "read", err);
		}
		at += b->runs[i].n;
	}
	if (b->nmem)
		memcpy(out + at * s->rec_bytes, b->mem, b->nmem * s->rec_bytes);
	*recs = out;
	*n = cnt;
	return 0;
}

/* Cut bucket b to its first keep records. */
static void truncate_bucket(struct fsck_claims *s, struct fsck_claims_bucket *b, size_t keep)
{
	size_t cnt = b->nspilled + b->nmem;

	if (keep >= cnt)
		return;
	s->total -= cnt - keep;
	if (keep >= b->nspilled) {
		size_t drop = b->nmem - (keep - b->nspilled);

		b->nmem -= drop;
		s->mem_bytes -= drop * s->rec_bytes;
		return;
	}
	s->mem_bytes -= b->nmem * s->rec_bytes;
	b->nmem = 0;
	while (b->nruns && b->nspilled - b->runs[b->nruns - 1].n >= keep) {
		b->nspilled -= b->runs[b->nruns - 1].n;
		b->nruns--;
	}
	if (b->nspilled > keep) {
		b->runs[b->nruns - 1].n -= b->nspilled - keep;
		b->nspilled = keep;
	}
}

void fsck_claims_clear(struct fsck_claims *s, uint32_t bucket)
{
	if (bucket < s->nbuckets)
		truncate_bucket(s, &s->b[bucket], 0);
}

void fsck_claims_mark(struct fsck_claims *s, struct fsck_claims_mark *m)
{
	s->gen++;
	m->gen = s->gen;
	m->total = s->total;
}

int fsck_claims_rewind(struct fsck_claims *s, const struct fsck_claims_mark *m)
{
	if (m->gen != s->gen)
		return -EINVAL;
	for (uint32_t i = 0; i < s->nbuckets; i++)
		if (s->b[i].mark_gen == m->gen)
			truncate_bucket(s, &s->b[i], s->b[i].mark_n);
	return 0;
}

const char *fsck_claims_strerror(const struct fsck_claims *s, char *buf, size_t len)
{
	int err = s->err ? -s->err : 0;

	if (s->err_op && strcmp(s->err_op, "allocate") == 0)
		snprintf(buf, len, "%s: out of memory", s->name);
	else
		snprintf(buf, len, "%s: cannot %s the spill file in %s (set TMPDIR to a "
			 "writable directory with room): %s", s->name,
			 s->err_op ? s->err_op : "use", tmpdir(), strerror(err));
	return buf;
}

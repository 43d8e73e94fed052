/*
 * fsck_claims.h: fsck's claim store: fixed-size records appended into
 * per-AG buckets, kept in memory up to a byte cap and spilled past it to
 * an unlinked temporary file, read back one bucket (one AG) at a time.
 * See fsck_claims.c for the design.
 */
#ifndef RLFS_FSCK_CLAIMS_H
#define RLFS_FSCK_CLAIMS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Default in-memory cap of one store, in bytes (what RLFS_FSCK_MEM_CAP_BYTES
 * overrides). */
#define FSCK_CLAIMS_DEFAULT_CAP_BYTES ((size_t)8 << 20)

/* A run of one bucket's records in the spill file. */
struct fsck_claims_run {
	off_t off;                  /* bytes into the spill file */
	size_t n;                   /* records */
};

struct fsck_claims_bucket {
	void *mem;                  /* in-memory records, appended after the runs */
	size_t nmem, memcap;        /* records */
	struct fsck_claims_run *runs;   /* spilled records, oldest first */
	size_t nruns, runs_cap;
	size_t nspilled;            /* records in the runs */
	uint64_t mark_gen;          /* == store gen: mark_n holds the count at the mark */
	size_t mark_n;
};

/*
 * One store.  All fields private to fsck_claims.c; callers read only
 * total (records held, all buckets) and spilled_bytes (written to the
 * spill file so far, for -v).
 */
struct fsck_claims {
	const char *name;           /* for messages: "claims", "data mappings" */
	size_t rec_bytes;           /* bytes of one record */
	uint32_t nbuckets;          /* one per AG */
	struct fsck_claims_bucket *b;
	size_t total;               /* records held */
	size_t mem_bytes;           /* bytes of records held in memory */
	size_t cap_bytes;           /* spill when mem_bytes would pass it */
	int fd;                     /* spill file, -1 until the first spill */
	off_t file_end;             /* bytes written to it */
	uint64_t spilled_bytes;
	uint64_t gen;               /* mark generation (0: no mark yet) */
	int err;                    /* first error (-errno); sticky */
	const char *err_op;         /* what failed: "create", "write", "read" */
};

/* A point to go back to (fsck_claims_rewind). */
struct fsck_claims_mark {
	uint64_t gen;
	size_t total;
};

/*
 * Set up an empty store of nbuckets buckets holding records of rec_bytes
 * bytes, spilling past cap_bytes of records in memory (0: spill on every
 * append).  No file is made until the first spill.  0, or -ENOMEM.
 */
int fsck_claims_init(struct fsck_claims *s, const char *name, size_t rec_bytes,
		     uint32_t nbuckets, size_t cap_bytes);
/* Release memory and close (so delete) the spill file.  s may be zeroed
 * (never initialized). */
void fsck_claims_destroy(struct fsck_claims *s);
/*
 * Append the record rec (rec_bytes bytes) to bucket (an AG number,
 * < nbuckets).  May spill every bucket's in-memory records.  0, or the
 * store's sticky error: -ENOMEM, -EINVAL (bucket out of range), or the
 * errno of creating or writing the spill file (-ENOSPC, -EACCES, ...);
 * fsck_claims_strerror says where.
 */
int fsck_claims_add(struct fsck_claims *s, uint32_t bucket, const void *rec);
/* Records in bucket. */
size_t fsck_claims_count(const struct fsck_claims *s, uint32_t bucket);
/*
 * Every record of bucket, in the order appended, copied into a new
 * malloc'd array *recs (*n records; NULL when 0).  The caller frees it.
 * 0, or -ENOMEM, or -EIO etc. reading the spill file.
 */
int fsck_claims_load(struct fsck_claims *s, uint32_t bucket, void **recs, size_t *n);
/* Empty bucket (its spilled runs are forgotten, the file space is not
 * reused).  Not between a mark and its rewind. */
void fsck_claims_clear(struct fsck_claims *s, uint32_t bucket);
/*
 * Mark the current contents: a later fsck_claims_rewind(s, m) drops every
 * record appended since.  Only the newest mark can be rewound to (one
 * tentative stretch at a time, as fsck's phase 3 uses it); O(1).
 */
void fsck_claims_mark(struct fsck_claims *s, struct fsck_claims_mark *m);
/* Drop the records appended since mark m.  0, or -EINVAL when m is not
 * the newest mark. */
int fsck_claims_rewind(struct fsck_claims *s, const struct fsck_claims_mark *m);
/* "cannot write the spill file in /tmp: No space left on device" for the
 * store's error, into buf. */
const char *fsck_claims_strerror(const struct fsck_claims *s, char *buf, size_t len);

#endif

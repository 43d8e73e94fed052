/*
 * dev_crash.h: a crash-recording device, for the crash tester
 * (tests/crash/crashtest.c; docs/DESIGN.md "Crash testing").
 *
 * Model: CrashMonkey's block-level recording and SQLite's crash tests
 * (the device keeps everything written before its last completed flush;
 * writes after that flush may each be lost, kept, or - when they span
 * several sectors - torn).  dm-log-writes does the same in the kernel.
 *
 * Use: rlfs_crash_rec_new(inner) snapshots the device's current contents
 * (the base image, stored sparsely: only non-zero sectors) and returns an
 * empty record; rlfs_crash_dev_open(rec, inner) gives a device that reads
 * and writes inner and appends every write (offset, bytes) and flush to the
 * record, in order.  Each event has a number, its position: events
 * [0, pos) have been issued when rlfs_crash_rec_pos() returns pos.
 * rlfs_crash_rec_build() writes to a file the image as it would be after a
 * power cut at a position (a cut), following struct rlfs_crash_cut.
 *
 * Sectors are RLFS_CRASH_SECTOR_BYTES (4 KiB): a write of one sector or
 * less is atomic; a torn write keeps some of its sectors new and leaves
 * the others old.  Everything is deterministic from the cut's seed.
 */
#ifndef RLFS_DEV_CRASH_H
#define RLFS_DEV_CRASH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dev.h"

#define RLFS_CRASH_SECTOR_BYTES 4096u

struct rlfs_crash_rec;

/* One recorded event. */
enum rlfs_crash_kind { RLFS_CRASH_WRITE, RLFS_CRASH_FLUSH };
struct rlfs_crash_event {
	enum rlfs_crash_kind kind;
	uint64_t off_bytes;         /* device offset (writes) */
	uint64_t len_bytes;         /* write length, 0 for a flush */
	uint64_t data_off;          /* where the bytes are in the record's arena */
};

/*
 * A power cut.  pos: events [0, pos) were issued before the power went
 * (0 <= pos <= rlfs_crash_rec_pos).  Every write before the last flush in
 * [0, pos) is durable.  The writes after it (the unflushed window):
 *  - keep_all: all kept, in order (a clean cut: the device lost nothing
 *    it had been sent);
 *  - else each is kept with probability 1/2, and a write of more than one
 *    sector is instead torn with probability torn_pct % (each sector kept
 *    or lost on its own), chosen from seed.  Kept writes are applied in
 *    issue order (overlapping writes in the window: the later one wins if
 *    both are kept).
 */
struct rlfs_crash_cut {
	uint64_t pos;
	uint64_t seed;
	bool keep_all;
	unsigned torn_pct;          /* 0..100 */
	/* A lying device: the last lost_flushes flushes before pos were
	 * acknowledged but not done, so the unflushed window starts at the
	 * flush before them (0: an honest device).  For checking that the
	 * checker sees lost fsync'd data. */
	unsigned lost_flushes;
};

/* What rlfs_crash_rec_build did with the unflushed window. */
struct rlfs_crash_stats {
	uint64_t durable_writes;    /* writes before the last flush */
	uint64_t window_writes;     /* writes after it, before pos */
	uint64_t kept, lost, torn;  /* of the window writes */
};

/*
 * Snapshot inner (its whole size_bytes) as the base image and make an
 * empty record.  0, -ENOMEM, or inner's read error.  Free with
 * rlfs_crash_rec_free (after the device is closed).
 */
int rlfs_crash_rec_new(struct rlfs_dev *inner, struct rlfs_crash_rec **recp);
void rlfs_crash_rec_free(struct rlfs_crash_rec *rec);
/*
 * A device over inner that records into rec.  Closing it closes inner
 * (not rec).  0 or -ENOMEM.  A write or flush inner fails is not recorded
 * and its error is returned.
 */
int rlfs_crash_dev_open(struct rlfs_crash_rec *rec, struct rlfs_dev *inner,
			struct rlfs_dev **devp);
/* Events recorded so far (the position a cut "now" would have). */
uint64_t rlfs_crash_rec_pos(struct rlfs_crash_rec *rec);
/* Event i (< pos) into *ev: 0, or -EINVAL past the end. */
int rlfs_crash_rec_event(struct rlfs_crash_rec *rec, uint64_t i, struct rlfs_crash_event *ev);
/* Bytes of write data held by the record. */
uint64_t rlfs_crash_rec_bytes(struct rlfs_crash_rec *rec);
/* Device size, bytes. */
uint64_t rlfs_crash_rec_size_bytes(struct rlfs_crash_rec *rec);
/*
 * Write the crash image of cut to fd (truncated, then written sparsely:
 * the base image's non-zero sectors, then the writes the cut keeps).
 * stats may be NULL.  0, -EINVAL (cut->pos past the record, torn_pct >
 * 100), or -errno from ftruncate/pwrite.
 */
int rlfs_crash_rec_build(struct rlfs_crash_rec *rec, const struct rlfs_crash_cut *cut, int fd,
			 struct rlfs_crash_stats *stats);
#endif

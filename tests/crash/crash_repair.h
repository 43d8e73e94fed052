/*
 * crash_repair.h: rlfs-crashtest --mode repair, power cuts during fsck's
 * own repair (tests/crash/crash_repair.c; docs/DESIGN.md "Crash testing",
 * "Crashes during fsck repair").
 */
#ifndef RLFS_CRASH_REPAIR_H
#define RLFS_CRASH_REPAIR_H
#include <stdbool.h>
#include <stdint.h>

/* What --mode repair was asked for (crashtest.c's options). */
struct crash_repair_opts {
	const char *damage;         /* damage kinds (crash_repair.c kinds[]), comma-separated, or "all" */
	uint64_t seed;              /* the cuts' random choices */
	unsigned count;             /* random-subset cuts per flush interval of the repair */
	unsigned images;            /* most cut images per damage kind, 0: every prefix */
	long long cut;              /* only cut K of each kind's list, or -1 */
	const char *tmpdir;         /* an empty private directory for the images */
	const char *dir;            /* --keep: where failed images go */
	bool keep, verbose;
	int rmapbt;                 /* mkfs rmapbt: 0 default (on), -1 off */
	uint64_t log_bytes;         /* mkfs log size, 0: default */
};

/* Totals over the damage kinds run. */
struct crash_repair_totals {
	uint64_t kinds;             /* damage kinds recorded */
	uint64_t writes, flushes;   /* device events of the recorded repairs */
	uint64_t images, failed;    /* cut images checked, and those with findings */
};

/*
 * Run the damage kinds o->damage names: make the damaged image, record
 * `fsck` (repair) on it through the crash-recording device, then check
 * the image after a power cut at each cut of the repair (a following
 * fsck repairs to clean, fsck -n is clean, every file is intact where the
 * kind leaves it (gone if cleared, under /lost+found if lost) and a new
 * file can be written).  Prints one FAIL block per failed image and one
 * summary line per kind.  Returns 0 (totals in *t; t->failed may be
 * non-zero), or 2 for a usage or setup error (unknown damage kind; the
 * damaged image is not what fsck repairs; the recorded repair did not end
 * clean), after a line on stderr.
 */
int crash_repair_run(const struct crash_repair_opts *o, struct crash_repair_totals *t);
/* The damage kinds, comma-separated, for usage messages. */
const char *crash_repair_kinds(void);
#endif

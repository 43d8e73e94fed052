/*
 * fsmap_cmd.c: `reflinkfs fsmap [-d|-l|-r] [-m|-v] [-n NR] [START END]
 * MOUNT|IMAGE`, the physical space map (GETFSMAP, lib/fsmap.c) printed as
 * `xfs_io -c "fsmap ..."` prints it: the same plain, -v (table with AG
 * columns and the FLAGS legend) and -m (CSV) formats, block ranges,
 * offsets and totals in 512-byte units, START and END too (512-byte
 * units, as xfs_io's; only with -d, -l or -r, as there).
 *
 * MOUNT (any file or directory of a reflinkfs mount, as xfs_io takes):
 * the daemon answers through the private RLFS_IOC_GETFSMAP, in batches
 * (RLFS_IOC_FSMAP_BATCH).  IMAGE (a file or block device that does not
 * answer that ioctl): opened read-only through the library (it must not
 * be mounted), records carry device 0:0.
 *
 * Devices: reflinkfs has one, the data device, with the log inside it
 * (reported in its place as "journalling log").  So -d and no option
 * print the same map; -l and -r print nothing, as xfs_io does on an XFS
 * with an internal log and no realtime device (its log and rt device
 * numbers are 0, which match no records).
 *
 * --svg FILE draws the map instead of printing it (tools/fsmap_svg.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <reflinkfs/fs.h>
#include <reflinkfs/fsmap.h>
#include <reflinkfs/ioctl.h>

#include "cli.h"
#include "fsmap_svg.h"
#include "rlfs.h"

#define BB 512ull

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"Usage: %s [-d|-l|-r] [-m|-v] [-n NR] [START END] MOUNT|IMAGE\n"
		"       %s --svg FILE [--svg-width PX] [-d] [-n NR] MOUNT|IMAGE\n"
		"\n"
		"Print the physical space map: every block range of the filesystem with its\n"
		"owner (an inode and file offset, or metadata), free space included (GETFSMAP,\n"
		"as `xfs_io -c \"fsmap -v\"`).  Needs the rmap btree (mkfs default).  Ranges,\n"
		"offsets and totals are in 512-byte units.\n"
		"\n"
		"MOUNT is a mounted reflinkfs (asks the daemon); IMAGE an unmounted image,\n"
		"read without changing it.\n"
		"\n"
		"Options:\n"
		"  -d        the data device only (reflinkfs has only a data device; the log\n"
		"            lives inside it and is listed there)\n"
		"  -l, -r    the log / realtime device: prints nothing (no such devices)\n"
		"  -m        machine-readable CSV\n"
		"  -v        verbose table: AG, AG offset and flags columns (-vv: flags legend\n"
		"            always)\n"
		"  -n NR     ask for NR records per call (default as xfs_io)\n"
		"  START END only records overlapping [START, END] (512-byte units; needs\n"
		"            -d, -l or -r, as in xfs_io)\n"
		"  --svg FILE  draw the map as an SVG picture into FILE (- for stdout)\n"
		"            instead of printing it: one band per AG, its blocks left to\n"
		"            right, coloured free / file data / unwritten / shared by the\n"
		"            number of owners (2, 3-4, 5+) / each kind of metadata, with a\n"
		"            legend of the blocks in each class.  Big AGs wrap into rows and\n"
		"            a pixel column then shows the class with most blocks in it\n"
		"            (exact counts in the legend and in data- attributes)\n"
		"  --svg-width PX  pixels per row of the picture (default 1600)\n",
		prog, prog);
}

struct geom {
	uint64_t agbytes;
	uint32_t agcount;
};

static const char *special_owner(uint64_t owner, char *buf, size_t len)
{
	switch (owner) {
	case RLFS_FMR_OWN_FREE: return "free space";
	case RLFS_FMR_OWN_UNKNOWN: return "unknown";
	case RLFS_FMR_OWN_FS: return "static fs metadata";
	case RLFS_FMR_OWN_LOG: return "journalling log";
	case RLFS_FMR_OWN_AG: return "per-AG metadata";
	case RLFS_FMR_OWN_INOBT: return "inode btree";
	case RLFS_FMR_OWN_INODES: return "inodes";
	case RLFS_FMR_OWN_REFC: return "refcount btree";
	case RLFS_FMR_OWN_COW: return "cow reservation";
	case RLFS_FMR_OWN_DEFECTIVE: return "defective";
	}
	snprintf(buf, len, "special %u:%u", FMR_OWNER_TYPE(owner), FMR_OWNER_CODE(owner));
	return buf;
}

static int numlen(unsigned long long v)
{
	int n = 1;
	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

#define MAX(a, b) ((a) > (b) ? (a) : (b))
/* xfs_io's verbose flag bits (octal columns) */
#define FLG_ATTR_FORK 01000000
#define FLG_SHARED    00100000
#define FLG_PRE       00010000

struct out {
	int mode;              /* 0 plain, 1 verbose, 2 machine */
	int vflag;
	unsigned long long nr;
	bool dumped_flags;
	struct geom g;
	/* totals for the summary line (stderr with -v) */
	uint64_t bytes_free, bytes_used, records;
};

static void dev_str(const struct fsmap *p, char *buf, size_t len)
{
	snprintf(buf, len, "%u:%u", major(p->fmr_device), minor(p->fmr_device));
}

/* A record in xfs_io's units: 512-byte sectors, last sector inclusive. */
struct bb {
	unsigned long long pstart, pend, ostart, oend, len;
	const char *fork;
};

static struct bb to_bb(const struct fsmap *p)
{
	return (struct bb){ p->fmr_physical / BB, (p->fmr_physical + p->fmr_length - 1) / BB,
			    p->fmr_offset / BB, (p->fmr_offset + p->fmr_length - 1) / BB,
			    p->fmr_length / BB,
			    (p->fmr_flags & FMR_OF_ATTR_FORK) ? "attr" : "data" };
}

/* xfs_io's dump_map (plain) and dump_map_machine (-m): the same fields,
 * two spellings. */
static void dump_plain(struct out *o, const struct fsmap *r, unsigned n, bool csv)
{
	char own[64];
	if (csv && o->nr == 0)
		printf("EXT,MAJOR,MINOR,PSTART,PEND,OWNER,OSTART,OEND,LENGTH\n");
	for (unsigned i = 0; i < n; i++) {
		const struct fsmap *p = &r[i];
		struct bb b = to_bb(p);
		unsigned long long ino = p->fmr_owner;
		printf(csv ? "%llu,%u,%u,%llu,%llu," : "\t%llu: %u:%u [%llu..%llu]: ", o->nr + i,
		       major(p->fmr_device), minor(p->fmr_device), b.pstart, b.pend);
		if ((p->fmr_flags & FMR_OF_SPECIAL_OWNER) && csv)
			printf("special_%u:%u,,,", FMR_OWNER_TYPE(p->fmr_owner),
			       FMR_OWNER_CODE(p->fmr_owner));
		else if (p->fmr_flags & FMR_OF_SPECIAL_OWNER)
			printf("%s", special_owner(p->fmr_owner, own, sizeof(own)));
		else if (p->fmr_flags & FMR_OF_EXTENT_MAP)
			printf(csv ? "inode_%llu_%s_bmbt,,," : "inode %llu %s extent map", ino, b.fork);
		else
			printf(csv ? "inode_%llu_%s,%llu,%llu," : "inode %llu %s %llu..%llu", ino,
			       b.fork, b.ostart, b.oend);
		printf(csv ? "%llu\n" : " %llu\n", b.len);
	}
}

/* xfs_io's dump_map_verbose: column widths from this batch, header
 * before the first. */
static void dump_verbose(struct out *o, const struct fsmap *r, unsigned n)
{
	char rbuf[48], bbuf[48], abuf[48], obuf[48], nbuf[48], dbuf[48], gbuf[48], own[64];
	int foff_w = 16, boff_w = 16, aoff_w = 16, own_w = 16, tot_w = 5, nr_w = 4, dev_w = 3;
	int flg = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct fsmap *p = &r[i];
		if (p->fmr_flags & (FMR_OF_PREALLOC | FMR_OF_ATTR_FORK | FMR_OF_SHARED))
			flg = 1;
		if (flg)
			o->dumped_flags = true;
		snprintf(nbuf, sizeof(nbuf), "%llu", o->nr + i);
		nr_w = MAX(nr_w, (int)strlen(nbuf));
		dev_str(p, dbuf, sizeof(dbuf));
		dev_w = MAX(dev_w, (int)strlen(dbuf));
		struct bb b = to_bb(p);
		snprintf(bbuf, sizeof(bbuf), "[%llu..%llu]:", b.pstart, b.pend);
		boff_w = MAX(boff_w, (int)strlen(bbuf));
		if (p->fmr_flags & FMR_OF_SPECIAL_OWNER) {
			own_w = MAX(own_w, (int)strlen(special_owner(p->fmr_owner, own, sizeof(own))));
		} else {
			snprintf(obuf, sizeof(obuf), "%llu", (unsigned long long)p->fmr_owner);
			own_w = MAX(own_w, (int)strlen(obuf));
		}
		if (p->fmr_flags & FMR_OF_EXTENT_MAP) {
			foff_w = MAX(foff_w, (int)strlen("extent_map"));
		} else if (!(p->fmr_flags & FMR_OF_SPECIAL_OWNER)) {
			snprintf(rbuf, sizeof(rbuf), "%llu..%llu", b.ostart, b.oend);
			foff_w = MAX(foff_w, (int)strlen(rbuf));
		}
		uint64_t agno = p->fmr_physical / o->g.agbytes, agoff = p->fmr_physical % o->g.agbytes;
		(void)agno;
		snprintf(abuf, sizeof(abuf), "(%llu..%llu)", (unsigned long long)(agoff / BB),
			 (unsigned long long)(agoff / BB + b.len - 1));
		aoff_w = MAX(aoff_w, (int)strlen(abuf));
		tot_w = MAX(tot_w, numlen(p->fmr_length / BB));
	}
	int agno_w = MAX(2, numlen(o->g.agcount));
	if (o->nr == 0)
		printf("%*s: %-*s %-*s %-*s %-*s %*s %-*s %*s%s\n", nr_w, "EXT", dev_w, "DEV", boff_w,
		       "BLOCK-RANGE", own_w, "OWNER", foff_w, "FILE-OFFSET", agno_w, "AG", aoff_w,
		       "AG-OFFSET", tot_w, "TOTAL", flg ? " FLAGS" : "");
	for (unsigned i = 0; i < n; i++) {
		const struct fsmap *p = &r[i];
		flg = 0;
		if (p->fmr_flags & FMR_OF_PREALLOC)
			flg |= FLG_PRE;
		if (p->fmr_flags & FMR_OF_ATTR_FORK)
			flg |= FLG_ATTR_FORK;
		if (p->fmr_flags & FMR_OF_SHARED)
			flg |= FLG_SHARED;
		dev_str(p, dbuf, sizeof(dbuf));
		struct bb b = to_bb(p);
		snprintf(bbuf, sizeof(bbuf), "[%llu..%llu]:", b.pstart, b.pend);
		if (p->fmr_flags & FMR_OF_SPECIAL_OWNER) {
			snprintf(obuf, sizeof(obuf), "%s", special_owner(p->fmr_owner, own, sizeof(own)));
			snprintf(rbuf, sizeof(rbuf), " ");
		} else {
			snprintf(obuf, sizeof(obuf), "%llu", (unsigned long long)p->fmr_owner);
			snprintf(rbuf, sizeof(rbuf), "%llu..%llu", b.ostart, b.oend);
		}
		uint64_t agno = p->fmr_physical / o->g.agbytes, agoff = p->fmr_physical % o->g.agbytes;
		snprintf(abuf, sizeof(abuf), "(%llu..%llu)", (unsigned long long)(agoff / BB),
			 (unsigned long long)(agoff / BB + b.len - 1));
		snprintf(gbuf, sizeof(gbuf), "%llu", (unsigned long long)agno);
		if (p->fmr_flags & FMR_OF_EXTENT_MAP) {
			printf("%*llu: %-*s %-*s %-*s %-*s %-*s %-*s %*llu\n", nr_w, o->nr + i, dev_w,
			       dbuf, boff_w, bbuf, own_w, obuf, foff_w, "extent map", agno_w, gbuf,
			       aoff_w, abuf, tot_w, (unsigned long long)(p->fmr_length / BB));
		} else {
			printf("%*llu: %-*s %-*s %-*s %-*s", nr_w, o->nr + i, dev_w, dbuf, boff_w,
			       bbuf, own_w, obuf, foff_w, rbuf);
			printf(" %-*s %-*s", agno_w, gbuf, aoff_w, abuf);
			printf(" %*llu", tot_w, (unsigned long long)(p->fmr_length / BB));
			if (flg == 0)
				printf("\n");
			else
				printf(" %-*.*o\n", 7, 7, flg);
		}
	}
}

static void dump(struct out *o, const struct fsmap *r, unsigned n)
{
	if (o->mode == 1)
		dump_verbose(o, r, n);
	else
		dump_plain(o, r, n, o->mode == 2);
	for (unsigned i = 0; i < n; i++) {
		o->records++;
		if ((r[i].fmr_flags & FMR_OF_SPECIAL_OWNER) && r[i].fmr_owner == RLFS_FMR_OWN_FREE)
			o->bytes_free += r[i].fmr_length;
		else
			o->bytes_used += r[i].fmr_length;
	}
	o->nr += n;
}

static void dump_key(void)
{
	printf(" FLAG Values:\n");
	printf("    %*.*o Attribute fork\n", 8, 8, FLG_ATTR_FORK);
	printf("    %*.*o Shared extent\n", 8, 8, FLG_SHARED);
	printf("    %*.*o Unwritten preallocated extent\n", 8, 8, FLG_PRE);
	printf("    %*.*o Doesn't begin on stripe unit\n", 8, 8, 01000);
	printf("    %*.*o Doesn't end   on stripe unit\n", 8, 8, 0100);
	printf("    %*.*o Doesn't begin on stripe width\n", 8, 8, 010);
	printf("    %*.*o Doesn't end   on stripe width\n", 8, 8, 01);
}

/* One GETFSMAP call: through the library or the mount's private ioctl. */
struct source {
	struct rlfs_mount *mp;   /* image */
	int fd;                  /* mount point */
	uint32_t dev;
};

static int getfsmap(struct source *s, struct fsmap_head *head)
{
	if (s->mp)
		return rlfs_getfsmap_head(s->mp, s->dev, head);
	/* the daemon returns at most RLFS_IOC_FSMAP_BATCH records a call */
	struct rlfs_ioc_fsmap io;
	memset(&io, 0, sizeof(io));
	io.version = RLFS_IOC_ABI_VERSION;
	io.iflags = head->fmh_iflags;
	io.dev = s->dev;
	io.keys[0] = head->fmh_keys[0];
	io.keys[1] = head->fmh_keys[1];
	io.count = head->fmh_count < RLFS_IOC_FSMAP_BATCH ? head->fmh_count : RLFS_IOC_FSMAP_BATCH;
	if (head->fmh_count == 0)
		io.count = 0;
	if (ioctl(s->fd, RLFS_IOC_GETFSMAP, &io) < 0)
		return -errno;
	head->fmh_oflags = io.oflags;
	head->fmh_entries = io.entries;
	memcpy(head->fmh_recs, io.recs, io.entries * sizeof(struct fsmap));
	return 0;
}

static int write_svg(const char *prog, struct fsmap_svg *svg, const char *path,
		     unsigned width, const char *target)
{
	bool std = strcmp(path, "-") == 0;
	FILE *f = std ? stdout : fopen(path, "w");
	if (!f) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		return 1;
	}
	int err = fsmap_svg_write(svg, f, width, target);
	if ((std ? fflush(f) : fclose(f)) != 0 && !err)
		err = -EIO;
	if (err) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(-err));
		return 1;
	}
	return 0;
}

int rlfs_fsmap_main(int argc, char **argv)
{
	const char *prog = argv[0];
	static const struct option longopts[] = { { "help", no_argument, NULL, 'h' },
						  { "svg", required_argument, NULL, 'S' },
						  { "svg-width", required_argument, NULL, 'W' },
						  { NULL, 0, NULL, 0 } };
	int c, dflag = 0, lflag = 0, rflag = 0, mflag = 0, vflag = 0;
	unsigned long nflag = 0, svg_width = 0;
	const char *svg_path = NULL;
	while ((c = getopt_long(argc, argv, "dlmn:rvh", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': dflag = 1; break;
		case 'l': lflag = 1; break;
		case 'r': rflag = 1; break;
		case 'm': mflag++; break;
		case 'v': vflag++; break;
		case 'n': {
			char *end;
			errno = 0;
			nflag = strtoul(optarg, &end, 10);
			if (errno || *end || nflag == 0 || nflag > UINT32_MAX / 2) {
				fprintf(stderr, "%s: bad record count '%s'\n", prog, optarg);
				return 1;
			}
			break;
		}
		case 'S': svg_path = optarg; break;
		case 'W': {
			char *end;
			errno = 0;
			svg_width = strtoul(optarg, &end, 10);
			if (errno || *end || svg_width < 16 || svg_width > 100000) {
				fprintf(stderr, "%s: bad --svg-width '%s' (16 to 100000)\n", prog,
					optarg);
				return 1;
			}
			break;
		}
		case 'h':
			usage(stdout, prog);
			return 0;
		default:
			fprintf(stderr, "Try '%s --help'.\n", prog);
			return 1;
		}
	}
	int nargs = argc - optind;
	if (dflag + lflag + rflag > 1 || (mflag && vflag) || (nargs != 1 && nargs != 3) ||
	    (nargs == 3 && dflag + lflag + rflag == 0)) {
		fprintf(stderr, "%s: expected [-d|-l|-r] [-m|-v] [-n NR] [START END] MOUNT|IMAGE "
			"(START END need -d, -l or -r; try '%s --help')\n", prog, prog);
		return 1;
	}
	if (svg_path && (lflag || rflag || mflag || vflag || nargs != 1)) {
		fprintf(stderr, "%s: --svg draws the whole map: no -l, -r, -m, -v or START END\n",
			prog);
		return 1;
	}
	unsigned long long start = 0, end = ULLONG_MAX;
	if (nargs == 3) {
		char *e1, *e2;
		errno = 0;
		start = strtoull(argv[optind], &e1, 0);
		end = strtoull(argv[optind + 1], &e2, 0);
		if (errno || *e1 || *e2 || start > ULLONG_MAX / BB || end > ULLONG_MAX / BB) {
			fprintf(stderr, "%s: bad range '%s' '%s' (512-byte units)\n", prog,
				argv[optind], argv[optind + 1]);
			return 1;
		}
		start *= BB;
		end *= BB;
	}
	const char *target = argv[argc - 1];
	struct source s = { .fd = -1 };
	struct out o = { .mode = vflag ? 1 : mflag ? 2 : 0, .vflag = vflag };
	struct stat st;
	if (stat(target, &st) < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, target, strerror(errno));
		return 1;
	}
	int err;
	uint32_t bsize, agblocks, agcount;
	uint64_t dblocks;
	/* any file or directory of a mount answers RLFS_IOC_FSMAP_GEOM; an
	 * image file or device does not (ENOTTY) */
	struct rlfs_ioc_fsmap_geom gq = { .version = RLFS_IOC_ABI_VERSION };
	if (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))
		s.fd = open(target, O_RDONLY | O_NOCTTY);
	if (s.fd >= 0 && ioctl(s.fd, RLFS_IOC_FSMAP_GEOM, &gq) < 0) {
		if (S_ISDIR(st.st_mode)) {
			fprintf(stderr, "%s: %s: not a reflinkfs mount (or too old a daemon): %s\n",
				prog, target, strerror(errno));
			close(s.fd);
			return 1;
		}
		close(s.fd);
		s.fd = -1;
	}
	if (s.fd >= 0) {
		s.dev = (uint32_t)st.st_dev;
		o.g.agbytes = (uint64_t)gq.agblocks * gq.blocksize;
		o.g.agcount = gq.agcount;
		bsize = gq.blocksize;
		agblocks = gq.agblocks;
		agcount = gq.agcount;
		dblocks = gq.dblocks;
	} else {
		err = rlfs_mount_open(target, RLFS_MOUNT_RDONLY, &s.mp);
		if (err) {
			fprintf(stderr, "%s: %s: cannot open: %s%s\n", prog, target, strerror(-err),
				err == -EBUSY || err == -EAGAIN ? " (mounted? give the mount point)"
								 : "");
			return 1;
		}
		o.g.agbytes = (uint64_t)s.mp->agblocks * s.mp->blocksize;
		o.g.agcount = s.mp->agcount;
		rlfs_fsmap_geometry(s.mp, &bsize, &agblocks, &agcount, &dblocks);
	}
	int rc = 0;
	if (lflag || rflag)
		goto out;   /* no log or realtime device: nothing to print */
	struct fsmap_svg *svg = NULL;
	if (svg_path && !(svg = fsmap_svg_new(bsize, agblocks, agcount, dblocks))) {
		fprintf(stderr, "%s: out of memory\n", prog);
		rc = 1;
		goto out;
	}
	unsigned per = nflag ? (unsigned)nflag : 131072 / sizeof(struct fsmap);
	struct fsmap_head *head = calloc(1, sizeof(*head) + (size_t)per * sizeof(struct fsmap));
	if (!head) {
		fprintf(stderr, "%s: out of memory\n", prog);
		rc = 1;
		goto out_svg;
	}
	struct fsmap *l = &head->fmh_keys[0], *h = &head->fmh_keys[1];
	l->fmr_device = dflag ? s.dev : 0;
	h->fmr_device = dflag ? s.dev : UINT32_MAX;
	l->fmr_physical = start;
	h->fmr_physical = end;
	h->fmr_owner = ULLONG_MAX;
	h->fmr_flags = UINT32_MAX;
	h->fmr_offset = ULLONG_MAX;
	for (;;) {
		head->fmh_count = per;
		err = getfsmap(&s, head);
		if (err) {
			fprintf(stderr, "%s: %s: GETFSMAP: %s%s\n", prog, target, strerror(-err),
				err == -EOPNOTSUPP ? " (no rmap btree: mkfs -m rmapbt=1)" : "");
			rc = 1;
			break;
		}
		if (head->fmh_entries == 0)
			break;
		if (svg) {
			err = fsmap_svg_add(svg, head->fmh_recs, head->fmh_entries);
			if (err) {
				fprintf(stderr, "%s: %s\n", prog, strerror(-err));
				rc = 1;
				break;
			}
		} else {
			dump(&o, head->fmh_recs, head->fmh_entries);
		}
		struct fsmap *p = &head->fmh_recs[head->fmh_entries - 1];
		if (p->fmr_flags & FMR_OF_LAST)
			break;
		head->fmh_keys[0] = *p;
	}
	if (svg && rc == 0)
		rc = write_svg(prog, svg, svg_path, (unsigned)svg_width, target);
	if (o.dumped_flags || (vflag > 1 && rc == 0))
		dump_key();
	if (vflag && rc == 0)
		fprintf(stderr, "%llu records, %llu bytes used (shared counted per owner), "
			"%llu bytes free\n", (unsigned long long)o.records,
			(unsigned long long)o.bytes_used, (unsigned long long)o.bytes_free);
	free(head);
out_svg:
	fsmap_svg_free(svg);
out:
	if (s.mp) {
		err = rlfs_mount_close(s.mp);
		if (err && !rc) {
			fprintf(stderr, "%s: %s: close: %s\n", prog, target, strerror(-err));
			rc = 1;
		}
	}
	if (s.fd >= 0)
		close(s.fd);
	return rc;
}

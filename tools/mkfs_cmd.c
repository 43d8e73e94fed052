/*
 * mkfs_cmd.c: `reflinkfs mkfs` / mkfs.reflinkfs, the command-line front end
 * of rlfs_mkfs() (reflinkfs/fs.h).  Options follow mkfs.xfs in spirit:
 *
 *   reflinkfs mkfs [-s SIZE] [-b BLOCKSIZE] [-a AGCOUNT] [-i INODESIZE]
 *                  [-L LABEL] [-m reflink=0|1,rmapbt=0|1] [-f] IMAGE
 *
 * After formatting it reads the new primary superblock back (the on-disk
 * format is public: reflinkfs/format.h) and prints a short summary.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <reflinkfs/format.h>
#include <reflinkfs/fs.h>

#include "cli.h"

int rlfs_parse_size(const char *s, unsigned long long *out)
{
	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s)
		return -EINVAL;
	if (errno == ERANGE)
		return -ERANGE;
	unsigned shift = 0;
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	case 'p': case 'P': shift = 50; end++; break;
	case 'b': case 'B': break;
	default:
		return -EINVAL;
	}
	/* optional "B" or "iB" after the suffix, "B" alone for bytes */
	if (shift && end[0] == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B' || *end == 'b')
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (ULLONG_MAX >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

static int parse_u32(const char *s, uint32_t *out, int allow_suffix)
{
	unsigned long long v;
	int err;
	if (allow_suffix) {
		err = rlfs_parse_size(s, &v);
	} else {
		char *end;
		if (!*s || *s == '-')
			return -EINVAL;
		errno = 0;
		v = strtoull(s, &end, 10);
		err = (*end || end == s) ? -EINVAL : (errno ? -ERANGE : 0);
	}
	if (err)
		return err;
	if (v > UINT32_MAX)
		return -ERANGE;
	*out = (uint32_t)v;
	return 0;
}

/* -m SUBOPT[,SUBOPT...] as mkfs.xfs: reflink[=0|1], rmapbt[=0|1].
 * 0 or -1 (unknown suboption or value). */
static int parse_meta(const char *arg, struct rlfs_mkfs_opts *o)
{
	static const struct {
		const char *name;
		size_t off;
	} subs[] = {
		{ "reflink", offsetof(struct rlfs_mkfs_opts, reflink) },
		{ "rmapbt", offsetof(struct rlfs_mkfs_opts, rmapbt) },
	};
	const char *p = arg;
	while (*p) {
		size_t len = strcspn(p, ",");
		size_t nl = strcspn(p, ",=");
		bool found = false;
		for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
			if (strlen(subs[i].name) != nl || strncmp(p, subs[i].name, nl) != 0)
				continue;
			int v;
			if (nl == len)
				v = 1;
			else if (len == nl + 2 && (p[nl + 1] == '0' || p[nl + 1] == '1'))
				v = p[nl + 1] == '1' ? 1 : -1;
			else
				return -1;
			*(int *)((char *)o + subs[i].off) = v;
			found = true;
		}
		if (!found)
			return -1;
		p += len;
		if (*p == ',' && *++p == '\0')
			return -1;
	}
	return 0;
}

/* -d SUBOPT[,SUBOPT...] as mkfs.xfs: cowextsize=BLOCKS, extszinherit=BLOCKS
 * (hints set on the root directory, passed on to what is created in it).
 * 0 or -1 (unknown suboption or a value that is not a number). */
static int parse_data(const char *arg, struct rlfs_mkfs_opts *o)
{
	const char *p = arg;
	while (*p) {
		size_t len = strcspn(p, ",");
		uint32_t *dst = NULL;
		size_t nl = strcspn(p, "=,");
		if (nl == 10 && strncmp(p, "cowextsize", nl) == 0)
			dst = &o->cowextsize_blocks;
		else if (nl == 12 && strncmp(p, "extszinherit", nl) == 0)
			dst = &o->extszinherit_blocks;
		if (!dst || nl >= len || p[nl] != '=')
			return -1;
		char num[16];
		size_t vl = len - nl - 1;
		if (vl == 0 || vl >= sizeof(num))
			return -1;
		memcpy(num, p + nl + 1, vl);
		num[vl] = '\0';
		if (parse_u32(num, dst, 0))
			return -1;
		p += len;
		if (*p == ',' && *++p == '\0')
			return -1;
	}
	return 0;
}

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"Usage: %s [-s SIZE] [-b BLOCKSIZE] [-a AGCOUNT] [-i INODESIZE] [-L LABEL]\n"
		"          [-m reflink=0|1,rmapbt=0|1] [-l size=SIZE | -l log=0]\n"
		"          [-d cowextsize=BLOCKS,extszinherit=BLOCKS] [-f] IMAGE\n"
		"\n"
		"Create a reflinkfs filesystem in IMAGE (a file, created sparse if missing, or a\n"
		"block device).\n"
		"\n"
		"Options:\n"
		"  -s SIZE       filesystem size; K, M, G, T suffixes (powers of 1024).\n"
		"                Default: the existing size of IMAGE.\n"
		"  -b BLOCKSIZE  block size in bytes, a power of two 1024..65536 (default 4096)\n"
		"  -a AGCOUNT    number of allocation groups (default: chosen by size)\n"
		"  -i INODESIZE  inode size in bytes, a power of two (default 512)\n"
		"  -L LABEL      filesystem label (up to 31 bytes)\n"
		"  -m reflink=1  block sharing (refcount btree, REFLINK feature; default on);\n"
		"                reflink=0 makes a filesystem without it\n"
		"  -m rmapbt=1   reverse-mapping btree: who owns every block (RMAP feature;\n"
		"                default on); rmapbt=0 makes a filesystem without it\n"
		"                Suboptions combine: -m reflink=1,rmapbt=1\n"
		"  -l size=SIZE  write-ahead log size (K, M, G suffixes); default 1/64 of the\n"
		"                filesystem, at least %u blocks and 512 KiB, at most 64 MiB\n"
		"  -l log=0      no log (an image as before the log: not crash-safe)\n"
		"  -d cowextsize=BLOCKS  CoW extent size hint of the root directory, passed\n"
		"                on to files and directories created in it (default: none,\n"
		"                files use 32 blocks); as mkfs.xfs -d cowextsize=\n"
		"  -d extszinherit=BLOCKS  extent size hint the root directory passes on\n"
		"  -f            overwrite an existing reflinkfs filesystem\n"
		"  -h, --help    this text\n",
		prog, RLFS_LOG_MIN_BLOCKS);
}

static void human(unsigned long long bytes, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)bytes;
	int u = 0;
	while (v >= 1024.0 && u < 6) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", bytes);
	else
		snprintf(buf, len, "%.1f %s", v, unit[u]);
}

/* Print the geometry recorded in the new primary superblock. */
static void print_summary(const char *prog, const char *image)
{
	struct rlfs_sb sb;
	int fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || pread(fd, &sb, sizeof(sb), 0) != (ssize_t)sizeof(sb) ||
	    rlfs_get32(sb.hdr.magic) != RLFS_SB_MAGIC) {
		fprintf(stderr, "%s: warning: cannot read back the superblock of %s\n", prog, image);
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	uint32_t bs = rlfs_get32(sb.blocksize);
	uint64_t dblocks = rlfs_get64(sb.dblocks);
	uint64_t fdblocks = rlfs_get64(sb.fdblocks);
	char size[32], fsize[32];
	human(dblocks * bs, size, sizeof(size));
	human(fdblocks * bs, fsize, sizeof(fsize));
	char label[sizeof(sb.label) + 1];
	memcpy(label, sb.label, sizeof(sb.label));
	label[sizeof(sb.label)] = '\0';
	printf("%s: reflinkfs version %u, %s (%llu blocks of %u bytes), %s free\n", image,
	       rlfs_get32(sb.version), size, (unsigned long long)dblocks, bs, fsize);
	printf("  %u allocation groups of %u blocks, inode size %u",
	       rlfs_get32(sb.agcount), rlfs_get32(sb.agblocks), rlfs_get16(sb.inodesize));
	if (label[0])
		printf(", label \"%s\"", label);
	printf("\n  uuid ");
	for (int i = 0; i < RLFS_UUID_SIZE; i++) {
		printf("%02x", sb.hdr.uuid[i]);
		if (i == 3 || i == 5 || i == 7 || i == 9)
			putchar('-');
	}
	printf(", root inode %llu\n", (unsigned long long)rlfs_get64(sb.rootino));
	printf("  reflink=%d rmapbt=%d\n",
	       (rlfs_get64(sb.features_incompat) & RLFS_FEAT_INCOMPAT_REFLINK) ? 1 : 0,
	       (rlfs_get64(sb.features_incompat) & RLFS_FEAT_INCOMPAT_RMAP) ? 1 : 0);
	if (rlfs_get64(sb.features_incompat) & RLFS_FEAT_INCOMPAT_LOG) {
		char lsize[32];
		human((unsigned long long)rlfs_get32(sb.log_blocks) * bs, lsize, sizeof(lsize));
		printf("  log: %s (%u blocks) at fsbno %llu\n", lsize, rlfs_get32(sb.log_blocks),
		       (unsigned long long)rlfs_get64(sb.log_start));
	} else {
		printf("  log: none (not crash-safe)\n");
	}
}

int rlfs_mkfs_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *prog = argv[0];
	struct rlfs_mkfs_opts o = { 0 };
	int c, err;
	unsigned long long v;
	while ((c = getopt_long(argc, argv, "s:b:a:i:L:m:l:d:fh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			err = rlfs_parse_size(optarg, &v);
			if (err || v == 0) {
				fprintf(stderr, "%s: invalid size '%s' (examples: 512M, 10G)\n", prog,
					optarg);
				return 1;
			}
			o.size_bytes = v;
			break;
		case 'b':
			if (parse_u32(optarg, &o.blocksize, 1) || o.blocksize == 0) {
				fprintf(stderr, "%s: invalid block size '%s'\n", prog, optarg);
				return 1;
			}
			break;
		case 'a':
			if (parse_u32(optarg, &o.agcount, 0) || o.agcount == 0) {
				fprintf(stderr, "%s: invalid AG count '%s'\n", prog, optarg);
				return 1;
			}
			break;
		case 'i':
			if (parse_u32(optarg, &o.inodesize, 1) || o.inodesize == 0) {
				fprintf(stderr, "%s: invalid inode size '%s'\n", prog, optarg);
				return 1;
			}
			break;
		case 'L':
			if (strlen(optarg) >= sizeof(((struct rlfs_sb *)0)->label)) {
				fprintf(stderr, "%s: label '%s' is too long (at most %zu bytes)\n",
					prog, optarg, sizeof(((struct rlfs_sb *)0)->label) - 1);
				return 1;
			}
			o.label = optarg;
			break;
		case 'm':
			if (parse_meta(optarg, &o)) {
				fprintf(stderr, "%s: unknown metadata option '%s' (reflink=0|1, "
					"rmapbt=0|1, comma-separated)\n", prog, optarg);
				return 1;
			}
			break;
		case 'l':
			if (strcmp(optarg, "log=0") == 0) {
				o.log = -1;
			} else if (strcmp(optarg, "log=1") == 0) {
				o.log = 1;
			} else if (strncmp(optarg, "size=", 5) == 0 &&
				   !rlfs_parse_size(optarg + 5, &v) && v > 0) {
				o.log_bytes = v;
			} else {
				fprintf(stderr, "%s: unknown log option '%s' (size=SIZE, log=0)\n",
					prog, optarg);
				return 1;
			}
			break;
		case 'd':
			if (parse_data(optarg, &o)) {
				fprintf(stderr, "%s: unknown data option '%s' (cowextsize=BLOCKS, "
					"extszinherit=BLOCKS, comma-separated)\n", prog, optarg);
				return 1;
			}
			break;
		case 'f':
			o.force = 1;
			break;
		case 'h':
			usage(stdout, prog);
			return 0;
		default:
			fprintf(stderr, "Try '%s --help'.\n", prog);
			return 1;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "%s: expected one IMAGE (try '%s --help')\n", prog, prog);
		return 1;
	}
	const char *image = argv[optind];

	struct stat st;
	if (stat(image, &st) < 0) {
		if (errno != ENOENT) {
			fprintf(stderr, "%s: %s: %s\n", prog, image, strerror(errno));
			return 1;
		}
		if (!o.size_bytes) {
			fprintf(stderr, "%s: %s does not exist; give its size with -s SIZE\n", prog,
				image);
			return 1;
		}
	} else {
		if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
			fprintf(stderr, "%s: %s is not a regular file or block device\n", prog,
				image);
			return 1;
		}
		if (S_ISREG(st.st_mode) && !o.size_bytes && st.st_size == 0) {
			fprintf(stderr, "%s: %s is empty; give the size with -s SIZE\n", prog, image);
			return 1;
		}
		/* A mounted image holds the daemon's exclusive flock. */
		int fd = open(image, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			if (flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
				fprintf(stderr, "%s: %s is in use (mounted?)\n", prog, image);
				close(fd);
				return 1;
			}
			close(fd);
		}
	}

	if (o.log_bytes && o.log >= 0) {
		uint32_t bs = o.blocksize ? o.blocksize : RLFS_DEFAULT_BLOCKSIZE;
		unsigned long long min = (unsigned long long)RLFS_LOG_MIN_BLOCKS * bs;
		if (min < RLFS_LOG_MIN_BYTES)
			min = RLFS_LOG_MIN_BYTES;
		if (o.log_bytes < min) {
			fprintf(stderr, "%s: log size %llu bytes is too small: at least %llu bytes "
				"(%u blocks and 512 KiB) with %u-byte blocks\n", prog,
				(unsigned long long)o.log_bytes, min, RLFS_LOG_MIN_BLOCKS, bs);
			return 1;
		}
	}
	err = rlfs_mkfs(image, &o);
	if (err) {
		switch (-err) {
		case EEXIST:
			fprintf(stderr,
				"%s: %s already contains a reflinkfs filesystem (use -f to overwrite it)\n",
				prog, image);
			break;
		case EINVAL:
			if (o.cowextsize_blocks || o.extszinherit_blocks)
				fprintf(stderr,
					"%s: invalid geometry or hint for %s (an extent size hint is "
					"at most half an AG and 2097151 blocks)\n", prog, image);
			fprintf(stderr,
				"%s: invalid geometry for %s (block size a power of two in 1024..65536, "
				"at least 16 MiB and 64 blocks per AG, a log that fits in one AG with "
				"room to spare)\n",
				prog, image);
			break;
		case EBUSY:
			fprintf(stderr, "%s: %s is in use (mounted?)\n", prog, image);
			break;
		default:
			fprintf(stderr, "%s: cannot create a filesystem on %s: %s\n", prog, image,
				strerror(-err));
			break;
		}
		return 1;
	}
	print_summary(prog, image);
	return 0;
}

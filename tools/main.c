/*
 * main.c: the multi-call `reflinkfs` binary.
 *
 *   reflinkfs mkfs|mount|umount|fsck|io|fsmap|dedupe ...   (subcommand in argv[1])
 *   mkfs.reflinkfs, fsck.reflinkfs            (mkfs(8)/fsck(8) helpers)
 *   mount.reflinkfs SPEC DIR [-sfnv] [-o OPTS]  (mount(8) helper)
 *   umount.fuse.reflinkfs DIR [-nlfvr]        (umount(8) helper)
 *
 * dispatched on argv[1] or on basename(argv[0]) (symlinks made by
 * `make install`).  Every command takes --help; errors are one line on
 * stderr and a non-zero exit status.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <reflinkfs/fs.h>

#include "cli.h"
#include "../fuse/daemon.h"

#define RLFS_VERSION_STRING "0.1.0"

static void usage_main(FILE *f)
{
	fprintf(f,
		"Usage: reflinkfs COMMAND [OPTIONS] ...\n"
		"\n"
		"A copy-on-write filesystem in user space (FUSE) on an image file or block device.\n"
		"\n"
		"Commands:\n"
		"  mkfs [-s SIZE] [-b BLOCKSIZE] [-a AGCOUNT] [-i INODESIZE] [-L LABEL] [-f] IMAGE\n"
		"                     create a filesystem\n"
		"  mount [-f] [-d] [-o OPTS] IMAGE MOUNTPOINT\n"
		"                     mount it (returns once the mount is usable)\n"
		"  umount [-l] MOUNTPOINT\n"
		"                     unmount and wait until the image is flushed and closed\n"
		"  fsck [-n] [-L] IMAGE  check (and repair) a filesystem; -L zeroes a corrupt log\n"
		"  logprint [-v] IMAGE  dump the write-ahead log (--resv: log reservations)\n"
		"  io [-f] [-r] [-c CMD]... FILE\n"
		"                     xfs_io-like commands on a file in a mounted reflinkfs\n"
		"                     (pwrite, pread, reflink, fiemap, funshare, ...; -c help)\n"
		"  fsmap [-d|-l|-r] [-m|-v] [-n NR] [START END] MOUNT|IMAGE\n"
		"                     the physical space map: who owns every block, free\n"
		"                     space included (xfs_io -c \"fsmap -v\" format)\n"
		"  dedupe [-r] [-n] [-x] [-q] [-v] [--json] [--hashfile FILE] [--min-size BYTES]\n"
		"         [--memory BYTES] [--exclude GLOB] PATH...\n"
		"                     find duplicate data and share it (FIDEDUPERANGE; XFS,\n"
		"                     btrfs and reflinkfs)\n"
		"  help               this text; `reflinkfs COMMAND --help` for a command\n"
		"\n"
		"Also installed as mkfs.reflinkfs, fsck.reflinkfs and mount.reflinkfs, so that\n"
		"`mount -t reflinkfs IMAGE DIR` and `fsck -t reflinkfs IMAGE` work.\n");
}

static void usage_mount(FILE *f, const char *prog)
{
	fprintf(f,
		"Usage: %s [-f] [-d] [-o OPTIONS] IMAGE MOUNTPOINT\n"
		"       %s -o remount[,OPTIONS] [IMAGE] MOUNTPOINT\n"
		"\n"
		"Mount the reflinkfs filesystem in IMAGE on MOUNTPOINT through FUSE.  Returns\n"
		"once the mount is usable; the daemon runs in the background unless -f.\n"
		"Unmount with `umount MOUNTPOINT`, `fusermount3 -u MOUNTPOINT` or\n"
		"`reflinkfs umount MOUNTPOINT` (which also waits until the image is closed).\n"
		"\n"
		"Options:\n"
		"  -f          stay in the foreground\n"
		"  -d          FUSE debug output (implies -f)\n"
		"  -o OPTIONS  comma-separated mount options:\n"
		"                ro, rw          read-only / read-write (default rw)\n"
		"                remount         change the options of a mounted reflinkfs:\n"
		"                                ro (flushes: the image is clean while read-only),\n"
		"                                rw, the atime options, dev/suid/exec (root)\n"
		"                relatime        update atime on a read if it is not newer than\n"
		"                                mtime/ctime or is a day old (the default)\n"
		"                strictatime     update atime on every read that reaches the daemon\n"
		"                noatime         never update atime;  nodiratime: not on directories\n"
		"                                (atime, norelatime, nostrictatime, diratime too)\n"
		"                cowgc=SECONDS   give back copy-on-write blocks staged for a file\n"
		"                                (its CoW fork) that no write used after SECONDS\n"
		"                                (default 300; 0: only at close, truncate, ENOSPC\n"
		"                                and unmount)\n"
		"                cowfill=BLOCKS  a copy-on-write also copies up to BLOCKS blocks\n"
		"                                between it and an earlier rewrite of the same\n"
		"                                staged region, keeping one extent (default 1;\n"
		"                                0: as XFS)\n"
		"                wbresv=BYTES    free space held back for data the kernel's page\n"
		"                                cache accepted and has not written back yet, so\n"
		"                                that write(2) fails with ENOSPC before that data\n"
		"                                could be lost (default: a sixteenth of the\n"
		"                                filesystem, 4 to 64 MiB; 0: none)\n"
		"                dev, suid       honour device files and setuid/setgid bits (root\n"
		"                                only).  Default nodev,nosuid: the image may come\n"
		"                                from anyone.  (mount -t reflinkfs follows mount(8):\n"
		"                                dev,suid for root unless nodev/nosuid are given.)\n"
		"                allow_other     let other users access the mount\n"
		"                allow_root      let root access the mount\n"
		"                uring           serve requests through FUSE over io_uring\n"
		"                                (kernel 6.16+; root enables the fuse module's\n"
		"                                enable_uring parameter; also env RLFS_URING=1)\n"
		"                nouring         /dev/fuse only (the default)\n"
		"                dax             direct access: the daemon maps the image (mmap)\n"
		"                                and copies file data to and from the mapping;\n"
		"                                files open with direct I/O (no kernel page\n"
		"                                cache), so data lives in one place (also env\n"
		"                                RLFS_DAX=1); refused if the image cannot be mapped\n"
		"                nodax           pread/pwrite of file data (the default)\n"
		"                other FUSE and generic mount options (nosuid, nodev, exec,\n"
		"                noexec, sync, dirsync, max_read=N, ...) are passed to libfuse\n"
		"              default_permissions is always on (the kernel checks access)\n"
		"  -h, --help  this text\n",
		prog, prog);
}

static void usage_mount_helper(FILE *f, const char *prog)
{
	fprintf(f,
		"Usage: %s IMAGE DIR [-sfnv] [-o OPTIONS]\n"
		"\n"
		"mount(8) helper for `mount -t reflinkfs IMAGE DIR`, fstab entries and\n"
		"`mount -o remount,... DIR` (also installed as mount.fuse.reflinkfs, the name\n"
		"mount(8) looks for when it remounts: the kernel calls the type fuse.reflinkfs).\n"
		"  -o OPTIONS  mount options (see `reflinkfs mount --help`); mount(8) passes\n"
		"              neither dev nor suid (they are its defaults), so as root the\n"
		"              mount is dev,suid unless nodev/nosuid are given, as on other\n"
		"              filesystems (and as mount.fuse3 does)\n"
		"  -f          fake: check the arguments, do not mount\n"
		"  -s, -n, -v  sloppy, no mtab, verbose (accepted, ignored)\n"
		"  -h, --help  this text\n",
		prog);
}

static void usage_umount(FILE *f, const char *prog)
{
	fprintf(f,
		"Usage: %s [-l] MOUNTPOINT\n"
		"\n"
		"Unmount a reflinkfs mount and wait until its daemon has written everything\n"
		"back and released the image (umount(2) of a FUSE mount returns earlier).\n"
		"It waits as long as the daemon makes progress, says after 5 s what the\n"
		"daemon is doing, and gives up once it has made none for 120 s\n"
		"(RLFS_UMOUNT_STALL_SECS).\n"
		"  -l          lazy: detach now, finish when no longer busy (does not wait)\n"
		"  -h, --help  this text\n",
		prog);
}

/* Options that belong to fstab/mount(8), not to the filesystem. */
static int is_userspace_only_opt(const char *o)
{
	static const char *const drop[] = {
		"defaults", "auto", "noauto", "user", "nouser", "users", "owner",
		"group", "nofail", "_netdev", "loop", "nofail", NULL,
	};
	for (int i = 0; drop[i]; i++) {
		if (strcmp(o, drop[i]) == 0)
			return 1;
	}
	return strncmp(o, "x-", 2) == 0 || strncmp(o, "comment=", 8) == 0 ||
	       strncmp(o, "helper=", 7) == 0;
}

struct mount_args {
	unsigned flags;
	int debug;
	int uring;
	int dax;                /* -o dax 1, -o nodax -1, else 0 */
	struct rlfs_atime_opts atime;
	long cowgc_s;           /* -o cowgc=SECONDS; -1 not given */
	long cowfill;           /* -o cowfill=BLOCKS; -1 not given */
	long wbresv;            /* -o wbresv=BYTES; -1 not given */
	int dev, suid;          /* 1: dev/suid asked for, -1: nodev/nosuid, 0: neither */
	int remount;
	char *fuse_opts;        /* malloc'd, comma-separated, for libfuse */
	size_t len, cap;
	char *all_opts;         /* every -o list in order (for remount) */
	size_t alen, acap;
};

/* Append o to the comma-separated list *list (length *len, capacity *cap). */
static int add_opt(char **list, size_t *len, size_t *cap, const char *o)
{
	size_t l = strlen(o);
	if (*len + l + 2 > *cap) {
		size_t ncap = (*cap + l + 2) * 2;
		char *n = realloc(*list, ncap);
		if (!n)
			return -ENOMEM;
		*list = n;
		*cap = ncap;
	}
	if (*len)
		(*list)[(*len)++] = ',';
	memcpy(*list + *len, o, l + 1);
	*len += l;
	return 0;
}

static int add_fuse_opt(struct mount_args *ma, const char *o)
{
	return add_opt(&ma->fuse_opts, &ma->len, &ma->cap, o);
}

/* A numeric option o (its value from o + skip) in [0, max] into *v; 0,
 * or -EINVAL with a message naming form. */
static int num_opt(const char *o, size_t skip, long max, const char *form, long *v)
{
	char *end;
	errno = 0;
	long n = strtol(o + skip, &end, 10);
	if (errno || end == o + skip || *end || n < 0 || n > max) {
		fprintf(stderr, "reflinkfs: bad mount option '%s' (%s, 0 to %ld)\n", o, form, max);
		return -EINVAL;
	}
	*v = n;
	return 0;
}

/* Split one -o list into library flags and libfuse options. */
static int parse_mount_opts(struct mount_args *ma, const char *list)
{
	if (add_opt(&ma->all_opts, &ma->alen, &ma->acap, list))
		return -ENOMEM;
	char *copy = strdup(list);
	if (!copy)
		return -ENOMEM;
	char *save = NULL;
	for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		int err = 0;
		if (strcmp(o, "ro") == 0) {
			ma->flags |= RLFS_MOUNT_RDONLY;   /* daemon adds "ro" itself */
		} else if (strcmp(o, "rw") == 0) {
			ma->flags &= ~RLFS_MOUNT_RDONLY;
		} else if (strcmp(o, "remount") == 0) {
			ma->remount = 1;
		} else if (strcmp(o, "debug") == 0) {
			ma->debug = 1;
		} else if (strcmp(o, "uring") == 0) {
			ma->uring = 1;
		} else if (strcmp(o, "nouring") == 0) {
			ma->uring = -1;
		} else if (strcmp(o, "dax") == 0 || strcmp(o, "nodax") == 0) {
			ma->dax = o[0] == 'n' ? -1 : 1;
		} else if (strncmp(o, "cowgc=", 6) == 0) {
			err = num_opt(o, 6, 86400L * 365, "cowgc=SECONDS", &ma->cowgc_s);
		} else if (strncmp(o, "cowfill=", 8) == 0) {
			err = num_opt(o, 8, RLFS_COW_FILL_MAX, "cowfill=BLOCKS", &ma->cowfill);
		} else if (strncmp(o, "wbresv=", 7) == 0) {
			err = num_opt(o, 7, 1L << 40, "wbresv=BYTES", &ma->wbresv);
		} else if (rlfs_parse_atime_opt(o, &ma->atime)) {
			/* the daemon applies them (remount.c) */
		} else if (strcmp(o, "dev") == 0 || strcmp(o, "nodev") == 0) {
			ma->dev = o[0] == 'n' ? -1 : 1;
		} else if (strcmp(o, "suid") == 0 || strcmp(o, "nosuid") == 0) {
			ma->suid = o[0] == 'n' ? -1 : 1;
		} else if (strcmp(o, "lazytime") == 0 || strcmp(o, "nolazytime") == 0 ||
			   strcmp(o, "iversion") == 0 || strcmp(o, "noiversion") == 0) {
			fprintf(stderr, "reflinkfs: mount option '%s' is not supported by FUSE, ignored\n", o);
		} else if (strcmp(o, "default_permissions") == 0 ||
			   strncmp(o, "fsname=", 7) == 0 || strncmp(o, "subtype=", 8) == 0 ||
			   is_userspace_only_opt(o)) {
			/* always set by the daemon, or not for the kernel */
		} else {
			err = add_fuse_opt(ma, o);
		}
		if (err) {
			free(copy);
			return err;
		}
	}
	free(copy);
	return 0;
}

/*
 * dev and suid: a FUSE mount is nodev,nosuid unless asked otherwise
 * (libfuse's default; fusermount3 refuses them to users).  `reflinkfs
 * mount` keeps that default: an image may come from anyone, and a device
 * node or setuid-root file in it would then work on this machine.  Only
 * root may lift it, with -o dev / -o suid.  mount(8) never passes dev or
 * suid to a helper (they are its defaults), so the helper follows
 * mount(8) and every other filesystem: dev,suid for root unless nodev or
 * nosuid are given (mount.fuse3 does the same).  0, or 1 with a message.
 */
static int dev_suid_opts(const char *prog, struct mount_args *ma, int helper)
{
	int root = geteuid() == 0;
	if (!root && (ma->dev > 0 || ma->suid > 0)) {
		fprintf(stderr, "%s: mount options dev and suid need root (a user's mount is "
			"always nodev,nosuid)\n", prog);
		return 1;
	}
	int dev = ma->dev ? ma->dev > 0 : helper && root;
	int suid = ma->suid ? ma->suid > 0 : helper && root;
	if ((dev && add_fuse_opt(ma, "dev")) || (suid && add_fuse_opt(ma, "suid"))) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}
	return 0;
}

static int do_mount(const char *prog, struct mount_args *ma, int foreground,
		    const char *image, const char *dir, int helper)
{
	if (dev_suid_opts(prog, ma, helper)) {
		free(ma->fuse_opts);
		free(ma->all_opts);
		return 1;
	}
	/* libfuse 3.14 knows noatime (the kernel then shows it); the daemon
	 * sets the other atime flags on the mount itself */
	unsigned how = rlfs_atime_policy(&ma->atime);
	if (how == RLFS_ATIME_NOATIME && add_fuse_opt(ma, "noatime")) {
		fprintf(stderr, "%s: out of memory\n", prog);
		free(ma->fuse_opts);
		free(ma->all_opts);
		return 1;
	}
	struct rlfs_daemon_opts o = {
		.image = image,
		.mountpoint = dir,
		.mount_flags = ma->flags,
		.foreground = foreground,
		.debug = ma->debug,
		.uring = ma->uring,
		.dax = ma->dax,
		.atime = how,
		.nodiratime = ma->atime.nodiratime,
		.cowgc_s = ma->cowgc_s,
		.cowfill = ma->cowfill,
		.wbresv_bytes = ma->wbresv,
		.fuse_opts = ma->fuse_opts,
		.prog = prog,
	};
	int r = rlfs_daemon_run(&o);
	free(ma->fuse_opts);
	free(ma->all_opts);
	return r;
}

static int do_remount(const char *prog, struct mount_args *ma, const char *dir, int helper)
{
	int r = rlfs_daemon_remount(prog, dir, ma->all_opts, helper);
	free(ma->fuse_opts);
	free(ma->all_opts);
	return r;
}

static const struct option help_longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* reflinkfs mount [-f] [-d] [-o OPTS] IMAGE MOUNTPOINT */
static int mount_main(int argc, char **argv)
{
	const char *prog = argv[0];
	struct mount_args ma = { 0 };
	ma.cowgc_s = -1;
	ma.cowfill = -1;
	ma.wbresv = -1;
	int foreground = 0, c, err;
	while ((c = getopt_long(argc, argv, "fdo:h", help_longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			foreground = 1;
			break;
		case 'd':
			ma.debug = 1;
			break;
		case 'o':
			if ((err = parse_mount_opts(&ma, optarg)) != 0) {
				if (err == -ENOMEM)
					fprintf(stderr, "%s: out of memory\n", prog);
				free(ma.fuse_opts);
				free(ma.all_opts);
				return 1;
			}
			break;
		case 'h':
			usage_mount(stdout, prog);
			return 0;
		default:
			fprintf(stderr, "Try '%s --help'.\n", prog);
			return 1;
		}
	}
	if (ma.remount && (argc - optind == 1 || argc - optind == 2))
		return do_remount(prog, &ma, argv[argc - 1], 0);
	if (argc - optind != 2) {
		fprintf(stderr, "%s: expected IMAGE and MOUNTPOINT (try '%s --help')\n", prog, prog);
		free(ma.fuse_opts);
		free(ma.all_opts);
		return 1;
	}
	return do_mount(prog, &ma, foreground, argv[optind], argv[optind + 1], 0);
}

/* mount.reflinkfs SPEC DIR [-sfnv] [-N NS] [-o OPTS] [-t TYPE] */
static int mount_helper_main(int argc, char **argv)
{
	const char *prog = argv[0];
	struct mount_args ma = { 0 };
	ma.cowgc_s = -1;
	ma.cowfill = -1;
	ma.wbresv = -1;
	int fake = 0, c, err;
	while ((c = getopt_long(argc, argv, "sfnvo:t:N:h", help_longopts, NULL)) != -1) {
		switch (c) {
		case 's':
		case 'n':
		case 'v':
		case 't':
			break;
		case 'f':
			fake = 1;
			break;
		case 'N':
			fprintf(stderr, "%s: -N (mount namespace) is not supported\n", prog);
			return 1;
		case 'o':
			if ((err = parse_mount_opts(&ma, optarg)) != 0) {
				if (err == -ENOMEM)
					fprintf(stderr, "%s: out of memory\n", prog);
				free(ma.fuse_opts);
				free(ma.all_opts);
				return 1;
			}
			break;
		case 'h':
			usage_mount_helper(stdout, prog);
			return 0;
		default:
			fprintf(stderr, "Try '%s --help'.\n", prog);
			return 1;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "%s: expected IMAGE and DIR (try '%s --help')\n", prog, prog);
		free(ma.fuse_opts);
		free(ma.all_opts);
		return 1;
	}
	if (fake) {
		free(ma.fuse_opts);
		free(ma.all_opts);
		return 0;
	}
	/* a remount names the mount point; SPEC is the mount's source */
	if (ma.remount)
		return do_remount(prog, &ma, argv[optind + 1], 1);
	/* mount -t fuse.reflinkfs passes the source as shown in mountinfo */
	const char *image = argv[optind];
	if (strncmp(image, "reflinkfs#", 10) == 0 && access(image, F_OK) != 0)
		image += 10;
	return do_mount(prog, &ma, 0, image, argv[optind + 1], 1);
}

/* reflinkfs umount [-l] DIR; umount.fuse.reflinkfs DIR [-nlfvr] [-t TYPE] */
static int umount_main(int argc, char **argv, int helper)
{
	const char *prog = argv[0];
	int lazy = 0, c;
	const char *optstr = helper ? "nlfvrt:N:h" : "lh";
	while ((c = getopt_long(argc, argv, optstr, help_longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			lazy = 1;
			break;
		case 'n':
		case 'f':
		case 'v':
		case 'r':
		case 't':
			break;
		case 'N':
			fprintf(stderr, "%s: -N (mount namespace) is not supported\n", prog);
			return 1;
		case 'h':
			usage_umount(stdout, prog);
			return 0;
		default:
			fprintf(stderr, "Try '%s --help'.\n", prog);
			return 1;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "%s: expected MOUNTPOINT (try '%s --help')\n", prog, prog);
		return 1;
	}
	return rlfs_daemon_umount(prog, argv[optind], lazy);
}

/* Run a command with argv[0] replaced by its display name. */
static int run(int (*fn)(int, char **), const char *name, int argc, char **argv)
{
	argv[0] = (char *)name;
	optind = 1;
	return fn(argc, argv);
}

static int mount_helper_entry(int argc, char **argv)
{
	return mount_helper_main(argc, argv);
}

static int umount_cmd_entry(int argc, char **argv)
{
	return umount_main(argc, argv, 0);
}

static int umount_helper_entry(int argc, char **argv)
{
	return umount_main(argc, argv, 1);
}

int main(int argc, char **argv)
{
	const char *base = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
	base = base ? base + 1 : (argc > 0 && argv[0] ? argv[0] : "reflinkfs");

	if (strcmp(base, "mkfs.reflinkfs") == 0)
		return run(rlfs_mkfs_main, "mkfs.reflinkfs", argc, argv);
	if (strcmp(base, "fsck.reflinkfs") == 0)
		return run(rlfs_fsck_main, "fsck.reflinkfs", argc, argv);
	if (strcmp(base, "mount.reflinkfs") == 0 || strcmp(base, "mount.fuse.reflinkfs") == 0)
		return run(mount_helper_entry, base, argc, argv);
	if (strcmp(base, "umount.reflinkfs") == 0 || strcmp(base, "umount.fuse.reflinkfs") == 0)
		return run(umount_helper_entry, base, argc, argv);

	if (argc < 2) {
		usage_main(stderr);
		return 1;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "mkfs") == 0)
		return run(rlfs_mkfs_main, "reflinkfs mkfs", argc - 1, argv + 1);
	if (strcmp(cmd, "mount") == 0)
		return run(mount_main, "reflinkfs mount", argc - 1, argv + 1);
	if (strcmp(cmd, "umount") == 0 || strcmp(cmd, "unmount") == 0)
		return run(umount_cmd_entry, "reflinkfs umount", argc - 1, argv + 1);
	if (strcmp(cmd, "fsck") == 0)
		return run(rlfs_fsck_main, "reflinkfs fsck", argc - 1, argv + 1);
	if (strcmp(cmd, "logprint") == 0)
		return run(rlfs_logprint_main, "reflinkfs logprint", argc - 1, argv + 1);
	if (strcmp(cmd, "io") == 0)
		return run(rlfs_io_main, "reflinkfs io", argc - 1, argv + 1);
	if (strcmp(cmd, "fsmap") == 0)
		return run(rlfs_fsmap_main, "reflinkfs fsmap", argc - 1, argv + 1);
	if (strcmp(cmd, "dedupe") == 0)
		return run(rlfs_dedupe_main, "reflinkfs dedupe", argc - 1, argv + 1);
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage_main(stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("reflinkfs %s\n", RLFS_VERSION_STRING);
		return 0;
	}
	fprintf(stderr, "reflinkfs: unknown command '%s' (try 'reflinkfs --help')\n", cmd);
	return 1;
}

/*
 * daemon.h: the reflinkfs FUSE daemon (libfuse3 low-level API).
 *
 * rlfs_daemon_run() mounts IMAGE on MOUNTPOINT and serves it until the
 * filesystem is unmounted (umount(8), fusermount3 -u) or the daemon gets
 * SIGTERM/SIGINT/SIGHUP, which unmount cleanly (dirty pages are written back
 * through the daemon before the connection closes).  The library mount is
 * closed (everything flushed, superblock marked clean, image lock released)
 * before the process exits.
 *
 * Unless foreground is set it daemonizes the way mount(8) helpers must: the
 * caller forks, the child opens the filesystem and mounts the FUSE session
 * (threads start only in the child), and the parent returns only once the
 * mount exists, or with the child's error.  Errors are printed as one line
 * on stderr by whichever process sees them.
 */
#ifndef RLFS_FUSE_DAEMON_H
#define RLFS_FUSE_DAEMON_H
#include <stdbool.h>

/* XFS's cowblocks GC after 5 minutes (issue 13 asks for that default;
 * XFS's own sysctl, speculative_cow_prealloc_lifetime, says 1800 s). */
#define RLFS_COWGC_DEFAULT_S 300
/* The writeback reserve's default (rlfs_set_writeback_reserve): a
 * sixteenth of the filesystem, at least 4 MiB, at most 64 MiB. */
#define RLFS_WBRESV_MIN_BYTES (4ll << 20)
#define RLFS_WBRESV_MAX_BYTES (64ll << 20)
struct rlfs_daemon_opts {
	const char *image;          /* image file or block device */
	const char *mountpoint;     /* existing directory */
	unsigned mount_flags;       /* RLFS_MOUNT_RDONLY (reflinkfs/fs.h) */
	int foreground;             /* do not daemonize */
	int debug;                  /* libfuse -d (implies foreground) */
	const char *fuse_opts;      /* extra comma-separated libfuse/mount
	                               options (allow_other, ...), or NULL */
	int uring;                  /* -o uring 1, -o nouring -1, else 0 (fuse/uring.h) */
	int dax;                    /* -o dax 1, -o nodax -1, else 0 (env RLFS_DAX=1
	                               means 1): rlfs_set_dax, and regular files
	                               open FOPEN_DIRECT_IO (daemon.c open_direct) */
	unsigned atime;             /* RLFS_ATIME_* (reflinkfs/fs.h): relatime (0,
	                               the default), strictatime, noatime */
	int nodiratime;             /* no atime updates on directories */
	long cowgc_s;               /* staged CoW blocks idle this long are given
	                               back (-1: default RLFS_COWGC_DEFAULT_S;
	                               0: no timer) */
	long cowfill;               /* rlfs_set_cow_fill blocks (-1: default) */
	long long wbresv_bytes;     /* the writeback reserve (-1: default,
	                               RLFS_WBRESV_* below; 0: none) */
	const char *prog;           /* for error messages, e.g. "reflinkfs mount" */
};

/* Returns the process exit status: 0 (mounted and, in the foreground,
 * cleanly unmounted), 1 on any error (already reported on stderr). */
int rlfs_daemon_run(const struct rlfs_daemon_opts *o);

/*
 * The atime mount options (noatime, atime, relatime, norelatime,
 * strictatime, nostrictatime, nodiratime, diratime), combined as the
 * kernel's mount(2) does (fs/namespace.c path_mount): strictatime wins,
 * then noatime, else relatime; relatime/norelatime change nothing.
 * rlfs_parse_atime_opt notes o in *a (a->given set) and returns 1, or 0
 * if o is not an atime option.  rlfs_atime_policy: the resulting
 * RLFS_ATIME_* (reflinkfs/fs.h).
 */
struct rlfs_atime_opts {
	bool given, noatime, strict, nodiratime;
};
int rlfs_parse_atime_opt(const char *o, struct rlfs_atime_opts *a);
unsigned rlfs_atime_policy(const struct rlfs_atime_opts *a);

/*
 * Remount the reflinkfs mount on mountpoint (mount -o remount,...): opts
 * is the comma-separated option list; ro/rw, nosuid/suid, nodev/dev,
 * noexec/exec, sync/async, dirsync, nosymfollow, and the atime options
 * (noatime, relatime, strictatime, atime, norelatime, nostrictatime,
 * nodiratime, diratime) change, others are ignored.  from_mount8: opts is
 * mount(8)'s merged list (all current options, dev/suid/exec/rw left
 * out), so unnamed flags take their defaults; else unnamed flags keep
 * their current values.  Atime options, if any are given, replace all
 * the mount's atime flags, as mount(2) does; none given keeps them.  Tells the daemon (RLFS_IOC_MOUNT_STATE) around
 * mount(2) MS_REMOUNT; returns once the daemon has followed (read-only:
 * image flushed and clean).  0, or 1 with a message on stderr.
 */
int rlfs_daemon_remount(const char *prog, const char *mountpoint, const char *opts,
			int from_mount8);

/*
 * Unmount a reflinkfs mount and wait until its daemon has flushed and closed
 * the image (the image lock is released).  umount(2) of a FUSE mount
 * returns before the daemon has finished; this does not.  No fixed time
 * limit: it waits while the daemon (the lock holder in /proc/locks) makes
 * progress (I/O, CPU time, disk waits), says on stderr after 5 s what it
 * waits for (the daemon's shutdown step, MiB written), and gives up with
 * exit status 1 once the daemon has made no progress for
 * RLFS_UMOUNT_STALL_SECS seconds (default 120).  lazy: MNT_DETACH /
 * fusermount3 -z (does not wait).  Returns the exit status (0, or 1 with a
 * message).
 */
int rlfs_daemon_umount(const char *prog, const char *mountpoint, int lazy);
#endif

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

struct rlfs_daemon_opts {
	const char *image;          /* image file or block device */
	const char *mountpoint;     /* existing directory */
	unsigned mount_flags;       /* RLFS_MOUNT_RDONLY (reflinkfs/fs.h) */
	int foreground;             /* do not daemonize */
	int debug;                  /* libfuse -d (implies foreground) */
	const char *fuse_opts;      /* extra comma-separated libfuse/mount
	                               options (allow_other, ...), or NULL */
	int uring;                  /* -o uring 1, -o nouring -1, else 0 (fuse/uring.h) */
	const char *prog;           /* for error messages, e.g. "reflinkfs mount" */
};

/* Returns the process exit status: 0 (mounted and, in the foreground,
 * cleanly unmounted), 1 on any error (already reported on stderr). */
int rlfs_daemon_run(const struct rlfs_daemon_opts *o);

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

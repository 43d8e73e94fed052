/*
 * uring.h: FUSE over io_uring for the reflinkfs daemon (see uring.c).
 *
 * Usage: rlfs_fuse_io_install() right after fuse_session_mount(); the rings
 * start by themselves once the kernel has processed INIT; call
 * rlfs_uring_stop() in the shutdown path after the request loop and the
 * slow pool have finished and before fuse_session_unmount() /
 * fuse_session_destroy().
 */
#ifndef RLFS_FUSE_URING_H
#define RLFS_FUSE_URING_H

#include <stdbool.h>

struct fuse_session;

/*
 * Whether to serve requests through io_uring: opt is the mount option
 * (1 "uring", -1 "nouring", 0 neither).  Yes only for "uring" or the
 * environment variable RLFS_URING=1 (not "nouring"): io_uring is opt-in.
 */
bool rlfs_uring_wanted(int opt);

/*
 * Install the custom /dev/fuse io on se (fuse_session_custom_io with
 * fuse_session_fd(se)); call right after fuse_session_mount().  It adds to
 * libfuse's INIT reply what libfuse 3.14 cannot ask for:
 *  - FUSE_HANDLE_KILLPRIV_V2 (kernel 5.11+, if the kernel offers it): the
 *    daemon clears setuid/setgid on write, on chown and on a truncate
 *    that carries FATTR_KILL_SUIDGID; in return the kernel sets SB_NOSEC
 *    and stops asking for security.capability (a GETXATTR round trip) on
 *    every write(2) to a file that has none;
 *  - with uring, FUSE_OVER_IO_URING, starting one ring thread per ring
 *    after it.  Enables /sys/module/fuse/parameters/enable_uring if needed
 *    (root only).
 *  - with direct_mmap (-o dax), FUSE_DIRECT_IO_ALLOW_MMAP (flags2 bit 4 =
 *    bit 36, protocol 7.39, Linux 6.6+, if the kernel's INIT offers it):
 *    the kernel then allows MAP_SHARED of files opened with
 *    FOPEN_DIRECT_IO (fs/fuse/file.c fuse_file_mmap; without it ENODEV),
 *    served through its page cache, which it writes back and drops
 *    around every direct read and write of the range.  Connection-wide:
 *    it applies to every direct-I/O open, not only to dax's.
 * Returns 0; -errno if io_uring was wanted but cannot be used (a message
 * was logged; requests then come through /dev/fuse, KILLPRIV_V2 still
 * applies) or if the custom io could not be installed (nothing changes).
 *
 * on_fatal(-errno) is called once, from a ring thread, if a ring fails for
 * good (a command cannot be submitted or completions cannot be waited for
 * after a second of retries): requests of that queue could no longer be
 * answered, so the caller should end the session (unmount, close the
 * image) instead of leaving applications hanging.  It must not block.
 */
int rlfs_fuse_io_install(struct fuse_session *se, bool uring, bool direct_mmap,
			 void (*on_fatal)(int err));

/*
 * Requests the custom io rewrites for libfuse 3.14 (both on /dev/fuse and
 * on the rings), and what the handlers then see:
 *  - FUSE_TMPFILE (O_TMPFILE) arrives as a create of the name
 *    RLFS_FUSE_TMPFILE_NAME ("/", which no real create can carry);
 *  - the INIT reply asks for FUSE_SETXATTR_EXT when offered, and a
 *    setxattr whose ACL update must clear setgid
 *    (FUSE_SETXATTR_ACL_KILL_SGID) has RLFS_FUSE_XATTR_KILL_SGID in its
 *    flags.
 */
#define RLFS_FUSE_TMPFILE_NAME "/"
#define RLFS_FUSE_XATTR_KILL_SGID (1 << 16)

/*
 * Join the ring threads, then the bulk threads (which finish the requests
 * queued to them): after this no thread of uring.c calls into libfuse or
 * the filesystem.  Buffers, rings and eventfds stay, so replies that other
 * threads (the slow pool) still send are absorbed.  No-op if not started.
 */
void rlfs_uring_quiesce(void);

/*
 * rlfs_uring_quiesce if not done, then release rings, eventfds and (if
 * the kernel ended every command) buffers.  Call after the slow pool has
 * drained.  Safe whether or not the kernel has already ended the commands.
 */
void rlfs_uring_stop(void);

/*
 * Provided by the daemon (fuse/daemon.c): fuse_session_process_buf(se, fb)
 * for one request read into memory, after noting the raw request fields
 * that libfuse 3.14 drops (a WRITE's write_flags: FUSE_WRITE_KILL_SUIDGID).
 * Every request loop (/dev/fuse workers, ring and bulk threads) processes
 * requests through it.
 */
struct fuse_buf;
void rlfs_process_buf(struct fuse_session *se, const struct fuse_buf *fb);

#endif

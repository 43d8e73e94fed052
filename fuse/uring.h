/*
 * uring.h: FUSE over io_uring for the reflinkfs daemon (see uring.c).
 *
 * Usage: rlfs_uring_install() right after fuse_session_mount(); the rings
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
 * fuse_session_fd(se)), which asks the kernel for FUSE_OVER_IO_URING in the
 * INIT reply and starts one ring thread per possible CPU after it.  Enables
 * /sys/module/fuse/parameters/enable_uring if needed (root only).  Returns 0,
 * or -errno if io_uring cannot be used (a message was logged; the session
 * then keeps the classic /dev/fuse path).
 *
 * on_fatal(-errno) is called once, from a ring thread, if a ring fails for
 * good (a command cannot be submitted or completions cannot be waited for
 * after a second of retries): requests of that queue could no longer be
 * answered, so the caller should end the session (unmount, close the
 * image) instead of leaving applications hanging.  It must not block.
 */
int rlfs_uring_install(struct fuse_session *se, void (*on_fatal)(int err));

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

#endif

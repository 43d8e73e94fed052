/*
 * mapguard.h: memory operations on a file mapping that survive the
 * mapping's faults.
 *
 * A load or store in a MAP_SHARED mapping of a file is SIGBUS, not an
 * error return, when the kernel cannot back the page: an I/O error of the
 * file's storage, a page past the file's end (the file was truncated under
 * the mapping), or no space on the host for a page of a sparse file
 * (mmap(2), "SIGBUS"; fsdax's dax_iomap_fault answers VM_FAULT_SIGBUS the
 * same way).  The direct-access data path (dev.h: rlfs_dev_map) does every
 * access to its mapping through these functions, so such a fault becomes a
 * return value the caller can turn into -EIO or retry through pwrite(2),
 * and the daemon serving the mount lives on.
 *
 * Mechanism: a process-wide SIGBUS handler (rlfs_map_guard_install, at
 * each rlfs_dev_map) jumps back to the guarded call of the faulting
 * thread (siglongjmp to a thread-local sigjmp_buf set only for the length
 * of the memcpy/memset/memcmp).  A SIGBUS outside a guarded call, or
 * one sent by kill(2)/tgkill(2)/sigqueue(3) (siginfo_t si_code <= 0)
 * anywhere, goes to the handler that was there before, or gets the
 * default action (the process dies as it would have without us).
 */
#ifndef RLFS_MAPGUARD_H
#define RLFS_MAPGUARD_H

#include <stddef.h>

/* Install the SIGBUS handler, process-wide; a later call does nothing
 * unless another handler was installed since, which ours then chains to
 * for faults outside guarded calls.  0, or -errno from sigaction(2). */
int rlfs_map_guard_install(void);

/* memcpy(dst, src, n) / memset(dst, 0, n) where either side may lie in a
 * file mapping.  0, or -EFAULT if a page faulted (SIGBUS): part of dst may
 * have been written.  Without rlfs_map_guard_install a fault kills the
 * process as a plain memcpy would. */
int rlfs_map_copy(void *dst, const void *src, size_t n);
int rlfs_map_zero(void *dst, size_t n);
/* Compare n bytes of a and b (either may be NULL: zeros).  0 equal,
 * 1 different, -EFAULT if a page faulted. */
int rlfs_map_cmp(const void *a, const void *b, size_t n);

#endif

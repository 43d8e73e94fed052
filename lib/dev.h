/*
 * dev.h: the block device under a mount, as a small vtable so that tests can
 * use memory and (later) fault-injecting or crash-recording devices.
 * All offsets and lengths are bytes.  Every call returns 0 or a negative
 * errno; short reads past the end of the device give -EIO.
 */
#ifndef RLFS_DEV_H
#define RLFS_DEV_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct rlfs_dev;
struct rlfs_dev_ops {
	int (*pread)(struct rlfs_dev *dev, void *buf, size_t len, uint64_t off);
	int (*pwrite)(struct rlfs_dev *dev, const void *buf, size_t len, uint64_t off);
	int (*flush)(struct rlfs_dev *dev);   /* durable: fdatasync */
	void (*close)(struct rlfs_dev *dev);
	/* optional: one write gathered from iovcnt buffers (1..IOV_MAX),
	 * always through the page cache; NULL: callers copy into one buffer */
	int (*pwritev)(struct rlfs_dev *dev, const struct iovec *iov, int iovcnt, uint64_t off);
	/* optional: start reading [off, off+len) into the cache without
	 * waiting (a hint: nothing to report); NULL: no such cache */
	void (*prefetch)(struct rlfs_dev *dev, uint64_t off, uint64_t len);
};
struct rlfs_dev {
	const struct rlfs_dev_ops *ops;
	uint64_t size_bytes;
	int fd;             /* -1 for memory devices */
	bool writable;      /* fd is open for writing (memory devices: true) */
	/* After rlfs_dev_make_writable: the read-only descriptor of the open,
	 * kept because it holds the image's flock; else -1. */
	int lock_fd;
	/* A second descriptor of a writable image opened O_DIRECT, for large
	 * aligned data writes (rlfs_dev_pwrite picks it), or -1. */
	int dio_fd;
	_Atomic bool dio_refused;   /* a direct write failed with EINVAL: stop trying */
	_Atomic uint64_t map_faults; /* mapped accesses that faulted (mapguard.h) */
	void *priv;
	/* Direct access (rlfs_dev_map): the whole device mapped MAP_SHARED
	 * (size_bytes long; writable iff the device is), or NULL.  File data
	 * is copied to and from it (rlfs_dev_data_pread/pwrite); the flush
	 * of a mapped file device is msync(MS_SYNC) of the whole mapping. */
	uint8_t *map;
};

/* Writes of at least this many bytes whose buffer address, offset and
 * length are multiples of RLFS_DIO_ALIGN bytes bypass the host's page
 * cache (O_DIRECT): one copy less and no dirty host pages to flush later.
 * Reads stay buffered; the kernel keeps the two coherent (a direct write
 * writes back and invalidates cached pages of its range). */
#define RLFS_DIO_MIN_BYTES (64u * 1024)
#define RLFS_DIO_ALIGN 4096u

/*
 * Open an image file or block device.  writable: open O_RDWR, else O_RDONLY.
 * lock: take an exclusive flock (non-blocking) so a second mount of the same
 * image fails with -EBUSY.  Returns 0, -errno from open/flock/fstat.
 */
int rlfs_dev_open(const char *path, int writable, int lock, struct rlfs_dev **devp);
/*
 * Make a device opened read-only writable (a read-only mount remounted
 * read-write): reopen the same file O_RDWR through /proc/self/fd and put
 * the new descriptor in place of the old one (dup3, atomic for concurrent
 * readers), plus the O_DIRECT descriptor.  The old open file description
 * is kept (lock_fd) because it holds the image's flock, so the lock is
 * never released on the way.  0 (also if already writable), or -errno
 * from open (-EACCES, -EROFS: the image cannot be written).
 */
int rlfs_dev_make_writable(struct rlfs_dev *dev);
/* A zero-filled memory device of size_bytes; -ENOMEM. */
int rlfs_dev_open_mem(uint64_t size_bytes, struct rlfs_dev **devp);
/*
 * Direct access, after fsdax (Documentation/filesystems/dax.rst): map the
 * whole device into memory with mmap(2) MAP_SHARED, PROT_READ plus
 * PROT_WRITE if the device is writable, and stop using the O_DIRECT
 * descriptor (metadata writes stay buffered, so the page cache the mapping
 * shares is never bypassed).  From then on rlfs_dev_data_pread/pwrite copy
 * file data with memcpy, and the file device's flush is
 * msync(MS_SYNC) of the mapping (msync(2): on Linux a data sync of the
 * mapped file range, which is the whole image; it replaces fdatasync).
 * A memory device is its own mapping.  0 (also if already mapped),
 * -EFBIG (the device does not fit the address space: 32-bit hosts),
 * -EINVAL (empty device), or -errno from mmap (-ENODEV: the file or block
 * device does not support mmap; -ENOMEM).  The mapping lives until close.
 * The first call installs mapguard.h's SIGBUS handler (process-wide): an
 * I/O error under a mapped page, the host out of space for a page of a
 * sparse image, or the image truncated under the mapping, is then not the
 * death of the process: the access faults (counted in map_faults) and is
 * done once more through pread/pwrite, whose error it returns (a write
 * past a truncated image's end extends it again, as pwrite does).
 */
int rlfs_dev_map(struct rlfs_dev *dev);
/* Copy file data between buf and the device bytes [off, off+len): with
 * rlfs_dev_map's mapping a memcpy, else the device's pread/pwrite.  0 or
 * -EIO (past the end), or the device's error; a fault of the mapping is
 * retried through pread/pwrite, whose error (-EIO, -ENOSPC) is returned. */
int rlfs_dev_data_pread(struct rlfs_dev *dev, void *buf, size_t len, uint64_t off);
/* A hint that device bytes [off, off+len) will be read soon: an image file
 * starts reading them into the host page cache at once
 * (posix_fadvise(2) POSIX_FADV_WILLNEED), so that the reads of a
 * fragmented file's pieces, each a pread of its own, reach the disk
 * together instead of one after the other.  No-op for the mapping and
 * for devices without a cache.  Never fails. */
void rlfs_dev_data_prefetch(struct rlfs_dev *dev, uint64_t off, uint64_t len);
int rlfs_dev_data_pwrite(struct rlfs_dev *dev, const void *buf, size_t len, uint64_t off);
/* Copy len bytes of device data from src_off to dst_off (ranges must not
 * overlap), through the mapping (one memcpy, no bounce buffer) or, unmapped,
 * through a bounce buffer of the caller (bounce_bytes, > 0).  0 or -errno. */
int rlfs_dev_data_copy(struct rlfs_dev *dev, uint64_t dst_off, uint64_t src_off, uint64_t len,
		       uint8_t *bounce, size_t bounce_bytes);
/* Set len bytes of device data at off to zero: memset in the mapping, else
 * pwrite of zeros.  0 or -errno. */
int rlfs_dev_data_zero(struct rlfs_dev *dev, uint64_t off, uint64_t len);
/* Compare len bytes at a and b, pointers into the mapping from
 * rlfs_dev_data_at (NULL: zeros): the fault-guarded memcmp; after a fault
 * both sides are read through pread instead.  0 equal, 1 different,
 * -ENOMEM, or pread's error (-EIO). */
int rlfs_dev_data_cmp(struct rlfs_dev *dev, const uint8_t *a, const uint8_t *b, size_t len);
/* The mapped bytes [off, off+len) for in-place use (dedupe's compare, only
 * through rlfs_dev_data_cmp), or NULL without a mapping or past the end. */
static inline const uint8_t *rlfs_dev_data_at(const struct rlfs_dev *d, uint64_t off, size_t len)
{
	return d->map && off + len <= d->size_bytes && off + len >= off ? d->map + off : NULL;
}
static inline int rlfs_dev_pread(struct rlfs_dev *d, void *b, size_t l, uint64_t o)
{ return d->ops->pread(d, b, l, o); }
static inline int rlfs_dev_pwrite(struct rlfs_dev *d, const void *b, size_t l, uint64_t o)
{ return d->ops->pwrite(d, b, l, o); }
static inline int rlfs_dev_flush(struct rlfs_dev *d) { return d->ops->flush(d); }
static inline void rlfs_dev_close(struct rlfs_dev *d) { if (d) d->ops->close(d); }
#endif

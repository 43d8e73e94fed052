/*
 * dev.c: block devices.  The file device does positional I/O on an image
 * file or a block device; the memory device backs unit tests.
 */
#include "dev.h"
#include "mapguard.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct rlfs_dev_ops mem_ops;

static int file_pread(struct rlfs_dev *dev, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	if (off + len > dev->size_bytes)
		return -EIO;
	while (len) {
		ssize_t n = pread(dev->fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0) /* hole past EOF of a short image: zeros */
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static bool dio_ok(const struct rlfs_dev *dev, const void *buf, size_t len, uint64_t off)
{
	return dev->dio_fd >= 0 && !atomic_load(&dev->dio_refused) && len >= RLFS_DIO_MIN_BYTES &&
	       (((uintptr_t)buf | (uintptr_t)len | (uintptr_t)off) & (RLFS_DIO_ALIGN - 1)) == 0;
}

static int file_pwrite(struct rlfs_dev *dev, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	if (off + len > dev->size_bytes)
		return -EIO;
	int fd = dio_ok(dev, buf, len, off) ? dev->dio_fd : dev->fd;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINVAL && fd != dev->fd) {
			/* the host filesystem refuses direct writes (alignment
			 * it needs is larger, or none at all): buffered from now */
			atomic_store(&dev->dio_refused, true);
			fd = dev->fd;
			continue;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int file_pwritev(struct rlfs_dev *dev, const struct iovec *iov_in, int iovcnt, uint64_t off)
{
	struct iovec iov[IOV_MAX];
	if (iovcnt < 1 || iovcnt > IOV_MAX)
		return -EINVAL;
	size_t len = 0;
	for (int i = 0; i < iovcnt; i++) {
		iov[i] = iov_in[i];
		len += iov[i].iov_len;
	}
	if (off + len > dev->size_bytes)
		return -EIO;
	struct iovec *v = iov;
	while (len) {
		ssize_t n = pwritev(dev->fd, v, iovcnt, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		len -= (size_t)n;
		off += (uint64_t)n;
		/* a short write: skip what went, go on from the rest */
		while (n > 0 && (size_t)n >= v->iov_len) {
			n -= (ssize_t)v->iov_len;
			v++;
			iovcnt--;
		}
		if (n > 0) {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int file_flush(struct rlfs_dev *dev)
{
	if (dev->map)   /* the data sync of the mapped (whole) file */
		return msync(dev->map, (size_t)dev->size_bytes, MS_SYNC) ? -errno : 0;
	return fdatasync(dev->fd) ? -errno : 0;
}

static void file_close(struct rlfs_dev *dev)
{
	if (dev->map)
		munmap(dev->map, (size_t)dev->size_bytes);
	if (dev->dio_fd >= 0)
		close(dev->dio_fd);
	close(dev->fd);
	if (dev->lock_fd >= 0)
		close(dev->lock_fd);
	free(dev);
}

static void file_prefetch(struct rlfs_dev *dev, uint64_t off, uint64_t len)
{
	if (off < dev->size_bytes)
		(void)posix_fadvise(dev->fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
}

static const struct rlfs_dev_ops file_ops = {
	.pread = file_pread, .pwrite = file_pwrite, .pwritev = file_pwritev,
	.flush = file_flush, .close = file_close, .prefetch = file_prefetch,
};

int rlfs_dev_open(const char *path, int writable, int lock, struct rlfs_dev **devp)
{
	int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (lock && flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno == EWOULDBLOCK ? -EBUSY : -errno;
		close(fd);
		return err;
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	uint64_t size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &size) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	struct rlfs_dev *dev = calloc(1, sizeof(*dev));
	if (!dev) {
		close(fd);
		return -ENOMEM;
	}
	dev->ops = &file_ops;
	dev->fd = fd;
	dev->writable = writable;
	dev->lock_fd = -1;
	/* not every host filesystem supports O_DIRECT (tmpfs before 6.6) */
	dev->dio_fd = writable ? open(path, O_RDWR | O_DIRECT | O_CLOEXEC) : -1;
	dev->size_bytes = size;
	*devp = dev;
	return 0;
}

int rlfs_dev_make_writable(struct rlfs_dev *dev)
{
	if (dev->writable)
		return 0;
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", dev->fd);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* keep the locked open file description alive */
	int keep = fcntl(dev->fd, F_DUPFD_CLOEXEC, 0);
	if (keep < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	if (dup3(fd, dev->fd, O_CLOEXEC) < 0) {
		int err = -errno;
		close(keep);
		close(fd);
		return err;
	}
	close(fd);
	dev->lock_fd = keep;
	if (dev->map) {
		/* the read-only mapping becomes writable: map the same bytes
		 * again over it (MAP_FIXED replaces it in one step, so readers
		 * of the mapping never see a gap) */
		void *m = mmap(dev->map, (size_t)dev->size_bytes, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_FIXED, dev->fd, 0);
		if (m == MAP_FAILED)
			return -errno;
	} else {
		dev->dio_fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	}
	dev->writable = true;
	return 0;
}

int rlfs_dev_map(struct rlfs_dev *dev)
{
	if (dev->map)
		return 0;
	if (dev->size_bytes == 0)
		return -EINVAL;
	if (dev->size_bytes > (uint64_t)SIZE_MAX / 2)
		return -EFBIG;
	if (dev->ops == &mem_ops) {     /* the memory is the mapping */
		dev->map = dev->priv;
		return 0;
	}
	if (dev->ops != &file_ops)      /* crash-recording and other devices */
		return -ENODEV;
	int err = rlfs_map_guard_install();
	if (err)
		return err;
	void *m = mmap(NULL, (size_t)dev->size_bytes,
		       PROT_READ | (dev->writable ? PROT_WRITE : 0), MAP_SHARED, dev->fd, 0);
	if (m == MAP_FAILED)
		return -errno;
	dev->map = m;
	/* metadata writes stay buffered from now on: an O_DIRECT write
	 * would bypass (and invalidate) the pages the mapping shares */
	atomic_store(&dev->dio_refused, true);
	return 0;
}

/*
 * Accesses to the mapping go through mapguard.h: a page the kernel cannot
 * back (an I/O error under it, the host out of space for a sparse image's
 * page, the image truncated under us) faults there as -EFAULT instead of
 * killing the daemon with SIGBUS.  The access is then done once more
 * through the descriptor (pread/pwrite share the page cache with the
 * mapping), which gives the real error (-EIO, -ENOSPC) or, if the fault
 * was passing, the data.
 */
static int copy_unmapped(struct rlfs_dev *dev, uint64_t dst_off, uint64_t src_off, uint64_t len,
			 uint8_t *bounce, size_t bounce_bytes)
{
	while (len > 0) {
		size_t n = (size_t)(len < bounce_bytes ? len : bounce_bytes);
		int err = rlfs_dev_pread(dev, bounce, n, src_off);
		if (!err)
			err = rlfs_dev_pwrite(dev, bounce, n, dst_off);
		if (err)
			return err;
		src_off += n;
		dst_off += n;
		len -= n;
	}
	return 0;
}

static int zero_unmapped(struct rlfs_dev *dev, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[64 * 1024];
	while (len > 0) {
		size_t n = (size_t)(len < sizeof(zeros) ? len : sizeof(zeros));
		int err = rlfs_dev_pwrite(dev, zeros, n, off);
		if (err)
			return err;
		off += n;
		len -= n;
	}
	return 0;
}

static bool mapped_range(const struct rlfs_dev *dev, uint64_t off, uint64_t len)
{
	return off + len <= dev->size_bytes && off + len >= off;
}

int rlfs_dev_data_pread(struct rlfs_dev *dev, void *buf, size_t len, uint64_t off)
{
	if (!dev->map)
		return rlfs_dev_pread(dev, buf, len, off);
	if (!mapped_range(dev, off, len))
		return -EIO;
	if (rlfs_map_copy(buf, dev->map + off, len) == 0)
		return 0;
	atomic_fetch_add(&dev->map_faults, 1);
	return rlfs_dev_pread(dev, buf, len, off);
}

void rlfs_dev_data_prefetch(struct rlfs_dev *dev, uint64_t off, uint64_t len)
{
	if (!dev->map && dev->ops->prefetch)
		dev->ops->prefetch(dev, off, len);
}

int rlfs_dev_data_pwrite(struct rlfs_dev *dev, const void *buf, size_t len, uint64_t off)
{
	if (!dev->map)
		return rlfs_dev_pwrite(dev, buf, len, off);
	if (!mapped_range(dev, off, len))
		return -EIO;
	if (!dev->writable)
		return -EROFS;
	if (rlfs_map_copy(dev->map + off, buf, len) == 0)
		return 0;
	atomic_fetch_add(&dev->map_faults, 1);
	return rlfs_dev_pwrite(dev, buf, len, off);
}

int rlfs_dev_data_copy(struct rlfs_dev *dev, uint64_t dst_off, uint64_t src_off, uint64_t len,
		       uint8_t *bounce, size_t bounce_bytes)
{
	if (dev->map) {
		if (!mapped_range(dev, dst_off, len) || !mapped_range(dev, src_off, len))
			return -EIO;
		if (!dev->writable)
			return -EROFS;
		if (rlfs_map_copy(dev->map + dst_off, dev->map + src_off, (size_t)len) == 0)
			return 0;
		atomic_fetch_add(&dev->map_faults, 1);
		uint8_t *b = malloc(64 * 1024);
		if (!b)
			return -ENOMEM;
		int err = copy_unmapped(dev, dst_off, src_off, len, b, 64 * 1024);
		free(b);
		return err;
	}
	if (!bounce || bounce_bytes == 0)
		return -EINVAL;
	return copy_unmapped(dev, dst_off, src_off, len, bounce, bounce_bytes);
}

int rlfs_dev_data_zero(struct rlfs_dev *dev, uint64_t off, uint64_t len)
{
	if (dev->map) {
		if (!mapped_range(dev, off, len))
			return -EIO;
		if (!dev->writable)
			return -EROFS;
		if (rlfs_map_zero(dev->map + off, (size_t)len) == 0)
			return 0;
		atomic_fetch_add(&dev->map_faults, 1);
	}
	return zero_unmapped(dev, off, len);
}

int rlfs_dev_data_cmp(struct rlfs_dev *dev, const uint8_t *a, const uint8_t *b, size_t len)
{
	int c = rlfs_map_cmp(a, b, len);
	if (c != -EFAULT)
		return c;
	atomic_fetch_add(&dev->map_faults, 1);
	/* once more through pread (the real error, or the data if the
	 * fault was passing), both sides into buffers */
	uint8_t *x = malloc(len ? len : 1), *y = b ? malloc(len ? len : 1) : NULL;
	int err = x && (y || !b) ? 0 : -ENOMEM;
	if (!err && a)
		err = rlfs_dev_pread(dev, x, len, (uint64_t)(a - dev->map));
	else if (!err)
		memset(x, 0, len);
	if (!err && b)
		err = rlfs_dev_pread(dev, y, len, (uint64_t)(b - dev->map));
	if (!err)
		err = rlfs_map_cmp(x, b ? y : NULL, len) != 0;
	free(x);
	free(y);
	return err;
}

static int mem_pread(struct rlfs_dev *dev, void *buf, size_t len, uint64_t off)
{
	if (off + len > dev->size_bytes)
		return -EIO;
	memcpy(buf, (uint8_t *)dev->priv + off, len);
	return 0;
}

static int mem_pwrite(struct rlfs_dev *dev, const void *buf, size_t len, uint64_t off)
{
	if (off + len > dev->size_bytes)
		return -EIO;
	memcpy((uint8_t *)dev->priv + off, buf, len);
	return 0;
}

static int mem_flush(struct rlfs_dev *dev)
{
	(void)dev;
	return 0;
}

static void mem_close(struct rlfs_dev *dev)
{
	free(dev->priv);
	free(dev);
}

static const struct rlfs_dev_ops mem_ops = {
	.pread = mem_pread, .pwrite = mem_pwrite, .flush = mem_flush, .close = mem_close,
};

int rlfs_dev_open_mem(uint64_t size_bytes, struct rlfs_dev **devp)
{
	struct rlfs_dev *dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	dev->priv = calloc(1, size_bytes);
	if (!dev->priv) {
		free(dev);
		return -ENOMEM;
	}
	dev->ops = &mem_ops;
	dev->fd = -1;
	dev->writable = true;
	dev->lock_fd = -1;
	dev->dio_fd = -1;
	dev->size_bytes = size_bytes;
	*devp = dev;
	return 0;
}

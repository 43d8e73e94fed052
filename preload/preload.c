/*
 * preload.c: libreflinkfs-preload.so, an LD_PRELOAD shim that makes the
 * standard reflink and extent-map ioctls work on reflinkfs (FUSE) files.
 *
 * The kernel answers FICLONE, FICLONERANGE and FS_IOC_FIEMAP itself and
 * never forwards them to a FUSE daemon (fs/ioctl.c do_vfs_ioctl: FUSE has
 * no remap_file_range and no fiemap, so they fail with EOPNOTSUPP).  This
 * shim interposes ioctl(2) and, when the target descriptor is on a
 * reflinkfs mount (fstatfs f_type FUSE_SUPER_MAGIC and the mount's type
 * "fuse.reflinkfs" in /proc/self/mountinfo, cached per st_dev), turns
 *
 *   FICLONE        (ioctl_ficlone(2))       into RLFS_IOC_CLONE
 *   FICLONERANGE   (ioctl_ficlonerange(2))  into RLFS_IOC_CLONE_RANGE
 *   FIDEDUPERANGE  (ioctl_fideduperange(2)) into batches of
 *                  RLFS_IOC_DEDUPE_RANGE
 *   FS_IOC_FIEMAP  (Documentation/filesystems/fiemap.rst) into batches of
 *                  RLFS_IOC_GET_EXTENTS
 *   FS_IOC_GETFSMAP (ioctl_getfsmap(2)) into batches of RLFS_IOC_GETFSMAP
 *   XFS_IOC_EXCHANGE_RANGE (ioctl_xfs_exchange_range(2)) into
 *                  RLFS_IOC_EXCHANGE_RANGE
 *   XFS_IOC_START_COMMIT, XFS_IOC_COMMIT_RANGE (ioctl_xfs_commit_range(2))
 *                  into RLFS_IOC_START_COMMIT / RLFS_IOC_COMMIT_RANGE
 *   XFS_IOC_FSGEOMETRY  answered from RLFS_IOC_FSMAP_GEOM (block size, AG
 *                  size and count, blocks; the rest zero), for the AG
 *                  columns of `xfs_io -c "fsmap -v"`
 *
 * and interposes fallocate(2)/fallocate64 for FALLOC_FL_UNSHARE_RANGE
 * (which the kernel does not pass to FUSE) -> RLFS_IOC_UNSHARE_RANGE.
 *
 * (reflinkfs/ioctl.h).  Every other request, and every request on a
 * descriptor that is not on reflinkfs, goes to the real ioctl unchanged.
 * Errors are those of the kernel's implementation (the daemon mirrors its
 * checks); FIEMAP follows fs/ioctl.c ioctl_fiemap/fiemap_prep.
 *
 * Usage: LD_PRELOAD=/usr/local/lib/libreflinkfs-preload.so cp --reflink=always A B
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
/* define fallocate and fallocate64 as two symbols (no __REDIRECT) */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fsmap.h>
#include <linux/fs.h>

#include <reflinkfs/ioctl.h>

#define RLFS_FUSE_SUPER_MAGIC 0x65735546

/* exported: the interposed symbol */
int ioctl(int fd, unsigned long request, ...);

typedef int (*ioctl_fn)(int, unsigned long, ...);

static ioctl_fn real_ioctl_fn(void)
{
	static ioctl_fn fn;
	ioctl_fn f = __atomic_load_n(&fn, __ATOMIC_ACQUIRE);
	if (!f) {
		f = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
		__atomic_store_n(&fn, f, __ATOMIC_RELEASE);
	}
	return f;
}

static int real_ioctl(int fd, unsigned long request, void *arg)
{
	ioctl_fn f = real_ioctl_fn();
	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return f(fd, request, arg);
}

typedef int (*fstatfs_fn)(int, struct statfs *);

/* glibc's fstatfs (the shim interposes fstatfs and fstatfs64 itself). */
static int real_fstatfs(int fd, struct statfs *buf)
{
	static fstatfs_fn fn;
	fstatfs_fn f = __atomic_load_n(&fn, __ATOMIC_ACQUIRE);
	if (!f) {
		f = (fstatfs_fn)dlsym(RTLD_NEXT, "fstatfs");
		__atomic_store_n(&fn, f, __ATOMIC_RELEASE);
	}
	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return f(fd, buf);
}

/* ------------------------------------------------------------------ */
/* Is fd on a reflinkfs mount?  Cached per device number. */

#define DEVCACHE 32
static struct {
	dev_t dev;
	bool valid, is_rlfs;
} g_cache[DEVCACHE];
static unsigned g_cache_next;
static pthread_mutex_t g_cache_lock = PTHREAD_MUTEX_INITIALIZER;

/* Look dev up in /proc/self/mountinfo: is any mount of it fuse.reflinkfs? */
static bool dev_is_reflinkfs(dev_t dev)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	while (!found && getline(&line, &cap, f) > 0) {
		unsigned id, parent, maj, min;
		if (sscanf(line, "%u %u %u:%u", &id, &parent, &maj, &min) != 4)
			continue;
		if (makedev(maj, min) != dev)
			continue;
		char *sep = strstr(line, " - ");
		if (sep && strncmp(sep + 3, "fuse.reflinkfs ", 15) == 0)
			found = true;
	}
	free(line);
	fclose(f);
	return found;
}

static bool fd_is_reflinkfs(int fd)
{
	int saved = errno;
	struct statfs sfs;
	struct stat st;
	bool r = false;
	if (real_fstatfs(fd, &sfs) != 0 || (unsigned long)sfs.f_type != RLFS_FUSE_SUPER_MAGIC ||
	    fstat(fd, &st) != 0)
		goto out;
	pthread_mutex_lock(&g_cache_lock);
	for (unsigned i = 0; i < DEVCACHE; i++) {
		if (g_cache[i].valid && g_cache[i].dev == st.st_dev) {
			r = g_cache[i].is_rlfs;
			pthread_mutex_unlock(&g_cache_lock);
			goto out;
		}
	}
	pthread_mutex_unlock(&g_cache_lock);
	r = dev_is_reflinkfs(st.st_dev);
	pthread_mutex_lock(&g_cache_lock);
	unsigned slot = g_cache_next++ % DEVCACHE;
	g_cache[slot].dev = st.st_dev;
	g_cache[slot].is_rlfs = r;
	g_cache[slot].valid = true;
	pthread_mutex_unlock(&g_cache_lock);
out:
	errno = saved;
	return r;
}

/* ------------------------------------------------------------------ */
/* translations */

/* After a clone: the kernel keeps its own mtime/ctime of a FUSE file under
 * the writeback cache and never takes the daemon's, so set them to now
 * through the kernel (a SETATTR it applies locally too), as the clone
 * did.  Errors are ignored (the clone itself succeeded). */
static void touch_mtime(int fd)
{
	int saved = errno;
	struct timespec ts[2] = { { 0, UTIME_OMIT }, { 0, UTIME_NOW } };
	(void)futimens(fd, ts);
	errno = saved;
}

static int do_ficlone(int fd, int src_fd)
{
	struct rlfs_ioc_clone a;
	memset(&a, 0, sizeof(a));
	a.src_fd = src_fd;
	int r = real_ioctl(fd, RLFS_IOC_CLONE, &a);
	if (r == 0)
		touch_mtime(fd);
	return r;
}

static int do_ficlonerange(int fd, const struct file_clone_range *u)
{
	if (!u) {
		errno = EFAULT;
		return -1;
	}
	struct rlfs_ioc_clone_range a = {
		.src_fd = u->src_fd,
		.src_offset = u->src_offset,
		.src_length = u->src_length,
		.dest_offset = u->dest_offset,
	};
	int r = real_ioctl(fd, RLFS_IOC_CLONE_RANGE, &a);
	if (r == 0)
		touch_mtime(fd);
	return r;
}

/*
 * FIDEDUPERANGE as fs/ioctl.c ioctl_file_dedupe_range: an argument of
 * more than a page (24 bytes + 32 per destination: 127 destinations with
 * 4 KiB pages) is ENOMEM; the destinations go to the daemon in batches of
 * RLFS_IOC_DEDUPE_MAX (one batch wherever pages are 4 KiB or 16 KiB), and
 * each one's status and bytes_deduped come back into the caller's array.
 * A whole-call error (EINVAL, EISDIR: see reflinkfs/ioctl.h) fails the
 * ioctl; a later batch cannot meet one the first did not (same source,
 * same checks), except a source truncated in between.
 */
static int do_fideduperange(int fd, struct file_dedupe_range *u)
{
	if (!u) {
		errno = EFAULT;
		return -1;
	}
	long pg = sysconf(_SC_PAGESIZE);
	uint16_t count = u->dest_count;
	size_t size = sizeof(*u) + (size_t)count * sizeof(u->info[0]);
	if (pg > 0 && size > (size_t)pg) {
		errno = ENOMEM;
		return -1;
	}
	struct rlfs_ioc_dedupe_range *a = malloc(sizeof(*a));
	if (!a) {
		errno = ENOMEM;
		return -1;
	}
	uint16_t done = 0;
	int r = 0;
	do {
		uint16_t n = (uint16_t)(count - done);
		if (n > RLFS_IOC_DEDUPE_MAX)
			n = RLFS_IOC_DEDUPE_MAX;
		memset(a, 0, sizeof(*a));
		a->src_offset = u->src_offset;
		a->src_length = u->src_length;
		a->dest_count = n;
		a->reserved1 = u->reserved1;
		a->reserved2 = u->reserved2;
		for (uint16_t i = 0; i < n; i++) {
			a->info[i].dest_fd = u->info[done + i].dest_fd;
			a->info[i].dest_offset = u->info[done + i].dest_offset;
			a->info[i].reserved = u->info[done + i].reserved;
		}
		r = real_ioctl(fd, RLFS_IOC_DEDUPE_RANGE, a);
		if (r != 0)
			break;
		for (uint16_t i = 0; i < n; i++) {
			u->info[done + i].bytes_deduped = a->info[i].bytes_deduped;
			u->info[done + i].status = a->info[i].status;
		}
		done = (uint16_t)(done + n);
	} while (done < count);
	int saved = errno;
	free(a);
	errno = saved;
	return r;
}

/* FIEMAP_MAX_EXTENTS of fs/ioctl.c */
#define SHIM_FIEMAP_MAX_EXTENTS (UINT_MAX / sizeof(struct fiemap_extent))
/* flags reflinkfs supports (fiemap_prep: SYNC always; XATTR maps the
 * blocks of the extended attributes, RLFS_IOC_EXT_XATTR) */
#define SHIM_FIEMAP_SUPPORTED (FIEMAP_FLAG_SYNC | FIEMAP_FLAG_XATTR)
#define SHIM_MAXBYTES ((uint64_t)INT64_MAX)

/*
 * FS_IOC_FIEMAP as fs/ioctl.c ioctl_fiemap + fiemap_prep +
 * fiemap_fill_next_extent: fm_extent_count 0 counts extents only;
 * fm_length 0 is EINVAL; fm_start past the maximum file size EFBIG;
 * unknown fm_flags give EBADR with fm_flags set to the unknown ones.
 * Extents overlapping [fm_start, fm_start+fm_length) are returned in file
 * order, at most fm_extent_count, with FIEMAP_EXTENT_SHARED, UNWRITTEN
 * and LAST (the file's last extent).  The daemon is asked in batches of
 * RLFS_IOC_EXTENTS_BATCH.  The first batch flushes the file's dirty pages
 * (RLFS_IOC_EXT_SYNC) whether or not FIEMAP_FLAG_SYNC is given: without it
 * the daemon could not see data still in the page cache (XFS would report
 * it as delayed allocation).  FIEMAP_FLAG_XATTR maps the blocks of the
 * extended attributes (RLFS_IOC_EXT_XATTR); dirty data does not matter
 * there, so it flushes only if FIEMAP_FLAG_SYNC asks.
 */
static int do_fiemap(int fd, struct fiemap *fm)
{
	if (!fm) {
		errno = EFAULT;
		return -1;
	}
	if (fm->fm_extent_count > SHIM_FIEMAP_MAX_EXTENTS) {
		errno = EINVAL;
		return -1;
	}
	uint64_t start = fm->fm_start, len = fm->fm_length;
	uint32_t max = fm->fm_extent_count;
	fm->fm_mapped_extents = 0;
	if (len == 0) {
		errno = EINVAL;
		return -1;
	}
	if (start >= SHIM_MAXBYTES) {
		errno = EFBIG;
		return -1;
	}
	if (len > SHIM_MAXBYTES || SHIM_MAXBYTES - len < start)
		len = SHIM_MAXBYTES - start;
	uint32_t incompat = fm->fm_flags & ~(uint32_t)SHIM_FIEMAP_SUPPORTED;
	if (incompat) {
		fm->fm_flags = incompat;
		errno = EBADR;
		return -1;
	}
	struct rlfs_ioc_extents *x = malloc(sizeof(*x));
	if (!x) {
		errno = ENOMEM;
		return -1;
	}
	bool xattr = fm->fm_flags & FIEMAP_FLAG_XATTR;
	bool sync = !xattr || (fm->fm_flags & FIEMAP_FLAG_SYNC);
	uint64_t end = start + len;
	uint64_t pos = start;
	uint32_t mapped = 0;
	bool first = true, stop = false;
	int ret = 0;
	while (!stop && pos < end) {
		memset(x, 0, sizeof(*x));
		x->start = pos;
		x->length = end - pos;
		x->flags = (first && sync ? RLFS_IOC_EXT_SYNC : 0) |
			   (xattr ? RLFS_IOC_EXT_XATTR : 0);
		first = false;
		if (real_ioctl(fd, RLFS_IOC_GET_EXTENTS, x) != 0) {
			ret = -1;
			break;
		}
		if (x->count > RLFS_IOC_EXTENTS_BATCH) {
			errno = EIO;
			ret = -1;
			break;
		}
		for (uint32_t i = 0; i < x->count; i++) {
			const struct rlfs_ioc_extent *e = &x->ext[i];
			if (max == 0) {
				mapped++;
			} else {
				struct fiemap_extent *fe = &fm->fm_extents[mapped];
				memset(fe, 0, sizeof(*fe));
				fe->fe_logical = e->logical;
				fe->fe_physical = e->physical;
				fe->fe_length = e->length;
				fe->fe_flags = e->flags & (FIEMAP_EXTENT_LAST | FIEMAP_EXTENT_UNWRITTEN |
							   FIEMAP_EXTENT_SHARED);
				mapped++;
				if (mapped == max)
					stop = true;
			}
			if (e->flags & RLFS_IOC_EXT_LAST)
				stop = true;
			if (e->length == 0 || e->logical + e->length <= pos) {
				stop = true;        /* no progress: never loop */
			} else {
				pos = e->logical + e->length;
			}
			if (stop)
				break;
		}
		if (x->count < RLFS_IOC_EXTENTS_BATCH)
			break;
	}
	free(x);
	fm->fm_mapped_extents = mapped;
	return ret;
}

_Static_assert(sizeof(off_t) == 8, "64-bit off_t expected");
typedef int (*fallocate_fn)(int, int, off_t, off_t);

/*
 * fallocate(2) with FALLOC_FL_UNSHARE_RANGE (xfs_io funshare): the kernel's
 * FUSE fallocate passes only KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE to the
 * daemon and fails the rest with EOPNOTSUPP, so on reflinkfs it becomes
 * RLFS_IOC_UNSHARE_RANGE; FALLOC_FL_COLLAPSE_RANGE / INSERT_RANGE
 * (fcollapse, finsert) become RLFS_IOC_SHIFT_RANGE and an ftruncate to the
 * new size.  Other modes and filesystems: the real call.
 */
static int shim_fallocate(const char *sym, int fd, int mode, off_t offset, off_t len)
{
	static fallocate_fn fns[2];
	int which = strcmp(sym, "fallocate") == 0 ? 0 : 1;
	fallocate_fn f = __atomic_load_n(&fns[which], __ATOMIC_ACQUIRE);
	if (!f) {
		f = (fallocate_fn)dlsym(RTLD_NEXT, sym);
		__atomic_store_n(&fns[which], f, __ATOMIC_RELEASE);
	}
	if ((mode & FALLOC_FL_UNSHARE_RANGE) &&
	    !(mode & ~(FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE)) && fd_is_reflinkfs(fd)) {
		/* vfs_fallocate's argument checks come first */
		if (offset < 0 || len <= 0) {
			errno = EINVAL;
			return -1;
		}
		struct rlfs_ioc_unshare u;
		memset(&u, 0, sizeof(u));
		u.offset = (uint64_t)offset;
		u.length = (uint64_t)len;
		u.flags = (mode & FALLOC_FL_KEEP_SIZE) ? RLFS_IOC_UNSHARE_KEEP_SIZE : 0;
		return real_ioctl(fd, RLFS_IOC_UNSHARE_RANGE, &u);
	}
	/* collapse or insert alone (combined with other bits, the kernel's
	 * own answer: EOPNOTSUPP, or EINVAL before Linux 6.15) */
	if ((mode == FALLOC_FL_COLLAPSE_RANGE || mode == FALLOC_FL_INSERT_RANGE) &&
	    fd_is_reflinkfs(fd)) {
		/* vfs_fallocate's checks first: offset >= 0, len > 0 */
		if (offset < 0 || len <= 0) {
			errno = EINVAL;
			return -1;
		}
		struct rlfs_ioc_shift a;
		memset(&a, 0, sizeof(a));
		a.offset = (uint64_t)offset;
		a.length = (uint64_t)len;
		a.flags = mode == FALLOC_FL_COLLAPSE_RANGE ? RLFS_IOC_SHIFT_COLLAPSE
							   : RLFS_IOC_SHIFT_INSERT;
		if (real_ioctl(fd, RLFS_IOC_SHIFT_RANGE, &a) != 0)
			return -1;
		/* the kernel's size (writeback cache) follows: the file already
		 * has new_size, so this only updates the kernel's idea of it */
		return ftruncate(fd, (off_t)a.new_size);
	}
	if (!f) {
		errno = ENOSYS;
		return -1;
	}
	return f(fd, mode, offset, len);
}

int fallocate(int fd, int mode, off_t offset, off_t len)
{
	return shim_fallocate("fallocate", fd, mode, offset, len);
}

int fallocate64(int fd, int mode, off64_t offset, off64_t len)
{
	return shim_fallocate("fallocate64", fd, mode, (off_t)offset, (off_t)len);
}

/*
 * FS_IOC_GETFSMAP: batches of RLFS_IOC_FSMAP_BATCH records, each batch's
 * last record the next batch's low key (the protocol the caller uses
 * between its own calls), until fmh_count records are there or the
 * daemon marks one FMR_OF_LAST.  fmh_count 0 counts (one call).  The
 * daemon checks the keys, the flags and the caller's CAP_SYS_ADMIN; the
 * header's reserved fields are checked here.  Records carry the st_dev
 * of fd's mount, as the kernel's would.
 */
static int do_getfsmap(int fd, struct fsmap_head *head)
{
	if (!head) {
		errno = EFAULT;
		return -1;
	}
	for (size_t i = 0; i < sizeof(head->fmh_reserved) / sizeof(head->fmh_reserved[0]); i++)
		if (head->fmh_reserved[i]) {
			errno = EINVAL;
			return -1;
		}
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -1;
	struct rlfs_ioc_fsmap *io = malloc(sizeof(*io));
	if (!io) {
		errno = ENOMEM;
		return -1;
	}
	uint32_t want = head->fmh_count, got = 0;
	int ret = 0;
	memset(io, 0, sizeof(*io));
	io->keys[0] = head->fmh_keys[0];
	io->keys[1] = head->fmh_keys[1];
	for (;;) {
		io->version = RLFS_IOC_ABI_VERSION;
		io->iflags = head->fmh_iflags;
		io->dev = (uint32_t)st.st_dev;
		io->count = want == 0 ? 0 : (want - got < RLFS_IOC_FSMAP_BATCH ? want - got
									  : RLFS_IOC_FSMAP_BATCH);
		io->entries = 0;
		if (real_ioctl(fd, RLFS_IOC_GETFSMAP, io) != 0) {
			ret = -1;
			break;
		}
		head->fmh_oflags = io->oflags;
		if (want == 0) {
			got = io->entries;
			break;
		}
		if (io->entries > io->count) {
			errno = EIO;
			ret = -1;
			break;
		}
		memcpy(&head->fmh_recs[got], io->recs, io->entries * sizeof(struct fsmap));
		got += io->entries;
		if (io->entries < io->count || got == want ||
		    (io->recs[io->entries - 1].fmr_flags & FMR_OF_LAST))
			break;
		io->keys[0] = io->recs[io->entries - 1];
	}
	free(io);
	head->fmh_entries = got;
	return ret;
}

/*
 * XFS_IOC_FSGEOMETRY: struct xfs_fsop_geom (xfs_fs.h, version 5: 256
 * bytes), of which readers of GETFSMAP use the block size, AG size and
 * count and the data blocks; everything else is zero (no realtime, no
 * stripe, no external log).  Field offsets as in xfs_fs.h.
 */
#define SHIM_XFS_GEOM_SIZE 256
#define SHIM_XFS_IOC_FSGEOMETRY _IOR('X', 126, char[SHIM_XFS_GEOM_SIZE])
static int do_fsgeometry(int fd, void *arg)
{
	if (!arg) {
		errno = EFAULT;
		return -1;
	}
	struct rlfs_ioc_fsmap_geom g;
	memset(&g, 0, sizeof(g));
	g.version = RLFS_IOC_ABI_VERSION;
	if (real_ioctl(fd, RLFS_IOC_FSMAP_GEOM, &g) != 0)
		return -1;
	unsigned char *b = arg;
	memset(b, 0, SHIM_XFS_GEOM_SIZE);
	uint32_t sect = 512, v = 5;
	memcpy(b + 0, &g.blocksize, 4);     /* blocksize */
	memcpy(b + 8, &g.agblocks, 4);      /* agblocks */
	memcpy(b + 12, &g.agcount, 4);      /* agcount */
	memcpy(b + 20, &sect, 4);           /* sectsize */
	uint64_t db = g.dblocks;
	memcpy(b + 32, &db, 8);             /* datablocks */
	memcpy(b + 88, &v, 4);              /* version */
	memcpy(b + 96, &sect, 4);           /* logsectsize */
	memcpy(b + 104, &g.blocksize, 4);   /* dirblocksize */
	return 0;
}

/*
 * RLFS_PRELOAD_FSTYPE=xfs (opt-in): fstatfs(2) of a file on reflinkfs
 * reports XFS's f_type (XFS_SUPER_MAGIC) instead of FUSE's, for programs
 * that refuse to dedupe anywhere but on btrfs or XFS by that test:
 * duperemove 0.11 ("Can only dedupe files on btrfs or xfs"), which then
 * uses only FIDEDUPERANGE and FIEMAP, both translated here.  Without the
 * variable fstatfs is glibc's, untouched.  statfs(2) by path is not
 * interposed.
 */
#define SHIM_XFS_SUPER_MAGIC 0x58465342
static int shim_fstatfs(int fd, struct statfs *buf)
{
	int r = real_fstatfs(fd, buf);
	if (r != 0 || (unsigned long)buf->f_type != RLFS_FUSE_SUPER_MAGIC)
		return r;
	const char *t = getenv("RLFS_PRELOAD_FSTYPE");
	if (t && strcmp(t, "xfs") == 0 && fd_is_reflinkfs(fd))
		buf->f_type = SHIM_XFS_SUPER_MAGIC;
	return r;
}

int fstatfs(int fd, struct statfs *buf);
int fstatfs64(int fd, struct statfs64 *buf);

int fstatfs(int fd, struct statfs *buf)
{
	return shim_fstatfs(fd, buf);
}

/* the same structure as struct statfs on 64-bit targets (LFS) */
int fstatfs64(int fd, struct statfs64 *buf)
{
	_Static_assert(sizeof(struct statfs64) == sizeof(struct statfs), "statfs64 layout");
	return shim_fstatfs(fd, (struct statfs *)(void *)buf);
}

/* struct xfs_exchange_range and XFS_IOC_EXCHANGE_RANGE as the kernel's
 * xfs_fs.h has them (Linux 6.10; not in Debian 12's xfslibs-dev):
 * _IOW('X', 129, 40 bytes). */
struct shim_xfs_exchange_range {
	int32_t file1_fd;
	uint32_t pad;               /* must be zero */
	uint64_t file1_offset;
	uint64_t file2_offset;
	uint64_t length;
	uint64_t flags;             /* XFS_EXCHANGE_RANGE_* */
};
_Static_assert(sizeof(struct shim_xfs_exchange_range) == 40, "xfs_exchange_range layout");
#define SHIM_XFS_IOC_EXCHANGE_RANGE _IOW('X', 129, struct shim_xfs_exchange_range)

/* struct xfs_commit_range, XFS_IOC_START_COMMIT (_IOR('X', 130)) and
 * XFS_IOC_COMMIT_RANGE (_IOW('X', 131)) as in the kernel's xfs_fs.h
 * (Linux 6.12): xfs_exchange_range's fields and 48 opaque bytes of file2
 * freshness, which the shim passes through to the daemon untouched.
 * Checked against the merged header (fs/xfs/libxfs/xfs_fs.h, XFS's UAPI
 * header, shipped by xfsprogs as <xfs/xfs_fs.h>; there is no
 * include/uapi/linux/xfs_fs.h): __u64 file2_freshness[6], 88 bytes.
 * Review versions of the series had [5] (80 bytes) and _IOWR numbers;
 * the literal values below are those of the merged header, so that a
 * mistaken struct or direction cannot compile.  START_COMMIT writes only
 * file2_freshness back (the kernel's copy_to_user of that member). */
struct shim_xfs_commit_range {
	int32_t file1_fd;
	uint32_t pad;               /* must be zero */
	uint64_t file1_offset;
	uint64_t file2_offset;
	uint64_t length;
	uint64_t flags;
	uint64_t file2_freshness[6];
};
_Static_assert(sizeof(struct shim_xfs_commit_range) == 88, "xfs_commit_range layout");
#define SHIM_XFS_IOC_START_COMMIT _IOR('X', 130, struct shim_xfs_commit_range)
#define SHIM_XFS_IOC_COMMIT_RANGE _IOW('X', 131, struct shim_xfs_commit_range)
_Static_assert(offsetof(struct shim_xfs_commit_range, file2_freshness) == 40,
	       "xfs_commit_range: freshness after xfs_exchange_range's fields");
_Static_assert(SHIM_XFS_IOC_EXCHANGE_RANGE == 0x40285881, "XFS_IOC_EXCHANGE_RANGE");
_Static_assert(SHIM_XFS_IOC_START_COMMIT == 0x80585882, "XFS_IOC_START_COMMIT");
_Static_assert(SHIM_XFS_IOC_COMMIT_RANGE == 0x40585883, "XFS_IOC_COMMIT_RANGE");

/* The exchange (commit: RLFS_IOC_COMMIT_RANGE with fresh) on fd, then the
 * sizes and times the kernel caches set through it. */
static int exchange_common(int fd, int32_t file1_fd, uint32_t pad, uint64_t off1, uint64_t off2,
			   uint64_t len, uint64_t flags, const uint64_t *fresh)
{
	if (pad) {
		errno = EINVAL;
		return -1;
	}
	/* TO_EOF exchanges the sizes.  Under the writeback cache the kernel
	 * keeps its own size of a FUSE file and takes none from the daemon:
	 * a grown file is told by the daemon (it stores the new last page),
	 * a shrunk one is set here through the kernel (ftruncate to the size
	 * the daemon already has: nothing changes there) */
	struct stat st1, st2;
	bool sizes = (flags & 1 /* TO_EOF */) && !(flags & 4 /* DRY_RUN */) &&
		     fstat(file1_fd, &st1) == 0 && fstat(fd, &st2) == 0 &&
		     off1 <= (uint64_t)st1.st_size && off2 <= (uint64_t)st2.st_size;
	int r;
	if (fresh) {
		struct rlfs_ioc_commit_range a = {
			.file1_fd = file1_fd, .file1_offset = off1, .file2_offset = off2,
			.length = len, .flags = flags,
		};
		memcpy(a.file2_freshness, fresh, sizeof(a.file2_freshness));
		r = real_ioctl(fd, RLFS_IOC_COMMIT_RANGE, &a);
	} else {
		struct rlfs_ioc_exchange_range a = {
			.file1_fd = file1_fd, .file1_offset = off1, .file2_offset = off2,
			.length = len, .flags = flags,
		};
		r = real_ioctl(fd, RLFS_IOC_EXCHANGE_RANGE, &a);
	}
	if (r == 0 && !(flags & 4 /* DRY_RUN */)) {
		int saved = errno;
		if (sizes) {
			uint64_t n1 = off1 + ((uint64_t)st2.st_size - off2);
			uint64_t n2 = off2 + ((uint64_t)st1.st_size - off1);
			struct stat now;
			if (fstat(file1_fd, &now) == 0 && (uint64_t)now.st_size > n1)
				(void)ftruncate(file1_fd, (off_t)n1);
			if (fstat(fd, &now) == 0 && (uint64_t)now.st_size > n2)
				(void)ftruncate(fd, (off_t)n2);
		}
		errno = saved;
		touch_mtime(fd);
		touch_mtime(file1_fd);
	}
	return r;
}

static int do_exchange_range(int fd, const struct shim_xfs_exchange_range *u)
{
	if (!u) {
		errno = EFAULT;
		return -1;
	}
	return exchange_common(fd, u->file1_fd, u->pad, u->file1_offset, u->file2_offset,
			       u->length, u->flags, NULL);
}

static int do_start_commit(int fd, struct shim_xfs_commit_range *u)
{
	if (!u) {
		errno = EFAULT;
		return -1;
	}
	struct rlfs_ioc_commit_range a;
	memset(&a, 0, sizeof(a));
	int r = real_ioctl(fd, RLFS_IOC_START_COMMIT, &a);
	if (r == 0) {
		/* _IOR: the kernel writes the whole structure */
		memset(u, 0, sizeof(*u));
		memcpy(u->file2_freshness, a.file2_freshness, sizeof(u->file2_freshness));
	}
	return r;
}

static int do_commit_range(int fd, const struct shim_xfs_commit_range *u)
{
	if (!u) {
		errno = EFAULT;
		return -1;
	}
	return exchange_common(fd, u->file1_fd, u->pad, u->file1_offset, u->file2_offset,
			       u->length, u->flags, u->file2_freshness);
}

int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);

	switch (request) {
	case FICLONE:
	case FICLONERANGE:
	case FIDEDUPERANGE:
	case FS_IOC_FIEMAP:
	case FS_IOC_GETFSMAP:
	case SHIM_XFS_IOC_FSGEOMETRY:
	case SHIM_XFS_IOC_EXCHANGE_RANGE:
	case SHIM_XFS_IOC_START_COMMIT:
	case SHIM_XFS_IOC_COMMIT_RANGE:
		break;
	default:
		return real_ioctl(fd, request, arg);
	}
	if (!fd_is_reflinkfs(fd))
		return real_ioctl(fd, request, arg);
	switch (request) {
	case FICLONE:
		return do_ficlone(fd, (int)(intptr_t)arg);
	case FICLONERANGE:
		return do_ficlonerange(fd, arg);
	case FIDEDUPERANGE:
		return do_fideduperange(fd, arg);
	case FS_IOC_GETFSMAP:
		return do_getfsmap(fd, arg);
	case SHIM_XFS_IOC_FSGEOMETRY:
		return do_fsgeometry(fd, arg);
	case SHIM_XFS_IOC_EXCHANGE_RANGE:
		return do_exchange_range(fd, arg);
	case SHIM_XFS_IOC_START_COMMIT:
		return do_start_commit(fd, arg);
	case SHIM_XFS_IOC_COMMIT_RANGE:
		return do_commit_range(fd, arg);
	default:
		return do_fiemap(fd, arg);
	}
}

/*
 * reflinkfs/fs.h: the library's public, VFS-level API.  The FUSE daemon
 * (fuse/) and the tools (tools/) use only this header.  Every call is
 * thread-safe and returns 0 (or a count) or a negative errno, the errno
 * POSIX gives for the matching system call (see each man page named).
 *
 * Inode numbers are the on-disk numbers (st_ino).  Calls that return an
 * inode to the kernel (lookup, create, mkdir, mknod, symlink, link) add one
 * to its lookup count; rlfs_forget drops them (FUSE forget semantics:
 * libfuse3 fuse_lowlevel.h).  A file with no links is freed when its lookup
 * count reaches 0.
 *
 * Permission checks are the caller's (FUSE default_permissions); the
 * library enforces only the inode flags (immutable/append: -EPERM).
 */
#ifndef REFLINKFS_FS_H
#define REFLINKFS_FS_H
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

struct rlfs_mount;

/* Mount flags (also used by lib/rlfs.h) */
#ifndef RLFS_MOUNT_RDONLY
#define RLFS_MOUNT_RDONLY   (1u << 0)
#define RLFS_MOUNT_NOLOCK   (1u << 1)
#endif

/*
 * Open the filesystem on image (file or block device): read and verify the
 * superblock and AG headers, take an exclusive lock on the image (-EBUSY
 * if another process has it), mark the superblock dirty (read-write).
 * Errors: -ENOENT/-EACCES from open, -EBUSY, -EUCLEAN (not a reflinkfs
 * image, or corrupt; a line on stderr says why), -EOPNOTSUPP (unknown
 * incompat feature or version).
 */
int rlfs_mount_open(const char *image, unsigned flags, struct rlfs_mount **mpp);
/* Flush everything, mark the superblock clean, close the image (which
 * releases the lock), free.  Returns the first error seen while flushing
 * (the mount is freed anyway). */
int rlfs_mount_close(struct rlfs_mount *mp);
/* Write all dirty data and metadata to the device and flush it (sync(2)). */
int rlfs_sync(struct rlfs_mount *mp);
/*
 * Progress of the steps of rlfs_mount_close (and of every rlfs_sync/fsync
 * flush) that can take long, for a caller that shows it (the daemon at
 * unmount).  fn(arg, phase, done, total) runs in the thread doing the work,
 * possibly under the library's locks: it must be quick and must not call
 * the library.  It is called when a phase starts (done 0) and then about
 * every 256 units.  Phases and their units:
 *   RLFS_PROGRESS_RECLAIM  freeing unlinked inodes the kernel still held
 *                          (inodes; total known);
 *   RLFS_PROGRESS_DATA     device flush of file data (fdatasync; 0 of 1);
 *   RLFS_PROGRESS_META     writing the dirty metadata blocks (blocks);
 *   RLFS_PROGRESS_SYNC     device flush of the metadata (0 of 1);
 *   RLFS_PROGRESS_IDLE     the flush is over (0 of 0);
 *   RLFS_PROGRESS_RELEASED rlfs_mount_close has closed the image (its lock
 *                          is released) and frees its caches (0 of 0).
 * fn NULL turns it off.  Set it before the mount is in use.
 */
enum rlfs_progress_phase {
	RLFS_PROGRESS_IDLE,
	RLFS_PROGRESS_RECLAIM,
	RLFS_PROGRESS_DATA,
	RLFS_PROGRESS_META,
	RLFS_PROGRESS_SYNC,
	RLFS_PROGRESS_RELEASED,
};
typedef void (*rlfs_progress_fn)(void *arg, int phase, uint64_t done, uint64_t total);
void rlfs_set_progress(struct rlfs_mount *mp, rlfs_progress_fn fn, void *arg);
uint64_t rlfs_root_ino(struct rlfs_mount *mp);
/* statfs(2): f_bsize/f_frsize = block size, f_blocks, f_bfree, f_bavail,
 * f_files, f_ffree, f_namemax 255. */
int rlfs_statfs(struct rlfs_mount *mp, struct statvfs *st);

/* getattr: stat(2) */
int rlfs_getattr(struct rlfs_mount *mp, uint64_t ino, struct stat *st);

/* setattr (chmod/chown/truncate/utimensat): valid is a mask of these */
#define RLFS_SET_MODE  (1u << 0)
#define RLFS_SET_UID   (1u << 1)
#define RLFS_SET_GID   (1u << 2)
#define RLFS_SET_SIZE  (1u << 3)
#define RLFS_SET_ATIME (1u << 4)
#define RLFS_SET_MTIME (1u << 5)
#define RLFS_SET_ATIME_NOW (1u << 6)
#define RLFS_SET_MTIME_NOW (1u << 7)
#define RLFS_SET_CTIME (1u << 8)
/* clear setuid, and setgid if group-executable, unless RLFS_SET_MODE sets
 * the mode (FUSE FATTR_KILL_SUIDGID: a truncate by a caller without
 * CAP_FSETID under FUSE_HANDLE_KILLPRIV_V2) */
#define RLFS_SET_KILL_SUIDGID (1u << 9)
/* st carries the new values for the fields in valid; out gets the result.
 * Size changes: -EFBIG past the max file size, -EISDIR on a directory,
 * -EPERM if immutable/append-only.  Clears setuid/setgid on chown. */
int rlfs_setattr(struct rlfs_mount *mp, uint64_t ino, const struct stat *st,
		 unsigned valid, struct stat *out);

/* Name ops: man 2 of open(O_CREAT)/mknod/mkdir/symlink/link/unlink/rmdir/
 * rename/readlink.  Names are single components, 1..255 bytes (longer:
 * -ENAMETOOLONG).  out is the new/looked-up inode's attributes. */
int rlfs_lookup(struct rlfs_mount *mp, uint64_t dir, const char *name, struct stat *out);
int rlfs_mknod(struct rlfs_mount *mp, uint64_t dir, const char *name, mode_t mode,
	       dev_t rdev, uid_t uid, gid_t gid, struct stat *out);
int rlfs_mkdir(struct rlfs_mount *mp, uint64_t dir, const char *name, mode_t mode,
	       uid_t uid, gid_t gid, struct stat *out);
int rlfs_symlink(struct rlfs_mount *mp, uint64_t dir, const char *name,
		 const char *target, uid_t uid, gid_t gid, struct stat *out);
/* Returns the target length (not NUL-terminated if it fills size). */
int rlfs_readlink(struct rlfs_mount *mp, uint64_t ino, char *buf, size_t size);
int rlfs_link(struct rlfs_mount *mp, uint64_t ino, uint64_t newdir,
	      const char *newname, struct stat *out);
int rlfs_unlink(struct rlfs_mount *mp, uint64_t dir, const char *name);
int rlfs_rmdir(struct rlfs_mount *mp, uint64_t dir, const char *name);
/* flags: RENAME_NOREPLACE, RENAME_EXCHANGE (linux/fs.h values 1, 2) */
int rlfs_rename(struct rlfs_mount *mp, uint64_t dir, const char *name,
		uint64_t newdir, const char *newname, unsigned flags);
void rlfs_forget(struct rlfs_mount *mp, uint64_t ino, uint64_t nlookup);

/*
 * readdir: entries in cookie order starting at cookie (0 = start, which
 * yields "." then ".."); fn gets each entry and the cookie of the next.
 * fn returns nonzero to stop (that entry is not consumed).  With plus set,
 * st is filled and the lookup count of the entry is incremented when fn
 * returns 0 (readdirplus); otherwise st has only st_ino and st_mode type.
 */
typedef int (*rlfs_readdir_fn)(void *priv, const char *name, const struct stat *st,
			       uint64_t next_cookie);
int rlfs_readdir(struct rlfs_mount *mp, uint64_t dir, uint64_t cookie, int plus,
		 rlfs_readdir_fn fn, void *priv);

/* Data: pread(2)/pwrite(2) semantics.  Returns bytes (read: short at EOF). */
ssize_t rlfs_read(struct rlfs_mount *mp, uint64_t ino, void *buf, size_t size, off_t off);
/* Write: -EFBIG past max size, -ENOSPC, -EPERM immutable; append-only
 * files accept only writes at EOF. Updates mtime/ctime, clears suid/sgid. */
ssize_t rlfs_write(struct rlfs_mount *mp, uint64_t ino, const void *buf, size_t size,
		   off_t off);
/* rlfs_write with flags: RLFS_WRITE_CACHED is the writeback of pages a
 * cache above us (the FUSE writeback cache) accepted earlier: mtime, ctime
 * and setuid/setgid are left alone, because that cache owns them and
 * sets them itself (FUSE: a SETATTR of mtime/ctime from the kernel's
 * inode writeback, which can reach us before this write; setuid/setgid
 * dropped, if the writer had to, before the data entered the cache; a
 * writer with CAP_FSETID keeps them, as on XFS).  Returns and errors
 * as rlfs_write. */
#define RLFS_WRITE_CACHED (1u << 0)
ssize_t rlfs_write_flags(struct rlfs_mount *mp, uint64_t ino, const void *buf, size_t size,
			 off_t off, unsigned wflags);
/* fsync(2)/fdatasync(2): data and the metadata describing it are on the device. */
int rlfs_fsync(struct rlfs_mount *mp, uint64_t ino, int datasync);
/* fallocate(2): mode 0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE|KEEP_SIZE,
 * FALLOC_FL_ZERO_RANGE (±KEEP_SIZE), FALLOC_FL_UNSHARE_RANGE (±KEEP_SIZE:
 * give the range private copies of shared blocks); others -EOPNOTSUPP. */
int rlfs_fallocate(struct rlfs_mount *mp, uint64_t ino, int mode, off_t off, off_t len);
/* lseek(2) SEEK_DATA / SEEK_HOLE (unwritten extents count as holes for
 * SEEK_DATA only if... no: as data, like XFS without page cache probing).
 * Returns the offset or -ENXIO. */
off_t rlfs_lseek(struct rlfs_mount *mp, uint64_t ino, off_t off, int whence);

/* xattrs: getxattr(2) etc.  get/list with size 0 return the needed size. */
int rlfs_getxattr(struct rlfs_mount *mp, uint64_t ino, const char *name, void *value,
		  size_t size);
int rlfs_setxattr(struct rlfs_mount *mp, uint64_t ino, const char *name,
		  const void *value, size_t size, int flags);
int rlfs_listxattr(struct rlfs_mount *mp, uint64_t ino, char *list, size_t size);
int rlfs_removexattr(struct rlfs_mount *mp, uint64_t ino, const char *name);

/*
 * Clone range: make [dst_off, dst_off+len) of dst share the blocks of
 * [src_off, src_off+len) of src, with the semantics of the kernel's
 * remap_file_range (fs/remap_range.c; ioctl_ficlonerange(2)):
 * offsets block-aligned; len block-aligned unless the source range ends at
 * source EOF (then the partial EOF block may only land at or past dst EOF);
 * len 0 = to source EOF; same file with overlapping ranges -EINVAL;
 * directories -EISDIR; other non-regular files -EINVAL; immutable or
 * append-only dst -EPERM; result past the max file size -EFBIG; -ENOSPC
 * leaves both files with their old or new contents.  dst's old blocks in
 * the range are released (refcount -1), the source extents mapped with
 * refcount +1, extent by extent; holes and unwritten extents carried over.
 * dst grows as needed; its mtime/ctime change.  Returns the bytes cloned.
 * (fd and open-mode checks, -EBADF/-EXDEV, are the caller's: the FUSE
 * daemon resolves file descriptors.)
 */
#define RLFS_CLONE_KILL_SUID (1u << 0) /* caller is not root: clear S_ISUID/S_ISGID on dst */
int64_t rlfs_clone_range(struct rlfs_mount *mp, uint64_t src_ino, uint64_t src_off,
			 uint64_t dst_ino, uint64_t dst_off, uint64_t len, unsigned flags);

/*
 * FIEMAP-like extent listing (see reflinkfs/ioctl.h, struct
 * rlfs_ioc_extent, whose layout this fills): extents of ino overlapping
 * [start, start+len) bytes, in file order, at most max of them, *count set;
 * RLFS_IOC_EXT_SHARED on extents whose blocks have refcount >= 2 (an extent
 * is split where sharing changes), UNWRITTEN, LAST on the file's last
 * extent.  0, -ENOENT.
 */
struct rlfs_ioc_extent;
int rlfs_get_extents(struct rlfs_mount *mp, uint64_t ino, uint64_t start, uint64_t len,
		     struct rlfs_ioc_extent *ext, uint32_t max, uint32_t *count);

/* mkfs: format image (created sparse, mode 0600 less the umask, if missing;
 * an existing file or device keeps its mode) of size_bytes (0 = the
 * existing file/device size).  -EEXIST if it already holds a reflinkfs
 * superblock and !force; -EINVAL for bad geometry (blocksize not a power of
 * two in 1024..65536, too small: under 64 blocks per AG or 16 MiB total). */
struct rlfs_mkfs_opts {
	uint64_t size_bytes;
	uint32_t blocksize;         /* 0 = 4096 */
	uint32_t agcount;           /* 0 = chosen by size */
	uint32_t inodesize;         /* 0 = 512 */
	int force;
	const char *label;
	int reflink;                /* refcount btree (REFLINK feature, block
				     * sharing): 0 = default (on), 1 = on,
				     * negative (-1) = off, > 1 = -EINVAL
				     * (mkfs.xfs -m reflink=0|1) */
};
int rlfs_mkfs(const char *image, const struct rlfs_mkfs_opts *opts);
#endif

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
#include <stdbool.h>
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
 * If the superblock's error record is set (fsck left damage, or corrupt
 * metadata was met while mounted: docs/SPEC.md section 4) one line on
 * stderr says so and names `reflinkfs fsck IMAGE`; the mount goes on, as
 * ext4 with errors=continue.  From then on, corrupt metadata met (any
 * -EUCLEAN) is added to the record, which the next metadata flush writes.
 * Errors: -ENOENT/-EACCES from open, -EBUSY, -EUCLEAN (not a reflinkfs
 * image, or corrupt; a line on stderr says why), -EOPNOTSUPP (unknown
 * incompat feature or version), -EROFS (read-write mount of an image with
 * the RMAP feature, whose btree upkeep is not enabled yet: mount it
 * with RLFS_MOUNT_RDONLY), -ENOMEM.
 */
int rlfs_mount_open(const char *image, unsigned flags, struct rlfs_mount **mpp);
/* Flush everything, mark the superblock clean (after everything else is
 * on disk), close the image (which releases the lock), free.  Returns the
 * first error seen while flushing (the mount is freed anyway).  If the
 * flush fails, the superblock alone is rewritten with state dirty and the
 * error record (RLFS_SB_ERR_WRITE added), and a line on stderr says so. */
int rlfs_mount_close(struct rlfs_mount *mp);
/*
 * Remount read-only or read-write (mount -o remount,ro|rw; the kernel's
 * reconfigure, XFS xfs_remount_ro/xfs_remount_rw).  Going read-only: later
 * writes get -EROFS; everything dirty is written and flushed and the
 * superblock marked clean, so the image checks clean while mounted
 * read-only.  Call it after the writers have stopped (the FUSE kernel has
 * written its pages back and refuses writes once its superblock is
 * read-only).  Going read-write: the image is reopened for writing if the
 * mount began read-only, the superblock is marked dirty first.  0, or
 * -EACCES/-EROFS (image not writable, or has the RMAP feature: stays
 * read-only), or an I/O error
 * from the flush.  rlfs_mount_is_rdonly: the current state.
 */
int rlfs_mount_set_rdonly(struct rlfs_mount *mp, bool rdonly);
bool rlfs_mount_is_rdonly(struct rlfs_mount *mp);
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
/* clear setuid / setgid (whatever the group bits), unless RLFS_SET_MODE:
 * the caller worked out which bits a change by its own caller must clear
 * (the kernel's setattr_should_drop_suidgid: setgid without group exec
 * goes too when that caller is outside the file's group) */
#define RLFS_SET_KILL_SUID (1u << 10)
#define RLFS_SET_KILL_SGID (1u << 11)
/* A size change frees every block past the new EOF (preallocations too)
 * when it does not grow the file, as XFS's truncate does.  A cache above
 * the library may hold a larger size than the library has seen yet (the
 * FUSE writeback cache); TRIM_EOF tells a "growing" size change that it
 * does not really grow the file, so that it trims as well. */
#define RLFS_SET_TRIM_EOF (1u << 12)
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
/*
 * POSIX ACLs on creation (fs/posix_acl.c posix_acl_create, as a local
 * filesystem does it; FUSE leaves it to the server): rlfs_mknod, rlfs_mkdir
 * and these give a new inode whose parent has a default ACL
 * (system.posix_acl_default) an access ACL masked by the mode (and mask
 * the mode with it; a new directory also gets the default ACL); without
 * one the mode is masked with umask (FUSE_DONT_MASK: the kernel leaves the
 * umask to us).  rlfs_mknod/rlfs_mkdir use umask 0.  Symlinks get neither.
 */
int rlfs_mknod_umask(struct rlfs_mount *mp, uint64_t dir, const char *name, mode_t mode,
		     dev_t rdev, uid_t uid, gid_t gid, mode_t umask, struct stat *out);
int rlfs_mkdir_umask(struct rlfs_mount *mp, uint64_t dir, const char *name, mode_t mode,
		     uid_t uid, gid_t gid, mode_t umask, struct stat *out);
/*
 * O_TMPFILE (open(2); XFS xfs_create_tmpfile): a new regular file in dir
 * with no name and nlink 0, with out's lookup count (the kernel's
 * reference) keeping it alive; like an unlinked open file it is freed when
 * the last count goes (or at unmount); it is on its AG's unlinked list
 * until then, so the next mount after a crash frees it.  rlfs_link may give it a name once (linkat(2) with
 * AT_EMPTY_PATH or /proc/self/fd; the kernel refuses O_EXCL ones).  mode,
 * umask and ACLs as rlfs_mknod_umask; dir's mtime does not change.
 * Errors: -ENOTDIR, -ENOENT (dir removed), -EPERM (immutable dir),
 * -ENOSPC.
 */
int rlfs_tmpfile(struct rlfs_mount *mp, uint64_t dir, mode_t mode, uid_t uid, gid_t gid,
		 mode_t umask, struct stat *out);
int rlfs_symlink(struct rlfs_mount *mp, uint64_t dir, const char *name,
		 const char *target, uid_t uid, gid_t gid, struct stat *out);
/* Returns the target length (not NUL-terminated if it fills size). */
int rlfs_readlink(struct rlfs_mount *mp, uint64_t ino, char *buf, size_t size);
int rlfs_link(struct rlfs_mount *mp, uint64_t ino, uint64_t newdir,
	      const char *newname, struct stat *out);
int rlfs_unlink(struct rlfs_mount *mp, uint64_t dir, const char *name);
int rlfs_rmdir(struct rlfs_mount *mp, uint64_t dir, const char *name);
/* flags: RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT (linux/fs.h
 * values 1, 2, 4; renameat2(2)).  RENAME_WHITEOUT leaves at the source name,
 * in the same transaction, a whiteout: a character device 0:0 with mode 0
 * (overlayfs); with RENAME_EXCHANGE it is -EINVAL.  Any user may make one
 * (Linux >= 5.8 dropped the CAP_MKNOD check).  rlfs_rename's whiteout
 * belongs to root; rlfs_rename2 gives it uid and gid (the caller's
 * fsuid/fsgid; the directory's group if it is setgid), as XFS does. */
int rlfs_rename(struct rlfs_mount *mp, uint64_t dir, const char *name,
		uint64_t newdir, const char *newname, unsigned flags);
int rlfs_rename2(struct rlfs_mount *mp, uint64_t dir, const char *name,
		 uint64_t newdir, const char *newname, unsigned flags, uid_t uid, gid_t gid);
void rlfs_forget(struct rlfs_mount *mp, uint64_t ino, uint64_t nlookup);
/*
 * Frees of unlinked inodes still to happen.  A daemon brackets each FORGET
 * it has read with rlfs_inactive_begin/end (from the moment it has the
 * request, before rlfs_forget runs), with a ticket of its own (on its
 * stack, untouched between the two calls); the last reference of an
 * unlinked inode takes one itself while the inode's blocks go back to
 * free space.  rlfs_inactive_wait blocks until every ticket taken before
 * it was called has ended, or max_ms have passed (true: all ended);
 * tickets taken meanwhile do not hold it up.  The FUSE statfs handler
 * calls it so that df right after rm counts the freed blocks, as XFS's
 * statfs flushes its inodegc queue (xfs_fs_statfs -> xfs_inodegc_flush).
 * Call it holding no inode, meta or log lock: the frees it waits for take
 * them.
 */
struct rlfs_inactive_ticket {
	uint64_t seq;                           /* order of rlfs_inactive_begin */
	struct rlfs_inactive_ticket *prev, *next;
};
void rlfs_inactive_begin(struct rlfs_mount *mp, struct rlfs_inactive_ticket *t);
void rlfs_inactive_end(struct rlfs_mount *mp, struct rlfs_inactive_ticket *t);
bool rlfs_inactive_wait(struct rlfs_mount *mp, unsigned max_ms);

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
 * files accept only writes at EOF.  Updates mtime/ctime, clears setuid
 * (and setgid if group-executable): rlfs_write_flags with
 * RLFS_WRITE_KILL_SUIDGID. */
ssize_t rlfs_write(struct rlfs_mount *mp, uint64_t ino, const void *buf, size_t size,
		   off_t off);
/* rlfs_write with flags: RLFS_WRITE_CACHED is the writeback of pages a
 * cache above us (the FUSE writeback cache) accepted earlier: mtime, ctime
 * and setuid/setgid are left alone, because that cache owns them and
 * sets them itself (FUSE: a SETATTR of mtime/ctime from the kernel's
 * inode writeback, which can reach us before this write; setuid/setgid
 * dropped, if the writer had to, before the data entered the cache; a
 * writer with CAP_FSETID keeps them, as on XFS).  Its transactions may
 * use the writeback reserve (rlfs_set_writeback_reserve), but before and
 * after such a write, when free space outside the reserve is short,
 * idle staged CoW blocks (of every file nobody is writing at that moment)
 * are given back first.  Returns and errors as rlfs_write. */
#define RLFS_WRITE_CACHED (1u << 0)
/* Privileges, for any write: clear setuid, and setgid if group-executable
 * (KILL_SUIDGID: what a writer without CAP_FSETID loses unless the caller
 * knows better); or exactly setuid (KILL_SUID) / setgid (KILL_SGID).
 * Without any of them a write leaves both bits alone (a writer with
 * CAP_FSETID, as on XFS). */
#define RLFS_WRITE_KILL_SUIDGID (1u << 1)
#define RLFS_WRITE_KILL_SUID (1u << 2)
#define RLFS_WRITE_KILL_SGID (1u << 3)
ssize_t rlfs_write_flags(struct rlfs_mount *mp, uint64_t ino, const void *buf, size_t size,
			 off_t off, unsigned wflags);
/*
 * fsync(2)/fdatasync(2) (datasync != 0): the file's data and the metadata
 * describing it are on the device; for a directory, its entries.  With the
 * log, the log is forced only up to the last change of this inode
 * (fdatasync of a file: the last change other than timestamps), as
 * xfs_file_fsync; an inode whose changes are durable already costs at most
 * a device flush for file data written since the last one.  Without a log,
 * everything is flushed.  0 on a read-only mount.  0 or negative errno
 * (-EIO etc. from the device).
 */
int rlfs_fsync(struct rlfs_mount *mp, uint64_t ino, int datasync);
/*
 * Open files and the CoW fork (issue 13 section 3).  rlfs_file_opened
 * counts one open of regular file ino (the daemon's OPEN and CREATE);
 * rlfs_file_released drops it (RELEASE), and the last one gives back the
 * blocks staged for copy-on-write that no write used.  0, or -ENOENT etc.
 * from the inode lookup (opened); released reports nothing (a failed
 * cancel leaves the blocks to the GC, unmount or the next mount).
 */
int rlfs_file_opened(struct rlfs_mount *mp, uint64_t ino);
void rlfs_file_released(struct rlfs_mount *mp, uint64_t ino);
/*
 * CoW garbage collection (XFS's cowblocks): give back the staged
 * copy-on-write blocks of every file whose CoW fork has held blocks for
 * at least min_age_s seconds and that is not being written right now.
 * The blocks given back (>= 0) or -errno of the first cancel that failed.
 * Nothing on a read-only mount (0).
 */
int64_t rlfs_cow_gc(struct rlfs_mount *mp, uint32_t min_age_s);
/*
 * Gap fill of copy-on-write (-o cowfill=BLOCKS): a CoW write whose
 * staged blocks are separated from a block rewritten earlier out of the
 * same staged extent by at most max_blocks not-rewritten blocks copies
 * those too (old contents) and remaps them with it, so the file keeps one
 * extent there instead of three; they stop being shared.  0 turns it
 * off (XFS's behaviour).  Default RLFS_COW_FILL_DEFAULT.
 */
#define RLFS_COW_FILL_DEFAULT 1u
#define RLFS_COW_FILL_MAX 16u
void rlfs_set_cow_fill(struct rlfs_mount *mp, uint32_t max_blocks);
/*
 * Direct access (-o dax; lib/dax.c), after fsdax (Linux
 * Documentation/filesystems/dax.rst): map the image (rlfs_dev_map: mmap
 * MAP_SHARED of the whole image file or block device) and move file data
 * by memcpy to and from the mapping instead of pread/pwrite: reads,
 * writes, zeroing, copy-on-write copies (only the parts of new blocks a
 * write does not cover: copy-around) and dedupe's compare (in place).
 * Metadata keeps going through the buffer cache and the log.  Every
 * device flush (fsync, the data-before-checkpoint flush of the log) is
 * then msync(MS_SYNC) of the mapping.  Call right after mount, before
 * any file I/O.  0 (also if already on), or -errno of rlfs_dev_map:
 * -ENODEV (the device cannot be mapped), -EFBIG (does not fit the
 * address space), -ENOMEM; the mount then stays on the pread/pwrite path.
 */
int rlfs_set_dax(struct rlfs_mount *mp);
/* Direct access is on (rlfs_set_dax succeeded). */
bool rlfs_dax_enabled(const struct rlfs_mount *mp);
/* Accesses to the image mapping (direct access) that faulted since mount
 * and were done again through pread/pwrite (lib/mapguard.h: the host out
 * of space under a sparse image, an I/O error, the image shrunk); 0
 * without direct access.  A statistic the daemon reports at unmount. */
uint64_t rlfs_dax_map_faults(const struct rlfs_mount *mp);
/* Bytes of old file contents copy-on-write has copied into new blocks
 * since mount (edge blocks of partial writes, gap fill, unshare); a
 * statistic for tests and benchmarks. */
uint64_t rlfs_cow_copied_bytes(const struct rlfs_mount *mp);
/*
 * The writeback reserve: bytes of free space held back for data a cache
 * above the library (the FUSE writeback cache) has accepted from write(2)
 * and not yet written here.  Only writes with RLFS_WRITE_CACHED (and
 * operations that free space: unlink, truncate) may use it; every other
 * allocation fails with -ENOSPC once only the reserve is left, and statfs
 * leaves it out of f_bavail.  The caller bounds what its cache can hold
 * to this much (the daemon lowers the kernel's dirty limit for the mount,
 * /sys/class/bdi/.../max_bytes) and stops accepting writes once f_bavail
 * is 0, so what was accepted always finds room: ENOSPC at write(2), never
 * data lost at writeback (XFS reserves delalloc blocks at write(2) for
 * the same promise).  Rounded up to blocks, at most half the filesystem;
 * 0 (the default) turns it off.  Any time.
 */
void rlfs_set_writeback_reserve(struct rlfs_mount *mp, uint64_t bytes);
/*
 * Blocks available to ordinary allocations (f_bavail as a signed count:
 * may be negative while the reserves are in use), read without locks: a
 * hint for hot paths (the daemon's check after each writeback WRITE), not
 * a promise.
 */
int64_t rlfs_avail_blocks_hint(struct rlfs_mount *mp);
/* fallocate(2): mode 0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE|KEEP_SIZE,
 * FALLOC_FL_ZERO_RANGE (±KEEP_SIZE), FALLOC_FL_UNSHARE_RANGE (±KEEP_SIZE:
 * give the range private copies of shared blocks), FALLOC_FL_COLLAPSE_RANGE
 * and FALLOC_FL_INSERT_RANGE (alone, else -EOPNOTSUPP as vfs_fallocate of
 * Linux 6.15 on; off and len multiples of
 * the block size, else -EINVAL; a collapse must end before EOF and an
 * insert start before it, else -EINVAL; an insert growing the file past the
 * largest size -EFBIG; crash-atomic: after a crash the file is wholly
 * shifted or untouched); others -EOPNOTSUPP.
 * Updates mtime/ctime; setuid/setgid are the caller's business (the
 * kernel's file_modified() depends on its caller's credentials: a FUSE
 * daemon gets a SETATTR for it, see rlfs_setattr's KILL bits). */
int rlfs_fallocate(struct rlfs_mount *mp, uint64_t ino, int mode, off_t off, off_t len);
/* lseek(2) SEEK_DATA / SEEK_HOLE (unwritten extents count as holes for
 * SEEK_DATA only if... no: as data, like XFS without page cache probing).
 * Returns the offset or -ENXIO. */
off_t rlfs_lseek(struct rlfs_mount *mp, uint64_t ino, off_t off, int whence);

/*
 * Access time (the kernel's touch_atime, fs/inode.c atime_needs_update and
 * relatime_need_update; mount(8) noatime, relatime, strictatime).  how:
 *   RLFS_ATIME_RELATIME  update only if atime <= mtime, atime <= ctime, or
 *                        atime is at least RLFS_RELATIME_SECS (24 h) old
 *   RLFS_ATIME_STRICT    update on every access
 *   RLFS_ATIME_NOATIME   never
 * Either way no update if atime already equals the current time, on an
 * inode with the noatime flag (chattr +A, FS_NOATIME_FL), or while the
 * mount is read-only.  rlfs_touch_atime sets atime to now (ctime is left
 * alone) in a transaction of its own: 1 if it changed, 0 if not, or
 * -errno (-ENOENT; -ENOSPC, -EIO from the transaction).
 * rlfs_atime_needs_update answers whether rlfs_touch_atime would change
 * atime now, without changing anything: 1, 0 or -errno.
 * rlfs_atime_rule is the rule itself on the given times (true: update).
 */
#define RLFS_ATIME_RELATIME 0u
#define RLFS_ATIME_STRICT   1u
#define RLFS_ATIME_NOATIME  2u
#define RLFS_RELATIME_SECS  (24 * 60 * 60)
int rlfs_touch_atime(struct rlfs_mount *mp, uint64_t ino, unsigned how);
int rlfs_atime_needs_update(struct rlfs_mount *mp, uint64_t ino, unsigned how);
bool rlfs_atime_rule(unsigned how, const struct timespec *atime, const struct timespec *mtime,
		     const struct timespec *ctime, const struct timespec *now);

/*
 * File handles (name_to_handle_at(2)/open_by_handle_at(2), NFS export; XFS
 * xfs_export.c).  A handle names an inode by number and generation: the
 * generation changes each time an inode slot is allocated again, so a
 * handle of a deleted file never opens the file that reuses its number.
 * rlfs_get_generation: the generation of an inode in use (0, -ENOENT).
 * rlfs_lookup_ino: look up an inode by number alone, as for a handle whose
 * inode is not cached (FUSE: LOOKUP of "." in the inode itself): adds a
 * lookup count like rlfs_lookup and fills out and *gen.  The number is
 * untrusted: out of range, not allocated in the inode btree, a free slot
 * or a deleted file (nlink 0, still held open through the kernel's cached
 * inode) give -ENOENT (the kernel turns it into ESTALE), and no corruption
 * report.
 */
int rlfs_get_generation(struct rlfs_mount *mp, uint64_t ino, uint64_t *gen);
int rlfs_lookup_ino(struct rlfs_mount *mp, uint64_t ino, struct stat *out, uint64_t *gen);

/*
 * Inode flags and extent size hints: struct fsxattr of linux/fs.h in
 * native form, for FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR (and
 * FS_IOC_GETFLAGS / FS_IOC_SETFLAGS, whose FS_*_FL bits the caller maps to
 * the FS_XFLAG_* ones).  Rules of XFS (fs/xfs/xfs_ioctl.c).
 *   xflags            FS_XFLAG_*: IMMUTABLE, APPEND, NODUMP, NOATIME,
 *                     EXTSIZE (regular files), EXTSZINHERIT (directories),
 *                     COWEXTSIZE (both); HASATTR reported when the inode
 *                     has xattrs, ignored on set
 *   extsize_bytes     with EXTSIZE/EXTSZINHERIT, else 0
 *   cowextsize_bytes  with COWEXTSIZE, else 0 (as XFS reports it; the
 *                     hint in force is then the filesystem default, 32
 *                     blocks)
 *   nextents          data fork extents (get only)
 *   projid            always 0 (no project quotas)
 */
struct rlfs_fileattr {
	uint32_t xflags;
	uint32_t extsize_bytes;
	uint32_t cowextsize_bytes;
	uint32_t nextents;
	uint32_t projid;
};
/* The FS_XFLAG_* bits that are stored. */
uint32_t rlfs_fileattr_xflags_supported(void);
/* 0, or -ENOTTY (not a regular file or directory), -ENOENT etc. */
int rlfs_fileattr_get(struct rlfs_mount *mp, uint64_t ino, struct rlfs_fileattr *fa);
/* how: RLFS_FA_FLAGS_ONLY (the FS_IOC_SETFLAGS form, vfs_fileattr_set:
 * only IMMUTABLE, APPEND, NODUMP and NOATIME of fa->xflags count, hints
 * unchanged, no hint checks); RLFS_FA_CAP_LINUX_IMMUTABLE (the caller has
 * it).  Ownership (inode_owner_or_capable) is the caller's check.  Sets
 * ctime.  Errors: -EROFS; -ENOTTY (special file); -EOPNOTSUPP (an xflag
 * not stored, e.g. FS_XFLAG_SYNC, or projid != 0); -EPERM (IMMUTABLE or
 * APPEND would change without CAP_LINUX_IMMUTABLE); -EINVAL (FSSETXATTR
 * form, xfs_ioctl_setattr_check_extsize/_cowextsize: a flag on the wrong
 * file type, a hint not a multiple of the block size, above 2^21 - 1
 * blocks or half an AG, a non-zero hint without its flag, or a new
 * extsize on a regular file that has extents). */
#define RLFS_FA_FLAGS_ONLY          (1u << 0)
#define RLFS_FA_CAP_LINUX_IMMUTABLE (1u << 1)
int rlfs_fileattr_set(struct rlfs_mount *mp, uint64_t ino, const struct rlfs_fileattr *fa,
		      unsigned how);

/* xattrs: getxattr(2) etc.  get/list with size 0 return the needed size.
 * POSIX ACLs are the xattrs system.posix_acl_access/_default in the
 * kernel's xattr form (acl(5)), which the kernel enforces: setting one
 * checks it (-EINVAL; a default ACL only on a directory, else -EACCES;
 * none on symlinks, -EOPNOTSUPP), ignores XATTR_CREATE/REPLACE as the
 * kernel does, and an access ACL sets the mode's permission bits and is
 * dropped when the mode says it all (posix_acl_update_mode).  flags may
 * add RLFS_XATTR_ACL_KILL_SGID (FUSE_SETXATTR_ACL_KILL_SGID: the caller
 * is neither in the file's group nor has CAP_FSETID), which then clears
 * S_ISGID.  A chmod (rlfs_setattr) updates the access ACL. */
#define RLFS_XATTR_ACL_KILL_SGID (1 << 16)
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
/* flags: KILL_SUID, the caller lacks CAP_FSETID: clear dst's S_ISUID, and
 * S_ISGID if group-executable; KILL_SGID: clear S_ISGID in any case (a
 * caller outside dst's group).  Done in the clone's first transaction. */
#define RLFS_CLONE_KILL_SUID (1u << 0)
#define RLFS_CLONE_KILL_SGID (1u << 1)
int64_t rlfs_clone_range(struct rlfs_mount *mp, uint64_t src_ino, uint64_t src_off,
			 uint64_t dst_ino, uint64_t dst_off, uint64_t len, unsigned flags);

/*
 * Exchange range (ioctl_xfs_exchange_range(2), XFS_IOC_EXCHANGE_RANGE,
 * Linux 6.10; fs/xfs/xfs_exchrange.c): swap the contents of bytes
 * [off1, off1 + len) of ino1 ("file1") with bytes [off2, off2 + len) of
 * ino2 ("file2", the file the ioctl is issued on) by exchanging their
 * data-fork mappings, extent by extent, through exchange-mapping intents
 * (XMI/XMD, lib/exchange.h): atomic against concurrent file operations
 * (both iolocks held exclusively, taken in inode-number order) and across
 * a crash (log recovery finishes an interrupted exchange, so each file
 * shows all old or all new contents of the range).  Block refcounts do not
 * change; the rmap follows.  Staged CoW fork blocks of both ranges are
 * cancelled first.  Offsets and len in bytes.  flags:
 *   RLFS_EXCHANGE_TO_EOF  ignore len: exchange from off1 to file1's EOF
 *       with off2 to file2's EOF; file1's size becomes off1 + (size2 -
 *       off2) and file2's off2 + (size1 - off1).
 *   RLFS_EXCHANGE_DSYNC   the exchange is durable when the call returns.
 *   RLFS_EXCHANGE_DRY_RUN all checks, no change.
 *   RLFS_EXCHANGE_FILE1_WRITTEN  only pieces where file1 maps written
 *       blocks are exchanged (holes and unwritten extents of file1 left).
 *   RLFS_EXCHANGE_KILL_SUID1/_SGID1/_SUID2/_SGID2  (not XFS flags) clear
 *       setuid / setgid of file1 / file2 as RLFS_CLONE_KILL_* does (the
 *       caller's credentials decide: the daemon).
 * Both files get new mtime/ctime (unless DRY_RUN or nothing to do).
 * Checks, in the order of xfs_exchange_range_checks: unknown flags
 * -EINVAL; a directory -EISDIR, other non-regular files -EINVAL; read-only
 * mount -EROFS; no REFLINK feature (mappings and their rmap) -EOPNOTSUPP;
 * immutable or append-only file -EPERM; an offset past its file's EOF
 * -EINVAL; offsets not block-aligned -EINVAL; a range past its file's EOF
 * (not TO_EOF) -EINVAL; past the maximum file size -EFBIG; len not
 * block-aligned unless the range ends at file1's or file2's EOF -EINVAL
 * (and a partial EOF block may not go into the middle of the other file:
 * -EINVAL); overlapping ranges of one file -EINVAL; len 0 does nothing.
 * Then -ENOSPC (nothing changed), -EIO, -EUCLEAN, -ENOMEM.  fd checks
 * (EBADF: not open read-write, O_APPEND; EXDEV: another filesystem) are
 * the caller's.  Returns 0 or -errno.
 */
#define RLFS_EXCHANGE_TO_EOF        (1ULL << 0)  /* XFS_EXCHANGE_RANGE_TO_EOF */
#define RLFS_EXCHANGE_DSYNC         (1ULL << 1)  /* XFS_EXCHANGE_RANGE_DSYNC */
#define RLFS_EXCHANGE_DRY_RUN       (1ULL << 2)  /* XFS_EXCHANGE_RANGE_DRY_RUN */
#define RLFS_EXCHANGE_FILE1_WRITTEN (1ULL << 3)  /* XFS_EXCHANGE_RANGE_FILE1_WRITTEN */
#define RLFS_EXCHANGE_ALL_FLAGS     0xfULL
#define RLFS_EXCHANGE_KILL_SUID1    (1ULL << 32)
#define RLFS_EXCHANGE_KILL_SGID1    (1ULL << 33)
#define RLFS_EXCHANGE_KILL_SUID2    (1ULL << 34)
#define RLFS_EXCHANGE_KILL_SGID2    (1ULL << 35)
int rlfs_exchange_range(struct rlfs_mount *mp, uint64_t ino1, uint64_t off1, uint64_t ino2,
			uint64_t off2, uint64_t len, uint64_t flags);
/*
 * Atomic file update (ioctl_xfs_commit_range(2), XFS_IOC_START_COMMIT /
 * XFS_IOC_COMMIT_RANGE, Linux 6.12): rlfs_exchange_fresh_sample records
 * file2's freshness (inode number, generation, mtime, ctime) now; 0 or
 * rlfs_iget's errors.  rlfs_commit_range is rlfs_exchange_range that, with
 * fresh non-NULL, first checks under the iolocks (after the other checks)
 * that file2 is still exactly as sampled, else changes nothing and
 * returns -EBUSY (file2 was written, truncated, chmod'ed... or replaced
 * by another inode).  fresh NULL: rlfs_exchange_range.
 */
struct rlfs_exchange_fresh {
	uint64_t ino;
	uint64_t generation;
	struct timespec mtime, ctime;
};
int rlfs_exchange_fresh_sample(struct rlfs_mount *mp, uint64_t ino2,
			       struct rlfs_exchange_fresh *fresh);
int rlfs_commit_range(struct rlfs_mount *mp, uint64_t ino1, uint64_t off1, uint64_t ino2,
		      uint64_t off2, uint64_t len, uint64_t flags,
		      const struct rlfs_exchange_fresh *fresh);

/*
 * A way to stop a long operation part-way, as the kernel stops a remap
 * when its caller has a fatal signal pending (xfs_reflink_remap_blocks:
 * fatal_signal_pending -> -EINTR after the extent in hand).  stop(arg) is
 * polled between pieces: before each transaction and every few dozen
 * pieces inside one (then with the metadata lock held, so it must be
 * quick and must not call into this library).  Non-zero means stop: the
 * pieces done so far are committed and kept.
 */
struct rlfs_cancel {
	int (*stop)(void *arg);
	void *arg;
};

/*
 * rlfs_clone_range that polls cancel (NULL: never stops).  Stopped, it
 * returns the bytes cloned so far if any (the clone of [src_off, src_off +
 * ret) is complete and dst's size covers it), else -EINTR, like the
 * kernel's remap (xfs_file_remap_range: "remapped > 0 ? remapped : ret");
 * the caller maps that onto its interface (FICLONERANGE: a short clone is
 * EINVAL; copy_file_range: the bytes done).
 *
 * Locking: dst's iolock exclusive; src's (another file) shared, so reads,
 * getattr and SEEK_DATA of the source go on during a clone, and several
 * clones of one source run at once (XFS since Linux 6.7: "xfs: allow read
 * IO and FICLONE to run concurrently"); writes to the source wait.
 */
int64_t rlfs_clone_range_cancel(struct rlfs_mount *mp, uint64_t src_ino, uint64_t src_off,
				uint64_t dst_ino, uint64_t dst_off, uint64_t len, unsigned flags,
				const struct rlfs_cancel *cancel);

/*
 * Dedupe range (ioctl_fideduperange(2), one destination; fs/remap_range.c
 * vfs_dedupe_file_range_one -> __generic_remap_file_range_prep with
 * REMAP_FILE_DEDUP | REMAP_FILE_CAN_SHORTEN): if bytes [src_off, src_off +
 * len) of src equal bytes [dst_off, dst_off + len) of dst, make dst's
 * range share src's blocks exactly as rlfs_clone_range does (refcount +1,
 * rmap, dst's old blocks released), else change nothing.  Offsets and len
 * in bytes; both ranges must lie inside their files' EOF; offsets
 * block-aligned; a len that is not a multiple of the block size is
 * shortened to whole blocks unless BOTH ranges end at their file's EOF
 * (then the partial EOF block is shared too); len 0 does nothing.  The
 * compare and the share happen under both iolocks (src shared, dst
 * exclusive, taken in inode-number order), so no write of this library
 * comes between them; blocks both files already map are equal without
 * reading, and a range all already shared succeeds without any change.
 * Times and setuid bits stay (nothing's contents change).  The caller
 * writes back data it caches first, and caps len as it wishes (the
 * kernel: 1 GiB per call).
 * Returns 0 (*deduped: bytes now shared, or 0 for len 0),
 * RLFS_DEDUPE_DIFFERS (1; nothing changed), or -errno: -EINVAL (alignment,
 * a range past EOF, overlapping ranges of one file, wrapping offsets,
 * non-regular file), -EISDIR, -EPERM (immutable dst), -EFBIG, -EROFS,
 * -EOPNOTSUPP (no reflink), -ENOSPC (nothing shared; a partial share
 * returns 0 with *deduped the bytes shared), -EIO, -EUCLEAN, -ENOMEM.
 * Permission (allow_file_dedupe) and descriptors are the caller's.
 */
#define RLFS_DEDUPE_DIFFERS 1   /* FILE_DEDUPE_RANGE_DIFFERS */
int rlfs_dedupe_range(struct rlfs_mount *mp, uint64_t src_ino, uint64_t src_off,
		      uint64_t dst_ino, uint64_t dst_off, uint64_t len, uint64_t *deduped);

/*
 * FIEMAP-like extent listing (see reflinkfs/ioctl.h, struct
 * rlfs_ioc_extent, whose layout this fills): extents of ino overlapping
 * [start, start+len) bytes, in file order, at most max of them, *count set;
 * RLFS_IOC_EXT_SHARED on extents whose blocks have refcount >= 2 (an extent
 * is split where sharing changes), UNWRITTEN, LAST on the file's last
 * extent.  The range is checked as FS_IOC_FIEMAP checks it (fs/ioctl.c
 * fiemap_prep): len 0 -EINVAL, start at or past the maximum file size
 * -EFBIG, a range past it shortened.  max 0 only checks.  0, -EINVAL,
 * -EFBIG, -ENOENT.
 */
struct rlfs_ioc_extent;
int rlfs_get_extents(struct rlfs_mount *mp, uint64_t ino, uint64_t start, uint64_t len,
		     struct rlfs_ioc_extent *ext, uint32_t max, uint32_t *count);
/*
 * The same for the blocks that hold ino's extended attributes (FIEMAP with
 * FIEMAP_FLAG_XATTR; XFS maps its attribute fork): the xattr tree's blocks
 * and the value blocks, in device order, numbered from logical offset 0 as
 * if they were one file (reflinkfs has no attribute fork address space).
 * Inline (in-inode) attributes have no blocks: 0 extents, as XFS reports
 * for its local attribute format.  Flags: LAST on the last extent only.
 * Errors as rlfs_get_extents (and -ENOMEM).
 */
int rlfs_get_xattr_extents(struct rlfs_mount *mp, uint64_t ino, uint64_t start, uint64_t len,
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
	int log;                    /* write-ahead log (LOG feature): 0 =
				     * default (on), 1 = on, negative = off
				     * (an image as before issue 10) */
	int rmapbt;                 /* reverse-mapping btree (RMAP feature):
				     * 0 = default (on), 1 = on, negative =
				     * off, > 1 = -EINVAL (mkfs.xfs -m
				     * rmapbt=0|1) */
	uint64_t log_bytes;         /* log size, 0 = rlfs_mkfs_default_log_bytes;
				     * rounded down to blocks; -EINVAL below
				     * RLFS_LOG_MIN_BLOCKS blocks or if it does
				     * not fit in one AG with room to spare */
	uint32_t cowextsize_blocks; /* CoW extent size hint set on the root
				     * directory (COWEXTSIZE: inherited by what
				     * is created in it), 0 = none (the 32-block
				     * default); mkfs.xfs -d cowextsize=N.
				     * -EINVAL past half an AG or 2^21 */
	uint32_t extszinherit_blocks; /* extent size hint the root directory
				     * passes on (EXTSZINHERIT), 0 = none;
				     * mkfs.xfs -d extszinherit=N; limits as
				     * cowextsize_blocks */
};
/* The log size mkfs picks for a filesystem of size_bytes with blocks of
 * blocksize bytes: 1/64 of the filesystem, at least RLFS_LOG_MIN_BLOCKS
 * blocks and RLFS_LOG_MIN_BYTES, at most 64 MiB (mkfs.xfs scales its log
 * the same way); the same with or without the RMAP feature. */
uint64_t rlfs_mkfs_default_log_bytes(uint64_t size_bytes, uint32_t blocksize);
int rlfs_mkfs(const char *image, const struct rlfs_mkfs_opts *opts);

/*
 * Write-ahead log statistics of a mount (LOG feature; all zero without a
 * log): what recovery replayed at mount and what this mount has written.
 */
struct rlfs_log_stats {
	uint64_t replayed_ckpts;    /* checkpoints replayed at mount */
	uint64_t replayed_blocks;   /* block images written in place by recovery */
	uint64_t skipped_blocks;    /* images not replayed: cancelled, or older
				     * than the block on disk */
	uint64_t bytes_written;     /* log bytes written by this mount */
	uint64_t records_written;
	uint64_t ckpts_written;     /* log forces that wrote a checkpoint */
	uint64_t ail_pushes;        /* AIL pushes (in-place write rounds) */
	uint64_t inplace_blocks;    /* blocks written in place from the AIL */
	uint64_t ail_borrowed;      /* AIL images that gave up their copy at the
				     * checkpoint (the buffer was the same) */
	uint64_t ail_unborrowed;    /* of them, copied again because the buffer
				     * changed before the block went in place */
	uint64_t forces;            /* log forces (fsync, sync) that had to write
				     * a checkpoint or flush an unflushed one */
	uint64_t intents_logged;    /* intent items committed (defer.h) */
	uint64_t intents_whiteout;  /* of them, dropped with their done before
				     * reaching the log (same checkpoint) */
	uint64_t intents_recovered; /* intents without a done finished by
				     * recovery at mount */
	uint64_t intents_relogged;  /* of intents_logged, intents logged again
				     * (a done for the old one, a new one with
				     * the work left) so that a long deferred
				     * chain does not hold the log's tail */
};
/*
 * Background AIL push, xfsaild's role, for a caller's timer (the daemon
 * calls it every 200 ms): if no transaction committed since the previous
 * call and more than half of the log is in use, write the oldest dirty
 * metadata in place until another eighth of the log is free (up to three
 * quarters), so that a busy phase's metadata goes out while the
 * filesystem is quiet instead of stalling the next checkpoint that does
 * not fit.  Does nothing while meta_lock is held (not idle), read-only, or
 * without a log.  1 if it pushed, 0 if not, or negative errno of the
 * writes (the images stay dirty).
 */
int rlfs_log_push_idle(struct rlfs_mount *mp);
/* true if mp has a log (RLFS_FEAT_INCOMPAT_LOG). */
bool rlfs_has_log(struct rlfs_mount *mp);
/* Copy mp's log statistics to *st (zeros without a log).  Takes meta_lock. */
void rlfs_log_get_stats(struct rlfs_mount *mp, struct rlfs_log_stats *st);
#endif

/*
 * daemon_int.h: what the parts of the FUSE daemon share.  Not installed;
 * only the files of fuse/ include it.
 *
 *   daemon.c   the request handlers (names, attributes, files, directories,
 *              xattrs) and the libfuse ops table
 *   flush.c    making the kernel write a file's dirty pages back and
 *              waiting for the WRITEs (flush_and_wait), and the slow pool
 *              that runs requests which must wait for that, or take long
 *   ioctl.c    copy_file_range and the private ioctls of reflinkfs/ioctl.h,
 *              with the resolution of a caller's file descriptor
 *   session.c  mounting, daemonizing, signals, the /dev/fuse request
 *              loop, unmounting (rlfs_daemon_run, rlfs_daemon_umount)
 *   uring.c    FUSE over io_uring and the custom io (uring.h)
 *   fileattr.c inode flags and extent size hints (FS_IOC_GETFLAGS...,
 *              FS_IOC_FSGETXATTR...), which the kernel forwards
 *   remount.c  the mount as the kernel sees it (read-only?, atime flags):
 *              remount, the mount-state ioctl, the atime policy
 *
 * session.c serves daemon.c's ops table, which names the handlers of
 * ioctl.c; ioctl.c and daemon.c wait through flush.c; all of them use
 * daemon.c's small helpers (logmsg, reply_status).
 */
#ifndef RLFS_FUSE_DAEMON_INT_H
#define RLFS_FUSE_DAEMON_INT_H
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <reflinkfs/fs.h>

/* Attribute and entry cache lifetime (seconds): the library is the only
 * writer of the image, so the kernel's cache can only be stale through
 * operations that it performs itself.  Attributes: the kernel invalidates
 * its copy on every operation that changes them through this mount (write,
 * fallocate, setattr, link...), and ioctl-driven changes (clone) notify it
 * explicitly. */
#define RLFS_FUSE_TIMEOUT 3600.0
/* Names change only through this mount, and the kernel updates its own
 * dentry cache for every namespace operation it sends us. */
#define RLFS_FUSE_ENTRY_TIMEOUT 3600.0
#define RLFS_FUSE_MAX_WRITE (1u << 20)

/* fi->fh of an open regular file: RLFS_FH_FILE | its open flags (an ioctl
 * request carries fh but not the flags; see open_flags, rl_ioctl). */
#define RLFS_FH_FILE (1ull << 62)
/* ... opened without the page cache (FOPEN_DIRECT_IO; see open_direct) */
#define RLFS_FH_DIRECT (1ull << 60)

extern struct rlfs_mount *g_mp;         /* NULL after destroy */
extern uint64_t g_root;                 /* rlfs_root_ino() */
extern struct fuse_session *g_se;
extern char *g_mnt;                     /* absolute mount point */
extern char *g_image;                   /* the image (realpath): finds our own mountinfo line */
extern int g_close_err;                 /* from rlfs_mount_close in destroy */
extern bool g_daemonized;
extern atomic_int g_init_done;          /* rl_init was called */
/* Files open for writing (the kernel may hold dirty pages for them) and a
 * generation of write opens, for the flush before lseek and ioctls. */
extern atomic_long g_nwopen;
extern atomic_ulong g_wgen, g_synced_gen;
extern pthread_key_t g_bufkey;          /* per-thread read buffer */
extern bool g_wb_on_reply;              /* Linux 6.16+: see flush.c */
extern cpu_set_t g_affinity;            /* the daemon's CPU affinity at start */
extern bool g_affinity_ok;
extern const struct fuse_lowlevel_ops rlfs_fuse_ops;

/* node id <-> inode number: the kernel calls the root FUSE_ROOT_ID */
static inline uint64_t n2i(fuse_ino_t n)
{
	return n == FUSE_ROOT_ID ? g_root : (uint64_t)n;
}

static inline fuse_ino_t i2n(uint64_t ino)
{
	return ino == g_root ? FUSE_ROOT_ID : (fuse_ino_t)ino;
}

/* *ts = now + ms milliseconds on CLOCK_REALTIME: the deadline form
 * pthread_cond_timedwait(3) takes (its condition variables here use the
 * default clock). */
static inline void deadline_in_ms(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

#define GET_MP(req, mp)                                   \
	struct rlfs_mount *mp = g_mp;                     \
	do {                                              \
		if (!mp) {                                \
			fuse_reply_err(req, EIO);         \
			return;                           \
		}                                         \
	} while (0)

/* daemon.c */
void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void reply_status(fuse_req_t req, int err);      /* err: 0 or -errno */
const struct fuse_ctx *req_ctx(fuse_req_t req);
bool writable_open(int flags);
/* The generation of inode ino for the kernel (entries, file handles):
 * the inode's, 0 for the root or if it is gone. */
uint64_t node_generation(uint64_t ino);
/* The open flags of fi (RLFS_FH_FILE); *known false if fi is not ours. */
int fh_flags(const struct fuse_file_info *fi, bool *known);
void free_tlbuf(void *p);
/* A per-thread buffer of at least size bytes (reused), or NULL. */
char *thread_buf(size_t size);
void rl_destroy(void *userdata);
/* Which of setuid (PRIV_SUID) and setgid (PRIV_SGID) a change of a file's
 * data by req's caller must clear, st being the file: the kernel's
 * setattr_should_drop_suidgid (fs/attr.c): nothing for a caller with
 * CAP_FSETID; else setuid, and setgid if group-executable or the caller is
 * outside the file's group.  lacks_fsetid: the kernel already said the
 * caller lacks CAP_FSETID; otherwise /proc is asked (callerfd.c), and a
 * caller it cannot see is taken to lack it. */
#define PRIV_SUID 1u
#define PRIV_SGID 2u
unsigned privs_to_drop(fuse_req_t req, const struct stat *st, bool lacks_fsetid);

/* flush.c */
#define RLFS_WHASH 1024
#define RLFS_BARRIER_FH (1ull << 63)      /* fi->fh of the barrier opendir */
extern atomic_int g_writes_inflight[RLFS_WHASH];   /* by nodeid hash */
unsigned whash(uint64_t nodeid);
bool barrier_opened(pid_t pid);
void barrier_released(pid_t tid);
bool kernel_ends_writeback_on_reply(void);
bool need_flush(void);
void flush_and_wait(const fuse_ino_t *nodes, int n);
/* The size the kernel holds for nodeid (under the writeback cache it owns
 * the size, which can be ahead of the library's), without a request and
 * without the inode lock: 0, or -errno (-ESTALE: not cached). */
int kernel_size(fuse_ino_t nodeid, uint64_t *size);

/* Wait until every WRITE the kernel has sent has been processed (before
 * going read-only; a no-op on Linux 6.16+, see flush.c). */
void flush_all_wait(void);

/* A request handed to the slow pool (slow_submit): it keeps copies of
 * everything it needs from the request buffer. */
struct slow_job {
	struct slow_job *next;
	void (*run)(struct slow_job *job);
	fuse_req_t req;
	fuse_ino_t ino;
	struct fuse_file_info fi;
	unsigned int cmd, flags;
	off_t off;
	int whence;
	size_t in_len, out_len;
	char in[];
};
void slow_submit(struct slow_job *job);
void slow_drain(void);

/* ioctl.c */
void rl_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			struct fuse_file_info *fi_out, size_t len, int flags);
void rl_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
	      struct fuse_file_info *fi, unsigned flags, const void *in_buf,
	      size_t in_bufsz, size_t out_bufsz);

/* callerfd.c: a file descriptor inside an ioctl argument, taken from the
 * caller (see the top of callerfd.c for why it cannot be forged). */
struct caller_file {
	int fd;                 /* the daemon's copy of the caller's file, or -1 */
	uint64_t ino;           /* its inode number on this filesystem */
	int flags;              /* its open flags (O_ACCMODE, O_APPEND...) */
};
/* Record this mount's device number (statx of mnt, no request); allow_other:
 * the mount admits other users.  0 or -errno. */
int callerfd_init(const char *mnt, bool allow_other);
/* Resolve fd, a descriptor of the caller of req.  0 with *cf filled (release
 * it with callerfd_put once the operation is over: holding the file keeps
 * the inode referenced); -EBADF if fd is not an open file of the caller
 * (or an O_PATH descriptor, which ioctls refuse); -EXDEV if it is a file of
 * another filesystem, or one the daemon cannot prove is on this one. */
int callerfd_get(fuse_req_t req, int64_t fd, struct caller_file *cf);
void callerfd_put(struct caller_file *cf);

/* The caller's groups and CAP_FSETID (callerfd.c): known false if /proc
 * could not tell (no pid, caller gone). */
#define CALLER_MAX_GROUPS 256
struct caller_creds {
	bool known;
	bool fsetid;            /* CAP_FSETID in the initial user namespace */
	bool sysadmin;          /* CAP_SYS_ADMIN in the initial user namespace */
	bool dac_override;      /* CAP_DAC_OVERRIDE in the initial user namespace */
	bool fowner;            /* CAP_FOWNER in the initial user namespace */
	bool linux_immutable;   /* CAP_LINUX_IMMUTABLE in the initial user namespace */
	gid_t fsgid;
	int ngroups;
	gid_t groups[CALLER_MAX_GROUPS];
};
/* 0, or -ESRCH (c->known false; fsgid still set from the request). */
int caller_creds_get(fuse_req_t req, struct caller_creds *c);
/* in_group_p(): gid is the caller's fsgid or one of its groups. */
bool caller_in_group(const struct caller_creds *c, gid_t gid);

/* fileattr.c: FS_IOC_GETFLAGS/SETFLAGS (and their 32-bit numbers) and
 * FS_IOC_FSGETXATTR/FSSETXATTR, as the kernel forwards them (fs/fuse/
 * ioctl.c fuse_priv_ioctl: in and out sizes exactly the argument's).
 * Replies to req: the argument, or EINVAL (other sizes), EPERM (not the
 * owner without CAP_FOWNER; IMMUTABLE/APPEND changed without
 * CAP_LINUX_IMMUTABLE), EOPNOTSUPP, ENOTTY and the library's errors
 * (rlfs_fileattr_set).  On a slow-pool thread (a set flushes the file's
 * dirty pages first). */
bool fileattr_ioctl_cmd(unsigned int cmd);
void fileattr_ioctl(fuse_req_t req, struct rlfs_mount *mp, fuse_ino_t ino, unsigned int cmd,
		    const void *in_buf, size_t in_bufsz, size_t out_bufsz);

/* session.c */
void unescape_mountinfo(char *s);

/* remount.c: the atime policy in force (RLFS_ATIME_* of reflinkfs/fs.h;
 * nodiratime: none for directories), from the mount options and then from
 * the mount's flags after a remount */
extern atomic_uint g_atime_how;
extern atomic_bool g_nodiratime;
struct rlfs_daemon_opts;
void mount_state_init(const struct rlfs_daemon_opts *o);
void mount_state_attach(void);          /* after the FUSE mount, before serving */
void mount_state_start(void);           /* serving: watch for remounts */
void mount_state_stop(void);            /* before the library mount closes */
/* RLFS_IOC_MOUNT_STATE (reflinkfs/ioctl.h), on a slow-pool thread */
void mount_state_ioctl(fuse_req_t req, const void *in_buf, size_t in_bufsz,
		       size_t out_bufsz);
#endif

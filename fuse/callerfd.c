/*
 * callerfd.c: identify a file descriptor that a caller passes inside an
 * ioctl argument (the src_fd of RLFS_IOC_CLONE and RLFS_IOC_CLONE_RANGE).
 *
 * The kernel hands a FUSE daemon the node of the file an ioctl is issued
 * on, but a descriptor inside the argument is only a number in the
 * caller's file table.  Everything the daemon learns about it must come
 * from the kernel, never from text the caller controls: mount sources,
 * filesystem types and subtypes, and the inode numbers a FUSE server
 * reports are all chosen by whoever mounted that filesystem, and any user
 * may mount a FUSE filesystem (fusermount3 is setuid).  So:
 *
 *   1. pidfd_open(2) the calling thread and pidfd_getfd(2) the descriptor:
 *      the daemon now holds the caller's open file itself (the same open
 *      file description), so a caller that changes its file table (closes,
 *      dup2()s another file over the number) or dies after this point
 *      cannot change what the daemon looks at.  The caller cannot die
 *      before it: a FUSE request that a daemon has read is waited for
 *      uninterruptibly (fs/fuse/dev.c request_wait_answer), so its pid is
 *      not reused while the request is served.
 *   2. statx(2) the file with AT_STATX_DONT_SYNC: st_dev is the device
 *      number of the file's superblock, which the kernel assigned (an
 *      anonymous device per FUSE connection) and no server can choose;
 *      it must equal this mount's, recorded at mount time.  Only then is
 *      st_ino an inode number that this daemon itself reported.  DONT_SYNC
 *      sends no request, so a hostile FUSE server cannot stall the check.
 *   3. fcntl(F_GETFL): the real open mode, for the kernel's "source open
 *      for reading" rule.
 *
 * pidfd_getfd needs ptrace-attach rights over the caller: a root daemon
 * has them; a daemon mounted by a user has them over that user's own
 * processes only (and not under Yama ptrace_scope >= 1).  Then the daemon
 * falls back to /proc/<pid>/fdinfo/<fd> (inode, flags and mount id of the
 * caller's file, kernel-generated) and checks that the mount id's device
 * in /proc/<pid>/mountinfo (also kernel-generated) is this mount's, then
 * reads fdinfo again and demands the same answers.  That is not
 * unforgeable (a caller racing its file table against a mount id reused
 * in between could still win), so the fallback is refused when the
 * mount admits other users (allow_other) unless the daemon runs as root:
 * a user's own mount only ever serves that user, who can read what they
 * clone anyway.
 *
 * Closing a descriptor of a FUSE file sends that filesystem a FLUSH,
 * which a hostile server may never answer.  Before taking a descriptor
 * the daemon therefore checks fdinfo's mount device (cheap, and enough to
 * turn away every honest foreign file); a descriptor that still turns out
 * foreign after pidfd_getfd (a caller that raced) is closed on a thread of
 * its own, which is all a hostile server can then hold up.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "daemon_int.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL     /* linux/pidfd.h, Linux 6.9 */
#endif

static dev_t g_dev;                     /* st_dev of this mount */
static bool g_dev_known;
static bool g_allow_other;

int callerfd_init(const char *mnt, bool allow_other)
{
	g_allow_other = allow_other;
	struct statx stx;
	/* The mount's root: no request (DONT_SYNC), so this works before
	 * the INIT reply and while nothing serves the session yet. */
	if (statx(AT_FDCWD, mnt, AT_STATX_DONT_SYNC | AT_NO_AUTOMOUNT, STATX_TYPE, &stx) < 0)
		return -errno;
	g_dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
	g_dev_known = true;
	return 0;
}

/* fdinfo of the caller's fd: inode number, open flags, mount id.  0,
 * -EBADF (no such open file, or unreadable fdinfo). */
struct fdinfo {
	unsigned long long ino;
	unsigned int flags;
	unsigned long mnt_id;
};

static int read_fdinfo(pid_t pid, int fd, struct fdinfo *fi)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)pid, fd);
	int pfd = open(path, O_RDONLY | O_CLOEXEC);
	if (pfd < 0)
		return -EBADF;
	char buf[4096];
	/* one read: the kernel formats the whole record from one struct
	 * file, so the fields belong together */
	ssize_t n = read(pfd, buf, sizeof(buf) - 1);
	close(pfd);
	if (n <= 0)
		return -EBADF;
	buf[n] = '\0';
	bool have_ino = false, have_flags = false, have_mnt = false;
	for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (sscanf(line, "ino: %llu", &fi->ino) == 1)
			have_ino = true;
		else if (sscanf(line, "flags: %o", &fi->flags) == 1)
			have_flags = true;
		else if (sscanf(line, "mnt_id: %lu", &fi->mnt_id) == 1)
			have_mnt = true;
	}
	return have_ino && have_flags && have_mnt ? 0 : -EBADF;
}

/* The device of mount mnt_id in pid's mount namespace (mountinfo's
 * major:minor, which the kernel takes from the superblock).  0 if found,
 * -ENOENT. */
static int mount_dev(pid_t pid, unsigned long mnt_id, dev_t *dev)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/mountinfo", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -ENOENT;
	char *line = NULL;
	size_t cap = 0;
	int err = -ENOENT;
	while (getline(&line, &cap, f) > 0) {
		unsigned long id, parent;
		unsigned maj, min;
		if (sscanf(line, "%lu %lu %u:%u", &id, &parent, &maj, &min) != 4 || id != mnt_id)
			continue;
		*dev = makedev(maj, min);
		err = 0;
		break;
	}
	free(line);
	fclose(f);
	return err;
}

/*
 * Mount ids already seen to be this mount's (a bind mount of it has an id
 * of its own), so that the cheap pre-check of callerfd_get does not read
 * mountinfo on every request.  Only a hint: a listed id whose mount went
 * away and was reused for another filesystem only lets a foreign
 * descriptor through to pidfd_getfd, whose statx check turns it away (and
 * closes it on a thread of its own) as for a caller that raced.  The
 * fallback without pidfd_getfd, where mountinfo is the check itself,
 * never uses it.
 */
#define OURS_SLOTS 16
static _Atomic unsigned long g_ours[OURS_SLOTS];
static _Atomic unsigned g_ours_next;

static bool mnt_known_ours(unsigned long mnt_id)
{
	for (unsigned i = 0; i < OURS_SLOTS; i++)
		if (atomic_load_explicit(&g_ours[i], memory_order_relaxed) == mnt_id + 1)
			return true;
	return false;
}

static void mnt_note_ours(unsigned long mnt_id)
{
	unsigned i = atomic_fetch_add(&g_ours_next, 1) % OURS_SLOTS;
	atomic_store_explicit(&g_ours[i], mnt_id + 1, memory_order_relaxed);
}

static void *close_thread(void *arg)
{
	close((int)(intptr_t)arg);
	return NULL;
}

/* Close a descriptor of a foreign file without waiting for its
 * filesystem (see the top of the file). */
static void close_foreign(int fd)
{
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, close_thread, (void *)(intptr_t)fd) != 0)
		close(fd);
	pthread_attr_destroy(&a);
}

/* pidfd_getfd of the caller's fd.  The descriptor, or -errno. */
static int take_fd(pid_t tid, int fd)
{
	int pidfd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
	if (pidfd < 0 && errno == EINVAL)
		pidfd = (int)syscall(SYS_pidfd_open, tid, 0);   /* before 6.9: leaders only */
	if (pidfd < 0)
		return -errno;
	int r = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	int e = errno;
	close(pidfd);
	if (r < 0)
		return -e;
	/* the daemon must never be blocked by the file: no O_NONBLOCK
	 * matters here, it only stats and closes it */
	return r;
}

int callerfd_get(fuse_req_t req, int64_t fd, struct caller_file *cf)
{
	cf->fd = -1;
	cf->ino = 0;
	cf->flags = 0;
	const struct fuse_ctx *ctx = req_ctx(req);
	if (fd < 0 || fd > INT_MAX)
		return -EBADF;
	if (ctx->pid <= 0 || !g_dev_known)
		return -EXDEV;  /* caller outside our pid namespace: unprovable */
	struct fdinfo a;
	int err = read_fdinfo(ctx->pid, (int)fd, &a);
	if (err)
		return err;
	if (a.flags & O_PATH)
		return -EBADF;  /* ioctls do not take O_PATH descriptors */
	dev_t dev;
	if (!mnt_known_ours(a.mnt_id)) {
		if (mount_dev(ctx->pid, a.mnt_id, &dev) == 0 && dev != g_dev)
			return -EXDEV;  /* honest foreign file: never taken */
	}

	int tfd = take_fd(ctx->pid, (int)fd);
	if (tfd >= 0) {
		struct statx stx;
		if (statx(tfd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_INO, &stx) < 0) {
			close_foreign(tfd);
			return -EBADF;
		}
		if (makedev(stx.stx_dev_major, stx.stx_dev_minor) != g_dev) {
			close_foreign(tfd);
			return -EXDEV;
		}
		int fl = fcntl(tfd, F_GETFL);
		if (fl < 0 || (fl & O_PATH)) {
			close(tfd);
			return -EBADF;
		}
		if (!mnt_known_ours(a.mnt_id))
			mnt_note_ours(a.mnt_id);
		cf->fd = tfd;
		cf->ino = stx.stx_ino;
		cf->flags = fl;
		return 0;
	}
	if (tfd == -EBADF)
		return -EBADF;  /* closed since fdinfo was read */
	/* No ptrace rights over the caller (a daemon not run by root): the
	 * fallback, only where it cannot serve another user's caller. */
	if (geteuid() != 0 && g_allow_other) {
		logmsg("reflinkfs: cannot take the caller's file descriptor (%s); refusing the "
		       "source of a clone on an allow_other mount", strerror(-tfd));
		return -EXDEV;
	}
	if (mount_dev(ctx->pid, a.mnt_id, &dev) != 0 || dev != g_dev)
		return -EXDEV;
	struct fdinfo b;
	if (read_fdinfo(ctx->pid, (int)fd, &b) != 0 || b.ino != a.ino || b.mnt_id != a.mnt_id ||
	    b.flags != a.flags)
		return -EXDEV;
	cf->ino = a.ino;
	cf->flags = (int)a.flags;
	return 0;
}

void callerfd_put(struct caller_file *cf)
{
	if (cf->fd >= 0)
		close(cf->fd);  /* a file of this mount: its FLUSH is ours */
	cf->fd = -1;
}

/*
 * The caller's credentials beyond what a FUSE request carries (uid, gid =
 * fsuid, fsgid, pid): its supplementary groups and whether it has
 * CAP_FSETID, for the kernel's setuid/setgid rules on data changes
 * (setattr_should_drop_suidgid, in_group_or_capable: fs/attr.c,
 * fs/inode.c).  From /proc/<pid>/status, which the kernel writes; the pid
 * is pinned while its request is served (see the top of the file).
 * CAP_FSETID counts only in the initial user namespace (capable()), so a
 * caller in another user namespace is taken not to have it.
 */
int caller_creds_get(fuse_req_t req, struct caller_creds *c)
{
	memset(c, 0, sizeof(*c));
	const struct fuse_ctx *ctx = req_ctx(req);
	c->fsgid = ctx->gid;
	if (ctx->pid <= 0)
		return -ESRCH;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)ctx->pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -ESRCH;
	char *line = NULL;
	size_t cap = 0;
	bool have_caps = false;
	unsigned long long eff = 0;
	while (getline(&line, &cap, f) > 0) {
		if (sscanf(line, "CapEff: %llx", &eff) == 1) {
			have_caps = true;
		} else if (strncmp(line, "Groups:", 7) == 0) {
			char *p = line + 7, *end;
			while (c->ngroups < CALLER_MAX_GROUPS) {
				unsigned long g = strtoul(p, &end, 10);
				if (end == p)
					break;
				c->groups[c->ngroups++] = (gid_t)g;
				p = end;
			}
		}
	}
	free(line);
	fclose(f);
	if (!have_caps)
		return -ESRCH;
	/* the initial user namespace has a fixed inode number
	 * (PROC_USER_INIT_INO, include/linux/proc_ns.h) */
	struct stat nst;
	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)ctx->pid);
	bool init_ns = stat(path, &nst) == 0 && nst.st_ino == 0xEFFFFFFDu;
	c->fsetid = init_ns && (eff & (1ull << 4));        /* CAP_FSETID */
	c->sysadmin = init_ns && (eff & (1ull << 21));     /* CAP_SYS_ADMIN */
	c->dac_override = init_ns && (eff & (1ull << 1));  /* CAP_DAC_OVERRIDE */
	c->fowner = init_ns && (eff & (1ull << 3));        /* CAP_FOWNER */
	c->linux_immutable = init_ns && (eff & (1ull << 9)); /* CAP_LINUX_IMMUTABLE */
	c->known = true;
	return 0;
}

bool caller_in_group(const struct caller_creds *c, gid_t gid)
{
	if (c->fsgid == gid)
		return true;
	for (int i = 0; i < c->ngroups; i++) {
		if (c->groups[i] == gid)
			return true;
	}
	return false;
}

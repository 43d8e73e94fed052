/*
 * remount.c: the daemon's own mount as the kernel sees it (read-only or
 * read-write, atime flags), remount, and the atime policy (see
 * daemon_int.h for the map of fuse/).
 *
 * The FUSE kernel tells a daemon nothing about a remount: its reconfigure
 * (fs/fuse/inode.c fuse_reconfigure) writes dirty pages back
 * (sync_filesystem) and lets the VFS flip SB_RDONLY and the mount's flags;
 * no request is sent (FUSE_SYNCFS is virtiofs only).  So the daemon reads
 * its state from /proc/self/mountinfo:
 *   - the superblock options (last field, "ro" or "rw") say whether the
 *     filesystem is read-only (a bind mount made read-only is not);
 *   - the per-mount options of the daemon's own mount (found by mount id
 *     right after mounting) give the atime policy: noatime, relatime,
 *     neither = strictatime, nodiratime.
 * mount(8)'s helper (mount.reflinkfs / mount.fuse.reflinkfs -o remount)
 * and `reflinkfs mount -o remount` call rlfs_daemon_remount: going
 * read-write it first asks the daemon to become writable
 * (RLFS_IOC_MOUNT_STATE, RLFS_MS_PREPARE_RW), so that no WRITE can reach a
 * daemon still read-only; then mount(2) MS_REMOUNT; then RLFS_MS_SYNC,
 * which makes the daemon adopt the kernel's state and answers only when it
 * has (going read-only: everything flushed, superblock clean).  A remount
 * made some other way (mount(2) by another program, mount -i) is noticed
 * by a thread that polls mountinfo (POLLPRI on every mount table change).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <reflinkfs/fs.h>
#include <reflinkfs/ioctl.h>

#include "daemon.h"
#include "daemon_int.h"

#ifndef MS_NOSYMFOLLOW
#define MS_NOSYMFOLLOW 256
#endif

atomic_uint g_atime_how = RLFS_ATIME_RELATIME;
atomic_bool g_nodiratime;

/* ------------------------------------------------------------------ */
/* mountinfo */

/* One line of /proc/self/mountinfo (proc(5)), unescaped, in buf. */
struct mi_entry {
	unsigned long id;
	unsigned major, minor;
	char *mnt;          /* mount point */
	char *mnt_opts;     /* per-mount options */
	char *fstype;
	char *source;
	char *super_opts;   /* superblock options */
};

/* Split line (modified in place) into e.  false if malformed. */
static bool mi_parse(char *line, struct mi_entry *e)
{
	char *save = NULL;
	char *f[6];
	int n = 0;
	char *t;
	while (n < 6 && (t = strtok_r(n ? NULL : line, " \n", &save)))
		f[n++] = t;
	if (n < 6)
		return false;
	char *end;
	e->id = strtoul(f[0], &end, 10);
	if (*end || sscanf(f[2], "%u:%u", &e->major, &e->minor) != 2)
		return false;
	e->mnt = f[4];
	e->mnt_opts = f[5];
	while ((t = strtok_r(NULL, " \n", &save)) && strcmp(t, "-") != 0)
		;       /* optional fields */
	if (!t)
		return false;
	e->fstype = strtok_r(NULL, " \n", &save);
	e->source = strtok_r(NULL, " \n", &save);
	e->super_opts = strtok_r(NULL, " \n", &save);
	if (!e->fstype || !e->source || !e->super_opts)
		return false;
	unescape_mountinfo(e->mnt);
	unescape_mountinfo(e->source);
	return true;
}

/* Whether the comma-separated list has the option opt. */
static bool has_opt(const char *list, const char *opt)
{
	size_t l = strlen(opt);
	for (const char *p = list; p && *p;) {
		const char *c = strchr(p, ',');
		size_t n = c ? (size_t)(c - p) : strlen(p);
		if (n == l && memcmp(p, opt, l) == 0)
			return true;
		p = c ? c + 1 : NULL;
	}
	return false;
}

/*
 * Find the reflinkfs mount: by id if id != 0, else the last fuse.reflinkfs
 * mount on mnt (with source reflinkfs#image if image is given).  On
 * success *e points into *linep (the caller frees it).  0 or -ENOENT.
 */
static int mi_find(unsigned long id, const char *mnt, const char *image, struct mi_entry *out,
		   char **linep)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	char *line = NULL, *found = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		char *copy = strdup(line);
		struct mi_entry e;
		if (!copy)
			break;
		if (!mi_parse(copy, &e) || strcmp(e.fstype, "fuse.reflinkfs") != 0 ||
		    (id && e.id != id) || (!id && strcmp(e.mnt, mnt) != 0) ||
		    (!id && image && (strncmp(e.source, "reflinkfs#", 10) != 0 ||
				      strcmp(e.source + 10, image) != 0))) {
			free(copy);
			continue;
		}
		free(copy);
		free(found);
		found = strdup(line);
	}
	free(line);
	fclose(f);
	if (!found)
		return -ENOENT;
	if (!mi_parse(found, out)) {
		free(found);
		return -ENOENT;
	}
	*linep = found;
	return 0;
}

/* The atime policy that per-mount options give (fs/namespace.c: relatime
 * unless noatime or strictatime; mountinfo shows noatime or relatime, or
 * neither for strictatime). */
static unsigned atime_of(const char *mnt_opts, bool *nodiratime)
{
	*nodiratime = has_opt(mnt_opts, "nodiratime");
	if (has_opt(mnt_opts, "noatime"))
		return RLFS_ATIME_NOATIME;
	if (has_opt(mnt_opts, "relatime"))
		return RLFS_ATIME_RELATIME;
	return RLFS_ATIME_STRICT;
}

/* MS_* flags of per-mount options (without the atime ones). */
static unsigned long ms_of(const char *mnt_opts)
{
	unsigned long fl = 0;
	if (has_opt(mnt_opts, "ro"))
		fl |= MS_RDONLY;
	if (has_opt(mnt_opts, "nosuid"))
		fl |= MS_NOSUID;
	if (has_opt(mnt_opts, "nodev"))
		fl |= MS_NODEV;
	if (has_opt(mnt_opts, "noexec"))
		fl |= MS_NOEXEC;
	if (has_opt(mnt_opts, "nosymfollow"))
		fl |= MS_NOSYMFOLLOW;
	return fl;
}

static unsigned long ms_atime(unsigned how, bool nodiratime)
{
	unsigned long fl = nodiratime ? MS_NODIRATIME : 0;
	switch (how) {
	case RLFS_ATIME_NOATIME:
		return fl | MS_NOATIME;
	case RLFS_ATIME_STRICT:
		return fl | MS_STRICTATIME;
	default:
		return fl | MS_RELATIME;
	}
}

int rlfs_parse_atime_opt(const char *o, struct rlfs_atime_opts *a)
{
	if (strcmp(o, "noatime") == 0)
		a->noatime = true;
	else if (strcmp(o, "atime") == 0)
		a->noatime = false;
	else if (strcmp(o, "strictatime") == 0)
		a->strict = true;
	else if (strcmp(o, "nostrictatime") == 0)
		a->strict = false;
	else if (strcmp(o, "relatime") == 0 || strcmp(o, "norelatime") == 0)
		;       /* relatime is what is left without noatime/strictatime */
	else if (strcmp(o, "nodiratime") == 0)
		a->nodiratime = true;
	else if (strcmp(o, "diratime") == 0)
		a->nodiratime = false;
	else
		return 0;
	a->given = true;
	return 1;
}

unsigned rlfs_atime_policy(const struct rlfs_atime_opts *a)
{
	/* fs/namespace.c path_mount: relatime unless MS_NOATIME, and
	 * MS_STRICTATIME clears both */
	if (a->strict)
		return RLFS_ATIME_STRICT;
	return a->noatime ? RLFS_ATIME_NOATIME : RLFS_ATIME_RELATIME;
}

/* ------------------------------------------------------------------ */
/* the daemon's state */

static pthread_mutex_t g_state_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long g_mount_id;        /* our mount, 0 = not found */
static char *g_last_mnt_opts;           /* per-mount options last seen */
static bool g_stopped;
static time_t g_rw_pending;             /* PREPARE_RW done at (monotonic s) */
static int g_watch_fd = -1;
#define RLFS_RW_PENDING_SECS 30

static time_t mono_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

void mount_state_init(const struct rlfs_daemon_opts *o)
{
	atomic_store(&g_atime_how, o->atime);
	atomic_store(&g_nodiratime, o->nodiratime != 0);
}

/*
 * Right after the FUSE mount exists (before serving): find our mount's id,
 * and as root give it the atime flags of our policy (libfuse 3.14 can pass
 * only noatime): MS_REMOUNT | MS_BIND changes the mount's flags alone and
 * sends the daemon no request.  Then mountinfo, `mount` and a later
 * `mount -o remount` (which merges the current options) show the policy
 * in force.  Not being able to do so (a user's mount) only costs that.
 */
void mount_state_attach(void)
{
	struct mi_entry e;
	char *line;
	if (mi_find(0, g_mnt, g_image, &e, &line) != 0) {
		logmsg("reflinkfs: %s not found in /proc/self/mountinfo: remounts will not be "
		       "noticed", g_mnt);
		return;
	}
	g_mount_id = e.id;
	bool nodir;
	unsigned how = atime_of(e.mnt_opts, &nodir);
	if (geteuid() == 0 && (how != atomic_load(&g_atime_how) ||
			       nodir != atomic_load(&g_nodiratime))) {
		unsigned long fl = MS_REMOUNT | MS_BIND | ms_of(e.mnt_opts) |
				   ms_atime(atomic_load(&g_atime_how), atomic_load(&g_nodiratime));
		if (mount(NULL, g_mnt, NULL, fl, NULL) < 0)
			logmsg("reflinkfs: cannot set the atime flags of %s: %s", g_mnt,
			       strerror(errno));
		free(line);
		if (mi_find(g_mount_id, NULL, NULL, &e, &line) != 0)
			return;
	}
	g_last_mnt_opts = strdup(e.mnt_opts);
	free(line);
}

/*
 * Adopt the kernel's state.  sync_ioctl: called for RLFS_MS_SYNC, i.e. the
 * remount helper's mount(2) has returned: a pending PREPARE_RW ends.
 * Returns 0 or the error of the state change (going read-only: the
 * flush; going read-write: the image cannot be written).
 */
static int mount_state_sync(bool sync_ioctl)
{
	int err = 0;
	pthread_mutex_lock(&g_state_lock);
	struct rlfs_mount *mp = g_mp;
	if (sync_ioctl)
		g_rw_pending = 0;
	if (g_stopped || !mp || !g_mount_id) {
		pthread_mutex_unlock(&g_state_lock);
		return 0;
	}
	struct mi_entry e;
	char *line;
	if (mi_find(g_mount_id, NULL, NULL, &e, &line) != 0) {
		pthread_mutex_unlock(&g_state_lock);
		return 0;       /* detached (lazy unmount): nothing to follow */
	}
	if (!g_last_mnt_opts || strcmp(g_last_mnt_opts, e.mnt_opts) != 0) {
		bool nodir;
		unsigned how = atime_of(e.mnt_opts, &nodir);
		if (g_last_mnt_opts && (how != atomic_load(&g_atime_how) ||
					nodir != atomic_load(&g_nodiratime)))
			logmsg("reflinkfs: %s: atime policy now %s%s", g_mnt,
			       how == RLFS_ATIME_NOATIME ? "noatime" :
			       how == RLFS_ATIME_STRICT ? "strictatime" : "relatime",
			       nodir ? ",nodiratime" : "");
		atomic_store(&g_atime_how, how);
		atomic_store(&g_nodiratime, nodir);
		free(g_last_mnt_opts);
		g_last_mnt_opts = strdup(e.mnt_opts);
	}
	bool kernel_ro = has_opt(e.super_opts, "ro");
	free(line);
	bool lib_ro = rlfs_mount_is_rdonly(mp);
	if (kernel_ro && !lib_ro) {
		if (g_rw_pending && mono_sec() - g_rw_pending < RLFS_RW_PENDING_SECS) {
			/* the helper made us writable and is about to remount */
		} else {
			g_rw_pending = 0;
			flush_all_wait();       /* older kernels: WRITEs still in flight */
			err = rlfs_mount_set_rdonly(mp, true);
			if (err)
				logmsg("reflinkfs: %s remounted read-only, but flushing the image "
				       "failed: %s", g_mnt, strerror(-err));
		}
	} else if (!kernel_ro) {
		g_rw_pending = 0;
		if (lib_ro) {
			err = rlfs_mount_set_rdonly(mp, false);
			if (err)
				logmsg("reflinkfs: %s remounted read-write, but the image cannot be "
				       "written: %s", g_mnt, strerror(-err));
		}
	}
	pthread_mutex_unlock(&g_state_lock);
	return err;
}

/* PREPARE_RW: become writable before the kernel does. */
static int mount_state_prepare_rw(void)
{
	pthread_mutex_lock(&g_state_lock);
	struct rlfs_mount *mp = g_mp;
	int err = 0;
	if (!g_stopped && mp && rlfs_mount_is_rdonly(mp)) {
		err = rlfs_mount_set_rdonly(mp, false);
		if (!err)
			g_rw_pending = mono_sec();
	}
	pthread_mutex_unlock(&g_state_lock);
	return err;
}

/* Polls mountinfo: the kernel flags POLLPRI when the mount table changes. */
static void *watch_thread(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd p = { .fd = g_watch_fd, .events = POLLPRI };
		int n = poll(&p, 1, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (p.revents & POLLNVAL))
			return NULL;
		/* poll itself re-arms (fs/proc_namespace.c mounts_poll) */
		pthread_mutex_lock(&g_state_lock);
		bool stop = g_stopped;
		pthread_mutex_unlock(&g_state_lock);
		if (stop)
			return NULL;
		mount_state_sync(false);
	}
}

void mount_state_start(void)
{
	if (!g_mount_id)
		return;
	g_watch_fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	if (g_watch_fd < 0)
		return;
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, watch_thread, NULL) != 0)
		logmsg("reflinkfs: cannot watch the mount table: remounts by mount(2) alone "
		       "will not be noticed");
	pthread_attr_destroy(&a);
	/* catch a remount that happened between mounting and now */
	mount_state_sync(false);
}

/* Before the library mount is closed: no state change after this. */
void mount_state_stop(void)
{
	pthread_mutex_lock(&g_state_lock);
	g_stopped = true;
	pthread_mutex_unlock(&g_state_lock);
}

/* RLFS_IOC_MOUNT_STATE, on a slow-pool thread (a flush can take long). */
void mount_state_ioctl(fuse_req_t req, const void *in_buf, size_t in_bufsz, size_t out_bufsz)
{
	struct rlfs_ioc_mount_state a;
	if (in_bufsz != sizeof(a) || out_bufsz != sizeof(a)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	memcpy(&a, in_buf, sizeof(a));
	if (a.flags || a.atime || a.reserved || a.reserved2[0] || a.reserved2[1]) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	int err;
	switch (a.op) {
	case RLFS_MS_SYNC:
		err = mount_state_sync(true);
		break;
	case RLFS_MS_PREPARE_RW: {
		/* only who may remount: root, or the user the daemon runs as */
		const struct fuse_ctx *ctx = req_ctx(req);
		if (ctx->uid != 0 && ctx->uid != geteuid()) {
			err = -EPERM;
			break;
		}
		err = mount_state_prepare_rw();
		break;
	}
	default:
		err = -EINVAL;
		break;
	}
	if (err) {
		reply_status(req, err);
		return;
	}
	struct rlfs_mount *mp = g_mp;
	a.flags = mp && rlfs_mount_is_rdonly(mp) ? RLFS_MS_RDONLY : 0;
	a.atime = atomic_load(&g_atime_how) | (atomic_load(&g_nodiratime) ? RLFS_MS_NODIRATIME : 0);
	fuse_reply_ioctl(req, 0, &a, sizeof(a));
}

/* ------------------------------------------------------------------ */
/* the remount command (mount(8) helper and `reflinkfs mount -o remount`) */

struct vfs_state {
	bool ro, nosuid, nodev, noexec, sync, dirsync, nosymfollow;
	struct rlfs_atime_opts atime;   /* the atime options given */
};

/* Apply one option; false if it is not a per-mount/superblock flag. */
static bool apply_opt(struct vfs_state *v, const char *o)
{
	static const struct {
		const char *name;
		size_t off;
		bool val;
	} flags[] = {
#define F(n, field, val) { n, offsetof(struct vfs_state, field), val }
		F("ro", ro, true), F("rw", ro, false),
		F("nosuid", nosuid, true), F("suid", nosuid, false),
		F("nodev", nodev, true), F("dev", nodev, false),
		F("noexec", noexec, true), F("exec", noexec, false),
		F("sync", sync, true), F("async", sync, false),
		F("dirsync", dirsync, true),
		F("nosymfollow", nosymfollow, true), F("symfollow", nosymfollow, false),
#undef F
	};
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		if (strcmp(o, flags[i].name) == 0) {
			*(bool *)((char *)v + flags[i].off) = flags[i].val;
			return true;
		}
	}
	return rlfs_parse_atime_opt(o, &v->atime) != 0;
}

/* The daemon's mount-state ioctl on the mount's root: 0 or -errno. */
static int state_ioctl(const char *mnt, uint32_t op, struct rlfs_ioc_mount_state *a)
{
	int fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	memset(a, 0, sizeof(*a));
	a->op = op;
	int r = ioctl(fd, RLFS_IOC_MOUNT_STATE, a);
	int err = r < 0 ? -errno : 0;
	close(fd);
	return err;
}

int rlfs_daemon_remount(const char *prog, const char *mountpoint, const char *opts,
			int from_mount8)
{
	char *mnt = realpath(mountpoint, NULL);
	if (!mnt) {
		fprintf(stderr, "%s: %s: %s\n", prog, mountpoint, strerror(errno));
		return 1;
	}
	struct mi_entry e;
	char *line;
	if (mi_find(0, mnt, NULL, &e, &line) != 0) {
		fprintf(stderr, "%s: %s is not a reflinkfs mount point\n", prog, mountpoint);
		free(mnt);
		return 1;
	}
	/* mount(8) hands the helper the whole merged option list (the
	 * mount's current or fstab options and the new ones, with dev, suid,
	 * exec and rw left out as its defaults): start from the defaults.
	 * `reflinkfs mount -o remount,...` changes only what it names: start
	 * from the mount as it is. */
	struct vfs_state v;
	memset(&v, 0, sizeof(v));
	bool was_ro = has_opt(e.super_opts, "ro");
	bool cur_nodir;
	unsigned cur_atime = atime_of(e.mnt_opts, &cur_nodir);
	if (from_mount8) {
		v.nosuid = v.nodev = geteuid() != 0;
	} else {
		unsigned long fl = ms_of(e.mnt_opts);
		v.ro = was_ro || (fl & MS_RDONLY);
		v.nosuid = fl & MS_NOSUID;
		v.nodev = fl & MS_NODEV;
		v.noexec = fl & MS_NOEXEC;
		v.nosymfollow = fl & MS_NOSYMFOLLOW;
		v.sync = has_opt(e.super_opts, "sync") || has_opt(e.mnt_opts, "sync");
		v.dirsync = has_opt(e.super_opts, "dirsync");
	}
	free(line);
	char *copy = strdup(opts ? opts : "");
	if (!copy) {
		free(mnt);
		return 1;
	}
	char *save = NULL;
	for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save))
		apply_opt(&v, o);  /* the rest (remount, user_id=...) changes nothing */
	free(copy);
	/* atime as mount(2) does it: the options given replace all the
	 * mount's atime flags; none given keeps them (which is also how a
	 * strictatime mount stays one: mountinfo, and so mount(8)'s merged
	 * list, shows no flag for it) */
	unsigned how = v.atime.given ? rlfs_atime_policy(&v.atime) : cur_atime;
	bool nodir = v.atime.given ? v.atime.nodiratime : cur_nodir;

	unsigned long fl = MS_REMOUNT | ms_atime(how, nodir);
	fl |= (v.ro ? MS_RDONLY : 0) | (v.nosuid ? MS_NOSUID : 0) | (v.nodev ? MS_NODEV : 0) |
	      (v.noexec ? MS_NOEXEC : 0) | (v.sync ? MS_SYNCHRONOUS : 0) |
	      (v.dirsync ? MS_DIRSYNC : 0) | (v.nosymfollow ? MS_NOSYMFOLLOW : 0);
	struct rlfs_ioc_mount_state st;
	int err;
	if (was_ro && !v.ro) {
		err = state_ioctl(mnt, RLFS_MS_PREPARE_RW, &st);
		if (err) {
			fprintf(stderr, "%s: cannot remount %s read-write: %s\n", prog, mountpoint,
				err == -ENOTTY ? "the daemon does not support remount" :
				strerror(-err));
			free(mnt);
			return 1;
		}
	}
	int ret = 0;
	if (mount(NULL, mnt, NULL, fl, NULL) < 0) {
		int e2 = errno;
		fprintf(stderr, "%s: cannot remount %s: %s\n", prog, mountpoint,
			e2 == EBUSY && v.ro ? "files are open for writing (EBUSY)" :
			strerror(e2));
		ret = 1;
	}
	/* the daemon adopts the kernel's state (flushed and clean when read-only) */
	err = state_ioctl(mnt, RLFS_MS_SYNC, &st);
	if (err && err != -ENOTTY) {
		fprintf(stderr, "%s: %s: the daemon could not follow the remount: %s\n", prog,
			mountpoint, strerror(-err));
		ret = 1;
	} else if (!err && ret == 0 && ((st.flags & RLFS_MS_RDONLY) != 0) != v.ro) {
		fprintf(stderr, "%s: %s: the daemon is still %s\n", prog, mountpoint,
			v.ro ? "read-write" : "read-only");
		ret = 1;
	}
	free(mnt);
	return ret;
}

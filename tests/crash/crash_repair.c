/*
 * crash_repair.c: rlfs-crashtest --mode repair, power cuts during fsck's
 * own repair (docs/DESIGN.md "Crashes during fsck repair").
 *
 * fsck repairs in two ways: through a library mount in logged
 * transactions (orphan frees, unlinked lists emptied, data forks rebuilt
 * from the rmap: tools/fsck_fork.c, fsck_free_orphans; directory entries
 * naming no inode removed, directories with a damaged b+tree rebuilt from
 * their readable entries and lost inodes linked into /lost+found:
 * tools/fsck_dir.c), and by writing
 * blocks in place without the log (the AG tree rebuild, tools/fsck_rebuild.c;
 * AG header and superblock counters, link counts and parent pointers,
 * tools/fsck_repair.c; inodes damaged beyond use written anew as free,
 * fsck_clear_inodes).  Either must survive a power cut at any point: the
 * next `fsck` must finish the job, ending clean, with every file's data
 * intact (xfs_repair gives no such promise; e2fsck's undo file is its
 * answer; we prove it by cutting).
 *
 * For each damage kind (kinds[] below):
 *  1. a populated image (files with known bytes, clones sharing extents, a
 *     file of 400 extents with a bmbt, a directory tree, two files with a
 *     second name, two files unlinked while open and left on their AG's
 *     unlinked list) is damaged
 *     in a way fsck repairs; `fsck -n` must say so (exit 4, "that repair
 *     corrects");
 *  2. `fsck` (repair) runs in-process (rlfs_fsck_main) with every device
 *     it opens (its bare mount's, the log replay's, the library mounts of
 *     the orphan frees and fork rebuilds) wrapped in the crash-recording
 *     device (lib/dev_crash.h) over one record: the binary is linked with
 *     -Wl,--wrap=rlfs_dev_open and __wrap_rlfs_dev_open below wraps the
 *     opens of the image being recorded (no hook in the library or in
 *     fsck); for the kinds whose repair goes through a mount, each commit
 *     is made durable on its own (__wrap_rlfs_trans_commit).  It must
 *     exit 1 and leave a clean image;
 *  3. the repair is cut: before its first event and after every write
 *     (all writes so far kept, in order; --images caps them, spread over
 *     the record, the whole repair always in), and --count times at each
 *     of its flushes whose window holds two writes or one of several
 *     sectors, with the writes since the previous flush each kept or
 *     lost at random and multi-sector writes torn (what a device
 *     reordering its cache exposes);
 *  4. each cut image must be repaired by a second `fsck` (exit 0 or 1:
 *     clean, or corrected and clean on its own re-check), then mount,
 *     hold every file where the kind leaves it (kind.expect: a cleared
 *     file and a removed name gone, a lost file under /lost+found) with
 *     its inode number, bytes (size and crc32c as the undamaged image had
 *     them) and link count, take a new 512 KiB file and a sync without
 *     disturbing any other file (free space that is really free),
 *     unmount, and check clean (`fsck -n`).
 * One child process checks the cuts of a kind in turn; one that dies is
 * reported as crashed and replaced, as in crashtest.c.
 */
#include "crash_repair.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reflinkfs/format.h"
#include "reflinkfs/fs.h"
#include "dev.h"
#include "dev_crash.h"
#include "inode.h"
#include "rlfs.h"
#include "trans.h"

int rlfs_fsck_main(int argc, char **argv); /* tools/fsck.c */

/* ---------------------------------------------------------------- */
/* the recording seam: -Wl,--wrap=rlfs_dev_open (meson.build)        */

int __real_rlfs_dev_open(const char *path, int writable, int lock, struct rlfs_dev **devp);
int __wrap_rlfs_dev_open(const char *path, int writable, int lock, struct rlfs_dev **devp);

/* While set, opens of hook_path are recorded into hook_rec. */
static const char *hook_path;
static struct rlfs_crash_rec *hook_rec;

/*
 * rlfs_dev_open as the library and fsck call it in this binary: the real
 * open, and while a repair is being recorded, the device of the recorded
 * image wrapped in a crash-recording device (closing it closes the file
 * device).  Same returns as rlfs_dev_open, or -ENOMEM.
 */
int __wrap_rlfs_dev_open(const char *path, int writable, int lock, struct rlfs_dev **devp)
{
	int err = __real_rlfs_dev_open(path, writable, lock, devp);
	if (err || !hook_rec || strcmp(path, hook_path) != 0)
		return err;
	struct rlfs_dev *inner = *devp, *cdev;
	err = rlfs_crash_dev_open(hook_rec, inner, &cdev);
	if (err) {
		rlfs_dev_close(inner);
		return err;
	}
	cdev->writable = inner->writable;
	*devp = cdev;
	return 0;
}

int __real_rlfs_trans_commit(struct rlfs_trans *tp);
int __wrap_rlfs_trans_commit(struct rlfs_trans *tp);

int __real_rlfs_mount_close(struct rlfs_mount *mp);
int __wrap_rlfs_mount_close(struct rlfs_mount *mp);

/* While set (and a repair is being recorded): every commit of a mount
 * with a log is made durable at once, one checkpoint each, except inside
 * an unmount (hook_closing). */
static bool hook_each_commit;
static int hook_closing;

/*
 * rlfs_mount_close, with hook_closing set while it runs: the unmount's
 * own commits are left as it makes them (its clean superblock must stay
 * out of the log: write_sb in lib/mount.c).  Same returns.
 */
int __wrap_rlfs_mount_close(struct rlfs_mount *mp)
{
	hook_closing++;
	int err = __real_rlfs_mount_close(mp);
	hook_closing--;
	return err;
}

/*
 * rlfs_trans_commit as this binary's callers outside lib/trans.c make it
 * (-Wl,--wrap=rlfs_trans_commit): the real commit, and while a repair of
 * a kind with each_commit is recorded, on a mount with a log, rlfs_sync
 * after it (not inside an unmount): the CIL becomes one checkpoint per
 * transaction, so that the cuts see the repair's states between two of
 * its transactions (a real run reaches them when the log is pushed
 * between two: log space, a background push); without it the CIL of a
 * short repair through a mount goes to the log as one checkpoint at the
 * unmount, all or nothing.
 * Returns the commit's error, else rlfs_sync's.
 */
int __wrap_rlfs_trans_commit(struct rlfs_trans *tp)
{
	struct rlfs_mount *mp = tp->mp;
	int err = __real_rlfs_trans_commit(tp);
	if (!err && hook_rec && hook_each_commit && !hook_closing && mp->log && !mp->shutdown)
		err = rlfs_sync(mp);
	return err;
}

/* ---------------------------------------------------------------- */
/* small helpers                                                      */

#define FILE_MAX_BYTES (4u << 20)
#define NEW_FILE_BYTES (512u * 1024)

static const struct crash_repair_opts *opt;
static void remove_files(void);

static void setup_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void setup_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "rlfs-crashtest: repair setup error: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	fflush(stdout);
	remove_files();
	rmdir(opt->tmpdir);
	_exit(2);   /* no leak report: the setup's memory is still in use */
}

static uint64_t mix(uint64_t z)
{
	z += 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		setup_fail("out of memory");
	return p;
}

/* The files in o->tmpdir (set by crash_repair_run). */
static struct {
	char listed[4200], pristine[4200], full[4200], damaged[4200], cut[4200];
	char setup_out[4200], record_out[4200], cut_out[4200];
} P;

/* Remove the files (not the directory: crashtest.c's). */
static void remove_files(void)
{
	const char *const names[] = { P.listed, P.pristine, P.full, P.damaged, P.cut, P.setup_out,
				      P.record_out, P.cut_out };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i][0])
			unlink(names[i]);
}

static void set_paths(const char *dir)
{
	snprintf(P.listed, sizeof(P.listed), "%s/listed.img", dir);
	snprintf(P.pristine, sizeof(P.pristine), "%s/pristine.img", dir);
	snprintf(P.full, sizeof(P.full), "%s/full.img", dir);
	snprintf(P.damaged, sizeof(P.damaged), "%s/damaged.img", dir);
	snprintf(P.cut, sizeof(P.cut), "%s/cut.img", dir);
	snprintf(P.setup_out, sizeof(P.setup_out), "%s/setup.fsck", dir);
	snprintf(P.record_out, sizeof(P.record_out), "%s/record.fsck", dir);
	snprintf(P.cut_out, sizeof(P.cut_out), "%s/cut.fsck", dir);
}

/* The byte at offset off of the file with id fid: never 0. */
static uint8_t pattern(int fid, uint64_t off)
{
	return (uint8_t)(fid << 4 | (((off >> 9) + (uint64_t)fid * 7) % 15 + 1));
}

/* Copy image file from into to (sparse: all-zero MiBs are skipped). */
static void copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	int out = open(to, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	struct stat st;
	if (in < 0 || out < 0 || fstat(in, &st) < 0 || ftruncate(out, st.st_size) < 0)
		setup_fail("copy %s to %s: %s", from, to, strerror(errno));
	uint8_t *buf = xmalloc(1u << 20);
	for (off_t off = 0; off < st.st_size; off += 1 << 20) {
		ssize_t n = pread(in, buf, 1u << 20, off);
		if (n <= 0)
			setup_fail("read %s: %s", from, n < 0 ? strerror(errno) : "short");
		bool zero = true;
		for (ssize_t i = 0; i < n && zero; i++)
			zero = buf[i] == 0;
		if (!zero && pwrite(out, buf, (size_t)n, off) != n)
			setup_fail("write %s: %s", to, strerror(errno));
	}
	free(buf);
	close(in);
	close(out);
}

/*
 * `fsck [-n] img` in-process, its stdout and stderr to out.  Returns its
 * exit code (0, 1, 4, 8), or -1 if the output cannot be redirected.
 */
static int fsck_run(const char *img, bool dry, const char *out)
{
	fflush(stdout);
	fflush(stderr);
	int save1 = dup(1), save2 = dup(2);
	int fd = open(out, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	if (save1 < 0 || save2 < 0 || fd < 0) {
		if (fd >= 0)
			close(fd);
		if (save1 >= 0)
			close(save1);
		if (save2 >= 0)
			close(save2);
		return -1;
	}
	dup2(fd, 1);
	dup2(fd, 2);
	close(fd);
	char a0[] = "fsck", a1[] = "-n";
	char *arg = strdup(img);
	char *argv[4];
	int argc = 0;
	argv[argc++] = a0;
	if (dry)
		argv[argc++] = a1;
	argv[argc++] = arg;
	argv[argc] = NULL;
	int rc = rlfs_fsck_main(argc, argv);
	free(arg);
	fflush(stdout);
	fflush(stderr);
	dup2(save1, 1);
	dup2(save2, 2);
	close(save1);
	close(save2);
	return rc;
}

/* The first lines of file path (up to n), joined with " | ", into buf. */
static void first_lines(const char *path, int n, char *buf, size_t len)
{
	FILE *fp = fopen(path, "r");
	char line[400];
	size_t used = 0;
	buf[0] = 0;
	while (fp && n > 0 && fgets(line, sizeof(line), fp)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0])
			continue;
		int w = snprintf(buf + used, len - used, "%s%s", used ? " | " : "", line);
		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
		n--;
	}
	if (fp)
		fclose(fp);
}

static bool file_has(const char *path, const char *what)
{
	FILE *fp = fopen(path, "r");
	char line[1024];
	bool found = false;
	while (fp && !found && fgets(line, sizeof(line), fp))
		found = strstr(line, what) != NULL;
	if (fp)
		fclose(fp);
	return found;
}

/* ---------------------------------------------------------------- */
/* the populated image                                                */

struct efile {
	const char *path;           /* from the root, '/'-separated */
	int fid;
	uint64_t size;
	uint32_t crc;               /* crc32c of the bytes, as the undamaged image has them */
	uint64_t ino;               /* as the undamaged image has them */
	uint32_t nlink;
};

/* d/c1x and c2x: second names (hard links) of d/c1 and d/c2 */
static struct efile files[] = {
	{ "a", 1, 0, 0, 0, 0 }, { "b", 2, 0, 0, 0, 0 }, { "frag", 3, 0, 0, 0, 0 },
	{ "d/c1", 4, 0, 0, 0, 0 }, { "d/c2", 5, 0, 0, 0, 0 }, { "d/c3", 6, 0, 0, 0, 0 },
	{ "d/c4", 7, 0, 0, 0, 0 }, { "d/sub/part", 8, 0, 0, 0, 0 },
	{ "d/c1x", 4, 0, 0, 0, 0 }, { "c2x", 5, 0, 0, 0, 0 },
};
#define NFILES (sizeof(files) / sizeof(files[0]))

/* Where things are in the image (found while it was mounted). */
struct inoloc {
	uint64_t ino, fsbno;
	uint32_t slot;
};
static struct {
	uint32_t bs, isz, agcount, agblocks;
	bool rmap;
	uint64_t root_ino;
	struct inoloc a, sub, u1, u2;   /* u1, u2: held unlinked (listed.img) */
	uint64_t frag_root;             /* frag's bmbt root fsbno */
	uint16_t frag_level;
	uint64_t free_ino;              /* brokenlist: where the list points */
	uint32_t inopb;                 /* inodes per block */
	uint64_t dblocks;
	uint64_t d_ino;                 /* the directory d */
} g;

static uint8_t *iobuf;

static void locate(struct rlfs_mount *mp, uint64_t ino, struct inoloc *l)
{
	l->ino = ino;
	l->fsbno = rlfs_ino_to_fsb(mp, ino);
	l->slot = rlfs_ino_to_slot(mp, ino);
}

static uint64_t mkfile(struct rlfs_mount *mp, uint64_t dir, const char *name, bool hold)
{
	struct stat st;
	int err = rlfs_mknod(mp, dir, name, S_IFREG | 0644, 0, 0, 0, &st);
	if (err)
		setup_fail("create %s: %s", name, strerror(-err));
	if (!hold)
		rlfs_forget(mp, (uint64_t)st.st_ino, 1);
	return (uint64_t)st.st_ino;
}

static uint64_t mkdir_in(struct rlfs_mount *mp, uint64_t dir, const char *name)
{
	struct stat st;
	int err = rlfs_mkdir(mp, dir, name, 0755, 0, 0, &st);
	if (err)
		setup_fail("mkdir %s: %s", name, strerror(-err));
	rlfs_forget(mp, (uint64_t)st.st_ino, 1);
	return (uint64_t)st.st_ino;
}

static void put(struct rlfs_mount *mp, uint64_t ino, int fid, uint64_t off, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		iobuf[i] = pattern(fid, off + i);
	ssize_t n = rlfs_write(mp, ino, iobuf, len, (off_t)off);
	if (n != (ssize_t)len)
		setup_fail("write ino %" PRIu64 " %" PRIu64 "+%" PRIu64 ": %zd", ino, off, len, n);
}

static void clone_blocks(struct rlfs_mount *mp, uint64_t src, uint64_t soff, uint64_t dst,
		  uint64_t doff, uint64_t len)
{
	int64_t n = rlfs_clone_range(mp, src, soff, dst, doff, len, 0);
	if (n != (int64_t)len)
		setup_fail("clone %" PRIu64 " -> %" PRIu64 ": %" PRId64, src, dst, n);
}

/* Look path up from the root: its inode (with one lookup reference the
 * caller forgets), or a negative errno. */
static int64_t lookup_path(struct rlfs_mount *mp, const char *path, struct stat *st)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	uint64_t dir = rlfs_root_ino(mp);
	char *save = NULL;
	bool held = false;
	for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		int err = rlfs_lookup(mp, dir, c, st);
		if (held)
			rlfs_forget(mp, dir, 1);
		if (err)
			return err;
		dir = (uint64_t)st->st_ino;
		held = true;
	}
	return (int64_t)dir;
}

/* size and crc32c of path's bytes, its stat in *st: 0 or negative errno */
static int digest(struct rlfs_mount *mp, const char *path, uint64_t *size, uint32_t *crc,
		  struct stat *stp)
{
	struct stat st;
	int64_t ino = lookup_path(mp, path, &st);
	if (ino < 0)
		return (int)ino;
	*stp = st;
	*size = (uint64_t)st.st_size;
	int err = 0;
	if (*size > FILE_MAX_BYTES) {
		err = -EFBIG;
	} else {
		ssize_t got = rlfs_read(mp, (uint64_t)ino, iobuf, (size_t)*size, 0);
		if (got < 0)
			err = (int)got;
		else if ((uint64_t)got != *size)
			err = -EIO;
		else
			*crc = rlfs_crc32c(iobuf, (size_t)got);
	}
	rlfs_forget(mp, (uint64_t)ino, 1);
	return err;
}

/*
 * mkfs and populate listed.img, then pristine.img: the same after a
 * read-write mount freed the two listed inodes.  Fills files[] and g.
 */
static void populate_full(void);

static void populate(void)
{
	const char *src = P.listed, *pristine = P.pristine;
	int fd = open(src, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		setup_fail("create %s: %s", src, strerror(errno));
	close(fd);
	struct rlfs_mkfs_opts mo = { .size_bytes = 32ull << 20, .force = 1, .rmapbt = opt->rmapbt,
				     .log_bytes = opt->log_bytes };
	int err = rlfs_mkfs(src, &mo);
	struct rlfs_mount *mp;
	if (!err)
		err = rlfs_mount_open(src, RLFS_MOUNT_NOLOCK, &mp);
	if (err)
		setup_fail("mkfs and mount %s: %s", src, strerror(-err));
	g.bs = mp->blocksize;
	g.isz = mp->inodesize;
	g.agcount = mp->agcount;
	g.agblocks = mp->agblocks;
	g.rmap = (mp->features_incompat & RLFS_FEAT_INCOMPAT_RMAP) != 0;
	g.root_ino = rlfs_root_ino(mp);
	g.inopb = mp->inopblock;
	g.dblocks = mp->dblocks;
	uint64_t root = g.root_ino;
	uint64_t a = mkfile(mp, root, "a", false);
	put(mp, a, 1, 0, 256 * 1024);
	uint64_t b = mkfile(mp, root, "b", false);
	clone_blocks(mp, a, 0, b, 0, 256 * 1024);
	for (int i = 0; i < 3; i++)     /* copy-on-write: b shares most of a */
		put(mp, b, 2, (uint64_t)(3 + 17 * i) * 4096, 4096);
	uint64_t frag = mkfile(mp, root, "frag", false);
	for (uint64_t i = 0; i < 400; i++)  /* 400 one-block extents: a bmbt */
		put(mp, frag, 3, 2 * i * 4096, 4096);
	uint64_t d = mkdir_in(mp, root, "d");
	uint64_t sub = mkdir_in(mp, d, "sub");
	uint64_t cino[5];
	for (int i = 1; i <= 4; i++) {
		char name[8];
		snprintf(name, sizeof(name), "c%d", i);
		cino[i] = mkfile(mp, d, name, false);
		put(mp, cino[i], 3 + i, 0, (uint64_t)i * 3000 + 17);
	}
	g.d_ino = d;
	/* second names: one in the same directory, one in the root */
	struct stat lst;
	if ((err = rlfs_link(mp, cino[1], d, "c1x", &lst)) != 0)
		setup_fail("link d/c1x: %s", strerror(-err));
	rlfs_forget(mp, cino[1], 1);
	if ((err = rlfs_link(mp, cino[2], root, "c2x", &lst)) != 0)
		setup_fail("link c2x: %s", strerror(-err));
	rlfs_forget(mp, cino[2], 1);
	uint64_t part = mkfile(mp, sub, "part", false);
	clone_blocks(mp, a, 0, part, 0, 64 * 1024);
	put(mp, part, 8, 70000, 100);
	/* two files unlinked while open (the daemon killed with them open):
	 * u1 shares blocks with a; u2 is unlinked last, the head */
	uint64_t u1 = mkfile(mp, root, "u1", true), u2 = mkfile(mp, root, "u2", true);
	put(mp, u1, 10, 0, 96 * 1024);
	clone_blocks(mp, a, 128 * 1024, u1, 0, 64 * 1024);
	put(mp, u2, 11, 0, 40 * 1024);
	if ((err = rlfs_unlink(mp, root, "u1")) || (err = rlfs_unlink(mp, root, "u2")))
		setup_fail("unlink: %s", strerror(-err));
	locate(mp, a, &g.a);
	locate(mp, sub, &g.sub);
	locate(mp, u1, &g.u1);
	locate(mp, u2, &g.u2);
	/* read-only: everything written and the log clean, the two still
	 * on their lists (test_unlinked.c does the same) */
	err = rlfs_sync(mp);
	if (!err)
		err = rlfs_mount_set_rdonly(mp, true);
	if (err)
		setup_fail("sync and remount read-only: %s", strerror(-err));
	copy_file(src, pristine);
	rlfs_mount_close(mp);
	copy_file(pristine, src);

	/* pristine: a read-write mount frees the listed inodes */
	err = rlfs_mount_open(pristine, RLFS_MOUNT_NOLOCK, &mp);
	if (err)
		setup_fail("mount %s: %s", pristine, strerror(-err));
	for (size_t i = 0; i < NFILES; i++) {
		struct stat fst;
		err = digest(mp, files[i].path, &files[i].size, &files[i].crc, &fst);
		if (err)
			setup_fail("read %s: %s", files[i].path, strerror(-err));
		files[i].ino = (uint64_t)fst.st_ino;
		files[i].nlink = (uint32_t)fst.st_nlink;
	}
	struct rlfs_inode *ip;
	err = rlfs_iget(mp, frag, &ip);
	if (err)
		setup_fail("iget frag: %s", strerror(-err));
	if (ip->format != RLFS_FMT_BTREE)
		setup_fail("frag has no bmbt (format %u)", ip->format);
	g.frag_root = ip->root;
	g.frag_level = ip->root_level;
	rlfs_irele(ip);
	err = rlfs_mount_close(mp);
	if (err)
		setup_fail("unmount %s: %s", pristine, strerror(-err));
	const char *out = P.setup_out;
	int rc = fsck_run(src, true, out);
	if (rc != 0) {
		char l[1000];
		first_lines(out, 4, l, sizeof(l));
		setup_fail("the populated image does not check clean (fsck -n exit %d): %s", rc, l);
	}
	rc = fsck_run(pristine, true, out);
	if (rc != 0) {
		char l[1000];
		first_lines(out, 4, l, sizeof(l));
		setup_fail("the pristine image does not check clean (fsck -n exit %d): %s", rc, l);
	}
	populate_full();
}

/*
 * full.img: the pristine image with a file "fill" written a block at a
 * time with a hole after each (one rmap record per block) until ENOSPC,
 * then its last FULL_SLACK_BYTES of blocks cut off, then cloned whole into
 * "fill2" (two rmap records per block): every AG but the one the fill
 * ended in keeps only what its reserve holds back, less than its new trees
 * take (the AG rebuild must write them over old tree blocks there), and
 * the cut checks' new file still fits.
 */
#define FULL_SLACK_BYTES (2 * NEW_FILE_BYTES)
static void populate_full(void)
{
	struct rlfs_mount *mp;
	copy_file(P.pristine, P.full);
	int err = rlfs_mount_open(P.full, RLFS_MOUNT_NOLOCK, &mp);
	if (err)
		setup_fail("mount %s: %s", P.full, strerror(-err));
	uint64_t fill = mkfile(mp, rlfs_root_ino(mp), "fill", false), nblk = 0;
	for (;; nblk++) {
		uint64_t off = 2 * nblk * g.bs;
		for (uint64_t i = 0; i < g.bs; i++)
			iobuf[i] = pattern(12, off + i);
		ssize_t w = rlfs_write(mp, fill, iobuf, g.bs, (off_t)off);
		if (w == -ENOSPC)
			break;
		if (w != (ssize_t)g.bs)
			setup_fail("fill %s: write at %" PRIu64 ": %zd", P.full, off, w);
	}
	if (nblk * g.bs < 4 * FULL_SLACK_BYTES)
		setup_fail("fill %s: only %" PRIu64 " blocks written", P.full, nblk);
	nblk -= FULL_SLACK_BYTES / g.bs;
	struct stat st = { .st_size = (off_t)(2 * nblk * g.bs) }, out;
	err = rlfs_setattr(mp, fill, &st, RLFS_SET_SIZE, &out);
	if (err)
		setup_fail("trim the fill of %s: %s", P.full, strerror(-err));
	/* a clone of it: two rmap records a block, no more data blocks (the
	 * rmap btrees outgrow what the AG reservation holds back for them) */
	uint64_t fill2 = mkfile(mp, rlfs_root_ino(mp), "fill2", false);
	clone_blocks(mp, fill, 0, fill2, 0, 2 * nblk * g.bs);
	err = rlfs_mount_close(mp);
	if (err)
		setup_fail("unmount %s: %s", P.full, strerror(-err));
	int rc = fsck_run(P.full, true, P.setup_out);
	if (rc != 0) {
		char l[1000];
		first_lines(P.setup_out, 4, l, sizeof(l));
		setup_fail("the full image does not check clean (fsck -n exit %d): %s", rc, l);
	}
}

/* ---------------------------------------------------------------- */
/* damage                                                             */

static int dmg_fd = -1;

static void blk_read(uint64_t fsbno, void *buf)
{
	if (pread(dmg_fd, buf, g.bs, (off_t)(fsbno * g.bs)) != (ssize_t)g.bs)
		setup_fail("damage: read fsbno %" PRIu64 ": %s", fsbno, strerror(errno));
}

static void blk_write(uint64_t fsbno, const void *buf)
{
	if (pwrite(dmg_fd, buf, g.bs, (off_t)(fsbno * g.bs)) != (ssize_t)g.bs)
		setup_fail("damage: write fsbno %" PRIu64 ": %s", fsbno, strerror(errno));
}

static void blk_zero(uint64_t fsbno)
{
	uint8_t *z = calloc(1, g.bs);
	if (!z)
		setup_fail("out of memory");
	blk_write(fsbno, z);
	free(z);
}

static uint64_t agh_fsbno(uint32_t agno)
{
	return (uint64_t)agno * g.agblocks + RLFS_AGH_AGBNO;
}

/* Edit AG agno's header (crc made good again). */
static void agh_edit(uint32_t agno, void (*fn)(struct rlfs_agh *agh, uint32_t agno))
{
	uint8_t *blk = xmalloc(g.bs);
	blk_read(agh_fsbno(agno), blk);
	fn((struct rlfs_agh *)blk, agno);
	rlfs_cksum_update(blk, g.bs, RLFS_CRC_OFF);
	blk_write(agh_fsbno(agno), blk);
	free(blk);
}

static struct rlfs_agh agh_get(uint32_t agno)
{
	uint8_t *blk = xmalloc(g.bs);
	struct rlfs_agh h;
	blk_read(agh_fsbno(agno), blk);
	memcpy(&h, blk, sizeof(h));
	free(blk);
	return h;
}

/* Edit an inode's core (crc made good again). */
static void ino_edit(const struct inoloc *l, void (*fn)(struct rlfs_dinode *di))
{
	uint8_t *blk = xmalloc(g.bs);
	blk_read(l->fsbno, blk);
	struct rlfs_dinode *di = (struct rlfs_dinode *)(blk + (size_t)l->slot * g.isz);
	if (rlfs_get64(di->ino) != l->ino)
		setup_fail("damage: inode %" PRIu64 " not at fsbno %" PRIu64 " slot %u", l->ino,
			   l->fsbno, l->slot);
	fn(di);
	rlfs_cksum_update(di, g.isz, offsetof(struct rlfs_dinode, crc));
	blk_write(l->fsbno, blk);
	free(blk);
}

static void ed_counters(struct rlfs_agh *h, uint32_t agno)
{
	rlfs_put32(h->freeblks, rlfs_get32(h->freeblks) + 3 + agno);
	rlfs_put32(h->btreeblks, rlfs_get32(h->btreeblks) + 1);
	rlfs_put64(h->ifree, rlfs_get64(h->ifree) + 2);
}

static void ed_nlink3(struct rlfs_dinode *di) { rlfs_put32(di->nlink, 3); }
static void ed_parent_root(struct rlfs_dinode *di) { rlfs_put64(di->parent, g.root_ino); }
static void ed_next0(struct rlfs_dinode *di) { rlfs_put64(di->next_unlinked, 0); }
static void ed_next_free(struct rlfs_dinode *di) { rlfs_put64(di->next_unlinked, g.free_ino); }
static void ed_unlinked0(struct rlfs_agh *h, uint32_t agno)
{
	(void)agno;
	rlfs_put64(h->unlinked, 0);
}

/* stale AG and superblock counters, a wrong link count and parent pointer */
static void dmg_counters(void)
{
	for (uint32_t agno = 0; agno < g.agcount; agno++)
		agh_edit(agno, ed_counters);
	uint8_t *blk = xmalloc(g.bs);
	blk_read(0, blk);
	struct rlfs_sb *sb = (struct rlfs_sb *)blk;
	rlfs_put64(sb->fdblocks, rlfs_get64(sb->fdblocks) - 50);
	rlfs_put64(sb->icount, rlfs_get64(sb->icount) + 64);
	rlfs_cksum_update(blk, g.bs, RLFS_CRC_OFF);
	blk_write(0, blk);
	free(blk);
	ino_edit(&g.a, ed_nlink3);
	ino_edit(&g.sub, ed_parent_root);
}

/* One of the two listed inodes cut off its list: an orphan; the other
 * stays listed (freed by the mount, as after a crash). */
static void dmg_orphans(void)
{
	uint32_t agno = (uint32_t)(g.u1.fsbno / g.agblocks);
	struct rlfs_agh h = agh_get(agno);
	uint64_t head = rlfs_get64(h.unlinked);
	const struct inoloc *hl = head == g.u1.ino ? &g.u1 : head == g.u2.ino ? &g.u2 : NULL;
	if (!hl)
		setup_fail("orphans: the unlinked list of AG %u starts at %" PRIu64
			   ", neither of the held inodes", agno, head);
	uint8_t *blk = xmalloc(g.bs);
	blk_read(hl->fsbno, blk);
	const struct rlfs_dinode *di = (const void *)(blk + (size_t)hl->slot * g.isz);
	uint64_t next = rlfs_get64(di->next_unlinked);
	free(blk);
	if (next)
		ino_edit(hl, ed_next0);             /* the second member: an orphan */
	else
		agh_edit(agno, ed_unlinked0);       /* the only member: an orphan */
}

/* The list of the held inodes broken: its last member points at a free
 * inode (fsck empties the list and frees the members as orphans). */
static void dmg_brokenlist(void)
{
	uint32_t agno = (uint32_t)(g.u1.fsbno / g.agblocks);
	uint64_t head = rlfs_get64(agh_get(agno).unlinked);
	const struct inoloc *last = head == g.u2.ino ? &g.u1 : &g.u2;
	uint8_t *blk = xmalloc(g.bs);
	uint64_t free_ino = 0;
	blk_read(last->fsbno, blk);
	for (uint32_t s = 0; s < g.bs / g.isz && !free_ino; s++) {
		const struct rlfs_dinode *di = (const void *)(blk + (size_t)s * g.isz);
		if (rlfs_get32(di->magic) == RLFS_DINODE_MAGIC && rlfs_get32(di->mode) == 0)
			free_ino = rlfs_get64(di->ino);
	}
	free(blk);
	if (!free_ino)
		setup_fail("brokenlist: no free inode next to %" PRIu64, last->ino);
	g.free_ino = free_ino;
	ino_edit(last, ed_next_free);
}

/* Edit the leftmost leaf of a tree of a's AG, crc made good again.  what:
 * its name; root_off, level_off: the AG header's fields for it; key_slot:
 * bytes of a node's key slot (nodes hold maxrecs key slots, then the child
 * fsbnos, le64: docs/SPEC.md); one_leaf: the tree must be a single leaf.
 * The leaf must hold records. */
static void leaf_edit(const char *what, size_t root_off, size_t level_off, size_t key_slot,
		      bool one_leaf, void (*fn)(uint8_t *blk, struct rlfs_btree_block *bb,
						 uint16_t n))
{
	uint32_t agno = (uint32_t)(g.a.fsbno / g.agblocks);
	struct rlfs_agh h = agh_get(agno);
	const uint8_t *hb = (const uint8_t *)&h;
	rlfs_le32 rootv;
	rlfs_le16 levelv;
	memcpy(&rootv, hb + root_off, sizeof(rootv));
	memcpy(&levelv, hb + level_off, sizeof(levelv));
	uint64_t root = (uint64_t)agno * g.agblocks + rlfs_get32(rootv);
	uint16_t level = rlfs_get16(levelv);
	uint8_t *blk = xmalloc(g.bs);
	blk_read(root, blk);
	struct rlfs_btree_block *bb = (struct rlfs_btree_block *)blk;
	size_t maxrecs = (g.bs - sizeof(*bb)) / (key_slot + 8);
	for (int depth = 0; rlfs_get16(bb->level) > 0 && depth < 8; depth++) {
		rlfs_le64 child;
		memcpy(&child, blk + sizeof(*bb) + maxrecs * key_slot, sizeof(child));
		root = rlfs_get64(child);
		blk_read(root, blk);
	}
	uint16_t n = rlfs_get16(bb->numrecs);
	if ((one_leaf && level != 1) || rlfs_get16(bb->level) != 0 || n == 0)
		setup_fail("%s: AG %u's %s: no leaf with records where expected (%u levels, "
			   "%u records)", what, agno, what, level, n);
	fn(blk, bb, n);
	rlfs_cksum_update(blk, g.bs, RLFS_CRC_OFF);
	blk_write(root, blk);
	free(blk);
}

static void ed_inobt_drop_last(uint8_t *blk, struct rlfs_btree_block *bb, uint16_t n)
{
	memset(blk + sizeof(*bb) + (size_t)(n - 1) * sizeof(struct rlfs_inobt_rec), 0,
	       sizeof(struct rlfs_inobt_rec));
	rlfs_put16(bb->numrecs, (uint16_t)(n - 1));
}

/* The last record of the inobt leaf of a's AG dropped (the chunk is found
 * again from its OWN_INODES rmap record and put back by the rebuild). */
static void dmg_inobt(void)
{
	leaf_edit("inobt", offsetof(struct rlfs_agh, ino_root), offsetof(struct rlfs_agh, ino_level),
		  sizeof(uint64_t), true, ed_inobt_drop_last);
}

/* frag's bmbt root zeroed: the fork is rebuilt from the rmap */
static void dmg_bmbt(void)
{
	blk_zero(g.frag_root);
}

/* every AG's bnobt root zeroed; AG 0's cntbt, refcountbt and rmapbt roots too */
static void dmg_agtrees(void)
{
	for (uint32_t agno = 0; agno < g.agcount; agno++) {
		struct rlfs_agh h = agh_get(agno);
		uint64_t ag0 = (uint64_t)agno * g.agblocks;
		blk_zero(ag0 + rlfs_get32(h.bno_root));
		if (agno == 0) {
			blk_zero(ag0 + rlfs_get32(h.cnt_root));
			blk_zero(ag0 + rlfs_get32(h.refc_root));
			if (g.rmap)
				blk_zero(ag0 + rlfs_get32(h.rmap_root));
		}
	}
}

static void ed_refc_bump_first(uint8_t *blk, struct rlfs_btree_block *bb, uint16_t n)
{
	(void)n;
	struct rlfs_refcount_rec *rec = (struct rlfs_refcount_rec *)(blk + sizeof(*bb));
	rlfs_put32(rec->refcount, rlfs_get32(rec->refcount) + 1);
}

/* the first refcount record of a's AG one too high (the trees stay
 * walkable: their blocks are claimed as old tree blocks) */
static void dmg_refc_bump(void)
{
	leaf_edit("refcountbt", offsetof(struct rlfs_agh, refc_root),
		  offsetof(struct rlfs_agh, refc_level), sizeof(uint32_t), false, ed_refc_bump_first);
}

/* the last AG's bnobt root zeroed: every AG is rebuilt, the others
 * while healthy */
static void dmg_lastag(void)
{
	uint32_t agno = g.agcount - 1;
	struct rlfs_agh h = agh_get(agno);
	blk_zero((uint64_t)agno * g.agblocks + rlfs_get32(h.bno_root));
}

/* all the raw repairs at once: counters, link count, parent pointer,
 * the AG tree rebuild, then the orphan frees through a mount */
static void dmg_mixed(void)
{
	dmg_counters();
	for (uint32_t agno = 0; agno < g.agcount; agno++) {
		struct rlfs_agh h = agh_get(agno);
		blk_zero((uint64_t)agno * g.agblocks + rlfs_get32(h.bno_root));
	}
	dmg_orphans();
}

/* a lost fork and lost free-space trees: the rebuild takes the fork's
 * blocks from the rmap, then the fork is rebuilt through a mount */
static void dmg_bmbt_agtrees(void)
{
	dmg_bmbt();
	for (uint32_t agno = 0; agno < g.agcount; agno++) {
		struct rlfs_agh h = agh_get(agno);
		blk_zero((uint64_t)agno * g.agblocks + rlfs_get32(h.cnt_root));
	}
}

/* ---- the directory and inode edits of the fsck_dir.c / fsck_clear_inodes
 * kinds (what tests/helpers/imgedit.py's dirent-set, dirent-drop and flip
 * do for 57-fsck-images) ---- */

static int efile_index(const char *path)
{
	for (size_t i = 0; i < NFILES; i++)
		if (!strcmp(files[i].path, path))
			return (int)i;
	setup_fail("no file %s in files[]", path);
}

static uint64_t ino_fsbno(uint64_t ino) { return ino / g.inopb; }
static size_t ino_off(uint64_t ino) { return (size_t)(ino % g.inopb) * g.isz; }

/*
 * Directory dino's b+tree leaf (it must be one leaf: the populated
 * image's directories are small) into blk; returns its fsbno.
 */
static uint64_t dir_leaf(uint64_t dino, uint8_t *blk)
{
	blk_read(ino_fsbno(dino), blk);
	const struct rlfs_dinode *di = (const void *)(blk + ino_off(dino));
	if (rlfs_get64(di->ino) != dino || di->format != RLFS_FMT_BTREE)
		setup_fail("damage: inode %" PRIu64 " is not a directory b+tree (format %u)", dino,
			   di->format);
	uint64_t root = rlfs_get64(di->root);
	blk_read(root, blk);
	const struct rlfs_btree_block *bb = (const void *)blk;
	if (rlfs_get16(bb->level) != 0)
		setup_fail("damage: directory %" PRIu64 " has a b+tree of %u levels", dino,
			   rlfs_get16(bb->level) + 1);
	return root;
}

/* The record of name in directory dino's leaf blk (setup_fail if none). */
static struct rlfs_dir_rec *dir_find(uint8_t *blk, uint64_t dino, const char *name)
{
	const struct rlfs_btree_block *bb = (const void *)blk;
	struct rlfs_dir_rec *r = (struct rlfs_dir_rec *)(blk + sizeof(*bb));
	for (uint16_t i = 0; i < rlfs_get16(bb->numrecs); i++)
		if (r[i].namelen == strlen(name) && !memcmp(r[i].name, name, r[i].namelen))
			return &r[i];
	setup_fail("damage: directory %" PRIu64 " has no entry '%s'", dino, name);
}

/* Entry name of directory dino now names inode ino (leaf crc made good). */
static void dirent_set(uint64_t dino, const char *name, uint64_t ino)
{
	uint8_t *blk = xmalloc(g.bs);
	uint64_t leaf = dir_leaf(dino, blk);
	rlfs_put64(dir_find(blk, dino, name)->ino, ino);
	rlfs_cksum_update(blk, g.bs, RLFS_CRC_OFF);
	blk_write(leaf, blk);
	free(blk);
}

/* Entry name of directory dino removed (the inode it named keeps its
 * link count; leaf crc made good). */
static void dirent_drop(uint64_t dino, const char *name)
{
	uint8_t *blk = xmalloc(g.bs);
	uint64_t leaf = dir_leaf(dino, blk);
	struct rlfs_btree_block *bb = (void *)blk;
	struct rlfs_dir_rec *r = dir_find(blk, dino, name);
	struct rlfs_dir_rec *first = (struct rlfs_dir_rec *)(blk + sizeof(*bb));
	uint16_t n = rlfs_get16(bb->numrecs);
	size_t i = (size_t)(r - first);
	memmove(r, r + 1, (n - 1 - i) * sizeof(*r));
	memset(&first[n - 1], 0, sizeof(*r));
	rlfs_put16(bb->numrecs, (uint16_t)(n - 1));
	rlfs_cksum_update(blk, g.bs, RLFS_CRC_OFF);
	blk_write(leaf, blk);
	free(blk);
}

/* A free inode in an inode chunk: the first with mode 0 after ino in its
 * chunk (64 inodes, aligned). */
static uint64_t free_inode_near(uint64_t ino)
{
	uint64_t start = ino - ino % RLFS_INODES_PER_CHUNK;
	uint8_t *blk = xmalloc(g.bs);
	uint64_t got = 0;
	for (uint64_t i = start; i < start + RLFS_INODES_PER_CHUNK && !got; i++) {
		if (i == start || i % g.inopb == 0)
			blk_read(ino_fsbno(i), blk);
		const struct rlfs_dinode *di = (const void *)(blk + ino_off(i));
		if (rlfs_get32(di->magic) == RLFS_DINODE_MAGIC && rlfs_get64(di->ino) == i &&
		    rlfs_get32(di->mode) == 0)
			got = i;
	}
	free(blk);
	if (!got)
		setup_fail("no free inode in the chunk of inode %" PRIu64, ino);
	return got;
}

/* one byte of an inode's core changed, its crc left stale (57's
 * inode-core-file: byte 60, in the size field) */
static void ino_flip(uint64_t ino)
{
	uint8_t *blk = xmalloc(g.bs);
	blk_read(ino_fsbno(ino), blk);
	blk[ino_off(ino) + 60] ^= 0x5A;
	blk_write(ino_fsbno(ino), blk);
	free(blk);
}

/* d/c1x names a free inode of c1's chunk; c2x an inode number in no chunk
 * (the filesystem's last block, free space) */
static void dmg_dirent(void)
{
	dirent_set(g.d_ino, "c1x", free_inode_near(files[efile_index("d/c1")].ino));
	dirent_set(g.root_ino, "c2x", (g.dblocks - 1) * g.inopb);
}

/* d/c3 and b lose their only names, and so does the directory d/sub
 * (with part in it): all three lost, /lost+found is made */
static void dmg_lostfile(void)
{
	dirent_drop(g.d_ino, "c3");
	dirent_drop(g.root_ino, "b");
	dirent_drop(g.d_ino, "sub");
}

/* b (most of its blocks shared with a), d/c4 and frag (400 extents in a
 * bmbt): cores damaged beyond use */
static void dmg_badinode(void)
{
	ino_flip(files[efile_index("b")].ino);
	ino_flip(files[efile_index("d/c4")].ino);
	ino_flip(files[efile_index("frag")].ino);
}

/* the inobt root of every AG that has inodes zeroed: the chunks come back
 * from the rmap's OWN_INODES records */
static void dmg_inobt_zero(void)
{
	unsigned n = 0;
	for (uint32_t agno = 0; agno < g.agcount; agno++) {
		struct rlfs_agh h = agh_get(agno);
		if (rlfs_get64(h.icount) == 0)
			continue;
		blk_zero((uint64_t)agno * g.agblocks + rlfs_get32(h.ino_root));
		n++;
	}
	if (!n)
		setup_fail("inobt-zero: no AG has inodes");
}

/* d's b+tree (one leaf) zeroed: d is rebuilt empty (the old leaf freed
 * in the same transaction), and everything it named is lost or keeps its
 * other name */
static void dmg_dirtree(void)
{
	uint8_t *blk = xmalloc(g.bs);
	uint64_t leaf = dir_leaf(g.d_ino, blk);
	free(blk);
	blk_zero(leaf);
}

/* d's entry c3 under a wrong hash (leaf crc made good): d is rebuilt,
 * every entry put back through a mount, c3 under its own hash */
static void dmg_dirhash(void)
{
	uint8_t *blk = xmalloc(g.bs);
	uint64_t leaf = dir_leaf(g.d_ino, blk);
	struct rlfs_dir_rec *r = dir_find(blk, g.d_ino, "c3");
	rlfs_put32(r->hash, rlfs_get32(r->hash) ^ 0x100);
	rlfs_cksum_update(blk, g.bs, RLFS_CRC_OFF);
	blk_write(leaf, blk);
	free(blk);
}

/* d's inode core, edited by fn (crc made good) */
static void dino_edit(void (*fn)(struct rlfs_dinode *di))
{
	struct inoloc l = { .ino = g.d_ino, .fsbno = ino_fsbno(g.d_ino),
			    .slot = (uint32_t)(g.d_ino % g.inopb) };
	ino_edit(&l, fn);
}

/* a data-fork root fsbno far past the filesystem's last block */
static void ed_root_out(struct rlfs_dinode *di) { rlfs_put64(di->root, g.dblocks + 99999); }

/* d's root pointer (its one leaf) out of the filesystem: with the rmap
 * the leaf is found again through its record and every entry put back;
 * without it nothing names the leaf (the AG rebuild frees it) and what d
 * named is lost, as in dirtree */
static void dmg_dirroot(void)
{
	dino_edit(ed_root_out);
}

/* d's leaf fails its crc (left stale): c3's name has one byte changed
 * (its stored hash no longer the name's) and c1x names a free inode of
 * c1's chunk; the leaf's other entries prove themselves one by one
 * (salvage_raw_leaf) and are kept */
static void dmg_dircrc(void)
{
	uint8_t *blk = xmalloc(g.bs);
	uint64_t leaf = dir_leaf(g.d_ino, blk);
	dir_find(blk, g.d_ino, "c3")->name[1] ^= 0x5A;
	rlfs_put64(dir_find(blk, g.d_ino, "c1x")->ino,
		   free_inode_near(files[efile_index("d/c1")].ino));
	blk_write(leaf, blk);
	free(blk);
}

/* What check_cut expects of files[i] after the repair. */
struct want {
	const char *path;           /* where it is (NULL: gone) */
	char buf[64];
	uint32_t nlink;
};

/* dirent: the two names the repair removes are gone, their files keep one */
static void want_dirent(size_t i, struct want *w)
{
	const char *p = files[i].path;
	if (!strcmp(p, "d/c1x") || !strcmp(p, "c2x"))
		w->path = NULL;
	else if (!strcmp(p, "d/c1") || !strcmp(p, "d/c2"))
		w->nlink = 1;
}

/* lostfile: d/c3 and b are /lost+found/INO, part is
 * /lost+found/SUBINO/part */
static void want_lostfile(size_t i, struct want *w)
{
	const char *p = files[i].path;
	if (!strcmp(p, "d/c3") || !strcmp(p, "b")) {
		snprintf(w->buf, sizeof(w->buf), "lost+found/%" PRIu64, files[i].ino);
		w->path = w->buf;
		w->nlink = 1;
	} else if (!strcmp(p, "d/sub/part")) {
		snprintf(w->buf, sizeof(w->buf), "lost+found/%" PRIu64 "/part", g.sub.ino);
		w->path = w->buf;
	}
}

/* badinode: b, d/c4 and frag are cleared: gone, with their names */
static void want_badinode(size_t i, struct want *w)
{
	const char *p = files[i].path;
	if (!strcmp(p, "b") || !strcmp(p, "d/c4") || !strcmp(p, "frag"))
		w->path = NULL;
}

/* dirtree: d named c1 twice (c1, c1x: lost, nlink 1), c2 (keeps c2x,
 * nlink 1), c3, c4 (lost) and sub (lost, part in it) */
static void want_dirtree(size_t i, struct want *w)
{
	const char *p = files[i].path;
	if (!strcmp(p, "d/c1x") || !strcmp(p, "d/c2")) {
		w->path = NULL;
	} else if (!strcmp(p, "c2x")) {
		w->nlink = 1;
	} else if (!strcmp(p, "d/c1") || !strcmp(p, "d/c3") || !strcmp(p, "d/c4")) {
		snprintf(w->buf, sizeof(w->buf), "lost+found/%" PRIu64, files[i].ino);
		w->path = w->buf;
		w->nlink = 1;
	} else if (!strcmp(p, "d/sub/part")) {
		snprintf(w->buf, sizeof(w->buf), "lost+found/%" PRIu64 "/part", g.sub.ino);
		w->path = w->buf;
	}
}

/* dirroot: with the rmap every entry comes back (each file as it was);
 * without it, d's entries are lost as in dirtree */
static void want_dirroot(size_t i, struct want *w)
{
	if (!g.rmap)
		want_dirtree(i, w);
}

/* dircrc: d/c3 (its name damaged) is /lost+found/INO; d/c1x (naming a
 * free inode) gone, d/c1 keeps one name; every other entry of the leaf
 * (c1, c2, c4, sub with part in it) where it was */
static void want_dircrc(size_t i, struct want *w)
{
	const char *p = files[i].path;
	if (!strcmp(p, "d/c1x")) {
		w->path = NULL;
	} else if (!strcmp(p, "d/c1")) {
		w->nlink = 1;
	} else if (!strcmp(p, "d/c3")) {
		snprintf(w->buf, sizeof(w->buf), "lost+found/%" PRIu64, files[i].ino);
		w->path = w->buf;
		w->nlink = 1;
	}
}

/* d/sub's core damaged beyond use: cleared, and part in it lost */
static void dmg_baddir(void)
{
	ino_flip(g.sub.ino);
}

/* baddir: part (named only by the cleared d/sub) is /lost+found/INO */
static void want_baddir(size_t i, struct want *w)
{
	if (!strcmp(files[i].path, "d/sub/part")) {
		snprintf(w->buf, sizeof(w->buf), "lost+found/%" PRIu64, files[i].ino);
		w->path = w->buf;
	}
}

struct kind {
	const char *name;
	const char *what;
	bool listed;                /* from listed.img (else pristine.img) */
	bool needs_rmap;
	void (*damage)(void);
	/* the damage is in the last AG only: at every cut, before the next
	 * repair, fsck -n must find nothing in the others (a repair that
	 * rebuilds a healthy AG must never leave it inconsistent, even for
	 * a moment: a user may mount instead of running fsck again) */
	bool last_ag_only;
	/* the repair is recorded with each mount's commits made durable one
	 * by one (__wrap_rlfs_trans_commit) */
	bool each_commit;
	/* what fsck -n must say of the damage (each, when set) */
	const char *finding[2];
	/* what becomes of files[i] (NULL: each as it was) */
	void (*expect)(size_t i, struct want *w);
	/* from full.img (populate_full), and what the repair must say */
	bool full;
	const char *repair_says;
	/* RLFS_FSCK_REBUILD_OLD_RMAP_FIRST=1 for the repairs (fsck_rebuild.c:
	 * the old rmapbt's blocks taken first where allowed) */
	bool old_rmap_first;
};

static const struct kind kinds[] = {
	{ "counters", "stale AG and superblock counters, a link count, a parent pointer "
	  "(written in place)", false, false, dmg_counters },
	{ "orphans", "an orphan and a listed unlinked inode (freed through a mount)", true, false,
	  dmg_orphans },
	{ "brokenlist", "an unlinked list ending at a free inode (list emptied in place, "
	  "members freed as orphans through a mount)", true, false, dmg_brokenlist },
	{ "inobt", "an inobt record dropped (chunk found from the rmap, AG trees rebuilt in "
	  "place)", false, true, dmg_inobt },
	{ "bmbt", "a file's bmbt root zeroed (fork rebuilt from the rmap through a mount)", false,
	  true, dmg_bmbt },
	{ "agtrees", "bnobt roots of every AG, AG 0's cntbt, refcountbt and rmapbt roots "
	  "zeroed (AG trees rebuilt in place)", false, false, dmg_agtrees },
	{ "lastag", "the last AG's bnobt root zeroed (every AG rebuilt in place; the "
	  "healthy ones must check clean at every cut)", false, false, dmg_lastag, true },
	{ "mixed", "counters, link count, parent pointer, bnobt roots and an orphan (rebuild, "
	  "raw fixes, then a mount)", true, false, dmg_mixed },
	{ "bmbt-agtrees", "a bmbt root and every cntbt root zeroed (rebuild, then the fork)",
	  false, true, dmg_bmbt_agtrees },
	{ "dirent", "entries naming a free inode and an inode in no chunk (removed, link "
	  "counts fixed, through a mount)", false, false, dmg_dirent, false, true,
	  { "points at free inode", "lies in no inode chunk" }, want_dirent },
	{ "lostfile", "two files and a directory named nowhere (linked into a new /lost+found "
	  "through a mount)",
	  false, false, dmg_lostfile, false, true, { "but named by no directory", NULL },
	  want_lostfile },
	{ "badinode", "three in-use file inode cores damaged beyond use, one with a bmbt "
	  "(cleared in place after the AG rebuild, blocks freed, entries removed)", false, true, dmg_badinode, false, true,
	  { "damaged beyond use", NULL }, want_badinode },
	{ "baddir", "a directory's inode core damaged beyond use (cleared in place after the AG "
	  "rebuild, its entry removed, the file in it linked into a new /lost+found)", false,
	  true, dmg_baddir, false, true, { "damaged beyond use", "named by no directory" },
	  want_baddir },
	{ "inobt-zero", "every inobt root zeroed (inobt rebuilt from the rmap's OWN_INODES "
	  "records)", false, true, dmg_inobt_zero, false, false,
	  { "taken from the rmapbt's OWN_INODES", NULL }, NULL },
	{ "dirtree", "a directory's b+tree leaf zeroed (the directory rebuilt empty in one "
	  "transaction, what it named linked into a new /lost+found, through a mount)", false,
	  false, dmg_dirtree, false, true, { "repair rebuilds it", "named by no directory" },
	  want_dirtree },
	{ "dirhash", "a directory entry under a wrong hash (the directory rebuilt: old tree "
	  "freed and every entry put back in one transaction through a mount)", false, false,
	  dmg_dirhash, false, true, { "repair rebuilds it", "under its own hash" }, NULL },
	{ "dirroot", "a directory's data-fork root pointer out of the filesystem (its leaf "
	  "found through the rmap, the directory rebuilt with every entry; without the rmap "
	  "what it named linked into a new /lost+found; through a mount)", false, false,
	  dmg_dirroot, false, true, { "bad root fsbno", "repair rebuilds it" }, want_dirroot },
	{ "dircrc", "a directory leaf failing its crc, two of its entries damaged (the "
	  "directory rebuilt from the entries that prove themselves one by one, the lost "
	  "file linked into a new /lost+found, through a mount)", false, false, dmg_dircrc,
	  false, true, { "failed verification", "repair rebuilds it" }, want_dircrc },
	{ "agfull", "a refcount one too high in a full filesystem with big rmap btrees (the "
	  "AG rebuild writes new trees over old tree blocks: a cut leaves damage the next "
	  "repair rebuilds)", false, false, dmg_refc_bump, false, false, { "refcount", NULL },
	  NULL, true, "too full to keep the old trees" },
	{ "agrmap", "a refcount one too high, the rebuild made to write its new trees over "
	  "the old rmapbt (RLFS_FSCK_REBUILD_OLD_RMAP_FIRST: no other repair reads it)",
	  false, true, dmg_refc_bump, false, false, { "refcount", NULL }, NULL, false,
	  "went over old ones", true },
	{ "inobt-rmapfirst", "an inobt record dropped, the rebuild asked to take the old "
	  "rmapbt first: it must not, the chunk is found again in it", false, true, dmg_inobt,
	  false, false, { NULL, NULL }, NULL, false, NULL, true },
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

const char *crash_repair_kinds(void)
{
	return "counters, orphans, brokenlist, inobt, bmbt, agtrees, lastag, mixed, bmbt-agtrees, "
	       "dirent, lostfile, badinode, baddir, inobt-zero, dirtree, dirhash, dirroot, dircrc, "
	       "agfull, agrmap, inobt-rmapfirst, all";
}

/* ---------------------------------------------------------------- */
/* checking one cut image (in the child)                              */

struct msgs {
	int fd;
	unsigned n;
};

static void say(struct msgs *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct msgs *m, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (char *p = line; *p; p++)
		if (*p == '\n')
			*p = ' ';
	m->n++;
	dprintf(m->fd, "M %s\n", line);
}

/*
 * Every file as kind k expects it after the repair (tag: when): where k
 * says (its own path unless k->expect moves it or says it is gone), with
 * the bytes and link count the undamaged image had (or k's link count);
 * a file gone or moved must not be found at its old path.
 */
static void verify_files(const struct kind *k, struct rlfs_mount *mp, struct msgs *m,
			 const char *tag)
{
	for (size_t i = 0; i < NFILES; i++) {
		struct want w = { .path = files[i].path, .nlink = files[i].nlink };
		uint64_t size = 0;
		uint32_t crc = 0;
		struct stat st;
		int err;
		if (k->expect)
			k->expect(i, &w);
		if (w.path != files[i].path) {
			err = digest(mp, files[i].path, &size, &crc, &st);
			if (err != -ENOENT)
				say(m, "present: %s %s: %s, expected gone%s%s", files[i].path, tag,
				    err ? strerror(-err) : "found", w.path ? ", now " : "",
				    w.path ? w.path : "");
			if (!w.path)
				continue;
		}
		err = digest(mp, w.path, &size, &crc, &st);
		if (err == -ENOENT)
			say(m, "missing: %s %s", w.path, tag);
		else if (err)
			say(m, "readerr: %s %s: %s", w.path, tag, strerror(-err));
		else if (size != files[i].size)
			say(m, "size: %s %s: %" PRIu64 " bytes, was %" PRIu64, w.path, tag,
			    size, files[i].size);
		else if (crc != files[i].crc)
			say(m, "data: %s %s: crc 0x%08x, was 0x%08x", w.path, tag, crc,
			    files[i].crc);
		else if ((uint64_t)st.st_ino != files[i].ino)
			say(m, "inode: %s %s: inode %" PRIu64 ", expected %" PRIu64, w.path, tag,
			    (uint64_t)st.st_ino, files[i].ino);
		else if (st.st_nlink != w.nlink)
			say(m, "nlink: %s %s: %u, expected %u", w.path, tag,
			    (unsigned)st.st_nlink, w.nlink);
	}
}

static void fsck_say(struct msgs *m, const char *what, int rc, const char *out)
{
	char l[1000];
	first_lines(out, 3, l, sizeof(l));
	say(m, "fsck: %s: exit %d: %s", what, rc, l);
}

/*
 * fsck -n's findings about AGs before last (not the superblock's
 * counters, which name AG 0): each is said as "spread:" (the repair made
 * a healthy AG inconsistent).
 */
static void check_healthy_ags(const char *img, uint32_t last, struct msgs *m)
{
	const char *out = P.cut_out;
	int rc = fsck_run(img, true, out);
	FILE *fp = rc == 0 ? NULL : fopen(out, "r");
	char line[600];
	unsigned n = 0;
	while (fp && fgets(line, sizeof(line), fp) && n < 3) {
		const char *p = strstr(line, "AG ");
		unsigned agno;
		line[strcspn(line, "\n")] = 0;
		if (!p || sscanf(p, "AG %u agbno", &agno) != 1 || agno >= last ||
		    strstr(line, "(superblock)"))
			continue;
		say(m, "spread: fsck -n before the next repair (exit %d) finds a healthy AG "
		    "changed: %s", rc, line);
		n++;
	}
	if (fp)
		fclose(fp);
}

/* repair, check, mount, verify, use, unmount, check; returns the findings */
static unsigned check_cut(const struct kind *k, const char *img, int msgfd)
{
	struct msgs m = { .fd = msgfd };
	const char *out = P.cut_out;
	if (k->last_ag_only)
		check_healthy_ags(img, g.agcount - 1, &m);
	int rc = fsck_run(img, false, out);
	if (rc != 0 && rc != 1)
		fsck_say(&m, "the repair after the cut", rc, out);
	if (opt->verbose) {
		/* what the second repair found and did: its last line */
		FILE *fp = fopen(out, "r");
		char line[600], lastl[600] = "";
		while (fp && fgets(line, sizeof(line), fp))
			if (line[0] != '\n')
				memcpy(lastl, line, sizeof(line));
		if (fp)
			fclose(fp);
		printf("     the repair after the cut: exit %d: %s", rc, lastl[0] ? lastl : "\n");
	}
	/* (exit 0 or 1 means its own re-check found the image clean: no
	 * fsck -n here; the one after the mount below checks again) */
	struct rlfs_mount *mp;
	int err = rlfs_mount_open(img, RLFS_MOUNT_NOLOCK, &mp);
	if (err) {
		say(&m, "mount: %s", strerror(-err));
		return m.n;
	}
	verify_files(k, mp, &m, "after the repair");
	/* a new file takes free space: it must be really free */
	struct stat st;
	err = rlfs_mknod(mp, rlfs_root_ino(mp), "new", S_IFREG | 0644, 0, 0, 0, &st);
	if (err) {
		say(&m, "use: create a new file: %s", strerror(-err));
	} else {
		for (uint64_t i = 0; i < NEW_FILE_BYTES; i++)
			iobuf[i] = pattern(12, i);
		ssize_t n = rlfs_write(mp, (uint64_t)st.st_ino, iobuf, NEW_FILE_BYTES, 0);
		if (n != (ssize_t)NEW_FILE_BYTES)
			say(&m, "use: write a new file: %zd", n);
		err = rlfs_sync(mp);
		if (err)
			say(&m, "use: sync: %s", strerror(-err));
		uint32_t want = rlfs_crc32c(iobuf, NEW_FILE_BYTES);
		n = rlfs_read(mp, (uint64_t)st.st_ino, iobuf, NEW_FILE_BYTES, 0);
		if (n != (ssize_t)NEW_FILE_BYTES || rlfs_crc32c(iobuf, NEW_FILE_BYTES) != want)
			say(&m, "data: the new file does not read back (%zd bytes)", n);
		rlfs_forget(mp, (uint64_t)st.st_ino, 1);
		verify_files(k, mp, &m, "after a new file was written");
	}
	err = rlfs_mount_close(mp);
	if (err)
		say(&m, "unmount: %s", strerror(-err));
	rc = fsck_run(img, true, out);
	if (rc != 0)
		fsck_say(&m, "fsck -n after the mount", rc, out);
	return m.n;
}

/* ---------------------------------------------------------------- */
/* one damage kind                                                    */

struct rcut {
	struct rlfs_crash_cut cut;
	bool subset;                /* the window's writes kept at random */
};

/*
 * The cuts of a repair of nev events: no event, and every prefix that
 * ends with a write (or, with o->images, at most about two thirds of
 * them spread evenly, the whole repair always in), then count
 * random-subset cuts at each flush (the writes since the flush before,
 * each kept or lost, multi-sector ones torn 25%), at most a third of
 * o->images.
 */
static struct rcut *make_cuts(struct rlfs_crash_rec *rec, uint64_t nev, uint64_t seed, size_t *np)
{
	size_t cap = nev + 2, n = 0;
	uint64_t *flushes = xmalloc((nev + 1) * sizeof(*flushes));
	size_t nfl = 0;
	/* windows where a subset differs from every prefix: two writes or
	 * more, or one of several sectors (it can tear) */
	uint64_t writes = 0;
	bool multi = false;
	for (uint64_t i = 0; i <= nev; i++) {
		struct rlfs_crash_event ev = { .kind = RLFS_CRASH_FLUSH };
		if (i < nev)
			rlfs_crash_rec_event(rec, i, &ev);
		if (ev.kind == RLFS_CRASH_WRITE) {
			writes++;
			multi |= ev.len_bytes > RLFS_CRASH_SECTOR_BYTES;
			continue;
		}
		if (writes > 1 || multi)
			flushes[nfl++] = i;     /* the flush (or the end) after them */
		writes = 0;
		multi = false;
	}
	size_t nsub = nfl * opt->count;
	size_t sub_max = opt->images ? RLFS_MAX(opt->images / 3, 1u) : nsub;
	size_t pre_max = opt->images ? RLFS_MAX(opt->images - RLFS_MIN(nsub, sub_max), 2u) : nev + 1;
	cap += nsub;
	struct rcut *c = xmalloc(cap * sizeof(*c));
	/* prefixes: none, and each that ends with a write (one that ends
	 * with a flush builds the same image as the one before it), evenly
	 * spread when capped, the whole repair always in */
	uint64_t *pre = xmalloc((nev + 1) * sizeof(*pre));
	size_t nall = 0;
	pre[nall++] = 0;
	for (uint64_t i = 0; i < nev; i++) {
		struct rlfs_crash_event ev;
		rlfs_crash_rec_event(rec, i, &ev);
		if (ev.kind == RLFS_CRASH_WRITE)
			pre[nall++] = i + 1;
	}
	size_t npre = RLFS_MIN(pre_max, nall);
	for (size_t k = 0; k < npre; k++) {
		size_t j = npre == 1 ? nall - 1 : k * (nall - 1) / (npre - 1);
		c[n++] = (struct rcut){ .cut = { .pos = pre[j], .keep_all = true } };
	}
	free(pre);
	/* random subsets of each window, at most sub_max spread over them */
	uint64_t rs = mix(seed ^ 0xF5C4ull);
	size_t stride = nsub > sub_max ? (nsub + sub_max - 1) / sub_max : 1;
	for (size_t k = 0; k < nsub; k++) {
		rs = mix(rs);
		if (k % stride)
			continue;
		c[n++] = (struct rcut){ .cut = { .pos = flushes[k / opt->count], .seed = rs,
						 .torn_pct = 25 }, .subset = true };
	}
	free(flushes);
	*np = n;
	return c;
}

/*
 * Damage a copy of kind k's image (P.damaged), check that fsck -n calls it
 * repairable, then run `fsck` on it with every device it opens recorded
 * into a new *recp.  0, or 2 (after a line on stderr) when the damage is
 * not what repair corrects or the repair did not exit 1.
 */
static int record_repair(const struct kind *k, struct rlfs_crash_rec **recp)
{
	const char *dmg = P.damaged, *out = P.record_out;
	char l[1500];
	copy_file(k->full ? P.full : k->listed ? P.listed : P.pristine, dmg);
	dmg_fd = open(dmg, O_RDWR | O_CLOEXEC);
	if (dmg_fd < 0)
		setup_fail("open %s: %s", dmg, strerror(errno));
	k->damage();
	close(dmg_fd);
	dmg_fd = -1;
	int rc = fsck_run(dmg, true, out);
	if (rc != 4 || !file_has(out, "that repair corrects")) {
		first_lines(out, 6, l, sizeof(l));
		fprintf(stderr, "rlfs-crashtest: damage %s: fsck -n exit %d and not repairable, "
			"expected exit 4 and \"that repair corrects\": %s\n", k->name, rc, l);
		return 2;
	}
	for (int i = 0; i < 2; i++) {
		if (k->finding[i] && !file_has(out, k->finding[i])) {
			first_lines(out, 6, l, sizeof(l));
			fprintf(stderr, "rlfs-crashtest: damage %s: fsck -n does not say \"%s\": "
				"%s\n", k->name, k->finding[i], l);
			return 2;
		}
	}
	/* the base image: the damaged one; then every device the repair
	 * opens on dmg goes through the record (__wrap_rlfs_dev_open) */
	struct rlfs_dev *fdev;
	struct rlfs_crash_rec *rec;
	int err = __real_rlfs_dev_open(dmg, 0, 0, &fdev);
	if (err)
		setup_fail("open %s: %s", dmg, strerror(-err));
	err = rlfs_crash_rec_new(fdev, &rec);
	rlfs_dev_close(fdev);
	if (err)
		setup_fail("crash record: %s", strerror(-err));
	hook_path = dmg;
	hook_rec = rec;
	hook_each_commit = k->each_commit;
	rc = fsck_run(dmg, false, out);
	hook_each_commit = false;
	hook_rec = NULL;
	hook_path = NULL;
	if (rc != 1) {
		first_lines(out, 6, l, sizeof(l));
		fprintf(stderr, "rlfs-crashtest: damage %s: the recorded repair exited %d, expected 1 "
			"(corrected): %s\n", k->name, rc, l);
		rlfs_crash_rec_free(rec);
		return 2;
	}
	if (k->repair_says && !file_has(out, k->repair_says)) {
		first_lines(out, 6, l, sizeof(l));
		fprintf(stderr, "rlfs-crashtest: damage %s: the repair does not say \"%s\": %s\n",
			k->name, k->repair_says, l);
		rlfs_crash_rec_free(rec);
		return 2;
	}
	if (opt->verbose) {
		first_lines(out, 12, l, sizeof(l));
		printf("repair %s: %s\n", k->name, l);
	}
	*recp = rec;
	return 0;
}

/*
 * The checking child: images todo[from..n) of cuts, each built into
 * P.cut and checked (check_cut), reported on fd as "S i" (started), "X
 * window kept lost torn", "M finding" lines and "E i n" (done).  Exits.
 */
static void __attribute__((noreturn))
child_check(const struct kind *k, struct rlfs_crash_rec *rec, const struct rcut *cuts,
	    const size_t *todo, size_t from, size_t n, int fd)
{
	if (!opt->verbose) {
		int nul = open("/dev/null", O_WRONLY);
		if (nul >= 0) {
			dup2(nul, 2);
			close(nul);
		}
	}
	for (size_t i = from; i < n; i++) {
		const struct rcut *c = &cuts[todo[i]];
		dprintf(fd, "S %zu\n", i);
		alarm(120);
		int ifd = open(P.cut, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
		struct rlfs_crash_stats cs = { 0 };
		int e = ifd < 0 ? -errno : rlfs_crash_rec_build(rec, &c->cut, ifd, &cs);
		if (ifd >= 0)
			close(ifd);
		if (e) {
			dprintf(fd, "M build: %s\n", strerror(-e));
			_exit(3);
		}
		dprintf(fd, "X %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", cs.window_writes,
			cs.kept, cs.lost, cs.torn);
		unsigned nm = check_cut(k, P.cut, fd);
		if (nm && opt->keep) {
			char keep[4300];
			snprintf(keep, sizeof(keep), "%s/repair-%s-%" PRIu64 "-%zu.img", opt->dir,
				 k->name, opt->seed, todo[i]);
			int kfd = open(keep, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
			if (kfd >= 0 && rlfs_crash_rec_build(rec, &c->cut, kfd, NULL) == 0)
				dprintf(fd, "M image kept: %s (as built, before the check)\n", keep);
			if (kfd >= 0)
				close(kfd);
		}
		dprintf(fd, "E %zu %u\n", i, nm);
	}
	_exit(0);
}

/* Count and print the outcome of cut number k (c) of kind kd; msgs holds
 * its findings, one a line. */
static void report_cut(const struct kind *kd, size_t k, const struct rcut *c, uint64_t nev,
		       const uint64_t win[4], const char *msgs, struct crash_repair_totals *t)
{
	char desc[300];
	snprintf(desc, sizeof(desc), "%s cut at %" PRIu64 "/%" PRIu64 ": window %" PRIu64
		 " writes (kept %" PRIu64 ", lost %" PRIu64 ", torn %" PRIu64 ")",
		 c->subset ? "subset" : "prefix", c->cut.pos, nev, win[0], win[1], win[2], win[3]);
	t->images++;
	if (!msgs[0]) {
		if (opt->verbose)
			printf("ok   repair %s cut %zu: %s\n", kd->name, k, desc);
		fflush(stdout);
		return;
	}
	t->failed++;
	printf("FAIL --mode repair --damage %s --seed %" PRIu64 " --count %u --images %u "
	       "--cut %zu: %s\n", kd->name, opt->seed, opt->count, opt->images, k, desc);
	for (const char *p = msgs, *nl; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		if (!nl)
			nl = p + strlen(p);
		printf("    %.*s\n", (int)(nl - p), p);
		if (!*nl)
			break;
	}
	fflush(stdout);
}

/* Run kind k: damage, record the repair, check the cuts.  0 or 2. */
static int run_kind(const struct kind *k, struct crash_repair_totals *t)
{
	struct rlfs_crash_rec *rec;
	if (k->old_rmap_first)
		setenv("RLFS_FSCK_REBUILD_OLD_RMAP_FIRST", "1", 1);
	else
		unsetenv("RLFS_FSCK_REBUILD_OLD_RMAP_FIRST");
	int rc = record_repair(k, &rec);
	if (rc)
		return rc;
	uint64_t nev = rlfs_crash_rec_pos(rec), nfl = 0;
	for (uint64_t i = 0; i < nev; i++) {
		struct rlfs_crash_event ev;
		rlfs_crash_rec_event(rec, i, &ev);
		nfl += ev.kind == RLFS_CRASH_FLUSH;
		if (getenv("RLFS_CRASH_DUMP"))
			printf("repair %s event %" PRIu64 ": %s fsbno %" PRIu64 " +%" PRIu64 "\n",
			       k->name, i, ev.kind == RLFS_CRASH_FLUSH ? "flush" : "write",
			       ev.off_bytes / g.bs, ev.len_bytes);
	}
	t->kinds++;
	t->writes += nev - nfl;
	t->flushes += nfl;
	size_t ncuts;
	struct rcut *cuts = make_cuts(rec, nev, mix(opt->seed ^ (uint64_t)(k - kinds)), &ncuts);
	size_t *todo = xmalloc((ncuts + 1) * sizeof(*todo)), ntodo = 0;
	for (size_t i = 0; i < ncuts; i++)
		if (opt->cut < 0 || (size_t)opt->cut == i)
			todo[ntodo++] = i;
	uint64_t images0 = t->images, failed0 = t->failed, nsub = 0;
	/*
	 * One child checks the images in turn; one that dies (signal,
	 * sanitizer, alarm) leaves an image started and not done: it is
	 * reported as crashed and a new child goes on with the next image.
	 */
	size_t next = 0;
	while (next < ntodo) {
		int pfd[2];
		if (pipe(pfd) < 0)
			setup_fail("pipe: %s", strerror(errno));
		fflush(stdout);
		fflush(stderr);
		pid_t pid = fork();
		if (pid < 0)
			setup_fail("fork: %s", strerror(errno));
		if (pid == 0) {
			close(pfd[0]);
			child_check(k, rec, cuts, todo, next, ntodo, pfd[1]);
		}
		close(pfd[1]);
		FILE *in = fdopen(pfd[0], "r");
		if (!in)
			setup_fail("fdopen: %s", strerror(errno));
		char line[1500], msgs[8192];
		size_t mlen = 0, cur = next;
		bool open_img = false;
		uint64_t win[4] = { 0 };
		for (;;) {
			bool got = fgets(line, sizeof(line), in) != NULL;
			if (got && line[0] == 'S') {
				cur = (size_t)strtoull(line + 2, NULL, 10);
				open_img = true;
				mlen = 0;
				msgs[0] = 0;
				memset(win, 0, sizeof(win));
			} else if (got && line[0] == 'X') {
				sscanf(line + 2, "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &win[0],
				       &win[1], &win[2], &win[3]);
			} else if (got && line[0] == 'M') {
				size_t len = strlen(line + 2);
				if (mlen + len < sizeof(msgs)) {
					memcpy(msgs + mlen, line + 2, len + 1);
					mlen += len;
				}
			} else if (got && line[0] == 'E') {
				report_cut(k, todo[cur], &cuts[todo[cur]], nev, win, msgs, t);
				nsub += cuts[todo[cur]].subset;
				open_img = false;
				next = cur + 1;
			} else if (!got) {
				break;
			}
		}
		fclose(in);
		int status = 0;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (open_img) {
			snprintf(msgs + mlen, sizeof(msgs) - mlen, "crashed: the check died (%s %d)\n",
				 WIFSIGNALED(status) ? "signal" : "exit",
				 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
			report_cut(k, todo[cur], &cuts[todo[cur]], nev, win, msgs, t);
			nsub += cuts[todo[cur]].subset;
			next = cur + 1;
		} else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			setup_fail("checking child failed outside an image (status %d)", status);
		}
	}
	printf("repair %s: %s; the repair: %" PRIu64 " writes, %" PRIu64 " flushes; checked %"
	       PRIu64 " cut images (%" PRIu64 " prefixes, %" PRIu64 " random subsets of a flush "
	       "window), %" PRIu64 " failed\n", k->name, k->what, nev - nfl, nfl,
	       t->images - images0, t->images - images0 - nsub, nsub, t->failed - failed0);
	fflush(stdout);
	free(todo);
	free(cuts);
	rlfs_crash_rec_free(rec);
	return 0;
}

/* Whether list ("all", or kind names separated by commas) names kind. */
static bool kind_listed(const char *list, const char *kind)
{
	if (!strcmp(list, "all"))
		return true;
	size_t n = strlen(kind);
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ",");
		if (len == n && !strncmp(p, kind, n))
			return true;
		p += len;
		if (*p == ',')
			p++;
	}
	return false;
}

/* Whether every name in list is a kind ("all" is). */
static bool kinds_known(const char *list)
{
	if (!strcmp(list, "all"))
		return true;
	for (const char *p = list; *p;) {
		size_t len = strcspn(p, ","), i;
		for (i = 0; i < NKINDS; i++)
			if (strlen(kinds[i].name) == len && !strncmp(p, kinds[i].name, len))
				break;
		if (i == NKINDS)
			return false;
		p += len;
		if (*p == ',')
			p++;
	}
	return true;
}

int crash_repair_run(const struct crash_repair_opts *o, struct crash_repair_totals *t)
{
	const struct kind *list[NKINDS];
	size_t n = 0;
	opt = o;
	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < NKINDS; i++)
		if (kind_listed(o->damage, kinds[i].name))
			list[n++] = &kinds[i];
	if (!n || !kinds_known(o->damage)) {
		fprintf(stderr, "rlfs-crashtest: unknown --damage %s (%s)\n", o->damage,
			crash_repair_kinds());
		return 2;
	}
	set_paths(o->tmpdir);
	iobuf = xmalloc(FILE_MAX_BYTES);
	populate();
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		if (list[i]->needs_rmap && !g.rmap) {
			printf("repair %s: skipped (it needs the rmap btree, the source of what "
			       "it rebuilds)\n", list[i]->name);
			continue;
		}
		rc = run_kind(list[i], t);
	}
	remove_files();
	free(iobuf);
	return rc;
}

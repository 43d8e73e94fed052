/*
 * atomic-update.c: how an application (an editor saving a file, a
 * database rewriting pages) updates a file atomically with XFS's
 * XFS_IOC_START_COMMIT / XFS_IOC_COMMIT_RANGE (ioctl_xfs_commit_range(2),
 * Linux 6.12), on kernel XFS or, through the reflinkfs shim
 * (LD_PRELOAD=libreflinkfs-preload.so), on a reflinkfs mount.
 *
 *   atomic-update [--wait] FILE OFFSET TEXT
 *
 * writes TEXT at OFFSET of a new version of FILE and makes it FILE's
 * contents in one step: readers, and a crash, see all of the old version
 * or all of the new one.  The pattern:
 *   1. START_COMMIT on FILE samples its freshness (inode, mtime, ctime);
 *   2. FICLONE FILE into a temporary file next to it: the new version
 *      shares every block it does not change;
 *   3. write the changes into the temporary file;
 *   4. COMMIT_RANGE exchanges the two files' contents, only if FILE was
 *      not changed since step 1; otherwise EBUSY and nothing changes (the
 *      application re-reads FILE and tries again).
 * --wait stops between steps 3 and 4 until a line is read on stdin, so a
 * concurrent change can be made there (make demo does).  Exit status 0
 * committed, 3 EBUSY (FILE changed meanwhile), 1 other errors.
 *
 * The structures and numbers are the kernel's (fs/xfs/libxfs/xfs_fs.h,
 * Linux 6.12), written out here because Debian 12's xfslibs-dev predates
 * them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

struct xfs_commit_range {
	int32_t file1_fd;           /* the new version */
	uint32_t pad;               /* must be zero */
	uint64_t file1_offset;      /* bytes */
	uint64_t file2_offset;      /* bytes (file2: the ioctl's fd) */
	uint64_t length;            /* bytes */
	uint64_t flags;             /* XFS_EXCHANGE_RANGE_* */
	uint64_t file2_freshness[6]; /* filled by START_COMMIT; opaque */
};
#define XFS_EXCHANGE_RANGE_TO_EOF (1ULL << 0)  /* and exchange the sizes */
#define XFS_EXCHANGE_RANGE_DSYNC  (1ULL << 1)  /* durable on return */
#define XFS_IOC_START_COMMIT _IOR('X', 130, struct xfs_commit_range)
#define XFS_IOC_COMMIT_RANGE _IOW('X', 131, struct xfs_commit_range)

static int fail(const char *what, const char *path)
{
	fprintf(stderr, "atomic-update: %s %s: %s\n", what, path, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	int wait = argc > 1 && strcmp(argv[1], "--wait") == 0;
	if (argc != 4 + wait) {
		fprintf(stderr, "usage: atomic-update [--wait] FILE OFFSET TEXT\n");
		return 1;
	}
	const char *path = argv[1 + wait], *text = argv[3 + wait];
	char *end;
	errno = 0;
	unsigned long long off = strtoull(argv[2 + wait], &end, 0);
	if (errno || *end || off > (unsigned long long)LLONG_MAX) {
		fprintf(stderr, "atomic-update: bad offset %s\n", argv[2 + wait]);
		return 1;
	}

	int fd = open(path, O_RDWR);
	if (fd < 0)
		return fail("open", path);
	/* 1. the freshness of the version this update starts from */
	struct xfs_commit_range cr;
	memset(&cr, 0, sizeof(cr));
	if (ioctl(fd, XFS_IOC_START_COMMIT, &cr))
		return fail("XFS_IOC_START_COMMIT", path);

	/* 2. a clone of it, in the same directory (same filesystem) */
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.new-XXXXXX", path) >= (int)sizeof(tmp)) {
		fprintf(stderr, "atomic-update: path too long\n");
		return 1;
	}
	int tfd = mkstemp(tmp);
	if (tfd < 0)
		return fail("mkstemp", tmp);
	int rc = 1;
	if (ioctl(tfd, FICLONE, fd)) {
		fail("FICLONE into", tmp);
		goto out;
	}
	/* 3. the changes, into the new version only */
	size_t len = strlen(text);
	if (pwrite(tfd, text, len, (off_t)off) != (ssize_t)len) {
		fail("pwrite", tmp);
		goto out;
	}
	struct stat st;
	if (fstat(tfd, &st)) {
		fail("fstat", tmp);
		goto out;
	}
	if (wait) {
		printf("staged; waiting\n");
		fflush(stdout);
		char line[64];
		if (!fgets(line, sizeof(line), stdin))
			clearerr(stdin);
	}
	/* 4. commit: the whole file, sizes exchanged, durable on return */
	cr.file1_fd = tfd;
	cr.file1_offset = 0;
	cr.file2_offset = 0;
	cr.length = (uint64_t)st.st_size;
	cr.flags = XFS_EXCHANGE_RANGE_TO_EOF | XFS_EXCHANGE_RANGE_DSYNC;
	if (ioctl(fd, XFS_IOC_COMMIT_RANGE, &cr) == 0) {
		printf("committed: %s now has the new version\n", path);
		rc = 0;
	} else if (errno == EBUSY) {
		printf("not committed: %s changed since the update started (%s)\n", path,
		       strerror(errno));
		rc = 3;
	} else {
		fail("XFS_IOC_COMMIT_RANGE", path);
	}
out:
	close(tfd);
	unlink(tmp);    /* holds the old version after a commit */
	close(fd);
	return rc;
}

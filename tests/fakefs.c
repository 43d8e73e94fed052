/*
 * fakefs.c: a hostile FUSE filesystem for tests/integration/26-fake-source.sh.
 *
 *   rlfs-fakefs MOUNTPOINT INO SIZE [fuse options...]
 *
 * Serves (in the foreground) a root directory holding one regular file,
 * "f", of SIZE bytes (zeros) whose st_ino is INO: what an unprivileged
 * user can mount with fusermount3 and `-o fsname=reflinkfs#IMAGE,
 * subtype=reflinkfs` to pose as a reflinkfs mount and name the inode
 * number of someone else's file.  A daemon that trusts mount names or
 * reported inode numbers would clone that file for the caller.
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned long long g_ino, g_size;

static void fill(fuse_ino_t n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_uid = getuid();
	st->st_gid = getgid();
	if (n == FUSE_ROOT_ID) {
		st->st_ino = 1;
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_ino = (ino_t)g_ino;
		st->st_mode = S_IFREG | 0644;
		st->st_nlink = 1;
		st->st_size = (off_t)g_size;
	}
}

static void ff_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (parent != FUSE_ROOT_ID || strcmp(name, "f") != 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = 2;
	fill(2, &e.attr);
	e.attr_timeout = e.entry_timeout = 60;
	fuse_reply_entry(req, &e);
}

static void ff_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct stat st;
	fill(ino, &st);
	fuse_reply_attr(req, &st, 60);
}

static void ff_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fuse_reply_open(req, fi);
}

static void ff_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	static char zeros[1 << 17];
	if ((unsigned long long)off >= g_size)
		size = 0;
	else if (size > g_size - (unsigned long long)off)
		size = (size_t)(g_size - (unsigned long long)off);
	if (size > sizeof(zeros))
		size = sizeof(zeros);
	fuse_reply_buf(req, zeros, size);
}

static const struct fuse_lowlevel_ops ops = {
	.lookup = ff_lookup,
	.getattr = ff_getattr,
	.open = ff_open,
	.read = ff_read,
};

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s MOUNTPOINT INO SIZE [fuse options...]\n", argv[0]);
		return 2;
	}
	g_ino = strtoull(argv[2], NULL, 0);
	g_size = strtoull(argv[3], NULL, 0);
	char *fargv[64];
	int fargc = 0;
	fargv[fargc++] = argv[0];
	for (int i = 4; i < argc && fargc < 63; i++)
		fargv[fargc++] = argv[i];
	fargv[fargc] = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(fargc, fargv);
	struct fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se)
		return 1;
	int ret = 1;
	if (fuse_session_mount(se, argv[1]) == 0) {
		fuse_daemonize(0);     /* background once mounted */
		ret = fuse_session_loop(se);
		fuse_session_unmount(se);
	}
	fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	return ret ? 1 : 0;
}

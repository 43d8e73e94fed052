/*
 * fsck_dir.c: the directory repairs of phase 4 (model: e2fsck passes 2-4,
 * xfs_repair phases 6-7): directory entries that name a free inode or an
 * inode number in no inode chunk are removed; lost inodes (in use, named
 * by no directory) are linked into /lost+found, made first if missing.
 * The findings are made by fsck_check_graph (fsck_xref.c), which also
 * leaves out of its link-count fixes the inodes handled here.
 *
 * Everything is written through a library mount and its own directory
 * operations (rlfs_dir_remove, rlfs_dir_add, rlfs_mkdir), one logged
 * transaction per entry or inode, as fsck_free_orphans and fsck_fix_forks
 * do: a crash between two of them leaves a consistent filesystem with the
 * rest still to do, which the next fsck finds and does.  Runs last, after
 * the raw repairs (link counts of the other inodes, AG trees, superblock)
 * made the image one the library mounts.
 *
 * Counts kept by the transaction itself: a lost file gets nlink 1 (its one
 * name, in /lost+found); a lost directory 2 + its subdirectories, its
 * parent pointer ("..") becomes /lost+found, and /lost+found's link count
 * goes up by one.  A directory's size is not kept by reflinkfs (its
 * entries live in a b+tree; st_size is derived), so there is none to fix.
 * See fsck.c for the whole picture.
 */
#include <pthread.h>

#include "fsck_int.h"

#define FSCK_LPF_NAME "lost+found"
#define FSCK_LPF_MODE 0700

/* Remove one entry (one transaction).  0, -EUCLEAN if the name no longer
 * holds the inode number phase 4 saw, or the library's errors. */
static int remove_entry(struct fsck *f, struct rlfs_mount *lm, const struct dfix *x)
{
	const char *name = f->names + x->name_off;
	struct rlfs_inode *dp;
	struct rlfs_trans *tp;
	uint64_t ino = 0;
	int err;

	err = rlfs_iget(lm, x->dir, &dp);
	if (err)
		return err;
	if (!S_ISDIR(dp->mode)) {
		rlfs_irele(dp);
		return -EUCLEAN;
	}
	pthread_rwlock_wrlock(&dp->iolock);
	err = rlfs_trans_alloc(lm, &lm->resv.tr_remove, rlfs_dir_res(dp), RLFS_TRANS_RESERVE,
			       &tp);
	if (err)
		goto out;
	rlfs_trans_ijoin(tp, dp);
	err = rlfs_dir_remove(tp, dp, name, x->namelen, &ino);
	if (!err && ino != x->child)
		err = -EUCLEAN;     /* changed since the check */
	if (err) {
		rlfs_trans_cancel(tp);
		goto out;
	}
	rlfs_now(&dp->mtime);
	dp->ctime = dp->mtime;
	rlfs_trans_log_inode(tp, dp);
	err = rlfs_trans_commit(tp);
	if (!err)
		fsck_verbose(f, "inode %" PRIu64 " (directory): entry '%.*s' to inode %" PRIu64
			     " removed", x->dir, (int)x->namelen, name, x->child);
out:
	pthread_rwlock_unlock(&dp->iolock);
	rlfs_irele(dp);
	return err;
}

/* /lost+found's inode number: the one phase 4 found, else a new directory
 * made in the root (mode 0700, uid and gid 0, as e2fsck and xfs_repair
 * make it).  0 or -errno. */
static int get_lpf(struct fsck *f, struct rlfs_mount *lm, uint64_t *lpf)
{
	struct stat st;
	int err;

	if (f->lpf_ino) {
		*lpf = f->lpf_ino;
		return 0;
	}
	err = rlfs_mkdir(lm, lm->rootino, FSCK_LPF_NAME, FSCK_LPF_MODE, 0, 0, &st);
	if (err)
		return err;
	printf("%s: created /%s (inode %" PRIu64 ")\n", f->image, FSCK_LPF_NAME,
	       (uint64_t)st.st_ino);
	f->lpf_ino = st.st_ino;
	*lpf = st.st_ino;
	return 0;
}

/* Link one lost inode into /lost+found as "<ino>" (".1", ".2", ... added
 * while the name is taken), with its counts set, in one transaction.
 * 0 or -errno. */
static int link_lost(struct fsck *f, struct rlfs_mount *lm, struct rlfs_inode *lp,
		     const struct lostino *li)
{
	struct rlfs_inode *ip;
	struct rlfs_trans *tp;
	char name[40];
	uint64_t other;
	int err, len = 0;

	err = rlfs_iget(lm, li->ino, &ip);
	if (err)
		return err;
	if ((ip->mode & S_IFMT) != (li->mode & S_IFMT)) {
		rlfs_irele(ip);
		return -EUCLEAN;    /* changed since the check */
	}
	/* the two locks in inode order, as the library takes them */
	pthread_rwlock_wrlock(ip->ino < lp->ino ? &ip->iolock : &lp->iolock);
	pthread_rwlock_wrlock(ip->ino < lp->ino ? &lp->iolock : &ip->iolock);
	err = rlfs_trans_alloc(lm, &lm->resv.tr_link, rlfs_dir_res(lp), 0, &tp);
	if (err)
		goto out;
	rlfs_trans_ijoin(tp, lp);
	rlfs_trans_ijoin(tp, ip);
	for (unsigned k = 0; k < 1000; k++) {
		if (k)
			len = snprintf(name, sizeof(name), "%" PRIu64 ".%u", li->ino, k);
		else
			len = snprintf(name, sizeof(name), "%" PRIu64, li->ino);
		err = rlfs_dir_lookup(tp, lp, name, (size_t)len, &other, NULL);
		if (err != 0)
			break;
	}
	if (err == -ENOENT)
		err = rlfs_dir_add(tp, lp, name, (size_t)len, ip->ino, rlfs_mode_to_ftype(ip->mode));
	else if (!err)
		err = -EEXIST;
	if (err) {
		rlfs_trans_cancel(tp);
		goto out;
	}
	ip->nlink = li->nlink;
	if (S_ISDIR(ip->mode)) {
		ip->parent = lp->ino;
		lp->nlink++;
	}
	rlfs_now(&ip->ctime);
	rlfs_now(&lp->mtime);
	lp->ctime = lp->mtime;
	rlfs_trans_log_inode(tp, ip);
	rlfs_trans_log_inode(tp, lp);
	err = rlfs_trans_commit(tp);
	if (!err)
		printf("%s: inode %" PRIu64 " linked into /%s as '%s'\n", f->image, li->ino,
		       FSCK_LPF_NAME, name);
out:
	pthread_rwlock_unlock(&ip->iolock);
	pthread_rwlock_unlock(&lp->iolock);
	rlfs_irele(ip);
	return err;
}

int fsck_fix_dirs(struct fsck *f)
{
	struct rlfs_mount *lm;
	struct rlfs_inode *lp = NULL;
	uint64_t lpf;
	int err = 0, err2;

	if (!f->ndfixes && !f->nlostinos)
		return 0;
	err = rlfs_mount_open(f->image, RLFS_MOUNT_NOLOCK, &lm);
	if (err)
		return err;
	for (size_t i = 0; i < f->ndfixes && !err; i++) {
		err = remove_entry(f, lm, &f->dfixes[i]);
		if (err)
			printf("%s: inode %" PRIu64 " (directory): removing the entry to inode %"
			       PRIu64 " failed: %s\n", f->image, f->dfixes[i].dir,
			       f->dfixes[i].child, fsck_errstr(err));
	}
	if (!err && f->nlostinos) {
		err = get_lpf(f, lm, &lpf);
		if (!err)
			err = rlfs_iget(lm, lpf, &lp);
		if (!err && !S_ISDIR(lp->mode))
			err = -ENOTDIR;
		if (err)
			printf("%s: /%s: %s\n", f->image, FSCK_LPF_NAME, fsck_errstr(err));
	}
	for (size_t i = 0; i < f->nlostinos && !err; i++) {
		err = link_lost(f, lm, lp, &f->lostinos[i]);
		if (err)
			printf("%s: inode %" PRIu64 ": linking it into /%s failed: %s\n", f->image,
			       f->lostinos[i].ino, FSCK_LPF_NAME, fsck_errstr(err));
	}
	if (lp)
		rlfs_irele(lp);
	err2 = rlfs_mount_close(lm);
	return err ? err : err2;
}

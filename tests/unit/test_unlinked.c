/*
 * test_unlinked.c: the AG unlinked lists (lib/iunlink.c, SPEC section 5).
 *
 * An inode whose link count reaches 0 while it is open is on its AG's
 * unlinked list until it is freed; after a crash the next read-write mount
 * frees what the lists hold.  The crash is simulated as in test_busy.c: a
 * copy of the image taken while still mounted (after a sync, so that the
 * unlink is on disk) is what a kill -9 of the daemon leaves.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "reflinkfs/fs.h"

#include "alloc.h"
#include "ialloc.h"
#include "rmap.h"
#include "trans.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define DATA_BYTES (1 * MiB)

static uint64_t bfree(struct rlfs_mount *mp)
{
	struct statvfs sv;
	assert_int_equal(rlfs_statfs(mp, &sv), 0);
	return sv.f_bfree;
}

/* A file created, written, kept open (lookup count 1) and unlinked. */
static uint64_t open_unlinked(struct rlfs_mount *mp, const char *name, size_t bytes)
{
	struct stat st;
	assert_int_equal(rlfs_mknod(mp, rlfs_root_ino(mp), name, S_IFREG | 0644, 0, 0, 0, &st), 0);
	tu_fill(mp, st.st_ino, 0x5a, bytes);
	assert_int_equal(rlfs_unlink(mp, rlfs_root_ino(mp), name), 0);
	return st.st_ino;
}

/* A fresh filesystem with one small named file (so that the root directory
 * has its blocks and the first inode chunk exists before the baseline). */
static void setup(struct tu_fs *fs, uint32_t agcount)
{
	struct stat st;
	tu_mkfs_mount(fs, 64 * MiB, 4096, agcount);
	assert_int_equal(rlfs_mknod(fs->mp, rlfs_root_ino(fs->mp), "keep", S_IFREG | 0644, 0, 0,
				    0, &st), 0);
	tu_fill(fs->mp, st.st_ino, 0x11, 8 * KiB);
	rlfs_forget(fs->mp, st.st_ino, 1);
	assert_int_equal(rlfs_sync(fs->mp), 0);
}

/* Copy the image as it is now: what a kill -9 leaves. */
static void crash_copy(struct tu_fs *fs, char *copy, size_t len)
{
	assert_int_equal(rlfs_sync(fs->mp), 0);
	tu_crash_copy(fs, ".crash", copy, len);
}

/* Mount the crash copy read-write: the listed inodes are freed; those in
 * gone[] must not exist any more, free space must be back to want_free. */
static void check_copy(const char *copy, const uint64_t *gone, size_t ngone, uint64_t want_free)
{
	struct rlfs_mount *cmp;
	struct stat st;
	assert_int_equal(rlfs_mount_open(copy, RLFS_MOUNT_NOLOCK, &cmp), 0);
	for (size_t i = 0; i < ngone; i++)
		assert_int_equal(rlfs_getattr(cmp, gone[i], &st), -ENOENT);
	assert_int_equal(bfree(cmp), want_free);
	assert_int_equal(rlfs_mount_close(cmp), 0);
	assert_int_equal(tu_fsck(copy, 0), 0);
}

static void test_open_unlinked_crash(void **state)
{
	(void)state;
	struct tu_fs fs;
	char copy[96];
	setup(&fs, 1);
	uint64_t before = bfree(fs.mp);
	uint64_t ino = open_unlinked(fs.mp, "f", DATA_BYTES);
	assert_true(bfree(fs.mp) < before);
	crash_copy(&fs, copy, sizeof(copy));
	/* fsck -n stops at a log that needs replay, so its view of the list
	 * is checked on a copy with everything in place: remounted read-only
	 * while the file is still held (it stays on the list) */
	char ro_copy[96];
	assert_int_equal(rlfs_mount_set_rdonly(fs.mp, true), 0);
	tu_crash_copy(&fs, ".ro", ro_copy, sizeof(ro_copy));
	tu_unmount(&fs);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "%s fsck -n %s > %s.out 2>&1", tu_fsck_bin(), ro_copy, copy);
	assert_true(system(cmd) != -1);
	snprintf(cmd, sizeof(cmd), "grep -q 'on the unlinked lists (not an error)' %s.out", copy);
	assert_int_equal(system(cmd), 0);       /* fsck saw the list ... */
	snprintf(cmd, sizeof(cmd), "grep -q 'orphan' %s.out", copy);
	assert_int_not_equal(system(cmd), 0);   /* ... and no orphan */
	snprintf(cmd, sizeof(cmd), "%s.out", copy);
	unlink(cmd);
	unlink(ro_copy);
	check_copy(copy, &ino, 1, before);
	unlink(copy);
}

static void test_tmpfile_crash(void **state)
{
	(void)state;
	struct tu_fs fs;
	struct stat st;
	char copy[96];
	setup(&fs, 1);
	uint64_t before = bfree(fs.mp);
	assert_int_equal(rlfs_tmpfile(fs.mp, rlfs_root_ino(fs.mp), 0600, 0, 0, 0, &st), 0);
	tu_fill(fs.mp, st.st_ino, 0x77, DATA_BYTES);
	crash_copy(&fs, copy, sizeof(copy));
	tu_unmount(&fs);
	check_copy(copy, (uint64_t *)&st.st_ino, 1, before);
	unlink(copy);
}

static void test_tmpfile_linked_crash(void **state)
{
	(void)state;
	struct tu_fs fs;
	struct stat st, lst;
	char copy[96];
	setup(&fs, 1);
	assert_int_equal(rlfs_tmpfile(fs.mp, rlfs_root_ino(fs.mp), 0600, 0, 0, 0, &st), 0);
	tu_fill(fs.mp, st.st_ino, 0x77, DATA_BYTES);
	assert_int_equal(rlfs_link(fs.mp, st.st_ino, rlfs_root_ino(fs.mp), "named", &lst), 0);
	assert_int_equal(lst.st_nlink, 1);
	crash_copy(&fs, copy, sizeof(copy));
	uint64_t used_free = bfree(fs.mp);
	rlfs_forget(fs.mp, st.st_ino, 2);
	tu_unmount(&fs);

	struct rlfs_mount *cmp;
	assert_int_equal(rlfs_mount_open(copy, RLFS_MOUNT_NOLOCK, &cmp), 0);
	assert_int_equal(rlfs_getattr(cmp, st.st_ino, &lst), 0);
	assert_int_equal(lst.st_nlink, 1);
	assert_int_equal(lst.st_size, DATA_BYTES);
	uint8_t buf[4096];
	assert_int_equal(rlfs_read(cmp, st.st_ino, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(buf[0], 0x77);
	assert_int_equal(bfree(cmp), used_free);
	assert_int_equal(rlfs_mount_close(cmp), 0);
	assert_int_equal(tu_fsck(copy, 0), 0);
	unlink(copy);
}

/* Many open-unlinked files, some closed (freed: removal from the head, the
 * middle and the tail of the list), more unlinked after; the list stays
 * consistent: fsck clean after a crash copy's mount and after unmount. */
static void test_many_unlinked(void **state)
{
	(void)state;
	enum { N = 48 };
	struct tu_fs fs;
	char copy[96], name[32];
	uint64_t ino[N + 8];
	setup(&fs, 2);
	uint64_t before = bfree(fs.mp);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "u%d", i);
		ino[i] = open_unlinked(fs.mp, name, (size_t)(4 + i % 5) * 4096);
	}
	/* close: every third one, the newest (head) and the oldest (tail) */
	for (int i = 0; i < N; i++)
		if (i % 3 == 1 || i == 0 || i == N - 1)
			rlfs_forget(fs.mp, ino[i], 1);
	for (int i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "v%d", i);
		ino[N + i] = open_unlinked(fs.mp, name, 4096);
	}
	for (int i = 0; i < 8; i += 2)
		rlfs_forget(fs.mp, ino[N + i], 1);
	crash_copy(&fs, copy, sizeof(copy));
	tu_unmount(&fs);        /* frees the rest */

	check_copy(copy, ino, N + 8, before);
	unlink(copy);
}

/* A read-only mount leaves the list alone; remount read-write frees. */
static void test_rdonly_then_rw(void **state)
{
	(void)state;
	struct tu_fs fs;
	char copy[96];
	setup(&fs, 1);
	uint64_t before = bfree(fs.mp);
	uint64_t ino = open_unlinked(fs.mp, "f", DATA_BYTES);
	crash_copy(&fs, copy, sizeof(copy));
	tu_unmount(&fs);

	struct rlfs_mount *cmp;
	assert_int_equal(rlfs_mount_open(copy, RLFS_MOUNT_NOLOCK | RLFS_MOUNT_RDONLY, &cmp), 0);
	assert_true(bfree(cmp) < before);
	assert_int_equal(rlfs_mount_set_rdonly(cmp, false), 0);
	assert_int_equal(bfree(cmp), before);
	assert_int_equal(rlfs_mount_close(cmp), 0);
	assert_int_equal(tu_fsck(copy, 0), 0);
	check_copy(copy, &ino, 1, before);
	unlink(copy);
}

/* fsck repair frees the listed inodes as the mount would. */
static void test_fsck_repair_frees(void **state)
{
	(void)state;
	struct tu_fs fs;
	char copy[96];
	setup(&fs, 1);
	uint64_t before = bfree(fs.mp);
	uint64_t ino = open_unlinked(fs.mp, "f", DATA_BYTES);
	crash_copy(&fs, copy, sizeof(copy));
	tu_unmount(&fs);
	assert_int_equal(tu_fsck_repair(copy), 1);      /* it freed something */
	assert_int_equal(tu_fsck(copy, 0), 0);
	/* freed by fsck, not by a mount: a read-only mount frees nothing */
	struct rlfs_mount *cmp;
	struct stat st;
	assert_int_equal(rlfs_mount_open(copy, RLFS_MOUNT_NOLOCK | RLFS_MOUNT_RDONLY, &cmp), 0);
	assert_int_equal(rlfs_getattr(cmp, ino, &st), -ENOENT);
	assert_int_equal(bfree(cmp), before);
	assert_int_equal(rlfs_mount_close(cmp), 0);
	check_copy(copy, &ino, 1, before);
	unlink(copy);
}

/* Point inode ino's next_unlinked at next on the unmounted image (raw,
 * crc fixed): damage an unlinked list. */
static void set_next_unlinked(const char *img, uint32_t blocksize, uint32_t inodesize,
			      uint64_t ino, uint64_t next)
{
	FILE *fp = fopen(img, "r+b");
	assert_non_null(fp);
	uint32_t inopb = blocksize / inodesize;
	long off = (long)((ino / inopb) * blocksize + (ino % inopb) * inodesize);
	uint8_t *buf = malloc(inodesize);
	assert_non_null(buf);
	assert_int_equal(fseek(fp, off, SEEK_SET), 0);
	assert_int_equal(fread(buf, 1, inodesize, fp), inodesize);
	struct rlfs_dinode *dip = (struct rlfs_dinode *)buf;
	assert_int_equal(rlfs_get64(dip->ino), ino);
	rlfs_put64(dip->next_unlinked, next);
	rlfs_cksum_update(buf, inodesize, offsetof(struct rlfs_dinode, crc));
	assert_int_equal(fseek(fp, off, SEEK_SET), 0);
	assert_int_equal(fwrite(buf, 1, inodesize, fp), inodesize);
	free(buf);
	assert_int_equal(fclose(fp), 0);
}

/* A broken list (a member points at a free inode): fsck -n reports it
 * (exit 4), a mount frees what it can and says to run fsck, repair empties
 * the list and frees the members as orphans; then everything is clean and
 * the space is back.  No log, so that the crash copy is all in place. */
static void test_broken_list(void **state)
{
	(void)state;
	struct tu_fs fs;
	struct stat st;
	char copy[96], copy2[128], cmd[600];
	uint64_t ino[3];
	tu_mkfs_log = -1;
	setup(&fs, 1);
	tu_mkfs_log = 0;
	uint64_t before = bfree(fs.mp);
	for (int i = 0; i < 3; i++) {
		char name[16];
		snprintf(name, sizeof(name), "u%d", i);
		ino[i] = open_unlinked(fs.mp, name, 64 * KiB);
	}
	/* a free inode number: created, then freed */
	assert_int_equal(rlfs_mknod(fs.mp, rlfs_root_ino(fs.mp), "x", S_IFREG | 0644, 0, 0, 0,
				    &st), 0);
	assert_int_equal(rlfs_unlink(fs.mp, rlfs_root_ino(fs.mp), "x"), 0);
	rlfs_forget(fs.mp, st.st_ino, 1);
	uint32_t bs = fs.mp->blocksize, isz = fs.mp->inodesize;
	crash_copy(&fs, copy, sizeof(copy));
	tu_unmount(&fs);
	/* ino[2] is the head (the last one unlinked) */
	set_next_unlinked(copy, bs, isz, ino[2], st.st_ino);
	snprintf(copy2, sizeof(copy2), "%s.2", copy);
	snprintf(cmd, sizeof(cmd), "cp --sparse=always %s %s", copy, copy2);
	assert_int_equal(system(cmd), 0);

	snprintf(cmd, sizeof(cmd), "%s fsck -n %s 2>&1 | grep -q 'unlinked list broken'",
		 tu_fsck_bin(), copy);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(tu_fsck(copy, 4), 4);
	assert_int_equal(tu_fsck_repair(copy), 1);
	assert_int_equal(tu_fsck(copy, 0), 0);
	check_copy(copy, ino, 3, before);

	/* the mount frees the head, stops at the free inode, goes on */
	struct rlfs_mount *cmp;
	assert_int_equal(rlfs_mount_open(copy2, RLFS_MOUNT_NOLOCK, &cmp), 0);
	assert_int_equal(rlfs_getattr(cmp, ino[2], &st), -ENOENT);
	assert_int_equal(rlfs_mount_close(cmp), 0);
	int rc = tu_fsck_repair(copy2);
	assert_true(rc == 1);
	assert_int_equal(tu_fsck(copy2, 0), 0);
	check_copy(copy2, ino, 3, before);
	unlink(copy);
	unlink(copy2);
}

/*
 * An inode's number is freed only after everything queued for its blocks
 * is done.  A checker thread takes the metadata lock whenever the
 * inactivation's chain rolls (rlfs_trans_yield lets a waiter in) and
 * looks: is the number free in the inobt while the rmap still has a
 * record of that owner?  A create in that window takes the number and its
 * first clone meets the old owner's records (29-clone-kill: "map ...
 * already maps it").  The inactivation must free the number last.
 */
struct owner_watch {
	struct rlfs_mount *mp;
	uint64_t ino;
	volatile bool stop;
	unsigned looks, bad;
};

static int owner_rec_fn(struct rlfs_btree_cur *cur, const struct rlfs_rmap_irec *r, void *priv)
{
	(void)cur;
	struct owner_watch *w = priv;
	if (r->owner == w->ino)
		return 1;   /* found: stop the query */
	return 0;
}

static void *owner_watch_fn(void *arg)
{
	struct owner_watch *w = arg;
	struct rlfs_mount *mp = w->mp;
	while (!w->stop) {
		struct rlfs_trans *tp;
		if (rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp))
			break;
		bool inuse = true;
		if (rlfs_ialloc_check(tp, w->ino, &inuse) == 0 && !inuse) {
			for (uint32_t agno = 0; agno < mp->agcount; agno++) {
				struct rlfs_buf *agbp;
				if (rlfs_ag_read_header(tp, agno, &agbp))
					continue;
				struct rlfs_btree_cur cur;
				struct rlfs_rmap_irec lo = { 0 }, hi = { .startblock = UINT32_MAX,
								       .owner = UINT64_MAX };
				rlfs_rmap_cur_init(&cur, tp, agno, agbp);
				int found = rlfs_rmap_query_range(&cur, &lo, &hi, owner_rec_fn, w);
				rlfs_btree_cur_del(&cur);
				rlfs_trans_brelse(tp, agbp);
				if (found == 1) {
					w->bad++;
					break;
				}
			}
		}
		w->looks++;
		rlfs_trans_cancel(tp);
		usleep(50);
	}
	return NULL;
}

static void test_number_freed_last(void **state)
{
	(void)state;
	struct tu_fs fs;
	setup(&fs, 2);
	struct rlfs_mount *mp = fs.mp;
	assert_true(rlfs_has_rmap(mp));
	/* a fragmented file: rolled unmaps, then the last batch's steps */
	uint64_t ino = tu_frag_file(mp, "frag", 300);
	assert_int_equal(rlfs_unlink(mp, rlfs_root_ino(mp), "frag"), 0);
	struct owner_watch w = { .mp = mp, .ino = ino };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, owner_watch_fn, &w), 0);
	while (w.looks < 2)
		usleep(100);
	rlfs_forget(mp, ino, 1);   /* the last reference: inactivation */
	w.stop = true;
	pthread_join(th, NULL);
	print_message("%u looks, %u with the number free and an rmap record of it\n", w.looks,
		      w.bad);
	assert_int_equal(w.bad, 0);
	assert_int_equal(rlfs_sync(mp), 0);
	tu_unmount(&fs);
}

/* statfs right after rm (rlfs_inactive_begin/end/wait): a FORGET the daemon
 * has read but not finished keeps rlfs_inactive_wait waiting, so the free
 * count it then reads includes the unlinked file's blocks (23-cp-tree's
 * "leak" when the FORGET thread was still freeing).  The freeing thread
 * starts 100 ms late: a wait that returned at once would see fewer free
 * blocks.  Then the free of an unlinked inode's last reference, with no
 * FORGET counted, must count itself. */
struct late_forget {
	struct rlfs_mount *mp;
	uint64_t ino;
	struct rlfs_inactive_ticket t;
};

static void *late_forget_fn(void *arg)
{
	struct late_forget *lf = arg;
	usleep(100 * 1000);
	rlfs_forget(lf->mp, lf->ino, 1);
	rlfs_inactive_end(lf->mp, &lf->t);
	return NULL;
}

/* A FORGET read after statfs began (its ticket taken 50 ms in) that takes
 * 3 s, while the one statfs waits for ends at 100 ms. */
struct two_forgets {
	struct rlfs_mount *mp;
	struct rlfs_inactive_ticket *old;
	struct rlfs_inactive_ticket newer;
};

static void *two_forgets_fn(void *arg)
{
	struct two_forgets *tf = arg;
	usleep(50 * 1000);
	rlfs_inactive_begin(tf->mp, &tf->newer);
	usleep(50 * 1000);
	rlfs_inactive_end(tf->mp, tf->old);
	usleep(3000 * 1000);
	rlfs_inactive_end(tf->mp, &tf->newer);
	return NULL;
}

static void *forget_fn(void *arg)
{
	struct late_forget *lf = arg;
	rlfs_forget(lf->mp, lf->ino, 1);
	return NULL;
}

static void test_inactive_wait(void **state)
{
	(void)state;
	struct tu_fs fs;
	setup(&fs, 2);
	struct rlfs_mount *mp = fs.mp;
	uint64_t before = bfree(mp);
	assert_true(rlfs_inactive_wait(mp, 0));     /* nothing pending */

	/* a pending FORGET that never ends: the wait gives up */
	struct rlfs_inactive_ticket t0;
	rlfs_inactive_begin(mp, &t0);
	assert_false(rlfs_inactive_wait(mp, 50));
	rlfs_inactive_end(mp, &t0);
	assert_true(rlfs_inactive_wait(mp, 0));

	/* only tickets taken before the wait hold it up: it returns when
	 * the old one ends (100 ms), not when the newer one does (3.1 s) */
	struct two_forgets tf = { .mp = mp, .old = &t0 };
	rlfs_inactive_begin(mp, &t0);
	pthread_t th;
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(pthread_create(&th, NULL, two_forgets_fn, &tf), 0);
	assert_true(rlfs_inactive_wait(mp, 2000));
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_true(b.tv_sec - a.tv_sec < 2);
	assert_false(rlfs_inactive_wait(mp, 0));    /* the newer one is still pending */
	pthread_join(th, NULL);
	assert_true(rlfs_inactive_wait(mp, 0));

	struct late_forget lf = { .mp = mp };
	lf.ino = open_unlinked(mp, "big", 4 * DATA_BYTES);
	assert_true(bfree(mp) + 4 * DATA_BYTES / 4096 <= before);
	rlfs_inactive_begin(mp, &lf.t);    /* as rlfs_process_buf on reading FORGET */
	assert_int_equal(pthread_create(&th, NULL, late_forget_fn, &lf), 0);
	assert_true(rlfs_inactive_wait(mp, 10000));
	assert_int_equal(bfree(mp), before);
	pthread_join(th, NULL);

	/* no FORGET counted: the free counts itself.  meta_lock held here
	 * stops it in its first transaction, after it has counted itself. */
	lf.ino = open_unlinked(mp, "big2", 4 * DATA_BYTES);
	rlfs_meta_lock(mp);
	assert_int_equal(pthread_create(&th, NULL, forget_fn, &lf), 0);
	bool seen = false;
	for (int i = 0; i < 5000 && !seen; i++) {
		pthread_mutex_lock(&mp->icache_lock);
		seen = mp->inactive_head != NULL;
		pthread_mutex_unlock(&mp->icache_lock);
		if (!seen)
			usleep(1000);
	}
	pthread_mutex_unlock(&mp->meta_lock);
	assert_true(seen);
	assert_true(rlfs_inactive_wait(mp, 10000));
	assert_int_equal(bfree(mp), before);
	pthread_join(th, NULL);
	tu_unmount(&fs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_unlinked_crash),
		cmocka_unit_test(test_tmpfile_crash),
		cmocka_unit_test(test_tmpfile_linked_crash),
		cmocka_unit_test(test_many_unlinked),
		cmocka_unit_test(test_rdonly_then_rw),
		cmocka_unit_test(test_fsck_repair_frees),
		cmocka_unit_test(test_broken_list),
		cmocka_unit_test(test_number_freed_last),
		cmocka_unit_test(test_inactive_wait),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * iunlink.h: the per-AG unlinked lists (docs/SPEC.md section 5).
 *
 * An inode whose link count reaches 0 while it is still in use goes at the
 * head of its AG's list (rlfs_agh.unlinked, chained through
 * rlfs_dinode.next_unlinked) in the transaction that drops the last link;
 * it leaves the list in the transaction that frees it or links it again.
 * After a crash the members are exactly the inodes to free; the next
 * read-write mount frees them (rlfs_iunlink_recover).
 *
 * Removal needs the predecessor: an in-core index per AG maps each member
 * to its predecessor (0 = the head).  It is built from disk on first use in
 * a transaction, kept up to date by insert and remove, and thrown away when
 * a transaction that changed a list is cancelled (the buffers go back to
 * their before-images; the index is rebuilt from them when next needed).
 * All of it is under mp->meta_lock (only ever used inside transactions).
 *
 * Model: xfs_inode.c xfs_iunlink / xfs_iunlink_remove with the in-core
 * i_prev_unlinked of XFS 6.x, xfs_log_recover.c xlog_recover_process_iunlinks;
 * one bucket per AG instead of 64.
 */
#ifndef RLFS_IUNLINK_H
#define RLFS_IUNLINK_H
#include "trans.h"

struct rlfs_inode;

/* Whether ino may appear on AG agno's list (head or next pointer): a
 * number of an inode slot in a block of that AG past the AGFL.  The AG
 * header and inode cluster verifiers use it. */
bool rlfs_iunlink_ino_ok(const struct rlfs_mount *mp, uint32_t agno, uint64_t ino);

/*
 * ip's link count has just been set to 0 in tp (unlink, rmdir, rename over
 * it, O_TMPFILE creation): put it at the head of its AG's list.  Logs the
 * AG header and ip's cluster buffer.  0; -EUCLEAN (the list is damaged, or
 * ip is on it already); -ENOMEM; buffer read errors.  On error the caller
 * cancels tp.
 */
int rlfs_iunlink(struct rlfs_trans *tp, struct rlfs_inode *ip);

/*
 * Take inode ino off its AG's list, if it is on it (*listed says whether it
 * was; NULL allowed): it is being freed (rlfs_inode_inactivate, before
 * ifree) or linked again (linkat of an O_TMPFILE inode).  Logs the AG
 * header or the predecessor's cluster buffer, and ino's.  0; -EUCLEAN;
 * -ENOMEM; buffer read errors.
 */
int rlfs_iunlink_remove(struct rlfs_trans *tp, uint64_t ino, bool *listed);

/*
 * Mount (read-write, after log recovery) and remount read-write of a mount
 * that was read-only from the start: free every inode left on the lists by
 * a crash (rlfs_inode_free_orphan, which takes each off its list in the
 * transaction that frees it).  Each inode is freed in its own transactions,
 * so a crash in the middle leaves the rest listed for the next mount.  Runs
 * once per mount; a no-op on a read-only mount.  *freed (may be NULL):
 * inodes freed.  0 or the first error (the rest of that AG's list is left
 * for fsck; the other AGs are still processed).
 */
int rlfs_iunlink_recover(struct rlfs_mount *mp, uint64_t *freed);

/* Unmount: free the in-core index (rlfs_mount_free_bare). */
void rlfs_iunlink_destroy(struct rlfs_mount *mp);
#endif

/*
 * dir.h: directories.  A directory's entries live in a btree rooted at
 * ip->root (format BTREE; format NONE while empty), records struct
 * rlfs_dir_rec keyed by (hash, seq): hash = rlfs_dirhash(name), seq picks
 * the first free value among names sharing a hash.  Lookup is O(log n).
 * "." and ".." are not stored ("..": ip->parent).
 * A readdir cookie is the key (hash << 32 | seq) of the next entry, plus
 * small reserved values for "." (0) and ".." (1) handled in namei.c: an
 * entry's cookie never changes while it exists, so cookies stay valid
 * while the directory changes (entries added concurrently may or may not
 * be seen, as POSIX allows).  Caller holds the dir's iolock.
 */
#ifndef RLFS_DIR_H
#define RLFS_DIR_H
#include "inode.h"

extern const struct rlfs_btree_ops rlfs_dirbt_ops;

uint32_t rlfs_dirhash(const char *name, size_t len);
uint8_t rlfs_mode_to_ftype(uint32_t mode);
/* Blocks to reserve for one add/remove. */
uint32_t rlfs_dir_res(struct rlfs_inode *dp);

/* 0 with *ino, *ftype; -ENOENT. */
int rlfs_dir_lookup(struct rlfs_trans *tp, struct rlfs_inode *dp, const char *name,
		    size_t len, uint64_t *ino, uint8_t *ftype);
/* -EEXIST if the name is there. */
int rlfs_dir_add(struct rlfs_trans *tp, struct rlfs_inode *dp, const char *name,
		 size_t len, uint64_t ino, uint8_t ftype);
/* -ENOENT; *ino gets the removed entry's inode. */
int rlfs_dir_remove(struct rlfs_trans *tp, struct rlfs_inode *dp, const char *name,
		    size_t len, uint64_t *ino);
/* Point an existing name at another inode; *old_ino gets the previous one. */
int rlfs_dir_replace(struct rlfs_trans *tp, struct rlfs_inode *dp, const char *name,
		     size_t len, uint64_t ino, uint8_t ftype, uint64_t *old_ino);
/* Entries with key >= cookie in key order; fn returns nonzero to stop (e.g.
 * reply buffer full: that entry is not consumed).  next_cookie is the
 * cookie to resume after this entry. */
typedef int (*rlfs_dir_fn)(void *priv, const char *name, size_t len, uint64_t ino,
			   uint8_t ftype, uint64_t next_cookie);
int rlfs_dir_iterate(struct rlfs_trans *tp, struct rlfs_inode *dp, uint64_t cookie,
		     rlfs_dir_fn fn, void *priv);
/* true if no entries (ignoring . and ..). */
int rlfs_dir_isempty(struct rlfs_trans *tp, struct rlfs_inode *dp, bool *empty);
/* Free the (empty) tree's blocks. */
int rlfs_dir_destroy(struct rlfs_trans *tp, struct rlfs_inode *dp);
#endif

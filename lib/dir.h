/*
 * dir.h: directories.  A directory's entries live in a btree rooted at
 * ip->root (format BTREE; format NONE while empty), records struct
 * rlfs_dir_rec keyed by (hash, seq): hash = rlfs_dirhash(name), seq picks
 * the first free value among names sharing a hash.  Lookup is O(log n).
 * "." and ".." are not stored ("..": ip->parent).
 * Readdir resumes at "the first entry whose key >= cookie"; the cookie
 * handed out after an entry is its key (hash << 32 | seq) + 1, and small
 * reserved values stand for "." (0), ".." (1) and the first entry (2),
 * handled in namei.c.  An entry's key never changes while it exists, so
 * cookies stay valid while the directory changes: an entry present for
 * the whole readdir is returned exactly once (entries added or removed
 * meanwhile may or may not be seen, as POSIX allows).  An empty directory
 * owns no blocks (format NONE).  Caller holds the dir's iolock.
 */
#ifndef RLFS_DIR_H
#define RLFS_DIR_H
#include "inode.h"

extern const struct rlfs_btree_ops rlfs_dirbt_ops;
extern const struct rlfs_buf_ops rlfs_dirbt_buf_ops; /* dir btree blocks */

/*
 * Readdir cookies (namei.c / dir.c): 0 = ".", 1 = "..", 2 = first entry;
 * an entry's resume cookie is its key + 1 (keys are >= 2^32 because the
 * hash is never 0); RLFS_DIR_COOKIE_EOF (INT64_MAX, larger than any key + 1)
 * means "nothing left".  All fit in a non-negative off_t.
 */
#define RLFS_DIR_COOKIE_DOT     0ull
#define RLFS_DIR_COOKIE_DOTDOT  1ull
#define RLFS_DIR_COOKIE_FIRST   2ull
#define RLFS_DIR_COOKIE_EOF     0x7fffffffffffffffull

/*
 * Name hash (on-disk format, also for xattr names): FNV-1a 32 over the
 * bytes, murmur3 fmix32 finaliser, low 31 bits, 0 replaced by 1.
 * rlfs_namehash_mask (default 0x7fffffff) is ANDed in before the 0 -> 1
 * step: a TEST HOOK to force hash collisions; never change it while a
 * filesystem made with another value is mounted.
 */
extern uint32_t rlfs_namehash_mask;
uint32_t rlfs_dirhash(const char *name, size_t len);
/* init_key_from_rec of the trees keyed by (hash, seq): directory and xattr
 * records both start with le32 hash, le32 seq; the key is the le64
 * hash << 32 | seq (SPEC §10, §11). */
void rlfs_hashkey_from_rec(void *key, const void *rec);
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
/* Free the (empty) tree's blocks; the dir becomes format NONE.  No-op if
 * it has no tree.  The dir's blocks are counted out of dp->nblocks. */
int rlfs_dir_destroy(struct rlfs_trans *tp, struct rlfs_inode *dp);
/* Number of entries (walks the leaves; fsck, tests). */
int rlfs_dir_count(struct rlfs_trans *tp, struct rlfs_inode *dp, uint64_t *nentries);
/* Structural check of the dir tree (rlfs_btree_check): 0 / -EUCLEAN. */
int rlfs_dir_check(struct rlfs_trans *tp, struct rlfs_inode *dp);

/*
 * btree ops helpers shared by inode-rooted trees (dir, xattr): one block
 * NEAR hint (0 = near the inode) from rlfs_alloc_extent, counted in
 * cur->ip->nblocks; free gives it back; owner = cur->ip->ino.
 */
struct rlfs_btree_cur;
int rlfs_inode_tree_alloc_block(struct rlfs_btree_cur *cur, uint64_t hint_fsbno,
				uint64_t *fsbno);
int rlfs_inode_tree_free_block(struct rlfs_btree_cur *cur, uint64_t fsbno);
uint64_t rlfs_inode_tree_owner(struct rlfs_btree_cur *cur);
/*
 * The first block of an inode-rooted tree (ops: rlfs_dirbt_ops,
 * rlfs_attrbt_ops): allocated as rlfs_inode_tree_alloc_block does, set up
 * as an empty leaf owned by ip and logged in tp.  *fsbno is the block; the
 * caller makes it the root in the inode core.  0, or -ENOSPC, -EIO,
 * -ENOMEM from the allocation or the buffer.
 */
struct rlfs_btree_ops;
int rlfs_inode_tree_new_root(struct rlfs_trans *tp, struct rlfs_inode *ip,
			     const struct rlfs_btree_ops *ops, uint64_t *fsbno);
#endif

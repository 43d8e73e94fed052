/*
 * xattr.h: extended attributes.  Stored inline in the inode literal area
 * after forkoff (aformat LOCAL, packed struct rlfs_attr_sf_entry list) while
 * they fit; otherwise all move to an xattr btree at ip->aroot (aformat
 * BTREE, records struct rlfs_attr_rec keyed by (hash, seq)) whose values
 * longer than 64 bytes live in runs of remote blocks (struct
 * rlfs_remote_hdr each).  Names include their namespace prefix.  The
 * functions here store any name; the public rlfs_*xattr wrappers (fs.h)
 * accept only what XFS accepts, because FUSE passes every name through:
 * "user.", "trusted.", "security." + non-empty rest, and
 * "system.posix_acl_access"/"system.posix_acl_default" (opaque values);
 * others give -EOPNOTSUPP (ENOTSUP), a bare prefix -EINVAL.  Limits: name
 * 1..255 bytes, value 0..65536 bytes (Linux XATTR_SIZE_MAX).
 * Semantics as setxattr(2)/getxattr(2)/listxattr(2)/removexattr(2).
 */
#ifndef RLFS_XATTR_H
#define RLFS_XATTR_H
#include "inode.h"

extern const struct rlfs_btree_ops rlfs_attrbt_ops;
extern const struct rlfs_buf_ops rlfs_remote_buf_ops; /* remote value blocks (RATV) */
extern const struct rlfs_buf_ops rlfs_attrbt_buf_ops; /* xattr btree blocks */
/* Remote symlink target blocks: same layout as value blocks, magic
 * RLFS_SYMLNK_MAGIC, mapped through the symlink's data fork (namei.c). */
extern const struct rlfs_buf_ops rlfs_symlink_buf_ops;

/* Returns value length (if size 0: just the length), -ENODATA, -ERANGE
 * (buffer too small, or name not 1..255 bytes). */
int rlfs_xattr_get(struct rlfs_trans *tp, struct rlfs_inode *ip, const char *name,
		   void *value, size_t size);
/* flags: XATTR_CREATE (-EEXIST), XATTR_REPLACE (-ENODATA), both or
 * unknown bits -EINVAL; -ERANGE for a name not 1..255 bytes, -E2BIG for a
 * value > 65536 bytes (setxattr(2)), -ENOSPC.  Caller has joined ip. */
int rlfs_xattr_set(struct rlfs_trans *tp, struct rlfs_inode *ip, const char *name,
		   const void *value, size_t size, int flags);
int rlfs_xattr_remove(struct rlfs_trans *tp, struct rlfs_inode *ip, const char *name);
/* NUL-separated names; returns total length (size 0: just the length), -ERANGE. */
int rlfs_xattr_list(struct rlfs_trans *tp, struct rlfs_inode *ip, char *list, size_t size);
/* Blocks to reserve for a set of a value of vlen bytes. */
uint32_t rlfs_xattr_res(struct rlfs_inode *ip, size_t vlen);
/* Free all xattr blocks (inode being freed). */
int rlfs_xattr_destroy(struct rlfs_trans *tp, struct rlfs_inode *ip);
#endif

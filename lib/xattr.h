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
 * "system.posix_acl_access"/"system.posix_acl_default" (checked and kept
 * in step with the mode, see rlfs_acl_* below);
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

/*
 * POSIX ACLs (fs/posix_acl.c duties of a filesystem whose ACLs the kernel
 * enforces; the values are the kernel's xattr form).
 *
 * rlfs_acl_chmod: after ip's mode changed (chmod; ip joined to tp), give
 * its access ACL the new owner/group-class/other bits (posix_acl_chmod).
 * Rewrites the value in place: allocates nothing.  0 if ip has none.
 *
 * Creation (posix_acl_create): rlfs_acl_create_prep, with dp iolocked,
 * reads dp's default ACL (own read-only transaction) and either masks
 * *mode's permission bits with it (the new inode's access ACL, kept only
 * if it says more than the mode; a new directory also inherits the
 * default ACL) or, without one, applies umask.  Symlinks: nothing.  The
 * caller reserves rlfs_acl_create_res more blocks, stores the ACLs on the
 * new inode with rlfs_acl_create_apply in its transaction and frees an.
 * Errors: -ENOMEM, -EUCLEAN (malformed default ACL), I/O errors; apply:
 * those of rlfs_xattr_set.
 */
int rlfs_acl_chmod(struct rlfs_trans *tp, struct rlfs_inode *ip);
struct rlfs_acl_new {
	void *def, *acc;            /* default (new directory), access ACL, or NULL */
	size_t deflen, acclen;      /* bytes */
};
int rlfs_acl_create_prep(struct rlfs_inode *dp, uint32_t *mode, uint32_t umask,
			 struct rlfs_acl_new *an);
uint32_t rlfs_acl_create_res(struct rlfs_mount *mp, const struct rlfs_acl_new *an);
int rlfs_acl_create_apply(struct rlfs_trans *tp, struct rlfs_inode *ip,
			  const struct rlfs_acl_new *an);
void rlfs_acl_new_free(struct rlfs_acl_new *an);
#endif

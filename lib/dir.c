/*
 * dir.c: directory entries in a per-directory b+tree.
 *
 * A directory's entries are struct rlfs_dir_rec records in a btree rooted
 * at dp->root (height dp->root_level, format RLFS_FMT_BTREE).  An empty
 * directory has no blocks at all (format RLFS_FMT_NONE, root 0): the first
 * add creates a root leaf, and removing the last entry frees the tree.
 *
 * Key: one 64-bit value hash << 32 | seq, where hash = rlfs_dirhash(name)
 * and seq is the smallest value not used by another entry with the same
 * hash at the time the entry was added.  Lookup walks the records of one
 * hash comparing names, so it is O(log n) plus the (tiny) collision chain.
 *
 * Readdir cookies: the cookie to resume after an entry is its key + 1
 * ("first entry with key >= cookie").  Keys never change while an entry
 * exists, so a cookie handed out stays meaningful whatever is added or
 * removed: an entry present for the whole readdir is returned exactly once.
 * Because the hash is never 0 every key is >= 2^32, leaving cookies 0, 1
 * and 2 free for ".", ".." and "first real entry" (namei.c); because the
 * hash has 31 bits and seq < 0xffffffff, every cookie fits in a
 * non-negative off_t.
 *
 * Blocks come from rlfs_alloc_extent (NEAR the directory inode), owner =
 * directory ino, and are counted in dp->nblocks.
 * Model: xfs_dir2 (hashed names, "cookie = hash-ordered position"), with a
 * plain b+tree instead of XFS's block/leaf/node forms.
 */
#include <string.h>

#include "dir.h"
#include "alloc.h"
#include "btree.h"
#include "rmap.h"

/* Test hook (dir.h): masks the name hash to force collisions. */
uint32_t rlfs_namehash_mask = 0x7fffffffu;

/*
 * rlfs_dirhash: on-disk format.  32-bit FNV-1a over the name bytes, then
 * the murmur3 32-bit finaliser (fmix32) to spread the bits, then the low
 * 31 bits; a result of 0 is stored as 1.  The same function hashes xattr
 * names.
 */
uint32_t rlfs_dirhash(const char *name, size_t len)
{
	const uint8_t *p = (const uint8_t *)name;
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	h &= 0x7fffffffu & rlfs_namehash_mask;
	return h ? h : 1;
}

uint8_t rlfs_mode_to_ftype(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return RLFS_FT_REG;
	case S_IFDIR: return RLFS_FT_DIR;
	case S_IFCHR: return RLFS_FT_CHR;
	case S_IFBLK: return RLFS_FT_BLK;
	case S_IFIFO: return RLFS_FT_FIFO;
	case S_IFSOCK: return RLFS_FT_SOCK;
	case S_IFLNK: return RLFS_FT_LNK;
	default: return RLFS_FT_UNKNOWN;
	}
}

static inline uint64_t dir_key(uint32_t hash, uint32_t seq)
{
	return (uint64_t)hash << 32 | seq;
}

static uint64_t dirrec_key(const struct rlfs_dir_rec *r)
{
	return dir_key(rlfs_get32(r->hash), rlfs_get32(r->seq));
}

/* ---- btree ops ---- */

void rlfs_hashkey_from_rec(void *key, const void *rec)
{
	rlfs_le32 h, q;
	memcpy(&h, rec, sizeof(h));
	memcpy(&q, (const char *)rec + 4, sizeof(q));
	rlfs_le64 k = rlfs_le64_of(dir_key(rlfs_get32(h), rlfs_get32(q)));
	memcpy(key, &k, sizeof(k));
}

static int dirbt_verify_rec(struct rlfs_btree_cur *cur, const void *rec)
{
	const struct rlfs_dir_rec *r = rec;
	uint64_t where = cur->lev[0].bp ? cur->lev[0].bp->fsbno : 0;
	if (r->namelen == 0)
		return rlfs_corrupt(cur->mp, where, "dir entry", "dir ino %llu: empty name",
				    (unsigned long long)cur->ip->ino);
	if (r->ftype == RLFS_FT_UNKNOWN || r->ftype > RLFS_FT_LNK)
		return rlfs_corrupt(cur->mp, where, "dir entry", "dir ino %llu: bad ftype %u",
				    (unsigned long long)cur->ip->ino, r->ftype);
	if (rlfs_get64(r->ino) == 0)
		return rlfs_corrupt(cur->mp, where, "dir entry", "dir ino %llu: entry ino 0",
				    (unsigned long long)cur->ip->ino);
	if (memchr(r->name, '/', r->namelen) || memchr(r->name, 0, r->namelen))
		return rlfs_corrupt(cur->mp, where, "dir entry", "dir ino %llu: bad name byte",
				    (unsigned long long)cur->ip->ino);
	if (rlfs_dirhash((const char *)r->name, r->namelen) != rlfs_get32(r->hash))
		return rlfs_corrupt(cur->mp, where, "dir entry",
				    "dir ino %llu: hash 0x%x does not match name",
				    (unsigned long long)cur->ip->ino, rlfs_get32(r->hash));
	return 0;
}

static void dirbt_get_root(struct rlfs_btree_cur *cur, uint64_t *fsbno, unsigned *nlevels)
{
	*fsbno = cur->ip->root;
	*nlevels = cur->ip->root_level;
}

static void dirbt_set_root(struct rlfs_btree_cur *cur, uint64_t fsbno, unsigned nlevels)
{
	cur->ip->root = fsbno;
	cur->ip->root_level = (uint16_t)nlevels;
	rlfs_trans_log_inode(cur->tp, cur->ip);
}

/* The rmap offset of cur's tree blocks (rmap.h): a directory's are
 * data-fork btree blocks, an xattr tree's attr-fork ones. */
static uint64_t tree_rmap_offset(const struct rlfs_btree_cur *cur)
{
	return cur->ops == &rlfs_dirbt_ops ? RLFS_RMAP_DATA_META : RLFS_RMAP_ATTR_META;
}

/* Shared by the dir and xattr trees: one block NEAR hint (or the inode). */
static int inode_tree_alloc_block(struct rlfs_btree_cur *cur, uint64_t hint_fsbno,
				  uint64_t *fsbno)
{
	struct rlfs_alloc_arg args = {
		.tp = cur->tp,
		.type = RLFS_ALLOC_NEAR,
		.hint_fsbno = hint_fsbno ? hint_fsbno : rlfs_ino_to_fsb(cur->mp, cur->ip->ino),
		.minlen = 1,
		.maxlen = 1,
		.alignment = 1,
		.for_btree = true,
	};
	int error = rlfs_alloc_extent(&args);
	if (error)
		return error;
	if (!args.fsbno)
		return -ENOSPC;
	error = rlfs_rmap_update(cur->tp, RLFS_RUI_MAP, args.fsbno, 1, cur->ip->ino,
				 tree_rmap_offset(cur));
	if (error)
		return error;
	cur->ip->nblocks++;
	rlfs_trans_log_inode(cur->tp, cur->ip);
	*fsbno = args.fsbno;
	return 0;
}

static int inode_tree_free_block(struct rlfs_btree_cur *cur, uint64_t fsbno)
{
	int error = rlfs_rmap_update(cur->tp, RLFS_RUI_UNMAP, fsbno, 1, cur->ip->ino,
				     tree_rmap_offset(cur));
	if (!error)
		error = rlfs_free_extent(cur->tp, fsbno, 1);
	if (error)
		return error;
	if (cur->ip->nblocks)
		cur->ip->nblocks--;
	rlfs_trans_log_inode(cur->tp, cur->ip);
	return 0;
}

static uint64_t inode_tree_owner(struct rlfs_btree_cur *cur)
{
	return cur->ip->ino;
}

static int dirbt_buf_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	return rlfs_btree_verify_block(mp, bp, sizeof(struct rlfs_dir_rec), 8, false);
}

const struct rlfs_buf_ops rlfs_dirbt_buf_ops = {
	.name = "dirbt",
	.magic = RLFS_DIRBT_MAGIC,
	.has_hdr = true,
	.verify = dirbt_buf_verify,
};

const struct rlfs_btree_ops rlfs_dirbt_ops = {
	.name = "dirbt",
	.magic = RLFS_DIRBT_MAGIC,
	.rec_len = sizeof(struct rlfs_dir_rec),
	.key_len = 8,
	.overlapping = false,
	.buf_ops = &rlfs_dirbt_buf_ops,
	.init_key_from_rec = rlfs_hashkey_from_rec,
	.cmp_key = rlfs_btree_cmp_le64,
	.verify_rec = dirbt_verify_rec,
	.get_root = dirbt_get_root,
	.set_root = dirbt_set_root,
	.alloc_block = inode_tree_alloc_block,
	.free_block = inode_tree_free_block,
	.owner = inode_tree_owner,
};

/* The xattr tree uses the same block allocation (exported for xattr.c). */
int rlfs_inode_tree_alloc_block(struct rlfs_btree_cur *cur, uint64_t hint_fsbno,
				uint64_t *fsbno)
{
	return inode_tree_alloc_block(cur, hint_fsbno, fsbno);
}

int rlfs_inode_tree_free_block(struct rlfs_btree_cur *cur, uint64_t fsbno)
{
	return inode_tree_free_block(cur, fsbno);
}

uint64_t rlfs_inode_tree_owner(struct rlfs_btree_cur *cur)
{
	return cur->ip->ino;
}

/* ---- helpers ---- */

uint32_t rlfs_dir_res(struct rlfs_inode *dp)
{
	struct rlfs_mount *mp = dp->mp;
	/* a split at every level plus a new root, or the first root leaf */
	uint32_t levels = dp->format == RLFS_FMT_BTREE ? dp->root_level : 0;
	uint32_t blocks = levels + 2;
	return blocks + rlfs_alloc_tree_res(mp, blocks);
}

static int dir_check_dp(struct rlfs_inode *dp)
{
	if (dp->format == RLFS_FMT_NONE)
		return 0;
	if (dp->format != RLFS_FMT_BTREE || dp->root == 0 || dp->root_level == 0 ||
	    dp->root_level > RLFS_BTREE_MAXLEVELS)
		return rlfs_corrupt(dp->mp, dp->root, "dir inode",
				    "dir ino %llu: format %u root %llu level %u",
				    (unsigned long long)dp->ino, dp->format,
				    (unsigned long long)dp->root, dp->root_level);
	return 0;
}

/*
 * Position cur on the first record with key >= (hash, 0) and walk the
 * records of that hash.  Returns 1 with *rec and cursor on the matching
 * name, 0 if not found (then *free_seq is the first unused seq of that
 * hash), or a negative errno.
 */
static int dir_find(struct rlfs_btree_cur *cur, uint32_t hash, const char *name,
		    size_t len, struct rlfs_dir_rec *rec, uint32_t *free_seq)
{
	rlfs_le64 key = rlfs_le64_of(dir_key(hash, 0));
	uint32_t next_seq = 0;
	bool gap = false;
	int stat, error;

	error = rlfs_btree_lookup(cur, RLFS_LOOKUP_GE, &key, &stat);
	if (error)
		return error;
	while (stat) {
		error = rlfs_btree_get_rec(cur, rec, &stat);
		if (error)
			return error;
		if (!stat || rlfs_get32(rec->hash) != hash)
			break;
		if (rec->namelen == len && memcmp(rec->name, name, len) == 0)
			return 1;
		uint32_t seq = rlfs_get32(rec->seq);
		if (!gap) {
			if (seq == next_seq)
				next_seq++;
			else if (seq > next_seq)
				gap = true;
		}
		error = rlfs_btree_increment(cur, &stat);
		if (error)
			return error;
	}
	if (free_seq)
		*free_seq = next_seq;
	return 0;
}

static int dir_check_name(const char *name, size_t len)
{
	if (len == 0)
		return -EINVAL;
	if (len > RLFS_NAME_MAX)
		return -ENAMETOOLONG;
	return 0;
}

int rlfs_dir_lookup(struct rlfs_trans *tp, struct rlfs_inode *dp, const char *name,
		    size_t len, uint64_t *ino, uint8_t *ftype)
{
	struct rlfs_btree_cur cur;
	struct rlfs_dir_rec rec;
	int error = dir_check_name(name, len);
	if (error)
		return error;
	error = dir_check_dp(dp);
	if (error)
		return error;
	if (dp->format == RLFS_FMT_NONE)
		return -ENOENT;
	rlfs_btree_cur_init(&cur, tp, &rlfs_dirbt_ops, 0, dp, NULL);
	error = dir_find(&cur, rlfs_dirhash(name, len), name, len, &rec, NULL);
	rlfs_btree_cur_del(&cur);
	if (error < 0)
		return error;
	if (error == 0)
		return -ENOENT;
	if (ino)
		*ino = rlfs_get64(rec.ino);
	if (ftype)
		*ftype = rec.ftype;
	return 0;
}

int rlfs_inode_tree_new_root(struct rlfs_trans *tp, struct rlfs_inode *ip,
			     const struct rlfs_btree_ops *ops, uint64_t *fsbno)
{
	struct rlfs_btree_cur cur;
	struct rlfs_buf *bp;

	rlfs_btree_cur_init(&cur, tp, ops, 0, ip, NULL);
	int error = inode_tree_alloc_block(&cur, 0, fsbno);
	rlfs_btree_cur_del(&cur);
	if (error)
		return error;
	error = rlfs_trans_get_buf(tp, *fsbno, ops->buf_ops, ip->ino, &bp);
	if (error)
		return error;
	rlfs_btree_init_block(tp->mp, bp, ops, 0, ip->ino);
	rlfs_trans_log_buf(tp, bp);
	rlfs_trans_brelse(tp, bp);
	return 0;
}

/* Create the root leaf of an empty directory. */
static int dir_create_root(struct rlfs_trans *tp, struct rlfs_inode *dp)
{
	uint64_t fsbno;
	int error = rlfs_inode_tree_new_root(tp, dp, &rlfs_dirbt_ops, &fsbno);
	if (error)
		return error;
	dp->root = fsbno;
	dp->root_level = 1;
	dp->format = RLFS_FMT_BTREE;
	rlfs_trans_log_inode(tp, dp);
	return 0;
}

int rlfs_dir_add(struct rlfs_trans *tp, struct rlfs_inode *dp, const char *name,
		 size_t len, uint64_t ino, uint8_t ftype)
{
	struct rlfs_btree_cur cur;
	struct rlfs_dir_rec rec;
	uint32_t hash, seq = 0;
	int error = dir_check_name(name, len);
	if (error)
		return error;
	if (memchr(name, '/', len) || memchr(name, 0, len))
		return -EINVAL;
	if (ino == 0 || ftype == RLFS_FT_UNKNOWN || ftype > RLFS_FT_LNK)
		return -EINVAL;
	error = dir_check_dp(dp);
	if (error)
		return error;
	rlfs_trans_log_inode(tp, dp);
	if (dp->format == RLFS_FMT_NONE) {
		error = dir_create_root(tp, dp);
		if (error)
			return error;
	}
	hash = rlfs_dirhash(name, len);
	rlfs_btree_cur_init(&cur, tp, &rlfs_dirbt_ops, 0, dp, NULL);
	error = dir_find(&cur, hash, name, len, &rec, &seq);
	if (error > 0) {
		error = -EEXIST;
		goto out;
	}
	if (error < 0)
		goto out;
	if (seq == UINT32_MAX) {
		error = -ENOSPC; /* 2^32 - 1 names with one hash */
		goto out;
	}
	memset(&rec, 0, sizeof(rec));
	rlfs_put32(rec.hash, hash);
	rlfs_put32(rec.seq, seq);
	rlfs_put64(rec.ino, ino);
	rec.namelen = (uint8_t)len;
	rec.ftype = ftype;
	memcpy(rec.name, name, len);
	error = rlfs_btree_insert(&cur, &rec);
out:
	rlfs_btree_cur_del(&cur);
	return error;
}

/* Drop the tree of a directory whose last entry went away. */
static int dir_maybe_shrink(struct rlfs_trans *tp, struct rlfs_inode *dp)
{
	bool empty;
	int error = rlfs_dir_isempty(tp, dp, &empty);
	if (error || !empty)
		return error;
	return rlfs_dir_destroy(tp, dp);
}

int rlfs_dir_remove(struct rlfs_trans *tp, struct rlfs_inode *dp, const char *name,
		    size_t len, uint64_t *ino)
{
	struct rlfs_btree_cur cur;
	struct rlfs_dir_rec rec;
	int stat;
	int error = dir_check_name(name, len);
	if (error)
		return error;
	error = dir_check_dp(dp);
	if (error)
		return error;
	if (dp->format == RLFS_FMT_NONE)
		return -ENOENT;
	rlfs_trans_log_inode(tp, dp);
	rlfs_btree_cur_init(&cur, tp, &rlfs_dirbt_ops, 0, dp, NULL);
	error = dir_find(&cur, rlfs_dirhash(name, len), name, len, &rec, NULL);
	if (error == 0)
		error = -ENOENT;
	if (error < 0)
		goto out;
	error = rlfs_btree_delete(&cur, &stat);
	if (!error && !stat)
		error = rlfs_corrupt(tp->mp, dp->root, "dirbt",
				     "dir ino %llu: delete found no record",
				     (unsigned long long)dp->ino);
out:
	rlfs_btree_cur_del(&cur);
	if (error)
		return error;
	if (ino)
		*ino = rlfs_get64(rec.ino);
	return dir_maybe_shrink(tp, dp);
}

int rlfs_dir_replace(struct rlfs_trans *tp, struct rlfs_inode *dp, const char *name,
		     size_t len, uint64_t ino, uint8_t ftype, uint64_t *old_ino)
{
	struct rlfs_btree_cur cur;
	struct rlfs_dir_rec rec;
	int error = dir_check_name(name, len);
	if (error)
		return error;
	if (ino == 0 || ftype == RLFS_FT_UNKNOWN || ftype > RLFS_FT_LNK)
		return -EINVAL;
	error = dir_check_dp(dp);
	if (error)
		return error;
	if (dp->format == RLFS_FMT_NONE)
		return -ENOENT;
	rlfs_trans_log_inode(tp, dp);
	rlfs_btree_cur_init(&cur, tp, &rlfs_dirbt_ops, 0, dp, NULL);
	error = dir_find(&cur, rlfs_dirhash(name, len), name, len, &rec, NULL);
	if (error == 0)
		error = -ENOENT;
	if (error < 0)
		goto out;
	if (old_ino)
		*old_ino = rlfs_get64(rec.ino);
	rlfs_put64(rec.ino, ino);
	rec.ftype = ftype;
	error = rlfs_btree_update(&cur, &rec);
out:
	rlfs_btree_cur_del(&cur);
	return error;
}

int rlfs_dir_iterate(struct rlfs_trans *tp, struct rlfs_inode *dp, uint64_t cookie,
		     rlfs_dir_fn fn, void *priv)
{
	struct rlfs_btree_cur cur;
	struct rlfs_dir_rec rec;
	int stat, error;

	error = dir_check_dp(dp);
	if (error || dp->format == RLFS_FMT_NONE)
		return error;
	if (cookie >= RLFS_DIR_COOKIE_EOF)
		return 0;
	rlfs_btree_cur_init(&cur, tp, &rlfs_dirbt_ops, 0, dp, NULL);
	rlfs_le64 key = rlfs_le64_of(cookie);
	error = rlfs_btree_lookup(&cur, RLFS_LOOKUP_GE, &key, &stat);
	while (!error && stat) {
		error = rlfs_btree_get_rec(&cur, &rec, &stat);
		if (error || !stat)
			break;
		uint64_t k = dirrec_key(&rec);
		if (k < cookie) {
			error = rlfs_corrupt(tp->mp, dp->root, "dirbt",
					     "dir ino %llu: key order", (unsigned long long)dp->ino);
			break;
		}
		int ret = fn(priv, (const char *)rec.name, rec.namelen, rlfs_get64(rec.ino),
			     rec.ftype, k + 1);
		if (ret) {
			error = ret < 0 ? ret : 0;
			break;
		}
		error = rlfs_btree_increment(&cur, &stat);
	}
	rlfs_btree_cur_del(&cur);
	return error;
}

int rlfs_dir_isempty(struct rlfs_trans *tp, struct rlfs_inode *dp, bool *empty)
{
	struct rlfs_btree_cur cur;
	int stat, error;

	error = dir_check_dp(dp);
	if (error)
		return error;
	if (dp->format == RLFS_FMT_NONE) {
		*empty = true;
		return 0;
	}
	rlfs_btree_cur_init(&cur, tp, &rlfs_dirbt_ops, 0, dp, NULL);
	rlfs_le64 key = rlfs_le64_of(0);
	error = rlfs_btree_lookup(&cur, RLFS_LOOKUP_GE, &key, &stat);
	if (!error && stat) {
		struct rlfs_dir_rec rec;
		error = rlfs_btree_get_rec(&cur, &rec, &stat);
	}
	rlfs_btree_cur_del(&cur);
	if (!error)
		*empty = !stat;
	return error;
}

int rlfs_dir_destroy(struct rlfs_trans *tp, struct rlfs_inode *dp)
{
	struct rlfs_btree_cur cur;
	int error;

	if (dp->format != RLFS_FMT_BTREE || dp->root == 0)
		goto reset;
	error = dir_check_dp(dp);
	if (error)
		return error;
	rlfs_trans_log_inode(tp, dp);
	rlfs_btree_cur_init(&cur, tp, &rlfs_dirbt_ops, 0, dp, NULL);
	error = rlfs_btree_destroy(&cur);
	rlfs_btree_cur_del(&cur);
	if (error)
		return error;
reset:
	if (dp->format != RLFS_FMT_NONE || dp->root || dp->root_level) {
		rlfs_trans_log_inode(tp, dp);
		dp->format = RLFS_FMT_NONE;
		dp->root = 0;
		dp->root_level = 0;
	}
	return 0;
}

int rlfs_dir_count(struct rlfs_trans *tp, struct rlfs_inode *dp, uint64_t *nentries)
{
	struct rlfs_btree_cur cur;
	int error = dir_check_dp(dp);
	*nentries = 0;
	if (error || dp->format == RLFS_FMT_NONE)
		return error;
	rlfs_btree_cur_init(&cur, tp, &rlfs_dirbt_ops, 0, dp, NULL);
	error = rlfs_btree_count(&cur, nentries);
	rlfs_btree_cur_del(&cur);
	return error;
}

int rlfs_dir_check(struct rlfs_trans *tp, struct rlfs_inode *dp)
{
	struct rlfs_btree_cur cur;
	int error = dir_check_dp(dp);
	if (error || dp->format == RLFS_FMT_NONE)
		return error;
	rlfs_btree_cur_init(&cur, tp, &rlfs_dirbt_ops, 0, dp, NULL);
	error = rlfs_btree_check(&cur);
	rlfs_btree_cur_del(&cur);
	return error;
}

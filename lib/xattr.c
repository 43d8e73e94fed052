/*
 * xattr.c: extended attributes (see xattr.h for the layout) and the public
 * rlfs_getxattr/setxattr/listxattr/removexattr wrappers.
 *
 * Inline form (aformat LOCAL): the literal area from forkoff to its end
 * holds packed struct rlfs_attr_sf_entry headers, each followed by the name
 * and value bytes and padded to 4 bytes; a namelen of 0 or the end of the
 * area ends the list.  Every set rewrites the list; if the result does not
 * fit, every attribute moves to the btree form.  Directories and special
 * files, whose data fork never uses the literal area, get the whole area
 * (forkoff set to 0) when the default split is too small.
 *
 * Btree form (aformat BTREE): struct rlfs_attr_rec records keyed by
 * hash << 32 | seq (hash = rlfs_dirhash of the name, seq = first unused for
 * that hash, as in directories) in a tree rooted at ip->aroot.  Values of
 * at most 64 bytes sit in the record; longer ones in a run of contiguous
 * blocks at value_fsbno (struct rlfs_remote_hdr + blocksize - 64 payload
 * bytes each, magic RLFS_ATTRV_MAGIC, owner = ino).  When the last
 * attribute goes the tree is freed (aformat NONE).  The form never goes
 * back from btree to inline while attributes remain (like XFS leaf form).
 *
 * ip->acount counts the attributes in both forms.  Blocks (tree and value
 * runs) are counted in ip->nblocks.
 * Model: xfs_attr.c / xfs_attr_sf.h / xfs_attr_remote.c, simplified.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "reflinkfs/fs.h"
#include "reflinkfs/ioctl.h"
#include "alloc.h"
#include "btree.h"
#include "dir.h"
#include "rmap.h"
#include "xattr.h"

#define ATTR_INLINE_VALUE 64u

/* ---- remote blocks (xattr values, symlink targets) ---- */

static uint32_t remote_payload(struct rlfs_mount *mp)
{
	return mp->blocksize - (uint32_t)sizeof(struct rlfs_remote_hdr);
}

static int remote_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	const struct rlfs_remote_hdr *rh = bp->data;
	uint32_t payload = remote_payload(mp);
	uint32_t off = rlfs_get32(rh->offset), n = rlfs_get32(rh->bytes);
	if (n == 0 || n > payload || off % payload || off > RLFS_XATTR_SIZE_MAX ||
	    off + n > RLFS_XATTR_SIZE_MAX)
		return rlfs_corrupt(mp, bp->fsbno, bp->ops ? bp->ops->name : "remote",
				    "payload offset %u bytes %u", off, n);
	return 0;
}

const struct rlfs_buf_ops rlfs_remote_buf_ops = {
	.name = "xattr value",
	.magic = RLFS_ATTRV_MAGIC,
	.has_hdr = true,
	.verify = remote_verify,
};

const struct rlfs_buf_ops rlfs_symlink_buf_ops = {
	.name = "symlink",
	.magic = RLFS_SYMLNK_MAGIC,
	.has_hdr = true,
	.verify = remote_verify,
};

/* ---- attr btree ops ---- */

static uint64_t attr_key(uint32_t hash, uint32_t seq)
{
	return (uint64_t)hash << 32 | seq;
}



static int attrbt_verify_rec(struct rlfs_btree_cur *cur, const void *rec)
{
	const struct rlfs_attr_rec *r = rec;
	uint64_t where = cur->lev[0].bp ? cur->lev[0].bp->fsbno : 0;
	uint32_t vlen = rlfs_get32(r->valuelen);
	uint64_t vfsb = rlfs_get64(r->value_fsbno);
	if (r->namelen == 0)
		return rlfs_corrupt(cur->mp, where, "xattr", "ino %llu: empty name",
				    (unsigned long long)cur->ip->ino);
	if (vlen > RLFS_XATTR_SIZE_MAX || (vlen > ATTR_INLINE_VALUE) != (vfsb != 0) ||
	    vfsb >= cur->mp->dblocks)
		return rlfs_corrupt(cur->mp, where, "xattr",
				    "ino %llu: value length %u at block %llu",
				    (unsigned long long)cur->ip->ino, vlen,
				    (unsigned long long)vfsb);
	if (rlfs_dirhash((const char *)r->name, r->namelen) != rlfs_get32(r->hash))
		return rlfs_corrupt(cur->mp, where, "xattr",
				    "ino %llu: hash 0x%x does not match name",
				    (unsigned long long)cur->ip->ino, rlfs_get32(r->hash));
	return 0;
}

static void attrbt_get_root(struct rlfs_btree_cur *cur, uint64_t *fsbno, unsigned *nlevels)
{
	*fsbno = cur->ip->aroot;
	*nlevels = cur->ip->aroot_level;
}

static void attrbt_set_root(struct rlfs_btree_cur *cur, uint64_t fsbno, unsigned nlevels)
{
	cur->ip->aroot = fsbno;
	cur->ip->aroot_level = (uint16_t)nlevels;
	rlfs_trans_log_inode(cur->tp, cur->ip);
}

static int attrbt_buf_verify(struct rlfs_mount *mp, struct rlfs_buf *bp)
{
	return rlfs_btree_verify_block(mp, bp, sizeof(struct rlfs_attr_rec), 8, false);
}

const struct rlfs_buf_ops rlfs_attrbt_buf_ops = {
	.name = "attrbt",
	.magic = RLFS_ATTRBT_MAGIC,
	.has_hdr = true,
	.verify = attrbt_buf_verify,
};

const struct rlfs_btree_ops rlfs_attrbt_ops = {
	.name = "attrbt",
	.magic = RLFS_ATTRBT_MAGIC,
	.rec_len = sizeof(struct rlfs_attr_rec),
	.key_len = 8,
	.overlapping = false,
	.buf_ops = &rlfs_attrbt_buf_ops,
	.init_key_from_rec = rlfs_hashkey_from_rec,
	.cmp_key = rlfs_btree_cmp_le64,
	.verify_rec = attrbt_verify_rec,
	.get_root = attrbt_get_root,
	.set_root = attrbt_set_root,
	.alloc_block = rlfs_inode_tree_alloc_block,
	.free_block = rlfs_inode_tree_free_block,
	.owner = rlfs_inode_tree_owner,
};

/* ---- inline (shortform) list ---- */

static size_t lit_size(struct rlfs_mount *mp)
{
	return mp->inodesize - RLFS_DINODE_CORE;
}

static size_t sf_room(struct rlfs_inode *ip)
{
	size_t lit = lit_size(ip->mp);
	return ip->forkoff < lit ? lit - ip->forkoff : 0;
}

static uint8_t *sf_base(struct rlfs_inode *ip)
{
	return ip->literal + ip->forkoff;
}

static size_t sf_entsize(size_t namelen, size_t valuelen)
{
	return (sizeof(struct rlfs_attr_sf_entry) + namelen + valuelen + 3) & ~(size_t)3;
}

/* One decoded inline entry. */
struct sf_ent {
	const uint8_t *name;
	size_t namelen;
	const uint8_t *value;
	size_t valuelen;
};

/*
 * Walk the inline list: calls fn for each entry (fn returns nonzero to
 * stop, returned).  Checks every entry lies inside the area; counts them.
 */
typedef int (*sf_fn)(void *priv, const struct sf_ent *e);
static int sf_walk(struct rlfs_inode *ip, sf_fn fn, void *priv, uint32_t *count)
{
	const uint8_t *base = sf_base(ip);
	size_t room = sf_room(ip), pos = 0;
	uint32_t n = 0;
	while (pos + sizeof(struct rlfs_attr_sf_entry) <= room) {
		struct rlfs_attr_sf_entry h;
		memcpy(&h, base + pos, sizeof(h));
		if (h.namelen == 0)
			break;
		struct sf_ent e = {
			.name = base + pos + sizeof(h),
			.namelen = h.namelen,
			.valuelen = rlfs_get16(h.valuelen),
		};
		e.value = e.name + e.namelen;
		if (pos + sizeof(h) + e.namelen + e.valuelen > room)
			return rlfs_corrupt(ip->mp, rlfs_ino_to_fsb(ip->mp, ip->ino), "xattr",
					    "ino %llu: inline entry at %zu overruns the area",
					    (unsigned long long)ip->ino, pos);
		n++;
		if (fn) {
			int r = fn(priv, &e);
			if (r)
				return r;
		}
		pos += sf_entsize(e.namelen, e.valuelen);
	}
	if (count)
		*count = n;
	return 0;
}

struct sf_find {
	const char *name;
	size_t len;
	struct sf_ent found;
};

static int sf_find_fn(void *priv, const struct sf_ent *e)
{
	struct sf_find *f = priv;
	if (e->namelen == f->len && memcmp(e->name, f->name, f->len) == 0) {
		f->found = *e;
		return 1;
	}
	return 0;
}

/* 1 found (*e), 0 not found, <0 error. */
static int sf_lookup(struct rlfs_inode *ip, const char *name, size_t len, struct sf_ent *e)
{
	struct sf_find f = { .name = name, .len = len };
	int r = sf_walk(ip, sf_find_fn, &f, NULL);
	if (r == 1)
		*e = f.found;
	return r;
}

/* Append one entry to a list buffer; false if it does not fit. */
static bool sf_append(uint8_t *buf, size_t room, size_t *pos, const void *name, size_t nl,
		      const void *value, size_t vl)
{
	size_t sz = sf_entsize(nl, vl);
	if (*pos + sz > room || nl > RLFS_XATTR_NAME_MAX || vl > UINT16_MAX)
		return false;
	struct rlfs_attr_sf_entry h = { .namelen = (uint8_t)nl };
	rlfs_put16(h.valuelen, (uint16_t)vl);
	memcpy(buf + *pos, &h, sizeof(h));
	memcpy(buf + *pos + sizeof(h), name, nl);
	if (vl)
		memcpy(buf + *pos + sizeof(h) + nl, value, vl);
	*pos += sz;
	return true;
}

struct sf_copy {
	uint8_t *buf;
	size_t room, pos;
	const char *skip;
	size_t skiplen;
	uint32_t n;
	bool overflow;
};

static int sf_copy_fn(void *priv, const struct sf_ent *e)
{
	struct sf_copy *c = priv;
	if (c->skip && e->namelen == c->skiplen && memcmp(e->name, c->skip, c->skiplen) == 0)
		return 0;
	if (!sf_append(c->buf, c->room, &c->pos, e->name, e->namelen, e->value, e->valuelen))
		c->overflow = true;
	else
		c->n++;
	return 0;
}

/* ---- btree form helpers ---- */

/*
 * Walk the records of hash from (hash, 0).  1 with *rec and the cursor on
 * it when the name matches; 0 if absent (*free_seq: first unused seq).
 */
static int bt_find(struct rlfs_btree_cur *cur, const char *name, size_t len,
		   struct rlfs_attr_rec *rec, uint32_t *free_seq)
{
	uint32_t hash = rlfs_dirhash(name, len);
	rlfs_le64 key = rlfs_le64_of(attr_key(hash, 0));
	uint32_t next_seq = 0;
	bool gap = false;
	int stat, error;

	error = rlfs_btree_lookup(cur, RLFS_LOOKUP_GE, &key, &stat);
	while (!error && stat) {
		error = rlfs_btree_get_rec(cur, rec, &stat);
		if (error || !stat || rlfs_get32(rec->hash) != hash)
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
	}
	if (error)
		return error;
	if (free_seq)
		*free_seq = next_seq;
	return 0;
}

static uint32_t value_blocks(struct rlfs_mount *mp, size_t vlen)
{
	if (vlen <= ATTR_INLINE_VALUE)
		return 0;
	return (uint32_t)((vlen + remote_payload(mp) - 1) / remote_payload(mp));
}

/* Allocate a run for a value and write it. */
static int value_write(struct rlfs_trans *tp, struct rlfs_inode *ip, const void *value,
		       size_t vlen, uint64_t *fsbnop)
{
	struct rlfs_mount *mp = tp->mp;
	uint32_t nblks = value_blocks(mp, vlen), payload = remote_payload(mp);
	struct rlfs_alloc_arg args = {
		.tp = tp,
		.type = RLFS_ALLOC_NEAR,
		.hint_fsbno = rlfs_ino_to_fsb(mp, ip->ino),
		.minlen = nblks,
		.maxlen = nblks,
		.alignment = 1,
	};
	int error = rlfs_alloc_extent(&args);
	if (error)
		return error;
	if (!args.fsbno || args.len != nblks) {
		if (args.fsbno)
			rlfs_free_extent_unused(tp, args.fsbno, args.len);
		return -ENOSPC;
	}
	error = rlfs_rmap_update(tp, RLFS_RUI_MAP, args.fsbno, nblks, ip->ino, RLFS_RMAP_ATTR_META);
	if (error)
		return error;
	ip->nblocks += nblks;
	rlfs_trans_log_inode(tp, ip);
	for (uint32_t i = 0; i < nblks; i++) {
		struct rlfs_buf *bp;
		error = rlfs_trans_get_buf(tp, args.fsbno + i, &rlfs_remote_buf_ops, ip->ino, &bp);
		if (error)
			return error;
		struct rlfs_remote_hdr *rh = bp->data;
		size_t pos = (size_t)i * payload;
		uint32_t n = (uint32_t)RLFS_MIN((size_t)payload, vlen - pos);
		rlfs_put32(rh->offset, (uint32_t)pos);
		rlfs_put32(rh->bytes, n);
		memcpy((uint8_t *)bp->data + sizeof(*rh), (const uint8_t *)value + pos, n);
		rlfs_trans_log_buf(tp, bp);
		rlfs_trans_brelse(tp, bp);
	}
	*fsbnop = args.fsbno;
	return 0;
}

/* Read a value run (vlen bytes) into buf (which has room for n <= vlen). */
static int value_read(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t fsbno,
		      size_t vlen, uint8_t *buf)
{
	struct rlfs_mount *mp = tp->mp;
	uint32_t nblks = value_blocks(mp, vlen), payload = remote_payload(mp);
	if (fsbno == 0 || fsbno + nblks > mp->dblocks)
		return rlfs_corrupt(mp, fsbno, "xattr value", "ino %llu: run of %u blocks",
				    (unsigned long long)ip->ino, nblks);
	for (uint32_t i = 0; i < nblks; i++) {
		struct rlfs_buf *bp;
		int error = rlfs_trans_read_buf(tp, fsbno + i, &rlfs_remote_buf_ops, ip->ino, &bp);
		if (error)
			return error;
		const struct rlfs_remote_hdr *rh = bp->data;
		size_t pos = (size_t)i * payload;
		uint32_t n = (uint32_t)RLFS_MIN((size_t)payload, vlen - pos);
		if (rlfs_get32(rh->offset) != pos || rlfs_get32(rh->bytes) != n) {
			rlfs_trans_brelse(tp, bp);
			return rlfs_corrupt(mp, fsbno + i, "xattr value",
					    "ino %llu: offset %u bytes %u, expected %zu %u",
					    (unsigned long long)ip->ino, rlfs_get32(rh->offset),
					    rlfs_get32(rh->bytes), pos, n);
		}
		memcpy(buf + pos, (const uint8_t *)bp->data + sizeof(*rh), n);
		rlfs_trans_brelse(tp, bp);
	}
	return 0;
}

/* Free a value run (rlfs_free_extent invalidates its cached buffers). */
static int value_free(struct rlfs_trans *tp, struct rlfs_inode *ip, uint64_t fsbno,
		      size_t vlen)
{
	struct rlfs_mount *mp = tp->mp;
	uint32_t nblks = value_blocks(mp, vlen);
	if (!nblks)
		return 0;
	if (fsbno == 0 || fsbno + nblks > mp->dblocks)
		return rlfs_corrupt(mp, fsbno, "xattr value", "ino %llu: run of %u blocks",
				    (unsigned long long)ip->ino, nblks);
	int error = rlfs_rmap_update(tp, RLFS_RUI_UNMAP, fsbno, nblks, ip->ino, RLFS_RMAP_ATTR_META);
	if (!error)
		error = rlfs_free_extent(tp, fsbno, nblks);
	if (error)
		return error;
	ip->nblocks -= RLFS_MIN((uint64_t)nblks, ip->nblocks);
	rlfs_trans_log_inode(tp, ip);
	return 0;
}

/* Fill a record's value (inline or a new run). */
static int rec_set_value(struct rlfs_trans *tp, struct rlfs_inode *ip,
			 struct rlfs_attr_rec *rec, const void *value, size_t vlen)
{
	memset(rec->value, 0, sizeof(rec->value));
	rlfs_put32(rec->valuelen, (uint32_t)vlen);
	rlfs_put64(rec->value_fsbno, 0);
	if (vlen <= ATTR_INLINE_VALUE) {
		if (vlen)
			memcpy(rec->value, value, vlen);
		return 0;
	}
	uint64_t fsbno;
	int error = value_write(tp, ip, value, vlen, &fsbno);
	if (error)
		return error;
	rlfs_put64(rec->value_fsbno, fsbno);
	return 0;
}

/* Create the empty root leaf of the xattr tree. */
static int bt_create(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	uint64_t fsbno;
	int error = rlfs_inode_tree_new_root(tp, ip, &rlfs_attrbt_ops, &fsbno);
	if (error)
		return error;
	ip->aroot = fsbno;
	ip->aroot_level = 1;
	ip->aformat = RLFS_FMT_BTREE;
	rlfs_trans_log_inode(tp, ip);
	return 0;
}

/*
 * Set name in the btree form.  flags as setxattr.  Adjusts acount.
 */
static int bt_set(struct rlfs_trans *tp, struct rlfs_inode *ip, const char *name,
		  size_t len, const void *value, size_t vlen, int flags)
{
	struct rlfs_btree_cur cur;
	struct rlfs_attr_rec rec;
	uint32_t seq = 0;
	int error;

	rlfs_btree_cur_init(&cur, tp, &rlfs_attrbt_ops, 0, ip, NULL);
	error = bt_find(&cur, name, len, &rec, &seq);
	if (error < 0)
		goto out;
	if (error == 1) {
		if (flags & XATTR_CREATE) {
			error = -EEXIST;
			goto out;
		}
		error = value_free(tp, ip, rlfs_get64(rec.value_fsbno),
				   rlfs_get32(rec.valuelen));
		if (!error)
			error = rec_set_value(tp, ip, &rec, value, vlen);
		if (error)
			goto out;
		/* the allocations above may have changed the tree: find again */
		struct rlfs_attr_rec old;
		error = bt_find(&cur, name, len, &old, NULL);
		if (error == 0)
			error = rlfs_corrupt(tp->mp, ip->aroot, "attrbt", "ino %llu: record vanished",
					     (unsigned long long)ip->ino);
		if (error < 0)
			goto out;
		error = rlfs_btree_update(&cur, &rec);
		goto out;
	}
	if (flags & XATTR_REPLACE) {
		error = -ENODATA;
		goto out;
	}
	if (seq == UINT32_MAX) {
		error = -ENOSPC;
		goto out;
	}
	memset(&rec, 0, sizeof(rec));
	rlfs_put32(rec.hash, rlfs_dirhash(name, len));
	rlfs_put32(rec.seq, seq);
	rec.namelen = (uint8_t)len;
	memcpy(rec.name, name, len);
	error = rec_set_value(tp, ip, &rec, value, vlen);
	if (error)
		goto out;
	error = rlfs_btree_insert(&cur, &rec);
	if (!error) {
		ip->acount++;
		rlfs_trans_log_inode(tp, ip);
	}
out:
	rlfs_btree_cur_del(&cur);
	return error;
}

/* Move every inline attribute into a new btree. */
static int sf_to_btree(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	size_t room = sf_room(ip);
	uint8_t *copy = NULL;
	struct sf_copy c = { 0 };
	int error;

	if (ip->aformat == RLFS_FMT_LOCAL && room) {
		copy = calloc(1, room);
		if (!copy)
			return -ENOMEM;
		c.buf = copy;
		c.room = room;
		error = sf_walk(ip, sf_copy_fn, &c, NULL);
		if (error) {
			free(copy);
			return error;
		}
	}
	rlfs_trans_log_inode(tp, ip);
	if (room)
		memset(sf_base(ip), 0, room);
	ip->acount = 0;
	error = bt_create(tp, ip);
	/* re-insert from the private copy */
	size_t pos = 0;
	while (!error && copy && pos + sizeof(struct rlfs_attr_sf_entry) <= room) {
		struct rlfs_attr_sf_entry h;
		memcpy(&h, copy + pos, sizeof(h));
		if (h.namelen == 0)
			break;
		const char *n = (const char *)copy + pos + sizeof(h);
		size_t vl = rlfs_get16(h.valuelen);
		error = bt_set(tp, ip, n, h.namelen, n + h.namelen, vl, 0);
		pos += sf_entsize(h.namelen, vl);
	}
	free(copy);
	return error;
}

/* ---- the layer API ---- */

static int check_name(const char *name, size_t *lenp)
{
	if (!name)
		return -EINVAL;
	size_t len = strnlen(name, RLFS_XATTR_NAME_MAX + 1);
	if (len == 0 || len > RLFS_XATTR_NAME_MAX)
		return -ERANGE;
	*lenp = len;
	return 0;
}

static int check_aformat(struct rlfs_inode *ip)
{
	switch (ip->aformat) {
	case RLFS_FMT_NONE:
		return 0;
	case RLFS_FMT_LOCAL:
		return 0;
	case RLFS_FMT_BTREE:
		if (ip->aroot && ip->aroot_level >= 1 && ip->aroot_level <= RLFS_BTREE_MAXLEVELS)
			return 0;
		/* fall through */
	default:
		return rlfs_corrupt(ip->mp, rlfs_ino_to_fsb(ip->mp, ip->ino), "inode",
				    "ino %llu: xattr format %u root %llu level %u",
				    (unsigned long long)ip->ino, ip->aformat,
				    (unsigned long long)ip->aroot, ip->aroot_level);
	}
}

int rlfs_xattr_get(struct rlfs_trans *tp, struct rlfs_inode *ip, const char *name,
		   void *value, size_t size)
{
	size_t len;
	int error = check_name(name, &len);
	if (error)
		return error;
	error = check_aformat(ip);
	if (error)
		return error;
	if (ip->aformat == RLFS_FMT_LOCAL) {
		struct sf_ent e = { 0 };
		error = sf_lookup(ip, name, len, &e);
		if (error < 0)
			return error;
		if (error == 0)
			return -ENODATA;
		if (size == 0)
			return (int)e.valuelen;
		if (size < e.valuelen)
			return -ERANGE;
		if (e.valuelen)
			memcpy(value, e.value, e.valuelen);
		return (int)e.valuelen;
	}
	if (ip->aformat != RLFS_FMT_BTREE)
		return -ENODATA;

	struct rlfs_btree_cur cur;
	struct rlfs_attr_rec rec;
	rlfs_btree_cur_init(&cur, tp, &rlfs_attrbt_ops, 0, ip, NULL);
	error = bt_find(&cur, name, len, &rec, NULL);
	rlfs_btree_cur_del(&cur);
	if (error < 0)
		return error;
	if (error == 0)
		return -ENODATA;
	size_t vlen = rlfs_get32(rec.valuelen);
	if (size == 0)
		return (int)vlen;
	if (size < vlen)
		return -ERANGE;
	if (vlen <= ATTR_INLINE_VALUE) {
		memcpy(value, rec.value, vlen);
		return (int)vlen;
	}
	error = value_read(tp, ip, rlfs_get64(rec.value_fsbno), vlen, value);
	return error ? error : (int)vlen;
}

int rlfs_xattr_set(struct rlfs_trans *tp, struct rlfs_inode *ip, const char *name,
		   const void *value, size_t size, int flags)
{
	size_t len;
	int error = check_name(name, &len);
	if (error)
		return error;
	if (size > RLFS_XATTR_SIZE_MAX)
		return -E2BIG;
	if (flags & ~(XATTR_CREATE | XATTR_REPLACE))
		return -EINVAL;
	if ((flags & XATTR_CREATE) && (flags & XATTR_REPLACE))
		return -EINVAL;
	if (size && !value)
		return -EINVAL;
	error = check_aformat(ip);
	if (error)
		return error;
	rlfs_trans_log_inode(tp, ip);

	if (ip->aformat == RLFS_FMT_BTREE)
		return bt_set(tp, ip, name, len, value, size, flags);

	/* inline (or none yet) */
	struct sf_ent e = { 0 };
	int found = 0;
	if (ip->aformat == RLFS_FMT_LOCAL) {
		found = sf_lookup(ip, name, len, &e);
		if (found < 0)
			return found;
	}
	if (found && (flags & XATTR_CREATE))
		return -EEXIST;
	if (!found && (flags & XATTR_REPLACE))
		return -ENODATA;

	/* Directories and special files never use the data fork's part of
	 * the literal area: they may give it to the xattrs (forkoff 0). */
	size_t room = sf_room(ip);
	size_t maxroom = room;
	bool no_data_literal = S_ISDIR(ip->mode) || S_ISCHR(ip->mode) || S_ISBLK(ip->mode) ||
			       S_ISFIFO(ip->mode) || S_ISSOCK(ip->mode);
	if (no_data_literal && ip->format != RLFS_FMT_LOCAL && ip->format != RLFS_FMT_EXTENTS)
		maxroom = lit_size(ip->mp);
	if (maxroom) {
		uint8_t *buf = calloc(1, maxroom);
		if (!buf)
			return -ENOMEM;
		struct sf_copy c = { .buf = buf, .room = maxroom, .skip = name, .skiplen = len };
		if (ip->aformat == RLFS_FMT_LOCAL) {
			error = sf_walk(ip, sf_copy_fn, &c, NULL);
			if (error) {
				free(buf);
				return error;
			}
		}
		if (!c.overflow && sf_append(buf, maxroom, &c.pos, name, len, value, size)) {
			if (c.pos > room) {
				/* grow the xattr area over the unused data fork */
				ip->forkoff = 0;
				room = maxroom;
			}
			memcpy(sf_base(ip), buf, room);
			ip->aformat = RLFS_FMT_LOCAL;
			ip->acount = c.n + 1;
			free(buf);
			return 0;
		}
		free(buf);
	}
	/* does not fit inline: everything moves to the btree */
	error = sf_to_btree(tp, ip);
	if (error)
		return error;
	return bt_set(tp, ip, name, len, value, size, flags & ~XATTR_CREATE & ~XATTR_REPLACE);
}

/* Free the xattr tree (all records' values first). */
struct bt_free_ctx {
	struct rlfs_trans *tp;
	struct rlfs_inode *ip;
};

static int bt_free_value_fn(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	struct bt_free_ctx *c = priv;
	const struct rlfs_attr_rec *r = rec;
	return value_free(c->tp, c->ip, rlfs_get64(r->value_fsbno), rlfs_get32(r->valuelen));
}

static int bt_destroy(struct rlfs_trans *tp, struct rlfs_inode *ip, bool values)
{
	struct rlfs_btree_cur cur;
	struct bt_free_ctx c = { .tp = tp, .ip = ip };
	int error = 0;

	rlfs_trans_log_inode(tp, ip);
	rlfs_btree_cur_init(&cur, tp, &rlfs_attrbt_ops, 0, ip, NULL);
	if (values)
		error = rlfs_btree_query_all(&cur, bt_free_value_fn, &c);
	if (!error)
		error = rlfs_btree_destroy(&cur);
	rlfs_btree_cur_del(&cur);
	if (error)
		return error;
	ip->aroot = 0;
	ip->aroot_level = 0;
	ip->aformat = RLFS_FMT_NONE;
	ip->acount = 0;
	return 0;
}

int rlfs_xattr_remove(struct rlfs_trans *tp, struct rlfs_inode *ip, const char *name)
{
	size_t len;
	int error = check_name(name, &len);
	if (error)
		return error;
	error = check_aformat(ip);
	if (error)
		return error;
	if (ip->aformat == RLFS_FMT_NONE)
		return -ENODATA;
	if (ip->aformat == RLFS_FMT_LOCAL) {
		struct sf_ent e = { 0 };
		size_t room = sf_room(ip);
		int found = sf_lookup(ip, name, len, &e);
		if (found <= 0)
			return found < 0 ? found : -ENODATA;
		uint8_t *buf = calloc(1, room ? room : 1);
		if (!buf)
			return -ENOMEM;
		struct sf_copy c = { .buf = buf, .room = room, .skip = name, .skiplen = len };
		error = sf_walk(ip, sf_copy_fn, &c, NULL);
		if (error) {
			free(buf);
			return error;
		}
		rlfs_trans_log_inode(tp, ip);
		memcpy(sf_base(ip), buf, room);
		free(buf);
		ip->acount = c.n;
		if (c.n == 0)
			ip->aformat = RLFS_FMT_NONE;
		return 0;
	}

	struct rlfs_btree_cur cur;
	struct rlfs_attr_rec rec;
	int stat;
	rlfs_trans_log_inode(tp, ip);
	rlfs_btree_cur_init(&cur, tp, &rlfs_attrbt_ops, 0, ip, NULL);
	error = bt_find(&cur, name, len, &rec, NULL);
	if (error == 0)
		error = -ENODATA;
	if (error == 1)
		error = rlfs_btree_delete(&cur, &stat);
	rlfs_btree_cur_del(&cur);
	if (error)
		return error;
	error = value_free(tp, ip, rlfs_get64(rec.value_fsbno), rlfs_get32(rec.valuelen));
	if (error)
		return error;
	if (ip->acount)
		ip->acount--;
	if (ip->acount == 0) {
		/* make sure: the tree must really be empty */
		rlfs_btree_cur_init(&cur, tp, &rlfs_attrbt_ops, 0, ip, NULL);
		rlfs_le64 k = rlfs_le64_of(0);
		error = rlfs_btree_lookup(&cur, RLFS_LOOKUP_GE, &k, &stat);
		if (!error && stat)
			error = rlfs_btree_get_rec(&cur, &rec, &stat);
		rlfs_btree_cur_del(&cur);
		if (error)
			return error;
		if (stat)
			return rlfs_corrupt(tp->mp, ip->aroot, "attrbt",
					    "ino %llu: acount 0 but records remain",
					    (unsigned long long)ip->ino);
		return bt_destroy(tp, ip, false);
	}
	return 0;
}

struct list_ctx {
	char *list;
	size_t size, total;
	bool range;
};

static void list_add(struct list_ctx *c, const uint8_t *name, size_t len)
{
	if (c->size) {
		if (c->total + len + 1 > c->size)
			c->range = true;
		else {
			memcpy(c->list + c->total, name, len);
			c->list[c->total + len] = '\0';
		}
	}
	c->total += len + 1;
}

static int list_sf_fn(void *priv, const struct sf_ent *e)
{
	list_add(priv, e->name, e->namelen);
	return 0;
}

static int list_bt_fn(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	const struct rlfs_attr_rec *r = rec;
	list_add(priv, r->name, r->namelen);
	return 0;
}

int rlfs_xattr_list(struct rlfs_trans *tp, struct rlfs_inode *ip, char *list, size_t size)
{
	struct list_ctx c = { .list = list, .size = size };
	int error = check_aformat(ip);
	if (error)
		return error;
	if (ip->aformat == RLFS_FMT_LOCAL) {
		error = sf_walk(ip, list_sf_fn, &c, NULL);
	} else if (ip->aformat == RLFS_FMT_BTREE) {
		struct rlfs_btree_cur cur;
		rlfs_btree_cur_init(&cur, tp, &rlfs_attrbt_ops, 0, ip, NULL);
		error = rlfs_btree_query_all(&cur, list_bt_fn, &c);
		rlfs_btree_cur_del(&cur);
	}
	if (error)
		return error;
	if (c.range)
		return -ERANGE;
	if (c.total > INT32_MAX)
		return -E2BIG;
	return (int)c.total;
}

uint32_t rlfs_xattr_res(struct rlfs_inode *ip, size_t vlen)
{
	struct rlfs_mount *mp = ip->mp;
	uint32_t leafmax = rlfs_btree_maxrecs(mp, &rlfs_attrbt_ops, true);
	uint32_t levels = ip->aformat == RLFS_FMT_BTREE ? ip->aroot_level : 1;
	/* the new value, the old value's run freed, splits on every level and
	 * a new root, and (inline -> btree) leaves for the moved entries */
	uint32_t blocks = value_blocks(mp, RLFS_MIN(vlen, (size_t)RLFS_XATTR_SIZE_MAX)) +
			  2 * (levels + 2);
	if (ip->aformat != RLFS_FMT_BTREE) {
		uint32_t moved = (uint32_t)(sf_room(ip) / sizeof(struct rlfs_attr_sf_entry)) + 1;
		blocks += moved / (leafmax ? leafmax : 1) + 2;
	}
	return blocks + rlfs_alloc_tree_res(mp, blocks);
}

int rlfs_xattr_destroy(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	int error = check_aformat(ip);
	if (error)
		return error;
	rlfs_trans_log_inode(tp, ip);
	if (ip->aformat == RLFS_FMT_BTREE) {
		error = bt_destroy(tp, ip, true);
		if (error)
			return error;
	}
	size_t room = sf_room(ip);
	if (room)
		memset(sf_base(ip), 0, room);
	ip->aformat = RLFS_FMT_NONE;
	ip->acount = 0;
	return 0;
}

/* ---- POSIX ACLs (system.posix_acl_access / _default) ---- */

/*
 * The value is the kernel's xattr form (include/linux/posix_acl_xattr.h):
 * a le32 version 2, then entries {le16 tag, le16 perm, le32 id}.  The
 * kernel enforces the ACLs (FUSE_POSIX_ACL); what the filesystem owes it is
 * what fs/posix_acl.c does for a local filesystem: keep the mode in step
 * with the access ACL (posix_acl_update_mode, posix_acl_chmod) and give new
 * inodes the parent's default ACL (posix_acl_create).
 */
#define ACL_XATTR_VERSION 2u
#define ACL_USER_OBJ 0x01
#define ACL_USER 0x02
#define ACL_GROUP_OBJ 0x04
#define ACL_GROUP 0x08
#define ACL_MASK 0x10
#define ACL_OTHER 0x20
#define ACL_HDR 4u
#define ACL_ENT 8u
/* an ACL the kernel can hand us is at most a page (fuse_set_acl) */
#define ACL_MAX_BYTES 4096u

static const char ACL_ACCESS[] = "system.posix_acl_access";
static const char ACL_DEFAULT[] = "system.posix_acl_default";

static int acl_kind(const char *name)
{
	if (!strcmp(name, ACL_ACCESS))
		return 1;
	if (!strcmp(name, ACL_DEFAULT))
		return 2;
	return 0;
}

static unsigned acl_count(size_t size)
{
	return (unsigned)((size - ACL_HDR) / ACL_ENT);
}

static uint16_t acl_tag(const uint8_t *v, unsigned i)
{
	return (uint16_t)(v[ACL_HDR + i * ACL_ENT] | v[ACL_HDR + i * ACL_ENT + 1] << 8);
}

static uint16_t acl_perm(const uint8_t *v, unsigned i)
{
	return (uint16_t)(v[ACL_HDR + i * ACL_ENT + 2] | v[ACL_HDR + i * ACL_ENT + 3] << 8);
}

static void acl_set_perm(uint8_t *v, unsigned i, uint16_t perm)
{
	v[ACL_HDR + i * ACL_ENT + 2] = (uint8_t)perm;
	v[ACL_HDR + i * ACL_ENT + 3] = (uint8_t)(perm >> 8);
}

static bool acl_valid_header(const uint8_t *v)
{
	return (uint32_t)(v[0] | v[1] << 8 | v[2] << 16 | (uint32_t)v[3] << 24) ==
	       ACL_XATTR_VERSION;
}

/* posix_acl_from_xattr + posix_acl_valid: version 2, at least one entry,
 * permissions rwx only, tags in the order USER_OBJ, USER..., GROUP_OBJ,
 * GROUP..., MASK (required with named entries), OTHER.  0 or -EINVAL. */
static int acl_valid(const void *value, size_t size)
{
	const uint8_t *v = value;
	if (!v || size < ACL_HDR + ACL_ENT || (size - ACL_HDR) % ACL_ENT || !acl_valid_header(v))
		return -EINVAL;
	int state = ACL_USER_OBJ;
	bool needs_mask = false;
	for (unsigned i = 0; i < acl_count(size); i++) {
		if (acl_perm(v, i) & ~7u)
			return -EINVAL;
		switch (acl_tag(v, i)) {
		case ACL_USER_OBJ:
			if (state != ACL_USER_OBJ)
				return -EINVAL;
			state = ACL_USER;
			break;
		case ACL_USER:
			if (state != ACL_USER)
				return -EINVAL;
			needs_mask = true;
			break;
		case ACL_GROUP_OBJ:
			if (state != ACL_USER)
				return -EINVAL;
			state = ACL_GROUP;
			break;
		case ACL_GROUP:
			if (state != ACL_GROUP)
				return -EINVAL;
			needs_mask = true;
			break;
		case ACL_MASK:
			if (state != ACL_GROUP)
				return -EINVAL;
			state = ACL_OTHER;
			break;
		case ACL_OTHER:
			if (state != ACL_OTHER && (state != ACL_GROUP || needs_mask))
				return -EINVAL;
			state = 0;
			break;
		default:
			return -EINVAL;
		}
	}
	return state == 0 ? 0 : -EINVAL;
}

/* posix_acl_equiv_mode: *mode's permission bits from a valid ACL; 1 if the
 * ACL says more than the mode (named entries or a mask), else 0. */
static int acl_equiv_mode(const uint8_t *v, size_t size, uint32_t *mode)
{
	uint32_t m = 0;
	int not_equiv = 0;
	for (unsigned i = 0; i < acl_count(size); i++) {
		uint32_t perm = acl_perm(v, i) & 7u;
		switch (acl_tag(v, i)) {
		case ACL_USER_OBJ:
			m |= perm << 6;
			break;
		case ACL_GROUP_OBJ:
			m |= perm << 3;
			break;
		case ACL_OTHER:
			m |= perm;
			break;
		case ACL_MASK:
			m = (m & ~070u) | perm << 3;
			not_equiv = 1;
			break;
		default:
			not_equiv = 1;
			break;
		}
	}
	*mode = (*mode & ~0777u) | m;
	return not_equiv;
}

/* posix_acl_create_masq: mask a copy of the parent's default ACL with the
 * requested mode and the mode with the ACL; 1 if the result says more
 * than the mode (keep it as the access ACL). */
static int acl_create_masq(uint8_t *v, size_t size, uint32_t *modep)
{
	uint32_t mode = *modep;
	int group_obj = -1, mask_obj = -1, not_equiv = 0;
	for (unsigned i = 0; i < acl_count(size); i++) {
		uint16_t perm = acl_perm(v, i);
		switch (acl_tag(v, i)) {
		case ACL_USER_OBJ:
			perm &= (uint16_t)(((mode >> 6) & 7u) | ~7u);
			acl_set_perm(v, i, perm);
			mode &= ((uint32_t)perm << 6) | ~0700u;
			break;
		case ACL_USER:
		case ACL_GROUP:
			not_equiv = 1;
			break;
		case ACL_GROUP_OBJ:
			group_obj = (int)i;
			break;
		case ACL_OTHER:
			perm &= (uint16_t)((mode & 7u) | ~7u);
			acl_set_perm(v, i, perm);
			mode &= (uint32_t)perm | ~07u;
			break;
		case ACL_MASK:
			mask_obj = (int)i;
			not_equiv = 1;
			break;
		}
	}
	int gi = mask_obj >= 0 ? mask_obj : group_obj;
	if (gi < 0)
		return -EINVAL;
	uint16_t perm = acl_perm(v, (unsigned)gi) & (uint16_t)(((mode >> 3) & 7u) | ~7u);
	acl_set_perm(v, (unsigned)gi, perm);
	mode &= ((uint32_t)perm << 3) | ~070u;
	*modep = (*modep & ~0777u) | (mode & 0777u);
	return not_equiv;
}

/* posix_acl_chmod (__posix_acl_chmod_masq): the owner, group class (the
 * mask if there is one) and other entries take the mode's bits. */
static void acl_chmod_masq(uint8_t *v, size_t size, uint32_t mode)
{
	int group_obj = -1, mask_obj = -1;
	for (unsigned i = 0; i < acl_count(size); i++) {
		switch (acl_tag(v, i)) {
		case ACL_USER_OBJ:
			acl_set_perm(v, i, (uint16_t)((mode >> 6) & 7u));
			break;
		case ACL_OTHER:
			acl_set_perm(v, i, (uint16_t)(mode & 7u));
			break;
		case ACL_GROUP_OBJ:
			group_obj = (int)i;
			break;
		case ACL_MASK:
			mask_obj = (int)i;
			break;
		}
	}
	int gi = mask_obj >= 0 ? mask_obj : group_obj;
	if (gi >= 0)
		acl_set_perm(v, (unsigned)gi, (uint16_t)((mode >> 3) & 7u));
}

/* Replace the value of an existing attribute with one of the same length
 * in place (no block is allocated or freed, so no reservation is needed).
 * 0, -ENODATA, -EINVAL (length differs), -EUCLEAN. */
static int xattr_overwrite(struct rlfs_trans *tp, struct rlfs_inode *ip, const char *name,
			   const void *value, size_t vlen)
{
	size_t len = strlen(name);
	int error = check_aformat(ip);
	if (error)
		return error;
	if (ip->aformat == RLFS_FMT_LOCAL) {
		struct sf_ent e = { 0 };
		error = sf_lookup(ip, name, len, &e);
		if (error <= 0)
			return error < 0 ? error : -ENODATA;
		if (e.valuelen != vlen)
			return -EINVAL;
		rlfs_trans_log_inode(tp, ip);
		memcpy(ip->literal + (e.value - ip->literal), value, vlen);
		return 0;
	}
	if (ip->aformat != RLFS_FMT_BTREE)
		return -ENODATA;
	struct rlfs_btree_cur cur;
	struct rlfs_attr_rec rec;
	rlfs_btree_cur_init(&cur, tp, &rlfs_attrbt_ops, 0, ip, NULL);
	error = bt_find(&cur, name, len, &rec, NULL);
	if (error == 0)
		error = -ENODATA;
	if (error == 1 && rlfs_get32(rec.valuelen) != vlen)
		error = -EINVAL;
	if (error == 1 && vlen <= ATTR_INLINE_VALUE) {
		memcpy(rec.value, value, vlen);
		error = rlfs_btree_update(&cur, &rec);
	} else if (error == 1) {
		struct rlfs_mount *mp = tp->mp;
		uint64_t fsbno = rlfs_get64(rec.value_fsbno);
		uint32_t payload = remote_payload(mp);
		error = 0;
		for (uint32_t i = 0; !error && i < value_blocks(mp, vlen); i++) {
			struct rlfs_buf *bp;
			error = rlfs_trans_read_buf(tp, fsbno + i, &rlfs_remote_buf_ops, ip->ino,
						    &bp);
			if (error)
				break;
			size_t pos = (size_t)i * payload;
			size_t n = RLFS_MIN((size_t)payload, vlen - pos);
			memcpy((uint8_t *)bp->data + sizeof(struct rlfs_remote_hdr),
			       (const uint8_t *)value + pos, n);
			rlfs_trans_log_buf(tp, bp);
			rlfs_trans_brelse(tp, bp);
		}
	}
	rlfs_btree_cur_del(&cur);
	return error;
}

int rlfs_acl_chmod(struct rlfs_trans *tp, struct rlfs_inode *ip)
{
	uint8_t v[ACL_MAX_BYTES];
	if (ip->acount == 0 || S_ISLNK(ip->mode))
		return 0;
	int n = rlfs_xattr_get(tp, ip, ACL_ACCESS, v, sizeof(v));
	if (n == -ENODATA)
		return 0;
	if (n < 0 && n != -ERANGE)
		return n;
	/* larger than any ACL the kernel can set, or malformed */
	if (n < 0 || acl_valid(v, (size_t)n))
		return rlfs_corrupt(tp->mp, rlfs_ino_to_fsb(tp->mp, ip->ino), "xattr",
				    "ino %llu: malformed %s", (unsigned long long)ip->ino,
				    ACL_ACCESS);
	acl_chmod_masq(v, (size_t)n, ip->mode);
	return xattr_overwrite(tp, ip, ACL_ACCESS, v, (size_t)n);
}

void rlfs_acl_new_free(struct rlfs_acl_new *an)
{
	free(an->def);
	free(an->acc);
	memset(an, 0, sizeof(*an));
}

int rlfs_acl_create_prep(struct rlfs_inode *dp, uint32_t *mode, uint32_t umask,
			 struct rlfs_acl_new *an)
{
	struct rlfs_trans *tp;
	memset(an, 0, sizeof(*an));
	if (S_ISLNK(*mode))
		return 0;
	int n = -ENODATA;
	if (dp->acount) {
		an->def = malloc(ACL_MAX_BYTES);
		if (!an->def)
			return -ENOMEM;
		int error = rlfs_trans_alloc(dp->mp, &dp->mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
		if (error) {
			rlfs_acl_new_free(an);
			return error;
		}
		n = rlfs_xattr_get(tp, dp, ACL_DEFAULT, an->def, ACL_MAX_BYTES);
		rlfs_trans_cancel(tp);
		if (n == -ERANGE || (n >= 0 && acl_valid(an->def, (size_t)n)))
			n = rlfs_corrupt(dp->mp, rlfs_ino_to_fsb(dp->mp, dp->ino), "xattr",
					 "ino %llu: malformed %s", (unsigned long long)dp->ino,
					 ACL_DEFAULT);
		if (n < 0 && n != -ENODATA) {
			rlfs_acl_new_free(an);
			return n;
		}
	}
	if (n == -ENODATA) {
		rlfs_acl_new_free(an);
		*mode &= ~(umask & 0777u);
		return 0;
	}
	an->deflen = (size_t)n;
	an->acc = malloc(an->deflen);
	if (!an->acc) {
		rlfs_acl_new_free(an);
		return -ENOMEM;
	}
	memcpy(an->acc, an->def, an->deflen);
	an->acclen = an->deflen;
	int r = acl_create_masq(an->acc, an->acclen, mode);
	if (r < 0) {
		rlfs_acl_new_free(an);
		return r;
	}
	if (r == 0) {           /* equivalent to the mode: no access ACL */
		free(an->acc);
		an->acc = NULL;
		an->acclen = 0;
	}
	if (!S_ISDIR(*mode)) {  /* only directories inherit the default ACL */
		free(an->def);
		an->def = NULL;
		an->deflen = 0;
	}
	return 0;
}

uint32_t rlfs_acl_create_res(struct rlfs_mount *mp, const struct rlfs_acl_new *an)
{
	uint32_t res = 0;
	if (an->def)
		res += 2 * (value_blocks(mp, an->deflen) + 8);
	if (an->acc)
		res += 2 * (value_blocks(mp, an->acclen) + 8);
	return res ? res + rlfs_alloc_tree_res(mp, res) : 0;
}

int rlfs_acl_create_apply(struct rlfs_trans *tp, struct rlfs_inode *ip,
			  const struct rlfs_acl_new *an)
{
	int error = 0;
	if (an->def)
		error = rlfs_xattr_set(tp, ip, ACL_DEFAULT, an->def, an->deflen, XATTR_CREATE);
	if (!error && an->acc)
		error = rlfs_xattr_set(tp, ip, ACL_ACCESS, an->acc, an->acclen, XATTR_CREATE);
	return error;
}

/*
 * setxattr of an ACL name (xattr_public, inode locked and joined):
 * posix_acl_xattr_set -> set_posix_acl -> the filesystem's set_acl, which
 * ignore XATTR_CREATE/XATTR_REPLACE as the kernel does.  An ACL with no
 * entry removes the ACL (set_posix_acl with NULL; on a non-directory a
 * default one is simply not there).  An
 * access ACL sets the mode's permission bits (posix_acl_update_mode) and is
 * not stored when the mode says it all; kill_sgid (the kernel's
 * FUSE_SETXATTR_ACL_KILL_SGID: the caller is neither in the file's group
 * nor has CAP_FSETID) clears S_ISGID.  A default ACL: directories only
 * (-EACCES).  Symlinks have no ACLs (-EOPNOTSUPP).
 */
static int acl_set(struct rlfs_trans *tp, struct rlfs_inode *ip, int kind, const char *name,
		   const void *value, size_t size, bool kill_sgid)
{
	if (S_ISLNK(ip->mode))
		return -EOPNOTSUPP;
	if (value && size == ACL_HDR && acl_valid_header(value)) {
		/* no entries: posix_acl_from_xattr gives no ACL, and setting
		 * none removes it (set_posix_acl with NULL) */
		if (kind == 2 && !S_ISDIR(ip->mode))
			return 0;
		int error = rlfs_xattr_remove(tp, ip, name);
		return error == -ENODATA ? 0 : error;
	}
	int error = acl_valid(value, size);
	if (error)
		return error;
	if (kind == 2) {
		if (!S_ISDIR(ip->mode))
			return -EACCES;
		return rlfs_xattr_set(tp, ip, name, value, size, 0);
	}
	uint32_t mode = ip->mode;
	int not_equiv = acl_equiv_mode(value, size, &mode);
	if (kill_sgid)
		mode &= ~(uint32_t)S_ISGID;
	if (not_equiv) {
		error = rlfs_xattr_set(tp, ip, name, value, size, 0);
	} else {
		error = rlfs_xattr_remove(tp, ip, name);
		if (error == -ENODATA)
			error = 0;
	}
	if (error)
		return error;
	if (mode != ip->mode) {
		ip->mode = mode;
		rlfs_trans_log_inode(tp, ip);
	}
	return 0;
}

/* ---- public wrappers (include/reflinkfs/fs.h) ---- */

/*
 * Namespaces, as the kernel's xattr handlers of XFS resolve them
 * (fs/xattr.c xattr_resolve_name): "user.", "trusted.", "security." with a
 * non-empty rest, and the two POSIX ACL names (stored as opaque values).
 * FUSE hands every name to us, so anything else is refused here:
 * -EOPNOTSUPP (ENOTSUP), or -EINVAL for a bare prefix.
 */
static int xattr_namespace_check(const char *name)
{
	static const char *const prefixes[] = { "user.", "trusted.", "security." };
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t pl = strlen(prefixes[i]);
		if (strncmp(name, prefixes[i], pl) == 0)
			return name[pl] ? 0 : -EINVAL;
	}
	if (!strcmp(name, "system.posix_acl_access") || !strcmp(name, "system.posix_acl_default"))
		return 0;
	return -EOPNOTSUPP;
}

/* Checks of a name passed to the public calls: length (check_name) and
 * the namespaces XFS accepts (xattr_namespace_check). */
static int public_name_check(const char *name)
{
	size_t len;
	int error = check_name(name, &len);
	return error ? error : xattr_namespace_check(name);
}

/*
 * The frame of the four public xattr calls: get the inode, lock it (shared
 * to read, exclusive to change), refuse changes to an immutable or
 * append-only inode (-EPERM), run the operation in a transaction (read-only
 * for get and list; set reserves for the value, remove may dip into the
 * reserve), and after a change stamp ctime and commit.  Returns what the
 * operation returns (bytes for get and list) or -errno.
 */
enum xattr_kind { XATTR_GET, XATTR_LIST, XATTR_SET, XATTR_REMOVE };
struct xattr_call {
	enum xattr_kind kind;
	const char *name;
	const void *value;      /* set */
	void *buf;              /* get, list */
	size_t size;            /* set: value bytes; get, list: buf bytes */
	int flags;              /* set: XATTR_CREATE / XATTR_REPLACE */
};

static int xattr_public(struct rlfs_mount *mp, uint64_t ino, const struct xattr_call *c)
{
	struct rlfs_inode *ip;
	struct rlfs_trans *tp;
	bool change = c->kind == XATTR_SET || c->kind == XATTR_REMOVE;
	int error = rlfs_iget(mp, ino, &ip);
	if (error)
		return error;
	if (change)
		pthread_rwlock_wrlock(&ip->iolock);
	else
		pthread_rwlock_rdlock(&ip->iolock);
	if (change && (ip->flags & (RLFS_DIFLAG_IMMUTABLE | RLFS_DIFLAG_APPEND))) {
		error = -EPERM;
		goto out;
	}
	/* No xattrs: answer without a transaction (no metadata lock).  The
	 * kernel asks for system.posix_acl_access of an inode before it
	 * checks a non-owner's access, after each refresh of its attributes. */
	if (!change && ip->aformat == RLFS_FMT_NONE) {
		error = c->kind == XATTR_GET ? -ENODATA : 0;
		goto out;
	}
	if (c->kind == XATTR_SET)
		error = rlfs_trans_alloc(mp, &mp->resv.tr_xattr_set, rlfs_xattr_res(ip, c->size), 0, &tp);
	else if (c->kind == XATTR_REMOVE)
		error = rlfs_trans_alloc(mp, &mp->resv.tr_xattr_rm, rlfs_xattr_res(ip, 0), RLFS_TRANS_RESERVE, &tp);
	else
		error = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
	if (error)
		goto out;
	if (change)
		rlfs_trans_ijoin(tp, ip);
	switch (c->kind) {
	case XATTR_GET:
		error = rlfs_xattr_get(tp, ip, c->name, c->buf, c->size);
		break;
	case XATTR_LIST:
		error = rlfs_xattr_list(tp, ip, c->buf, c->size);
		break;
	case XATTR_SET:
		if (acl_kind(c->name))
			error = acl_set(tp, ip, acl_kind(c->name), c->name, c->value, c->size,
					c->flags & RLFS_XATTR_ACL_KILL_SGID);
		else
			error = rlfs_xattr_set(tp, ip, c->name, c->value, c->size,
					       c->flags & ~RLFS_XATTR_ACL_KILL_SGID);
		break;
	case XATTR_REMOVE:
		error = rlfs_xattr_remove(tp, ip, c->name);
		break;
	}
	if (!change || error) {
		rlfs_trans_cancel(tp);
		goto out;
	}
	rlfs_now(&ip->ctime);
	rlfs_trans_log_inode(tp, ip);
	error = rlfs_trans_commit(tp);
out:
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return error;
}

int rlfs_getxattr(struct rlfs_mount *mp, uint64_t ino, const char *name, void *value,
		  size_t size)
{
	int error = public_name_check(name);
	if (error)
		return error;
	struct xattr_call c = { .kind = XATTR_GET, .name = name, .buf = value, .size = size };
	return xattr_public(mp, ino, &c);
}

int rlfs_setxattr(struct rlfs_mount *mp, uint64_t ino, const char *name, const void *value,
		  size_t size, int flags)
{
	size_t len;
	int error = check_name(name, &len);
	if (error)
		return error;
	if (size > RLFS_XATTR_SIZE_MAX)
		return -E2BIG;
	error = xattr_namespace_check(name);
	if (error)
		return error;
	struct xattr_call c = { .kind = XATTR_SET, .name = name, .value = value, .size = size,
				.flags = flags };
	return xattr_public(mp, ino, &c);
}

int rlfs_listxattr(struct rlfs_mount *mp, uint64_t ino, char *list, size_t size)
{
	struct xattr_call c = { .kind = XATTR_LIST, .buf = list, .size = size };
	return xattr_public(mp, ino, &c);
}

int rlfs_removexattr(struct rlfs_mount *mp, uint64_t ino, const char *name)
{
	int error = public_name_check(name);
	if (error)
		return error;
	struct xattr_call c = { .kind = XATTR_REMOVE, .name = name };
	return xattr_public(mp, ino, &c);
}

/* ---- extent map of the xattr blocks (FIEMAP_FLAG_XATTR) ---- */

struct ablk_list {
	struct rlfs_mount *mp;
	uint64_t *fsbno;        /* first block of each run */
	uint32_t *nblks;        /* its length */
	size_t n, cap;
};

static int ablk_add(struct ablk_list *l, uint64_t fsbno, uint32_t nblks)
{
	if (fsbno == 0 || nblks == 0 || fsbno >= l->mp->dblocks ||
	    nblks > l->mp->dblocks - fsbno)
		return rlfs_corrupt(l->mp, fsbno, "xattr", "block run of %u outside the device",
				    nblks);
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		uint64_t *f = realloc(l->fsbno, cap * sizeof(*f));
		if (!f)
			return -ENOMEM;
		l->fsbno = f;
		uint32_t *b = realloc(l->nblks, cap * sizeof(*b));
		if (!b)
			return -ENOMEM;
		l->nblks = b;
		l->cap = cap;
	}
	l->fsbno[l->n] = fsbno;
	l->nblks[l->n] = nblks;
	l->n++;
	return 0;
}

static int ablk_tree_fn(struct rlfs_btree_cur *cur, struct rlfs_buf *bp, unsigned level,
			void *priv)
{
	(void)cur;
	(void)level;
	return ablk_add(priv, bp->fsbno, 1);
}

static int ablk_value_fn(struct rlfs_btree_cur *cur, const void *rec, void *priv)
{
	(void)cur;
	struct ablk_list *l = priv;
	const struct rlfs_attr_rec *r = rec;
	uint32_t nblks = value_blocks(l->mp, rlfs_get32(r->valuelen));
	return nblks ? ablk_add(l, rlfs_get64(r->value_fsbno), nblks) : 0;
}

/* Sort the runs by block number (insertion order is tree order; the
 * device order gives the longest merged extents). */
static void ablk_sort(struct ablk_list *l)
{
	for (size_t i = 1; i < l->n; i++) {
		uint64_t f = l->fsbno[i];
		uint32_t b = l->nblks[i];
		size_t j = i;
		while (j > 0 && l->fsbno[j - 1] > f) {
			l->fsbno[j] = l->fsbno[j - 1];
			l->nblks[j] = l->nblks[j - 1];
			j--;
		}
		l->fsbno[j] = f;
		l->nblks[j] = b;
	}
}

int rlfs_get_xattr_extents(struct rlfs_mount *mp, uint64_t ino, uint64_t start, uint64_t len,
			   struct rlfs_ioc_extent *ext, uint32_t max, uint32_t *count)
{
	struct rlfs_inode *ip;
	struct rlfs_trans *tp;
	struct ablk_list l = { .mp = mp };
	int error;

	*count = 0;
	error = rlfs_fiemap_prep(mp, start, &len);
	if (error)
		return error;
	error = rlfs_iget(mp, ino, &ip);
	if (error)
		return error;
	pthread_rwlock_rdlock(&ip->iolock);
	error = check_aformat(ip);
	if (error || ip->aformat != RLFS_FMT_BTREE || max == 0)
		goto out_unlock;
	error = rlfs_trans_alloc(mp, &mp->resv.tr_rdonly, 0, RLFS_TRANS_RDONLY, &tp);
	if (error)
		goto out_unlock;
	struct rlfs_btree_cur cur;
	rlfs_btree_cur_init(&cur, tp, &rlfs_attrbt_ops, 0, ip, NULL);
	error = rlfs_btree_visit_blocks(&cur, ablk_tree_fn, &l);
	rlfs_btree_cur_del(&cur);
	if (!error) {
		rlfs_btree_cur_init(&cur, tp, &rlfs_attrbt_ops, 0, ip, NULL);
		error = rlfs_btree_query_all(&cur, ablk_value_fn, &l);
		rlfs_btree_cur_del(&cur);
	}
	rlfs_trans_cancel(tp);
	if (error)
		goto out_unlock;
	ablk_sort(&l);
	/* merge runs that follow each other on the device; logical offsets
	 * count the blocks before each run */
	uint64_t end = start + len;      /* no wrap: fiemap_prep */
	uint64_t lblk = 0;
	for (size_t i = 0; i < l.n && *count < max;) {
		uint64_t fsbno = l.fsbno[i], nblks = l.nblks[i];
		size_t j = i + 1;
		while (j < l.n && l.fsbno[j] == fsbno + nblks) {
			nblks += l.nblks[j];
			j++;
		}
		uint64_t lo = lblk << mp->blocklog, bytes = nblks << mp->blocklog;
		lblk += nblks;
		i = j;
		if (lo >= end)
			break;
		if (lo + bytes <= start)
			continue;
		struct rlfs_ioc_extent *x = &ext[(*count)++];
		memset(x, 0, sizeof(*x));
		x->logical = lo;
		x->physical = fsbno << mp->blocklog;
		x->length = bytes;
		x->flags = i == l.n ? RLFS_IOC_EXT_LAST : 0;
	}
out_unlock:
	free(l.fsbno);
	free(l.nblks);
	pthread_rwlock_unlock(&ip->iolock);
	rlfs_irele(ip);
	return error;
}

/*
 * trans_resv.c: per-transaction-type log reservations (trans_resv.h has
 * the contract; docs/DESIGN.md "Log reservations" the table).
 * Model: xfs_trans_resv.c (our own formulas, for our log format).
 *
 * Everything is counted in log items first and turned into bytes by
 * rlfs_trans_resv_bytes at the end, the same measure rlfs_trans_commit
 * uses to count what a transaction really logged:
 *
 *   an image   a block the transaction dirties: one whole block in the
 *              record's payload plus one descriptor (an inode core goes
 *              as its whole cluster block; v1 inode clusters are one
 *              block)
 *   an intent  one payload block plus one descriptor
 *   a done     one descriptor; a cancel (a freed block) one descriptor
 *
 * Every buffer is counted once per change that may dirty it, even when two
 * changes would hit the same block: an upper bound, never an exact count.
 *
 * Btree terms (h = the most levels the tree can have at this geometry,
 * computed from the minimum fill of its blocks: half of maxrecs):
 *
 *   path(h)    one record insert or delete: the block at every level, a
 *              split or merge sibling at every level, and a new root:
 *              2h + 1 blocks
 *   range(h,n) n consecutive records changed (a batch of extents of one
 *              file): the leaves holding them (n / minleaf + 2), each with
 *              a split sibling, and likewise at every level above, plus a
 *              new root
 *   allocop    one extent allocated or freed in the free-space btrees:
 *              AGF + AGFL + path(h_free) in the bnobt and in the cntbt,
 *              and the same again for the AGFL refill or trim
 *              (rlfs_alloc_fix_freelist) that runs before it:
 *              2 + 4 * path(h_free)
 *   agflop     a btree block taken from or given back to the AGFL
 *              (inobt, refcountbt): the AGFL fix before it, AGF, AGFL:
 *              2 + 2 * path(h_free)
 *   rmapop     one rmap record map or unmap (RMAP feature, else 0):
 *              path(h_rmap) (a split record's delete and insert touch
 *              the same leaf).  An allocop adds one (the AGFL refill's or
 *              trim's OWN_AG record, or the allocated metadata block's
 *              own; as XFS's xfs_allocfree_block_count adds one rmapbt
 *              path), an agflop two (the owner change).
 *
 * Every data-fork record changed queues up to two RUI items (unmap the
 * old mapping, map the new one), counted as intents in c_bmap; the RUI
 * steps themselves (tr_rui) join the deferred steps every type rolls into.
 */
#include "trans_resv.h"
#include "rlfs.h"
#include "alloc.h"
#include "bmap.h"
#include "btree.h"
#include "defer.h"
#include "dir.h"
#include "ialloc.h"
#include "log.h"
#include "refcount.h"
#include "rmap.h"
#include "xattr.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the geometry facts the formulas use, in blocks */
struct resv_geo {
	uint32_t h_free, h_ino, h_refc, h_bmbt, h_dir, h_attr;
	uint32_t h_rmap;               /* 0 without the RMAP feature */
	uint32_t bmbt_minleaf, bmbt_minnode;
	uint32_t refc_minleaf, refc_minnode;
	uint32_t chunk_blocks;
	uint32_t xattr_value_blocks;   /* remote blocks of the largest value */
	uint32_t symlink_blocks;       /* remote blocks of the longest target */
	bool reflink;
};

uint64_t rlfs_trans_resv_bytes(const struct rlfs_mount *mp, uint64_t nimages,
			       uint64_t ndescs)
{
	uint64_t per_hdr = rlfs_log_items_per_rec(mp->blocksize);
	uint64_t hdrs = ndescs ? (ndescs + per_hdr - 1) / per_hdr : 0;
	return (nimages + hdrs) * mp->blocksize;
}

/* Levels of a btree that holds nrecs records at the minimum fill. */
static uint32_t tree_height(struct rlfs_mount *mp, const struct rlfs_btree_ops *ops,
			    uint64_t nrecs, uint32_t *minleaf, uint32_t *minnode)
{
	uint32_t ml = RLFS_MAX(rlfs_btree_maxrecs(mp, ops, true) / 2, 1u);
	uint32_t mn = RLFS_MAX(rlfs_btree_maxrecs(mp, ops, false) / 2, 2u);
	if (minleaf)
		*minleaf = ml;
	if (minnode)
		*minnode = mn;
	uint64_t n = (nrecs + ml - 1) / ml;
	uint32_t lev = 1;
	while (n > 1) {
		n = (n + mn - 1) / mn;
		lev++;
	}
	return RLFS_MIN(lev, (uint32_t)RLFS_BTREE_MAXLEVELS);
}

/* path(h): a record insert/delete with splits or merges on every level
 * and a new root. */
static uint64_t path(uint32_t h)
{
	return 2ull * h + 1;
}

/* range(h, n): n consecutive records of a tree of h levels changed. */
static uint64_t range(uint32_t h, uint32_t minleaf, uint32_t minnode, uint64_t n)
{
	uint64_t blocks = 0, at = n / minleaf + 2;   /* leaves touched */
	for (uint32_t lev = 0; lev < h; lev++) {
		blocks += 2 * at;                    /* each, and a split sibling */
		at = (2 * at) / minnode + 2;         /* parents of those */
	}
	return blocks + 1;                           /* a new root */
}

/* rmapop: one rmap map or unmap (images); 0 without rmap. */
static uint64_t rmapop(const struct resv_geo *g)
{
	return g->h_rmap ? path(g->h_rmap) : 0;
}

/* allocop: one extent allocated or freed (images). */
static uint64_t allocop(const struct resv_geo *g)
{
	return 2 + 4 * path(g->h_free) + rmapop(g);
}

/* agflop: a btree block from/to the AGFL (images). */
static uint64_t agflop(const struct resv_geo *g)
{
	return 2 + 2 * path(g->h_free) + 2 * rmapop(g);
}

/* A count of log items: images (whole blocks: buffers, intent payloads)
 * and descriptors (one per image, plus dones and cancels). */
struct resv_cnt {
	uint64_t images, descs;
};

static void add_images(struct resv_cnt *c, uint64_t n)
{
	c->images += n;
	c->descs += n;
}

static void add_intents(struct resv_cnt *c, uint64_t n)
{
	c->images += n;     /* payload block */
	c->descs += n;
}

static void add_descs(struct resv_cnt *c, uint64_t n)
{
	c->descs += n;
}

static uint64_t cnt_bytes(const struct rlfs_mount *mp, const struct resv_cnt *c)
{
	return rlfs_trans_resv_bytes(mp, c->images, c->descs);
}

/* a = the larger of a and b (in bytes) */
static void cnt_max(const struct rlfs_mount *mp, struct resv_cnt *a, const struct resv_cnt *b)
{
	if (cnt_bytes(mp, b) > cnt_bytes(mp, a))
		*a = *b;
}

static void cnt_add(struct resv_cnt *a, const struct resv_cnt *b)
{
	a->images += b->images;
	a->descs += b->descs;
}

/* ---- building blocks (images and descriptors of one operation) ---- */

/* One inode core: its cluster block. */
static struct resv_cnt c_inode(void)
{
	struct resv_cnt c = { 0, 0 };
	add_images(&c, 1);
	return c;
}

/* Allocate an inode: a new chunk (its inode blocks, the chunk's extent),
 * the AGI, an inobt record insert whose split blocks come from the AGFL.
 * Covers taking a free inode of an existing chunk (AGI + inobt path). */
static struct resv_cnt c_ialloc(const struct resv_geo *g)
{
	struct resv_cnt c = { 0, 0 };
	add_images(&c, g->chunk_blocks + allocop(g) + 1 + path(g->h_ino) + agflop(g));
	return c;
}

/* Free an inode (inactivation): AGI, inobt record change or delete (its
 * blocks back to the AGFL), and a fully free chunk freed: its extent
 * (allocop) and a cancel for each of its inode blocks. */
static struct resv_cnt c_ifree(const struct resv_geo *g)
{
	struct resv_cnt c = { 0, 0 };
	add_images(&c, 1 + path(g->h_ino) + agflop(g) + allocop(g));
	add_descs(&c, g->chunk_blocks);
	return c;
}

/* Add or remove one directory entry: the dirbt path, each new (split) or
 * freed (merged) block allocated or freed through the allocator, and the
 * directory's inode core. */
static struct resv_cnt c_dirent(const struct resv_geo *g)
{
	struct resv_cnt c = { 0, 0 };
	add_images(&c, path(g->h_dir) + (g->h_dir + 1) * allocop(g) + 1);
	return c;
}

/* The on-disk unlinked list (iunlink.c): AGI bucket, the inode being added
 * or removed and its neighbour on the list. */
static struct resv_cnt c_iunlink(void)
{
	struct resv_cnt c = { 0, 0 };
	add_images(&c, 3);
	return c;
}

/* Set one xattr: the attrbt path with its split blocks (allocator), the
 * new value's remote blocks (one contiguous run: minlen = the run, one
 * allocop), the old value's run freed (one allocop, a cancel per block),
 * the shortform -> btree conversion (a root and up to 3 more leaves, an
 * allocop each) and the inode core. */
static struct resv_cnt c_xattr_set(const struct resv_geo *g)
{
	struct resv_cnt c = { 0, 0 };
	uint64_t v = g->xattr_value_blocks;
	add_images(&c, path(g->h_attr) + (g->h_attr + 1) * allocop(g) +
		       v + allocop(g) +          /* new value */
		       allocop(g) +              /* old value freed */
		       4 + 4 * allocop(g) + 1);  /* conversion, inode */
	add_descs(&c, v);                        /* old value's cancels */
	return c;
}

/* Remove one xattr: attrbt path with merges (each freed block an
 * allocop and a cancel), the value's run freed (an allocop, a cancel per
 * block), the inode core. */
static struct resv_cnt c_xattr_rm(const struct resv_geo *g)
{
	struct resv_cnt c = { 0, 0 };
	uint64_t v = g->xattr_value_blocks;
	add_images(&c, path(g->h_attr) + (g->h_attr + 1) * allocop(g) + allocop(g) + 1);
	add_descs(&c, v + g->h_attr + 1);
	return c;
}

/* Map or unmap n consecutive extent records of one file: the bmbt range,
 * one allocop for every bmbt block that may be allocated or freed (half
 * the range's blocks, the split siblings, plus one), and the inode core. */
static struct resv_cnt c_bmap(const struct resv_geo *g, uint64_t n)
{
	struct resv_cnt c = { 0, 0 };
	uint64_t r = range(g->h_bmbt, g->bmbt_minleaf, g->bmbt_minnode, n);
	add_images(&c, r + (r / 2 + 1) * allocop(g) + 1);
	add_descs(&c, r / 2 + 1);                /* freed bmbt blocks' cancels */
	if (g->h_rmap)                           /* the RUIs the changes queue */
		add_intents(&c, 2 * (2 * n / RLFS_RUI_MAX_ITEMS + 1));
	return c;
}

/* Intents logged for n deferred items of one type (one intent per
 * RLFS_EFI_MAX_ITEMS / RLFS_CUI_MAX_ITEMS; the two types may interleave
 * and split batches, hence the +1). */
static struct resv_cnt c_intents(uint64_t n)
{
	struct resv_cnt c = { 0, 0 };
	add_intents(&c, 2 * (n / RLFS_EFI_MAX_ITEMS + 1));
	return c;
}

/* One refcount adjustment of an extent (CUI item, clone's increase, a
 * direct decrease): the AGFL fix, two edge splits and the merges at both
 * ends (4 paths), the records inside the range (range: at most one leaf's
 * worth here: ASSUMPTION, an extent's range is not cut in pieces), and,
 * with direct_free (clone's release of the destination's old blocks; a
 * CUI's decrease queues EFIs instead, counted by the caller), the frees
 * of blocks that reach 0 (2 allocops). */
static struct resv_cnt c_refc_adjust(const struct resv_geo *g, bool direct_free)
{
	struct resv_cnt c = { 0, 0 };
	if (!g->reflink)
		return c;
	add_images(&c, agflop(g) + 4 * path(g->h_refc) +
		       range(g->h_refc, g->refc_minleaf, g->refc_minnode, g->refc_minleaf) +
		       (direct_free ? 2 * allocop(g) : 0));
	return c;
}

/* Free one extent (EFI item, or a direct free): allocop, and cancels for
 * cached metadata blocks in it (the most a freed metadata extent has: an
 * inode chunk or an xattr value). */
static struct resv_cnt c_free_extent(const struct resv_geo *g)
{
	struct resv_cnt c = { 0, 0 };
	add_images(&c, allocop(g));
	add_descs(&c, RLFS_MAX(g->chunk_blocks, g->xattr_value_blocks));
	return c;
}

/* ---- the table ---- */

static void set(const struct rlfs_mount *mp, struct rlfs_trans_res *r, const char *name,
		const struct resv_cnt *c, uint32_t log_count)
{
	uint64_t b = cnt_bytes(mp, c);
	r->name = name;
	r->log_bytes = b > UINT32_MAX ? UINT32_MAX : (uint32_t)b;
	r->log_count = log_count;
}

static uint64_t geometry_key(const struct rlfs_mount *mp)
{
	uint64_t k = mp->blocksize;
	k = k * 1000003u + mp->agblocks;
	k = k * 1000003u + mp->agcount;
	k = k * 1000003u + mp->dblocks;
	k = k * 1000003u + mp->inopblock;
	k = k * 1000003u + mp->chunk_blocks;
	k = k * 1000003u + mp->features_incompat;
	return k | 1; /* never 0: 0 means not computed */
}

void rlfs_trans_resv_init(struct rlfs_mount *mp)
{
	uint64_t key = geometry_key(mp);
	struct rlfs_trans_resv *rv = &mp->resv;
	if (rv->geometry_key == key)
		return;
	memset(rv, 0, sizeof(*rv));
	rv->geometry_key = key;
	if (!mp->blocksize || !mp->agblocks)
		return; /* not set up yet: the next call computes */

	struct resv_geo g;
	memset(&g, 0, sizeof(g));
	uint32_t lb = tree_height(mp, &rlfs_bnobt_ops, ((uint64_t)mp->agblocks + 1) / 2, NULL, NULL);
	uint32_t lc = tree_height(mp, &rlfs_cntbt_ops, ((uint64_t)mp->agblocks + 1) / 2, NULL, NULL);
	g.h_free = RLFS_MAX(lb, lc);
	g.h_ino = rlfs_inobt_maxlevels(mp);
	g.h_rmap = rlfs_has_rmap(mp) ? rlfs_rmap_maxlevels(mp) : 0;
	g.reflink = rlfs_has_reflink(mp);
	g.h_refc = tree_height(mp, &rlfs_refcountbt_ops, mp->agblocks, &g.refc_minleaf,
			       &g.refc_minnode);
	/* a file has at most one extent per block of the device */
	g.h_bmbt = tree_height(mp, &rlfs_bmbt_ops, mp->dblocks + 1, &g.bmbt_minleaf,
			       &g.bmbt_minnode);
	/* names and xattrs of one inode: 2^32 (the hash space) */
	g.h_dir = tree_height(mp, &rlfs_dirbt_ops, 1ull << 32, NULL, NULL);
	g.h_attr = tree_height(mp, &rlfs_attrbt_ops, 1ull << 32, NULL, NULL);
	g.chunk_blocks = mp->chunk_blocks;
	/* remote blocks carry a small header: count bs - 128 payload bytes */
	uint32_t payload = mp->blocksize > 256 ? mp->blocksize - 128 : mp->blocksize / 2;
	g.xattr_value_blocks = (RLFS_XATTR_SIZE_MAX + payload - 1) / payload;
	g.symlink_blocks = (4096 + payload - 1) / payload;

	struct resv_cnt c, t;

	/* tr_rdonly: nothing */
	c = (struct resv_cnt){ 0, 0 };
	set(mp, &rv->tr_rdonly, "tr_rdonly", &c, 1);

	/* tr_ichange: one inode core */
	c = c_inode();
	set(mp, &rv->tr_ichange, "tr_ichange", &c, 1);

	/* tr_sb: the superblock */
	c = (struct resv_cnt){ 0, 0 };
	add_images(&c, 1);
	set(mp, &rv->tr_sb, "tr_sb", &c, 1);

	/* tr_create: the new inode and the directory's cores, the inode
	 * allocation, one dir entry, two inherited ACLs (default and
	 * access), the unlinked list (O_TMPFILE), the superblock */
	c = (struct resv_cnt){ 0, 0 };
	add_images(&c, 2 + 1);
	t = c_ialloc(&g); cnt_add(&c, &t);
	t = c_dirent(&g); cnt_add(&c, &t);
	t = c_xattr_set(&g); cnt_add(&c, &t); cnt_add(&c, &t);
	t = c_iunlink(); cnt_add(&c, &t);
	struct resv_cnt create = c;
	set(mp, &rv->tr_create, "tr_create", &c, 1);

	/* tr_mkdir: tr_create plus the new directory's first block and its
	 * allocation */
	add_images(&c, 1 + allocop(&g));
	set(mp, &rv->tr_mkdir, "tr_mkdir", &c, 1);

	/* tr_symlink: tr_create plus the target's remote blocks, each its
	 * own extent at worst */
	c = create;
	add_images(&c, g.symlink_blocks * (1 + allocop(&g)));
	set(mp, &rv->tr_symlink, "tr_symlink", &c, 1);

	/* tr_link: inode and directory cores, one dir entry, the unlinked
	 * list (linking an O_TMPFILE inode), the superblock */
	c = (struct resv_cnt){ 0, 0 };
	add_images(&c, 2 + 1);
	t = c_dirent(&g); cnt_add(&c, &t);
	t = c_iunlink(); cnt_add(&c, &t);
	set(mp, &rv->tr_link, "tr_link", &c, 1);

	/* the deferred steps, which every type that queues work rolls into */
	struct resv_cnt efi = { 0, 0 }, cui = { 0, 0 };
	add_descs(&efi, 1);                                   /* EFD */
	for (unsigned i = 0; i < RLFS_EFI_MAX_ITEMS; i++) {
		t = c_free_extent(&g);
		cnt_add(&efi, &t);
	}
	t = c_intents(RLFS_EFI_MAX_ITEMS); cnt_add(&efi, &t); /* -EAGAIN rest */
	/* tr_efi: EFD, RLFS_EFI_MAX_ITEMS extent frees, intents for what is
	 * left or queued */
	set(mp, &rv->tr_efi, "tr_efi", &efi, 1);
	add_descs(&cui, 1);                                   /* CUD */
	for (unsigned i = 0; i < RLFS_CUI_MAX_ITEMS; i++) {
		t = c_refc_adjust(&g, false);
		cnt_add(&cui, &t);
	}
	/* blocks reaching 0 become EFI items: a few per CUI item */
	t = c_intents(4 * RLFS_CUI_MAX_ITEMS); cnt_add(&cui, &t);
	/* tr_cui: CUD, RLFS_CUI_MAX_ITEMS refcount adjustments, the EFIs
	 * they queue */
	set(mp, &rv->tr_cui, "tr_cui", &cui, 1);
	/* a BUI step: BUD, RLFS_BUI_MAX_ITEMS maps or unmaps of one file
	 * (each a bmbt range of two records: an unmap inside an extent
	 * splits it), the inode core, the CUI/EFI intents the unmaps queue */
	struct resv_cnt bui = c_bmap(&g, 2ull * RLFS_BUI_MAX_ITEMS);
	add_descs(&bui, 1);
	t = c_inode(); cnt_add(&bui, &t);
	t = c_intents(RLFS_BUI_MAX_ITEMS); cnt_add(&bui, &t);
	/* an RUI step: RUD, RLFS_RUI_MAX_ITEMS rmap changes (a convert is an
	 * unmap and a map), the AGFL fixes before them (two refills at most:
	 * one fix tops the list up for several items) */
	struct resv_cnt rui = { 0, 0 };
	add_descs(&rui, 1);
	if (g.h_rmap)
		add_images(&rui, RLFS_RUI_MAX_ITEMS * 2 * rmapop(&g) + 2 * allocop(&g));
	struct resv_cnt step = efi;
	cnt_max(mp, &step, &cui);
	cnt_max(mp, &step, &bui);
	cnt_max(mp, &step, &rui);

	/* tr_remove: both inode cores, one dir entry, the unlinked list, the
	 * superblock, rmdir's empty directory block freed (cancel, allocop)
	 * and its intent; rolls into the defer steps */
	c = (struct resv_cnt){ 0, 0 };
	add_images(&c, 2 + 1 + allocop(&g));
	add_descs(&c, 1);
	t = c_dirent(&g); cnt_add(&c, &t);
	t = c_iunlink(); cnt_add(&c, &t);
	t = c_intents(1); cnt_add(&c, &t);
	cnt_max(mp, &c, &step);
	set(mp, &rv->tr_remove, "tr_remove", &c, 2);

	/* tr_rename: four inode cores (two dirs, source, target) and the
	 * whiteout's, the whiteout's inode allocation, an entry removed and
	 * one added, the target entry replaced and the moved directory's
	 * ".." (two dirbt paths), the unlinked list (target's last link),
	 * the superblock */
	c = (struct resv_cnt){ 0, 0 };
	add_images(&c, 5 + 1 + 2 * path(g.h_dir));
	t = c_ialloc(&g); cnt_add(&c, &t);
	t = c_dirent(&g); cnt_add(&c, &t); cnt_add(&c, &t);
	t = c_iunlink(); cnt_add(&c, &t);
	cnt_max(mp, &c, &step);
	set(mp, &rv->tr_rename, "tr_rename", &c, 2);

	/* tr_setattr: the inode core, an access ACL rewritten by chmod */
	c = c_inode();
	t = c_xattr_set(&g); cnt_add(&c, &t);
	set(mp, &rv->tr_setattr, "tr_setattr", &c, 1);

	/* tr_itruncate: one batch of RLFS_TX_UNMAP_EXTENTS extents unmapped
	 * (+1: the extent cut at the new EOF) with their EFI/CUI intents, the
	 * inode core; rolls into the defer steps */
	c = c_bmap(&g, RLFS_TX_UNMAP_EXTENTS + 1);
	t = c_intents(RLFS_TX_UNMAP_EXTENTS + 1); cnt_add(&c, &t);
	cnt_max(mp, &c, &step);
	set(mp, &rv->tr_itruncate, "tr_itruncate", &c, 2);

	/* tr_punch: as tr_itruncate, plus the record split at each end */
	c = c_bmap(&g, RLFS_TX_UNMAP_EXTENTS + 2);
	t = c_intents(RLFS_TX_UNMAP_EXTENTS + 2); cnt_add(&c, &t);
	cnt_max(mp, &c, &step);
	set(mp, &rv->tr_punch, "tr_punch", &c, 2);

	/* tr_write: allocating up to RLFS_TX_HOLES holes with at most
	 * RLFS_TX_ALLOC_BUDGET + RLFS_TX_HOLES allocator calls (each an
	 * allocop and two bmbt records: the new extent and a split), or
	 * converting them written again (every extent split in two), the
	 * inode core */
	uint64_t calls = RLFS_TX_ALLOC_BUDGET + RLFS_TX_HOLES;
	c = c_bmap(&g, 2 * calls + 2);
	add_images(&c, calls * allocop(&g));
	t = c_bmap(&g, 4 * RLFS_TX_HOLES + 2);
	cnt_max(mp, &c, &t);
	set(mp, &rv->tr_write, "tr_write", &c, 1);

	/* tr_falloc: the allocation half of tr_write */
	c = c_bmap(&g, 2 * calls + 2);
	add_images(&c, calls * allocop(&g));
	set(mp, &rv->tr_falloc, "tr_falloc", &c, 1);

	/* tr_cow: one chunk of at most RLFS_TX_COW_BLOCKS blocks over at most
	 * RLFS_TX_COW_EXTENTS old extents: the new blocks allocated (at most
	 * RLFS_TX_COW_EXTENTS allocator calls: rlfs_cow_prepare stops
	 * there), the remap queued as BUI unmaps of the old extents and maps
	 * of the new ones (new runs are cut where old states change when an
	 * unshare keeps unwritten blocks: at most one per old and new
	 * extent), the inode core; the remap itself happens in the defer
	 * steps it rolls into */
	c = c_inode();
	add_images(&c, (uint64_t)RLFS_TX_COW_EXTENTS * allocop(&g));
	t = c_intents(3ull * RLFS_TX_COW_EXTENTS); cnt_add(&c, &t);
	cnt_max(mp, &c, &step);
	set(mp, &rv->tr_cow, "tr_cow", &c, 2);

	/* tr_cowfork: one transaction of the CoW fork (cowfork.c) over at
	 * most RLFS_TX_COWFORK_EXTENTS staged extents: stage (an allocation,
	 * a CoW-domain refcount record and an rmap OWN_COW record each),
	 * remap (both records dropped per staged piece, BUI unmaps of up to
	 * RLFS_TX_COW_EXTENTS old extents and maps of the pieces, the inode
	 * core; the switch itself happens in the defer steps it rolls into)
	 * or cancel (both records dropped and a direct free per piece) */
	c = c_inode();
	for (unsigned i = 0; i < RLFS_TX_COWFORK_EXTENTS; i++) {
		t = c_refc_adjust(&g, false); cnt_add(&c, &t);
		t = c_free_extent(&g); cnt_add(&c, &t);
		add_images(&c, rmapop(&g));
	}
	t = c_intents(RLFS_TX_COW_EXTENTS + RLFS_TX_COWFORK_EXTENTS); cnt_add(&c, &t);
	cnt_max(mp, &c, &step);
	set(mp, &rv->tr_cowfork, "tr_cowfork", &c, 2);

	/* tr_clone: the plan of RLFS_TX_CLONE_PIECES pieces: the inode core
	 * and the intents of three items per piece (BUI unmap of the old
	 * block, CUI increase, BUI map); the remapping happens in the defer
	 * steps it rolls into */
	c = c_inode();
	t = c_intents(3ull * RLFS_TX_CLONE_PIECES); cnt_add(&c, &t);
	cnt_max(mp, &c, &step);
	set(mp, &rv->tr_clone, "tr_clone", &c, 2);

	/* tr_xattr_set / tr_xattr_rm: one xattr */
	c = c_xattr_set(&g);
	set(mp, &rv->tr_xattr_set, "tr_xattr_set", &c, 1);
	c = c_xattr_rm(&g);
	set(mp, &rv->tr_xattr_rm, "tr_xattr_rm", &c, 1);

	/* tr_inactive: a batch of RLFS_TX_INACT_EXTENTS extents unmapped with
	 * their intents, or the last step: the xattr fork's tree destroyed
	 * (ASSUMPTION: a small tree, a path and its value blocks), the inode
	 * freed (ifree), off the unlinked list, the superblock; rolls into
	 * the defer steps */
	c = c_bmap(&g, RLFS_TX_INACT_EXTENTS + 1);
	t = c_intents(RLFS_TX_INACT_EXTENTS + 1); cnt_add(&c, &t);
	t = c_xattr_rm(&g); cnt_add(&c, &t);
	t = c_ifree(&g); cnt_add(&c, &t);
	t = c_iunlink(); cnt_add(&c, &t);
	add_images(&c, 1);
	cnt_max(mp, &c, &step);
	set(mp, &rv->tr_inactive, "tr_inactive", &c, 2);

	/* tr_recover: an old intent's done and its items' work (a defer
	 * step), then the defer steps of what they queue */
	c = step;
	set(mp, &rv->tr_recover, "tr_recover", &c, 2);

	/* tr_mkfs: every AG's headers (AGF, AGI, AGFL) and btree roots
	 * (bnobt, cntbt, inobt, refcountbt, rmapbt), the AGFL's initial
	 * blocks, the superblock */
	c = (struct resv_cnt){ 0, 0 };
	add_images(&c, (uint64_t)mp->agcount * (3 + 5 + rlfs_agfl_min(mp)) + 1);
	set(mp, &rv->tr_mkfs, "tr_mkfs", &c, 1);

	/* tr_fsck: repairs log what they rebuild; bounded by the log's size
	 * only (a repair is one transaction per structure): the log */
	c = (struct resv_cnt){ 0, 0 };
	add_images(&c, mp->log ? mp->log->size_blocks : (uint64_t)UINT32_MAX / mp->blocksize);
	set(mp, &rv->tr_fsck, "tr_fsck", &c, 1);
}

struct rlfs_trans_res *rlfs_trans_resv_nth(struct rlfs_mount *mp, unsigned i)
{
	if (i >= RLFS_TRANS_RESV_NTYPES)
		return NULL;
	static const size_t off[] = {
#define RLFS_TRANS_RESV_OFF(f, w) offsetof(struct rlfs_trans_resv, f),
		RLFS_TRANS_RESV_TYPES(RLFS_TRANS_RESV_OFF)
#undef RLFS_TRANS_RESV_OFF
	};
	return (struct rlfs_trans_res *)((char *)&mp->resv + off[i]);
}

const char *rlfs_trans_resv_what(unsigned i)
{
	static const char *const what[] = {
#define RLFS_TRANS_RESV_WHAT(f, w) w,
		RLFS_TRANS_RESV_TYPES(RLFS_TRANS_RESV_WHAT)
#undef RLFS_TRANS_RESV_WHAT
	};
	return i < sizeof(what) / sizeof(what[0]) ? what[i] : "";
}

/* Append one line to $RLFS_RESV_REPORT (one write: O_APPEND keeps lines
 * of concurrent processes whole). */
static void report_line(const char *line)
{
	const char *path = getenv("RLFS_RESV_REPORT");
	if (!path || !*path)
		return;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	ssize_t n = write(fd, line, strlen(line));
	(void)n;
	close(fd);
}

void rlfs_trans_resv_account(struct rlfs_mount *mp, struct rlfs_trans_res *res,
			     uint64_t used_bytes)
{
	(void)mp;
	uint32_t used = used_bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)used_bytes;
	res->commits++;
	if (used > res->max_used_bytes)
		res->max_used_bytes = used;
	if (used_bytes <= res->log_bytes)
		return;
	res->overruns++;
	char line[160];
	snprintf(line, sizeof(line),
		 "reflinkfs: log reservation overrun: %s used %" PRIu64 " bytes > reserved %u\n",
		 res->name ? res->name : "tr_?", used_bytes, res->log_bytes);
	fputs(line, stderr);
	report_line(line);
}

void rlfs_trans_resv_report(struct rlfs_mount *mp)
{
	if (!getenv("RLFS_RESV_REPORT") || !mp->resv.geometry_key)
		return;
	for (unsigned i = 0; i < RLFS_TRANS_RESV_NTYPES; i++) {
		const struct rlfs_trans_res *r = rlfs_trans_resv_nth(mp, i);
		if (!r->commits || !r->name)
			continue;
		char line[160];
		snprintf(line, sizeof(line),
			 "resv %s reserved %u max %u commits %" PRIu64 " bs %u\n",
			 r->name, r->log_bytes, r->max_used_bytes, r->commits, mp->blocksize);
		report_line(line);
	}
}

/*
 * reflinkfs on-disk format, version 1.
 *
 * Every structure here is written to disk exactly as laid out: fixed-width
 * little-endian fields (the rlfs_leNN types cannot be mixed with native
 * integers by accident; use the rlfs_get/put helpers), natural alignment, and
 * a static_assert on every size so that a compiler change cannot move a byte.
 * docs/SPEC.md describes every field in prose; keep the two in step.
 *
 * Addressing.  The device is an array of blocks of sb_blocksize bytes.  A
 * filesystem block number (fsbno) is the linear block index on the device.
 * The device is cut into sb_agcount allocation groups (AGs) of sb_agblocks
 * blocks each (the last one may be shorter); agno = fsbno / sb_agblocks and
 * agbno = fsbno % sb_agblocks.  fsbno 0 is never a valid pointer to a file
 * block or btree block (it holds the primary superblock), so 0 means "none".
 *
 * Inode numbers: an inode lives in block fsbno at slot i (0 <= i <
 * blocksize / inodesize); its number is ino = fsbno * inodes_per_block + i.
 *
 * Layout of every AG (agbno):
 *   0  superblock (primary in AG 0, backup copies elsewhere)
 *   1  AG header (struct rlfs_agh): free space, inode and tree roots
 *   2  AGFL: free list of blocks reserved for btree splits
 *   3+ btree roots made by mkfs, then free space
 *
 * Model: XFS (xfs_format.h, xfs_da_format.h) simplified: one AG header
 * instead of AGF+AGI, linear fsbno, 64-bit btree pointers everywhere.
 */
#ifndef REFLINKFS_FORMAT_H
#define REFLINKFS_FORMAT_H

#include <assert.h>
#ifndef RLFS_NO_SIZE_ASSERT
#define RLFS_SA(c, m) static_assert(c, m)
#else
#define RLFS_SA(c, m)
#endif
#include <stddef.h>
#include <stdint.h>

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define RLFS_LE16(x) ((uint16_t)(x))
#define RLFS_LE32(x) ((uint32_t)(x))
#define RLFS_LE64(x) ((uint64_t)(x))
#else
#define RLFS_LE16(x) __builtin_bswap16(x)
#define RLFS_LE32(x) __builtin_bswap32(x)
#define RLFS_LE64(x) __builtin_bswap64(x)
#endif

typedef struct { uint16_t v; } rlfs_le16;
typedef struct { uint32_t v; } rlfs_le32;
typedef struct { uint64_t v; } rlfs_le64;

static inline uint16_t rlfs_get16(rlfs_le16 x) { return RLFS_LE16(x.v); }
static inline uint32_t rlfs_get32(rlfs_le32 x) { return RLFS_LE32(x.v); }
static inline uint64_t rlfs_get64(rlfs_le64 x) { return RLFS_LE64(x.v); }
static inline rlfs_le16 rlfs_le16_of(uint16_t v) { rlfs_le16 r = { RLFS_LE16(v) }; return r; }
static inline rlfs_le32 rlfs_le32_of(uint32_t v) { rlfs_le32 r = { RLFS_LE32(v) }; return r; }
static inline rlfs_le64 rlfs_le64_of(uint64_t v) { rlfs_le64 r = { RLFS_LE64(v) }; return r; }
#define rlfs_put16(f, val) ((f) = rlfs_le16_of(val))
#define rlfs_put32(f, val) ((f) = rlfs_le32_of(val))
#define rlfs_put64(f, val) ((f) = rlfs_le64_of(val))

#define RLFS_UUID_SIZE 16
#define RLFS_VERSION 1

/* Block sizes mkfs accepts. */
#define RLFS_MIN_BLOCKSIZE 1024u
#define RLFS_MAX_BLOCKSIZE 65536u
#define RLFS_DEFAULT_BLOCKSIZE 4096u
#define RLFS_DEFAULT_INODESIZE 512u
#define RLFS_MAX_AGBLOCKS ((1u << 31) - 1)

/* Fixed agbno of per-AG headers. */
#define RLFS_SB_AGBNO 0
#define RLFS_AGH_AGBNO 1
#define RLFS_AGFL_AGBNO 2

/* Magic numbers: ASCII, stored little-endian. */
#define RLFS_SB_MAGIC     0x53464c52u /* "RLFS" */
#define RLFS_AGH_MAGIC    0x48474152u /* "RAGH" */
#define RLFS_AGFL_MAGIC   0x4c464752u /* "RGFL" */
#define RLFS_BNOBT_MAGIC  0x42534652u /* "RFSB" free space by block */
#define RLFS_CNTBT_MAGIC  0x43534652u /* "RFSC" free space by size */
#define RLFS_INOBT_MAGIC  0x42494652u /* "RFIB" inode chunks */
#define RLFS_BMBT_MAGIC   0x414d4252u /* "RBMA" data fork block map */
#define RLFS_DIRBT_MAGIC  0x52494452u /* "RDIR" directory entries */
#define RLFS_ATTRBT_MAGIC 0x54544152u /* "RATT" xattr entries */
#define RLFS_ATTRV_MAGIC  0x56544152u /* "RATV" remote xattr value */
#define RLFS_SYMLNK_MAGIC 0x4d595352u /* "RSYM" remote symlink target */
#define RLFS_REFCBT_MAGIC 0x43464552u /* "REFC" refcount (later issue) */
#define RLFS_RMAPBT_MAGIC 0x50414d52u /* "RMAP" reverse map (RMAP feature, issue 11) */
#define RLFS_DINODE_MAGIC 0x4e494452u /* "RDIN" inode */

/* Feature bits.  An incompat bit we do not know refuses mount and fsck. */
#define RLFS_FEAT_INCOMPAT_REFLINK (1ull << 0) /* refcount btree (issue 3) */
#define RLFS_FEAT_INCOMPAT_RMAP    (1ull << 1) /* rmap btree (issue 11; mounts read-only
						* until the tree is maintained) */
#define RLFS_FEAT_INCOMPAT_LOG     (1ull << 2) /* write-ahead log (issue 10) */
#define RLFS_FEAT_INCOMPAT_KNOWN \
	(RLFS_FEAT_INCOMPAT_REFLINK | RLFS_FEAT_INCOMPAT_RMAP | RLFS_FEAT_INCOMPAT_LOG)
/* Read-only compatible: a binary that does not know the bit may read the
 * image but must not write it (mount read-only; fsck -n only). */
#define RLFS_FEAT_RO_COMPAT_AGBTCOUNT (1ull << 0) /* agh.refc_blocks / rmap_blocks
						   * are kept (SPEC section 5) */
#define RLFS_FEAT_RO_COMPAT_KNOWN  RLFS_FEAT_RO_COMPAT_AGBTCOUNT
/* sb_state values */
#define RLFS_STATE_CLEAN 0u
#define RLFS_STATE_DIRTY 1u /* mounted read-write, or not unmounted cleanly */

/*
 * Self-describing header that starts every metadata block.  crc is the
 * crc32c (Castagnoli) of the whole block with the crc field itself taken
 * as zero; blkno is the block's own fsbno; owner is the AG number for AG
 * structures, or the inode number for inode-owned blocks; lsn is the log
 * sequence number of the last write (0 until the log feature exists).
 */
struct rlfs_blkhdr {
	rlfs_le32 magic;
	rlfs_le32 crc;
	rlfs_le64 blkno;
	rlfs_le64 owner;
	uint8_t   uuid[RLFS_UUID_SIZE];
	rlfs_le64 lsn;
};
RLFS_SA(sizeof(struct rlfs_blkhdr) == 48, "blkhdr");
#define RLFS_CRC_OFF offsetof(struct rlfs_blkhdr, crc)

/* Superblock: agbno 0 of every AG.  Occupies one whole block. */
struct rlfs_sb {
	struct rlfs_blkhdr hdr;     /* magic RLFS_SB_MAGIC, owner = agno */
	rlfs_le32 version;          /* RLFS_VERSION */
	rlfs_le32 blocksize;        /* bytes, power of two, 1024..65536 */
	rlfs_le64 dblocks;          /* blocks on the device in the fs */
	rlfs_le32 agblocks;         /* blocks per AG (last AG may be short) */
	rlfs_le32 agcount;
	rlfs_le16 inodesize;        /* bytes, power of two, 256..blocksize */
	rlfs_le16 inopblock;        /* inodes per block */
	rlfs_le32 state;            /* RLFS_STATE_* */
	rlfs_le64 features_compat;
	rlfs_le64 features_ro_compat;
	rlfs_le64 features_incompat;
	rlfs_le64 rootino;
	rlfs_le64 icount;           /* inodes allocated (summary, fsck checks) */
	rlfs_le64 ifree;            /* free inodes in allocated chunks */
	rlfs_le64 fdblocks;         /* free data blocks (summary) */
	rlfs_le64 ctime_sec;        /* mkfs time */
	rlfs_le64 log_start;        /* fsbno of the log's first block, 0 = none
				     * (LOG feature; see struct rlfs_log_rec) */
	rlfs_le32 log_blocks;       /* blocks in the log (contiguous, one AG) */
	rlfs_le32 cowextsize_blocks;/* default CoW extent size hint (later) */
	char      label[32];
	rlfs_le64 maxbytes;         /* largest file size in bytes */
	/*
	 * Error record (ext4's s_state EXT4_ERROR_FS + s_error_count +
	 * s_first_error_*, XFS's "sick" state made persistent): set when fsck
	 * leaves damage it could not repair, or when the library meets corrupt
	 * metadata (or cannot write its metadata) while mounted; every mount
	 * warns while it is set; only an fsck that finds (or leaves) the
	 * filesystem clean clears it.  Bytes 200..271 were pad before: older
	 * binaries neither read nor clear them (see SPEC.md section 4).
	 */
	rlfs_le32 errors;           /* RLFS_SB_ERR_* flags; 0 = no errors recorded */
	rlfs_le32 error_count;      /* corruption reports while mounted (saturates) */
	rlfs_le64 first_error_time; /* first report: seconds since the epoch, 0 = none */
	rlfs_le64 first_error_fsbno;/* first report: block it names */
	rlfs_le64 last_error_time;  /* latest report */
	rlfs_le64 last_error_fsbno;
	char      first_error_what[16]; /* first report: structure, NUL-padded */
	rlfs_le64 fsck_time;        /* last fsck that left damage: seconds, 0 = none */
	rlfs_le32 fsck_errors;      /* findings it left uncorrected (saturates) */
	rlfs_le32 pad1;             /* zero */
	/* LSN of the unmount record a clean unmount (or mkfs) left at the
	 * log's head, written with state CLEAN; 0 = unknown.  A hint only:
	 * mount and fsck -n check that record and the block after it and
	 * read the whole log when anything disagrees (SPEC.md section 4).
	 * Bytes 272..279 were pad before: older binaries keep them as they
	 * are, which that check catches. */
	rlfs_le64 log_clean_lsn;
	uint8_t   pad[40];          /* zero; room for later features */
};
RLFS_SA(sizeof(struct rlfs_sb) == 320, "sb");
RLFS_SA(offsetof(struct rlfs_sb, errors) == 200, "sb errors");
RLFS_SA(offsetof(struct rlfs_sb, fsck_time) == 256, "sb fsck_time");
RLFS_SA(offsetof(struct rlfs_sb, log_clean_lsn) == 272, "sb log_clean_lsn");

/* sb.errors flags.  Unknown bits are kept and shown, never refused. */
#define RLFS_SB_ERR_FSCK    (1u << 0) /* fsck found damage it did not repair */
#define RLFS_SB_ERR_CORRUPT (1u << 1) /* corrupt metadata met while mounted */
#define RLFS_SB_ERR_WRITE   (1u << 2) /* metadata could not be written at unmount */

/*
 * AG header: agbno 1 of every AG.  Roots are agbno within this AG (0 = empty
 * tree is never used: mkfs creates every tree with an empty root leaf).
 */
struct rlfs_agh {
	struct rlfs_blkhdr hdr;     /* magic RLFS_AGH_MAGIC, owner = agno */
	rlfs_le32 agno;
	rlfs_le32 length;           /* blocks in this AG */
	rlfs_le32 bno_root;         /* bnobt root agbno */
	rlfs_le32 cnt_root;         /* cntbt root agbno */
	rlfs_le32 ino_root;         /* inobt root agbno */
	rlfs_le32 refc_root;        /* refcount btree root (REFLINK feature) */
	rlfs_le32 rmap_root;        /* rmap btree root (RMAP feature) */
	rlfs_le16 bno_level;        /* tree heights: 1 = root is a leaf */
	rlfs_le16 cnt_level;
	rlfs_le16 ino_level;
	rlfs_le16 refc_level;
	rlfs_le16 rmap_level;
	rlfs_le16 pad0;
	rlfs_le32 freeblks;         /* free blocks in bnobt/cntbt (not AGFL) */
	rlfs_le32 longest;          /* longest free extent, blocks */
	rlfs_le32 flfirst;          /* AGFL ring: first slot in use */
	rlfs_le32 fllast;           /* last slot in use */
	rlfs_le32 flcount;          /* slots in use */
	rlfs_le32 btreeblks;        /* blocks used by bnobt+cntbt beyond roots */
	rlfs_le64 icount;           /* inodes allocated in this AG */
	rlfs_le64 ifree;            /* free inodes in this AG's chunks */
	rlfs_le64 newino;           /* last chunk's first ino (allocation hint) */
	/*
	 * Unlinked list (XFS: agi_unlinked, one bucket here): the first of
	 * this AG's inodes whose link count reached 0 while still in use
	 * (open-unlinked files, O_TMPFILE inodes not linked yet); the rest
	 * follow through rlfs_dinode.next_unlinked.  0 = empty.  Every member
	 * is an inode of this AG.  Mount frees the members left by a crash.
	 * Bytes 136..143, pad (zero) before: an old image reads as empty.
	 */
	rlfs_le64 unlinked;
	/*
	 * Blocks in this AG's refcount btree and rmap btree, roots included
	 * (XFS: agf_refcount_blocks, agf_rmap_blocks), kept with the
	 * RLFS_FEAT_RO_COMPAT_AGBTCOUNT feature (else 0, not read): the AG
	 * reservation for those trees is what they may still need beyond
	 * these (ag_resv.h).  Bytes 144..151, pad (zero) before.
	 */
	rlfs_le32 refc_blocks;
	rlfs_le32 rmap_blocks;
	uint8_t   pad[56];
};
RLFS_SA(sizeof(struct rlfs_agh) == 208, "agh");
RLFS_SA(offsetof(struct rlfs_agh, unlinked) == 136, "agh unlinked");
RLFS_SA(offsetof(struct rlfs_agh, refc_blocks) == 144, "agh refc_blocks");

/* AGFL block: header, then an array of agbno (le32) filling the block. */
struct rlfs_agfl {
	struct rlfs_blkhdr hdr;     /* magic RLFS_AGFL_MAGIC, owner = agno */
	rlfs_le32 agno;
	rlfs_le32 pad;
	/* rlfs_le32 bno[(blocksize - 56) / 4] follows */
};
RLFS_SA(sizeof(struct rlfs_agfl) == 56, "agfl");

/*
 * Generic btree block.  Leaves (level 0) hold numrecs records of rec_len
 * bytes right after the header.  Nodes (level > 0) hold numrecs keys, each
 * of key_len bytes (for overlapping-interval trees each key slot is a
 * low key followed by a high key, 2*key_len bytes), followed at a fixed
 * offset (after maxrecs key slots) by numrecs le64 child fsbnos.
 * Sibling pointers are fsbno, 0 = none.
 */
struct rlfs_btree_block {
	struct rlfs_blkhdr hdr;
	rlfs_le16 level;
	rlfs_le16 numrecs;
	rlfs_le32 pad;
	rlfs_le64 leftsib;
	rlfs_le64 rightsib;
};
RLFS_SA(sizeof(struct rlfs_btree_block) == 72, "btree block");

/* --- Free space btrees: record = key = (startblock, blockcount) agbno. --- */
struct rlfs_alloc_rec {
	rlfs_le32 startblock;
	rlfs_le32 blockcount;
};
RLFS_SA(sizeof(struct rlfs_alloc_rec) == 8, "alloc rec");
/* bnobt is keyed on startblock; cntbt on (blockcount, startblock). */

/* --- Inode btree: one record per chunk of RLFS_INODES_PER_CHUNK inodes --- */
#define RLFS_INODES_PER_CHUNK 64
struct rlfs_inobt_rec {
	rlfs_le64 startino;         /* ino of the chunk's first inode */
	rlfs_le32 freecount;
	rlfs_le32 pad;
	rlfs_le64 free;             /* bit i set: startino + i is free */
};
RLFS_SA(sizeof(struct rlfs_inobt_rec) == 24, "inobt rec");
/* key: startino (le64) */

/*
 * --- Refcount btree (REFLINK feature), one per AG, root agh.refc_root ---
 * Records cover extents whose refcount is >= 2 (shared domain) or staging
 * extents of the CoW fork (refcount == 1, COW domain: bit 31 of startblock
 * set, so they sort after every shared record).  No record for a mapped
 * block means refcount 1.  Records never overlap and never merge across
 * domains.  Model: xfs_refcount_rec (XFS_REFC_COWFLAG).
 */
#define RLFS_REFC_COWFLAG (1u << 31)
#define RLFS_REFC_REFCOUNT_MAX 0xffffffffu /* stays there: leaks, never frees early */
struct rlfs_refcount_rec {
	rlfs_le32 startblock;       /* agbno | RLFS_REFC_COWFLAG for staging */
	rlfs_le32 blockcount;       /* blocks, >= 1 */
	rlfs_le32 refcount;         /* >= 2 shared; == 1 staging */
};
RLFS_SA(sizeof(struct rlfs_refcount_rec) == 12, "refcount rec");
/* key: startblock (le32, flag included) */

/*
 * --- Reverse-mapping btree (RMAP feature; docs/SPEC.md section 17) ---
 * One per AG, root agh.rmap_root / rmap_level, blocks magic
 * RLFS_RMAPBT_MAGIC, hdr.owner = agno.  A record says "blocks [startblock,
 * startblock+blockcount) of this AG belong to owner, at offset (file
 * blocks) of its fork".  Shared blocks have one record per owner, so
 * records of different owners may overlap: the tree is an
 * overlapping-interval btree (node slots carry low and high keys).
 * Model: xfs_rmap_rec / xfs_rmap_key (xfs_format.h).
 *
 * offset: bits 0..53 the file offset in blocks; bit 63 attr fork, bit 62
 * bmbt (block-map btree) block, bit 61 unwritten extent; bits 54..60
 * zero.  Records of special owners (RLFS_RMAP_OWN_*) and bmbt-block
 * records have offset 0 apart from the flags.
 * Inode-owned blocks (owner = ino): data-fork extents of files and
 * symlink targets carry their file offset (and the unwritten flag);
 * blocks at no file offset carry RLFS_RMAP_OFF_BMBT_BLOCK: bmbt and
 * directory tree blocks, and with RLFS_RMAP_OFF_ATTR_FORK too, xattr tree
 * blocks and remote xattr value blocks (XFS keeps directories and xattrs
 * in fork extents at file offsets; reflinkfs points at them directly).
 */
#define RLFS_RMAP_OFF_ATTR_FORK (1ull << 63)
#define RLFS_RMAP_OFF_BMBT_BLOCK (1ull << 62)
#define RLFS_RMAP_OFF_UNWRITTEN (1ull << 61)
#define RLFS_RMAP_OFF_MASK ((1ull << 54) - 1)
#define RLFS_RMAP_OFF_FLAGS \
	(RLFS_RMAP_OFF_ATTR_FORK | RLFS_RMAP_OFF_BMBT_BLOCK | RLFS_RMAP_OFF_UNWRITTEN)
#define RLFS_RMAP_OFF(off) ((off) & RLFS_RMAP_OFF_MASK)
/* Special owners (values as XFS_RMAP_OWN_*: top of the 64-bit space, above
 * every inode number). */
#define RLFS_RMAP_OWN_NULL    (~0ull)      /* no owner: a free or invalid record */
#define RLFS_RMAP_OWN_UNKNOWN (~0ull - 1)  /* owner not known (old images, repair) */
#define RLFS_RMAP_OWN_FS      (~0ull - 2)  /* superblock, AG header (agbno 0, 1) */
#define RLFS_RMAP_OWN_LOG     (~0ull - 3)  /* the log */
#define RLFS_RMAP_OWN_AG      (~0ull - 4)  /* AGFL, its blocks, bnobt, cntbt, rmapbt */
#define RLFS_RMAP_OWN_INOBT   (~0ull - 5)  /* inode btree blocks */
#define RLFS_RMAP_OWN_INODES  (~0ull - 6)  /* inode chunks */
#define RLFS_RMAP_OWN_REFC    (~0ull - 7)  /* refcount btree blocks */
#define RLFS_RMAP_OWN_COW     (~0ull - 8)  /* CoW staging extents */
#define RLFS_RMAP_OWN_MIN     (~0ull - 9)  /* below every special owner */
/* Owners with bit 63 set are special (XFS_RMAP_NON_INODE_OWNER); valid
 * ones are > RLFS_RMAP_OWN_MIN. */
#define RLFS_RMAP_NON_INODE_OWNER(o) (((o) >> 63) != 0)
struct rlfs_rmap_rec {
	rlfs_le32 startblock;       /* agbno */
	rlfs_le32 blockcount;       /* blocks, >= 1 */
	rlfs_le64 owner;            /* ino, or RLFS_RMAP_OWN_* */
	rlfs_le64 offset;           /* RLFS_RMAP_OFF_* flags | file offset */
};
RLFS_SA(sizeof(struct rlfs_rmap_rec) == 24, "rmap rec");
/* Key: (startblock, owner, offset without RLFS_RMAP_OFF_UNWRITTEN),
 * compared in that order as unsigned numbers (the attr-fork and bmbt flags
 * take part, as in XFS's offset_keymask).  The high key of a record is
 * (startblock + blockcount - 1, owner, offset + blockcount - 1), the offset
 * part unchanged for special owners and bmbt blocks.  pad is zero. */
struct rlfs_rmap_key {
	rlfs_le32 startblock;
	rlfs_le32 pad;
	rlfs_le64 owner;
	rlfs_le64 offset;
};
RLFS_SA(sizeof(struct rlfs_rmap_key) == 24, "rmap key");
RLFS_SA(offsetof(struct rlfs_rmap_key, owner) == 8, "rmap key owner");

/* --- Data fork extents (inline in the inode and in bmbt leaves) --- */
#define RLFS_EXT_UNWRITTEN 1u       /* allocated, reads as zeros */
struct rlfs_bmbt_rec {
	rlfs_le64 startoff;         /* file offset, blocks */
	rlfs_le64 startblock;       /* fsbno */
	rlfs_le32 blockcount;       /* blocks, >= 1, < 2^21 */
	rlfs_le32 state;            /* RLFS_EXT_* flags */
};
RLFS_SA(sizeof(struct rlfs_bmbt_rec) == 24, "bmbt rec");
#define RLFS_MAX_EXTLEN ((1u << 21) - 1)
/* key: startoff (le64) */

/* --- Directory btree: entries keyed by (name hash, collision seq) --- */
#define RLFS_NAME_MAX 255
struct rlfs_dir_rec {
	rlfs_le32 hash;             /* rlfs_dirhash(name) */
	rlfs_le32 seq;              /* distinguishes names with equal hash */
	rlfs_le64 ino;
	uint8_t   namelen;
	uint8_t   ftype;            /* RLFS_FT_* */
	uint8_t   name[RLFS_NAME_MAX];
	uint8_t   pad[7];
};
RLFS_SA(sizeof(struct rlfs_dir_rec) == 280, "dir rec");
/* key: (hash, seq) as one le64 = hash << 32 | seq, stored in that order */
enum { RLFS_FT_UNKNOWN, RLFS_FT_REG, RLFS_FT_DIR, RLFS_FT_CHR, RLFS_FT_BLK,
       RLFS_FT_FIFO, RLFS_FT_SOCK, RLFS_FT_LNK };

/* --- Xattr btree (when the xattrs do not fit inline in the inode) --- */
#define RLFS_XATTR_NAME_MAX 255
#define RLFS_XATTR_SIZE_MAX 65536
struct rlfs_attr_rec {
	rlfs_le32 hash;
	rlfs_le32 seq;
	rlfs_le64 value_fsbno;      /* first block of the value run, 0 = inline */
	rlfs_le32 valuelen;         /* bytes */
	uint8_t   namelen;
	uint8_t   pad0[3];
	uint8_t   name[RLFS_XATTR_NAME_MAX];
	uint8_t   pad1[1];
	uint8_t   value[64];        /* value bytes when valuelen <= 64 */
};
RLFS_SA(sizeof(struct rlfs_attr_rec) == 344, "attr rec");

/*
 * Remote block header (xattr values, long symlink targets): a run of
 * contiguous blocks; each block starts with this header and carries up to
 * blocksize - 64 bytes of payload.
 */
struct rlfs_remote_hdr {
	struct rlfs_blkhdr hdr;     /* owner = ino */
	rlfs_le32 offset;           /* byte offset of this block's payload */
	rlfs_le32 bytes;            /* payload bytes in this block */
	rlfs_le64 pad;
};
RLFS_SA(sizeof(struct rlfs_remote_hdr) == 64, "remote hdr");

/*
 * Inode.  The first RLFS_DINODE_CORE bytes are fixed; the rest of the
 * inodesize bytes ("literal area") is split at forkoff: [core, core+forkoff)
 * holds the data fork, [core+forkoff, inodesize) holds inline xattrs.
 */
enum rlfs_fork_format {
	RLFS_FMT_NONE = 0,    /* empty (special files, empty dirs) */
	RLFS_FMT_LOCAL = 1,   /* inline bytes: short symlink target */
	RLFS_FMT_EXTENTS = 2, /* inline array of rlfs_bmbt_rec */
	RLFS_FMT_BTREE = 3,   /* root fsbno of a btree (bmbt or dir) */
};
/* di_flags */
#define RLFS_DIFLAG_IMMUTABLE (1u << 0)
#define RLFS_DIFLAG_APPEND    (1u << 1)
#define RLFS_DIFLAG_NODUMP    (1u << 2)
#define RLFS_DIFLAG_NOATIME   (1u << 3)
/* Extent size hints (XFS's XFS_DIFLAG_EXTSIZE / _EXTSZINHERIT and
 * XFS_DIFLAG2_COWEXTSIZE; FS_XFLAG_* of linux/fs.h through
 * FS_IOC_FSSETXATTR).  EXTSIZE: regular files only, extsize_blocks is the
 * hint; EXTSZINHERIT: directories only, extsize_blocks is what new files
 * (EXTSIZE) and subdirectories (EXTSZINHERIT) get; COWEXTSIZE: regular
 * files and directories, cowextsize_blocks is the CoW hint, inherited by
 * both.  Without its flag a hint field is 0. */
#define RLFS_DIFLAG_EXTSIZE      (1u << 4)
#define RLFS_DIFLAG_EXTSZINHERIT (1u << 5)
#define RLFS_DIFLAG_COWEXTSIZE   (1u << 6)
#define RLFS_DIFLAG_ALL       0x7fu

struct rlfs_timestamp {
	rlfs_le64 sec;
	rlfs_le32 nsec;
	rlfs_le32 pad;
};

struct rlfs_dinode {
	rlfs_le32 magic;            /* RLFS_DINODE_MAGIC */
	rlfs_le32 crc;              /* crc32c of the inodesize bytes, crc = 0 */
	rlfs_le64 ino;              /* own number; self-describing */
	uint8_t   uuid[RLFS_UUID_SIZE];
	rlfs_le64 lsn;
	rlfs_le32 mode;             /* S_IFMT | permission bits; 0 = free */
	rlfs_le32 uid;
	rlfs_le32 gid;
	rlfs_le32 nlink;
	rlfs_le64 size;             /* bytes */
	rlfs_le64 nblocks;          /* blocks owned: data + bmbt + dir + xattr */
	struct rlfs_timestamp atime, mtime, ctime, crtime;
	rlfs_le64 rdev;
	rlfs_le64 generation;
	rlfs_le64 parent;           /* directories: ino of ".." */
	rlfs_le32 flags;            /* RLFS_DIFLAG_* */
	rlfs_le32 cowextsize_blocks;/* COWEXTSIZE: CoW extent size hint, blocks */
	uint8_t   format;           /* enum rlfs_fork_format, data fork */
	uint8_t   aformat;          /* xattrs: NONE, LOCAL (inline), BTREE */
	rlfs_le16 forkoff;          /* bytes of literal area for the data fork */
	rlfs_le32 nextents;         /* data fork extents (all, not just inline) */
	rlfs_le64 root;             /* BTREE format: data fork tree root fsbno */
	rlfs_le16 root_level;       /* BTREE format: height of that tree */
	rlfs_le16 aroot_level;
	/* EXTSIZE / EXTSZINHERIT: extent size hint in blocks, else 0.
	 * Bytes 188..191, pad (zero) before: an old image has no hint. */
	rlfs_le32 extsize_blocks;
	rlfs_le64 aroot;            /* xattr btree root fsbno (aformat BTREE) */
	rlfs_le32 acount;           /* number of xattrs */
	rlfs_le32 pad1;
	/* next inode on its AG's unlinked list (rlfs_agh.unlinked), 0 = end
	 * of the list or not on it; always an inode of the same AG.  Written
	 * straight into the cluster buffer by the list code (lib/iunlink.c),
	 * never by the core flush.  Bytes 208..215, pad before. */
	rlfs_le64 next_unlinked;
	uint8_t   pad2[40];
};
#define RLFS_DINODE_CORE 256
RLFS_SA(offsetof(struct rlfs_dinode, next_unlinked) == 208, "dinode next_unlinked");
RLFS_SA(offsetof(struct rlfs_dinode, extsize_blocks) == 188, "dinode extsize_blocks");
RLFS_SA(sizeof(struct rlfs_dinode) == RLFS_DINODE_CORE, "dinode");

/*
 * Inline xattr area entry (aformat LOCAL): packed one after another from
 * core+forkoff, each 4-byte aligned; a namelen of 0 ends the list.
 */
struct rlfs_attr_sf_entry {
	uint8_t   namelen;
	uint8_t   pad;
	rlfs_le16 valuelen;
	/* name[namelen], value[valuelen], pad to 4 */
};
RLFS_SA(sizeof(struct rlfs_attr_sf_entry) == 4, "attr sf");

/*
 * --- Write-ahead log (RLFS_FEAT_INCOMPAT_LOG), docs/SPEC.md section "Log" ---
 * The log is sb.log_blocks contiguous blocks from fsbno sb.log_start,
 * written as a ring.  A log sequence number (LSN) names a position:
 * lsn = cycle << 32 | block, block = 0 .. log_blocks-1 within the log,
 * cycle = 1, 2, ... counts passes over the ring (0 = "no LSN").  LSNs only
 * grow, so they compare as plain unsigned 64-bit numbers.
 *
 * A record is one header block (struct rlfs_log_rec, then nitems struct
 * rlfs_log_item descriptors) followed by len_blocks payload blocks.  The
 * payload (version 2) starts right after the descriptors, in the header
 * block, and runs on into the len_blocks blocks: the items' segments
 * packed back to back in descriptor order, then zeros to the end of the
 * record (which ends in its last block):
 *   BUF / INODE / RAW  a dirty-chunk bitmap of RLFS_LOG_MAP_BYTES(blocksize)
 *                      bytes (bit i = byte i/8, bit i%8: bytes
 *                      [i*128, i*128+128) of the block are logged), then
 *                      the logged 128-byte chunks in block order;
 *                      descriptor count = the number of set bits (>= 1);
 *   INTENT             struct rlfs_log_intent + count items of item_bytes,
 *                      padded with zeros to a multiple of 8 bytes;
 *   CANCEL / DONE      nothing.
 * The chunks logged for a block are every chunk changed since the block
 * was last written in place (XFS's buffer-item dirty bitmap, kept while
 * the block is relogged), so the newest record of a block applied over
 * the block on disk gives its whole state.  Version 1 records (whole-block
 * images, one payload block per BUF/INODE/RAW/INTENT item) are still
 * replayed; new records are always version 2.  A record never wraps: when fewer than
 * RLFS_LOG_MIN_REC_BLOCKS blocks remain before the end of the ring, the
 * next record starts at block 0 of the next cycle.  A checkpoint (the
 * transactions committed between two log forces) is one or more records
 * with the same seq, the last of which has RLFS_LREC_COMMIT; recovery
 * replays only checkpoints whose every record is present with good crcs.
 * Model: xlog_rec_header / xlog_op_header (XFS), simplified to physical
 * whole-block logging.
 */
#define RLFS_LOG_MAGIC 0x474c4c52u      /* "RLLG" */
#define RLFS_LOG_VERSION 2u          /* written; 1 (whole blocks) replayed */
#define RLFS_LOG_VERSION_WHOLE 1u
#define RLFS_LOG_CHUNK 128u             /* bytes per bitmap bit (XFS_BLF_CHUNK) */
/* bytes of a dirty-chunk bitmap: one bit per chunk, in 8-byte words */
#define RLFS_LOG_MAP_BYTES(bs) ((((bs) / RLFS_LOG_CHUNK + 63u) / 64u) * 8u)
#define RLFS_LOG_MAP_MAX RLFS_LOG_MAP_BYTES(65536u)   /* 64 */
#define RLFS_LOG_MIN_REC_BLOCKS 2u
#define RLFS_LOG_MIN_BLOCKS 64u         /* mkfs refuses smaller logs ... */
#define RLFS_LOG_MIN_BYTES (512u << 10) /* ... and logs under 512 KiB */
#define RLFS_LSN(cycle, block) (((uint64_t)(cycle) << 32) | (uint32_t)(block))
#define RLFS_LSN_CYCLE(lsn) ((uint32_t)((lsn) >> 32))
#define RLFS_LSN_BLOCK(lsn) ((uint32_t)(lsn))

/* rlfs_log_rec.flags */
#define RLFS_LREC_COMMIT  (1u << 0)     /* last record of its checkpoint */
#define RLFS_LREC_UNMOUNT (1u << 1)     /* clean unmount: nothing to replay */

struct rlfs_log_rec {
	rlfs_le32 magic;            /* RLFS_LOG_MAGIC */
	rlfs_le32 crc;              /* crc32c of the whole header block, crc = 0 */
	rlfs_le64 lsn;              /* this record's own LSN */
	rlfs_le64 tail_lsn;         /* oldest LSN still needed when written:
				     * every checkpoint before it is in place */
	rlfs_le64 seq;              /* checkpoint sequence number, grows by 1 */
	uint8_t   uuid[RLFS_UUID_SIZE]; /* filesystem uuid */
	rlfs_le32 version;          /* RLFS_LOG_VERSION */
	rlfs_le32 flags;            /* RLFS_LREC_* */
	rlfs_le32 len_blocks;       /* blocks after this header block (the
				     * segments that do not fit in it) */
	rlfs_le32 nitems;           /* descriptors after this struct */
	rlfs_le32 payload_crc;      /* crc32c of the len_blocks payload blocks
				     * (the part in the header block is under
				     * crc) */
	rlfs_le32 pad0;             /* zero */
	rlfs_le64 ckpt_lsn;         /* LSN of the checkpoint's first record */
	/* struct rlfs_log_desc items[nitems] follows */
};
RLFS_SA(sizeof(struct rlfs_log_rec) == 80, "log rec");

/* rlfs_log_item.type */
#define RLFS_LOG_ITEM_BUF    1u     /* block ranges; blkhdr lsn at byte 40 */
#define RLFS_LOG_ITEM_INODE  2u     /* inode cluster ranges; each dinode's lsn */
#define RLFS_LOG_ITEM_RAW    3u     /* block ranges, no lsn field */
#define RLFS_LOG_ITEM_CANCEL 4u     /* block freed: older images are void */
#define RLFS_LOG_ITEM_INTENT 5u     /* deferred-work intent (EFI, CUI, ...):
				     * fsbno = intent id, code = intent code,
				     * count = items; payload: struct
				     * rlfs_log_intent + items (version 1:
				     * one whole block) */
#define RLFS_LOG_ITEM_DONE   6u     /* its done (EFD, CUD, ...): fsbno =
				     * the intent id, code = done code, no
				     * payload */
struct rlfs_log_desc {
	rlfs_le64 fsbno;            /* block; intent id for INTENT/DONE */
	rlfs_le16 type;             /* RLFS_LOG_ITEM_* */
	rlfs_le16 code;             /* INTENT/DONE: RLFS_LOG_* code; else 0 */
	rlfs_le32 count;            /* INTENT: items; BUF/INODE/RAW: chunks
				     * logged (version 1: 0); else 0 */
};
RLFS_SA(sizeof(struct rlfs_log_desc) == 16, "log desc");

/*
 * Intent and done codes (rlfs_log_desc.code; struct rlfs_defer_type's
 * intent_code / done_code).  Model: XFS_LI_EFI / XFS_LI_EFD etc.
 */
#define RLFS_LOG_EFI 0x0101u        /* extent free intent */
#define RLFS_LOG_EFD 0x0102u        /* extent free done */
#define RLFS_LOG_CUI 0x0201u        /* refcount update intent */
#define RLFS_LOG_CUD 0x0202u        /* refcount update done */
#define RLFS_LOG_BUI 0x0301u        /* data-fork map/unmap intent */
#define RLFS_LOG_BUD 0x0302u        /* its done */
#define RLFS_LOG_RUI 0x0401u        /* rmap update intent (RMAP feature) */
#define RLFS_LOG_RUD 0x0402u        /* its done */
#define RLFS_LOG_SXI 0x0501u        /* shift extents intent (collapse/insert range) */
#define RLFS_LOG_SXD 0x0502u        /* its done */
#define RLFS_LOG_XMI 0x0601u        /* exchange-mapping intent (exchange range) */
#define RLFS_LOG_XMD 0x0602u        /* its done */

/* Head of an INTENT item's payload; count items of item_bytes each
 * follow, then zeros to a multiple of 8 bytes (version 1: to the end of
 * the block). */
struct rlfs_log_intent {
	rlfs_le64 intent_id;        /* as the descriptor's fsbno; never 0 */
	rlfs_le16 code;             /* as the descriptor's code */
	rlfs_le16 item_bytes;       /* bytes per item */
	rlfs_le32 count;            /* as the descriptor's count */
};
RLFS_SA(sizeof(struct rlfs_log_intent) == 16, "log intent");

/* EFI item (item_bytes 16): free [fsbno, fsbno+len). */
struct rlfs_efi_item {
	rlfs_le64 fsbno;
	rlfs_le32 len;              /* blocks, 1 .. RLFS_MAX_EXTLEN */
	rlfs_le32 pad;              /* zero */
};
RLFS_SA(sizeof(struct rlfs_efi_item) == 16, "efi item");

/* CUI item (item_bytes 16): adjust the shared-domain refcount of
 * [fsbno, fsbno+len) by one. */
#define RLFS_CUI_INCREASE 1u
#define RLFS_CUI_DECREASE 2u        /* blocks reaching 0 are freed (an EFI) */
struct rlfs_cui_item {
	rlfs_le64 fsbno;
	rlfs_le32 len;              /* blocks, 1 .. RLFS_MAX_EXTLEN */
	rlfs_le32 op;               /* RLFS_CUI_INCREASE / _DECREASE */
};
RLFS_SA(sizeof(struct rlfs_cui_item) == 16, "cui item");

/* BUI item (item_bytes 32): map or unmap one range of an inode's data
 * fork.  MAP: file blocks [startoff, startoff+len) -> [startblock, ..),
 * unwritten with RLFS_BUI_UNWRITTEN (the range must be a hole; refcounts
 * are the caller's business, through a CUI).  UNMAP: make [startoff,
 * startoff+len) a hole, releasing what was mapped there (a CUI decrease on
 * a REFLINK filesystem, else an EFI); startblock is the block mapped at
 * startoff when the intent was logged (checked at recovery).  Model:
 * struct xfs_map_extent. */
#define RLFS_BUI_MAP 1u
#define RLFS_BUI_UNMAP 2u
#define RLFS_BUI_OP_MASK 0xffu
#define RLFS_BUI_UNWRITTEN (1u << 8)
struct rlfs_bui_item {
	rlfs_le64 ino;              /* owner inode */
	rlfs_le64 startoff;         /* file block */
	rlfs_le64 startblock;       /* fsbno */
	rlfs_le32 len;              /* blocks, 1 .. RLFS_MAX_EXTLEN */
	rlfs_le32 flags;            /* op (RLFS_BUI_MAP / _UNMAP) | RLFS_BUI_UNWRITTEN */
};
RLFS_SA(sizeof(struct rlfs_bui_item) == 32, "bui item");

/* RUI item (item_bytes 32): one change of a data-fork or attr-fork
 * mapping in the rmap btree (RMAP feature).  MAP: add [fsbno, fsbno+len)
 * owned by owner at offset; UNMAP: remove it (it lies inside one record);
 * CONVERT: flip the unwritten state of that range, offset carrying the new
 * state.  offset is the rmap record's field: RLFS_RMAP_OFF_* flags | file
 * block.  The range never crosses an AG end.  Model: struct
 * xfs_map_extent in an xfs_rui_log_format (XFS_RMAP_EXTENT_MAP_SHARED /
 * _UNMAP_SHARED / _CONVERT_SHARED). */
#define RLFS_RUI_MAP 1u
#define RLFS_RUI_UNMAP 2u
#define RLFS_RUI_CONVERT 3u
struct rlfs_rui_item {
	rlfs_le64 owner;            /* inode number */
	rlfs_le64 offset;           /* RLFS_RMAP_OFF_* flags | file block */
	rlfs_le64 fsbno;
	rlfs_le32 len;              /* blocks, 1 .. RLFS_MAX_EXTLEN */
	rlfs_le32 op;               /* RLFS_RUI_MAP / _UNMAP / _CONVERT */
};
RLFS_SA(sizeof(struct rlfs_rui_item) == 32, "rui item");

/* SXI item (item_bytes 48): the rest of one fallocate COLLAPSE_RANGE or
 * INSERT_RANGE of an inode's data fork (docs/SPEC.md section 16).  Every
 * step of the chain logs the done of the intent it finishes and a new
 * intent with the advanced cursor in the same transaction as its fork
 * changes, so recovery finds exactly one pending SXI whose cursor matches
 * the fork.
 *   COLLAPSE  with RLFS_SXI_PUNCHING: unmap [startoff, startoff+shift)
 *             (the blocks released through CUIs/EFIs), then without it:
 *             move every mapping at or after cursor (old file blocks;
 *             first startoff+shift) to its startoff - shift, in ascending
 *             order, cursor following.
 *   INSERT    move every mapping part in [startoff, cursor) (cursor first
 *             the end of the last mapping) to its startoff + shift, from
 *             the end down, splitting the mapping that spans startoff;
 *             cursor falls to startoff.
 * The last step sets di_size to new_size (and mtime/ctime).  Refcounts
 * never change; the rmap follows through RUIs (unmap at the old offset,
 * map at the new).  No counterpart in XFS, which shifts one extent per
 * transaction and is not atomic under crash. */
#define RLFS_SXI_COLLAPSE 1u
#define RLFS_SXI_INSERT 2u
#define RLFS_SXI_OP_MASK 0xffu
#define RLFS_SXI_PUNCHING (1u << 8)
struct rlfs_sxi_item {
	rlfs_le64 ino;              /* the file */
	rlfs_le64 startoff;         /* file block: collapse/insert offset */
	rlfs_le64 shift;            /* blocks, > 0 */
	rlfs_le64 cursor;           /* file block: progress (see above) */
	rlfs_le64 new_size;         /* bytes: di_size after the last step */
	rlfs_le32 flags;            /* op (RLFS_SXI_COLLAPSE / _INSERT) | RLFS_SXI_PUNCHING */
	rlfs_le32 pad;              /* zero */
};
RLFS_SA(sizeof(struct rlfs_sxi_item) == 48, "sxi item");

/* XMI item (item_bytes 64): exchange the data-fork mappings of file
 * blocks [startoff1, startoff1+blockcount) of ino1 with those of
 * [startoff2, startoff2+blockcount) of ino2, one piece (the longest run
 * in which neither file changes extent) per step; each step's done
 * commits with the piece's fork changes and a new XMI for what is left
 * (startoffs advanced, blockcount lowered).  Refcounts do not change; the
 * rmap follows by RUIs.  RLFS_XMI_SET_SIZES: the step that finishes the
 * range sets ino1's size to new_size1 and ino2's to new_size2 (bytes;
 * both 0 otherwise).  RLFS_XMI_FILE1_WRITTEN: pieces where ino1 has a
 * hole or an unwritten extent are left alone.  Model: struct
 * xfs_xmi_log_format (xfs_exchmaps_item.c). */
#define RLFS_XMI_SET_SIZES     (1u << 0)
#define RLFS_XMI_FILE1_WRITTEN (1u << 1)
#define RLFS_XMI_FLAGS         (RLFS_XMI_SET_SIZES | RLFS_XMI_FILE1_WRITTEN)
struct rlfs_xmi_item {
	rlfs_le64 ino1;
	rlfs_le64 ino2;
	rlfs_le64 startoff1;        /* file block of ino1 */
	rlfs_le64 startoff2;        /* file block of ino2 */
	rlfs_le64 blockcount;       /* blocks left to exchange, >= 1 */
	rlfs_le64 flags;            /* RLFS_XMI_* */
	rlfs_le64 new_size1;        /* bytes; with RLFS_XMI_SET_SIZES */
	rlfs_le64 new_size2;
};
RLFS_SA(sizeof(struct rlfs_xmi_item) == 64, "xmi item");

#endif /* REFLINKFS_FORMAT_H */

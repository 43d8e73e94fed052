/*
 * filemodel.h: files of a unit-test filesystem and their in-memory models
 * (contents byte for byte), with the checks the reflink and exchange tests
 * share: every file equals its model, refcounts equal the mappings, fsck
 * clean.  Helpers assert (cmocka) instead of returning errors.
 */
#ifndef RLFS_TEST_FILEMODEL_H
#define RLFS_TEST_FILEMODEL_H
#include <stddef.h>
#include <stdint.h>

#include "testutil.h"

#define MAXF 16
struct mfile {
	char name[32];
	uint64_t ino;
	uint8_t *data;   /* model contents */
	uint64_t size;
	uint64_t cap;
};

struct ctx {
	struct tu_fs fs;
	struct mfile f[MAXF];
	int nf;
	uint32_t bs;
};

static inline struct rlfs_mount *MP(struct ctx *c) { return c->fs.mp; }

struct rrec { uint32_t key, len, rc; };
struct rlist { struct rrec *r; size_t n, cap; };

/* Grow m's model buffer to at least size bytes (zero-filled). */
void mf_reserve(struct mfile *m, uint64_t size);
/* Set m's model size (truncate or extend with zeros). */
void mf_setsize(struct mfile *m, uint64_t size);
/* Create regular file name in the root and its empty model; its index. */
int mkfile(struct ctx *c, const char *name);
/* n bytes of a pattern that depends on seed and the byte's position. */
void fill_pattern(uint8_t *p, size_t n, uint64_t seed);
/* pwrite len bytes of fill_pattern(seed) at off through the library and
 * the model (asserts the full length was written). */
void do_write(struct ctx *c, int i, uint64_t off, uint64_t len, uint64_t seed);
/* The file's size and every byte equal its model. */
void verify_file(struct ctx *c, int i);
/* Clone [soff, soff+len) of file s to doff of file d, library and model. */
void do_clone(struct ctx *c, int s, uint64_t soff, int d, uint64_t doff, uint64_t len);
/* Append a (key, len, rc) record to l. */
void rl_push(struct rlist *l, uint32_t key, uint32_t len, uint32_t rc);
/* Every refcount record of every AG equals the number of data-fork
 * mappings of the model files on its blocks (bmbt checked too), and no
 * block with a mapping is free. */
void check_refcounts(struct ctx *c);
struct rlfs_btree_cur;
/* Refcount btree walk callback: each record's (agbno, len, refcount)
 * appended to the struct rlist priv points to. */
int collect_refc(struct rlfs_btree_cur *cur, const void *rec, void *priv);
/* verify_file for every file, then check_refcounts. */
void check_fs(struct ctx *c);
/* Unmount, fsck -n (must be clean), mount again. */
void run_fsck(struct ctx *c);
/* mkfs (size bytes, block size bs, agcount AGs; 0: defaults) and mount. */
void ctx_init(struct ctx *c, uint64_t size, uint32_t bs, uint32_t agcount);
/* fsck (if mounted), free the models, unmount and remove the image. */
void ctx_fini(struct ctx *c);

#endif

/*
 * dedupe_db.c: the hash store of `reflinkfs dedupe` in SQLite
 * (https://sqlite.org/c3ref/intro.html).  With --hashfile FILE it
 * persists; without, it is a private temporary database (sqlite3_open of
 * "" : on disk, deleted at close), so that the block hashes of files
 * already scanned never sit in the heap whatever the corpus size.
 *
 * Schema (version 1):
 *   meta(key TEXT PRIMARY KEY, value)       "version" 1, "hash" xxh3-128,
 *                                           "chunk_blocks" 1024
 *   files(id INTEGER PRIMARY KEY, path TEXT UNIQUE, dev, ino, size,
 *         mtime_ns, ctime_ns, blksize, complete)
 *   hashes(file_id, chunk, data BLOB, PRIMARY KEY(file_id, chunk))
 *         data: 16 bytes per block (lo then hi, little-endian host order),
 *         blocks chunk * 1024 .. ; all-zero = a block wholly in a hole
 *   runs(dst_id, dst_blk, src_id, src_blk, nblocks)   settled runs: every
 *         block of the run was found shared, or shared, at the end of a
 *         run of the tool; dropped with either file's record
 * A record is reused only when complete and its (dev, ino, size, mtime,
 * ctime, blksize) equal the file's stat now.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "dedupe.h"

struct dd_db {
	sqlite3 *db;
	sqlite3_stmt *find, *del_hashes, *del_file, *ins_file, *done, *put, *get;
	sqlite3_stmt *del_runs_dst, *del_runs_src, *put_run, *get_run;
	sqlite3_stmt *seen, *unseen;
};

static int exec(struct dd_db *d, const char *sql)
{
	return sqlite3_exec(d->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

static int prep(struct dd_db *d, sqlite3_stmt **st, const char *sql)
{
	return sqlite3_prepare_v2(d->db, sql, -1, st, NULL) == SQLITE_OK ? 0 : -EIO;
}

/* Finalize every prepared statement (NULL ones are no-ops). */
static void finalize_all(struct dd_db *d)
{
	sqlite3_finalize(d->find);
	sqlite3_finalize(d->del_hashes);
	sqlite3_finalize(d->del_file);
	sqlite3_finalize(d->ins_file);
	sqlite3_finalize(d->done);
	sqlite3_finalize(d->put);
	sqlite3_finalize(d->get);
	sqlite3_finalize(d->del_runs_dst);
	sqlite3_finalize(d->del_runs_src);
	sqlite3_finalize(d->put_run);
	sqlite3_finalize(d->get_run);
	sqlite3_finalize(d->seen);
	sqlite3_finalize(d->unseen);
}

int dd_db_open(struct dd_db **out, const char *path, char *err, size_t errlen)
{
	struct dd_db *d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int rc = sqlite3_open_v2(path ? path : "", &d->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s", d->db ? sqlite3_errmsg(d->db) : "cannot open");
		goto fail;
	}
	sqlite3_busy_timeout(d->db, 5000);
	/* A 2 MiB page cache (SQLite's default size): with 512 KiB the pages
	 * of a 2-second transaction spilled, and a 1 GiB corpus cost 96,000
	 * preads and 37,000 pwrites of 4 KiB pages instead of 24,000 and 7,000
	 * (22,500 of the preads are the files' data), for 1.6 MiB more RSS.
	 * The private store (no --hashfile) is deleted at close, so it keeps
	 * no journal and never syncs: a crash loses nothing it would keep. */
	int mode_err = path ? exec(d, "PRAGMA journal_mode=WAL") || exec(d, "PRAGMA synchronous=NORMAL")
			    : exec(d, "PRAGMA journal_mode=OFF") || exec(d, "PRAGMA synchronous=OFF");
	if (mode_err || exec(d, "PRAGMA cache_size=-2048") ||
	    exec(d, "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value)") ||
	    exec(d, "CREATE TABLE IF NOT EXISTS files(id INTEGER PRIMARY KEY, path TEXT UNIQUE "
		    "NOT NULL, dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER, ctime_ns "
		    "INTEGER, blksize INTEGER, complete INTEGER)") ||
	    exec(d, "CREATE TABLE IF NOT EXISTS hashes(file_id INTEGER, chunk INTEGER, data BLOB, "
		    "PRIMARY KEY(file_id, chunk)) WITHOUT ROWID") ||
	    exec(d, "CREATE TABLE IF NOT EXISTS runs(dst_id INTEGER, dst_blk INTEGER, src_id "
		    "INTEGER, src_blk INTEGER, nblocks INTEGER, PRIMARY KEY(dst_id, dst_blk)) "
		    "WITHOUT ROWID") ||
	    exec(d, "CREATE INDEX IF NOT EXISTS runs_src ON runs(src_id)") ||
	    exec(d, "INSERT OR IGNORE INTO meta VALUES('version', 1), ('hash', 'xxh3-128'), "
		    "('chunk_blocks', 1024)")) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(d->db));
		goto fail;
	}
	sqlite3_stmt *chk;
	if (prep(d, &chk, "SELECT (SELECT value FROM meta WHERE key='version') = 1 AND "
		 "(SELECT value FROM meta WHERE key='hash') = 'xxh3-128' AND "
		 "(SELECT value FROM meta WHERE key='chunk_blocks') = 1024")) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(d->db));
		goto fail;
	}
	bool ok = sqlite3_step(chk) == SQLITE_ROW && sqlite3_column_int(chk, 0) == 1;
	sqlite3_finalize(chk);
	if (!ok) {
		snprintf(err, errlen, "not a reflinkfs dedupe hash file of version 1");
		sqlite3_close(d->db);
		free(d);
		return -EINVAL;
	}
	if (prep(d, &d->find, "SELECT id, dev, ino, size, mtime_ns, ctime_ns, blksize, complete "
		 "FROM files WHERE path = ?") ||
	    prep(d, &d->del_hashes, "DELETE FROM hashes WHERE file_id = ?") ||
	    prep(d, &d->del_file, "DELETE FROM files WHERE id = ?") ||
	    prep(d, &d->ins_file, "INSERT INTO files(path, dev, ino, size, mtime_ns, ctime_ns, "
		 "blksize, complete) VALUES(?, ?, ?, ?, ?, ?, ?, 0)") ||
	    prep(d, &d->done, "UPDATE files SET complete = 1 WHERE id = ?") ||
	    prep(d, &d->put, "INSERT OR REPLACE INTO hashes(file_id, chunk, data) VALUES(?, ?, ?)") ||
	    prep(d, &d->get, "SELECT data FROM hashes WHERE file_id = ? AND chunk = ?") ||
	    prep(d, &d->del_runs_dst, "DELETE FROM runs WHERE dst_id = ?") ||
	    prep(d, &d->del_runs_src, "DELETE FROM runs WHERE src_id = ?") ||
	    prep(d, &d->put_run, "INSERT OR REPLACE INTO runs VALUES(?, ?, ?, ?, ?)") ||
	    prep(d, &d->get_run, "SELECT 1 FROM runs WHERE dst_id = ? AND dst_blk = ? AND "
		 "src_id = ? AND src_blk = ? AND nblocks = ?") ||
	    exec(d, "CREATE TEMP TABLE seen(id INTEGER PRIMARY KEY)") ||
	    prep(d, &d->seen, "INSERT OR IGNORE INTO temp.seen VALUES(?)") ||
	    prep(d, &d->unseen, "SELECT id FROM files WHERE (path = ?1 OR "
		 "substr(path, 1, length(?2)) = ?2) AND id NOT IN (SELECT id FROM temp.seen)") ||
	    exec(d, "BEGIN")) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(d->db));
		goto fail;
	}
	*out = d;
	return 0;
fail:
	finalize_all(d);
	sqlite3_close(d->db);
	free(d);
	return -EIO;
}

int dd_db_close(struct dd_db *d)
{
	int r = exec(d, "COMMIT");
	finalize_all(d);
	if (sqlite3_close(d->db) != SQLITE_OK)
		r = -EIO;
	free(d);
	return r;
}

int dd_db_commit(struct dd_db *d)
{
	return exec(d, "COMMIT") || exec(d, "BEGIN") ? -EIO : 0;
}

/* Run a statement that returns no rows, with one integer parameter. */
static int run1(sqlite3_stmt *st, int64_t v)
{
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, v);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* Forget a file record: its hashes, and the settled runs it is part of
 * (a new record may get the same id). */
static int drop(struct dd_db *d, int64_t id)
{
	return run1(d->del_hashes, id) || run1(d->del_runs_dst, id) ||
			       run1(d->del_runs_src, id) || run1(d->del_file, id)
		       ? -EIO
		       : 0;
}

int dd_db_begin_file(struct dd_db *d, const char *path, const struct dd_file_key *k,
		     int64_t *db_id)
{
	sqlite3_stmt *st = d->find;
	sqlite3_reset(st);
	sqlite3_bind_text(st, 1, path, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		bool same = (uint64_t)sqlite3_column_int64(st, 1) == k->dev &&
			    (uint64_t)sqlite3_column_int64(st, 2) == k->ino &&
			    (uint64_t)sqlite3_column_int64(st, 3) == k->size_bytes &&
			    sqlite3_column_int64(st, 4) == k->mtime_ns &&
			    sqlite3_column_int64(st, 5) == k->ctime_ns &&
			    (uint32_t)sqlite3_column_int64(st, 6) == k->blksize &&
			    sqlite3_column_int(st, 7) == 1;
		sqlite3_reset(st);
		if (same) {
			*db_id = id;
			return run1(d->seen, id) ? -EIO : 1;
		}
		if (drop(d, id))
			return -EIO;
	} else {
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return -EIO;
	}
	st = d->ins_file;
	sqlite3_reset(st);
	sqlite3_bind_text(st, 1, path, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, (int64_t)k->dev);
	sqlite3_bind_int64(st, 3, (int64_t)k->ino);
	sqlite3_bind_int64(st, 4, (int64_t)k->size_bytes);
	sqlite3_bind_int64(st, 5, k->mtime_ns);
	sqlite3_bind_int64(st, 6, k->ctime_ns);
	sqlite3_bind_int64(st, 7, k->blksize);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return -EIO;
	*db_id = sqlite3_last_insert_rowid(d->db);
	return run1(d->seen, *db_id);
}

int dd_db_prune(struct dd_db *d, const char *root, uint64_t *dropped)
{
	size_t rl = strlen(root);
	while (rl > 1 && root[rl - 1] == '/')
		rl--;
	char *r = strndup(root, rl), *prefix = NULL;
	if (!r || asprintf(&prefix, "%s/", rl == 1 && r[0] == '/' ? "" : r) < 0) {
		free(r);
		return -ENOMEM;
	}
	/* ids first: dropping while the SELECT steps would change its table */
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	int err = 0;
	sqlite3_stmt *st = d->unseen;
	sqlite3_reset(st);
	sqlite3_bind_text(st, 1, r, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, prefix, -1, SQLITE_TRANSIENT);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 64;
			int64_t *v = realloc(ids, nc * sizeof(*v));
			if (!v) {
				err = -ENOMEM;
				break;
			}
			ids = v;
			cap = nc;
		}
		ids[n++] = sqlite3_column_int64(st, 0);
	}
	if (!err && rc != SQLITE_DONE)
		err = -EIO;
	sqlite3_reset(st);
	for (size_t i = 0; !err && i < n; i++)
		err = drop(d, ids[i]);
	if (!err)
		*dropped += n;
	free(ids);
	free(r);
	free(prefix);
	return err;
}

int dd_db_end_file(struct dd_db *d, int64_t db_id, bool complete)
{
	if (complete)
		return run1(d->done, db_id);
	return drop(d, db_id);
}

/* Reset st and bind a run's five columns (dst_id, dst_blk, src_id,
 * src_blk, nblocks) in that order; returns st. */
static sqlite3_stmt *bind_run(sqlite3_stmt *st, int64_t dst_id, int64_t src_id,
			      const struct dd_run *r)
{
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, dst_id);
	sqlite3_bind_int64(st, 2, (int64_t)r->dst_blk);
	sqlite3_bind_int64(st, 3, src_id);
	sqlite3_bind_int64(st, 4, (int64_t)r->src_blk);
	sqlite3_bind_int64(st, 5, (int64_t)r->nblocks);
	return st;
}

int dd_db_put_run(struct dd_db *d, int64_t dst_id, int64_t src_id, const struct dd_run *r)
{
	sqlite3_stmt *st = bind_run(d->put_run, dst_id, src_id, r);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int dd_db_get_run(struct dd_db *d, int64_t dst_id, int64_t src_id, const struct dd_run *r)
{
	sqlite3_stmt *st = bind_run(d->get_run, dst_id, src_id, r);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

int dd_db_put_chunk(struct dd_db *d, int64_t db_id, uint64_t chunk, const struct dd_hash *h,
		    unsigned n)
{
	sqlite3_stmt *st = d->put;
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, db_id);
	sqlite3_bind_int64(st, 2, (int64_t)chunk);
	sqlite3_bind_blob(st, 3, h, (int)(n * sizeof(*h)), SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int dd_db_get_chunk(struct dd_db *d, int64_t db_id, uint64_t chunk, struct dd_hash *h,
		    unsigned max)
{
	sqlite3_stmt *st = d->get;
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, db_id);
	sqlite3_bind_int64(st, 2, (int64_t)chunk);
	int rc = sqlite3_step(st), n = 0;
	if (rc == SQLITE_ROW) {
		int bytes = sqlite3_column_bytes(st, 0);
		const void *p = sqlite3_column_blob(st, 0);
		n = bytes / (int)sizeof(*h);
		if ((unsigned)n > max)
			n = (int)max;
		if (n > 0 && p)
			memcpy(h, p, (size_t)n * sizeof(*h));
	} else if (rc != SQLITE_DONE) {
		n = -EIO;
	}
	sqlite3_reset(st);
	return n;
}

int dd_db_meta_get(struct dd_db *d, const char *key, char *buf, size_t len)
{
	sqlite3_stmt *st;
	if (prep(d, &st, "SELECT value FROM meta WHERE key = ?"))
		return -EIO;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st), err = -ENOENT;
	if (rc == SQLITE_ROW) {
		const unsigned char *v = sqlite3_column_text(st, 0);
		snprintf(buf, len, "%s", v ? (const char *)v : "");
		err = 0;
	} else if (rc != SQLITE_DONE) {
		err = -EIO;
	}
	sqlite3_finalize(st);
	return err;
}

int dd_db_meta_set(struct dd_db *d, const char *key, const char *value)
{
	sqlite3_stmt *st;
	if (prep(d, &st, value ? "INSERT OR REPLACE INTO meta VALUES(?, ?)" :
				 "DELETE FROM meta WHERE key = ?"))
		return -EIO;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (value)
		sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int dd_db_nfiles(struct dd_db *d, int64_t *n)
{
	sqlite3_stmt *st;
	if (prep(d, &st, "SELECT count(*) FROM files"))
		return -EIO;
	int rc = sqlite3_step(st);
	*n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : -EIO;
}

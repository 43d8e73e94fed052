/*
 * core.c: checksums, corruption reports, the superblock's error record and
 * the bare mount.
 *
 * crc32c is the Castagnoli CRC (iSCSI, RFC 3720) as computed by isa-l's
 * crc32_iscsi(), which leaves the initial and final inversion to the
 * caller: crc32c(x) = ~crc32_iscsi(x, len, ~0).  A block's checksum covers
 * the whole block with the 4-byte crc field read as zeros (XFS does the same
 * with xfs_start_cksum_safe), so the field can be verified in place.
 */
#include "rlfs.h"
#include "busy.h"

#include <isa-l/crc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "iunlink.h"
#include "log.h"

static uint32_t crc_raw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	while (len > 0) { /* isa-l takes an int length */
		int n = len > (1u << 30) ? (1 << 30) : (int)len;
		crc = crc32_iscsi((unsigned char *)p, n, crc);
		p += n;
		len -= (size_t)n;
	}
	return crc;
}

uint32_t rlfs_crc32c(const void *buf, size_t len)
{
	return ~crc_raw(~0u, buf, len);
}

static uint32_t cksum_skip(const void *buf, size_t len, size_t crc_off)
{
	static const uint8_t zero[4];
	uint32_t crc = crc_raw(~0u, buf, crc_off);
	crc = crc_raw(crc, zero, 4);
	crc = crc_raw(crc, (const uint8_t *)buf + crc_off + 4, len - crc_off - 4);
	return ~crc;
}

void rlfs_cksum_update(void *buf, size_t len, size_t crc_off)
{
	rlfs_le32 v = rlfs_le32_of(cksum_skip(buf, len, crc_off));
	memcpy((uint8_t *)buf + crc_off, &v, 4);
}

bool rlfs_cksum_verify(const void *buf, size_t len, size_t crc_off)
{
	rlfs_le32 v;
	memcpy(&v, (const uint8_t *)buf + crc_off, 4);
	return rlfs_get32(v) == cksum_skip(buf, len, crc_off);
}

/* ------------------------------------------------------------------ */
/* The superblock's error record                                       */

void rlfs_errrec_load(struct rlfs_errrec *e, const struct rlfs_sb *sb)
{
	memset(e, 0, sizeof(*e));
	e->flags = rlfs_get32(sb->errors);
	e->count = rlfs_get32(sb->error_count);
	e->fsck_time = rlfs_get64(sb->fsck_time);
	e->fsck_errors = rlfs_get32(sb->fsck_errors);
	e->first_time = rlfs_get64(sb->first_error_time);
	e->first_fsbno = rlfs_get64(sb->first_error_fsbno);
	e->last_time = rlfs_get64(sb->last_error_time);
	e->last_fsbno = rlfs_get64(sb->last_error_fsbno);
	memcpy(e->first_what, sb->first_error_what, sizeof(e->first_what));
}

void rlfs_errrec_store(const struct rlfs_errrec *e, struct rlfs_sb *sb)
{
	rlfs_put32(sb->errors, e->flags);
	rlfs_put32(sb->error_count, e->count);
	rlfs_put64(sb->fsck_time, e->fsck_time);
	rlfs_put32(sb->fsck_errors, e->fsck_errors);
	rlfs_put64(sb->first_error_time, e->first_time);
	rlfs_put64(sb->first_error_fsbno, e->first_fsbno);
	rlfs_put64(sb->last_error_time, e->last_time);
	rlfs_put64(sb->last_error_fsbno, e->last_fsbno);
	memcpy(sb->first_error_what, e->first_what, sizeof(sb->first_error_what));
}

static void fmt_time(uint64_t sec, char *buf, size_t len)
{
	time_t t = (time_t)sec;
	struct tm tm;
	if (sec == 0 || sec > (uint64_t)INT64_MAX || !gmtime_r(&t, &tm) ||
	    !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(buf, len, "an unknown time");
}

char *rlfs_errrec_describe(const struct rlfs_errrec *e, char *buf, size_t len)
{
	char when[48], what[sizeof(e->first_what) + 1];
	size_t n = 0;
	buf[0] = '\0';
#define ADD(...) do { if (n < len) n += (size_t)snprintf(buf + n, len - n, __VA_ARGS__); } while (0)
	if (e->flags & RLFS_SB_ERR_FSCK) {
		fmt_time(e->fsck_time, when, sizeof(when));
		ADD("found by fsck (%u finding%s left uncorrected, %s)", e->fsck_errors,
		    e->fsck_errors == 1 ? "" : "s", when);
	}
	if (e->flags & RLFS_SB_ERR_CORRUPT) {
		memcpy(what, e->first_what, sizeof(e->first_what));
		what[sizeof(e->first_what)] = '\0';
		for (char *c = what; *c; c++)   /* from disk: print it safely */
			if (*c < 0x20 || *c > 0x7e)
				*c = '?';
		fmt_time(e->first_time, when, sizeof(when));
		ADD("%scorrupt metadata met while mounted "
		    "(%u report%s; first: %s at fsbno %llu, %s)", n ? "; " : "", e->count,
		    e->count == 1 ? "" : "s", what[0] ? what : "?",
		    (unsigned long long)e->first_fsbno, when);
	}
	if (e->flags & RLFS_SB_ERR_WRITE)
		ADD("%smetadata could not be written at unmount", n ? "; " : "");
	if (e->flags & ~(RLFS_SB_ERR_FSCK | RLFS_SB_ERR_CORRUPT | RLFS_SB_ERR_WRITE))
		ADD("%sunknown error flags 0x%x", n ? "; " : "",
		    e->flags & ~(RLFS_SB_ERR_FSCK | RLFS_SB_ERR_CORRUPT | RLFS_SB_ERR_WRITE));
#undef ADD
	return buf;
}

void rlfs_mark_error(struct rlfs_mount *mp, uint32_t flag, uint64_t fsbno, const char *what)
{
	if (!mp || !mp->err_track)
		return;
	uint64_t now = (uint64_t)time(NULL);
	pthread_mutex_lock(&mp->err_lock);
	struct rlfs_errrec *e = &mp->err;
	bool first = !mp->err_said;
	e->flags |= flag;
	if (flag & RLFS_SB_ERR_CORRUPT) {
		if (e->count < UINT32_MAX)
			e->count++;
		if (!e->first_time) {
			e->first_time = now;
			e->first_fsbno = fsbno;
			memset(e->first_what, 0, sizeof(e->first_what));
			strncpy(e->first_what, what ? what : "", sizeof(e->first_what));
		}
		e->last_time = now;
		e->last_fsbno = fsbno;
	}
	mp->err_seq++;
	mp->err_said = true;
	pthread_mutex_unlock(&mp->err_lock);
	if (first && (flag & RLFS_SB_ERR_CORRUPT)) {
		const char *img = mp->image ? mp->image : "the image";
		if (mp->flags & RLFS_MOUNT_RDONLY)
			rlfs_warn("%s: corrupt metadata found; read-only mount, so the "
				  "superblock does not record it: run `reflinkfs fsck %s` after "
				  "unmount", img, img);
		else
			rlfs_warn("%s: corrupt metadata found; marking the superblock as having "
				  "errors: run `reflinkfs fsck %s` after unmount", img, img);
	}
}

int rlfs_corrupt(struct rlfs_mount *mp, uint64_t fsbno, const char *what,
		 const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (mp && mp->agblocks)
		fprintf(stderr, "reflinkfs: corruption: AG %u agbno %u (fsbno %llu) %s: %s\n",
			rlfs_fsb_to_agno(mp, fsbno), rlfs_fsb_to_agbno(mp, fsbno),
			(unsigned long long)fsbno, what, msg);
	else
		fprintf(stderr, "reflinkfs: corruption: fsbno %llu %s: %s\n",
			(unsigned long long)fsbno, what, msg);
	rlfs_mark_error(mp, RLFS_SB_ERR_CORRUPT, fsbno, what);
	return -EUCLEAN;
}

void rlfs_warn(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "reflinkfs: %s\n", msg);
}

int rlfs_mount_alloc_bare(struct rlfs_dev *dev, uint32_t blocksize, uint64_t dblocks,
			  uint32_t agblocks, struct rlfs_mount **mpp)
{
	if (blocksize < RLFS_MIN_BLOCKSIZE || blocksize > RLFS_MAX_BLOCKSIZE ||
	    (blocksize & (blocksize - 1)) || dblocks == 0)
		return -EINVAL;
	struct rlfs_mount *mp = calloc(1, sizeof(*mp));
	if (!mp)
		return -ENOMEM;
	mp->dev = dev;
	mp->blocksize = blocksize;
	mp->blocklog = (uint32_t)__builtin_ctz(blocksize);
	mp->dblocks = dblocks;
	mp->agblocks = agblocks ? agblocks : (uint32_t)RLFS_MIN(dblocks, RLFS_MAX_AGBLOCKS);
	mp->agcount = (uint32_t)((dblocks + mp->agblocks - 1) / mp->agblocks);
	mp->inodesize = RLFS_DEFAULT_INODESIZE;
	mp->inopblock = blocksize / mp->inodesize;
	mp->chunk_blocks = RLFS_MAX(1u, RLFS_INODES_PER_CHUNK / mp->inopblock);
	pthread_mutex_init(&mp->meta_lock, NULL);
	pthread_mutex_init(&mp->icache_lock, NULL);
	pthread_cond_init(&mp->inactive_cv, NULL);
	pthread_mutex_init(&mp->cow_lock, NULL);
	mp->cow_fill_blocks = RLFS_COW_FILL_DEFAULT;
	pthread_mutex_init(&mp->err_lock, NULL);
	int err = rlfs_bcache_init(mp, (size_t)256 << 20);
	if (err) {
		free(mp);
		return err;
	}
	*mpp = mp;
	return 0;
}

void rlfs_mount_free_bare(struct rlfs_mount *mp)
{
	if (!mp)
		return;
	rlfs_trans_resv_report(mp);
	rlfs_log_free(mp);
	rlfs_bcache_destroy(mp);
	rlfs_busy_destroy(mp);
	rlfs_iunlink_destroy(mp);
	pthread_mutex_destroy(&mp->meta_lock);
	pthread_mutex_destroy(&mp->icache_lock);
	pthread_cond_destroy(&mp->inactive_cv);
	pthread_mutex_destroy(&mp->cow_lock);
	pthread_mutex_destroy(&mp->err_lock);
	free(mp->image);
	free(mp);
}

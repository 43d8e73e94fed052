/*
 * core.c: checksums, corruption reports and the bare mount.
 *
 * crc32c is the Castagnoli CRC (iSCSI, RFC 3720) as computed by isa-l's
 * crc32_iscsi(), which leaves the initial and final inversion to the
 * caller: crc32c(x) = ~crc32_iscsi(x, len, ~0).  A block's checksum covers
 * the whole block with the 4-byte crc field read as zeros (XFS does the same
 * with xfs_start_cksum_safe), so the field can be verified in place.
 */
#include "rlfs.h"

#include <isa-l/crc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

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
	rlfs_bcache_destroy(mp);
	pthread_mutex_destroy(&mp->meta_lock);
	pthread_mutex_destroy(&mp->icache_lock);
	free(mp);
}

/*
 * logprint.c: `reflinkfs logprint [-v] IMAGE`, dump the write-ahead log
 * (LOG feature) as xfs_logprint does: every valid record header in ring
 * order with its LSN, tail, sequence, flags and sizes (-v: each
 * descriptor), then what recovery would do (tail, head, checkpoints that
 * need replay).  Reads only.  Exit 0, 1 on error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dev.h"
#include "log.h"
#include "rlfs.h"

static const char *type_name(uint16_t t)
{
	switch (t) {
	case RLFS_LOG_ITEM_BUF: return "buf";
	case RLFS_LOG_ITEM_INODE: return "inode";
	case RLFS_LOG_ITEM_RAW: return "raw";
	case RLFS_LOG_ITEM_CANCEL: return "cancel";
	case RLFS_LOG_ITEM_INTENT: return "intent";
	case RLFS_LOG_ITEM_DONE: return "done";
	}
	return "?";
}

static const char *code_name(uint16_t c)
{
	switch (c) {
	case RLFS_LOG_EFI: return "EFI";
	case RLFS_LOG_EFD: return "EFD";
	case RLFS_LOG_CUI: return "CUI";
	case RLFS_LOG_CUD: return "CUD";
	case RLFS_LOG_BUI: return "BUI";
	case RLFS_LOG_BUD: return "BUD";
	case RLFS_LOG_RUI: return "RUI";
	case RLFS_LOG_RUD: return "RUD";
	case RLFS_LOG_SXI: return "SXI";
	case RLFS_LOG_SXD: return "SXD";
	case RLFS_LOG_XMI: return "XMI";
	case RLFS_LOG_XMD: return "XMD";
	}
	return "?";
}

/* -v: one intent's items (its payload block p), decoded for the known
 * types, in hex otherwise. */
/* An image's logged byte ranges: " chunks N bytes B ranges [a,b) ..."
 * (runs of logged 128-byte chunks merged; version 1: the whole block). */
static void print_ranges(const struct rlfs_log_seg *seg, uint32_t bs)
{
	if (!seg->map) {
		printf(" whole block");
		return;
	}
	uint32_t n = bs / RLFS_LOG_CHUNK;
	printf(" chunks %u bytes %u ranges", seg->bytes / RLFS_LOG_CHUNK, seg->bytes);
	for (uint32_t i = 0; i < n;) {
		if (!(seg->map[i >> 3] & (1u << (i & 7)))) {
			i++;
			continue;
		}
		uint32_t j = i;
		while (j < n && (seg->map[j >> 3] & (1u << (j & 7))))
			j++;
		printf(" [%u,%u)", i * RLFS_LOG_CHUNK, j * RLFS_LOG_CHUNK);
		i = j;
	}
}

static void print_intent_items(const uint8_t *p, uint32_t bs)
{
	const struct rlfs_log_intent *h = (const void *)p;
	uint16_t code = rlfs_get16(h->code), ib = rlfs_get16(h->item_bytes);
	uint32_t n = rlfs_get32(h->count);
	if ((uint64_t)n * ib + sizeof(*h) > bs) {
		printf("        (bad intent: %u items of %u bytes)\n", n, ib);
		return;
	}
	const uint8_t *it = p + sizeof(*h);
	for (uint32_t i = 0; i < n; i++, it += ib) {
		if (code == RLFS_LOG_EFI && ib == sizeof(struct rlfs_efi_item)) {
			const struct rlfs_efi_item *e = (const void *)it;
			printf("        free fsbno %" PRIu64 " len %u\n",
			       (uint64_t)rlfs_get64(e->fsbno), rlfs_get32(e->len));
		} else if (code == RLFS_LOG_CUI && ib == sizeof(struct rlfs_cui_item)) {
			const struct rlfs_cui_item *c = (const void *)it;
			uint32_t op = rlfs_get32(c->op);
			printf("        %s fsbno %" PRIu64 " len %u\n",
			       op == RLFS_CUI_INCREASE ? "increase" :
			       op == RLFS_CUI_DECREASE ? "decrease" : "op?",
			       (uint64_t)rlfs_get64(c->fsbno), rlfs_get32(c->len));
		} else if (code == RLFS_LOG_BUI && ib == sizeof(struct rlfs_bui_item)) {
			const struct rlfs_bui_item *b = (const void *)it;
			uint32_t fl = rlfs_get32(b->flags);
			unsigned op = fl & RLFS_BUI_OP_MASK;
			printf("        %s ino %" PRIu64 " fileoff %" PRIu64 " fsbno %" PRIu64
			       " len %u%s\n",
			       op == RLFS_BUI_MAP ? "map" : op == RLFS_BUI_UNMAP ? "unmap" : "op?",
			       (uint64_t)rlfs_get64(b->ino), (uint64_t)rlfs_get64(b->startoff),
			       (uint64_t)rlfs_get64(b->startblock), rlfs_get32(b->len),
			       (fl & RLFS_BUI_UNWRITTEN) ? " unwritten" : "");
		} else if (code == RLFS_LOG_RUI && ib == sizeof(struct rlfs_rui_item)) {
			const struct rlfs_rui_item *r = (const void *)it;
			uint32_t op = rlfs_get32(r->op);
			uint64_t off = rlfs_get64(r->offset);
			printf("        %s owner %" PRIu64 " offset %" PRIu64 "%s%s%s fsbno %" PRIu64
			       " len %u\n",
			       op == RLFS_RUI_MAP ? "map" : op == RLFS_RUI_UNMAP ? "unmap" :
			       op == RLFS_RUI_CONVERT ? "convert" : "op?",
			       (uint64_t)rlfs_get64(r->owner), (uint64_t)RLFS_RMAP_OFF(off),
			       (off & RLFS_RMAP_OFF_ATTR_FORK) ? " attr" : "",
			       (off & RLFS_RMAP_OFF_BMBT_BLOCK) ? " bmbt" : "",
			       (off & RLFS_RMAP_OFF_UNWRITTEN) ? " unwritten" : "",
			       (uint64_t)rlfs_get64(r->fsbno), rlfs_get32(r->len));
		} else if (code == RLFS_LOG_SXI && ib == sizeof(struct rlfs_sxi_item)) {
			const struct rlfs_sxi_item *x = (const void *)it;
			uint32_t fl = rlfs_get32(x->flags);
			unsigned op = fl & RLFS_SXI_OP_MASK;
			printf("        %s ino %" PRIu64 " fileoff %" PRIu64 " shift %" PRIu64
			       " cursor %" PRIu64 " new_size %" PRIu64 "%s\n",
			       op == RLFS_SXI_COLLAPSE ? "collapse" :
			       op == RLFS_SXI_INSERT ? "insert" : "op?",
			       (uint64_t)rlfs_get64(x->ino), (uint64_t)rlfs_get64(x->startoff),
			       (uint64_t)rlfs_get64(x->shift), (uint64_t)rlfs_get64(x->cursor),
			       (uint64_t)rlfs_get64(x->new_size),
			       (fl & RLFS_SXI_PUNCHING) ? " punching" : "");
		} else if (code == RLFS_LOG_XMI && ib == sizeof(struct rlfs_xmi_item)) {
			const struct rlfs_xmi_item *x = (const void *)it;
			uint64_t fl = rlfs_get64(x->flags);
			printf("        exchange ino %" PRIu64 " fileoff %" PRIu64 " <-> ino %" PRIu64
			       " fileoff %" PRIu64 " len %" PRIu64 "%s",
			       (uint64_t)rlfs_get64(x->ino1), (uint64_t)rlfs_get64(x->startoff1),
			       (uint64_t)rlfs_get64(x->ino2), (uint64_t)rlfs_get64(x->startoff2),
			       (uint64_t)rlfs_get64(x->blockcount),
			       (fl & RLFS_XMI_FILE1_WRITTEN) ? " file1-written" : "");
			if (fl & RLFS_XMI_SET_SIZES)
				printf(" sizes %" PRIu64 "/%" PRIu64, (uint64_t)rlfs_get64(x->new_size1),
				       (uint64_t)rlfs_get64(x->new_size2));
			printf("\n");
		} else {
			printf("        item %u:", i);
			for (uint16_t k = 0; k < ib && k < 32; k++)
				printf(" %02x", it[k]);
			printf("\n");
		}
	}
}

static void lsn_str(uint64_t lsn, char *buf, size_t len)
{
	snprintf(buf, len, "%u/%u", RLFS_LSN_CYCLE(lsn), RLFS_LSN_BLOCK(lsn));
}

/* logprint --resv: the log reservations (trans_resv.h) of the image's
 * geometry, one line per transaction type. */
static int print_resv(const char *prog, const char *image, struct rlfs_dev *dev,
		      const struct rlfs_sb *sb)
{
	uint32_t bs = rlfs_get32(sb->blocksize), isz = rlfs_get16(sb->inodesize);
	struct rlfs_mount *mp;
	int err = rlfs_mount_alloc_bare(dev, bs, rlfs_get64(sb->dblocks),
					rlfs_get32(sb->agblocks), &mp);
	if (err || isz < 256 || isz > bs) {
		fprintf(stderr, "%s: %s: bad geometry\n", prog, image);
		if (!err)
			rlfs_mount_free_bare(mp);
		return 1;
	}
	mp->inodesize = isz;
	mp->inopblock = bs / isz;
	mp->chunk_blocks = RLFS_MAX(1u, RLFS_INODES_PER_CHUNK / mp->inopblock);
	mp->features_incompat = rlfs_get64(sb->features_incompat);
	rlfs_trans_resv_init(mp);
	uint32_t log_blocks = rlfs_get32(sb->log_blocks);
	printf("%s: log reservations (worst-case bytes one transaction adds to the log;\n"
	       "  block size %u, %u AGs of %u blocks, log %u blocks = %" PRIu64 " bytes)\n",
	       image, bs, mp->agcount, mp->agblocks, log_blocks, (uint64_t)log_blocks * bs);
	printf("%-14s %12s %8s %6s  %s\n", "type", "log_bytes", "blocks", "count", "covers");
	for (unsigned i = 0; i < RLFS_TRANS_RESV_NTYPES; i++) {
		const struct rlfs_trans_res *r = rlfs_trans_resv_nth(mp, i);
		printf("%-14s %12u %8u %6u  %s\n", r->name, r->log_bytes, r->log_bytes / bs,
		       r->log_count, rlfs_trans_resv_what(i));
	}
	rlfs_mount_free_bare(mp);
	return 0;
}

int rlfs_logprint_main(int argc, char **argv)
{
	const char *prog = argv[0];
	bool verbose = false, resv = false;
	int c;
	static const struct option longopts[] = {
		{ "resv", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	while ((c = getopt_long(argc, argv, "vrh", longopts, NULL)) != -1) {
		if (c == 'v') {
			verbose = true;
		} else if (c == 'r') {
			resv = true;
		} else {
			fprintf(c == 'h' ? stdout : stderr, "Usage: %s [-v] [-r|--resv] IMAGE\n"
				"Dump the write-ahead log of a reflinkfs image (read only).\n"
				"  -r, --resv  print the log reservation of every transaction type\n"
				"              for the image's geometry instead (trans_resv.h)\n", prog);
			return c == 'h' ? 0 : 1;
		}
	}
	if (argc - optind != 1) {
		fprintf(stderr, "%s: expected one IMAGE\n", prog);
		return 1;
	}
	const char *image = argv[optind];
	struct rlfs_dev *dev;
	int err = rlfs_dev_open(image, 0, 0, &dev);
	if (err) {
		fprintf(stderr, "%s: cannot open %s: %s\n", prog, image, strerror(-err));
		return 1;
	}
	struct rlfs_sb sb;
	if (rlfs_dev_pread(dev, &sb, sizeof(sb), 0) || rlfs_get32(sb.hdr.magic) != RLFS_SB_MAGIC) {
		fprintf(stderr, "%s: %s: not a reflinkfs image\n", prog, image);
		rlfs_dev_close(dev);
		return 1;
	}
	if (resv) {
		int rc = print_resv(prog, image, dev, &sb);
		rlfs_dev_close(dev);
		return rc;
	}
	if (!(rlfs_get64(sb.features_incompat) & RLFS_FEAT_INCOMPAT_LOG)) {
		printf("%s: no write-ahead log (made without the LOG feature)\n", image);
		rlfs_dev_close(dev);
		return 0;
	}
	uint32_t bs = rlfs_get32(sb.blocksize), isz = rlfs_get16(sb.inodesize);
	uint64_t start = rlfs_get64(sb.log_start);
	uint32_t nblk = rlfs_get32(sb.log_blocks);
	struct rlfs_mount *mp;
	err = rlfs_mount_alloc_bare(dev, bs, rlfs_get64(sb.dblocks), rlfs_get32(sb.agblocks), &mp);
	if (err || isz < 256 || isz > bs) {
		fprintf(stderr, "%s: %s: bad geometry\n", prog, image);
		rlfs_dev_close(dev);
		return 1;
	}
	mp->inodesize = isz;
	mp->inopblock = bs / isz;
	memcpy(mp->uuid, sb.hdr.uuid, RLFS_UUID_SIZE);
	printf("%s: log of %u blocks (%u bytes each) at fsbno %" PRIu64 "\n", image, nblk, bs,
	       start);
	uint8_t *blk = malloc(bs), *pbuf = malloc(bs);
	int rc = 0;
	for (uint32_t b = 0; blk && pbuf && b < nblk && start + nblk <= mp->dblocks; b++) {
		if (rlfs_dev_pread(dev, blk, bs, (start + b) << mp->blocklog)) {
			rc = 1;
			break;
		}
		if (!rlfs_log_rec_valid(mp, blk, b, nblk))
			continue;
		const struct rlfs_log_rec *rec = (const void *)blk;
		char l[24], t[24], k[24];
		lsn_str(rlfs_get64(rec->lsn), l, sizeof(l));
		lsn_str(rlfs_get64(rec->tail_lsn), t, sizeof(t));
		lsn_str(rlfs_get64(rec->ckpt_lsn), k, sizeof(k));
		uint32_t flags = rlfs_get32(rec->flags), n = rlfs_get32(rec->nitems);
		printf("block %u: lsn %s tail %s seq %" PRIu64 " ckpt %s items %u payload %u%s%s\n",
		       b, l, t, (uint64_t)rlfs_get64(rec->seq), k, n, rlfs_get32(rec->len_blocks),
		       flags & RLFS_LREC_COMMIT ? " COMMIT" : "",
		       flags & RLFS_LREC_UNMOUNT ? " UNMOUNT" : "");
		const struct rlfs_log_desc *d = (const void *)(blk + sizeof(*rec));
		uint32_t len = rlfs_get32(rec->len_blocks);
		uint8_t *whole = NULL;
		struct rlfs_log_seg *segs = NULL;
		bool segs_ok = false;
		if (verbose) {
			/* the whole record: header + payload, to split into segments */
			whole = malloc((size_t)(1 + len) * bs);
			segs = calloc(n + 1, sizeof(*segs));
			if (whole && segs) {
				memcpy(whole, blk, bs);
				segs_ok = !len || !rlfs_dev_pread(dev, whole + bs, (size_t)len * bs,
								   (start + b + 1) << mp->blocklog);
				segs_ok = segs_ok && rlfs_log_rec_segs(mp, whole, segs) == 0;
			}
			printf("    version %u%s\n", rlfs_get32(rec->version),
			       segs_ok ? "" : ", payload does not parse (torn or corrupt)");
		}
		for (uint32_t i = 0; verbose && i < n; i++) {
			uint16_t ty = rlfs_get16(d[i].type);
			if (ty == RLFS_LOG_ITEM_INTENT || ty == RLFS_LOG_ITEM_DONE) {
				printf("    %-6s %s id %#" PRIx64, type_name(ty),
				       code_name(rlfs_get16(d[i].code)),
				       (uint64_t)rlfs_get64(d[i].fsbno));
				if (ty == RLFS_LOG_ITEM_INTENT)
					printf(" items %u", rlfs_get32(d[i].count));
				printf("\n");
			} else {
				printf("    %-6s fsbno %" PRIu64, type_name(ty),
				       (uint64_t)rlfs_get64(d[i].fsbno));
				if (segs_ok && segs[i].data)
					print_ranges(&segs[i], bs);
				printf("\n");
			}
			if (ty == RLFS_LOG_ITEM_INTENT && segs_ok && segs[i].data) {
				memset(pbuf, 0, bs);
				memcpy(pbuf, segs[i].data, segs[i].bytes < bs ? segs[i].bytes : bs);
				print_intent_items(pbuf, bs);
			}
		}
		free(whole);
		free(segs);
	}
	free(blk);
	free(pbuf);
	struct rlfs_log_scan scan;
	err = rlfs_log_recover(mp, start, nblk, false, &scan, NULL);
	if (err) {
		printf("recovery: cannot use the log (%s)\n", strerror(-err));
		rc = 1;
	} else {
		char t[24], h[24];
		lsn_str(scan.tail_lsn, t, sizeof(t));
		lsn_str(scan.head_lsn, h, sizeof(h));
		printf("tail %s, head %s, next seq %" PRIu64 ": %s", t, h, scan.next_seq,
		       scan.needs_replay ? "needs replay" : "clean");
		if (scan.needs_replay)
			printf(" (%" PRIu64 " checkpoint(s), %" PRIu64 " item(s))", scan.ckpts,
			       scan.items);
		printf("\n");
	}
	rlfs_mount_free_bare(mp);
	rlfs_dev_close(dev);
	return rc;
}

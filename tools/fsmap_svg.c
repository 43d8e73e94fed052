/*
 * fsmap_svg.c: `reflinkfs fsmap --svg FILE`, the GETFSMAP records drawn as
 * a picture of where the space went (issue 11 section 2, beyond XFS).
 *
 * Classes.  The records are swept once (start and end events, in blocks):
 * between two events the set of records covering a block is constant, and
 * the blocks take one class from it.  Metadata first (static fs metadata,
 * log, per-AG metadata, inode btree, inodes, refcount btree, CoW staging,
 * bmbt and directory btree blocks, xattr blocks, other special owners), then
 * file data by the number of data records covering the block, which is its
 * refcount (GETFSMAP reports a shared block once per owner): 1 "data" (or
 * "unwritten" if that record is preallocated), 2, 3-4, 5 or more owners;
 * then free space; a block no record covers is "other" (never seen with a
 * whole-device query).
 *
 * Layout.  One band per AG, "AG n" and its size at the left, its blocks
 * left to right in rows of `width` pixels.  An AG that fits in one row
 * gets 1 to 16 pixels a block; a bigger one a column of 1 pixel per
 * `bpc` blocks (up to 8 rows an AG, fewer with many AGs), coloured by the
 * class with the most blocks in the column (ties to the later class:
 * metadata, then shared, then data, then free), which the legend says.
 * Neighbouring columns of one class in one row are one <rect>.
 *
 * Content a program can check: each map <rect> has class="CLASS",
 * data-blocks (its blocks of that class, exact) and, when columns hold
 * more than one block, data-other="CLASS:N ..." (blocks of other classes
 * that its columns hide), so per class the sum of data-blocks plus the
 * data-other entries is the class's total; <metadata> holds the geometry
 * and <rlfs:total class= blocks=> per class present; the legend a
 * swatch (class="swatch" data-class=) and the total for each of them;
 * each band is <g class="ag" data-ag= data-blocks=>.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <reflinkfs/fsmap.h>

#include "fsmap_svg.h"

enum cls {
	C_FREE, C_DATA, C_UNWRITTEN, C_SHARED2, C_SHARED3, C_SHARED5,
	C_FS, C_LOG, C_AG, C_INOBT, C_INODES, C_REFC, C_COW, C_BMBT, C_XATTR, C_OTHER,
	NCLS
};
#define C_META_FIRST C_FS

static const struct {
	const char *name, *fill, *label;
} cls_info[NCLS] = {
	[C_FREE] = { "free", "#e6e6e6", "free space" },
	[C_DATA] = { "data", "#3b82d6", "file data, one owner" },
	[C_UNWRITTEN] = { "unwritten", "#a9d2f5", "unwritten (preallocated) file data" },
	[C_SHARED2] = { "shared2", "#f5b041", "shared file data, 2 owners" },
	[C_SHARED3] = { "shared3", "#e67e22", "shared file data, 3-4 owners" },
	[C_SHARED5] = { "shared5", "#b03a2e", "shared file data, 5 or more owners" },
	[C_FS] = { "fs", "#1c2833", "static fs metadata (superblock, AG headers)" },
	[C_LOG] = { "log", "#7d3c98", "journalling log" },
	[C_AG] = { "agmeta", "#1e8449", "per-AG metadata (AGFL, free-space and rmap btrees)" },
	[C_INOBT] = { "inobt", "#17a589", "inode btree" },
	[C_INODES] = { "inodes", "#d4ac0d", "inodes" },
	[C_REFC] = { "refcountbt", "#e84393", "refcount btree" },
	[C_COW] = { "cow", "#ff00ff", "CoW staging" },
	[C_BMBT] = { "bmbt", "#7b4a2a", "extent map (bmbt) and directory btree blocks" },
	[C_XATTR] = { "xattr", "#00acc1", "xattr btree blocks and values (attr fork)" },
	[C_OTHER] = { "other", "#000000", "other or unknown owner" },
};

struct ev {
	uint64_t pos;
	int delta;
	int cls;
};

struct seg {
	uint64_t start, end;   /* blocks, end exclusive */
	int cls;
};

struct fsmap_svg {
	uint32_t bs, agblocks, agcount;
	uint64_t dblocks;
	struct ev *ev;
	size_t nev, cap;
};

struct fsmap_svg *fsmap_svg_new(uint32_t blocksize, uint32_t agblocks, uint32_t agcount,
				uint64_t dblocks)
{
	struct fsmap_svg *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->bs = blocksize;
	s->agblocks = agblocks;
	s->agcount = agcount;
	s->dblocks = dblocks;
	return s;
}

void fsmap_svg_free(struct fsmap_svg *s)
{
	if (!s)
		return;
	free(s->ev);
	free(s);
}

/* The class a record gives its blocks (data classes counted later). */
static int rec_cls(const struct fsmap *p)
{
	if (p->fmr_flags & FMR_OF_SPECIAL_OWNER) {
		switch (p->fmr_owner) {
		case RLFS_FMR_OWN_FREE: return C_FREE;
		case RLFS_FMR_OWN_FS: return C_FS;
		case RLFS_FMR_OWN_LOG: return C_LOG;
		case RLFS_FMR_OWN_AG: return C_AG;
		case RLFS_FMR_OWN_INOBT: return C_INOBT;
		case RLFS_FMR_OWN_INODES: return C_INODES;
		case RLFS_FMR_OWN_REFC: return C_REFC;
		case RLFS_FMR_OWN_COW: return C_COW;
		}
		return C_OTHER;
	}
	/* reflinkfs's rmap (lib/rmap.h RLFS_RMAP_*_META): extent-map records
	 * of the data fork are bmbt and directory btree blocks, of the attr
	 * fork xattr btree blocks and value runs */
	if (p->fmr_flags & FMR_OF_ATTR_FORK)
		return C_XATTR;
	if (p->fmr_flags & FMR_OF_EXTENT_MAP)
		return C_BMBT;
	return (p->fmr_flags & FMR_OF_PREALLOC) ? C_UNWRITTEN : C_DATA;
}

/* v with room for n elements of size bytes (capacity *cap, doubled when
 * short); NULL when out of memory (v left as it was). */
static void *grow(void *v, size_t *cap, size_t n, size_t size)
{
	if (n <= *cap)
		return v;
	size_t ncap = *cap ? *cap * 2 : 1024;
	void *w = realloc(v, ncap * size);
	if (w)
		*cap = ncap;
	return w;
}

int fsmap_svg_add(struct fsmap_svg *s, const struct fsmap *r, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t b0 = r[i].fmr_physical / s->bs;
		uint64_t b1 = (r[i].fmr_physical + r[i].fmr_length + s->bs - 1) / s->bs;
		if (b1 <= b0)
			continue;
		struct ev *e = grow(s->ev, &s->cap, s->nev + 2, sizeof(*e));
		if (!e)
			return -ENOMEM;
		s->ev = e;
		int c = rec_cls(&r[i]);
		s->ev[s->nev++] = (struct ev){ b0, 1, c };
		s->ev[s->nev++] = (struct ev){ b1, -1, c };
	}
	return 0;
}

static int ev_cmp(const void *a, const void *b)
{
	const struct ev *x = a, *y = b;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The class of blocks covered by cnt[] records of each record class. */
static int classify(const long *cnt)
{
	for (int c = C_META_FIRST; c < NCLS; c++)
		if (cnt[c] > 0)
			return c;
	long owners = cnt[C_DATA] + cnt[C_UNWRITTEN];
	if (owners >= 5)
		return C_SHARED5;
	if (owners >= 3)
		return C_SHARED3;
	if (owners == 2)
		return C_SHARED2;
	if (owners == 1)
		return cnt[C_UNWRITTEN] ? C_UNWRITTEN : C_DATA;
	return cnt[C_FREE] > 0 ? C_FREE : C_OTHER;
}

/* The sweep: segments tiling [0, dblocks), neighbours of one class merged. */
static int sweep(struct fsmap_svg *s, struct seg **out, size_t *nout)
{
	long cnt[NCLS] = { 0 };
	size_t n = 0, cap = 0;
	struct seg *v = NULL;
	qsort(s->ev, s->nev, sizeof(*s->ev), ev_cmp);
	uint64_t cur = 0;
	size_t i = 0;
	for (;;) {
		uint64_t next = i < s->nev ? s->ev[i].pos : s->dblocks;
		if (next > s->dblocks)
			next = s->dblocks;
		if (next > cur) {
			int c = classify(cnt);
			if (n && v[n - 1].cls == c && v[n - 1].end == cur) {
				v[n - 1].end = next;
			} else {
				struct seg *w = grow(v, &cap, n + 1, sizeof(*w));
				if (!w) {
					free(v);
					return -ENOMEM;
				}
				v = w;
				v[n++] = (struct seg){ cur, next, c };
			}
			cur = next;
		}
		if (i >= s->nev)
			break;
		uint64_t pos = s->ev[i].pos;
		while (i < s->nev && s->ev[i].pos == pos) {
			cnt[s->ev[i].cls] += s->ev[i].delta;
			i++;
		}
	}
	*out = v;
	*nout = n;
	return 0;
}

static void xml_text(FILE *f, const char *t)
{
	for (; *t; t++) {
		switch (*t) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*t, f);
		}
	}
}

/* Layout constants, pixels. */
#define LEFT     170   /* band labels */
#define TOP      50
#define ROW_H    22
#define ROW_GAP  2
#define BAND_GAP 16
#define LEG_H    20

/* A run of columns with one dominant class in one row: one <rect>. */
struct run {
	bool open;
	int cls;
	unsigned x, y, w;
	uint64_t blocks[NCLS];
};

static void run_flush(FILE *f, struct run *r)
{
	if (!r->open)
		return;
	fprintf(f, "<rect class=\"%s\" x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\" fill=\"%s\" "
		"data-blocks=\"%" PRIu64 "\"", cls_info[r->cls].name, r->x, r->y, r->w, ROW_H,
		cls_info[r->cls].fill, r->blocks[r->cls]);
	bool first = true;
	for (int c = 0; c < NCLS; c++) {
		if (c == r->cls || !r->blocks[c])
			continue;
		fprintf(f, "%s%s:%" PRIu64, first ? " data-other=\"" : " ", cls_info[c].name,
			r->blocks[c]);
		first = false;
	}
	fprintf(f, "%s/>\n", first ? "" : "\"");
	r->open = false;
}

int fsmap_svg_write(struct fsmap_svg *s, FILE *f, unsigned width, const char *title)
{
	if (!width)
		width = 1600;
	struct seg *seg;
	size_t nseg;
	int err = sweep(s, &seg, &nseg);
	if (err)
		return err;
	uint64_t total[NCLS] = { 0 };
	for (size_t i = 0; i < nseg; i++)
		total[seg[i].cls] += seg[i].end - seg[i].start;

	/* scale: cw pixels a column, bpc blocks a column, rows per AG */
	uint64_t agb = s->agblocks ? s->agblocks : 1;
	unsigned cw = 1, maxrows = s->agcount ? 64 / s->agcount : 8;
	if (maxrows < 1)
		maxrows = 1;
	if (maxrows > 8)
		maxrows = 8;
	uint64_t bpc = 1;
	if (agb <= width) {
		cw = width / agb;
		if (cw > 16)
			cw = 16;
	} else {
		bpc = (agb + (uint64_t)width * maxrows - 1) / ((uint64_t)width * maxrows);
	}
	unsigned cols_row = width / cw;
	uint64_t cols_ag = (agb + bpc - 1) / bpc;
	unsigned rows_ag = (unsigned)((cols_ag + cols_row - 1) / cols_row);
	unsigned band_h = rows_ag * (ROW_H + ROW_GAP) - ROW_GAP;
	unsigned npresent = 0;
	for (int c = 0; c < NCLS; c++)
		npresent += total[c] != 0;
	unsigned legend_y = TOP + s->agcount * (band_h + BAND_GAP) + 10;
	/* at least room for the title and the legend's lines */
	unsigned W = LEFT + width + 20 > 900 ? LEFT + width + 20 : 900, H = legend_y + (npresent + 2) * LEG_H + 20;

	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:rlfs=\"urn:reflinkfs:fsmap-svg\" "
		"width=\"%u\" height=\"%u\" viewBox=\"0 0 %u %u\" "
		"font-family=\"sans-serif\" font-size=\"13\">\n", W, H, W, H);
	fputs("<title>reflinkfs space map: ", f);
	xml_text(f, title);
	fputs("</title>\n<desc>GETFSMAP records of ", f);
	xml_text(f, title);
	fprintf(f, " drawn one band per AG; block counts per class in metadata.</desc>\n");
	fprintf(f, "<metadata><rlfs:fsmap blocksize=\"%u\" agblocks=\"%u\" agcount=\"%u\" "
		"dblocks=\"%" PRIu64 "\" blocks-per-column=\"%" PRIu64 "\" "
		"pixels-per-column=\"%u\">\n", s->bs, s->agblocks, s->agcount, s->dblocks, bpc, cw);
	for (int c = 0; c < NCLS; c++)
		if (total[c])
			fprintf(f, "<rlfs:total class=\"%s\" blocks=\"%" PRIu64 "\"/>\n",
				cls_info[c].name, total[c]);
	fprintf(f, "</rlfs:fsmap></metadata>\n");
	fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%u\" height=\"%u\" fill=\"white\"/>\n", W, H);
	fputs("<text x=\"10\" y=\"25\" font-size=\"16\">reflinkfs space map: ", f);
	xml_text(f, title);
	fprintf(f, " (%" PRIu64 " blocks of %u bytes, %u AGs of %u blocks)</text>\n", s->dblocks,
		s->bs, s->agcount, s->agblocks);

	size_t si = 0;
	for (uint32_t ag = 0; ag < s->agcount; ag++) {
		uint64_t a0 = (uint64_t)ag * s->agblocks;
		if (a0 >= s->dblocks)
			break;
		uint64_t a1 = a0 + s->agblocks < s->dblocks ? a0 + s->agblocks : s->dblocks;
		unsigned by = TOP + ag * (band_h + BAND_GAP);
		fprintf(f, "<g class=\"ag\" data-ag=\"%u\" data-blocks=\"%" PRIu64 "\">\n", ag,
			a1 - a0);
		fprintf(f, "<text x=\"10\" y=\"%u\">AG %u</text>\n", by + 15, ag);
		fprintf(f, "<text x=\"10\" y=\"%u\" font-size=\"11\">%" PRIu64 " blocks</text>\n",
			by + 15 + 14, a1 - a0);
		struct run run = { .open = false };
		uint64_t col = 0;
		for (uint64_t c0 = a0; c0 < a1; c0 += bpc, col++) {
			uint64_t c1 = c0 + bpc < a1 ? c0 + bpc : a1;
			uint64_t in[NCLS] = { 0 };
			while (si < nseg && seg[si].end <= c0)
				si++;
			for (size_t j = si; j < nseg && seg[j].start < c1; j++) {
				uint64_t lo = seg[j].start > c0 ? seg[j].start : c0;
				uint64_t hi = seg[j].end < c1 ? seg[j].end : c1;
				in[seg[j].cls] += hi - lo;
			}
			int dom = 0;
			for (int c = 1; c < NCLS; c++)
				if (in[c] >= in[dom] && in[c])
					dom = c;
			unsigned row = (unsigned)(col / cols_row);
			unsigned x = LEFT + (unsigned)(col % cols_row) * cw;
			unsigned y = by + row * (ROW_H + ROW_GAP);
			if (run.open && (run.cls != dom || run.y != y))
				run_flush(f, &run);
			if (!run.open) {
				memset(&run, 0, sizeof(run));
				run.open = true;
				run.cls = dom;
				run.x = x;
				run.y = y;
			}
			run.w += cw;
			for (int c = 0; c < NCLS; c++)
				run.blocks[c] += in[c];
		}
		run_flush(f, &run);
		fprintf(f, "</g>\n");
	}

	fprintf(f, "<g class=\"legend\">\n");
	unsigned ly = legend_y;
	if (bpc > 1)
		fprintf(f, "<text x=\"10\" y=\"%u\">1 pixel column = %" PRIu64 " blocks, coloured "
			"by the class with the most blocks in it; totals below are exact</text>\n",
			ly + 14, bpc);
	else
		fprintf(f, "<text x=\"10\" y=\"%u\">1 block = %u pixel%s; shared data by the "
			"number of owners (its refcount)</text>\n", ly + 14, cw, cw > 1 ? "s" : "");
	ly += LEG_H;
	for (int c = 0; c < NCLS; c++) {
		if (!total[c])
			continue;
		fprintf(f, "<rect class=\"swatch\" data-class=\"%s\" x=\"10\" y=\"%u\" width=\"14\" "
			"height=\"14\" fill=\"%s\" stroke=\"#555\"/>\n", cls_info[c].name, ly + 3,
			cls_info[c].fill);
		fprintf(f, "<text x=\"32\" y=\"%u\">%s (%s): %" PRIu64 " blocks, %.1f%%</text>\n",
			ly + 15, cls_info[c].label, cls_info[c].name, total[c],
			s->dblocks ? 100.0 * (double)total[c] / (double)s->dblocks : 0.0);
		ly += LEG_H;
	}
	fprintf(f, "</g>\n</svg>\n");
	free(seg);
	return ferror(f) ? -EIO : 0;
}

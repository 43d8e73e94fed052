/*
 * fsmap_svg.h: `reflinkfs fsmap --svg FILE`, the space map drawn as an SVG
 * picture (issue 11 section 2, "beyond XFS"; tools/fsmap_svg.c).
 */
#ifndef RLFS_FSMAP_SVG_H
#define RLFS_FSMAP_SVG_H
#include <stdint.h>
#include <stdio.h>
#include <linux/fsmap.h>

struct fsmap_svg;

/* Geometry in filesystem blocks (the last AG may be shorter). */
struct fsmap_svg *fsmap_svg_new(uint32_t blocksize, uint32_t agblocks, uint32_t agcount,
				uint64_t dblocks);
/* Keep n GETFSMAP records (any order); -ENOMEM. */
int fsmap_svg_add(struct fsmap_svg *s, const struct fsmap *r, unsigned n);
/* Write the picture: rows of width pixels (0: the default, 1600); title
 * names the filesystem.  -ENOMEM or -EIO (a write failed). */
int fsmap_svg_write(struct fsmap_svg *s, FILE *f, unsigned width, const char *title);
void fsmap_svg_free(struct fsmap_svg *s);
#endif

#!/bin/bash
# bench/rmapcreate.sh BUILD: the cost of the reverse map for create and
# unlink (issue 11 §5), measured alone and with more repetitions than
# bench/bench.sh gives it.
#
# The full bench's create row put XFS's own rmap on/off ratio at 1.49
# (XFS created files 49% faster with its rmap on, which no rmap does:
# the rows of that table are three runs of a long bench on a shared
# machine).  Here the four filesystems take turns inside every run, so a
# slow spell of the machine hits all four alike:
#   xfs     mkfs.xfs -m reflink=1,rmapbt=1   (mount -o loop)
#   xfsnr   mkfs.xfs -m reflink=1,rmapbt=0
#   rlfs    reflinkfs mkfs (rmap on: the default)
#   rlfsnr  reflinkfs mkfs -m rmapbt=0
# each on a fresh sparse image of SIZE in BENCH_DIR, then
# `metaops create DIR NFILES` (open O_CREAT|O_EXCL + close, then syncfs)
# and `metaops unlink DIR NFILES` (+ syncfs).  The order of the four is
# rotated from run to run.  Prints every run and a markdown table of the
# medians, each filesystem's on/off ratio and their ratio (target >= 1:
# the rmap costs reflinkfs no more than it costs XFS).
#
# Environment: RUNS (default 7), NFILES (20000), SIZE (4G), BENCH_DIR
# (/var/tmp).  Needs root, xfsprogs; cc for bench/metaops.c.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -eu -o pipefail
BUILD=${1:?usage: bench/rmapcreate.sh BUILD}
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$SRCDIR/bench/lib.sh"
RLFS=$(realpath "$BUILD")/reflinkfs
[ -x "$RLFS" ] || { echo "no $RLFS: build first" >&2; exit 1; }
RUNS=${RUNS:-7}
NFILES=${NFILES:-20000}
SIZE=${SIZE:-4G}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
W=$(mktemp -d "$BENCH_DIR/rlfs-rmapcreate.XXXXXX")
M=$W/mnt
IMG=$W/img
cleanup() {
	umount_any "$M"
	loop_detach "$IMG" 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT
cc -O2 -o "$W/metaops" "$SRCDIR/bench/metaops.c"

# one_fs FS RUN: fresh image, create + unlink; appends "FS RUN create unlink"
one_fs() {
	local fs=$1 c u
	case $fs in
	xfs) xfs_mkfs_image "$IMG" "$SIZE" reflink=1,rmapbt=1 && xfs_mount_image "$IMG" "$M" ;;
	xfsnr) xfs_mkfs_image "$IMG" "$SIZE" reflink=1,rmapbt=0 && xfs_mount_image "$IMG" "$M" ;;
	rlfs) rlfs_mkfs_image "$RLFS" "$IMG" "$SIZE" && rlfs_mount_image "$RLFS" "$IMG" "$M" nouring ;;
	rlfsnr) rlfs_mkfs_image "$RLFS" "$IMG" "$SIZE" -m rmapbt=0 &&
		rlfs_mount_image "$RLFS" "$IMG" "$M" nouring ;;
	esac
	mkdir "$M/meta"
	sync
	c=$("$W/metaops" create "$M/meta" "$NFILES" | awk '{print $4}')
	u=$("$W/metaops" unlink "$M/meta" "$NFILES" | awk '{print $4}')
	case $fs in
	xfs*) umount "$M" ;;
	*) rlfs_umount_image "$IMG" "$M" ;;
	esac
	rm -f "$IMG"
	echo "$fs $2 $c $u" | tee -a "$W/runs"
}

order=(xfs xfsnr rlfs rlfsnr)
for ((r = 1; r <= RUNS; r++)); do
	for ((k = 0; k < 4; k++)); do
		one_fs "${order[(k + r) % 4]}" "$r"
	done
done

echo
echo "Machine: $(nproc) CPUs, kernel $(uname -r); reflinkfs commit $(git -C "$SRCDIR" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "$RUNS runs, $NFILES files, the four filesystems rotated within each run; medians, ops/s."
echo
python3 - "$W/runs" "$NFILES" <<'PYEOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    fs, _, c, u = line.split()
    runs.setdefault(fs, {"create": [], "unlink": []})
    runs[fs]["create"].append(float(c))
    runs[fs]["unlink"].append(float(u))
print("| workload | XFS rmap on | XFS rmap off | XFS on/off | reflinkfs rmap on | reflinkfs rmap off | reflinkfs on/off | ratio of ratios | target |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for w in ("create", "unlink"):
    m = {fs: statistics.median(runs[fs][w]) for fs in runs}
    x, r = m["xfs"] / m["xfsnr"], m["rlfs"] / m["rlfsnr"]
    print("| %s %s files (+syncfs) | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f | %.2f | 1.0 (%s) |"
          % (w, sys.argv[2], m["xfs"], m["xfsnr"], x, m["rlfs"], m["rlfsnr"], r, r / x,
             "met" if r / x >= 1.0 else "missed"))
print()
for w in ("create", "unlink"):
    print("- %s: " % w + "; ".join("%s %s" % (fs, " ".join("%.0f" % v for v in runs[fs][w]))
                                     for fs in ("xfs", "xfsnr", "rlfs", "rlfsnr")))
PYEOF

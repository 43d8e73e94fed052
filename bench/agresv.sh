#!/bin/bash
# How much the counted AG reservation (lib/ag_resv.h) gives back on a
# realistic image, the numbers in docs/DESIGN.md "The AG reserve":
#
#   bench/agresv.sh BUILD
#
# A 2 GiB image (4 KiB blocks, 4 AGs) holding a copy of /usr/include and
# its reflink copy (cp -a --reflink=always through the LD_PRELOAD shim),
# and a 256 MiB file whose clone takes 20,000 random 4 KiB rewrites
# (60-cow-frag's workload, tests/helpers/cow_frag.py); unmounted and
# checked with fsck -n, then for each AG the refcount and rmap btree blocks
# (agh.refc_blocks / rmap_blocks), the reserve they leave of the fixed ask
# (the formula of rlfs_ag_resv_ask_blocks, recomputed here) and the total
# the counting gives back to statfs.  Needs root and FUSE (tests/lib.sh
# mounts and cleans up).  Prints lines; checks nothing.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
BUILD=$(cd "${1:-build}" && pwd)
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
RLFS=$BUILD/reflinkfs
TEST_NAME=agresv
. "$SRCDIR/tests/lib.sh"
common_setup
SHIM=$BUILD/libreflinkfs-preload.so
OPS=$SRCDIR/tests/helpers/cow_frag.py
ED="$PY $SRCDIR/tests/helpers/imgedit.py"
IMG=$T/r.img MNT=$T/mnt
rlfs_mkfs "$IMG" -s 2G
rlfs_mount "$IMG" "$MNT"
cp -a /usr/include "$MNT/tree" || die cp
LD_PRELOAD=$SHIM cp -a --reflink=always "$MNT/tree" "$MNT/tree2" || die cp-reflink
LD_PRELOAD=$SHIM $PY "$OPS" fill "$MNT/orig" 256M 1 >/dev/null || die fill
LD_PRELOAD=$SHIM cp --reflink=always "$MNT/orig" "$MNT/copy" || die clone
$PY "$OPS" rewrite "$MNT/copy" 20000 13 1 >/dev/null || die rewrite
du -sh "$MNT/tree" | sed 's/^/tree: /'
rlfs_umount "$MNT"
rlfs_fsck "$IMG"
# geometry from the primary superblock (SPEC section 4)
read -r bs agblocks agcount < <($PY - "$IMG" <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read(512)
print(*struct.unpack_from('<I', b, 52), *struct.unpack_from('<II', b, 64))
PY
)
ask=$($PY - $bs $agblocks <<'PY'
import sys
bs,agb=int(sys.argv[1]),int(sys.argv[2])
space=bs-72
# refcount (lib/refcount.c rlfs_refcount_maxlevels)
minl=max(space//12//2,1); minn=max(space//12//2,2); n=(agb+minl-1)//minl; lev=1
while n>1: n=(n+minn-1)//minn; lev+=1
refc=agb//max((bs-64)//12,2)+4*lev+8
# rmap (lib/rmap.c rlfs_rmap_maxlevels)
minn=max(space//(2*24+8)//2,2); nb=minn; left=agb-1; h=1
while nb<left and h<8: left-=nb; nb*=minn; h+=1
rmap=agb//max((bs-64)//24,2)+4*h+8
print(refc+rmap)
PY
)
tot=0
for ((ag = 0; ag < agcount; ag++)); do
	rc=$($ED agh-get "$IMG" $ag refc_blocks); rm=$($ED agh-get "$IMG" $ag rmap_blocks)
	used=$((rc + rm)); left=$((ask > used ? ask - used : 0))
	echo "AG $ag: refcount btree $rc blocks, rmap btree $rm blocks; reserve $left of ask $ask (shrank by $((ask - left)))"
	tot=$((tot + ask - left))
done
echo "total: reserve $((agcount * ask - tot)) blocks instead of $((agcount * ask)) (fixed); $tot blocks ($((tot * bs / 1024)) KiB) more free in statfs"

#!/bin/bash
# FIEMAP rules and FIEMAP_FLAG_XATTR, differential against kernel XFS.
#  1. The range and flag checks of FS_IOC_FIEMAP (fs/ioctl.c fiemap_prep:
#     length 0 EINVAL, start >= 2^63-1 EFBIG, unknown flags EBADR) give the
#     same errno on XFS, through the shim, and with the private
#     RLFS_IOC_GET_EXTENTS called directly (which used to answer 0 extents
#     for length 0 and for a start past the largest file).
#  2. FIEMAP_FLAG_XATTR (xfs_io fiemap -a, filefrag -x) through the shim:
#     in-inode xattrs map to no extent, as XFS's local attribute format;
#     xattrs in blocks map to extents covering exactly the file's blocks
#     (the file has no data), LAST on the last one; no xattrs left: none.
. "$(dirname "$0")/../lib.sh"
common_setup
OPS=$SRCDIR/tests/helpers/feat_ops.py
SHIM=$(dirname "$RLFS")/libreflinkfs-preload.so
[ -f "$SHIM" ] || SHIM=$SRCDIR/build/libreflinkfs-preload.so
[ -f "$SHIM" ] || die "preload shim not built"
command -v xfs_io >/dev/null || die "xfs_io missing (apt-get install xfsprogs)"
command -v filefrag >/dev/null || die "filefrag missing (apt-get install e2fsprogs)"

img=$T/fiemap.img
mnt=$T/mnt
rlfs_mkfs "$img" -s 512M
rlfs_mount "$img" "$mnt"
kmount_xfs "$T/xfs.img" "$T/xfs" 512M

log "range and flag checks: XFS FS_IOC_FIEMAP vs the shim vs RLFS_IOC_GET_EXTENTS"
for d in "$T/xfs" "$mnt"; do
	head -c 65536 /dev/urandom >"$d/data"
	sync -f "$d/data"
done
$PY "$OPS" fiemap-errors "$T/xfs/data" fiemap >"$T/xfs.err" || die "fiemap-errors on XFS"
LD_PRELOAD=$SHIM $PY "$OPS" fiemap-errors "$mnt/data" fiemap >"$T/shim.err" ||
	die "fiemap-errors through the shim"
$PY "$OPS" fiemap-errors "$mnt/data" private >"$T/priv.err" || die "fiemap-errors private"
grep -q 'length=0x0 flags=0x0 -> EINVAL' "$T/xfs.err" || die "XFS oracle: no EINVAL for length 0"
grep -q 'start=0x8000000000000000 length=0x1000 flags=0x0 -> EFBIG' "$T/xfs.err" ||
	die "XFS oracle: no EFBIG for start 2^63"
grep -v '^reserved' "$T/priv.err" | diff -u "$T/xfs.err" - >&2 ||
	die "RLFS_IOC_GET_EXTENTS checks differ from XFS's FIEMAP"
diff -u "$T/xfs.err" "$T/shim.err" >&2 || die "the shim's FIEMAP checks differ from XFS"
grep -q '^reserved -> EINVAL' "$T/priv.err" || die "non-zero reserved field not EINVAL"
log "$(wc -l <"$T/xfs.err") cases give the same errno"

log "FIEMAP_FLAG_XATTR: in-inode xattrs have no extents (XFS local format)"
for d in "$T/xfs" "$mnt"; do
	touch "$d/small"
	setfattr -n user.a -v 1 "$d/small"
	setfattr -n user.b -v 22 "$d/small"
done
xfs_io -c "fiemap -a" "$T/xfs/small" | sed "s|$T/xfs/||" >"$T/xfs.small"
LD_PRELOAD=$SHIM xfs_io -c "fiemap -a" "$mnt/small" | sed "s|$mnt/||" >"$T/rlfs.small" ||
	die "xfs_io fiemap -a failed through the shim"
diff -u "$T/xfs.small" "$T/rlfs.small" >&2 || die "fiemap -a of inline xattrs differs from XFS"
[ "$($PY "$OPS" fiemap "$T/xfs/small" xattr | wc -l)" = 0 ] || die "XFS oracle: inline xattrs mapped"
[ -z "$(LD_PRELOAD=$SHIM $PY "$OPS" fiemap "$mnt/small" xattr)" ] ||
	die "inline xattrs reported extents"

log "FIEMAP_FLAG_XATTR: xattrs in blocks"
big=$(head -c 3000 /dev/zero | tr '\0' v)
for d in "$T/xfs" "$mnt"; do
	touch "$d/many"
	for i in $(seq 1 40); do
		setfattr -n "user.attr$i" -v "$big$i" "$d/many"
	done
	setfattr -n user.huge -v "$(head -c 30000 /dev/zero | tr '\0' h)" "$d/many"
done
$PY "$OPS" fiemap "$T/xfs/many" xattr >"$T/xfs.many"
LD_PRELOAD=$SHIM $PY "$OPS" fiemap "$mnt/many" xattr >"$T/rlfs.many" ||
	die "FIEMAP_FLAG_XATTR failed through the shim"
[ -s "$T/xfs.many" ] || die "XFS oracle: no attribute extents"
[ -s "$T/rlfs.many" ] || die "no xattr extents on reflinkfs"
# flags: LAST (0x1) on the last extent only, nothing else (as XFS)
for f in "$T/xfs.many" "$T/rlfs.many"; do
	[ "$(tail -n 1 "$f" | awk '{print $4}')" = 0x1 ] || die "$f: last extent not LAST"
	[ "$(head -n -1 "$f" | awk '$4 != "0x0"' | wc -l)" = 0 ] ||
		die "$f: flags other than LAST: $(head -n -1 "$f" | awk '$4 != "0x0"')"
done
# the extents cover exactly the file's blocks (no data), logical offsets
# follow each other, no overlap on the device
blocks=$(stat -c '%b' "$mnt/many")
awk -v want=$((blocks * 512)) '
	{ if ($1 != pos) { print "logical gap at " $1; bad = 1 }
	  pos = $1 + $3; sum += $3 }
	END { if (sum != want) { print "extents " sum " bytes, file has " want; bad = 1 }
	      exit bad }' "$T/rlfs.many" >&2 || die "xattr extents do not cover the xattr blocks"
sort -n -k2 "$T/rlfs.many" | awk '{ if (NR > 1 && $2 < end) { print "overlap"; exit 1 }
	end = $2 + $3 }' >&2 || die "xattr extents overlap"
log "$(wc -l <"$T/rlfs.many") extents, $((blocks / 2)) KiB (XFS: $(wc -l <"$T/xfs.many") extents)"
LD_PRELOAD=$SHIM xfs_io -c "fiemap -a -v" "$mnt/many" >"$T/xfsio.out" ||
	die "xfs_io fiemap -a -v failed through the shim"
[ "$(grep -c '^ *[0-9]*: \[' "$T/xfsio.out")" = "$(wc -l <"$T/rlfs.many")" ] ||
	{ cat "$T/xfsio.out" >&2; die "xfs_io fiemap -a shows another extent count"; }
LD_PRELOAD=$SHIM filefrag -x "$mnt/many" >"$T/filefrag.out" 2>&1 ||
	{ cat "$T/filefrag.out" >&2; die "filefrag -x failed through the shim"; }
grep -q "$(wc -l <"$T/rlfs.many") extents\? found" "$T/filefrag.out" ||
	{ cat "$T/filefrag.out" >&2; die "filefrag -x shows another extent count"; }
# continuing from the middle (start = end of the first extent) gives the rest
first_end=$(head -n 1 "$T/rlfs.many" | awk '{print $1 + $3}')
$PY - "$mnt/many" "$first_end" "$(($(wc -l <"$T/rlfs.many") - 1))" <<'EOF' || die "continuation"
import os, struct, fcntl, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = 32 + 128 * 32
req = (3 << 30) | (size << 16) | (0xB7 << 8) | 3
buf = bytearray(size)
struct.pack_into("=QQIIII", buf, 0, int(sys.argv[2]), (1 << 64) - 1, 2, 0, 0, 0)
fcntl.ioctl(fd, req, buf)
n = struct.unpack_from("=QQIIII", buf, 0)[3]
assert n == int(sys.argv[3]), (n, sys.argv[3])
EOF

log "all xattrs removed: no extents, blocks back"
for i in $(seq 1 40); do setfattr -x "user.attr$i" "$mnt/many"; done
setfattr -x user.huge "$mnt/many"
[ -z "$(LD_PRELOAD=$SHIM $PY "$OPS" fiemap "$mnt/many" xattr)" ] || die "extents after removal"
[ "$(stat -c '%b' "$mnt/many")" = 0 ] || die "blocks left after removing every xattr"

rlfs_umount "$mnt"
rlfs_fsck "$img"
kumount "$T/xfs"
log "PASS"

#!/bin/bash
# Other geometries: block sizes 1024, 2048, 16384 and 65536, several AGs:
# copy a real tree (diff -r), fsx with remount, a fragmented file, xattrs,
# SEEK_DATA/HOLE at block-size granularity, fsck clean after each step.
. "$(dirname "$0")/../lib.sh"
common_setup
src=/usr/include/linux
[ -d "$src" ] || src=/usr/share/doc/bash

for bs in 1024 2048 16384 65536; do
	img=$T/bs$bs.img
	mnt=$T/mnt$bs
	rlfs_mkfs "$img" -s 400M -b $bs -a 3
	rlfs_fsck "$img"
	rlfs_mount "$img" "$mnt"
	[ "$(stat -f -c %S "$mnt")" -gt 0 ] || die "statfs block size 0"
	cp -a "$src" "$mnt/tree"
	run_to 600 "$FSX" -q -N 3000 -S $bs -l 8M -m "$T/model$bs" "$mnt/fsx" || die "fsx on bs=$bs failed"
	$PY - "$mnt" $bs <<'PYEOF' || die "bs=$bs checks failed"
import os, sys
d, fsbs = sys.argv[1], int(sys.argv[2])
# The FUSE writeback cache writes whole pages, so holes smaller than a page
# fill with zeros below 4 KiB blocks: use units of max(block, page).
bs = max(fsbs, os.sysconf("SC_PAGE_SIZE"))
p = os.path.join(d, "frag")
fd = os.open(p, os.O_RDWR | os.O_CREAT)
# every other unit written: one extent per written unit (a bmbt)
for i in range(0, 1200, 2):
    os.pwrite(fd, bytes([i % 251 + 1]) * bs, i * bs)
os.fsync(fd)
# SEEK_DATA/HOLE agree with the pattern at block granularity
for i in (0, 1, 2, 3, 501, 1198):
    off = i * bs + bs // 3
    want_data = i * bs + bs // 3 if i % 2 == 0 else (i + 1) * bs
    got = os.lseek(fd, off, os.SEEK_DATA)
    if got != want_data:
        print("bs %d: SEEK_DATA(%d) = %d, want %d" % (bs, off, got, want_data)); sys.exit(1)
    want_hole = (i + 1) * bs if i % 2 == 0 else off
    got = os.lseek(fd, off, os.SEEK_HOLE)
    if got != want_hole:
        print("bs %d: SEEK_HOLE(%d) = %d, want %d" % (bs, off, got, want_hole)); sys.exit(1)
os.close(fd)
for n in range(150):
    os.setxattr(p, "user.x%03d" % n, os.urandom(n * 7 % 3000))
os.setxattr(p, "user.big", b"B" * 65536)
if len(os.listxattr(p)) != 151 or os.getxattr(p, "user.big") != b"B" * 65536:
    print("xattrs wrong"); sys.exit(1)
print("bs %d: fragmented file, seeks and xattrs ok" % fsbs)
PYEOF
	diff -r "$src" "$mnt/tree" >/dev/null || die "bs=$bs: copied tree differs"
	md5sum "$mnt/frag" >"$T/frag.md5"
	rlfs_umount "$mnt"
	rlfs_fsck "$img"
	rlfs_mount "$img" "$mnt"
	diff -r "$src" "$mnt/tree" >/dev/null || die "bs=$bs: tree differs after remount"
	(cd / && md5sum -c --quiet "$T/frag.md5") || die "bs=$bs: fragmented file differs after remount"
	run_to 600 "$FSX" -q -N 2000 -S $((bs + 1)) -l 8M -m "$T/model$bs" -c "$mnt/fsx" || die "fsx continue on bs=$bs failed"
	rm -rf "${mnt:?}"/*
	rlfs_umount "$mnt"
	rlfs_fsck "$img"
	rm -f "$img"
	log "block size $bs ok"
done
log OK

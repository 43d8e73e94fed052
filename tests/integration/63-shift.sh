#!/bin/bash
# 63-shift: fallocate FALLOC_FL_COLLAPSE_RANGE and FALLOC_FL_INSERT_RANGE
# (issue 14 part 2), differential against kernel XFS.  The same xfs_io
# sequences (fcollapse, finsert, falloc -c / -i with other flags) run on a
# kernel XFS loop mount and on reflinkfs through the LD_PRELOAD shim (the
# kernel's FUSE fallocate refuses both modes, the shim turns them into
# RLFS_IOC_SHIFT_RANGE): identical messages and errors (EINVAL for
# unaligned ranges, a collapse reaching EOF, an insert at EOF, a
# combination with another flag; EFBIG; EPERM on immutable and append-only
# files), identical sizes and contents, on files with many extents, holes,
# preallocated (unwritten) ranges and shared (reflinked) blocks; then
# `reflinkfs io` (its own fcollapse/finsert commands) on reflinkfs, and
# the same contents after unmount + fsck + remount.
. "$(dirname "$0")/../lib.sh"
common_setup
command -v xfs_io >/dev/null || die "xfs_io missing (apt-get install xfsprogs)"
SHIM=${SHIM:-$(dirname "$RLFS")/libreflinkfs-preload.so}
[ -f "$SHIM" ] || die "shim not found: $SHIM"

kmount_xfs "$T/xfs.img" "$T/xfs" 512M
rlfs_mkfs "$T/rlfs.img" -s 512M
rlfs_mount "$T/rlfs.img" "$T/rlfs"

seq_run() {
	local d=$1 pre=""
	[ "$d" = "$T/rlfs" ] && pre="env LD_PRELOAD=$SHIM"
	xio() { { $pre xfs_io "$@" 2>&1 || echo "(exit $?)"; } | sed -e "s|$d|DIR|g" -e '/ ops; /d'; }
	# many extents: every other 4k block of 2 MiB written, then a tail
	local cmds=() i
	for ((i = 0; i < 256; i++)); do
		cmds+=(-c "pwrite -S $((i % 200 + 1)) $((i * 8))k 4k")
	done
	xio -f "${cmds[@]}" -c "pwrite -S 0x77 2050k 1000" -c fsync "$d/frag"
	xio -c "fcollapse 12k 20k" -c "finsert 4k 64k" -c "fcollapse 0 4k" "$d/frag"
	xio -c "finsert 1m 1m" -c "fcollapse 100k 300k" -c fsync "$d/frag"
	# errors: unaligned, reaching EOF, at EOF, combined flags, len 0
	xio -c "fcollapse 1000 4k" "$d/frag"
	xio -c "fcollapse 4k 5000" "$d/frag"
	xio -c "finsert 2k 4k" "$d/frag"
	local sz
	sz=$(stat -c %s "$d/frag")
	xio -c "fcollapse 4k $((sz - 4096))" "$d/frag"
	xio -c "fcollapse $(((sz + 4095) / 4096 * 4096)) 4k" "$d/frag"
	xio -c "finsert $(((sz + 4095) / 4096 * 4096)) 4k" "$d/frag"
	xio -c "finsert $sz 4k" "$d/frag"
	xio -c "falloc -c -k 0 4k" "$d/frag"
	xio -c "falloc -i -k 0 4k" "$d/frag"
	xio -c "falloc -c -p 0 4k" "$d/frag"
	# modes combined (EOPNOTSUPP from Linux 6.15 on, EINVAL before) and
	# bad offsets, through fallocate(2) itself (the shim on reflinkfs)
	$pre $PY -c '
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
fd = os.open(sys.argv[1], os.O_RDWR)
C, I, K, P, Z = 0x08, 0x20, 0x01, 0x02, 0x10
for name, mode, off, ln in [("C|K", C | K, 0, 4096), ("I|K", I | K, 0, 4096),
                            ("C|I", C | I, 0, 4096), ("C|P|K", C | P | K, 0, 4096),
                            ("I|Z", I | Z, 0, 4096), ("C off -4k", C, -4096, 4096),
                            ("I len 0", I, 0, 0), ("C len -4k", C, 0, -4096),
                            ("I wrap", I, 4096, (1 << 63) - 4096)]:
    r = libc.fallocate(fd, mode, off, ln)
    print(name, r, errno.errorcode.get(ctypes.get_errno(), "?") if r else "")
' "$d/frag"
	xio -c "fcollapse 0 0" "$d/frag"
	xio -c "finsert 0 $((0x7ffffffffffff000))" "$d/frag"
	# cached pages: read in the same open before and after the shift
	# (the daemon must drop the kernel's pages of the file)
	xio -f -c "pwrite -S 0x71 0 4k" -c "pwrite -S 0x72 4k 4k" -c "pwrite -S 0x73 8k 4k" \
		-c "pwrite -S 0x74 12k 4k" -c "pread 0 16k" -c "fcollapse 4k 4k" \
		-c "pread -v 0 16" -c "pread -v 4k 16" -c "pread -v 8k 16" -c "finsert 0 4k" \
		-c "pread -v 0 16" -c "pread -v 4k 16" -c "pread -v 12k 16" "$d/cache"
	# holes, unwritten extents, a partial last block
	xio -f -c "pwrite -S 0x41 0 64k" -c "falloc 64k 192k" -c "pwrite -S 0x42 300k 50k" \
		-c "falloc -k 400k 100k" -c "truncate 360000" "$d/u"
	xio -c "finsert 128k 8k" -c "fcollapse 32k 64k" -c "finsert 0 4k" "$d/u"
	xio -c "fcollapse 200k 4k" -c "pwrite -S 0x43 40k 4k" "$d/u"
	# shared blocks: a clone, each side shifted differently
	xio -f -c "pwrite -S 0x51 0 512k" -c "pwrite -S 0x52 512k 512k" -c fsync "$d/s1"
	xio -f -c "reflink $d/s1" "$d/s2"
	xio -c "fcollapse 512k 512k" "$d/s1"      # ends exactly at EOF: EINVAL
	xio -c "finsert 1m 4k" "$d/s1"            # exactly at EOF: EINVAL
	xio -c "fcollapse 64k 128k" "$d/s1"
	xio -c "finsert 256k 64k" -c "pwrite -S 0x53 260k 4k" "$d/s2"
	xio -c "fcollapse 0 4k" -c "finsert 8k 4k" "$d/s2"
	# immutable and append-only: EPERM (the flag set through the open fd:
	# an immutable or append-only file cannot be opened for writing)
	xio -f -c "pwrite 0 64k" -c "chattr +i" -c "fcollapse 0 4k" -c "finsert 0 4k" \
		-c "chattr -i" "$d/imm"
	xio -f -c "pwrite 0 64k" -c "chattr +a" -c "fcollapse 0 4k" -c "finsert 0 4k" \
		-c "chattr -a" "$d/app"
	mkdir -p "$d/dir"
	xio -c "fcollapse 0 4k" "$d/dir"
	xio -r -c "fcollapse 0 4k" "$d/u"
	for f in frag u s1 s2 imm app cache; do
		echo "$f $(stat -c %s "$d/$f") $(md5sum <"$d/$f" | cut -c1-16)"
	done
}

seq_run "$T/xfs" >"$T/xfs.out"
seq_run "$T/rlfs" >"$T/rlfs.out"
cat "$T/rlfs.out"
diff -u "$T/xfs.out" "$T/rlfs.out" >&2 || die "results differ: kernel XFS (-), reflinkfs + shim (+)"
grep -q 'Invalid argument' "$T/rlfs.out" || die "sanity: no EINVAL case seen"
grep -q 'Operation not permitted' "$T/rlfs.out" || die "sanity: no EPERM case seen"
n=$(grep -c 'Operation not supported' "$T/rlfs.out" || true)
[ "$n" = 0 ] || die "EOPNOTSUPP seen: the shift did not reach the daemon"

# reflinkfs io's own commands, against the same sequence on XFS via xfs_io
for d in "$T/xfs" "$T/rlfs"; do
	xfs_io -f -c "pwrite -S 0x61 0 256k" -c "pwrite -S 0x62 256k 256k" "$d/io" >/dev/null
done
xfs_io -c "fcollapse 64k 64k" -c "finsert 8k 16k" "$T/xfs/io"
"$RLFS" io -c "fcollapse 64k 64k" -c "finsert 8k 16k" "$T/rlfs/io" || die "reflinkfs io failed"
expect_rc 1 "$RLFS" io -c "fcollapse 0 1000" "$T/rlfs/io"
cmp "$T/xfs/io" "$T/rlfs/io" || die "reflinkfs io fcollapse/finsert: contents differ from XFS"
[ "$(stat -c %s "$T/xfs/io")" = "$(stat -c %s "$T/rlfs/io")" ] || die "io: sizes differ"

grep -E '^(frag|u|s1|s2|imm|app|cache) ' "$T/rlfs.out" >"$T/sums"
rlfs_umount "$T/rlfs"
rlfs_fsck "$T/rlfs.img"
rlfs_mount "$T/rlfs.img" "$T/rlfs"
for f in frag u s1 s2 imm app cache; do
	echo "$f $(stat -c %s "$T/rlfs/$f") $(md5sum <"$T/rlfs/$f" | cut -c1-16)"
done >"$T/sums2"
diff -u "$T/sums" "$T/sums2" >&2 || die "contents changed across unmount/remount"
rm -rf "$T/rlfs"/*
rlfs_umount "$T/rlfs"
log "collapse/insert match kernel XFS"

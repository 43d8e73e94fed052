#!/bin/bash
# 25-xfsio-diff: the same xfs_io command sequences (pwrite, reflink,
# funshare, fpunch, fzero, falloc, truncate, including invalid reflinks) on
# a kernel XFS loop mount and on reflinkfs through the LD_PRELOAD shim:
# identical messages/errors, identical file contents and sizes, and on
# reflinkfs the same result after unmount + fsck + remount.
. "$(dirname "$0")/../lib.sh"
common_setup
command -v xfs_io >/dev/null || die "xfs_io missing (apt-get install xfsprogs)"
SHIM=${SHIM:-$(dirname "$RLFS")/libreflinkfs-preload.so}
[ -f "$SHIM" ] || die "shim not found: $SHIM"

kmount_xfs "$T/xfs.img" "$T/xfs" 512M
rlfs_mkfs "$T/rlfs.img" -s 512M
rlfs_mount "$T/rlfs.img" "$T/rlfs"

# seq DIR: prints what xfs_io says, with the directory name replaced
seq_run() {
	local d=$1 pre=""
	[ "$d" = "$T/rlfs" ] && pre="env LD_PRELOAD=$SHIM"
	xio() { $pre xfs_io "$@" 2>&1 | sed -e "s|$d|DIR|g" -e '/ ops; /d'; }  # drop timing lines
	xio -f -c "pwrite -S 0x61 0 1m" -c "pwrite -S 0x62 1m 1m" -c fsync "$d/a"
	xio -f -c "reflink $d/a" "$d/b"                                  # whole file
	xio -f -c "reflink $d/a 64k 128k 256k" -c "pwrite -S 0x63 200k 8k" "$d/c"
	xio -c "reflink $d/a 1m 0 1m" -c "pwrite -S 0x64 4k 4k" "$d/b"  # over itself
	xio -c "reflink $d/b 0 1m 512k" -c "funshare 1m 64k" "$d/b"     # clone onto self
	xio -c "reflink $d/b 0 256k 512k" "$d/b"                        # overlap: EINVAL
	xio -c "reflink $d/a 1000 0 4096" "$d/c"                        # unaligned: EINVAL
	xio -c "reflink $d/a 3m 0 4096" "$d/c"                          # past EOF: EINVAL
	xio -f -c "pwrite -S 0x65 0 10000" "$d/odd"
	xio -c "reflink $d/odd 0 0 0" "$d/c"                            # EOF block mid-dest: EINVAL
	xio -f -c "reflink $d/odd 0 0 0" -c "truncate 20000" "$d/odd2"  # EOF block at dest EOF
	xio -c "fpunch 64k 64k" -c "fzero 300k 10k" -c "falloc 3m 64k" -c "truncate 1500k" "$d/b"
	xio -c "funshare 0 2m" -c "pwrite -S 0x66 0 4k" "$d/c"
	xio -c "reflink $d/c 0 2m 0" -c "truncate 2100k" "$d/a"          # len 0: to EOF
	for f in a b c odd odd2; do
		echo "$f $(stat -c %s "$d/$f") $(md5sum <"$d/$f" | cut -c1-16)"
	done
	# preallocation past EOF and truncate (generic/092): a truncate that
	# does not grow the file frees it, whether or not the data before it
	# was written back yet; a truncate that grows the file keeps it
	xio -f -c "pwrite 0 5m" -c "falloc -k 5m 5m" -c "truncate 5m" -c fsync "$d/p1"
	xio -f -c "pwrite 0 5m" -c "falloc -k 5m 5m" -c "truncate 4m" -c fsync "$d/p2"
	xio -f -c "pwrite 0 1m" -c "falloc -k 1m 4m" -c fsync -c "truncate 2m" -c fsync "$d/p3"
	xio -f -c "pwrite 0 1m" -c "falloc -k 1m 4m" -c "truncate 2m" -c fsync "$d/p4"
	xio -f -c "pwrite 0 1m" -c fsync -c "falloc -k 1m 4m" -c "truncate 1m" "$d/p5"
	for f in p1 p2 p3 p4 p5; do
		echo "$f size $(stat -c %s "$d/$f") past-EOF $(past_eof "$d/$f" "$pre")"
	done
}

# past_eof FILE PRE: the 512-byte sectors that fiemap maps at or past EOF
past_eof() {
	$2 xfs_io -c "fiemap" "$1" | $PY -c '
import re, sys
size = int(sys.argv[1])
eof = (size + 511) // 512
n = 0
for line in sys.stdin:
    m = re.match(r"\s*\d+: \[(\d+)\.\.(\d+)\]: (\S+)", line)
    if m and m.group(3) != "hole":
        lo, hi = int(m.group(1)), int(m.group(2))
        n += max(0, hi + 1 - max(lo, eof))
print(n)' "$(stat -c %s "$1")"
}
seq_run "$T/xfs" >"$T/xfs.out"
seq_run "$T/rlfs" >"$T/rlfs.out"
cat "$T/rlfs.out"
diff -u "$T/xfs.out" "$T/rlfs.out" >&2 || die "xfs_io results differ: kernel XFS (-), reflinkfs + shim (+)"
grep -q 'Invalid argument' "$T/rlfs.out" || die "sanity: no EINVAL case seen"
grep -E '^(a|b|c|odd|odd2) ' "$T/rlfs.out" >"$T/sums"
rlfs_umount "$T/rlfs"
rlfs_fsck "$T/rlfs.img"
rlfs_mount "$T/rlfs.img" "$T/rlfs"
for f in a b c odd odd2; do
	echo "$f $(stat -c %s "$T/rlfs/$f") $(md5sum <"$T/rlfs/$f" | cut -c1-16)"
done >"$T/sums2"
diff -u "$T/sums" "$T/sums2" >&2 || die "contents changed across unmount/remount"
rm -f "$T/rlfs"/*
rlfs_umount "$T/rlfs"
rlfs_fsck "$T/rlfs.img"
kumount "$T/xfs"
log OK

#!/bin/bash
# 50-fsmap: GETFSMAP from user space (issue 11 section 2).
#
# 1. `reflinkfs fsmap` on a populated mount (files, a clone through the
#    shim, fallocate, xattrs) asks the daemon (RLFS_IOC_GETFSMAP); with
#    -n 3 (a resume after every third record) on a file of the mount it
#    prints the same lines.
# 2. The records tile the device: sorted, and their union is exactly the
#    filesystem's size from statfs; shared and unwritten extents show
#    their flags; free space from fsmap is statfs's f_bfree within 256
#    blocks per AG (statfs adds the AGFL blocks, which fsmap lists as
#    per-AG metadata, and takes away the per-AG set-aside; the exact
#    relation is checked in test_fsmap).
# 3. Unmodified `xfs_io -c fsmap` through the LD_PRELOAD shim prints exactly
#    what `reflinkfs fsmap` prints (same records, devices, totals); -n 2
#    too (the shim loops batches, xfs_io loops calls); -v (the shim
#    answers XFS_IOC_FSGEOMETRY) has the same rows.
# 4. Unmounted: `reflinkfs fsmap -m IMAGE` lists the same records as the
#    mount did (device column aside); -d START END a sub-range; -l and -r
#    nothing; fsck clean.
. "$(dirname "$0")/../lib.sh"
common_setup
command -v xfs_io >/dev/null || die "xfs_io missing (apt-get install xfsprogs)"
SHIM=${SHIM:-$(dirname "$RLFS")/libreflinkfs-preload.so}
[ -f "$SHIM" ] || die "shim not found: $SHIM"

IMG=$T/rlfs.img
MNT=$T/rlfs
rlfs_mkfs "$IMG" -s 256M -a 4
rlfs_mount "$IMG" "$MNT" -o allow_other   # allow_other: the EPERM check as nobody

head -c 3M /dev/urandom >"$MNT/a"
LD_PRELOAD=$SHIM cp --reflink=always "$MNT/a" "$MNT/b" || die "reflink copy failed"
dd if=/dev/zero of="$MNT/b" bs=4k seek=100 count=3 conv=notrunc status=none
fallocate -l 1M "$MNT/u" || die "fallocate failed"
touch "$MNT/x"
for i in 1 2 3 4; do
	setfattr -n "user.v$i" -v "$(head -c 2000 /dev/zero | tr '\0' v)" "$MNT/x" ||
		die "setfattr failed"
done
# more than RLFS_IOC_FSMAP_BATCH (250) records: the shim loops batches
for i in $(seq 1 300); do head -c 8k /dev/urandom >"$MNT/s$i"; done
sync

# ---- 1: through the daemon, big and small batches
"$RLFS" fsmap "$MNT" >"$T/m.txt" || die "reflinkfs fsmap MOUNT failed"
"$RLFS" fsmap -n 3 "$MNT/a" >"$T/m3.txt" || die "reflinkfs fsmap -n 3 MOUNT/FILE failed"
cmp -s "$T/m.txt" "$T/m3.txt" || { diff "$T/m.txt" "$T/m3.txt" | head >&2; die "-n 3 differs"; }
n=$(wc -l <"$T/m.txt")
[ "$n" -gt 300 ] || die "only $n records (want more than one batch)"
"$RLFS" fsmap -v "$MNT" >"$T/v.txt" 2>"$T/v.err" || die "reflinkfs fsmap -v failed"
grep -q '^ *EXT: DEV *BLOCK-RANGE *OWNER *FILE-OFFSET *AG AG-OFFSET *TOTAL FLAGS' "$T/v.txt" ||
	die "no xfs_io-style header: $(head -1 "$T/v.txt")"
grep -q 'journalling log' "$T/v.txt" || die "no log record"
grep -q ' 0100000$' "$T/v.txt" || die "no shared extent (flag 0100000) after the reflink copy"
grep -q ' 0010000$' "$T/v.txt" || die "no unwritten extent (flag 0010000) after fallocate"
grep -q 'FLAG Values' "$T/v.txt" || die "no flags legend"
log "$n records through the daemon; $(cat "$T/v.err")"

# ---- 2: totals against statfs (512-byte units in the CSV)
"$RLFS" fsmap -m "$MNT" >"$T/m.csv" || die "fsmap -m failed"
read -r bsize blocks bfree bavail < <(stat -f -c '%S %b %f %a' "$MNT")
python3 - "$T/m.csv" "$bsize" "$blocks" "$bfree" "$bavail" <<'EOF' || die "totals do not match statfs"
import sys
path, bs, blocks, bfree, bavail = sys.argv[1], *map(int, sys.argv[2:])
rows = [l.rstrip("\n").split(",") for l in open(path)][1:]
end = 0; free = 0; prev = -1
for r in rows:
    s, e, owner, length = int(r[3]), int(r[4]), r[5], int(r[8])
    assert s >= prev, ("unsorted", r); prev = s
    assert e - s + 1 == length, ("length", r)
    assert s <= end, ("gap before", r)     # no hole in the coverage
    end = max(end, e + 1)
    if owner == "special_0:1":
        free += length
dev = blocks * bs // 512
assert end == dev, ("coverage ends at %d, device has %d" % (end, dev))
fb = free * 512 // bs
assert abs(fb - bfree) <= 4 * 256, ("free", fb, bfree)
print("coverage %d sectors = device; free %d blocks, statfs f_bfree %d" % (end, fb, bfree))
EOF

# ---- 3: xfs_io through the shim
LD_PRELOAD=$SHIM xfs_io -c fsmap "$MNT" >"$T/x.txt" || die "xfs_io -c fsmap failed"
cmp -s "$T/x.txt" "$T/m.txt" || { diff "$T/x.txt" "$T/m.txt" | head >&2; die "xfs_io fsmap differs"; }
LD_PRELOAD=$SHIM xfs_io -c "fsmap -n 2" "$MNT" >"$T/x2.txt" || die "xfs_io -c 'fsmap -n 2' failed"
cmp -s "$T/x2.txt" "$T/m.txt" || die "xfs_io fsmap -n 2 differs"
log "xfs_io -c fsmap through the shim: the same $n records"
# -v needs XFS_IOC_FSGEOMETRY, which the shim answers; xfs_io leaves the AG
# columns empty on a filesystem its mount table does not call xfs, so
# compare the rest: the same lines, extents, devices and block ranges
LD_PRELOAD=$SHIM xfs_io -c "fsmap -v" "$MNT" >"$T/xv.txt" || die "xfs_io -c 'fsmap -v' failed"
awk '{print $1, $2, $3}' "$T/xv.txt" >"$T/xv.cut"
awk '{print $1, $2, $3}' "$T/v.txt" >"$T/v.cut"
cmp -s "$T/xv.cut" "$T/v.cut" || { diff "$T/xv.cut" "$T/v.cut" | head >&2; die "xfs_io fsmap -v differs"; }
# one FS_IOC_GETFSMAP call with room for everything gets everything (the
# shim loops the daemon's batches; xfs_io would cope with short answers)
cat >"$T/one.py" <<'EOF'
import fcntl, os, struct, sys
FS_IOC_GETFSMAP = 0xC0C0583B
n = int(sys.argv[2])
buf = bytearray(64 + 128 + 64 * (n + 10))
struct.pack_into("=IIII", buf, 0, 0, 0, n + 10, 0)
hi = struct.pack("=IIQQQQ", 0xffffffff, 0xffffffff, 2**64 - 1, 2**64 - 1, 2**64 - 1, 0)
buf[128:128 + len(hi)] = hi
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.ioctl(fd, FS_IOC_GETFSMAP, buf, True)
entries = struct.unpack_from("=I", buf, 12)[0]
flags = struct.unpack_from("=I", buf, 192 + 64 * (entries - 1) + 4)[0]
assert entries == n and flags & 0x20, (entries, n, hex(flags))
struct.pack_into("=I", buf, 8, 0)                     # fmh_count 0: count
fcntl.ioctl(fd, FS_IOC_GETFSMAP, buf, True)
assert struct.unpack_from("=I", buf, 12)[0] == n
EOF
LD_PRELOAD=$SHIM python3 "$T/one.py" "$MNT" "$n" || die "one GETFSMAP call for all $n records failed"
# the argument's version: any from 1 on is the same structure (a tool
# built with an older or newer header works), 0 is EINVAL
# (RLFS_IOC_FSMAP_GEOM: u32 version, blocksize, agblocks, agcount, u64
# dblocks, reserved[2]; _IOWR(0xb7, 11, 40 bytes))
python3 - "$MNT" <<'EOF' || die "RLFS_IOC_FSMAP_GEOM version rule"
import errno, fcntl, os, struct, sys
req = (3 << 30) | (40 << 16) | (0xb7 << 8) | 11
fd = os.open(sys.argv[1], os.O_RDONLY)
for v in (1, 2, 99):
    buf = bytearray(struct.pack("=4IQ2Q", v, 0, 0, 0, 0, 0, 0))
    fcntl.ioctl(fd, req, buf, True)
    assert struct.unpack_from("=I", buf, 4)[0] == os.statvfs(sys.argv[1]).f_bsize, v
try:
    fcntl.ioctl(fd, req, bytearray(40), True)
    sys.exit("version 0 accepted")
except OSError as e:
    assert e.errno == errno.EINVAL, e
EOF
# not root: EPERM, as XFS (CAP_SYS_ADMIN)
if id nobody >/dev/null 2>&1; then
	chmod 755 "$T" "$MNT"
	out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$RLFS" fsmap "$MNT" 2>&1) &&
		die "fsmap as nobody succeeded"
	case "$out" in *"Operation not permitted"*) ;; *) die "as nobody: $out" ;; esac
fi

# ---- 4: offline
rlfs_umount "$MNT"
"$RLFS" fsmap -m "$IMG" >"$T/o.csv" || die "reflinkfs fsmap IMAGE failed"
cut -d, -f1,4- "$T/m.csv" >"$T/m.cut"
cut -d, -f1,4- "$T/o.csv" >"$T/o.cut"
cmp -s "$T/m.cut" "$T/o.cut" || { diff "$T/m.cut" "$T/o.cut" | head >&2; die "offline map differs"; }
"$RLFS" fsmap -d 0 1000 "$IMG" >"$T/d.txt" || die "fsmap -d failed"
last=$(tail -1 "$T/d.txt" | sed 's/.*\[\([0-9]*\)\.\..*/\1/')
[ "$(wc -l <"$T/d.txt")" -ge 2 ] && [ "$last" -le 1000 ] || die "-d 0 1000: $(cat "$T/d.txt")"
[ -z "$("$RLFS" fsmap -l 0 1000 "$IMG")" ] || die "-l printed something"
[ -z "$("$RLFS" fsmap -r 0 1000 "$IMG")" ] || die "-r printed something"
expect_rc 1 "$RLFS" fsmap 0 1000 "$IMG"
rlfs_fsck "$IMG"
log "offline map equals the mounted one"

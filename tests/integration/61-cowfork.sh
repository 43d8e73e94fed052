#!/bin/bash
# 61-cowfork: the CoW fork on a real mount (issue 13 sections 1-3).
#   1. a 4 KiB write into a cloned file stages the whole CoW extent size
#      region (32 blocks by default, the file's cowextsize when set through
#      `reflinkfs io cowextsize`, a directory's inherited one): statfs counts
#      the staged blocks as used while the file is open;
#   2. the last close gives back what no write used;
#   3. with -o cowgc=SECONDS a file held open gets them back after that
#      idle time; a bad cowgc value is refused;
#   4. kill -9 of the daemon with staged blocks: the next mount frees them
#      ("freed N CoW staging block(s)"), the file has its old or new data,
#      fsck clean;
#   5. a write that needs the space another open file holds staged
#      succeeds (the write path gives staged blocks back before ENOSPC),
#      and the writeback of cached writes gives them back before it uses
#      the writeback reserve (a later write still finds space).
. "$(dirname "$0")/../lib.sh"
common_setup
SHIM=${SHIM:-$(dirname "$RLFS")/libreflinkfs-preload.so}
[ -f "$SHIM" ] || die "shim not found: $SHIM"

IMG=$T/img
MNT=$T/mnt
rlfs_mkfs "$IMG" -s 256M
rlfs_mount "$IMG" "$MNT" -o cowgc=0

free_blocks() { sync -f "$MNT"; stat -f -c '%f' "$MNT"; }
# hold FILE OFF: a background writer that writes 4 KiB at OFF, fsyncs and
# keeps the file open until $T/release exists; waits until it has written
hold() {
	rm -f "$T/release" "$T/held"
	$PY - "$1" "$2" "$T" <<'PYEOF' &
import os, sys, time
path, off, t = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fd = os.open(path, os.O_WRONLY)
os.pwrite(fd, b"N" * 4096, off)
os.fsync(fd)
open(t + "/held", "w").close()
while not os.path.exists(t + "/release"):
    time.sleep(0.05)
os.close(fd)
PYEOF
	HOLD_PID=$!
	_BGPIDS+=("$HOLD_PID")   # killed by the cleanup if the test dies
	local i
	for ((i = 0; i < 400; i++)); do [ -e "$T/held" ] && return 0; sleep 0.05; done
	die "the writer did not write"
}
unhold() { touch "$T/release"; wait "$HOLD_PID" || die "the writer failed"; }

dd if=/dev/urandom of="$MNT/a" bs=1M count=16 status=none
LD_PRELOAD=$SHIM cp --reflink=always "$MNT/a" "$MNT/b" || die "clone failed"
cp "$MNT/a" "$T/a.orig"

# 1 + 2: default region
f0=$(free_blocks)
hold "$MNT/b" $((100 * 4096))
used=$((f0 - $(free_blocks)))
log "one 4 KiB write into the clone, file open: $used blocks used"
[ "$used" -ge 32 ] && [ "$used" -le 40 ] || die "expected the 32-block region staged, $used used"
unhold
used=$((f0 - $(free_blocks)))
log "after the last close: $used blocks used"
[ "$used" -le 4 ] || die "the close did not give the staged blocks back ($used used)"

# the file's own hint: 128 blocks
"$RLFS" io -c "cowextsize 524288" "$MNT/b" >/dev/null || die "cowextsize set failed"
"$RLFS" io -c "cowextsize" "$MNT/b" | grep -q '\[524288\]' || die "cowextsize not read back"
f0=$(free_blocks)
hold "$MNT/b" $((1000 * 4096))
used=$((f0 - $(free_blocks)))
log "with cowextsize 128 blocks: $used blocks used"
[ "$used" -ge 128 ] && [ "$used" -le 136 ] || die "expected a 128-block region, $used used"
unhold

# an inherited hint: a directory's cowextsize, a file cloned into it
mkdir "$MNT/d"
"$RLFS" io -c "cowextsize 262144" "$MNT/d" >/dev/null || die "cowextsize on a directory failed"
LD_PRELOAD=$SHIM cp --reflink=always "$MNT/a" "$MNT/d/c" || die "clone into d failed"
f0=$(free_blocks)
hold "$MNT/d/c" $((2000 * 4096))
used=$((f0 - $(free_blocks)))
log "file in a directory with cowextsize 64 blocks: $used blocks used"
[ "$used" -ge 64 ] && [ "$used" -le 72 ] || die "expected a 64-block region, $used used"
unhold
cmp -s "$MNT/a" "$T/a.orig" || die "the source changed"

# 3: the idle timer
rlfs_umount "$MNT"
rlfs_fsck "$IMG"
expect_rc 1 "$RLFS" mount -o cowgc=soon "$IMG" "$MNT"
expect_rc 1 "$RLFS" mount -o cowfill=17 "$IMG" "$MNT"
rlfs_mount "$IMG" "$MNT" -o cowgc=2,cowfill=0
f0=$(free_blocks)
hold "$MNT/b" $((3000 * 4096))
used=$((f0 - $(free_blocks)))
[ "$used" -ge 128 ] || die "expected the region staged, $used used"
for ((i = 0; i < 100; i++)); do
	used=$((f0 - $(free_blocks)))
	[ "$used" -le 4 ] && break
	sleep 0.2
done
log "open file, cowgc=2: $used blocks used after $((i / 5)) s"
[ "$used" -le 4 ] || die "cowgc=2 did not give back the idle staged blocks"
unhold

# 4: killed with staged blocks
hold "$MNT/b" $((3500 * 4096))
kill_daemon "$IMG" "$MNT"
kill "$HOLD_PID" 2>/dev/null || true; wait "$HOLD_PID" 2>/dev/null || true
run_to "$CMD_TIMEOUT" "$RLFS" mount "$IMG" "$MNT" -f >"$T/mount.out" 2>&1 &
MPID=$!
_MOUNTS+=("$MNT")
_MOUNT_IMG+=("$IMG")
for ((i = 0; i < 200; i++)); do mountpoint -q "$MNT" && break; sleep 0.05; done
mountpoint -q "$MNT" || die "remount after the kill failed: $(cat "$T/mount.out")"
grep -q "freed [0-9]* CoW staging block(s) no CoW fork owned" "$T/mount.out" ||
	die "the mount did not free the staging extents: $(cat "$T/mount.out")"
log "$(grep -o 'freed [0-9]* CoW staging block(s)' "$T/mount.out")"
$PY - "$MNT/b" "$T/a.orig" <<'PYEOF' || die "block 3500 holds neither its old nor its new data"
import sys
b = open(sys.argv[1], "rb").read()
o = open(sys.argv[2], "rb").read()
blk = b[3500 * 4096:3501 * 4096]
sys.exit(0 if blk in (o[3500 * 4096:3501 * 4096], b"N" * 4096) else 1)
PYEOF
rlfs_umount "$MNT"
wait "$MPID" 2>/dev/null || true
rlfs_fsck "$IMG"

# 5: ENOSPC gives staged blocks back first
rlfs_mount "$IMG" "$MNT" -o cowgc=0
"$RLFS" io -c "cowextsize 4194304" "$MNT/b" >/dev/null || die "cowextsize set failed"
hold "$MNT/b" $((200 * 4096))
avail_kb=$(df -P -k "$MNT" | awk 'NR==2 {print $4}')
want_kb=$((avail_kb + 2048))
log "filling: $avail_kb KiB available, writing $want_kb KiB (1,024 blocks staged for b)"
dd if=/dev/zero of="$MNT/fill" bs=1K count="$want_kb" conv=fsync status=none ||
	die "the write did not get the space b held staged"
# the cached writes went back through writeback: the space they needed
# past the free space came from b's idle staged blocks, not from the
# writeback reserve (which would have stopped every cached writer: the
# filesystem full while 2 MiB of staged space were still idle)
dd if=/dev/zero of="$MNT/small" bs=4K count=64 conv=fsync status=none ||
	die "writeback took the writeback reserve before b's idle staged blocks"
unhold
rm -f "$MNT/fill" "$MNT/small"
cmp -s "$MNT/a" "$T/a.orig" || die "the source changed"
rlfs_umount "$MNT"
rlfs_fsck "$IMG"
log "ok"

#!/bin/bash
# 70-fsck-full: fsck repairs the AG trees of a full filesystem.  In a full
# AG the free blocks are only what the AG reservation holds back for the
# refcount and rmap btrees, less than those trees already hold, so the
# new trees cannot all go into blocks free in both the old and the new
# view (docs/DESIGN.md "A full AG"): the rebuild must put its new AGFL on
# old tree blocks and write the trees over some of the old bnobt, cntbt,
# refcountbt, AGFL and (when no other repair reads it) rmapbt blocks, say
# so, and end clean.  Before, the repair failed with
# ENOSPC and left the damage (68-fsck-spill met it when its busiest AG
# happened to be nearly full).
#   An image of 8 AGs: six files of 3,000 one-block extents (a hole after
#   each block: one rmap record per block, about 4,000 per AG), then a file
#   written until ENOSPC.  A free-space record grown over a used block in
#   AG 0 (the busiest); fsck must exit 1 saying an AG was too full to keep
#   its old trees, fsck -n must then be clean, every file's bytes as
#   before, and the filesystem must take and free a new file.
. "$(dirname "$0")/../lib.sh"
common_setup
AGT="$PY $SRCDIR/tests/helpers/agtree.py"

img=$T/full.img m=$T/mnt
rlfs_mkfs "$img" -s 128M -a 8 -l size=1M
rlfs_mount "$img" "$m"
for d in 1 2 3 4 5 6; do
	for ((i = 0; i < 6000; i += 2)); do
		echo "pwrite -S $((i % 251)) $((i * 4096)) 4096"
	done | "$RLFS" io -f "$m/frag$d" >/dev/null || die "writing frag$d failed"
done
dd if=/dev/zero of="$m/fill" bs=1M 2>/dev/null && die "the fill did not run out of space"
sync
avail=$(stat -f -c %a "$m")
[ "$avail" -lt 256 ] || die "the filesystem is not full ($avail blocks available)"
sums() { (cd "$1" && md5sum frag* fill) >"$2" || die "md5sum failed"; }
sums "$m" "$T/sums.before"
rlfs_umount "$m"
rlfs_fsck "$img"

ag=$($AGT busiest "$img" rmapbt)
$AGT bno-extend-left "$img" "$ag" >/dev/null || die "bno-extend-left failed"
FRC=0
run_to "$CMD_TIMEOUT" "$RLFS" fsck -n "$img" >"$T/check.out" 2>&1 || FRC=$?
[ $FRC = 4 ] || { cat "$T/check.out" >&2; die "fsck -n of the damaged image exited $FRC, expected 4"; }
FRC=0
run_to "$CMD_TIMEOUT" "$RLFS" fsck "$img" >"$T/repair.out" 2>&1 || FRC=$?
[ $FRC = 1 ] || { cat "$T/repair.out" >&2; die "repair exited $FRC, expected 1"; }
grep -q "^AG $ag: too full to keep the old trees" "$T/repair.out" ||
	{ cat "$T/repair.out" >&2; die "the repair did not say AG $ag was too full"; }
log "repair: $(grep -c 'too full to keep' "$T/repair.out") AGs rebuilt over old tree blocks"
rlfs_fsck "$img"

rlfs_mount "$img" "$m"
sums "$m" "$T/sums.after"
diff -u "$T/sums.before" "$T/sums.after" >&2 || die "file contents changed by the repair"
rm "$m/fill"
"$RLFS" io -f -c "pwrite -S 0x5a 0 8m" -c fsync "$m/new" >/dev/null || die "a new file failed"
rm "$m/new"
rlfs_umount "$m"
rlfs_fsck "$img"
log "ok"

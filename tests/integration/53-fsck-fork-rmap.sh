#!/bin/bash
# 53-fsck-fork-rmap: fsck rebuilds a regular file's data fork from the rmap
# btree (tools/fsck_fork.c) and nothing else changes.
# - a fragmented file (written and unwritten extents alternating, xattrs in
#   their own blocks) and its clone; the clone's whole bmbt zeroed on the
#   image (its blocks found as "data extent map" in reflinkfs fsmap): fsck -n
#   exits 4 naming the rebuild, fsck exits 1, then fsck -n and a second
#   fsck exit 0; both files read back byte for byte, the unwritten ranges
#   are still unwritten, the clone still shares every extent, its xattrs
#   are intact, and a write to the clone leaves the original alone (CoW);
# - the same damage plus a damaged rmap btree block: nothing is rebuilt
#   (exit 4, the rebuild line absent);
# - a fork too large for one checkpoint of the log: fsck -n already says
#   it is not rebuilt, and fsck leaves it (exit 4).
. "$(dirname "$0")/../lib.sh"
common_setup
SCAN=$SRCDIR/tests/helpers/metascan.py

img=$T/pop.img m=$T/mnt
rlfs_mkfs "$img" -s 256M -a 2
rlfs_mount "$img" "$m"
# 600 blocks: block i written (pattern i % 251) if i % 3 == 0, preallocated
# (unwritten) if i % 3 == 1, a hole otherwise: 400 extents that never merge
write_frag "$m/frag" 600 3 1
truncate -s $((600 * 4096)) "$m/frag"
$PY - "$m/frag" <<'PYEOF'
import os, sys
for k in range(4):
    os.setxattr(sys.argv[1], "user.big%d" % k, bytes([65 + k]) * 3000)
PYEOF
"$RLFS" io -f -c "reflink $m/frag" "$m/clone" >/dev/null
$PY - "$m/frag" "$m/clone" <<'PYEOF'
import os, sys
for k in range(4):
    os.setxattr(sys.argv[2], "user.big%d" % k, os.getxattr(sys.argv[1], "user.big%d" % k))
PYEOF
ino=$(stat -c %i "$m/clone")
stat_of() { "$RLFS" io -r -c stat "$1" | sed -n "s/^$2 = //p"; }
sums=$(cd "$m" && md5sum frag clone)
unw=$(stat_of "$m/clone" extents.unwritten_bytes)
ext=$(stat_of "$m/clone" extents.count)
shared=$(stat_of "$m/clone" extents.shared)
[ "$ext" -ge 390 ] && [ "$unw" = $((200 * 4096)) ] && [ "$shared" = "$ext" ] ||
	die "setup: clone has $ext extents, $unw unwritten bytes, $shared shared"
rlfs_umount "$m"
rlfs_fsck "$img"
cp --sparse=always "$img" "$T/pristine.img"
fresh() { cp --sparse=always "$T/pristine.img" "$T/case.img"; }

# zero_bmbt IMAGE INO: zero every block fsmap lists as INO's data extent map
zero_bmbt() {
	local n=0 range lo hi
	"$RLFS" fsmap "$1" | grep "inode $2 data extent map" >"$T/bmbt.lst" || true
	while read -r _ _ range _; do
		range=${range#[}; range=${range%]:}
		lo=${range%..*} hi=${range#*..}
		dd if=/dev/zero of="$1" bs=512 seek="$lo" count=$((hi - lo + 1)) conv=notrunc status=none
		n=$((n + (hi - lo + 1) / 8))
	done <"$T/bmbt.lst"
	[ $n -gt 0 ] || die "fsmap lists no bmbt block of inode $2"
	echo $n
}

# --- the whole bmbt of the clone zeroed: rebuilt from the rmap -------------
fresh
nb=$(zero_bmbt "$T/case.img" "$ino")
log "zeroed $nb bmbt blocks of inode $ino"
fsck_rc -n "$T/case.img"
[ $FRC = 4 ] || { cat "$T/fsck.out" >&2; die "fsck -n exited $FRC, expected 4"; }
grep -q "inode $ino: data fork unreadable; the rmap holds its $ext extents" "$T/fsck.out" ||
	{ cat "$T/fsck.out" >&2; die "fsck -n does not name the rebuild"; }
grep -q "1 error found that repair corrects (1 data fork rebuilt from the rmap)" "$T/fsck.out" ||
	{ cat "$T/fsck.out" >&2; die "fsck -n: the rebuild is not the only finding"; }
fsck_rc "$T/case.img"
[ $FRC = 1 ] || { cat "$T/fsck.out" >&2; die "fsck exited $FRC, expected 1"; }
grep -q "corrected (1 data fork rebuilt from the rmap); the filesystem now checks clean" "$T/fsck.out" ||
	{ cat "$T/fsck.out" >&2; die "no corrected line"; }
for pass in 1 2; do
	fsck_rc "$T/case.img"
	[ $FRC = 0 ] || { cat "$T/fsck.out" >&2; die "fsck run $pass after the repair exited $FRC"; }
done
rlfs_mount "$T/case.img" "$m"
[ "$(cd "$m" && md5sum frag clone)" = "$sums" ] || die "contents changed by the repair"
[ "$(stat_of "$m/clone" extents.unwritten_bytes)" = "$unw" ] || die "unwritten ranges changed"
[ "$(stat_of "$m/clone" extents.count)" = "$ext" ] || die "extent count changed"
[ "$(stat_of "$m/clone" extents.shared)" = "$shared" ] || die "the clone no longer shares its extents"
$PY - "$m/clone" <<'PYEOF' || die "xattrs of the clone changed"
import os, sys
for k in range(4):
    assert os.getxattr(sys.argv[1], "user.big%d" % k) == bytes([65 + k]) * 3000
PYEOF
# copy-on-write still works on the rebuilt fork
dd if=/dev/urandom of="$m/clone" bs=4096 count=3 conv=notrunc,fsync status=none
[ "$(cd "$m" && md5sum frag)" = "$(grep ' frag$' <<<"$sums")" ] || die "a write to the clone changed the original"
rlfs_umount "$m"
fsck_rc -n "$T/case.img"
[ $FRC = 0 ] || { cat "$T/fsck.out" >&2; die "fsck -n after writing exited $FRC"; }
log "whole bmbt zeroed: rebuilt, contents, unwritten ranges, sharing and xattrs intact"

# --- the rmap damaged too: nothing to rebuild from ------------------------
fresh
zero_bmbt "$T/case.img" "$ino" >/dev/null
rmblk=$($PY "$SCAN" list "$T/case.img" | awk '$1 == "rmapbt" && !n {print $2; n = 1}')
[ -n "$rmblk" ] || die "no rmapbt block found"
$PY "$SCAN" flip "$T/case.img" "$rmblk" 100 1
fsck_rc "$T/case.img"
[ $FRC = 4 ] || { cat "$T/fsck.out" >&2; die "bmbt + rmapbt damage: fsck exited $FRC, expected 4"; }
grep -q "the rmap holds its" "$T/fsck.out" && die "rebuilt from a damaged rmap"
grep -E -q '(^|[^n])corrected' "$T/fsck.out" && die "bmbt + rmapbt damage: says corrected"
log "bmbt + rmapbt damage: left (exit 4)"

# --- too large for one checkpoint of the log ------------------------------
img2=$T/small-log.img
rlfs_mkfs "$img2" -s 256M -l size=1m
rlfs_mount "$img2" "$m"
for i in $(seq 0 2 25999); do echo "pwrite -S $((i % 251)) $((i * 4096)) 4096"; done |
	"$RLFS" io -f "$m/huge" >/dev/null
ino2=$(stat -c %i "$m/huge")
rlfs_umount "$m"
blk=$("$RLFS" fsmap "$img2" | grep "inode $ino2 data extent map" | sed -n 2p | sed 's/.*\[\([0-9]*\)\.\..*/\1/')
[ -n "$blk" ] || die "no bmbt block of huge"
dd if=/dev/zero of="$img2" bs=512 seek="$blk" count=8 conv=notrunc status=none
fsck_rc -n "$img2"
[ $FRC = 4 ] || die "huge: fsck -n exited $FRC"
grep -q "inode $ino2: data fork unreadable; the rmap holds its 13000 extents, but a bmbt that large does not fit one checkpoint of the 256-block log: not rebuilt" "$T/fsck.out" ||
	{ cat "$T/fsck.out" >&2; die "huge: fsck -n does not say it is too large"; }
grep -q "that repair corrects" "$T/fsck.out" && die "huge: fsck -n promises a repair"
fsck_rc "$img2"
[ $FRC = 4 ] || { cat "$T/fsck.out" >&2; die "huge: fsck exited $FRC, expected 4"; }
rm -f "$img2"
log "a bmbt larger than one checkpoint: reported, left"
log OK

#!/bin/bash
# 27-fsck-repair: fsck repairs what it says it repairs and nothing else, and
# the superblock's error record carries what it left to every later mount.
# - counter-only damage (AG header free count, superblock counters, with
#   valid checksums), a wrong link count, a wrong directory parent, an
#   unclean-unmount flag, an inode unlinked while open (sharing blocks,
#   daemon killed: on its AG's unlinked list, not an orphan, freed by
#   repair as by the next mount): fsck exits 1 ("corrected"), fsck -n then 0;
# - a damaged bmbt block of a fragmented file (rmap btree on, the default):
#   fsck rebuilds the data fork from the rmap (exit 1, then clean) and the
#   file reads back byte for byte; the same after the daemon met and
#   recorded the damage (the record is cleared);
# - a damaged directory block (the root node of a directory of 100
#   entries): the directory is rebuilt from its leaves (the rmap names
#   them), every entry kept (exit 1, then clean);
# - damaged metadata (an inode, random bytes): fsck exits 4 with the one-line "left uncorrected ... mount the image
#   read-only" message, never prints "corrected", marks the superblock; a
#   second fsck still reports the damage and the record;
# - damage left: fsck marks the superblock, the next mount warns on one
#   line and works;
# - a cross-linked block (two files map one block, no refcount record):
#   the AG tree rebuild makes the block shared (exit 1, then clean), and a
#   write to one file leaves the other alone;
# - a bmbt block corrupted while unmounted and met by a read through the
#   mount: the daemon records it, the next mount warns naming the block;
# - a stale record on a clean filesystem: fsck -n exits 0 and keeps it,
#   repair clears it (0, as e2fsck), and mounts stop warning.
. "$(dirname "$0")/../lib.sh"
common_setup
ED="$PY $SRCDIR/tests/helpers/imgedit.py"
SCAN=$SRCDIR/tests/helpers/metascan.py

# no line may claim "corrected" (uncorrected is fine) for damage left
no_corrected() {
	if grep -E '(^|[^n])corrected' "$T/fsck.out" >&2; then
		die "$1: fsck exited 4 but says something was corrected"
	fi
}
sb_errors() { $ED sb-get "$1" errors; }


# --- a populated image ---------------------------------------------------
img=$T/pop.img m=$T/mnt
rlfs_mkfs "$img" -s 256M -a 4
rlfs_mount "$img" "$m"
mkdir -p "$m/d/sub" "$m/big"
for i in $(seq 1 100); do echo "file $i" >"$m/big/entry-with-a-long-name-$i"; done
echo aaaa >"$m/a"
echo bbbb >"$m/b"
echo "keep me" >"$m/d/keep"
write_frag "$m/frag" 600 2   # 300 one-block extents: a bmbt
ino_a=$(stat -c %i "$m/a") ino_b=$(stat -c %i "$m/b") ino_d=$(stat -c %i "$m/d")
ino_sub=$(stat -c %i "$m/d/sub") ino_keep=$(stat -c %i "$m/d/keep")
ino_frag=$(stat -c %i "$m/frag") ino_big=$(stat -c %i "$m/big")
sum_frag=$(md5sum <"$m/frag")
rlfs_umount "$m"
rlfs_fsck "$img"
[ "$(sb_errors "$img")" = 0 ] || die "a fresh image has an error record"
bmbt=$($ED inode-get "$img" "$ino_frag" root)
dirblk=$($ED inode-get "$img" "$ino_big" root)
[ "$($ED inode-get "$img" "$ino_frag" format)" = 3 ] || die "frag has no bmbt"
cp --sparse=always "$img" "$T/pristine.img"
fresh() { cp --sparse=always "$T/pristine.img" "$T/case.img"; chmod 600 "$T/case.img"; }

# --- what repair fixes: exit 1, then clean --------------------------------
repair_ok() {  # LABEL
	fsck_rc -n "$T/case.img"
	[ $FRC = 4 ] || { cat "$T/fsck.out" >&2; die "$1: fsck -n exited $FRC, expected 4"; }
	grep -q "that repair corrects" "$T/fsck.out" || { cat "$T/fsck.out" >&2; die "$1: fsck -n does not say repair corrects it"; }
	fsck_rc "$T/case.img"
	[ $FRC = 1 ] || { cat "$T/fsck.out" >&2; die "$1: fsck exited $FRC, expected 1 (corrected)"; }
	grep -q "corrected (.*); the filesystem now checks clean" "$T/fsck.out" ||
		{ cat "$T/fsck.out" >&2; die "$1: no 'corrected' line"; }
	cp "$T/fsck.out" "$T/repair.out"
	log "$1: $(tail -1 "$T/fsck.out")"
	fsck_rc -n "$T/case.img"
	[ $FRC = 0 ] || { cat "$T/fsck.out" >&2; die "$1: fsck -n after repair exited $FRC, expected 0"; }
}

fresh
$ED agh-set "$T/case.img" 2 freeblks 12345
$ED agh-set "$T/case.img" 1 longest 3
$ED sb-set "$T/case.img" fdblocks 7
$ED sb-set "$T/case.img" icount 999
repair_ok "summary counters"

fresh
$ED inode-set "$T/case.img" "$ino_a" nlink 5
$ED inode-set "$T/case.img" "$ino_d" nlink 9
$ED sb-set "$T/case.img" state 1
repair_ok "link counts and the unclean-unmount flag"
rlfs_mount "$T/case.img" "$m"
[ "$(stat -c %h "$m/a")" = 1 ] || die "link count of a not repaired: $(stat -c %h "$m/a")"
[ "$(stat -c %h "$m/d")" = 3 ] || die "link count of d not repaired: $(stat -c %h "$m/d")"
rm "$m/a"                        # a wrong count would leak or free early
rlfs_umount "$m"
rlfs_fsck "$T/case.img"

fresh
$ED inode-set "$T/case.img" "$ino_sub" parent "$ino_big"
repair_ok "directory parent pointer"
rlfs_mount "$T/case.img" "$m"
[ "$(stat -c %i "$m/d/sub/..")" = "$ino_d" ] || die "d/sub/.. is not d after repair"
rmdir "$m/d/sub"
rlfs_umount "$m"
rlfs_fsck "$T/case.img"

# an orphan: a file (sharing blocks with another by a clone) unlinked while
# open, then the daemon killed; repair frees it and its blocks, the clone
# source keeps its data
fresh
rlfs_mount_fg "$T/case.img" "$m" || die "mount for the orphan case failed"
head -c 300k /dev/urandom >"$m/src"
"$RLFS" io -f -c "reflink $m/src" "$m/orph" >/dev/null || die "reflinkfs io reflink failed"
echo "private tail" >>"$m/orph"
sum_src=$(md5sum <"$m/src")
$PY - "$m/orph" "$T/orph.ready" <<'PYEOF' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
os.unlink(sys.argv[1])
os.fsync(fd)            # the unlink reaches the image (v1 flushes everything)
open(sys.argv[2], "w").close()
time.sleep(120)
PYEOF
holder=$!
_BGPIDS+=("$holder")
for ((i = 0; i < 300; i++)); do [ -e "$T/orph.ready" ] && break; sleep 0.1; done
[ -e "$T/orph.ready" ] || die "the orphan holder did not get ready"
kill -9 "$FG_PID"
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null || true
rlfs_umount_fg "$m" || true
fsck_rc -n "$T/case.img"
[ $FRC = 4 ] || { cat "$T/fsck.out" >&2; die "orphan: fsck -n exited $FRC, expected 4"; }
if grep -q "log needs replay" "$T/fsck.out"; then
	# the write-ahead log holds the unlink: fsck -n stops there and
	# changes nothing; a read-only mount replays the log (nothing else)
	rlfs_mount "$T/case.img" "$m" -o ro
	rlfs_umount "$m"
	fsck_rc -n "$T/case.img"
	[ $FRC = 4 ] || { cat "$T/fsck.out" >&2; die "orphan: fsck -n exited $FRC, expected 4"; }
fi
# on its AG's unlinked list: not an orphan, freed by the next mount or by repair
! grep -q "orphan" "$T/fsck.out" || { cat "$T/fsck.out" >&2; die "a listed unlinked inode reported as an orphan"; }
grep -q "1 unlinked inode left by a crash is on the unlinked lists (not an error)" "$T/fsck.out" ||
	{ cat "$T/fsck.out" >&2; die "the listed unlinked inode is not mentioned"; }
repair_ok "unlinked inode (unlinked while open, shares blocks)"
grep -q "1 unlinked inode freed" "$T/repair.out" || die "repair does not say it freed the unlinked inode"
rlfs_mount "$T/case.img" "$m"
[ "$(md5sum <"$m/src")" = "$sum_src" ] || die "the clone source changed when the orphan was freed"
[ ! -e "$m/orph" ] || die "the orphan is visible"
rm "$m/src"
rlfs_umount "$m"
rlfs_fsck "$T/case.img"

# --- what repair leaves: exit 4, one clear line, superblock marked --------
left_ok() {  # LABEL [nomark]
	fsck_rc "$T/case.img"
	[ $FRC = 4 ] || { cat "$T/fsck.out" >&2; die "$1: fsck exited $FRC, expected 4"; }
	no_corrected "$1"
	grep -q "left uncorrected.*repair cannot rebuild this damage yet.*reflinkfs mount -o ro" \
		"$T/fsck.out" || { cat "$T/fsck.out" >&2; die "$1: no 'left uncorrected' line saying what to do"; }
	log "$1: $(grep 'left uncorrected' "$T/fsck.out" | cut -c1-110)..."
	if [ "${2:-}" != nomark ]; then
		grep -q "superblock marked as having errors" "$T/fsck.out" || die "$1: superblock not marked"
		[ $(( $(sb_errors "$T/case.img") & 1 )) = 1 ] || die "$1: error record lacks the fsck flag"
	fi
	cp "$T/fsck.out" "$T/fsck1.out"
	# a second run finds the same damage and still leaves it
	fsck_rc "$T/case.img"
	[ $FRC = 4 ] || { cat "$T/fsck.out" >&2; die "$1: second fsck exited $FRC, expected 4"; }
	no_corrected "$1 (second run)"
	[ "$(grep -vc 'superblock\|uncorrected' "$T/fsck1.out")" = "$(grep -vc 'superblock\|uncorrected' "$T/fsck.out")" ] ||
		{ diff "$T/fsck1.out" "$T/fsck.out" >&2; die "$1: second fsck reports different findings"; }
	if [ "${2:-}" != nomark ]; then
		grep -q "the superblock records errors: found by fsck" "$T/fsck.out" ||
			die "$1: second fsck does not show the record"
	fi
	fsck_rc -n "$T/case.img"
	[ $FRC = 4 ] || die "$1: fsck -n after repair exited $FRC, expected 4"
}

# frag reads back as it was written (after a repair)
frag_intact() {
	rlfs_mount "$T/case.img" "$m"
	[ "$(md5sum <"$m/frag")" = "$sum_frag" ] || die "$1: frag's contents changed"
	rlfs_umount "$m"
	fsck_rc -n "$T/case.img"
	[ $FRC = 0 ] || { cat "$T/fsck.out" >&2; die "$1: fsck -n after mounting exited $FRC"; }
}
fresh
$PY "$SCAN" flip "$T/case.img" "$bmbt" 2000 1
repair_ok "bmbt block of frag (bad crc)"
grep -q "inode $ino_frag: data fork unreadable; the rmap holds its 300 extents (300 blocks)" \
	"$T/repair.out" || { cat "$T/repair.out" >&2; die "bmbt block: no rebuild line"; }
frag_intact "bmbt block of frag"
# without the rmap btree nothing tells where frag's blocks were: left as is
img0=$T/normap.img
rlfs_mkfs "$img0" -s 64M -m rmapbt=0
rlfs_mount "$img0" "$m"
write_frag "$m/frag" 600 2   # 300 one-block extents: a bmbt
ino0=$(stat -c %i "$m/frag")
rlfs_umount "$m"
bmbt0=$($ED inode-get "$img0" "$ino0" root)
$PY "$SCAN" flip "$img0" "$bmbt0" 2000 1
fsck_rc "$img0"
[ $FRC = 4 ] || { cat "$T/fsck.out" >&2; die "bmbt block without rmap: fsck exited $FRC, expected 4"; }
no_corrected "bmbt block without rmap"
rm -f "$img0"
# a directory's b+tree root node (big: 100 entries in several leaves):
# rebuilt from its leaves, which the rmap still names; no entry is lost
fresh
$PY "$SCAN" flip "$T/case.img" "$dirblk" 9 2
repair_ok "directory block (bad crc)"
grep -q "inode $ino_big (directory): rebuilt with 100 entries" "$T/repair.out" ||
	{ cat "$T/repair.out" >&2; die "directory block: not rebuilt with its 100 entries"; }
rlfs_mount "$T/case.img" "$m"
for i in $(seq 1 100); do
	[ "$(cat "$m/big/entry-with-a-long-name-$i")" = "file $i" ] ||
		die "directory block: big/entry-with-a-long-name-$i lost or changed"
done
[ ! -e "$m/lost+found" ] || die "directory block: something went to /lost+found"
rlfs_umount "$m"
rlfs_fsck "$T/case.img"
fresh
$ED inode-set "$T/case.img" "$ino_keep" nblocks 77
left_ok "inode block count (valid crc)"
# counters are wrong too, but repair fixes nothing while real damage stays
$ED sb-set "$T/case.img" fdblocks 7
fsck_rc "$T/case.img"
[ $FRC = 4 ] || die "damage + counters: fsck exited $FRC"
no_corrected "damage + counters"
grep -q "fdblocks 7" "$T/fsck.out" || die "damage + counters: counter finding not listed"
[ "$($ED sb-get "$T/case.img" fdblocks)" = 7 ] || die "counters rewritten while other damage is left"
for seed in 1 2 3; do
	fresh
	$PY "$SCAN" rand "$T/case.img" 20 $seed >/dev/null
	fsck_rc -n "$T/case.img"
	[ $FRC = 4 ] || { log "random bytes seed $seed: fsck -n exit $FRC (not detected), skipped"; continue; }
	if grep -q "that repair corrects" "$T/fsck.out"; then
		# only what repair fixes was hit (a bmbt block: rebuilt from the rmap)
		repair_ok "20 random metadata bytes (seed $seed, all repairable)"
	elif grep -q "AG 0 agbno 0 (fsbno 0) (superblock)" "$T/fsck.out"; then
		left_ok "20 random metadata bytes (seed $seed, superblock hit)" nomark
	else
		left_ok "20 random metadata bytes (seed $seed)"
	fi
done

# --- damage left: fsck marks, the next mount warns --------------------------
fresh
$ED inode-set "$T/case.img" "$ino_keep" nblocks 77
left_ok "inode block count, for the mount warning"
rlfs_mount "$T/case.img" "$m" 2>"$T/mount.err"
cat "$T/mount.err" >&2
[ "$(grep -c "has errors" "$T/mount.err")" = 1 ] || die "mount of the marked image: expected one warning, got: $(cat "$T/mount.err")"
grep -q "has errors: found by fsck ([0-9]* findings* left uncorrected, .*); run \`reflinkfs fsck $T/case.img\`" \
	"$T/mount.err" || die "mount of the marked image does not warn as expected"
[ "$(cat "$m/d/keep")" = "keep me" ] || die "the rest of the marked filesystem is not readable"
echo new >"$m/new"              # and writable (errors=continue, as ext4)
rlfs_umount "$m"
[ $(( $(sb_errors "$T/case.img") & 1 )) = 1 ] || die "a mount cleared the error record"
fsck_rc -n "$T/case.img"
[ $FRC = 4 ] || die "marked image: fsck -n after the mount exited $FRC"

# --- cross-linked block: the AG tree rebuild makes it shared ----------------
# (it used to be left as is; tests/integration/52-fsck-rebuild.sh checks
# the rebuild in depth)
fresh
old=$($ED crosslink "$T/case.img" "$ino_a" "$ino_b")
fsck_rc -n "$T/case.img"
[ $FRC = 4 ] || { cat "$T/fsck.out" >&2; die "cross link: fsck -n exited $FRC, expected 4"; }
grep -q "mapped by 2 data forks but the refcount btree has no record" "$T/fsck.out" ||
	die "cross link not reported"
# the rmap btree (on by default) still has b's old mapping, not its new one
grep -q "rmapbt record with no owner" "$T/fsck.out" && grep -q "missing from rmapbt" "$T/fsck.out" ||
	die "cross link: the rmap mismatch not reported"
repair_ok "cross-linked block"
grep -q "^AG 0: rebuilt bnobt" "$T/repair.out" || die "cross link: no rebuild line"
rlfs_mount "$T/case.img" "$m" 2>"$T/mount.err"
grep -q "has errors" "$T/mount.err" && die "cross link: the repaired image warns at mount"
[ "$(cat "$m/b")" = aaaa ] || die "cross-linked b does not show a's block"
echo changed >"$m/b"            # now shared: copy-on-write
[ "$(cat "$m/a")" = aaaa ] || die "cross link: a write to b changed a"
rlfs_umount "$m"
rlfs_fsck "$T/case.img"

# --- corruption met while mounted: the daemon records it -------------------
fresh
$PY "$SCAN" flip "$T/case.img" "$bmbt" 3000 3
rlfs_mount "$T/case.img" "$m" 2>"$T/mount.err"
grep -q "has errors" "$T/mount.err" && die "warned before anything was recorded: $(cat "$T/mount.err")"
rc=0; cat "$m/frag" >/dev/null 2>"$T/cat.err" || rc=$?
[ $rc != 0 ] || die "reading frag with a corrupt bmbt block succeeded"
grep -q "Structure needs cleaning\|Input/output error" "$T/cat.err" || die "read error: $(cat "$T/cat.err")"
[ "$(cat "$m/d/keep")" = "keep me" ] || die "the rest of the filesystem is not readable"
rlfs_umount "$m"
[ $(( $(sb_errors "$T/case.img") & 2 )) = 2 ] || die "the daemon did not record the corruption it met"
[ "$($ED sb-get "$T/case.img" first_error_fsbno)" = "$bmbt" ] || die "record names block $($ED sb-get "$T/case.img" first_error_fsbno), not $bmbt"
rlfs_mount "$T/case.img" "$m" 2>"$T/mount.err"
cat "$T/mount.err" >&2
[ "$(grep -c "has errors" "$T/mount.err")" = 1 ] || die "expected one warning from the mount, got: $(cat "$T/mount.err")"
grep -q "has errors: corrupt metadata met while mounted (.*bmbt at fsbno $bmbt" "$T/mount.err" ||
	die "the next mount does not warn about the recorded corruption"
rlfs_umount "$m"
repair_ok "bmbt corruption met while mounted"
grep -q "records errors: .*corrupt metadata met while mounted" "$T/repair.out" ||
	die "fsck does not show the daemon's record"
grep -q "the superblock's error record was cleared" "$T/repair.out" ||
	{ cat "$T/repair.out" >&2; die "bmbt met while mounted: the record was not cleared"; }
[ "$(sb_errors "$T/case.img")" = 0 ] || die "bmbt met while mounted: record still set after repair"
frag_intact "bmbt met while mounted"

# --- a stale record (the filesystem checks clean): -n keeps it, repair clears it
fresh
$ED sb-set "$T/case.img" errors 2
$ED sb-set "$T/case.img" error_count 1
$ED sb-set "$T/case.img" first_error_time 1700000000
fsck_rc -n "$T/case.img"
[ $FRC = 0 ] || { cat "$T/fsck.out" >&2; die "stale record: fsck -n exited $FRC, expected 0 (as e2fsck)"; }
grep -q "clean, .*; the superblock still records errors (not cleared" "$T/fsck.out" ||
	{ cat "$T/fsck.out" >&2; die "stale record: fsck -n does not say the record stays"; }
[ "$(sb_errors "$T/case.img")" = 2 ] || die "fsck -n changed the record"
fsck_rc "$T/case.img"
[ $FRC = 0 ] || { cat "$T/fsck.out" >&2; die "stale record: fsck exited $FRC, expected 0"; }
grep -q "clean, .*; the superblock's error record was cleared" "$T/fsck.out" ||
	{ cat "$T/fsck.out" >&2; die "stale record: fsck does not say it cleared the record"; }
[ "$(sb_errors "$T/case.img")" = 0 ] || die "fsck did not clear the stale record"
rlfs_mount "$T/case.img" "$m" 2>"$T/mount.err"
grep -q "has errors" "$T/mount.err" && die "mount warns after the record was cleared"
rlfs_umount "$m"

# the pristine image was never touched
cmp -s "$img" "$T/pristine.img" || die "the pristine image changed"
rlfs_fsck "$img"
log OK

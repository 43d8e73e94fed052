#!/bin/bash
# 52-fsck-rebuild: fsck rebuilds the AG trees (free-space, inode, refcount
# and rmap btrees, AGFL, AG header counters) from the block maps, as
# xfs_repair's phase 5 (tools/fsck_rebuild.c).
# A populated image (files, clones sharing extents, a fragmented file with
# a bmbt, xattrs, directories), every file's checksum recorded; then for
# each kind of damage, on a fresh copy: fsck -n exits 4 and says repair
# corrects it; fsck exits 1 and prints one "AG n: rebuilt ..." line per
# AG; fsck -n then exits 0 and a second fsck exits 0 (idempotent); the
# image mounts, every file's checksum is unchanged, a new file can be
# written and fsck -n is clean again.  Kinds: a zeroed bnobt, cntbt,
# refcountbt and rmapbt root; a zeroed leaf of a 2-level bnobt (free space
# fragmented by deleting every other of 1300 small files) and of the
# rmapbt; a zeroed cntbt root node; a refcount record's count off by one;
# an rmap record dropped; a free-space record extended over a used block; a block two files map
# without a refcount (it becomes shared: both keep what they showed, and
# a write to one leaves the other alone); leaked blocks (a free-space
# record dropped); a dropped inobt record (the chunk is found again from
# its OWN_INODES rmap record); a zeroed inobt root (every chunk of the AG
# from the OWN_INODES records); all four trees of every AG zeroed at
# once; a zeroed bnobt next to a corrupt bmbt block (the fork is rebuilt
# from the rmap) and next to a corrupt directory root node (the directory
# is rebuilt from its leaves).  Left alone: a zeroed bnobt next to a
# corrupt xattr tree block (exit 4, nothing rebuilt, twice).
. "$(dirname "$0")/../lib.sh"
common_setup
ED="$PY $SRCDIR/tests/helpers/imgedit.py"
AGT="$PY $SRCDIR/tests/helpers/agtree.py"

# --- a populated image ---------------------------------------------------
img=$T/pop.img m=$T/mnt
rlfs_mkfs "$img" -s 256M -a 4
rlfs_mount "$img" "$m"
mkdir -p "$m/d/sub" "$m/big"
for i in $(seq 1 60); do echo "file $i" >"$m/big/entry-with-a-long-name-$i"; done
echo aaaa >"$m/a"
echo bbbb >"$m/b"
head -c 700k /dev/urandom >"$m/src"
"$RLFS" io -f -c "reflink $m/src" "$m/clone1" >/dev/null || die "reflink failed"
"$RLFS" io -f -c "reflink $m/src" "$m/d/clone2" >/dev/null || die "reflink failed"
echo "private tail" >>"$m/clone1"
head -c 300k /dev/urandom >"$m/d/sub/data"
setfattr -n user.small -v hello "$m/a" || die "setfattr failed"
setfattr -n user.big -v "$(head -c 3000 /dev/zero | tr '\0' x)" "$m/d/sub/data" ||
	die "setfattr failed"
write_frag "$m/frag" 400 2                     # 200 extents: a bmbt
# free space in many pieces: a 2-level bnobt (503 records a 4 KiB leaf)
$PY - "$m/many" <<'PYEOF'
import os, sys
os.mkdir(sys.argv[1])
for i in range(1300):
    with open(os.path.join(sys.argv[1], "f%d" % i), "wb") as f:
        f.write(bytes([i % 251]) * 4096)
for i in range(0, 1300, 2):
    os.unlink(os.path.join(sys.argv[1], "f%d" % i))
PYEOF
(cd "$m" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$T/sums"
ino_a=$(stat -c %i "$m/a") ino_b=$(stat -c %i "$m/b") ino_frag=$(stat -c %i "$m/frag")
ino_big=$(stat -c %i "$m/big") ino_xattr=$(stat -c %i "$m/d/sub/data")
rlfs_umount "$m"
rlfs_fsck "$img"
cp --sparse=always "$img" "$T/pristine.img"
fresh() { cp --sparse=always "$T/pristine.img" "$T/case.img"; chmod 600 "$T/case.img"; }
# the AG holding the clones' shared extents (most refcount records)
ag_refc=$($AGT busiest "$img" refcbt)
ag_data=$($AGT busiest "$img" rmapbt)
ag_bno=$($AGT busiest "$img" bnobt)
read -r _ bno_levels _ < <($AGT root "$img" "$ag_bno" bnobt)
[ "$bno_levels" -ge 2 ] || die "no AG has a 2-level bnobt (AG $ag_bno: $bno_levels)"
log "refcount records in AG $ag_refc, rmapbt tallest in AG $ag_data, bnobt ($bno_levels levels) in AG $ag_bno"

# rebuilt LABEL: the repair cycle, then the mount checks
rebuilt() {
	fsck_rc -n "$T/case.img"
	[ $FRC = 4 ] || { cat "$T/fsck.out" >&2; die "$1: fsck -n exited $FRC, expected 4"; }
	grep -q "that repair corrects" "$T/fsck.out" ||
		{ cat "$T/fsck.out" >&2; die "$1: fsck -n does not say repair corrects it"; }
	grep -q "^AG [0-9]*: rebuilt" "$T/fsck.out" && die "$1: fsck -n rebuilt something"
	fsck_rc "$T/case.img"
	[ $FRC = 1 ] || { cat "$T/fsck.out" >&2; die "$1: fsck exited $FRC, expected 1"; }
	[ "$(grep -c '^AG [0-9]*: rebuilt bnobt (.* records), cntbt, inobt (.* records), refcountbt (.* records), rmapbt (.* records), AGFL (.* blocks) from the block maps$' "$T/fsck.out")" = 4 ] ||
		{ cat "$T/fsck.out" >&2; die "$1: not one rebuild line per AG"; }
	grep -q "corrected (.*AG trees.*); the filesystem now checks clean" "$T/fsck.out" ||
		{ cat "$T/fsck.out" >&2; die "$1: no 'corrected' line"; }
	log "$1: $(grep "AG $ag_refc: rebuilt" "$T/fsck.out")"
	fsck_rc -n "$T/case.img"
	[ $FRC = 0 ] || { cat "$T/fsck.out" >&2; die "$1: fsck -n after repair exited $FRC"; }
	fsck_rc "$T/case.img"
	[ $FRC = 0 ] || { cat "$T/fsck.out" >&2; die "$1: a second fsck exited $FRC (not idempotent)"; }
	rlfs_mount "$T/case.img" "$m" 2>"$T/mount.err"
	# written in place with a clean log: nothing to replay, no warning
	grep -q "log recovery\|has errors" "$T/mount.err" &&
		{ cat "$T/mount.err" >&2; die "$1: the mount after repair replays or warns"; }
	(cd "$m" && md5sum --quiet -c "$T/${2:-sums}") >&2 || die "$1: file contents changed"
	head -c 2M /dev/urandom >"$m/newfile"          # the mount can allocate
	cp "$m/src" "$m/d/copy"
	cmp -s "$m/src" "$m/d/copy" || die "$1: a copy after repair differs"
	rm "$m/clone1"                                 # and free shared blocks
	rlfs_umount "$m"
	rlfs_fsck "$T/case.img"
}

fresh
$AGT zero "$T/case.img" "$ag_data" bnobt >/dev/null
rebuilt "zeroed bnobt root"

fresh
$AGT zero "$T/case.img" "$ag_data" cntbt >/dev/null
rebuilt "zeroed cntbt root"

fresh
$AGT zero-leaf "$T/case.img" "$ag_bno" bnobt >/dev/null
rebuilt "zeroed bnobt leaf of a $bno_levels-level tree"

fresh
$AGT zero "$T/case.img" "$ag_bno" cntbt >/dev/null
rebuilt "zeroed cntbt root node"

fresh
$AGT refc-bump "$T/case.img" "$ag_refc" >/dev/null
rebuilt "refcount record off by one"

fresh
$AGT zero "$T/case.img" "$ag_refc" refcbt >/dev/null
rebuilt "zeroed refcountbt root"

fresh
$AGT zero "$T/case.img" "$ag_data" rmapbt >/dev/null
rebuilt "zeroed rmapbt root"

fresh
$AGT drop "$T/case.img" "$ag_data" rmapbt 3 >/dev/null
rebuilt "rmap record dropped"

fresh
$AGT zero-leaf "$T/case.img" "$ag_data" rmapbt >/dev/null
rebuilt "zeroed rmapbt leaf"

fresh
$AGT bno-extend-left "$T/case.img" "$ag_data" >/dev/null
rebuilt "free-space record over a used block"

fresh
$AGT drop "$T/case.img" "$ag_data" bnobt 0 >/dev/null
rebuilt "leaked blocks (a free-space record dropped)"

# everything at once: every free-space, refcount and rmap btree root of
# every AG zeroed
fresh
for ag in 0 1 2 3; do
	for tree in bnobt cntbt refcbt rmapbt; do
		$AGT zero "$T/case.img" $ag $tree >/dev/null
	done
done
rebuilt "every AG's bnobt, cntbt, refcountbt and rmapbt root zeroed"

# two files map one block without a refcount: it becomes shared
fresh
$ED crosslink "$T/case.img" "$ino_a" "$ino_b" >/dev/null
grep -v ' \./b$' "$T/sums" >"$T/sums.x"
echo "$(echo aaaa | md5sum | cut -d' ' -f1)  ./b" >>"$T/sums.x"
rebuilt "cross-linked block" sums.x
rlfs_mount "$T/case.img" "$m"
[ "$(cat "$m/b")" = aaaa ] || die "cross link: b lost a's block"
echo "changed" >"$m/b"                          # CoW: a keeps its data
[ "$(cat "$m/a")" = aaaa ] || die "cross link: a write to b changed a"
rm "$m/b"
[ "$(cat "$m/a")" = aaaa ] || die "cross link: removing b changed a"
rlfs_umount "$m"
rlfs_fsck "$T/case.img"

# a dropped inobt record (the chunk holding the root directory): found
# again from its OWN_INODES rmap record, free mask from the inodes' modes
fresh
$AGT drop "$T/case.img" 0 inobt 0 >/dev/null
rebuilt "dropped inobt record"

# a zeroed inobt root (AG 0: the root directory's chunk): every chunk of
# the AG from its OWN_INODES rmap records, the inodes' modes saying which
# are in use
fresh
$AGT zero "$T/case.img" 0 inobt >/dev/null
fsck_rc -n "$T/case.img"
grep -q "^AG 0 (inobt): damaged; its inode chunks are taken from the rmapbt" "$T/fsck.out" ||
	{ cat "$T/fsck.out" >&2; die "zeroed inobt: chunks not taken from the rmapbt"; }
rebuilt "zeroed inobt root"

# --- with a file's fork rebuilt from the rmap in the same run ----------------
# (a bmbt block of frag: phase 3b takes frag's blocks from the rmap, so the
# AG trees can be rebuilt around them and the fork is rebuilt after)
fresh
bmbt=$($ED inode-get "$T/case.img" "$ino_frag" root)
[ "$($ED inode-get "$T/case.img" "$ino_frag" format)" = 3 ] || die "frag has no bmbt"
$PY "$SRCDIR/tests/helpers/metascan.py" flip "$T/case.img" "$bmbt" 2000 1
$AGT zero "$T/case.img" "$ag_data" bnobt >/dev/null
fsck_rc -n "$T/case.img"
grep -q "inode $ino_frag: data fork unreadable; the rmap holds its 200 extents" "$T/fsck.out" ||
	{ cat "$T/fsck.out" >&2; die "bmbt + bnobt: frag's fork is not to be rebuilt from the rmap"; }
rebuilt "bmbt of frag + bnobt"

# --- with a directory rebuilt in the same run --------------------------------
# (big's b+tree root node: its old blocks are owned by nobody, the AG trees
# are rebuilt around them, then big from its leaves, which the rmap names:
# every name stays)
fresh
dirblk=$($ED inode-get "$T/case.img" "$ino_big" root)
$PY "$SRCDIR/tests/helpers/metascan.py" flip "$T/case.img" "$dirblk" 9 2
$AGT zero "$T/case.img" "$ag_data" bnobt >/dev/null
fsck_rc -n "$T/case.img"
grep -q "inode $ino_big (directory): b+tree damaged.*repair rebuilds it from the 60 entries" \
	"$T/fsck.out" || { cat "$T/fsck.out" >&2; die "dirbt + bnobt: big is not to be rebuilt"; }
rebuilt "dirbt + bnobt"

# --- left alone: AG tree damage next to damage the rebuild cannot fix -------
# (an xattr tree block: the blocks it points at, and so the owners of
# blocks, are unknown; a rebuild would hand those blocks out as free space)
fresh
xroot=$($ED inode-get "$T/case.img" "$ino_xattr" aroot)
[ "$($ED inode-get "$T/case.img" "$ino_xattr" aformat)" = 3 ] || die "d/sub/data has no xattr tree"
$PY "$SRCDIR/tests/helpers/metascan.py" flip "$T/case.img" "$xroot" 9 2
$AGT zero "$T/case.img" "$ag_data" bnobt >/dev/null
fsck_rc "$T/case.img"
[ $FRC = 4 ] || { cat "$T/fsck.out" >&2; die "attrbt + bnobt: fsck exited $FRC, expected 4"; }
grep -q "^AG [0-9]*: rebuilt" "$T/fsck.out" && die "attrbt + bnobt: something was rebuilt"
grep -q "left uncorrected" "$T/fsck.out" || die "attrbt + bnobt: no 'left uncorrected' line"
log "attrbt + bnobt damage: $(grep 'left uncorrected' "$T/fsck.out" | cut -c1-120)..."
fsck_rc "$T/case.img"
[ $FRC = 4 ] || die "attrbt + bnobt: second fsck exited $FRC, expected 4"

cmp -s "$img" "$T/pristine.img" || die "the pristine image changed"
log OK

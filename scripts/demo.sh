#!/bin/bash
# reflinkfs demo: copy a real directory tree into a reflinkfs image through
# a FUSE mount and prove it comes back byte for byte.
#
#   scripts/demo.sh BUILD [DIR]      (DIR defaults to /usr/share/doc)
#
# Creates a sparse image sized from the tree (3x its size + 256 MiB), runs
# mkfs, mounts it, copies DIR with cp -a, prints df and file counts,
# unmounts, runs fsck, remounts, verifies the tree with diff -r; then clones
# the tree inside the mount with cp -a (shares blocks: df barely grows),
# rewrites part of the largest cloned file, shows the original unchanged
# (cmp) and the rest of the clone still shared (reflinkfs io -c fiemap),
# sets a cowextsize on a directory, rewrites every other block of a file
# cloned into it and shows its extent count against the 512 writes (the
# CoW fork's regions and gap fill), rewrites 10000 unaligned bytes of the
# clone once more under -o dax (copy-around); updates a small file atomically
# with reflinkfs io (startupdate, pwrite into the temporary clone,
# commitupdate) and shows a second update whose file is appended to before
# commitupdate fail with EBUSY, the append kept, then both again with the
# XFS-ioctl example program docs/examples/atomic-update.c through the
# LD_PRELOAD shim; runs fsck again; then the
# crash step: remounts, takes sha256 sums of the
# tree and its clone, starts a second copy (cp -a DIR copy2) and kills the
# daemon with kill -9 in the middle of it, remounts (log recovery runs and
# the demo prints how many checkpoints and blocks it replayed), verifies the
# tree and the clone against the sums byte for byte, unmounts and runs fsck
# (clean); prints a summary, and cleans up (unmount, remove the image)
# unless KEEP=1, also when a step fails.
# After the clone it also prints the reverse map (reflinkfs fsmap: who owns
# every block, how many blocks are shared) and draws it into an SVG picture
# that is kept (SVG, default /tmp/reflinkfs-demo-map.svg).  Then the repair
# step: a fragmented file (1,000 extents) and its clone; the clone's block
# map (bmbt) is zeroed on the image with dd at the sectors fsmap lists as
# its "data extent map", a read of it fails, fsck rebuilds the fork from
# the rmap (exit 1, then clean) and both files read back byte for byte,
# still sharing their blocks.  Last, the dedupe step: the tree is copied
# into the mount a second time from outside (nothing shared), `reflinkfs
# dedupe -r` runs over both copies (progress bar on a terminal), df before
# and after, fsck clean, both copies byte-identical to the source.
# Environment: IMG (image path, default /tmp/reflinkfs-demo.img), MNT, SVG.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -eu -o pipefail

BUILD=${1:-build}
SRC=${2:-${DIR:-/usr/share/doc}}
RLFS=$(cd "$BUILD" && pwd)/reflinkfs
IMG=${IMG:-/tmp/reflinkfs-demo.img}
MNT=${MNT:-/tmp/reflinkfs-demo.mnt}
SVG=${SVG:-/tmp/reflinkfs-demo-map.svg}

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

[ -x "$RLFS" ] || fail "no reflinkfs binary in $BUILD (run make build)"
[ -d "$SRC" ] || fail "no such directory: $SRC"
[ "$(id -u)" = 0 ] || fail "run as root (FUSE mount)"
[ -c /dev/fuse ] || fail "/dev/fuse missing (modprobe fuse)"
SRC=$(cd "$SRC" && pwd)

mounted=0
cp_pid=""
upd_pid=""
cleanup() {
	local rc=$?
	set +e
	if [ -n "$cp_pid" ]; then
		kill "$cp_pid" 2>/dev/null
		wait "$cp_pid" 2>/dev/null
	fi
	if [ -n "$upd_pid" ]; then
		kill "$upd_pid" 2>/dev/null
		wait "$upd_pid" 2>/dev/null
	fi
	if [ $mounted = 1 ] && mountpoint -q "$MNT"; then
		# waits while the daemon writes the image back, however long
		"$RLFS" umount "$MNT" || umount -l "$MNT"
	elif [ $mounted = dead ]; then
		# the killed daemon's mount
		fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	fi
	if [ "${KEEP:-0}" != 1 ]; then
		rm -f "$IMG" "$IMG.fiemap" "$IMG.sha256" "$IMG.mount.log" "$IMG.frag.sha256" "$IMG.bmbt" "$IMG.cat.err" "$IMG.cmds" "$IMG.io.out" "$IMG.au.out"
		rmdir "$MNT" 2>/dev/null
	else
		echo "(KEEP=1: image kept at $IMG)"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if mountpoint -q "$MNT" 2>/dev/null; then fail "$MNT is already a mount point"; fi
src_kb=$(du -sk "$SRC" | cut -f1)
src_files=$(find "$SRC" -type f | wc -l)
src_dirs=$(find "$SRC" -type d | wc -l)
src_links=$(find "$SRC" -type l | wc -l)
size_mb=$((src_kb * 3 / 1024 + 256))

say "source: $SRC ($((src_kb / 1024)) MiB, $src_files files, $src_dirs directories, $src_links symlinks)"
say "mkfs: sparse image $IMG of $size_mb MiB"
rm -f "$IMG"
"$RLFS" mkfs -s "${size_mb}M" "$IMG"
mkdir -p "$MNT"

say "mount $IMG on $MNT"
"$RLFS" mount "$IMG" "$MNT"
mounted=1
df -h "$MNT"

say "cp -a $SRC -> $MNT/tree"
t0=$(date +%s.%N)
cp -a "$SRC" "$MNT/tree"
sync
t1=$(date +%s.%N)
copy_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')

say "after copy"
df -h "$MNT"
df -i "$MNT"
m_files=$(find "$MNT/tree" -type f | wc -l)
m_dirs=$(find "$MNT/tree" -type d | wc -l)
m_links=$(find "$MNT/tree" -type l | wc -l)
echo "in the mount: $m_files files, $m_dirs directories, $m_links symlinks"
[ "$m_files" = "$src_files" ] && [ "$m_dirs" = "$src_dirs" ] && [ "$m_links" = "$src_links" ] ||
	fail "file counts differ from the source"

say "unmount"
# returns once the daemon has written everything back and closed the image
"$RLFS" umount "$MNT"
mounted=0

say "fsck $IMG"
rc=0
"$RLFS" fsck -n "$IMG" || rc=$?
[ $rc = 0 ] || fail "fsck exited $rc (expected 0 = clean)"
echo "fsck: clean"

say "remount and verify byte for byte (diff -r)"
"$RLFS" mount "$IMG" "$MNT"
mounted=1
t0=$(date +%s.%N)
diff -r --no-dereference "$SRC" "$MNT/tree" || fail "diff -r found differences after remount"
t1=$(date +%s.%N)
verify_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
# metadata too: types, modes, owners, sizes, link targets
fp() { (cd "$1" && find . -printf '%y %m %U:%G %s %p -> %l\n' | sed 's/^d \([0-7]*\) \([0-9:]*\) [0-9]* /d \1 \2 - /' | LC_ALL=C sort); }
diff <(fp "$SRC") <(fp "$MNT/tree") >/dev/null || fail "metadata (modes/owners/sizes/links) differ"
img_kb=$(du -k "$IMG" | cut -f1)
used_kb=$(df -P -k "$MNT" | awk 'NR==2 {print $3}')

say "clone the tree inside the mount: cp -a $MNT/tree $MNT/clone (blocks are shared, not copied)"
t0=$(date +%s.%N)
cp -a "$MNT/tree" "$MNT/clone"
sync -f "$MNT"
t1=$(date +%s.%N)
clone_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
used2_kb=$(df -P -k "$MNT" | awk 'NR==2 {print $3}')
df -h "$MNT"
grow_kb=$((used2_kb - used_kb))
echo "df used: $((used_kb / 1024)) MiB after the copy, $((used2_kb / 1024)) MiB after the clone:" \
	"+$grow_kb KiB for a $((src_kb / 1024)) MiB tree"
diff -r --no-dereference "$MNT/tree" "$MNT/clone" || fail "the cloned tree differs"
[ "$grow_kb" -lt $((src_kb / 4 + 1024)) ] || fail "df grew by $grow_kb KiB: the clone did not share blocks"

# the largest file of the clone: rewrite 4 blocks in its middle
big=$(cd "$MNT/clone" && find . -type f -printf '%s %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-)
big=${big#./}
big_size=$(stat -c %s "$MNT/clone/$big")
[ "$big_size" -ge $((3 * 16384)) ] || fail "no file of at least 48 KiB in the tree to rewrite"
rw_blk=$((big_size / 4096 / 2 - 2))
say "rewrite 16 KiB at block $rw_blk of clone/$big ($big_size bytes)"
dd if=/dev/urandom of="$MNT/clone/$big" bs=4096 seek="$rw_blk" count=4 conv=notrunc,fsync status=none
cmp "$SRC/$big" "$MNT/tree/$big" && echo "original tree/$big: unchanged (cmp with $SRC/$big)" ||
	fail "the original changed when its clone was rewritten"
cmp -s "$MNT/tree/$big" "$MNT/clone/$big" && fail "the rewrite of the clone did not happen"
cmp -n $((rw_blk * 4096)) "$MNT/tree/$big" "$MNT/clone/$big" &&
	cmp -i $(((rw_blk + 4) * 4096)) "$MNT/tree/$big" "$MNT/clone/$big" &&
	echo "clone/$big: differs from the original only in the 16 KiB rewritten" ||
	fail "the clone differs outside the rewritten range"
echo "extent map of clone/$big (reflinkfs io -c fiemap; 512-byte units; blocks $rw_blk..$((rw_blk + 3)) = sectors $((rw_blk * 8))..$(((rw_blk + 4) * 8 - 1))):"
"$RLFS" io -r -c "fiemap -v" "$MNT/clone/$big" | tee "$IMG.fiemap"
# every extent outside the rewritten sectors is shared, inside it is not
# (the sectors of "N: [a..b]: ..." are the numbers of $2; portable awk:
# gawk rejects a bracket expression like /[][.:]+/ that mawk accepts)
awk -v lo=$((rw_blk * 8)) -v hi=$(((rw_blk + 4) * 8 - 1)) '/^ *[0-9]+:/ {
	s = $2; gsub(/[^0-9]+/, " ", s); split(s, r, " "); a = r[1] + 0; b = r[2] + 0
	sh = ($0 ~ /shared/)
	if (b < lo || a > hi) { if (!sh) bad = 1 } else if (sh) bad = 1
	n++
} END { exit (bad || !n) }' "$IMG.fiemap" || fail "fiemap: sharing is not as expected"
rm -f "$IMG.fiemap"
echo "fiemap: everything outside the rewritten range is still shared"

# --- the CoW fork: copy-on-write regions and the gap fill -------------
say "copy-on-write regions: cowextsize 128 KiB on a directory; a 4 MiB file cloned into it; every other 4 KiB block of the clone rewritten (512 writes)"
mkdir "$MNT/cowdir"
"$RLFS" io -c "cowextsize 128k" "$MNT/cowdir" >/dev/null || fail "cowextsize failed"
"$RLFS" io -c cowextsize "$MNT/cowdir"
dd if=/dev/urandom of="$MNT/cowsrc" bs=1M count=4 conv=fsync status=none
"$RLFS" io -f -c "reflink $MNT/cowsrc" "$MNT/cowdir/clone" >/dev/null || fail "reflink failed"
"$RLFS" io -c cowextsize "$MNT/cowdir/clone"
for b in $(seq 0 2 1023); do echo "pwrite -S 9 $((b * 4096)) 4096"; done |
	"$RLFS" io -f "$MNT/cowdir/clone" >/dev/null
sync "$MNT/cowdir/clone"
cow_ext=$("$RLFS" io -r -c stat "$MNT/cowdir/clone" | sed -n 's/^extents.count = //p')
cow_sh=$("$RLFS" io -r -c stat "$MNT/cowdir/clone" | sed -n 's/^extents.shared = //p')
echo "clone: $cow_ext extent(s) ($cow_sh shared) after 512 scattered writes; block by block (and on XFS) every rewritten block would sit between two shared ones: 1,024 extents"
echo "(each write stages its 32-block region contiguously, later writes in the region land next to it, and the one old block between two rewrites is copied with them: -o cowfill)"
[ "${cow_ext:-9999}" -le 64 ] || fail "the clone has $cow_ext extents after the scattered rewrite"
head -c 4096 /dev/zero | tr '\0' '\011' >"$IMG.nines"
for b in 0 1 510 511 1022 1023; do
	if [ $((b % 2)) = 0 ]; then
		cmp -s -i "0:$((b * 4096))" -n 4096 "$IMG.nines" "$MNT/cowdir/clone" ||
			fail "block $b of the clone does not hold the rewrite"
	else
		cmp -s -i $((b * 4096)) -n 4096 "$MNT/cowsrc" "$MNT/cowdir/clone" ||
			fail "block $b of the clone (not rewritten) differs from the source"
	fi
done
rm -f "$IMG.nines"
echo "contents: even blocks rewritten, odd blocks as in the source (sampled)"

# returns once the daemon has written everything back and closed the image
"$RLFS" umount "$MNT"
mounted=0

# --- the CoW rewrite once more under -o dax (direct access) -----------
say "the CoW rewrite once more under -o dax: 10000 bytes at byte 1000 of clone/$big (shared blocks 0-2); copy-around copies only the 1000 + 1288 bytes of the edge blocks the write does not cover"
"$RLFS" mount -o dax "$IMG" "$MNT" || fail "mount -o dax failed"
mounted=1
head -c 10000 /dev/urandom >"$IMG.dax"
dd if="$IMG.dax" of="$MNT/clone/$big" bs=10000 count=1 seek=1000 oflag=seek_bytes conv=notrunc,fsync status=none ||
	fail "the write under -o dax failed"
cmp "$SRC/$big" "$MNT/tree/$big" >/dev/null || fail "under -o dax the original changed when its clone was rewritten"
cmp -s -i 0:1000 -n 10000 "$IMG.dax" "$MNT/clone/$big" || fail "under -o dax the clone does not hold the write"
cmp -n 1000 "$MNT/tree/$big" "$MNT/clone/$big" && cmp -i 11000 -n $((3 * 4096 - 11000)) "$MNT/tree/$big" "$MNT/clone/$big" ||
	fail "under -o dax the edge blocks lost their old bytes"
echo "under -o dax: original unchanged, the clone holds the write, the rest of its edge blocks as before"
rm -f "$IMG.dax"
"$RLFS" umount "$MNT"
mounted=0

# --- atomic file update: startupdate / commitupdate, and EBUSY ----------
say "atomic file update (XFS_IOC_START_COMMIT / XFS_IOC_COMMIT_RANGE): the new version is written into a clone of the file and swapped in at once; a change of the file meanwhile makes the commit fail"
"$RLFS" mount "$IMG" "$MNT"
mounted=1
printf 'version 1\ncolor = blue\n' >"$MNT/config.txt"
echo "config.txt: $(tr '\n' ' ' <"$MNT/config.txt")"
# 1. nobody else touches the file: startupdate clones it into a temporary
# file, pwrite writes "2" (0x32) over the "1" of "version 1" there, and
# commitupdate exchanges the two files' contents in one step
echo "\$ reflinkfs io -c startupdate -c \"pwrite -S 0x32 8 1\" -c commitupdate config.txt"
"$RLFS" io -c startupdate -c "pwrite -S 0x32 8 1" -c "commitupdate -q" "$MNT/config.txt" ||
	fail "startupdate/commitupdate failed"
[ "$(head -n 1 "$MNT/config.txt")" = "version 2" ] || fail "the committed update is not in config.txt"
echo "config.txt: $(tr '\n' ' ' <"$MNT/config.txt")  <- the new version, committed"
# 2. the same update, but the file is appended to after startupdate: the
# commands go to reflinkfs io through a pipe, and the append happens once
# io has written into its temporary file (its "wrote" line)
echo "second update: startupdate and pwrite \"3\" into the temporary file; meanwhile another program appends to config.txt; then commitupdate:"
rm -f "$IMG.cmds"
mkfifo "$IMG.cmds"
"$RLFS" io "$MNT/config.txt" <"$IMG.cmds" >"$IMG.io.out" 2>&1 &
upd_pid=$!
exec {upd_in}>"$IMG.cmds"
echo startupdate >&$upd_in
echo "pwrite -S 0x33 8 1" >&$upd_in
for _ in $(seq 1 600); do grep -q '^wrote' "$IMG.io.out" && break; sleep 0.1; done
grep -q '^wrote' "$IMG.io.out" || fail "reflinkfs io did not answer the pwrite"
echo "  io: $(grep '^wrote' "$IMG.io.out")"
printf 'edited meanwhile\n' >>"$MNT/config.txt"
echo "  (another program appends \"edited meanwhile\" to config.txt)"
echo commitupdate >&$upd_in
exec {upd_in}>&-
rc=0
wait "$upd_pid" || rc=$?
upd_pid=""
grep -v '^wrote' "$IMG.io.out" | sed 's/^/  io: /'
grep -q "committing update: Device or resource busy" "$IMG.io.out" ||
	fail "commitupdate after a concurrent change did not fail with EBUSY"
[ $rc = 1 ] || fail "commitupdate after a concurrent change exited $rc (expected 1, EBUSY)"
echo "commitupdate refused: Device or resource busy (EBUSY), nothing exchanged"
[ "$(head -n 1 "$MNT/config.txt")" = "version 2" ] && grep -qx "edited meanwhile" "$MNT/config.txt" ||
	fail "after the refused commit config.txt is not version 2 with the concurrent change"
echo "config.txt: $(tr '\n' ' ' <"$MNT/config.txt")  <- the concurrent change kept, the staged version 3 dropped"
rm -f "$IMG.cmds" "$IMG.io.out"
# 3. the same two updates by a program written for XFS's ioctls
# (docs/examples/atomic-update.c: START_COMMIT, FICLONE into a temporary
# file, pwrite, COMMIT_RANGE), unmodified, through the LD_PRELOAD shim
SHIM=$(cd "$BUILD" && pwd)/libreflinkfs-preload.so
AU=$(cd "$BUILD" && pwd)/atomic-update
[ -f "$SHIM" ] && [ -x "$AU" ] || fail "no shim or atomic-update example in $BUILD (run make build)"
echo "the same with a program written for XFS (docs/examples/atomic-update.c), through the shim:"
echo "\$ LD_PRELOAD=libreflinkfs-preload.so atomic-update config.txt 8 4"
LD_PRELOAD=$SHIM "$AU" "$MNT/config.txt" 8 4 | sed 's/^/  /' || fail "atomic-update through the shim failed"
[ "$(head -n 1 "$MNT/config.txt")" = "version 4" ] || fail "atomic-update's commit is not in config.txt"
echo "\$ LD_PRELOAD=libreflinkfs-preload.so atomic-update --wait config.txt 8 5   (config.txt appended to while it waits)"
rc=0
rm -f "$IMG.au.out"
{ for _ in $(seq 1 600); do grep -q '^staged' "$IMG.au.out" 2>/dev/null && break; sleep 0.1; done
  printf 'edited again\n' >>"$MNT/config.txt"; echo go; } |
	LD_PRELOAD=$SHIM "$AU" --wait "$MNT/config.txt" 8 5 >"$IMG.au.out" 2>&1 || rc=$?
sed 's/^/  /' "$IMG.au.out"
[ $rc = 3 ] || fail "atomic-update after a concurrent change exited $rc (expected 3, EBUSY)"
[ "$(head -n 1 "$MNT/config.txt")" = "version 4" ] && grep -qx "edited again" "$MNT/config.txt" ||
	fail "after the refused commit config.txt is not version 4 with the concurrent change"
echo "config.txt: $(tr '\n' ' ' <"$MNT/config.txt")"
rm -f "$IMG.au.out"
"$RLFS" umount "$MNT"
mounted=0

say "fsck $IMG (refcounts against the mappings of both trees)"
rc=0
"$RLFS" fsck -n "$IMG" || rc=$?
[ $rc = 0 ] || fail "fsck after the clone exited $rc (expected 0 = clean)"
echo "fsck: clean"

# --- the reverse map: who owns every block ----------------------------
say "space map (reverse-mapping btree): reflinkfs fsmap; picture in $SVG"
"$RLFS" fsmap -v "$IMG" >"$IMG.fsmap" || fail "fsmap failed"
n_rec=$(grep -c '^ *[0-9]*:' "$IMG.fsmap") || true
head -6 "$IMG.fsmap"
echo "   ... ($n_rec records in all)"
rm -f "$IMG.fsmap"
"$RLFS" fsmap --svg "$SVG" "$IMG" || fail "fsmap --svg failed"
# the picture's totals per class (blocks), as the legend shows them
sed -n 's/.*<rlfs:total class="\([a-z0-9]*\)" blocks="\([0-9]*\)".*/\1 \2/p' "$SVG" |
	awk '{ printf "  %-12s %10d blocks\n", $1, $2; if ($1 ~ /^shared/) sh += $2 } END { printf "  (%d blocks shared by two or more files)\n", sh }' |
	tee "$IMG.classes"
shared_blocks=$(awk '/^  \(/ { gsub(/[(]/, ""); print $1 }' "$IMG.classes")
rm -f "$IMG.classes"
[ "${shared_blocks:-0}" -gt 0 ] || fail "the space map shows no shared blocks after the clone"

# --- damage and repair: a destroyed bmbt comes back from the rmap -------
say "repair from the reverse map: a fragmented file and its clone; zero the clone's block map (bmbt) on disk, fsck rebuilds it from the rmap"
"$RLFS" mount "$IMG" "$MNT"
mounted=1
# 1,000 extents: every other 4 KiB block of an 8 MiB file, each its own byte
for i in $(seq 0 2 1999); do echo "pwrite -S $((i % 251)) $((i * 4096)) 4096"; done |
	"$RLFS" io -f "$MNT/frag" >/dev/null
"$RLFS" io -f -c "reflink $MNT/frag" "$MNT/frag-clone" >/dev/null   # shares every block
(cd "$MNT" && sha256sum frag frag-clone) >"$IMG.frag.sha256"
frag_ino=$(stat -c %i "$MNT/frag-clone")
frag_ext=$("$RLFS" io -r -c stat "$MNT/frag-clone" | sed -n 's/^extents.count = //p')
frag_shared=$("$RLFS" io -r -c stat "$MNT/frag-clone" | sed -n 's/^extents.shared = //p')
echo "frag-clone (inode $frag_ino): $frag_ext extents, $frag_shared shared with frag"
[ "${frag_shared:-0}" -gt 0 ] || fail "the clone of frag shares no extents"
"$RLFS" umount "$MNT"
mounted=0
# the documented way to find a file's block map: its "data extent map"
# records in fsmap (512-byte units), then zero them with dd
"$RLFS" fsmap "$IMG" | grep "inode $frag_ino data extent map" >"$IMG.bmbt" || true
bmbt_blocks=0
while read -r _ _ range _; do
	range=${range#[}; range=${range%]:}
	lo=${range%..*} hi=${range#*..}
	echo "  dd if=/dev/zero of=$IMG bs=512 seek=$lo count=$((hi - lo + 1)) conv=notrunc"
	dd if=/dev/zero of="$IMG" bs=512 seek="$lo" count=$((hi - lo + 1)) conv=notrunc status=none
	bmbt_blocks=$((bmbt_blocks + (hi - lo + 1) / 8))
done <"$IMG.bmbt"
rm -f "$IMG.bmbt"
[ "$bmbt_blocks" -gt 0 ] || fail "fsmap shows no block map (bmbt) blocks for frag-clone"
echo "zeroed all $bmbt_blocks bmbt blocks of frag-clone"
"$RLFS" mount -o ro "$IMG" "$MNT" 2>/dev/null
mounted=1
rc=0; cat "$MNT/frag-clone" >/dev/null 2>"$IMG.cat.err" || rc=$?
[ $rc != 0 ] || fail "frag-clone still reads with its bmbt zeroed"
echo "read of frag-clone now: $(sed 's/^cat: //' "$IMG.cat.err" | head -n 1)"
rm -f "$IMG.cat.err"
"$RLFS" umount "$MNT" 2>/dev/null
mounted=0
rc=0
"$RLFS" fsck "$IMG" 2>/dev/null || rc=$?
[ $rc = 1 ] || fail "fsck (repair) exited $rc (expected 1 = corrected)"
rc=0
"$RLFS" fsck -n "$IMG" >/dev/null 2>&1 || rc=$?
[ $rc = 0 ] || fail "fsck -n after the repair exited $rc (expected 0 = clean)"
"$RLFS" mount "$IMG" "$MNT"
mounted=1
(cd "$MNT" && sha256sum -c "$IMG.frag.sha256") || fail "frag or frag-clone differ after the repair"
frag_shared2=$("$RLFS" io -r -c stat "$MNT/frag-clone" | sed -n 's/^extents.shared = //p')
[ "$frag_shared2" = "$frag_shared" ] || fail "frag-clone shares $frag_shared2 extents after repair, $frag_shared before"
echo "frag-clone restored byte for byte from the rmap, $frag_shared2 extents still shared with frag"
rm -f "$MNT/frag" "$MNT/frag-clone" "$IMG.frag.sha256"
"$RLFS" umount "$MNT"
mounted=0

# --- crash: kill -9 of the daemon in the middle of a second copy --------
# pid of the daemon holding the image's lock (its flock in /proc/locks)
daemon_pid() {
	local key
	key=$(stat -L -c '%Hd %Ld %i' "$IMG") || return 0
	# shellcheck disable=SC2086
	key=$(printf '%02x:%02x:%s' $key)
	awk -v k="$key" '$2 == "FLOCK" && $6 == k {print $5; exit}' /proc/locks
}

say "crash: remount, take sha256 sums of tree and clone, kill -9 the daemon during a second copy"
"$RLFS" mount "$IMG" "$MNT"
mounted=1
(cd "$MNT" && find tree clone -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) \
	>"$IMG.sha256"
n_sums=$(wc -l <"$IMG.sha256")
echo "sha256 of $n_sums files (tree and clone) taken"
pid=$(daemon_pid)
[ -n "$pid" ] && [ -e "/proc/$pid" ] || fail "cannot find the daemon serving $IMG (no flock in /proc/locks)"
t0=$(date +%s.%N)
cp -a "$SRC" "$MNT/copy2" 2>/dev/null &
cp_pid=$!
# kill after about a third of the first copy's time, fsyncing the new
# directory on the way (those checkpoints are what recovery replays)
kill_after=$(awk -v c="$copy_s" 'BEGIN {t = c / 3; if (t < 0.3) t = 0.3; if (t > 20) t = 20; printf "%.1f", t}')
while awk -v a="$t0" -v b="$(date +%s.%N)" -v k="$kill_after" 'BEGIN {exit !(b - a < k)}'; do
	sleep 0.2
	sync "$MNT/copy2" 2>/dev/null || true
done
if kill -0 "$cp_pid" 2>/dev/null; then
	during="during the copy"
else
	during="(the copy had already finished)"
fi
n_copied=$(find "$MNT/copy2" -type f 2>/dev/null | wc -l) || true
kill -9 "$pid"
mounted=dead
echo "kill -9 $pid $during, $n_copied of $src_files files in copy2 so far"
wait "$cp_pid" 2>/dev/null || true
cp_pid=""
for _ in $(seq 1 100); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
[ ! -e "/proc/$pid" ] || fail "daemon $pid survived kill -9"
fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
mounted=0
flock -w 60 "$IMG" true || fail "the image is still locked after the daemon died"

say "remount after the crash: log recovery"
rc=0
"$RLFS" mount "$IMG" "$MNT" 2>"$IMG.mount.log" || rc=$?
[ $rc = 0 ] || { cat "$IMG.mount.log" >&2; fail "mount after the crash exited $rc"; }
grep -v 'log recovery: replayed' "$IMG.mount.log" >&2 || true
mounted=1
recovery=$(grep -o 'log recovery: replayed.*' "$IMG.mount.log" | head -n 1) || true
if [ -n "$recovery" ]; then
	echo "$recovery"
else
	recovery="log recovery: nothing to replay"
	echo "$recovery (every change was already in place)"
fi
n_copy2=$(find "$MNT/copy2" -type f 2>/dev/null | wc -l) || true
echo "copy2 after recovery: $n_copy2 files (what was fsync'd or pushed to the log before the kill)"

say "verify tree and clone byte for byte against the sums taken before the crash"
(cd "$MNT" && sha256sum --quiet -c "$IMG.sha256") || fail "tree or clone differ after the crash"
echo "sha256: all $n_sums files of tree and clone intact"
"$RLFS" umount "$MNT"
mounted=0

say "fsck $IMG after the crash"
rc=0
"$RLFS" fsck -n "$IMG" || rc=$?
[ $rc = 0 ] || fail "fsck after the crash exited $rc (expected 0 = clean)"
echo "fsck: clean"

# --- offline dedupe: a second copy from outside, shared after the fact --
say "dedupe: copy $SRC into the mount again (nothing shared), then reflinkfs dedupe -r over both copies"
"$RLFS" mount "$IMG" "$MNT"
mounted=1
rm -rf "$MNT/copy2"
cp -a "$SRC" "$MNT/dup"
sync -f "$MNT"
before_kb=$(df -Pk "$MNT" | awk 'NR == 2 {print $3}')
echo "df before dedupe: $before_kb KiB used"
# the progress bar shows on a terminal (stderr); the summary on stdout
"$RLFS" dedupe -r "$MNT/tree" "$MNT/dup" | tee "$IMG.dedupe.txt" || fail "reflinkfs dedupe exited $?"
sync -f "$MNT"
after_kb=$(df -Pk "$MNT" | awk 'NR == 2 {print $3}')
dedupe_shared=$(awk '/^shared now:/ {gsub(/[()]/, "", $(NF-1)); print $(NF-1)}' "$IMG.dedupe.txt")
freed_kb=$((before_kb - after_kb))
echo "df after dedupe: $after_kb KiB used ($freed_kb KiB freed; dedupe shared $dedupe_shared bytes)"
[ "${dedupe_shared:-0}" -gt 0 ] || fail "dedupe shared nothing between two copies of $SRC"
[ "$freed_kb" -gt 0 ] || fail "dedupe freed no space (df $before_kb -> $after_kb KiB)"
rm -f "$IMG.dedupe.txt"
"$RLFS" umount "$MNT"
mounted=0
rc=0
"$RLFS" fsck -n "$IMG" || rc=$?
[ $rc = 0 ] || fail "fsck after dedupe exited $rc (expected 0 = clean)"
echo "fsck: clean"
"$RLFS" mount "$IMG" "$MNT"
mounted=1
diff -r --no-dereference "$SRC" "$MNT/tree" >/dev/null || fail "tree differs from $SRC after dedupe"
diff -r --no-dereference "$SRC" "$MNT/dup" >/dev/null || fail "dup differs from $SRC after dedupe"
echo "tree and dup byte-identical to $SRC after dedupe"
"$RLFS" umount "$MNT"
mounted=0

say "summary"
printf '  tree           %s\n' "$SRC"
printf '  copied         %d MiB: %d files, %d directories, %d symlinks\n' $((src_kb / 1024)) "$src_files" "$src_dirs" "$src_links"
printf '  copy time      %.1f s (cp -a + sync through FUSE)\n' "$copy_s"
printf '  verify time    %.1f s (diff -r after unmount, fsck, remount)\n' "$verify_s"
printf '  image          %d MiB apparent, %d MiB allocated (sparse), %d MiB used per df\n' "$size_mb" $((img_kb / 1024)) $((used_kb / 1024))
printf '  clone          cp -a inside the mount in %.1f s: df +%d KiB (%d MiB tree), blocks shared\n' "$clone_s" "$grow_kb" $((src_kb / 1024))
printf '  copy-on-write  16 KiB rewritten in clone/%s: original unchanged, rest still shared\n' "$big"
printf '  CoW regions    512 scattered 4 KiB rewrites of a cloned 4 MiB file: %d extent(s), not 1,024 (cowextsize 128 KiB, gap fill)\n' "$cow_ext"
printf '  atomic update  startupdate + pwrite + commitupdate: config.txt replaced in one step; with a change meanwhile the commit failed with EBUSY and the change was kept\n'
printf '  crash          kill -9 %s (%d files in copy2); %s\n' "$during" "$n_copied" "${recovery#log recovery: }"
printf '  after crash    tree and clone intact (sha256 of %d files), copy2 has %d files\n' "$n_sums" "$n_copy2"
printf '  space map      %s: %d blocks shared by two or more files\n' "$SVG" "$shared_blocks"
printf '  repair         bmbt of a %d-extent clone zeroed (%d blocks): fsck rebuilt it from the rmap, byte for byte\n' "$frag_ext" "$bmbt_blocks"
printf '  dedupe         a second copy from outside: reflinkfs dedupe shared %s bytes, df -%d KiB, both copies byte-identical\n' "$dedupe_shared" "$freed_kb"
printf '  fsck           clean (after the copy, after the clone, after the crash, after dedupe)\n'
printf '  result         OK: byte-identical after unmount, fsck and remount, and after a kill -9 of the daemon\n'

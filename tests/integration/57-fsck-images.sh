#!/bin/bash
# 57-fsck-images: fsck's exact output on small damaged images, in the
# style of e2fsprogs' f_* tests (tests/fsck-images/README).  One fixed
# image (fixed mkfs geometry, files of fixed sizes and contents written
# and synced one at a time, so every block and inode number is the same on
# every run); for each case a copy gets ONE kind of damage (function
# damage: a zeroed bmbt block, a refcount record off by one, a free-space
# record over a used block, a block two files map without a refcount, a
# lost inobt record, a zeroed inobt, a zeroed rmapbt leaf, a directory
# entry naming a free inode or an inode in no chunk, a damaged inode core
# of a file and of a directory, a lost file, a lost directory, the one
# b+tree leaf of a directory zeroed, wrong refcount/rmap btree block counts
# in an AG header), then:
#   fsck -n      stdout must equal tests/fsck-images/CASE.expect.1
#                (the image path replaced by IMAGE; exit 4);
#   fsck         must exit 1 and say "corrected";
#   fsck -n      stdout must equal CASE.expect.2 (clean, exit 0);
#   mount        every regular file's contents, by inode number, as before
#                the damage (except what a case changes on purpose: a
#                cleared file is gone, a cross-linked one shows the shared
#                block), and the files a case sends to /lost+found there.
# Then a second lost file goes into the /lost+found the lost-file case
# made.  RLFS_BLESS=1 writes the expect files instead of comparing (then
# read them: they are the test).
. "$(dirname "$0")/../lib.sh"
common_setup
ED="$PY $SRCDIR/tests/helpers/imgedit.py"
AGT="$PY $SRCDIR/tests/helpers/agtree.py"
DIR=$SRCDIR/tests/fsck-images

# --- the image -------------------------------------------------------------
img=$T/base.img m=$T/mnt
rlfs_mkfs "$img" -s 64M -a 2 -l size=1M
rlfs_mount "$img" "$m"
# (every file synced before the next one: the page cache's writeback order
# varies, and with it the blocks a file gets)
put() { printf '%s\n' "$2" >"$m/$1" && sync "$m/$1" || die "writing $1 failed"; }
mkdir "$m/d"
mkdir "$m/d/sub"
put d/f1 one
put d/f2 two
ln "$m/d/f2" "$m/d/f2link"
put d/sub/x three
put a aaaa
put b bbbb
write_frag "$m/frag" 600 2 0 1                 # 300 extents: a bmbt
"$RLFS" io -f -c "pwrite -S 0x61 0 256k" -c fsync "$m/src" >/dev/null || die "pwrite failed"
"$RLFS" io -f -c "reflink $m/src" "$m/clone" >/dev/null || die "reflink failed"
sync
# "INO MD5" of every regular file, one line per inode
sums() { (cd "$1" && find . -type f -exec stat -c '%i %n' {} + | while read -r ino name; do
	echo "$ino $(md5sum <"$name" | cut -d' ' -f1)"; done) | LC_ALL=C sort -u; }
sums "$m" >"$T/sums"
declare -A INO
for p in d d/sub d/f1 d/f2 d/sub/x a b frag src clone; do INO[$p]=$(stat -c %i "$m/$p"); done
rlfs_umount "$m"
rlfs_fsck "$img"
ag_refc=$($AGT busiest "$img" refcbt)
ag_rmap=$($AGT busiest "$img" rmapbt)

# --- one kind of damage each ---------------------------------------------------
damage() {
	local c=$1 i=$T/case.img
	case $c in
	bmbt-zeroed)            # the bmbt root block of frag (300 extents)
		[ "$($ED inode-get "$i" "${INO[frag]}" format)" = 3 ] || die "frag has no bmbt"
		$ED zero "$i" "$($ED inode-get "$i" "${INO[frag]}" root)" ;;
	refcount-off-by-one)    # the first refcount record's count + 1
		$AGT refc-bump "$i" "$ag_refc" >/dev/null ;;
	free-over-data)         # a bnobt record grown over the used block before it
		$AGT bno-extend-left "$i" "$ag_rmap" >/dev/null ;;
	crosslink)              # b's extent moved onto a's block, no refcount
		$ED crosslink "$i" "${INO[a]}" "${INO[b]}" >/dev/null ;;
	inobt-record-lost)      # AG 0's first inobt record (the root's chunk)
		$AGT drop "$i" 0 inobt 0 >/dev/null ;;
	inobt-zeroed)           # AG 0's whole inobt root
		$AGT zero "$i" 0 inobt >/dev/null ;;
	rmap-leaf-zeroed)       # the leftmost rmapbt leaf of the busiest AG
		$AGT zero-leaf "$i" "$ag_rmap" rmapbt >/dev/null ;;
	dirent-free-inode)      # d/f2link (a second name of f2) names a free inode
		$ED dirent-set "$i" "${INO[d]}" f2link $((INO[d] + 60)) ;;
	dirent-no-chunk)        # d/f2link names an inode number in no chunk
		$ED dirent-set "$i" "${INO[d]}" f2link 99999999 ;;
	inode-core-file)        # a byte of f1's inode core, crc left stale
		$ED flip "$i" $((INO[d/f1] / 8)) $((INO[d/f1] % 8 * 512 + 60)) ;;
	inode-core-dir)         # a byte of sub's inode core: x is then lost
		$ED flip "$i" $((INO[d/sub] / 8)) $((INO[d/sub] % 8 * 512 + 60)) ;;
	lost-file)              # d's entry for f1 gone: f1 is named nowhere
		$ED dirent-drop "$i" "${INO[d]}" f1 ;;
	lost-dir)               # d's entry for sub gone: sub (and x) named nowhere
		$ED dirent-drop "$i" "${INO[d]}" sub ;;
	dir-leaf-zeroed)        # d's one b+tree leaf: d rebuilt empty, all it named lost
		$ED zero "$i" "$($ED inode-get "$i" "${INO[d]}" root)" ;;
	agh-tree-counts)        # the busiest AG's rmap_blocks + 1, refc_blocks - 1
		local r; r=$($ED agh-get "$i" "$ag_rmap" rmap_blocks)
		$ED agh-set "$i" "$ag_rmap" rmap_blocks $((r + 1))
		r=$($ED agh-get "$i" "$ag_refc" refc_blocks)
		$ED agh-set "$i" "$ag_refc" refc_blocks $((r - 1)) ;;
	*) die "unknown case $c" ;;
	esac
}

# the image path varies: IMAGE in the expect files
out() { sed "s|$T/case.img|IMAGE|g" "$T/fsck.stdout"; }
run_fsck() {
	FRC=0
	run_to "$CMD_TIMEOUT" "$RLFS" fsck "$@" >"$T/fsck.stdout" 2>"$T/fsck.stderr" || FRC=$?
	is_crash $FRC && { cat "$T/fsck.stdout" "$T/fsck.stderr" >&2; die "fsck $* crashed ($FRC)"; }
	return 0
}
expect() {   # CASE N: compare (or bless) the last output
	if [ "${RLFS_BLESS:-0}" = 1 ]; then
		out >"$DIR/$1.expect.$2"
		return
	fi
	out | diff -u "$DIR/$1.expect.$2" - >&2 || die "$1: fsck output differs from $1.expect.$2"
}

n=0
for c in bmbt-zeroed refcount-off-by-one free-over-data crosslink inobt-record-lost \
	 inobt-zeroed rmap-leaf-zeroed dirent-free-inode dirent-no-chunk \
	 inode-core-file inode-core-dir lost-file lost-dir dir-leaf-zeroed agh-tree-counts; do
	cp --sparse=always "$img" "$T/case.img"
	damage "$c"
	run_fsck -n "$T/case.img"
	[ $FRC = 4 ] || { out >&2; die "$c: fsck -n exited $FRC, expected 4"; }
	expect "$c" 1
	run_fsck "$T/case.img"
	[ $FRC = 1 ] || { out >&2; die "$c: fsck exited $FRC, expected 1"; }
	grep -q "corrected" "$T/fsck.stdout" || { out >&2; die "$c: no 'corrected' line"; }
	run_fsck -n "$T/case.img"
	[ $FRC = 0 ] || { out >&2; die "$c: fsck -n after repair exited $FRC"; }
	expect "$c" 2
	# the contents, by inode: as before, except what the case changes
	cp "$T/sums" "$T/want"
	case $c in
	crosslink)   # b now shows a's block (shared): seed 002, nothing lost
		sed -i "s/^${INO[b]} .*/${INO[b]} $(printf 'aaaa\n' | md5sum | cut -d' ' -f1)/" \
			"$T/want" ;;
	inode-core-file)   # f1 was cleared (e2fsck's "clear inode"): gone
		sed -i "/^${INO[d/f1]} /d" "$T/want" ;;
	esac
	rlfs_mount "$T/case.img" "$m"
	sums "$m" | diff -u "$T/want" - >&2 || die "$c: file contents changed"
	case $c in
	lost-file)
		cmp -s "$m/lost+found/${INO[d/f1]}" <(printf 'one\n') ||
			die "$c: f1 is not /lost+found/${INO[d/f1]}" ;;
	lost-dir)
		cmp -s "$m/lost+found/${INO[d/sub]}/x" <(printf 'three\n') ||
			die "$c: sub is not /lost+found/${INO[d/sub]}"
		[ "$(stat -c %h "$m/d")" = 2 ] || die "$c: d's link count not fixed" ;;
	inode-core-file)
		[ -e "$m/d/f1" ] && die "$c: the entry to the cleared inode is still there" ;;
	inode-core-dir)
		[ -e "$m/d/sub" ] && die "$c: the entry to the cleared inode is still there"
		cmp -s "$m/lost+found/${INO[d/sub/x]}" <(printf 'three\n') ||
			die "$c: x is not /lost+found/${INO[d/sub/x]}" ;;
	dir-leaf-zeroed)   # d empty; f1, f2 (its two names were in d) and sub lost
		[ -z "$(ls -A "$m/d")" ] || die "$c: d is not empty: $(ls -A "$m/d")"
		[ "$(stat -c %h "$m/d")" = 2 ] || die "$c: d's link count not fixed"
		cmp -s "$m/lost+found/${INO[d/f1]}" <(printf 'one\n') ||
			die "$c: f1 is not /lost+found/${INO[d/f1]}"
		cmp -s "$m/lost+found/${INO[d/f2]}" <(printf 'two\n') ||
			die "$c: f2 is not /lost+found/${INO[d/f2]}"
		[ "$(stat -c %h "$m/lost+found/${INO[d/f2]}")" = 1 ] || die "$c: f2's nlink not 1"
		cmp -s "$m/lost+found/${INO[d/sub]}/x" <(printf 'three\n') ||
			die "$c: sub is not /lost+found/${INO[d/sub]}" ;;
	dirent-free-inode|dirent-no-chunk)
		[ -e "$m/d/f2link" ] && die "$c: the entry is still there"
		[ "$(stat -c %h "$m/d/f2")" = 1 ] || die "$c: f2's link count not fixed" ;;
	esac
	rlfs_umount "$m"
	rlfs_fsck "$T/case.img"
	n=$((n + 1))
	[ $c = lost-file ] && cp --sparse=always "$T/case.img" "$T/lpf.img"
done

# a second lost inode, now that /lost+found exists (lost-file's repaired
# image): both names of f2 dropped, so f2 (nlink 2) is named nowhere; it
# goes into the existing /lost+found with nlink 1, next to f1
$ED dirent-drop "$T/lpf.img" "${INO[d]}" f2
$ED dirent-drop "$T/lpf.img" "${INO[d]}" f2link
cp "$T/lpf.img" "$T/case.img"
run_fsck "$T/case.img"
[ $FRC = 1 ] || { out >&2; die "existing /lost+found: fsck exited $FRC, expected 1"; }
grep -q "created /lost+found" "$T/fsck.stdout" && die "existing /lost+found: made again"
grep -q "inode ${INO[d/f2]} linked into /lost+found as '${INO[d/f2]}'" "$T/fsck.stdout" ||
	{ out >&2; die "existing /lost+found: f2 not linked"; }
run_fsck -n "$T/case.img"
[ $FRC = 0 ] || { out >&2; die "existing /lost+found: fsck -n after repair exited $FRC"; }
rlfs_mount "$T/case.img" "$m"
[ "$(cat "$m/lost+found/${INO[d/f2]}")" = two ] || die "existing /lost+found: f2's contents"
[ "$(stat -c %h "$m/lost+found/${INO[d/f2]}")" = 1 ] || die "existing /lost+found: f2's nlink"
[ "$(cat "$m/lost+found/${INO[d/f1]}")" = one ] || die "existing /lost+found: f1 gone"
rlfs_umount "$m"
rlfs_fsck "$T/case.img"
log "OK: $n images, each fsck output as expected"

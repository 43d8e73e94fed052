#!/bin/bash
# 59-fsck-dir-relink: fsck rebuilds a directory whose b+tree is damaged
# from the entries it can still read, and links every inode named only in
# the lost part into /lost+found under its inode number (xfs_repair phase
# 6); a /lost+found that is not a directory is moved aside into a new one.
# For each case, on a copy of one populated image:
#   fsck -n   exit 4, names the damaged directory and what repair does;
#   fsck      exit 1, "corrected";
#   fsck -n   exit 0 (clean), and a second repair finds nothing;
#   mount     every regular file's contents, by inode number, as before;
#             each file still under its name unless the damaged block held
#             it, then under /lost+found/INO; link counts right (a file with
#             one surviving name of two has nlink 1, a lost directory's
#             subdirectory count, d's 2 + the subdirectories left).
# Cases: a zeroed leaf in the middle of a 3-leaf-plus directory (rmapbt on,
# and off: the rebuild must not need the rmap), a zeroed root node (rmapbt
# on: the rmap still names every leaf, nothing is lost; off: everything is
# lost and goes to /lost+found), and /lost+found a regular file.
. "$(dirname "$0")/../lib.sh"
common_setup
ED="$PY $SRCDIR/tests/helpers/imgedit.py"
m=$T/mnt

# "INO MD5" of every regular file, one line per inode
sums() { (cd "$1" && find . -type f -exec stat -c '%i %n' {} + | while read -r ino name; do
	echo "$ino $(md5sum <"$name" | cut -d' ' -f1)"; done) | LC_ALL=C sort -u; }

run_fsck() {
	FRC=0
	run_to "$CMD_TIMEOUT" "$RLFS" fsck "$@" >"$T/fsck.stdout" 2>"$T/fsck.stderr" || FRC=$?
	is_crash $FRC && { cat "$T/fsck.stdout" "$T/fsck.stderr" >&2; die "fsck $* crashed ($FRC)"; }
	return 0
}
show() { cat "$T/fsck.stdout" >&2; }

# make_image IMG RMAPBT: d holds 120 files f000..f119 (contents "file N"),
# 6 directories s0..s5 each holding one file, and a second name 'x-link'
# in the root for f007..f009 (so a file in a lost leaf can keep a name)
make_image() {
	local img=$1 rm=$2 i
	rlfs_mkfs "$img" -s 64M -a 2 -l size=1M -m rmapbt=$rm
	rlfs_mount "$img" "$m"
	mkdir "$m/d"
	for i in $(seq -f %03g 0 119); do printf 'file %s\n' "$i" >"$m/d/f$i"; done
	for i in 0 1 2 3 4 5; do mkdir "$m/d/s$i"; printf 'in s%s\n' "$i" >"$m/d/s$i/inner"; done
	for i in 007 008 009; do ln "$m/d/f$i" "$m/x-link$i"; done
	printf 'top\n' >"$m/top"
	sync
	sums "$m" >"$img.sums"
	(cd "$m/d" && stat -c '%i %n' *) >"$img.names"
	stat -c %i "$m/d" >"$img.dino"
	rlfs_umount "$m"
	rlfs_fsck "$img"
}

# check_case NAME IMG: the repair protocol above.  LOST: inode numbers
# of d's entries in the damaged blocks (set by the caller): each goes to
# /lost+found, except f007..f009, which keep their other name x-linkNNN
# (nlink 1 then).
check_case() {
	local c=$1 img=$2 dino ino name nsub=0 want_nsub nlpf=0 want
	dino=$(cat "$img.dino")
	run_fsck -n "$img"
	[ $FRC = 4 ] || { show; die "$c: fsck -n exited $FRC, expected 4"; }
	grep -q "inode $dino (directory).*repair rebuilds it" "$T/fsck.stdout" ||
		{ show; die "$c: fsck -n does not say that repair rebuilds directory $dino"; }
	run_fsck "$img"
	[ $FRC = 1 ] || { show; die "$c: fsck exited $FRC, expected 1"; }
	grep -q corrected "$T/fsck.stdout" || { show; die "$c: no 'corrected' line"; }
	run_fsck -n "$img"
	[ $FRC = 0 ] || { show; die "$c: fsck -n after repair exited $FRC"; }
	run_fsck "$img"
	[ $FRC = 0 ] || { show; die "$c: a second repair exited $FRC"; }
	rlfs_mount "$img" "$m"
	sums "$m" | diff -u "$img.sums" - >&2 || die "$c: file contents changed"
	while read -r ino name; do
		if [[ " $LOST " == *" $ino "* ]]; then
			[ -e "$m/d/$name" ] && die "$c: d/$name still there (its block was lost)"
		fi
		if [[ " $LOST " == *" $ino "* ]] && [[ $name != f00[789] ]]; then
			nlpf=$((nlpf + 1))
			[ -e "$m/lost+found/$ino" ] || die "$c: d/$name (inode $ino) not in /lost+found"
			[ "$(stat -c %i "$m/lost+found/$ino")" = "$ino" ] || die "$c: lost+found/$ino"
			case $name in s*) [ "$(cat "$m/lost+found/$ino/inner")" = "in $name" ] ||
				die "$c: lost directory $name lost its file" ;; esac
		elif [[ " $LOST " == *" $ino "* ]]; then
			[ -e "$m/lost+found/$ino" ] && die "$c: d/$name in /lost+found, but it has another name"
		else
			[ "$(stat -c %i "$m/d/$name" 2>/dev/null)" = "$ino" ] ||
				die "$c: d/$name is not inode $ino any more"
			case $name in s*) nsub=$((nsub + 1)) ;; esac
		fi
		case $name in
		f007|f008|f009)   # two names: one left, or both when not lost
			want=2
			[[ " $LOST " == *" $ino "* ]] && want=1
			[ "$(stat -c %h "$m/x-link${name#f}")" = $want ] ||
				die "$c: $name nlink $(stat -c %h "$m/x-link${name#f}"), expected $want" ;;
		s*)
			[ "$(stat -c %h "$m/lost+found/$ino" 2>/dev/null || stat -c %h "$m/d/$name")" = 2 ] ||
				die "$c: directory $name nlink wrong" ;;
		*)
			[ "$(stat -c %h "$m/d/$name" 2>/dev/null || stat -c %h "$m/lost+found/$ino")" = 1 ] ||
				die "$c: $name nlink wrong" ;;
		esac
	done <"$img.names"
	want_nsub=$((2 + nsub))
	[ "$(stat -c %h "$m/d")" = $want_nsub ] ||
		die "$c: d nlink $(stat -c %h "$m/d"), expected $want_nsub"
	[ "$(ls "$m/lost+found" 2>/dev/null | wc -l)" = $nlpf ] ||
		die "$c: /lost+found holds $(ls "$m/lost+found" | wc -l) entries, expected $nlpf"
	rlfs_umount "$m"
	rlfs_fsck "$img"
	log "$c: $nlpf inodes relinked into /lost+found, $(($(echo $LOST | wc -w) - nlpf)) kept another name, the rest their own"
}

for rm in 1 0; do
	base=$T/base$rm.img
	make_image "$base" $rm
	dino=$(cat "$base.dino")
	$ED dir-blocks "$base" "$dino" >"$T/blocks"
	nleaves=$(awk '$1 == 0' "$T/blocks" | wc -l)
	[ "$nleaves" -ge 4 ] || die "d has $nleaves leaves, expected at least 4"

	# the leaf holding f008 (which has a second name): the other entries
	# in it are named nowhere else
	img=$T/leaf$rm.img
	cp --sparse=always "$base" "$img"
	for s in sums names dino; do cp "$base.$s" "$img.$s"; done
	f008=$(awk '$2 == "f008" { print $1 }' "$base.names")
	read -r _ leaf LOST < <(awk -v i="$f008" '$1 == 0 { for (k = 3; k <= NF; k++)
		if ($k == i) print }' "$T/blocks")
	[ -n "$leaf" ] || die "no leaf of d holds f008"
	$ED zero "$img" "$leaf"
	check_case "leaf zeroed (rmapbt=$rm)" "$img"

	# the root node: every leaf cut off
	img=$T/root$rm.img
	cp --sparse=always "$base" "$img"
	for s in sums names dino; do cp "$base.$s" "$img.$s"; done
	read -r level root _ < "$T/blocks"
	[ "$level" -ge 1 ] || die "d's tree has one level"
	$ED zero "$img" "$root"
	if [ $rm = 1 ]; then
		LOST=""     # the rmap still names every leaf
	else
		LOST=$(awk '$1 == 0 { for (i = 3; i <= NF; i++) print $i }' "$T/blocks" | xargs)
	fi
	check_case "root node zeroed (rmapbt=$rm)" "$img"

	# the inode's root pointer itself wrong (a block past the end of the
	# filesystem): with the rmap every leaf is still found, without it
	# every entry is lost
	img=$T/rootptr$rm.img
	cp --sparse=always "$base" "$img"
	for s in sums names dino; do cp "$base.$s" "$img.$s"; done
	$ED inode-set "$img" "$dino" root 99999999
	if [ $rm = 1 ]; then
		LOST=""
	else
		LOST=$(awk '$1 == 0 { for (i = 3; i <= NF; i++) print $i }' "$T/blocks" | xargs)
	fi
	check_case "root pointer out of the filesystem (rmapbt=$rm)" "$img"
done

# /lost+found a regular file (one name), and a lost file: the file is moved
# aside into a new /lost+found directory under its inode number, next to
# the lost one
img=$T/lpf.img
rlfs_mkfs "$img" -s 64M -a 2 -l size=1M
rlfs_mount "$img" "$m"
mkdir "$m/e"
printf 'not a dir\n' >"$m/lost+found"
printf 'gone\n' >"$m/e/g"
sync
sums "$m" >"$T/want"
lpf_ino=$(stat -c %i "$m/lost+found")
g_ino=$(stat -c %i "$m/e/g")
e_ino=$(stat -c %i "$m/e")
rlfs_umount "$m"
$ED dirent-drop "$img" "$e_ino" g
run_fsck -n "$img"
[ $FRC = 4 ] || { show; die "lost+found file: fsck -n exited $FRC, expected 4"; }
run_fsck "$img"
[ $FRC = 1 ] || { show; die "lost+found file: fsck exited $FRC, expected 1"; }
run_fsck -n "$img"
[ $FRC = 0 ] || { show; die "lost+found file: fsck -n after repair exited $FRC"; }
rlfs_mount "$img" "$m"
[ -d "$m/lost+found" ] || die "lost+found file: /lost+found is not a directory"
[ "$(cat "$m/lost+found/$lpf_ino")" = "not a dir" ] ||
	die "lost+found file: the old /lost+found is not lost+found/$lpf_ino"
[ "$(cat "$m/lost+found/$g_ino")" = gone ] || die "lost+found file: g not in /lost+found"
[ "$(stat -c %h "$m/lost+found/$lpf_ino")" = 1 ] || die "lost+found file: its nlink"
sums "$m" | diff -u "$T/want" - >&2 || die "lost+found file: contents changed"
rlfs_umount "$m"
rlfs_fsck "$img"
log "OK: damaged directories rebuilt, cut-off inodes relinked, /lost+found moved aside"

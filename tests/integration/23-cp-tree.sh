#!/bin/bash
# 23-cp-tree: plain cp -a of a tree inside a reflinkfs mount (no shim: cp's
# FICLONE is refused by the kernel for FUSE, cp falls back to
# copy_file_range, which the daemon turns into a clone) shares the blocks:
# df barely grows, FIEMAP (reflinkfs io) shows every data extent SHARED;
# rewriting part of a copied file leaves the original intact and the rest
# of the copy still shared; both trees survive unmount + fsck + remount;
# deleting either tree frees nothing of the other, deleting both frees all.
. "$(dirname "$0")/../lib.sh"
common_setup
SRC=${CP_SRC:-/usr/include/linux}
[ -d "$SRC" ] || SRC=/usr/share/doc

# the source: a real tree plus a few larger files (block sharing dominates)
mkdir -p "$T/src"
cp -a "$SRC" "$T/src/tree"
for i in 1 2 3; do head -c $((6 << 20)) /dev/urandom >"$T/src/big$i"; done
head -c $((3 << 20 | 777)) /dev/urandom >"$T/src/odd"      # unaligned size
src_kb=$(du -sk "$T/src" | cut -f1)

img=$T/cp.img mnt=$T/mnt
rlfs_mkfs "$img" -s 1G
rlfs_mount "$img" "$mnt"
free_empty=$(df_free_blocks "$mnt")
u0=$(df_used_kb "$mnt")
cp -a "$T/src" "$mnt/a"
sync -f "$mnt"
u1=$(df_used_kb "$mnt")
cp -a "$mnt/a" "$mnt/b"
sync -f "$mnt"
u2=$(df_used_kb "$mnt")
copy_kb=$((u1 - u0)) clone_kb=$((u2 - u1))
log "source $src_kb KiB; df: first copy +$copy_kb KiB, cp -a inside the mount +$clone_kb KiB"
[ $copy_kb -gt $((src_kb / 2)) ] || die "first copy used only $copy_kb KiB?"
# data blocks are shared; directories, inodes and tails of small files
# may be new (a file smaller than a block is copied, not cloned)
[ $clone_kb -lt $((copy_kb / 5)) ] || die "cp -a inside the mount grew df by $clone_kb KiB (first copy $copy_kb KiB)"
diff -r --no-dereference "$T/src" "$mnt/b" || die "the clone tree differs from the source"
[ "$(tree_fingerprint "$mnt/a")" = "$(tree_fingerprint "$mnt/b")" ] || die "metadata of the cp -a copy differ"

shared_of() { # file: "extents shared_bytes"
	"$RLFS" io -r -c stat "$1" | awk -F' = ' '/^extents.count/ {c = $2} /^extents.shared_bytes/ {s = $2} END {print c, s}'
}
for f in big1 big2 big3; do
	read -r c s <<<"$(shared_of "$mnt/b/$f")"
	[ "$s" = $((6 << 20)) ] || die "b/$f: $s of $((6 << 20)) bytes shared"
done
# a whole file is cloned, including its partial EOF block (as on XFS)
read -r c s <<<"$(shared_of "$mnt/b/odd")"
[ "$s" = $(((3 << 20) + 4096)) ] || die "b/odd: $s bytes shared, expected all its 769 blocks"

log "rewrite 1 MiB in the middle of b/big2"
dd if=/dev/urandom of="$mnt/b/big2" bs=1M seek=2 count=1 conv=notrunc,fsync status=none
cmp "$T/src/big2" "$mnt/a/big2" || die "the original changed when its copy was rewritten"
cmp -n $((2 << 20)) "$T/src/big2" "$mnt/b/big2" || die "copy: data before the rewrite changed"
cmp -i $((3 << 20)) "$T/src/big2" "$mnt/b/big2" || die "copy: data after the rewrite changed"
cmp -s -i $((2 << 20)) -n $((1 << 20)) "$T/src/big2" "$mnt/b/big2" && die "copy: the rewrite did not happen"
"$RLFS" io -r -c "fiemap -v" "$mnt/b/big2" | tee "$T/fiemap.out"
# sectors: [0..4095] shared, [4096..6143] private, [6144..12287] shared
# The sectors of "N: [lo..hi]: ..." are the numbers in $2.  The check runs
# under both mawk and gawk: gawk rejects bracket expressions like
# /[][.:]+/ that mawk accepts (and a test passing under only one awk
# hides that).
fiemap_check='/^ *[0-9]+:/ {
	s = $2; gsub(/[^0-9]+/, " ", s); split(s, r, " "); lo = r[1] + 0; hi = r[2] + 0
	sh = ($0 ~ /shared/); n++
	if (lo < 4096 && !sh) bad = bad " " $2 " unshared before"
	if (lo >= 6144 && !sh) bad = bad " " $2 " unshared after"
	if (lo >= 4096 && hi < 6144 && sh) bad = bad " " $2 " rewritten but shared"
	if (lo < 4096 && hi >= 4096) bad = bad " " $2 " crosses the rewrite"
	if (lo < 6144 && hi >= 6144) bad = bad " " $2 " crosses the end of the rewrite"
} END { if (!n) bad = " no extent lines"; if (bad != "") { print "fiemap:" bad; exit 1 } }'
for awk in mawk gawk; do
	command -v $awk >/dev/null || die "$awk missing (scripts/deps.sh installs it)"
	$awk "$fiemap_check" "$T/fiemap.out" || die "fiemap of the rewritten copy is wrong ($awk)"
done
read -r c s <<<"$(shared_of "$mnt/b/big2")"
[ "$s" = $((5 << 20)) ] || die "b/big2: $s bytes still shared, expected 5 MiB"
read -r c s <<<"$(shared_of "$mnt/a/big2")"
[ "$s" = $((5 << 20)) ] || die "a/big2: $s bytes still shared, expected 5 MiB"

rlfs_umount "$mnt"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt"
diff -r --no-dereference "$T/src" "$mnt/a" || die "tree a differs after remount"
cmp "$mnt/a/big2" "$T/src/big2" || die "a/big2 differs after remount"
log "delete tree a: b keeps its data, little is freed"
f0=$(df_free_blocks "$mnt")
rm -rf "$mnt/a"
sync -f "$mnt"
f1=$(df_free_blocks "$mnt")
log "freed $((f1 - f0)) blocks deleting tree a"
[ $((f1 - f0)) -lt $(((copy_kb - clone_kb) / 4 / 2)) ] || die "deleting tree a freed $((f1 - f0)) blocks (shared data freed?)"
cmp "$mnt/b/big1" "$T/src/big1" || die "b/big1 damaged by deleting a"
diff -r --no-dereference -x big2 "$T/src" "$mnt/b" || die "tree b damaged by deleting a"
rlfs_umount "$mnt"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt"
rm -rf "$mnt/b"
sync -f "$mnt"
f2=$(df_free_blocks "$mnt")
[ "$f2" = "$free_empty" ] || die "after deleting both trees $f2 blocks free, $free_empty when empty (leak)"
rlfs_umount "$mnt"
rlfs_fsck "$img"
log OK

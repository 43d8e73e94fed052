#!/bin/bash
# reflinkfs demo: copy a real directory tree into a reflinkfs image through
# a FUSE mount and prove it comes back byte for byte.
#
#   scripts/demo.sh BUILD [DIR]      (DIR defaults to /usr/share/doc)
#
# Creates a sparse image sized from the tree (3x its size + 256 MiB), runs
# mkfs, mounts it, copies DIR with cp -a, prints df and file counts,
# unmounts, runs fsck, remounts, verifies the tree with diff -r, prints a
# summary, and cleans up (unmount, remove the image) unless KEEP=1.
# Environment: IMG (image path, default /tmp/reflinkfs-demo.img), MNT.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -eu -o pipefail

BUILD=${1:-build}
SRC=${2:-${DIR:-/usr/share/doc}}
RLFS=$(cd "$BUILD" && pwd)/reflinkfs
IMG=${IMG:-/tmp/reflinkfs-demo.img}
MNT=${MNT:-/tmp/reflinkfs-demo.mnt}

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

[ -x "$RLFS" ] || fail "no reflinkfs binary in $BUILD (run make build)"
[ -d "$SRC" ] || fail "no such directory: $SRC"
[ "$(id -u)" = 0 ] || fail "run as root (FUSE mount)"
[ -c /dev/fuse ] || fail "/dev/fuse missing (modprobe fuse)"
SRC=$(cd "$SRC" && pwd)

mounted=0
cleanup() {
	local rc=$?
	set +e
	if [ $mounted = 1 ] && mountpoint -q "$MNT"; then
		fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null || umount -l "$MNT"
		flock -w 30 "$IMG" true
	fi
	if [ "${KEEP:-0}" != 1 ]; then
		rm -f "$IMG"
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
fusermount3 -u "$MNT"
mounted=0
flock -w 30 "$IMG" true

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

fusermount3 -u "$MNT"
mounted=0
flock -w 30 "$IMG" true

say "summary"
printf '  tree           %s\n' "$SRC"
printf '  copied         %d MiB: %d files, %d directories, %d symlinks\n' $((src_kb / 1024)) "$src_files" "$src_dirs" "$src_links"
printf '  copy time      %.1f s (cp -a + sync through FUSE)\n' "$copy_s"
printf '  verify time    %.1f s (diff -r after unmount, fsck, remount)\n' "$verify_s"
printf '  image          %d MiB apparent, %d MiB allocated (sparse), %d MiB used per df\n' "$size_mb" $((img_kb / 1024)) $((used_kb / 1024))
printf '  fsck           clean\n'
printf '  result         OK: byte-identical after unmount, fsck and remount\n'

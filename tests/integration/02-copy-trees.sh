#!/bin/bash
# Copy real trees (/usr/share/doc, /usr/include) into a mount with cp -a,
# diff -r, compare metadata fingerprints, umount, fsck, remount, diff again.
. "$(dirname "$0")/../lib.sh"
common_setup

SRCS=${COPY_SRCS:-"/usr/share/doc /usr/include"}
img=$T/copy.img
mnt=$T/mnt
need_kb=0
for s in $SRCS; do
	[ -d "$s" ] || die "source tree $s missing"
	need_kb=$((need_kb + $(du -sk "$s" | cut -f1)))
done
size_mb=$((need_kb * 3 / 1024 + 512))
rlfs_mkfs "$img" -s ${size_mb}M
rlfs_mount "$img" "$mnt"
free_empty=$(df_free_blocks "$mnt")

for s in $SRCS; do
	d=$mnt/$(echo "$s" | tr / _)
	mkdir "$d"
	log "cp -a $s"
	cp -a "$s/." "$d/" || die "cp -a $s failed"
done
sync

verify() {
	local s d
	for s in $SRCS; do
		d=$mnt/$(echo "$s" | tr / _)
		diff -r --no-dereference "$s" "$d" >"$T/diff.out" 2>&1 ||
			{ head -20 "$T/diff.out" >&2; die "diff -r $s differs ($1)"; }
		tree_fingerprint "$s" >"$T/fp.src"
		tree_fingerprint "$d" >"$T/fp.dst"
		diff "$T/fp.src" "$T/fp.dst" >"$T/fp.diff" ||
			{ head -20 "$T/fp.diff" >&2; die "metadata of $s differs ($1)"; }
		# timestamps preserved by cp -a (mtime to the second)
		(cd "$s" && find . -printf '%T@ %p\n' | sed 's/\.[0-9]* / /' | LC_ALL=C sort) >"$T/mt.src"
		(cd "$d" && find . -printf '%T@ %p\n' | sed 's/\.[0-9]* / /' | LC_ALL=C sort) >"$T/mt.dst"
		diff "$T/mt.src" "$T/mt.dst" >"$T/mt.diff" ||
			{ head -10 "$T/mt.diff" >&2; die "mtimes of $s differ ($1)"; }
	done
	log "trees identical ($1)"
}
verify "after copy"
files=$(find "$mnt" | wc -l)
df -h "$mnt"
log "$files entries copied"

rlfs_umount "$mnt"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt"
verify "after remount"
# readdir of a big directory returns every entry exactly once
big=$(find "$mnt" -type d -exec sh -c 'echo "$(ls -A "$1" | wc -l) $1"' _ {} \; | sort -n | tail -1)
log "largest directory: $big"
dir=${big#* }
[ "$(ls -A "$dir" | sort | uniq -d | wc -l)" = 0 ] || die "duplicate names in readdir of $dir"

# delete everything, space comes back
rm -rf "${mnt:?}"/*
[ -z "$(ls -A "$mnt")" ] || die "directory not empty after rm -rf"
rlfs_umount "$mnt"
rlfs_fsck "$img"
# (unlinked files are freed when the kernel forgets them: count after a remount)
rlfs_mount "$img" "$mnt"
[ "$(df_free_blocks "$mnt")" = "$free_empty" ] ||
	die "after deleting everything $(df_free_blocks "$mnt") blocks are free, $free_empty after mkfs"
rlfs_umount "$mnt"
rlfs_fsck "$img"
log OK

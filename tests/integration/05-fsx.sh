#!/bin/bash
# Randomized exerciser: rlfs-fsx (random write/truncate/punch/zero range/
# fallocate/seek/mmap read, verified against an in-memory model) for many
# thousands of operations, with umount/fsck/remount cycles in between; each
# cycle first verifies the file left by the previous cycle against the saved
# model.  A second, large-file run with big operations builds a bmbt.
# Every run also exchanges ranges of its file (-e: XFS_IOC_EXCHANGE_RANGE
# through RLFS_IOC_EXCHANGE_RANGE, two block-aligned ranges of the file
# swap their bytes, the EINVAL cases predicted).
# FSX_FLAGS adds rlfs-fsx options (e.g. FSX_FLAGS="-Y" fsyncs before seeks).
. "$(dirname "$0")/../lib.sh"
common_setup

img=$T/fsx.img
mnt=$T/mnt
CYCLES=${FSX_CYCLES:-4}
OPS=${FSX_OPS:-5000}
rlfs_mkfs "$img" -s 1G
for ((c = 0; c < CYCLES; c++)); do
	rlfs_mount "$img" "$mnt"
	cont=""
	[ $c = 0 ] || cont=-c
	run_to 600 "$FSX" ${FSX_FLAGS:-} -e -q -N "$OPS" -S $((c + 11)) -l 4M -m "$T/model.small" $cont "$mnt/small" ||
		die "fsx small-file cycle $c failed"
	run_to 600 "$FSX" ${FSX_FLAGS:-} -e -q -N $((OPS / 2)) -S $((c + 101)) -l 64M -o 2M -m "$T/model.big" $cont "$mnt/big" ||
		die "fsx big-file cycle $c failed"
	# a third file with tiny ops: many small extents (inline -> bmbt conversion)
	run_to 600 "$FSX" ${FSX_FLAGS:-} -e -q -N "$OPS" -S $((c + 1001)) -l 2M -o 8K -X t -m "$T/model.frag" $cont "$mnt/frag" ||
		die "fsx fragmenting cycle $c failed"
	ls -la "$mnt"
	rlfs_umount "$mnt"
	rlfs_fsck "$img"
	log "cycle $c: $((OPS * 5 / 2)) ops verified, umount + fsck clean"
done
# the fragmenting file outgrew the inline extent list: bmbt blocks exist
# (a freed one keeps its magic, so this says a bmbt was built, not that it
# is still in use)
nbmbt=$($PY "$SRCDIR/tests/helpers/metascan.py" list "$img" | awk '$1 == "bmbt"' | wc -l)
[ "$nbmbt" -gt 0 ] || die "no bmbt block in the image: the extent lists never left the inode"
log "$nbmbt bmbt blocks in the image"
# final check of the files against the models after the last remount
rlfs_mount "$img" "$mnt"
for f in small big frag; do
	cmp "$mnt/$f" "$T/model.$f" || die "$f differs from model after final remount"
done
# parallel instances on separate files (different seeds); the third one
# uses O_DIRECT (FUSE direct I/O, unaligned), mixed with mmap reads
pids=()
for i in 1 2 3; do
	direct=""
	[ $i = 3 ] && direct=-d
	run_to 600 "$FSX" ${FSX_FLAGS:-} -e $direct -q -N "$OPS" -S $((i * 7)) -l 8M -o 512K "$mnt/par$i" >"$T/par$i.log" 2>&1 &
	pids+=($!)
done
for i in 0 1 2; do
	wait "${pids[$i]}" || { cat "$T/par$((i + 1)).log" >&2; die "parallel fsx $((i + 1)) failed"; }
done
rm -f "$mnt"/*
rlfs_umount "$mnt"
rlfs_fsck "$img"
log OK

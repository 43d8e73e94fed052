#!/bin/bash
# Randomized exerciser with reflink ops: rlfs-fsx -F N (several files with
# clone through RLFS_IOC_CLONE_RANGE, copy_file_range and unshare through
# RLFS_IOC_UNSHARE_RANGE between them, besides write/truncate/punch/zero/
# fallocate/seek/mmap, and collapse/insert range through RLFS_IOC_SHIFT_RANGE
# in a fourth run, exchange range through RLFS_IOC_EXCHANGE_RANGE (-e) in
# a fifth; every file checked against its own model) for many
# thousands of operations, with unmount + fsck (refcounts against mappings)
# + remount cycles; each cycle first verifies all files left by the previous
# one against the saved models.  The same seeds run first on kernel XFS
# (FICLONERANGE, FALLOC_FL_UNSHARE_RANGE) as a check of the exerciser's
# model, and the final file contents of both must be identical; not the
# exchange run: kernel XFS exchanges ranges only on a filesystem made with
# -i exchange=1, which Debian 12's mkfs.xfs (6.1) cannot set (EOPNOTSUPP),
# so its files are checked against their models only.
# The last cycle runs with RLFS_FLUSH_BARRIER=1 (the daemon's flush for
# kernels before 6.16).  FSX_OPS (per run, default 5000), FSX_CYCLES (default 4).
. "$(dirname "$0")/../lib.sh"
common_setup
command -v mkfs.xfs >/dev/null || die "mkfs.xfs missing (apt-get install xfsprogs)"

img=$T/fsx.img
mnt=$T/mnt
CYCLES=${FSX_CYCLES:-4}
OPS=${FSX_OPS:-5000}
# Under -o dax (the +dax run, RLFS_DAX=1) files open with direct I/O; their
# shared mmap works because the daemon's INIT reply asks for
# FUSE_DIRECT_IO_ALLOW_MMAP, so the mmap reads run there too (on kernels
# before 6.6, which cannot grant it, fsx fails at the first mapread).
# Every run also stores through shared writable mappings (-M; on XFS too,
# so that both runs draw the same operations): with dax through the kernel's
# page cache of a direct-I/O file, without it through the writeback cache.
MW=(-M)

# runs CYCLE DIR MODELDIR [-c]: the three runs of one cycle
runs() {
	local c=$1 d=$2 md=$3; shift 3
	# four small files, small ops: many clones of partial, overlapping ranges
	run_to 600 "$FSX" -q -F 4 -N "$OPS" -S $((c + 21)) -l 2M -o 128K -m "$md/small" "${MW[@]}" "$@" "$d/small" ||
		die "fsx small (cycle $c, $d) failed"
	# three larger files with big ops (bmbt-format forks, long refcount records)
	run_to 600 "$FSX" -q -F 3 -N $((OPS / 4)) -S $((c + 201)) -l 24M -o 2M -m "$md/big" "${MW[@]}" "$@" "$d/big" ||
		die "fsx big (cycle $c, $d) failed"
	# tiny ops on two files: fragmented extents shared in pieces
	run_to 600 "$FSX" -q -F 2 -N "$OPS" -S $((c + 2001)) -l 1M -o 16K -X t -m "$md/frag" "${MW[@]}" "$@" "$d/frag" ||
		die "fsx frag (cycle $c, $d) failed"
	# collapse and insert range (-A) among the clones: shared extents move
	run_to 600 "$FSX" -q -F 2 -A -N "$OPS" -S $((c + 3001)) -l 2M -o 64K -m "$md/shift" "${MW[@]}" "$@" "$d/shift" ||
		die "fsx shift (cycle $c, $d) failed"
	# exchange range (-e) among three files and within each, besides the
	# clones: shared extents swap places (reflinkfs only, see above)
	[ "$d" = "$T/xfs" ] ||
		run_to 600 "$FSX" -q -F 3 -e -N "$OPS" -S $((c + 4001)) -l 2M -o 128K -m "$md/xchg" "${MW[@]}" "$@" "$d/xchg" ||
		die "fsx exchange (cycle $c, $d) failed"
}

log "model check on kernel XFS (same seeds, FICLONERANGE)"
mkdir -p "$T/xm"
kmount_xfs "$T/xfs.img" "$T/xfs" 1G
for ((c = 0; c < CYCLES; c++)); do
	cont=""
	[ $c = 0 ] || cont=-c
	runs $c "$T/xfs" "$T/xm" $cont
done

mkdir -p "$T/rm"
rlfs_mkfs "$img" -s 1G
for ((c = 0; c < CYCLES; c++)); do
	# the last cycle uses the flush of kernels before 6.16 (whole-mount
	# syncfs + RELEASEDIR barrier + WRITE counts) before SEEK_DATA/clones;
	# that flush serves requests through /dev/fuse, never io_uring (so
	# the +uring run does not check for rings there)
	if [ $c = $((CYCLES - 1)) ]; then
		RLFS_FLUSH_BARRIER=1 RLFS_URING=0 rlfs_mount "$img" "$mnt"
	else
		rlfs_mount "$img" "$mnt"
	fi
	cont=""
	[ $c = 0 ] || cont=-c
	runs $c "$mnt" "$T/rm" $cont
	df -P -k "$mnt" | tail -1
	rlfs_umount "$mnt"
	rlfs_fsck "$img"
	log "cycle $c: $((OPS * 17 / 4)) ops verified, umount + fsck clean"
done

# after the last remount: every file equals its model and its XFS twin
rlfs_mount "$img" "$mnt"
n=0
for f in "$mnt"/*; do
	b=$(basename "$f")
	case $b in small*) m=$T/rm/small${b#small} ;; big*) m=$T/rm/big${b#big} ;; frag*) m=$T/rm/frag${b#frag} ;; shift*) m=$T/rm/shift${b#shift} ;; xchg*) m=$T/rm/xchg${b#xchg} ;; *) die "stray file $b" ;; esac
	cmp "$f" "$m" || die "$b differs from its model after the final remount"
	case $b in
	xchg*) ;;       # no kernel XFS twin (no exchange=1 there)
	*) cmp "$f" "$T/xfs/$b" || die "$b differs from the same run on kernel XFS" ;;
	esac
	n=$((n + 1))
done
[ $n = 14 ] || die "expected 14 files, found $n"
log "all $n files match their models, the 11 not exchanged also kernel XFS"

# parallel: two exercisers on separate file sets at once (clones and
# exchanges between files of one set while the other set changes the same
# AGs' refcounts)
pids=()
for i in 1 2; do
	run_to 600 "$FSX" -q -F 3 -e -N "$OPS" -S $((i * 77)) -l 4M -o 256K "${MW[@]}" "$mnt/par$i" >"$T/par$i.log" 2>&1 &
	pids+=($!)
done
for i in 0 1; do
	wait "${pids[$i]}" || { cat "$T/par$((i + 1)).log" >&2; die "parallel fsx $((i + 1)) failed"; }
done
rlfs_umount "$mnt"
rlfs_fsck "$img"
# delete everything: every shared block must come back (refcounts to zero)
rlfs_mkfs "$T/fresh.img" -s 1G
rlfs_mount "$T/fresh.img" "$T/fresh"
freshfree=$(df_free_blocks "$T/fresh")
rlfs_umount "$T/fresh"
rlfs_fsck "$T/fresh.img"
rlfs_mount "$img" "$mnt"
free0=$(df_free_blocks "$mnt")
rm -f "$mnt"/*
sync -f "$mnt"
# The kernel sends FORGET for an unlinked inode on its own schedule, and
# the daemon frees the file then; a slow daemon (ASan, and the rmap's
# extra steps) may still be freeing when sync returns: wait up to 60 s
# for the count to settle at the fresh image's.
for _ in $(seq 120); do
	free1=$(df_free_blocks "$mnt")
	[ "$free1" = "$freshfree" ] && break
	sleep 0.5
done
rlfs_umount "$mnt"
rlfs_fsck "$img"
log "free blocks: $free0 with files, $free1 after deleting all, $freshfree on a fresh image"
[ "$free1" = "$freshfree" ] || die "after deleting every file $free1 blocks free, a fresh image has $freshfree (leak)"
log OK

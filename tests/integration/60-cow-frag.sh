#!/bin/bash
# 60-cow-frag: fragmentation after copy-on-write (issue 13 section 5),
# differential against kernel XFS.  On both filesystems: a SIZE (256 MiB)
# file of seeded pseudo-random data (fsync), cloned with cp --reflink=always
# (through the LD_PRELOAD shim on reflinkfs), then WRITES (20,000) random
# 4 KiB-aligned overwrites of the clone at the same offsets, in the same
# order, with the same data (tests/helpers/cow_frag.py, fixed seed), fsync;
# then the clone's data extents through FIEMAP (the same code on both; the
# shim answers it on reflinkfs).
#
# Asserts, on both filesystems:
#   - right after cp the clone is shared over all of SIZE;
#   - after the writes: the original still holds the fill data (sha256),
#     the rewritten clone holds the helper's model (fill data with the last
#     write to each block on top), the same sha256 on both filesystems;
#   - exactly the blocks never rewritten are still shared (FIEMAP shared
#     bytes = SIZE - distinct blocks written x 4096), in both files;
#   - reflinkfs: the same after unmount + mount (data and extent count),
#     `reflinkfs io stat` agrees with FIEMAP, fsck -n clean at the end;
#   - the issue's target: reflinkfs extents <= XFS extents (kernel XFS
#     leaves about 25,500 here).  Before the CoW fork reflinkfs fails this
#     (it allocates per write); COW_FRAG_STRICT=0 reports the counts
#     without asserting the comparison (everything else still asserted).
#
# Environment: COW_FRAG_SIZE (256M; a multiple of 1M), COW_FRAG_WRITES
# (20000), COW_FRAG_SEED (13: the offsets), COW_FRAG_STRICT (1).
# Runtime: 21-31 s under the ASan build on 2 CPUs (2026-12-07), so the
# defaults are the issue's numbers; the log line "times" gives each run's.
. "$(dirname "$0")/../lib.sh"
common_setup
command -v xfs_io >/dev/null || die "xfs_io missing (apt-get install xfsprogs)"
SHIM=${SHIM:-$(dirname "$RLFS")/libreflinkfs-preload.so}
[ -f "$SHIM" ] || die "shim not found: $SHIM"
OPS=$SRCDIR/tests/helpers/cow_frag.py
SIZE=${COW_FRAG_SIZE:-256M}
WRITES=${COW_FRAG_WRITES:-20000}
SEED=${COW_FRAG_SEED:-13}
FILLSEED=1
STRICT=${COW_FRAG_STRICT:-1}
size_bytes=$($PY -c 'import sys; s = sys.argv[1]; m = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
print(int(s[:-1]) * m[s[-1].upper()] if s[-1:].upper() in m else int(s))' "$SIZE") ||
	die "bad COW_FRAG_SIZE $SIZE"
# room for the file, its clone's rewritten blocks and the metadata
img_mib=$((size_bytes * 2 / 1048576 + WRITES * 4 / 1024 + 256))

IMG=$T/rlfs.img
MNT=$T/mnt
rlfs_mkfs "$IMG" -s "${img_mib}M"
rlfs_mount "$IMG" "$MNT"
kmount_xfs "$T/xfs.img" "$T/xfs" "${img_mib}M"

# kv FILE KEY: the value of KEY=VALUE in FILE's last line
kv() { tail -n 1 "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

t_start=$SECONDS
declare -A EXT MERGED TIME FILLED
# run_fs NAME DIR PRE...: the workload on one filesystem (PRE: the command
# prefix that puts the shim in front of FIEMAP and FICLONE, or "env")
run_fs() {
	local name=$1 d=$2 t0=$SECONDS shared_want
	shift 2
	"$@" "$PY" "$OPS" fill "$d/orig" "$SIZE" "$FILLSEED" >"$T/$name.fill" ||
		die "$name: fill failed"
	"$@" cp --reflink=always "$d/orig" "$d/copy" || die "$name: cp --reflink=always failed"
	"$@" "$PY" "$OPS" extents "$d/copy" >"$T/$name.ext0" || die "$name: FIEMAP of the clone failed"
	[ "$(kv "$T/$name.ext0" shared_bytes)" = "$size_bytes" ] ||
		die "$name: the clone is not shared over all of $SIZE: $(cat "$T/$name.ext0")"
	$PY "$OPS" rewrite "$d/copy" "$WRITES" "$SEED" "$FILLSEED" >"$T/$name.rw" ||
		die "$name: rewrite failed"
	"$@" "$PY" "$OPS" extents "$d/copy" >"$T/$name.ext" || die "$name: FIEMAP of the rewritten file failed"
	"$@" "$PY" "$OPS" extents "$d/orig" >"$T/$name.exto" || die "$name: FIEMAP of the original failed"
	EXT[$name]=$(kv "$T/$name.ext" extents)
	MERGED[$name]=$(kv "$T/$name.ext" merged)
	# every block not rewritten is still shared, every rewritten one not;
	# on reflinkfs the gap fill (-o cowfill, default 1 block) may also
	# copy up to that many not-rewritten blocks on each side of a write
	# (shared by neither file then: both counts drop alike)
	local distinct shared fill
	distinct=$(kv "$T/$name.rw" distinct)
	shared_want=$((size_bytes - distinct * 4096))
	shared=$(kv "$T/$name.ext" shared_bytes)
	[ "$(kv "$T/$name.exto" shared_bytes)" = "$shared" ] ||
		die "$name: original has $(kv "$T/$name.exto" shared_bytes) shared bytes, the rewritten file $shared"
	fill=0
	[ "$name" = rlfs ] && fill=${COW_FRAG_FILL:-1}
	[ "$shared" -le "$shared_want" ] && [ "$shared" -ge $((shared_want - 2 * fill * WRITES * 4096)) ] ||
		die "$name: rewritten file has $shared shared bytes, want $shared_want (less at most $((2 * fill)) blocks per write)"
	FILLED[$name]=$(((shared_want - shared) / 4096))
	[ "$(kv "$T/$name.ext" mapped_bytes)" = "$size_bytes" ] ||
		die "$name: rewritten file maps $(kv "$T/$name.ext" mapped_bytes) bytes, want $size_bytes"
	TIME[$name]=$((SECONDS - t0))
	log "$name: ${EXT[$name]} extents (${MERGED[$name]} merged), $(kv "$T/$name.ext" shared) shared," \
		"${FILLED[$name]} not-rewritten blocks copied by the gap fill;" \
		"$(kv "$T/$name.rw" distinct) distinct blocks rewritten, writes+fsync $(kv "$T/$name.rw" seconds) s"
}

log "workload: $SIZE file, clone, $WRITES random 4 KiB overwrites of the clone (seed $SEED)"
run_fs xfs "$T/xfs" env
run_fs rlfs "$MNT" env LD_PRELOAD="$SHIM"

# data: the model, and the same bytes on both filesystems
fill_sha=$(kv "$T/xfs.fill" sha256)
model_sha=$(kv "$T/xfs.rw" model_sha256)
[ "$(kv "$T/rlfs.fill" sha256)" = "$fill_sha" ] || die "fill data differs between the filesystems"
[ "$(kv "$T/rlfs.rw" model_sha256)" = "$model_sha" ] || die "the model differs between the runs"
[ "$(kv "$T/rlfs.rw" distinct)" = "$(kv "$T/xfs.rw" distinct)" ] || die "different offsets on the two runs"
[ "$(sha "$T/xfs/orig")" = "$fill_sha" ] || die "XFS oracle: the original changed"
[ "$(sha "$T/xfs/copy")" = "$model_sha" ] || die "XFS oracle: the rewritten file differs from the model"
# reflinkfs: from the device, not the page cache: unmount and mount again
rlfs_umount "$MNT"
rlfs_mount "$IMG" "$MNT"
[ "$(sha "$MNT/orig")" = "$fill_sha" ] || die "reflinkfs: the original changed (after remount)"
[ "$(sha "$MNT/copy")" = "$model_sha" ] ||
	die "reflinkfs: the rewritten file differs from the model (after remount)"
LD_PRELOAD=$SHIM $PY "$OPS" extents "$MNT/copy" >"$T/rlfs.ext2" || die "FIEMAP after remount failed"
[ "$(tail -n 1 "$T/rlfs.ext2")" = "$(tail -n 1 "$T/rlfs.ext")" ] ||
	die "extents changed across remount: $(cat "$T/rlfs.ext") -> $(cat "$T/rlfs.ext2")"
io_count=$("$RLFS" io -r -c stat "$MNT/copy" | awk -F' = ' '/^extents.count/ {print $2}')
[ "$io_count" = "${EXT[rlfs]}" ] || die "reflinkfs io stat says $io_count extents, FIEMAP ${EXT[rlfs]}"
log "data: original and rewritten file equal the model on both filesystems (sha256 ${model_sha:0:16})"
rlfs_umount "$MNT"
rlfs_fsck "$IMG"
kumount "$T/xfs"

log "extents of the rewritten file: reflinkfs ${EXT[rlfs]}, kernel XFS ${EXT[xfs]}" \
	"(ratio $(awk -v a="${EXT[rlfs]}" -v b="${EXT[xfs]}" 'BEGIN {printf "%.2f", a / b}');" \
	"merged: ${MERGED[rlfs]} vs ${MERGED[xfs]})"
log "times: xfs ${TIME[xfs]} s, reflinkfs ${TIME[rlfs]} s, total $((SECONDS - t_start)) s"
if [ "$STRICT" = 1 ]; then
	[ "${EXT[rlfs]}" -le "${EXT[xfs]}" ] ||
		die "reflinkfs leaves ${EXT[rlfs]} extents, more than kernel XFS's ${EXT[xfs]} (issue 13 target: <=; COW_FRAG_STRICT=0 to only report)"
else
	log "COW_FRAG_STRICT=0: extent counts reported, not compared"
fi
log "PASS"

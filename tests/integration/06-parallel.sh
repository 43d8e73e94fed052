#!/bin/bash
# Parallel writers on different files: background dd streams, many small
# files in separate directories, and an fsx per writer; then verify every
# byte (against source data / checksums), umount, fsck, remount, verify again.
# (fsx here runs without its SEEK_DATA/HOLE checks: 05-fsx covers those.)
. "$(dirname "$0")/../lib.sh"
common_setup

img=$T/par.img
mnt=$T/mnt
N=${PAR_WRITERS:-6}
rlfs_mkfs "$img" -s 2G
rlfs_mount "$img" "$mnt"

# source data: one random file per writer (different sizes)
for ((i = 0; i < N; i++)); do
	head -c $(((i + 1) * 7 * 1024 * 1024 + i * 4097)) /dev/urandom >"$T/src$i"
done
pids=()
for ((i = 0; i < N; i++)); do
	case $((i % 3)) in
	0) dd if="$T/src$i" of="$mnt/stream$i" bs=1M conv=fsync status=none & ;;
	1) dd if="$T/src$i" of="$mnt/stream$i" bs=4k status=none & ;;
	2) dd if="$T/src$i" of="$mnt/stream$i" bs=333333 oflag=sync status=none & ;;
	esac
	pids+=($!)
	# many small files per writer in its own directory
	(
		mkdir -p "$mnt/dir$i"
		for ((k = 0; k < 300; k++)); do
			printf 'writer %d file %d %0*d\n' $i $k $((k * 13 % 9000)) 0 >"$mnt/dir$i/f$k"
		done
	) &
	pids+=($!)
	run_to 600 "$FSX" -q -X s -N 3000 -S $((i + 500)) -l 8M -m "$T/model$i" "$mnt/fsx$i" >"$T/fsx$i.log" 2>&1 &
	pids+=($!)
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
if [ $fail != 0 ]; then
	cat "$T"/fsx*.log >&2
	die "a parallel writer failed"
fi
log "$((N * 3)) parallel writers finished"

verify() {
	local i k
	for ((i = 0; i < N; i++)); do
		cmp "$T/src$i" "$mnt/stream$i" || die "stream$i differs ($1)"
		cmp "$T/model$i" "$mnt/fsx$i" || die "fsx$i differs from its model ($1)"
		for ((k = 0; k < 300; k += 37)); do
			[ "$(cat "$mnt/dir$i/f$k")" = "$(printf 'writer %d file %d %0*d' $i $k $((k * 13 % 9000)) 0)" ] ||
				die "dir$i/f$k differs ($1)"
		done
		[ "$(ls "$mnt/dir$i" | wc -l)" = 300 ] || die "dir$i has $(ls "$mnt/dir$i" | wc -l) files ($1)"
	done
	log "all data verified ($1)"
}
verify "before unmount"
# parallel readers while verifying: read all streams at once
rpids=()
for ((i = 0; i < N; i++)); do cat "$mnt/stream$i" >/dev/null & rpids+=($!); done
for p in "${rpids[@]}"; do wait "$p" || die "a parallel reader failed"; done
rlfs_umount "$mnt"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt"
verify "after remount"
# parallel deletes
for ((i = 0; i < N; i++)); do rm -rf "$mnt/dir$i" "$mnt/stream$i" "$mnt/fsx$i" & done
wait
[ -z "$(ls -A "$mnt")" ] || die "not empty after parallel deletes: $(ls -A "$mnt" | sed -n '1,10p')"
rlfs_umount "$mnt"
rlfs_fsck "$img"
log OK

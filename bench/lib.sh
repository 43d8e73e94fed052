# bench/lib.sh: shell helpers shared by the benchmark scripts (bench/bench.sh,
# bench/dedupe.sh).  Sourced, bash only; defines functions and nothing else
# (no side effects when sourced).  Every helper fails (non-zero status, and
# under `set -e` the script stops) when the command it wraps fails.

# now: wall-clock time in seconds with nanoseconds (date +%s.%N)
now() { date +%s.%N; }
# elapsed T0 T1: T1 - T0 in seconds, 3 decimals
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
# used_kb DIR: df's used KiB of the filesystem holding DIR
used_kb() { df -P -k "$1" | awk 'NR==2 {print $3}'; }
# free_bytes DIR: statfs(2) free blocks x fundamental block size (f_bfree x
# f_frsize, `stat -f`), bytes; the difference of two readings is the space
# freed in between, metadata included
free_bytes() { stat -f -c '%f %S' "$1" | awk '{printf "%.0f", $1 * $2}'; }
# drop_caches: write back dirty data, then drop the page cache, dentries and
# inodes (echo 3 > /proc/sys/vm/drop_caches; needs root)
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# warm_memory: touch WARM_MB MiB of memory in /dev/shm and free it again
# (virtio-balloon free page reporting: see bench/bench.sh's header);
# WARM_MB=0 turns it off
warm_memory() {
	[ "${WARM_MB:-0}" -gt 0 ] || return 0
	dd if=/dev/zero of=/dev/shm/rlfs-bench-warm bs=1M count="$WARM_MB" status=none
	rm -f /dev/shm/rlfs-bench-warm
}

# xfs_mkfs_image IMG SIZE MOPTS: a fresh sparse image file of SIZE
# (truncate(1) units) holding `mkfs.xfs -m MOPTS` (e.g. reflink=1,rmapbt=1)
xfs_mkfs_image() {
	rm -f "$1"
	truncate -s "$2" "$1"
	mkfs.xfs -q -f -m "$3" "$1"
}
# xfs_mount_image IMG MNT [dio]: mount the image on MNT (created if
# missing) through a loop device: `mount -o loop` (buffered loop device, the
# kernel detaches it at umount), or with dio a loop device with direct I/O
# (losetup --direct-io=on; detach with loop_detach after the umount)
xfs_mount_image() {
	mkdir -p "$2"
	if [ "${3:-}" = dio ]; then
		mount "$(losetup -f --show --direct-io=on "$1")" "$2"
	else
		mount -o loop "$1" "$2"
	fi
}
# loop_detach IMG: detach every loop device backed by IMG (none: no-op)
loop_detach() {
	local dev
	for dev in $(losetup -j "$1" -O NAME -n); do losetup -d "$dev"; done
}
# rlfs_mkfs_image RLFS IMG SIZE [MKFS-ARGS...]: a fresh reflinkfs image
# (`RLFS mkfs -s SIZE [MKFS-ARGS] IMG`, output dropped)
rlfs_mkfs_image() {
	local rlfs=$1 img=$2 size=$3
	shift 3
	rm -f "$img"
	"$rlfs" mkfs -s "$size" "$@" "$img" >/dev/null
}
# rlfs_mount_image RLFS IMG MNT MOUNT-OPT: `RLFS mount -o MOUNT-OPT IMG MNT`
# (MNT created if missing; MOUNT-OPT e.g. nouring or uring)
rlfs_mount_image() {
	mkdir -p "$3"
	"$1" mount -o "$4" "$2" "$3"
}
# rlfs_umount_image IMG MNT: unmount a reflinkfs mount and wait (up to 60 s)
# for the daemon to let go of the image's lock, so the image is complete
rlfs_umount_image() {
	fusermount3 -u "$2"
	flock -w 60 "$1" true
}
# umount_any MNT: for cleanup traps: unmount whatever is mounted on MNT
# (FUSE or kernel; lazily as the last resort); never fails
umount_any() {
	if mountpoint -q "$1"; then
		fusermount3 -u "$1" 2>/dev/null || umount "$1" 2>/dev/null || umount -l "$1"
	fi
	return 0
}
# measure OUT CMD...: run CMD (stdout and stderr appended to OUT), print
# "seconds peak_rss_kib exit_status".  GNU time (/usr/bin/time, Debian
# package `time`) gives the command's own peak RSS (%M); without it a python
# wrapper's getrusage(RUSAGE_CHILDREN), floored at the forked interpreter's
# size (about 14 MiB).  Never fails: the status is in the output.
measure() {
	local out=$1 tf rc
	shift
	if [ -x /usr/bin/time ]; then
		tf=$(mktemp)
		rc=0
		/usr/bin/time -f '%e %M' -o "$tf" "$@" >>"$out" 2>&1 || rc=$?
		echo "$(tail -n 1 "$tf") $rc"
		rm -f "$tf"
		return 0
	fi
	python3 - "$out" "$@" <<'PYEOF'
import resource, subprocess, sys, time
with open(sys.argv[1], "ab") as log:
    t0 = time.monotonic()
    p = subprocess.run(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
    t = time.monotonic() - t0
print("%.2f %d %d" % (t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode))
PYEOF
}

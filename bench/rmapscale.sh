#!/bin/bash
# The reverse map at scale (issue 11 section 5), kernel XFS (rmapbt=1,
# loop-mounted image) against reflinkfs, in one run:
#
#   bench/rmapscale.sh BUILD
#
#   fsmap   a filesystem holding RECS (1,000,000) rmap records (one file of
#           RECS unwritten extents: fallocate of every other 4 KiB block,
#           bench/reflink.c prealloc; no data written), then GETFSMAP of the
#           whole filesystem: `xfs_io -c fsmap` on both (on reflinkfs
#           through the LD_PRELOAD shim, which turns FS_IOC_GETFSMAP into
#           the private ioctl), `reflinkfs fsmap MOUNT` and `reflinkfs fsmap
#           IMAGE` (offline).  Wall time and the tool's peak RSS; for
#           reflinkfs also the daemon's RSS before and after.
#   fsck    a FSCK_SIZE (100 GiB) sparse image holding a copy of COPY_SRC
#           (/usr/share/doc) and CLONES (3) clones of it (cp -a inside the
#           filesystem: reflinks), unmounted; `xfs_repair -n` against
#           `reflinkfs fsck -n`: wall time and peak RSS.
# Environment: BENCH_DIR (/var/tmp), RECS, FSCK_SIZE, COPY_SRC, CLONES.
# Prints markdown tables; no targets are checked here (docs/BENCHMARKS.md
# says what they are).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -eu -o pipefail

BUILD=$(cd "${1:-build}" && pwd)
RLFS=$BUILD/reflinkfs
SHIM=$BUILD/libreflinkfs-preload.so
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp}
RECS=${RECS:-1000000}
FSCK_SIZE=${FSCK_SIZE:-100G}
COPY_SRC=${COPY_SRC:-/usr/share/doc}
CLONES=${CLONES:-3}

[ "$(id -u)" = 0 ] || { echo "rmapscale: run as root" >&2; exit 1; }
[ -x "$RLFS" ] && [ -e "$SHIM" ] || { echo "rmapscale: no $RLFS or $SHIM (make build)" >&2; exit 1; }
W=$(mktemp -d "$BENCH_DIR/rlfs-rmapscale.XXXXXX")
REFLINK=$W/reflink
cc -O2 -o "$REFLINK" "$SRCDIR/bench/reflink.c"

cleanup() {
	set +e
	for m in "$W/rlfs" "$W/xfs"; do
		if mountpoint -q "$m"; then
			fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m"
		fi
	done
	flock -w 30 "$W/rlfs.img" true 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# measure CMD...: run CMD (stdout to /dev/null), print "seconds maxrss_kib".
# GNU time's %M is the command's own peak; the python fallback's is floored
# at the forked python's size before exec (about 14 MiB).
measure() {
	if [ -x /usr/bin/time ]; then
		local out
		out=$(/usr/bin/time -f '%e %M' "$@" 2>&1 >/dev/null | tail -n 1)
		echo "$out"
		return
	fi
	python3 - "$@" <<'PYEOF'
import resource, subprocess, sys, time
t0 = time.monotonic()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
t = time.monotonic() - t0
if p.returncode not in (0,):
    sys.stderr.write(p.stderr.decode(errors="replace")[-2000:])
    sys.exit("rmapscale: %s exited %d" % (sys.argv[1], p.returncode))
print("%.2f %d" % (t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
PYEOF
}
daemon_rss_kib() { # image: RSS of the daemon holding its lock
	local key pid
	key=$(stat -L -c '%Hd %Ld %i' "$1")
	# shellcheck disable=SC2086
	key=$(printf '%02x:%02x:%s' $key)
	pid=$(awk -v k="$key" '$2 == "FLOCK" && $6 == k {print $5; exit}' /proc/locks)
	awk '/^VmRSS/ {print $2}' "/proc/$pid/status"
}
mount_fs() { # fs size
	case $1 in
	rlfs)
		"$RLFS" mkfs -f -s "$2" "$W/rlfs.img" >/dev/null
		mkdir -p "$W/rlfs"
		"$RLFS" mount "$W/rlfs.img" "$W/rlfs" ;;
	xfs)
		rm -f "$W/xfs.img"
		truncate -s "$2" "$W/xfs.img"
		mkfs.xfs -q -f -m reflink=1,rmapbt=1 "$W/xfs.img"
		mkdir -p "$W/xfs"
		mount -o loop "$W/xfs.img" "$W/xfs" ;;
	esac
}
umount_fs() {
	case $1 in
	rlfs) fusermount3 -u "$W/rlfs"; flock -w 120 "$W/rlfs.img" true ;;
	xfs) umount "$W/xfs" ;;
	esac
}

echo "rmapscale: $RECS rmap records; fsck of a $FSCK_SIZE image with $COPY_SRC and $CLONES clones" >&2
declare -A M
# --- fsmap of RECS records ------------------------------------------------
img_size=$(( (RECS * 8192 / 1073741824 + 4) ))G
for fs in xfs rlfs; do
	mount_fs $fs "$img_size"
	echo "rmapscale: $fs: $("$REFLINK" prealloc "$W/$fs/f" "$RECS")" >&2
	sync
	if [ $fs = xfs ]; then
		M[xfs.recs]=$(xfs_io -c fsmap "$W/xfs" | grep -Ec '^[[:space:]]*[0-9]+:')
		M[xfs.fsmap]=$(measure xfs_io -c fsmap "$W/xfs")
		umount_fs xfs
	else
		M[rlfs.recs]=$(LD_PRELOAD=$SHIM xfs_io -c fsmap "$W/rlfs" | grep -Ec '^[[:space:]]*[0-9]+:')
		rss0=$(daemon_rss_kib "$W/rlfs.img")
		M[rlfs.shim]=$(LD_PRELOAD=$SHIM measure xfs_io -c fsmap "$W/rlfs")
		M[rlfs.mounted]=$(measure "$RLFS" fsmap "$W/rlfs")
		rss1=$(daemon_rss_kib "$W/rlfs.img")
		M[rlfs.daemon]="$rss0 $rss1"
		umount_fs rlfs
		M[rlfs.offline]=$(measure "$RLFS" fsmap "$W/rlfs.img")
		rm -f "$W/rlfs.img"
	fi
	rm -f "$W/xfs.img"
done
# --- fsck of a big sparse image with a tree and its clones ----------------
for fs in xfs rlfs; do
	mount_fs $fs "$FSCK_SIZE"
	cp -a "$COPY_SRC" "$W/$fs/copy"
	for ((i = 1; i <= CLONES; i++)); do cp -a "$W/$fs/copy" "$W/$fs/clone$i"; done
	sync
	M[$fs.used]=$(df -P -k "$W/$fs" | awk 'NR==2 {printf "%d", $3 / 1024}')
	umount_fs $fs
	if [ $fs = xfs ]; then
		M[xfs.fsck]=$(measure xfs_repair -n "$W/xfs.img")
		rm -f "$W/xfs.img"
	else
		M[rlfs.fsck]=$(measure "$RLFS" fsck -n "$W/rlfs.img")
		rm -f "$W/rlfs.img"
	fi
done

t() { echo "${M[$1]}" | awk '{print $1}'; }
rss() { echo "${M[$1]}" | awk '{printf "%.1f", $2 / 1024}'; }
echo
echo "Machine: $(nproc) CPUs, kernel $(uname -r); reflinkfs commit $(cd "$SRCDIR" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo
echo "GETFSMAP of the whole filesystem: one file of $RECS unwritten extents (XFS lists ${M[xfs.recs]} records, reflinkfs ${M[rlfs.recs]})."
echo
echo "| tool | time | peak RSS of the tool | ratio (XFS time / this time) |"
echo "| --- | --- | --- | --- |"
row() { # label key baseline-key
	printf '| %s | %s s | %s MiB | %s |\n' "$1" "$(t "$2")" "$(rss "$2")" \
		"$(awk -v a="$(t "$3")" -v b="$(t "$2")" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')"; }
row "XFS: xfs_io -c fsmap (kernel GETFSMAP)" xfs.fsmap xfs.fsmap
row "reflinkfs: xfs_io -c fsmap through the shim" rlfs.shim xfs.fsmap
row "reflinkfs: reflinkfs fsmap MOUNT" rlfs.mounted xfs.fsmap
row "reflinkfs: reflinkfs fsmap IMAGE (offline)" rlfs.offline xfs.fsmap
set -- ${M[rlfs.daemon]}
echo
echo "reflinkfs daemon RSS: $(( $1 / 1024 )) MiB before the two mounted fsmap runs, $(( $2 / 1024 )) MiB after."
echo
echo "fsck of a $FSCK_SIZE sparse image holding $COPY_SRC and $CLONES clones of it (df used: XFS ${M[xfs.used]} MiB, reflinkfs ${M[rlfs.used]} MiB)."
echo
echo "| tool | time | peak RSS | ratio (XFS time / this time) |"
echo "| --- | --- | --- | --- |"
row "xfs_repair -n" xfs.fsck xfs.fsck
row "reflinkfs fsck -n" rlfs.fsck xfs.fsck

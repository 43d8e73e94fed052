# Shared helpers for reflinkfs integration tests (bash).  Source it first:
#   . "$(dirname "$0")/../lib.sh"
#
# Environment (set by tests/run.sh; defaults let a test run by hand):
#   RLFS  path of the reflinkfs binary      FSX  path of rlfs-fsx
#   T     private temp dir of this test (created if unset, removed at exit
#         when we created it)
#   SRCDIR  top of the source tree
#
# Everything a test mounts through these helpers (reflinkfs FUSE mounts,
# kernel XFS/ext4 loop mounts) and every loop device it attaches is
# unmounted / detached by an EXIT trap, also when the test fails or is
# killed by timeout(1) with SIGTERM.  Background jobs started with bg_run
# are killed the same way.

set -eu -o pipefail

SRCDIR=${SRCDIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
RLFS=${RLFS:-$SRCDIR/build-asan/reflinkfs}
FSX=${FSX:-$(dirname "$RLFS")/rlfs-fsx}
if [ -x /usr/bin/python3 ]; then PY=${PY:-/usr/bin/python3}; else PY=${PY:-python3}; fi
TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
# Seconds any single mount/fsck may take before we call it a hang.
CMD_TIMEOUT=${CMD_TIMEOUT:-120}
# Unmounting waits for the daemon as long as it makes progress (no fixed
# time: a loaded machine can make that minutes); a daemon that makes none
# at all (no I/O, no CPU time, not waiting for the disk) for STALL_SECS
# seconds is hung.  See daemon_wait.
STALL_SECS=${STALL_SECS:-120}

_LIB_OWN_T=0
if [ -z "${T:-}" ]; then
	T=$(mktemp -d "${TMPDIR:-/tmp}/rlfs-$TEST_NAME.XXXXXX")
	_LIB_OWN_T=1
fi
mkdir -p "$T"

_MOUNTS=()      # mount points, in mount order
_MOUNT_IMG=()   # image of each reflinkfs mount point ("" for kernel mounts)
_LOOPS=()       # image files whose loop devices we must detach
_BGPIDS=()

log() { printf '[%s] %s\n' "$TEST_NAME" "$*"; }
# Daemons started by this test write their log (logmsg: flush stalls,
# cache invalidation failures, faults) here instead of syslog; a failing
# test prints its end.
export RLFS_LOG_FILE=${RLFS_LOG_FILE:-$T/daemon.log}
die() {
	if [ -s "$RLFS_LOG_FILE" ]; then
		echo "--- end of the daemons' log ($RLFS_LOG_FILE):" >&2
		tail -n 15 "$RLFS_LOG_FILE" >&2
	fi
	printf '[%s] FAIL: %s\n' "$TEST_NAME" "$*" >&2
	exit 1
}

_lib_cleanup() {
	local rc=$? i mp
	set +e
	for pid in "${_BGPIDS[@]}"; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	for ((i = ${#_MOUNTS[@]} - 1; i >= 0; i--)); do
		mp=${_MOUNTS[i]}
		[ -n "$mp" ] || continue
		if mountpoint -q "$mp" 2>/dev/null; then
			fusermount3 -u "$mp" 2>/dev/null || umount "$mp" 2>/dev/null ||
				umount -l "$mp" 2>/dev/null || fusermount3 -uz "$mp" 2>/dev/null
		fi
		# wait for a FUSE daemon to let go of its image
		if [ -n "${_MOUNT_IMG[i]}" ] && [ -e "${_MOUNT_IMG[i]}" ]; then
			wait_release "${_MOUNT_IMG[i]}"
		fi
	done
	for img in "${_LOOPS[@]}"; do
		for dev in $(losetup -j "$img" -O NAME -n 2>/dev/null); do
			losetup -d "$dev" 2>/dev/null
		done
	done
	if [ "$_LIB_OWN_T" = 1 ] && [ "${KEEP:-0}" != 1 ]; then
		rm -rf --one-file-system "$T"   # never follow a mount left inside
	fi
	exit $rc
}
trap _lib_cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

need_root() {
	[ "$(id -u)" = 0 ] || die "must run as root"
}

need_fuse() {
	[ -c /dev/fuse ] || die "/dev/fuse is missing (modprobe fuse)"
	command -v fusermount3 >/dev/null || die "fusermount3 missing (apt-get install fuse3)"
}

need_bins() {
	[ -x "$RLFS" ] || die "reflinkfs binary not found: $RLFS"
	[ -x "$FSX" ] || die "rlfs-fsx binary not found: $FSX"
}

# run_to SECONDS CMD...: run with a timeout; exit status 124 means it hung.
run_to() {
	local secs=$1; shift
	timeout -k 10 "$secs" "$@"
}

# rlfs_mkfs IMAGE [mkfs options...]  (default size 1G if no -s given)
rlfs_mkfs() {
	local img=$1; shift
	local has_s=0 a
	for a in "$@"; do [ "$a" = -s ] && has_s=1; done
	if [ $has_s = 0 ] && [ ! -e "$img" ]; then set -- -s 1G "$@"; fi
	run_to "$CMD_TIMEOUT" "$RLFS" mkfs "$@" "$img" >"$T/mkfs.out" 2>&1 ||
		{ cat "$T/mkfs.out" >&2; die "mkfs $* $img failed"; }
}

# rlfs_mount IMAGE DIR [-o OPTS]: mount and register for cleanup.
rlfs_mount() {
	local img=$1 dir=$2; shift 2
	mkdir -p "$dir"
	_MOUNTS+=("$dir")
	_MOUNT_IMG+=("$img")
	run_to "$CMD_TIMEOUT" "$RLFS" mount "$@" "$img" "$dir" ||
		die "mount $img $dir failed (exit $?)"
	mountpoint -q "$dir" || die "mount of $img returned but $dir is not a mount point"
	[ "${RLFS_URING:-0}" != 1 ] || uring_check "$img"
	[ "${RLFS_DAX:-0}" != 1 ] || dax_check "$img"
}

# dax_check IMG: the daemon serving IMG (RLFS_DAX=1, -o dax) has the image
# mapped shared (a "s" mapping of it in /proc/PID/maps).
dax_check() {
	local pid i found=0 real
	real=$(realpath "$1")
	for ((i = 0; i < 50; i++)); do
		for pid in $(pgrep -f -- "reflinkfs mount .*$1"); do
			found=1
			if grep -F -- "$real" /proc/"$pid"/maps 2>/dev/null | grep -q ' ..[w-]s '; then
				return 0
			fi
		done
		sleep 0.1
	done
	[ $found = 1 ] || die "dax_check: no daemon for $1"
	die "dax_check: the daemon of $1 has no shared mapping of the image"
}

# uring_check IMG: the daemon serving IMG has io_uring instances (one per
# CPU queue) a moment after mount, i.e. it did not fall back to /dev/fuse.
uring_check() {
	local pid i found=0
	# every process that matches, each time: right after a mount the
	# daemon's exiting parent (or a previous daemon of the same image
	# still exiting) matches too, and neither has rings
	for ((i = 0; i < 100; i++)); do
		for pid in $(pgrep -f -- "reflinkfs mount .*$1"); do
			found=1
			if [ "$(ls -l /proc/"$pid"/fd 2>/dev/null | grep -c 'io_uring')" -ge "$(nproc)" ]; then
				return 0
			fi
		done
		sleep 0.1
	done
	[ $found = 1 ] || die "uring_check: no daemon for $1"
	die "uring_check: the daemon of $1 does not use io_uring"
}

# daemon_of IMAGE: the pid of the process holding IMAGE's lock (its
# daemon), from /proc/locks ("N: FLOCK ADVISORY WRITE PID MAJ:MIN:INO ...",
# device numbers in hex); empty if nobody holds it.
daemon_of() {
	local key
	key=$(stat -L -c '%Hd %Ld %i' "$1" 2>/dev/null) || return 0
	# shellcheck disable=SC2086
	key=$(printf '%02x:%02x:%s' $key)
	awk -v k="$key" '$2 == "FLOCK" && $6 == k {print $5; exit}' /proc/locks
}

# fsck_rc ARGS...: run `reflinkfs fsck ARGS`, its output in $T/fsck.out and
# its exit status in FRC; a crash or hang fails the test
fsck_rc() {
	FRC=0
	run_to "$CMD_TIMEOUT" "$RLFS" fsck "$@" >"$T/fsck.out" 2>&1 || FRC=$?
	is_crash $FRC && { tail -20 "$T/fsck.out" >&2; die "fsck $* crashed or hung ($FRC)"; }
	return 0
}

# kill_daemon IMG MNT: kill -9 the daemon serving IMG, drop its dead
# mount MNT (no longer unmounted at exit) and wait until the image's lock
# is free
kill_daemon() {
	local img=$1 mnt=$2 pid i
	pid=$(daemon_of "$img")
	[ -n "$pid" ] || die "no daemon holds $img"
	kill -9 "$pid"
	for ((i = 0; i < 200; i++)); do [ -e "/proc/$pid" ] || break; sleep 0.05; done
	[ ! -e "/proc/$pid" ] || die "daemon $pid survived kill -9"
	for ((i = ${#_MOUNTS[@]} - 1; i >= 0; i--)); do
		[ "${_MOUNTS[i]}" = "$mnt" ] && { _MOUNTS[i]=""; break; }
	done
	fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	run_to 60 flock -w 50 "$img" true || die "the dead daemon still holds $img"
}

# daemon_sample PID: "IO|cpu TICKS STATE|STEP", a line that changes
# whenever the process makes progress (IO: its /proc/PID/io counters;
# TICKS: its CPU time), STATE D while one of its threads waits for the
# disk, STEP its unmount step (the daemon's status thread is named
# um-drain, um-meta 45%, ...: fuse/session.c).  Fails if it is gone.
daemon_sample() {
	local pid=$1 io cpu step
	io=$(tr '\n' ' ' <"/proc/$pid/io" 2>/dev/null) || return 1
	# after "pid (comm) ": state utime(12th) stime(13th)
	cpu=$(cat /proc/"$pid"/task/*/stat 2>/dev/null | sed 's/.*) //' |
		awk '{t += $12 + $13; if ($1 == "D") d = 1} END {print t, (d ? "D" : "-")}') || return 1
	step=$(cat /proc/"$pid"/task/*/comm 2>/dev/null | grep -m1 '^um-' || true)
	echo "$io|cpu $cpu|${step:-no unmount step yet}"
}

# daemon_wait PIDFN ARG WHAT CMD...: wait while CMD succeeds (what we wait
# for has not happened), as long as the daemon (pid: PIDFN ARG, e.g.
# daemon_of IMAGE) makes progress: returns 1 (with a message) once it has
# made none for STALL_SECS seconds or, with no daemon to watch, once
# STALL_SECS have passed.  Says every 30 s what it is waiting for.
daemon_wait() {
	local pidfn=$1 arg=$2 what=$3 pid cur last="" t0=$SECONDS said=$SECONDS moved=$SECONDS
	shift 3
	while "$@"; do
		pid=$($pidfn "$arg")
		cur=""
		[ -z "$pid" ] || cur=$(daemon_sample "$pid") || cur=""
		if [ -n "$cur" ] && { [ "$cur" != "$last" ] || [[ $cur == *" D|"* ]]; }; then
			moved=$SECONDS
			last=$cur
		fi
		if ((SECONDS - moved >= STALL_SECS)); then
			log "$what: daemon ${pid:-(none found)} made no progress for $((SECONDS - moved)) s${cur:+ (${cur##*|}; $(tr -s ' ' <<<"${cur%%|*}"))}"
			return 1
		fi
		if ((SECONDS - said >= 30)); then
			log "still waiting for $what ($((SECONDS - t0)) s; daemon ${pid:-?}: ${cur##*|})"
			said=$SECONDS
		fi
		if ((SECONDS - t0 < 2)); then sleep 0.05; else sleep 0.5; fi
	done
	return 0
}

_image_locked() { ! flock -n "$1" true 2>/dev/null; }
_pid_of() { echo "$1"; }
alive() { kill -0 "$1" 2>/dev/null; }

# wait_release IMAGE: wait until the daemon has flushed and closed IMAGE
# (released its lock), however long that takes while it makes progress.
wait_release() {
	daemon_wait daemon_of "$1" "the daemon to release $1" _image_locked "$1"
}

# rlfs_umount DIR: unmount (flushes) and wait until the daemon released the
# image.  Neither step has a fixed time limit: both wait as long as the
# daemon makes progress (daemon_wait).
rlfs_umount() {
	local dir=$1 i img="" upid rc=0
	for ((i = ${#_MOUNTS[@]} - 1; i >= 0; i--)); do
		if [ "${_MOUNTS[i]}" = "$dir" ]; then
			img=${_MOUNT_IMG[i]}
			_MOUNTS[i]=""
			break
		fi
	done
	if [ -z "$img" ]; then
		run_to "$CMD_TIMEOUT" fusermount3 -u "$dir" || run_to "$CMD_TIMEOUT" umount "$dir" ||
			die "unmount of $dir failed"
		return 0
	fi
	# umount(2) itself can wait for the daemon (requests still queued)
	fusermount3 -u "$dir" &
	upid=$!
	daemon_wait daemon_of "$img" "the unmount of $dir" alive "$upid" ||
		die "unmount of $dir hangs"
	wait "$upid" || rc=$?
	[ $rc = 0 ] || umount "$dir" || die "unmount of $dir failed (fusermount3 exit $rc)"
	wait_release "$img" || die "the daemon did not release $img after the unmount of $dir"
}

# rlfs_fsck IMAGE: read-only check, must be clean (exit 0).
rlfs_fsck() {
	local img=$1 rc=0
	run_to "$CMD_TIMEOUT" "$RLFS" fsck -n "$img" >"$T/fsck.out" 2>&1 || rc=$?
	if [ $rc != 0 ]; then
		tail -n 30 "$T/fsck.out" >&2
		die "fsck -n $img exited $rc (expected 0 clean)"
	fi
	log "fsck clean: $img"
}

# kmount_xfs IMAGE DIR [SIZE [MKFS_ARGS...]]: sparse image + mkfs.xfs (reflink, rmapbt,
# then MKFS_ARGS) + loop mount.
kmount_xfs() {
	local img=$1 dir=$2 size=${3:-1G}
	shift 3 2>/dev/null || shift $#
	rm -f "$img"
	truncate -s "$size" "$img"
	mkfs.xfs -q -f -m reflink=1,rmapbt=1 "$@" "$img" || die "mkfs.xfs failed"
	mkdir -p "$dir"
	_LOOPS+=("$img")
	_MOUNTS+=("$dir")
	_MOUNT_IMG+=("")
	mount -o loop "$img" "$dir" || die "mount -o loop $img failed"
}

# mounts_for_users SIZE: the two filesystems of a differential test whose
# cases run as other users (nobody, through tests/helpers/posix_ops.py
# child_as): reflinkfs on $T/rlfs.img at $T/mnt with allow_other and kernel
# XFS on $T/xfs.img at $T/xfs, both SIZE; $T is searchable and both mount
# points are open (0755) to everyone.  Sets IMG and MNT; cleanup unmounts
# both.
mounts_for_users() {
	local size=$1
	chmod 0711 "$T"
	IMG=$T/rlfs.img
	MNT=$T/mnt
	rlfs_mkfs "$IMG" -s "$size"
	rlfs_mount "$IMG" "$MNT" -o allow_other
	chmod 0755 "$MNT"
	kmount_xfs "$T/xfs.img" "$T/xfs" "$size"
	chmod 0755 "$T/xfs"
}

# kumount DIR: unmount a kernel mount made by kmount_xfs.
kumount() {
	local dir=$1 i
	for ((i = ${#_MOUNTS[@]} - 1; i >= 0; i--)); do
		[ "${_MOUNTS[i]}" = "$dir" ] && { _MOUNTS[i]=""; break; }
	done
	umount "$dir" || umount -l "$dir"
}

# bg_run CMD...: start a background job that cleanup will kill.
bg_run() {
	"$@" &
	_BGPIDS+=($!)
}

# expect_rc WANT CMD...: run CMD, require its exit status to be WANT.
expect_rc() {
	local want=$1 rc=0; shift
	"$@" || rc=$?
	[ "$rc" = "$want" ] || die "expected exit $want from '$*', got $rc"
}

# df_used_kb DIR / df_avail_kb DIR (1K blocks, from statfs)
df_used_kb() { df -P -k "$1" | awk 'NR==2 {print $3}'; }
df_avail_kb() { df -P -k "$1" | awk 'NR==2 {print $4}'; }
df_free_blocks() { stat -f -c '%f' "$1"; }
df_free_inodes() { stat -f -c '%d' "$1"; }

# tree_fingerprint DIR: listing of types, modes, sizes, link targets and
# content hashes, sorted (independent of readdir order).
tree_fingerprint() {
	(cd "$1" && find . \( -type d -printf '%y %m %U:%G %p\n' \) -o \
		-printf '%y %m %s %n %U:%G %p -> %l\n' | LC_ALL=C sort)
}

# write_frag FILE NBLOCKS STEP [UNWRITTEN [SYNC]]: a fragmented file of
# NBLOCKS 4 KiB blocks, through `reflinkfs io` in one process: block i
# with i % STEP == 0 written with the byte i % 251; with UNWRITTEN=1 block
# i with i % STEP == 1 preallocated (falloc -k, unwritten); the rest
# holes.  No two extents merge, so a few hundred of them need a bmbt.  The
# size is that of the last written block's end (truncate for more).
# SYNC=1: fdatasync after every write, so the blocks are allocated in file
# order (the page cache's writeback order varies: a test comparing block
# numbers needs this).
write_frag() {
	local file=$1 n=$2 step=$3 unw=${4:-0} sync=${5:-0} i
	for ((i = 0; i < n; i++)); do
		if ((i % step == 0)); then
			echo "pwrite -S $((i % 251)) $((i * 4096)) 4096"
			((sync)) && echo fdatasync
		elif ((unw && i % step == 1)); then
			echo "falloc -k $((i * 4096)) 4096"
		fi
	done | "$RLFS" io -f "$file" >/dev/null || die "write_frag $file failed"
}

common_setup() {
	need_root
	need_fuse
	need_bins
}

# rlfs_mount_fg IMAGE DIR [opts]: run the daemon in the foreground (-f) in
# the background of this shell, so that its exit status and stderr
# (sanitizer reports, crash) can be checked.  Sets FG_PID, FG_LOG.
# Returns 0 once DIR is mounted, 1 if the daemon exited before mounting
# (FG_RC holds its exit status).
rlfs_mount_fg() {
	local img=$1 dir=$2 i; shift 2
	mkdir -p "$dir"
	FG_LOG=$T/daemon.$RANDOM.log
	"$RLFS" mount -f "$@" "$img" "$dir" >"$FG_LOG" 2>&1 &
	FG_PID=$!
	_BGPIDS+=("$FG_PID")
	_MOUNTS+=("$dir")
	_MOUNT_IMG+=("$img")
	for ((i = 0; i < 600; i++)); do
		if mountpoint -q "$dir"; then return 0; fi
		if ! kill -0 "$FG_PID" 2>/dev/null; then
			FG_RC=0
			wait "$FG_PID" || FG_RC=$?
			return 1
		fi
		sleep 0.1
	done
	die "foreground daemon for $img neither mounted nor exited within 60 s"
}

# rlfs_umount_fg DIR: unmount a foreground mount and return the daemon's
# exit status (dies if the daemon does not exit within 60 s).
rlfs_umount_fg() {
	local dir=$1 i rc=0
	for ((i = ${#_MOUNTS[@]} - 1; i >= 0; i--)); do
		[ "${_MOUNTS[i]}" = "$dir" ] && { _MOUNTS[i]=""; break; }
	done
	fusermount3 -u "$dir" 2>/dev/null || umount "$dir" 2>/dev/null || umount -l "$dir"
	daemon_wait _pid_of "$FG_PID" "daemon $FG_PID to exit" alive "$FG_PID" ||
		die "daemon $FG_PID did not exit after unmount"
	wait "$FG_PID" || rc=$?
	return $rc
}

# is_crash RC: true if an exit status means a crash or a sanitizer abort.
is_crash() {
	[ "$1" -ge 124 ] || [ "$1" = 23 ]  # timeout/signals; 23 = LeakSanitizer default
}

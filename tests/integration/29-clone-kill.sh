#!/bin/bash
# 29-clone-kill: a clone-while-writing workload (fstests generic/334
# pattern) SIGKILLed part-way, then a plain unmount, must leave a clean,
# sane image; a long clone must neither outlive its killed caller nor
# block the readers of its source (generic/297, 298, 733 patterns).
#
# 1. Rounds of tests/helpers/clone_kill.py: writers rewrite src (buffered
#    and O_DIRECT) while cloners snapshot it, clone over, truncate and
#    delete snapshots, and one process clones DIR/big (2^16 extents: long
#    clones) again and again; every process is SIGKILLed at a random
#    moment.  Right after the kill, plain umount(8) must succeed at the
#    first try (a killed caller's clone stops between pieces, so the
#    caller is gone at once; before, it sat in the kernel until the clone
#    was done and the mount was busy), the daemon must let go of the image,
#    fsck -n must be clean, and after a remount every file holds only data
#    that was written at some point (no metadata bytes, no torn records).
# 2. SIGINT (default action: fatal) and SIGKILL to the caller of a long
#    clone of big (FICLONE-like ioctl, and copy_file_range, which the
#    daemon turns into a clone) stop the clone part-way: the caller dies
#    at once, the unmount right after works, fsck is clean.
# 3. Reads of big go on while big is being cloned (the source's lock is
#    shared): they all complete before the clone does.
# 4. The workload once more, unmounted, and the daemon SIGKILLed the moment
#    the superblock on disk says CLEAN: the image must check clean (the
#    CLEAN state is written only after everything else is on disk; before,
#    it went first and the kill left torn trees behind it).
. "$(dirname "$0")/../lib.sh"
common_setup
CK=$SRCDIR/tests/helpers/clone_kill.py
IMG=$T/ck.img
MNT=$T/mnt
ROUNDS=${ROUNDS:-3}

daemon_pid() {   # the daemon serving $IMG
	pgrep -f -- "reflinkfs mount .*$IMG" | head -1
}

# unmount_first_try: umount(8) once, no retry; then wait for the image
# (as long as the daemon makes progress: wait_release).
unmount_first_try() {
	local i
	for ((i = ${#_MOUNTS[@]} - 1; i >= 0; i--)); do
		[ "${_MOUNTS[i]}" = "$MNT" ] && { _MOUNTS[i]=""; break; }
	done
	umount "$MNT" 2>"$T/umount.err" || {
		cat "$T/umount.err" >&2
		_MOUNTS+=("$MNT")
		_MOUNT_IMG+=("$IMG")
		die "$1: unmount right after the kill failed (a killed caller's request still running?)"
	}
	wait_release "$IMG" || die "$1: the daemon did not release $IMG"
}

# 512M: fsck bounds the blocks one file maps by the size of the filesystem
rlfs_mkfs "$IMG" -s 512M
rlfs_mount "$IMG" "$MNT"
"$PY" "$CK" prep "$MNT" 16 || die "prep failed"
log "big: $(stat -c %s "$MNT/big") bytes in 65536 extents"

for ((r = 1; r <= ROUNDS; r++)); do
	seed=$((RANDOM % 10000 + r))
	"$PY" "$CK" run "$MNT" "$seed" 6 || die "round $r (seed $seed): a workload process failed"
	unmount_first_try "round $r (seed $seed)"
	rlfs_fsck "$IMG"
	rlfs_mount "$IMG" "$MNT"
	"$PY" "$CK" check "$MNT" >"$T/check.out" || {
		cat "$T/check.out" >&2
		die "round $r (seed $seed): file contents are not data that was written"
	}
	log "round $r (seed $seed): $(tail -1 "$T/check.out")"
done

# 2. ^C (generic/297) and SIGKILL (298) of a long clone: the caller dies
#    with the clone stopped part-way, and the mount is free right away.
#    (The clones are seen under way by their first blocks taken in
#    statfs, so nothing else may free blocks meanwhile: the snapshots are
#    deleted before an unmount, whose end settles their release.)
rm -f "$MNT"/bigsnap* "$MNT"/snap*
unmount_first_try "after the rounds"
rlfs_fsck "$IMG"
rlfs_mount "$IMG" "$MNT"
for how in "INT ioctl" "KILL ioctl" "KILL cfr"; do
	"$PY" "$CK" intr "$MNT" $how >"$T/intr.out" 2>&1 || {
		cat "$T/intr.out" >&2
		die "$how: the signal did not stop a long clone"
	}
	log "$(cat "$T/intr.out")"
	unmount_first_try "$how: a long clone and a signal"
	rlfs_fsck "$IMG"
	rlfs_mount "$IMG" "$MNT"
done

# 3. reads of the source during a clone of it (generic/733)
"$PY" "$CK" readers "$MNT" 20 >"$T/readers.out" 2>&1 || {
	cat "$T/readers.out" >&2
	die "reads of a file being cloned waited for the clone"
}
log "$(cat "$T/readers.out")"

# 4. killed as soon as the superblock says CLEAN
rm -f "$MNT"/intr.* "$MNT"/readers.dst
"$PY" "$CK" run "$MNT" 4242 4 || die "last round: a workload process failed"
dpid=$(daemon_pid)
[ -n "$dpid" ] || die "no daemon for $IMG"
cat >"$T/poll.py" <<'EOF'
import os, signal, sys
img, pid, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fd = os.open(img, os.O_RDONLY)
open(ready, "w").close()
while os.pread(fd, 1, 76)[0] != 0:      # struct rlfs_sb.state: 0 = CLEAN
    pass
try:
    os.kill(pid, signal.SIGKILL)
    print("daemon killed as soon as the superblock said CLEAN")
except ProcessLookupError:
    print("daemon had exited")
EOF
[ "$(od -An -tu1 -j76 -N1 "$IMG" | tr -d ' ')" = 1 ] || die "superblock not DIRTY while mounted"
"$PY" "$T/poll.py" "$IMG" "$dpid" "$T/poll.ready" >"$T/poll.out" 2>&1 &
ppid=$!
for ((i = 0; i < 300; i++)); do [ -e "$T/poll.ready" ] && break; sleep 0.1; done
unmount_first_try "last round"
wait "$ppid" || die "poller failed: $(cat "$T/poll.out")"
log "$(cat "$T/poll.out")"
rlfs_fsck "$IMG"
rlfs_mount "$IMG" "$MNT"
"$PY" "$CK" check "$MNT" >"$T/check.out" || {
	cat "$T/check.out" >&2
	die "last round: file contents are not data that was written"
}
rlfs_umount "$MNT"
rlfs_fsck "$IMG"
log OK

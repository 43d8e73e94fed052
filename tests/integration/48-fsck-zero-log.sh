#!/bin/bash
# 48-fsck-zero-log: a corrupt log (issue 10 §3: "a clear error and a way
# out", as xfs_repair -L).  An image with a dirty log (daemon killed after
# fsyncs) whose log region (superblock log_start/log_blocks) is overwritten
# with random bytes:
#  - mount refuses and names `reflinkfs fsck -L`;
#  - fsck -n and fsck (repair) refuse (exit 4) and name -L;
#  - fsck -L says the log is corrupt and what is lost, writes a fresh log,
#    checks and repairs (exit 1: the unclean-unmount flag at least); then
#    fsck -n is clean, the image mounts, and the files written before the
#    last clean unmount are intact;
#  - fsck -L on a dirty but readable log says how many checkpoints it
#    discards.
. "$(dirname "$0")/../lib.sh"
common_setup
ED="$PY $SRCDIR/tests/helpers/imgedit.py"
IMG=$T/zl.img
MNT=$T/mnt


# dirty_image: files kept/ (cleanly unmounted, so in place), then new
# files written and fsync'd and the daemon killed: the log needs replay
dirty_image() {
	rm -f "$IMG"
	rlfs_mkfs "$IMG" -s 256M
	rlfs_mount "$IMG" "$MNT"
	mkdir "$MNT/kept"
	for i in $(seq 1 20); do head -c $((i * 3000)) /dev/urandom >"$MNT/kept/f$i"; done
	(cd "$MNT/kept" && sha256sum f*) >"$T/kept.sum"
	rlfs_umount "$MNT"
	rlfs_mount "$IMG" "$MNT"
	mkdir "$MNT/new"
	for i in $(seq 1 20); do
		head -c 5000 /dev/urandom >"$MNT/new/g$i"
		sync "$MNT/new/g$i"
	done
	sync "$MNT/new"
	kill_daemon "$IMG" "$MNT"
	fsck_rc -n "$IMG"
	[ $FRC = 4 ] && grep -q "log needs replay" "$T/fsck.out" ||
		{ cat "$T/fsck.out" >&2; die "the killed image's log does not need replay (fsck -n exit $FRC)"; }
}

# --- 1. a corrupt log ----------------------------------------------------
dirty_image
bs=$($ED sb-get "$IMG" blocksize)
ls=$($ED sb-get "$IMG" log_start)
lb=$($ED sb-get "$IMG" log_blocks)
log "log: $lb blocks of $bs bytes at fsbno $ls"
[ "$ls" -gt 0 ] && [ "$lb" -gt 0 ] || die "no log in the superblock"
dd if=/dev/urandom of="$IMG" bs="$bs" seek="$ls" count="$lb" conv=notrunc status=none

mkdir -p "$MNT"
rc=0
run_to "$CMD_TIMEOUT" "$RLFS" mount "$IMG" "$MNT" >"$T/mount.out" 2>&1 || rc=$?
if mountpoint -q "$MNT"; then
	_MOUNTS+=("$MNT"); _MOUNT_IMG+=("$IMG")
	die "an image with a corrupt log mounted"
fi
[ $rc != 0 ] || die "mount of a corrupt log exited 0"
grep -q "fsck -L" "$T/mount.out" ||
	{ cat "$T/mount.out" >&2; die "mount does not name fsck -L for a corrupt log"; }
log "mount refused (exit $rc): $(grep -m1 'fsck -L' "$T/mount.out" | cut -c1-160)"

for mode in -n ""; do
	# shellcheck disable=SC2086
	fsck_rc $mode "$IMG"
	[ $FRC = 4 ] || { cat "$T/fsck.out" >&2; die "fsck $mode on a corrupt log exited $FRC, not 4"; }
	grep -q "fsck -L" "$T/fsck.out" ||
		{ cat "$T/fsck.out" >&2; die "fsck $mode does not name -L for a corrupt log"; }
done
log "fsck -n and fsck refuse (exit 4) and name -L"

fsck_rc -n -L "$IMG"
[ $FRC = 8 ] || die "fsck -n -L exited $FRC, not 8 (usage)"

fsck_rc -L "$IMG"
cat "$T/fsck.out"
[ $FRC = 0 ] || [ $FRC = 1 ] || die "fsck -L exited $FRC"
grep -q "the log is corrupt" "$T/fsck.out" || die "fsck -L does not say the log is corrupt"
grep -q "wrote a fresh empty log" "$T/fsck.out" || die "fsck -L did not write a fresh log"
rlfs_fsck "$IMG"
rlfs_mount "$IMG" "$MNT"
(cd "$MNT/kept" && sha256sum -c --quiet "$T/kept.sum") || die "files from before the kill differ"
echo after >"$MNT/after"
rlfs_umount "$MNT"
rlfs_fsck "$IMG"
log "after fsck -L: fsck -n clean, mount works, kept/ intact"

# --- 2. -L on a readable dirty log: says what it discards ---------------
dirty_image
fsck_rc -L "$IMG"
cat "$T/fsck.out"
[ $FRC = 0 ] || [ $FRC = 1 ] || die "fsck -L on a readable log exited $FRC"
grep -Eq -- "-L: discarding the log: [1-9][0-9]* checkpoint" "$T/fsck.out" ||
	die "fsck -L does not say how many checkpoints it discards"
rlfs_fsck "$IMG"
log "PASS"

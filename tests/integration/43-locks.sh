#!/bin/bash
# File locks, differential against kernel XFS.  The daemon has no lock
# operations, so the kernel keeps flock(2), POSIX (fcntl) and OFD locks of
# files on the mount locally, exactly as for a local filesystem, and
# /proc/locks shows them with the mount's MAJOR:MINOR and the inode number
# that stat(2) reports.  Checked: conflicts between processes, F_GETLK,
# releases, the /proc/locks lines of each kind, and the fstests generic/504
# pattern (a flock taken by a process that then exits, through an inherited
# descriptor, found in /proc/locks by ":INODE "), on a fresh mount, after
# remount (inodes looked up again) and with FUSE over io_uring if available.
. "$(dirname "$0")/../lib.sh"
common_setup
OPS=$SRCDIR/tests/helpers/feat_ops.py
command -v flock >/dev/null || die "flock(1) missing (apt-get install util-linux)"

img=$T/locks.img
mnt=$T/mnt
rlfs_mkfs "$img" -s 256M
kmount_xfs "$T/xfs.img" "$T/xfs" 512M

# generic/504: exec {fd}> FILE; flock -x $fd (flock(1) exits); the lock
# must show in /proc/locks as ...:INODE
generic504() { # FILE
	local f=$1 fd ino dev line
	touch "$f"
	ino=$(stat -c %i "$f")
	dev=$(printf '%02x:%02x' "$(stat -c %Hd "$f")" "$(stat -c %Ld "$f")")
	exec {fd}>"$f"
	flock -x "$fd"
	line=$(grep " $dev:$ino " /proc/locks || true)
	exec {fd}>&-
	[ -n "$line" ] || { cat /proc/locks >&2; die "generic/504: no /proc/locks line for $dev:$ino ($f)"; }
	grep -q ":$ino " <<<"$line" || die "generic/504 grep pattern does not match: $line"
	echo "$line" | awk '{print $2, $3, $4, $7, $8}'
}

$PY "$OPS" locks "$T/xfs/lk" >"$T/xfs.out" || die "lock script failed on XFS"
grep -q "^flock held \['FLOCK ADVISORY WRITE 0 EOF'\]" "$T/xfs.out" ||
	{ cat "$T/xfs.out" >&2; die "XFS oracle: no flock line"; }
generic504 "$T/xfs/g504" >"$T/xfs.504"

check_mount() { # LABEL
	$PY "$OPS" locks "$mnt/lk.$1" >"$T/rlfs.$1.out" || die "lock script failed ($1)"
	diff -u "$T/xfs.out" "$T/rlfs.$1.out" >&2 || die "locks differ from XFS ($1)"
	generic504 "$mnt/g504.$1" >"$T/rlfs.$1.504"
	diff -u "$T/xfs.504" "$T/rlfs.$1.504" >&2 || die "generic/504 line differs from XFS ($1)"
	log "$1: $(wc -l <"$T/rlfs.$1.out") lock observations and generic/504 as on XFS"
}

rlfs_mount "$img" "$mnt"
check_mount fresh
# files created before the remount are found again by lookup
rlfs_umount "$mnt"
rlfs_mount "$img" "$mnt"
$PY "$OPS" locks "$mnt/lk.fresh" >"$T/rlfs.again.out" || die "lock script failed (remount)"
diff -u "$T/xfs.out" "$T/rlfs.again.out" >&2 || die "locks differ from XFS after remount"
generic504 "$mnt/g504.fresh" >"$T/rlfs.again.504"
diff -u "$T/xfs.504" "$T/rlfs.again.504" >&2 || die "generic/504 differs after remount"
log "remount: the same"
rlfs_umount "$mnt"

if [ -r /sys/module/fuse/parameters/enable_uring ] && [ "${RLFS_URING:-0}" != 1 ]; then
	rlfs_mount "$img" "$mnt" -o uring
	check_mount uring
	rlfs_umount "$mnt"
else
	log "io_uring: not available here (or already the default of this run)"
fi

rlfs_fsck "$img"
kumount "$T/xfs"
log "PASS"

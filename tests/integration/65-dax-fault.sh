#!/bin/bash
# -o dax when the image's pages cannot be backed (issue 14 §3): the image
# lives, sparse, on a small tmpfs that fills up while a file is written
# through the mapping.  A store into a page the host cannot allocate is
# SIGBUS in the daemon; lib/mapguard.c turns it into an error return and
# the write is retried through pwrite(2), which says ENOSPC.  Checks:
#  - the writer gets an error from write(2) or fsync(2) (ENOSPC or EIO),
#    never success for bytes that did not land;
#  - the daemon lives on: the mount still answers (not ENOTCONN), and
#    after the host has room again the same mount takes writes;
#  - every byte write(2)+fsync(2) accepted is there after a remount, and
#    fsck is clean.
#  - the daemon's unmount report counts faulted mapped accesses (so the
#    guard fired, not only metadata writes failed).
# Without the guard (lib/mapguard.c's handler not installed) the daemon
# dies with SIGBUS and the test fails at its first check.
. "$(dirname "$0")/../lib.sh"
common_setup

host=$T/host
mkdir -p "$host"
_MOUNTS+=("$host")
_MOUNT_IMG+=("")
mount -t tmpfs -o size=48m tmpfs "$host" || die "cannot mount a tmpfs"
img=$host/dax.img
mnt=$T/mnt
rlfs_mkfs "$img" -s 128M
# 8 MiB of the host held back, given back after the host filled up
dd if=/dev/zero of="$host/filler" bs=1M count=8 status=none
# in the foreground, so the daemon's unmount report can be read
rlfs_mount_fg "$img" "$mnt" -o dax || die "the dax daemon exited ($FG_RC): $(cat "$FG_LOG")"
dax_check "$img"
pid=$FG_PID
log "host tmpfs: $(df -P -k "$host" | awk 'NR==2 {print $4}') KiB free after mkfs"

# write 1 MiB chunks with fsync after each until the host is full
$PY - "$mnt/f" "$T/expect" <<'PYEOF' >"$T/w.out" 2>&1 || { cat "$T/w.out"; die "writer failed"; }
import os, sys, errno
path, expect = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
good, stop = [], None
for i in range(96):
    buf = os.urandom(1 << 20)
    try:
        w = os.write(fd, buf)
        if w != len(buf):
            stop = "short write %d" % w
            break
        os.fsync(fd)
    except OSError as e:
        stop = e
        break
    good.append(buf)
print("accepted and synced %d MiB, then %s" % (len(good), stop))
if stop is None:
    sys.exit("96 MiB written and synced through a 48 MiB host")
if isinstance(stop, OSError) and stop.errno not in (errno.ENOSPC, errno.EIO):
    sys.exit("the writer got %s, not ENOSPC or EIO" % stop)
os.close(fd)
open(expect, "wb").write(b"".join(good))
PYEOF
cat "$T/w.out"
alive "$pid" || die "the daemon died (SIGBUS from the mapping?)"
ls -l "$mnt" >"$T/ls.out" 2>&1 || { cat "$T/ls.out"; die "the mount no longer answers"; }

# room again on the host: the same mount writes
rm -f "$host/filler"
good=$(stat -c %s "$T/expect")
$PY - "$mnt/f" "$good" <<'PYEOF' || die "the file could not be trimmed and rewritten"
import os, sys
path, good = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY)
os.ftruncate(fd, good)
os.fsync(fd)
os.close(fd)
PYEOF
$PY -c 'import os, sys; open(sys.argv[1], "wb").write(os.urandom(1 << 20))' "$mnt/g" ||
	die "a new 1 MiB file could not be written once the host had room"
alive "$pid" || die "the daemon died"
rlfs_umount_fg "$mnt" || die "the daemon exited with $? at unmount: $(cat "$FG_LOG")"
# the guard fired: data stores into the mapping faulted and were retried
# (not only metadata pwrites failing with ENOSPC)
grep -E 'reflinkfs: [1-9][0-9]* access\(es\) to the image mapping faulted' "$FG_LOG" ||
	die "the daemon reports no faulted mapped access: $(cat "$FG_LOG")"
rlfs_mount "$img" "$mnt" -o dax
cmp "$T/expect" "$mnt/f" || die "the accepted, synced bytes differ after a remount"
rlfs_umount "$mnt"
rlfs_fsck "$img"
log "ok"

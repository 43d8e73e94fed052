#!/bin/bash
# ENOSPC under the kernel's writeback cache (issue 13 §4; docs/DESIGN.md
# "ENOSPC under the writeback cache").  On a 64 MiB filesystem:
#  1. fstests generic/015's pattern: one open, 1 MiB write(2)s past the
#     free space.  write(2) itself must fail with ENOSPC; fsync then
#     succeeds, and after a remount the file is exactly the bytes write(2)
#     accepted (before the writeback reserve, fsync failed and 16 of the
#     accepted 1 MiB chunks read back as zeros).
#  2. a cloned file rewritten with pwrite(2) on a full filesystem: every
#     accepted byte is there after a remount, the rest keeps the old data.
#  3. generic/173's pattern: a shared writable mmap of a cloned file on a
#     full filesystem is refused at mmap(2) (ENODEV: the open had no page
#     cache) or, if granted, its data must all be there after msync.
# fsck clean after each.  With -o wbresv=0 (no reserve), case 1 must fail:
# WBRESV_BROKEN=1 runs that to show the test can fail.
. "$(dirname "$0")/../lib.sh"
common_setup

img=$T/wb.img
mnt=$T/mnt
opts=()
[ "${WBRESV_BROKEN:-0}" = 1 ] && opts=(-o wbresv=0)

# case 1
rlfs_mkfs "$img" -s 64M
rlfs_mount "$img" "$mnt" "${opts[@]}"
$PY - "$mnt/f" "$T/expect1" <<'PYEOF' >"$T/case1.out" 2>&1 || { cat "$T/case1.out"; die "case 1 script failed"; }
import os, sys, errno
path, expect = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
parts, n, stop = [], 0, None
for i in range(80):
    buf = os.urandom(1 << 20)
    try:
        w = os.write(fd, buf)
    except OSError as e:
        stop = e
        break
    n += w
    parts.append(buf[:w])
    if w < len(buf):
        stop = "short write"
        break
print("accepted %d bytes, then %s" % (n, stop))
if stop is None:
    sys.exit("80 MiB accepted by write(2) on a 64 MiB filesystem")
if isinstance(stop, OSError) and stop.errno != errno.ENOSPC:
    sys.exit("write(2) failed with %s, not ENOSPC" % stop)
try:
    os.fsync(fd)
    print("fsync ok")
except OSError as e:
    sys.exit("fsync after the accepted writes: %s (data accepted by write(2) was lost)" % e)
os.close(fd)
open(expect, "wb").write(b"".join(parts))
PYEOF
cat "$T/case1.out"
rlfs_umount "$mnt"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt" "${opts[@]}"
cmp "$mnt/f" "$T/expect1" || die "case 1: after a remount the file is not the bytes write(2) accepted"
log "case 1: write(2) got ENOSPC, fsync ok, $(stat -c %s "$mnt/f") bytes intact after remount"
rlfs_umount "$mnt"

# case 1b: two writers, both opened while space is plentiful: the one
# that did not cross the line must be stopped too (every cached writer's
# attributes are invalidated when only the reserve is left), so neither
# loses what write(2) accepted
rm -f "$img"
rlfs_mkfs "$img" -s 64M
rlfs_mount "$img" "$mnt" "${opts[@]}"
$PY - "$mnt" "$T/expect1b" <<'PYEOF' >"$T/case1b.out" 2>&1 || { cat "$T/case1b.out"; die "case 1b script failed"; }
import os, sys, errno
mnt, expect = sys.argv[1], sys.argv[2]
fds = {n: os.open(mnt + "/" + n, os.O_CREAT | os.O_WRONLY, 0o644) for n in ("a", "b")}
got = {}
for n in ("a", "b"):
    parts = []
    try:
        while True:
            buf = os.urandom(1 << 20)
            w = os.write(fds[n], buf)
            parts.append(buf[:w])
            if w < len(buf):
                break
    except OSError as e:
        if e.errno != errno.ENOSPC:
            sys.exit("%s: write(2) failed with %s, not ENOSPC" % (n, e))
    got[n] = b"".join(parts)
    print("%s: accepted %d bytes" % (n, len(got[n])))
for n in ("a", "b"):
    try:
        os.fsync(fds[n])
    except OSError as e:
        sys.exit("%s: fsync after the accepted writes: %s (data accepted by write(2) was lost)" % (n, e))
    os.close(fds[n])
    open(expect + "." + n, "wb").write(got[n])
PYEOF
cat "$T/case1b.out"
rlfs_umount "$mnt"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt" "${opts[@]}"
for n in a b; do
	cmp "$mnt/$n" "$T/expect1b.$n" || die "case 1b: after a remount $n is not the bytes write(2) accepted"
done
rlfs_umount "$mnt"
log "case 1b: both writers stopped with ENOSPC, nothing accepted was lost"

# cases 2 and 3: a 16 MiB file and its clone, the rest filled
for mode in write mmap; do
	rm -f "$img"
	rlfs_mkfs "$img" -s 64M
	rlfs_mount "$img" "$mnt" "${opts[@]}"
	$PY - "$mnt" "$mode" "$RLFS" "$T/expect2" <<'PYEOF' >"$T/case2.out" 2>&1 || { cat "$T/case2.out"; die "case $mode script failed"; }
import os, sys, mmap, errno, subprocess
mnt, mode, rlfs, expect = sys.argv[1:5]
a, b = mnt + "/a", mnt + "/b"
old = os.urandom(16 << 20)
with open(a, "wb") as f:
    f.write(old)
subprocess.run([rlfs, "io", "-f", "-c", "reflink " + a, b], check=True)
fd = os.open(mnt + "/fill", os.O_CREAT | os.O_WRONLY, 0o644)
try:
    while True:
        os.write(fd, b"x" * (1 << 20))
except OSError as e:
    if e.errno != errno.ENOSPC:
        raise
try:
    os.fsync(fd)
except OSError as e:
    sys.exit("fill: fsync after accepted writes: %s" % e)
os.close(fd)
new = os.urandom(16 << 20)
fd = os.open(b, os.O_RDWR)
if mode == "write":
    n = 0
    try:
        for i in range(16):
            n += os.pwrite(fd, new[i << 20:(i + 1) << 20], i << 20)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            sys.exit("pwrite: %s, not ENOSPC" % e)
    print("pwrite accepted %d of %d bytes" % (n, 16 << 20))
    if n == 16 << 20:
        sys.exit("a 16 MiB rewrite of shared blocks fit on a full filesystem")
    want = new[:n] + old[n:]
else:
    try:
        m = mmap.mmap(fd, 16 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as e:
        if e.errno != errno.ENODEV:
            sys.exit("mmap: %s, not ENODEV" % e)
        print("shared writable mmap refused: %s" % e)
        want = old
    else:
        m[:] = new
        try:
            m.flush()
        except OSError as e:
            sys.exit("mmap granted, then msync: %s (the mapped writes are lost)" % e)
        m.close()
        print("shared writable mmap granted and written back")
        want = new
try:
    os.fsync(fd)
except OSError as e:
    sys.exit("fsync: %s" % e)
os.close(fd)
open(expect, "wb").write(want)
PYEOF
	cat "$T/case2.out"
	rlfs_umount "$mnt"
	rlfs_fsck "$img"
	rlfs_mount "$img" "$mnt" "${opts[@]}"
	cmp "$mnt/b" "$T/expect2" || die "case $mode: the clone is not what was accepted after a remount"
	rlfs_umount "$mnt"
	log "case $mode: the clone holds exactly the accepted data"
done
log "ok"

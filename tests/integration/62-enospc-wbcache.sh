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
#     Under -o dax (RLFS_DAX=1) the mapping is granted (the daemon asks for
#     FUSE_DIRECT_IO_ALLOW_MMAP, connection-wide: docs/DESIGN.md "Direct
#     access", "At full"): msync either succeeds and all the data is there,
#     or reports ENOSPC/EIO and each page holds its old or its new bytes.
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
	rm -f "$T/expect2" "$T/expect2.old" "$T/expect2.new"
	$PY - "$mnt" "$mode" "$RLFS" "$T/expect2" "${RLFS_DAX:-0}" <<'PYEOF' >"$T/case2.out" 2>&1 || { cat "$T/case2.out"; die "case $mode script failed"; }
import os, sys, mmap, errno, subprocess
mnt, mode, rlfs, expect, dax = sys.argv[1:6]
dax = dax == "1"
lost = False
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
        if dax:
            sys.exit("-o dax: mmap: %s (the daemon asks for FUSE_DIRECT_IO_ALLOW_MMAP)" % e)
        if e.errno != errno.ENODEV:
            sys.exit("mmap: %s, not ENODEV" % e)
        print("shared writable mmap refused: %s" % e)
        want = old
    else:
        m[:] = new
        try:
            m.flush()
            print("shared writable mmap granted and written back")
        except OSError as e:
            if not dax or e.errno not in (errno.ENOSPC, errno.EIO):
                sys.exit("mmap granted, then msync: %s (the mapped writes are lost)" % e)
            print("-o dax: shared writable mmap granted; msync reports %s" % e)
            lost = True
        m.close()
        want = new
try:
    os.fsync(fd)
except OSError as e:
    if not lost:
        sys.exit("fsync: %s" % e)
os.close(fd)
if lost:
    open(expect + ".old", "wb").write(old)
    open(expect + ".new", "wb").write(new)
else:
    open(expect, "wb").write(want)
PYEOF
	cat "$T/case2.out"
	rlfs_umount "$mnt"
	rlfs_fsck "$img"
	rlfs_mount "$img" "$mnt" "${opts[@]}"
	if [ -e "$T/expect2.old" ]; then
		# msync reported the loss: each page is the old or the new one
		$PY - "$mnt/b" "$T/expect2.old" "$T/expect2.new" <<'PYEOF' || die "case $mode: a page of the clone is neither its old nor its new bytes after a remount"
import sys
got, old, new = (open(p, "rb").read() for p in sys.argv[1:4])
if len(got) != len(old):
    sys.exit("size %d, not %d" % (len(got), len(old)))
pg, nnew, nold = 4096, 0, 0
for i in range(0, len(got), pg):
    if got[i:i + pg] == new[i:i + pg]:
        nnew += 1
    elif got[i:i + pg] == old[i:i + pg]:
        nold += 1
    else:
        sys.exit("page %d is neither old nor new" % (i // pg))
print("%d pages new, %d old (their writeback was refused, as msync said)" % (nnew, nold))
PYEOF
		rlfs_umount "$mnt"
		log "case $mode: msync reported the refused writeback, each page old or new"
		continue
	fi
	cmp "$mnt/b" "$T/expect2" || die "case $mode: the clone is not what was accepted after a remount"
	rlfs_umount "$mnt"
	log "case $mode: the clone holds exactly the accepted data"
done
log "ok"

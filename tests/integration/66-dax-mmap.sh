#!/bin/bash
# 66-dax-mmap: shared mmap(2) of files on a -o dax mount (issue 14 §3;
# docs/DESIGN.md "Direct access").  Under -o dax every file opens with
# FOPEN_DIRECT_IO, and the kernel refuses MAP_SHARED of such a file with
# ENODEV unless the INIT reply asked for FUSE_DIRECT_IO_ALLOW_MMAP (Linux
# 6.6+), which the daemon's custom io adds (fuse/uring.c init_patch).
#  1. a MAP_SHARED store is read back by read(2) before msync (the kernel
#     writes the range back before a direct read) and after msync;
#  2. a pwrite(2) into a mapped range is seen through the mapping (the
#     kernel drops the range's pages around a direct write);
#  3. a store through the mapping of a clone copies on write: the clone
#     changes, its source does not; a clone into a mapped file (the
#     private ioctl, behind the kernel's back) is seen through the mapping;
#  4. after msync, unmount, fsck and a -o dax remount the files hold
#     exactly what was stored; MAP_PRIVATE stores stay private;
#  5. msync is durable: a store through the mapping into shared blocks of
#     the clone (a copy-on-write), msync, then kill -9 of the daemon; after
#     log recovery the clone has the stored bytes, its source the old ones
#     (msync wrote the pages back and sent FSYNC, which forced the log);
#  6. with RLFS_NO_DIRECT_IO_MMAP=1 (the INIT reply without the flag, as
#     before this test existed) MAP_SHARED is ENODEV again.
# Running the whole test with RLFS_NO_DIRECT_IO_MMAP=1 makes 1-4 fail.
. "$(dirname "$0")/../lib.sh"
common_setup

img=$T/dax.img
mnt=$T/mnt
rlfs_mkfs "$img" -s 256M
rlfs_mount "$img" "$mnt" -o dax
dax_check "$img"

$PY - "$mnt" "$RLFS" "$T" <<'PYEOF' >"$T/case.out" 2>&1 || { cat "$T/case.out"; die "mmap cases failed"; }
import os, sys, mmap, subprocess
mnt, rlfs, t = sys.argv[1:4]
PG = mmap.PAGESIZE
def fail(msg):
    sys.exit("FAIL: " + msg)

# 1. store through the mapping, read(2) through another descriptor
a = mnt + "/a"
data = bytearray(os.urandom(1 << 20))
with open(a, "wb") as f:
    f.write(data)
fd = os.open(a, os.O_RDWR)
rfd = os.open(a, os.O_RDONLY)
try:
    m = mmap.mmap(fd, len(data), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
except OSError as e:
    fail("MAP_SHARED of a file on a -o dax mount: %s" % e)
if m[:] != bytes(data):
    fail("the mapping does not show the file's bytes")
for off, n in ((0, 100), (PG - 7, 20), (5 * PG, 3 * PG), (len(data) - 333, 333)):
    b = os.urandom(n)
    m[off:off + n] = b
    data[off:off + n] = b
    got = os.pread(rfd, n, off)
    if got != b:
        fail("read(2) of [%d,+%d) after a mapped store, before msync: old bytes" % (off, n))
m.flush()
if os.pread(rfd, len(data), 0) != bytes(data):
    fail("read(2) after msync differs from what was stored through the mapping")
print("1: mapped stores read back by read(2), before and after msync")

# 2. pwrite(2) into the mapped range: the mapping shows it
for off, n in ((PG + 10, 50), (64 * PG, 2 * PG + 1)):
    b = os.urandom(n)
    os.pwrite(fd, b, off)
    data[off:off + n] = b
    if m[off:off + n] != b:
        fail("the mapping of [%d,+%d) shows old bytes after pwrite(2)" % (off, n))
if m[:] != bytes(data):
    fail("the mapping differs from the file after pwrite(2)s")
m.close()
print("2: pwrite(2) into a mapped range seen through the mapping")

# 3. copy-on-write through a mapping; a clone into a mapped file
c = mnt + "/c"
subprocess.run([rlfs, "io", "-f", "-c", "reflink " + a, c], check=True)
cfd = os.open(c, os.O_RDWR)
cm = mmap.mmap(cfd, len(data), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
cdata = bytearray(data)
b = os.urandom(3 * PG)
cm[7 * PG + 100:10 * PG + 100] = b
cdata[7 * PG + 100:10 * PG + 100] = b
cm.flush()
if os.pread(cfd, len(cdata), 0) != bytes(cdata):
    fail("the clone does not read back what was stored through its mapping")
if os.pread(rfd, len(data), 0) != bytes(data):
    fail("a store through the clone's mapping changed the source (no copy-on-write)")
# clone [0, 16 pages) of a over the mapped clone: the mapping must follow
old = cm[:16 * PG]
subprocess.run([rlfs, "io", "-c", "reflink %s 0 0 %d" % (a, 16 * PG), c], check=True)
cdata[:16 * PG] = data[:16 * PG]
if cm[:16 * PG] != bytes(data[:16 * PG]):
    fail("the mapping of the clone shows %s after a clone into it" %
         ("its old bytes" if cm[:16 * PG] == old else "other bytes"))
cm.close()
os.close(cfd)
print("3: copy-on-write through a mapping; a clone into a mapped file is seen")

# 4. MAP_PRIVATE stays private
pm = mmap.mmap(fd, len(data), mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
pm[0:PG] = b"P" * PG
pm.close()
if os.pread(rfd, PG, 0) != bytes(data[:PG]):
    fail("a MAP_PRIVATE store reached the file")
os.fsync(fd)
os.close(fd)
os.close(rfd)
open(t + "/expect.a", "wb").write(data)
open(t + "/expect.c", "wb").write(cdata)
print("4: MAP_PRIVATE stores stay private")
PYEOF
cat "$T/case.out"
rlfs_umount "$mnt"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt" -o dax
cmp "$mnt/a" "$T/expect.a" || die "after a remount a is not what was stored through its mapping"
cmp "$mnt/c" "$T/expect.c" || die "after a remount the clone c is not what was stored and cloned"
log "after msync, unmount, fsck and a -o dax remount both files hold the mapped stores"

# 5. msync, then kill -9: c's first 16 pages share a's blocks (case 3)
$PY - "$mnt/c" "$T/expect.c" <<'PYEOF' || die "case 5: store and msync failed"
import os, sys, mmap
path, expect = sys.argv[1:3]
data = bytearray(open(expect, "rb").read())
fd = os.open(path, os.O_RDWR)
m = mmap.mmap(fd, len(data), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
b = os.urandom(5 * mmap.PAGESIZE)
m[2 * mmap.PAGESIZE:7 * mmap.PAGESIZE] = b
data[2 * mmap.PAGESIZE:7 * mmap.PAGESIZE] = b
m.flush()
m.close()
os.close(fd)
open(expect, "wb").write(data)
PYEOF
kill_daemon "$img" "$mnt"
rlfs_mount "$img" "$mnt" -o dax
cmp "$mnt/c" "$T/expect.c" || die "case 5: after msync and kill -9 the clone lost the mapped store"
cmp "$mnt/a" "$T/expect.a" || die "case 5: the store through the clone's mapping changed its source"
rlfs_umount "$mnt"
rlfs_fsck "$img"
log "a mapped copy-on-write store survives kill -9 of the daemon after msync"

# 6. the INIT reply without FUSE_DIRECT_IO_ALLOW_MMAP: ENODEV, as before
RLFS_NO_DIRECT_IO_MMAP=1 rlfs_mount "$img" "$mnt" -o dax
$PY - "$mnt/a" <<'PYEOF' || die "without FUSE_DIRECT_IO_ALLOW_MMAP a shared mapping was not ENODEV"
import os, sys, mmap, errno
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ)
except OSError as e:
    sys.exit(0 if e.errno == errno.ENODEV else "mmap: %s" % e)
sys.exit("MAP_SHARED granted")
PYEOF
rlfs_umount "$mnt"
log "without the INIT flag MAP_SHARED is ENODEV (what -o dax gave before)"
log OK

#!/bin/bash
# 20-ioctl-shim: the reflink interfaces seen from unmodified programs.
#
# 1. Differential: the same invalid (and valid) FICLONE/FICLONERANGE calls
#    on a kernel XFS loop mount (mkfs.xfs -m reflink=1,rmapbt=1) and on
#    reflinkfs through the LD_PRELOAD shim must give the same errno (or
#    success): unaligned offsets/length, overlapping same-file ranges,
#    directories, src O_WRONLY / O_PATH, dest O_RDONLY / O_APPEND, another
#    filesystem (EXDEV), ranges past EOF, length 0, wrapping offsets, bad fd.
# 2. cp --reflink=always, xfs_io reflink, xfs_io fiemap and filefrag -v
#    work through the shim and show shared extents; plain cp (FUSE
#    copy_file_range) shares blocks; a rewrite of a clone leaves the
#    original intact; `reflinkfs io` reflink/fiemap/funshare/stat.
# 3. fsck is clean at the end.
. "$(dirname "$0")/../lib.sh"
common_setup
command -v mkfs.xfs >/dev/null || die "mkfs.xfs missing (apt-get install xfsprogs)"
command -v xfs_io >/dev/null || die "xfs_io missing (apt-get install xfsprogs)"
command -v filefrag >/dev/null || die "filefrag missing (apt-get install e2fsprogs)"

SHIM=${SHIM:-$(dirname "$RLFS")/libreflinkfs-preload.so}
[ -f "$SHIM" ] || die "shim not found: $SHIM"

IMG=$T/rlfs.img
MNT=$T/rlfs
XIMG=$T/xfs.img
XMNT=$T/xfs
OTHER=$T/other        # a directory on neither filesystem (EXDEV source)
mkdir -p "$OTHER"

rlfs_mkfs "$IMG" -s 512M
rlfs_mount "$IMG" "$MNT"
kmount_xfs "$XIMG" "$XMNT" 512M

# ---------------------------------------------------------------- helper
# clone_cases.py DIR OTHERDIR: runs every case in DIR, prints "name: RESULT"
# (OK or the errno name).  fcntl.ioctl goes through libc's ioctl symbol, so
# the shim interposes it under LD_PRELOAD.
cat >"$T/clone_cases.py" <<'EOF'
import errno, fcntl, os, struct, sys

FICLONE = 0x40049409
FICLONERANGE = 0x4020940d
d, other = sys.argv[1], sys.argv[2]
os.makedirs(other, exist_ok=True)
BS = 4096

def mk(name, size, d=d):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(bytes((i * 7 + size) & 0xff for i in range(size)))
        f.flush()
        os.fsync(f.fileno())
    return p

def clone_range(dfd, sfd, soff, slen, doff):
    arg = struct.pack("=qQQQ", sfd, soff, slen, doff)
    fcntl.ioctl(dfd, FICLONERANGE, arg)

def clone(dfd, sfd):
    fcntl.ioctl(dfd, FICLONE, sfd)

results = []
def case(name, fn):
    try:
        fn()
        r = "OK"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    results.append((name, r))
    print(f"{name}: {r}", flush=True)

src = mk("src", 16 * BS)                 # 64 KiB, aligned size
odd = mk("odd", 5 * BS + 100)            # unaligned size
big = mk("big", 32 * BS)
sub = os.path.join(d, "subdir"); os.makedirs(sub, exist_ok=True)
osrc = mk("osrc", 4 * BS, other)

def op(path, flags):
    return os.open(path, flags)

def run(dname, fn, dflags=os.O_RDWR | os.O_CREAT | os.O_TRUNC, spath=None, sflags=os.O_RDONLY):
    def f():
        dp = os.path.join(d, dname)
        dfd = os.open(dp, dflags, 0o644)
        sfd = os.open(spath or src, sflags) if sflags is not None else -1
        try:
            fn(dfd, sfd)
        finally:
            os.close(dfd)
            if sfd >= 0:
                os.close(sfd)
    return f

case("unaligned_src_off", run("t1", lambda D, S: clone_range(D, S, 1, BS, 0)))
case("unaligned_dst_off", run("t2", lambda D, S: clone_range(D, S, 0, BS, 1)))
case("unaligned_len_mid", run("t3", lambda D, S: clone_range(D, S, 0, BS + 1, 0)))
case("len_past_eof", run("t4", lambda D, S: clone_range(D, S, 0, 32 * BS, 0)))
case("src_off_past_eof", run("t5", lambda D, S: clone_range(D, S, 32 * BS, BS, 0)))
case("src_off_at_eof", run("t5b", lambda D, S: clone_range(D, S, 16 * BS, BS, 0)))
case("len0_to_eof", run("t6", lambda D, S: clone_range(D, S, 0, 0, 0)))
case("len0_at_eof", run("t7", lambda D, S: clone_range(D, S, 16 * BS, 0, 0)))
case("len0_past_eof", run("t8", lambda D, S: clone_range(D, S, 20 * BS, 0, 0)))
case("len0_mid", run("t8b", lambda D, S: clone_range(D, S, 4 * BS, 0, 8 * BS)))
case("dst_beyond_eof", run("t9", lambda D, S: clone_range(D, S, 0, 2 * BS, 64 * BS)))
case("neg_src_off", run("t10", lambda D, S: clone_range(D, S, 1 << 63, BS, 0)))
case("neg_len", run("t11", lambda D, S: clone_range(D, S, 0, 1 << 63, 0)))
case("wrap_dst", run("t12", lambda D, S: clone_range(D, S, 0, BS, (1 << 63) - BS)))
case("huge_dst_off", run("t12b", lambda D, S: clone_range(D, S, 0, BS, (1 << 62))))
case("bad_src_fd", run("t13", lambda D, S: clone_range(D, 9999, 0, BS, 0)))
case("neg_src_fd", run("t13b", lambda D, S: clone(D, -1)))
case("src_wronly", run("t14", lambda D, S: clone(D, S), sflags=os.O_WRONLY))
case("src_opath", run("t15", lambda D, S: clone(D, S), sflags=os.O_PATH))
case("dst_rdonly", run("src", lambda D, S: clone(D, S), dflags=os.O_RDONLY, spath=big))
case("dst_append", run("t16", lambda D, S: clone(D, S), dflags=os.O_WRONLY | os.O_APPEND | os.O_CREAT))
case("src_dir", run("t17", lambda D, S: clone(D, S), spath=sub, sflags=os.O_RDONLY | os.O_DIRECTORY))
def dst_dir():
    dfd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
    sfd = os.open(src, os.O_RDONLY)
    try:
        clone(dfd, sfd)
    finally:
        os.close(dfd); os.close(sfd)
case("dst_dir", dst_dir)
case("cross_fs", run("t18", lambda D, S: clone(D, S), spath=osrc))
def pipe_src():
    r, w = os.pipe()
    dfd = os.open(os.path.join(d, "t19"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        clone(dfd, r)
    finally:
        os.close(dfd); os.close(r); os.close(w)
case("pipe_src", pipe_src)
def same_file(soff, doff, ln):
    def f():
        p = mk("self%d_%d" % (soff, doff), 16 * BS)
        fd = os.open(p, os.O_RDWR)
        try:
            clone_range(fd, fd, soff, ln, doff)
        finally:
            os.close(fd)
    return f
case("self_overlap", same_file(0, BS, 4 * BS))
case("self_overlap_back", same_file(4 * BS, 2 * BS, 4 * BS))
case("self_disjoint", same_file(0, 8 * BS, 4 * BS))
case("self_beyond_eof", same_file(0, 32 * BS, 4 * BS))
def ficlone_self():
    p = mk("selfw", 4 * BS)
    fd = os.open(p, os.O_RDWR)
    try:
        clone(fd, fd)
    finally:
        os.close(fd)
case("ficlone_self", ficlone_self)
# partial EOF block: only at or past the destination's EOF
case("odd_eof_into_bigger", run("big", lambda D, S: clone(D, S), dflags=os.O_RDWR, spath=odd))
case("odd_eof_into_empty", run("t20", lambda D, S: clone(D, S), spath=odd))
case("odd_range_to_eof", run("t21", lambda D, S: clone_range(D, S, 4 * BS, BS + 100, 0), spath=odd))
case("odd_range_short", run("t22", lambda D, S: clone_range(D, S, 4 * BS, 100, 0), spath=odd))
case("odd_tail_mid_dest", run("t23", lambda D, S: (os.pwrite(D, b"x" * (8 * BS), 0), clone_range(D, S, 4 * BS, 0, 0)), spath=odd))
case("ficlone_whole", run("t24", lambda D, S: clone(D, S)))

# FS_IOC_FIEMAP argument checks (fs/ioctl.c fiemap_prep)
FS_IOC_FIEMAP = 0xC020660B
def fiemap(path, start, length, flags, count):
    fd = os.open(path, os.O_RDONLY)
    buf = bytearray(struct.pack("=QQIIII", start, length, flags, 0, count, 0) + bytes(56 * count))
    try:
        fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
    except OSError as e:
        e.fm_flags = struct.unpack_from("=I", buf, 16)[0]
        raise
    finally:
        os.close(fd)
    return struct.unpack_from("=I", buf, 20)[0]
case("fiemap_len0", lambda: fiemap(src, 0, 0, 0, 4))
case("fiemap_badflag", lambda: fiemap(src, 0, 1 << 20, 0x80, 4))
try:
    fiemap(src, 0, 1 << 20, 0x80 | 1, 4)
except OSError as e:
    print("fiemap_badflag_fm_flags: 0x%x" % e.fm_flags)
case("fiemap_count_only", lambda: fiemap(src, 0, 1 << 30, 1, 0))
case("fiemap_past_eof", lambda: fiemap(src, 1 << 40, 4096, 0, 4))
case("fiemap_huge_start", lambda: fiemap(src, (1 << 64) - 4096, 4096, 0, 4))

# content check of the successful whole-file clone
with open(os.path.join(d, "t24"), "rb") as a, open(src, "rb") as b:
    print("ficlone_whole_content:", "SAME" if a.read() == b.read() else "DIFFERENT")
with open(os.path.join(d, "t20"), "rb") as a, open(odd, "rb") as b:
    print("odd_eof_content:", "SAME" if a.read() == b.read() else "DIFFERENT")
EOF

log "differential clone errors: kernel XFS vs reflinkfs+shim"
"$PY" "$T/clone_cases.py" "$XMNT" "$OTHER/x" >"$T/xfs.out" 2>&1 || {
	cat "$T/xfs.out" >&2; die "clone cases on XFS crashed"; }
LD_PRELOAD=$SHIM "$PY" "$T/clone_cases.py" "$MNT" "$OTHER/r" >"$T/rlfs.out" 2>&1 || {
	cat "$T/rlfs.out" >&2; die "clone cases on reflinkfs crashed"; }
if ! diff -u "$T/xfs.out" "$T/rlfs.out" >"$T/diff.out"; then
	cat "$T/diff.out" >&2
	die "errno of clone calls differ between kernel XFS (-) and reflinkfs (+)"
fi
ncases=$(wc -l <"$T/rlfs.out")
log "all $ncases clone results match XFS ($(grep -c ': OK$' "$T/rlfs.out") successes)"
grep -q 'bad_src_fd: EBADF' "$T/rlfs.out" || die "sanity: bad_src_fd not EBADF"
grep -q 'cross_fs: EXDEV' "$T/rlfs.out" || die "sanity: cross_fs not EXDEV"
kumount "$XMNT"

# Without the shim the kernel refuses FICLONE on FUSE files by itself
# (EOPNOTSUPP from the VFS: FUSE has no remap_file_range).
rc=0
"$PY" - "$MNT/noshim" "$MNT/src" <<'PYEOF' || rc=$?
import errno, fcntl, os, sys
d = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
s = os.open(sys.argv[2], os.O_RDONLY)
try:
    fcntl.ioctl(d, 0x40049409, s)
except OSError as e:
    sys.exit(0 if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY) else (print("FICLONE failed with", e) or 1))
print("FICLONE without the shim succeeded (the kernel should refuse it)")
sys.exit(1)
PYEOF
[ $rc = 0 ] || die "FICLONE without the shim: not refused the way the kernel refuses it"

# ---------------------------------------------------------------- tools
used_kb() { df -P -k "$MNT" | awk 'NR==2 {print $3}'; }
head -c $((8 << 20)) /dev/urandom >"$MNT/orig"
sync -f "$MNT/orig"
u0=$(used_kb)

log "cp --reflink=always through the shim"
LD_PRELOAD=$SHIM cp --reflink=always "$MNT/orig" "$MNT/clone1" || die "cp --reflink=always failed"
cmp "$MNT/orig" "$MNT/clone1" || die "cp --reflink=always: contents differ"
u1=$(used_kb)
[ $((u1 - u0)) -lt 1024 ] || die "cp --reflink=always used $((u1 - u0)) KiB for an 8 MiB file"

log "filefrag -v and xfs_io fiemap show shared extents"
LD_PRELOAD=$SHIM filefrag -v "$MNT/clone1" >"$T/filefrag.out" 2>&1 || {
	cat "$T/filefrag.out" >&2; die "filefrag -v failed"; }
grep -q shared "$T/filefrag.out" || { cat "$T/filefrag.out" >&2; die "filefrag shows no shared extent"; }
grep -q 'last' "$T/filefrag.out" || { cat "$T/filefrag.out" >&2; die "filefrag shows no last extent"; }
LD_PRELOAD=$SHIM xfs_io -r -c "fiemap -v" "$MNT/orig" >"$T/xfsio-fiemap.out" 2>&1 ||
	die "xfs_io fiemap failed"
grep -Eq '0x20[0-9a-f]{2}' "$T/xfsio-fiemap.out" ||
	{ cat "$T/xfsio-fiemap.out" >&2; die "xfs_io fiemap shows no FIEMAP_EXTENT_SHARED"; }
# fiemap with a count-only call and a small buffer (filefrag loops in batches)
LD_PRELOAD=$SHIM filefrag "$MNT/clone1" >"$T/filefrag2.out" 2>&1 || die "filefrag (count) failed"
grep -q 'extent' "$T/filefrag2.out" || { cat "$T/filefrag2.out" >&2; die "filefrag (count) printed no count"; }

log "xfs_io reflink of a range"
: >"$MNT/part"
LD_PRELOAD=$SHIM xfs_io -c "reflink $MNT/orig 1M 64k 2M" "$MNT/part" >"$T/xfsio-reflink.out" 2>&1 || {
	cat "$T/xfsio-reflink.out" >&2; die "xfs_io reflink failed"; }
[ "$(stat -c %s "$MNT/part")" = $(((64 << 10) + (2 << 20))) ] || die "xfs_io reflink: wrong size"
cmp -n $((2 << 20)) -i $((1 << 20)):$((64 << 10)) "$MNT/orig" "$MNT/part" ||
	die "xfs_io reflink: contents differ"

touch -d 2001-01-01 "$MNT/part"
LD_PRELOAD=$SHIM xfs_io -c "reflink $MNT/orig 0 0 64k" "$MNT/part" >/dev/null || die "xfs_io reflink 2 failed"
[ "$(stat -c %Y "$MNT/part")" -gt 1000000000 ] || die "clone did not update the destination's mtime"

log "plain cp (FUSE copy_file_range) shares blocks"
u2=$(used_kb)
cp "$MNT/orig" "$MNT/cpcopy" || die "cp failed"
cmp "$MNT/orig" "$MNT/cpcopy" || die "cp: contents differ"
u3=$(used_kb)
[ $((u3 - u2)) -lt 1024 ] || die "plain cp used $((u3 - u2)) KiB for an 8 MiB file (no sharing)"
# unaligned copy_file_range: head/tail copied, middle shared, data exact
"$PY" - "$MNT/orig" "$MNT/cfr" <<'EOF' || die "unaligned copy_file_range failed"
import os, sys
s = os.open(sys.argv[1], os.O_RDONLY)
d = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.pwrite(d, b"y" * 100, 0)
n, want = 0, 3 * 1024 * 1024 + 333
while n < want:
    c = os.copy_file_range(s, d, want - n, 1000 + n, 1100 + n)
    if c == 0:
        break
    n += c
assert n == want, n
with open(sys.argv[1], "rb") as a, open(sys.argv[2], "rb") as b:
    A, B = a.read(), b.read()
assert B[:100] == b"y" * 100 and B[1100:1100 + want] == A[1000:1000 + want], "data"
assert len(B) == 1100 + want, len(B)
EOF

log "copy_file_range: random same-file/cross-file copies, writes, truncates vs a model"
cat >"$T/cfr.py" <<'EOF'
import os, random, sys
random.seed(int(sys.argv[1]))
d = sys.argv[2]
files = {}
for n in ("cfa", "cfb"):
    files[n] = bytearray(os.urandom(200000))
    with open(os.path.join(d, n), "wb") as f:
        f.write(files[n])
fds = {n: os.open(os.path.join(d, n), os.O_RDWR) for n in files}
for it in range(400):
    s, t = random.choice(list(files)), random.choice(list(files))
    src, dst = files[s], files[t]
    op = random.random()
    if op < 0.15:
        o = random.randrange(len(dst) + 1)
        w = bytes([random.randrange(256)]) * random.choice([1, 5000, 4096])
        os.pwrite(fds[t], w, o)
        if o > len(dst):
            dst.extend(bytes(o - len(dst)))
        dst[o:o + len(w)] = w
        continue
    if op < 0.2:
        z = random.randrange(len(dst) + 5000)
        os.ftruncate(fds[t], z)
        if z < len(dst):
            del dst[z:]
        else:
            dst.extend(bytes(z - len(dst)))
        continue
    ln = random.choice([1, 100, 4096, 8192, 50000, 4096 * 7 + 3, 10**6])
    oi = random.choice([0, 4096, 8192 * 3, random.randrange(len(src) + 1)])
    oo = random.choice([0, 4096, oi, random.randrange(len(dst) + 1), len(dst), len(dst) + 777])
    if s == t and oo < oi + ln and oi < oo + ln:
        continue
    chunk = bytes(src[oi:oi + ln])
    n = os.copy_file_range(fds[s], fds[t], ln, oi, oo)
    assert n <= len(chunk), (n, len(chunk))
    if n:
        if oo > len(dst):
            dst.extend(bytes(oo - len(dst)))
        dst[oo:oo + n] = chunk[:n]
for n in files:
    os.close(fds[n])
    with open(os.path.join(d, n), "rb") as f:
        got = f.read()
    if got != bytes(files[n]):
        print("MISMATCH", n, len(got), len(files[n]))
        sys.exit(1)
EOF
for seed in 1 2 3; do
	"$PY" "$T/cfr.py" "$seed" "$MNT" || die "copy_file_range model check failed (seed $seed)"
done

log "a rewrite of a clone leaves the original and the other clones intact"
md5_orig=$(md5sum <"$MNT/orig")
dd if=/dev/zero of="$MNT/clone1" bs=4k seek=100 count=50 conv=notrunc status=none
[ "$(md5sum <"$MNT/orig")" = "$md5_orig" ] || die "the original changed after writing a clone"
[ "$(md5sum <"$MNT/cpcopy")" = "$md5_orig" ] || die "another clone changed"
cmp -s "$MNT/orig" "$MNT/clone1" && die "the write to the clone was lost"

log "reflinkfs io: reflink, fiemap, funshare, stat"
"$RLFS" io -f -c "reflink $MNT/orig" -c "stat" "$MNT/ioclone" >"$T/io1.out" 2>&1 || {
	cat "$T/io1.out" >&2; die "reflinkfs io reflink failed"; }
grep -q 'extents.shared_bytes = 8388608' "$T/io1.out" || {
	cat "$T/io1.out" >&2; die "reflinkfs io: clone not fully shared"; }
"$RLFS" io -c "funshare 0 1M" -c "fiemap -v" -c "pwrite -S 0x41 0 4096" -c "pread -v 0 32" \
	"$MNT/ioclone" >"$T/io2.out" 2>&1 || { cat "$T/io2.out" >&2; die "reflinkfs io funshare failed"; }
grep '^   0: ' "$T/io2.out" >"$T/io2.first" || true
grep -q '^   0: \[0\.\.2047\]:' "$T/io2.first" && ! grep -q shared "$T/io2.first" ||
	{ cat "$T/io2.out" >&2; die "funshare: first MiB still shared"; }
grep -q shared "$T/io2.out" || { cat "$T/io2.out" >&2; die "funshare unshared too much"; }
grep -q '41 41 41 41' "$T/io2.out" || { cat "$T/io2.out" >&2; die "pread -v shows no data"; }
[ "$(md5sum <"$MNT/orig")" = "$md5_orig" ] || die "the original changed after funshare/pwrite of a clone"
expect_rc 1 "$RLFS" io -c "reflink $MNT/orig 1 0 4096" "$MNT/ioclone"
expect_rc 1 "$RLFS" io -c "bogus" "$MNT/ioclone"
"$RLFS" io -c "reflink $OTHER/r/osrc" "$MNT/ioclone" 2>"$T/io3.err" && die "cross-fs reflink succeeded"
grep -q 'Invalid cross-device link' "$T/io3.err" || { cat "$T/io3.err" >&2; die "cross-fs: not EXDEV"; }

log "private ioctls directly: malformed arguments give EINVAL and change nothing"
"$PY" - "$MNT" <<'EOF' || die "raw private ioctl checks failed"
import errno, fcntl, os, struct, sys
d = sys.argv[1]
def IOWR(nr, size):
    return (3 << 30) | (size << 16) | (0xb7 << 8) | nr
CLONE, CLONE_RANGE = IOWR(1, 32), IOWR(2, 32)
GET_EXTENTS, UNSHARE = IOWR(3, 32 + 128 * 32), IOWR(8, 40)
def expect(err, fn):
    try:
        fn()
    except OSError as e:
        assert e.errno == err, (errno.errorcode[e.errno], errno.errorcode[err])
        return
    assert err == 0, "succeeded, expected %s" % errno.errorcode[err]
src = os.path.join(d, "rawsrc"); dst = os.path.join(d, "rawdst")
with open(src, "wb") as f: f.write(b"S" * 65536)
with open(dst, "wb") as f: f.write(b"D" * 65536)
s = os.open(src, os.O_RDONLY); t = os.open(dst, os.O_RDWR)
expect(errno.EINVAL, lambda: fcntl.ioctl(t, CLONE, struct.pack("=qQQQ", s, 1, 0, 0)))
expect(errno.EINVAL, lambda: fcntl.ioctl(t, CLONE_RANGE, struct.pack("=qQQQ", s, 0, 4097, 0)))
expect(errno.EINVAL, lambda: fcntl.ioctl(t, UNSHARE, struct.pack("=QQIIQQ", 0, 0, 0, 0, 0, 0)))
expect(errno.EINVAL, lambda: fcntl.ioctl(t, UNSHARE, struct.pack("=QQIIQQ", 0, 4096, 2, 0, 0, 0)))
r = os.open(dst, os.O_RDONLY)
expect(errno.EBADF, lambda: fcntl.ioctl(r, UNSHARE, struct.pack("=QQIIQQ", 0, 4096, 0, 0, 0, 0)))
assert open(dst, "rb").read() == b"D" * 65536, "a rejected call changed the file"
buf = bytearray(32 + 128 * 32)
struct.pack_into("=QQIIII", buf, 0, 0, 1 << 40, 4, 0, 0, 0)
expect(errno.EBADR, lambda: fcntl.ioctl(r, GET_EXTENTS, buf))  # unknown flag, as FIEMAP
struct.pack_into("=QQIIII", buf, 0, 0, 1 << 40, 0, 0, 0, 7)
expect(errno.EINVAL, lambda: fcntl.ioctl(r, GET_EXTENTS, buf))
struct.pack_into("=QQIIII", buf, 0, 0, 1 << 40, 1, 0, 0, 0)
fcntl.ioctl(r, GET_EXTENTS, buf)
start, length, flags, count, abi, res = struct.unpack_from("=QQIIII", buf, 0)
assert abi == 2 and count >= 1, (abi, count)
expect(errno.ENOTTY, lambda: fcntl.ioctl(r, IOWR(99, 8), bytes(8)))
fcntl.ioctl(t, CLONE, struct.pack("=qQQQ", s, 0, 0, 0))
assert open(dst, "rb").read() == b"S" * 65536
EOF

log "xfs_io funshare through the shim (fallocate UNSHARE_RANGE)"
LD_PRELOAD=$SHIM xfs_io -c "funshare 0 64k" -c "fiemap -v 0 64k" "$MNT/cpcopy" >"$T/funshare.out" 2>&1 ||
	{ cat "$T/funshare.out" >&2; die "xfs_io funshare failed"; }
grep -q 'Operation not supported' "$T/funshare.out" && { cat "$T/funshare.out" >&2; die "funshare not translated"; }
grep -E '^ +0: \[0\.\.127\]:' "$T/funshare.out" >"$T/funshare.first" ||
	{ cat "$T/funshare.out" >&2; die "funshare: no extent for the unshared range"; }
grep -Eq '0x20[0-9a-f]{2}' "$T/funshare.first" &&
	{ cat "$T/funshare.out" >&2; die "funshare left the range shared"; }
[ "$(md5sum <"$MNT/cpcopy")" = "$md5_orig" ] || die "funshare changed the data"

log "dirty pages: clones see unflushed source data; cached destination pages are replaced"
cat >"$T/dirty.py" <<'EOF'
import fcntl, os, struct, sys
i, d = int(sys.argv[1]), sys.argv[2]
FICLONE, FICLONERANGE = 0x40049409, 0x4020940d
for it in range(int(sys.argv[3])):
    k = 1 + (i * 7 + it) % 40
    whole = it % 2 == 1
    data = os.urandom(4096 * k + (0 if whole else (i * 37 + it) % 4096))
    src = os.path.join(d, "ds%d" % i)
    with open(src, "wb") as f:
        f.write(data)                                  # no fsync: dirty pages
    dst = os.path.join(d, "dc%d" % i)
    fd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.pwrite(fd, b"D" * 65536, 0)                     # dirty destination pages
    os.pread(fd, 10, 0)
    sfd = os.open(src, os.O_RDONLY)
    if whole:
        fcntl.ioctl(fd, FICLONE, sfd)
        n = len(data)
    else:
        n = len(data) & ~4095
        fcntl.ioctl(fd, FICLONERANGE, struct.pack("=qQQQ", sfd, 0, n, 0))
    os.close(sfd)
    want = data[:n] + b"D" * max(0, 65536 - n)
    got = b""
    while True:
        b = os.pread(fd, 1 << 20, len(got))
        if not b:
            break
        got += b
    os.close(fd)
    if got != want:
        print("MISMATCH proc %d iter %d: got %d bytes, want %d" % (i, it, len(got), len(want)))
        sys.exit(1)
EOF
# 40 processes at once: more than the daemon's request threads
pids=()
for i in $(seq 1 40); do
	LD_PRELOAD=$SHIM timeout 300 "$PY" "$T/dirty.py" "$i" "$MNT" 3 >"$T/dirty.$i.out" 2>&1 &
	pids+=($!)
done
for i in $(seq 1 40); do
	wait "${pids[i - 1]}" || { cat "$T/dirty.$i.out" >&2; die "dirty-page clone run $i failed"; }
done

log "remount: data and sharing persist"
rlfs_umount "$MNT"
rlfs_fsck "$IMG"
rlfs_mount "$IMG" "$MNT"
[ "$(md5sum <"$MNT/orig")" = "$md5_orig" ] || die "original changed after remount"
[ "$(md5sum <"$MNT/cpcopy")" = "$md5_orig" ] || die "cp copy changed after remount"
LD_PRELOAD=$SHIM filefrag -v "$MNT/cpcopy" >"$T/filefrag3.out" 2>&1 || die "filefrag after remount failed"
grep -q shared "$T/filefrag3.out" || die "sharing lost after remount"
rlfs_umount "$MNT"
rlfs_fsck "$IMG"
log "PASS"

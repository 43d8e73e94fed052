#!/usr/bin/env python3
"""XFS_IOC_EXCHANGE_RANGE cases for tests/integration/64-exchange.sh, run
through the LD_PRELOAD shim on a reflinkfs mount.

    exchange_ops.py ops ROOT OTHERDIR
        the cases below, one line each ("CASE -> RESULT"); each result is
        checked here against what ioctl_xfs_exchange_range(2) says (no
        kernel oracle: kernel XFS answers the ioctl only on filesystems
        made with `mkfs.xfs -i exchange=1`, which Debian 12's xfsprogs 6.1
        cannot make, so the expected results are written out from the man
        page and fs/xfs/xfs_exchrange.c's checks).  OTHERDIR is on another
        filesystem (EXDEV).  Exit 1 on the first mismatch.

Semantics: ioctl(file2_fd, XFS_IOC_EXCHANGE_RANGE, struct
xfs_exchange_range {s32 file1_fd; u32 pad; u64 file1_offset, file2_offset,
length, flags}); flags TO_EOF 1, DSYNC 2, DRY_RUN 4, FILE1_WRITTEN 8.
"""
import errno
import fcntl
import hashlib
import os
import struct
import subprocess
import sys
import time

XFS_IOC_EXCHANGE_RANGE = (1 << 30) | (40 << 16) | (ord('X') << 8) | 129  # _IOW
XFS_IOC_START_COMMIT = (2 << 30) | (88 << 16) | (ord('X') << 8) | 130    # _IOR
XFS_IOC_COMMIT_RANGE = (1 << 30) | (88 << 16) | (ord('X') << 8) | 131    # _IOW
FICLONE = 0x40049409
TO_EOF, DSYNC, DRY_RUN, FILE1_WRITTEN = 1, 2, 4, 8
K = 1024
BS = 4096
FAILS = []


def xchg(fd2, fd1, off1, off2, length, flags=0, pad=0):
    """The ioctl on fd2 with file1 fd1: 'OK' or the errno's name."""
    arg = struct.pack("=iIQQQQ", fd1, pad, off1, off2, length, flags)
    try:
        fcntl.ioctl(fd2, XFS_IOC_EXCHANGE_RANGE, arg)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "OK"


def start_commit(fd2):
    """XFS_IOC_START_COMMIT on fd2: the 88-byte struct xfs_commit_range
    (freshness filled), or the errno's name."""
    buf = bytearray(88)
    try:
        fcntl.ioctl(fd2, XFS_IOC_START_COMMIT, buf, True)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return bytes(buf)


def commit(fd2, started, fd1, off1, off2, length, flags=0):
    arg = struct.pack("=iIQQQQ", fd1, 0, off1, off2, length, flags) + started[40:88]
    try:
        fcntl.ioctl(fd2, XFS_IOC_COMMIT_RANGE, arg)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "OK"


def pattern(seed, n):
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


def mkfile(path, data, sparse=()):
    """Write data to path (a new file); blocks listed in sparse are
    punched out (holes)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    for b in sparse:
        fallocate(fd, 3, b * BS, BS)   # PUNCH_HOLE | KEEP_SIZE
    os.fsync(fd)
    os.close(fd)


def fallocate(fd, mode, off, length):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def content(path):
    with open(path, "rb") as f:
        return f.read()


def check(name, got, want):
    line = "%s -> %s" % (name, got)
    print(line, flush=True)
    if got != want:
        FAILS.append("%s (want %s)" % (line, want))


def opened(path, flags=os.O_RDWR):
    return os.open(path, flags)


def ops(root, other):
    a, b = os.path.join(root, "a"), os.path.join(root, "b")
    da, db = pattern(1, 16 * BS), pattern(2, 16 * BS)

    # 1. whole files of equal size: contents exchanged
    mkfile(a, da)
    mkfile(b, db)
    fa, fb = opened(a), opened(b)
    check("whole files", xchg(fb, fa, 0, 0, 16 * BS), "OK")
    check("whole files: a has b's bytes", content(a) == db, True)
    check("whole files: b has a's bytes", content(b) == da, True)
    os.close(fa)
    os.close(fb)

    # 2. partial ranges at different offsets; a hole in file1's range
    mkfile(a, da, sparse=(5,))
    mkfile(b, db)
    ea, eb = bytearray(content(a)), bytearray(content(b))
    fa, fb = opened(a), opened(b)
    check("partial", xchg(fb, fa, 4 * BS, 8 * BS, 4 * BS), "OK")
    ea[4 * BS:8 * BS], eb[8 * BS:12 * BS] = eb[8 * BS:12 * BS], ea[4 * BS:8 * BS]
    check("partial: contents", (content(a) == bytes(ea), content(b) == bytes(eb)), (True, True))
    os.close(fa)
    os.close(fb)

    # 3. TO_EOF: length ignored, sizes exchanged (file2's size =
    # file2_offset + (size1 - file1_offset) and the other way)
    da3, db3 = pattern(3, 5 * BS + 100), pattern(4, 9 * BS + 7)
    mkfile(a, da3)
    mkfile(b, db3)
    fa, fb = opened(a), opened(b)
    check("to_eof", xchg(fb, fa, BS, 2 * BS, 12345, TO_EOF), "OK")
    sa, sb = os.stat(a).st_size, os.stat(b).st_size
    check("to_eof: sizes", (sa, sb), (BS + len(db3) - 2 * BS, 2 * BS + len(da3) - BS))
    check("to_eof: a", content(a) == da3[:BS] + db3[2 * BS:], True)
    check("to_eof: b", content(b) == db3[:2 * BS] + da3[BS:], True)
    os.close(fa)
    os.close(fb)

    # 4. DRY_RUN: checked, nothing changed; its errors are reported too
    mkfile(a, da)
    mkfile(b, db)
    fa, fb = opened(a), opened(b)
    check("dry_run", xchg(fb, fa, 0, 0, 16 * BS, DRY_RUN), "OK")
    check("dry_run: unchanged", (content(a) == da, content(b) == db), (True, True))
    check("dry_run: bad alignment", xchg(fb, fa, 1, 0, BS, DRY_RUN), "EINVAL")

    # 5. FILE1_WRITTEN: only file1's written blocks move
    os.close(fa)
    mkfile(a, da, sparse=(0, 1, 2))
    fa = opened(a)
    check("file1_written", xchg(fb, fa, 0, 0, 16 * BS, FILE1_WRITTEN), "OK")
    ea = bytes(3 * BS) + db[3 * BS:]
    eb = db[:3 * BS] + da[3 * BS:]
    check("file1_written: contents", (content(a) == ea, content(b) == eb), (True, True))

    # 6. length 0: nothing to do, success
    mkfile(a, da)
    check("length 0", xchg(fb, fa, 0, 0, 0), "OK")

    # 7. EINVAL: pad, unknown flags, alignment, EOF, overlap in one file
    check("pad not zero", xchg(fb, fa, 0, 0, BS, pad=1), "EINVAL")
    check("unknown flag", xchg(fb, fa, 0, 0, BS, 1 << 4), "EINVAL")
    check("unaligned file1_offset", xchg(fb, fa, 512, 0, BS), "EINVAL")
    check("unaligned file2_offset", xchg(fb, fa, 0, 512, BS), "EINVAL")
    check("unaligned length mid-file", xchg(fb, fa, 0, 0, BS + 1), "EINVAL")
    check("offset past EOF", xchg(fb, fa, 17 * BS, 0, BS), "EINVAL")
    check("range past EOF", xchg(fb, fa, 8 * BS, 0, 9 * BS), "EINVAL")
    check("same file overlapping", xchg(fb, fb, 0, 2 * BS, 4 * BS), "EINVAL")
    check("same file apart", xchg(fb, fb, 0, 8 * BS, 4 * BS), "OK")
    check("wrapping offsets", xchg(fb, fa, (1 << 63) - BS, 0, 2 * BS), "EINVAL")
    os.close(fa)
    os.close(fb)

    # 8. EBADF: either file not open read-write, O_APPEND, a closed fd
    fb = opened(b)
    for name, fl in (("file1 O_RDONLY", os.O_RDONLY), ("file1 O_WRONLY", os.O_WRONLY),
                     ("file1 O_APPEND", os.O_RDWR | os.O_APPEND)):
        f1 = opened(a, fl)
        check(name, xchg(fb, f1, 0, 0, BS), "EBADF")
        os.close(f1)
    fa = opened(a)
    for name, fl in (("file2 O_RDONLY", os.O_RDONLY), ("file2 O_APPEND", os.O_RDWR | os.O_APPEND)):
        f2 = opened(b, fl)
        check(name, xchg(f2, fa, 0, 0, BS), "EBADF")
        os.close(f2)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    check("file1 closed fd", xchg(fb, w, 0, 0, BS), "EBADF")

    # 9. EXDEV: file1 on another filesystem
    o = os.path.join(other, "x")
    mkfile(o, da)
    fo = opened(o)
    check("file1 on another filesystem", xchg(fb, fo, 0, 0, BS), "EXDEV")
    os.close(fo)

    # 10. EISDIR (a directory), EINVAL (a FIFO: not a regular file)
    d = os.path.join(root, "dir")
    os.mkdir(d)
    fd = os.open(d, os.O_RDONLY)
    check("file1 a directory", xchg(fb, fd, 0, 0, BS), "EISDIR")
    os.close(fd)
    p = os.path.join(root, "fifo")
    os.mkfifo(p)
    fp = os.open(p, os.O_RDWR)
    check("file1 a fifo", xchg(fb, fp, 0, 0, BS), "EINVAL")
    os.close(fp)

    # 11. EPERM: an immutable file (opened before chattr +i)
    subprocess.run(["chattr", "+i", a], check=True)
    check("file1 immutable", xchg(fb, fa, 0, 0, BS), "EPERM")
    check("file2 immutable", xchg(fa, fb, 0, 0, BS), "EPERM")
    subprocess.run(["chattr", "-i", a], check=True)
    os.close(fa)
    os.close(fb)

    # 12. mtime and ctime of both files change
    mkfile(a, da)
    mkfile(b, db)
    sa0, sb0 = os.stat(a), os.stat(b)
    fa, fb = opened(a), opened(b)
    time.sleep(0.05)
    check("times", xchg(fb, fa, 0, 0, BS), "OK")
    sa1, sb1 = os.stat(a), os.stat(b)
    check("times: both changed", (sa1.st_mtime_ns > sa0.st_mtime_ns,
                                  sb1.st_mtime_ns > sb0.st_mtime_ns,
                                  sa1.st_ctime_ns > sa0.st_ctime_ns), (True, True, True))
    os.close(fa)
    os.close(fb)
    # 13. atomic file update (ioctl_xfs_commit_range(2)): START_COMMIT on
    # the file, a clone in an O_TMPFILE changed, COMMIT_RANGE to EOF
    mkfile(a, da)
    fa = opened(a)
    st = start_commit(fa)
    check("start_commit", type(st) is bytes and any(st[40:88]) and not any(st[:40]), True)
    tmp = os.open(root, os.O_TMPFILE | os.O_RDWR, 0o600)
    fcntl.ioctl(tmp, FICLONE, fa)
    os.pwrite(tmp, b"new" * 1000, 5000)
    os.pwrite(tmp, b"tail", 20 * BS)
    want = bytearray(da) + bytes(20 * BS + 4 - len(da))
    want[5000:8000] = b"new" * 1000
    want[20 * BS:20 * BS + 4] = b"tail"
    check("commit_range", commit(fa, st, tmp, 0, 0, 0, TO_EOF), "OK")
    check("commit_range: new contents and size", content(a) == bytes(want), True)
    os.close(tmp)
    # a change of the file between START_COMMIT and COMMIT_RANGE: EBUSY,
    # nothing changes (a write; a chmod)
    for what in ("write", "chmod"):
        before = content(a)
        st = start_commit(fa)
        tmp = os.open(root, os.O_TMPFILE | os.O_RDWR, 0o600)
        fcntl.ioctl(tmp, FICLONE, fa)
        os.pwrite(tmp, b"x" * 10, 0)
        time.sleep(0.01)
        if what == "write":
            with open(a, "r+b") as f:
                f.write(b"concurrent")
            before = content(a)
        else:
            os.chmod(a, 0o600)
        check("commit_range after a " + what, commit(fa, st, tmp, 0, 0, 0, TO_EOF), "EBUSY")
        check("commit_range after a " + what + ": unchanged", content(a) == before, True)
        os.close(tmp)
    # the freshness of another file
    st = start_commit(fa)
    fb = opened(b)
    check("commit_range, another file's freshness", commit(fb, st, fa, 0, 0, BS), "EBUSY")
    os.close(fb)
    os.close(fa)
    if FAILS:
        for f in FAILS:
            print("MISMATCH: " + f, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "ops":
        sys.exit(ops(sys.argv[2], sys.argv[3]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)

#!/usr/bin/env python3
"""Small system-call drivers for the feature tests (40-acl, 41-tmpfile-whiteout,
42-fiemap, 43-locks) that the shell tools cannot make.  Every command prints
what it observed, one line per observation, so that a run on kernel XFS and a
run on reflinkfs can be compared with diff.

  feat_ops.py tmpfile DIR NAME MODE      O_TMPFILE in DIR, write, name it NAME
                                         (linkat via /proc/self/fd), report
  feat_ops.py tmpfile-cases DIR          O_TMPFILE semantics (nlink, O_EXCL,
                                         link after unlink, data)
  feat_ops.py renameat2 SRC DST FLAGS    renameat2(2); prints the errno name
  feat_ops.py fiemap-errors PATH MODE    FIEMAP range/flag checks; MODE fiemap
                                         (FS_IOC_FIEMAP) or private
                                         (RLFS_IOC_GET_EXTENTS)
  feat_ops.py fiemap PATH [xattr]        extents as "logical physical length
                                         flags" (FS_IOC_FIEMAP)
  feat_ops.py locks PATH                 flock/POSIX/OFD locks: conflicts and
                                         /proc/locks lines (dev:ino matched
                                         with fstat)
"""
import ctypes
import errno
import fcntl
import os
import struct
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
AT_SYMLINK_FOLLOW = 0x400
AT_EMPTY_PATH = 0x1000


def ename(e):
    return errno.errorcode.get(e, str(e)) if e else "0"


def linkat(ofd, opath, npath, flags):
    r = libc.linkat(ofd, opath.encode(), AT_FDCWD, npath.encode(), flags)
    return 0 if r == 0 else ctypes.get_errno()


def renameat2(src, dst, flags):
    r = libc.renameat2(AT_FDCWD, src.encode(), AT_FDCWD, dst.encode(), flags)
    return 0 if r == 0 else ctypes.get_errno()


def cmd_tmpfile(d, name, mode):
    fd = os.open(d, os.O_TMPFILE | os.O_RDWR, int(mode, 8))
    os.write(fd, b"tmpfile data\n")
    st = os.fstat(fd)
    print("tmpfile nlink=%d mode=%o" % (st.st_nlink, st.st_mode))
    e = linkat(AT_FDCWD, "/proc/self/fd/%d" % fd, os.path.join(d, name), AT_SYMLINK_FOLLOW)
    print("linkat %s nlink=%d" % (ename(e), os.fstat(fd).st_nlink))
    os.close(fd)


def cmd_tmpfile_cases(d):
    fd = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o640)
    os.write(fd, b"hello")
    st = os.fstat(fd)
    print("fresh nlink=%d mode=%o size=%d" % (st.st_nlink, st.st_mode, st.st_size))
    print("not listed", sorted(os.listdir(d)))
    e = linkat(fd, "", os.path.join(d, "t1"), AT_EMPTY_PATH)
    print("link AT_EMPTY_PATH", ename(e), "nlink=%d" % os.fstat(fd).st_nlink)
    print("content", open(os.path.join(d, "t1"), "rb").read())
    e = linkat(fd, "", os.path.join(d, "t2"), AT_EMPTY_PATH)
    print("second link", ename(e), "nlink=%d" % os.fstat(fd).st_nlink)
    os.unlink(os.path.join(d, "t1"))
    os.unlink(os.path.join(d, "t2"))
    print("unlinked nlink=%d" % os.fstat(fd).st_nlink)
    e = linkat(fd, "", os.path.join(d, "t3"), AT_EMPTY_PATH)
    print("link after unlink", ename(e))
    os.close(fd)
    fd = os.open(d, os.O_TMPFILE | os.O_WRONLY | os.O_EXCL, 0o600)
    e = linkat(fd, "", os.path.join(d, "t4"), AT_EMPTY_PATH)
    print("O_EXCL link", ename(e))
    os.close(fd)
    for flags in (os.O_TMPFILE | os.O_RDONLY, os.O_TMPFILE | os.O_RDWR | os.O_CREAT):
        try:
            os.close(os.open(d, flags, 0o600))
            print("open flags %o ok" % flags)
        except OSError as ex:
            print("open flags %o %s" % (flags, ename(ex.errno)))
    try:
        os.open(os.path.join(d, "nodir"), os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError as ex:
        print("missing dir", ename(ex.errno))
    print("listing", sorted(os.listdir(d)))


def cmd_renameat2(src, dst, flags):
    print("renameat2 %s" % ename(renameat2(src, dst, int(flags, 0))))


# struct fiemap: fm_start, fm_length, fm_flags, fm_mapped_extents,
# fm_extent_count, fm_reserved; then struct fiemap_extent[] (56 bytes:
# logical, physical, length, reserved64[2], flags, reserved[3])
FS_IOC_FIEMAP = 0xC020660B
FIEMAP_HDR = "=QQIIII"
FIEMAP_EXT = "=QQQQQIIII"


def fiemap(fd, start, length, flags, count=32):
    buf = bytearray(32 + 56 * count)
    struct.pack_into(FIEMAP_HDR, buf, 0, start, length, flags, 0, count, 0)
    fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
    hdr = struct.unpack_from(FIEMAP_HDR, buf, 0)
    exts = [struct.unpack_from(FIEMAP_EXT, buf, 32 + 56 * i) for i in range(hdr[3])]
    return hdr, exts


def private_extents(fd, start, length, flags, reserved=0):
    size = 32 + 128 * 32
    req = (3 << 30) | (size << 16) | (0xB7 << 8) | 3
    buf = bytearray(size)
    struct.pack_into("=QQIIII", buf, 0, start, length, flags, 0, 0, reserved)
    fcntl.ioctl(fd, req, buf)
    return struct.unpack_from("=QQIIII", buf, 0)


def cmd_fiemap_errors(path, mode):
    fd = os.open(path, os.O_RDONLY)
    top = 1 << 63
    cases = [(0, 0, 0), (0, 1, 0), (0, (1 << 64) - 1, 0), (top - 4096, 4096, 0),
             (top - 1, 1, 0), (top, 4096, 0), (top, 0, 0), ((1 << 64) - 4096, 4096, 0),
             (4096, (1 << 64) - 1, 0), (0, 4096, 0x8), (top, 4096, 0x8), (0, 0, 0x8),
             (0, 4096, 0x2), (0, 0, 0x2), (top, 1, 0x2), (0, 4096, 0x3)]
    for start, length, flags in cases:
        try:
            if mode == "fiemap":
                fiemap(fd, start, length, flags)
            else:
                private_extents(fd, start, length, flags)
            r = "0"
        except OSError as ex:
            r = ename(ex.errno)
        print("start=%#x length=%#x flags=%#x -> %s" % (start, length, flags, r))
    if mode == "private":
        try:
            private_extents(fd, 0, 4096, 0, reserved=1)
            print("reserved -> 0")
        except OSError as ex:
            print("reserved -> %s" % ename(ex.errno))
    os.close(fd)


def cmd_fiemap(path, what=""):
    fd = os.open(path, os.O_RDONLY)
    flags = 0x2 if what == "xattr" else 0x1
    hdr, exts = fiemap(fd, 0, (1 << 64) - 1, flags, 512)
    for e in exts:
        print("%d %d %d %#x" % (e[0], e[1], e[2], e[5]))
    os.close(fd)


def proc_locks_for(st):
    key = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    out = []
    with open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            # "1: POSIX  ADVISORY  WRITE 1234 00:2b:257 0 EOF"; blocked
            # waiters have "->" after the number
            if "->" in parts:
                continue
            if len(parts) >= 8 and parts[5] == key:
                out.append("%s %s %s %s %s" % (parts[1], parts[2], parts[3], parts[6],
                                               parts[7]))
    return sorted(out)


def child_try(path, kind):
    """In a child process, try a non-blocking lock; print the result."""
    pid = os.fork()
    if pid == 0:
        fd = os.open(path, os.O_RDWR)
        try:
            if kind == "flock":
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            elif kind == "posix":
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 100, 0)
            elif kind == "posix-other-range":
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 100, 1000)
            os._exit(0)
        except OSError as ex:
            os._exit(ex.errno)
    _, status = os.waitpid(pid, 0)
    return ename(os.WEXITSTATUS(status))


def cmd_locks(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    st = os.fstat(fd)
    print("no locks", proc_locks_for(st))
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("flock held", proc_locks_for(st))
    print("other flock", child_try(path, "flock"))
    fcntl.flock(fd, fcntl.LOCK_UN)
    print("flock released", proc_locks_for(st))
    fcntl.lockf(fd, fcntl.LOCK_EX, 100, 0)
    print("posix held", proc_locks_for(st))
    print("other posix same range", child_try(path, "posix"))
    print("other posix other range", child_try(path, "posix-other-range"))
    # F_GETLK from a child sees the holder
    pid = os.fork()
    if pid == 0:
        fd2 = os.open(path, os.O_RDWR)
        lk = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 100, 0)
        res = fcntl.fcntl(fd2, fcntl.F_GETLK, lk)
        t, w, s, l, p = struct.unpack("hhqqi", res)
        print("getlk type=%s start=%d len=%d holder=%s" %
              ("wr" if t == fcntl.F_WRLCK else t, s, l, "parent" if p == os.getppid() else p))
        sys.stdout.flush()
        os._exit(0)
    os.waitpid(pid, 0)
    fcntl.lockf(fd, fcntl.LOCK_UN, 100, 0)
    print("posix released", proc_locks_for(st))
    # OFD lock (F_OFD_SETLK = 37)
    lk = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 10, 0)
    fcntl.fcntl(fd, 37, lk)
    print("ofd held", proc_locks_for(st))
    os.close(fd)
    print("after close", proc_locks_for(st))
    # generic/504: the lock outlives the process that took it (the fd is
    # inherited), and shows with the file's MAJOR:MINOR:INODE
    fd = os.open(path, os.O_WRONLY)
    pid = os.fork()
    if pid == 0:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os._exit(0)
    os.waitpid(pid, 0)
    print("flock of exited child", proc_locks_for(st))
    os.close(fd)


def main():
    a = sys.argv[1:]
    cmds = {"tmpfile": cmd_tmpfile, "tmpfile-cases": cmd_tmpfile_cases,
            "renameat2": cmd_renameat2, "fiemap-errors": cmd_fiemap_errors,
            "fiemap": cmd_fiemap, "locks": cmd_locks}
    if not a or a[0] not in cmds:
        print(__doc__)
        sys.exit(2)
    cmds[a[0]](*a[1:])
    sys.stdout.flush()


if __name__ == "__main__":
    main()

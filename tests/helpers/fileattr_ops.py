#!/usr/bin/env python3
"""Inode flags and extent size hints for tests/integration/58-fileattr.sh
(differential: the same cases run on a kernel XFS mount and, through the
LD_PRELOAD shim for the clone/dedupe ioctls, on reflinkfs; the "strict"
lines must be equal, the "soft" lines are differences by design).

    fileattr_ops.py ops ROOT       the cases below inside ROOT/fa, one line
                                   each: "strict LABEL -> RESULT"
    fileattr_ops.py get PATH       "xflags=0x.. extsize=N cowextsize=N
                                   flags=0x.." of PATH (persistence check)

Semantics: ioctl_iflags(2) (FS_IOC_GETFLAGS/SETFLAGS), ioctl_xfs_fsgetxattr
(2) / the kernel's fileattr (fs/file_attr.c vfs_fileattr_set,
fileattr_set_prepare), XFS's xfs_fileattr_set and
xfs_ioctl_setattr_check_extsize/_cowextsize, xfs_inode_inherit_flags;
immutable and append-only on every path (may_open, notify_change,
may_delete, may_linkat, vfs_fallocate, generic_remap_file_range_prep,
xattr_permission).
"""
import ctypes
import errno
import fcntl
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from posix_ops import child_as, res  # noqa: E402

FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IOC_FSGETXATTR = 0x801C581F
FS_IOC_FSSETXATTR = 0x401C5820
FICLONE = 0x40049409
FICLONERANGE = 0x4020940D
FIDEDUPERANGE = 0xC0189436

FS_SYNC_FL = 0x8
FS_IMMUTABLE_FL = 0x10
FS_APPEND_FL = 0x20
FS_NODUMP_FL = 0x40
FS_NOATIME_FL = 0x80
FS_COMPR_FL = 0x4
FS_DIRSYNC_FL = 0x10000

X_IMMUTABLE = 0x8
X_APPEND = 0x10
X_SYNC = 0x20
X_NOATIME = 0x40
X_NODUMP = 0x80
X_EXTSIZE = 0x800
X_EXTSZINHERIT = 0x1000
X_COWEXTSIZE = 0x10000
X_HASATTR = 0x80000000

FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_UNSHARE_RANGE = 0x40

CAP_FOWNER = 3
CAP_LINUX_IMMUTABLE = 9
NOBODY = 65534

ROOT = None
libc = ctypes.CDLL(None, use_errno=True)


def P(*parts):
    return os.path.join(ROOT, *parts)


def strict(label, result):
    print("strict %s -> %s" % (label, result), flush=True)


def soft(label, result):
    print("soft %s -> %s" % (label, result), flush=True)


def with_fd(path, flags, fn):
    fd = os.open(path, flags)
    try:
        return fn(fd)
    finally:
        os.close(fd)


def getflags(path):
    def f(fd):
        return "0x%x" % struct.unpack("<i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(4)))[0]
    return with_fd(path, os.O_RDONLY, f)


def setflags(path, fl):
    return with_fd(path, os.O_RDONLY,
                   lambda fd: fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("<i", fl)) and None)


def fsget(path):
    """(xflags, extsize, nextents, projid, cowextsize)"""
    def f(fd):
        b = fcntl.ioctl(fd, FS_IOC_FSGETXATTR, bytes(28))
        return struct.unpack("<IIIII8x", b)
    return with_fd(path, os.O_RDONLY, f)


def fsget_s(path):
    """without FS_XFLAG_HASATTR (XFS with parent pointers has an attr fork
    on every inode) and, for directories, without nextents (directory
    blocks: XFS counts them, reflinkfs says 0)"""
    x, e, n, p, c = fsget(path)
    ne = "" if os.path.isdir(path) else " nextents=%d" % n
    return "xflags=0x%x extsize=%d%s projid=%d cowextsize=%d" % (x & ~X_HASATTR, e, ne, p, c)


def fsset(path, xflags, extsize=0, cowextsize=0, projid=0):
    def f(fd):
        fcntl.ioctl(fd, FS_IOC_FSSETXATTR,
                    struct.pack("<IIIII8x", xflags, extsize, 0, projid, cowextsize))
    return with_fd(path, os.O_RDONLY, f)


def fsmod(path, setx=0, clearx=0, extsize=None, cowextsize=None, projid=None):
    """read-modify-write as xfs_io's chattr/extsize/cowextsize do"""
    x, e, _, p, c = fsget(path)
    return fsset(path, (x | setx) & ~clearx, e if extsize is None else extsize,
                 c if cowextsize is None else cowextsize, p if projid is None else projid)


def write_fsync(fd, data, off):
    os.pwrite(fd, data, off)
    os.fsync(fd)


def fallocate(fd, mode, off, length):
    if libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(length)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def clone(dst_fd, src_fd):
    fcntl.ioctl(dst_fd, FICLONE, src_fd)


def clone_range(dst_fd, src_fd, off, length, dst_off):
    fcntl.ioctl(dst_fd, FICLONERANGE, struct.pack("<qQQQ", src_fd, off, length, dst_off))


def dedupe(src_fd, off, length, dst_fd, dst_off):
    """the destination's status (0, 1 = DIFFERS, or the errno name)"""
    arg = bytearray(struct.pack("<QQHHI", off, length, 1, 0, 0) +
                    struct.pack("<qQQiI", dst_fd, dst_off, 0, 0, 0))
    fcntl.ioctl(src_fd, FIDEDUPERANGE, arg)
    st = struct.unpack_from("<qQQiI", arg, 24)[3]
    if st < 0:
        return errno.errorcode.get(-st, str(-st))
    return "status=%d" % st


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def enforcement(name, flag):
    """every path on a file with flag (FS_IMMUTABLE_FL or FS_APPEND_FL)
    and on a directory with it"""
    f = P(name)
    d = P(name + "-dir")
    src = P("src")
    write_file(f, b"A" * 8192)
    os.makedirs(d)
    write_file(os.path.join(d, "inside"), b"x")
    os.setxattr(f, "user.old", b"1")
    # descriptors opened before the flag is set
    wfd = os.open(f, os.O_RDWR)
    afd = os.open(f, os.O_WRONLY | os.O_APPEND)
    sfd = os.open(src, os.O_RDONLY)
    strict("%s set" % name, res(setflags, f, flag))
    strict("%s set dir" % name, res(setflags, d, flag))
    strict("%s getflags" % name, res(getflags, f))
    strict("%s fsget" % name, res(fsget_s, f))
    for label, fl in (("rdonly", os.O_RDONLY), ("wronly", os.O_WRONLY),
                      ("rdwr", os.O_RDWR), ("append", os.O_WRONLY | os.O_APPEND),
                      ("rdonly-trunc", os.O_RDONLY | os.O_TRUNC),
                      ("append-trunc", os.O_WRONLY | os.O_APPEND | os.O_TRUNC)):
        strict("%s open %s" % (name, label), res(with_fd, f, fl, lambda fd: None))
    # descriptor-based changes (through the writeback cache on reflinkfs,
    # so fsync is where a refused write shows: see DESIGN.md)
    (strict if flag == FS_APPEND_FL else soft)(
        "%s write+fsync append-fd" % name, res(write_fsync, afd, b"W" * 100, 0))
    # a write through a descriptor opened before the flag: the kernel
    # checks the flags at open only (may_open), so XFS writes an immutable
    # file; reflinkfs refuses (at fsync: the writeback cache took the
    # write), soft
    soft("%s write+fsync" % name, res(write_fsync, wfd, b"W" * 100, 0))
    strict("%s truncate" % name, res(os.truncate, f, 100))
    for label, mode in (("0", 0), ("keep", FALLOC_FL_KEEP_SIZE),
                        ("punch", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE),
                        ("zero", FALLOC_FL_ZERO_RANGE),
                        ("unshare", FALLOC_FL_UNSHARE_RANGE)):
        strict("%s fallocate %s" % (name, label), res(fallocate, wfd, mode, 0, 4096))
        strict("%s fallocate %s append-fd" % (name, label),
               res(fallocate, afd, mode, 8192, 4096))
    # An append-only file takes clones, dedupes and copies into it through
    # a descriptor opened before the flag (the kernel checks IS_APPEND at
    # open only: generic_remap_file_range_prep tests IS_IMMUTABLE); the
    # library refuses them (EPERM): different by design, soft.
    remap = strict if flag == FS_IMMUTABLE_FL else soft
    remap("%s clone" % name, res(clone, wfd, sfd))
    strict("%s clone append-fd" % name, res(clone, afd, sfd))
    remap("%s clone-range" % name, res(clone_range, wfd, sfd, 0, 4096, 0))
    remap("%s clone-range eof" % name, res(clone_range, wfd, sfd, 0, 4096, 8192))
    remap("%s dedupe dst" % name, res(dedupe, sfd, 0, 4096, wfd, 0))
    # (the source's bytes differ after the differences above: soft)
    soft("%s dedupe src" % name, res(lambda: with_fd(
        P("plain"), os.O_RDWR, lambda pfd: dedupe(wfd, 0, 4096, pfd, 0))))
    remap("%s copy_file_range" % name,
          res(lambda: os.copy_file_range(sfd, wfd, 4096, 0, 0)))
    strict("%s copy_file_range src" % name, res(lambda: with_fd(
        P("plain"), os.O_RDWR, lambda pfd: os.copy_file_range(wfd, pfd, 4096, 0, 0))))
    strict("%s chmod" % name, res(os.chmod, f, 0o600))
    strict("%s chown" % name, res(os.chown, f, 0, 0))
    strict("%s utime now" % name, res(os.utime, f, None))
    strict("%s utime set" % name, res(os.utime, f, (1, 1)))
    strict("%s setxattr" % name, res(os.setxattr, f, "user.new", b"1"))
    strict("%s removexattr" % name, res(os.removexattr, f, "user.old"))
    strict("%s link" % name, res(os.link, f, P(name + "-link")))
    strict("%s rename" % name, res(os.rename, f, P(name + "-renamed")))
    strict("%s rename over" % name, res(os.rename, P("plain2"), f))
    strict("%s unlink" % name, res(os.unlink, f))
    strict("%s dir create" % name, res(write_file, os.path.join(d, "new"), b"n"))
    strict("%s dir mkdir" % name, res(os.mkdir, os.path.join(d, "sub")))
    strict("%s dir unlink" % name, res(os.unlink, os.path.join(d, "inside")))
    strict("%s dir rename out" % name,
           res(os.rename, os.path.join(d, "inside"), P(name + "-out")))
    strict("%s dir rmdir" % name, res(os.rmdir, d))
    strict("%s dir setxattr" % name, res(os.setxattr, d, "user.new", b"1"))
    strict("%s dir chmod" % name, res(os.chmod, d, 0o700))
    # the content is what it was (no refused change got in), after fsync
    # of the descriptors and a cache drop
    soft("%s content" % name, "%d %s" % (len(read_file(f)), read_file(f)[:1]))
    # ftruncate through a descriptor opened before the flag: the kernel
    # checks IS_APPEND only (do_ftruncate), so XFS truncates an immutable
    # file; reflinkfs refuses (soft)
    (strict if flag == FS_APPEND_FL else soft)("%s ftruncate" % name,
                                               res(os.ftruncate, wfd, 100))
    strict("%s clear" % name, res(setflags, f, 0))
    strict("%s clear dir" % name, res(setflags, d, 0))
    for fd in (wfd, afd, sfd):
        os.close(fd)


def appends():
    """append-only files take appends: O_APPEND writes, also of a partial
    last block written again through the page cache"""
    f = P("ap")
    write_file(f, b"0123456789")
    strict("append set", res(setflags, f, FS_APPEND_FL))
    fd = os.open(f, os.O_WRONLY | os.O_APPEND)
    for i in range(5):
        os.write(fd, b"<%d>" % i)
    strict("append pwrite at 0 (O_APPEND ignores it)", res(os.pwrite, fd, b"P", 0))
    strict("append fsync", res(os.fsync, fd))
    os.close(fd)
    strict("append content", res(read_file, f))
    strict("append clear", res(setflags, f, 0))


def hints():
    f = P("h-file")
    d = P("h-dir")
    write_file(f, b"")
    os.makedirs(d)
    strict("fresh file", res(fsget_s, f))
    strict("fresh dir", res(fsget_s, d))
    cases = [
        ("extsize file", f, dict(setx=X_EXTSIZE, extsize=16384)),
        ("extsize file get", f, None),
        ("extsize unaligned", f, dict(setx=X_EXTSIZE, extsize=16385)),
        ("extsize 1 GiB", f, dict(setx=X_EXTSIZE, extsize=1 << 30)),
        ("extsize no flag", f, dict(clearx=X_EXTSIZE, extsize=16384)),
        ("extsize 0 clears", f, dict(setx=X_EXTSIZE, extsize=0)),
        ("extsize 0 clears get", f, None),
        ("extszinherit on file", f, dict(setx=X_EXTSZINHERIT, extsize=16384)),
        ("extsize on dir", d, dict(setx=X_EXTSIZE, extsize=16384)),
        ("extszinherit dir", d, dict(setx=X_EXTSZINHERIT, extsize=65536)),
        ("cowextsize file", f, dict(setx=X_COWEXTSIZE, cowextsize=131072)),
        ("cowextsize file get", f, None),
        ("cowextsize unaligned", f, dict(setx=X_COWEXTSIZE, cowextsize=1000)),
        ("cowextsize 1 GiB", f, dict(setx=X_COWEXTSIZE, cowextsize=1 << 30)),
        ("cowextsize no flag", f, dict(clearx=X_COWEXTSIZE, cowextsize=8192)),
        ("cowextsize 0 clears", f, dict(setx=X_COWEXTSIZE, cowextsize=0)),
        ("cowextsize 0 clears get", f, None),
        ("cowextsize dir", d, dict(setx=X_COWEXTSIZE | X_NODUMP | X_NOATIME,
                                   cowextsize=262144)),
        ("dir get", d, None),
        ("hasattr ignored on set", f, dict(setx=X_HASATTR)),
        ("xflag nodump", f, dict(setx=X_NODUMP)),
        ("xflag nodump get", f, None),
        ("xflag nodump clear", f, dict(clearx=X_NODUMP)),
    ]
    for label, path, kw in cases:
        if kw is None:
            strict(label, res(fsget_s, path))
        else:
            strict(label, res(fsmod, path, **kw))
    # a file with blocks keeps its extent size hint
    g = P("h-data")
    write_file(g, b"D" * 65536)
    strict("extsize on file with data", res(fsmod, g, setx=X_EXTSIZE, extsize=16384))
    strict("data nextents", res(lambda: fsget(g)[2]))
    os.setxattr(g, "user.a", b"1")
    soft("hasattr", res(lambda: "0x%x" % (fsget(g)[0] & X_HASATTR)))
    # inheritance: files get EXTSIZE, directories EXTSZINHERIT, both the
    # CoW hint, NODUMP and NOATIME
    write_file(os.path.join(d, "child"), b"")
    os.mkdir(os.path.join(d, "subdir"))
    strict("inherit file", res(fsget_s, os.path.join(d, "child")))
    strict("inherit dir", res(fsget_s, os.path.join(d, "subdir")))
    os.symlink("child", os.path.join(d, "link"))
    strict("inherit symlink lstat", res(lambda: oct(os.lstat(os.path.join(d, "link")).st_mode)))
    # flags the two filesystems store differently (by design; soft)
    soft("setflags sync", res(setflags, f, FS_SYNC_FL))
    soft("projid 7", res(fsmod, f, projid=7))
    setflags(f, 0)
    strict("setflags dirsync", res(setflags, f, FS_DIRSYNC_FL))
    strict("setflags compr", res(setflags, f, FS_COMPR_FL))
    strict("setflags nodump+noatime", res(setflags, f, FS_NODUMP_FL | FS_NOATIME_FL))
    strict("getflags", res(getflags, f))
    strict("setflags keeps hints", res(fsget_s, d))
    strict("setflags on dir keeps hints", res(setflags, d, FS_NODUMP_FL))
    strict("setflags on dir keeps hints get", res(fsget_s, d))


def users():
    """who may change what (vfs_fileattr_set: ownership or CAP_FOWNER;
    IMMUTABLE/APPEND only with CAP_LINUX_IMMUTABLE)"""
    mine = P("u-nobody")
    root = P("u-root")
    for p in (mine, root):
        write_file(p, b"u")
        os.chmod(p, 0o644)
    os.chown(mine, NOBODY, NOBODY)
    os.chmod(ROOT, 0o777)
    cases = [
        ("other getflags", None, lambda: getflags(root)),
        ("other fsget", None, lambda: fsget_s(root)),
        ("other setflags nodump", None, lambda: setflags(root, FS_NODUMP_FL)),
        ("other fsset nodump", None, lambda: fsmod(root, setx=X_NODUMP)),
        ("owner setflags nodump", None, lambda: setflags(mine, FS_NODUMP_FL)),
        ("owner fsset cowextsize", None,
         lambda: fsmod(mine, setx=X_COWEXTSIZE, cowextsize=65536)),
        ("owner setflags immutable", None, lambda: setflags(mine, FS_IMMUTABLE_FL)),
        ("owner setflags append", None, lambda: setflags(mine, FS_APPEND_FL)),
        ("owner+linux_immutable setflags immutable", CAP_LINUX_IMMUTABLE,
         lambda: setflags(mine, FS_IMMUTABLE_FL)),
        ("owner no cap keeps immutable, sets nodump", None,
         lambda: setflags(mine, FS_IMMUTABLE_FL | FS_NODUMP_FL)),
        ("owner no cap clears immutable", None, lambda: setflags(mine, 0)),
        ("owner+linux_immutable clears immutable", CAP_LINUX_IMMUTABLE,
         lambda: setflags(mine, 0)),
        ("fowner setflags nodump", CAP_FOWNER, lambda: setflags(root, FS_NODUMP_FL)),
        ("fowner setflags immutable", CAP_FOWNER, lambda: setflags(root, FS_IMMUTABLE_FL)),
        ("linux_immutable non-owner", CAP_LINUX_IMMUTABLE,
         lambda: setflags(root, FS_IMMUTABLE_FL)),
    ]
    for label, cap, fn in cases:
        strict(label, child_as(NOBODY, NOBODY, fn, keep_cap=cap))
    strict("after users", "%s %s" % (res(getflags, mine), res(getflags, root)))
    setflags(root, 0)


def ops(root):
    global ROOT
    ROOT = os.path.join(root, "fa")
    os.makedirs(ROOT)
    write_file(P("src"), b"S" * 8192)
    write_file(P("plain"), b"A" * 8192)
    write_file(P("plain2"), b"p")
    enforcement("imm", FS_IMMUTABLE_FL)
    enforcement("app", FS_APPEND_FL)
    appends()
    hints()
    users()


def get(path):
    x = fsget(path)
    print("xflags=0x%x extsize=%d cowextsize=%d flags=%s" % (x[0], x[1], x[4], getflags(path)))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "ops":
        ops(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "get":
        get(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

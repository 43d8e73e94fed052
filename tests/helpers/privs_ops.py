#!/usr/bin/env python3
"""setuid/setgid and file capabilities across data changes, for
tests/integration/28-privs.sh (differential: reflinkfs vs kernel XFS).

    privs_ops.py ops ROOT       run every case in ROOT/px, one line each:
                                "ACTION MODE by WHO -> RESULT mode=M CAP"
    privs_ops.py modes ROOT     the modes and capability state of ROOT/px/*
                                (to compare across a remount)

For each data-changing action (buffered and O_DIRECT write, fallocate
allocate / punch / zero, truncate, FICLONE, copy_file_range) and each
setuid/setgid combination, the action is done by the owner, by a user in
the file's group, by a user outside it (none has CAP_FSETID), by root
and by an outsider with CAP_FSETID (and no other capability), and the
file's mode is read right after (a stale kernel attribute cache
shows here).  Files with security.capability lose it to any data change,
root's too.  Kernel rules: fs/attr.c setattr_should_drop_suidgid.
FICLONE reaches reflinkfs through the LD_PRELOAD shim.
"""
import ctypes
import errno
import fcntl
import mmap
import os
import sys

OWNER, OTHER_UID, GROUP_GID = 65534, 1234, 65534
CAP = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw+p (v2)
FICLONE = 0x40049409
libc = ctypes.CDLL(None, use_errno=True)


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from posix_ops import child_as, res as _res  # noqa: E402


def res(fn):
    """'ok' or the errno name (fn's return value is not shown)."""
    return _res(lambda: (fn(), None)[1])


def as_user(uid, gid, fn):
    return child_as(uid, gid, lambda: (fn(), None)[1])


CAP_FSETID = 4


def as_fsetid(uid, gid, fn):
    """res(fn) in a child running as uid/gid with CAP_FSETID only."""
    return child_as(uid, gid, lambda: (fn(), None)[1], keep_cap=CAP_FSETID)


def state(p):
    st = os.stat(p)
    try:
        c = "cap" if os.getxattr(p, "security.capability") else "nocap"
    except OSError:
        c = "nocap"
    return "mode=%o %s" % (st.st_mode & 0o7777, c)


def dwrite(p):
    fd = os.open(p, os.O_WRONLY | os.O_DIRECT)
    m = mmap.mmap(-1, 4096)
    m.write(b"d" * 4096)
    try:
        os.pwrite(fd, m, 0)
    finally:
        os.close(fd)


def bwrite(p):
    fd = os.open(p, os.O_WRONLY)
    try:
        os.pwrite(fd, b"b" * 100, 0)
    finally:
        os.close(fd)


def falloc(mode):
    def f(p):
        fd = os.open(p, os.O_WRONLY)
        try:
            if libc.fallocate(fd, mode, ctypes.c_long(0), ctypes.c_long(8192)):
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
        finally:
            os.close(fd)
    return f


def source(d):
    src = os.path.join(d, "src")
    if not os.path.exists(src):
        with open(src, "wb") as f:
            f.write(b"s" * 65536)
        os.chmod(src, 0o644)
    return src


def clone(p):
    s = os.open(source(os.path.dirname(p)), os.O_RDONLY)
    d = os.open(p, os.O_WRONLY)
    try:
        fcntl.ioctl(d, FICLONE, s)
    finally:
        os.close(s)
        os.close(d)


def cfr(p):
    s = os.open(source(os.path.dirname(p)), os.O_RDONLY)
    d = os.open(p, os.O_WRONLY)
    try:
        os.copy_file_range(s, d, 65536, 0, 0)
    finally:
        os.close(s)
        os.close(d)


def trunc(p):
    os.truncate(p, 100)


ACTIONS = [("dwrite", dwrite), ("bwrite", bwrite), ("falloc", falloc(0)),
           ("punch", falloc(3)), ("zero", falloc(0x10)), ("trunc", trunc),
           ("clone", clone), ("cfr", cfr)]
# fsetid: an outsider (neither owner nor in the group) with CAP_FSETID,
# which keeps setuid and setgid whatever it changes
WHO = {"owner": (OWNER, GROUP_GID), "group": (OTHER_UID, GROUP_GID),
       "other": (OTHER_UID, OTHER_UID), "root": None,
       "fsetid": (OTHER_UID, OTHER_UID, "fsetid")}


def ops(root):
    d = os.path.join(root, "px")
    os.makedirs(d)
    os.chmod(d, 0o777)
    source(d)
    i = 0
    for an, act in ACTIONS:
        cases = [(m, w) for m in (0o6777, 0o6767, 0o4777, 0o2777, 0o2767) for w in WHO]
        cases += [("cap", "root"), ("cap", "owner")]
        for mode, who in cases:
            i += 1
            p = os.path.join(d, "f%03d" % i)
            with open(p, "wb") as f:
                f.write(b"x" * 65536)
            os.chown(p, OWNER, GROUP_GID)
            os.chmod(p, 0o666 if mode == "cap" else mode)
            if mode == "cap":
                os.setxattr(p, "security.capability", CAP)
            cred = WHO[who]
            if cred is None:
                r = res(lambda: act(p))
            elif len(cred) == 3:
                r = as_fsetid(cred[0], cred[1], lambda: act(p))
            else:
                r = as_user(cred[0], cred[1], lambda: act(p))
            label = "cap" if mode == "cap" else "%o" % mode
            print("%s %s by %s -> %s %s" % (an, label, who, r, state(p)), flush=True)


def modes(root):
    d = os.path.join(root, "px")
    for n in sorted(os.listdir(d)):
        print("%s %s" % (n, state(os.path.join(d, n))))


if __name__ == "__main__":
    {"ops": ops, "modes": modes}[sys.argv[1]](sys.argv[2])

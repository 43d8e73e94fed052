#!/usr/bin/env python3
"""FIDEDUPERANGE cases for tests/integration/55-dedupe.sh (differential:
the same script runs on a kernel XFS mount and, through the LD_PRELOAD
shim, on reflinkfs; the outputs must be equal).

    dedupe_ops.py ops ROOT      the fstests dedupe-group cases, one line
                                each: "CASE -> RESULT | after: ..." where
                                RESULT is the ioctl's errno or each
                                destination's status and bytes_deduped,
                                and "after" the md5 of the files involved
                                and how many bytes of the destination
                                range FIEMAP reports shared
    dedupe_ops.py race ROOT N   a writer rewrites the destination N times
                                (pattern A = the source's, or B) while
                                dedupes of the source onto it run; prints
                                what must hold whatever the interleaving
    dedupe_ops.py one SRC SOFF DST DOFF LEN
                                one dedupe; prints its result
    dedupe_ops.py shared FILE   bytes of FILE that FIEMAP marks shared

Semantics: ioctl_fideduperange(2), fs/remap_range.c
vfs_dedupe_file_range (whole-call checks, 1 GiB cap, per-destination
status), generic_remap_checks (REMAP_FILE_DEDUP: both ranges inside EOF;
an unaligned tail only when both end at EOF), allow_file_dedupe.
"""
import errno
import fcntl
import hashlib
import mmap
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from posix_ops import child_as  # noqa: E402

FIDEDUPERANGE = 0xC0189436
FS_IOC_FIEMAP = 0xC020660B
FIEMAP_EXTENT_SHARED = 0x2000
FIEMAP_FLAG_SYNC = 1
NOBODY = 65534
K = 1024
M = 1024 * K


def errname(e):
    return errno.errorcode.get(e, str(e))


def dedupe(src_fd, soff, length, dests, reserved1=0):
    """dests: [(fd, doff[, reserved])].  Returns 'ERRNO' for a failed
    ioctl, else 'st=' and each destination's status/bytes."""
    buf = bytearray(struct.pack("=QQHHI", soff, length, len(dests), reserved1, 0))
    for d in dests:
        fd, doff = d[0], d[1]
        rsv = d[2] if len(d) > 2 else 0
        buf += struct.pack("=qQQiI", fd, doff, 0, 0, rsv)
    try:
        fcntl.ioctl(src_fd, FIDEDUPERANGE, buf, True)
    except OSError as e:
        return errname(e.errno)
    out = []
    for i in range(len(dests)):
        _, _, nbytes, status, _ = struct.unpack_from("=qQQiI", buf, 24 + 32 * i)
        if status < 0:
            out.append(errname(-status))
        elif status == 1:
            out.append("DIFFERS")
        else:
            out.append("SAME/%d" % nbytes)
    return "st=" + ",".join(out)


def shared_bytes(path, off, length):
    """Bytes of [off, off+length) of path in extents FIEMAP marks shared."""
    fd = os.open(path, os.O_RDONLY)
    try:
        n = 0
        start = off
        end = off + length
        while start < end:
            count = 64
            buf = bytearray(struct.pack("=QQIIII", start, end - start, FIEMAP_FLAG_SYNC, 0,
                                        count, 0) + b"\0" * (56 * count))
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf, True)
            mapped = struct.unpack_from("=I", buf, 20)[0]
            if mapped == 0:
                break
            last = False
            for i in range(mapped):
                lo, _, ln, _, _, fl = struct.unpack_from("=QQQQQI", buf, 32 + 56 * i)
                a, b = max(lo, off), min(lo + ln, end)
                if fl & FIEMAP_EXTENT_SHARED and b > a:
                    n += b - a
                start = lo + ln
                last = last or (fl & 1)
            if last:
                break
        return n
    finally:
        os.close(fd)


def md5(path):
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()[:12]


def pattern(seed, n):
    out = bytearray()
    h = hashlib.sha256(seed.encode()).digest()
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h * 64
    return bytes(out[:n])


def mk(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, mode)


def ops(root):
    d = os.path.join(root, "dd")
    os.mkdir(d)
    os.chmod(d, 0o777)
    A = pattern("a", M)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    mk(p("a"), A)
    mk(p("b"), A)
    mk(p("c"), A[:700 * K] + b"X" + A[700 * K + 1:])
    mk(p("half"), A[:512 * K])
    mk(p("odd"), A[:10000])
    mk(p("odd2"), A[:10000])
    mk(p("odd3"), A[:10000] + pattern("z", 10000))
    mk(p("twin"), A[:512 * K] + A[:512 * K])
    for n in "efghij":
        mk(p(n), A)
    os.mkdir(p("dir"))

    def case(name, srcname, soff, length, dests, files, rng=None, sflags=os.O_RDONLY,
             reserved1=0):
        """dests: [(name or fd, doff[, reserved][, open flags])]"""
        sfd = os.open(p(srcname), sflags) if isinstance(srcname, str) else srcname
        fds, spec = [], []
        for x in dests:
            if isinstance(x[0], str):
                fl = x[3] if len(x) > 3 else os.O_RDWR
                fd = os.open(p(x[0]), fl)
                fds.append(fd)
            else:
                fd = x[0]
            spec.append((fd, x[1], x[2] if len(x) > 2 else 0))
        r = dedupe(sfd, soff, length, spec, reserved1)
        for fd in fds:
            os.close(fd)
        if isinstance(srcname, str):
            os.close(sfd)
        after = " ".join("%s=%s" % (f, md5(p(f))) for f in files)
        if rng:
            after += " shared=%d" % shared_bytes(p(rng[0]), rng[1], rng[2])
        print("%s -> %s | %s" % (name, r, after), flush=True)

    case("same", "a", 0, M, [("b", 0)], ["a", "b"], ("b", 0, M))
    case("already-shared", "a", 0, M, [("b", 0)], ["a", "b"], ("b", 0, M))
    case("differs", "a", 0, M, [("c", 0)], ["a", "c"], ("c", 0, M))
    case("part-same", "a", 0, 512 * K, [("c", 0)], ["c"], ("c", 0, M))
    case("part-differs", "a", 640 * K, 128 * K, [("c", 640 * K)], ["c"], ("c", 512 * K, 512 * K))
    case("unaligned-src-off", "a", 1000, 4096, [("e", 1000)], ["e"], ("e", 0, M))
    case("unaligned-dst-off", "a", 4096, 4096, [("e", 4097)], ["e"], ("e", 0, M))
    case("src-past-eof", "a", 512 * K, M, [("e", 0)], ["e"], ("e", 0, M))
    case("src-off-at-eof", "a", M, 0, [("e", 0)], ["e"])
    case("dst-past-eof", "a", 0, M, [("half", 0)], ["half"], ("half", 0, 512 * K))
    case("dst-off-past-eof", "a", 0, 4096, [("half", 600 * K)], ["half"])
    case("len-0", "a", 0, 0, [("e", 0)], ["e"], ("e", 0, M))
    case("unaligned-len-mid", "a", 0, 5000, [("f", 0)], ["f"], ("f", 0, M))
    case("eof-tail-both", "odd", 0, 10000, [("odd2", 0)], ["odd2"], ("odd2", 0, 10000))
    case("eof-tail-src-only", "odd", 0, 10000, [("odd3", 0)], ["odd3"], ("odd3", 0, 20000))
    case("eof-tail-dst-only", "odd3", 0, 10000, [("g", 0)], ["g"], ("g", 0, M))
    case("same-file-overlap", "a", 0, 64 * K, [("a", 4096)], ["a"])
    case("same-file-twin", "twin", 0, 512 * K, [("twin", 512 * K)], ["twin"],
         ("twin", 0, M))
    case("dst-append", "a", 0, 256 * K, [("h", 0, 0, os.O_RDWR | os.O_APPEND)], ["h"],
         ("h", 0, M))
    case("dst-rdonly-root", "a", 0, 256 * K, [("i", 0, 0, os.O_RDONLY)], ["i"], ("i", 0, M))
    case("src-wronly", "a", 0, 4096, [("j", 0)], ["j"], sflags=os.O_WRONLY)
    case("reserved1", "a", 0, 4096, [("j", 0)], ["j"], reserved1=1)
    dirfd = os.open(p("dir"), os.O_RDONLY)
    case("src-dir", dirfd, 0, 4096, [("j", 0)], ["j"])
    tmpfd = os.open("/proc/self/exe", os.O_RDONLY)
    case("many-mixed", "a", 0, M,
         [("j", 0), ("c", 0), (987654, 0), (dirfd, 0), ("a", 0), ("half", 0),
          ("e", 0, 7), (tmpfd, 0), ("f", 0), ("b", 0), ("g", 4096), ("i", 0)],
         ["a", "c", "e", "f", "g", "j", "i"], ("j", 0, M))
    os.close(tmpfd)
    os.close(dirfd)
    # the kernel takes at most a page of argument: 127 destinations (4 KiB)
    fd = os.open(p("a"), os.O_RDONLY)
    dfd = os.open(p("b"), os.O_RDWR)
    print("count-127 -> %s" % dedupe(fd, 0, 64 * K, [(dfd, 0)] * 127).split(",")[0])
    print("count-128 -> %s" % dedupe(fd, 0, 64 * K, [(dfd, 0)] * 128))
    os.close(dfd)
    os.close(fd)
    # the 1 GiB cap: sparse files of 1.5 GiB (holes compare equal)
    for n in ("big1", "big2"):
        with open(p(n), "wb") as f:
            f.truncate(3 * 512 * M)
    case("cap-1g", "big1", 0, 3 * 512 * M, [("big2", 0)], [])
    os.unlink(p("big1"))
    os.unlink(p("big2"))

    # permissions (allow_file_dedupe) as an unprivileged user: the
    # destination opened read-only, owned by root or by the user, or
    # writable by the user through its mode
    mk(p("src-ro"), A[:256 * K], 0o644)
    mk(p("root644"), A[:256 * K], 0o644)
    mk(p("root666"), A[:256 * K], 0o666)
    mk(p("grp664"), A[:256 * K], 0o664)
    os.chown(p("grp664"), 0, NOBODY)
    mk(p("own444"), A[:256 * K], 0o444)
    os.chown(p("own444"), NOBODY, NOBODY)
    mk(p("root600"), A[:256 * K], 0o600)

    def user_case(name, dst, flags=os.O_RDONLY):
        def fn():
            sfd = os.open(p("src-ro"), os.O_RDONLY)
            dfd = os.open(p(dst), flags)
            try:
                return dedupe(sfd, 0, 256 * K, [(dfd, 0)])
            finally:
                os.close(dfd)
                os.close(sfd)
        r = child_as(NOBODY, NOBODY, fn)
        print("user %s -> %s | shared=%d" % (name, r, shared_bytes(p(dst), 0, 256 * K)),
              flush=True)

    # writable through the access ACL only: a named user entry, masked
    # or not, a named user of someone else (others: read)
    import subprocess
    for n, acl in (("acl-user", "u:%d:rw" % NOBODY), ("acl-masked", "u:%d:rw,m::r" % NOBODY),
                   ("acl-other-user", "u:1234:rw")):
        mk(p(n), A[:256 * K], 0o644)
        subprocess.run(["setfacl", "-m", acl, p(n)], check=True)
    user_case("ro-root644", "root644")
    user_case("ro-acl-user", "acl-user")
    user_case("ro-acl-masked", "acl-masked")
    user_case("ro-acl-other-user", "acl-other-user")

    def as_dac_override(fn):
        # nobody with CAP_DAC_OVERRIDE only (generic_permission's
        # override makes the file writable to it)
        return child_as(NOBODY, NOBODY, fn, keep_cap=1)     # CAP_DAC_OVERRIDE

    def dac_fn():
        sfd = os.open(p("src-ro"), os.O_RDONLY)
        dfd = os.open(p("root644b"), os.O_RDONLY)
        try:
            return dedupe(sfd, 0, 256 * K, [(dfd, 0)])
        finally:
            os.close(dfd)
            os.close(sfd)
    mk(p("root644b"), A[:256 * K], 0o644)
    print("dac_override ro-root644 -> %s | shared=%d" %
          (as_dac_override(dac_fn), shared_bytes(p("root644b"), 0, 256 * K)), flush=True)
    user_case("ro-root666", "root666")
    user_case("ro-grp664", "grp664")
    user_case("ro-own444", "own444")
    user_case("open-root600", "root600")

    def src_unreadable():
        # the source opened write-only by the user: EINVAL for the call
        sfd = os.open(p("root666"), os.O_WRONLY)
        dfd = os.open(p("own444"), os.O_RDONLY)
        try:
            return dedupe(sfd, 0, 4096, [(dfd, 0)])
        finally:
            os.close(dfd)
            os.close(sfd)
    print("user src-wronly -> %s" % child_as(NOBODY, NOBODY, src_unreadable))


def race(root, n):
    """Writer rewrites dst (A or B, whole range) n times while the parent
    dedupes src onto it.  Must hold: src never changes; dst ends as the
    writer's last pattern (a write between compare and share would be
    lost, or a stale share would put A back); some dedupes succeed."""
    d = os.path.join(root, "race")
    os.mkdir(d)
    size = 256 * K
    A, B = pattern("a", size), pattern("b", size)
    src, dst = os.path.join(d, "src"), os.path.join(d, "dst")
    mk(src, A)
    mk(dst, B)
    # O_DIRECT: each write reaches the filesystem at once (a buffered one
    # waits in the page cache, and a clean cached page would hide what
    # the filesystem holds); the final reads are direct too
    bufA, bufB = mmap.mmap(-1, size), mmap.mmap(-1, size)
    bufA.write(A)
    bufB.write(B)
    # A dedupe never changes what a file reads: the writer, the only one
    # writing dst, reads it back before each write and must always find
    # its own last write (an unlocked compare lets a share of A land on
    # a B written after the compare: the writer sees A)
    pid = os.fork()
    if pid == 0:
        fd = os.open(dst, os.O_RDWR | os.O_DIRECT)
        rb = mmap.mmap(-1, size)
        last, bad = B, 0
        for i in range(n):
            os.preadv(fd, [rb], 0)
            if bytes(rb) != last:
                bad += 1
            last = A if i % 2 else B
            os.pwritev(fd, [bufA if i % 2 else bufB], 0)
        os.pwritev(fd, [bufB], 0)     # the last write: B
        os.close(fd)
        os._exit(min(bad, 100))
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(dst, os.O_RDWR)
    same = differs = other = 0
    bad_src = 0
    while True:
        r = dedupe(sfd, 0, size, [(dfd, 0)])
        if r == "st=SAME/%d" % size:
            same += 1
        elif r == "st=DIFFERS":
            differs += 1
        else:
            other += 1
            print("unexpected", r)
        if os.pread(sfd, size, 0) != A:  # buffered: what readers see
            bad_src += 1
        w, wst = os.waitpid(pid, os.WNOHANG)
        if w == pid:
            break
    os.close(dfd)
    os.close(sfd)
    def direct_read(path):
        buf = mmap.mmap(-1, size)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            os.preadv(fd, [buf], 0)
        finally:
            os.close(fd)
        return bytes(buf)
    print("race: src-unchanged=%s dst-is-last-write=%s writer-read-own-writes=%s other=%d "
          "dedupes>0=%s" % (bad_src == 0 and direct_read(src) == A, direct_read(dst) == B,
                            os.WIFEXITED(wst) and os.WEXITSTATUS(wst) == 0, other,
                            same + differs > 0))
    if not (os.WIFEXITED(wst) and os.WEXITSTATUS(wst) == 0):
        print("race: the writer found dst changed under it %s times" % os.WEXITSTATUS(wst),
              file=sys.stderr)
    print("race counts (not compared): same=%d differs=%d" % (same, differs), file=sys.stderr)


def one(src, soff, dst, doff, length):
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(dst, os.O_RDWR)
    print(dedupe(sfd, int(soff), int(length), [(dfd, int(doff))]))


if __name__ == "__main__":
    if sys.argv[1] == "ops":
        ops(sys.argv[2])
    elif sys.argv[1] == "race":
        race(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "one":
        one(*sys.argv[2:7])
    elif sys.argv[1] == "shared":
        print(shared_bytes(sys.argv[2], 0, os.stat(sys.argv[2]).st_size))
    else:
        sys.exit("usage: dedupe_ops.py ops|race|one ...")

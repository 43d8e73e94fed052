# clone_kill.py: clone-while-writing workload (fstests generic/334 pattern)
# that is SIGKILLed part-way, and the checks of what it leaves behind
# (tests/integration/29-clone-kill.sh).  No LD_PRELOAD shim: clones use
# RLFS_IOC_CLONE_RANGE directly.
#
#   clone_kill.py prep DIR DOUBLINGS  DIR/big: one block cloned onto itself
#                                     DOUBLINGS times (2^DOUBLINGS extents,
#                                     so cloning it takes long: generic/297)
#   clone_kill.py run DIR SEED [SECS] the workload, every process SIGKILLed
#                                     after a random time in [0.3, SECS] s
#   clone_kill.py check DIR           contents sane (below)
#   clone_kill.py readers DIR NREADS  reads of DIR/big during a clone of it
#   clone_kill.py intr DIR SIG [cfr]  a clone of DIR/big (copy_file_range with
#                                     cfr) stopped by signal SIG
#
# run: DIR/src (CK_SRC_MB MiB, default 8) is rewritten by CK_WRITERS (3)
# processes (random ranges, buffered and O_DIRECT, some extending the file,
# fsync with probability CK_FSYNC) while CK_CLONERS (2) processes take
# whole-file snapshots of it into CK_NSNAP (6) names, clone ranges of it
# over existing snapshots, truncate snapshots (O_TRUNC, as cp
# --reflink=always) and delete them, so blocks are freed and reused as data
# and metadata; with CK_FILL=1 snapshots get new names until ENOSPC
# instead.  If DIR/big exists, one more process clones it again and again
# (long clones, so that the kill usually finds one in flight).  After the
# kill, run waits until every workload process has exited (a caller killed
# inside a FUSE request lingers until the daemon answers it: without the
# daemon's stop at a fatal signal that is the rest of the clone).
#
# Data format: every 64-byte record written to src is
#   b"RLDT" | u64 file offset | u32 writer | u64 sequence | pad | u32 crc32
# (crc32 of the first 60 bytes), written 64-byte aligned.  check: every
# 64-byte record of every file except big* is all zeros (never written) or
# a valid record for exactly that offset (snapshots are cloned at the same
# offsets), i.e. data that was written at some point; every block of big*
# equals big's first block.  Metadata bytes, another offset's data or torn
# records fail it: the first few bad records are printed, exit status 1.
#
# readers: a child clones DIR/big onto DIR/readers.dst; once the clone is
# under way (its first transaction took blocks: the daemon holds the files'
# locks from then until it is done) NREADS O_DIRECT reads of big are made,
# then the child is SIGKILLed.  Exit 0 if the clone stopped part-way, i.e.
# the reads completed while it was still running (the source is locked
# shared), 1 if it was whole (the reads waited for its end).
#
# intr: a child (default signal actions) clones DIR/big onto DIR/intr.*; once
# the clone is under way it gets signal SIG (INT or KILL: fatal).  Exit 0
# if the child died of it with DIR/intr.* cloned only part-way (the daemon
# stopped between pieces, as the kernel's remap stops at a fatal signal),
# 1 if the clone ran to the end.
import errno, fcntl, mmap, os, random, signal, struct, sys, time, zlib

RLFS_IOC_CLONE_RANGE = 0xC020B702      # _IOWR(0xb7, 2, 32 bytes)
REC = 64
BS = 4096
SRC_BYTES = int(os.environ.get("CK_SRC_MB", "8")) << 20
NSNAP = int(os.environ.get("CK_NSNAP", "6"))
NWRITERS = int(os.environ.get("CK_WRITERS", "3"))
NCLONERS = int(os.environ.get("CK_CLONERS", "2"))
FILL = os.environ.get("CK_FILL", "0") == "1"
FSYNC_P = float(os.environ.get("CK_FSYNC", "0.02"))
ZERO_REC = bytes(REC)


def record(off, writer, seq):
    head = struct.pack("<4sQIQ", b"RLDT", off, writer, seq)
    head += bytes(60 - len(head))
    return head + struct.pack("<I", zlib.crc32(head) & 0xffffffff)


def records(off, n, writer, seq):
    return b"".join(record(off + i * REC, writer, seq) for i in range(n // REC))


def close_quietly(fd):
    """close(2) reports a failed writeback (ENOSPC, EIO): not our concern"""
    try:
        os.close(fd)
    except OSError:
        pass


def clone_range(dfd, sfd, soff, ln, doff):
    fcntl.ioctl(dfd, RLFS_IOC_CLONE_RANGE, struct.pack("=qQQQ", sfd, soff, ln, doff))


def tolerated(e):
    # ENOSPC, or EIO/ENOSPC reported later for a failed writeback
    return e.errno in (errno.ENOSPC, errno.EIO)


def writer(d, wid, seed):
    rng = random.Random(seed)
    src = os.path.join(d, "src")
    fd = os.open(src, os.O_RDWR)
    dfd = os.open(src, os.O_RDWR | os.O_DIRECT)
    buf = mmap.mmap(-1, 1 << 20)
    seq = 0
    while True:
        seq += 1
        size = os.fstat(fd).st_size
        limit = SRC_BYTES + (2 << 20)          # some writes extend the file
        try:
            if rng.random() < 0.5:
                n = rng.choice([4096, 65536, 131072, 1 << 20])
                off = rng.randrange(0, limit - n + 1, 4096)
                buf[:n] = records(off, n, wid, seq)
                os.pwritev(dfd, [memoryview(buf)[:n]], off)
            else:
                n = rng.randrange(1, 64) * REC
                off = rng.randrange(0, min(limit, size + 65536) - n + 1, REC)
                os.pwrite(fd, records(off, n, wid, seq), off)
            if rng.random() < FSYNC_P:
                os.fsync(fd)
        except OSError as e:
            if not tolerated(e):
                raise


def cloner(d, cid, seed):
    rng = random.Random(seed)
    src = os.path.join(d, "src")
    n = 0
    while True:
        n += 1
        if FILL:
            name = os.path.join(d, "snap%d_%d" % (cid, n))
        else:
            name = os.path.join(d, "snap%d" % rng.randrange(NSNAP))
        sfd = os.open(src, os.O_RDONLY)
        try:
            r = rng.random()
            if r < 0.6 or not os.path.exists(name):
                # a fresh snapshot: delete the old one (frees its blocks),
                # or truncate it as cp --reflink=always does
                if r < 0.3:
                    try:
                        os.unlink(name)
                    except FileNotFoundError:
                        pass
                    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
                else:
                    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                dfd = os.open(name, flags, 0o644)
                try:
                    clone_range(dfd, sfd, 0, 0, 0)
                finally:
                    close_quietly(dfd)
            else:
                # clone a range over an existing snapshot (unmaps its blocks)
                try:
                    dfd = os.open(name, os.O_RDWR)
                except FileNotFoundError:
                    continue
                try:
                    size = os.fstat(sfd).st_size
                    soff = rng.randrange(0, SRC_BYTES // 2, BS)
                    ln = rng.randrange(1, 512) * BS
                    if soff + ln <= size:
                        clone_range(dfd, sfd, soff, ln, soff)
                finally:
                    close_quietly(dfd)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOENT) and not tolerated(e):
                raise
        finally:
            close_quietly(sfd)


def long_cloner(d, seed):
    rng = random.Random(seed)
    big = os.path.join(d, "big")
    while True:
        name = os.path.join(d, "bigsnap%d" % rng.randrange(2))
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
        sfd = os.open(big, os.O_RDONLY)
        dfd = os.open(name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            clone_range(dfd, sfd, 0, 0, 0)
        except OSError as e:
            if not tolerated(e):
                raise
        finally:
            close_quietly(dfd)
            close_quietly(sfd)


def child(fn, *args):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn(*args)
        except BaseException as e:           # noqa: a worker that fails says why
            sys.stderr.write("worker %s: %r\n" % (fn.__name__, e))
            code = 3
        os._exit(code)
    return pid


def prep(d, doublings):
    """DIR/big: one block, then cloned onto its own end DOUBLINGS times."""
    big = os.path.join(d, "big")
    fd = os.open(big, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.pwrite(fd, records(0, BS, 98, 0), 0)
    os.fsync(fd)
    for i in range(doublings):
        n = BS << i
        clone_range(fd, fd, 0, n, n)
    os.close(fd)
    return 0


def run(d, seed, secs):
    rng = random.Random(seed)
    src = os.path.join(d, "src")
    with open(src, "wb") as f:
        for off in range(0, SRC_BYTES, 1 << 20):
            f.write(records(off, 1 << 20, 99, 0))
    pids = [child(writer, d, w, seed * 100 + w) for w in range(NWRITERS)]
    pids += [child(cloner, d, c, seed * 100 + 50 + c) for c in range(NCLONERS)]
    if os.path.exists(os.path.join(d, "big")):
        pids.append(child(long_cloner, d, seed * 100 + 90))
    time.sleep(rng.uniform(0.3, secs))
    for p in pids:
        os.kill(p, signal.SIGKILL)
    bad = 0
    for p in pids:
        _, st = os.waitpid(p, 0)
        if not (os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGKILL):
            bad += 1          # it died before the kill: its error is on stderr
    return 1 if bad else 0


def check_block(data, base):
    """Offsets of the bad records in data, found at file offset base."""
    bad = []
    for i in range(0, len(data) - len(data) % REC, REC):
        r = data[i:i + REC]
        if r == ZERO_REC:
            continue
        magic, off = struct.unpack_from("<4sQ", r)
        if (magic != b"RLDT" or off != base + i or
                struct.unpack_from("<I", r, 60)[0] != zlib.crc32(r[:60]) & 0xffffffff):
            bad.append(base + i)
    if len(data) % REC and data[len(data) - len(data) % REC:].strip(b"\0"):
        bad.append(base + len(data) - len(data) % REC)
    return bad


def check_big(path, name, first):
    """big and its clones: every block equal to big's first block (or zeros
    past a partial clone's end, never: a clone stops at a block boundary and
    the size says where).  Returns (bad blocks, blocks, first block)."""
    bad = nblk = 0
    with open(path, "rb") as f:
        if first is None:
            first = f.read(BS)
            f.seek(0)
        chunk = first * 256
        base = 0
        while True:
            data = f.read(len(chunk))
            if not data:
                break
            nblk += len(data) // BS
            if data != chunk[:len(data)]:
                for i in range(0, len(data), BS):
                    if data[i:i + BS] != first[:len(data[i:i + BS])]:
                        bad += 1
                        if bad <= 5:
                            print("BAD %s offset %d: %s" % (name, base + i,
                                  data[i:i + 32].hex()))
            base += len(data)
    return bad, nblk, first


def check(d):
    """Snapshots share most blocks: each distinct block content at a given
    offset is checked once."""
    bad = 0
    nblk = 0
    seen = set()
    names = sorted(os.listdir(d))
    first_big = None
    for name in names:
        if name.startswith("big"):
            b, nb, first_big = check_big(os.path.join(d, name), name, first_big)
            bad += b
            nblk += nb
            continue
        with open(os.path.join(d, name), "rb") as f:
            base = 0
            while True:
                blk = f.read(BS)
                if not blk:
                    break
                nblk += 1
                key = (base, blk)
                offs = [] if key in seen else check_block(blk, base)
                if not offs:
                    seen.add(key)
                if offs:
                    bad += len(offs)
                    if bad <= 5:
                        print("BAD %s offset %d: %s" % (name, offs[0],
                              blk[offs[0] - base:offs[0] - base + 32].hex()))
                base += len(blk)
    print("%d files, %d blocks, %d bad records" % (len(names), nblk, bad))
    return 1 if bad else 0


def start_big_clone(d, dst, how="ioctl"):
    """Fork a child that clones DIR/big onto dst with default signal
    actions; return its pid once the clone is under way: its first
    transaction has taken blocks (statfs is never cached; the child
    creates dst before the parent reads the free count, so the new inode
    does not count), and the daemon then holds the files' locks until it is
    done.  None if the clone was over before that was seen."""
    big = os.path.join(d, "big")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.close(rfd)
        code = 0
        try:
            sfd = os.open(big, os.O_RDONLY)
            dfd = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(wfd, b"x")
            if how == "cfr":        # copy_file_range(2): the daemon clones
                os.copy_file_range(sfd, dfd, os.fstat(sfd).st_size, 0, 0)
            else:
                clone_range(dfd, sfd, 0, 0, 0)
        except OSError as e:
            sys.stderr.write("clone: %r\n" % e)
            code = 3
        os._exit(code)
    os.close(wfd)
    free0 = None
    if os.read(rfd, 1) == b"x":
        free0 = os.statvfs(d).f_bfree
    os.close(rfd)
    while free0 is not None and os.statvfs(d).f_bfree >= free0:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return None
        time.sleep(0.001)
    return pid


def intr(d, signame, how):
    dst = os.path.join(d, "intr.%s.%s" % (signame, how))
    size = os.stat(os.path.join(d, "big")).st_size
    pid = start_big_clone(d, dst, how)
    if pid is None:
        print("the clone ended before it was seen to start (too short?)")
        return 2
    sig = getattr(signal, "SIG" + signame)
    os.kill(pid, sig)
    _, st = os.waitpid(pid, 0)
    got = os.stat(dst).st_size
    print("%s of %d bytes, SIG%s: caller %s, %d bytes cloned" %
          ("copy_file_range" if how == "cfr" else "clone", size, signame,
           "killed" if os.WIFSIGNALED(st) else "exited %d" % os.WEXITSTATUS(st), got))
    if not (os.WIFSIGNALED(st) and os.WTERMSIG(st) == sig):
        return 1
    return 0 if got < size else 1


def readers(d, nreads):
    big = os.path.join(d, "big")
    dst = os.path.join(d, "readers.dst")
    size = os.stat(big).st_size
    pid = start_big_clone(d, dst)
    if pid is None:
        print("the clone ended before it was seen to start (too short?)")
        return 2
    fd = os.open(big, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 65536)
    rng = random.Random(733)
    for _ in range(nreads):
        os.preadv(fd, [buf], rng.randrange(0, max(size - 65536, 1), BS))
    os.close(fd)
    # Proof that the clone was still going when the reads were done: kill
    # its caller now; a clone still in progress stops part-way (the daemon
    # stops at a fatal signal), a finished one is whole.
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    got = os.stat(dst).st_size
    print("%d reads of the source done, then the clone was stopped at %d of %d bytes" %
          (nreads, got, size))
    return 0 if got < size else 1


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "prep":
        sys.exit(prep(sys.argv[2], int(sys.argv[3])))
    if cmd == "run":
        sys.exit(run(sys.argv[2], int(sys.argv[3]),
                     float(sys.argv[4]) if len(sys.argv) > 4 else 4.0))
    if cmd == "readers":
        sys.exit(readers(sys.argv[2], int(sys.argv[3])))
    if cmd == "intr":
        sys.exit(intr(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "ioctl"))
    sys.exit(check(sys.argv[2]))

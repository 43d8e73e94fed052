#!/usr/bin/env python3
"""cow_frag.py: the workload of the CoW fragmentation test (issue 13 section
5, tests/integration/60-cow-frag.sh), the same bytes and the same offsets on
every filesystem, so kernel XFS and reflinkfs can be compared write for write.

  cow_frag.py fill FILE SIZE FILLSEED
      Create FILE (O_TRUNC) with SIZE bytes (a multiple of 1 MiB) of
      pseudo-random data, 1 MiB chunk k being
      random.Random(FILLSEED * 2**32 + k).randbytes(1 MiB), written 1 MiB at
      a time, then fsync.  Prints "fill SIZE sha256=HEX".

  cow_frag.py rewrite FILE N SEED FILLSEED
      N pwrite(2)s of 4096 bytes at block-aligned offsets inside FILE's
      size, offset i being 4096 * random.Random(SEED).randrange(blocks) (the
      i-th draw; the same sequence on every filesystem and every run), data
      of write i (i, offset) as two little-endian u64, repeated 256 times
      (every write distinct); then fsync.  Then the model: what FILE must
      hold (fill's data for FILLSEED with the last write to each block on
      top), hashed chunk by chunk without reading FILE.  Prints
      "rewrite N distinct=BLOCKS seconds=S model_sha256=HEX" (BLOCKS: blocks
      written at least once; S: the writes and the fsync, wall clock).

  cow_frag.py model SIZE N SEED FILLSEED
      Only the model's sha256 (FILE's data after fill + rewrite), printed
      as "model_sha256=HEX".

  cow_frag.py filldata SIZE FILLSEED
      Only fill's sha256 (what the clone must still hold), "fill_sha256=HEX".

  cow_frag.py extents FILE
      FILE's data extents through FS_IOC_FIEMAP (FIEMAP_FLAG_SYNC, the
      whole file, in batches until FIEMAP_EXTENT_LAST; on reflinkfs run it
      under the LD_PRELOAD shim, which answers FIEMAP with
      RLFS_IOC_GET_EXTENTS).  Prints "extents=N merged=M shared=S
      shared_bytes=B mapped_bytes=B": N every extent FIEMAP reports (what
      xfs_io fiemap lists), M after joining neighbours contiguous both in
      the file and on the device with the same flags (what filefrag counts),
      S of the N with FIEMAP_EXTENT_SHARED.

Numbers: decimal or 0x hex; SIZE may end in K, M or G (powers of 1024).

Exit status 0, or 1 with one line on stderr on an I/O error; 2 on bad
arguments.  Uses buffered I/O (page cache), as an application would.
"""
import fcntl
import hashlib
import os
import random
import struct
import sys
import time

BLOCK = 4096
CHUNK = 1 << 20
BLOCKS_PER_CHUNK = CHUNK // BLOCK


def chunk_data(fillseed, k):
    """fill's data for 1 MiB chunk k (bytes)."""
    return random.Random(fillseed * 2**32 + k).randbytes(CHUNK)


def write_data(i, off):
    """the 4096 bytes of write i at byte offset off"""
    return struct.pack("<QQ", i, off) * (BLOCK // 16)


def offsets(size, n, seed):
    """the N block-aligned byte offsets, in write order"""
    blocks = size // BLOCK
    r = random.Random(seed)
    return [r.randrange(blocks) * BLOCK for _ in range(n)]


def fill_sha(size, fillseed):
    h = hashlib.sha256()
    for k in range(size // CHUNK):
        h.update(chunk_data(fillseed, k))
    return h.hexdigest()


def model_sha(size, n, seed, fillseed):
    """sha256 of fill's data with the N writes applied (last write wins)"""
    last = {}
    for i, off in enumerate(offsets(size, n, seed)):
        last[off // BLOCK] = i
    h = hashlib.sha256()
    for k in range(size // CHUNK):
        data = bytearray(chunk_data(fillseed, k))
        for b in range(BLOCKS_PER_CHUNK):
            i = last.get(k * BLOCKS_PER_CHUNK + b)
            if i is not None:
                off = (k * BLOCKS_PER_CHUNK + b) * BLOCK
                data[b * BLOCK:(b + 1) * BLOCK] = write_data(i, off)
        h.update(data)
    return h.hexdigest(), len(last)


FS_IOC_FIEMAP = 0xC020660B
FIEMAP_HDR = "=QQIIII"          # start, length, flags, mapped, count, reserved
FIEMAP_EXT = "=QQQQQIIII"       # logical, physical, length, 2 reserved, flags
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_SHARED = 0x2000
FIEMAP_BATCH = 512


def fiemap_all(path):
    """every data extent of path: [(logical, physical, length, flags)]"""
    fd = os.open(path, os.O_RDONLY)
    out = []
    start = 0
    try:
        while True:
            buf = bytearray(32 + 56 * FIEMAP_BATCH)
            flags = FIEMAP_FLAG_SYNC if start == 0 else 0
            struct.pack_into(FIEMAP_HDR, buf, 0, start, (1 << 64) - 1 - start, flags, 0,
                             FIEMAP_BATCH, 0)
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
            n = struct.unpack_from(FIEMAP_HDR, buf, 0)[3]
            if n == 0:
                break
            for j in range(n):
                e = struct.unpack_from(FIEMAP_EXT, buf, 32 + 56 * j)
                out.append((e[0], e[1], e[2], e[5]))
            if out[-1][3] & FIEMAP_EXTENT_LAST:
                break
            start = out[-1][0] + out[-1][2]
    finally:
        os.close(fd)
    return out


def do_extents(path):
    exts = fiemap_all(path)
    merged = 0
    prev = None
    for e in exts:
        if not (prev and prev[0] + prev[2] == e[0] and prev[1] + prev[2] == e[1] and
                (prev[3] & ~FIEMAP_EXTENT_LAST) == (e[3] & ~FIEMAP_EXTENT_LAST)):
            merged += 1
        prev = e
    shared = [e for e in exts if e[3] & FIEMAP_EXTENT_SHARED]
    print("extents=%d merged=%d shared=%d shared_bytes=%d mapped_bytes=%d" % (
        len(exts), merged, len(shared), sum(e[2] for e in shared), sum(e[2] for e in exts)))


def num(s, what):
    """decimal or 0x hex, with an optional K/M/G suffix (powers of 1024)"""
    mult = 1
    if s[-1:] in ("K", "M", "G", "k", "m", "g"):
        mult = 1024 ** ("KMG".index(s[-1].upper()) + 1)
        s = s[:-1]
    try:
        v = int(s, 0) * mult
    except ValueError:
        usage("%s: not a number: %r" % (what, s))
    if v < 0:
        usage("%s: negative" % what)
    return v


def usage(msg):
    print("cow_frag.py: %s" % msg, file=sys.stderr)
    print("usage: cow_frag.py fill FILE SIZE FILLSEED | rewrite FILE N SEED FILLSEED |"
          " model SIZE N SEED FILLSEED | filldata SIZE FILLSEED | extents FILE", file=sys.stderr)
    sys.exit(2)


def check_size(size):
    if size == 0 or size % CHUNK:
        usage("SIZE must be a positive multiple of 1 MiB, not %d" % size)


def do_fill(path, size, fillseed):
    check_size(size)
    h = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for k in range(size // CHUNK):
            data = chunk_data(fillseed, k)
            if os.pwrite(fd, data, k * CHUNK) != CHUNK:
                raise OSError(0, "short write at %d" % (k * CHUNK))
            h.update(data)
        os.fsync(fd)
    finally:
        os.close(fd)
    print("fill %d sha256=%s" % (size, h.hexdigest()))


def do_rewrite(path, n, seed, fillseed):
    fd = os.open(path, os.O_WRONLY)
    try:
        size = os.fstat(fd).st_size
        check_size(size)
        offs = offsets(size, n, seed)
        t0 = time.monotonic()
        for i, off in enumerate(offs):
            if os.pwrite(fd, write_data(i, off), off) != BLOCK:
                raise OSError(0, "short write at %d" % off)
        os.fsync(fd)
        secs = time.monotonic() - t0
    finally:
        os.close(fd)
    sha, distinct = model_sha(size, n, seed, fillseed)
    print("rewrite %d distinct=%d seconds=%.3f model_sha256=%s" % (n, distinct, secs, sha))


def main(argv):
    if len(argv) < 2:
        usage("no command")
    cmd, a = argv[1], argv[2:]
    try:
        if cmd == "fill" and len(a) == 3:
            do_fill(a[0], num(a[1], "SIZE"), num(a[2], "FILLSEED"))
        elif cmd == "rewrite" and len(a) == 4:
            do_rewrite(a[0], num(a[1], "N"), num(a[2], "SEED"), num(a[3], "FILLSEED"))
        elif cmd == "model" and len(a) == 4:
            size = num(a[0], "SIZE")
            check_size(size)
            print("model_sha256=%s" % model_sha(size, num(a[1], "N"), num(a[2], "SEED"),
                                                num(a[3], "FILLSEED"))[0])
        elif cmd == "extents" and len(a) == 1:
            do_extents(a[0])
        elif cmd == "filldata" and len(a) == 2:
            size = num(a[0], "SIZE")
            check_size(size)
            print("fill_sha256=%s" % fill_sha(size, num(a[1], "FILLSEED")))
        else:
            usage("bad command or argument count: %s" % " ".join(argv[1:]))
    except OSError as e:
        print("cow_frag.py: %s: %s" % (cmd, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

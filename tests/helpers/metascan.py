#!/usr/bin/env python3
"""metascan.py: find reflinkfs metadata blocks in an image by their magic.

    metascan.py list IMAGE            one line per metadata block: KIND FSBNO
    metascan.py flip IMAGE FSBNO OFF [SEED]
                                      xor one byte at OFF of block FSBNO with a
                                      nonzero value (SEED picks it)
    metascan.py rand IMAGE COUNT SEED flip COUNT random bytes in random
                                      metadata blocks (prints what it did)

Only used by tests: reads the superblock at offset 0 for the block size
(struct rlfs_sb in include/reflinkfs/format.h: blkhdr 48 bytes, then
version le32, blocksize le32) and classifies blocks by the le32 magic at
offset 0 (inode cluster blocks: the first inode's magic).
"""
import os
import random
import struct
import sys

MAGICS = {
    0x53464c52: "sb", 0x48474152: "agh", 0x4c464752: "agfl",
    0x42534652: "bnobt", 0x43534652: "cntbt", 0x42494652: "inobt",
    0x414d4252: "bmbt", 0x52494452: "dirbt", 0x54544152: "attrbt",
    0x56544152: "attrv", 0x4d595352: "symlink", 0x43464552: "refcbt",
    0x50414d52: "rmapbt", 0x4e494452: "inode",
}


def blocksize(f):
    f.seek(0)
    hdr = f.read(56)
    magic, = struct.unpack_from("<I", hdr, 0)
    if magic != 0x53464c52:
        raise SystemExit("not a reflinkfs image (superblock magic %#x)" % magic)
    bs, = struct.unpack_from("<I", hdr, 52)
    if bs < 1024 or bs > 65536 or bs & (bs - 1):
        raise SystemExit("bad block size %d" % bs)
    return bs


def scan(path):
    out = []
    with open(path, "rb") as f:
        bs = blocksize(f)
        fd = f.fileno()
        size = os.fstat(fd).st_size
        off = 0
        while off < size:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            d = start - start % bs
            while d < end:
                n = min(end - d, 1 << 22)
                n += (-n) % bs
                chunk = os.pread(fd, n, d)
                if len(chunk) < bs:
                    break
                for i in range(0, len(chunk) - bs + 1, bs):
                    m, = struct.unpack_from("<I", chunk, i)
                    k = MAGICS.get(m)
                    if k:
                        out.append((k, (d + i) // bs))
                d += len(chunk) - len(chunk) % bs
            off = max(end, d)
    return out, bs


def flip(path, fsbno, off, seed, bs=None):
    with open(path, "r+b") as f:
        if bs is None:
            bs = blocksize(f)
        pos = fsbno * bs + off
        f.seek(pos)
        b = f.read(1)
        x = (seed * 37 % 255) + 1
        f.seek(pos)
        f.write(bytes([b[0] ^ x]))
    return x


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "list":
        blocks, bs = scan(path)
        for k, b in blocks:
            print(k, b)
    elif cmd == "flip":
        fsbno, off = int(sys.argv[3]), int(sys.argv[4])
        seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1
        flip(path, fsbno, off, seed)
    elif cmd == "rand":
        count, seed = int(sys.argv[3]), int(sys.argv[4])
        blocks, bs = scan(path)
        rng = random.Random(seed)
        for _ in range(count):
            k, b = rng.choice(blocks)
            off = rng.randrange(bs)
            x = flip(path, b, off, rng.randrange(1, 1000), bs)
            print("flipped %s block %d offset %d (xor %#x)" % (k, b, off, x))
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()

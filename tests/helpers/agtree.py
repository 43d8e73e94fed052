#!/usr/bin/env python3
"""agtree.py: damage one AG tree of an unmounted reflinkfs image in a
chosen way, fixing the block's crc so that only the damage meant is there
(tests/integration/52-fsck-rebuild.sh).  Only used by tests.

    agtree.py root IMAGE AGNO TREE          print "FSBNO LEVELS NUMRECS" of the root
    agtree.py zero IMAGE AGNO TREE          zero the root block (whole block)
    agtree.py zero-leaf IMAGE AGNO TREE     zero the leftmost leaf; prints it
    agtree.py busiest IMAGE TREE            the AG whose tree is tallest, then
                                            whose root holds most entries
    agtree.py refc-bump IMAGE AGNO          refcount of the first record + 1
    agtree.py bno-extend-left IMAGE AGNO    the leftmost bnobt leaf's last record
                                            starts one block earlier (over a
                                            used block: free extents are maximal)
    agtree.py drop IMAGE AGNO TREE IDX      remove record IDX of the leftmost leaf

TREE: bnobt, cntbt, inobt, refcbt, rmapbt.  Record edits work on the
leftmost leaf (found through the first child pointers; a record dropped
from a leaf of a taller tree leaves its parent's key stale, which is
damage of that tree too).  Layouts: docs/SPEC.md (superblock: blocksize at
52, agblocks at 64, agcount at 68; AG header roots at 56.., levels at 76..;
btree block header 72 bytes: level at 48, numrecs at 50; node: key slots,
then child fsbnos (le64) after maxrecs slots), crc32c of the whole block
with the crc field (offset 4) zeroed.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imgedit import crc32c  # noqa: E402  (one crc32c for the test helpers)

ROOT_OFF = {"bnobt": (56, 76), "cntbt": (60, 78), "inobt": (64, 80),
            "refcbt": (68, 82), "rmapbt": (72, 84)}
RECLEN = {"bnobt": 8, "cntbt": 8, "inobt": 24, "refcbt": 12, "rmapbt": 24}
SLOT = {"bnobt": 4, "cntbt": 8, "inobt": 8, "refcbt": 4, "rmapbt": 48}

class Img:
    def __init__(self, path):
        self.f = open(path, "r+b")
        sb = self.f.read(128)
        self.bs, = struct.unpack_from("<I", sb, 52)
        self.agblocks, self.agcount = struct.unpack_from("<II", sb, 64)

    def read(self, fsbno):
        self.f.seek(fsbno * self.bs)
        return bytearray(self.f.read(self.bs))

    def write(self, fsbno, buf, crc=True):
        if crc:
            struct.pack_into("<I", buf, 4, 0)
            struct.pack_into("<I", buf, 4, crc32c(bytes(buf)))
        self.f.seek(fsbno * self.bs)
        self.f.write(bytes(buf))

    def root(self, agno, tree):
        agh = self.read(agno * self.agblocks + 1)
        ro, lo = ROOT_OFF[tree]
        agbno, = struct.unpack_from("<I", agh, ro)
        levels, = struct.unpack_from("<H", agh, lo)
        fsbno = agno * self.agblocks + agbno
        blk = self.read(fsbno)
        level, nrecs = struct.unpack_from("<HH", blk, 48)
        return fsbno, levels, level, nrecs, blk


def leaf(img, agno, tree):
    fsbno, _, level, nrecs, blk = img.root(agno, tree)
    maxr = (img.bs - 72) // (SLOT[tree] + 8)
    while level > 0:
        fsbno, = struct.unpack_from("<Q", blk, 72 + maxr * SLOT[tree])
        blk = img.read(fsbno)
        level, nrecs = struct.unpack_from("<HH", blk, 48)
    return fsbno, nrecs, blk


def main():
    cmd, img = sys.argv[1], Img(sys.argv[2])
    if cmd == "root":
        fsbno, levels, _, nrecs, _ = img.root(int(sys.argv[3]), sys.argv[4])
        print(fsbno, levels, nrecs)
    elif cmd == "zero":
        fsbno, _, _, _, _ = img.root(int(sys.argv[3]), sys.argv[4])
        img.write(fsbno, bytearray(img.bs), crc=False)
        print(fsbno)
    elif cmd == "zero-leaf":
        fsbno, _, _ = leaf(img, int(sys.argv[3]), sys.argv[4])
        img.write(fsbno, bytearray(img.bs), crc=False)
        print(fsbno)
    elif cmd == "busiest":
        best = max(range(img.agcount),
                   key=lambda a: (img.root(a, sys.argv[3])[1], img.root(a, sys.argv[3])[3]))
        print(best)
    elif cmd == "refc-bump":
        fsbno, nrecs, blk = leaf(img, int(sys.argv[3]), "refcbt")
        if nrecs == 0:
            sys.exit("no refcount record")
        rc, = struct.unpack_from("<I", blk, 72 + 8)
        struct.pack_into("<I", blk, 72 + 8, rc + 1)
        img.write(fsbno, blk)
        print(fsbno, rc, rc + 1)
    elif cmd == "bno-extend-left":
        fsbno, nrecs, blk = leaf(img, int(sys.argv[3]), "bnobt")
        off = 72 + 8 * (nrecs - 1)
        s, n = struct.unpack_from("<II", blk, off)
        struct.pack_into("<II", blk, off, s - 1, n + 1)
        img.write(fsbno, blk)
        print(s - 1, n + 1)
    elif cmd == "drop":
        tree, idx = sys.argv[4], int(sys.argv[5])
        fsbno, nrecs, blk = leaf(img, int(sys.argv[3]), tree)
        rl = RECLEN[tree]
        if idx >= nrecs:
            sys.exit("no record %d" % idx)
        a = 72 + idx * rl
        blk[a:72 + (nrecs - 1) * rl] = blk[a + rl:72 + nrecs * rl]
        blk[72 + (nrecs - 1) * rl:72 + nrecs * rl] = bytes(rl)
        struct.pack_into("<H", blk, 50, nrecs - 1)
        img.write(fsbno, blk)
        print(fsbno, nrecs - 1)
    else:
        sys.exit("unknown command " + cmd)


main()

#!/usr/bin/env python3
"""imgedit.py: change single fields of an unmounted reflinkfs image and fix
the checksum, so that a test can make exactly the damage it wants (a wrong
counter with a valid crc, a cross-linked block, ...).  Only used by tests.

    imgedit.py sb-get IMAGE FIELD               print a superblock field
    imgedit.py sb-set IMAGE FIELD VALUE         set it, fix the crc
    imgedit.py agh-get IMAGE AGNO FIELD         print an AG header field
    imgedit.py agh-set IMAGE AGNO FIELD VALUE   AG header field, fix the crc
    imgedit.py inode-get IMAGE INO FIELD        print an inode field
    imgedit.py inode-set IMAGE INO FIELD VALUE  set it, fix the inode crc
    imgedit.py extents IMAGE INO                inline extents: OFF FSBNO LEN STATE
    imgedit.py crosslink IMAGE INO_A INO_B      point B's first inline extent at
                                                A's first block (no refcount
                                                record); prints B's old fsbno
    imgedit.py flip IMAGE FSBNO OFF             xor one byte with 0x5a (no crc fix)
    imgedit.py zero IMAGE FSBNO                 zero the whole block
    imgedit.py dirents IMAGE DIRINO             a one-leaf directory's entries:
                                                NAME INO FTYPE, in key order
    imgedit.py dirent-set IMAGE DIRINO NAME INO the entry NAME now holds INO
    imgedit.py dirent-drop IMAGE DIRINO NAME    remove the entry NAME (the inode
                                                it named keeps its link count)
    imgedit.py dir-blocks IMAGE DIRINO          every block of a directory's
                                                b+tree, root first, one line
                                                each: LEVEL FSBNO, then for a
                                                leaf the INO of each entry

Layouts: docs/SPEC.md sections 4 (superblock), 5 (AG header), 9 and 12
(inode, extent records), the directory b+tree (a leaf: 72-byte block
header, numrecs le16 at 50, then 280-byte records: hash le32, seq le32,
ino le64, namelen u8, ftype u8, name); crc32c as in section 1.
"""
import struct
import sys

SB = {  # name: (offset, struct format)
    "state": (76, "<I"), "icount": (112, "<Q"), "ifree": (120, "<Q"),
    "fdblocks": (128, "<Q"), "errors": (200, "<I"), "error_count": (204, "<I"),
    "first_error_time": (208, "<Q"), "first_error_fsbno": (216, "<Q"),
    "last_error_time": (224, "<Q"), "last_error_fsbno": (232, "<Q"),
    "fsck_time": (256, "<Q"), "fsck_errors": (264, "<I"),
    "blocksize": (52, "<I"), "log_start": (144, "<Q"), "log_blocks": (152, "<I"),
    "features_ro_compat": (88, "<Q"),
}
AGH = {"freeblks": (88, "<I"), "longest": (92, "<I"), "btreeblks": (108, "<I"),
       "icount": (112, "<Q"), "ifree": (120, "<Q"), "unlinked": (136, "<Q"),
       "refc_blocks": (144, "<I"), "rmap_blocks": (148, "<I")}
INODE = {"mode": (40, "<I"), "nlink": (52, "<I"), "size": (56, "<Q"),
         "nblocks": (64, "<Q"), "parent": (152, "<Q"), "format": (168, "<B"),
         "nextents": (172, "<I"), "root": (176, "<Q"), "next_unlinked": (208, "<Q"),
         "flags": (160, "<I"), "cowextsize_blocks": (164, "<I"),
         "extsize_blocks": (188, "<I"), "aformat": (169, "<B"),
         "aroot": (192, "<Q")}

_T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _T.append(c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def fix_crc(buf, start, length):
    """crc field at start+4, covering buf[start:start+length]."""
    struct.pack_into("<I", buf, start + 4, 0)
    struct.pack_into("<I", buf, start + 4, crc32c(bytes(buf[start:start + length])))


assert crc32c(b"123456789") == 0xE3069283


class Image:
    def __init__(self, path):
        self.f = open(path, "r+b")
        sb = self.read(0, 1024)
        self.bs, = struct.unpack_from("<I", sb, 52)
        self.agblocks, = struct.unpack_from("<I", sb, 64)
        self.isize, self.inopb = struct.unpack_from("<HH", sb, 72)

    def read(self, off, n):
        self.f.seek(off)
        return bytearray(self.f.read(n))

    def write(self, off, data):
        self.f.seek(off)
        self.f.write(data)

    def block(self, fsbno):
        return self.read(fsbno * self.bs, self.bs)

    def put_block(self, fsbno, buf, fix=True):
        if fix:
            fix_crc(buf, 0, self.bs)
        self.write(fsbno * self.bs, buf)

    def inode(self, ino):
        fsbno, slot = divmod(ino, self.inopb)
        buf = self.block(fsbno)
        return fsbno, buf, slot * self.isize

    def put_inode(self, fsbno, buf, off):
        fix_crc(buf, off, self.isize)
        self.write(fsbno * self.bs, buf)

    def extents(self, ino):
        _, buf, off = self.inode(ino)
        fmt, = struct.unpack_from("<B", buf, off + 168)
        n, = struct.unpack_from("<I", buf, off + 172)
        if fmt != 2:
            raise SystemExit("inode %d: data fork format %d, not inline extents" % (ino, fmt))
        return [struct.unpack_from("<QQII", buf, off + 256 + 24 * i) for i in range(n)]


DIRREC = 280


def dir_leaf(img, dino):
    """(fsbno, block, numrecs) of a directory whose b+tree is one leaf."""
    _, buf, off = img.inode(dino)
    fmt, = struct.unpack_from("<B", buf, off + 168)
    root, = struct.unpack_from("<Q", buf, off + 176)
    if fmt != 3:
        raise SystemExit("inode %d: not a directory b+tree (format %d)" % (dino, fmt))
    blk = img.block(root)
    level, nrecs = struct.unpack_from("<HH", blk, 48)
    if level != 0:
        raise SystemExit("inode %d: directory b+tree of %d levels" % (dino, level + 1))
    return root, blk, nrecs


def dir_blocks(img, dino):
    """[(level, fsbno, [entry inode numbers])] of a directory's b+tree,
    depth first from the root (node pointers follow the keys: 72-byte
    header, maxrecs 8-byte keys, then the 8-byte pointers)."""
    _, buf, off = img.inode(dino)
    fmt, = struct.unpack_from("<B", buf, off + 168)
    root, = struct.unpack_from("<Q", buf, off + 176)
    if fmt != 3:
        raise SystemExit("inode %d: not a directory b+tree (format %d)" % (dino, fmt))
    node_max = (img.bs - 72) // 16
    out, todo = [], [root]
    while todo:
        fsbno = todo.pop()
        blk = img.block(fsbno)
        level, nrecs = struct.unpack_from("<HH", blk, 48)
        if level == 0:
            out.append((0, fsbno, [struct.unpack_from("<Q", blk, 72 + i * DIRREC + 8)[0]
                                   for i in range(nrecs)]))
            continue
        out.append((level, fsbno, []))
        ptrs = [struct.unpack_from("<Q", blk, 72 + node_max * 8 + 8 * i)[0]
                for i in range(nrecs)]
        todo.extend(reversed(ptrs))
    return out


def dir_find(blk, nrecs, name):
    for i in range(nrecs):
        o = 72 + i * DIRREC
        nl = blk[o + 16]
        if bytes(blk[o + 18:o + 18 + nl]) == name.encode():
            return o, i
    raise SystemExit("no entry '%s'" % name)


def val(s):
    return int(s, 0)


def main():
    a = sys.argv[1:]
    if len(a) < 2:
        raise SystemExit(__doc__)
    cmd, img = a[0], Image(a[1])
    if cmd in ("sb-get", "sb-set"):
        off, fmt = SB[a[2]]
        buf = img.block(0)
        if cmd == "sb-get":
            print(struct.unpack_from(fmt, buf, off)[0])
            return
        struct.pack_into(fmt, buf, off, val(a[3]))
        img.put_block(0, buf)
    elif cmd in ("agh-get", "agh-set"):
        agno, (off, fmt) = val(a[2]), AGH[a[3]]
        fsbno = agno * img.agblocks + 1
        buf = img.block(fsbno)
        if cmd == "agh-get":
            print(struct.unpack_from(fmt, buf, off)[0])
            return
        struct.pack_into(fmt, buf, off, val(a[4]))
        img.put_block(fsbno, buf)
    elif cmd in ("inode-get", "inode-set"):
        ino, (foff, fmt) = val(a[2]), INODE[a[3]]
        fsbno, buf, off = img.inode(ino)
        if cmd == "inode-get":
            print(struct.unpack_from(fmt, buf, off + foff)[0])
            return
        struct.pack_into(fmt, buf, off + foff, val(a[4]))
        img.put_inode(fsbno, buf, off)
    elif cmd == "extents":
        for e in img.extents(val(a[2])):
            print(*e)
    elif cmd == "crosslink":
        ia, ib = val(a[2]), val(a[3])
        ea, eb = img.extents(ia), img.extents(ib)
        if not ea or not eb:
            raise SystemExit("both inodes need at least one extent")
        fsbno, buf, off = img.inode(ib)
        struct.pack_into("<Q", buf, off + 256 + 8, ea[0][1])
        img.put_inode(fsbno, buf, off)
        print(eb[0][1])
    elif cmd == "flip":
        fsbno, boff = val(a[2]), val(a[3])
        buf = img.block(fsbno)
        buf[boff] ^= 0x5A
        img.put_block(fsbno, buf, fix=False)
    elif cmd == "zero":
        img.put_block(val(a[2]), bytearray(img.bs), fix=False)
    elif cmd == "dirents":
        _, blk, nrecs = dir_leaf(img, val(a[2]))
        for i in range(nrecs):
            o = 72 + i * DIRREC
            ino, nl, ft = struct.unpack_from("<QBB", blk, o + 8)
            print(bytes(blk[o + 18:o + 18 + nl]).decode(errors="replace"), ino, ft)
    elif cmd == "dirent-set":
        root, blk, nrecs = dir_leaf(img, val(a[2]))
        o, _ = dir_find(blk, nrecs, a[3])
        struct.pack_into("<Q", blk, o + 8, val(a[4]))
        img.put_block(root, blk)
    elif cmd == "dirent-drop":
        root, blk, nrecs = dir_leaf(img, val(a[2]))
        o, i = dir_find(blk, nrecs, a[3])
        end = 72 + nrecs * DIRREC
        blk[o:end - DIRREC] = blk[o + DIRREC:end]
        blk[end - DIRREC:end] = bytes(DIRREC)
        struct.pack_into("<H", blk, 50, nrecs - 1)
        img.put_block(root, blk)
    elif cmd == "dir-blocks":
        for level, fsbno, inos in dir_blocks(img, val(a[2])):
            print(level, fsbno, *inos)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()

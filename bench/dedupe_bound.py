#!/usr/bin/env python3
"""The dedupe benchmark's bound (issue 12 section 3): the bytes that
block-aligned dedupe could reclaim in a tree, computed from block hashes.

    bench/dedupe_bound.py [--manifest FILE [--manifest-only]] [--block BYTES] PATH...
    bench/dedupe_bound.py --self-test [DIR]

Every regular file under the PATHs (recursively; symlinks are not followed,
other file types skipped) is cut into blocks at file offsets that are
multiples of BLOCK (4096).  Only data counts: holes (lseek SEEK_DATA /
SEEK_HOLE, as the filesystem reports them) are skipped.  A file's final
partial block is its own content (the bytes up to EOF), so it matches only
an identical tail at another file's EOF, which is the only unaligned length
FIDEDUPERANGE shares (ioctl_fideduperange(2): both ranges must end at EOF).
Each block is keyed by BLAKE2b-128 of its bytes.  For every distinct key
seen c times, c - 1 copies could share the first one's disk block, so

    bound_bytes = sum over distinct blocks of (c - 1) x BLOCK

(BLOCK, not the tail's length: a tail occupies a whole disk block).  The
chance of a false match is about n^2 / 2^129 for n blocks (below 1e-25 for
a TiB of blocks); the bound is exact in every other respect.

Memory: one dict entry per distinct block (about 130 bytes each: 30 MiB
for 1 GiB of distinct data).

--manifest FILE writes "sha256  path" per file (sorted by path relative to
its PATH argument; --manifest-only: nothing else): two manifests of the same tree compare equal when no
file's contents changed (the benchmark checks that dedupe changed nothing).

Prints one JSON object on stdout: files, data_bytes, blocks, distinct,
bound_bytes, and per top-level directory the duplicate blocks it holds
beyond the first copy of each content ("dup_blocks_by_dir"; the first copy
is the one met first in sorted path order).  Errors on an unreadable file
exit non-zero.

--self-test builds a small tree with a known bound (whole duplicates, EOF
tails, a tail followed by padding, a 512-byte shift, a hole, zero blocks, a
symlink) in a new directory under DIR (/tmp) and checks the answer; exit 1
with what differs.  bench/dedupe.sh runs it first, on the XFS mount.
"""
import argparse
import hashlib
import json
import mmap
import os
import sys


def data_ranges(fd, size):
    """(start, end) data ranges of an open file, holes skipped."""
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after off
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, min(end, size)
        off = end


def walk(top):
    """Sorted regular files under top (top itself if it is one)."""
    if os.path.isfile(top) and not os.path.islink(top):
        yield top, os.path.basename(top)
        return
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                yield p, os.path.relpath(p, top)


def scan(paths, bs, manifest=None, manifest_only=False):
    """Hash every aligned data block of the regular files under paths; return
    (summary dict, manifest lines).  Exits with a message on an unreadable
    file or a missing path."""
    seen = {}
    dup_by_dir = {}
    files = data_bytes = blocks = 0
    man = []
    for top in paths:
        if not os.path.exists(top):
            sys.exit("dedupe_bound: no such path %s" % top)
        for path, rel in walk(top):
            files += 1
            topdir = rel.split(os.sep, 1)[0] if os.sep in rel else "."
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as e:
                sys.exit("dedupe_bound: %s: %s" % (path, e.strerror))
            try:
                size = os.fstat(fd).st_size
                whole = hashlib.sha256()
                if size:
                    mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
                    mv = memoryview(mm)
                    if manifest:
                        whole.update(mv)
                    for start, end in ([] if manifest_only else data_ranges(fd, size)):
                        off = start - start % bs
                        while off < end:
                            blk = mv[off:min(off + bs, size)]
                            key = hashlib.blake2b(blk, digest_size=16).digest()
                            blocks += 1
                            data_bytes += len(blk)
                            if key in seen:
                                seen[key] += 1
                                dup_by_dir[topdir] = dup_by_dir.get(topdir, 0) + 1
                            else:
                                seen[key] = 1
                            blk.release()
                            off += bs
                    mv.release()
                    mm.close()
                if manifest:
                    man.append("%s  %s" % (whole.hexdigest(),
                                           os.path.join(os.path.basename(top.rstrip("/")), rel)))
            finally:
                os.close(fd)
    bound_blocks = sum(c - 1 for c in seen.values())
    return {
        "block_bytes": bs,
        "files": files,
        "data_bytes": data_bytes,
        "blocks": blocks,
        "distinct": len(seen),
        "bound_bytes": bound_blocks * bs,
        "dup_blocks_by_dir": dict(sorted(dup_by_dir.items())),
    }, man


def self_test(where):
    """Build a small tree with a known bound in a new directory under where
    and check scan()'s answer; 0 when right, exits 1 with the difference."""
    import random
    import tempfile
    bs = 4096
    rng = random.Random(7)
    d = tempfile.mkdtemp(prefix="dedupe-bound-test.", dir=where)
    try:
        a = rng.randbytes(3 * bs + 100)            # 3 blocks + a 100-byte tail
        def put(name, data, hole_blocks=0):
            with open(os.path.join(d, name), "wb") as f:
                if hole_blocks:
                    f.seek(hole_blocks * bs)   # a hole first
                f.write(data)
        put("a", a)
        put("b", a)                                 # +4: 3 blocks and the tail
        put("c", a[:bs] + a[2 * bs:2 * bs + 3])     # +1: block 0; 3-byte tail is new
        put("shift512", a[512:] + a[:512])          # +0: every block unaligned vs a
        put("sparse", a[bs:2 * bs], hole_blocks=16) # +1: block 1 after a 64 KiB hole
        put("zeros", bytes(2 * bs))                 # +1: two zero blocks, one file
        put("tail", a[3 * bs:])                     # +1: a's tail at EOF of a 100-byte file
        put("tailpad", a[3 * bs:] + bytes(bs - 100))  # +0: a's tail followed by zeros
        os.symlink("a", os.path.join(d, "link"))    # +0: symlinks are not followed
        want_bound = (4 + 1 + 1 + 1 + 1) * bs
        # data blocks: a 4, b 4, c 2, shift512 4, sparse 1 (the hole is not
        # data, if the filesystem keeps it as one), zeros 2, tail 1, tailpad 1
        got, _ = scan([d], bs)
        errs = []
        if got["bound_bytes"] != want_bound:
            errs.append("bound %d, want %d" % (got["bound_bytes"], want_bound))
        if got["files"] != 8:
            errs.append("files %d, want 8" % got["files"])
        if got["blocks"] != 19:
            errs.append("blocks %d, want 19 (holes counted as data?)" % got["blocks"])
        if errs:
            sys.exit("dedupe_bound: self-test failed: " + "; ".join(errs))
        print("dedupe_bound: self-test passed (bound %d bytes, %d blocks)" % (want_bound, got["blocks"]))
    finally:
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest")
    ap.add_argument("--block", type=int, default=4096)
    ap.add_argument("--manifest-only", action="store_true",
                    help="only write --manifest (no block hashes, no bound)")
    ap.add_argument("--self-test", action="store_true",
                    help="check the bound on a built tree (in the first PATH, default /tmp)")
    ap.add_argument("paths", nargs="*")
    args = ap.parse_args()
    bs = args.block
    if args.manifest_only and not args.manifest:
        sys.exit("dedupe_bound: --manifest-only needs --manifest")
    if bs <= 0 or bs & (bs - 1):
        sys.exit("dedupe_bound: --block must be a power of two")
    if args.self_test:
        self_test(args.paths[0] if args.paths else "/tmp")
        return
    if not args.paths:
        sys.exit("dedupe_bound: no PATH given")
    summary, man = scan(args.paths, bs, args.manifest, args.manifest_only)
    if args.manifest:
        with open(args.manifest, "w") as f:
            f.write("\n".join(sorted(man)) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

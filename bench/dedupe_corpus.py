#!/usr/bin/env python3
"""Build the dedupe benchmark's corpus (issue 12 section 3) from this
machine's own files.

    bench/dedupe_corpus.py --out DIR [--mib N] [--seed S] [--roots R...]

DIR (must not exist) receives, all from one seeded selection of regular
files under the roots (default /usr/share /usr/lib):

  a/        the selected files (the "source"), under their path below the
            root's parent (share/..., lib/...)
  b/        a second identical copy of a/: whole-file duplicates
  edited/   a copy of a/ with every file edited in one block: one
            block-aligned 4 KiB block (or the partial tail block) chosen at
            random is overwritten with random bytes; sizes unchanged.  All
            other blocks duplicate a/ at the same offsets.
  shifted/  the files of at least SHIFT_MIN_BYTES (64 KiB), each with
            k x 4096 random bytes (k random in 1..8) prepended: the same data
            at block-aligned but different file offsets
  tar/corpus.tar
            a GNU tar (real tar(1), --format=gnu, sorted, mtime 0, owner 0)
            of every second selected file.  tar puts a member's data right
            after its 512-byte header, so a member's data starts at a
            multiple of 512, and at a multiple of 4096 only by chance (about
            one member in eight): block-aligned dedupe can share only those
            members' blocks (and blocks that happen to equal a block at an
            aligned offset elsewhere); the others are shifted by a non-block
            amount and no block-aligned tool can find them.
  concat/pack
            the other half of the files concatenated, each padded with zeros
            to a multiple of 4096: every full block of a member is at an
            aligned offset and duplicates a/; a member's partial last block
            is followed by zero padding, so it is not the EOF tail the
            kernel's dedupe could share (it shares an unaligned tail only
            when both ranges end at their file's EOF).

Sizes: every selected file adds about 4 x its size (a/, b/, edited/, one of
tar/concat) plus its size again if it is shifted; files are taken in a
seeded shuffled order until the total reaches --mib MiB.  A file larger
than 1/16 of the total is skipped so no single file dominates.  The same
seed on the same machine (same files under the roots) gives the same
corpus byte for byte; the printed manifest digest tells.

Prints one JSON object on stdout: files, bytes per part, total, manifest
digest.  Errors (unreadable roots, DIR existing, tar failing) exit non-zero
with a message.
"""
import argparse
import hashlib
import json
import os
import random
import subprocess
import sys

BLOCK = 4096
SHIFT_MIN_BYTES = 64 * 1024
SHIFT_MAX_BLOCKS = 8


def list_files(roots):
    """Sorted (root, relpath, size) of the readable regular files under roots
    (symlinks not followed, empty files skipped)."""
    out = []
    for root in roots:
        root = os.path.abspath(root)
        if not os.path.isdir(root):
            sys.exit("dedupe_corpus: no directory %s" % root)
        base = os.path.dirname(root)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not (st.st_mode & 0o170000 == 0o100000) or st.st_size == 0:
                    continue
                if not os.access(path, os.R_OK):
                    continue
                out.append((path, os.path.relpath(path, base), st.st_size))
    return out


def write_file(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--roots", nargs="+", default=["/usr/share", "/usr/lib"])
    args = ap.parse_args()
    if args.mib < 1:
        sys.exit("dedupe_corpus: --mib must be at least 1")
    if os.path.exists(args.out):
        sys.exit("dedupe_corpus: %s exists" % args.out)
    rng = random.Random(args.seed)
    target = args.mib * 1024 * 1024
    cap = max(target // 16, BLOCK)

    files = list_files(args.roots)
    rng.shuffle(files)
    chosen, total = [], 0
    for path, rel, size in files:
        if size > cap:
            continue
        add = 4 * size + (size + SHIFT_MAX_BLOCKS * BLOCK // 2 if size >= SHIFT_MIN_BYTES else 0)
        if total + add > target:
            if total > target * 0.98:
                break
            continue
        # files can change or vanish under us: read now, keep what we read
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if len(data) != size:
            continue
        chosen.append((rel, data))
        total += add
    if not chosen:
        sys.exit("dedupe_corpus: no files selected under %s" % " ".join(args.roots))
    chosen.sort(key=lambda c: c[0])

    out = os.path.abspath(args.out)
    os.makedirs(out)
    parts = {k: 0 for k in ("a", "b", "edited", "shifted", "tar", "concat")}
    manifest = hashlib.sha256()
    tar_list = []
    concat_path = os.path.join(out, "concat", "pack")
    os.makedirs(os.path.dirname(concat_path))
    with open(concat_path, "wb") as concat:
        for i, (rel, data) in enumerate(chosen):
            size = len(data)
            manifest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
            write_file(os.path.join(out, "a", rel), data)
            write_file(os.path.join(out, "b", rel), data)
            parts["a"] += size
            parts["b"] += size
            # edited: one block (maybe the partial tail) overwritten
            nblocks = (size + BLOCK - 1) // BLOCK
            blk = rng.randrange(nblocks)
            off = blk * BLOCK
            n = min(BLOCK, size - off)
            edited = bytearray(data)
            edited[off:off + n] = rng.randbytes(n)
            write_file(os.path.join(out, "edited", rel), bytes(edited))
            parts["edited"] += size
            if size >= SHIFT_MIN_BYTES:
                k = rng.randint(1, SHIFT_MAX_BLOCKS)
                write_file(os.path.join(out, "shifted", rel), rng.randbytes(k * BLOCK) + data)
                parts["shifted"] += k * BLOCK + size
            if i % 2 == 0:
                tar_list.append(rel)
            else:
                concat.write(data)
                pad = -size % BLOCK
                if pad:
                    concat.write(b"\0" * pad)
                parts["concat"] += size + pad
    os.makedirs(os.path.join(out, "tar"))
    tar_path = os.path.join(out, "tar", "corpus.tar")
    lst = os.path.join(out, "tar.list")
    with open(lst, "w") as f:
        f.write("\n".join(tar_list) + "\n")
    r = subprocess.run(["tar", "--format=gnu", "--mtime=@0", "--owner=0", "--group=0",
                        "--numeric-owner", "--mode=u=rw,go=r", "-cf", tar_path,
                        "-C", os.path.join(out, "a"), "--verbatim-files-from", "-T", lst],
                       stderr=subprocess.PIPE)
    os.unlink(lst)
    if r.returncode != 0:
        sys.exit("dedupe_corpus: tar failed: %s" % r.stderr.decode(errors="replace"))
    parts["tar"] = os.path.getsize(tar_path)
    print(json.dumps({
        "seed": args.seed,
        "roots": args.roots,
        "files": len(chosen),
        "shifted_files": sum(1 for _, d in chosen if len(d) >= SHIFT_MIN_BYTES),
        "tar_members": len(tar_list),
        "bytes": parts,
        "total_bytes": sum(parts.values()),
        "manifest_sha256": manifest.hexdigest(),
    }))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""fsckfuzz.py: random corruption of a populated image, fsck's contract.

    fsckfuzz.py RLFS PRISTINE WORKDIR ITERS SEED

For each iteration i (seed SEED + i) a fresh sparse copy of PRISTINE gets
1-3 metadata blocks damaged: 1-6 random bytes xored with random values,
and then, in four cases out of five, the checksum fixed (the block's, or
for an inode block the crc of the inode holding the byte) so that the
verifiers pass and the structural checks behind them are what meets the
damage, as xfs_db's fuzz command does with crc recalculation.  Then:

  fsck -n       exits 0 or 4 (never crashes, hangs or says 1/8)
  fsck          exits 0, 1 or 4; 1 means "corrected": fsck -n must then
                exit 0; 4 means damage left: a second fsck must exit 4
                again with the same number of findings (repair is
                idempotent and never makes things worse than "left")

A crash is an exit status >= 124 (signals, timeouts; the sanitizers abort)
or 23 (LeakSanitizer).  On the first failure the damaged image is kept in
WORKDIR and the iteration's seed printed; exit 1.  Prints one summary line
of how often each outcome happened.  Only used by tests.
"""
import collections
import os
import random
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imgedit  # noqa: E402  (crc32c, fix_crc, Image)
import metascan  # noqa: E402  (scan)

TIMEOUT = 120


def fsck(rlfs, img, *opts):
    try:
        p = subprocess.run([rlfs, "fsck", *opts, img], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return 124, "timeout"
    rc = p.returncode if p.returncode >= 0 else 128 - p.returncode
    return rc, p.stdout.decode("utf-8", "replace")


def crashed(rc):
    return rc >= 124 or rc == 23


def findings(out):
    """Number of finding lines (not the summary lines naming the image)."""
    return sum(1 for ln in out.splitlines() if ln and not ln.startswith("/") and
               not ln.startswith("reflinkfs:") and ":" in ln and
               "superblock" not in ln and "uncorrected" not in ln)


def damage(img, blocks, rng):
    im = imgedit.Image(img)
    what = []
    for _ in range(rng.randint(1, 3)):
        kind, fsbno = rng.choice(blocks)
        buf = im.block(fsbno)
        fix = rng.random() < 0.8
        touched = set()
        for _ in range(rng.randint(1, 6)):
            off = rng.randrange(im.bs)
            if fix and off % (im.isize if kind == "inode" else im.bs) in (4, 5, 6, 7):
                continue            # the crc field itself: recomputed anyway
            buf[off] ^= rng.randrange(1, 256)
            touched.add(off)
        if fix and kind == "inode":
            for start in sorted({o - o % im.isize for o in touched}):
                imgedit.fix_crc(buf, start, im.isize)
        elif fix:
            imgedit.fix_crc(buf, 0, im.bs)
        im.write(fsbno * im.bs, buf)
        what.append("%s %d (%d byte%s%s)" % (kind, fsbno, len(touched),
                                             "" if len(touched) == 1 else "s",
                                             ", crc fixed" if fix else ""))
    im.f.close()
    return ", ".join(what)


def main():
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    rlfs, pristine, work, iters, seed0 = sys.argv[1:]
    iters, seed0 = int(iters), int(seed0)
    blocks, _ = metascan.scan(pristine)
    if not blocks:
        raise SystemExit("no metadata blocks found in " + pristine)
    img = os.path.join(work, "fuzz.img")
    outcomes = collections.Counter()
    for i in range(iters):
        seed = seed0 + i
        rng = random.Random(seed)
        subprocess.run(["cp", "--sparse=always", pristine, img], check=True)
        what = damage(img, blocks, rng)

        def fail(msg, out=""):
            print(out[-3000:])
            print("FAIL seed %d (%s): %s; image kept at %s" % (seed, what, msg, img))
            sys.exit(1)

        rc, out = fsck(rlfs, img, "-n")
        if crashed(rc) or rc not in (0, 4):
            fail("fsck -n exited %d" % rc, out)
        rc_n = rc
        rc, out = fsck(rlfs, img)
        if crashed(rc) or rc not in (0, 1, 4):
            fail("fsck (repair) exited %d" % rc, out)
        if rc_n == 0 and rc != 0:
            fail("fsck -n said clean but repair exited %d" % rc, out)
        if rc_n == 4 and rc == 0:
            fail("fsck -n found damage but repair exited 0", out)
        if rc == 1:
            rc2, out2 = fsck(rlfs, img, "-n")
            if rc2 != 0:
                fail("repair said corrected, then fsck -n exited %d" % rc2, out + out2)
            outcomes["corrected"] += 1
        elif rc == 4:
            rc2, out2 = fsck(rlfs, img)
            if rc2 != 4:
                fail("repair left damage (4), a second repair exited %d" % rc2, out + out2)
            if findings(out2) != findings(out):
                fail("a second repair reports %d findings, the first %d" %
                     (findings(out2), findings(out)), out + "----\n" + out2)
            outcomes["left"] += 1
        else:
            outcomes["not detected (unused bytes)"] += 1
    os.unlink(img)
    print("%d iterations (seeds %d-%d): %s" % (iters, seed0, seed0 + iters - 1,
          ", ".join("%s %d" % kv for kv in sorted(outcomes.items()))))


if __name__ == "__main__":
    main()

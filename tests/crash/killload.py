#!/usr/bin/env python3
"""killload.py: the load and the checker of tests/integration/36-crash-kill.sh
(kill -9 of the FUSE daemon at random points, then remount and check).

  killload.py busy DIR JOURNAL N     fsync'd files a1..aN, truncated, then
                                     new files b1..bN written (not fsync'd);
                                     prints READY and sleeps (to be killed)
  killload.py load DIR JOURNAL SEED  random create/fsync/truncate/unlink/
                                     atomic replace until killed or the
                                     mount dies
  killload.py verify DIR JOURNAL     after a remount: exit 0 if every
                                     promise in JOURNAL holds, 1 if not
                                     (one line per damaged file)

Every file's bytes are made from its name and generation (content()), so
a file holding another file's bytes is recognised.  JOURNAL (outside the
mount) gets one line per promise or intent, written before the next step:
  S NAME GEN SIZE   NAME was fsync'd with content(NAME, GEN, SIZE)
  T NAME            NAME is about to be truncated to 0: old or empty
  U NAME            NAME is about to be unlinked: old or missing
  R NAME GEN SIZE   NAME is about to be replaced by rename with a file
                    fsync'd with content(NAME, GEN, SIZE): old or new
The model: after fsync(2) returns, the file's data and name survive a
crash; an operation in progress at the crash leaves old or new, never
another file's bytes, never zeros where data was.
"""
import os
import random
import sys
import time


def content(name, gen, size):
    unit = ("%s:%d:" % (name, gen)).encode()
    return (unit * (size // len(unit) + 1))[:size]


class Journal:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    def put(self, *words):
        self.f.write(" ".join(str(w) for w in words) + "\n")
        self.f.flush()


def write_file(path, data, fsync=True):
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(d):
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def busy(d, jpath, n):
    j = Journal(jpath)
    size = 256 * 1024
    for i in range(1, n + 1):
        name = "a%d" % i
        write_file(os.path.join(d, name), content(name, 1, size))
        j.put("S", name, 1, size)
    fsync_dir(d)
    for i in range(1, n + 1):
        name = "a%d" % i
        j.put("T", name)
        os.truncate(os.path.join(d, name), 0)
    # new files take the blocks the truncates freed; closing them pushes
    # their pages to the daemon (FUSE flush), which writes them in place
    for i in range(1, n + 1):
        name = "b%d" % i
        write_file(os.path.join(d, name), content(name, 1, size), fsync=False)
    print("READY", flush=True)
    time.sleep(3600)


def load(d, jpath, seed):
    rnd = random.Random(seed)
    j = Journal(jpath)
    gen = {}
    live = set()
    try:
        while True:
            name = "k%d" % rnd.randrange(40)
            path = os.path.join(d, name)
            r = rnd.randrange(100)
            g = gen.get(name, 0) + 1
            size = rnd.choice([0, 100, 4096, 20000, 65536, 200000])
            if name not in live or r < 30:
                if name in live:
                    j.put("U", name)
                    os.unlink(path)
                    live.discard(name)
                j.put("R", name, g, size)
                write_file(path, content(name, g, size))
                gen[name] = g
                live.add(name)
                fsync_dir(d)
                j.put("S", name, g, size)
            elif r < 50:
                j.put("T", name)
                os.truncate(path, 0)
            elif r < 65:
                j.put("U", name)
                os.unlink(path)
                live.discard(name)
            elif r < 85:
                tmp = path + ".tmp"
                write_file(tmp, content(name, g, size))
                gen[name] = g
                j.put("R", name, g, size)
                os.rename(tmp, path)
                fsync_dir(d)
                j.put("S", name, g, size)
            else:
                # unsynced scratch data: takes freed blocks
                write_file(os.path.join(d, "scratch%d" % rnd.randrange(8)),
                           content("scratch", g, rnd.choice([4096, 65536, 262144])),
                           fsync=False)
    except OSError:
        return 0   # the daemon died under us


def verify(d, jpath):
    # per name: list of acceptable states, each None (missing) or (gen, size)
    allowed = {}
    with open(jpath) as f:
        for line in f:
            w = line.split()
            if not w:
                continue
            op, name = w[0], w[1]
            cur = allowed.get(name)
            if op == "S":
                allowed[name] = [(int(w[2]), int(w[3]))]
            elif cur is None:
                continue
            elif op == "T":
                allowed[name] = cur + [(0, 0)]
            elif op == "U":
                allowed[name] = cur + [None]
            elif op == "R":
                allowed[name] = cur + [(int(w[2]), int(w[3]))]
    bad = 0
    for name, states in sorted(allowed.items()):
        path = os.path.join(d, name)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            if None not in states:
                print("missing: %s (fsync'd) is not there" % name)
                bad += 1
            continue
        except OSError as e:
            print("readerr: %s: %s" % (name, e))
            bad += 1
            continue
        ok = any(s is not None and len(data) == s[1] and data == content(name, s[0], s[1])
                 for s in states)
        if ok:
            continue
        bad += 1
        head = data[:40]
        if data and data.count(0) == len(data):
            kind = "zeros"
        elif head and not head.startswith(("%s:" % name).encode()):
            kind = "foreign"
        else:
            kind = "stale"
        print("%s: %s has %d bytes starting %r; allowed %s" % (kind, name, len(data), head,
                                                               states))
    print("verified %d fsync'd files, %d damaged" % (len(allowed), bad))
    return 1 if bad else 0


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, d, jpath = sys.argv[1:4]
    if cmd == "busy" and len(sys.argv) == 5:
        return busy(d, jpath, int(sys.argv[4]))
    if cmd == "load" and len(sys.argv) == 5:
        return load(d, jpath, int(sys.argv[4]))
    if cmd == "verify" and len(sys.argv) == 4:
        return verify(d, jpath)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

#!/bin/bash
# Large directories: 30,000 entries with long and short names, random
# unlinks and renames (within and across directories), hard links, and a
# readdir (via os.scandir with interleaved unlinks) that must return every
# remaining name exactly once; the expected set is kept in a model and
# checked before and after remount; then everything is removed and fsck
# must be clean.
. "$(dirname "$0")/../lib.sh"
common_setup

img=$T/dir.img
mnt=$T/mnt
rlfs_mkfs "$img" -s 1G
rlfs_mount "$img" "$mnt"
cat >"$T/dirs.py" <<'PYEOF'
import os, sys, random, json
root, mode, model_path = sys.argv[1], sys.argv[2], sys.argv[3]
A, B = os.path.join(root, "a"), os.path.join(root, "b")
def listing(d):
    names = [e.name for e in os.scandir(d)]
    if len(names) != len(set(names)):
        print("duplicate names in readdir of", d); sys.exit(1)
    return set(names)
def check(model):
    for d, key in ((A, "a"), (B, "b")):
        got, want = listing(d), set(model[key])
        if got != want:
            print("%s: %d missing (e.g. %s), %d unexpected (e.g. %s)" % (
                key, len(want - got), sorted(want - got)[:3], len(got - want), sorted(got - want)[:3]))
            sys.exit(1)
    for name in random.Random(3).sample(sorted(model["a"]), 300):
        want = name[len("link-"):] if name.startswith("link-") else name
        with open(os.path.join(A, name), "rb") as f:
            data = f.read()
        if data != want.encode()[:64]:
            print("content of", name, "wrong:", data[:20]); sys.exit(1)
if mode == "build":
    rng = random.Random(11)
    os.mkdir(A); os.mkdir(B)
    names = set()
    while len(names) < 30000:
        l = rng.choice([1, 8, 20, 60, 200, 255])
        names.add("".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789._-") for _ in range(l)))
    names.discard("."); names.discard("..")
    for n in sorted(names):
        with open(os.path.join(A, n), "wb") as f:
            f.write(n.encode()[:64])
    a, b = set(names), set()
    # unlink a third at random
    for n in rng.sample(sorted(a), 10000):
        os.unlink(os.path.join(A, n)); a.discard(n)
    # rename 3000 within a (new names), 3000 to b
    for n in rng.sample(sorted(a), 3000):
        new = "renamed-" + n[:240]
        if new in a:
            continue
        os.rename(os.path.join(A, n), os.path.join(A, new))
        with open(os.path.join(A, new), "wb") as f:
            f.write(new.encode()[:64])
        a.discard(n); a.add(new)
    for n in rng.sample(sorted(a), 3000):
        os.rename(os.path.join(A, n), os.path.join(B, n)); a.discard(n); b.add(n)
    # hard links back from b into a under new names
    for n in rng.sample(sorted(b), 500):
        ln = "link-" + n[:200]
        if ln in a:
            continue
        os.link(os.path.join(B, n), os.path.join(A, ln))
        a.add(ln)
    # readdir with interleaved unlinks: every surviving name seen once
    seen = []
    created = set()
    it = os.scandir(A)
    victims = rng.sample(sorted(a), 2000)
    for k, e in enumerate(it):
        seen.append(e.name)
        if k == 100:
            for v in victims:
                os.unlink(os.path.join(A, v)); a.discard(v)
        if k == 200:
            # names created during the walk may or may not be returned
            for j in range(1000):
                nn = "new-during-readdir-%d" % j
                with open(os.path.join(A, nn), "wb") as f:
                    f.write(nn.encode()[:64])
                a.add(nn)
                created.add(nn)
    it.close()
    if len(seen) != len(set(seen)):
        print("readdir returned duplicates while unlinking/creating"); sys.exit(1)
    bogus = set(seen) - a - set(victims)
    if bogus:
        print("readdir returned names that never existed: %s" % sorted(bogus)[:3]); sys.exit(1)
    missing = (a - created) - set(seen)
    if missing:
        print("readdir missed %d surviving names, e.g. %s" % (len(missing), sorted(missing)[:3])); sys.exit(1)
    model = {"a": sorted(a), "b": sorted(b)}
    check(model)
    json.dump(model, open(model_path, "w"))
    print("a: %d entries, b: %d entries" % (len(a), len(b)))
elif mode == "check":
    check(json.load(open(model_path)))
    print("listings and sampled contents match the model")
PYEOF
run_to 900 $PY "$T/dirs.py" "$mnt" build "$T/model.json" || die "building the big directories failed"
run_to 300 $PY "$T/dirs.py" "$mnt" check "$T/model.json" || die "listing check failed"
rlfs_umount "$mnt"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt"
run_to 300 $PY "$T/dirs.py" "$mnt" check "$T/model.json" || die "listing check after remount failed"
rm -rf "$mnt/a" "$mnt/b"
[ -z "$(ls -A "$mnt")" ] || die "root not empty after rm -rf"
rlfs_umount "$mnt"
rlfs_fsck "$img"
log OK

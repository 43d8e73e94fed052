#!/bin/bash
# 51-fsmap-svg: `reflinkfs fsmap --svg FILE`, the space map as a picture
# (issue 11 section 2, beyond XFS).
#
# A mount with file data, a file cloned twice (3 owners; 2 where one
# clone was overwritten), two clones of parts of it (4 and 5 owners),
# fallocate (unwritten),
# a file of 300 one-block extents (bmbt blocks) and xattrs.  The picture,
# drawn through the mount and from the unmounted image, at full scale and
# squeezed (--svg-width 64: a column of several blocks coloured by its
# dominant class), is checked by content with xml.etree:
#   - it parses; every AG has a band with its size;
#   - per class, the <metadata> totals equal totals the test computes
#     itself from `fsmap -m` (owners) and `fsmap -v` (the unwritten flag),
#     counting the data records over each block for its refcount;
#   - per class, the rects' data-blocks plus data-other add up to the same
#     totals; free equals the sum of the free records;
#   - the legend has a swatch for every class present, and no other.
. "$(dirname "$0")/../lib.sh"
common_setup
SHIM=${SHIM:-$(dirname "$RLFS")/libreflinkfs-preload.so}
[ -f "$SHIM" ] || die "shim not found: $SHIM"

IMG=$T/rlfs.img
MNT=$T/rlfs
rlfs_mkfs "$IMG" -s 64M -a 4
rlfs_mount "$IMG" "$MNT"

head -c 2M /dev/urandom >"$MNT/a"
LD_PRELOAD=$SHIM cp --reflink=always "$MNT/a" "$MNT/b" || die "reflink copy failed"
LD_PRELOAD=$SHIM cp --reflink=always "$MNT/a" "$MNT/c" || die "second reflink copy failed"
dd if=/dev/zero of="$MNT/b" bs=4k seek=10 count=5 conv=notrunc status=none
# a's blocks 100..163 in d too (4 owners), 100..109 in e too (5 owners)
touch "$MNT/d" "$MNT/e"
"$RLFS" io -c "reflink $MNT/a 409600 0 262144" "$MNT/d" >/dev/null || die "clone into d failed"
"$RLFS" io -c "reflink $MNT/a 409600 0 40960" "$MNT/e" >/dev/null || die "clone into e failed"
fallocate -l 1M "$MNT/u" || die "fallocate failed"
"$PY" - "$MNT/frag" <<'PYEOF' || die "fragmented file failed"
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
for i in range(300):                      # 300 extents: a bmbt
    os.pwrite(fd, os.urandom(4096), 2 * i * 4096)
os.close(fd)
PYEOF
touch "$MNT/x"
for i in $(seq 1 10); do
	setfattr -n "user.v$i" -v "$(head -c 3000 /dev/zero | tr '\0' v)" "$MNT/x" ||
		die "setfattr failed"
done
sync

# the checker: SVG, fsmap -m CSV, fsmap -v table, AG count, AG blocks
cat >"$T/check.py" <<'PYEOF'
import re, sys
import xml.etree.ElementTree as ET
svg_path, csv_path, v_path, agcount, agblocks = sys.argv[1:4] + [int(a) for a in sys.argv[4:6]]
NS = {"s": "http://www.w3.org/2000/svg", "r": "urn:reflinkfs:fsmap-svg"}
meta = {"special_88:1": "fs", "special_88:2": "log", "special_88:3": "agmeta",
        "special_88:4": "inobt", "special_88:5": "inodes", "special_88:6": "refcountbt",
        "special_88:7": "cow"}
order = ["fs", "log", "agmeta", "inobt", "inodes", "refcountbt", "cow", "bmbt", "xattr", "other"]

# fsmap -v: which records (by EXT) are unwritten (flag 0010000)
unw = set()
for line in open(v_path):
    m = re.match(r"\s*(\d+): ", line)
    if m and re.fullmatch(r"0[0-7]{6}", line.split()[-1]) and int(line.split()[-1], 8) & 0o10000:
        unw.add(int(m.group(1)))
assert unw, "no unwritten record in fsmap -v"

rows = [l.rstrip("\n").split(",") for l in open(csv_path)][1:]
tot = sum(int(r[8]) for r in rows)
# 512-byte units; classify each sector range by the records covering it
ev = []
free_total = 0
for r in rows:
    ext, s, e, owner = int(r[0]), int(r[3]), int(r[4]) + 1, r[5]
    if owner == "special_0:1":
        k = "free"; free_total += e - s
    elif owner in meta:
        k = meta[owner]
    elif owner.startswith("special_"):
        k = "other"
    elif "_attr" in owner:                # xattr btree blocks and values
        k = "xattr"
    elif owner.endswith("_bmbt"):         # bmbt and directory btree blocks
        k = "bmbt"
    else:
        k = "unwritten" if ext in unw else "data"
    ev += [(s, 1, k), (e, -1, k)]
ev.sort(key=lambda x: x[0])
cnt, totals, cur = {}, {}, 0
def cls():
    for k in order:
        if cnt.get(k):
            return k
    n = cnt.get("data", 0) + cnt.get("unwritten", 0)
    if n >= 5: return "shared5"
    if n >= 3: return "shared3"
    if n == 2: return "shared2"
    if n == 1: return "unwritten" if cnt.get("unwritten") else "data"
    return "free" if cnt.get("free") else "other"
for pos, d, k in ev:
    if pos > cur:
        c = cls(); totals[c] = totals.get(c, 0) + pos - cur; cur = pos
    cnt[k] = cnt.get(k, 0) + d
root = ET.parse(svg_path).getroot()
fm = root.find("s:metadata/r:fsmap", NS)
bs = int(fm.get("blocksize")); spb = bs // 512
want = {}
for c, n in totals.items():
    assert n % spb == 0, (c, n)
    want[c] = n // spb
for c in ("data", "shared2", "shared3", "shared5", "unwritten", "bmbt", "xattr", "free"):
    assert want.get(c), ("test setup: no %s blocks in fsmap" % c, want)
got = {t.get("class"): int(t.get("blocks")) for t in fm.findall("r:total", NS)}
assert got == want, ("metadata totals", got, "fsmap says", want)
assert want["free"] * spb == free_total, ("free", want["free"], free_total)
assert sum(want.values()) == int(fm.get("dblocks")), ("sum", sum(want.values()))
# the rects: data-blocks of their class plus data-other of the hidden ones
drawn = {}
bands = root.findall("s:g[@class='ag']", NS)
assert sorted(int(b.get("data-ag")) for b in bands) == list(range(agcount)), "bands"
for b in bands:
    ag = int(b.get("data-ag"))
    size = int(b.get("data-blocks"))
    assert size == min(agblocks, int(fm.get("dblocks")) - ag * agblocks), ("band size", ag)
    assert any(t.text == "AG %d" % ag for t in b.findall("s:text", NS)), ("no label", ag)
    inband = 0
    for r in b.findall("s:rect", NS):
        n = int(r.get("data-blocks"))
        assert n > 0 and float(r.get("width")) > 0, ("empty rect", r.attrib)
        drawn[r.get("class")] = drawn.get(r.get("class"), 0) + n
        inband += n
        for o in r.get("data-other", "").split():
            c, m = o.split(":")
            drawn[c] = drawn.get(c, 0) + int(m)
            inband += int(m)
    assert inband == size, ("band blocks", ag, inband, size)
assert drawn == want, ("rect sums", drawn, "fsmap says", want)
leg = {r.get("data-class") for r in root.iter("{%s}rect" % NS["s"]) if r.get("class") == "swatch"}
assert leg == set(want), ("legend", leg, set(want))
print("%s: %s; bpc %s" % (svg_path.split("/")[-1], " ".join("%s=%d" % kv for kv in sorted(want.items())),
                          fm.get("blocks-per-column")))
PYEOF

agcount=4   # mkfs -a 4

"$RLFS" fsmap -m "$MNT" >"$T/m.csv" || die "fsmap -m failed"
"$RLFS" fsmap -v "$MNT" >"$T/m.v" 2>/dev/null || die "fsmap -v failed"
"$RLFS" fsmap --svg "$T/m.svg" "$MNT" || die "fsmap --svg MOUNT failed"
"$RLFS" fsmap --svg "$T/m64.svg" --svg-width 64 "$MNT" || die "fsmap --svg --svg-width 64 failed"
agblocks=$("$PY" -c 'import sys, xml.etree.ElementTree as E
print(E.parse(sys.argv[1]).getroot().find("{http://www.w3.org/2000/svg}metadata/{urn:reflinkfs:fsmap-svg}fsmap").get("agblocks"))' "$T/m.svg")
blocks=$(stat -f -c %b "$MNT")
grep -q "dblocks=\"$blocks\"" "$T/m.svg" || die "dblocks is not statfs's $blocks"
for f in m.svg m64.svg; do
	"$PY" "$T/check.py" "$T/$f" "$T/m.csv" "$T/m.v" "$agcount" "$agblocks" ||
		die "$f does not match fsmap"
done
grep -q 'data-other=' "$T/m64.svg" || die "--svg-width 64 aggregated nothing"
grep -q 'data-other=' "$T/m.svg" && die "full-scale picture aggregated columns"

rlfs_umount "$MNT"
"$RLFS" fsmap -m "$IMG" >"$T/o.csv" || die "fsmap -m IMAGE failed"
"$RLFS" fsmap -v "$IMG" >"$T/o.v" 2>/dev/null || die "fsmap -v IMAGE failed"
"$RLFS" fsmap --svg "$T/o.svg" "$IMG" || die "fsmap --svg IMAGE failed"
"$RLFS" fsmap --svg - --svg-width 200 "$IMG" >"$T/o200.svg" || die "fsmap --svg - failed"
for f in o.svg o200.svg; do
	"$PY" "$T/check.py" "$T/$f" "$T/o.csv" "$T/o.v" "$agcount" "$agblocks" ||
		die "$f does not match fsmap"
done
# the same picture offline as through the mount (but the title)
cmp -s <(grep -v '<title>\|<desc>\|space map:' "$T/m.svg") \
	<(grep -v '<title>\|<desc>\|space map:' "$T/o.svg") || die "offline picture differs"
expect_rc 1 "$RLFS" fsmap --svg "$T/bad.svg" -m "$IMG"
expect_rc 1 "$RLFS" fsmap --svg "$T/bad.svg" -d 0 100 "$IMG"
rlfs_fsck "$IMG"
log "pictures match fsmap's totals per class (mount, image, full scale and squeezed)"

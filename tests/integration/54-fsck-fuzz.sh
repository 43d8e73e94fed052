#!/bin/bash
# 54-fsck-fuzz: random corruption of a populated image, many times over
# (issue 11: "repair never crashes or hangs (ASan)").  A small image holds
# every kind of metadata (directories large enough for a multi-level
# directory btree, a fragmented file with a bmbt, clones sharing blocks,
# xattrs inline, in a tree and in value blocks, a remote symlink, hard
# links, unwritten extents); tests/helpers/fsckfuzz.py then damages 1-3
# metadata blocks per iteration (checksums usually recomputed, so the
# structural checks meet the damage) and holds fsck to its contract:
# fsck -n exits 0 or 4; repair exits 0, 1 or 4, "corrected" (1) is
# followed by a clean fsck -n, and damage left (4) is left the same by a
# second repair; nothing crashes, hangs or trips the sanitizers.
# FUZZ_ITERS (default 200) and FUZZ_SEED (default 1) change the run;
# `make fuzz` runs a long one.
. "$(dirname "$0")/../lib.sh"
common_setup
ITERS=${FUZZ_ITERS:-200}
SEED=${FUZZ_SEED:-1}

img=$T/pop.img m=$T/mnt
rlfs_mkfs "$img" -s 64M -a 2
rlfs_mount "$img" "$m"
mkdir -p "$m/d/sub" "$m/big"
for i in $(seq 1 300); do echo "entry $i" >"$m/big/a-rather-long-file-name-to-fill-blocks-$i"; done
write_frag "$m/frag" 300 2 1   # 150 written and 150 unwritten extents
"$RLFS" io -f -c "reflink $m/frag" "$m/frag-clone" >/dev/null
"$RLFS" io -f -c "pwrite 0 256k" "$m/d/plain" >/dev/null
"$RLFS" io -f -c "reflink $m/d/plain 0 0 128k" "$m/d/half-clone" >/dev/null
$PY - "$m" <<'PYEOF'
import os, sys
m = sys.argv[1]
os.setxattr(m + "/d/plain", "user.small", b"v")
for k in range(30):
    os.setxattr(m + "/frag", "user.attr-%02d" % k, bytes([k]) * (40 + k))
os.setxattr(m + "/frag", "user.remote", b"r" * 6000)
os.symlink("t" * 2000, m + "/d/longlink")
os.symlink("short", m + "/d/shortlink")
os.link(m + "/d/plain", m + "/d/sub/hardlink")
os.mkfifo(m + "/d/fifo")
PYEOF
rlfs_umount "$m"
rlfs_fsck "$img"
kinds=$($PY "$SRCDIR/tests/helpers/metascan.py" list "$img" | awk '{print $1}' | sort -u | tr '\n' ' ')
log "metadata kinds in the image: $kinds"
for k in sb agh agfl bnobt cntbt inobt refcbt rmapbt inode dirbt bmbt attrbt attrv symlink; do
	[[ " $kinds " == *" $k "* ]] || die "the populated image has no $k block"
done
$PY "$SRCDIR/tests/helpers/fsckfuzz.py" "$RLFS" "$img" "$T" "$ITERS" "$SEED" ||
	die "fsck broke its contract on a damaged image (above)"
log OK

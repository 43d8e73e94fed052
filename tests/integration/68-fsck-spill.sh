#!/bin/bash
# 68-fsck-spill: fsck's claim stores (tools/fsck_claims.c) spilling to
# their temporary file give the same findings as keeping everything in
# memory.  A multi-AG image (8 AGs) with fragmented files spread over the
# AGs, reflink clones (shared blocks, refcount records in several AGs),
# then three kinds of damage together: a block claimed by two files
# without a refcount (multiply claimed), a refcount record off by one and
# a free-space record grown over a used block.  For each image (clean and
# damaged):
#   fsck -n -v with RLFS_FSCK_MEM_CAP_BYTES=0 (every append spills) and
#   =65536 must print exactly what it prints with the default cap (the
#   -v line saying how much spilled aside), and the -v line must show the
#   spill happened.  A lost or duplicated claim would show as leaked or
#   twice-claimed blocks, or missing/extra rmap and refcount findings.
# The repair with the cap forced must correct the damage (exit 1) and the
# next fsck -n (cap forced too) be clean, the files' contents unchanged
# (the crosslinked file shows the shared block).
# Last, a spill file that cannot be made (TMPDIR a missing directory)
# makes fsck exit 8 with a message naming it, never crash.
. "$(dirname "$0")/../lib.sh"
common_setup
ED="$PY $SRCDIR/tests/helpers/imgedit.py"
AGT="$PY $SRCDIR/tests/helpers/agtree.py"

img=$T/base.img m=$T/mnt
rlfs_mkfs "$img" -s 128M -a 8 -l size=1M
rlfs_mount "$img" "$m"
put() { printf '%s\n' "$2" >"$m/$1" && sync "$m/$1" || die "writing $1 failed"; }
put a aaaa
put b bbbb
for d in 1 2 3 4 5 6; do
	mkdir "$m/d$d"
	write_frag "$m/d$d/frag" 800 2               # 400 extents each
	"$RLFS" io -f -c "pwrite -S 0x4$d 0 1m" -c fsync "$m/d$d/src" >/dev/null ||
		die "pwrite failed"
	"$RLFS" io -f -c "reflink $m/d$d/src" "$m/d$d/clone" >/dev/null || die "reflink failed"
	"$RLFS" io -f -c "reflink $m/d$d/frag" "$m/d$d/fragclone" >/dev/null ||
		die "reflink of frag failed"
done
# a big file reaching over several AGs
"$RLFS" io -f -c "pwrite -S 0x77 0 40m" -c fsync "$m/big" >/dev/null || die "pwrite big failed"
sync
sums() { (cd "$1" && find . -type f -exec stat -c '%i %n' {} + | while read -r ino name; do
	echo "$ino $(md5sum <"$name" | cut -d' ' -f1)"; done) | LC_ALL=C sort -u; }
sums "$m" >"$T/sums"
ino_a=$(stat -c %i "$m/a") ino_b=$(stat -c %i "$m/b")
rlfs_umount "$m"
rlfs_fsck "$img"

# fsck -n -v IMG with cap $1 ("" = default): stdout without the spill line
# into $T/out.$2, the spill line into $T/spill.$2, exit code in FRC
run_fsck() {
	local cap=$1 tag=$2 img=$3
	FRC=0
	if [ -n "$cap" ]; then
		RLFS_FSCK_MEM_CAP_BYTES=$cap run_to "$CMD_TIMEOUT" "$RLFS" fsck -n -v "$img" \
			>"$T/raw.$tag" 2>"$T/err.$tag" || FRC=$?
	else
		(unset RLFS_FSCK_MEM_CAP_BYTES
		 run_to "$CMD_TIMEOUT" "$RLFS" fsck -n -v "$img") >"$T/raw.$tag" 2>"$T/err.$tag" ||
			FRC=$?
	fi
	is_crash $FRC && { cat "$T/raw.$tag" "$T/err.$tag" >&2; die "fsck ($tag) crashed ($FRC)"; }
	grep -v "claims spilled to a temporary file" "$T/raw.$tag" >"$T/out.$tag"
	grep "claims spilled to a temporary file" "$T/raw.$tag" >"$T/spill.$tag" || true
}

compare() {   # NAME IMG EXPECTED_RC
	local name=$1 i=$2 want=$3 cap
	run_fsck "" "$name.mem" "$i"
	[ "$FRC" = "$want" ] || { cat "$T/raw.$name.mem" >&2; die "$name: fsck -n exited $FRC, expected $want"; }
	[ ! -s "$T/spill.$name.mem" ] || die "$name: spilled with the default cap"
	for cap in 0 65536; do
		run_fsck "$cap" "$name.$cap" "$i"
		[ "$FRC" = "$want" ] || { cat "$T/raw.$name.$cap" >&2; die "$name: cap $cap: exit $FRC"; }
		[ -s "$T/spill.$name.$cap" ] || die "$name: cap $cap: nothing spilled"
		diff -u "$T/out.$name.mem" "$T/out.$name.$cap" >&2 ||
			die "$name: findings with cap $cap differ from the in-memory run"
	done
	log "$name: same output with caps 0 and 65536 ($(grep -c . "$T/out.$name.mem") lines," \
	    "$(sed 's/.*file: //' "$T/spill.$name.0"))"
}

compare clean "$img" 0
grep -q "Phase 5: block ownership" "$T/out.clean.mem" || die "no phase 5 line in -v output"

cp --sparse=always "$img" "$T/bad.img"
ag_refc=$($AGT busiest "$T/bad.img" refcbt)
ag_rmap=$($AGT busiest "$T/bad.img" rmapbt)
$ED crosslink "$T/bad.img" "$ino_a" "$ino_b" >/dev/null || die "crosslink failed"
$AGT refc-bump "$T/bad.img" "$ag_refc" >/dev/null || die "refc-bump failed"
$AGT bno-extend-left "$T/bad.img" "$ag_rmap" >/dev/null || die "bno-extend-left failed"
compare damaged "$T/bad.img" 4
grep -q "claimed twice\|free and used" "$T/out.damaged.mem" || die "no multiply-claimed finding"
grep -q "refcount" "$T/out.damaged.mem" || die "no refcount finding"

# repair with every append spilled (and on a copy in memory: the same
# report), then clean (also spilled)
cp --sparse=always "$T/bad.img" "$T/bad-mem.img"
FRC=0
RLFS_FSCK_MEM_CAP_BYTES=0 run_to "$CMD_TIMEOUT" "$RLFS" fsck "$T/bad.img" >"$T/repair.out" 2>&1 ||
	FRC=$?
[ $FRC = 1 ] || { cat "$T/repair.out" >&2; die "repair with cap 0 exited $FRC, expected 1"; }
(unset RLFS_FSCK_MEM_CAP_BYTES
 run_to "$CMD_TIMEOUT" "$RLFS" fsck "$T/bad-mem.img") >"$T/repair-mem.out" 2>&1 || true
sed -i "s|$T/bad-mem.img|$T/bad.img|g" "$T/repair-mem.out"
diff -u "$T/repair-mem.out" "$T/repair.out" >&2 || die "the repair's report differs with cap 0"
run_fsck 0 after "$T/bad.img"
[ $FRC = 0 ] || { cat "$T/raw.after" >&2; die "fsck -n after the repair exited $FRC"; }
cp "$T/sums" "$T/want"
sed -i "s/^$ino_b .*/$ino_b $(printf 'aaaa\n' | md5sum | cut -d' ' -f1)/" "$T/want"
rlfs_mount "$T/bad.img" "$m"
sums "$m" | diff -u "$T/want" - >&2 || die "file contents changed by the repair"
rlfs_umount "$m"

# no spill file possible: exit 8 with a message
FRC=0
TMPDIR=$T/no-such-dir RLFS_FSCK_MEM_CAP_BYTES=0 run_to "$CMD_TIMEOUT" "$RLFS" fsck -n "$img" \
	>"$T/nodir.out" 2>"$T/nodir.err" || FRC=$?
[ $FRC = 8 ] || { cat "$T/nodir.out" "$T/nodir.err" >&2; die "no TMPDIR: exit $FRC, expected 8"; }
grep -q "cannot create the spill file in $T/no-such-dir" "$T/nodir.err" ||
	{ cat "$T/nodir.err" >&2; die "no TMPDIR: no message naming the spill file"; }
# a cap that is not a number: exit 8
FRC=0
RLFS_FSCK_MEM_CAP_BYTES=lots run_to "$CMD_TIMEOUT" "$RLFS" fsck -n "$img" >/dev/null \
	2>"$T/badcap.err" || FRC=$?
[ $FRC = 8 ] && grep -q "RLFS_FSCK_MEM_CAP_BYTES" "$T/badcap.err" ||
	die "RLFS_FSCK_MEM_CAP_BYTES=lots: exit $FRC, expected 8 with a message"
log "PASS"

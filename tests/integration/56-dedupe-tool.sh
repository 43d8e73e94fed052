#!/bin/bash
# 56-dedupe-tool: `reflinkfs dedupe` (issue 12 part 2) on reflinkfs, kernel
# XFS (reflink=1) and btrfs loop mounts (btrfs skipped with a message only
# when mkfs.btrfs is missing).  On each, a corpus with a known amount of
# block-aligned duplicate data: whole duplicates, a copy shifted by whole
# blocks, two files sharing only a middle part, small files below a block,
# an unaligned EOF tail shared at different block offsets, sparse files
# (holes are not data) and a file of zero-filled data blocks.  Checked:
#   - the dry run finds exactly the expected duplicate bytes and changes
#     nothing (tree fingerprint, used space, no shared extents appear);
#   - the real run shares exactly them (summary), frees the space (df) and
#     the extents are shared (fiemap flags), diff -r against a copy made
#     before is empty;
#   - a rerun counts it all as already shared and shares nothing;
#   - --hashfile: the second run hashes 0 bytes and writes nothing to the
#     hash file (nor does the third), and after one file is
#     changed only that file is hashed; a deleted file's record is dropped
#     by the next run over a directory above it, not by one elsewhere; a
#     file rewritten in place after its scan (same size) is hashed again
#     by the next run (the stored tree is the one the run read);
#   - --min-size default (1) takes the small files, 4096 skips them, --exclude,
#     a tiny --memory degrades (sampling) and still finds whole files;
#   - a file and its clone: the shared blocks are read once (the clone's
#     hashes come from the device blocks already hashed);
#   - a file changed between hashing and sharing (hidden hook
#     RLFS_DEDUPE_TEST_BEFORE_SHARE) is reported, exit 1, nothing damaged;
#     a source changed after its scan (outside the run taken from it) is
#     reported and not used, though the tool kept it open;
#   - a file shared with a clone and an unshared copy of it: the copy's
#     blocks are the ones freed (df), whichever of them sorts first;
#   - exit codes 2 (usage) and 4 (a PATH that does not exist);
#   - on reflinkfs: fsck -n clean after unmount, without the LD_PRELOAD shim.
. "$(dirname "$0")/../lib.sh"
common_setup
command -v xfs_io >/dev/null || die "xfs_io missing (apt-get install xfsprogs)"

KiB=1024
MiB=$((1024 * 1024))
POOL=$T/pool.bin
head -c $((9 * MiB)) /dev/urandom >"$POOL"

# piece OFF LEN: LEN bytes of the pool from OFF (dd with read/write: cp and
# cat could copy_file_range, which shares on XFS and btrfs)
piece() { dd if="$POOL" bs=4096 iflag=skip_bytes,count_bytes skip="$1" count="$2" status=none; }
rnd() { head -c "$1" /dev/urandom; }
# put FILE: stdin to FILE with plain writes
put() { dd of="$1" bs=1M iflag=fullblock status=none; }

# expected block-aligned duplicate bytes (destination side) of the corpus
EXP_WHOLE=$((2 * MiB))
EXP_SHIFT=$((1 * MiB))
EXP_MID=$((512 * KiB))
EXP_SMALL=100
EXP_TAIL=$((40 * KiB + 1000))
EXP_SPARSE=$((128 * KiB))
EXP=$((EXP_WHOLE + EXP_SHIFT + EXP_MID + EXP_SMALL + EXP_TAIL + EXP_SPARSE))
# blocks that become free: every duplicate block, the partial ones included
EXP_BLOCKS=$((512 + 256 + 128 + 1 + 11 + 32))

mkcorpus() {
	local d=$1
	mkdir -p "$d"/whole "$d"/shift "$d"/mid "$d"/small "$d"/tail "$d"/sparse
	piece 0 $((2 * MiB)) | put "$d/whole/a"
	piece 0 $((2 * MiB)) | put "$d/whole/b"
	# shifted by 3 blocks, random block after
	piece $((4 * MiB)) $MiB | put "$d/shift/x"
	{ rnd 12288; piece $((4 * MiB)) $MiB; rnd 4096; } | put "$d/shift/y"
	# only a middle part in common, at different offsets
	{ rnd $((64 * KiB)); piece $((5 * MiB)) $((512 * KiB)); rnd $((64 * KiB)); } | put "$d/mid/p"
	{ rnd $((128 * KiB)); piece $((5 * MiB)) $((512 * KiB)); rnd 8192; } | put "$d/mid/q"
	piece $((8 * MiB)) 100 | put "$d/small/s1"
	piece $((8 * MiB)) 100 | put "$d/small/s2"
	# an unaligned tail shared at block offsets 2 and 4
	{ rnd 8192; piece $((6 * MiB)) $EXP_TAIL; } | put "$d/tail/t1"
	{ rnd 16384; piece $((6 * MiB)) $EXP_TAIL; } | put "$d/tail/t2"
	for f in h1 h2; do
		piece $((7 * MiB)) $((64 * KiB)) | dd of="$d/sparse/$f" bs=64K conv=notrunc status=none
		piece $((7 * MiB + 512 * KiB)) $((64 * KiB)) |
			dd of="$d/sparse/$f" bs=64K seek=8 conv=notrunc status=none
		truncate -s $MiB "$d/sparse/$f"
	done
	rnd $((300 * KiB)) | put "$d/unique"
	sync
}

# json FIELD FILE: a number field of the --json summary
json() { $PY -c "import json,sys; print(json.load(open(sys.argv[2]))[sys.argv[1]])" "$1" "$2"; }

# shared_sectors FIEMAPCMD DIR: 512-byte sectors in extents flagged shared
shared_sectors() {
	local cmd=$1 dir=$2 f total=0 n
	while IFS= read -r -d '' f; do
		n=$($cmd -c "fiemap -v" "$f" | gawk 'NR > 2 && $3 != "hole" {
			fl = strtonum($5); if (and(fl, 0x2000)) s += $4 } END { print s + 0 }')
		total=$((total + n))
	done < <(find "$dir" -type f -print0)
	echo $total
}

# run_tool RC OUT ARGS...: run the tool, require exit status RC
run_tool() {
	local want=$1 out=$2 rc=0; shift 2
	"$RLFS" dedupe "$@" >"$out" 2>"$out.err" || rc=$?
	[ "$rc" = "$want" ] || { cat "$out" "$out.err" >&2; die "dedupe $* exited $rc, want $want"; }
}

# check_fs NAME MOUNTDIR FIEMAPCMD DF(yes|no)
check_fs() {
	local name=$1 m=$2 fm=$3 usedf=$4 d=$2/c o=$T/$1
	log "$name: building the corpus"
	mkcorpus "$d"
	rm -rf "$T/before"
	cp -a "$d" "$T/before"
	local fp0 used0 sh0
	fp0=$(tree_fingerprint "$d")
	used0=$(df_used_kb "$m")
	sh0=$(shared_sectors "$fm" "$d")
	[ "$sh0" = 0 ] || die "$name: corpus has shared extents before the run ($sh0 sectors)"

	# dry run: finds it all, changes nothing
	run_tool 0 "$o.dry" -r -n --min-size 1 --json "$d"
	[ "$(json duplicate_bytes "$o.dry")" = $EXP ] ||
		{ cat "$o.dry" >&2; die "$name: dry run found $(json duplicate_bytes "$o.dry") bytes, want $EXP"; }
	[ "$(json would_share_bytes "$o.dry")" = $EXP ] || die "$name: would share differs"
	[ "$(json shared_bytes "$o.dry")" = 0 ] || die "$name: dry run shared"
	sync
	[ "$(tree_fingerprint "$d")" = "$fp0" ] || die "$name: dry run changed the tree"
	[ "$(shared_sectors "$fm" "$d")" = 0 ] || die "$name: dry run shared extents"
	[ "$(df_used_kb "$m")" -le $((used0 + 64)) ] || die "$name: dry run used space"

	# default --min-size (1) takes the small files, --min-size 4096 skips
	# them; --exclude
	run_tool 0 "$o.min" -r -n --json "$d"
	[ "$(json duplicate_bytes "$o.min")" = $EXP ] ||
		die "$name: default min-size found $(json duplicate_bytes "$o.min")"
	run_tool 0 "$o.min4k" -r -n --min-size 4096 --json "$d"
	[ "$(json duplicate_bytes "$o.min4k")" = $((EXP - EXP_SMALL)) ] ||
		die "$name: --min-size 4096 found $(json duplicate_bytes "$o.min4k")"
	run_tool 0 "$o.excl" -r -n --min-size 1 --exclude whole --exclude '*/mid/*' --json "$d"
	[ "$(json duplicate_bytes "$o.excl")" = $((EXP - EXP_WHOLE - EXP_MID)) ] ||
		die "$name: --exclude found $(json duplicate_bytes "$o.excl")"
	# a tiny table: sampled, whole files still found
	run_tool 0 "$o.mem" -r -n --min-size 1 --memory 24K --json "$d"
	$PY - "$o.mem" "$EXP_WHOLE" "$name" <<-'EOF' || die "$name: --memory 24K"
	import json, sys
	j = json.load(open(sys.argv[1]))
	t = j["table"]
	assert t["sample_k"] > 1, t
	assert t["capacity_entries"] * t["entry_bytes"] <= 24 * 1024, t
	assert j["whole_files"] >= 1 and j["duplicate_bytes"] >= int(sys.argv[2]), j
	print(f"[56-dedupe-tool] {sys.argv[3]}: --memory 24K: k={t['sample_k']}, "
	      f"found {j['duplicate_bytes']} of the duplicate bytes")
	EOF

	# the real run, with a hash file
	rm -f "$o.db"
	run_tool 0 "$o.run" -r --min-size 1 --hashfile "$o.db" --json "$d"
	[ "$(json duplicate_bytes "$o.run")" = $EXP ] || die "$name: run found $(json duplicate_bytes "$o.run")"
	[ "$(json shared_bytes "$o.run")" = $EXP ] ||
		{ cat "$o.run" >&2; die "$name: shared $(json shared_bytes "$o.run") bytes, want $EXP"; }
	[ "$(json failed_ranges "$o.run")" = 0 ] || die "$name: failures"
	sync
	diff -r "$T/before" "$d" || die "$name: contents changed"
	[ "$(tree_fingerprint "$d")" = "$fp0" ] || die "$name: the tree changed"
	local sh1 want_sh=$((2 * EXP_BLOCKS * 8))
	sh1=$(shared_sectors "$fm" "$d")
	[ "$sh1" -ge $want_sh ] || die "$name: $sh1 sectors shared, want >= $want_sh"
	if [ "$usedf" = yes ]; then
		local freed=$((used0 - $(df_used_kb "$m"))) want_kb=$((EXP_BLOCKS * 4 - 128))
		[ "$freed" -ge $want_kb ] || die "$name: df shows $freed KiB freed, want >= $want_kb"
		log "$name: shared $EXP bytes, df freed $freed KiB, $sh1 sectors flagged shared"
	else
		log "$name: shared $EXP bytes, $sh1 sectors flagged shared"
	fi

	# rerun with the hash file: the tree is as the complete run left it,
	# so nothing is scanned (the store's clean_tree), hashed or shared,
	# and nothing is written to the hash file (its mtime stays); the
	# stored tree stays for the run after it
	local db_mtime
	db_mtime=$(stat -c %y "$o.db")
	run_tool 0 "$o.re" -r --min-size 1 --hashfile "$o.db" --json "$d"
	[ "$(json unchanged "$o.re")" = True ] || die "$name: rerun of an unchanged tree scanned it"
	[ "$(json bytes_hashed "$o.re")" = 0 ] || die "$name: rerun hashed $(json bytes_hashed "$o.re") bytes"
	[ "$(json shared_bytes "$o.re")" = 0 ] || die "$name: rerun shared again"
	[ "$(stat -c %y "$o.db")" = "$db_mtime" ] ||
		die "$name: an unchanged rerun wrote the hash file (mtime $db_mtime -> $(stat -c %y "$o.db"))"
	run_tool 0 "$o.re1" -r --min-size 1 --hashfile "$o.db" --json "$d"
	[ "$(json unchanged "$o.re1")" = True ] || die "$name: a second unchanged rerun scanned the tree"
	# the same tree named relative to another directory, with a slash
	(cd "$(dirname "$d")" && run_tool 0 "$o.re1r" -r --min-size 1 --hashfile "$o.db" --json "$(basename "$d")/")
	[ "$(json unchanged "$o.re1r")" = True ] || die "$name: the unchanged tree named as a relative path was scanned"
	# rerun without it: reads everything, still shares nothing
	run_tool 0 "$o.re2" -r --min-size 1 --json "$d"
	[ "$(json bytes_hashed "$o.re2")" -gt 0 ] || die "$name: no hash file but nothing hashed"
	[ "$(json shared_bytes "$o.re2")" = 0 ] || die "$name: rerun without hash file shared again"
	# one file changes: only it is hashed again
	local ysize
	rnd 4096 | dd of="$d/shift/y" bs=4096 seek=1 conv=notrunc status=none
	sync
	ysize=$(stat -c %s "$d/shift/y")
	run_tool 0 "$o.re3" -r --min-size 1 --hashfile "$o.db" --json "$d"
	[ "$(json unchanged "$o.re3")" = False ] || die "$name: a changed file went unnoticed"
	[ "$(json bytes_hashed "$o.re3")" = "$ysize" ] ||
		die "$name: after changing one file, hashed $(json bytes_hashed "$o.re3") bytes, want $ysize"
	[ "$(json already_shared_bytes "$o.re3")" -ge $((EXP - 2 * ysize)) ] ||
		die "$name: after changing one file: already shared $(json already_shared_bytes "$o.re3"), want about $EXP"

	# a copy rewritten in place with its own bytes is unshared again (new
	# mtime): the rerun rehashes it, does not trust the settled run and
	# shares it again
	cp "$d/whole/b" "$T/b.bytes"
	dd if="$T/b.bytes" of="$d/whole/b" bs=1M conv=notrunc status=none
	sync
	run_tool 0 "$o.re4" -r --min-size 1 --hashfile "$o.db" --json "$d"
	[ "$(json bytes_hashed "$o.re4")" = $EXP_WHOLE ] || die "$name: rewritten file: hashed $(json bytes_hashed "$o.re4")"
	[ "$(json shared_bytes "$o.re4")" = $EXP_WHOLE ] ||
		{ cat "$o.re4" >&2; die "$name: rewritten file: shared $(json shared_bytes "$o.re4"), want $EXP_WHOLE"; }

	# a deleted file's record leaves the store at the next run over a root
	# above it; a run over another root keeps it
	mkdir "$d/gone"
	rnd $((64 * KiB)) | put "$d/gone/f"
	sync
	run_tool 0 "$o.re5" -r --min-size 1 --hashfile "$o.db" --json "$d"
	rm "$d/gone/f"
	run_tool 0 "$o.re6" -r --min-size 1 --hashfile "$o.db" --json "$d/whole"
	[ "$(json store_records_dropped "$o.re6")" = 0 ] ||
		die "$name: a run over whole/ dropped $(json store_records_dropped "$o.re6") records"
	store_has() { $PY -c 'import sqlite3, sys
n = sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM files WHERE path LIKE ?",
                                         ("%/" + sys.argv[2],)).fetchone()[0]
sys.exit(0 if n else 1)' "$o.db" "$1"; }
	store_has gone/f || die "$name: the deleted file's record went with a run over whole/"
	run_tool 0 "$o.re7" -r --min-size 1 --hashfile "$o.db" --json "$d/"
	[ "$(json store_records_dropped "$o.re7")" = 1 ] ||
		die "$name: rerun dropped $(json store_records_dropped "$o.re7") records, want 1"
	! store_has gone/f || die "$name: the deleted file's record is still in the store"
	store_has whole/b || die "$name: a present file's record was dropped"

	# a file and its clone (copy_file_range clones on all three): their
	# shared blocks are read once, the second file's hashes come from the
	# first's device blocks
	mkdir "$d/cl"
	rnd $MiB | put "$d/cl/a"
	$PY -c 'import os, sys
s = os.open(sys.argv[1], os.O_RDONLY)
d = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT, 0o644)
n, o = os.fstat(s).st_size, 0
while o < n:
    o += os.copy_file_range(s, d, n - o)' "$d/cl/a" "$d/cl/b"
	sync
	run_tool 0 "$o.cl" --json "$d/cl/a" "$d/cl/b"
	[ "$(json already_shared_bytes "$o.cl")" = $MiB ] ||
		{ cat "$o.cl" >&2; die "$name: the clone is not shared (copy_file_range did not clone)"; }
	[ "$(json bytes_reused_shared "$o.cl")" = $MiB ] ||
		{ cat "$o.cl" >&2; die "$name: clone: $(json bytes_reused_shared "$o.cl") bytes from known device blocks, want $MiB"; }
	[ "$(json bytes_hashed "$o.cl")" = $MiB ] ||
		die "$name: file and clone: read $(json bytes_hashed "$o.cl") bytes, want $MiB"

	# a file changed between hashing and sharing
	mkdir "$d/chg"
	piece $((3 * MiB)) $MiB | put "$d/chg/c1"
	piece $((3 * MiB)) $MiB | put "$d/chg/c2"
	sync
	local hook="dd if=/dev/urandom of=$d/chg/c2 bs=4096 count=1 conv=notrunc status=none &&
		dd if=/dev/urandom of=$d/chg/c1 bs=4096 count=1 conv=notrunc status=none &&
		cp $d/chg/c1 $T/c1.mod && cp $d/chg/c2 $T/c2.mod"
	local rc=0
	RLFS_DEDUPE_TEST_BEFORE_SHARE=$hook "$RLFS" dedupe --json "$d/chg/c1" "$d/chg/c2" \
		>"$o.chg" 2>"$o.chg.err" || rc=$?
	[ $rc = 1 ] || { cat "$o.chg" "$o.chg.err" >&2; die "$name: changed file: exit $rc, want 1"; }
	# the hook changed both: both are reported
	$PY -c 'import json,sys; c = json.load(open(sys.argv[1]))["changed_files"]
assert sorted(p[-6:] for p in c) == ["chg/c1", "chg/c2"], c' "$o.chg" ||
		{ cat "$o.chg" >&2; die "$name: change not reported"; }
	grep -q 'changed during the run' "$o.chg.err" || die "$name: no message for the changed file"
	[ "$(json shared_bytes "$o.chg")" = 0 ] || die "$name: shared a changed range"
	# DIFFERS is a change, not a failure
	[ "$(json failed_ranges "$o.chg")" = 0 ] || { cat "$o.chg" >&2; die "$name: a changed range counted as failed"; }
	cmp "$d/chg/c1" "$T/c1.mod" && cmp "$d/chg/c2" "$T/c2.mod" || die "$name: changed file damaged"
	rm -rf "$d/chg"

	# a file with no duplicate, rewritten in place after its scan while
	# the run shares two others (same size, new mtime): the clean tree the
	# run stores must be the one it read, so the next --hashfile run
	# hashes that file again (largest first: solo is scanned before p2
	# finds p1 and the hook runs)
	mkdir "$d/late"
	piece $((5 * MiB)) $((2 * MiB)) | put "$d/late/solo"
	piece $((8 * MiB)) $((256 * KiB)) | put "$d/late/p1"
	piece $((8 * MiB)) $((256 * KiB)) | put "$d/late/p2"
	sync
	rm -f "$o.late.db"
	RLFS_DEDUPE_TEST_BEFORE_SHARE="dd if=/dev/urandom of=$d/late/solo bs=4096 count=1 conv=notrunc status=none" \
		run_tool 0 "$o.late" --json --hashfile "$o.late.db" "$d/late"/*
	[ "$(json shared_bytes "$o.late")" = $((256 * KiB)) ] ||
		{ cat "$o.late" >&2; die "$name: late change: shared $(json shared_bytes "$o.late")"; }
	run_tool 0 "$o.late2" --json --hashfile "$o.late.db" "$d/late"/*
	[ "$(json unchanged "$o.late2")" = False ] ||
		die "$name: a file rewritten after its scan was taken as unchanged by the next run"
	[ "$(json bytes_hashed "$o.late2")" = $((2 * MiB)) ] ||
		die "$name: late change: the next run hashed $(json bytes_hashed "$o.late2") bytes, want solo's $((2 * MiB))"
	rm -rf "$d/late"

	# a source changed after its scan, outside the run shared from it:
	# the tool keeps scanned files open (fewer FUSE opens), and the stat
	# check it did at each open must still happen at each reuse, so src
	# (scanned first, largest) is reported and not used when tail finds
	# its last block after the hook (run at p2's share) rewrote its first
	mkdir "$d/reuse"
	piece $((6 * MiB)) $((3 * 4096)) | put "$d/reuse/src"
	piece $((7 * MiB)) 8192 | put "$d/reuse/p1"
	piece $((7 * MiB)) 8192 | put "$d/reuse/p2"
	piece $((6 * MiB + 2 * 4096)) 4096 | put "$d/reuse/tail"
	sync
	rc=0
	RLFS_DEDUPE_TEST_BEFORE_SHARE="dd if=/dev/urandom of=$d/reuse/src bs=4096 count=1 conv=notrunc status=none" \
		"$RLFS" dedupe --json "$d/reuse"/* >"$o.reuse" 2>"$o.reuse.err" || rc=$?
	[ $rc = 1 ] || { cat "$o.reuse" "$o.reuse.err" >&2; die "$name: source changed after its scan: exit $rc, want 1"; }
	$PY -c 'import json,sys; c = json.load(open(sys.argv[1]))["changed_files"]
assert [p[-9:] for p in c] == ["reuse/src"], c' "$o.reuse" ||
		{ cat "$o.reuse" >&2; die "$name: the source changed after its scan is not reported"; }
	[ "$(json shared_bytes "$o.reuse")" = 8192 ] ||
		{ cat "$o.reuse" >&2; die "$name: source changed after its scan: shared $(json shared_bytes "$o.reuse"), want p1/p2's 8192 only"; }
	rm -rf "$d/reuse"

	# zero-filled data blocks are data: two files of zeros share
	mkdir "$d/zero"
	head -c $((256 * KiB)) /dev/zero | put "$d/zero/z1"
	head -c $((256 * KiB)) /dev/zero | put "$d/zero/z2"
	sync
	run_tool 0 "$o.zero" -r --json "$d/zero"
	[ "$(json duplicate_bytes "$o.zero")" -ge $((256 * KiB)) ] ||
		die "$name: zero-filled blocks: $(json duplicate_bytes "$o.zero") duplicate bytes"
	cmp "$d/zero/z1" "$d/zero/z2" || die "$name: zero files differ"
	head -c $((256 * KiB)) /dev/zero | cmp - "$d/zero/z1" || die "$name: zero file changed"

	# a file whose blocks a clone already shares, and a plain copy of it:
	# the clone's blocks stay, the copy's are freed, whichever of the two
	# the scan takes as the source (equal sizes: the first by path; sharing
	# the other way would free nothing)
	if [ "$usedf" = yes ]; then
		local sh cp
		for sh in a b; do
			cp=$([ $sh = a ] && echo b || echo a)
			mkdir "$d/keep"
			piece $((6 * MiB)) $MiB | put "$d/keep/$sh"
			cp --reflink=auto "$d/keep/$sh" "$d/keep/clone"
			piece $((6 * MiB)) $MiB | put "$d/keep/$cp"
			sync
			[ "$(shared_sectors "$fm" "$d/keep/clone")" -ge 2048 ] ||
				die "$name: the clone of keep/$sh shares nothing"
			local u0 f1
			u0=$(df_used_kb "$m")
			run_tool 0 "$o.keep" --json "$d/keep/a" "$d/keep/b"
			[ "$(json shared_bytes "$o.keep")" = $MiB ] ||
				{ cat "$o.keep" >&2; die "$name: keep ($sh shared): shared $(json shared_bytes "$o.keep")"; }
			sync
			f1=$((u0 - $(df_used_kb "$m")))
			[ "$f1" -ge $((1024 - 64)) ] ||
				die "$name: keep ($sh shared with a clone): df freed $f1 KiB, want the copy's 1024"
			cmp "$d/keep/a" "$d/keep/b" && cmp "$d/keep/a" "$d/keep/clone" ||
				die "$name: keep ($sh shared): contents changed"
			rm -rf "$d/keep"
		done
		log "$name: dedupe kept the blocks a clone shares and freed the copy's (either name first)"
	fi
	rm -rf "$d"
}

# exit codes
expect_rc 2 "$RLFS" dedupe
expect_rc 2 "$RLFS" dedupe --bogus "$T"
expect_rc 2 "$RLFS" dedupe --memory 12x "$T"
expect_rc 4 "$RLFS" dedupe "$T/does-not-exist"
"$RLFS" dedupe --help | grep -q -- '--hashfile FILE' || die "--help lacks --hashfile"

# reflinkfs (no shim in the environment: the private ioctls directly)
unset LD_PRELOAD
IMG=$T/rlfs.img
rlfs_mkfs "$IMG" -s 256M
rlfs_mount "$IMG" "$T/rlfs"
check_fs reflinkfs "$T/rlfs" "$RLFS io" yes
rlfs_umount "$T/rlfs"
rlfs_fsck "$IMG"

# kernel XFS
kmount_xfs "$T/xfs.img" "$T/xfs" 512M
check_fs xfs "$T/xfs" xfs_io yes
kumount "$T/xfs"

# kernel btrfs (max_inline=0: the small files get extents to share; df is
# not checked: btrfs frees an extent only when no block of it is in use)
if command -v mkfs.btrfs >/dev/null; then
	truncate -s 512M "$T/btrfs.img"
	mkfs.btrfs -q -f "$T/btrfs.img" >/dev/null || die "mkfs.btrfs failed"
	mkdir -p "$T/btrfs"
	_LOOPS+=("$T/btrfs.img")
	_MOUNTS+=("$T/btrfs")
	_MOUNT_IMG+=("")
	mount -o loop,max_inline=0 "$T/btrfs.img" "$T/btrfs" || die "mount btrfs failed"
	check_fs btrfs "$T/btrfs" xfs_io no
	kumount "$T/btrfs"
else
	log "mkfs.btrfs missing (apt-get install btrfs-progs): btrfs skipped"
fi
log "ok"

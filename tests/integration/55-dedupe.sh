#!/bin/bash
# 55-dedupe: FIDEDUPERANGE (issue 12 part 1), differential against kernel
# XFS.  tests/helpers/dedupe_ops.py runs the fstests dedupe-group cases
# (identical data dedupes and becomes shared; differing data reports
# DIFFERS and changes nothing; alignment and EOF rules; len 0; the 1 GiB
# cap; same-file overlap; many destinations with mixed results in one
# call; the page-size argument limit; allow_file_dedupe as an
# unprivileged user) on an XFS loop mount and, through the LD_PRELOAD
# shim, on reflinkfs: every status, errno, bytes_deduped, file checksum
# and FIEMAP shared byte count must be equal.  Then dedupe against a
# concurrent writer (src never changes, dst ends as the last write), the
# `reflinkfs io` dedupe command against xfs_io's output, duperemove
# through the shim (first), and fsck -n clean after.
. "$(dirname "$0")/../lib.sh"
common_setup
command -v xfs_io >/dev/null || die "xfs_io missing (apt-get install xfsprogs)"
SHIM=${SHIM:-$(dirname "$RLFS")/libreflinkfs-preload.so}
[ -f "$SHIM" ] || die "shim not found: $SHIM"
OPS=$SRCDIR/tests/helpers/dedupe_ops.py

# other users must reach both mounts (the cases run as nobody and others)
mounts_for_users 512M

# 0. duperemove through the shim finds and shares duplicates (first, on
# the fresh filesystem: duperemove 0.11 matches whole FIEMAP extents, so
# x and y must get one extent each)
if command -v duperemove >/dev/null; then
	mkdir "$MNT/dup"
	# written at once (cp and cat would copy_file_range, which shares)
	head -c 4M /dev/urandom >"$T/dup.bin"
	for f in x y; do dd if="$T/dup.bin" of="$MNT/dup/$f" bs=4M conv=fsync status=none; done
	head -c 1M /dev/urandom >"$MNT/dup/z"
	sync
	before=$(LD_PRELOAD=$SHIM $PY "$OPS" shared "$MNT/dup/y")
	[ "$before" = 0 ] || die "y shared before duperemove ($before)"
	# duperemove 0.11 dedupes only where f_type says btrfs or XFS: the
	# shim says XFS when asked (RLFS_PRELOAD_FSTYPE=xfs)
	RLFS_PRELOAD_FSTYPE=xfs LD_PRELOAD=$SHIM \
		duperemove -d -r --dedupe-options=partial "$MNT/dup" >"$T/duperemove.out" 2>&1 ||
		{ tail -20 "$T/duperemove.out" >&2; die "duperemove failed"; }
	after=$(LD_PRELOAD=$SHIM $PY "$OPS" shared "$MNT/dup/y")
	[ "$after" = $((4 << 20)) ] ||
		{ tail -20 "$T/duperemove.out" >&2; die "duperemove shared $after of 4 MiB"; }
	cmp "$MNT/dup/x" "$MNT/dup/y" || die "duperemove changed contents"
	log "duperemove: $(grep -iE 'net change in shared' "$T/duperemove.out" | tail -1)"
else
	log "duperemove not installed: skipped"
fi

# 1. the cases, both filesystems
$PY "$OPS" ops "$T/xfs" >"$T/xfs.out" 2>&1 || { tail -5 "$T/xfs.out" >&2; die "ops failed on XFS"; }
rc=0
LD_PRELOAD=$SHIM $PY "$OPS" ops "$MNT" >"$T/rlfs.out" 2>&1 || rc=$?
if ! diff -u "$T/xfs.out" "$T/rlfs.out" >"$T/diff"; then
	grep '^[-+][^-+]' "$T/diff" | head -40 >&2
	die "reflinkfs differs from XFS in $(grep -c '^[+][^+]' "$T/diff") cases"
fi
[ $rc = 0 ] || die "ops failed on reflinkfs (exit $rc)"
n=$(grep -c ' -> ' "$T/rlfs.out")
[ "$n" -ge 33 ] || die "only $n cases ran"
grep -q '^same -> st=SAME/1048576 .* shared=1048576$' "$T/rlfs.out" || die "identical data not shared"
grep -q '^differs -> st=DIFFERS .* shared=0$' "$T/rlfs.out" || die "differing data not reported"
grep -q '^user ro-root644 -> ok st=EPERM' "$T/rlfs.out" || die "no permission refusal seen"
log "$n dedupe cases identical to XFS"

# 2. a writer rewriting the destination while dedupes run
for d in "$T/xfs" "$MNT"; do
	pre=""
	[ "$d" = "$MNT" ] && pre="env LD_PRELOAD=$SHIM"
	$pre $PY "$OPS" race "$d" "${RACE_WRITES:-400}" >"$T/race.out" 2>"$T/race.err" ||
		{ cat "$T/race.out" "$T/race.err" >&2; die "race failed on $d"; }
	want='race: src-unchanged=True dst-is-last-write=True writer-read-own-writes=True'
	grep -qx "$want other=0 dedupes>0=True" "$T/race.out" ||
		{ cat "$T/race.out" >&2; die "dedupe vs writer broke an invariant on $d"; }
	log "race on $(basename "$d"): $(cat "$T/race.err")"
done

# 3. `reflinkfs io -c dedupe` prints what xfs_io prints
io_seq() {
	local d=$1 tool=$2
	$tool -f -c "pwrite -S 0x61 0 256k" -c fsync "$d/io1" >/dev/null
	$tool -f -c "pwrite -S 0x61 0 256k" -c fsync "$d/io2" >/dev/null
	$tool -f -c "pwrite -S 0x62 0 256k" -c fsync "$d/io3" >/dev/null
	$tool -c "dedupe $d/io1 0 0 256k" "$d/io2" 2>&1 | sed -e '/ ops; /d'
	$tool -c "dedupe $d/io1 64k 64k 64k" "$d/io2" 2>&1 | sed -e '/ ops; /d'
}
io_seq "$T/xfs" xfs_io >"$T/io.xfs"
io_seq "$MNT" "$RLFS io" >"$T/io.rlfs"
diff -u "$T/io.xfs" "$T/io.rlfs" >&2 || die "reflinkfs io dedupe output differs from xfs_io's"
# failures: the message of xfs_io, in the tool's error format
out=$("$RLFS" io -c "dedupe $MNT/io1 0 0 256k" "$MNT/io3" 2>&1) && die "DIFFERS did not fail"
case $out in *"Extents did not match"*) ;; *) die "io dedupe DIFFERS: $out" ;; esac
out=$("$RLFS" io -c "dedupe $MNT/io1 1000 0 4k" "$MNT/io2" 2>&1) && die "EINVAL did not fail"
case $out in *"Invalid argument"*) ;; *) die "io dedupe EINVAL: $out" ;; esac
# xfs_io itself through the shim
out=$(LD_PRELOAD=$SHIM xfs_io -c "dedupe $MNT/io1 0 0 256k" "$MNT/io3" 2>&1)
case $out in *"Extents did not match"*) ;; *) die "xfs_io dedupe through the shim: $out" ;; esac
log "io dedupe output as xfs_io's"

rlfs_umount "$MNT"
rlfs_fsck "$IMG"
kumount "$T/xfs"

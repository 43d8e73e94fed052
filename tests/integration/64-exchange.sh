#!/bin/bash
# 64-exchange: exchange range (issue 14 §1), XFS_IOC_EXCHANGE_RANGE
# through the LD_PRELOAD shim and `reflinkfs io exchangerange`.
#
# There is no kernel oracle: kernel XFS answers XFS_IOC_EXCHANGE_RANGE
# only on filesystems made with `mkfs.xfs -i exchange=1` (EOPNOTSUPP
# otherwise), which Debian 12's mkfs.xfs (xfsprogs 6.1) cannot make, and
# its xfs_io predates the exchangerange command.  So the results and
# errnos are written out from ioctl_xfs_exchange_range(2) and the kernel's
# checks (fs/xfs/xfs_exchrange.c) in tests/helpers/exchange_ops.py, which
# checks each case itself: contents exchanged whole and in part, holes,
# TO_EOF with the sizes exchanged, DRY_RUN, FILE1_WRITTEN, length 0,
# EINVAL (pad, flags, alignment, EOF, overlap in one file, a FIFO), EBADF
# (open modes, O_APPEND, a closed fd), EXDEV (another filesystem), EISDIR,
# EPERM (immutable), both files' times.  (ETXTBSY, a swap file, cannot
# happen: a FUSE file cannot be a swap file.)  Then `reflinkfs io
# exchangerange` with xfs_io 6.12's options (-l/-s/-d, -n, -w, -t, -c; its
# messages for bad numbers), and
# XFS_IOC_START_COMMIT / XFS_IOC_COMMIT_RANGE through the shim (an
# O_TMPFILE clone committed; EBUSY after a write or a chmod of the file,
# nothing changed), `reflinkfs io` startupdate/commitupdate/cancelupdate
# (EBUSY when the file changes between them), and fsck -n clean after the
# unmount.
. "$(dirname "$0")/../lib.sh"
common_setup
SHIM=${SHIM:-$(dirname "$RLFS")/libreflinkfs-preload.so}
[ -f "$SHIM" ] || die "shim not found: $SHIM"
command -v chattr >/dev/null || die "chattr missing (apt-get install e2fsprogs)"
command -v strace >/dev/null || die "strace missing (apt-get install strace; scripts/deps.sh)"

IMG=$T/img
MNT=$T/mnt
rlfs_mkfs "$IMG" -s 256M
rlfs_mount "$IMG" "$MNT"
mkdir -p "$T/other"   # $T is on another filesystem than the mount

# 1. the man page's cases through the shim
LD_PRELOAD=$SHIM $PY "$SRCDIR/tests/helpers/exchange_ops.py" ops "$MNT" "$T/other" \
	>"$T/ops.out" 2>&1 || { cat "$T/ops.out" >&2; die "exchange cases failed"; }
n=$(grep -c ' -> ' "$T/ops.out")
[ "$n" -ge 38 ] || { cat "$T/ops.out" >&2; die "only $n cases ran"; }
log "$n ioctl cases as the man page says"

# 2. reflinkfs io exchangerange (the io file is file2, DONOR file1)
head -c 65536 /dev/urandom >"$T/a.src"
head -c 40000 /dev/urandom >"$T/b.src"
cp "$T/a.src" "$MNT/ia"
cp "$T/b.src" "$MNT/ib"
"$RLFS" io -c "exchangerange -n $MNT/ia" "$MNT/ib" || die "io exchangerange -n failed"
cmp "$T/a.src" "$MNT/ia" && cmp "$T/b.src" "$MNT/ib" || die "dry run changed a file"
out=$("$RLFS" io -c "exchangerange -t -s 8K -d 4K -l 16K $MNT/ia" "$MNT/ib") ||
	die "io exchangerange -l failed"
[ "$out" = "exchangerange 16384/16384 bytes at offset 4096" ] || die "io printed '$out'"
# expected: ia[8K,24K) <-> ib[4K,20K)
{ head -c 8192 "$T/a.src"; head -c 20480 "$T/b.src" | tail -c 16384
  tail -c +24577 "$T/a.src"; } >"$T/a.want"
{ head -c 4096 "$T/b.src"; head -c 24576 "$T/a.src" | tail -c 16384
  tail -c +20481 "$T/b.src"; } >"$T/b.want"
cmp "$T/a.want" "$MNT/ia" || die "ia after exchangerange -l"
cmp "$T/b.want" "$MNT/ib" || die "ib after exchangerange -l"
# to EOF (no -l): whole contents and sizes exchanged
"$RLFS" io -c "exchangerange $MNT/ia" "$MNT/ib" || die "io exchangerange (to EOF) failed"
cmp "$T/b.want" "$MNT/ia" && cmp "$T/a.want" "$MNT/ib" || die "to-EOF exchange contents"
[ "$(stat -c %s "$MNT/ia")" = 40000 ] || die "ia size $(stat -c %s "$MNT/ia")"
# an error: an unaligned offset, xfs_io's message form
if "$RLFS" io -c "exchangerange -s 1 -l 4K $MNT/ia" "$MNT/ib" 2>"$T/err"; then
	die "unaligned exchangerange succeeded"
fi
grep -q "exchangerange: Invalid argument" "$T/err" || { cat "$T/err" >&2; die "message"; }
# -c (xfs_io 6.12): the same exchange as a commit, START_COMMIT then
# COMMIT_RANGE on the io file (RLFS_IOC_START_COMMIT / _COMMIT_RANGE, nr
# 14 and 15 of type 0xb7, seen with strace; LeakSanitizer cannot run
# under ptrace)
cp "$MNT/ia" "$T/ia.before"
cp "$MNT/ib" "$T/ib.before"
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -o "$T/c.strace" -e trace=ioctl "$RLFS" io -c "exchangerange -c -t -l 8K $MNT/ia" "$MNT/ib" \
	>"$T/c.out" || die "io exchangerange -c failed"
[ "$(cat "$T/c.out")" = "exchangerange 8192/8192 bytes at offset 0" ] || die "io -c printed '$(cat "$T/c.out")'"
grep -q "0xb7, 0xe, " "$T/c.strace" && grep -q "0xb7, 0xf, " "$T/c.strace" ||
	{ cat "$T/c.strace" >&2; die "exchangerange -c did not commit (no START_COMMIT + COMMIT_RANGE)"; }
cmp -n 8192 "$T/ia.before" "$MNT/ib" && cmp -n 8192 "$T/ib.before" "$MNT/ia" ||
	die "exchangerange -c did not exchange the first 8 KiB"
cmp -i 8192 "$T/ia.before" "$MNT/ia" && cmp -i 8192 "$T/ib.before" "$MNT/ib" ||
	die "exchangerange -c changed bytes past 8 KiB"
# xfs_io's messages for bad numbers (io/exchrange.c)
for o in "-d x1:open file offset" "-s x1:supplied file offset" "-l x1:length"; do
	if "$RLFS" io -c "exchangerange ${o%%:*} $MNT/ia" "$MNT/ib" 2>"$T/err"; then
		die "exchangerange ${o%%:*} succeeded"
	fi
	grep -q "exchangerange: non-numeric ${o#*:} argument -- x1" "$T/err" ||
		{ cat "$T/err" >&2; die "message for ${o%%:*}"; }
done
log "reflinkfs io exchangerange: -n, -s/-d/-l, to EOF, -c, errors"

# 3. atomic file update with reflinkfs io: startupdate, writes to the
# staging clone, commitupdate (whole new contents and size); cancelupdate
# leaves the file alone; a change of the file meanwhile: EBUSY, unchanged
head -c 30000 /dev/urandom >"$T/u.src"
cp "$T/u.src" "$MNT/u"
"$RLFS" io -c "startupdate" -c "pwrite -S 0x41 4096 100" -c "truncate 20000" -c "cancelupdate" \
	"$MNT/u" >"$T/u.out" || die "startupdate/cancelupdate failed"
cmp "$T/u.src" "$MNT/u" || die "cancelupdate changed the file"
grep -q "^Cancelled updates to '$MNT/u'.$" "$T/u.out" || die "cancelupdate said: $(cat "$T/u.out")"
"$RLFS" io -c "startupdate" -c "pwrite -S 0x41 4096 100" -c "truncate 20000" -c "commitupdate" \
	"$MNT/u" >"$T/u.out" || die "startupdate/commitupdate failed"
{ head -c 4096 "$T/u.src"; printf 'A%.0s' $(seq 100); head -c 20000 "$T/u.src" | tail -c 15804; } >"$T/u.want"
cmp "$T/u.want" "$MNT/u" || die "commitupdate contents"
[ "$(stat -c %s "$MNT/u")" = 20000 ] || die "commitupdate size $(stat -c %s "$MNT/u")"
grep -q "^Committed updates to '$MNT/u'.$" "$T/u.out" || die "commitupdate said: $(cat "$T/u.out")"
# EBUSY: the commands come from a pipe; the file changes between them
cp "$MNT/u" "$T/u.before"
mkfifo "$T/cmds"
"$RLFS" io "$MNT/u" <"$T/cmds" >"$T/busy.out" 2>&1 &
iopid=$!
_BGPIDS+=("$iopid")
exec 7>"$T/cmds"
echo "startupdate" >&7
echo "pwrite -S 0x42 0 4096" >&7
sleep 0.5
printf 'changed' | dd of="$MNT/u" bs=1 seek=100 conv=notrunc status=none
cp "$MNT/u" "$T/u.changed"
echo "commitupdate" >&7
exec 7>&-
rc=0
wait "$iopid" || rc=$?
[ $rc = 1 ] || { cat "$T/busy.out" >&2; die "commitupdate after a change: exit $rc"; }
grep -q "committing update: Device or resource busy" "$T/busy.out" ||
	{ cat "$T/busy.out" >&2; die "commitupdate after a change: no EBUSY"; }
cmp "$T/u.changed" "$MNT/u" || die "the failed commit changed the file"
log "io startupdate/commitupdate/cancelupdate, EBUSY after a concurrent change"

rlfs_umount "$MNT"
rlfs_fsck "$IMG"
log "fsck -n clean"

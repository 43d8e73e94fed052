#!/bin/bash
# 28-privs: setuid/setgid, file capabilities and page-cache coherency on
# data changes, differential against kernel XFS.
#
# 1. tests/helpers/privs_ops.py: buffered and O_DIRECT writes, fallocate
#    (allocate, punch, zero), truncate, FICLONE (through the LD_PRELOAD
#    shim on reflinkfs) and copy_file_range on setuid/setgid files, by
#    the owner, a group member, an outsider (no CAP_FSETID), root and an
#    outsider with CAP_FSETID (keeps the bits, as root does), and
#    on files with security.capability by root and the owner: every
#    result and the mode and capability read right after (a stale kernel
#    attribute cache shows as a wrong mode) must equal XFS's, and
#    reflinkfs keeps the same modes across a remount.
# 2. Buffered reads racing asynchronous direct writes (generic/451
#    pattern, tests/aiodio.c through io_uring): once a direct write has
#    completed, a buffered read returns its bytes.
# fsck is clean at the end.
. "$(dirname "$0")/../lib.sh"
common_setup
command -v mkfs.xfs >/dev/null || die "mkfs.xfs missing (apt-get install xfsprogs)"
SHIM=${SHIM:-$(dirname "$RLFS")/libreflinkfs-preload.so}
AIODIO=${AIODIO:-$(dirname "$RLFS")/rlfs-aiodio}
[ -f "$SHIM" ] || die "shim not found: $SHIM"
[ -x "$AIODIO" ] || die "rlfs-aiodio not found: $AIODIO"
OPS=$SRCDIR/tests/helpers/privs_ops.py

# other users must reach both mounts (the cases run as nobody and others)
mounts_for_users 512M

$PY "$OPS" ops "$T/xfs" >"$T/xfs.out" 2>&1 || { tail -5 "$T/xfs.out" >&2; die "ops failed on XFS"; }
rc=0
LD_PRELOAD=$SHIM $PY "$OPS" ops "$MNT" >"$T/rlfs.out" 2>&1 || rc=$?
if ! diff -u "$T/xfs.out" "$T/rlfs.out" >"$T/diff"; then
	grep '^[-+][^-+]' "$T/diff" | head -40 >&2
	die "reflinkfs differs from XFS in $(grep -c '^[-+][^-+]' "$T/diff") cases"
fi
[ $rc = 0 ] || die "ops failed on reflinkfs (exit $rc)"
n=$(wc -l <"$T/rlfs.out")
[ "$n" -ge 150 ] || die "only $n cases ran"
# the cases must cover each rule at least once: dropped, kept, capability gone
grep -q 'by other -> ok mode=767 ' "$T/rlfs.out" || die "no case drops setgid for an outsider"
grep -q 'by group -> ok mode=2767 ' "$T/rlfs.out" || die "no case keeps setgid for a group member"
grep -q 'by root -> ok mode=6777 ' "$T/rlfs.out" || die "no case keeps setuid for root"
grep -q '^cfr 6777 by fsetid -> ok mode=6777 ' "$T/rlfs.out" ||
	die "copy_file_range by a user with CAP_FSETID did not keep setuid/setgid"
grep -q '^clone cap by root -> ok mode=666 nocap' "$T/rlfs.out" || die "clone kept a capability"
log "$n setid/capability cases identical to XFS"

$PY "$OPS" modes "$MNT" >"$T/modes.before"
rlfs_umount "$MNT"
rlfs_fsck "$IMG"
rlfs_mount "$IMG" "$MNT" -o allow_other
$PY "$OPS" modes "$MNT" >"$T/modes.after"
diff -u "$T/modes.before" "$T/modes.after" >&2 || die "modes changed across remount"
log "modes and capabilities unchanged across remount"

"$AIODIO" "$T/xfs/aio" 30 >/dev/null || die "aio direct-write coherency fails on XFS: test broken"
"$AIODIO" "$MNT/aio" 200 || die "a buffered read after a completed async direct write saw old data"

kumount "$T/xfs"
rlfs_umount "$MNT"
rlfs_fsck "$IMG"
log "ok"

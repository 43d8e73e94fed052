#!/bin/bash
# 22-clone-group: our versions of the fstests clone group on a real mount,
# differential against kernel XFS.  tests/helpers/clone_group.py runs the
# cases through FICLONE/FICLONERANGE/FS_IOC_FIEMAP (the LD_PRELOAD shim on
# reflinkfs), copy_file_range and plain I/O and prints one deterministic line
# per check; the outputs of XFS and reflinkfs must be identical and contain
# no "BAD" line:
#   generic/110 reflink then modify both copies; 142 many clones of one file
#   each rewritten; 150/151 free blocks (statfs) and st_blocks after reflink,
#   rewrite and delete; 181/182 length-0 conventions; 515/517/518 EOF
#   blocks; 358/359 partial-overlap sharing at various offsets (400 random
#   clones/writes against a model); clone onto self; FIEMAP SHARED bytes.
# Then every file survives unmount + fsck + remount and equals its XFS twin.
. "$(dirname "$0")/../lib.sh"
common_setup
command -v mkfs.xfs >/dev/null || die "mkfs.xfs missing (apt-get install xfsprogs)"
SHIM=${SHIM:-$(dirname "$RLFS")/libreflinkfs-preload.so}
[ -f "$SHIM" ] || die "shim not found: $SHIM"
CASES=$SRCDIR/tests/helpers/clone_group.py

kmount_xfs "$T/xfs.img" "$T/xfs" 512M
mkdir "$T/xfs/cg"
"$PY" "$CASES" "$T/xfs/cg" fiemap >"$T/xfs.out" 2>&1 || { cat "$T/xfs.out" >&2; die "cases crashed on XFS"; }
if grep -q '^BAD' "$T/xfs.out"; then
	grep '^BAD' "$T/xfs.out" >&2
	die "kernel XFS fails an expectation (the helper's model is wrong?)"
fi

rlfs_mkfs "$T/rlfs.img" -s 512M
rlfs_mount "$T/rlfs.img" "$T/rlfs"
mkdir "$T/rlfs/cg"
LD_PRELOAD=$SHIM "$PY" "$CASES" "$T/rlfs/cg" fiemap >"$T/rlfs.out" 2>&1 || {
	cat "$T/rlfs.out" >&2; die "cases crashed on reflinkfs"; }
cat "$T/rlfs.out"
grep '^BAD' "$T/rlfs.out" >&2 && die "reflinkfs fails an expectation"
diff -u "$T/xfs.out" "$T/rlfs.out" >&2 || die "results differ between kernel XFS (-) and reflinkfs (+)"
log "$(wc -l <"$T/rlfs.out") results identical to kernel XFS"

rlfs_umount "$T/rlfs"
rlfs_fsck "$T/rlfs.img"
rlfs_mount "$T/rlfs.img" "$T/rlfs"
(cd "$T/xfs/cg" && md5sum * | sort -k2) >"$T/xfs.md5"
(cd "$T/rlfs/cg" && md5sum * | sort -k2) >"$T/rlfs.md5"
diff -u "$T/xfs.md5" "$T/rlfs.md5" >&2 || die "file contents after remount differ from kernel XFS"
log "$(wc -l <"$T/rlfs.md5") files identical to XFS after unmount, fsck, remount"
# everything freed again at the end
rm -rf "$T/rlfs/cg"
rlfs_umount "$T/rlfs"
rlfs_fsck "$T/rlfs.img"
kumount "$T/xfs"
log OK

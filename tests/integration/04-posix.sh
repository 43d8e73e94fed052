#!/bin/bash
# POSIX semantics, differential: the same operation script
# (tests/helpers/posix_ops.py) runs on a reflinkfs mount and on a kernel XFS
# loop mount (reflink=1, rmapbt=1); every "strict" line (results, errno,
# stat fields, SEEK_DATA/HOLE on written data and punched holes, listxattr,
# contents) must be identical.  Then reflinkfs-only checks: 3000-byte
# symlink, EFBIG past the largest file, EXDEV across two mounts,
# setfattr/getfattr tools, and the whole tree identical after remount.
. "$(dirname "$0")/../lib.sh"
common_setup
OPS=$SRCDIR/tests/helpers/posix_ops.py

img=$T/posix.img
mnt=$T/mnt
rlfs_mkfs "$img" -s 1G
rlfs_mount "$img" "$mnt"
kmount_xfs "$T/xfs.img" "$T/xfs" 1G

$PY "$OPS" ops "$T/xfs" >"$T/xfs.out" 2>&1 || { tail -20 "$T/xfs.out" >&2; die "ops script failed on XFS"; }
rc=0
$PY "$OPS" ops "$mnt" >"$T/rlfs.out" 2>&1 || rc=$?
grep '^strict ' "$T/xfs.out" >"$T/xfs.strict"
grep '^strict ' "$T/rlfs.out" >"$T/rlfs.strict" || true
if ! diff -u "$T/xfs.strict" "$T/rlfs.strict" >"$T/strict.diff"; then
	echo "--- differences XFS (-) vs reflinkfs (+):" >&2
	grep '^[-+][^-+]' "$T/strict.diff" | sed -n '1,60p' >&2
	[ $rc = 0 ] || tail -5 "$T/rlfs.out" >&2
	die "reflinkfs differs from XFS in $(grep -c '^[-+][^-+]' "$T/strict.diff") strict lines"
fi
[ $rc = 0 ] || { tail -10 "$T/rlfs.out" >&2; die "ops script failed on reflinkfs (exit $rc)"; }
log "$(wc -l <"$T/rlfs.strict") strict observations identical to XFS"
paste -d'\n' <(grep '^soft ' "$T/xfs.out" | sed 's/^soft /  xfs:  /') \
	<(grep '^soft ' "$T/rlfs.out" | sed 's/^soft /  rlfs: /')

# 3000-byte symlink works on reflinkfs (XFS stops at 1024)
grep -q '^soft symlink 3000 -> ok' "$T/rlfs.out" || die "3000-byte symlink failed on reflinkfs"
grep -q '^soft readlink s3000 ok=True' "$T/rlfs.out" || die "3000-byte symlink reads back wrong"

# EFBIG: a size past the largest file is refused with EFBIG (never EIO or
# a silent wrap); sizes it accepts really work.
$PY - "$mnt/t" <<'PYEOF' || die "EFBIG checks failed"
import os, sys, errno
d = sys.argv[1]
fd = os.open(os.path.join(d, "big"), os.O_RDWR | os.O_CREAT)
limit = None
for bits in range(63, 30, -1):
    size = (1 << bits) - 1
    try:
        os.ftruncate(fd, size)
        limit = size
        break
    except OSError as e:
        if e.errno != errno.EFBIG:
            print("ftruncate(2^%d-1) failed with %s, expected EFBIG" % (bits, errno.errorcode[e.errno]))
            sys.exit(1)
print("largest accepted truncate: 2^%d-1" % (limit.bit_length()))
if os.fstat(fd).st_size != limit:
    print("size mismatch after ftruncate"); sys.exit(1)
if limit < (1 << 40) - 1:
    print("largest file only %d bytes" % limit); sys.exit(1)
# write the last byte below the limit, read it back
os.pwrite(fd, b"Z", limit - 1)
if os.pread(fd, 1, limit - 1) != b"Z" or os.pread(fd, 10, 12345) != b"\0" * 10:
    print("readback near the end of the largest file wrong"); sys.exit(1)
if limit < (1 << 63) - 1:
    for fn, what in ((lambda: os.ftruncate(fd, limit + 1), "ftruncate(limit+1)"),
                     (lambda: os.pwrite(fd, b"x", limit), "pwrite at limit")):
        try:
            fn()
            print("%s succeeded past the largest file" % what); sys.exit(1)
        except OSError as e:
            if e.errno != errno.EFBIG:
                print("%s: %s, expected EFBIG" % (what, errno.errorcode[e.errno])); sys.exit(1)
    print("EFBIG past the limit ok")
os.ftruncate(fd, 0)
os.close(fd)
os.unlink(os.path.join(d, "big"))
PYEOF

# setfattr/getfattr tools
echo data >"$mnt/xa"
setfattr -n user.tool -v "hello tool" "$mnt/xa"
head -c 30000 /dev/urandom | base64 -w0 >"$T/bigval"
setfattr -n user.bigval -v "$(cat "$T/bigval")" "$mnt/xa"
getfattr -d --absolute-names "$mnt/xa" >"$T/getfattr.out"
grep -q 'user.tool="hello tool"' "$T/getfattr.out" || die "getfattr -d does not show user.tool"
[ "$(getfattr --only-values -n user.bigval "$mnt/xa")" = "$(cat "$T/bigval")" ] ||
	die "30 KB xattr value differs"
setfattr -x user.tool "$mnt/xa"
rc=0; getfattr -n user.tool "$mnt/xa" >/dev/null 2>&1 || rc=$?
[ $rc != 0 ] || die "removed xattr still readable"

# EXDEV across two reflinkfs mounts (and to another filesystem)
rlfs_mkfs "$T/second.img" -s 256M
rlfs_mount "$T/second.img" "$T/mnt2"
echo cross >"$mnt/cross"
mkdir "$mnt/crossdir"
$PY - "$mnt" "$T/mnt2" "$T" <<'PYEOF' || die "EXDEV checks failed"
import os, sys, errno
a, b, other = sys.argv[1:4]
for fn, what in ((lambda: os.rename(a + "/cross", b + "/cross"), "rename file across mounts"),
                 (lambda: os.rename(a + "/crossdir", b + "/crossdir"), "rename dir across mounts"),
                 (lambda: os.link(a + "/cross", b + "/cross"), "link across mounts"),
                 (lambda: os.rename(a + "/cross", other + "/cross"), "rename to another fs")):
    try:
        fn()
        print(what + " succeeded"); sys.exit(1)
    except OSError as e:
        if e.errno != errno.EXDEV:
            print("%s: %s, expected EXDEV" % (what, errno.errorcode[e.errno])); sys.exit(1)
print("EXDEV ok")
PYEOF
mv "$mnt/cross" "$T/mnt2/cross" || die "mv across mounts (copy+unlink) failed"
[ "$(cat "$T/mnt2/cross")" = cross ] && [ ! -e "$mnt/cross" ] || die "mv across mounts wrong"
rlfs_umount "$T/mnt2"
rlfs_fsck "$T/second.img"

# the whole tree (inode numbers, modes, xattrs, contents, mtimes) survives remount
$PY "$OPS" snapshot "$mnt" >"$T/snap1" || die "snapshot failed"
rlfs_umount "$mnt"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt"
$PY "$OPS" snapshot "$mnt" >"$T/snap2" || die "snapshot after remount failed"
diff -u "$T/snap1" "$T/snap2" >"$T/snap.diff" || { head -30 "$T/snap.diff" >&2; die "tree changed across remount"; }
log "tree of $(wc -l <"$T/snap1") entries identical after remount"

# delete everything, fsck
rm -rf "${mnt:?}"/*
rlfs_umount "$mnt"
rlfs_fsck "$img"
kumount "$T/xfs"
log OK

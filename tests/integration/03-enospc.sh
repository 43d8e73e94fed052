#!/bin/bash
# Fill to ENOSPC (big files, then small files), fsck clean, delete
# everything, df shows all space back, fsck clean.
. "$(dirname "$0")/../lib.sh"
common_setup

img=$T/full.img
mnt=$T/mnt
rlfs_mkfs "$img" -s 96M
rlfs_mount "$img" "$mnt"
free0=$(df_free_blocks "$mnt")
avail0=$(df_avail_kb "$mnt")
ifree0=$(df_free_inodes "$mnt")
log "after mkfs: free blocks $free0, avail ${avail0} KiB, free inodes $ifree0"
[ "$free0" -gt 0 ] || die "statfs reports no free blocks on a fresh fs"

# some small files and directories first (inode chunks, directory blocks)
$PY - "$mnt/pre" <<'PYEOF' || die "small-file pre-fill failed"
import os, sys
d = sys.argv[1]
os.mkdir(d)
for n in range(3000):
    if n % 300 == 0:
        os.mkdir(os.path.join(d, "d%d" % (n // 300)))
    with open(os.path.join(d, "d%d" % (n // 300), "f%d" % n), "wb") as f:
        f.write(os.urandom(n % 9000 + 1))
PYEOF
rm -rf "$mnt/pre/d1" "$mnt/pre/d5"   # leave holes in free space
# big files until the first ENOSPC
i=0
while :; do
	i=$((i + 1))
	rc=0
	dd if=/dev/urandom of="$mnt/big$i" bs=1M count=40 conv=fsync 2>"$T/dd.err" || rc=$?
	if [ $rc != 0 ]; then
		grep -q "No space left" "$T/dd.err" || { cat "$T/dd.err" >&2; die "dd failed without ENOSPC"; }
		break
	fi
	[ $i -lt 20 ] || die "wrote 800 MiB into a 96 MiB filesystem without ENOSPC"
done
log "ENOSPC after $i big files; df: $(df -P -k "$mnt" | tail -1)"
# the files, the partial one too, read back
cat "$mnt"/big* >/dev/null || die "cannot read back files after ENOSPC"

# then small files and directories until ENOSPC; every failure must be
# ENOSPC (never EIO/EUCLEAN), and a file whose write failed keeps a sane size.
$PY - "$mnt/small" <<'PYEOF' || die "small-file fill failed"
import os, sys, errno
d = sys.argv[1]
try:
    os.mkdir(d)
except OSError as e:
    # the big files left less than a directory needs (a new inode chunk
    # and a block): the fs is already full, which is what we fill for
    if e.errno != errno.ENOSPC:
        raise
    print("small files: none, the fs is already full (mkdir: %s)" % e)
    sys.exit(0)
n = 0
first_err = None
try:
    while n < 200000:
        sub = os.path.join(d, "d%d" % (n // 500))
        if n % 500 == 0:
            os.mkdir(sub)
        p = os.path.join(sub, "f%d" % n)
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            os.write(fd, os.urandom(n % 5000 + 1))
        finally:
            os.close(fd)
        n += 1
except OSError as e:
    first_err = e
    # the file whose create/write failed is absent, or no longer than asked
    if os.path.exists(p) and os.stat(p).st_size > n % 5000 + 1:
        print("%s: size %d after a failed write of %d bytes" % (p, os.stat(p).st_size, n % 5000 + 1))
        sys.exit(1)
if first_err is None:
    print("no ENOSPC after %d files" % n); sys.exit(1)
if first_err.errno != errno.ENOSPC:
    print("small-file fill failed with %r, expected ENOSPC" % first_err); sys.exit(1)
# more creates keep failing with ENOSPC or succeed (no other error)
for k in range(50):
    try:
        with open(os.path.join(d, "late%d" % k), "wb") as f:
            f.write(b"x" * 100000)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            print("late create/write failed with %r" % e); sys.exit(1)
print("small files: %d created before ENOSPC (%s)" % (n, first_err))
PYEOF
# writes into existing files also fail cleanly with ENOSPC (or succeed only
# if the space was there)
avail=$(df_avail_kb "$mnt")
rc=0; dd if=/dev/zero of="$mnt/big1" bs=1M count=4 oflag=append conv=notrunc,fsync 2>"$T/dd.err" || rc=$?
if [ $rc != 0 ]; then
	grep -q "No space left" "$T/dd.err" || { cat "$T/dd.err" >&2; die "append on a full fs failed without ENOSPC"; }
else
	[ "$avail" -ge 4096 ] || die "a 4 MiB append + fsync succeeded with $avail KiB available"
fi
sync

# metadata operations on a full fs: listing and renaming must work (a
# rename may need a directory block; like XFS it may use the reserve pool)
ls -la "$mnt" >/dev/null || die "ls failed on a full fs"
mv "$mnt/big1" "$mnt/big1.renamed" || die "rename failed on a full fs"

rlfs_umount "$mnt"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt"
# contents still readable after remount
cat "$mnt"/big* >/dev/null || die "cannot read back files after remount"

rm -rf "${mnt:?}"/*
sync
free1=$(df_free_blocks "$mnt")
avail1=$(df_avail_kb "$mnt")
ifree1=$(df_free_inodes "$mnt")
log "after delete: free blocks $free1 (was $free0), avail $avail1 KiB (was $avail0), free inodes $ifree1 (was $ifree0)"
# All space comes back: data blocks, inode chunks (freed when empty) and
# btree blocks (trees shrink back), exactly as after mkfs.
[ "$free1" = "$free0" ] || die "space not returned after delete: $((free0 - free1)) blocks missing (free $free1, after mkfs $free0)"
[ "$avail1" = "$avail0" ] || die "df avail $avail1 KiB after delete, $avail0 KiB after mkfs"
[ "$ifree1" = "$ifree0" ] || die "free inodes $ifree1 after delete, $ifree0 after mkfs"
rlfs_umount "$mnt"
rlfs_fsck "$img"
# and after remount the number is the same
rlfs_mount "$img" "$mnt"
free2=$(df_free_blocks "$mnt")
[ "$free2" = "$free1" ] || die "free blocks changed across remount: $free1 -> $free2"
rlfs_umount "$mnt"
rlfs_fsck "$img"

# second geometry: 1 KiB blocks, 4 AGs (deeper free-space trees, AG
# fallback when one AG is full); mixed file sizes until ENOSPC, delete all
img2=$T/full1k.img
rlfs_mkfs "$img2" -s 48M -b 1024 -a 4
rlfs_mount "$img2" "$mnt"
free0=$(df_free_blocks "$mnt"); ifree0=$(df_free_inodes "$mnt")
$PY - "$mnt" <<'PYEOF' || die "1k fill failed"
import os, sys, errno, random
d = sys.argv[1]
rng = random.Random(7)
n = 0
made = []
try:
    while True:
        sub = os.path.join(d, "d%d" % (n // 200))
        if n % 200 == 0:
            os.mkdir(sub)
        size = rng.choice([100, 1500, 7000, 40000, 300000])
        p = os.path.join(sub, "f%d" % n)
        made.append(p)
        with open(p, "wb") as f:
            f.write(os.urandom(size))
        n += 1
        if n % 3 == 0:   # fragment free space
            os.unlink(made.pop(rng.randrange(len(made) - 1)))
except OSError as e:
    if e.errno != errno.ENOSPC:
        print("1k fill failed with %r" % e); sys.exit(1)
print("1k geometry: %d files written before ENOSPC" % n)
PYEOF
rlfs_umount "$mnt"
rlfs_fsck "$img2"
rlfs_mount "$img2" "$mnt"
rm -rf "${mnt:?}"/*
free1=$(df_free_blocks "$mnt"); ifree1=$(df_free_inodes "$mnt")
[ "$free1" = "$free0" ] || die "1k geometry: $((free0 - free1)) blocks not returned after delete"
[ "$ifree1" = "$ifree0" ] || die "1k geometry: free inodes $ifree1 after delete, $ifree0 after mkfs"
rlfs_umount "$mnt"
rlfs_fsck "$img2"

# A writer that never syncs must see ENOSPC from write(2) itself, as on a
# local filesystem.  Under the writeback cache write(2) only fills the
# kernel's page cache and the failing WRITE comes later from writeback;
# without the daemon's refusal (fuse/daemon.c, full_refuses) these
# writers never stop.
img3=$T/endless.img
rlfs_mkfs "$img3" -s 32M
rlfs_mount "$img3" "$mnt"
for w in dd cat; do
	rc=0
	# room for cat's file: dd left the filesystem so full that even the
	# create could fail with ENOSPC (no inode chunk), which is not what
	# is tested here
	[ $w = dd ] || truncate -s 8M "$mnt/endless-dd"
	case $w in
	dd) timeout 120 dd if=/dev/zero of="$mnt/endless-$w" bs=1M 2>"$T/w.err" || rc=$? ;;
	cat) timeout 120 sh -c 'cat /dev/zero > "$1"' sh "$mnt/endless-$w" 2>"$T/w.err" || rc=$? ;;
	esac
	[ $rc != 124 ] || die "$w to a full filesystem did not stop within 120 s (no ENOSPC from write)"
	[ $rc != 0 ] || die "$w of /dev/zero ended without an error"
	grep -q "No space left" "$T/w.err" || { cat "$T/w.err" >&2; die "$w failed without ENOSPC"; }
	stat "$mnt/endless-$w" >/dev/null || die "stat of the file that hit ENOSPC failed"
	size=$(stat -c %s "$mnt/endless-$w")
	[ "$size" -lt $((256 << 20)) ] || die "$w grew its file to $size bytes on a 32 MiB filesystem before ENOSPC"
	log "$w stopped with ENOSPC at $size bytes"
done
# space is back (the first file cut to 8 MiB): it takes writes again (its
# refusal is lifted), and a new file can be written and synced
rm -f "$mnt/endless-cat"
truncate -s 8M "$mnt/endless-dd"
size0=$(stat -c %s "$mnt/endless-dd")
timeout 120 dd if=/dev/zero of="$mnt/endless-dd" bs=1M count=4 oflag=append conv=notrunc 2>"$T/w.err" ||
	{ cat "$T/w.err" >&2; die "append to the file that hit ENOSPC failed after space was freed"; }
[ "$(stat -c %s "$mnt/endless-dd")" = $((size0 + (4 << 20))) ] || die "append after freeing space did not grow the file by 4 MiB"
timeout 120 dd if=/dev/zero of="$mnt/again" bs=1M count=4 conv=fsync 2>"$T/w.err" ||
	{ cat "$T/w.err" >&2; die "write+fsync of a new file failed after space was freed"; }
rlfs_umount "$mnt"
rlfs_fsck "$img3"
log OK

#!/bin/bash
# File handles (name_to_handle_at / open_by_handle_at, what NFS export
# and handle-keeping tools use), compared with kernel XFS:
#  - handles of a file, a hard link, directories and the root open what
#    they named, while cached and after unmount + mount (the kernel then
#    looks the inode up by number: "." in the inode, ".." to reconnect a
#    directory);
#  - a deleted file's handle gives ESTALE;
#  - a handle whose inode number was reused by a new file gives ESTALE
#    (generations), and the new file's handle opens the new file;
#  - the flush before SEEK_DATA opens the file by handle with its real
#    generation: buffered data not yet written back is found;
#  - NFS export of the mount, if this kernel has nfsd.
. "$(dirname "$0")/../lib.sh"
common_setup
FH="$PY $SRCDIR/tests/helpers/fhandle.py"

setup_tree() { # DIR
	mkdir -p "$1/d/sub"
	echo ffff >"$1/f"
	echo gggg >"$1/d/g"
	echo kkkk >"$1/d/sub/k"
	ln "$1/f" "$1/d/hard"
}

encode_all() { # DIR -> handles in $T/h.NAME
	local p
	for p in f d d/sub d/g d/sub/k d/hard .; do
		$FH encode "$1/$p" >"$T/h.${p//\//_}" || die "name_to_handle_at $1/$p: $(cat "$T/h.${p//\//_}")"
	done
}

read_all() { # MNT: what each handle opens, one line each
	local p
	for p in f d d/sub d/g d/sub/k d/hard .; do
		printf '%s=%s\n' "$p" "$($FH read "$1" "$(cat "$T/h.${p//\//_}")" | tr '\n' ' ')"
	done
}

expected="f=ffff 
d=DIR g hard sub 
d/sub=DIR k 
d/g=gggg 
d/sub/k=kkkk 
d/hard=ffff 
.=DIR d f "

# --- XFS: the reference ---------------------------------------------------
kmount_xfs "$T/xfs.img" "$T/x" 512M
setup_tree "$T/x"
encode_all "$T/x"
[ "$(read_all "$T/x")" = "$expected" ] || die "XFS, cached: $(read_all "$T/x")"
umount "$T/x" && mount -o loop "$T/xfs.img" "$T/x" || die "XFS remount"
[ "$(read_all "$T/x")" = "$expected" ] || die "XFS, after remount: $(read_all "$T/x")"
rm "$T/x/d/g"
[ "$($FH read "$T/x" "$(cat "$T/h.d_g")")" = "ERR ESTALE" ] || die "XFS: deleted file's handle"
kumount "$T/x"
log "XFS: handles open the same things cached and after remount; deleted -> ESTALE"

# --- reflinkfs ------------------------------------------------------------
img=$T/img
rlfs_mkfs "$img" -s 512M
rlfs_mount "$img" "$T/m"
setup_tree "$T/m"
encode_all "$T/m"
got=$(read_all "$T/m")
[ "$got" = "$expected" ] || die "cached: $got"
rlfs_umount "$T/m"
rlfs_fsck "$img"
rlfs_mount "$img" "$T/m"
got=$(read_all "$T/m")
[ "$got" = "$expected" ] || die "after unmount + mount (not cached): $got"
log "handles open what they named, cached and after remount"

# deleted file
gino=$(stat -c %i "$T/m/d/g")
rm "$T/m/d/g"
got=$($FH read "$T/m" "$(cat "$T/h.d_g")" || true)
[ "$got" = "ERR ESTALE" ] || die "handle of a deleted file: $got"

# a new file that reuses the deleted file's inode number (the inode is
# freed once the kernel forgets it, and its number is reused only after
# the free is durable: busy inodes, lib/busy.h; so fsync the directory
# (which flushes all metadata; syncfs does not reach a FUSE daemon), then
# create, until a file gets it)
reused=""
for i in $(seq 1 200); do
	sync "$T/m"
	echo "new$i" >"$T/m/n$i"
	if [ "$(stat -c %i "$T/m/n$i")" = "$gino" ]; then
		reused=n$i
		break
	fi
done
[ -n "$reused" ] || die "no new file reused inode $gino (test cannot check generations)"
got=$($FH read "$T/m" "$(cat "$T/h.d_g")" || true)
[ "$got" = "ERR ESTALE" ] || die "old handle of inode $gino (now $reused) opens: $got"
$FH encode "$T/m/$reused" >"$T/h.new"
[ "$($FH read "$T/m" "$(cat "$T/h.new")")" = "new${reused#n}" ] || die "new file's handle"
rlfs_umount "$T/m"
rlfs_mount "$img" "$T/m"
got=$($FH read "$T/m" "$(cat "$T/h.d_g")" || true)
[ "$got" = "ERR ESTALE" ] || die "after remount, old handle of inode $gino opens: $got"
[ "$($FH read "$T/m" "$(cat "$T/h.new")")" = "new${reused#n}" ] || die "new file's handle after remount"
log "deleted file -> ESTALE; reused inode $gino ($reused) -> ESTALE for the old handle"

# The daemon's flush before SEEK_DATA opens the file by handle; with a
# wrong generation the kernel says ESTALE and dirty data stays unseen.
out=$("$PY" - "$T/m/seek" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"x" * 4096, 1 << 20)     # only in the page cache
try:
    print(os.lseek(fd, 0, os.SEEK_DATA))
except OSError as e:
    print("error: " + os.strerror(e.errno))
os.close(fd)
EOF
)
[ "$out" = $((1 << 20)) ] || die "SEEK_DATA after a buffered write: $out, expected $((1 << 20))"
log "flush by handle before SEEK_DATA finds unwritten-back data"
rlfs_umount "$T/m"
rlfs_fsck "$img"

# --- NFS export -----------------------------------------------------------
if ! grep -qw nfsd /proc/filesystems || ! command -v exportfs >/dev/null ||
	! command -v mount.nfs >/dev/null; then
	log "SKIP NFS export: this kernel has no nfsd (or nfs-kernel-server is not installed)"
else
	rlfs_mount "$img" "$T/m"
	exportfs -o rw,no_root_squash,fsid=4242,no_subtree_check "127.0.0.1:$T/m" ||
		die "exportfs failed"
	mkdir -p "$T/nfs"
	_MOUNTS+=("$T/nfs")
	_MOUNT_IMG+=("")
	rc=0
	mount -t nfs -o vers=4.2 "127.0.0.1:$T/m" "$T/nfs" || rc=$?
	if [ $rc = 0 ]; then
		[ "$(cat "$T/nfs/f")" = ffff ] || die "NFS read of f"
		echo overnfs >"$T/nfs/d/nfsfile"
		umount "$T/nfs"
		[ "$(cat "$T/m/d/nfsfile")" = overnfs ] || die "NFS write not seen locally"
	fi
	exportfs -u "127.0.0.1:$T/m"
	[ $rc = 0 ] || die "NFS mount of the export failed"
	rlfs_umount "$T/m"
	rlfs_fsck "$img"
	log "NFS export: read and write through nfsd ok"
fi

#!/bin/bash
# Remount read-only and back, as on any filesystem:
#  - `reflinkfs mount -o remount,ro MNT`: writes then fail with EROFS (as on
#    XFS), reads work, atime stays put, and the image is flushed and clean
#    WHILE mounted read-only (a copy of it checks clean and holds the same
#    tree); `-o remount,rw`: writes work again; unmount, fsck clean;
#  - remount,ro with a file open for writing fails with EBUSY (as on XFS)
#    and the mount stays writable;
#  - a mount made read-only (-o ro) can be remounted read-write;
#  - a remount by mount(2) alone (mount -i) is followed by the daemon;
#  - mount(8): `mount -t reflinkfs`, `mount -o remount,ro|rw` (mount(8)
#    runs mount.fuse.reflinkfs: the kernel calls the type fuse.reflinkfs),
#    an fstab entry with its options, remount of it.
. "$(dirname "$0")/../lib.sh"
. "$SRCDIR/tests/helpers/mount8.sh"
common_setup
mount8_enter "$@"

super_opts() { awk -v m="$1" '$5 == m { print $NF }' /proc/self/mountinfo | tail -1 | cut -d, -f1; }
mnt_opts() { awk -v m="$1" '$5 == m { print $6 }' /proc/self/mountinfo | tail -1; }

# expect_erofs CMD...: CMD fails and says "Read-only file system"
expect_erofs() {
	local out rc=0
	out=$("$@" 2>&1) || rc=$?
	[ $rc != 0 ] || die "'$*' succeeded on a read-only mount"
	grep -q "Read-only file system" <<<"$out" || die "'$*': expected EROFS, got: $out"
}

writes_refused() { # DIR
	expect_erofs sh -c "echo x >'$1/ro-new'"
	expect_erofs sh -c "echo x >>'$1/f'"
	expect_erofs mkdir "$1/ro-newdir"
	expect_erofs rm "$1/f"
	expect_erofs touch "$1/f"
	expect_erofs chmod 600 "$1/f"
}

populate() { # DIR: buffered writes, nothing synced
	mkdir -p "$1/d/e"
	echo first >"$1/f"
	dd if=/dev/urandom of="$1/big" bs=1M count=8 status=none
	for i in $(seq 1 50); do echo "$i" >"$1/d/e/n$i"; done
	ln -s f "$1/link"
}

# --- kernel XFS: the behaviour to match -------------------------------
kmount_xfs "$T/xfs.img" "$T/x" 512M
populate "$T/x"
mount -o remount,ro "$T/x" || die "XFS remount,ro failed"
writes_refused "$T/x"
mount -o remount,rw "$T/x" || die "XFS remount,rw failed"
exec 3>>"$T/x/f"
rc=0; mount -o remount,ro "$T/x" 2>"$T/err" || rc=$?
exec 3>&-
[ $rc != 0 ] || die "XFS: remount,ro with a file open for writing succeeded"
kumount "$T/x"
log "XFS: EROFS after remount,ro; remount,ro refused while a file is open for writing"

# --- reflinkfs mount -o remount ----------------------------------------
img=$T/img
rlfs_mkfs "$img" -s 512M
rlfs_mount "$img" "$T/m"
populate "$T/m"
before=$(tree_fingerprint "$T/m")
atime=$(stat -c %x "$T/m/f")    # older than its mtime: relatime would update
"$RLFS" mount -o remount,ro "$T/m" || die "reflinkfs mount -o remount,ro failed"
[ "$(super_opts "$T/m")" = ro ] || die "superblock not read-only after remount,ro: $(super_opts "$T/m")"
writes_refused "$T/m"
[ "$(tree_fingerprint "$T/m")" = "$before" ] || die "the tree changed across remount,ro"
[ "$(stat -c %x "$T/m/f")" = "$atime" ] || die "atime changed on a read-only mount"
# the image is flushed and clean while mounted read-only
cp --sparse=always "$img" "$T/copy.img"
run_to "$CMD_TIMEOUT" "$RLFS" fsck -n "$T/copy.img" >"$T/fsck.out" 2>&1 ||
	{ cat "$T/fsck.out" >&2; die "the image is not clean while mounted read-only"; }
rlfs_mount "$T/copy.img" "$T/c" -o ro
[ "$(tree_fingerprint "$T/c")" = "$before" ] || die "the image copy holds a different tree"
cmp "$T/m/big" "$T/c/big" || die "big file differs in the copy"
rlfs_umount "$T/c"
log "remount,ro: EROFS, same tree, atime kept, image clean while mounted"

"$RLFS" mount -o remount,rw "$T/m" || die "reflinkfs mount -o remount,rw failed"
[ "$(super_opts "$T/m")" = rw ] || die "superblock not read-write after remount,rw"
echo second >>"$T/m/f"
echo new >"$T/m/new"
mkdir "$T/m/newdir"
rm "$T/m/d/e/n1"
after=$(tree_fingerprint "$T/m")
# remount,ro with a file open for writing: EBUSY, still writable
exec 3>>"$T/m/f"
rc=0; "$RLFS" mount -o remount,ro "$T/m" 2>"$T/err" || rc=$?
exec 3>&-
[ $rc != 0 ] || die "remount,ro with a file open for writing succeeded"
grep -q -i busy "$T/err" || die "remount,ro refusal does not say busy: $(cat "$T/err")"
[ "$(super_opts "$T/m")" = rw ] || die "the mount went read-only although remount failed"
echo third >>"$T/m/f" || die "not writable after a refused remount,ro"
after=$(tree_fingerprint "$T/m")
rlfs_umount "$T/m"
rlfs_fsck "$img"
rlfs_mount "$img" "$T/m"
[ "$(tree_fingerprint "$T/m")" = "$after" ] || die "the tree changed across unmount"
[ "$(cat "$T/m/f")" = "$(printf 'first\nsecond\nthird')" ] || die "f: $(cat "$T/m/f")"
rlfs_umount "$T/m"
log "remount,rw: writes work; refused remount,ro keeps the mount writable; fsck clean"

# mounted read-only from the start, then read-write
rlfs_mount "$img" "$T/m" -o ro
writes_refused "$T/m"
"$RLFS" mount -o remount,rw "$T/m" || die "remount,rw of a read-only mount failed"
echo fourth >>"$T/m/f"
rm -r "$T/m/newdir"
"$RLFS" mount -o remount,ro "$T/m" || die "second remount,ro failed"
cp --sparse=always "$img" "$T/copy.img"
run_to "$CMD_TIMEOUT" "$RLFS" fsck -n "$T/copy.img" >"$T/fsck.out" 2>&1 ||
	{ cat "$T/fsck.out" >&2; die "not clean after ro -> rw -> ro"; }
rlfs_umount "$T/m"
rlfs_fsck "$img"
log "-o ro, then remount,rw and back: ok"

# remount by mount(2) alone (mount -i: no helper): the daemon notices it in
# mountinfo and follows (superblock state byte 76 of the image: 0 clean)
sb_state() { od -An -tu4 -j76 -N4 "$1" | tr -d ' '; }
wait_state() { # IMG STATE
	local i
	for ((i = 0; i < 300; i++)); do
		[ "$(sb_state "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	die "the daemon did not follow a mount(2) remount (state $(sb_state "$1"), want $2)"
}
rlfs_mount "$img" "$T/m"
echo five >>"$T/m/f"
mount -i -o remount,ro "$T/m" || die "mount -i -o remount,ro failed"
wait_state "$img" 0
writes_refused "$T/m"
cp --sparse=always "$img" "$T/copy.img"
run_to "$CMD_TIMEOUT" "$RLFS" fsck -n "$T/copy.img" >"$T/fsck.out" 2>&1 ||
	{ cat "$T/fsck.out" >&2; die "mount -i remount,ro: image not clean"; }
mount -i -o remount,rw "$T/m" || die "mount -i -o remount,rw failed"
wait_state "$img" 1
echo six >>"$T/m/f"
rlfs_umount "$T/m"
rlfs_fsck "$img"
log "remount by mount(2) alone: the daemon follows (flushed and clean, then writable)"

# --- mount(8) and fstab --------------------------------------------------
M8_IMG=$img
m8_mount -t reflinkfs "$img" "$T/m"
echo m8 >"$T/m/m8"
mount -o remount,ro "$T/m" || die "mount -o remount,ro failed"
[ "$(super_opts "$T/m")" = ro ] || die "mount(8) remount,ro: not read-only"
writes_refused "$T/m"
cp --sparse=always "$img" "$T/copy.img"
run_to "$CMD_TIMEOUT" "$RLFS" fsck -n "$T/copy.img" >"$T/fsck.out" 2>&1 ||
	{ cat "$T/fsck.out" >&2; die "mount(8) remount,ro: image not clean while mounted"; }
mount -o remount,rw "$T/m" || die "mount -o remount,rw failed"
echo again >>"$T/m/m8"
rlfs_umount "$T/m"
rlfs_fsck "$img"

# fstab: the same entry options and remounts on XFS and reflinkfs give
# the same mount flags after each step (mount(8) re-applies the fstab
# options at every remount), and the atime policy follows them
fstab_steps() { # DIR: the per-mount flags after each step, one line each
	m8_mount "$1"
	mnt_opts "$1"
	mount -o remount,strictatime "$1" || die "mount -o remount,strictatime $1 failed"
	mnt_opts "$1"
	mount -o remount,ro "$1" || die "mount -o remount,ro $1 failed"
	mnt_opts "$1"
	mount -o remount,rw,relatime "$1" || die "mount -o remount,rw,relatime $1 failed"
	mnt_opts "$1"
}
kmount_xfs "$T/xfs.img" "$T/x" 512M
kumount "$T/x"
printf '%s %s xfs loop,noatime,nodiratime,nodev 0 0\n' "$T/xfs.img" "$T/x" >"$T/fstab"
export LIBMOUNT_FSTAB=$T/fstab
M8_IMG=""
fstab_steps "$T/x" >"$T/want"   # (not in $(...): the mounts must register here)
kumount "$T/x"
M8_IMG=$img
want=$(cat "$T/want")
printf '%s %s reflinkfs noatime,nodiratime,nodev 0 0\n' "$img" "$T/m" >"$T/fstab"
fstab_steps "$T/m" >"$T/got"
got=$(cat "$T/got")
[ "$got" = "$want" ] || die "fstab + remounts: reflinkfs
$got
XFS
$want"
log "fstab + remount strictatime, ro, rw,relatime: same flags as XFS ($(tr '\n' ' ' <<<"$got"))"
rlfs_umount "$T/m"
m8_mount "$T/m"         # noatime from fstab
touch -a -d @$(($(date +%s) - 7200)) "$T/m/m8"
a=$(stat -c %x "$T/m/m8")
cat "$T/m/m8" >/dev/null
[ "$(stat -c %x "$T/m/m8")" = "$a" ] || die "fstab noatime: a read changed atime"
mount -o remount,strictatime "$T/m" || die "mount -o remount,strictatime failed"
cat "$T/m/m8" >/dev/null
[ "$(stat -c %x "$T/m/m8")" != "$a" ] || die "remount,strictatime: a read left atime alone"
mount -o remount,ro "$T/m" || die "remount,ro of the fstab mount failed"
writes_refused "$T/m"
mount -o remount,rw "$T/m" || die "remount,rw of the fstab mount failed"
[ "$(cat "$T/m/m8")" = "$(printf 'm8\nagain')" ] || die "m8: $(cat "$T/m/m8")"
rlfs_umount "$T/m"
unset LIBMOUNT_FSTAB
rlfs_fsck "$img"
log "mount(8): mount -t reflinkfs, remount ro/rw, fstab options kept: ok"

#!/bin/bash
# Device files and setuid bits (mount options dev, suid):
#  - `reflinkfs mount` defaults to nodev,nosuid (an image may come from
#    anyone): a null device on it cannot be opened (EACCES, as on any nodev
#    mount), a setuid-root program runs with the caller's uid;
#  - root with -o dev,suid: the device works, setuid takes effect, as on
#    kernel XFS mounted by root;
#  - mount(8) (mount -t reflinkfs) follows mount(8) and every filesystem:
#    dev,suid for root unless nodev/nosuid are given (mount(8) never
#    passes dev or suid to a helper);
#  - a user cannot get dev or suid: the mount is refused with a message.
. "$(dirname "$0")/../lib.sh"
. "$SRCDIR/tests/helpers/mount8.sh"
common_setup
mount8_enter "$@"

NOBODY=65534
mnt_opts() { awk -v m="$1" '$5 == m { print $6 }' /proc/self/mountinfo | tail -1; }
has_flag() { grep -qw "$2" <<<"$(mnt_opts "$1" | tr , ' ')"; }

# populate DIR: a null device and a setuid-root copy of id(1)
populate() {
	mknod "$1/null" c 1 3
	chmod 666 "$1/null"
	cp /usr/bin/id "$1/id"
	chown 0:0 "$1/id"
	chmod 4755 "$1/id"
}

# behaviour DIR: "dev=ok|EACCES suid=0|65534"
behaviour() {
	local dev suid out
	if out=$(sh -c "echo x >'$1/null'" 2>&1); then
		dev=ok
	elif grep -q "Permission denied" <<<"$out"; then
		dev=EACCES
	else
		dev="other($out)"
	fi
	suid=$(setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups "$1/id" -u 2>&1)
	echo "dev=$dev suid=$suid"
}

chmod 755 "$T"  # nobody runs $T/.../id

# kernel XFS mounted by root: the reference for dev,suid
kmount_xfs "$T/xfs.img" "$T/x" 512M
populate "$T/x"
xfs=$(behaviour "$T/x")
[ "$xfs" = "dev=ok suid=0" ] || die "XFS: $xfs"
kumount "$T/x"

img=$T/img
rlfs_mkfs "$img" -s 256M
rlfs_mount "$img" "$T/m" -o allow_other
populate "$T/m"
got=$(behaviour "$T/m")
[ "$got" = "dev=EACCES suid=$NOBODY" ] || die "default mount: $got"
has_flag "$T/m" nodev && has_flag "$T/m" nosuid || die "default mount flags: $(mnt_opts "$T/m")"
rlfs_umount "$T/m"
log "reflinkfs mount: nodev,nosuid by default ($got)"

rlfs_mount "$img" "$T/m" -o dev,suid,allow_other
got=$(behaviour "$T/m")
[ "$got" = "$xfs" ] || die "-o dev,suid: $got, XFS: $xfs"
! has_flag "$T/m" nodev && ! has_flag "$T/m" nosuid || die "-o dev,suid flags: $(mnt_opts "$T/m")"
[ "$(head -c 4 "$T/m/null" | wc -c)" = 0 ] || die "reading the null device"
rlfs_umount "$T/m"
log "reflinkfs mount -o dev,suid: device and setuid work as on XFS ($got)"

# mount(8)
M8_IMG=$img
m8_mount -t reflinkfs -o allow_other "$img" "$T/m"
got=$(behaviour "$T/m")
[ "$got" = "$xfs" ] || die "mount -t reflinkfs: $got, XFS: $xfs"
rlfs_umount "$T/m"
m8_mount -t reflinkfs -o dev,suid,allow_other "$img" "$T/m"
got=$(behaviour "$T/m")
[ "$got" = "$xfs" ] || die "mount -t reflinkfs -o dev,suid: $got"
rlfs_umount "$T/m"
m8_mount -t reflinkfs -o nodev,nosuid,allow_other "$img" "$T/m"
got=$(behaviour "$T/m")
[ "$got" = "dev=EACCES suid=$NOBODY" ] || die "mount -t reflinkfs -o nodev,nosuid: $got"
rlfs_umount "$T/m"
rlfs_fsck "$img"
log "mount -t reflinkfs: dev,suid for root unless nodev,nosuid"

# a user: dev and suid refused with a message, the plain mount works
mkdir -p "$T/u/m"
cp "$img" "$T/u/img"
chown -R $NOBODY:$NOBODY "$T/u"
for o in dev suid dev,suid; do
	rc=0
	setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups \
		"$RLFS" mount -o "$o" "$T/u/img" "$T/u/m" >"$T/err" 2>&1 || rc=$?
	if mountpoint -q "$T/u/m"; then
		fusermount3 -u "$T/u/m"
		die "a user mounted with -o $o"
	fi
	[ $rc != 0 ] && grep -q "need root" "$T/err" || die "user -o $o: rc $rc: $(cat "$T/err")"
done
log "a user cannot get dev or suid: $(head -1 "$T/err")"
if ! setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups sh -c 'exec 3<>/dev/fuse' 2>/dev/null; then
	log "SKIP a user's plain mount: /dev/fuse is $(stat -c %A /dev/fuse) here (users cannot mount FUSE)"
	exit 0
fi
_MOUNTS+=("$T/u/m")
_MOUNT_IMG+=("$T/u/img")
setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups "$RLFS" mount "$T/u/img" "$T/u/m" ||
	die "a user's plain mount failed"
has_flag "$T/u/m" nodev && has_flag "$T/u/m" nosuid || die "user mount flags: $(mnt_opts "$T/u/m")"
setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups fusermount3 -u "$T/u/m" ||
	die "user unmount"
wait_release "$T/u/img" || die "the user's daemon did not release $T/u/img after its unmount"
log "a user's plain mount: nodev,nosuid"

#!/bin/bash
# The image holds every file's data whatever the files' modes say, so:
# - mkfs creates a new image 0600 (not 0644), under umask 022 and 000;
#   an existing file (mkfs over it, with and without -f) and a block
#   device keep their modes;
# - mount warns, in one line, when users other than the image's owner may
#   read or write it (group/other bits of a file; other bits of a block
#   device, whose group is "disk" by convention), and says nothing for 0600.
. "$(dirname "$0")/../lib.sh"
common_setup

mode_of() { stat -c %a "$1"; }

for um in 022 000; do
	(umask $um && "$RLFS" mkfs -s 64M "$T/new$um.img" >/dev/null) || die "mkfs (umask $um) failed"
	[ "$(mode_of "$T/new$um.img")" = 600 ] ||
		die "mkfs under umask $um created the image with mode $(mode_of "$T/new$um.img"), want 600"
done
log "new images are 0600"

truncate -s 64M "$T/old.img"
chmod 0640 "$T/old.img"
rlfs_mkfs "$T/old.img"
[ "$(mode_of "$T/old.img")" = 640 ] || die "mkfs changed an existing file's mode to $(mode_of "$T/old.img")"
rlfs_mkfs "$T/old.img" -f
[ "$(mode_of "$T/old.img")" = 640 ] || die "mkfs -f changed an existing image's mode to $(mode_of "$T/old.img")"
log "an existing file keeps its mode"

# mount: the warning, exactly when group/other bits are set
img=$T/new022.img mnt=$T/mnt
warn_lines() { grep -c "users other than its owner" "$1" || true; }
for m in 600 700 640 604 620 602 644 666; do
	chmod $m "$img"
	rlfs_mount "$img" "$mnt" 2>"$T/mount.err"
	echo hello >"$mnt/f"
	rlfs_umount "$mnt"
	n=$(warn_lines "$T/mount.err")
	case $m in
	600 | 700) want=0 ;;
	*) want=1 ;;
	esac
	[ "$n" = $want ] || { cat "$T/mount.err" >&2; die "mount of a $m image: $n warning lines, want $want"; }
	case $m in
	640 | 604 | 644) grep -q "is readable by" "$T/mount.err" || die "$m: the warning does not say readable" ;;
	620 | 602) grep -q "is writable by" "$T/mount.err" || die "$m: the warning does not say writable" ;;
	666) grep -q "is readable and writable by" "$T/mount.err" || die "666: not 'readable and writable'" ;;
	esac
	[ $want = 0 ] || grep -q "(mode 0$m)" "$T/mount.err" || die "$m: the warning does not give the mode"
done
grep "users other than its owner" "$T/mount.err" | head -1
rlfs_fsck "$img"
log "mount warns for group/other access, not for 0600/0700"

# a block device: mkfs keeps its mode; only its "other" bits warn
command -v losetup >/dev/null || die "losetup missing"
truncate -s 64M "$T/blk.img"
_LOOPS+=("$T/blk.img")
dev=$(losetup -f --show "$T/blk.img") || die "losetup failed"
chmod 0660 "$dev"
rlfs_mkfs "$dev" -f
[ "$(mode_of "$dev")" = 660 ] || die "mkfs changed the block device's mode to $(mode_of "$dev")"
rlfs_mount "$dev" "$T/bmnt" 2>"$T/mount.err"
rlfs_umount "$T/bmnt"
[ "$(warn_lines "$T/mount.err")" = 0 ] || die "mount of a 0660 block device warned"
chmod 0664 "$dev"
rlfs_mount "$dev" "$T/bmnt" 2>"$T/mount.err"
rlfs_umount "$T/bmnt"
[ "$(warn_lines "$T/mount.err")" = 1 ] || die "mount of a 0664 block device did not warn once"
chmod 0660 "$dev"
rlfs_fsck "$dev"
losetup -d "$dev"
log OK

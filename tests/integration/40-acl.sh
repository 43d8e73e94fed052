#!/bin/bash
# POSIX ACLs, differential against kernel XFS (the same scenario runs on
# both; every observation must be identical):
#  - setfacl/getfacl; chmod rewrites the mask; an ACL that says no more than
#    the mode only sets the mode (no system.posix_acl_access stored);
#  - default ACLs are inherited on create, mkdir, mknod, O_TMPFILE (not by
#    symlinks), masked by the requested mode, with the umask ignored where a
#    default ACL exists and applied where none does;
#  - setting an ACL clears setgid when the caller is outside the file's
#    group (FUSE_SETXATTR_ACL_KILL_SGID), root keeps it;
#  - the kernel enforces them for a non-owner (a user made for the test):
#    read/write through named entries, the mask limiting them, directory
#    entries allowing create;
#  - cp -a of a tree with ACLs keeps them (inside the mount, from XFS, to XFS).
# Then on reflinkfs: the same ACLs after remount, fsck clean.
. "$(dirname "$0")/../lib.sh"
common_setup
OPS=$SRCDIR/tests/helpers/feat_ops.py
command -v setfacl >/dev/null || die "setfacl missing (apt-get install acl)"

chmod 0755 "$T"     # the test user must reach both mounts
img=$T/acl.img
mnt=$T/mnt
rlfs_mkfs "$img" -s 512M
rlfs_mount "$img" "$mnt" -o allow_other
kmount_xfs "$T/xfs.img" "$T/xfs" 512M

TUSER=rlfsacl$$
useradd -M -N -g nogroup -s /usr/sbin/nologin "$TUSER" || die "useradd $TUSER failed"
trap 'rc=$?; set +e; userdel "$TUSER" 2>/dev/null; (exit $rc); _lib_cleanup' EXIT
as_user() { setpriv --reuid "$TUSER" --regid nogroup --clear-groups "$@"; }
try() { # DESCRIPTION CMD...: one line, ok or the error
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then
		echo "$what: ok"
	else
		echo "$what: ${out##*: }"
	fi
}
acl_tree() { # DIR: every file's mode and ACL, in name order (not readdir order)
	(cd "$1" && find . -path ./lost+found -prune -o -print | LC_ALL=C sort |
		while read -r f; do
			echo "# $f $(stat -c %A "$f")"
			[ -L "$f" ] || getfacl -cp "$f" | grep -v '^$'
		done)
}
show() { # PATH...: mode as ls shows it (with +), then the ACL
	local f
	for f in "$@"; do
		echo "$(ls -ld "$f" | cut -d' ' -f1) $f"
		getfacl -cp "$f" 2>&1 | grep -v '^$'
	done
}

scenario() { # DIR
	local d=$1
	(
		set +e      # every observation is printed, failures included
		cd "$d" || exit 1
		umask 022
		echo "== access ACL and the mode"
		touch f
		setfacl -m "u:$TUSER:rw" f
		show f
		chmod 640 f
		show f
		chmod 604 f
		show f
		setfacl -m g::rwx f
		show f
		setfacl -x "u:$TUSER" f
		show f
		setfacl -b f
		show f
		echo "== an ACL equal to a mode is only the mode"
		touch e
		setfacl -m u::rwx,g::r,o::- e
		show e
		getfattr -m - -d e | grep -v '^#'
		setfacl -m "u:$TUSER:r" e
		setfacl --set u::rw,g::r,o::r e
		show e
		echo "== default ACL inheritance"
		mkdir d
		setfacl -d -m "u:$TUSER:rwx,g::rx,m::rwx" d
		umask 077
		touch d/f
		mkdir d/sub
		mkfifo d/p
		mknod d/c c 1 3
		ln -s f d/l
		$PY "$OPS" tmpfile "$d/d" t 0666 >/dev/null
		mkdir d/sub/deeper
		touch d/sub/g
		umask 022
		show d d/f d/sub d/p d/c d/t d/sub/deeper d/sub/g
		stat -c '%A %n' d/l
		echo "== no default ACL: the umask applies"
		mkdir n
		umask 027
		touch n/f
		mkdir n/d
		mkfifo n/p
		$PY "$OPS" tmpfile "$d/n" t 0666 >/dev/null
		umask 022
		show n/f n/d n/p n/t
		echo "== default ACL without named entries, and a minimal one"
		mkdir m
		setfacl -d -m u::rwx,g::-,o::- m
		umask 000
		touch m/f
		mkdir m/d
		umask 022
		show m m/f m/d
		echo "== setgid and ACL updates"
		mkdir g
		chmod 777 g
		touch g/s g/r
		chown "$TUSER:root" g/s
		chmod 2770 g/s g/r
		as_user setfacl -m u:nobody:r "$d/g/s"
		setfacl -m u:nobody:r g/r
		stat -c '%A %U:%G %n' g/s g/r | sed "s/$TUSER/USER/"
		echo "== the kernel enforces them for another user"
		echo secret >p1
		chmod 600 p1
		try "read 600" as_user cat "$d/p1"
		setfacl -m "u:$TUSER:r" p1
		try "read u:r" as_user cat "$d/p1"
		try "write u:r" as_user sh -c "echo x >>'$d/p1'"
		setfacl -m "u:$TUSER:rw" p1
		try "write u:rw" as_user sh -c "echo x >>'$d/p1'"
		setfacl -m m::r p1
		try "write u:rw mask r" as_user sh -c "echo x >>'$d/p1'"
		try "read u:rw mask r" as_user cat "$d/p1"
		chmod 600 p1
		try "read after chmod 600 (mask ---)" as_user cat "$d/p1"
		setfacl -m "g:nogroup:r" p1
		setfacl -m m::r p1
		setfacl -x "u:$TUSER" p1
		try "read g:r" as_user cat "$d/p1"
		mkdir pd
		chmod 700 pd
		try "create in 700 dir" as_user touch "$d/pd/x"
		setfacl -m "u:$TUSER:rwx" pd
		try "create with u:rwx" as_user touch "$d/pd/x"
		stat -c '%U %n' pd/x | sed "s/$TUSER/USER/"
		setfacl -m "u:$TUSER:rx" pd
		try "create with u:rx" as_user touch "$d/pd/y"
		try "list with u:rx" as_user ls "$d/pd"
		setfacl -x "u:$TUSER" pd
		try "list after removal" as_user ls "$d/pd"
		echo "== cp -a keeps ACLs"
		cp -a d d2
		acl_tree d >"$T/orig.acl"
		acl_tree d2 >"$T/cp.acl"
		diff "$T/orig.acl" "$T/cp.acl" && echo "cp -a: same ACLs"
		wc -l <"$T/cp.acl"
	) 2>&1 | sed -e "s|$d|D|g" -e "s/$TUSER/USER/g"
}

log "ACL scenario on XFS and on reflinkfs"
scenario "$T/xfs" >"$T/xfs.out"
scenario "$mnt" >"$T/rlfs.out"
grep -q "^user:USER:rw-" "$T/xfs.out" || { cat "$T/xfs.out" >&2; die "XFS oracle: no ACLs"; }
grep -q "read u:r: ok" "$T/xfs.out" || { cat "$T/xfs.out" >&2; die "XFS oracle: no enforcement"; }
diff -u "$T/xfs.out" "$T/rlfs.out" >&2 || die "reflinkfs ACLs differ from XFS"
log "$(wc -l <"$T/rlfs.out") observations identical to XFS"

log "cp -a across filesystems keeps ACLs"
cp -a "$T/xfs/d" "$mnt/fromxfs"
cp -a "$mnt/d" "$T/xfs/fromrlfs"
acl_tree "$T/xfs/d" >"$T/a.acl"
acl_tree "$mnt/fromxfs" >"$T/b.acl"
acl_tree "$T/xfs/fromrlfs" >"$T/c.acl"
diff -u "$T/a.acl" "$T/b.acl" >&2 || die "cp -a from XFS to reflinkfs lost ACLs"
diff -u "$T/a.acl" "$T/c.acl" >&2 || die "cp -a from reflinkfs to XFS lost ACLs"
grep -q "default:user:$TUSER:rwx" "$T/b.acl" || die "no default ACL copied"

log "remount: ACLs and modes stay"
acl_tree "$mnt" >"$T/before"
rlfs_umount "$mnt"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt" -o allow_other
acl_tree "$mnt" >"$T/after"
diff -u "$T/before" "$T/after" >&2 || die "ACLs changed across remount"
try "enforced after remount" as_user touch "$mnt/d/sub/after" | grep -q ': ok$' ||
	die "default-ACL access lost after remount"

rlfs_umount "$mnt"
rlfs_fsck "$img"
kumount "$T/xfs"
log "PASS"

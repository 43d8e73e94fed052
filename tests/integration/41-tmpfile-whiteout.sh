#!/bin/bash
# O_TMPFILE and renameat2(RENAME_WHITEOUT), differential against kernel
# XFS, and overlayfs with a reflinkfs upper layer.
#  1. O_TMPFILE: nlink 0, not listed, linkat (AT_EMPTY_PATH and through
#     /proc/self/fd) names it, O_EXCL ones cannot be linked, mode and umask:
#     the same observations as on XFS; a linked tmpfile survives remount; an
#     unnamed one gives its blocks back when closed; fsck clean.
#  2. RENAME_WHITEOUT: the source name becomes a 0:0 character device with
#     mode 0 owned by the caller (group of a setgid directory; an
#     unprivileged caller may make one since Linux 5.8), over an existing
#     target, for a directory, EINVAL with RENAME_EXCHANGE: the same as XFS.
#  3. overlayfs with upper and work directories on reflinkfs: deleting and
#     renaming lower files and directories, opaque directories, copy-up:
#     the merged view and the upper layer (types, modes, device numbers,
#     overlay xattr names) match an XFS upper layer.
. "$(dirname "$0")/../lib.sh"
common_setup
OPS=$SRCDIR/tests/helpers/feat_ops.py

img=$T/tw.img
mnt=$T/mnt
chmod 0755 "$T"     # the unprivileged user must reach both mounts
rlfs_mkfs "$img" -s 512M
rlfs_mount "$img" "$mnt" -o allow_other
kmount_xfs "$T/xfs.img" "$T/xfs" 512M

# an unprivileged user: its whiteouts are its own (removed at exit)
TUSER=rlfstw$$
useradd -M -N -s /usr/sbin/nologin "$TUSER" || die "useradd $TUSER failed"
trap 'rc=$?; set +e; userdel "$TUSER" 2>/dev/null; (exit $rc); _lib_cleanup' EXIT
as_user() { setpriv --reuid "$TUSER" --regid nogroup --clear-groups "$@"; }

scenario() { # DIR: print what is observed, with DIR names removed
	local d=$1
	(
		set +e      # every observation is printed, failures included
		cd "$d" || exit 1
		umask 022
		echo "== O_TMPFILE"
		mkdir tmp
		$PY "$OPS" tmpfile-cases "$d/tmp"
		umask 027
		$PY "$OPS" tmpfile "$d/tmp" named 0666
		umask 022
		stat -c '%A %h %s %n' tmp/named
		cat tmp/named
		echo "== RENAME_WHITEOUT"
		mkdir w
		echo a >w/a
		echo b >w/b
		echo c >w/c
		mkdir w/dir
		echo x >w/dir/x
		$PY "$OPS" renameat2 w/a w/a2 4
		$PY "$OPS" renameat2 w/b w/c 4               # over an existing file
		$PY "$OPS" renameat2 w/dir w/dir2 4          # a directory
		$PY "$OPS" renameat2 w/a2 w/c 6              # with EXCHANGE: EINVAL
		$PY "$OPS" renameat2 w/a2 w/new 5            # NOREPLACE|WHITEOUT
		$PY "$OPS" renameat2 w/c w/new 5             # NOREPLACE, target exists
		mkdir w/sg
		chown root:nogroup w/sg
		chmod 2777 w/sg
		echo s >w/sg/s
		$PY "$OPS" renameat2 w/sg/s w/sg/s2 4        # whiteout in a setgid dir
		echo u >w/sg/u
		as_user $PY "$OPS" renameat2 "$d/w/sg/u" "$d/w/sg/u2" 4   # unprivileged
		as_user $PY "$OPS" renameat2 "$d/w/sg/u" "$d/w/sg/u3" 0   # the whiteout
		# (directory sizes are the filesystem's own business)
		(cd w && find . | LC_ALL=C sort | while read -r f; do
			if [ -d "$f" ]; then
				stat -c '%A %t:%T %h %U:%G - %n' "$f"
			else
				stat -c '%A %t:%T %h %U:%G %s %n' "$f"
			fi
		done)
		cat w/c w/new w/dir2/x
		rmdir w/dir 2>&1 | sed 's/.*: //' || true
		rm w/dir
		echo "whiteout removed: $(ls w | tr '\n' ' ')"
	) 2>&1 | sed "s|$d|D|g"
}

log "O_TMPFILE and RENAME_WHITEOUT on XFS and on reflinkfs"
scenario "$T/xfs" >"$T/xfs.out"
scenario "$mnt" >"$T/rlfs.out"
grep -q '^fresh nlink=0' "$T/xfs.out" || { cat "$T/xfs.out" >&2; die "XFS oracle: no O_TMPFILE"; }
grep -q '^c--------- 0:0 1 root:root 0 ./a$' "$T/xfs.out" ||
	{ cat "$T/xfs.out" >&2; die "XFS oracle: no whiteout"; }
diff -u "$T/xfs.out" "$T/rlfs.out" >&2 || die "reflinkfs differs from XFS"
log "$(wc -l <"$T/rlfs.out") observations identical to XFS"

log "an unnamed O_TMPFILE gives its blocks back when closed"
sync -f "$mnt"
before=$(df_used_kb "$mnt")
$PY - "$mnt/tmp" <<'EOF' || die "tmpfile write"
import os, sys
fd = os.open(sys.argv[1], os.O_TMPFILE | os.O_RDWR, 0o600)
for i in range(64):
    os.write(fd, b"t" * (1 << 20))
os.fsync(fd)
print("used while open: %d KiB" % (os.statvfs(sys.argv[1]).f_blocks - os.statvfs(sys.argv[1]).f_bfree))
os.close(fd)
EOF
for ((i = 0; i < 100; i++)); do
	[ "$(df_used_kb "$mnt")" -le $((before + 256)) ] && break
	sleep 0.2
done
[ "$(df_used_kb "$mnt")" -le $((before + 256)) ] ||
	die "blocks of a closed O_TMPFILE not freed ($before KiB before, $(df_used_kb "$mnt") KiB now)"

log "remount: named tmpfiles and whiteouts stay"
find "$mnt" \( -type d -printf '%y %m %U %G - %n %p\n' \) -o -printf '%y %m %U %G %s %n %p\n' | sed "s|$mnt||" | LC_ALL=C sort >"$T/before"
rlfs_umount "$mnt"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt" -o allow_other
find "$mnt" \( -type d -printf '%y %m %U %G - %n %p\n' \) -o -printf '%y %m %U %G %s %n %p\n' | sed "s|$mnt||" | LC_ALL=C sort >"$T/after"
diff -u "$T/before" "$T/after" >&2 || die "tree changed across remount"
grep -q 'tmpfile data' "$mnt/tmp/named" || die "named tmpfile lost its data"

log "overlayfs: upper and work directories on reflinkfs vs on XFS"
overlay_run() { # UPPERBASE MERGED: prints the merged view and the upper layer
	local base=$1 merged=$2
	rm -rf "$T/lower"
	mkdir -p "$T/lower/ld/sub" "$T/lower/keep" "$base/upper" "$base/work" "$merged"
	echo l1 >"$T/lower/f1"
	echo l2 >"$T/lower/f2"
	echo l3 >"$T/lower/f3"
	echo ld >"$T/lower/ld/sub/x"
	echo k >"$T/lower/keep/k"
	mount -t overlay overlay -o "lowerdir=$T/lower,upperdir=$base/upper,workdir=$base/work" \
		"$merged" || return 1
	_MOUNTS+=("$merged")
	_MOUNT_IMG+=("")
	(
		cd "$merged" || exit 1
		rm f1                       # whiteout
		mv f2 f2moved               # copy-up + whiteout
		echo more >>f3              # copy-up
		rm -r ld                    # directory whiteout
		mkdir ld                    # opaque directory
		echo new >ld/new
		mkdir keep/newdir
		rm keep/k
		echo "== merged"
		find . \( -type d -printf '%y %m - %p\n' \) -o -printf '%y %m %s %p\n' |
			LC_ALL=C sort
		cat f2moved f3 ld/new
	)
	umount "$merged" || return 1
	(
		cd "$base/upper" || exit 1
		echo "== upper"
		find . | LC_ALL=C sort | while read -r f; do
			printf '%s %s\n' "$(stat -c '%A %t:%T %n' "$f")" \
				"$(getfattr --absolute-names -m '^trusted.overlay' "$f" 2>/dev/null |
				grep -v '^#' | LC_ALL=C sort | tr '\n' ' ')"
		done
	)
}
overlay_run "$T/xfs/ov" "$T/ovx" >"$T/ov.xfs" 2>&1 || { cat "$T/ov.xfs" >&2; die "overlay on XFS"; }
overlay_run "$mnt/ov" "$T/ovr" >"$T/ov.rlfs" 2>&1 ||
	{ cat "$T/ov.rlfs" >&2; die "overlay with a reflinkfs upper layer failed"; }
grep -q '^c--------- 0:0 ./f1' "$T/ov.xfs" || { cat "$T/ov.xfs" >&2; die "XFS oracle: no whiteout"; }
diff -u "$T/ov.xfs" "$T/ov.rlfs" >&2 || die "overlayfs on reflinkfs differs from XFS upper"
log "$(wc -l <"$T/ov.rlfs") overlay observations identical to XFS"

rlfs_umount "$mnt"
rlfs_fsck "$img"
kumount "$T/xfs"
log "PASS"

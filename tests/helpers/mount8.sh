# mount(8) with the reflinkfs helpers, without installing anything.
# Source after lib.sh and call `mount8_enter "$@"` first thing: the test
# re-executes itself in a private mount namespace (unshare -m) in which
# /usr/sbin (= /sbin) is an overlay (the real /usr/sbin below, a scratch
# upper layer in $T) that adds mount.reflinkfs and mount.fuse.reflinkfs ->
# $RLFS, so `mount -t reflinkfs`, fstab entries (LIBMOUNT_FSTAB=file) and
# `mount -o remount` run this build's helper.  Everything the test mounts
# lives in that namespace; lib.sh's cleanup runs there too and unmounts it.
#
# Safety: nothing of the real /usr/sbin is ever mounted below $T (an rm -rf
# of $T must not be able to reach it), and the namespaced run never
# removes $T itself (tests/run.sh does, outside the namespace; a run by
# hand leaves it).

mount8_enter() {
	if [ "${RLFS_MOUNT8_NS:-}" != 1 ]; then
		command -v unshare >/dev/null || die "unshare (util-linux) is missing"
		grep -qw overlay /proc/filesystems || die "overlayfs is missing"
		trap - EXIT
		exec env RLFS_MOUNT8_NS=1 T="$T" unshare -m --propagation private bash "$0" "$@"
	fi
	_LIB_OWN_T=0
	local up=$T/sbin.upper work=$T/sbin.work
	mkdir -p "$up" "$work"
	ln -sf "$RLFS" "$up/mount.reflinkfs"
	ln -sf "$RLFS" "$up/mount.fuse.reflinkfs"
	mount -t overlay overlay -o "lowerdir=/usr/sbin,upperdir=$up,workdir=$work" /usr/sbin ||
		die "cannot overlay /usr/sbin with the helpers"
	[ "$(readlink -f /sbin/mount.reflinkfs)" = "$(readlink -f "$RLFS")" ] ||
		die "mount.reflinkfs is not this build's"
	command -v mkfs.xfs >/dev/null || die "/usr/sbin overlay: mkfs.xfs not found"
}

# m8_mount ARGS... DIR: mount(8) a reflinkfs (DIR last), registered for
# cleanup with IMG (set M8_IMG first).
m8_mount() {
	local dir=${*: -1}
	mkdir -p "$dir"
	_MOUNTS+=("$dir")
	_MOUNT_IMG+=("${M8_IMG:-}")
	run_to "$CMD_TIMEOUT" mount "$@" || die "mount $* failed"
	mountpoint -q "$dir" || die "mount $* returned but $dir is not a mount point"
}

# mount(8) with the reflinkfs helpers, without installing anything.
# Source after lib.sh and call `mount8_enter "$@"` first thing: the test
# re-executes itself in a private mount namespace (unshare -m) in which
# /usr/sbin (= /sbin) is a tmpfs of links to the real entries (bound at
# $T/sbin.real) plus
# mount.reflinkfs and mount.fuse.reflinkfs -> $RLFS, so `mount -t
# reflinkfs`, fstab entries (LIBMOUNT_FSTAB=file) and `mount -o remount`
# run this build's helper.  Everything the test mounts lives in that
# namespace; lib.sh's cleanup runs there too and unmounts it.

mount8_enter() {
	if [ "${RLFS_MOUNT8_NS:-}" != 1 ]; then
		command -v unshare >/dev/null || die "unshare (util-linux) is missing"
		local own=$_LIB_OWN_T
		_LIB_OWN_T=0    # the namespaced run owns T now
		trap - EXIT
		exec env RLFS_MOUNT8_NS=1 RLFS_MOUNT8_OWN_T="$own" T="$T" \
			unshare -m --propagation private bash "$0" "$@"
	fi
	_LIB_OWN_T=${RLFS_MOUNT8_OWN_T:-0}
	local sb=$T/sbin real=$T/sbin.real f
	mkdir -p "$sb" "$real"
	mount --bind /usr/sbin "$real" || die "cannot bind /usr/sbin"
	mount -t tmpfs -o mode=755 tmpfs "$sb" || die "tmpfs for the helpers"
	for f in "$real"/*; do ln -s "$f" "$sb/"; done
	ln -sf "$RLFS" "$sb/mount.reflinkfs"
	ln -sf "$RLFS" "$sb/mount.fuse.reflinkfs"
	mount --bind "$sb" /usr/sbin || die "cannot bind the helpers over /usr/sbin"
	[ "$(readlink -f /sbin/mount.reflinkfs)" = "$(readlink -f "$RLFS")" ] ||
		die "mount.reflinkfs is not this build's"
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

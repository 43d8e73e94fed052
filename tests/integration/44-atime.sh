#!/bin/bash
# Access times, compared with kernel XFS mounted with the same option:
# relatime (the default), strictatime, noatime, nodiratime.  Each case
# sets atime to a known value with touch -a, does one access and reports
# "new" (atime moved to now) or "kept" (unchanged):
#   A  cat of a file just written (its pages still in the kernel's cache),
#      atime older than mtime: relatime must update it
#   B  cat with atime in the future (newer than mtime and ctime, less than
#      a day old): only strictatime updates
#   C  a second cat, 0.1 s after a first one: only strictatime updates
#   D  ls of a directory whose atime is older than its mtime
#   E  ls of a directory with atime in the future
#   F  read through an O_NOATIME descriptor: never
#   G  readdir through an O_NOATIME directory descriptor, atime older
#      than mtime: never (the daemon takes O_NOATIME from the READDIR
#      request: there is no OPENDIR on 6.16+, see fuse/daemon.c rl_opendir)
#   H  a second ls, 0.1 s after a first: only strictatime updates (the
#      kernel's cached listing must not answer it: do_readdir)
# Not covered: a read at or past EOF (an empty file) never reaches a FUSE
# daemon, so it leaves atime alone where XFS updates it; the noatime
# attribute (chattr +A) is honoured by the library, but the daemon does not
# serve FS_IOC_SETFLAGS yet.
# The mount option must also show in mountinfo as on XFS.
. "$(dirname "$0")/../lib.sh"
common_setup

judge() { # PATH OLD-ATIME-STRING T0: new|kept
	local a
	a=$(stat -c %x "$1")
	if [ "$a" = "$2" ]; then
		echo kept
	elif [ "$(stat -c %X "$1")" -ge "$3" ]; then
		echo new
	else
		echo "odd($a)"
	fi
}

scenario() { # DIR: one word per case
	local d=$1 t0 past future b r=""
	t0=$(date +%s)
	past=$((t0 - 7200))
	future=$((t0 + 3600))
	echo data >"$d/a"
	touch -a -d "@$past" "$d/a"; b=$(stat -c %x "$d/a")
	cat "$d/a" >/dev/null
	r+="A:$(judge "$d/a" "$b" "$t0") "

	echo data >"$d/b"
	cat "$d/b" >/dev/null
	touch -a -d "@$future" "$d/b"; b=$(stat -c %x "$d/b")
	cat "$d/b" >/dev/null
	r+="B:$(judge "$d/b" "$b" "$t0") "

	echo data >"$d/c"
	touch -a -d "@$past" "$d/c"
	cat "$d/c" >/dev/null
	b=$(stat -c %x "$d/c")
	sleep 0.1       # the next read happens at a later clock tick
	cat "$d/c" >/dev/null
	r+="C:$(judge "$d/c" "$b" "$t0") "

	mkdir "$d/dd"
	touch "$d/dd/x"
	touch -a -d "@$past" "$d/dd"; b=$(stat -c %x "$d/dd")
	ls "$d/dd" >/dev/null
	r+="D:$(judge "$d/dd" "$b" "$t0") "

	touch -a -d "@$future" "$d/dd"; b=$(stat -c %x "$d/dd")
	ls "$d/dd" >/dev/null
	r+="E:$(judge "$d/dd" "$b" "$t0") "

	echo data >"$d/f"
	touch -a -d "@$past" "$d/f"; b=$(stat -c %x "$d/f")
	"$PY" -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY|os.O_NOATIME); os.read(fd,100)' "$d/f"
	r+="F:$(judge "$d/f" "$b" "$t0") "

	mkdir "$d/dg"
	touch "$d/dg/x"
	touch -a -d "@$past" "$d/dg"; b=$(stat -c %x "$d/dg")
	"$PY" -c 'import os,sys
fd=os.open(sys.argv[1], os.O_RDONLY|os.O_DIRECTORY|os.O_NOATIME)
assert os.listdir(fd) == ["x"]' "$d/dg" || die "O_NOATIME readdir of $d/dg failed"
	r+="G:$(judge "$d/dg" "$b" "$t0") "

	ls "$d/dg" >/dev/null
	b=$(stat -c %x "$d/dg")
	sleep 0.1
	ls "$d/dg" >/dev/null
	r+="H:$(judge "$d/dg" "$b" "$t0")"
	echo "$r"
}

# the atime flags of a mount as mountinfo shows them
atime_flags() {
	awk -v m="$1" '$5 == m { n = split($6, o, ","); s = "";
		for (i = 1; i <= n; i++) if (o[i] ~ /atime/) s = s o[i] ",";
		print s }' /proc/self/mountinfo | tail -1
}

declare -A expect=(
	[default]="A:new B:kept C:kept D:new E:kept F:kept G:kept H:kept"
	[strictatime]="A:new B:new C:new D:new E:new F:kept G:kept H:new"
	[noatime]="A:kept B:kept C:kept D:kept E:kept F:kept G:kept H:kept"
	[nodiratime]="A:new B:kept C:kept D:kept E:kept F:kept G:kept H:kept"
)
img=$T/img
for mode in default strictatime noatime nodiratime; do
	opt=()
	[ "$mode" = default ] || opt=(-o "$mode")
	rm -f "$img"
	rlfs_mkfs "$img" -s 256M
	rlfs_mount "$img" "$T/m" "${opt[@]}"
	got=$(scenario "$T/m")
	rflags=$(atime_flags "$T/m")
	rlfs_umount "$T/m"
	rlfs_fsck "$img"

	kmount_xfs "$T/xfs.img" "$T/x" 512M
	[ "$mode" = default ] || mount -o remount,"$mode" "$T/x"
	want=$(scenario "$T/x")
	xflags=$(atime_flags "$T/x")
	kumount "$T/x"

	log "$mode: reflinkfs [$got] ($rflags)  xfs [$want] ($xflags)"
	[ "$want" = "${expect[$mode]}" ] ||
		die "$mode: kernel XFS gives [$want], the test expects [${expect[$mode]}]"
	[ "$got" = "$want" ] || die "$mode: reflinkfs [$got] differs from XFS [$want]"
	[ "$rflags" = "$xflags" ] ||
		die "$mode: mountinfo atime flags: reflinkfs '$rflags', XFS '$xflags'"
done

# The policy follows a remount (reflinkfs mount -o remount; the mount(8)
# path is tested in 45-remount)
rm -f "$img"
rlfs_mkfs "$img" -s 256M
rlfs_mount "$img" "$T/m"
"$RLFS" mount -o remount,strictatime "$T/m" || die "remount,strictatime failed"
got=$(scenario "$T/m")
[ "$got" = "${expect[strictatime]}" ] || die "after remount,strictatime: [$got]"
rm -rf "${T:?}"/m/*
"$RLFS" mount -o remount,noatime "$T/m" || die "remount,noatime failed"
got=$(scenario "$T/m")
[ "$got" = "${expect[noatime]}" ] || die "after remount,noatime: [$got]"
log "remount changes the policy: strictatime, noatime ok"
rlfs_umount "$T/m"
rlfs_fsck "$img"

# Directories open without OPENDIR where the flush has no use for it
# (Linux 6.16 and later, no RLFS_FLUSH_BARRIER: rl_init): a walk of 30
# directories sends one OPENDIR (the first, answered ENOSYS) and no
# RELEASEDIR.  The daemon runs in the foreground (-d) to log its requests.
IFS=. read -r kmaj kmin _ <<<"$(uname -r)"
if [ "$kmaj" -gt 6 ] || { [ "$kmaj" = 6 ] && [ "${kmin%%[!0-9]*}" -ge 16 ]; }; then
	rm -f "$img"
	rlfs_mkfs "$img" -s 256M
	rlfs_mount "$img" "$T/m"
	for i in $(seq 30); do mkdir -p "$T/m/w$i/x"; done
	rlfs_umount "$T/m"
	_MOUNTS+=("$T/m")
	_MOUNT_IMG+=("$img")
	"$RLFS" mount -d "$img" "$T/m" >"$T/d.log" 2>&1 &
	for i in $(seq 100); do mountpoint -q "$T/m" && break; sleep 0.1; done
	mountpoint -q "$T/m" || die "mount -d of $img failed: $(tail -5 "$T/d.log")"
	find "$T/m" -printf '%s\n' >/dev/null
	find "$T/m" -printf '%s\n' >/dev/null
	rlfs_umount "$T/m"
	nopen=$(grep -c 'opcode: OPENDIR' "$T/d.log" || true)
	nrel=$(grep -c 'opcode: RELEASEDIR' "$T/d.log" || true)
	nrd=$(grep -c 'opcode: READDIR' "$T/d.log" || true)
	[ "$nrd" -ge 61 ] || die "two walks of 61 directories sent $nrd READDIRs: is -d logging?"
	[ "$nopen" -le 1 ] && [ "$nrel" = 0 ] ||
		die "two walks of 61 directories sent $nopen OPENDIR, $nrel RELEASEDIR (want <= 1, 0)"
	log "no OPENDIR: two walks sent $nopen OPENDIR, $nrel RELEASEDIR, $nrd READDIR"
	rlfs_fsck "$img"
fi
log "atime: relatime, strictatime, noatime, nodiratime match XFS"

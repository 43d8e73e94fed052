#!/bin/bash
# 26-fake-source: the clone ioctls cannot be fooled about their source.
#
# An unprivileged user mounts their own FUSE filesystem (rlfs-fakefs, built
# from tests/fakefs.c) posing as the reflinkfs mount: fsname
# reflinkfs#IMAGE, subtype reflinkfs, and a file whose reported inode
# number is that of a file they may not read.  They open that file and ask
# the real (allow_other) mount to clone "it" into a file of their own.
# Every private ioctl that takes a source descriptor (RLFS_IOC_CLONE,
# RLFS_IOC_CLONE_RANGE, directly and through the LD_PRELOAD shim's
# FICLONE/FICLONERANGE) must refuse with EXDEV and leave the destination
# without a byte of the victim's data, for three victims: a 0600 root file,
# a file inside a 0700 directory, and an unlinked file root still holds
# open.  copy_file_range from the fake file must not leak either, and a
# dedupe (RLFS_IOC_DEDUPE_RANGE and the shim's FIDEDUPERANGE) with the fake
# file as its destination is EXDEV for that destination.  The
# same user's legitimate clones (their own file, a root file they may
# read, O_RDONLY source) still work, and a source open O_WRONLY or O_PATH
# is EBADF as with the kernel.  fsck is clean at the end.
. "$(dirname "$0")/../lib.sh"
common_setup
FAKEFS=${FAKEFS:-$(dirname "$RLFS")/rlfs-fakefs}
SHIM=${SHIM:-$(dirname "$RLFS")/libreflinkfs-preload.so}
[ -x "$FAKEFS" ] || die "rlfs-fakefs not found: $FAKEFS"
[ -f "$SHIM" ] || die "shim not found: $SHIM"
command -v useradd >/dev/null || die "useradd missing (apt-get install passwd)"
command -v setpriv >/dev/null || die "setpriv missing (apt-get install util-linux)"

# ------------------------------------------------------------ the user
U=rlfsfake$$
useradd -M -d /nonexistent -s /usr/sbin/nologin "$U" || die "useradd $U failed"
UID_U=$(id -u "$U")
GID_U=$(id -g "$U")
FUSE_MODE=$(stat -c %a /dev/fuse)
FAKE=$T/fake
cleanup_user() {
	# the fake mount first (it is the user's), then the user
	fusermount3 -u "$FAKE" 2>/dev/null || umount -l "$FAKE" 2>/dev/null
	chmod "$FUSE_MODE" /dev/fuse 2>/dev/null
	userdel "$U" 2>/dev/null
}
# lib.sh's EXIT trap unmounts the real mount; chain ours before it
trap 'rc=$?; set +e; cleanup_user; (exit $rc); _lib_cleanup' EXIT
# Debian's default: /dev/fuse 0666 and a setuid fusermount3, so any user can
# mount a FUSE filesystem.  This machine may be stricter: be Debian here.
chmod 0666 /dev/fuse

as_user() { setpriv --reuid="$UID_U" --regid="$GID_U" --clear-groups -- "$@"; }

chmod 0711 "$T"
IMG=$T/rlfs.img
MNT=$T/mnt
rlfs_mkfs "$IMG" -s 256M
rlfs_mount "$IMG" "$MNT" -o allow_other
chmod 0755 "$MNT"

# ------------------------------------------------------------ victims
head -c 1M /dev/urandom >"$T/secret.bin"
install -m 0600 "$T/secret.bin" "$MNT/secret"
mkdir -m 0700 "$MNT/private"
install -m 0644 "$T/secret.bin" "$MNT/private/inner"
install -m 0600 "$T/secret.bin" "$MNT/gone"
exec 7<"$MNT/gone"              # root holds it open...
INO_GONE=$(stat -c %i "$MNT/gone")
rm "$MNT/gone"                  # ...after it is unlinked
INO_SECRET=$(stat -c %i "$MNT/secret")
INO_INNER=$(stat -c %i "$MNT/private/inner")
head -c 64K /dev/urandom >"$T/public.bin"
install -m 0644 "$T/public.bin" "$MNT/public"

mkdir "$MNT/u"
chown "$UID_U:$GID_U" "$MNT/u"
as_user sh -c "head -c 64K /dev/urandom >'$MNT/u/own'" || die "user cannot write on the mount"

# The user cannot read the victims the normal way.
for f in "$MNT/secret" "$MNT/private/inner"; do
	if as_user cat "$f" >/dev/null 2>&1; then die "user can read $f: test setup wrong"; fi
done

# ------------------------------------------------------------ probe
# probe.py MODE DST SRC: MODE clone|range|shim-clone|shim-range|cfr|wronly|path|
# dedupe|shim-dedupe (SRC is then the dedupe's destination);
# prints OK or the errno name.
cat >"$T/probe.py" <<'EOF'
import errno, fcntl, os, struct, sys
mode, dst, src = sys.argv[1:4]
def iowr(nr, size): return (3 << 30) | (size << 16) | (0xb7 << 8) | nr
RLFS_IOC_CLONE = iowr(1, 32)
RLFS_IOC_CLONE_RANGE = iowr(2, 32)
FICLONE = 0x40049409
FICLONERANGE = 0x4020940d
try:
    flags = os.O_RDONLY
    if mode == "wronly": flags = os.O_WRONLY
    if mode == "path": flags = os.O_PATH
    s = os.open(src, flags)
    d = os.open(dst, os.O_RDWR | os.O_CREAT, 0o644)
    if mode in ("clone", "wronly", "path"):
        fcntl.ioctl(d, RLFS_IOC_CLONE, struct.pack("=qQQQ", s, 0, 0, 0))
    elif mode == "range":
        fcntl.ioctl(d, RLFS_IOC_CLONE_RANGE, struct.pack("=qQQQ", s, 0, 65536, 0))
    elif mode == "shim-clone":
        fcntl.ioctl(d, FICLONE, s)
    elif mode == "shim-range":
        fcntl.ioctl(d, FICLONERANGE, struct.pack("=qQQQ", s, 0, 65536, 0))
    elif mode == "cfr":
        n = os.copy_file_range(s, d, 65536, 0, 0)
    elif mode in ("dedupe", "shim-dedupe"):
        # the fake file as a dedupe destination (a compare oracle on the
        # victim's data, and a remap of it, if it were believed); the
        # user's own 4 KiB file is the source
        os.pwrite(d, b"x" * 4096, 0)
        if mode == "dedupe":
            a = bytearray(struct.pack("=QQHHI", 0, 4096, 1, 0, 0) + b"\0" * (32 * 511))
            struct.pack_into("=qQQiI", a, 24, s, 0, 0, 0, 0)
            fcntl.ioctl(d, iowr(4, len(a)), a, True)
        else:
            a = bytearray(struct.pack("=QQHHI", 0, 4096, 1, 0, 0) + b"\0" * 32)
            struct.pack_into("=qQQiI", a, 24, s, 0, 0, 0, 0)
            fcntl.ioctl(d, 0xC0189436, a, True)
        st = struct.unpack_from("=qQQiI", a, 24)[3]
        if st < 0:
            raise OSError(-st, "dedupe")
        print("OK" if st == 0 else "DIFFERS")
        sys.exit(0)
    print("OK")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
EOF

# has_secret FILE: does FILE hold any 4 KiB block of the victims' data?
has_secret() {
	"$PY" - "$1" "$T/secret.bin" <<'EOF'
import sys
data = open(sys.argv[1], "rb").read()
secret = open(sys.argv[2], "rb").read()
blocks = {secret[i:i + 4096] for i in range(0, len(secret), 4096)}
sys.exit(0 if any(data[i:i + 4096] in blocks for i in range(0, len(data) - 4095, 4096)) else 1)
EOF
}

mkdir -p "$FAKE"
chown "$UID_U:$GID_U" "$FAKE"
fake_mount() { # INO
	as_user "$FAKEFS" "$FAKE" "$1" 1048576 -o "fsname=reflinkfs#$IMG,subtype=reflinkfs" ||
		die "the user could not mount the fake filesystem"
	local i
	for ((i = 0; i < 100; i++)); do
		# root cannot stat another user's FUSE mount (no allow_other)
		grep -q " ${FAKE} [^ ]* .* fuse.reflinkfs " /proc/self/mountinfo && return 0
		sleep 0.1
	done
	die "fake filesystem did not appear"
}
fake_umount() {
	as_user fusermount3 -u "$FAKE" || fusermount3 -u "$FAKE" || die "cannot unmount the fake"
}

n=0
for victim in secret:$INO_SECRET inner:$INO_INNER gone:$INO_GONE; do
	name=${victim%%:*}
	ino=${victim#*:}
	fake_mount "$ino"
	grep -qF " $FAKE " /proc/self/mountinfo ||
		die "fake mount is gone"
	grep -F " $FAKE " /proc/self/mountinfo | grep -qF "fuse.reflinkfs reflinkfs\\043$IMG " ||
		die "fake mount does not pose as reflinkfs"
	[ "$(as_user stat -c %i "$FAKE/f")" = "$ino" ] || die "fake file does not report inode $ino"
	for mode in clone range; do
		n=$((n + 1))
		r=$(as_user "$PY" "$T/probe.py" "$mode" "$MNT/u/dst$n" "$FAKE/f")
		[ "$r" = EXDEV ] || die "$mode from a fake file posing as $name (inode $ino): $r, expected EXDEV"
		if has_secret "$MNT/u/dst$n"; then die "$mode leaked $name into the user's file"; fi
	done
	for mode in shim-clone shim-range; do
		n=$((n + 1))
		r=$(as_user env LD_PRELOAD="$SHIM" "$PY" "$T/probe.py" "$mode" "$MNT/u/dst$n" "$FAKE/f")
		[ "$r" = EXDEV ] || die "$mode through the shim, fake $name: $r, expected EXDEV"
		if has_secret "$MNT/u/dst$n"; then die "$mode leaked $name"; fi
	done
	for mode in dedupe shim-dedupe; do
		n=$((n + 1))
		pre=""
		[ $mode = shim-dedupe ] && pre="env LD_PRELOAD=$SHIM"
		r=$(as_user $pre "$PY" "$T/probe.py" "$mode" "$MNT/u/dst$n" "$FAKE/f")
		[ "$r" = EXDEV ] || die "$mode onto a fake $name: $r, expected EXDEV"
	done
	n=$((n + 1))
	as_user env LD_PRELOAD="$SHIM" cp --reflink=always "$FAKE/f" "$MNT/u/cp$n" 2>/dev/null &&
		die "cp --reflink=always from the fake $name succeeded"
	if [ -e "$MNT/u/cp$n" ] && has_secret "$MNT/u/cp$n"; then die "cp leaked $name"; fi
	n=$((n + 1))
	as_user "$PY" "$T/probe.py" cfr "$MNT/u/dst$n" "$FAKE/f" >/dev/null
	if has_secret "$MNT/u/dst$n"; then die "copy_file_range leaked $name"; fi
	fake_umount
	log "fake source posing as $name (inode $ino): refused"
done

# ------------------------------------------------------------ legitimate
r=$(as_user "$PY" "$T/probe.py" range "$MNT/u/mine" "$MNT/u/own")
[ "$r" = OK ] || die "user's clone of their own file: $r"
cmp -n 65536 "$MNT/u/mine" "$MNT/u/own" || die "user's clone differs"
r=$(as_user "$PY" "$T/probe.py" clone "$MNT/u/pub" "$MNT/public")
[ "$r" = OK ] || die "user's clone of a readable root file: $r"
cmp "$MNT/u/pub" "$T/public.bin" || die "clone of a readable file differs"
r=$(as_user env LD_PRELOAD="$SHIM" "$PY" "$T/probe.py" shim-clone "$MNT/u/pub2" "$MNT/public")
[ "$r" = OK ] || die "FICLONE through the shim of a readable file: $r"
r=$(as_user "$PY" "$T/probe.py" wronly "$MNT/u/w" "$MNT/u/own")
[ "$r" = EBADF ] || die "source open O_WRONLY: $r, expected EBADF"
r=$(as_user "$PY" "$T/probe.py" path "$MNT/u/p" "$MNT/u/own")
[ "$r" = EBADF ] || die "source open O_PATH: $r, expected EBADF"
r=$("$PY" "$T/probe.py" clone "$MNT/rootcopy" "$T/public.bin")
[ "$r" = EXDEV ] || die "source on another filesystem: $r, expected EXDEV"
# root's own clone of the unlinked file it holds open (by /proc/self/fd)
r=$("$PY" "$T/probe.py" clone "$MNT/rootgone" /proc/self/fd/7)
[ "$r" = OK ] || die "root's clone of its open unlinked file: $r"
cmp "$MNT/rootgone" "$T/secret.bin" || die "clone of the unlinked file differs"
log "legitimate clones work; O_WRONLY/O_PATH sources EBADF; foreign EXDEV"

exec 7<&-
rlfs_umount "$MNT"
rlfs_fsck "$IMG"
log "ok"

#!/bin/bash
# Command-line contract: --help for every command, mkfs size suffixes and
# refusal to overwrite, mount/umount/fsck round trip, double mount refused,
# st_ino stable across remounts, mount.reflinkfs-style errors are one line;
# an rmapbt=1 image mounts read-only only.
. "$(dirname "$0")/../lib.sh"
common_setup

for cmd in "" mkfs mount umount fsck fsmap dedupe; do
	out=$(run_to 30 "$RLFS" $cmd --help 2>&1) || die "'reflinkfs $cmd --help' exited non-zero"
	grep -qi usage <<<"$out" || die "'reflinkfs $cmd --help' prints no usage line"
done
log "--help ok for every command"

# unknown command / missing args: non-zero exit, message on stderr
rc=0; run_to 30 "$RLFS" no-such-command >/dev/null 2>"$T/err" || rc=$?
[ $rc != 0 ] || die "unknown subcommand exited 0"
[ -s "$T/err" ] || die "unknown subcommand printed nothing on stderr"
rc=0; run_to 30 "$RLFS" mkfs >/dev/null 2>&1 || rc=$?
[ $rc != 0 ] || die "mkfs without an image exited 0"

# sizes with suffixes, sparse image
img=$T/a.img
rlfs_mkfs "$img" -s 2G
[ "$(stat -c %s "$img")" = $((2 << 30)) ] || die "mkfs -s 2G made $(stat -c %s "$img") bytes"
alloc_kb=$(du -k "$img" | cut -f1)
[ "$alloc_kb" -lt $((64 << 10)) ] || die "image is not sparse: $alloc_kb KiB allocated"
rm -f "$img"
rlfs_mkfs "$img" -s 300M -b 1024 -a 3
[ "$(stat -c %s "$img")" = $((300 << 20)) ] || die "mkfs -s 300M made wrong size"
rlfs_fsck "$img"
for bs in 1024 2048 4096 8192 65536; do
	rm -f "$T/bs.img"
	rlfs_mkfs "$T/bs.img" -s 256M -b $bs
	rlfs_fsck "$T/bs.img"
	# logprint --resv: the log reservation table of this geometry
	run_to 30 "$RLFS" logprint --resv "$T/bs.img" >"$T/resv" || die "logprint --resv failed (bs $bs)"
	[ "$(grep -c '^tr_' "$T/resv")" -ge 20 ] || { cat "$T/resv" >&2; die "logprint --resv: no table"; }
	awk -v bs=$bs '$1 == "tr_ichange" && $2 == 2 * bs { ok = 1 } END { exit !ok }' "$T/resv" ||
		{ cat "$T/resv" >&2; die "logprint --resv: tr_ichange is not one block + header (bs $bs)"; }
done
log "mkfs block sizes 1024..65536 ok, logprint --resv tables"

# refuse to overwrite an existing filesystem without -f
rc=0; run_to 60 "$RLFS" mkfs -s 300M "$img" >/dev/null 2>"$T/err" || rc=$?
[ $rc != 0 ] || die "mkfs overwrote an existing filesystem without -f"
[ "$(wc -l <"$T/err")" = 1 ] || { cat "$T/err" >&2; die "mkfs refusal is not one line of error"; }
log "mkfs refusal: $(head -1 "$T/err")"
run_to 60 "$RLFS" mkfs -f -s 300M "$img" >/dev/null || die "mkfs -f failed"
rlfs_fsck "$img"

# bad arguments
rc=0; run_to 30 "$RLFS" mkfs -f -s 10Q "$T/x.img" >/dev/null 2>&1 || rc=$?
[ $rc != 0 ] || die "mkfs accepted size 10Q"
rc=0; run_to 30 "$RLFS" mkfs -f -s 256M -b 3000 "$T/x.img" >/dev/null 2>&1 || rc=$?
[ $rc != 0 ] || die "mkfs accepted block size 3000"

# mount, write, umount, fsck, remount: data and inode numbers persist
mnt=$T/mnt
rlfs_mount "$img" "$mnt"
echo hello >"$mnt/f"
mkdir "$mnt/d"
ino1=$(stat -c %i "$mnt/f")
dino1=$(stat -c %i "$mnt/d")
rino1=$(stat -c %i "$mnt")

# second mount of the same image refused, with an error, and no hang
mkdir -p "$T/mnt2"
rc=0; run_to 60 "$RLFS" mount "$img" "$T/mnt2" 2>"$T/err" || rc=$?
if mountpoint -q "$T/mnt2"; then
	fusermount3 -u "$T/mnt2"
	die "second mount of a mounted image succeeded"
fi
[ $rc != 0 ] && [ $rc != 124 ] || die "second mount: exit $rc (expected a refusal)"
log "double mount refused: $(head -1 "$T/err")"

# fsck on a mounted image must not check (or repair) it under the daemon:
# it waits a while for the image lock (the daemon may still be flushing
# after umount; RLFS_FSCK_LOCK_WAIT shortens the wait), then refuses (8)
rc=0; RLFS_FSCK_LOCK_WAIT=1 run_to 30 "$RLFS" fsck "$img" >"$T/fsck.out" 2>&1 || rc=$?
[ $rc = 8 ] && grep -q "in use" "$T/fsck.out" || { cat "$T/fsck.out" >&2; die "fsck of a mounted image exited $rc (expected 8, in use)"; }
log "fsck of a mounted image: $(tail -1 "$T/fsck.out")"
mountpoint -q "$mnt" || die "fsck of a mounted image ended the mount"
[ "$(cat "$mnt/f")" = hello ] || die "file changed while fsck ran on the mounted image"
rlfs_umount "$mnt"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt"
[ "$(cat "$mnt/f")" = hello ] || die "data lost across remount"
[ "$(stat -c %i "$mnt/f")" = "$ino1" ] || die "st_ino of file changed across remount"
[ "$(stat -c %i "$mnt/d")" = "$dino1" ] || die "st_ino of dir changed across remount"
[ "$(stat -c %i "$mnt")" = "$rino1" ] || die "st_ino of the root changed across remount"
# statfs sanity
bs=$(stat -f -c %S "$mnt"); blocks=$(stat -f -c %b "$mnt"); bfree=$(stat -f -c %f "$mnt")
[ "$bs" -gt 0 ] && [ "$blocks" -gt 0 ] && [ "$bfree" -le "$blocks" ] ||
	die "statfs nonsense: bsize $bs blocks $blocks free $bfree"
rlfs_umount "$mnt"

# `reflinkfs umount DIR` works too
rlfs_mount "$img" "$mnt"
# no time limit of ours: it gives up itself if the daemon stops progressing
RLFS_UMOUNT_STALL_SECS=$STALL_SECS "$RLFS" umount "$mnt" || die "reflinkfs umount failed"
mountpoint -q "$mnt" && die "still mounted after reflinkfs umount"
_image_locked "$img" && die "image still locked after reflinkfs umount returned"
rlfs_fsck "$img"

# mount -o ro: writes fail with EROFS
rlfs_mount "$img" "$mnt" -o ro
rc=0; (echo x >"$mnt/g") 2>"$T/err" || rc=$?
[ $rc != 0 ] || die "write succeeded on a read-only mount"
grep -q "Read-only file system" "$T/err" || { cat "$T/err" >&2; die "write on a read-only mount failed without EROFS"; }
rlfs_umount "$mnt"

# -m rmapbt (RMAP feature, default on): the summary says so, rmapbt=0
# makes an image without it (fsck clean, mounts); a default image
# mounts read-write and read-only, and after writes fsck's rmap
# cross-check is clean; rmapbt=2 is refused
rimg=$T/rmap.img
rlfs_mkfs "$rimg" -s 64M
grep -q "reflink=1 rmapbt=1" "$T/mkfs.out" || { cat "$T/mkfs.out" >&2; die "mkfs summary does not show rmapbt=1 by default"; }
rlfs_mount "$rimg" "$mnt"
echo data >"$mnt/f" && cp "$mnt/f" "$mnt/g" && mkdir "$mnt/d" || die "writes on an rmapbt mount failed"
rlfs_umount "$mnt"
rlfs_fsck "$rimg"
rlfs_mount "$rimg" "$mnt" -o ro
[ "$(cat "$mnt/g")" = data ] || die "cannot read back a file on a read-only rmapbt mount"
rlfs_umount "$mnt"
rlfs_mkfs "$rimg" -s 64M -m rmapbt=0 -f
grep -q "reflink=1 rmapbt=0" "$T/mkfs.out" || { cat "$T/mkfs.out" >&2; die "mkfs summary does not show rmapbt=0"; }
rlfs_fsck "$rimg"
rlfs_mount "$rimg" "$mnt"
echo data >"$mnt/f" || die "write on an rmapbt=0 mount failed"
rlfs_umount "$mnt"
rlfs_fsck "$rimg"
rc=0; run_to 30 "$RLFS" mkfs -f -s 64M -m rmapbt=2 "$rimg" >/dev/null 2>&1 || rc=$?
[ $rc != 0 ] || die "mkfs accepted -m rmapbt=2"
log "rmapbt: on by default (rw and ro mounts, fsck clean after writes), rmapbt=0 works, rmapbt=2 refused"

# mount on a missing image / missing mount point: one-line error, non-zero
rc=0; run_to 30 "$RLFS" mount "$T/none.img" "$mnt" 2>"$T/err" || rc=$?
[ $rc != 0 ] || die "mount of a missing image exited 0"
[ "$(wc -l <"$T/err")" = 1 ] || { cat "$T/err" >&2; die "mount of a missing image: not one line of error"; }
mountpoint -q "$mnt" && die "mount of a missing image mounted something"
rc=0; run_to 30 "$RLFS" fsck "$T/none.img" >/dev/null 2>&1 || rc=$?
[ $rc = 8 ] || die "fsck of a missing image exited $rc, expected 8"

# mount -o uring where this process may not create an io_uring: the daemon
# checks before asking the kernel for it (afterwards the kernel would hold
# every request until the rings exist) and serves through /dev/fuse
dis=/proc/sys/kernel/io_uring_disabled
param=/sys/module/fuse/parameters/enable_uring
if [ -w "$dis" ] && [ -e "$param" ]; then
	dis_was=$(cat "$dis") param_was=$(cat "$param")
	echo 2 >"$dis"
	rc=0
	(rlfs_mount "$img" "$mnt" -o uring && run_to 30 sh -c "echo u >'$mnt/u' && cat '$mnt/u'" >"$T/u.out") || rc=$?
	echo "$dis_was" >"$dis"
	echo "$param_was" >"$param"
	[ $rc = 0 ] || die "mount -o uring without io_uring: I/O failed (exit $rc)"
	[ "$(cat "$T/u.out")" = u ] || die "mount -o uring without io_uring: wrong data"
	rlfs_umount "$mnt"
else
	log "SKIP mount -o uring fallback: no $param or $dis not writable"
fi

# a ring that cannot submit (injected: every reply after the first 40
# fails to submit) must end the session, not leave requests unanswered: the
# daemon unmounts and closes the image, I/O fails instead of hanging, and
# the image stays consistent
if [ -e "$param" ] && [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" = 0 ]; then
	param_was=$(cat "$param")
	RLFS_URING_FAIL_COMMIT=40 rlfs_mount "$img" "$mnt" -o uring
	rc=0
	# in a subdirectory: once the mount is gone, writes must not land in
	# the directory underneath
	run_to 60 sh -c "mkdir '$mnt/fail' && i=0 && while [ \$i -lt 2000 ]; do echo \$i >'$mnt/fail/f\$i' || exit 3; i=\$((i+1)); done" \
		2>"$T/fail.err" || rc=$?
	echo "$param_was" >"$param"
	[ $rc = 3 ] || { cat "$T/fail.err" >&2; die "I/O on a failed ring: exit $rc, expected a failed write (3), not success or a hang"; }
	daemon_wait daemon_of "$img" "the daemon with a failed ring to unmount" mountpoint -q "$mnt" ||
		die "the daemon with a failed ring did not unmount"
	wait_release "$img" || die "the daemon with a failed ring did not release $img"
	rlfs_fsck "$img"
else
	log "SKIP failed io_uring ring: no $param or io_uring disabled"
fi

rlfs_fsck "$img"
log OK

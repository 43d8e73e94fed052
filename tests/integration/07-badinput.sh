#!/bin/bash
# Bad input never crashes or hangs: truncated, zeroed and foreign (XFS,
# ext4) images, and a populated image with bytes flipped in each kind of
# metadata block (superblock, backup superblock, AG header, AGFL, bnobt,
# cntbt, inobt, inode, directory, bmbt, xattr, remote xattr value, remote
# symlink).  For each: fsck -n reports (exit 4 or 8), the daemon either
# refuses to mount with a one-line error or mounts and the affected
# operations fail with EIO/EUCLEAN (or with the error the damage implies:
# ENOENT for a name in a damaged directory, ENODATA for a lost xattr,
# ENOSPC/EROFS where the damaged free-space trees stop allocation, ESTALE);
# fsck in repair mode on a copy agrees that something is wrong; the daemon (run in the foreground under
# the sanitizers) exits cleanly after unmount (0, or 1 with its message when
# the damage shut the filesystem down); nothing takes longer than the
# timeouts.
. "$(dirname "$0")/../lib.sh"
common_setup
SCAN=$SRCDIR/tests/helpers/metascan.py

# walk a mounted tree: stat, read, readdir, readlink, listxattr/getxattr every
# entry; print errno counts; exit 3 if the mount died (ENOTCONN).
cat >"$T/walk.py" <<'PYEOF'
import os, sys, errno, collections
root = sys.argv[1]
errs = collections.Counter()
def note(e):
    errs[errno.errorcode.get(e.errno, str(e.errno))] += 1
    if e.errno in (errno.ENOTCONN, errno.ECONNABORTED):
        print("mount died:", e); sys.exit(3)
def visit(p):
    try:
        st = os.lstat(p)
    except OSError as e:
        note(e); return
    try:
        for n in os.listxattr(p, follow_symlinks=False):
            os.getxattr(p, n, follow_symlinks=False)
    except OSError as e:
        note(e)
    import stat as S
    if S.S_ISDIR(st.st_mode):
        try:
            names = os.listdir(p)
        except OSError as e:
            note(e); return
        for n in names:
            visit(os.path.join(p, n))
    elif S.S_ISREG(st.st_mode):
        try:
            with open(p, "rb") as f:
                while f.read(1 << 20):
                    pass
        except OSError as e:
            note(e)
    elif S.S_ISLNK(st.st_mode):
        try:
            os.readlink(p)
        except OSError as e:
            note(e)
visit(root)
# and a write: create + remove a file
try:
    with open(os.path.join(root, "probe.new"), "wb") as f:
        f.write(b"x" * 10000)
    os.unlink(os.path.join(root, "probe.new"))
except OSError as e:
    note(e)
bad = {k: v for k, v in errs.items() if k not in ("EIO", "EUCLEAN", "ENOENT", "ENOSPC", "EROFS", "ENODATA", "ESTALE")}
print("errors:", dict(errs))
if bad:
    print("unexpected errors (want EIO/EUCLEAN):", bad); sys.exit(4)
PYEOF

# check_bad IMAGE LABEL [MAYBE_STALE]: the contract for one damaged image.
# MAYBE_STALE=1: the damaged block may be a stale copy no longer referenced
# (a freed btree block keeps its magic), so fsck -n exit 0 is accepted and
# DETECTED=0 is set instead of failing.
check_bad() {
	local img=$1 label=$2 stale=${3:-0} rc=0 finding
	DETECTED=1
	run_to 120 "$RLFS" fsck -n "$img" >"$T/fsck.out" 2>&1 || rc=$?
	[ $rc != 124 ] && [ $rc != 137 ] || die "$label: fsck -n hung"
	is_crash $rc && { tail -20 "$T/fsck.out" >&2; die "$label: fsck -n crashed (exit $rc)"; }
	case $rc in
	4|8) finding=$(awk 'NF {print; exit}' "$T/fsck.out")
	     [ -n "$finding" ] || die "$label: fsck -n exited $rc without a message" ;;
	0) [ "$stale" = 1 ] || die "$label: fsck -n says clean (exit 0), expected 4 or 8"
	   DETECTED=0; finding="NOT DETECTED (stale block?)" ;;
	*) tail -5 "$T/fsck.out" >&2; die "$label: fsck -n exited $rc, expected 4 or 8" ;;
	esac
	# repair mode on a copy: no crash; if it says "corrected" the result is clean
	cp --sparse=always "$img" "$T/repair.img"
	rc=0; run_to 120 "$RLFS" fsck "$T/repair.img" >"$T/repair.out" 2>&1 || rc=$?
	is_crash $rc && { tail -20 "$T/repair.out" >&2; die "$label: fsck (repair) crashed or hung (exit $rc)"; }
	if [ $rc = 1 ]; then
		rc2=0; run_to 120 "$RLFS" fsck -n "$T/repair.img" >"$T/fsck2.out" 2>&1 || rc2=$?
		[ $rc2 = 0 ] || { tail -5 "$T/fsck2.out" >&2; die "$label: fsck said corrected (1) but fsck -n then exits $rc2"; }
	fi
	# fsck -n found damage: repair must see it too (corrected, or left)
	[ $DETECTED = 0 ] || [ $rc = 1 ] || [ $rc = 4 ] || [ $rc = 8 ] ||
		{ tail -5 "$T/repair.out" >&2; die "$label: fsck -n exited 4/8 but fsck (repair) exits $rc"; }
	local repair_rc=$rc
	rm -f "$T/repair.img"
	# mount in the foreground: refusal with a message, or a mount whose
	# damaged parts give EIO/EUCLEAN
	local mrc=0 how
	if rlfs_mount_fg "$img" "$T/mnt"; then
		rc=0; run_to 120 $PY "$T/walk.py" "$T/mnt" >"$T/walk.out" 2>&1 || rc=$?
		[ $rc != 124 ] || die "$label: walking the damaged mount hung"
		[ $rc = 0 ] || { cat "$T/walk.out" >&2; tail -20 "$FG_LOG" >&2; die "$label: walk failed (exit $rc)"; }
		rlfs_umount_fg "$T/mnt" || mrc=$?
		how="mounted, $(tail -1 "$T/walk.out")"
		# Exit 1 is the daemon's orderly answer when the walk's writes ran
		# into the damage inside a transaction: the filesystem shut down,
		# the unmount flush failed, and the log says so.  Anything else
		# nonzero (a signal, LeakSanitizer's 23, exit without that
		# message) is a crash; sanitizer reports fail the test in run.sh.
		if [ $mrc = 1 ] && grep -q 'error while flushing the filesystem at unmount' "$FG_LOG" &&
			! grep -qi 'sanitizer\|runtime error' "$FG_LOG"; then
			how="$how; shut down, daemon exit 1: $(grep -m1 'corrupt\|shut' "$FG_LOG")"
		elif [ $mrc != 0 ]; then
			tail -30 "$FG_LOG" >&2
			die "$label: daemon exited $mrc after unmount (crash or sanitizer report)"
		fi
	else
		is_crash "$FG_RC" && { tail -30 "$FG_LOG" >&2; die "$label: mount crashed (exit $FG_RC)"; }
		[ "$FG_RC" != 0 ] || die "$label: mount exited 0 without mounting"
		[ -s "$FG_LOG" ] || die "$label: mount refused without a message"
		grep -qi 'sanitizer\|runtime error' "$FG_LOG" && { cat "$FG_LOG" >&2; die "$label: sanitizer report"; }
		how="mount refused: $(head -1 "$FG_LOG")"
	fi
	log "$label: fsck -n: '$finding', repair exit $repair_rc; $how"
}

# --- zeroed, truncated, foreign, garbage images ---------------------------
truncate -s 256M "$T/zero.img"
check_bad "$T/zero.img" "zeroed image"
head -c 1M /dev/urandom >"$T/garbage.img"
check_bad "$T/garbage.img" "random garbage"
: >"$T/empty.img"
check_bad "$T/empty.img" "empty file"

truncate -s 512M "$T/xfs.img"
mkfs.xfs -q -f "$T/xfs.img"
check_bad "$T/xfs.img" "foreign XFS image"
truncate -s 256M "$T/ext4.img"
mkfs.ext4 -q -F "$T/ext4.img"
check_bad "$T/ext4.img" "foreign ext4 image"

# --- a populated image -------------------------------------------------------
img=$T/pop.img
rlfs_mkfs "$img" -s 256M -a 4
rlfs_mount "$img" "$T/mnt"
m=$T/mnt
mkdir -p "$m/big/dir" "$m/x"
for i in $(seq 1 400); do echo "file $i" >"$m/big/dir/entry-with-a-long-name-$i"; done
cp -a /usr/share/doc/bash "$m/" 2>/dev/null || cp -a /etc "$m/etc"
# fragmented file -> bmbt
$PY - "$m/frag" <<'PYEOF'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)
for i in range(0, 2000, 2):
    os.pwrite(fd, bytes([i % 251]) * 4096, i * 4096)
os.fsync(fd); os.close(fd)
PYEOF
# xattrs: many (attr btree) and a big value (remote value blocks)
$PY - "$m/x" <<'PYEOF'
import os, sys
p = sys.argv[1]
for i in range(300):
    os.setxattr(p, "user.attr-number-%04d" % i, b"v" * (i % 50 + 20))
os.setxattr(p, "user.bigvalue", os.urandom(60000))
PYEOF
ln -s "$(printf 'long/%.0s' $(seq 1 500))" "$m/longlink"
for i in $(seq 1 200); do echo $i >"$m/small$i"; done
rlfs_umount "$m"
rlfs_fsck "$img"
$PY "$SCAN" list "$img" >"$T/blocks"
log "metadata blocks by kind: $(cut -d' ' -f1 "$T/blocks" | sort | uniq -c | tr '\n' ' ')"

# second mount of the same image refused (lock), even in the foreground
rlfs_mount "$img" "$T/mnt"
rc=0; run_to 60 "$RLFS" mount -f "$img" "$T/mnt2" >"$T/second.out" 2>&1 || rc=$?
mountpoint -q "$T/mnt2" 2>/dev/null && die "second mount of the same image succeeded"
[ $rc != 0 ] && [ $rc != 124 ] || die "second foreground mount: exit $rc"
rlfs_umount "$T/mnt"
# (copied after that mount: with the write-ahead log even a mount that
# changes nothing writes log records and superblock LSNs)
cp --sparse=always "$img" "$T/pristine.img"

# truncated copies of the populated image
for cut in 100M 8K 1; do
	cp --sparse=always "$T/pristine.img" "$T/cut.img"
	truncate -s $cut "$T/cut.img"
	check_bad "$T/cut.img" "image truncated to $cut"
done
rm -f "$T/cut.img"

# mkfs without -f refuses to overwrite the populated filesystem
rc=0; run_to 60 "$RLFS" mkfs "$img" >/dev/null 2>&1 || rc=$?
[ $rc != 0 ] || die "mkfs without -f overwrote a populated filesystem"
cmp -s "$img" "$T/pristine.img" || die "refused mkfs still modified the image"

# flipped bytes in each kind of metadata block
kinds="sb agh agfl bnobt cntbt inobt inode dirbt bmbt attrbt attrv symlink"
bs=$($PY -c "import struct,sys;f=open(sys.argv[1],'rb');f.seek(52);print(struct.unpack('<I',f.read(4))[0])" "$img")
n=0
for kind in $kinds; do
	blocks=$(awk -v k=$kind '$1==k {print $2}' "$T/blocks")
	# the populated image is built to contain every kind
	[ -n "$blocks" ] || die "no $kind block found in the populated image (metascan or layout changed)"
	first=$(awk 'NR == 1' <<<"$blocks")
	last=$(echo "$blocks" | tail -1)
	# header byte (magic / blkno / owner / uuid) of the first block, a
	# middle byte of the last block of that kind (e.g. a backup sb)
	case $kind in sb|agh|agfl) stale=0 ;; *) stale=1 ;; esac
	detected=0
	for spec in "$first 9" "$first 17" "$last $((bs / 2 + 3))"; do
		set -- $spec
		cp --sparse=always "$T/pristine.img" "$T/case.img"
		$PY "$SCAN" flip "$T/case.img" "$1" "$2" $n
		check_bad "$T/case.img" "$kind block $1 byte $2" $stale
		detected=$((detected + DETECTED))
		n=$((n + 1))
	done
	[ $detected -gt 0 ] || die "no corruption of a $kind block was detected by fsck"
done

# random multi-byte corruption of metadata (several seeds)
for seed in 1 2 3 4 5; do
	cp --sparse=always "$T/pristine.img" "$T/case.img"
	$PY "$SCAN" rand "$T/case.img" 20 $seed >"$T/rand.out"
	check_bad "$T/case.img" "20 random metadata bytes (seed $seed)"
done
rm -f "$T/case.img"

# the daemon killed with SIGKILL in the middle of writes: the image is left
# as it was (no log in format v1); fsck, repair and mount must not crash or
# hang (fsck may find the half-done work: exit 0 or 4 both accepted)
cp --sparse=always "$T/pristine.img" "$T/killed.img"
rlfs_mount_fg "$T/killed.img" "$T/mnt" || die "mount for the kill test failed"
(
	for i in $(seq 1 50); do
		dd if=/dev/urandom of="$T/mnt/w$i" bs=64k count=20 conv=fsync status=none || exit 0
		mkdir "$T/mnt/dir$i" || exit 0
	done
) 2>/dev/null &
writer=$!
sleep 2
kill -9 "$FG_PID"
wait "$writer" || true
rlfs_umount_fg "$T/mnt" || true
check_bad "$T/killed.img" "daemon killed by SIGKILL during writes" 1
rm -f "$T/killed.img"

# the pristine image is still fine
rlfs_fsck "$img"
log OK

#!/bin/bash
# Waiting for a daemon after unmount goes by its progress, not by a fixed
# time, and a long shutdown shows what it is doing:
# 1. tests/lib.sh's wait_release waits as long as the lock holder makes
#    progress (here a stand-in that writes for 8 s: longer than the stall
#    limit), and gives up on one that makes none;
# 2. the daemon logs each step of its shutdown (RLFS_PROGRESS_SECS=0: from
#    the start) in order: requests, freeing deleted files still open when
#    it stopped (more than one batch of them), data flush, metadata blocks
#    written, metadata flush, close, image released (memory freed after
#    that), done; fsck is clean after and no block leaked;
# 3. `reflinkfs umount` says what it waits for (pid, step, stopped) while
#    the daemon is stopped, and gives up once the daemon has made no
#    progress for RLFS_UMOUNT_STALL_SECS; with a daemon that resumes it
#    waits and succeeds, the image released when it returns.
. "$(dirname "$0")/../lib.sh"
common_setup

# --- 1. lib.sh: wait_release against stand-in lock holders
touch "$T/lock.img"
cat >"$T/holder.py" <<'PYEOF'
import fcntl, os, sys, time
img, mode, secs, ready = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
fd = os.open(img, os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
open(ready, "w").close()
out = os.open(img + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
end = time.time() + secs
while time.time() < end:
    if mode == "busy":
        os.write(out, b"x" * 4096)   # progress: its write counters grow
    time.sleep(0.3)
PYEOF
for mode in busy idle; do
	rm -f "$T/ready"
	bg_run $PY "$T/holder.py" "$T/lock.img" $mode $([ $mode = busy ] && echo 8 || echo 60) "$T/ready"
	holder=$!
	while [ ! -e "$T/ready" ]; do sleep 0.05; done
	[ "$(daemon_of "$T/lock.img")" = "$holder" ] || die "daemon_of does not find the lock holder $holder"
	t0=$SECONDS rc=0
	STALL_SECS=3 wait_release "$T/lock.img" || rc=$?
	took=$((SECONDS - t0))
	if [ $mode = busy ]; then
		[ $rc = 0 ] || die "wait_release gave up on a holder that was making progress"
		[ $took -ge 6 ] || die "wait_release returned after $took s, the holder kept the lock 8 s"
	else
		[ $rc = 1 ] || die "wait_release did not give up on a holder making no progress"
		[ $took -lt 20 ] || die "wait_release took $took s to give up (stall limit 3 s)"
		kill "$holder"
	fi
	wait "$holder" 2>/dev/null || true
	log "wait_release, $mode holder: rc $rc after $took s"
done

# --- 2. the daemon's progress lines
img=$T/p.img mnt=$T/mnt
rlfs_mkfs "$img" -s 512M
RLFS_PROGRESS_SECS=0 rlfs_mount_fg "$img" "$mnt" || die "foreground mount failed"
free0=$(df_free_blocks "$mnt")
mkdir "$mnt/d"
for i in $(seq 1 40); do mkdir "$mnt/d/$i" && touch "$mnt/d/$i/"{a,b,c,d,e,f,g,h}; done
# deleted files still open when the daemon stops (SIGTERM on a busy
# mount: it detaches it): the daemon frees them at the end, 1100 of them
# (more than one pass of 1024)
cat >"$T/openrm.py" <<'PYEOF'
import os, resource, sys, time
d, n, ready, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100), hard))
fds = []
for i in range(n):
    p = os.path.join(d, "u%d" % i)
    fd = os.open(p, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"y" * 5000)
    os.unlink(p)
    fds.append(fd)
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.05)
for fd in fds:
    try:
        os.close(fd)
    except OSError:
        pass   # the connection is gone
PYEOF
rm -f "$T/ready" "$T/go"
bg_run $PY "$T/openrm.py" "$mnt" 1100 "$T/ready" "$T/go"
opener=$!
while [ ! -e "$T/ready" ]; do kill -0 $opener || die "opening files failed"; sleep 0.1; done
kill -TERM "$FG_PID"
daemon_wait _pid_of "$FG_PID" "the daemon to exit after SIGTERM" alive "$FG_PID" ||
	die "the daemon did not exit after SIGTERM"
rc=0
wait "$FG_PID" || rc=$?
[ $rc = 0 ] || { cat "$FG_LOG" >&2; die "daemon exit $rc"; }
touch "$T/go"
wait $opener || die "the opener failed"
mountpoint -q "$mnt" && die "the daemon left $mnt mounted"
cat "$FG_LOG"
steps=$(sed -n 's/^reflinkfs: unmount of [^:]*: //p' "$FG_LOG" | sed 's/[,(].*//; s/ *$//' | uniq | tr '\n' '|')
# (the superblock that says CLEAN goes in a flush of its own, after the
# rest: a second data/metadata/flush round may show before "image released")
case $steps in
*"finishing the requests in progress|"*"freeing deleted files that were still open|flushing file data to the image|writing metadata|flushing metadata to the image|closing the image|"*"image released|done after"*) ;;
*) die "the shutdown's steps are not all there in order: $steps" ;;
esac
grep -q "freeing deleted files that were still open, 0 of 1100 inodes" "$FG_LOG" ||
	die "the daemon did not say how many deleted files it frees"
grep -Eq "writing metadata, 0 of [1-9][0-9]* blocks" "$FG_LOG" || die "no metadata block count"
rlfs_fsck "$img"
rlfs_mount "$img" "$mnt"
[ "$(df_free_blocks "$mnt")" -lt "$free0" ] || die "the tree is gone?"
rm -rf "$mnt/d"
sync -f "$mnt"
[ "$(df_free_blocks "$mnt")" = "$free0" ] ||
	die "$(df_free_blocks "$mnt") blocks free after removing everything, $free0 at the start (deleted open files leaked)"
rlfs_umount "$mnt"
log "progress lines in order; deleted open files freed at unmount"

# --- 3. reflinkfs umount while the daemon is stopped
rlfs_mount "$img" "$mnt"
echo data >"$mnt/f"
pid=$(daemon_of "$img")
[ -n "$pid" ] || die "no daemon holds $img"
kill -STOP "$pid"
# resumes in any case (a reflinkfs umount that never gives up would
# otherwise wait for ever)
bg_run sh -c "sleep 25; kill -CONT $pid 2>/dev/null"
rc=0
RLFS_UMOUNT_STALL_SECS=8 run_to 60 "$RLFS" umount "$mnt" 2>"$T/umount.err" || rc=$?
kill -CONT "$pid"
cat "$T/umount.err"
[ $rc = 1 ] || die "reflinkfs umount of a stopped daemon: exit $rc, expected 1 (gave up)"
grep -q "waiting for the daemon (pid $pid) to release $img: .*the daemon is stopped" "$T/umount.err" ||
	die "reflinkfs umount did not say it waits for the stopped daemon"
grep -q "has made no progress for [0-9]* s" "$T/umount.err" || die "no 'no progress' message"
wait_release "$img" || die "the resumed daemon did not release $img"
rlfs_fsck "$img"

rlfs_mount "$img" "$mnt"
[ "$(cat "$mnt/f")" = data ] || die "data lost"
echo more >>"$mnt/f"
pid=$(daemon_of "$img")
kill -STOP "$pid"
bg_run sh -c "sleep 10; kill -CONT $pid 2>/dev/null"
rc=0
t0=$SECONDS
RLFS_UMOUNT_STALL_SECS=60 run_to 120 "$RLFS" umount "$mnt" 2>"$T/umount.err" || rc=$?
kill -CONT "$pid" 2>/dev/null || true   # (it has exited if it went on)
cat "$T/umount.err"
[ $rc = 0 ] || die "reflinkfs umount of a daemon stopped for 10 s: exit $rc"
[ $((SECONDS - t0)) -ge 5 ] || die "reflinkfs umount returned before the daemon resumed"
grep -q "waiting for the daemon (pid $pid) to release $img" "$T/umount.err" ||
	die "reflinkfs umount did not say what it waited for"
_image_locked "$img" && die "reflinkfs umount returned before the image was released"
for ((i = ${#_MOUNTS[@]} - 1; i >= 0; i--)); do [ "${_MOUNTS[i]}" = "$mnt" ] && _MOUNTS[i]=""; done
rlfs_fsck "$img"
log OK

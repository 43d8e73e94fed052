#!/bin/bash
# 36-crash-kill: kill -9 of the FUSE daemon under load, then remount: what
# fsync promised must be there (tests/crash/killload.py keeps a journal of
# every fsync'd file and of every operation in progress), and after the
# unmount fsck -n must be clean.
#
# 1. "busy" trials (the issue 10 scenario, deterministic): fsync'd files
#    a1..aN are truncated, new files b1..bN are written (not fsync'd) into
#    the blocks the truncates freed, the daemon is killed.
# 2. KILL_TRIALS random trials: a random load of creates, fsyncs,
#    truncates, unlinks and atomic replaces (write, fsync, rename, fsync
#    the directory), the daemon killed after a random time.
#
# Expectation, switched by the image's log feature bit (RLFS_FEAT_INCOMPAT_LOG,
# as rlfs-crashtest reports it for a fresh mkfs):
#  - with the log: no trial may lose fsync'd data, show foreign data or
#    leave fsck findings;
#  - without: the busy trials MUST show the damage (an fsync'd, then
#    truncated file holding another file's data, or fsck findings): proof
#    that this test sees it.  Random trials are counted and reported.
. "$(dirname "$0")/../lib.sh"
common_setup
KL=$SRCDIR/tests/crash/killload.py
CT=$(dirname "$RLFS")/rlfs-crashtest
IMG=$T/kill.img
MNT=$T/mnt
BUSY_TRIALS=${BUSY_TRIALS:-3}
KILL_TRIALS=${KILL_TRIALS:-20}

haslog=$("$CT" --workload fsx --mode synced --images 1 --ops 5 | sed -n 's/^RESULT .*log=\([01]\).*/\1/p')
[ -n "$haslog" ] || die "cannot tell whether mkfs makes a log"
log "log feature: $haslog"

damaged=0      # trials with any damage
busy_damaged=0
# after_kill NAME: remount, verify the journal, unmount, fsck -n; sets
# trial_bad=1 if anything is wrong
after_kill() {
	local name=$1 rc
	trial_bad=0
	rlfs_mount "$IMG" "$MNT"
	rc=0
	"$PY" "$KL" verify "$MNT" "$T/journal" >"$T/verify.out" 2>&1 || rc=$?
	[ $rc = 0 ] || [ $rc = 1 ] || { cat "$T/verify.out"; die "$name: verify failed to run (exit $rc)"; }
	if [ $rc = 1 ]; then
		trial_bad=1
		log "$name: $(tail -1 "$T/verify.out"): $(head -2 "$T/verify.out" | cut -c1-150 | tr '\n' ' ')" |
			tee -a "$T/damage.log"
	fi
	rlfs_umount "$MNT"
	rc=0
	run_to "$CMD_TIMEOUT" "$RLFS" fsck -n "$IMG" >"$T/fsck.out" 2>&1 || rc=$?
	[ $rc = 0 ] || [ $rc = 4 ] || { tail -5 "$T/fsck.out"; die "$name: fsck -n exit $rc"; }
	if [ $rc != 0 ]; then
		trial_bad=1
		log "$name: fsck -n exit $rc: $(grep -v "^$IMG" "$T/fsck.out" | head -4 | cut -c1-200 | tr '\n' ' ')" |
			tee -a "$T/damage.log"
	fi
	[ $trial_bad = 0 ] || damaged=$((damaged + 1))
}

for ((t = 1; t <= BUSY_TRIALS; t++)); do
	rm -f "$IMG" "$T/journal"
	rlfs_mkfs "$IMG" -s 256M
	rlfs_mount "$IMG" "$MNT"
	coproc BUSY { exec "$PY" "$KL" busy "$MNT" "$T/journal" 8; }
	_BGPIDS+=("$BUSY_PID")
	read -r -t 120 ready <&"${BUSY[0]}" || true
	[ "${ready:-}" = READY ] || die "busy trial $t: the load did not get ready"
	kill_daemon "$IMG" "$MNT"
	kill "$BUSY_PID" 2>/dev/null || true
	wait "$BUSY_PID" 2>/dev/null || true
	after_kill "busy trial $t"
	busy_damaged=$((busy_damaged + trial_bad))
done

for ((t = 1; t <= KILL_TRIALS; t++)); do
	rm -f "$IMG" "$T/journal"
	rlfs_mkfs "$IMG" -s 256M
	rlfs_mount "$IMG" "$MNT"
	"$PY" "$KL" load "$MNT" "$T/journal" "$((RANDOM + t))" >/dev/null 2>&1 &
	lpid=$!
	_BGPIDS+=("$lpid")
	# 0.3 .. 2.3 s of load
	sleep "$((RANDOM % 3)).$((RANDOM % 10))$((RANDOM % 10))"
	sleep 0.3
	kill_daemon "$IMG" "$MNT"
	wait "$lpid" 2>/dev/null || true
	nsync=$(grep -c "^S" "$T/journal" || true)
	[ "$nsync" -gt 0 ] || die "random trial $t: the load fsync'd nothing before the kill"
	after_kill "random trial $t ($nsync fsyncs)"
done

total=$((BUSY_TRIALS + KILL_TRIALS))
# the damage again at the end, where a CI log's tail shows it
[ ! -s "$T/damage.log" ] || cat "$T/damage.log" >&2
log "$damaged of $total trials damaged ($busy_damaged of $BUSY_TRIALS busy trials)"
if [ "$haslog" = 1 ]; then
	[ "$damaged" = 0 ] || die "log feature on: $damaged of $total kill -9 trials lost fsync'd data or left fsck findings"
else
	[ "$busy_damaged" -gt 0 ] ||
		die "no log, yet no busy trial showed damage: this test cannot see the truncate+create reuse"
fi

#!/bin/bash
# run.sh timeout: 1800
# The crash tester (rlfs-crashtest; docs/DESIGN.md "Crash testing"): record
# each workload on a crash-recording device, then mount, verify and fsck -n
# the image after a power cut at every flush point and at random cuts
# between them (unflushed writes lost, reordered, torn).
#
# What it demands depends on the image's log feature bit (format.h
# RLFS_FEAT_INCOMPAT_LOG, printed by the tester as "log=0|1"):
#  - always: every "synced" cut (right after an fsync/sync returned, nothing
#    written after it) is a clean image with every fsync'd byte: that holds
#    without a log too, so a failure there is a bug in the tester or in
#    sync;
#  - without the log: the other cuts MUST find damage (random cuts that
#    lose or tear unflushed metadata writes), which proves the tester can
#    fail;
#  - with the log: no crash image may fail at all.
# Then crashes during log recovery (--mode recovery): crash images whose
# log needs replay (every intent in its own checkpoint) are recovered on a
# recording device, the recovery is cut at each of its flushes and at
# random points, and the second recovery must give a clean fsck and every
# fsync'd byte (with the log: no failure; a few hundred images).
# Then crashes during fsck's own repair (--mode repair): damaged images
# repaired on a recording device, cut after each of its writes and at
# random subsets of each flush window; a second fsck must end clean with
# every file intact.
# CRASH_SEED, CRASH_COUNT (random cuts per flush interval), CRASH_IMAGES
# (cap per run), CRASH_FSCK_EVERY (every Nth image also replayed by fsck
# repair and compared with the mount's result, default 8),
# CRASH_RECOVERY_IMAGES (crash images per workload whose recovery is cut,
# default 3) and CRASH_REPAIR_COUNT (random-subset cuts per flush of the
# repair, default 2) change the run; `make crashtest` is the long
# version.
. "$(dirname "$0")/../lib.sh"

CT=$(dirname "$RLFS")/rlfs-crashtest
[ -x "$CT" ] || die "$CT missing: build it (ninja -C $(dirname "$RLFS"))"
SEED=${CRASH_SEED:-1}
COUNT=${CRASH_COUNT:-4}
IMAGES=${CRASH_IMAGES:-0}

# bad input: a clear error and exit 2, never a crash
for bad in "--workload nosuch" "--mode nosuch" "--seed x" "--count -1" "extra" "--mode repair --damage nosuch"; do
	set +e
	# shellcheck disable=SC2086
	"$CT" $bad >"$T/bad.out" 2>&1
	rc=$?
	set -e
	[ "$rc" = 2 ] || { cat "$T/bad.out"; die "rlfs-crashtest $bad: exit $rc, expected 2"; }
	grep -q "rlfs-crashtest\|usage" "$T/bad.out" || die "rlfs-crashtest $bad: no message"
done

field() { # RESULT-line field: field NAME FILE
	sed -n "s/^RESULT .*\\b$1=\\([0-9]*\\).*/\\1/p" "$2" | tail -1
}

# 1. synced cuts: clean today and forever
set +e
run_to 600 "$CT" --workload all --mode synced --seed "$SEED" >"$T/synced.out" 2>&1
rc=$?
set -e
grep -E "^(workload|checked|by cut|damage|RESULT)" "$T/synced.out" || true
[ "$rc" = 0 ] || { grep -A4 "^FAIL" "$T/synced.out" | head -40; die "synced cuts: exit $rc (a completed sync must leave a clean image)"; }
n=$(field images "$T/synced.out")
[ "${n:-0}" -ge 50 ] || die "synced cuts: only ${n:-0} images checked"
log "synced cuts: $n images, all clean"

# 1b. the same cuts on a lying device (its last flush not done): the
# checker must see lost fsync'd data there, or step 1 proves nothing
set +e
run_to 600 "$CT" --workload fsx --mode synced --lying-flush --seed "$SEED" >"$T/lying.out" 2>&1
rc=$?
set -e
grep -E "^(checked|damage)" "$T/lying.out" || true
[ "$rc" = 1 ] || { tail -20 "$T/lying.out"; die "lying flush: exit $rc, expected 1 (failures found)"; }
grep -Eq "^damage .*(missing|size|zeros|stale|foreign)" "$T/lying.out" ||
	die "lying flush: no lost fsync'd data reported (only fsck findings?)"
log "lying flush: $(field failed "$T/lying.out") of $(field images "$T/lying.out") synced cuts fail, as they must"

# 1c. the same for the meta workload's names, attributes, link counts and
# xattrs (its image findings other than orphans)
set +e
run_to 600 "$CT" --workload meta --mode synced --lying-flush --seed "$SEED" \
	>"$T/lying-meta.out" 2>&1
rc=$?
set -e
grep -E "^(checked|damage)" "$T/lying-meta.out" || true
[ "$rc" = 1 ] || { tail -20 "$T/lying-meta.out"; die "lying flush, meta: exit $rc, expected 1 (failures found)"; }
grep -Eq "^damage .*(missing|name|xattr|attr|nlink)" "$T/lying-meta.out" ||
	die "lying flush, meta: no lost fsync'd name, attribute or xattr reported"
log "lying flush, meta: $(field failed "$T/lying-meta.out") of $(field images "$T/lying-meta.out") synced cuts fail, as they must"

# 2. every kind of cut
set +e
run_to 900 "$CT" --workload all --mode all --seed "$SEED" --count "$COUNT" \
	--images "$IMAGES" --fsck-every "${CRASH_FSCK_EVERY:-8}" >"$T/all.out" 2>&1
rc=$?
set -e
grep -E "^(workload|checked|fsck replay|by cut|damage|RESULT)" "$T/all.out" || true
[ "$rc" = 0 ] || [ "$rc" = 1 ] || { tail -20 "$T/all.out"; die "rlfs-crashtest: exit $rc"; }
n=$(field images "$T/all.out")
failed=$(field failed "$T/all.out")
haslog=$(field log "$T/all.out")
[ -n "$n" ] && [ -n "$failed" ] && [ -n "$haslog" ] || die "no RESULT line"
[ "$n" -ge 500 ] || [ "$IMAGES" != 0 ] || die "only $n crash images checked"
if [ "$haslog" = 1 ]; then
	# with the log every crash image must pass: any failure is a bug
	if [ "$failed" != 0 ]; then
		grep -A6 "^FAIL" "$T/all.out" | head -60
		die "log feature on: $failed of $n crash images failed (see above; reproduce with the FAIL line's options)"
	fi
	grep -q "^fsck replay: [1-9]" "$T/all.out" || [ "$IMAGES" != 0 ] ||
		die "no image was also replayed by fsck"
	log "log feature on: $n crash images, none failed"
else
	# without a log, unflushed metadata writes lost or torn must show
	random=$(sed -n 's/^by cut: .*random \([0-9]*\)\/\([0-9]*\) failed.*/\1/p' "$T/all.out")
	[ "${random:-0}" -gt 0 ] ||
		die "no log, yet no random (lost/torn write) cut failed: the tester cannot see damage"
	grep -q "^    fsck: " "$T/all.out" ||
		die "no log, yet fsck found nothing in any crash image"
	log "no log feature: $failed of $n crash images damaged as expected ($random at random cuts)"
fi

# 3. crashes during recovery
RIMAGES=${CRASH_RECOVERY_IMAGES:-3}
set +e
run_to 900 "$CT" --workload all --mode recovery --seed "$SEED" --count 1 --images "$RIMAGES" \
	>"$T/recovery.out" 2>&1
rc=$?
set -e
grep -E "^(checked|recovery|damage|RESULT)" "$T/recovery.out" || true
[ "$rc" = 0 ] || [ "$rc" = 1 ] || { tail -20 "$T/recovery.out"; die "rlfs-crashtest --mode recovery: exit $rc"; }
rn=$(field recovery_images "$T/recovery.out")
rfailed=$(field recovery_failed "$T/recovery.out")
replayed=$(field replayed "$T/recovery.out")
[ -n "$rn" ] && [ -n "$rfailed" ] && [ -n "$replayed" ] || die "recovery: no RESULT line"
if [ "$(field log "$T/recovery.out")" = 1 ]; then
	[ "$replayed" -ge 7 ] || die "recovery: only $replayed crash images needed replay"
	[ "$rn" -ge 100 ] || die "recovery: only $rn images of crashes during recovery checked"
	if [ "$rc" != 0 ] || [ "$rfailed" != 0 ]; then
		grep -A6 "^FAIL" "$T/recovery.out" | head -60
		die "crashes during recovery: $rfailed of $rn images failed (see above)"
	fi
	log "crashes during recovery: $rn images (recoveries of $replayed crash images cut), none failed"
	# long deferred chains relog their intents (docs/DESIGN.md "Deferred
	# operations"): with forced intents cowwide's chains would fill the
	# 128-block log of these images without it
	grep -q "^workload log: .* [1-9][0-9]* relogged" "$T/recovery.out" ||
		die "recovery: no workload relogged an intent (the workload log lines: $(grep -c '^workload log' "$T/recovery.out"))"
fi

# 3a. crashes during fsck's own repair (--mode repair, tests/crash/crash_repair.c):
# each damage kind fsck repairs (stale counters, link count and parent,
# orphans, a broken unlinked list, a lost inobt record, a zeroed bmbt, the
# AG trees, mixes; directory entries naming a free inode or no inode, files
# named nowhere (linked into a new /lost+found), inode cores damaged beyond
# use (cleared), every inobt root zeroed, a directory leaf zeroed, an
# entry under a wrong hash, a directory's root pointer out of the
# filesystem (its leaf found through the rmap) and a directory leaf failing
# its crc (the entries that prove themselves kept): the directory rebuilt
# from what can be read; a refcount off by one in a full filesystem whose
# AG rebuild must write its new trees over old tree blocks, and with the
# rebuild made to take the old rmapbt's blocks first: allowed when no other
# repair reads the rmapbt, refused when an inobt record must be found
# again in it)
# is repaired on a recording
# device (the repairs through a mount with each commit durable on its
# own, so that cuts fall between two transactions); the repair is cut
# after each of its writes and at random subsets of each flush
# window (CRASH_REPAIR_COUNT per flush, default 2), and a second fsck must
# end clean with every file intact where the kind leaves it (a cleared
# file gone, a lost one under /lost+found, link counts as the repair sets
# them) and room for a new one; where only the
# last AG is damaged, the other AGs (rebuilt too) must check clean at every
# cut
set +e
run_to 600 "$CT" --mode repair --damage all --seed "$SEED" --count "${CRASH_REPAIR_COUNT:-2}" \
	>"$T/repair.out" 2>&1
rc=$?
set -e
grep -E "^(repair|checked|RESULT)" "$T/repair.out" || true
[ "$rc" = 0 ] || [ "$rc" = 1 ] || { tail -20 "$T/repair.out"; die "rlfs-crashtest --mode repair: exit $rc"; }
rn=$(field images "$T/repair.out")
rfailed=$(field failed "$T/repair.out")
kinds=$(field kinds "$T/repair.out")
[ -n "$rn" ] && [ -n "$rfailed" ] && [ -n "$kinds" ] || die "repair: no RESULT line"
[ "$kinds" -ge 21 ] || die "repair: only $kinds damage kinds recorded (21 with the rmap btree)"
[ "$rn" -ge 300 ] || die "repair: only $rn images of crashes during fsck repair checked"
if [ "$rc" != 0 ] || [ "$rfailed" != 0 ]; then
	grep -A6 "^FAIL" "$T/repair.out" | head -60
	die "crashes during fsck repair: $rfailed of $rn images failed (see above)"
fi
log "crashes during fsck repair: $rn images over $kinds damage kinds, none failed"

if [ "$haslog" = 1 ]; then
	# 3b. crashes during recovery that once failed, kept as fixed cases:
	# a clone whose relogged BUI unmap was replayed after the map of the
	# same range (recovery relogged recovered work as new intents), and a
	# recovery transaction that logged an unchanged inode (an empty image
	# item, which made the whole log unreplayable)
	for args in "--workload clone --seed 2 --ops 100 --cut 174" \
		    "--workload enospc --seed 2 --ops 60 --cut 108"; do
		set +e
		# shellcheck disable=SC2086
		run_to 300 "$CT" $args --count 1 --mode recovery --images 6 >"$T/fixed.out" 2>&1
		rc=$?
		set -e
		rn=$(field recovery_images "$T/fixed.out")
		rfailed=$(field recovery_failed "$T/fixed.out")
		[ "$rc" = 0 ] && [ "${rfailed:-1}" = 0 ] && [ "${rn:-0}" -ge 10 ] || {
			grep -A6 "^FAIL" "$T/fixed.out" | head -30
			die "recovery cuts of $args: exit $rc, ${rfailed:-?} of ${rn:-?} failed"
		}
		log "recovery cuts of $args: $rn images, none failed"
	done
	# fixed_cuts NAME MIN_IMAGES FORCE CT_ARGS...: every cut of a run that
	# once failed must pass now (FORCE=1: RLFS_LOG_FORCE_INTENTS)
	fixed_cuts() {
		local name=$1 min=$2 force=$3 n failed
		shift 3
		set +e
		RLFS_LOG_FORCE_INTENTS=$force run_to 300 "$CT" "$@" >"$T/fixed.out" 2>&1
		rc=$?
		set -e
		n=$(field images "$T/fixed.out")
		failed=$(field failed "$T/fixed.out")
		[ "$rc" = 0 ] && [ "${failed:-1}" = 0 ] && [ "${n:-0}" -ge "$min" ] || {
			grep -A6 "^FAIL" "$T/fixed.out" | head -30
			die "$name: exit $rc, ${failed:-?} of ${n:-?} failed"
		}
		log "$name: $n images, none failed"
	}
	# ... a crash image that once could not be recovered: a CoW remap split
	# a data-fork extent and queued "unmap the whole old record, map the
	# rest" as its RUI, and recovery (pending intents in log order) had
	# already split that record by finishing an older pending BUI
	fixed_cuts "cowwide seed 2 cuts" 200 0 --workload cowwide --seed 2 --count 3 --mode all
	# ... and one where a dedupe's pending BUI map was recovered before the
	# RUI unmaps that its unmap (done, logged later) had queued: recovery
	# now logs each recovered intent's follow-up work as new intents and
	# finishes them after all the others (lib/log_intent.c)
	fixed_cuts "dedupe seed 5 forced-intent cuts" 150 1 --workload dedupe --seed 5 --count 1 \
		--mode all
	# ... and exchanges cut between their XMI steps (each step's done, fork
	# changes and the next XMI in one checkpoint): every file whole at its
	# old or its new version (check_exchanges); with the steps done without
	# an intent, hundreds of these images fail
	fixed_cuts "exchange seed 1 forced-intent cuts" 500 1 --workload exchange --seed 1 \
		--count 1 --mode all

	# 4. every intent in a checkpoint of its own (RLFS_LOG_FORCE_INTENTS): the
	# cuts then fall between an intent and its done, so recovery has to finish
	# EFIs, CUIs and the BUIs of clones and copy-on-write remaps
	set +e
	RLFS_LOG_FORCE_INTENTS=1 run_to 900 "$CT" --workload all --mode all --seed "$SEED" --count 2 \
		--images "${INTENT_IMAGES:-250}" >"$T/intents.out" 2>&1
	rc=$?
	set -e
	grep -E "^(checked|by cut|damage|RESULT)" "$T/intents.out" || true
	n=$(field images "$T/intents.out")
	failed=$(field failed "$T/intents.out")
	[ "$rc" = 0 ] && [ "${failed:-1}" = 0 ] || {
		grep -A6 "^FAIL" "$T/intents.out" | head -60
		die "intents in their own checkpoints: exit $rc, ${failed:-?} of ${n:-?} crash images failed"
	}
	[ "${n:-0}" -ge 300 ] || die "intents: only ${n:-0} crash images checked"
	log "intents in their own checkpoints: $n crash images, none failed"

	# 5. collapse and insert range (the shift workload): with every intent
	# in its own checkpoint the cuts fall between the steps of a shift's
	# SXI chain, and every file must be wholly before or after each shift
	# (the checker's "torn" finding; a shift done one step per transaction
	# without the intent fails it, as the development notes record)
	set +e
	RLFS_LOG_FORCE_INTENTS=1 run_to 900 "$CT" --workload shift --mode all --seed "$SEED" \
		--count 2 >"$T/shift.out" 2>&1
	rc=$?
	set -e
	grep -E "^(checked|by cut|damage|RESULT)" "$T/shift.out" || true
	n=$(field images "$T/shift.out")
	failed=$(field failed "$T/shift.out")
	[ "$rc" = 0 ] && [ "${failed:-1}" = 0 ] || {
		grep -A6 "^FAIL" "$T/shift.out" | head -60
		die "shift workload, intents forced: exit $rc, ${failed:-?} of ${n:-?} crash images failed"
	}
	[ "${n:-0}" -ge 300 ] || die "shift: only ${n:-0} crash images checked"
	log "shift workload, intents in their own checkpoints: $n crash images, none torn"
fi

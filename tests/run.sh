#!/bin/bash
# reflinkfs test runner.
#
#   tests/run.sh BUILD [unit|integration|all] [NAME-PATTERN]
#
# Runs every unit test binary BUILD/test_* and every tests/integration/*.sh
# (each in a private temp dir, with RLFS=BUILD/reflinkfs FSX=BUILD/rlfs-fsx),
# prints one line per test, "PASS name (Ns)" or "FAIL name (Ns)" followed by
# the failing test's last output lines, and ends with "N passed, N failed".
# Exit status is non-zero if any test failed.  Must run as root (FUSE mounts,
# loop devices); a missing /dev/fuse makes the mount tests fail, not skip.
#
# Integration tests named in URING_TESTS run a second time ("NAME+uring")
# with the daemon on FUSE over io_uring, on kernels that have it, and those
# in DAX_TESTS a second time ("NAME+dax") with every mount -o dax
# (RLFS_DAX=1: the daemon serves file data from its mapping of the image).
#
# Log reservations: every test (unit binaries, integration scripts and the
# FUSE daemons they start, which inherit the environment) runs with
# RLFS_RESV_REPORT naming one file of this run; a commit that logs more
# than its transaction type's reservation appends an "overrun" line there
# and each mount appends its per-type maximum use at teardown
# (lib/trans_resv.h).  A last test, "resv/log-reservations", fails if any
# overrun line was written, and prints the headroom table (RESV_TABLE=0:
# not; RESV_KEEP=FILE appends the raw report to FILE).
#
# An integration script may ask for a longer limit with a line
# "# run.sh timeout: SECONDS" (the crash tests, whose work grows with
# every new operation); TEST_TIMEOUT, when larger, wins.
#
# The unit tests and BG_TESTS (default: the crash tester, the fsck fuzzer,
# three slow fsck image tests, 09-bigdir and 36-crash-kill) run in a
# second lane beside the FUSE integration tests, reported after them (see
# "The background lane" below); BG_TESTS= runs one lane.
#
# Environment: TEST_TIMEOUT (seconds per test, default 900), KEEP=1 keeps
# the temp dirs of failed tests, TAIL (lines shown on failure, default 25).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u

usage() {
	echo "usage: $0 BUILD [unit|integration|all] [NAME-PATTERN]" >&2
	exit 2
}
[ $# -ge 1 ] || usage
case "${1:-}" in -h|--help) usage ;; esac
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "run.sh: no build dir $1" >&2; exit 2; }
WHAT=${2:-all}
PATTERN=${3:-}
case "$WHAT" in unit|integration|all) ;; *) usage ;; esac
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
TEST_TIMEOUT=${TEST_TIMEOUT:-900}
TAIL=${TAIL:-25}
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

# Sanitizer settings: fail hard on any finding, no leak noise from daemons
# that exit through fuse_session_exit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0
failed=0
failed_names=()
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/rlfs-run.XXXXXX")
export RLFS_RESV_REPORT=$LOGDIR/resv-report
: >"$RLFS_RESV_REPORT"

report() { # name rc secs logfile
	local name=$1 rc=$2 secs=$3 logf=$4
	if [ "$rc" = 0 ]; then
		echo "PASS $name (${secs}s)"
		passed=$((passed + 1))
	else
		local why="exit $rc"
		[ "$rc" = 124 ] && why="timeout after ${secs}s"
		echo "FAIL $name (${secs}s, $why)"
		# the first failure lines, then the tail: a reader of a cut
		# log (CI keeps its start and end) still sees what failed
		grep -m 4 -E 'FAIL|FAILURE|ERROR: AddressSanitizer|runtime error' "$logf" |
			sed 's/^/    ! /' || true
		tail -n "$TAIL" "$logf" | sed 's/^/    | /'
		failed=$((failed + 1))
		failed_names+=("$name")
	fi
}

if [ "$(id -u)" != 0 ]; then
	echo "FAIL run.sh: must run as root (FUSE mounts and loop devices)"
	echo "0 passed, 1 failed"
	exit 1
fi

# Safety net: unmount anything still mounted below a test's temp dir.
sweep_mounts() {
	local t=$1 mp
	awk '{print $2}' /proc/self/mounts | grep -F "$t" | sort -r | while read -r mp; do
		mp=$(printf '%b' "$mp")
		fusermount3 -u "$mp" 2>/dev/null || umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null
	done
	for dev in $(losetup -a 2>/dev/null | grep -F "$t" | cut -d: -f1); do
		losetup -d "$dev" 2>/dev/null
	done
}

# Each test runs in the background under timeout(1) (which puts it in a
# process group of its own) and is waited for with wait_test, so that a
# TERM or INT to run.sh (or to the background lane) is handled at once,
# not after the test: the test's timeout gets TERM, passes it on to the
# test, whose EXIT trap unmounts what it mounted.
cur_test=""
wait_test() { # PID: its exit status
	local rc
	cur_test=$1
	wait "$1"
	rc=$?
	cur_test=""
	return $rc
}
kill_test() {
	[ -z "$cur_test" ] || kill -TERM "$cur_test" 2>/dev/null
}

# run_script SCRIPT NAME [VAR=VALUE...]: one integration test script
run_script() {
	local script=$1 name=$2 base rc start logf tdir limit own
	shift 2
	limit=$TEST_TIMEOUT
	own=$(sed -n 's/^# run\.sh timeout: \([0-9][0-9]*\)$/\1/p' "$script" | head -n 1)
	[ -z "$own" ] || [ "$own" -le "$limit" ] || limit=$own
	base=${name#integration/}
	base=${base//+/-}
	logf=$LOGDIR/$base.log
	tdir=$(mktemp -d "${TMPDIR:-/tmp}/rlfs-$base.XXXXXX")
	start=$(date +%s)
	# Sanitizer reports of every process of the test (including the
	# daemonized FUSE server, whose stderr is gone) go to files in the
	# test's dir; any report fails the test.
	env "$@" RLFS="$BUILD/reflinkfs" FSX="$BUILD/rlfs-fsx" BUILD="$BUILD" SRCDIR="$SRCDIR" \
		T="$tdir" TEST_NAME="$base" \
		ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$tdir/sanitizer" \
		UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$tdir/sanitizer" \
		timeout -k 15 "$limit" bash "$script" >"$logf" 2>&1 </dev/null &
	wait_test $!
	rc=$?
	sweep_mounts "$tdir"
	if ls "$tdir"/sanitizer.* >/dev/null 2>&1; then
		{
			echo "--- sanitizer reports:"
			for f in "$tdir"/sanitizer.*; do head -n 40 "$f"; done
		} >>"$logf"
		[ "$rc" != 0 ] || rc=99
	fi
	report "$name" "$rc" $(($(date +%s) - start)) "$logf"
	if [ "$rc" != 0 ] && [ "${KEEP:-0}" = 1 ]; then
		echo "    (kept $tdir, full log $logf)"
	else
		rm -rf --one-file-system "$tdir"
	fi
}

# The unit tests: every BUILD/test_* binary.
run_units() {
	local found=0 bin name logf start tdir rc
	for bin in "$BUILD"/test_*; do
		[ -f "$bin" ] && [ -x "$bin" ] || continue
		name=unit/$(basename "$bin")
		[ -z "$PATTERN" ] || [[ "$name" == *$PATTERN* ]] || continue
		found=1
		logf=$LOGDIR/$(basename "$bin").log
		start=$(date +%s)
		tdir=$(mktemp -d "${TMPDIR:-/tmp}/rlfs-unit.XXXXXX")
		(cd "$tdir" && TMPDIR=$tdir exec timeout -k 10 "$TEST_TIMEOUT" "$bin") >"$logf" 2>&1 </dev/null &
		wait_test $!
		rc=$?
		[ "$rc" != 124 ] || echo "(timeout after ${TEST_TIMEOUT}s)" >>"$logf"
		report "$name" "$rc" $(($(date +%s) - start)) "$logf"
		rm -rf --one-file-system "$tdir"
	done
	if [ $found = 0 ] && [ -z "$PATTERN" ]; then
		echo "FAIL unit: no test_* binaries in $BUILD"
		failed=$((failed + 1))
	fi
}

# The background lane.  The unit tests (in-process, no mount) and the
# integration tests that keep one CPU busy for minutes with little FUSE
# traffic (BG_TESTS: the crash tester, in-process; the fsck fuzzer, which
# mounts once; the slowest fsck image tests, offline but for a mount to
# read the repaired files back; and two FUSE tests that share nothing with
# the others, 09-bigdir and 36-crash-kill, which keep the two lanes near
# the same length: 1,144 s against 677 s in one lane before them) run in a
# second lane beside the FUSE integration tests, which spend much of their
# time waiting on the kernel, so two CPUs are both kept busy.  The lane's PASS/FAIL lines are printed, and counted,
# after the main lane's.  If run.sh is interrupted or killed the lane's
# processes are killed too (bg_kill).  BG_TESTS= runs everything in one
# lane, in the old order (units, then integration by name).
BG_TESTS=${BG_TESTS-"35-crash 54-fsck-fuzz 59-fsck-dir-relink 52-fsck-rebuild 57-fsck-images 09-bigdir 36-crash-kill"}
in_bg() { [[ " $BG_TESTS " == *" $1 "* ]]; }
bg_pid=""
# on the way out (also on INT/TERM): the running test and the lane, which
# kills its own running test (see wait_test)
bg_kill() {
	kill_test
	[ -n "$bg_pid" ] || return 0
	kill -TERM "$bg_pid" 2>/dev/null
	wait "$bg_pid" 2>/dev/null
	bg_pid=""
}
trap bg_kill EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -n "$BG_TESTS" ] && { [ "$WHAT" = integration ] || [ "$WHAT" = all ]; }; then
	(
		trap - EXIT
		trap 'kill_test; exit 143' TERM INT
		passed=0
		failed=0
		failed_names=()
		[ "$WHAT" != all ] || run_units
		for base in $BG_TESTS; do
			script=$SRCDIR/tests/integration/$base.sh
			name=integration/$base
			[ -f "$script" ] || continue
			[ -z "$PATTERN" ] || [[ "$name" == *$PATTERN* ]] || continue
			run_script "$script" "$name"
		done
		echo "$passed $failed ${failed_names[*]}" >"$LOGDIR/bg.counts"
	) >"$LOGDIR/bg.out" 2>&1 &
	bg_pid=$!
elif [ "$WHAT" = unit ] || [ "$WHAT" = all ]; then
	run_units
fi

# Tests that run a second time with the daemon serving requests through
# FUSE over io_uring (mount -o uring; RLFS_URING=1), where the kernel has it.
URING_TESTS=${URING_TESTS:-"02-copy-trees 03-enospc 05-fsx 06-parallel 20-ioctl-shim 22-clone-group 28-privs 29-clone-kill 44-atime 55-dedupe 66-dax-mmap"}
URING_PARAM=/sys/module/fuse/parameters/enable_uring
# Tests that run a second time with every mount -o dax (RLFS_DAX=1).
DAX_TESTS=${DAX_TESTS:-"05-fsx 20-ioctl-shim 22-clone-group 23-cp-tree 21-fsx-reflink 55-dedupe 61-cowfork 62-enospc-wbcache"}

if [ "$WHAT" = integration ] || [ "$WHAT" = all ]; then
	for script in "$SRCDIR"/tests/integration/*.sh; do
		[ -f "$script" ] || continue
		name=integration/$(basename "$script" .sh)
		[ -z "$PATTERN" ] || [[ "$name" == *$PATTERN* ]] || continue
		[ -z "$bg_pid" ] || ! in_bg "$(basename "$script" .sh)" || continue
		run_script "$script" "$name"
	done
	if [ -e "$URING_PARAM" ] && [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" = 0 ]; then
		uring_was=$(cat "$URING_PARAM")
		for base in $URING_TESTS; do
			script=$SRCDIR/tests/integration/$base.sh
			name=integration/$base+uring
			[ -f "$script" ] || continue
			[ -z "$PATTERN" ] || [[ "$name" == *$PATTERN* ]] || continue
			run_script "$script" "$name" RLFS_URING=1
		done
		echo "$uring_was" >"$URING_PARAM" 2>/dev/null
	else
		echo "SKIP the +uring runs of $URING_TESTS: this kernel has no FUSE over io_uring ($URING_PARAM) or io_uring is disabled"
	fi
	for base in $DAX_TESTS; do
		script=$SRCDIR/tests/integration/$base.sh
		name=integration/$base+dax
		[ -f "$script" ] || continue
		[ -z "$PATTERN" ] || [[ "$name" == *$PATTERN* ]] || continue
		# two fsx cycles (21-fsx-reflink) keep the added time near two minutes
		run_script "$script" "$name" RLFS_DAX=1 FSX_CYCLES=${FSX_CYCLES:-2}
	done
fi

if [ -n "$bg_pid" ]; then
	wait "$bg_pid"
	bg_pid=""
	cat "$LOGDIR/bg.out"
	if read -r bp bf bn <"$LOGDIR/bg.counts" 2>/dev/null; then
		passed=$((passed + bp))
		failed=$((failed + bf))
		[ -z "$bn" ] || failed_names+=($bn)
	else
		echo "FAIL background lane ($BG_TESTS): no result"
		failed=$((failed + 1))
	fi
fi

# The log reservation check over everything above: no transaction may
# have logged more than its type's reservation.
resv_check() {
	local rep=$RLFS_RESV_REPORT logf=$LOGDIR/resv-check.log start rc=0
	start=$(date +%s)
	if grep -q 'log reservation overrun' "$rep" 2>/dev/null; then
		{
			echo "transactions logged more than their reservation:"
			grep 'log reservation overrun' "$rep" | sort | uniq -c | sort -rn | head -n 40
		} >"$logf"
		rc=1
	fi
	report "resv/log-reservations" "$rc" $(($(date +%s) - start)) "$logf"
	# the headroom table: per type (and block size), the most any commit
	# used and the reservation
	if [ -s "$rep" ] && [ "${RESV_TABLE:-1}" = 1 ]; then
		awk '$1 == "resv" {
			k = $2 " bs " $10; n[k] += $8
			if ($6 > max[k]) max[k] = $6
			r = $4 ? $6 / $4 : 0
			if (!(k in worst) || r > worst[k]) { worst[k] = r; wres[k] = $4; wused[k] = $6 } }
		END { for (k in max) printf "    %-26s max %9.0f bytes; worst %9.0f of %10.0f (%5.1f%%); %d commits\n",
			k, max[k], wused[k], wres[k], 100 * worst[k], n[k] }' "$rep" | sort
	fi
}
resv_check
# RESV_KEEP=FILE: append this run's report to FILE (tables over several runs)
[ -z "${RESV_KEEP:-}" ] || cat "$RLFS_RESV_REPORT" >>"$RESV_KEEP"

[ "${KEEP:-0}" = 1 ] || rm -rf "$LOGDIR"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

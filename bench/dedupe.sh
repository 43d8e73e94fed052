#!/bin/bash
# Offline dedupe benchmark (issue 12 section 3): Debian's duperemove against
# `reflinkfs dedupe` on a kernel XFS loop mount, then `reflinkfs dedupe` on
# a reflinkfs mount, all on one corpus; a markdown table and the issue's
# targets with met/missed.
#
#   bench/dedupe.sh BUILD            (or `make bench-dedupe`; root)
#
# Corpus (bench/dedupe_corpus.py, seeded, from this machine's /usr/share and
# /usr/lib): a/ and b/ (two identical copies of the selected files),
# edited/ (every file with one 4 KiB block overwritten), shifted/ (files of
# 64 KiB or more with k x 4096 bytes prepended), tar/corpus.tar (real GNU
# tar of half the files: data at 512-byte, not 4096-byte, offsets) and
# concat/pack (the other half, each padded to 4096).  CORPUS_MIB in all.
#
# Bound (bench/dedupe_bound.py): over every 4 KiB block at a 4096-multiple
# file offset (data, not holes; a partial last block only matches the same
# tail at another EOF), sum of (copies - 1) x 4096 over distinct contents:
# what block-aligned dedupe could reclaim.  Computed on the XFS copy.
#
# Runs (rows), each on a fresh copy of a pristine image holding the corpus
# (the image is built once, unmounted, and copied with cp --sparse=always
# for each run, so every tool starts from the same unshared layout):
#   dr        duperemove -dr                        (XFS)
#   dr4k      duperemove -dr -b 4096                (XFS)
#   drhash    duperemove -dr --hashfile=F           (XFS; and an unchanged rerun)
#   drpart    duperemove -dr -b 4096 --dedupe-options=partial   (XFS; its
#             most thorough mode: duperemove 0.11 matches whole extents
#             unless told "partial", so the default rows miss most
#             edited/shifted data; off by default there as "CPU intensive")
#   ref       bench/dedupe_ref.py: every duplicate block shared on its own
#             through FIDEDUPERANGE (XFS): shows the bound is reachable and
#             that the measurement sees it (99.98% at CORPUS_MIB=50)
#   rd        reflinkfs dedupe -r                   (XFS)
#   rdhash    reflinkfs dedupe -r --hashfile F      (XFS; and an unchanged rerun)
#   rlfs-rd, rlfs-rdhash   the same two on a reflinkfs mount
# Before each timed run (and rerun): sync, drop caches, WARM_MB of memory
# touched and freed (see bench/bench.sh's header).  Measured: wall time and
# peak RSS (GNU time %e %M; on reflinkfs the tool's, not the daemon's),
# bytes reclaimed = statfs free bytes after - before (sync'd both times),
# as a share of the bound.  After each run every file's SHA-256 is compared
# with the pristine tree's: dedupe must not change contents (a mismatch is
# shown in the row and makes the exit status 1, as does a tool exiting
# non-zero; the table is printed either way).
# When `BUILD/reflinkfs dedupe --help` fails the reflinkfs dedupe rows are
# skipped (said so on stdout).
#
# Environment: BENCH_DIR (/var/tmp: corpus, images), CORPUS_MIB (1024),
# SEED (1), CORPUS_ROOTS ("/usr/share /usr/lib"), IMG_SIZE (2 x CORPUS_MIB
# + 1 GiB), ROWS (the rows above to run, default all), WARM_MB
# (2 x CORPUS_MIB; 0: off), VERIFY (1; 0 skips the content check), LOG_DIR
# (if set, every tool's output is kept there), KEEP_IMG (if set, the
# pristine XFS image is copied there, sparse, to rerun tools by hand).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -eu -o pipefail

BUILD=$(cd "${1:-build}" && pwd)
RLFS=$BUILD/reflinkfs
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$SRCDIR/bench/lib.sh"
BENCH_DIR=${BENCH_DIR:-/var/tmp}
CORPUS_MIB=${CORPUS_MIB:-1024}
case $CORPUS_MIB in '' | *[!0-9]*) echo "bench-dedupe: CORPUS_MIB must be a number of MiB" >&2; exit 1 ;; esac
SEED=${SEED:-1}
CORPUS_ROOTS=${CORPUS_ROOTS:-/usr/share /usr/lib}
IMG_SIZE=${IMG_SIZE:-$((2 * CORPUS_MIB + 1024))M}
ROWS=${ROWS:-dr dr4k drhash drpart ref rd rdhash rlfs-rd rlfs-rdhash}
WARM_MB=${WARM_MB:-$((2 * CORPUS_MIB))}
VERIFY=${VERIFY:-1}
LOG_DIR=${LOG_DIR:-}
KEEP_IMG=${KEEP_IMG:-}

[ "$(id -u)" = 0 ] || { echo "bench-dedupe: run as root" >&2; exit 1; }
ALL_ROWS="dr dr4k drhash drpart ref rd rdhash rlfs-rd rlfs-rdhash"
for row in $ROWS; do
	case " $ALL_ROWS " in *" $row "*) ;; *) echo "bench-dedupe: unknown row '$row' in ROWS (known: $ALL_ROWS)" >&2; exit 1 ;; esac
done
command -v duperemove >/dev/null || { echo "bench-dedupe: no duperemove (sh scripts/deps.sh)" >&2; exit 1; }
command -v mkfs.xfs >/dev/null || { echo "bench-dedupe: no mkfs.xfs (sh scripts/deps.sh)" >&2; exit 1; }
W=$(mktemp -d "$BENCH_DIR/rlfs-dedupe.XXXXXX")
LOGS=$W/logs
mkdir -p "$LOGS"
T_START=$(now)

cleanup() {
	set +e
	local m img
	for m in "$W/xfs" "$W/rlfs"; do umount_any "$m"; done
	for img in "$W"/*.img; do
		[ -e "$img" ] || continue
		flock -w 30 "$img" true 2>/dev/null
		loop_detach "$img" 2>/dev/null
	done
	if [ -n "$LOG_DIR" ]; then mkdir -p "$LOG_DIR" && cp -a "$LOGS"/. "$LOG_DIR"/; fi
	rm -rf --one-file-system "$W"
	rm -f /dev/shm/rlfs-bench-warm
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "bench-dedupe [$(elapsed "$T_START" "$(now)") s]: $*" >&2; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
jget() { # JSON KEY: a top-level number from a JSON object
	python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# Is the tool there yet?
RD_OK=1
RD_WHY=""
if [ ! -x "$RLFS" ]; then
	RD_OK=0
	RD_WHY="no $RLFS (make build)"
elif ! "$RLFS" dedupe --help >/dev/null 2>&1; then
	RD_OK=0
	RD_WHY="\`$RLFS dedupe --help\` failed: the tool is not in this build"
fi

# The bound's own check: a small tree with a known answer
python3 "$SRCDIR/bench/dedupe_bound.py" --self-test "$W" >&2

# 1. The corpus
say "corpus: $CORPUS_MIB MiB, seed $SEED, from $CORPUS_ROOTS"
# shellcheck disable=SC2086
CORPUS_JSON=$(python3 "$SRCDIR/bench/dedupe_corpus.py" --out "$W/corpus" --mib "$CORPUS_MIB" \
	--seed "$SEED" --roots $CORPUS_ROOTS)
CORPUS_BYTES=$(jget "$CORPUS_JSON" total_bytes)

# 2. The pristine XFS image (and the bound, computed on it)
say "pristine XFS image ($IMG_SIZE)"
xfs_mkfs_image "$W/xfs-pristine.img" "$IMG_SIZE" reflink=1
xfs_mount_image "$W/xfs-pristine.img" "$W/xfs"
cp -a "$W/corpus" "$W/xfs/corpus"
sync
say "bound: hashing every block of the corpus on XFS"
BOUND_JSON=$(python3 "$SRCDIR/bench/dedupe_bound.py" --manifest "$W/manifest" "$W/xfs/corpus")
BOUND=$(jget "$BOUND_JSON" bound_bytes)
umount "$W/xfs"
loop_detach "$W/xfs-pristine.img"
[ -z "$KEEP_IMG" ] || cp --sparse=always "$W/xfs-pristine.img" "$KEEP_IMG"

# The pristine reflinkfs image
RLFS_ROWS=0
for row in $ROWS; do case $row in rlfs-*) RLFS_ROWS=1 ;; esac; done
RLFS_BOUND=""
if [ "$RLFS_ROWS" = 1 ] && [ "$RD_OK" = 1 ]; then
	say "pristine reflinkfs image ($IMG_SIZE)"
	rlfs_mkfs_image "$RLFS" "$W/rlfs-pristine.img" "$IMG_SIZE"
	rlfs_mount_image "$RLFS" "$W/rlfs-pristine.img" "$W/rlfs" nouring
	cp -a "$W/corpus" "$W/rlfs/corpus"
	sync
	python3 "$SRCDIR/bench/dedupe_bound.py" --manifest "$W/manifest.rlfs" "$W/rlfs/corpus" >"$W/bound.rlfs"
	RLFS_BOUND=$(jget "$(cat "$W/bound.rlfs")" bound_bytes)
	cmp -s "$W/manifest" "$W/manifest.rlfs" || { say "the corpus differs on reflinkfs"; exit 1; }
	rlfs_umount_image "$W/rlfs-pristine.img" "$W/rlfs"
fi
rm -rf "$W/corpus"   # the images hold it now

declare -A WALL RSS RECL RERUN NOTE FSOF LABEL
CHANGED=0
FAILED=0

# run_row ROW FS LABEL HASHFILE CMD...: one fresh image, the timed run, the
# unchanged rerun (HASHFILE non-empty), the content check
run_row() {
	local row=$1 fs=$2 label=$3 hashfile=$4 m=$W/$2 img=$W/$2-run.img t rss rc f0 f1 r0
	shift 4
	FSOF[$row]=$fs
	LABEL[$row]=$label
	say "$row: $label on $fs"
	cp --sparse=always "$W/$fs-pristine.img" "$img"
	if [ "$fs" = xfs ]; then
		xfs_mount_image "$img" "$m"
	else
		rlfs_mount_image "$RLFS" "$img" "$m" nouring
	fi
	[ -z "$hashfile" ] || rm -f "$hashfile"
	drop_caches
	warm_memory
	f0=$(free_bytes "$m")
	read -r t rss rc <<<"$(measure "$LOGS/$row.log" "$@")"
	sync
	f1=$(free_bytes "$m")
	WALL[$row]=$t
	RSS[$row]=$(awk -v k="$rss" 'BEGIN {printf "%.1f", k / 1024}')
	RECL[$row]=$((f1 - f0))
	NOTE[$row]=""
	if [ "$rc" != 0 ]; then
		NOTE[$row]="exit $rc"
		FAILED=1
		say "$row: exit status $rc; the end of its output:"
		tail -n 20 "$LOGS/$row.log" >&2
	fi
	if [ -n "$hashfile" ] && [ "$rc" = 0 ]; then
		drop_caches
		warm_memory
		echo "--- unchanged rerun ---" >>"$LOGS/$row.log"
		read -r t rss r0 <<<"$(measure "$LOGS/$row.log" "$@")"
		RERUN[$row]=$t
		if [ "$r0" != 0 ]; then
			NOTE[$row]="${NOTE[$row]:+${NOTE[$row]}, }rerun exit $r0"
			FAILED=1
		fi
		sync
		f1=$(free_bytes "$m")
		RECL[$row]=$((f1 - f0))
	fi
	if [ "$VERIFY" = 1 ]; then
		python3 "$SRCDIR/bench/dedupe_bound.py" --manifest-only --manifest "$W/manifest.after" "$m/corpus" >/dev/null
		if ! cmp -s "$W/manifest" "$W/manifest.after"; then
			NOTE[$row]="${NOTE[$row]:+${NOTE[$row]}, }CONTENTS CHANGED"
			say "$row: file contents differ after the run:"
			diff "$W/manifest" "$W/manifest.after" | head -n 20 >&2 || true
			CHANGED=1
		fi
	fi
	if [ "$fs" = xfs ]; then
		umount "$m"
		loop_detach "$img"
	else
		rlfs_umount_image "$img" "$m"
	fi
	rm -f "$img"
	[ -z "$hashfile" ] || rm -f "$hashfile"
}

RAN=""
for row in $ROWS; do
	case $row in
	dr) run_row dr xfs "duperemove -dr" "" duperemove -dr "$W/xfs/corpus" ;;
	dr4k) run_row dr4k xfs "duperemove -dr -b 4096" "" duperemove -dr -b 4096 "$W/xfs/corpus" ;;
	drhash) run_row drhash xfs "duperemove -dr --hashfile" "$W/dr.hash" \
		duperemove -dr --hashfile="$W/dr.hash" "$W/xfs/corpus" ;;
	drpart) run_row drpart xfs "duperemove -dr -b 4096 --dedupe-options=partial" "" \
		duperemove -dr -b 4096 --dedupe-options=partial "$W/xfs/corpus" ;;
	ref) run_row ref xfs "reference: FIDEDUPERANGE per duplicate block" "" \
		python3 "$SRCDIR/bench/dedupe_ref.py" "$W/xfs/corpus" ;;
	rd | rdhash | rlfs-rd | rlfs-rdhash)
		if [ "$RD_OK" != 1 ]; then
			echo "bench-dedupe: skipping row $row: $RD_WHY"
			continue
		fi
		case $row in
		rd) run_row rd xfs "reflinkfs dedupe -r" "" "$RLFS" dedupe -r -q --json "$W/xfs/corpus" ;;
		rdhash) run_row rdhash xfs "reflinkfs dedupe -r --hashfile" "$W/rd.hash" \
			"$RLFS" dedupe -r -q --json --hashfile "$W/rd.hash" "$W/xfs/corpus" ;;
		rlfs-rd) run_row rlfs-rd rlfs "reflinkfs dedupe -r" "" "$RLFS" dedupe -r -q --json "$W/rlfs/corpus" ;;
		rlfs-rdhash) run_row rlfs-rdhash rlfs "reflinkfs dedupe -r --hashfile" "$W/rd.hash" \
			"$RLFS" dedupe -r -q --json --hashfile "$W/rd.hash" "$W/rlfs/corpus" ;;
		esac ;;
	esac
	RAN="$RAN $row"
done

# 4. The report
pct() { awk -v r="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? 100 * r / b : 0)}'; }
echo
echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r), images on $(df -P "$BENCH_DIR" | awk 'NR==2 {print $1}') ($BENCH_DIR)"
echo "reflinkfs build: $BUILD, commit $(cd "$SRCDIR" && git rev-parse --short HEAD 2>/dev/null || echo unknown); $(duperemove --version 2>&1 | head -n 1)"
echo
echo "Corpus (bench/dedupe_corpus.py, seed $SEED, from $CORPUS_ROOTS): $(mib "$CORPUS_BYTES") MiB, $(jget "$CORPUS_JSON" files) source files ($(jget "$CORPUS_JSON" shifted_files) shifted, $(jget "$CORPUS_JSON" tar_members) in the tar), manifest $(jget "$CORPUS_JSON" manifest_sha256 | cut -c1-16)"
python3 -c '
import json, sys
c = json.loads(sys.argv[1]); b = json.loads(sys.argv[2])
print("parts, MiB: " + ", ".join("%s %.1f" % (k, v / 1048576) for k, v in c["bytes"].items()))
print("bound: %.1f MiB (%d of %d data blocks duplicate, %d distinct); duplicate MiB by part: %s" % (
    b["bound_bytes"] / 1048576, b["bound_bytes"] // b["block_bytes"], b["blocks"], b["distinct"],
    ", ".join("%s %.1f" % (k, v * b["block_bytes"] / 1048576) for k, v in b["dup_blocks_by_dir"].items())))
' "$CORPUS_JSON" "$BOUND_JSON"
[ -z "$RLFS_BOUND" ] || echo "bound on reflinkfs: $(mib "$RLFS_BOUND") MiB$([ "$RLFS_BOUND" = "$BOUND" ] && echo " (the same)")"
[ "$RD_OK" = 1 ] || echo "reflinkfs dedupe rows skipped: $RD_WHY"
echo
echo "Each run: a fresh copy of the pristine image, caches dropped; reclaimed = statfs free bytes after - before; rerun = the same command again with nothing changed (caches dropped again)."
echo
echo "| tool | fs | wall s | peak RSS MiB | reclaimed MiB | % of bound | rerun s |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for row in $RAN; do
	printf '| %s%s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$row]}" "${NOTE[$row]:+ (${NOTE[$row]})}" \
		"$([ "${FSOF[$row]}" = xfs ] && echo XFS || echo reflinkfs)" "${WALL[$row]}" "${RSS[$row]}" \
		"$(mib "${RECL[$row]}")" "$(pct "${RECL[$row]}" "$BOUND")" "${RERUN[$row]:--}"
done

# the tool's own summaries (its --json object: the last line of its output
# that starts with "{"), to set beside the df figures
for row in $RAN; do
	case $row in rd | rdhash | rlfs-rd | rlfs-rdhash) ;; *) continue ;; esac
	j=$(grep '^{' "$LOGS/$row.log" | tail -n 1 || true)
	[ -z "$j" ] || { [ -n "${SUMMARY_SHOWN:-}" ] || { echo; echo "reflinkfs dedupe --json summaries (the rerun's where there was one):"; echo; SUMMARY_SHOWN=1; }; echo "- $row: \`$j\`"; }
done

# targets: mark CONDITION-AWK-EXPR -> met/missed
mark() { if awk "BEGIN {exit !($1)}"; then echo met; else echo missed; fi; }
has() { [ -n "${WALL[$1]:-}" ] && [ -z "${NOTE[$1]:-}" ]; }
echo
echo "Targets (issue 12 section 3):"
echo
if has ref; then
	echo "- (check) the reference reaches the bound: $(pct "${RECL[ref]}" "$BOUND")% ($(mark "$(pct "${RECL[ref]}" "$BOUND") >= 99"))"
fi
if has rd; then
	p=$(pct "${RECL[rd]}" "$BOUND")
	echo "- reflinkfs dedupe -r on XFS reclaims >= 99% of the bound: $p% ($(mark "$p >= 99"))"
else
	echo "- reflinkfs dedupe -r on XFS reclaims >= 99% of the bound: not run"
fi
if has rd && has dr; then
	echo "- wall time <= half of duperemove -dr's: ${WALL[rd]} s vs ${WALL[dr]} s, ratio $(awk -v a="${WALL[rd]}" -v b="${WALL[dr]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}') ($(mark "${WALL[rd]} <= 0.5 * ${WALL[dr]}"))"
	echo "- peak RSS <= duperemove -dr's: ${RSS[rd]} MiB vs ${RSS[dr]} MiB ($(mark "${RSS[rd]} <= ${RSS[dr]}"))"
else
	echo "- wall time <= half of duperemove -dr's: not run"
	echo "- peak RSS <= duperemove -dr's: not run"
fi
if has rdhash && [ -n "${RERUN[rdhash]:-}" ]; then
	echo "- unchanged rerun (--hashfile, XFS) <= 5% of the first run: ${RERUN[rdhash]} s vs ${WALL[rdhash]} s = $(pct "${RERUN[rdhash]}" "${WALL[rdhash]}")% ($(mark "${RERUN[rdhash]} <= 0.05 * ${WALL[rdhash]}"))"
else
	echo "- unchanged rerun (--hashfile, XFS) <= 5% of the first run: not run"
fi
if has rlfs-rd && has rd; then
	p=$(pct "${RECL[rlfs-rd]}" "$BOUND")
	echo "- reflinkfs: the same reclaim (>= 99% of the bound): $p% vs $(pct "${RECL[rd]}" "$BOUND")% on XFS ($(mark "$p >= 99"))"
	echo "- reflinkfs: time within 2x of the XFS run: ${WALL[rlfs-rd]} s vs ${WALL[rd]} s, ratio $(awk -v a="${WALL[rlfs-rd]}" -v b="${WALL[rd]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}') ($(mark "${WALL[rlfs-rd]} <= 2 * ${WALL[rd]}"))"
else
	echo "- reflinkfs: the same reclaim (>= 99% of the bound): not run"
	echo "- reflinkfs: time within 2x of the XFS run: not run"
fi
echo
echo "bench-dedupe: done in $(elapsed "$T_START" "$(now)") s"
[ "$CHANGED" = 0 ] || { say "a tool changed file contents (see the rows marked CONTENTS CHANGED)"; exit 1; }
[ "$FAILED" = 0 ] || { say "a tool exited non-zero (see the rows marked exit N)"; exit 1; }
exit 0

#!/bin/bash
# Copy-on-write benchmark (issue 13 section 6): overwrites of a cloned file
# on reflinkfs (FUSE, image file) and on kernel XFS (loop-mounted image of
# the same size on the same disk), in one run, with a markdown table of
# ratios (reflinkfs / XFS) and the issue's targets marked met/missed.
#
#   bench/cow.sh BUILD            (or `make bench-cow`; root)
#
# Workload, on each filesystem, fresh image each run:
#   setup        COW_MB (1024) MiB of random data (one file made from
#                /dev/urandom once per bench run, the same bytes on every
#                filesystem) copied in with dd conv=fsync as "src"
#   random CoW   clone src (bench/reflink.c clone: copy_file_range, which
#                both filesystems turn into a clone; checked: the clone is
#                shared over all of COW_MB), caches dropped, then
#                COW_WRITES random block-aligned 4 KiB pwrites into the
#                clone + fsync (bench/reflink.c randw, seed SEED: the same
#                offsets and data everywhere), ops/s including the fsync
#   extents      the rewritten clone's data extents through FIEMAP
#                (tests/helpers/cow_frag.py extents; through the LD_PRELOAD
#                shim on reflinkfs; the count xfs_io fiemap lists), and
#                how many of them are still shared
#   seq read     caches dropped, dd bs=1M of the rewritten clone, MiB/s:
#   after CoW    shows the fragmentation the random CoW left
#   seq read     the same of src (whose blocks the CoW did not move), the
#   of src       reference for the row above
#   seq          clone src again, caches dropped, dd if=/dev/zero bs=1M
#   overwrite    conv=notrunc,fsync over all of the new clone, MiB/s
# Checked after the runs (a mismatch makes the exit status 1, the table is
# printed anyway): src unchanged (sha256 of the urandom file), the
# rewritten clone's sha256 the same on every filesystem, the overwritten
# clone all zeros.
#
# Environment: BENCH_DIR (/var/tmp: images and the data file), COW_MB
# (1024; MiB, the file size), COW_WRITES (the random CoW writes; default
# COW_MB x 20000 / 256, the density of tests/integration/60-cow-frag.sh's
# 20,000 writes into 256 MiB: 80,000 for 1 GiB), SEED (13), RUNS
# (repetitions, the table shows the median, default 3), BENCH_FS (the
# filesystems, default "xfs xfsdio rlfs": xfsdio = XFS on a direct-I/O loop
# device, a reference row as in bench/bench.sh), IMG_SIZE (default
# 3 x COW_MB + 1 GiB), WARM_MB (memory touched before each timed phase,
# default 3 x COW_MB; 0: off; see bench/bench.sh's header).
# Quick run: COW_MB=256 RUNS=1 bench/cow.sh build
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -eu -o pipefail

BUILD=$(cd "${1:-build}" && pwd)
RLFS=$BUILD/reflinkfs
SHIM=$BUILD/libreflinkfs-preload.so
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$SRCDIR/bench/lib.sh"
FRAG=$SRCDIR/tests/helpers/cow_frag.py
BENCH_DIR=${BENCH_DIR:-/var/tmp}
COW_MB=${COW_MB:-1024}
case $COW_MB in '' | *[!0-9]* | 0) echo "bench-cow: COW_MB must be a positive number of MiB" >&2; exit 1 ;; esac
COW_WRITES=${COW_WRITES:-$((COW_MB * 20000 / 256))}
case $COW_WRITES in '' | *[!0-9]* | 0) echo "bench-cow: COW_WRITES must be a positive number" >&2; exit 1 ;; esac
SEED=${SEED:-13}
RUNS=${RUNS:-3}
BENCH_FS=${BENCH_FS:-xfs xfsdio rlfs}
IMG_SIZE=${IMG_SIZE:-$((3 * COW_MB + 1024))M}
WARM_MB=${WARM_MB:-$((3 * COW_MB))}

[ "$(id -u)" = 0 ] || { echo "bench-cow: run as root" >&2; exit 1; }
[ -x "$RLFS" ] || { echo "bench-cow: no $RLFS (make build)" >&2; exit 1; }
[ -f "$SHIM" ] || { echo "bench-cow: no $SHIM (make build)" >&2; exit 1; }
command -v mkfs.xfs >/dev/null || { echo "bench-cow: no mkfs.xfs (sh scripts/deps.sh)" >&2; exit 1; }
for fs in $BENCH_FS; do
	case $fs in xfs | xfsdio | rlfs) ;; *) echo "bench-cow: unknown filesystem '$fs' in BENCH_FS (known: xfs xfsdio rlfs)" >&2; exit 1 ;; esac
done
case " $BENCH_FS " in *" xfs "*) ;; *) echo "bench-cow: BENCH_FS must include xfs (the ratios' base)" >&2; exit 1 ;; esac
W=$(mktemp -d "$BENCH_DIR/rlfs-cow.XXXXXX")
REFLINK=$W/reflink
cc -O2 -o "$REFLINK" "$SRCDIR/bench/reflink.c"
T_START=$(now)

cleanup() {
	set +e
	local fs
	for fs in xfs xfsdio rlfs; do umount_any "$W/$fs"; done
	flock -w 30 "$W/rlfs.img" true 2>/dev/null
	for fs in xfs xfsdio; do loop_detach "$W/$fs.img" 2>/dev/null; done
	rm -f /dev/shm/rlfs-bench-warm
	rm -rf --one-file-system "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "bench-cow [$(elapsed "$T_START" "$(now)") s]: $*" >&2; }
kv() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }
# pre FS: the command prefix that answers FIEMAP on FS (the shim on reflinkfs)
pre() { if [ "$1" = rlfs ]; then echo "env LD_PRELOAD=$SHIM"; else echo env; fi; }

fs_mount() { # fs
	case $1 in
	rlfs)
		rlfs_mkfs_image "$RLFS" "$W/rlfs.img" "$IMG_SIZE"
		rlfs_mount_image "$RLFS" "$W/rlfs.img" "$W/rlfs" nouring ;;
	xfs)
		xfs_mkfs_image "$W/xfs.img" "$IMG_SIZE" reflink=1,rmapbt=1
		xfs_mount_image "$W/xfs.img" "$W/xfs" ;;
	xfsdio)
		xfs_mkfs_image "$W/xfsdio.img" "$IMG_SIZE" reflink=1,rmapbt=1
		xfs_mount_image "$W/xfsdio.img" "$W/xfsdio" dio ;;
	esac
}
fs_umount() { # fs
	case $1 in
	rlfs) rlfs_umount_image "$W/rlfs.img" "$W/rlfs" ;;
	xfs) umount "$W/xfs" ;;
	xfsdio)
		umount "$W/xfsdio"
		loop_detach "$W/xfsdio.img" ;;
	esac
	rm -f "$W/$1.img"
}

declare -A V   # V[fs.metric] = values of every run, space separated
declare -A R   # R[fs.metric] = median over the runs
declare -A SUM # SUM[fs] = sha256 of the rewritten clone (first run)
record() { V[$1]="${V[$1]:-} $2"; }
medians() {
	local k
	for k in "${!V[@]}"; do
		# shellcheck disable=SC2086
		R[$k]=$(echo ${V[$k]} | tr ' ' '\n' | sort -g | awk '{a[NR] = $1} END {print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}')
	done
}
BAD=0
bad() { say "CHECK FAILED: $*"; BAD=1; }
rate_mib() { awk -v n="$COW_MB" -v s="$1" 'BEGIN {printf "%.1f", n / s}'; }

say "data: $COW_MB MiB from /dev/urandom"
head -c "$((COW_MB << 20))" /dev/urandom >"$W/data"
DATA_SHA=$(sha256sum "$W/data" | cut -d' ' -f1)
ZERO_SHA=$(head -c "$((COW_MB << 20))" /dev/zero | sha256sum | cut -d' ' -f1)

run_fs() { # fs
	local fs=$1 m=$W/$1 t0 t1 out ext
	fs_mount "$fs"
	dd if="$W/data" of="$m/src" bs=1M conv=fsync status=none
	# random CoW into a clone
	"$REFLINK" clone "$m/src" "$m/c1" >/dev/null
	ext=$($(pre "$fs") python3 "$FRAG" extents "$m/c1")
	[ "$(kv "$ext" shared_bytes)" = "$((COW_MB << 20))" ] ||
		bad "$fs: the clone is not shared over all of it ($ext)"
	drop_caches
	warm_memory
	out=$("$REFLINK" randw "$m/c1" "$COW_WRITES" "$SEED")
	record "$fs.randw" "$(awk '{print $4}' <<<"$out")"
	ext=$($(pre "$fs") python3 "$FRAG" extents "$m/c1")
	record "$fs.extents" "$(kv "$ext" extents)"
	record "$fs.shared" "$(kv "$ext" shared)"
	# sequential read of the rewritten clone, then of src
	drop_caches
	warm_memory
	t0=$(now)
	dd if="$m/c1" of=/dev/null bs=1M status=none
	t1=$(now)
	record "$fs.readcow" "$(rate_mib "$(elapsed "$t0" "$t1")")"
	drop_caches
	warm_memory
	t0=$(now)
	dd if="$m/src" of=/dev/null bs=1M status=none
	t1=$(now)
	record "$fs.readsrc" "$(rate_mib "$(elapsed "$t0" "$t1")")"
	[ -n "${SUM[$fs]:-}" ] || SUM[$fs]=$(sha256sum "$m/c1" | cut -d' ' -f1)
	[ "$(sha256sum "$m/src" | cut -d' ' -f1)" = "$DATA_SHA" ] || bad "$fs: src changed by the random CoW"
	rm -f "$m/c1"
	# sequential overwrite of a fresh clone
	"$REFLINK" clone "$m/src" "$m/c2" >/dev/null
	sync
	drop_caches
	warm_memory
	t0=$(now)
	dd if=/dev/zero of="$m/c2" bs=1M count="$COW_MB" conv=notrunc,fsync status=none
	t1=$(now)
	record "$fs.seqow" "$(rate_mib "$(elapsed "$t0" "$t1")")"
	[ "$(sha256sum "$m/c2" | cut -d' ' -f1)" = "$ZERO_SHA" ] || bad "$fs: the overwritten clone is not all zeros"
	[ "$(sha256sum "$m/src" | cut -d' ' -f1)" = "$DATA_SHA" ] || bad "$fs: src changed by the sequential overwrite"
	fs_umount "$fs"
}

say "images in $BENCH_DIR ($(df -P "$BENCH_DIR" | awk 'NR==2 {print $1}')), $IMG_SIZE each; file $COW_MB MiB, $COW_WRITES random writes, $RUNS run(s) on $BENCH_FS"
for ((r = 1; r <= RUNS; r++)); do
	for fs in $BENCH_FS; do
		say "run $r on $fs"
		run_fs "$fs"
	done
done
medians
for fs in $BENCH_FS; do
	[ "${SUM[$fs]}" = "${SUM[xfs]}" ] || bad "$fs: the rewritten clone differs from XFS's (sha256 ${SUM[$fs]:0:16} vs ${SUM[xfs]:0:16})"
done

# ratio A B: A / B, 2 decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
mark() { if awk "BEGIN {exit !($1)}"; then echo met; else echo missed; fi; }
row() { # metric label unit target: ratio = reflinkfs / XFS (higher is better)
	local r t=""
	r=$(ratio "${R[rlfs.$1]:-0}" "${R[xfs.$1]:-0}")
	[ "$4" = - ] || t=" ($(mark "$r >= $4"))"
	printf '| %s | %s %s | %s %s | %s | %s%s |%s\n' "$2" "${R[xfs.$1]:-}" "$3" "${R[rlfs.$1]:-}" "$3" "$r" "$4" "$t" \
		"${R[xfsdio.$1]:+ ${R[xfsdio.$1]} $3 |}"
}

echo
echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r), images on $(df -P "$BENCH_DIR" | awk 'NR==2 {print $1}') ($BENCH_DIR)"
echo "reflinkfs build: $BUILD, commit $(cd "$SRCDIR" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo
echo "Median of $RUNS run(s) (fresh images each run, in this order: $BENCH_FS); file $COW_MB MiB, $COW_WRITES random 4 KiB writes (seed $SEED); $WARM_MB MiB of memory warmed before each timed phase."
echo
if [ -n "${R[xfsdio.randw]:-}" ]; then
	echo "| workload | kernel XFS | reflinkfs | ratio | target | XFS, direct-I/O loop |"
	echo "| --- | --- | --- | --- | --- | --- |"
else
	echo "| workload | kernel XFS | reflinkfs | ratio | target |"
	echo "| --- | --- | --- | --- | --- |"
fi
row randw "$COW_WRITES random 4 KiB overwrites of a cloned $COW_MB MiB file + fsync" "ops/s" 1.0
row readcow "sequential read of that file after the random CoW (caches dropped)" "MiB/s" 1.0
row readsrc "(reference) sequential read of the clone's source, not rewritten" "MiB/s" -
row seqow "sequential overwrite of a cloned $COW_MB MiB file (dd bs=1M conv=notrunc,fsync)" "MiB/s" 0.8
# extents: fewer is better, ratio = XFS / reflinkfs; target reflinkfs <= XFS
er=$(ratio "${R[xfs.extents]:-0}" "${R[rlfs.extents]:-0}")
printf '| %s | %s | %s | %s | %s |%s\n' "extents of the file after the random CoW (FIEMAP; shared ones)" \
	"${R[xfs.extents]:-} (${R[xfs.shared]:-})" "${R[rlfs.extents]:-} (${R[rlfs.shared]:-})" "$er" \
	"1.0, XFS / reflinkfs ($(mark "${R[rlfs.extents]:-1} <= ${R[xfs.extents]:-0}"))" \
	"${R[xfsdio.extents]:+ ${R[xfsdio.extents]} (${R[xfsdio.shared]}) |}"
echo
echo "All runs (in run order):"
echo
for k in randw readcow readsrc seqow extents; do
	line="- $k:"
	for fs in $BENCH_FS; do line="$line $fs${V[$fs.$k]:-};"; done
	echo "${line%;}"
done
echo
say "done"
[ "$BAD" = 0 ] || { say "a check failed (see CHECK FAILED above)"; exit 1; }
exit 0

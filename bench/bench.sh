#!/bin/bash
# reflinkfs benchmark: the same workload on reflinkfs (FUSE, image file) and
# on kernel XFS (loop-mounted image of the same size on the same disk), in
# one run, with a ratio table (reflinkfs rate / XFS rate) in markdown.
#
#   bench/bench.sh BUILD
#
# Workload (each on both filesystems, fresh image each):
#   seq write   dd 1 GiB bs=1M conv=fsync
#   seq read    drop caches (echo 3 > /proc/sys/vm/drop_caches), dd 1 GiB bs=1M
#   small write dd SMALL_MB (256) MiB bs=4k conv=fsync: buffered 4 KiB write(2)s
#   create      20,000 empty files in one directory (+ syncfs), bench/metaops.c
#   stat warm   lstat of the 20,000 files right after creating them
#   stat cold   lstat of the 20,000 files after drop caches
#   unlink      the 20,000 files (+ syncfs)
#   copy        cp -a /usr/share/doc + sync (MiB/s of the tree)
# Reflink workloads (issue 3; bench/reflink.c, the same system calls on both):
#   clone 1G    copy_file_range of the 1 GiB sequential file (few extents)
#               into a new file + fsync (both filesystems clone it), ms
#   clone frag  the same for a file with FRAG_EXTENTS (20,000) 4 KiB data
#               extents (every other block written), ms
#   randw       5,000 random 4 KiB overwrites of the cloned 1 GiB file
#               (every one a copy-on-write of a shared block) + fsync, ops/s
#   tree clone  cp -a of the copied /usr/share/doc inside the filesystem
#               (cp clones through FICLONE on XFS, copy_file_range on
#               reflinkfs) + sync: df growth in MiB vs the first copy's
# fsync workloads (issue 10; bench/fsyncops.c):
#   fsync write   FSYNC_N (2,000) x (append 4 KiB + fsync) to one file, ops/s
#   fsync create  FSYNC_N small files: create, write 4 KiB, fsync, close, ops/s
#   ... x4        the same two with 4 threads at once (FSYNC_N in all, each
#                 thread its own file / its own names): group commit
# reflinkfs runs twice where the kernel has FUSE over io_uring: as mounted
# by default (/dev/fuse) and with mount -o uring (a second table).
# The cost of the reverse map (issue 11): XFS with rmapbt=0 (xfsnr) and
# reflinkfs with -m rmapbt=0 (rlfsnr) run too, for a table of on/off
# ratios and their ratio.
# Environment: BENCH_DIR (where the images live, default /var/tmp),
# SEQ_MB (default 1024), SMALL_MB (256), NFILES (default 20000), COPY_SRC (/usr/share/doc),
# RUNS (repetitions; the table shows the median of the runs, default 3),
# FSYNC_N (default 2000), BENCH_FS (the filesystems to run, default all:
# "xfs xfsdio rlfs xfsnr rlfsnr" plus rlfsu where FUSE over io_uring exists),
# WARM_MB (memory touched before each timed data phase, default 3 x SEQ_MB;
# 0 turns it off).
#
# Memory warm-up: on a virtual machine whose balloon device reports free
# pages to the host (virtio-balloon free page reporting), a page the guest
# freed more than a moment ago is given back to the host, and touching it
# again costs a host page fault: a write into fresh page cache then runs at
# a fraction of memory speed (on the machine of docs/BENCHMARKS.md 300 MB/s
# instead of 2.3 GB/s into tmpfs), and whichever filesystem happens to get
# recently freed pages wins.  So before each timed data phase the bench
# writes and deletes WARM_MB in /dev/shm, the same for every filesystem.
#
# Kernel XFS runs twice: on a plain `mount -o loop` (buffered loop device,
# the default; the ratios are against it) and on a loop device with direct
# I/O (losetup --direct-io=on: no second copy in the backing file's page
# cache, the way the reflinkfs daemon writes its image), shown as a
# reference row for sequential I/O.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -eu -o pipefail

BUILD=$(cd "${1:-build}" && pwd)
RLFS=$BUILD/reflinkfs
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$SRCDIR/bench/lib.sh"
BENCH_DIR=${BENCH_DIR:-/var/tmp}
SEQ_MB=${SEQ_MB:-1024}
SMALL_MB=${SMALL_MB:-256}
NFILES=${NFILES:-20000}
COPY_SRC=${COPY_SRC:-/usr/share/doc}
RUNS=${RUNS:-3}
WARM_MB=${WARM_MB:-$((3 * ${SEQ_MB:-1024}))}
IMG_SIZE=${IMG_SIZE:-4G}

[ "$(id -u)" = 0 ] || { echo "bench: run as root" >&2; exit 1; }
[ -x "$RLFS" ] || { echo "bench: no $RLFS (make build)" >&2; exit 1; }
W=$(mktemp -d "$BENCH_DIR/rlfs-bench.XXXXXX")
METAOPS=$W/metaops
cc -O2 -o "$METAOPS" "$SRCDIR/bench/metaops.c"
REFLINK=$W/reflink
cc -O2 -o "$REFLINK" "$SRCDIR/bench/reflink.c"
FSYNCOPS=$W/fsyncops
cc -O2 -pthread -o "$FSYNCOPS" "$SRCDIR/bench/fsyncops.c"
FSYNC_N=${FSYNC_N:-2000}
FRAG_EXTENTS=${FRAG_EXTENTS:-20000}
RANDW=${RANDW:-5000}

cleanup() {
	set +e
	for m in "$W/rlfs" "$W/rlfsu" "$W/rlfsnr" "$W/xfs" "$W/xfsdio" "$W/xfsnr"; do
		if mountpoint -q "$m"; then
			fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m"
		fi
	done
	flock -w 30 "$W/rlfs.img" true 2>/dev/null
	flock -w 30 "$W/rlfsu.img" true 2>/dev/null
	flock -w 30 "$W/rlfsnr.img" true 2>/dev/null
	[ -z "${URING_WAS:-}" ] || echo "$URING_WAS" >"$URING_PARAM" 2>/dev/null
	rm -f /dev/shm/rlfs-bench-warm
	for img in "$W/xfs.img" "$W/xfsdio.img" "$W/xfsnr.img"; do
		for dev in $(losetup -j "$img" -O NAME -n 2>/dev/null); do losetup -d "$dev"; done
	done
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

extents() { # fs file: number of data extents
	case $1 in
	rlfs|rlfsu|rlfsnr) "$RLFS" io -r -c stat "$2" | awk -F' = ' '/^extents.count/ {print $2}' ;;
	xfs|xfsdio|xfsnr) xfs_io -r -c "fiemap" "$2" | grep -vc 'hole\|:$' ;;
	esac
}
# now, elapsed, drop_caches, warm_memory (WARM_MB: see the header) and the
# image helpers below come from bench/lib.sh

fs_mount() { # fs
	case $1 in
	rlfs|rlfsu|rlfsnr)
		if [ "$1" = rlfsnr ]; then
			rlfs_mkfs_image "$RLFS" "$W/$1.img" "$IMG_SIZE" -m rmapbt=0
		else
			rlfs_mkfs_image "$RLFS" "$W/$1.img" "$IMG_SIZE"
		fi
		if [ "$1" = rlfsu ]; then
			rlfs_mount_image "$RLFS" "$W/$1.img" "$W/$1" uring
		else
			rlfs_mount_image "$RLFS" "$W/$1.img" "$W/$1" nouring
		fi ;;
	xfs|xfsnr)
		xfs_mkfs_image "$W/$1.img" "$IMG_SIZE" reflink=1,rmapbt=$([ "$1" = xfs ] && echo 1 || echo 0)
		xfs_mount_image "$W/$1.img" "$W/$1" ;;
	xfsdio)
		xfs_mkfs_image "$W/xfsdio.img" "$IMG_SIZE" reflink=1,rmapbt=1
		xfs_mount_image "$W/xfsdio.img" "$W/xfsdio" dio ;;
	esac
}
fs_umount() { # fs
	case $1 in
	rlfs|rlfsu|rlfsnr) rlfs_umount_image "$W/$1.img" "$W/$1" ;;
	xfs|xfsnr) umount "$W/$1" ;;
	xfsdio)
		umount "$W/xfsdio"
		loop_detach "$W/xfsdio.img" ;;
	esac
}

declare -A V   # V[fs.metric] = rates of every run, space separated
declare -A R   # R[fs.metric] = median rate over the runs
record() { # key value: one run's rate
	V[$1]="${V[$1]:-} $2"
}
medians() {
	local k
	for k in "${!V[@]}"; do
		R[$k]=$(echo ${V[$k]} | tr ' ' '\n' | sort -g | awk '{a[NR] = $1} END {print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}')
	done
}

copy_kb=$(du -sk "$COPY_SRC" | cut -f1)
copy_files=$(find "$COPY_SRC" | wc -l)

run_fs() { # fs
	local fs=$1 m=$W/$1 t0 t1 s
	fs_mount "$fs"
	# sequential write + read
	drop_caches
	warm_memory
	t0=$(now)
	dd if=/dev/zero of="$m/seq" bs=1M count="$SEQ_MB" conv=fsync status=none
	t1=$(now)
	s=$(elapsed "$t0" "$t1")
	record "$fs.seqw" "$(awk -v n="$SEQ_MB" -v s="$s" 'BEGIN {printf "%.1f", n / s}')"
	drop_caches
	warm_memory
	t0=$(now)
	dd if="$m/seq" of=/dev/null bs=1M status=none
	t1=$(now)
	s=$(elapsed "$t0" "$t1")
	record "$fs.seqr" "$(awk -v n="$SEQ_MB" -v s="$s" 'BEGIN {printf "%.1f", n / s}')"
	# small buffered writes: the cost per write(2) call, not the disk
	rm -f "$m/seq.small"
	warm_memory
	t0=$(now)
	dd if=/dev/zero of="$m/seq.small" bs=4k count=$((SMALL_MB * 256)) conv=fsync status=none
	t1=$(now)
	s=$(elapsed "$t0" "$t1")
	record "$fs.smallw" "$(awk -v n="$SMALL_MB" -v s="$s" 'BEGIN {printf "%.1f", n / s}')"
	rm -f "$m/seq.small"
	# reflink: clone of the sequentially written file (a few extents), then CoW
	# overwrites of the clone
	sync
	[ "$r" != 1 ] || echo "bench: $fs: $(extents "$fs" "$m/seq") extent(s) in the ${SEQ_MB} MiB file" >&2
	record "$fs.clone1g" "$("$REFLINK" clone "$m/seq" "$m/seq.clone" | awk '{printf "%.2f", $3 * 1000}')"
	cmp -n 1048576 "$m/seq" "$m/seq.clone" || { echo "bench: clone differs" >&2; exit 1; }
	record "$fs.randw" "$("$REFLINK" randw "$m/seq.clone" "$RANDW" 42 | awk '{print $4}')"
	rm -f "$m/seq" "$m/seq.clone"
	sync
	# clone of a file with FRAG_EXTENTS extents
	"$REFLINK" frag "$m/frag" "$FRAG_EXTENTS"
	sync
	[ "$r" != 1 ] || echo "bench: $fs: $(extents "$fs" "$m/frag") extents in the fragmented file" >&2
	record "$fs.clonefrag" "$("$REFLINK" clone "$m/frag" "$m/frag.clone" | awk '{printf "%.2f", $3 * 1000}')"
	cmp "$m/frag" "$m/frag.clone" || { echo "bench: frag clone differs" >&2; exit 1; }
	rm -f "$m/frag" "$m/frag.clone"
	sync
	# metadata: create / stat / unlink
	mkdir "$m/meta"
	record "$fs.create" "$("$METAOPS" create "$m/meta" "$NFILES" | awk '{print $4}')"
	record "$fs.statw" "$("$METAOPS" stat "$m/meta" "$NFILES" | awk '{print $4}')"
	drop_caches
	record "$fs.statc" "$("$METAOPS" stat "$m/meta" "$NFILES" | awk '{print $4}')"
	record "$fs.unlink" "$("$METAOPS" unlink "$m/meta" "$NFILES" | awk '{print $4}')"
	rmdir "$m/meta"
	# fsync loops, one thread and four (group commit)
	local th
	for th in 1 4; do
		mkdir "$m/fsync"
		record "$fs.fsyncw$th" "$("$FSYNCOPS" write "$m/fsync" "$FSYNC_N" $th | awk '{print $5}')"
		record "$fs.fsyncc$th" "$("$FSYNCOPS" create "$m/fsync" "$FSYNC_N" $th | awk '{print $5}')"
		rm -rf "$m/fsync"
		sync
	done
	# copy of a real tree
	drop_caches
	warm_memory
	u0=$(used_kb "$m")
	t0=$(now)
	cp -a "$COPY_SRC" "$m/copy"
	sync
	t1=$(now)
	s=$(elapsed "$t0" "$t1")
	record "$fs.copy" "$(awk -v n="$copy_kb" -v s="$s" 'BEGIN {printf "%.1f", n / 1024 / s}')"
	# space: df growth of a clone of that tree vs the first copy
	u1=$(used_kb "$m")
	t0=$(now)
	cp -a "$m/copy" "$m/clone"
	sync
	t1=$(now)
	u2=$(used_kb "$m")
	record "$fs.treeclone" "$(awk -v n="$copy_kb" -v s="$(elapsed "$t0" "$t1")" 'BEGIN {printf "%.1f", n / 1024 / s}')"
	record "$fs.copymb" "$(awk -v a="$u0" -v b="$u1" 'BEGIN {printf "%.1f", (b - a) / 1024}')"
	record "$fs.clonemb" "$(awk -v a="$u1" -v b="$u2" 'BEGIN {printf "%.1f", (b - a) / 1024}')"
	fs_umount "$fs"
}

echo "bench: images in $BENCH_DIR ($(df -P "$BENCH_DIR" | awk 'NR==2 {print $1}')), $IMG_SIZE each;" \
	"seq ${SEQ_MB} MiB, $NFILES files, copy of $COPY_SRC ($((copy_kb / 1024)) MiB, $copy_files entries)" >&2
# reflinkfs twice: requests through /dev/fuse (the default) and through FUSE
# over io_uring (mount -o uring, where the kernel has it; the daemon sets
# the fuse module's enable_uring parameter, put back at the end)
URING_PARAM=/sys/module/fuse/parameters/enable_uring
FSLIST="xfs xfsdio rlfs xfsnr rlfsnr"
if [ -e "$URING_PARAM" ]; then
	URING_WAS=$(cat "$URING_PARAM")
	FSLIST="xfs xfsdio rlfs rlfsu xfsnr rlfsnr"
fi
FSLIST=${BENCH_FS:-$FSLIST}
r=0
for ((r = 1; r <= RUNS; r++)); do
	for fs in $FSLIST; do
		echo "bench: run $r on $fs" >&2
		run_fs $fs
	done
done

medians

RF=rlfs   # which reflinkfs run the rows show: rlfs (/dev/fuse) or rlfsu (-o uring)
ratio() { awk -v a="${R[$RF.$1]:-0}" -v b="${R[xfs.$1]:-0}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
row() { # metric label unit target
	local r
	r=$(ratio "$1")
	local mark=""
	if [ "$4" != "-" ]; then
		if awk -v r="$r" -v t="$4" 'BEGIN {exit !(r >= t)}'; then mark=" (met)"; else mark=" (missed)"; fi
	fi
	printf '| %s | %s %s | %s %s | %s | %s%s |\n' "$2" "${R[xfs.$1]:-}" "$3" "${R[$RF.$1]:-}" "$3" "$r" "$4" "$mark"
}
# every run's rate, to show the spread
spread() {
	local k
	echo
	echo "All runs (per run, in run order; rates, except clone1g and clonefrag in ms and copymb, clonemb in MiB):"
	echo
	for k in seqw seqr smallw create statw statc unlink copy clone1g clonefrag randw treeclone copymb clonemb fsyncw1 fsyncc1 fsyncw4 fsyncc4; do
		echo "- $k: XFS${V[xfs.$k]:-}; XFS dio loop${V[xfsdio.$k]:-}; reflinkfs${V[rlfs.$k]:-}${V[rlfsu.$k]:+; reflinkfs -o uring${V[rlfsu.$k]}}${V[xfsnr.$k]:+; XFS rmapbt=0${V[xfsnr.$k]}}${V[rlfsnr.$k]:+; reflinkfs rmapbt=0${V[rlfsnr.$k]}}"
	done
}

echo
echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r), images on $(df -P "$BENCH_DIR" | awk 'NR==2 {print $1}') ($BENCH_DIR)"
echo "reflinkfs build: $BUILD, commit $(cd "$SRCDIR" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo
echo "Median of $RUNS runs (each run: fresh images, in this order: $FSLIST; xfsdio = XFS on a direct-I/O loop device, rlfsu = reflinkfs -o uring, xfsnr / rlfsnr = rmapbt=0); $WARM_MB MiB of memory warmed before each timed data phase."
base_table() {
	echo
	echo "| workload | kernel XFS | reflinkfs$1 | ratio | target |"
	echo "| --- | --- | --- | --- | --- |"
	row seqw "sequential write ${SEQ_MB} MiB (dd bs=1M conv=fsync)" "MiB/s" 0.8
	row seqr "sequential read ${SEQ_MB} MiB (caches dropped)" "MiB/s" 0.8
	row smallw "4 KiB writes, ${SMALL_MB} MiB (dd bs=4k conv=fsync)" "MiB/s" "-"
	row create "create $NFILES files (+syncfs)" "ops/s" 0.4
	row statw "stat $NFILES files (warm)" "ops/s" 0.5
	row statc "stat $NFILES files (cold, caches dropped)" "ops/s" 0.5
	row unlink "unlink $NFILES files (+syncfs)" "ops/s" "-"
	row copy "cp -a $COPY_SRC ($((copy_kb / 1024)) MiB, $copy_files entries) + sync" "MiB/s" "-"
}
base_table ""
echo
echo "Sequential I/O against kernel XFS on a loop device with direct I/O (losetup --direct-io=on):"
echo
echo "| workload | XFS, direct-I/O loop | reflinkfs | ratio | reflinkfs -o uring | ratio |"
echo "| --- | --- | --- | --- | --- | --- |"
for k in seqw seqr; do
	[ -n "${R[xfsdio.$k]:-}" ] && [ -n "${R[rlfs.$k]:-}" ] || continue
	case $k in seqw) l="sequential write ${SEQ_MB} MiB" ;; seqr) l="sequential read ${SEQ_MB} MiB" ;; esac
	printf '| %s | %s MiB/s | %s MiB/s | %s | %s | %s |\n' "$l" "${R[xfsdio.$k]}" "${R[rlfs.$k]}" \
		"$(awk -v a="${R[rlfs.$k]}" -v b="${R[xfsdio.$k]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')" \
		"${R[rlfsu.$k]:+${R[rlfsu.$k]} MiB/s}" \
		"${R[rlfsu.$k]:+$(awk -v a="${R[rlfsu.$k]:-0}" -v b="${R[xfsdio.$k]}" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')}"
done
if [ -n "${URING_WAS:-}" ] && [ -n "${R[rlfsu.seqw]:-}" ]; then
	echo
	echo "The same with the daemon on FUSE over io_uring (mount -o uring):"
	RF=rlfsu base_table " -o uring"
fi
# time rows: ratio = XFS time / reflinkfs time (speed ratio, > 1 = faster)
trow() { # metric label target
	local r mark=""
	r=$(awk -v a="${R[rlfs.$1]:-0}" -v b="${R[xfs.$1]:-0}" 'BEGIN {printf "%.2f", (a > 0 ? b / a : 0)}')
	if [ "$3" != "-" ]; then
		if awk -v r="$r" -v t="$3" 'BEGIN {exit !(r >= t)}'; then mark=" (met)"; else mark=" (missed)"; fi
	fi
	printf '| %s | %s ms | %s ms | %s | %s%s |\n' "$2" "${R[xfs.$1]:-}" "${R[rlfs.$1]:-}" "$r" "$3" "$mark"
}
echo
echo "Reflink (issue 3).  Time rows: ratio = XFS time / reflinkfs time (higher = reflinkfs faster)."
echo
echo "| workload | kernel XFS | reflinkfs | ratio | target |"
echo "| --- | --- | --- | --- | --- |"
trow clone1g "clone ${SEQ_MB} MiB sequentially written file (copy_file_range + fsync)" "-"
trow clonefrag "clone file with $FRAG_EXTENTS extents (copy_file_range + fsync)" 1.0
row randw "$RANDW random 4 KiB overwrites of the cloned ${SEQ_MB} MiB file + fsync" "ops/s" 0.5
row treeclone "cp -a of the copied tree inside the fs (clones) + sync" "MiB/s" "-"
echo
echo "fsync (issue 10; bench/fsyncops.c).  Target: the log's (one log write and one device flush per fsync, shared by concurrent fsyncs)."
echo
echo "| workload | kernel XFS | reflinkfs | ratio | target |"
echo "| --- | --- | --- | --- | --- |"
row fsyncw1 "$FSYNC_N x (append 4 KiB + fsync), 1 thread" "ops/s" 1.0
row fsyncc1 "create + 4 KiB write + fsync of $FSYNC_N files, 1 thread" "ops/s" 1.0
row fsyncw4 "$FSYNC_N x (append 4 KiB + fsync), 4 threads, own files" "ops/s" 1.0
row fsyncc4 "create + 4 KiB write + fsync of $FSYNC_N files, 4 threads" "ops/s" 1.0
# the cost of the reverse map (issue 11 section 5): on/off for both
# filesystems, and the ratio of ratios (reflinkfs's on/off over XFS's):
# >= 1 means the rmap costs reflinkfs no more than it costs XFS
if [ -n "${R[xfsnr.create]:-}" ] && [ -n "${R[rlfsnr.create]:-}" ]; then
	echo
	echo "The cost of the reverse map (issue 11): each filesystem with its rmap btree on (the default, XFS rmapbt=1) and off (mkfs -m rmapbt=0, XFS rmapbt=0).  on/off: rate with the rmap / rate without (for times: time without / time with), so 1.00 = free; ratio of ratios = reflinkfs's on/off / XFS's on/off (target >= 1: the rmap costs reflinkfs no more than it costs XFS)."
	echo
	echo "| workload | XFS rmap on | XFS rmap off | XFS on/off | reflinkfs rmap on | reflinkfs rmap off | reflinkfs on/off | ratio of ratios | target |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	rmrow() { # metric label unit time(1 = a time: lower is better)
		local xo=${R[xfs.$1]:-0} xn=${R[xfsnr.$1]:-0} ro=${R[rlfs.$1]:-0} rn=${R[rlfsnr.$1]:-0}
		awk -v xo="$xo" -v xn="$xn" -v ro="$ro" -v rn="$rn" -v t="$4" -v l="$2" -v u="$3" 'BEGIN {
			if (t) { xr = (xo > 0 ? xn / xo : 0); rr = (ro > 0 ? rn / ro : 0) }
			else { xr = (xn > 0 ? xo / xn : 0); rr = (rn > 0 ? ro / rn : 0) }
			q = (xr > 0 ? rr / xr : 0)
			printf "| %s | %s %s | %s %s | %.2f | %s %s | %s %s | %.2f | %.2f | 1.0 (%s) |\n", l, xo, u, xn, u, xr, ro, u, rn, u, rr, q, (q >= 1 ? "met" : "missed")
		}'
	}
	rmrow create "create $NFILES files (+syncfs)" "ops/s" 0
	rmrow unlink "unlink $NFILES files (+syncfs)" "ops/s" 0
	rmrow seqw "sequential write ${SEQ_MB} MiB" "MiB/s" 0
	rmrow clonefrag "clone file with $FRAG_EXTENTS extents" "ms" 1
	rmrow randw "$RANDW random 4 KiB CoW overwrites + fsync" "ops/s" 0
	rmrow copy "cp -a $COPY_SRC + sync" "MiB/s" 0
fi
echo
echo "Space (df used, MiB; median): first copy of $COPY_SRC vs cp -a clone of that copy"
echo
echo "| | kernel XFS | reflinkfs |"
echo "| --- | --- | --- |"
echo "| first copy (cp -a from outside) | ${R[xfs.copymb]:-} MiB | ${R[rlfs.copymb]:-} MiB |"
echo "| clone of the copy (cp -a inside) | ${R[xfs.clonemb]:-} MiB | ${R[rlfs.clonemb]:-} MiB |"
spread

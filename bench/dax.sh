#!/bin/bash
# -o dax against the default data path (issue 14 §3), same image, same
# workload, one fresh image per mode:
#
#   bench/dax.sh BUILD
#
#   seq write   MB (256) MiB in 1 MiB write(2)s + fsync, MiB/s
#   seq read    the same file after drop caches, 1 MiB reads, MiB/s
#   rand read   N (5000) random 4 KiB preads of it after drop caches, ops/s
#   rand write  N random 4 KiB pwrites into it + fsync (blocks not shared), ops/s
#   rand CoW    the file cloned (copy_file_range, a clone on reflinkfs), then
#               N random 4 KiB pwrites into the clone + fsync, ops/s
#   dedupe      a second identical MB MiB file written separately, then
#               xfs_io dedupe of the whole file through the LD_PRELOAD shim, MiB/s
#
# Environment: BENCH_DIR (default /var/tmp), MB, N.  Root (drop caches).
set -euo pipefail
BUILD=$(realpath "${1:?usage: bench/dax.sh BUILD}")
RLFS=$BUILD/reflinkfs
SHIM=$BUILD/libreflinkfs-preload.so
MB=${MB:-256}
N=${N:-5000}
DIR=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rlfs-daxbench.XXXXXX")
MNT=$DIR/mnt
mkdir -p "$MNT"
cleanup() {
	mountpoint -q "$MNT" && fusermount3 -u "$MNT"
	rm -rf "$DIR"
}
trap cleanup EXIT

py() { python3 - "$@"; }

run_mode() {
	local mode=$1 opts=()
	[ "$mode" = dax ] && opts=(-o dax)
	rm -f "$DIR/img"
	"$RLFS" mkfs -s $((MB * 4 + 256))M "$DIR/img" >/dev/null
	"$RLFS" mount "${opts[@]}" "$DIR/img" "$MNT"
	py "$MNT" "$MB" "$N" "$mode" <<'EOF'
import os, random, sys, time
mnt, mb, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
size = mb << 20
buf = os.urandom(1 << 20)
def drop():
    os.sync()
    with open('/proc/sys/vm/drop_caches', 'w') as f:
        f.write('3\n')
def row(name, v, unit):
    print(f"{mode:8} {name:11} {v:10.1f} {unit}", flush=True)
a = os.path.join(mnt, 'a')
t = time.time()
fd = os.open(a, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
for i in range(mb):
    os.write(fd, buf)
os.fsync(fd); os.close(fd)
row('seq write', mb / (time.time() - t), 'MiB/s')
drop()
t = time.time()
fd = os.open(a, os.O_RDONLY)
while os.read(fd, 1 << 20):
    pass
os.close(fd)
row('seq read', mb / (time.time() - t), 'MiB/s')
drop()
rnd = random.Random(14)
blocks = size // 4096
fd = os.open(a, os.O_RDONLY)
t = time.time()
for i in range(n):
    os.pread(fd, 4096, rnd.randrange(blocks) * 4096)
os.close(fd)
row('rand read', n / (time.time() - t), 'ops/s')
w = os.urandom(4096)
fd = os.open(a, os.O_WRONLY)
t = time.time()
for i in range(n):
    os.pwrite(fd, w, rnd.randrange(blocks) * 4096)
os.fsync(fd); os.close(fd)
row('rand write', n / (time.time() - t), 'ops/s')
b = os.path.join(mnt, 'b')
fi = os.open(a, os.O_RDONLY)
fo = os.open(b, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
left = size
while left:
    left -= os.copy_file_range(fi, fo, left)
os.fsync(fo); os.close(fo); os.close(fi)
fd = os.open(b, os.O_WRONLY)
t = time.time()
for i in range(n):
    os.pwrite(fd, w, rnd.randrange(blocks) * 4096)
os.fsync(fd); os.close(fd)
row('rand CoW', n / (time.time() - t), 'ops/s')
# identical copies for dedupe: c written from a's contents
c = os.path.join(mnt, 'c')
fi = os.open(a, os.O_RDONLY)
fo = os.open(c, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
while True:
    d = os.read(fi, 1 << 20)
    if not d:
        break
    os.write(fo, d)
os.fsync(fo); os.close(fo); os.close(fi)
EOF
	local t0 t1
	sync
	echo 3 >/proc/sys/vm/drop_caches
	t0=$(date +%s.%N)
	LD_PRELOAD=$SHIM xfs_io -c "dedupe $MNT/a 0 0 $((MB << 20))" "$MNT/c" >/dev/null
	t1=$(date +%s.%N)
	printf '%-8s %-11s %10.1f MiB/s\n' "$mode" dedupe "$(echo "$MB / ($t1 - $t0)" | bc -l)"
	fusermount3 -u "$MNT"
	"$RLFS" fsck -n "$DIR/img" >/dev/null || { echo "fsck of the $mode image failed" >&2; exit 1; }
}

run_mode default
run_mode dax

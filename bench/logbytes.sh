#!/bin/bash
# Log bytes per metadata operation: reflinkfs (bench/logbytes.c, through
# the library) against kernel XFS (the same operations as system calls on a
# loop-mounted `mkfs.xfs -m reflink=1,rmapbt=1` image, its log traffic read
# from /proc/fs/xfs/stat: the "log" line's second field counts 512-byte
# blocks written to every XFS log on the machine, so nothing else may use
# XFS meanwhile).
#
#   bench/logbytes.sh BUILD [N]      (N operations of each kind, default 500)
#
# Prints a markdown table: bytes per operation on each, and the ratio.
set -eu
BUILD=$(cd "${1:?usage: bench/logbytes.sh BUILD [N]}" && pwd)
N=${2:-500}
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "logbytes: run as root" >&2; exit 1; }
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/rlfs-logbytes.XXXXXX")
MNT=$W/mnt
mkdir -p "$MNT"
cleanup() {
	mountpoint -q "$MNT" && { umount "$MNT" || umount -l "$MNT"; }
	for dev in $(losetup -j "$W/xfs.img" -O NAME -n 2>/dev/null); do losetup -d "$dev"; done
	rm -rf --one-file-system "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cc -O2 -I"$SRCDIR/include" -o "$W/logbytes" "$SRCDIR/bench/logbytes.c" \
	"$BUILD/librlfs.a" -lisal -lpthread
"$W/logbytes" "$W/rlfs.img" "$N" >"$W/rlfs.out"

truncate -s 1G "$W/xfs.img"
mkfs.xfs -q -f -m reflink=1,rmapbt=1 "$W/xfs.img"
mount -o loop "$W/xfs.img" "$MNT"
python3 - "$MNT" "$N" >"$W/xfs.out" <<'EOF'
import fcntl, os, sys
mnt, n = sys.argv[1], int(sys.argv[2])
FICLONE = 0x40049409

def log_bytes():
    with open("/proc/fs/xfs/stat") as f:
        for line in f:
            if line.startswith("log "):
                return int(line.split()[2]) * 512
    raise SystemExit("no log line in /proc/fs/xfs/stat")

def phase(name, op):
    dfd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    b0 = log_bytes()
    for i in range(n):
        op(i, dfd)
    b = log_bytes() - b0
    os.close(dfd)
    print(name, n, b, round(b / n))

def create(i, dfd):
    fd = os.open(f"{mnt}/c-{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.fsync(fd)
    os.close(fd)

def create4k(i, dfd):
    fd = os.open(f"{mnt}/w-{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"Z" * 4096)
    os.fsync(fd)
    os.close(fd)

def unlink(i, dfd):
    os.unlink(f"{mnt}/c-{i}")
    os.fsync(dfd)

src = os.open(f"{mnt}/clone-src", os.O_CREAT | os.O_RDWR, 0o644)
def clone(i, dfd):
    fd = os.open(f"{mnt}/k-{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    fcntl.ioctl(fd, FICLONE, src)
    os.fsync(fd)
    os.close(fd)

def batch(i, dfd):
    os.close(os.open(f"{mnt}/b-{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    if i == n - 1:
        os.sync()

phase("create", create)
phase("create+4k", create4k)
phase("unlink", unlink)
os.write(src, b"Z" * 65536)
os.fsync(src)
phase("clone", clone)
phase("create-batch", batch)
EOF
umount "$MNT"

echo "| operation (N=$N) | reflinkfs log bytes/op | XFS log bytes/op | reflinkfs / XFS |"
echo "| --- | ---: | ---: | ---: |"
join <(sort "$W/rlfs.out") <(sort "$W/xfs.out") | sort -k1,1 |
	awk '{ printf "| %s | %d | %d | %.1f |\n", $1, $4, $7, ($7 ? $4 / $7 : 0) }'

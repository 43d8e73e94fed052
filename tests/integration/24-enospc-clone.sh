#!/bin/bash
# 24-enospc-clone: running out of space in the middle of a clone and of a
# copy-on-write overwrite on a small image.  For a range of free-space
# amounts left on an otherwise full filesystem:
#   - clone (RLFS_IOC_CLONE_RANGE via `reflinkfs io reflink`) of a file with
#     ~2,000 extents (needs bmbt and refcount btree blocks as it goes) into
#     a new file and into a file with older data;
#   - overwrite all of a cloned (shared) file (every block needs a new one);
# whatever the outcome (success or ENOSPC), the source is unchanged, every
# block of the destination holds its old or its new contents (never other
# data), before and after unmount + fsck (clean) + remount, and deleting the
# files gives all space back.
. "$(dirname "$0")/../lib.sh"
common_setup
# -o wbresv=0: this test fills the filesystem to a few hundred blocks and
# drives the library's own ENOSPC paths (clone, copy-on-write); with the
# writeback reserve (docs/DESIGN.md "ENOSPC under the writeback cache")
# the fill stops a reserve's worth earlier and the overwrites land in the
# reserve, so nothing here would run out (62-enospc-wbcache tests that)
WB=(-o wbresv=0)

# blockcheck FILE NEW OLD: every 4 KiB block of FILE equals the block of NEW
# or of OLD at the same offset (a missing file or past EOF: zeros); prints
# "new N old N" counts of blocks that are new-only / old-only.
cat >"$T/blockcheck.py" <<'PYEOF'
import sys
def rd(p):
    try:
        return open(p, "rb").read()
    except FileNotFoundError:
        return b""
f, new, old = (rd(p) for p in sys.argv[1:4])
BS = 4096
n_new = n_old = 0
for off in range(0, len(f), BS):
    b = f[off:off + BS]
    nb = new[off:off + BS].ljust(len(b), b"\0")
    ob = old[off:off + BS].ljust(len(b), b"\0")
    if b == nb and b != ob:
        n_new += 1
    elif b == ob and b != nb:
        n_old += 1
    elif b != nb:
        print(f"{sys.argv[1]}: block at {off} is neither old nor new data", file=sys.stderr)
        sys.exit(1)
print(f"new {n_new} old {n_old} size {len(f)}")
PYEOF

img=$T/small.img mnt=$T/mnt
SIZE=${ENOSPC_IMG:-80M}

# fill_to FREE_BLOCKS: fill the mount with preallocated space (fallocate in
# 1 MiB, then 4 KiB steps until ENOSPC: synchronous, unlike buffered writes,
# which under the FUSE writeback cache do not see ENOSPC before writeback),
# then punch FREE_BLOCKS blocks of the filler so that about that many are free
fill_to() {
	local want=$1
	"$PY" - "$mnt/fill" <<'PYEOF'
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
off = 0
for step in (1 << 20, 4096):
    while True:
        if libc.fallocate(fd, 0, off, step):
            e = ctypes.get_errno()
            if e != errno.ENOSPC:
                raise OSError(e, "fallocate")
            break
        off += step
os.fsync(fd)
PYEOF
	sync -f "$mnt"
	if [ "$want" -gt 0 ]; then
		fallocate -p -o 0 -l $((want * 4096)) "$mnt/fill"
		sync -f "$mnt"
	fi
	log "free blocks now $(df_free_blocks "$mnt") (asked for $want)"
}

setup_files() {
	rm -f "$img"
	rlfs_mkfs "$img" -s "$SIZE"
	rlfs_mount "$img" "$mnt" "${WB[@]}"
	FREE_EMPTY=$(df_free_blocks "$mnt")
	# src: 16 MiB written, then every other block punched: 2,048 extents
	head -c $((16 << 20)) /dev/urandom >"$T/src.data"
	cp "$T/src.data" "$mnt/src"
	"$PY" - "$mnt/src" "$T/src.data" <<'PYEOF'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
fd = os.open(sys.argv[1], os.O_RDWR)
model = bytearray(open(sys.argv[2], "rb").read())
for i in range(1, len(model) // 4096, 2):
    if libc.fallocate(fd, 3, i * 4096, 4096):   # PUNCH_HOLE | KEEP_SIZE
        raise OSError(ctypes.get_errno(), "fallocate")
    model[i * 4096:(i + 1) * 4096] = bytes(4096)
os.fsync(fd)
open(sys.argv[2], "wb").write(model)
PYEOF
	cmp "$mnt/src" "$T/src.data" || die "src differs from its model"
	# old: a file with older data, the destination of the second clone
	head -c $((16 << 20)) /dev/urandom >"$T/old.data"
	cp "$T/old.data" "$mnt/old"
	# shared: 4 MiB cloned (copy_file_range) into shared2
	head -c $((4 << 20)) /dev/urandom >"$T/shared.data"
	cp "$T/shared.data" "$mnt/shared"
	cp "$mnt/shared" "$mnt/shared2"
	sync -f "$mnt"
}

# blocks PHASE NAME FILE NEW OLD: blockcheck, failing the test on foreign data
blocks() {
	local out
	out=$("$PY" "$T/blockcheck.py" "$3" "$4" "$5") || die "$1: $2 has foreign data"
	log "$1: $2 $out"
}

check_all() { # phase
	cmp "$mnt/src" "$T/src.data" || die "$1: the clone source changed"
	cmp "$mnt/shared" "$T/shared.data" || die "$1: the CoW'd file's other owner changed"
	blocks "$1" dst1 "$mnt/dst1" "$T/src.data" /nonexistent
	blocks "$1" old "$mnt/old" "$T/src.data" "$T/old.data"
	blocks "$1" shared2 "$mnt/shared2" "$T/new.data" "$T/shared.data"
}

head -c $((4 << 20)) /dev/urandom >"$T/new.data"
cow_enospc=0 clone_enospc=0
for free in 0 1 2 3 5 8 30 300 700; do
	log "=== $free blocks left"
	setup_files
	fill_to "$free"
	rc1=0 rc2=0 rc3=0
	# the CoW overwrite first (needs 1,024 new blocks), then the clones (a
	# few dozen metadata blocks), then the clone that releases old data
	dd if="$T/new.data" of="$mnt/shared2" bs=1M conv=notrunc,fsync status=none 2>"$T/dd.err" || rc3=$?
	"$RLFS" io -f -c "reflink $mnt/src" "$mnt/dst1" >"$T/io1.out" 2>&1 || rc1=$?
	"$RLFS" io -c "reflink $mnt/src 0 0 0" "$mnt/old" >"$T/io2.out" 2>&1 || rc2=$?
	log "clone into new file: exit $rc1 $(tail -n1 "$T/io1.out"); clone onto old data: exit $rc2 $(tail -n1 "$T/io2.out"); CoW overwrite: exit $rc3 $(cat "$T/dd.err")"
	grep -qi 'No space left' "$T/dd.err" && cow_enospc=$((cow_enospc + 1))
	grep -qi 'No space left' "$T/io1.out" "$T/io2.out" && clone_enospc=$((clone_enospc + 1))
	[ $rc1 = 0 ] || grep -qi 'No space left' "$T/io1.out" || { cat "$T/io1.out" >&2; die "clone failed with another error"; }
	[ $rc2 = 0 ] || grep -qi 'No space left' "$T/io2.out" || { cat "$T/io2.out" >&2; die "clone onto old data failed with another error"; }
	[ $rc3 = 0 ] || grep -qi 'No space left' "$T/dd.err" || { cat "$T/dd.err" >&2; die "CoW overwrite failed with another error"; }
	check_all "before unmount"
	rlfs_umount "$mnt"
	rlfs_fsck "$img"
	rlfs_mount "$img" "$mnt" "${WB[@]}"
	check_all "after remount"
	# space comes back (blocks of unlinked files are freed when the kernel
	# forgets their inodes, which may lag: check after a remount)
	rm -f "$mnt"/*
	rlfs_umount "$mnt"
	rlfs_fsck "$img"
	rlfs_mount "$img" "$mnt" "${WB[@]}"
	[ "$(df_free_blocks "$mnt")" = "$FREE_EMPTY" ] ||
		die "after deleting everything $(df_free_blocks "$mnt") blocks free, $FREE_EMPTY on the fresh fs"
	rlfs_umount "$mnt"
	rlfs_fsck "$img"
done
log "ENOSPC in $cow_enospc CoW overwrites and $clone_enospc clone rounds of 9"
[ $cow_enospc -ge 7 ] && [ $clone_enospc -ge 2 ] || die "too few ENOSPC cases: the test does not test what it should"
log OK

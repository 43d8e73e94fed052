#!/bin/bash
# The tree walk of `reflinkfs dedupe -r` (tools/dedupe_walk.c: several
# directories read at once) finds what nftw(FTW_PHYS [| FTW_MOUNT])
# finds, on a tree made to trip a walk up (dry runs on a tmpfs):
#  - every regular file of a wide and deep tree, each once: the tool's
#    file count equals find(1)'s (find -P -type f -size +0), on 40 runs
#    (threads race differently each time), and on 3 with RLIMIT_NOFILE
#    300 (the walk holds at most 75 directories open, the rest of a
#    directory of 300 subdirectories waits as paths);
#  - symbolic links are never followed (a link to a directory full of
#    files, a link back up the tree);
#  - -x leaves out a filesystem mounted inside the tree, without -x its
#    files count;
#  - under a low open-file limit (24, 64), all but 10 taken by inherited
#    descriptors, no file is skipped or reported changed;
#  - --exclude leaves out a directory and all below it;
#  - neither is even opened (inotify IN_OPEN): an automount point below
#    the tree stays unmounted with -x or when excluded;
#  - a directory the user cannot read is reported ("cannot read
#    directory") and the rest is walked;
#  - "dir/" walks as "dir" (the same file count; that the path strings
#    equal nftw's, which a --hashfile from the old walk needs, was checked
#    by hand, not here: the tool prints no per-file paths).
. "$(dirname "$0")/../lib.sh"
common_setup

t=$T/tree
mkdir -p "$t"
# a wide, deep tree: 64 directories of 4 levels with small files
for i in $(seq 1 8); do
	for j in $(seq 1 8); do
		d=$t/d$i/e$j/f/g
		mkdir -p "$d"
		printf 'file %s %s\n' "$i" "$j" >"$t/d$i/e$j/a"
		head -c $((4096 * (j % 3 + 1))) /etc/services >"$d/b"
	done
done
: >"$t/empty"                      # empty files are never taken
mkdir -p "$T/outside"
for k in 1 2 3; do cp /etc/services "$T/outside/o$k"; done
ln -s "$T/outside" "$t/link-out"   # not followed
ln -s .. "$t/d1/up"                # a loop if followed
ln -s /etc/services "$t/file-link" # a link to a file: not a file
mkfifo "$t/fifo"
mkdir -p "$t/inner"
mount -t tmpfs -o size=4m tmpfs "$t/inner" || die "cannot mount a tmpfs"
_MOUNTS+=("$t/inner")
_MOUNT_IMG+=("")
for k in 1 2; do cp /etc/services "$t/inner/i$k"; done
mkdir -p "$t/skipme/deeper"
cp /etc/services "$t/skipme/deeper/s"
# a directory of 300 subdirectories, more than the 256 descriptors the
# walk keeps on its stack (the rest are pushed as paths)
for i in $(seq 1 300); do
	mkdir "$t/d1/w$i"
	printf 'w %s\n' "$i" >"$t/d1/w$i/f"
done

count() { # tool's file count: count ARGS...
	"$RLFS" dedupe -n -r --json "$@" 2>"$T/count.err" |
		$PY -c 'import json,sys; print(json.load(sys.stdin)["files"])'
}
want_all=$(find -P "$t" -type f -size +0 | wc -l)
want_x=$(find -P "$t" -xdev -type f -size +0 | wc -l)
[ "$want_all" -gt "$want_x" ] || die "setup: the inner mount holds no files"
for r in $(seq 1 40); do
	got=$(count "$t")
	[ "$got" = "$want_all" ] || die "run $r: the walk found $got files, find $want_all"
done
log "40 walks: $want_all files each, as find"
# with RLIMIT_NOFILE 300 the walk keeps at most 75 directories open
for r in 1 2 3; do
	got=$(ulimit -n 300 && count "$t")
	[ "$got" = "$want_all" ] || die "ulimit -n 300, run $r: the walk found $got files, find $want_all"
done
got=$(count -x "$t")
[ "$got" = "$want_x" ] || die "-x: $got files, find -xdev $want_x"
# a low open-file limit, all but 10 of it taken by descriptors the tool
# inherits: it keeps fewer sources open and, at EMFILE, closes some and
# tries again; no file is skipped or reported changed
for lim in 24 64; do
	rc=0
	(
		ulimit -n $lim
		for fd in $(seq 10 $((lim - 1))); do eval "exec $fd</dev/null"; done
		"$RLFS" dedupe -n -r --json "$t" >"$T/lim.json" 2>"$T/lim.err"
	) || rc=$?
	[ $rc = 0 ] || { head "$T/lim.err"; die "ulimit -n $lim (all but 10 inherited): exit $rc"; }
	got=$($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["files"], len(d["changed_files"]), d["failed_ranges"])' "$T/lim.json")
	[ "$got" = "$want_all 0 0" ] || { head "$T/lim.err"; die "ulimit -n $lim: files, changed, failed = $got, want $want_all 0 0"; }
done
log "ulimit -n 24 and 64, all but 10 inherited: every file walked and compared"
got=$(count "$t/")
[ "$got" = "$want_all" ] || die "a root with a trailing slash: $got files, want $want_all"
want_ex=$(find -P "$t" -path "$t/skipme" -prune -o -type f -size +0 -print | wc -l)
got=$(count --exclude skipme "$t")
[ "$got" = "$want_ex" ] || die "--exclude skipme: $got files, want $want_ex"
[ ! -s "$T/count.err" ] || { cat "$T/count.err"; die "messages on a clean walk"; }
# neither -x's mount point below nor an --exclude'd directory is opened
# (opening an autofs mount point would mount it): inotify IN_OPEN watches
# on both while the tool walks
opens_during() { # opens_during DIR... -- CMD...: "DIR N" per watched DIR
	$PY - "$@" <<'PY'
import ctypes, os, struct, subprocess, sys
args = sys.argv[1:]
dirs, cmd = args[:args.index("--")], args[args.index("--") + 1:]
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_NONBLOCK)
assert fd >= 0
wd = {libc.inotify_add_watch(fd, d.encode(), 0x20): d for d in dirs}  # IN_OPEN
assert all(w >= 0 for w in wd)
subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
n = dict.fromkeys(dirs, 0)
try:
    buf = os.read(fd, 65536)
except BlockingIOError:
    buf = b""
off = 0
while off < len(buf):
    w, mask, cookie, ln = struct.unpack_from("iIII", buf, off)
    n[wd[w]] += 1
    off += 16 + ln
for d in dirs:
    print(d, n[d])
PY
}
opens_during "$t/inner" "$t/skipme" "$t/d2" -- "$RLFS" dedupe -n -r -x --exclude skipme "$t" >"$T/opens"
cat "$T/opens"
grep -q "^$t/d2 [1-9]" "$T/opens" || die "the watch saw no open of a walked directory"
grep -q "^$t/inner 0$" "$T/opens" || die "-x opened the mount point below the tree"
grep -q "^$t/skipme 0$" "$T/opens" || die "--exclude skipme opened skipme"

# an unreadable directory, walked by an unprivileged user
chmod 755 "$T"
chmod -R a+rX "$t"
mkdir -p "$t/locked/in"
cp /etc/services "$t/locked/in/x"
chmod 700 "$t/locked"
cp /etc/services "$t/secret"       # walked, but the user cannot open it
chmod 600 "$t/secret"
rc=0
setpriv --reuid=65534 --regid=65534 --clear-groups -- \
	"$RLFS" dedupe -n -r --json "$t" >"$T/u.json" 2>"$T/u.err" || rc=$?
grep -q "locked: cannot read directory" "$T/u.err" ||
	{ cat "$T/u.err"; die "no message for the unreadable directory (exit $rc)"; }
grep -q "secret: cannot open: Permission denied (skipped)" "$T/u.err" ||
	{ cat "$T/u.err"; die "no message for the file the user cannot open"; }
grep -q "secret: changed during the run" "$T/u.err" && die "a file that cannot be opened was reported as changed"
got=$($PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["files"], len(d["changed_files"]), d["failed_ranges"] > 0)' "$T/u.json")
[ "$got" = "$want_all 0 True" ] || die "with a locked directory and file: files scanned, changed, failed = $got, want $want_all 0 True"
[ $rc = 1 ] || die "exit $rc with a file that could not be read, want 1 (some failed)"
umount "$t/inner"
log "ok"

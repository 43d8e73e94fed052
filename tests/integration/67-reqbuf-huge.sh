#!/bin/bash
# 67-reqbuf-huge: the daemon's request buffers become transparent huge
# pages only in workers that served a large request (fuse/session.c,
# reqbuf_go_huge; docs/DESIGN.md, the O_DIRECT paragraph).
#
# Asserts, on a mount without io_uring (the /dev/fuse workers' buffers):
#   - after 300 small requests (mkdir, create, stat, readdir) the daemon
#     maps no anonymous huge page (AnonHugePages 0 in
#     /proc/PID/smaps_rollup): small-request workers keep 4 KiB pages;
#   - after 64 MiB written with dd bs=1M conv=fsync (1 MiB writeback
#     WRITEs) it maps at least one (THP in "madvise" or "always" mode
#     only; in "never" mode this check is skipped and said so);
#   - the written file reads back with the same sha256 after unmount and
#     mount, and fsck -n is clean.
# The first check needs THP mode "madvise" (in "always" mode glibc's own
# large allocations may be huge): skipped and said so otherwise.
. "$(dirname "$0")/../lib.sh"
common_setup

thp=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || true)
log "THP mode: ${thp:-unknown}"
huge_kb() { awk '/^AnonHugePages:/ {print $2}' "/proc/$1/smaps_rollup"; }
rss_kb() { awk '/^Rss:/ {print $2}' "/proc/$1/smaps_rollup"; }

rlfs_mkfs "$T/img" -s 1G
rlfs_mount "$T/img" "$T/m" -o nouring
pid=$(daemon_of "$T/img")
[ -n "$pid" ] || die "no daemon holds $T/img"

for i in $(seq 100); do
	mkdir "$T/m/d$i"
	: >"$T/m/d$i/f"
	stat "$T/m/d$i/f" >/dev/null
done
ls -R "$T/m" >/dev/null
log "after small requests: Rss $(rss_kb "$pid") kB, AnonHugePages $(huge_kb "$pid") kB"
if [ "$thp" = madvise ]; then
	[ "$(huge_kb "$pid")" = 0 ] ||
		die "huge pages mapped after small requests only ($(huge_kb "$pid") kB)"
else
	log "skipped the small-request check (THP mode ${thp:-unknown}, not madvise)"
fi

head -c $((64 << 20)) /dev/urandom >"$T/data"
dd if="$T/data" of="$T/m/big" bs=1M conv=fsync status=none
log "after 64 MiB of 1 MiB writes: Rss $(rss_kb "$pid") kB, AnonHugePages $(huge_kb "$pid") kB"
case $thp in
madvise | always)
	[ "$(huge_kb "$pid")" -gt 0 ] ||
		die "no huge page mapped after 64 MiB of 1 MiB writes" ;;
*) log "skipped the large-request check (THP mode ${thp:-unknown})" ;;
esac

want=$(sha256sum <"$T/data" | cut -d' ' -f1)
rlfs_umount "$T/m"
rlfs_mount "$T/img" "$T/m" -o nouring
[ "$(sha256sum <"$T/m/big" | cut -d' ' -f1)" = "$want" ] || die "big reads back different data"
rlfs_umount "$T/m"
rlfs_fsck "$T/img"
log "ok"

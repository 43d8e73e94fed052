#!/bin/sh
# Install the Debian packages reflinkfs needs to build, test and benchmark,
# if any is missing.  Run as root on Debian 12.
set -e
PKGS="build-essential meson ninja-build pkg-config fuse3 libfuse3-dev libisal-dev \
liburing-dev libcmocka-dev xfsprogs btrfs-progs attr acl util-linux diffutils e2fsprogs python3 \
mawk gawk duperemove time libxxhash-dev libsqlite3-dev strace"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "deps: installing$missing"
	if [ "$(id -u)" != 0 ]; then echo "deps: need root to install$missing" >&2; exit 1; fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || true
	apt-get install -y -qq $missing >/dev/null
fi
# /dev/fuse is needed by the mount tests and the demo.
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
exit 0

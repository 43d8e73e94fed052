#!/bin/bash
# The main job keeps working: scripts/demo.sh on a small real tree, with the
# image and mount point inside this test's temp dir, under mawk and gawk.
. "$(dirname "$0")/../lib.sh"
common_setup
src=/usr/include/linux
[ -d "$src" ] || src=/usr/share/doc
# once with each awk (whichever one /usr/bin/awk is): its fiemap parsing
# once failed under gawk only
for awk in mawk gawk; do
	command -v $awk >/dev/null || die "$awk missing (scripts/deps.sh installs it)"
	mkdir -p "$T/awk-$awk"
	ln -sf "$(command -v $awk)" "$T/awk-$awk/awk"
	log "demo with awk = $awk"
	PATH=$T/awk-$awk:$PATH IMG=$T/demo.img MNT=$T/demo.mnt SVG=$T/demo.svg KEEP=0 run_to 600 \
		bash "$SRCDIR/scripts/demo.sh" "$(dirname "$RLFS")" "$src" >"$T/demo.out" 2>&1 ||
		{ tail -30 "$T/demo.out" >&2; die "demo.sh failed (awk = $awk)"; }
	cat "$T/demo.out"
	grep -q "result *OK" "$T/demo.out" || die "demo summary has no OK result (awk = $awk)"
	[ ! -e "$T/demo.img" ] || die "demo left its image behind"
	# the space map: a picture kept for the user, with shared blocks
	python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' "$T/demo.svg" ||
		die "demo's space map is not a well-formed SVG (awk = $awk)"
	grep -Eq "space map .*: [1-9][0-9]* blocks shared" "$T/demo.out" ||
		die "demo summary shows no shared blocks in the space map (awk = $awk)"
	# the repair step: the zeroed bmbt came back from the rmap, shared
	grep -Eq "repair  +bmbt of a 1000-extent clone zeroed \([1-9][0-9]* blocks\): fsck rebuilt it" "$T/demo.out" ||
		die "demo summary has no repair line (awk = $awk)"
	grep -q "frag-clone restored byte for byte from the rmap, 1000 extents still shared" "$T/demo.out" ||
		die "demo's repaired clone is not shown restored and shared (awk = $awk)"
	# the atomic update step: committed, then EBUSY with the change kept
	grep -q "^config.txt: version 2 color = blue   <- the new version, committed" "$T/demo.out" ||
		die "demo's atomic update was not committed (awk = $awk)"
	grep -q "io: reflinkfs io: commitupdate: committing update: Device or resource busy" "$T/demo.out" ||
		die "demo's second atomic update did not fail with EBUSY (awk = $awk)"
	grep -q "^config.txt: version 2 color = blue edited meanwhile   <- the concurrent change kept" "$T/demo.out" ||
		die "demo's file after the refused commit is not shown with the concurrent change (awk = $awk)"
	grep -Eq "atomic update +startupdate \+ pwrite \+ commitupdate: .* failed with EBUSY" "$T/demo.out" ||
		die "demo summary has no atomic update line (awk = $awk)"
	# the dedupe step: a second copy from outside shared after the fact
	grep -Eq "dedupe  +a second copy from outside: reflinkfs dedupe shared [1-9][0-9]* bytes, df -[1-9][0-9]* KiB, both copies byte-identical" "$T/demo.out" ||
		die "demo summary has no dedupe line with bytes shared and freed (awk = $awk)"
	grep -q "tree and dup byte-identical to" "$T/demo.out" ||
		die "demo's dedupe step did not verify both copies (awk = $awk)"
	rm -f "$T/demo.svg"
	mountpoint -q "$T/demo.mnt" 2>/dev/null && die "demo left a mount behind"
done
log OK

# User-facing targets.  The real build is Meson+Ninja in build/ (release,
# with debug info) and build-asan/ (AddressSanitizer + UBSan, what the tests
# run).  Every target installs the Debian packages it needs first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
PREFIX     ?= /usr/local
DEPS_STAMP := .deps-ok

.PHONY: all deps build asan check unit demo bench bench-rmap bench-dedupe bench-cow install clean crashtest fuzz

all: build

deps:
	@sh scripts/deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) --prefix=$(PREFIX) -Dwerror=true

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

# Every test (unit + integration), under the sanitizer build.  Ends with
# "N passed, N failed".
check: build asan
	sh tests/run.sh $(ASAN_BUILD)

unit: asan
	sh tests/run.sh $(ASAN_BUILD) unit

# The long crash test (tests/crash/crashtest.c): SEEDS seeds from SEED, each
# with every workload, COUNT random cuts per flush interval and OPS
# operations (0: the workload's default); then crashes during fsck's own
# repair (--mode repair, COUNT torn cuts per flush).  Release build for speed;
# CRASH_BUILD=build-asan for the sanitizers.  Ends with one "checked N crash
# images, M failed" line per seed; exit status non-zero if any failed.
SEED       ?= 1
SEEDS      ?= 5
COUNT      ?= 8
OPS        ?= 0
CRASH_BUILD ?= $(BUILD)
crashtest: build asan
	@fail=0; s=$(SEED); end=$$(($(SEED) + $(SEEDS))); \
	while [ $$s -lt $$end ]; do \
		$(CRASH_BUILD)/rlfs-crashtest --workload all --seed $$s --count $(COUNT) \
			--ops $(OPS) || fail=1; \
		$(CRASH_BUILD)/rlfs-crashtest --mode repair --seed $$s --count $(COUNT) || fail=1; \
		s=$$((s + 1)); \
	done; exit $$fail

# The long fsck fuzz (tests/integration/54-fsck-fuzz.sh, which make check
# runs with 200 iterations): FUZZ_ITERS damaged images from FUZZ_SEED, on
# FUZZ_BUILD (the sanitizer build by default: a crash is what it hunts).
FUZZ_ITERS ?= 5000
FUZZ_SEED  ?= 1000
FUZZ_BUILD ?= $(ASAN_BUILD)
fuzz: build asan
	FUZZ_ITERS=$(FUZZ_ITERS) FUZZ_SEED=$(FUZZ_SEED) TEST_TIMEOUT=86400 \
		sh tests/run.sh $(FUZZ_BUILD) integration 54-fsck-fuzz

demo: build
	sh scripts/demo.sh $(BUILD) $(DIR)

# The benchmark against kernel XFS (bench/bench.sh), then the reverse map at
# scale (bench/rmapscale.sh: GETFSMAP of 1,000,000 records, fsck of a
# 100 GiB image); tables for docs/BENCHMARKS.md.
bench: build
	sh bench/bench.sh $(BUILD)
	sh bench/rmapscale.sh $(BUILD)

# The reverse map's cost for create and unlink alone (bench/rmapcreate.sh):
# XFS and reflinkfs with the rmap on and off, rotated within each of RUNS
# (7) runs, so the on/off ratios are not the machine's drift.
bench-rmap: build
	sh bench/rmapcreate.sh $(BUILD)

# The offline dedupe benchmark (issue 12, bench/dedupe.sh): duperemove and
# `reflinkfs dedupe` on a kernel XFS loop mount, `reflinkfs dedupe` on
# reflinkfs, one seeded corpus of CORPUS_MIB (1024) MiB from /usr; a table
# with the share of the block-aligned bound each reclaims.
CORPUS_MIB ?= 1024
bench-dedupe: build
	CORPUS_MIB=$(CORPUS_MIB) sh bench/dedupe.sh $(BUILD)

# The copy-on-write benchmark (issue 13 section 6, bench/cow.sh): random
# and sequential overwrites of a cloned COW_MB (1024) MiB file, the
# sequential read after the random ones and the extent count, reflinkfs
# against kernel XFS.  COW_MB=256 RUNS=1 for a quick run.
COW_MB ?= 1024
bench-cow: build
	COW_MB=$(COW_MB) sh bench/cow.sh $(BUILD)

install: build
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/include/reflinkfs
	install -m 755 $(BUILD)/reflinkfs $(DESTDIR)$(PREFIX)/sbin/reflinkfs
	ln -sf reflinkfs $(DESTDIR)$(PREFIX)/sbin/mkfs.reflinkfs
	ln -sf reflinkfs $(DESTDIR)$(PREFIX)/sbin/fsck.reflinkfs
	ln -sf reflinkfs $(DESTDIR)$(PREFIX)/sbin/mount.reflinkfs
	ln -sf reflinkfs $(DESTDIR)$(PREFIX)/sbin/mount.fuse.reflinkfs
	install -m 644 include/reflinkfs/*.h $(DESTDIR)$(PREFIX)/include/reflinkfs/
	# LD_PRELOAD shim: FICLONE/FICLONERANGE/FS_IOC_FIEMAP on reflinkfs files
	install -d $(DESTDIR)$(PREFIX)/lib
	install -m 755 $(BUILD)/libreflinkfs-preload.so $(DESTDIR)$(PREFIX)/lib/libreflinkfs-preload.so
	# mount(8) looks in /sbin for mount.<type>
	ln -sf $(PREFIX)/sbin/reflinkfs /sbin/mount.reflinkfs 2>/dev/null || true
	# the kernel calls the type fuse.reflinkfs: mount -o remount looks for this one
	ln -sf $(PREFIX)/sbin/reflinkfs /sbin/mount.fuse.reflinkfs 2>/dev/null || true

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

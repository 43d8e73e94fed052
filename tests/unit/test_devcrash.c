/*
 * test_devcrash.c: the crash-recording device (lib/dev_crash.h): what it
 * records, and the crash images it builds for each kind of cut.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "dev.h"
#include "dev_crash.h"

#define SEC RLFS_CRASH_SECTOR_BYTES
#define DEV_BYTES (64u * SEC)

struct fixture {
	struct rlfs_dev *mem, *dev;
	struct rlfs_crash_rec *rec;
	char path[64];
	int fd;
	uint8_t *img;
};

static void setup(struct fixture *fx)
{
	memset(fx, 0, sizeof(*fx));
	assert_int_equal(rlfs_dev_open_mem(DEV_BYTES, &fx->mem), 0);
	/* a base image: sector 3 holds 0x33 */
	uint8_t *b = malloc(SEC);
	memset(b, 0x33, SEC);
	assert_int_equal(rlfs_dev_pwrite(fx->mem, b, SEC, 3 * SEC), 0);
	free(b);
	assert_int_equal(rlfs_crash_rec_new(fx->mem, &fx->rec), 0);
	assert_int_equal(rlfs_crash_dev_open(fx->rec, fx->mem, &fx->dev), 0);
	snprintf(fx->path, sizeof(fx->path), "/tmp/rlfs-devcrash-XXXXXX");
	fx->fd = mkstemp(fx->path);
	assert_true(fx->fd >= 0);
	fx->img = malloc(DEV_BYTES);
}

static void teardown(struct fixture *fx)
{
	rlfs_dev_close(fx->dev);
	rlfs_crash_rec_free(fx->rec);
	close(fx->fd);
	unlink(fx->path);
	free(fx->img);
}

static void fill_write(struct fixture *fx, uint8_t v, uint64_t sector, unsigned nsec)
{
	uint8_t *b = malloc((size_t)nsec * SEC);
	memset(b, v, (size_t)nsec * SEC);
	assert_int_equal(rlfs_dev_pwrite(fx->dev, b, (size_t)nsec * SEC, sector * SEC), 0);
	free(b);
}

/* build the cut and read the image back; returns the build's result */
static int build(struct fixture *fx, uint64_t pos, bool keep_all, uint64_t seed, unsigned torn,
		 struct rlfs_crash_stats *st)
{
	struct rlfs_crash_cut c = { .pos = pos, .keep_all = keep_all, .seed = seed,
				    .torn_pct = torn };
	int err = rlfs_crash_rec_build(fx->rec, &c, fx->fd, st);
	if (err)
		return err;
	assert_int_equal(pread(fx->fd, fx->img, DEV_BYTES, 0), DEV_BYTES);
	return 0;
}

static uint8_t sector_byte(struct fixture *fx, uint64_t sector)
{
	/* the sector is uniform in these tests: check it and return its value */
	const uint8_t *p = fx->img + sector * SEC;
	for (unsigned i = 1; i < SEC; i++)
		assert_int_equal(p[i], p[0]);
	return p[0];
}

/* writes and flushes are recorded in order, and pass through to the device */
static void test_record(void **state)
{
	(void)state;
	struct fixture fx;
	setup(&fx);
	assert_int_equal(rlfs_crash_rec_pos(fx.rec), 0);
	fill_write(&fx, 0xA1, 5, 1);
	assert_int_equal(rlfs_dev_flush(fx.dev), 0);
	fill_write(&fx, 0xB2, 6, 2);
	assert_int_equal(rlfs_crash_rec_pos(fx.rec), 3);
	struct rlfs_crash_event ev;
	assert_int_equal(rlfs_crash_rec_event(fx.rec, 0, &ev), 0);
	assert_int_equal(ev.kind, RLFS_CRASH_WRITE);
	assert_int_equal(ev.off_bytes, 5 * SEC);
	assert_int_equal(ev.len_bytes, SEC);
	assert_int_equal(rlfs_crash_rec_event(fx.rec, 1, &ev), 0);
	assert_int_equal(ev.kind, RLFS_CRASH_FLUSH);
	assert_int_equal(rlfs_crash_rec_event(fx.rec, 3, &ev), -EINVAL);
	uint8_t b[SEC];
	assert_int_equal(rlfs_dev_pread(fx.dev, b, SEC, 7 * SEC), 0);
	assert_int_equal(b[0], 0xB2);
	assert_int_equal(rlfs_crash_rec_size_bytes(fx.rec), DEV_BYTES);
	assert_int_equal(rlfs_crash_rec_bytes(fx.rec), 3 * SEC);
	/* an out-of-range write fails and is not recorded */
	assert_int_equal(rlfs_dev_pwrite(fx.dev, b, SEC, DEV_BYTES), -EIO);
	assert_int_equal(rlfs_crash_rec_pos(fx.rec), 3);
	teardown(&fx);
}

/* cuts: the base image, durable prefix, window kept in full or in part */
static void test_cuts(void **state)
{
	(void)state;
	struct fixture fx;
	setup(&fx);
	fill_write(&fx, 0xA1, 5, 1);          /* 0 */
	fill_write(&fx, 0xA2, 3, 1);          /* 1: over the base sector */
	assert_int_equal(rlfs_dev_flush(fx.dev), 0); /* 2 */
	fill_write(&fx, 0xB1, 8, 1);          /* 3 */
	fill_write(&fx, 0xB2, 9, 1);          /* 4 */
	fill_write(&fx, 0xB3, 8, 1);          /* 5: overwrites 3 */
	struct rlfs_crash_stats st;

	/* cut 0: the base image only */
	assert_int_equal(build(&fx, 0, true, 1, 0, &st), 0);
	assert_int_equal(sector_byte(&fx, 3), 0x33);
	assert_int_equal(sector_byte(&fx, 5), 0);

	/* at the flush: both writes durable, nothing after */
	assert_int_equal(build(&fx, 3, false, 1, 0, &st), 0);
	assert_int_equal(sector_byte(&fx, 3), 0xA2);
	assert_int_equal(sector_byte(&fx, 5), 0xA1);
	assert_int_equal(sector_byte(&fx, 8), 0);
	assert_int_equal(st.durable_writes, 2);
	assert_int_equal(st.window_writes, 0);

	/* keep_all: the window in order, the later write wins */
	assert_int_equal(build(&fx, 6, true, 1, 0, &st), 0);
	assert_int_equal(sector_byte(&fx, 8), 0xB3);
	assert_int_equal(sector_byte(&fx, 9), 0xB2);
	assert_int_equal(st.window_writes, 3);
	assert_int_equal(st.kept, 3);

	/* random subsets: durable part always there; over many seeds every
	 * window write is both kept and lost somewhere; same seed, same image */
	bool kept9 = false, lost9 = false;
	for (uint64_t seed = 1; seed <= 64; seed++) {
		assert_int_equal(build(&fx, 6, false, seed, 0, &st), 0);
		assert_int_equal(sector_byte(&fx, 3), 0xA2);
		assert_int_equal(sector_byte(&fx, 5), 0xA1);
		assert_int_equal(st.kept + st.lost, 3);
		uint8_t s9 = sector_byte(&fx, 9);
		assert_true(s9 == 0 || s9 == 0xB2);
		kept9 |= s9 == 0xB2;
		lost9 |= s9 == 0;
		uint8_t s8 = sector_byte(&fx, 8);
		assert_true(s8 == 0 || s8 == 0xB1 || s8 == 0xB3);
		uint8_t again[SEC];
		memcpy(again, fx.img + 8 * SEC, SEC);
		assert_int_equal(build(&fx, 6, false, seed, 0, NULL), 0);
		assert_memory_equal(again, fx.img + 8 * SEC, SEC);
	}
	assert_true(kept9);
	assert_true(lost9);

	/* a lying device: the flush at 2 was not done, so writes 0 and 1 are
	 * in the window too; at least one seed loses sector 5's write */
	bool lost5 = false;
	for (uint64_t seed = 1; seed <= 64; seed++) {
		struct rlfs_crash_cut c = { .pos = 6, .seed = seed, .lost_flushes = 1 };
		assert_int_equal(rlfs_crash_rec_build(fx.rec, &c, fx.fd, &st), 0);
		assert_int_equal(st.durable_writes, 0);
		assert_int_equal(st.window_writes, 5);
		assert_int_equal(pread(fx.fd, fx.img, DEV_BYTES, 0), DEV_BYTES);
		uint8_t s3 = sector_byte(&fx, 3);
		assert_true(s3 == 0x33 || s3 == 0xA2);
		lost5 |= sector_byte(&fx, 5) == 0;
	}
	assert_true(lost5);

	/* bad cuts */
	assert_int_equal(build(&fx, 7, true, 1, 0, NULL), -EINVAL);
	assert_int_equal(build(&fx, 6, false, 1, 101, NULL), -EINVAL);
	teardown(&fx);
}

/* torn writes: a multi-sector write lands in part, sector by sector */
static void test_torn(void **state)
{
	(void)state;
	struct fixture fx;
	setup(&fx);
	assert_int_equal(rlfs_dev_flush(fx.dev), 0);
	fill_write(&fx, 0xC1, 10, 8);
	bool mixed = false;
	uint64_t torn = 0;
	for (uint64_t seed = 1; seed <= 64; seed++) {
		struct rlfs_crash_stats st;
		assert_int_equal(build(&fx, 2, false, seed, 100, &st), 0);
		assert_int_equal(st.torn, 1);
		torn += st.torn;
		unsigned newsec = 0;
		for (uint64_t s = 10; s < 18; s++) {
			uint8_t v = sector_byte(&fx, s);
			assert_true(v == 0 || v == 0xC1);
			newsec += v == 0xC1;
		}
		mixed |= newsec > 0 && newsec < 8;
	}
	assert_int_equal(torn, 64);
	assert_true(mixed);
	/* a one-sector write is never torn */
	fill_write(&fx, 0xD1, 30, 1);
	struct rlfs_crash_stats st;
	assert_int_equal(build(&fx, 3, false, 5, 100, &st), 0);
	assert_true(st.torn <= 1);   /* only the 8-sector write may be */
	teardown(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record),
		cmocka_unit_test(test_cuts),
		cmocka_unit_test(test_torn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * aiodio.c: buffered reads racing asynchronous direct writes (the fstests
 * generic/451 pattern), for tests/integration/04-posix.sh.
 *
 *   rlfs-aiodio FILE [ROUNDS]
 *
 * Fills FILE's first 1 MiB with 0xaa, then for each round submits an
 * O_DIRECT write of a new byte value over it through io_uring (an async
 * kiocb: the kernel may complete it after the syscall returns) while a
 * second thread keeps reading the same range through the page cache.  Once
 * the write has completed, a buffered read must return the new bytes.
 * Exit 0 if every round saw its data; 1 with a message otherwise; 2 on
 * setup errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RANGE_BYTES (1u << 20)
#define CHUNK_BYTES (64u << 10)

static const char *g_path;
static atomic_int g_stop;

static void *reader(void *arg)
{
	(void)arg;
	int fd = open(g_path, O_RDONLY);
	if (fd < 0)
		return NULL;
	char *buf = malloc(CHUNK_BYTES);
	unsigned off = 0;
	while (buf && !atomic_load(&g_stop)) {
		if (pread(fd, buf, CHUNK_BYTES, off) < 0)
			break;
		off = (off + CHUNK_BYTES) % RANGE_BYTES;
	}
	free(buf);
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE [ROUNDS]\n", argv[0]);
		return 2;
	}
	g_path = argv[1];
	int rounds = argc > 2 ? atoi(argv[2]) : 50;
	int bfd = open(g_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	int dfd = open(g_path, O_RDWR | O_DIRECT);
	void *wbuf, *rbuf;
	if (bfd < 0 || dfd < 0 || posix_memalign(&wbuf, 4096, RANGE_BYTES) ||
	    posix_memalign(&rbuf, 4096, RANGE_BYTES)) {
		perror(g_path);
		return 2;
	}
	memset(wbuf, 0xaa, RANGE_BYTES);
	if (pwrite(bfd, wbuf, RANGE_BYTES, 0) != RANGE_BYTES || fsync(bfd) < 0) {
		perror("initial write");
		return 2;
	}
	struct io_uring ring;
	if (io_uring_queue_init(8, &ring, 0) < 0) {
		fprintf(stderr, "io_uring_queue_init failed\n");
		return 2;
	}
	pthread_t t;
	pthread_create(&t, NULL, reader, NULL);
	int bad = 0;
	for (int r = 0; r < rounds && !bad; r++) {
		unsigned char v = (unsigned char)(0x10 + r % 0x40);
		memset(wbuf, v, RANGE_BYTES);
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		io_uring_prep_write(sqe, dfd, wbuf, RANGE_BYTES, 0);
		io_uring_submit(&ring);
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(&ring, &cqe) < 0 || cqe->res != (int)RANGE_BYTES) {
			fprintf(stderr, "direct write failed: %d\n", cqe ? cqe->res : -1);
			return 2;
		}
		io_uring_cqe_seen(&ring, cqe);
		if (pread(bfd, rbuf, RANGE_BYTES, 0) != RANGE_BYTES) {
			perror("pread");
			return 2;
		}
		for (unsigned i = 0; i < RANGE_BYTES; i++) {
			if (((unsigned char *)rbuf)[i] != v) {
				fprintf(stderr, "round %d: byte %u is 0x%02x after the direct write of 0x%02x "
					"completed (stale page cache)\n", r, i,
					((unsigned char *)rbuf)[i], v);
				bad = 1;
				break;
			}
		}
	}
	atomic_store(&g_stop, 1);
	pthread_join(t, NULL);
	io_uring_queue_exit(&ring);
	close(bfd);
	close(dfd);
	free(wbuf);
	free(rbuf);
	if (!bad)
		printf("%d rounds: buffered reads saw every completed direct write\n", rounds);
	return bad;
}

/*
 * fsyncops: time fsync-heavy loops, from one or several threads at once.
 *
 *   fsyncops write  DIR N THREADS   each thread appends 4 KiB to its own
 *                                   file and fsyncs, N / THREADS times
 *   fsyncops create DIR N THREADS   each thread creates N / THREADS files
 *                                   (open O_CREAT|O_EXCL, write 4 KiB,
 *                                   fsync, close)
 *
 * Prints "<phase> <N> <threads> <seconds> <ops per second>" (ops = write +
 * fsync pairs, or created files, over all threads).  With THREADS > 1 the
 * fsyncs overlap: a filesystem with group commit (XFS's CIL, one log write
 * and one device flush for many fsyncs) serves them together.  The files
 * stay (the caller removes DIR's contents).  Plain POSIX calls.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define IO_BYTES 4096

static const char *dir;
static int do_create;
static long per_thread;

static void *worker(void *arg)
{
	long id = (long)arg;
	char path[4096], buf[IO_BYTES];
	memset(buf, 'a' + (int)(id % 26), sizeof(buf));
	if (!do_create) {
		snprintf(path, sizeof(path), "%s/fsync-%ld", dir, id);
		int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
		if (fd < 0) {
			perror(path);
			return (void *)1;
		}
		for (long i = 0; i < per_thread; i++) {
			if (pwrite(fd, buf, IO_BYTES, (off_t)i * IO_BYTES) != IO_BYTES ||
			    fsync(fd) < 0) {
				perror(path);
				close(fd);
				return (void *)1;
			}
		}
		close(fd);
		return NULL;
	}
	for (long i = 0; i < per_thread; i++) {
		snprintf(path, sizeof(path), "%s/small-%ld-%07ld", dir, id, i);
		int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0 || write(fd, buf, IO_BYTES) != IO_BYTES || fsync(fd) < 0 ||
		    close(fd) < 0) {
			perror(path);
			return (void *)1;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 5 || (strcmp(argv[1], "write") && strcmp(argv[1], "create"))) {
		fprintf(stderr, "usage: fsyncops write|create DIR N THREADS\n");
		return 2;
	}
	dir = argv[2];
	do_create = !strcmp(argv[1], "create");
	long n = atol(argv[3]), nthreads = atol(argv[4]);
	if (n <= 0 || nthreads <= 0 || nthreads > 64) {
		fprintf(stderr, "fsyncops: N > 0, 1 <= THREADS <= 64\n");
		return 2;
	}
	per_thread = n / nthreads;
	pthread_t t[64];
	double t0 = bench_now();
	for (long i = 0; i < nthreads; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)i)) {
			fprintf(stderr, "fsyncops: pthread_create failed\n");
			return 1;
		}
	int bad = 0;
	for (long i = 0; i < nthreads; i++) {
		void *rc;
		pthread_join(t[i], &rc);
		bad |= rc != NULL;
	}
	double secs = bench_now() - t0;
	if (bad)
		return 1;
	long ops = per_thread * nthreads;
	printf("%s %ld %ld %.3f %.0f\n", argv[1], ops, nthreads, secs, (double)ops / secs);
	return 0;
}

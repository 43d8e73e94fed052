/*
 * metaops: time create / stat / unlink of N empty files in one directory.
 *
 *   metaops create|stat|unlink DIR N
 *
 * Prints "<phase> <N> <seconds> <ops per second>".  create and unlink end
 * with syncfs(2) inside the timed region so that work a filesystem defers
 * is counted.  Plain POSIX calls (open/close, lstat, unlink, syncfs).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: metaops create|stat|unlink DIR N\n");
		return 2;
	}
	const char *phase = argv[1], *dir = argv[2];
	long n = atol(argv[3]);
	char path[4096];
	struct stat st;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	if (dfd < 0) {
		perror(dir);
		return 1;
	}
	double t0 = bench_now();
	for (long i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/file-%07ld", dir, i);
		if (!strcmp(phase, "create")) {
			int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
			if (fd < 0 || close(fd) < 0) {
				perror(path);
				return 1;
			}
		} else if (!strcmp(phase, "stat")) {
			if (lstat(path, &st) < 0) {
				perror(path);
				return 1;
			}
		} else if (!strcmp(phase, "unlink")) {
			if (unlink(path) < 0) {
				perror(path);
				return 1;
			}
		} else {
			fprintf(stderr, "unknown phase %s\n", phase);
			return 2;
		}
	}
	if (strcmp(phase, "stat") && syncfs(dfd) < 0) {
		perror("syncfs");
		return 1;
	}
	double secs = bench_now() - t0;
	printf("%s %ld %.3f %.0f\n", phase, n, secs, (double)n / secs);
	close(dfd);
	return 0;
}

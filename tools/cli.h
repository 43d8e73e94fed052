/*
 * cli.h: entry points shared by the parts of the multi-call `reflinkfs`
 * binary (tools/main.c dispatches).  Each *_main takes argv with argv[0]
 * set to the command name used in messages (e.g. "reflinkfs mkfs" or
 * "mkfs.reflinkfs"), parses its options with getopt (optind is reset by
 * the caller), and returns the process exit status.
 */
#ifndef RLFS_TOOLS_CLI_H
#define RLFS_TOOLS_CLI_H

/* reflinkfs mkfs [-s SIZE] [-b BLOCKSIZE] [-a AGCOUNT] [-i INODESIZE]
 * [-L LABEL] [-f] IMAGE: 0 on success, 1 on error (tools/mkfs_cmd.c). */
int rlfs_mkfs_main(int argc, char **argv);

/* reflinkfs fsck [-n] IMAGE: exit codes as fsck(8): 0 clean, 1 errors
 * corrected, 4 errors left, 8 operational error (tools/fsck.c). */
int rlfs_fsck_main(int argc, char **argv);

/* reflinkfs logprint [-v] IMAGE: dump the write-ahead log; 0, or 1 on
 * error (tools/logprint.c). */
int rlfs_logprint_main(int argc, char **argv);

/* reflinkfs io [-f] [-r] [-c CMD]... FILE: xfs_io-like commands on a file
 * in a mounted reflinkfs, through the private ioctls (tools/io.c).  0 on
 * success, 1 when a command failed (one line on stderr). */
int rlfs_io_main(int argc, char **argv);

/* reflinkfs fsmap [-d|-l|-r] [-m|-v] [-n NR] [START END] MOUNT|IMAGE: the
 * physical space map as xfs_io's fsmap prints it (tools/fsmap_cmd.c), or
 * with --svg FILE drawn (tools/fsmap_svg.c).  0, or 1 on error. */
int rlfs_fsmap_main(int argc, char **argv);

/* reflinkfs dedupe [options] PATH...: find duplicate blocks and share
 * them (tools/dedupe.c).  0 done, 1 some ranges failed or files changed
 * during the run, 2 usage error, 4 operational error. */
int rlfs_dedupe_main(int argc, char **argv);

/*
 * Parse a size: a decimal number with an optional K, M, G, T, P suffix
 * (powers of 1024; "KiB"/"KB"/"k" spellings accepted).  0 on success,
 * -EINVAL on bad syntax, -ERANGE on overflow.
 */
int rlfs_parse_size(const char *s, unsigned long long *out);
#endif

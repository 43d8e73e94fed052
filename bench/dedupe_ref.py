#!/usr/bin/env python3
"""A reference block-by-block deduper for the dedupe benchmark (issue 12
section 3): shows that the bound of bench/dedupe_bound.py can be reached on
a kernel filesystem and that the benchmark's df measurement sees it.

    bench/dedupe_ref.py PATH...

Hashes every block exactly as dedupe_bound.py counts it (4096-byte blocks
at aligned file offsets, holes skipped, a final partial block only as the
same tail at another EOF), then for every block content seen more than once
asks the kernel to share the first occurrence with each of the others:
FIDEDUPERANGE (ioctl_fideduperange(2), struct file_dedupe_range from
linux/fs.h), up to 64 destinations per call, one block per range.  The
kernel compares the bytes under lock, so a hash collision or a file changed
meanwhile is reported as "differs", never shared.  No run merging, no
already-shared check, no memory bound: one list entry per block (about 100
bytes); a reference, not a tool.

Needs the destination files writable (run as root).  Prints one JSON object:
ranges asked, bytes_deduped (sum of the kernel's bytes_deduped), differs,
errors (count per errno name).  Exit 1 if any call failed outright.
"""
import errno
import fcntl
import hashlib
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dedupe_bound import data_ranges, walk  # noqa: E402

BLOCK = 4096
# _IOWR(0x94, 54, struct file_dedupe_range): 24-byte header
FIDEDUPERANGE = 0xC0189436
HDR = struct.Struct("=QQHHI")        # src_offset, src_length, dest_count, reserved1, reserved2
INFO = struct.Struct("=qQQiI")       # dest_fd, dest_offset, bytes_deduped, status, reserved
FILE_DEDUPE_RANGE_DIFFERS = 1
MAX_DESTS = 64


def main():
    paths = sys.argv[1:]
    if not paths:
        sys.exit("usage: dedupe_ref.py PATH...")
    names = []
    occ = {}   # key -> [(file index, offset, length)]
    for top in paths:
        if not os.path.exists(top):
            sys.exit("dedupe_ref: no such path %s" % top)
        for path, _ in walk(top):
            idx = len(names)
            names.append(path)
            with open(path, "rb") as f:
                fd = f.fileno()
                size = os.fstat(fd).st_size
                for start, end in data_ranges(fd, size):
                    off = start - start % BLOCK
                    while off < end:
                        n = min(BLOCK, size - off)
                        blk = os.pread(fd, n, off)
                        key = hashlib.blake2b(blk, digest_size=16).digest()
                        occ.setdefault(key, []).append((idx, off, n))
                        off += BLOCK
    fds = {}

    def fd_of(idx):
        if idx not in fds:
            fds[idx] = os.open(names[idx], os.O_RDWR)
        return fds[idx]

    asked = deduped = differs = 0
    errors = {}
    for key, lst in occ.items():
        if len(lst) < 2:
            continue
        sidx, soff, slen = lst[0]
        dests = lst[1:]
        for i in range(0, len(dests), MAX_DESTS):
            chunk = dests[i:i + MAX_DESTS]
            if len(fds) + len(chunk) + 1 > 512:  # keep well under RLIMIT_NOFILE
                for f in fds.values():
                    os.close(f)
                fds.clear()
            sfd = fd_of(sidx)
            dfds = [fd_of(d[0]) for d in chunk]
            buf = bytearray(HDR.pack(soff, slen, len(chunk), 0, 0))
            for dfd, (_, doff, _) in zip(dfds, chunk):
                buf += INFO.pack(dfd, doff, 0, 0, 0)
            asked += len(chunk)
            try:
                fcntl.ioctl(sfd, FIDEDUPERANGE, buf, True)
            except OSError as e:
                name = errno.errorcode.get(e.errno, str(e.errno))
                errors[name] = errors.get(name, 0) + len(chunk)
                continue
            for j in range(len(chunk)):
                _, _, got, status, _ = INFO.unpack_from(buf, HDR.size + j * INFO.size)
                if status == 0:
                    deduped += got
                elif status == FILE_DEDUPE_RANGE_DIFFERS:
                    differs += 1
                else:
                    name = errno.errorcode.get(-status, str(-status))
                    errors[name] = errors.get(name, 0) + 1
    for f in fds.values():
        os.close(f)
    print(json.dumps({"ranges": asked, "bytes_deduped": deduped, "differs": differs,
                      "errors": errors}))
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""name_to_handle_at(2) / open_by_handle_at(2) from the command line.

  fhandle.py encode PATH          prints "TYPE:HEX" (the handle of PATH)
  fhandle.py read MOUNT HANDLE    opens the handle read-only, prints its
                                  bytes as text (files), or "DIR" and the
                                  sorted names in it (directories)
  fhandle.py stat MOUNT HANDLE    prints "ino=N" of what the handle opens

Errors print "ERR <errno name>" and exit 1 (ESTALE: the handle names
nothing that exists now).  Needs CAP_DAC_READ_SEARCH (root).
"""
import ctypes
import errno
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
MAX_HANDLE_SZ = 128
AT_FDCWD = -100


class FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint),
                ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ)]


def fail(e):
    print("ERR " + errno.errorcode.get(e, str(e)))
    sys.exit(1)


def encode(path):
    fh = FileHandle()
    fh.handle_bytes = MAX_HANDLE_SZ
    mnt_id = ctypes.c_int()
    if libc.name_to_handle_at(AT_FDCWD, path.encode(), ctypes.byref(fh),
                              ctypes.byref(mnt_id), 0) != 0:
        fail(ctypes.get_errno())
    raw = bytes(fh.f_handle[:fh.handle_bytes])
    print("%d:%s" % (fh.handle_type, raw.hex()))


def open_handle(mount, text):
    typ, hexs = text.split(":")
    raw = bytes.fromhex(hexs)
    fh = FileHandle()
    fh.handle_bytes = len(raw)
    fh.handle_type = int(typ)
    ctypes.memmove(fh.f_handle, raw, len(raw))
    mfd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY)
    fd = libc.open_by_handle_at(mfd, ctypes.byref(fh), os.O_RDONLY)
    err = ctypes.get_errno()
    os.close(mfd)
    if fd < 0:
        fail(err)
    return fd


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "encode":
        encode(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] in ("read", "stat"):
        fd = open_handle(sys.argv[2], sys.argv[3])
        st = os.fstat(fd)
        if sys.argv[1] == "stat":
            print("ino=%d" % st.st_ino)
        elif os.path.stat.S_ISDIR(st.st_mode):
            print("DIR " + " ".join(sorted(os.listdir(fd))))
        else:
            sys.stdout.write(os.read(fd, 1 << 16).decode(errors="replace"))
        os.close(fd)
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()

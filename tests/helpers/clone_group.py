# clone_group.py DIR: our versions of fstests clone-group cases, run through
# FICLONE/FICLONERANGE (the shim on reflinkfs), copy_file_range and plain
# I/O.  Prints one deterministic line per check (hashes, sizes, errno
# names, booleans), so the output of kernel XFS and reflinkfs can be
# diffed; a line starting with "BAD" is a failed expectation.
import errno, fcntl, hashlib, os, random, struct, sys

FICLONE = 0x40049409
FICLONERANGE = 0x4020940d
FS_IOC_FIEMAP = 0xC020660B
BS = 4096
D = sys.argv[1]
rng = random.Random(358)

def P(name):
    return os.path.join(D, name)

def data(n, seed):
    r = random.Random(seed)
    return bytes(r.getrandbits(8) | 1 for _ in range(n))

def mk(name, content):
    with open(P(name), "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())

def rd(name):
    with open(P(name), "rb") as f:
        return f.read()

def h(b):
    return hashlib.md5(b).hexdigest()[:12]

def err(fn):
    try:
        fn()
        return "OK"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def clone_range(dst, src, soff, ln, doff):
    dfd = os.open(P(dst), os.O_RDWR | os.O_CREAT, 0o644)
    sfd = os.open(P(src), os.O_RDONLY)
    try:
        fcntl.ioctl(dfd, FICLONERANGE, struct.pack("=qQQQ", sfd, soff, ln, doff))
    finally:
        os.close(dfd); os.close(sfd)

def clone(dst, src):
    dfd = os.open(P(dst), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    sfd = os.open(P(src), os.O_RDONLY)
    try:
        fcntl.ioctl(dfd, FICLONE, sfd)
    finally:
        os.close(dfd); os.close(sfd)

def pwrite(name, off, b):
    fd = os.open(P(name), os.O_RDWR)
    try:
        os.pwrite(fd, b, off)
        os.fsync(fd)
    finally:
        os.close(fd)

def shared_bytes(name):
    """bytes of the file marked FIEMAP_EXTENT_SHARED (FS_IOC_FIEMAP)"""
    fd = os.open(P(name), os.O_RDONLY)
    total, start = 0, 0
    try:
        while True:
            n = 64
            buf = bytearray(struct.pack("=QQIIII", start, (1 << 64) - 1 - start, 1, 0, n, 0) + bytes(56 * n))
            fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
            cnt = struct.unpack_from("=I", buf, 20)[0]
            if cnt == 0:
                return total
            last = False
            for i in range(cnt):
                lo, ph, ln, _, _, fl = struct.unpack_from("=QQQQQI", buf, 32 + 56 * i)
                if fl & 0x2000:
                    total += ln
                start = lo + ln
                last = last or bool(fl & 1)
            if last:
                return total
    finally:
        os.close(fd)

def free_blocks():
    s = os.statvfs(D)
    return s.f_bfree * s.f_frsize // BS

def out(name, v, bad=False):
    print(("BAD " if bad else "") + f"{name}: {v}", flush=True)

def expect(name, cond, detail=""):
    out(name, "yes" if cond else "NO " + detail, bad=not cond)

def settle():
    """sync, then wait until the free count stops moving (XFS frees unlinked
    inodes' blocks in the background); returns it"""
    import time
    os.sync()
    prev = free_blocks()
    for _ in range(50):
        time.sleep(0.1)
        os.sync()
        cur = free_blocks()
        if cur == prev:
            return cur
        prev = cur
    return prev

# ---- generic/150/151: block usage after reflink and after delete
settle()
f0 = free_blocks()
mk("g150", data(256 * BS, 150))            # 1 MiB
settle()
f1 = settle()
used_file = f0 - f1
expect("150 file uses about 256 blocks", 256 <= used_file <= 256 + 16, f"{used_file}")
for i in range(4):
    clone(f"g150.{i}", "g150")
settle()
f2 = settle()
expect("150 four clones use < 16 blocks", f1 - f2 < 16, f"{f1 - f2}")
st = os.stat(P("g150.0"))
expect("150 clone st_blocks counts its whole size", st.st_blocks * 512 >= 256 * BS, f"{st.st_blocks}")
os.unlink(P("g150"))
settle()
f3 = settle()
expect("151 deleting the original frees nothing", abs(f3 - f2) < 16, f"{f3 - f2}")
for i in range(3):
    os.unlink(P(f"g150.{i}"))
settle()
f4 = settle()
expect("151 deleting all but one clone frees nothing", abs(f4 - f3) < 16, f"{f4 - f3}")
pwrite("g150.3", 0, b"z" * (128 * BS))     # CoW half of the last one: no new net usage
settle()
f5 = settle()
expect("151 rewriting an unshared file uses no extra space", abs(f5 - f4) < 16, f"{f5 - f4}")
os.unlink(P("g150.3"))
settle()
f6 = settle()
expect("151 deleting the last clone frees everything", abs(f6 - f0) < 16, f"{f6 - f0}")

# ---- generic/110: reflink, then modify both copies
a = data(64 * BS, 110)
mk("g110a", a)
clone("g110b", "g110a")
pwrite("g110a", 3 * BS, b"A" * (5 * BS))
pwrite("g110b", 20 * BS + 7, b"B" * (9 * BS))
ea = bytearray(a); ea[3 * BS:8 * BS] = b"A" * (5 * BS)
eb = bytearray(a); eb[20 * BS + 7:29 * BS + 7] = b"B" * (9 * BS)
expect("110 original has only its own write", rd("g110a") == bytes(ea))
expect("110 clone has only its own write", rd("g110b") == bytes(eb))
out("110 hashes", h(rd("g110a")) + " " + h(rd("g110b")))

# ---- generic/142: many clones of one file, each rewritten in its own range
src = data(32 * BS, 142)
mk("g142", src)
ok = True
for i in range(12):
    clone(f"g142.{i}", "g142")
    pwrite(f"g142.{i}", i * 2 * BS + 100, bytes([i + 1]) * (BS + 50))
for i in range(12):
    e = bytearray(src); e[i * 2 * BS + 100:i * 2 * BS + 100 + BS + 50] = bytes([i + 1]) * (BS + 50)
    ok = ok and rd(f"g142.{i}") == bytes(e)
expect("142 every clone has exactly its own rewrite", ok)
expect("142 source unchanged", rd("g142") == src)

# ---- generic/181/182: length 0 means "to source EOF"
s = data(10 * BS + 300, 181)
mk("g181", s)
mk("g181d", data(2 * BS, 1811))
out("181 len0 from 0", err(lambda: clone_range("g181d", "g181", 0, 0, 0)))
expect("181 len0 clones to EOF", rd("g181d") == s)
mk("g181e", b"")
out("181 len0 from 4 blocks to offset 8 blocks", err(lambda: clone_range("g181e", "g181", 4 * BS, 0, 8 * BS)))
expect("181 len0 offset result", rd("g181e") == bytes(8 * BS) + s[4 * BS:])
out("182 len0 at src EOF", err(lambda: clone_range("g181e", "g181", len(s), 0, 0)))
out("182 len0 past src EOF", err(lambda: clone_range("g181e", "g181", 12 * BS, 0, 0)))
def cfr0():
    a_ = os.open(P("g181"), os.O_RDONLY); b_ = os.open(P("g181e"), os.O_RDWR)
    try:
        return os.copy_file_range(a_, b_, 0, 0, 0)
    finally:
        os.close(a_); os.close(b_)
out("182 copy_file_range len 0 returns", cfr0())
out("182 copy_file_range src past EOF returns",
    (lambda: (lambda a_, b_: (os.copy_file_range(a_, b_, 100, 20 * BS, 0), os.close(a_), os.close(b_))[0])(
        os.open(P("g181"), os.O_RDONLY), os.open(P("g181e"), os.O_RDWR)))())

# ---- generic/515/517/518: EOF blocks
s = data(5 * BS + 100, 515)
mk("g515", s)
clone("g515d", "g515")
os.truncate(P("g515d"), 8 * BS)
expect("515 no stale bytes past the cloned EOF after truncate up", rd("g515d") == s + bytes(8 * BS - len(s)))
os.truncate(P("g515"), 7 * BS)
expect("515 source: zeros after truncate up", rd("g515") == s + bytes(7 * BS - len(s)))
mk("g517s", s)
mk("g517d", data(12 * BS, 517))
out("517 partial EOF block into the middle of dest", err(lambda: clone_range("g517d", "g517s", 4 * BS, 0, 2 * BS)))
expect("517 rejected clone changed nothing", rd("g517d") == data(12 * BS, 517))
mk("g517e", data(3 * BS + 100, 5171))
out("517 partial EOF block onto dest EOF block", err(lambda: clone_range("g517e", "g517s", 5 * BS, 0, 3 * BS)))
out("517 result", h(rd("g517e")) + f" size {os.stat(P('g517e')).st_size}")
out("518 range past src EOF", err(lambda: clone_range("g517d", "g517s", 4 * BS, 2 * BS, 0)))
out("518 src offset past EOF", err(lambda: clone_range("g517d", "g517s", 8 * BS, BS, 0)))
mk("g518", b"")
out("518 dest far past EOF", err(lambda: clone_range("g518", "g517s", 0, 2 * BS, 40 * BS)))
expect("518 gap reads as zeros", rd("g518") == bytes(40 * BS) + s[:2 * BS])
pwrite("g518", 10 * BS, b"Q" * 10)
expect("518 write into the gap", rd("g518")[10 * BS:10 * BS + 10] == b"Q" * 10)

# ---- generic/358/359: partial overlaps, repeated at various offsets
NB = 48
model = {}
base = data(NB * BS, 358)
mk("g358", base)
model["g358"] = bytearray(base)
names = ["g358"] + [f"g358.{i}" for i in range(5)]
for n in names[1:]:
    mk(n, b"")
    model[n] = bytearray()
def mclone(dst, src, sb, nb, db):
    sz = len(model[src])
    soff, doff = sb * BS, db * BS
    ln = min(nb * BS, sz - soff)
    if ln <= 0:
        return
    if dst == src and doff < soff + ln and soff < doff + ((ln + BS - 1) // BS) * BS:
        return
    if soff + ln == sz and ln % BS and doff + ln < len(model[dst]):
        return
    clone_range(dst, src, soff, ln, doff)
    chunk = bytes(model[src][soff:soff + ln])
    m = model[dst]
    if doff > len(m):
        m.extend(bytes(doff - len(m)))
    m[doff:doff + ln] = chunk
for step in range(400):
    op = rng.random()
    dst = rng.choice(names); src = rng.choice(names)
    if op < 0.6:
        mclone(dst, src, rng.randrange(NB), rng.randrange(1, 12), rng.randrange(NB))
    else:
        off = rng.randrange(NB * BS); ln = rng.randrange(1, 3 * BS)
        b = bytes([rng.randrange(1, 256)]) * ln
        fd = os.open(P(dst), os.O_RDWR); os.pwrite(fd, b, off); os.close(fd)
        m = model[dst]
        if off > len(m):
            m.extend(bytes(off - len(m)))
        m[off:off + ln] = b
bad = [n for n in names if rd(n) != bytes(model[n])]
expect("358/359 every file matches the model after 400 clones/writes", not bad, " ".join(bad))
out("358/359 hashes", " ".join(h(rd(n)) for n in names))

# ---- clone onto self
s = data(16 * BS, 77)
mk("self", s)
out("self clone disjoint", err(lambda: clone_range("self", "self", 0, 4 * BS, 8 * BS)))
e = bytearray(s); e[8 * BS:12 * BS] = s[0:4 * BS]
expect("self clone contents", rd("self") == bytes(e))
pwrite("self", 9 * BS, b"W" * BS)
e[9 * BS:10 * BS] = b"W" * BS
expect("self write to the clone leaves the source range", rd("self") == bytes(e))
out("self clone past EOF", err(lambda: clone_range("self", "self", 0, 16 * BS, 16 * BS)))
e = e + e
expect("self doubled", rd("self") == bytes(e))
out("self overlap", err(lambda: clone_range("self", "self", 0, 8 * BS, 4 * BS)))

if len(sys.argv) > 2 and sys.argv[2] == "fiemap":
    # sharing is visible (reflinkfs: through the shim's FS_IOC_FIEMAP)
    mk("fm", data(32 * BS, 9))
    clone("fm2", "fm")
    pwrite("fm2", 8 * BS, b"x" * (4 * BS))
    out("fiemap shared bytes fm fm2", f"{shared_bytes('fm')} {shared_bytes('fm2')}")

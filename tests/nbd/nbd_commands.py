# Every NBD command and flag against `cistern serve`, through libnbd (run by nbdsh from
# test_commands.sh). libnbd's own checks are turned off (strict mode 0) where a request the
# server must refuse would otherwise never leave the client.
#
# Environment: URI (nbd://127.0.0.1:PORT), PHASE (rw, ro, crash-write, crash-check).
import errno
import os

import nbd

URI = os.environ["URI"]
PHASE = os.environ["PHASE"]
M = 1 << 20
failures = 0


def check(what, cond):
    global failures
    print("checking:", what)
    if not cond:
        print("FAIL:", what)
        failures += 1


def expect_error(what, errnos, fn, *args):
    global failures
    print("checking:", what)
    try:
        fn(*args)
    except nbd.Error as e:
        # errnum is the number; errno is its name
        if e.errnum in errnos:
            return
        print("FAIL: %s: got %s (%s), expected one of %s" % (what, e.errno, e.string, errnos))
        failures += 1
        return
    print("FAIL: %s: succeeded, expected an error" % what)
    failures += 1


def handle(export, meta=True, structured=True):
    h = nbd.NBD()
    h.set_request_structured_replies(structured)
    if meta:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(URI + "/" + export)
    h.set_strict_mode(0)
    return h


def extents(h, count, offset, flags=0):
    got = []

    def cb(metacontext, off, entries, err):
        if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
            got.extend(zip(entries[0::2], entries[1::2]))
        return 0

    h.block_status(count, offset, cb, flags)
    return got


def chunks(h, count, offset):
    got = []

    def cb(buf, off, status, err):
        got.append((status, off, len(buf), bytes(buf)))
        return 0

    data = h.pread_structured(count, offset, cb)
    return data, got


HOLE_ZERO = nbd.STATE_HOLE | nbd.STATE_ZERO

if PHASE == "rw":
    h = handle("tank/vol")
    size = h.get_size()
    check("size is 64 MiB", size == 64 * M)
    check("structured replies negotiated", h.get_structured_replies_negotiated())
    check("base:allocation negotiated", h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION))
    for name in ("flush", "fua", "trim", "zero", "fast_zero", "cache", "multi_conn"):
        check("can_" + name, getattr(h, "can_" + name)())
    check("not read-only", not h.is_read_only())
    check("no DF offered", not h.can_df())

    # A fresh volume is one hole.
    check("fresh volume: one hole|zero extent", extents(h, size, 0) == [(size, HOLE_ZERO)])

    # WRITE, READ, FUA, unaligned reads
    buf = bytes(range(256)) * 4096  # 1 MiB
    h.pwrite(buf, 4 * M)
    check("read back what was written", h.pread(M, 4 * M) == buf)
    h.pwrite(buf[:4096], 10 * M, nbd.CMD_FLAG_FUA)
    check("FUA write reads back", h.pread(4096, 10 * M) == buf[:4096])
    check("unaligned read (offset 4M+3, 1000 bytes)", h.pread(1000, 4 * M + 3) == buf[3:1003])
    check("read across the data/hole boundary", h.pread(8192, 5 * M - 4096) ==
          buf[-4096:] + bytes(4096))
    check("read of the last byte", h.pread(1, size - 1) == b"\0")

    # Structured READ of a hole: OFFSET_HOLE, not zeros sent as data
    data, got = chunks(h, 2 * M, 4 * M)
    types = [(s, o, n) for (s, o, n, _) in got]
    check("structured read: data then hole chunks (%s)" % types,
          types == [(nbd.READ_DATA, 4 * M, M), (nbd.READ_HOLE, 5 * M, M)])
    check("structured read returns the data", data == buf + bytes(M))

    # BLOCK_STATUS, REQ_ONE
    ex = extents(h, 8 * M, 0)
    check("block status: hole, data, hole (%s)" % ex,
          ex[:3] == [(4 * M, HOLE_ZERO), (M, 0), (3 * M, HOLE_ZERO)])
    ex1 = extents(h, 8 * M, 0, nbd.CMD_FLAG_REQ_ONE)
    check("block status with REQ_ONE: one extent (%s)" % ex1, ex1 == [(4 * M, HOLE_ZERO)])
    ex = extents(h, 4096, 4 * M + 512)
    check("block status of a small range inside data (%s)" % ex, ex == [(4096, 0)])

    # TRIM: a hole again
    h.trim(M // 2, 4 * M)
    ex = extents(h, M, 4 * M)
    check("after trim: the trimmed half is a hole (%s)" % ex,
          ex == [(M // 2, HOLE_ZERO), (M // 2, 0)])
    check("trimmed range reads as zeros", h.pread(M // 2, 4 * M) == bytes(M // 2))
    data, got = chunks(h, M, 4 * M)
    check("structured read after trim starts with a hole chunk",
          got[0][0] == nbd.READ_HOLE and got[0][2] == M // 2)
    h.trim(1000, 4 * M + M // 2 + 100)  # unaligned: only whole sectors go
    check("unaligned trim keeps the partial sectors' data",
          h.pread(100, 4 * M + M // 2) == buf[M // 2:M // 2 + 100])

    # WRITE_ZEROES: plain (unmaps), FAST_ZERO (fast, so allowed), NO_HOLE (stays allocated),
    # FAST_ZERO|NO_HOLE (would be slow: ENOTSUP)
    h.pwrite(buf, 20 * M)
    h.zero(M, 20 * M)
    check("write_zeroes: zeros", h.pread(M, 20 * M) == bytes(M))
    check("write_zeroes without NO_HOLE unmaps", extents(h, M, 20 * M) == [(M, HOLE_ZERO)])
    h.pwrite(buf, 20 * M)
    h.zero(M, 20 * M, nbd.CMD_FLAG_FAST_ZERO)
    check("write_zeroes FAST_ZERO: zeros and a hole",
          h.pread(M, 20 * M) == bytes(M) and extents(h, M, 20 * M) == [(M, HOLE_ZERO)])
    h.pwrite(buf, 20 * M)
    h.zero(M, 20 * M, nbd.CMD_FLAG_NO_HOLE)
    ex = extents(h, M, 20 * M)
    check("write_zeroes NO_HOLE: zeros, still allocated (%s)" % ex,
          h.pread(M, 20 * M) == bytes(M) and all(f & nbd.STATE_HOLE == 0 for (_, f) in ex))
    expect_error("write_zeroes FAST_ZERO|NO_HOLE: ENOTSUP", (errno.ENOTSUP, errno.EOPNOTSUPP),
                 h.zero, M, 22 * M, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE)
    h.zero(M, 23 * M, nbd.CMD_FLAG_FUA)

    # CACHE, FLUSH
    h.cache(M, 0)
    h.flush()

    # Errors
    expect_error("write past the end: ENOSPC", (errno.ENOSPC, errno.EINVAL),
                 h.pwrite, b"x" * 4096, size)
    expect_error("write straddling the end: ENOSPC", (errno.ENOSPC, errno.EINVAL),
                 h.pwrite, b"x" * 8192, size - 4096)
    expect_error("read past the end: EINVAL", (errno.EINVAL,), h.pread, 4096, size)
    expect_error("zero past the end: ENOSPC", (errno.ENOSPC, errno.EINVAL), h.zero, 4096, size)
    expect_error("trim past the end: EINVAL", (errno.EINVAL,), h.trim, 4096, size)
    expect_error("cache past the end: EINVAL", (errno.EINVAL,), h.cache, 4096, size)
    expect_error("block status past the end: EINVAL", (errno.EINVAL,), extents, h, 4096, size)
    expect_error("read of 33 MiB (over the maximum block size): EINVAL", (errno.EINVAL,),
                 h.pread, 33 * M, 0)
    expect_error("zero-length read: EINVAL", (errno.EINVAL,), h.pread, 0, 0)
    expect_error("unaligned write (1 byte): EINVAL", (errno.EINVAL,), h.pwrite, b"x", 1)
    expect_error("write with the DF flag: EINVAL", (errno.EINVAL,),
                 h.pwrite, b"x" * 512, 0, nbd.CMD_FLAG_DF)
    expect_error("read with REQ_ONE: EINVAL", (errno.EINVAL,),
                 h.pread, 512, 0, nbd.CMD_FLAG_REQ_ONE)
    check("the connection still works after the errors", h.pread(4096, 10 * M) == buf[:4096])

    # Many requests in flight on one connection (more than the server's limit of 64)
    cookies = []
    for i in range(200):
        cookies.append(h.aio_pwrite(bytes([i % 251 + 1]) * 4096, 30 * M + i * 4096))
    while h.aio_in_flight() > 0:
        h.poll(-1)
    check("200 writes in flight completed", all(h.aio_command_completed(c) for c in cookies))
    bufs = [nbd.Buffer(4096) for _ in range(200)]
    rc = [h.aio_pread(bufs[i], 30 * M + i * 4096) for i in range(200)]
    while h.aio_in_flight() > 0:
        h.poll(-1)
    check("200 reads in flight completed", all(h.aio_command_completed(c) for c in rc))
    check("200 writes and 200 reads in flight",
          all(bufs[i].to_bytearray() == bytes([i % 251 + 1]) * 4096 for i in range(200)))

    # Simple replies (no structured replies), and no meta context: BLOCK_STATUS refused
    s = handle("tank/vol", meta=False, structured=False)
    check("simple replies: not structured", not s.get_structured_replies_negotiated())
    check("simple replies: read", s.pread(M, 4 * M + M // 2)[:100] == buf[M // 2:M // 2 + 100])
    check("simple replies: unaligned read", s.pread(10, 10 * M + 5) == buf[5:15])
    expect_error("simple replies: read past the end", (errno.EINVAL,), s.pread, 512, size)
    s.shutdown()

    # Multi-conn: a write on one connection, flushed there, is seen on another
    a = handle("tank/vol")
    b = handle("tank/vol")
    a.pwrite(b"\x5a" * 65536, 40 * M)
    a.flush()
    check("multi-conn: the other connection sees the flushed write",
          b.pread(65536, 40 * M) == b"\x5a" * 65536)
    a.shutdown()
    b.shutdown()

    # Option haggling
    o = nbd.NBD()
    o.set_opt_mode(True)
    o.connect_uri(URI)
    seen = []
    o.opt_list(lambda name, desc: seen.append((name, desc)) or 0)
    check("LIST names every volume (%s)" % seen,
          sorted(n for (n, _) in seen) == ["tank/ro", "tank/vol"])
    o.set_export_name("tank/nope")
    expect_error("INFO of an unknown export fails", (errno.ENOENT, errno.EINVAL, 0), o.opt_info)
    o.set_export_name("tank/vol")
    o.opt_info()
    check("INFO gives the size", o.get_size() == 64 * M)
    contexts = []
    o.opt_list_meta_context(lambda name: contexts.append(name) or 0)
    check("LIST_META_CONTEXT offers base:allocation (%s)" % contexts,
          contexts == ["base:allocation"])
    o.opt_abort()

    h.shutdown()

elif PHASE == "ro":
    h = handle("tank/ro")
    check("read-only export says so", h.is_read_only())
    check("read-only: no trim or zero offered", not h.can_trim() and not h.can_zero())
    check("read-only: reads work", h.pread(4096, 0) == b"\x42" * 4096)
    expect_error("write on a read-only export: EPERM", (errno.EPERM,),
                 h.pwrite, b"x" * 4096, 0)
    expect_error("trim on a read-only export: EPERM", (errno.EPERM,), h.trim, 4096, 0)
    expect_error("zero on a read-only export: EPERM", (errno.EPERM,), h.zero, 4096, 0)
    h.flush()
    check("read-only: the data is unchanged", h.pread(4096, 0) == b"\x42" * 4096)
    h.shutdown()

elif PHASE == "crash-write":
    h = handle("tank/vol")
    h.pwrite(b"\xc3" * (2 * M), 50 * M)
    h.trim(M, 4 * M)
    h.flush()
    h.pwrite(b"\x77" * 4096, 60 * M, nbd.CMD_FLAG_FUA)
    print("written and flushed")
    # The connection stays open: the server is killed under it.

elif PHASE == "crash-check":
    h = handle("tank/vol")
    check("flushed data survived kill -9", h.pread(2 * M, 50 * M) == b"\xc3" * (2 * M))
    check("FUA data survived kill -9", h.pread(4096, 60 * M) == b"\x77" * 4096)
    check("flushed trim survived kill -9", extents(h, M, 4 * M) == [(M, HOLE_ZERO)])
    h.shutdown()

print("%s: %d failures" % (PHASE, failures))
if failures:
    raise SystemExit(1)

# Malformed and hostile NBD clients against `cistern serve` (run by test_malformed.sh), on
# raw sockets: each case on its own connection, each followed by a well-behaved client that
# must still be served. Exits 1 when any check fails.
#
# Usage: python3 malformed.py PORT EXPORT
import os
import socket
import struct
import sys
import time

PORT = int(sys.argv[1])
EXPORT = sys.argv[2].encode()
M = 1 << 20
# Where the well-behaved client writes and reads back: no other client here writes there (a
# client that vanishes may still have writes of its own being carried out meanwhile).
GOOD = 48 * M

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPMAGIC = 0x3E889045565A9
REQMAGIC = 0x25609513
SIMPLEMAGIC = 0x67446698
STRUCTMAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO = 1, 2, 3, 6, 7
OPT_STRUCTURED, OPT_LIST_META, OPT_SET_META = 8, 9, 10
REP_ACK, REP_INFO = 1, 3
ERR_UNSUP, ERR_INVALID, ERR_UNKNOWN, ERR_TOO_BIG = 2**31 + 1, 2**31 + 3, 2**31 + 6, 2**31 + 9
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_BLOCK_STATUS = 0, 1, 2, 3, 7
EPERM, EIO, EINVAL, ENOSPC = 1, 5, 22, 28

failures = 0


def check(what, cond):
    global failures
    print("checking:", what)
    if not cond:
        print("FAIL:", what)
        failures += 1


class Closed(Exception):
    pass


def recvall(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise Closed()
        b += chunk
    return b


def connect():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    g = recvall(s, 18)
    magic, opt, flags = struct.unpack(">QQH", g)
    assert magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting"
    return s


def handshake(flags=3):
    s = connect()
    s.sendall(struct.pack(">I", flags))
    return s


def send_opt(s, opt, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def read_rep(s):
    magic, opt, typ, length = struct.unpack(">QIII", recvall(s, 20))
    assert magic == REPMAGIC, "bad reply magic %x" % magic
    return opt, typ, recvall(s, length)


def closed_by_server(s, timeout=10):
    """True when the server closes the connection (end of stream or reset) in time."""
    s.settimeout(timeout)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def go(s, name=EXPORT, structured=False):
    if structured:
        send_opt(s, OPT_STRUCTURED)
        _, typ, _ = read_rep(s)
        assert typ == REP_ACK
    send_opt(s, OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
    size = None
    while True:
        _, typ, data = read_rep(s)
        if typ == REP_INFO:
            if struct.unpack(">H", data[:2])[0] == 0:
                size = struct.unpack(">Q", data[2:10])[0]
        elif typ == REP_ACK:
            return size
        else:
            raise AssertionError("GO failed: reply %x" % typ)


def request(s, typ, offset=0, length=0, flags=0, cookie=1, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQMAGIC, flags, typ, cookie, offset, length) + payload)


def simple_reply(s, data_len=0):
    magic, err, cookie = struct.unpack(">IIQ", recvall(s, 16))
    assert magic == SIMPLEMAGIC, "bad simple reply magic %x" % magic
    data = recvall(s, data_len) if err == 0 and data_len else b""
    return err, cookie, data


def good_client_works(what):
    """A well-behaved client: handshake, write, read back, flush, disconnect."""
    try:
        s = handshake()
        size = go(s)
        pattern = os.urandom(4096)
        request(s, CMD_WRITE, offset=GOOD, length=4096, cookie=7, payload=pattern)
        err, cookie, _ = simple_reply(s)
        assert err == 0 and cookie == 7, "write failed"
        request(s, CMD_READ, offset=GOOD, length=4096, cookie=8)
        err, cookie, data = simple_reply(s, 4096)
        assert err == 0 and cookie == 8 and data == pattern, "read back differs"
        request(s, CMD_DISC)
        s.close()
        ok = size is not None and size > GOOD
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        print("  good client failed:", repr(e))
        ok = False
    check("after %s: another client is served" % what, ok)


# --- handshake ---------------------------------------------------------------------------

s = connect()
s.close()
good_client_works("a client that leaves right after the greeting")

s = handshake(flags=0xFF)
check("unknown client flags: disconnected", closed_by_server(s))
good_client_works("unknown client flags")

s = handshake()
s.sendall(struct.pack(">QII", 0x1122334455667788, OPT_GO, 0))
check("bad option magic: disconnected", closed_by_server(s))
good_client_works("bad option magic")

s = handshake()
s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, 0xFFFFFFFF))
check("option length 4 GiB: disconnected", closed_by_server(s))
good_client_works("an option length of 4 GiB")

s = handshake()
send_opt(s, OPT_INFO, b"\0" * 100000)
_, typ, _ = read_rep(s)
check("option of 100000 bytes: NBD_REP_ERR_TOO_BIG", typ == ERR_TOO_BIG)
check("after TOO_BIG the handshake goes on", go(s) is not None)
s.close()

s = handshake()
send_opt(s, OPT_INFO, struct.pack(">I", 1000) + b"tank" + struct.pack(">H", 0))
_, typ, _ = read_rep(s)
check("INFO whose name length lies: NBD_REP_ERR_INVALID", typ == ERR_INVALID)
send_opt(s, OPT_GO, struct.pack(">I", len(EXPORT)) + EXPORT + struct.pack(">H", 5) + b"\0\1")
_, typ, _ = read_rep(s)
check("GO whose info count lies: NBD_REP_ERR_INVALID", typ == ERR_INVALID)
send_opt(s, OPT_LIST, b"junk")
_, typ, _ = read_rep(s)
check("LIST with data: NBD_REP_ERR_INVALID", typ == ERR_INVALID)
send_opt(s, 99, b"whatever")
_, typ, _ = read_rep(s)
check("unknown option: NBD_REP_ERR_UNSUP", typ == ERR_UNSUP)
q = struct.pack(">I", len(EXPORT)) + EXPORT + struct.pack(">I", 1) + struct.pack(">I", 15)
send_opt(s, OPT_SET_META, q + b"base:allocation")
_, typ, _ = read_rep(s)
check("SET_META_CONTEXT before STRUCTURED_REPLY: NBD_REP_ERR_INVALID", typ == ERR_INVALID)
send_opt(s, OPT_LIST_META, q + b"base:alloc")  # the query claims 15 bytes, has 10
_, typ, _ = read_rep(s)
check("LIST_META_CONTEXT with a query running past the option: INVALID", typ == ERR_INVALID)
send_opt(s, OPT_GO, struct.pack(">I", 8) + b"tank/nil" + struct.pack(">H", 0))
_, typ, _ = read_rep(s)
check("GO of an unknown export: NBD_REP_ERR_UNKNOWN", typ == ERR_UNKNOWN)
send_opt(s, OPT_ABORT)
_, typ, _ = read_rep(s)
check("ABORT: acknowledged, then closed", typ == REP_ACK and closed_by_server(s))
good_client_works("a series of bad options")

s = handshake()
send_opt(s, OPT_EXPORT_NAME, b"tank/nil")
check("EXPORT_NAME of an unknown export: disconnected", closed_by_server(s))

s = handshake()
s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, 100) + b"x" * 50)
s.close()
good_client_works("an option cut short by a disconnect")

# --- transmission ------------------------------------------------------------------------

s = handshake()
size = go(s)
request(s, 99, cookie=5)
err, cookie, _ = simple_reply(s)
check("unknown command: EINVAL", err == EINVAL and cookie == 5)
request(s, CMD_BLOCK_STATUS, offset=0, length=4096, cookie=6)
err, cookie, _ = simple_reply(s)
check("BLOCK_STATUS without a meta context: EINVAL", err == EINVAL and cookie == 6)
request(s, CMD_READ, offset=0, length=0, cookie=9)
check("zero-length READ: EINVAL", simple_reply(s)[0] == EINVAL)
request(s, CMD_READ, offset=size, length=512, cookie=10)
check("READ past the end: EINVAL", simple_reply(s)[0] == EINVAL)
request(s, CMD_READ, offset=2**64 - 512, length=1024, cookie=11)
check("READ whose end wraps around 2^64: EINVAL", simple_reply(s)[0] == EINVAL)
request(s, CMD_WRITE, offset=size - 512, length=1024, cookie=12, payload=b"w" * 1024)
check("WRITE past the end (payload consumed): ENOSPC", simple_reply(s)[0] == ENOSPC)
request(s, CMD_WRITE, offset=0, length=33 * M, cookie=13, payload=bytes(33 * M))
check("WRITE of 33 MiB (payload consumed): EINVAL", simple_reply(s)[0] == EINVAL)
request(s, CMD_READ, offset=0, length=33 * M, cookie=14)
check("READ of 33 MiB: EINVAL", simple_reply(s)[0] == EINVAL)
request(s, CMD_WRITE, offset=0, length=4096, flags=0x80, cookie=15, payload=bytes(4096))
check("WRITE with an unknown flag: EINVAL", simple_reply(s)[0] == EINVAL)
request(s, CMD_FLUSH, cookie=16)
check("the connection still works: FLUSH", simple_reply(s) == (0, 16, b""))
s.sendall(os.urandom(64))
check("garbage after the handshake: disconnected", closed_by_server(s))
good_client_works("garbage after the handshake")

s = handshake()
go(s)
s.sendall(struct.pack(">IHHQ", REQMAGIC, 0, CMD_READ, 1))  # 16 of 28 bytes
s.close()
good_client_works("a truncated request header")

s = handshake()
go(s)
request(s, CMD_WRITE, offset=0, length=M, cookie=1, payload=b"p" * 1000)  # payload cut
s.close()
good_client_works("a disconnect in the middle of a WRITE payload")

# Many requests in flight, then the client vanishes without reading a reply.
s = handshake()
go(s, structured=True)
burst = b""
for i in range(100):
    burst += struct.pack(">IHHQQI", REQMAGIC, 0, CMD_WRITE, i, (i % 32) * 65536, 65536)
    burst += bytes([i & 0xFF]) * 65536
    burst += struct.pack(">IHHQQI", REQMAGIC, 0, CMD_READ, 1000 + i, (i % 32) * 65536, 65536)
s.setblocking(False)
try:
    s.send(burst)
except BlockingIOError:
    pass
s.setblocking(True)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset
s.close()
good_client_works("a client that disconnects with requests in flight")

# A client that sends reads and never reads the replies: the server stops reading from it
# (backpressure) and keeps serving others.
slow = handshake()
go(slow)
slow.setblocking(False)
sent = 0
try:
    for i in range(2000):
        slow.send(struct.pack(">IHHQQI", REQMAGIC, 0, CMD_READ, i, 0, M))
        sent += 1
except BlockingIOError:
    pass
time.sleep(1)
good_client_works("a client that does not read its replies (%d reads sent)" % sent)
slow.close()
good_client_works("closing the client that did not read")

# DISC with requests in flight: they are answered, then the server closes.
s = handshake()
go(s)
request(s, CMD_WRITE, offset=0, length=4096, cookie=21, payload=b"d" * 4096)
request(s, CMD_FLUSH, cookie=22)
request(s, CMD_DISC, cookie=23)
r1 = simple_reply(s)
r2 = simple_reply(s)
check("DISC after a write and a flush: both answered", {r1[1], r2[1]} == {21, 22}
      and r1[0] == 0 and r2[0] == 0)
check("DISC: then the server closes", closed_by_server(s))

print("%d failures" % failures)
sys.exit(1 if failures else 0)

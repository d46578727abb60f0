# Malformed and hostile iSCSI initiators against `cistern serve --iscsi` (run by
# test_malformed.sh), on raw sockets: bad opcodes, lying DataSegmentLength and
# TotalAHSLength, truncated PDUs, CmdSN outside the window, login replays and broken logins,
# bad CHAP responses, broken Data-Out sequences, disconnects in the middle of a transfer,
# session reinstatement, header and data digests (good and corrupted), an initiator that
# does not answer NOP-In pings. Each case runs on its own connection and is followed by a
# well-behaved session that writes, reads back and compares data: one bad initiator must
# never affect another. Exits 1 when any check fails.
#
# Usage: python3 malformed.py PORT TARGET CHAP_TARGET CHAP_USER CHAP_SECRET
import hashlib
import os
import socket
import struct
import sys
import time

PORT = int(sys.argv[1])
TARGET = sys.argv[2]
CHAP_TARGET, CHAP_USER, CHAP_SECRET = sys.argv[3], sys.argv[4], sys.argv[5]
INI = "iqn.2026-11.org.example:malformed"
failures = 0


def check(what, cond):
    global failures
    print("checking:", what, flush=True)
    if not cond:
        print("FAIL:", what, flush=True)
        failures += 1


# --- CRC32C (Castagnoli), as iSCSI digests use it -------------------------------------------
_T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _T.append(c)


def crc32c(b, crc=0):
    crc ^= 0xFFFFFFFF
    for x in b:
        crc = _T[(crc ^ x) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


class Closed(Exception):
    pass


class Timeout(Exception):
    pass


def pad4(n):
    return (4 - n % 4) % 4


def bhs(op, flags=0, dlen=0, lun=0, itt=0, f20=0, f24=0, f28=0, tail=b"", ahslen=0):
    """A BHS: fields to offset 32, then @tail (offsets 32..47: a CDB, or DataSN...)."""
    h = struct.pack(">BBHB", op, flags, 0, ahslen) + struct.pack(">I", dlen)[1:]
    h += struct.pack(">QIIII", lun, itt, f20, f24, f28)
    h += tail.ljust(48 - len(h), b"\0")
    assert len(h) == 48
    return h


class Conn:
    def __init__(self, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=timeout)
        self.hd = self.dd = False
        self.itt = 1
        self.cmdsn = 1
        self.statsn = 0
        self.mrdsl = 8192
        self.pings = 0

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def raw(self, b):
        self.s.sendall(b)

    def send(self, h, data=b"", ahs=b""):
        out = h + ahs
        if self.hd:
            out += struct.pack("<I", crc32c(h + ahs))
        if data:
            d = data + b"\0" * pad4(len(data))
            out += d
            if self.dd:
                out += struct.pack("<I", crc32c(d))
        self.s.sendall(out)

    def recvall(self, n):
        b = b""
        while len(b) < n:
            try:
                chunk = self.s.recv(n - len(b))
            except socket.timeout:
                raise Timeout()
            except (ConnectionResetError, BrokenPipeError):
                raise Closed()
            if not chunk:
                raise Closed()
            b += chunk
        return b

    def recv(self, timeout=10):
        self.s.settimeout(timeout)
        h = self.recvall(48)
        ahslen = h[4] * 4
        dlen = struct.unpack(">I", b"\0" + h[5:8])[0]
        ahs = self.recvall(ahslen) if ahslen else b""
        if self.hd:
            dg = struct.unpack("<I", self.recvall(4))[0]
            assert dg == crc32c(h + ahs), "bad header digest from the target"
        data = b""
        if dlen:
            d = self.recvall(dlen + pad4(dlen))
            if self.dd:
                dg = struct.unpack("<I", self.recvall(4))[0]
                assert dg == crc32c(d), "bad data digest from the target"
            data = d[:dlen]
        return h, data

    def recv_skip_pings(self, timeout=10):
        """A PDU other than a NOP-In ping (which is answered), within @timeout."""
        end = time.time() + timeout
        while True:
            left = end - time.time()
            if left <= 0:
                raise Timeout()
            h, d = self.recv(left)
            if h[0] & 0x3F == 0x20 and struct.unpack(">I", h[16:20])[0] == 0xFFFFFFFF:
                self.pings += 1
                ttt = struct.unpack(">I", h[20:24])[0]
                self.send(bhs(0x40, 0x80, itt=0xFFFFFFFF, f20=ttt, f24=self.cmdsn))
                continue
            return h, d

    def next_itt(self):
        self.itt += 1
        return self.itt


def closed_by_target(c, timeout=10):
    """True when the target closes the connection in time (anything it sends is read)."""
    end = time.time() + timeout
    try:
        while time.time() < end:
            c.recv(max(0.1, end - time.time()))
    except Closed:
        return True
    except Timeout:
        return False
    except AssertionError:
        return False
    return False


def kv(d):
    return b"".join(("%s=%s" % (k, v)).encode() + b"\0" for k, v in d)


def parse_kv(data):
    out = {}
    for p in data.split(b"\0"):
        if b"=" in p:
            k, v = p.split(b"=", 1)
            out[k.decode()] = v.decode()
    return out


ISID = [0x80, 0x12, 0x34, 0x56, 0x00, 0x00]
_isid_n = [0]


def new_isid():
    _isid_n[0] += 1
    return bytes(ISID[:4] + [0, _isid_n[0] & 0xFF])


def login_pdu(c, csg, nsg, transit, keys, isid, tsih=0, cont=False, vmin=0):
    flags = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | (nsg if transit else 0)
    data = kv(keys) if isinstance(keys, list) else keys
    tail = isid + struct.pack(">H", tsih)
    h = bytearray(bhs(0x43, flags, len(data), itt=c.itt, f20=0, f24=c.cmdsn, f28=c.statsn))
    h[2], h[3] = 0, vmin
    h[8:16] = tail
    c.send(bytes(h), data)
    rh, rd = c.recv()
    assert rh[0] & 0x3F == 0x23, "not a login response: opcode %#x" % rh[0]
    c.statsn = struct.unpack(">I", rh[24:28])[0] + 1
    return rh[36] << 8 | rh[37], rh, parse_kv(rd)


def op_keys(discovery=False, digests=False, extra=()):
    keys = [("InitiatorName", INI)]
    keys += [("SessionType", "Discovery")] if discovery else [("TargetName", TARGET), ("SessionType", "Normal")]
    d = "CRC32C,None" if digests else "None"
    keys += [("HeaderDigest", d), ("DataDigest", d), ("MaxRecvDataSegmentLength", "262144")]
    if not discovery:
        keys += [("ImmediateData", "Yes"), ("InitialR2T", "No"), ("FirstBurstLength", "65536"),
                 ("MaxBurstLength", "262144"), ("MaxOutstandingR2T", "1"), ("ErrorRecoveryLevel", "0")]
    return keys + list(extra)


def login(discovery=False, digests=False, isid=None, target=None, extra=(), timeout=10):
    c = Conn(timeout)
    keys = op_keys(discovery, digests, extra)
    if target:
        keys = [(k, target if k == "TargetName" else v) for k, v in keys]
    st, rh, r = login_pdu(c, 1, 3, True, keys, isid or new_isid())
    if st != 0:
        raise RuntimeError("login failed: status %#06x" % st)
    assert rh[1] & 0x80 and rh[1] & 3 == 3, "no transit to full feature"
    c.tsih = struct.unpack(">H", rh[14:16])[0]
    c.hd = r.get("HeaderDigest") == "CRC32C"
    c.dd = r.get("DataDigest") == "CRC32C"
    c.mrdsl = int(r.get("MaxRecvDataSegmentLength", "8192"))
    c.keys = r
    return c


def scsi(c, cdb, edtl=0, read=False, out=None, lun=0, immediate_len=None, timeout=10):
    """Runs a command; returns (status, data, sense)."""
    itt = c.next_itt()
    flags = 0x80 | 0x01  # F, SIMPLE
    if read:
        flags |= 0x40
    imm = b""
    if out is not None:
        flags |= 0x20
        edtl = len(out)
        n = min(len(out), 65536, c.mrdsl) if immediate_len is None else immediate_len
        imm = out[:n]
        if n < len(out) and n < 65536:
            flags &= ~0x80  # unsolicited Data-Out follows (InitialR2T=No)
    h = bhs(0x01, flags, len(imm), lun=lun << 48, itt=itt, f20=edtl, f24=c.cmdsn, f28=c.statsn,
            tail=cdb.ljust(16, b"\0"))
    c.cmdsn += 1
    c.send(h, imm)
    sent = len(imm)
    if out is not None and not flags & 0x80:
        end = min(len(out), 65536)
        sn = 0
        while sent < end:
            n = min(end - sent, c.mrdsl)
            f = 0x80 if sent + n == end else 0
            c.send(bhs(0x05, f, n, lun=lun << 48, itt=itt, f20=0xFFFFFFFF, f28=c.statsn,
                       tail=struct.pack(">IIII", 0, sn, sent, 0)), out[sent:sent + n])
            sent += n
            sn += 1
    data = b""
    while True:
        rh, rd = c.recv_skip_pings(timeout)
        op = rh[0] & 0x3F
        if op == 0x31:  # R2T
            ttt, _, _, _, r2tsn, off, ln = struct.unpack(">IIIIIII", rh[20:48])
            sn = 0
            pos = off
            while pos < off + ln:
                n = min(off + ln - pos, c.mrdsl)
                f = 0x80 if pos + n == off + ln else 0
                c.send(bhs(0x05, f, n, lun=lun << 48, itt=itt, f20=ttt, f28=c.statsn,
                           tail=struct.pack(">IIII", 0, sn, pos, 0)), out[pos:pos + n])
                pos += n
                sn += 1
        elif op == 0x25:  # Data-In
            off = struct.unpack(">I", rh[40:44])[0]
            assert off == len(data), "Data-In out of order"
            data += rd
            if rh[1] & 0x01:
                c.statsn = struct.unpack(">I", rh[24:28])[0] + 1
                return rh[3], data, b""
        elif op == 0x21:  # SCSI Response
            c.statsn = struct.unpack(">I", rh[24:28])[0] + 1
            sense = rd[2:2 + struct.unpack(">H", rd[:2])[0]] if len(rd) >= 2 else b""
            return rh[3], data, sense
        elif op == 0x3F:
            raise RuntimeError("Reject, reason %#x" % rh[2])
        else:
            raise RuntimeError("unexpected opcode %#x" % op)


def read10(c, lba, blocks, lun=0):
    return scsi(c, struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0), blocks * 512, read=True, lun=lun)


def write10(c, lba, data, lun=0, **kw):
    return scsi(c, struct.pack(">BBIBHB", 0x2A, 0, lba, 0, len(data) // 512, 0), out=data, lun=lun, **kw)


def tur_until_good(c):
    for _ in range(5):
        st, _, _ = scsi(c, b"\0" * 6)
        if st == 0:
            return True
    return False


def logout(c):
    itt = c.next_itt()
    c.send(bhs(0x46, 0x80, itt=itt, f24=c.cmdsn, f28=c.statsn))
    rh, _ = c.recv_skip_pings()
    c.close()
    return rh[0] & 0x3F == 0x26 and rh[2] == 0


def healthy(what):
    """A well-behaved session writes, reads back and compares."""
    try:
        c = login()
        tur_until_good(c)
        lba = 1000 + (os.getpid() + int(time.time() * 1000)) % 5000
        data = os.urandom(8192)
        st, _, _ = write10(c, lba, data)
        st2, got, _ = read10(c, lba, 16)
        ok = st == 0 and st2 == 0 and got == data and logout(c)
    except Exception as e:  # noqa
        print("  healthy session failed:", repr(e))
        ok = False
    check("after %s: another session writes and reads back" % what, ok)


# --- the cases --------------------------------------------------------------------------------

def case(name):
    print("case:", name, flush=True)


case("the baseline")
healthy("nothing")

case("a bad opcode in the full feature phase is rejected")
c = login()
c.send(bhs(0x1E, 0x80, itt=c.next_itt(), f24=c.cmdsn))
rh, rd = c.recv()
check("Reject with reason 'command not supported'", rh[0] & 0x3F == 0x3F and rh[2] == 0x05 and rd[:1] == b"\x1e")
check("the session still works", tur_until_good(c))
c.close()
healthy("a bad opcode")

case("a non-login PDU before the login")
c = Conn()
c.send(bhs(0x01, 0x80, itt=5, f24=1, tail=b"\0" * 16))
check("the target closes the connection", closed_by_target(c))
healthy("a command before login")

case("a lying DataSegmentLength")
c = login()
c.raw(bhs(0x00 | 0x40, 0x80, dlen=0xFFFFFF, itt=c.next_itt(), f20=0xFFFFFFFF, f24=c.cmdsn) + b"x" * 100)
check("the target closes the connection", closed_by_target(c))
c = Conn()
c.raw(bhs(0x43, 0x87, dlen=0x100000, itt=1) + b"InitiatorName=x\0")
check("a 1 MiB login text: the connection is closed", closed_by_target(c))
healthy("lying lengths")

case("a lying TotalAHSLength, then the end of the stream")
c = login()
c.raw(bhs(0x01, 0x81, itt=c.next_itt(), f24=c.cmdsn, ahslen=200) + b"\0" * 64)
c.s.shutdown(socket.SHUT_WR)
check("the target closes the connection", closed_by_target(c))
healthy("a lying AHS length")

case("an AHS whose inner length lies")
c = login()
ahs = struct.pack(">HB", 300, 1) + b"\0" * 5  # says 300 bytes, has 8
c.send(bhs(0x01, 0x81, itt=c.next_itt(), f24=c.cmdsn, ahslen=2, tail=b"\0" * 16), ahs=ahs)
rh, _ = c.recv()
check("Reject with reason 'invalid PDU field'", rh[0] & 0x3F == 0x3F and rh[2] == 0x09)
check("the session still works", tur_until_good(c))
c.close()

case("truncated PDUs")
for n in (1, 20, 47):
    c = login()
    c.raw(bhs(0x01, 0x81, itt=c.next_itt(), f24=c.cmdsn)[:n])
    c.close()
c = login()
c.raw(bhs(0x01, 0xA1, dlen=4096, itt=c.next_itt(), f20=4096, f24=c.cmdsn, tail=b"\x2a" + b"\0" * 15) + b"y" * 100)
c.close()
healthy("truncated PDUs")

case("CmdSN outside the window")
c = login()
tur_until_good(c)
for sn in (c.cmdsn + 100000, c.cmdsn - 1):
    c.send(bhs(0x01, 0x81, itt=c.next_itt(), f24=sn, f28=c.statsn, tail=b"\0" * 16))
    try:
        c.recv_skip_pings(1.5)
        got = True
    except Timeout:
        got = False
    check("CmdSN %d (ExpCmdSN %d) is dropped without an answer" % (sn, c.cmdsn), not got)
check("CmdSN == ExpCmdSN works again", tur_until_good(c))
c.close()

case("a duplicate ITT and immediate data beyond FirstBurstLength")
c = login()
tur_until_good(c)
itt = c.next_itt()
write_cdb = struct.pack(">BBIBHB", 0x2A, 0, 10, 0, 256, 0).ljust(16, b"\0")
c.send(bhs(0x01, 0x21, itt=itt, f20=131072, f24=c.cmdsn, f28=c.statsn, tail=write_cdb))  # no F: waits
c.cmdsn += 1
c.send(bhs(0x01, 0x81, itt=itt, f24=c.cmdsn, f28=c.statsn, tail=b"\0" * 16))
rh, _ = c.recv_skip_pings()
while rh[0] & 0x3F == 0x31:
    rh, _ = c.recv_skip_pings()
check("a second command with a live ITT is rejected (task in progress)", rh[0] & 0x3F == 0x3F and rh[2] == 0x07)
c.close()
c = login()
tur_until_good(c)
big = os.urandom(131072)
c.send(bhs(0x01, 0xA1, dlen=len(big), itt=c.next_itt(), f20=len(big), f24=c.cmdsn, f28=c.statsn, tail=write_cdb), big)
rh, _ = c.recv()
check("immediate data past FirstBurstLength is rejected (protocol error)", rh[0] & 0x3F == 0x3F and rh[2] == 0x04)
c.close()
healthy("duplicate ITTs")

case("Data-Out out of sequence, or for no task")
c = login()
tur_until_good(c)
c.send(bhs(0x05, 0x80, 512, itt=0x7777, f20=0xFFFFFFFF, tail=struct.pack(">IIII", 0, 0, 0, 0)), b"z" * 512)
check("a Data-Out for no task is dropped quietly", tur_until_good(c))
itt = c.next_itt()
cdb = struct.pack(">BBIBHB", 0x2A, 0, 20, 0, 2, 0).ljust(16, b"\0")
c.send(bhs(0x01, 0x21, itt=itt, f20=1024, f24=c.cmdsn, f28=c.statsn, tail=cdb))
c.cmdsn += 1
c.send(bhs(0x05, 0x00, 512, itt=itt, f20=0xFFFFFFFF, tail=struct.pack(">IIII", 0, 5, 0, 0)), b"q" * 512)
rh, rd = c.recv_skip_pings()
check("a wrong DataSN fails the command with CHECK CONDITION",
      rh[0] & 0x3F == 0x21 and rh[3] == 0x02 and rd[2 + 2] & 0x0F == 0x0B)
c.send(bhs(0x05, 0x80, 512, itt=itt, f20=0xFFFFFFFF, tail=struct.pack(">IIII", 0, 1, 512, 0)), b"q" * 512)
check("the session goes on", tur_until_good(c))
itt = c.next_itt()
c.send(bhs(0x01, 0x21, itt=itt, f20=1024, f24=c.cmdsn, f28=c.statsn, tail=cdb))
c.cmdsn += 1
c.send(bhs(0x05, 0x80, 2048, itt=itt, f20=0xFFFFFFFF, tail=struct.pack(">IIII", 0, 0, 0, 0)), b"q" * 2048)
rh, rd = c.recv_skip_pings()
check("too much Data-Out fails the command", rh[0] & 0x3F == 0x21 and rh[3] == 0x02)
check("the session goes on after too much data", tur_until_good(c))
c.close()
healthy("broken Data-Out")

case("disconnecting in the middle of a transfer")
for n in range(3):
    c = login()
    tur_until_good(c)
    itt = c.next_itt()
    cdb = struct.pack(">BBIBHB", 0x2A, 0, 4096, 0, 2048, 0).ljust(16, b"\0")
    c.send(bhs(0x01, 0x21, 65536, itt=itt, f20=1 << 20, f24=c.cmdsn, f28=c.statsn, tail=cdb), os.urandom(65536)[: [100, 65536, 65536][n]] if n == 0 else os.urandom(65536))
    if n == 2:
        try:
            rh, _ = c.recv(5)  # an R2T for the rest
        except Exception:
            pass
        c.raw(bhs(0x05, 0x00, 8192, itt=itt, f20=1, tail=struct.pack(">IIII", 0, 0, 65536, 0))[:30])
    c.close()
c = login()
tur_until_good(c)
cdb = struct.pack(">BBIBHB", 0x28, 0, 0, 0, 8192, 0).ljust(16, b"\0")
c.send(bhs(0x01, 0xC1, itt=c.next_itt(), f20=8192 * 512, f24=c.cmdsn, f28=c.statsn, tail=cdb))
time.sleep(0.05)
c.close()  # 4 MiB of Data-In, nobody reading
healthy("disconnects mid-transfer")

case("login: replays and broken requests")
c = login()
st = None
h = bytearray(bhs(0x43, 0x87, 0, itt=c.next_itt(), f24=c.cmdsn))
c.send(bytes(h))
rh, _ = c.recv()
check("a login in the full feature phase is rejected", rh[0] & 0x3F == 0x3F and rh[2] == 0x04)
check("the session still works", tur_until_good(c))
c.close()


def login_status(keys, csg=1, nsg=3, transit=True, cont=False, vmin=0):
    c = Conn()
    try:
        st, rh, _ = login_pdu(c, csg, nsg, transit, keys, new_isid(), cont=cont, vmin=vmin)
        closed = closed_by_target(c, 5) if st != 0 else None
    finally:
        c.close()
    return st, closed


st, closed = login_status(op_keys(), vmin=1)
check("VersionMin 1: unsupported version (0x0205), then closed", st == 0x0205 and closed)
st, _ = login_status([(k, v) for k, v in op_keys() if k != "InitiatorName"])
check("no InitiatorName: missing parameter (0x0207)", st == 0x0207)
st, _ = login_status([(k, TARGET + "x" if k == "TargetName" else v) for k, v in op_keys()])
check("an unknown target: not found (0x0203)", st == 0x0203)
st, _ = login_status(op_keys(), transit=True, cont=True)
check("T and C together: initiator error (0x0200)", st == 0x0200)
st, _ = login_status(op_keys() + [("HeaderDigest", "None")])
check("a key twice: initiator error (0x0200)", st == 0x0200)
st, _ = login_status(b"InitiatorName" + b"\0" * 3)
check("text without '=': initiator error (0x0200)", st == 0x0200)
st, _ = login_status([("K" * 100, "v")] + op_keys())
check("a key name of 100 bytes: initiator error (0x0200)", st == 0x0200)
st, _ = login_status(op_keys(), csg=3, nsg=3)
check("a first request in the full feature stage: initiator error (0x0200)", st == 0x0200)
c = Conn()
st, rh, r = login_pdu(c, 1, 3, True, op_keys(extra=[("X-com.example.Key", "1"), ("DefaultTime2Wait", "9999"),
                                                    ("Foo", "bar"), ("iSCSIProtocolLevel", "1")]), new_isid())
check("unknown keys NotUnderstood, out of range Reject, the login goes on",
      st == 0 and r.get("X-com.example.Key") == "NotUnderstood" and r.get("Foo") == "NotUnderstood"
      and r.get("DefaultTime2Wait") == "Reject")
c.close()
c = Conn()
st, rh, r = login_pdu(c, 1, 3, True, op_keys(discovery=True, extra=[("MaxBurstLength", "65536")]), new_isid())
check("discovery: keys of normal sessions are Irrelevant", st == 0 and r.get("MaxBurstLength") == "Irrelevant")
c.close()
healthy("broken logins")

case("CHAP: bad responses")


def chap_login(user, secret_fn, algo="5", mutual=None):
    c = Conn()
    isid = new_isid()
    keys = [("InitiatorName", INI), ("TargetName", CHAP_TARGET), ("SessionType", "Normal"),
            ("AuthMethod", "CHAP,None")]
    st, rh, r = login_pdu(c, 0, 1, False, keys, isid)
    if st or r.get("AuthMethod") != "CHAP":
        c.close()
        return st or -1
    st, rh, r = login_pdu(c, 0, 1, False, [("CHAP_A", algo)], isid)
    if st:
        c.close()
        return st
    cid = int(r["CHAP_I"])
    chal = bytes.fromhex(r["CHAP_C"][2:])
    resp = secret_fn(cid, chal)
    keys = [("CHAP_N", user), ("CHAP_R", resp)] + (mutual or [])
    st, rh, r = login_pdu(c, 0, 1, True, keys, isid)
    c.close()
    return st


def good_resp(cid, chal):
    return "0x" + hashlib.md5(bytes([cid]) + CHAP_SECRET.encode() + chal).hexdigest()


check("the right CHAP response logs in", chap_login(CHAP_USER, good_resp) == 0)
check("a wrong secret: authentication failure (0x0201)",
      chap_login(CHAP_USER, lambda i, ch: "0x" + hashlib.md5(bytes([i]) + b"nope" + ch).hexdigest()) == 0x0201)
check("a response that is not hex", chap_login(CHAP_USER, lambda i, ch: "0xZZZZ") == 0x0201)
check("a response of 600 bytes", chap_login(CHAP_USER, lambda i, ch: "0x" + "ab" * 600) == 0x0201)
check("a base64 response of the right value",
      chap_login(CHAP_USER, lambda i, ch: "0b" + __import__("base64").b64encode(
          hashlib.md5(bytes([i]) + CHAP_SECRET.encode() + ch).digest()).decode()) == 0)
check("a wrong user", chap_login("mallory", good_resp) == 0x0201)
check("CHAP_A without MD5 (5)", chap_login(CHAP_USER, good_resp, algo="6,7") == 0x0201)
check("mutual CHAP reflecting our own challenge is refused",
      chap_login(CHAP_USER, good_resp, mutual=[("CHAP_I", "1"), ("CHAP_C", "0x00")]) == 0x0201)
c = Conn()
st, _, _ = login_pdu(c, 1, 3, True, [("InitiatorName", INI), ("TargetName", CHAP_TARGET)] + op_keys()[3:], new_isid())
check("skipping the security stage of a CHAP target: authentication failure", st == 0x0201)
c.close()
healthy("bad CHAP")

case("session reinstatement (same ISID)")
isid = new_isid()
a = login(isid=isid)
tur_until_good(a)
b = login(isid=isid)
check("the first session is closed when the second logs in with its ISID", closed_by_target(a, 10))
check("the new session works", tur_until_good(b))
a2 = login(isid=new_isid())
check("another ISID is another session", tur_until_good(a2) and tur_until_good(b))
a2.close()
b.close()
c = Conn()
st, _, _ = login_pdu(c, 1, 3, True, op_keys(), new_isid(), tsih=0x7FFF)
check("joining a session that does not exist (TSIH): 0x020a", st == 0x020A)
c.close()
healthy("reinstatement")

case("header and data digests")
c = login(digests=True)
check("CRC32C negotiated for both", c.hd and c.dd)
tur_until_good(c)
data = os.urandom(65536 + 4096 + 12 * 512)
st, _, _ = write10(c, 3000, data)
st2, got, _ = read10(c, 3000, len(data) // 512)
check("a write and read with digests compare", st == 0 and st2 == 0 and got == data)
h = bytearray(bhs(0x01, 0x81, itt=c.next_itt(), f24=c.cmdsn, tail=b"\0" * 16))
c.raw(bytes(h) + struct.pack("<I", crc32c(bytes(h)) ^ 1))
check("a bad header digest ends the connection", closed_by_target(c))
c = login(digests=True)
tur_until_good(c)
itt = c.next_itt()
cdb = struct.pack(">BBIBHB", 0x2A, 0, 50, 0, 1, 0).ljust(16, b"\0")
h = bhs(0x01, 0xA1, 512, itt=itt, f20=512, f24=c.cmdsn, f28=c.statsn, tail=cdb)
d = b"d" * 512
c.raw(h + struct.pack("<I", crc32c(h)) + d + struct.pack("<I", crc32c(d) ^ 0x10))
check("a bad data digest ends the connection", closed_by_target(c))
healthy("digests")

case("Text: SendTargets in a normal session, and a discovery session's limits")
c = login()
c.send(bhs(0x04, 0x80, 16, itt=c.next_itt(), f20=0xFFFFFFFF, f24=c.cmdsn, f28=c.statsn), b"SendTargets=All\0")
c.cmdsn += 1
rh, rd = c.recv_skip_pings()
check("SendTargets=All lists the target with its address",
      rh[0] & 0x3F == 0x24 and ("TargetName=" + TARGET).encode() in rd and b"TargetAddress=127.0.0.1:%d,1" % PORT in rd)
c.close()
c = login(discovery=True)
c.send(bhs(0x01, 0x81, itt=c.next_itt(), f24=c.cmdsn, tail=b"\0" * 16))
rh, _ = c.recv()
check("a SCSI command in a discovery session is rejected", rh[0] & 0x3F == 0x3F)
check("logout of the discovery session", logout(c))

case("NOP-Out: echo of ping data; SNACK rejected at ERL 0")
c = login()
c.send(bhs(0x00, 0x80, 20, itt=c.next_itt(), f20=0xFFFFFFFF, f24=c.cmdsn, f28=c.statsn), b"ping-data-0123456789")
c.cmdsn += 1
rh, rd = c.recv_skip_pings()
check("NOP-In echoes the ping data", rh[0] & 0x3F == 0x20 and rd == b"ping-data-0123456789")
c.send(bhs(0x10, 0x80, itt=0xFFFFFFFF, f20=0xFFFFFFFF, f28=c.statsn))
rh, _ = c.recv_skip_pings()
check("SNACK: Reject (SNACK reject)", rh[0] & 0x3F == 0x3F and rh[2] == 0x03)
c.close()

case("an initiator that does not answer NOP-In pings is dropped")
c = login()
tur_until_good(c)
start = time.time()
got_ping = False
try:
    while time.time() - start < 20:
        rh, _ = c.recv(20)
        if rh[0] & 0x3F == 0x20 and struct.unpack(">I", rh[20:24])[0] != 0xFFFFFFFF:
            got_ping = True  # and we do not answer
except (Closed, Timeout):
    pass
check("the target pinged (NOP-In with a TTT)", got_ping)
check("... and dropped the connection when no answer came", time.time() - start < 19)
c.close()
c = login()
tur_until_good(c)
end = time.time() + 4
while time.time() < end:  # idle, but reading and answering pings
    try:
        c.recv_skip_pings(max(0.1, end - time.time()))
    except Timeout:
        pass
try:
    st, _, _ = scsi(c, b"\0" * 6)
    alive = st in (0, 2)
except Exception:
    alive = False
check("an initiator that answers pings stays (pings answered: %d)" % c.pings, alive and c.pings > 0)
c.close()
healthy("pings")

case("a LUN appears: REPORTED LUNS DATA HAS CHANGED, once")
if os.environ.get("CISTERN"):
    c = login()
    tur_until_good(c)
    import subprocess
    subprocess.run([os.environ["CISTERN"], "vol", "create", "tank/appears", "--size", "1M"],
                   check=True, stdout=subprocess.DEVNULL)
    st, _, sense = scsi(c, b"\0" * 6)
    check("the next command gets UNIT ATTENTION 3F/0E",
          st == 2 and len(sense) >= 14 and sense[2] & 0x0F == 6 and sense[12:14] == b"\x3f\x0e")
    st, _, _ = scsi(c, b"\0" * 6)
    check("... and only that one", st == 0)
    c.close()

case("logout with a command in flight")
c = login()
tur_until_good(c)
itt = c.next_itt()
c.send(bhs(0x01, 0xC1, itt=itt, f20=65536, f24=c.cmdsn, f28=c.statsn,
           tail=struct.pack(">BBIBHB", 0x28, 0, 0, 0, 128, 0).ljust(16, b"\0")))
c.cmdsn += 1
c.send(bhs(0x46, 0x80, itt=c.next_itt(), f24=c.cmdsn, f28=c.statsn))
ops = []
try:
    while True:
        rh, _ = c.recv(5)
        ops.append(rh[0] & 0x3F)
except (Closed, Timeout):
    pass
check("the read's data and status come before the Logout Response, then the end",
      ops and ops[-1] == 0x26 and 0x25 in ops)
c.close()
healthy("everything")

print("%d failures" % failures)
sys.exit(1 if failures else 0)

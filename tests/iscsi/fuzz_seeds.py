# Seed conversations for the iSCSI fuzz target (fuzz_iscsi.c): whole initiator byte streams
# that reach every phase, so that the fuzzer starts from valid PDUs and mutates from there.
#
# Usage: python3 fuzz_seeds.py CORPUS_DIR
import os
import struct
import sys

T_OPEN = "iqn.2026-11.org.cistern:fuzz"
T_CHAP = "iqn.2026-11.org.cistern:chap"
INI = "iqn.2026-11.org.example:fuzz"

_T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _T.append(c)


def crc32c(b):
    crc = 0xFFFFFFFF
    for x in b:
        crc = _T[(crc ^ x) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def pdu(op, flags=0, data=b"", lun=0, itt=1, f20=0, f24=0, f28=0, tail=b"", ahs=b"", hd=False, dd=False):
    h = struct.pack(">BBHB", op, flags, 0, len(ahs) // 4) + struct.pack(">I", len(data))[1:]
    h += struct.pack(">QIIII", lun, itt, f20, f24, f28) + tail.ljust(16, b"\0")
    out = h + ahs
    if hd:
        out += struct.pack("<I", crc32c(h + ahs))
    if data:
        d = data + b"\0" * ((4 - len(data) % 4) % 4)
        out += d
        if dd:
            out += struct.pack("<I", crc32c(d))
    return out


def kv(pairs):
    return b"".join(("%s=%s" % p).encode() + b"\0" for p in pairs)


ISID = bytes([0x80, 1, 2, 3, 0, 1])


def login(csg, nsg, transit, pairs, cont=False, itt=1):
    flags = (0x80 if transit else 0) | (0x40 if cont else 0) | (csg << 2) | (nsg if transit else 0)
    data = kv(pairs)
    tail = b""
    h = pdu(0x43, flags, data, itt=itt, f24=1, f28=0)
    h = bytearray(h)
    h[8:14] = ISID
    return bytes(h)


def op_keys(target=T_OPEN, digests=False, discovery=False):
    k = [("InitiatorName", INI)]
    k += [("SessionType", "Discovery")] if discovery else [("TargetName", target), ("SessionType", "Normal")]
    d = "CRC32C" if digests else "None"
    k += [("HeaderDigest", d), ("DataDigest", d), ("MaxRecvDataSegmentLength", "8192")]
    if not discovery:
        k += [("ImmediateData", "Yes"), ("InitialR2T", "No"), ("FirstBurstLength", "16384"),
              ("MaxBurstLength", "65536"), ("MaxOutstandingR2T", "2"), ("ErrorRecoveryLevel", "0"),
              ("X-org.example.Foo", "1"), ("IFMarker", "No")]
    return k


def cmd(cdb, itt, sn, edtl=0, read=False, write=False, data=b"", final=True, lun=0, hd=False, dd=False):
    flags = (0x80 if final else 0) | 0x01 | (0x40 if read else 0) | (0x20 if write else 0)
    return pdu(0x01, flags, data, lun=lun << 48, itt=itt, f20=edtl, f24=sn, tail=cdb, hd=hd, dd=dd)


def dataout(itt, ttt, sn, off, data, final, hd=False, dd=False):
    return pdu(0x05, 0x80 if final else 0, data, itt=itt, f20=ttt, tail=struct.pack(">IIII", 0, sn, off, 0),
               hd=hd, dd=dd)


def rw10(op, lba, n):
    return struct.pack(">BBIBHB", op, 0, lba, 0, n, 0)


def session(hd=False, dd=False):
    s = login(1, 3, True, op_keys(digests=hd))
    sn = 1
    out = []
    out.append(cmd(b"\0" * 6, 2, sn, hd=hd, dd=dd)); sn += 1                      # TEST UNIT READY
    out.append(cmd(b"\x12\0\0\0\xff\0", 3, sn, 255, read=True, hd=hd, dd=dd)); sn += 1  # INQUIRY
    out.append(cmd(b"\xa0" + b"\0" * 5 + b"\0\0\x10\0\0\0", 4, sn, 4096, read=True, hd=hd, dd=dd)); sn += 1  # REPORT LUNS
    out.append(cmd(rw10(0x28, 0, 8), 5, sn, 4096, read=True, hd=hd, dd=dd)); sn += 1
    data = bytes(range(256)) * 16
    out.append(cmd(rw10(0x2A, 8, 8), 6, sn, 4096, write=True, data=data, hd=hd, dd=dd)); sn += 1  # immediate
    big = bytes(range(256)) * 128
    out.append(cmd(rw10(0x2A, 16, 64), 7, sn, len(big), write=True, data=big[:4096], final=False, hd=hd, dd=dd)); sn += 1
    out.append(dataout(7, 0xFFFFFFFF, 0, 4096, big[4096:12288], False, hd, dd))
    out.append(dataout(7, 0xFFFFFFFF, 1, 12288, big[12288:16384], True, hd, dd))
    out.append(dataout(7, 0x0, 0, 16384, big[16384:24576], False, hd, dd))  # R2T TTT guessed
    out.append(cmd(rw10(0x28, 0, 8), 8, sn, 4096, read=True, lun=1, hd=hd, dd=dd)); sn += 1
    out.append(cmd(rw10(0x2A, 0, 1), 9, sn, 512, write=True, data=b"r" * 512, lun=1, hd=hd, dd=dd)); sn += 1
    out.append(cmd(b"\0" * 6, 10, sn, lun=7, hd=hd, dd=dd)); sn += 1  # no such LUN
    out.append(pdu(0x00, 0x80, b"ping", itt=11, f20=0xFFFFFFFF, f24=sn, hd=hd, dd=dd)); sn += 1
    out.append(pdu(0x04, 0x80, b"SendTargets=All\0", itt=12, f20=0xFFFFFFFF, f24=sn, hd=hd, dd=dd)); sn += 1
    out.append(pdu(0x42, 0x81, itt=13, f20=6, f24=sn, hd=hd, dd=dd))  # ABORT TASK of ITT 6
    out.append(pdu(0x42, 0x85, itt=14, f24=sn, hd=hd, dd=dd))  # LUN RESET
    out.append(pdu(0x46, 0x80, itt=15, f24=sn, hd=hd, dd=dd))  # logout
    return s + b"".join(out)


def chap():
    s = login(0, 1, False, [("InitiatorName", INI), ("TargetName", T_CHAP), ("AuthMethod", "CHAP,None")])
    s += login(0, 1, False, [("CHAP_A", "5,7")])
    s += login(0, 1, True, [("CHAP_N", "u"), ("CHAP_R", "0x" + "00" * 16), ("CHAP_I", "7"),
                            ("CHAP_C", "0x0102030405060708090a0b0c0d0e0f10")])
    return s


def continued():
    text = kv(op_keys())
    return pdu(0x43, 0x44, text[:40], f24=1) + pdu(0x43, 0x87, text[40:], f24=1)


def ahs():
    ext = struct.pack(">HBB", 9, 1, 0) + bytes(range(8))  # extended CDB: 24 bytes in all
    bidi = struct.pack(">HBBI", 5, 2, 0, 512)           # bidirectional read length
    return pdu(0x01, 0x81, lun=0, itt=2, f24=1, tail=b"\x7f" + b"\0" * 15, ahs=ext + bidi)


seeds = {
    "session": session(),
    "session-digests": session(True, True),
    "discovery": login(1, 3, True, op_keys(discovery=True)) +
    pdu(0x04, 0x80, b"SendTargets=All\0", itt=2, f20=0xFFFFFFFF, f24=1) + pdu(0x46, 0x80, itt=3, f24=2),
    "chap": chap(),
    "continued": continued(),
    "garbage-after-login": login(1, 3, True, op_keys()) + bytes(range(256)),
    "ahs": login(1, 3, True, op_keys()) + ahs(),
}

os.makedirs(sys.argv[1], exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(sys.argv[1], name), "wb") as f:
        f.write(data)
print("%d seeds in %s" % (len(seeds), sys.argv[1]))

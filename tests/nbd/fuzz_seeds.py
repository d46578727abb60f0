# Writes seed inputs for fuzz_nbd into the directory given: whole client conversations
# (handshake, options, requests) that reach deep into the state machine, for the fuzzer
# to mutate. Used by test_fuzz.sh.
import os
import struct
import sys

IHAVEOPT = 0x49484156454F5054
REQMAGIC = 0x25609513
out = sys.argv[1]
os.makedirs(out, exist_ok=True)


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def req(typ, off=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQMAGIC, flags, typ, cookie, off, length) + payload


def go(name=b"vol", infos=(1, 2, 3)):
    return opt(7, struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos)) +
               b"".join(struct.pack(">H", i) for i in infos))


meta = struct.pack(">I", 3) + b"vol" + struct.pack(">I", 1) + struct.pack(">I", 15) + \
    b"base:allocation"
flags = struct.pack(">I", 3)
seeds = {
    "list": flags + opt(3) + opt(2),
    "info": flags + opt(6, struct.pack(">I", 2) + b"ro" + struct.pack(">H", 1) + b"\0\3"),
    "export_name": flags + opt(1, b"vol") + req(0, 0, 4096) + req(2),
    "structured": flags + opt(8) + opt(9, meta) + opt(10, meta) + go() +
    req(1, 4096, 4096, 1, 2, b"\xab" * 4096) + req(0, 0, 16384, 0, 3) +
    req(7, 0, 1 << 20, 0, 4) + req(7, 0, 1 << 20, 8, 5) + req(4, 8192, 4096, 0, 6) +
    req(6, 65536, 65536, 2, 7) + req(6, 65536, 65536, 16, 8) + req(5, 0, 4096, 0, 9) +
    req(3, 0, 0, 0, 10) + req(2),
    "simple": flags + go(b"vol", ()) + req(1, 0, 512, 0, 1, b"x" * 512) + req(0, 0, 1000) +
    req(0, 8 << 20, 512) + req(99) + req(2),
    "readonly": flags + go(b"ro") + req(1, 0, 512, 0, 1, b"x" * 512) + req(4, 0, 512),
    "starttls": flags + opt(5) + opt(3),
    "toobig": flags + opt(6, b"\0" * 70000) + opt(3),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)

#!/usr/bin/env python3
"""Seed every fuzz target's corpus (fuzz/corpus/<target>/) from the golden fixtures' captures and
configurations (fixtures/, in the repository), the example configurations (examples/) and, if
present, the shared pcap corpus (the frames of every capture). Files are named by their content's
hash, so running it again adds nothing twice. Standard library only.

    python3 fuzz/seed.py [--pcap-corpus DIR] [--out DIR]

DIR defaults to $ALTROUTE_PCAP_CORPUS, else shared/pcap-corpus beside the checkout (skipped with a
note when missing). Prints how many seeds each target got.
"""

import argparse
import glob
import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Targets whose input is one Ethernet frame.
FRAME_TARGETS = ["fast_parse", "slow_parse", "wire_ethernet"]
# Frames taken from one capture for the single-frame targets.
FRAMES_PER_FILE = 32
# Pipeline links of the `pipeline` target by fixture port name.
LINKS = {"lan": 0, "wan1": 1, "wan2": 2}


def read_capture(data):
    """(timestamp in ms, frame) of every Ethernet packet of a pcap or pcapng file; raises on
    anything it does not understand (the caller skips the file)."""
    if len(data) < 24:
        raise ValueError("too short")
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        return read_pcapng(data)
    magic = struct.unpack("<I", data[:4])[0]
    orders = {0xA1B2C3D4: ("<", 1000), 0xA1B23C4D: ("<", 1), 0xD4C3B2A1: (">", 1000), 0x4D3CB2A1: (">", 1)}
    if magic not in orders:
        raise ValueError("not a capture")
    e, frac_ns = orders[magic]
    if struct.unpack(e + "I", data[20:24])[0] & 0xFFFF != 1:
        raise ValueError("not Ethernet")
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(e + "IIII", data[pos : pos + 16])
        frame = data[pos + 16 : pos + 16 + incl]
        if len(frame) < incl:
            break
        out.append(((sec * 10**9 + frac * frac_ns) // 10**6, frame))
        pos += 16 + incl
    return out


def read_pcapng(data):
    out, pos, e, links = [], 0, "<", []
    while pos + 12 <= len(data):
        kind = struct.unpack(e + "I", data[pos : pos + 4])[0]
        if kind == 0x0A0D0D0A:
            e = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            links = []
        total = struct.unpack(e + "I", data[pos + 4 : pos + 8])[0]
        if total < 12 or pos + total > len(data):
            break
        body = data[pos + 8 : pos + total - 4]
        if kind == 1 and len(body) >= 2:
            links.append(struct.unpack(e + "H", body[:2])[0])
        elif kind == 6 and len(body) >= 20:
            iface, hi, lo, cap, _ = struct.unpack(e + "IIIII", body[:20])
            if iface < len(links) and links[iface] == 1:
                # Microseconds (the default resolution) are close enough for seeds.
                out.append((((hi << 32) | lo) // 1000, body[20 : 20 + cap]))
        elif kind == 3 and len(body) >= 4 and links[:1] == [1]:
            out.append((out[-1][0] if out else 0, body[4:]))
        pos += total
    return out


def layers(frame):
    """(L3 offset, IPv4 packet, L4 protocol, L4 bytes) of an IPv4 frame (one 802.1Q tag at most),
    or the ARP payload as (offset, None, "arp", bytes); None otherwise."""
    off, ethertype = 14, frame[12:14]
    if ethertype == b"\x81\x00":
        off, ethertype = 18, frame[16:18]
    if ethertype == b"\x08\x06":
        return (off, None, "arp", frame[off:])
    if ethertype != b"\x08\x00" or len(frame) < off + 20:
        return None
    ihl = (frame[off] & 0x0F) * 4
    total = int.from_bytes(frame[off + 2 : off + 4], "big")
    ip = frame[off : off + max(total, 20)] if total >= 20 else frame[off:]
    return (off, ip, frame[off + 9], ip[ihl:])


class Seeds:
    def __init__(self, out):
        self.out = out
        self.counts = {}

    def add(self, target, data):
        if not data:
            return
        d = os.path.join(self.out, target)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, hashlib.sha1(data).hexdigest())
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
            self.counts[target] = self.counts.get(target, 0) + 1

    def frames(self, frames):
        """Every target that takes one frame or one of its layers (the first frames of each
        capture: the fixtures' load-balance scenario alone has 10,000 alike)."""
        for _, f in frames[:FRAMES_PER_FILE]:
            for t in FRAME_TARGETS:
                self.add(t, f)
            # egress: start, offset and room (0: from the frame itself, 2048 bytes of room), no
            # tweaks, then the frame (see fuzz_targets/egress.rs).
            self.add("egress", struct.pack(">HHHB", 0, 0, 2048, 0) + f)
            l = layers(f)
            if l is None:
                continue
            _, ip, proto, l4 = l
            if proto == "arp":
                self.add("wire_arp", l4)
                continue
            self.add("wire_ipv4", ip)
            # The offending packet of a generated answer, behind the answer buffer's size.
            self.add("build_replies", struct.pack("<H", 1514) + ip)
            name = {6: "wire_tcp", 17: "wire_udp", 1: "wire_icmpv4"}.get(proto)
            if name:
                self.add(name, l4)

    def pipeline(self, frames, rewrite, settings=(0x00, 0x80)):
        """`pipeline` inputs: `frames` as (ms, link, bytes); `rewrite` sets each frame's
        destination MAC to the port's. One per settings byte (0x80: compared frame by frame
        rather than with the fast path off)."""
        recs, last = b"", frames[0][0] if frames else 0
        for i, (ms, link, f) in enumerate(frames[:256]):
            step = max(0, min(ms - last, 127))
            last = ms
            b0 = link | 0x20 | (8 if rewrite else 0) | (4 if i % 16 == 15 else 0)
            recs += bytes([b0, step]) + struct.pack("<H", len(f)) + f
        for b in settings:
            self.add("pipeline", bytes([b]) + recs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pcap-corpus", default=os.environ.get("ALTROUTE_PCAP_CORPUS"))
    ap.add_argument("--out", default=os.path.join(HERE, "corpus"))
    args = ap.parse_args()
    seeds = Seeds(args.out)

    # The golden fixtures: each scenario's input frames, merged in capture order, on their ports.
    for scenario in sorted(glob.glob(os.path.join(ROOT, "fixtures", "*", "config.yaml"))):
        d = os.path.dirname(scenario)
        merged = []
        for p in sorted(glob.glob(os.path.join(d, "*.pcap"))):
            with open(p, "rb") as f:
                data = f.read()
            seeds.add("capture", data if len(data) <= 65536 else data[:65536])
            frames = read_capture(data)
            seeds.frames(frames)
            port = os.path.basename(p)[len("in-") : -len(".pcap")]
            if os.path.basename(p).startswith("in-") and port in LINKS:
                merged += [(ms, LINKS[port], f) for ms, f in frames]
        merged.sort(key=lambda x: x[0])
        seeds.pipeline(merged, rewrite=False)
    # Configurations.
    for p in sorted(glob.glob(os.path.join(ROOT, "fixtures", "*", "config.yaml"))) + sorted(
        glob.glob(os.path.join(ROOT, "examples", "*.yaml"))
    ):
        with open(p, "rb") as f:
            seeds.add("config", f.read())
    # flow_table: a table setting byte, then operations; a few fixed sequences that create flows,
    # answer them, take gateways down and up and let time pass.
    for ops in (
        b"\x00\x10" + b"\x00\x01\x02\x03\x02" * 8 + b"\x06\x00\x01\x00\x00\x86\x01\x01\x00\x00",
        b"\x0c\x1f" + b"\x00\x11\x05\x00\x07" * 6 + b"\x0a\x00\x0b\x00\x09\xff\x40",
        b"\x22\x08" + b"\x03\x00\x01\x02\x04\x00\x01\x02\x03\x05\x00\x02\x00\x00" + b"\x0d\x05" + b"\x09\xc8\x10",
    ):
        seeds.add("flow_table", ops)
    # And longer ones (pseudo-random, fixed), so that the fuzzer starts with room for hundreds
    # of operations.
    for n, size in enumerate((512, 2048)):
        chain, block = b"", hashlib.sha256(b"flow_table %d" % n).digest()
        while len(chain) < size:
            chain += block
            block = hashlib.sha256(block).digest()
        seeds.add("flow_table", chain[:size])

    pcaps = args.pcap_corpus or os.path.join(ROOT, "..", "shared", "pcap-corpus")
    files = sorted(glob.glob(os.path.join(pcaps, "*.pcap")) + glob.glob(os.path.join(pcaps, "*.pcapng")))
    if not files:
        print(f"seed: no pcap corpus at {pcaps}: seeding from fixtures/ only", file=sys.stderr)
    for p in files:
        with open(p, "rb") as f:
            data = f.read()
        if len(data) <= 16384:
            seeds.add("capture", data)
        try:
            frames = read_capture(data)
        except (ValueError, struct.error, IndexError):
            continue
        seeds.frames(frames)
        if frames and len(data) <= 65536:
            # On the LAN or a WAN (addressed to the port), compared one way or the other.
            n = int(hashlib.sha1(data).hexdigest()[:2], 16)
            seeds.pipeline([(ms, n % 2, f) for ms, f in frames], rewrite=True, settings=(n & 0x80,))

    for t in sorted(seeds.counts):
        print(f"seed: {t}: {seeds.counts[t]} new")


if __name__ == "__main__":
    main()

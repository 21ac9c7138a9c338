#!/usr/bin/env python3
"""Traffic from a host's own stack through a NIC uplink, to a port of the
switch played by this script: what reaches a VM must be frames it can take,
whatever offloads the host used.

The host side is IFACE, the veth end whose peer is the switch's uplink;
run this inside IFACE's namespace, where IFACE has 10.77.0.1/24 and
fd77::1/64.  The host's stack leaves TCP and UDP checksums for the
device to fill in (veth offers checksum offload), and sends TCP as
super-frames of up to 64 KiB (TSO); an AF_PACKET socket hands both over
as they are.  Checked at the port:
  - UDP over IPv4 and IPv6: every checksum is complete; a UDP_SEGMENT
    send (one super-frame) arrives as its datagrams;
  - TCP over IPv4 and IPv6, a real connection from the host's stack to a
    minimal TCP responder here: every frame fits the MTU, every IP and TCP
    checksum is right, and the byte stream arrives whole;
  - a TCPv4 super-frame written by hand with a virtio-net header
    (PACKET_VNET_HDR), with an odd segment size, a PSH and a FIN: split
    into the right segments, flags only where they belong.

usage: nic_offload.py SWITCH_SOCKET IFACE
Exit 0 when all of it holds; 1 with a message otherwise."""
import os
import socket
import struct
import subprocess
import sys
import threading
import time

from inet_checksum import checksum

VM_MAC = bytes.fromhex("027700000020")
VM_IP4, VM_IP6 = "10.77.0.32", "fd77::32"
HOST_IP4, HOST_IP6 = "10.77.0.1", "fd77::1"
MAX_FRAME = 1514  # MTU 1500 + the Ethernet header
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
SOL_PACKET, PACKET_VNET_HDR = 263, 15
UDP_SEGMENT = 103
FIN, SYN, RST, PSH, ACK, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x80


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def pseudo(src, dst, proto, length):
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


class Packet:
    """An IPv4 or IPv6 frame from the port, parsed and checked."""

    def __init__(self, frame):
        self.frame = frame
        self.ethertype = struct.unpack("!H", frame[12:14])[0]
        self.proto = None
        if self.ethertype == ETH_P_IP and len(frame) >= 34:
            ihl = (frame[14] & 0xF) * 4
            total = struct.unpack("!H", frame[16:18])[0]
            if checksum(frame[14:14 + ihl]) != 0:
                fail("IPv4 header checksum wrong in a %d-byte frame" % len(frame))
            if 14 + total != len(frame):
                fail("IPv4 total length %d in a %d-byte frame" % (total, len(frame)))
            self.proto, self.src, self.dst = frame[23], frame[26:30], frame[30:34]
            self.l4 = frame[14 + ihl:]
        elif self.ethertype == ETH_P_IPV6 and len(frame) >= 54:
            plen = struct.unpack("!H", frame[18:20])[0]
            if 54 + plen != len(frame):
                fail("IPv6 payload length %d in a %d-byte frame" % (plen, len(frame)))
            self.proto, self.src, self.dst = frame[20], frame[22:38], frame[38:54]
            self.l4 = frame[54:]
        if self.proto in (6, 17) and checksum(pseudo(self.src, self.dst, self.proto, len(self.l4)) + self.l4) != 0:
            kind = "TCP" if self.proto == 6 else "UDP"
            fail("%s checksum wrong in a %d-byte frame from %s" % (kind, len(frame), socket.inet_ntop(
                socket.AF_INET if len(self.src) == 4 else socket.AF_INET6, self.src)))
        if len(frame) > MAX_FRAME:
            fail("a %d-byte frame reached the port (MTU 1500)" % len(frame))


class Port:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(path)
        self.sock.send(struct.pack("<IHH6s2x32s16s", 0x57534456, 1, 0, VM_MAC, b"default", b"nic_offload"))
        ack = self.sock.recv(64)
        if len(ack) != 64 or struct.unpack_from("<H", ack, 6)[0] != 0:
            fail("the switch refused the port")
        self.frames = 0

    def packets(self, deadline):
        """Yields checked IP packets until the deadline."""
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                frame = self.sock.recv(65536)
            except socket.timeout:
                return
            self.frames += 1
            if len(frame) >= 14:
                p = Packet(frame)
                if p.proto is not None:
                    yield p

    def send_ip(self, host_mac, src, dst, proto, l4):
        if len(src) == 4:
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, src, dst)
            ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
            ethertype = ETH_P_IP
        else:
            ip = struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, src, dst)
            ethertype = ETH_P_IPV6
        self.sock.send(host_mac + VM_MAC + struct.pack("!H", ethertype) + ip + l4)


def tcp_segment(src, dst, sport, dport, seq, ack, flags, payload=b"", options=b""):
    head = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (20 + len(options)) // 4 << 4, flags, 65535, 0, 0)
    seg = head + options + payload
    check = checksum(pseudo(src, dst, 6, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", check) + seg[18:]


def check_udp(port, host_mac, family):
    host, vm = (HOST_IP4, VM_IP4) if family == socket.AF_INET else (HOST_IP6, VM_IP6)
    sizes = [1, 200, 1400]
    s = socket.socket(family, socket.SOCK_DGRAM)
    for i, n in enumerate(sizes):
        s.sendto(bytes([i]) * n, (vm, 9000 + i))
    s.close()
    got = []
    for p in port.packets(time.monotonic() + 3):
        if p.proto == 17 and p.dst == socket.inet_pton(family, vm):
            got.append(len(p.l4) - 8)
            if len(got) == len(sizes):
                break
    if sorted(got) != sizes:
        fail("UDP over %s: datagrams of %s bytes arrived, want %s" % (
            "IPv4" if family == socket.AF_INET else "IPv6", got, sizes))
    print("UDP over %s: %d datagrams, checksums complete" % (
        "IPv4" if family == socket.AF_INET else "IPv6", len(got)))


def check_udp_gso(port, family):
    """One send of 3500 bytes with UDP_SEGMENT 1000: the stack hands the
    device one super-frame that must reach the port as four datagrams."""
    vm = VM_IP4 if family == socket.AF_INET else VM_IP6
    name = "IPv4" if family == socket.AF_INET else "IPv6"
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, 1000)
    data = os.urandom(3500)
    s.sendto(data, (vm, 9100))
    s.close()
    got = []
    for p in port.packets(time.monotonic() + 3):
        if p.proto == 17 and p.dst == socket.inet_pton(family, vm) and struct.unpack("!H", p.l4[2:4])[0] == 9100:
            if struct.unpack("!H", p.l4[4:6])[0] != len(p.l4):
                fail("UDP_SEGMENT over %s: a datagram's UDP length %d in %d bytes" % (
                    name, struct.unpack("!H", p.l4[4:6])[0], len(p.l4)))
            got.append(p.l4[8:])
            if sum(map(len, got)) >= len(data):
                break
    if [len(g) for g in got] != [1000, 1000, 1000, 500] or b"".join(got) != data:
        fail("UDP_SEGMENT over %s: datagrams of %s bytes arrived, want 1000, 1000, 1000, 500 in order" % (
            name, [len(g) for g in got]))
    print("UDP_SEGMENT over %s: one send of 3500 bytes arrived as 4 datagrams, checksums complete" % name)


def check_tcp(port, host_mac, family, total):
    """A connection from the host's stack; this side answers as a minimal
    TCP peer (MSS 1460, window 65535, an ACK for every segment)."""
    host, vm = (HOST_IP4, VM_IP4) if family == socket.AF_INET else (HOST_IP6, VM_IP6)
    vm_addr, host_addr = socket.inet_pton(family, vm), socket.inet_pton(family, host)
    name = "IPv4" if family == socket.AF_INET else "IPv6"
    data = os.urandom(total)
    outcome = {}

    def sender():
        try:
            c = socket.create_connection((vm, 8080), timeout=20)
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            c.settimeout(20)
            c.recv(1)  # our FIN
            c.close()
            outcome["ok"] = True
        except OSError as e:
            outcome["error"] = str(e)

    t = threading.Thread(target=sender)
    t.start()
    iss, expected, received, largest, frames, closed = 7000, None, bytearray(), 0, 0, False
    for p in port.packets(time.monotonic() + 25):
        if p.proto != 6 or p.dst != vm_addr:
            continue
        sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", p.l4[:14])
        payload = p.l4[(off >> 4) * 4:]
        frames += 1
        largest = max(largest, len(p.frame))
        reply = None
        if flags & SYN:
            expected = (seq + 1) & 0xFFFFFFFF
            reply = (iss, expected, SYN | ACK, struct.pack("!BBH", 2, 4, 1460))
        elif expected is None or flags & RST:
            fail("TCP over %s: unexpected segment, flags 0x%02x" % (name, flags))
        else:
            if seq == expected and payload:
                received += payload
                expected = (expected + len(payload)) & 0xFFFFFFFF
            if flags & FIN and not closed and (seq + len(payload)) & 0xFFFFFFFF == expected:
                closed = True
                expected = (expected + 1) & 0xFFFFFFFF
                reply = (iss + 1, expected, FIN | ACK, b"")
            elif payload or flags & FIN:
                reply = (iss + 1 + closed, expected, ACK, b"")
        if reply:
            seg = tcp_segment(vm_addr, host_addr, dport, sport, reply[0], reply[1], reply[2], options=reply[3])
            port.send_ip(host_mac, vm_addr, host_addr, 6, seg)
        if closed:
            break
    t.join(30)
    if "error" in outcome:
        fail("TCP over %s: the host's side failed: %s (%d of %d bytes arrived)" % (
            name, outcome["error"], len(received), total))
    if bytes(received) != data:
        fail("TCP over %s: %d of %d bytes arrived in order" % (name, len(received), total))
    print("TCP over %s: %d bytes in %d frames, the largest %d bytes, checksums right" % (
        name, total, frames, largest))


def check_injected(port, iface, host_mac):
    """A super-frame with a virtio-net header: GSO TCPv4, segment size
    1000, 9500 bytes of payload, PSH|FIN set, CWR set; the checksum
    field holds only the pseudo-header sum, as the stack leaves it."""
    src, dst = socket.inet_aton(HOST_IP4), socket.inet_aton(VM_IP4)
    payload = bytes(range(256)) * 37 + bytes(28)  # 9500 bytes
    mss, seq0, ident = 1000, 0xFFFFF000, 0x1234  # the sequence numbers wrap
    tcp = struct.pack("!HHIIBBHHH", 4000, 5000, seq0, 1, 5 << 4, PSH | FIN | ACK | CWR, 512, 0, 0)
    partial = ~checksum(pseudo(src, dst, 6, len(tcp) + len(payload))) & 0xFFFF
    tcp = tcp[:16] + struct.pack("!H", partial) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), ident, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    frame = VM_MAC + host_mac + struct.pack("!H", ETH_P_IP) + ip + tcp + payload
    # flags NEEDS_CSUM, gso_type TCPV4, hdr_len, gso_size, csum_start, csum_offset
    vnet = struct.pack("<BBHHHH", 1, 1, 54, mss, 34, 16)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.bind((iface, 0))
    s.send(vnet + frame)
    s.close()
    segments = []
    for p in port.packets(time.monotonic() + 3):
        if p.proto == 6 and struct.unpack("!H", p.l4[2:4])[0] == 5000:
            segments.append(p)
            if sum(len(q.l4) - 20 for q in segments) >= len(payload):
                break
    want = (len(payload) + mss - 1) // mss
    if len(segments) != want:
        fail("injected super-frame: %d segments arrived, want %d" % (len(segments), want))
    joined = b""
    for i, p in enumerate(segments):
        seq, flags = struct.unpack("!I", p.l4[4:8])[0], p.l4[13]
        ip_id = struct.unpack("!H", p.frame[18:20])[0]
        last = i == want - 1
        want_flags = ACK | (PSH | FIN if last else 0) | (CWR if i == 0 else 0)
        if seq != (seq0 + i * mss) & 0xFFFFFFFF or flags != want_flags or ip_id != ident + i:
            fail("segment %d: seq 0x%x flags 0x%02x id 0x%x, want 0x%x 0x%02x 0x%x" % (
                i, seq, flags, ip_id, (seq0 + i * mss) & 0xFFFFFFFF, want_flags, ident + i))
        joined += p.l4[20:]
    if joined != payload:
        fail("injected super-frame: the segments' payload differs from the frame's")
    print("injected TCPv4 super-frame: %d segments, sequence, flags, IDs and checksums right" % want)


def main():
    path, iface = sys.argv[1], sys.argv[2]
    with open("/sys/class/net/%s/address" % iface) as f:
        host_mac = bytes.fromhex(f.read().strip().replace(":", ""))
    vm_mac = ":".join("%02x" % b for b in VM_MAC)
    for ip in (VM_IP4, VM_IP6):
        subprocess.run(["ip", "neigh", "replace", ip, "lladdr", vm_mac, "dev", iface, "nud", "permanent"], check=True)
    port = Port(path)
    check_udp(port, host_mac, socket.AF_INET)
    check_udp(port, host_mac, socket.AF_INET6)
    check_udp_gso(port, socket.AF_INET)
    check_udp_gso(port, socket.AF_INET6)
    check_tcp(port, host_mac, socket.AF_INET, 300000)
    check_tcp(port, host_mac, socket.AF_INET6, 300000)
    check_injected(port, iface, host_mac)
    return 0


sys.exit(main())

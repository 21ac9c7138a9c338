#!/usr/bin/env python3
"""ARP and ICMP echo on an 802.1Q VLAN, by hand on an AF_PACKET socket: this
kernel has no VLAN interfaces (CONFIG_VLAN_8021Q), so the tag is written into
each frame sent, and each reply's tag is read from the packet's auxdata (the
receive path moves a tag out of the frame before taps see it).

usage: vlan_ping.py IFACE VLAN SRC_IP DST_IP COUNT [--expect-none]
Exit 0 when COUNT echo replies came back on VLAN (or, with --expect-none,
when not even the ARP was answered); 1 otherwise."""
import socket
import struct
import sys
import time

from inet_checksum import checksum

SOL_PACKET, PACKET_AUXDATA, TP_STATUS_VLAN_VALID = 263, 8, 0x10
ETH_P_ALL, ETH_P_ARP, ETH_P_IP, ETH_P_8021Q = 0x0003, 0x0806, 0x0800, 0x8100


def tagged(dst, src, vlan, ethertype, payload):
    return dst + src + struct.pack("!HHH", ETH_P_8021Q, vlan, ethertype) + payload


def receive(sock, vlan, want, deadline):
    """The first frame on `vlan` for which want(ethertype, payload) is true."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            frame, ancillary, _, _ = sock.recvmsg(65535, socket.CMSG_SPACE(20))
        except socket.timeout:
            return None
        tci = None
        for level, kind, data in ancillary:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= 20:
                status, _, _, _, _, vlan_tci, _ = struct.unpack("IIIHHHH", data[:20])
                if status & TP_STATUS_VLAN_VALID:
                    tci = vlan_tci
        if len(frame) < 14:
            continue
        ethertype = struct.unpack("!H", frame[12:14])[0]
        payload = frame[14:]
        if ethertype == ETH_P_8021Q and len(frame) >= 18:  # still in the frame
            tci = struct.unpack("!H", frame[14:16])[0]
            ethertype = struct.unpack("!H", frame[16:18])[0]
            payload = frame[18:]
        if tci is not None and tci & 0xFFF == vlan and want(ethertype, payload):
            return payload
    return None


def main():
    args = [a for a in sys.argv[1:] if a != "--expect-none"]
    expect_none = "--expect-none" in sys.argv
    iface, vlan, src_ip, dst_ip, count = args[0], int(args[1]), args[2], args[3], int(args[4])
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    mac = sock.getsockname()[4]
    sip, dip = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)

    arp = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1) + mac + sip + b"\0" * 6 + dip
    sock.send(tagged(b"\xff" * 6, mac, vlan, ETH_P_ARP, arp))
    reply = receive(sock, vlan, lambda t, p: t == ETH_P_ARP and len(p) >= 28 and p[6:8] == b"\0\2"
                    and p[14:18] == dip, time.monotonic() + 2)
    if reply is None:
        print("no ARP reply from %s on VLAN %d" % (dst_ip, vlan))
        return 0 if expect_none else 1
    if expect_none:
        print("%s answered ARP on VLAN %d" % (dst_ip, vlan))
        return 1
    peer = reply[8:14]
    replies = 0
    for seq in range(1, count + 1):
        icmp = struct.pack("!BBHHH", 8, 0, 0, 0x7664, seq) + b"vdfs-vlan-ping"
        icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq, 0, 64, 1, 0, sip, dip)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        sock.send(tagged(peer, mac, vlan, ETH_P_IP, ip + icmp))
        echo = receive(sock, vlan, lambda t, p: t == ETH_P_IP and len(p) >= 28 and p[9] == 1 and p[12:16] == dip
                       and p[20] == 0 and struct.unpack("!H", p[26:28])[0] == seq, time.monotonic() + 2)
        replies += echo is not None
    print("VLAN %d: %d/%d echo replies from %s" % (vlan, replies, count, dst_ip))
    return 0 if replies == count else 1


sys.exit(main())

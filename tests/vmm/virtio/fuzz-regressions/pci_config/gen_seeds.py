#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz_pci_config next to this script.

Each seed is a setup byte (bit 0: no ioeventfd) and steps of fuzz_pci_config.c's
run_steps: an op byte (op % 22), a device byte (% 3: disk A, disk B, NIC C), then
the op's own bytes.
Run it again after changing the step encoding in fuzz_pci_config.c."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
A, B, C = 0, 1, 2
COMMON_IDX = {'dfselect': 0, 'df': 1, 'gfselect': 2, 'gf': 3, 'msix': 4, 'numq': 5,
              'status': 6, 'cfggen': 7, 'q_select': 8, 'q_size': 9, 'q_msix': 10,
              'q_enable': 11, 'q_noff': 12, 'q_desclo': 13, 'q_deschi': 14,
              'q_availlo': 15, 'q_availhi': 16, 'q_usedlo': 17, 'q_usedhi': 18}
STATUS_IDX = {0: 0, 1: 1, 3: 2, 0xb: 3, 0xf: 4, 4: 5, 0xc: 6, 0x80: 7, 0x40: 8, 0xff: 9}


def u16(v): return struct.pack('<H', v & 0xffff)
def u32(v): return struct.pack('<I', v & 0xffffffff)


def raw_value(v):
    """biased_value(): a random (k >= 44) 32- or 64-bit value."""
    if v >> 32:
        return bytes([45]) + u32(v) + u32(v >> 32)
    return bytes([44]) + u32(v)


def op(n, dev, *parts):
    return bytes([n, dev]) + b''.join(p if isinstance(p, bytes) else bytes([p]) for p in parts)


def conf_addr(dev, a): return op(0, dev, 0, u32(a))
def conf_data(dev, port, width_log2, val, write):
    return op(1, dev, 0x80 | (0x40 if write else 0) | width_log2, port, u32(val))
def cfg_write(dev, kind, sub, width_log2, val, host=False):
    return op(2, dev, kind, (0x80 if host else 0) | width_log2, sub, u32(val))
def bar_sizing(dev, bar, how): return op(4, dev, bar, how)
def bar_move(dev, k, extra=b'', upper=False): return op(5, dev, 1 if upper else 0, k, extra)
def command(dev, v, width1=False): return op(6, dev, u16(v), 1 if width1 else 0)
def cap_walk(dev): return op(7, dev)
def msix_ctl(dev, v): return op(8, dev, 0, u16(v), 0)
def msix_bar(dev, pba, off, width_log2, write, val):
    return op(9, dev, (0x80 if pba else 0) | (0x40 if write else 0) | width_log2, off, raw_value(val))
def common_w(dev, reg, width_log2, val):
    return op(10, dev, width_log2, COMMON_IDX[reg], raw_value(val))
def common_r(dev, off, width_log2): return op(11, dev, width_log2, off)
def status(dev, v): return op(12, dev, STATUS_IDX[v])
def notify(dev, off, width_log2, val): return op(14, dev, width_log2, off, u16(val))
def isr_read(dev): return op(15, dev, 0, 0, raw_value(0))
def devcfg(dev, off, width_log2, write, val):
    return op(15, dev, (1 << 2) | (0x40 if write else 0) | width_log2, off, raw_value(val))
def window(dev, k, *extra): return op(16, dev, k, *extra)
def bringup(dev, k, sectors): return op(17, dev, k, *sectors)
def bad_features(dev, which): return op(18, dev, which)
def msix_scenario(dev, how, data): return op(19, dev, how, u32(data))
def reset_mid(dev, n, how): return op(20, dev, n, how)
def live_request(dev, read, sector): return op(21, dev, read, sector)


def seed_bringup():
    s = [bringup(A, 0x10 | 4, [0, 1]), bringup(B, 0x28 | 2, [3, 5]), cap_walk(A), cap_walk(B),
         live_request(A, 1, 2), live_request(B, 0, 0), bringup(A, 0x20 | 0, [7, 7, 7]),
         live_request(A, 0, 0), bringup(C, 4, []), cap_walk(C), bringup(C, 2, []),
         common_w(C, 'q_select', 1, 1), common_r(C, 0x18, 1), common_r(C, 0x1c, 1),
         common_r(C, 0x1e, 1), notify(C, 4, 1, 1), notify(C, 0, 1, 0), notify(C, 8, 1, 2)]
    return bytes([0]) + b''.join(s)


def seed_bar_sizing():
    s = []
    for dev in (A, B, C):
        for bar in range(6):
            for how in (0, 1, 2, 3):
                s.append(bar_sizing(dev, bar, how))
    s += [bar_sizing(A, 0, 5),              # A onto B: refused, left unmapped
          live_request(B, 1, 1),
          bar_move(A, 0), bar_move(B, 0),   # B onto A
          bar_move(B, 1), bar_move(A, 3),   # A at the window's end
          bar_move(B, 4), bar_move(B, 5), bar_move(B, 6), bar_move(B, 7),
          bar_move(A, 8, u16(0x1234)), bar_move(A, 9, u32(0xe0010000)),
          bar_move(B, 2, upper=True),
          command(A, 0), command(A, 2), command(B, 0xffff), command(B, 0, True),
          command(B, 6), bar_sizing(C, 0, 5), bar_move(C, 1), bar_move(A, 0), command(C, 0),
          bar_move(C, 0), command(C, 2), bringup(A, 4, [1]), bringup(B, 4, [2]), bringup(C, 4, [])]
    return bytes([0]) + b''.join(s)


def seed_msix():
    s = [bringup(A, 4, [0])]
    for pba in (False, True):
        for off in range(0, 40 if not pba else 12):
            for w in range(4):
                s.append(msix_bar(A, pba, off, w, False, 0))
    for v in (0x8000, 0xc000, 0x4000, 0, 0xffff):
        s.append(msix_ctl(A, v))
    s += [msix_bar(A, False, 0, 2, True, 0xfee00000), msix_bar(A, False, 8, 2, True, 0x41),
          msix_bar(A, False, 12, 2, True, 0), msix_ctl(A, 0x8000),
          msix_bar(A, False, 12, 3, True, 0xffffffffffffffff), msix_bar(A, True, 0, 3, True, 0xff),
          msix_bar(A, False, 60, 3, True, 0x1122334455667788)]
    for how in (0, 1, 2, 3, 4, 5, 0x13, 0x26):
        s.append(msix_scenario(A, how, 0x4041 + how))
        s.append(msix_scenario(B, how, 0x5051 + how))
    return bytes([1]) + b''.join(s)


def seed_reset():
    s = [bringup(A, 4, [0]), bringup(B, 4, [0]), bringup(C, 4, []), status(C, 0),
         common_w(C, 'q_select', 1, 1), common_w(C, 'q_size', 1, 7), common_w(C, 'q_enable', 1, 1),
         status(C, 0xf), status(C, 0), bad_features(C, 0), bad_features(C, 9)]
    for n, how in ((3, 0), (7, 1), (5, 2), (1, 3), (6, 4), (2, 7)):
        s.append(reset_mid(B, n, how))
        s.append(reset_mid(A, n, how))
    # odd transport sequences, then the device must still come up
    s += [status(A, 0), common_w(A, 'q_select', 1, 5), common_r(A, 0x18, 1),
          common_w(A, 'q_select', 1, 0xffff), common_w(A, 'q_size', 1, 0),
          common_w(A, 'q_select', 1, 0), common_w(A, 'q_size', 1, 3),
          common_w(A, 'q_enable', 1, 1),         # queue enable before any status bit
          common_w(A, 'q_size', 1, 0x8000), common_w(A, 'q_desclo', 3, 0x100000),
          common_w(A, 'q_enable', 1, 1), status(A, 1), status(A, 3), status(A, 0xf),
          common_w(A, 'q_size', 1, 16),          # after DRIVER_OK
          notify(A, 0, 1, 0), notify(A, 4, 1, 1), notify(A, 39, 3, 7), notify(A, 2, 0, 0),
          status(A, 0x40), status(A, 0xff), status(A, 0), status(A, 0xc),
          common_w(A, 'gfselect', 2, 0), common_w(A, 'gf', 2, 0xffffffff),
          common_w(A, 'gfselect', 2, 1), common_w(A, 'gf', 2, 0xffffffff),
          status(A, 0xb), common_r(A, 0x14, 0), status(A, 0),
          common_w(A, 'dfselect', 2, 7), common_r(A, 4, 2),
          common_w(A, 'msix', 1, 9), common_w(A, 'q_msix', 1, 1),
          devcfg(A, 0, 3, True, 0xffffffffffffffff), devcfg(A, 20, 2, True, 1),
          devcfg(A, 60, 3, False, 0), isr_read(A),
          bad_features(A, 0), bad_features(A, 1), bad_features(B, 6), bad_features(B, 14),
          bringup(A, 4, [1]), bringup(B, 4, [1])]
    return bytes([0]) + b''.join(s)


def seed_conf1():
    s = []
    for a in (0, 0x80000000, 0x80000800, 0x80001000, 0x80001800, 0x8000f800, 0x80000900,
              0x80010800, 0x7fffffff, 0xffffffff, 0x80000803, 0x80000ffc, 0x81000800):
        s.append(conf_addr(A, a))
        for port in range(8):
            for w in range(3):
                s.append(conf_data(A, port, w, 0, False))
        s.append(conf_data(A, 4, 2, 0xffffffff, True))
        s.append(conf_data(A, 5, 0, 0, True))
        s.append(conf_data(A, 6, 1, 0x1234, True))
    s += [cfg_write(A, 4, 0x34, 2, 0), cfg_write(A, 4, 0x0, 2, 0), cfg_write(B, 5, 0xff, 0, 0xff),
          cfg_write(A, 0, 0, 2, 0xffffffff, host=True), cfg_write(A, 2, 0, 2, 0xffffffff),
          cfg_write(B, 2, 2, 1, 0xc000), cfg_write(C, 2, 2, 1, 0xc000), cap_walk(A), cap_walk(B),
          cap_walk(C), conf_addr(A, 0x80001800), conf_data(A, 4, 2, 0, False),
          conf_addr(A, 0x80001900), conf_data(A, 4, 2, 0, False), bringup(A, 4, [0])]
    return bytes([0]) + b''.join(s)


def seed_window():
    s = [bringup(A, 4, [0])]
    for k in range(0, 0x10):       # reads at the chosen offsets and widths
        s.append(window(A, k))
    s += [window(C, 0), window(C, 4), window(C, 0x10 | 2, raw_value(0)),
          window(B, 0x18 | 0, raw_value(0)),     # write numq: ignored
          window(A, 0x10 | 2, raw_value(0)),     # status 0 through the window: a reset
          window(A, 0x80, u32(0x7ffc)), window(A, 0x80 | 0x10, u32(0x3000), raw_value(0)),
          window(A, 0x40, u32(3)), window(A, 0x40 | 0x80, u32(0x7fff), u32(2)),
          window(A, 0x20, 1), window(A, 0x20 | 0x10, 0xff, raw_value(1)),
          bringup(A, 4, [2]), live_request(A, 1, 3)]
    return bytes([0]) + b''.join(s)


SEEDS = {'bringup': seed_bringup, 'bar_sizing': seed_bar_sizing, 'msix': seed_msix,
         'reset_mid_operation': seed_reset, 'conf1_odd': seed_conf1, 'pci_cfg_window': seed_window}

if __name__ == '__main__':
    for name, fn in SEEDS.items():
        with open(os.path.join(HERE, 'seed-' + name), 'wb') as f:
            f.write(fn())

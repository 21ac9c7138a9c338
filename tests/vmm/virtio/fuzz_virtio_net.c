/* libFuzzer target for the virtio-net device (vmm/virtio_net.c) through the
 * virtio-pci transport and the virtqueue, against the fake VM and test
 * driver (no KVM).  The harness plays both the guest driver and the
 * vdfs-switch: the device connects to the harness's SOCK_SEQPACKET
 * listening socket, exactly as it connects to vdfs-switch, and gets an ok
 * hello-ack (mtu 1500).
 *
 * The input is a queue size, event-idx on or off, and a script of driver
 * and switch actions: RAM and descriptor writes, RX buffer chains and TX
 * frame chains (well-formed and malformed: loops, links and heads out of
 * range, addresses outside RAM or wrapping, the wrong direction, short
 * headers, runts and oversize frames), avail entries and indices, kicks,
 * resets, any access to BAR0, and frames sent by the switch (runts up to
 * larger than any MTU).  After each step the harness waits, by polling the
 * kick eventfds, the rings and the socket (never by sleeping), until the
 * device has nothing left it can do, and checks:
 *
 *   - every frame the device sent equals the bytes of the next sendable TX
 *     chain in avail order minus the 12-byte header (so never longer than
 *     the chain), and no sendable chain was completed without its frame;
 *   - every RX used entry is the next available head, holds the next frame
 *     the switch sent that fits it (header zero but num_buffers = 1), with
 *     used length = 12 + frame length; frames skipped were too big for it;
 *   - the device wrote guest RAM only inside RX buffers the guest made
 *     available, within the used length;
 *   - a broken chain leaves the device in NEEDS_RESET and the port up;
 *   - the device settles within 10 s of each step (else a hang).
 *
 * Guest RAM is one heap buffer, so AddressSanitizer catches any access
 * outside it.  A violation abort()s. */
#include <errno.h>
#include <stddef.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/sockios.h>
#include <time.h>
#include <unistd.h>

#include "../../../vswitch/protocol.h"
#include "fake_vm.h"
#include "fuzz_input.h"
#include "pci.h"
#include "test_driver.h"
#include "virtio_net.h"
#include "virtio_pci.h"
#include "virtqueue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NET_DEVICE_ID 0x1041
#define F(bit) (1ull << (bit))
#define RXQ 0
#define TXQ 1
#define HDR 12
#define MTU 1500
#define TX_FRAME_MAX (MTU + VDSW_FRAME_OVERHEAD)
#define DEVICE_FRAME_MAX (VDSW_MAX_MTU + VDSW_FRAME_OVERHEAD) /* larger ones are dropped */
#define RING_BASE 0x100000ull /* rx rings, tx rings at +0x10000 */
#define RX_WINDOW 0x200000ull
#define RX_WINDOW_LEN 0x20000ull
#define TX_WINDOW 0x180000ull /* below RX: RX buffers reach only upwards */
#define TX_WINDOW_LEN 0x10000ull
#define RX_TAIL_LEN 0x1000ull /* the last bytes of RAM, RX buffers only */
#define DRAIN_BASE 0x800000ull
#define DRAIN_BUF 0x2400u
#define MAX_STEPS 128
#define MAX_PENDING_FRAMES 48
#define MAX_SEGS 300
#define HANG_SECONDS 10

static FILE *report;

#define CHECK(cond) FUZZ_CHECK("fuzz_virtio_net", report, cond)

/* A frame the switch sent: its bytes are a function of (len, seed). */
struct sent_frame {
    uint32_t len;
    uint8_t seed;
};

static uint8_t frame_byte(const struct sent_frame *f, uint32_t i)
{
    return (uint8_t)(f->seed + i * 7u + (i >> 8));
}

struct seg {
    uint64_t gpa;
    uint32_t len;
    bool writable;
};

/* The chain at `head` as the device must see it (virtqueue_pop's rules). */
struct walk {
    bool valid;
    unsigned nseg, nin, nout;
    uint64_t in_len, out_len;
    struct seg seg[MAX_SEGS];
};

struct rig {
    struct fake_vm *vm;
    struct pci_bus *pci;
    int nic;
    char dir[64], sock_path[96];
    int listen_fd, conn;
    unsigned slot;
    uint64_t bar;
};

struct harness {
    struct rig *r;
    struct tdrv t;
    uint16_t qsize;
    uint64_t features;
    bool transport_fuzzed; /* BAR0 written since the last setup: checks off */
    bool fifo_unknown;     /* frames may have been consumed unseen */
    bool slow_switch;      /* the next wait reads frames only once the device is done */
    bool tx_kicked;        /* TX kicked (or activated) since it last completed everything */
    uint16_t rx_used_seen, tx_used_seen, tx_match_pos;
    uint16_t rx_used, tx_used; /* as read by the last wait_idle */
    struct sent_frame fifo[MAX_PENDING_FRAMES];
    unsigned fifo_head, fifo_len;
    uint8_t *got;          /* frames the device sent, back to back */
    uint32_t got_len[512];
    unsigned ngot;
    size_t got_bytes;
    uint16_t next_desc[2];
    uint8_t shadow_rx[RX_WINDOW_LEN], shadow_tail[RX_TAIL_LEN];
    struct walk w;
};

static struct timespec step_start;

static void hang_check(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    CHECK(t.tv_sec - step_start.tv_sec < HANG_SECONDS); /* the device hung */
}

static bool fd_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1;
}

/* ---- guest memory ---- */

static uint8_t *ram(struct harness *h)
{
    return h->r->vm->ram;
}

static uint64_t ring_of(unsigned q)
{
    return RING_BASE + 0x10000ull * q;
}

static uint16_t avail_idx(struct harness *h, unsigned q)
{
    uint16_t v;
    memcpy(&v, ram(h) + ring_of(q) + 0x1000 + 2, 2);
    return v;
}

static uint16_t avail_entry(struct harness *h, unsigned q, uint16_t pos)
{
    uint16_t v;
    memcpy(&v, ram(h) + ring_of(q) + 0x1000 + 4 + 2u * (pos & (h->qsize - 1)), 2);
    return v;
}

static void snapshot(struct harness *h)
{
    memcpy(h->shadow_rx, ram(h) + RX_WINDOW, RX_WINDOW_LEN);
    memcpy(h->shadow_tail, ram(h) + FAKE_RAM_SIZE - RX_TAIL_LEN, RX_TAIL_LEN);
}

/* Harness writes go to the shadow too, so that it only differs from RAM
 * where the device wrote. */
static void ram_write(struct harness *h, uint64_t gpa, const void *src, size_t len)
{
    if (gpa > FAKE_RAM_SIZE || len > FAKE_RAM_SIZE - gpa)
        return;
    memcpy(ram(h) + gpa, src, len);
    for (size_t i = 0; i < len; i++) {
        uint64_t a = gpa + i;
        if (a >= RX_WINDOW && a < RX_WINDOW + RX_WINDOW_LEN)
            h->shadow_rx[a - RX_WINDOW] = ((const uint8_t *)src)[i];
        else if (a >= FAKE_RAM_SIZE - RX_TAIL_LEN)
            h->shadow_tail[a - (FAKE_RAM_SIZE - RX_TAIL_LEN)] = ((const uint8_t *)src)[i];
    }
}

static void walk_chain(struct harness *h, unsigned q, uint16_t head, struct walk *w)
{
    memset(w, 0, offsetof(struct walk, seg));
    if (head >= h->qsize)
        return;
    uint16_t i = head;
    for (unsigned hops = 1;; hops++) {
        if (hops > h->qsize)
            return;
        const uint8_t *d = ram(h) + ring_of(q) + 16u * i;
        uint64_t addr;
        uint32_t len;
        uint16_t flags, next;
        memcpy(&addr, d, 8);
        memcpy(&len, d + 8, 4);
        memcpy(&flags, d + 12, 2);
        memcpy(&next, d + 14, 2);
        if (flags & VIRTQ_DESC_F_INDIRECT)
            return;
        bool writable = flags & VIRTQ_DESC_F_WRITE;
        if (!writable && w->nin)
            return;
        if (len) {
            if (addr + len < addr || addr > FAKE_RAM_SIZE || len > FAKE_RAM_SIZE - addr)
                return;
            CHECK(w->nseg < MAX_SEGS);
            w->seg[w->nseg++] = (struct seg){addr, len, writable};
            if (writable) {
                w->nin++;
                w->in_len += len;
            } else {
                w->nout++;
                w->out_len += len;
            }
        }
        if (!(flags & VIRTQ_DESC_F_NEXT))
            break;
        if (next >= h->qsize)
            return;
        i = next;
    }
    w->valid = true;
}

/* Byte `off` of a walked chain's data (readable and writable segments in
 * order); NULL past its end. */
static uint8_t *chain_byte(struct harness *h, const struct walk *w, uint64_t off)
{
    for (unsigned s = 0; s < w->nseg; s++) {
        if (off < w->seg[s].len)
            return ram(h) + w->seg[s].gpa + off;
        off -= w->seg[s].len;
    }
    return NULL;
}

/* ---- the switch side ---- */

static void drain_conn(struct harness *h)
{
    for (;;) {
        uint8_t *dst = h->got + h->got_bytes;
        ssize_t n = recv(h->r->conn, dst, 16384, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
            CHECK(errno == EAGAIN || errno == EINTR);
            return;
        }
        CHECK(n > 0 && n <= TX_FRAME_MAX); /* the device sends only frames it validated */
        CHECK(h->ngot < sizeof(h->got_len) / sizeof(h->got_len[0]));
        h->got_len[h->ngot++] = (uint32_t)n;
        h->got_bytes += (size_t)n;
    }
}

static int conn_unread_bytes(struct harness *h)
{
    int n = 0;
    CHECK(ioctl(h->r->conn, SIOCOUTQ, &n) == 0);
    return n;
}

/* ---- waiting ---- */

static bool any_kick_pending(struct harness *h)
{
    struct fake_vm *vm = h->r->vm;
    for (unsigned i = 0; i < vm->nioeventfds; i++)
        if (fd_readable(vm->ioeventfds[i].efd, 0))
            return true;
    return false;
}

/* Waits until the device can make no more progress on its own: no kick
 * pending, and (when its queues are live) RX is out of frames or out of
 * buffers and, if TX was kicked, TX has completed every available chain.
 * The device is kicked again meanwhile: RX because a guest that added
 * buffers without kicking may have left it waiting for one (a polling
 * driver would kick), TX because it may be waiting for the socket. */
static void wait_idle(struct harness *h)
{
    for (;;) {
        if (!h->slow_switch)
            drain_conn(h);
        hang_check();
        if (any_kick_pending(h)) {
            sched_yield();
            continue;
        }
        /* Read before the lock: a pass that received the last frame has
         * published its used entries by the time the lock is ours. */
        int unread = conn_unread_bytes(h);
        uint8_t st = tdrv_status(&h->t); /* takes the device lock: a pass in progress ends */
        /* Frames are sent before their chains are published: draining
         * after reading the used indices gets every published chain's. */
        h->rx_used = tdrv_used_idx(&h->t, RXQ);
        h->tx_used = tdrv_used_idx(&h->t, TXQ);
        /* A slow switch reads nothing until the device's pass is over, so
         * that the pass can fill the socket and wait for EPOLLOUT. */
        h->slow_switch = false;
        drain_conn(h);
        if (any_kick_pending(h))
            continue;
        if (h->transport_fuzzed)
            return; /* queues may be half set up: nothing more can be promised */
        if ((st & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET)) != VIRTIO_STATUS_DRIVER_OK)
            return;
        bool rx_done = unread == 0 || avail_idx(h, RXQ) == h->rx_used;
        bool tx_done = !h->tx_kicked || avail_idx(h, TXQ) == h->tx_used;
        if (rx_done && tx_done) {
            h->tx_kicked = false;
            return;
        }
        if (!rx_done)
            tdrv_kick(&h->t, RXQ);
        if (!tx_done)
            tdrv_kick(&h->t, TXQ);
    }
}

/* ---- checks ---- */

static bool tx_droppable(const struct walk *w)
{
    uint64_t frame = w->out_len >= HDR ? w->out_len - HDR : 0;
    return w->out_len < HDR || frame < 14 || frame > TX_FRAME_MAX;
}

static void check_tx(struct harness *h, bool broken)
{
    uint16_t used = h->tx_used;
    uint16_t fresh = (uint16_t)(used - h->tx_used_seen);
    CHECK(fresh <= h->qsize);
    for (uint16_t k = 0; k < fresh; k++) {
        uint32_t id, len;
        tdrv_used_elem(&h->t, TXQ, (uint16_t)(h->tx_used_seen + k), &id, &len);
        CHECK(id == avail_entry(h, TXQ, (uint16_t)(h->tx_used_seen + k)));
        CHECK(len == 0);
    }
    uint16_t avail = avail_idx(h, TXQ);
    size_t off = 0;
    for (unsigned f = 0; f < h->ngot; f++) {
        const uint8_t *frame = h->got + off;
        off += h->got_len[f];
        for (;;) {
            /* a frame must come from an available chain, in order */
            CHECK(h->tx_match_pos != avail);
            CHECK((uint16_t)(avail - h->tx_match_pos) <= h->qsize);
            struct walk *w = &h->w;
            walk_chain(h, TXQ, avail_entry(h, TXQ, h->tx_match_pos), w);
            CHECK(w->valid && w->nin == 0); /* else the device had to stop here */
            h->tx_match_pos++;
            if (tx_droppable(w))
                continue;
            CHECK(w->out_len - HDR == h->got_len[f]);
            for (uint32_t i = 0; i < h->got_len[f]; i++)
                CHECK(*chain_byte(h, w, HDR + i) == frame[i]);
            break;
        }
    }
    /* Chains completed after the last frame must all have been dropped. */
    while (!broken && (int16_t)(used - h->tx_match_pos) > 0) {
        struct walk *w = &h->w;
        walk_chain(h, TXQ, avail_entry(h, TXQ, h->tx_match_pos), w);
        CHECK(w->valid && w->nin == 0 && tx_droppable(w));
        h->tx_match_pos++;
    }
    h->tx_used_seen = used;
}

static bool fits(const struct sent_frame *f, const struct walk *w)
{
    return f->len <= DEVICE_FRAME_MAX && (uint64_t)f->len + HDR <= w->in_len;
}

static struct sent_frame *fifo_front(struct harness *h)
{
    return h->fifo_len ? &h->fifo[h->fifo_head] : NULL;
}

static void fifo_pop(struct harness *h)
{
    h->fifo_head = (h->fifo_head + 1) % MAX_PENDING_FRAMES;
    h->fifo_len--;
}

/* Marks [gpa, gpa+len) of RAM as written legitimately: the shadow takes
 * RAM's bytes there, so what still differs afterwards was written
 * outside. */
static void allow_written(struct harness *h, const struct walk *w, uint64_t len)
{
    for (unsigned s = 0; s < w->nseg && len; s++) {
        uint64_t n = w->seg[s].len < len ? w->seg[s].len : len;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t a = w->seg[s].gpa + i;
            if (a >= RX_WINDOW && a < RX_WINDOW + RX_WINDOW_LEN)
                h->shadow_rx[a - RX_WINDOW] = ram(h)[a];
            else if (a >= FAKE_RAM_SIZE - RX_TAIL_LEN)
                h->shadow_tail[a - (FAKE_RAM_SIZE - RX_TAIL_LEN)] = ram(h)[a];
        }
        len -= n;
    }
}

/* The device's writes of one settle, in order: a guest may post buffers
 * that overlap (or a chain whose segments do), and then only the last
 * write of a byte can be checked. */
#define MAX_WRITES 4096
struct write_range {
    uint64_t gpa, len;
};
static struct write_range writes[MAX_WRITES];
static unsigned nwrites;
static bool writes_overflowed;

static void note_writes(const struct walk *w, uint64_t len)
{
    for (unsigned s = 0; s < w->nseg && len; s++) {
        uint64_t n = w->seg[s].len < len ? w->seg[s].len : len;
        if (nwrites == MAX_WRITES)
            writes_overflowed = true;
        else
            writes[nwrites++] = (struct write_range){w->seg[s].gpa, n};
        len -= n;
    }
}

/* Whether a write after number `order` covers part of [gpa, gpa+len). */
static bool overwritten_later(unsigned order, uint64_t gpa, uint64_t len)
{
    if (writes_overflowed)
        return true;
    for (unsigned j = order + 1; j < nwrites; j++)
        if (writes[j].gpa < gpa + len && gpa < writes[j].gpa + writes[j].len)
            return true;
    return false;
}

/* Checks that the chain holds hdr + frame, where no later write hid it. */
static void check_rx_bytes(struct harness *h, const struct walk *w, unsigned order,
                           const struct sent_frame *f)
{
    static const uint8_t hdr[HDR] = {[10] = 1};
    uint64_t off = 0, total = HDR + (uint64_t)f->len;
    for (unsigned s = 0; s < w->nseg && off < total; s++, order++) {
        uint64_t n = w->seg[s].len < total - off ? w->seg[s].len : total - off;
        if (!overwritten_later(order, w->seg[s].gpa, n))
            for (uint64_t i = 0; i < n; i++) {
                uint64_t at = off + i;
                uint8_t want = at < HDR ? hdr[at] : frame_byte(f, (uint32_t)(at - HDR));
                CHECK(ram(h)[w->seg[s].gpa + i] == want);
            }
        off += n;
    }
}

static void check_rx(struct harness *h, bool broken)
{
    uint16_t used = h->rx_used;
    uint16_t fresh = (uint16_t)(used - h->rx_used_seen);
    uint16_t avail = avail_idx(h, RXQ);
    CHECK(fresh <= h->qsize);
    struct walk *w = &h->w;
    nwrites = 0;
    writes_overflowed = false;
    for (uint16_t k = 0; k < fresh; k++) {
        uint16_t pos = (uint16_t)(h->rx_used_seen + k);
        uint32_t id, len;
        tdrv_used_elem(&h->t, RXQ, pos, &id, &len);
        CHECK(id == avail_entry(h, RXQ, pos));
        walk_chain(h, RXQ, (uint16_t)id, w);
        CHECK(w->valid && w->nout == 0);
        CHECK(len <= w->in_len);
        allow_written(h, w, len);
        note_writes(w, len);
    }
    /* A broken queue may have written frames into buffers it pushed but
     * never published, over the published ones: only where writes went
     * can be checked then. */
    unsigned order = 0;
    for (uint16_t k = 0; k < fresh && !h->fifo_unknown && !broken; k++) {
        uint16_t pos = (uint16_t)(h->rx_used_seen + k);
        uint32_t id, len;
        tdrv_used_elem(&h->t, RXQ, pos, &id, &len);
        walk_chain(h, RXQ, (uint16_t)id, w);
        const struct sent_frame *f;
        while ((f = fifo_front(h)) && !fits(f, w))
            fifo_pop(h); /* dropped as too big for this very buffer */
        CHECK(f); /* a frame the switch never sent */
        CHECK(len == HDR + f->len);
        check_rx_bytes(h, w, order, f);
        for (uint64_t left = len, s = 0; s < w->nseg && left; s++, order++)
            left -= w->seg[s].len < left ? w->seg[s].len : left;
        fifo_pop(h);
    }
    h->rx_used_seen = used;
    if (broken) {
        /* Pushed but unpublished entries may hold frames: any available
         * buffer may have been written, and frames went unseen. */
        h->fifo_unknown = true;
        uint16_t pending = (uint16_t)(avail - used);
        for (uint16_t k = 0; pending <= h->qsize && k < pending; k++) {
            walk_chain(h, RXQ, avail_entry(h, RXQ, (uint16_t)(used + k)), w);
            if (w->valid && w->nout == 0)
                allow_written(h, w, w->in_len);
        }
    } else if (!h->fifo_unknown && h->fifo_len && conn_unread_bytes(h) == 0) {
        /* The socket is empty: the frames left were dropped against the
         * next available buffer. */
        CHECK(avail != used && (uint16_t)(avail - used) <= h->qsize);
        walk_chain(h, RXQ, avail_entry(h, RXQ, used), w);
        CHECK(w->valid && w->nout == 0);
        while (fifo_front(h)) {
            CHECK(!fits(fifo_front(h), w));
            fifo_pop(h);
        }
    }
    CHECK(memcmp(h->shadow_rx, ram(h) + RX_WINDOW, RX_WINDOW_LEN) == 0);
    CHECK(memcmp(h->shadow_tail, ram(h) + FAKE_RAM_SIZE - RX_TAIL_LEN, RX_TAIL_LEN) == 0);
}

static void settle_and_check(struct harness *h)
{
    h->ngot = 0;
    h->got_bytes = 0;
    wait_idle(h);
    if (h->transport_fuzzed) {
        h->fifo_unknown = true;
        snapshot(h);
        return;
    }
    uint8_t st = tdrv_status(&h->t);
    bool broken = st & VIRTIO_STATUS_NEEDS_RESET;
    if (!(st & VIRTIO_STATUS_DRIVER_OK)) {
        CHECK(h->ngot == 0);
        CHECK(memcmp(h->shadow_rx, ram(h) + RX_WINDOW, RX_WINDOW_LEN) == 0);
        return;
    }
    check_tx(h, broken);
    check_rx(h, broken);
}

/* ---- the driver side ---- */

static void driver_setup(struct harness *h)
{
    struct tdrv *t = &h->t;
    tdrv_reset(t);
    for (unsigned q = 0; q < 2; q++) {
        memset(ram(h) + ring_of(q), 0, 0x3000);
        t->q[q].avail_idx = 0;
        h->next_desc[q] = 0;
    }
    drain_conn(h);
    h->ngot = 0;
    h->got_bytes = 0;
    h->rx_used_seen = h->tx_used_seen = h->tx_match_pos = 0;
    h->transport_fuzzed = false;
    for (unsigned q = 0; q < 2; q++) {
        t->q[q].size = h->qsize;
        t->q[q].desc = ring_of(q);
        t->q[q].avail = ring_of(q) + 0x1000;
        t->q[q].used = ring_of(q) + 0x2000;
    }
    /* Resets again, harmlessly: the device is idle by now. */
    CHECK(tdrv_restart(t, h->features) == (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                           VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK));
    h->tx_kicked = true; /* DRIVER_OK kicks both queues */
}

/* Brings the device to a known state: frames still in the socket (from a
 * fuzzed transport, a broken queue or a previous input) are received into
 * big buffers and thrown away, then the driver sets up afresh. */
static void resync(struct harness *h)
{
    clock_gettime(CLOCK_MONOTONIC, &step_start);
    uint16_t qsize = h->qsize;
    h->qsize = 64;
    while (conn_unread_bytes(h) > 0) {
        driver_setup(h);
        for (uint16_t k = 0; k < 64; k++) {
            tdrv_desc(&h->t, RXQ, k, DRAIN_BASE + (uint64_t)DRAIN_BUF * k, DRAIN_BUF,
                      VIRTQ_DESC_F_WRITE, 0);
            tdrv_publish(&h->t, RXQ, k);
        }
        tdrv_kick(&h->t, RXQ);
        while (conn_unread_bytes(h) > 0 && tdrv_used_idx(&h->t, RXQ) != 64) {
            hang_check();
            sched_yield();
        }
    }
    h->qsize = qsize;
    h->fifo_len = h->fifo_head = 0;
    h->fifo_unknown = false;
    driver_setup(h);
    wait_idle(h); /* DRIVER_OK kicks both queues once */
    drain_conn(h);
    snapshot(h);
}

/* Mostly the queue's own window; also the end of RAM (RX only), past it
 * and addresses where addr + len wraps. */
static uint64_t get_gpa(struct input *in, unsigned q)
{
    uint16_t low = get16(in);
    switch (get8(in) & 7) {
    case 6:
        return q == RXQ ? FAKE_RAM_SIZE - (low & (RX_TAIL_LEN - 1)) : FAKE_RAM_SIZE + (low & 0xff);
    case 7:
        return UINT64_MAX - low;
    default:
        return (q == RXQ ? RX_WINDOW + low % RX_WINDOW_LEN : TX_WINDOW + low % TX_WINDOW_LEN);
    }
}

static void desc_write(struct harness *h, unsigned q, uint16_t idx, uint64_t addr, uint32_t len,
                       uint16_t flags, uint16_t next)
{
    tdrv_desc(&h->t, q, (uint16_t)(idx % h->qsize), addr, len, flags, (uint16_t)(next % h->qsize));
}

static uint32_t get_len(struct input *in)
{
    uint8_t sz = get8(in);
    switch (sz >> 5) {
    case 0:
        return sz & 0x1f; /* tiny */
    case 1:
        return HDR;
    case 2:
        return 60 + get8(in);
    case 3:
        return 1000 + 4u * get8(in); /* around the MTU */
    case 4:
        return TX_FRAME_MAX - 2 + (sz & 3);
    case 5:
        return DEVICE_FRAME_MAX - 2 + (sz & 3);
    case 6:
        return get16(in);
    default:
        return sz & 0x10 ? 0xffffffffu - (sz & 0xf) : (uint32_t)get16(in) << 8; /* overflowing */
    }
}

/* An RX buffer chain: `nseg` device-writable segments (bit 7 of the shape
 * makes one readable: the wrong direction). */
static void rx_chain(struct harness *h, struct input *in)
{
    uint8_t shape = get8(in);
    uint16_t first = shape & 0x08 ? h->next_desc[RXQ] : get8(in);
    unsigned nseg = 1 + shape % 4;
    uint16_t d = first;
    for (unsigned i = 0; i < nseg; i++) {
        uint32_t len = get_len(in);
        uint64_t addr = shape & 0x40 ? get_gpa(in, RXQ) : RX_WINDOW + 0x2800ull * (get8(in) % 12);
        uint16_t flags = VIRTQ_DESC_F_WRITE;
        if ((shape & 0x80) && i == nseg - 1)
            flags = 0;
        if (i + 1 < nseg)
            flags |= VIRTQ_DESC_F_NEXT;
        desc_write(h, RXQ, d, addr, len, flags, (uint16_t)(d + 1));
        d++;
    }
    h->next_desc[RXQ] = d;
    if (!(shape & 0x20))
        tdrv_publish(&h->t, RXQ, (uint16_t)(first % h->qsize));
}

/* A TX chain: a header (12 bytes unless the input says otherwise) and
 * frame segments filled with bytes from the input. */
static void tx_chain(struct harness *h, struct input *in)
{
    uint8_t shape = get8(in);
    uint16_t first = shape & 0x08 ? h->next_desc[TXQ] : get8(in);
    unsigned nseg = shape % 4;
    uint16_t d = first;
    uint64_t base = TX_WINDOW + 0x2000ull * (get8(in) % 7);
    uint32_t hdr_len = shape & 0x10 ? get8(in) % 16 : HDR;
    uint8_t hdr[16] = {0};
    ram_write(h, base, hdr, sizeof(hdr));
    desc_write(h, TXQ, d, base, hdr_len, nseg ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(d + 1));
    d++;
    uint64_t at = base + 16;
    uint8_t fill = get8(in);
    for (unsigned i = 0; i < nseg; i++) {
        uint32_t len = get_len(in);
        uint64_t addr = at;
        if (shape & 0x40) {
            addr = get_gpa(in, TXQ);
        } else if (len <= 0x1f00 && at + len <= TX_WINDOW + TX_WINDOW_LEN) {
            for (uint32_t k = 0; k < len; k++)
                ram(h)[at + k] = (uint8_t)(fill + k * 13u);
            at += len;
        }
        uint16_t flags = i + 1 < nseg ? VIRTQ_DESC_F_NEXT : 0;
        if ((shape & 0x80) && i == nseg - 1)
            flags |= VIRTQ_DESC_F_WRITE; /* the wrong direction */
        desc_write(h, TXQ, d, addr, len, flags, (uint16_t)(d + 1));
        d++;
    }
    h->next_desc[TXQ] = d;
    if (!(shape & 0x20))
        tdrv_publish(&h->t, TXQ, (uint16_t)(first % h->qsize));
}

static void switch_sends(struct harness *h, struct input *in)
{
    unsigned n = 1 + get8(in) % 4;
    static uint8_t buf[DEVICE_FRAME_MAX + 64];
    for (unsigned i = 0; i < n && h->fifo_len < MAX_PENDING_FRAMES; i++) {
        uint32_t len = get_len(in);
        if (len == 0 || len > sizeof(buf))
            len = 1 + len % sizeof(buf); /* the switch never sends empty messages */
        struct sent_frame f = {.len = len, .seed = get8(in)};
        for (uint32_t k = 0; k < len; k++)
            buf[k] = frame_byte(&f, k);
        ssize_t sent = send(h->r->conn, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent < 0) {
            CHECK(errno == EAGAIN || errno == ENOBUFS);
            break;
        }
        CHECK(sent == (ssize_t)len);
        h->fifo[(h->fifo_head + h->fifo_len) % MAX_PENDING_FRAMES] = f;
        h->fifo_len++;
    }
}

static void run_steps(struct harness *h, struct input *in)
{
    for (unsigned step = 0; step < MAX_STEPS && in->n; step++) {
        clock_gettime(CLOCK_MONOTONIC, &step_start);
        uint8_t op = get8(in);
        unsigned q = op >> 7;
        switch (op % 12) {
        case 0: { /* raw bytes */
            uint64_t gpa = get_gpa(in, q);
            uint8_t buf[32], len = get8(in) % 32;
            for (unsigned i = 0; i < len; i++)
                buf[i] = get8(in);
            ram_write(h, gpa, buf, len);
            break;
        }
        case 1: { /* raw descriptor */
            uint16_t idx = get8(in);
            uint64_t addr = get_gpa(in, q);
            uint32_t len = get_len(in);
            uint16_t flags = get8(in), next = get8(in);
            if (flags & 0x80)
                next = (uint16_t)(next | 0x100 | (flags & 0x40 ? 0xf000 : 0)); /* out of range */
            tdrv_desc(&h->t, q, (uint16_t)(idx % h->qsize), addr, len, flags & 7, next);
            break;
        }
        case 2:
        case 3:
            rx_chain(h, in);
            break;
        case 4:
        case 5:
            tx_chain(h, in);
            break;
        case 6: /* any head made available, in range or not */
            tdrv_publish(&h->t, q, get8(in) & 0x80 ? get16(in) : get8(in) % h->qsize);
            break;
        case 7: { /* avail idx, avail flags or used_event */
            uint16_t v = get16(in);
            uint8_t which = get8(in) % 3;
            if (which == 0)
                ram_write(h, ring_of(q) + 0x1000 + 2, &v, 2);
            else if (which == 1)
                ram_write(h, ring_of(q) + 0x1000, &v, 2);
            else
                tdrv_set_used_event(&h->t, q, v);
            break;
        }
        case 8:
            h->slow_switch = get8(in) & 1;
            h->tx_kicked |= q == TXQ;
            tdrv_kick(&h->t, q);
            break;
        case 9:
            switch_sends(h, in);
            break;
        case 10:
            if (get8(in) & 1) {
                if (h->fifo_unknown)
                    resync(h); /* so that RX is checked again */
                else
                    driver_setup(h);
            } else { /* reset only: the device must stay quiet */
                tdrv_reset(&h->t);
                for (unsigned k = 0; k < 2; k++)
                    h->t.q[k].avail_idx = 0;
                h->rx_used_seen = h->tx_used_seen = h->tx_match_pos = 0;
            }
            break;
        case 11: { /* a common configuration register, or any access to BAR0 */
            uint8_t off = get8(in) % VIRTIO_PCI_COMMON_LEN;
            uint8_t width = get8(in);
            unsigned len = 1u << (width % 3);
            uint32_t val = get32(in);
            if (width & 0x80) {
                uint64_t bar_off = get16(in) % VIRTIO_PCI_BAR_SIZE;
                len = 1u << (width % 4);
                if (width & 0x40)
                    fake_vm_write(h->r->vm, BUS_MMIO, h->t.bar + bar_off, val, len);
                else
                    (void)fake_vm_read(h->r->vm, BUS_MMIO, h->t.bar + bar_off, len);
                if (width & 0x40)
                    h->transport_fuzzed = true;
            } else if (off + len <= VIRTIO_PCI_COMMON_LEN) {
                tdrv_common_write(&h->t, off, val, len);
                h->transport_fuzzed = true;
            }
            break;
        }
        }
        settle_and_check(h);
    }
}

/* ---- the rig: one device, connected to the harness as its switch ---- */

static struct rig *rig_get(void)
{
    static struct rig r;
    if (r.vm)
        return &r;
    snprintf(r.dir, sizeof(r.dir), "/tmp/vdfs-netfuzz-XXXXXX");
    CHECK(mkdtemp(r.dir));
    snprintf(r.sock_path, sizeof(r.sock_path), "%s/sw0.sock", r.dir);
    r.listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", r.sock_path);
    CHECK(bind(r.listen_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(r.listen_fd, 1) == 0);
    r.vm = fake_vm_create(false);
    r.pci = pci_bus_create(&r.vm->svc);
    CHECK(r.pci);
    struct nic_config cfg = {.mac_set = true, .mac = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55}};
    snprintf(cfg.portgroup, sizeof(cfg.portgroup), "fuzz");
    snprintf(cfg.switch_socket, sizeof(cfg.switch_socket), "%s", r.sock_path);
    r.nic = virtio_net_create(r.pci, &r.vm->svc, &cfg);
    CHECK(r.nic >= 0);
    CHECK(fd_readable(r.listen_fd, HANG_SECONDS * 1000));
    r.conn = accept4(r.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    CHECK(r.conn >= 0);
    /* The port must never need a reconnection (checked after each input),
     * so the socket's name can go now: nothing is left behind in /tmp. */
    close(r.listen_fd);
    unlink(r.sock_path);
    rmdir(r.dir);
    uint8_t hello[VDSW_HELLO_SIZE];
    CHECK(fd_readable(r.conn, HANG_SECONDS * 1000));
    CHECK(recv(r.conn, hello, sizeof(hello), 0) == VDSW_HELLO_SIZE);
    uint8_t ack[VDSW_HELLO_SIZE] = {0};
    pci_put32(ack, VDSW_MAGIC);
    pci_put16(ack + 4, VDSW_VERSION);
    pci_put32(ack + 8, 1);
    pci_put16(ack + 12, MTU);
    CHECK(send(r.conn, ack, sizeof(ack), 0) == VDSW_HELLO_SIZE);
    struct virtio_net_stats st = {0};
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (virtio_net_get_stats(r.nic, &st) == 0 && !st.link_up) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        CHECK(t.tv_sec - t0.tv_sec < HANG_SECONDS);
        sched_yield();
    }
    int slot = tdrv_find(r.vm, NET_DEVICE_ID);
    CHECK(slot >= 0);
    r.slot = (unsigned)slot;
    r.bar = tdrv_cfg_read(r.vm, r.slot, PCI_BAR0, 4) & ~0xfull;
    return &r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The device logs guest errors on stderr: keep them out of the
     * fuzzer's output (sanitizer reports go to fd 2 directly). */
    static FILE *quiet;
    static struct harness *h;
    if (!report) {
        report = stderr;
        quiet = fopen("/dev/null", "w");
        h = calloc(1, sizeof(*h));
        if (!quiet || !h || !(h->got = malloc(600u << 10)))
            abort();
    }
    stderr = quiet;
    struct input in = {data, size};
    uint8_t setup = get8(&in);
    h->r = rig_get();
    h->qsize = (uint16_t)(1u << (1 + setup % 8));
    h->features = F(VIRTIO_F_VERSION_1) | F(5) | F(16);
    if (setup & 0x80)
        h->features |= F(VIRTIO_F_RING_EVENT_IDX);
    h->t.vm = h->r->vm;
    h->t.nq = 2;
    h->t.slot = h->r->slot;
    h->t.bar = h->r->bar;
    h->t.ram_next = TDRV_DATA_BASE;
    memset(ram(h) + RX_WINDOW, 0, RX_WINDOW_LEN);
    memset(ram(h) + TX_WINDOW, 0, TX_WINDOW_LEN);
    memset(ram(h) + FAKE_RAM_SIZE - RX_TAIL_LEN, 0, RX_TAIL_LEN);
    h->fifo_unknown = true; /* the previous input may have left frames */
    resync(h);
    run_steps(h, &in);
    /* The port stays up whatever the guest did. */
    struct virtio_net_stats st;
    CHECK(virtio_net_get_stats(h->r->nic, &st) == 0 && st.link_up && st.connects == 1);
    tdrv_reset(&h->t);
    stderr = report;
    return 0;
}

/* libFuzzer target for the virtio-net device (vmm/virtio_net.c) through the
 * virtio-pci transport and the virtqueue, against the fake VM and test
 * driver (no KVM).  The harness plays both the guest driver and the
 * vdfs-switch: the device connects to the harness's SOCK_SEQPACKET
 * listening socket, exactly as it connects to vdfs-switch, and gets an ok
 * hello-ack (mtu 1500).
 *
 * The input is a queue size, event-idx on or off, a "chaos" bit, and a
 * script of driver and switch actions: RAM and descriptor writes, RX buffer
 * chains and TX frame chains (well-formed and malformed: loops, links and
 * heads out of range, addresses outside RAM or wrapping, the wrong
 * direction, short headers, runts and oversize frames), avail entries and
 * indices, kicks, resets, any access to BAR0, and frames sent by the switch
 * (runts up to larger than any MTU).  With the chaos bit the switch also
 * misbehaves: it hangs up at any moment (mid-traffic, before or after its
 * ack, while the device waits in its listen queue), answers the device's
 * reconnection with a refusal, a truncated, oversize or garbage ack, two
 * acks, frames instead of an ack, no ack for a while, or an ok ack with an
 * MTU of 0, past 9000 or smaller than the frames; and it stops reading
 * during a burst of TX chains so that the device meets EAGAIN, then drains
 * or hangs up.  The device's reconnect timer is its own timerfd: the
 * harness fires it instead of waiting out the backoff.  After each step the
 * harness waits, by polling the kick eventfds, the rings, the socket and the
 * device's counters (never by sleeping), until the device has nothing left
 * it can do, and checks:
 *
 *   - every frame the device sent equals the bytes of the next sendable TX
 *     chain in avail order minus the 12-byte header (so never longer than
 *     the chain, nor than the MTU it took from the ack); no sendable chain
 *     was completed without its frame unless the port went down in that
 *     step; and every completed chain is counted once, as sent, malformed
 *     or dropped while disconnected (virtio_net.h), none sent while down;
 *   - every RX used entry is the next available head, holds the next frame
 *     the switch sent that fits it (header zero but num_buffers = 1), with
 *     used length = 12 + frame length; frames skipped were too big for it,
 *     or were lost with a connection the switch closed (only after the ones
 *     received from it); nothing is received while the port is down;
 *   - the device wrote guest RAM only inside RX buffers the guest made
 *     available, within the used length;
 *   - a broken chain leaves the device in NEEDS_RESET and the port up;
 *   - the link is up exactly when the switch has sent an ok ack on a
 *     connection it still holds, with the MTU of that ack (1500 if not
 *     68-9000); every connection starts with a valid hello; any other
 *     answer makes the device close the port, count no connection and arm
 *     its reconnect timer within the promised backoff (100 ms doubling to
 *     5 s, back to 100 ms after an ok ack);
 *   - at the end of an input the port is brought back up (mtu 1500) and,
 *     after any reconnection, one frame must go each way;
 *   - the device settles within 10 s of each step (else a hang).
 *
 * Guest RAM is one heap buffer, so AddressSanitizer catches any access
 * outside it.  A violation abort()s. */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
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
#define BACKOFF_FIRST_MS 100 /* the reconnect delays virtio_net.h promises */
#define BACKOFF_LAST_MS 5000

static FILE *report;

#define CHECK(cond) FUZZ_CHECK("fuzz_virtio_net", report, cond)

/* A frame the switch sent: its bytes are a function of (len, seed), or the
 * second hello-ack of a switch that answered twice. */
struct sent_frame {
    uint32_t len;
    uint8_t seed;
    bool second_ack;
};

/* After an ok ack the device takes any further message for a frame. */
static uint8_t second_ack[VDSW_HELLO_SIZE];

static uint8_t frame_byte(const struct sent_frame *f, uint32_t i)
{
    if (f->second_ack)
        return second_ack[i];
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
    int listen_fd, conn; /* conn: the device's port, -1 while the switch has none */
    int timer_fd;        /* the device's reconnect timer */
    unsigned slot;
    uint64_t bar;
};

/* The harness's end of the port. */
enum sw_state {
    SW_CLOSED, /* no connection accepted (the device may wait in the listen queue) */
    SW_HELLO,  /* the device's hello read, not answered yet */
    SW_UP,     /* an ok hello-ack sent: frames flow */
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
    unsigned fifo_stale;   /* the first ones were sent on a connection now closed */
    uint8_t *got;          /* frames the device sent, back to back */
    uint32_t got_len[512];
    unsigned ngot;
    size_t got_bytes;
    uint16_t next_desc[2];
    uint8_t shadow_rx[RX_WINDOW_LEN], shadow_tail[RX_TAIL_LEN];
    struct walk w;
    /* The switch side, kept across inputs like the device. */
    bool chaos;              /* the script may also misbehave as the switch */
    enum sw_state sw;
    uint16_t mtu;            /* what the device made of the last ok ack's MTU */
    uint64_t connects;       /* ok acks the device must have counted */
    unsigned backoff_ms;     /* the delay its next disconnect must arm */
    bool link_was_up;        /* the port was up when the step began */
    bool link_moved;         /* the switch dropped or brought up the port in this step */
    bool reconnected;        /* an ok ack after a disconnect, in this input */
    struct virtio_net_stats stats; /* the device's counters at the last check */
};

static struct timespec step_start;
static bool trace; /* VDFS_NETFUZZ_TRACE=1: name each step on stderr */
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

static uint32_t tx_frame_max(const struct harness *h)
{
    return (uint32_t)h->mtu + VDSW_FRAME_OVERHEAD;
}

static void drain_conn(struct harness *h)
{
    if (h->r->conn < 0)
        return;
    for (;;) {
        uint8_t *dst = h->got + h->got_bytes;
        ssize_t n = recv(h->r->conn, dst, 16384, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
            CHECK(errno == EAGAIN || errno == EINTR);
            return;
        }
        /* The device sends only frames it validated, and never hangs up
         * on a switch that behaves. */
        CHECK(n > 0 && (uint32_t)n <= tx_frame_max(h));
        CHECK(h->ngot < sizeof(h->got_len) / sizeof(h->got_len[0]));
        h->got_len[h->ngot++] = (uint32_t)n;
        h->got_bytes += (size_t)n;
    }
}

static int conn_unread_bytes(struct harness *h)
{
    int n = 0;
    if (h->r->conn >= 0)
        CHECK(ioctl(h->r->conn, SIOCOUTQ, &n) == 0);
    return n;
}

static struct virtio_net_stats nic_stats(struct harness *h)
{
    struct virtio_net_stats st;
    CHECK(virtio_net_get_stats(h->r->nic, &st) == 0); /* under the device lock */
    return st;
}

static uint64_t reconnect_timer_ns(struct harness *h)
{
    struct itimerspec its;
    CHECK(timerfd_gettime(h->r->timer_fd, &its) == 0);
    return (uint64_t)its.it_value.tv_sec * 1000000000ull + (uint64_t)its.it_value.tv_nsec;
}

static void make_ack(uint8_t *ack, uint16_t status, uint32_t port_id, uint16_t mtu)
{
    memset(ack, 0, VDSW_HELLO_SIZE);
    pci_put32(ack, VDSW_MAGIC);
    pci_put16(ack + 4, VDSW_VERSION);
    pci_put16(ack + 6, status);
    pci_put32(ack + 8, port_id);
    pci_put16(ack + 12, mtu);
    snprintf((char *)ack + 16, 48, "%s", status ? "refused by the fuzzer" : "welcome");
}

/* Waits until the device has let go of its socket, after the switch hung
 * up or answered its hello badly.  disconnect() closes the socket, takes
 * the link down and arms the reconnect timer under the device lock, so a
 * link read down (under that lock) with the timer armed, or already fired
 * and the device back in the listen queue, means it is done.  The delay
 * armed must be the backoff virtio_net.h promises: 100 ms, doubling up to
 * 5 s, back to 100 ms after an ok ack. */
static void wait_device_let_go(struct harness *h, bool refused)
{
    for (;;) {
        hang_check();
        bool up = nic_stats(h).link_up;
        CHECK(!(refused && up)); /* it took a bad answer for an ok ack */
        uint64_t left = reconnect_timer_ns(h);
        if (!up && (left || fd_readable(h->r->listen_fd, 0))) {
            CHECK(left <= (uint64_t)h->backoff_ms * 1000000ull);
            break;
        }
        sched_yield();
    }
    h->fifo_stale = h->fifo_len;
    h->backoff_ms = h->backoff_ms * 2 > BACKOFF_LAST_MS ? BACKOFF_LAST_MS : h->backoff_ms * 2;
}

/* The switch hangs up (the switch restarting, or its port freed).  Frames
 * still in either direction of the socket may be lost: what the device had
 * not received by the time it saw the hang-up is gone with its socket. */
static void sw_hang_up(struct harness *h, bool drain_first)
{
    if (h->sw == SW_CLOSED)
        return;
    if (drain_first)
        drain_conn(h);
    close(h->r->conn);
    h->r->conn = -1;
    h->sw = SW_CLOSED;
    h->link_moved = true;
    wait_device_let_go(h, false);
}

/* The device must close the port itself after a bad answer to its hello,
 * count no connection, and keep its link down (it retries later). */
static void sw_expect_refusal(struct harness *h)
{
    wait_device_let_go(h, true);
    /* Closed, nothing more sent (ECONNRESET when it left messages unread). */
    uint8_t byte;
    ssize_t n = recv(h->r->conn, &byte, 1, MSG_DONTWAIT);
    CHECK(n == 0 || (n < 0 && errno == ECONNRESET));
    close(h->r->conn);
    h->r->conn = -1;
    h->sw = SW_CLOSED;
    h->link_moved = true;
    struct virtio_net_stats st = nic_stats(h);
    CHECK(!st.link_up && st.connects == h->connects);
}

/* Lets the device connect now instead of after its backoff, by firing its
 * reconnect timer (its own timerfd: no knob in the device is needed), then
 * accepts the connection and checks the hello. */
static void sw_accept(struct harness *h)
{
    CHECK(h->sw == SW_CLOSED);
    struct itimerspec now = {.it_value = {.tv_nsec = 1}};
    CHECK(timerfd_settime(h->r->timer_fd, 0, &now, NULL) == 0);
    while (!fd_readable(h->r->listen_fd, 10))
        hang_check();
    int c = accept4(h->r->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    CHECK(c >= 0);
    h->r->conn = c;
    h->sw = SW_HELLO;
    uint8_t hello[VDSW_HELLO_SIZE + 1];
    while (!fd_readable(c, 10))
        hang_check();
    CHECK(recv(c, hello, sizeof(hello), MSG_DONTWAIT) == VDSW_HELLO_SIZE);
    static const uint8_t mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
    CHECK(pci_get32(hello) == VDSW_MAGIC && pci_get16(hello + 4) == VDSW_VERSION &&
          pci_get16(hello + 6) == 0);
    CHECK(memcmp(hello + 8, mac, 6) == 0);
    CHECK(memcmp(hello + 16, "fuzz", 5) == 0 && memchr(hello + 48, 0, 16));
    CHECK(!nic_stats(h).link_up);
}

/* An ok hello-ack: the device takes the MTU when it is 68-9000 and 1500
 * otherwise, counts the connection and brings the link up. */
static void sw_ack_ok(struct harness *h, uint16_t mtu, uint32_t port_id)
{
    CHECK(h->sw == SW_HELLO);
    uint8_t ack[VDSW_HELLO_SIZE];
    make_ack(ack, VDSW_STATUS_OK, port_id, mtu);
    CHECK(send(h->r->conn, ack, sizeof(ack), MSG_NOSIGNAL) == VDSW_HELLO_SIZE);
    struct virtio_net_stats st;
    while (!(st = nic_stats(h)).link_up)
        hang_check();
    h->sw = SW_UP;
    h->mtu = mtu >= VDSW_MIN_MTU && mtu <= VDSW_MAX_MTU ? mtu : VDSW_DEFAULT_MTU;
    h->connects++;
    h->backoff_ms = BACKOFF_FIRST_MS;
    h->link_moved = true;
    h->reconnected = true;
    CHECK(st.connects == h->connects && st.mtu == h->mtu && st.port_id == port_id);
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
        /* Frames the device holds are unread too. */
        unread += (int)nic_stats(h).rx_held;
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

static bool tx_droppable(const struct harness *h, const struct walk *w)
{
    uint64_t frame = w->out_len >= HDR ? w->out_len - HDR : 0;
    return w->out_len < HDR || frame < 14 || frame > tx_frame_max(h);
}

static bool tx_chain_is(struct harness *h, const struct walk *w, const uint8_t *frame, uint32_t len)
{
    if (w->out_len - HDR != len)
        return false;
    for (uint32_t i = 0; i < len; i++)
        if (*chain_byte(h, w, HDR + i) != frame[i])
            return false;
    return true;
}

/* `steady` is the port's state through the whole step, if it did not
 * change: virtio_net.h says transmitted frames are dropped and counted
 * while the switch is away, so then (and only then) a sendable chain may
 * complete without its frame. */
static void check_tx(struct harness *h, bool broken, const struct virtio_net_stats *st)
{
    bool steady_up = h->link_was_up && !h->link_moved;
    bool steady_down = !h->link_was_up && !h->link_moved;
    unsigned sendable_dropped = 0;
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
            if (tx_droppable(h, w))
                continue;
            if (!steady_up && !tx_chain_is(h, w, frame, h->got_len[f])) {
                sendable_dropped++; /* completed while the port was down */
                continue;
            }
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
        CHECK(w->valid && w->nin == 0);
        if (!tx_droppable(h, w)) {
            CHECK(!steady_up);
            sendable_dropped++;
        }
        h->tx_match_pos++;
    }
    h->tx_used_seen = used;
    if (broken)
        return; /* chains may have been counted and never published */
    /* Every completed chain is counted once: sent, dropped as malformed, or
     * dropped because the port was down.  Frames the switch did not read
     * before it hung up were sent but lost. */
    uint64_t sent = st->tx_frames - h->stats.tx_frames;
    uint64_t lost = st->tx_dropped_disconnected - h->stats.tx_dropped_disconnected;
    uint64_t malformed = st->tx_dropped_malformed - h->stats.tx_dropped_malformed;
    CHECK(fresh == sent + lost + malformed);
    CHECK(h->ngot <= sent && sendable_dropped <= lost + (sent - h->ngot));
    if (steady_up)
        CHECK(lost == 0 && sent == h->ngot);
    if (steady_down)
        CHECK(sent == 0 && h->ngot == 0);
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
    if (h->fifo_stale)
        h->fifo_stale--;
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

/* Whether the chain holds hdr + frame (as far as no later write hid it). */
static bool rx_holds(struct harness *h, const struct walk *w, unsigned order,
                     const struct sent_frame *f, uint32_t used_len)
{
    static const uint8_t hdr[HDR] = {[10] = 1};
    if (used_len != HDR + f->len)
        return false;
    uint64_t off = 0, total = HDR + (uint64_t)f->len;
    for (unsigned s = 0; s < w->nseg && off < total; s++, order++) {
        uint64_t n = w->seg[s].len < total - off ? w->seg[s].len : total - off;
        if (!overwritten_later(order, w->seg[s].gpa, n))
            for (uint64_t i = 0; i < n; i++) {
                uint64_t at = off + i;
                uint8_t want = at < HDR ? hdr[at] : frame_byte(f, (uint32_t)(at - HDR));
                if (ram(h)[w->seg[s].gpa + i] != want)
                    return false;
            }
        off += n;
    }
    return true;
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
        /* Dropped as too big for this very buffer, or lost with the
         * connection the switch hung up (only what the device had not
         * received by then, so only after the ones it did). */
        while ((f = fifo_front(h)) &&
               (!fits(f, w) || (h->fifo_stale && !rx_holds(h, w, order, f, len))))
            fifo_pop(h);
        CHECK(f); /* a frame the switch never sent */
        CHECK(len == HDR + f->len);
        CHECK(rx_holds(h, w, order, f, len));
        for (uint64_t left = len, s = 0; s < w->nseg && left; s++, order++)
            left -= w->seg[s].len < left ? w->seg[s].len : left;
        fifo_pop(h);
    }
    h->rx_used_seen = used;
    if (!h->link_was_up && !h->link_moved)
        CHECK(fresh == 0); /* nothing is received without a port */
    /* The device has let go of the old socket: what it did not receive
     * from it is gone. */
    while (h->fifo_stale && !broken)
        fifo_pop(h);
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
    } else if (!h->fifo_unknown && h->fifo_len && h->sw == SW_UP && conn_unread_bytes(h) == 0 &&
               nic_stats(h).rx_held) {
        /* The socket is empty and the driver out of buffers: the device
         * holds some of the frames left, as many as it may. */
        CHECK(avail == used && nic_stats(h).rx_held <= VIRTIO_NET_RX_HOLD);
    } else if (!h->fifo_unknown && h->fifo_len && h->sw == SW_UP && conn_unread_bytes(h) == 0) {
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

/* The port as the switch sees it, and the device's view of it. */
static void check_port(struct harness *h, const struct virtio_net_stats *st)
{
    CHECK(st->link_up == (h->sw == SW_UP));
    CHECK(st->connects == h->connects);
    if (h->sw == SW_UP)
        CHECK(st->mtu == h->mtu);
}

static void check_step(struct harness *h, const struct virtio_net_stats *nst)
{
    if (h->transport_fuzzed) {
        h->fifo_unknown = true;
        snapshot(h);
        while (h->fifo_stale)
            fifo_pop(h);
        return;
    }
    uint8_t st = tdrv_status(&h->t);
    bool broken = st & VIRTIO_STATUS_NEEDS_RESET;
    if (!(st & VIRTIO_STATUS_DRIVER_OK)) {
        CHECK(h->ngot == 0);
        CHECK(memcmp(h->shadow_rx, ram(h) + RX_WINDOW, RX_WINDOW_LEN) == 0);
        while (h->fifo_stale)
            fifo_pop(h);
        return;
    }
    check_tx(h, broken, nst);
    check_rx(h, broken);
}

static void settle_and_check(struct harness *h)
{
    wait_idle(h);
    struct virtio_net_stats st = nic_stats(h);
    check_port(h, &st);
    check_step(h, &st);
    h->stats = st;
    h->link_was_up = h->sw == SW_UP;
    h->link_moved = false;
    h->ngot = 0;
    h->got_bytes = 0;
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

/* Brings the device to a known state: frames still in the socket or held
 * by the device (from a fuzzed transport, a broken queue or a previous
 * input) are received into big buffers and thrown away, then the driver
 * sets up afresh. */
static void resync(struct harness *h)
{
    clock_gettime(CLOCK_MONOTONIC, &step_start);
    uint16_t qsize = h->qsize;
    h->qsize = 64;
    while (conn_unread_bytes(h) > 0 || nic_stats(h).rx_held) {
        driver_setup(h);
        for (uint16_t k = 0; k < 64; k++) {
            tdrv_desc(&h->t, RXQ, k, DRAIN_BASE + (uint64_t)DRAIN_BUF * k, DRAIN_BUF,
                      VIRTQ_DESC_F_WRITE, 0);
            tdrv_publish(&h->t, RXQ, k);
        }
        tdrv_kick(&h->t, RXQ);
        while ((conn_unread_bytes(h) > 0 || nic_stats(h).rx_held) &&
               tdrv_used_idx(&h->t, RXQ) != 64) {
            hang_check();
            sched_yield();
        }
    }
    h->qsize = qsize;
    h->fifo_len = h->fifo_head = h->fifo_stale = 0;
    h->fifo_unknown = false;
    driver_setup(h);
    wait_idle(h); /* DRIVER_OK kicks both queues once */
    drain_conn(h);
    snapshot(h);
    CHECK(h->ngot == 0); /* the rings are empty */
    h->stats = nic_stats(h);
    h->link_was_up = h->sw == SW_UP;
    h->link_moved = false;
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

/* Frames from the switch.  Sent before the hello-ack, the first one is
 * taken for the ack (it is never a valid one: its bytes cannot start with
 * the magic), so the device must give up this connection. */
static void switch_sends(struct harness *h, struct input *in)
{
    unsigned n = 1 + get8(in) % 4;
    static uint8_t buf[DEVICE_FRAME_MAX + 64];
    bool before_ack = h->sw == SW_HELLO, any = false, refused = false;
    for (unsigned i = 0; i < n && h->fifo_len < MAX_PENDING_FRAMES; i++) {
        uint32_t len = get_len(in);
        if (len == 0 || len > sizeof(buf))
            len = 1 + len % sizeof(buf); /* the switch never sends empty messages */
        struct sent_frame f = {.len = len, .seed = get8(in)};
        if (h->sw == SW_CLOSED || refused)
            continue; /* the script reads on the same whatever the timing */
        for (uint32_t k = 0; k < len; k++)
            buf[k] = frame_byte(&f, k);
        ssize_t sent = send(h->r->conn, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent < 0 && before_ack && any && (errno == EPIPE || errno == ECONNRESET)) {
            refused = true; /* the device hung up after the first message */
            continue;
        }
        if (sent < 0) {
            CHECK(errno == EAGAIN || errno == ENOBUFS);
            break;
        }
        CHECK(sent == (ssize_t)len);
        any = true;
        if (before_ack)
            continue;
        h->fifo[(h->fifo_head + h->fifo_len) % MAX_PENDING_FRAMES] = f;
        h->fifo_len++;
    }
    if (before_ack && any)
        sw_expect_refusal(h);
}

/* Many sendable chains at once while the switch reads nothing until the
 * device's pass is over, so that the socket fills and TX meets EAGAIN;
 * then the switch either drains (the device resumes on EPOLLOUT) or hangs
 * up while the device is waiting for room. */
static void tx_burst(struct harness *h, struct input *in)
{
    uint8_t how = get8(in);
    unsigned n = 1 + get8(in) % h->qsize;
    uint32_t len = 60 + 6u * get8(in); /* up to 1590: some too big for a small MTU */
    uint8_t fill = get8(in);
    uint64_t base = TX_WINDOW + 0xe000;
    static uint8_t buf[HDR + 1600];
    memset(buf, 0, HDR);
    for (uint32_t k = 0; k < len; k++)
        buf[HDR + k] = (uint8_t)(fill + k * 11u);
    ram_write(h, base, buf, HDR + len);
    for (unsigned k = 0; k < n; k++) {
        uint16_t d = (uint16_t)(h->next_desc[TXQ]++ % h->qsize);
        tdrv_desc(&h->t, TXQ, d, base, HDR + len, 0, 0);
        tdrv_publish(&h->t, TXQ, d);
    }
    h->tx_kicked = true;
    if ((how & 1) && h->sw == SW_UP) {
        tdrv_kick(&h->t, TXQ);
        while (any_kick_pending(h)) {
            hang_check();
            sched_yield();
        }
        (void)tdrv_status(&h->t); /* takes the device lock: its pass is over */
        sw_hang_up(h, false);
        /* The chains it held back for EPOLLOUT must now be dropped with no
         * further kick, since it asked the guest not to notify (a hang-up
         * without EPOLLOUT once left them in the ring for good: a stalled
         * TX queue, caught here as a hang). */
        for (;;) {
            uint8_t st = tdrv_status(&h->t);
            if (h->transport_fuzzed || (st & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET)) !=
                                           VIRTIO_STATUS_DRIVER_OK ||
                tdrv_used_idx(&h->t, TXQ) == avail_idx(h, TXQ))
                break;
            hang_check(); /* a TX queue stalled until the guest kicks again */
            sched_yield();
        }
    } else {
        h->slow_switch = true;
        tdrv_kick(&h->t, TXQ);
    }
}

/* The switch hangs up at once, possibly right behind a kick or its own
 * frames (mid-traffic); with no connection, it lets the device connect and
 * leaves it waiting in the listen queue. */
static void sw_hang_up_op(struct harness *h, struct input *in)
{
    uint8_t how = get8(in);
    if (how & 1) {
        h->tx_kicked = true;
        tdrv_kick(&h->t, TXQ);
    }
    if (how & 2)
        tdrv_kick(&h->t, RXQ);
    if (h->sw == SW_CLOSED) {
        struct itimerspec now = {.it_value = {.tv_nsec = 1}};
        CHECK(timerfd_settime(h->r->timer_fd, 0, &now, NULL) == 0);
        return;
    }
    sw_hang_up(h, how & 4);
}

/* The switch answers the device's hello (accepting its connection first,
 * hanging up first if the port is up: a switch restart).  Any answer but
 * an ok ack must make the device close the port and retry later. */
static void sw_answer(struct harness *h, struct input *in)
{
    uint8_t kind = get8(in);
    if (h->sw == SW_UP)
        sw_hang_up(h, false);
    if (h->sw == SW_CLOSED)
        sw_accept(h);
    uint8_t msg[VDSW_HELLO_SIZE + 256];
    make_ack(msg, VDSW_STATUS_OK, 1, MTU);
    switch (kind % 12) {
    case 0:
        sw_ack_ok(h, MTU, 1 + get8(in));
        break;
    case 1: { /* an MTU of 0, past the maximum, smaller than most frames, or any */
        uint16_t mtu;
        switch (get8(in) % 4) {
        case 0:
            mtu = 0;
            break;
        case 1:
            mtu = (uint16_t)(VDSW_MAX_MTU + 1 + get16(in) % (65536 - VDSW_MAX_MTU - 1));
            break;
        case 2:
            mtu = (uint16_t)(VDSW_MIN_MTU - 8 + get8(in)); /* 60-315 */
            break;
        default:
            mtu = get16(in);
        }
        sw_ack_ok(h, mtu, get32(in));
        break;
    }
    case 2: /* frames right behind the ack */
        sw_ack_ok(h, MTU, 7);
        switch_sends(h, in);
        break;
    case 3: /* refused: any non-zero status */
        pci_put16(msg + 6, (uint16_t)(1 + get16(in) % 0xffff));
        CHECK(send(h->r->conn, msg, VDSW_HELLO_SIZE, MSG_NOSIGNAL) == VDSW_HELLO_SIZE);
        sw_expect_refusal(h);
        break;
    case 4: { /* truncated, empty included */
        size_t len = get8(in) % VDSW_HELLO_SIZE;
        CHECK(send(h->r->conn, msg, len, MSG_NOSIGNAL) == (ssize_t)len);
        sw_expect_refusal(h);
        break;
    }
    case 5: { /* an ok ack with bytes after it */
        size_t len = VDSW_HELLO_SIZE + 1 + get8(in);
        memset(msg + VDSW_HELLO_SIZE, get8(in), len - VDSW_HELLO_SIZE);
        CHECK(send(h->r->conn, msg, len, MSG_NOSIGNAL) == (ssize_t)len);
        sw_expect_refusal(h);
        break;
    }
    case 6: /* garbage: 64 bytes with a wrong magic or version */
        for (unsigned i = 0; i < VDSW_HELLO_SIZE; i++)
            msg[i] = get8(in);
        if (pci_get32(msg) == VDSW_MAGIC && pci_get16(msg + 4) == VDSW_VERSION)
            msg[get8(in) & 4] ^= 0x80;
        CHECK(send(h->r->conn, msg, VDSW_HELLO_SIZE, MSG_NOSIGNAL) == VDSW_HELLO_SIZE);
        sw_expect_refusal(h);
        break;
    case 7: { /* two acks: the second is a 64-byte frame to the device */
        sw_ack_ok(h, MTU, 1);
        CHECK(send(h->r->conn, second_ack, VDSW_HELLO_SIZE, MSG_NOSIGNAL) == VDSW_HELLO_SIZE);
        if (h->fifo_len < MAX_PENDING_FRAMES) {
            h->fifo[(h->fifo_head + h->fifo_len) % MAX_PENDING_FRAMES] =
                (struct sent_frame){.len = VDSW_HELLO_SIZE, .second_ack = true};
            h->fifo_len++;
        } else {
            h->fifo_unknown = true;
        }
        break;
    }
    case 8: /* no answer for now: the link stays down, TX is dropped */
        break;
    case 9: /* frames instead of the ack */
        switch_sends(h, in);
        break;
    case 10: /* hangs up without answering */
        sw_hang_up(h, false);
        break;
    default: /* an ok ack but for its magic or version */
        if (get8(in) & 1)
            pci_put16(msg + 4, (uint16_t)(VDSW_VERSION + 1 + get8(in)));
        else
            pci_put32(msg, VDSW_MAGIC ^ (1u << (get8(in) % 32)));
        CHECK(send(h->r->conn, msg, VDSW_HELLO_SIZE, MSG_NOSIGNAL) == VDSW_HELLO_SIZE);
        sw_expect_refusal(h);
    }
}

static void run_steps(struct harness *h, struct input *in)
{
    for (unsigned step = 0; step < MAX_STEPS && in->n; step++) {
        clock_gettime(CLOCK_MONOTONIC, &step_start);
        uint8_t op = get8(in);
        unsigned q = op >> 7;
        if (trace)
            fprintf(report, "step %u: op %u q %u (port %d)\n", step, op % (h->chaos ? 16 : 12), q, h->sw);
        switch (op % (h->chaos ? 16 : 12)) {
        case 0: { /* raw bytes */
            uint64_t gpa = get_gpa(in, q);
            uint8_t buf[32];
            uint8_t len = get_bytes(in, buf, sizeof(buf));
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
        case 12:
            sw_hang_up_op(h, in);
            break;
        case 13:
        case 14:
            sw_answer(h, in);
            break;
        case 15:
            tx_burst(h, in);
            break;
        }
        settle_and_check(h);
    }
}

/* Ends an input with the port up at the default MTU, as the next input
 * expects it. */
static void restore_port(struct harness *h)
{
    clock_gettime(CLOCK_MONOTONIC, &step_start);
    if (h->sw == SW_UP && h->mtu == MTU)
        return;
    if (h->sw == SW_UP)
        sw_hang_up(h, false);
    if (h->sw == SW_CLOSED)
        sw_accept(h);
    sw_ack_ok(h, MTU, 1);
}

/* After a reconnection traffic must flow both ways again: from a fresh
 * driver, one RX buffer gets a frame from the switch and one TX chain
 * reaches the switch, both checked by the model. */
static void check_traffic_flows(struct harness *h)
{
    resync(h);
    clock_gettime(CLOCK_MONOTONIC, &step_start);
    tdrv_desc(&h->t, RXQ, 0, RX_WINDOW, 0x800, VIRTQ_DESC_F_WRITE, 0);
    tdrv_publish(&h->t, RXQ, 0);
    tdrv_kick(&h->t, RXQ);
    uint8_t frame[HDR + 60] = {0};
    for (unsigned k = 0; k < 60; k++)
        frame[HDR + k] = (uint8_t)(0x5a ^ k);
    ram_write(h, TX_WINDOW, frame, sizeof(frame));
    tdrv_desc(&h->t, TXQ, 0, TX_WINDOW, sizeof(frame), 0, 0);
    tdrv_publish(&h->t, TXQ, 0);
    h->tx_kicked = true;
    tdrv_kick(&h->t, TXQ);
    struct sent_frame f = {.len = 60, .seed = 0x33};
    uint8_t bytes[60];
    for (uint32_t k = 0; k < f.len; k++)
        bytes[k] = frame_byte(&f, k);
    CHECK(send(h->r->conn, bytes, f.len, MSG_NOSIGNAL) == (ssize_t)f.len);
    h->fifo[(h->fifo_head + h->fifo_len) % MAX_PENDING_FRAMES] = f;
    h->fifo_len++;
    wait_idle(h);
    CHECK(h->rx_used == 1 && h->tx_used == 1 && h->ngot == 1);
    struct virtio_net_stats st = nic_stats(h);
    check_port(h, &st);
    check_step(h, &st);
    h->ngot = 0;
    h->got_bytes = 0;
}

/* ---- the rig: one device, connected to the harness as its switch ---- */

/* The timerfds open in this process, as a bitmap of fd numbers. */
static void find_timerfds(uint8_t *map, size_t nbits)
{
    memset(map, 0, nbits / 8);
    DIR *d = opendir("/proc/self/fd");
    CHECK(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        char link[64];
        ssize_t n = readlinkat(dirfd(d), e->d_name, link, sizeof(link) - 1);
        long fd = strtol(e->d_name, NULL, 10);
        if (n <= 0 || fd < 0 || (size_t)fd >= nbits)
            continue;
        link[n] = 0;
        if (strcmp(link, "anon_inode:[timerfd]") == 0)
            map[fd / 8] |= (uint8_t)(1u << (fd % 8));
    }
    closedir(d);
}

static char rig_sock_path[96], rig_dir[64];

/* The device may reconnect at any time, so the socket stays until exit. */
static void rig_remove_socket(void)
{
    unlink(rig_sock_path);
    rmdir(rig_dir);
}

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
    memcpy(rig_sock_path, r.sock_path, sizeof(rig_sock_path));
    memcpy(rig_dir, r.dir, sizeof(rig_dir));
    atexit(rig_remove_socket);
    make_ack(second_ack, VDSW_STATUS_OK, 1, MTU);
    r.vm = fake_vm_create(false);
    r.pci = pci_bus_create(&r.vm->svc);
    CHECK(r.pci);
    struct nic_config cfg = {.mac_set = true, .mac = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55}};
    snprintf(cfg.portgroup, sizeof(cfg.portgroup), "fuzz");
    snprintf(cfg.switch_socket, sizeof(cfg.switch_socket), "%s", r.sock_path);
    enum { FD_BITS = 4096 };
    static uint8_t before[FD_BITS / 8], after[FD_BITS / 8];
    find_timerfds(before, FD_BITS);
    r.nic = virtio_net_create(r.pci, &r.vm->svc, &cfg);
    CHECK(r.nic >= 0);
    find_timerfds(after, FD_BITS);
    r.timer_fd = -1;
    for (int fd = 0; fd < FD_BITS; fd++)
        if ((after[fd / 8] & ~before[fd / 8]) & (1u << (fd % 8))) {
            CHECK(r.timer_fd < 0); /* the device makes one timer */
            r.timer_fd = fd;
        }
    CHECK(r.timer_fd >= 0);
    CHECK(fd_readable(r.listen_fd, HANG_SECONDS * 1000));
    r.conn = accept4(r.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    CHECK(r.conn >= 0);
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
    static struct harness *h;
    if (!h) {
        h = calloc(1, sizeof(*h));
        if (!h || !(h->got = malloc(600u << 10)))
            abort();
        trace = getenv("VDFS_NETFUZZ_TRACE") != NULL;
        h->sw = SW_UP; /* rig_get connects the device */
        h->mtu = MTU;
        h->connects = 1;
        h->backoff_ms = BACKOFF_FIRST_MS;
    }
    fuzz_quiet_stderr(&report);
    struct input in = {data, size};
    uint8_t setup = get8(&in);
    h->r = rig_get();
    h->qsize = (uint16_t)(1u << (1 + setup % 8));
    h->features = F(VIRTIO_F_VERSION_1) | F(5) | F(16);
    if (setup & 0x80)
        h->features |= F(VIRTIO_F_RING_EVENT_IDX);
    h->chaos = setup & 0x40;
    h->reconnected = false;
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
    /* The port stays up whatever the guest did; only the switch can take it
     * down, and then the device comes back. */
    struct virtio_net_stats st = nic_stats(h);
    if (!h->chaos)
        CHECK(st.link_up && st.connects == h->connects && h->sw == SW_UP);
    restore_port(h);
    if (h->reconnected)
        check_traffic_flows(h);
    tdrv_reset(&h->t);
    stderr = report;
    return 0;
}

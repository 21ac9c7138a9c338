/* virtio-net against a fake vdfs-switch port socket: the hello, frames in
 * both directions and in batches, link status, reconnection after the
 * switch goes away, drops while disconnected, malformed chains and a
 * refused hello. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../../vswitch/protocol.h"
#include "fake_vm.h"
#include "pci.h"
#include "test_driver.h"
#include "virtio_net.h"
#include "virtio_pci.h"
#include "virtqueue.h"

#define NET_DEVICE_ID 0x1041
#define F(bit) (1ull << (bit))
#define NET_FEATURES (F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_RING_EVENT_IDX) | F(5) | F(16))
#define RXQ 0
#define TXQ 1
#define HDR 12

struct env {
    struct fake_vm *vm;
    struct pci_bus *pci;
    struct tdrv t;
    char dir[64];
    char sock_path[96];
    int listen_fd;
    int conn;      /* the switch side of the port */
    int saved_stderr;
    char log_path[64];
    uint8_t hello[VDSW_HELLO_SIZE];
};

static int wait_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms);
}

static void switch_listen(struct env *e)
{
    e->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", e->sock_path);
    unlink(e->sock_path);
    assert_int_equal(bind(e->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(e->listen_fd, 4), 0);
}

/* Accepts the device's connection and answers its hello. */
static void switch_accept(struct env *e, uint16_t status, uint32_t port_id)
{
    assert_int_equal(wait_readable(e->listen_fd, 10000), 1);
    e->conn = accept(e->listen_fd, NULL, NULL);
    assert_true(e->conn >= 0);
    assert_int_equal(wait_readable(e->conn, 5000), 1);
    assert_int_equal(recv(e->conn, e->hello, sizeof(e->hello), 0), VDSW_HELLO_SIZE);
    uint8_t ack[VDSW_HELLO_SIZE] = {0};
    pci_put32(ack, VDSW_MAGIC);
    pci_put16(ack + 4, VDSW_VERSION);
    pci_put16(ack + 6, status);
    pci_put32(ack + 8, port_id);
    pci_put16(ack + 12, 1500);
    snprintf((char *)ack + 16, 48, status ? "no such port group" : "welcome");
    assert_int_equal(send(e->conn, ack, sizeof(ack), 0), VDSW_HELLO_SIZE);
}

static struct env *env_create(bool mac_set)
{
    struct env *e = calloc(1, sizeof(*e));
    snprintf(e->log_path, sizeof(e->log_path), "/tmp/vdfs-vnet-log-XXXXXX");
    int lfd = mkstemp(e->log_path);
    fflush(stderr);
    e->saved_stderr = dup(2);
    dup2(lfd, 2);
    close(lfd);
    snprintf(e->dir, sizeof(e->dir), "/tmp/vdfs-vnet-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->sock_path, sizeof(e->sock_path), "%s/sw0.sock", e->dir);
    switch_listen(e);
    e->conn = -1;

    e->vm = fake_vm_create(false);
    e->pci = pci_bus_create(&e->vm->svc);
    struct nic_config cfg = {.mac_set = mac_set, .mac = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55}};
    snprintf(cfg.portgroup, sizeof(cfg.portgroup), "vm-net");
    snprintf(cfg.switch_socket, sizeof(cfg.switch_socket), "%s", e->sock_path);
    assert_int_equal(virtio_net_create(e->pci, &e->vm->svc, &cfg), 0);
    return e;
}

static bool log_has(struct env *e, const char *frag)
{
    fflush(stderr);
    static char text[8192];
    FILE *f = fopen(e->log_path, "r");
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = 0;
    return strstr(text, frag) != NULL;
}

static void env_destroy(struct env *e)
{
    virtio_net_destroy_all();
    pci_bus_destroy(e->pci);
    fake_vm_destroy(e->vm);
    if (e->conn >= 0)
        close(e->conn);
    close(e->listen_fd);
    unlink(e->sock_path);
    rmdir(e->dir);
    fflush(stderr);
    dup2(e->saved_stderr, 2);
    close(e->saved_stderr);
    unlink(e->log_path);
    free(e);
}

static void driver_up(struct env *e)
{
    assert_int_equal(tdrv_setup(&e->t, e->vm, NET_DEVICE_ID, 2, NET_FEATURES), 0x0f);
}

static bool wait_stats(int (*pred)(const struct virtio_net_stats *))
{
    struct virtio_net_stats st;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(virtio_net_get_stats(0, &st), 0);
        if (pred(&st))
            return true;
        usleep(10000);
    }
    return false;
}

static int link_up(const struct virtio_net_stats *s) { return s->link_up; }
static int link_down(const struct virtio_net_stats *s) { return !s->link_up; }
static int reconnected(const struct virtio_net_stats *s) { return s->connects >= 2 && s->link_up; }

static uint16_t config_status(struct env *e)
{
    return (uint16_t)fake_vm_read(e->vm, BUS_MMIO, e->t.bar + VIRTIO_PCI_DEVICE_OFF + 6, 2);
}

/* Posts RX buffer k (descriptor k) of `len` bytes. */
static uint64_t post_rx(struct env *e, uint16_t k, uint32_t len)
{
    uint64_t buf = 0x800000ull + 0x4000ull * k;
    memset(tdrv_ptr(&e->t, buf), 0xcc, len);
    tdrv_desc(&e->t, RXQ, k, buf, len, VIRTQ_DESC_F_WRITE, 0);
    tdrv_publish(&e->t, RXQ, k);
    return buf;
}

/* Queues a TX frame in descriptors 2k (header) and 2k+1 (frame). */
static void send_tx(struct env *e, uint16_t k, const uint8_t *frame, uint32_t len)
{
    uint64_t buf = 0xa00000ull + 0x4000ull * k;
    memset(tdrv_ptr(&e->t, buf), 0, HDR);
    memcpy(tdrv_ptr(&e->t, buf + HDR), frame, len);
    tdrv_desc(&e->t, TXQ, 2 * k, buf, HDR, VIRTQ_DESC_F_NEXT, 2 * k + 1);
    tdrv_desc(&e->t, TXQ, 2 * k + 1, buf + HDR, len, 0, 0);
    tdrv_publish(&e->t, TXQ, 2 * k);
}

static void make_frame(uint8_t *f, uint32_t len, uint8_t tag)
{
    memset(f, 0xff, 6);
    memcpy(f + 6, (uint8_t[]){0x02, 0x11, 0x22, 0x33, 0x44, 0x55}, 6);
    f[12] = 0x08;
    f[13] = 0x00;
    for (uint32_t i = 14; i < len; i++)
        f[i] = (uint8_t)(tag + i);
}

static void test_hello_and_frames(void **state)
{
    struct env *e = env_create(true);
    switch_accept(e, 0, 7);
    assert_int_equal(pci_get32(e->hello), VDSW_MAGIC);
    assert_int_equal(pci_get16(e->hello + 4), 1);
    assert_int_equal(pci_get16(e->hello + 6), 0);
    assert_memory_equal(e->hello + 8, "\x02\x11\x22\x33\x44\x55", 6);
    assert_string_equal((char *)e->hello + 16, "vm-net");
    assert_true(wait_stats(link_up));

    driver_up(e);
    assert_int_equal(tdrv_cfg_read(e->vm, e->t.slot, PCI_REVISION_ID, 1), 1);
    assert_int_equal(fake_vm_read(e->vm, BUS_MMIO, e->t.bar + VIRTIO_PCI_DEVICE_OFF, 4), 0x33221102);
    assert_int_equal(config_status(e) & 1, 1);

    /* Guest -> switch. */
    uint8_t frame[1514], got[2048];
    make_frame(frame, 60, 1);
    send_tx(e, 0, frame, 60);
    tdrv_kick(&e->t, TXQ);
    assert_true(tdrv_wait_used(&e->t, TXQ, 1));
    assert_int_equal(wait_readable(e->conn, 5000), 1);
    assert_int_equal(recv(e->conn, got, sizeof(got), 0), 60);
    assert_memory_equal(got, frame, 60);

    /* Switch -> guest, one frame per buffer. */
    post_rx(e, 0, 2048);
    post_rx(e, 1, 2048);
    tdrv_kick(&e->t, RXQ);
    make_frame(frame, 1514, 3);
    assert_int_equal(send(e->conn, frame, 1514, 0), 1514);
    make_frame(frame, 64, 4);
    assert_int_equal(send(e->conn, frame, 64, 0), 64);
    assert_true(tdrv_wait_used(&e->t, RXQ, 2));
    uint32_t id, len;
    tdrv_used_elem(&e->t, RXQ, 0, &id, &len);
    assert_int_equal(id, 0);
    assert_int_equal(len, HDR + 1514);
    uint8_t *rx = tdrv_ptr(&e->t, 0x800000);
    assert_int_equal(pci_get16(rx + 10), 1); /* num_buffers */
    assert_int_equal(rx[0], 0);
    make_frame(frame, 1514, 3);
    assert_memory_equal(rx + HDR, frame, 1514);
    tdrv_used_elem(&e->t, RXQ, 1, &id, &len);
    assert_int_equal(len, HDR + 64);

    /* A frame arriving before any buffer waits for one. */
    make_frame(frame, 80, 5);
    assert_int_equal(send(e->conn, frame, 80, 0), 80);
    usleep(50000);
    assert_int_equal(tdrv_used_idx(&e->t, RXQ), 2);
    post_rx(e, 2, 2048);
    tdrv_kick(&e->t, RXQ);
    assert_true(tdrv_wait_used(&e->t, RXQ, 3));
    assert_memory_equal(tdrv_ptr(&e->t, 0x800000 + 0x8000 + HDR), frame, 80);

    struct virtio_net_stats st;
    virtio_net_get_stats(0, &st);
    assert_int_equal(st.tx_frames, 1);
    assert_int_equal(st.rx_frames, 3);
    assert_int_equal(st.port_id, 7);
    env_destroy(e);
    (void)state;
}

static void test_reconnect_and_drops(void **state)
{
    struct env *e = env_create(false);
    switch_accept(e, 0, 1);
    /* A generated MAC is unicast and locally administered. */
    assert_int_equal(e->hello[8] & 3, 2);
    assert_true(wait_stats(link_up));
    driver_up(e);
    uint8_t mac[6];
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)fake_vm_read(e->vm, BUS_MMIO, e->t.bar + VIRTIO_PCI_DEVICE_OFF + i, 1);
    assert_memory_equal(mac, e->hello + 8, 6);

    /* The switch goes away. */
    close(e->conn);
    e->conn = -1;
    assert_true(wait_stats(link_down));
    assert_int_equal(config_status(e) & 1, 0);
    uint8_t frame[100];
    make_frame(frame, 100, 9);
    send_tx(e, 0, frame, 100);
    tdrv_kick(&e->t, TXQ);
    assert_true(tdrv_wait_used(&e->t, TXQ, 1));
    struct virtio_net_stats st;
    virtio_net_get_stats(0, &st);
    assert_int_equal(st.tx_dropped_disconnected, 1);
    assert_int_equal(st.tx_frames, 0);

    /* It comes back: the device reconnects by itself and traffic flows. */
    switch_accept(e, 0, 2);
    assert_true(wait_stats(reconnected));
    assert_int_equal(config_status(e) & 1, 1);
    send_tx(e, 1, frame, 100);
    tdrv_kick(&e->t, TXQ);
    assert_true(tdrv_wait_used(&e->t, TXQ, 2));
    uint8_t got[256];
    assert_int_equal(wait_readable(e->conn, 5000), 1);
    assert_int_equal(recv(e->conn, got, sizeof(got), 0), 100);
    assert_memory_equal(got, frame, 100);
    assert_true(log_has(e, "reconnecting"));
    env_destroy(e);
    (void)state;
}

static void test_malformed_tx_and_oversize_rx(void **state)
{
    struct env *e = env_create(true);
    switch_accept(e, 0, 1);
    assert_true(wait_stats(link_up));
    driver_up(e);
    uint8_t frame[2000];
    make_frame(frame, 2000, 1);
    send_tx(e, 0, frame, 10);   /* runt */
    send_tx(e, 1, frame, 2000); /* above mtu + 18 */
    tdrv_kick(&e->t, TXQ);
    assert_true(tdrv_wait_used(&e->t, TXQ, 2));
    struct virtio_net_stats st;
    virtio_net_get_stats(0, &st);
    assert_int_equal(st.tx_dropped_malformed, 2);
    assert_int_equal(wait_readable(e->conn, 100), 0); /* nothing reached the switch */

    /* A frame bigger than the posted buffer is dropped, the buffer kept. */
    post_rx(e, 0, HDR + 100);
    tdrv_kick(&e->t, RXQ);
    assert_int_equal(send(e->conn, frame, 500, 0), 500);
    assert_int_equal(send(e->conn, frame, 90, 0), 90);
    assert_true(tdrv_wait_used(&e->t, RXQ, 1));
    uint32_t id, len;
    tdrv_used_elem(&e->t, RXQ, 0, &id, &len);
    assert_int_equal(len, HDR + 90);
    virtio_net_get_stats(0, &st);
    assert_int_equal(st.rx_dropped_oversize, 1);

    /* A TX chain with a device-writable descriptor breaks the device. */
    tdrv_desc(&e->t, TXQ, 10, 0xa00000, HDR + 60, VIRTQ_DESC_F_WRITE, 0);
    tdrv_publish(&e->t, TXQ, 10);
    tdrv_kick(&e->t, TXQ);
    for (int i = 0; i < 500 && !(tdrv_status(&e->t) & VIRTIO_STATUS_NEEDS_RESET); i++)
        usleep(10000);
    assert_true(tdrv_status(&e->t) & VIRTIO_STATUS_NEEDS_RESET);
    assert_true(log_has(e, "device-writable"));
    /* After a reset it works again. */
    driver_up(e);
    send_tx(e, 0, frame, 60);
    tdrv_kick(&e->t, TXQ);
    assert_true(tdrv_wait_used(&e->t, TXQ, 1));
    assert_int_equal(wait_readable(e->conn, 5000), 1);
    env_destroy(e);
    (void)state;
}

/* Frames move in batches (sendmmsg, recvmmsg); every frame still arrives
 * once and in order, every chain completes in ring order, and frames the
 * device took from the switch while the driver had no buffer wait for
 * one. */
static void test_frames_in_batches(void **state)
{
    struct env *e = env_create(true);
    switch_accept(e, 0, 1);
    assert_true(wait_stats(link_up));
    driver_up(e);
    enum { NTX = 50, RUNT = 17, NRX = 40 };
    uint8_t frame[1514], got[2048];
    /* More chains than one sendmmsg takes, header and frame in one
     * descriptor, one runt among them. */
    for (uint16_t k = 0; k < NTX; k++) {
        uint64_t buf = 0xa00000ull + 0x1000ull * k;
        uint32_t len = k == RUNT ? 10 : 60 + k;
        memset(tdrv_ptr(&e->t, buf), 0, HDR);
        make_frame(tdrv_ptr(&e->t, buf + HDR), len, (uint8_t)k);
        tdrv_desc(&e->t, TXQ, k, buf, HDR + len, 0, 0);
        tdrv_publish(&e->t, TXQ, k);
    }
    tdrv_kick(&e->t, TXQ);
    assert_true(tdrv_wait_used(&e->t, TXQ, NTX));
    for (uint16_t k = 0; k < NTX; k++) {
        uint32_t id, len;
        tdrv_used_elem(&e->t, TXQ, k, &id, &len);
        assert_int_equal(id, k);
        if (k == RUNT)
            continue;
        assert_int_equal(wait_readable(e->conn, 5000), 1);
        assert_int_equal(recv(e->conn, got, sizeof(got), 0), 60 + k);
        make_frame(frame, 60 + k, (uint8_t)k);
        assert_memory_equal(got, frame, 60 + k);
    }
    assert_int_equal(wait_readable(e->conn, 50), 0);
    struct virtio_net_stats st;
    virtio_net_get_stats(0, &st);
    assert_int_equal(st.tx_frames, NTX - 1);
    assert_int_equal(st.tx_dropped_malformed, 1);

    /* Switch -> guest: NRX frames against one buffer, then the rest. */
    post_rx(e, 0, 2048);
    tdrv_kick(&e->t, RXQ);
    for (unsigned k = 0; k < NRX; k++) {
        make_frame(frame, 100 + k, (uint8_t)(k + 100));
        assert_int_equal(send(e->conn, frame, 100 + k, 0), (ssize_t)(100 + k));
    }
    assert_true(tdrv_wait_used(&e->t, RXQ, 1));
    usleep(50000);
    assert_int_equal(tdrv_used_idx(&e->t, RXQ), 1);
    virtio_net_get_stats(0, &st);
    assert_true(st.rx_held <= VIRTIO_NET_RX_HOLD);
    for (uint16_t k = 1; k < NRX; k++)
        post_rx(e, k, 2048);
    tdrv_kick(&e->t, RXQ);
    assert_true(tdrv_wait_used(&e->t, RXQ, NRX));
    for (uint16_t k = 0; k < NRX; k++) {
        uint32_t id, len;
        tdrv_used_elem(&e->t, RXQ, k, &id, &len);
        assert_int_equal(id, k);
        assert_int_equal(len, HDR + 100 + k);
        make_frame(frame, 100 + k, (uint8_t)(k + 100));
        assert_memory_equal(tdrv_ptr(&e->t, 0x800000ull + 0x4000ull * k + HDR), frame, 100 + k);
    }
    virtio_net_get_stats(0, &st);
    assert_int_equal(st.rx_frames, NRX);
    assert_int_equal(st.rx_held, 0);
    env_destroy(e);
    (void)state;
}

static void test_refused_hello_retries(void **state)
{
    struct env *e = env_create(true);
    switch_accept(e, VDSW_STATUS_UNKNOWN_PORTGROUP, 0);
    close(e->conn);
    e->conn = -1;
    /* The device logs the refusal and tries again after its backoff. */
    switch_accept(e, 0, 3);
    assert_true(wait_stats(link_up));
    assert_true(log_has(e, "refused"));
    struct virtio_net_stats st;
    virtio_net_get_stats(0, &st);
    assert_int_equal(st.port_id, 3);
    assert_int_equal(st.connects, 1);
    env_destroy(e);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_and_frames),
        cmocka_unit_test(test_reconnect_and_drops),
        cmocka_unit_test(test_malformed_tx_and_oversize_rx),
        cmocka_unit_test(test_frames_in_batches),
        cmocka_unit_test(test_refused_hello_retries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Two virtio-net devices (each in its own fake VM) attached to a real
 * vdfs-switch: a unicast frame from one reaches the other through the
 * switch, and a broadcast floods to it too.  Usage: test_net_switch
 * PATH-TO-vdfs-switch.  Exits 77 (skip) if the switch cannot start. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_vm.h"
#include "pci.h"
#include "test_driver.h"
#include "virtio_net.h"
#include "virtio_pci.h"
#include "virtqueue.h"

#define F(bit) (1ull << (bit))
#define NET_FEATURES (F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_RING_EVENT_IDX) | F(5) | F(16))
#define HDR 12

static pid_t switch_pid;
static char dir[64], sock_path[128];

static void cleanup(void)
{
    if (switch_pid > 0) {
        kill(switch_pid, SIGTERM);
        waitpid(switch_pid, NULL, 0);
    }
    char ctl[160];
    snprintf(ctl, sizeof(ctl), "%s.ctl", sock_path);
    unlink(ctl);
    unlink(sock_path);
    rmdir(dir);
}

static void die(const char *msg)
{
    fprintf(stderr, "FAIL: %s\n", msg);
    cleanup();
    exit(1);
}

static int run(const char *const argv[])
{
    pid_t p = fork();
    if (p == 0) {
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

struct vnic {
    struct fake_vm *vm;
    struct pci_bus *pci;
    struct tdrv t;
    uint8_t mac[6];
};

static void vnic_create(struct vnic *n, uint8_t last)
{
    n->vm = fake_vm_create(false);
    n->pci = pci_bus_create(&n->vm->svc);
    struct nic_config cfg = {.mac_set = true, .mac = {0x02, 0, 0, 0, 0, last}};
    memcpy(n->mac, cfg.mac, 6);
    snprintf(cfg.portgroup, sizeof(cfg.portgroup), "pg0");
    snprintf(cfg.switch_socket, sizeof(cfg.switch_socket), "%s", sock_path);
    if (virtio_net_create(n->pci, &n->vm->svc, &cfg) < 0)
        die("virtio_net_create");
    if (tdrv_setup(&n->t, n->vm, 0x1041, 2, NET_FEATURES) != 0x0f)
        die("driver setup");
}

static bool wait_link(int index)
{
    struct virtio_net_stats st;
    for (int i = 0; i < 500; i++) {
        if (virtio_net_get_stats(index, &st) == 0 && st.link_up)
            return true;
        usleep(10000);
    }
    return false;
}

static void transmit(struct vnic *n, uint16_t k, const uint8_t *frame, uint32_t len)
{
    uint64_t buf = 0xa00000ull + 0x4000ull * k;
    memset(tdrv_ptr(&n->t, buf), 0, HDR);
    memcpy(tdrv_ptr(&n->t, buf + HDR), frame, len);
    tdrv_desc(&n->t, 1, k, buf, HDR + len, 0, 0);
    tdrv_publish(&n->t, 1, k);
    tdrv_kick(&n->t, 1);
}

static void make_frame(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint32_t len)
{
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    f[12] = 0x88;
    f[13] = 0xb5; /* local experimental ethertype */
    for (uint32_t i = 14; i < len; i++)
        f[i] = (uint8_t)(i * 7);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH-TO-vdfs-switch\n", argv[0]);
        return 2;
    }
    snprintf(dir, sizeof(dir), "/tmp/vdfs-netsw-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(sock_path, sizeof(sock_path), "%s/sw.sock", dir);
    switch_pid = fork();
    if (switch_pid == 0) {
        execl(argv[1], argv[1], "daemon", "-f", "--name", "virtio-test", "--socket", sock_path,
              (char *)NULL);
        _exit(127);
    }
    const char *add[] = {argv[1], "--socket", sock_path, "portgroup", "add", "--name", "pg0", NULL};
    int rc = -1;
    for (int i = 0; i < 100 && rc != 0; i++) {
        usleep(20000);
        if (access(sock_path, F_OK) == 0)
            rc = run(add);
    }
    if (rc != 0) {
        fprintf(stderr, "SKIP: vdfs-switch did not start\n");
        cleanup();
        return 77;
    }

    struct vnic a, b;
    vnic_create(&a, 0xa);
    vnic_create(&b, 0xb);
    if (!wait_link(0) || !wait_link(1))
        die("ports did not come up");
    /* B posts receive buffers. */
    for (uint16_t k = 0; k < 4; k++) {
        uint64_t buf = 0x800000ull + 0x4000ull * k;
        tdrv_desc(&b.t, 0, k, buf, 2048, VIRTQ_DESC_F_WRITE, 0);
        tdrv_publish(&b.t, 0, k);
    }
    tdrv_kick(&b.t, 0);

    uint8_t frame[1514];
    make_frame(frame, b.mac, a.mac, 1000);
    transmit(&a, 0, frame, 1000);
    if (!tdrv_wait_used(&b.t, 0, 1))
        die("unicast frame did not arrive");
    uint32_t id, len;
    tdrv_used_elem(&b.t, 0, 0, &id, &len);
    if (len != HDR + 1000 || memcmp(tdrv_ptr(&b.t, 0x800000ull + HDR), frame, 1000) != 0)
        die("unicast frame arrived changed");

    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    make_frame(frame, bcast, a.mac, 60);
    transmit(&a, 1, frame, 60);
    if (!tdrv_wait_used(&b.t, 0, 2))
        die("broadcast frame did not arrive");
    tdrv_used_elem(&b.t, 0, 1, &id, &len);
    if (len != HDR + 60 || memcmp(tdrv_ptr(&b.t, 0x800000ull + 0x4000ull * id + HDR), frame, 60))
        die("broadcast frame arrived changed");

    virtio_net_destroy_all();
    pci_bus_destroy(a.pci);
    pci_bus_destroy(b.pci);
    fake_vm_destroy(a.vm);
    fake_vm_destroy(b.vm);
    cleanup();
    printf("PASS: frames crossed vdfs-switch between two virtio-net devices\n");
    return 0;
}

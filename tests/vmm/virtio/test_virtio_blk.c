/* virtio-blk through PCI and the virtio-pci transport, driven by a test
 * driver against fake guest RAM: normal I/O paths checked against the
 * backing file, and malicious chains that must end in NEEDS_RESET or an
 * error status, with the error logged and the process alive. */
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_vm.h"
#include "pci.h"
#include "test_driver.h"
#include "virtio_blk.h"
#include "virtio_pci.h"
#include "virtqueue.h"

#define BLK_DEVICE_ID 0x1042
#define DISK_SIZE (4u << 20)
#define F(bit) (1ull << (bit))
#define BLK_FEATURES                                                                              \
    (F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_RING_EVENT_IDX) | F(2) | F(6) | F(9) | F(13) | F(14))
#define HDR_BASE 0x300000ull

struct env {
    struct fake_vm *vm;
    struct pci_bus *pci;
    struct tdrv t;
    char path[64];
    char log_path[64];
    int saved_stderr;
    bool readonly;
};

static void fill_pattern(uint8_t *buf, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((i * 31 + seed * 7 + (i >> 9)) & 0xff);
}

/* The next env_create opens its disk with cache=none (O_DIRECT). */
static bool env_direct;
/* The next env_create serves its disk from this backend instead. */
static struct blk_backend *env_backend;
/* The next env_create makes its disk file in this directory. */
static const char *env_dir;

static struct env *env_create(bool readonly, bool ioeventfd_fails)
{
    struct env *e = calloc(1, sizeof(*e));
    e->readonly = readonly;
    snprintf(e->log_path, sizeof(e->log_path), "/tmp/vdfs-virtio-log-XXXXXX");
    int lfd = mkstemp(e->log_path);
    assert_true(lfd >= 0);
    fflush(stderr);
    e->saved_stderr = dup(2);
    dup2(lfd, 2);
    close(lfd);

    snprintf(e->path, sizeof(e->path), "%s/vdfs-virtio-disk-XXXXXX",
             env_dir ? env_dir : "/var/tmp");
    env_dir = NULL;
    int fd = mkstemp(e->path);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(DISK_SIZE);
    fill_pattern(buf, DISK_SIZE, 1);
    assert_int_equal(pwrite(fd, buf, DISK_SIZE, 0), DISK_SIZE);
    free(buf);
    close(fd);

    e->vm = fake_vm_create(ioeventfd_fails);
    e->pci = pci_bus_create(&e->vm->svc);
    assert_non_null(e->pci);
    struct disk_config cfg = {.readonly = readonly, .direct = env_direct};
    snprintf(cfg.path, sizeof(cfg.path), "%s", e->path);
    snprintf(cfg.serial, sizeof(cfg.serial), "VDFS-SERIAL-0001");
    if (env_backend)
        assert_int_equal(virtio_blk_create_backend(e->pci, &e->vm->svc, &cfg, env_backend), 0);
    else
        assert_int_equal(virtio_blk_create(e->pci, &e->vm->svc, &cfg), 0);
    env_backend = NULL;
    uint64_t features = BLK_FEATURES;
    if (readonly)
        features = F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_RING_EVENT_IDX) | F(5) | F(9);
    uint8_t st = tdrv_setup(&e->t, e->vm, BLK_DEVICE_ID, 1, features);
    assert_int_equal(st, 0x0f);
    return e;
}

static char *env_log(struct env *e)
{
    fflush(stderr);
    static char text[8192];
    int fd = open(e->log_path, O_RDONLY);
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    text[n > 0 ? n : 0] = 0;
    return text;
}

static void env_destroy(struct env *e)
{
    virtio_blk_destroy_all();
    pci_bus_destroy(e->pci);
    fake_vm_destroy(e->vm);
    fflush(stderr);
    dup2(e->saved_stderr, 2);
    close(e->saved_stderr);
    unlink(e->log_path);
    unlink(e->path);
    free(e);
}

/* Builds request `k` in descriptors 3k..3k+2: header, data, status. */
static uint16_t blk_request(struct env *e, unsigned k, uint32_t type, uint64_t sector,
                            uint64_t data, uint32_t len, bool device_writes)
{
    uint64_t hdr = HDR_BASE + 32ull * k;
    uint8_t *h = tdrv_ptr(&e->t, hdr);
    memset(h, 0, 17);
    memcpy(h, &type, 4);
    memcpy(h + 8, &sector, 8);
    h[16] = 0xee; /* status, overwritten by the device */
    uint16_t d = (uint16_t)(3 * k);
    if (len) {
        tdrv_desc(&e->t, 0, d, hdr, 16, VIRTQ_DESC_F_NEXT, d + 1);
        tdrv_desc(&e->t, 0, d + 1, data, len,
                  VIRTQ_DESC_F_NEXT | (device_writes ? VIRTQ_DESC_F_WRITE : 0), d + 2);
    } else {
        tdrv_desc(&e->t, 0, d, hdr, 16, VIRTQ_DESC_F_NEXT, d + 2);
    }
    tdrv_desc(&e->t, 0, d + 2, hdr + 16, 1, VIRTQ_DESC_F_WRITE, 0);
    tdrv_publish(&e->t, 0, d);
    return d;
}

static uint8_t req_status(struct env *e, unsigned k)
{
    return *(uint8_t *)tdrv_ptr(&e->t, HDR_BASE + 32ull * k + 16);
}

/* Submits one request, kicks, waits; returns its status. */
static uint8_t blk_sync(struct env *e, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
                        bool device_writes)
{
    uint16_t target = (uint16_t)(tdrv_used_idx(&e->t, 0) + 1);
    blk_request(e, 0, type, sector, data, len, device_writes);
    tdrv_kick(&e->t, 0);
    assert_true(tdrv_wait_used(&e->t, 0, target));
    return req_status(e, 0);
}

static void file_read(struct env *e, void *buf, size_t len, off_t off)
{
    int fd = open(e->path, O_RDONLY);
    assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
    close(fd);
}

static uint64_t file_blocks(struct env *e)
{
    struct stat st;
    assert_int_equal(stat(e->path, &st), 0);
    return (uint64_t)st.st_blocks;
}

/* ---- PCI and transport ---- */

static int io_threads_started;
static uint32_t io_thread_device_type;

static void count_io_thread(uint32_t device_type)
{
    __atomic_store_n(&io_thread_device_type, device_type, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&io_threads_started, 1, __ATOMIC_SEQ_CST);
}

static void test_io_thread_hook(void **state)
{
    int before = __atomic_load_n(&io_threads_started, __ATOMIC_SEQ_CST);
    struct env *e = env_create(false, false);
    /* The device has served a request, so its thread has started. */
    uint64_t buf = tdrv_alloc(&e->t, 512);
    assert_int_equal(blk_sync(e, 0, 0, buf, 512, true), 0);
    assert_int_equal(__atomic_load_n(&io_threads_started, __ATOMIC_SEQ_CST), before + 1);
    /* The hook learns which device it confines (vdfs-vm picks the profile). */
    assert_int_equal(__atomic_load_n(&io_thread_device_type, __ATOMIC_SEQ_CST), VIRTIO_ID_BLOCK);
    env_destroy(e);
    (void)state;
}

static void test_pci_enumeration(void **state)
{
    struct env *e = env_create(false, false);
    struct fake_vm *vm = e->vm;
    unsigned s = e->t.slot;
    assert_int_equal(tdrv_cfg_read(vm, 0, 0, 2), 0x8086);
    assert_int_equal(tdrv_cfg_read(vm, 0, 0x0a, 2), 0x0600);
    assert_int_equal(s, 1);
    assert_int_equal(tdrv_cfg_read(vm, s, PCI_REVISION_ID, 1), 1);
    assert_int_equal(tdrv_cfg_read(vm, s, PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
    assert_true(tdrv_cfg_read(vm, s, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
    assert_int_equal(tdrv_cfg_read(vm, 5, 0, 4), 0xffffffffu); /* empty slot */

    unsigned common = tdrv_find_cap(vm, s, PCI_CAP_ID_VNDR, 1);
    unsigned notify = tdrv_find_cap(vm, s, PCI_CAP_ID_VNDR, 2);
    unsigned isr = tdrv_find_cap(vm, s, PCI_CAP_ID_VNDR, 3);
    unsigned devcfg = tdrv_find_cap(vm, s, PCI_CAP_ID_VNDR, 4);
    unsigned pcicfg = tdrv_find_cap(vm, s, PCI_CAP_ID_VNDR, 5);
    unsigned msix = tdrv_find_cap(vm, s, PCI_CAP_ID_MSIX, -1);
    assert_true(common && notify && isr && devcfg && pcicfg && msix);
    assert_int_equal(tdrv_cfg_read(vm, s, common + 8, 4), VIRTIO_PCI_COMMON_OFF);
    assert_int_equal(tdrv_cfg_read(vm, s, notify + 8, 4), VIRTIO_PCI_NOTIFY_OFF);
    assert_int_equal(tdrv_cfg_read(vm, s, notify + 16, 4), VIRTIO_PCI_NOTIFY_MULT);
    assert_int_equal(tdrv_cfg_read(vm, s, isr + 8, 4), VIRTIO_PCI_ISR_OFF);
    assert_int_equal(tdrv_cfg_read(vm, s, devcfg + 8, 4), VIRTIO_PCI_DEVICE_OFF);
    assert_int_equal(tdrv_cfg_read(vm, s, msix + 2, 2) & 0x7ff, 1); /* 2 vectors */

    /* Device config: capacity and seg_max. */
    uint64_t cap = fake_vm_read(vm, BUS_MMIO, e->t.bar + VIRTIO_PCI_DEVICE_OFF, 8);
    assert_int_equal(cap, DISK_SIZE / 512);
    assert_int_equal(fake_vm_read(vm, BUS_MMIO, e->t.bar + VIRTIO_PCI_DEVICE_OFF + 12, 4),
                     VIRTIO_BLK_SEG_MAX);

    /* The PCI-config-access window reads num_queues from common config. */
    tdrv_cfg_write(vm, s, pcicfg + 8, VIRTIO_COMMON_NUMQ, 4);
    tdrv_cfg_write(vm, s, pcicfg + 12, 2, 4);
    assert_int_equal(tdrv_cfg_read(vm, s, pcicfg + 16, 2), 1);

    /* BAR sizing, then relocation with decoding off and back on. */
    uint64_t bar = e->t.bar;
    assert_true(bar >= 0xe0000000ull && bar < 0xfec00000ull);
    tdrv_cfg_write(vm, s, PCI_BAR0, 0xffffffffu, 4);
    assert_int_equal(tdrv_cfg_read(vm, s, PCI_BAR0, 4), (uint32_t)~(VIRTIO_PCI_BAR_SIZE - 1));
    tdrv_cfg_write(vm, s, PCI_BAR0, (uint32_t)bar, 4);
    assert_int_equal(tdrv_common_read(&e->t, VIRTIO_COMMON_NUMQ, 2), 1);
    assert_int_equal(vm->nioeventfds, 1);
    assert_int_equal(vm->ioeventfds[0].addr, bar + VIRTIO_PCI_NOTIFY_OFF);

    uint64_t moved = 0xf0000000ull;
    tdrv_cfg_write(vm, s, PCI_COMMAND, PCI_COMMAND_MASTER, 2);
    assert_int_equal(fake_vm_read(vm, BUS_MMIO, bar + VIRTIO_COMMON_NUMQ, 2), 0xffff);
    tdrv_cfg_write(vm, s, PCI_BAR0, (uint32_t)moved, 4);
    tdrv_cfg_write(vm, s, PCI_COMMAND, PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY, 2);
    e->t.bar = moved;
    assert_int_equal(tdrv_common_read(&e->t, VIRTIO_COMMON_NUMQ, 2), 1);
    assert_int_equal(vm->nioeventfds, 1);
    assert_int_equal(vm->ioeventfds[0].addr, moved + VIRTIO_PCI_NOTIFY_OFF);

    /* The device still works at its new address. */
    uint64_t buf = tdrv_alloc(&e->t, 512);
    assert_int_equal(blk_sync(e, 0, 0, buf, 512, true), 0);
    env_destroy(e);
    (void)state;
}

static void test_feature_negotiation(void **state)
{
    struct env *e = env_create(false, false);
    /* An unoffered feature (indirect descriptors) is refused. */
    uint8_t st = tdrv_setup(&e->t, e->vm, BLK_DEVICE_ID, 1, BLK_FEATURES | F(28));
    assert_false(st & VIRTIO_STATUS_FEATURES_OK);
    /* So is a legacy driver without VERSION_1. */
    st = tdrv_setup(&e->t, e->vm, BLK_DEVICE_ID, 1, F(9));
    assert_false(st & VIRTIO_STATUS_FEATURES_OK);
    /* The offered set: read back through device_feature_select. */
    tdrv_common_write(&e->t, VIRTIO_COMMON_DFSELECT, 1, 4);
    assert_int_equal(tdrv_common_read(&e->t, VIRTIO_COMMON_DF, 4), 1); /* VERSION_1 */
    tdrv_common_write(&e->t, VIRTIO_COMMON_DFSELECT, 0, 4);
    uint32_t low = (uint32_t)tdrv_common_read(&e->t, VIRTIO_COMMON_DF, 4);
    assert_int_equal(low, (uint32_t)BLK_FEATURES);
    st = tdrv_setup(&e->t, e->vm, BLK_DEVICE_ID, 1, BLK_FEATURES);
    assert_int_equal(st, 0x0f);
    env_destroy(e);
    (void)state;
}

/* ---- normal I/O ---- */

static void test_write_then_read(void **state)
{
    struct env *e = env_create(false, true); /* notify through MMIO exits */
    uint64_t w = tdrv_alloc(&e->t, 3 * 512), r = tdrv_alloc(&e->t, 3 * 512);
    fill_pattern(tdrv_ptr(&e->t, w), 3 * 512, 99);
    /* Data split over two descriptors at an odd boundary. */
    uint32_t type = 1;
    uint64_t sector = 10;
    uint8_t *h = tdrv_ptr(&e->t, HDR_BASE);
    memcpy(h, &type, 4);
    memcpy(h + 8, &sector, 8);
    tdrv_desc(&e->t, 0, 0, HDR_BASE, 16, VIRTQ_DESC_F_NEXT, 1);
    tdrv_desc(&e->t, 0, 1, w, 700, VIRTQ_DESC_F_NEXT, 2);
    tdrv_desc(&e->t, 0, 2, w + 700, 3 * 512 - 700, VIRTQ_DESC_F_NEXT, 3);
    tdrv_desc(&e->t, 0, 3, HDR_BASE + 16, 1, VIRTQ_DESC_F_WRITE, 0);
    tdrv_publish(&e->t, 0, 0);
    tdrv_kick(&e->t, 0);
    assert_true(tdrv_wait_used(&e->t, 0, 1));
    assert_int_equal(req_status(e, 0), 0);

    uint8_t file[3 * 512];
    file_read(e, file, sizeof(file), 10 * 512);
    assert_memory_equal(file, tdrv_ptr(&e->t, w), sizeof(file));

    assert_int_equal(blk_sync(e, 0, 10, r, 3 * 512, true), 0);
    assert_memory_equal(tdrv_ptr(&e->t, r), tdrv_ptr(&e->t, w), 3 * 512);
    uint32_t id, len;
    tdrv_used_elem(&e->t, 0, 1, &id, &len);
    assert_int_equal(id, 0);
    assert_int_equal(len, 3 * 512 + 1);
    env_destroy(e);
    (void)state;
}

static void test_many_in_flight(void **state)
{
    struct env *e = env_create(false, false);
    enum { N = 20 };
    uint64_t buf = tdrv_alloc(&e->t, N * 4096ull);
    for (unsigned k = 0; k < N; k++)
        blk_request(e, k, 0, 8ull * (N - k) * 3, buf + 4096ull * k, 4096, true);
    tdrv_kick(&e->t, 0); /* one kick for the whole batch */
    assert_true(tdrv_wait_used(&e->t, 0, N));
    bool seen[N] = {false};
    for (uint16_t i = 0; i < N; i++) {
        uint32_t id, len;
        tdrv_used_elem(&e->t, 0, i, &id, &len);
        assert_true(id % 3 == 0 && id / 3 < N);
        assert_false(seen[id / 3]);
        seen[id / 3] = true;
        assert_int_equal(len, 4097);
    }
    uint8_t expect[4096];
    for (unsigned k = 0; k < N; k++) {
        assert_int_equal(req_status(e, k), 0);
        file_read(e, expect, sizeof(expect), 512ll * 8 * (N - k) * 3);
        assert_memory_equal(tdrv_ptr(&e->t, buf + 4096ull * k), expect, sizeof(expect));
    }
    env_destroy(e);
    (void)state;
}

/* cache=none: requests O_DIRECT can take and requests it cannot (a
 * segment of 700 bytes) both read and write the right bytes. */
static void test_cache_none(void **state)
{
    char probe[] = "/var/tmp/vdfs-virtio-direct-XXXXXX";
    int pfd = mkstemp(probe);
    assert_true(pfd >= 0);
    close(pfd);
    pfd = open(probe, O_RDWR | O_DIRECT);
    unlink(probe);
    if (pfd < 0)
        skip(); /* this filesystem has no O_DIRECT */
    close(pfd);
    env_direct = true;
    struct env *e = env_create(false, false);
    env_direct = false;
    uint64_t w = tdrv_alloc(&e->t, 8192), r = tdrv_alloc(&e->t, 8192);
    fill_pattern(tdrv_ptr(&e->t, w), 8192, 77);
    /* Unaligned: 3 sectors split 700 + 836 at sector 10. */
    uint8_t *h = tdrv_ptr(&e->t, HDR_BASE);
    uint32_t type = 1;
    uint64_t sector = 10;
    memcpy(h, &type, 4);
    memcpy(h + 8, &sector, 8);
    tdrv_desc(&e->t, 0, 0, HDR_BASE, 16, VIRTQ_DESC_F_NEXT, 1);
    tdrv_desc(&e->t, 0, 1, w, 700, VIRTQ_DESC_F_NEXT, 2);
    tdrv_desc(&e->t, 0, 2, w + 700, 3 * 512 - 700, VIRTQ_DESC_F_NEXT, 3);
    tdrv_desc(&e->t, 0, 3, HDR_BASE + 16, 1, VIRTQ_DESC_F_WRITE, 0);
    tdrv_publish(&e->t, 0, 0);
    tdrv_kick(&e->t, 0);
    assert_true(tdrv_wait_used(&e->t, 0, 1));
    assert_int_equal(req_status(e, 0), 0);
    /* Aligned: 4 KiB at sector 64 from the second half of the buffer. */
    assert_int_equal(blk_sync(e, 1, 64, w + 4096, 4096, false), 0);
    uint8_t file[4096];
    file_read(e, file, 3 * 512, 10 * 512);
    assert_memory_equal(file, tdrv_ptr(&e->t, w), 3 * 512);
    file_read(e, file, 4096, 64 * 512);
    assert_memory_equal(file, tdrv_ptr(&e->t, w + 4096), 4096);
    /* Read both back, aligned and not. */
    assert_int_equal(blk_sync(e, 0, 64, r, 4096, true), 0);
    assert_memory_equal(tdrv_ptr(&e->t, r), tdrv_ptr(&e->t, w + 4096), 4096);
    assert_int_equal(blk_sync(e, 0, 10, r + 4096 + 100, 3 * 512, true), 0);
    assert_memory_equal(tdrv_ptr(&e->t, r + 4096 + 100), tdrv_ptr(&e->t, w), 3 * 512);
    env_destroy(e);
    (void)state;
}

/* Adjacent writes (and reads) of one kick are served by merged backend
 * I/Os; each request must still get its own data, status and used length,
 * and a request elsewhere (or a flush) must split the run. */
static void test_adjacent_requests_merge(void **state)
{
    struct env *e = env_create(false, false);
    enum { N = 14, FAR = 4096 };
    /* k 0-5: writes at sectors 0, 8, ..., 40; k 6: a read far away; k 7-11:
     * writes continuing at 48, ..., 80; k 12: flush; k 13: a write at 88. */
    uint64_t buf = tdrv_alloc(&e->t, N * 4096ull);
    uint64_t sector[N];
    for (unsigned k = 0; k < N; k++) {
        sector[k] = k < 6 ? 8ull * k : k == 6 ? FAR : k < 12 ? 8ull * (k - 1) : 8ull * (k - 2);
        if (k == 12) {
            blk_request(e, k, 4, 0, 0, 0, false);
            continue;
        }
        fill_pattern(tdrv_ptr(&e->t, buf + 4096ull * k), 4096, 500 + k);
        blk_request(e, k, k == 6 ? 0 : 1, sector[k], buf + 4096ull * k, 4096, k == 6);
    }
    tdrv_kick(&e->t, 0);
    assert_true(tdrv_wait_used(&e->t, 0, N));
    for (uint16_t i = 0; i < N; i++) {
        uint32_t id, len;
        tdrv_used_elem(&e->t, 0, i, &id, &len);
        assert_int_equal(len, id / 3 == 6 ? 4097 : 1);
    }
    uint8_t expect[4096];
    for (unsigned k = 0; k < N; k++) {
        assert_int_equal(req_status(e, k), 0);
        if (k == 12)
            continue;
        file_read(e, expect, sizeof(expect), 512ll * (off_t)sector[k]);
        assert_memory_equal(tdrv_ptr(&e->t, buf + 4096ull * k), expect, sizeof(expect));
    }
    /* Eight adjacent reads in one kick, each into its own buffer. */
    uint16_t target = (uint16_t)(tdrv_used_idx(&e->t, 0) + 8);
    memset(tdrv_ptr(&e->t, buf), 0, 8 * 4096);
    for (unsigned k = 0; k < 8; k++)
        blk_request(e, k, 0, 8ull * k, buf + 4096ull * k, 4096, true);
    tdrv_kick(&e->t, 0);
    assert_true(tdrv_wait_used(&e->t, 0, target));
    for (unsigned k = 0; k < 8; k++) {
        assert_int_equal(req_status(e, k), 0);
        file_read(e, expect, sizeof(expect), 4096ll * k);
        assert_memory_equal(tdrv_ptr(&e->t, buf + 4096ull * k), expect, sizeof(expect));
    }
    env_destroy(e);
    (void)state;
}

/* Reads `n` (at most 20) ranges in one kick and checks each against the
 * pattern env_create wrote. */
static void read_batch_and_check(struct env *e, const uint64_t *offset, const uint32_t *len,
                                 unsigned n)
{
    static uint8_t expect[DISK_SIZE];
    fill_pattern(expect, DISK_SIZE, 1);
    uint64_t buf = tdrv_alloc(&e->t, 20 * 8192ull);
    uint16_t target = (uint16_t)(tdrv_used_idx(&e->t, 0) + n);
    for (unsigned k = 0; k < n; k++)
        blk_request(e, k, 0, offset[k] / 512, buf + 8192ull * k, len[k], true);
    tdrv_kick(&e->t, 0);
    assert_true(tdrv_wait_used(&e->t, 0, target));
    for (unsigned k = 0; k < n; k++) {
        assert_int_equal(req_status(e, k), 0);
        assert_memory_equal(tdrv_ptr(&e->t, buf + 8192ull * k), expect + offset[k], len[k]);
    }
}

/* Drops the disk file's pages from `from` to its end from the page cache
 * and checks that they are gone and the ones before are there. */
static void evict_tail(struct env *e, uint64_t from)
{
    int fd = open(e->path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(fsync(fd), 0); /* only clean pages can be dropped */
    assert_int_equal(posix_fadvise(fd, (off_t)from, 0, POSIX_FADV_DONTNEED), 0);
    void *map = mmap(NULL, DISK_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(map != MAP_FAILED);
    static unsigned char resident[DISK_SIZE / 4096];
    assert_int_equal(mincore(map, DISK_SIZE, resident), 0);
    for (uint64_t page = 0; page < DISK_SIZE / 4096; page++)
        assert_int_equal(resident[page] & 1, page * 4096 < from);
    munmap(map, DISK_SIZE);
    close(fd);
}

/* A buffered disk first tries the page cache alone for reads (RWF_NOWAIT)
 * and reads from the disk what the cache does not hold whole: ranges not
 * in the cache, one half in it, and a long run of misses and then of hits
 * (which switch the device between its two ways of reading) all return
 * the file's bytes. */
static void test_reads_from_cache_and_disk(void **state)
{
    struct env *e = env_create(false, false);
    const uint64_t half = DISK_SIZE / 2;
    uint64_t offset[20];
    uint32_t len[20];
    for (int round = 0; round < 3; round++) {
        evict_tail(e, half);
        /* Mostly misses, one read starting in the cache and ending out of it. */
        for (unsigned k = 0; k < 20; k++) {
            offset[k] = k < 4 ? 12288ull * k : half + 36864ull * k + 512ull * round;
            len[k] = 4096;
        }
        offset[19] = half - 4096;
        len[19] = 8192;
        read_batch_and_check(e, offset, len, 20);
    }
    /* Hits only, enough of them for the device to go back to the cache. */
    for (int batch = 0; batch < 20; batch++) {
        for (unsigned k = 0; k < 20; k++) {
            offset[k] = 20480ull * k + 4096ull * (unsigned)batch;
            len[k] = 4096;
        }
        read_batch_and_check(e, offset, len, 20);
    }
    env_destroy(e);
    (void)state;
}

/* tmpfs takes no RWF_NOWAIT: every read goes to the "disk", correctly. */
static void test_reads_without_nowait(void **state)
{
    struct stat st;
    if (stat("/dev/shm", &st) != 0 || !S_ISDIR(st.st_mode))
        skip();
    env_dir = "/dev/shm";
    struct env *e = env_create(false, false);
    uint64_t offset[20];
    uint32_t len[20];
    for (int batch = 0; batch < 4; batch++) {
        for (unsigned k = 0; k < 20; k++) {
            offset[k] = 65536ull * k + 8192ull * (unsigned)batch;
            len[k] = k % 2 ? 8192 : 4096;
        }
        read_batch_and_check(e, offset, len, 20);
    }
    env_destroy(e);
    (void)state;
}

static void test_flush_and_get_id(void **state)
{
    struct env *e = env_create(false, false);
    assert_int_equal(blk_sync(e, 4, 0, 0, 0, false), 0);
    uint64_t id = tdrv_alloc(&e->t, 20);
    assert_int_equal(blk_sync(e, 8, 0, id, 20, true), 0);
    assert_memory_equal(tdrv_ptr(&e->t, id), "VDFS-SERIAL-0001\0\0\0\0", 20);
    /* An unknown request type is UNSUPP, not a broken device. */
    assert_int_equal(blk_sync(e, 77, 0, 0, 0, false), 2);
    assert_false(tdrv_status(&e->t) & VIRTIO_STATUS_NEEDS_RESET);
    env_destroy(e);
    (void)state;
}

static uint64_t discard_segment(struct env *e, uint64_t sector, uint32_t count, uint32_t flags)
{
    uint64_t seg = tdrv_alloc(&e->t, 16);
    uint8_t *p = tdrv_ptr(&e->t, seg);
    memcpy(p, &sector, 8);
    memcpy(p + 8, &count, 4);
    memcpy(p + 12, &flags, 4);
    return seg;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void test_discard_punches(void **state)
{
    struct env *e = env_create(false, false);
    uint64_t before = file_blocks(e);
    uint64_t seg = discard_segment(e, 2048, 2048, 0); /* 1 MiB at 1 MiB */
    assert_int_equal(blk_sync(e, 11, 0, seg, 16, false), 0);
    uint64_t after = file_blocks(e);
    assert_true(after + 2048 <= before); /* 1 MiB = 2048 blocks of 512 */
    static uint8_t buf[1 << 20];
    file_read(e, buf, sizeof(buf), 1 << 20);
    assert_true(all_zero(buf, sizeof(buf)));
    file_read(e, buf, 4096, (1 << 20) - 4096); /* the neighbour is intact */
    assert_false(all_zero(buf, 4096));
    /* Discard with the unmap flag is UNSUPP by the spec. */
    seg = discard_segment(e, 0, 8, 1);
    assert_int_equal(blk_sync(e, 11, 0, seg, 16, false), 2);
    env_destroy(e);
    (void)state;
}

static void test_write_zeroes(void **state)
{
    struct env *e = env_create(false, false);
    static uint8_t buf[64 * 512];
    uint64_t seg = discard_segment(e, 100, 64, 0);
    assert_int_equal(blk_sync(e, 13, 0, seg, 16, false), 0);
    file_read(e, buf, sizeof(buf), 100 * 512);
    assert_true(all_zero(buf, sizeof(buf)));
    file_read(e, buf, 512, 99 * 512);
    assert_false(all_zero(buf, 512));
    file_read(e, buf, 512, 164 * 512);
    assert_false(all_zero(buf, 512));
    seg = discard_segment(e, 4096, 2048, 1); /* may unmap */
    uint64_t before = file_blocks(e);
    assert_int_equal(blk_sync(e, 13, 0, seg, 16, false), 0);
    file_read(e, buf, sizeof(buf), 4096 * 512);
    assert_true(all_zero(buf, sizeof(buf)));
    assert_true(file_blocks(e) < before);
    env_destroy(e);
    (void)state;
}

/* ---- requests that are wrong but legal: error status ---- */

static void test_sector_past_capacity(void **state)
{
    struct env *e = env_create(false, false);
    uint64_t buf = tdrv_alloc(&e->t, 1024);
    uint64_t last = DISK_SIZE / 512 - 1;
    assert_int_equal(blk_sync(e, 0, last, buf, 512, true), 0);
    assert_int_equal(blk_sync(e, 0, last, buf, 1024, true), 1);
    assert_int_equal(blk_sync(e, 1, DISK_SIZE / 512, buf, 512, false), 1);
    assert_int_equal(blk_sync(e, 0, UINT64_MAX, buf, 512, true), 1);
    uint64_t seg = discard_segment(e, last, 2, 0);
    assert_int_equal(blk_sync(e, 11, 0, seg, 16, false), 1);
    /* A length that is not a whole number of sectors. */
    assert_int_equal(blk_sync(e, 0, 0, buf, 100, true), 1);
    assert_false(tdrv_status(&e->t) & VIRTIO_STATUS_NEEDS_RESET);
    assert_non_null(strstr(env_log(e), "capacity"));
    env_destroy(e);
    (void)state;
}

static void test_read_only_disk(void **state)
{
    struct env *e = env_create(true, false);
    tdrv_common_write(&e->t, VIRTIO_COMMON_DFSELECT, 0, 4);
    assert_true(tdrv_common_read(&e->t, VIRTIO_COMMON_DF, 4) & F(5));
    uint64_t buf = tdrv_alloc(&e->t, 512);
    memset(tdrv_ptr(&e->t, buf), 0x5a, 512);
    assert_int_equal(blk_sync(e, 1, 0, buf, 512, false), 1);
    uint64_t seg = discard_segment(e, 0, 8, 0);
    assert_int_equal(blk_sync(e, 11, 0, seg, 16, false), 2);
    assert_int_equal(blk_sync(e, 13, 0, seg, 16, false), 2);
    uint8_t file[512], expect[DISK_SIZE > 512 ? 512 : 1];
    file_read(e, file, 512, 0);
    fill_pattern(expect, 512, 1);
    assert_memory_equal(file, expect, 512);
    assert_int_equal(blk_sync(e, 0, 0, buf, 512, true), 0); /* reads still work */
    assert_memory_equal(tdrv_ptr(&e->t, buf), expect, 512);
    assert_non_null(strstr(env_log(e), "read-only"));
    env_destroy(e);
    (void)state;
}

/* ---- malicious chains: NEEDS_RESET, logged, device recovers on reset ---- */

static void expect_broken(struct env *e, const char *log_fragment)
{
    for (int i = 0; i < 50000 && !(tdrv_status(&e->t) & VIRTIO_STATUS_NEEDS_RESET); i++)
        usleep(100);
    assert_true(tdrv_status(&e->t) & VIRTIO_STATUS_NEEDS_RESET);
    const char *log = env_log(e);
    if (!strstr(log, log_fragment))
        fail_msg("log lacks \"%s\": %s", log_fragment, log);
    assert_non_null(strstr(log, "needs reset"));
    /* A valid request is ignored while broken... */
    uint16_t used = tdrv_used_idx(&e->t, 0);
    uint64_t buf = tdrv_alloc(&e->t, 512);
    blk_request(e, 5, 0, 0, buf, 512, true);
    tdrv_kick(&e->t, 0);
    usleep(20000);
    assert_int_equal(tdrv_used_idx(&e->t, 0), used);
    /* ...and served again after a reset and a fresh setup. */
    assert_int_equal(tdrv_setup(&e->t, e->vm, BLK_DEVICE_ID, 1, BLK_FEATURES), 0x0f);
    assert_int_equal(blk_sync(e, 0, 0, buf, 512, true), 0);
}

static void test_descriptor_loop(void **state)
{
    struct env *e = env_create(false, false);
    uint64_t buf = tdrv_alloc(&e->t, 512);
    tdrv_desc(&e->t, 0, 0, HDR_BASE, 16, VIRTQ_DESC_F_NEXT, 1);
    tdrv_desc(&e->t, 0, 1, buf, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
    tdrv_desc(&e->t, 0, 2, buf, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
    tdrv_publish(&e->t, 0, 0);
    tdrv_kick(&e->t, 0);
    expect_broken(e, "loop");
    env_destroy(e);
    (void)state;
}

static void test_address_outside_ram(void **state)
{
    struct env *e = env_create(false, false);
    blk_request(e, 0, 0, 0, FAKE_RAM_SIZE - 256, 512, true);
    tdrv_kick(&e->t, 0);
    expect_broken(e, "outside guest RAM");
    env_destroy(e);
    (void)state;
}

static void test_length_overflow(void **state)
{
    struct env *e = env_create(false, false);
    blk_request(e, 0, 0, 0, 0xfffffffffffff000ull, 0x2000, true);
    tdrv_kick(&e->t, 0);
    expect_broken(e, "outside guest RAM");
    env_destroy(e);
    (void)state;
}

static void test_bad_head_index(void **state)
{
    struct env *e = env_create(false, false);
    tdrv_publish(&e->t, 0, TDRV_QSIZE + 3);
    tdrv_kick(&e->t, 0);
    expect_broken(e, "head index");
    env_destroy(e);
    (void)state;
}

/* A head made available again while its request is still in flight: the
 * device would otherwise take on requests without bound. */
static void test_head_reused_in_flight(void **state)
{
    struct env *e = env_create(false, false);
    uint64_t buf = tdrv_alloc(&e->t, 512);
    uint16_t head = blk_request(e, 0, 0 /* IN */, 0, buf, 512, true);
    tdrv_publish(&e->t, 0, head);
    tdrv_kick(&e->t, 0);
    expect_broken(e, "made available again");
    env_destroy(e);
    (void)state;
}

static void test_bad_next_index(void **state)
{
    struct env *e = env_create(false, false);
    tdrv_desc(&e->t, 0, 0, HDR_BASE, 16, VIRTQ_DESC_F_NEXT, 0xffff);
    tdrv_publish(&e->t, 0, 0);
    tdrv_kick(&e->t, 0);
    expect_broken(e, "links to index");
    env_destroy(e);
    (void)state;
}

static void test_avail_index_jump(void **state)
{
    struct env *e = env_create(false, false);
    uint64_t buf = tdrv_alloc(&e->t, 512);
    blk_request(e, 0, 0, 0, buf, 512, true);
    e->t.q[0].avail_idx = TDRV_QSIZE + 5;
    __atomic_store_n((uint16_t *)tdrv_ptr(&e->t, e->t.q[0].avail + 2), e->t.q[0].avail_idx,
                     __ATOMIC_RELEASE);
    tdrv_kick(&e->t, 0);
    expect_broken(e, "jumped");
    env_destroy(e);
    (void)state;
}

static void test_wrong_direction(void **state)
{
    struct env *e = env_create(false, false);
    uint64_t buf = tdrv_alloc(&e->t, 512);
    blk_request(e, 0, 0 /* IN */, 0, buf, 512, false /* but device-readable */);
    tdrv_kick(&e->t, 0);
    expect_broken(e, "wrong direction");
    env_destroy(e);
    (void)state;
}

static void test_missing_status(void **state)
{
    struct env *e = env_create(false, false);
    tdrv_desc(&e->t, 0, 0, HDR_BASE, 16, 0, 0);
    tdrv_publish(&e->t, 0, 0);
    tdrv_kick(&e->t, 0);
    expect_broken(e, "status byte");
    env_destroy(e);
    (void)state;
}

static void test_indirect_refused(void **state)
{
    struct env *e = env_create(false, false);
    uint64_t table = tdrv_alloc(&e->t, 64);
    tdrv_desc(&e->t, 0, 0, table, 48, VIRTQ_DESC_F_INDIRECT, 0);
    tdrv_publish(&e->t, 0, 0);
    tdrv_kick(&e->t, 0);
    expect_broken(e, "indirect");
    env_destroy(e);
    (void)state;
}

static void test_readable_after_writable(void **state)
{
    struct env *e = env_create(false, false);
    uint64_t buf = tdrv_alloc(&e->t, 512);
    tdrv_desc(&e->t, 0, 0, HDR_BASE, 16, VIRTQ_DESC_F_NEXT, 1);
    tdrv_desc(&e->t, 0, 1, HDR_BASE + 16, 1, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
    tdrv_desc(&e->t, 0, 2, buf, 512, 0, 0);
    tdrv_publish(&e->t, 0, 0);
    tdrv_kick(&e->t, 0);
    expect_broken(e, "readable after");
    env_destroy(e);
    (void)state;
}

static void test_ring_outside_ram(void **state)
{
    struct env *e = env_create(false, false);
    tdrv_reset(&e->t);
    tdrv_common_write(&e->t, VIRTIO_COMMON_STATUS, 3, 1);
    tdrv_common_write(&e->t, VIRTIO_COMMON_GF, (uint32_t)BLK_FEATURES, 4);
    tdrv_common_write(&e->t, VIRTIO_COMMON_GFSELECT, 1, 4);
    tdrv_common_write(&e->t, VIRTIO_COMMON_GF, 1, 4);
    tdrv_common_write(&e->t, VIRTIO_COMMON_STATUS, 0xb, 1);
    tdrv_common_write(&e->t, VIRTIO_COMMON_Q_SELECT, 0, 2);
    tdrv_common_write(&e->t, VIRTIO_COMMON_Q_DESCLO, FAKE_RAM_SIZE - 16, 8);
    tdrv_common_write(&e->t, VIRTIO_COMMON_Q_ENABLE, 1, 2);
    assert_int_equal(tdrv_common_read(&e->t, VIRTIO_COMMON_Q_ENABLE, 2), 0);
    expect_broken(e, "outside guest RAM");
    env_destroy(e);
    (void)state;
}

/* ---- interrupts ---- */

static uint64_t efd_count(int fd)
{
    eventfd_t v = 0;
    if (eventfd_read(fd, &v) < 0)
        return 0;
    return v;
}

/* MSI-X table entry 1 at 0xfee00000 with `data`, MSI-X on, and vector 1
 * for queue 0; returns the entry's address. */
static uint64_t program_vector1(struct env *e, uint32_t data, unsigned *msix)
{
    struct tdrv *t = &e->t;
    *msix = tdrv_find_cap(e->vm, t->slot, PCI_CAP_ID_MSIX, -1);
    uint64_t entry = t->bar + VIRTIO_PCI_MSIX_TABLE_OFF + 16;
    fake_vm_write(e->vm, BUS_MMIO, entry, 0xfee00000u, 4);
    fake_vm_write(e->vm, BUS_MMIO, entry + 4, 0, 4);
    fake_vm_write(e->vm, BUS_MMIO, entry + 8, data, 4);
    tdrv_cfg_write(e->vm, t->slot, *msix + 2, 0x8000 | 1, 2);
    tdrv_common_write(t, VIRTIO_COMMON_Q_SELECT, 0, 2);
    tdrv_common_write(t, VIRTIO_COMMON_Q_MSIX, 1, 2);
    return entry;
}

static void test_msix_and_event_idx(void **state)
{
    struct env *e = env_create(false, false);
    struct tdrv *t = &e->t;
    unsigned msix;
    /* Vector 1 for queue 0, masked at first (a new entry is masked). */
    uint64_t entry = program_vector1(e, 0x41, &msix);
    assert_int_equal(tdrv_common_read(t, VIRTIO_COMMON_Q_MSIX, 2), 1);
    tdrv_common_write(t, VIRTIO_COMMON_MSIX, 7, 2); /* no such vector */
    assert_int_equal(tdrv_common_read(t, VIRTIO_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);

    uint64_t buf = tdrv_alloc(t, 512);
    assert_int_equal(blk_sync(e, 0, 0, buf, 512, true), 0);
    /* Masked: a pending bit, no route, no interrupt. */
    assert_int_equal(fake_vm_read(e->vm, BUS_MMIO, t->bar + VIRTIO_PCI_MSIX_PBA_OFF, 8), 2);
    assert_int_equal(fake_vm_route_efd(e->vm, 0xfee00000u, 0x41), -1);
    /* Unmasking delivers the pending interrupt. */
    fake_vm_write(e->vm, BUS_MMIO, entry + 12, 0, 4);
    int efd = fake_vm_route_efd(e->vm, 0xfee00000u, 0x41);
    assert_true(efd >= 0);
    assert_int_equal(efd_count(efd), 1);
    assert_int_equal(fake_vm_read(e->vm, BUS_MMIO, t->bar + VIRTIO_PCI_MSIX_PBA_OFF, 8), 0);

    /* event-idx: the driver wants an interrupt only at used index 10. */
    tdrv_set_used_event(t, 0, 10);
    assert_int_equal(blk_sync(e, 0, 0, buf, 512, true), 0);
    assert_int_equal(efd_count(efd), 0);
    tdrv_set_used_event(t, 0, tdrv_used_idx(t, 0));
    assert_int_equal(blk_sync(e, 0, 0, buf, 512, true), 0);
    assert_int_equal(efd_count(efd), 1);
    /* Function mask holds interrupts back too. */
    tdrv_cfg_write(e->vm, t->slot, msix + 2, 0xc000 | 1, 2);
    tdrv_set_used_event(t, 0, tdrv_used_idx(t, 0));
    assert_int_equal(blk_sync(e, 0, 0, buf, 512, true), 0);
    assert_int_equal(efd_count(efd), 0);
    tdrv_cfg_write(e->vm, t->slot, msix + 2, 0x8000 | 1, 2);
    assert_int_equal(efd_count(efd), 1);
    env_destroy(e);
    (void)state;
}

/* A vector KVM will not route stays pending and is logged once per
 * device reset, however often the guest makes the device fire it. */
static void test_msix_route_refused(void **state)
{
    struct env *e = env_create(false, false);
    struct tdrv *t = &e->t;
    unsigned msix;
    uint64_t entry = program_vector1(e, 0x42, &msix);
    fake_vm_write(e->vm, BUS_MMIO, entry + 12, 0, 4); /* unmasked */
    e->vm->msi_routes_fail = true;
    uint64_t buf = tdrv_alloc(t, 512);
    for (int i = 0; i < 5; i++) {
        tdrv_set_used_event(t, 0, tdrv_used_idx(t, 0));
        assert_int_equal(blk_sync(e, 0, 0, buf, 512, true), 0);
    }
    assert_int_equal(fake_vm_read(e->vm, BUS_MMIO, t->bar + VIRTIO_PCI_MSIX_PBA_OFF, 8), 2);
    const char *log = env_log(e);
    const char *first = strstr(log, "cannot route MSI-X vector 1");
    assert_non_null(first);
    assert_null(strstr(first + 1, "cannot route MSI-X vector"));
    env_destroy(e);
    (void)state;
}

/* A synchronous in-memory backend whose writes find no space while
 * `full` is set, as a thin disk's file does on a full file system. */
struct full_disk {
    struct blk_backend be;
    uint8_t data[DISK_SIZE];
    atomic_bool full;
    atomic_uint writes_refused;
};

static struct full_disk *to_full(struct blk_backend *be)
{
    return (struct full_disk *)((char *)be - offsetof(struct full_disk, be));
}

static int full_read(struct blk_backend *be, struct blk_io *io)
{
    uint64_t off = io->offset;
    for (int i = 0; i < io->iovcnt; i++) {
        memcpy(io->iov[i].iov_base, to_full(be)->data + off, io->iov[i].iov_len);
        off += io->iov[i].iov_len;
    }
    io->complete(io, 0);
    return 0;
}

static int full_write(struct blk_backend *be, struct blk_io *io)
{
    struct full_disk *d = to_full(be);
    if (atomic_load(&d->full)) {
        atomic_fetch_add(&d->writes_refused, 1);
        io->complete(io, -ENOSPC);
        return 0;
    }
    uint64_t off = io->offset;
    for (int i = 0; i < io->iovcnt; i++) {
        memcpy(d->data + off, io->iov[i].iov_base, io->iov[i].iov_len);
        off += io->iov[i].iov_len;
    }
    io->complete(io, 0);
    return 0;
}

static int full_flush(struct blk_backend *be, struct blk_io *io)
{
    (void)be;
    io->complete(io, 0);
    return 0;
}

static uint64_t full_capacity(struct blk_backend *be)
{
    (void)be;
    return DISK_SIZE;
}

static void full_close(struct blk_backend *be) { free(to_full(be)); }

static const struct blk_backend_ops full_ops = {
    .read = full_read, .write = full_write, .flush = full_flush, .discard = full_flush,
    .write_zeroes = full_flush, .capacity = full_capacity, .close = full_close,
};

static bool log_has(struct env *e, const char *text, int wait_ms)
{
    for (int waited = 0; waited <= wait_ms; waited += 10) {
        if (strstr(env_log(e), text))
            return true;
        usleep(10000);
    }
    return false;
}

/* A write that finds no space waits, other requests go on, and it completes
 * once space is back; the guest never sees an error. A reset ends a wait. */
static void test_write_waits_for_space(void **state)
{
    struct full_disk *d = calloc(1, sizeof(*d));
    d->be.ops = &full_ops;
    atomic_store(&d->full, true);
    env_backend = &d->be;
    struct env *e = env_create(false, false);
    uint64_t w = tdrv_alloc(&e->t, 8192), r = tdrv_alloc(&e->t, 4096);
    fill_pattern(tdrv_ptr(&e->t, w), 8192, 5);
    memset(d->data + 4096, 0x5c, 4096);

    blk_request(e, 0, 1, 0, w, 4096, false);
    tdrv_kick(&e->t, 0);
    assert_true(log_has(e, "found no space (No space left on device); writes that need space wait", 2000));
    usleep(200000);
    assert_int_equal(tdrv_used_idx(&e->t, 0), 0);
    assert_int_equal(req_status(e, 0), 0xee);

    /* Reads are served meanwhile. */
    blk_request(e, 1, 0, 8, r, 4096, true);
    tdrv_kick(&e->t, 0);
    assert_true(tdrv_wait_used(&e->t, 0, 1));
    assert_int_equal(req_status(e, 1), 0);
    assert_memory_equal(tdrv_ptr(&e->t, r), d->data + 4096, 4096);
    assert_int_equal(tdrv_used_idx(&e->t, 0), 1);
    assert_true(atomic_load(&d->writes_refused) >= 1);

    atomic_store(&d->full, false);
    assert_true(tdrv_wait_used(&e->t, 0, 2));
    assert_int_equal(req_status(e, 0), 0);
    assert_memory_equal(d->data, tdrv_ptr(&e->t, w), 4096);
    assert_true(log_has(e, "space found; writes that waited: 1, all done", 1000));

    /* Full again: a reset ends the wait at once, not when space comes back. */
    atomic_store(&d->full, true);
    unsigned refused = atomic_load(&d->writes_refused);
    blk_request(e, 2, 1, 16, w + 4096, 4096, false);
    tdrv_kick(&e->t, 0);
    for (int i = 0; i < 200 && atomic_load(&d->writes_refused) == refused; i++)
        usleep(10000);
    assert_true(atomic_load(&d->writes_refused) > refused);
    tdrv_reset(&e->t);
    assert_int_equal(tdrv_status(&e->t), 0);
    assert_true(log_has(e, "reset; writes that waited for space dropped: 1", 1000));
    assert_true(all_zero(d->data + 16 * 512, 4096)); /* the dropped write never landed */
    env_destroy(e);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pci_enumeration),
        cmocka_unit_test(test_msix_route_refused),
        cmocka_unit_test(test_io_thread_hook),
        cmocka_unit_test(test_feature_negotiation),
        cmocka_unit_test(test_write_then_read),
        cmocka_unit_test(test_many_in_flight),
        cmocka_unit_test(test_adjacent_requests_merge),
        cmocka_unit_test(test_cache_none),
        cmocka_unit_test(test_reads_from_cache_and_disk),
        cmocka_unit_test(test_reads_without_nowait),
        cmocka_unit_test(test_flush_and_get_id),
        cmocka_unit_test(test_discard_punches),
        cmocka_unit_test(test_write_zeroes),
        cmocka_unit_test(test_write_waits_for_space),
        cmocka_unit_test(test_sector_past_capacity),
        cmocka_unit_test(test_read_only_disk),
        cmocka_unit_test(test_descriptor_loop),
        cmocka_unit_test(test_address_outside_ram),
        cmocka_unit_test(test_length_overflow),
        cmocka_unit_test(test_bad_head_index),
        cmocka_unit_test(test_head_reused_in_flight),
        cmocka_unit_test(test_bad_next_index),
        cmocka_unit_test(test_avail_index_jump),
        cmocka_unit_test(test_wrong_direction),
        cmocka_unit_test(test_missing_status),
        cmocka_unit_test(test_indirect_refused),
        cmocka_unit_test(test_readable_after_writable),
        cmocka_unit_test(test_ring_outside_ram),
        cmocka_unit_test(test_msix_and_event_idx),
    };
    virtio_pci_set_io_thread_hook(count_io_thread);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* virtio-pci modern transport: capabilities, common config, notify, ISR,
 * MSI-X, and the queue eventfds the device's I/O thread waits on. */
#include "virtio_pci.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5

#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_MASKALL 0x4000
#define MSIX_ENTRY_MASKED 1
#define MAX_VECTORS (VIRTIO_PCI_MAX_QUEUES + 1)

struct vp_queue {
    uint16_t size;
    uint16_t msix_vector;
    bool enabled;
    uint64_t desc, driver, device;
    struct virtqueue vq;
    int notify_fd;
    uint64_t ioeventfd_addr; /* 0 when not registered */
};

struct vp_vector {
    int irq_fd;
    bool routed;
    uint64_t routed_addr;
    uint32_t routed_data;
};

struct virtio_pci {
    struct pci_device pci;
    struct vm_services *svc;
    struct virtio_pci_params params;
    const struct virtio_pci_ops *ops;
    void *dev;
    pthread_mutex_t lock;
    char location[16];

    uint32_t dfselect, gfselect;
    uint64_t driver_features;
    uint16_t config_vector;
    uint8_t status;
    uint8_t config_generation;
    uint16_t queue_select;
    uint8_t isr;
    bool broken_logged;
    bool route_failure_logged; /* a guest may retry a refused vector at will: once per reset */
    uint64_t resets;
    struct vp_queue queues[VIRTIO_PCI_MAX_QUEUES];

    uint8_t msix_cap;   /* config offset of the MSI-X capability */
    uint8_t pcicfg_cap; /* config offset of the PCI-config-access capability */
    unsigned nvectors;
    uint8_t msix_table[MAX_VECTORS * 16];
    uint64_t msix_pending;
    struct vp_vector vectors[MAX_VECTORS];
};

static void vp_log(struct virtio_pci *vp, const char *msg)
{
    fprintf(stderr, "vdfs-vm: %s %s: %s\n", vp->params.name, vp->location, msg);
}

/* ---- MSI-X ---- */

static uint16_t msix_control(struct virtio_pci *vp)
{
    return pci_get16(&vp->pci.config[vp->msix_cap + 2]);
}

static bool vector_deliverable(struct virtio_pci *vp, unsigned v)
{
    uint16_t ctl = msix_control(vp);
    return (ctl & MSIX_CTRL_ENABLE) && !(ctl & MSIX_CTRL_MASKALL) &&
           !(pci_get32(&vp->msix_table[16 * v + 12]) & MSIX_ENTRY_MASKED);
}

static void vector_fire(struct virtio_pci *vp, unsigned v)
{
    struct vp_vector *vec = &vp->vectors[v];
    const uint8_t *e = &vp->msix_table[16 * v];
    uint64_t addr = pci_get32(e) | (uint64_t)pci_get32(e + 4) << 32;
    uint32_t data = pci_get32(e + 8);
    if (!vec->routed || vec->routed_addr != addr || vec->routed_data != data) {
        int rc = vp->svc->set_msi_irqfd ? vp->svc->set_msi_irqfd(vp->svc->vm, vec->irq_fd, addr, data)
                                        : -ENOSYS;
        if (rc < 0) {
            if (!vp->route_failure_logged)
                fprintf(stderr, "vdfs-vm: %s %s: cannot route MSI-X vector %u: %s (further failures not "
                                "logged until reset)\n", vp->params.name, vp->location, v, strerror(-rc));
            vp->route_failure_logged = true;
            vp->msix_pending |= 1ull << v;
            return;
        }
        vec->routed = true;
        vec->routed_addr = addr;
        vec->routed_data = data;
    }
    eventfd_write(vec->irq_fd, 1);
}

static void vector_signal(struct virtio_pci *vp, unsigned v)
{
    if (v >= vp->nvectors)
        return; /* VIRTIO_MSI_NO_VECTOR or out of range: the driver polls */
    if (vector_deliverable(vp, v))
        vector_fire(vp, v);
    else
        vp->msix_pending |= 1ull << v;
}

/* After any mask change: deliver what became deliverable. */
static void vectors_update(struct virtio_pci *vp)
{
    for (unsigned v = 0; v < vp->nvectors; v++)
        if ((vp->msix_pending & (1ull << v)) && vector_deliverable(vp, v)) {
            vp->msix_pending &= ~(1ull << v);
            vector_fire(vp, v);
        }
}

void virtio_pci_interrupt_queue(struct virtio_pci *vp, unsigned q)
{
    vp->isr |= 1;
    vector_signal(vp, vp->queues[q].msix_vector);
}

void virtio_pci_config_changed(struct virtio_pci *vp)
{
    vp->config_generation++;
    vp->isr |= 2;
    vector_signal(vp, vp->config_vector);
}

void virtio_pci_set_needs_reset(struct virtio_pci *vp, const char *reason)
{
    if (!vp->broken_logged) {
        char msg[512];
        snprintf(msg, sizeof(msg), "guest error, device needs reset: %s", reason);
        vp_log(vp, msg);
        vp->broken_logged = true;
    }
    if (vp->status & VIRTIO_STATUS_NEEDS_RESET)
        return;
    vp->status |= VIRTIO_STATUS_NEEDS_RESET;
    virtio_pci_config_changed(vp);
}

/* ---- queues and status ---- */

struct virtqueue *virtio_pci_live_queue(struct virtio_pci *vp, unsigned q)
{
    if (q >= vp->params.num_queues || !vp->queues[q].enabled)
        return NULL;
    if ((vp->status & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET)) !=
        VIRTIO_STATUS_DRIVER_OK)
        return NULL;
    return &vp->queues[q].vq;
}

bool virtio_pci_has_feature(struct virtio_pci *vp, unsigned bit)
{
    return (vp->driver_features >> bit) & 1;
}

uint64_t virtio_pci_reset_count(struct virtio_pci *vp)
{
    return vp->resets;
}

const char *virtio_pci_location(struct virtio_pci *vp)
{
    return vp->location;
}

static void vp_reset_transport(struct virtio_pci *vp)
{
    vp->resets++;
    vp->dfselect = vp->gfselect = 0;
    vp->driver_features = 0;
    vp->config_vector = VIRTIO_MSI_NO_VECTOR;
    vp->status = 0;
    vp->queue_select = 0;
    vp->isr = 0;
    vp->broken_logged = false;
    vp->route_failure_logged = false;
    for (unsigned q = 0; q < vp->params.num_queues; q++) {
        struct vp_queue *vq = &vp->queues[q];
        vq->size = vp->params.queue_max_size;
        vq->msix_vector = VIRTIO_MSI_NO_VECTOR;
        vq->enabled = false;
        vq->desc = vq->driver = vq->device = 0;
        virtqueue_disable(&vq->vq);
    }
}

static void vp_reset(struct virtio_pci *vp)
{
    if (vp->ops->reset)
        vp->ops->reset(vp->dev);
    vp_reset_transport(vp);
}

static void vp_write_status(struct virtio_pci *vp, uint8_t val)
{
    if (val == 0) {
        vp_reset(vp);
        return;
    }
    uint8_t old = vp->status;
    uint8_t next = (uint8_t)(val | (old & VIRTIO_STATUS_NEEDS_RESET));
    if ((next & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
        uint64_t offered = vp->params.features;
        if ((vp->driver_features & ~offered) ||
            !(vp->driver_features & (1ull << VIRTIO_F_VERSION_1)))
            next &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK; /* driver reads it back and gives up */
    }
    vp->status = next;
    if ((next & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK) &&
        !(next & VIRTIO_STATUS_NEEDS_RESET) && vp->ops->activate)
        vp->ops->activate(vp->dev);
}

static void vp_enable_queue(struct virtio_pci *vp, struct vp_queue *q)
{
    char err[256];
    if (q->enabled)
        return;
    if (virtqueue_enable(&q->vq, vp->svc->mem, q->size, q->desc, q->driver, q->device,
                         virtio_pci_has_feature(vp, VIRTIO_F_RING_EVENT_IDX), err,
                         sizeof(err)) < 0) {
        virtio_pci_set_needs_reset(vp, err);
        return;
    }
    q->enabled = true;
}

static uint64_t set_half(uint64_t v, bool high, uint32_t half)
{
    return high ? (v & 0xffffffffull) | (uint64_t)half << 32 : (v & ~0xffffffffull) | half;
}

/* Builds the register image for the current queue_select. */
static void common_image(struct virtio_pci *vp, uint8_t *img)
{
    memset(img, 0, VIRTIO_PCI_COMMON_LEN);
    pci_put32(img + VIRTIO_COMMON_DFSELECT, vp->dfselect);
    uint64_t offered = vp->params.features;
    pci_put32(img + VIRTIO_COMMON_DF,
              vp->dfselect < 2 ? (uint32_t)(offered >> (32 * vp->dfselect)) : 0);
    pci_put32(img + VIRTIO_COMMON_GFSELECT, vp->gfselect);
    pci_put32(img + VIRTIO_COMMON_GF,
              vp->gfselect < 2 ? (uint32_t)(vp->driver_features >> (32 * vp->gfselect)) : 0);
    pci_put16(img + VIRTIO_COMMON_MSIX, vp->config_vector);
    pci_put16(img + VIRTIO_COMMON_NUMQ, vp->params.num_queues);
    img[VIRTIO_COMMON_STATUS] = vp->status;
    img[VIRTIO_COMMON_CFGGENERATION] = vp->config_generation;
    pci_put16(img + VIRTIO_COMMON_Q_SELECT, vp->queue_select);
    if (vp->queue_select < vp->params.num_queues) {
        struct vp_queue *q = &vp->queues[vp->queue_select];
        pci_put16(img + VIRTIO_COMMON_Q_SIZE, q->size);
        pci_put16(img + VIRTIO_COMMON_Q_MSIX, q->msix_vector);
        pci_put16(img + VIRTIO_COMMON_Q_ENABLE, q->enabled);
        pci_put16(img + VIRTIO_COMMON_Q_NOFF, vp->queue_select);
        pci_put32(img + VIRTIO_COMMON_Q_DESCLO, (uint32_t)q->desc);
        pci_put32(img + VIRTIO_COMMON_Q_DESCHI, (uint32_t)(q->desc >> 32));
        pci_put32(img + VIRTIO_COMMON_Q_AVAILLO, (uint32_t)q->driver);
        pci_put32(img + VIRTIO_COMMON_Q_AVAILHI, (uint32_t)(q->driver >> 32));
        pci_put32(img + VIRTIO_COMMON_Q_USEDLO, (uint32_t)q->device);
        pci_put32(img + VIRTIO_COMMON_Q_USEDHI, (uint32_t)(q->device >> 32));
    }
}

static bool overlaps(uint64_t off, uint32_t len, unsigned field, unsigned flen)
{
    return off < field + flen && field < off + len;
}

static void common_write(struct virtio_pci *vp, uint64_t off, const uint8_t *data, uint32_t len)
{
    uint8_t img[VIRTIO_PCI_COMMON_LEN];
    common_image(vp, img);
    memcpy(img + off, data, len);
    if (overlaps(off, len, VIRTIO_COMMON_DFSELECT, 4))
        vp->dfselect = pci_get32(img + VIRTIO_COMMON_DFSELECT);
    if (overlaps(off, len, VIRTIO_COMMON_GFSELECT, 4))
        vp->gfselect = pci_get32(img + VIRTIO_COMMON_GFSELECT);
    if (overlaps(off, len, VIRTIO_COMMON_GF, 4) && vp->gfselect < 2 &&
        !(vp->status & VIRTIO_STATUS_FEATURES_OK)) {
        unsigned shift = 32 * vp->gfselect;
        vp->driver_features = (vp->driver_features & ~(0xffffffffull << shift)) |
                              (uint64_t)pci_get32(img + VIRTIO_COMMON_GF) << shift;
    }
    if (overlaps(off, len, VIRTIO_COMMON_MSIX, 2)) {
        uint16_t v = pci_get16(img + VIRTIO_COMMON_MSIX);
        vp->config_vector = v < vp->nvectors ? v : VIRTIO_MSI_NO_VECTOR;
    }
    if (overlaps(off, len, VIRTIO_COMMON_Q_SELECT, 2))
        vp->queue_select = pci_get16(img + VIRTIO_COMMON_Q_SELECT);
    if (vp->queue_select < vp->params.num_queues && off >= VIRTIO_COMMON_Q_SIZE) {
        struct vp_queue *q = &vp->queues[vp->queue_select];
        if (overlaps(off, len, VIRTIO_COMMON_Q_MSIX, 2)) {
            uint16_t v = pci_get16(img + VIRTIO_COMMON_Q_MSIX);
            q->msix_vector = v < vp->nvectors ? v : VIRTIO_MSI_NO_VECTOR;
        }
        if (!q->enabled) { /* ring geometry is frozen once enabled */
            if (overlaps(off, len, VIRTIO_COMMON_Q_SIZE, 2))
                q->size = pci_get16(img + VIRTIO_COMMON_Q_SIZE);
            for (unsigned h = 0; h < 2; h++) {
                if (overlaps(off, len, VIRTIO_COMMON_Q_DESCLO + 4 * h, 4))
                    q->desc = set_half(q->desc, h, pci_get32(img + VIRTIO_COMMON_Q_DESCLO + 4 * h));
                if (overlaps(off, len, VIRTIO_COMMON_Q_AVAILLO + 4 * h, 4))
                    q->driver = set_half(q->driver, h,
                                         pci_get32(img + VIRTIO_COMMON_Q_AVAILLO + 4 * h));
                if (overlaps(off, len, VIRTIO_COMMON_Q_USEDLO + 4 * h, 4))
                    q->device = set_half(q->device, h,
                                         pci_get32(img + VIRTIO_COMMON_Q_USEDLO + 4 * h));
            }
        }
        if (overlaps(off, len, VIRTIO_COMMON_Q_ENABLE, 2) &&
            pci_get16(img + VIRTIO_COMMON_Q_ENABLE) == 1)
            vp_enable_queue(vp, q);
    }
    if (overlaps(off, len, VIRTIO_COMMON_STATUS, 1))
        vp_write_status(vp, img[VIRTIO_COMMON_STATUS]);
}

/* ---- BAR0 ---- */

static void vp_bar_access_locked(struct virtio_pci *vp, uint64_t off, uint8_t *data, uint32_t len,
                                 bool is_write)
{
    if (len == 0 || len > 8)
        return;
    if (off + len <= VIRTIO_PCI_COMMON_OFF + VIRTIO_PCI_COMMON_LEN) {
        if (is_write) {
            common_write(vp, off, data, len);
        } else {
            uint8_t img[VIRTIO_PCI_COMMON_LEN];
            common_image(vp, img);
            memcpy(data, img + off, len);
        }
    } else if (off == VIRTIO_PCI_ISR_OFF) {
        if (!is_write) {
            memset(data, 0, len);
            data[0] = vp->isr;
            vp->isr = 0; /* reading ISR acknowledges it */
        }
    } else if (off >= VIRTIO_PCI_DEVICE_OFF &&
               off + len <= VIRTIO_PCI_DEVICE_OFF + vp->params.device_config_len) {
        if (!is_write)
            memcpy(data, vp->params.device_config + (off - VIRTIO_PCI_DEVICE_OFF), len);
        /* No device here has writable config fields (no CONFIG_WCE etc.). */
    } else if (off >= VIRTIO_PCI_NOTIFY_OFF &&
               off < VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * (uint64_t)vp->params.num_queues) {
        if (is_write) /* a write KVM's ioeventfd did not absorb */
            eventfd_write(vp->queues[(off - VIRTIO_PCI_NOTIFY_OFF) / VIRTIO_PCI_NOTIFY_MULT].notify_fd, 1);
        else
            memset(data, 0, len);
    } else if (off >= VIRTIO_PCI_MSIX_TABLE_OFF &&
               off + len <= VIRTIO_PCI_MSIX_TABLE_OFF + 16 * vp->nvectors) {
        uint64_t t = off - VIRTIO_PCI_MSIX_TABLE_OFF;
        if (is_write) {
            memcpy(&vp->msix_table[t], data, len);
            vectors_update(vp);
        } else {
            memcpy(data, &vp->msix_table[t], len);
        }
    } else if (off >= VIRTIO_PCI_MSIX_PBA_OFF && off + len <= VIRTIO_PCI_MSIX_PBA_OFF + 8) {
        if (!is_write) {
            uint8_t pba[8];
            for (int i = 0; i < 8; i++)
                pba[i] = (uint8_t)(vp->msix_pending >> (8 * i));
            memcpy(data, pba + (off - VIRTIO_PCI_MSIX_PBA_OFF), len);
        }
    } else if (!is_write) {
        memset(data, 0, len);
    }
}

static void vp_bar_access(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
    struct virtio_pci *vp = opaque;
    pthread_mutex_lock(&vp->lock);
    vp_bar_access_locked(vp, off, data, len, is_write);
    pthread_mutex_unlock(&vp->lock);
}

/* ---- PCI config hooks ---- */

static void vp_config_hook(struct pci_device *pci, uint32_t off, uint32_t len, bool is_write)
{
    struct virtio_pci *vp = pci->opaque;
    uint32_t ctl = vp->msix_cap + 2u;
    uint32_t cfgdata = vp->pcicfg_cap + 16u;
    if (is_write && off < ctl + 2 && ctl < off + len) {
        pthread_mutex_lock(&vp->lock);
        vectors_update(vp);
        pthread_mutex_unlock(&vp->lock);
    }
    if (off < cfgdata + 4 && cfgdata < off + len) {
        /* VIRTIO_PCI_CAP_PCI_CFG: a window into BAR0 through config space. */
        uint8_t *cap = &pci->config[vp->pcicfg_cap];
        uint32_t bar = cap[4], boff = pci_get32(cap + 8), blen = pci_get32(cap + 12);
        if (bar != 0 || (blen != 1 && blen != 2 && blen != 4) || boff % blen ||
            boff > VIRTIO_PCI_BAR_SIZE - blen)
            return;
        pthread_mutex_lock(&vp->lock);
        vp_bar_access_locked(vp, boff, &pci->config[cfgdata], blen, is_write);
        pthread_mutex_unlock(&vp->lock);
    }
}

static void vp_register_notify(struct virtio_pci *vp, uint64_t bar_addr)
{
    for (unsigned q = 0; q < vp->params.num_queues; q++) {
        struct vp_queue *vq = &vp->queues[q];
        if (vq->ioeventfd_addr && vp->svc->del_ioeventfd)
            vp->svc->del_ioeventfd(vp->svc->vm, BUS_MMIO, vq->ioeventfd_addr, 2, vq->notify_fd);
        vq->ioeventfd_addr = 0;
        if (!bar_addr || !vp->svc->add_ioeventfd)
            continue;
        uint64_t addr = bar_addr + VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * q;
        /* Drivers write the 16-bit queue index; other widths reach the MMIO handler. */
        int rc = vp->svc->add_ioeventfd(vp->svc->vm, BUS_MMIO, addr, 2, vq->notify_fd);
        if (rc == 0)
            vq->ioeventfd_addr = addr;
        else if (q == 0)
            fprintf(stderr, "vdfs-vm: %s %s: no ioeventfd (%s); notifications go through "
                            "MMIO exits\n",
                    vp->params.name, vp->location, strerror(-rc));
    }
}

static void vp_bar_remap(struct pci_device *pci, int bar, uint64_t old_addr, uint64_t new_addr)
{
    struct virtio_pci *vp = pci->opaque;
    if (bar != 0)
        return;
    pthread_mutex_lock(&vp->lock);
    snprintf(vp->location, sizeof(vp->location), "00:%02x.0", pci->slot);
    vp_register_notify(vp, new_addr);
    pthread_mutex_unlock(&vp->lock);
}

static uint8_t add_virtio_cap(struct pci_device *pci, uint8_t cfg_type, uint8_t cap_len,
                              uint32_t offset, uint32_t length)
{
    uint8_t c = pci_device_add_cap(pci, PCI_CAP_ID_VNDR, cap_len);
    if (!c)
        return 0;
    pci->config[c + 2] = cap_len;
    pci->config[c + 3] = cfg_type;
    pci->config[c + 4] = 0; /* BAR0 */
    pci_put32(&pci->config[c + 8], offset);
    pci_put32(&pci->config[c + 12], length);
    return c;
}

struct virtio_pci *virtio_pci_create(struct pci_bus *bus, struct vm_services *svc,
                                     const struct virtio_pci_params *params,
                                     const struct virtio_pci_ops *ops, void *dev)
{
    if (params->num_queues == 0 || params->num_queues > VIRTIO_PCI_MAX_QUEUES ||
        params->device_config_len > 0x1000)
        return NULL;
    struct virtio_pci *vp = calloc(1, sizeof(*vp));
    if (!vp)
        return NULL;
    vp->svc = svc;
    vp->params = *params;
    vp->params.features |= 1ull << VIRTIO_F_VERSION_1;
    vp->ops = ops;
    vp->dev = dev;
    vp->nvectors = params->num_queues + 1u;
    pthread_mutex_init(&vp->lock, NULL);
    for (unsigned v = 0; v < MAX_VECTORS; v++)
        vp->vectors[v].irq_fd = -1;
    for (unsigned q = 0; q < VIRTIO_PCI_MAX_QUEUES; q++)
        vp->queues[q].notify_fd = -1;
    for (unsigned v = 0; v < vp->nvectors; v++) {
        vp->vectors[v].irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        pci_put32(&vp->msix_table[16 * v + 12], MSIX_ENTRY_MASKED);
        if (vp->vectors[v].irq_fd < 0)
            goto fail;
    }
    for (unsigned q = 0; q < params->num_queues; q++) {
        vp->queues[q].notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (vp->queues[q].notify_fd < 0)
            goto fail;
    }
    vp_reset_transport(vp);

    struct pci_device *pci = &vp->pci;
    pci_device_init(pci, VIRTIO_PCI_VENDOR, (uint16_t)(VIRTIO_PCI_DEVICE_BASE + params->device_type),
                    params->class_code, 1, VIRTIO_PCI_VENDOR, 0x40);
    pci->opaque = vp;
    pci->config_hook = vp_config_hook;
    pci->bar_remap = vp_bar_remap;
    pci_device_set_mem_bar(pci, 0, VIRTIO_PCI_BAR_SIZE, vp_bar_access, vp);

    vp->msix_cap = pci_device_add_cap(pci, PCI_CAP_ID_MSIX, 12);
    pci_put16(&pci->config[vp->msix_cap + 2], (uint16_t)(vp->nvectors - 1));
    pci->wmask[vp->msix_cap + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) >> 8;
    pci_put32(&pci->config[vp->msix_cap + 4], VIRTIO_PCI_MSIX_TABLE_OFF); /* BIR 0 */
    pci_put32(&pci->config[vp->msix_cap + 8], VIRTIO_PCI_MSIX_PBA_OFF);
    add_virtio_cap(pci, VIRTIO_PCI_CAP_COMMON_CFG, 16, VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_LEN);
    uint8_t n = add_virtio_cap(pci, VIRTIO_PCI_CAP_NOTIFY_CFG, 20, VIRTIO_PCI_NOTIFY_OFF,
                               VIRTIO_PCI_NOTIFY_MULT * params->num_queues);
    pci_put32(&pci->config[n + 16], VIRTIO_PCI_NOTIFY_MULT);
    add_virtio_cap(pci, VIRTIO_PCI_CAP_ISR_CFG, 16, VIRTIO_PCI_ISR_OFF, 1);
    if (params->device_config_len)
        add_virtio_cap(pci, VIRTIO_PCI_CAP_DEVICE_CFG, 16, VIRTIO_PCI_DEVICE_OFF,
                       params->device_config_len);
    vp->pcicfg_cap = add_virtio_cap(pci, VIRTIO_PCI_CAP_PCI_CFG, 20, 0, 0);
    pci->wmask[vp->pcicfg_cap + 4] = 0xff;
    for (int i = 8; i < 20; i++)
        pci->wmask[vp->pcicfg_cap + i] = 0xff;

    int slot = pci_add_device(bus, pci);
    if (slot < 0) {
        fprintf(stderr, "vdfs-vm: %s: no room on the PCI bus: %s\n", params->name,
                strerror(-slot));
        goto fail;
    }
    return vp;
fail:
    for (unsigned v = 0; v < MAX_VECTORS; v++)
        if (vp->vectors[v].irq_fd >= 0)
            close(vp->vectors[v].irq_fd);
    for (unsigned q = 0; q < VIRTIO_PCI_MAX_QUEUES; q++)
        if (vp->queues[q].notify_fd >= 0)
            close(vp->queues[q].notify_fd);
    pthread_mutex_destroy(&vp->lock);
    free(vp);
    return NULL;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
    if (!vp)
        return;
    pci_remove_device(vp->pci.bus, &vp->pci); /* unmaps BAR0, dropping the ioeventfds */
    for (unsigned v = 0; v < vp->nvectors; v++) {
        if (vp->vectors[v].routed && vp->svc->clear_irqfd)
            vp->svc->clear_irqfd(vp->svc->vm, vp->vectors[v].irq_fd);
        close(vp->vectors[v].irq_fd);
    }
    for (unsigned q = 0; q < vp->params.num_queues; q++)
        close(vp->queues[q].notify_fd);
    pthread_mutex_destroy(&vp->lock);
    free(vp);
}

static void (*io_thread_hook)(uint32_t device_type);

void virtio_pci_set_io_thread_hook(void (*hook)(uint32_t device_type))
{
    io_thread_hook = hook;
}

void virtio_pci_io_thread_start(struct virtio_pci *vp)
{
    if (io_thread_hook)
        io_thread_hook(vp->params.device_type);
}

void virtio_pci_lock(struct virtio_pci *vp)
{
    pthread_mutex_lock(&vp->lock);
}

void virtio_pci_unlock(struct virtio_pci *vp)
{
    pthread_mutex_unlock(&vp->lock);
}

pthread_mutex_t *virtio_pci_mutex(struct virtio_pci *vp)
{
    return &vp->lock;
}

int virtio_pci_queue_eventfd(struct virtio_pci *vp, unsigned q)
{
    return q < vp->params.num_queues ? vp->queues[q].notify_fd : -1;
}

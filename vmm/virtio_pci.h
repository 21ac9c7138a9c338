/* The virtio-pci modern transport (virtio 1.2 §4.1) shared by virtio-blk and
 * virtio-net.  One 32 KiB memory BAR (BAR0) holds:
 *
 *   0x0000 common configuration      0x3000 queue notify (4 bytes per queue)
 *   0x1000 ISR status                0x4000 MSI-X table
 *   0x2000 device-specific config    0x5000 MSI-X pending-bit array
 *
 * Queue notifications land on one eventfd per queue: KVM signals it
 * directly through an ioeventfd on the queue's notify address, and the MMIO
 * handler signals it for writes KVM did not catch (other widths, or when
 * ioeventfd registration failed).  The device serves its queues from its
 * own I/O thread waiting on those eventfds, never on the vCPU thread.
 * Interrupts are MSI-X only, delivered through one irqfd per vector; a
 * masked vector records a pending bit instead and fires on unmask.  INTx
 * is not provided (interrupt pin 0).
 *
 * Locking: one mutex per device (virtio_pci_lock) guards the transport and
 * the device's queue state.  Register accesses from vCPUs take it; the
 * device's I/O thread takes it around queue work.  The ops callbacks below
 * run with it held. */
#ifndef VDFS_VMM_VIRTIO_PCI_H
#define VDFS_VMM_VIRTIO_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "pci.h"
#include "virtqueue.h"
#include "virtio_spec.h"


#define VIRTIO_MSI_NO_VECTOR 0xffff

/* BAR0 layout (see above); exported for tests that play the driver. */
#define VIRTIO_PCI_BAR_SIZE 0x8000
#define VIRTIO_PCI_COMMON_OFF 0x0000
#define VIRTIO_PCI_COMMON_LEN 0x40
#define VIRTIO_PCI_ISR_OFF 0x1000
#define VIRTIO_PCI_DEVICE_OFF 0x2000
#define VIRTIO_PCI_NOTIFY_OFF 0x3000
#define VIRTIO_PCI_NOTIFY_MULT 4
#define VIRTIO_PCI_MSIX_TABLE_OFF 0x4000
#define VIRTIO_PCI_MSIX_PBA_OFF 0x5000

/* Common configuration register offsets (§4.1.4.3). */
#define VIRTIO_COMMON_DFSELECT 0x00
#define VIRTIO_COMMON_DF 0x04
#define VIRTIO_COMMON_GFSELECT 0x08
#define VIRTIO_COMMON_GF 0x0c
#define VIRTIO_COMMON_MSIX 0x10
#define VIRTIO_COMMON_NUMQ 0x12
#define VIRTIO_COMMON_STATUS 0x14
#define VIRTIO_COMMON_CFGGENERATION 0x15
#define VIRTIO_COMMON_Q_SELECT 0x16
#define VIRTIO_COMMON_Q_SIZE 0x18
#define VIRTIO_COMMON_Q_MSIX 0x1a
#define VIRTIO_COMMON_Q_ENABLE 0x1c
#define VIRTIO_COMMON_Q_NOFF 0x1e
#define VIRTIO_COMMON_Q_DESCLO 0x20
#define VIRTIO_COMMON_Q_DESCHI 0x24
#define VIRTIO_COMMON_Q_AVAILLO 0x28
#define VIRTIO_COMMON_Q_AVAILHI 0x2c
#define VIRTIO_COMMON_Q_USEDLO 0x30
#define VIRTIO_COMMON_Q_USEDHI 0x34

#define VIRTIO_PCI_MAX_QUEUES 8

struct virtio_pci;

struct virtio_pci_ops {
    /* The driver wrote 0 to device_status.  The device must drop every
     * in-flight request (waiting for them if needed, see virtio_pci_mutex)
     * before returning; the transport then clears queues and features. */
    void (*reset)(void *dev);
    /* DRIVER_OK was set: the device should look at its queues. */
    void (*activate)(void *dev);
};

struct virtio_pci_params {
    const char *name;      /* for messages, e.g. "virtio-blk" */
    uint16_t device_type;  /* virtio device id: 1 net, 2 block */
    uint32_t class_code;   /* PCI class, e.g. 0x010000 for storage */
    uint64_t features;     /* offered; VERSION_1 is added */
    uint16_t num_queues;
    uint16_t queue_max_size;
    uint8_t *device_config; /* little-endian image the device keeps current */
    uint32_t device_config_len;
};

/* Creates the transport, its PCI function, eventfds and ioeventfds.
 * Returns NULL with a message on stderr on failure. */
struct virtio_pci *virtio_pci_create(struct pci_bus *pci, struct vm_services *svc,
                                     const struct virtio_pci_params *params,
                                     const struct virtio_pci_ops *ops, void *dev);
/* Removes the PCI function, ioeventfds and irqfds.  The device's I/O
 * thread must have stopped. */
void virtio_pci_destroy(struct virtio_pci *vp);

void virtio_pci_lock(struct virtio_pci *vp);
void virtio_pci_unlock(struct virtio_pci *vp);
pthread_mutex_t *virtio_pci_mutex(struct virtio_pci *vp);

/* The eventfd that becomes readable when the driver kicks queue `q`. */
int virtio_pci_queue_eventfd(struct virtio_pci *vp, unsigned q);

/* The following need the lock held. */
/* The queue if the device may process it now (DRIVER_OK, not NEEDS_RESET,
 * queue enabled), else NULL. */
struct virtqueue *virtio_pci_live_queue(struct virtio_pci *vp, unsigned q);
bool virtio_pci_has_feature(struct virtio_pci *vp, unsigned bit);
/* Interrupts the driver for queue `q` (its MSI-X vector). */
void virtio_pci_interrupt_queue(struct virtio_pci *vp, unsigned q);
/* Bumps config_generation and sends the configuration-change interrupt. */
void virtio_pci_config_changed(struct virtio_pci *vp);
/* The guest broke the device: logs `reason` once per reset, sets
 * NEEDS_RESET, notifies the driver, and stops all queue processing. */
void virtio_pci_set_needs_reset(struct virtio_pci *vp, const char *reason);
/* Incremented by every device reset; lets a device drop stale completions. */
uint64_t virtio_pci_reset_count(struct virtio_pci *vp);
/* "00:01.0" style location for messages. */
const char *virtio_pci_location(struct virtio_pci *vp);

/* Device I/O threads call the hook first thing with their virtio device
 * type, so the VMM can confine them (vdfs-vm: seccomp_thread_confine()
 * with SECCOMP_PROFILE_NET for a NIC, SECCOMP_PROFILE_IO otherwise).
 * Their system calls:
 * epoll_wait/epoll_ctl, read/write (eventfds, stderr), io_uring_enter,
 * futex, timerfd_settime, close, getpid, brk/mmap (malloc), the KVM
 * ioctls KVM_SET_GSI_ROUTING and KVM_IRQFD (MSI routes set on first use),
 * and for virtio-net reconnection socket(AF_UNIX), connect, sendto/sendmsg
 * and recvfrom/recvmsg.  Set it before creating devices. */
void virtio_pci_set_io_thread_hook(void (*hook)(uint32_t device_type));
void virtio_pci_io_thread_start(struct virtio_pci *vp);

#endif

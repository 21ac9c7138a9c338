/* Test doubles for the VMM core: guest RAM in a heap buffer, a bus that
 * dispatches accesses to registered handlers, and vm_services that record
 * ioeventfd and MSI routes the way KVM would act on them.  No KVM needed. */
#ifndef VDFS_TESTS_FAKE_VM_H
#define VDFS_TESTS_FAKE_VM_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"

#define FAKE_RAM_SIZE (16u << 20)
#define FAKE_MAX_IOEVENTFDS 16
#define FAKE_MAX_ROUTES 16

struct fake_vm {
    struct vm_services svc;
    uint8_t *ram;
    bool ioeventfd_fails;  /* make add_ioeventfd return -ENOSYS */
    bool msi_routes_fail;  /* make set_msi_irqfd return -ENOSPC, as a full KVM routing table does */
    struct { uint64_t addr; uint32_t len; int efd; } ioeventfds[FAKE_MAX_IOEVENTFDS];
    unsigned nioeventfds;
    struct { int efd; uint64_t addr; uint32_t data; } routes[FAKE_MAX_ROUTES];
    unsigned nroutes;
};

struct fake_vm *fake_vm_create(bool ioeventfd_fails);
void fake_vm_destroy(struct fake_vm *vm);

/* A guest access as KVM would deliver it: an MMIO write matching a
 * registered ioeventfd signals the eventfd instead of reaching the handler. */
void fake_vm_access(struct fake_vm *vm, enum bus_space space, uint64_t addr, void *data,
                    uint32_t len, bool is_write);
uint64_t fake_vm_read(struct fake_vm *vm, enum bus_space space, uint64_t addr, uint32_t len);
void fake_vm_write(struct fake_vm *vm, enum bus_space space, uint64_t addr, uint64_t val,
                   uint32_t len);

/* The eventfd last routed for MSI (addr, data), or -1. */
int fake_vm_route_efd(struct fake_vm *vm, uint64_t addr, uint32_t data);

#endif

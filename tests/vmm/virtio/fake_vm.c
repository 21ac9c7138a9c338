/* Test-only guest memory, bus and vm_services (see fake_vm.h). */
#include "fake_vm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

struct guest_memory {
    uint8_t *base;
    uint64_t size;
};

void *guest_memory_at(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
    if (gpa > mem->size || len > mem->size - gpa)
        return NULL;
    return mem->base + gpa;
}

uint64_t guest_memory_size(const struct guest_memory *mem)
{
    return mem->size;
}

#define FAKE_MAX_RANGES 64

struct bus {
    struct {
        enum bus_space space;
        uint64_t base, len;
        bus_handler_fn fn;
        void *opaque;
        bool used;
    } r[FAKE_MAX_RANGES];
};

int bus_register(struct bus *bus, enum bus_space space, uint64_t base, uint64_t len,
                 bus_handler_fn fn, void *opaque)
{
    int free_slot = -1;
    for (int i = 0; i < FAKE_MAX_RANGES; i++) {
        if (!bus->r[i].used) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (bus->r[i].space == space && base < bus->r[i].base + bus->r[i].len &&
            bus->r[i].base < base + len)
            return -EEXIST;
    }
    if (free_slot < 0)
        return -ENOSPC;
    bus->r[free_slot].space = space;
    bus->r[free_slot].base = base;
    bus->r[free_slot].len = len;
    bus->r[free_slot].fn = fn;
    bus->r[free_slot].opaque = opaque;
    bus->r[free_slot].used = true;
    return 0;
}

int bus_unregister(struct bus *bus, enum bus_space space, uint64_t base)
{
    for (int i = 0; i < FAKE_MAX_RANGES; i++)
        if (bus->r[i].used && bus->r[i].space == space && bus->r[i].base == base) {
            bus->r[i].used = false;
            return 0;
        }
    return -ENOENT;
}

static struct fake_vm *to_vm(void *vm)
{
    return vm;
}

static int fake_add_ioeventfd(void *opaque, enum bus_space space, uint64_t addr, uint32_t len,
                              int efd)
{
    struct fake_vm *vm = to_vm(opaque);
    if (vm->ioeventfd_fails)
        return -ENOSYS;
    if (space != BUS_MMIO || vm->nioeventfds == FAKE_MAX_IOEVENTFDS)
        return -EINVAL;
    vm->ioeventfds[vm->nioeventfds].addr = addr;
    vm->ioeventfds[vm->nioeventfds].len = len;
    vm->ioeventfds[vm->nioeventfds].efd = efd;
    vm->nioeventfds++;
    return 0;
}

static int fake_del_ioeventfd(void *opaque, enum bus_space space, uint64_t addr, uint32_t len,
                              int efd)
{
    struct fake_vm *vm = to_vm(opaque);
    for (unsigned i = 0; i < vm->nioeventfds; i++)
        if (vm->ioeventfds[i].addr == addr && vm->ioeventfds[i].efd == efd) {
            vm->ioeventfds[i] = vm->ioeventfds[--vm->nioeventfds];
            return 0;
        }
    return -ENOENT;
}

static int fake_set_msi_irqfd(void *opaque, int efd, uint64_t addr, uint32_t data)
{
    struct fake_vm *vm = to_vm(opaque);
    if (vm->msi_routes_fail)
        return -ENOSPC;
    for (unsigned i = 0; i < vm->nroutes; i++)
        if (vm->routes[i].efd == efd) {
            vm->routes[i].addr = addr;
            vm->routes[i].data = data;
            return 24 + (int)i;
        }
    if (vm->nroutes == FAKE_MAX_ROUTES)
        return -ENOSPC;
    vm->routes[vm->nroutes].efd = efd;
    vm->routes[vm->nroutes].addr = addr;
    vm->routes[vm->nroutes].data = data;
    return 24 + (int)vm->nroutes++;
}

static int fake_clear_irqfd(void *opaque, int efd)
{
    struct fake_vm *vm = to_vm(opaque);
    for (unsigned i = 0; i < vm->nroutes; i++)
        if (vm->routes[i].efd == efd) {
            vm->routes[i] = vm->routes[--vm->nroutes];
            return 0;
        }
    return -ENOENT;
}

struct fake_vm *fake_vm_create(bool ioeventfd_fails)
{
    struct fake_vm *vm = calloc(1, sizeof(*vm));
    struct guest_memory *mem = calloc(1, sizeof(*mem));
    struct bus *bus = calloc(1, sizeof(*bus));
    vm->ram = calloc(1, FAKE_RAM_SIZE);
    mem->base = vm->ram;
    mem->size = FAKE_RAM_SIZE;
    vm->ioeventfd_fails = ioeventfd_fails;
    vm->svc.mem = mem;
    vm->svc.bus = bus;
    vm->svc.vm_fd = -1;
    vm->svc.add_ioeventfd = fake_add_ioeventfd;
    vm->svc.del_ioeventfd = fake_del_ioeventfd;
    vm->svc.set_msi_irqfd = fake_set_msi_irqfd;
    vm->svc.clear_irqfd = fake_clear_irqfd;
    vm->svc.vm = vm;
    return vm;
}

void fake_vm_destroy(struct fake_vm *vm)
{
    free(vm->svc.mem);
    free(vm->svc.bus);
    free(vm->ram);
    free(vm);
}

void fake_vm_access(struct fake_vm *vm, enum bus_space space, uint64_t addr, void *data,
                    uint32_t len, bool is_write)
{
    if (is_write && space == BUS_MMIO)
        for (unsigned i = 0; i < vm->nioeventfds; i++)
            if (vm->ioeventfds[i].addr == addr && vm->ioeventfds[i].len == len) {
                eventfd_write(vm->ioeventfds[i].efd, 1);
                return;
            }
    struct bus *bus = vm->svc.bus;
    if (!is_write)
        memset(data, 0xff, len);
    for (int i = 0; i < FAKE_MAX_RANGES; i++)
        if (bus->r[i].used && bus->r[i].space == space && addr >= bus->r[i].base &&
            addr + len <= bus->r[i].base + bus->r[i].len) {
            bus->r[i].fn(bus->r[i].opaque, addr - bus->r[i].base, data, len, is_write);
            return;
        }
}

uint64_t fake_vm_read(struct fake_vm *vm, enum bus_space space, uint64_t addr, uint32_t len)
{
    uint8_t b[8] = {0};
    fake_vm_access(vm, space, addr, b, len, false);
    uint64_t v = 0;
    for (uint32_t i = 0; i < len; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

void fake_vm_write(struct fake_vm *vm, enum bus_space space, uint64_t addr, uint64_t val,
                   uint32_t len)
{
    uint8_t b[8];
    for (uint32_t i = 0; i < len; i++)
        b[i] = (uint8_t)(val >> (8 * i));
    fake_vm_access(vm, space, addr, b, len, true);
}

int fake_vm_route_efd(struct fake_vm *vm, uint64_t addr, uint32_t data)
{
    for (unsigned i = 0; i < vm->nroutes; i++)
        if (vm->routes[i].addr == addr && vm->routes[i].data == data)
            return vm->routes[i].efd;
    return -1;
}

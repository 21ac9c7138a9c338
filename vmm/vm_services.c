/* The services devices use to talk to KVM directly: ioeventfd for queue
 * notifications and irqfd with MSI routes for interrupts. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kvm.h"
#include "layout.h"

static int ioeventfd(struct vm *vm, enum bus_space space, uint64_t addr, uint32_t len, int efd,
                     bool assign)
{
    struct kvm_ioeventfd io = {
        .addr = addr,
        .len = len,
        .fd = efd,
        .flags = (space == BUS_PIO ? KVM_IOEVENTFD_FLAG_PIO : 0) |
                 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
    };
    return ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

static int svc_add_ioeventfd(void *opaque, enum bus_space space, uint64_t addr, uint32_t len,
                             int efd)
{
    return ioeventfd(opaque, space, addr, len, efd, true);
}

static int svc_del_ioeventfd(void *opaque, enum bus_space space, uint64_t addr, uint32_t len,
                             int efd)
{
    return ioeventfd(opaque, space, addr, len, efd, false);
}

/* KVM_SET_GSI_ROUTING replaces the whole table, so the in-kernel PIC and
 * IOAPIC pins KVM routes by default are restated with every MSI route. */
static int commit_routes_locked(struct vm *vm)
{
    size_t n = 16 + LAYOUT_IOAPIC_PINS + vm->nmsi_routes;
    struct kvm_irq_routing *table =
        calloc(1, sizeof(*table) + n * sizeof(struct kvm_irq_routing_entry));
    if (!table)
        return -ENOMEM;
    size_t k = 0;
    for (uint32_t gsi = 0; gsi < 16; gsi++) {
        struct kvm_irq_routing_entry *e = &table->entries[k++];
        e->gsi = gsi;
        e->type = KVM_IRQ_ROUTING_IRQCHIP;
        e->u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
        e->u.irqchip.pin = gsi % 8;
    }
    for (uint32_t gsi = 0; gsi < LAYOUT_IOAPIC_PINS; gsi++) {
        struct kvm_irq_routing_entry *e = &table->entries[k++];
        e->gsi = gsi;
        e->type = KVM_IRQ_ROUTING_IRQCHIP;
        e->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
        e->u.irqchip.pin = gsi;
    }
    for (size_t i = 0; i < vm->nmsi_routes; i++) {
        const struct vm_msi_route *r = &vm->msi_routes[i];
        struct kvm_irq_routing_entry *e = &table->entries[k++];
        e->gsi = r->gsi;
        e->type = KVM_IRQ_ROUTING_MSI;
        e->u.msi.address_lo = (uint32_t)r->addr;
        e->u.msi.address_hi = (uint32_t)(r->addr >> 32);
        e->u.msi.data = r->data;
    }
    table->nr = (uint32_t)k;
    int rc = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, table) < 0 ? -errno : 0;
    free(table);
    return rc;
}

/* The lowest GSI above the IOAPIC pins that no MSI route holds, so routes
 * freed by clear_irqfd are reused rather than exhausting KVM's table. */
static uint32_t free_gsi_locked(const struct vm *vm)
{
    for (uint32_t gsi = LAYOUT_IOAPIC_PINS;; gsi++) {
        bool used = false;
        for (size_t i = 0; i < vm->nmsi_routes && !used; i++)
            used = vm->msi_routes[i].gsi == gsi;
        if (!used)
            return gsi;
    }
}

static int svc_set_msi_irqfd(void *opaque, int efd, uint64_t msi_addr, uint32_t msi_data)
{
    struct vm *vm = opaque;
    int rc;
    pthread_mutex_lock(&vm->irq_lock);
    struct vm_msi_route *route = NULL;
    for (size_t i = 0; i < vm->nmsi_routes; i++) {
        if (vm->msi_routes[i].efd == efd)
            route = &vm->msi_routes[i];
    }
    bool fresh = route == NULL;
    if (fresh) {
        struct vm_msi_route *grown =
            realloc(vm->msi_routes, (vm->nmsi_routes + 1) * sizeof(*grown));
        if (!grown) {
            rc = -ENOMEM;
            goto out;
        }
        vm->msi_routes = grown;
        uint32_t gsi = free_gsi_locked(vm);
        route = &vm->msi_routes[vm->nmsi_routes++];
        route->efd = efd;
        route->gsi = gsi;
    }
    route->addr = msi_addr;
    route->data = msi_data;
    rc = commit_routes_locked(vm);
    if (rc == 0 && fresh) {
        struct kvm_irqfd irqfd = { .fd = (uint32_t)efd, .gsi = route->gsi };
        if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
            rc = -errno;
    }
    if (rc < 0 && fresh) {
        vm->nmsi_routes--;
        (void)commit_routes_locked(vm);
    } else if (rc == 0) {
        rc = (int)route->gsi;
    }
out:
    pthread_mutex_unlock(&vm->irq_lock);
    return rc;
}

static int svc_clear_irqfd(void *opaque, int efd)
{
    struct vm *vm = opaque;
    int rc = -ENOENT;
    pthread_mutex_lock(&vm->irq_lock);
    for (size_t i = 0; i < vm->nmsi_routes; i++) {
        if (vm->msi_routes[i].efd != efd)
            continue;
        struct kvm_irqfd irqfd = {
            .fd = (uint32_t)efd,
            .gsi = vm->msi_routes[i].gsi,
            .flags = KVM_IRQFD_FLAG_DEASSIGN,
        };
        rc = ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0 ? -errno : 0;
        vm->msi_routes[i] = vm->msi_routes[--vm->nmsi_routes];
        int commit = commit_routes_locked(vm);
        if (rc == 0)
            rc = commit;
        break;
    }
    pthread_mutex_unlock(&vm->irq_lock);
    return rc;
}

void vm_fill_services(struct vm *vm, struct vm_services *svc)
{
    memset(svc, 0, sizeof(*svc));
    svc->mem = vm->mem;
    svc->bus = vm->bus;
    svc->vm_fd = vm->vm_fd;
    svc->add_ioeventfd = svc_add_ioeventfd;
    svc->del_ioeventfd = svc_del_ioeventfd;
    svc->set_msi_irqfd = svc_set_msi_irqfd;
    svc->clear_irqfd = svc_clear_irqfd;
    svc->vm = vm;
}

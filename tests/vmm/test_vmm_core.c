/* Unit tests of the VMM core against real KVM where it matters: guest
 * memory bounds, the I/O bus, ioeventfd (a guest port write signals the
 * eventfd without an exit), MSI irqfd routes (GSIs allocated, updated,
 * freed and reused), the AML encoder's package lengths, and where an
 * initrd lands in guest RAM. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "aml.h"
#include "boot.h"
#include "bus_core.h"
#include "kvm.h"
#include "layout.h"
#include "memory.h"
#include "platform.h"

static void test_guest_memory_bounds(void **state)
{
    (void)state;
    struct guest_memory *mem = guest_memory_create(16 << 20);
    assert_non_null(mem);
    assert_int_equal(guest_memory_size(mem), 16 << 20);
    assert_non_null(guest_memory_at(mem, 0, 16 << 20));
    assert_non_null(guest_memory_at(mem, (16 << 20) - 1, 1));
    assert_null(guest_memory_at(mem, (16 << 20) - 1, 2));
    assert_null(guest_memory_at(mem, 16 << 20, 1));
    assert_null(guest_memory_at(mem, UINT64_MAX - 1, 4));   /* gpa + len overflows */
    assert_null(guest_memory_at(mem, 4096, UINT64_MAX));   /* length overflows */
    assert_null(guest_memory_at(mem, LAYOUT_RAM_HIGH_BASE, 1));
    guest_memory_destroy(mem);

    /* 4 GiB of RAM: 3.5 GiB low, 0.5 GiB above 4 GiB, nothing in the hole. */
    mem = guest_memory_create(UINT64_C(4) << 30);
    assert_non_null(mem);
    assert_int_equal(guest_memory_low_size(mem), LAYOUT_RAM_LOW_LIMIT);
    assert_int_equal(guest_memory_high_size(mem), (UINT64_C(4) << 30) - LAYOUT_RAM_LOW_LIMIT);
    assert_non_null(guest_memory_at(mem, LAYOUT_RAM_LOW_LIMIT - 8, 8));
    assert_null(guest_memory_at(mem, LAYOUT_RAM_LOW_LIMIT - 8, 16)); /* runs into the hole */
    assert_null(guest_memory_at(mem, LAYOUT_MMIO32_BASE + 4096, 4));
    uint8_t *low_end = guest_memory_at(mem, LAYOUT_RAM_LOW_LIMIT - 1, 1);
    uint8_t *high = guest_memory_at(mem, LAYOUT_RAM_HIGH_BASE, 1);
    assert_ptr_equal(high, low_end + 1);
    assert_non_null(guest_memory_at(mem, LAYOUT_RAM_HIGH_BASE + guest_memory_high_size(mem) - 4, 4));
    assert_null(guest_memory_at(mem, LAYOUT_RAM_HIGH_BASE + guest_memory_high_size(mem) - 4, 5));
    guest_memory_destroy(mem);
}

struct seen {
    uint64_t offset;
    uint32_t len;
    uint8_t value;
    int calls;
};

static void record(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct seen *s = opaque;
    s->offset = offset;
    s->len = len;
    s->calls++;
    if (is_write)
        s->value = data[0];
    else
        data[0] = 0x5a;
}

static void test_bus(void **state)
{
    (void)state;
    struct bus *bus = bus_create();
    struct seen a = { 0 }, b = { 0 };
    assert_int_equal(bus_register(bus, BUS_PIO, 0x100, 8, record, &a), 0);
    assert_int_equal(bus_register(bus, BUS_PIO, 0x104, 8, record, &b), -EEXIST);
    assert_int_equal(bus_register(bus, BUS_PIO, 0x108, 8, record, &b), 0);
    assert_int_equal(bus_register(bus, BUS_MMIO, 0x100, 8, record, &b), 0); /* other space */
    assert_int_equal(bus_register(bus, BUS_MMIO, UINT64_MAX - 2, 8, record, &b), -EINVAL);

    uint8_t data[4] = { 0x42 };
    assert_true(bus_dispatch(bus, BUS_PIO, 0x103, data, 1, true));
    assert_int_equal(a.offset, 3);
    assert_int_equal(a.value, 0x42);
    /* An access straddling two devices belongs to neither. */
    assert_false(bus_dispatch(bus, BUS_PIO, 0x106, data, 4, false));
    assert_int_equal(data[0], 0xff);
    assert_int_equal(bus_unclaimed_count(bus, BUS_PIO), 1);
    assert_true(bus_dispatch(bus, BUS_PIO, 0x108, data, 1, false));
    assert_int_equal(data[0], 0x5a);
    assert_int_equal(bus_unregister(bus, BUS_PIO, 0x108), 0);
    assert_int_equal(bus_unregister(bus, BUS_PIO, 0x108), -ENOENT);
    assert_false(bus_dispatch(bus, BUS_PIO, 0x108, data, 1, false));
    bus_destroy(bus);
}

/* mov al, 1; out 0x51, al (ioeventfd, no exit); mov al, 0x2a; out 0xf4, al; hlt */
static const uint8_t guest_code[] = { 0xb0, 0x01, 0xe6, 0x51, 0xb0, 0x2a, 0xe6, 0xf4, 0xf4 };

/* A one-vCPU VM with 16 MiB of RAM and its platform devices; the test is
 * skipped without KVM. */
struct test_vm {
    struct guest_memory *mem;
    struct bus *bus;
    struct vm *vm;
    struct platform *platform;
};

static void test_vm_create(struct test_vm *t)
{
    if (access("/dev/kvm", W_OK) != 0)
        skip();
    char err[256];
    t->mem = guest_memory_create(16 << 20);
    t->bus = bus_create();
    t->vm = vm_create(1, t->mem, t->bus, err, sizeof(err));
    assert_non_null(t->vm);
    t->platform = platform_create(t->vm);
    assert_non_null(t->platform);
}

static void test_vm_destroy(struct test_vm *t)
{
    platform_destroy(t->platform);
    vm_destroy(t->vm);
    bus_destroy(t->bus);
    guest_memory_destroy(t->mem);
}

static void test_ioeventfd_and_msi_routes(void **state)
{
    (void)state;
    struct test_vm t;
    test_vm_create(&t);
    t.vm->seccomp = true;
    struct vm_services svc;
    vm_fill_services(t.vm, &svc);
    assert_ptr_equal(svc.mem, t.mem);

    struct seen port = { 0 };
    assert_int_equal(bus_register(t.bus, BUS_PIO, 0x51, 1, record, &port), 0);
    int efd = eventfd(0, EFD_NONBLOCK);
    assert_int_equal(svc.add_ioeventfd(svc.vm, BUS_PIO, 0x51, 1, efd), 0);

    memcpy(guest_memory_at(t.mem, 0x100000, sizeof(guest_code)), guest_code, sizeof(guest_code));
    struct boot_entry entry = { .mode = BOOT_PVH32, .entry = 0x100000, .info = 0 };
    int status = -1;
    assert_int_equal(vm_run(t.vm, &entry, &status), VM_STOP_DEBUG_EXIT);
    assert_int_equal(status, 0x2a);
    uint64_t count = 0;
    assert_int_equal(read(efd, &count, sizeof(count)), (ssize_t)sizeof(count));
    assert_int_equal(count, 1);
    assert_int_equal(port.calls, 0); /* KVM consumed the write; no exit */
    assert_int_equal(svc.del_ioeventfd(svc.vm, BUS_PIO, 0x51, 1, efd), 0);
    assert_int_equal(svc.del_ioeventfd(svc.vm, BUS_PIO, 0x51, 1, efd), -ENOENT);

    int e1 = eventfd(0, 0), e2 = eventfd(0, 0), e3 = eventfd(0, 0);
    int g1 = svc.set_msi_irqfd(svc.vm, e1, LAYOUT_LAPIC_BASE, 0x30);
    int g2 = svc.set_msi_irqfd(svc.vm, e2, LAYOUT_LAPIC_BASE, 0x31);
    assert_int_equal(g1, LAYOUT_IOAPIC_PINS);
    assert_int_equal(g2, LAYOUT_IOAPIC_PINS + 1);
    assert_int_equal(svc.set_msi_irqfd(svc.vm, e2, LAYOUT_LAPIC_BASE, 0x41), g2); /* update */
    assert_int_equal(svc.clear_irqfd(svc.vm, e1), 0);
    assert_int_equal(svc.clear_irqfd(svc.vm, e1), -ENOENT);
    assert_int_equal(svc.set_msi_irqfd(svc.vm, e3, LAYOUT_LAPIC_BASE, 0x32), g1); /* reused */
    assert_int_equal(svc.set_msi_irqfd(svc.vm, -1, LAYOUT_LAPIC_BASE, 0x33) < 0, 1);
    close(e1);
    close(e2);
    close(e3);
    close(efd);
    test_vm_destroy(&t);
}

/* Whether the in-kernel IOAPIC sees its input pin `pin` asserted. */
static bool ioapic_pin_raised(struct vm *vm, unsigned pin)
{
    struct kvm_irqchip chip = {.chip_id = KVM_IRQCHIP_IOAPIC};
    assert_int_equal(ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip), 0);
    return chip.chip.ioapic.irr >> pin & 1;
}

/* The fixed power button: PWRBTN_STS is set, and the SCI stays raised while
 * the guest has PWRBTN_EN set, until it clears the status bit. */
static void test_power_button_raises_sci(void **state)
{
    (void)state;
    struct test_vm t;
    test_vm_create(&t);
    uint8_t word[2];

    platform_press_power_button(t.platform);
    assert_true(bus_dispatch(t.bus, BUS_PIO, LAYOUT_ACPI_PM_BASE, word, 2, false));
    assert_int_equal(word[1] & 1, 1); /* PWRBTN_STS, bit 8 */
    assert_false(ioapic_pin_raised(t.vm, LAYOUT_ACPI_SCI_IRQ)); /* not enabled yet */

    word[0] = 0, word[1] = 1; /* PWRBTN_EN */
    assert_true(bus_dispatch(t.bus, BUS_PIO, LAYOUT_ACPI_PM_BASE + 2, word, 2, true));
    assert_true(ioapic_pin_raised(t.vm, LAYOUT_ACPI_SCI_IRQ));

    assert_true(bus_dispatch(t.bus, BUS_PIO, LAYOUT_ACPI_PM_BASE, word, 2, true)); /* write 1 to clear */
    assert_true(bus_dispatch(t.bus, BUS_PIO, LAYOUT_ACPI_PM_BASE, word, 2, false));
    assert_int_equal(word[1] & 1, 0);
    assert_false(ioapic_pin_raised(t.vm, LAYOUT_ACPI_SCI_IRQ));

    platform_press_power_button(t.platform);
    assert_true(ioapic_pin_raised(t.vm, LAYOUT_ACPI_SCI_IRQ));
    test_vm_destroy(&t);
}

static void test_aml_package_length(void **state)
{
    (void)state;
    /* 62 body bytes + 1 length byte fit the one-byte form (<= 63). */
    uint8_t body[200];
    memset(body, 0xab, sizeof(body));
    struct aml a;
    aml_init(&a);
    aml_buffer(&a, body, 59); /* inner: BytePrefix 59 (2) + 59 bytes = 61 */
    assert_int_equal(a.buf[0], 0x11);
    assert_int_equal(a.buf[1], 62);
    assert_int_equal(a.len, 1 + 1 + 61);
    aml_free(&a);
    aml_buffer(&a, body, 200); /* inner 202: two-byte form, total 204 = 0xcc */
    assert_int_equal(a.buf[1], 0x40 | 0x0c);
    assert_int_equal(a.buf[2], 0x0c);
    assert_int_equal(a.len, 1 + 2 + 202);
    aml_free(&a);
    aml_eisaid(&a, "PNP0A03");
    assert_memory_equal(a.buf, ((uint8_t[]){ 0x0c, 0x41, 0xd0, 0x0a, 0x03 }), 5);
    aml_free(&a);
    aml_name_string(&a, "\\_SB_.PCI0");
    assert_memory_equal(a.buf, "\\\x2e_SB_PCI0", 10);
    aml_free(&a);
}

static void write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* The initrd goes, page-aligned, as high as it fits below the limit and
 * above the kernel, byte for byte; an empty one, one that does not fit
 * and a missing one are refused with the file named. */
static void test_initrd_placement(void **state)
{
    (void)state;
    const uint64_t ram = 32u << 20, kernel_end = 2u << 20, limit = 30u << 20;
    struct guest_memory *mem = guest_memory_create(ram);
    assert_non_null(mem);
    char dir[] = "/tmp/vdfs-initrd-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/initrd", dir);
    size_t len = 3 * 4096 + 123;
    uint8_t *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 13 + 7);
    write_file(path, data, len);
    uint64_t addr = 0, size = 0;
    char err[256];
    assert_int_equal(boot_place_initrd(mem, path, kernel_end, limit, &addr, &size, err, sizeof(err)), 0);
    assert_int_equal(size, len);
    assert_int_equal(addr % 4096, 0);
    assert_true(addr >= kernel_end && addr + size <= limit && limit - (addr + size) < 4096);
    assert_memory_equal(guest_memory_at(mem, addr, len), data, len);

    assert_int_equal(boot_place_initrd(mem, path, limit - 4096, limit, &addr, &size, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "does not fit in guest RAM after the kernel"));
    write_file(path, data, 0);
    assert_int_equal(boot_place_initrd(mem, path, kernel_end, limit, &addr, &size, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "is empty"));
    unlink(path);
    assert_int_equal(boot_place_initrd(mem, path, kernel_end, limit, &addr, &size, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "initrd /tmp/vdfs-initrd-"));
    rmdir(dir);
    free(data);
    guest_memory_destroy(mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_guest_memory_bounds),
        cmocka_unit_test(test_bus),
        cmocka_unit_test(test_ioeventfd_and_msi_routes),
        cmocka_unit_test(test_power_button_raises_sci),
        cmocka_unit_test(test_aml_package_length),
        cmocka_unit_test(test_initrd_placement),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

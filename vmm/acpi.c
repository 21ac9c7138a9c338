/* ACPI table construction.  The guest finds the RSDP through PVH start_info
 * or boot_params, and also by the legacy scan of 0xE0000-0xFFFFF. */
#include "acpi.h"

#include <stdbool.h>
#include <string.h>

#include "aml.h"
#include "layout.h"

#define ACPI_OEM_ID    "VDFS  "
#define ACPI_OEM_TABLE "VDFSVM  "

#define FADT_SIZE 276 /* ACPI 6.0 FADT, with the hypervisor vendor field */
#define FADT_REVISION 6
#define MADT_LAPIC_ENABLED 1
#define MADT_PCAT_COMPAT   1
#define MADT_ISO_ACTIVE_HIGH 0x1
#define MADT_ISO_LEVEL       0xc

/* FADT fixed feature flags */
#define FADT_WBINVD         (1u << 0)
#define FADT_SLP_BUTTON     (1u << 5)
#define FADT_RESET_REG_SUP  (1u << 10)
/* IA-PC boot architecture flags */
#define BOOT_ARCH_8042      (1u << 1)
#define BOOT_ARCH_NO_VGA    (1u << 2)
#define BOOT_ARCH_NO_CMOS   (1u << 5)

struct table_writer {
    uint8_t *base; /* host pointer of LAYOUT_ACPI_BASE */
    uint64_t used;
    bool overflow;
};

static uint64_t alloc_table(struct table_writer *w, uint64_t size, uint64_t align)
{
    uint64_t at = (w->used + align - 1) & ~(align - 1);
    if (at + size > LAYOUT_ACPI_SIZE) {
        w->overflow = true;
        return 0;
    }
    w->used = at + size;
    return at;
}

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static uint8_t checksum(const uint8_t *p, size_t len)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)(0 - sum);
}

static void table_header(uint8_t *t, const char *sig, uint32_t len, uint8_t revision)
{
    memcpy(t, sig, 4);
    put32(t + 4, len);
    t[8] = revision;
    memcpy(t + 10, ACPI_OEM_ID, 6);
    memcpy(t + 16, ACPI_OEM_TABLE, 8);
    put32(t + 24, 1);
    memcpy(t + 28, "VDFS", 4);
    put32(t + 32, 1);
}

static void table_seal(uint8_t *t)
{
    uint32_t len;
    memcpy(&len, t + 4, 4);
    t[9] = 0;
    t[9] = checksum(t, len);
}

/* Generic Address Structure for a system I/O port block. */
static void gas_io(uint8_t *g, uint16_t port, uint8_t bits)
{
    g[0] = 1; /* system I/O */
    g[1] = bits;
    g[2] = 0;
    g[3] = bits == 8 ? 1 : bits == 16 ? 2 : 3;
    put64(g + 4, port);
}

static void build_pci_crs(struct aml *dsdt_body_dev)
{
    uint8_t crs[128];
    size_t n = 0;
    /* WordBusNumber: bus 0-255, producer, fixed min/max. */
    const uint8_t bus[] = { 0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0x00, 0x00, 0xff, 0x00,
                            0, 0, 0x00, 0x01 };
    memcpy(crs + n, bus, sizeof(bus));
    n += sizeof(bus);
    /* IO(Decode16, 0xCF8, 0xCF8, 1, 8): PCI configuration mechanism #1. */
    const uint8_t cfg[] = { 0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08 };
    memcpy(crs + n, cfg, sizeof(cfg));
    n += sizeof(cfg);
    /* WordIO windows around it: 0x0000-0x0CF7 and 0x0D00-0xFFFF. */
    const uint8_t io_low[] = { 0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x00, 0xf7, 0x0c,
                               0, 0, 0xf8, 0x0c };
    memcpy(crs + n, io_low, sizeof(io_low));
    n += sizeof(io_low);
    const uint8_t io_high[] = { 0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x0d, 0xff, 0xff,
                                0, 0, 0x00, 0xf3 };
    memcpy(crs + n, io_high, sizeof(io_high));
    n += sizeof(io_high);
    /* DWordMemory: the 32-bit BAR window, cacheable read/write. */
    uint8_t mem32[26] = { 0x87, 0x17, 0x00, 0x00, 0x0c, 0x03 };
    put32(mem32 + 6, 0);
    put32(mem32 + 10, (uint32_t)LAYOUT_MMIO32_BASE);
    put32(mem32 + 14, (uint32_t)(LAYOUT_MMIO32_END - 1));
    put32(mem32 + 18, 0);
    put32(mem32 + 22, (uint32_t)LAYOUT_MMIO32_SIZE);
    memcpy(crs + n, mem32, sizeof(mem32));
    n += sizeof(mem32);
    crs[n++] = 0x79; /* end tag */
    crs[n++] = 0x00;

    struct aml value;
    aml_init(&value);
    aml_buffer(&value, crs, n);
    aml_name(dsdt_body_dev, "_CRS", &value);
    aml_free(&value);
}

/* Returns the DSDT body (AML after the header), or failed. */
static void build_dsdt_aml(struct aml *out)
{
    struct aml dev, v, sb, pkg;
    aml_init(&dev);
    aml_init(&v);
    aml_eisaid(&v, "PNP0A03");
    aml_name(&dev, "_HID", &v);
    aml_free(&v);
    aml_integer(&v, 0);
    aml_name(&dev, "_ADR", &v);
    aml_name(&dev, "_UID", &v);
    aml_name(&dev, "_BBN", &v);
    aml_name(&dev, "_SEG", &v);
    aml_free(&v);
    build_pci_crs(&dev);

    aml_init(&sb);
    aml_device(&sb, "PCI0", &dev);
    aml_scope(out, "\\_SB_", &sb);

    aml_init(&pkg);
    aml_integer(&pkg, ACPI_S5_SLP_TYP);
    aml_integer(&pkg, ACPI_S5_SLP_TYP);
    aml_integer(&pkg, 0);
    aml_integer(&pkg, 0);
    aml_init(&v);
    aml_package(&v, 4, &pkg);
    aml_name(out, "\\_S5_", &v);
    aml_free(&v);
    aml_free(&pkg);
    aml_free(&sb);
    aml_free(&dev);
}

uint64_t acpi_build(struct guest_memory *mem, unsigned ncpus)
{
    uint8_t *base = guest_memory_at(mem, LAYOUT_ACPI_BASE, LAYOUT_ACPI_SIZE);
    if (!base)
        return 0;
    memset(base, 0, LAYOUT_ACPI_SIZE);
    struct table_writer w = { .base = base };

    uint64_t rsdp = alloc_table(&w, 36, 16);
    uint64_t xsdt = alloc_table(&w, 36 + 2 * 8, 16);
    uint64_t facs = alloc_table(&w, 64, 64);
    uint64_t fadt = alloc_table(&w, FADT_SIZE, 16);
    uint32_t madt_len = 44 + 8 * ncpus + 12 + 10;
    uint64_t madt = alloc_table(&w, madt_len, 16);

    struct aml body;
    aml_init(&body);
    build_dsdt_aml(&body);
    uint64_t dsdt = alloc_table(&w, 36 + body.len, 16);
    if (w.overflow || body.failed) {
        aml_free(&body);
        return 0;
    }
    uint64_t gpa = LAYOUT_ACPI_BASE;

    /* DSDT */
    uint8_t *t = base + dsdt;
    table_header(t, "DSDT", (uint32_t)(36 + body.len), 2);
    memcpy(t + 36, body.buf, body.len);
    table_seal(t);
    aml_free(&body);

    /* FACS: no checksum; present because non-reduced hardware needs one. */
    t = base + facs;
    memcpy(t, "FACS", 4);
    put32(t + 4, 64);
    t[32] = 2;

    /* FADT */
    t = base + fadt;
    table_header(t, "FACP", FADT_SIZE, FADT_REVISION);
    /* FIRMWARE_CTRL stays 0: X_FIRMWARE_CTRL below replaces it (ACPI 6). */
    put32(t + 40, (uint32_t)(gpa + dsdt));
    put16(t + 46, LAYOUT_ACPI_SCI_IRQ);
    /* SMI_CMD = 0: the platform is always in ACPI mode. */
    put32(t + 56, LAYOUT_ACPI_PM_BASE);
    put32(t + 64, LAYOUT_ACPI_PM1A_CNT);
    t[88] = 4; /* PM1_EVT_LEN */
    t[89] = 2; /* PM1_CNT_LEN */
    put16(t + 96, 101);  /* P_LVL2_LAT > 100: C2 unsupported */
    put16(t + 98, 1001); /* P_LVL3_LAT > 1000: C3 unsupported */
    put16(t + 109, BOOT_ARCH_8042 | BOOT_ARCH_NO_VGA | BOOT_ARCH_NO_CMOS);
    /* A fixed-feature power button (PWR_BUTTON clear): PWRBTN_STS in PM1
     * status, which `vdfs-vm stop` sets. No sleep button. */
    put32(t + 112, FADT_WBINVD | FADT_SLP_BUTTON);
    t[131] = 0; /* minor version */
    put64(t + 132, gpa + facs);
    put64(t + 140, gpa + dsdt);
    gas_io(t + 148, LAYOUT_ACPI_PM_BASE, 32);
    gas_io(t + 172, LAYOUT_ACPI_PM1A_CNT, 16);
    memcpy(t + 268, "VDFS-VM ", 8);
    table_seal(t);

    /* MADT: one enabled LAPIC per vCPU and the IOAPIC. */
    t = base + madt;
    table_header(t, "APIC", madt_len, 4);
    put32(t + 36, (uint32_t)LAYOUT_LAPIC_BASE);
    put32(t + 40, MADT_PCAT_COMPAT);
    uint8_t *e = t + 44;
    for (unsigned i = 0; i < ncpus; i++, e += 8) {
        e[0] = 0; /* processor local APIC */
        e[1] = 8;
        e[2] = (uint8_t)i; /* ACPI processor UID */
        e[3] = (uint8_t)i; /* APIC ID */
        put32(e + 4, MADT_LAPIC_ENABLED);
    }
    e[0] = 1; /* I/O APIC */
    e[1] = 12;
    e[2] = 0; /* IOAPIC ID, as KVM's in-kernel IOAPIC reports it */
    put32(e + 4, (uint32_t)LAYOUT_IOAPIC_BASE);
    put32(e + 8, 0);
    e += 12;
    /* The SCI on ISA IRQ 9 is level-triggered, active high, as the VMM
     * drives it (KVM_IRQ_LINE), where ACPI's default would be active low. */
    e[0] = 2; /* interrupt source override */
    e[1] = 10;
    e[2] = 0; /* ISA bus */
    e[3] = LAYOUT_ACPI_SCI_IRQ;
    put32(e + 4, LAYOUT_ACPI_SCI_IRQ);
    put16(e + 8, MADT_ISO_ACTIVE_HIGH | MADT_ISO_LEVEL);
    table_seal(t);

    /* XSDT */
    t = base + xsdt;
    table_header(t, "XSDT", 36 + 2 * 8, 1);
    put64(t + 36, gpa + fadt);
    put64(t + 44, gpa + madt);
    table_seal(t);

    /* RSDP (ACPI 2.0+): checksum over the first 20 bytes, extended over 36. */
    t = base + rsdp;
    memcpy(t, "RSD PTR ", 8);
    memcpy(t + 9, ACPI_OEM_ID, 6);
    t[15] = 2;
    put32(t + 16, 0);
    put32(t + 20, 36);
    put64(t + 24, gpa + xsdt);
    t[8] = checksum(t, 20);
    t[32] = checksum(t, 36);
    return gpa + rsdp;
}

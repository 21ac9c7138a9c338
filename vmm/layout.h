/* Guest physical address layout shared by the VMM core and the devices.
 *
 *   0x00000000 - 0x0009FFFF  RAM (low 640 KiB; boot structures live here)
 *   0x000A0000 - 0x000FFFFF  legacy hole (VGA/BIOS area), reserved in e820
 *   0x00100000 - ...         RAM, up to RAM_LOW_LIMIT at most
 *   0xE0000000 - 0xFEBFFFFF  32-bit MMIO window for PCI BARs
 *   0xFEC00000               IOAPIC
 *   0xFEE00000               LAPIC
 *   0x100000000 - ...        RAM above 3.5 GiB, relocated above 4 GiB
 *
 * The hole at 640K-1M is backed by the same host mapping as the rest of
 * low RAM (KVM needs no gap there) but is reported reserved to the guest. */
#ifndef VDFS_VMM_LAYOUT_H
#define VDFS_VMM_LAYOUT_H

#define LAYOUT_LEGACY_HOLE_START 0x000A0000ull
#define LAYOUT_LEGACY_HOLE_END   0x00100000ull /* exclusive */

/* Guest RAM below 4 GiB stops here; the remainder starts at RAM_HIGH_BASE. */
#define LAYOUT_RAM_LOW_LIMIT 0xE0000000ull
#define LAYOUT_RAM_HIGH_BASE 0x100000000ull

/* PCI memory BARs are allocated by the PCI code inside this window. */
#define LAYOUT_MMIO32_BASE 0xE0000000ull
#define LAYOUT_MMIO32_END  0xFEC00000ull /* exclusive */
#define LAYOUT_MMIO32_SIZE (LAYOUT_MMIO32_END - LAYOUT_MMIO32_BASE)

/* PCI I/O BARs (if any device wants one) are allocated inside this window. */
#define LAYOUT_PIO_PCI_BASE 0xC000u
#define LAYOUT_PIO_PCI_END  0x10000u /* exclusive */

#define LAYOUT_IOAPIC_BASE 0xFEC00000ull
#define LAYOUT_IOAPIC_SIZE 0x1000ull
#define LAYOUT_LAPIC_BASE  0xFEE00000ull
#define LAYOUT_LAPIC_SIZE  0x1000ull

/* Number of IOAPIC pins KVM's in-kernel IOAPIC provides; GSIs at or above
 * this are free for MSI routes. */
#define LAYOUT_IOAPIC_PINS 24

/* Legacy platform ports and IRQs. */
#define LAYOUT_COM1_PORT      0x3F8u
#define LAYOUT_COM1_IRQ       4u
#define LAYOUT_I8042_DATA     0x60u
#define LAYOUT_I8042_CMD      0x64u
#define LAYOUT_DEBUG_EXIT     0xF4u
#define LAYOUT_POST_PORT      0x80u
#define LAYOUT_PCI_CONFIG     0xCF8u /* 0xCF8-0xCFF, owned by the PCI code */
#define LAYOUT_ACPI_PM_BASE   0x600u /* PM1a event block (4 bytes) */
#define LAYOUT_ACPI_PM1A_CNT  0x604u /* PM1a control block (2 bytes) */
#define LAYOUT_ACPI_SCI_IRQ   9u

/* Boot structures the core places in low RAM (below the legacy hole). */
#define LAYOUT_BOOT_GDT       0x00000500ull
#define LAYOUT_BOOT_PML4      0x00009000ull /* PML4, PDPT, 4 page directories */
#define LAYOUT_BOOT_INFO      0x00007000ull /* hvm_start_info or boot_params */
#define LAYOUT_BOOT_MEMMAP    0x00006000ull /* PVH memmap table */
#define LAYOUT_BOOT_MODLIST   0x00005000ull /* PVH module list */
#define LAYOUT_BOOT_CMDLINE   0x00020000ull
#define LAYOUT_BOOT_CMDLINE_MAX 0x10000ull
#define LAYOUT_ACPI_BASE      0x000E0000ull /* RSDP and tables, 128 KiB, reserved */
#define LAYOUT_ACPI_SIZE      0x00020000ull
#define LAYOUT_KERNEL_DEFAULT 0x00100000ull

#endif

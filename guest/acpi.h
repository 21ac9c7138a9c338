/* Just enough ACPI to find the ECAM window (MCFG) and the PM1a event block
 * (FADT). */
#ifndef GUEST_ACPI_H
#define GUEST_ACPI_H

#include <stdbool.h>
#include <stdint.h>

/* ECAM base for PCI segment 0 from the MCFG reached through the RSDP at
 * rsdp_paddr, or 0 when there is none.  Reads guest RAM only: no exits. */
uint64_t acpi_find_ecam(uint64_t rsdp_paddr);
/* The I/O port of the FADT's PM1a event block (status, then enable) and
 * the block's length, or false when there is none (hardware-reduced ACPI,
 * as on QEMU's microvm). */
bool acpi_find_pm1_event(uint64_t rsdp_paddr, uint16_t *port, uint8_t *len);

#endif

/* Just enough ACPI to find the ECAM window (MCFG). */
#ifndef GUEST_ACPI_H
#define GUEST_ACPI_H

#include <stdint.h>

/* ECAM base for PCI segment 0 from the MCFG reached through the RSDP at
 * rsdp_paddr, or 0 when there is none.  Reads guest RAM only: no exits. */
uint64_t acpi_find_ecam(uint64_t rsdp_paddr);

#endif

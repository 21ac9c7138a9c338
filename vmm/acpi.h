/* ACPI tables for the guest: RSDP, XSDT, FADT (+FACS), MADT and a DSDT with
 * a PCI host bridge and the _S5 sleep package. */
#ifndef VDFS_VMM_ACPI_H
#define VDFS_VMM_ACPI_H

#include <stdint.h>

#include "bus.h"

/* SLP_TYP value the _S5 package announces; platform.c powers off on it. */
#define ACPI_S5_SLP_TYP 5

/* Writes the tables into LAYOUT_ACPI_BASE.  Returns the RSDP's guest
 * address, or 0 if they do not fit. */
uint64_t acpi_build(struct guest_memory *mem, unsigned ncpus);

#endif

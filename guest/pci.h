/* PCI configuration access (0xCF8/0xCFC or ECAM) and BAR placement. */
#ifndef GUEST_PCI_H
#define GUEST_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pci_device {
	uint8_t bus, dev, fn;
	uint16_t vendor, device;
	uint32_t class_code; /* base class << 16 | subclass << 8 | prog-if */
};

#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_CAPABILITY_LIST 0x34
#define PCI_BAR0 0x10

/* ecam_base 0 selects the 0xCF8/0xCFC mechanism (two exits an access);
 * ECAM costs one MMIO exit an access. */
void pci_init(uint64_t ecam_base);
bool pci_uses_ecam(void);
/* Memory window for BARs the firmware left unassigned. */
void pci_set_bar_window(uint64_t base, uint64_t limit);

uint32_t pci_read32(const struct pci_device *d, uint16_t offset);
uint8_t pci_read8(const struct pci_device *d, uint16_t offset);
void pci_write32(const struct pci_device *d, uint16_t offset, uint32_t value);
void pci_write16(const struct pci_device *d, uint16_t offset, uint16_t value);

/* Functions present on bus 0, in slot order.  Returns how many were found;
 * at most max are stored. */
size_t pci_scan_bus0(struct pci_device *out, size_t max);

/* Memory address of BAR bar, assigning one from the window when the BAR is
 * unassigned or above 4 GiB (the guest maps only the low 4 GiB).  Returns 0
 * for I/O BARs, absent BARs or an exhausted window. */
uint64_t pci_bar_address(const struct pci_device *d, unsigned bar);
void pci_enable_memory_and_master(const struct pci_device *d);

#endif

#include "console.h"
#include "io.h"
#include "lib.h"
#include "pci.h"

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc
#define PCI_HEADER_TYPE 0x0e
#define PCI_HEADER_MULTIFUNCTION 0x80
#define PCI_BAR_IO 0x1
#define PCI_BAR_TYPE_64 0x4
#define FOUR_GIB 0x100000000ULL

static uint64_t ecam;
static uint64_t window_next, window_limit;

void pci_init(uint64_t ecam_base)
{
	ecam = ecam_base;
}

bool pci_uses_ecam(void)
{
	return ecam != 0;
}

void pci_set_bar_window(uint64_t base, uint64_t limit)
{
	window_next = base;
	window_limit = limit;
}

static uint64_t ecam_address(const struct pci_device *d, uint16_t offset)
{
	return ecam + ((uint64_t)d->bus << 20) + ((uint64_t)d->dev << 15) +
	       ((uint64_t)d->fn << 12) + offset;
}

static void select_cf8(const struct pci_device *d, uint16_t offset)
{
	outl(PCI_CONFIG_ADDRESS, 0x80000000u | (uint32_t)d->bus << 16 | (uint32_t)d->dev << 11 |
					 (uint32_t)d->fn << 8 | (offset & 0xfc));
}

uint32_t pci_read32(const struct pci_device *d, uint16_t offset)
{
	if (ecam)
		return mmio_read32(ecam_address(d, offset & ~3));
	select_cf8(d, offset);
	return inl(PCI_CONFIG_DATA);
}

uint8_t pci_read8(const struct pci_device *d, uint16_t offset)
{
	return (uint8_t)(pci_read32(d, offset) >> (8 * (offset & 3)));
}

void pci_write32(const struct pci_device *d, uint16_t offset, uint32_t value)
{
	if (ecam) {
		mmio_write32(ecam_address(d, offset & ~3), value);
		return;
	}
	select_cf8(d, offset);
	outl(PCI_CONFIG_DATA, value);
}

void pci_write16(const struct pci_device *d, uint16_t offset, uint16_t value)
{
	if (ecam) {
		mmio_write16(ecam_address(d, offset & ~1), value);
		return;
	}
	select_cf8(d, offset);
	outw(PCI_CONFIG_DATA + (offset & 2), value);
}

static bool probe_function(uint8_t dev, uint8_t fn, struct pci_device *out)
{
	struct pci_device d = { .bus = 0, .dev = dev, .fn = fn };
	uint32_t id = pci_read32(&d, 0);

	if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0)
		return false;
	d.vendor = (uint16_t)id;
	d.device = (uint16_t)(id >> 16);
	d.class_code = pci_read32(&d, 0x08) >> 8;
	*out = d;
	return true;
}

size_t pci_scan_bus0(struct pci_device *out, size_t max)
{
	size_t found = 0;

	for (uint8_t dev = 0; dev < 32; dev++) {
		struct pci_device d;
		uint8_t functions = 1;

		if (!probe_function(dev, 0, &d))
			continue;
		if (pci_read8(&d, PCI_HEADER_TYPE) & PCI_HEADER_MULTIFUNCTION)
			functions = 8;
		for (uint8_t fn = 0; fn < functions; fn++) {
			if (fn && !probe_function(dev, fn, &d))
				continue;
			if (found < max)
				out[found] = d;
			found++;
		}
	}
	return found;
}

uint64_t pci_bar_address(const struct pci_device *d, unsigned bar)
{
	uint16_t reg = (uint16_t)(PCI_BAR0 + 4 * bar);
	uint32_t low = pci_read32(d, reg), high = 0, command;
	bool is64 = (low & 0x6) == PCI_BAR_TYPE_64;
	uint64_t address, mask, size, placed;

	if (bar > 5 || (low & PCI_BAR_IO) || (is64 && bar == 5))
		return 0;
	if (is64)
		high = pci_read32(d, reg + 4);
	address = ((uint64_t)high << 32) | (low & ~0xfu);
	if (address && address + 0x1000 <= FOUR_GIB)
		return address;

	/* Size the BAR with decoding off, so the probe value never decodes. */
	command = pci_read32(d, PCI_COMMAND) & 0xffff;
	pci_write16(d, PCI_COMMAND, (uint16_t)(command & ~PCI_COMMAND_MEMORY));
	pci_write32(d, reg, 0xffffffff);
	mask = pci_read32(d, reg) & ~0xfull;
	if (is64) {
		pci_write32(d, reg + 4, 0xffffffff);
		mask |= (uint64_t)pci_read32(d, reg + 4) << 32;
	} else {
		mask |= 0xffffffff00000000ull;
	}
	size = ~mask + 1;
	placed = align_up(window_next, size ? size : 1);
	if (!mask || !size || placed < window_next || placed + size > window_limit ||
	    placed + size < placed) {
		pci_write32(d, reg, low);
		if (is64)
			pci_write32(d, reg + 4, high);
		pci_write16(d, PCI_COMMAND, (uint16_t)command);
		console_printf("VDFS-GUEST ERROR no room for BAR%u of %02x:%02x.%u (size 0x%lx)\n",
			       bar, d->bus, d->dev, d->fn, size);
		return 0;
	}
	window_next = placed + size;
	pci_write32(d, reg, (uint32_t)placed);
	if (is64)
		pci_write32(d, reg + 4, 0);
	pci_write16(d, PCI_COMMAND, (uint16_t)command);
	return placed;
}

void pci_enable_memory_and_master(const struct pci_device *d)
{
	uint32_t command = pci_read32(d, PCI_COMMAND) & 0xffff;
	uint32_t wanted = command | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;

	if (wanted != command)
		pci_write16(d, PCI_COMMAND, (uint16_t)wanted);
}

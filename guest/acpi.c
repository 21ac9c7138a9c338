#include "acpi.h"
#include "lib.h"

#define ACPI_HEADER_SIZE 36
#define MCFG_ENTRIES_OFFSET 44
#define MCFG_ENTRY_SIZE 16
#define FADT_PM1A_EVT_BLK 56
#define FADT_PM1_EVT_LEN 88
/* Tables lie in low RAM; anything else is a corrupt pointer. */
#define ACPI_ADDRESS_LIMIT 0x100000000ULL

static uint32_t read_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t read_le64(const uint8_t *p)
{
	return read_le32(p) | (uint64_t)read_le32(p + 4) << 32;
}

static uint64_t ecam_from_mcfg(const uint8_t *mcfg)
{
	uint32_t length = read_le32(mcfg + 4);

	for (uint32_t off = MCFG_ENTRIES_OFFSET; off + MCFG_ENTRY_SIZE <= length; off += MCFG_ENTRY_SIZE) {
		const uint8_t *entry = mcfg + off;
		uint16_t segment = (uint16_t)(entry[8] | entry[9] << 8);

		if (segment == 0 && entry[10] == 0)
			return read_le64(entry);
	}
	return 0;
}

/* The table with signature `sig` that the RSDP's XSDT (or RSDT) lists, or 0. */
static const uint8_t *find_table(uint64_t rsdp_paddr, const char *sig)
{
	const uint8_t *rsdp = (const uint8_t *)rsdp_paddr;
	uint64_t root;
	unsigned entry_size;

	if (!rsdp_paddr || rsdp_paddr >= ACPI_ADDRESS_LIMIT || memcmp(rsdp, "RSD PTR ", 8) != 0)
		return 0;
	if (rsdp[15] >= 2 && read_le64(rsdp + 24)) {
		root = read_le64(rsdp + 24);
		entry_size = 8;
	} else {
		root = read_le32(rsdp + 16);
		entry_size = 4;
	}
	if (!root || root >= ACPI_ADDRESS_LIMIT)
		return 0;

	const uint8_t *table = (const uint8_t *)root;
	uint32_t length = read_le32(table + 4);

	for (uint32_t off = ACPI_HEADER_SIZE; off + entry_size <= length; off += entry_size) {
		uint64_t addr = entry_size == 8 ? read_le64(table + off) : read_le32(table + off);

		if (addr && addr < ACPI_ADDRESS_LIMIT && memcmp((const void *)addr, sig, 4) == 0)
			return (const uint8_t *)addr;
	}
	return 0;
}

uint64_t acpi_find_ecam(uint64_t rsdp_paddr)
{
	const uint8_t *mcfg = find_table(rsdp_paddr, "MCFG");

	return mcfg ? ecam_from_mcfg(mcfg) : 0;
}

bool acpi_find_pm1_event(uint64_t rsdp_paddr, uint16_t *port, uint8_t *len)
{
	const uint8_t *fadt = find_table(rsdp_paddr, "FACP");

	if (!fadt || read_le32(fadt + 4) < FADT_PM1_EVT_LEN + 1)
		return false;
	*port = (uint16_t)read_le32(fadt + FADT_PM1A_EVT_BLK);
	*len = fadt[FADT_PM1_EVT_LEN];
	return *port != 0 && *len >= 4;
}

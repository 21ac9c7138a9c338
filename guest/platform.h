/* Ending the guest, and the facts the VMM hands over at boot. */
#ifndef GUEST_PLATFORM_H
#define GUEST_PLATFORM_H

#include <stdbool.h>
#include <stdint.h>

/* Exit statuses (docs/guest.md). */
enum guest_status {
	STATUS_PASS = 0,
	STATUS_TEST_FAILED = 1,
	STATUS_BAD_CMDLINE = 2,
	STATUS_NO_DEVICE = 3,
	STATUS_FAULT = 4,
	STATUS_BAD_BOOT = 5,
};

/* struct hvm_start_info (Xen public/arch-x86/hvm/start_info.h), handed over
 * in EBX at the PVH entry. */
#define HVM_START_MAGIC 0x336ec578
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	/* version >= 1 */
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

#define HVM_MEMMAP_RAM 1

/* Prints "VDFS-GUEST DONE status=N", then writes N to the isa-debug-exit
 * port 0xf4.  If the VMM has no such port, halts for good. */
__attribute__((noreturn)) void guest_finish(enum guest_status status);
/* In boot.S: ring 3's hlt there faults into ring 0, which halts for good. */
__attribute__((noreturn)) void guest_halt(void);
/* Called from the ring-0 exception stubs in boot.S. */
__attribute__((noreturn)) void report_fault(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2,
					    uint64_t rflags, uint64_t cs);

/* The ACPI RSDP the VMM handed over at boot (0: none). */
void platform_set_rsdp(uint64_t paddr);
uint64_t platform_rsdp(void);

/* RAM the guest may use after its image: [heap_start, heap_end). */
void heap_init(uint64_t start, uint64_t end);
/* Zeroed, aligned memory from the heap, or 0 when it is exhausted. */
void *heap_alloc(uint64_t size, uint64_t align);
uint64_t heap_free_bytes(void);

/* The TSC rate, as given by the host (tsc_khz=); ring 3 cannot calibrate it
 * cheaply.  Without it, timeouts assume 3 GHz and rates are not printed. */
void clock_set_khz(uint64_t khz);
uint64_t clock_khz(void);
bool clock_known(void);
uint64_t clock_ticks_from_ms(uint64_t ms);
uint64_t clock_us_from_ticks(uint64_t ticks);

#endif


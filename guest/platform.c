#include "console.h"
#include "io.h"
#include "lib.h"
#include "platform.h"

#define DEBUG_EXIT_PORT 0xf4

void guest_finish(enum guest_status status)
{
	console_printf("VDFS-GUEST DONE status=%u\n", (unsigned)status);
	outb(DEBUG_EXIT_PORT, (uint8_t)status);
	/* No exit device: halt for good rather than spin (see boot.S). */
	guest_halt();
}

/* Ring 0, in the emulator: kept to a few lines of output. */
void report_fault(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2, uint64_t rflags, uint64_t cs)
{
	console_printf("VDFS-GUEST FAULT vector=%lu error=0x%lx rip=0x%lx cr2=0x%lx rflags=0x%lx cs=0x%lx\n",
		       vector, error, rip, cr2, rflags, cs);
	console_printf("VDFS-GUEST DONE status=%u\n", (unsigned)STATUS_FAULT);
	outb(DEBUG_EXIT_PORT, STATUS_FAULT);
	for (;;)
		__asm__ volatile("cli; hlt");
}

static uint64_t rsdp_paddr;

void platform_set_rsdp(uint64_t paddr)
{
	rsdp_paddr = paddr;
}

uint64_t platform_rsdp(void)
{
	return rsdp_paddr;
}

static uint64_t heap_next, heap_end;

void heap_init(uint64_t start, uint64_t end)
{
	heap_next = start;
	heap_end = end;
}

void *heap_alloc(uint64_t size, uint64_t align)
{
	uint64_t start = align_up(heap_next, align);

	if (start < heap_next || start > heap_end || size > heap_end - start)
		return 0;
	heap_next = start + size;
	memset((void *)start, 0, size);
	return (void *)start;
}

uint64_t heap_free_bytes(void)
{
	return heap_end > heap_next ? heap_end - heap_next : 0;
}

#define ASSUMED_TSC_KHZ 3000000

static uint64_t tsc_khz;

void clock_set_khz(uint64_t khz)
{
	tsc_khz = khz;
}

bool clock_known(void)
{
	return tsc_khz != 0;
}

uint64_t clock_khz(void)
{
	return tsc_khz ? tsc_khz : ASSUMED_TSC_KHZ;
}

uint64_t clock_ticks_from_ms(uint64_t ms)
{
	return ms * clock_khz();
}

uint64_t clock_us_from_ticks(uint64_t ticks)
{
	/* Split to keep ticks * 1000 from overflowing on long runs. */
	uint64_t khz = clock_khz();

	return ticks / khz * 1000 + ticks % khz * 1000 / khz;
}

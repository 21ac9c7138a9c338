/* Ring-3 entry: report readiness, read the command line, run one mode. */
#include "acpi.h"
#include "cmdline.h"
#include "console.h"
#include "lib.h"
#include "modes.h"
#include "pci.h"
#include "platform.h"

void guest_main(const struct hvm_start_info *info);

extern char __image_end[];

#define DEFAULT_BAR_WINDOW 0xc0000000ull
#define BAR_WINDOW_SIZE 0x10000000ull
#define FOUR_GIB 0x100000000ull

static const char *const known_keys[] = {
	"mode", "op", "bs", "qd", "seconds", "count", "span", "tsc_khz", "timeout_ms",
	"disk", "pci", "ecam", "bar_window", "mem_mb", "nic", "ip", "peer", "dst", "size", "end",
	"power_button",
};

/* The RAM region holding the image, from the PVH memory map (or mem_mb=). */
static bool find_heap(const struct hvm_start_info *info)
{
	uint64_t image_end = (uint64_t)__image_end, mem_mb;
	const struct hvm_memmap_entry *map = (const struct hvm_memmap_entry *)info->memmap_paddr;

	if (!cmdline_u64("mem_mb", 0, &mem_mb))
		return false;
	if (mem_mb) {
		heap_init(image_end, mem_mb << 20);
		return (mem_mb << 20) > image_end;
	}
	if (info->version >= 1 && info->memmap_paddr && info->memmap_paddr < FOUR_GIB) {
		for (uint32_t i = 0; i < info->memmap_entries; i++) {
			uint64_t end = map[i].addr + map[i].size;

			if (map[i].type != HVM_MEMMAP_RAM || map[i].addr > image_end || end <= image_end)
				continue;
			heap_init(image_end, end < FOUR_GIB ? end : FOUR_GIB);
			return true;
		}
	}
	console_write("VDFS-GUEST ERROR no RAM region holds the image: no PVH memory map? (give mem_mb=)\n");
	return false;
}

static bool setup_pci(const struct hvm_start_info *info)
{
	uint64_t ecam = 0, window;

	if (!cmdline_u64("bar_window", DEFAULT_BAR_WINDOW, &window))
		return false;
	pci_set_bar_window(window, window + BAR_WINDOW_SIZE);
	/* ecam= wins: some VMMs (QEMU microvm) describe ECAM only in AML. */
	if (!cmdline_u64("ecam", 0, &ecam))
		return false;
	if (!ecam && !cmdline_value_is("pci", "cf8"))
		ecam = acpi_find_ecam(info->rsdp_paddr);
	if (cmdline_value_is("pci", "cf8"))
		ecam = 0;
	if (cmdline_value_is("pci", "ecam") && !ecam) {
		console_write("VDFS-GUEST ERROR pci=ecam but no ecam= and no ACPI MCFG\n");
		return false;
	}
	if (ecam >= FOUR_GIB) {
		console_write("VDFS-GUEST ERROR the ECAM window must lie below 4 GiB\n");
		return false;
	}
	pci_init(ecam);
	return true;
}

void guest_main(const struct hvm_start_info *info)
{
	const char *mode;
	size_t mode_len;
	uint64_t tsc_khz;

	/* Leading newline: firmware (SeaBIOS) may leave a line unterminated. */
	console_write("\nVDFS-GUEST READY\n");
	if (!info || info->magic != HVM_START_MAGIC) {
		console_write("VDFS-GUEST ERROR no hvm_start_info in EBX (not a PVH boot?)\n");
		guest_finish(STATUS_BAD_BOOT);
	}
	cmdline_init(info->cmdline_paddr && info->cmdline_paddr < FOUR_GIB ?
			     (const char *)info->cmdline_paddr : "");
	if (!cmdline_check_keys(known_keys, ARRAY_SIZE(known_keys)) ||
	    !cmdline_u64("tsc_khz", 0, &tsc_khz))
		guest_finish(STATUS_BAD_CMDLINE);
	clock_set_khz(tsc_khz);
	platform_set_rsdp(info->rsdp_paddr);
	if (!cmdline_get("mode", &mode, &mode_len) || str_equal_n(mode, "ready", mode_len))
		guest_finish(STATUS_PASS);

	if (cmdline_value_is("pci", "cf8") + cmdline_value_is("pci", "ecam") + cmdline_value_is("pci", "auto") == 0 &&
	    cmdline_get("pci", &mode, &mode_len)) {
		console_write("VDFS-GUEST ERROR pci= takes auto, cf8 or ecam\n");
		guest_finish(STATUS_BAD_CMDLINE);
	}
	cmdline_get("mode", &mode, &mode_len);
	/* Exercises the exception path: IDT, TSS stack switch, FAULT line. */
	if (str_equal_n(mode, "fault", mode_len))
		__asm__ volatile("ud2");
	if (!find_heap(info) || !setup_pci(info))
		guest_finish(STATUS_BAD_CMDLINE);
	if (str_equal_n(mode, "pci", mode_len))
		guest_finish(mode_pci());
	if (str_equal_n(mode, "blktest", mode_len))
		guest_finish(mode_blktest());
	if (str_equal_n(mode, "blkbench", mode_len))
		guest_finish(mode_blkbench());
	if (str_equal_n(mode, "net-responder", mode_len))
		guest_finish(mode_net_responder());
	if (str_equal_n(mode, "net-ping", mode_len))
		guest_finish(mode_net_ping());
	if (str_equal_n(mode, "net-blast", mode_len))
		guest_finish(mode_net_blast());
	if (str_equal_n(mode, "wait", mode_len))
		guest_finish(mode_wait());
	console_write("VDFS-GUEST ERROR mode= takes ready, pci, blktest, blkbench, net-responder, net-ping, "
		      "net-blast or fault\n");
	guest_finish(STATUS_BAD_CMDLINE);
}

/* mode=wait: idles until the ACPI power button is pressed (`vdfs-vm stop`),
 * then ends with status 0, as an ACPI guest OS shuts down. It enables the
 * button (PWRBTN_EN) as such an OS does, so the VMM also raises the SCI.
 * power_button=ignore keeps waiting instead, as a guest without ACPI
 * support would. seconds= (default 60) bounds the wait: status 1 after. */
#include "acpi.h"
#include "cmdline.h"
#include "console.h"
#include "io.h"
#include "lib.h"
#include "modes.h"

#define PM1_PWRBTN 0x0100 /* in PM1 status and enable */
#define POLL_MS 10

enum guest_status mode_wait(void)
{
	uint64_t seconds;
	uint16_t status_port;
	uint8_t len;
	const char *value;
	size_t value_len;
	bool ignore = cmdline_value_is("power_button", "ignore");

	if (!cmdline_u64("seconds", 60, &seconds) ||
	    (!ignore && cmdline_get("power_button", &value, &value_len) &&
	     !cmdline_value_is("power_button", "obey"))) {
		console_write("VDFS-GUEST ERROR mode=wait takes seconds=N and power_button=obey|ignore\n");
		return STATUS_BAD_CMDLINE;
	}
	if (!acpi_find_pm1_event(platform_rsdp(), &status_port, &len)) {
		console_write("VDFS-GUEST ERROR no PM1a event block in the ACPI FADT: no power button\n");
		return STATUS_NO_DEVICE;
	}
	uint16_t enable_port = (uint16_t)(status_port + len / 2);

	outw(enable_port, (uint16_t)(inw(enable_port) | PM1_PWRBTN));
	console_printf("VDFS-GUEST mode=wait pm1_event=0x%x power_button=%s seconds=%lu\n", status_port,
		       ignore ? "ignore" : "obey", seconds);
	uint64_t deadline = rdtsc() + clock_ticks_from_ms(seconds * 1000);
	unsigned presses = 0;

	while (rdtsc() < deadline) {
		if (inw(status_port) & PM1_PWRBTN) {
			outw(status_port, PM1_PWRBTN); /* write 1 to clear */
			presses++;
			if (!ignore) {
				console_write("VDFS-GUEST power button pressed: powering off\n");
				return STATUS_PASS;
			}
			console_printf("VDFS-GUEST power button pressed %u times: ignored\n", presses);
		}
		uint64_t next = rdtsc() + clock_ticks_from_ms(POLL_MS);
		while (rdtsc() < next)
			cpu_relax();
	}
	console_write("VDFS-GUEST mode=wait: no power button before seconds= ran out\n");
	return STATUS_TEST_FAILED;
}

/* mode=pci: one RESULT line per function on bus 0. */
#include "console.h"
#include "lib.h"
#include "modes.h"
#include "pci.h"

enum guest_status mode_pci(void)
{
	struct pci_device devices[64];
	size_t count = pci_scan_bus0(devices, ARRAY_SIZE(devices));

	if (count > ARRAY_SIZE(devices))
		count = ARRAY_SIZE(devices);
	for (size_t i = 0; i < count; i++) {
		const struct pci_device *d = &devices[i];

		console_printf("RESULT pci bdf=%02x:%02x.%u vendor=%04x device=%04x class=%06x\n",
			       d->bus, d->dev, d->fn, d->vendor, d->device, d->class_code);
	}
	console_printf("RESULT pci_count=%u access=%s\n", (unsigned)count, pci_uses_ecam() ? "ecam" : "cf8");
	return STATUS_PASS;
}

/* Legacy platform ports: i8042 reset, the debug-exit port, POST codes and
 * the ACPI PM1 blocks (poweroff through S5, and the fixed power button). */
#ifndef VDFS_VMM_PLATFORM_H
#define VDFS_VMM_PLATFORM_H

#include "kvm.h"

struct platform;

struct platform *platform_create(struct vm *vm);
void platform_destroy(struct platform *p);
/* Presses the ACPI power button: PWRBTN_STS is set in PM1 status, and the
 * SCI is raised while the guest has PWRBTN_EN set (an ACPI guest then
 * shuts down, as on QEMU's system_powerdown). Any thread may call it. */
void platform_press_power_button(struct platform *p);

#endif

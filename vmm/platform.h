/* Legacy platform ports: i8042 reset, the debug-exit port, POST codes and
 * the ACPI PM1 blocks (poweroff through S5). */
#ifndef VDFS_VMM_PLATFORM_H
#define VDFS_VMM_PLATFORM_H

#include "kvm.h"

struct platform;

struct platform *platform_create(struct vm *vm);
void platform_destroy(struct platform *p);

#endif

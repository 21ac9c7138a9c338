/* Serial console on COM1 and the guest's output protocol (docs/guest.md). */
#ifndef GUEST_CONSOLE_H
#define GUEST_CONSOLE_H

#include <stdint.h>

/* Writes straight to THR without polling LSR: both VMMs accept a byte per
 * write at once, and polling would double the exits. */
void console_write(const char *s);
/* printf subset: %s %c %d %u %x with l/ll, width and 0-padding. */
void console_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

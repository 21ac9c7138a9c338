/* 8250/16550A UART at COM1: the guest console. */
#ifndef VDFS_VMM_SERIAL_H
#define VDFS_VMM_SERIAL_H

#include "kvm.h"

struct serial;

/* Registers COM1 on the PIO bus; output goes to `out_fd` (not closed). */
struct serial *serial_create(struct vm *vm, int out_fd);
/* Feeds bytes read from `in_fd` (not closed) to the guest's receiver, on a
 * thread of its own.  0 or -errno. */
int serial_start_input(struct serial *s, int in_fd);
/* Writes out anything still buffered (a line without its newline). */
void serial_flush(struct serial *s);
void serial_destroy(struct serial *s);

#endif

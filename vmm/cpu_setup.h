/* Per-vCPU architectural setup: the CPUID the guest sees and the register
 * state at the kernel's entry point. */
#ifndef VDFS_VMM_CPU_SETUP_H
#define VDFS_VMM_CPU_SETUP_H

#include <stdint.h>

#include "bus.h"

enum boot_mode {
    BOOT_PVH32,   /* Xen PVH: 32-bit protected mode, paging off, EBX = start_info */
    BOOT_LINUX64, /* Linux 64-bit boot protocol: long mode, RSI = boot_params */
};

struct boot_entry {
    enum boot_mode mode;
    uint64_t entry; /* guest physical entry point */
    uint64_t info;  /* start_info or boot_params address */
};

/* Gives the vCPU the host CPUID KVM supports, marked as a guest (hypervisor
 * bit) with its own APIC ID.  0 or -errno. */
int cpu_setup_cpuid(int kvm_fd, int vcpu_fd, unsigned index, unsigned ncpus);

/* Writes the GDT (and page tables for long mode) into guest memory and sets
 * the boot vCPU's registers for `entry`.  0 or -errno. */
int cpu_setup_boot_regs(int vcpu_fd, struct guest_memory *mem, const struct boot_entry *entry);

#endif

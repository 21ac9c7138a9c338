/* CPUID and entry register state for the boot vCPU. */
#include "cpu_setup.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "layout.h"

#define CPUID_HYPERVISOR_BIT (1u << 31)

#define GDT_SEL_CODE32 0x08
#define GDT_SEL_CODE64 0x10 /* __BOOT_CS of the Linux boot protocol */
#define GDT_SEL_DATA   0x18 /* __BOOT_DS */
#define GDT_SEL_TSS    0x20

#define CR0_PE (1u << 0)
#define CR0_ET (1u << 4)
#define CR0_PG (1u << 31)
#define CR4_PAE (1u << 5)
#define EFER_LME (1u << 8)
#define EFER_LMA (1u << 10)

static unsigned bits_for(unsigned count)
{
    unsigned bits = 0;
    while ((1u << bits) < count)
        bits++;
    return bits;
}

int cpu_setup_cpuid(int kvm_fd, int vcpu_fd, unsigned index, unsigned ncpus)
{
    unsigned nent = 128;
    struct kvm_cpuid2 *cpuid = NULL;
    for (;;) {
        cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(struct kvm_cpuid_entry2));
        if (!cpuid)
            return -ENOMEM;
        cpuid->nent = nent;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
            break;
        int err = errno;
        free(cpuid);
        if (err != E2BIG || nent >= 4096)
            return -err;
        nent *= 2;
    }
    unsigned core_bits = bits_for(ncpus);
    for (unsigned i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        switch (e->function) {
        case 1:
            e->ecx |= CPUID_HYPERVISOR_BIT;
            e->ebx = (e->ebx & 0x0000ffffu) | (index << 24) | ((ncpus & 0xffu) << 16);
            break;
        case 0xb:
        case 0x1f:
            /* One package of `ncpus` single-thread cores. */
            e->edx = index;
            if (e->index == 0) {
                e->eax = 0;
                e->ebx = 1;
                e->ecx = (1u << 8) | 0;
            } else if (e->index == 1) {
                e->eax = core_bits;
                e->ebx = ncpus;
                e->ecx = (2u << 8) | 1;
            } else {
                e->eax = 0;
                e->ebx = 0;
                e->ecx = e->index;
            }
            break;
        default:
            break;
        }
    }
    int rc = ioctl(vcpu_fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
    free(cpuid);
    return rc;
}

static uint64_t gdt_entry(uint32_t base, uint32_t limit, uint16_t flags)
{
    return ((uint64_t)(base & 0xff000000u) << 32) | ((uint64_t)(flags & 0xf0ffu) << 40) |
           ((uint64_t)(limit & 0x000f0000u) << 32) | ((uint64_t)(base & 0x00ffffffu) << 16) |
           (uint64_t)(limit & 0x0000ffffu);
}

static struct kvm_segment segment_from(uint16_t selector, uint64_t desc)
{
    struct kvm_segment s = {
        .base = (uint32_t)(((desc >> 16) & 0xffffff) | ((desc >> 32) & 0xff000000)),
        .limit = (uint32_t)((desc & 0xffff) | ((desc >> 32) & 0xf0000)),
        .selector = selector,
        .type = (desc >> 40) & 0xf,
        .present = (desc >> 47) & 1,
        .dpl = (desc >> 45) & 3,
        .db = (desc >> 54) & 1,
        .s = (desc >> 44) & 1,
        .l = (desc >> 53) & 1,
        .g = (desc >> 55) & 1,
    };
    if (s.g)
        s.limit = (s.limit << 12) | 0xfff;
    return s;
}

/* Identity map of the first 4 GiB with 2 MiB pages (1 GiB pages make this
 * host's KVM shut the guest down). */
static int write_identity_page_tables(struct guest_memory *mem)
{
    uint64_t *pml4 = guest_memory_at(mem, LAYOUT_BOOT_PML4, 6 * 4096);
    if (!pml4)
        return -ENOMEM;
    memset(pml4, 0, 6 * 4096);
    uint64_t *pdpt = pml4 + 512;
    uint64_t *pd = pml4 + 1024;
    pml4[0] = (LAYOUT_BOOT_PML4 + 0x1000) | 0x3;
    for (unsigned g = 0; g < 4; g++) {
        pdpt[g] = (LAYOUT_BOOT_PML4 + 0x2000 + g * 0x1000ull) | 0x3;
        for (unsigned i = 0; i < 512; i++)
            pd[g * 512 + i] = ((uint64_t)g << 30 | (uint64_t)i << 21) | 0x83;
    }
    return 0;
}

int cpu_setup_boot_regs(int vcpu_fd, struct guest_memory *mem, const struct boot_entry *entry)
{
    uint64_t gdt[5] = {
        0,
        gdt_entry(0, 0xfffff, 0xc09b), /* 32-bit code */
        gdt_entry(0, 0xfffff, 0xa09b), /* 64-bit code */
        gdt_entry(0, 0xfffff, 0xc093), /* data */
        gdt_entry(0, 0x67, 0x008b),    /* busy 32-bit TSS */
    };
    void *gdt_mem = guest_memory_at(mem, LAYOUT_BOOT_GDT, sizeof(gdt));
    if (!gdt_mem)
        return -ENOMEM;
    memcpy(gdt_mem, gdt, sizeof(gdt));

    struct kvm_sregs sregs;
    if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
        return -errno;
    sregs.gdt.base = LAYOUT_BOOT_GDT;
    sregs.gdt.limit = sizeof(gdt) - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    struct kvm_segment data = segment_from(GDT_SEL_DATA, gdt[GDT_SEL_DATA / 8]);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.tr = segment_from(GDT_SEL_TSS, gdt[GDT_SEL_TSS / 8]);
    sregs.cr4 = 0;
    sregs.efer = 0;

    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rflags = 0x2;
    regs.rip = entry->entry;

    if (entry->mode == BOOT_PVH32) {
        sregs.cs = segment_from(GDT_SEL_CODE32, gdt[GDT_SEL_CODE32 / 8]);
        sregs.cr0 = CR0_PE | CR0_ET;
        regs.rbx = entry->info;
    } else {
        int rc = write_identity_page_tables(mem);
        if (rc < 0)
            return rc;
        sregs.cs = segment_from(GDT_SEL_CODE64, gdt[GDT_SEL_CODE64 / 8]);
        sregs.cr3 = LAYOUT_BOOT_PML4;
        sregs.cr4 = CR4_PAE;
        sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
        sregs.efer = EFER_LME | EFER_LMA;
        regs.rsi = entry->info;
    }
    if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
        return -errno;
    if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
        return -errno;
    return 0;
}

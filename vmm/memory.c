/* Guest RAM mapping and range-checked access to it. */
#include "memory.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "layout.h"

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

struct guest_memory {
    uint8_t *host;
    uint64_t size;
    uint64_t low_size;
    uint64_t high_size;
};

struct guest_memory *guest_memory_create(uint64_t size)
{
    if (size == 0 || size > (UINT64_C(1) << 46)) {
        errno = EINVAL;
        return NULL;
    }
    struct guest_memory *mem = calloc(1, sizeof(*mem));
    if (!mem)
        return NULL;
    /* 2 MiB alignment lets guest 2 MiB pages sit on host huge pages (one
     * EPT entry each, and one page pin per 2 MiB of O_DIRECT disk I/O). */
    const uint64_t huge = UINT64_C(2) << 20;
    uint8_t *area = mmap(NULL, size + huge, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (area == MAP_FAILED) {
        int saved = errno;
        free(mem);
        errno = saved;
        return NULL;
    }
    uint8_t *host = (uint8_t *)(((uintptr_t)area + huge - 1) & ~(uintptr_t)(huge - 1));
    if (host > area)
        munmap(area, (size_t)(host - area));
    if (host + size < area + size + huge)
        munmap(host + size, (size_t)(area + size + huge - (host + size)));
    /* Transparent huge pages where the host allows them on request (the
     * "madvise" setting); pages are still only allocated when touched. */
    (void)madvise(host, size, MADV_HUGEPAGE);
    /* Lets RSS measurements tell guest RAM from the VMM's own memory in
     * /proc/PID/smaps; the name is advisory, so failure is fine. */
    (void)prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)host, size,
                (unsigned long)"vdfs-guest-ram");
    (void)madvise(host, size, MADV_DONTDUMP);
    mem->host = host;
    mem->size = size;
    mem->low_size = size < LAYOUT_RAM_LOW_LIMIT ? size : LAYOUT_RAM_LOW_LIMIT;
    mem->high_size = size - mem->low_size;
    return mem;
}

void guest_memory_destroy(struct guest_memory *mem)
{
    if (!mem)
        return;
    munmap(mem->host, mem->size);
    free(mem);
}

int guest_memory_attach(struct guest_memory *mem, int vm_fd)
{
    struct kvm_userspace_memory_region low = {
        .slot = 0,
        .guest_phys_addr = 0,
        .memory_size = mem->low_size,
        .userspace_addr = (uint64_t)(uintptr_t)mem->host,
    };
    if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &low) < 0)
        return -errno;
    if (mem->high_size) {
        struct kvm_userspace_memory_region high = {
            .slot = 1,
            .guest_phys_addr = LAYOUT_RAM_HIGH_BASE,
            .memory_size = mem->high_size,
            .userspace_addr = (uint64_t)(uintptr_t)(mem->host + mem->low_size),
        };
        if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &high) < 0)
            return -errno;
    }
    return 0;
}

void *guest_memory_at(const struct guest_memory *mem, uint64_t gpa, uint64_t len)
{
    if (!mem)
        return NULL;
    if (gpa < mem->low_size) {
        if (len > mem->low_size - gpa)
            return NULL;
        return mem->host + gpa;
    }
    if (gpa >= LAYOUT_RAM_HIGH_BASE) {
        uint64_t off = gpa - LAYOUT_RAM_HIGH_BASE;
        if (off >= mem->high_size || len > mem->high_size - off)
            return NULL;
        return mem->host + mem->low_size + off;
    }
    return NULL;
}

uint64_t guest_memory_size(const struct guest_memory *mem)
{
    return mem ? mem->size : 0;
}

uint64_t guest_memory_low_size(const struct guest_memory *mem)
{
    return mem->low_size;
}

uint64_t guest_memory_high_size(const struct guest_memory *mem)
{
    return mem->high_size;
}

uint64_t guest_memory_resident(const struct guest_memory *mem)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t pages = (mem->size + (uint64_t)page - 1) / (uint64_t)page;
    uint64_t resident = 0;
    unsigned char vec[4096];
    for (uint64_t first = 0; first < pages; first += sizeof(vec)) {
        uint64_t n = pages - first < sizeof(vec) ? pages - first : sizeof(vec);
        if (mincore(mem->host + first * (uint64_t)page, n * (uint64_t)page, vec) < 0)
            return 0;
        for (uint64_t i = 0; i < n; i++)
            resident += vec[i] & 1;
    }
    return resident * (uint64_t)page;
}

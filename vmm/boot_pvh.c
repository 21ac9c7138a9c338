/* ELF kernels entered through the Xen PVH protocol: PT_LOAD segments at
 * their physical addresses, XEN_ELFNOTE_PHYS32_ENTRY for the entry point,
 * and an hvm_start_info (version 1) describing memory, cmdline and initrd. */
#include <elf.h>
#include <stdio.h>
#include <string.h>

#include "boot.h"
#include "e820.h"
#include "layout.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578u

struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;
    uint32_t memmap_entries;
    uint32_t reserved;
};

struct hvm_modlist_entry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
};

struct hvm_memmap_table_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};

static bool range_in_file(const struct boot_image *image, uint64_t off, uint64_t len)
{
    return off <= image->size && len <= image->size - off;
}

/* Looks through one PT_NOTE segment for the PVH entry note. */
static bool find_pvh_note(const struct boot_image *image, const Elf64_Phdr *ph, uint64_t *entry)
{
    uint64_t off = ph->p_offset;
    uint64_t end = ph->p_offset + ph->p_filesz;
    while (off + sizeof(Elf64_Nhdr) <= end) {
        Elf64_Nhdr nh;
        memcpy(&nh, image->data + off, sizeof(nh));
        uint64_t name_off = off + sizeof(nh);
        uint64_t desc_off = name_off + ((nh.n_namesz + 3ull) & ~3ull);
        uint64_t next = desc_off + ((nh.n_descsz + 3ull) & ~3ull);
        if (next > end || next <= off)
            return false;
        if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 &&
            memcmp(image->data + name_off, "Xen", 4) == 0 &&
            (nh.n_descsz == 4 || nh.n_descsz == 8)) {
            uint64_t value = 0;
            memcpy(&value, image->data + desc_off, nh.n_descsz);
            *entry = value & 0xffffffffu;
            return true;
        }
        off = next;
    }
    return false;
}

int boot_load_pvh(struct guest_memory *mem, const struct boot_image *image,
                  const struct boot_request *req, struct boot_entry *entry, char *err,
                  size_t errlen)
{
    const char *path = req->kernel;
    if (image->size < sizeof(Elf64_Ehdr)) {
        snprintf(err, errlen, "kernel %s: truncated ELF header", path);
        return -1;
    }
    Elf64_Ehdr eh;
    memcpy(&eh, image->data, sizeof(eh));
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
        eh.e_machine != EM_X86_64) {
        snprintf(err, errlen, "kernel %s: not a 64-bit little-endian x86-64 ELF", path);
        return -1;
    }
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 ||
        !range_in_file(image, eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr))) {
        snprintf(err, errlen, "kernel %s: bad program header table", path);
        return -1;
    }
    uint64_t pvh_entry = 0;
    bool have_entry = false;
    uint64_t kernel_end = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, image->data + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
        if (ph.p_type == PT_NOTE) {
            if (!range_in_file(image, ph.p_offset, ph.p_filesz)) {
                snprintf(err, errlen, "kernel %s: PT_NOTE outside the file", path);
                return -1;
            }
            if (!have_entry)
                have_entry = find_pvh_note(image, &ph, &pvh_entry);
            continue;
        }
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        if (ph.p_filesz > ph.p_memsz || !range_in_file(image, ph.p_offset, ph.p_filesz)) {
            snprintf(err, errlen, "kernel %s: PT_LOAD %u is inconsistent", path, i);
            return -1;
        }
        if (ph.p_paddr < LAYOUT_LEGACY_HOLE_END) {
            snprintf(err, errlen,
                     "kernel %s: PT_LOAD %u at 0x%llx is below 1 MiB, where boot data lives",
                     path, i, (unsigned long long)ph.p_paddr);
            return -1;
        }
        uint8_t *dst = guest_memory_at(mem, ph.p_paddr, ph.p_memsz);
        if (!dst) {
            snprintf(err, errlen,
                     "kernel %s: PT_LOAD %u [0x%llx, +0x%llx) does not fit in guest RAM", path, i,
                     (unsigned long long)ph.p_paddr, (unsigned long long)ph.p_memsz);
            return -1;
        }
        memcpy(dst, image->data + ph.p_offset, ph.p_filesz);
        memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
        if (ph.p_paddr + ph.p_memsz > kernel_end)
            kernel_end = ph.p_paddr + ph.p_memsz;
    }
    if (!have_entry) {
        snprintf(err, errlen,
                 "kernel %s: no XEN_ELFNOTE_PHYS32_ENTRY note, so it has no PVH entry point",
                 path);
        return -1;
    }

    struct hvm_start_info info = {
        .magic = HVM_START_MAGIC,
        .version = 1,
        .rsdp_paddr = req->rsdp,
        .memmap_paddr = LAYOUT_BOOT_MEMMAP,
    };
    if (req->cmdline && req->cmdline[0]) {
        info.cmdline_paddr = boot_place_cmdline(mem, req->cmdline, LAYOUT_BOOT_CMDLINE_MAX, err,
                                                errlen);
        if (!info.cmdline_paddr)
            return -1;
    }
    if (req->initrd && req->initrd[0]) {
        struct hvm_modlist_entry mod = { 0 };
        if (boot_place_initrd(mem, req->initrd, kernel_end, e820_low_ram_end(mem), &mod.paddr,
                              &mod.size, err, errlen) < 0)
            return -1;
        void *dst = guest_memory_at(mem, LAYOUT_BOOT_MODLIST, sizeof(mod));
        memcpy(dst, &mod, sizeof(mod));
        info.nr_modules = 1;
        info.modlist_paddr = LAYOUT_BOOT_MODLIST;
    }
    struct e820_entry map[E820_MAX_ENTRIES];
    size_t n = e820_build(mem, map);
    struct hvm_memmap_table_entry *table =
        guest_memory_at(mem, LAYOUT_BOOT_MEMMAP, n * sizeof(*table));
    for (size_t i = 0; i < n; i++)
        table[i] = (struct hvm_memmap_table_entry){ map[i].addr, map[i].size, map[i].type, 0 };
    info.memmap_entries = (uint32_t)n;
    void *info_dst = guest_memory_at(mem, LAYOUT_BOOT_INFO, sizeof(info));
    memcpy(info_dst, &info, sizeof(info));

    entry->mode = BOOT_PVH32;
    entry->entry = pvh_entry;
    entry->info = LAYOUT_BOOT_INFO;
    return 0;
}

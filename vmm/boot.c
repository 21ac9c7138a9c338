/* Kernel format detection and the pieces both boot paths share. */
#include "boot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layout.h"

static int map_file(const char *path, struct boot_image *image, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "kernel %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 64) {
        snprintf(err, errlen, "kernel %s: not a regular file of plausible size", path);
        close(fd);
        return -1;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "kernel %s: mmap: %s", path, strerror(errno));
        return -1;
    }
    image->data = p;
    image->size = (size_t)st.st_size;
    return 0;
}

int boot_load(struct guest_memory *mem, const struct boot_request *req, struct boot_entry *entry,
              char *err, size_t errlen)
{
    struct boot_image image;
    if (map_file(req->kernel, &image, err, errlen) < 0)
        return -1;
    int rc;
    if (memcmp(image.data, "\x7f" "ELF", 4) == 0) {
        rc = boot_load_pvh(mem, &image, req, entry, err, errlen);
    } else if (image.size > 0x206 && memcmp(image.data + 0x202, "HdrS", 4) == 0) {
        rc = boot_load_bzimage(mem, &image, req, entry, err, errlen);
    } else {
        snprintf(err, errlen, "kernel %s: neither an ELF (PVH) nor a bzImage", req->kernel);
        rc = -1;
    }
    munmap((void *)image.data, image.size);
    return rc;
}

int boot_place_initrd(struct guest_memory *mem, const char *path, uint64_t kernel_end,
                      uint64_t limit, uint64_t *addr, uint64_t *size, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "initrd %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "initrd %s: not a regular file", path);
        close(fd);
        return -1;
    }
    uint64_t len = (uint64_t)st.st_size;
    if (len == 0) {
        snprintf(err, errlen, "initrd %s is empty", path);
        close(fd);
        return -1;
    }
    uint64_t top = limit & ~UINT64_C(0xfff);
    uint64_t start = len <= top ? (top - len) & ~UINT64_C(0xfff) : 0;
    if (len > top || start < kernel_end) {
        snprintf(err, errlen, "initrd %s (%llu bytes) does not fit in guest RAM after the kernel",
                 path, (unsigned long long)len);
        close(fd);
        return -1;
    }
    uint8_t *dst = guest_memory_at(mem, start, len);
    if (!dst) {
        snprintf(err, errlen, "initrd %s: outside guest RAM", path);
        close(fd);
        return -1;
    }
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, dst + done, len - done, (off_t)done);
        if (n <= 0) {
            snprintf(err, errlen, "initrd %s: read: %s", path, n < 0 ? strerror(errno) : "short file");
            close(fd);
            return -1;
        }
        done += (uint64_t)n;
    }
    close(fd);
    *addr = start;
    *size = len;
    return 0;
}

uint64_t boot_place_cmdline(struct guest_memory *mem, const char *cmdline, size_t max_len,
                            char *err, size_t errlen)
{
    size_t len = strlen(cmdline);
    if (max_len > LAYOUT_BOOT_CMDLINE_MAX)
        max_len = LAYOUT_BOOT_CMDLINE_MAX;
    if (len + 1 > max_len) {
        snprintf(err, errlen, "command line is %zu bytes; the kernel accepts %zu", len,
                 max_len - 1);
        return 0;
    }
    char *dst = guest_memory_at(mem, LAYOUT_BOOT_CMDLINE, len + 1);
    if (!dst) {
        snprintf(err, errlen, "no room for the command line in guest RAM");
        return 0;
    }
    memcpy(dst, cmdline, len + 1);
    return LAYOUT_BOOT_CMDLINE;
}

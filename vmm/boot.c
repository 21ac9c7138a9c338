/* Kernel format detection and the pieces both boot paths share. */
#include "boot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datastore.h"
#include "layout.h"

/* Largest kernel or initrd read from a datastore (it is read whole into
 * memory before it is copied into the guest). */
#define MAX_DATASTORE_BOOT_FILE (UINT64_C(1) << 31)

/* A kernel or initrd: a host file, mapped, or a file in a datastore
 * (vdfs:IMAGE:/path), read whole. */
static int load_file(const char *what, const char *path, struct boot_image *image, char *err, size_t errlen)
{
    image->malloced = datastore_is_name(path);
    if (image->malloced) {
        uint8_t *data;
        size_t len;
        char why[1024];
        if (datastore_read_file(path, MAX_DATASTORE_BOOT_FILE, &data, &len, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "%s %s", what, why);
            return -1;
        }
        image->data = data;
        image->size = len;
        return 0;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s %s: not a regular file", what, path);
        close(fd);
        return -1;
    }
    image->size = (size_t)st.st_size;
    void *p = image->size ? mmap(NULL, image->size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (p == MAP_FAILED) {
        snprintf(err, errlen, "%s %s: mmap: %s", what, path, strerror(errno));
        return -1;
    }
    image->data = p;
    return 0;
}

static void unload_file(struct boot_image *image)
{
    if (image->malloced)
        free((void *)image->data);
    else if (image->size)
        munmap((void *)image->data, image->size);
}

int boot_load(struct guest_memory *mem, const struct boot_request *req, struct boot_entry *entry,
              char *err, size_t errlen)
{
    struct boot_image image;
    if (load_file("kernel", req->kernel, &image, err, errlen) < 0)
        return -1;
    int rc;
    if (image.size < 64) {
        snprintf(err, errlen, "kernel %s: not a regular file of plausible size", req->kernel);
        rc = -1;
    } else if (memcmp(image.data, "\x7f" "ELF", 4) == 0) {
        rc = boot_load_pvh(mem, &image, req, entry, err, errlen);
    } else if (image.size > 0x206 && memcmp(image.data + 0x202, "HdrS", 4) == 0) {
        rc = boot_load_bzimage(mem, &image, req, entry, err, errlen);
    } else {
        snprintf(err, errlen, "kernel %s: neither an ELF (PVH) nor a bzImage", req->kernel);
        rc = -1;
    }
    unload_file(&image);
    return rc;
}

int boot_place_initrd(struct guest_memory *mem, const char *path, uint64_t kernel_end,
                      uint64_t limit, uint64_t *addr, uint64_t *size, char *err, size_t errlen)
{
    struct boot_image image;
    if (load_file("initrd", path, &image, err, errlen) < 0)
        return -1;
    int rc = -1;
    uint64_t len = image.size;
    uint64_t top = limit & ~UINT64_C(0xfff);
    uint64_t start = len <= top ? (top - len) & ~UINT64_C(0xfff) : 0;
    uint8_t *dst = NULL;
    if (len == 0)
        snprintf(err, errlen, "initrd %s is empty", path);
    else if (len > top || start < kernel_end)
        snprintf(err, errlen, "initrd %s (%llu bytes) does not fit in guest RAM after the kernel", path,
                 (unsigned long long)len);
    else if (!(dst = guest_memory_at(mem, start, len)))
        snprintf(err, errlen, "initrd %s: outside guest RAM", path);
    else
        rc = 0;
    if (rc == 0) {
        memcpy(dst, image.data, len);
        *addr = start;
        *size = len;
    }
    unload_file(&image);
    return rc;
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

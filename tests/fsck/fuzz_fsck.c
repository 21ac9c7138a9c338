/* libFuzzer target for fsck.vdfs (clang only, not run in CI).
 *
 * With FUZZ_FSCK_BASE naming a datastore image (mkfs.vdfs + populate), each
 * input is a list of patches to a copy of it: le32 offset (in bytes, modulo
 * the image size), u8 length, that many bytes.  Without it, the input is
 * the whole image.  Every input runs fsck -y, and when that reports every
 * problem fixed, a second run must find the image clean.
 *
 *   FUZZ_FSCK_BASE=/tmp/base.img ./fuzz_fsck -max_len=4096 corpus/
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fsck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *base;
static size_t base_size, span;

static void load_base(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    const char *path = getenv("FUZZ_FSCK_BASE");
    if (!path)
        return;
    FILE *fp = fopen(path, "rb");
    if (!fp || fseek(fp, 0, SEEK_END) || (base_size = (size_t)ftell(fp)) == 0 || fseek(fp, 0, SEEK_SET)) {
        fprintf(stderr, "fuzz_fsck: cannot read %s\n", path);
        abort();
    }
    base = malloc(base_size);
    if (!base || fread(base, 1, base_size, fp) != base_size)
        abort();
    fclose(fp);
    /* Patches land in the metadata (everything before the file blocks),
     * where fsck has something to find. */
    struct vdfs_super sb;
    span = base_size;
    if (base_size >= VDFS_META_SIZE && vdfs_super_decode(base, 0, &sb) == 0 && sb.region[VDFS_RT_FB].start)
        span = (size_t)sb.region[VDFS_RT_FB].start;
}

/* Copies only the non-zero 4 KiB blocks: the base is mostly holes. */
static void write_base(int fd)
{
    if (ftruncate(fd, (off_t)base_size))
        abort();
    for (size_t off = 0; off < base_size; off += VDFS_META_SIZE) {
        size_t n = base_size - off < VDFS_META_SIZE ? base_size - off : VDFS_META_SIZE;
        bool zero = true;
        for (size_t i = 0; i < n && zero; i++)
            zero = base[off + i] == 0;
        if (!zero && pwrite(fd, base + off, n, (off_t)off) != (ssize_t)n)
            abort();
    }
}

static int check(int fd, bool fix)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    struct fsck f;
    memset(&f, 0, sizeof(f));
    f.path = path;
    f.opt.fix = fix;
    f.opt.json = true; /* quiet: the report is not printed */
    if (vdfs_dev_open(path, fix ? 0 : VDFS_DEV_RDONLY, &f.dev) < 0)
        abort();
    int code = fsck_run(&f);
    vdfs_dev_close(f.dev);
    f.dev = NULL;
    fsck_free(&f);
    return code;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_base();
    int fd = memfd_create("fuzz_fsck", 0);
    if (fd < 0)
        abort();
    if (base) {
        write_base(fd);
        for (size_t i = 0; i + 5 <= size;) {
            uint32_t off = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 | (uint32_t)data[i + 2] << 16 |
                           (uint32_t)data[i + 3] << 24;
            size_t len = data[i + 4];
            i += 5;
            if (len > size - i)
                len = size - i;
            if (pwrite(fd, data + i, len, off % span) < 0)
                abort();
            i += len;
        }
    } else if (size && pwrite(fd, data, size, 0) != (ssize_t)size) {
        abort();
    }
    int first = check(fd, true);
    if (first == FSCK_EXIT_CORRECTED) {
        int second = check(fd, false);
        if (second != 0) {
            fprintf(stderr, "fuzz_fsck: repaired image is not clean on the second run (exit %d)\n", second);
            abort();
        }
    }
    close(fd);
    return 0;
}

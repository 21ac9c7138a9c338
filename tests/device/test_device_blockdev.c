/* Device layer on a real block device: a loop device over a 64 MiB file.
 * Skipped when not root or when losetup is missing. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "device.h"
#include "temp_image.h"

#define MiB (1024u * 1024u)
#define LOOP_BYTES (64 * MiB)

struct loop_fixture {
    char image[256];
    char device[64];
    struct loop_fixture *sector4k; /* a second device with 4 KiB sectors */
};

static bool have_losetup(void)
{
    return access("/usr/sbin/losetup", X_OK) == 0 || access("/sbin/losetup", X_OK) == 0 ||
           system("command -v losetup >/dev/null 2>&1") == 0;
}

static int loop_attach(struct loop_fixture *fx, unsigned sector_size)
{
    temp_image_create("/var/tmp", LOOP_BYTES, fx->image);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "losetup -b %u -f --show '%s'", sector_size, fx->image);
    FILE *p = popen(cmd, "r");
    if (!p || !fgets(fx->device, sizeof fx->device, p)) {
        fprintf(stderr, "losetup failed for %s\n", fx->image);
        if (p)
            pclose(p);
        unlink(fx->image);
        return -1;
    }
    pclose(p);
    fx->device[strcspn(fx->device, "\n")] = 0;
    return 0;
}

static int loop_detach(struct loop_fixture *fx)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "losetup -d '%s'", fx->device);
    int rc = system(cmd);
    unlink(fx->image);
    return rc == 0 ? 0 : -1;
}

static int loop_setup(void **state)
{
    *state = NULL;
    if (geteuid() != 0 || !have_losetup())
        return 0;
    struct loop_fixture *fx = calloc(1, sizeof *fx);
    struct loop_fixture *fx4k = calloc(1, sizeof *fx4k);
    if (loop_attach(fx, 512) != 0) {
        free(fx);
        free(fx4k);
        return -1;
    }
    if (loop_attach(fx4k, 4096) != 0) {
        loop_detach(fx);
        free(fx);
        free(fx4k);
        return -1;
    }
    fx->sector4k = fx4k;
    *state = fx;
    return 0;
}

static int loop_teardown(void **state)
{
    struct loop_fixture *fx = *state;
    if (!fx)
        return 0;
    int rc = loop_detach(fx->sector4k);
    rc |= loop_detach(fx);
    free(fx->sector4k);
    free(fx);
    return rc;
}

static struct loop_fixture *fixture_or_skip(void **state)
{
    if (!*state)
        skip();
    return *state;
}

static uint32_t sysfs_logical_block_size(const char *device)
{
    char path[128];
    snprintf(path, sizeof path, "/sys/block/%s/queue/logical_block_size", strrchr(device, '/') + 1);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    unsigned v = 0;
    assert_int_equal(fscanf(f, "%u", &v), 1);
    fclose(f);
    return v;
}

static bool is_zero(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

static void test_geometry(void **state)
{
    struct loop_fixture *fx = fixture_or_skip(state);
    struct vdfs_dev *dev;
    assert_int_equal(vdfs_dev_open(fx->device, VDFS_DEV_DIRECT, &dev), 0);
    assert_true(vdfs_dev_is_blockdev(dev));
    assert_true(vdfs_dev_is_direct(dev));
    assert_int_equal(vdfs_dev_size(dev), LOOP_BYTES);
    assert_int_equal(vdfs_dev_alignment(dev), sysfs_logical_block_size(fx->device));
    vdfs_dev_close(dev);

    assert_int_equal(vdfs_dev_open(fx->device, VDFS_DEV_RDONLY, &dev), 0);
    assert_true(vdfs_dev_is_blockdev(dev));
    assert_false(vdfs_dev_is_direct(dev));
    assert_int_equal(vdfs_dev_alignment(dev), 1);
    assert_int_equal(vdfs_dev_size(dev), LOOP_BYTES);
    vdfs_dev_close(dev);
}

static void test_io_zero_discard(void **state)
{
    struct loop_fixture *fx = fixture_or_skip(state);
    struct vdfs_dev *dev;
    assert_int_equal(vdfs_dev_open(fx->device, VDFS_DEV_DIRECT, &dev), 0);
    size_t len = MiB;
    unsigned char *data = vdfs_aligned_alloc(len), *got = vdfs_aligned_alloc(len);
    fill_pattern(data, len, 21);
    assert_int_equal(vdfs_dev_write(dev, data, len, MiB), 0);
    assert_int_equal(vdfs_dev_read(dev, got, len, MiB), 0);
    assert_memory_equal(got, data, len);

    assert_int_equal(vdfs_dev_zero(dev, MiB + 64 * 1024, 256 * 1024), 0);
    assert_int_equal(vdfs_dev_zero(dev, 100, 512), -EINVAL); /* block devices zero whole sectors */
    assert_int_equal(vdfs_dev_read(dev, got, len, MiB), 0);
    assert_memory_equal(got, data, 64 * 1024);
    assert_true(is_zero(got + 64 * 1024, 256 * 1024));
    assert_memory_equal(got + 320 * 1024, data + 320 * 1024, len - 320 * 1024);
    assert_int_equal(vdfs_dev_flush(dev), 0);

    /* The backing file saw the same thing. */
    int fd = open(fx->image, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, got, len, MiB), (ssize_t)len);
    close(fd);
    assert_memory_equal(got, data, 64 * 1024);
    assert_true(is_zero(got + 64 * 1024, 256 * 1024));

    assert_int_equal(vdfs_dev_discard(dev, 8 * MiB, MiB), 0);
    assert_int_equal(vdfs_dev_read(dev, got, 4096, LOOP_BYTES), -EIO);
    vdfs_aligned_free(data);
    vdfs_aligned_free(got);
    vdfs_dev_close(dev);
}

static void test_compare_and_write(void **state)
{
    struct loop_fixture *fx = fixture_or_skip(state);
    struct vdfs_dev *dev;
    assert_int_equal(vdfs_dev_open(fx->device, VDFS_DEV_DIRECT, &dev), 0);
    unsigned char zero[512] = { 0 }, a[512], b[512], found[512];
    fill_pattern(a, sizeof a, 1);
    fill_pattern(b, sizeof b, 2);
    const uint64_t off = 32 * MiB + 512; /* not page aligned on purpose */
    assert_int_equal(vdfs_dev_compare_and_write(dev, off, 512, zero, a, found), 0);
    assert_int_equal(vdfs_dev_compare_and_write(dev, off, 512, zero, b, found), -EAGAIN);
    assert_memory_equal(found, a, sizeof a);
    assert_int_equal(vdfs_dev_read_atomic(dev, found, 512, off), 0);
    assert_memory_equal(found, a, sizeof a);
    assert_int_equal(vdfs_dev_compare_and_write(dev, off, 512, a, b, NULL), 0);
    assert_int_equal(vdfs_dev_read_atomic(dev, found, 512, off), 0);
    assert_memory_equal(found, b, sizeof b);
    vdfs_dev_close(dev);
}

static int increment_child(const char *device, uint64_t off, unsigned count)
{
    struct vdfs_dev *dev;
    if (vdfs_dev_open(device, VDFS_DEV_DIRECT, &dev) != 0)
        return 1;
    unsigned char cur[512], next[512];
    if (vdfs_dev_read_atomic(dev, cur, 512, off) != 0)
        return 2;
    for (unsigned i = 0; i < count; i++) {
        int rc;
        do {
            uint64_t v;
            memcpy(&v, cur, 8);
            v++;
            memcpy(next, cur, 512);
            memcpy(next, &v, 8);
            rc = vdfs_dev_compare_and_write(dev, off, 512, cur, next, cur);
        } while (rc == -EAGAIN);
        if (rc != 0)
            return 3;
        memcpy(cur, next, 512);
    }
    vdfs_dev_close(dev);
    return 0;
}

static void test_caw_counter_processes(void **state)
{
    struct loop_fixture *fx = fixture_or_skip(state);
    const uint64_t off = 40 * MiB;
    enum { PROCS = 4, EACH = 40 };
    pid_t pids[PROCS];
    fflush(NULL);
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0)
            _exit(increment_child(fx->device, off, EACH));
    }
    for (int p = 0; p < PROCS; p++) {
        int status;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    struct vdfs_dev *dev;
    assert_int_equal(vdfs_dev_open(fx->device, VDFS_DEV_RDONLY, &dev), 0);
    unsigned char sector[512];
    assert_int_equal(vdfs_dev_read_atomic(dev, sector, 512, off), 0);
    uint64_t v;
    memcpy(&v, sector, 8);
    assert_int_equal(v, PROCS * EACH);
    vdfs_dev_close(dev);
}

/* A 4 KiB-sector device: alignment follows the sector size, and 512-byte
 * compare-and-write widens to the sector without disturbing neighbours. */
static void test_4k_sector_device(void **state)
{
    struct loop_fixture *fx4k = fixture_or_skip(state)->sector4k;
    struct vdfs_dev *dev;
    assert_int_equal(vdfs_dev_open(fx4k->device, VDFS_DEV_DIRECT, &dev), 0);
    assert_int_equal(vdfs_dev_alignment(dev), 4096);
    assert_int_equal(sysfs_logical_block_size(fx4k->device), 4096);
    unsigned char *page = vdfs_aligned_alloc(4096), *got = vdfs_aligned_alloc(4096);
    fill_pattern(page, 4096, 44);
    assert_int_equal(vdfs_dev_write(dev, page, 4096, 8192), 0);
    assert_int_equal(vdfs_dev_write(dev, page, 512, 8192), -EINVAL);
    unsigned char sector[512], fresh[512];
    memcpy(sector, page + 1536, 512);
    fill_pattern(fresh, sizeof fresh, 45);
    assert_int_equal(vdfs_dev_compare_and_write(dev, 8192 + 1536, 512, sector, fresh, NULL), 0);
    assert_int_equal(vdfs_dev_read(dev, got, 4096, 8192), 0);
    assert_memory_equal(got, page, 1536);
    assert_memory_equal(got + 1536, fresh, 512);
    assert_memory_equal(got + 2048, page + 2048, 2048);
    assert_int_equal(vdfs_dev_zero(dev, 8192, 4096), 0);
    assert_int_equal(vdfs_dev_read(dev, got, 4096, 8192), 0);
    assert_true(is_zero(got, 4096));
    vdfs_aligned_free(page);
    vdfs_aligned_free(got);
    vdfs_dev_close(dev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry),
        cmocka_unit_test(test_io_zero_discard),
        cmocka_unit_test(test_compare_and_write),
        cmocka_unit_test(test_caw_counter_processes),
        cmocka_unit_test(test_4k_sector_device),
    };
    return cmocka_run_group_tests(tests, loop_setup, loop_teardown);
}

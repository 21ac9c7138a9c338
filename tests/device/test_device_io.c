/* Device layer: open, read/write, batches, zero/discard, O_DIRECT, read-only,
 * tracing and concurrent I/O. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "device.h"
#include "temp_image.h"

#define MiB (1024u * 1024u)
#define EXT4_DIR "/var/tmp"
#define TMPFS_DIR "/dev/shm"

static struct vdfs_dev *open_ok(const char *path, unsigned flags)
{
    struct vdfs_dev *dev = NULL;
    int rc = vdfs_dev_open(path, flags, &dev);
    assert_int_equal(rc, 0);
    assert_non_null(dev);
    return dev;
}

static bool buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

static uint64_t allocated_bytes(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_blocks * 512;
}

/* ------------------------------------------------------------------ open */

static void test_open_errors(void **state)
{
    struct vdfs_dev *dev = (struct vdfs_dev *)0x1;
    assert_int_equal(vdfs_dev_open("/nonexistent/vdfs/image", 0, &dev), -ENOENT);
    assert_null(dev);
    assert_int_equal(vdfs_dev_open(EXT4_DIR, VDFS_DEV_RDONLY, &dev), -EISDIR);
    assert_int_equal(vdfs_dev_open(EXT4_DIR, 0, &dev), -EISDIR);
    assert_int_equal(vdfs_dev_open("/dev/null", 0, &dev), -ENOTBLK);
    assert_int_equal(vdfs_dev_open("", 0, &dev), -EINVAL);
    assert_null(dev);
}

static void test_open_empty_file(void **state)
{
    char path[256];
    temp_image_create(EXT4_DIR, 0, path);
    struct vdfs_dev *dev = open_ok(path, 0);
    assert_int_equal(vdfs_dev_size(dev), 0);
    assert_false(vdfs_dev_is_blockdev(dev));
    assert_false(vdfs_dev_is_readonly(dev));
    char byte;
    assert_int_equal(vdfs_dev_read(dev, &byte, 1, 0), -EIO);
    vdfs_dev_close(dev);
    unlink(path);
}

static void test_open_sets_cloexec(void **state)
{
    char path[256];
    temp_image_create(EXT4_DIR, 4096, path);
    struct vdfs_dev *dev = open_ok(path, 0);
    assert_true(fcntl(vdfs_dev_fd(dev), F_GETFD) & FD_CLOEXEC);
    assert_int_equal(fcntl(vdfs_dev_fd(dev), F_GETFL) & O_ACCMODE, O_RDWR);
    vdfs_dev_close(dev);
    dev = open_ok(path, VDFS_DEV_RDONLY);
    assert_int_equal(fcntl(vdfs_dev_fd(dev), F_GETFL) & O_ACCMODE, O_RDONLY);
    vdfs_dev_close(dev);
    unlink(path);
}

/* ------------------------------------------------------------ round trip */

static int count_uring_fds(void)
{
    int count = 0;
    char link[64], target[64];
    for (int fd = 0; fd < 1024; fd++) {
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = 0;
        if (strstr(target, "io_uring"))
            count++;
    }
    return count;
}

static void round_trip(unsigned flags)
{
    char path[256];
    temp_image_create(EXT4_DIR, MiB, path);
    struct vdfs_dev *dev = open_ok(path, flags);
    assert_int_equal(vdfs_dev_size(dev), MiB);
    assert_int_equal(vdfs_dev_alignment(dev), 1);
    assert_false(vdfs_dev_is_direct(dev));

    static const struct { uint64_t off; size_t len; } spots[] = {
        { 0, 4096 }, { 5000, 333 }, { 65536, 128 * 1024 }, { MiB - 1, 1 }, { 700000, 1 },
    };
    for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
        unsigned char *want = malloc(spots[i].len), *got = malloc(spots[i].len);
        fill_pattern(want, spots[i].len, i + 1);
        assert_int_equal(vdfs_dev_write(dev, want, spots[i].len, spots[i].off), 0);
        memset(got, 0xEE, spots[i].len);
        assert_int_equal(vdfs_dev_read(dev, got, spots[i].len, spots[i].off), 0);
        assert_memory_equal(got, want, spots[i].len);
        free(want);
        free(got);
    }
    assert_int_equal(vdfs_dev_flush(dev), 0);
    /* The path asked for is the path taken. */
    if (flags & VDFS_DEV_NO_URING)
        assert_int_equal(count_uring_fds(), 0);
    else
        assert_true(count_uring_fds() >= 1);
    vdfs_dev_close(dev);
    assert_int_equal(count_uring_fds(), 0);

    /* The bytes really reached the file, not just some cache of ours. */
    int fd = open(path, O_RDONLY);
    unsigned char want[333], got[333];
    fill_pattern(want, sizeof want, 2);
    assert_int_equal(pread(fd, got, sizeof got, 5000), (ssize_t)sizeof got);
    assert_memory_equal(got, want, sizeof got);
    close(fd);
    unlink(path);
}

static void test_round_trip_uring(void **state) { round_trip(0); }
static void test_round_trip_syscalls(void **state) { round_trip(VDFS_DEV_NO_URING); }

/* Larger than one request piece, so the transfer is split and resumed. */
static void test_large_transfer(void **state)
{
    char path[256];
    size_t len = 40 * MiB + 4096;
    temp_image_create(TMPFS_DIR, len, path);
    struct vdfs_dev *dev = open_ok(path, 0);
    unsigned char *want = malloc(len), *got = malloc(len);
    fill_pattern(want, len, 77);
    assert_int_equal(vdfs_dev_write(dev, want, len, 0), 0);
    assert_int_equal(vdfs_dev_read(dev, got, len, 0), 0);
    assert_memory_equal(got, want, len);
    free(want);
    free(got);
    vdfs_dev_close(dev);
    unlink(path);
}

/* ----------------------------------------------------------------- batch */

static void batch_mixed(unsigned flags)
{
    char path[256];
    temp_image_create(EXT4_DIR, 2 * MiB, path);
    struct vdfs_dev *dev = open_ok(path, flags);

    enum { N = 200 }; /* more than one ring's worth of entries */
    static unsigned char data[N][1000];
    struct vdfs_io ios[N];
    for (unsigned i = 0; i < N; i++) {
        fill_pattern(data[i], sizeof data[i], 1000 + i);
        ios[i] = (struct vdfs_io){ .op = VDFS_IO_WRITE, .buf = data[i], .len = sizeof data[i],
                                   .off = (uint64_t)i * 4096 + i, .result = 99 };
    }
    assert_int_equal(vdfs_dev_submit(dev, ios, N), 0);
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(ios[i].result, 0);

    /* Mixed: even entries read what was written, odd entries overwrite. */
    static unsigned char readback[N][1000];
    static unsigned char fresh[N][1000];
    for (unsigned i = 0; i < N; i++) {
        if (i % 2 == 0) {
            ios[i] = (struct vdfs_io){ .op = VDFS_IO_READ, .buf = readback[i], .len = 1000,
                                       .off = (uint64_t)i * 4096 + i, .result = 99 };
        } else {
            fill_pattern(fresh[i], 1000, 5000 + i);
            ios[i] = (struct vdfs_io){ .op = VDFS_IO_WRITE, .buf = fresh[i], .len = 1000,
                                       .off = (uint64_t)i * 4096 + i, .result = 99 };
        }
    }
    assert_int_equal(vdfs_dev_submit(dev, ios, N), 0);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(ios[i].result, 0);
        if (i % 2 == 0)
            assert_memory_equal(readback[i], data[i], 1000);
    }
    for (unsigned i = 1; i < N; i += 2) {
        unsigned char got[1000];
        assert_int_equal(vdfs_dev_read(dev, got, sizeof got, (uint64_t)i * 4096 + i), 0);
        assert_memory_equal(got, fresh[i], 1000);
    }
    assert_int_equal(vdfs_dev_submit(dev, ios, 0), 0);
    vdfs_dev_close(dev);
    unlink(path);
}

static uint64_t test_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A lease that runs out while a batch is running stops the batch's later
 * writes: a host stopped between two rounds of a long batch must not
 * write the rest when it resumes. */
static void lease_ends_mid_batch(unsigned flags)
{
    enum { LEASE_MS = 5, PAGE = 4096 };
    static unsigned char page[PAGE];
    fill_pattern(page, sizeof page, 77);
    for (unsigned n = 8192;; n *= 2) {
        char path[256];
        temp_image_create(EXT4_DIR, (uint64_t)n * PAGE, path);
        struct vdfs_dev *dev = open_ok(path, flags);
        struct vdfs_io *ios = calloc(n, sizeof(*ios));
        assert_non_null(ios);
        for (unsigned i = 0; i < n; i++)
            ios[i] = (struct vdfs_io){ .op = VDFS_IO_WRITE, .buf = page, .len = PAGE,
                                       .off = (uint64_t)i * PAGE, .result = 99 };
        uint64_t start = test_monotonic_ms();
        vdfs_dev_set_write_deadline(dev, start + LEASE_MS);
        vdfs_dev_submit(dev, ios, n);
        uint64_t took = test_monotonic_ms() - start;
        unsigned first_failed = n;
        for (unsigned i = 0; i < n && first_failed == n; i++)
            if (ios[i].result != 0)
                first_failed = i;
        /* Once one write was refused, every later one was. */
        for (unsigned i = first_failed; i < n; i++)
            assert_int_equal(ios[i].result, -EIO);
        unsigned char got[PAGE];
        for (unsigned i = 0; i < n; i += 97) {
            assert_int_equal(vdfs_dev_read(dev, got, sizeof got, (uint64_t)i * PAGE), 0);
            if (i < first_failed)
                assert_memory_equal(got, page, PAGE);
            else
                for (unsigned k = 0; k < PAGE; k++)
                    assert_int_equal(got[k], 0);
        }
        free(ios);
        vdfs_dev_close(dev);
        unlink(path);
        if (first_failed < n)
            return;
        /* Every write went through: only right if the batch beat the lease
         * (+1: millisecond clock), and then a longer one is needed. */
        assert_true(took <= LEASE_MS + 1);
        assert_true(n < (1u << 17));
    }
}

static void test_lease_ends_mid_batch_uring(void **state) { lease_ends_mid_batch(0); }
static void test_lease_ends_mid_batch_syscalls(void **state) { lease_ends_mid_batch(VDFS_DEV_NO_URING); }

static void test_batch_uring(void **state) { batch_mixed(0); }
static void test_batch_syscalls(void **state) { batch_mixed(VDFS_DEV_NO_URING); }

static void read_past_end(unsigned flags)
{
    char path[256];
    uint64_t size = 64 * 1024 + 1000;
    temp_image_create(EXT4_DIR, size, path);
    struct vdfs_dev *dev = open_ok(path, flags);
    assert_int_equal(vdfs_dev_size(dev), size);
    unsigned char buf[8192];
    assert_int_equal(vdfs_dev_read(dev, buf, 1000, size - 1000), 0);
    assert_int_equal(vdfs_dev_read(dev, buf, 1001, size - 1000), -EIO); /* spans the end */
    assert_int_equal(vdfs_dev_read(dev, buf, 4096, size + 4096), -EIO); /* wholly past */

    unsigned char good[512];
    struct vdfs_io ios[3] = {
        { .op = VDFS_IO_READ, .buf = good, .len = sizeof good, .off = 0 },
        { .op = VDFS_IO_READ, .buf = buf, .len = sizeof buf, .off = size - 4096 },
        { .op = VDFS_IO_READ, .buf = good, .len = sizeof good, .off = 512 },
    };
    assert_int_equal(vdfs_dev_submit(dev, ios, 3), -EIO);
    assert_int_equal(ios[0].result, 0);
    assert_int_equal(ios[1].result, -EIO);
    assert_int_equal(ios[2].result, 0);
    vdfs_dev_close(dev);
    unlink(path);
}

static void test_read_past_end_uring(void **state) { read_past_end(0); }
static void test_read_past_end_syscalls(void **state) { read_past_end(VDFS_DEV_NO_URING); }

/* ------------------------------------------------------- zero and discard */

static void test_zero_reads_zero_and_frees_space(void **state)
{
    char path[256];
    temp_image_create(EXT4_DIR, 4 * MiB, path);
    struct vdfs_dev *dev = open_ok(path, 0);
    size_t len = 3 * MiB;
    unsigned char *data = malloc(len), *got = malloc(len);
    fill_pattern(data, len, 9);
    assert_int_equal(vdfs_dev_write(dev, data, len, 0), 0);
    assert_int_equal(vdfs_dev_flush(dev), 0);
    uint64_t before = allocated_bytes(path);
    assert_true(before >= len);

    assert_int_equal(vdfs_dev_zero(dev, MiB, MiB), 0);
    /* An unaligned range too: partial pages must read as zeros. */
    assert_int_equal(vdfs_dev_zero(dev, 100, 5000), 0);
    assert_int_equal(vdfs_dev_flush(dev), 0);

    assert_int_equal(vdfs_dev_read(dev, got, len, 0), 0);
    assert_memory_equal(got, data, 100);
    assert_true(buffer_is_zero(got + 100, 5000));
    assert_memory_equal(got + 5100, data + 5100, MiB - 5100);
    assert_true(buffer_is_zero(got + MiB, MiB));
    assert_memory_equal(got + 2 * MiB, data + 2 * MiB, MiB);
    assert_int_equal(vdfs_dev_size(dev), 4 * MiB);

    uint64_t after = allocated_bytes(path);
    assert_true(after + MiB <= before);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 4 * MiB);
    assert_int_equal(vdfs_dev_zero(dev, 0, 0), 0);
    free(data);
    free(got);
    vdfs_dev_close(dev);
    unlink(path);
}

static void test_discard_returns_space(void **state)
{
    char path[256];
    temp_image_create(EXT4_DIR, 2 * MiB, path);
    struct vdfs_dev *dev = open_ok(path, 0);
    unsigned char *data = malloc(2 * MiB);
    fill_pattern(data, 2 * MiB, 3);
    assert_int_equal(vdfs_dev_write(dev, data, 2 * MiB, 0), 0);
    assert_int_equal(vdfs_dev_flush(dev), 0);
    uint64_t before = allocated_bytes(path);
    assert_int_equal(vdfs_dev_discard(dev, 0, MiB), 0);
    assert_true(allocated_bytes(path) + MiB <= before);
    unsigned char got[4096];
    assert_int_equal(vdfs_dev_read(dev, got, sizeof got, MiB), 0);
    assert_memory_equal(got, data + MiB, sizeof got);
    free(data);
    vdfs_dev_close(dev);
    unlink(path);
}

/* -------------------------------------------------------------- read-only */

static void test_readonly_rejects_writes(void **state)
{
    char path[256];
    temp_image_create(EXT4_DIR, 64 * 1024, path);
    struct vdfs_dev *rw = open_ok(path, 0);
    unsigned char data[512];
    fill_pattern(data, sizeof data, 4);
    assert_int_equal(vdfs_dev_write(rw, data, sizeof data, 1024), 0);
    vdfs_dev_close(rw);

    struct vdfs_dev *dev = open_ok(path, VDFS_DEV_RDONLY);
    assert_true(vdfs_dev_is_readonly(dev));
    assert_int_equal(vdfs_dev_write(dev, data, sizeof data, 0), -EROFS);
    unsigned char got[512], junk[512] = { 0 };
    struct vdfs_io ios[2] = {
        { .op = VDFS_IO_WRITE, .buf = junk, .len = sizeof junk, .off = 1024 },
        { .op = VDFS_IO_READ, .buf = got, .len = sizeof got, .off = 1024 },
    };
    assert_int_equal(vdfs_dev_submit(dev, ios, 2), -EROFS);
    assert_int_equal(ios[0].result, -EROFS);
    assert_int_equal(ios[1].result, 0);
    assert_memory_equal(got, data, sizeof data);
    assert_int_equal(vdfs_dev_zero(dev, 0, 4096), -EROFS);
    assert_int_equal(vdfs_dev_discard(dev, 0, 4096), -EROFS);
    assert_int_equal(vdfs_dev_compare_and_write(dev, 1024, 512, data, junk, NULL), -EROFS);
    assert_int_equal(vdfs_dev_read(dev, got, sizeof got, 1024), 0);
    assert_memory_equal(got, data, sizeof data);
    vdfs_dev_close(dev);
    unlink(path);
}

/* --------------------------------------------------------------- O_DIRECT */

static bool kernel_allows_direct(const char *path)
{
    int fd = open(path, O_RDWR | O_DIRECT);
    if (fd < 0) {
        assert_int_equal(errno, EINVAL);
        return false;
    }
    close(fd);
    return true;
}

static void direct_round_trip(struct vdfs_dev *dev)
{
    uint32_t align = vdfs_dev_alignment(dev);
    size_t len = 3 * 4096;
    unsigned char *want = vdfs_aligned_alloc(len), *got = vdfs_aligned_alloc(len);
    assert_non_null(want);
    assert_non_null(got);
    assert_int_equal((uintptr_t)want % 4096, 0);
    fill_pattern(want, len, 31);
    assert_int_equal(vdfs_dev_write(dev, want, len, 8192), 0);
    assert_int_equal(vdfs_dev_read(dev, got, len, 8192), 0);
    assert_memory_equal(got, want, len);
    if (align > 1) {
        assert_int_equal(vdfs_dev_write(dev, want + 1, 4096, 0), -EINVAL);
        assert_int_equal(vdfs_dev_read(dev, got, 4096, 100), -EINVAL);
        assert_int_equal(vdfs_dev_read(dev, got, 100, 0), -EINVAL);
    }
    vdfs_aligned_free(want);
    vdfs_aligned_free(got);
}

static void test_direct_on_ext4(void **state)
{
    char path[256];
    temp_image_create(EXT4_DIR, MiB, path);
    struct vdfs_dev *dev = open_ok(path, VDFS_DEV_DIRECT);
    assert_true(vdfs_dev_is_direct(dev));
    assert_int_equal(vdfs_dev_alignment(dev), 4096);
    assert_true(fcntl(vdfs_dev_fd(dev), F_GETFL) & O_DIRECT);
    direct_round_trip(dev);
    vdfs_dev_close(dev);
    unlink(path);
}

/* Older tmpfs refuses O_DIRECT, newer (6.6+) accepts it: follow the kernel. */
static void test_direct_on_tmpfs(void **state)
{
    char path[256];
    temp_image_create(TMPFS_DIR, MiB, path);
    bool expect_direct = kernel_allows_direct(path);
    struct vdfs_dev *dev = open_ok(path, VDFS_DEV_DIRECT);
    assert_int_equal(vdfs_dev_is_direct(dev), expect_direct);
    assert_int_equal(vdfs_dev_alignment(dev), expect_direct ? 4096 : 1);
    assert_int_equal((fcntl(vdfs_dev_fd(dev), F_GETFL) & O_DIRECT) != 0, expect_direct);
    direct_round_trip(dev);
    vdfs_dev_close(dev);
    unlink(path);
}

/* ramfs always refuses O_DIRECT with EINVAL: the fallback must kick in. */
static void test_direct_fallback_on_ramfs(void **state)
{
    if (geteuid() != 0)
        skip();
    char dir[] = "/var/tmp/vdfs-ramfs-XXXXXX";
    assert_non_null(mkdtemp(dir));
    if (mount("none", dir, "ramfs", 0, NULL) != 0) {
        rmdir(dir);
        skip();
    }
    char path[256];
    temp_image_create(dir, MiB, path);
    assert_false(kernel_allows_direct(path));
    struct vdfs_dev *dev = open_ok(path, VDFS_DEV_DIRECT);
    assert_false(vdfs_dev_is_direct(dev));
    assert_int_equal(vdfs_dev_alignment(dev), 1);
    assert_false(fcntl(vdfs_dev_fd(dev), F_GETFL) & O_DIRECT);
    direct_round_trip(dev);
    unsigned char odd[7] = "unalign";
    assert_int_equal(vdfs_dev_write(dev, odd, sizeof odd, 3), 0);
    vdfs_dev_close(dev);
    unlink(path);
    assert_int_equal(umount(dir), 0);
    rmdir(dir);
}

/* ---------------------------------------------------------------- tracing */

struct trace_rec {
    uint32_t op, reserved;
    uint64_t off, len;
    const unsigned char *data;
};

static uint64_t le_get(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static size_t parse_trace(const unsigned char *buf, size_t size, struct trace_rec *recs, size_t max)
{
    size_t n = 0, pos = 0;
    while (pos < size) {
        assert_true(n < max);
        assert_true(size - pos >= 24);
        struct trace_rec *r = &recs[n++];
        r->op = (uint32_t)le_get(buf + pos, 4);
        r->reserved = (uint32_t)le_get(buf + pos + 4, 4);
        r->off = le_get(buf + pos + 8, 8);
        r->len = le_get(buf + pos + 16, 8);
        pos += 24;
        r->data = NULL;
        if (r->op == VDFS_TRACE_WRITE) {
            assert_true(size - pos >= r->len);
            r->data = buf + pos;
            pos += r->len;
        }
    }
    return n;
}

static void expect_record(const struct trace_rec *r, uint32_t op, uint64_t off, uint64_t len,
                          const void *data)
{
    assert_int_equal(r->op, op);
    assert_int_equal(r->reserved, 0);
    assert_int_equal(r->off, off);
    assert_int_equal(r->len, len);
    if (data)
        assert_memory_equal(r->data, data, len);
}

static void test_trace_records(void **state)
{
    char image[256], trace[256];
    temp_image_create(EXT4_DIR, MiB, image);
    temp_image_create(EXT4_DIR, 0, trace);
    unlink(trace); /* the device must create it */
    assert_int_equal(setenv(VDFS_TRACE_ENV, trace, 1), 0);
    struct vdfs_dev *dev = open_ok(image, 0);
    assert_int_equal(unsetenv(VDFS_TRACE_ENV), 0);

    unsigned char a[100], b[50], c[10], got[64];
    fill_pattern(a, sizeof a, 1);
    fill_pattern(b, sizeof b, 2);
    fill_pattern(c, sizeof c, 3);
    assert_int_equal(vdfs_dev_write(dev, a, sizeof a, 4096), 0);
    struct vdfs_io ios[3] = {
        { .op = VDFS_IO_WRITE, .buf = b, .len = sizeof b, .off = 8192 },
        { .op = VDFS_IO_READ, .buf = got, .len = sizeof got, .off = 4096 },
        { .op = VDFS_IO_WRITE, .buf = c, .len = sizeof c, .off = 0 },
    };
    assert_int_equal(vdfs_dev_submit(dev, ios, 3), 0);
    assert_int_equal(vdfs_dev_zero(dev, 16384, 4096), 0);
    assert_int_equal(vdfs_dev_discard(dev, 20480, 4096), 0);
    assert_int_equal(vdfs_dev_flush(dev), 0);
    unsigned char zero_sector[512] = { 0 }, caw_data[512];
    fill_pattern(caw_data, sizeof caw_data, 4);
    assert_int_equal(vdfs_dev_compare_and_write(dev, 512 * 100, 512, zero_sector, caw_data, NULL), 0);
    /* Neither reads nor a failed compare reach the device. */
    assert_int_equal(vdfs_dev_compare_and_write(dev, 512 * 100, 512, zero_sector, caw_data, NULL), -EAGAIN);
    vdfs_dev_close(dev);

    /* A device opened without the variable does not trace. */
    dev = open_ok(image, 0);
    assert_int_equal(vdfs_dev_write(dev, a, sizeof a, 0), 0);
    vdfs_dev_close(dev);

    int fd = open(trace, O_RDONLY);
    assert_true(fd >= 0);
    unsigned char buf[4096];
    ssize_t size = read(fd, buf, sizeof buf);
    assert_true(size > 0);
    close(fd);
    struct trace_rec recs[16];
    size_t n = parse_trace(buf, (size_t)size, recs, 16);
    assert_int_equal(n, 8);
    expect_record(&recs[0], VDFS_TRACE_WRITE, 4096, sizeof a, a);
    expect_record(&recs[1], VDFS_TRACE_WRITE, 8192, sizeof b, b);
    expect_record(&recs[2], VDFS_TRACE_WRITE, 0, sizeof c, c);
    expect_record(&recs[3], VDFS_TRACE_ZERO, 16384, 4096, NULL);
    expect_record(&recs[4], VDFS_TRACE_DISCARD, 20480, 4096, NULL);
    expect_record(&recs[5], VDFS_TRACE_FLUSH, 0, 0, NULL);
    expect_record(&recs[6], VDFS_TRACE_WRITE, 512 * 100, 512, caw_data);
    expect_record(&recs[7], VDFS_TRACE_FLUSH, 0, 0, NULL);
    unlink(trace);
    unlink(image);
}

struct trace_writer {
    struct vdfs_dev *dev;
    uint32_t index;
    int failures;
};

enum { TRACE_THREADS = 4, TRACE_WRITES = 200, TRACE_FLUSH_EVERY = 50 };

static void *trace_writer_main(void *arg)
{
    struct trace_writer *w = arg;
    unsigned char sector[512];
    for (uint32_t seq = 0; seq < TRACE_WRITES; seq++) {
        memset(sector, (int)w->index, sizeof sector);
        memcpy(sector, &w->index, 4);
        memcpy(sector + 4, &seq, 4);
        uint64_t off = ((uint64_t)seq * TRACE_THREADS + w->index) * 512;
        if (vdfs_dev_write(w->dev, sector, sizeof sector, off) != 0)
            w->failures++;
        if (w->index == 0 && (seq + 1) % TRACE_FLUSH_EVERY == 0 && vdfs_dev_flush(w->dev) != 0)
            w->failures++;
    }
    return NULL;
}

/* Records from many threads never interleave, and each thread's writes
 * appear in the order it issued them. */
static void test_trace_concurrent(void **state)
{
    char image[256], trace[256];
    temp_image_create(TMPFS_DIR, (uint64_t)TRACE_THREADS * TRACE_WRITES * 512, image);
    temp_image_create(TMPFS_DIR, 0, trace);
    assert_int_equal(setenv(VDFS_TRACE_ENV, trace, 1), 0);
    struct vdfs_dev *dev = open_ok(image, 0);
    assert_int_equal(unsetenv(VDFS_TRACE_ENV), 0);
    struct trace_writer writers[TRACE_THREADS];
    pthread_t threads[TRACE_THREADS];
    for (uint32_t t = 0; t < TRACE_THREADS; t++) {
        writers[t] = (struct trace_writer){ .dev = dev, .index = t };
        assert_int_equal(pthread_create(&threads[t], NULL, trace_writer_main, &writers[t]), 0);
    }
    for (int t = 0; t < TRACE_THREADS; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(writers[t].failures, 0);
    }
    vdfs_dev_close(dev);

    struct stat st;
    assert_int_equal(stat(trace, &st), 0);
    unsigned char *buf = malloc((size_t)st.st_size);
    int fd = open(trace, O_RDONLY);
    assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
    close(fd);
    enum { MAX_RECS = TRACE_THREADS * TRACE_WRITES + TRACE_WRITES };
    struct trace_rec *recs = calloc(MAX_RECS, sizeof *recs);
    size_t n = parse_trace(buf, (size_t)st.st_size, recs, MAX_RECS);
    uint32_t next_seq[TRACE_THREADS] = { 0 };
    unsigned flushes = 0;
    for (size_t i = 0; i < n; i++) {
        if (recs[i].op == VDFS_TRACE_FLUSH) {
            flushes++;
            continue;
        }
        assert_int_equal(recs[i].op, VDFS_TRACE_WRITE);
        assert_int_equal(recs[i].len, 512);
        uint32_t t, seq;
        memcpy(&t, recs[i].data, 4);
        memcpy(&seq, recs[i].data + 4, 4);
        assert_true(t < TRACE_THREADS);
        assert_int_equal(seq, next_seq[t]);
        assert_int_equal(recs[i].off, ((uint64_t)seq * TRACE_THREADS + t) * 512);
        assert_int_equal(recs[i].data[511], t);
        next_seq[t]++;
    }
    for (int t = 0; t < TRACE_THREADS; t++)
        assert_int_equal(next_seq[t], TRACE_WRITES);
    assert_int_equal(flushes, TRACE_WRITES / TRACE_FLUSH_EVERY);
    free(recs);
    free(buf);
    unlink(trace);
    unlink(image);
}

/* ------------------------------------------------------------ concurrency */

struct worker {
    struct vdfs_dev *dev;
    unsigned index, nthreads, iterations, sectors;
    size_t sector_size;
    uint64_t *last_seed; /* per sector; a thread only touches its own sectors */
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    unsigned char *buf = vdfs_aligned_alloc(w->sector_size), *got = vdfs_aligned_alloc(w->sector_size);
    unsigned rng = 12345u + w->index * 7919u;
    for (unsigned it = 0; it < w->iterations; it++) {
        rng = rng * 1103515245u + 12345u;
        unsigned sector = ((rng >> 8) % (w->sectors / w->nthreads)) * w->nthreads + w->index;
        uint64_t seed = ((uint64_t)w->index << 32) | (it + 1);
        fill_pattern(buf, w->sector_size, seed);
        uint64_t off = (uint64_t)sector * w->sector_size;
        if (vdfs_dev_write(w->dev, buf, w->sector_size, off) != 0 ||
            vdfs_dev_read(w->dev, got, w->sector_size, off) != 0 ||
            memcmp(buf, got, w->sector_size) != 0)
            w->failures++;
        w->last_seed[sector] = seed;
    }
    vdfs_aligned_free(buf);
    vdfs_aligned_free(got);
    return NULL;
}

static void concurrent_io(const char *dir, unsigned flags, unsigned nthreads, unsigned iterations,
                          size_t sector_size)
{
    enum { SECTORS = 4096 };
    char path[256];
    temp_image_create(dir, (uint64_t)SECTORS * sector_size, path);
    struct vdfs_dev *dev = open_ok(path, flags);
    uint64_t *last_seed = calloc(SECTORS, sizeof *last_seed);
    struct worker workers[16];
    pthread_t threads[16];
    assert_true(nthreads <= 16);
    for (unsigned t = 0; t < nthreads; t++) {
        workers[t] = (struct worker){ .dev = dev, .index = t, .nthreads = nthreads, .iterations = iterations,
                                      .sectors = SECTORS, .sector_size = sector_size, .last_seed = last_seed };
        assert_int_equal(pthread_create(&threads[t], NULL, worker_main, &workers[t]), 0);
    }
    for (unsigned t = 0; t < nthreads; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(workers[t].failures, 0);
    }
    unsigned char *want = vdfs_aligned_alloc(sector_size), *got = vdfs_aligned_alloc(sector_size);
    unsigned checked = 0;
    for (unsigned s = 0; s < SECTORS; s++) {
        if (!last_seed[s])
            continue;
        fill_pattern(want, sector_size, last_seed[s]);
        assert_int_equal(vdfs_dev_read(dev, got, sector_size, (uint64_t)s * sector_size), 0);
        assert_memory_equal(got, want, sector_size);
        checked++;
    }
    assert_true(checked > SECTORS / 4);
    vdfs_aligned_free(want);
    vdfs_aligned_free(got);
    free(last_seed);
    vdfs_dev_close(dev);
    unlink(path);
}

static void test_concurrent_uring(void **state) { concurrent_io(EXT4_DIR, 0, 4, 1000, 512); }
static void test_concurrent_syscalls(void **state) { concurrent_io(EXT4_DIR, VDFS_DEV_NO_URING, 4, 1000, 512); }
/* More threads than rings: callers must queue for a ring. */
static void test_concurrent_pool_exhausted(void **state) { concurrent_io(EXT4_DIR, 0, 12, 250, 512); }
static void test_concurrent_direct(void **state) { concurrent_io(EXT4_DIR, VDFS_DEV_DIRECT, 4, 1000, 4096); }

static void test_aligned_alloc(void **state)
{
    void *p = vdfs_aligned_alloc(12345);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 4096, 0);
    memset(p, 1, 12345);
    vdfs_aligned_free(p);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    /* The sanitizers abort on impossible allocations instead of failing them. */
    assert_null(vdfs_aligned_alloc(SIZE_MAX - 4096));
#endif
    vdfs_aligned_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_open_empty_file),
        cmocka_unit_test(test_open_sets_cloexec),
        cmocka_unit_test(test_round_trip_uring),
        cmocka_unit_test(test_round_trip_syscalls),
        cmocka_unit_test(test_large_transfer),
        cmocka_unit_test(test_batch_uring),
        cmocka_unit_test(test_batch_syscalls),
        cmocka_unit_test(test_read_past_end_uring),
        cmocka_unit_test(test_read_past_end_syscalls),
        cmocka_unit_test(test_zero_reads_zero_and_frees_space),
        cmocka_unit_test(test_discard_returns_space),
        cmocka_unit_test(test_readonly_rejects_writes),
        cmocka_unit_test(test_direct_on_ext4),
        cmocka_unit_test(test_direct_on_tmpfs),
        cmocka_unit_test(test_direct_fallback_on_ramfs),
        cmocka_unit_test(test_trace_records),
        cmocka_unit_test(test_trace_concurrent),
        cmocka_unit_test(test_concurrent_uring),
        cmocka_unit_test(test_concurrent_syscalls),
        cmocka_unit_test(test_concurrent_pool_exhausted),
        cmocka_unit_test(test_concurrent_direct),
        cmocka_unit_test(test_aligned_alloc),
        cmocka_unit_test(test_lease_ends_mid_batch_uring),
        cmocka_unit_test(test_lease_ends_mid_batch_syscalls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

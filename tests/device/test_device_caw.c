/* Device layer: compare-and-write, atomic reads and OFD liveness locks,
 * within one process and across processes. */
#include <errno.h>
#include <pthread.h>
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

#define EXT4_DIR "/var/tmp"
#define TMPFS_DIR "/dev/shm"
#define SECTOR 512

static struct vdfs_dev *open_ok(const char *path, unsigned flags)
{
    struct vdfs_dev *dev = NULL;
    assert_int_equal(vdfs_dev_open(path, flags, &dev), 0);
    return dev;
}

/* Runs fn in a child process (no cmocka there) and returns its exit code. */
static int run_in_child(int (*fn)(const void *), const void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn(arg));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---------------------------------------------------------- single caller */

static void caw_basic(const char *dir, unsigned flags)
{
    char path[256];
    temp_image_create(dir, 64 * 1024, path);
    struct vdfs_dev *dev = open_ok(path, flags);

    /* Caller buffers deliberately misaligned: the device must bounce. */
    unsigned char *mem = malloc(4 * 1024 + 8);
    unsigned char *old = mem + 1, *fresh = old + 1024, *other = fresh + 1024, *found = other + 1024;
    unsigned char *page = vdfs_aligned_alloc(4096), *got = vdfs_aligned_alloc(4096);
    fill_pattern(page, 4096, 10);
    assert_int_equal(vdfs_dev_write(dev, page, 4096, 4096), 0);
    memcpy(old, page + SECTOR, 1024); /* sectors 9 and 10 of the device */
    fill_pattern(fresh, 1024, 11);
    fill_pattern(other, 1024, 12);

    assert_int_equal(vdfs_dev_compare_and_write(dev, 4096 + SECTOR, 1024, old, fresh, found), 0);
    assert_int_equal(vdfs_dev_read(dev, got, 4096, 4096), 0);
    assert_memory_equal(got + SECTOR, fresh, 1024);
    /* The neighbouring sectors in the same page are untouched. */
    assert_memory_equal(got, page, SECTOR);
    assert_memory_equal(got + 3 * SECTOR, page + 3 * SECTOR, 4096 - 3 * SECTOR);

    memset(found, 0, 1024);
    assert_int_equal(vdfs_dev_compare_and_write(dev, 4096 + SECTOR, 1024, old, other, found), -EAGAIN);
    assert_memory_equal(found, fresh, 1024);
    assert_int_equal(vdfs_dev_compare_and_write(dev, 4096 + SECTOR, 1024, old, other, NULL), -EAGAIN);
    assert_int_equal(vdfs_dev_read(dev, got, 4096, 4096), 0);
    assert_memory_equal(got + SECTOR, fresh, 1024);

    memset(found, 0, 1024);
    assert_int_equal(vdfs_dev_read_atomic(dev, found, 1024, 4096 + SECTOR), 0);
    assert_memory_equal(found, fresh, 1024);

    /* A compare-and-write is durable on return: another open sees it. */
    struct vdfs_dev *second = open_ok(path, VDFS_DEV_RDONLY);
    assert_int_equal(vdfs_dev_read_atomic(second, found, 1024, 4096 + SECTOR), 0);
    assert_memory_equal(found, fresh, 1024);
    vdfs_dev_close(second);

    vdfs_aligned_free(page);
    vdfs_aligned_free(got);
    free(mem);
    vdfs_dev_close(dev);
    unlink(path);
}

static void test_caw_buffered(void **state) { caw_basic(EXT4_DIR, 0); }
static void test_caw_syscalls(void **state) { caw_basic(EXT4_DIR, VDFS_DEV_NO_URING); }
static void test_caw_direct(void **state) { caw_basic(EXT4_DIR, VDFS_DEV_DIRECT); }
/* tmpfs reports no direct I/O alignment, so 512-byte compare-and-write is
 * widened to whole pages there (when the kernel allows O_DIRECT at all). */
static void test_caw_direct_widened(void **state) { caw_basic(TMPFS_DIR, VDFS_DEV_DIRECT); }

static void test_caw_rejects_bad_ranges(void **state)
{
    char path[256];
    temp_image_create(TMPFS_DIR, 8192, path);
    struct vdfs_dev *dev = open_ok(path, 0);
    unsigned char a[1024] = { 0 }, b[1024] = { 1 };
    assert_int_equal(vdfs_dev_compare_and_write(dev, 100, SECTOR, a, b, NULL), -EINVAL);
    assert_int_equal(vdfs_dev_compare_and_write(dev, 0, 100, a, b, NULL), -EINVAL);
    assert_int_equal(vdfs_dev_compare_and_write(dev, 0, 0, a, b, NULL), -EINVAL);
    assert_int_equal(vdfs_dev_compare_and_write(dev, 0, 513, a, b, NULL), -EINVAL);
    assert_int_equal(vdfs_dev_read_atomic(dev, a, SECTOR, 1), -EINVAL);
    assert_int_equal(vdfs_dev_read_atomic(dev, a, 10, 0), -EINVAL);
    /* Past the end of the image the compare cannot even read. */
    assert_int_equal(vdfs_dev_compare_and_write(dev, 8192, SECTOR, a, b, NULL), -EIO);
    /* Nothing was written by any of those. */
    unsigned char got[1024];
    assert_int_equal(vdfs_dev_read(dev, got, sizeof got, 0), 0);
    assert_memory_equal(got, a, sizeof got);
    vdfs_dev_close(dev);
    unlink(path);
}

/* --------------------------------------------------------------- counters */

struct counter_job {
    const char *path;
    unsigned flags;
    unsigned increments;
    uint64_t off;
};

static uint64_t sector_counter(const unsigned char *sector) { uint64_t v; memcpy(&v, sector, 8); return v; }

/* The whole sector encodes the value, so a torn write would be caught. */
static void encode_counter(unsigned char *sector, uint64_t value)
{
    memset(sector, (int)(value & 0xff), SECTOR);
    memcpy(sector, &value, 8);
}

static bool counter_sector_is_whole(const unsigned char *sector)
{
    unsigned char want[SECTOR];
    encode_counter(want, sector_counter(sector));
    return memcmp(want, sector, SECTOR) == 0;
}

/* Returns 0 on success, else a small code naming what went wrong. */
static int increment_many(struct vdfs_dev *dev, const struct counter_job *job)
{
    unsigned char cur[SECTOR], next[SECTOR];
    if (vdfs_dev_read_atomic(dev, cur, SECTOR, job->off) != 0)
        return 2;
    for (unsigned i = 0; i < job->increments; i++) {
        for (;;) {
            if (!counter_sector_is_whole(cur))
                return 3;
            encode_counter(next, sector_counter(cur) + 1);
            int rc = vdfs_dev_compare_and_write(dev, job->off, SECTOR, cur, next, cur);
            if (rc == 0) {
                memcpy(cur, next, SECTOR);
                break;
            }
            if (rc != -EAGAIN)
                return 4;
        }
    }
    return 0;
}

static int counter_child(const void *arg)
{
    const struct counter_job *job = arg;
    struct vdfs_dev *dev;
    if (vdfs_dev_open(job->path, job->flags, &dev) != 0)
        return 1;
    int rc = increment_many(dev, job);
    vdfs_dev_close(dev);
    return rc;
}

static uint64_t read_counter(const char *path, uint64_t off)
{
    struct vdfs_dev *dev = open_ok(path, VDFS_DEV_RDONLY);
    unsigned char sector[SECTOR];
    assert_int_equal(vdfs_dev_read_atomic(dev, sector, SECTOR, off), 0);
    assert_true(counter_sector_is_whole(sector));
    vdfs_dev_close(dev);
    return sector_counter(sector);
}

static void counter_across_processes(const char *dir, unsigned flags, unsigned nproc, unsigned increments)
{
    char path[256];
    temp_image_create(dir, 16 * 1024, path);
    struct counter_job job = { .path = path, .flags = flags, .increments = increments, .off = 3 * SECTOR };
    pid_t pids[8];
    fflush(NULL);
    for (unsigned p = 0; p < nproc; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0)
            _exit(counter_child(&job));
    }
    for (unsigned p = 0; p < nproc; p++) {
        int status;
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(read_counter(path, job.off), (uint64_t)nproc * increments);
    unlink(path);
}

static void test_caw_counter_processes(void **state) { counter_across_processes(TMPFS_DIR, 0, 4, 500); }
static void test_caw_counter_processes_direct(void **state)
{
    counter_across_processes(EXT4_DIR, VDFS_DEV_DIRECT, 4, 40);
    counter_across_processes(TMPFS_DIR, VDFS_DEV_DIRECT, 4, 200);
}

struct thread_job {
    struct vdfs_dev *dev;
    struct counter_job job;
    int rc;
};

static void *counter_thread(void *arg)
{
    struct thread_job *t = arg;
    t->rc = increment_many(t->dev, &t->job);
    return NULL;
}

/* Threads share one open file description, so OFD locks alone would not
 * exclude them. */
static void test_caw_counter_threads(void **state)
{
    char path[256];
    temp_image_create(TMPFS_DIR, 16 * 1024, path);
    struct vdfs_dev *dev = open_ok(path, 0);
    struct thread_job jobs[4];
    pthread_t threads[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (struct thread_job){ .dev = dev, .job = { .increments = 500, .off = 5 * SECTOR } };
        assert_int_equal(pthread_create(&threads[t], NULL, counter_thread, &jobs[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(jobs[t].rc, 0);
    }
    vdfs_dev_close(dev);
    assert_int_equal(read_counter(path, 5 * SECTOR), 2000);
    unlink(path);
}

/* ------------------------------------------------------------ atomic read */

enum { FLIP_BYTES = 64 * 1024, FLIPS = 300 };

static int flipper_child(const void *arg)
{
    struct vdfs_dev *dev;
    if (vdfs_dev_open(arg, 0, &dev) != 0)
        return 1;
    static unsigned char a[FLIP_BYTES], b[FLIP_BYTES];
    memset(a, 'A', sizeof a);
    memset(b, 'B', sizeof b);
    int rc = 0;
    for (int i = 0; i < FLIPS && rc == 0; i++)
        rc = vdfs_dev_compare_and_write(dev, 0, FLIP_BYTES, i % 2 ? b : a, i % 2 ? a : b, NULL) ? 2 : 0;
    vdfs_dev_close(dev);
    return rc;
}

static void test_read_atomic_never_torn(void **state)
{
    char path[256];
    temp_image_create(TMPFS_DIR, FLIP_BYTES, path);
    struct vdfs_dev *dev = open_ok(path, 0);
    static unsigned char buf[FLIP_BYTES];
    memset(buf, 'A', sizeof buf);
    assert_int_equal(vdfs_dev_write(dev, buf, sizeof buf, 0), 0);

    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(flipper_child(path));
    unsigned reads = 0, torn = 0, saw_b = 0;
    int status;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        assert_int_equal(vdfs_dev_read_atomic(dev, buf, sizeof buf, 0), 0);
        reads++;
        saw_b += buf[0] == 'B';
        if (memchr(buf, buf[0] == 'A' ? 'B' : 'A', sizeof buf))
            torn++;
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(reads > 0);
    assert_int_equal(torn, 0);
    /* FLIPS is even, so the flipper ends where it began. */
    assert_int_equal(vdfs_dev_read_atomic(dev, buf, sizeof buf, 0), 0);
    assert_int_equal(buf[0], 'A');
    print_message("read_atomic: %u reads, %u saw B, none torn\n", reads, saw_b);
    vdfs_dev_close(dev);
    unlink(path);
}

/* ---------------------------------------------------------- liveness locks */

struct probe_job {
    const char *path;
    uint64_t off, len;
    int want_probe;            /* expected vdfs_dev_probe_lock */
    int want_shared, want_excl; /* expected try_lock results */
};

static int probe_child(const void *arg)
{
    const struct probe_job *job = arg;
    struct vdfs_dev *dev;
    if (vdfs_dev_open(job->path, 0, &dev) != 0)
        return 1;
    int rc = 0;
    if (vdfs_dev_probe_lock(dev, job->off, job->len) != job->want_probe)
        rc = 2;
    else if (vdfs_dev_try_lock(dev, job->off, job->len, false) != job->want_shared)
        rc = 3;
    else if (vdfs_dev_unlock(dev, job->off, job->len) != 0)
        rc = 4;
    else if (vdfs_dev_try_lock(dev, job->off, job->len, true) != job->want_excl)
        rc = 5;
    vdfs_dev_close(dev);
    return rc;
}

static int lock_and_die_child(const void *arg)
{
    const struct probe_job *job = arg;
    struct vdfs_dev *dev;
    if (vdfs_dev_open(job->path, 0, &dev) != 0)
        return 1;
    return vdfs_dev_try_lock(dev, job->off, job->len, true) == 0 ? 0 : 2; /* exits holding it */
}

static void test_probe_lock_across_processes(void **state)
{
    char path[256];
    temp_image_create(TMPFS_DIR, 64 * 1024, path);
    struct vdfs_dev *dev = open_ok(path, 0);
    const uint64_t off = 4096, len = SECTOR;

    assert_int_equal(vdfs_dev_try_lock(dev, off, len, true), 0);
    assert_int_equal(vdfs_dev_probe_lock(dev, off, len), 0); /* our own lock is not a conflict */
    struct probe_job held_excl = { path, off, len, 1, -EAGAIN, -EAGAIN };
    assert_int_equal(run_in_child(probe_child, &held_excl), 0);
    struct probe_job overlapping = { path, off + len - 1, 100, 1, -EAGAIN, -EAGAIN };
    assert_int_equal(run_in_child(probe_child, &overlapping), 0);
    struct probe_job elsewhere = { path, off + len, len, 0, 0, 0 };
    assert_int_equal(run_in_child(probe_child, &elsewhere), 0);

    assert_int_equal(vdfs_dev_unlock(dev, off, len), 0);
    struct probe_job free_range = { path, off, len, 0, 0, 0 };
    assert_int_equal(run_in_child(probe_child, &free_range), 0);

    assert_int_equal(vdfs_dev_try_lock(dev, off, len, false), 0);
    struct probe_job held_shared = { path, off, len, 1, 0, -EAGAIN };
    assert_int_equal(run_in_child(probe_child, &held_shared), 0);
    assert_int_equal(vdfs_dev_unlock(dev, off, len), 0);

    /* A process that dies holding a lock releases it at once. */
    struct probe_job dying = { path, off, len, 0, 0, 0 };
    assert_int_equal(run_in_child(lock_and_die_child, &dying), 0);
    assert_int_equal(vdfs_dev_probe_lock(dev, off, len), 0);
    assert_int_equal(vdfs_dev_try_lock(dev, off, len, true), 0);

    assert_int_equal(vdfs_dev_try_lock(dev, off, 0, true), -EINVAL);
    assert_int_equal(vdfs_dev_probe_lock(dev, UINT64_MAX - 10, 100), -EINVAL);
    vdfs_dev_close(dev);
    unlink(path);
}

/* A host holds a shared liveness lock on its heartbeat slot and renews the
 * slot by compare-and-write: the renewal must not drop that lock. */
static void test_caw_keeps_liveness_lock(void **state)
{
    char path[256];
    temp_image_create(TMPFS_DIR, 64 * 1024, path);
    struct vdfs_dev *dev = open_ok(path, 0);
    const uint64_t slot = 8192;
    unsigned char zero[SECTOR] = { 0 }, beat[SECTOR], got[SECTOR];
    fill_pattern(beat, sizeof beat, 5);

    assert_int_equal(vdfs_dev_try_lock(dev, slot, SECTOR, false), 0);
    assert_int_equal(vdfs_dev_compare_and_write(dev, slot, SECTOR, zero, beat, NULL), 0);
    assert_int_equal(vdfs_dev_read_atomic(dev, got, SECTOR, slot), 0);
    assert_memory_equal(got, beat, SECTOR);
    struct probe_job still_held = { path, slot, SECTOR, 1, 0, -EAGAIN };
    assert_int_equal(run_in_child(probe_child, &still_held), 0);

    /* A liveness lock held through another open file description does
     * not block compare-and-write (it would hang here if it did). */
    assert_int_equal(vdfs_dev_unlock(dev, slot, SECTOR), 0);
    struct vdfs_dev *other = open_ok(path, 0);
    assert_int_equal(vdfs_dev_try_lock(other, slot, SECTOR, true), 0);
    assert_int_equal(vdfs_dev_compare_and_write(dev, slot, SECTOR, beat, zero, NULL), 0);
    assert_int_equal(vdfs_dev_read_atomic(dev, got, SECTOR, slot), 0);
    assert_memory_equal(got, zero, SECTOR);
    vdfs_dev_close(other);
    vdfs_dev_close(dev);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caw_buffered),
        cmocka_unit_test(test_caw_syscalls),
        cmocka_unit_test(test_caw_direct),
        cmocka_unit_test(test_caw_direct_widened),
        cmocka_unit_test(test_caw_rejects_bad_ranges),
        cmocka_unit_test(test_caw_counter_processes),
        cmocka_unit_test(test_caw_counter_processes_direct),
        cmocka_unit_test(test_caw_counter_threads),
        cmocka_unit_test(test_read_atomic_never_torn),
        cmocka_unit_test(test_probe_lock_across_processes),
        cmocka_unit_test(test_caw_keeps_liveness_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* volume.c and the thread-safety of the API: several threads work at
 * once on one mounted volume. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fixture.h"

enum { THREADS = 4, FILES_PER_THREAD = 500 };

struct worker {
    struct vdfs *fs;
    int id;
    int errors;
    char first_error[160];
};

static void note_error(struct worker *w, const char *what, int i, long rc)
{
    if (!w->errors++)
        snprintf(w->first_error, sizeof(w->first_error), "thread %d: %s #%d: %ld", w->id, what, i, rc);
}

static void *work(void *arg)
{
    struct worker *w = arg;
    struct vdfs_cred cred = {0, 0};
    struct vdfs_stat st;
    char name[32];
    snprintf(name, sizeof(name), "t%d", w->id);
    int rc = vdfs_create(w->fs, vdfs_root_ino(w->fs), name, S_IFDIR | 0755, 0, &cred, &st);
    if (rc) {
        note_error(w, "mkdir", 0, rc);
        return NULL;
    }
    uint32_t dir = st.ino;
    uint32_t *inos = calloc(FILES_PER_THREAD, sizeof(*inos));
    uint8_t buf[5000], got[5000];
    for (int i = 0; i < FILES_PER_THREAD; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        if ((rc = vdfs_create(w->fs, dir, name, S_IFREG | 0644, 0, &cred, &st))) {
            note_error(w, "create", i, rc);
            continue;
        }
        inos[i] = st.ino;
        size_t len = 1 + (size_t)(i * 37 % (int)sizeof(buf));
        fixture_pattern(buf, len, (uint64_t)w->id * 100000 + (uint64_t)i);
        ssize_t n = vdfs_pwrite(w->fs, st.ino, buf, len, 0);
        if (n != (ssize_t)len)
            note_error(w, "write", i, (long)n);
    }
    for (int i = 0; i < FILES_PER_THREAD; i++) {
        size_t len = 1 + (size_t)(i * 37 % (int)sizeof(buf));
        fixture_pattern(buf, len, (uint64_t)w->id * 100000 + (uint64_t)i);
        snprintf(name, sizeof(name), "f%d", i);
        if ((rc = vdfs_lookup(w->fs, dir, name, &st)) || st.ino != inos[i]) {
            note_error(w, "lookup", i, rc);
            continue;
        }
        ssize_t n = vdfs_pread(w->fs, st.ino, got, sizeof(got), 0);
        if (n != (ssize_t)len || memcmp(got, buf, len) != 0)
            note_error(w, "read back", i, (long)n);
    }
    for (int i = 0; i < FILES_PER_THREAD; i += 2) {
        snprintf(name, sizeof(name), "f%d", i);
        if ((rc = vdfs_unlink(w->fs, dir, name)))
            note_error(w, "unlink", i, rc);
    }
    free(inos);
    return NULL;
}

struct counter {
    int n;
};

static int count(void *ctx, const char *name, uint32_t ino, uint32_t mode, uint64_t next)
{
    (void)ino;
    (void)mode;
    (void)next;
    if (strcmp(name, ".") && strcmp(name, ".."))
        ((struct counter *)ctx)->n++;
    return 0;
}

static void test_threads_in_their_own_directories(void **state)
{
    (void)state;
    struct fixture f;
    const char *opts[] = {"-H", "2", NULL};
    fixture_make(&f, "2G", opts);
    fixture_mount(&f);
    pthread_t tids[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.fs = f.fs, .id = i};
        assert_int_equal(pthread_create(&tids[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(tids[i], NULL), 0);
    for (int i = 0; i < THREADS; i++) {
        if (w[i].errors)
            fail_msg("%d errors, first: %s", w[i].errors, w[i].first_error);
    }
    fixture_unmount(&f);
    assert_int_equal(fixture_fsck(&f), 0);
    fixture_mount(&f);
    char name[16];
    for (int i = 0; i < THREADS; i++) {
        struct vdfs_stat st;
        snprintf(name, sizeof(name), "t%d", i);
        assert_int_equal(vdfs_lookup(f.fs, vdfs_root_ino(f.fs), name, &st), 0);
        struct counter c = {0};
        assert_int_equal(vdfs_readdir(f.fs, st.ino, 0, count, &c), 0);
        assert_int_equal(c.n, FILES_PER_THREAD / 2);
    }
    fixture_destroy(&f);
}

/* A process that will forbid io_uring_setup makes its rings first: the
 * count asked for (plus the mount's own threads) exists afterwards, never
 * shrinks, and I/O goes on as before. */
static void test_prepare_io_threads(void **state)
{
    (void)state;
    struct fixture f;
    fixture_make(&f, "1G", NULL);
    fixture_mount(&f);
    unsigned rings = vdfs_prepare_io_threads(f.fs, 6);
    if (rings) {
        assert_true(rings >= 8);
        assert_int_equal(vdfs_prepare_io_threads(f.fs, 2), rings);
        unsigned more = vdfs_prepare_io_threads(f.fs, 12);
        assert_true(more >= 14);
    }
    uint32_t ino = fixture_create(&f, vdfs_root_ino(f.fs), "after", S_IFREG | 0644);
    static uint8_t buf[200000];
    memset(buf, 0x5a, sizeof(buf));
    fixture_write(&f, ino, buf, sizeof(buf), 4096);
    fixture_expect(&f, ino, buf, sizeof(buf), 4096);
    fixture_unmount(&f);
    assert_int_equal(fixture_fsck(&f), 0);
    fixture_destroy(&f);
}

static void test_statfs_and_usage(void **state)
{
    (void)state;
    struct fixture f;
    const char *opts[] = {"-H", "2", NULL};
    fixture_make(&f, "1G", opts);
    fixture_mount(&f);
    struct vdfs_statfs sf;
    assert_int_equal(vdfs_statfs(f.fs, &sf), 0);
    assert_int_equal(sf.block_size, 1 << 20);
    assert_int_equal(sf.name_max, 255);
    assert_int_equal(sf.free_blocks, sf.total_blocks);
    assert_int_equal(sf.free_files, sf.total_files - 2);
    uint32_t ino = fixture_create(&f, vdfs_root_ino(f.fs), "thin", S_IFREG | 0644);
    struct vdfs_usage before;
    assert_int_equal(vdfs_usage(f.fs, &before), 0);
    uint8_t buf[4096] = {7};
    fixture_write(&f, ino, buf, sizeof(buf), 10ull << 30);
    struct vdfs_usage u;
    assert_int_equal(vdfs_usage(f.fs, &u), 0);
    assert_int_equal(u.provisioned_bytes, (10ull << 30) + sizeof(buf));
    /* Directories hold sub-blocks too; the file adds one file block. */
    assert_int_equal(u.allocated_bytes - before.allocated_bytes, 1 << 20);
    assert_int_equal(u.files, 1);
    assert_int_equal(u.directories, 2);
    /* Capacity and free take in the sub-blocks, which hold small files
     * and directories, so that capacity - free is what is allocated. */
    assert_int_equal(sf.subblock_size, 64 << 10);
    assert_true(sf.total_subblocks > 0);
    assert_true(sf.free_subblocks < sf.total_subblocks);
    assert_int_equal(u.capacity_bytes, (sf.total_blocks << 20) + sf.total_subblocks * sf.subblock_size);
    assert_int_equal(u.free_bytes, ((sf.total_blocks - 1) << 20) + sf.free_subblocks * sf.subblock_size);
    assert_int_equal(u.capacity_bytes - u.free_bytes, u.allocated_bytes);
    struct vdfs_info info;
    assert_int_equal(vdfs_get_info(f.fs, &info), 0);
    assert_int_equal(info.version, 1);
    assert_int_equal(info.max_hosts, 2);
    assert_true(info.my_slot < 2);
    fixture_destroy(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_in_their_own_directories),
        cmocka_unit_test(test_statfs_and_usage),
        cmocka_unit_test(test_prepare_io_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Data I/O of open files outside the volume lock (inode.c): reads and
 * overwrites run in parallel, while truncate, punch and allocating writes
 * of the same file wait for them, so no read ever returns bytes of a block
 * that was freed and handed to another file meanwhile. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"

#define PAGE 4096u
#define MIB (1024u * 1024u)
#define WORKERS 4
#define STRIPE_PAGES 1024u /* the workers' 4 MiB at the start of the file */
#define CHURN_OFF (12ull * MIB)

static int setup(void **state)
{
    const char *opts[] = {"-H", "2", NULL};
    return fixture_setup(state, "1G", opts, true);
}

struct shared {
    struct vdfs *fs;
    uint32_t root, file;
    atomic_bool stop;
    atomic_int failures;
    char why[256];
};

struct worker {
    struct shared *sh;
    unsigned id;
    uint64_t written[STRIPE_PAGES]; /* seed last written to each page of this stripe, 0: none */
};

static void fail_once(struct shared *sh, const char *what)
{
    if (atomic_fetch_add(&sh->failures, 1) == 0)
        snprintf(sh->why, sizeof(sh->why), "%s", what);
}

/* Overwrites and reads back its own pages (page % WORKERS == id). */
static void *overwriter(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    uint8_t *buf = malloc(PAGE), *back = malloc(PAGE);
    unsigned rng = w->id * 2654435761u + 1;
    for (unsigned iter = 1; iter <= 3000 && !atomic_load(&sh->failures); iter++) {
        rng = rng * 1103515245u + 12345u;
        unsigned page = ((rng >> 8) % (STRIPE_PAGES / WORKERS)) * WORKERS + w->id;
        uint64_t seed = (uint64_t)page << 32 | iter;
        fixture_pattern(buf, PAGE, seed);
        if (vdfs_pwrite(sh->fs, sh->file, buf, PAGE, (uint64_t)page * PAGE) != PAGE) {
            fail_once(sh, "overwrite failed");
            break;
        }
        w->written[page] = seed;
        if (vdfs_pread(sh->fs, sh->file, back, PAGE, (uint64_t)page * PAGE) != PAGE ||
            memcmp(buf, back, PAGE) != 0) {
            fail_once(sh, "a page did not read back what its only writer wrote");
            break;
        }
    }
    free(buf);
    free(back);
    return NULL;
}

/* Reads the churned megabyte: it holds the churner's pattern or zeros,
 * never another file's bytes. */
static void *churn_reader(void *arg)
{
    struct shared *sh = arg;
    uint8_t *buf = malloc(MIB), *mine = malloc(MIB), *zero = calloc(1, MIB);
    fixture_pattern(mine, MIB, 77);
    while (!atomic_load(&sh->stop) && !atomic_load(&sh->failures)) {
        ssize_t n = vdfs_pread(sh->fs, sh->file, buf, MIB, CHURN_OFF);
        if (n < 0) {
            fail_once(sh, "read of the churned range failed");
            break;
        }
        for (size_t off = 0; off < (size_t)n; off += PAGE)
            if (memcmp(buf + off, mine + off, PAGE) != 0 && memcmp(buf + off, zero, PAGE) != 0) {
                fail_once(sh, "a read returned bytes that were never written to this file");
                break;
            }
    }
    free(buf);
    free(mine);
    free(zero);
    return NULL;
}

/* Allocates, frees and truncates the file's 12th megabyte while the
 * others run, and hands every freed block straight to another file. */
static void *churner(void *arg)
{
    struct shared *sh = arg;
    uint8_t *mine = malloc(MIB), *other = malloc(MIB);
    fixture_pattern(mine, MIB, 77);
    fixture_pattern(other, MIB, 78);
    for (unsigned round = 0; round < 60 && !atomic_load(&sh->failures); round++) {
        struct vdfs_stat st;
        char name[32];
        snprintf(name, sizeof(name), "other-%u", round);
        struct vdfs_setattr grow = {.valid = VDFS_SET_SIZE, .size = CHURN_OFF + MIB};
        struct vdfs_setattr shrink = {.valid = VDFS_SET_SIZE, .size = 8ull * MIB};
        if (vdfs_pwrite(sh->fs, sh->file, mine, MIB, CHURN_OFF) != MIB ||
            vdfs_fallocate(sh->fs, sh->file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, CHURN_OFF, MIB) != 0 ||
            vdfs_create(sh->fs, sh->root, name, S_IFREG | 0644, 0, NULL, &st) != 0 ||
            vdfs_pwrite(sh->fs, st.ino, other, MIB, 0) != MIB ||
            vdfs_setattr(sh->fs, sh->file, &shrink, NULL) != 0 ||
            vdfs_setattr(sh->fs, sh->file, &grow, NULL) != 0 ||
            vdfs_unlink(sh->fs, sh->root, name) != 0) {
            fail_once(sh, "a churn step failed");
            break;
        }
    }
    atomic_store(&sh->stop, true);
    free(mine);
    free(other);
    return NULL;
}

static void test_parallel_io_with_truncate_and_punch(void **state)
{
    struct fixture *f = *state;
    struct shared sh = {.fs = f->fs, .root = vdfs_root_ino(f->fs)};
    sh.file = fixture_create(f, sh.root, "disk", S_IFREG | 0644);
    uint8_t *init = malloc(16 * MIB);
    fixture_pattern(init, 16 * MIB, 1);
    fixture_write(f, sh.file, init, CHURN_OFF, 0);
    uint8_t *mine = malloc(MIB);
    fixture_pattern(mine, MIB, 77); /* what the churner writes there */
    fixture_write(f, sh.file, mine, MIB, CHURN_OFF);
    free(mine);
    assert_int_equal(vdfs_open(f->fs, sh.file, O_RDWR), 0);

    struct worker *w = calloc(WORKERS, sizeof(*w));
    pthread_t tw[WORKERS], tr, tc;
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i].sh = &sh;
        w[i].id = i;
        assert_int_equal(pthread_create(&tw[i], NULL, overwriter, &w[i]), 0);
    }
    assert_int_equal(pthread_create(&tr, NULL, churn_reader, &sh), 0);
    assert_int_equal(pthread_create(&tc, NULL, churner, &sh), 0);
    for (unsigned i = 0; i < WORKERS; i++)
        pthread_join(tw[i], NULL);
    pthread_join(tc, NULL);
    pthread_join(tr, NULL);
    if (atomic_load(&sh.failures))
        fail_msg("%s", sh.why);

    /* Every page holds its last write, or the initial pattern. */
    uint8_t *expect = malloc(PAGE);
    for (unsigned page = 0; page < STRIPE_PAGES; page++) {
        uint64_t seed = w[page % WORKERS].written[page];
        if (seed)
            fixture_pattern(expect, PAGE, seed);
        else
            memcpy(expect, init + (size_t)page * PAGE, PAGE);
        fixture_expect(f, sh.file, expect, PAGE, (uint64_t)page * PAGE);
    }
    assert_int_equal(vdfs_release(f->fs, sh.file, O_RDWR), 0);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    free(expect);
    free(w);
    free(init);
}

/* A file that is not open keeps the locked path; an unaligned overwrite
 * of an open file goes through a bounce buffer and lands exactly. */
static void test_unaligned_overwrite_of_open_file(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t ino = fixture_create(f, root, "f", S_IFREG | 0644);
    uint8_t *data = malloc(4 * MIB + 1);
    fixture_pattern(data, 4 * MIB + 1, 5);
    fixture_write(f, ino, data, 4 * MIB, 0);
    assert_int_equal(vdfs_open(f->fs, ino, O_RDWR), 0);
    uint8_t *patch = data + 1; /* an unaligned buffer, aligned offset and length */
    fixture_pattern(patch, 64 * 1024, 6);
    assert_int_equal(vdfs_pwrite(f->fs, ino, patch, 64 * 1024, MIB), 64 * 1024);
    fixture_expect(f, ino, patch, 64 * 1024, MIB);
    struct vdfs_stat st;
    assert_int_equal(vdfs_getattr(f->fs, ino, &st), 0);
    assert_int_equal(st.size, 4 * MIB);
    assert_int_equal(vdfs_release(f->fs, ino, O_RDWR), 0);
    free(data);
}

static void sleep_past_time_granule(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 2 * (long)VDFS_TIME_GRANULE_NS};
    nanosleep(&ts, NULL);
}

/* Sets the setuid bit and waits past the time granule, so that what a
 * write does to the descriptor shows: see expect_write_applied. */
static void make_setuid_and_wait(struct fixture *f, uint32_t ino, struct vdfs_stat *before)
{
    struct vdfs_setattr sa = {.valid = VDFS_SET_MODE, .mode = S_IFREG | 04755};
    assert_int_equal(vdfs_setattr(f->fs, ino, &sa, before), 0);
    sleep_past_time_granule();
}

/* A later mtime than `before`, and no setuid bit. */
static void expect_write_applied(struct fixture *f, uint32_t ino, const struct vdfs_stat *before)
{
    struct vdfs_stat after;
    assert_int_equal(vdfs_getattr(f->fs, ino, &after), 0);
    assert_true(after.mtime.tv_sec > before->mtime.tv_sec ||
                (after.mtime.tv_sec == before->mtime.tv_sec && after.mtime.tv_nsec > before->mtime.tv_nsec));
    assert_int_equal(after.mode & 07777, 0755);
}

/* A 4 MiB file "f" of pattern `seed`, written (so its blocks are written
 * blocks); returns the pattern. */
static uint8_t *written_file(struct fixture *f, uint64_t seed, uint32_t *ino)
{
    *ino = fixture_create(f, vdfs_root_ino(f->fs), "f", S_IFREG | 0644);
    uint8_t *data = malloc(4 * MIB);
    fixture_pattern(data, 4 * MIB, seed);
    fixture_write(f, *ino, data, 4 * MIB, 0);
    return data;
}

/* What a write-back cache may hold (vdfs_overwrite_cached): only
 * overwrites of written blocks inside the size of a file open for
 * writing; asking applies the write's times and drops setuid. */
static void test_overwrite_cached_rules(void **state)
{
    struct fixture *f = *state;
    uint32_t ino;
    uint8_t *data = written_file(f, 7, &ino);
    assert_int_equal(vdfs_overwrite_cached(f->fs, ino, MIB, PAGE), 0); /* not open */
    assert_int_equal(vdfs_open(f->fs, ino, O_RDONLY), 0);
    assert_int_equal(vdfs_overwrite_cached(f->fs, ino, MIB, PAGE), 0); /* open, not for writing */
    assert_int_equal(vdfs_release(f->fs, ino, O_RDONLY), 0);

    assert_int_equal(vdfs_open(f->fs, ino, O_RDWR), 0);
    struct vdfs_stat before;
    make_setuid_and_wait(f, ino, &before);
    assert_int_equal(vdfs_overwrite_cached(f->fs, ino, MIB, PAGE), 1);
    expect_write_applied(f, ino, &before);
    assert_int_equal(vdfs_overwrite_cached(f->fs, ino, 4 * MIB - PAGE, 2 * PAGE), 0); /* past the size */
    assert_int_equal(vdfs_overwrite_cached(f->fs, ino, 4 * MIB, PAGE), 0);
    assert_int_equal(vdfs_fallocate(f->fs, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * MIB, MIB), 0);
    assert_int_equal(vdfs_overwrite_cached(f->fs, ino, 2 * MIB, PAGE), 0); /* a hole */
    assert_int_equal(vdfs_overwrite_cached(f->fs, ino, 2 * MIB - PAGE, 2 * PAGE), 0);
    assert_int_equal(vdfs_release(f->fs, ino, O_RDWR), 0);
    free(data);
}

/* vdfs_pwrite_back writes runs as they are, leaves the times alone, and
 * writes nothing when one run no longer lies in written blocks. */
static void test_pwrite_back(void **state)
{
    struct fixture *f = *state;
    uint32_t ino;
    uint8_t *data = written_file(f, 8, &ino);
    assert_int_equal(vdfs_open(f->fs, ino, O_RDWR), 0);
    uint8_t *a = aligned_alloc(PAGE, 2 * PAGE), *b = aligned_alloc(PAGE, PAGE);
    fixture_pattern(a, 2 * PAGE, 9);
    fixture_pattern(b, PAGE, 10);
    struct vdfs_stat before, after;
    assert_int_equal(vdfs_getattr(f->fs, ino, &before), 0);
    sleep_past_time_granule();
    struct vdfs_write_back runs[2] = {{.buf = a, .len = 2 * PAGE, .off = MIB - PAGE}, {.buf = b, .len = PAGE, .off = 3 * MIB}};
    assert_int_equal(vdfs_pwrite_back(f->fs, ino, runs, 2), 0);
    fixture_expect(f, ino, a, 2 * PAGE, MIB - PAGE);
    fixture_expect(f, ino, b, PAGE, 3 * MIB);
    assert_int_equal(vdfs_getattr(f->fs, ino, &after), 0);
    assert_int_equal(after.mtime.tv_sec, before.mtime.tv_sec);
    assert_int_equal(after.mtime.tv_nsec, before.mtime.tv_nsec);

    assert_int_equal(vdfs_fallocate(f->fs, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * MIB, MIB), 0);
    fixture_pattern(b, PAGE, 11);
    struct vdfs_write_back stale[2] = {{.buf = b, .len = PAGE, .off = 0}, {.buf = b, .len = PAGE, .off = 2 * MIB}};
    assert_int_equal(vdfs_pwrite_back(f->fs, ino, stale, 2), -ESTALE);
    fixture_expect(f, ino, data, PAGE, 0); /* the good run was not written either */
    fixture_expect_zeros(f, ino, PAGE, 2 * MIB);
    assert_int_equal(vdfs_pwrite_back(f->fs, ino, runs, 0), -EINVAL);
    assert_int_equal(vdfs_release(f->fs, ino, O_RDWR), 0);
    assert_int_equal(vdfs_pwrite_back(f->fs, ino, runs, 1), -ESTALE); /* not open */
    free(a);
    free(b);
    free(data);
}

struct punch_job {
    struct fixture *f;
    uint32_t ino;
    atomic_bool done;
};

static void *punch_first_mib(void *arg)
{
    struct punch_job *j = arg;
    assert_int_equal(vdfs_fallocate(j->f->fs, j->ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, MIB), 0);
    atomic_store(&j->done, true);
    return NULL;
}

/* vdfs_direct_map never waits: it answers -EAGAIN while the committer
 * thread holds the volume lock for a periodic commit, so a call that
 * must succeed is retried for a while; one that must fail fails on
 * every try anyway. */
static int direct_map_retrying(struct fixture *f, uint32_t ino, uint64_t off, size_t len, bool write,
                               uint64_t *at)
{
    int rc = -EAGAIN;
    for (int tries = 0; tries < 2000 && rc == -EAGAIN; tries++) {
        rc = vdfs_direct_map(f->fs, ino, off, len, write, at);
        if (rc == -EAGAIN)
            nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
    }
    return rc;
}

/* vdfs_direct_map (I/O the caller issues on the device itself): only
 * reads, and writes of a file open for writing, inside the size and in
 * written, aligned blocks; the mapped offset holds the file's bytes; a
 * write applies its times first; the map stays pinned until
 * vdfs_direct_done, so a punch waits for the caller's I/O. */
static void test_direct_map(void **state)
{
    struct fixture *f = *state;
    uint32_t ino, align;
    uint8_t *data = written_file(f, 12, &ino);
    int dev = vdfs_direct_fd(f->fs, &align);
    assert_true(dev >= 0);
    uint64_t at;
    assert_int_equal(vdfs_direct_map(f->fs, ino, MIB, PAGE, false, &at), -EAGAIN); /* not open */

    assert_int_equal(vdfs_open(f->fs, ino, O_RDONLY), 0);
    assert_int_equal(vdfs_direct_map(f->fs, ino, MIB, PAGE, true, &at), -EAGAIN); /* not open for writing */
    assert_int_equal(direct_map_retrying(f, ino, MIB, PAGE, false, &at), 0);
    uint8_t *buf = aligned_alloc(PAGE, PAGE);
    assert_int_equal(pread(dev, buf, PAGE, (off_t)at), PAGE);
    vdfs_direct_done(f->fs, ino);
    assert_memory_equal(buf, data + MIB, PAGE);
    assert_int_equal(vdfs_release(f->fs, ino, O_RDONLY), 0);

    assert_int_equal(vdfs_open(f->fs, ino, O_RDWR), 0);
    struct vdfs_stat before;
    make_setuid_and_wait(f, ino, &before);
    assert_int_equal(direct_map_retrying(f, ino, 3 * MIB, PAGE, true, &at), 0);
    expect_write_applied(f, ino, &before);
    fixture_pattern(buf, PAGE, 13);
    assert_int_equal(pwrite(dev, buf, PAGE, (off_t)at), PAGE);
    vdfs_direct_done(f->fs, ino);
    fixture_expect(f, ino, buf, PAGE, 3 * MIB);

    assert_int_equal(vdfs_direct_map(f->fs, ino, 4 * MIB - PAGE, 2 * PAGE, false, &at), -EAGAIN); /* past the size */
    assert_int_equal(vdfs_direct_map(f->fs, ino, MIB, 0, false, &at), -EAGAIN);
    if (align > 1)
        assert_int_equal(vdfs_direct_map(f->fs, ino, MIB + 1, PAGE, false, &at), -EAGAIN);
    assert_int_equal(vdfs_fallocate(f->fs, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * MIB, MIB), 0);
    assert_int_equal(vdfs_direct_map(f->fs, ino, 2 * MIB, PAGE, false, &at), -EAGAIN); /* a hole */
    assert_int_equal(vdfs_direct_map(f->fs, ino, 2 * MIB - PAGE, 2 * PAGE, true, &at), -EAGAIN);

    /* Pinned: a punch of the mapped block waits for vdfs_direct_done. */
    assert_int_equal(direct_map_retrying(f, ino, 0, PAGE, false, &at), 0);
    struct punch_job job = {.f = f, .ino = ino};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, punch_first_mib, &job), 0);
    struct timespec wait = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
    nanosleep(&wait, NULL);
    assert_false(atomic_load(&job.done));
    vdfs_direct_done(f->fs, ino);
    pthread_join(t, NULL);
    assert_true(atomic_load(&job.done));
    assert_int_equal(vdfs_direct_map(f->fs, ino, 0, PAGE, false, &at), -EAGAIN); /* now a hole */

    /* The map follows the descriptor through every other path that
     * changes it (the open file keeps its decoded copy between calls):
     * cut short, a block that mapped is past the size; written again, it
     * maps to its new bytes. */
    assert_int_equal(direct_map_retrying(f, ino, 3 * MIB, PAGE, false, &at), 0);
    vdfs_direct_done(f->fs, ino);
    struct vdfs_setattr cut = {.valid = VDFS_SET_SIZE, .size = 2 * MIB};
    assert_int_equal(vdfs_setattr(f->fs, ino, &cut, NULL), 0);
    assert_int_equal(vdfs_direct_map(f->fs, ino, 3 * MIB, PAGE, false, &at), -EAGAIN);
    fixture_write(f, ino, data, 4 * MIB, 0);
    assert_int_equal(direct_map_retrying(f, ino, 3 * MIB, PAGE, false, &at), 0);
    assert_int_equal(pread(dev, buf, PAGE, (off_t)at), PAGE);
    vdfs_direct_done(f->fs, ino);
    assert_memory_equal(buf, data + 3 * MIB, PAGE);
    assert_int_equal(vdfs_release(f->fs, ino, O_RDWR), 0);

    uint32_t small = fixture_create(f, vdfs_root_ino(f->fs), "small", S_IFREG | 0644);
    fixture_write(f, small, data, 100, 0);
    assert_int_equal(vdfs_open(f->fs, small, O_RDONLY), 0);
    assert_int_equal(vdfs_direct_map(f->fs, small, 0, 100, false, &at), -EAGAIN); /* resident in its descriptor */
    assert_int_equal(vdfs_release(f->fs, small, O_RDONLY), 0);
    free(buf);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parallel_io_with_truncate_and_punch, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_unaligned_overwrite_of_open_file, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_overwrite_cached_rules, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_pwrite_back, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_direct_map, setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

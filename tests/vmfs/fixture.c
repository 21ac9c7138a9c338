/* Test fixture: see fixture.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

static const char *tool(const char *var)
{
    const char *path = getenv(var);
    if (!path || !*path) {
        fprintf(stderr, "%s is not set: run these tests through meson\n", var);
        abort();
    }
    return path;
}

static int run(char *const argv[], bool quiet)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (quiet && !freopen("/dev/null", "w", stdout))
            _exit(127);
        if (!quiet && dup2(2, 1) < 0)
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status))
        return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return WEXITSTATUS(status);
}

void fixture_make(struct fixture *f, const char *size, const char *const *extra)
{
    memset(f, 0, sizeof(*f));
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/vdfs-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->image, sizeof(f->image), "%s/image", f->dir);
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)tool("VDFS_MKFS");
    argv[n++] = "-q";
    for (; extra && *extra && n < 28; extra++)
        argv[n++] = (char *)*extra;
    argv[n++] = f->image;
    argv[n++] = (char *)size;
    argv[n] = NULL;
    assert_int_equal(run(argv, true), 0);
}

void fixture_mount(struct fixture *f)
{
    struct vdfs_mount_opts o = {.host_uuid = TEST_HOST_UUID, .host_name = "unit-test"};
    assert_null(f->fs);
    int rc = vdfs_mount(f->image, &o, &f->fs);
    assert_int_equal(rc, 0);
}

void fixture_unmount(struct fixture *f)
{
    assert_non_null(f->fs);
    int rc = vdfs_unmount(f->fs);
    f->fs = NULL;
    assert_int_equal(rc, 0);
}

int fixture_fsck(const struct fixture *f)
{
    char *argv[] = {(char *)tool("VDFS_FSCK"), "-n", (char *)f->image, NULL};
    return run(argv, false);
}

void fixture_destroy(struct fixture *f)
{
    if (f->fs) {
        vdfs_unmount(f->fs);
        f->fs = NULL;
    }
    if (f->image[0])
        unlink(f->image);
    if (f->dir[0])
        rmdir(f->dir);
}

int fixture_setup(void **state, const char *size, const char *const *extra, bool mount)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    fixture_make(f, size, extra);
    if (mount)
        fixture_mount(f);
    *state = f;
    return 0;
}

int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    fixture_destroy(f);
    free(f);
    return 0;
}

uint32_t fixture_create(struct fixture *f, uint32_t dir, const char *name, uint32_t mode)
{
    struct vdfs_stat st;
    struct vdfs_cred cred = {0, 0};
    int rc = vdfs_create(f->fs, dir, name, mode, 0, &cred, &st);
    if (rc)
        fprintf(stderr, "create %s: %s\n", name, strerror(-rc));
    assert_int_equal(rc, 0);
    return st.ino;
}

void fixture_write(struct fixture *f, uint32_t ino, const void *buf, size_t len, uint64_t off)
{
    ssize_t n = vdfs_pwrite(f->fs, ino, buf, len, off);
    assert_int_equal(n, (ssize_t)len);
}

void fixture_expect(struct fixture *f, uint32_t ino, const void *buf, size_t len, uint64_t off)
{
    uint8_t *got = malloc(len);
    assert_non_null(got);
    ssize_t n = vdfs_pread(f->fs, ino, got, len, off);
    assert_int_equal(n, (ssize_t)len);
    assert_memory_equal(got, buf, len);
    free(got);
}

void fixture_expect_zeros(struct fixture *f, uint32_t ino, size_t len, uint64_t off)
{
    uint8_t *zeros = calloc(1, len);
    assert_non_null(zeros);
    fixture_expect(f, ino, zeros, len, off);
    free(zeros);
}

void fixture_pattern(void *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static void drop_message(int level, const char *msg, void *ctx)
{
    (void)level;
    (void)msg;
    (void)ctx;
}

void fixture_quiet_log(void)
{
    vdfs_set_logger(drop_message, NULL);
}

/* journal.c: committed work survives a clean unmount, and fsync'ed work
 * survives a host that dies without unmounting (replay at next mount). */
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

static int setup(void **state)
{
    const char *opts[] = {"-H", "2", NULL};
    return fixture_setup(state, "2G", opts, false);
}

enum { FILES = 200 };

static void populate(struct fixture *f, uint32_t *dir_out)
{
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t dir = fixture_create(f, root, "work", S_IFDIR | 0755);
    char name[32], content[64];
    for (int i = 0; i < FILES; i++) {
        snprintf(name, sizeof(name), "file%03d", i);
        uint32_t ino = fixture_create(f, dir, name, S_IFREG | 0644);
        int n = snprintf(content, sizeof(content), "content of file %d", i);
        fixture_write(f, ino, content, (size_t)n, (uint64_t)i * 70000);
    }
    for (int i = 0; i < FILES; i += 3) {
        snprintf(name, sizeof(name), "file%03d", i);
        assert_int_equal(vdfs_unlink(f->fs, dir, name), 0);
    }
    assert_int_equal(vdfs_rename(f->fs, dir, "file001", root, "moved", 0), 0);
    *dir_out = dir;
}

static void verify(struct fixture *f)
{
    struct vdfs_stat st, dst;
    uint32_t root = vdfs_root_ino(f->fs);
    assert_int_equal(vdfs_lookup(f->fs, root, "work", &dst), 0);
    assert_int_equal(vdfs_lookup(f->fs, root, "moved", &st), 0);
    char name[32], content[64];
    for (int i = 2; i < FILES; i++) {
        snprintf(name, sizeof(name), "file%03d", i);
        int rc = vdfs_lookup(f->fs, dst.ino, name, &st);
        if (i % 3 == 0) {
            assert_int_equal(rc, -ENOENT);
            continue;
        }
        assert_int_equal(rc, 0);
        int n = snprintf(content, sizeof(content), "content of file %d", i);
        assert_int_equal(st.size, (uint64_t)i * 70000 + (uint64_t)n);
        fixture_expect(f, st.ino, content, (size_t)n, (uint64_t)i * 70000);
    }
}

static void test_clean_unmount_keeps_everything(void **state)
{
    struct fixture *f = *state;
    fixture_mount(f);
    uint32_t dir;
    populate(f, &dir);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
    verify(f);
    fixture_unmount(f);
}

/* The child is a host that dies right after fsync: no unmount, no final
 * commit, its heartbeat slot still LIVE.  The next mount must replay its
 * journal. */
static void test_replay_after_host_death(void **state)
{
    struct fixture *f = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct vdfs_mount_opts o = {.host_uuid = TEST_HOST_UUID, .commit_ms = 600000};
        struct vdfs *fs;
        if (vdfs_mount(f->image, &o, &fs))
            _exit(10);
        f->fs = fs;
        uint32_t dir;
        populate(f, &dir);
        struct vdfs_stat st;
        if (vdfs_lookup(fs, vdfs_root_ino(fs), "moved", &st) || vdfs_fsync(fs, st.ino, false))
            _exit(11);
        /* Work after the fsync may or may not survive, but must not
         * damage the volume. */
        struct vdfs_cred cred = {0, 0};
        vdfs_create(fs, dir, "after-fsync", S_IFREG | 0644, 0, &cred, &st);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    fixture_mount(f);
    verify(f);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
}

/* A block that held a journaled directory image, freed and then reused
 * for file data, must not get the old directory image back at replay. */
static int reuse_then_die(const char *image, char *data, size_t len)
{
    struct vdfs_mount_opts o = {.host_uuid = TEST_HOST_UUID, .commit_ms = 600000};
    struct vdfs *fs;
    struct vdfs_stat st, dir;
    if (vdfs_mount(image, &o, &fs))
        return 10;
    uint32_t root = vdfs_root_ino(fs);
    char name[32];
    if (vdfs_create(fs, root, "d", S_IFDIR | 0755, 0, NULL, &dir))
        return 11;
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "entry-%d", i);
        if (vdfs_create(fs, dir.ino, name, S_IFREG | 0644, 0, NULL, &st))
            return 12;
    }
    if (vdfs_fsync(fs, dir.ino, false))
        return 13;
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "entry-%d", i);
        if (vdfs_unlink(fs, dir.ino, name))
            return 14;
    }
    if (vdfs_rmdir(fs, root, "d") || vdfs_fsync(fs, root, false))
        return 15;
    /* Sub-block files reuse the directory's freed sub-block first. */
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "data-%d", i);
        if (vdfs_create(fs, root, name, S_IFREG | 0644, 0, NULL, &st) ||
            vdfs_pwrite(fs, st.ino, data, len, 0) != (ssize_t)len)
            return 16;
    }
    if (vdfs_fsync(fs, st.ino, false))
        return 17;
    return 0;
}

static void test_replay_never_overwrites_reused_directory_blocks(void **state)
{
    struct fixture *f = *state;
    enum { LEN = 8192 };
    char *data = malloc(LEN), *got = malloc(LEN);
    assert_non_null(data);
    assert_non_null(got);
    fixture_pattern(data, LEN, 77);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(reuse_then_die(f->image, data, LEN));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    fixture_mount(f);
    for (int i = 0; i < 4; i++) {
        char name[32];
        struct vdfs_stat st;
        snprintf(name, sizeof(name), "data-%d", i);
        assert_int_equal(vdfs_lookup(f->fs, vdfs_root_ino(f->fs), name, &st), 0);
        assert_int_equal(vdfs_pread(f->fs, st.ino, got, LEN, 0), LEN);
        assert_memory_equal(got, data, LEN);
    }
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    free(data);
    free(got);
}

/* A transaction larger than the journal's share is split into several
 * commits; all of it survives. */
static void test_many_operations_between_syncs(void **state)
{
    struct fixture *f = *state;
    fixture_mount(f);
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t dir = fixture_create(f, root, "many", S_IFDIR | 0755);
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "n%05d", i);
        uint32_t ino = fixture_create(f, dir, name, S_IFREG | 0600);
        assert_int_equal(vdfs_setxattr(f->fs, ino, "user.i", name, strlen(name), 0), 0);
    }
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
    char value[32];
    for (int i = 0; i < 5000; i += 97) {
        struct vdfs_stat st;
        snprintf(name, sizeof(name), "n%05d", i);
        assert_int_equal(vdfs_lookup(f->fs, dir, name, &st), 0);
        assert_int_equal(vdfs_getxattr(f->fs, st.ino, "user.i", value, sizeof(value)), (ssize_t)strlen(name));
        assert_memory_equal(value, name, strlen(name));
    }
    fixture_unmount(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clean_unmount_keeps_everything, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_replay_after_host_death, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_many_operations_between_syncs, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_replay_never_overwrites_reused_directory_blocks, setup,
                                        fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

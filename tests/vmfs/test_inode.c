/* The attribute operations of inode.c: mode, owner, nanosecond times,
 * setgid inheritance, special files, open/unlink lifetime. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "fixture.h"

static int setup(void **state)
{
    const char *opts[] = {"-H", "2", NULL};
    return fixture_setup(state, "1G", opts, true);
}

static void test_attributes_survive_remount(void **state)
{
    struct fixture *f = *state;
    uint32_t ino = fixture_create(f, vdfs_root_ino(f->fs), "file", S_IFREG | 0644);
    struct vdfs_setattr sa = {
        .valid = VDFS_SET_MODE | VDFS_SET_UID | VDFS_SET_GID | VDFS_SET_ATIME | VDFS_SET_MTIME,
        .mode = 04751,
        .uid = 1234,
        .gid = 5678,
        .atime = {.tv_sec = 1000000001, .tv_nsec = 123456789},
        .mtime = {.tv_sec = 2000000002, .tv_nsec = 987654321},
    };
    struct vdfs_stat st;
    assert_int_equal(vdfs_setattr(f->fs, ino, &sa, &st), 0);
    assert_int_equal(st.mode, S_IFREG | 04751);
    fixture_unmount(f);
    fixture_mount(f);
    assert_int_equal(vdfs_getattr(f->fs, ino, &st), 0);
    assert_int_equal(st.mode, S_IFREG | 04751);
    assert_int_equal(st.uid, 1234);
    assert_int_equal(st.gid, 5678);
    assert_int_equal(st.atime.tv_sec, 1000000001);
    assert_int_equal(st.atime.tv_nsec, 123456789);
    assert_int_equal(st.mtime.tv_sec, 2000000002);
    assert_int_equal(st.mtime.tv_nsec, 987654321);
    assert_true(st.ctime.tv_sec > 1600000000);
    /* The file type cannot be changed through the mode. */
    sa = (struct vdfs_setattr){.valid = VDFS_SET_MODE, .mode = S_IFDIR | 0700};
    assert_int_equal(vdfs_setattr(f->fs, ino, &sa, &st), 0);
    assert_int_equal(st.mode, S_IFREG | 0700);
}

static void test_setgid_directory_passes_gid_on(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t dir = fixture_create(f, root, "shared", S_IFDIR | 0775);
    struct vdfs_setattr sa = {.valid = VDFS_SET_MODE | VDFS_SET_GID, .mode = 02775, .gid = 300};
    struct vdfs_stat st;
    assert_int_equal(vdfs_setattr(f->fs, dir, &sa, &st), 0);
    struct vdfs_cred cred = {.uid = 1000, .gid = 1000};
    assert_int_equal(vdfs_create(f->fs, dir, "f", S_IFREG | 0644, 0, &cred, &st), 0);
    assert_int_equal(st.uid, 1000);
    assert_int_equal(st.gid, 300);
    assert_int_equal(vdfs_create(f->fs, dir, "sub", S_IFDIR | 0755, 0, &cred, &st), 0);
    assert_int_equal(st.gid, 300);
    assert_true(st.mode & S_ISGID);
    /* Outside it, the creator's gid applies. */
    assert_int_equal(vdfs_create(f->fs, root, "g", S_IFREG | 0644, 0, &cred, &st), 0);
    assert_int_equal(st.gid, 1000);
}

static void test_special_files(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    struct vdfs_cred cred = {0, 0};
    struct vdfs_stat st;
    assert_int_equal(vdfs_create(f->fs, root, "fifo", S_IFIFO | 0600, 0, &cred, &st), 0);
    assert_true(S_ISFIFO(st.mode));
    assert_int_equal(vdfs_create(f->fs, root, "null", S_IFCHR | 0666, makedev(1, 3), &cred, &st), 0);
    uint32_t chr = st.ino;
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
    assert_int_equal(vdfs_getattr(f->fs, chr, &st), 0);
    assert_true(S_ISCHR(st.mode));
    assert_int_equal(st.rdev, makedev(1, 3));
    struct vdfs_setattr sa = {.valid = VDFS_SET_SIZE, .size = 10};
    assert_int_equal(vdfs_setattr(f->fs, root, &sa, &st), -EISDIR);
}

static void test_open_file_outlives_unlink(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t ino = fixture_create(f, root, "tmp", S_IFREG | 0644);
    uint8_t data[200000];
    fixture_pattern(data, sizeof(data), 9);
    fixture_write(f, ino, data, sizeof(data), 0);
    assert_int_equal(vdfs_open(f->fs, ino, O_RDWR), 0);
    assert_int_equal(vdfs_unlink(f->fs, root, "tmp"), 0);
    struct vdfs_stat st;
    assert_int_equal(vdfs_lookup(f->fs, root, "tmp", &st), -ENOENT);
    fixture_expect(f, ino, data, sizeof(data), 0);
    fixture_write(f, ino, "more", 4, sizeof(data));
    assert_int_equal(vdfs_getattr(f->fs, ino, &st), 0);
    assert_int_equal(st.nlink, 0);
    assert_int_equal(vdfs_release(f->fs, ino, O_RDWR), 0);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
    struct vdfs_statfs sf;
    assert_int_equal(vdfs_statfs(f->fs, &sf), 0);
    assert_int_equal(sf.free_files, sf.total_files - 2); /* root and lost+found */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_attributes_survive_remount, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_setgid_directory_passes_gid_on, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_special_files, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_open_file_outlives_unlink, setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

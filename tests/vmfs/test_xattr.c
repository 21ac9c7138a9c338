/* xattr.c through the public API. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fixture.h"

static int setup(void **state)
{
    const char *opts[] = {"-H", "2", NULL};
    return fixture_setup(state, "1G", opts, true);
}

static void test_set_get_list_remove(void **state)
{
    struct fixture *f = *state;
    uint32_t ino = fixture_create(f, vdfs_root_ino(f->fs), "file", S_IFREG | 0644);
    char buf[256];
    assert_int_equal(vdfs_setxattr(f->fs, ino, "user.a", "alpha", 5, 0), 0);
    assert_int_equal(vdfs_setxattr(f->fs, ino, "trusted.b", "", 0, 0), 0);
    assert_int_equal(vdfs_setxattr(f->fs, ino, "security.c", "gamma!", 6, 0), 0);
    assert_int_equal(vdfs_getxattr(f->fs, ino, "user.a", NULL, 0), 5);
    assert_int_equal(vdfs_getxattr(f->fs, ino, "user.a", buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "alpha", 5);
    assert_int_equal(vdfs_getxattr(f->fs, ino, "trusted.b", buf, sizeof(buf)), 0);
    const char names[] = "user.a\0trusted.b\0security.c";
    assert_int_equal(vdfs_listxattr(f->fs, ino, NULL, 0), sizeof(names));
    assert_int_equal(vdfs_listxattr(f->fs, ino, buf, sizeof(buf)), sizeof(names));
    assert_memory_equal(buf, names, sizeof(names));
    /* Replacing keeps one copy with the new value. */
    assert_int_equal(vdfs_setxattr(f->fs, ino, "user.a", "A longer value", 14, 0), 0);
    assert_int_equal(vdfs_getxattr(f->fs, ino, "user.a", buf, sizeof(buf)), 14);
    assert_memory_equal(buf, "A longer value", 14);
    assert_int_equal(vdfs_listxattr(f->fs, ino, NULL, 0), sizeof(names));
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
    assert_int_equal(vdfs_getxattr(f->fs, ino, "security.c", buf, sizeof(buf)), 6);
    assert_memory_equal(buf, "gamma!", 6);
    assert_int_equal(vdfs_removexattr(f->fs, ino, "trusted.b"), 0);
    assert_int_equal(vdfs_getxattr(f->fs, ino, "trusted.b", buf, sizeof(buf)), -ENODATA);
    assert_int_equal(vdfs_removexattr(f->fs, ino, "trusted.b"), -ENODATA);
    assert_int_equal(vdfs_listxattr(f->fs, ino, NULL, 0), strlen("user.a") + strlen("security.c") + 2);
}

static void test_flags_and_errors(void **state)
{
    struct fixture *f = *state;
    uint32_t ino = fixture_create(f, vdfs_root_ino(f->fs), "file", S_IFREG | 0644);
    char buf[64];
    assert_int_equal(vdfs_setxattr(f->fs, ino, "user.k", "v1", 2, VDFS_XATTR_REPLACE), -ENODATA);
    assert_int_equal(vdfs_setxattr(f->fs, ino, "user.k", "v1", 2, VDFS_XATTR_CREATE), 0);
    assert_int_equal(vdfs_setxattr(f->fs, ino, "user.k", "v2", 2, VDFS_XATTR_CREATE), -EEXIST);
    assert_int_equal(vdfs_setxattr(f->fs, ino, "user.k", "v3", 2, VDFS_XATTR_REPLACE), 0);
    assert_int_equal(vdfs_getxattr(f->fs, ino, "user.k", buf, sizeof(buf)), 2);
    assert_memory_equal(buf, "v3", 2);
    assert_int_equal(vdfs_getxattr(f->fs, ino, "user.k", buf, 1), -ERANGE);
    assert_int_equal(vdfs_listxattr(f->fs, ino, buf, 3), -ERANGE);
    assert_int_equal(vdfs_setxattr(f->fs, ino, "unknown.k", "v", 1, 0), -EOPNOTSUPP);
    assert_int_equal(vdfs_setxattr(f->fs, ino, "nonamespace", "v", 1, 0), -EOPNOTSUPP);
    /* No POSIX ACLs (xattr.c): stored, they would not be enforced. */
    assert_int_equal(vdfs_setxattr(f->fs, ino, "system.posix_acl_access", "\2\0\0\0", 4, 0), -EOPNOTSUPP);
    assert_int_equal(vdfs_setxattr(f->fs, ino, "system.posix_acl_default", "\2\0\0\0", 4, 0), -EOPNOTSUPP);
    assert_int_equal(vdfs_setxattr(f->fs, ino, "system.other", "v", 1, 0), 0);
    assert_int_equal(vdfs_getxattr(f->fs, ino, "user.missing", buf, sizeof(buf)), -ENODATA);
}

static void test_area_full_is_enospc(void **state)
{
    struct fixture *f = *state;
    uint32_t ino = fixture_create(f, vdfs_root_ino(f->fs), "file", S_IFREG | 0644);
    char value[100], name[32];
    memset(value, 'v', sizeof(value));
    int stored = 0, rc = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "user.n%02d", i);
        rc = vdfs_setxattr(f->fs, ino, name, value, sizeof(value), 0);
        if (rc)
            break;
        stored++;
    }
    assert_int_equal(rc, -ENOSPC);
    /* Each takes 3 + 8 + 100 bytes of the 1 KiB area. */
    assert_int_equal(stored, 1024 / 111);
    /* Everything stored is intact, and removing one makes room again. */
    char buf[128];
    for (int i = 0; i < stored; i++) {
        snprintf(name, sizeof(name), "user.n%02d", i);
        assert_int_equal(vdfs_getxattr(f->fs, ino, name, buf, sizeof(buf)), sizeof(value));
        assert_memory_equal(buf, value, sizeof(value));
    }
    assert_int_equal(vdfs_removexattr(f->fs, ino, "user.n00"), 0);
    assert_int_equal(vdfs_setxattr(f->fs, ino, "user.new", value, sizeof(value), 0), 0);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
    assert_int_equal(vdfs_getxattr(f->fs, ino, "user.new", buf, sizeof(buf)), sizeof(value));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_set_get_list_remove, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_flags_and_errors, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_area_full_is_enospc, setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

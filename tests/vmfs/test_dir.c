/* dir.c and the namespace operations of inode.c: large hashed directories,
 * name limits, rename flavours, link counts and symlinks. */
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
    const char *opts[] = {"-H", "2", "-N", "32768", NULL};
    return fixture_setup(state, "2G", opts, true);
}

struct count_ctx {
    uint64_t entries;
    bool dot, dotdot;
};

static int count_entry(void *ctx, const char *name, uint32_t ino, uint32_t mode, uint64_t next)
{
    struct count_ctx *c = ctx;
    (void)ino;
    (void)mode;
    (void)next;
    if (!strcmp(name, "."))
        c->dot = true;
    else if (!strcmp(name, ".."))
        c->dotdot = true;
    else
        c->entries++;
    return 0;
}

static uint64_t count_entries(struct fixture *f, uint32_t dir)
{
    struct count_ctx c = {0};
    assert_int_equal(vdfs_readdir(f->fs, dir, 0, count_entry, &c), 0);
    assert_true(c.dot && c.dotdot);
    return c.entries;
}

static struct vdfs_stat stat_of(struct fixture *f, uint32_t ino)
{
    struct vdfs_stat st;
    assert_int_equal(vdfs_getattr(f->fs, ino, &st), 0);
    return st;
}

static void test_twenty_thousand_entries(void **state)
{
    struct fixture *f = *state;
    enum { N = 20000 };
    uint32_t dir = fixture_create(f, vdfs_root_ino(f->fs), "big", S_IFDIR | 0755);
    uint32_t *inos = malloc(N * sizeof(*inos));
    char name[64];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "entry-%05d-with-a-longer-name", i);
        inos[i] = fixture_create(f, dir, name, S_IFREG | 0644);
    }
    for (int i = 0; i < N; i++) {
        struct vdfs_stat st;
        snprintf(name, sizeof(name), "entry-%05d-with-a-longer-name", i);
        assert_int_equal(vdfs_lookup(f->fs, dir, name, &st), 0);
        assert_int_equal(st.ino, inos[i]);
    }
    assert_int_equal(count_entries(f, dir), N);
    for (int i = 0; i < N; i += 2) {
        snprintf(name, sizeof(name), "entry-%05d-with-a-longer-name", i);
        assert_int_equal(vdfs_unlink(f->fs, dir, name), 0);
    }
    assert_int_equal(count_entries(f, dir), N / 2);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
    assert_int_equal(count_entries(f, dir), N / 2);
    for (int i = 0; i < N; i++) {
        struct vdfs_stat st;
        snprintf(name, sizeof(name), "entry-%05d-with-a-longer-name", i);
        int rc = vdfs_lookup(f->fs, dir, name, &st);
        assert_int_equal(rc, i % 2 ? 0 : -ENOENT);
    }
    free(inos);
}

/* A directory bigger than one file block (1 MiB of directory blocks) moves
 * out of its sub-blocks; every entry must survive the move, a remount and
 * fsck.  250-byte names fill a block with 15 entries, so 4500 entries take
 * 300 blocks. */
static void test_directory_outgrows_sub_blocks(void **state)
{
    struct fixture *f = *state;
    enum { N = 4500 };
    uint32_t dir = fixture_create(f, vdfs_root_ino(f->fs), "wide", S_IFDIR | 0755);
    char name[256];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "%05d-%0244d", i, 0);
        fixture_create(f, dir, name, S_IFREG | 0644);
    }
    assert_true(stat_of(f, dir).size > 1024 * 1024);
    assert_int_equal(count_entries(f, dir), N);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
    assert_int_equal(count_entries(f, dir), N);
    for (int i = 0; i < N; i++) {
        struct vdfs_stat st;
        snprintf(name, sizeof(name), "%05d-%0244d", i, 0);
        assert_int_equal(vdfs_lookup(f->fs, dir, name, &st), 0);
        if (i % 3 == 0)
            assert_int_equal(vdfs_unlink(f->fs, dir, name), 0);
    }
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
}

struct one_entry {
    uint64_t next;
    bool got;
};

static int take_one(void *ctx, const char *name, uint32_t ino, uint32_t mode, uint64_t next)
{
    struct one_entry *o = ctx;
    (void)name;
    (void)ino;
    (void)mode;
    o->next = next;
    o->got = true;
    return 1;
}

static void test_readdir_resumes_from_cookie(void **state)
{
    struct fixture *f = *state;
    uint32_t dir = fixture_create(f, vdfs_root_ino(f->fs), "d", S_IFDIR | 0755);
    char name[32];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        fixture_create(f, dir, name, S_IFREG | 0644);
    }
    /* One entry per call, as FUSE may ask: every name is seen exactly once. */
    uint64_t cookie = 0;
    int seen = 0;
    for (int calls = 0; calls < 1000; calls++) {
        struct one_entry o = {0, false};
        assert_int_equal(vdfs_readdir(f->fs, dir, cookie, take_one, &o), 0);
        if (!o.got)
            break;
        assert_true(o.next > cookie);
        cookie = o.next;
        seen++;
    }
    assert_int_equal(seen, 302);
}

static void test_name_length_limits(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    char name[258];
    memset(name, 'n', 255);
    name[255] = 0;
    uint32_t ino = fixture_create(f, root, name, S_IFREG | 0644);
    struct vdfs_stat st;
    assert_int_equal(vdfs_lookup(f->fs, root, name, &st), 0);
    assert_int_equal(st.ino, ino);
    memset(name, 'm', 256);
    name[256] = 0;
    struct vdfs_cred cred = {0, 0};
    assert_int_equal(vdfs_create(f->fs, root, name, S_IFREG | 0644, 0, &cred, &st), -ENAMETOOLONG);
    assert_int_equal(vdfs_lookup(f->fs, root, name, &st), -ENAMETOOLONG);
    assert_int_equal(vdfs_create(f->fs, root, "", S_IFREG | 0644, 0, &cred, &st), -ENOENT);
    assert_int_equal(vdfs_create(f->fs, root, "a/b", S_IFREG | 0644, 0, &cred, &st), -EINVAL);
}

static void test_rename_flavours(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t a = fixture_create(f, root, "a", S_IFDIR | 0755);
    uint32_t b = fixture_create(f, root, "b", S_IFDIR | 0755);
    uint32_t x = fixture_create(f, a, "x", S_IFREG | 0644);
    uint32_t y = fixture_create(f, a, "y", S_IFREG | 0644);
    fixture_write(f, x, "xx", 2, 0);
    struct vdfs_stat st;

    assert_int_equal(vdfs_rename(f->fs, a, "x", a, "x2", 0), 0);
    assert_int_equal(vdfs_lookup(f->fs, a, "x", &st), -ENOENT);
    assert_int_equal(vdfs_lookup(f->fs, a, "x2", &st), 0);
    assert_int_equal(st.ino, x);

    assert_int_equal(vdfs_rename(f->fs, a, "x2", b, "x3", 0), 0);
    assert_int_equal(vdfs_lookup(f->fs, b, "x3", &st), 0);
    assert_int_equal(st.ino, x);
    assert_int_equal(vdfs_lookup(f->fs, a, "x2", &st), -ENOENT);

    assert_int_equal(vdfs_rename(f->fs, a, "y", b, "x3", VDFS_RENAME_NOREPLACE), -EEXIST);
    assert_int_equal(vdfs_rename(f->fs, a, "y", b, "x3", VDFS_RENAME_EXCHANGE), 0);
    assert_int_equal(vdfs_lookup(f->fs, b, "x3", &st), 0);
    assert_int_equal(st.ino, y);
    assert_int_equal(vdfs_lookup(f->fs, a, "y", &st), 0);
    assert_int_equal(st.ino, x);
    assert_int_equal(vdfs_rename(f->fs, a, "nothing", b, "x3", VDFS_RENAME_EXCHANGE), -ENOENT);
    assert_int_equal(vdfs_rename(f->fs, a, "y", b, "none", VDFS_RENAME_EXCHANGE), -ENOENT);

    /* Replacing a file drops the old target. */
    assert_int_equal(vdfs_rename(f->fs, a, "y", b, "x3", 0), 0);
    assert_int_equal(vdfs_lookup(f->fs, b, "x3", &st), 0);
    assert_int_equal(st.ino, x);

    /* Directories: moving changes both parents' link counts. */
    uint32_t sub = fixture_create(f, a, "sub", S_IFDIR | 0755);
    uint32_t deeper = fixture_create(f, sub, "deeper", S_IFDIR | 0755);
    assert_int_equal(vdfs_rename(f->fs, root, "a", deeper, "a", 0), -EINVAL);
    assert_int_equal(vdfs_rename(f->fs, root, "a", a, "self", 0), -EINVAL);
    assert_int_equal(stat_of(f, a).nlink, 3);
    assert_int_equal(vdfs_rename(f->fs, a, "sub", b, "sub", 0), 0);
    assert_int_equal(stat_of(f, a).nlink, 2);
    assert_int_equal(stat_of(f, b).nlink, 3);
    struct vdfs_stat dd;
    assert_int_equal(vdfs_lookup(f->fs, sub, "..", &dd), 0);
    assert_int_equal(dd.ino, b);
    /* A directory replaces only an empty directory. */
    fixture_create(f, a, "empty", S_IFDIR | 0755);
    assert_int_equal(vdfs_rename(f->fs, b, "sub", a, "empty", 0), 0);
    assert_int_equal(stat_of(f, a).nlink, 3);
    assert_int_equal(stat_of(f, b).nlink, 2);
    fixture_create(f, b, "full", S_IFDIR | 0755);
    assert_int_equal(vdfs_rename(f->fs, b, "full", a, "empty", 0), -ENOTEMPTY);
    assert_int_equal(vdfs_rename(f->fs, b, "x3", a, "empty", 0), -EISDIR);
    assert_int_equal(vdfs_rename(f->fs, a, "empty", b, "x3", 0), -ENOTDIR);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
}

static void test_remove_errors(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t d = fixture_create(f, root, "d", S_IFDIR | 0755);
    fixture_create(f, d, "inside", S_IFREG | 0644);
    fixture_create(f, root, "file", S_IFREG | 0644);
    struct vdfs_cred cred = {0, 0};
    struct vdfs_stat st;
    assert_int_equal(vdfs_rmdir(f->fs, root, "d"), -ENOTEMPTY);
    assert_int_equal(vdfs_unlink(f->fs, root, "d"), -EISDIR);
    assert_int_equal(vdfs_rmdir(f->fs, root, "file"), -ENOTDIR);
    assert_int_equal(vdfs_create(f->fs, root, "d", S_IFDIR | 0755, 0, &cred, &st), -EEXIST);
    assert_int_equal(vdfs_create(f->fs, root, "file", S_IFREG | 0644, 0, &cred, &st), -EEXIST);
    assert_int_equal(vdfs_unlink(f->fs, root, "missing"), -ENOENT);
    assert_int_equal(vdfs_create(f->fs, d, "x", S_IFLNK | 0777, 0, &cred, &st), -EINVAL);
    assert_int_equal(vdfs_unlink(f->fs, d, "inside"), 0);
    assert_int_equal(vdfs_rmdir(f->fs, root, "d"), 0);
    assert_int_equal(vdfs_lookup(f->fs, root, "d", &st), -ENOENT);
    assert_int_equal(stat_of(f, root).nlink, 3); /* only lost+found is left */
}

static void test_hard_links_and_dir_nlink(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t d = fixture_create(f, root, "d", S_IFDIR | 0755);
    assert_int_equal(stat_of(f, d).nlink, 2);
    fixture_create(f, d, "s1", S_IFDIR | 0755);
    fixture_create(f, d, "s2", S_IFDIR | 0755);
    uint32_t file = fixture_create(f, d, "f", S_IFREG | 0644);
    assert_int_equal(stat_of(f, d).nlink, 4);
    fixture_write(f, file, "linked", 6, 0);
    struct vdfs_stat st;
    assert_int_equal(vdfs_link(f->fs, file, root, "l1", &st), 0);
    assert_int_equal(st.nlink, 2);
    assert_int_equal(vdfs_link(f->fs, file, d, "l2", &st), 0);
    assert_int_equal(stat_of(f, file).nlink, 3);
    assert_int_equal(vdfs_link(f->fs, file, d, "l2", &st), -EEXIST);
    assert_int_equal(vdfs_link(f->fs, d, root, "dirlink", &st), -EPERM);
    assert_int_equal(vdfs_unlink(f->fs, d, "f"), 0);
    assert_int_equal(stat_of(f, file).nlink, 2);
    fixture_expect(f, file, "linked", 6, 0);
    assert_int_equal(vdfs_rmdir(f->fs, d, "s1"), 0);
    assert_int_equal(stat_of(f, d).nlink, 3);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
    assert_int_equal(stat_of(f, file).nlink, 2);
    assert_int_equal(stat_of(f, d).nlink, 3);
    assert_int_equal(vdfs_unlink(f->fs, root, "l1"), 0);
    assert_int_equal(vdfs_unlink(f->fs, d, "l2"), 0);
    assert_int_equal(vdfs_sync(f->fs), 0);
    assert_int_equal(vdfs_getattr(f->fs, file, &st), -ENOENT);
}

/* Once the last name of a closed file is gone, its descriptor is free at
 * once, not only after the next journal commit: a stale ino must not read
 * the old attributes, accept writes (which would allocate blocks to a
 * freed descriptor) or be linked back into the tree. */
static void test_deleted_descriptor_is_gone_at_once(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t ino = fixture_create(f, root, "victim", S_IFREG | 0644);
    fixture_write(f, ino, "data", 4, 0);
    assert_int_equal(vdfs_sync(f->fs), 0);
    assert_int_equal(vdfs_unlink(f->fs, root, "victim"), 0);
    struct vdfs_stat st;
    assert_int_equal(vdfs_getattr(f->fs, ino, &st), -ENOENT);
    uint8_t block[4096] = {1};
    assert_int_equal(vdfs_pwrite(f->fs, ino, block, sizeof(block), 1 << 20), -ENOENT);
    assert_int_equal(vdfs_link(f->fs, ino, root, "revived", &st), -ENOENT);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
}

static void test_symlinks(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    struct vdfs_cred cred = {0, 0};
    struct vdfs_stat st;
    char target[3001], got[4096];
    for (int i = 0; i < 3000; i++)
        target[i] = (char)('a' + i % 26);
    target[3000] = 0;
    assert_int_equal(vdfs_symlink(f->fs, root, "short", "dir/file", &cred, &st), 0);
    uint32_t s = st.ino;
    assert_true(S_ISLNK(st.mode));
    assert_int_equal(st.size, 8);
    assert_int_equal(vdfs_symlink(f->fs, root, "long", target, &cred, &st), 0);
    uint32_t l = st.ino;
    assert_int_equal(st.size, 3000);
    assert_int_equal(vdfs_symlink(f->fs, root, "short", "other", &cred, &st), -EEXIST);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
    assert_int_equal(vdfs_readlink(f->fs, s, got, sizeof(got)), 8);
    assert_memory_equal(got, "dir/file", 8);
    assert_int_equal(vdfs_readlink(f->fs, l, got, sizeof(got)), 3000);
    assert_memory_equal(got, target, 3000);
    assert_int_equal(vdfs_readlink(f->fs, root, got, sizeof(got)), -EINVAL);
    /* Resolution follows a symlink in the middle of a path. */
    uint32_t dir = fixture_create(f, root, "dir", S_IFDIR | 0755);
    uint32_t file = fixture_create(f, dir, "file", S_IFREG | 0644);
    assert_int_equal(vdfs_symlink(f->fs, root, "todir", "dir", &cred, &st), 0);
    assert_int_equal(vdfs_resolve(f->fs, "/todir/file", false, &st), 0);
    assert_int_equal(st.ino, file);
    assert_int_equal(vdfs_resolve(f->fs, "/short", true, &st), 0);
    assert_int_equal(st.ino, file);
    assert_int_equal(vdfs_resolve(f->fs, "/short", false, &st), 0);
    assert_int_equal(st.ino, s);
}

static int setup_small_blocks(void **state)
{
    /* 16 KiB file blocks of 4 KiB sub-blocks: a directory outgrows its
     * sub-blocks at its fifth 4 KiB block. */
    const char *opts[] = {"-H", "2", "-b", "16K", "-s", "4K", NULL};
    return fixture_setup(state, "256M", opts, true);
}

/* One file block left when a directory outgrows its sub-blocks: the move
 * into that block succeeds and the new block after it finds no space.
 * The failed create must leave the moved directory described where it
 * is (its old sub-blocks are freed, and a commit for space follows at
 * once): every earlier entry stays listed, and the image checks clean. */
static void test_directory_move_then_no_space(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t dir = fixture_create(f, root, "d", S_IFDIR | 0755);
    uint32_t big = fixture_create(f, root, "big", S_IFREG | 0644);
    struct vdfs_statfs sf;
    assert_int_equal(vdfs_statfs(f->fs, &sf), 0);
    assert_true(sf.free_blocks > 1);
    assert_int_equal(vdfs_fallocate(f->fs, big, 0, 0, (sf.free_blocks - 1) * vdfs_block_size(f->fs)), 0);
    struct vdfs_stat st;
    struct vdfs_cred cred = {0, 0};
    char name[64];
    unsigned made = 0;
    int rc;
    for (;; made++) {
        snprintf(name, sizeof(name), "entry-with-a-longish-name-%05u", made);
        rc = vdfs_create(f->fs, dir, name, S_IFREG | 0644, 0, &cred, &st);
        if (rc)
            break;
    }
    assert_int_equal(rc, -ENOSPC);
    assert_int_equal(stat_of(f, dir).size, 4 * 4096);
    assert_int_equal(count_entries(f, dir), made);
    snprintf(name, sizeof(name), "entry-with-a-longish-name-%05u", made - 1);
    assert_int_equal(vdfs_lookup(f->fs, dir, name, &st), 0);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
    assert_int_equal(count_entries(f, dir), made);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_twenty_thousand_entries, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_directory_outgrows_sub_blocks, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_directory_move_then_no_space, setup_small_blocks, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_readdir_resumes_from_cookie, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_name_length_limits, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_rename_flavours, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_remove_errors, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_hard_links_and_dir_nlink, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_symlinks, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_deleted_descriptor_is_gone_at_once, setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

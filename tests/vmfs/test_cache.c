/* cache.c and format.c verification on read: a corrupt descriptor is EIO
 * for that object alone; the rest of the volume keeps working. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "format.h"

static int setup(void **state)
{
    const char *opts[] = {"-H", "2", NULL};
    fixture_quiet_log();
    return fixture_setup(state, "1G", opts, true);
}

static void flip_byte(const char *image, uint64_t addr)
{
    int fd = open(image, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)addr), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)addr), 1);
    close(fd);
}

static uint64_t fd_addr_on_image(const char *image, uint32_t ino)
{
    int fd = open(image, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t raw[VDFS_META_SIZE];
    assert_int_equal(pread(fd, raw, sizeof(raw), VDFS_SUPER_OFFSET), sizeof(raw));
    close(fd);
    struct vdfs_super sb;
    assert_int_equal(vdfs_super_decode(raw, VDFS_SUPER_OFFSET, &sb), 0);
    return vdfs_fd_addr(&sb, ino);
}

static void test_corrupt_descriptor_is_eio_alone(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t bad = fixture_create(f, root, "bad", S_IFREG | 0644);
    uint32_t good = fixture_create(f, root, "good", S_IFREG | 0644);
    fixture_write(f, bad, "bad data", 8, 0);
    fixture_write(f, good, "good data", 9, 0);
    fixture_unmount(f);
    flip_byte(f->image, fd_addr_on_image(f->image, bad) + 100);
    fixture_mount(f);
    struct vdfs_stat st;
    char buf[16];
    assert_int_equal(vdfs_getattr(f->fs, bad, &st), -EIO);
    assert_int_equal(vdfs_lookup(f->fs, root, "bad", &st), -EIO);
    assert_int_equal(vdfs_pread(f->fs, bad, buf, sizeof(buf), 0), -EIO);
    assert_int_equal(vdfs_pwrite(f->fs, bad, "x", 1, 0), -EIO);
    assert_int_equal(vdfs_setxattr(f->fs, bad, "user.x", "1", 1, 0), -EIO);
    assert_int_equal(vdfs_unlink(f->fs, root, "bad"), -EIO);
    /* The rest works. */
    assert_int_equal(vdfs_lookup(f->fs, root, "good", &st), 0);
    fixture_expect(f, good, "good data", 9, 0);
    fixture_write(f, good, "!", 1, 9);
    uint32_t fresh = fixture_create(f, root, "fresh", S_IFREG | 0644);
    fixture_write(f, fresh, "new", 3, 0);
    struct vdfs_usage u;
    assert_int_equal(vdfs_usage(f->fs, &u), 0);
    fixture_unmount(f);
    /* fsck names the damage (exit 4: errors left uncorrected). */
    assert_int_equal(fixture_fsck(f), 4);
    fixture_mount(f);
    fixture_expect(f, good, "good data!", 10, 0);
    fixture_expect(f, fresh, "new", 3, 0);
}

/* A descriptor read ahead with its neighbours: the neighbours' images
 * come from the device, but one this host changed and has not committed
 * yet is only in the cache, and must stay the one every load sees. */
static void test_readahead_keeps_uncommitted_descriptor(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t ino[8];
    char name[8];
    for (unsigned i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "f%u", i);
        ino[i] = fixture_create(f, root, name, S_IFREG | 0644);
    }
    for (unsigned i = 1; i < 8; i++)
        assert_int_equal(ino[i], ino[0] + i); /* neighbours on the device */
    fixture_unmount(f);
    fixture_mount(f); /* nothing cached */
    struct vdfs_setattr sa = {.valid = VDFS_SET_MODE, .mode = S_IFREG | 0600};
    struct vdfs_stat st;
    assert_int_equal(vdfs_setattr(f->fs, ino[5], &sa, &st), 0); /* reads ahead from f5, then dirties it */
    assert_int_equal(vdfs_getattr(f->fs, ino[2], &st), 0);     /* reads ahead from f2, over f5 */
    assert_int_equal(vdfs_getattr(f->fs, ino[5], &st), 0);
    assert_int_equal(st.mode & 07777, 0600);
    fixture_unmount(f);
    fixture_mount(f);
    assert_int_equal(vdfs_getattr(f->fs, ino[5], &st), 0);
    assert_int_equal(st.mode & 07777, 0600);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_corrupt_descriptor_is_eio_alone, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_readahead_keeps_uncommitted_descriptor, setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

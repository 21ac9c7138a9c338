/* alloc.c: filling the volume ends in ENOSPC, leaves it consistent, and
 * freeing space makes writes work again. */
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

static void test_fill_until_enospc(void **state)
{
    (void)state;
    struct fixture f;
    const char *opts[] = {"-H", "2", "-J", "4M", NULL};
    fixture_make(&f, "256M", opts);
    fixture_mount(&f);
    uint32_t root = vdfs_root_ino(f.fs);
    size_t chunk = 1 << 20;
    uint8_t *buf = malloc(chunk);
    fixture_pattern(buf, chunk, 11);
    ssize_t rc = 0;
    int files = 0;
    uint64_t written = 0;
    char name[32];
    while (rc >= 0 && files < 1000) {
        snprintf(name, sizeof(name), "fill%03d", files);
        uint32_t ino = fixture_create(&f, root, name, S_IFREG | 0644);
        files++;
        for (int i = 0; i < 16; i++) {
            rc = vdfs_pwrite(f.fs, ino, buf, chunk, (uint64_t)i * chunk);
            if (rc < 0)
                break;
            assert_int_equal(rc, (ssize_t)chunk);
            written += chunk;
        }
    }
    assert_int_equal(rc, -ENOSPC);
    struct vdfs_statfs sf;
    assert_int_equal(vdfs_statfs(f.fs, &sf), 0);
    assert_int_equal(sf.free_blocks, 0);
    assert_true(written >= (sf.total_blocks - 1) * chunk);
    fixture_unmount(&f);
    assert_int_equal(fixture_fsck(&f), 0);

    fixture_mount(&f);
    fixture_expect(&f, fixture_create(&f, root, "probe", S_IFREG | 0644), "", 0, 0);
    assert_int_equal(vdfs_unlink(f.fs, root, "fill000"), 0);
    assert_int_equal(vdfs_sync(f.fs), 0);
    struct vdfs_stat st;
    assert_int_equal(vdfs_lookup(f.fs, root, "probe", &st), 0);
    fixture_write(&f, st.ino, buf, chunk, 0);
    fixture_write(&f, st.ino, buf, chunk, 5 * chunk);
    fixture_expect(&f, st.ino, buf, chunk, 5 * chunk);
    /* The last full file still reads back. */
    snprintf(name, sizeof(name), "fill%03d", files - 2 > 0 ? files - 2 : 1);
    assert_int_equal(vdfs_lookup(f.fs, root, name, &st), 0);
    fixture_expect(&f, st.ino, buf, chunk, 15 * chunk);
    fixture_unmount(&f);
    assert_int_equal(fixture_fsck(&f), 0);
    fixture_destroy(&f);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fill_until_enospc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

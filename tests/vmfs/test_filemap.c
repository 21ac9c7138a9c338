/* filemap.c and alloc.c through the public API: thin provisioning,
 * fallocate modes, SEEK_DATA/SEEK_HOLE, addressing-mode transitions and
 * single/double-indirect block maps. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "format.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define TiB (1024ull * GiB)

static int setup(void **state)
{
    const char *opts[] = {"-H", "2", NULL};
    return fixture_setup(state, "4G", opts, true);
}

static uint64_t free_blocks(struct fixture *f)
{
    struct vdfs_statfs sf;
    assert_int_equal(vdfs_statfs(f->fs, &sf), 0);
    return sf.free_blocks;
}

static struct vdfs_stat stat_of(struct fixture *f, uint32_t ino)
{
    struct vdfs_stat st;
    assert_int_equal(vdfs_getattr(f->fs, ino, &st), 0);
    return st;
}

static void unmount_and_check(struct fixture *f)
{
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
    fixture_mount(f);
}

static void test_first_write_allocates_one_block(void **state)
{
    struct fixture *f = *state;
    uint32_t bs = vdfs_block_size(f->fs);
    uint32_t ino = fixture_create(f, vdfs_root_ino(f->fs), "far", S_IFREG | 0644);
    uint64_t before = free_blocks(f);
    fixture_write(f, ino, "x", 1, 100 * GiB);
    struct vdfs_stat st = stat_of(f, ino);
    assert_int_equal(st.size, 100 * GiB + 1);
    assert_int_equal(st.alloc_bytes, bs);
    assert_int_equal(before - free_blocks(f), 1);
    fixture_expect_zeros(f, ino, 64 * KiB, 0);
    fixture_expect_zeros(f, ino, 64 * KiB, 50 * GiB);
    fixture_expect_zeros(f, ino, 4096, 100 * GiB - 4096);
    fixture_expect(f, ino, "x", 1, 100 * GiB);
    unmount_and_check(f);
    fixture_expect(f, ino, "x", 1, 100 * GiB);
    assert_int_equal(stat_of(f, ino).alloc_bytes, bs);
}

static void test_punch_hole_frees_whole_blocks(void **state)
{
    struct fixture *f = *state;
    size_t len = 4 * MiB;
    uint8_t *data = malloc(len);
    fixture_pattern(data, len, 1);
    uint32_t ino = fixture_create(f, vdfs_root_ino(f->fs), "punch", S_IFREG | 0644);
    fixture_write(f, ino, data, len, 0);
    assert_int_equal(stat_of(f, ino).alloc_bytes, 4 * MiB);
    uint64_t before = free_blocks(f);
    /* The freed blocks become reusable when the transaction commits. */
    assert_int_equal(vdfs_fallocate(f->fs, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 * MiB, 2 * MiB), 0);
    assert_int_equal(vdfs_sync(f->fs), 0);
    assert_int_equal(free_blocks(f) - before, 2);
    struct vdfs_stat st = stat_of(f, ino);
    assert_int_equal(st.size, len);
    assert_int_equal(st.alloc_bytes, 2 * MiB);
    fixture_expect(f, ino, data, 1 * MiB, 0);
    fixture_expect_zeros(f, ino, 2 * MiB, 1 * MiB);
    fixture_expect(f, ino, data + 3 * MiB, 1 * MiB, 3 * MiB);
    /* A partial-block punch zeroes bytes but keeps the block. */
    assert_int_equal(vdfs_fallocate(f->fs, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 200), 0);
    fixture_expect(f, ino, data, 100, 0);
    fixture_expect_zeros(f, ino, 200, 100);
    fixture_expect(f, ino, data + 300, 1 * MiB - 300, 300);
    assert_int_equal(stat_of(f, ino).alloc_bytes, 2 * MiB);
    unmount_and_check(f);
    fixture_expect_zeros(f, ino, 2 * MiB, 1 * MiB);
    fixture_expect(f, ino, data + 3 * MiB, 1 * MiB, 3 * MiB);
    free(data);
}

static void test_zero_range_reads_zeros(void **state)
{
    struct fixture *f = *state;
    size_t len = 3 * MiB;
    uint8_t *data = malloc(len);
    fixture_pattern(data, len, 2);
    uint32_t ino = fixture_create(f, vdfs_root_ino(f->fs), "zero", S_IFREG | 0644);
    fixture_write(f, ino, data, len, 0);
    assert_int_equal(vdfs_fallocate(f->fs, ino, FALLOC_FL_ZERO_RANGE, 512 * KiB, 1536 * KiB), 0);
    assert_int_equal(stat_of(f, ino).size, len);
    fixture_expect(f, ino, data, 512 * KiB, 0);
    fixture_expect_zeros(f, ino, 1536 * KiB, 512 * KiB);
    fixture_expect(f, ino, data + 2 * MiB, 1 * MiB, 2 * MiB);
    /* Beyond EOF without KEEP_SIZE the file grows, and the tail is zeros. */
    assert_int_equal(vdfs_fallocate(f->fs, ino, FALLOC_FL_ZERO_RANGE, len - 10, 1 * MiB), 0);
    assert_int_equal(stat_of(f, ino).size, len - 10 + 1 * MiB);
    fixture_expect_zeros(f, ino, 1 * MiB, len - 10);
    free(data);
}

struct map_summary {
    uint64_t unwritten, data, holes, subblock, resident;
    uint64_t end;
};

static int summarize(void *ctx, const struct vdfs_extent *e)
{
    struct map_summary *m = ctx;
    assert_int_equal(e->logical, m->end); /* the map is contiguous and ordered */
    m->end = e->logical + e->length;
    if (e->hole)
        m->holes += e->length;
    else if (e->unwritten)
        m->unwritten += e->length;
    else if (e->physical == 0)
        m->resident += e->length;
    else
        m->data += e->length;
    if (e->subblock)
        m->subblock += e->length;
    return 0;
}

static struct map_summary map_of(struct fixture *f, uint32_t ino)
{
    struct map_summary m = {0};
    assert_int_equal(vdfs_map(f->fs, ino, summarize, &m), 0);
    return m;
}

static void test_fallocate_allocates_unwritten_zero_blocks(void **state)
{
    struct fixture *f = *state;
    /* Leave garbage in free blocks first, so that "reads as zeros" cannot
     * come from a never-written image. */
    size_t len = 8 * MiB;
    uint8_t *junk = malloc(len);
    memset(junk, 0xa5, len);
    uint32_t old = fixture_create(f, vdfs_root_ino(f->fs), "junk", S_IFREG | 0644);
    fixture_write(f, old, junk, len, 0);
    assert_int_equal(vdfs_fsync(f->fs, old, false), 0);
    assert_int_equal(vdfs_unlink(f->fs, vdfs_root_ino(f->fs), "junk"), 0);
    assert_int_equal(vdfs_sync(f->fs), 0);

    uint32_t ino = fixture_create(f, vdfs_root_ino(f->fs), "thick", S_IFREG | 0644);
    uint64_t before = free_blocks(f);
    assert_int_equal(vdfs_fallocate(f->fs, ino, 0, 0, len), 0);
    struct vdfs_stat st = stat_of(f, ino);
    assert_int_equal(st.size, len);
    assert_int_equal(st.alloc_bytes, len);
    assert_int_equal(before - free_blocks(f), 8);
    struct map_summary m = map_of(f, ino);
    assert_int_equal(m.unwritten, len);
    assert_int_equal(m.data + m.holes, 0);
    fixture_expect_zeros(f, ino, len, 0);

    /* A write clears the marker of its block only; the rest of that block
     * still reads as zeros. */
    fixture_write(f, ino, "0123456789", 10, 1 * MiB + 5);
    fixture_expect_zeros(f, ino, 5, 1 * MiB);
    fixture_expect(f, ino, "0123456789", 10, 1 * MiB + 5);
    fixture_expect_zeros(f, ino, 1 * MiB - 15, 1 * MiB + 15);
    m = map_of(f, ino);
    assert_int_equal(m.data, 1 * MiB);
    assert_int_equal(m.unwritten, 7 * MiB);

    /* KEEP_SIZE allocates beyond EOF without growing the file. */
    assert_int_equal(vdfs_fallocate(f->fs, ino, FALLOC_FL_KEEP_SIZE, len, 2 * MiB), 0);
    st = stat_of(f, ino);
    assert_int_equal(st.size, len);
    assert_int_equal(st.alloc_bytes, len + 2 * MiB);
    unmount_and_check(f);
    fixture_expect_zeros(f, ino, 1 * MiB, 4 * MiB);
    fixture_expect(f, ino, "0123456789", 10, 1 * MiB + 5);
    free(junk);
}

static void test_seek_data_and_hole(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[4096];
    fixture_pattern(buf, sizeof(buf), 3);
    uint32_t ino = fixture_create(f, vdfs_root_ino(f->fs), "seek", S_IFREG | 0644);
    fixture_write(f, ino, buf, sizeof(buf), 0);
    fixture_write(f, ino, buf, sizeof(buf), 10 * MiB);
    uint64_t size = 10 * MiB + sizeof(buf);
    assert_int_equal(vdfs_lseek(f->fs, ino, 0, SEEK_DATA), 0);
    int64_t hole = vdfs_lseek(f->fs, ino, 0, SEEK_HOLE);
    assert_true(hole >= (int64_t)sizeof(buf) && hole <= (int64_t)(1 * MiB));
    assert_int_equal(vdfs_lseek(f->fs, ino, (uint64_t)hole, SEEK_DATA), 10 * MiB);
    assert_int_equal(vdfs_lseek(f->fs, ino, 2 * MiB, SEEK_DATA), 10 * MiB);
    assert_int_equal(vdfs_lseek(f->fs, ino, 2 * MiB, SEEK_HOLE), 2 * MiB);
    assert_int_equal(vdfs_lseek(f->fs, ino, 10 * MiB, SEEK_HOLE), size);
    assert_int_equal(vdfs_lseek(f->fs, ino, 10 * MiB + 100, SEEK_DATA), 10 * MiB + 100);
    assert_int_equal(vdfs_lseek(f->fs, ino, size, SEEK_DATA), -ENXIO);
    assert_int_equal(vdfs_lseek(f->fs, ino, size, SEEK_HOLE), -ENXIO);
    assert_int_equal(vdfs_lseek(f->fs, ino, 0, SEEK_SET), -EINVAL);
}

static void test_one_tib_sparse_file(void **state)
{
    struct fixture *f = *state;
    uint32_t ino = fixture_create(f, vdfs_root_ino(f->fs), "tib", S_IFREG | 0644);
    struct vdfs_setattr sa = {.valid = VDFS_SET_SIZE, .size = 1 * TiB};
    struct vdfs_stat st;
    assert_int_equal(vdfs_setattr(f->fs, ino, &sa, &st), 0);
    assert_int_equal(st.size, 1 * TiB);
    assert_int_equal(st.alloc_bytes, 0);
    uint8_t *buf = malloc(1 * MiB);
    fixture_pattern(buf, 1 * MiB, 4);
    fixture_write(f, ino, buf, 1 * MiB, 1 * TiB - 1 * MiB);
    st = stat_of(f, ino);
    assert_int_equal(st.size, 1 * TiB);
    assert_int_equal(st.alloc_bytes, 1 * MiB);
    assert_int_equal(vdfs_lseek(f->fs, ino, 0, SEEK_DATA), 1 * TiB - 1 * MiB);
    fixture_expect_zeros(f, ino, 1 * MiB, 512 * GiB);
    fixture_expect(f, ino, buf, 1 * MiB, 1 * TiB - 1 * MiB);
    /* Reading at EOF returns nothing. */
    assert_int_equal(vdfs_pread(f->fs, ino, buf, 16, 1 * TiB), 0);
    unmount_and_check(f);
    assert_int_equal(stat_of(f, ino).alloc_bytes, 1 * MiB);
    free(buf);
}

/* (256 + 64 x 1008 + 128 x 1008^2) blocks of 1 MiB (docs/format.md): no
 * size, write or allocation past it, as ext4 refuses past s_maxbytes. */
static void test_past_the_largest_file_is_efbig(void **state)
{
    struct fixture *f = *state;
    const uint64_t max = (256ull + 64 * 1008 + 128ull * 1008 * 1008) * MiB;
    uint32_t ino = fixture_create(f, vdfs_root_ino(f->fs), "max", S_IFREG | 0644);
    struct vdfs_stat st;
    struct vdfs_setattr sa = {.valid = VDFS_SET_SIZE, .size = max + 1};
    assert_int_equal(vdfs_setattr(f->fs, ino, &sa, &st), -EFBIG);
    sa.size = UINT64_MAX / 2;
    assert_int_equal(vdfs_setattr(f->fs, ino, &sa, &st), -EFBIG);
    assert_int_equal(stat_of(f, ino).size, 0);
    sa.size = max;
    assert_int_equal(vdfs_setattr(f->fs, ino, &sa, &st), 0);
    assert_int_equal(st.size, max);
    assert_int_equal(vdfs_pwrite(f->fs, ino, "x", 1, max), -EFBIG);
    fixture_write(f, ino, "y", 1, max - 1);
    uint64_t before = free_blocks(f);
    assert_int_equal(vdfs_fallocate(f->fs, ino, 0, max - 2 * MiB, 3 * MiB), -EFBIG);
    assert_int_equal(vdfs_fallocate(f->fs, ino, FALLOC_FL_KEEP_SIZE, max, MiB), -EFBIG);
    assert_int_equal(free_blocks(f), before);
    assert_int_equal(vdfs_fallocate(f->fs, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, max - MiB, 4 * MiB), 0);
    st = stat_of(f, ino);
    assert_int_equal(st.size, max);
    assert_int_equal(st.alloc_bytes, 0);
    unmount_and_check(f);
}

static void test_mode_transitions_keep_content(void **state)
{
    struct fixture *f = *state;
    size_t big = 3 * MiB;
    uint8_t *data = malloc(big);
    fixture_pattern(data, big, 5);
    uint32_t ino = fixture_create(f, vdfs_root_ino(f->fs), "grow", S_IFREG | 0644);

    fixture_write(f, ino, data, 100, 0);
    struct vdfs_stat st = stat_of(f, ino);
    assert_int_equal(st.size, 100);
    assert_int_equal(st.alloc_bytes, 0); /* resident in the descriptor */
    assert_int_equal(map_of(f, ino).resident, 100);
    fixture_expect(f, ino, data, 100, 0);

    fixture_write(f, ino, data + 100, 100 * 1000 - 100, 100);
    st = stat_of(f, ino);
    assert_int_equal(st.size, 100 * 1000);
    assert_int_equal(st.alloc_bytes, 2 * 64 * KiB); /* two sub-blocks */
    assert_true(map_of(f, ino).subblock > 0);
    fixture_expect(f, ino, data, 100 * 1000, 0);

    fixture_write(f, ino, data + 100 * 1000, big - 100 * 1000, 100 * 1000);
    st = stat_of(f, ino);
    assert_int_equal(st.size, big);
    assert_int_equal(st.alloc_bytes, 3 * MiB);
    struct map_summary m = map_of(f, ino);
    assert_int_equal(m.subblock, 0);
    assert_int_equal(m.data, 3 * MiB);
    fixture_expect(f, ino, data, big, 0);
    unmount_and_check(f);
    fixture_expect(f, ino, data, big, 0);

    /* Truncating back down keeps the prefix. */
    struct vdfs_setattr sa = {.valid = VDFS_SET_SIZE, .size = 1000};
    assert_int_equal(vdfs_setattr(f->fs, ino, &sa, &st), 0);
    fixture_expect(f, ino, data, 1000, 0);
    sa.size = 5000;
    assert_int_equal(vdfs_setattr(f->fs, ino, &sa, &st), 0);
    fixture_expect_zeros(f, ino, 4000, 1000);
    free(data);
}

static void test_single_and_double_indirect(void **state)
{
    struct fixture *f = *state;
    enum { LEN = 3 * 4096 + 17 };
    uint8_t a[LEN], b[LEN], c[LEN];
    fixture_pattern(a, LEN, 6);
    fixture_pattern(b, LEN, 7);
    fixture_pattern(c, LEN, 8);
    uint32_t ino = fixture_create(f, vdfs_root_ino(f->fs), "deep", S_IFREG | 0644);
    uint64_t direct = 100 * MiB + 4000, single = 256 * MiB + 12345, dbl = 70 * GiB + 777;
    fixture_write(f, ino, a, LEN, direct);
    fixture_write(f, ino, b, LEN, single);
    fixture_write(f, ino, c, LEN, dbl);
    /* Crossing a block boundary in the single-indirect range. */
    fixture_write(f, ino, a, LEN, 300 * MiB - 5000);
    fixture_expect(f, ino, a, LEN, direct);
    fixture_expect(f, ino, b, LEN, single);
    fixture_expect(f, ino, c, LEN, dbl);
    fixture_expect_zeros(f, ino, 4096, 255 * MiB);
    fixture_expect_zeros(f, ino, 4096, 64 * GiB);
    assert_int_equal(stat_of(f, ino).alloc_bytes, 5 * MiB);
    unmount_and_check(f);
    fixture_expect(f, ino, a, LEN, direct);
    fixture_expect(f, ino, b, LEN, single);
    fixture_expect(f, ino, c, LEN, dbl);
    fixture_expect(f, ino, a, LEN, 300 * MiB - 5000);
    /* Punching a whole single-indirect block frees it. */
    assert_int_equal(vdfs_fallocate(f->fs, ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 256 * MiB, 1 * MiB), 0);
    fixture_expect_zeros(f, ino, LEN, single);
    fixture_expect(f, ino, c, LEN, dbl);
    assert_int_equal(stat_of(f, ino).alloc_bytes, 4 * MiB);
    unmount_and_check(f);
}

/* Copies an image as a crash would leave it (what is on the device now),
 * data segments only. */
static void copy_as_crashed(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(in >= 0 && out >= 0);
    off_t size = lseek(in, 0, SEEK_END);
    assert_int_equal(ftruncate(out, size), 0);
    static char buf[1 << 20];
    for (off_t at = lseek(in, 0, SEEK_DATA); at >= 0 && at < size;) {
        off_t hole = lseek(in, at, SEEK_HOLE);
        while (at < hole) {
            size_t n = hole - at < (off_t)sizeof(buf) ? (size_t)(hole - at) : sizeof(buf);
            assert_int_equal(pread(in, buf, n, at), (ssize_t)n);
            assert_int_equal(pwrite(out, buf, n, at), (ssize_t)n);
            at += (off_t)n;
        }
        at = lseek(in, hole, SEEK_DATA);
    }
    close(in);
    close(out);
}

static int setup_small_journal(void **state)
{
    /* 16 KiB blocks hold a 10 000-byte file in sub-blocks; a 1 MiB journal
     * commits every 64 changed objects, i.e. inside a long fallocate. */
    const char *opts[] = {"-H", "2", "-b", "16K", "-s", "4K", "-J", "1M", NULL};
    return fixture_setup(state, "2G", opts, true);
}

/* A fallocate long enough to commit on the way, of a file kept in
 * sub-blocks (converted to file blocks, its sub-blocks freed): a crash
 * just after leaves a consistent datastore with the file's data. */
static void test_fallocate_commit_midway_is_consistent(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t ino = fixture_create(f, root, "small", S_IFREG | 0644);
    static uint8_t data[10000];
    fixture_pattern(data, sizeof(data), 7);
    fixture_write(f, ino, data, sizeof(data), 0);
    assert_int_equal(vdfs_sync(f->fs), 0);
    assert_int_equal(vdfs_fallocate(f->fs, ino, 0, 0, 1200 * MiB), 0);

    struct fixture crashed = *f;
    snprintf(crashed.image, sizeof(crashed.image), "%s/crashed.img", f->dir);
    copy_as_crashed(f->image, crashed.image);
    struct vdfs_mount_opts o = {.host_uuid = TEST_HOST_UUID, .host_name = "after-crash"};
    fixture_quiet_log();
    assert_int_equal(vdfs_mount(crashed.image, &o, &crashed.fs), 0);
    static uint8_t got[sizeof(data)];
    assert_int_equal(vdfs_pread(crashed.fs, ino, got, sizeof(got), 0), (ssize_t)sizeof(got));
    assert_memory_equal(got, data, sizeof(data));
    assert_int_equal(vdfs_unmount(crashed.fs), 0);
    assert_int_equal(fixture_fsck(&crashed), 0);
    unlink(crashed.image);
}

/* A full datastore: blocks freed by an unlink show as free at once, and a
 * write that needs them gets them (the free is committed on demand) rather
 * than ENOSPC until the next periodic commit. */
static void test_freed_blocks_usable_at_once(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t big = fixture_create(f, root, "big", S_IFREG | 0644);
    uint64_t bs = vdfs_block_size(f->fs);
    assert_int_equal(vdfs_fallocate(f->fs, big, 0, 0, free_blocks(f) * bs), 0);
    assert_int_equal(free_blocks(f), 0);
    uint32_t next = fixture_create(f, root, "next", S_IFREG | 0644);
    static uint8_t data[2 << 20]; /* past one block: file blocks, not sub-blocks */
    fixture_pattern(data, sizeof(data), 3);
    assert_int_equal(vdfs_pwrite(f->fs, next, data, sizeof(data), 0), -ENOSPC);
    assert_int_equal(vdfs_unlink(f->fs, root, "big"), 0);
    assert_true(free_blocks(f) > 0);
    assert_int_equal(vdfs_pwrite(f->fs, next, data, sizeof(data), 0), (ssize_t)sizeof(data));
    fixture_expect(f, next, data, sizeof(data), 0);
}

/* The same for fallocate: the blocks of a file just removed are there for
 * the next fallocate, not ENOSPC until the next periodic commit. */
static void test_freed_blocks_fallocate_at_once(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t big = fixture_create(f, root, "big", S_IFREG | 0644);
    uint64_t bs = vdfs_block_size(f->fs), all = free_blocks(f);
    assert_int_equal(vdfs_fallocate(f->fs, big, 0, 0, all * bs), 0);
    uint32_t next = fixture_create(f, root, "next", S_IFREG | 0644);
    assert_int_equal(vdfs_fallocate(f->fs, next, 0, 0, 4 * bs), -ENOSPC);
    assert_int_equal(stat_of(f, next).size, 0);
    assert_int_equal(vdfs_unlink(f->fs, root, "big"), 0);
    assert_int_equal(vdfs_fallocate(f->fs, next, 0, 0, 4 * bs), 0);
    assert_int_equal(stat_of(f, next).size, 4 * bs);
    assert_int_equal(free_blocks(f), all - 4);
}

/* A fallocate of an empty file that finds no file block leaves the file
 * as it was: a small write after it still gets sub-blocks. */
static void test_failed_fallocate_keeps_sub_blocks_usable(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t big = fixture_create(f, root, "big", S_IFREG | 0644);
    assert_int_equal(vdfs_fallocate(f->fs, big, 0, 0, free_blocks(f) * vdfs_block_size(f->fs)), 0);
    uint32_t e = fixture_create(f, root, "e", S_IFREG | 0644);
    assert_int_equal(vdfs_fallocate(f->fs, e, 0, 0, 4 * vdfs_block_size(f->fs)), -ENOSPC);
    static uint8_t data[10000];
    fixture_pattern(data, sizeof(data), 9);
    assert_int_equal(vdfs_pwrite(f->fs, e, data, sizeof(data), 0), (ssize_t)sizeof(data));
    fixture_expect(f, e, data, sizeof(data), 0);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
}

static int setup_1g(void **state)
{
    const char *opts[] = {"-H", "2", NULL};
    return fixture_setup(state, "1G", opts, true);
}

/* Small files in `dir` (each up to 15 sub-blocks) until no sub-block is
 * left; returns how many were made. */
static unsigned fill_subblocks(struct fixture *f, uint32_t dir, const char *prefix)
{
    static uint8_t chunk[64 * KiB];
    memset(chunk, 7, sizeof(chunk));
    unsigned files = 0;
    ssize_t n = 0;
    while (n >= 0) {
        char name[32];
        snprintf(name, sizeof(name), "%s%u", prefix, files++);
        uint32_t ino = fixture_create(f, dir, name, S_IFREG | 0644);
        for (uint64_t off = 0; off < 15 * sizeof(chunk) && n >= 0; off += sizeof(chunk))
            n = vdfs_pwrite(f->fs, ino, chunk, sizeof(chunk), off);
    }
    assert_int_equal(n, -ENOSPC);
    return files;
}

/* No file block and no sub-block left: a directory that must grow, and a
 * symlink's target, get the sub-blocks of a file just removed at once; a
 * symlink whose target finds no space at all is not left behind empty. */
static void test_freed_subblocks_usable_at_once(void **state)
{
    struct fixture *f = *state;
    uint32_t root = vdfs_root_ino(f->fs);
    uint32_t dir = fixture_create(f, root, "d", S_IFDIR | 0755);
    uint32_t big = fixture_create(f, root, "big", S_IFREG | 0644);
    assert_int_equal(vdfs_fallocate(f->fs, big, 0, 0, free_blocks(f) * vdfs_block_size(f->fs)), 0);
    assert_true(fill_subblocks(f, root, "small") > 2);
    struct vdfs_stat st;
    struct vdfs_cred cred = {0, 0};
    assert_int_equal(vdfs_create(f->fs, dir, "x", S_IFREG | 0644, 0, &cred, &st), -ENOSPC);
    assert_int_equal(vdfs_unlink(f->fs, root, "small0"), 0);
    assert_int_equal(vdfs_create(f->fs, dir, "x", S_IFREG | 0644, 0, &cred, &st), 0);
    fill_subblocks(f, root, "more");
    /* Longer than a descriptor holds: the target needs a sub-block. */
    static char target[4000], got[4096];
    for (size_t i = 0; i + 3 < sizeof(target); i += 2)
        memcpy(target + i, "./", 2);
    memcpy(target + sizeof(target) - 4, "d/x", 4);
    assert_true(strlen(target) > VDFS_RESIDENT_MAX);
    /* Nothing to get back: the symlink fails whole, leaving no entry. */
    assert_int_equal(vdfs_symlink(f->fs, dir, "link", target, &cred, &st), -ENOSPC);
    assert_int_equal(vdfs_lookup(f->fs, dir, "link", &st), -ENOENT);
    assert_int_equal(vdfs_unlink(f->fs, root, "small1"), 0);
    assert_int_equal(vdfs_symlink(f->fs, dir, "link", target, &cred, &st), 0);
    assert_int_equal(vdfs_readlink(f->fs, st.ino, got, sizeof(got)), (ssize_t)strlen(target));
    assert_string_equal(got, target);
    fixture_unmount(f);
    assert_int_equal(fixture_fsck(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_write_allocates_one_block, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_punch_hole_frees_whole_blocks, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_zero_range_reads_zeros, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_fallocate_allocates_unwritten_zero_blocks, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_seek_data_and_hole, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_one_tib_sparse_file, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_past_the_largest_file_is_efbig, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_mode_transitions_keep_content, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_single_and_double_indirect, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_fallocate_commit_midway_is_consistent, setup_small_journal,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_freed_blocks_usable_at_once, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_freed_blocks_fallocate_at_once, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_freed_subblocks_usable_at_once, setup_1g, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_failed_fallocate_keeps_sub_blocks_usable, setup_1g, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

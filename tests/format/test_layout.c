/* vdfs_layout: region order, alignment, no overlap, counts, small and huge
 * devices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <time.h>

#include "format.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define TiB (1ull << 40)

static void request(struct vdfs_super *s, uint64_t total, uint32_t block, uint32_t sub,
                    uint32_t hosts, uint32_t journal_blocks)
{
    memset(s, 0, sizeof(*s));
    s->total_bytes = total;
    s->block_size = block;
    s->subblock_size = sub;
    s->max_hosts = hosts;
    s->journal_blocks = journal_blocks;
}

static void request_defaults(struct vdfs_super *s, uint64_t total)
{
    request(s, total, VDFS_DEFAULT_BLOCK_SIZE, VDFS_DEFAULT_SUBBLOCK_SIZE,
            VDFS_DEFAULT_MAX_HOSTS, VDFS_DEFAULT_JOURNAL_BLOCKS);
}

static uint64_t clampu(uint64_t v, uint64_t lo, uint64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

struct span {
    const char *what;
    uint64_t start, end;
};

/* Everything a layout promises, checked from the outside. */
static void assert_layout_sane(const struct vdfs_super *s)
{
    const struct vdfs_region *fb = &s->region[VDFS_RT_FB], *sb = &s->region[VDFS_RT_SB];
    const struct vdfs_region *pb = &s->region[VDFS_RT_PB], *fd = &s->region[VDFS_RT_FD];

    assert_int_equal(s->version, VDFS_FORMAT_VERSION);
    assert_int_equal(s->compat | s->incompat | s->ro_compat, 0);
    assert_int_equal(s->root_ino, 1);
    assert_int_equal(s->lostfound_ino, 2);
    assert_int_equal(s->hb_interval_ms, 1000);
    assert_int_equal(s->hb_timeout_ms, 4000);
    assert_true(s->heartbeat_offset == VDFS_HEARTBEAT_OFFSET);

    /* Region order on the device. */
    struct span spans[] = {
        { "super", 0, VDFS_META_SIZE },
        { "heartbeats", s->heartbeat_offset, s->heartbeat_offset + s->max_hosts * VDFS_SECTOR_SIZE },
        { "locks", s->lock_offset, s->lock_offset + s->lock_count * VDFS_SECTOR_SIZE },
        { "journals", s->journal_offset,
          s->journal_offset + (uint64_t)s->max_hosts * s->journal_blocks * VDFS_META_SIZE },
        { "fb bitmaps", fb->bitmap_offset, fb->bitmap_offset + fb->clusters * VDFS_META_SIZE },
        { "sb bitmaps", sb->bitmap_offset, sb->bitmap_offset + sb->clusters * VDFS_META_SIZE },
        { "pb bitmaps", pb->bitmap_offset, pb->bitmap_offset + pb->clusters * VDFS_META_SIZE },
        { "fd bitmaps", fd->bitmap_offset, fd->bitmap_offset + fd->clusters * VDFS_META_SIZE },
        { "descriptors", fd->start, fd->start + fd->count * fd->unit_size },
        { "pointer blocks", pb->start, pb->start + pb->count * pb->unit_size },
        { "sub-blocks", sb->start, sb->start + sb->count * sb->unit_size },
        { "backup", s->backup_offset, s->backup_offset + VDFS_META_SIZE },
        { "file blocks", fb->start, fb->start + fb->count * fb->unit_size },
    };
    size_t n = sizeof(spans) / sizeof(spans[0]);
    for (size_t i = 0; i < n; i++) {
        if (spans[i].start % 4096)
            fail_msg("%s at %llu is not 4096-aligned", spans[i].what,
                     (unsigned long long)spans[i].start);
        if (i > 0 && spans[i].start < spans[i - 1].end)
            fail_msg("%s overlaps or precedes %s", spans[i].what, spans[i - 1].what);
    }
    assert_true(spans[n - 1].end <= s->total_bytes);
    /* Nothing but an alignment gap is wasted at the end. */
    assert_true(s->total_bytes - spans[n - 1].end < s->block_size ||
                fb->count == VDFS_PTR_INDEX_MASK);

    assert_int_equal(s->journal_offset % MiB, 0);
    assert_int_equal(sb->start % s->subblock_size, 0);
    assert_int_equal(fb->start % s->block_size, 0);
    assert_true(fb->count >= 16);
    assert_true(fb->count <= VDFS_PTR_INDEX_MASK);

    /* Units and clusters. */
    assert_int_equal(fb->unit_size, s->block_size);
    assert_int_equal(sb->unit_size, s->subblock_size);
    assert_int_equal(pb->unit_size, 4096);
    assert_int_equal(fd->unit_size, 4096);
    for (unsigned t = 0; t < VDFS_RT_COUNT; t++) {
        assert_int_equal(s->region[t].per_cluster, VDFS_RESOURCES_PER_CLUSTER);
        assert_true(s->region[t].clusters == ceil_div(s->region[t].count, VDFS_RESOURCES_PER_CLUSTER));
    }

    /* Lock order: FB, SB, PB, FD cluster locks, then one per descriptor,
     * all inside lock_count and without sharing a record. */
    assert_true(fb->lock_index == 0);
    assert_true(sb->lock_index >= fb->lock_index + fb->clusters);
    assert_true(pb->lock_index == sb->lock_index + sb->clusters);
    assert_true(fd->lock_index == pb->lock_index + pb->clusters);
    assert_true(s->fd_lock_index == fd->lock_index + fd->clusters);
    assert_true(s->lock_count == s->fd_lock_index + fd->count);

    /* The superblock decoder accepts what the layout produced, at both
     * copies. */
    struct vdfs_super copy = *s, back;
    uint8_t buf[VDFS_META_SIZE];
    vdfs_super_encode(&copy, buf);
    assert_int_equal(vdfs_super_decode(buf, 0, &back), 0);
    copy.hdr.addr = s->backup_offset;
    vdfs_super_encode(&copy, buf);
    assert_int_equal(vdfs_super_decode(buf, s->backup_offset, &back), 0);
}

static void test_16_tib_defaults(void **state)
{
    struct vdfs_super s;
    request_defaults(&s, 16 * TiB);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(vdfs_layout(&s, 0), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_true(ms < 100.0);
    assert_layout_sane(&s);

    assert_true(s.region[VDFS_RT_FD].count == 4194304);
    assert_true(s.region[VDFS_RT_SB].count == 1048576);
    assert_true(s.region[VDFS_RT_PB].count == (16 * TiB / MiB) / 256 * 2);
    assert_true(s.region[VDFS_RT_FB].count ==
                (16 * TiB - s.region[VDFS_RT_FB].start) / VDFS_DEFAULT_BLOCK_SIZE);
    /* Metadata stays a small share of a big volume. */
    assert_true(s.region[VDFS_RT_FB].start < 16 * TiB / 100);
}

static void test_1_tib_defaults(void **state)
{
    struct vdfs_super s;
    request_defaults(&s, TiB);
    assert_int_equal(vdfs_layout(&s, 0), 0);
    assert_layout_sane(&s);
    assert_true(s.region[VDFS_RT_FD].count == 4194304);
    assert_true(s.region[VDFS_RT_SB].count == TiB / (16 * MiB));
    assert_true(s.region[VDFS_RT_PB].count == 8192);
    assert_true(s.region[VDFS_RT_FB].count ==
                (TiB - s.region[VDFS_RT_FB].start) / VDFS_DEFAULT_BLOCK_SIZE);
}

/* From a few GiB up the counts are exactly the sizing rules. */
static void test_counts_follow_rules(void **state)
{
    const uint64_t sizes[] = { 8 * GiB, 100 * GiB + 12345 * 4096, 3 * TiB, 64 * TiB, 1024 * TiB };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct vdfs_super s;
        uint64_t total = sizes[i];
        request_defaults(&s, total);
        assert_int_equal(vdfs_layout(&s, 0), 0);
        assert_layout_sane(&s);
        assert_true(s.region[VDFS_RT_FD].count == clampu(total / (256 * KiB), 16384, 4194304));
        assert_true(s.region[VDFS_RT_SB].count == clampu(total / (16 * MiB), 8192, 1048576));
        assert_true(s.region[VDFS_RT_PB].count == clampu(total / MiB / 256 * 2, 8192, 4194304));
    }
}

static void test_explicit_fd_count(void **state)
{
    struct vdfs_super s;
    request_defaults(&s, 2 * TiB);
    assert_int_equal(vdfs_layout(&s, 100000), 0);
    assert_layout_sane(&s);
    assert_true(s.region[VDFS_RT_FD].count == 100000);
    assert_int_equal(s.region[VDFS_RT_FD].clusters, 13);
}

static void test_64_mib(void **state)
{
    struct vdfs_super s;
    /* With 32 hosts' 16 MiB journals the metadata alone is 512 MiB. */
    request_defaults(&s, 64 * MiB);
    assert_int_equal(vdfs_layout(&s, 0), -ENOSPC);

    /* A single host with a 1 MiB journal fits, and most of the device is
     * still file blocks. */
    request(&s, 64 * MiB, VDFS_DEFAULT_BLOCK_SIZE, VDFS_DEFAULT_SUBBLOCK_SIZE, 1, 256);
    assert_int_equal(vdfs_layout(&s, 0), 0);
    assert_layout_sane(&s);
    assert_true(s.region[VDFS_RT_FB].count >= 32);
    assert_true(s.region[VDFS_RT_FD].count >= 256);
    assert_true(s.region[VDFS_RT_SB].count >= 16);
    assert_true(s.region[VDFS_RT_PB].count >= 16);

    /* Small blocks too. */
    request(&s, 64 * MiB, 64 * KiB, 4096, 2, 64);
    assert_int_equal(vdfs_layout(&s, 64), 0);
    assert_layout_sane(&s);
    assert_true(s.region[VDFS_RT_FD].count == 64);
}

static void test_too_small(void **state)
{
    struct vdfs_super s;
    request(&s, 8 * MiB, VDFS_DEFAULT_BLOCK_SIZE, VDFS_DEFAULT_SUBBLOCK_SIZE, 1, 256);
    assert_int_equal(vdfs_layout(&s, 0), -ENOSPC);
    request(&s, 0, VDFS_DEFAULT_BLOCK_SIZE, VDFS_DEFAULT_SUBBLOCK_SIZE, 1, 256);
    assert_int_equal(vdfs_layout(&s, 0), -ENOSPC);
    request(&s, 4096, 4096, 4096, 1, 2);
    assert_int_equal(vdfs_layout(&s, 0), -ENOSPC);

    /* The boundary, found by bisection (space needed only grows with the
     * device): at the smallest size that fits there are exactly 16 file
     * blocks, and one 4 KiB less does not fit. */
    uint64_t lo = 1, hi = 64 * MiB / 4096; /* in 4 KiB units: lo fails, hi fits */
    request(&s, hi * 4096, VDFS_DEFAULT_BLOCK_SIZE, VDFS_DEFAULT_SUBBLOCK_SIZE, 1, 256);
    assert_int_equal(vdfs_layout(&s, 1024), 0);
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        request(&s, mid * 4096, VDFS_DEFAULT_BLOCK_SIZE, VDFS_DEFAULT_SUBBLOCK_SIZE, 1, 256);
        int rc = vdfs_layout(&s, 1024);
        assert_true(rc == 0 || rc == -ENOSPC);
        if (rc == 0)
            hi = mid;
        else
            lo = mid;
    }
    request(&s, hi * 4096, VDFS_DEFAULT_BLOCK_SIZE, VDFS_DEFAULT_SUBBLOCK_SIZE, 1, 256);
    assert_int_equal(vdfs_layout(&s, 1024), 0);
    assert_layout_sane(&s);
    assert_true(s.region[VDFS_RT_FB].count == 16);
    request(&s, lo * 4096, VDFS_DEFAULT_BLOCK_SIZE, VDFS_DEFAULT_SUBBLOCK_SIZE, 1, 256);
    assert_int_equal(vdfs_layout(&s, 1024), -ENOSPC);
}

static void test_invalid_requests(void **state)
{
    struct vdfs_super s;
    const struct { uint32_t block, sub, hosts, journal; } bad[] = {
        { 3 << 19, 64 << 10, 1, 256 },    /* block not a power of two */
        { 1 << 20, 96 << 10, 1, 256 },    /* sub-block not a power of two */
        { 1 << 20, 2048, 1, 256 },        /* sub-block below 4096 */
        { 1 << 20, 2 << 20, 1, 256 },     /* sub-block above block */
        { 128u << 20, 64 << 10, 1, 256 }, /* block above 64 MiB */
        { 0, 64 << 10, 1, 256 },
        { 1 << 20, 64 << 10, 0, 256 },    /* no hosts */
        { 1 << 20, 64 << 10, 65, 256 },   /* too many hosts */
        { 1 << 20, 64 << 10, 1, 0 },      /* no journal */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        request(&s, TiB, bad[i].block, bad[i].sub, bad[i].hosts, bad[i].journal);
        assert_int_equal(vdfs_layout(&s, 0), -EINVAL);
    }
    request_defaults(&s, TiB);
    assert_int_equal(vdfs_layout(&s, 2), -EINVAL);
    assert_int_equal(vdfs_layout(&s, 1ull << 32), -EINVAL);
}

/* 4 KiB blocks on 16 TiB would need more than 31 bits of block index. */
static void test_block_index_limit(void **state)
{
    struct vdfs_super s;
    request(&s, 16 * TiB, 4096, 4096, 8, 1024);
    assert_int_equal(vdfs_layout(&s, 0), 0);
    assert_layout_sane(&s);
    assert_true(s.region[VDFS_RT_FB].count == VDFS_PTR_INDEX_MASK);
}

/* Many shapes: each either fits with every invariant or is -ENOSPC. */
static void test_sweep(void **state)
{
    const uint32_t blocks[] = { 4096, 64 * KiB, 1 * MiB, 8 * MiB, 64 * MiB };
    const uint32_t hosts[] = { 1, 7, 64 };
    const uint32_t journals[] = { 2, 300, 4096 };
    uint64_t x = 88172645463325252ull;
    unsigned fit = 0, nospc = 0;
    for (size_t b = 0; b < 5; b++) {
        for (size_t h = 0; h < 3; h++) {
            for (size_t j = 0; j < 3; j++) {
                for (int k = 0; k < 40; k++) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    uint64_t total = (x % (64 * TiB)) >> (x % 40);
                    uint32_t sub = blocks[b] >> (x % 3);
                    if (sub < 4096)
                        sub = 4096;
                    struct vdfs_super s;
                    request(&s, total, blocks[b], sub, hosts[h], journals[j]);
                    int rc = vdfs_layout(&s, 0);
                    if (rc == 0) {
                        assert_layout_sane(&s);
                        fit++;
                    } else {
                        assert_int_equal(rc, -ENOSPC);
                        nospc++;
                    }
                }
            }
        }
    }
    assert_true(fit > 100);
    assert_true(nospc > 10);
}

/* The superblock a grow to `total` writes: only the size and the file
 * blocks change (vmfs/superblock.c). */
static void grow_to(struct vdfs_super *s, uint64_t total)
{
    struct vdfs_region *fb = &s->region[VDFS_RT_FB];
    s->total_bytes = total;
    fb->count = (total - fb->start) / fb->unit_size;
    fb->clusters = (uint32_t)((fb->count + fb->per_cluster - 1) / fb->per_cluster);
}

static int decodes(struct vdfs_super *s)
{
    static uint8_t buf[VDFS_META_SIZE];
    struct vdfs_super out;
    s->hdr.kind = VDFS_KIND_SUPER;
    s->hdr.addr = VDFS_SUPER_OFFSET;
    s->hdr.gen = 1;
    vdfs_super_encode(s, buf);
    return vdfs_super_decode(buf, VDFS_SUPER_OFFSET, &out);
}

/* By default a datastore can grow to 4x its size: every size up to that
 * limit is a valid superblock, and one block more would overlap the
 * sub-blocks' lock records and bitmaps. */
static void test_default_grow_room(void **state)
{
    const uint64_t sizes[] = { 256 * MiB, 100 * GiB + 12345 * 4096, 3 * TiB };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct vdfs_super s;
        request_defaults(&s, sizes[i]);
        if (sizes[i] < GiB)
            s.max_hosts = 4;
        assert_int_equal(vdfs_layout(&s, 0), 0);
        uint64_t limit = vdfs_grow_limit(&s);
        assert_true(limit >= 4 * sizes[i]);
        /* The room is whole clusters: less than one more than needed. */
        assert_true(limit < 4 * sizes[i] + s.region[VDFS_RT_FB].start +
                                (uint64_t)VDFS_RESOURCES_PER_CLUSTER * VDFS_DEFAULT_BLOCK_SIZE);
        struct vdfs_super grown = s;
        grow_to(&grown, limit);
        assert_int_equal(decodes(&grown), 0);
        assert_int_equal(vdfs_grow_limit(&grown), limit);
        grown = s;
        grow_to(&grown, limit + (uint64_t)VDFS_RESOURCES_PER_CLUSTER * VDFS_DEFAULT_BLOCK_SIZE);
        assert_int_not_equal(decodes(&grown), 0);
    }
}

/* -G: room for 64 TiB on 1 TiB, with pointer blocks for files that fill
 * a quarter of it; a limit below the size is refused. */
static void test_explicit_grow_limit(void **state)
{
    struct vdfs_super s;
    request_defaults(&s, TiB);
    assert_int_equal(vdfs_layout_growable(&s, 0, 64 * TiB), 0);
    assert_layout_sane(&s);
    assert_true(vdfs_grow_limit(&s) >= 64 * TiB);
    assert_true(s.region[VDFS_RT_PB].count == 16 * TiB / MiB / 256 * 2);
    assert_true(s.region[VDFS_RT_FB].count == (TiB - s.region[VDFS_RT_FB].start) / VDFS_DEFAULT_BLOCK_SIZE);
    grow_to(&s, 64 * TiB);
    assert_int_equal(decodes(&s), 0);

    request_defaults(&s, TiB);
    assert_int_equal(vdfs_layout_growable(&s, 0, TiB - 4096), -EINVAL);
    /* A limit equal to the size leaves no room beyond its last cluster. */
    assert_int_equal(vdfs_layout_growable(&s, 0, TiB), 0);
    assert_true(vdfs_grow_limit(&s) < TiB + s.region[VDFS_RT_FB].start +
                                           (uint64_t)VDFS_RESOURCES_PER_CLUSTER * VDFS_DEFAULT_BLOCK_SIZE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_16_tib_defaults),
        cmocka_unit_test(test_1_tib_defaults),
        cmocka_unit_test(test_counts_follow_rules),
        cmocka_unit_test(test_explicit_fd_count),
        cmocka_unit_test(test_64_mib),
        cmocka_unit_test(test_too_small),
        cmocka_unit_test(test_invalid_requests),
        cmocka_unit_test(test_block_index_limit),
        cmocka_unit_test(test_default_grow_room),
        cmocka_unit_test(test_explicit_grow_limit),
        cmocka_unit_test(test_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

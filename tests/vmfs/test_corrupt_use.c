/* What fuzz_mount found.  Mostly images whose metadata is corrupt but
 * correctly sealed (checksums match): the library must refuse the mount
 * or fail the operation with EIO, and never write outside the datastore
 * or out of bounds.  Also the recovery of a dead host on an O_DIRECT
 * image, which its O_DIRECT mode ran into. */
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
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "format.h"
#include "journal.h"

static const struct vdfs_cred cred = {0, 0};

static void image_read(const struct fixture *f, void *buf, size_t len, uint64_t off)
{
    int fd = open(f->image, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void image_write(const struct fixture *f, const void *buf, size_t len, uint64_t off)
{
    int fd = open(f->image, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static uint64_t image_size(const struct fixture *f)
{
    struct stat st;
    assert_int_equal(stat(f->image, &st), 0);
    return (uint64_t)st.st_size;
}

static void read_super(const struct fixture *f, struct vdfs_super *sb)
{
    uint8_t buf[VDFS_META_SIZE];
    image_read(f, buf, sizeof(buf), VDFS_SUPER_OFFSET);
    assert_int_equal(vdfs_super_decode(buf, VDFS_SUPER_OFFSET, sb), 0);
}

static int try_mount(struct fixture *f, bool readonly)
{
    struct vdfs_mount_opts o = {.readonly = readonly, .host_uuid = TEST_HOST_UUID, .host_name = "unit-test"};
    return vdfs_mount(f->image, &o, &f->fs);
}

/* A descriptor bitmap whose `first` points past the descriptor region:
 * allocating from it would hand out descriptors beyond the volume and
 * write them outside the region (past the device's end here). */
static void test_bitmap_first_out_of_range(void **state)
{
    struct fixture *f = *state;
    struct vdfs_super sb;
    read_super(f, &sb);
    uint64_t addr = vdfs_bitmap_addr(&sb, VDFS_RT_FD, 0);
    uint8_t buf[VDFS_META_SIZE];
    struct vdfs_bitmap bm;
    image_read(f, buf, sizeof(buf), addr);
    assert_int_equal(vdfs_bitmap_decode(buf, addr, &bm), 0);
    bm.first = sb.region[VDFS_RT_FD].count + 1000000;
    vdfs_bitmap_encode(&bm, buf);
    image_write(f, buf, sizeof(buf), addr);
    uint64_t size = image_size(f);

    fixture_quiet_log();
    int rc = try_mount(f, false);
    if (rc == 0) {
        struct vdfs_stat st;
        rc = vdfs_create(f->fs, vdfs_root_ino(f->fs), "new", S_IFREG | 0644, 0, &cred, &st);
        if (rc == 0)
            rc = vdfs_sync(f->fs);
        vdfs_unmount(f->fs);
        f->fs = NULL;
        assert_true(rc == 0 || rc == -EIO);
    }
    assert_int_equal(rc, -EIO);
    assert_int_equal(image_size(f), size);
}

/* Puts one complete transaction in slot 0's journal (where the next
 * mount's host lands and replays it): `image` to be written at `target`. */
static void journal_one_image(const struct fixture *f, const struct vdfs_super *sb, const uint8_t *image,
                              uint64_t target)
{
    uint8_t buf[VDFS_META_SIZE];
    struct vdfs_jheader jh;
    uint64_t haddr = vdfs_journal_addr(sb, 0, 0);
    image_read(f, buf, sizeof(buf), haddr);
    assert_int_equal(vdfs_jheader_decode(buf, haddr, &jh), 0);
    uint32_t at = jh.start_block < 1 ? 1 : jh.start_block;
    struct vdfs_jdesc *jd = calloc(1, sizeof(*jd));
    assert_non_null(jd);
    jd->hdr.kind = VDFS_KIND_JDESC;
    jd->hdr.addr = vdfs_journal_addr(sb, 0, at);
    jd->hdr.gen = jh.start_seq;
    jd->seq = jh.start_seq;
    jd->count = 1;
    jd->flags = VDFS_JDESC_LAST;
    jd->images_csum = vdfs_checksum(image, VDFS_META_SIZE);
    jd->addrs[0] = target;
    vdfs_jdesc_encode(jd, buf);
    free(jd);
    image_write(f, buf, sizeof(buf), vdfs_journal_addr(sb, 0, at));
    image_write(f, image, VDFS_META_SIZE, vdfs_journal_addr(sb, 0, at + 1));
}

/* Replay writes each image where its descriptor says: a descriptor that
 * names the superblock or an address past the device must not be obeyed. */
static void test_journal_target_outside_metadata(void **state)
{
    struct fixture *f = *state;
    struct vdfs_super sb;
    read_super(f, &sb);
    uint64_t size = image_size(f);
    uint8_t root[VDFS_META_SIZE], past[VDFS_META_SIZE];
    image_read(f, root, sizeof(root), vdfs_fd_addr(&sb, sb.root_ino));

    /* The descriptor's own image, sent over the superblock. */
    journal_one_image(f, &sb, root, VDFS_SUPER_OFFSET);
    fixture_quiet_log();
    assert_int_equal(try_mount(f, false), 0);
    assert_int_equal(vdfs_unmount(f->fs), 0);
    f->fs = NULL;
    read_super(f, &sb);

    /* An image sealed for an address past the device's end. */
    struct vdfs_header h;
    memcpy(past, root, sizeof(past));
    vdfs_obj_read_header(past, &h);
    h.addr = sb.total_bytes + (1u << 20);
    vdfs_obj_seal(past, sizeof(past), &h);
    journal_one_image(f, &sb, past, h.addr);
    assert_int_equal(try_mount(f, false), 0);
    assert_int_equal(vdfs_unmount(f->fs), 0);
    f->fs = NULL;
    assert_int_equal(image_size(f), size);
    assert_int_equal(fixture_fsck(f), 0);
}

static void set_size(const struct fixture *f, const struct vdfs_super *sb, uint32_t ino, uint64_t size)
{
    uint8_t buf[VDFS_META_SIZE];
    struct vdfs_fd fd;
    uint64_t addr = vdfs_fd_addr(sb, ino);
    image_read(f, buf, sizeof(buf), addr);
    assert_int_equal(vdfs_fd_decode(buf, addr, &fd), 0);
    fd.size = size;
    vdfs_fd_encode(&fd, buf);
    image_write(f, buf, sizeof(buf), addr);
}

/* A directory's size says how many blocks it has: one that claims 2^32
 * blocks used to size an 8 GiB allocation before reading any, and one
 * past 2^32 blocks was truncated to a small count. */
static void test_directory_size_corrupt(void **state)
{
    struct fixture *f = *state;
    fixture_mount(f);
    uint32_t dir = fixture_create(f, vdfs_root_ino(f->fs), "d", S_IFDIR | 0755);
    fixture_create(f, dir, "inside", S_IFREG | 0644);
    fixture_unmount(f);
    struct vdfs_super sb;
    read_super(f, &sb);
    fixture_quiet_log();
    const uint64_t sizes[] = {(uint64_t)(UINT32_MAX - 1) * VDFS_META_SIZE, (1ull << 44) + VDFS_META_SIZE};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        set_size(f, &sb, dir, sizes[i]);
        assert_int_equal(try_mount(f, true), 0);
        struct vdfs_stat st;
        assert_int_equal(vdfs_lookup(f->fs, dir, "inside", &st), -EIO);
        assert_int_equal(vdfs_unmount(f->fs), 0);
        f->fs = NULL;
    }
}

/* A bitmap of a later resource type that fails its checksum: the mount
 * used to give up with the earlier types loaded and the later ones not,
 * then commit through every pool on the way out. */
static void test_corrupt_later_bitmap(void **state)
{
    struct fixture *f = *state;
    struct vdfs_super sb;
    read_super(f, &sb);
    uint64_t addr = vdfs_bitmap_addr(&sb, VDFS_RT_SB, 0);
    uint8_t buf[VDFS_META_SIZE];
    image_read(f, buf, sizeof(buf), addr);
    buf[100] ^= 0x5a;
    image_write(f, buf, sizeof(buf), addr);

    fixture_quiet_log();
    assert_int_equal(try_mount(f, false), -EIO);
    assert_int_equal(try_mount(f, true), -EIO);
}

/* mkfs allows at most 256 sub-blocks per file block, the direct slots a
 * sub-block file has; a superblock that claims more would index a
 * descriptor's slots out of bounds. */
static void test_too_many_subblocks_per_block(void **state)
{
    struct fixture *f = *state;
    struct vdfs_super sb;
    read_super(f, &sb);
    assert_int_equal(sb.block_size / sb.subblock_size, VDFS_DIRECT_SLOTS);
    sb.subblock_size /= 2;
    sb.region[VDFS_RT_SB].unit_size = sb.subblock_size;
    uint8_t buf[VDFS_META_SIZE];
    vdfs_super_encode(&sb, buf);
    image_write(f, buf, sizeof(buf), VDFS_SUPER_OFFSET);

    fixture_quiet_log();
    int rc = try_mount(f, false);
    if (rc == 0) {
        /* What the geometry would lead to: a sub-block file's unit past
         * its direct slots. */
        struct vdfs_stat st;
        char data[4096];
        memset(data, 'd', sizeof(data));
        rc = vdfs_create(f->fs, vdfs_root_ino(f->fs), "sub", S_IFREG | 0644, 0, &cred, &st);
        if (rc == 0)
            vdfs_pwrite(f->fs, st.ino, data, sizeof(data), (uint64_t)sb.block_size - sizeof(data));
        vdfs_unmount(f->fs);
        f->fs = NULL;
    }
    assert_int_equal(rc, -EINVAL);
}

/* A copy of a mounted image has a host that is gone (no process holds its
 * liveness lock) with the metadata lock held: a mount recovers its slot
 * and drops its locks, reading the whole lock area.  With 1028 records
 * that is not whole 4 KiB blocks, which O_DIRECT refused (EINVAL).  (Only
 * where TMPDIR takes O_DIRECT, e.g. ext4 or xfs, not tmpfs, could this
 * fail before the fix.) */
static void test_recover_dead_host_lock_area_not_whole_blocks(void **state)
{
    struct fixture *f = *state;
    struct vdfs_super sb;
    read_super(f, &sb);
    assert_int_not_equal(sb.lock_count % (VDFS_META_SIZE / VDFS_SECTOR_SIZE), 0);
    fixture_mount(f);
    fixture_create(f, vdfs_root_ino(f->fs), "before-crash", S_IFREG | 0644);
    assert_int_equal(vdfs_sync(f->fs), 0);
    char copy[320];
    snprintf(copy, sizeof(copy), "%s/copy", f->dir);
    uint64_t size = image_size(f);
    uint8_t *buf = malloc(1u << 20);
    assert_non_null(buf);
    int out = open(copy, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(out >= 0);
    for (uint64_t off = 0; off < size; off += 1u << 20) {
        size_t n = size - off < (1u << 20) ? (size_t)(size - off) : (1u << 20);
        image_read(f, buf, n, off);
        assert_int_equal(pwrite(out, buf, n, (off_t)off), (ssize_t)n);
    }
    close(out);
    free(buf);
    fixture_unmount(f);

    fixture_quiet_log();
    struct vdfs_mount_opts o = {.host_uuid = "7e57e57e-0000-4000-8000-000000000002", .host_name = "survivor"};
    struct vdfs *fs;
    assert_int_equal(vdfs_mount(copy, &o, &fs), 0);
    struct vdfs_stat st;
    assert_int_equal(vdfs_lookup(fs, vdfs_root_ino(fs), "before-crash", &st), 0);
    assert_int_equal(vdfs_unmount(fs), 0);
    unlink(copy);
}

/* A REPLAYING slot (its replayer died too) that owns the metadata lock
 * and advertises a timeout no host may run with: observers must judge it
 * by their own timeout, or nobody could ever take the lock again. */
static void test_slot_advertising_impossible_timeout(void **state)
{
    struct fixture *f = *state;
    struct vdfs_super sb;
    read_super(f, &sb);
    uint8_t sector[VDFS_SECTOR_SIZE];
    uint64_t hb_addr = vdfs_heartbeat_addr(&sb, 1);
    struct vdfs_heartbeat hb;
    image_read(f, sector, sizeof(sector), hb_addr);
    assert_int_equal(vdfs_heartbeat_decode(sector, hb_addr, &hb), 0);
    hb.state = VDFS_HB_REPLAYING;
    hb.slot = 1;
    memset(hb.host_uuid, 0x5a, sizeof(hb.host_uuid));
    hb.hb_gen++;
    hb.counter = 7;
    hb.interval_ms = 1000;
    hb.timeout_ms = 0xfffffff0u;
    hb.replayer_slot = 2;
    vdfs_heartbeat_encode(&hb, sector);
    image_write(f, sector, sizeof(sector), hb_addr);

    uint64_t lock_addr = vdfs_lock_addr(&sb, vdfs_fd_lock_index(&sb, 0));
    struct vdfs_lock_rec l;
    image_read(f, sector, sizeof(sector), lock_addr);
    assert_int_equal(vdfs_lock_decode(sector, lock_addr, &l), 0);
    l.mode = VDFS_LOCK_EXCLUSIVE;
    l.owner_slot = 1;
    l.owner_hb_gen = hb.hb_gen;
    vdfs_lock_encode(&l, sector);
    image_write(f, sector, sizeof(sector), lock_addr);

    fixture_quiet_log();
    struct vdfs_mount_opts o = {.host_uuid = TEST_HOST_UUID, .host_name = "unit-test", .hb_interval_ms = 100,
                                .hb_timeout_ms = 1000};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(vdfs_mount(f->image, &o, &f->fs), 0);
    struct vdfs_stat st;
    assert_int_equal(vdfs_create(f->fs, vdfs_root_ino(f->fs), "after", S_IFREG | 0644, 0, &cred, &st), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* Our timeout and a take-over, not the 30 s give-up. */
    assert_true(t1.tv_sec - t0.tv_sec < 10);
    assert_int_equal(vdfs_unmount(f->fs), 0);
    f->fs = NULL;
    assert_int_equal(fixture_fsck(f), 0);

    /* And no host may ask for such a timeout. */
    o.hb_timeout_ms = VDFS_HB_TIMEOUT_MAX_MS + 1;
    assert_int_equal(vdfs_mount(f->image, &o, &f->fs), -EINVAL);
}

static int setup(void **state)
{
    return fixture_setup(state, "64M", (const char *const[]){"-H", "4", "-J", "1M", NULL}, false);
}

static int setup_big_blocks(void **state)
{
    return fixture_setup(state, "64M", (const char *const[]){"-H", "4", "-J", "1M", "-b", "2M", "-s", "8K", NULL},
                         false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bitmap_first_out_of_range, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_later_bitmap, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_directory_size_corrupt, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_journal_target_outside_metadata, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_recover_dead_host_lock_area_not_whole_blocks, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_slot_advertising_impossible_timeout, setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_too_many_subblocks_per_block, setup_big_blocks, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

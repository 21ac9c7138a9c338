/* Little-endian helpers, codec round trips and the semantic checks of
 * every decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "format.h"
#include "samples.h"

/* ---- little-endian helpers ---------------------------------------------- */

static void test_le_byte_order(void **state)
{
    vdfs_le16 a = vdfs_put16(0x1234);
    assert_int_equal(a.b[0], 0x34);
    assert_int_equal(a.b[1], 0x12);

    vdfs_le32 b = vdfs_put32(0x80a1b2c3u);
    const uint8_t b_expect[4] = { 0xc3, 0xb2, 0xa1, 0x80 };
    assert_memory_equal(b.b, b_expect, 4);

    vdfs_le64 c = vdfs_put64(0x8899aabbccddeeffull);
    const uint8_t c_expect[8] = { 0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88 };
    assert_memory_equal(c.b, c_expect, 8);

    vdfs_le16 d = { { 0xfe, 0xff } };
    assert_int_equal(vdfs_get16(d), 0xfffe);
    vdfs_le32 e = { { 0x01, 0x00, 0x00, 0x80 } };
    assert_int_equal(vdfs_get32(e), 0x80000001u);
    vdfs_le64 f = { { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0xf8 } };
    assert_true(vdfs_get64(f) == 0xf807060504030201ull);
}

static void test_le_round_trip(void **state)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        assert_int_equal(vdfs_get16(vdfs_put16((uint16_t)x)), (uint16_t)x);
        assert_int_equal(vdfs_get32(vdfs_put32((uint32_t)x)), (uint32_t)x);
        assert_true(vdfs_get64(vdfs_put64(x)) == x);
    }
    assert_true(vdfs_get64(vdfs_put64(UINT64_MAX)) == UINT64_MAX);
    assert_true(vdfs_get64(vdfs_put64(0)) == 0);
}

static void test_checksum_is_xxh3_without_csum_field(void **state)
{
    uint8_t buf[VDFS_META_SIZE];
    for (unsigned i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7);
    struct vdfs_header h = { VDFS_KIND_PB, 0x5000, 9 };
    vdfs_obj_seal(buf, sizeof(buf), &h);

    vdfs_le64 stored;
    memcpy(&stored, buf + 24, 8);
    uint8_t copy[VDFS_META_SIZE];
    memcpy(copy, buf, sizeof(copy));
    memset(copy + 24, 0, 8);
    assert_true(vdfs_get64(stored) == vdfs_checksum(copy, sizeof(copy)));
    assert_int_equal(vdfs_obj_verify(buf, sizeof(buf), VDFS_KIND_PB, 0x5000), 0);

    vdfs_le32 magic;
    memcpy(&magic, buf, 4);
    assert_int_equal(vdfs_get32(magic), VDFS_MAGIC);
    assert_memory_equal(buf, "VDFS", 4);

    struct vdfs_header back;
    vdfs_obj_read_header(buf, &back);
    assert_int_equal(back.kind, VDFS_KIND_PB);
    assert_true(back.addr == 0x5000);
    assert_true(back.gen == 9);

    /* Bytes after the header are unchanged by sealing. */
    for (unsigned i = 32; i < sizeof(buf); i++)
        assert_int_equal(buf[i], (uint8_t)(i * 7));
}

/* ---- round trips -------------------------------------------------------- */

static void assert_header_equal(const struct vdfs_header *a, const struct vdfs_header *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_true(a->addr == b->addr);
    assert_true(a->gen == b->gen);
}

static void assert_region_equal(const struct vdfs_region *a, const struct vdfs_region *b)
{
    assert_true(a->start == b->start);
    assert_true(a->count == b->count);
    assert_int_equal(a->unit_size, b->unit_size);
    assert_int_equal(a->per_cluster, b->per_cluster);
    assert_int_equal(a->clusters, b->clusters);
    assert_true(a->bitmap_offset == b->bitmap_offset);
    assert_true(a->lock_index == b->lock_index);
}

static void test_super_round_trip(void **state)
{
    struct vdfs_super in, out;
    uint8_t buf[VDFS_META_SIZE];
    sample_super(&in, 0);
    vdfs_super_encode(&in, buf);
    memset(&out, 0xcc, sizeof(out));
    assert_int_equal(vdfs_super_decode(buf, 0, &out), 0);
    assert_header_equal(&out.hdr, &in.hdr);
    assert_int_equal(out.version, VDFS_FORMAT_VERSION);
    assert_int_equal(out.compat, in.compat);
    assert_int_equal(out.incompat, 0);
    assert_int_equal(out.ro_compat, 0);
    assert_memory_equal(out.uuid, in.uuid, VDFS_UUID_SIZE);
    assert_string_equal(out.label, in.label);
    assert_true(out.created_ns == in.created_ns);
    assert_true(out.total_bytes == in.total_bytes);
    assert_int_equal(out.block_size, in.block_size);
    assert_int_equal(out.subblock_size, in.subblock_size);
    assert_int_equal(out.max_hosts, in.max_hosts);
    assert_int_equal(out.journal_blocks, in.journal_blocks);
    assert_true(out.heartbeat_offset == in.heartbeat_offset);
    assert_true(out.lock_offset == in.lock_offset);
    assert_true(out.lock_count == in.lock_count);
    assert_true(out.journal_offset == in.journal_offset);
    assert_true(out.backup_offset == in.backup_offset);
    assert_true(out.fd_lock_index == in.fd_lock_index);
    assert_int_equal(out.root_ino, in.root_ino);
    assert_int_equal(out.lostfound_ino, in.lostfound_ino);
    assert_int_equal(out.hb_interval_ms, in.hb_interval_ms);
    assert_int_equal(out.hb_timeout_ms, in.hb_timeout_ms);
    for (unsigned t = 0; t < VDFS_RT_COUNT; t++)
        assert_region_equal(&out.region[t], &in.region[t]);

    /* The backup copy decodes at its own address only. */
    in.hdr.addr = in.backup_offset;
    vdfs_super_encode(&in, buf);
    assert_int_equal(vdfs_super_decode(buf, in.backup_offset, &out), 0);
    assert_int_equal(vdfs_super_decode(buf, 0, &out), -EIO);
}

static void test_super_label_field(void **state)
{
    struct vdfs_super in, out;
    uint8_t buf[VDFS_META_SIZE];
    sample_super(&in, 0);
    strcpy(in.label, "datastore1");
    vdfs_super_encode(&in, buf);
    /* The rest of the 64-byte field is zero on disk. */
    size_t label_off = offsetof(struct vdfs_disk_super, label);
    assert_memory_equal(buf + label_off, "datastore1", 10);
    for (size_t i = 10; i < VDFS_LABEL_SIZE; i++)
        assert_int_equal(buf[label_off + i], 0);
    assert_int_equal(vdfs_super_decode(buf, 0, &out), 0);
    assert_string_equal(out.label, "datastore1");

    /* A full 64-byte label has no NUL on disk and gets one natively. */
    memset(in.label, 'z', VDFS_LABEL_SIZE);
    in.label[VDFS_LABEL_SIZE] = '\0';
    vdfs_super_encode(&in, buf);
    memset(&out, 0xcc, sizeof(out));
    assert_int_equal(vdfs_super_decode(buf, 0, &out), 0);
    assert_int_equal(strlen(out.label), VDFS_LABEL_SIZE);
    assert_int_equal(out.label[VDFS_LABEL_SIZE], '\0');
}

static void test_heartbeat_round_trip(void **state)
{
    struct vdfs_heartbeat in, out;
    uint8_t buf[VDFS_SECTOR_SIZE];
    sample_heartbeat(&in, SAMPLE_ADDR);
    vdfs_heartbeat_encode(&in, buf);
    memset(&out, 0xcc, sizeof(out));
    assert_int_equal(vdfs_heartbeat_decode(buf, SAMPLE_ADDR, &out), 0);
    assert_header_equal(&out.hdr, &in.hdr);
    assert_int_equal(out.state, in.state);
    assert_int_equal(out.slot, in.slot);
    assert_memory_equal(out.host_uuid, in.host_uuid, VDFS_UUID_SIZE);
    assert_true(out.hb_gen == in.hb_gen);
    assert_true(out.counter == in.counter);
    assert_true(out.stamp_ns == in.stamp_ns);
    assert_int_equal(out.interval_ms, in.interval_ms);
    assert_int_equal(out.pid, in.pid);
    assert_int_equal(out.replayer_slot, in.replayer_slot);
    assert_int_equal(out.replayer_hb_gen, in.replayer_hb_gen);
    assert_int_equal(out.flags, in.flags);
    assert_string_equal(out.hostname, in.hostname);
}

static void test_lock_round_trip(void **state)
{
    struct vdfs_lock_rec in, out;
    uint8_t buf[VDFS_SECTOR_SIZE];
    sample_lock(&in, SAMPLE_ADDR);
    vdfs_lock_encode(&in, buf);
    memset(&out, 0xcc, sizeof(out));
    assert_int_equal(vdfs_lock_decode(buf, SAMPLE_ADDR, &out), 0);
    assert_header_equal(&out.hdr, &in.hdr);
    assert_int_equal(out.mode, in.mode);
    assert_int_equal(out.owner_slot, in.owner_slot);
    assert_true(out.owner_hb_gen == in.owner_hb_gen);
    assert_true(out.object == in.object);
    assert_true(out.acquired_ns == in.acquired_ns);
    assert_int_equal(out.nholders, in.nholders);
    for (unsigned i = 0; i < VDFS_LOCK_HOLDERS; i++) {
        assert_int_equal(out.holders[i].slot, in.holders[i].slot);
        assert_int_equal(out.holders[i].hb_gen, in.holders[i].hb_gen);
    }
}

static void test_bitmap_round_trip(void **state)
{
    static struct vdfs_bitmap in, out;
    uint8_t buf[VDFS_META_SIZE];
    sample_bitmap(&in, SAMPLE_ADDR);
    vdfs_bitmap_encode(&in, buf);
    memset(&out, 0xcc, sizeof(out));
    assert_int_equal(vdfs_bitmap_decode(buf, SAMPLE_ADDR, &out), 0);
    assert_header_equal(&out.hdr, &in.hdr);
    assert_int_equal(out.rtype, in.rtype);
    assert_int_equal(out.cluster, in.cluster);
    assert_true(out.first == in.first);
    assert_int_equal(out.count, in.count);
    assert_int_equal(out.free, in.free);
    assert_int_equal(out.affinity, in.affinity);
    assert_memory_equal(out.bits, in.bits, VDFS_BITMAP_BYTES);
}

static void assert_fd_meta_equal(const struct vdfs_fd *a, const struct vdfs_fd *b)
{
    assert_header_equal(&a->hdr, &b->hdr);
    assert_int_equal(a->ino, b->ino);
    assert_int_equal(a->mode, b->mode);
    assert_int_equal(a->uid, b->uid);
    assert_int_equal(a->gid, b->gid);
    assert_int_equal(a->nlink, b->nlink);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->addr_mode, b->addr_mode);
    assert_int_equal(a->xattr_len, b->xattr_len);
    assert_true(a->size == b->size);
    assert_true(a->alloc_bytes == b->alloc_bytes);
    assert_int_equal(a->parent, b->parent);
    assert_int_equal(a->ino_gen, b->ino_gen);
    const struct vdfs_timespec *ta[] = { &a->atime, &a->mtime, &a->ctime, &a->btime };
    const struct vdfs_timespec *tb[] = { &b->atime, &b->mtime, &b->ctime, &b->btime };
    for (int i = 0; i < 4; i++) {
        assert_true(ta[i]->sec == tb[i]->sec);
        assert_int_equal(ta[i]->nsec, tb[i]->nsec);
    }
    assert_int_equal(a->rdev, b->rdev);
    assert_memory_equal(a->xattr, b->xattr, VDFS_XATTR_BYTES);
}

static void test_fd_block_round_trip(void **state)
{
    static struct vdfs_fd in, out;
    uint8_t buf[VDFS_META_SIZE];
    sample_fd_block(&in, SAMPLE_ADDR);
    vdfs_fd_encode(&in, buf);
    memset(&out, 0xcc, sizeof(out));
    assert_int_equal(vdfs_fd_decode(buf, SAMPLE_ADDR, &out), 0);
    assert_fd_meta_equal(&out, &in);
    for (unsigned i = 0; i < VDFS_SLOTS; i++)
        assert_int_equal(out.data.slots[i], in.data.slots[i]);
    assert_true(out.atime.sec == -1);
    assert_true(out.btime.sec == -0x100000000ll);

    /* Slots are little-endian on disk, starting at the data area. */
    size_t data_off = offsetof(struct vdfs_disk_fd, data);
    vdfs_le32 slot5;
    memcpy(&slot5, buf + data_off + 5 * 4, 4);
    assert_int_equal(vdfs_get32(slot5), in.data.slots[5]);
    /* The data area past the slots is zero. */
    for (size_t i = VDFS_SLOTS * 4; i < VDFS_DATA_AREA; i++)
        assert_int_equal(buf[data_off + i], 0);

    /* The SUB mode uses the same slot encoding. */
    in.addr_mode = VDFS_AM_SUB;
    vdfs_fd_encode(&in, buf);
    assert_int_equal(vdfs_fd_decode(buf, SAMPLE_ADDR, &out), 0);
    assert_int_equal(out.addr_mode, VDFS_AM_SUB);
    assert_memory_equal(out.data.slots, in.data.slots, sizeof(in.data.slots));
}

static void test_fd_resident_round_trip(void **state)
{
    static struct vdfs_fd in, out;
    uint8_t buf[VDFS_META_SIZE];
    sample_fd_resident(&in, SAMPLE_ADDR);
    vdfs_fd_encode(&in, buf);
    memset(&out, 0xcc, sizeof(out));
    assert_int_equal(vdfs_fd_decode(buf, SAMPLE_ADDR, &out), 0);
    assert_fd_meta_equal(&out, &in);
    assert_memory_equal(out.data.resident, in.data.resident, VDFS_DATA_AREA);
    /* Resident bytes are stored raw. */
    assert_memory_equal(buf + offsetof(struct vdfs_disk_fd, data), in.data.resident, VDFS_DATA_AREA);
}

static void test_pb_round_trip(void **state)
{
    static struct vdfs_pb in, out;
    uint8_t buf[VDFS_META_SIZE];
    sample_pb(&in, SAMPLE_ADDR);
    vdfs_pb_encode(&in, buf);
    memset(&out, 0xcc, sizeof(out));
    assert_int_equal(vdfs_pb_decode(buf, SAMPLE_ADDR, &out), 0);
    assert_header_equal(&out.hdr, &in.hdr);
    assert_int_equal(out.owner_ino, in.owner_ino);
    assert_int_equal(out.level, in.level);
    for (unsigned i = 0; i < VDFS_PB_ENTRIES; i++)
        assert_int_equal(out.entries[i], in.entries[i]);
}

static void test_dirblock_round_trip(void **state)
{
    static struct vdfs_dirblock in, out;
    uint8_t buf[VDFS_META_SIZE];
    sample_dir(&in, SAMPLE_ADDR);
    assert_int_equal(in.nentries, 4);
    vdfs_dirblock_encode(&in, buf);
    memset(&out, 0xcc, sizeof(out));
    assert_int_equal(vdfs_dirblock_decode(buf, SAMPLE_ADDR, &out), 0);
    assert_header_equal(&out.hdr, &in.hdr);
    assert_int_equal(out.owner_ino, in.owner_ino);
    assert_int_equal(out.nentries, in.nentries);
    assert_int_equal(out.used, in.used);
    assert_memory_equal(out.entries, in.entries, in.used);
    /* Free space after `used` is stored as zeros. */
    for (unsigned i = in.used; i < VDFS_DIR_AREA; i++)
        assert_int_equal(out.entries[i], 0);
}

static void test_dirblock_full_and_empty(void **state)
{
    static struct vdfs_dirblock in, out;
    uint8_t buf[VDFS_META_SIZE];

    memset(&in, 0, sizeof(in));
    in.hdr.addr = SAMPLE_ADDR;
    vdfs_dirblock_encode(&in, buf);
    assert_int_equal(vdfs_dirblock_decode(buf, SAMPLE_ADDR, &out), 0);
    assert_int_equal(out.nentries, 0);

    /* Fill the area exactly to its last byte. */
    char name[VDFS_NAME_MAX + 1];
    memset(name, 'n', sizeof(name));
    unsigned n = 0;
    while (VDFS_DIR_AREA - in.used >= VDFS_DIRENT_FIXED + 1) {
        size_t room = VDFS_DIR_AREA - in.used - VDFS_DIRENT_FIXED;
        size_t len = room > 200 ? 200 : room;
        name[len] = '\0';
        assert_true(dir_append(&in, 10 + n++, 8, name));
        name[len] = 'n';
    }
    assert_int_equal(in.used, VDFS_DIR_AREA);
    vdfs_dirblock_encode(&in, buf);
    assert_int_equal(vdfs_dirblock_decode(buf, SAMPLE_ADDR, &out), 0);
    assert_int_equal(out.nentries, n);
    assert_int_equal(out.used, VDFS_DIR_AREA);
}

static void test_jheader_round_trip(void **state)
{
    struct vdfs_jheader in, out;
    uint8_t buf[VDFS_META_SIZE];
    sample_jheader(&in, SAMPLE_ADDR);
    vdfs_jheader_encode(&in, buf);
    memset(&out, 0xcc, sizeof(out));
    assert_int_equal(vdfs_jheader_decode(buf, SAMPLE_ADDR, &out), 0);
    assert_header_equal(&out.hdr, &in.hdr);
    assert_int_equal(out.slot, in.slot);
    assert_true(out.start_seq == in.start_seq);
    assert_int_equal(out.start_block, in.start_block);
    assert_memory_equal(out.host_uuid, in.host_uuid, VDFS_UUID_SIZE);
}

static void test_jdesc_round_trip(void **state)
{
    static struct vdfs_jdesc in, out;
    uint8_t buf[VDFS_META_SIZE];
    sample_jdesc(&in, SAMPLE_ADDR);
    vdfs_jdesc_encode(&in, buf);
    memset(&out, 0xcc, sizeof(out));
    assert_int_equal(vdfs_jdesc_decode(buf, SAMPLE_ADDR, &out), 0);
    assert_header_equal(&out.hdr, &in.hdr);
    assert_true(out.seq == in.seq);
    assert_int_equal(out.count, in.count);
    assert_int_equal(out.flags, in.flags);
    assert_true(out.images_csum == in.images_csum);
    for (unsigned i = 0; i < VDFS_JDESC_ADDRS; i++)
        assert_true(out.addrs[i] == in.addrs[i]);
}

/* Encoding ignores whatever the caller left in hdr.kind: the codec decides. */
static void test_encode_writes_own_kind(void **state)
{
    static struct vdfs_pb pb, out;
    uint8_t buf[VDFS_META_SIZE];
    sample_pb(&pb, SAMPLE_ADDR);
    pb.hdr.kind = VDFS_KIND_SUPER;
    vdfs_pb_encode(&pb, buf);
    assert_int_equal(vdfs_pb_decode(buf, SAMPLE_ADDR, &out), 0);
    assert_int_equal(out.hdr.kind, VDFS_KIND_PB);
}

/* ---- semantic checks ---------------------------------------------------- */

static int super_with(void (*mutate)(struct vdfs_super *))
{
    struct vdfs_super s, out;
    uint8_t buf[VDFS_META_SIZE];
    sample_super(&s, 0);
    mutate(&s);
    vdfs_super_encode(&s, buf);
    return vdfs_super_decode(buf, 0, &out);
}

static void m_none(struct vdfs_super *s) { (void)s; }
static void m_version(struct vdfs_super *s) { s->version = 2; }
static void m_incompat(struct vdfs_super *s) { s->incompat = 1u << 7; }
static void m_ro_compat(struct vdfs_super *s) { s->ro_compat = 1u << 3; }
static void m_block_not_pow2(struct vdfs_super *s)
{
    s->block_size = 3u << 19;
    s->region[VDFS_RT_FB].unit_size = s->block_size;
}
static void m_sub_not_pow2(struct vdfs_super *s)
{
    s->subblock_size = 48u << 10;
    s->region[VDFS_RT_SB].unit_size = s->subblock_size;
}
static void m_sub_too_small(struct vdfs_super *s)
{
    s->subblock_size = 2048;
    s->region[VDFS_RT_SB].unit_size = 2048;
}
static void m_sub_above_block(struct vdfs_super *s)
{
    s->subblock_size = 2u << 20;
    s->region[VDFS_RT_SB].unit_size = s->subblock_size;
}
static void m_block_too_big(struct vdfs_super *s)
{
    s->block_size = 128u << 20;
    s->region[VDFS_RT_FB].unit_size = s->block_size;
}
static void m_unit_mismatch(struct vdfs_super *s) { s->region[VDFS_RT_PB].unit_size = 8192; }
static void m_hosts_zero(struct vdfs_super *s) { s->max_hosts = 0; }
static void m_hosts_65(struct vdfs_super *s) { s->max_hosts = 65; }
static void m_overlap(struct vdfs_super *s) { s->region[VDFS_RT_PB].start -= VDFS_META_SIZE; }
static void m_bitmap_overlap(struct vdfs_super *s)
{
    s->region[VDFS_RT_SB].bitmap_offset = s->region[VDFS_RT_FB].bitmap_offset;
}
static void m_journal_overlap(struct vdfs_super *s) { s->journal_offset = s->lock_offset; }
static void m_backup_overlap(struct vdfs_super *s) { s->backup_offset = s->region[VDFS_RT_FB].start; }
static void m_backup_at_zero(struct vdfs_super *s) { s->backup_offset = 0; }
static void m_outside(struct vdfs_super *s) { s->total_bytes -= 2ull * s->block_size; }
static void m_start_overflow(struct vdfs_super *s) { s->region[VDFS_RT_FD].start = UINT64_MAX - 4095; }
static void m_count_overflow(struct vdfs_super *s) { s->region[VDFS_RT_FB].count = UINT64_MAX / 2; }
static void m_per_cluster_big(struct vdfs_super *s)
{
    s->region[VDFS_RT_SB].per_cluster = VDFS_BITMAP_BITS + 1;
    s->region[VDFS_RT_SB].clusters = 3;
}
static void m_per_cluster_zero(struct vdfs_super *s) { s->region[VDFS_RT_SB].per_cluster = 0; }
/* Within what a bitmap block can describe and consistent with its count,
 * but not what mkfs writes. */
static void m_per_cluster_other(struct vdfs_super *s)
{
    struct vdfs_region *r = &s->region[VDFS_RT_FB];
    r->per_cluster = VDFS_BITMAP_BITS;
    r->clusters = (uint32_t)((r->count + VDFS_BITMAP_BITS - 1) / VDFS_BITMAP_BITS);
}
static void m_clusters_wrong(struct vdfs_super *s) { s->region[VDFS_RT_FD].clusters += 1; }
static void m_lock_overlap(struct vdfs_super *s) { s->fd_lock_index -= 1; }
static void m_lock_outside(struct vdfs_super *s) { s->lock_count -= 1; }
static void m_root_outside(struct vdfs_super *s) { s->root_ino = (uint32_t)s->region[VDFS_RT_FD].count; }
static void m_journal_zero(struct vdfs_super *s) { s->journal_blocks = 0; }

static void test_super_semantics(void **state)
{
    assert_int_equal(super_with(m_none), 0);
    assert_int_equal(super_with(m_version), -EIO);
    assert_int_equal(super_with(m_incompat), -EOPNOTSUPP);
    assert_int_equal(super_with(m_ro_compat), 0); /* the mount decides: read-only */
    assert_int_equal(super_with(m_block_not_pow2), -EINVAL);
    assert_int_equal(super_with(m_sub_not_pow2), -EINVAL);
    assert_int_equal(super_with(m_sub_too_small), -EINVAL);
    assert_int_equal(super_with(m_sub_above_block), -EINVAL);
    assert_int_equal(super_with(m_block_too_big), -EINVAL);
    assert_int_equal(super_with(m_unit_mismatch), -EINVAL);
    assert_int_equal(super_with(m_hosts_zero), -EINVAL);
    assert_int_equal(super_with(m_hosts_65), -EINVAL);
    assert_int_equal(super_with(m_overlap), -EINVAL);
    assert_int_equal(super_with(m_bitmap_overlap), -EINVAL);
    assert_int_equal(super_with(m_journal_overlap), -EINVAL);
    assert_int_equal(super_with(m_backup_overlap), -EINVAL);
    assert_int_equal(super_with(m_backup_at_zero), -EINVAL);
    assert_int_equal(super_with(m_outside), -EINVAL);
    assert_int_equal(super_with(m_count_overflow), -EINVAL);
    assert_int_equal(super_with(m_start_overflow), -EINVAL);
    assert_int_equal(super_with(m_per_cluster_big), -EINVAL);
    assert_int_equal(super_with(m_per_cluster_zero), -EINVAL);
    assert_int_equal(super_with(m_per_cluster_other), -EINVAL);
    assert_int_equal(super_with(m_clusters_wrong), -EINVAL);
    assert_int_equal(super_with(m_lock_overlap), -EINVAL);
    assert_int_equal(super_with(m_lock_outside), -EINVAL);
    assert_int_equal(super_with(m_root_outside), -EINVAL);
    assert_int_equal(super_with(m_journal_zero), -EINVAL);
}

static void test_heartbeat_semantics(void **state)
{
    struct vdfs_heartbeat h, out;
    uint8_t buf[VDFS_SECTOR_SIZE];
    for (uint32_t st = 0; st <= 3; st++) {
        sample_heartbeat(&h, SAMPLE_ADDR);
        h.state = st;
        vdfs_heartbeat_encode(&h, buf);
        assert_int_equal(vdfs_heartbeat_decode(buf, SAMPLE_ADDR, &out), st <= 2 ? 0 : -EIO);
    }
    sample_heartbeat(&h, SAMPLE_ADDR);
    h.state = 0xffffffffu;
    vdfs_heartbeat_encode(&h, buf);
    assert_int_equal(vdfs_heartbeat_decode(buf, SAMPLE_ADDR, &out), -EIO);
}

static void test_lock_semantics(void **state)
{
    struct vdfs_lock_rec l, out;
    uint8_t buf[VDFS_SECTOR_SIZE];
    for (uint32_t mode = 0; mode <= 4; mode++) {
        sample_lock(&l, SAMPLE_ADDR);
        l.mode = mode;
        vdfs_lock_encode(&l, buf);
        assert_int_equal(vdfs_lock_decode(buf, SAMPLE_ADDR, &out), mode <= 3 ? 0 : -EIO);
    }
    sample_lock(&l, SAMPLE_ADDR);
    l.nholders = VDFS_LOCK_HOLDERS + 1;
    vdfs_lock_encode(&l, buf);
    assert_int_equal(vdfs_lock_decode(buf, SAMPLE_ADDR, &out), -EIO);
    l.nholders = 0;
    vdfs_lock_encode(&l, buf);
    assert_int_equal(vdfs_lock_decode(buf, SAMPLE_ADDR, &out), 0);
}

static void test_bitmap_semantics(void **state)
{
    static struct vdfs_bitmap b, out;
    uint8_t buf[VDFS_META_SIZE];

    sample_bitmap(&b, SAMPLE_ADDR);
    b.count = VDFS_BITMAP_BITS;
    b.free = VDFS_BITMAP_BITS;
    vdfs_bitmap_encode(&b, buf);
    assert_int_equal(vdfs_bitmap_decode(buf, SAMPLE_ADDR, &out), 0);

    b.count = VDFS_BITMAP_BITS + 1;
    vdfs_bitmap_encode(&b, buf);
    assert_int_equal(vdfs_bitmap_decode(buf, SAMPLE_ADDR, &out), -EIO);

    sample_bitmap(&b, SAMPLE_ADDR);
    b.free = b.count + 1;
    vdfs_bitmap_encode(&b, buf);
    assert_int_equal(vdfs_bitmap_decode(buf, SAMPLE_ADDR, &out), -EIO);

    sample_bitmap(&b, SAMPLE_ADDR);
    b.rtype = VDFS_RT_COUNT;
    vdfs_bitmap_encode(&b, buf);
    assert_int_equal(vdfs_bitmap_decode(buf, SAMPLE_ADDR, &out), -EIO);
}

static void test_fd_semantics(void **state)
{
    static struct vdfs_fd fd, out;
    uint8_t buf[VDFS_META_SIZE];

    sample_fd_block(&fd, SAMPLE_ADDR);
    fd.addr_mode = 3;
    vdfs_fd_encode(&fd, buf);
    assert_int_equal(vdfs_fd_decode(buf, SAMPLE_ADDR, &out), -EIO);
    assert_int_equal(vdfs_fd_decode_verified(buf, &out), -EIO); /* the field checks stay */

    sample_fd_block(&fd, SAMPLE_ADDR);
    fd.xattr_len = VDFS_XATTR_BYTES + 1;
    vdfs_fd_encode(&fd, buf);
    assert_int_equal(vdfs_fd_decode(buf, SAMPLE_ADDR, &out), -EIO);

    sample_fd_resident(&fd, SAMPLE_ADDR);
    fd.size = VDFS_RESIDENT_MAX + 1;
    vdfs_fd_encode(&fd, buf);
    assert_int_equal(vdfs_fd_decode(buf, SAMPLE_ADDR, &out), -EIO);

    /* Large sizes are fine outside the resident mode. */
    sample_fd_block(&fd, SAMPLE_ADDR);
    fd.size = UINT64_MAX;
    vdfs_fd_encode(&fd, buf);
    assert_int_equal(vdfs_fd_decode(buf, SAMPLE_ADDR, &out), 0);

    /* An image the cache verified decodes the same without the seal check,
     * which is all it skips: a broken seal is vdfs_fd_decode's to see. */
    static struct vdfs_fd verified;
    assert_int_equal(vdfs_fd_decode_verified(buf, &verified), 0);
    assert_memory_equal(&verified, &out, sizeof(out));
    buf[VDFS_META_SIZE - 1] ^= 1;
    assert_int_equal(vdfs_fd_decode(buf, SAMPLE_ADDR, &out), -EIO);
    assert_int_equal(vdfs_fd_decode_verified(buf, &out), 0);
}

static void test_pb_semantics(void **state)
{
    static struct vdfs_pb pb, out;
    uint8_t buf[VDFS_META_SIZE];
    for (uint32_t level = 0; level <= 3; level++) {
        sample_pb(&pb, SAMPLE_ADDR);
        pb.level = level;
        vdfs_pb_encode(&pb, buf);
        assert_int_equal(vdfs_pb_decode(buf, SAMPLE_ADDR, &out), level == 1 || level == 2 ? 0 : -EIO);
    }
}

static int dir_decode_rc(const struct vdfs_dirblock *d)
{
    static struct vdfs_dirblock out;
    uint8_t buf[VDFS_META_SIZE];
    vdfs_dirblock_encode(d, buf);
    return vdfs_dirblock_decode(buf, d->hdr.addr, &out);
}

static void test_dirblock_semantics(void **state)
{
    static struct vdfs_dirblock d;

    sample_dir(&d, SAMPLE_ADDR);
    assert_int_equal(dir_decode_rc(&d), 0);

    /* `used` beyond the area (encode copies only the area). */
    sample_dir(&d, SAMPLE_ADDR);
    d.used = VDFS_DIR_AREA + 1;
    assert_int_equal(dir_decode_rc(&d), -EIO);

    /* Entry count disagrees with the entries. */
    sample_dir(&d, SAMPLE_ADDR);
    d.nentries++;
    assert_int_equal(dir_decode_rc(&d), -EIO);
    d.nentries -= 2;
    assert_int_equal(dir_decode_rc(&d), -EIO);

    /* ino 0. */
    memset(&d, 0, sizeof(d));
    d.hdr.addr = SAMPLE_ADDR;
    dir_append(&d, 0, 8, "zero");
    assert_int_equal(dir_decode_rc(&d), -EIO);

    /* Empty name. */
    memset(&d, 0, sizeof(d));
    d.hdr.addr = SAMPLE_ADDR;
    dir_append(&d, 3, 8, "");
    assert_int_equal(dir_decode_rc(&d), -EIO);

    /* '/' and NUL inside a name. */
    memset(&d, 0, sizeof(d));
    d.hdr.addr = SAMPLE_ADDR;
    dir_append(&d, 3, 8, "a/b");
    assert_int_equal(dir_decode_rc(&d), -EIO);
    memset(&d, 0, sizeof(d));
    d.hdr.addr = SAMPLE_ADDR;
    dir_append(&d, 3, 8, "abc");
    d.entries[VDFS_DIRENT_FIXED + 1] = '\0';
    assert_int_equal(dir_decode_rc(&d), -EIO);

    /* `used` ends inside a name, or inside an entry's fixed part. */
    sample_dir(&d, SAMPLE_ADDR);
    d.used--;
    assert_int_equal(dir_decode_rc(&d), -EIO);
    sample_dir(&d, SAMPLE_ADDR);
    d.used += 3; /* three zero bytes: a partial fixed part */
    assert_int_equal(dir_decode_rc(&d), -EIO);

    /* A name_len that runs past `used`. */
    memset(&d, 0, sizeof(d));
    d.hdr.addr = SAMPLE_ADDR;
    dir_append(&d, 3, 8, "abc");
    d.entries[5] = 200;
    assert_int_equal(dir_decode_rc(&d), -EIO);
}

static void test_jdesc_semantics(void **state)
{
    static struct vdfs_jdesc j, out;
    uint8_t buf[VDFS_META_SIZE];
    sample_jdesc(&j, SAMPLE_ADDR);
    j.count = VDFS_JDESC_ADDRS + 1;
    vdfs_jdesc_encode(&j, buf);
    assert_int_equal(vdfs_jdesc_decode(buf, SAMPLE_ADDR, &out), -EIO);
    j.count = 0;
    vdfs_jdesc_encode(&j, buf);
    assert_int_equal(vdfs_jdesc_decode(buf, SAMPLE_ADDR, &out), 0);
}

/* ---- pointer encoding (format.h inline helpers) -------------------------- */

static void test_pointer_encoding(void **state)
{
    uint32_t p = vdfs_ptr_make(0, false);
    assert_int_equal(p, 1);
    assert_true(vdfs_ptr_present(p));
    assert_int_equal(vdfs_ptr_index(p), 0);
    assert_false(vdfs_ptr_tbz(p));

    p = vdfs_ptr_make(0x7ffffffe, true);
    assert_int_equal(p, 0xffffffffu);
    assert_true(vdfs_ptr_present(p));
    assert_true(vdfs_ptr_index(p) == 0x7ffffffe);
    assert_true(vdfs_ptr_tbz(p));

    assert_false(vdfs_ptr_present(0));
    assert_false(vdfs_ptr_present(VDFS_PTR_TBZ));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_le_byte_order),
        cmocka_unit_test(test_le_round_trip),
        cmocka_unit_test(test_checksum_is_xxh3_without_csum_field),
        cmocka_unit_test(test_super_round_trip),
        cmocka_unit_test(test_super_label_field),
        cmocka_unit_test(test_heartbeat_round_trip),
        cmocka_unit_test(test_lock_round_trip),
        cmocka_unit_test(test_bitmap_round_trip),
        cmocka_unit_test(test_fd_block_round_trip),
        cmocka_unit_test(test_fd_resident_round_trip),
        cmocka_unit_test(test_pb_round_trip),
        cmocka_unit_test(test_dirblock_round_trip),
        cmocka_unit_test(test_dirblock_full_and_empty),
        cmocka_unit_test(test_jheader_round_trip),
        cmocka_unit_test(test_jdesc_round_trip),
        cmocka_unit_test(test_encode_writes_own_kind),
        cmocka_unit_test(test_super_semantics),
        cmocka_unit_test(test_heartbeat_semantics),
        cmocka_unit_test(test_lock_semantics),
        cmocka_unit_test(test_bitmap_semantics),
        cmocka_unit_test(test_fd_semantics),
        cmocka_unit_test(test_pb_semantics),
        cmocka_unit_test(test_dirblock_semantics),
        cmocka_unit_test(test_jdesc_semantics),
        cmocka_unit_test(test_pointer_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
